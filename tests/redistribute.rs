//! End-to-end tests of `REDISTRIBUTE` (SPEC §4) on a cluster of real
//! processes: a coordinator and slice servers over QUIC, a spare slice
//! server added with `ADD NODE`, and four writer connections that insert,
//! update and delete without pause while the table moves. Each writer keeps a
//! model of what was acknowledged; at the end the table must equal the
//! models, row for row.
//!
//! Variants: `CANCEL` in the middle of the copy (then the move again, to
//! completion), `kill -9` of the coordinator mid-copy, and `kill -9` of the
//! target slice server mid-move with a `minimal_move` map, and `kill -9` of a
//! source slice server mid-copy. And transactions left open across a
//! cut-over: they commit on the new owner or abort with 40001. And a table
//! with a unique and a non-unique index, whose entries move with it, and a
//! parent and child table that move while children are inserted and
//! parents deleted with cascade. And `DRAIN NODE` then `REMOVE NODE`: the
//! cluster shrinks under the writers, and a drain resumes after `kill -9`
//! of the coordinator; and `REBALANCE` fills a node that joined empty, by
//! hand and by itself above the high watermark.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slicedb_e2e::{connect, query, TestCluster};
use tokio_postgres::Client;

/// Rows loaded before the move, spread over the writers by `id % WRITERS`.
const ROWS: i64 = 24_000;
const WRITERS: i64 = 4;
/// A value of about 200 bytes, so the table is a few MB.
fn value(tag: &str) -> String {
    format!("{tag}-{}", "x".repeat(190))
}

/// Creates `t` and loads [`ROWS`] rows; returns each writer's share.
async fn load(client: &Client) -> Vec<BTreeMap<i64, String>> {
    client
        .batch_execute("CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL) DISTRIBUTED BY (id)")
        .await
        .unwrap();
    let mut models = vec![BTreeMap::new(); WRITERS as usize];
    let ids: Vec<i64> = (1..=ROWS).collect();
    for chunk in ids.chunks(1000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| format!("({i}, '{}')", value(&format!("r{i}"))))
            .collect();
        client
            .batch_execute(&format!("INSERT INTO t VALUES {}", values.join(", ")))
            .await
            .unwrap();
        for i in chunk {
            models[(*i % WRITERS) as usize].insert(*i, value(&format!("r{i}")));
        }
    }
    models
}

/// The next value of a xorshift generator: writers pick operations and
/// rows with it, reproducibly.
fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Fails the test with a writer's first failed statements, if any.
fn assert_no_errors(errors: &[String]) {
    assert!(
        errors.is_empty(),
        "writer statements failed: {:?}",
        &errors[..errors.len().min(5)]
    );
}

/// What one writer did.
struct WriterReport {
    model: BTreeMap<i64, String>,
    errors: Vec<String>,
    ops: u64,
    slowest: Duration,
}

/// Inserts, updates and deletes its own rows of `t` until `stop`, keeping
/// `model` equal to what was acknowledged. Bounded in operations and time.
async fn writer(pg: SocketAddr, w: i64, mut model: BTreeMap<i64, String>, stop: Arc<AtomicBool>) -> WriterReport {
    let client = connect(pg).await;
    let insert = client.prepare("INSERT INTO t VALUES ($1, $2)").await.unwrap();
    let update = client.prepare("UPDATE t SET v = $2 WHERE id = $1").await.unwrap();
    let delete = client.prepare("DELETE FROM t WHERE id = $1").await.unwrap();
    let mut keys: Vec<i64> = model.keys().copied().collect();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1);
    // Writer w inserts ids from 1,000,000 × (w + 1) on, after any it already has.
    let base = 1_000_000 * (w + 1);
    let mut next_id = model.range(base..).next_back().map_or(base, |(id, _)| id + 1);
    let mut report = WriterReport {
        model: BTreeMap::new(),
        errors: Vec::new(),
        ops: 0,
        slowest: Duration::ZERO,
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    while !stop.load(Ordering::Relaxed) && report.ops < 200_000 && Instant::now() < deadline {
        xorshift(&mut seed);
        let n = report.ops;
        let started = Instant::now();
        let result = match seed % 10 {
            0..=3 => {
                let id = next_id;
                next_id += 1;
                let v = value(&format!("w{w}i{n}"));
                let r = client.execute(&insert, &[&id, &v]).await;
                if matches!(r, Ok(1)) {
                    model.insert(id, v);
                    keys.push(id);
                }
                r.map(|c| (c, 1))
            }
            4..=7 if !keys.is_empty() => {
                let id = keys[(seed >> 8) as usize % keys.len()];
                let v = value(&format!("w{w}u{n}"));
                let r = client.execute(&update, &[&id, &v]).await;
                if matches!(r, Ok(1)) {
                    model.insert(id, v);
                }
                r.map(|c| (c, 1))
            }
            _ if !keys.is_empty() => {
                let at = (seed >> 8) as usize % keys.len();
                let id = keys[at];
                let r = client.execute(&delete, &[&id]).await;
                if matches!(r, Ok(1)) {
                    model.remove(&id);
                    keys.swap_remove(at);
                }
                r.map(|c| (c, 1))
            }
            _ => Ok((1, 1)),
        };
        report.slowest = report.slowest.max(started.elapsed());
        match result {
            Ok((got, want)) if got == want => {}
            Ok((got, _)) => report.errors.push(format!("op {n}: {got} rows affected, expected 1")),
            Err(e) => report.errors.push(format!(
                "op {n}: {}",
                e.as_db_error()
                    .map(|d| format!("{} {}", d.code().code(), d.message()))
                    .unwrap_or_else(|| e.to_string())
            )),
        }
        report.ops += 1;
    }
    report.model = model;
    report
}

struct Writers {
    stop: Arc<AtomicBool>,
    handles: Vec<tokio::task::JoinHandle<WriterReport>>,
}

impl Writers {
    fn start(pg: SocketAddr, models: Vec<BTreeMap<i64, String>>) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = models
            .into_iter()
            .enumerate()
            .map(|(w, m)| tokio::spawn(writer(pg, w as i64, m, stop.clone())))
            .collect();
        Writers { stop, handles }
    }

    /// Stops the writers; returns their models and asserts every statement succeeded.
    async fn finish(self) -> Vec<BTreeMap<i64, String>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut models = Vec::new();
        let mut ops = 0;
        let mut slowest = Duration::ZERO;
        for h in self.handles {
            let r = h.await.unwrap();
            assert_no_errors(&r.errors);
            ops += r.ops;
            slowest = slowest.max(r.slowest);
            models.push(r.model);
        }
        eprintln!("writers: {ops} statements acknowledged, slowest {slowest:?}");
        assert!(ops > 0);
        models
    }
}

