//! Rewrites of a write statement's syntax tree before DataFusion plans it,
//! for what PostgreSQL does and DataFusion's SQL planner does not:
//!
//! - the `DEFAULT` keyword in `VALUES` rows and in `UPDATE … SET c =
//!   DEFAULT`, and `INSERT … DEFAULT VALUES`, become the column's default
//!   expression (DataFusion fills in only columns left out of the list,
//!   through `TableProvider::get_column_default`);
//! - an explicit value for a `GENERATED ALWAYS AS IDENTITY` column is
//!   refused (428C9);
//! - `ON CONFLICT` is taken off: `DO NOTHING` becomes a flag of the
//!   write, `DO UPDATE` an upsert run row by row ([`crate::upsert`]);
//! - the `RETURNING` list is taken off (DataFusion refuses it) and kept as
//!   a [`Returning`]: the write operators leave the rows they wrote in a
//!   [`slicedb_planner::write::ReturningSink`], and the coordinator
//!   evaluates the list over them.

use datafusion::sql::sqlparser::ast::{self, Expr, SelectItem, SetExpr};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use slicedb_catalog::CatalogState;
use slicedb_common::{err, Identity, Result, TableDef};

use crate::ddl::{normalize, relation_name};

/// A `RETURNING` list, to evaluate over the rows a write statement wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Returning {
    /// The table written.
    pub table: String,
    /// The name the statement gives it (its alias, else its name).
    pub alias: String,
    pub items: Vec<SelectItem>,
}

impl Returning {
    /// The list of a statement that writes table `name`, aliased as `alias`.
    fn of(name: &ast::ObjectName, alias: Option<&ast::TableAlias>, items: Vec<SelectItem>) -> Result<Returning> {
        let table = relation_name(name)?;
        Ok(Returning {
            alias: alias.map(|a| normalize(&a.name)).unwrap_or_else(|| table.clone()),
            table,
            items,
        })
    }
}

fn is_default_keyword(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// The default of column `c` of `table` as an expression (NULL without one).
pub(crate) fn default_expr(table: &TableDef, c: usize) -> Result<Expr> {
    match &table.columns[c].default {
        Some(sql) => Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| slicedb_common::Error::syntax(e.to_string())),
        None => Ok(Expr::Value(ast::Value::Null.into())),
    }
}

fn column_position(table: &TableDef, name: &ast::ObjectName) -> Result<usize> {
    let col = match name.0.last().and_then(|p| p.as_ident()) {
        Some(i) => normalize(i),
        None => return Err(err!(SyntaxError, "invalid column name {name}")),
    };
    table.column_index(&col).ok_or_else(|| {
        err!(
            UndefinedColumn,
            "column \"{col}\" of relation \"{}\" does not exist",
            table.name
        )
    })
}

/// What [`for_planning`] took off a write statement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rewritten {
    pub returning: Option<Returning>,
    /// `ON CONFLICT [(primary key)] DO NOTHING`.
    pub do_nothing: bool,
    /// An `ON CONFLICT` run row by row (see [`crate::upsert`]): `DO
    /// UPDATE`, or `DO NOTHING` with `RETURNING`.
    pub upsert: Option<Upsert>,
}

/// An `INSERT … ON CONFLICT` run row by row.
#[derive(Debug, Clone, PartialEq)]
pub enum Upsert {
    DoNothing,
    DoUpdate(Box<DoUpdate>),
}

/// The `DO UPDATE SET … [WHERE …]` of an `INSERT … ON CONFLICT`.
#[derive(Debug, Clone, PartialEq)]
pub struct DoUpdate {
    pub assignments: Vec<ast::Assignment>,
    pub selection: Option<Expr>,
    /// The columns of the conflict target when it is a unique index (the
    /// existing row is found by them); `None` for the primary key.
    pub target: Option<Vec<usize>>,
}

/// What [`on_conflict`] found.
enum Conflict {
    None,
    DoNothing,
    DoUpdate(Box<DoUpdate>),
}

/// Rewrites `stmt` in place (see the module comment).
pub fn for_planning(stmt: &mut ast::Statement, catalog: &CatalogState) -> Result<Rewritten> {
    let conflict = match stmt {
        ast::Statement::Insert(insert) => on_conflict(insert, catalog)?,
        _ => Conflict::None,
    };
    let returning = take_returning(stmt, catalog)?;
    let (do_nothing, upsert) = match conflict {
        Conflict::None => (false, None),
        // With RETURNING, row by row: only the rows inserted are returned.
        Conflict::DoNothing if returning.is_some() => (false, Some(Upsert::DoNothing)),
        Conflict::DoNothing => (true, None),
        Conflict::DoUpdate(u) => (false, Some(Upsert::DoUpdate(u))),
    };
    Ok(Rewritten {
        returning,
        do_nothing,
        upsert,
    })
}

