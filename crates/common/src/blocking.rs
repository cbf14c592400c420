//! Blocking work (a RocksDB fsync, a wait for a lock held across one)
//! called from async code.
//!
//! [`off_executor`] runs it in place, but first tells a multi-threaded
//! tokio runtime, which hands this worker's other tasks to another thread
//! for the duration (`tokio::task::block_in_place`): the caller waits, the
//! runtime does not. Outside a runtime, on a blocking thread, or on a
//! single-threaded runtime (unit tests), it simply runs `f`.
//!
//! ```
//! let n = slicedb_common::blocking::off_executor(|| 40 + 2);
//! assert_eq!(n, 42);
//! ```

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which may block on disk I/O, without stalling the other tasks
/// of a multi-threaded runtime.
pub fn off_executor<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
