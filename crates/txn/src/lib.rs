//! Transactions: the coordinator's clock, snapshots and two-phase commit.
//!
//! See `docs/transactions.md` for the protocol as a whole. In short:
//!
//! - **Clock.** One timestamp oracle, here: [`Clock`] hands out strictly
//!   increasing timestamps (microseconds since the epoch, or one more than
//!   the last). It never hands out a timestamp at or above a ceiling stored
//!   durably in the transaction log, which it raises 10 s at a time, in
//!   the background before it is reached, so a restart never goes back in
//!   time and no caller waits for that fsync.
//! - **Snapshots.** A snapshot is a timestamp `s`. It is handed out only
//!   once every commit with a smaller timestamp has been applied on every
//!   slice server ([`TxnManager::snapshot`] waits for them): a reader never
//!   needs to look at other transactions' intents, because any transaction
//!   it could see has already turned them into versions.
//! - **Writes.** A transaction's writes are pending on the slice servers
//!   (`slicedb_storage::txn`), locked row by row, first updater wins.
//! - **Commit.** A transaction that wrote to one slice server commits there
//!   in one phase, durably. Otherwise (parallel commits, one durable round
//!   on the critical path): the coordinator takes the commit timestamp,
//!   then every participant prepares (durable intents) *while* the commit
//!   record is staged durably in the transaction log; once both are
//!   durable the transaction is committed, and every participant commits
//!   (phase two, written without an fsync). The recovery loop then
//!   *settles* the commit (each participant syncs its phase two) and
//!   forgets the record. A coordinator that restarts decides a staged
//!   record from its participants ([`TxnManager::resolve`]): committed if
//!   every participant prepared or committed it, else aborted. The
//!   recovery loop also tells again a participant that did not answer, and
//!   aborts every prepared or pending transaction without a record that no
//!   session holds (presumed abort, after a crash).
//! - **Garbage collection.** The horizon is the oldest snapshot in use;
//!   the recovery loop sends it to the slice servers every few seconds.
//! - **Redistribution.** A commit holds the write gates of the buckets it
//!   wrote ([`slicedb_planner::write_hold`]) and checks that none changed
//!   owner since it was written; a cut-over waits for commits under way.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slicedb_catalog::{Catalog, CommitDecision};
use slicedb_common::{err, Error, NodeId, Result, SqlState, TableDef, TableId};
use slicedb_planner::table::LiveRouting;
use slicedb_planner::txn::{StatementTxn, TxnWrites};
use slicedb_storage::{OwnWrites, ReadAt, Timestamp, TxnId, TxnStatus, TxnWrite};
use slicedb_transport::{Cluster, SliceRequest, SliceResponse};
use tokio::sync::Notify;

mod clock;
mod commit_log;
pub use clock::Clock;
pub use commit_log::CommitLog;

/// How long a new snapshot waits for earlier commits to be applied.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);
/// How often the recovery loop runs.
const RECOVERY_PERIOD: Duration = Duration::from_millis(500);
/// Garbage collection runs every this many recovery rounds.
const GC_EVERY: u32 = 10;

/// What the coordinator tracks about transactions in flight.
#[derive(Default)]
struct Registry {
    /// Snapshot timestamps in use, with their counts (the GC horizon).
    snapshots: BTreeMap<Timestamp, usize>,
    /// Open transactions (their writes must not be aborted by recovery),
    /// with what they wrote so far.
    active: HashMap<TxnId, Arc<Mutex<TxnWrites>>>,
    /// Commit timestamps handed out whose commits are not applied everywhere yet.
    applying: BTreeMap<Timestamp, TxnId>,
    /// One-phase commits whose outcome a lost connection left open, by
    /// commit timestamp: (transaction, slice server). Recovery settles them.
    unsettled: BTreeMap<Timestamp, (TxnId, NodeId)>,
    /// Two-phase commits decided "commit" whose records wait until every
    /// participant has made its phase two durable
    /// ([`TxnManager::settle_commits`]).
    settling: BTreeMap<TxnId, CommitDecision>,
}

/// The coordinator's transaction manager.
pub struct TxnManager {
    clock: Clock,
    catalog: Arc<Catalog>,
    /// Where two-phase commit records are staged.
    log: CommitLog,
    cluster: Arc<Cluster>,
    routing: Arc<LiveRouting>,
    registry: Mutex<Registry>,
    /// Signalled whenever a commit finishes applying.
    applied: Notify,
}

