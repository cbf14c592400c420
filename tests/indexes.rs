//! End-to-end tests of global secondary indexes: a UNIQUE constraint (and
//! a unique `lower(email)`) that holds across slice servers under
//! concurrent inserts, index entries that
//! agree with the rows after a random mix of writes (checked against a
//! model), and an index built while writers run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use slicedb_e2e::{connect, eventually, query as rows, Server, TestCluster};

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("{e}"))
}

/// Whether an insert won its value (true) or lost it to another session's
/// (false, 23505); any other outcome fails the test.
fn won(outcome: Result<u64, tokio_postgres::Error>) -> bool {
    match outcome {
        Ok(1) => true,
        Ok(n) => panic!("an insert wrote {n} rows"),
        Err(err) => {
            assert_eq!(sqlstate(&err), "23505", "{err:?}");
            false
        }
    }
}

/// How many sessions won each value.
async fn winners<T: Ord>(tasks: Vec<tokio::task::JoinHandle<Vec<T>>>) -> BTreeMap<T, usize> {
    let mut winners = BTreeMap::new();
    for t in tasks {
        for e in t.await.unwrap() {
            *winners.entry(e).or_default() += 1;
        }
    }
    winners
}

/// Eight sessions insert rows with distinct ids, on every slice server,
/// and the same 40 emails: each email is taken exactly once, every other
/// attempt fails with 23505, and the lookup by email finds the one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_column_holds_across_slice_servers_under_concurrent_inserts() {
    let cluster = TestCluster::start(3, 0);
    let client = cluster.client().await;
    client
        .batch_execute("CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE, name text)")
        .await
        .unwrap();
    let (sessions, emails) = (8, 40);
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let c = cluster.client().await;
        tasks.push(tokio::spawn(async move {
            let insert = c
                .prepare("INSERT INTO users (id, email, name) VALUES ($1, $2, $3)")
                .await
                .unwrap();
            let mut taken = Vec::new();
            for e in 0..emails {
                let id = s * 1000 + e;
                if won(c.execute(&insert, &[&id, &format!("e{e}@x"), &format!("s{s}")]).await) {
                    taken.push(e);
                }
            }
            taken
        }));
    }
    let winners = winners(tasks).await;
    assert_eq!(winners.len(), emails as usize, "every email was taken");
    assert!(
        winners.values().all(|n| *n == 1),
        "an email was taken twice: {winners:?}"
    );
    let all = rows(&client, "SELECT email, count(*) FROM users GROUP BY email").await;
    assert_eq!(all.len(), emails as usize);
    assert!(all.iter().all(|r| r[1] == "1"), "{all:?}");
    // The rows live on several slice servers.
    let slices = rows(&client, "SHOW SLICES FOR users").await;
    let holding = slices.iter().filter(|r| r[4] != "0").count();
    assert!(holding > 1, "{slices:?}");
    // A lookup by email reads the index and finds the one row.
    let plan = rows(&client, "EXPLAIN SELECT id FROM users WHERE email = 'e7@x'").await;
    let text = format!("{plan:?}");
    assert!(
        text.contains("IndexLookupExec: table=users, index=users_email_key"),
        "{text}"
    );
    let found = rows(&client, "SELECT email FROM users WHERE email = 'e7@x'").await;
    assert_eq!(found, vec![vec!["e7@x".to_string()]]);
}

/// A unique index on `lower(email)`, in the embedded layout's three slice
/// servers: four sessions insert the same 30 emails, each in its own mix
/// of upper and lower case, concurrently; each email is taken once
/// whatever its case, and a lookup by `lower(email)` reads the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_lower_email_holds_under_concurrent_inserts_and_serves_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, email varchar(64) NOT NULL);
             CREATE UNIQUE INDEX accounts_email_ci ON accounts (lower(email));",
        )
        .await
        .unwrap();
    let (sessions, emails) = (4, 30);
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let c = server.connect().await;
        tasks.push(tokio::spawn(async move {
            let insert = c.prepare("INSERT INTO accounts VALUES ($1, $2)").await.unwrap();
            let mut taken = Vec::new();
            for e in 0..emails {
                // Session s writes the letters of `user<e>@x.org` in a case
                // pattern of its own.
                let email: String = format!("user{e}@x.org")
                    .chars()
                    .enumerate()
                    .map(|(i, ch)| {
                        if (i + s) % (s + 2) == 0 {
                            ch.to_ascii_uppercase()
                        } else {
                            ch
                        }
                    })
                    .collect();
                if won(c.execute(&insert, &[&((s * 1000 + e) as i32), &email]).await) {
                    taken.push(e);
                }
            }
            taken
        }));
    }
    let winners = winners(tasks).await;
    assert_eq!(winners.len(), emails, "every email was taken: {winners:?}");
    assert!(
        winners.values().all(|n| *n == 1),
        "an email was taken twice: {winners:?}"
    );
    let all = rows(&client, "SELECT lower(email), count(*) FROM accounts GROUP BY 1").await;
    assert_eq!(all.len(), emails);
    assert!(all.iter().all(|r| r[1] == "1"), "{all:?}");
    let plan = rows(
        &client,
        "EXPLAIN SELECT id FROM accounts WHERE lower(email) = 'user7@x.org'",
    )
    .await;
    let text = format!("{plan:?}");
    assert!(
        text.contains("IndexLookupExec: table=accounts, index=accounts_email_ci"),
        "{text}"
    );
    let found = rows(
        &client,
        "SELECT lower(email) FROM accounts WHERE lower(email) = 'user7@x.org'",
    )
    .await;
    assert_eq!(found, vec![vec!["user7@x.org".to_string()]]);
}

