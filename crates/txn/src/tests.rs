//! The transaction manager against real slice servers (in this process,
//! over the local transport): commits in one and two phases, rollback,
//! snapshots, and recovery's presumed abort.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use slicedb_catalog::{Catalog, Change, NodeInfo};
use slicedb_common::{ColumnDef, Datum, SqlType, TableDef, TableId};
use slicedb_hashmap::HashMap;
use slicedb_planner::table::LiveRouting;
use slicedb_planner::write_hold::WriteHolds;
use slicedb_slice_server::SliceServer;
use slicedb_storage::{key::row_key, ReadAt, RowWrite, TxnWrite};
use slicedb_transport::local::LocalTransport;
use slicedb_transport::{Cluster, ScanRequest, SliceRequest, SliceResponse};

use super::*;

/// Two slice servers, hash map `hm` over them (buckets below 32,768 on
/// node 1, the rest on node 2), and table `t (k bigint PRIMARY KEY)`.
struct Harness {
    _dir: tempfile::TempDir,
    cluster: Arc<Cluster>,
    catalog: Arc<Catalog>,
    routing: Arc<LiveRouting>,
    servers: Vec<Arc<SliceServer>>,
    mgr: Arc<TxnManager>,
    table: TableId,
}

const NODE_1_BUCKET: u16 = 7;
const NODE_2_BUCKET: u16 = 60_000;

fn harness() -> Arc<Harness> {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::open(&dir.path().join("catalog")).unwrap());
    let cluster = Arc::new(Cluster::new());
    let cluster_id = catalog.snapshot().cluster_id();
    let mut servers = Vec::new();
    for node in [1, 2] {
        let server = Arc::new(SliceServer::open(&dir.path().join(format!("slice-{node}"))).unwrap());
        server.register(node, cluster_id).unwrap();
        cluster.add(Arc::new(LocalTransport::new(node, server.clone())));
        servers.push(server);
    }
    let state = catalog
        .update(|state| {
            let mut column = ColumnDef::new("k", SqlType::BigInt);
            column.nullable = false;
            Ok(vec![
                Change::PutNode(NodeInfo {
                    id: 1,
                    address: "embedded".into(),
                    capacity_mb: None,
                }),
                Change::PutNode(NodeInfo {
                    id: 2,
                    address: "embedded".into(),
                    capacity_mb: None,
                }),
                Change::PutHashMap(HashMap::range("hm", &[1, 2])?),
                Change::SetCurrentMap("hm".into()),
                Change::PutTable(TableDef::new(state.next_table_id(), "t", vec![column], vec![0], "hm")),
            ])
        })
        .unwrap();
    let map = state.hash_map("hm").unwrap();
    assert_eq!((map.owner(NODE_1_BUCKET), map.owner(NODE_2_BUCKET)), (1, 2));
    let table = state.table("t").unwrap().id;
    let routing = Arc::new(LiveRouting {
        catalog: catalog.clone(),
        holds: Arc::new(WriteHolds::new()),
        cutovers: Arc::default(),
    });
    let mgr = TxnManager::open(catalog.clone(), cluster.clone(), routing.clone()).unwrap();
    Arc::new(Harness {
        _dir: dir,
        cluster,
        catalog,
        routing,
        servers,
        mgr,
        table,
    })
}

/// A scan of every row of `t` (table `table`) at `at`.
fn full_scan(table: TableId, at: ReadAt) -> ScanRequest {
    ScanRequest {
        table_id: table,
        column_types: vec![SqlType::BigInt],
        projection: vec![0],
        with_key: false,
        buckets: vec![(0, u16::MAX)],
        keys: None,
        predicate: None,
        limit: None,
        batch_size: 1024,
        at,
        missing: vec![],
        dropped: vec![],
    }
}

impl Harness {
    /// Writes row `k` into `bucket` as the next statement of `txn`.
    async fn write(self: &Arc<Self>, txn: &mut Transaction, bucket: u16, k: i64) {
        self.start_write(txn, bucket, k).await.unwrap().unwrap();
    }

