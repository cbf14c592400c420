//! Write operators: INSERT, UPDATE and DELETE on a distributed table.
//!
//! DataFusion plans the statement and hands the provider the input rows
//! (INSERT) or a plan that yields each target row's key and, for UPDATE, its
//! new values. The operators here route each row by its bucket to the slice
//! server that owns it under the table's hash map, and send each slice server
//! its rows as one [`SliceRequest::Write`], which it applies as one RocksDB
//! write batch. Slice servers are written in parallel.
//!
//! The rows are pending writes of the statement's transaction
//! ([`crate::txn::StatementTxn`]): nobody else sees them until the
//! coordinator commits the transaction on every slice server it wrote to.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BinaryArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions,
};
use futures::StreamExt;
use slicedb_codec::key::{bucket_of_row_key, row_key};
use slicedb_codec::{RowKey, RowWrite, Seen, TxnWrite};
use slicedb_common::{err, pad_row, Datum, Error, NodeId, Result, SqlType, TableDef, TableId};
use slicedb_hashmap::bucket_of;
use slicedb_transport::{SliceRequest, SliceResponse};

use crate::table::SliceTable;
use crate::txn::StatementTxn;
use crate::write_hold::WritePermit;

/// Rows buffered before a flush to the slice servers.
const FLUSH_ROWS: usize = 16_384;

/// Buffers row writes and sends them, per slice server, in parallel.
pub struct RowRouter {
    target: SliceTable,
    /// Writes with their buckets, in statement order.
    pending: Vec<(u16, RowWrite)>,
    pub(crate) txn: Arc<StatementTxn>,
    /// Pass the table's write gates (off for a caller that holds them).
    gated: bool,
    /// Positions in `pending` of deletes whose row moves to the write that
    /// follows (an update that changes the row's key).
    moves: std::collections::HashSet<usize>,
    /// Writing a table's new storage (`ALTER COLUMN … TYPE`) that the
    /// catalog does not hold yet: its own definition says which indexes and
    /// foreign keys to keep, not the live catalog's.
    rewrite: bool,
}

impl RowRouter {
    pub fn new(target: SliceTable, txn: Arc<StatementTxn>) -> Self {
        RowRouter {
            target,
            pending: Vec::new(),
            txn,
            gated: true,
            moves: Default::default(),
            rewrite: false,
        }
    }

    /// A router that fills the new storage of a table rewritten under its
    /// held gates (see `RowRouter::holding_gates`): its target's definition,
    /// with its own table and index ids, is not in the catalog until the
    /// rewrite commits.
    pub fn rewriting(mut self) -> Self {
        self.gated = false;
        self.rewrite = true;
        self
    }

    /// A router for a caller that holds every gate of the table itself
    /// (a rewrite such as `ADD PRIMARY KEY`), which must not wait for them.
    pub fn holding_gates(mut self) -> Self {
        self.gated = false;
        self
    }

    /// Where the target's buckets live now: the live catalog's placement,
    /// or, for a rewrite's new storage, its own hash map's.
    fn placement(&self) -> Result<Arc<slicedb_hashmap::HashMap>> {
        let routing = &self.target.routing;
        match self.rewrite {
            true => routing.catalog.snapshot().table_map(&self.target.table),
            false => routing.placement(&self.target.table),
        }
    }

    /// The statement's transaction context.
    pub fn statement(&self) -> &Arc<StatementTxn> {
        &self.txn
    }

    pub fn push(&mut self, bucket: u16, write: RowWrite) {
        self.pending.push((bucket, write));
    }

    /// Queues the update of the row at `old_key` to `row` (all columns, in
    /// table order): a put in place, or, when the new values move the row
    /// to another key, a delete of the old key and an insert of the new.
    pub fn push_update(&mut self, old_key: &[u8], row: Vec<Datum>) -> Result<()> {
        let table = self.target.table.clone();
        let old_bucket = bucket_of_row_key(old_key)?;
        let bucket = bucket_of_row(&table, &row);
        if table.has_primary_key() {
            let pk: Vec<Datum> = table.primary_key.iter().map(|c| row[*c].clone()).collect();
            let key = row_key(bucket, &pk)?;
            if key == old_key {
                self.push(bucket, RowWrite::Put { key, row });
            } else {
                self.moves.insert(self.pending.len());
                self.push(old_bucket, RowWrite::Delete { key: old_key.to_vec() });
                self.push(bucket, RowWrite::Insert { key, row });
            }
        } else if bucket == old_bucket {
            self.push(
                bucket,
                RowWrite::Put {
                    key: old_key.to_vec(),
                    row,
                },
            );
        } else {
            self.moves.insert(self.pending.len());
            self.push(old_bucket, RowWrite::Delete { key: old_key.to_vec() });
            self.push(bucket, RowWrite::InsertWithRowId { bucket, row });
        }
        Ok(())
    }

