//! [`SliceStore`]: a slice server's RocksDB.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use rocksdb::{Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB};
use slicedb_common::{err, Datum, Error, NodeId, Result, TableId};

use crate::key::{self, bucket_end_exclusive, bucket_start, storage_key, RowKey, META_TABLE};
use crate::row::{decode_row, encode_row};

/// One row change sent to a slice server.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RowWrite {
    /// Insert a new row; fails with 23505 if the key exists.
    Insert { key: RowKey, row: Vec<Datum> },
    /// Insert a row into a table without a primary key: the slice server
    /// assigns a hidden row id in `bucket`.
    InsertWithRowId { bucket: u16, row: Vec<Datum> },
    /// Write a full row image, whether or not the key exists.
    Put { key: RowKey, row: Vec<Datum> },
    /// Delete a row if present.
    Delete { key: RowKey },
}

/// Rows and bytes a slice server holds for one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableStats {
    pub rows: u64,
    pub bytes: u64,
}

/// A slice server's storage.
pub struct SliceStore {
    db: DB,
    /// The node id this store belongs to; 0 until registered.
    node: AtomicU32,
    /// The cluster this store belongs to; 0 until registered.
    cluster: AtomicU64,
    /// Serializes writers so that the duplicate-key check and the batch
    /// that follows it are atomic. Reads never take it.
    write_lock: Mutex<u64>,
}

const ROWID_META: &[u8] = b"\0\0\0\0rowid";
/// `[node id u32 BE][cluster id u64 BE]`, written once by [`SliceStore::register`].
const IDENTITY_META: &[u8] = b"\0\0\0\0identity";

