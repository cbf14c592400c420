//! `x NOT IN (subquery)` inside an `OR`, made to answer as PostgreSQL does.
//!
//! DataFusion plans an `IN (subquery)` that is not a top-level conjunct of
//! a `WHERE` clause as a mark join, whose mark is true or false, never
//! NULL. For `IN` that is harmless in a `WHERE` clause (NULL and false
//! both reject the row), but `NOT IN` turns a NULL answer — `x` is NULL,
//! or the subquery gave a NULL and no match — into true: `WHERE owner NOT
//! IN (SELECT name FROM o) OR …` kept the rows whose owner is NULL, which
//! PostgreSQL rejects. (A top-level conjunct becomes a null-aware anti
//! join, which is right.)
//!
//! So a `NOT IN` reached from the `WHERE` root through `AND`, `OR` and
//! parentheses only, under at least one `OR`, whose subquery is a plain
//! `SELECT e FROM … [WHERE c]` (no aggregate, `GROUP BY` or set
//! operation), becomes
//!
//! ```text
//! NOT EXISTS (SELECT e FROM … WHERE c)
//!   OR (x IS NOT NULL
//!       AND NOT EXISTS (SELECT e FROM … WHERE c AND e IS NULL)
//!       AND x NOT IN (SELECT e FROM … WHERE c))
//! ```
//!
//! which is true exactly when PostgreSQL's `x NOT IN (…)` is: the `NOT
//! IN` left over only meets a non-NULL `x` and a subquery without NULLs,
//! where the mark join is exact. Such a `NOT IN` over any other subquery
//! is refused (0A000) rather than answered wrongly. Elsewhere (a select
//! list, under `NOT`) nothing changes.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, BinaryOperator, Expr, SetExpr, VisitMut, VisitorMut};
use slicedb_common::{err, Error, Result};

/// Rewrites every `WHERE` clause of `stmt` (see the module documentation).
pub fn rewrite(stmt: &mut ast::Statement) -> Result<()> {
    let mut v = Rewriter { failure: None };
    let _ = stmt.visit(&mut v);
    v.failure.map_or(Ok(()), Err)
}

struct Rewriter {
    failure: Option<Error>,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn post_visit_select(&mut self, select: &mut ast::Select) -> ControlFlow<()> {
        if let Some(selection) = select.selection.as_mut() {
            if let Err(e) = rewrite_filter(selection, false) {
                self.failure = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Walks `e` through AND, OR and parentheses; `under_or` says whether an
/// OR lies between it and the root.
fn rewrite_filter(e: &mut Expr, under_or: bool) -> Result<()> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            rewrite_filter(left, under_or)?;
            rewrite_filter(right, under_or)
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Or,
            right,
        } => {
            rewrite_filter(left, true)?;
            rewrite_filter(right, true)
        }
        Expr::Nested(inner) => rewrite_filter(inner, under_or),
        Expr::InSubquery {
            expr,
            subquery,
            negated: true,
        } if under_or => {
            let Some((projection, selection)) = plain_select(subquery) else {
                return Err(err!(
                    FeatureNotSupported,
                    "NOT IN (subquery) under OR is supported for a plain SELECT subquery only; write it with NOT EXISTS"
                ));
            };
            let is_null = Expr::IsNull(Box::new(Expr::Nested(Box::new(projection))));
            let mut with_null = subquery.clone();
            set_selection(
                &mut with_null,
                match selection {
                    Some(c) => Expr::BinaryOp {
                        left: Box::new(Expr::Nested(Box::new(c))),
                        op: BinaryOperator::And,
                        right: Box::new(is_null),
                    },
                    None => is_null,
                },
            );
            let empty = Expr::Exists {
                subquery: subquery.clone(),
                negated: true,
            };
            let no_null = Expr::Exists {
                subquery: with_null,
                negated: true,
            };
            let checked = Expr::BinaryOp {
                left: Box::new(Expr::BinaryOp {
                    left: Box::new(Expr::IsNotNull(expr.clone())),
                    op: BinaryOperator::And,
                    right: Box::new(no_null),
                }),
                op: BinaryOperator::And,
                right: Box::new(Expr::InSubquery {
                    expr: expr.clone(),
                    subquery: subquery.clone(),
                    negated: true,
                }),
            };
            *e = Expr::Nested(Box::new(Expr::BinaryOp {
                left: Box::new(empty),
                op: BinaryOperator::Or,
                right: Box::new(Expr::Nested(Box::new(checked))),
            }));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The one projected expression and the `WHERE` clause of a plain
/// `SELECT e FROM … [WHERE c]` (no aggregate, grouping, set operation).
fn plain_select(q: &ast::Query) -> Option<(Expr, Option<Expr>)> {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let grouped = match &s.group_by {
        ast::GroupByExpr::All(_) => true,
        ast::GroupByExpr::Expressions(e, _) => !e.is_empty(),
    };
    if grouped || s.having.is_some() || q.limit_clause.is_some() || s.projection.len() != 1 {
        return None;
    }
    let e = match &s.projection[0] {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return None,
    };
    // An aggregate in the projection (its NULL is not a row's).
    let aggregate = ast::visit_expressions(e, |x| match x {
        Expr::Function(f) if is_aggregate(&f.name.to_string()) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    if aggregate.is_break() {
        return None;
    }
    Some((e.clone(), s.selection.clone()))
}

fn is_aggregate(name: &str) -> bool {
    let name = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
    matches!(
        name.as_str(),
        "count" | "sum" | "min" | "max" | "avg" | "array_agg" | "string_agg" | "bool_and" | "bool_or" | "every"
    )
}

fn set_selection(q: &mut ast::Query, selection: Expr) {
    if let SetExpr::Select(s) = q.body.as_mut() {
        s.selection = Some(selection);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{parse, Statement};

    /// The statement as the parser gives it (it applies [`rewrite`]).
    fn rewritten(sql: &str) -> Result<String> {
        match parse(sql)?.pop() {
            Some(Statement::Sql(s)) => Ok(s.to_string()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_not_in_under_or_changes() {
        let top = "SELECT a FROM t WHERE a NOT IN (SELECT b FROM u) AND c = 1";
        assert_eq!(rewritten(top).unwrap(), top, "a top-level conjunct is right already");
        let listed = "SELECT a NOT IN (SELECT b FROM u) OR c FROM t";
        assert_eq!(rewritten(listed).unwrap(), listed, "select lists keep NULL");
        let q = rewritten("SELECT a FROM t WHERE a NOT IN (SELECT b FROM u WHERE u.k = 2) OR c = 1").unwrap();
        assert!(
            q.contains("NOT EXISTS (SELECT b FROM u WHERE (u.k = 2) AND (b) IS NULL)"),
            "{q}"
        );
        assert!(q.contains("a IS NOT NULL"), "{q}");
        let e = rewritten("SELECT a FROM t WHERE a NOT IN (SELECT max(b) FROM u) OR c = 1").unwrap_err();
        assert_eq!(e.state.code(), "0A000");
    }
}