/// Takes `ON CONFLICT` off an INSERT: `DO NOTHING` on the primary key (or
/// any conflict, which for slicedb is one on the primary key), and `DO
/// UPDATE` on the primary key (which PostgreSQL requires to be named).
fn on_conflict(insert: &mut ast::Insert, catalog: &CatalogState) -> Result<Conflict> {
    let Some(on) = insert.on.take() else {
        return Ok(Conflict::None);
    };
    let ast::OnInsert::OnConflict(conflict) = on else {
        return Err(err!(FeatureNotSupported, "ON DUPLICATE KEY UPDATE is not supported"));
    };
    let found = match conflict.action {
        ast::OnConflictAction::DoNothing => Conflict::DoNothing,
        ast::OnConflictAction::DoUpdate(u) => {
            if conflict.conflict_target.is_none() {
                return Err(err!(
                    SyntaxError,
                    "ON CONFLICT DO UPDATE requires inference specification or constraint name"
                ));
            }
            Conflict::DoUpdate(Box::new(DoUpdate {
                assignments: u.assignments,
                selection: u.selection,
                target: None,
            }))
        }
    };
    let ast::TableObject::TableName(name) = &insert.table else {
        return Ok(found);
    };
    let Ok(table) = catalog.table(&relation_name(name)?) else {
        return Ok(found);
    };
    let pk_name = table
        .primary_key_name
        .clone()
        .unwrap_or_else(|| format!("{}_pkey", table.name));
    let sorted = |cols: &[usize]| {
        let mut v = cols.to_vec();
        v.sort();
        v.dedup();
        v
    };
    // The primary key (`Some(None)`), or a unique index (`Some(Some(columns))`).
    let arbiter: Option<Option<Vec<usize>>> = match &conflict.conflict_target {
        None => Some(None),
        Some(ast::ConflictTarget::Columns(cols)) => {
            let named: Vec<usize> = cols.iter().filter_map(|c| table.column_index(&normalize(c))).collect();
            let named = sorted(&named);
            if named.len() != cols.len() {
                None
            } else if named == sorted(&table.primary_key) {
                Some(None)
            } else {
                table
                    .indexes
                    .iter()
                    .find(|i| i.unique && !i.building && i.is_plain() && sorted(&i.columns) == named)
                    .map(|i| Some(i.columns.clone()))
            }
        }
        Some(ast::ConflictTarget::OnConstraint(c)) => {
            let c = c.0.last().and_then(|p| p.as_ident()).map(normalize);
            if c.as_deref() == Some(pk_name.as_str()) {
                Some(None)
            } else {
                table
                    .indexes
                    .iter()
                    .find(|i| i.unique && !i.building && i.is_plain() && Some(&i.name) == c.as_ref())
                    .map(|i| Some(i.columns.clone()))
            }
        }
    };
    let Some(target) = arbiter else {
        return Err(err!(
            InvalidColumnReference,
            "there is no unique or exclusion constraint matching the ON CONFLICT specification"
        ));
    };
    Ok(match found {
        Conflict::DoUpdate(mut u) => {
            u.target = target;
            Conflict::DoUpdate(u)
        }
        other => other,
    })
}

fn take_returning(stmt: &mut ast::Statement, catalog: &CatalogState) -> Result<Option<Returning>> {
    match stmt {
        ast::Statement::Insert(insert) => {
            let ast::TableObject::TableName(name) = &insert.table else {
                return Ok(None);
            };
            let name = relation_name(name)?;
            let returning = insert.returning.take().map(|items| Returning {
                table: name.clone(),
                alias: insert
                    .table_alias
                    .as_ref()
                    .map(|a| normalize(&a.alias))
                    .unwrap_or_else(|| name.clone()),
                items,
            });
            let Ok(table) = catalog.table(&name) else {
                return Ok(returning);
            };
            rewrite_insert(insert, &table)?;
            Ok(returning)
        }
        ast::Statement::Update(update) => {
            let returning = match (&update.table.relation, update.returning.take()) {
                (ast::TableFactor::Table { name, alias, .. }, Some(items)) => {
                    Some(Returning::of(name, alias.as_ref(), items)?)
                }
                (_, Some(_)) => return Err(err!(FeatureNotSupported, "RETURNING of this UPDATE is not supported")),
                _ => None,
            };
            if let ast::TableFactor::Table { name, .. } = &update.table.relation {
                if let Ok(table) = catalog.table(&relation_name(name)?) {
                    for a in &mut update.assignments {
                        let ast::AssignmentTarget::ColumnName(col) = &a.target else {
                            continue;
                        };
                        let c = column_position(&table, col)?;
                        if is_default_keyword(&a.value) {
                            a.value = default_expr(&table, c)?;
                        } else if table.columns[c].identity == Some(Identity::Always) {
                            return Err(err!(
                                GeneratedAlways,
                                "column \"{}\" can only be updated to DEFAULT",
                                table.columns[c].name
                            ));
                        }
                    }
                }
            }
            Ok(returning)
        }
        ast::Statement::Delete(delete) => {
            let Some(items) = delete.returning.take() else {
                return Ok(None);
            };
            let from = match &delete.from {
                ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
            };
            match from.first().map(|t| &t.relation) {
                Some(ast::TableFactor::Table { name, alias, .. }) if from.len() == 1 => {
                    Ok(Some(Returning::of(name, alias.as_ref(), items)?))
                }
                _ => Err(err!(FeatureNotSupported, "RETURNING of this DELETE is not supported")),
            }
        }
        _ => Ok(None),
    }
}

