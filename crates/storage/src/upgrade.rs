//! Opening a data directory written by an earlier slicedb.
//!
//! The row format is recorded under the metadata key `row_format`. A
//! directory without it was written with format 1 (`slicedb_codec::legacy`);
//! [`upgrade`] rewrites every stored row value in the current format
//! before the store serves anything:
//!
//! - the newest versions of rows (the default column family, tables ≠ 0);
//! - older versions in `history` (`[superseded at][value]`);
//! - prepared transactions' intents (`[1][value]`);
//! - write-queue entries of a redistribution in progress.
//!
//! Values are converted in batches and each only if it is still of format
//! 1, so a crash half-way leaves a directory that the next start finishes
//! upgrading; the marker is written last. A directory marked with a newer
//! format than this build reads is refused, never misread.

use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};
use slicedb_codec::{legacy, row};
use slicedb_common::{Error, Result, SqlState};

use crate::key::{table_prefix, META_TABLE};
use crate::mvcc::{HISTORY_CF, INTENTS_CF};
use crate::slice_db::{Families, ROWS_CF};
use crate::store::rocks;
use crate::write_queue::{self, QueueEntry};

/// `[format u8]`: the row format of every value in the directory.
pub(crate) const FORMAT_META: &[u8] = b"\0\0\0\0row_format";

/// Values rewritten per write batch.
const BATCH: usize = 10_000;

/// Brings the store of `families` in `db` (at `path`, for messages) to the
/// current row format, or refuses it. Returns how many values were
/// rewritten.
pub(crate) fn upgrade(db: &DB, families: &Families, path: &std::path::Path) -> Result<u64> {
    let rows = cf(db, families, ROWS_CF)?;
    match db.get_cf(rows, FORMAT_META).map_err(rocks)?.as_deref() {
        Some([f]) if *f == row::FORMAT => return Ok(0),
        Some([f]) if *f > row::FORMAT => {
            return Err(Error::new(
                SqlState::ObjectNotInPrerequisiteState,
                format!(
                    "data directory {} holds rows of format {f}, newer than this slicedb reads (format {}): run the slicedb that wrote it",
                    path.display(),
                    row::FORMAT
                ),
            ))
        }
        Some([_]) | None => {}
        Some(_) => return Err(Error::internal("corrupt row format marker")),
    }
    let mut rewriter = Rewriter {
        db,
        families,
        batch: WriteBatch::default(),
        pending: 0,
        total: 0,
    };
    let meta = table_prefix(META_TABLE);
    let queues = write_queue::queues_prefix();
    for item in db.iterator_cf(rows, IteratorMode::Start) {
        let (k, v) = item.map_err(rocks)?;
        if !k.starts_with(&meta) {
            if legacy::is_v1(&v) {
                rewriter.put(ROWS_CF, &k, legacy::upgrade_value(&v)?)?;
            }
        } else if k.starts_with(&queues) {
            // An entry that names no table (META_TABLE here) keeps that shape.
            let mut entry: QueueEntry = write_queue::decode_entry(&v, META_TABLE)?;
            if let Some(value) = entry.value.as_mut().filter(|v| legacy::is_v1(v)) {
                *value = legacy::upgrade_value(value)?;
                let bytes = match entry.table {
                    META_TABLE => write_queue::encode(&(entry.key, entry.value))?,
                    _ => write_queue::encode(&entry)?,
                };
                rewriter.put(ROWS_CF, &k, bytes)?;
            }
        }
    }
    for item in db.iterator_cf(cf(db, families, HISTORY_CF)?, IteratorMode::Start) {
        let (k, v) = item.map_err(rocks)?;
        if let Some(old) = v.get(8..).filter(|old| legacy::is_v1(old)) {
            let mut value = v[..8].to_vec();
            value.extend_from_slice(&legacy::upgrade_value(old)?);
            rewriter.put(HISTORY_CF, &k, value)?;
        }
    }
    for item in db.iterator_cf(cf(db, families, INTENTS_CF)?, IteratorMode::Start) {
        let (k, v) = item.map_err(rocks)?;
        if k.len() > 8 {
            if let Some((1, old)) = v.split_first().filter(|(_, old)| legacy::is_v1(old)) {
                let mut value = vec![1];
                value.extend_from_slice(&legacy::upgrade_value(old)?);
                rewriter.put(INTENTS_CF, &k, value)?;
            }
        }
    }
    rewriter.batch.put_cf(rows, FORMAT_META, [row::FORMAT]);
    rewriter.flush()?;
    if rewriter.total > 0 {
        tracing::info!(
            path = %path.display(),
            values = rewriter.total,
            "upgraded the data directory from row format 1 to {}",
            row::FORMAT
        );
    }
    Ok(rewriter.total)
}

