//! Who may connect and what a role may do, through real clients:
//! tokio-postgres (SCRAM-SHA-256) and psql (SCRAM over TLS with
//! `sslmode=verify-full`), against `slicedb start` with host rules.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use slicedb_e2e::{free_port, query, run_slicedb, Process};

/// `slicedb start` with one slice server, these host rules, extra
/// arguments and environment.
fn start(dir: &Path, rules: &str, args: &[&str], env: &[(&str, &str)]) -> (Process, SocketAddr) {
    let hba = dir.join("hba.conf");
    std::fs::write(&hba, rules).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut all: Vec<String> = [
        "start",
        "--data-dir",
        dir.join("data").to_str().unwrap(),
        "--listen",
        &addr.to_string(),
        "--slice-servers",
        "1",
        "--quic-listen",
        "127.0.0.1:0",
        "--hba-file",
        hba.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.extend(args.iter().map(|s| s.to_string()));
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    (Process::start_with_env("slicedb", &all, env), addr)
}

/// Connects as `user` with `password`; the client, or the SQLSTATE of the refusal.
async fn login(addr: SocketAddr, user: &str, password: Option<&str>) -> Result<tokio_postgres::Client, String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(addr.ip().to_string())
        .port(addr.port())
        .user(user)
        .dbname("slicedb");
    if let Some(p) = password {
        config.password(p);
    }
    match config.connect(tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(client)
        }
        Err(e) => Err(e
            .code()
            .map(|c| c.code().to_string())
            .unwrap_or_else(|| format!("no code: {e}"))),
    }
}

