//! `ALTER TABLE t ALTER [COLUMN] c [SET DATA] TYPE ty [USING expr]` where
//! the stored values change: a rewrite of the table into new storage.
//!
//! PostgreSQL rewrites the table into a new relfilenode under an ACCESS
//! EXCLUSIVE lock. slicedb does the same with its own pieces:
//!
//! 1. **Hold** the table's write gates (writers wait), and wait for the
//!    transactions that wrote to it before to end (their rows must be in
//!    the snapshot the rewrite reads; 55P03 after
//!    [`crate::index_build::OPEN_WRITERS_LIMIT`]).
//! 2. **Reserve** new storage ids in the catalog for the table and each of
//!    its indexes ([`Change::ReserveTableIds`]), so that nothing else takes
//!    them while the rewrite fills them.
//! 3. **Convert and write**: read every row at one snapshot, compute the
//!    column's new value (`CAST(c AS ty)`, or the `USING` expression, planned
//!    by the session's rules, so the conversion is the one a query's cast
//!    makes), check it against the new type (length, precision, NOT NULL),
//!    and insert the row into the new storage in one transaction, through a
//!    [`RowRouter`] that keeps the new indexes' entries. A row whose
//!    distribution key changes its hash lands in its new bucket; one whose
//!    primary key changes gets its new key (a collision is 23505).
//! 4. **Switch**: commit, then put the new definition (new ids, the new
//!    type) in the catalog, with the foreign keys of other tables pointed at
//!    the new id. Writers that waited start over on it (40001 for a write
//!    planned before: `LiveRouting::live_table`).
//! 5. **Drop** the old storage.
//!
//! Any error before step 4 rolls the transaction back: the table keeps its
//! old type and rows. A coordinator killed between the commit and the switch
//! leaves the old table as it was and the new storage unreferenced.
//!
//! As in PostgreSQL, the rewrite is not MVCC-safe: a transaction whose
//! snapshot is older than the rewrite sees the table empty afterwards.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::{provider_as_source, TableProvider};
use datafusion::logical_expr::{col, Expr, ExprSchemable, LogicalPlanBuilder};
use datafusion::sql::sqlparser::ast;
use futures::StreamExt;
use slicedb_catalog::Change;
use slicedb_common::{err, Datum, Error, Result, SqlType, TableDef};
use slicedb_planner::write::{bucket_of_row, check_value, insert_write, RowRouter};
use slicedb_planner::SliceTable;
use slicedb_storage::RowWrite;

use crate::alter::row_keys;
use crate::index_build::OPEN_WRITERS_LIMIT;
use crate::Coordinator;

