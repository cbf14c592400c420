//! Slice storage: a slice server's RocksDB column families ([`slice_db`]:
//! a RocksDB of its own in a slice server process, one shared by the slice
//! servers of the embedded layout).
//!
//! Every row of every slice the server holds lives under the key
//!
//! ```text
//! [table id: u32 BE][bucket: u16 BE][primary key, order-preserving]
//! ```
//!
//! so one bucket of one table is one contiguous key range: a bucket can be
//! scanned, copied or deleted as a range ([`SliceStore::scan`],
//! [`SliceStore::delete_buckets`]). Keys and values are encoded by
//! `slicedb_codec` (re-exported here as [`key`] and [`row`]), which the
//! coordinator's planner shares without linking RocksDB: the primary key
//! with the `memcomparable` crate, so RocksDB's byte order is the key's SQL
//! order; a table without a primary key gets a hidden row id instead,
//! unique across the cluster because its top bits are the slice server's
//! node id.
//!
//! Values carry a format byte and a version slot, the commit timestamp of
//! the transaction that wrote them, ahead of the row's offset table and
//! values: the newest version of a row stays at its key, older ones go to a
//! history column family while a snapshot may need them ([`mvcc`]). Scans
//! hand rows over as their stored bytes ([`SliceStore::scan_encoded`]).
//! Transactions' pending writes, row locks and prepared intents live in
//! `txn`. Key id 0 is reserved for the slice server's own metadata,
//! including the [`write_queue`]s a source fills while a table it holds is
//! redistributed, and the row format of the directory (`upgrade`, which
//! rewrites a directory of an earlier format when it is opened).

pub use slicedb_codec::{key, row};
mod backfill;
mod lock_table;
pub mod mvcc;
mod sizes;
pub mod slice_db;
pub mod store;
mod txn;
mod upgrade;
mod wal_sync;
pub mod write_queue;

pub use backfill::Backfilled;
pub use key::RowKey;
pub use mvcc::{OwnWrites, ReadAt, Timestamp, TxnId, TxnWrite};
pub use slice_db::SliceDb;
pub use store::{RowChunk, RowWrite, Seen, SliceStore, TableStats};
pub use txn::TxnStatus;
pub use write_queue::{CaptureSpec, QueueEntry};