/// A snapshot in use: keeps the versions it sees from garbage collection.
pub struct Snapshot {
    pub ts: Timestamp,
    mgr: Arc<TxnManager>,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Ok(mut r) = self.mgr.registry.lock() {
            if let Some(n) = r.snapshots.get_mut(&self.ts) {
                *n -= 1;
                if *n == 0 {
                    r.snapshots.remove(&self.ts);
                }
            }
        }
    }
}

/// Keeps a transaction in the registry's active set while it lives, so that
/// recovery leaves its pending writes and intents alone.
struct Active {
    txn: TxnId,
    mgr: Arc<TxnManager>,
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Ok(mut r) = self.mgr.registry.lock() {
            r.active.remove(&self.txn);
        }
    }
}

/// An open transaction of one session.
pub struct Transaction {
    pub snapshot: Snapshot,
    /// Taken by the commit task once a commit starts: the transaction stays
    /// active until the commit has finished, whatever the session does.
    active: Option<Active>,
    /// The next statement's number (statements see the writes of lower ones).
    next_seq: u32,
    pub writes: Arc<Mutex<TxnWrites>>,
    /// Savepoints: name and the first statement number after them.
    pub savepoints: Vec<(String, u32)>,
    /// `READ COMMITTED`: each statement reads and writes at a snapshot of
    /// its own ([`TxnManager::next_statement`]); else the transaction's
    /// snapshot serves them all (`REPEATABLE READ`).
    pub read_committed: bool,
    /// How long its writes wait for a row lock (the session's
    /// `lock_timeout`, in milliseconds; 0: as long as it takes). Set by
    /// the coordinator before each statement.
    pub lock_timeout_ms: u32,
    finished: bool,
}

impl Transaction {
    pub fn id(&self) -> TxnId {
        self.snapshot.ts
    }

    /// The context of the transaction's next statement.
    pub fn statement(&mut self) -> Arc<StatementTxn> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let txn = self.id();
        Arc::new(StatementTxn {
            read: ReadAt {
                ts: self.snapshot.ts,
                own: Some(OwnWrites { txn, before_seq: seq }),
            },
            write: Some(TxnWrite {
                txn,
                start_ts: self.snapshot.ts,
                seq,
                continues: false,
                lock_timeout_ms: self.lock_timeout_ms,
            }),
            writes: self.writes.clone(),
        })
    }

    /// Another hold on the transaction's snapshot, for rows read after
    /// the statement returned.
    pub fn pin(&self) -> Snapshot {
        let ts = self.snapshot.ts;
        if let Ok(mut r) = self.snapshot.mgr.registry.lock() {
            *r.snapshots.entry(ts).or_insert(0) += 1;
        }
        Snapshot {
            ts,
            mgr: self.snapshot.mgr.clone(),
        }
    }

    /// The number the next statement will get.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    fn written(&self) -> TxnWrites {
        self.writes.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Did the transaction write anything?
    pub fn wrote(&self) -> bool {
        !self.written().is_empty()
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        let txn = self.id();
        self.active.take();
        if !self.finished {
            // A session that went away with its transaction open: abort it.
            // If this is lost, the recovery loop aborts what the slice
            // servers still hold, since the transaction is no longer active.
            let nodes = self.written().nodes();
            let mgr = self.snapshot.mgr.clone();
            if !nodes.is_empty() {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move { mgr.abort_on(txn, &nodes).await });
                }
            }
        }
    }
}

fn is_connection_error(e: &Error) -> bool {
    matches!(e.state, SqlState::ConnectionFailure | SqlState::IoError)
}

impl TxnManager {
    /// A manager that stages commit records in the catalog.
    pub fn open(catalog: Arc<Catalog>, cluster: Arc<Cluster>, routing: Arc<LiveRouting>) -> Result<Arc<TxnManager>> {
        let log = CommitLog::Catalog(catalog.clone());
        TxnManager::open_with_log(catalog, log, cluster, routing)
    }

