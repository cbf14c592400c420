//! [`SliceStore`]: a slice server's storage, in its column families of a
//! RocksDB ([`crate::slice_db`]).

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB};
use slicedb_common::{err, Datum, Error, NodeId, Result, TableId};

use crate::key::{self, bucket_end_exclusive, bucket_start, storage_key, META_TABLE};
use crate::lock_table::LockTable;
use crate::mvcc::{self, OwnWrites, ReadAt, Timestamp, TxnId, HISTORY_CF, INTENTS_CF};
use crate::row::{self, decode_row};
use crate::slice_db::{table_options, Families, SliceDb, ROWS_CF};
use crate::txn::{TxnState, TxnTable};
use crate::write_queue::{self, Capture, CaptureSpec, QueueEntry};
pub use slicedb_codec::slice::{RowChunk, TableStats};
pub use slicedb_codec::txn::{RowWrite, Seen};

/// What a write saw: whether it applied, and the row it replaced.
pub(crate) fn seen(applied: bool, old: Option<Vec<u8>>) -> Result<Seen> {
    let old = match old {
        Some(bytes) => Some(decode_row(&bytes)?.values),
        None => None,
    };
    Ok(Seen {
        applied,
        old,
        key: None,
    })
}

/// A slice server's storage.
pub struct SliceStore {
    /// The RocksDB instance the store lives in, alone or beside others
    /// ([`crate::slice_db`]), and its WAL syncer.
    pub(crate) base: std::sync::Arc<SliceDb>,
    /// `base`'s RocksDB.
    pub(crate) db: std::sync::Arc<DB>,
    /// The store's column families in it.
    families: Families,
    /// The node id this store belongs to; 0 until registered.
    pub(crate) node: AtomicU32,
    /// The cluster this store belongs to; 0 until registered.
    cluster: AtomicU64,
    /// Serializes [`SliceStore::register`]'s check and write.
    identity_lock: Mutex<()>,
    /// Serializes index back-fills, whose row locks share one holder
    /// ([`crate::backfill`]).
    pub(crate) backfills: Mutex<()>,
    /// Hidden row ids (see [`RowIds`]).
    row_ids: RowIds,
    /// Open transactions (see [`crate::txn`]).
    pub(crate) txns: TxnTable,
    /// Their row locks (see [`crate::lock_table`]).
    pub(crate) locks: LockTable,
    /// Prepared transactions reloaded at start-up and not decided since
    /// (see [`SliceStore::in_doubt`]).
    pub(crate) in_doubt: Mutex<std::collections::HashSet<TxnId>>,
    /// Its size, read without the mutex.
    pub(crate) in_doubt_count: std::sync::atomic::AtomicUsize,
    /// Captures in force (see [`crate::write_queue`]). Commits hold it
    /// shared while their batch is in flight; starting or stopping a
    /// capture holds it exclusively.
    captures: RwLock<Vec<Capture>>,
    /// The next write-queue sequence number; held by a commit that appends
    /// to a write queue until its batch has landed.
    queue_seq: Mutex<u64>,
    /// Numbers the staged SST files.
    ingests: AtomicU64,
}

/// Copied rows at least this large are stored by SST file ingestion rather
/// than a write batch: the file is written sorted, once, and RocksDB links
/// it in (into the lowest level it fits, since moving buckets hold nothing
/// on the target), skipping the WAL and the memtable.
const INGEST_BYTES: usize = 256 << 10;

/// Hidden row ids are handed out from a range whose end is made durable
/// before any id in it is used, so that no id is used twice across a crash
/// and no commit has to write the counter.
struct RowIds {
    next: AtomicU64,
    /// The end of the durably reserved range.
    reserved: AtomicU64,
    raise: Mutex<()>,
}

/// Row ids reserved at a time.
const ROWID_RESERVE: u64 = 1 << 16;

/// Appends the change of storage key `k` to `new` to the write queue of
/// its bucket's target, for every capture it falls under.
pub(crate) fn capture(
    captures: &[Capture],
    seq: &mut u64,
    rows: &rocksdb::ColumnFamily,
    batch: &mut WriteBatch,
    k: &[u8],
    new: &[u8],
) -> Result<()> {
    let table = TableId::from_be_bytes(k[..4].try_into().map_err(|_| Error::internal("short storage key"))?);
    for c in captures.iter().filter(|c| c.spec.covers(table)) {
        if let Some(target) = c.target(table, k) {
            let entry = QueueEntry {
                key: k[4..].to_vec(),
                value: Some(new.to_vec()),
                table,
            };
            batch.put_cf(
                rows,
                write_queue::queue_key(c.spec.job, target, *seq),
                write_queue::encode(&entry)?,
            );
            *seq += 1;
        }
    }
    Ok(())
}

/// A transaction's own pending images of a key range, in key order.
type OwnImages = std::iter::Peekable<std::vec::IntoIter<(Vec<u8>, Option<Vec<u8>>)>>;

/// A scan's row visitor: a row key and the row's stored bytes.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// A scan of at least this many buckets per range reads ahead and
/// bypasses the block cache (a point read or a short range does neither).
const LARGE_SCAN_BUCKETS: u16 = 64;
/// Readahead of a large scan.
const SCAN_READAHEAD: usize = 2 << 20;