/// A tiny deterministic generator (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// A random mix of inserts, updates of indexed columns and deletes, each
/// checked against a model (a duplicate email must fail with 23505 exactly
/// when the model has it); then every lookup through each index answers
/// as the model does, and as a scan does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_entries_agree_with_the_rows_after_a_random_mix_of_writes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, email text, grp int, note text);
         CREATE UNIQUE INDEX items_email ON items (email);
         CREATE INDEX items_grp ON items (grp)",
    )
    .await
    .unwrap();
    let mut model: BTreeMap<i32, (Option<String>, i32)> = BTreeMap::new();
    let mut rng = Lcg(42);
    let email = |rng: &mut Lcg| match rng.next(5) {
        0 => None,
        _ => Some(format!("m{}", rng.next(60))),
    };
    let taken = |model: &BTreeMap<i32, (Option<String>, i32)>, e: &Option<String>, except: i32| {
        e.is_some() && model.iter().any(|(id, (m, _))| *id != except && m == e)
    };
    for _ in 0..400 {
        let id = rng.next(80) as i32;
        match rng.next(4) {
            0 | 1 => {
                let (e, g) = (email(&mut rng), rng.next(6) as i32);
                let r = c
                    .execute(
                        "INSERT INTO items (id, email, grp, note) VALUES ($1, $2, $3, 'x')",
                        &[&id, &e, &g],
                    )
                    .await;
                let expected = if model.contains_key(&id) || taken(&model, &e, id) {
                    Some("23505")
                } else {
                    None
                };
                match (&r, expected) {
                    (Ok(_), None) => {
                        model.insert(id, (e, g));
                    }
                    (Err(err), Some(code)) => assert_eq!(sqlstate(err), code),
                    _ => panic!("insert {id} {e:?}: {r:?}, expected {expected:?}"),
                }
            }
            2 => {
                let (e, g) = (email(&mut rng), rng.next(6) as i32);
                let r = c
                    .execute("UPDATE items SET email = $2, grp = $3 WHERE id = $1", &[&id, &e, &g])
                    .await;
                let exists = model.contains_key(&id);
                match (&r, exists && taken(&model, &e, id)) {
                    (Ok(n), false) => {
                        assert_eq!(*n, exists as u64);
                        if exists {
                            model.insert(id, (e, g));
                        }
                    }
                    (Err(err), true) => assert_eq!(sqlstate(err), "23505"),
                    _ => panic!("update {id} {e:?}: {r:?}"),
                }
            }
            _ => {
                // Deletes by the indexed column, or by key.
                if rng.next(2) == 0 {
                    let g = rng.next(6) as i32;
                    let n = c
                        .execute("DELETE FROM items WHERE grp = $1 AND id < $2", &[&g, &id])
                        .await
                        .unwrap();
                    let before = model.len();
                    model.retain(|k, (_, mg)| !(*mg == g && *k < id));
                    assert_eq!(n as usize, before - model.len());
                } else {
                    let n = c.execute("DELETE FROM items WHERE id = $1", &[&id]).await.unwrap();
                    assert_eq!(n, model.remove(&id).is_some() as u64);
                }
            }
        }
    }
    assert!(model.len() > 10, "the mix left rows to check: {}", model.len());
    let plan = format!("{:?}", rows(&c, "EXPLAIN SELECT id FROM items WHERE grp = 1").await);
    assert!(plan.contains("IndexLookupExec: table=items, index=items_grp"), "{plan}");
    for g in 0..6 {
        let want: BTreeSet<i32> = model.iter().filter(|(_, (_, mg))| *mg == g).map(|(k, _)| *k).collect();
        let got: BTreeSet<i32> = c
            .query("SELECT id FROM items WHERE grp = $1", &[&g])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, want, "grp {g}");
    }
    for e in 0..60 {
        let e = format!("m{e}");
        let want: Vec<i32> = model
            .iter()
            .filter(|(_, (m, _))| m.as_deref() == Some(e.as_str()))
            .map(|(k, _)| *k)
            .collect();
        let got: Vec<i32> = c
            .query("SELECT id FROM items WHERE email = $1", &[&e])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, want, "email {e}");
    }
    let scanned = rows(&c, "SELECT count(*) FROM items").await;
    assert_eq!(scanned[0][0], model.len().to_string());
}

