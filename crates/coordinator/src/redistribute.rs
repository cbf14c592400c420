//! The redistribution orchestrator: `REDISTRIBUTE`, `SHOW REDISTRIBUTIONS`
//! and `CANCEL REDISTRIBUTION` (SPEC §4).
//!
//! A job moves one table from its hash map to another while reads and
//! writes go on, and with it the entries of the table's global indexes:
//! they are hash-distributed over the table's buckets, so every step below
//! treats a bucket's rows and its index entries as one (the capture, the
//! copy, the queue, the gates, the cut-over records and the clean-up).
//! Each job has one runner task on the coordinator, which
//! drives it through its states and persists every completed step in the
//! catalog, so a restarted coordinator resumes where it stopped:
//!
//! 1. **planning** — the moving buckets (`old[b] != new[b]`) are grouped by
//!    (source, target) pair and cut into bucket batches. The table gets one
//!    write gate per batch ([`slicedb_planner::write_hold`]); each source is
//!    told to capture (`StartCapture`): from then on every write to a moving
//!    bucket is also appended, in the same RocksDB batch, to the write queue
//!    of its target ([`slicedb_storage::write_queue`]). Leftovers of an
//!    earlier attempt are cleared from the targets.
//! 2. **copying** — each pair's buckets are read from the source in chunks
//!    of about 1 MB, each chunk from one RocksDB snapshot, and stored on the
//!    target, where no query reads them: queries route by the placement,
//!    which still names the source. The copy is throttled by `max_rate_mb`
//!    and its cursor saved after every chunk the target stored durably.
//!    Copying after capture began is what makes chunk-by-chunk snapshots
//!    enough: any write a chunk missed is in the queue.
//! 3. **catching up** — queue entries (full row images or deletes) are
//!    shipped in order to the target, then trimmed on the source; replay is
//!    idempotent, so a crash between apply and trim only replays.
//! 4. **cutting over**, batch by batch — a short catch-up, then the batch's
//!    gate is held (writers to those buckets wait; all others go on), the
//!    queue is shipped up to its end as of the hold (past every entry of the
//!    held buckets), the catalog records the buckets as moved (the table's
//!    placement becomes the old map overlaid with them), and the gate is
//!    released: held writers route to the new owner. After the last batch the
//!    table is bound to the target map.
//! 5. **cleaning** — once no query planned before the last cut-over is still
//!    running ([`QueryEpochs`]), sources stop capturing, drop the queues and
//!    range-delete the buckets they gave away.
//!
//! `CANCEL REDISTRIBUTION` before the cut-over stops capture, deletes the
//! queues and the targets' partial copies, and leaves the table on its old
//! map. Errors (a slice server restarting, say) are retried; a job that
//! cannot make progress before cutting over for [`GIVE_UP_AFTER`] is rolled
//! back like a cancel and reported failed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use slicedb_catalog::redistribution::add_run;
use slicedb_catalog::{Catalog, CatalogState, Change, JobState, MovePair, RedistributionJob};
use slicedb_common::{err, Error, NodeId, Result, TableDef, TableId};
use slicedb_hashmap::{HashMap, Strategy};
use slicedb_planner::write_hold::{TableGates, WriteHolds};
use slicedb_storage::{CaptureSpec, QueueEntry};
use slicedb_transport::{Cluster, SliceRequest, SliceResponse};

use crate::execute::batch_rows;
use crate::{Coordinator, Output};

/// Bytes read from a source per copy request.
const CHUNK_BYTES: u64 = 1 << 20;
/// Queue entries shipped per request.
const QUEUE_ENTRIES: u64 = 2_000;
const QUEUE_BYTES: u64 = 4 << 20;
/// Buckets per cut-over batch: the unit writes are held for.
const BATCH_BUCKETS: usize = 1024;
/// Before cutting over, a job that fails this long is rolled back.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(300);
/// How long cleaning waits for queries planned before the cut-over.
const QUERY_WAIT: Duration = Duration::from_secs(600);
/// How often a copy saves its cursors.
const SAVE_EVERY: Duration = Duration::from_millis(500);
/// How often the server log reports a running job.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Live figures of running jobs, which the catalog does not keep.
#[derive(Debug, Clone, Default)]
struct LiveStatus {
    queue_depth: u64,
    /// Copy rate in bytes per second, over the last few seconds.
    rate: f64,
    eta_secs: Option<f64>,
    /// The longest time one batch's writes were held, in milliseconds.
    longest_hold_ms: f64,
    batches_done: usize,
    batches_total: usize,
}

/// The coordinator's registry of redistribution runners.
#[derive(Default)]
pub struct Redistributions {
    live: Mutex<BTreeMap<u64, LiveStatus>>,
    cancels: Mutex<HashSet<u64>>,
    running: Mutex<HashSet<u64>>,
    pub queries: Arc<QueryEpochs>,
}

impl Redistributions {
    fn set_live(&self, job: u64, f: impl FnOnce(&mut LiveStatus)) {
        if let Ok(mut live) = self.live.lock() {
            f(live.entry(job).or_default());
        }
    }

    fn live(&self, job: u64) -> LiveStatus {
        self.live
            .lock()
            .ok()
            .and_then(|l| l.get(&job).cloned())
            .unwrap_or_default()
    }

    fn cancelled(&self, job: u64) -> bool {
        self.cancels.lock().map(|c| c.contains(&job)).unwrap_or(false)
    }
}

/// Which catalog versions running statements were planned at, so that
/// cleanup waits for queries that may still read the sources.
#[derive(Default)]
pub struct QueryEpochs {
    active: Mutex<BTreeMap<u64, usize>>,
    changed: tokio::sync::Notify,
}

/// A running statement, planned at or after catalog `version`.
pub struct QueryGuard {
    epochs: Arc<QueryEpochs>,
    version: u64,
}