    /// Starts writing row `k` into `bucket` as the next statement of `txn`,
    /// on a task of its own (it may wait for a row lock). Like the
    /// coordinator, the transaction counts the slice server as a
    /// participant whatever the outcome.
    fn start_write(
        self: &Arc<Self>,
        txn: &mut Transaction,
        bucket: u16,
        k: i64,
    ) -> tokio::task::JoinHandle<Result<()>> {
        let node = if bucket < 32_768 { 1 } else { 2 };
        let statement = txn.statement();
        let mut write = statement.write.unwrap();
        let mut writes = statement.writes.lock().unwrap();
        write.continues = !writes.acknowledged.insert(node);
        writes.placed.entry(self.table).or_default().insert(bucket, node);
        drop(writes);
        let h = self.clone();
        tokio::spawn(async move { h.write_as(write, node, bucket, k).await })
    }

    async fn write_as(&self, txn: TxnWrite, node: NodeId, bucket: u16, k: i64) -> Result<()> {
        let request = SliceRequest::Write {
            txn,
            table_id: self.table,
            unique_name: "t_pkey".into(),
            writes: vec![RowWrite::Insert {
                key: row_key(bucket, &[Datum::Int64(k)])?,
                row: vec![Datum::Int64(k)],
            }],
            seen: false,
        };
        self.cluster.client(node)?.call(request).await.map(|_| ())
    }

    /// The rows of `t` on both slice servers at `at`.
    async fn count(&self, at: ReadAt) -> usize {
        let mut n = 0;
        for node in [1, 2] {
            let request = full_scan(self.table, at);
            let mut stream = self.cluster.client(node).unwrap().scan(request).await.unwrap();
            while let Some(batch) = stream.next().await {
                n += batch.unwrap().num_rows();
            }
        }
        n
    }

