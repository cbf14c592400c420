//! MVCC: row versions, and what a snapshot sees.
//!
//! Every committed write is a *version* of its row, stamped with its
//! transaction's commit timestamp in the value's version slot (see
//! [`crate::row`]). A slice server keeps three column families beside the
//! rows:
//!
//! ```text
//! default  [table][bucket][pk]                      → newest version (a tombstone for a delete)
//! history  [table][bucket][pk][!version u64 BE]     → [superseded at u64 BE][older version]
//! intents  [txn u64 BE]                             → start timestamp (a prepared transaction)
//!          [txn u64 BE][table][bucket][pk]          → [0 delete | 1 put][value]
//! gc       [ts u64 BE][kind u8][key]                → ()   (what becomes garbage once no snapshot is older than ts)
//! default  [0u32]"aborted"[txn u64 BE]              → ()   (a prepared transaction aborted here)
//! default  [0u32]"committed"[txn u64 BE]            → ()   (a prepared transaction committed here)
//! ```
//!
//! The newest version stays at the row's own key, so a scan of the latest
//! data, a bucket copy and a bucket delete work on one contiguous key range
//! as before. A commit moves the version it replaces to `history`, keyed by
//! row key and inverted version: a seek to `key ++ !ts` lands on the newest
//! version at or before `ts`.
//!
//! A read at snapshot `ts` ([`ReadAt`]) sees, for each row:
//! 1. its transaction's own pending writes of earlier statements, if any;
//! 2. else the newest version if its version is ≤ `ts`;
//! 3. else the newest history version ≤ `ts`;
//!
//! and a tombstone or no version at all means no row. Reads never look at
//! other transactions' intents: the coordinator hands out a snapshot only
//! once every commit with a smaller timestamp is applied, and a transaction
//! that has not received its commit timestamp yet will get a larger one.
//!
//! **Garbage collection.** A history version superseded at `s`, and a
//! tombstone written at `s`, are needed only by snapshots older than `s`.
//! Each commit records them in `gc` under `s`; [`crate::SliceStore::gc`]
//! deletes what lies at or below the coordinator's horizon, the oldest
//! snapshot still in use.

use slicedb_common::{Error, Result};

pub use slicedb_codec::txn::{OwnWrites, ReadAt, Timestamp, TxnId, TxnWrite};

pub const HISTORY_CF: &str = "history";
pub const INTENTS_CF: &str = "intents";
pub const GC_CF: &str = "gc";

/// The `history` key of the version `version` of the row at `key`.
pub fn history_key(key: &[u8], version: Timestamp) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 8);
    k.extend_from_slice(key);
    k.extend_from_slice(&(!version).to_be_bytes());
    k
}

/// Is `hk` a history key of the row at `key`? (Row keys of one table are
/// prefix-free, so the length settles it.)
pub fn is_history_of(hk: &[u8], key: &[u8]) -> bool {
    hk.len() == key.len() + 8 && hk.starts_with(key)
}

pub fn history_value(superseded_at: Timestamp, old: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(old.len() + 8);
    v.extend_from_slice(&superseded_at.to_be_bytes());
    v.extend_from_slice(old);
    v
}

/// The stored version inside a history value.
pub fn history_version(v: &[u8]) -> Result<&[u8]> {
    v.get(8..).ok_or_else(|| Error::internal("corrupt history value"))
}

/// `gc` entry kinds.
pub const GC_HISTORY: u8 = 1;
pub const GC_TOMBSTONE: u8 = 2;
/// An [`aborted_key`] marker, needed while the transaction's coordinator
/// may still send a decision for it (until its snapshot is released).
pub const GC_ABORTED: u8 = 3;
/// A [`committed_key`] marker, needed while the coordinator may still ask
/// how the transaction ended (until its decision record is gone).
pub const GC_COMMITTED: u8 = 4;

/// The marker of a prepared transaction this slice server aborted (in the
/// default column family, under the metadata table 0): a later `Commit` of
/// it is refused rather than acknowledged as a repeat.
pub fn aborted_key(txn: TxnId) -> Vec<u8> {
    let mut k = b"\0\0\0\0aborted".to_vec();
    k.extend_from_slice(&txn.to_be_bytes());
    k
}

/// The marker of a prepared transaction this slice server committed: a
/// coordinator that restarts with the transaction's commit record staged
/// learns from it that the commit was decided (see
/// [`crate::txn::TxnStatus`]).
pub fn committed_key(txn: TxnId) -> Vec<u8> {
    let mut k = b"\0\0\0\0committed".to_vec();
    k.extend_from_slice(&txn.to_be_bytes());
    k
}

pub fn gc_key(ts: Timestamp, kind: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 9);
    k.extend_from_slice(&ts.to_be_bytes());
    k.push(kind);
    k.extend_from_slice(key);
    k
}

pub fn parse_gc_key(k: &[u8]) -> Result<(Timestamp, u8, &[u8])> {
    if k.len() < 9 {
        return Err(Error::internal("corrupt gc key"));
    }
    Ok((u64::from_be_bytes(k[..8].try_into().expect("8 bytes")), k[8], &k[9..]))
}

/// The key of a prepared transaction's record in `intents`.
pub fn intent_record_key(txn: TxnId) -> [u8; 8] {
    txn.to_be_bytes()
}

pub fn intent_key(txn: TxnId, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 8);
    k.extend_from_slice(&txn.to_be_bytes());
    k.extend_from_slice(key);
    k
}

pub fn encode_intent(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        None => vec![0],
        Some(v) => {
            let mut out = Vec::with_capacity(v.len() + 1);
            out.push(1);
            out.extend_from_slice(v);
            out
        }
    }
}

pub fn decode_intent(v: &[u8]) -> Result<Option<Vec<u8>>> {
    match v.split_first() {
        Some((0, _)) => Ok(None),
        Some((1, rest)) => Ok(Some(rest.to_vec())),
        _ => Err(Error::internal("corrupt intent")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keys_sort_newest_first_and_stay_with_their_row() {
        let a = history_key(b"\0\0\0\x01row-a", 10);
        let b = history_key(b"\0\0\0\x01row-a", 20);
        assert!(b < a, "newer versions sort first");
        // a seek to key ++ !15 lands on the version at 10
        let seek = history_key(b"\0\0\0\x01row-a", 15);
        assert!(b < seek && seek < a);
        assert!(is_history_of(&a, b"\0\0\0\x01row-a"));
        assert!(!is_history_of(&a, b"\0\0\0\x01row-"));
        let gk = gc_key(5, GC_TOMBSTONE, b"k");
        let (ts, kind, key) = parse_gc_key(&gk).unwrap();
        assert_eq!((ts, kind, key), (5, GC_TOMBSTONE, &b"k"[..]));
        assert_eq!(decode_intent(&encode_intent(Some(b"v"))).unwrap(), Some(b"v".to_vec()));
        assert_eq!(decode_intent(&encode_intent(None)).unwrap(), None);
    }
}
