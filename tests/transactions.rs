//! End-to-end tests of transactions (docs/transactions.md), on real
//! processes:
//! - bank transfers between accounts on every slice server, from several
//!   connections, some rolled back on purpose and some retried after 40001,
//!   while readers check the total at every snapshot;
//! - the same while a slice server is killed with `kill -9` and restarted;
//! - at READ COMMITTED, while a slice server and then the coordinator are
//!   killed with `kill -9` and restarted;
//! - pgbench's built-in TPC-B-like script, unmodified, at 8 clients, and
//!   its balance invariant;
//! - the transaction status that ReadyForQuery reports, over the wire.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slicedb_e2e::{connect, eventually, eventually_affected, query, Server, TestCluster};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

const ACCOUNTS: i64 = 60;
const OPENING: i64 = 1_000;
const TOTAL: i64 = ACCOUNTS * OPENING;
const WORKERS: u64 = 6;
/// Transfers each worker completes (committed or rolled back on purpose).
const TRANSFERS: u64 = 40;
/// The same, in the test that kills a slice server: enough to last through the outage.
const TRANSFERS_THROUGH_OUTAGE: u64 = 100;

/// A small deterministic random source (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What one transfer worker did.
#[derive(Default, Debug)]
struct Tally {
    committed: u64,
    rolled_back: u64,
    /// Attempts that failed with 40001 and were retried.
    conflicts: u64,
    /// Attempts that failed otherwise (a slice server down) and were retried.
    failures: u64,
    /// COMMITs whose outcome is unknown (40003); their transfers are not in `moved`.
    ambiguous: u64,
    /// Net change per account of the transfers known committed.
    moved: BTreeMap<i64, i64>,
    /// The transfers whose COMMIT lost its answer (from, to, amount), when
    /// the worker keeps them.
    unknown: Vec<(i64, i64, i64)>,
    /// When the first and the last transfer committed.
    first_commit: Option<Instant>,
    last_commit: Option<Instant>,
}

async fn create_accounts(client: &Client) {
    client
        .batch_execute(&format!(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL) DISTRIBUTED BY (id);
             INSERT INTO accounts SELECT id, {OPENING} FROM generate_series(1, {ACCOUNTS}) AS s(id);"
        ))
        .await
        .unwrap();
    // The accounts are spread over every slice server.
    let slices = query(client, "SHOW SLICES FOR accounts").await;
    assert!(slices.len() >= 3, "{slices:?}");
}

/// One transfer attempt: `BEGIN` at `isolation`, read, two updates, then
/// `COMMIT` or, if `roll_back`, `ROLLBACK`.
async fn attempt(
    client: &Client,
    isolation: &str,
    from: i64,
    to: i64,
    amount: i64,
    roll_back: bool,
) -> Result<(), Failed> {
    // Snapshot isolation: a conflicting transfer fails with 40001 and is
    // retried. READ COMMITTED: it waits for the row and goes on.
    client
        .batch_execute(&format!("BEGIN ISOLATION LEVEL {isolation}"))
        .await
        .map_err(Failed::Before)?;
    let body = async {
        let row = client
            .query_one("SELECT balance FROM accounts WHERE id = $1", &[&from])
            .await?;
        let _balance: i64 = row.get(0);
        client
            .execute(
                "UPDATE accounts SET balance = balance - $2 WHERE id = $1",
                &[&from, &amount],
            )
            .await?;
        client
            .execute(
                "UPDATE accounts SET balance = balance + $2 WHERE id = $1",
                &[&to, &amount],
            )
            .await?;
        Ok::<(), tokio_postgres::Error>(())
    };
    body.await.map_err(Failed::Before)?;
    let end = client
        .batch_execute(if roll_back { "ROLLBACK" } else { "COMMIT" })
        .await;
    end.map_err(Failed::AtEnd)
}

/// Where a transfer attempt failed: before its end (nothing of it is
/// committed), or at its `COMMIT` / `ROLLBACK` (a lost connection leaves
/// the outcome unknown).
#[derive(Debug)]
enum Failed {
    Before(tokio_postgres::Error),
    AtEnd(tokio_postgres::Error),
}

