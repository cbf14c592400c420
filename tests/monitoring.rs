//! Prometheus metrics: `slicedb start --metrics-listen` serves them over
//! HTTP, and the counters move as clients work.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use slicedb_e2e::{connect, free_port, Process};

/// One scrape of `http://addr/metrics`: each sample line's value by its
/// name and labels as written (`name{a="b"}`); `None` while nothing answers.
fn scrape(addr: SocketAddr) -> Option<BTreeMap<String, f64>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect(),
    )
}

fn value(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    samples.get(name).copied().unwrap_or(0.0)
}

/// Scrapes until `ready` holds of a scrape, for at most 20 s.
fn scrape_until(addr: SocketAddr, what: &str, ready: impl Fn(&BTreeMap<String, f64>) -> bool) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(samples) = scrape(addr) {
            if ready(&samples) {
                return samples;
            }
            if Instant::now() > deadline {
                panic!("{what} never held; last scrape:\n{samples:#?}");
            }
        } else if Instant::now() > deadline {
            panic!("no metrics at {addr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let pg: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let args: Vec<String> = [
        "start",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--listen",
        &pg.to_string(),
        "--slice-servers",
        "1",
        "--quic-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        &metrics.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _server = Process::start("slicedb", &args);
    // The catalog's gauges: one node owning all 65,536 buckets of hm1.
    let before = scrape_until(metrics, "the bucket gauge", |s| {
        value(s, r#"slicedb_hash_map_buckets{map="hm1",node="1",current="true"}"#) == 65536.0
    });
    assert_eq!(value(&before, "slicedb_nodes"), 1.0);

    let client = connect(pg).await;
    client
        .batch_execute("CREATE TABLE m (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    for i in 0..20 {
        client.execute("INSERT INTO m VALUES ($1, 'x')", &[&i]).await.unwrap();
    }
    for _ in 0..5 {
        client.simple_query("SELECT count(*) FROM m").await.unwrap();
    }
    assert!(client.simple_query("SELECT * FROM missing").await.is_err());
    // A role that does not exist is refused, and counted.
    let refused = tokio_postgres::connect(
        &format!("host={} port={} user=nobody dbname=slicedb", pg.ip(), pg.port()),
        tokio_postgres::NoTls,
    )
    .await;
    assert!(refused.is_err());

    let inserts = r#"slicedb_statements_total{kind="insert",outcome="ok"}"#;
    // (The catalog's gauges are set every two seconds.)
    let after = scrape_until(metrics, "the statement counters and the table gauge", |s| {
        value(s, inserts) >= 20.0 && value(s, "slicedb_tables") == 1.0
    });
    assert!(value(&after, r#"slicedb_statements_total{kind="select",outcome="ok"}"#) >= 5.0);
    assert!(value(&after, r#"slicedb_statement_errors_total{sqlstate="42P01"}"#) >= 1.0);
    assert!(value(&after, r#"slicedb_login_failures_total{reason="no_role"}"#) >= 1.0);
    assert!(
        value(&after, r#"slicedb_commits_total{phases="one"}"#)
            >= value(&before, r#"slicedb_commits_total{phases="one"}"#) + 20.0
    );
    assert!(value(&after, "slicedb_wal_syncs_total") > value(&before, "slicedb_wal_syncs_total"));
    assert!(value(&after, "slicedb_rows_scanned_total") >= value(&before, "slicedb_rows_scanned_total") + 20.0);
    assert!(value(&after, "slicedb_connections") >= 1.0);
    assert!(value(&after, r#"slicedb_statement_duration_seconds_count{kind="insert"}"#) >= 20.0);
}

/// The rows of `sql`, each a vector of its columns as text.
async fn text_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    slicedb_e2e::query(client, sql).await
}

/// Where the heat is: slice servers count reads and writes per bucket, the
/// coordinator gathers them over QUIC, and `slicedb.bucket_load` and `SHOW
/// SLICE LOAD` point at the one hot key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_load_points_at_the_hot_key() {
    let cluster = slicedb_e2e::TestCluster::start(2, 0);
    let client = cluster.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             CREATE INDEX t_v ON t (v);",
        )
        .await
        .unwrap();
    // Writes show at once, bucket by bucket, with their bytes, on both
    // nodes; every bucket of the table has one row. (Retried with more
    // rows should the machine stall past the 10-second window.)
    let mut written = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "the writes never showed in slicedb.bucket_load"
        );
        client
            .batch_execute(&format!(
                "INSERT INTO t SELECT i, repeat('x', 200) || i FROM generate_series({}, {}) AS s(i)",
                written + 1,
                written + 2000
            ))
            .await
            .unwrap();
        written += 2000;
        let r = text_rows(
            &client,
            "SELECT count(*), count(DISTINCT node), sum(bytes), count(*) FILTER (WHERE writes_per_s > 0), \
                    count(DISTINCT node) FILTER (WHERE writes_per_s > 0), sum(write_bytes_per_s) \
             FROM slicedb.bucket_load WHERE \"table\" = 't'",
        )
        .await;
        let n = |i: usize| r[0][i].parse::<f64>().unwrap();
        assert_eq!((n(0), n(1)), (65_536.0, 2.0), "{r:?}");
        // Rows of about 200 bytes, and their index entries: RocksDB's
        // estimate, memtables included.
        assert!(n(2) > 100.0 * written as f64, "bytes: {r:?}");
        if n(3) > 1000.0 && n(4) == 2.0 && n(5) > 0.0 {
            break;
        }
    }
    // One key read over and over: its bucket is the only one read.
    let read = client.prepare("SELECT v FROM t WHERE id = $1").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (hot, slice) = loop {
        assert!(Instant::now() < deadline, "the hot key never stood out");
        for _ in 0..200 {
            assert_eq!(client.query(&read, &[&7i32]).await.unwrap().len(), 1);
        }
        let read_buckets = text_rows(
            &client,
            "SELECT bucket, node, reads_per_s FROM slicedb.bucket_load WHERE \"table\" = 't' AND reads_per_s > 0",
        )
        .await;
        assert_eq!(read_buckets.len(), 1, "{read_buckets:?}");
        let slices = text_rows(&client, "SHOW SLICE LOAD FOR t").await;
        assert_eq!(slices.len(), 2, "one slice per node: {slices:?}");
        // table, node, first, last, reads, writes, load, bytes, share,
        // hottest bucket, its share, note.
        let top = slices[0].clone();
        assert_eq!(top[9], read_buckets[0][0], "{slices:?}");
        assert_eq!(top[1], read_buckets[0][1], "{slices:?}");
        if top[11].contains("one hot key") {
            break (read_buckets[0][0].clone(), top);
        }
    };
    assert!(slice[4].parse::<f64>().unwrap() > 0.0, "{slice:?}");
    assert_eq!(slice[8], "100", "all of the node's load: {slice:?}");
    assert!(slice[11].contains(&format!("bucket {hot}")), "{slice:?}");
    let (first, last): (u16, u16) = (slice[2].parse().unwrap(), slice[3].parse().unwrap());
    let hot: u16 = hot.parse().unwrap();
    assert!(first <= hot && hot <= last, "{slice:?}");
    let e = client.simple_query("SHOW SLICE LOAD FOR nosuch").await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42P01");
}
