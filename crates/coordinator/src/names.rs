//! The names PostgreSQL gives result columns that the query does not name.
//!
//! A column reference keeps the column's name, a function call takes the
//! function's name (`count`, `upper`), a cast the type's name (`int4`), and
//! any other expression is `?column?`.
//!
//! [`prepare_query`] also readies a query's select list for DataFusion the
//! way PostgreSQL reads it: repeated names are aliased apart (the result is
//! renamed back), integer literals that fit are `integer`, and
//! set-returning functions give rows.

use datafusion::sql::sqlparser::ast::{self, Expr};

use crate::ddl::normalize;

/// The output name PostgreSQL gives an unaliased select-list expression.
pub fn output_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => normalize(i),
        Expr::CompoundIdentifier(parts) => parts.last().map(normalize).unwrap_or_else(unnamed),
        // A scalar subquery's value, aggregated for DataFusion.
        Expr::Function(f) if f.name.to_string() == slicedb_planner::single_value::SINGLE_VALUE => match &f.args {
            ast::FunctionArguments::List(l) => match l.args.first() {
                Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))) => output_name(e),
                _ => unnamed(),
            },
            _ => unnamed(),
        },
        // A cast to uuid, json or jsonb, as `slicedb_planner::text_types`
        // rewrote it: named as the cast was.
        Expr::Function(f)
            if slicedb_planner::text_types::CASTS
                .iter()
                .any(|(name, _)| f.name.to_string() == *name) =>
        {
            let ty = slicedb_planner::text_types::CASTS
                .iter()
                .find(|(name, _)| f.name.to_string() == *name)
                .map_or("", |(_, ty)| ty);
            match &f.args {
                ast::FunctionArguments::List(l) => match l.args.first() {
                    Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(
                        e @ (Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Function(_)),
                    ))) => output_name(e),
                    _ => ty.to_string(),
                },
                _ => ty.to_string(),
            }
        }
        // `interval * x` and `interval / x`, rewritten into calls
        // (`slicedb_planner::interval_mul`), are still operators here.
        Expr::Function(f) if slicedb_planner::interval_mul::is_scaling(f) => unnamed(),
        // `x = ANY(array)`, as the compatibility parser rewrote it.
        Expr::Function(f) if f.name.to_string() == "array_contains" => unnamed(),
        // `a[1]`, `a[2:3]`: the array's name.
        Expr::CompoundFieldAccess { root, .. } => output_name(root),
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(normalize)
            .unwrap_or_else(unnamed),
        Expr::Nested(inner) => output_name(inner),
        Expr::Cast { expr, data_type, .. } => match expr.as_ref() {
            // `'x'::text` names the type; `a::text` keeps the column's name.
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Function(_) => output_name(expr),
            _ => type_name(data_type),
        },
        // A scalar subquery whose conditions on the outer row were taken out
        // (`slicedb_planner::single_value`) keeps the subquery's name.
        Expr::Case {
            operand: None,
            conditions,
            else_result: None,
            ..
        } if conditions.len() == 1
            && matches!(&conditions[0].result, Expr::Nested(n) if matches!(n.as_ref(), Expr::Subquery(_))) =>
        {
            output_name(&conditions[0].result)
        }
        Expr::Case { else_result, .. } => match else_result.as_deref() {
            Some(e @ (Expr::Identifier(_) | Expr::CompoundIdentifier(_))) => output_name(e),
            _ => "case".to_string(),
        },
        Expr::Exists { .. } => "exists".to_string(),
        Expr::Array(_) => "array".to_string(),
        Expr::Subquery(q) => match q.body.as_ref() {
            ast::SetExpr::Select(s) if s.projection.len() == 1 => match &s.projection[0] {
                ast::SelectItem::UnnamedExpr(e) => output_name(e),
                ast::SelectItem::ExprWithAlias { alias, .. } => normalize(alias),
                _ => unnamed(),
            },
            _ => unnamed(),
        },
        Expr::Extract { .. } => "extract".to_string(),
        Expr::Substring { .. } => "substring".to_string(),
        Expr::Trim { .. } => "btrim".to_string(),
        Expr::Position { .. } => "position".to_string(),
        Expr::Overlay { .. } => "overlay".to_string(),
        Expr::Ceil { .. } => "ceil".to_string(),
        Expr::Floor { .. } => "floor".to_string(),
        _ => unnamed(),
    }
}

