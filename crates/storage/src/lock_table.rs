//! Row locks: which transaction holds each row a transaction has written,
//! and who waits for it.
//!
//! A transaction's first write to a row takes the row's lock; the lock goes
//! when the transaction commits or aborts, or when `ROLLBACK TO SAVEPOINT`
//! drops every image it wrote of the row. A second transaction that meets
//! a held lock **waits** for it, as in PostgreSQL:
//!
//! - until the holder finishes, and then takes the lock (what it may do
//!   with the row is decided by its caller: under snapshot isolation, a
//!   row the holder committed after the waiter's snapshot is a 40001);
//! - or until its `lock_timeout` passes ([`LockError::Timeout`], 55P03);
//! - or until it would close a cycle of waiting transactions on this slice
//!   server ([`LockError::Deadlock`], 40P01: the transaction that closes
//!   the cycle is the victim, so the others go on);
//! - or until it is cancelled ([`LockTable::cancel_wait`]): the coordinator
//!   picks a victim of a cycle that spans slice servers from
//!   [`LockTable::waits`] (40P01), or the waiter's transaction was rolled
//!   back (its statement was cancelled, 57014).
//!
//! The table is sharded by a hash of the storage key: each shard is a small
//! map under its own mutex, held only for a lookup or an insert, never
//! across I/O, with a condition variable its waiters sleep on. Writers of
//! different rows never wait for each other here, and a commit's RocksDB
//! write and fsync happen with no lock of this table held.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::mvcc::TxnId;

/// The pseudo-transaction garbage collection locks rows under while it
/// deletes their tombstones (see [`crate::SliceStore::gc`]). It never waits.
pub(crate) const GC_TXN: TxnId = TxnId::MAX;

/// The pseudo-transaction an index build's back-fill locks rows under
/// while it writes their entries (see `crate::backfill`). It never waits
/// either.
pub(crate) const BACKFILL_TXN: TxnId = TxnId::MAX - 1;

/// Is `txn` one of the pseudo-transactions that take only free locks and
/// hold them for one batch? Others wait for them without recording an
/// edge of the wait graph.
fn never_waits(txn: TxnId) -> bool {
    txn >= BACKFILL_TXN
}

const SHARDS: usize = 64;

/// How often a waiter looks again for a cancellation: cancellations wake
/// every shard, this only bounds a missed wake-up.
const RECHECK: Duration = Duration::from_millis(200);

/// One shard: storage key → the transaction holding its lock.
type Shard = HashMap<Vec<u8>, TxnId>;

/// How [`LockTable::lock`] found the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// The lock was free (or freed while waiting) and is now the caller's.
    Taken,
    /// The caller already held it.
    AlreadyHeld,
}

/// Why [`LockTable::lock`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockError {
    /// The lock timeout passed while the lock was held by the transaction given.
    Timeout(TxnId),
    /// Waiting would close a cycle, or the coordinator broke one.
    Deadlock(TxnId),
    /// The waiter's transaction was rolled back meanwhile.
    Cancelled,
    /// The caller is one that never waits for others ([`GC_TXN`] and
    /// [`BACKFILL_TXN`] only take free locks).
    Busy(TxnId),
}

/// Why a waiter was told to stop waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The coordinator broke a deadlock with it.
    Deadlock,
    /// Its transaction is being rolled back: it waits no more, ever.
    RolledBack,
    /// Its statement is being rolled back (`ROLLBACK TO SAVEPOINT`).
    StatementRolledBack,
}

/// Row locks by storage key, with their waiters.
pub(crate) struct LockTable {
    shards: Box<[(Mutex<Shard>, Condvar)]>,
    hasher: RandomState,
    /// Who waits for whom: waiter → holder.
    waits: Mutex<HashMap<TxnId, TxnId>>,
    /// Waiters told to stop waiting, and why.
    cancelled: Mutex<HashMap<TxnId, CancelReason>>,
}

impl Default for LockTable {
    fn default() -> Self {
        LockTable {
            shards: (0..SHARDS)
                .map(|_| (Mutex::new(HashMap::new()), Condvar::new()))
                .collect(),
            hasher: RandomState::new(),
            waits: Mutex::default(),
            cancelled: Mutex::default(),
        }
    }
}

