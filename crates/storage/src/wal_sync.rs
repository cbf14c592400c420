//! Group commit: one thread per slice store syncs the write-ahead log for
//! every commit waiting on it.
//!
//! A commit (or a prepare) writes its batch *without* an fsync, which
//! costs a memtable insert and a `write` into the page cache, so it can run
//! on the async task that received the request. It then asks for the WAL
//! to be durable up to the batch's sequence number and waits
//! ([`WalSyncer::synced`]). The syncer thread loops: it reads RocksDB's
//! latest sequence number, syncs the WAL once (`FlushWAL(true)`), and
//! publishes that number as durable, waking every commit at or below it.
//! Commits that arrive while a sync is under way are covered by the next
//! one, so under N concurrent writers a sync serves many commits, as
//! PostgreSQL's WAL flush does; and no thread is handed a commit and back
//! just to sit in `fdatasync`.
//!
//! Why this is safe although the batch is readable before it is durable:
//! - the commit's caller acknowledges nothing before [`WalSyncer::synced`]
//!   returns, and the coordinator takes no snapshot at or after a commit's
//!   timestamp until that commit has answered;
//! - a later write that read the batch (it waited for the row's lock) is
//!   later in the same log, so its own sync covers this batch: the two are
//!   durable together, or lost together with neither acknowledged.
//!
//! A failed sync leaves the log's state unknown (PostgreSQL stops on one):
//! every waiting and later commit of the store then fails, and a slice
//! server restart is needed.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rocksdb::DB;
use slicedb_common::{Error, Result};
use tokio::sync::watch;

/// Durable progress as the syncer publishes it.
#[derive(Debug, Clone, Default)]
struct Durable {
    /// Every WAL record with a sequence number up to this one is synced.
    upto: u64,
    /// Why syncing stopped, if it did.
    failed: Option<String>,
}

#[derive(Debug, Default)]
struct Wanted {
    /// The highest sequence number a waiter asked for.
    upto: u64,
    stop: bool,
}

struct Shared {
    wanted: Mutex<Wanted>,
    work: Condvar,
}

/// The syncer of one RocksDB instance (see the module documentation).
pub(crate) struct WalSyncer {
    shared: Arc<Shared>,
    durable: watch::Receiver<Durable>,
    thread: Option<JoinHandle<()>>,
}

impl WalSyncer {
    /// Starts the syncer thread of `db`; `name` names the thread.
    pub fn start(db: Arc<DB>, name: &str) -> Result<WalSyncer> {
        let shared = Arc::new(Shared {
            wanted: Mutex::new(Wanted::default()),
            work: Condvar::new(),
        });
        let (publish, durable) = watch::channel(Durable::default());
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || sync_loop(&db, &shared, &publish))
                .map_err(|e| Error::io(format!("starting the WAL syncer: {e}")))?
        };
        Ok(WalSyncer {
            shared,
            durable,
            thread: Some(thread),
        })
    }

    /// Waits until every WAL record up to sequence number `seq` is synced.
    pub async fn synced(&self, seq: u64) -> Result<()> {
        {
            let state = self.durable.borrow();
            if let Some(e) = &state.failed {
                return Err(sync_failed(e));
            }
            if state.upto >= seq {
                return Ok(());
            }
        }
        {
            let mut wanted = self
                .shared
                .wanted
                .lock()
                .map_err(|_| Error::internal("the WAL syncer's state is poisoned"))?;
            if wanted.upto < seq {
                wanted.upto = seq;
                self.shared.work.notify_one();
            }
        }
        let mut durable = self.durable.clone();
        let state = durable
            .wait_for(|d| d.upto >= seq || d.failed.is_some())
            .await
            .map_err(|_| Error::internal("the WAL syncer stopped"))?;
        match &state.failed {
            Some(e) => Err(sync_failed(e)),
            None => Ok(()),
        }
    }

    /// Syncs made so far have failed: the store's durability is unknown.
    pub fn failure(&self) -> Option<Error> {
        self.durable.borrow().failed.as_deref().map(sync_failed)
    }
}

impl Drop for WalSyncer {
    fn drop(&mut self) {
        if let Ok(mut wanted) = self.shared.wanted.lock() {
            wanted.stop = true;
        }
        self.shared.work.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sync_failed(e: &str) -> Error {
    Error::io(format!(
        "syncing the write-ahead log failed ({e}); this slice server acknowledges no more commits until it restarts"
    ))
}

/// The syncer thread: syncs while anyone waits for a record not yet synced.
fn sync_loop(db: &DB, shared: &Shared, publish: &watch::Sender<Durable>) {
    let mut synced = 0u64;
    loop {
        {
            let Ok(mut wanted) = shared.wanted.lock() else {
                return;
            };
            while wanted.upto <= synced && !wanted.stop {
                wanted = match shared.work.wait(wanted) {
                    Ok(w) => w,
                    Err(_) => return,
                };
            }
            if wanted.upto <= synced {
                return;
            }
        }
        // Read before syncing: every batch numbered up to here has been
        // appended to the log (RocksDB publishes a sequence number after
        // the batch's log record is written), so this sync covers it.
        let upto = db.latest_sequence_number();
        let started = std::time::Instant::now();
        match db.flush_wal(true) {
            Ok(()) => {
                metrics::counter!("slicedb_wal_syncs_total").increment(1);
                metrics::histogram!("slicedb_wal_sync_seconds").record(started.elapsed().as_secs_f64());
                synced = upto.max(synced);
                publish.send_modify(|d| d.upto = synced);
            }
            Err(e) => {
                tracing::error!("syncing the write-ahead log failed: {e}");
                publish.send_modify(|d| d.failed = Some(e.to_string()));
                return;
            }
        }
    }
}
