//! Row locks: which transaction holds each row a transaction has written.
//!
//! A transaction's first write to a row takes the row's lock; the lock goes
//! when the transaction commits or aborts, or when `ROLLBACK TO SAVEPOINT`
//! drops every image it wrote of the row. A second transaction that meets
//! a held lock fails at once with 40001 (first updater wins, so nothing
//! waits and nothing deadlocks).
//!
//! The table is sharded by a hash of the storage key: each shard is a small
//! map under its own mutex, held only for a lookup or an insert, never
//! across I/O. Writers of different rows therefore never wait for each
//! other here, and a commit's RocksDB write and fsync happen with no lock
//! of this table held.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

use crate::mvcc::TxnId;

/// The pseudo-transaction garbage collection locks rows under while it
/// deletes their tombstones (see [`crate::SliceStore::gc`]).
pub(crate) const GC_TXN: TxnId = TxnId::MAX;

const SHARDS: usize = 64;

/// One shard: storage key → the transaction holding its lock.
type Shard = HashMap<Vec<u8>, TxnId>;

/// How [`LockTable::try_lock`] found the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// The lock was free and is now the caller's.
    Taken,
    /// The caller already held it.
    AlreadyHeld,
}

/// Row locks by storage key.
pub(crate) struct LockTable {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

impl Default for LockTable {
    fn default() -> Self {
        LockTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl LockTable {
    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        // A shard's critical sections are a map lookup or insert: a panic
        // there cannot leave the map half-changed, so a poisoned shard is
        // still sound.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the lock of `key` for `txn`, or returns the transaction that
    /// holds it.
    pub fn try_lock(&self, key: &[u8], txn: TxnId) -> Result<Locked, TxnId> {
        let mut shard = self.shard(key);
        match shard.get(key) {
            Some(holder) if *holder == txn => Ok(Locked::AlreadyHeld),
            Some(holder) => Err(*holder),
            None => {
                shard.insert(key.to_vec(), txn);
                Ok(Locked::Taken)
            }
        }
    }

    /// Releases `txn`'s lock of `key`; a lock another transaction holds
    /// stays.
    pub fn unlock(&self, key: &[u8], txn: TxnId) {
        let mut shard = self.shard(key);
        if shard.get(key) == Some(&txn) {
            shard.remove(key);
        }
    }

    /// Releases `txn`'s locks of `keys`.
    pub fn unlock_all<'a>(&self, txn: TxnId, keys: impl Iterator<Item = &'a Vec<u8>>) {
        for k in keys {
            self.unlock(k, txn);
        }
    }

    /// The transaction holding `key`'s lock.
    #[cfg(test)]
    pub fn holder(&self, key: &[u8]) -> Option<TxnId> {
        self.shard(key).get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