/// Locks a mutex whose critical sections cannot leave its data
/// half-changed (map inserts, lookups and removals): a poisoned one is
/// still sound.
fn sound<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LockTable {
    fn shard_of(&self, key: &[u8]) -> &(Mutex<Shard>, Condvar) {
        &self.shards[(self.hasher.hash_one(key) as usize) % self.shards.len()]
    }

    /// Takes the lock of `key` for `txn` if it is free, or returns the
    /// transaction that holds it. Never waits.
    pub fn try_lock(&self, key: &[u8], txn: TxnId) -> Result<Locked, TxnId> {
        let mut shard = sound(&self.shard_of(key).0);
        match shard.get(key) {
            Some(holder) if *holder == txn => Ok(Locked::AlreadyHeld),
            Some(holder) => Err(*holder),
            None => {
                shard.insert(key.to_vec(), txn);
                Ok(Locked::Taken)
            }
        }
    }

    /// Takes the lock of `key` for `txn`, waiting for its holder to finish
    /// for at most `timeout` (`None`: as long as it takes).
    pub fn lock(&self, key: &[u8], txn: TxnId, timeout: Option<Duration>) -> Result<Locked, LockError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let (mutex, cv) = self.shard_of(key);
        let mut shard = sound(mutex);
        let result = loop {
            let holder = match shard.get(key) {
                Some(holder) if *holder == txn => break Ok(Locked::AlreadyHeld),
                Some(holder) => *holder,
                None => {
                    shard.insert(key.to_vec(), txn);
                    break Ok(Locked::Taken);
                }
            };
            // Garbage collection holds a lock for one batch and never
            // waits; others wait for it without recording an edge.
            if never_waits(txn) {
                break Err(LockError::Busy(holder));
            }
            if let Some(reason) = self.cancelled(txn) {
                break Err(match reason {
                    CancelReason::Deadlock => LockError::Deadlock(holder),
                    CancelReason::RolledBack | CancelReason::StatementRolledBack => LockError::Cancelled,
                });
            }
            if !never_waits(holder) && self.closes_cycle(txn, holder) {
                break Err(LockError::Deadlock(holder));
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(RECHECK),
                    _ => break Err(LockError::Timeout(holder)),
                },
                None => RECHECK,
            };
            shard = cv.wait_timeout(shard, wait).unwrap_or_else(|e| e.into_inner()).0;
        };
        // The wait ends under the shard's mutex: another transaction can
        // see this one as the key's holder only after that, so it never
        // follows a stale "waits for" edge of this one into a cycle that
        // is not there (a false 40P01 that pgbench's TPC-B met about once
        // in 10,000 transactions on one branch).
        sound(&self.waits).remove(&txn);
        drop(shard);
        result
    }

    /// Records that `waiter` waits for `holder`; says whether that closes a
    /// cycle of waiting transactions (then nothing is recorded).
    fn closes_cycle(&self, waiter: TxnId, holder: TxnId) -> bool {
        let mut waits = sound(&self.waits);
        let mut at = holder;
        for _ in 0..=waits.len() {
            if at == waiter {
                waits.remove(&waiter);
                return true;
            }
            match waits.get(&at) {
                Some(next) => at = *next,
                None => break,
            }
        }
        waits.insert(waiter, holder);
        false
    }

    /// Releases `txn`'s lock of `key`; a lock another transaction holds
    /// stays.
    pub fn unlock(&self, key: &[u8], txn: TxnId) {
        let (mutex, cv) = self.shard_of(key);
        let mut shard = sound(mutex);
        if shard.get(key) == Some(&txn) {
            shard.remove(key);
            cv.notify_all();
        }
    }

    /// Releases `txn`'s locks of `keys`.
    pub fn unlock_all<'a>(&self, txn: TxnId, keys: impl Iterator<Item = &'a Vec<u8>>) {
        for k in keys {
            self.unlock(k, txn);
        }
    }

    /// Why `txn` must stop waiting, if it must. A deadlock victim is told
    /// once; a rolled-back transaction stays cancelled until forgotten.
    fn cancelled(&self, txn: TxnId) -> Option<CancelReason> {
        let mut cancelled = sound(&self.cancelled);
        match cancelled.get(&txn) {
            Some(CancelReason::RolledBack) => Some(CancelReason::RolledBack),
            Some(_) => cancelled.remove(&txn),
            None => None,
        }
    }

    /// Makes `txn` stop waiting with `reason`: now if it waits. A
    /// transaction being rolled back is also refused any later wait, until
    /// [`LockTable::forget`]; otherwise a transaction that no longer waits
    /// is left alone.
    pub fn cancel_wait(&self, txn: TxnId, reason: CancelReason) {
        let waiting = sound(&self.waits).contains_key(&txn);
        if reason != CancelReason::RolledBack && !waiting {
            // It got its lock since (or never waited): nothing to stop.
            return;
        }
        sound(&self.cancelled).insert(txn, reason);
        if !waiting {
            return;
        }
        for (mutex, cv) in self.shards.iter() {
            let _shard = sound(mutex);
            cv.notify_all();
        }
    }

    /// Forgets a finished transaction's cancellation.
    pub fn forget(&self, txn: TxnId) {
        sound(&self.cancelled).remove(&txn);
    }

    /// Who waits for whom now (waiter, holder): the coordinator joins these
    /// edges of every slice server to find cycles that span them.
    pub fn waits(&self) -> Vec<(TxnId, TxnId)> {
        let mut out: Vec<_> = sound(&self.waits).iter().map(|(w, h)| (*w, *h)).collect();
        out.sort_unstable();
        out
    }

    /// The transaction holding `key`'s lock.
    #[cfg(test)]
    pub fn holder(&self, key: &[u8]) -> Option<TxnId> {
        sound(&self.shard_of(key).0).get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Waits (at most 10 s) until `txn` is recorded as waiting.
    fn until_waiting(locks: &LockTable, txn: TxnId) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !locks.waits().iter().any(|(w, _)| *w == txn) {
            assert!(Instant::now() < deadline, "{txn} never waited");
            std::thread::yield_now();
        }
    }

    #[test]
    fn first_locker_wins_until_it_unlocks() {
        let locks = LockTable::default();
        assert_eq!(locks.try_lock(b"k", 1), Ok(Locked::Taken));
        assert_eq!(locks.try_lock(b"k", 1), Ok(Locked::AlreadyHeld));
        assert_eq!(locks.try_lock(b"k", 2), Err(1));
        locks.unlock(b"k", 2);
        assert_eq!(locks.holder(b"k"), Some(1), "only the holder unlocks");
        locks.unlock_all(1, [b"k".to_vec(), b"other".to_vec()].iter());
        assert_eq!(locks.holder(b"k"), None);
        assert_eq!(locks.try_lock(b"k", 2), Ok(Locked::Taken));
    }

    #[test]
    fn a_waiter_gets_the_lock_when_its_holder_finishes_or_times_out() {
        let locks = Arc::new(LockTable::default());
        locks.try_lock(b"k", 1).unwrap();
        assert_eq!(
            locks.lock(b"k", 2, Some(Duration::from_millis(20))),
            Err(LockError::Timeout(1))
        );
        assert!(locks.waits().is_empty());
        let waiter = {
            let locks = locks.clone();
            std::thread::spawn(move || locks.lock(b"k", 2, None))
        };
        until_waiting(&locks, 2);
        assert_eq!(locks.waits(), vec![(2, 1)]);
        locks.unlock(b"k", 1);
        assert_eq!(waiter.join().unwrap(), Ok(Locked::Taken));
        assert_eq!(locks.holder(b"k"), Some(2));
        assert!(locks.waits().is_empty());
    }

    #[test]
    fn the_transaction_that_closes_a_cycle_is_the_deadlock_victim() {
        let locks = Arc::new(LockTable::default());
        locks.try_lock(b"a", 1).unwrap();
        locks.try_lock(b"b", 2).unwrap();
        let one = {
            let locks = locks.clone();
            std::thread::spawn(move || locks.lock(b"b", 1, None))
        };
        until_waiting(&locks, 1);
        assert_eq!(locks.lock(b"a", 2, None), Err(LockError::Deadlock(1)));
        // The victim rolls back: the survivor gets its lock.
        locks.unlock(b"b", 2);
        assert_eq!(one.join().unwrap(), Ok(Locked::Taken));
    }

    #[test]
    fn a_cancelled_waiter_stops_waiting() {
        let locks = Arc::new(LockTable::default());
        locks.try_lock(b"k", 1).unwrap();
        let waiter = {
            let locks = locks.clone();
            std::thread::spawn(move || locks.lock(b"k", 2, None))
        };
        until_waiting(&locks, 2);
        locks.cancel_wait(2, CancelReason::Deadlock);
        assert_eq!(waiter.join().unwrap(), Err(LockError::Deadlock(1)));
        assert_eq!(locks.holder(b"k"), Some(1));
        // Garbage collection never waits.
        assert_eq!(locks.lock(b"k", GC_TXN, None), Err(LockError::Busy(1)));
    }
}
