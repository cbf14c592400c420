//! Write holds: how a cut-over stops writes to a few buckets only (SPEC §4,
//! step 5; seed 000's bucket-granular blocking, GemFire's brief hold).
//!
//! Every write to a table passes a gate. A table that is not moving has one
//! gate for all its buckets; a table being redistributed has one gate per
//! *bucket batch* of the job (and one for the buckets that do not move). A
//! writer takes a shared permit on the gates of the buckets it writes,
//! **then** reads the table's placement from the catalog, sends its rows,
//! and drops the permit ([`WriteHolds::enter`]). The redistribution
//! orchestrator takes one batch's gate exclusively ([`TableGates::hold`])
//! while it drains that batch's write queue and records the batch as moved:
//! writers to those buckets wait (and then route to the new owner), and
//! writers to any other bucket go on.
//!
//! A table's index entries are hash-distributed over the table's buckets
//! and move with them, so they pass the same gates: a writer that learns
//! which entry buckets it writes only after sending its rows (an UPDATE
//! finds the old values) widens its permit to them
//! ([`WritePermit::extend`]) before reading the placement again.
//!
//! Gates are `tokio::sync::RwLock`s, which queue fairly: once a hold is
//! requested, later writers wait behind it, so a hold is never starved.
//! When a job installs new gates, the old ones are retired: every writer
//! that entered them is waited for, and a writer that fetched them too late
//! sees them retired and starts over on the new ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use slicedb_common::TableId;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock as Gate};

/// The gates of one table.
pub struct TableGates {
    /// Bucket → gate index; `None` when one gate covers every bucket.
    gate_of: Option<Vec<u16>>,
    gates: Vec<Arc<Gate<()>>>,
    retired: AtomicBool,
}

impl TableGates {
    fn single() -> TableGates {
        TableGates {
            gate_of: None,
            gates: vec![Arc::new(Gate::new(()))],
            retired: AtomicBool::new(false),
        }
    }

    /// Gates for `batches` (each a list of inclusive bucket runs); buckets
    /// in no batch share one more gate.
    fn batched(batches: &[Vec<(u16, u16)>]) -> TableGates {
        let rest = batches.len() as u16;
        let mut gate_of = vec![rest; 1 << 16];
        for (i, runs) in batches.iter().enumerate() {
            for (s, e) in runs {
                gate_of[*s as usize..=*e as usize].fill(i as u16);
            }
        }
        TableGates {
            gate_of: Some(gate_of),
            gates: (0..=batches.len()).map(|_| Arc::new(Gate::new(()))).collect(),
            retired: AtomicBool::new(false),
        }
    }

    fn gate_of(&self, bucket: u16) -> usize {
        self.gate_of.as_ref().map_or(0, |g| g[bucket as usize] as usize)
    }

    /// Holds writes to bucket batch `batch` until the guard is dropped,
    /// after waiting for the writes to it already under way.
    pub async fn hold(&self, batch: usize) -> Option<OwnedRwLockWriteGuard<()>> {
        match self.gates.get(batch) {
            Some(g) => Some(g.clone().write_owned().await),
            None => None,
        }
    }
}

/// A writer's pass through the gates of the buckets it writes.
pub struct WritePermit {
    gates: Arc<TableGates>,
    /// The gates passed, ascending, and their guards.
    held: Vec<usize>,
    guards: Vec<OwnedRwLockReadGuard<()>>,
}

impl WritePermit {
    /// Widens the permit to `buckets` too, passing the gates it does not
    /// hold yet (of the same generation of gates: a job that installs new
    /// ones waits for this permit). Read the placement again afterwards.
    ///
    /// A gate already held is not entered again: a second shared entry
    /// queued behind a waiting hold would wait for itself. Any other gate
    /// is safe to wait for while holding some: a hold is taken on one gate
    /// at a time, and while its holder has it, it waits only for commits
    /// that passed their gates already.
    pub async fn extend(&mut self, buckets: impl Iterator<Item = u16>) {
        let mut needed: Vec<usize> = buckets
            .map(|b| self.gates.gate_of(b))
            .filter(|g| self.held.binary_search(g).is_err())
            .collect();
        needed.sort_unstable();
        needed.dedup();
        for i in needed {
            self.guards.push(self.gates.gates[i].clone().read_owned().await);
            let at = self.held.partition_point(|h| *h < i);
            self.held.insert(at, i);
        }
    }
}

/// The gates of every table, by table id.
#[derive(Default)]
pub struct WriteHolds {
    tables: RwLock<HashMap<TableId, Arc<TableGates>>>,
}

impl WriteHolds {
    pub fn new() -> Self {
        Self::default()
    }

    fn gates(&self, table: TableId) -> Arc<TableGates> {
        if let Some(g) = self.tables.read().ok().and_then(|t| t.get(&table).cloned()) {
            return g;
        }
        match self.tables.write() {
            Ok(mut t) => t.entry(table).or_insert_with(|| Arc::new(TableGates::single())).clone(),
            Err(_) => Arc::new(TableGates::single()),
        }
    }

