//! [`SliceDb`]: one RocksDB instance, holding one slice store or several.
//!
//! A slice store keeps its data in four column families: its *rows* (the
//! newest version of every row, plus the store's metadata under table id
//! 0), `history`, `intents` and `gc` ([`crate::mvcc`]). Which names they
//! have is a store's [`Families`]:
//!
//! - a slice server process (the cluster layout) opens one store in a
//!   RocksDB of its own, under the plain names: rows in `default`, then
//!   `history`, `intents` and `gc` ([`Families::standalone`]);
//! - the embedded layout runs several slice servers in one process, and
//!   they share one RocksDB: each store has four families named after its
//!   node, `slice-3`, `slice-3.history`, `slice-3.intents`, `slice-3.gc`
//!   ([`Families::of_node`]).
//!
//! Sharing the instance shares its write-ahead log, and so its
//! [`WalSyncer`](crate::wal_sync): one `fdatasync` makes durable the
//! commits of every slice server of the process that wrote before it,
//! where three logs needed three. Each store still has its own lock
//! table, transactions and captures; nothing but the log and RocksDB's
//! background work is shared. A directory of the older embedded layout
//! (one RocksDB per slice server) is still opened as it is.
//!
//! An instance also holds a small log of *records* (family `records`):
//! durable key/value documents that are not slice data. The embedded
//! layout's coordinator stages its commit records there
//! (`slicedb_txn::CommitLog`), so that a two-phase commit's record and its
//! participants' prepares are made durable by the same syncs
//! ([`SliceDb::put_record`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{Options, DB};
use slicedb_common::{Error, NodeId, Result};

use crate::mvcc::{GC_CF, HISTORY_CF, INTENTS_CF};
use crate::wal_sync::WalSyncer;

/// The role of a store's rows family (its name in a standalone store).
pub(crate) const ROWS_CF: &str = rocksdb::DEFAULT_COLUMN_FAMILY_NAME;
/// The family of the instance's records.
const RECORDS_CF: &str = "records";

/// The names of one slice store's column families in its RocksDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Families {
    rows: String,
    history: String,
    intents: String,
    gc: String,
}

impl Families {
    /// A store alone in its RocksDB: rows in `default`.
    pub fn standalone() -> Families {
        Families {
            rows: ROWS_CF.into(),
            history: HISTORY_CF.into(),
            intents: INTENTS_CF.into(),
            gc: GC_CF.into(),
        }
    }

    /// The store of node `node` in a RocksDB shared by several.
    pub fn of_node(node: NodeId) -> Families {
        let rows = format!("slice-{node}");
        Families {
            history: format!("{rows}.{HISTORY_CF}"),
            intents: format!("{rows}.{INTENTS_CF}"),
            gc: format!("{rows}.{GC_CF}"),
            rows,
        }
    }

    /// The family that plays `role` ([`ROWS_CF`], [`HISTORY_CF`],
    /// [`INTENTS_CF`] or [`GC_CF`]).
    pub(crate) fn name(&self, role: &str) -> &str {
        match role {
            HISTORY_CF => &self.history,
            INTENTS_CF => &self.intents,
            GC_CF => &self.gc,
            _ => &self.rows,
        }
    }

    pub(crate) fn all(&self) -> [&str; 4] {
        [&self.rows, &self.history, &self.intents, &self.gc]
    }

    /// A name for files this store stages next to the RocksDB.
    pub(crate) fn file_tag(&self) -> &str {
        if self.rows == ROWS_CF {
            "store"
        } else {
            &self.rows
        }
    }
}

/// A RocksDB instance and the syncer of its write-ahead log.
pub struct SliceDb {
    pub(crate) db: Arc<DB>,
    /// Syncs the WAL for commits that wait on it ([`crate::wal_sync`]).
    pub(crate) syncer: WalSyncer,
    /// The options the database was opened with; they hold RocksDB's
    /// statistics (WAL syncs, see [`SliceDb::wal_syncs`]).
    options: Options,
    /// The RocksDB directory, where copied rows are staged as SST files.
    pub(crate) path: PathBuf,
}

/// The write-ahead log kept at most, in bytes.
const MAX_TOTAL_WAL_BYTES: u64 = 512 << 20;

/// Log files kept for reuse.
const RECYCLED_LOG_FILES: usize = 4;

/// Bytes of the block cache that the slice stores of one process share.
const BLOCK_CACHE_BYTES: usize = 256 << 20;

/// The process's block cache: one LRU cache of uncompressed blocks for
/// every slice store it opens.
fn block_cache() -> &'static rocksdb::Cache {
    static CACHE: std::sync::OnceLock<rocksdb::Cache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES))
}

