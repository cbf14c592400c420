//! What a slice server reports about what it holds: raw rows copied out
//! of it ([`RowChunk`]), its size per table ([`TableStats`]), the load and
//! size of each bucket ([`BucketLoad`]), a
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

/// The load and size of one bucket of one table on a slice server
/// (`slicedb_slice_server::load`): rates per second over the last 10
/// seconds and averaged over 5 minutes, and RocksDB's estimate of its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketLoad {
    pub table: TableId,
    pub bucket: u16,
    /// Rows read (a look-up that found nothing counts one).
    pub reads_per_s: f64,
    /// Rows written.
    pub writes_per_s: f64,
    pub write_bytes_per_s: f64,
    pub reads_per_s_5m: f64,
    pub writes_per_s_5m: f64,
    pub bytes: u64,
}

impl BucketLoad {
    /// The figure load balancing compares: rows read and written per
    /// second over the last 10 seconds.
    pub fn load(&self) -> f64 {
        self.reads_per_s + self.writes_per_s
    }
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
///
/// The same buckets of the table's index entry tables (`also`) move with
/// it: their entries are hash-distributed over the table's buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureSpec {
    /// The redistribution job.
    pub job: u64,
    pub table: TableId,
    /// Inclusive bucket runs and the node each moves to.
    pub moves: Vec<(u16, u16, NodeId)>,
    /// Storage ids of the table's index entry tables (last, so that a spec
    /// written before they existed decodes: [`CaptureSpec::decode`]).
    pub also: Vec<TableId>,
}

impl CaptureSpec {
    /// Is `table` the captured table or one of its index entry tables?
    pub fn covers(&self, table: TableId) -> bool {
        self.table == table || self.also.contains(&table)
    }

    /// Decodes a persisted spec, also one written before `also` existed
    /// (it ends after `moves`; nothing then moved with the table).
    ///
    /// ```
    /// use slicedb_codec::CaptureSpec;
    /// let spec = CaptureSpec { job: 7, table: 3, moves: vec![(0, 9, 2)], also: vec![5] };
    /// let bytes = postcard::to_stdvec(&spec).unwrap();
    /// assert_eq!(CaptureSpec::decode(&bytes).unwrap(), spec);
    /// let old = postcard::to_stdvec(&(7u64, 3u32, vec![(0u16, 9u16, 2u32)])).unwrap();
    /// assert_eq!(CaptureSpec::decode(&old).unwrap(), CaptureSpec { also: vec![], ..spec });
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<CaptureSpec, postcard::Error> {
        type Before = (u64, TableId, Vec<(u16, u16, NodeId)>);
        let ((job, table, moves), rest) = postcard::take_from_bytes::<Before>(bytes)?;
        let also = match rest.is_empty() {
            true => Vec::new(),
            false => postcard::from_bytes(rest)?,
        };
        Ok(CaptureSpec {
            job,
            table,
            moves,
            also,
        })
    }
}

/// One captured write: a full row image (`value` is the stored value
/// bytes) or a delete (`value` is `None`), of the row at `key` (a row key:
/// bucket and primary key, without the table id) of `table` (the moving
/// table or one of its index entry tables).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    /// Last, so that an entry written before it existed decodes:
    /// [`QueueEntry::decode`].
    pub table: TableId,
}

impl QueueEntry {
    /// Decodes a persisted entry, also one written before `table` existed
    /// (it ends after `value`; it is then of the capture's own `table`).
    ///
    /// ```
    /// use slicedb_codec::QueueEntry;
    /// let entry = QueueEntry { key: vec![1, 2], value: None, table: 9 };
    /// let bytes = postcard::to_stdvec(&entry).unwrap();
    /// assert_eq!(QueueEntry::decode(&bytes, 3).unwrap(), entry);
    /// let old = postcard::to_stdvec(&(vec![1u8, 2], None::<Vec<u8>>)).unwrap();
    /// assert_eq!(QueueEntry::decode(&old, 3).unwrap(), QueueEntry { table: 3, ..entry });
    /// ```
    pub fn decode(bytes: &[u8], table: TableId) -> Result<QueueEntry, postcard::Error> {
        type Before = (Vec<u8>, Option<Vec<u8>>);
        let ((key, value), rest) = postcard::take_from_bytes::<Before>(bytes)?;
        let table = match rest.is_empty() {
            true => table,
            false => postcard::from_bytes(rest)?,
        };
        Ok(QueueEntry { key, value, table })
    }
}