    /// A manager that stages commit records in `log`.
    pub fn open_with_log(
        catalog: Arc<Catalog>,
        log: CommitLog,
        cluster: Arc<Cluster>,
        routing: Arc<LiveRouting>,
    ) -> Result<Arc<TxnManager>> {
        let clock = Clock::open(catalog.clone())?;
        let mut registry = Registry::default();
        // Decided commits not yet applied everywhere: snapshots wait for them.
        for d in log.decisions()? {
            registry.applying.insert(d.commit_ts, d.txn);
        }
        Ok(Arc::new(TxnManager {
            clock,
            catalog,
            log,
            cluster,
            routing,
            registry: Mutex::new(registry),
            applied: Notify::new(),
        }))
    }

    fn registry(&self) -> Result<std::sync::MutexGuard<'_, Registry>> {
        self.registry
            .lock()
            .map_err(|_| Error::internal("transaction registry lock poisoned"))
    }

    /// A timestamp from the clock.
    pub fn now(&self) -> Result<Timestamp> {
        self.clock.now()
    }

    /// A new snapshot: a timestamp at which every earlier commit is applied.
    pub async fn snapshot(self: &Arc<Self>) -> Result<Snapshot> {
        // Taken and registered under the registry lock, so that a GC
        // horizon computed at the same time is never above it.
        let ts = {
            let mut r = self.registry()?;
            let ts = self.clock.now()?;
            *r.snapshots.entry(ts).or_insert(0) += 1;
            ts
        };
        let snapshot = Snapshot { ts, mgr: self.clone() };
        self.wait_applied(ts, SNAPSHOT_WAIT).await?;
        Ok(snapshot)
    }

    /// Waits until every commit with a timestamp at or below `ts` is
    /// applied on all its slice servers.
    pub async fn wait_applied(&self, ts: Timestamp, limit: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.applied.notified();
            let pending = self.registry()?.applying.range(..=ts).next().map(|(_, t)| *t);
            let Some(txn) = pending else {
                return Ok(());
            };
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(err!(
                    SerializationFailure,
                    "could not serialize access: the commit of transaction {txn} is not applied on all its slice servers yet (is one down?)"
                ));
            }
        }
    }

    /// Open transactions other than `except` that have written to `table`
    /// (a storage id: a table or an index).
    pub fn open_writers(&self, table: slicedb_common::TableId, except: TxnId) -> Result<Vec<TxnId>> {
        let r = self.registry()?;
        Ok(r.active
            .iter()
            .filter(|(t, w)| **t != except && w.lock().is_ok_and(|w| w.placed.contains_key(&table)))
            .map(|(t, _)| *t)
            .collect())
    }

    /// Waits until none of `txns` is open any more (committed or rolled
    /// back); fails with 55P03 after `limit`.
    pub async fn wait_finished(&self, txns: &[TxnId], limit: Duration, what: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            let open = {
                let r = self.registry()?;
                txns.iter().filter(|t| r.active.contains_key(t)).count()
            };
            if open == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(err!(
                    LockNotAvailable,
                    "{what}: {open} transaction(s) that wrote to the table are still open"
                ));
            }
            tick.tick().await;
        }
    }

    /// Begins a transaction.
    pub async fn begin(self: &Arc<Self>) -> Result<Transaction> {
        let snapshot = self.snapshot().await?;
        let writes: Arc<Mutex<TxnWrites>> = Arc::default();
        self.registry()?.active.insert(snapshot.ts, writes.clone());
        Ok(Transaction {
            active: Some(Active {
                txn: snapshot.ts,
                mgr: self.clone(),
            }),
            snapshot,
            next_seq: 1,
            writes,
            savepoints: Vec::new(),
            lock_timeout_ms: 0,
            read_committed: false,
            finished: false,
        })
    }

    /// The context of `txn`'s next statement. Under `READ COMMITTED` it
    /// reads at a new snapshot (returned, to be held while the statement
    /// runs), and its writes conflict only with rows committed after that
    /// snapshot; its own earlier writes stay visible.
    pub async fn next_statement(
        self: &Arc<Self>,
        txn: &mut Transaction,
    ) -> Result<(Arc<StatementTxn>, Option<Snapshot>)> {
        if !txn.read_committed {
            return Ok((txn.statement(), None));
        }
        let snapshot = self.snapshot().await?;
        let mut statement = (*txn.statement()).clone();
        statement.read.ts = snapshot.ts;
        if let Some(w) = statement.write.as_mut() {
            w.start_ts = snapshot.ts;
        }
        Ok((Arc::new(statement), Some(snapshot)))
    }

    /// Takes a commit timestamp and records it as being applied, atomically
    /// with respect to [`TxnManager::snapshot`]'s check.
    fn commit_timestamp(&self, txn: TxnId) -> Result<Timestamp> {
        let mut r = self.registry()?;
        let ts = self.clock.now()?;
        r.applying.insert(ts, txn);
        Ok(ts)
    }

    fn applied(&self, commit_ts: Timestamp) {
        if let Ok(mut r) = self.registry() {
            r.applying.remove(&commit_ts);
        }
        self.applied.notify_waiters();
    }

    async fn call_all(&self, nodes: &BTreeSet<NodeId>, request: SliceRequest) -> Vec<(NodeId, Result<SliceResponse>)> {
        let calls = nodes.iter().map(|node| {
            let request = request.clone();
            async move {
                let r = match self.cluster.client(*node) {
                    Ok(c) => c.call(request).await,
                    Err(e) => Err(e),
                };
                (*node, r)
            }
        });
        futures::future::join_all(calls).await
    }

    /// Commits `txn` (see the module documentation). The commit runs as a
    /// task of its own, which keeps the transaction active and its snapshot
    /// pinned until it ends: a client that goes away or cancels its
    /// `COMMIT` neither stops it halfway nor lets recovery abort the
    /// transaction under it. Once a commit has started, it commits or
    /// aborts as a whole.
    pub async fn commit(&self, txn: &mut Transaction) -> Result<()> {
        self.commit_gated(txn, true, None).await
    }

    /// [`TxnManager::commit`] for a caller that holds the write gates of
    /// every table the transaction wrote (a rewrite such as `ALTER TABLE …
    /// ADD PRIMARY KEY`): the gates keep cut-overs away already.
    pub async fn commit_holding_gates(&self, txn: &mut Transaction) -> Result<()> {
        self.commit_gated(txn, false, None).await
    }

    /// [`TxnManager::commit_holding_gates`] for a rewrite into new storage
    /// (`ALTER COLUMN … TYPE`): the rows written under `staged`'s ids, which
    /// the catalog does not name until the rewrite switches to them, are
    /// placed by `staged`'s hash map.
    pub async fn commit_rewrite(&self, txn: &mut Transaction, staged: Arc<TableDef>) -> Result<()> {
        self.commit_gated(txn, false, Some(staged)).await
    }

    async fn commit_gated(&self, txn: &mut Transaction, gated: bool, staged: Option<Arc<TableDef>>) -> Result<()> {
        txn.finished = true;
        let id = txn.id();
        let writes = txn.written();
        if writes.is_empty() {
            return Ok(());
        }
        let mgr = txn.snapshot.mgr.clone();
        let hold = (txn.active.take(), txn.pin());
        let phases = if writes.nodes().len() == 1 { "one" } else { "two" };
        let result = tokio::spawn(async move {
            let result = mgr.commit_writes(id, writes, gated, staged).await;
            drop(hold);
            result
        })
        .await
        .map_err(|e| Error::internal(format!("commit task failed: {e}")))?;
        // Transactions that wrote: committed, by the number of phases, or
        // failed, by SQLSTATE (40001 for a conflict, 08006 for a lost node).
        match &result {
            Ok(()) => metrics::counter!("slicedb_commits_total", "phases" => phases).increment(1),
            Err(e) => metrics::counter!("slicedb_commit_failures_total", "sqlstate" => e.state.code()).increment(1),
        }
        result
    }

    async fn commit_writes(
        &self,
        id: TxnId,
        writes: TxnWrites,
        gated: bool,
        staged: Option<Arc<TableDef>>,
    ) -> Result<()> {
        let nodes = writes.nodes();
        // No cut-over of a written bucket may start until the commit is
        // applied, and none may have happened since the writes were sent.
        let mut permits = Vec::with_capacity(writes.placed.len());
        if gated {
            // Index entries pass their table's gates (they move with its
            // buckets): one permit per table, in ascending table order.
            let catalog = self.catalog.snapshot();
            let mut per_table: BTreeMap<TableId, BTreeSet<u16>> = BTreeMap::new();
            for (table, buckets) in &writes.placed {
                let owner = catalog.table_by_storage_id(*table).map_or(*table, |def| def.id);
                per_table.entry(owner).or_default().extend(buckets.keys().copied());
            }
            for (table, buckets) in &per_table {
                permits.push(self.routing.holds.enter(*table, buckets.iter().copied()).await);
            }
        }
        for (table, buckets) in &writes.placed {
            let catalog = self.catalog.snapshot();
            let staged = staged
                .as_ref()
                .filter(|d| d.id == *table || d.indexes.iter().any(|i| i.id == *table));
            let moved = match catalog.table_by_storage_id(*table).or(staged) {
                Some(def) => {
                    let map = catalog.table_map(def)?;
                    buckets.iter().any(|(b, n)| map.owner(*b) != *n)
                }
                None => true,
            };
            if moved {
                self.abort_on(id, &nodes).await;
                return Err(err!(
                    SerializationFailure,
                    "could not serialize access: a redistribution moved rows this transaction wrote"
                ));
            }
        }
        let result = if nodes.len() == 1 {
            self.commit_one_phase(id, &nodes).await
        } else {
            self.commit_two_phase(id, &nodes).await
        };
        drop(permits);
        result
    }

    async fn commit_one_phase(&self, id: TxnId, nodes: &BTreeSet<NodeId>) -> Result<()> {
        let commit_ts = self.commit_timestamp(id)?;
        let request = SliceRequest::Commit {
            txn: id,
            commit_ts,
            one_phase: true,
        };
        let Some((node, result)) = self.call_all(nodes, request).await.pop() else {
            self.applied(commit_ts);
            return Err(Error::internal("a one-phase commit without a slice server"));
        };
        match result {
            Ok(_) => {
                self.applied(commit_ts);
                Ok(())
            }
            Err(e) if is_connection_error(&e) => {
                // The slice server may still apply the commit. Until an
                // abort settles it (then it either happened or never
                // will), snapshots after `commit_ts` must wait.
                self.registry()?.unsettled.insert(commit_ts, (id, node));
                self.settle(commit_ts, id, node).await;
                Err(err!(
                    StatementCompletionUnknown,
                    "the connection to slice server {node} was lost during COMMIT; the transaction may or may not have committed: {e}"
                ))
            }
            Err(e) => {
                self.applied(commit_ts);
                Err(e)
            }
        }
    }

    /// Settles a one-phase commit whose answer was lost: once the slice
    /// server acknowledges an abort, the commit either happened before it
    /// or never will, and snapshots no longer wait for it.
    async fn settle(&self, commit_ts: Timestamp, txn: TxnId, node: NodeId) -> bool {
        let one: BTreeSet<NodeId> = [node].into();
        let settled = self
            .call_all(&one, SliceRequest::Abort { txn })
            .await
            .into_iter()
            .all(|(_, r)| r.is_ok());
        if settled {
            if let Ok(mut r) = self.registry() {
                r.unsettled.remove(&commit_ts);
            }
            self.applied(commit_ts);
        }
        settled
    }

    async fn commit_two_phase(&self, id: TxnId, nodes: &BTreeSet<NodeId>) -> Result<()> {
        // One durable round: the participants prepare while the record is
        // staged. The commit timestamp comes first (the record holds it),
        // so snapshots after it wait for the outcome.
        let commit_ts = self.commit_timestamp(id)?;
        let decision = CommitDecision {
            txn: id,
            commit_ts,
            participants: nodes.iter().copied().collect(),
            staged: true,
        };
        let stage = async {
            slicedb_common::failpoint::failpoint_async("coordinator-before-decision").await;
            self.log.stage(&decision).await
        };
        let (prepared, staged) = futures::join!(self.call_all(nodes, SliceRequest::Prepare { txn: id }), stage);
        let mut failure = prepared.into_iter().find_map(|(node, r)| r.err().map(|e| (node, e)));
        if let Err(e) = &staged {
            failure.get_or_insert((0, e.clone()));
        }
        if let Some((node, e)) = failure {
            tracing::info!(
                txn = id,
                "transaction {id} failed to prepare on slice server {node} or to stage its record: {e}; aborting"
            );
            self.abort_on(id, nodes).await;
            if staged.is_ok() {
                if let Err(e) = self.log.forget(id) {
                    tracing::warn!("could not forget the record of aborted transaction {id}: {e}");
                }
            }
            self.applied(commit_ts);
            return Err(match e.state {
                SqlState::SerializationFailure => e,
                _ if node == 0 => e,
                _ => err!(
                    SerializationFailure,
                    "could not serialize access: slice server {node} failed to prepare the transaction: {e}"
                ),
            });
        }
        tracing::debug!(txn = id, commit_ts, "transaction {id} committed on {nodes:?}");
        slicedb_common::failpoint::failpoint_async("coordinator-after-decision").await;
        // Phase two. From here on the transaction is committed: a slice
        // server that does not answer is told again by the recovery loop.
        self.carry_out(decision).await;
        Ok(())
    }

    /// Tells every participant of the committed `decision` to commit
    /// (phase two); once all have, the commit counts as applied. Either
    /// way the recovery loop settles it.
    async fn carry_out(&self, decision: CommitDecision) {
        let nodes: BTreeSet<NodeId> = decision.participants.iter().copied().collect();
        let request = SliceRequest::Commit {
            txn: decision.txn,
            commit_ts: decision.commit_ts,
            one_phase: false,
        };
        let mut all = true;
        for (node, r) in self.call_all(&nodes, request).await {
            if let Err(e) = r {
                all = false;
                tracing::warn!(
                    txn = decision.txn,
                    node,
                    "slice server {node} did not commit transaction {} yet: {e}",
                    decision.txn
                );
            }
        }
        if all {
            self.applied(decision.commit_ts);
        }
        if let Ok(mut r) = self.registry() {
            r.settling.insert(decision.txn, decision);
        }
    }

    /// Settles the commits decided so far: every participant commits what
    /// it still holds prepared of them and syncs its WAL
    /// ([`SliceRequest::Settle`]). A commit settled by all its participants
    /// is applied for good, and its record is forgotten.
    async fn settle_commits(&self) -> Result<()> {
        let settling: Vec<CommitDecision> = self.registry()?.settling.values().cloned().collect();
        let mut by_node: BTreeMap<NodeId, Vec<(TxnId, Timestamp)>> = BTreeMap::new();
        for d in &settling {
            for node in &d.participants {
                by_node.entry(*node).or_default().push((d.txn, d.commit_ts));
            }
        }
        let calls = by_node.into_iter().map(|(node, commits)| async move {
            let r = match self.cluster.client(node) {
                Ok(c) => c.call(SliceRequest::Settle { commits }).await,
                Err(e) => Err(e),
            };
            (node, r)
        });
        let mut failed = BTreeSet::new();
        for (node, r) in futures::future::join_all(calls).await {
            if let Err(e) = r {
                tracing::warn!(node, "slice server {node} did not settle its commits yet: {e}");
                failed.insert(node);
            }
        }
        for d in settling {
            if d.participants.iter().any(|n| failed.contains(n)) {
                continue;
            }
            self.log.forget(d.txn)?;
            self.registry()?.settling.remove(&d.txn);
            tracing::debug!(txn = d.txn, "transaction {} settled everywhere", d.txn);
            self.applied(d.commit_ts);
        }
        Ok(())
    }

    /// Decides the record `d` of a commit that no task of this coordinator
    /// is finishing (it was staged before a restart, or its commit task
    /// could not forget it): committed if every participant prepared or
    /// committed the transaction, aborted otherwise (a participant that
    /// never prepared it never will: nobody holds it). A participant that
    /// does not answer leaves it for a later round.
    pub async fn resolve(&self, d: CommitDecision) -> Result<()> {
        let nodes: BTreeSet<NodeId> = d.participants.iter().copied().collect();
        let commit = if d.staged {
            let mut statuses = Vec::with_capacity(nodes.len());
            for (node, r) in self.call_all(&nodes, SliceRequest::TxnStatus { txn: d.txn }).await {
                match r {
                    Ok(SliceResponse::TxnStatus(s)) => statuses.push(s),
                    Ok(other) => return Err(Error::internal(format!("slice server {node} answered {other:?}"))),
                    Err(e) => {
                        tracing::info!(txn = d.txn, node, "cannot decide transaction {} yet: {e}", d.txn);
                        return Ok(());
                    }
                }
            }
            statuses.contains(&TxnStatus::Committed)
                || statuses
                    .iter()
                    .all(|s| matches!(s, TxnStatus::Prepared | TxnStatus::Committed))
        } else {
            true
        };
        if commit {
            tracing::info!(txn = d.txn, "transaction {} was committed; settling it", d.txn);
            self.registry()?.settling.insert(d.txn, d);
        } else {
            tracing::info!(
                txn = d.txn,
                "transaction {} did not prepare everywhere; aborting it",
                d.txn
            );
            self.abort_on(d.txn, &nodes).await;
            self.log.forget(d.txn)?;
            self.applied(d.commit_ts);
        }
        Ok(())
    }

    /// Rolls `txn` back on every slice server it wrote to.
    pub async fn rollback(&self, txn: &mut Transaction) {
        txn.finished = true;
        let nodes = txn.written().nodes();
        if !nodes.is_empty() {
            metrics::counter!("slicedb_rollbacks_total").increment(1);
        }
        self.abort_on(txn.id(), &nodes).await;
    }

    /// Aborts `txn` on `nodes`, best effort (recovery aborts what is left).
    async fn abort_on(&self, txn: TxnId, nodes: &BTreeSet<NodeId>) {
        for (node, r) in self.call_all(nodes, SliceRequest::Abort { txn }).await {
            if let Err(e) = r {
                tracing::debug!(txn, node, "abort not delivered to slice server {node}: {e}");
            }
        }
    }

    /// `ROLLBACK TO SAVEPOINT`: drops the writes of statements `seq` and later.
    pub async fn rollback_to(&self, txn: &Transaction, seq: u32) -> Result<()> {
        let nodes = txn.written().nodes();
        for (_, r) in self
            .call_all(&nodes, SliceRequest::RollbackTo { txn: txn.id(), seq })
            .await
        {
            r?;
        }
        // Foreign-key work the rolled-back statements left goes with them.
        if let Ok(mut w) = txn.writes.lock() {
            w.fk.retain(|e| e.seq() < seq);
        }
        Ok(())
    }

    /// The oldest snapshot in use, or now.
    fn horizon(&self) -> Result<Timestamp> {
        let r = self.registry()?;
        match r.snapshots.keys().next() {
            Some(ts) => Ok(*ts),
            None => self.clock.now(),
        }
    }

    /// One round of recovery: settles decided commits, decides the
    /// records no commit task owns, tells participants again, aborts
    /// transactions the slice servers hold that nobody will finish, and,
    /// with `gc`, collects old versions.
    pub async fn recover(&self, gc: bool) -> Result<()> {
        let unsettled: Vec<_> = self.registry()?.unsettled.iter().map(|(t, v)| (*t, *v)).collect();
        for (commit_ts, (txn, node)) in unsettled {
            self.settle(commit_ts, txn, node).await;
        }
        let records = self.log.decisions()?;
        let unowned: Vec<CommitDecision> = {
            let r = self.registry()?;
            records
                .iter()
                .filter(|d| !r.active.contains_key(&d.txn) && !r.settling.contains_key(&d.txn))
                .cloned()
                .collect()
        };
        for d in unowned {
            self.resolve(d).await?;
        }
        self.settle_commits().await?;
        let decided: HashSet<TxnId> = records.iter().map(|d| d.txn).collect();
        let nodes: BTreeSet<NodeId> = self.catalog.snapshot().nodes.keys().copied().collect();
        for (node, r) in self.call_all(&nodes, SliceRequest::ListTransactions).await {
            let Ok(SliceResponse::Transactions(txns)) = r else {
                continue;
            };
            let orphans: Vec<TxnId> = {
                let registry = self.registry()?;
                txns.into_iter()
                    .map(|(t, _, _)| t)
                    .filter(|t| !registry.active.contains_key(t) && !decided.contains(t))
                    .collect()
            };
            for txn in orphans {
                // Re-read the log: the transaction may have been decided since.
                if self.log.decisions()?.iter().any(|d| d.txn == txn) {
                    continue;
                }
                tracing::info!(
                    txn,
                    node,
                    "aborting transaction {txn} that no session holds on slice server {node}"
                );
                let one: BTreeSet<NodeId> = [node].into();
                self.abort_on(txn, &one).await;
            }
        }
        self.break_deadlocks(&nodes).await;
        if gc {
            // Participants keep a marker of each transaction they
            // committed in phase two while its record may still be asked
            // about (see `resolve`): the horizon stays below every record.
            let oldest_record = records.iter().map(|d| d.txn).min().unwrap_or(Timestamp::MAX);
            let horizon = self.horizon()?.min(oldest_record);
            self.call_all(&nodes, SliceRequest::Gc { horizon }).await;
        }
        Ok(())
    }

    /// Finds cycles of transactions waiting for each other's row locks
    /// across slice servers (each slice server breaks the cycles it sees
    /// alone) and makes the youngest transaction of each stop waiting, with
    /// 40P01, as PostgreSQL's deadlock detector does.
    async fn break_deadlocks(&self, nodes: &BTreeSet<NodeId>) {
        let mut waits: Vec<(TxnId, TxnId, NodeId)> = Vec::new();
        for (node, r) in self.call_all(nodes, SliceRequest::ListLockWaits).await {
            if let Ok(SliceResponse::LockWaits(edges)) = r {
                waits.extend(edges.into_iter().map(|(w, h)| (w, h, node)));
            }
        }
        for victim in deadlock_victims(&waits) {
            let at: BTreeSet<NodeId> = waits.iter().filter(|e| e.0 == victim).map(|e| e.2).collect();
            tracing::info!(
                txn = victim,
                "deadlock across slice servers {at:?}: transaction {victim} is the victim"
            );
            self.call_all(&at, SliceRequest::BreakDeadlock { txn: victim }).await;
        }
    }

    /// Runs [`TxnManager::recover`] forever.
    pub fn spawn_recovery(self: &Arc<Self>) {
        let mgr = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut round = 0u32;
            loop {
                tokio::time::sleep(RECOVERY_PERIOD).await;
                let Some(mgr) = mgr.upgrade() else {
                    return;
                };
                round = round.wrapping_add(1);
                if let Err(e) = mgr.recover(round.is_multiple_of(GC_EVERY)).await {
                    tracing::warn!("transaction recovery: {e}");
                }
            }
        });
    }

    /// A read-only statement's context at a new snapshot.
    pub async fn read_only_statement(self: &Arc<Self>) -> Result<(Snapshot, Arc<StatementTxn>)> {
        let snapshot = self.snapshot().await?;
        let txn = Arc::new(StatementTxn::read_only(snapshot.ts));
        Ok((snapshot, txn))
    }
}

