//! Back-filling an index that is built online.
//!
//! While `CREATE INDEX` builds an index, writers already maintain its
//! entries for the rows they write (the index is *building* in the
//! catalog), and the build writes the entries of the rows that existed
//! before: every row of the table as a snapshot at timestamp `S` sees it.
//! A writer may have changed such a row since `S`, so the build must not
//! simply write the entry as the newest version: it would bring back an
//! entry that the writer deleted. Instead it writes each entry *as of
//! `S`* ([`SliceStore::backfill`]):
//!
//! - no version at the key: the entry becomes its newest version, stamped
//!   `S`;
//! - a newer version (written by a writer after `S`; a writer deletes an
//!   entry of a building index with `RowWrite::Erase`, which leaves a
//!   tombstone even where the entry is not back-filled yet): the entry goes to
//!   `history` beneath it, where only snapshots between `S` and that
//!   version see it (no reader uses the index there: it is usable from a
//!   timestamp after the build), and the writer's version stays in force;
//! - an older tombstone: the entry replaces it as the newest version;
//! - an older entry for the same row: nothing to do (a write of it since
//!   the build started, or a repeated request); for another row, in a
//!   unique index, two rows held the key at `S`: 23505.
//!
//! A back-filled version is marked ([`crate::row::mark_backfilled`]): it
//! records no change of the row, so a writer whose snapshot is older than
//! `S` does not take it for a concurrent update (no 40001 for it).
//!
//! Each key is written under its row lock, taken as the pseudo-transaction
//! `BACKFILL_TXN` without waiting: a writer's commit reads the newest
//! version and writes the next one under that lock, and nothing may come in
//! between. A key whose lock another transaction holds is handed back as
//! *busy* ([`Backfilled::busy`]); the coordinator sends it again once that
//! transaction has had time to finish, so a build never holds a writer up
//! for longer than one batch's write.

use std::time::Instant;

use rocksdb::WriteBatch;
use slicedb_common::{err, Datum, Result, TableId};

use crate::key::storage_key;
use crate::lock_table::{Locked, BACKFILL_TXN};
use crate::mvcc::{self, Timestamp, GC_CF, HISTORY_CF};
use crate::row::{self, encode_row};
use crate::store::rocks;
use crate::{RowKey, SliceStore};

/// What [`SliceStore::backfill`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Backfilled {
    /// Entries written (as the newest version or beneath a newer one).
    pub written: u64,
    /// Positions of the entries not written because another transaction
    /// held their row's lock: to be sent again.
    pub busy: Vec<u32>,
}

impl SliceStore {
    /// Writes index entries `entries` (row key, entry) of the index stored
    /// as `table`, as of snapshot timestamp `version` (see the module
    /// comment), durably. With `unique` (the index's name), an entry whose
    /// key holds another row's entry older than `version` is a 23505.
    pub fn backfill(
        &self,
        table: TableId,
        version: Timestamp,
        unique: Option<&str>,
        entries: &[(RowKey, Vec<Datum>)],
    ) -> Result<Backfilled> {
        let _one_at_a_time = self
            .backfills
            .lock()
            .map_err(|_| slicedb_common::Error::internal("back-fill lock poisoned"))?;
        let (rows, history, gc) = (self.rows()?, self.cf(HISTORY_CF)?, self.cf(GC_CF)?);
        let mut out = Backfilled::default();
        let mut locked: Vec<Vec<u8>> = Vec::with_capacity(entries.len());
        let mut batch = WriteBatch::default();
        let started = Instant::now();
        let result = (|| {
            for (pos, (key, entry)) in entries.iter().enumerate() {
                let k = storage_key(table, key);
                match self.locks.try_lock(&k, BACKFILL_TXN) {
                    Ok(Locked::Taken) => locked.push(k.clone()),
                    // A repeated key of this request.
                    Ok(Locked::AlreadyHeld) => {}
                    Err(_) => {
                        out.busy.push(pos as u32);
                        continue;
                    }
                }
                let mut ours = encode_row(0, entry)?;
                row::mark_backfilled(&mut ours, version)?;
                let Some(newest) = self.db.get_pinned_cf(rows, &k).map_err(rocks)? else {
                    batch.put_cf(rows, &k, &ours);
                    out.written += 1;
                    continue;
                };
                let (newer, tombstone) = row::peek(&newest)?;
                if newer == version {
                    // Written by an earlier request of this build.
                    continue;
                }
                if newer > version {
                    // Beneath the writer's version; collected once no
                    // snapshot older than it is left.
                    let hk = mvcc::history_key(&k, version);
                    batch.put_cf(history, &hk, mvcc::history_value(newer, &ours));
                    batch.put_cf(gc, mvcc::gc_key(newer, mvcc::GC_HISTORY, &hk), []);
                    out.written += 1;
                    continue;
                }
                if !tombstone {
                    if row::payload(&newest)? == row::payload(&ours)? {
                        continue;
                    }
                    if let Some(name) = unique {
                        return Err(err!(
                            UniqueViolation,
                            "could not create unique index \"{name}\": two rows hold one key"
                        ));
                    }
                }
                // The older version goes to history, superseded by ours.
                let hk = mvcc::history_key(&k, newer);
                batch.put_cf(history, &hk, mvcc::history_value(version, &newest));
                batch.put_cf(gc, mvcc::gc_key(version, mvcc::GC_HISTORY, &hk), []);
                batch.put_cf(rows, &k, &ours);
                out.written += 1;
            }
            self.write_durably(std::mem::take(&mut batch))
        })();
        self.locks.unlock_all(BACKFILL_TXN, locked.iter());
        tracing::trace!(
            table,
            written = out.written,
            busy = out.busy.len(),
            "back-filled index entries in {:?}",
            started.elapsed()
        );
        result.map(|()| out)
    }
}

