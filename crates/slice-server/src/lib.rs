//! A slice server: serves the slices (bucket runs of tables) stored on one node.
//!
//! It answers [`SliceRequest`]s (writes, bucket deletes, statistics) and
//! [`ScanRequest`]s against its [`SliceStore`]. A few point reads whose
//! rows are all in memory, and writes that need no wait (free row locks,
//! rows in memory: [`SliceStore::try_txn_write`]), are answered on the
//! calling task; other requests run on a blocking thread. Scans run on a
//! blocking thread and read each stored row in place
//! (`slicedb_codec::row::RowView`): the pushed-down predicate decodes only
//! the columns it names, and a row that passes has its projected columns
//! appended straight to Arrow builders (late materialization, no `Datum`
//! per cell). Record batches go through a bounded channel: a slow reader slows
//! the scan instead of filling memory, and a table is never materialized whole.
//!
//! It also runs plan fragments — partial aggregates and co-located joins the
//! coordinator sends to the data ([`fragment`]).

pub mod fragment;
pub mod load;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BinaryBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use futures::StreamExt;
use slicedb_codec::columns::ColumnBuilder;
use slicedb_codec::row::RowView;
use slicedb_common::{err, slot_of, Datum, Error, NodeId, Result};
use slicedb_storage::{SliceDb, SliceStore};
use slicedb_transport::message::{PROTOCOL_VERSION, ROW_KEY_COLUMN};
use slicedb_transport::{RecordBatchStream, ScanRequest, SliceRequest, SliceResponse, SliceService};
use tokio::sync::mpsc;

use crate::load::{BucketCounter, LoadTracker, Tally};

/// One slice server and its storage.
pub struct SliceServer {
    store: Arc<SliceStore>,
    /// Reads and writes per bucket ([`load`]).
    load: Arc<LoadTracker>,
    /// Executes plan fragments (DataFusion's built-in functions only).
    fragments: datafusion::prelude::SessionContext,
    /// Signalled whenever a transaction is decided here (see
    /// [`SliceServer::settled`]).
    decided: tokio::sync::Notify,
}

/// How long a read waits for the coordinator to decide the transactions
/// that were prepared here when the slice server restarted.
const IN_DOUBT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl SliceServer {
    /// Opens the slice server with its data under `dir`. It learns its node
    /// id when a coordinator registers it (`SliceRequest::Register`), and
    /// keeps it across restarts.
    pub fn open(dir: &Path) -> Result<SliceServer> {
        std::fs::create_dir_all(dir)?;
        Ok(SliceServer::new(SliceStore::open(dir)?))
    }

    /// Opens the slice servers of `nodes`, which run in one process, with
    /// their data in one RocksDB under `dir`: they share its write-ahead
    /// log, so one sync makes all their commits durable
    /// (`slicedb_storage::slice_db`). Each is then registered as its node.
    /// The RocksDB is returned too: the process's coordinator keeps its
    /// commit records in it.
    pub fn open_shared(dir: &Path, nodes: &[NodeId]) -> Result<(Arc<SliceDb>, Vec<SliceServer>)> {
        let (db, stores) = SliceStore::open_shared(dir, nodes)?;
        Ok((db, stores.into_iter().map(SliceServer::new).collect()))
    }

    fn new(store: SliceStore) -> SliceServer {
        SliceServer {
            store: Arc::new(store),
            load: Arc::default(),
            fragments: fragment::context(),
            decided: tokio::sync::Notify::new(),
        }
    }

    /// The node id and cluster id it was registered as.
    pub fn identity(&self) -> Option<(NodeId, u64)> {
        self.store.identity()
    }

    /// WAL syncs of its store so far (see [`SliceStore::wal_syncs`]).
    pub fn wal_syncs(&self) -> u64 {
        self.store.wal_syncs()
    }

    /// Registers it as node `node` of cluster `cluster` (see [`SliceStore::register`]).
    pub fn register(&self, node: NodeId, cluster: u64) -> Result<()> {
        self.store.register(node, cluster)
    }

    /// Waits until no transaction prepared before a restart is left in
    /// doubt. Its phase two may have been acknowledged and then lost in
    /// the restart (it is written without an fsync), and the coordinator
    /// does not make new snapshots wait for a commit it counted applied:
    /// so reads here wait for its recovery to commit it again (or abort
    /// it), rather than miss a committed row.
    async fn settled(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + IN_DOUBT_WAIT;
        loop {
            let decided = self.decided.notified();
            let left = self.store.in_doubt();
            if left == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, decided).await.is_err() {
                return Err(err!(
                    SerializationFailure,
                    "could not serialize access: this slice server restarted with {left} prepared transactions that their coordinator has not decided yet"
                ));
            }
        }
    }

    fn source(&self) -> ScanSource {
        ScanSource {
            store: self.store.clone(),
            load: self.load.clone(),
        }
    }

    /// Counts the writes of one request against their buckets.
    fn count_writes(&self, table_id: slicedb_common::TableId, writes: &[slicedb_storage::RowWrite]) {
        use slicedb_storage::RowWrite as W;
        let mut counter = BucketCounter::new(&self.load, table_id);
        for w in writes {
            let (bucket, bytes) = match w {
                W::Insert { key, row } | W::InsertIfAbsent { key, row } | W::Put { key, row } => {
                    (key.get(..2), load::row_bytes(key.len(), row))
                }
                W::InsertWithRowId { bucket, row } => {
                    counter.add_to(*bucket, write_tally(load::row_bytes(10, row)));
                    continue;
                }
                W::Delete { key } | W::Erase { key } => (key.get(..2), key.len() as u64),
                W::Lock { .. } => continue,
            };
            if let Some(b) = bucket {
                counter.add(b, write_tally(bytes));
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SliceStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Error::internal(format!("slice server task failed: {e}")))?
    }
}