fn unnamed() -> String {
    "?column?".to_string()
}

/// PostgreSQL's internal name of a type, as a cast's output name.
fn type_name(t: &ast::DataType) -> String {
    use ast::DataType as D;
    match t {
        D::SmallInt(_) | D::Int2(_) => "int2".into(),
        D::Int(_) | D::Integer(_) | D::Int4(_) => "int4".into(),
        D::BigInt(_) | D::Int8(_) => "int8".into(),
        D::Real | D::Float4 => "float4".into(),
        D::Double(_) | D::DoublePrecision | D::Float8 => "float8".into(),
        D::Numeric(_) | D::Decimal(_) => "numeric".into(),
        D::Boolean | D::Bool => "bool".into(),
        D::Text => "text".into(),
        D::Varchar(_) | D::CharacterVarying(_) => "varchar".into(),
        D::Char(_) | D::Character(_) => "bpchar".into(),
        D::Date => "date".into(),
        D::Timestamp(_, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) => "timestamptz".into(),
        D::Timestamp(..) => "timestamp".into(),
        D::Bytea => "bytea".into(),
        D::Time(..) => "time".into(),
        D::Interval { .. } => "interval".into(),
        // `'{a}'::text[]` is named as its element type.
        D::Array(ast::ArrayElemTypeDef::SquareBracket(inner, _) | ast::ArrayElemTypeDef::AngleBracket(inner)) => {
            type_name(inner)
        }
        other => other.to_string().to_lowercase(),
    }
}

/// What [`prepare_query`] learned of a query's select list.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputNames {
    /// Per select item: its PostgreSQL name, or `None` for a wildcard.
    items: Vec<Option<String>>,
}

impl OutputNames {
    /// The output names of `fields` (DataFusion's), with PostgreSQL's names
    /// where the select list gives them; `None` when it cannot be matched
    /// up (several wildcards).
    pub fn resolve(&self, fields: &[String]) -> Option<Vec<String>> {
        let wildcards = self.items.iter().filter(|i| i.is_none()).count();
        let named = self.items.len() - wildcards;
        if wildcards > 1 || fields.len() < named || (wildcards == 0 && fields.len() != named) {
            return None;
        }
        let expanded = fields.len() - named;
        let mut out = Vec::with_capacity(fields.len());
        for item in &self.items {
            match item {
                Some(name) => out.push(name.clone()),
                None => out.extend(fields[out.len()..out.len() + expanded].iter().cloned()),
            }
        }
        Some(out)
    }
}

/// The select list that names a query's columns: its left-most SELECT.
fn leftmost_select(body: &mut ast::SetExpr) -> Option<&mut ast::Select> {
    match body {
        ast::SetExpr::Select(s) => Some(s),
        ast::SetExpr::Query(q) => leftmost_select(&mut q.body),
        ast::SetExpr::SetOperation { left, .. } => leftmost_select(left),
        _ => None,
    }
}

/// An integer literal that fits `integer`, as PostgreSQL types it.
fn as_int4_literal(e: &Expr) -> Option<Expr> {
    if let Expr::Value(v) = e {
        if let ast::Value::Number(n, false) = &v.value {
            if n.parse::<i32>().is_ok() {
                return Some(Expr::Cast {
                    kind: ast::CastKind::DoubleColon,
                    expr: Box::new(e.clone()),
                    data_type: ast::DataType::Integer(None),
                    array: false,
                    format: None,
                });
            }
        }
    }
    None
}