/// Emits own images with keys below `bound`; `false` when the visitor stopped.
fn emit_own(own: &mut OwnImages, bound: &[u8], visit: &mut Visit<'_>) -> Result<bool> {
    while let Some((k, _)) = own.peek() {
        if k.as_slice() >= bound {
            break;
        }
        let (k, image) = own.next().expect("peeked");
        if let Some(v) = image {
            if !visit(&k[4..], &v)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The error for a transaction whose pending writes a restart lost.
pub(crate) fn lost(txn: TxnId) -> Error {
    tracing::info!(
        txn,
        "transaction {txn} is unknown here: a restart lost its pending writes"
    );
    err!(
        SerializationFailure,
        "could not serialize access: a slice server restarted and lost the pending writes of transaction {txn}"
    )
}

pub(crate) const ROWID_META: &[u8] = b"\0\0\0\0rowid";
/// `[node id u32 BE][cluster id u64 BE]`, written once by [`SliceStore::register`].
const IDENTITY_META: &[u8] = b"\0\0\0\0identity";

impl SliceStore {
    /// Opens (or creates) the store at `path`, alone in its RocksDB. Its
    /// node identity is the one recorded by [`SliceStore::register`], if any.
    pub fn open(path: &Path) -> Result<SliceStore> {
        let families = Families::standalone();
        SliceStore::open_in(SliceDb::open(path, std::slice::from_ref(&families), false)?, families)
    }

    /// Opens (or creates) the stores of `nodes` in one RocksDB at `path`,
    /// sharing its write-ahead log ([`crate::slice_db`]), which it returns
    /// too. Each store is still to be registered as its node.
    pub fn open_shared(path: &Path, nodes: &[NodeId]) -> Result<(std::sync::Arc<SliceDb>, Vec<SliceStore>)> {
        let families: Vec<Families> = nodes.iter().map(|n| Families::of_node(*n)).collect();
        let base = SliceDb::open(path, &families, true)?;
        let stores = families
            .into_iter()
            .map(|f| SliceStore::open_in(base.clone(), f))
            .collect::<Result<_>>()?;
        Ok((base, stores))
    }

    /// Opens the store whose column families in `base` are `families`.
    fn open_in(base: std::sync::Arc<SliceDb>, families: Families) -> Result<SliceStore> {
        let db = base.db.clone();
        let cf = |role: &str| {
            let name = families.name(role);
            db.cf_handle(name)
                .ok_or_else(|| Error::internal(format!("slice store has no column family {name}")))
        };
        let rows = cf(ROWS_CF)?;
        debug_assert_eq!(&ROWID_META[..4], &key::table_prefix(META_TABLE));
        crate::upgrade::upgrade(&db, &families, &base.path)?;
        let rowid_start = match db.get_cf(rows, ROWID_META).map_err(rocks)? {
            Some(v) if v.len() == 8 => u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
            _ => 0,
        };
        let (node, cluster) = match db.get_cf(rows, IDENTITY_META).map_err(rocks)? {
            Some(v) if v.len() == 12 => (
                u32::from_be_bytes(v[..4].try_into().expect("4 bytes")),
                u64::from_be_bytes(v[4..12].try_into().expect("8 bytes")),
            ),
            Some(_) => return Err(Error::internal("corrupt slice server identity")),
            None => (0, 0),
        };
        let next_seq = match db.get_cf(rows, write_queue::seq_key()).map_err(rocks)? {
            Some(v) if v.len() == 8 => u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
            _ => 0,
        };
        let mut captures = Vec::new();
        let prefix = write_queue::capture_prefix();
        for item in db.iterator_cf(rows, IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, v) = item.map_err(rocks)?;
            if !k.starts_with(&prefix) {
                break;
            }
            captures.push(Capture::new(write_queue::decode_spec(&v)?));
        }
        // Prepared transactions survive a restart, with their locks.
        let txns = TxnTable::default();
        let locks = LockTable::default();
        let mut in_doubt = std::collections::HashSet::new();
        {
            let mut states = std::collections::HashMap::new();
            for item in db.iterator_cf(cf(INTENTS_CF)?, IteratorMode::Start) {
                let (k, v) = item.map_err(rocks)?;
                let txn = u64::from_be_bytes(
                    k.get(..8)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| Error::internal("corrupt intent key"))?,
                );
                if k.len() == 8 {
                    let start_ts = u64::from_be_bytes(v[..].try_into().map_err(|_| Error::internal("corrupt intent"))?);
                    let state = states.entry(txn).or_insert_with(|| TxnState::new(start_ts));
                    state.start_ts = start_ts;
                    state.prepared = true;
                } else {
                    let key = k[8..].to_vec();
                    let _ = locks.try_lock(&key, txn);
                    let state = states.entry(txn).or_insert_with(|| TxnState::new(0));
                    state.prepared = true;
                    state.push(key, 0, mvcc::decode_intent(&v)?);
                }
            }
            for (txn, state) in states {
                in_doubt.insert(txn);
                txns.insert(txn, state);
            }
        }
        Ok(SliceStore {
            base,
            db,
            families,
            node: AtomicU32::new(node),
            cluster: AtomicU64::new(cluster),
            identity_lock: Mutex::new(()),
            backfills: Mutex::new(()),
            row_ids: RowIds {
                next: AtomicU64::new(rowid_start),
                reserved: AtomicU64::new(rowid_start),
                raise: Mutex::new(()),
            },
            txns,
            locks,
            in_doubt_count: std::sync::atomic::AtomicUsize::new(in_doubt.len()),
            in_doubt: Mutex::new(in_doubt),
            captures: RwLock::new(captures),
            queue_seq: Mutex::new(next_seq),
            ingests: AtomicU64::new(0),
        })
    }

    /// The captures in force, held shared: none starts or stops until the
    /// guard goes.
    pub(crate) fn capture_guard(&self) -> Result<RwLockReadGuard<'_, Vec<Capture>>> {
        self.captures
            .read()
            .map_err(|_| Error::internal("slice store capture list poisoned"))
    }

    /// [`SliceStore::capture_guard`] without waiting: `None` while a
    /// capture starts or stops.
    pub(crate) fn try_capture_guard(&self) -> Result<Option<RwLockReadGuard<'_, Vec<Capture>>>> {
        match self.captures.try_read() {
            Ok(guard) => Ok(Some(guard)),
            Err(std::sync::TryLockError::WouldBlock) => Ok(None),
            Err(std::sync::TryLockError::Poisoned(_)) => Err(Error::internal("slice store capture list poisoned")),
        }
    }

    /// The next write-queue sequence number, held.
    pub(crate) fn queue_seq(&self) -> Result<MutexGuard<'_, u64>> {
        self.queue_seq
            .lock()
            .map_err(|_| Error::internal("slice store write-queue counter poisoned"))
    }

    pub(crate) fn node_id(&self) -> NodeId {
        self.node.load(Ordering::Acquire)
    }

    /// A hidden row id never handed out before, even across a crash.
    /// [`SliceStore::take_rowid`] if the id is in the reserved range
    /// (no write needed), else `None`.
    pub(crate) fn try_take_rowid(&self) -> Option<u64> {
        let ids = &self.row_ids;
        let mut id = ids.next.load(Ordering::Acquire);
        loop {
            if id >= ids.reserved.load(Ordering::Acquire) {
                return None;
            }
            match ids
                .next
                .compare_exchange_weak(id, id + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(id),
                Err(now) => id = now,
            }
        }
    }

    pub(crate) fn take_rowid(&self) -> Result<u64> {
        let ids = &self.row_ids;
        let id = ids.next.fetch_add(1, Ordering::AcqRel);
        if id < ids.reserved.load(Ordering::Acquire) {
            return Ok(id);
        }
        let _raise = ids
            .raise
            .lock()
            .map_err(|_| Error::internal("row id reservation poisoned"))?;
        if id >= ids.reserved.load(Ordering::Acquire) {
            let end = id + 1 + ROWID_RESERVE;
            let mut batch = WriteBatch::default();
            batch.put_cf(self.rows()?, ROWID_META, end.to_be_bytes());
            self.write_durably(batch)?;
            ids.reserved.store(end, Ordering::Release);
        }
        Ok(id)
    }

    /// How many times the store's RocksDB has synced its write-ahead log
    /// since it was opened (see [`SliceDb::wal_syncs`]; stores sharing an
    /// instance share the count).
    pub fn wal_syncs(&self) -> u64 {
        self.base.wal_syncs()
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
            .identity_lock
            .lock()
            .map_err(|_| Error::internal("slice store identity lock poisoned"))?;
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
        let mut batch = WriteBatch::default();
        batch.put_cf(self.rows()?, IDENTITY_META, v);
        self.write_durably(batch)?;
        self.cluster.store(cluster, Ordering::Release);
        self.node.store(node, Ordering::Release);
        Ok(())
    }

    /// Writes `batch` and syncs the WAL, for a caller on a blocking
    /// thread. Not a synced write: that would fsync inside RocksDB's write
    /// group, and the commits written meanwhile on async tasks would wait
    /// for it ([`crate::wal_sync`]); the sync here holds up no writer.
    pub(crate) fn write_durably(&self, batch: WriteBatch) -> Result<()> {
        self.db.write_opt(batch, &WriteOptions::default()).map_err(rocks)?;
        self.db.flush_wal(true).map_err(rocks)
    }

    /// The store's column family that plays `role` (see [`Families`]).
    pub(crate) fn cf(&self, role: &str) -> Result<&rocksdb::ColumnFamily> {
        let name = self.families.name(role);
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::internal(format!("slice store has no column family {name}")))
    }

    /// The store's rows (and metadata) column family.
    pub(crate) fn rows(&self) -> Result<&rocksdb::ColumnFamily> {
        self.cf(ROWS_CF)
    }

    /// `own`'s pending images of `table` in bucket `ranges`, in key order.
    fn own_view(&self, own: Option<OwnWrites>, table: TableId, ranges: &[(u16, u16)]) -> Result<OwnImages> {
        let Some(own) = own else {
            return Ok(Vec::new().into_iter().peekable());
        };
        let Some(shared) = self.txns.get(own.txn) else {
            return Ok(Vec::new().into_iter().peekable());
        };
        let state = crate::txn::lock_state(&shared)?;
        let mut out = Vec::new();
        for (start, end) in ranges {
            out.extend(state.view(
                &bucket_start(table, *start),
                &bucket_end_exclusive(table, *end),
                own.before_seq,
            ));
        }
        Ok(out.into_iter().peekable())
    }

    /// The version of the row at storage key `k` that snapshot `ts` sees,
    /// given its newest version `newest`, read from `snapshot`: `newest`
    /// itself, an older version from history, or none (a tombstone, or no
    /// version old enough).
    fn visible_version<'v>(
        &self,
        snapshot: &rocksdb::Snapshot<'_>,
        k: &[u8],
        newest: &'v [u8],
        ts: Timestamp,
    ) -> Result<Option<Cow<'v, [u8]>>> {
        let (version, tombstone) = row::peek(newest)?;
        if version <= ts {
            return Ok((!tombstone).then_some(Cow::Borrowed(newest)));
        }
        let mut iter = snapshot.raw_iterator_cf_opt(self.cf(HISTORY_CF)?, ReadOptions::default());
        iter.seek(mvcc::history_key(k, ts));
        let found = match (iter.key(), iter.value()) {
            (Some(hk), Some(v)) if mvcc::is_history_of(hk, k) => {
                let old = mvcc::history_version(v)?;
                (!row::peek(old)?.1).then(|| old.to_vec())
            }
            _ => None,
        };
        iter.status().map_err(rocks)?;
        Ok(found.map(Cow::Owned))
    }

    /// Visits the rows of `table` in the given bucket ranges (inclusive), in
    /// key order, as snapshot `at` sees them, from one consistent RocksDB
    /// snapshot, decoded. `visit` returns `false` to stop early.
    pub fn scan(
        &self,
        table: TableId,
        ranges: &[(u16, u16)],
        at: &ReadAt,
        mut visit: impl FnMut(&[u8], Vec<Datum>) -> Result<bool>,
    ) -> Result<()> {
        self.scan_encoded(table, ranges, at, &mut |k, v| visit(k, decode_row(v)?.values))
    }

    /// [`SliceStore::scan`] handing each row over as its stored bytes (a
    /// live row, never a tombstone; read it with `slicedb_codec::row::RowView`),
    /// borrowed from RocksDB's iterator: nothing is decoded or copied that
    /// the visitor does not ask for. Large scans read ahead and leave the
    /// block cache to point reads.
    pub fn scan_encoded(
        &self,
        table: TableId,
        ranges: &[(u16, u16)],
        at: &ReadAt,
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        let mut own = self.own_view(at.own, table, ranges)?;
        let rows = self.rows()?;
        let snapshot = self.db.snapshot();
        for (start, end) in ranges {
            let lower = bucket_start(table, *start);
            let upper = bucket_end_exclusive(table, *end);
            let mut opts = ReadOptions::default();
            opts.set_iterate_upper_bound(upper.clone());
            if end.saturating_sub(*start) >= LARGE_SCAN_BUCKETS {
                opts.set_readahead_size(SCAN_READAHEAD);
                opts.fill_cache(false);
            }
            let mut iter = snapshot.raw_iterator_cf_opt(rows, opts);
            iter.seek(&lower);
            while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
                if !emit_own(&mut own, k, visit)? {
                    return Ok(());
                }
                if own.peek().is_some_and(|(ok, _)| ok.as_slice() == k) {
                    let (_, image) = own.next().expect("peeked");
                    if let Some(v) = image {
                        if !visit(&k[4..], &v)? {
                            return Ok(());
                        }
                    }
                } else if let Some(row) = self.visible_version(&snapshot, k, v, at.ts)? {
                    if !visit(&k[4..], &row)? {
                        return Ok(());
                    }
                }
                iter.next();
            }
            iter.status().map_err(rocks)?;
            if !emit_own(&mut own, &upper, visit)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The transaction's own image of storage key `k` that `at` sees, if
    /// it wrote one (read from memory).
    fn own_image(&self, k: &[u8], at: &ReadAt) -> Result<Option<Option<Vec<u8>>>> {
        let Some((own, shared)) = at.own.and_then(|own| self.txns.get(own.txn).map(|s| (own, s))) else {
            return Ok(None);
        };
        let state = crate::txn::lock_state(&shared)?;
        Ok(state.visible(k, own.before_seq).cloned())
    }

    /// [`SliceStore::get`] without disk I/O: `Ok(None)` when the answer
    /// needs a block that is not in memory (RocksDB's block-cache read
    /// tier), or an older version from history. Safe on an async task.
    pub fn get_cached(&self, table: TableId, row_key: &[u8], at: &ReadAt) -> Result<Option<Option<Vec<Datum>>>> {
        self.get_cached_encoded(table, row_key, at)?
            .map(|row| row.map(|v| Ok(decode_row(&v)?.values)).transpose())
            .transpose()
    }

    /// [`SliceStore::get_cached`], the row as its stored bytes.
    pub fn get_cached_encoded(&self, table: TableId, row_key: &[u8], at: &ReadAt) -> Result<Option<Option<Vec<u8>>>> {
        let k = storage_key(table, row_key);
        if let Some(image) = self.own_image(&k, at)? {
            return Ok(Some(image));
        }
        let mut opts = ReadOptions::default();
        opts.set_read_tier(rocksdb::ReadTier::BlockCache);
        match self.db.snapshot().get_cf_opt(self.rows()?, &k, opts) {
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => Ok(None),
            Err(e) => Err(rocks(e)),
            Ok(None) => Ok(Some(None)),
            Ok(Some(v)) => match row::peek(&v)? {
                (version, _) if version > at.ts => Ok(None),
                (_, true) => Ok(Some(None)),
                _ => Ok(Some(Some(v))),
            },
        }
    }

    /// Reads one row by key, as snapshot `at` sees it.
    pub fn get(&self, table: TableId, row_key: &[u8], at: &ReadAt) -> Result<Option<Vec<Datum>>> {
        self.get_encoded(table, row_key, at)?
            .map(|v| Ok(decode_row(&v)?.values))
            .transpose()
    }

    /// [`SliceStore::get`], the row as its stored bytes.
    pub fn get_encoded(&self, table: TableId, row_key: &[u8], at: &ReadAt) -> Result<Option<Vec<u8>>> {
        let k = storage_key(table, row_key);
        if let Some(image) = self.own_image(&k, at)? {
            return Ok(image);
        }
        let snapshot = self.db.snapshot();
        match snapshot.get_cf(self.rows()?, &k).map_err(rocks)? {
            Some(v) => Ok(self.visible_version(&snapshot, &k, &v, at.ts)?.map(Cow::into_owned)),
            None => Ok(None),
        }
    }

    /// Deletes whole buckets of `table` (inclusive ranges) with range
    /// tombstones, then compacts them away.
    pub fn delete_buckets(&self, table: TableId, ranges: &[(u16, u16)]) -> Result<()> {
        let (rows, history) = (self.rows()?, self.cf(HISTORY_CF)?);
        let mut batch = WriteBatch::default();
        for (start, end) in ranges {
            batch.delete_range_cf(rows, bucket_start(table, *start), bucket_end_exclusive(table, *end));
            batch.delete_range_cf(history, bucket_start(table, *start), bucket_end_exclusive(table, *end));
        }
        self.write_durably(batch)?;
        // Range tombstones hide the rows at once, but their files keep the
        // space (and RocksDB's size estimates count it) until a compaction
        // drops what they cover: compact the ranges now, so a finished move
        // or a dropped table gives its disk back and the sizes the
        // rebalancer reads are true.
        for (start, end) in ranges {
            let (from, to) = (bucket_start(table, *start), bucket_end_exclusive(table, *end));
            self.db.compact_range_cf(rows, Some(&from), Some(&to));
            self.db.compact_range_cf(history, Some(&from), Some(&to));
        }
        Ok(())
    }

    /// Deletes every row of `table`.
    pub fn delete_table(&self, table: TableId) -> Result<()> {
        self.delete_buckets(table, &[(0, u16::MAX)])
    }

    /// Starts capturing the writes of a redistribution job (see
    /// [`crate::write_queue`]). Holding the capture list exclusively makes
    /// the start atomic with respect to commits: each commit's batch lands
    /// wholly before the capture (and a snapshot copy taken later carries
    /// it) or wholly after (and its queue carries it). Starting the same
    /// job again is a no-op.
    pub fn start_capture(&self, spec: CaptureSpec) -> Result<()> {
        let mut captures = self.capture_list()?;
        if captures.iter().any(|c| c.spec.job == spec.job) {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.rows()?,
            write_queue::capture_key(spec.job),
            write_queue::encode(&spec)?,
        );
        self.write_durably(batch)?;
        captures.push(Capture::new(spec));
        Ok(())
    }

    /// Ends the capture of job `job` and deletes all its write queues.
    pub fn stop_capture(&self, job: u64) -> Result<()> {
        let mut captures = self.capture_list()?;
        let mut batch = WriteBatch::default();
        let rows = self.rows()?;
        batch.delete_cf(rows, write_queue::capture_key(job));
        batch.delete_range_cf(
            rows,
            write_queue::job_queues_start(job),
            write_queue::job_queues_end(job),
        );
        self.write_durably(batch)?;
        captures.retain(|c| c.spec.job != job);
        Ok(())
    }

    /// The jobs this store captures writes for.
    pub fn captures(&self) -> Result<Vec<CaptureSpec>> {
        Ok(self.capture_guard()?.iter().map(|c| c.spec.clone()).collect())
    }

    /// The capture list, held exclusively: no commit is in flight.
    fn capture_list(&self) -> Result<std::sync::RwLockWriteGuard<'_, Vec<Capture>>> {
        self.captures
            .write()
            .map_err(|_| Error::internal("slice store capture list poisoned"))
    }

    /// Reads up to about `max_bytes` of `table`'s rows in the bucket
    /// `ranges` (inclusive, ascending), raw, starting after row key `after`.
    /// Each call reads one consistent snapshot.
    pub fn read_rows(
        &self,
        table: TableId,
        ranges: &[(u16, u16)],
        after: Option<&[u8]>,
        max_bytes: usize,
    ) -> Result<RowChunk> {
        let rows = self.rows()?;
        let snapshot = self.db.snapshot();
        let mut chunk = RowChunk::default();
        let mut bytes = 0usize;
        for (start, end) in ranges {
            let mut lower = bucket_start(table, *start);
            let upper = bucket_end_exclusive(table, *end);
            if let Some(after) = after {
                let resume = storage_key(table, after);
                if resume >= upper {
                    continue;
                }
                if resume > lower {
                    lower = resume;
                }
            }
            let mut opts = ReadOptions::default();
            opts.set_iterate_upper_bound(upper);
            for item in snapshot.iterator_cf_opt(rows, opts, IteratorMode::From(&lower, Direction::Forward)) {
                let (k, v) = item.map_err(rocks)?;
                if after.is_some_and(|a| &k[4..] <= a) {
                    continue;
                }
                // A delete's tombstone need not move: snapshots older than
                // the cut-over never read the new owner (see `mvcc`).
                if row::peek(&v)?.1 {
                    continue;
                }
                bytes += k.len() + v.len();
                chunk.rows.push((k[4..].to_vec(), v.to_vec()));
                if bytes >= max_bytes {
                    chunk.next = Some(k[4..].to_vec());
                    return Ok(chunk);
                }
            }
        }
        Ok(chunk)
    }

    /// Stores raw rows (as [`SliceStore::read_rows`] returns them) of
    /// `table`, durably: as one write batch, or, for a large chunk in key
    /// order, by ingesting an SST file.
    pub fn put_rows(&self, table: TableId, rows: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let bytes: usize = rows.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes >= INGEST_BYTES && rows.windows(2).all(|w| w[0].0 < w[1].0) && self.ingest_rows(table, rows)? {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        let cf = self.rows()?;
        for (k, v) in rows {
            batch.put_cf(cf, storage_key(table, k), v);
        }
        self.write_durably(batch)
    }

    /// Ingests `rows` as an SST file. Returns `false`, having stored
    /// nothing, when the file's key range overlaps the memtable (say, a
    /// range delete of those buckets): ingesting would flush the memtable
    /// while every writer of this slice server waits, so the caller writes a
    /// batch instead.
    fn ingest_rows(&self, table: TableId, rows: &[(Vec<u8>, Vec<u8>)]) -> Result<bool> {
        let n = self.ingests.fetch_add(1, Ordering::Relaxed);
        let file = self.base.path.join(format!(
            "copy-{}-{}-{n}.sst",
            std::process::id(),
            self.families.file_tag()
        ));
        let opts = table_options();
        let result = (|| {
            let mut writer = rocksdb::SstFileWriter::create(&opts);
            writer.open(&file).map_err(rocks)?;
            for (k, v) in rows {
                writer.put(storage_key(table, k), v).map_err(rocks)?;
            }
            // Finishing syncs the file; ingestion records it in the synced MANIFEST.
            writer.finish().map_err(rocks)?;
            let mut ingest = rocksdb::IngestExternalFileOptions::default();
            ingest.set_move_files(true);
            ingest.set_allow_blocking_flush(false);
            Ok(self
                .db
                .ingest_external_file_cf_opts(self.rows()?, &ingest, vec![&file])
                .is_ok())
        })();
        let _ = std::fs::remove_file(&file);
        result
    }

    /// Reads entries of the write queue of `job` towards `target`, in order,
    /// after sequence number `after` (all of them if `None`), up to
    /// `max_entries` or about `max_bytes`. Also says whether the read reached
    /// the end of the queue.
    pub fn read_queue(
        &self,
        job: u64,
        target: NodeId,
        after: Option<u64>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<(Vec<(u64, QueueEntry)>, bool)> {
        let lower = write_queue::queue_key(job, target, after.map_or(0, |s| s.saturating_add(1)));
        let upper = write_queue::queue_key(job, target + 1, 0);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(upper);
        // Entries written before entries named their table are the
        // captured table's.
        let table = self
            .capture_guard()?
            .iter()
            .find(|c| c.spec.job == job)
            .map_or(0, |c| c.spec.table);
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut iter = self
            .db
            .iterator_cf_opt(self.rows()?, opts, IteratorMode::From(&lower, Direction::Forward));
        for item in iter.by_ref() {
            let (k, v) = item.map_err(rocks)?;
            bytes += v.len();
            out.push((write_queue::seq_of(&k)?, write_queue::decode_entry(&v, table)?));
            if out.len() >= max_entries || bytes >= max_bytes {
                let at_end = iter.next().is_none();
                return Ok((out, at_end));
            }
        }
        Ok((out, true))
    }

    /// Deletes the entries of the queue of `job` towards `target` up to and
    /// including sequence number `upto`: they have been applied. Not synced:
    /// a trim lost in a crash only makes the entries replay, harmlessly.
    pub fn trim_queue(&self, job: u64, target: NodeId, upto: u64) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.rows()?,
            write_queue::queue_key(job, target, 0),
            write_queue::queue_key(job, target, upto.saturating_add(1)),
        );
        self.db.write_opt(batch, &WriteOptions::default()).map_err(rocks)
    }

    /// The number of entries waiting in each of `job`'s queues, by target.
    pub fn queue_depths(&self, job: u64) -> Result<Vec<(NodeId, u64)>> {
        let lower = write_queue::job_queues_start(job);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(write_queue::job_queues_end(job));
        let mut depths: Vec<(NodeId, u64)> = Vec::new();
        let mut iter = self.db.raw_iterator_cf_opt(self.rows()?, opts);
        iter.seek(&lower);
        while let Some(k) = iter.key() {
            let at = lower.len();
            let target = k
                .get(at..at + 4)
                .map(|t| NodeId::from_be_bytes(t.try_into().expect("4 bytes")))
                .ok_or_else(|| Error::internal("corrupt write queue key"))?;
            match depths.last_mut() {
                Some((t, n)) if *t == target => *n += 1,
                _ => depths.push((target, 1)),
            }
            iter.next();
        }
        iter.status().map_err(rocks)?;
        Ok(depths)
    }

    /// Applies write-queue entries, each to its table, in order, durably,
    /// as one write batch. Idempotent: entries are full row images or deletes.
    pub fn apply_queue(&self, entries: &[QueueEntry]) -> Result<()> {
        let mut batch = WriteBatch::default();
        let rows = self.rows()?;
        for e in entries {
            if e.table == META_TABLE {
                return Err(Error::internal("a write queue entry without its table"));
            }
            let k = storage_key(e.table, &e.key);
            match &e.value {
                Some(v) => batch.put_cf(rows, k, v),
                None => batch.delete_cf(rows, k),
            }
        }
        self.write_durably(batch)
    }

    /// Counts the rows (newest versions, deleted ones excepted) and bytes
    /// (key + value) of `table`.
    pub fn table_stats(&self, table: TableId) -> Result<TableStats> {
        let mut stats = TableStats::default();
        let lower = key::table_prefix(table).to_vec();
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(bucket_end_exclusive(table, u16::MAX));
        for item in self
            .db
            .iterator_cf_opt(self.rows()?, opts, IteratorMode::From(&lower, Direction::Forward))
        {
            let (k, v) = item.map_err(rocks)?;
            if row::peek(&v)?.1 {
                continue;
            }
            stats.rows += 1;
            stats.bytes += (k.len() + v.len()) as u64;
        }
        Ok(stats)
    }
}