    pub async fn flush_if_full(&mut self) -> Result<u64> {
        if self.pending.len() >= FLUSH_ROWS {
            self.flush().await
        } else {
            Ok(0)
        }
    }

    /// Sends everything buffered; returns the rows the slice servers report affected.
    ///
    /// Rows are routed now, not at planning: under a permit of the table's
    /// write gates ([`crate::write_hold`]), by the catalog's placement of
    /// the moment, so a bucket batch cut over since planning goes to its new
    /// owner and none is written while it is being handed over.
    ///
    /// Each slice server gets its rows as one request; the coordinator
    /// learns which buckets went where (recorded before sending, so that a
    /// failed request is rolled back too).
    pub async fn flush(&mut self) -> Result<u64> {
        let pending = std::mem::take(&mut self.pending);
        let moves = std::mem::take(&mut self.moves);
        if pending.is_empty() {
            return Ok(0);
        }
        let txn = self.txn.writer()?;
        let routing = self.target.routing.clone();
        let table = self.target.table.clone();
        let mut permit = match self.gated {
            true => Some(routing.holds.enter(table.id, pending.iter().map(|(b, _)| *b)).await),
            false => None,
        };
        let catalog = routing.catalog.snapshot();
        let placement = self.placement()?;
        routing
            .cutovers
            .check(table.id, &table.name, txn.start_ts, pending.iter().map(|(b, _)| *b))?;
        // The indexes and foreign keys as the catalog has them now, under
        // the gates: an index built since planning is maintained too.
        let live = match self.rewrite {
            true => table.clone(),
            false => routing.live_table(&table)?,
        };
        if live.dropped != table.dropped {
            // The rows were built for the columns of the plan; the indexes
            // and foreign keys of now name the columns after the drop.
            return Err(err!(
                SerializationFailure,
                "could not write to \"{}\": a column of it was dropped while the statement ran",
                table.name
            ));
        }
        let indexes = &live.indexes;
        // Foreign keys of other tables that reference this one.
        let referencing = crate::foreign_key::referencing(&catalog, table.id);
        let foreign_keys = !live.foreign_keys.is_empty() || !referencing.is_empty();
        let derived = !indexes.is_empty() || foreign_keys;
        // What each write leaves, for the index entries and foreign keys:
        // its key and new row.
        let after: Vec<After> = match derived {
            false => Vec::new(),
            true => pending.iter().map(|(_, w)| write_after(w)).collect(),
        };
        // Inserts of new keys replace no row: what they leave is known now,
        // and their entries go out with the rows.
        let fresh = after.iter().all(|a| a.key.is_some() && !a.if_absent)
            && pending.iter().all(|(_, w)| matches!(w, RowWrite::Insert { .. }));
        let pending = match table.dropped.is_empty() {
            true => pending,
            false => pending.into_iter().map(|(b, w)| (b, stored_write(&table, w))).collect(),
        };
        let batches = Batch::by_owner(&placement, pending);
        let pkey = table.pkey_name();
        let (affected, seen) = if fresh && derived {
            let seen: Vec<Option<Seen>> = after
                .iter()
                .map(|_| {
                    Some(Seen {
                        applied: true,
                        old: None,
                        key: None,
                    })
                })
                .collect();
            let rows = self.send(txn, table.id, &pkey, batches, false);
            let entries = async {
                match indexes.is_empty() {
                    true => Ok(0),
                    false => self.maintain_indexes(txn, &live, &mut permit, &after, &seen).await,
                }
            };
            let (rows, entries) = futures::join!(rows, entries);
            let (affected, _) = rows?;
            entries?;
            (affected, seen)
        } else {
            let (affected, mut seen) = self.send(txn, table.id, &pkey, batches, derived).await?;
            if !table.dropped.is_empty() {
                for s in seen.iter_mut().flatten() {
                    s.old = s.old.take().map(|old| table.visible_row(old));
                }
            }
            let taken_back = match indexes.is_empty() {
                true => 0,
                false => self.maintain_indexes(txn, &live, &mut permit, &after, &seen).await?,
            };
            (affected - taken_back, seen)
        };
        if foreign_keys {
            self.keep_foreign_keys(txn, &catalog, &live, &referencing, &after, &seen, &moves)
                .await?;
        }
        self.txn.add_rows(affected)?;
        Ok(affected)
    }

