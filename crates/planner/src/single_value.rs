//! A scalar subquery gives at most one row, checked when it runs.
//!
//! PostgreSQL accepts `(SELECT d.v FROM d WHERE d.k = t.k)` in any
//! expression: no row is NULL, one row is its value, and a second row is an
//! error (`21000`, "more than one row returned by a subquery used as an
//! expression"). DataFusion plans a correlated scalar subquery only when it
//! aggregates ("Correlated scalar subquery must be aggregated to return at
//! most one row"), because it turns the subquery into a join grouped by the
//! correlated columns.
//!
//! [`aggregate_scalar_subqueries`] gives it that aggregate: the one
//! expression of such a subquery becomes `slicedb_single_value(expr)`, the
//! aggregate [`SingleValue`], which is NULL over no row, the value over one
//! and fails with `21000` over more. The answer is PostgreSQL's in every
//! case. Subqueries that aggregate, group, pick distinct rows or limit their
//! rows are left alone (DataFusion plans the first three; a `LIMIT` picks a
//! row, which an aggregate cannot say).
//!
//! The rewritten subquery is wrapped in parentheses (`Expr::Nested`): the
//! catalog-query compatibility layer replaces a correlated subquery that
//! is a whole select item with NULL, and must not see this one as such.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};
use datafusion::sql::sqlparser::ast::{self, visit_expressions_mut};
use slicedb_common::{err, Error};

/// Name of the [`SingleValue`] aggregate.
pub const SINGLE_VALUE: &str = "slicedb_single_value";

/// `slicedb_single_value(x)`: the only value of `x` in its group.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SingleValue {
    signature: Signature,
}

impl Default for SingleValue {
    fn default() -> Self {
        SingleValue {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl SingleValue {
    pub fn udaf() -> AggregateUDF {
        AggregateUDF::new_from_impl(SingleValue::default())
    }
}

impl AggregateUDFImpl for SingleValue {
    fn name(&self) -> &str {
        SINGLE_VALUE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types[0].clone())
    }

    fn is_nullable(&self) -> bool {
        true
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(SingleValueAccumulator {
            value: ScalarValue::try_from(args.return_field.data_type())?,
            rows: 0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[value]", args.name),
                args.return_type().clone(),
                true,
            )),
            Arc::new(Field::new(format!("{}[rows]", args.name), DataType::Int64, true)),
        ])
    }
}

#[derive(Debug)]
struct SingleValueAccumulator {
    value: ScalarValue,
    rows: i64,
}

impl SingleValueAccumulator {
    fn add(&mut self, values: &ArrayRef, row: usize, rows: i64) -> DfResult<()> {
        if rows == 0 {
            return Ok(());
        }
        if self.rows + rows > 1 {
            return Err(more_than_one_row().into_datafusion());
        }
        self.value = ScalarValue::try_from_array(values, row)?;
        self.rows += rows;
        Ok(())
    }
}

impl Accumulator for SingleValueAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        for row in 0..values[0].len() {
            self.add(&values[0], row, 1)?;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let rows = states[1].as_primitive::<Int64Type>();
        for row in 0..rows.len() {
            let n = if rows.is_valid(row) { rows.value(row) } else { 0 };
            self.add(&states[0], row, n)?;
        }
        Ok(())
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![self.value.clone(), ScalarValue::Int64(Some(self.rows))])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size()
    }
}

