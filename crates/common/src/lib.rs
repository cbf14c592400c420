//! Shared vocabulary of slicedb: SQL types, datums, table definitions and the
//! typed error that carries a PostgreSQL SQLSTATE to the client.
//!
//! Every other crate speaks in these terms. Keeping them in one small crate
//! lets the slice servers (which know nothing of SQL planning) and the
//! coordinator (which knows nothing of RocksDB) agree on what a row is.

pub mod acl;
pub mod at_time_zone;
pub mod blocking;
pub mod datum;
pub mod error;
pub mod failpoint;
pub mod int_arith;
pub mod numeric;
pub mod pg_semantics;
pub mod table;
pub mod text_types;
pub mod types;

pub use datum::Datum;
pub use error::{Error, Result, SqlState};
pub use table::{
    pad_row, slot_of, CheckDef, ColumnDef, Comments, FkAction, ForeignKeyDef, Identity, IndexDef, KeyFunction,
    NullTest, TableDef, TableId,
};
pub use types::{ArrayElem, SqlType};

/// Identifier of a slice server (a node). Ids are never reused.
pub type NodeId = u32;
