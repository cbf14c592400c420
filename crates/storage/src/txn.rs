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
//! The first write to a row locks it for the transaction
//! ([`crate::lock_table`]). A second transaction writing a locked row waits
//! for the holder to finish (at most its `lock_timeout`, 55P03; a deadlock
//! is 40P01). Then, as for a row committed after its snapshot, it fails
//! with 40001 if the holder committed the row (first updater wins), and
//! goes on if the holder aborted: PostgreSQL's `REPEATABLE READ`.
//!
//! Nothing here is serialized store-wide: each transaction's state has its
//! own mutex, the lock table is sharded, and a commit reads the versions it
//! replaces under its own row locks. A commit or prepare writes its batch
//! without an fsync, on the slice server's async task when it needs no
//! wait ([`SliceStore::try_commit`], [`SliceStore::try_prepare`]), and is
//! acknowledged once the store's WAL syncer has synced past it: concurrent
//! commits share one fsync (group commit, [`crate::wal_sync`];
//! [`crate::SliceStore::wal_syncs`] counts the syncs). Only commits that
//! feed a redistribution's write queues take one more mutex, so that queue
//! sequence numbers follow the order in which their batches land; they
//! run on a blocking thread and sync themselves.
//!
//! At *prepare* (phase one of the coordinator's two-phase commit) the last
//! pending image of each row becomes a durable intent (see
//! [`crate::mvcc`]); at *commit* the intents become versions stamped with
//! the commit timestamp (written without an fsync, with a marker, until
//! the coordinator *settles* it: [`SliceStore::settle`]); at *abort* they
//! are dropped. A slice server that
//! restarts loses its pending writes (their transactions fail at prepare)
//! but reloads its intents and their locks, and waits for the coordinator
//! to say commit or abort.

pub use slicedb_codec::slice::TxnStatus;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rocksdb::{ReadOptions, WriteBatch, WriteOptions};
use slicedb_common::{err, Error, Result, TableId};

use crate::key::{self, storage_key};
use crate::lock_table::{CancelReason, LockError, Locked, GC_TXN};
use crate::mvcc::{self, Timestamp, TxnId, TxnWrite, GC_CF, HISTORY_CF, INTENTS_CF};
use crate::row::{self, encode_row};
use crate::store::{capture, lost, rocks};
use crate::{write_queue, RowWrite, Seen, SliceStore};

/// One pending row image: the statement that wrote it and the encoded value
/// (version 0), or `None` for a delete.
pub(crate) type PendingImage = (u32, Option<Vec<u8>>);

/// One transaction on one slice server.
#[derive(Debug, Default)]
pub(crate) struct TxnState {
    pub start_ts: Timestamp,
    /// Prepared: its intents are durable; it takes no more writes.
    pub prepared: bool,
    /// Committed or aborted: whoever still holds this state must treat the
    /// transaction as unknown.
    pub done: bool,
    /// Storage key → its images, oldest first.
    pub writes: BTreeMap<Vec<u8>, Vec<PendingImage>>,
    /// Keys locked without a write ([`RowWrite::Lock`]), held until the
    /// transaction ends. They are not part of its intents: a slice server
    /// that restarts with the transaction prepared does not hold them again.
    pub locked: std::collections::BTreeSet<Vec<u8>>,
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

/// The error of a write that meets a row another transaction holds, or one
/// committed after the writer's snapshot.
fn concurrent_update() -> Error {
    err!(
        SerializationFailure,
        "could not serialize access due to concurrent update"
    )
}

/// The error of a write that could not take a row lock.
fn lock_error(e: LockError) -> Error {
    match e {
        LockError::Timeout(holder) => {
            err!(
                LockNotAvailable,
                "canceling statement due to lock timeout (the row is locked by transaction {holder})"
            )
        }
        LockError::Deadlock(holder) => err!(
            DeadlockDetected,
            "deadlock detected: waiting for a row lock held by transaction {holder}, which waits for this one"
        ),
        LockError::Cancelled => err!(
            QueryCanceled,
            "canceling statement: its transaction was rolled back while it waited for a row lock"
        ),
        LockError::Busy(_) => concurrent_update(),
    }
}

/// A transaction's slot: its state, shared by the requests that touch it,
/// and what can be read of it without waiting for a request that holds
/// the state (a write waiting for a row lock does).
#[derive(Debug)]
pub(crate) struct TxnSlot {
    pub start_ts: Timestamp,
    pub prepared: AtomicBool,
    pub state: Mutex<TxnState>,
}

pub(crate) type SharedTxn = Arc<TxnSlot>;

fn slot(state: TxnState) -> SharedTxn {
    Arc::new(TxnSlot {
        start_ts: state.start_ts,
        prepared: AtomicBool::new(state.prepared),
        state: Mutex::new(state),
    })
}

/// Every transaction a slice server knows. The map's mutex is held only to
/// find, add or remove an entry; each transaction's state has its own.
#[derive(Debug, Default)]
pub(crate) struct TxnTable {
    map: Mutex<HashMap<TxnId, SharedTxn>>,
}

impl TxnTable {
    fn map(&self) -> MutexGuard<'_, HashMap<TxnId, SharedTxn>> {
        // Only inserts, lookups and removals run under it: a poisoned map
        // is still sound.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, txn: TxnId) -> Option<SharedTxn> {
        self.map().get(&txn).cloned()
    }

