//! The write router: `INSERT … VALUES` of a few rows, and `UPDATE` and
//! `DELETE` by the whole primary key, without DataFusion planning.
//!
//! Planning a one-row write through DataFusion (SQL to a logical plan, the
//! logical optimizer, physical planning and its optimizer) made a one-client
//! `UPDATE … WHERE pk = v` take 3.3 ms; routed, it takes 0.7 ms, read and
//! write included (`docs/benchmarks.md`).
//! As the point-query router ([`crate::point_query`]) does for reads, this
//! module recognizes three shapes on the parsed statement, after the
//! coordinator's rewrites (the `DEFAULT` keyword, identity columns,
//! `RETURNING` and `ON CONFLICT DO NOTHING` are already taken care of):
//!
//! - `INSERT INTO t [(columns)] VALUES (…)[, …]`, up to [`ROUTED_ROWS`] rows;
//! - `UPDATE t SET c = expr, … WHERE pk1 = v1 AND …`, pinning every
//!   primary-key column with one equality and nothing else;
//! - `DELETE FROM t WHERE pk1 = v1 AND …`, likewise.
//!
//! Each value is still computed by DataFusion: its expression is converted
//! from the syntax tree, type-coerced and cast to its column's type as the
//! planner would, and evaluated over the one row (the old row, for UPDATE).
//! Only the plan around it is skipped. The new rows then pass the same
//! checks ([`check_value`](crate::write::check_value), CHECK constraints)
//! and the same [`RowRouter`] (write gates, cut-over checks, the
//! statement's transaction) as the planned operators' rows, so answers and
//! errors are the same either way. What the router cannot evaluate on its
//! own (an aggregate, a subquery, an unknown column, a parameter without a
//! value, a key value that does not convert losslessly) makes
//! [`PointWrite::execute`] answer `None` before anything is written, and the
//! caller plans the statement instead.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::Schema;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DFSchemaRef, ParamValues, ScalarValue};
use datafusion::execution::SessionState;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{cast, lit, Expr as LogicalExpr};
use datafusion::optimizer::simplify_expressions::{ExprSimplifier, SimplifyContext};
use datafusion::physical_expr::create_physical_expr;
use datafusion::sql::sqlparser::ast::{
    visit_expressions, AssignmentTarget, Expr, ExprWithAlias, FromTable, Query, SetExpr, Statement, TableObject,
};
use slicedb_codec::key::row_key;
use slicedb_codec::RowWrite;
use slicedb_common::{ColumnDef, Result};

use crate::direct_value::{DirectValue, OldRow};
use crate::point_query::{equalities, ident_name, object_table, plain_table, PointQuery};
use crate::table::SliceTable;
use crate::text_input::pg_text_input;
use crate::txn::StatementTxn;
use crate::write::{check_rows, insert_write, row_from_batch, values_batch, RowRouter};

/// The most rows of a `VALUES` list the router takes; longer lists are
/// planned, where DataFusion evaluates each column once for all rows.
pub const ROUTED_ROWS: usize = 16;

/// A recognized routable write, before its table is resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum PointWrite {
    Insert {
        table: String,
        /// The target columns as written; `None` is every column in order.
        columns: Option<Vec<String>>,
        rows: Vec<Vec<Expr>>,
        /// `ON CONFLICT DO NOTHING`: rows whose primary key exists are skipped.
        if_absent: bool,
    },
    Update {
        key: PointQuery,
        /// What qualifies the table's columns in the expressions (its alias or name).
        qualifier: String,
        assignments: Vec<(String, Expr)>,
    },
    Delete {
        key: PointQuery,
    },
}

/// What a routed write did.
#[derive(Debug, Default)]
pub struct Written {
    /// Rows inserted, updated or deleted, as the command tag reports them.
    pub count: u64,
    /// The rows written (new rows of INSERT and UPDATE, old rows of
    /// DELETE), in table column order, when asked for (for `RETURNING`).
    pub rows: Vec<RecordBatch>,
}

