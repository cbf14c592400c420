//! A throwaway PostgreSQL 15 beside slicedb, for tests that compare the
//! two: `initdb` into a temporary directory, started on a free loopback
//! port with trust authentication, stopped and removed when dropped. As
//! root (CI), the server runs as the `postgres` user, which initdb needs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A running PostgreSQL server of its own temporary directory.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub addr: SocketAddr,
    as_postgres: bool,
}

/// The directory of PostgreSQL 15's programs.
pub fn postgres_bin() -> PathBuf {
    let debian = PathBuf::from("/usr/lib/postgresql/15/bin");
    if debian.join("initdb").exists() {
        return debian;
    }
    let out = Command::new("pg_config").arg("--bindir").output();
    match out {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        _ => panic!("PostgreSQL 15's programs (initdb, pg_ctl, pg_dump, psql) are needed: scripts/setup installs them"),
    }
}

impl Postgres {
    /// Initializes and starts a server; panics if it cannot.
    pub fn start() -> Postgres {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("temporary directory");
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown postgres {}", dir.path().display());
        }
        let port = crate::free_port();
        let pg = Postgres {
            bin,
            addr: format!("127.0.0.1:{port}").parse().expect("addr"),
            dir,
            as_postgres,
        };
        let data = pg.data_dir();
        pg.run_checked(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let options = format!("-p {port} -c listen_addresses=127.0.0.1 -k {data} -c fsync=off -c timezone=UTC");
        let log = format!("{data}/log");
        pg.run_checked(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "-t", "60", "start"],
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect_timeout(&pg.addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not listen on {}", pg.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        pg
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("pg").display().to_string()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run_checked(&self, program: &str, args: &[impl AsRef<std::ffi::OsStr> + std::fmt::Debug]) -> Output {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `pg_dump` of database `postgres` in the plain format.
    pub fn dump(&self) -> String {
        let out = self.run_checked("pg_dump", &self.dump_args(&["postgres"]));
        String::from_utf8(out.stdout).expect("a dump in UTF-8")
    }

    /// `pg_dump -Fc` of database `postgres` (pg_restore's custom format).
    pub fn dump_custom(&self) -> Vec<u8> {
        self.run_checked("pg_dump", &self.dump_args(&["-Fc", "postgres"]))
            .stdout
    }

    fn dump_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = crate::client_args(self.addr).to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    }

    /// Connects to database `postgres` and drives the connection in the background.
    pub async fn connect(&self) -> tokio_postgres::Client {
        crate::connect_to(self.addr, "postgres").await
    }
}

/// Runs the SQL file `file` with PostgreSQL 15's `psql` against `addr`,
/// stopping at the first error; returns what psql printed (stdout and
/// stderr), or that text as the error.
pub fn psql_file(addr: SocketAddr, database: &str, file: &Path) -> Result<String, String> {
    let out = Command::new(postgres_bin().join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(crate::client_args(addr))
        .args(["-d", database, "-f"])
        .arg(file)
        .output()
        .expect("run psql");
    finished(out)
}

/// Restores the custom-format dump `file` with PostgreSQL 15's
/// `pg_restore` into database `database` at `addr`, stopping at the first
/// error; returns what it printed, or that text as the error.
pub fn pg_restore_file(addr: SocketAddr, database: &str, file: &Path) -> Result<String, String> {
    let out = Command::new(postgres_bin().join("pg_restore"))
        .arg("--exit-on-error")
        .args(crate::client_args(addr))
        .args(["-d", database])
        .arg(file)
        .output()
        .expect("run pg_restore");
    finished(out)
}

fn finished(out: Output) -> Result<String, String> {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}