    /// Waits until writes to `buckets` of `table` may go, and returns the
    /// permit to hold while sending them. Read the table's placement only
    /// after this returns.
    pub async fn enter(&self, table: TableId, buckets: impl Iterator<Item = u16> + Clone) -> WritePermit {
        loop {
            let gates = self.gates(table);
            let mut needed: Vec<usize> = buckets.clone().map(|b| gates.gate_of(b)).collect();
            needed.sort_unstable();
            needed.dedup();
            // Ascending order: the orchestrator holds one gate at a time, so
            // no writer can wait in a cycle.
            let mut guards = Vec::with_capacity(needed.len());
            for i in &needed {
                guards.push(gates.gates[*i].clone().read_owned().await);
            }
            if !gates.retired.load(Ordering::Acquire) {
                return WritePermit {
                    gates,
                    held: needed,
                    guards,
                };
            }
        }
    }

    /// Installs gates for a redistribution's bucket batches (or, with no
    /// batches, a single gate again) and waits for every writer that
    /// entered the table's previous gates. Returns the new gates.
    pub async fn install(&self, table: TableId, batches: &[Vec<(u16, u16)>]) -> Arc<TableGates> {
        let new = Arc::new(if batches.is_empty() {
            TableGates::single()
        } else {
            TableGates::batched(batches)
        });
        let old = match self.tables.write() {
            Ok(mut t) => t.insert(table, new.clone()),
            Err(_) => None,
        };
        if let Some(old) = old {
            old.retired.store(true, Ordering::Release);
            for g in &old.gates {
                drop(g.clone().write_owned().await);
            }
        }
        new
    }

    /// The gates a table has now.
    pub fn current(&self, table: TableId) -> Arc<TableGates> {
        self.gates(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// On these one-thread runtimes, lets every spawned task run until it
    /// waits: a task still unfinished afterwards is blocked, not just slow.
    async fn run_until_blocked() {
        for _ in 0..64 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_hold_blocks_its_batch_only() {
        let holds = Arc::new(WriteHolds::new());
        let gates = holds.install(1, &[vec![(0, 9)], vec![(10, 19)]]).await;
        let hold = gates.hold(0).await.unwrap();
        // Writers to other batches, and to buckets that do not move, go on.
        tokio::time::timeout(Duration::from_secs(5), holds.enter(1, [15u16].into_iter()))
            .await
            .expect("batch 1 is not held");
        tokio::time::timeout(Duration::from_secs(5), holds.enter(1, [500u16].into_iter()))
            .await
            .expect("non-moving buckets are not held");
        // A writer to the held batch waits until the hold ends.
        let h = holds.clone();
        let waiting = tokio::spawn(async move { h.enter(1, [3u16, 15].into_iter()).await });
        run_until_blocked().await;
        assert!(!waiting.is_finished());
        drop(hold);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released")
            .unwrap();
    }

    #[tokio::test]
    async fn a_permit_widens_to_other_batches_without_entering_its_own_twice() {
        let holds = Arc::new(WriteHolds::new());
        let gates = holds.install(1, &[vec![(0, 9)], vec![(10, 19)]]).await;
        let mut permit = holds.enter(1, [3u16].into_iter()).await;
        // A hold of batch 0 queues behind the permit (on this one-thread
        // runtime, yielding lets it run until it waits).
        let g = gates.clone();
        let hold = tokio::spawn(async move {
            let _h = g.hold(0).await;
        });
        tokio::task::yield_now().await;
        assert!(!hold.is_finished());
        // Widening to a bucket of the batch it holds, and to batch 1, does
        // not wait behind that hold (it would wait for itself).
        tokio::time::timeout(Duration::from_secs(5), permit.extend([4u16, 12].into_iter()))
            .await
            .expect("no second entry into the held batch");
        assert_eq!(permit.held, vec![0, 1]);
        // The widened permit keeps batch 1 from being held.
        assert!(gates.gates[1].clone().try_write_owned().is_err());
        drop(permit);
        tokio::time::timeout(Duration::from_secs(5), hold)
            .await
            .expect("held after the permit went")
            .unwrap();
        assert!(gates.gates[1].clone().try_write_owned().is_ok());
    }

    #[tokio::test]
    async fn installing_new_gates_waits_for_writers_of_the_old_ones() {
        let holds = Arc::new(WriteHolds::new());
        let permit = holds.enter(1, [1u16].into_iter()).await;
        let h = holds.clone();
        let install = tokio::spawn(async move { h.install(1, &[vec![(0, 9)]]).await });
        run_until_blocked().await;
        assert!(!install.is_finished(), "an old writer is still sending");
        drop(permit);
        tokio::time::timeout(Duration::from_secs(5), install)
            .await
            .expect("installed")
            .unwrap();
    }
}
