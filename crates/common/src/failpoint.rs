//! Failpoints: crash on purpose at a named point, for fault tests.
//!
//! A process started with `SLICEDB_FAILPOINT=<name>` aborts (as `kill -9`
//! would stop it: no shutdown code, no flush) the first time it reaches
//! [`failpoint`]`(<name>)`. Without the variable a failpoint costs one
//! lookup of a cached environment value. The end-to-end tests use them to
//! kill a slice server or the coordinator at an exact step of a two-phase
//! commit (`tests/transactions.rs`).

use std::sync::OnceLock;

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var("SLICEDB_FAILPOINT").ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// Aborts the process if the failpoint `name` is armed.
pub fn failpoint(name: &str) {
    if armed() == Some(name) {
        eprintln!("slicedb: failpoint {name} reached; aborting");
        std::process::abort();
    }
}
