//! [`drain`]: hand every bucket of one node to the others.
//!
//! Only the drained node's buckets move (the fewest a drain can move). They
//! go to the receivers that hold the fewest buckets of the map first, so a
//! map that was balanced stays balanced to within one bucket, and each
//! receiver gets one contiguous share of the node's buckets in bucket order,
//! which keeps the derived map's runs (and the redistribution's cut-over
//! batches) few.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use slicedb_common::{err, NodeId, Result};
use slicedb_hashmap::HashMap;

/// `base` with every bucket of `node` given to `receivers` (nodes that
/// hold none of `base`'s buckets yet may be among them), named `name`.
///
/// ```
/// use slicedb_hashmap::HashMap;
/// let m = HashMap::range("hm1", &[1, 2, 3, 4]).unwrap();
/// let d = slicedb_rebalance::drain(&m, 4, &[1, 2, 3], "hm2").unwrap();
/// assert_eq!(d.nodes, vec![1, 2, 3]);
/// // only node 4's quarter moves
/// assert_eq!(m.moved_buckets(&d).len(), 16384);
/// ```
pub fn drain(base: &HashMap, node: NodeId, receivers: &[NodeId], name: &str) -> Result<HashMap> {
    let mut receivers: Vec<NodeId> = receivers.iter().copied().filter(|r| *r != node).collect();
    receivers.sort_unstable();
    receivers.dedup();
    let leaving = base.buckets_of(node);
    if leaving.is_empty() {
        return Ok(base.reassign(name, []));
    }
    if receivers.is_empty() {
        return Err(err!(
            ObjectNotInPrerequisiteState,
            "hash map {} has no node but {node} to give its buckets to",
            base.name
        ));
    }
    // One bucket at a time to the receiver holding the fewest (ties to the
    // lowest id): a water-filling of the leaving buckets.
    let held = base.bucket_counts();
    let mut heap: BinaryHeap<Reverse<(usize, NodeId)>> = receivers
        .iter()
        .map(|r| Reverse((held.get(r).copied().unwrap_or(0), *r)))
        .collect();
    let mut share: BTreeMap<NodeId, usize> = BTreeMap::new();
    for _ in 0..leaving.len() {
        let Some(Reverse((count, r))) = heap.pop() else {
            break;
        };
        *share.entry(r).or_default() += 1;
        heap.push(Reverse((count + 1, r)));
    }
    let mut leaving = leaving.into_iter();
    let moves: Vec<_> = share
        .into_iter()
        .flat_map(|(r, n)| leaving.by_ref().take(n).map(move |b| (b, r)).collect::<Vec<_>>())
        .collect();
    Ok(base.reassign(name, moves))
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicedb_hashmap::BUCKET_COUNT;

    fn spread(m: &HashMap) -> usize {
        let counts = m.bucket_counts();
        counts.values().max().unwrap() - counts.values().min().unwrap()
    }

    #[test]
    fn only_the_drained_nodes_buckets_move_and_the_rest_stay_balanced() {
        for n in 2..=9u32 {
            let nodes: Vec<NodeId> = (1..=n).collect();
            let base = HashMap::range("a", &nodes).unwrap();
            for gone in [1, n / 2 + 1, n] {
                let rest: Vec<NodeId> = nodes.iter().copied().filter(|x| *x != gone).collect();
                let d = drain(&base, gone, &rest, "b").unwrap();
                assert_eq!(d.nodes, rest);
                assert!(!d.bucket_counts().contains_key(&gone));
                let moved = base.moved_buckets(&d);
                assert_eq!(moved.len(), base.buckets_of(gone).len(), "{n} nodes, drain {gone}");
                assert!(moved.iter().all(|b| base.owner(*b) == gone));
                assert!(spread(&d) <= 1, "{n} nodes, drain {gone}: {:?}", d.bucket_counts());
                // each receiver takes one contiguous share, so a node's one
                // run becomes at most one run per receiver
                assert!(d.ranges().len() <= base.ranges().len() - 1 + rest.len());
            }
        }
    }

    #[test]
    fn a_new_empty_node_takes_the_most() {
        let base = HashMap::range("a", &[1, 2]).unwrap();
        let d = drain(&base, 2, &[1, 3], "b").unwrap();
        let counts = d.bucket_counts();
        assert_eq!(counts[&1], BUCKET_COUNT / 2);
        assert_eq!(counts[&3], BUCKET_COUNT / 2);
        assert_eq!(base.moved_buckets(&d).len(), BUCKET_COUNT / 2);
    }

    #[test]
    fn the_last_node_cannot_be_drained() {
        let base = HashMap::range("a", &[1]).unwrap();
        let e = drain(&base, 1, &[1], "b").unwrap_err();
        assert_eq!(e.state, slicedb_common::SqlState::ObjectNotInPrerequisiteState);
    }

    #[test]
    fn draining_a_node_the_map_does_not_use_changes_nothing() {
        let base = HashMap::range("a", &[1, 2]).unwrap();
        let d = drain(&base, 7, &[1, 2], "b").unwrap();
        assert!(base.moved_buckets(&d).is_empty());
    }
}
