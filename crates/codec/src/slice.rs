//! What a slice server reports about what it holds: raw rows copied out
//! of it ([`RowChunk`]), its size per table ([`TableStats`]), a
//! transaction's standing there ([`TxnStatus`]), and the capture of a
//! moving table's writes into write queues ([`CaptureSpec`], [`QueueEntry`];
//! `slicedb_storage::write_queue` says how they are kept).

use serde::{Deserialize, Serialize};
use slicedb_common::{NodeId, TableId};

/// Rows of a table copied raw from a slice server: row keys (without the
/// table id) and stored values, in key order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RowChunk {
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
    /// The last row key read, to continue after; `None` when the ranges are exhausted.
    pub next: Option<Vec<u8>>,
}

/// Rows and bytes a slice server holds for one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    pub rows: u64,
    pub bytes: u64,
}

/// How a transaction stands on a slice server (`SliceStore::txn_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnStatus {
    /// Writing; not prepared (it never will be once the coordinator
    /// aborts it).
    Pending,
    /// Prepared: its intents are durable, waiting for a decision.
    Prepared,
    /// Committed here after it prepared.
    Committed,
    /// Aborted here after it prepared.
    Aborted,
    /// Not known: never prepared here (its pending writes, if any, were
    /// lost or aborted), or committed in one phase.
    Unknown,
}

/// Which buckets of a table move, and where: what a source captures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureSpec {
    /// The redistribution job.
    pub job: u64,
    pub table: TableId,
    /// Inclusive bucket runs and the node each moves to.
    pub moves: Vec<(u16, u16, NodeId)>,
}

/// One captured write: a full row image (`value` is the stored value
/// bytes) or a delete (`value` is `None`), of the row at `key` (a row key:
/// bucket and primary key, without the table id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}
