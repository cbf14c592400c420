//! Write queues: how a source slice server captures the writes of a moving
//! table (SPEC §4, steps 2 and 4; seed 001).
//!
//! When a redistribution starts, the coordinator tells each source slice
//! server which buckets of the table move and to which target node (a
//! [`CaptureSpec`]). From then on, every commit that the source applies to a
//! moving bucket is also appended to the write queue of that bucket's target
//! **in the same RocksDB write batch** ([`crate::SliceStore::commit`]): the
//! local commit and its queue entry are durable together or not at all.
//!
//! A [`QueueEntry`] is the row's new stored version (a tombstone for a
//! delete; entries written before transactions may carry `None` for a
//! delete), keyed by its row key and naming its table: the moving table,
//! or one of its index entry tables, whose same buckets move with it
//! ([`CaptureSpec::also`]). One queue per target carries both, in commit
//! order. Applying entries in queue order on the target is idempotent:
//! applying one twice, or applying an entry for a row the snapshot copy
//! already carried, leaves the same result.
//!
//! Everything lives in the source's RocksDB under the metadata table (id 0):
//!
//! ```text
//! [0u32]"capture/"[job u64 BE]                         → postcard(CaptureSpec)
//! [0u32]"queue/"[job u64 BE][target u32 BE][seq u64 BE] → postcard(QueueEntry)
//! [0u32]"qseq"                                         → next sequence number
//! ```
//!
//! so one (job, target) queue is one contiguous, ordered key range: shipping
//! reads it forward, trimming range-deletes its applied prefix, and ending
//! the job range-deletes all its queues at once.

use serde::Serialize;
use slicedb_common::{Error, NodeId, Result, TableId};

use crate::key::table_prefix;
use crate::key::META_TABLE;
pub use slicedb_codec::slice::{CaptureSpec, QueueEntry};

/// A capture in force: a [`CaptureSpec`] expanded to a bucket → target table.
pub(crate) struct Capture {
    pub spec: CaptureSpec,
    target_of: Vec<NodeId>,
}

impl Capture {
    pub fn new(spec: CaptureSpec) -> Capture {
        let mut target_of = vec![0; 1 << 16];
        for (start, end, node) in &spec.moves {
            target_of[*start as usize..=*end as usize].fill(*node);
        }
        Capture { spec, target_of }
    }

    /// The target of a storage key of the captured table or of one of its
    /// index entry tables, if its bucket moves.
    pub fn target(&self, table: TableId, storage_key: &[u8]) -> Option<NodeId> {
        if !self.spec.covers(table) || storage_key.len() < 6 {
            return None;
        }
        let bucket = u16::from_be_bytes([storage_key[4], storage_key[5]]);
        match self.target_of[bucket as usize] {
            0 => None,
            n => Some(n),
        }
    }
}

fn meta_key(suffix: &[u8]) -> Vec<u8> {
    let mut k = table_prefix(META_TABLE).to_vec();
    k.extend_from_slice(suffix);
    k
}

/// Key of the next queue sequence number.
pub(crate) fn seq_key() -> Vec<u8> {
    meta_key(b"qseq")
}

/// Prefix of every capture spec.
pub(crate) fn capture_prefix() -> Vec<u8> {
    meta_key(b"capture/")
}

pub(crate) fn capture_key(job: u64) -> Vec<u8> {
    let mut k = capture_prefix();
    k.extend_from_slice(&job.to_be_bytes());
    k
}

/// Prefix of every queue entry.
pub(crate) fn queues_prefix() -> Vec<u8> {
    meta_key(b"queue/")
}

/// The first key of job `job`'s queues.
pub(crate) fn job_queues_start(job: u64) -> Vec<u8> {
    let mut k = queues_prefix();
    k.extend_from_slice(&job.to_be_bytes());
    k
}

/// The first key after job `job`'s queues.
pub(crate) fn job_queues_end(job: u64) -> Vec<u8> {
    match job.checked_add(1) {
        Some(next) => job_queues_start(next),
        None => meta_key(b"queue0"),
    }
}

/// The key of entry `seq` of the queue of `job` towards `target`.
pub(crate) fn queue_key(job: u64, target: NodeId, seq: u64) -> Vec<u8> {
    let mut k = job_queues_start(job);
    k.extend_from_slice(&target.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number of a queue key.
pub(crate) fn seq_of(queue_key: &[u8]) -> Result<u64> {
    let tail = queue_key
        .len()
        .checked_sub(8)
        .map(|at| &queue_key[at..])
        .ok_or_else(|| Error::internal("corrupt write queue key"))?;
    Ok(u64::from_be_bytes(tail.try_into().expect("8 bytes")))
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(v).map_err(|e| Error::internal(format!("write queue encoding: {e}")))
}

/// Decodes a persisted capture spec (see [`CaptureSpec::decode`]).
pub(crate) fn decode_spec(bytes: &[u8]) -> Result<CaptureSpec> {
    CaptureSpec::decode(bytes).map_err(|e| Error::internal(format!("corrupt capture spec: {e}")))
}

/// Decodes a persisted queue entry; one written before entries named
/// their table is of `table` (see [`QueueEntry::decode`]).
pub(crate) fn decode_entry(bytes: &[u8], table: TableId) -> Result<QueueEntry> {
    QueueEntry::decode(bytes, table).map_err(|e| Error::internal(format!("corrupt write queue entry: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_order_by_job_target_then_sequence() {
        let keys = [
            queue_key(1, 2, 0),
            queue_key(1, 2, 1),
            queue_key(1, 2, 256),
            queue_key(1, 3, 0),
            queue_key(2, 1, 0),
        ];
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert!(job_queues_start(1) <= keys[0] && keys[3] < job_queues_end(1));
        assert_eq!(seq_of(&keys[2]).unwrap(), 256);
        assert!(capture_key(1) < capture_key(2) && capture_key(1).starts_with(&capture_prefix()));
    }

    #[test]
    fn capture_targets_only_its_tables_and_moving_buckets() {
        let c = Capture::new(CaptureSpec {
            job: 1,
            table: 7,
            moves: vec![(10, 20, 4)],
            also: vec![9],
        });
        let key = |table: TableId, bucket: u16| {
            let mut k = table.to_be_bytes().to_vec();
            k.extend_from_slice(&bucket.to_be_bytes());
            k.push(1);
            k
        };
        assert_eq!(c.target(7, &key(7, 10)), Some(4));
        assert_eq!(c.target(7, &key(7, 20)), Some(4));
        assert_eq!(c.target(7, &key(7, 21)), None);
        assert_eq!(c.target(8, &key(8, 15)), None);
        // An index entry table of 7 moves the same buckets.
        assert_eq!(c.target(9, &key(9, 15)), Some(4));
        assert_eq!(c.target(9, &key(9, 21)), None);
    }
}
