//! End-to-end tests of schema changes that rewrite a table: `ALTER COLUMN
//! … TYPE` loses no row that writers add while it runs, keeps the table's
//! unique index, and a coordinator killed in the middle leaves the table as
//! it was.

use std::time::{Duration, Instant};

use slicedb_e2e::{connect, eventually, query as rows, TestCluster};

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("{e}"))
}

/// The type of column `n` of table `t`, and the count and sum of its values
/// read as bigints.
async fn n_type_count_sum(pg: std::net::SocketAddr) -> Vec<Vec<String>> {
    let mut out = eventually(
        pg,
        "SELECT data_type FROM information_schema.columns WHERE table_name = 't' AND column_name = 'n'",
    )
    .await;
    out.extend(eventually(pg, "SELECT count(*), sum(n::bigint) FROM t").await);
    out
}

/// Two slice servers; a table with a unique column and a text column of
/// numbers. First the coordinator is killed after the rewrite committed
/// and before the catalog switched to it: the table keeps its type and
/// rows. Then a rewrite is held (a failpoint) while a session inserts: the
/// inserts wait and then land in the rewritten table (or fail with 40001,
/// and are retried), so every row is there with the new type, and the
/// unique index still refuses a duplicate and answers a lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_type_change_loses_no_row_and_a_crash_leaves_the_old_table() {
    let mut cluster = TestCluster::start(2, 0);
    cluster
        .client()
        .await
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, email text UNIQUE, n text);
             INSERT INTO t SELECT g, 'e' || g || '@x', (g * 3)::text FROM generate_series(1, 2000) AS s(g)",
        )
        .await
        .unwrap();
    let pg = cluster.pg;
    let alter = "ALTER TABLE t ALTER COLUMN n TYPE bigint USING n::bigint";
    let before = vec![
        vec!["text".to_string()],
        vec!["2000".to_string(), "6003000".to_string()],
    ];
    assert_eq!(n_type_count_sum(pg).await, before);

    cluster
        .coordinator
        .restart_with_failpoint(Some("alter-type-before-switch"));
    eventually(pg, "SELECT 1").await;
    let e = connect(pg).await.batch_execute(alter).await;
    assert!(e.is_err(), "the coordinator died in the middle of the ALTER");
    assert!(cluster.coordinator.wait_exit(Duration::from_secs(10)));
    cluster.coordinator.restart_with_failpoint(None);
    assert_eq!(n_type_count_sum(pg).await, before, "the table is as it was");

    cluster
        .coordinator
        .restart_with_failpoint(Some("alter-type-rewrite=sleep(4000)"));
    eventually(pg, "SELECT 1").await;
    let alterer = connect(pg).await;
    let altering = tokio::spawn(async move { alterer.batch_execute(alter).await });
    assert!(cluster
        .coordinator
        .wait_for_output("slicedb failpoint: alter-type-rewrite", Duration::from_secs(30)));
    let writer = connect(pg).await;
    let writing = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut retried = 0;
        for id in 3001..3051 {
            loop {
                assert!(Instant::now() < deadline, "the inserts did not finish");
                let sql = format!("INSERT INTO t VALUES ({id}, 'w{id}@x', '{id}')");
                match writer.batch_execute(&sql).await {
                    Ok(()) => break,
                    Err(e) if sqlstate(&e) == "40001" => retried += 1,
                    Err(e) => panic!("insert {id}: {e:?}"),
                }
            }
        }
        retried
    });
    altering.await.unwrap().unwrap();
    let retried = writing.await.unwrap();
    assert!(retried <= 50, "{retried} retries");
    let written: i64 = (3001..3051).sum();
    assert_eq!(
        n_type_count_sum(pg).await,
        vec![
            vec!["bigint".to_string()],
            vec!["2050".to_string(), (6_003_000 + written).to_string()],
        ]
    );
    let c = connect(pg).await;
    let typed = rows(&c, "SELECT pg_typeof(n)::text, n + 1 FROM t WHERE id = 7").await;
    assert_eq!(typed, vec![vec!["bigint".to_string(), "22".to_string()]]);
    let found = rows(&c, "SELECT id FROM t WHERE email = 'w3010@x'").await;
    assert_eq!(found, vec![vec!["3010".to_string()]]);
    let e = c
        .batch_execute("INSERT INTO t VALUES (9999, 'e5@x', 1)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505", "{e:?}");
}