impl Coordinator {
    /// Changes the type of column `column` of table `name` to `new` by a
    /// rewrite (see the module comment).
    pub(crate) async fn rewrite_column_type(
        &self,
        name: &str,
        column: usize,
        new: SqlType,
        using: Option<&ast::Expr>,
    ) -> Result<()> {
        let table = self.catalog.snapshot().table(name)?;
        let old = table.columns[column].sql_type;
        if using.is_none() && !assignment_cast(old, new) {
            let c = &table.columns[column].name;
            return Err(err!(
                DatatypeMismatch,
                "column \"{c}\" cannot be cast automatically to type {}",
                new.pg_name()
            ));
        }
        refuse_unsupported(&self.catalog.snapshot(), &table, column)?;
        let gates = self.holds.current(table.id);
        let _hold = gates.hold(0).await;
        let earlier_writers = self.txns.open_writers(table.id, 0)?;
        self.txns
            .wait_finished(
                &earlier_writers,
                OPEN_WRITERS_LIMIT,
                "could not alter the column's type",
            )
            .await?;
        slicedb_common::failpoint::failpoint_async("alter-type-rewrite").await;
        // Under the hold: the definition cannot change under us any more.
        let snapshot = self.catalog.snapshot();
        let table = snapshot.table(name)?;
        refuse_unsupported(&snapshot, &table, column)?;
        let mut new_def = (*table).clone();
        new_def.columns[column].sql_type = new;
        if new_def.primary_key.contains(&column) || new_def.indexes.iter().any(|i| i.columns.contains(&column)) {
            crate::index::check_key_type(&new_def.columns[column])?;
        }
        for index in &new_def.indexes {
            crate::index::check_functions(&new_def, &index.columns, &index.functions)?;
        }
        if let Some(default) = new_def.columns[column].default.clone() {
            self.check_default_expr(&new_def.columns[column], &default)?;
        }
        // The new storage holds every column in place: no dropped slots,
        // no values missing from short rows.
        new_def.dropped.clear();
        for c in &mut new_def.columns {
            c.missing = None;
        }
        let count = 1 + new_def.indexes.len() as u32;
        let mut first = 0;
        self.catalog.update(|state| {
            first = state.next_table_id();
            Ok(vec![Change::ReserveTableIds { below: first + count }])
        })?;
        new_def.id = first;
        for (k, index) in new_def.indexes.iter_mut().enumerate() {
            index.id = first + 1 + k as u32;
            index.usable_from = 0;
        }
        for fk in &mut new_def.foreign_keys {
            if fk.ref_table == table.id {
                fk.ref_table = new_def.id;
            }
        }
        let source = self.slice_table(name)?;
        let target = SliceTable::new(
            Arc::new(new_def.clone()),
            source.map.clone(),
            source.cluster.clone(),
            source.routing.clone(),
        );
        let mut txn = self.txns.begin().await?;
        let written = async {
            let stmt = txn.statement();
            let mut rows = self.converted_rows(&source, column, new, using, stmt.clone()).await?;
            let mut router = RowRouter::new(target, stmt).rewriting();
            let types = new_def.column_types();
            while let Some(batch) = rows.next().await {
                let batch = batch?;
                let keys = row_keys(&batch, types.len())?;
                for i in 0..batch.num_rows() {
                    let mut row: Vec<Datum> = types
                        .iter()
                        .enumerate()
                        .map(|(c, ty)| Datum::from_array(batch.column(c).as_ref(), i, *ty))
                        .collect::<Result<_>>()?;
                    row[column] = check_value(&new_def, column, std::mem::replace(&mut row[column], Datum::Null))?;
                    let old_key = keys.value(i);
                    let old_bucket = slicedb_storage::key::bucket_of_row_key(old_key)?;
                    if new_def.has_primary_key() {
                        let (bucket, write) = insert_write(&new_def, row)?;
                        router.push(bucket, write);
                    } else {
                        // A row id stays while the row stays in its bucket.
                        let bucket = bucket_of_row(&new_def, &row);
                        router.push(
                            bucket,
                            match bucket == old_bucket {
                                true => RowWrite::Insert {
                                    key: old_key.to_vec(),
                                    row,
                                },
                                false => RowWrite::InsertWithRowId { bucket, row },
                            },
                        );
                    }
                }
                router.flush_if_full().await?;
            }
            router.flush().await?;
            Ok::<(), Error>(())
        };
        match written.await {
            Ok(()) => self.txns.commit_rewrite(&mut txn, Arc::new(new_def.clone())).await?,
            Err(e) => {
                self.txns.rollback(&mut txn).await;
                self.delete_storage(&new_def, &table.hash_map).await;
                return Err(e);
            }
        }
        slicedb_common::failpoint::failpoint_async("alter-type-before-switch").await;
        self.catalog.update(|state| {
            let now = state.table(name)?;
            if now.id != table.id {
                return Err(err!(
                    UndefinedTable,
                    "relation \"{name}\" was dropped during ALTER TABLE"
                ));
            }
            let mut changes = vec![Change::PutTable(new_def.clone())];
            for other in state.tables.values().filter(|t| t.id != table.id) {
                if other.foreign_keys.iter().any(|f| f.ref_table == table.id) {
                    let mut other = (**other).clone();
                    for fk in &mut other.foreign_keys {
                        if fk.ref_table == table.id {
                            fk.ref_table = new_def.id;
                        }
                    }
                    changes.push(Change::PutTable(other));
                }
            }
            Ok(changes)
        })?;
        self.delete_storage(&table, &table.hash_map).await;
        Ok(())
    }

