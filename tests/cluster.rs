//! End-to-end test of cluster mode: a coordinator and slice servers as
//! separate processes over QUIC, online expansion with `ADD NODE`, queries
//! across the old and the current hash map, a slice server killed and
//! restarted, and a peer from another CA refused.
//!
//! The processes are started with the `command:` lines of
//! `docker/compose.yaml`, with container addresses and volumes replaced by
//! loopback ports and temporary directories, so the compose file stays right.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use slicedb_e2e::{connect, free_port, free_udp_port, query, rows, run_slicedb, Process};
use tokio_postgres::Client;

/// Each service's `command:` of `docker/compose.yaml`, by service name.
fn compose_commands() -> BTreeMap<String, Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/compose.yaml");
    let text = std::fs::read_to_string(&path).expect("docker/compose.yaml");
    let mut service = None;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        // A service is a key indented by two spaces under `services:`.
        if line.starts_with("  ") && !line.starts_with("   ") && line.trim_end().ends_with(':') {
            service = Some(line.trim().trim_end_matches(':').to_string());
        }
        if let (Some(s), Some(cmd)) = (&service, line.trim().strip_prefix("command: ")) {
            let args: Vec<String> = serde_json::from_str(cmd).expect("command: is a one-line JSON array");
            out.insert(s.clone(), args);
        }
    }
    out
}

/// Replaces whole arguments (container addresses and volumes) of the compose file.
fn localize(args: &[String], replace: &[(String, String)]) -> Vec<String> {
    args.iter()
        .map(|a| {
            replace
                .iter()
                .find(|(from, _)| from == a)
                .map(|(_, to)| to.clone())
                .unwrap_or_else(|| a.clone())
        })
        .collect()
}

/// The slice server an EXPLAIN says a point query reads.
async fn owner_of(client: &Client, table: &str, id: i64) -> u32 {
    let plan = query(client, &format!("EXPLAIN SELECT * FROM {table} WHERE id = {id}"))
        .await
        .into_iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    let at = plan.find("slice_servers=[").expect("EXPLAIN names slice servers") + "slice_servers=[".len();
    plan[at..].split(':').next().unwrap().trim().parse().expect("node id")
}

