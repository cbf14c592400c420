//! The elasticity policy: which buckets of a table should live where.
//!
//! Moving buckets is the job of redistribution (the coordinator's
//! `redistribute.rs`): a table moves from its hash map to another map,
//! batch by batch, while it is read and written. This crate decides only
//! the *target* maps. Each function here takes hash maps (and, where it
//! matters, sizes) and returns a new map *derived* from the table's own
//! ([`HashMap::reassign`]): the buckets that should move get a new owner,
//! every other bucket keeps its node, so a move is as small as the goal
//! allows. Nothing here does I/O, so the policy is tested alone, on
//! synthetic maps, and the mechanism end to end.
//!
//! - [`drain`]: every bucket of one node goes to the others (`DRAIN NODE`);
//! - [`balance`]: buckets go from the nodes holding more than their share
//!   of the bytes to those with room, as few bytes as reach the goal
//!   (`REBALANCE`, GemFire's rebalance of seed 000);
//! - [`split::pick`]: part of the hottest slice of a node well above the
//!   mean load goes to the least-loaded node (Azure's load-based split,
//!   seeds 003/004).

pub mod balance;
pub mod drain;
pub mod split;

pub use balance::{balance, Move, Plan, TableLayout};
pub use drain::drain;