    /// Writes the index entries that the base writes call for: for each
    /// write that changed a row, the old row's entries go and the new row's
    /// come (unchanged ones stay). Deletions go first, so a statement that
    /// swaps two unique values does not trip over itself.
    ///
    /// A row inserted "if absent" (`ON CONFLICT DO NOTHING`) whose value is
    /// taken in a unique index is skipped as PostgreSQL skips it: its
    /// entries are inserted "if absent" too, and a row one of them could
    /// not take is deleted again with the entries it did take. Returns how
    /// many rows were taken back so.
    ///
    /// Entries live in the table's buckets and move with them: the writer's
    /// `permit` is widened to the entries' buckets, and they are routed by
    /// the placement read after that.
    async fn maintain_indexes(
        &self,
        txn: TxnWrite,
        table: &TableDef,
        permit: &mut Option<WritePermit>,
        after: &[After],
        seen: &[Option<Seen>],
    ) -> Result<u64> {
        let missing = table.missing_values();
        // Rows to take back, and the entries each has taken (index, write).
        let mut skipped: BTreeSet<usize> = BTreeSet::new();
        let mut taken: Vec<(usize, usize, u16, RowKey)> = Vec::new();
        let mut planned = Vec::new();
        for (ix, index) in table.indexes.iter().enumerate() {
            let entries = index.entry_table(table);
            let mut deletes: Vec<(u16, RowWrite)> = Vec::new();
            let mut inserts: Vec<(u16, RowWrite)> = Vec::new();
            let mut inserted_by: Vec<usize> = Vec::new();
            for (pos, (a, found)) in after.iter().zip(seen).enumerate() {
                let Some(found) = found.as_ref().filter(|f| f.applied) else {
                    continue;
                };
                let Some(key) = a.key.as_ref().or(found.key.as_ref()) else {
                    continue;
                };
                let old_entry = found.old.clone().and_then(|mut old| {
                    pad_row(&mut old, &missing);
                    index.entry(&old, key)
                });
                let new_entry = a.row.as_ref().and_then(|row| index.entry(row, key));
                if old_entry == new_entry {
                    continue;
                }
                if let Some(old) = old_entry {
                    let (bucket, w) = insert_write(&entries, old)?;
                    if let RowWrite::Insert { key, .. } = w {
                        // An index being built may not have this entry
                        // yet: its back-fill must find it deleted.
                        deletes.push((
                            bucket,
                            match index.building {
                                true => RowWrite::Erase { key },
                                false => RowWrite::Delete { key },
                            },
                        ));
                    }
                }
                if let Some(new) = new_entry {
                    let (bucket, w) = insert_write(&entries, new)?;
                    inserts.push(match w {
                        RowWrite::Insert { key, row } if a.if_absent && index.unique => {
                            (bucket, RowWrite::InsertIfAbsent { key, row })
                        }
                        w => (bucket, w),
                    });
                    inserted_by.push(pos);
                }
            }
            let if_absent = inserts
                .iter()
                .any(|(_, w)| matches!(w, RowWrite::InsertIfAbsent { .. }));
            let first_insert = deletes.len();
            let keys: Vec<(u16, RowKey)> = inserts
                .iter()
                .map(|(b, w)| match w {
                    RowWrite::Insert { key, .. } | RowWrite::InsertIfAbsent { key, .. } => (*b, key.clone()),
                    _ => (*b, Vec::new()),
                })
                .collect();
            let writes: Vec<(u16, RowWrite)> = deletes.into_iter().chain(inserts).collect();
            if !writes.is_empty() {
                planned.push((ix, writes, if_absent, inserted_by, keys, first_insert));
            }
        }
        let mut buckets: Vec<u16> = Vec::new();
        for (_, writes, ..) in &planned {
            buckets.extend(writes.iter().map(|(b, _)| *b));
        }
        if let Some(permit) = permit.as_mut() {
            permit.extend(buckets.iter().copied()).await;
        }
        let routing = &self.target.routing;
        let placement = self.placement()?;
        let placement = &*placement;
        routing
            .cutovers
            .check(table.id, &table.name, txn.start_ts, buckets.into_iter())?;
        let sends = planned
            .into_iter()
            .map(|(ix, writes, if_absent, inserted_by, keys, first_insert)| {
                let batches = Batch::by_owner(placement, writes);
                (ix, batches, if_absent, inserted_by, keys, first_insert)
            });
        // The indexes are written in parallel.
        let (plans, sends): (Vec<_>, Vec<_>) = sends
            .into_iter()
            .map(|(ix, batches, if_absent, inserted_by, keys, first_insert)| {
                let index = &table.indexes[ix];
                let send = self.send(txn, index.id, &index.name, batches, if_absent);
                ((ix, if_absent, inserted_by, keys, first_insert), send)
            })
            .unzip();
        let results = futures::future::join_all(sends).await;
        for ((ix, if_absent, inserted_by, keys, first_insert), result) in plans.into_iter().zip(results) {
            let (_, found) = result?;
            if !if_absent {
                continue;
            }
            for (j, (pos, (bucket, key))) in inserted_by.into_iter().zip(keys).enumerate() {
                match found.get(first_insert + j).and_then(Option::as_ref) {
                    Some(s) if !s.applied => {
                        skipped.insert(pos);
                    }
                    _ => taken.push((pos, ix, bucket, key)),
                }
            }
        }
        if skipped.is_empty() {
            return Ok(0);
        }
        // Take the skipped rows back, and the entries they took.
        let mut rows: Vec<(u16, RowWrite)> = Vec::new();
        for pos in &skipped {
            let key = after[*pos]
                .key
                .clone()
                .or_else(|| seen[*pos].as_ref().and_then(|s| s.key.clone()))
                .ok_or_else(|| Error::internal("a skipped row without a key"))?;
            rows.push((bucket_of_row_key(&key)?, RowWrite::Delete { key }));
        }
        self.send(
            txn,
            table.id,
            &table.pkey_name(),
            Batch::by_owner(placement, rows),
            false,
        )
        .await?;
        for (ix, index) in table.indexes.iter().enumerate() {
            let deletes: Vec<(u16, RowWrite)> = taken
                .iter()
                .filter(|(pos, i, _, _)| *i == ix && skipped.contains(pos))
                .map(|(_, _, bucket, key)| (*bucket, RowWrite::Delete { key: key.clone() }))
                .collect();
            if !deletes.is_empty() {
                self.send(txn, index.id, &index.name, Batch::by_owner(placement, deletes), false)
                    .await?;
            }
        }
        Ok(skipped.len() as u64)
    }

