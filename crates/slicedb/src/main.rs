//! `slicedb`: the command-line entry point.
//!
//! - `slicedb start` runs the embedded database: a coordinator and three
//!   slice servers in one process, with the PostgreSQL protocol on `--listen`.
//! - `slicedb coordinator` and `slicedb slice-server` run a cluster's
//!   processes, which talk over QUIC with mutual TLS.
//! - `slicedb certs` creates the cluster CA, node certificates, and
//!   certificates for the PostgreSQL port (`certs server`).
//! - `slicedb ping` checks that a slice server answers and who it is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use slicedb_coordinator::auto_rebalance::Watermark;
use slicedb_coordinator::auto_split::SplitSettings;
use slicedb_coordinator::Coordinator;
use slicedb_frontend::auth::hba::HostRules;
use slicedb_frontend::Handlers;
use slicedb_slice_server::SliceServer;
use slicedb_transport::quic::{QuicEndpoint, Timeouts};
use slicedb_transport::tls::CertDir;
use slicedb_transport::{SliceRequest, SliceResponse};
use tracing_subscriber::EnvFilter;

/// jemalloc, as TiKV and GreptimeDB use: glibc's allocator spent most of a
/// bulk load freeing (its arena locks and chunk consolidation were 60% of
/// the COPY profile, `docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "slicedb",
    version,
    about = "A distributed SQL database that speaks PostgreSQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log events are written on stderr: `text` for people, `json`
    /// (one object per line: timestamp, level, target, fields, spans) for
    /// a log collector.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SLICEDB_LOG_FORMAT")]
    log_format: LogFormat,
    /// Serve Prometheus metrics over HTTP at `http://<address>/metrics`
    /// (any path answers), for every subcommand that runs a server.
    #[arg(long, global = true, env = "SLICEDB_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// How the PostgreSQL port admits clients (`docs/operations.md`, "Securing a cluster").
#[derive(clap::Args)]
struct PgSecurity {
    /// Host rules in `pg_hba.conf`'s form (default: trust loopback
    /// clients, ask every other client for its password).
    #[arg(long, env = "SLICEDB_HBA_FILE")]
    hba_file: Option<PathBuf>,
    /// PEM certificate chain for TLS on the PostgreSQL port (with --tls-key).
    #[arg(long, env = "SLICEDB_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS on the PostgreSQL port (with --tls-cert).
    #[arg(long, env = "SLICEDB_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// When the coordinator rebalances and splits by itself
/// (`docs/operations.md`, "When a node is full", "When a node is hot").
#[derive(clap::Args)]
struct Elasticity {
    /// A node holding more than this percentage of its capacity (`ALTER
    /// NODE n SET (capacity_gb = …)`) starts `REBALANCE ALL`; 0 turns it off.
    #[arg(long, env = "SLICEDB_HIGH_WATERMARK_PCT", default_value_t = 85.0)]
    high_watermark_pct: f64,
    /// Seconds between two checks of the high watermark.
    #[arg(long, env = "SLICEDB_WATERMARK_CHECK_S", default_value_t = 30)]
    watermark_check_s: u64,
    /// Split hot slices by load by itself: `on` or `off` (the default: a
    /// transaction open across the cut-over of its bucket fails with 40001).
    #[arg(long, env = "SLICEDB_AUTO_SPLIT", default_value = "off", value_parser = on_off)]
    auto_split: bool,
    /// Seconds a node must stay hot before a split.
    #[arg(long, env = "SLICEDB_SPLIT_SUSTAIN_S", default_value_t = 10)]
    split_sustain_s: u64,
    /// The least seconds between two splits.
    #[arg(long, env = "SLICEDB_SPLIT_COOLDOWN_S", default_value_t = 30)]
    split_cooldown_s: u64,
}

fn on_off(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("expected on or off, not {v:?}")),
    }
}