    /// Every row of `source` with its key last, column `column` converted
    /// to `new` (by `using`, or by a cast of the column), at `stmt`'s
    /// snapshot.
    async fn converted_rows(
        &self,
        source: &SliceTable,
        column: usize,
        new: SqlType,
        using: Option<&ast::Expr>,
        stmt: Arc<slicedb_planner::txn::StatementTxn>,
    ) -> Result<datafusion::execution::SendableRecordBatchStream> {
        let mut state = self.ctx.state();
        state.config_mut().set_extension(stmt);
        let keyed = source.with_row_key();
        let fields: Vec<String> = keyed.schema().fields().iter().map(|f| f.name().clone()).collect();
        let name = source.table.name.clone();
        let scan = LogicalPlanBuilder::scan(name.as_str(), provider_as_source(Arc::new(keyed)), None)?;
        let schema: DFSchema = scan.schema().as_ref().clone();
        let column_name = &source.table.columns[column].name;
        let sql = match using {
            Some(e) => e.to_string(),
            None => format!("\"{}\"", column_name.replace('"', "\"\"")),
        };
        let value = state.create_logical_expr(&sql, &schema)?;
        let target: DataType = new.arrow_type();
        let value = match value.get_type(&schema)? == target {
            true => value,
            false => value.cast_to(&target, &schema)?,
        };
        // Text read as PostgreSQL's input functions read it.
        let value = slicedb_planner::text_input::pg_text_input(value, &schema)?;
        let projection: Vec<Expr> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| match i == column {
                true => value.clone().alias(f),
                false => col(datafusion::common::Column::new(Some(name.as_str()), f)),
            })
            .collect();
        let plan = scan.project(projection)?.build()?;
        // The cast a query makes: PostgreSQL's rounding to integers, and so on.
        let plan = slicedb_common::pg_semantics::postgres_semantics(plan, state.config_options())?;
        Ok(DataFrame::new(state, plan).execute_stream().await?)
    }

    /// Deletes the rows of a table's storage and of its indexes' (a rewrite's
    /// old storage, or its new one when it failed). Failures are logged:
    /// nothing references the storage any more.
    async fn delete_storage(&self, def: &TableDef, map: &str) {
        let ids = std::iter::once(def.id).chain(def.indexes.iter().map(|i| i.id));
        for id in ids {
            if let Err(e) = self.delete_table_rows(id, map).await {
                tracing::warn!("could not delete the rows of storage {id} of \"{}\": {e}", def.name);
            }
        }
    }
}

/// Does PostgreSQL convert `from` to `to` without a `USING` clause (an
/// implicit or assignment cast)? Between numeric types, to the string
/// types from anything, among the date and time types where PostgreSQL
/// has such a cast, between `json` and `jsonb`, and between arrays whose
/// elements convert so.
fn assignment_cast(from: SqlType, to: SqlType) -> bool {
    use SqlType::*;
    let number = |t: SqlType| matches!(t, SmallInt | Integer | BigInt | Real | Double | Numeric { .. });
    match (from, to) {
        (_, Text | Varchar(_) | Char(_)) => true,
        (a, b) if number(a) && number(b) => true,
        (Date, Timestamp | TimestampTz)
        | (Timestamp | TimestampTz, Date | Timestamp | TimestampTz | Time)
        | (Time, Interval)
        | (Interval, Time)
        | (Json | Jsonb, Json | Jsonb) => true,
        (Array(a), Array(b)) => assignment_cast(a.sql_type(), b.sql_type()),
        (a, b) => a == b,
    }
}

/// What a rewrite does not handle (0A000): columns that a CHECK constraint
/// or a foreign key names (their rules would have to be checked again over
/// the new values), and a table whose index is being built.
fn refuse_unsupported(state: &slicedb_catalog::CatalogState, table: &TableDef, column: usize) -> Result<()> {
    let name = &table.columns[column].name;
    for check in &table.checks {
        if crate::alter::mentions_column(&check.expr, name)? {
            return Err(err!(
                FeatureNotSupported,
                "cannot alter the type of column \"{name}\": check constraint \"{}\" uses it (drop the constraint, alter, add it back)",
                check.name
            ));
        }
    }
    let own = table.foreign_keys.iter().find(|f| f.columns.contains(&column));
    let referencing = state.tables.values().find_map(|t| {
        t.foreign_keys
            .iter()
            .find(|f| f.ref_table == table.id && f.ref_columns.contains(&column))
    });
    if let Some(fk) = own.or(referencing) {
        return Err(err!(
            FeatureNotSupported,
            "cannot alter the type of column \"{name}\": foreign key constraint \"{}\" uses it (drop the constraint, alter, add it back)",
            fk.name
        ));
    }
    if let Some(index) = table.indexes.iter().find(|i| i.building) {
        return Err(err!(
            ObjectInUse,
            "cannot alter table \"{}\" while index \"{}\" is being built",
            table.name,
            index.name
        ));
    }
    Ok(())
}
