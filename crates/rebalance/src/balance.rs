//! [`balance`]: GemFire's rebalance (seed 000): bytes move from the nodes
//! that hold more than their share to the nodes that have room.
//!
//! A node's *share* of the bytes is the total times its weight (its
//! capacity) over the sum of the weights. The plan works in three steps:
//!
//! 1. **Targets.** Each node's target is its load clamped into a band of
//!    ±q around its share (q is 95% of the threshold P, so that bucket
//!    granularity cannot push a node back over P). Clamping takes bytes off
//!    the nodes above the band and adds bytes to those below it; the
//!    difference of the two is spread over the nodes inside the band in
//!    proportion to their room. A node above its target gives the surplus, a
//!    node below receives the deficit. The bytes that move are then exactly
//!    the larger of "the bytes above the band" and "the bytes missing below
//!    it": the least any plan that reaches the band can move.
//! 2. **Matching.** The largest surplus goes to the largest deficit, again
//!    and again.
//! 3. **Buckets.** A transfer of some bytes from node f to node e takes
//!    whole buckets of the tables on f, biggest table first, at the size of
//!    one of that table's buckets there (its bytes on f over its buckets on
//!    f: hashing spreads a table's rows evenly over its buckets), rounded
//!    to the nearest whole bucket, from the end of f's buckets. A bucket
//!    moves at most once.

use std::collections::{BTreeMap, BTreeSet};

use slicedb_common::NodeId;
use slicedb_hashmap::{Bucket, HashMap};

/// One table as the policy sees it: its map and its bytes on each node.
#[derive(Debug, Clone)]
pub struct TableLayout<'a> {
    pub map: &'a HashMap,
    pub bytes: BTreeMap<NodeId, u64>,
}

/// Buckets of one table that go from one node to another.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// Index of the table in the slice given to [`balance`].
    pub table: usize,
    pub from: NodeId,
    pub to: NodeId,
    pub buckets: Vec<Bucket>,
    /// The bytes these buckets are estimated to hold.
    pub bytes: u64,
}

/// What [`balance`] proposes.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub moves: Vec<Move>,
    /// Bytes per node before and after the moves, and each node's share.
    pub before: BTreeMap<NodeId, u64>,
    pub after: BTreeMap<NodeId, u64>,
    pub share: BTreeMap<NodeId, f64>,
}

impl Plan {
    /// For each table that has moves, its map with them applied
    /// ([`HashMap::reassign`]), named by `name`.
    pub fn maps(&self, tables: &[TableLayout], mut name: impl FnMut() -> String) -> Vec<(usize, HashMap)> {
        let mut per_table: BTreeMap<usize, Vec<(Bucket, NodeId)>> = BTreeMap::new();
        for m in &self.moves {
            per_table
                .entry(m.table)
                .or_default()
                .extend(m.buckets.iter().map(|b| (*b, m.to)));
        }
        per_table
            .into_iter()
            .map(|(t, moves)| (t, tables[t].map.reassign(&name(), moves)))
            .collect()
    }

    /// The bytes the plan moves.
    pub fn bytes_moved(&self) -> u64 {
        self.moves.iter().map(|m| m.bytes).sum()
    }
}