impl Elasticity {
    fn split(&self) -> SplitSettings {
        SplitSettings {
            enabled: self.auto_split,
            sustain: std::time::Duration::from_secs(self.split_sustain_s),
            cooldown: std::time::Duration::from_secs(self.split_cooldown_s),
            ..SplitSettings::default()
        }
    }

    fn watermark(&self) -> Watermark {
        Watermark {
            high_pct: self.high_watermark_pct,
            every: std::time::Duration::from_secs(self.watermark_check_s.max(1)),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Start the embedded database: a coordinator and slice servers in one process.
    Start {
        /// Directory for the catalog, the slice servers' data and the cluster CA.
        #[arg(long, default_value = "./slicedb-data")]
        data_dir: PathBuf,
        /// Address for PostgreSQL clients.
        #[arg(long, default_value = "127.0.0.1:5433")]
        listen: SocketAddr,
        /// Number of slice servers to run in the process (used on first start only).
        #[arg(long, default_value_t = 3)]
        slice_servers: u32,
        /// UDP address of the QUIC endpoint that reaches slice servers added
        /// with ADD NODE (port 0: any).
        #[arg(long, default_value = "0.0.0.0:0")]
        quic_listen: SocketAddr,
        #[command(flatten)]
        security: PgSecurity,
        #[command(flatten)]
        elasticity: Elasticity,
    },
    /// Run a cluster's coordinator: PostgreSQL clients on --pg-listen, slice
    /// servers over QUIC.
    Coordinator {
        /// UDP address of the coordinator's QUIC endpoint.
        #[arg(long)]
        listen: SocketAddr,
        /// Address for PostgreSQL clients.
        #[arg(long)]
        pg_listen: SocketAddr,
        /// Directory for the catalog.
        #[arg(long)]
        data_dir: PathBuf,
        /// Certificate directory (default: <data-dir>/certs).
        #[arg(long)]
        certs: Option<PathBuf>,
        /// Name of this node's certificate in the certificate directory.
        #[arg(long, default_value = "coordinator")]
        cert_name: String,
        /// A slice server (host:port) to register on first start; repeat
        /// for each. Later starts use the catalog's nodes.
        #[arg(long = "slice-server")]
        slice_servers: Vec<String>,
        #[command(flatten)]
        security: PgSecurity,
        #[command(flatten)]
        elasticity: Elasticity,
    },
    /// Run a slice server: stores slices in RocksDB, serves the coordinator over QUIC.
    SliceServer {
        /// UDP address to serve QUIC on.
        #[arg(long)]
        listen: SocketAddr,
        /// Directory for the slice server's data (its RocksDB is `store/` in it).
        #[arg(long)]
        data_dir: PathBuf,
        /// Certificate directory (default: <data-dir>/certs).
        #[arg(long)]
        certs: Option<PathBuf>,
        /// Name of this node's certificate in the certificate directory.
        #[arg(long)]
        cert_name: String,
    },
    /// Create the cluster CA and node certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Connect to a slice server over QUIC and print its identity.
    Ping {
        /// The slice server's host:port.
        address: String,
        /// Certificate directory.
        #[arg(long)]
        certs: PathBuf,
        /// Certificate to present.
        #[arg(long, default_value = "coordinator")]
        cert_name: String,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a new cluster CA in --dir, with certificates for the
    /// coordinator and slice-server-1 … slice-server-N.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        slice_servers: u32,
        /// If the directory already holds a CA, keep it and issue only the
        /// certificates that are missing (for container start-up).
        #[arg(long)]
        if_missing: bool,
    },
    /// Issue a certificate for the PostgreSQL port from the CA in --dir,
    /// naming the host names and addresses clients connect to (what
    /// `sslmode=verify-full` checks); clients trust `ca.crt`.
    Server {
        #[arg(long)]
        dir: PathBuf,
        /// File name of the certificate and key (`<name>.crt`, `<name>.key`).
        #[arg(long, default_value = "postgres")]
        name: String,
        /// A host name or IP address clients use; repeat for each.
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
    },
    /// Issue more node certificates from the CA in --dir.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// Certificate names, e.g. slice-server-4.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

type BoxError = Box<dyn std::error::Error>;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    // SQL planning recurses over deep syntax trees and plans (and debug
    // builds keep large futures on the stack): 8 MiB per worker thread
    // rather than tokio's 2.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("slicedb: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slicedb: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` sends).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}

/// Tells whoever started the process that it is ready (tests and scripts
/// read this line on stdout).
fn announce(what: &str) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "slicedb ready: {what}");
    let _ = out.flush();
}

/// Loads `name`'s identity from `dir`.
fn endpoint(dir: &Path, name: &str, listen: SocketAddr) -> Result<Arc<QuicEndpoint>, BoxError> {
    let identity = CertDir::new(dir).identity(name)?;
    Ok(Arc::new(QuicEndpoint::bind(listen, &identity, Timeouts::default())?))
}

/// The PostgreSQL port's host rules and TLS acceptor, read and checked
/// before anything is opened: an insecure set-up stops the start at once.
struct PgAccess {
    rules: HostRules,
    tls: Option<slicedb_frontend::tls::TlsAcceptor>,
}

impl PgSecurity {
    fn load(&self, listen: SocketAddr) -> Result<PgAccess, BoxError> {
        let rules = match &self.hba_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                HostRules::parse(&text)?
            }
            None => HostRules::default(),
        };
        rules.check_listen(listen)?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(slicedb_frontend::tls::acceptor(cert, key)?),
            _ => None,
        };
        Ok(PgAccess { rules, tls })
    }
}