/// Asserts `t` holds exactly the rows of `models`.
async fn assert_table_equals(client: &Client, models: &[BTreeMap<i64, String>]) {
    let expected: BTreeMap<i64, String> = models.iter().flat_map(|m| m.clone()).collect();
    let rows = client.query("SELECT id, v FROM t ORDER BY id", &[]).await.unwrap();
    let actual: BTreeMap<i64, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(rows.len(), actual.len(), "no primary key appears twice");
    if actual != expected {
        let missing: Vec<_> = expected.keys().filter(|k| !actual.contains_key(k)).take(5).collect();
        let extra: Vec<_> = actual.keys().filter(|k| !expected.contains_key(k)).take(5).collect();
        let changed: Vec<_> = expected
            .iter()
            .filter(|(k, v)| actual.get(k).is_some_and(|a| a != *v))
            .map(|(k, _)| k)
            .take(5)
            .collect();
        panic!(
            "table differs from the writers' models: {} rows vs {} expected; missing {missing:?}, extra {extra:?}, changed {changed:?}",
            actual.len(),
            expected.len()
        );
    }
}

/// The job's row of `SHOW REDISTRIBUTIONS`, by column name.
async fn job_status(client: &Client, job: &str) -> BTreeMap<String, String> {
    let rows = client
        .simple_query("SHOW REDISTRIBUTIONS")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .find(|r| r.get("job") == Some(job))
        .unwrap_or_else(|| panic!("job {job} not shown"));
    rows.columns()
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name().to_string(), rows.get(i).unwrap_or("").to_string()))
        .collect()
}