/// Prepares a query for DataFusion the way PostgreSQL reads it, and
/// returns the names PostgreSQL gives its columns:
/// - an item that repeats an earlier one (`SELECT a, a`, `SELECT NULL,
///   NULL`) is aliased apart, since DataFusion refuses repeated names;
/// - integer literals of select lists that fit `integer` are typed
///   `integer` (DataFusion reads them as `bigint`), so `SELECT 1` is int4.
pub fn prepare_query(query: &mut ast::Query) -> Option<OutputNames> {
    let items = alias_apart(query)?;
    // Integer literals of select lists, once the names are taken (not in
    // LIMIT, OFFSET or positional ORDER BY / GROUP BY).
    type_int_literals_of(query);
    unnest_set_returning_in(query);
    exists_as_counts(&mut query.body);
    Some(OutputNames { items })
}

/// Aliases apart the items of a query's select list that repeat an earlier
/// one's name (see [`prepare_query`]); for `INSERT … SELECT`, whose source
/// columns go by position, this is all it needs. Returns the names
/// PostgreSQL gives the items (`None` for a wildcard).
pub fn alias_apart(query: &mut ast::Query) -> Option<Vec<Option<String>>> {
    let select = leftmost_select(&mut query.body)?;
    let mut items = Vec::with_capacity(select.projection.len());
    let mut seen: Vec<String> = Vec::new();
    for (i, item) in select.projection.iter_mut().enumerate() {
        match item {
            ast::SelectItem::UnnamedExpr(e) => {
                let name = output_name(e);
                let text = uncast(e).to_string();
                if seen.contains(&text) || seen.contains(&name) {
                    *item = ast::SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias: ast::Ident::with_quote('"', format!("{name}__slicedb_{i}")),
                    };
                } else if !std::ptr::eq(uncast(e), e) {
                    // A cast goes by PostgreSQL's name: DataFusion's is the
                    // name of what it casts, which the column a sort adds
                    // (`SELECT id::bigint … ORDER BY id`) would repeat.
                    *item = ast::SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias: ast::Ident::with_quote('"', name.clone()),
                    };
                }
                seen.push(text);
                seen.push(name.clone());
                items.push(Some(name));
            }
            ast::SelectItem::ExprWithAlias { alias, .. } => {
                let name = normalize(alias);
                if seen.contains(&name) {
                    *alias = ast::Ident::with_quote('"', format!("{name}__slicedb_{i}"));
                }
                seen.push(name.clone());
                items.push(Some(name));
            }
            _ => items.push(None),
        }
    }
    Some(items)
}

/// Types the integer literals of a query's select lists `integer`, and
/// those of the GROUP BY, HAVING and ORDER BY expressions beside them: an
/// expression grouped by must read as the select list's (`SELECT a % 2 …
/// GROUP BY a % 2`). A bare number there is a position and stays as it is.
fn type_int_literals_of(query: &mut ast::Query) {
    type_int_literals(&mut query.body);
    if let (ast::SetExpr::Select(_), Some(order_by)) = (query.body.as_ref(), query.order_by.as_mut()) {
        if let ast::OrderByKind::Expressions(exprs) = &mut order_by.kind {
            for o in exprs {
                type_int_literals_within(&mut o.expr);
            }
        }
    }
}

/// [`type_int_literals_in`] of an expression that is not itself a number.
fn type_int_literals_within(e: &mut Expr) {
    if as_int4_literal(e).is_none() {
        type_int_literals_in(e);
    }
}

/// The set-returning functions DataFusion has as functions returning a
/// list (and slicedb's jsonb ones): in a select list they give one row per
/// element, as in PostgreSQL.
fn is_set_returning(name: &str) -> bool {
    name == "generate_series" || slicedb_planner::json_functions::SET_RETURNING.contains(&name)
}

