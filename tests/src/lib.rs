//! Helpers for end-to-end tests: start the real `slicedb` binary on a
//! loopback port it picks, wait until it accepts connections, connect with
//! tokio-postgres, and stop it (gracefully or with SIGKILL).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub mod postgres;

/// The `slicedb` binary built by the same `cargo test` / `cargo nextest` run.
pub fn slicedb_binary() -> PathBuf {
    if let Ok(p) = std::env::var("SLICEDB_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> → target/<profile>/slicedb
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target profile directory");
    let bin = profile_dir.join("slicedb");
    assert!(
        bin.exists(),
        "{} not built; run the tests with `cargo nextest run --workspace`",
        bin.display()
    );
    bin
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running `slicedb start` process.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts `slicedb start` with its data in `data_dir` on a free port.
    pub fn start(data_dir: &Path) -> Server {
        let port = free_port();
        Self::start_on(data_dir, port)
    }

    pub fn start_on(data_dir: &Path, port: u16) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let child = Command::new(slicedb_binary())
            .arg("start")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(addr.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn slicedb");
        let mut server = Server {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("slicedb exited during start-up: {status}");
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("slicedb did not accept connections on {} within 60s", self.addr);
    }

    /// The connection string for tokio-postgres.
    pub fn conn_str(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=slicedb",
            self.addr.ip(),
            self.addr.port()
        )
    }

    /// Connects and drives the connection in the background.
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(self.addr).await
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A `slicedb` process of a cluster (`slicedb coordinator …`,
/// `slicedb slice-server …`), started with the given arguments. It is ready
/// once it prints its `slicedb ready:` line; it is killed when dropped.
pub struct Process {
    child: Option<Child>,
    /// Every line it printed on stdout, for [`Process::wait_for_output`].
    output: Arc<(Mutex<Vec<String>>, Condvar)>,
    pub name: String,
    pub args: Vec<String>,
    /// Extra environment, kept for [`Process::restart`] (say, `SLICEDB_FAILPOINT`).
    pub env: Vec<(String, String)>,
}

impl Process {
    /// Starts `slicedb <args>` and waits (at most 60 s) until it is ready.
    pub fn start(name: &str, args: &[String]) -> Process {
        Process::start_with_env(name, args, Vec::new())
    }

    /// [`Process::start`] with extra environment variables.
    pub fn start_with_env(name: &str, args: &[String], env: Vec<(String, String)>) -> Process {
        use std::io::BufRead;
        let mut child = Command::new(slicedb_binary())
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("SLICEDB_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn slicedb");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let label = name.to_string();
        let output: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let seen = output.clone();
        std::thread::spawn(move || {
            // Keep draining stdout for the life of the process.
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("slicedb ready:") {
                    let _ = tx.send(());
                } else {
                    eprintln!("[{label}] {line}");
                }
                let (lines, cv) = &*seen;
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                cv.notify_all();
            }
        });
        let mut process = Process {
            child: Some(child),
            output,
            name: name.to_string(),
            args: args.to_vec(),
            env,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                return process;
            }
            if let Some(Ok(Some(status))) = process.child.as_mut().map(|c| c.try_wait()) {
                panic!("{name} exited during start-up: {status}");
            }
            if Instant::now() > deadline {
                panic!("{name} was not ready within 60s");
            }
        }
    }

    /// Starts the same command again (after [`Process::kill9`]).
    pub fn restart(&mut self) {
        let again = Process::start_with_env(&self.name, &self.args, self.env.clone());
        *self = again;
    }

    /// Kills the process and starts it again with failpoint `name` armed
    /// (`None`: disarmed).
    pub fn restart_with_failpoint(&mut self, name: Option<&str>) {
        self.kill9();
        self.env.retain(|(k, _)| k != "SLICEDB_FAILPOINT");
        if let Some(name) = name {
            self.env.push(("SLICEDB_FAILPOINT".into(), name.into()));
        }
        self.restart();
    }

    /// Waits (at most `limit`) until the process has printed a line
    /// containing `needle` on stdout; returns whether it did.
    pub fn wait_for_output(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let (lines, cv) = &*self.output;
        let mut seen = lines.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if seen.iter().any(|l| l.contains(needle)) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            seen = cv
                .wait_timeout(seen, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits (at most `limit`) until the process has exited on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(_))) | None => return true,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        false
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A free loopback UDP port (bound and released), for QUIC endpoints.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("addr")
        .port()
}

/// Connects to a PostgreSQL endpoint and drives the connection in the background.
pub async fn connect(addr: SocketAddr) -> tokio_postgres::Client {
    connect_to(addr, "slicedb").await
}

/// Connects to database `database` of a PostgreSQL endpoint.
pub async fn connect_to(addr: SocketAddr, database: &str) -> tokio_postgres::Client {
    let conn_str = format!(
        "host={} port={} user=postgres dbname={database}",
        addr.ip(),
        addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Runs `slicedb <args>` to completion and returns (success, stdout + stderr).
pub fn run_slicedb(args: &[&str]) -> (bool, String) {
    let out = Command::new(slicedb_binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run slicedb");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The rows of a simple-protocol result, as text (`NULL` for nulls).
pub fn rows(messages: Vec<tokio_postgres::SimpleQueryMessage>) -> Vec<Vec<String>> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).unwrap_or("NULL").to_string()).collect())
            }
            _ => None,
        })
        .collect()
}