/// CREATE INDEX on a table that four sessions keep writing to (inserting
/// rows, changing the indexed column of rows that were there before, and
/// deleting some): no writer fails, the build finishes, and afterwards the
/// index finds exactly the rows a scan finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_built_while_writers_run_finds_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE log (id int PRIMARY KEY, tag text)")
        .await
        .unwrap();
    c.execute(
        "INSERT INTO log SELECT g, 't' || (g % 7) FROM generate_series(100000, 119999) AS s(g)",
        &[],
    )
    .await
    .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let wc = server.connect().await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0i32;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let id = w * 10_000 + n;
                // Rows that were there before the build, each writer its own.
                let old = 100_000 + w * 500 + (n / 4) % 500;
                match n % 4 {
                    // In an explicit transaction, so that a build meets open writers.
                    0 => wc
                        .batch_execute(&format!(
                            "BEGIN; INSERT INTO log VALUES ({id}, 't{}'); UPDATE log SET tag = 't{}' WHERE id = {id}; COMMIT",
                            n % 7,
                            (n + 1) % 7
                        ))
                        .await
                        .unwrap(),
                    1 => {
                        wc.execute("INSERT INTO log VALUES ($1, $2)", &[&id, &format!("t{}", n % 7)])
                            .await
                            .unwrap();
                    }
                    2 => {
                        wc.execute("UPDATE log SET tag = $1 WHERE id = $2", &[&format!("t{}", n % 5), &old])
                            .await
                            .unwrap();
                    }
                    _ => {
                        wc.execute("DELETE FROM log WHERE id = $1", &[&(old + 250)])
                            .await
                            .unwrap();
                    }
                }
                n += 1;
            }
            n
        }));
    }
    // Let the writers get going: wait until their rows show.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = rows(&c, "SELECT count(*) FROM log WHERE id < 100000").await;
        if n[0][0].parse::<i64>().unwrap() >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the writers wrote nothing");
    }
    c.batch_execute("CREATE INDEX log_tag ON log (tag)").await.unwrap();
    // Writes go on after the build, and maintain the index.
    let after = rows(&c, "SELECT count(*) FROM log").await[0][0].clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = rows(&c, "SELECT count(*) FROM log").await[0][0].clone();
        if n.parse::<i64>().unwrap() >= after.parse::<i64>().unwrap() + 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the writers stopped after the build");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        assert!(w.await.unwrap() > 0);
    }
    let found = tags_agree(&c, 7).await;
    assert!(found.iter().all(|n| *n > 0), "{found:?}");
}

/// For tags `t0` … `t{n-1}` of table `log`, which has an index on `tag`:
/// the rows the index finds and those a scan finds are as many. Returns
/// how many each tag has.
async fn tags_agree(c: &tokio_postgres::Client, n: usize) -> Vec<i64> {
    let plan = format!("{:?}", rows(c, "EXPLAIN SELECT id FROM log WHERE tag = 't3'").await);
    assert!(plan.contains("IndexLookupExec"), "{plan}");
    let mut found = Vec::new();
    for t in 0..n {
        let tag = format!("t{t}");
        let via_index: i64 = c
            .query_one("SELECT count(*) FROM log WHERE tag = $1", &[&tag])
            .await
            .unwrap()
            .get(0);
        // `tag || ''` is no plain column: a scan of every slice.
        let scanned: i64 = c
            .query_one("SELECT count(*) FROM log WHERE tag || '' = $1", &[&tag])
            .await
            .unwrap()
            .get(0);
        assert_eq!(via_index, scanned, "tag {tag}");
        found.push(scanned);
    }
    found
}