/// The SQLSTATE of a statement that must fail.
async fn refused(client: &tokio_postgres::Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => panic!("{sql} succeeded"),
        Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_else(|| e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_roles_and_host_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start(
        dir.path(),
        "# the superuser from loopback without a password; everyone else with one\n\
         host all postgres 127.0.0.1/32 trust\n\
         host all all      127.0.0.1/32 scram-sha-256\n",
        &[],
        &[],
    );
    let admin = login(addr, "postgres", None).await.expect("postgres is trusted");
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN PASSWORD 'wonderland'; \
             CREATE USER carol WITH PASSWORD 'c4r0l'; \
             CREATE ROLE bob; \
             CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one'); \
             GRANT SELECT ON t TO alice",
        )
        .await
        .unwrap();
    assert_eq!(refused(&admin, "CREATE ROLE alice").await, "42710");
    assert_eq!(refused(&admin, "CREATE ROLE public").await, "42939");
    assert_eq!(refused(&admin, "CREATE ROLE dave CREATEDB").await, "0A000");
    assert_eq!(
        query(
            &admin,
            "SELECT rolname, rolsuper, rolcanlogin, rolpassword FROM pg_roles ORDER BY rolname"
        )
        .await,
        [
            ["alice", "f", "t", "********"],
            ["bob", "f", "f", "NULL"],
            ["carol", "f", "t", "********"],
            ["postgres", "t", "t", "NULL"],
        ]
    );

    // SCRAM-SHA-256: the right password, a wrong one, no such role, a
    // role without a password (the last two indistinguishable from a
    // wrong password).
    let alice = login(addr, "alice", Some("wonderland")).await.expect("alice logs in");
    assert_eq!(query(&alice, "SELECT v FROM t").await, [["one"]]);
    assert_eq!(query(&alice, "SHOW session_authorization").await, [["alice"]]);
    assert_eq!(query(&alice, "SHOW is_superuser").await, [["off"]]);
    assert_eq!(
        query(&alice, "SELECT current_user, session_user").await,
        [["alice", "alice"]]
    );
    let who = alice.prepare("SELECT current_user").await.unwrap();
    assert_eq!(alice.query_one(&who, &[]).await.unwrap().get::<_, String>(0), "alice");
    assert_eq!(query(&admin, "SELECT current_user").await, [["postgres"]]);
    assert!(login(addr, "carol", Some("c4r0l")).await.is_ok());
    assert_eq!(
        login(addr, "alice", Some("looking-glass")).await.err().unwrap(),
        "28P01"
    );
    assert_eq!(login(addr, "mallory", Some("guess")).await.err().unwrap(), "28P01");
    assert_eq!(login(addr, "bob", Some("guess")).await.err().unwrap(), "28P01");

    // What a role that is not a superuser may not do.
    for sql in [
        "CREATE ROLE eve",
        "DROP ROLE bob",
        "ALTER ROLE alice SUPERUSER",
        "ALTER ROLE bob PASSWORD 'x'",
        "REDISTRIBUTE ALL",
        "CREATE HASH MAP hm9",
        "ADD NODE '127.0.0.1:1'",
        "REMOVE NODE 1",
        "DRAIN NODE 1",
        "REBALANCE DRY RUN",
        "ALTER NODE 1 SET (capacity_gb = 1)",
    ] {
        assert_eq!(refused(&alice, sql).await, "42501", "{sql}");
    }
    assert_eq!(refused(&alice, "SET ROLE postgres").await, "0A000");
    // … but it may change its own password.
    alice
        .batch_execute("ALTER ROLE alice PASSWORD 'through'")
        .await
        .unwrap();
    assert_eq!(login(addr, "alice", Some("wonderland")).await.err().unwrap(), "28P01");
    assert!(login(addr, "alice", Some("through")).await.is_ok());

    // A verifier given as the password (psql's \password computes one
    // on the client and sends it) is kept, and the password it was made
    // from logs in.
    let verifier = postgres_protocol::password::scram_sha_256(b"from-the-client");
    admin
        .batch_execute(&format!("ALTER ROLE carol PASSWORD '{verifier}'"))
        .await
        .unwrap();
    assert_eq!(login(addr, "carol", Some("c4r0l")).await.err().unwrap(), "28P01");
    assert!(login(addr, "carol", Some("from-the-client")).await.is_ok());

    // NOLOGIN takes effect at the next login, even with the right password.
    admin.batch_execute("ALTER ROLE alice NOLOGIN").await.unwrap();
    assert_eq!(login(addr, "alice", Some("through")).await.err().unwrap(), "28000");
    // The bootstrap superuser keeps its attributes and cannot be dropped.
    assert_eq!(refused(&admin, "ALTER ROLE postgres NOSUPERUSER").await, "42501");
    assert_eq!(refused(&admin, "DROP ROLE postgres").await, "55006");
    admin
        .batch_execute("CREATE ROLE ops SUPERUSER LOGIN PASSWORD 'o'")
        .await
        .unwrap();
    let ops = login(addr, "ops", Some("o")).await.unwrap();
    assert_eq!(refused(&ops, "DROP ROLE postgres").await, "2BP01");
    assert_eq!(query(&ops, "SHOW is_superuser").await, [["on"]]);
    assert_eq!(refused(&admin, "DROP ROLE nobody").await, "42704");
    assert_eq!(refused(&admin, "DROP ROLE alice").await, "2BP01"); // SELECT on t
    admin
        .batch_execute("REVOKE SELECT ON t FROM alice; DROP ROLE IF EXISTS alice, nobody")
        .await
        .unwrap();
    assert_eq!(login(addr, "alice", Some("through")).await.err().unwrap(), "28P01");
    // A role the trust rule names but that does not exist.
    assert_eq!(
        query(&admin, "SELECT count(*) FROM pg_roles WHERE rolname = 'alice'").await,
        [["0"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_privileges_and_owners() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start(
        dir.path(),
        "host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        &[],
        &[],
    );
    let admin = login(addr, "postgres", None).await.unwrap();
    admin
        .batch_execute(
            "CREATE ROLE app LOGIN PASSWORD 'a'; CREATE ROLE reader LOGIN PASSWORD 'r'; \
             CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one'), (2, 'two'); \
             CREATE VIEW v AS SELECT id, v FROM t WHERE id = 1",
        )
        .await
        .unwrap();
    let app = login(addr, "app", Some("a")).await.unwrap();
    let reader = login(addr, "reader", Some("r")).await.unwrap();

    // No privilege: every way of reading or writing is refused.
    for sql in [
        "SELECT * FROM t",
        "SELECT v FROM t WHERE id = 1",
        "SELECT * FROM v",
        "SELECT count(*) FROM (SELECT id FROM t) AS s",
        "INSERT INTO t VALUES (3, 'three')",
        "UPDATE t SET v = 'x'",
        "DELETE FROM t WHERE id = 1",
        "TRUNCATE t",
        "COPY t TO STDOUT",
        "EXPLAIN SELECT * FROM t",
    ] {
        assert_eq!(refused(&reader, sql).await, "42501", "{sql}");
    }
    let err = reader.simple_query("SELECT * FROM t").await.unwrap_err();
    let message = err.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
    assert_eq!(message, "permission denied for table t");
    // In a block, a refusal fails the block as any error does.
    reader.batch_execute("BEGIN").await.unwrap();
    assert_eq!(refused(&reader, "SELECT * FROM t").await, "42501");
    assert_eq!(refused(&reader, "SELECT 1").await, "25P02");
    reader.batch_execute("ROLLBACK").await.unwrap();

    // GRANT SELECT: reads work, writes still do not.
    admin.batch_execute("GRANT SELECT ON t TO reader").await.unwrap();
    assert_eq!(query(&reader, "SELECT v FROM t WHERE id = 2").await, [["two"]]);
    let by_id = reader.prepare("SELECT v FROM t WHERE id = $1").await.unwrap();
    assert_eq!(
        reader.query_one(&by_id, &[&1i32]).await.unwrap().get::<_, String>(0),
        "one"
    );
    assert_eq!(refused(&reader, "INSERT INTO t VALUES (3, 'three')").await, "42501");
    assert_eq!(refused(&reader, "SELECT * FROM v").await, "42501");
    // A statement prepared while allowed is checked again at each execution.
    admin.batch_execute("REVOKE SELECT ON t FROM reader").await.unwrap();
    let err = reader.query_one(&by_id, &[&1i32]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42501"));
    // A view needs SELECT on itself only.
    admin.batch_execute("GRANT SELECT ON v TO reader").await.unwrap();
    assert_eq!(query(&reader, "SELECT v FROM v").await, [["one"]]);

    // PUBLIC, and ALL TABLES IN SCHEMA public.
    admin
        .batch_execute("GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO PUBLIC")
        .await
        .unwrap();
    reader.batch_execute("INSERT INTO t VALUES (3, 'three')").await.unwrap();
    reader.batch_execute("UPDATE t SET v = 'tres'").await.unwrap();
    // … but a WHERE clause reads the table, and RETURNING shows rows.
    assert_eq!(refused(&reader, "UPDATE t SET v = 'x' WHERE id = 3").await, "42501");
    assert_eq!(
        refused(&reader, "INSERT INTO t VALUES (4, 'four') RETURNING id").await,
        "42501"
    );
    admin.batch_execute("REVOKE INSERT ON t FROM PUBLIC").await.unwrap();
    assert_eq!(refused(&reader, "INSERT INTO t VALUES (5, 'five')").await, "42501");
    assert_eq!(query(&admin, "SELECT count(*) FROM t").await, [["3"]]);

    // A table belongs to its creator, who may do anything with it.
    app.batch_execute(
        "CREATE TABLE own (id int PRIMARY KEY, n int); INSERT INTO own VALUES (1, 10); \
         CREATE INDEX own_n ON own (n); ALTER TABLE own ADD COLUMN c text",
    )
    .await
    .unwrap();
    assert_eq!(query(&app, "SELECT n FROM own WHERE n = 10").await, [["10"]]);
    assert_eq!(
        query(
            &admin,
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'own'"
        )
        .await,
        [["app"]]
    );
    // Only the owner changes a definition or grants on it.
    for sql in [
        "DROP TABLE own",
        "ALTER TABLE own ADD COLUMN d int",
        "CREATE INDEX own_c ON own (c)",
        "DROP INDEX own_n",
        "GRANT SELECT ON own TO reader",
        "COMMENT ON TABLE own IS 'mine'",
    ] {
        assert_eq!(refused(&reader, sql).await, "42501", "{sql}");
    }
    assert_eq!(refused(&app, "DROP TABLE t").await, "42501");
    app.batch_execute("GRANT SELECT ON own TO reader").await.unwrap();
    assert_eq!(query(&reader, "SELECT n FROM own").await, [["10"]]);
    assert_eq!(refused(&app, "GRANT SELECT ON own TO nobody").await, "42704");
    // Giving a table away is a superuser's to do.
    assert_eq!(refused(&app, "ALTER TABLE own OWNER TO reader").await, "42501");
    admin.batch_execute("ALTER TABLE own OWNER TO reader").await.unwrap();
    // A role that owns a table, or holds a privilege on one, stays.
    assert_eq!(refused(&admin, "DROP ROLE reader").await, "2BP01");
    reader.batch_execute("DROP TABLE own").await.unwrap();
    assert_eq!(refused(&admin, "DROP ROLE reader").await, "2BP01"); // SELECT on v
    admin.batch_execute("REVOKE ALL ON v FROM reader").await.unwrap();
    admin.batch_execute("DROP ROLE reader").await.unwrap();
}

/// A cluster CA in `dir/certs` with a certificate for the PostgreSQL port
/// naming `localhost` and `127.0.0.1`, and another CA in `dir/other-ca`;
/// then `slicedb start` serving TLS with it, requiring TLS and a password
/// (role postgres's is `s3cret`).
fn tls_server(dir: &Path) -> (Process, SocketAddr, std::path::PathBuf) {
    let certs = dir.join("certs");
    let other = dir.join("other-ca");
    for d in [&certs, &other] {
        let (ok, out) = run_slicedb(&["certs", "init", "--dir", d.to_str().unwrap(), "--slice-servers", "0"]);
        assert!(ok, "{out}");
    }
    let (ok, out) = run_slicedb(&[
        "certs",
        "server",
        "--dir",
        certs.to_str().unwrap(),
        "--host",
        "localhost",
        "--host",
        "127.0.0.1",
    ]);
    assert!(ok, "{out}");
    let (server, addr) = start(
        dir,
        "hostssl all all 127.0.0.1/32 scram-sha-256\n",
        &[
            "--tls-cert",
            certs.join("postgres.crt").to_str().unwrap(),
            "--tls-key",
            certs.join("postgres.key").to_str().unwrap(),
        ],
        &[("SLICEDB_PASSWORD", "s3cret")],
    );
    (server, addr, certs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_connects_with_scram_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr, certs) = tls_server(dir.path());
    let other = dir.path().join("other-ca");
    let psql = |sslmode: &str, root: &Path, password: &str| {
        let out = Command::new("psql")
            .arg(format!(
                "host=localhost hostaddr=127.0.0.1 port={} user=postgres dbname=slicedb sslmode={sslmode} sslrootcert={}",
                addr.port(),
                root.join("ca.crt").display()
            ))
            .args(["-X", "-A", "-t", "-c", "SHOW session_authorization"])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "20")
            .output()
            .expect("psql");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // verify-full: the certificate chains to the cluster CA and names "localhost".
    let (ok, out) = psql("verify-full", &certs, "s3cret");
    assert!(ok, "{out}");
    assert_eq!(out, "postgres");
    // A wrong password over TLS.
    let (ok, out) = psql("verify-full", &certs, "guess");
    assert!(
        !ok && out.contains("password authentication failed for user \"postgres\""),
        "{out}"
    );
    // A CA the server's certificate does not chain to.
    let (ok, out) = psql("verify-full", &other, "s3cret");
    assert!(!ok && out.contains("certificate verify failed"), "{out}");
    // Without TLS the hostssl rule does not match: no rule admits it.
    let (ok, out) = psql("disable", &certs, "s3cret");
    assert!(
        !ok && out.contains("no host rule admits") && out.contains("without TLS"),
        "{out}"
    );
}

/// Runs a driver check with `localhost PORT CA_FILE PASSWORD`; it must print `expect`.
fn run_driver(mut cmd: Command, addr: SocketAddr, certs: &Path, expect: &str) {
    let out = cmd
        .arg("localhost")
        .arg(addr.port().to_string())
        .arg(certs.join("ca.crt"))
        .arg("s3cret")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (scripts/setup installs the drivers): {e}"));
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains(expect), "{cmd:?} failed:\n{text}");
}

fn driver_script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("drivers").join(name)
}

/// psycopg 3, asyncpg, node-postgres and pgjdbc log in with SCRAM-SHA-256
/// over TLS that checks the server's certificate and host name
/// (`sslmode=verify-full` or the driver's equivalent); a wrong password
/// is 28P01 in each.
#[test]
fn drivers_log_in_with_scram_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr, certs) = tls_server(dir.path());
    let mut python = Command::new("python3");
    python.arg(driver_script("secure_login.py"));
    run_driver(python, addr, &certs, "asyncpg: ok");
    let modules = std::env::var("SLICEDB_NODE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/slicedb-node")
        })
        .join("node_modules");
    let mut node = Command::new("node");
    node.env("NODE_PATH", modules).arg(driver_script("secure_login.js"));
    run_driver(node, addr, &certs, "node-postgres: ok");
    let mut java = Command::new("java");
    java.arg("-cp")
        .arg("/usr/share/java/postgresql.jar")
        .arg(driver_script("SecureLogin.java"));
    run_driver(java, addr, &certs, "jdbc: ok");
}

#[test]
fn trusting_other_hosts_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let hba = dir.path().join("hba.conf");
    std::fs::write(&hba, "host all all all trust\n").unwrap();
    let listen = format!("0.0.0.0:{}", free_port());
    let (ok, out) = run_slicedb(&[
        "start",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--listen",
        &listen,
        "--hba-file",
        hba.to_str().unwrap(),
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("refusing to listen") && out.contains("line 1"), "{out}");
    // Nothing was opened: the data directory was never made.
    assert!(!dir.path().join("data").exists());
}
