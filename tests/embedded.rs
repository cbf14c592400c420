//! End-to-end tests of the embedded `slicedb start`: durability across
//! SIGKILL, spread of rows over slice servers, EXPLAIN's bucket pruning,
//! psql's meta-commands, and robustness against a malformed message.

use std::io::Write;
use std::process::Command;

use futures::SinkExt;
use slicedb_e2e::Server;

const ROWS: i64 = 100_000;

/// COPY 100,000 rows in, check SHOW SLICES spreads them in proportion to the
/// slice servers' bucket counts, kill -9, restart, and find every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_spread_and_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, qty integer NOT NULL, label text)")
        .await
        .unwrap();

    let sink = client.copy_in("COPY items FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    let mut chunk = Vec::new();
    for i in 0..ROWS {
        writeln!(chunk, "{i}\t{}\tlabel-{i}", i % 97).unwrap();
        if chunk.len() > 64 * 1024 {
            sink.send(bytes::Bytes::from(std::mem::take(&mut chunk))).await.unwrap();
        }
    }
    sink.send(bytes::Bytes::from(chunk)).await.unwrap();
    let copied = sink.finish().await.unwrap();
    assert_eq!(copied, ROWS as u64);

    let expected_sum: i64 = (0..ROWS).map(|i| i % 97).sum();
    let check = |client: tokio_postgres::Client| async move {
        let row = client
            .query_one("SELECT count(*), sum(qty) FROM items", &[])
            .await
            .unwrap();
        let (count, sum): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(count, ROWS);
        assert_eq!(sum, expected_sum);
        client
    };
    let client = check(client).await;

    // SHOW SLICES: table, hash_map, node, buckets, rows, bytes
    let slices = client.simple_query("SHOW SLICES FOR items").await.unwrap();
    let mut seen = 0;
    for m in slices {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            let buckets: f64 = r.get(3).unwrap().parse().unwrap();
            let rows: f64 = r.get(4).unwrap().parse().unwrap();
            let expected = ROWS as f64 * buckets / 65536.0;
            assert!(
                (rows - expected).abs() <= expected * 0.05,
                "node {} holds {rows} rows, expected {expected} ± 5%",
                r.get(2).unwrap()
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 3, "rows on all three slice servers");

    // The three slice servers share one RocksDB (and so one WAL).
    assert!(dir.path().join("slices").is_dir());
    assert!(!dir.path().join("slice-1").exists());

    // The statement above returned: now kill -9 and restart on the same data.
    drop(client);
    server.kill9();
    let server = Server::start(dir.path());
    let client = server.connect().await;
    let client = check(client).await;
    // The catalog and the maps survived too.
    let maps = client.simple_query("SHOW HASH MAPS").await.unwrap();
    assert!(maps
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("hm1"))));
}

/// A data directory of the layout before the shared RocksDB (one RocksDB
/// per slice server, in `slice-<node>/`) is opened in that layout: rows
/// written through it are there after a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_separate_slice_directories_of_older_versions_still_open() {
    let dir = tempfile::tempdir().unwrap();
    for node in 1..=3 {
        std::fs::create_dir_all(dir.path().join(format!("slice-{node}"))).unwrap();
    }
    let mut server = Server::start(dir.path());
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE kv (k bigint PRIMARY KEY, v text); \
             INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 300) AS s(g)",
        )
        .await
        .unwrap();
    drop(client);
    server.kill9();
    let server = Server::start(dir.path());
    let client = server.connect().await;
    let rows = slicedb_e2e::query(&client, "SELECT count(*), count(DISTINCT v) FROM kv").await;
    assert_eq!(rows, vec![vec!["300".to_string(), "300".to_string()]]);
    assert!(
        !dir.path().join("slices").exists(),
        "no shared RocksDB beside the old directories"
    );
    for node in 1..=3 {
        assert!(dir.path().join(format!("slice-{node}")).join("CURRENT").exists());
    }
}

