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
use std::sync::atomic::Ordering;

use rocksdb::{ReadOptions, WriteBatch, WriteOptions};
use slicedb_common::{err, Error, Result, TableId};

use crate::key::{self, storage_key};
use crate::mvcc::{self, Timestamp, TxnId, TxnWrite, GC_CF, HISTORY_CF, INTENTS_CF};
use crate::row::{self, encode_row};
use crate::store::{capture, lost, rocks, ROWID_META};
use crate::{write_queue, RowWrite, SliceStore};

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

/// A slice server's side of transactions: pending writes, prepare, commit,
/// abort, savepoints and garbage collection of old versions.
impl SliceStore {
    /// Adds `writes` of transaction `txn` to `table`, as pending writes of
    /// its statement `txn.seq` (see [`crate::txn`]). Returns the number of
    /// rows inserted, written or deleted.
    ///
    /// Fails with 40001 when another transaction has written one of the
    /// rows and not finished, or one of the rows was committed after the
    /// transaction's snapshot; with 23505 when an inserted key exists. The
    /// writes of a failed request may be partly pending: the coordinator
    /// then rolls the statement (or the transaction) back.
    pub fn txn_write(&self, txn: TxnWrite, table: TableId, table_name: &str, writes: &[RowWrite]) -> Result<u64> {
        let mut writer = self.writer()?;
        let writer = &mut *writer;
        if txn.continues && !writer.txns.states.contains_key(&txn.txn) {
            return Err(lost(txn.txn));
        }
        let state = writer
            .txns
            .states
            .entry(txn.txn)
            .or_insert_with(|| TxnState::new(txn.start_ts));
        if state.prepared {
            return Err(Error::internal(format!("transaction {} is already prepared", txn.txn)));
        }
        let mut affected = 0u64;
        for w in writes {
            let k = match w {
                RowWrite::InsertWithRowId { bucket, row } => {
                    let node = self.node.load(Ordering::Acquire);
                    if node == 0 {
                        return Err(err!(
                            ObjectNotInPrerequisiteState,
                            "slice server is not registered with a cluster"
                        ));
                    }
                    let id = ((node as u64) << 40) | writer.next_rowid;
                    writer.next_rowid += 1;
                    let k = storage_key(table, &key::rowid_key(*bucket, id));
                    writer.txns.locks.insert(k.clone(), txn.txn);
                    state.push(k, txn.seq, Some(encode_row(0, row)?));
                    affected += 1;
                    continue;
                }
                RowWrite::Insert { key, .. }
                | RowWrite::InsertIfAbsent { key, .. }
                | RowWrite::Put { key, .. }
                | RowWrite::Delete { key } => storage_key(table, key),
            };
            // Row lock, then first-updater-wins against committed versions.
            if let Some(holder) = writer.txns.locks.get(&k) {
                if *holder != txn.txn {
                    return Err(err!(
                        SerializationFailure,
                        "could not serialize access due to concurrent update"
                    ));
                }
            }
            let exists = match state.latest(&k) {
                Some(image) => image.is_some(),
                None => match self.db.get_pinned(&k).map_err(rocks)? {
                    Some(v) => {
                        let (version, tombstone) = row::peek(&v)?;
                        if version > txn.start_ts {
                            return Err(err!(
                                SerializationFailure,
                                "could not serialize access due to concurrent update"
                            ));
                        }
                        !tombstone
                    }
                    None => false,
                },
            };
            let image = match w {
                RowWrite::Insert { row, .. } => {
                    if exists {
                        return Err(err!(
                            UniqueViolation,
                            "duplicate key value violates unique constraint \"{table_name}_pkey\""
                        ));
                    }
                    Some(encode_row(0, row)?)
                }
                RowWrite::InsertIfAbsent { row, .. } => {
                    if exists {
                        continue;
                    }
                    Some(encode_row(0, row)?)
                }
                RowWrite::Put { row, .. } => Some(encode_row(0, row)?),
                RowWrite::Delete { .. } => {
                    if !exists {
                        continue;
                    }
                    None
                }
                RowWrite::InsertWithRowId { .. } => unreachable!("handled above"),
            };
            affected += 1;
            writer.txns.locks.insert(k.clone(), txn.txn);
            state.push(k, txn.seq, image);
        }
        Ok(affected)
    }

