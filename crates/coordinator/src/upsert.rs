//! `INSERT … ON CONFLICT (primary key or unique index) DO UPDATE SET … [WHERE …]`.
//!
//! PostgreSQL inserts each proposed row or, when a row with its key
//! exists, updates that row with the `SET` list, in which `EXCLUDED.c` is
//! the proposed row's value of `c` and the table's columns are the
//! existing row's; the optional `WHERE` decides whether the existing row
//! is updated at all. The command tag counts rows inserted or updated.
//!
//! slicedb runs it row by row, in the statement's transaction and with its
//! statement number, as two writes of the kinds the write router knows
//! ([`slicedb_planner::point_write`]):
//!
//! 1. `INSERT INTO t (cols) VALUES ($1, …) ON CONFLICT DO NOTHING`: the
//!    slice server that owns the key inserts the row, under the row's
//!    lock, if no row has the key;
//! 2. if it did not, `UPDATE t SET … WHERE pk = $k … [AND (where)]`, with
//!    `EXCLUDED.c` bound to the proposed value (a column the INSERT left
//!    out is its default).
//!
//! A row deleted between the two is inserted after all (step 1 again, at
//! most [`ATTEMPTS`] times, the last one without `ON CONFLICT`, so that a
//! conflict on another constraint than the target fails with its 23505).
//! The conflict target is the primary key or a unique index: the row to
//! update is found by its columns. The proposed rows are the INSERT's source
//! (its `VALUES` or query) evaluated first, at the statement's snapshot.
//! Two proposed rows with the same key fail with 21000, as in PostgreSQL.
//! Under `READ COMMITTED` a row committed after the statement's snapshot
//! restarts the whole statement, as for any write.
//!
//! With `RETURNING`, the rows each step wrote are kept and the list is
//! evaluated over them at the end, as for any write. `ON CONFLICT DO
//! NOTHING … RETURNING` runs the same way without step 2, so that only the
//! rows inserted are returned (the one-statement path of `DO NOTHING`
//! knows how many rows it skipped, not which). The primary-key
//! columns must be among the INSERT's columns (0A000 otherwise).

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::sqlparser::ast::{self, Expr};
use slicedb_common::{err, Error, Result, TableDef};
use slicedb_planner::txn::StatementTxn;

use crate::ddl::{normalize, relation_name};
use crate::execute::PlanKind;
use crate::keyed::quoted;
use crate::rewrite::{default_expr, Upsert};
use crate::sequence::SessionValues;
use crate::Coordinator;

/// How many times a row whose conflicting row vanished before its update
/// is tried again.
const ATTEMPTS: usize = 3;

/// `EXCLUDED.c` in `e` becomes the placeholder of `c`'s proposed value
/// (`$n` for the `n`th of `params`), or `c`'s default when the INSERT left
/// it out.
fn bind_excluded(e: &mut Expr, table: &TableDef, columns: &[usize], first_param: usize) -> Result<()> {
    let mut failure = None;
    let _ = ast::visit_expressions_mut(e, |e| {
        let Expr::CompoundIdentifier(parts) = e else {
            return ControlFlow::Continue(());
        };
        if parts.len() != 2 || normalize(&parts[0]) != "excluded" {
            return ControlFlow::Continue(());
        }
        let name = normalize(&parts[1]);
        let Some(c) = table.column_index(&name) else {
            failure = Some(err!(UndefinedColumn, "column excluded.{name} does not exist"));
            return ControlFlow::Break(());
        };
        *e = match columns.iter().position(|p| *p == c) {
            Some(i) => Expr::Value(ast::Value::Placeholder(format!("${}", first_param + i + 1)).into()),
            None => match default_expr(table, c) {
                Ok(d) => Expr::Nested(Box::new(d)),
                Err(e) => {
                    failure = Some(e);
                    return ControlFlow::Break(());
                }
            },
        };
        ControlFlow::Continue(())
    });
    failure.map_or(Ok(()), Err)
}

