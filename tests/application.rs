//! End-to-end tests of what an application written for PostgreSQL does
//! first: load its schema (serial keys, defaults, constraints, ALTER
//! TABLE), insert with `RETURNING id` through the extended protocol, read
//! columns by PostgreSQL's names and types, bulk-load with COPY, and run
//! unmodified `pgbench -i`.

use std::io::Write;

use futures::SinkExt;
use slicedb_e2e::{eventually, Server, TestCluster};

/// Text of every value of a simple query's rows.
async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for m in client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")) {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            out.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
        }
    }
    out
}

fn ints(rows: &[Vec<Option<String>>]) -> Vec<i64> {
    rows.iter().map(|r| r[0].as_deref().unwrap().parse().unwrap()).collect()
}

/// `INSERT … RETURNING id` through the extended protocol, as every ORM
/// sends it: the statement is described before it runs (so the driver
/// knows the returned columns and their types) and the row comes back with
/// the command tag `INSERT 0 1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_returning_through_the_extended_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL,
                                 plan varchar(8) NOT NULL DEFAULT 'free', created_at timestamptz DEFAULT now())",
        )
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO users (email) VALUES ($1) RETURNING id, plan, created_at IS NOT NULL AS stamped")
        .await
        .unwrap();
    let names: Vec<&str> = insert.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["id", "plan", "stamped"]);
    assert_eq!(insert.columns()[0].type_(), &tokio_postgres::types::Type::INT8);
    let mut ids = Vec::new();
    for i in 0..5 {
        let row = client.query_one(&insert, &[&format!("u{i}@x.org")]).await.unwrap();
        let id: i64 = row.get("id");
        let plan: String = row.get("plan");
        let stamped: bool = row.get("stamped");
        assert_eq!((plan.as_str(), stamped), ("free", true));
        ids.push(id);
    }
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    let n = client
        .execute("INSERT INTO users (email) VALUES ($1) RETURNING id", &[&"z@x.org"])
        .await
        .unwrap();
    assert_eq!(n, 1, "the command tag counts the row");
    let updated = client
        .query(
            "UPDATE users SET plan = $1 WHERE id <= $2 RETURNING id",
            &[&"pro", &2i64],
        )
        .await
        .unwrap();
    let mut updated: Vec<i64> = updated.iter().map(|r| r.get(0)).collect();
    updated.sort();
    assert_eq!(updated, [1, 2]);
}