    /// Sends each slice server its batch of writes to `table_id`, in
    /// parallel; returns the rows they report affected and, with `seen`,
    /// what each write found, by its position in the statement's writes.
    ///
    /// The coordinator learns which buckets went where (recorded before
    /// sending, so that a failed request is rolled back too).
    pub(crate) async fn send(
        &self,
        txn: TxnWrite,
        table_id: TableId,
        unique_name: &str,
        batches: BTreeMap<NodeId, Batch>,
        seen: bool,
    ) -> Result<(u64, Vec<Option<Seen>>)> {
        let mut continues = BTreeMap::new();
        let mut total = 0;
        for (node, batch) in &batches {
            continues.insert(*node, self.txn.wrote_to(*node)?);
            self.txn.record(table_id, *node, batch.buckets.iter().copied())?;
            total += batch.writes.len();
        }
        let sends = batches.into_iter().map(|(node, batch)| {
            let cluster = self.target.cluster.clone();
            let request = SliceRequest::Write {
                txn: TxnWrite {
                    continues: continues.get(&node).copied().unwrap_or(true),
                    ..txn
                },
                table_id,
                unique_name: unique_name.to_string(),
                writes: batch.writes,
                seen,
            };
            async move {
                match cluster.client(node)?.call(request).await? {
                    SliceResponse::Written(n) => Ok((node, n, batch.positions, Vec::new())),
                    SliceResponse::WrittenSeen(n, found) => Ok((node, n, batch.positions, found)),
                    other => Err(Error::internal(format!("unexpected write response {other:?}"))),
                }
            }
        });
        let mut affected = 0;
        let mut first_error = None;
        let mut found: Vec<Option<Seen>> = vec![None; if seen { total } else { 0 }];
        for r in futures::future::join_all(sends).await {
            match r {
                Ok((node, n, positions, seen)) => {
                    self.txn.acknowledge(node)?;
                    affected += n;
                    for (p, s) in positions.into_iter().zip(seen) {
                        if let Some(slot) = found.get_mut(p) {
                            *slot = Some(s);
                        }
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok((affected, found)),
        }
    }
}

/// One slice server's writes of a flush.
#[derive(Default)]
pub(crate) struct Batch {
    buckets: Vec<u16>,
    writes: Vec<RowWrite>,
    /// Each write's position among the flush's writes.
    positions: Vec<usize>,
}

impl Batch {
    /// `writes` grouped by the slice server that owns each one's bucket
    /// under `placement`, remembering each one's position.
    pub(crate) fn by_owner(
        placement: &slicedb_hashmap::HashMap,
        writes: impl IntoIterator<Item = (u16, RowWrite)>,
    ) -> BTreeMap<NodeId, Batch> {
        let mut batches: BTreeMap<NodeId, Batch> = BTreeMap::new();
        for (i, (bucket, w)) in writes.into_iter().enumerate() {
            let e = batches.entry(placement.owner(bucket)).or_default();
            e.buckets.push(bucket);
            e.writes.push(w);
            e.positions.push(i);
        }
        batches
    }
}

/// What a write leaves, for its index entries.
pub(crate) struct After {
    /// The key it addresses (none for a hidden row id insert: the slice
    /// server reports it).
    pub key: Option<RowKey>,
    /// The row it leaves (none for a delete).
    pub row: Option<Vec<Datum>>,
    /// An insert "if absent" (`ON CONFLICT DO NOTHING`).
    pub if_absent: bool,
}

fn write_after(w: &RowWrite) -> After {
    let (key, row) = match w {
        RowWrite::Insert { key, row } | RowWrite::InsertIfAbsent { key, row } | RowWrite::Put { key, row } => {
            (Some(key.clone()), Some(row.clone()))
        }
        RowWrite::InsertWithRowId { row, .. } => (None, Some(row.clone())),
        RowWrite::Delete { key } | RowWrite::Erase { key } | RowWrite::Lock { key } => (Some(key.clone()), None),
    };
    After {
        key,
        row,
        if_absent: matches!(w, RowWrite::InsertIfAbsent { .. }),
    }
}

/// Checks a value against its column's constraints and normalizes it
/// (blank-padding `char(n)`).
pub fn check_value(table: &TableDef, column: usize, value: Datum) -> Result<Datum> {
    let c = &table.columns[column];
    if value.is_null() {
        if !c.nullable {
            return Err(err!(
                NotNullViolation,
                "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                c.name,
                table.name
            ));
        }
        return Ok(value);
    }
    match (c.sql_type, value) {
        (SqlType::Varchar(Some(n)), Datum::Text(s)) => {
            if s.chars().count() > n as usize {
                return Err(err!(
                    StringDataRightTruncation,
                    "value too long for type character varying({n})"
                ));
            }
            Ok(Datum::Text(s))
        }
        // Trailing blanks of char(n) are insignificant in PostgreSQL; store
        // the value without them so that comparisons with unpadded
        // literals, hashing and key encoding all agree.
        (SqlType::Char(n), Datum::Text(s)) => {
            let trimmed = s.trim_end_matches(' ');
            if trimmed.chars().count() > n as usize {
                return Err(err!(
                    StringDataRightTruncation,
                    "value too long for type character({n})"
                ));
            }
            Ok(Datum::Text(trimmed.to_string()))
        }
        (_, v) => Ok(v),
    }
}

/// Reads row `i` of `columns` (in table column order) as checked datums.
pub fn row_from_batch(table: &TableDef, columns: &[ArrayRef], i: usize) -> Result<Vec<Datum>> {
    let mut row = Vec::with_capacity(table.columns.len());
    for (c, array) in columns.iter().enumerate() {
        let d = Datum::from_array(array.as_ref(), i, table.columns[c].sql_type)?;
        row.push(check_value(table, c, d)?);
    }
    Ok(row)
}

/// `w` with its row in stored form: a NULL in the slot of each dropped
/// column (see `slicedb_common::table`).
fn stored_write(table: &TableDef, mut w: RowWrite) -> RowWrite {
    if let RowWrite::Insert { row, .. }
    | RowWrite::InsertIfAbsent { row, .. }
    | RowWrite::InsertWithRowId { row, .. }
    | RowWrite::Put { row, .. } = &mut w
    {
        *row = table.stored_row(std::mem::take(row));
    }
    w
}

/// The bucket of a full row, from its distribution-key columns.
pub fn bucket_of_row(table: &TableDef, row: &[Datum]) -> u16 {
    bucket_of(table.distribution_key.iter().map(|c| &row[*c]))
}

/// The write that inserts `row` as a new row.
pub fn insert_write(table: &TableDef, row: Vec<Datum>) -> Result<(u16, RowWrite)> {
    let bucket = bucket_of_row(table, &row);
    if table.has_primary_key() {
        let pk: Vec<Datum> = table.primary_key.iter().map(|c| row[*c].clone()).collect();
        Ok((
            bucket,
            RowWrite::Insert {
                key: row_key(bucket, &pk)?,
                row,
            },
        ))
    } else {
        Ok((bucket, RowWrite::InsertWithRowId { bucket, row }))
    }
}

/// Which write statement an operator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Insert,
    Update,
    Delete,
}

/// Executes INSERT, UPDATE or DELETE against a [`SliceTable`]; outputs one
/// row with the `count` of rows written.
pub struct SliceWriteExec {
    kind: WriteKind,
    input: Arc<dyn ExecutionPlan>,
    target: SliceTable,
    properties: Arc<PlanProperties>,
    /// CHECK constraints over the new rows' values (table column order).
    checks: Vec<(String, Arc<dyn PhysicalExpr>)>,
    /// The order of an INSERT's input rows (`INSERT … SELECT … ORDER BY`),
    /// kept as a requirement so that the optimizer does not drop the sort:
    /// rows are written, and their defaults (`nextval`) drawn, in that
    /// order, as in PostgreSQL (ORMs match `RETURNING` rows to their
    /// objects by it).
    ordering: Option<datafusion::physical_expr::OrderingRequirements>,
    /// A projection with volatile expressions (a `nextval` default) that
    /// the INSERT evaluates itself on its sorted input (see
    /// [`take_volatile_projection`]), with its output schema.
    project: Option<Projection>,
}

/// Expressions evaluated on each input batch, with their output schema.
pub type Projection = (Vec<Arc<dyn PhysicalExpr>>, SchemaRef);

/// Splits a projection with volatile expressions off an ordered INSERT
/// input (`INSERT … SELECT … ORDER BY` into a table with a `nextval`
/// default): the INSERT evaluates it on the sorted rows, so that the
/// values are drawn in the rows' order, as PostgreSQL draws them. Left in
/// the plan, DataFusion's optimizer may move it below the sort.
pub fn take_volatile_projection(input: Arc<dyn ExecutionPlan>) -> (Arc<dyn ExecutionPlan>, Option<Projection>) {
    use datafusion::physical_plan::projection::ProjectionExec;
    if let Some(p) = input.downcast_ref::<ProjectionExec>() {
        let volatile = p
            .expr()
            .iter()
            .any(|e| datafusion::physical_expr_common::physical_expr::is_volatile(&e.expr));
        if volatile && p.input().properties().output_ordering().is_some() {
            let exprs = p.expr().iter().map(|e| e.expr.clone()).collect();
            return (p.input().clone(), Some((exprs, p.schema())));
        }
    }
    (input, None)
}

/// Set as a session config extension of an `INSERT … ON CONFLICT DO
/// NOTHING`: rows whose primary key exists are skipped, and the count is of
/// the rows inserted.
#[derive(Debug, Default)]
pub struct OnConflictDoNothing;

/// Where a write statement with `RETURNING` leaves the rows it wrote (the
/// new rows of INSERT and UPDATE, the old rows of DELETE), in table column
/// order; the coordinator evaluates the RETURNING list over them. Set as a
/// session config extension of the statement.
#[derive(Debug, Default)]
pub struct ReturningSink {
    pub batches: std::sync::Mutex<Vec<RecordBatch>>,
}

impl ReturningSink {
    fn keep(&self, table: &TableDef, columns: &[ArrayRef], rows: usize) -> Result<()> {
        let batch = values_batch(table, columns, rows)?;
        self.batches
            .lock()
            .map_err(|_| Error::internal("RETURNING rows poisoned"))?
            .push(batch);
        Ok(())
    }
}

/// The table's schema with every column nullable: what CHECK constraints
/// and RETURNING lists read.
pub fn nullable_schema(table: &TableDef) -> SchemaRef {
    Arc::new(Schema::new(
        table
            .columns
            .iter()
            .map(|c| c.sql_type.field(&c.name, true))
            .collect::<Vec<_>>(),
    ))
}

pub(crate) fn values_batch(table: &TableDef, columns: &[ArrayRef], rows: usize) -> Result<RecordBatch> {
    let opts = datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        nullable_schema(table),
        columns.to_vec(),
        &opts,
    )?)
}