/// The `done`th transfer of a worker: (from, to, amount). Account 1 takes
/// part in every third, so workers do conflict.
fn pick_transfer(rng: &mut Rng, done: u64) -> (i64, i64, i64) {
    let from = if done.is_multiple_of(3) {
        1
    } else {
        1 + rng.next(ACCOUNTS as u64) as i64
    };
    let mut to = 1 + rng.next(ACCOUNTS as u64) as i64;
    if to == from {
        to = from % ACCOUNTS + 1;
    }
    (from, to, 1 + rng.next(50) as i64)
}

/// Runs `transfers` transfers, retrying failed attempts. Account 1 takes
/// part in every third transfer, so workers do conflict.
async fn transfer_worker(pg: SocketAddr, seed: u64, transfers: u64, deadline: Instant) -> Tally {
    let client = connect(pg).await;
    let mut rng = Rng(seed * 7919 + 1);
    let mut tally = Tally::default();
    let mut done = 0;
    while done < transfers && Instant::now() < deadline {
        let (from, to, amount) = pick_transfer(&mut rng, done);
        let roll_back = rng.next(6) == 0;
        loop {
            if Instant::now() > deadline {
                return tally;
            }
            match attempt(&client, "REPEATABLE READ", from, to, amount, roll_back)
                .await
                .map_err(|(Failed::Before(e) | Failed::AtEnd(e))| e)
            {
                Ok(()) if roll_back => {
                    tally.rolled_back += 1;
                    break;
                }
                Ok(()) => {
                    tally.committed += 1;
                    tally.first_commit.get_or_insert_with(Instant::now);
                    tally.last_commit = Some(Instant::now());
                    *tally.moved.entry(from).or_default() -= amount;
                    *tally.moved.entry(to).or_default() += amount;
                    break;
                }
                Err(e) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    match e.code() {
                        // Transfers lock two accounts in either order: a
                        // deadlock (40P01) is retried like a conflict.
                        Some(c)
                            if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED =>
                        {
                            tally.conflicts += 1
                        }
                        Some(c) if c.code() == "40003" => {
                            tally.ambiguous += 1;
                            break;
                        }
                        _ => {
                            tally.failures += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        }
        done += 1;
    }
    tally
}

/// Reads the total until `stop`, at new snapshots and twice inside one
/// block; every read that succeeds must see [`TOTAL`]. Returns the number of
/// reads that succeeded.
async fn reader(pg: SocketAddr, stop: Arc<AtomicBool>, reads: Arc<AtomicU64>) {
    let client = connect(pg).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if let Ok(rows) = client.simple_query("SELECT sum(balance), count(*) FROM accounts").await {
            let got = slicedb_e2e::rows(rows);
            if got != vec![vec![TOTAL.to_string(), ACCOUNTS.to_string()]] {
                eprintln!("VIOLATION at {:?}: {got:?}", Instant::now());
                if let Ok(r) = client
                    .simple_query("SELECT id, balance FROM accounts ORDER BY id")
                    .await
                {
                    eprintln!("VIOLATION next: {:?}", slicedb_e2e::rows(r));
                }
            }
            assert_eq!(
                got,
                vec![vec![TOTAL.to_string(), ACCOUNTS.to_string()]],
                "a snapshot saw money appear or vanish"
            );
            reads.fetch_add(1, Ordering::Relaxed);
        }
        // Inside one REPEATABLE READ block, two reads see the same snapshot.
        let block = async {
            client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await?;
            let a: i64 = client
                .query_one("SELECT sum(balance)::bigint FROM accounts", &[])
                .await?
                .get(0);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let b: i64 = client
                .query_one("SELECT sum(balance)::bigint FROM accounts", &[])
                .await?
                .get(0);
            client.batch_execute("COMMIT").await?;
            Ok::<_, tokio_postgres::Error>((a, b))
        };
        match block.await {
            Ok((a, b)) => {
                assert_eq!((a, b), (TOTAL, TOTAL), "a snapshot saw money appear or vanish");
                reads.fetch_add(2, Ordering::Relaxed);
            }
            Err(_) => {
                let _ = client.batch_execute("ROLLBACK").await;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks the final balances against what the workers know they committed.
async fn assert_final_balances(client: &Client, tallies: &[Tally]) {
    let rows = query(client, "SELECT id, balance FROM accounts ORDER BY id").await;
    let total: i64 = rows.iter().map(|r| r[1].parse::<i64>().unwrap()).sum();
    assert_eq!(total, TOTAL);
    assert_eq!(rows.len() as i64, ACCOUNTS);
    if tallies.iter().all(|t| t.ambiguous == 0) {
        let mut expected: BTreeMap<i64, i64> = (1..=ACCOUNTS).map(|i| (i, OPENING)).collect();
        for t in tallies {
            for (id, delta) in &t.moved {
                *expected.get_mut(id).unwrap() += delta;
            }
        }
        let got: BTreeMap<i64, i64> = rows
            .iter()
            .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
            .collect();
        assert_eq!(got, expected, "balances differ from the committed transfers");
    }
}

/// Runs the workers and readers; `outage` runs alongside them.
async fn bank(pg: SocketAddr, transfers: u64, outage: impl std::future::Future<Output = ()>) -> (Vec<Tally>, u64) {
    let deadline = Instant::now() + Duration::from_secs(150);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(reader(pg, stop.clone(), reads.clone())))
        .collect();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(transfer_worker(pg, w + 1, transfers, deadline)))
        .collect();
    outage.await;
    let mut tallies = Vec::new();
    for w in workers {
        tallies.push(w.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    (tallies, reads.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_transfers_keep_the_total_at_every_snapshot() {
    let cluster = TestCluster::start(3, 0);
    let client = cluster.client().await;
    create_accounts(&client).await;
    let (tallies, reads) = bank(cluster.pg, TRANSFERS, async {}).await;
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    println!(
        "committed {}, rolled back {}, conflicts retried {}, reads {reads}",
        sum(|t| t.committed),
        sum(|t| t.rolled_back),
        sum(|t| t.conflicts)
    );
    assert_eq!(sum(|t| t.committed + t.rolled_back), WORKERS * TRANSFERS, "{tallies:?}");
    assert!(sum(|t| t.rolled_back) > 0, "some transfers were rolled back on purpose");
    assert!(sum(|t| t.conflicts) > 0, "some transfers conflicted and were retried");
    assert_eq!(sum(|t| t.failures + t.ambiguous), 0, "{tallies:?}");
    assert!(reads > 10);
    assert_final_balances(&client, &tallies).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_transfers_survive_a_killed_slice_server() {
    let mut cluster = TestCluster::start(3, 0);
    let client = cluster.client().await;
    create_accounts(&client).await;
    let pg = cluster.pg;
    let victim = &mut cluster.slices[1];
    let (mut killed, mut restarted) = (Instant::now(), Instant::now());
    let outage = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        victim.kill9();
        killed = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        victim.restart();
        restarted = Instant::now();
    };
    let (tallies, reads) = bank(pg, TRANSFERS_THROUGH_OUTAGE, outage).await;
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    println!(
        "committed {}, rolled back {}, conflicts retried {}, failures retried {}, ambiguous {}, reads {reads}",
        sum(|t| t.committed),
        sum(|t| t.rolled_back),
        sum(|t| t.conflicts),
        sum(|t| t.failures),
        sum(|t| t.ambiguous)
    );
    assert_eq!(
        sum(|t| t.committed + t.rolled_back + t.ambiguous),
        WORKERS * TRANSFERS_THROUGH_OUTAGE,
        "every transfer finished after the restart: {tallies:?}"
    );
    // The kill came in the middle of the run: transfers committed before
    // it and after the restart.
    assert!(tallies.iter().filter_map(|t| t.first_commit).min().unwrap() < killed);
    assert!(tallies.iter().filter_map(|t| t.last_commit).max().unwrap() > restarted);
    assert_final_balances(&client, &tallies).await;
    // Nothing is left prepared or locked: every account can be written.
    let n = client
        .execute("UPDATE accounts SET balance = balance + 0 WHERE id > 0", &[])
        .await
        .unwrap();
    assert_eq!(n as i64, ACCOUNTS);
}

/// Connects, retrying until `deadline` (the coordinator may be restarting).
async fn reconnect(pg: SocketAddr, deadline: Instant) -> Option<Client> {
    let conn_str = format!("host={} port={} user=postgres dbname=slicedb", pg.ip(), pg.port());
    while Instant::now() < deadline {
        if let Ok((client, connection)) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls).await {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            return Some(client);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// [`transfer_worker`] at READ COMMITTED, through crashes: it reconnects
/// when its connection dies, retries what failed before `COMMIT`, and
/// counts a `COMMIT` whose answer was lost (or 40003) as ambiguous.
/// `commits` counts the transfers committed by all workers.
async fn rc_transfer_worker(
    pg: SocketAddr,
    seed: u64,
    transfers: u64,
    deadline: Instant,
    commits: Arc<AtomicU64>,
) -> Tally {
    let mut rng = Rng(seed * 7919 + 1);
    let mut tally = Tally::default();
    let Some(mut client) = reconnect(pg, deadline).await else {
        return tally;
    };
    for done in 0..transfers {
        let (from, to, amount) = pick_transfer(&mut rng, done);
        loop {
            if Instant::now() > deadline {
                return tally;
            }
            match attempt(&client, "READ COMMITTED", from, to, amount, false).await {
                Ok(()) => {
                    tally.committed += 1;
                    tally.first_commit.get_or_insert_with(Instant::now);
                    tally.last_commit = Some(Instant::now());
                    *tally.moved.entry(from).or_default() -= amount;
                    *tally.moved.entry(to).or_default() += amount;
                    commits.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(Failed::AtEnd(e)) if e.code().is_none() || e.code().is_some_and(|c| c.code() == "40003") => {
                    tally.ambiguous += 1;
                    tally.unknown.push((from, to, amount));
                    if client.is_closed() {
                        match reconnect(pg, deadline).await {
                            Some(c) => client = c,
                            None => return tally,
                        }
                    }
                    break;
                }
                Err(Failed::Before(e) | Failed::AtEnd(e)) => {
                    if client.is_closed() {
                        match reconnect(pg, deadline).await {
                            Some(c) => client = c,
                            None => return tally,
                        }
                    } else {
                        let _ = client.batch_execute("ROLLBACK").await;
                    }
                    match e.code() {
                        Some(c)
                            if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED =>
                        {
                            tally.conflicts += 1
                        }
                        _ => {
                            tally.failures += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        }
    }
    tally
}

/// Waits (at most 60 s) until `commits` reaches `n`.
async fn wait_for_commits(commits: &AtomicU64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while commits.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "transfers stopped committing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The bank at READ COMMITTED, PostgreSQL's default, while a slice server
/// and then the coordinator are killed with `kill -9` and restarted: no
/// transfer known committed is lost, none is half applied (the total
/// holds, and with no ambiguous COMMIT every balance is exact), and
/// nothing stays locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_at_read_committed_survives_killed_slice_server_and_coordinator() {
    let mut cluster = TestCluster::start(3, 0);
    let client = cluster.client().await;
    create_accounts(&client).await;
    drop(client);
    let pg = cluster.pg;
    let deadline = Instant::now() + Duration::from_secs(150);
    let commits = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            tokio::spawn(rc_transfer_worker(
                pg,
                w + 1,
                TRANSFERS_THROUGH_OUTAGE,
                deadline,
                commits.clone(),
            ))
        })
        .collect();
    wait_for_commits(&commits, 30).await;
    cluster.slices[1].kill9();
    cluster.slices[1].restart();
    let after_slice = commits.load(Ordering::Relaxed);
    wait_for_commits(&commits, after_slice + 30).await;
    cluster.coordinator.kill9();
    cluster.coordinator.restart();
    let after_coordinator = commits.load(Ordering::Relaxed);
    wait_for_commits(&commits, after_coordinator + 30).await;
    let mut tallies = Vec::new();
    for w in workers {
        tallies.push(w.await.unwrap());
    }
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    println!(
        "committed {}, conflicts retried {}, failures retried {}, ambiguous {}",
        sum(|t| t.committed),
        sum(|t| t.conflicts),
        sum(|t| t.failures),
        sum(|t| t.ambiguous)
    );
    assert_eq!(
        sum(|t| t.committed + t.ambiguous),
        WORKERS * TRANSFERS_THROUGH_OUTAGE,
        "every transfer finished: {tallies:?}"
    );
    let client = cluster.client().await;
    assert_final_balances(&client, &tallies).await;
    // Every transfer known committed is there, and each one whose COMMIT
    // lost its answer is there whole or not at all.
    let rows = query(&client, "SELECT id, balance FROM accounts ORDER BY id").await;
    let got: BTreeMap<i64, i64> = rows
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect();
    let mut known: BTreeMap<i64, i64> = (1..=ACCOUNTS).map(|i| (i, OPENING)).collect();
    for t in &tallies {
        for (id, delta) in &t.moved {
            *known.get_mut(id).unwrap() += delta;
        }
    }
    let unknown: Vec<(i64, i64, i64)> = tallies.iter().flat_map(|t| t.unknown.iter().copied()).collect();
    assert!(
        unknown.len() <= 12,
        "too many ambiguous commits to check: {}",
        unknown.len()
    );
    let explained = (0u32..1 << unknown.len()).any(|subset| {
        let mut expected = known.clone();
        for (i, (from, to, amount)) in unknown.iter().enumerate() {
            if subset & (1 << i) != 0 {
                *expected.get_mut(from).unwrap() -= amount;
                *expected.get_mut(to).unwrap() += amount;
            }
        }
        expected == got
    });
    assert!(
        explained,
        "the balances are not the committed transfers plus some of the ambiguous ones: {got:?}"
    );
    let n = client
        .execute("UPDATE accounts SET balance = balance + 0 WHERE id > 0", &[])
        .await
        .unwrap();
    assert_eq!(n as i64, ACCOUNTS, "nothing is left locked");
}

/// pgbench's own TPC-B-like script, unmodified, against tables made with
/// slicedb's DDL; then its balance invariant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_tpcb_like_keeps_its_balance_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = server.connect().await;
    create_tpcb_tables(&client).await;
    // Snapshot isolation (REPEATABLE READ, asked for through PGOPTIONS):
    // conflicts fail with 40001 and are retried by pgbench.
    let processed = pgbench_tpcb(
        server.addr,
        Some(r"-c default_transaction_isolation=repeatable\ read"),
        1000,
        TWENTY_FIVE_EACH,
    )
    .await;
    check_tpcb_invariant(&client, processed).await;
    assert!(processed > 0);
    // READ COMMITTED, the default: a conflicting UPDATE waits for the row
    // and starts again at a new snapshot, so no transaction fails, and
    // pgbench is allowed no retry.
    let more = pgbench_tpcb(server.addr, None, 1, TWENTY_FIVE_EACH).await;
    check_tpcb_invariant(&client, processed + more).await;
}

/// pgbench's TPC-B-like script for a minute, 8 clients on one branch, at
/// READ COMMITTED with no retry allowed, embedded and in a cluster of
/// processes: no transaction fails, and the balances agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_tpcb_like_for_a_minute_fails_nothing_embedded_and_in_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = server.connect().await;
    create_tpcb_tables(&client).await;
    let processed = pgbench_tpcb(server.addr, None, 1, A_MINUTE).await;
    check_tpcb_invariant(&client, processed).await;
    drop(server);

    let cluster = TestCluster::start(3, 0);
    let client = cluster.client().await;
    create_tpcb_tables(&client).await;
    let processed = pgbench_tpcb(cluster.pg, None, 1, A_MINUTE).await;
    check_tpcb_invariant(&client, processed).await;
}

/// How long [`pgbench_tpcb`] runs.
const TWENTY_FIVE_EACH: &[&str] = &["-t", "25"];
const A_MINUTE: &[&str] = &["-T", "60"];

/// pgbench's tables at scale 1, made with slicedb's DDL.
async fn create_tpcb_tables(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88)) DISTRIBUTED BY (bid);
             CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int, filler char(84)) DISTRIBUTED BY (tid);
             CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84)) DISTRIBUTED BY (aid);
             CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
             INSERT INTO pgbench_branches VALUES (1, 0, '');
             INSERT INTO pgbench_tellers SELECT t, 1, 0, '' FROM generate_series(1, 10) AS s(t);
             INSERT INTO pgbench_accounts SELECT a, 1, 0, '' FROM generate_series(1, 100000) AS s(a);",
        )
        .await
        .unwrap();
}

/// Runs pgbench's tpcb-like script, 8 clients, for `length` (`-t n` or `-T s`); returns
/// the transactions it processed, and checks that none failed.
async fn pgbench_tpcb(addr: SocketAddr, options: Option<&str>, max_tries: u32, length: &'static [&'static str]) -> i64 {
    let options = options.map(str::to_string);
    let stdout = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = options.iter().map(|o| ("PGOPTIONS", o.as_str())).collect();
        let tries = format!("--max-tries={max_tries}");
        let mut args = vec!["-n", "-c", "8", "-j", "2", "-b", "tpcb-like", &tries];
        args.extend_from_slice(length);
        slicedb_e2e::pgbench(addr, &env, &args)
    })
    .await
    .unwrap();
    println!("{stdout}");
    let failed: i64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("pgbench reports the failed transactions");
    assert_eq!(failed, 0, "{stdout}");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|l| l.split('/').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("pgbench reports the transactions processed")
}

/// The TPC-B invariant: every balance sum equals the history's, with one
/// history row per transaction processed.
async fn check_tpcb_invariant(client: &Client, processed: i64) {
    let sums = query(
        client,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM pgbench_branches),
                (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(delta) FROM pgbench_history),
                (SELECT count(*) FROM pgbench_history)",
    )
    .await;
    let [a, b, t, h, n] = <[String; 5]>::try_from(sums[0].clone()).unwrap();
    assert_eq!((&a, &b, &t), (&h, &h, &h), "the balances agree with the history");
    assert_eq!(
        n.parse::<i64>().unwrap(),
        processed,
        "one history row per committed transaction"
    );
}

/// A minimal frontend speaking the wire protocol, to see the transaction
/// status byte of each ReadyForQuery.
struct Wire(std::net::TcpStream);

impl Wire {
    fn connect(addr: SocketAddr) -> Wire {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut body = Vec::new();
        body.extend_from_slice(&196608u32.to_be_bytes());
        for kv in ["user", "postgres", "database", "slicedb"] {
            body.extend_from_slice(kv.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend(body);
        s.write_all(&msg).unwrap();
        let mut w = Wire(s);
        w.until_ready();
        w
    }

    /// Reads messages up to ReadyForQuery; returns its status and whether
    /// an ErrorResponse came before it.
    fn until_ready(&mut self) -> (char, Option<String>) {
        let mut error = None;
        loop {
            let mut head = [0u8; 5];
            self.0.read_exact(&mut head).unwrap();
            let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize - 4;
            let mut body = vec![0u8; len];
            self.0.read_exact(&mut body).unwrap();
            match head[0] {
                b'E' => {
                    // The SQLSTATE field ('C').
                    let code = body
                        .split(|b| *b == 0)
                        .find(|f| f.first() == Some(&b'C'))
                        .map(|f| String::from_utf8_lossy(&f[1..]).to_string());
                    error = code;
                }
                b'Z' => return (body[0] as char, error),
                _ => {}
            }
        }
    }

    /// Sends a simple query; returns the status after it and its SQLSTATE, if it failed.
    fn simple(&mut self, sql: &str) -> (char, Option<String>) {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
        msg.extend_from_slice(sql.as_bytes());
        msg.push(0);
        self.0.write_all(&msg).unwrap();
        self.until_ready()
    }

    /// Sends Parse/Bind/Execute/Sync for `sql` (unnamed, no parameters).
    fn extended(&mut self, sql: &str) -> (char, Option<String>) {
        let mut out = Vec::new();
        let mut message = |tag: u8, body: Vec<u8>| {
            out.push(tag);
            out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            out.extend(body);
        };
        let mut parse = vec![0u8];
        parse.extend_from_slice(sql.as_bytes());
        parse.extend_from_slice(&[0, 0, 0]);
        message(b'P', parse);
        message(b'B', vec![0, 0, 0, 0, 0, 0, 0, 0]);
        message(b'E', vec![0, 0, 0, 0, 0]);
        message(b'S', vec![]);
        self.0.write_all(&out).unwrap();
        self.until_ready()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_for_query_reports_the_transaction_status() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE s (id int PRIMARY KEY)")
        .await
        .unwrap();
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        for extended in [false, true] {
            let mut w = Wire::connect(addr);
            let mut run = |sql: &str| if extended { w.extended(sql) } else { w.simple(sql) };
            let state = |s: &str| Some(s.to_string());
            assert_eq!(run("SELECT 1"), ('I', None));
            assert_eq!(run("BEGIN"), ('T', None));
            assert_eq!(run("INSERT INTO s VALUES (1)"), ('T', None));
            assert_eq!(run("SAVEPOINT a"), ('T', None));
            assert_eq!(run("INSERT INTO s VALUES (1)"), ('E', state("23505")));
            assert_eq!(run("SELECT 1"), ('E', state("25P02")));
            assert_eq!(run("ROLLBACK TO SAVEPOINT a"), ('T', None));
            assert_eq!(run("INSERT INTO s VALUES (2)"), ('T', None));
            assert_eq!(run("COMMIT"), ('I', None));
            assert_eq!(run("BEGIN"), ('T', None));
            assert_eq!(run("SELECT 1/0"), ('E', state("22012")));
            assert_eq!(run("ROLLBACK"), ('I', None));
            assert_eq!(run("INSERT INTO s VALUES (1)"), ('I', state("23505")));
            assert_eq!(run("DELETE FROM s"), ('I', None));
        }
    })
    .await
    .unwrap();
}

/// Restarts the coordinator with `failpoint` armed, runs `sql`, which must
/// fail as the coordinator crashes at the failpoint, and restarts it
/// disarmed.
async fn crash_coordinator_during(cluster: &mut TestCluster, failpoint: &str, sql: &str) {
    cluster.coordinator.restart_with_failpoint(Some(failpoint));
    eventually(cluster.pg, "SELECT count(*) FROM accounts").await;
    let client = connect(cluster.pg).await;
    assert!(
        client.execute(sql, &[]).await.is_err(),
        "the coordinator died mid-commit"
    );
    assert!(cluster.coordinator.wait_exit(Duration::from_secs(10)));
    cluster.coordinator.restart_with_failpoint(None);
}

/// Kills a participant, then the coordinator, at each step of a two-phase
/// commit (with failpoints), restarts it, and checks that the transaction
/// took effect everywhere or nowhere, as the durable decision says.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_phase_commit_is_all_or_nothing_across_crashes() {
    let mut cluster = TestCluster::start(3, 0);
    let pg = cluster.pg;
    create_accounts(&cluster.client().await).await;
    let total = |plus: i64| vec![vec![(TOTAL + plus).to_string()]];
    let sum = "SELECT sum(balance) FROM accounts";
    // Every UPDATE below writes accounts on all three slice servers: two-phase commit.
    let update = "UPDATE accounts SET balance = balance + 1";

    // 1. A participant dies after it prepared, before it commits. The
    //    decision is durable, so the UPDATE succeeds; readers wait for the
    //    participant, whose intents survive its restart, and see all of it.
    cluster.slices[1].restart_with_failpoint(Some("slice-server-before-commit"));
    assert_eq!(eventually(pg, sum).await, total(0));
    let client = connect(pg).await;
    assert_eq!(client.execute(update, &[]).await.unwrap() as i64, ACCOUNTS);
    assert!(
        cluster.slices[1].wait_exit(Duration::from_secs(10)),
        "the participant crashed"
    );
    let reader = tokio::spawn(async move { eventually(pg, sum).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.slices[1].restart_with_failpoint(None);
    assert_eq!(reader.await.unwrap(), total(ACCOUNTS));

    // 2. The coordinator dies right after writing the decision: on restart
    //    it finishes the commit.
    crash_coordinator_during(&mut cluster, "coordinator-after-decision", update).await;
    assert_eq!(eventually(pg, sum).await, total(2 * ACCOUNTS));

    // 3. The coordinator dies after every participant prepared, before the
    //    decision: on restart the prepared transaction is aborted everywhere
    //    (presumed abort) and its row locks go with it.
    crash_coordinator_during(&mut cluster, "coordinator-before-decision", update).await;
    assert_eq!(eventually(pg, sum).await, total(2 * ACCOUNTS));
    assert_eq!(
        eventually_affected(pg, "UPDATE accounts SET balance = balance - 2 WHERE id > 0").await,
        ACCOUNTS as u64
    );
    assert_eq!(eventually(pg, sum).await, total(0));
}

/// The embedded layout stages its commit records beside the slice
/// servers' data, in the RocksDB they share: a process killed once a
/// two-phase commit's record and prepares are durable finishes the commit
/// when it restarts, and one killed before the record aborts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_two_phase_commits_are_all_or_nothing_across_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let pg: SocketAddr = format!("127.0.0.1:{}", slicedb_e2e::free_port()).parse().unwrap();
    let args: Vec<String> = [
        "start",
        "--data-dir",
        &dir.path().display().to_string(),
        "--listen",
        &pg.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let mut server = slicedb_e2e::Process::start("embedded", &args);
    create_accounts(&connect(pg).await).await;
    let sum = "SELECT sum(balance) FROM accounts";
    // Writes accounts on all three slice servers: a two-phase commit.
    let update = "UPDATE accounts SET balance = balance + 1";
    for (failpoint, total) in [
        ("coordinator-after-decision", TOTAL + ACCOUNTS),
        ("coordinator-before-decision", TOTAL + ACCOUNTS),
    ] {
        server.restart_with_failpoint(Some(failpoint));
        let client = connect(pg).await;
        assert!(
            client.execute(update, &[]).await.is_err(),
            "the process died mid-commit"
        );
        assert!(server.wait_exit(Duration::from_secs(10)), "{failpoint} was reached");
        server.restart_with_failpoint(None);
        assert_eq!(
            eventually(pg, sum).await,
            vec![vec![total.to_string()]],
            "after {failpoint}"
        );
    }
    // The aborted transaction's row locks went with it.
    assert_eq!(
        eventually_affected(pg, "UPDATE accounts SET balance = balance - 1 WHERE id > 0").await,
        ACCOUNTS as u64
    );
    assert_eq!(eventually(pg, sum).await, vec![vec![TOTAL.to_string()]]);
}

/// A client cancels its `COMMIT` while the coordinator holds it between
/// prepare and decision (for three seconds, a failpoint). The session's
/// transaction is gone, but the commit is not the client's to stop: the
/// recovery loop, which runs every half second meanwhile, must not abort
/// the prepared participants, and the transaction commits as a whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_commit_completes_as_a_whole() {
    let mut cluster = TestCluster::start(3, 0);
    let pg = cluster.pg;
    create_accounts(&cluster.client().await).await;
    let failpoint = "coordinator-before-decision";
    cluster
        .coordinator
        .restart_with_failpoint(Some(&format!("{failpoint}=sleep(3000)")));
    let sum = "SELECT sum(balance) FROM accounts";
    assert_eq!(eventually(pg, sum).await, vec![vec![TOTAL.to_string()]]);

    let client = connect(pg).await;
    let cancel = client.cancel_token();
    client.batch_execute("BEGIN").await.unwrap();
    // Every account: a write on every slice server, so two-phase commit.
    let updated = client
        .execute("UPDATE accounts SET balance = balance + 1", &[])
        .await
        .unwrap();
    assert_eq!(updated as i64, ACCOUNTS);
    let commit = tokio::spawn(async move { client.batch_execute("COMMIT").await });
    let coordinator = &cluster.coordinator;
    let held = tokio::task::block_in_place(|| {
        coordinator.wait_for_output(&format!("slicedb failpoint: {failpoint}"), Duration::from_secs(30))
    });
    assert!(held, "the COMMIT reached the failpoint");
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    // Whatever the client heard, the outcome is all or nothing, and since
    // nothing failed, all.
    let _ = commit.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let observer = connect(pg).await;
    loop {
        let total: i64 = query(&observer, sum).await[0][0].parse().unwrap();
        assert!(
            total == TOTAL || total == TOTAL + ACCOUNTS,
            "a partly applied commit: sum {total}"
        );
        if total == TOTAL + ACCOUNTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cancelled commit never took effect: recovery aborted it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