/// Does the expression hold a subquery (which needs a plan)?
fn has_subquery(e: &Expr) -> bool {
    visit_expressions(e, |e| match e {
        Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// The rows of a plain `VALUES` query.
fn values_rows(q: &Query) -> Option<Vec<Vec<Expr>>> {
    let Query {
        with: None,
        body,
        order_by: None,
        limit_clause: None,
        fetch: None,
        locks,
        for_clause: None,
        settings: None,
        format_clause: None,
        pipe_operators,
    } = q
    else {
        return None;
    };
    if !locks.is_empty() || !pipe_operators.is_empty() {
        return None;
    }
    let SetExpr::Values(values) = body.as_ref() else {
        return None;
    };
    if values.explicit_row || values.value_keyword || values.rows.is_empty() || values.rows.len() > ROUTED_ROWS {
        return None;
    }
    let rows: Vec<Vec<Expr>> = values.rows.iter().map(|r| r.content.clone()).collect();
    if rows.iter().flatten().any(has_subquery) {
        return None;
    }
    Some(rows)
}

impl PointWrite {
    /// Recognizes a routable write on a rewritten statement (its table is
    /// not checked yet). `if_absent` is the rewrite's `ON CONFLICT DO NOTHING`.
    pub fn recognize(stmt: &Statement, if_absent: bool) -> Option<PointWrite> {
        match stmt {
            Statement::Insert(i) => {
                let plain = i.optimizer_hints.is_empty()
                    && i.or.is_none()
                    && !i.ignore
                    && !i.overwrite
                    && i.assignments.is_empty()
                    && i.partitioned.is_none()
                    && i.after_columns.is_empty()
                    && !i.has_table_keyword
                    && i.on.is_none()
                    && i.returning.is_none()
                    && i.output.is_none()
                    && !i.replace_into
                    && i.priority.is_none()
                    && i.insert_alias.is_none()
                    && i.settings.is_none()
                    && i.format_clause.is_none()
                    && i.multi_table_insert_type.is_none()
                    && i.multi_table_into_clauses.is_empty();
                if !plain {
                    return None;
                }
                let TableObject::TableName(name) = &i.table else {
                    return None;
                };
                let table = object_table(name)?;
                let columns = match i.columns.as_slice() {
                    [] => None,
                    cols => Some(
                        cols.iter()
                            .map(|c| match c.0.as_slice() {
                                [part] => part.as_ident().map(ident_name),
                                _ => None,
                            })
                            .collect::<Option<Vec<_>>>()?,
                    ),
                };
                let rows = values_rows(i.source.as_ref()?)?;
                Some(PointWrite::Insert {
                    table,
                    columns,
                    rows,
                    if_absent,
                })
            }
            Statement::Update(u) => {
                let plain = u.optimizer_hints.is_empty()
                    && u.table.joins.is_empty()
                    && u.from.is_none()
                    && u.returning.is_none()
                    && u.output.is_none()
                    && u.or.is_none()
                    && u.order_by.is_empty()
                    && u.limit.is_none();
                if !plain {
                    return None;
                }
                let (table, qualifiers) = plain_table(&u.table.relation)?;
                let mut eqs = Vec::new();
                equalities(u.selection.as_ref()?, &qualifiers, &mut eqs)?;
                let mut assignments: Vec<(String, Expr)> = Vec::with_capacity(u.assignments.len());
                for a in &u.assignments {
                    let AssignmentTarget::ColumnName(name) = &a.target else {
                        return None;
                    };
                    let [part] = name.0.as_slice() else { return None };
                    let column = ident_name(part.as_ident()?);
                    if assignments.iter().any(|(c, _)| *c == column) || has_subquery(&a.value) {
                        return None;
                    }
                    assignments.push((column, a.value.clone()));
                }
                let qualifier = qualifiers.into_iter().next()?;
                Some(PointWrite::Update {
                    key: PointQuery {
                        table,
                        columns: None,
                        equalities: eqs,
                    },
                    qualifier,
                    assignments,
                })
            }
            Statement::Delete(d) => {
                let plain = d.optimizer_hints.is_empty()
                    && d.tables.is_empty()
                    && d.using.is_none()
                    && d.returning.is_none()
                    && d.output.is_none()
                    && d.order_by.is_empty()
                    && d.limit.is_none();
                if !plain {
                    return None;
                }
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
                let [t] = from.as_slice() else { return None };
                if !t.joins.is_empty() {
                    return None;
                }
                let (table, qualifiers) = plain_table(&t.relation)?;
                let mut eqs = Vec::new();
                equalities(d.selection.as_ref()?, &qualifiers, &mut eqs)?;
                Some(PointWrite::Delete {
                    key: PointQuery {
                        table,
                        columns: None,
                        equalities: eqs,
                    },
                })
            }
            _ => None,
        }
    }

    /// The table written, as named.
    pub fn table(&self) -> &str {
        match self {
            PointWrite::Insert { table, .. } => table,
            PointWrite::Update { key, .. } | PointWrite::Delete { key } => &key.table,
        }
    }

    /// Writes in the statement's transaction `txn`, with `state`'s
    /// functions and settings, and the statement's `props` (its start time,
    /// and the session's sequences among the config extensions). `None`
    /// when the statement must be planned instead; then nothing was written.
    #[allow(clippy::too_many_arguments)]
    pub async fn execute(
        &self,
        table: &SliceTable,
        state: &SessionState,
        props: &ExecutionProps,
        txn: Arc<StatementTxn>,
        params: Option<&ParamValues>,
        keep_rows: bool,
    ) -> Result<Option<Written>> {
        match self {
            PointWrite::Insert {
                columns,
                rows,
                if_absent,
                ..
            } => {
                insert(
                    table,
                    state,
                    props,
                    txn,
                    params,
                    columns.as_deref(),
                    rows,
                    *if_absent,
                    keep_rows,
                )
                .await
            }
            PointWrite::Update {
                key,
                qualifier,
                assignments,
            } => update(table, state, props, txn, params, key, qualifier, assignments, keep_rows).await,
            PointWrite::Delete { key } => delete(table, txn, params, key, keep_rows).await,
        }
    }
}

/// A syntax-tree expression as DataFusion's, over `schema`, with the
/// parameters bound; `None` if it cannot be evaluated over one row alone.
fn logical(
    state: &SessionState,
    e: &Expr,
    schema: &DFSchema,
    params: Option<&ParamValues>,
) -> Result<Option<LogicalExpr>> {
    let with_alias = ExprWithAlias {
        expr: e.clone(),
        alias: None,
    };
    // A mistake in the statement is reported by the planner, in its words.
    let Ok(expr) = state.create_logical_expr_from_sql_expr(with_alias, schema) else {
        return Ok(None);
    };
    let needs_plan = expr.exists(|e| {
        Ok(matches!(
            e,
            LogicalExpr::AggregateFunction(_)
                | LogicalExpr::WindowFunction(_)
                | LogicalExpr::ScalarSubquery(_)
                | LogicalExpr::Exists(_)
                | LogicalExpr::InSubquery(_)
                | LogicalExpr::OuterReferenceColumn(..)
                | LogicalExpr::Unnest(_)
                | LogicalExpr::GroupingSet(_)
        ))
    })?;
    if needs_plan {
        return Ok(None);
    }
    let mut unbound = false;
    let expr = expr
        .transform_up(|e| match e {
            LogicalExpr::Placeholder(p) => match params.map(|v| v.get_placeholders_with_values(&p.id)) {
                Some(Ok(v)) => Ok(Transformed::yes(lit(v.value().clone()))),
                _ => {
                    unbound = true;
                    Ok(Transformed::no(LogicalExpr::Placeholder(p)))
                }
            },
            other => Ok(Transformed::no(other)),
        })?
        .data;
    Ok((!unbound).then_some(expr))
}

/// Evaluates `expr`, cast to `column`'s type as the planner casts a value
/// assigned to a column, over `batch` (one row). What
/// `SessionState::create_physical_expr` does, but with the statement's own
/// `props` (its start time, and the session's sequences among the config
/// extensions), so that the session state is shared, not cloned per statement.
///
/// A literal of the column's own type (a bound parameter, usually) is the
/// value itself, and an expression that calls no function is not
/// simplified: the simplifier and the coercion around it were most of a
/// routed UPDATE's time (`docs/benchmarks.md`).
fn evaluate(
    state: &SessionState,
    props: &ExecutionProps,
    expr: LogicalExpr,
    column: &ColumnDef,
    schema: &DFSchemaRef,
    batch: &RecordBatch,
) -> Result<ArrayRef> {
    let target = column.sql_type.arrow_type();
    if let LogicalExpr::Literal(value, None) = &expr {
        if value.data_type() == target {
            return Ok(value.to_array_of_size(batch.num_rows())?);
        }
        if value.is_null() {
            return Ok(new_null_array(&target, batch.num_rows()));
        }
    }
    let config = props
        .config_options()
        .cloned()
        .unwrap_or_else(|| Arc::clone(state.config_options()));
    let expr = pg_text_input(cast(expr, target), schema)?;
    // Coerced, then simplified as the optimizer would: functions such as
    // `now()` are only ever evaluated by the simplifier.
    let simplifier = ExprSimplifier::new(
        SimplifyContext::builder()
            .with_schema(Arc::clone(schema))
            .with_config_options(Arc::clone(&config))
            .with_query_execution_start_time(props.query_execution_start_time)
            .build(),
    );
    let expr = slicedb_common::pg_semantics::postgres_semantics_expr(simplifier.coerce(expr, schema)?, schema)?.data;
    let mut expr = slicedb_common::int_arith::checked_arithmetic(expr, schema.as_ref())?.data;
    if expr.exists(|e| Ok(matches!(e, LogicalExpr::ScalarFunction(_))))? {
        expr = simplifier.simplify(expr)?;
    }
    for rewrite in state.analyzer().function_rewrites() {
        expr = expr.transform_up(|e| rewrite.rewrite(e, schema, &config))?.data;
    }
    let physical = create_physical_expr(&expr, schema, props, &PhysicalPlanningContext::default())?;
    Ok(physical.evaluate(batch)?.into_array(batch.num_rows())?)
}

#[allow(clippy::too_many_arguments)]
async fn insert(
    table: &SliceTable,
    state: &SessionState,
    props: &ExecutionProps,
    txn: Arc<StatementTxn>,
    params: Option<&ParamValues>,
    columns: Option<&[String]>,
    rows: &[Vec<Expr>],
    if_absent: bool,
    keep_rows: bool,
) -> Result<Option<Written>> {
    let def = table.table.clone();
    let targets: Vec<usize> = match columns {
        None => (0..def.columns.len()).collect(),
        Some(names) => match names.iter().map(|n| def.column_index(n)).collect::<Option<Vec<_>>>() {
            Some(t) => t,
            None => return Ok(None),
        },
    };
    let repeated = targets.iter().enumerate().any(|(i, t)| targets[..i].contains(t));
    let fits = |row: &Vec<Expr>| match columns {
        // Without a column list a row may fill the first columns only.
        None => row.len() <= targets.len(),
        Some(_) => row.len() == targets.len(),
    };
    if repeated || !rows.iter().all(fits) {
        return Ok(None);
    }
    let table = table.clone().with_constraints(state)?;
    let empty = Arc::new(DFSchema::empty());
    let one = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    let mut cells: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(rows.len()); def.columns.len()];
    for row in rows {
        for (c, column) in def.columns.iter().enumerate() {
            let given = targets.iter().position(|t| *t == c).and_then(|i| row.get(i));
            let target = column.sql_type.arrow_type();
            if let Some(v) =
                given.and_then(|e| DirectValue::parse(e, &target, None, params, props.query_execution_start_time))
            {
                cells[c].push(ScalarValue::try_from_array(&v.compute(&target, None)?, 0)?);
                continue;
            }
            let expr = match given {
                Some(e) => match logical(state, e, &empty, params)? {
                    Some(expr) => expr,
                    None => return Ok(None),
                },
                None => match table.constraints.defaults.get(c).cloned().flatten() {
                    Some(default) => default,
                    None => lit(ScalarValue::Null),
                },
            };
            let value = evaluate(state, props, expr, column, &empty, &one)?;
            cells[c].push(ScalarValue::try_from_array(&value, 0)?);
        }
    }
    let arrays = cells
        .into_iter()
        .map(ScalarValue::iter_to_array)
        .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
    let n = rows.len();
    let mut writes = Vec::with_capacity(n);
    let if_absent = if_absent && def.has_primary_key();
    for i in 0..n {
        writes.push(match insert_write(&def, row_from_batch(&def, &arrays, i)?)? {
            (bucket, RowWrite::Insert { key, row }) if if_absent => (bucket, RowWrite::InsertIfAbsent { key, row }),
            other => other,
        });
    }
    check_rows(&def, &table.physical_checks(state)?, &arrays, n)?;
    let mut router = RowRouter::new(table, txn);
    for (bucket, w) in writes {
        router.push(bucket, w);
    }
    let affected = router.flush().await?;
    Ok(Some(Written {
        count: if if_absent { affected } else { n as u64 },
        rows: match keep_rows {
            true => vec![values_batch(&def, &arrays, n)?],
            false => Vec::new(),
        },
    }))
}

/// The row at the key, read at the statement's snapshot, with its key.
/// `None` if the statement must be planned; `Some(None)` if there is no row.
async fn read_row(
    table: &SliceTable,
    txn: &StatementTxn,
    params: Option<&ParamValues>,
    key: &PointQuery,
) -> Result<Option<Option<(Vec<u8>, RecordBatch)>>> {
    let Some((bucket, pk)) = key.key(table, params) else {
        return Ok(None);
    };
    let def = &table.table;
    let projection = (0..def.columns.len()).collect();
    let schema = crate::write::nullable_schema(def);
    let (_, batches) = PointQuery::read(table, projection, schema.clone(), bucket, &pk, txn.read).await?;
    let Some(batch) = batches.into_iter().find(|b| b.num_rows() > 0) else {
        return Ok(Some(None));
    };
    Ok(Some(Some((row_key(bucket, &pk)?, batch))))
}

/// How an UPDATE computes one column's new value.
enum Assigned {
    Integer(DirectValue),
    Expr(LogicalExpr),
}

#[allow(clippy::too_many_arguments)]
async fn update(
    table: &SliceTable,
    state: &SessionState,
    props: &ExecutionProps,
    txn: Arc<StatementTxn>,
    params: Option<&ParamValues>,
    key: &PointQuery,
    qualifier: &str,
    assignments: &[(String, Expr)],
    keep_rows: bool,
) -> Result<Option<Written>> {
    let def = table.table.clone();
    let row = OldRow { def: &def, qualifier };
    // DataFusion's schema of the row, made only if an expression needs it.
    let mut schema: Option<DFSchemaRef> = None;
    let mut exprs = Vec::with_capacity(assignments.len());
    for (name, e) in assignments {
        let Some(c) = def.column_index(name) else {
            return Ok(None);
        };
        if let Some(v) = DirectValue::parse(
            e,
            &def.columns[c].sql_type.arrow_type(),
            Some(&row),
            params,
            props.query_execution_start_time,
        ) {
            exprs.push((c, Assigned::Integer(v)));
            continue;
        }
        let schema = match &schema {
            Some(s) => s,
            None => schema.insert(Arc::new(DFSchema::try_from_qualified_schema(
                qualifier,
                &crate::write::nullable_schema(&def),
            )?)),
        };
        let Some(expr) = logical(state, e, schema, params)? else {
            return Ok(None);
        };
        exprs.push((c, Assigned::Expr(expr)));
    }
    let Some(found) = read_row(table, &txn, params, key).await? else {
        return Ok(None);
    };
    let Some((old_key, old)) = found else {
        return Ok(Some(Written::default()));
    };
    let table = table.clone().with_constraints(state)?;
    let mut values: Vec<ArrayRef> = old.columns().to_vec();
    for (c, assigned) in exprs {
        values[c] = match (assigned, &schema) {
            (Assigned::Integer(v), _) => v.compute(&def.columns[c].sql_type.arrow_type(), Some(&old))?,
            (Assigned::Expr(expr), Some(schema)) => evaluate(state, props, expr, &def.columns[c], schema, &old)?,
            (Assigned::Expr(_), None) => return Err(slicedb_common::Error::internal("an assignment without a schema")),
        };
    }
    check_rows(&def, &table.physical_checks(state)?, &values, 1)?;
    let row = row_from_batch(&def, &values, 0)?;
    let mut router = RowRouter::new(table, txn);
    router.push_update(&old_key, row)?;
    router.flush().await?;
    Ok(Some(Written {
        count: 1,
        rows: match keep_rows {
            true => vec![values_batch(&def, &values, 1)?],
            false => Vec::new(),
        },
    }))
}

async fn delete(
    table: &SliceTable,
    txn: Arc<StatementTxn>,
    params: Option<&ParamValues>,
    key: &PointQuery,
    keep_rows: bool,
) -> Result<Option<Written>> {
    let Some(found) = read_row(table, &txn, params, key).await? else {
        return Ok(None);
    };
    let Some((old_key, old)) = found else {
        return Ok(Some(Written::default()));
    };
    let bucket = slicedb_codec::key::bucket_of_row_key(&old_key)?;
    let mut router = RowRouter::new(table.clone(), txn);
    router.push(bucket, RowWrite::Delete { key: old_key });
    let count = router.flush().await?;
    Ok(Some(Written {
        count,
        rows: match keep_rows && count > 0 {
            true => vec![old],
            false => Vec::new(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn recognize(sql: &str) -> Option<PointWrite> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        PointWrite::recognize(&stmt, false)
    }

    #[test]
    fn recognizes_routable_writes_only() {
        let Some(PointWrite::Update {
            key,
            qualifier,
            assignments,
        }) = recognize("UPDATE pgbench_accounts SET abalance = abalance + -17 WHERE aid = 42")
        else {
            panic!("not recognized");
        };
        assert_eq!(key.table, "pgbench_accounts");
        assert_eq!(qualifier, "pgbench_accounts");
        assert_eq!(assignments.len(), 1);
        assert_eq!(assignments[0].0, "abalance");
        let Some(PointWrite::Insert {
            table, columns, rows, ..
        }) = recognize("INSERT INTO public.h (tid, \"Bid\") VALUES ($1, CURRENT_TIMESTAMP), (2, 3)")
        else {
            panic!("not recognized");
        };
        assert_eq!(table, "h");
        assert_eq!(columns, Some(vec!["tid".to_string(), "Bid".to_string()]));
        assert_eq!(rows.len(), 2);
        assert!(matches!(
            recognize("DELETE FROM t AS x WHERE x.a = 1 AND b = $2"),
            Some(PointWrite::Delete { key }) if key.equalities.len() == 2
        ));

        for sql in [
            "UPDATE t SET a = 1",
            "UPDATE t SET a = 1 WHERE a > 1",
            "UPDATE t SET a = 1 WHERE id = 1 OR id = 2",
            "UPDATE t SET a = (SELECT max(a) FROM t) WHERE id = 1",
            "UPDATE t SET a = 1, a = 2 WHERE id = 1",
            "UPDATE t SET (a, b) = (1, 2) WHERE id = 1",
            "UPDATE t SET a = 1 FROM u WHERE t.id = u.id",
            "UPDATE t SET a = 1 WHERE id = 1 RETURNING a",
            "DELETE FROM t",
            "DELETE FROM t WHERE id IN (SELECT id FROM u)",
            "DELETE FROM t USING u WHERE t.id = u.id",
            "INSERT INTO t SELECT * FROM u",
            "INSERT INTO t VALUES ((SELECT 1))",
            "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING",
            "INSERT INTO other.t VALUES (1)",
        ] {
            assert_eq!(recognize(sql), None, "{sql}");
        }
        let many = format!("INSERT INTO t VALUES {}", vec!["(1)"; ROUTED_ROWS + 1].join(", "));
        assert_eq!(recognize(&many), None);
    }
}