/// Makes every scalar subquery of `stmt` that returns one plain expression
/// aggregate it with [`SingleValue`] (see the module comment). Returns
/// whether anything changed.
pub fn aggregate_scalar_subqueries(stmt: &mut ast::Statement) -> bool {
    let mut changed = false;
    let _ = visit_expressions_mut(stmt, |e| {
        if let ast::Expr::Subquery(query) = e {
            if !decorrelatable(query) {
                return ControlFlow::Continue(());
            }
            if let Some(item) = single_plain_item(query) {
                let inner = std::mem::replace(item, ast::Expr::Value(ast::Value::Null.with_empty_span()));
                *item = single_value_call(inner);
                let outer = take_outer_conditions(query);
                let subquery = std::mem::replace(e, ast::Expr::Value(ast::Value::Null.with_empty_span()));
                let subquery = ast::Expr::Nested(Box::new(subquery));
                *e = match outer {
                    None => subquery,
                    Some(condition) => ast::Expr::Case {
                        case_token: ast::helpers::attached_token::AttachedToken::empty(),
                        end_token: ast::helpers::attached_token::AttachedToken::empty(),
                        operand: None,
                        conditions: vec![ast::CaseWhen {
                            condition,
                            result: subquery,
                        }],
                        else_result: None,
                    },
                };
                changed = true;
            }
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

/// Takes out of the subquery's WHERE the conditions that read only the
/// outer query's columns (`a.atthasdef` in `(SELECT … FROM d WHERE d.k =
/// a.k AND a.atthasdef)`), and returns them joined by AND. DataFusion does
/// not decorrelate such a condition; outside, `CASE WHEN cond THEN (…) END`
/// gives the same answer (no row, so NULL, when it does not hold).
fn take_outer_conditions(query: &mut ast::Query) -> Option<ast::Expr> {
    let ast::SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let inner = relation_names(select);
    let mut conjuncts = Vec::new();
    split_and(select.selection.take()?, &mut conjuncts);
    let (outer, kept): (Vec<_>, Vec<_>) = conjuncts.into_iter().partition(|c| reads_only_outer(c, &inner));
    select.selection = kept.into_iter().reduce(and);
    outer.into_iter().reduce(and)
}

/// The names a select's own columns are qualified with.
fn relation_names(select: &ast::Select) -> Vec<String> {
    select
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
        .filter_map(|f| match f {
            ast::TableFactor::Table { name, alias, .. } => Some(match alias {
                Some(a) => a.name.value.to_ascii_lowercase(),
                None => name.0.last()?.as_ident()?.value.to_ascii_lowercase(),
            }),
            _ => None,
        })
        .collect()
}

/// False if a condition of the subquery compares its own columns with the
/// outer query's other than by `=`: DataFusion decorrelates equalities only,
/// so such a subquery is left as it is.
fn decorrelatable(query: &ast::Query) -> bool {
    let ast::SetExpr::Select(select) = query.body.as_ref() else {
        return true;
    };
    let Some(selection) = &select.selection else {
        return true;
    };
    let inner = relation_names(select);
    let mut conjuncts = Vec::new();
    split_and(selection.clone(), &mut conjuncts);
    conjuncts.iter().all(|c| {
        let (mut reads_inner, mut reads_outer) = (false, false);
        let _ = ast::visit_expressions(c, |x| {
            match x {
                ast::Expr::Identifier(_) => reads_inner = true,
                ast::Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    if inner.contains(&parts[parts.len() - 2].value.to_ascii_lowercase()) {
                        reads_inner = true;
                    } else {
                        reads_outer = true;
                    }
                }
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
        let equality = matches!(
            c,
            ast::Expr::BinaryOp {
                op: ast::BinaryOperator::Eq,
                ..
            }
        );
        !(reads_inner && reads_outer) || equality
    })
}

fn split_and(e: ast::Expr, out: &mut Vec<ast::Expr>) {
    match e {
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            split_and(*left, out);
            split_and(*right, out);
        }
        ast::Expr::Nested(inner)
            if matches!(
                *inner,
                ast::Expr::BinaryOp {
                    op: ast::BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_and(*inner, out)
        }
        other => out.push(other),
    }
}

fn and(left: ast::Expr, right: ast::Expr) -> ast::Expr {
    ast::Expr::BinaryOp {
        left: Box::new(left),
        op: ast::BinaryOperator::And,
        right: Box::new(right),
    }
}

/// True if every column `e` reads is qualified by a relation that is not
/// one of `inner` (the subquery's own), and it reads at least one.
fn reads_only_outer(e: &ast::Expr, inner: &[String]) -> bool {
    let mut outer = 0;
    let flow = ast::visit_expressions(e, |x| match x {
        ast::Expr::Identifier(_) | ast::Expr::Subquery(_) | ast::Expr::Exists { .. } | ast::Expr::InSubquery { .. } => {
            ControlFlow::Break(())
        }
        ast::Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            if inner.contains(&parts[parts.len() - 2].value.to_ascii_lowercase()) {
                ControlFlow::Break(())
            } else {
                outer += 1;
                ControlFlow::Continue(())
            }
        }
        _ => ControlFlow::Continue(()),
    });
    flow.is_continue() && outer > 0
}

/// The expression a subquery returns, if it is a plain one-column select
/// that neither aggregates, groups, picks distinct rows nor limits them.
fn single_plain_item(query: &mut ast::Query) -> Option<&mut ast::Expr> {
    if query.limit_clause.is_some() || query.fetch.is_some() || query.order_by.is_some() || query.with.is_some() {
        return None;
    }
    let ast::SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let grouped = !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if select.distinct.is_some() || grouped || select.having.is_some() || select.projection.len() != 1 {
        return None;
    }
    let expr = match &mut select.projection[0] {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return None,
    };
    (!aggregates(expr)).then_some(expr)
}

/// True if `expr` calls a function that may be an aggregate or a window
/// function outside a nested subquery: its name is not one DataFusion's
/// scalar functions use, so such an expression is left alone.
fn aggregates(expr: &ast::Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(expr, |e| {
        match e {
            ast::Expr::Function(f) => {
                let name = f.name.to_string().to_ascii_lowercase();
                let name = name.rsplit('.').next().unwrap_or_default();
                if f.over.is_some() || f.filter.is_some() || AGGREGATES.contains(&name) {
                    found = true;
                    return ControlFlow::Break(());
                }
            }
            ast::Expr::Subquery(_) | ast::Expr::Exists { .. } | ast::Expr::InSubquery { .. } => {
                // Aggregates inside belong to that subquery.
            }
            _ => {}
        }
        ControlFlow::Continue(())
    });
    found
}

/// Aggregate functions a subquery's expression may call (PostgreSQL's and
/// DataFusion's names).
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "corr",
    "covar_pop",
    "covar_samp",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "first_value",
    "last_value",
    "bit_and",
    "bit_or",
    "bit_xor",
    "median",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "regr_slope",
    "regr_intercept",
    "regr_count",
    "regr_r2",
    "regr_avgx",
    "regr_avgy",
    "regr_sxx",
    "regr_syy",
    "regr_sxy",
    "grouping",
    SINGLE_VALUE,
];

fn single_value_call(arg: ast::Expr) -> ast::Expr {
    crate::udf::call(SINGLE_VALUE, vec![arg])
}

/// The error for a second row.
fn more_than_one_row() -> Error {
    err!(
        CardinalityViolation,
        "more than one row returned by a subquery used as an expression"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewrite(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        aggregate_scalar_subqueries(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn plain_scalar_subqueries_aggregate_their_value() {
        assert_eq!(
            rewrite("SELECT a, (SELECT d.v FROM d WHERE d.k = t.k) FROM t"),
            "SELECT a, ((SELECT slicedb_single_value(d.v) FROM d WHERE d.k = t.k)) FROM t"
        );
    }

    #[test]
    fn conditions_on_the_outer_row_move_out() {
        assert_eq!(
            rewrite("SELECT (SELECT d.v FROM d WHERE d.k = a.k AND a.has) FROM a"),
            "SELECT CASE WHEN a.has THEN ((SELECT slicedb_single_value(d.v) FROM d WHERE d.k = a.k)) END FROM a"
        );
        assert_eq!(
            rewrite("SELECT (SELECT x.v FROM d AS x WHERE x.k > 0 AND k = 1) FROM a"),
            "SELECT ((SELECT slicedb_single_value(x.v) FROM d AS x WHERE x.k > 0 AND k = 1)) FROM a"
        );
    }

    #[test]
    fn aggregating_grouped_and_limited_subqueries_stay() {
        for sql in [
            "SELECT (SELECT count(*) FROM d WHERE d.k = t.k) FROM t",
            "SELECT (SELECT max(v) + 1 FROM d WHERE d.k = t.k) FROM t",
            "SELECT (SELECT v FROM d WHERE d.k = t.k ORDER BY v LIMIT 1) FROM t",
            "SELECT (SELECT DISTINCT v FROM d) FROM t",
            "SELECT (SELECT d.v FROM d WHERE d.k > t.k) FROM t",
            "SELECT * FROM t WHERE a IN (SELECT v FROM d)",
            "SELECT * FROM t WHERE EXISTS (SELECT v FROM d WHERE d.k = t.k)",
        ] {
            assert_eq!(rewrite(sql), sql);
        }
    }
}