/// An upsert as ORMs send it (prepared, `ON CONFLICT (key) DO UPDATE`),
/// from four sessions at once on the same few keys, at PostgreSQL's
/// default isolation: every increment lands exactly once, and each
/// statement reports one row. Then UPDATE … FROM and DELETE with a
/// subquery, prepared with parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_prepared_upserts_count_every_increment() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE hits (page text PRIMARY KEY, n bigint NOT NULL, last_by int)")
        .await
        .unwrap();
    let (sessions, rounds, pages) = (4, 25, 3);
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let c = server.connect().await;
        tasks.push(tokio::spawn(async move {
            let upsert = c
                .prepare(
                    "INSERT INTO hits (page, n, last_by) VALUES ($1, $2, $3)
                     ON CONFLICT (page) DO UPDATE SET n = hits.n + EXCLUDED.n, last_by = EXCLUDED.last_by",
                )
                .await
                .unwrap();
            for r in 0..rounds {
                let page = format!("p{}", (r + s) % pages);
                let n = c.execute(&upsert, &[&page, &1i64, &s]).await.unwrap();
                assert_eq!(n, 1, "an upsert writes one row");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = rows(&client, "SELECT count(*), sum(n) FROM hits").await;
    assert_eq!(
        total,
        vec![vec![Some(pages.to_string()), Some((sessions * rounds).to_string())]]
    );
    // With RETURNING, as ORMs read the row back: the updated row, typed.
    let row = client
        .query_one(
            "INSERT INTO hits (page, n) VALUES ($1, $2) ON CONFLICT (page) DO UPDATE SET n = hits.n + EXCLUDED.n
             RETURNING page, n",
            &[&"p0", &1000i64],
        )
        .await
        .unwrap();
    let n: i64 = row.get("n");
    assert!(n > 1000, "the existing row was updated: {n}");
    // UPDATE … FROM and DELETE with a subquery, prepared with parameters.
    client
        .batch_execute("CREATE TABLE pages (page text PRIMARY KEY, weight bigint)")
        .await
        .unwrap();
    client
        .execute("INSERT INTO pages VALUES ('p1', 3), ('p2', 5)", &[])
        .await
        .unwrap();
    let updated = client
        .execute(
            "UPDATE hits SET n = p.weight * $1 FROM pages p WHERE p.page = hits.page",
            &[&100i64],
        )
        .await
        .unwrap();
    assert_eq!(updated, 2);
    let deleted = client
        .execute(
            "DELETE FROM hits WHERE page IN (SELECT page FROM pages WHERE weight > $1)",
            &[&4i64],
        )
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let left = rows(&client, "SELECT page, n FROM hits WHERE page <> 'p0' ORDER BY page").await;
    assert_eq!(left, vec![vec![Some("p1".to_string()), Some("300".to_string())]]);
}

/// Result columns carry PostgreSQL's names and types: drivers and ORMs
/// read columns by name, and an `int8` where PostgreSQL sends `int4`
/// breaks typed drivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_columns_have_postgresql_names_and_types() {
    use tokio_postgres::types::Type;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE t (a int PRIMARY KEY, b text); INSERT INTO t VALUES (1, 'x'), (2, 'y')")
        .await
        .unwrap();
    let cases: &[(&str, &[(&str, Type)])] = &[
        ("SELECT 1", &[("?column?", Type::INT4)]),
        ("SELECT 1 AS one, 2", &[("one", Type::INT4), ("?column?", Type::INT4)]),
        (
            "SELECT count(*), sum(a), upper(b) FROM t GROUP BY b",
            &[("count", Type::INT8), ("sum", Type::INT8), ("upper", Type::TEXT)],
        ),
        ("SELECT a, a FROM t", &[("a", Type::INT4), ("a", Type::INT4)]),
        (
            "SELECT NULL, NULL",
            &[("?column?", Type::TEXT), ("?column?", Type::TEXT)],
        ),
        (
            "SELECT a + 1, t.b FROM t",
            &[("?column?", Type::INT4), ("b", Type::TEXT)],
        ),
        (
            "SELECT *, 7 FROM t",
            &[("a", Type::INT4), ("b", Type::TEXT), ("?column?", Type::INT4)],
        ),
        (
            "SELECT 'x'::text, b::text FROM t",
            &[("text", Type::TEXT), ("b", Type::TEXT)],
        ),
    ];
    for (sql, expected) in cases {
        let stmt = client.prepare(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let got: Vec<(&str, Type)> = stmt.columns().iter().map(|c| (c.name(), c.type_().clone())).collect();
        let expected: Vec<(&str, Type)> = expected.to_vec();
        let got_names: Vec<&str> = got.iter().map(|(n, _)| *n).collect();
        let expected_names: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
        assert_eq!(got_names, expected_names, "names of {sql}");
        // NULL's type is PostgreSQL's `text` only after resolution; compare the rest.
        for ((_, g), (_, e)) in got.iter().zip(&expected) {
            if !sql.contains("NULL") {
                assert_eq!(g, e, "types of {sql}");
            }
        }
        client.query(&stmt, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // And through the simple protocol.
    let messages = client.simple_query("SELECT count(*), max(a) FROM t").await.unwrap();
    let desc = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::RowDescription(d) => Some(d.clone()),
            _ => None,
        })
        .expect("a row description");
    let names: Vec<&str> = desc.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["count", "max"]);
}

/// Serial values are unique and increasing across a kill -9: the ranges a
/// coordinator takes are on disk before any value of them is returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_values_survive_kill9_and_copy_fills_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE log (id serial PRIMARY KEY, msg text NOT NULL, level int DEFAULT 3 CHECK (level BETWEEN 0 AND 7),
                               at timestamptz DEFAULT now(), local timestamp DEFAULT localtimestamp);
             INSERT INTO log (msg) VALUES ('a'), ('b'), ('c')",
        )
        .await
        .unwrap();
    // COPY with a column list fills the rest with their defaults.
    let sink = client.copy_in("COPY log (msg) FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    let mut data = Vec::new();
    for i in 0..1000 {
        writeln!(data, "copied {i}").unwrap();
    }
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 1000);
    let r = rows(
        &client,
        "SELECT count(*), count(DISTINCT id), min(id), max(id), min(level), max(level), count(at), count(local) FROM log",
    )
    .await;
    let counts: Vec<&str> = r[0].iter().map(|v| v.as_deref().unwrap()).collect();
    assert_eq!(counts, ["1003", "1003", "1", "1003", "3", "3", "1003", "1003"]);
    // A CHECK holds for COPY too: the whole COPY is refused.
    let sink = client.copy_in("COPY log (msg, level) FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"ok\t1\nbad\t9\n")).await.unwrap();
    let e = sink.finish().await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23514"), "{e}");
    // Timestamps as PostgreSQL reads them, also without seconds.
    let sink = client.copy_in("COPY log (msg, at, local) FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"ts\t2024-01-31 10:00+02\t2024-01-31 9:05\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 1);
    let r = rows(
        &client,
        "SELECT count(*) FROM log WHERE msg = 'ts' AND local = timestamp '2024-01-31 09:05:00'
           AND at = timestamptz '2024-01-31 08:00:00+00'",
    )
    .await;
    assert_eq!(r[0][0].as_deref(), Some("1"));
    let before = ints(&rows(&client, "SELECT max(id) FROM log").await)[0];

    server.kill9();
    let server = Server::start_on(dir.path(), server.addr.port());
    let client = server.connect().await;
    let after = ints(&rows(&client, "INSERT INTO log (msg) VALUES ('after') RETURNING id").await)[0];
    assert!(after > before, "{after} must follow {before}");
    let r = rows(&client, "SELECT count(*), count(DISTINCT id) FROM log").await;
    assert_eq!(r[0][0], r[0][1], "no id handed out twice");
    assert_eq!(r[0][0].as_deref(), Some("1005"));
}

