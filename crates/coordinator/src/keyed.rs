//! Writes by key, one row at a time: `UPDATE` and `DELETE` that need a
//! query to find their rows — a subquery in `WHERE` or `SET`, `UPDATE …
//! FROM`, `DELETE … USING` — and the steps of an upsert
//! ([`crate::upsert`]).
//!
//! DataFusion's UPDATE and DELETE hooks receive only filters over the
//! target table, so these statements are run in two steps, in the
//! statement's transaction and with its statement number:
//!
//! 1. a query finds the rows: `SELECT <primary key>, <new values> FROM
//!    <target> [, <FROM / USING tables>] [WHERE …]`, at the statement's
//!    snapshot (DataFusion decorrelates its subqueries);
//! 2. each row found is written by its key, through the write router:
//!    `UPDATE t SET c = $v … WHERE pk = $k …` or `DELETE FROM t WHERE pk =
//!    $k …`. A row the query finds twice (an `UPDATE … FROM` join with
//!    several matches) is written once, with its first match, as
//!    PostgreSQL does.
//!
//! A row changed by another transaction after the statement's snapshot
//! fails the write with 40001 (under `READ COMMITTED` the statement starts
//! again at a new snapshot, as any write does). Each row costs a point
//! write, so a statement that changes many rows this way is slower than a
//! plain `UPDATE … WHERE`; `docs/sql.md` says so.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::DataFrame;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, Expr};
use slicedb_common::{err, Error, Result};
use slicedb_planner::point_write::PointWrite;
use slicedb_planner::txn::StatementTxn;

use crate::ddl::{normalize, relation_name};
use crate::execute::PlanKind;
use crate::parser::{self, Statement};
use crate::sequence::SessionValues;
use crate::Coordinator;

/// A one-row write, ready for a row's parameters.
pub(crate) struct RowWrite {
    statement: ast::Statement,
    routed: Option<PointWrite>,
    /// The plan, when the router does not take the statement (one it
    /// takes is planned only if it declines a row).
    plan: Option<LogicalPlan>,
    /// `ON CONFLICT DO NOTHING`.
    do_nothing: bool,
}

