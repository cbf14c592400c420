//! [`HashMap`]: a named assignment of all 65,536 buckets to nodes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use slicedb_common::{err, NodeId, Result};

use crate::{Bucket, BUCKET_COUNT};

/// How a map was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Contiguous runs of 65536/N buckets, in node order (seed 002, S22).
    Range,
    /// Derived from a base map, moving only the surplus buckets.
    MinimalMove,
    /// A base map with some buckets given to other nodes by the
    /// rebalancer (`DRAIN NODE`, `REBALANCE`): see [`HashMap::reassign`].
    Derived,
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Range => "range",
            Strategy::MinimalMove => "minimal_move",
            Strategy::Derived => "derived",
        }
    }

    pub fn parse(s: &str) -> Result<Strategy> {
        match s.to_ascii_lowercase().as_str() {
            "range" => Ok(Strategy::Range),
            "minimal_move" => Ok(Strategy::MinimalMove),
            other => Err(err!(
                InvalidParameterValue,
                "unknown hash map strategy \"{other}\" (use range or minimal_move)"
            )),
        }
    }
}

/// A run of buckets `start..=end` owned by `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRange {
    pub start: Bucket,
    pub end: Bucket,
    pub node: NodeId,
}

impl BucketRange {
    pub fn len(&self) -> usize {
        self.end as usize - self.start as usize + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A hash map in the spec's sense: every bucket has exactly one owner node.
///
/// It is stored as runs of buckets ([`HashMap::ranges`]) and expanded to a
/// bucket → node table in memory for O(1) routing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredHashMap", into = "StoredHashMap")]
pub struct HashMap {
    pub name: String,
    pub strategy: Strategy,
    /// The nodes the map was built over, ascending.
    pub nodes: Vec<NodeId>,
    owners: Vec<NodeId>,
}

#[derive(Serialize, Deserialize)]
struct StoredHashMap {
    name: String,
    strategy: Strategy,
    nodes: Vec<NodeId>,
    ranges: Vec<BucketRange>,
}

impl From<StoredHashMap> for HashMap {
    fn from(s: StoredHashMap) -> Self {
        let mut owners = vec![0; BUCKET_COUNT];
        for r in &s.ranges {
            owners[r.start as usize..=r.end as usize].fill(r.node);
        }
        HashMap {
            name: s.name,
            strategy: s.strategy,
            nodes: s.nodes,
            owners,
        }
    }
}

impl From<HashMap> for StoredHashMap {
    fn from(m: HashMap) -> Self {
        let ranges = m.ranges();
        StoredHashMap {
            name: m.name,
            strategy: m.strategy,
            nodes: m.nodes,
            ranges,
        }
    }
}

impl HashMap {
    /// Seed 002's S22: node *i* of N gets one contiguous run; the first
    /// `65536 % N` nodes get one bucket more.
    ///
    /// ```
    /// use slicedb_hashmap::HashMap;
    /// let m = HashMap::range("hm", &[1, 2, 3]).unwrap();
    /// assert_eq!(m.owner(0), 1);
    /// assert_eq!(m.owner(65535), 3);
    /// ```
    pub fn range(name: &str, nodes: &[NodeId]) -> Result<HashMap> {
        let nodes = normalize_nodes(nodes)?;
        let n = nodes.len();
        let mut owners = Vec::with_capacity(BUCKET_COUNT);
        for (i, node) in nodes.iter().enumerate() {
            let count = BUCKET_COUNT / n + usize::from(i < BUCKET_COUNT % n);
            owners.extend(std::iter::repeat_n(*node, count));
        }
        Ok(HashMap {
            name: name.to_string(),
            strategy: Strategy::Range,
            nodes,
            owners,
        })
    }

    /// Builds a map over `nodes` from `base`, moving as few buckets as
    /// possible while leaving per-node counts within one of each other.
    ///
    /// Each node's target is 65536/N; the `65536 % N` extra buckets go to the
    /// nodes that already hold the most, which is what makes the move minimal.
    /// A node over its target gives up the buckets at the end of its runs;
    /// nodes under their target take them, in node order.
    pub fn minimal_move(name: &str, base: &HashMap, nodes: &[NodeId]) -> Result<HashMap> {
        let nodes = normalize_nodes(nodes)?;
        let n = nodes.len();
        let held = base.bucket_counts();
        // Order nodes by how many buckets they hold now (most first) to hand
        // out the remainder, so that no node must give up a bucket that
        // another node would then need back.
        let mut by_held: Vec<NodeId> = nodes.clone();
        by_held.sort_by_key(|node| (std::cmp::Reverse(held.get(node).copied().unwrap_or(0)), *node));
        let mut target: BTreeMap<NodeId, usize> = BTreeMap::new();
        for (i, node) in by_held.iter().enumerate() {
            target.insert(*node, BUCKET_COUNT / n + usize::from(i < BUCKET_COUNT % n));
        }

        let mut owners = base.owners.clone();
        let mut keep: BTreeMap<NodeId, usize> = BTreeMap::new();
        let mut surplus: Vec<Bucket> = Vec::new();
        // Walk each old node's buckets from the end of its runs backwards and
        // release those beyond its target (all of them if it left the map).
        let mut per_node: BTreeMap<NodeId, Vec<Bucket>> = BTreeMap::new();
        for (b, node) in owners.iter().enumerate() {
            per_node.entry(*node).or_default().push(b as Bucket);
        }
        for (node, buckets) in &per_node {
            let t = target.get(node).copied().unwrap_or(0);
            keep.insert(*node, buckets.len().min(t));
            if buckets.len() > t {
                surplus.extend_from_slice(&buckets[t..]);
            }
        }
        surplus.sort_unstable();
        let mut surplus = surplus.into_iter();
        for node in &nodes {
            let have = keep.get(node).copied().unwrap_or(0);
            let want = target[node];
            for _ in have..want {
                let b = surplus
                    .next()
                    .ok_or_else(|| slicedb_common::Error::internal("minimal_move ran out of buckets"))?;
                owners[b as usize] = *node;
            }
        }
        Ok(HashMap {
            name: name.to_string(),
            strategy: Strategy::MinimalMove,
            nodes,
            owners,
        })
    }

    /// A copy of this map named `name` in which each `(bucket, node)` of
    /// `moves` belongs to `node`; every other bucket keeps its owner. The
    /// map's nodes are the nodes that own buckets afterwards.
    ///
    /// ```
    /// use slicedb_hashmap::HashMap;
    /// let m = HashMap::range("hm1", &[1, 2]).unwrap();
    /// let d = m.reassign("hm2", (32768..=65535).map(|b| (b as u16, 1)));
    /// assert_eq!(d.nodes, vec![1]);
    /// assert_eq!(m.moved_buckets(&d).len(), 32768);
    /// ```
    pub fn reassign(&self, name: &str, moves: impl IntoIterator<Item = (Bucket, NodeId)>) -> HashMap {
        let mut owners = self.owners.clone();
        for (bucket, node) in moves {
            owners[bucket as usize] = node;
        }
        let mut nodes = owners.clone();
        nodes.sort_unstable();
        nodes.dedup();
        HashMap {
            name: name.to_string(),
            strategy: Strategy::Derived,
            nodes,
            owners,
        }
    }

    /// The buckets `node` owns, ascending.
    pub fn buckets_of(&self, node: NodeId) -> Vec<Bucket> {
        (0..BUCKET_COUNT)
            .filter(|b| self.owners[*b] == node)
            .map(|b| b as Bucket)
            .collect()
    }

    /// The node that owns `bucket`.
    #[inline]
    pub fn owner(&self, bucket: Bucket) -> NodeId {
        self.owners[bucket as usize]
    }

    /// The map as maximal runs of consecutive buckets with one owner.
    pub fn ranges(&self) -> Vec<BucketRange> {
        let mut out: Vec<BucketRange> = Vec::new();
        for (b, node) in self.owners.iter().enumerate() {
            match out.last_mut() {
                Some(r) if r.node == *node && r.end as usize + 1 == b => r.end = b as Bucket,
                _ => out.push(BucketRange {
                    start: b as Bucket,
                    end: b as Bucket,
                    node: *node,
                }),
            }
        }
        out
    }

    /// Buckets per node.
    pub fn bucket_counts(&self) -> BTreeMap<NodeId, usize> {
        let mut counts = BTreeMap::new();
        for node in &self.owners {
            *counts.entry(*node).or_insert(0) += 1;
        }
        counts
    }

    /// A table's placement in the middle of a redistribution from `self` to
    /// `target`: this map, overlaid with `target`'s owners for the buckets
    /// in `moved` (inclusive runs). `name` names the placement.
    ///
    /// ```
    /// use slicedb_hashmap::HashMap;
    /// let old = HashMap::range("hm1", &[1, 2]).unwrap();
    /// let new = HashMap::range("hm2", &[1, 2, 3]).unwrap();
    /// let mid = old.overlay("hm1+hm2", &new, &[(65535, 65535)]);
    /// assert_eq!(mid.owner(65535), 3);
    /// assert_eq!(mid.owner(65534), 2);
    /// ```
    pub fn overlay(&self, name: &str, target: &HashMap, moved: &[(Bucket, Bucket)]) -> HashMap {
        let mut owners = self.owners.clone();
        for (start, end) in moved {
            let (s, e) = (*start as usize, *end as usize);
            owners[s..=e].copy_from_slice(&target.owners[s..=e]);
        }
        let mut nodes: Vec<NodeId> = self.nodes.iter().chain(&target.nodes).copied().collect();
        nodes.sort_unstable();
        nodes.dedup();
        HashMap {
            name: name.to_string(),
            strategy: self.strategy,
            nodes,
            owners,
        }
    }

    /// The buckets whose owner differs between `self` and `other`.
    pub fn moved_buckets(&self, other: &HashMap) -> Vec<Bucket> {
        (0..BUCKET_COUNT)
            .filter(|b| self.owners[*b] != other.owners[*b])
            .map(|b| b as Bucket)
            .collect()
    }
}

fn normalize_nodes(nodes: &[NodeId]) -> Result<Vec<NodeId>> {
    let mut nodes = nodes.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.is_empty() {
        return Err(err!(InvalidParameterValue, "a hash map needs at least one node"));
    }
    if nodes.len() > BUCKET_COUNT {
        return Err(err!(
            InvalidParameterValue,
            "a hash map cannot span more than {BUCKET_COUNT} nodes"
        ));
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_balanced(m: &HashMap) {
        assert_eq!(m.owners.len(), BUCKET_COUNT, "every bucket has exactly one owner");
        let counts = m.bucket_counts();
        assert_eq!(counts.keys().copied().collect::<Vec<_>>(), m.nodes);
        let (min, max) = (counts.values().min().unwrap(), counts.values().max().unwrap());
        assert!(max - min <= 1, "per-node counts differ by more than one: {counts:?}");
        assert_eq!(counts.values().sum::<usize>(), BUCKET_COUNT);
    }

    #[test]
    fn range_maps_are_contiguous_and_balanced() {
        for n in 1..=17u32 {
            let nodes: Vec<NodeId> = (1..=n).collect();
            let m = HashMap::range("hm", &nodes).unwrap();
            assert_balanced(&m);
            assert_eq!(m.ranges().len(), n as usize, "one contiguous run per node");
        }
        let m = HashMap::range("hm", &[1, 2, 3]).unwrap();
        assert_eq!(
            m.ranges(),
            vec![
                BucketRange {
                    start: 0,
                    end: 21845,
                    node: 1
                },
                BucketRange {
                    start: 21846,
                    end: 43690,
                    node: 2
                },
                BucketRange {
                    start: 43691,
                    end: 65535,
                    node: 3
                },
            ]
        );
    }

    /// The optimum: a node can keep at most min(held, target) buckets, so at
    /// least BUCKET_COUNT - Σ min(held, target) must move.
    fn optimal_moves(base: &HashMap, new: &HashMap) -> usize {
        let held = base.bucket_counts();
        let target = new.bucket_counts();
        BUCKET_COUNT
            - target
                .iter()
                .map(|(node, t)| held.get(node).copied().unwrap_or(0).min(*t))
                .sum::<usize>()
    }

    #[test]
    fn minimal_move_moves_exactly_the_optimal_number_of_buckets() {
        // 3 → 4 nodes: exactly 1/4 of the buckets move.
        let base = HashMap::range("old", &[1, 2, 3]).unwrap();
        let new = HashMap::minimal_move("new", &base, &[1, 2, 3, 4]).unwrap();
        assert_balanced(&new);
        assert_eq!(base.moved_buckets(&new).len(), 16_384);
        // and only node 4 receives buckets
        for b in base.moved_buckets(&new) {
            assert_eq!(new.owner(b), 4);
        }

        for (from, to) in [(1u32, 2u32), (2, 3), (3, 5), (4, 7), (5, 6), (7, 8), (3, 16)] {
            let old_nodes: Vec<NodeId> = (1..=from).collect();
            let new_nodes: Vec<NodeId> = (1..=to).collect();
            let base = HashMap::range("old", &old_nodes).unwrap();
            let new = HashMap::minimal_move("new", &base, &new_nodes).unwrap();
            assert_balanced(&new);
            let moved = base.moved_buckets(&new).len();
            assert_eq!(moved, optimal_moves(&base, &new), "{from} → {to}");
            // k/(N+k) of the buckets, up to rounding
            let ideal = BUCKET_COUNT as f64 * (to - from) as f64 / to as f64;
            assert!(
                (moved as f64 - ideal).abs() <= to as f64,
                "{from} → {to}: {moved} vs {ideal}"
            );
        }
    }

    #[test]
    fn minimal_move_chains_and_shrinks() {
        let m3 = HashMap::range("a", &[1, 2, 3]).unwrap();
        let m4 = HashMap::minimal_move("b", &m3, &[1, 2, 3, 4]).unwrap();
        let m5 = HashMap::minimal_move("c", &m4, &[1, 2, 3, 4, 5]).unwrap();
        assert_balanced(&m5);
        assert_eq!(m4.moved_buckets(&m5).len(), optimal_moves(&m4, &m5));
        // removing node 2: only its buckets move
        let m = HashMap::minimal_move("d", &m5, &[1, 3, 4, 5]).unwrap();
        assert_balanced(&m);
        for b in m5.moved_buckets(&m) {
            assert_eq!(m5.owner(b), 2);
        }
    }

    #[test]
    fn range_strategy_moves_about_half_going_from_three_to_four() {
        let a = HashMap::range("a", &[1, 2, 3]).unwrap();
        let b = HashMap::range("b", &[1, 2, 3, 4]).unwrap();
        let moved = a.moved_buckets(&b).len();
        assert!(moved > BUCKET_COUNT / 3, "{moved}");
    }

    #[test]
    fn maps_round_trip_through_their_stored_form() {
        let base = HashMap::range("old", &[1, 2, 3]).unwrap();
        let m = HashMap::minimal_move("new", &base, &[1, 2, 3, 4]).unwrap();
        let json = serde_json_like(&m);
        assert_eq!(json, m);
    }

    fn serde_json_like(m: &HashMap) -> HashMap {
        let stored: StoredHashMap = m.clone().into();
        stored.into()
    }

    #[test]
    fn empty_node_list_is_refused() {
        assert!(HashMap::range("x", &[]).is_err());
    }
}