    /// Phase one of two-phase commit: makes `txn`'s final row images
    /// durable intents. Fails with 40001 if this slice server does not know
    /// the transaction (it restarted and lost its pending writes).
    pub fn prepare(&self, txn: TxnId) -> Result<()> {
        let mut writer = self.writer()?;
        let next_rowid = writer.next_rowid;
        let state = writer.txns.states.get_mut(&txn).ok_or_else(|| lost(txn))?;
        if state.prepared {
            return Ok(());
        }
        let intents = self.cf(INTENTS_CF)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(intents, mvcc::intent_record_key(txn), state.start_ts.to_be_bytes());
        for (k, v) in state.finals() {
            batch.put_cf(intents, mvcc::intent_key(txn, k), mvcc::encode_intent(v.as_deref()));
        }
        batch.put(ROWID_META, next_rowid.to_be_bytes());
        self.db.write_opt(batch, &Self::write_options()).map_err(rocks)?;
        state.prepared = true;
        Ok(())
    }

    /// Phase two (or the only phase, for a transaction on one slice
    /// server): turns `txn`'s writes into versions at `commit_ts`, moving
    /// the versions they replace to history, in one durable write batch.
    /// Committing a transaction this slice server no longer knows does
    /// nothing (a repeated commit) unless `must_know` is set: a one-phase
    /// commit of writes lost in a restart fails with 40001.
    pub fn commit(&self, txn: TxnId, commit_ts: Timestamp, must_know: bool) -> Result<()> {
        let mut writer = self.writer()?;
        let writer = &mut *writer;
        // The state goes only once the batch is written: a failed write
        // leaves the transaction (and its locks) for a retry.
        let Some(state) = writer.txns.states.get(&txn) else {
            return if must_know { Err(lost(txn)) } else { Ok(()) };
        };
        let (history, gc, intents) = (self.cf(HISTORY_CF)?, self.cf(GC_CF)?, self.cf(INTENTS_CF)?);
        let mut batch = WriteBatch::default();
        let mut seq = writer.next_seq;
        for (k, image) in state.finals() {
            let old = self.db.get(k).map_err(rocks)?;
            if old.is_none() && image.is_none() {
                continue;
            }
            if let Some(old) = &old {
                let (version, _) = row::peek(old)?;
                let hk = mvcc::history_key(k, version);
                batch.put_cf(history, &hk, mvcc::history_value(commit_ts, old));
                batch.put_cf(gc, mvcc::gc_key(commit_ts, mvcc::GC_HISTORY, &hk), []);
            }
            let new = match image {
                Some(v) => {
                    let mut v = v.clone();
                    row::set_version(&mut v, commit_ts)?;
                    v
                }
                None => {
                    batch.put_cf(gc, mvcc::gc_key(commit_ts, mvcc::GC_TOMBSTONE, k), []);
                    row::encode_tombstone(commit_ts)
                }
            };
            capture(&writer.captures, &mut seq, &mut batch, k, &new)?;
            batch.put(k, new);
        }
        if state.prepared {
            batch.delete_range_cf(
                intents,
                mvcc::intent_record_key(txn),
                mvcc::intent_record_key(txn.saturating_add(1)),
            );
        }
        batch.put(ROWID_META, writer.next_rowid.to_be_bytes());
        if seq != writer.next_seq {
            batch.put(write_queue::seq_key(), seq.to_be_bytes());
        }
        // Apply under the lock, fsync after releasing it: concurrent
        // commits share one fsync (group commit). The coordinator hears of
        // the commit only after the sync.
        self.db.write_opt(batch, &WriteOptions::default()).map_err(rocks)?;
        writer.next_seq = seq;
        if let Some(state) = writer.txns.states.remove(&txn) {
            writer.txns.unlock(txn, state.writes.keys());
        }
        self.db.flush_wal(true).map_err(rocks)?;
        Ok(())
    }