/// Refuses rows (columns in table order) for which a CHECK constraint is
/// false, with 23514; NULL passes, as in PostgreSQL.
pub fn check_rows(
    table: &TableDef,
    checks: &[(String, Arc<dyn PhysicalExpr>)],
    columns: &[ArrayRef],
    rows: usize,
) -> Result<()> {
    if checks.is_empty() || rows == 0 {
        return Ok(());
    }
    let batch = values_batch(table, columns, rows)?;
    for (name, expr) in checks {
        let result = expr.evaluate(&batch)?.into_array(rows)?;
        let Some(result) = result.as_any().downcast_ref::<datafusion::arrow::array::BooleanArray>() else {
            return Err(Error::internal(format!("check constraint \"{name}\" is not boolean")));
        };
        if (0..rows).any(|i| result.is_valid(i) && !result.value(i)) {
            return Err(err!(
                CheckViolation,
                "new row for relation \"{}\" violates check constraint \"{name}\"",
                table.name
            ));
        }
    }
    Ok(())
}

/// INSERT: input rows in table column order.
pub type SliceInsertExec = SliceWriteExec;
/// UPDATE: input is `[row key, new values in table column order]`.
pub type SliceUpdateExec = SliceWriteExec;
/// DELETE: input is `[row key]`.
pub type SliceDeleteExec = SliceWriteExec;

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("count", DataType::UInt64, false)]))
}

