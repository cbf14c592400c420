//! Failpoints: misbehave on purpose at a named point, for fault tests.
//!
//! Built on the `fail` crate. A process started with
//! `SLICEDB_FAILPOINT=<name>` aborts (as `kill -9` would stop it: no
//! shutdown code, no flush) the first time it reaches
//! [`failpoint`]`(<name>)`. `SLICEDB_FAILPOINT=<name>=<actions>` runs
//! `fail`'s actions instead, for instance `sleep(3000)` to hold a step for
//! three seconds (meant for tests only; [`failpoint_async`] sleeps on a
//! blocking thread, not on the async executor). Several failpoints are
//! separated by `;`.
//!
//! Before it acts, an armed failpoint prints `slicedb failpoint: <name>` on
//! stdout, so that a test can wait for the process to get there. Without
//! the variable a failpoint costs one lookup in `fail`'s registry. The
//! end-to-end tests use them to kill a slice server or the coordinator at
//! an exact step of a two-phase commit, and to hold a commit between
//! prepare and decision (`tests/transactions.rs`).

use std::io::Write;
use std::sync::OnceLock;

/// The armed failpoints' names, configured in `fail`'s registry on first use.
fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        let spec = std::env::var("SLICEDB_FAILPOINT").unwrap_or_default();
        let mut names = Vec::new();
        for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, actions) = item.split_once('=').unwrap_or((item, "return"));
            if let Err(e) = fail::cfg(name, actions) {
                eprintln!("slicedb: ignoring failpoint {name}={actions}: {e}");
                continue;
            }
            names.push(name.to_string());
        }
        names
    })
}

fn is_armed(name: &str) -> bool {
    armed().iter().any(|n| n == name)
}

/// Runs the actions armed at failpoint `name`, if any: by default, aborts
/// the process.
pub fn failpoint(name: &str) {
    if !is_armed(name) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "slicedb failpoint: {name}");
    let _ = out.flush();
    drop(out);
    fail::fail_point!(name, |_| {
        eprintln!("slicedb: failpoint {name} reached; aborting");
        std::process::abort();
    });
}

/// [`failpoint`] for async code: the actions run on a blocking thread, so
/// that a `sleep` holds the calling task without stalling the runtime's
/// other tasks.
pub async fn failpoint_async(name: &'static str) {
    if is_armed(name) {
        let _ = tokio::task::spawn_blocking(move || failpoint(name)).await;
    }
}
