//! What a transaction's reads and writes carry to a slice server: the
//! snapshot a read sees ([`ReadAt`]), the transaction a write belongs to
//! ([`TxnWrite`]), the row changes ([`RowWrite`]) and what each found
//! ([`Seen`]). The coordinator builds them; `slicedb_storage` applies them
//! (its `mvcc` module says what a snapshot sees).

use serde::{Deserialize, Serialize};
use slicedb_common::Datum;

use crate::key::RowKey;

/// A timestamp from the coordinator's clock.
pub type Timestamp = u64;
/// A transaction's id: its start timestamp, unique across the cluster.
pub type TxnId = u64;

/// A transaction's own writes that a read also sees: those of statements
/// numbered below `before_seq` (a statement does not see its own writes,
/// so `INSERT INTO t SELECT * FROM t` reads each row once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnWrites {
    pub txn: TxnId,
    pub before_seq: u32,
}

/// The snapshot a read sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadAt {
    /// Committed versions at or before this timestamp.
    pub ts: Timestamp,
    pub own: Option<OwnWrites>,
}

impl ReadAt {
    /// The newest committed data.
    pub const LATEST: ReadAt = ReadAt {
        ts: Timestamp::MAX,
        own: None,
    };

    pub fn at(ts: Timestamp) -> ReadAt {
        ReadAt { ts, own: None }
    }
}

/// What one write request of a transaction carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnWrite {
    pub txn: TxnId,
    /// The transaction's snapshot: a row committed after it cannot be
    /// written (first updater wins, SQLSTATE 40001).
    pub start_ts: Timestamp,
    /// The statement's number within the transaction.
    pub seq: u32,
    /// The transaction has sent this slice server writes before: if it
    /// does not know the transaction, a restart lost them (40001).
    pub continues: bool,
    /// How long a write waits for a row lock another transaction holds
    /// before it fails with 55P03 (the session's `lock_timeout`, in
    /// milliseconds); 0 waits as long as it takes.
    pub lock_timeout_ms: u32,
}

impl TxnWrite {
    /// The first write request of transaction `txn` (whose snapshot is its
    /// id, as the coordinator hands them out) to a slice server, in its
    /// first statement, waiting for row locks as long as it takes.
    ///
    /// ```
    /// let w = slicedb_codec::txn::TxnWrite::first(42);
    /// assert_eq!((w.start_ts, w.seq, w.continues), (42, 1, false));
    /// ```
    pub fn first(txn: TxnId) -> TxnWrite {
        TxnWrite {
            txn,
            start_ts: txn,
            seq: 1,
            continues: false,
            lock_timeout_ms: 0,
        }
    }
}

/// One row change sent to a slice server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RowWrite {
    /// Insert a new row; fails with 23505 if the key exists.
    Insert { key: RowKey, row: Vec<Datum> },
    /// Insert a new row unless the key exists (`ON CONFLICT DO NOTHING`);
    /// an existing row is left alone, unlocked, and not counted.
    InsertIfAbsent { key: RowKey, row: Vec<Datum> },
    /// Insert a row into a table without a primary key: the slice server
    /// assigns a hidden row id in `bucket`.
    InsertWithRowId { bucket: u16, row: Vec<Datum> },
    /// Write a full row image, whether or not the key exists.
    Put { key: RowKey, row: Vec<Datum> },
    /// Delete a row if present.
    Delete { key: RowKey },
    /// Take the row's lock until the transaction ends, writing nothing
    /// (a foreign key's check that the row it references exists, which
    /// keeps the row from being deleted meanwhile). Reported as not
    /// applied, with the row as the transaction sees it under the lock (its
    /// own pending image, else the latest committed version) in
    /// [`Seen::old`].
    Lock { key: RowKey },
    /// Delete a row, leaving a tombstone even when no row is there: the
    /// delete of an entry of an index that is being built, whose back-fill
    /// may still write that entry beneath later versions
    /// (`slicedb_storage`'s `backfill`), and must find that it was deleted.
    Erase { key: RowKey },
}

/// What one [`RowWrite`] found and did, reported to a writer that asked
/// (one that maintains secondary indexes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// The write changed the row (an `InsertIfAbsent` of an existing key,
    /// or a delete of a missing row, did not).
    pub applied: bool,
    /// The row as it was before the write, as the transaction saw it (its
    /// own pending image, else the latest committed version); stored rows
    /// may be shorter than the table (`pad_row`).
    pub old: Option<Vec<Datum>>,
    /// The key a hidden row id insert got.
    pub key: Option<RowKey>,
}