/// Runs `sql` over the simple protocol and returns its rows; panics on error.
pub async fn query(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    rows(client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")))
}

/// A cluster of real processes: a coordinator with `slice_servers` slice
/// servers on hm1, plus `spares` more slice servers started but not yet
/// added (for `ADD NODE`). Everything is killed when it is dropped.
pub struct TestCluster {
    _dir: tempfile::TempDir,
    pub pg: SocketAddr,
    pub coordinator: Process,
    /// Index `i` is the slice server started as `slice-server-{i+1}`; the
    /// spares come last.
    pub slices: Vec<Process>,
    /// The QUIC addresses of the spares.
    pub spares: Vec<String>,
}

impl TestCluster {
    pub fn start(slice_servers: usize, spares: usize) -> TestCluster {
        TestCluster::start_with_env(slice_servers, spares, Vec::new())
    }

    /// As [`TestCluster::start`], with `coordinator_env` in the
    /// coordinator's environment.
    pub fn start_with_env(slice_servers: usize, spares: usize, coordinator_env: Vec<(String, String)>) -> TestCluster {
        let total = slice_servers + spares;
        let dir = tempfile::tempdir().unwrap();
        let path = |p: &str| dir.path().join(p).display().to_string();
        let (ok, out) = run_slicedb(&[
            "certs",
            "init",
            "--dir",
            &path("certs"),
            "--slice-servers",
            &total.to_string(),
        ]);
        assert!(ok, "{out}");
        let addrs: Vec<String> = (0..total).map(|_| format!("127.0.0.1:{}", free_udp_port())).collect();
        let slices: Vec<Process> = (1..=total)
            .map(|i| {
                let name = format!("slice-server-{i}");
                let args: Vec<String> = [
                    "slice-server",
                    "--listen",
                    &addrs[i - 1],
                    "--data-dir",
                    &path(&name),
                    "--certs",
                    &path("certs"),
                    "--cert-name",
                    &name,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                Process::start(&name, &args)
            })
            .collect();
        let pg: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut args: Vec<String> = [
            "coordinator",
            "--listen",
            &format!("127.0.0.1:{}", free_udp_port()),
            "--pg-listen",
            &pg.to_string(),
            "--data-dir",
            &path("coordinator"),
            "--certs",
            &path("certs"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for a in &addrs[..slice_servers] {
            args.push("--slice-server".into());
            args.push(a.clone());
        }
        let coordinator = Process::start_with_env("coordinator", &args, coordinator_env);
        TestCluster {
            _dir: dir,
            pg,
            coordinator,
            slices,
            spares: addrs[slice_servers..].to_vec(),
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(self.pg).await
    }
}

/// The arguments of PostgreSQL's client programs (psql, pgbench, pg_dump)
/// that connect them to `addr` as user `postgres`.
pub fn client_args(addr: SocketAddr) -> [String; 6] {
    [
        "-h".to_string(),
        addr.ip().to_string(),
        "-p".to_string(),
        addr.port().to_string(),
        "-U".to_string(),
        "postgres".to_string(),
    ]
}

/// Runs `pgbench <args> slicedb` against `addr` (blocking) with extra
/// environment `env` (say, `PGOPTIONS`); panics unless it succeeds, and
/// returns what it printed on stdout.
pub fn pgbench(addr: SocketAddr, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = Command::new("pgbench")
        .envs(env.iter().copied())
        .args(client_args(addr))
        .args(args)
        .arg("slicedb")
        .output()
        .expect("run pgbench");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "pgbench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `sql` until it succeeds (at most 30 s), on a new connection each
/// time: across a restart, a statement may fail while a slice server or the
/// coordinator comes back. Returns its rows.
pub async fn eventually(pg: SocketAddr, sql: &str) -> Vec<Vec<String>> {
    rows(retrying(pg, sql).await)
}

/// [`eventually`] for a statement that returns no rows: the number of rows
/// it affected (its command tag's count).
pub async fn eventually_affected(pg: SocketAddr, sql: &str) -> u64 {
    let messages = retrying(pg, sql).await;
    let counts: Vec<u64> = messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(counts.len(), 1, "{sql}: one statement, one command tag");
    counts[0]
}

async fn retrying(pg: SocketAddr, sql: &str) -> Vec<tokio_postgres::SimpleQueryMessage> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            let (client, connection) = tokio_postgres::connect(
                &format!("host={} port={} user=postgres dbname=slicedb", pg.ip(), pg.port()),
                tokio_postgres::NoTls,
            )
            .await?;
            tokio::spawn(connection);
            client.simple_query(sql).await
        };
        match attempt.await {
            Ok(messages) => return messages,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{sql}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
}