pub(crate) fn rocks(e: rocksdb::Error) -> Error {
    Error::io(format!("slice storage: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::row_key;
    use crate::mvcc::TxnWrite;
    use crate::row::encode_row;

    fn rows(store: &SliceStore, table: TableId, ranges: &[(u16, u16)]) -> Vec<Vec<Datum>> {
        rows_at(store, table, ranges, &ReadAt::LATEST)
    }

    fn rows_at(store: &SliceStore, table: TableId, ranges: &[(u16, u16)], at: &ReadAt) -> Vec<Vec<Datum>> {
        let mut out = Vec::new();
        store
            .scan(table, ranges, at, |_, r| {
                out.push(r);
                Ok(true)
            })
            .unwrap();
        out
    }

    static CLOCK: AtomicU64 = AtomicU64::new(1000);

    fn tick() -> u64 {
        CLOCK.fetch_add(10, Ordering::SeqCst)
    }

    /// Writes and commits at once, as a one-statement transaction on this
    /// slice server alone.
    trait Commit {
        fn write(&self, table: TableId, name: &str, writes: &[RowWrite]) -> Result<u64>;
    }

    /// A new transaction's first write descriptor (its id is its snapshot).
    fn first_write() -> TxnWrite {
        let start_ts = tick();
        TxnWrite {
            txn: start_ts,
            start_ts,
            seq: 1,
            continues: false,
            lock_timeout_ms: 0,
        }
    }

    impl Commit for SliceStore {
        fn write(&self, table: TableId, name: &str, writes: &[RowWrite]) -> Result<u64> {
            let txn = first_write();
            let start_ts = txn.txn;
            let n = match self.txn_write(txn, table, name, writes) {
                Ok(n) => n,
                Err(e) => {
                    self.abort(start_ts)?;
                    return Err(e);
                }
            };
            self.commit(start_ts, tick(), true)?;
            Ok(n)
        }
    }

    fn put(b: u16, id: i64, v: &str) -> RowWrite {
        RowWrite::Put {
            key: row_key(b, &[Datum::Int64(id)]).unwrap(),
            row: vec![Datum::Int64(id), Datum::Text(v.into())],
        }
    }

    /// What an index-maintaining writer learns: the row each write
    /// replaced (committed, or its own pending image), whether it applied,
    /// and the key a hidden row id got; and that a duplicate names the
    /// constraint it was given.
    #[test]
    fn writes_report_the_rows_they_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = SliceStore::open(dir.path()).unwrap();
        store.register(7, 1).unwrap();
        store.write(1, "t", &[put(1, 1, "a")]).unwrap();
        let txn = tick();
        let w = |seq| TxnWrite {
            txn,
            start_ts: txn,
            seq,
            continues: seq > 1,
            lock_timeout_ms: 0,
        };
        let k1 = row_key(1, &[Datum::Int64(1)]).unwrap();
        let row = |v: &str| vec![Datum::Int64(1), Datum::Text(v.into())];
        let (n, seen) = store
            .txn_write_seen(w(1), 1, "t_pkey", &[put(1, 1, "b"), put(1, 2, "new")], true)
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(seen[0].old, Some(row("a")), "the committed row");
        assert_eq!(seen[1].old, None, "no row before");
        assert!(seen.iter().all(|s| s.applied));
        let writes = [
            RowWrite::Delete { key: k1.clone() },
            RowWrite::Delete {
                key: row_key(1, &[Datum::Int64(9)]).unwrap(),
            },
            RowWrite::InsertIfAbsent {
                key: row_key(1, &[Datum::Int64(2)]).unwrap(),
                row: vec![Datum::Int64(2), Datum::Text("again".into())],
            },
            RowWrite::InsertWithRowId {
                bucket: 3,
                row: vec![Datum::Int64(5)],
            },
        ];
        let (n, seen) = store.txn_write_seen(w(2), 1, "t_pkey", &writes, true).unwrap();
        assert_eq!(n, 2, "the delete and the row-id insert");
        assert_eq!(seen[0].old, Some(row("b")), "its own pending image");
        assert_eq!((seen[1].applied, seen[1].old.is_none()), (false, true), "a missing row");
        assert!(!seen[2].applied, "the key exists");
        let key = seen[3].key.clone().expect("the row id key");
        assert_eq!(crate::key::bucket_of_row_key(&key).unwrap(), 3);
        let e = store
            .txn_write(
                w(3),
                1,
                "t_email_key",
                &[RowWrite::Insert {
                    key: row_key(1, &[Datum::Int64(2)]).unwrap(),
                    row: vec![],
                }],
            )
            .unwrap_err();
        assert_eq!(e.state.code(), "23505");
        assert!(e.message.contains("\"t_email_key\""), "{}", e.message);
        store.abort(txn).unwrap();
    }

    #[test]
    fn snapshots_see_their_versions_and_transactions_their_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SliceStore::open(dir.path()).unwrap();
        store.write(1, "t", &[put(1, 1, "a"), put(1, 2, "b")]).unwrap();
        let before = tick();
        store.write(1, "t", &[put(1, 1, "a2")]).unwrap();
        store
            .write(
                1,
                "t",
                &[RowWrite::Delete {
                    key: row_key(1, &[Datum::Int64(2)]).unwrap(),
                }],
            )
            .unwrap();
        let text = |rows: Vec<Vec<Datum>>| rows.into_iter().map(|r| r[1].clone()).collect::<Vec<_>>();
        assert_eq!(
            text(rows_at(&store, 1, &[(0, 65535)], &ReadAt::at(before))),
            vec![Datum::Text("a".into()), Datum::Text("b".into())]
        );
        assert_eq!(text(rows(&store, 1, &[(0, 65535)])), vec![Datum::Text("a2".into())]);
        assert_eq!(store.table_stats(1).unwrap().rows, 1, "a tombstone is no row");
        let k1 = row_key(1, &[Datum::Int64(1)]).unwrap();
        assert_eq!(
            store.get(1, &k1, &ReadAt::at(before)).unwrap().unwrap()[1],
            Datum::Text("a".into())
        );
        // From memory: the newest version, a missing row; an older
        // version would need history, which a cached read leaves alone.
        assert_eq!(
            store.get_cached(1, &k1, &ReadAt::LATEST).unwrap(),
            Some(Some(vec![Datum::Int64(1), Datum::Text("a2".into())]))
        );
        let k9 = row_key(1, &[Datum::Int64(9)]).unwrap();
        assert_eq!(store.get_cached(1, &k9, &ReadAt::LATEST).unwrap(), Some(None));
        assert_eq!(store.get_cached(1, &k1, &ReadAt::at(before)).unwrap(), None);

        // Rows in table files: the first read fills the block cache, and
        // from then on the row is answered from memory (never through
        // mmap, whose blocks RocksDB does not cache).
        store.db.flush_cf(store.rows().unwrap()).unwrap();
        assert_eq!(store.get_cached(1, &k1, &ReadAt::LATEST).unwrap(), None, "not read yet");
        assert_eq!(
            store.get(1, &k1, &ReadAt::LATEST).unwrap().unwrap()[1],
            Datum::Text("a2".into())
        );
        assert_eq!(
            store.get_cached(1, &k1, &ReadAt::LATEST).unwrap(),
            Some(Some(vec![Datum::Int64(1), Datum::Text("a2".into())]))
        );

        // A transaction sees its own earlier statements, nobody else does.
        let start_ts = tick();
        let w = |seq| TxnWrite {
            txn: start_ts,
            start_ts,
            seq,
            continues: seq > 1,
            lock_timeout_ms: 0,
        };
        store.txn_write(w(1), 1, "t", &[put(1, 3, "mine")]).unwrap();
        let own = |before_seq| ReadAt {
            ts: start_ts,
            own: Some(OwnWrites {
                txn: start_ts,
                before_seq,
            }),
        };
        assert_eq!(
            rows_at(&store, 1, &[(0, 65535)], &own(1)).len(),
            1,
            "not its own statement"
        );
        assert_eq!(rows_at(&store, 1, &[(0, 65535)], &own(2)).len(), 2);
        assert_eq!(rows(&store, 1, &[(0, 65535)]).len(), 1, "others do not see it");
        // Savepoint: statement 2's writes go, statement 1's stay.
        store.txn_write(w(2), 1, "t", &[put(1, 4, "later")]).unwrap();
        store.rollback_to(start_ts, 2).unwrap();
        assert_eq!(rows_at(&store, 1, &[(0, 65535)], &own(3)).len(), 2);

        // A second writer of a locked row waits for it (here until its
        // lock timeout); a writer of a row committed after its snapshot
        // gets 40001.
        let other = TxnWrite {
            txn: tick(),
            start_ts: before,
            seq: 1,
            continues: false,
            lock_timeout_ms: 20,
        };
        let e = store.txn_write(other, 1, "t", &[put(1, 3, "theirs")]).unwrap_err();
        assert_eq!(e.state.code(), "55P03");
        let e = store.txn_write(other, 1, "t", &[put(1, 1, "stale")]).unwrap_err();
        assert_eq!(e.state.code(), "40001");
        store.abort(other.txn).unwrap();
        store.commit(start_ts, tick(), true).unwrap();
        assert_eq!(rows(&store, 1, &[(0, 65535)]).len(), 2);

        // GC drops what no snapshot at the horizon sees, and nothing newer.
        assert!(store.history_len().unwrap() > 0);
        let deleted = store.gc(tick()).unwrap();
        assert!(deleted > 0);
        assert_eq!(store.history_len().unwrap(), 0);
        assert_eq!(rows(&store, 1, &[(0, 65535)]).len(), 2);
    }

    /// A write that would wait (here for a row lock another transaction
    /// holds) is not done without waiting, and leaves nothing behind: not
    /// the images nor the locks of the rows before it in the request.
    #[test]
    fn a_write_that_would_wait_is_undone_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = SliceStore::open(dir.path()).unwrap();
        let w = |txn: TxnId, seq: u32| TxnWrite {
            txn,
            start_ts: txn,
            seq,
            continues: seq > 1,
            lock_timeout_ms: 0,
        };
        let (holder, other) = (tick(), tick());
        assert_eq!(
            store
                .try_txn_write(w(holder, 1), 1, "t", &[put(1, 2, "held")], false)
                .map(|r| r.unwrap().0),
            Some(1),
            "a free row in memory is written at once"
        );
        let request = [put(1, 1, "free"), put(1, 2, "taken")];
        assert!(store.try_txn_write(w(other, 1), 1, "t", &request, false).is_none());
        assert_eq!(
            store
                .locks
                .holder(&storage_key(1, &row_key(1, &[Datum::Int64(1)]).unwrap())),
            None
        );
        let third = tick();
        assert_eq!(
            store
                .try_txn_write(w(third, 1), 1, "t", &[put(1, 1, "mine")], false)
                .map(|r| r.unwrap().0),
            Some(1),
            "row 1 is free again"
        );
        store.commit(holder, tick(), true).unwrap();
        store.commit(third, tick(), true).unwrap();
        // `other` wrote nothing: its commit adds no row.
        store.commit(other, tick(), true).unwrap();
        assert_eq!(rows(&store, 1, &[(0, 65535)]).len(), 2);
        assert_eq!(store.history_len().unwrap(), 0, "nothing replaced a version");
    }

    /// Phase two is written without an fsync and leaves a marker; a
    /// restart that loses it leaves the transaction prepared and in doubt
    /// (reads wait) until it is committed again; `settle` commits what is
    /// still prepared and syncs once.
    #[test]
    fn phase_two_is_unsynced_marked_and_settled() {
        use crate::TxnStatus;
        let dir = tempfile::tempdir().unwrap();
        let write = |store: &SliceStore, txn: TxnId, id: i64| {
            let w = TxnWrite::first(txn);
            store.txn_write(w, 1, "t", &[put(1, id, "x")]).unwrap();
        };
        let (a, b, c) = (tick(), tick(), tick());
        let store = SliceStore::open(dir.path()).unwrap();
        assert_eq!(store.in_doubt(), 0);
        for (txn, id) in [(a, 1), (b, 2), (c, 3)] {
            write(&store, txn, id);
        }
        assert_eq!(store.txn_status(a).unwrap(), TxnStatus::Pending);
        store.prepare(a).unwrap();
        store.prepare(b).unwrap();
        store.prepare(c).unwrap();
        assert_eq!(store.txn_status(a).unwrap(), TxnStatus::Prepared);
        let syncs = store.wal_syncs();
        store.commit(a, tick(), false).unwrap();
        assert_eq!(store.wal_syncs(), syncs, "phase two does not fsync");
        assert_eq!(store.txn_status(a).unwrap(), TxnStatus::Committed);
        store.abort(c).unwrap();
        assert_eq!(store.txn_status(c).unwrap(), TxnStatus::Aborted);
        assert_eq!(store.txn_status(tick()).unwrap(), TxnStatus::Unknown);
        drop(store);

        // b was prepared when the store stopped: it is in doubt.
        let store = SliceStore::open(dir.path()).unwrap();
        assert_eq!(store.in_doubt(), 1);
        assert_eq!(store.txn_status(b).unwrap(), TxnStatus::Prepared);
        let syncs = store.wal_syncs();
        store.settle(&[(a, tick()), (b, tick())]).unwrap();
        assert!(store.wal_syncs() > syncs, "settling syncs the WAL");
        assert_eq!(store.in_doubt(), 0);
        assert_eq!(store.txn_status(b).unwrap(), TxnStatus::Committed);
        assert_eq!(rows(&store, 1, &[(0, 65535)]).len(), 2);
        // The markers go once no record can ask about them.
        store.gc(b + 1).unwrap();
        assert_eq!(store.txn_status(a).unwrap(), TxnStatus::Unknown);
        assert_eq!(store.txn_status(b).unwrap(), TxnStatus::Unknown);
    }

    #[test]
    fn prepared_intents_survive_a_restart_and_pending_writes_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (prepared, pending) = (tick(), tick());
        {
            let store = SliceStore::open(dir.path()).unwrap();
            for (txn, id) in [(prepared, 1), (pending, 2)] {
                let w = TxnWrite::first(txn);
                store.txn_write(w, 1, "t", &[put(1, id, "x")]).unwrap();
            }
            store.prepare(prepared).unwrap();
        }
        let store = SliceStore::open(dir.path()).unwrap();
        assert_eq!(store.transactions().unwrap(), vec![(prepared, prepared, true)]);
        assert_eq!(store.prepare(pending).unwrap_err().state.code(), "40001");
        // A later write of the transaction whose writes the restart lost fails too.
        let later = TxnWrite {
            txn: pending,
            start_ts: pending,
            seq: 2,
            continues: true,
            lock_timeout_ms: 0,
        };
        assert_eq!(
            store
                .txn_write(later, 1, "t", &[put(1, 9, "x")])
                .unwrap_err()
                .state
                .code(),
            "40001"
        );
        // The prepared transaction still holds its row lock.
        let w = TxnWrite {
            txn: tick(),
            start_ts: tick(),
            seq: 1,
            continues: false,
            lock_timeout_ms: 20,
        };
        assert_eq!(
            store.txn_write(w, 1, "t", &[put(1, 1, "y")]).unwrap_err().state.code(),
            "55P03"
        );
        store.abort(w.txn).unwrap();
        assert!(rows(&store, 1, &[(0, 65535)]).is_empty(), "intents are invisible");
        store.commit(prepared, tick(), false).unwrap();
        store.commit(prepared, tick(), false).unwrap(); // repeated: harmless

        // A prepared transaction aborted here is never acknowledged as
        // committed, not even after a restart; garbage collection forgets
        // it once its snapshot is released.
        let aborted = tick();
        let w = TxnWrite::first(aborted);
        store.txn_write(w, 1, "t", &[put(1, 7, "z")]).unwrap();
        store.prepare(aborted).unwrap();
        store.abort(aborted).unwrap();
        assert!(store.commit(aborted, tick(), false).is_err());
        drop(store);
        let store = SliceStore::open(dir.path()).unwrap();
        assert!(store.commit(aborted, tick(), false).is_err());
        store.gc(aborted).unwrap();
        assert!(
            store.commit(aborted, tick(), false).is_err(),
            "its snapshot may be in use"
        );
        store.gc(aborted + 1).unwrap();
        store.commit(aborted, tick(), false).unwrap();
        assert_eq!(rows(&store, 1, &[(0, 65535)]).len(), 1);
        assert!(store.transactions().unwrap().is_empty());
        drop(store);
        let store = SliceStore::open(dir.path()).unwrap();
        assert!(
            store.transactions().unwrap().is_empty(),
            "the commit removed the intents"
        );
        assert_eq!(rows(&store, 1, &[(0, 65535)]).len(), 1);
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
    fn concurrent_commits_share_wal_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SliceStore::open(dir.path()).unwrap());
        let before = store.wal_syncs();
        let (threads, per_thread) = (8i64, 40i64);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads as usize));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for i in 0..per_thread {
                        let id = t * 1000 + i;
                        store.write(1, "t", &[put((id % 7) as u16, id, "x")]).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let commits = (threads * per_thread) as u64;
        assert_eq!(rows(&store, 1, &[(0, 65535)]).len() as u64, commits);
        let syncs = store.wal_syncs() - before;
        assert!(syncs > 0, "commits are synced");
        assert!(
            syncs < commits,
            "{commits} commits from {threads} threads took {syncs} WAL syncs: commits do not share syncs"
        );
    }

    /// Runs `tasks` async tasks that each commit `per_task` one-row
    /// transactions in one phase, as the slice server does on its async
    /// task, waiting for the WAL syncer: transaction `id` writes `write(id)`'s
    /// row into the store at its index in `stores`.
    async fn commit_from_tasks(
        stores: &[std::sync::Arc<SliceStore>],
        tasks: i64,
        per_task: i64,
        write: fn(i64) -> (usize, RowWrite),
    ) {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let stores = stores.to_vec();
                tokio::spawn(async move {
                    for id in (0..per_task).map(|i| t * 1000 + i) {
                        let (at, row) = write(id);
                        let store = &stores[at];
                        let txn = first_write();
                        store.txn_write(txn, 1, "t", &[row]).unwrap();
                        let unsynced = match store.try_commit(txn.txn, tick(), true) {
                            Some(r) => r.unwrap(),
                            None => store.commit_unsynced(txn.txn, tick(), true).unwrap(),
                        };
                        let seq = unsynced.expect("a one-phase commit waits for a sync");
                        store.wal_synced(seq).await.unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    }

    /// The slice server's path: commits written on async tasks without a
    /// sync ([`SliceStore::try_commit`]), each waiting for the WAL syncer
    /// ([`SliceStore::wal_synced`]): eight concurrent writers share syncs,
    /// and every acknowledged commit is there after the store reopens.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_on_async_tasks_wait_for_shared_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SliceStore::open(dir.path()).unwrap());
        let before = store.wal_syncs();
        let (tasks, per_task) = (8i64, 40i64);
        commit_from_tasks(std::slice::from_ref(&store), tasks, per_task, |id| {
            (0, put((id % 7) as u16, id, "x"))
        })
        .await;
        let commits = (tasks * per_task) as u64;
        let syncs = store.wal_syncs() - before;
        assert!(syncs > 0, "commits are synced");
        assert!(
            syncs < commits,
            "{commits} commits from {tasks} tasks took {syncs} WAL syncs: commits do not share syncs"
        );
        drop(store);
        let store = SliceStore::open(dir.path()).unwrap();
        assert_eq!(rows(&store, 1, &[(0, 65535)]).len() as u64, commits);
    }

    /// The embedded layout's stores in one RocksDB: each keeps its own
    /// rows, metadata, prepared intents and markers, while commits on all
    /// of them share the one log's syncs.
    #[test]
    fn commits_written_into_a_reused_log_file_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let logs = |dir: &std::path::Path| -> Vec<u64> {
            std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .map(|p| p.metadata().unwrap().len())
                .collect()
        };
        let flush = |store: &SliceStore| {
            for name in store.families.all() {
                store.db.flush_cf(store.db.cf_handle(name).unwrap()).unwrap();
            }
        };
        let store = SliceStore::open(dir.path()).unwrap();
        // A log of over a megabyte, then two flushes: the first makes it
        // obsolete, the second's new log is that file, renamed.
        let big = "x".repeat(1000);
        for id in 0..1200 {
            store.write(1, "t", &[put(1, id, &big)]).unwrap();
        }
        flush(&store);
        store.write(1, "t", &[put(2, 1, "between")]).unwrap();
        flush(&store);
        for id in 0..50 {
            store.write(1, "t", &[put(3, id, "in the reused log")]).unwrap();
        }
        assert!(
            logs(dir.path()).iter().any(|len| *len > 1 << 20),
            "no log file was reused: {:?}",
            logs(dir.path())
        );
        drop(store);
        let store = SliceStore::open(dir.path()).unwrap();
        let found = rows(&store, 1, &[(0, 65535)]);
        assert_eq!(found.len(), 1200 + 1 + 50);
        assert_eq!(
            rows(&store, 1, &[(3, 3)])
                .iter()
                .filter(|r| r[1] == Datum::Text("in the reused log".into()))
                .count(),
            50
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_in_one_rocksdb_keep_their_own_data_and_share_syncs() {
        use crate::TxnStatus;
        let dir = tempfile::tempdir().unwrap();
        let nodes = [1, 2, 3];
        let stores: Vec<_> = SliceStore::open_shared(dir.path(), &nodes)
            .unwrap()
            .1
            .into_iter()
            .map(std::sync::Arc::new)
            .collect();
        for (node, store) in nodes.iter().zip(&stores) {
            store.register(*node, 9).unwrap();
        }
        let before = stores[0].wal_syncs();
        // Eight tasks, committing the same keys of table 1 on every store.
        let (tasks, per_task) = (8i64, 20i64);
        commit_from_tasks(&stores, tasks, per_task, |id| {
            let node = id % 3;
            (node as usize, put((id % 7) as u16, id, &format!("n{}", node + 1)))
        })
        .await;
        let commits = (tasks * per_task) as u64;
        let syncs = stores[0].wal_syncs() - before;
        assert_eq!(stores[2].wal_syncs() - before, syncs, "one log, one count");
        assert!(
            syncs < commits,
            "{commits} commits on three stores took {syncs} syncs: they do not share the log"
        );
        // Store 2 holds a prepared transaction when the process stops; store 3 loses its table.
        let prepared = tick();
        stores[1]
            .txn_write(TxnWrite::first(prepared), 1, "t", &[put(1, 99_999, "in doubt")])
            .unwrap();
        stores[1].prepare(prepared).unwrap();
        stores[2].delete_table(1).unwrap();
        drop(stores);

        let (_, stores) = SliceStore::open_shared(dir.path(), &nodes).unwrap();
        for (node, store) in nodes.iter().zip(&stores) {
            assert_eq!(store.identity(), Some((*node, 9)), "each store keeps its identity");
        }
        let values = |store: &SliceStore| {
            let mut v: Vec<String> = rows(store, 1, &[(0, 65535)])
                .into_iter()
                .map(|r| match &r[1] {
                    Datum::Text(s) => s.clone(),
                    other => panic!("{other:?}"),
                })
                .collect();
            v.dedup();
            v
        };
        assert_eq!(values(&stores[0]), vec!["n1"]);
        assert_eq!(values(&stores[1]), vec!["n2"]);
        assert!(
            values(&stores[2]).is_empty(),
            "a store's delete leaves the others' rows"
        );
        assert_eq!(stores[1].in_doubt(), 1);
        assert_eq!(
            stores[0].in_doubt() + stores[2].in_doubt(),
            0,
            "intents stay in their store"
        );
        assert_eq!(stores[1].txn_status(prepared).unwrap(), TxnStatus::Prepared);
        assert_eq!(stores[0].txn_status(prepared).unwrap(), TxnStatus::Unknown);
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

    #[test]
    fn captured_writes_reach_the_queue_and_replay_to_the_same_rows() {
        let src_dir = tempfile::tempdir().unwrap();
        let dst_dir = tempfile::tempdir().unwrap();
        let w = put;
        {
            let src = SliceStore::open(src_dir.path()).unwrap();
            src.register(1, 7).unwrap();
            src.write(1, "t", &[w(1, 1, "before"), w(5, 5, "stays")]).unwrap();
            src.start_capture(CaptureSpec {
                job: 9,
                table: 1,
                moves: vec![(0, 3, 2)],
                // An index entry table of t: its buckets 0–3 move too.
                also: vec![4],
            })
            .unwrap();
            src.write(1, "t", &[w(1, 1, "after"), w(2, 2, "new"), w(5, 5, "local")])
                .unwrap();
            src.write(
                1,
                "t",
                &[RowWrite::Delete {
                    key: row_key(2, &[Datum::Int64(2)]).unwrap(),
                }],
            )
            .unwrap();
            src.write(2, "u", &[w(1, 1, "other table")]).unwrap();
            src.write(4, "t_v", &[w(3, 3, "entry"), w(6, 6, "entry stays")])
                .unwrap();
        }
        // The capture and its queue survive a restart.
        let src = SliceStore::open(src_dir.path()).unwrap();
        assert_eq!(src.captures().unwrap().len(), 1);
        assert_eq!(src.queue_depths(9).unwrap(), vec![(2, 4)]);
        let dst = SliceStore::open(dst_dir.path()).unwrap();
        // Copy the moving buckets in two chunks, then replay the queue twice
        // (replay is idempotent).
        // A large chunk goes in as an SST file and reads back the same.
        let big: Vec<(Vec<u8>, Vec<u8>)> = (0..2000i64)
            .map(|i| {
                let k = row_key(9, &[Datum::Int64(i)]).unwrap();
                (
                    k,
                    encode_row(0, &[Datum::Int64(i), Datum::Text("y".repeat(200))]).unwrap(),
                )
            })
            .collect();
        dst.put_rows(3, &big).unwrap();
        assert_eq!(rows(&dst, 3, &[(9, 9)]).len(), 2000);
        // Over a range delete still in the memtable it is written as a batch.
        dst.delete_buckets(3, &[(9, 9)]).unwrap();
        assert!(rows(&dst, 3, &[(9, 9)]).is_empty());
        dst.put_rows(3, &big).unwrap();
        assert_eq!(rows(&dst, 3, &[(9, 9)]).len(), 2000);
        assert_eq!(dst.read_rows(3, &[(0, 65535)], None, usize::MAX).unwrap().rows, big);
        let first = src.read_rows(1, &[(0, 3)], None, 1).unwrap();
        assert_eq!(first.rows.len(), 1);
        dst.put_rows(1, &first.rows).unwrap();
        let rest = src.read_rows(1, &[(0, 3)], first.next.as_deref(), 1 << 20).unwrap();
        assert!(rest.rows.is_empty() && rest.next.is_none());
        let (entries, at_end) = src.read_queue(9, 2, None, 100, 1 << 20).unwrap();
        assert!(at_end);
        let (two, at_end) = src.read_queue(9, 2, None, 2, 1 << 20).unwrap();
        assert_eq!((two.len(), at_end), (2, false));
        assert_eq!(entries.iter().map(|e| e.0).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        let tables: Vec<TableId> = entries.iter().map(|e| e.1.table).collect();
        assert_eq!(tables, vec![1, 1, 1, 4], "each entry names its table");
        let only: Vec<QueueEntry> = entries.into_iter().map(|e| e.1).collect();
        dst.apply_queue(&only).unwrap();
        dst.apply_queue(&only).unwrap();
        assert_eq!(
            rows(&dst, 1, &[(0, 65535)]),
            vec![vec![Datum::Int64(1), Datum::Text("after".into())]]
        );
        assert_eq!(
            rows(&dst, 4, &[(0, 65535)]),
            vec![vec![Datum::Int64(3), Datum::Text("entry".into())]],
            "the entry table's moving bucket came along, the other did not"
        );
        src.trim_queue(9, 2, 1).unwrap();
        assert_eq!(src.read_queue(9, 2, None, 100, 1 << 20).unwrap().0.len(), 2);
        src.stop_capture(9).unwrap();
        assert!(src.queue_depths(9).unwrap().is_empty());
        src.write(1, "t", &[w(1, 1, "later")]).unwrap();
        assert!(src.queue_depths(9).unwrap().is_empty(), "no capture after stop");
    }
}