/// `EXISTS (q)` in the select list of a SELECT without FROM (SQLAlchemy's
/// `SELECT EXISTS (SELECT … WHERE email = $1)`), which DataFusion plans only
/// in a WHERE, as the scalar subquery `(SELECT count(*) > 0 FROM (SELECT 1
/// FROM (q) LIMIT 1))`, which it plans anywhere (`NOT EXISTS`: `= 0`).
/// Without FROM there is no row for `q` to be correlated with.
fn exists_as_counts(body: &mut ast::SetExpr) {
    fn rewrite(e: &mut Expr) {
        match e {
            Expr::Exists { subquery, negated } => {
                let op = if *negated { "=" } else { ">" };
                let sql = format!(
                    "(SELECT count(*) {op} 0 FROM (SELECT 1 FROM ({subquery}) AS __slicedb_q LIMIT 1) AS __slicedb_exists)"
                );
                if let Ok(counted) = datafusion::sql::sqlparser::parser::Parser::new(
                    &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                )
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_expr())
                {
                    *e = counted;
                }
            }
            Expr::BinaryOp { left, right, .. } => {
                rewrite(left);
                rewrite(right);
            }
            Expr::UnaryOp { expr, .. } | Expr::Nested(expr) | Expr::Cast { expr, .. } => rewrite(expr),
            _ => {}
        }
    }
    match body {
        ast::SetExpr::Select(s) if s.from.is_empty() => {
            for item in &mut s.projection {
                if let ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } = item {
                    rewrite(e);
                }
            }
        }
        ast::SetExpr::Query(q) => exists_as_counts(&mut q.body),
        ast::SetExpr::SetOperation { left, right, .. } => {
            exists_as_counts(left);
            exists_as_counts(right);
        }
        _ => {}
    }
}

/// [`unnest_set_returning`] of a query and of every query within it (a
/// derived table, a subquery).
fn unnest_set_returning_in(query: &mut ast::Query) {
    struct Queries;
    impl ast::VisitorMut for Queries {
        type Break = ();
        fn post_visit_query(&mut self, q: &mut ast::Query) -> std::ops::ControlFlow<()> {
            unnest_set_returning(&mut q.body);
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = ast::VisitMut::visit(query, &mut Queries);
}

/// Makes each call of a set-returning function ([`is_set_returning`]) in a query's select
/// lists (alone, or under an operator or a cast) an `unnest` of it, so that
/// `SELECT generate_series(1, 3)` is three rows, not one array.
fn unnest_set_returning(body: &mut ast::SetExpr) {
    match body {
        ast::SetExpr::Select(s) => {
            for item in &mut s.projection {
                if let ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } = item {
                    unnest_calls(e);
                }
            }
        }
        ast::SetExpr::Query(q) => unnest_set_returning(&mut q.body),
        ast::SetExpr::SetOperation { left, right, .. } => {
            unnest_set_returning(left);
            unnest_set_returning(right);
        }
        _ => {}
    }
}

fn unnest_calls(e: &mut Expr) {
    match e {
        Expr::Function(f) => {
            let name = f
                .name
                .0
                .last()
                .map(|p| p.to_string().to_lowercase())
                .unwrap_or_default();
            if is_set_returning(&name) {
                *e = slicedb_planner::udf::call("unnest", vec![e.clone()]);
            }
        }
        Expr::BinaryOp { left, right, .. } => {
            unnest_calls(left);
            unnest_calls(right);
        }
        Expr::UnaryOp { expr, .. }
        | Expr::Nested(expr)
        | Expr::Cast { expr, .. }
        | Expr::IsNull(expr)
        | Expr::IsNotNull(expr) => unnest_calls(expr),
        _ => {}
    }
}

/// An expression without the casts around it: DataFusion names a cast
/// after what it casts, so `x::int` and `x::bigint` have one name there.
fn uncast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast { expr, .. } | Expr::Nested(expr) => uncast(expr),
        other => other,
    }
}