#[async_trait]
impl SliceService for SliceServer {
    async fn call(&self, request: SliceRequest) -> Result<SliceResponse> {
        match request {
            SliceRequest::Write {
                txn,
                table_id,
                unique_name,
                writes,
                seen,
            } => {
                // Counted as asked: a write that fails took its load too.
                self.count_writes(table_id, &writes);
                // Most writes take free row locks over rows in memory: done
                // here, without a blocking thread's round trip.
                let (n, found) = match self.store.try_txn_write(txn, table_id, &unique_name, &writes, seen) {
                    Some(n) => n?,
                    None => {
                        self.blocking(move |s| s.txn_write_seen(txn, table_id, &unique_name, &writes, seen))
                            .await?
                    }
                };
                Ok(match seen {
                    true => SliceResponse::WrittenSeen(n, found),
                    false => SliceResponse::Written(n),
                })
            }
            SliceRequest::Prepare { txn } => {
                // Written here, without a blocking thread's round trip, and
                // acknowledged once the WAL syncer has synced it (group
                // commit, see `slicedb_storage`'s `wal_sync`).
                let unsynced = match self.store.try_prepare(txn) {
                    Some(r) => r?,
                    None => self.blocking(move |s| s.prepare_unsynced(txn)).await?,
                };
                if let Some(seq) = unsynced {
                    self.store.wal_synced(seq).await?;
                }
                Ok(SliceResponse::Done)
            }
            SliceRequest::Commit {
                txn,
                commit_ts,
                one_phase,
            } => {
                if !one_phase {
                    slicedb_common::failpoint::failpoint_async("slice-server-before-commit").await;
                }
                // As a prepare: written here unless it would wait, and
                // acknowledged once synced (phase two needs no sync).
                let committed = match self.store.try_commit(txn, commit_ts, one_phase) {
                    Some(r) => r,
                    None => {
                        self.blocking(move |s| s.commit_unsynced(txn, commit_ts, one_phase))
                            .await
                    }
                };
                self.decided.notify_waiters();
                if let Some(seq) = committed? {
                    self.store.wal_synced(seq).await?;
                }
                Ok(SliceResponse::Done)
            }
            SliceRequest::Abort { txn } => {
                let aborted = self.blocking(move |s| s.abort(txn)).await;
                self.decided.notify_waiters();
                aborted?;
                Ok(SliceResponse::Done)
            }
            SliceRequest::Settle { commits } => {
                let settled = self.blocking(move |s| s.settle(&commits)).await;
                self.decided.notify_waiters();
                settled?;
                Ok(SliceResponse::Done)
            }
            SliceRequest::TxnStatus { txn } => Ok(SliceResponse::TxnStatus(
                self.blocking(move |s| s.txn_status(txn)).await?,
            )),
            SliceRequest::RollbackTo { txn, seq } => {
                self.blocking(move |s| s.rollback_to(txn, seq)).await?;
                Ok(SliceResponse::Done)
            }
            SliceRequest::ListLockWaits => Ok(SliceResponse::LockWaits(self.store.lock_waits())),
            SliceRequest::BreakDeadlock { txn } => {
                self.store.break_deadlock(txn);
                tracing::info!(
                    txn,
                    "breaking a deadlock: transaction {txn} stops waiting for a row lock"
                );
                Ok(SliceResponse::Done)
            }
            SliceRequest::ListTransactions => {
                Ok(SliceResponse::Transactions(self.blocking(|s| s.transactions()).await?))
            }
            SliceRequest::Gc { horizon } => {
                let n = self.blocking(move |s| s.gc(horizon)).await?;
                if n > 0 {
                    tracing::debug!(horizon, "garbage-collected {n} old versions");
                }
                Ok(SliceResponse::Collected(n))
            }
            SliceRequest::DeleteBuckets { table_id, ranges } => {
                self.blocking(move |s| s.delete_buckets(table_id, &ranges)).await?;
                Ok(SliceResponse::Done)
            }
            SliceRequest::DropTable { table_id } => {
                self.blocking(move |s| s.delete_table(table_id)).await?;
                Ok(SliceResponse::Done)
            }
            SliceRequest::TableStats { table_ids } => {
                let stats = self
                    .blocking(move |s| {
                        table_ids
                            .into_iter()
                            .map(|t| Ok((t, s.table_stats(t)?)))
                            .collect::<Result<Vec<_>>>()
                    })
                    .await?;
                Ok(SliceResponse::TableStats(stats))
            }
            SliceRequest::BucketLoad { tables } => {
                let load = self.load.clone();
                let buckets = self.blocking(move |s| bucket_loads(s, &load, &tables)).await?;
                Ok(SliceResponse::BucketLoad(buckets))
            }
            SliceRequest::Ping => {
                let identity = self.identity();
                Ok(SliceResponse::Pong {
                    node_id: identity.map(|i| i.0),
                    cluster_id: identity.map(|i| i.1),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    protocol: PROTOCOL_VERSION,
                })
            }
            SliceRequest::Register { node_id, cluster_id } => {
                self.blocking(move |s| s.register(node_id, cluster_id)).await?;
                tracing::info!(node_id, "registered as node {node_id} of cluster {cluster_id:016x}");
                Ok(SliceResponse::Done)
            }
            SliceRequest::StartCapture(spec) => {
                let job = spec.job;
                self.blocking(move |s| s.start_capture(spec)).await?;
                tracing::info!(job, "capturing writes of redistribution {job}");
                Ok(SliceResponse::Done)
            }
            SliceRequest::StopCapture { job } => {
                self.blocking(move |s| s.stop_capture(job)).await?;
                tracing::info!(job, "stopped capturing writes of redistribution {job}");
                Ok(SliceResponse::Done)
            }
            SliceRequest::ReadRows {
                table_id,
                ranges,
                after,
                max_bytes,
            } => {
                self.settled().await?;
                let chunk = self
                    .blocking(move |s| s.read_rows(table_id, &ranges, after.as_deref(), max_bytes as usize))
                    .await?;
                Ok(SliceResponse::Rows(chunk))
            }
            SliceRequest::PutRows { table_id, rows } => {
                self.blocking(move |s| s.put_rows(table_id, &rows)).await?;
                Ok(SliceResponse::Done)
            }
            SliceRequest::ReadQueue {
                job,
                target,
                after,
                max_entries,
                max_bytes,
            } => {
                let (entries, at_end) = self
                    .blocking(move |s| s.read_queue(job, target, after, max_entries as usize, max_bytes as usize))
                    .await?;
                Ok(SliceResponse::Queue { entries, at_end })
            }
            SliceRequest::TrimQueue { job, target, upto } => {
                self.blocking(move |s| s.trim_queue(job, target, upto)).await?;
                Ok(SliceResponse::Done)
            }
            SliceRequest::ApplyQueue { entries } => {
                self.blocking(move |s| s.apply_queue(&entries)).await?;
                Ok(SliceResponse::Done)
            }
            SliceRequest::Backfill {
                table_id,
                version,
                unique,
                entries,
            } => {
                let done = self
                    .blocking(move |s| s.backfill(table_id, version, unique.as_deref(), &entries))
                    .await?;
                Ok(SliceResponse::Backfilled {
                    written: done.written,
                    busy: done.busy,
                })
            }
            SliceRequest::QueueDepths { job } => {
                let depths = self.blocking(move |s| s.queue_depths(job)).await?;
                Ok(SliceResponse::QueueDepths(depths))
            }
        }
    }

