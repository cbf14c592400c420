//! Driver behaviour over the extended protocol (tokio-postgres): prepared
//! statements with bound parameters, typed results, SQLSTATEs, COPY.

use futures::TryStreamExt;
use slicedb_e2e::Server;
use tokio_postgres::error::SqlState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_with_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance double precision, active boolean)")
        .await
        .unwrap();

    let insert = client
        .prepare("INSERT INTO accounts VALUES ($1, $2, $3, $4)")
        .await
        .unwrap();
    for i in 0..50i64 {
        let n = client
            .execute(&insert, &[&i, &format!("owner-{i}"), &(i as f64 * 1.5), &(i % 2 == 0)])
            .await
            .unwrap();
        assert_eq!(n, 1);
    }

    let by_id = client
        .prepare("SELECT owner, balance, active FROM accounts WHERE id = $1")
        .await
        .unwrap();
    let row = client.query_one(&by_id, &[&7i64]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "owner-7");
    assert_eq!(row.get::<_, f64>(1), 10.5);
    assert!(!row.get::<_, bool>(2));

    let count = client
        .query_one(
            "SELECT count(*) FROM accounts WHERE active = $1 AND balance > $2",
            &[&true, &10.0f64],
        )
        .await
        .unwrap();
    assert_eq!(count.get::<_, i64>(0), 21); // even ids from 8 to 48

    let n = client
        .execute(
            "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
            &[&100.0f64, &7i64],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let row = client.query_one(&by_id, &[&7i64]).await.unwrap();
    assert_eq!(row.get::<_, f64>(1), 110.5);

    let n = client
        .execute("DELETE FROM accounts WHERE id >= $1", &[&40i64])
        .await
        .unwrap();
    assert_eq!(n, 10);

    // Errors through the extended protocol carry SQLSTATEs, and the
    // connection stays usable.
    let err = client
        .execute(&insert, &[&1i64, &"dup", &0.0f64, &true])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION));
    let err = client.prepare("SELECT * FROM missing WHERE id = $1").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE));
    let err = client.query("SELEC 1", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::SYNTAX_ERROR));
    let total = client.query_one("SELECT count(*) FROM accounts", &[]).await.unwrap();
    assert_eq!(total.get::<_, i64>(0), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_csv_in_and_text_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE c (id int PRIMARY KEY, d date, ok boolean, note text, raw bytea)")
        .await
        .unwrap();
    let sink = client
        .copy_in("COPY c (id, d, ok, note, raw) FROM STDIN WITH (FORMAT csv, HEADER true)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    use futures::SinkExt;
    sink.send(bytes::Bytes::from_static(
        b"id,d,ok,note,raw\n1,2024-03-01,true,\"multi\nline\",\\x0102\n2,,f,,\n",
    ))
    .await
    .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);

    let stream = client.copy_out("COPY c TO STDOUT").await.unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    let text: String = chunks.iter().map(|c| String::from_utf8_lossy(c).to_string()).collect();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec!["1\t2024-03-01\tt\tmulti\\nline\t\\\\x0102", "2\t\\N\tf\t\\N\t\\N"]
    );

    // A bad value fails the COPY with 22P02 and loads nothing more.
    let sink = client.copy_in("COPY c FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"3\tnot-a-date\tt\tx\t\\N\n"))
        .await
        .unwrap();
    let err = sink.finish().await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_TEXT_REPRESENTATION), "{err:?}");
    let n = client.query_one("SELECT count(*) FROM c", &[]).await.unwrap();
    assert_eq!(n.get::<_, i64>(0), 2);
}

/// psycopg 3 and asyncpg (installed by `scripts/setup`) run their checks
/// against a live server: implicit BEGIN/COMMIT, executemany, typed results,
/// SQLSTATE exceptions, COPY, prepared statements.
#[test]
fn python_drivers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("drivers/python_drivers.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(server.addr.ip().to_string())
        .arg(server.addr.port().to_string())
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python drivers failed:\n{text}");
    assert!(text.contains("psycopg 3: ok") && text.contains("asyncpg: ok"), "{text}");
}