fn type_int_literals(body: &mut ast::SetExpr) {
    match body {
        ast::SetExpr::Select(s) => {
            for item in &mut s.projection {
                if let ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } = item {
                    type_int_literals_in(e);
                }
            }
            if let ast::GroupByExpr::Expressions(exprs, _) = &mut s.group_by {
                for e in exprs {
                    type_int_literals_within(e);
                }
            }
            if let Some(having) = &mut s.having {
                type_int_literals_within(having);
            }
        }
        ast::SetExpr::Query(q) => type_int_literals_of(q),
        ast::SetExpr::SetOperation { left, right, .. } => {
            type_int_literals(left);
            type_int_literals(right);
        }
        _ => {}
    }
}

fn type_int_literals_in(e: &mut Expr) {
    if let Some(cast) = as_int4_literal(e) {
        *e = cast;
        return;
    }
    let _ = ast::visit_expressions_mut(e, |x| {
        match x {
            Expr::BinaryOp { left, right, .. } => {
                for side in [left, right] {
                    if let Some(cast) = as_int4_literal(side) {
                        **side = cast;
                    }
                }
            }
            Expr::UnaryOp { expr, .. } | Expr::Nested(expr) => {
                if let Some(cast) = as_int4_literal(expr) {
                    **expr = cast;
                }
            }
            // `pg_typeof(1)` is `integer`.
            Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("pg_typeof") => {
                if let ast::FunctionArguments::List(l) = &mut f.args {
                    for arg in &mut l.args {
                        if let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)) = arg {
                            if let Some(cast) = as_int4_literal(a) {
                                *a = cast;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn name(sql: &str) -> String {
        let e = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap();
        output_name(&e)
    }

    #[test]
    fn names_as_postgresql_gives_them() {
        assert_eq!(name("count(*)"), "count");
        assert_eq!(name("t.a"), "a");
        assert_eq!(name("\"A\""), "A");
        assert_eq!(name("a + 1"), "?column?");
        assert_eq!(name("1"), "?column?");
        assert_eq!(name("'x'::text"), "text");
        assert_eq!(name("a::text"), "a");
        assert_eq!(name("CAST(1 AS bigint)"), "int8");
        assert_eq!(name("upper(b)"), "upper");
        assert_eq!(name("CASE WHEN a THEN 1 END"), "case");
    }

    fn prepared(sql: &str) -> String {
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        let ast::Statement::Query(q) = &mut stmts[0] else {
            panic!("a query")
        };
        prepare_query(q);
        q.to_string()
    }

    #[test]
    fn grouped_expressions_read_as_the_select_list() {
        assert_eq!(
            prepared("SELECT a % 2, count(*) FROM t GROUP BY a % 2 HAVING count(*) > 1 ORDER BY a % 2, 1"),
            "SELECT a % 2::INTEGER, count(*) FROM t GROUP BY a % 2::INTEGER HAVING count(*) > 1::INTEGER \
             ORDER BY a % 2::INTEGER, 1"
        );
        // Casts of one expression are told apart: DataFusion names them alike.
        assert_eq!(
            prepared("SELECT 2.5::int, 2.5::bigint"),
            "SELECT 2.5::INT AS \"int4\", 2.5::BIGINT AS \"int8__slicedb_1\""
        );
        // A cast goes by its PostgreSQL name.
        assert_eq!(
            prepared("SELECT id::bigint FROM t ORDER BY id"),
            "SELECT id::BIGINT AS \"id\" FROM t ORDER BY id"
        );
        // A set-returning function gives rows.
        assert_eq!(
            prepared("SELECT generate_series(1, 3) * 2, unnest(generate_series(1, 2))"),
            "SELECT unnest(generate_series(1, 3)) * 2::INTEGER, unnest(generate_series(1, 2))"
        );
        assert_eq!(
            prepared("SELECT count(*) FROM (SELECT generate_series(1, 10)) s"),
            "SELECT count(*) FROM (SELECT unnest(generate_series(1, 10))) s"
        );
        // A position stays a position.
        assert_eq!(
            prepared("SELECT a, 1 FROM t GROUP BY 1"),
            "SELECT a, 1::INTEGER FROM t GROUP BY 1"
        );
    }
}