/// `name` as a quoted SQL identifier.
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Does `stmt` need its rows found by a query first (see the module
/// documentation)?
pub(crate) fn needs_query(stmt: &ast::Statement) -> bool {
    let has_subquery = |e: &Expr| {
        ast::visit_expressions(e, |e| match e {
            Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    };
    match stmt {
        ast::Statement::Update(u) => {
            u.from.is_some()
                || u.selection.as_ref().is_some_and(has_subquery)
                || u.assignments.iter().any(|a| has_subquery(&a.value))
        }
        ast::Statement::Delete(d) => d.using.is_some() || d.selection.as_ref().is_some_and(has_subquery),
        _ => false,
    }
}

/// The statement's query (step 1), the one-row write (step 2) with its
/// parameters after the statement's own `user_params`, and how many key
/// columns lead the query's rows.
struct KeyedPlan {
    query: String,
    write: String,
    keys: usize,
}

impl Coordinator {
    /// The query and the one-row write of `stmt`, an UPDATE or DELETE
    /// [`needs_query`] (after [`crate::rewrite`]).
    fn keyed_plan(&self, stmt: &ast::Statement, user_params: usize) -> Result<KeyedPlan> {
        let (target, alias, mut from) = match stmt {
            ast::Statement::Update(u) => {
                if !u.table.joins.is_empty() {
                    return Err(err!(FeatureNotSupported, "UPDATE of a join is not supported"));
                }
                let from = match &u.from {
                    Some(ast::UpdateTableFromKind::BeforeSet(t) | ast::UpdateTableFromKind::AfterSet(t)) => {
                        t.iter().map(|t| t.to_string()).collect()
                    }
                    None => Vec::new(),
                };
                match &u.table.relation {
                    ast::TableFactor::Table { name, alias, .. } => (name, alias.as_ref(), from),
                    _ => return Err(err!(FeatureNotSupported, "UPDATE of this relation is not supported")),
                }
            }
            ast::Statement::Delete(d) => {
                let tables = match &d.from {
                    ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
                };
                let from = d.using.iter().flatten().map(|t| t.to_string()).collect();
                match tables.as_slice() {
                    [ast::TableWithJoins {
                        relation: ast::TableFactor::Table { name, alias, .. },
                        joins,
                    }] if joins.is_empty() => (name, alias.as_ref(), from),
                    _ => return Err(err!(FeatureNotSupported, "DELETE from several tables is not supported")),
                }
            }
            _ => return Err(Error::internal("a keyed write that is neither UPDATE nor DELETE")),
        };
        let table = self.catalog.snapshot().table(&relation_name(target)?)?.clone();
        let qualifier = match alias {
            Some(a) => quoted(&normalize(&a.name)),
            None => target.to_string(),
        };
        let target_sql = match alias {
            Some(a) => format!("{target} AS {}", a.name),
            None => target.to_string(),
        };
        from.insert(0, target_sql);
        let key_names: Vec<String> = table
            .primary_key
            .iter()
            .map(|k| quoted(&table.columns[*k].name))
            .collect();
        let mut select: Vec<String> = key_names.iter().map(|k| format!("{qualifier}.{k}")).collect();
        let param = |i: usize| format!("${}", user_params + i + 1);
        let key_filter: Vec<String> = key_names
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} = {}", param(i)))
            .collect();
        let (selection, write) = match stmt {
            ast::Statement::Update(u) => {
                let mut sets = Vec::with_capacity(u.assignments.len());
                for (i, a) in u.assignments.iter().enumerate() {
                    let column = match &a.target {
                        ast::AssignmentTarget::ColumnName(n) => {
                            n.0.last().and_then(|p| p.as_ident()).map(normalize).unwrap_or_default()
                        }
                        ast::AssignmentTarget::Tuple(_) => {
                            return Err(err!(FeatureNotSupported, "SET (a, b) = … is not supported"))
                        }
                    };
                    select.push(format!("({})", a.value));
                    sets.push(format!("{} = {}", quoted(&column), param(key_names.len() + i)));
                }
                let write = format!(
                    "UPDATE {target} SET {} WHERE {}",
                    sets.join(", "),
                    key_filter.join(" AND ")
                );
                (u.selection.as_ref(), write)
            }
            ast::Statement::Delete(d) => (
                d.selection.as_ref(),
                format!("DELETE FROM {target} WHERE {}", key_filter.join(" AND ")),
            ),
            _ => return Err(Error::internal("a keyed write that is neither UPDATE nor DELETE")),
        };
        let mut query = format!("SELECT {} FROM {}", select.join(", "), from.join(", "));
        if let Some(selection) = selection {
            query.push_str(&format!(" WHERE {selection}"));
        }
        Ok(KeyedPlan {
            query,
            write,
            keys: key_names.len(),
        })
    }

    /// The query of `stmt` (step 1), with its parameters, for their types.
    pub(crate) async fn keyed_query_plan(&self, stmt: &ast::Statement) -> Result<LogicalPlan> {
        let plan = self.keyed_plan(stmt, 0)?;
        let query = match parser::parse(&plan.query)?.pop() {
            Some(Statement::Sql(q)) => *q,
            _ => return Err(Error::internal("a keyed query did not parse")),
        };
        let plan = self
            .ctx
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(query)))
            .await?;
        Ok(slicedb_planner::param_casts::type_cast_parameters(plan)?)
    }

    /// Runs `stmt` (see the module documentation) in the statement's
    /// transaction: how many rows it wrote and, with `keep_rows`, the rows.
    pub(crate) async fn keyed_in(
        &self,
        stmt: &ast::Statement,
        kind: PlanKind,
        params: Option<&ParamValues>,
        txn: Arc<StatementTxn>,
        sequences: &SessionValues,
        keep_rows: bool,
    ) -> Result<(u64, Vec<RecordBatch>)> {
        let user: Vec<_> = match params {
            Some(ParamValues::List(v)) => v.clone(),
            _ => Vec::new(),
        };
        let plan = self.keyed_plan(stmt, user.len())?;
        let query = match parser::parse(&plan.query)?.pop() {
            Some(Statement::Sql(q)) => *q,
            _ => return Err(Error::internal("a keyed query did not parse")),
        };
        let rows = self.query_rows(query, params, &txn, sequences).await?;
        let write = self.row_write(&plan.write).await?;
        let mut seen: HashSet<Vec<ScalarValue>> = HashSet::new();
        let (mut count, mut written) = (0u64, Vec::new());
        for batch in &rows {
            for r in 0..batch.num_rows() {
                let mut values = user.clone();
                for col in batch.columns() {
                    values.push(ScalarValue::try_from_array(col, r)?.into());
                }
                let key: Vec<ScalarValue> = values[user.len()..user.len() + plan.keys]
                    .iter()
                    .map(|v| v.value.clone())
                    .collect();
                if !seen.insert(key) {
                    continue;
                }
                let (n, rows) = self
                    .run_row(&write, &ParamValues::List(values), &txn, sequences, kind, keep_rows)
                    .await?;
                count += n;
                written.extend(rows);
            }
        }
        Ok((count, written))
    }

    /// The rows of `query`, evaluated at the statement's snapshot, with
    /// the statement's parameters bound.
    pub(crate) async fn query_rows(
        &self,
        query: ast::Statement,
        params: Option<&ParamValues>,
        stmt: &Arc<StatementTxn>,
        sequences: &SessionValues,
    ) -> Result<Vec<RecordBatch>> {
        let mut state = self.ctx.state();
        let mut plan = state.statement_to_plan(DfStatement::Statement(Box::new(query))).await?;
        if let Some(p) = params {
            plan = plan.replace_params_with_values(p)?;
        }
        state.config_mut().set_extension(stmt.clone());
        state.config_mut().options_mut().extensions.insert(sequences.clone());
        state.mark_start_execution();
        Ok(DataFrame::new(state, plan).collect().await?)
    }

    /// A one-row write statement (with `$n` parameters), parsed and
    /// recognized or planned once, ready to run row after row.
    pub(crate) async fn row_write(&self, sql: &str) -> Result<RowWrite> {
        let statement = match parser::parse(sql)?.pop() {
            Some(Statement::Sql(s)) => *s,
            _ => return Err(Error::internal(format!("a one-row write did not parse: {sql}"))),
        };
        Ok(match self.routed_write(&statement)? {
            Some((routed, rewritten)) => RowWrite {
                statement,
                routed: Some(routed),
                plan: None,
                do_nothing: rewritten.do_nothing,
            },
            None => {
                let planned = self.plan(&statement).await?;
                RowWrite {
                    statement,
                    routed: None,
                    plan: Some(planned.plan),
                    do_nothing: planned.do_nothing,
                }
            }
        })
    }

    /// Runs `write` for one row: how many rows it wrote, and, with
    /// `keep_rows`, the rows.
    pub(crate) async fn run_row(
        &self,
        write: &RowWrite,
        params: &ParamValues,
        stmt: &Arc<StatementTxn>,
        sequences: &SessionValues,
        kind: PlanKind,
        keep_rows: bool,
    ) -> Result<(u64, Vec<RecordBatch>)> {
        if let Some(routed) = &write.routed {
            if let Some(written) = self
                .run_routed(routed, Some(params), stmt, sequences, keep_rows)
                .await?
            {
                let rows = if written.count > 0 { written.rows } else { Vec::new() };
                return Ok((written.count, rows));
            }
        }
        // Declined by the router before it wrote anything, or never routed.
        let plan = match &write.plan {
            Some(plan) => plan.clone(),
            None => self.plan(&write.statement).await?.plan,
        };
        let plan = plan.replace_params_with_values(params)?;
        self.execute_plan(plan, kind, stmt.clone(), sequences, write.do_nothing, keep_rows)
            .await
    }
}