/// Plans the moves that bring every node of `weights` within
/// `threshold_pct` percent of its share of the bytes of `tables`. Nodes
/// with weight 0 (or none) get a share of 0: everything on them moves.
///
/// ```
/// use std::collections::BTreeMap;
/// use slicedb_hashmap::HashMap;
/// use slicedb_rebalance::{balance, TableLayout};
/// // A table on nodes 1 and 2, 100 MB each; node 3 joined empty.
/// let map = HashMap::range("hm1", &[1, 2]).unwrap();
/// let t = TableLayout { map: &map, bytes: BTreeMap::from([(1, 100 << 20), (2, 100 << 20)]) };
/// let weights = BTreeMap::from([(1, 1.0), (2, 1.0), (3, 1.0)]);
/// let plan = balance(&[t], &weights, 10.0);
/// let share = plan.share[&3];
/// assert!(plan.after.values().all(|b| (*b as f64 - share).abs() <= 0.1 * share));
/// assert!(plan.moves.iter().all(|m| m.to == 3));
/// ```
pub fn balance(tables: &[TableLayout], weights: &BTreeMap<NodeId, f64>, threshold_pct: f64) -> Plan {
    let mut nodes: BTreeSet<NodeId> = weights.keys().copied().collect();
    for t in tables {
        nodes.extend(t.bytes.iter().filter(|(_, b)| **b > 0).map(|(n, _)| *n));
    }
    let load: BTreeMap<NodeId, f64> = nodes
        .iter()
        .map(|n| {
            (
                *n,
                tables.iter().map(|t| t.bytes.get(n).copied().unwrap_or(0) as f64).sum(),
            )
        })
        .collect();
    let total: f64 = load.values().sum();
    let weight_sum: f64 = nodes.iter().map(|n| weight(weights, *n)).sum();
    let share: BTreeMap<NodeId, f64> = nodes
        .iter()
        .map(|n| {
            let s = if weight_sum > 0.0 {
                total * weight(weights, *n) / weight_sum
            } else {
                0.0
            };
            (*n, s)
        })
        .collect();
    let before: BTreeMap<NodeId, u64> = load.iter().map(|(n, l)| (*n, *l as u64)).collect();
    let mut plan = Plan {
        moves: Vec::new(),
        after: before.clone(),
        before,
        share: share.clone(),
    };
    if total <= 0.0 || weight_sum <= 0.0 {
        return plan;
    }
    let q = (threshold_pct.max(0.0) / 100.0) * 0.95;
    let target = targets(&load, &share, q);

    // Surpluses and deficits, matched largest to largest.
    let mut give: BTreeMap<NodeId, f64> = BTreeMap::new();
    let mut take: BTreeMap<NodeId, f64> = BTreeMap::new();
    for n in &nodes {
        let d = load[n] - target[n];
        if d > 0.0 {
            give.insert(*n, d);
        } else if d < 0.0 {
            take.insert(*n, -d);
        }
    }
    // What each table still has on each node: its buckets there, from the
    // end of its runs, and the bytes of one.
    let mut left: BTreeMap<(usize, NodeId), (Vec<Bucket>, f64)> = BTreeMap::new();
    for (i, t) in tables.iter().enumerate() {
        for (n, count) in t.map.bucket_counts() {
            let bytes = t.bytes.get(&n).copied().unwrap_or(0) as f64;
            if bytes > 0.0 {
                left.insert((i, n), (t.map.buckets_of(n), bytes / count as f64));
            }
        }
    }
    let mut after: BTreeMap<NodeId, f64> = load.clone();
    for _ in 0..nodes.len() * nodes.len() + 1 {
        let Some((&f, &g)) = give.iter().max_by(|a, b| a.1.total_cmp(b.1)) else {
            break;
        };
        let Some((&e, &d)) = take.iter().max_by(|a, b| a.1.total_cmp(b.1)) else {
            break;
        };
        let amount = g.min(d);
        let mut moved = 0.0;
        // Biggest table on f first.
        let mut candidates: Vec<(usize, f64)> = left
            .iter()
            .filter(|((_, n), (b, _))| *n == f && !b.is_empty())
            .map(|((t, _), (b, size))| (*t, b.len() as f64 * size))
            .collect();
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for (t, _) in candidates {
            let Some((buckets, size)) = left.get_mut(&(t, f)) else {
                continue;
            };
            // To the nearest whole bucket: off by half a bucket at most.
            let k = (((amount - moved) / *size).round().max(0.0) as usize).min(buckets.len());
            if k == 0 {
                continue;
            }
            let taken: Vec<Bucket> = buckets.split_off(buckets.len() - k);
            let bytes = k as f64 * *size;
            moved += bytes;
            plan.moves.push(Move {
                table: t,
                from: f,
                to: e,
                buckets: taken,
                bytes: bytes as u64,
            });
        }
        *after.get_mut(&f).unwrap_or(&mut 0.0) -= moved;
        *after.entry(e).or_default() += moved;
        // Whatever could not move (less than a bucket) is dropped from both
        // sides, so the loop always ends.
        give.remove(&f);
        take.remove(&e);
        if g - amount > 0.0 {
            give.insert(f, g - amount);
        }
        if d - amount > 0.0 {
            take.insert(e, d - amount);
        }
    }
    plan.after = after.into_iter().map(|(n, l)| (n, l.max(0.0) as u64)).collect();
    plan.moves.sort_by_key(|m| (m.table, m.from, m.to));
    plan
}