#[cfg(test)]
mod tests {
    use slicedb_common::Datum;

    use crate::key::row_key;
    use crate::mvcc::{ReadAt, TxnWrite};
    use crate::{RowWrite, SliceStore};

    fn key(id: i64) -> Vec<u8> {
        row_key(1, &[Datum::Int64(id)]).unwrap()
    }

    fn entry(id: i64, v: &str) -> (Vec<u8>, Vec<Datum>) {
        (key(id), vec![Datum::Int64(id), Datum::Text(v.into())])
    }

    fn txn(ts: u64) -> TxnWrite {
        TxnWrite {
            txn: ts,
            start_ts: ts,
            seq: 1,
            continues: false,
            lock_timeout_ms: 0,
        }
    }

    /// A one-statement transaction with snapshot `start`, committed at `commit`.
    fn commit(store: &SliceStore, start: u64, commit: u64, writes: &[RowWrite]) {
        store.txn_write(txn(start), 9, "t_pkey", writes).unwrap();
        store.commit(start, commit, true).unwrap();
    }

    fn put(id: i64, v: &str) -> RowWrite {
        let (key, row) = entry(id, v);
        RowWrite::Put { key, row }
    }

    fn rows_at(store: &SliceStore, ts: u64) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        let at = ReadAt { ts, own: None };
        store
            .scan(9, &[(0, u16::MAX)], &at, |_, r| {
                if let [Datum::Int64(id), Datum::Text(v)] = &r[..] {
                    out.push((*id, v.clone()));
                }
                Ok(true)
            })
            .unwrap();
        out
    }

    /// Entries land as of the build's snapshot: beneath what writers wrote
    /// since (so an entry a writer deleted stays deleted), over older
    /// tombstones; an entry already there is kept; a writer whose snapshot
    /// is older than the build's does not take a back-filled entry for a
    /// concurrent update; a locked row is handed back as busy; and in a
    /// unique index, another row's older entry is a 23505.
    #[test]
    fn entries_are_written_as_of_the_snapshot_beneath_later_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SliceStore::open(dir.path()).unwrap();
        store.register(7, 1).unwrap();
        commit(&store, 100, 110, &[put(1, "kept"), put(3, "gone")]);
        commit(&store, 120, 130, &[RowWrite::Delete { key: key(3) }]);
        let snapshot = 200;
        commit(&store, 300, 310, &[put(4, "writer's")]);
        // A writer deletes an entry not back-filled yet: an erase leaves a
        // tombstone all the same.
        commit(&store, 320, 330, &[RowWrite::Erase { key: key(5) }]);

        let entries = [
            entry(1, "kept"),
            entry(3, "b3"),
            entry(4, "b4"),
            entry(5, "b5"),
            entry(6, "b6"),
        ];
        let done = store.backfill(9, snapshot, None, &entries).unwrap();
        assert_eq!(done.written, 4, "all but the entry already there");
        assert!(done.busy.is_empty());
        let text = |v: &[(i64, &str)]| v.iter().map(|(i, s)| (*i, s.to_string())).collect::<Vec<_>>();
        assert_eq!(
            rows_at(&store, snapshot),
            text(&[(1, "kept"), (3, "b3"), (4, "b4"), (5, "b5"), (6, "b6")])
        );
        assert_eq!(
            rows_at(&store, 400),
            text(&[(1, "kept"), (3, "b3"), (4, "writer's"), (6, "b6")]),
            "what writers wrote since the snapshot stays in force"
        );
        // Sent again: nothing changes.
        assert_eq!(store.backfill(9, snapshot, None, &entries).unwrap().written, 2);
        assert_eq!(rows_at(&store, 400).len(), 4);

        // A writer whose snapshot predates the build's.
        commit(&store, 150, 410, &[put(6, "older snapshot")]);
        assert_eq!(rows_at(&store, 420)[3], (6, "older snapshot".to_string()));

        // A row another transaction holds locked.
        store.txn_write(txn(500), 9, "t_pkey", &[put(7, "pending")]).unwrap();
        let done = store
            .backfill(9, snapshot, None, &[entry(7, "b7"), entry(8, "b8")])
            .unwrap();
        assert_eq!(done.busy, vec![0]);
        assert_eq!(done.written, 1);
        store.abort(500).unwrap();
        assert_eq!(
            store.backfill(9, snapshot, None, &[entry(7, "b7")]).unwrap().busy,
            Vec::<u32>::new()
        );

        let e = store
            .backfill(9, 600, Some("t_v_key"), &[entry(1, "another row")])
            .unwrap_err();
        assert_eq!(e.state.code(), "23505");
    }
}