/// Waits (up to 30 s) until `slicedb.index_builds` shows the build of
/// `index` back-filling, with rows read.
async fn wait_backfilling(c: &tokio_postgres::Client, index: &str) {
    let sql = format!(
        "SELECT count(*) FROM slicedb.index_builds WHERE index = '{index}' AND phase = 'back-filling' AND rows_done > 0"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows(c, &sql).await != vec![vec!["1".to_string()]] {
        assert!(
            Instant::now() < deadline,
            "the build of {index} did not start back-filling"
        );
        tokio::task::yield_now().await;
    }
}

/// A cluster of two slice servers where `sql` has run.
async fn cluster_with(sql: &str) -> TestCluster {
    let cluster = TestCluster::start(2, 0);
    cluster.client().await.batch_execute(sql).await.unwrap();
    cluster
}

/// Whether a lookup by `email` in table `t` reads an index.
async fn uses_index(pg: std::net::SocketAddr) -> bool {
    let plan = eventually(pg, "EXPLAIN SELECT id FROM t WHERE email = 'e1@x'").await;
    format!("{plan:?}").contains("IndexLookupExec")
}

/// kill -9 of the coordinator during a build (in the middle of its
/// back-fill, and after it, before the index is published usable), and of a
/// slice server during one: each time the table is left with no index (the name is
/// free, a duplicate can be inserted, nothing reads the half-built one),
/// and a new build afterwards gives a usable unique index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_interrupted_by_a_crash_leaves_no_index() {
    let mut cluster = cluster_with(
        "CREATE TABLE t (id int PRIMARY KEY, email text);
         INSERT INTO t SELECT g, 'e' || g || '@x' FROM generate_series(1, 300) AS s(g)",
    )
    .await;
    let pg = cluster.pg;
    let build = "CREATE UNIQUE INDEX t_email ON t (email)";
    for failpoint in ["index-build-backfill", "index-build-before-ready"] {
        cluster.coordinator.restart_with_failpoint(Some(failpoint));
        eventually(pg, "SELECT 1").await;
        let client = connect(pg).await;
        assert!(
            client.batch_execute(build).await.is_err(),
            "{failpoint}: the coordinator died"
        );
        assert!(cluster.coordinator.wait_exit(Duration::from_secs(10)), "{failpoint}");
        cluster.coordinator.restart_with_failpoint(None);
        assert!(!uses_index(pg).await, "{failpoint}: the unfinished index is gone");
        // No uniqueness is enforced: the duplicate goes in, and a new build
        // over it fails; without it, the build succeeds.
        eventually(pg, "INSERT INTO t VALUES (1000, 'e1@x')").await;
        let client = connect(pg).await;
        let e = client.batch_execute(build).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("23505"), "{e:?}");
        client.batch_execute("DELETE FROM t WHERE id = 1000").await.unwrap();
        client.batch_execute(build).await.unwrap();
        assert!(uses_index(pg).await);
        let e = client
            .batch_execute("INSERT INTO t VALUES (1000, 'e1@x')")
            .await
            .unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("23505"));
        client.batch_execute("DROP INDEX t_email").await.unwrap();
    }
    // A slice server dies in the middle of a build's back-fill: the build
    // fails and leaves no index; once it is back, a build succeeds.
    cluster
        .coordinator
        .restart_with_failpoint(Some("index-build-backfill=sleep(3000)"));
    eventually(pg, "SELECT 1").await;
    let client = connect(pg).await;
    let building = tokio::spawn(async move { client.batch_execute(build).await });
    assert!(cluster
        .coordinator
        .wait_for_output("slicedb failpoint: index-build-backfill", Duration::from_secs(30)));
    cluster.slices[1].kill9();
    assert!(building.await.unwrap().is_err(), "the build lost a slice server");
    cluster.slices[1].restart();
    cluster.coordinator.restart_with_failpoint(None);
    assert!(!uses_index(pg).await);
    eventually(pg, build).await;
    assert!(uses_index(pg).await);
    let found = eventually(pg, "SELECT id FROM t WHERE email = 'e77@x'").await;
    assert_eq!(found, vec![vec!["77".to_string()]]);
}