fn weight(weights: &BTreeMap<NodeId, f64>, node: NodeId) -> f64 {
    weights.get(&node).copied().unwrap_or(0.0).max(0.0)
}

/// Each node's load clamped into `share ± q·share`, with the bytes that
/// clamping lost or gained spread over the nodes with room to take or give
/// them, in proportion to that room.
fn targets(load: &BTreeMap<NodeId, f64>, share: &BTreeMap<NodeId, f64>, q: f64) -> BTreeMap<NodeId, f64> {
    let upper = |n: &NodeId| share[n] * (1.0 + q);
    let lower = |n: &NodeId| share[n] * (1.0 - q);
    let mut target: BTreeMap<NodeId, f64> = load.iter().map(|(n, l)| (*n, l.clamp(lower(n), upper(n)))).collect();
    let excess: f64 = load.values().sum::<f64>() - target.values().sum::<f64>();
    let room: BTreeMap<NodeId, f64> = target
        .iter()
        .map(|(n, t)| (*n, if excess > 0.0 { upper(n) - t } else { t - lower(n) }))
        .collect();
    let room_sum: f64 = room.values().sum();
    if room_sum > 0.0 {
        for (n, t) in target.iter_mut() {
            *t += excess * room[n] / room_sum;
        }
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn weights(nodes: &[NodeId]) -> BTreeMap<NodeId, f64> {
        nodes.iter().map(|n| (*n, 1.0)).collect()
    }

    /// The least any plan can move to bring every node within `p` of its
    /// share: the bytes above the band, or the bytes missing below it.
    fn minimum(plan: &Plan, p: f64) -> f64 {
        let over: f64 = plan
            .before
            .iter()
            .map(|(n, b)| (*b as f64 - plan.share[n] * (1.0 + p)).max(0.0))
            .sum();
        let under: f64 = plan
            .before
            .iter()
            .map(|(n, b)| (plan.share[n] * (1.0 - p) - *b as f64).max(0.0))
            .sum();
        over.max(under)
    }

    fn assert_within(plan: &Plan, p: f64) {
        for (n, b) in &plan.after {
            let s = plan.share[n];
            assert!(
                (*b as f64 - s).abs() <= p * s + 1.0,
                "node {n}: {b} bytes, share {s}: {plan:?}"
            );
        }
    }

    /// The maps the plan derives agree with its figures: each move's
    /// buckets belonged to its source and now belong to its target.
    fn assert_maps_follow(plan: &Plan, tables: &[TableLayout]) {
        let mut i = 0;
        for (t, m) in plan.maps(tables, || {
            i += 1;
            format!("d{i}")
        }) {
            let moved: usize = plan
                .moves
                .iter()
                .filter(|x| x.table == t)
                .map(|x| x.buckets.len())
                .sum();
            assert_eq!(tables[t].map.moved_buckets(&m).len(), moved);
            for x in plan.moves.iter().filter(|x| x.table == t) {
                assert!(x
                    .buckets
                    .iter()
                    .all(|b| tables[t].map.owner(*b) == x.from && m.owner(*b) == x.to));
            }
        }
    }

    #[test]
    fn an_empty_new_node_is_filled_moving_near_the_minimum() {
        let map = HashMap::range("a", &[1, 2]).unwrap();
        let tables = [TableLayout {
            map: &map,
            bytes: BTreeMap::from([(1, 100 * MB), (2, 100 * MB)]),
        }];
        let plan = balance(&tables, &weights(&[1, 2, 3]), 10.0);
        assert_within(&plan, 0.10);
        let min = minimum(&plan, 0.10);
        let moved = plan.bytes_moved() as f64;
        assert!(
            moved >= min - 1.0 && moved <= 1.05 * min,
            "moved {moved}, minimum {min}"
        );
        assert!(plan.moves.iter().all(|m| m.to == 3));
        assert_maps_follow(&plan, &tables);
    }

    #[test]
    fn a_balanced_cluster_moves_nothing() {
        let map = HashMap::range("a", &[1, 2, 3]).unwrap();
        let tables = [TableLayout {
            map: &map,
            bytes: BTreeMap::from([(1, 10 * MB), (2, 11 * MB), (3, 10 * MB)]),
        }];
        assert!(balance(&tables, &weights(&[1, 2, 3]), 10.0).moves.is_empty());
    }

    #[test]
    fn one_full_node_among_several_tables() {
        // Three tables; node 2 holds far more of two of them.
        let a = HashMap::range("a", &[1, 2, 3, 4]).unwrap();
        let b = HashMap::range("b", &[2, 3]).unwrap();
        let c = HashMap::range("c", &[1, 2]).unwrap();
        let tables = [
            TableLayout {
                map: &a,
                bytes: BTreeMap::from([(1, 40 * MB), (2, 40 * MB), (3, 40 * MB), (4, 40 * MB)]),
            },
            TableLayout {
                map: &b,
                bytes: BTreeMap::from([(2, 300 * MB), (3, 20 * MB)]),
            },
            TableLayout {
                map: &c,
                bytes: BTreeMap::from([(1, 5 * MB), (2, 90 * MB)]),
            },
        ];
        for p in [5.0, 10.0, 20.0] {
            let plan = balance(&tables, &weights(&[1, 2, 3, 4]), p);
            assert_within(&plan, p / 100.0);
            let min = minimum(&plan, p / 100.0);
            assert!(
                plan.bytes_moved() as f64 <= 1.05 * min,
                "p={p}: {} vs {min}",
                plan.bytes_moved()
            );
            assert!(
                plan.moves.iter().all(|m| m.from == 2),
                "only the full node gives: {:?}",
                plan.moves
            );
            assert_maps_follow(&plan, &tables);
        }
    }

    #[test]
    fn capacity_weights_shares_and_zero_weight_empties_a_node() {
        let map = HashMap::range("a", &[1, 2, 3]).unwrap();
        let tables = [TableLayout {
            map: &map,
            bytes: BTreeMap::from([(1, 60 * MB), (2, 60 * MB), (3, 60 * MB)]),
        }];
        let w = BTreeMap::from([(1, 1.0), (2, 1.0), (3, 2.0)]);
        let plan = balance(&tables, &w, 10.0);
        assert!((plan.share[&3] - 90.0 * MB as f64).abs() < 1.0);
        assert_within(&plan, 0.10);
        let w = BTreeMap::from([(1, 1.0), (2, 1.0), (3, 0.0)]);
        let plan = balance(&tables, &w, 10.0);
        assert_eq!(plan.after[&3], 0);
        assert_within(&plan, 0.10);
    }

    #[test]
    fn empty_tables_move_nothing() {
        let map = HashMap::range("a", &[1]).unwrap();
        let tables = [TableLayout {
            map: &map,
            bytes: BTreeMap::new(),
        }];
        assert!(balance(&tables, &weights(&[1, 2]), 10.0).moves.is_empty());
    }
}