/// Rewrites each `VALUES` list nested in the source query of an INSERT
/// (`INSERT INTO t (a, b) SELECT p0, p1 FROM (VALUES …) AS s(p0, p1, n)
/// ORDER BY n`, SQLAlchemy's bulk insert) as `SELECT * FROM unnest(ARRAY[…
/// first column …], …) AS v(column1, …)`, the same rows in the same order.
/// DataFusion plans every `VALUES` of an INSERT's source against the
/// target table's columns, which is right only for the source's own
/// `VALUES`; a nested one has columns of its own.
fn nested_values_as_unnest(source: &mut ast::Query) -> Result<()> {
    use std::ops::ControlFlow;
    struct Nested {
        top: *const ast::Query,
        failed: Option<slicedb_common::Error>,
    }
    impl ast::VisitorMut for Nested {
        type Break = ();
        fn post_visit_query(&mut self, q: &mut ast::Query) -> ControlFlow<()> {
            if std::ptr::eq(q, self.top) {
                return ControlFlow::Continue(());
            }
            let SetExpr::Values(values) = q.body.as_ref() else {
                return ControlFlow::Continue(());
            };
            let width = values.rows.first().map_or(0, |r| r.content.len());
            if width == 0 || values.rows.iter().any(|r| r.content.len() != width) {
                self.failed = Some(err!(SyntaxError, "VALUES lists must all be the same length"));
                return ControlFlow::Break(());
            }
            let arrays: Vec<String> = (0..width)
                .map(|c| {
                    let items: Vec<String> = values.rows.iter().map(|r| r.content[c].to_string()).collect();
                    format!("ARRAY[{}]", items.join(", "))
                })
                .collect();
            let names: Vec<String> = (1..=width).map(|c| format!("column{c}")).collect();
            let sql = format!(
                "SELECT * FROM unnest({}) AS __values({})",
                arrays.join(", "),
                names.join(", ")
            );
            match Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_query())
            {
                Ok(query) => q.body = query.body,
                Err(e) => {
                    self.failed = Some(err!(SyntaxError, "{e}"));
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut visitor = Nested {
        top: source as *const ast::Query,
        failed: None,
    };
    let _ = ast::VisitMut::visit(source, &mut visitor);
    match visitor.failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn rewrite_insert(insert: &mut ast::Insert, table: &TableDef) -> Result<()> {
    // The target column of each value position.
    let targets: Vec<usize> = if insert.columns.is_empty() {
        (0..table.columns.len()).collect()
    } else {
        insert
            .columns
            .iter()
            .map(|c| column_position(table, c))
            .collect::<Result<_>>()?
    };
    if insert.source.is_none() && insert.assignments.is_empty() {
        // INSERT … DEFAULT VALUES: every column takes its default.
        let first = &table.columns[0];
        insert.columns = vec![ast::ObjectName::from(vec![ast::Ident::with_quote(
            '"',
            first.name.clone(),
        )])];
        let values = ast::Values {
            explicit_row: false,
            value_keyword: false,
            rows: vec![ast::Parens::with_empty_span(vec![default_expr(table, 0)?])],
        };
        insert.source = Some(Box::new(ast::Query {
            with: None,
            body: Box::new(SetExpr::Values(values)),
            order_by: None,
            limit_clause: None,
            fetch: None,
            locks: vec![],
            for_clause: None,
            settings: None,
            format_clause: None,
            pipe_operators: vec![],
        }));
        return Ok(());
    }
    let Some(source) = insert.source.as_mut() else {
        return Ok(());
    };
    if !matches!(source.body.as_ref(), SetExpr::Values(_)) {
        nested_values_as_unnest(source)?;
    }
    let always: Vec<usize> = targets
        .iter()
        .copied()
        .filter(|c| table.columns[*c].identity == Some(Identity::Always))
        .collect();
    match source.body.as_mut() {
        SetExpr::Values(values) => {
            for row in &mut values.rows {
                for (i, value) in row.content.iter_mut().enumerate() {
                    let Some(c) = targets.get(i).copied() else {
                        continue;
                    };
                    if is_default_keyword(value) {
                        *value = default_expr(table, c)?;
                    } else if always.contains(&c) {
                        return Err(generated_always(table, c));
                    }
                }
            }
        }
        _ => {
            if let Some(c) = always.first() {
                return Err(generated_always(table, *c));
            }
        }
    }
    Ok(())
}

fn generated_always(table: &TableDef, c: usize) -> slicedb_common::Error {
    err!(
        GeneratedAlways,
        "cannot insert a non-DEFAULT value into column \"{}\"",
        table.columns[c].name
    )
}