impl Coordinator {
    /// Runs the upsert `insert` (its `ON CONFLICT` taken off into
    /// `action`) in the statement's transaction `stmt`: how many rows it
    /// inserted or updated, and, with `keep_rows`, those rows.
    pub(crate) async fn upsert_in(
        &self,
        insert: &ast::Statement,
        action: &Upsert,
        params: Option<&ParamValues>,
        stmt: Arc<StatementTxn>,
        sequences: &SessionValues,
        keep_rows: bool,
    ) -> Result<(u64, Vec<RecordBatch>)> {
        let ast::Statement::Insert(ins) = insert else {
            return Err(Error::internal("an upsert that is not an INSERT"));
        };
        let update = match action {
            Upsert::DoNothing => None,
            Upsert::DoUpdate(u) => Some(u.as_ref()),
        };
        let ast::TableObject::TableName(name) = &ins.table else {
            return Err(err!(FeatureNotSupported, "ON CONFLICT DO UPDATE of a table function"));
        };
        let table = self.catalog.snapshot().table(&relation_name(name)?)?.clone();
        let columns: Vec<usize> = if ins.columns.is_empty() {
            (0..table.columns.len()).collect()
        } else {
            ins.columns
                .iter()
                .map(|c| {
                    let c = c.0.last().and_then(|p| p.as_ident()).map(normalize).unwrap_or_default();
                    table.column_index(&c).ok_or_else(|| {
                        err!(
                            UndefinedColumn,
                            "column \"{c}\" of relation \"{}\" does not exist",
                            table.name
                        )
                    })
                })
                .collect::<Result<_>>()?
        };
        // DO NOTHING needs no key: each row is inserted or skipped. DO
        // UPDATE finds the existing row by the conflict target's columns.
        let key_columns = match update {
            Some(u) => u.target.as_deref().unwrap_or(&table.primary_key[..]),
            None => &[],
        };
        let key: Vec<usize> = key_columns
            .iter()
            .map(|k| {
                columns.iter().position(|c| c == k).ok_or_else(|| {
                    err!(
                        FeatureNotSupported,
                        "ON CONFLICT DO UPDATE needs the conflict target's column \"{}\" in the column list",
                        table.columns[*k].name
                    )
                })
            })
            .collect::<Result<_>>()?;
        // The constraint the target names (for telling its conflicts apart).
        let target_name = match update.and_then(|u| u.target.as_ref()) {
            Some(cols) => table
                .indexes
                .iter()
                .find(|i| i.unique && i.is_plain() && &i.columns == cols)
                .map(|i| i.name.clone())
                .unwrap_or_default(),
            None => table.pkey_name(),
        };
        let user_params = match params {
            Some(ParamValues::List(v)) => v.len(),
            _ => 0,
        };
        let rows = self.proposed_rows(ins, params, &stmt, sequences).await?;
        // The two writes, prepared once.
        let names: Vec<String> = columns.iter().map(|c| quoted(&table.columns[*c].name)).collect();
        let placeholders: Vec<String> = (0..columns.len())
            .map(|i| format!("${}", user_params + i + 1))
            .collect();
        let insert_sql = format!(
            "INSERT INTO {name} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
            names.join(", "),
            placeholders.join(", ")
        );
        let insert_one = self.row_write(&insert_sql).await?;
        let update_one = match update {
            Some(update) => {
                let mut sets = Vec::with_capacity(update.assignments.len());
                for a in &update.assignments {
                    let mut value = a.value.clone();
                    bind_excluded(&mut value, &table, &columns, user_params)?;
                    sets.push(format!("{} = {value}", a.target));
                }
                let mut filter: Vec<String> = key
                    .iter()
                    .map(|i| format!("{} = {}", names[*i], placeholders[*i]))
                    .collect();
                if let Some(selection) = &update.selection {
                    let mut selection = selection.clone();
                    bind_excluded(&mut selection, &table, &columns, user_params)?;
                    filter.push(format!("({selection})"));
                }
                let alias = ins
                    .table_alias
                    .as_ref()
                    .map(|a| format!(" AS {}", a.alias))
                    .unwrap_or_default();
                let update_sql = format!(
                    "UPDATE {name}{alias} SET {} WHERE {}",
                    sets.join(", "),
                    filter.join(" AND ")
                );
                Some((update, self.row_write(&update_sql).await?))
            }
            None => None,
        };

        let mut seen: HashSet<Vec<ScalarValue>> = HashSet::new();
        let mut count = 0u64;
        let mut written = Vec::new();
        for batch in &rows {
            if batch.num_columns() != columns.len() {
                return Err(err!(
                    SyntaxError,
                    "INSERT has {} expressions for {} target columns",
                    batch.num_columns(),
                    columns.len()
                ));
            }
            for r in 0..batch.num_rows() {
                let mut values = match params {
                    Some(ParamValues::List(v)) => v.clone(),
                    _ => Vec::new(),
                };
                for col in batch.columns() {
                    values.push(ScalarValue::try_from_array(col, r)?.into());
                }
                let row_key: Vec<ScalarValue> = key.iter().map(|i| values[user_params + i].value.clone()).collect();
                if update_one.is_some() && !seen.insert(row_key) {
                    return Err(err!(
                        CardinalityViolation,
                        "ON CONFLICT DO UPDATE command cannot affect row a second time"
                    ));
                }
                let values = ParamValues::List(values);
                let mut attempt = 0;
                loop {
                    let (inserted, rows) = self
                        .run_row(&insert_one, &values, &stmt, sequences, PlanKind::Insert, keep_rows)
                        .await?;
                    if inserted > 0 {
                        count += inserted;
                        written.extend(rows);
                        break;
                    }
                    // DO NOTHING: the row is skipped.
                    let Some((update, update_one)) = &update_one else {
                        break;
                    };
                    let (updated, rows) = self
                        .run_row(update_one, &values, &stmt, sequences, PlanKind::Update, keep_rows)
                        .await?;
                    count += updated;
                    written.extend(rows);
                    attempt += 1;
                    // Updated, or left alone by the WHERE clause: done. A row
                    // that vanished in between is inserted after all.
                    if updated > 0 || update.selection.is_some() {
                        break;
                    }
                    if attempt == ATTEMPTS {
                        // No row to update by the target, yet the insert
                        // conflicts: with another constraint than the
                        // target, whose error (23505) the plain INSERT gives.
                        let strict = self
                            .row_write(insert_sql.trim_end_matches(" ON CONFLICT DO NOTHING"))
                            .await?;
                        // A conflict on the target itself is a row that
                        // this statement's snapshot does not see: 40001,
                        // and the statement starts again at a new one.
                        let (inserted, rows) = self
                            .run_row(&strict, &values, &stmt, sequences, PlanKind::Insert, keep_rows)
                            .await
                            .map_err(|e| match e.state {
                                slicedb_common::SqlState::UniqueViolation
                                    if e.message.contains(&format!("\"{target_name}\"")) =>
                                {
                                    err!(
                                        SerializationFailure,
                                        "could not serialize access: the row conflicting with the INSERT kept changing"
                                    )
                                }
                                _ => e,
                            })?;
                        count += inserted;
                        written.extend(rows);
                        break;
                    }
                }
            }
        }
        Ok((count, written))
    }

    /// The INSERT's source rows, evaluated at the statement's snapshot.
    async fn proposed_rows(
        &self,
        ins: &ast::Insert,
        params: Option<&ParamValues>,
        stmt: &Arc<StatementTxn>,
        sequences: &SessionValues,
    ) -> Result<Vec<RecordBatch>> {
        let Some(source) = &ins.source else {
            return Err(err!(
                FeatureNotSupported,
                "ON CONFLICT DO UPDATE without VALUES or a query"
            ));
        };
        self.query_rows(ast::Statement::Query(source.clone()), params, stmt, sequences)
            .await
    }
}