/// How a slice store lays out its table files (also those a copy ingests).
pub(crate) fn table_options() -> Options {
    let mut opts = Options::default();
    // Uncompressed: a scan copies blocks out of the OS page cache instead
    // of decompressing each one (LZ4's decompression was a fifth of TPC-H
    // Q6's profile, its compression a seventh of a bulk load's;
    // `docs/benchmarks.md`). Disk use is higher for it.
    opts.set_compression_type(rocksdb::DBCompressionType::None);
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(block_cache());
    // Larger than RocksDB's 4 KiB: a scan pays per block (a read, a
    // checksum, an index step); a point read of a cached block does not.
    table.set_block_size(16 << 10);
    // A point read of a key that is not there (an insert's uniqueness
    // check, a lookup that misses) skips the files whose filter says so.
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    opts.set_block_based_table_factory(&table);
    opts
}

impl SliceDb {
    /// Opens (or creates) the RocksDB at `path` with the families of
    /// `stores` (created if missing), and starts its WAL syncer. With
    /// `records`, it also holds records ([`SliceDb::put_record`]); a slice
    /// server process's RocksDB does not.
    pub fn open(path: &Path, stores: &[Families], records: bool) -> Result<Arc<SliceDb>> {
        std::fs::create_dir_all(path)?;
        let mut opts = table_options();
        opts.create_if_missing(true);
        // Table files are read with pread, not mmap. Through mmap a scan
        // skipped a copy (a tenth of TPC-H Q6's profile), but RocksDB puts
        // no uncompressed block it reads through mmap in the block cache
        // (RocksDB #9367), so a point read could never be answered from
        // memory on the calling task and took a thread hop every time.
        opts.increase_parallelism(2);
        opts.create_missing_column_families(true);
        // A log file is kept until every family with writes in it has
        // flushed; RocksDB's default bound (four times all the families'
        // memtables) would let a dozen families keep gigabytes of log to
        // replay at start-up. Past this, the stalest families flush.
        opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        // Log files whose memtables have flushed are reused, not deleted:
        // appends inside a file that already has its size change no file
        // metadata, so a commit's `fdatasync` writes the log's pages and no
        // journal entry for the size (PostgreSQL preallocates its WAL
        // segments for the same reason).
        opts.set_recycle_log_file_num(RECYCLED_LOG_FILES);
        opts.enable_statistics();
        opts.set_statistics_level(rocksdb::statistics::StatsLevel::ExceptHistogramOrTimers);
        // Each column family gets the table options explicitly: `open_cf`
        // would give them RocksDB's defaults (LZ4, 4 KiB blocks, no filter).
        let mut names: Vec<&str> = vec![ROWS_CF];
        if records {
            names.push(RECORDS_CF);
        }
        for store in stores {
            names.extend(store.all().into_iter().filter(|n| *n != ROWS_CF));
        }
        let families = names
            .into_iter()
            .map(|name| rocksdb::ColumnFamilyDescriptor::new(name, table_options()));
        let db = DB::open_cf_descriptors(&opts, path, families)
            .map_err(|e| Error::io(format!("opening slice store {}: {e}", path.display())))?;
        let db = Arc::new(db);
        let syncer = WalSyncer::start(db.clone(), "slicedb-wal-sync")?;
        Ok(Arc::new(SliceDb {
            db,
            syncer,
            options: opts,
            path: path.to_path_buf(),
        }))
    }

    fn records_cf(&self) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(RECORDS_CF)
            .ok_or_else(|| Error::internal("slice database has no records column family"))
    }

    /// Writes record `key` and waits until it is durable: written without
    /// an fsync, then covered by the WAL syncer's next sync, which it
    /// shares with the commits and prepares written meanwhile. Safe on an
    /// async task (the write reaches the page cache, the wait is async).
    pub async fn put_record(&self, key: &[u8], value: &[u8]) -> Result<()> {
        if let Some(e) = self.syncer.failure() {
            return Err(e);
        }
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(self.records_cf()?, key, value);
        self.db
            .write_opt(batch, &rocksdb::WriteOptions::default())
            .map_err(crate::store::rocks)?;
        self.syncer.synced(self.db.latest_sequence_number()).await
    }

    /// [`SliceDb::put_record`] for a caller that may block (it syncs itself).
    pub fn put_record_now(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db
            .put_cf(self.records_cf()?, key, value)
            .map_err(crate::store::rocks)?;
        self.db.flush_wal(true).map_err(crate::store::rocks)
    }

    /// Deletes record `key`, without an fsync: a deletion lost in a crash
    /// brings the record back.
    pub fn delete_record(&self, key: &[u8]) -> Result<()> {
        self.db.delete_cf(self.records_cf()?, key).map_err(crate::store::rocks)
    }

    /// The records whose keys start with `prefix`, in key order.
    pub fn records(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let mode = rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.records_cf()?, mode) {
            let (k, v) = item.map_err(crate::store::rocks)?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// How many times RocksDB has synced its write-ahead log since it was
    /// opened. Concurrent commits share a sync, so under concurrent writers
    /// this grows slower than the number of commits.
    pub fn wal_syncs(&self) -> u64 {
        self.options
            .get_ticker_count(rocksdb::statistics::Ticker::WalFileSynced)
    }
}