/// The transactions to abort so that no cycle is left in the wait-for
/// graph `waits` (waiter, holder, where): the youngest (largest id) of each
/// cycle found.
fn deadlock_victims(waits: &[(TxnId, TxnId, NodeId)]) -> Vec<TxnId> {
    let mut graph: BTreeMap<TxnId, BTreeSet<TxnId>> = BTreeMap::new();
    for (w, h, _) in waits {
        graph.entry(*w).or_default().insert(*h);
    }
    let mut victims = Vec::new();
    loop {
        let Some(cycle) = find_cycle(&graph) else {
            return victims;
        };
        let victim = *cycle.iter().max().expect("a cycle has members");
        graph.remove(&victim);
        victims.push(victim);
    }
}

/// Some cycle of `graph`, if it has one.
fn find_cycle(graph: &BTreeMap<TxnId, BTreeSet<TxnId>>) -> Option<Vec<TxnId>> {
    // Iterative depth-first search; `on_path` holds the current path.
    let mut done: HashSet<TxnId> = HashSet::new();
    for start in graph.keys() {
        if done.contains(start) {
            continue;
        }
        let mut path: Vec<(TxnId, Vec<TxnId>)> = vec![(*start, graph[start].iter().copied().collect())];
        let mut on_path: HashSet<TxnId> = [*start].into();
        while let Some((node, next)) = path.last_mut() {
            match next.pop() {
                Some(n) if on_path.contains(&n) => {
                    let from = path.iter().position(|(t, _)| *t == n).expect("on the path");
                    return Some(path[from..].iter().map(|(t, _)| *t).collect());
                }
                Some(n) if done.contains(&n) => {}
                Some(n) => {
                    let succ = graph.get(&n).map(|s| s.iter().copied().collect()).unwrap_or_default();
                    on_path.insert(n);
                    path.push((n, succ));
                }
                None => {
                    let node = *node;
                    on_path.remove(&node);
                    done.insert(node);
                    path.pop();
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
