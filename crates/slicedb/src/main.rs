//! `slicedb`: the command-line entry point.
//!
//! `slicedb start` runs the embedded database: a coordinator and three slice
//! servers in one process, with the PostgreSQL protocol on `--listen`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use slicedb_coordinator::Coordinator;
use slicedb_frontend::Handlers;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "slicedb",
    version,
    about = "A distributed SQL database that speaks PostgreSQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the embedded database: a coordinator and slice servers in one process.
    Start {
        /// Directory for the catalog and the slice servers' data.
        #[arg(long, default_value = "./slicedb-data")]
        data_dir: PathBuf,
        /// Address for PostgreSQL clients.
        #[arg(long, default_value = "127.0.0.1:5433")]
        listen: SocketAddr,
        /// Number of slice servers to run in the process (used on first start only).
        #[arg(long, default_value_t = 3)]
        slice_servers: u32,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Start {
            data_dir,
            listen,
            slice_servers,
        } => {
            if slice_servers == 0 {
                return Err("--slice-servers must be at least 1".into());
            }
            let coordinator = Arc::new(Coordinator::open_embedded(&data_dir, slice_servers)?);
            let listener = tokio::net::TcpListener::bind(listen).await?;
            let addr = listener.local_addr()?;
            tracing::info!(data_dir = %data_dir.display(), "slicedb is ready: psql -h {} -p {}", addr.ip(), addr.port());
            let handlers = Arc::new(Handlers::new(coordinator));
            tokio::select! {
                r = slicedb_frontend::serve(listener, handlers) => r?,
                _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
            }
            Ok(())
        }
    }
}