/// `WHERE id = $1` on the full distribution key touches one bucket on one slice server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_buckets_and_slice_servers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE t (id bigint PRIMARY KEY, v text)")
        .await
        .unwrap();
    let plan = |sql: &'static str| {
        let client = &client;
        async move {
            let rows = client.simple_query(sql).await.unwrap();
            rows.iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let point = plan("EXPLAIN SELECT * FROM t WHERE id = 42").await;
    assert!(
        point.contains("SliceScanExec: table=t, buckets=1, slice_servers=["),
        "{point}"
    );
    assert!(point.contains("point_reads=1"), "{point}");
    assert_eq!(
        point.matches(" bucket]").count() + point.matches(" bucket,").count(),
        1,
        "{point}"
    );
    let several = plan("EXPLAIN SELECT * FROM t WHERE id IN (1, 2, 3)").await;
    assert!(several.contains("point_reads=3"), "{several}");
    let full = plan("EXPLAIN SELECT * FROM t").await;
    assert!(full.contains("buckets=65536"), "{full}");
    assert!(
        full.contains("1: 21846 buckets") && full.contains("3: 21845 buckets"),
        "{full}"
    );
}

fn psql(server: &Server, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-h",
        &server.addr.ip().to_string(),
        "-p",
        &server.addr.port().to_string(),
        "-U",
        "postgres",
        "-d",
        "slicedb",
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
    ])
    .args(args)
    .env("PGCONNECT_TIMEOUT", "10")
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("psql is installed");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "psql {args:?} failed:\n{text}");
    text
}

/// psql's `\dt`, `\d t`, `\l` and `\copy` work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_meta_commands() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    psql(
        &server,
        &[
            "-c",
            "CREATE TABLE t (id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamp)",
        ],
        None,
    );
    let dt = psql(&server, &["-c", "\\dt"], None);
    assert!(dt.contains(" t ") || dt.contains("| t "), "\\dt:\n{dt}");
    let d = psql(&server, &["-c", "\\d t"], None);
    for col in ["id", "name", "amount", "at"] {
        assert!(d.contains(col), "\\d t lacks {col}:\n{d}");
    }
    let l = psql(&server, &["-c", "\\l"], None);
    assert!(l.contains("slicedb"), "\\l:\n{l}");

    let csv = dir.path().join("in.csv");
    std::fs::write(&csv, "1,ann,1.50,2024-01-01 10:00:00\n2,\"b,ob\",2.25,\n").unwrap();
    psql(
        &server,
        &["-c", &format!("\\copy t FROM '{}' WITH (FORMAT csv)", csv.display())],
        None,
    );
    let out = dir.path().join("out.txt");
    psql(&server, &["-c", &format!("\\copy t TO '{}'", out.display())], None);
    let mut lines: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(lines, vec!["1\tann\t1.50\t2024-01-01 10:00:00", "2\tb,ob\t2.25\t\\N"]);
}

/// `\dt+`, `\di+` and `\l+` run, and the size functions behind them
/// report the bytes the slice servers hold: a table's rows, its index's
/// entries, no bytes of its own for the primary key (the table's key
/// order), the sum for the table and its indexes, NULL for an object id
/// that is nobody's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_shows_sizes_from_the_slice_servers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    psql(
        &server,
        &[
            "-c",
            "CREATE TABLE sized (id int PRIMARY KEY, email text, pad text)",
            "-c",
            "CREATE INDEX sized_email ON sized (email)",
            "-c",
            "CREATE TABLE empty_one (id int PRIMARY KEY)",
            "-c",
            "INSERT INTO sized SELECT g, 'u' || g || '@x', repeat('x', 200) FROM generate_series(1, 5000) g",
        ],
        None,
    );
    let dt = psql(&server, &["-c", "\\dt+"], None);
    assert!(dt.contains("sized") && dt.contains("kB"), "\\dt+:\n{dt}");
    let di = psql(&server, &["-c", "\\di+"], None);
    assert!(di.contains("sized_email") && di.contains("sized_pkey"), "\\di+:\n{di}");
    psql(&server, &["-c", "\\l+"], None);
    let sizes = psql(
        &server,
        &[
            "-At",
            "-c",
            "SELECT pg_table_size('sized'), pg_indexes_size('sized'::regclass), pg_total_relation_size('sized'), \
                    pg_relation_size('sized_email'), pg_relation_size('sized_pkey'), pg_table_size('empty_one'), \
                    pg_table_size(0) IS NULL, pg_database_size(current_database())",
        ],
        None,
    );
    let n: Vec<i64> = sizes
        .trim()
        .split('|')
        .map(|v| match v {
            "t" => 1,
            "f" => 0,
            v => v.parse().unwrap_or_else(|_| panic!("{sizes}")),
        })
        .collect();
    // 5,000 rows of over 200 bytes each (RocksDB's estimate, memtables
    // included); the index holds an entry per row.
    assert!(n[0] > 200_000, "table: {sizes}");
    assert!(n[1] > 0 && n[1] == n[3], "indexes: {sizes}");
    assert_eq!(n[2], n[0] + n[1], "total: {sizes}");
    assert_eq!((n[4], n[5], n[6]), (0, 0, 1), "{sizes}");
    assert!(n[7] >= n[2], "database: {sizes}");
}