    /// The state of `txn`, created with snapshot `start_ts` if new.
    pub fn get_or_start(&self, txn: TxnId, start_ts: Timestamp) -> SharedTxn {
        self.map()
            .entry(txn)
            .or_insert_with(|| slot(TxnState::new(start_ts)))
            .clone()
    }

    pub fn insert(&self, txn: TxnId, state: TxnState) {
        self.map().insert(txn, slot(state));
    }

    pub fn remove(&self, txn: TxnId) {
        self.map().remove(&txn);
    }

    pub fn all(&self) -> Vec<(TxnId, SharedTxn)> {
        self.map().iter().map(|(t, s)| (*t, s.clone())).collect()
    }
}

/// Locks one transaction's state. A panic while it was held may have left
/// it half-changed, so a poisoned state is an error.
pub(crate) fn lock_state(slot: &TxnSlot) -> Result<MutexGuard<'_, TxnState>> {
    slot.state
        .lock()
        .map_err(|_| Error::internal("a slice server transaction's state is poisoned"))
}

/// Locks one transaction's state; with `nowait`, `None` when another
/// request of the transaction holds it.
fn state_of(slot: &TxnSlot, nowait: bool) -> Result<Option<MutexGuard<'_, TxnState>>> {
    if !nowait {
        return lock_state(slot).map(Some);
    }
    match slot.state.try_lock() {
        Ok(state) => Ok(Some(state)),
        Err(std::sync::TryLockError::WouldBlock) => Ok(None),
        Err(std::sync::TryLockError::Poisoned(_)) => {
            Err(Error::internal("a slice server transaction's state is poisoned"))
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
    pub fn txn_write(&self, txn: TxnWrite, table: TableId, unique_name: &str, writes: &[RowWrite]) -> Result<u64> {
        Ok(self.txn_write_seen(txn, table, unique_name, writes, false)?.0)
    }

    /// [`SliceStore::txn_write`] that also reports, with `seen`, what each
    /// write found and did ([`Seen`]): a writer that maintains secondary
    /// indexes learns the rows it replaced or deleted. `unique_name` names
    /// the constraint a duplicate key violates (23505).
    pub fn txn_write_seen(
        &self,
        txn: TxnWrite,
        table: TableId,
        unique_name: &str,
        writes: &[RowWrite],
        seen: bool,
    ) -> Result<(u64, Vec<Seen>)> {
        self.write_rows(txn, table, unique_name, writes, false, seen)?
            .ok_or_else(|| Error::internal("a waiting write gave up"))
    }

    /// [`SliceStore::txn_write`] if it can be done without waiting: for
    /// another request of the transaction, a row lock, a block not in
    /// memory, or a row-id reservation. `None` when it would wait; then
    /// nothing of it is done. Safe on an async task: it saves a blocking
    /// thread's round trip for the common write of rows nobody else holds.
    pub fn try_txn_write(
        &self,
        txn: TxnWrite,
        table: TableId,
        unique_name: &str,
        writes: &[RowWrite],
        seen: bool,
    ) -> Option<Result<(u64, Vec<Seen>)>> {
        self.write_rows(txn, table, unique_name, writes, true, seen).transpose()
    }

    /// The writes of [`SliceStore::txn_write`]; with `nowait`, `Ok(None)`
    /// instead of any wait, having undone what it did.
    fn write_rows(
        &self,
        txn: TxnWrite,
        table: TableId,
        unique_name: &str,
        writes: &[RowWrite],
        nowait: bool,
        want_seen: bool,
    ) -> Result<Option<(u64, Vec<Seen>)>> {
        let shared = if txn.continues {
            self.txns.get(txn.txn).ok_or_else(|| lost(txn.txn))?
        } else {
            self.txns.get_or_start(txn.txn, txn.start_ts)
        };
        let Some(mut state) = state_of(&shared, nowait)? else {
            return Ok(None);
        };
        if state.done {
            return Err(lost(txn.txn));
        }
        if state.prepared {
            return Err(Error::internal(format!("transaction {} is already prepared", txn.txn)));
        }
        // What this request did, to undo if it gives up (`nowait`).
        let mut done: Vec<(Vec<u8>, Locked)> = Vec::new();
        let give_up = |state: &mut TxnState, done: Vec<(Vec<u8>, Locked)>| {
            for (k, locked) in done.into_iter().rev() {
                if let Some(images) = state.writes.get_mut(&k) {
                    images.pop();
                    if images.is_empty() {
                        state.writes.remove(&k);
                    }
                }
                if locked == Locked::Taken {
                    self.locks.unlock(&k, txn.txn);
                }
            }
            Ok(None)
        };
        let mut affected = 0u64;
        let mut seen: Vec<Seen> = Vec::with_capacity(if want_seen { writes.len() } else { 0 });
        for w in writes {
            let k = match w {
                RowWrite::InsertWithRowId { bucket, row } => {
                    let node = self.node_id();
                    if node == 0 {
                        return Err(err!(
                            ObjectNotInPrerequisiteState,
                            "slice server is not registered with a cluster"
                        ));
                    }
                    let id = if nowait {
                        match self.try_take_rowid() {
                            Some(id) => id,
                            None => return give_up(&mut state, done),
                        }
                    } else {
                        self.take_rowid()?
                    };
                    let k = storage_key(table, &key::rowid_key(*bucket, ((node as u64) << 40) | id));
                    let image = encode_row(0, row)?;
                    // A fresh row id: nobody else can hold its lock.
                    let locked = self.locks.try_lock(&k, txn.txn).unwrap_or(Locked::AlreadyHeld);
                    if want_seen {
                        seen.push(Seen {
                            applied: true,
                            old: None,
                            key: Some(k[4..].to_vec()),
                        });
                    }
                    state.push(k.clone(), txn.seq, Some(image));
                    done.push((k, locked));
                    affected += 1;
                    continue;
                }
                RowWrite::Insert { key, .. }
                | RowWrite::InsertIfAbsent { key, .. }
                | RowWrite::Put { key, .. }
                | RowWrite::Delete { key }
                | RowWrite::Erase { key }
                | RowWrite::Lock { key } => storage_key(table, key),
            };
            // Row lock (waiting for its holder), then first-updater-wins
            // against committed versions.
            let locked = if nowait {
                match self.locks.try_lock(&k, txn.txn) {
                    Ok(locked) => locked,
                    Err(_) => return give_up(&mut state, done),
                }
            } else {
                let timeout = (txn.lock_timeout_ms > 0).then(|| Duration::from_millis(txn.lock_timeout_ms.into()));
                self.locks.lock(&k, txn.txn, timeout).map_err(lock_error)?
            };
            if let RowWrite::Lock { .. } = w {
                let image = match state.latest(&k) {
                    Some(image) => image.clone(),
                    None => match self.locked_row(&k, nowait)? {
                        Some(image) => image,
                        None => {
                            if locked == Locked::Taken {
                                self.locks.unlock(&k, txn.txn);
                            }
                            return give_up(&mut state, done);
                        }
                    },
                };
                if locked == Locked::Taken {
                    state.locked.insert(k);
                }
                if want_seen {
                    seen.push(crate::store::seen(false, image)?);
                }
                continue;
            }
            let mut old = None;
            let found = want_seen.then_some(&mut old);
            match self.row_image(&state, &k, w, txn.start_ts, unique_name, nowait, found) {
                Ok(Some(Some(image))) => {
                    affected += 1;
                    if want_seen {
                        seen.push(crate::store::seen(true, old)?);
                    }
                    state.push(k.clone(), txn.seq, image);
                    done.push((k, locked));
                }
                Ok(None) => {
                    // A block not in memory.
                    if locked == Locked::Taken {
                        self.locks.unlock(&k, txn.txn);
                    }
                    return give_up(&mut state, done);
                }
                // Nothing to write: a lock taken for it goes again.
                result => {
                    if locked == Locked::Taken {
                        self.locks.unlock(&k, txn.txn);
                    }
                    result?;
                    if want_seen {
                        seen.push(crate::store::seen(false, old)?);
                    }
                }
            }
        }
        Ok(Some((affected, seen)))
    }

    /// The image write `w` leaves at storage key `k`, whose lock the
    /// transaction holds: `Some(None)` deletes the row, `None` changes
    /// nothing (an insert of an existing key that may be skipped, a delete
    /// of a missing row).
    /// With `nowait`, the outer `None` says that the committed version is
    /// not in memory.
    #[allow(clippy::too_many_arguments)]
    fn row_image(
        &self,
        state: &TxnState,
        k: &[u8],
        w: &RowWrite,
        start_ts: Timestamp,
        unique_name: &str,
        nowait: bool,
        found: Option<&mut Option<Vec<u8>>>,
    ) -> Result<Option<Option<Option<Vec<u8>>>>> {
        let committed = || self.newest(k, nowait);
        let exists = match state.latest(k) {
            Some(image) => {
                if let (Some(found), Some(image)) = (found, image) {
                    *found = Some(image.clone());
                }
                image.is_some()
            }
            None => match committed()? {
                None => return Ok(None),
                Some(Some(v)) => {
                    let (version, tombstone) = row::peek(&v)?;
                    // First updater wins; an insert conflicts with the
                    // row that exists now, whenever it was committed (a
                    // unique violation, as in PostgreSQL at every level).
                    // A back-filled index entry changed nothing
                    // (`crate::backfill`).
                    let inserts = matches!(w, RowWrite::Insert { .. } | RowWrite::InsertIfAbsent { .. });
                    if version > start_ts && !inserts && !row::is_backfilled(&v)? {
                        return Err(concurrent_update());
                    }
                    if let (Some(found), false) = (found, tombstone) {
                        *found = Some(v.to_vec());
                    }
                    !tombstone
                }
                Some(None) => false,
            },
        };
        Ok(Some(match w {
            RowWrite::Insert { row, .. } => {
                if exists {
                    return Err(err!(
                        UniqueViolation,
                        "duplicate key value violates unique constraint \"{unique_name}\""
                    ));
                }
                Some(Some(encode_row(0, row)?))
            }
            RowWrite::InsertIfAbsent { row, .. } => (!exists).then(|| encode_row(0, row)).transpose()?.map(Some),
            RowWrite::Put { row, .. } => Some(Some(encode_row(0, row)?)),
            RowWrite::Delete { .. } => exists.then_some(None),
            RowWrite::Erase { .. } => Some(None),
            RowWrite::InsertWithRowId { .. } | RowWrite::Lock { .. } => {
                return Err(Error::internal("this write has no key image"))
            }
        }))
    }

    /// The newest stored value at storage key `k`; with `nowait`, `None`
    /// when reading it would touch the disk (a block not in memory).
    fn newest(&self, k: &[u8], nowait: bool) -> Result<Option<Option<rocksdb::DBPinnableSlice<'_>>>> {
        if !nowait {
            return self.db.get_pinned_cf(self.rows()?, k).map(Some).map_err(rocks);
        }
        let mut opts = ReadOptions::default();
        opts.set_read_tier(rocksdb::ReadTier::BlockCache);
        match self.db.get_pinned_cf_opt(self.rows()?, k, &opts) {
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => Ok(None),
            other => other.map(Some).map_err(rocks),
        }
    }

    /// The latest committed row at storage key `k` (locked by the caller),
    /// `Some(None)` when there is none or it was deleted; with `nowait`,
    /// `None` when the block is not in memory.
    fn locked_row(&self, k: &[u8], nowait: bool) -> Result<Option<Option<Vec<u8>>>> {
        let Some(value) = self.newest(k, nowait)? else {
            return Ok(None);
        };
        Ok(Some(match value {
            Some(v) if !row::peek(&v)?.1 => Some(v.to_vec()),
            _ => None,
        }))
    }

    /// Phase one of two-phase commit: makes `txn`'s final row images
    /// durable intents. Fails with 40001 if this slice server does not know
    /// the transaction (it restarted and lost its pending writes).
    pub fn prepare(&self, txn: TxnId) -> Result<()> {
        match self.prepare_unsynced(txn)? {
            Some(seq) => futures::executor::block_on(self.wal_synced(seq)),
            None => Ok(()),
        }
    }

    /// [`SliceStore::prepare`] without waiting for the WAL sync: the WAL
    /// sequence number to wait for ([`SliceStore::wal_synced`]) before the
    /// prepare may be acknowledged.
    pub fn prepare_unsynced(&self, txn: TxnId) -> Result<Option<u64>> {
        self.prepare_inner(txn, false)?
            .ok_or_else(|| Error::internal("a waiting prepare gave up"))
    }

    /// [`SliceStore::prepare`] without waiting for the WAL sync, if it can
    /// be done without waiting for another request of the transaction:
    /// the WAL sequence number to wait for ([`SliceStore::wal_synced`])
    /// before the prepare may be acknowledged. `None` when it would wait;
    /// then nothing of it is done. Safe on an async task.
    pub fn try_prepare(&self, txn: TxnId) -> Option<Result<Option<u64>>> {
        self.prepare_inner(txn, true).transpose()
    }

    fn prepare_inner(&self, txn: TxnId, nowait: bool) -> Result<Option<Option<u64>>> {
        if let Some(e) = self.base.syncer.failure() {
            return Err(e);
        }
        let shared = self.txns.get(txn).ok_or_else(|| lost(txn))?;
        let Some(mut state) = state_of(&shared, nowait)? else {
            return Ok(None);
        };
        if state.done {
            return Err(lost(txn));
        }
        if state.prepared {
            // A repeated prepare: the first may not be synced yet.
            return Ok(Some(Some(self.db.latest_sequence_number())));
        }
        let intents = self.cf(INTENTS_CF)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(intents, mvcc::intent_record_key(txn), state.start_ts.to_be_bytes());
        for (k, v) in state.finals() {
            batch.put_cf(intents, mvcc::intent_key(txn, k), mvcc::encode_intent(v.as_deref()));
        }
        self.db.write_opt(batch, &WriteOptions::default()).map_err(rocks)?;
        state.prepared = true;
        shared.prepared.store(true, Ordering::Release);
        Ok(Some(Some(self.db.latest_sequence_number())))
    }

    /// Phase two (or the only phase, for a transaction on one slice
    /// server): turns `txn`'s writes into versions at `commit_ts`, moving
    /// the versions they replace to history, in one durable write batch.
    /// Committing a transaction this slice server no longer knows does
    /// nothing (a repeated commit) unless `must_know` is set: a one-phase
    /// commit of writes lost in a restart fails with 40001.
    ///
    /// A transaction this slice server aborted after preparing it is never
    /// acknowledged as committed: its commit fails.
    pub fn commit(&self, txn: TxnId, commit_ts: Timestamp, must_know: bool) -> Result<()> {
        match self.commit_unsynced(txn, commit_ts, must_know)? {
            Some(seq) => futures::executor::block_on(self.wal_synced(seq)),
            None => Ok(()),
        }
    }

    /// [`SliceStore::commit`] without waiting for the WAL sync: the
    /// WAL sequence number to wait for ([`SliceStore::wal_synced`]) before
    /// the commit may be acknowledged, if it needs one (a one-phase commit
    /// does; phase two does not, see [`crate::wal_sync`]).
    pub fn commit_unsynced(&self, txn: TxnId, commit_ts: Timestamp, must_know: bool) -> Result<Option<u64>> {
        self.commit_inner(txn, commit_ts, must_know, false)?
            .ok_or_else(|| Error::internal("a waiting commit gave up"))
    }

    /// [`SliceStore::commit_unsynced`] if it can be done without waiting:
    /// for another request of the transaction, a block not in memory, or
    /// a redistribution's write queue. `None` when it would wait; then
    /// nothing of it is done. Safe on an async task.
    pub fn try_commit(&self, txn: TxnId, commit_ts: Timestamp, must_know: bool) -> Option<Result<Option<u64>>> {
        self.commit_inner(txn, commit_ts, must_know, true).transpose()
    }

    /// Waits until the WAL is synced up to sequence number `seq` (group
    /// commit, [`crate::wal_sync`]).
    pub async fn wal_synced(&self, seq: u64) -> Result<()> {
        self.base.syncer.synced(seq).await
    }

    fn commit_inner(
        &self,
        txn: TxnId,
        commit_ts: Timestamp,
        must_know: bool,
        nowait: bool,
    ) -> Result<Option<Option<u64>>> {
        if let Some(e) = self.base.syncer.failure() {
            return Err(e);
        }
        let unknown = || {
            if nowait {
                return Ok(None);
            }
            if must_know {
                Err(lost(txn))
            } else if self
                .db
                .get_pinned_cf(self.rows()?, mvcc::aborted_key(txn))
                .map_err(rocks)?
                .is_some()
            {
                tracing::error!(
                    txn,
                    "refusing to commit transaction {txn}, which was aborted here after it prepared"
                );
                Err(Error::internal(format!(
                    "transaction {txn} was aborted on this slice server after it prepared; it cannot commit"
                )))
            } else {
                Ok(Some(None))
            }
        };
        let Some(shared) = self.txns.get(txn) else {
            return unknown();
        };
        let Some(mut state) = state_of(&shared, nowait)? else {
            return Ok(None);
        };
        if state.done {
            return unknown();
        }
        // The state goes only once the batch is written: a failed write
        // leaves the transaction (and its locks) for a retry.
        let (rows, history, gc, intents) = (
            self.rows()?,
            self.cf(HISTORY_CF)?,
            self.cf(GC_CF)?,
            self.cf(INTENTS_CF)?,
        );
        let mut batch = WriteBatch::default();
        let mut versions = Vec::with_capacity(state.writes.len());
        for (k, image) in state.finals() {
            // Stable: the transaction holds the row's lock.
            let Some(old) = self.newest(k, nowait)? else {
                return Ok(None);
            };
            // A delete of a key with no version still leaves a tombstone:
            // an `Erase` of an index entry that a back-fill may write
            // beneath it later (`crate::backfill`), or a row inserted and
            // deleted by this transaction.
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
            versions.push((k, new));
        }
        // Phase two of a two-phase commit is written without an fsync: the
        // intents it replaces are durable, and the coordinator keeps its
        // commit record until [`SliceStore::settle`] has made this batch
        // durable, so a crash that loses it leaves intents to commit again.
        // The marker tells a coordinator that lost its memory that the
        // transaction committed here.
        // A one-phase commit is durable once the WAL is synced up to its
        // batch: its caller waits for that ([`crate::wal_sync`]).
        let one_phase = !state.prepared;
        if state.prepared {
            batch.delete_range_cf(
                intents,
                mvcc::intent_record_key(txn),
                mvcc::intent_record_key(txn.saturating_add(1)),
            );
            let marker = mvcc::committed_key(txn);
            batch.put_cf(rows, &marker, []);
            batch.put_cf(gc, mvcc::gc_key(txn.saturating_add(1), mvcc::GC_COMMITTED, &marker), []);
        }
        // A capture cannot start or stop while the batch is in flight, so
        // the batch lands wholly before a capture or wholly under it.
        let captures = if nowait {
            match self.try_capture_guard()? {
                Some(guard) => guard,
                None => return Ok(None),
            }
        } else {
            self.capture_guard()?
        };
        let unsynced = if captures.is_empty() {
            for (k, new) in versions {
                batch.put_cf(rows, k, new);
            }
            self.db.write_opt(batch, &WriteOptions::default()).map_err(rocks)?;
            one_phase.then(|| self.db.latest_sequence_number())
        } else {
            if nowait {
                return Ok(None);
            }
            // Queue entries must land in the order of their sequence
            // numbers (a reader that has passed a number never looks back),
            // so captured commits append under the queue's mutex, unsynced,
            // and sync after releasing it.
            let mut next_seq = self.queue_seq()?;
            let mut seq = *next_seq;
            for (k, new) in versions {
                capture(&captures, &mut seq, rows, &mut batch, k, &new)?;
                batch.put_cf(rows, k, new);
            }
            if seq != *next_seq {
                batch.put_cf(rows, write_queue::seq_key(), seq.to_be_bytes());
            }
            self.db.write_opt(batch, &WriteOptions::default()).map_err(rocks)?;
            *next_seq = seq;
            drop(next_seq);
            drop(captures);
            // Synced even in phase two: a redistribution may read these
            // queue entries and cut the buckets over before a settle.
            self.db.flush_wal(true).map_err(rocks)?;
            None
        };
        self.finish(txn, &mut state);
        Ok(Some(unsynced))
    }

    /// Makes the commits of `commits` durable here: commits those still
    /// prepared (after a restart lost their phase two, or when a
    /// coordinator's recovery decided them), then syncs the WAL once, so
    /// that every phase two written before is durable. The coordinator
    /// forgets a commit record only after every participant settled it.
    pub fn settle(&self, commits: &[(TxnId, Timestamp)]) -> Result<()> {
        for (txn, commit_ts) in commits {
            self.commit(*txn, *commit_ts, false)?;
        }
        self.db.flush_wal(true).map_err(rocks)
    }

    /// How `txn` stands here, for a coordinator resolving a commit record
    /// it staged before it restarted.
    pub fn txn_status(&self, txn: TxnId) -> Result<TxnStatus> {
        // Prepares and commits are acknowledged once synced, but written
        // before (`crate::wal_sync`): what is reported here must survive a
        // crash, so everything written so far is synced first.
        self.db.flush_wal(true).map_err(rocks)?;
        if let Some(shared) = self.txns.get(txn) {
            if shared.prepared.load(Ordering::Acquire) {
                return Ok(TxnStatus::Prepared);
            }
            if !lock_state(&shared)?.done {
                return Ok(TxnStatus::Pending);
            }
        }
        if self
            .db
            .get_pinned_cf(self.rows()?, mvcc::committed_key(txn))
            .map_err(rocks)?
            .is_some()
        {
            Ok(TxnStatus::Committed)
        } else if self
            .db
            .get_pinned_cf(self.rows()?, mvcc::aborted_key(txn))
            .map_err(rocks)?
            .is_some()
        {
            Ok(TxnStatus::Aborted)
        } else {
            Ok(TxnStatus::Unknown)
        }
    }

    /// Prepared transactions reloaded at start-up whose outcome this slice
    /// server has not learnt yet. Their phase two may have been lost in
    /// the restart after the coordinator counted it applied, so reads wait
    /// until there are none (see the slice server).
    pub fn in_doubt(&self) -> usize {
        self.in_doubt_count.load(Ordering::Acquire)
    }

    /// Forgets a committed or aborted transaction and releases its locks.
    fn finish(&self, txn: TxnId, state: &mut TxnState) {
        state.done = true;
        if self.in_doubt_count.load(Ordering::Acquire) > 0 {
            if let Ok(mut in_doubt) = self.in_doubt.lock() {
                in_doubt.remove(&txn);
                self.in_doubt_count.store(in_doubt.len(), Ordering::Release);
            }
        }
        self.txns.remove(txn);
        self.locks
            .unlock_all(txn, state.writes.keys().chain(state.locked.iter()));
        self.locks.forget(txn);
        state.writes.clear();
        state.locked.clear();
    }

    /// Drops `txn`'s pending writes or intents and releases its locks.
    /// Aborting an unknown transaction does nothing.
    pub fn abort(&self, txn: TxnId) -> Result<()> {
        let Some(shared) = self.txns.get(txn) else {
            // It may have committed here a moment ago, unsynced, its
            // coordinator having lost the answer: the abort that tells the
            // coordinator "committed before, or never" must not precede
            // the commit's sync.
            return self.db.flush_wal(true).map_err(rocks);
        };
        // A write of it may be waiting for a row lock, holding its state.
        self.locks.cancel_wait(txn, CancelReason::RolledBack);
        let mut state = lock_state(&shared)?;
        if state.done {
            return Ok(());
        }
        if state.prepared {
            // Its coordinator may yet send a decision (it should not: it
            // aborts only what no session holds); the marker makes sure a
            // commit of it is refused, until the transaction's snapshot is
            // released everywhere.
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(
                self.cf(INTENTS_CF)?,
                mvcc::intent_record_key(txn),
                mvcc::intent_record_key(txn.saturating_add(1)),
            );
            let marker = mvcc::aborted_key(txn);
            batch.put_cf(self.rows()?, &marker, []);
            batch.put_cf(
                self.cf(GC_CF)?,
                mvcc::gc_key(state.start_ts.saturating_add(1), mvcc::GC_ABORTED, &marker),
                [],
            );
            self.write_durably(batch)?;
        }
        self.finish(txn, &mut state);
        Ok(())
    }

    /// `ROLLBACK TO SAVEPOINT`: drops `txn`'s writes of statements `seq`
    /// and later.
    pub fn rollback_to(&self, txn: TxnId, seq: u32) -> Result<()> {
        let Some(shared) = self.txns.get(txn) else {
            return Ok(());
        };
        // The statement rolled back may still wait for a row lock here.
        self.locks.cancel_wait(txn, CancelReason::StatementRolledBack);
        let mut state = lock_state(&shared)?;
        if state.done {
            return Ok(());
        }
        if state.prepared {
            return Err(Error::internal(format!("transaction {txn} is already prepared")));
        }
        let emptied = state.rollback_to(seq);
        self.locks
            .unlock_all(txn, emptied.iter().filter(|k| !state.locked.contains(k.as_slice())));
        Ok(())
    }

    /// Who waits for whom for a row lock here (waiter, holder).
    pub fn lock_waits(&self) -> Vec<(TxnId, TxnId)> {
        self.locks.waits()
    }

    /// Makes `txn`, a victim of a deadlock that spans slice servers, stop
    /// waiting for a row lock here (its write fails with 40P01).
    pub fn break_deadlock(&self, txn: TxnId) {
        self.locks.cancel_wait(txn, CancelReason::Deadlock);
    }

    /// The transactions with pending writes or intents here: id, start
    /// timestamp, and whether prepared (waiting for the coordinator's decision).
    pub fn transactions(&self) -> Result<Vec<(TxnId, Timestamp, bool)>> {
        // Without locking the states: a write waiting for a row lock holds
        // its transaction's.
        let mut out: Vec<_> = self
            .txns
            .all()
            .into_iter()
            .map(|(txn, slot)| (txn, slot.start_ts, slot.prepared.load(Ordering::Acquire)))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Deletes versions that no snapshot at or after `horizon` can see:
    /// history versions superseded at or before it, and tombstones written
    /// at or before it that are still the row's newest version. Returns how
    /// many it deleted.
    ///
    /// A tombstone is deleted under its row's lock, so that no commit can
    /// write the row between the check and the delete; a row a transaction
    /// holds keeps its tombstone (and its `gc` entry) until a later run.
    pub fn gc(&self, horizon: Timestamp) -> Result<u64> {
        let (rows, history, gc) = (self.rows()?, self.cf(HISTORY_CF)?, self.cf(GC_CF)?);
        let upper = mvcc::gc_key(horizon.saturating_add(1), 0, &[]);
        let mut deleted = 0u64;
        let mut resume: Option<Vec<u8>> = None;
        loop {
            // Bounded batches, so that locks are held briefly.
            let mut batch = WriteBatch::default();
            let mut locked = Vec::new();
            let mut opts = ReadOptions::default();
            opts.set_iterate_upper_bound(upper.clone());
            let mut iter = self.db.raw_iterator_cf_opt(gc, opts);
            match &resume {
                Some(after) => {
                    iter.seek(after);
                    if iter.key() == Some(after.as_slice()) {
                        iter.next();
                    }
                }
                None => iter.seek_to_first(),
            }
            let mut n = 0;
            let mut seen = 0;
            while let Some(gk) = iter.key() {
                let (ts, kind, key) = mvcc::parse_gc_key(gk)?;
                seen += 1;
                resume = Some(gk.to_vec());
                let collect = match kind {
                    mvcc::GC_HISTORY => {
                        batch.delete_cf(history, key);
                        true
                    }
                    mvcc::GC_ABORTED | mvcc::GC_COMMITTED => {
                        batch.delete_cf(rows, key);
                        true
                    }
                    _ => match self.locks.try_lock(key, GC_TXN) {
                        Ok(_) => {
                            locked.push(key.to_vec());
                            if let Some(v) = self.db.get_pinned_cf(rows, key).map_err(rocks)? {
                                if row::peek(&v)? == (ts, true) {
                                    batch.delete_cf(rows, key);
                                }
                            }
                            true
                        }
                        Err(_) => false,
                    },
                };
                if collect {
                    batch.delete_cf(gc, gk);
                    n += 1;
                }
                if seen == 10_000 {
                    break;
                }
                iter.next();
            }
            let status = iter.status().map_err(rocks);
            drop(iter);
            let written = match status {
                Ok(()) if n > 0 => self.db.write_opt(batch, &WriteOptions::default()).map_err(rocks),
                other => other,
            };
            self.locks.unlock_all(GC_TXN, locked.iter());
            written?;
            deleted += n;
            if seen < 10_000 {
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
