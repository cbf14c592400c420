//! [`CommitLog`]: where the coordinator stages its two-phase commit records.
//!
//! A record ([`CommitDecision`]) is staged durably while the participants
//! prepare, forgotten once every participant has settled, and read back by
//! recovery (`docs/transactions.md`). It lives in one of two places:
//!
//! - [`CommitLog::Catalog`]: the catalog's RocksDB (`slicedb_catalog::txn_log`),
//!   the coordinator's own disk. The cluster layout uses it: the slice
//!   servers' logs are on other hosts. Staging costs an fsync of the
//!   catalog's log, beside the participants' own.
//! - [`CommitLog::Shared`]: the RocksDB that the embedded layout's slice
//!   servers share (`slicedb_storage::SliceDb`, family `records`). The
//!   record is written without an fsync and waits for that RocksDB's WAL
//!   syncer, like the participants' prepares written at the same moment:
//!   one sync usually makes the record and every prepare durable together,
//!   and no blocking thread is involved.
//!
//! Either way the protocol is the same: a record is durable before the
//! commit is acknowledged, and recovery decides it from the participants.
//! Opening the shared log moves into it the records that an earlier
//! version left in the catalog, so that none is forgotten.

use std::sync::Arc;

use slicedb_catalog::txn_log::DECISION_PREFIX;
use slicedb_catalog::{Catalog, CommitDecision};
use slicedb_common::{Error, Result};
use slicedb_storage::SliceDb;

/// Where commit records are staged (see the module documentation).
#[derive(Clone)]
pub enum CommitLog {
    /// In the catalog's RocksDB.
    Catalog(Arc<Catalog>),
    /// In the RocksDB of the slice servers of this process.
    Shared(Arc<SliceDb>),
}

impl CommitLog {
    /// The log in `db`, after moving into it the records left in `catalog`.
    pub fn shared(db: Arc<SliceDb>, catalog: &Catalog) -> Result<CommitLog> {
        for d in catalog.commit_decisions()? {
            // Durable here before it goes there: a crash in between leaves
            // it in both, and the next start moves it again.
            db.put_record_now(&CommitDecision::key(d.txn), &d.encode()?)?;
            catalog.forget_commit(d.txn)?;
            tracing::info!(
                txn = d.txn,
                "moved the commit record of transaction {} from the catalog",
                d.txn
            );
        }
        Ok(CommitLog::Shared(db))
    }

    /// Stages `d` durably.
    pub async fn stage(&self, d: &CommitDecision) -> Result<()> {
        match self {
            CommitLog::Catalog(catalog) => {
                let (catalog, record) = (catalog.clone(), d.clone());
                tokio::task::spawn_blocking(move || catalog.log_commit(&record))
                    .await
                    .map_err(|e| Error::internal(format!("commit record task failed: {e}")))?
            }
            CommitLog::Shared(db) => db.put_record(&CommitDecision::key(d.txn), &d.encode()?).await,
        }
    }

    /// Forgets the record of `txn` (not synced: a record that comes back
    /// after a crash is decided again, harmlessly).
    pub fn forget(&self, txn: u64) -> Result<()> {
        match self {
            CommitLog::Catalog(catalog) => catalog.forget_commit(txn),
            CommitLog::Shared(db) => db.delete_record(&CommitDecision::key(txn)),
        }
    }

    /// The records not forgotten yet, in transaction order.
    pub fn decisions(&self) -> Result<Vec<CommitDecision>> {
        match self {
            CommitLog::Catalog(catalog) => catalog.commit_decisions(),
            CommitLog::Shared(db) => db
                .records(DECISION_PREFIX)?
                .iter()
                .map(|(_, v)| CommitDecision::decode(v))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(txn: u64) -> CommitDecision {
        CommitDecision {
            txn,
            commit_ts: txn + 1,
            participants: vec![1, 2],
            staged: true,
        }
    }

    /// Records staged in the shared log survive a reopen until forgotten,
    /// and records an earlier version left in the catalog move into it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_records_survive_reopen_and_the_catalogs_move_in() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("catalog")).unwrap();
        catalog.log_commit(&record(3)).unwrap();
        {
            let db = SliceDb::open(&dir.path().join("slices"), &[], true).unwrap();
            let log = CommitLog::shared(db.clone(), &catalog).unwrap();
            assert!(
                catalog.commit_decisions().unwrap().is_empty(),
                "moved out of the catalog"
            );
            let syncs = db.wal_syncs();
            log.stage(&record(5)).await.unwrap();
            assert!(db.wal_syncs() > syncs, "staging waits for a sync");
            log.stage(&record(7)).await.unwrap();
            log.forget(5).unwrap();
        }
        let db = SliceDb::open(&dir.path().join("slices"), &[], true).unwrap();
        let log = CommitLog::shared(db, &catalog).unwrap();
        let txns: Vec<u64> = log.decisions().unwrap().iter().map(|d| d.txn).collect();
        assert_eq!(txns, vec![3, 7]);
        assert_eq!(log.decisions().unwrap()[1], record(7));
    }
}