/// CREATE INDEX does not hold writers up. While a build is held in the
/// middle of its back-fill (a failpoint), inserts, updates of the indexed
/// column and deletes of rows that were there before the build all
/// complete, and the index then agrees with the rows. A unique build meets
/// values written twice while it runs: either the writer's insert fails
/// with 23505 (its value's entry was back-filled already), or the build
/// does; never is a unique index left over duplicates. Values that rows
/// give up while a unique build runs are free afterwards. A cancelled build
/// leaves no index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_on_while_an_index_is_built() {
    let mut cluster = cluster_with(
        "CREATE TABLE log (id int PRIMARY KEY, tag text, email text);
         INSERT INTO log SELECT g, 't' || (g % 7), 'e' || g || '@x' FROM generate_series(1, 3000) AS s(g)",
    )
    .await;
    let pg = cluster.pg;
    let held = "index-build-backfill=sleep(8000)";
    cluster.coordinator.restart_with_failpoint(Some(held));
    eventually(pg, "SELECT 1").await;
    let builder = connect(pg).await;
    let build = tokio::spawn(async move { builder.batch_execute("CREATE INDEX log_tag ON log (tag)").await });
    assert!(cluster
        .coordinator
        .wait_for_output("slicedb failpoint: index-build-backfill", Duration::from_secs(30)));
    let c = connect(pg).await;
    c.batch_execute(
        "INSERT INTO log VALUES (5000, 't3', 'n1@x');
         UPDATE log SET tag = 't9' WHERE id % 10 = 1;
         DELETE FROM log WHERE id % 10 = 2;
         BEGIN; UPDATE log SET tag = 't8' WHERE id = 3; INSERT INTO log VALUES (5001, 't8', 'n2@x'); COMMIT",
    )
    .await
    .unwrap();
    assert!(!build.is_finished(), "the writes waited for the build");
    let progress = rows(&c, "SELECT index, \"table\", phase FROM slicedb.index_builds").await;
    assert_eq!(
        progress,
        vec![vec!["log_tag".to_string(), "log".into(), "back-filling".into()]]
    );
    build.await.unwrap().unwrap();
    assert!(rows(&c, "SELECT * FROM slicedb.index_builds").await.is_empty());
    let found = tags_agree(&c, 10).await;
    // t7 has no row; t8 and t9 only those the writes gave them.
    assert!(found.iter().enumerate().all(|(t, n)| (*n > 0) == (t != 7)), "{found:?}");

    // A unique build while the values of rows it is reading change: the
    // values they had are free afterwards (a writer's delete of an entry
    // not back-filled yet keeps it from being back-filled).
    cluster.coordinator.restart_with_failpoint(Some(held));
    eventually(pg, "SELECT 1").await;
    let unique = "CREATE UNIQUE INDEX log_email ON log (email)";
    let builder = connect(pg).await;
    let build = tokio::spawn(async move { builder.batch_execute(unique).await });
    let c = connect(pg).await;
    wait_backfilling(&c, "log_email").await;
    c.batch_execute("UPDATE log SET email = 'moved' || id WHERE id % 10 = 3")
        .await
        .unwrap();
    assert!(!build.is_finished(), "the writes waited for the build");
    build.await.unwrap().unwrap();
    c.batch_execute("INSERT INTO log VALUES (20013, 'x', 'e13@x'); DROP INDEX log_email")
        .await
        .unwrap();

    // A unique build, and values written twice while it is held.
    let builder = connect(pg).await;
    let build = tokio::spawn(async move { builder.batch_execute(unique).await });
    wait_backfilling(&c, "log_email").await;
    let c = connect(pg).await;
    let mut taken = 0;
    for id in (5..3000).step_by(100) {
        let sql = format!("INSERT INTO log VALUES ({}, 'dup', 'e{id}@x')", 10_000 + id);
        match c.batch_execute(&sql).await {
            Ok(()) => taken += 1,
            Err(e) => assert_eq!(sqlstate(&e), "23505", "{e:?}"),
        }
    }
    assert!(!build.is_finished(), "the writes waited for the build");
    let built = build.await.unwrap();
    // A build whose statement is cancelled (here by its timeout, while it
    // is held) leaves no index.
    let e = c
        .batch_execute("SET statement_timeout = 2000; CREATE INDEX log_later ON log (tag)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "57014", "{e:?}");
    c.batch_execute("RESET statement_timeout").await.unwrap();
    assert!(rows(&c, "SELECT * FROM slicedb.index_builds").await.is_empty());
    let later = rows(&c, "SELECT count(*) FROM pg_indexes WHERE indexname = 'log_later'").await;
    assert_eq!(later, vec![vec!["0".to_string()]]);
    cluster.coordinator.restart_with_failpoint(None);
    let indexes = eventually(
        pg,
        "SELECT indexname FROM pg_indexes WHERE tablename = 'log' ORDER BY 1",
    )
    .await;
    if taken > 0 {
        let e = built.unwrap_err();
        assert_eq!(sqlstate(&e), "23505", "{e:?}");
        assert!(!indexes.concat().contains(&"log_email".to_string()), "{indexes:?}");
    } else {
        built.unwrap();
        assert!(indexes.concat().contains(&"log_email".to_string()), "{indexes:?}");
    }
}