/// The store's family that plays `role`.
fn cf<'a>(db: &'a DB, families: &Families, role: &str) -> Result<&'a rocksdb::ColumnFamily> {
    let name = families.name(role);
    db.cf_handle(name)
        .ok_or_else(|| Error::internal(format!("slice store has no {name} column family")))
}

struct Rewriter<'a> {
    db: &'a DB,
    families: &'a Families,
    batch: WriteBatch,
    pending: usize,
    total: u64,
}

impl Rewriter<'_> {
    fn put(&mut self, role: &str, k: &[u8], v: Vec<u8>) -> Result<()> {
        self.batch.put_cf(cf(self.db, self.families, role)?, k, v);
        self.pending += 1;
        self.total += 1;
        if self.pending >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db
            .write_opt(std::mem::take(&mut self.batch), &opts)
            .map_err(rocks)?;
        self.pending = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use slicedb_common::Datum;

    use super::*;
    use crate::key::{row_key, storage_key};
    use crate::mvcc::{self, GC_CF};
    use crate::{ReadAt, SliceStore};

    /// A directory as slicedb wrote it before row format 2: no marker.
    fn old_directory(path: &std::path::Path) -> DB {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        DB::open_cf(&opts, path, [HISTORY_CF, INTENTS_CF, GC_CF]).unwrap()
    }

    #[test]
    fn a_format_1_directory_is_upgraded_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let k = row_key(3, &[Datum::Int64(1)]).unwrap();
        let gone = row_key(3, &[Datum::Int64(2)]).unwrap();
        {
            let db = old_directory(dir.path());
            let sk = storage_key(7, &k);
            db.put(
                &sk,
                legacy::encode_row_v1(5, &[Datum::Int64(1), Datum::Text("new".into())]),
            )
            .unwrap();
            let old = legacy::encode_row_v1(3, &[Datum::Int64(1), Datum::Text("old".into())]);
            db.put_cf(
                db.cf_handle(HISTORY_CF).unwrap(),
                mvcc::history_key(&sk, 3),
                mvcc::history_value(5, &old),
            )
            .unwrap();
            let mut tombstone = legacy::encode_row_v1(6, &[]);
            tombstone[9] = row::FLAG_TOMBSTONE;
            db.put(storage_key(7, &gone), tombstone).unwrap();
            // As entries were written before they named their table.
            let entry = (k.clone(), Some(legacy::encode_row_v1(5, &[Datum::Int64(1)])));
            db.put(write_queue::queue_key(1, 2, 0), write_queue::encode(&entry).unwrap())
                .unwrap();
        }
        let store = SliceStore::open(dir.path()).unwrap();
        let row = |at| store.get(7, &k, &at).unwrap();
        assert_eq!(
            row(ReadAt::LATEST),
            Some(vec![Datum::Int64(1), Datum::Text("new".into())])
        );
        assert_eq!(
            row(ReadAt::at(4)),
            Some(vec![Datum::Int64(1), Datum::Text("old".into())])
        );
        assert_eq!(store.get(7, &gone, &ReadAt::LATEST).unwrap(), None);
        let mut seen = Vec::new();
        store
            .scan(7, &[(0, u16::MAX)], &ReadAt::LATEST, |_, r| {
                seen.push(r);
                Ok(true)
            })
            .unwrap();
        assert_eq!(seen, vec![vec![Datum::Int64(1), Datum::Text("new".into())]]);
        drop(store);
        let db = old_directory(dir.path());
        let entry: QueueEntry =
            write_queue::decode_entry(&db.get(write_queue::queue_key(1, 2, 0)).unwrap().unwrap(), 7).unwrap();
        assert_eq!(entry.table, 7, "it kept the shape that names no table");
        assert_eq!(
            row::decode_row(&entry.value.unwrap()).unwrap().values,
            vec![Datum::Int64(1)]
        );
        assert_eq!(
            upgrade(&db, &Families::standalone(), dir.path()).unwrap(),
            0,
            "the marker says it is done"
        );
    }

    #[test]
    fn a_newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        old_directory(dir.path()).put(FORMAT_META, [row::FORMAT + 1]).unwrap();
        let e = SliceStore::open(dir.path()).err().expect("refused");
        assert!(e.to_string().contains("rows of format 3"), "{e}");
    }
}
