//! A slice server's transactions: pending writes, row locks, intents.
//!
//! A transaction's writes reach a slice server statement by statement
//! ([`crate::SliceStore::txn_write`]). They stay *pending* in memory, tagged
//! with their statement number, so that:
//! - the transaction's later statements read them ([`crate::mvcc::OwnWrites`]);
//! - `ROLLBACK TO SAVEPOINT` drops those of the statements after the
//!   savepoint ([`TxnState::rollback_to`]);
//! - nobody else sees them.
//!
//! The first write to a row locks it for the transaction. A second
//! transaction writing a locked row, or a row committed after its snapshot,
//! fails at once with 40001 (first updater wins, no waiting, so no
//! deadlocks).
//!
//! At *prepare* (phase one of the coordinator's two-phase commit) the last
//! pending image of each row becomes a durable intent (see
//! [`crate::mvcc`]); at *commit* the intents become versions stamped with
//! the commit timestamp; at *abort* they are dropped. A slice server that
//! restarts loses its pending writes (their transactions fail at prepare)
//! but reloads its intents and their locks, and waits for the coordinator
//! to say commit or abort.

use std::collections::{BTreeMap, HashMap};

use crate::mvcc::{Timestamp, TxnId};

/// One pending row image: the statement that wrote it and the encoded value
/// (version 0), or `None` for a delete.
pub(crate) type PendingImage = (u32, Option<Vec<u8>>);

/// One transaction on one slice server.
#[derive(Debug, Default)]
pub(crate) struct TxnState {
    pub start_ts: Timestamp,
    /// Prepared: its intents are durable; it takes no more writes.
    pub prepared: bool,
    /// Storage key → its images, oldest first.
    pub writes: BTreeMap<Vec<u8>, Vec<PendingImage>>,
}

impl TxnState {
    pub fn new(start_ts: Timestamp) -> TxnState {
        TxnState {
            start_ts,
            ..TxnState::default()
        }
    }

    /// The newest image of `key`, of any statement.
    pub fn latest(&self, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.writes.get(key).and_then(|v| v.last()).map(|(_, v)| v)
    }

    /// The newest image of `key` written before statement `before_seq`.
    pub fn visible(&self, key: &[u8], before_seq: u32) -> Option<&Option<Vec<u8>>> {
        self.writes
            .get(key)?
            .iter()
            .rev()
            .find(|(s, _)| *s < before_seq)
            .map(|(_, v)| v)
    }

    pub fn push(&mut self, key: Vec<u8>, seq: u32, value: Option<Vec<u8>>) {
        self.writes.entry(key).or_default().push((seq, value));
    }

    /// Drops the images of statements `seq` and later; returns the keys
    /// left with no image (their locks are released).
    pub fn rollback_to(&mut self, seq: u32) -> Vec<Vec<u8>> {
        let mut emptied = Vec::new();
        self.writes.retain(|k, images| {
            images.retain(|(s, _)| *s < seq);
            if images.is_empty() {
                emptied.push(k.clone());
                false
            } else {
                true
            }
        });
        emptied
    }

    /// Each written key with its final image.
    pub fn finals(&self) -> impl Iterator<Item = (&Vec<u8>, &Option<Vec<u8>>)> {
        self.writes
            .iter()
            .filter_map(|(k, images)| images.last().map(|(_, v)| (k, v)))
    }

    /// The images visible before statement `before_seq` of the keys in
    /// `[lower, upper)`, in key order.
    pub fn view(&self, lower: &[u8], upper: &[u8], before_seq: u32) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.writes
            .range::<[u8], _>((std::ops::Bound::Included(lower), std::ops::Bound::Excluded(upper)))
            .filter_map(|(k, images)| {
                images
                    .iter()
                    .rev()
                    .find(|(s, _)| *s < before_seq)
                    .map(|(_, v)| (k.clone(), v.clone()))
            })
            .collect()
    }
}

/// Every transaction a slice server knows, and the row locks they hold.
#[derive(Debug, Default)]
pub(crate) struct Txns {
    pub states: HashMap<TxnId, TxnState>,
    /// Storage key → the transaction that has written it.
    pub locks: HashMap<Vec<u8>, TxnId>,
}

impl Txns {
    /// Releases `txn`'s locks on `keys`.
    pub fn unlock<'a>(&mut self, txn: TxnId, keys: impl Iterator<Item = &'a Vec<u8>>) {
        for k in keys {
            if self.locks.get(k) == Some(&txn) {
                self.locks.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_see_earlier_images_and_savepoints_drop_later_ones() {
        let mut t = TxnState::new(5);
        t.push(b"a".to_vec(), 1, Some(b"a1".to_vec()));
        t.push(b"a".to_vec(), 2, Some(b"a2".to_vec()));
        t.push(b"b".to_vec(), 2, None);
        assert_eq!(t.visible(b"a", 2), Some(&Some(b"a1".to_vec())));
        assert_eq!(t.visible(b"a", 3), Some(&Some(b"a2".to_vec())));
        assert_eq!(t.visible(b"b", 2), None);
        assert_eq!(t.latest(b"b"), Some(&None));
        assert_eq!(t.view(b"a", b"c", 3).len(), 2);
        assert_eq!(t.rollback_to(2), vec![b"b".to_vec()]);
        assert_eq!(t.latest(b"a"), Some(&Some(b"a1".to_vec())));
        assert_eq!(t.finals().count(), 1);
    }
}
