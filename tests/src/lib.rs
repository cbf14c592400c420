//! Helpers for end-to-end tests: start the real `slicedb` binary on a
//! loopback port it picks, wait until it accepts connections, connect with
//! tokio-postgres, and stop it (gracefully or with SIGKILL).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    pub name: String,
    pub args: Vec<String>,
}

impl Process {
    /// Starts `slicedb <args>` and waits (at most 60 s) until it is ready.
    pub fn start(name: &str, args: &[String]) -> Process {
        use std::io::BufRead;
        let mut child = Command::new(slicedb_binary())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn slicedb");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let label = name.to_string();
        std::thread::spawn(move || {
            // Keep draining stdout for the life of the process.
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("slicedb ready:") {
                    let _ = tx.send(());
                } else {
                    eprintln!("[{label}] {line}");
                }
            }
        });
        let mut process = Process {
            child: Some(child),
            name: name.to_string(),
            args: args.to_vec(),
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
        let again = Process::start(&self.name, &self.args);
        *self = again;
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
    let conn_str = format!("host={} port={} user=postgres dbname=slicedb", addr.ip(), addr.port());
    let (client, connection) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
        .await
        .expect("connect to slicedb");
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
