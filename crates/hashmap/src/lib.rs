//! Buckets and hash maps: where a row lives.
//!
//! A row's distribution-key values hash to one of [`BUCKET_COUNT`] (65,536)
//! buckets ([`bucket_of`]). A [`HashMap`] assigns every bucket to one slice
//! server (node). A table is bound to a named hash map; when the cluster
//! grows, a new map over more nodes becomes the *current* map (seed 002, S2),
//! and tables move between maps bucket by bucket.
//!
//! Two strategies build a map a user asks for ([`Strategy`]):
//! - `range` (seed 002's S22): node *i* of N owns one contiguous run of about
//!   65536/N buckets;
//! - `minimal_move`: derived from a base map, each node keeps what it can and
//!   hands over only its surplus, taken from the ends of its runs, so going
//!   from N to N+k nodes moves the optimal k/(N+k) of the buckets.
//!
//! A third kind, `derived`, is made by the rebalancer (`slicedb-rebalance`):
//! a table's map with some buckets given to other nodes
//! ([`HashMap::reassign`]).

pub mod bucket;
pub mod map;

pub use bucket::{bucket_of, Bucket, BUCKET_COUNT};
pub use map::{BucketRange, HashMap, Strategy};