impl SliceStore {
    /// Opens (or creates) the store at `path`. Its node identity is the one
    /// recorded by [`SliceStore::register`], if any.
    pub fn open(path: &Path) -> Result<SliceStore> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.increase_parallelism(2);
        let db =
            DB::open(&opts, path).map_err(|e| Error::io(format!("opening slice store {}: {e}", path.display())))?;
        debug_assert_eq!(&ROWID_META[..4], &key::table_prefix(META_TABLE));
        let next_rowid = match db.get(ROWID_META).map_err(rocks)? {
            Some(v) if v.len() == 8 => u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
            _ => 0,
        };
        let (node, cluster) = match db.get(IDENTITY_META).map_err(rocks)? {
            Some(v) if v.len() == 12 => (
                u32::from_be_bytes(v[..4].try_into().expect("4 bytes")),
                u64::from_be_bytes(v[4..12].try_into().expect("8 bytes")),
            ),
            Some(_) => return Err(Error::internal("corrupt slice server identity")),
            None => (0, 0),
        };
        Ok(SliceStore {
            db,
            node: AtomicU32::new(node),
            cluster: AtomicU64::new(cluster),
            write_lock: Mutex::new(next_rowid),
        })
    }

    /// The node id and cluster id this store was registered as.
    pub fn identity(&self) -> Option<(NodeId, u64)> {
        let node = self.node.load(Ordering::Acquire);
        (node != 0).then(|| (node, self.cluster.load(Ordering::Acquire)))
    }

    /// Records for good that this store is node `node` of cluster `cluster`.
    /// Registering again as the same node is a no-op; as another, an error.
    pub fn register(&self, node: NodeId, cluster: u64) -> Result<()> {
        if node == 0 {
            return Err(err!(InvalidParameterValue, "node id 0 is reserved"));
        }
        let _guard = self
            .write_lock
            .lock()
            .map_err(|_| Error::internal("slice store write lock poisoned"))?;
        match self.identity() {
            Some(id) if id == (node, cluster) => return Ok(()),
            Some((n, c)) => {
                return Err(err!(
                    ObjectNotInPrerequisiteState,
                    "this slice server is already node {n} of cluster {c:016x}"
                ))
            }
            None => {}
        }
        let mut v = node.to_be_bytes().to_vec();
        v.extend_from_slice(&cluster.to_be_bytes());
        self.db
            .put_opt(IDENTITY_META, v, &Self::write_options())
            .map_err(rocks)?;
        self.cluster.store(cluster, Ordering::Release);
        self.node.store(node, Ordering::Release);
        Ok(())
    }

    fn write_options() -> WriteOptions {
        // Every acknowledged write is fsynced, like PostgreSQL's commit.
        let mut w = WriteOptions::default();
        w.set_sync(true);
        w
    }

    /// Applies `writes` to `table` as one RocksDB write batch: all or nothing.
    /// Returns the number of rows inserted, written or deleted.
    pub fn write(&self, table: TableId, table_name: &str, writes: &[RowWrite]) -> Result<u64> {
        let mut next_rowid = self
            .write_lock
            .lock()
            .map_err(|_| Error::internal("slice store write lock poisoned"))?;
        let mut batch = WriteBatch::default();
        // Whether each key touched so far in this batch exists after it, so
        // that a delete followed by an insert of the same key (an UPDATE that
        // changes the primary key) is judged against the batch, not the DB.
        let mut touched: HashMap<Vec<u8>, bool> = HashMap::new();
        let mut rowid = *next_rowid;
        let mut affected = 0u64;
        for w in writes {
            match w {
                RowWrite::Insert { key, row } => {
                    let k = storage_key(table, key);
                    let exists = match touched.get(&k) {
                        Some(e) => *e,
                        None => self.db.get_pinned(&k).map_err(rocks)?.is_some(),
                    };
                    if exists {
                        return Err(err!(
                            UniqueViolation,
                            "duplicate key value violates unique constraint \"{table_name}_pkey\""
                        ));
                    }
                    batch.put(&k, encode_row(0, row)?);
                    touched.insert(k, true);
                    affected += 1;
                }
                RowWrite::InsertWithRowId { bucket, row } => {
                    let node = self.node.load(Ordering::Acquire);
                    if node == 0 {
                        return Err(err!(
                            ObjectNotInPrerequisiteState,
                            "slice server is not registered with a cluster"
                        ));
                    }
                    let id = ((node as u64) << 40) | rowid;
                    rowid += 1;
                    batch.put(storage_key(table, &key::rowid_key(*bucket, id)), encode_row(0, row)?);
                    affected += 1;
                }
                RowWrite::Put { key, row } => {
                    let k = storage_key(table, key);
                    batch.put(&k, encode_row(0, row)?);
                    touched.insert(k, true);
                    affected += 1;
                }
                RowWrite::Delete { key } => {
                    let k = storage_key(table, key);
                    let exists = match touched.get(&k) {
                        Some(e) => *e,
                        None => self.db.get_pinned(&k).map_err(rocks)?.is_some(),
                    };
                    if exists {
                        affected += 1;
                    }
                    batch.delete(&k);
                    touched.insert(k, false);
                }
            }
        }
        if rowid != *next_rowid {
            batch.put(ROWID_META, rowid.to_be_bytes());
        }
        // Apply under the lock (so the duplicate checks above stay true),
        // but fsync the WAL after releasing it: concurrent writers then
        // share one fsync (group commit) instead of queueing for their own.
        // The caller is answered only after the sync, so every acknowledged
        // write is durable.
        self.db.write_opt(batch, &WriteOptions::default()).map_err(rocks)?;
        *next_rowid = rowid;
        drop(next_rowid);
        self.db.flush_wal(true).map_err(rocks)?;
        Ok(affected)
    }

    /// Visits the rows of `table` in the given bucket ranges (inclusive), in
    /// key order, from one consistent RocksDB snapshot. `visit` returns
    /// `false` to stop early.
    pub fn scan(
        &self,
        table: TableId,
        ranges: &[(u16, u16)],
        mut visit: impl FnMut(&[u8], Vec<Datum>) -> Result<bool>,
    ) -> Result<()> {
        let snapshot = self.db.snapshot();
        for (start, end) in ranges {
            let lower = bucket_start(table, *start);
            let upper = bucket_end_exclusive(table, *end);
            let mut opts = ReadOptions::default();
            opts.set_iterate_upper_bound(upper);
            let iter = snapshot.iterator_opt(IteratorMode::From(&lower, Direction::Forward), opts);
            for item in iter {
                let (k, v) = item.map_err(rocks)?;
                let row = decode_row(&v)?;
                if row.tombstone {
                    continue;
                }
                if !visit(&k[4..], row.values)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Reads one row by key.
    pub fn get(&self, table: TableId, row_key: &[u8]) -> Result<Option<Vec<Datum>>> {
        match self.db.get_pinned(storage_key(table, row_key)).map_err(rocks)? {
            Some(v) => {
                let row = decode_row(&v)?;
                Ok((!row.tombstone).then_some(row.values))
            }
            None => Ok(None),
        }
    }

    /// Deletes whole buckets of `table` (inclusive ranges) with range tombstones.
    pub fn delete_buckets(&self, table: TableId, ranges: &[(u16, u16)]) -> Result<()> {
        let _guard = self
            .write_lock
            .lock()
            .map_err(|_| Error::internal("slice store write lock poisoned"))?;
        let mut batch = WriteBatch::default();
        for (start, end) in ranges {
            batch.delete_range(bucket_start(table, *start), bucket_end_exclusive(table, *end));
        }
        self.db.write_opt(batch, &Self::write_options()).map_err(rocks)
    }

    /// Deletes every row of `table`.
    pub fn delete_table(&self, table: TableId) -> Result<()> {
        self.delete_buckets(table, &[(0, u16::MAX)])
    }

    /// Counts the rows and bytes (key + value) of `table`.
    pub fn table_stats(&self, table: TableId) -> Result<TableStats> {
        let mut stats = TableStats::default();
        let lower = key::table_prefix(table).to_vec();
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(bucket_end_exclusive(table, u16::MAX));
        for item in self
            .db
            .iterator_opt(IteratorMode::From(&lower, Direction::Forward), opts)
        {
            let (k, v) = item.map_err(rocks)?;
            stats.rows += 1;
            stats.bytes += (k.len() + v.len()) as u64;
        }
        Ok(stats)
    }
}

fn rocks(e: rocksdb::Error) -> Error {
    Error::io(format!("slice storage: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::row_key;

    fn rows(store: &SliceStore, table: TableId, ranges: &[(u16, u16)]) -> Vec<Vec<Datum>> {
        let mut out = Vec::new();
        store
            .scan(table, ranges, |_, r| {
                out.push(r);
                Ok(true)
            })
            .unwrap();
        out
    }

    #[test]
    fn writes_scans_and_bucket_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SliceStore::open(dir.path()).unwrap();
        store.register(1, 7).unwrap();
        let w = |b: u16, id: i64| RowWrite::Insert {
            key: row_key(b, &[Datum::Int64(id)]).unwrap(),
            row: vec![Datum::Int64(id)],
        };
        store.write(1, "t", &[w(1, 10), w(2, 20), w(65535, 30)]).unwrap();
        store.write(2, "u", &[w(1, 99)]).unwrap();
        assert_eq!(rows(&store, 1, &[(0, 65535)]).len(), 3);
        assert_eq!(rows(&store, 1, &[(2, 2)]), vec![vec![Datum::Int64(20)]]);
        assert_eq!(rows(&store, 1, &[(65535, 65535)]), vec![vec![Datum::Int64(30)]]);

        // a duplicate key fails the whole batch
        let e = store.write(1, "t", &[w(3, 40), w(1, 10)]).unwrap_err();
        assert_eq!(e.state.code(), "23505");
        assert_eq!(rows(&store, 1, &[(3, 3)]).len(), 0);

        store.delete_buckets(1, &[(0, 1), (65535, 65535)]).unwrap();
        assert_eq!(rows(&store, 1, &[(0, 65535)]), vec![vec![Datum::Int64(20)]]);
        assert_eq!(rows(&store, 2, &[(0, 65535)]).len(), 1, "other tables untouched");
        assert_eq!(store.table_stats(2).unwrap().rows, 1);
    }

    #[test]
    fn row_ids_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SliceStore::open(dir.path()).unwrap();
            store.register(2, 7).unwrap();
            let w = RowWrite::InsertWithRowId {
                bucket: 5,
                row: vec![Datum::Int32(1)],
            };
            store.write(1, "t", &[w.clone(), w]).unwrap();
        }
        let store = SliceStore::open(dir.path()).unwrap();
        assert_eq!(store.identity(), Some((2, 7)), "the identity survives reopen");
        assert_eq!(store.register(3, 7).unwrap_err().state.code(), "55000");
        let w = RowWrite::InsertWithRowId {
            bucket: 5,
            row: vec![Datum::Int32(1)],
        };
        store.write(1, "t", &[w]).unwrap();
        assert_eq!(store.table_stats(1).unwrap().rows, 3, "no row id was reused");
    }
}