impl SliceWriteExec {
    fn build(kind: WriteKind, input: Arc<dyn ExecutionPlan>, target: SliceTable) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        let ordering = match kind {
            WriteKind::Insert => input.properties().output_ordering().cloned().map(Into::into),
            _ => None,
        };
        SliceWriteExec {
            kind,
            input,
            target,
            properties,
            checks: Vec::new(),
            ordering,
            project: None,
        }
    }

    /// Evaluates `project` (from [`take_volatile_projection`]) on each
    /// input batch.
    pub fn with_projection(mut self, project: Option<Projection>) -> Self {
        self.project = project;
        self
    }

    /// Checks these CHECK constraints on every new row.
    pub fn with_checks(mut self, checks: Vec<(String, Arc<dyn PhysicalExpr>)>) -> Self {
        self.checks = checks;
        self
    }

    pub fn insert(input: Arc<dyn ExecutionPlan>, target: SliceTable) -> Self {
        Self::build(WriteKind::Insert, input, target)
    }

    pub fn update(input: Arc<dyn ExecutionPlan>, target: SliceTable) -> Self {
        Self::build(WriteKind::Update, input, target)
    }

    pub fn delete(input: Arc<dyn ExecutionPlan>, target: SliceTable) -> Self {
        Self::build(WriteKind::Delete, input, target)
    }

    async fn run(
        kind: WriteKind,
        input: Arc<dyn ExecutionPlan>,
        target: SliceTable,
        checks: Vec<(String, Arc<dyn PhysicalExpr>)>,
        project: Option<Projection>,
        ctx: Arc<TaskContext>,
    ) -> Result<u64> {
        let table = target.table.clone();
        let txn = ctx
            .session_config()
            .get_extension::<StatementTxn>()
            .ok_or_else(|| Error::internal("a write statement ran outside a transaction"))?;
        let returning = ctx.session_config().get_extension::<ReturningSink>();
        let do_nothing = kind == WriteKind::Insert
            && table.has_primary_key()
            && ctx.session_config().get_extension::<OnConflictDoNothing>().is_some();
        let mut router = RowRouter::new(target, txn);
        let mut count = 0u64;
        // Read all input partitions together, so that every slice server's
        // scan (and its snapshot) starts before the first rows are written:
        // an INSERT … SELECT from the same table must not read its own rows.
        let partitions = input.properties().output_partitioning().partition_count();
        let streams = (0..partitions)
            .map(|p| input.execute(p, ctx.clone()))
            .collect::<DfResult<Vec<_>>>()
            .map_err(Error::from)?;
        let mut batches = futures::stream::select_all(streams);
        {
            while let Some(batch) = batches.next().await {
                let mut batch = batch.map_err(Error::from)?;
                if let Some((exprs, schema)) = &project {
                    let n = batch.num_rows();
                    let columns = exprs
                        .iter()
                        .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(n)))
                        .collect::<DfResult<Vec<_>>>()
                        .map_err(Error::from)?;
                    batch =
                        RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::internal(e.to_string()))?;
                }
                match kind {
                    WriteKind::Insert => {
                        if batch.num_columns() != table.columns.len() {
                            return Err(Error::internal("INSERT input does not match the table"));
                        }
                        let mut writes = Vec::with_capacity(batch.num_rows());
                        for i in 0..batch.num_rows() {
                            let row = row_from_batch(&table, batch.columns(), i)?;
                            writes.push(match insert_write(&table, row)? {
                                (bucket, RowWrite::Insert { key, row }) if do_nothing => {
                                    (bucket, RowWrite::InsertIfAbsent { key, row })
                                }
                                other => other,
                            });
                        }
                        check_rows(&table, &checks, batch.columns(), batch.num_rows())?;
                        if let Some(sink) = &returning {
                            sink.keep(&table, batch.columns(), batch.num_rows())?;
                        }
                        for (bucket, w) in writes {
                            router.push(bucket, w);
                        }
                        if !do_nothing {
                            count += batch.num_rows() as u64;
                        }
                    }
                    WriteKind::Delete => {
                        let keys = row_keys(&batch)?;
                        if let Some(sink) = returning.as_ref().filter(|_| batch.num_columns() > 1) {
                            sink.keep(&table, &batch.columns()[1..], batch.num_rows())?;
                        }
                        for i in 0..keys.len() {
                            let key = keys.value(i).to_vec();
                            let bucket = bucket_of_row_key(&key)?;
                            router.push(bucket, RowWrite::Delete { key });
                        }
                    }
                    WriteKind::Update => {
                        let keys = row_keys(&batch)?;
                        let values = &batch.columns()[1..];
                        check_rows(&table, &checks, values, batch.num_rows())?;
                        if let Some(sink) = &returning {
                            sink.keep(&table, values, batch.num_rows())?;
                        }
                        for i in 0..keys.len() {
                            let old_key = keys.value(i);
                            let row = row_from_batch(&table, values, i)?;
                            router.push_update(old_key, row)?;
                        }
                        count += keys.len() as u64;
                    }
                }
                let n = router.flush_if_full().await?;
                if kind == WriteKind::Delete || do_nothing {
                    count += n;
                }
            }
        }
        let n = router.flush().await?;
        if kind == WriteKind::Delete || do_nothing {
            count += n;
        }
        Ok(count)
    }
}

