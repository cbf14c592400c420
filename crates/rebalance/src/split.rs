//! Load-based split (Azure's partition manager, seeds 003/004): when one
//! node carries clearly more than the mean load, part of its hottest slice
//! moves to the least-loaded node.
//!
//! A *slice* is a run of consecutive buckets of one table on one node; its
//! per-bucket load (rows read and written per second) is what the slice
//! server reported for each bucket, the "key information" of the seed: the
//! split point is found in it. [`pick`] decides:
//!
//! 1. the hottest node must carry more than the mean node load by
//!    [`SplitRules::above_mean_pct`] (and at least
//!    [`SplitRules::min_node_load`], so an idle cluster is left alone);
//! 2. the load to hand over is what brings the hot node down to the mean,
//!    but no more than half the gap to the least-loaded node (which
//!    receives it), so the two do not swap roles;
//! 3. its slices are tried hottest first; a slice whose hottest bucket
//!    carries [`SplitRules::one_hot_pct`] of its load is one hot key, which
//!    moving buckets cannot spread, and is skipped;
//! 4. the split ratio is the load to move over the slice's load; the split
//!    point is where the slice's cumulative load from one end reaches that
//!    share. Both ends are tried, and the one that moves fewer buckets
//!    wins; at least one bucket always stays.
//!
//! Whether the heat lasts long enough, and how often splits may happen,
//! is the caller's business (the coordinator's `auto_split`).

use std::collections::BTreeMap;

use slicedb_common::NodeId;
use slicedb_hashmap::Bucket;

/// One slice and the load of each of its buckets, `first..=last`.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceLoad {
    /// The caller's index of the table.
    pub table: usize,
    pub node: NodeId,
    pub first: Bucket,
    pub last: Bucket,
    /// Load of buckets `first..=last`, in order.
    pub loads: Vec<f64>,
}

impl SliceLoad {
    pub fn load(&self) -> f64 {
        self.loads.iter().sum()
    }

    /// The hottest bucket and its share of the slice's load (percent).
    pub fn hottest(&self) -> (Bucket, f64) {
        let (i, l) = self
            .loads
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, l)| (i, *l))
            .unwrap_or((0, 0.0));
        let total = self.load();
        (
            self.first + i as Bucket,
            if total > 0.0 { l * 100.0 / total } else { 0.0 },
        )
    }
}

/// When a split is worth it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitRules {
    /// How far above the mean node load the hottest node must be (percent).
    pub above_mean_pct: f64,
    /// The least load (per second) a node must carry to be split.
    pub min_node_load: f64,
    /// A slice whose hottest bucket carries this share of its load (percent)
    /// is one hot key.
    pub one_hot_pct: f64,
}

impl Default for SplitRules {
    fn default() -> Self {
        SplitRules {
            above_mean_pct: 25.0,
            min_node_load: 50.0,
            one_hot_pct: 80.0,
        }
    }
}

/// A split: buckets `from..=to` of a slice of table `table` on `node` move
/// to `receiver`.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub table: usize,
    pub node: NodeId,
    pub slice: (Bucket, Bucket),
    pub moving: (Bucket, Bucket),
    pub receiver: NodeId,
    /// The share of the slice's load that moves (0..1).
    pub ratio: f64,
    pub node_load: f64,
    pub mean_load: f64,
}

/// What [`pick`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No node is hot enough.
    Balanced,
    /// The hot node's heat is in single buckets: nothing to split.
    OneHotKey {
        node: NodeId,
        table: usize,
        bucket: Bucket,
        pct: f64,
    },
    Split(Split),
}

/// Picks the split that relieves the hottest node, if one should happen.
/// `node_loads` has every node (idle ones at 0); `slices` every slice.
///
/// ```
/// use std::collections::BTreeMap;
/// use slicedb_rebalance::split::{pick, SliceLoad, SplitRules, Verdict};
/// // Node 1 serves 400 rows/s over buckets 0..=3, node 2 nothing.
/// let loads = BTreeMap::from([(1, 400.0), (2, 0.0)]);
/// let slices = [SliceLoad { table: 0, node: 1, first: 0, last: 3, loads: vec![100.0; 4] }];
/// let Verdict::Split(s) = pick(&loads, &slices, &SplitRules::default()) else { panic!() };
/// // Half the load moves: buckets 2 and 3 go to node 2.
/// assert_eq!((s.moving, s.receiver, s.ratio), ((2, 3), 2, 0.5));
/// ```
pub fn pick(node_loads: &BTreeMap<NodeId, f64>, slices: &[SliceLoad], rules: &SplitRules) -> Verdict {
    if node_loads.len() < 2 {
        return Verdict::Balanced;
    }
    let mean = node_loads.values().sum::<f64>() / node_loads.len() as f64;
    let by_load = |a: &(&NodeId, &f64), b: &(&NodeId, &f64)| a.1.total_cmp(b.1).then(b.0.cmp(a.0));
    let (Some((&hot, &hot_load)), Some((&cold, &cold_load))) = (
        node_loads.iter().max_by(by_load),
        node_loads.iter().min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(b.0))),
    ) else {
        return Verdict::Balanced;
    };
    if hot == cold || hot_load < rules.min_node_load || hot_load <= mean * (1.0 + rules.above_mean_pct / 100.0) {
        return Verdict::Balanced;
    }
    let amount = (hot_load - mean).min((hot_load - cold_load) / 2.0);
    let mut candidates: Vec<&SliceLoad> = slices.iter().filter(|s| s.node == hot && s.load() > 0.0).collect();
    candidates.sort_by(|a, b| b.load().total_cmp(&a.load()));
    let mut one_hot = None;
    for s in candidates {
        let (bucket, pct) = s.hottest();
        if pct >= rules.one_hot_pct || s.loads.len() < 2 {
            one_hot.get_or_insert(Verdict::OneHotKey {
                node: hot,
                table: s.table,
                bucket,
                pct,
            });
            continue;
        }
        let total = s.load();
        let want = amount.min(total);
        let (moving, moved) = split_point(s, want);
        return Verdict::Split(Split {
            table: s.table,
            node: hot,
            slice: (s.first, s.last),
            moving,
            receiver: cold,
            ratio: moved / total,
            node_load: hot_load,
            mean_load: mean,
        });
    }
    one_hot.unwrap_or(Verdict::Balanced)
}