    /// Drops `txn`'s pending writes or intents and releases its locks.
    /// Aborting an unknown transaction does nothing.
    pub fn abort(&self, txn: TxnId) -> Result<()> {
        let mut writer = self.writer()?;
        let Some(prepared) = writer.txns.states.get(&txn).map(|s| s.prepared) else {
            return Ok(());
        };
        if prepared {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(
                self.cf(INTENTS_CF)?,
                mvcc::intent_record_key(txn),
                mvcc::intent_record_key(txn.saturating_add(1)),
            );
            self.db.write_opt(batch, &Self::write_options()).map_err(rocks)?;
        }
        if let Some(state) = writer.txns.states.remove(&txn) {
            writer.txns.unlock(txn, state.writes.keys());
        }
        Ok(())
    }

    /// `ROLLBACK TO SAVEPOINT`: drops `txn`'s writes of statements `seq`
    /// and later.
    pub fn rollback_to(&self, txn: TxnId, seq: u32) -> Result<()> {
        let mut writer = self.writer()?;
        let writer = &mut *writer;
        let Some(state) = writer.txns.states.get_mut(&txn) else {
            return Ok(());
        };
        if state.prepared {
            return Err(Error::internal(format!("transaction {txn} is already prepared")));
        }
        let emptied = state.rollback_to(seq);
        writer.txns.unlock(txn, emptied.iter());
        Ok(())
    }

    /// The transactions with pending writes or intents here: id, start
    /// timestamp, and whether prepared (waiting for the coordinator's decision).
    pub fn transactions(&self) -> Result<Vec<(TxnId, Timestamp, bool)>> {
        let writer = self.writer()?;
        let mut out: Vec<_> = writer
            .txns
            .states
            .iter()
            .map(|(t, s)| (*t, s.start_ts, s.prepared))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Deletes versions that no snapshot at or after `horizon` can see:
    /// history versions superseded at or before it, and tombstones written
    /// at or before it that are still the row's newest version. Returns how
    /// many it deleted.
    pub fn gc(&self, horizon: Timestamp) -> Result<u64> {
        let (history, gc) = (self.cf(HISTORY_CF)?, self.cf(GC_CF)?);
        let upper = mvcc::gc_key(horizon.saturating_add(1), 0, &[]);
        let mut deleted = 0u64;
        loop {
            // Bounded batches, so writers are not held up long.
            let _writer = self.writer()?;
            let mut batch = WriteBatch::default();
            let mut opts = ReadOptions::default();
            opts.set_iterate_upper_bound(upper.clone());
            let mut iter = self.db.raw_iterator_cf_opt(gc, opts);
            iter.seek_to_first();
            let mut n = 0;
            while let Some(gk) = iter.key() {
                let (ts, kind, key) = mvcc::parse_gc_key(gk)?;
                match kind {
                    mvcc::GC_HISTORY => batch.delete_cf(history, key),
                    _ => {
                        if let Some(v) = self.db.get_pinned(key).map_err(rocks)? {
                            if row::peek(&v)? == (ts, true) {
                                batch.delete(key);
                            }
                        }
                    }
                }
                batch.delete_cf(gc, gk);
                n += 1;
                if n == 10_000 {
                    break;
                }
                iter.next();
            }
            iter.status().map_err(rocks)?;
            drop(iter);
            if n == 0 {
                return Ok(deleted);
            }
            self.db.write_opt(batch, &WriteOptions::default()).map_err(rocks)?;
            deleted += n;
            if n < 10_000 {
                return Ok(deleted);
            }
        }
    }

    /// Versions kept for older snapshots (history entries), for tests and
    /// monitoring.
    pub fn history_len(&self) -> Result<u64> {
        let mut iter = self.db.raw_iterator_cf(self.cf(HISTORY_CF)?);
        iter.seek_to_first();
        let mut n = 0;
        while iter.valid() {
            n += 1;
            iter.next();
        }
        iter.status().map_err(rocks)?;
        Ok(n)
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