/// Polls the job (at most `within`) until `done` holds for its status.
async fn wait_for(
    client: &Client,
    job: &str,
    within: Duration,
    done: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + within;
    loop {
        let s = job_status(client, job).await;
        if done(&s) {
            return s;
        }
        assert!(s["state"] != "failed", "job failed: {s:?}");
        assert!(Instant::now() < deadline, "job did not get there in {within:?}: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn number(s: &BTreeMap<String, String>, column: &str) -> i64 {
    s[column]
        .parse()
        .unwrap_or_else(|_| panic!("{column} = {:?}", s[column]))
}

/// `SHOW SLICES FOR t` as node → (hash map, rows).
async fn slices(client: &Client) -> BTreeMap<i64, (String, i64)> {
    query(client, "SHOW SLICES FOR t")
        .await
        .into_iter()
        .map(|r| (r[2].parse().unwrap(), (r[1].clone(), r[4].parse().unwrap())))
        .collect()
}

async fn count(client: &Client, sql: &str) -> i64 {
    query(client, sql).await[0][0].parse().unwrap()
}

/// Starts `REDISTRIBUTE …` and returns the job id.
async fn redistribute(client: &Client, sql: &str) -> (String, i64) {
    let r = query(client, sql).await;
    assert_eq!(r.len(), 1, "{r:?}");
    (r[0][0].clone(), r[0][4].parse().unwrap())
}

/// A cluster with `t` loaded, four writers running, the spare added with
/// `ADD NODE '…' {add_node}`, and `redistribute` started: returns the job
/// id and the buckets it moves.
async fn start_moving(add_node: &str, redistribute_sql: &str) -> (TestCluster, Client, Writers, String, i64) {
    let cluster = TestCluster::start(3, 1);
    let client = cluster.client().await;
    let models = load(&client).await;
    let writers = Writers::start(cluster.pg, models);
    client
        .batch_execute(&format!("ADD NODE '{}' {add_node}", cluster.spares[0]))
        .await
        .unwrap();
    let (job, buckets) = redistribute(&client, redistribute_sql).await;
    (cluster, client, writers, job, buckets)
}

/// Asserts `t` is on `nodes` and every row is stored exactly once across
/// them: no source kept what it gave away, no target kept a partial copy.
async fn assert_stored_once(client: &Client, nodes: &[i64]) {
    let placed = slices(client).await;
    assert_eq!(placed.keys().copied().collect::<Vec<_>>(), nodes, "{placed:?}");
    let total = count(client, "SELECT count(*) FROM t").await;
    assert_eq!(placed.values().map(|(_, r)| r).sum::<i64>(), total, "{placed:?}");
}

/// Waits until the job is copying and has copied some rows.
async fn wait_until_copying(client: &Client, job: &str) {
    wait_for(client, job, Duration::from_secs(60), |s| {
        s["state"] == "copying" && number(s, "rows_copied") > 0
    })
    .await;
}

/// Waits until the job reports the error it is retrying after (a slice
/// server it needs is gone): it waits for the node instead of failing.
async fn wait_until_retrying(client: &Client, job: &str) -> BTreeMap<String, String> {
    wait_for(client, job, Duration::from_secs(60), |s| !s["error"].is_empty()).await
}

/// Waits for the job to finish, stops the writers, and checks the table
/// against their models and that every row is stored once on nodes 1–4.
async fn finish_and_check(client: &Client, job: &str, writers: Writers) {
    wait_for(client, job, Duration::from_secs(180), |s| s["state"] == "done").await;
    let models = writers.finish().await;
    assert_table_equals(client, &models).await;
    assert_stored_once(client, &[1, 2, 3, 4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redistribute_moves_a_table_under_four_writers() {
    let cluster = TestCluster::start(3, 1);
    let client = cluster.client().await;
    let models = load(&client).await;
    // A table no one writes: a reader checks it stays whole through its move.
    client
        .batch_execute(
            "CREATE TABLE s (id bigint PRIMARY KEY, g int NOT NULL);
             INSERT INTO s SELECT i, i % 10 FROM generate_series(1, 5000) AS x(i)",
        )
        .await
        .unwrap();
    let s_expected = vec![vec!["5000".to_string(), (5000 * 5001 / 2).to_string()]];

    let writers = Writers::start(cluster.pg, models);
    tokio::time::sleep(Duration::from_millis(500)).await;
    client
        .batch_execute(&format!("ADD NODE '{}'", cluster.spares[0]))
        .await
        .unwrap();
    let started = query(&client, "REDISTRIBUTE ALL WITH (max_rate_mb = 2)").await;
    assert_eq!(started.len(), 2, "both tables move: {started:?}");
    let job = started.iter().find(|r| r[1] == "t").unwrap()[0].clone();

    // A second session watches: progress only grows, and it sees the copy.
    let watcher = cluster.client().await;
    let reader = cluster.client().await;
    let (mut last_copied, mut last_moved, mut saw_progress) = (0, 0, false);
    let mut reads = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    let fin = loop {
        let s = job_status(&watcher, &job).await;
        let (copied, moved) = (number(&s, "rows_copied"), number(&s, "buckets_moved"));
        assert!(
            copied >= last_copied && moved >= last_moved,
            "progress went back: {s:?}"
        );
        saw_progress |= copied > 0 && s["state"] != "done";
        (last_copied, last_moved) = (copied, moved);
        // Complete results throughout: the static table never loses or doubles a row.
        assert_eq!(query(&reader, "SELECT count(*), sum(id) FROM s").await, s_expected);
        reads += 1;
        if s["state"] == "done" {
            break s;
        }
        assert!(s["state"] != "failed", "{s:?}");
        assert!(Instant::now() < deadline, "not done in time: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(saw_progress, "a watcher saw the copy advance");
    assert_eq!(fin["buckets_moved"], fin["buckets_total"]);
    eprintln!("job {job}: {fin:?}; {reads} checked reads during the move");
    let view = query(
        &watcher,
        &format!("SELECT state, buckets_moved FROM slicedb.redistributions WHERE job = {job}"),
    )
    .await;
    assert_eq!(view, vec![vec!["done".to_string(), fin["buckets_total"].clone()]]);
    // Writers keep going on the new map, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let models = writers.finish().await;

    assert_table_equals(&client, &models).await;
    let placed = slices(&client).await;
    assert_eq!(
        placed.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3, 4],
        "{placed:?}"
    );
    assert!(placed.values().all(|(m, rows)| m == "hm2" && *rows > 0), "{placed:?}");
    // Every row is stored once: the sources dropped what they gave away.
    let total = count(&client, "SELECT count(*) FROM t").await;
    assert_eq!(placed.values().map(|(_, r)| r).sum::<i64>(), total);
    assert_eq!(query(&client, "SELECT count(*), sum(id) FROM s").await, s_expected);
    let maps = query(&client, "SHOW HASH MAPS").await;
    assert!(maps.iter().any(|m| m[0] == "hm1" && m[4] == "0"), "{maps:?}");
    assert!(maps.iter().any(|m| m[0] == "hm2" && m[4] == "2"), "{maps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_leaves_the_table_whole_on_its_old_map() {
    let (_cluster, client, writers, job, _) = start_moving("", "REDISTRIBUTE TABLE t WITH (max_rate_mb = 0.5)").await;
    wait_until_copying(&client, &job).await;
    // While it moves, what would break the move is refused with 55006.
    for sql in [
        "DROP TABLE t",
        "TRUNCATE t",
        "DROP HASH MAP hm2",
        "REDISTRIBUTE TABLE t",
    ] {
        let e = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("55006"), "{sql}: {e:?}");
    }
    client
        .batch_execute(&format!("CANCEL REDISTRIBUTION {job}"))
        .await
        .unwrap();
    let s = job_status(&client, &job).await;
    assert_eq!(s["state"], "cancelled", "{s:?}");
    assert_eq!(s["buckets_moved"], "0");
    // Cancelling twice is an error with a SQLSTATE, not a hang.
    let e = client
        .batch_execute(&format!("CANCEL REDISTRIBUTION {job}"))
        .await
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "55000");
    let models = writers.finish().await;
    assert_table_equals(&client, &models).await;
    let placed = slices(&client).await;
    assert_eq!(placed.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(placed.values().all(|(m, _)| m == "hm1"), "{placed:?}");
    let total = count(&client, "SELECT count(*) FROM t").await;
    assert_eq!(placed.values().map(|(_, r)| r).sum::<i64>(), total);
    // The target's partial copy is gone.
    let nodes = query(&client, "SHOW NODES").await;
    let node4 = nodes.iter().find(|n| n[0] == "4").unwrap();
    assert_eq!(node4[4], "0", "node 4 holds no rows after the cancel: {nodes:?}");

    // The same move again, to completion.
    let (job2, _) = redistribute(&client, "REDISTRIBUTE TABLE t").await;
    assert_ne!(job2, job);
    wait_for(&client, &job2, Duration::from_secs(120), |s| s["state"] == "done").await;
    assert_table_equals(&client, &models).await;
    assert_stored_once(&client, &[1, 2, 3, 4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_coordinator_resumes_the_move() {
    let (mut cluster, client, writers, job, _) =
        start_moving("", "REDISTRIBUTE TABLE t WITH (max_rate_mb = 0.5)").await;
    wait_until_copying(&client, &job).await;
    // Writers stop first, so that every write is either acknowledged or not sent.
    let models = writers.finish().await;
    cluster.coordinator.kill9();
    cluster.coordinator.restart();
    let client = cluster.client().await;
    let resumed = job_status(&client, &job).await;
    assert!(resumed["state"] != "planning", "progress survived: {resumed:?}");
    let writers = Writers::start(cluster.pg, models);
    finish_and_check(&client, &job, writers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_target_is_waited_for_and_minimal_move_moves_the_optimum() {
    let (mut cluster, client, writers, job, buckets) =
        start_moving("STRATEGY minimal_move", "REDISTRIBUTE TABLE t WITH (max_rate_mb = 0.5)").await;
    // From 3 nodes to 4, the optimum is 65536 / 4 buckets, all to node 4.
    assert_eq!(buckets, 16384);
    wait_for(&client, &job, Duration::from_secs(60), |s| number(s, "rows_copied") > 0).await;
    let target = cluster.slices.last_mut().unwrap();
    target.kill9();
    let s = wait_until_retrying(&client, &job).await;
    assert!(s["state"] != "done" && s["state"] != "failed", "{s:?}");
    target.restart();
    let fin = wait_for(&client, &job, Duration::from_secs(180), |s| s["state"] == "done").await;
    assert_eq!(number(&fin, "buckets_moved"), 16384);
    let models = writers.finish().await;
    assert_table_equals(&client, &models).await;
    assert_stored_once(&client, &[1, 2, 3, 4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_source_is_waited_for() {
    let (mut cluster, client, writers, job, _) =
        start_moving("", "REDISTRIBUTE TABLE t WITH (max_rate_mb = 0.5)").await;
    wait_until_copying(&client, &job).await;
    // Writers pause while the source is down: its buckets cannot be written then.
    let models = writers.finish().await;
    let source = &mut cluster.slices[0];
    source.kill9();
    let s = wait_until_retrying(&client, &job).await;
    assert!(s["state"] != "done" && s["state"] != "failed", "{s:?}");
    source.restart();
    // The coordinator notices the old connection is dead within its QUIC
    // idle timeout; once a step of the move succeeds again (every step
    // talks to the source), the job clears its error, and the writers go on.
    wait_for(&client, &job, Duration::from_secs(60), |s| s["error"].is_empty()).await;
    let writers = Writers::start(cluster.pg, models);
    finish_and_check(&client, &job, writers).await;
}

/// Creates table `fresh` and asserts it is placed on nodes 1–3 only: the
/// current map no longer gives node 4 buckets.
async fn assert_new_tables_avoid_node_4(client: &Client) {
    client
        .batch_execute("CREATE TABLE fresh (id int PRIMARY KEY)")
        .await
        .unwrap();
    let fresh: Vec<String> = query(client, "SHOW SLICES FOR fresh")
        .await
        .into_iter()
        .map(|r| r[2].clone())
        .collect();
    assert_eq!(fresh, ["1", "2", "3"]);
}

/// `DRAIN NODE` of one node of four under the writers: `t` (on the
/// cluster's map) and `s` (on a map over nodes 2 and 4 only) both leave
/// node 4, each through a map derived from its own, moving only node 4's
/// buckets. No statement fails, `t` equals the writers' models, every row
/// is stored once on nodes 1–3, new tables avoid node 4, and `REMOVE NODE`
/// (refused before) then succeeds and drops the maps that named it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_node_then_remove_node_under_writers() {
    use tokio_postgres::error::SqlState;
    let cluster = TestCluster::start(4, 0);
    let client = cluster.client().await;
    let models = load(&client).await;
    client
        .batch_execute(
            "CREATE HASH MAP pair ON NODES (2, 4);
             CREATE TABLE s (id bigint PRIMARY KEY, g int NOT NULL) HASH MAP pair;
             INSERT INTO s SELECT i, i % 10 FROM generate_series(1, 5000) AS x(i)",
        )
        .await
        .unwrap();
    let s_expected = vec![vec!["5000".to_string(), (5000 * 5001 / 2).to_string()]];
    let e = client.batch_execute("REMOVE NODE 4").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::DEPENDENT_OBJECTS_STILL_EXIST), "{e:?}");

    let writers = Writers::start(cluster.pg, models);
    let started = query(&client, "DRAIN NODE 4 WITH (max_rate_mb = 2)").await;
    let moving: BTreeMap<String, i64> = started.iter().map(|r| (r[1].clone(), r[4].parse().unwrap())).collect();
    // Node 4's quarter of t, its half of s, and nothing else.
    assert_eq!(moving, BTreeMap::from([("s".into(), 32768), ("t".into(), 16384)]));
    let e = client.batch_execute("DRAIN NODE 3").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::OBJECT_IN_USE), "{e:?}");
    for r in &started {
        wait_for(&client, &r[0], Duration::from_secs(180), |s| s["state"] == "done").await;
    }
    let models = writers.finish().await;
    assert_table_equals(&client, &models).await;
    assert_stored_once(&client, &[1, 2, 3]).await;
    assert_eq!(query(&client, "SELECT count(*), sum(id) FROM s").await, s_expected);
    let s_nodes: BTreeSet<String> = query(&client, "SHOW SLICES FOR s")
        .await
        .into_iter()
        .map(|r| r[2].clone())
        .collect();
    assert_eq!(s_nodes, BTreeSet::from(["1".into(), "2".into(), "3".into()]));

    assert_new_tables_avoid_node_4(&client).await;
    client.batch_execute("REMOVE NODE 4").await.unwrap();
    let nodes: Vec<String> = query(&client, "SHOW NODES")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(nodes, ["1", "2", "3"]);
    let maps = query(&client, "SHOW HASH MAPS").await;
    assert!(maps.iter().all(|m| !m[1].split(',').any(|n| n == "4")), "{maps:?}");
    assert_table_equals(&client, &models).await;
    assert_eq!(query(&client, "SELECT count(*), sum(id) FROM s").await, s_expected);
}

/// `kill -9` of the coordinator in the middle of a `DRAIN NODE`: the
/// derived maps, the new current map and the jobs were recorded together,
/// so the restarted coordinator resumes the move, new tables avoid the
/// node, and `REMOVE NODE` works once the job is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_resumes_after_the_coordinator_is_killed() {
    let mut cluster = TestCluster::start(4, 0);
    let client = cluster.client().await;
    let models = load(&client).await;
    let started = query(&client, "DRAIN NODE 4 WITH (max_rate_mb = 0.5)").await;
    assert_eq!(started.len(), 1, "{started:?}");
    let job = started[0][0].clone();
    wait_until_copying(&client, &job).await;
    cluster.coordinator.kill9();
    cluster.coordinator.restart();
    let client = cluster.client().await;
    let resumed = job_status(&client, &job).await;
    assert!(resumed["state"] != "planning", "progress survived: {resumed:?}");
    assert_new_tables_avoid_node_4(&client).await;
    wait_for(&client, &job, Duration::from_secs(120), |s| s["state"] == "done").await;
    assert_table_equals(&client, &models).await;
    assert_stored_once(&client, &[1, 2, 3]).await;
    client.batch_execute("REMOVE NODE 4").await.unwrap();
    assert_table_equals(&client, &models).await;
}

/// Three slice servers holding `t` ([`load`]), and a fourth added with
/// `ADD NODE … WITHOUT HASH MAP`, so it holds nothing; `coordinator_env`
/// goes to the coordinator.
async fn with_empty_node_4(
    coordinator_env: Vec<(String, String)>,
) -> (TestCluster, Client, Vec<BTreeMap<i64, String>>) {
    let cluster = TestCluster::start_with_env(3, 1, coordinator_env);
    let client = cluster.client().await;
    let models = load(&client).await;
    client
        .batch_execute(&format!("ADD NODE '{}' WITHOUT HASH MAP", cluster.spares[0]))
        .await
        .unwrap();
    (cluster, client, models)
}

/// `ALTER NODE n SET (capacity_gb = …)` for each (node, capacity), in order.
async fn set_capacities(client: &Client, capacities: &[(i64, f64)]) {
    let sql: Vec<String> = capacities
        .iter()
        .map(|(n, gb)| format!("ALTER NODE {n} SET (capacity_gb = {gb})"))
        .collect();
    client.batch_execute(&sql.join("; ")).await.unwrap();
}

/// `REBALANCE` after a node joined empty (`ADD NODE … WITHOUT HASH MAP`):
/// the dry run plans about node 4's share of `t`, all onto node 4, and
/// moves nothing; the real run moves it under the writers, no statement
/// fails, `t` equals the writers' models, and each node then holds about a
/// quarter of the rows. Then node 4 gets three times the others' capacity:
/// a dry run plans to fill it further, and the rebalance does, dropping the
/// map the first one derived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_fills_an_empty_node_under_writers() {
    let (cluster, client, models) = with_empty_node_4(Vec::new()).await;
    let plan = query(&client, "REBALANCE DRY RUN").await;
    assert!(
        !plan.is_empty() && plan.iter().all(|r| r[0] == "t" && r[2] == "4"),
        "{plan:?}"
    );
    // Enough for node 4 to come within 10% of a quarter of the bytes, and
    // not much more: 65,536 × 0.25 × (1 − 0.095) buckets.
    let buckets: i64 = plan.iter().map(|r| r[3].parse::<i64>().unwrap()).sum();
    assert!((14_500..=15_500).contains(&buckets), "{buckets}: {plan:?}");
    assert_eq!(slices(&client).await.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);

    let writers = Writers::start(cluster.pg, models);
    let started = query(&client, "REBALANCE WITH (max_rate_mb = 2)").await;
    assert_eq!(started.len(), 1, "{started:?}");
    // The writers have written meanwhile, and sizes are RocksDB's
    // estimates: the real plan is the dry run's, give or take 1%.
    let moving = started[0][4].parse::<i64>().unwrap();
    assert!((moving - buckets).abs() * 100 <= buckets, "{moving} against {buckets}");
    wait_for(&client, &started[0][0], Duration::from_secs(180), |s| {
        s["state"] == "done"
    })
    .await;
    let models = writers.finish().await;
    assert_table_equals(&client, &models).await;
    assert_stored_once(&client, &[1, 2, 3, 4]).await;
    let placed = slices(&client).await;
    let quarter = placed.values().map(|(_, r)| *r).sum::<i64>() as f64 / 4.0;
    for (node, (_, rows)) in &placed {
        assert!(
            (*rows as f64 - quarter).abs() <= 0.15 * quarter,
            "node {node}: {placed:?}"
        );
    }
    // Node 4 can hold three times what the others can: it should have half
    // the bytes, and the plan fills it from the others.
    set_capacities(&client, &[(1, 1.0), (2, 1.0), (3, 1.0), (4, 3.0)]).await;
    let plan = query(&client, "REBALANCE DRY RUN").await;
    assert!(!plan.is_empty() && plan.iter().all(|r| r[2] == "4"), "{plan:?}");
    let buckets: i64 = plan.iter().map(|r| r[3].parse::<i64>().unwrap()).sum();
    assert!((11_000..=15_500).contains(&buckets), "{buckets}: {plan:?}");
    // For real: node 4 ends with about half the rows, and hm2 (which the
    // first rebalance derived, and no table uses now) is dropped.
    let started = query(&client, "REBALANCE").await;
    assert_eq!(started[0][3], "hm3", "{started:?}");
    wait_for(&client, &started[0][0], Duration::from_secs(120), |s| {
        s["state"] == "done"
    })
    .await;
    assert_table_equals(&client, &models).await;
    // A rebalance a statement started is not an event of its own.
    assert!(query(&client, "SELECT * FROM slicedb.rebalance_events")
        .await
        .is_empty());
    let placed = slices(&client).await;
    let half = placed.values().map(|(_, r)| *r).sum::<i64>() as f64 / 2.0;
    assert!((placed[&4].1 as f64 - half).abs() <= 0.15 * half, "{placed:?}");
    let maps: Vec<String> = query(&client, "SHOW HASH MAPS")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(maps, ["hm1", "hm3"]);
}

/// Transactions open across a cut-over: one that wrote rows whose buckets
/// moved fails to commit with 40001 and leaves nothing behind; one whose
/// snapshot predates the cut-over can no longer read the table (40001); one
/// begun after the move reads and writes on the new owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_spanning_a_cut_over_commit_on_the_new_owner_or_abort() {
    let cluster = TestCluster::start(3, 1);
    let client = cluster.client().await;
    load(&client).await;
    let writer = cluster.client().await;
    let reader = cluster.client().await;
    // 200 rows: some of their buckets surely move from 3 nodes to 4.
    writer.batch_execute("BEGIN").await.unwrap();
    let n = writer
        .execute("UPDATE t SET v = 'in flight' WHERE id <= 200", &[])
        .await
        .unwrap();
    assert_eq!(n, 200);
    // A REPEATABLE READ snapshot that predates the cut-over cannot read the
    // moved buckets (a READ COMMITTED block would take a new one).
    reader
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    assert_eq!(count(&reader, "SELECT count(*) FROM t").await, ROWS);

    client
        .batch_execute(&format!("ADD NODE '{}'", cluster.spares[0]))
        .await
        .unwrap();
    let (job, _) = redistribute(&client, "REDISTRIBUTE TABLE t").await;
    wait_for(&client, &job, Duration::from_secs(120), |s| s["state"] == "done").await;

    let e = writer.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("40001"), "{e}");
    let e = reader.simple_query("SELECT count(*) FROM t").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("40001"), "{e}");
    reader.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(count(&client, "SELECT count(*) FROM t WHERE v = 'in flight'").await, 0);

    // After the move: a transaction over moved and unmoved buckets commits.
    writer.batch_execute("BEGIN").await.unwrap();
    writer
        .execute("UPDATE t SET v = 'after' WHERE id <= 200", &[])
        .await
        .unwrap();
    assert_eq!(count(&writer, "SELECT count(*) FROM t WHERE v = 'after'").await, 200);
    assert_eq!(count(&client, "SELECT count(*) FROM t WHERE v = 'after'").await, 0);
    writer.batch_execute("COMMIT").await.unwrap();
    assert_eq!(count(&client, "SELECT count(*) FROM t WHERE v = 'after'").await, 200);
    assert_eq!(count(&client, "SELECT count(*) FROM t").await, ROWS);
    assert_stored_once(&client, &[1, 2, 3, 4]).await;
}

/// Rows of the indexed table `u` that no writer touches: a reader looks
/// them up by their unique email throughout the move.
const STATIC_ROWS: i64 = 1_000;
/// Rows of `u` loaded before the move.
const U_ROWS: i64 = 12_000;
/// Distinct `grp` values (the non-unique index).
const GROUPS: i64 = 40;

/// A row of `u`: (email, grp).
type URow = (String, i64);

/// What one writer of `u` did: its rows, and emails it gave up.
struct UReport {
    model: BTreeMap<i64, URow>,
    retired: Vec<String>,
    errors: Vec<String>,
    ops: u64,
}

/// Inserts, deletes and updates (email or grp) its own rows of `u`, and
/// tries duplicates of its own emails (which must fail with 23505), until
/// `stop`. Bounded in operations and time.
async fn u_writer(pg: SocketAddr, w: i64, mut model: BTreeMap<i64, URow>, stop: Arc<AtomicBool>) -> UReport {
    let client = connect(pg).await;
    let insert = client
        .prepare("INSERT INTO u (id, email, grp, pad) VALUES ($1, $2, $3, $4)")
        .await
        .unwrap();
    let set_email = client.prepare("UPDATE u SET email = $2 WHERE id = $1").await.unwrap();
    let set_grp = client.prepare("UPDATE u SET grp = $2 WHERE id = $1").await.unwrap();
    let delete = client.prepare("DELETE FROM u WHERE id = $1").await.unwrap();
    let mut keys: Vec<i64> = model.keys().copied().collect();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D ^ (w as u64 + 7);
    let mut next_id = 1_000_000 * (w + 1);
    let mut report = UReport {
        model: BTreeMap::new(),
        retired: Vec::new(),
        errors: Vec::new(),
        ops: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    while !stop.load(Ordering::Relaxed) && report.ops < 100_000 && Instant::now() < deadline {
        xorshift(&mut seed);
        let n = report.ops;
        let pick = (seed >> 8) as usize % keys.len().max(1);
        let outcome: Result<(), String> = match seed % 10 {
            0..=2 => {
                let (id, email, grp) = (next_id, format!("w{w}n{n}@x"), (n as i64) % GROUPS);
                next_id += 1;
                match client.execute(&insert, &[&id, &email, &grp, &value("p")]).await {
                    Ok(1) => {
                        model.insert(id, (email, grp));
                        keys.push(id);
                        Ok(())
                    }
                    other => Err(format!("insert: {other:?}")),
                }
            }
            3..=4 if !keys.is_empty() => {
                let id = keys[pick];
                let email = format!("w{w}e{n}@x");
                match client.execute(&set_email, &[&id, &email]).await {
                    Ok(1) => {
                        let old = model.get_mut(&id).map(|r| std::mem::replace(&mut r.0, email));
                        report.retired.extend(old);
                        Ok(())
                    }
                    other => Err(format!("update email: {other:?}")),
                }
            }
            5..=6 if !keys.is_empty() => {
                let id = keys[pick];
                let grp = (seed >> 20) as i64 % GROUPS;
                match client.execute(&set_grp, &[&id, &grp]).await {
                    Ok(1) => {
                        if let Some(r) = model.get_mut(&id) {
                            r.1 = grp;
                        }
                        Ok(())
                    }
                    other => Err(format!("update grp: {other:?}")),
                }
            }
            7..=8 if !keys.is_empty() => {
                let id = keys.swap_remove(pick);
                match client.execute(&delete, &[&id]).await {
                    Ok(1) => {
                        report.retired.extend(model.remove(&id).map(|r| r.0));
                        Ok(())
                    }
                    other => Err(format!("delete: {other:?}")),
                }
            }
            _ if !keys.is_empty() => {
                // A duplicate of one of its own emails: 23505, wherever the
                // two rows and the entry live, in whatever phase of the move.
                let email = model[&keys[pick]].0.clone();
                let id = next_id;
                next_id += 1;
                match client.execute(&insert, &[&id, &email, &0i64, &value("d")]).await {
                    Err(e) if e.code().map(|c| c.code()) == Some("23505") => Ok(()),
                    other => Err(format!("duplicate insert of {email}: {other:?}")),
                }
            }
            _ => Ok(()),
        };
        if let Err(e) = outcome {
            report.errors.push(format!("op {n}: {e}"));
        }
        report.ops += 1;
    }
    report.model = model;
    report
}

/// `SHOW SLICES FOR <table>` as node → rows.
async fn rows_per_node(client: &Client, table: &str) -> BTreeMap<i64, i64> {
    query(client, &format!("SHOW SLICES FOR {table}"))
        .await
        .into_iter()
        .map(|r| (r[2].parse().unwrap(), r[4].parse().unwrap()))
        .collect()
}

/// A table with a unique and a non-unique global index moves with its
/// index entries while two writers insert, delete, change indexed values and
/// try duplicates, and a reader looks rows up by email. Afterwards every
/// row is found through each index exactly as a scan finds it, no retired
/// email finds a row, a duplicate still fails with 23505, and every row is
/// stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_table_moves_with_its_index_entries() {
    let cluster = TestCluster::start(3, 1);
    let client = cluster.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE u (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, grp bigint NOT NULL, pad text);
             CREATE INDEX u_grp ON u (grp);
             INSERT INTO u SELECT g, 'l' || g || '@x', g % {GROUPS}, repeat('p', 150)
               FROM generate_series(1, {U_ROWS}) AS s(g)"
        ))
        .await
        .unwrap();
    let mut models = vec![BTreeMap::new(), BTreeMap::new()];
    for id in STATIC_ROWS + 1..=U_ROWS {
        models[(id % 2) as usize].insert(id, (format!("l{id}@x"), id % GROUPS));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = models
        .into_iter()
        .enumerate()
        .map(|(w, m)| tokio::spawn(u_writer(cluster.pg, w as i64, m, stop.clone())))
        .collect();
    client
        .batch_execute(&format!("ADD NODE '{}'", cluster.spares[0]))
        .await
        .unwrap();
    let (job, _) = redistribute(&client, "REDISTRIBUTE TABLE u WITH (max_rate_mb = 1)").await;

    // While it moves, what would change its indexes is refused with 55006.
    for sql in ["CREATE INDEX u_pad ON u (pad)", "DROP INDEX u_grp"] {
        let e = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("55006"), "{sql}: {e:?}");
    }
    // A reader finds static rows by email in every phase of the move.
    let reader = cluster.client().await;
    let by_email = reader.prepare("SELECT id FROM u WHERE email = $1").await.unwrap();
    let (mut reads, mut seed) = (0i64, 88_172_645_463_325_252u64);
    let mut states = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = job_status(&client, &job).await;
        states.insert(s["state"].clone());
        if s["state"] == "done" {
            break;
        }
        assert!(s["state"] != "failed", "{s:?}");
        assert!(Instant::now() < deadline, "not done in time: {s:?}");
        for _ in 0..20 {
            xorshift(&mut seed);
            let id = 1 + (seed % STATIC_ROWS as u64) as i64;
            let rows = reader.query(&by_email, &[&format!("l{id}@x")]).await.unwrap();
            let got: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            assert_eq!(got, vec![id], "lookup of l{id}@x during the move ({})", s["state"]);
            reads += 1;
        }
    }
    assert!(
        states.contains("copying") || states.contains("catching up"),
        "{states:?}"
    );
    stop.store(true, Ordering::Relaxed);
    let mut expected: BTreeMap<i64, URow> = (1..=STATIC_ROWS)
        .map(|id| (id, (format!("l{id}@x"), id % GROUPS)))
        .collect();
    let mut retired = Vec::new();
    let mut ops = 0;
    for h in writers {
        let r = h.await.unwrap();
        assert_no_errors(&r.errors);
        ops += r.ops;
        expected.extend(r.model);
        retired.extend(r.retired);
    }
    eprintln!(
        "u: {ops} writes, {reads} lookups during the move; {} emails retired",
        retired.len()
    );
    assert!(ops > 0 && !retired.is_empty());

    // The rows, by a scan.
    let rows = client.query("SELECT id, email, grp FROM u", &[]).await.unwrap();
    let actual: BTreeMap<i64, URow> = rows.iter().map(|r| (r.get(0), (r.get(1), r.get(2)))).collect();
    assert_eq!(actual.len(), rows.len());
    assert!(actual == expected, "u differs from the writers' models");
    // Through the unique index: every row by its email, no retired email.
    for (id, (email, _)) in expected
        .iter()
        .filter(|(id, (email, _))| **id % 7 == 0 || !email.starts_with('l'))
    {
        let got: Vec<i64> = reader
            .query(&by_email, &[email])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, vec![*id], "lookup of {email}");
    }
    for email in &retired {
        assert!(
            reader.query(&by_email, &[email]).await.unwrap().is_empty(),
            "{email} is retired"
        );
    }
    // Through the non-unique index: each group's rows.
    let explain = query(&client, "EXPLAIN SELECT id FROM u WHERE grp = 3").await;
    assert!(format!("{explain:?}").contains("IndexLookupExec"), "{explain:?}");
    let by_grp = client.prepare("SELECT id FROM u WHERE grp = $1").await.unwrap();
    for g in 0..GROUPS {
        let mut got: Vec<i64> = client
            .query(&by_grp, &[&g])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        got.sort_unstable();
        let want: Vec<i64> = expected.iter().filter(|(_, r)| r.1 == g).map(|(id, _)| *id).collect();
        assert_eq!(got, want, "grp {g}");
    }
    // Uniqueness holds on the new map, and every row is stored once.
    let e = client
        .execute("INSERT INTO u VALUES (99, 'l7@x', 1, '')", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23505"), "{e:?}");
    let placed = rows_per_node(&client, "u").await;
    assert_eq!(
        placed.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3, 4],
        "{placed:?}"
    );
    assert_eq!(placed.values().sum::<i64>(), expected.len() as i64, "{placed:?}");
}