/// The buckets to move, from one end of the slice, whose load first
/// reaches `want`, keeping at least one bucket; the end that moves fewer
/// buckets. Returns the run and its load.
fn split_point(s: &SliceLoad, want: f64) -> ((Bucket, Bucket), f64) {
    let n = s.loads.len();
    let take = |loads: &mut dyn Iterator<Item = &f64>| {
        let mut sum = 0.0;
        let mut count = 0;
        for l in loads {
            if count + 1 >= n || sum >= want {
                break;
            }
            sum += l;
            count += 1;
        }
        (count, sum)
    };
    let (tail, tail_load) = take(&mut s.loads.iter().rev());
    let (head, head_load) = take(&mut s.loads.iter());
    if tail <= head {
        ((s.last - (tail as Bucket - 1), s.last), tail_load)
    } else {
        ((s.first, s.first + (head as Bucket - 1)), head_load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(node: NodeId, first: Bucket, loads: Vec<f64>) -> SliceLoad {
        SliceLoad {
            table: 0,
            node,
            first,
            last: first + loads.len() as Bucket - 1,
            loads,
        }
    }

    #[test]
    fn a_balanced_or_idle_cluster_is_left_alone() {
        let rules = SplitRules::default();
        let even = BTreeMap::from([(1, 100.0), (2, 90.0), (3, 110.0)]);
        let slices = [slice(3, 0, vec![55.0, 55.0])];
        assert_eq!(pick(&even, &slices, &rules), Verdict::Balanced);
        // Skewed but idle.
        let idle = BTreeMap::from([(1, 30.0), (2, 0.0)]);
        assert_eq!(pick(&idle, &[slice(1, 0, vec![15.0, 15.0])], &rules), Verdict::Balanced);
    }

    #[test]
    fn the_hot_tail_of_a_slice_moves_to_the_coldest_node() {
        // Node 1 carries 900 of 1,200 (mean 400): 500 should leave, but
        // only half the gap to node 3 (idle): 450. The heat is at the
        // slice's end, so the tail moves.
        let loads = BTreeMap::from([(1, 900.0), (2, 300.0), (3, 0.0)]);
        let mut l = vec![10.0; 10];
        l.extend([200.0, 250.0, 250.0]);
        let slices = [slice(1, 100, l), slice(2, 0, vec![150.0, 150.0])];
        let Verdict::Split(s) = pick(&loads, &slices, &SplitRules::default()) else {
            panic!()
        };
        assert_eq!((s.node, s.receiver), (1, 3));
        assert_eq!(s.slice, (100, 112));
        // 250 + 250 = 500 ≥ 450: two buckets.
        assert_eq!(s.moving, (111, 112));
        assert!((s.ratio - 500.0 / 800.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn the_head_moves_when_the_heat_is_at_the_front() {
        let loads = BTreeMap::from([(1, 400.0), (2, 0.0)]);
        let slices = [slice(1, 0, vec![150.0, 150.0, 50.0, 20.0, 20.0, 10.0])];
        let Verdict::Split(s) = pick(&loads, &slices, &SplitRules::default()) else {
            panic!()
        };
        // Half of 400 is 200: two buckets from the front, against five
        // from the back.
        assert_eq!(s.moving, (0, 1));
        assert_eq!(s.receiver, 2);
    }

    #[test]
    fn one_hot_key_is_not_split_and_the_next_slice_is() {
        let loads = BTreeMap::from([(1, 1000.0), (2, 0.0)]);
        let hot_key = slice(1, 0, vec![5.0, 900.0, 5.0]);
        let verdict = pick(&loads, std::slice::from_ref(&hot_key), &SplitRules::default());
        assert!(
            matches!(verdict, Verdict::OneHotKey { node: 1, bucket: 1, pct, .. } if pct > 98.0),
            "{verdict:?}"
        );
        // Another slice of the node is split instead.
        let other = SliceLoad {
            table: 1,
            ..slice(1, 500, vec![30.0, 30.0, 30.0])
        };
        let Verdict::Split(s) = pick(&loads, &[hot_key, other], &SplitRules::default()) else {
            panic!()
        };
        assert_eq!((s.table, s.slice), (1, (500, 502)));
        // Never the whole slice.
        assert_eq!(s.moving, (501, 502));
    }
}
