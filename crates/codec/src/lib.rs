//! The bytes slicedb stores and sends, without the store: row keys
//! ([`key`]), row values ([`row`], read in place column by column, and
//! [`columns`], which appends them to Arrow builders), the format of
//! earlier versions kept only for upgrades ([`legacy`]), what a
//! transaction's reads and writes carry to a slice server ([`txn`]), and
//! what a slice server reports about its contents ([`slice`]).
//!
//! The coordinator's planner and the transport encode keys and describe
//! reads and writes with this crate; `slicedb_storage` writes the same
//! bytes into RocksDB. Neither depends on `slicedb_storage` (the transport
//! links no RocksDB at all; the planner still does, through the catalog's
//! own store).

pub mod columns;
pub mod key;
pub mod legacy;
pub mod row;
pub mod slice;
pub mod txn;

pub use key::RowKey;
pub use slice::{BucketLoad, CaptureSpec, QueueEntry, RowChunk, TableStats, TxnStatus};
pub use txn::{OwnWrites, ReadAt, RowWrite, Seen, Timestamp, TxnId, TxnWrite};