/// ALTER TABLE as migrations use it: adding columns to a table with rows
/// (instant: old rows read the default), renames, constraints checked
/// against the rows already there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_on_a_table_with_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text);
             INSERT INTO items SELECT i, 'n' || i FROM generate_series(1, 200) AS s(i);
             ALTER TABLE items ADD COLUMN active boolean NOT NULL DEFAULT true;
             ALTER TABLE items ADD COLUMN note text;
             ALTER TABLE items RENAME COLUMN name TO title;
             INSERT INTO items (id, title, active) VALUES (201, 'new', false);",
        )
        .await
        .unwrap();
    let r = rows(
        &client,
        "SELECT count(*) FILTER (WHERE active), count(*) FILTER (WHERE NOT active), count(note), min(title) FROM items",
    )
    .await;
    assert_eq!(
        r[0],
        [
            Some("200".into()),
            Some("1".into()),
            Some("0".into()),
            Some("n1".into())
        ]
    );
    let e = client
        .batch_execute("ALTER TABLE items ADD COLUMN must text NOT NULL")
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23502"));
    let e = client
        .batch_execute("ALTER TABLE items ADD CONSTRAINT small CHECK (id < 100)")
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23514"));
    client
        .batch_execute("INSERT INTO items (id, title) VALUES (500, 'allowed, as the check was refused')")
        .await
        .unwrap();
    client
        .batch_execute("ALTER TABLE items ADD CONSTRAINT positive CHECK (id > 0)")
        .await
        .unwrap();
    let e = client
        .batch_execute("INSERT INTO items (id) VALUES (-1)")
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23514"));
    let e = client
        .batch_execute("ALTER TABLE items ALTER COLUMN note SET NOT NULL")
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23502"));
    client
        .batch_execute("ALTER TABLE items ALTER COLUMN title SET NOT NULL; ALTER TABLE items RENAME TO things")
        .await
        .unwrap();
    // The definition and the old rows' values survive a restart.
    server.kill9();
    let server = Server::start_on(dir.path(), server.addr.port());
    let client = server.connect().await;
    let r = rows(&client, "SELECT count(*) FILTER (WHERE active), count(*) FROM things").await;
    assert_eq!(r[0], [Some("201".into()), Some("202".into())]);
    let e = client
        .batch_execute("INSERT INTO things (id) VALUES (900)")
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23502"), "title is NOT NULL now");
}