fn row_keys(batch: &RecordBatch) -> Result<&BinaryArray> {
    batch
        .column(0)
        .as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or_else(|| Error::internal("row key column is not binary"))
}

impl fmt::Debug for SliceWriteExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SliceWriteExec({:?} {})", self.kind, self.target.table.name)
    }
}

impl DisplayAs for SliceWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let op = match self.kind {
            WriteKind::Insert => "SliceInsertExec",
            WriteKind::Update => "SliceUpdateExec",
            WriteKind::Delete => "SliceDeleteExec",
        };
        write!(
            f,
            "{op}: table={}, hash_map={}",
            self.target.table.name, self.target.map.name
        )
    }
}

impl ExecutionPlan for SliceWriteExec {
    fn name(&self) -> &'static str {
        match self.kind {
            WriteKind::Insert => "SliceInsertExec",
            WriteKind::Update => "SliceUpdateExec",
            WriteKind::Delete => "SliceDeleteExec",
        }
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn required_input_ordering(&self) -> Vec<Option<datafusion::physical_expr::OrderingRequirements>> {
        vec![self.ordering.clone()]
    }

    fn required_input_distribution(&self) -> Vec<datafusion::physical_plan::Distribution> {
        match self.ordering {
            Some(_) => vec![datafusion::physical_plan::Distribution::SinglePartition],
            None => vec![datafusion::physical_plan::Distribution::UnspecifiedDistribution],
        }
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children.pop().unwrap_or_else(|| self.input.clone());
        let mut exec = Self::build(self.kind, input, self.target.clone()).with_checks(self.checks.clone());
        // The requirement stays that of the planned input.
        exec.ordering = self.ordering.clone();
        exec.project = self.project.clone();
        Ok(Arc::new(exec))
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, _partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let (kind, input, target) = (self.kind, self.input.clone(), self.target.clone());
        let checks = self.checks.clone();
        let project = self.project.clone();
        let out = futures::stream::once(async move {
            let count = Self::run(kind, input, target, checks, project, context)
                .await
                .map_err(Error::into_datafusion)?;
            let array: ArrayRef = Arc::new(UInt64Array::from(vec![count]));
            RecordBatch::try_new(count_schema(), vec![array]).map_err(Into::into)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(count_schema(), out)))
    }
}