impl QueryEpochs {
    pub fn begin(self: &Arc<Self>, version: u64) -> QueryGuard {
        if let Ok(mut a) = self.active.lock() {
            *a.entry(version).or_insert(0) += 1;
        }
        QueryGuard {
            epochs: self.clone(),
            version,
        }
    }

    fn oldest(&self) -> Option<u64> {
        self.active.lock().ok().and_then(|a| a.keys().next().copied())
    }

    /// Waits until no statement that began before catalog `version` runs,
    /// or `timeout` passes; says whether they all ended.
    async fn wait_older_than(&self, version: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if self.oldest().is_none_or(|v| v >= version) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), notified).await;
        }
    }
}

impl Drop for QueryGuard {
    fn drop(&mut self) {
        if let Ok(mut a) = self.epochs.active.lock() {
            if let Some(n) = a.get_mut(&self.version) {
                *n -= 1;
                if *n == 0 {
                    a.remove(&self.version);
                }
            }
        }
        self.epochs.changed.notify_waiters();
    }
}

/// What a runner needs; it outlives the statement that started the job.
#[derive(Clone)]
struct Runner {
    catalog: Arc<Catalog>,
    cluster: Arc<Cluster>,
    holds: Arc<WriteHolds>,
    registry: Arc<Redistributions>,
    /// Commits a cut-over waits for, and the clock that stamps it.
    txns: Arc<slicedb_txn::TxnManager>,
    routing: Arc<slicedb_planner::table::LiveRouting>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How long a cut-over waits, under its hold, for earlier commits to apply.
const HOLD_COMMIT_WAIT: Duration = Duration::from_secs(5);

/// Runs of consecutive buckets.
fn runs(buckets: &[u16]) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for b in buckets {
        match out.last_mut() {
            Some(r) if r.1 as u32 + 1 == *b as u32 => r.1 = *b,
            _ => out.push((*b, *b)),
        }
    }
    out
}

/// Groups the moving buckets of `from` → `to` by (source, target).
pub fn plan_pairs(from: &HashMap, to: &HashMap) -> Vec<MovePair> {
    let mut by_pair: BTreeMap<(NodeId, NodeId), Vec<u16>> = BTreeMap::new();
    for b in from.moved_buckets(to) {
        by_pair.entry((from.owner(b), to.owner(b))).or_default().push(b);
    }
    by_pair
        .into_iter()
        .map(|((source, target), buckets)| MovePair {
            source,
            target,
            buckets: runs(&buckets),
            copied: false,
            table_at: 0,
            cursor: None,
            rows_copied: 0,
            bytes_copied: 0,
        })
        .collect()
}

/// The job's cut-over batches: (pair index, bucket runs), each at most
/// [`BATCH_BUCKETS`] buckets of one pair, in a fixed order.
fn batches(job: &RedistributionJob) -> Vec<(usize, Vec<(u16, u16)>)> {
    let mut out = Vec::new();
    for (i, pair) in job.pairs.iter().enumerate() {
        let mut current: Vec<(u16, u16)> = Vec::new();
        let mut size = 0usize;
        for (s, e) in &pair.buckets {
            let mut start = *s as usize;
            let end = *e as usize;
            while start <= end {
                let take = (BATCH_BUCKETS - size).min(end - start + 1);
                current.push((start as u16, (start + take - 1) as u16));
                size += take;
                start += take;
                if size == BATCH_BUCKETS {
                    out.push((i, std::mem::take(&mut current)));
                    size = 0;
                }
            }
        }
        if !current.is_empty() {
            out.push((i, current));
        }
    }
    out
}

fn is_moved(job: &RedistributionJob, batch: &[(u16, u16)]) -> bool {
    batch
        .iter()
        .all(|(s, e)| job.moved.iter().any(|(ms, me)| ms <= s && e <= me))
}

impl Runner {
    async fn call(&self, node: NodeId, request: SliceRequest) -> Result<SliceResponse> {
        self.cluster.client(node)?.call(request).await
    }

    async fn done(&self, node: NodeId, request: SliceRequest) -> Result<()> {
        match self.call(node, request).await? {
            SliceResponse::Done => Ok(()),
            other => Err(Error::internal(format!("unexpected response {other:?}"))),
        }
    }

    /// Clears a pair's buckets on its target before the copy, if it holds
    /// anything there (a failed earlier move's partial copy). Usually it
    /// holds nothing, and no range delete is written: one in the target's
    /// memtable would keep the copy's SST files from being ingested.
    async fn clear_leftovers(&self, job: &RedistributionJob, pair: &MovePair) -> Result<()> {
        for table_id in job.tables() {
            let probe = SliceRequest::ReadRows {
                table_id,
                ranges: pair.buckets.clone(),
                after: None,
                max_bytes: 1,
            };
            match self.call(pair.target, probe).await? {
                SliceResponse::Rows(chunk) if chunk.rows.is_empty() => {}
                SliceResponse::Rows(_) => self.clear_table(pair.target, table_id, pair.buckets.clone()).await?,
                other => return Err(Error::internal(format!("unexpected copy response {other:?}"))),
            }
        }
        Ok(())
    }

    /// Deletes whatever a target holds of a pair's buckets (a partial copy).
    async fn clear_target(&self, job: &RedistributionJob, pair: &MovePair) -> Result<()> {
        for table_id in job.tables() {
            self.clear_table(pair.target, table_id, pair.buckets.clone()).await?;
        }
        Ok(())
    }

    /// Range-deletes `ranges` of one of the job's tables on `node`.
    async fn clear_table(&self, node: NodeId, table_id: TableId, ranges: Vec<(u16, u16)>) -> Result<()> {
        self.done(node, SliceRequest::DeleteBuckets { table_id, ranges }).await
    }

