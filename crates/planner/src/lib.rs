//! Planning: how DataFusion sees slicedb's distributed tables.
//!
//! - [`SliceTable`] is the `TableProvider` of a distributed table. Its scan is
//!   a [`SliceScanExec`] with one partition per slice server that holds
//!   buckets the query needs; filters on the distribution key prune buckets
//!   (an equality on the full key touches one bucket on one slice server), and
//!   the other simple filters and the projection run on the slice servers.
//! - INSERT, UPDATE, DELETE and TRUNCATE are planned by DataFusion and
//!   executed by [`write`]'s operators, which route rows by bucket to their
//!   slice servers, one write batch per slice server.
//! - [`fragment`] sends partial aggregates and co-located joins to the
//!   slice servers, so the work goes to the data.
//! - [`point_query`] answers `SELECT … WHERE pk = v` without DataFusion.
//! - [`write_hold`] lets a redistribution hold writes to one bucket batch
//!   while it hands the batch over; writers route at send time, by the
//!   catalog's placement of the moment.
//! - [`txn`] carries a statement's transaction (snapshot, pending writes)
//!   to the scans and write operators.
//! - [`SliceSchemaProvider`] exposes the catalog's tables and views to
//!   DataFusion, always at the catalog's latest version.

pub mod age;
pub mod array_int;
pub mod array_ops;
pub mod array_text;
pub mod bytea;
mod direct_value;
pub mod foreign_key;
pub mod fragment;
pub mod index_lookup;
pub mod interval_cmp;
pub mod interval_mul;
pub mod interval_text;
pub mod json_agg;
pub mod json_functions;
pub mod local_time;
pub mod param_casts;
pub mod pg_functions;
pub mod point_query;
pub mod point_write;
pub mod pushdown;
pub mod scalar_subquery;
pub mod scan;
pub mod schema;
pub mod single_value;
pub mod size_pretty;
pub mod table;
pub mod text_input;
pub mod text_types;
pub mod timestamp_text;
pub mod to_char;
pub mod to_date;
pub mod txn;
pub mod udf;
pub mod write;
pub mod write_hold;

pub use scan::SliceScanExec;
pub use schema::SliceSchemaProvider;
pub use table::SliceTable;