/// `DROP COLUMN` on a table whose rows live on two slice servers (over
/// QUIC): rows stored before the drop (which keep the dropped value) and
/// rows written after it by INSERT, a prepared INSERT and COPY all read
/// right, through a scan, a point read and an index on a column after the
/// dropped one, and still do after the coordinator is killed and restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_column_on_slice_servers_keeps_rows_and_indexes() {
    let mut cluster = TestCluster::start(2, 0);
    let client = cluster.client().await;
    client
        .batch_execute(
            "CREATE TABLE ev (id int PRIMARY KEY, payload text, kind text, n int);
             INSERT INTO ev SELECT g, repeat('x', 50), 'k' || (g % 10), g FROM generate_series(1, 400) AS s(g);
             CREATE INDEX ev_kind ON ev (kind)",
        )
        .await
        .unwrap();
    // Prepared before the drop, executed after it: planned again.
    let point = client.prepare("SELECT n, kind FROM ev WHERE id = $1").await.unwrap();
    client
        .batch_execute("ALTER TABLE ev DROP COLUMN payload")
        .await
        .unwrap();
    let row = client.query_one(&point, &[&9i32]).await.unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, String>(1)), (9, "k9".to_string()));
    let sink = client.copy_in("COPY ev FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    let mut data = Vec::new();
    for i in 1001..=1100 {
        writeln!(data, "{i}\tk3\t1").unwrap();
    }
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 100);
    let insert = client.prepare("INSERT INTO ev VALUES ($1, $2, $3)").await.unwrap();
    for id in 501..=510 {
        client.execute(&insert, &[&id, &"kp", &0i32]).await.unwrap();
    }
    client
        .batch_execute("UPDATE ev SET n = n + 1 WHERE kind = 'k3'")
        .await
        .unwrap();
    let pg = cluster.pg;
    for round in ["before the restart", "after the restart"] {
        let client = cluster.client().await;
        let r = slicedb_e2e::query(&client, "SELECT count(*), sum(n), count(DISTINCT kind) FROM ev").await;
        assert_eq!(r, [["510", "80440", "11"]], "{round}");
        let r = slicedb_e2e::query(&client, "SELECT * FROM ev WHERE id = 7").await;
        assert_eq!(r, [["7", "k7", "7"]], "{round}: a row stored before the drop");
        let r = slicedb_e2e::query(&client, "SELECT * FROM ev WHERE id = 1050").await;
        assert_eq!(r, [["1050", "k3", "2"]], "{round}: a copied row");
        let r = slicedb_e2e::query(&client, "SELECT count(*), sum(n) FROM ev WHERE kind = 'k3'").await;
        assert_eq!(r, [["140", "8160"]], "{round}: through the index");
        let r = slicedb_e2e::query(&client, "SELECT id, n FROM ev WHERE kind = 'kp' AND id = 505").await;
        assert_eq!(r, [["505", "0"]], "{round}");
        if round == "before the restart" {
            cluster.coordinator.kill9();
            cluster.coordinator.restart();
            eventually(pg, "SELECT 1").await;
        }
    }
}

/// Unmodified `pgbench -i` creates its tables without keys, loads them with
/// COPY, runs VACUUM and adds the primary keys with ALTER TABLE; then
/// pgbench runs on them and its balance invariant holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_initializes_unmodified_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let addr = server.addr;
    let pgbench = move |args: &[&str]| slicedb_e2e::pgbench(addr, &[], args);
    tokio::task::spawn_blocking(move || pgbench(&["-i", "-s", "1"]))
        .await
        .unwrap();
    let client = server.connect().await;
    let r = rows(
        &client,
        "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_branches), (SELECT count(*) FROM pgbench_tellers)",
    )
    .await;
    assert_eq!(r[0], [Some("100000".into()), Some("1".into()), Some("10".into())]);
    // The keys exist: a duplicate is refused.
    let e = client
        .batch_execute("INSERT INTO pgbench_accounts (aid, bid, abalance) VALUES (1, 1, 0)")
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23505"));
    let stdout = tokio::task::spawn_blocking(move || {
        pgbench(&[
            "-n",
            "-c",
            "4",
            "-j",
            "2",
            "-t",
            "20",
            "-b",
            "tpcb-like",
            "--max-tries=1000",
        ])
    })
    .await
    .unwrap();
    let processed: i64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|l| l.split('/').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("pgbench reports the transactions processed");
    assert_eq!(processed, 80);
    let r = rows(
        &client,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM pgbench_branches),
                (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(delta) FROM pgbench_history),
                (SELECT count(*) FROM pgbench_history)",
    )
    .await;
    let v: Vec<&str> = r[0].iter().map(|v| v.as_deref().unwrap()).collect();
    assert_eq!(
        (v[0], v[1], v[2]),
        (v[3], v[3], v[3]),
        "the balances agree with the history"
    );
    assert_eq!(v[4], "80");
}