    async fn scan(&self, request: ScanRequest) -> Result<RecordBatchStream> {
        self.settled().await?;
        scan_stream(self.source(), request)
    }

    async fn fragment(&self, plan: Vec<u8>) -> Result<RecordBatchStream> {
        self.settled().await?;
        fragment::run_fragment(&self.source(), &self.fragments, &plan)
    }
}

/// The load and approximate size of every bucket of `tables`' ranges.
fn bucket_loads(
    store: &SliceStore,
    load: &LoadTracker,
    tables: &[(slicedb_common::TableId, Vec<(u16, u16)>)],
) -> Result<Vec<slicedb_codec::BucketLoad>> {
    let mut out = Vec::new();
    for (table, ranges) in tables {
        // Every counted bucket of the table at once: a fragmented map has
        // many ranges, and each look at the counters walks them all.
        let rates: std::collections::HashMap<u16, load::Rates> = load.rates(*table, 0, u16::MAX).into_iter().collect();
        for &(first, last) in ranges {
            let sizes = store.bucket_sizes(*table, first, last)?;
            out.extend((first..=last).zip(sizes).map(|(bucket, bytes)| {
                let r = rates.get(&bucket).copied().unwrap_or_default();
                slicedb_codec::BucketLoad {
                    table: *table,
                    bucket,
                    reads_per_s: r.reads_per_s,
                    writes_per_s: r.writes_per_s,
                    write_bytes_per_s: r.write_bytes_per_s,
                    reads_per_s_5m: r.reads_per_s_5m,
                    writes_per_s_5m: r.writes_per_s_5m,
                    bytes,
                }
            }));
        }
    }
    Ok(out)
}

