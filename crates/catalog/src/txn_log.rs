//! The transaction log: what the coordinator must not forget about commits.
//!
//! Two kinds of documents live beside the catalog's, in its RocksDB:
//!
//! ```text
//! txn/<id, 20 digits>  → CommitDecision   (a two-phase commit's record)
//! clock                → the clock ceiling (no timestamp at or above it was handed out)
//! ```
//!
//! A multi-slice-server commit *stages* its [`CommitDecision`] durably
//! while its participants prepare (parallel commits; here in the cluster
//! layout, while the embedded layout keeps its records beside the slice
//! servers' data, see `slicedb_txn::CommitLog`): the transaction is
//! committed once the record and every participant's intents are durable,
//! so the commit has one durable round on its critical path. The record
//! is deleted once every participant has made its phase two durable. A
//! coordinator that restarts decides each staged record it finds from its
//! participants (committed if every one prepared or committed it, else
//! aborted), and aborts every other prepared transaction (presumed abort).
//! Neither document changes the catalog version.

use serde::{Deserialize, Serialize};
use slicedb_common::blocking::off_executor;
use slicedb_common::{Error, NodeId, Result};

use crate::{json, Catalog};

/// A two-phase commit's record: transaction `txn`, to commit at
/// `commit_ts` on `participants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitDecision {
    pub txn: u64,
    pub commit_ts: u64,
    pub participants: Vec<NodeId>,
    /// Written while the participants prepared, so the transaction is
    /// committed only if every participant prepared. Records without it
    /// (written by earlier versions, after every participant prepared) are
    /// decided commits.
    #[serde(default)]
    pub staged: bool,
}

fn decision_key(txn: u64) -> String {
    format!("txn/{txn:020}")
}

/// The prefix of every commit record's key.
pub const DECISION_PREFIX: &[u8] = b"txn/";

impl CommitDecision {
    /// The key of transaction `txn`'s record, in order of `txn`.
    pub fn key(txn: u64) -> Vec<u8> {
        decision_key(txn).into_bytes()
    }

    /// The record as stored.
    pub fn encode(&self) -> Result<Vec<u8>> {
        json(self)
    }

    /// A record as stored.
    pub fn decode(bytes: &[u8]) -> Result<CommitDecision> {
        serde_json::from_slice(bytes).map_err(|e| Error::internal(format!("corrupt commit decision: {e}")))
    }
}

const CLOCK_KEY: &str = "clock";

fn synced() -> rocksdb::WriteOptions {
    let mut wo = rocksdb::WriteOptions::default();
    wo.set_sync(true);
    wo
}

fn io(e: rocksdb::Error) -> Error {
    Error::io(format!("transaction log: {e}"))
}

impl Catalog {
    /// Writes a commit record, durably.
    pub fn log_commit(&self, decision: &CommitDecision) -> Result<()> {
        let value = decision.encode()?;
        off_executor(|| {
            self.db
                .put_opt(decision_key(decision.txn), value, &synced())
                .map_err(io)
        })
    }

    /// Forgets a record every participant has settled, or that was
    /// aborted. Not synced: a record that comes back after a crash is
    /// decided again from the participants, harmlessly (they all committed
    /// it durably, or none did).
    pub fn forget_commit(&self, txn: u64) -> Result<()> {
        self.db.delete(decision_key(txn)).map_err(io)
    }

    /// The records not forgotten yet.
    pub fn commit_decisions(&self) -> Result<Vec<CommitDecision>> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(DECISION_PREFIX) {
            let (k, v) = item.map_err(io)?;
            if !k.starts_with(DECISION_PREFIX) {
                break;
            }
            out.push(CommitDecision::decode(&v)?);
        }
        Ok(out)
    }

    /// The clock ceiling: every timestamp handed out so far is below it.
    pub fn clock_ceiling(&self) -> Result<u64> {
        match self.db.get(CLOCK_KEY).map_err(io)? {
            Some(v) if v.len() == 8 => Ok(u64::from_be_bytes(v[..].try_into().expect("8 bytes"))),
            Some(_) => Err(Error::internal("corrupt clock ceiling")),
            None => Ok(0),
        }
    }

    /// Raises the clock ceiling, durably.
    pub fn set_clock_ceiling(&self, ceiling: u64) -> Result<()> {
        off_executor(|| self.db.put_opt(CLOCK_KEY, ceiling.to_be_bytes(), &synced()).map_err(io))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_and_the_clock_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cat = Catalog::open(dir.path()).unwrap();
            for txn in [5, 7] {
                cat.log_commit(&CommitDecision {
                    txn,
                    commit_ts: txn + 1,
                    participants: vec![1, 2],
                    staged: true,
                })
                .unwrap();
            }
            cat.forget_commit(5).unwrap();
            cat.set_clock_ceiling(1234).unwrap();
        }
        let cat = Catalog::open(dir.path()).unwrap();
        let left = cat.commit_decisions().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].txn, 7);
        assert!(left[0].staged);
        assert_eq!(cat.clock_ceiling().unwrap(), 1234);
    }

    #[test]
    fn records_of_earlier_versions_read_as_decided_commits() {
        let old: CommitDecision = serde_json::from_str(r#"{"txn":5,"commit_ts":6,"participants":[1,2]}"#).unwrap();
        assert!(!old.staged);
    }
}