    fn job(&self, id: u64) -> Result<RedistributionJob> {
        self.catalog
            .snapshot()
            .jobs
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::internal(format!("redistribution {id} vanished")))
    }

    /// Saves progress that moves no bucket. Progress clears the error the
    /// job was retrying after.
    fn save(&self, job: &mut RedistributionJob) -> Result<()> {
        job.cancel_requested |= self.registry.cancelled(job.id);
        job.error = None;
        self.catalog.save_job(job)
    }

    fn gate_batches(job: &RedistributionJob) -> Vec<Vec<(u16, u16)>> {
        batches(job).into_iter().map(|(_, b)| b).collect()
    }

    /// Drives job `id` to a final state.
    async fn run(self, id: u64) {
        let mut failing_since: Option<Instant> = None;
        let mut gates: Option<Arc<TableGates>> = None;
        loop {
            let job = match self.job(id) {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(job = id, "{e}");
                    break;
                }
            };
            if !job.state.is_active() {
                self.holds.install(job.table_id, &[]).await;
                break;
            }
            if gates.is_none() {
                gates = Some(self.holds.install(job.table_id, &Self::gate_batches(&job)).await);
            }
            let gates_now = gates.clone().unwrap_or_else(|| self.holds.current(job.table_id));
            let step = if self.registry.cancelled(id) && !job.state.past_cutover() {
                self.roll_back(job.clone(), JobState::Cancelled, None).await
            } else {
                match job.state {
                    JobState::Planning => self.plan(job.clone()).await,
                    JobState::Copying => self.copy(job.clone()).await,
                    JobState::CatchingUp => self.catch_up(job.clone()).await,
                    JobState::CuttingOver => self.cut_over(job.clone(), &gates_now).await,
                    JobState::Cleaning => self.clean(job.clone()).await,
                    _ => Ok(()),
                }
            };
            match step {
                Ok(()) => {
                    // Progress again: the error it was retrying after is over.
                    if failing_since.take().is_some() {
                        let _ = self.catalog.change_job(id, |j| {
                            if j.state.is_active() {
                                j.error = None;
                            }
                        });
                    }
                }
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    tracing::warn!(job = id, table = %job.table, "redistribution {id} ({}): {e}; retrying", job.state.name());
                    let message = e.message.clone();
                    let j = self
                        .catalog
                        .change_job(id, |j| j.error = Some(message))
                        .unwrap_or(job.clone());
                    if !j.state.past_cutover() && since.elapsed() > GIVE_UP_AFTER {
                        let why = format!("gave up after {}s: {}", since.elapsed().as_secs(), e.message);
                        if let Err(e2) = self.roll_back(j, JobState::Failed, Some(why)).await {
                            tracing::error!(job = id, "rolling back redistribution {id}: {e2}");
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        if let Ok(mut r) = self.registry.running.lock() {
            r.remove(&id);
        }
    }

    /// Capture on every source, clear leftovers on the targets.
    async fn plan(&self, mut job: RedistributionJob) -> Result<()> {
        let mut per_source: BTreeMap<NodeId, Vec<(u16, u16, NodeId)>> = BTreeMap::new();
        for p in &job.pairs {
            for (s, e) in &p.buckets {
                per_source.entry(p.source).or_default().push((*s, *e, p.target));
            }
        }
        for (source, moves) in per_source {
            let spec = CaptureSpec {
                job: job.id,
                table: job.table_id,
                moves,
                also: job.index_tables.clone(),
            };
            self.done(source, SliceRequest::StartCapture(spec)).await?;
        }
        for p in job
            .pairs
            .iter()
            .filter(|p| !p.copied && p.table_at == 0 && p.cursor.is_none())
        {
            self.clear_leftovers(&job, p).await?;
        }
        job.state = JobState::Copying;
        job.error = None;
        self.save(&mut job)?;
        tracing::info!(job = job.id, table = %job.table, "redistribution {}: capturing on the sources; copying {} buckets", job.id, job.buckets_total());
        Ok(())
    }

    async fn refresh_queue_depth(&self, job: &RedistributionJob) {
        let sources: BTreeSet<NodeId> = job.pairs.iter().map(|p| p.source).collect();
        let mut depth = 0;
        for s in sources {
            if let Ok(SliceResponse::QueueDepths(d)) = self.call(s, SliceRequest::QueueDepths { job: job.id }).await {
                depth += d.iter().map(|(_, n)| n).sum::<u64>();
            }
        }
        self.registry.set_live(job.id, |l| l.queue_depth = depth);
    }

    /// Copies every pair's buckets, chunk by chunk, throttled: the table's
    /// rows, then each index's entries.
    async fn copy(&self, mut job: RedistributionJob) -> Result<()> {
        let started = Instant::now();
        let mut sent: u64 = 0;
        let mut last_log = Instant::now();
        let mut last_save = Instant::now();
        let mut window = (Instant::now(), job.bytes_copied());
        let estimate = self.estimate_bytes(&job).await.unwrap_or(0);
        let tables = job.tables();
        for i in 0..job.pairs.len() {
            while !job.pairs[i].copied {
                if self.registry.cancelled(job.id) {
                    return Ok(());
                }
                let (source, target) = (job.pairs[i].source, job.pairs[i].target);
                let Some(&table_id) = tables.get(job.pairs[i].table_at) else {
                    return Err(Error::internal("a copy past the job's last table"));
                };
                let request = SliceRequest::ReadRows {
                    table_id,
                    ranges: job.pairs[i].buckets.clone(),
                    after: job.pairs[i].cursor.clone(),
                    max_bytes: CHUNK_BYTES,
                };
                let chunk = match self.call(source, request).await? {
                    SliceResponse::Rows(c) => c,
                    other => return Err(Error::internal(format!("unexpected copy response {other:?}"))),
                };
                let bytes: u64 = chunk.rows.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
                let rows = chunk.rows.len() as u64;
                if !chunk.rows.is_empty() {
                    self.done(
                        target,
                        SliceRequest::PutRows {
                            table_id,
                            rows: chunk.rows,
                        },
                    )
                    .await?;
                }
                let pair = &mut job.pairs[i];
                pair.rows_copied += rows;
                pair.bytes_copied += bytes;
                match chunk.next {
                    Some(next) => pair.cursor = Some(next),
                    None if pair.table_at + 1 < tables.len() => {
                        pair.table_at += 1;
                        pair.cursor = None;
                    }
                    None => pair.copied = true,
                }
                // The cursor is saved (an fsync of the catalog) at most every
                // SAVE_EVERY and when a pair is done: after a crash, the chunks
                // since are copied again, which is harmless.
                if job.pairs[i].copied || last_save.elapsed() >= SAVE_EVERY {
                    self.save(&mut job)?;
                    last_save = Instant::now();
                }
                sent += bytes;
                // Rate and ETA over a sliding window of a few seconds.
                let (at, base) = window;
                let secs = at.elapsed().as_secs_f64();
                if secs >= 1.0 {
                    let rate = (job.bytes_copied() - base) as f64 / secs;
                    let left = estimate.saturating_sub(job.bytes_copied()) as f64;
                    self.registry.set_live(job.id, |l| {
                        l.rate = rate;
                        l.eta_secs = (rate > 0.0).then(|| left / rate);
                    });
                    self.refresh_queue_depth(&job).await;
                    window = (Instant::now(), job.bytes_copied());
                }
                if last_log.elapsed() >= LOG_EVERY {
                    last_log = Instant::now();
                    tracing::info!(
                        job = job.id,
                        table = %job.table,
                        "redistribution {}: copied {} rows, {} bytes of about {}",
                        job.id,
                        job.rows_copied(),
                        job.bytes_copied(),
                        estimate
                    );
                }
                if let Some(mb) = job.max_rate_mb {
                    let due = Duration::from_secs_f64(sent as f64 / (mb * 1_048_576.0));
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        job.state = JobState::CatchingUp;
        self.save(&mut job)?;
        tracing::info!(job = job.id, table = %job.table, "redistribution {}: copy done ({} rows); catching up", job.id, job.rows_copied());
        Ok(())
    }

    /// About how many bytes the job copies: each source's bytes of the
    /// table, in proportion to the buckets it gives away.
    async fn estimate_bytes(&self, job: &RedistributionJob) -> Result<u64> {
        let from = self.catalog.snapshot().hash_map(&job.from_map)?;
        let counts = from.bucket_counts();
        let mut total = 0u64;
        let sources: BTreeSet<NodeId> = job.pairs.iter().map(|p| p.source).collect();
        for s in sources {
            let giving: u64 = job
                .pairs
                .iter()
                .filter(|p| p.source == s)
                .map(|p| p.bucket_count())
                .sum();
            let held = counts.get(&s).copied().unwrap_or(1).max(1) as u64;
            if let SliceResponse::TableStats(stats) = self
                .call(
                    s,
                    SliceRequest::TableStats {
                        table_ids: job.tables(),
                    },
                )
                .await?
            {
                let bytes: u64 = stats.iter().map(|(_, st)| st.bytes).sum();
                total += bytes * giving / held;
            }
        }
        Ok(total)
    }

    /// Ships queue entries of `pair` to its target, in order: until a read
    /// returns fewer than `until_below` entries, or, with `until_below` 0,
    /// until a read reaches the end of the queue (under a hold, that end is
    /// past every entry of the held buckets, so the hold does not chase
    /// writes to other buckets). With `trim`, the source drops each applied
    /// prefix at once; without, the caller trims later up to the returned
    /// sequence number (replay is idempotent, so a trim lost in a crash only
    /// replays).
    async fn ship_queue(
        &self,
        job: &RedistributionJob,
        pair: &MovePair,
        until_below: u64,
        trim: bool,
    ) -> Result<Option<u64>> {
        let mut last: Option<u64> = None;
        loop {
            let request = SliceRequest::ReadQueue {
                job: job.id,
                target: pair.target,
                after: if trim { None } else { last },
                max_entries: QUEUE_ENTRIES,
                max_bytes: QUEUE_BYTES,
            };
            let (entries, at_end) = match self.call(pair.source, request).await? {
                SliceResponse::Queue { entries, at_end } => (entries, at_end),
                other => return Err(Error::internal(format!("unexpected queue response {other:?}"))),
            };
            let n = entries.len() as u64;
            if let Some(seq) = entries.last().map(|(seq, _)| *seq) {
                let entries: Vec<QueueEntry> = entries.into_iter().map(|(_, e)| e).collect();
                self.done(pair.target, SliceRequest::ApplyQueue { entries }).await?;
                if trim {
                    self.trim_queue(job, pair, seq).await?;
                }
                last = Some(seq);
            }
            let done = if until_below == 0 { at_end } else { n < until_below };
            if done {
                return Ok(last);
            }
        }
    }

    async fn trim_queue(&self, job: &RedistributionJob, pair: &MovePair, upto: u64) -> Result<()> {
        let request = SliceRequest::TrimQueue {
            job: job.id,
            target: pair.target,
            upto,
        };
        self.done(pair.source, request).await
    }

    async fn catch_up(&self, mut job: RedistributionJob) -> Result<()> {
        for pair in job.pairs.clone() {
            if self.registry.cancelled(job.id) {
                return Ok(());
            }
            self.ship_queue(&job, &pair, QUEUE_ENTRIES, true).await?;
        }
        self.refresh_queue_depth(&job).await;
        job.state = JobState::CuttingOver;
        self.save(&mut job)?;
        tracing::info!(job = job.id, table = %job.table, "redistribution {}: caught up; cutting over", job.id);
        Ok(())
    }

    /// Hands the bucket batches over one by one, then binds the table to
    /// its new map.
    async fn cut_over(&self, mut job: RedistributionJob, gates: &TableGates) -> Result<()> {
        let all = batches(&job);
        let total = all.len();
        let started = Instant::now();
        let mut done_here = 0usize;
        for (index, (pair_index, runs)) in all.iter().enumerate() {
            let done_before = all[..index].iter().filter(|(_, b)| is_moved(&job, b)).count();
            if is_moved(&job, runs) {
                continue;
            }
            let pair = job.pairs[*pair_index].clone();
            // Catch up without holding anything, so the hold is short.
            self.ship_queue(&job, &pair, QUEUE_ENTRIES, true).await?;
            let hold_started = Instant::now();
            let hold = gates
                .hold(index)
                .await
                .ok_or_else(|| Error::internal("cut-over batch without a gate"))?;
            // Commits that wrote these buckets hold the gate while they
            // apply; a commit whose slice server did not answer does not, so
            // wait until every commit decided so far is applied (and
            // captured) before the last shipment.
            self.txns.wait_applied(self.txns.now()?, HOLD_COMMIT_WAIT).await?;
            let shipped = self.ship_queue(&job, &pair, 0, false).await?;
            // Snapshots older than this cut-over can no longer read or write
            // the table: the new owner has no history from before it.
            self.routing.cutovers.record(job.table_id, runs, self.txns.now()?);
            let mut next = job.clone();
            for r in runs {
                add_run(&mut next.moved, *r);
            }
            let state = self.catalog.update(|s| {
                next.cutover_version = s.version() + 1;
                next.cancel_requested |= s.jobs.get(&next.id).is_some_and(|j| j.cancel_requested);
                Ok(vec![Change::PutJob(next.clone())])
            })?;
            drop(hold);
            let held = hold_started.elapsed().as_secs_f64() * 1000.0;
            if let Some(seq) = shipped {
                self.trim_queue(&job, &pair, seq).await?;
            }
            job = state.jobs.get(&job.id).cloned().unwrap_or(next);
            done_here += 1;
            let per_batch = started.elapsed().as_secs_f64() / done_here as f64;
            let remaining = total.saturating_sub(done_before + 1);
            self.registry.set_live(job.id, |l| {
                l.longest_hold_ms = l.longest_hold_ms.max(held);
                l.batches_done = done_before + 1;
                l.batches_total = total;
                l.eta_secs = Some(per_batch * remaining as f64);
            });
            tracing::debug!(
                job = job.id,
                "redistribution {}: batch {}/{total} cut over; writes held {held:.1} ms",
                job.id,
                index + 1
            );
        }
        // Every bucket has moved: bind the table to its new map.
        let mut next = job.clone();
        next.state = JobState::Cleaning;
        next.error = None;
        self.catalog.update(|s| {
            let table = s.table(&next.table)?;
            if table.id != next.table_id {
                return Err(Error::internal("the table changed during its redistribution"));
            }
            let mut bound: TableDef = (*table).clone();
            bound.hash_map = next.to_map.clone();
            next.cutover_version = s.version() + 1;
            Ok(vec![Change::PutTable(bound), Change::PutJob(next.clone())])
        })?;
        let live = self.registry.live(job.id);
        tracing::info!(
            job = job.id,
            table = %job.table,
            "redistribution {}: {} buckets cut over in {} batches (longest write hold {:.1} ms); {} is now on hash map {}",
            job.id,
            job.buckets_total(),
            total,
            live.longest_hold_ms,
            job.table,
            job.to_map
        );
        Ok(())
    }

    /// Drops what the sources gave away, once no query can read it.
    async fn clean(&self, mut job: RedistributionJob) -> Result<()> {
        if !self
            .registry
            .queries
            .wait_older_than(job.cutover_version, QUERY_WAIT)
            .await
        {
            tracing::warn!(
                job = job.id,
                "redistribution {}: queries older than the cut-over still run after {}s; cleaning up anyway",
                job.id,
                QUERY_WAIT.as_secs()
            );
        }
        let sources: BTreeSet<NodeId> = job.pairs.iter().map(|p| p.source).collect();
        for s in &sources {
            self.done(*s, SliceRequest::StopCapture { job: job.id }).await?;
            let mut given: Vec<(u16, u16)> = Vec::new();
            for p in job.pairs.iter().filter(|p| p.source == *s) {
                given.extend(&p.buckets);
            }
            given.sort_unstable();
            for table_id in job.tables() {
                self.clear_table(*s, table_id, given.clone()).await?;
            }
        }
        job.state = JobState::Done;
        job.finished_at = Some(now_ms());
        self.save(&mut job)?;
        self.registry.set_live(job.id, |l| {
            l.queue_depth = 0;
            l.eta_secs = None;
        });
        tracing::info!(job = job.id, table = %job.table, "redistribution {} done: {} buckets, {} rows moved", job.id, job.buckets_total(), job.rows_copied());
        self.drop_if_derived_and_unused(&job.from_map);
        Ok(())
    }

    /// Drops hash map `name` if the rebalancer derived it (`DRAIN NODE`,
    /// `REBALANCE`) and no table, running job or the current map uses it
    /// any more, so that derived maps do not pile up. Maps a user made stay.
    fn drop_if_derived_and_unused(&self, name: &str) {
        let mut dropped = false;
        let result = self.catalog.update(|s| {
            let unused = s.tables_on_map(name).is_empty()
                && s.jobs_using_map(name).is_empty()
                && s.current_map_name() != Some(name);
            match s.hash_maps.get(name) {
                Some(m) if m.strategy == Strategy::Derived && unused => {
                    dropped = true;
                    Ok(vec![Change::DropHashMap(name.to_string())])
                }
                _ => Ok(vec![]),
            }
        });
        match result {
            Ok(_) if dropped => {
                tracing::info!(
                    map = name,
                    "hash map {name} was derived by the rebalancer and is no longer used; dropped"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(map = name, "dropping unused hash map {name}: {e}"),
        }
    }

    /// Undoes a job that has not cut over: capture stopped, queues and
    /// partial copies deleted; the table stays on its old map.
    async fn roll_back(&self, mut job: RedistributionJob, to: JobState, why: Option<String>) -> Result<()> {
        if job.state.past_cutover() {
            return Err(err!(
                ObjectNotInPrerequisiteState,
                "redistribution {} is past its cut-over",
                job.id
            ));
        }
        let sources: BTreeSet<NodeId> = job.pairs.iter().map(|p| p.source).collect();
        for s in sources {
            self.done(s, SliceRequest::StopCapture { job: job.id }).await?;
        }
        // Capture must stop (or the sources' queues would grow for good);
        // a partial copy on a target that is down is left behind: no
        // placement names it, and the next move to that node clears it first.
        let mut left = Vec::new();
        for p in &job.pairs {
            if let Err(e) = self.clear_target(&job, p).await {
                tracing::warn!(
                    job = job.id,
                    node = p.target,
                    "redistribution {}: partial copy left on node {}: {e}",
                    job.id,
                    p.target
                );
                left.push(p.target);
            }
        }
        left.sort_unstable();
        left.dedup();
        job.state = to;
        job.error = match (why, left.is_empty()) {
            (why, true) => why,
            (why, false) => Some(format!(
                "{}partial copies left on unreachable node(s) {left:?}; the next move to them clears them",
                why.map(|w| format!("{w}; ")).unwrap_or_default()
            )),
        };
        job.finished_at = Some(now_ms());
        job.cancel_requested |= self.registry.cancelled(job.id);
        self.catalog.save_job(&job)?;
        self.registry.set_live(job.id, |l| {
            l.queue_depth = 0;
            l.eta_secs = None;
            l.rate = 0.0;
        });
        tracing::info!(job = job.id, table = %job.table, "redistribution {} {}; {} stays on hash map {}", job.id, to.name(), job.table, job.from_map);
        self.drop_if_derived_and_unused(&job.to_map);
        Ok(())
    }
}

/// Fails with 55006 when a redistribution moves `table`: `what` (an index
/// build, say) would change what the job moves. Check it inside the
/// catalog update that makes the change, so the two cannot cross.
pub(crate) fn not_moving(state: &slicedb_catalog::CatalogState, table: &str, what: &str) -> Result<()> {
    match state.active_job(table) {
        Some(j) => Err(err!(
            ObjectInUse,
            "cannot {what} \"{table}\" while redistribution {} moves it (CANCEL REDISTRIBUTION {} or wait for it)",
            j.id,
            j.id
        )),
        None => Ok(()),
    }
}

/// Redistribution jobs planned inside one catalog update, started once
/// the update is persisted ([`Coordinator::start_jobs`]).
#[derive(Default)]
pub(crate) struct NewJobs {
    pub created: Vec<RedistributionJob>,
    /// Why the coordinator plans these jobs by itself, if it does.
    pub reason: Option<String>,
    /// Tables whose maps agreed with their targets: (table, map) bound at once.
    bound_now: Vec<(String, String)>,
}

impl NewJobs {
    /// Jobs the coordinator plans by itself, for `reason`.
    pub(crate) fn because(reason: Option<String>) -> NewJobs {
        NewJobs {
            reason,
            ..NewJobs::default()
        }
    }

    /// One job per `(table, target map)`, numbered from the catalog's next
    /// job id; their catalog changes are appended to `changes`.
    pub(crate) fn plan(
        &mut self,
        s: &CatalogState,
        moves: impl IntoIterator<Item = (Arc<TableDef>, Arc<HashMap>)>,
        max_rate_mb: Option<f64>,
        changes: &mut Vec<Change>,
    ) -> Result<()> {
        for (id, (def, target)) in (s.next_job_id()..).zip(moves) {
            let (mut job, rebound) = new_job(s, id, &def, &target, max_rate_mb)?;
            job.reason.clone_from(&self.reason);
            if let Some(rebound) = rebound {
                self.bound_now.push((def.name.clone(), target.name.clone()));
                changes.push(Change::PutTable(rebound));
            }
            changes.push(Change::PutJob(job.clone()));
            self.created.push(job);
        }
        Ok(())
    }
}

/// Job `id`, which moves `def` from its hash map to `target`, in state
/// planning; or, when the two maps agree on every bucket, done already,
/// with the table rebound to `target` as its second element.
fn new_job(
    s: &CatalogState,
    id: u64,
    def: &TableDef,
    target: &HashMap,
    max_rate_mb: Option<f64>,
) -> Result<(RedistributionJob, Option<TableDef>)> {
    if let Some(index) = def.indexes.iter().find(|i| i.building) {
        return Err(err!(
            ObjectInUse,
            "cannot redistribute table \"{}\": index \"{}\" is being built",
            def.name,
            index.name
        ));
    }
    let from = s.hash_map(&def.hash_map)?;
    let mut job = RedistributionJob {
        id,
        table: def.name.clone(),
        table_id: def.id,
        index_tables: def.indexes.iter().map(|i| i.id).collect(),
        from_map: from.name.clone(),
        to_map: target.name.clone(),
        max_rate_mb,
        state: JobState::Planning,
        pairs: plan_pairs(&from, target),
        moved: Vec::new(),
        cutover_version: 0,
        error: None,
        cancel_requested: false,
        started_at: now_ms(),
        finished_at: None,
        reason: None,
    };
    if !job.pairs.is_empty() {
        return Ok((job, None));
    }
    // The maps agree on every bucket: nothing to copy.
    let mut bound = def.clone();
    bound.hash_map = target.name.clone();
    job.state = JobState::Done;
    job.finished_at = Some(job.started_at);
    Ok((job, Some(bound)))
}

fn redistributions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("job", DataType::Int64, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("from_map", DataType::Utf8, false),
        Field::new("to_map", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("buckets_moved", DataType::Int64, false),
        Field::new("buckets_total", DataType::Int64, false),
        Field::new("rows_copied", DataType::Int64, false),
        Field::new("bytes_copied", DataType::Int64, false),
        Field::new("queue_depth", DataType::Int64, false),
        Field::new("rate_mb_s", DataType::Float64, true),
        Field::new("eta_s", DataType::Float64, true),
        Field::new("longest_hold_ms", DataType::Float64, true),
        Field::new("error", DataType::Utf8, true),
    ]))
}

impl Coordinator {
    fn runner(&self) -> Runner {
        Runner {
            catalog: self.catalog.clone(),
            cluster: self.cluster.clone(),
            holds: self.holds.clone(),
            registry: self.redistributions.clone(),
            txns: self.txns.clone(),
            routing: self.routing.clone(),
        }
    }

    /// Starts a runner for job `id` unless one runs.
    fn spawn_runner(&self, id: u64) {
        let fresh = self
            .redistributions
            .running
            .lock()
            .map(|mut r| r.insert(id))
            .unwrap_or(false);
        if fresh {
            tokio::spawn(self.runner().run(id));
        }
    }

    /// Resumes every job a previous coordinator left active.
    pub(crate) fn resume_redistributions(&self) {
        let active: Vec<u64> = self
            .catalog
            .snapshot()
            .jobs
            .values()
            .filter(|j| j.state.is_active())
            .map(|j| j.id)
            .collect();
        for id in active {
            let cancel = self
                .catalog
                .snapshot()
                .jobs
                .get(&id)
                .is_some_and(|j| j.cancel_requested);
            if cancel {
                if let Ok(mut c) = self.redistributions.cancels.lock() {
                    c.insert(id);
                }
            }
            tracing::info!(job = id, "resuming redistribution {id}");
            self.spawn_runner(id);
        }
    }

    /// `REDISTRIBUTE TABLE t [TO HASH MAP m] [WITH (max_rate_mb = N)]` and
    /// `REDISTRIBUTE ALL`: persists one job per table and starts it in the
    /// background. Returns the jobs.
    pub async fn redistribute(
        &self,
        table: Option<&str>,
        to_map: Option<&str>,
        max_rate_mb: Option<f64>,
    ) -> Result<Output> {
        let _membership = self.membership.lock().await;
        let mut jobs = NewJobs::default();
        self.catalog.update(|s| {
            let target = match to_map {
                Some(m) => s.hash_map(m)?,
                None => s.current_map()?,
            };
            for n in &target.nodes {
                if !s.nodes.contains_key(n) {
                    return Err(err!(
                        UndefinedObject,
                        "hash map {} names node {n}, which does not exist",
                        target.name
                    ));
                }
            }
            let tables: Vec<Arc<TableDef>> = match table {
                Some(t) => {
                    let def = s.table(t)?;
                    if let Some(j) = s.active_job(t) {
                        return Err(err!(
                            ObjectInUse,
                            "table \"{t}\" is already being redistributed (job {})",
                            j.id
                        ));
                    }
                    if def.hash_map == target.name {
                        return Err(err!(
                            ObjectNotInPrerequisiteState,
                            "table \"{t}\" is already on hash map {}",
                            target.name
                        ));
                    }
                    vec![def]
                }
                None => s
                    .tables
                    .values()
                    .filter(|t| t.hash_map != target.name && s.active_job(&t.name).is_none())
                    .cloned()
                    .collect(),
            };
            let mut changes = Vec::new();
            let moves = tables.into_iter().map(|def| (def, target.clone()));
            jobs.plan(s, moves, max_rate_mb, &mut changes)?;
            Ok(changes)
        })?;
        self.start_jobs(jobs)
    }

    /// Starts the runners of jobs just persisted, logs them, and returns
    /// them as `REDISTRIBUTE` shows them: job, table, from_map, to_map,
    /// buckets_to_move.
    pub(crate) fn start_jobs(&self, jobs: NewJobs) -> Result<Output> {
        let NewJobs { created, bound_now, .. } = jobs;
        for job in &created {
            if job.state.is_active() {
                tracing::info!(
                    job = job.id,
                    table = %job.table,
                    "redistribution {} of {} from {} to {}: {} buckets move in {} source/target pairs",
                    job.id,
                    job.table,
                    job.from_map,
                    job.to_map,
                    job.buckets_total(),
                    job.pairs.len()
                );
                self.spawn_runner(job.id);
            }
        }
        for (t, m) in bound_now {
            tracing::info!("{t} needs no data moved; bound to hash map {m}");
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("job", DataType::Int64, false),
            Field::new("table", DataType::Utf8, false),
            Field::new("from_map", DataType::Utf8, false),
            Field::new("to_map", DataType::Utf8, false),
            Field::new("buckets_to_move", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(created.iter().map(|j| j.id as i64))),
            Arc::new(StringArray::from_iter_values(created.iter().map(|j| j.table.clone()))),
            Arc::new(StringArray::from_iter_values(
                created.iter().map(|j| j.from_map.clone()),
            )),
            Arc::new(StringArray::from_iter_values(created.iter().map(|j| j.to_map.clone()))),
            Arc::new(Int64Array::from_iter_values(
                created.iter().map(|j| j.buckets_total() as i64),
            )),
        ];
        batch_rows(RecordBatch::try_new(schema, columns)?)
    }

    /// `CANCEL REDISTRIBUTION job`: rolls the job back and waits (up to a
    /// minute) until it has.
    pub async fn cancel_redistribution(&self, id: u64) -> Result<Output> {
        let job = self
            .catalog
            .snapshot()
            .jobs
            .get(&id)
            .cloned()
            .ok_or_else(|| err!(UndefinedObject, "redistribution {id} does not exist"))?;
        if !job.state.is_active() {
            return Err(err!(
                ObjectNotInPrerequisiteState,
                "redistribution {id} is already {}",
                job.state.name()
            ));
        }
        if job.state.past_cutover() {
            return Err(err!(
                ObjectNotInPrerequisiteState,
                "redistribution {id} is {}: buckets are already on their new nodes, so it can no longer be cancelled",
                job.state.name()
            ));
        }
        if let Ok(mut c) = self.redistributions.cancels.lock() {
            c.insert(id);
        }
        self.catalog.change_job(id, |j| j.cancel_requested = true)?;
        self.spawn_runner(id);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = self.catalog.snapshot().jobs.get(&id).map(|j| j.state);
            match state {
                Some(JobState::Cancelled) => break,
                Some(s) if s.past_cutover() || !s.is_active() => {
                    return Err(err!(
                        ObjectNotInPrerequisiteState,
                        "redistribution {id} reached {} before it could be cancelled",
                        s.name()
                    ))
                }
                _ if Instant::now() > deadline => {
                    return Err(err!(
                        QueryCanceled,
                        "redistribution {id} is being cancelled; it has not finished rolling back yet"
                    ))
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        Ok(Output::Command(crate::CommandTag::new("CANCEL REDISTRIBUTION")))
    }

    /// `SHOW REDISTRIBUTIONS`.
    pub fn show_redistributions(&self) -> Result<Output> {
        batch_rows(redistributions_rows(&self.catalog, &self.redistributions)?)
    }

    /// Refuses statements that would break a running redistribution of `table`.
    pub(crate) fn check_not_moving(&self, table: &str, what: &str) -> Result<()> {
        not_moving(&self.catalog.snapshot(), table, what)
    }

    /// The schema of `slicedb.redistributions`.
    pub fn redistributions_schema() -> SchemaRef {
        redistributions_schema()
    }
}

/// The rows of `SHOW REDISTRIBUTIONS` and of `slicedb.redistributions`.
pub fn redistributions_rows(catalog: &Catalog, registry: &Redistributions) -> Result<RecordBatch> {
    let s = catalog.snapshot();
    let jobs: Vec<&RedistributionJob> = s.jobs.values().collect();
    let live: Vec<LiveStatus> = jobs.iter().map(|j| registry.live(j.id)).collect();
    let active = |j: &RedistributionJob| j.state.is_active();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(jobs.iter().map(|j| j.id as i64))),
        Arc::new(StringArray::from_iter_values(jobs.iter().map(|j| j.table.clone()))),
        Arc::new(StringArray::from_iter_values(jobs.iter().map(|j| j.from_map.clone()))),
        Arc::new(StringArray::from_iter_values(jobs.iter().map(|j| j.to_map.clone()))),
        Arc::new(StringArray::from_iter_values(jobs.iter().map(|j| j.state.name()))),
        Arc::new(Int64Array::from_iter_values(jobs.iter().map(|j| {
            if matches!(j.state, JobState::Cleaning | JobState::Done) {
                j.buckets_total() as i64
            } else {
                j.buckets_moved() as i64
            }
        }))),
        Arc::new(Int64Array::from_iter_values(
            jobs.iter().map(|j| j.buckets_total() as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            jobs.iter().map(|j| j.rows_copied() as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            jobs.iter().map(|j| j.bytes_copied() as i64),
        )),
        Arc::new(Int64Array::from_iter_values(jobs.iter().zip(&live).map(|(j, l)| {
            if active(j) {
                l.queue_depth as i64
            } else {
                0
            }
        }))),
        Arc::new(Float64Array::from_iter(jobs.iter().zip(&live).map(|(j, l)| {
            (j.state == JobState::Copying).then(|| (l.rate / 1_048_576.0 * 100.0).round() / 100.0)
        }))),
        Arc::new(Float64Array::from_iter(jobs.iter().zip(&live).map(|(j, l)| {
            if active(j) {
                l.eta_secs.map(|e| e.round())
            } else {
                None
            }
        }))),
        Arc::new(Float64Array::from_iter(jobs.iter().zip(&live).map(|(j, l)| {
            (j.state.past_cutover() && l.batches_done > 0).then(|| (l.longest_hold_ms * 10.0).round() / 10.0)
        }))),
        Arc::new(StringArray::from_iter(jobs.iter().map(|j| j.error.clone()))),
    ];
    Ok(RecordBatch::try_new(redistributions_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_batches_cover_exactly_the_moving_buckets() {
        let from = HashMap::range("a", &[1, 2, 3]).unwrap();
        let to = HashMap::range("b", &[1, 2, 3, 4]).unwrap();
        let pairs = plan_pairs(&from, &to);
        let moving: u64 = pairs.iter().map(|p| p.bucket_count()).sum();
        assert_eq!(moving as usize, from.moved_buckets(&to).len());
        for p in &pairs {
            for (s, e) in &p.buckets {
                for b in *s..=*e {
                    assert_eq!((from.owner(b), to.owner(b)), (p.source, p.target));
                }
            }
        }
        let job = RedistributionJob {
            id: 1,
            table: "t".into(),
            table_id: 1,
            index_tables: vec![],
            from_map: "a".into(),
            to_map: "b".into(),
            max_rate_mb: None,
            state: JobState::Planning,
            pairs,
            moved: vec![],
            cutover_version: 0,
            error: None,
            cancel_requested: false,
            started_at: 0,
            finished_at: None,
            reason: None,
        };
        let batches = batches(&job);
        let mut seen = 0usize;
        for (_, runs) in &batches {
            let n: usize = runs.iter().map(|(s, e)| (*e - *s) as usize + 1).sum();
            assert!(n <= BATCH_BUCKETS);
            seen += n;
        }
        assert_eq!(seen as u64, moving);
        // minimal_move from 3 to 4 nodes moves exactly 65536/4 buckets.
        let mm = HashMap::minimal_move("c", &from, &[1, 2, 3, 4]).unwrap();
        let moving: u64 = plan_pairs(&from, &mm).iter().map(|p| p.bucket_count()).sum();
        assert_eq!(moving, 16384);
    }
}
