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

    // A statement prepared before the table was dropped and recreated
    // writes to the new table, not to the old one's id.
    let insert_new = client
        .prepare("INSERT INTO accounts (id, owner) VALUES ($1, $2)")
        .await
        .unwrap();
    client
        .batch_execute("DROP TABLE accounts; CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance double precision, active boolean)")
        .await
        .unwrap();
    client.execute(&insert_new, &[&1i64, &"fresh"]).await.unwrap();
    let row = client.query_one(&by_id, &[&1i64]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "fresh");

    // Absurd parameter numbers are refused, and the server lives on.
    let err = client.prepare("SELECT $2000000000").await.unwrap_err();
    assert!(err.code().is_some(), "{err:?}");
    assert_eq!(
        client
            .query_one("SELECT count(*) FROM accounts", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
}

/// A parameter under a cast has the cast's type, as PostgreSQL infers it:
/// drivers that encode by the described type (asyncpg, pgjdbc) then send
/// a number where the statement wants one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_parameters_take_the_cast_type() {
    use tokio_postgres::types::Type;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE cp (id bigint PRIMARY KEY, u uuid, at timestamptz)")
        .await
        .unwrap();
    for (sql, types) in [
        ("SELECT $1::int + 1", vec![Type::INT4]),
        ("SELECT CAST($1 AS bigint) * 2, $2::text", vec![Type::INT8, Type::TEXT]),
        ("SELECT id FROM cp WHERE u = $1::uuid", vec![Type::UUID]),
        (
            "UPDATE cp SET at = $1::timestamptz WHERE id = $2",
            vec![Type::TIMESTAMPTZ, Type::INT8],
        ),
        ("SELECT 1 WHERE $1::numeric > 0", vec![Type::NUMERIC]),
    ] {
        let stmt = client.prepare(sql).await.unwrap();
        assert_eq!(stmt.params(), types.as_slice(), "{sql}");
    }
    let row = client.query_one("SELECT $1::int + 1", &[&41i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
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

/// Runs a driver check program against a fresh server; it must print `expect`.
fn run_driver(mut cmd: std::process::Command, expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let out = cmd
        .arg(server.addr.ip().to_string())
        .arg(server.addr.port().to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (scripts/setup installs the drivers): {e}"));
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains(expect), "{cmd:?} failed:\n{text}");
}

fn driver_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("drivers")
        .join(name)
}

/// psycopg 3 and asyncpg: implicit BEGIN/COMMIT, executemany, typed
/// results, SQLSTATE exceptions, COPY, server-side prepared statements.
#[test]
fn python_drivers() {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(driver_script("python_drivers.py"));
    run_driver(cmd, "asyncpg: ok");
}

/// uuid and jsonb through psycopg 3 (text and binary results, its typed
/// parameters) and asyncpg (binary parameters and results): values come
/// back as `uuid.UUID` and JSON, a default `gen_random_uuid()` fills the
/// key, containment and key tests filter, a bad uuid is 22P02. The script
/// passes against PostgreSQL 15 too.
#[test]
fn uuid_and_jsonb_through_drivers() {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(driver_script("text_types.py"));
    run_driver(cmd, "uuid/jsonb: ok");
}

/// SQLAlchemy 2's ORM (psycopg 3) and Alembic, unchanged: Alembic's own
/// `upgrade head` builds a schema with a serial key, a unique column, a
/// foreign key with ON DELETE CASCADE, server defaults and an index; the
/// ORM then bulk-inserts (matching the ids RETURNING gives to its objects
/// by their order), loads relationships, updates, meets a unique and a
/// foreign-key violation, and deletes with a cascade. The script passes
/// against PostgreSQL 15 too.
#[test]
fn sqlalchemy_and_alembic() {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(driver_script("sqlalchemy_orm.py"));
    run_driver(cmd, "sqlalchemy: ok");
}

/// pgjdbc: prepared statements (server-side after the first use), numeric
/// and date binding, update counts, SQLSTATEs.
#[test]
fn jdbc_driver() {
    let mut cmd = std::process::Command::new("java");
    cmd.arg("-cp")
        .arg("/usr/share/java/postgresql.jar")
        .arg(driver_script("JdbcCheck.java"));
    run_driver(cmd, "jdbc: ok");
}

/// node-postgres: parameters, named prepared statements, timestamptz, row counts.
#[test]
fn node_postgres_driver() {
    let modules = std::env::var("SLICEDB_NODE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/slicedb-node")
        })
        .join("node_modules");
    let mut cmd = std::process::Command::new("node");
    cmd.env("NODE_PATH", modules).arg(driver_script("node_pg.js"));
    run_driver(cmd, "node-postgres: ok");
}