/// Serves PostgreSQL clients on `listen`, admitting them by `access`.
async fn serve_pg(
    coordinator: Arc<Coordinator>,
    listen: SocketAddr,
    access: PgAccess,
    elasticity: &Elasticity,
) -> Result<(), BoxError> {
    coordinator.report_catalog_gauges();
    slicedb_coordinator::auto_rebalance::spawn(&coordinator, elasticity.watermark());
    slicedb_coordinator::auto_split::spawn(&coordinator, elasticity.split());
    if let Ok(password) = std::env::var("SLICEDB_PASSWORD") {
        if coordinator.set_initial_password(&password)? {
            tracing::info!("the postgres role's password is set from SLICEDB_PASSWORD");
        }
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let tls = access.tls.is_some();
    tracing::info!(
        tls,
        "slicedb is ready: psql -h {} -p {} -U postgres",
        addr.ip(),
        addr.port()
    );
    announce(&format!("postgres on {addr}"));
    let handlers = Arc::new(Handlers::new(coordinator, access.rules));
    tokio::select! {
        r = slicedb_frontend::serve(listener, handlers, access.tls) => r?,
        _ = shutdown_signal() => {},
    }
    Ok(())
}

/// Installs the Prometheus exporter with its HTTP listener on `listen`.
fn serve_metrics(listen: SocketAddr) -> Result<(), BoxError> {
    // Seconds: statement latencies from 100 µs, WAL syncs, up to 10 s.
    const BUCKETS: [f64; 15] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
    ];
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets(&BUCKETS)?
        .install()
        .map_err(|e| format!("cannot serve metrics on {listen}: {e}"))?;
    tracing::info!(%listen, "metrics at http://{listen}/metrics");
    Ok(())
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    if let Some(listen) = cli.metrics_listen {
        serve_metrics(listen)?;
    }
    match cli.command {
        Command::Start {
            data_dir,
            listen,
            slice_servers,
            quic_listen,
            security,
            elasticity,
        } => {
            if slice_servers == 0 {
                return Err("--slice-servers must be at least 1".into());
            }
            let access = security.load(listen)?;
            // The embedded database is its own cluster: it makes its CA on
            // first start, so that slice servers on other hosts can be
            // given certificates (`slicedb certs issue --dir <data-dir>/certs …`)
            // and joined with ADD NODE.
            let certs = CertDir::new(data_dir.join("certs"));
            if !certs.has_ca() {
                certs.init_ca()?;
            }
            if !certs.has("coordinator") {
                certs.issue("coordinator")?;
            }
            let endpoint = endpoint(&certs.dir, "coordinator", quic_listen)?;
            let coordinator = Arc::new(Coordinator::open_embedded(&data_dir, slice_servers, Some(endpoint))?);
            serve_pg(coordinator, listen, access, &elasticity).await
        }
        Command::Coordinator {
            listen,
            pg_listen,
            data_dir,
            certs,
            cert_name,
            slice_servers,
            security,
            elasticity,
        } => {
            let access = security.load(pg_listen)?;
            let certs = certs.unwrap_or_else(|| data_dir.join("certs"));
            let endpoint = endpoint(&certs, &cert_name, listen)?;
            tracing::info!(quic = %endpoint.local_addr()?, "coordinator endpoint bound");
            let coordinator = Arc::new(Coordinator::open_cluster(&data_dir, endpoint.clone(), &slice_servers).await?);
            let r = serve_pg(coordinator, pg_listen, access, &elasticity).await;
            endpoint.close();
            r
        }
        Command::SliceServer {
            listen,
            data_dir,
            certs,
            cert_name,
        } => {
            let certs = certs.unwrap_or_else(|| data_dir.join("certs"));
            let endpoint = endpoint(&certs, &cert_name, listen)?;
            let server = Arc::new(SliceServer::open(&data_dir.join("store"))?);
            let addr = endpoint.local_addr()?;
            match server.identity() {
                Some((node, _)) => tracing::info!(%addr, node, "slice server {node} is ready"),
                None => tracing::info!(%addr, "slice server is ready; waiting for ADD NODE"),
            }
            announce(&format!("slice server on {addr}"));
            tokio::select! {
                _ = endpoint.serve(server) => {},
                _ = shutdown_signal() => {},
            }
            endpoint.close();
            Ok(())
        }
        Command::Certs { command } => match command {
            CertsCommand::Init {
                dir,
                slice_servers,
                if_missing,
            } => {
                let certs = CertDir::new(&dir);
                if !(if_missing && certs.has_ca()) {
                    certs.init_ca()?;
                }
                let names = std::iter::once("coordinator".to_string())
                    .chain((1..=slice_servers).map(|i| format!("slice-server-{i}")));
                for name in names {
                    if !(if_missing && certs.has(&name)) {
                        certs.issue(&name)?;
                    }
                }
                println!(
                    "created a cluster CA and certificates for coordinator and slice-server-1..{slice_servers} in {}",
                    dir.display()
                );
                Ok(())
            }
            CertsCommand::Server { dir, name, hosts } => {
                CertDir::new(&dir).issue_server(&name, &hosts)?;
                println!(
                    "issued {name}.crt for {} in {} (clients trust ca.crt)",
                    hosts.join(", "),
                    dir.display()
                );
                Ok(())
            }
            CertsCommand::Issue { dir, names } => {
                let certs = CertDir::new(&dir);
                for name in &names {
                    certs.issue(name)?;
                }
                println!("issued {} in {}", names.join(", "), dir.display());
                Ok(())
            }
        },
        Command::Ping {
            address,
            certs,
            cert_name,
        } => {
            let endpoint = endpoint(&certs, &cert_name, "0.0.0.0:0".parse()?)?;
            let conn = endpoint.connect(&address).await?;
            let pong = endpoint.call_on(&conn, SliceRequest::Ping).await?;
            match pong {
                SliceResponse::Pong {
                    node_id,
                    cluster_id,
                    version,
                    protocol,
                } => {
                    match (node_id, cluster_id) {
                        (Some(n), Some(c)) => println!("{address}: node {n} of cluster {c:016x}"),
                        _ => println!("{address}: not registered with a cluster"),
                    }
                    println!("slicedb {version}, protocol {protocol}");
                }
                other => return Err(format!("unexpected answer: {other:?}").into()),
            }
            conn.close(0u32.into(), b"done");
            endpoint.close();
            Ok(())
        }
    }
}