fn read_tally() -> Tally {
    Tally {
        reads: 1,
        writes: 0,
        write_bytes: 0,
    }
}

fn write_tally(bytes: u64) -> Tally {
    Tally {
        reads: 0,
        writes: 1,
        write_bytes: bytes,
    }
}

/// What a scan reads, and where it counts the rows it read.
#[derive(Clone)]
pub struct ScanSource {
    pub store: Arc<SliceStore>,
    pub load: Arc<LoadTracker>,
}

/// Starts a scan of `source`: its batches as they are produced.
pub(crate) fn scan_stream(source: ScanSource, request: ScanRequest) -> Result<RecordBatchStream> {
    let ScanSource { store, load } = source;
    // A handful of point reads costs less than handing them to a blocking
    // thread and back: answer them on this task when every row is in
    // memory (a block-cache read never touches the disk); else, and for
    // everything larger, a blocking thread reads.
    if request.keys.as_ref().is_some_and(|k| k.len() <= INLINE_POINT_READS) {
        let mut batches = Vec::new();
        let complete = run_scan(&store, &load, &request, true, &mut |b| {
            batches.push(Ok(b));
            true
        })?;
        for b in batches.iter().flatten() {
            count_scanned(b);
        }
        if complete {
            return Ok(futures::stream::iter(batches).boxed());
        }
    }
    let (tx, rx) = mpsc::channel::<Result<RecordBatch>>(2);
    tokio::task::spawn_blocking(move || {
        let result = run_scan(&store, &load, &request, false, &mut |b| {
            count_scanned(&b);
            tx.blocking_send(Ok(b)).is_ok()
        });
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Ok(tokio_stream(rx).boxed())
}

/// Rows a scan returned (after its pushed-down filters), and the size of
/// the Arrow batches it made of them (`slicedb_rows_scanned_total`,
/// `slicedb_scan_bytes_total`).
fn count_scanned(batch: &RecordBatch) {
    metrics::counter!("slicedb_rows_scanned_total").increment(batch.num_rows() as u64);
    metrics::counter!("slicedb_scan_bytes_total").increment(batch.get_array_memory_size() as u64);
}

fn tokio_stream(mut rx: mpsc::Receiver<Result<RecordBatch>>) -> impl futures::Stream<Item = Result<RecordBatch>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Accumulates scanned rows into record batches of the requested shape,
/// appending each projected value straight from the stored row to an
/// Arrow builder (`slicedb_codec::columns`).
struct BatchBuilder<'a> {
    request: &'a ScanRequest,
    schema: Arc<Schema>,
    columns: Vec<ColumnBuilder>,
    keys: BinaryBuilder,
    rows: usize,
}

impl<'a> BatchBuilder<'a> {
    fn new(request: &'a ScanRequest) -> Result<Self> {
        let capacity = request.batch_size.clamp(1, 8192);
        let mut fields = Vec::with_capacity(request.projection.len() + 1);
        let mut columns = Vec::with_capacity(request.projection.len());
        for (i, c) in request.projection.iter().enumerate() {
            let ty = request
                .column_types
                .get(*c)
                .ok_or_else(|| Error::internal(format!("scan projects unknown column {c}")))?;
            fields.push(ty.field(&format!("c{i}"), true));
            columns.push(ColumnBuilder::new(*ty, capacity)?);
        }
        if request.with_key {
            fields.push(Field::new(ROW_KEY_COLUMN, DataType::Binary, false));
        }
        Ok(BatchBuilder {
            request,
            schema: Arc::new(Schema::new(fields)),
            columns,
            keys: BinaryBuilder::new(),
            rows: 0,
        })
    }

    fn push(&mut self, key: &[u8], row: &RowView<'_>) -> Result<()> {
        for (out, c) in self.columns.iter_mut().zip(&self.request.projection) {
            match row.get(slot_of(&self.request.dropped, *c))? {
                Some(v) => out.append(v)?,
                None => out.append_datum(self.request.missing.get(*c).unwrap_or(&Datum::Null))?,
            }
        }
        if self.request.with_key {
            self.keys.append_value(key);
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        if self.request.with_key {
            arrays.push(Arc::new(self.keys.finish()));
        }
        let opts = RecordBatchOptions::new().with_row_count(Some(std::mem::take(&mut self.rows)));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &opts).map_err(Error::from)
    }
}

/// Point reads answered on the calling task (see [`scan_stream`]).
const INLINE_POINT_READS: usize = 16;

/// Runs a scan, handing each batch to `emit`, which returns `false` when
/// the reader has gone away. With `cached_only`, point reads never touch
/// the disk, and the scan gives up (returns `false`, its batches
/// incomplete) at the first row that is not in memory.
fn run_scan(
    store: &SliceStore,
    load: &LoadTracker,
    request: &ScanRequest,
    cached_only: bool,
    emit: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<bool> {
    let mut builder = BatchBuilder::new(request)?;
    let batch_size = request.batch_size.max(1);
    let mut total = 0usize;
    let limit = request.limit.unwrap_or(usize::MAX);
    let mut closed = false;
    // Rows read per bucket: a scan counts the rows it visits; point reads
    // count their look-ups once all are done (a try that gives up on a
    // row not in memory, `cached_only`, is run again and counted then).
    let mut scanned = BucketCounter::new(load, request.table_id);
    let scanning = request.keys.is_none();
    let mut visit = |key: &[u8], value: &[u8]| -> Result<bool> {
        if total >= limit {
            return Ok(false);
        }
        if scanning {
            scanned.add(key, read_tally());
        }
        let row = RowView::new(value)?;
        if let Some(p) = &request.predicate {
            if p.eval_stored(&row, &request.missing, &request.dropped)? != Some(true) {
                return Ok(true);
            }
        }
        builder.push(key, &row)?;
        total += 1;
        if builder.rows >= batch_size && !emit(builder.finish()?) {
            closed = true;
            return Ok(false);
        }
        Ok(total < limit)
    };
    match &request.keys {
        Some(keys) => {
            let mut looked_up = 0;
            for key in keys {
                let row = if cached_only {
                    match store.get_cached_encoded(request.table_id, key, &request.at)? {
                        Some(row) => row,
                        None => return Ok(false),
                    }
                } else {
                    store.get_encoded(request.table_id, key, &request.at)?
                };
                looked_up += 1;
                if let Some(row) = row {
                    if !visit(key, &row)? {
                        break;
                    }
                }
            }
            // A look-up that found nothing cost one read too.
            let mut counted = BucketCounter::new(load, request.table_id);
            for key in &keys[..looked_up] {
                counted.add(key, read_tally());
            }
        }
        None if cached_only => return Ok(false),
        None => store.scan_encoded(request.table_id, &request.buckets, &request.at, &mut visit)?,
    }
    if builder.rows > 0 && !closed {
        emit(builder.finish()?);
    }
    Ok(true)
}