/// Parents in the foreign-key test; writers delete those above half.
const PARENTS: i64 = 6_000;

/// Inserts children of random parents (each acknowledged insert must find
/// its parent; 23503 only when the parent may be gone) until `stop`;
/// returns the acknowledged children of parents no one deletes.
async fn child_writer(pg: SocketAddr, w: i64, stop: Arc<AtomicBool>) -> (BTreeMap<i64, i64>, Vec<String>) {
    let client = connect(pg).await;
    let insert = client.prepare("INSERT INTO c VALUES ($1, $2)").await.unwrap();
    let mut seed = 0x51_7CC1_B727_220A ^ (w as u64 + 3);
    let (mut kept, mut errors) = (BTreeMap::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut n = 0i64;
    while !stop.load(Ordering::Relaxed) && n < 100_000 && Instant::now() < deadline {
        let pid = 1 + (xorshift(&mut seed) % PARENTS as u64) as i64;
        let id = 1_000_000 * (w + 1) + n;
        n += 1;
        match client.execute(&insert, &[&id, &pid]).await {
            Ok(1) if pid <= PARENTS / 2 => {
                kept.insert(id, pid);
            }
            Ok(1) => {}
            Err(e) if pid > PARENTS / 2 && e.code().map(|c| c.code()) == Some("23503") => {}
            other => errors.push(format!("child {id} of {pid}: {other:?}")),
        }
    }
    (kept, errors)
}

/// A parent and a child table with `ON DELETE CASCADE` move (both, by
/// `REDISTRIBUTE ALL`) while children are inserted and parents deleted:
/// afterwards no child is an orphan, every acknowledged child of a kept
/// parent is there, and no deleted parent is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_with_foreign_keys_move_under_writers() {
    let cluster = TestCluster::start(3, 1);
    let client = cluster.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE p (id bigint PRIMARY KEY, pad text);
             CREATE TABLE c (id bigint PRIMARY KEY, pid bigint NOT NULL REFERENCES p ON DELETE CASCADE);
             INSERT INTO p SELECT g, repeat('p', 1000) FROM generate_series(1, {PARENTS}) AS s(g);
             INSERT INTO c SELECT g, 1 + g % {PARENTS} FROM generate_series(1, 6000) AS s(g)"
        ))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let children: Vec<_> = (0..2)
        .map(|w| tokio::spawn(child_writer(cluster.pg, w, stop.clone())))
        .collect();
    // A deleter removes parents above half, one at a time, with their children.
    let deleter = {
        let (pg, stop) = (cluster.pg, stop.clone());
        tokio::spawn(async move {
            let client = connect(pg).await;
            let delete = client.prepare("DELETE FROM p WHERE id = $1").await.unwrap();
            let (mut deleted, mut errors) = (Vec::new(), Vec::new());
            let mut id = PARENTS;
            while !stop.load(Ordering::Relaxed) && id > PARENTS / 2 {
                match client.execute(&delete, &[&id]).await {
                    Ok(1) => deleted.push(id),
                    other => errors.push(format!("delete {id}: {other:?}")),
                }
                id -= 1;
            }
            (deleted, errors)
        })
    };
    client
        .batch_execute(&format!("ADD NODE '{}'", cluster.spares[0]))
        .await
        .unwrap();
    let started = query(&client, "REDISTRIBUTE ALL WITH (max_rate_mb = 1)").await;
    assert_eq!(started.len(), 2, "both tables move: {started:?}");
    for job in started.iter().map(|r| r[0].clone()) {
        wait_for(&client, &job, Duration::from_secs(180), |s| s["state"] == "done").await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut kept: BTreeMap<i64, i64> = (1..=6000).map(|g| (g, 1 + g % PARENTS)).collect();
    kept.retain(|_, pid| *pid <= PARENTS / 2);
    let mut ops = 0;
    for h in children {
        let (mine, errors) = h.await.unwrap();
        assert_no_errors(&errors);
        ops += mine.len();
        kept.extend(mine);
    }
    let (deleted, errors) = deleter.await.unwrap();
    assert_no_errors(&errors);
    eprintln!(
        "{ops} kept children inserted, {} parents deleted during the moves",
        deleted.len()
    );
    assert!(ops > 0 && !deleted.is_empty());

    let orphans = count(&client, "SELECT count(*) FROM c WHERE pid NOT IN (SELECT id FROM p)").await;
    assert_eq!(orphans, 0, "a child outlived its parent");
    let rows = client
        .query("SELECT id, pid FROM c WHERE pid <= $1", &[&(PARENTS / 2)])
        .await
        .unwrap();
    let actual: BTreeMap<i64, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(
        actual == kept,
        "children of kept parents differ: {} vs {}",
        actual.len(),
        kept.len()
    );
    let listed: Vec<String> = deleted.iter().map(i64::to_string).collect();
    let gone = count(
        &client,
        &format!("SELECT count(*) FROM p WHERE id IN ({})", listed.join(", ")),
    )
    .await;
    assert_eq!(gone, 0, "a deleted parent is back");
    // The constraint still holds on the new map.
    let e = client
        .execute("INSERT INTO c VALUES (999999999, 999999)", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23503"), "{e:?}");
}

/// Above the high watermark, the coordinator rebalances by itself: with
/// checks every second, node 4 joined empty, and nodes 1 to 3 given
/// capacities they overflow (1 MiB each, node 4 5 MiB), a rebalance starts
/// without a statement, node 4 ends with most of the bytes (its share is
/// five eighths), and `t` lost and doubled no row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_starts_a_rebalance_by_itself() {
    let (_cluster, client, models) = with_empty_node_4(vec![("SLICEDB_WATERMARK_CHECK_S".into(), "1".into())]).await;
    assert!(query(&client, "SHOW REDISTRIBUTIONS").await.is_empty());
    set_capacities(&client, &[(4, 0.005), (1, 0.001), (2, 0.001), (3, 0.001)]).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    let held = loop {
        assert!(Instant::now() < deadline, "no rebalance brought node 4 its share");
        let jobs = query(&client, "SELECT state FROM slicedb.redistributions").await;
        let held: BTreeMap<i64, f64> = query(
            &client,
            "SELECT node, sum(bytes) FROM slicedb.bucket_load WHERE \"table\" = 't' GROUP BY node",
        )
        .await
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect();
        let total: f64 = held.values().sum();
        let settled = !jobs.is_empty() && jobs.iter().all(|j| j[0] == "done");
        if settled && held.get(&4).is_some_and(|b| *b >= 0.5 * total) {
            break held;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let total: f64 = held.values().sum();
    for node in [1, 2, 3] {
        assert!(held[&node] < 0.25 * total, "node {node}: {held:?}");
    }
    // Each job it started says why.
    let events = query(
        &client,
        "SELECT job, \"table\", reason, state FROM slicedb.rebalance_events",
    )
    .await;
    let jobs = query(&client, "SELECT job FROM slicedb.redistributions").await;
    assert_eq!(events.len(), jobs.len(), "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e[1] == "t" && e[2].contains("above the high watermark of 85%") && e[3] == "done"),
        "{events:?}"
    );
    assert_table_equals(&client, &models).await;
    assert_stored_once(&client, &[1, 2, 3, 4]).await;
}

/// Load-based split: all reads fall on a table whose map puts every bucket
/// on node 1, while nodes 2 and 3 idle. With splits on (a node must stay
/// hot 2 s), the coordinator starts a redistribution by itself that moves
/// part of the table to another node; the readers see no failed statement
/// and the same rows throughout, and afterwards another node serves part
/// of the reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_node_splits_its_slice_by_itself() {
    let env = [("SLICEDB_AUTO_SPLIT", "on"), ("SLICEDB_SPLIT_SUSTAIN_S", "2")];
    let cluster = TestCluster::start_with_env(3, 0, env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let client = cluster.client().await;
    client
        .batch_execute(
            "CREATE HASH MAP one ON NODES (1);
             CREATE TABLE hot (id bigint PRIMARY KEY, v text NOT NULL) HASH MAP one;
             INSERT INTO hot SELECT i, 'v' || i FROM generate_series(1, 5000) AS s(i);",
        )
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (stop, pg) = (stop.clone(), cluster.pg);
            tokio::spawn(async move {
                let client = connect(pg).await;
                let read = client.prepare("SELECT v FROM hot WHERE id = $1").await.unwrap();
                let (mut seed, mut reads) = (r + 1, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let id = (xorshift(&mut seed) % 5000 + 1) as i64;
                    let rows = client
                        .query(&read, &[&id])
                        .await
                        .unwrap_or_else(|e| panic!("read {id}: {e}"));
                    assert_eq!(rows.len(), 1, "row {id}");
                    assert_eq!(rows[0].get::<_, String>(0), format!("v{id}"));
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    // The split starts by itself and finishes.
    let deadline = Instant::now() + Duration::from_secs(120);
    let job = loop {
        assert!(Instant::now() < deadline, "no split started");
        let jobs = query(
            &client,
            "SELECT job, \"table\", from_map, state FROM slicedb.redistributions",
        )
        .await;
        if let Some(j) = jobs.first() {
            assert_eq!((j[1].as_str(), j[2].as_str()), ("hot", "one"), "{jobs:?}");
            break j[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    wait_for(&client, &job, Duration::from_secs(120), |s| s["state"] == "done").await;
    // Another node now holds part of the table and serves its share of
    // the reads.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no other node took reads");
        let nodes = query(
            &client,
            "SELECT node FROM slicedb.bucket_load WHERE \"table\" = 'hot' AND node <> 1 AND reads_per_s > 0 LIMIT 1",
        )
        .await;
        if !nodes.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let placed = query(&client, "SHOW SLICES FOR hot").await;
    assert!(placed.len() >= 2, "{placed:?}");
    let events = query(&client, "SELECT job, reason FROM slicedb.rebalance_events").await;
    assert_eq!(events[0][0], job, "{events:?}");
    assert!(
        events[0][1].starts_with("split by load: node 1 carries") && events[0][1].contains("of hot"),
        "{events:?}"
    );
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
    assert_eq!(count(&client, "SELECT count(*) FROM hot").await, 5000);
}