    /// Waits (at most 10 s) until `txn` waits for a row lock somewhere.
    async fn wait_for_lock_waiter(&self, txn: TxnId) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            for node in [1, 2] {
                if let Ok(SliceResponse::LockWaits(w)) = self
                    .cluster
                    .client(node)
                    .unwrap()
                    .call(SliceRequest::ListLockWaits)
                    .await
                {
                    if w.iter().any(|(waiter, _)| *waiter == txn) {
                        return;
                    }
                }
            }
            assert!(std::time::Instant::now() < deadline, "{txn} never waited");
            tokio::task::yield_now().await;
        }
    }

    /// Transactions the slice servers hold (pending or prepared).
    async fn held(&self) -> BTreeSet<TxnId> {
        let mut out = BTreeSet::new();
        for node in [1, 2] {
            match self
                .cluster
                .client(node)
                .unwrap()
                .call(SliceRequest::ListTransactions)
                .await
            {
                Ok(SliceResponse::Transactions(txns)) => out.extend(txns.into_iter().map(|t| t.0)),
                other => panic!("{other:?}"),
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_in_one_and_two_phases_apply_everywhere_and_snapshots_keep_their_view() {
    let h = harness();
    let mut one = h.mgr.begin().await.unwrap();
    h.write(&mut one, NODE_1_BUCKET, 1).await;
    assert_eq!(h.count(ReadAt::LATEST).await, 0, "pending writes are invisible");
    h.mgr.commit(&mut one).await.unwrap();
    assert_eq!(h.count(ReadAt::LATEST).await, 1);

    let before = h.mgr.snapshot().await.unwrap();
    let mut two = h.mgr.begin().await.unwrap();
    h.write(&mut two, NODE_1_BUCKET, 2).await;
    h.write(&mut two, NODE_2_BUCKET, 3).await;
    h.mgr.commit(&mut two).await.unwrap();
    assert_eq!(h.count(ReadAt::LATEST).await, 3);
    assert_eq!(
        h.count(ReadAt::at(before.ts)).await,
        1,
        "an older snapshot keeps its view"
    );
    assert!(h.held().await.is_empty(), "nothing left pending or prepared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_wait_for_row_locks_then_first_updater_wins() {
    let h = harness();
    let mut a = h.mgr.begin().await.unwrap();
    h.write(&mut a, NODE_2_BUCKET, 5).await;

    // b waits for a's lock until its lock timeout.
    let mut b = h.mgr.begin().await.unwrap();
    b.lock_timeout_ms = 30;
    let e = h.start_write(&mut b, NODE_2_BUCKET, 5).await.unwrap().unwrap_err();
    assert_eq!(e.state.code(), "55P03");
    h.mgr.rollback(&mut b).await;

    // c waits as long as it takes; a rolls back, so c goes on.
    let mut c = h.mgr.begin().await.unwrap();
    let waiting = h.start_write(&mut c, NODE_2_BUCKET, 5);
    h.wait_for_lock_waiter(c.id()).await;
    h.mgr.rollback(&mut a).await;
    waiting.await.unwrap().unwrap();

    // d, whose snapshot predates c's commit, waits for c; c commits, so
    // d's insert meets c's row: a unique violation, as in PostgreSQL at
    // every level, though the row is newer than d's snapshot (updates and
    // deletes of such a row fail with 40001: the storage tests).
    let mut d = h.mgr.begin().await.unwrap();
    let waiting = h.start_write(&mut d, NODE_2_BUCKET, 5);
    h.wait_for_lock_waiter(d.id()).await;
    h.mgr.commit(&mut c).await.unwrap();
    let e = waiting.await.unwrap().unwrap_err();
    assert_eq!(e.state.code(), "23505");
    h.mgr.rollback(&mut d).await;
    assert_eq!(h.count(ReadAt::LATEST).await, 1);
    assert!(h.held().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_across_slice_servers_is_broken_by_recovery() {
    let h = harness();
    let mut a = h.mgr.begin().await.unwrap();
    let mut b = h.mgr.begin().await.unwrap();
    h.write(&mut a, NODE_1_BUCKET, 1).await;
    h.write(&mut b, NODE_2_BUCKET, 2).await;
    // a waits for b on node 2, b for a on node 1: neither slice server
    // sees the cycle alone.
    let a_waits = h.start_write(&mut a, NODE_2_BUCKET, 2);
    h.wait_for_lock_waiter(a.id()).await;
    let b_waits = h.start_write(&mut b, NODE_1_BUCKET, 1);
    h.wait_for_lock_waiter(b.id()).await;
    h.mgr.recover(false).await.unwrap();
    // b is the younger: it is the victim, and a goes on once b is gone.
    let e = b_waits.await.unwrap().unwrap_err();
    assert_eq!(e.state.code(), "40P01");
    h.mgr.rollback(&mut b).await;
    a_waits.await.unwrap().unwrap();
    h.mgr.commit(&mut a).await.unwrap();
    assert_eq!(h.count(ReadAt::LATEST).await, 2);
}

/// Parallel commits: a two-phase commit fsyncs each participant once (its
/// prepare, while the coordinator stages the record); phase two is synced
/// later, for many commits at once, when recovery settles them, and only
/// then is the record forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_phase_commit_has_one_durable_round_and_is_settled_later() {
    let h = harness();
    let syncs = |h: &Harness| h.servers.iter().map(|s| s.wal_syncs()).collect::<Vec<_>>();
    let before = syncs(&h);
    let mut txn = h.mgr.begin().await.unwrap();
    h.write(&mut txn, NODE_1_BUCKET, 1).await;
    h.write(&mut txn, NODE_2_BUCKET, 2).await;
    h.mgr.commit(&mut txn).await.unwrap();
    let after = syncs(&h);
    assert_eq!(
        after.iter().zip(&before).map(|(a, b)| a - b).collect::<Vec<_>>(),
        vec![1, 1],
        "one fsync per participant on the commit's path"
    );
    let (_s, at) = h.mgr.read_only_statement().await.unwrap();
    assert_eq!(h.count(at.read).await, 2, "the commit is applied when acknowledged");
    assert_eq!(h.catalog.commit_decisions().unwrap().len(), 1, "kept until settled");
    h.mgr.recover(false).await.unwrap();
    assert!(
        h.catalog.commit_decisions().unwrap().is_empty(),
        "settled and forgotten"
    );
    assert!(
        syncs(&h).iter().zip(&after).all(|(a, b)| a > b),
        "settling synced phase two"
    );
}

/// A coordinator that restarts with a staged record decides it from the
/// participants: committed if every one prepared (or already committed)
/// it, aborted if one never prepared it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_record_is_decided_from_its_participants_after_a_restart() {
    let h = harness();
    let call = |node: NodeId, request: SliceRequest| {
        let h = h.clone();
        async move { h.cluster.client(node).unwrap().call(request).await.unwrap() }
    };
    // Two transactions of a coordinator that then died: `half` prepared on
    // node 1 only, `whole` prepared on both and committed on node 1.
    let (half, whole) = (h.mgr.now().unwrap(), h.mgr.now().unwrap());
    for (txn, k) in [(half, 10), (whole, 20)] {
        for (node, bucket) in [(1, NODE_1_BUCKET), (2, NODE_2_BUCKET)] {
            let w = TxnWrite::first(txn);
            h.write_as(w, node, bucket, k + node as i64).await.unwrap();
        }
    }
    call(1, SliceRequest::Prepare { txn: half }).await;
    call(1, SliceRequest::Prepare { txn: whole }).await;
    call(2, SliceRequest::Prepare { txn: whole }).await;
    let whole_ts = h.mgr.now().unwrap();
    let committed = SliceRequest::Commit {
        txn: whole,
        commit_ts: whole_ts,
        one_phase: false,
    };
    call(1, committed).await;
    for (txn, commit_ts) in [(half, h.mgr.now().unwrap()), (whole, whole_ts)] {
        h.catalog
            .log_commit(&CommitDecision {
                txn,
                commit_ts,
                participants: vec![1, 2],
                staged: true,
            })
            .unwrap();
    }
    // The restarted coordinator.
    let mgr = TxnManager::open(h.catalog.clone(), h.cluster.clone(), h.routing.clone()).unwrap();
    mgr.recover(false).await.unwrap();
    assert!(h.held().await.is_empty(), "both decided, their locks released");
    let (_s, at) = mgr.read_only_statement().await.unwrap();
    assert_eq!(h.count(at.read).await, 2, "`whole` committed on both, `half` nowhere");
    mgr.recover(false).await.unwrap();
    assert!(h.catalog.commit_decisions().unwrap().is_empty());
}

/// A slice server that restarts with a prepared transaction does not know
/// whether its phase two (unsynced) was acknowledged before the restart:
/// its reads wait for the coordinator's decision, and fail with 40001 if
/// none comes in time, rather than miss a committed row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_slice_server_reads_only_once_its_prepared_transactions_are_decided() {
    use slicedb_transport::SliceService;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slice");
    let txn = 1_000;
    let table = 1;
    {
        let server = SliceServer::open(&path).unwrap();
        let write = SliceRequest::Write {
            txn: TxnWrite::first(txn),
            table_id: table,
            unique_name: "t_pkey".into(),
            writes: vec![RowWrite::Insert {
                key: row_key(NODE_1_BUCKET, &[Datum::Int64(1)]).unwrap(),
                row: vec![Datum::Int64(1)],
            }],
            seen: false,
        };
        server.call(write).await.unwrap();
        server.call(SliceRequest::Prepare { txn }).await.unwrap();
    }
    let server = SliceServer::open(&path).unwrap();
    let scan = || full_scan(table, ReadAt::LATEST);
    let e = server.scan(scan()).await.err().expect("the read waits, then gives up");
    assert_eq!(e.state.code(), "40001", "{e}");
    server
        .call(SliceRequest::Settle {
            commits: vec![(txn, txn + 1)],
        })
        .await
        .unwrap();
    let mut stream = server.scan(scan()).await.unwrap();
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch.unwrap().num_rows();
    }
    assert_eq!(rows, 1, "decided, the committed row is read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_aborts_what_no_session_holds_and_spares_open_transactions() {
    let h = harness();
    // An orphan: writes of a transaction this coordinator never began (as
    // after a crash).
    let orphan = h.mgr.now().unwrap();
    let w = TxnWrite::first(orphan);
    h.write_as(w, 1, NODE_1_BUCKET, 9).await.unwrap();
    let mut open = h.mgr.begin().await.unwrap();
    h.write(&mut open, NODE_2_BUCKET, 10).await;
    assert_eq!(h.held().await, [orphan, open.id()].into());
    h.mgr.recover(false).await.unwrap();
    assert_eq!(
        h.held().await,
        [open.id()].into(),
        "the orphan is aborted, the open one kept"
    );
    h.mgr.commit(&mut open).await.unwrap();
    assert_eq!(h.count(ReadAt::LATEST).await, 1);
}

#[test]
fn the_youngest_of_each_cycle_across_slice_servers_is_the_victim() {
    // 1 → 2 on node 1, 2 → 1 on node 2: a cycle no slice server sees alone.
    assert_eq!(deadlock_victims(&[(1, 2, 1), (2, 1, 2)]), vec![2]);
    // Two cycles, and a waiter outside them.
    let waits = [(1, 2, 1), (2, 3, 2), (3, 1, 1), (5, 6, 1), (6, 5, 2), (7, 1, 1)];
    assert_eq!(deadlock_victims(&waits), vec![3, 6]);
    assert!(deadlock_victims(&[(1, 2, 1), (2, 3, 2)]).is_empty());
}