/// The tables `psql_describes_tables_as_postgresql_does` describes.
const DESCRIBED_DDL: &str = r#"CREATE TABLE cat_p (id serial PRIMARY KEY, code varchar(20) NOT NULL UNIQUE, amount numeric(12,2) DEFAULT 0, qty integer CHECK (qty > 0), at timestamptz DEFAULT now());
CREATE TABLE cat_c (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, pid int REFERENCES cat_p ON DELETE CASCADE, tag char(3), note text, CONSTRAINT cat_c_note_check CHECK (length(note) < 100));
CREATE INDEX cat_c_tag_idx ON cat_c (tag, note);
CREATE UNIQUE INDEX cat_c_note_key ON cat_c (note);"#;

/// psql's `\d t` shows what PostgreSQL's shows for the same tables: full
/// column types, NOT NULL, defaults and identity, the primary key, unique
/// constraints and indexes, check constraints, foreign keys both ways; and
/// `\d+ t` its storage, compression, statistics target and description
/// columns and the access method (its first query reads the TOAST table's
/// options through a correlated `array(select … unnest(…))`, see
/// `pg_catalog::client_query_patch`). The expected outputs are PostgreSQL
/// 15's (`tests/golden/README.md`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describes_tables_as_postgresql_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    psql(&server, &["-q"], Some(DESCRIBED_DDL));
    let described = psql(&server, &["-c", "\\d cat_p", "-c", "\\d cat_c"], None);
    assert_eq!(described, include_str!("golden/describe.out"));
    let verbose = psql(&server, &["-c", "\\d+ cat_p", "-c", "\\d+ cat_c"], None);
    assert_eq!(verbose, include_str!("golden/describe_verbose.out"));
}

/// A malformed protocol message closes that connection only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_message_closes_only_its_connection() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut raw = std::net::TcpStream::connect(server.addr).unwrap();
    raw.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    // A startup packet claiming an absurd length, then garbage.
    raw.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0, 1, 2, 3]).unwrap();
    let mut buf = [0u8; 64];
    let _ = raw.read(&mut buf);
    drop(raw);
    let client = server.connect().await;
    let row = client.query_one("SELECT 1 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
}

/// `--log-format json` writes every log event as one JSON object per line,
/// with its level, target and fields (the message among them), from start-up
/// on; a redistribution of a table logs its steps with the job's id as a
/// field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_with_log_format_json() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let port = slicedb_e2e::free_port();
    let mut child = Command::new(slicedb_e2e::slicedb_binary())
        .args(["start", "--log-format", "json", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)).is_err() {
        assert!(std::time::Instant::now() < deadline, "slicedb did not start");
        assert!(child.try_wait().unwrap().is_none(), "slicedb exited");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let c = slicedb_e2e::connect(addr).await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY);
         INSERT INTO t SELECT g FROM generate_series(1, 100) AS s(g);
         CREATE HASH MAP hm2 ON NODES (1, 2);
         REDISTRIBUTE TABLE t TO HASH MAP hm2",
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let state = c
            .query_one("SELECT state FROM slicedb.redistributions WHERE \"table\" = 't'", &[])
            .await
            .unwrap()
            .get::<_, String>(0);
        if state == "done" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the redistribution is {state}");
        tokio::task::yield_now().await;
    }
    drop(c);
    let _ = child.kill();
    let _ = child.wait();
    let mut text = String::new();
    child.stderr.take().unwrap().read_to_string(&mut text).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!events.is_empty());
    for e in &events {
        assert!(e["level"].is_string() && e["target"].is_string(), "{e}");
        assert!(e["fields"]["message"].is_string(), "{e}");
    }
    assert!(
        events.iter().any(|e| e["fields"]["job"].is_u64()),
        "a redistribution step with its job: {text}"
    );
}