async fn insert_rows(client: &Client, table: &str, ids: impl Iterator<Item = i64>, value: impl Fn(i64) -> String) {
    let ids: Vec<i64> = ids.collect();
    for chunk in ids.chunks(500) {
        let values: Vec<String> = chunk.iter().map(|i| format!("({i}, {})", value(*i))).collect();
        client
            .batch_execute(&format!("INSERT INTO {table} VALUES {}", values.join(", ")))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_expands_online_and_survives_a_lost_slice_server() {
    let dir = tempfile::tempdir().unwrap();
    let commands = compose_commands();
    let certs = dir.path().join("certs");
    let pg: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let quic_ports: Vec<u16> = (0..5).map(|_| free_udp_port()).collect();
    let slice_addr = |i: usize| format!("127.0.0.1:{}", quic_ports[i]);

    // 0. The certificates, as the compose file's one-shot service makes them.
    let certs_cmd = localize(&commands["certs"], &[("/certs".into(), certs.display().to_string())]);
    let args: Vec<&str> = certs_cmd.iter().map(String::as_str).collect();
    let (ok, out) = run_slicedb(&args);
    assert!(ok, "{out}");

    let common = |i: usize, service: &str| -> Vec<(String, String)> {
        let mut r = vec![
            ("/certs".to_string(), certs.display().to_string()),
            ("/data".to_string(), dir.path().join(service).display().to_string()),
            ("0.0.0.0:7100".to_string(), slice_addr(i)),
            ("0.0.0.0:7000".to_string(), format!("127.0.0.1:{}", quic_ports[0])),
            ("0.0.0.0:5432".to_string(), pg.to_string()),
        ];
        for n in 1..=4 {
            r.push((format!("slice-server-{n}:7100"), slice_addr(n)));
        }
        r
    };
    // 1. Three slice servers and the spare, then the coordinator.
    let mut slices: Vec<Process> = (1..=4)
        .map(|i| {
            let service = format!("slice-server-{i}");
            Process::start(&service, &localize(&commands[&service], &common(i, &service)))
        })
        .collect();
    let coordinator_args = localize(&commands["coordinator"], &common(0, "coordinator"));
    let _coordinator = Process::start("coordinator", &coordinator_args);
    let client = connect(pg).await;

    let nodes = query(&client, "SHOW NODES").await;
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(nodes.iter().all(|n| n[2] == "up"), "{nodes:?}");

    // 2. An old table on hm1 over three nodes.
    client
        .batch_execute("CREATE TABLE old_t (id bigint PRIMARY KEY, grp integer NOT NULL, v text)")
        .await
        .unwrap();
    const OLD: i64 = 3000;
    insert_rows(&client, "old_t", 1..=OLD, |i| format!("{}, 'v{i}'", i % 7)).await;

    // 3. ADD NODE the spare: a new current map over four nodes.
    client
        .batch_execute(&format!("ADD NODE '{}'", slice_addr(4)))
        .await
        .unwrap();
    let maps = query(&client, "SHOW HASH MAPS").await;
    assert_eq!(maps.len(), 2, "{maps:?}");
    let current: Vec<&Vec<String>> = maps.iter().filter(|m| m[3] == "t").collect();
    assert_eq!(current.len(), 1, "{maps:?}");
    assert_eq!(current[0][1], "1,2,3,4", "the new map spans all four nodes: {maps:?}");
    let old_map = maps.iter().find(|m| m[3] == "f").unwrap();
    assert_eq!(old_map[1], "1,2,3");
    assert_eq!(old_map[4], "1", "old_t stays bound to the old map");

    // 4. A new table spreads over four nodes; the old one stays on three.
    client
        .batch_execute("CREATE TABLE new_t (id bigint PRIMARY KEY, w bigint NOT NULL)")
        .await
        .unwrap();
    const NEW: i64 = 4000;
    insert_rows(&client, "new_t", (1..=NEW).map(|i| i * 2), |i| format!("{}", i * 10)).await;
    let spread = |slices: Vec<Vec<String>>| -> BTreeMap<String, i64> {
        slices
            .into_iter()
            .map(|r| (r[2].clone(), r[4].parse().unwrap()))
            .collect()
    };
    let new_spread = spread(query(&client, "SHOW SLICES FOR new_t").await);
    assert_eq!(new_spread.len(), 4, "{new_spread:?}");
    assert!(new_spread.values().all(|r| *r > NEW / 8), "{new_spread:?}");
    let old_spread = spread(query(&client, "SHOW SLICES FOR old_t").await);
    assert_eq!(old_spread.keys().cloned().collect::<Vec<_>>(), vec!["1", "2", "3"]);
    assert_eq!(old_spread.values().sum::<i64>(), OLD);
    // Old tables stay writable after the expansion.
    client
        .batch_execute("INSERT INTO old_t VALUES (100001, 1, 'after'); UPDATE old_t SET v = 'u' WHERE id = 5")
        .await
        .unwrap();

    // 5. Joins across the two maps give the result computed here.
    let join = query(
        &client,
        "SELECT count(*), sum(n.w), sum(o.grp) FROM old_t o JOIN new_t n ON o.id = n.id",
    )
    .await;
    let matched: Vec<i64> = (1..=OLD).filter(|i| i % 2 == 0 && *i <= 2 * NEW).collect();
    let expected = vec![
        matched.len().to_string(),
        matched.iter().map(|i| i * 10).sum::<i64>().to_string(),
        matched.iter().map(|i| i % 7).sum::<i64>().to_string(),
    ];
    assert_eq!(join, vec![expected]);
    let by_group = query(
        &client,
        "SELECT o.grp, count(*) FROM old_t o JOIN new_t n ON o.id = n.id GROUP BY o.grp ORDER BY o.grp",
    )
    .await;
    let mut groups = BTreeMap::new();
    for i in &matched {
        *groups.entry(i % 7).or_insert(0i64) += 1;
    }
    let expected: Vec<Vec<String>> = groups.iter().map(|(g, c)| vec![g.to_string(), c.to_string()]).collect();
    assert_eq!(by_group, expected);

    // The join across maps runs on the coordinator (the old table's rows
    // are redistributed at query time); a join of two tables on the same map
    // on their distribution keys runs on each slice server, and so does a
    // partial aggregate. EXPLAIN shows the difference.
    let explain = |sql: String| {
        let client = &client;
        async move {
            query(client, &format!("EXPLAIN {sql}"))
                .await
                .into_iter()
                .map(|r| r.join(" "))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let cross = explain("SELECT count(*) FROM old_t o JOIN new_t n ON o.id = n.id".into()).await;
    assert!(!cross.contains("SliceFragmentExec"), "{cross}");
    client
        .batch_execute("CREATE TABLE new_u (id bigint PRIMARY KEY, z integer NOT NULL)")
        .await
        .unwrap();
    insert_rows(&client, "new_u", (1..=NEW).map(|i| i * 3), |i| format!("{}", i % 5)).await;
    let colocated_sql = "SELECT count(*), sum(n.w), sum(u.z) FROM new_t n JOIN new_u u ON n.id = u.id";
    let colocated = explain(colocated_sql.into()).await;
    assert!(
        colocated.contains("SliceFragmentExec: runs on slice_servers=[1, 2, 3, 4]")
            && colocated.contains("HashJoinExec: mode=CollectLeft")
            && colocated.contains("mode=Partial"),
        "{colocated}"
    );
    let both: Vec<i64> = (1..=NEW).map(|i| i * 6).filter(|i| *i <= 2 * NEW).collect();
    assert_eq!(
        query(&client, colocated_sql).await,
        vec![vec![
            both.len().to_string(),
            both.iter().map(|i| i * 10).sum::<i64>().to_string(),
            both.iter().map(|i| i % 5).sum::<i64>().to_string(),
        ]]
    );
    let grouped = explain("SELECT grp, count(*) FROM old_t GROUP BY grp".into()).await;
    assert!(
        grouped.contains("SliceFragmentExec: runs on slice_servers=[1, 2, 3]"),
        "{grouped}"
    );
    let counts = query(
        &client,
        "SELECT grp, count(*), sum(id) FROM old_t GROUP BY grp ORDER BY grp",
    )
    .await;
    let expected: Vec<Vec<String>> = (0..7)
        .map(|g| {
            // 100001 was inserted above with grp = 1.
            let ids: Vec<i64> = (1..=OLD)
                .filter(|i| i % 7 == g)
                .chain((g == 1).then_some(100_001))
                .collect();
            vec![
                g.to_string(),
                ids.len().to_string(),
                ids.iter().sum::<i64>().to_string(),
            ]
        })
        .collect();
    assert_eq!(counts, expected);

    // REMOVE NODE is refused while tables' maps place buckets on the node.
    let e = client.batch_execute("REMOVE NODE 4").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("2BP01"), "{e}");

    // 6. kill -9 slice server 2: what needs it fails with class 08 naming
    //    it; everything else goes on.
    let mut on_node: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for id in 1..=60 {
        on_node
            .entry(owner_of(&client, "old_t", id).await)
            .or_default()
            .push(id);
    }
    assert_eq!(on_node.len(), 3, "{on_node:?}");
    slices[1].kill9();
    for id in on_node[&2].iter().take(2) {
        let e = client
            .simple_query(&format!("SELECT * FROM old_t WHERE id = {id}"))
            .await
            .unwrap_err();
        let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
        assert!(code.starts_with("08"), "expected a connection error, got {code}: {e}");
        let text = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
        assert!(text.contains("slice server 2"), "{text}");
    }
    let e = client.simple_query("SELECT count(*) FROM old_t").await.unwrap_err();
    assert!(e.code().is_some_and(|c| c.code().starts_with("08")), "{e}");
    // Reads and writes of buckets on other nodes still work.
    let mut acknowledged = Vec::new();
    for id in on_node[&1].iter().chain(&on_node[&3]).take(10) {
        let got = query(&client, &format!("SELECT v FROM old_t WHERE id = {id}")).await;
        assert_eq!(got.len(), 1, "row {id} is readable");
        let new_id = 200_000 + id;
        if owner_of(&client, "old_t", new_id).await != 2 {
            client
                .batch_execute(&format!(
                    "INSERT INTO old_t VALUES ({new_id}, 0, 'while node 2 was down')"
                ))
                .await
                .unwrap();
            acknowledged.push(new_id);
        }
    }
    assert!(!acknowledged.is_empty());

    // 7. Restart it on its data directory: every acknowledged row is back.
    slices[1].restart();
    let expected_count = (OLD + 1 + acknowledged.len() as i64).to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let count = loop {
        match client.simple_query("SELECT count(*) FROM old_t").await {
            Ok(m) => break rows(m),
            // The first statement after the restart may still meet the
            // connection to the dead process.
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.code().is_some_and(|c| c.code().starts_with("08")), "{e}");
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            Err(e) => panic!("slice server 2 did not come back: {e}"),
        }
    };
    assert_eq!(count, vec![vec![expected_count]]);
    let sums = query(&client, "SELECT sum(grp), count(*) FILTER (WHERE v = 'u') FROM old_t").await;
    let grp_sum: i64 = (1..=OLD).map(|i| i % 7).sum::<i64>() + 1;
    assert_eq!(sums, vec![vec![grp_sum.to_string(), "1".to_string()]]);

    // 8. A QUIC client with a certificate from another CA is refused;
    //    one with the cluster's is answered.
    let other = dir.path().join("other-ca");
    let (ok, out) = run_slicedb(&[
        "certs",
        "init",
        "--dir",
        other.to_str().unwrap(),
        "--slice-servers",
        "0",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = run_slicedb(&["ping", &slice_addr(1), "--certs", other.to_str().unwrap()]);
    assert!(!ok, "a foreign certificate must be refused, got: {out}");
    // Trusting the cluster CA but presenting a foreign certificate: the
    // slice server itself refuses.
    let mixed = dir.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(certs.join("ca.crt"), mixed.join("ca.crt")).unwrap();
    for f in ["coordinator.crt", "coordinator.key"] {
        std::fs::copy(other.join(f), mixed.join(f)).unwrap();
    }
    let (ok, out) = run_slicedb(&["ping", &slice_addr(1), "--certs", mixed.to_str().unwrap()]);
    assert!(!ok, "a client certificate from another CA must be refused, got: {out}");
    let (ok, out) = run_slicedb(&["ping", &slice_addr(1), "--certs", certs.to_str().unwrap()]);
    assert!(ok && out.contains("node 1 of cluster"), "{out}");
}
