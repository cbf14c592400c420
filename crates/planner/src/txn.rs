//! What a statement's operators know of its transaction.
//!
//! The coordinator runs every statement inside a transaction (an explicit
//! `BEGIN … COMMIT` block, or an implicit one around a single statement)
//! and puts a [`StatementTxn`] in the statement's DataFusion session config.
//! Scans read at its snapshot, with the transaction's own earlier writes
//! ([`slicedb_codec::ReadAt`]); write operators send their rows as pending
//! writes of the transaction ([`slicedb_codec::TxnWrite`]) and record in
//! [`TxnWrites`] which slice server received which bucket, so that the
//! coordinator knows whom to prepare and commit, and can check at commit
//! that no bucket changed owner in between.
//!
//! [`Cutovers`] records when a redistribution last handed buckets of each
//! table to a new owner. A new owner holds no history older than its
//! cut-over, so a snapshot older than a table's last cut-over cannot read
//! or write that table any more: the statement fails with 40001 and the
//! client retries with a new snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use slicedb_codec::{ReadAt, Timestamp, TxnWrite};
use slicedb_common::{err, Datum, Error, NodeId, Result, TableId};

/// Which slice server received each written bucket, per table.
#[derive(Debug, Default, Clone)]
pub struct TxnWrites {
    pub placed: BTreeMap<TableId, BTreeMap<u16, NodeId>>,
    /// Rows the slice servers reported written.
    pub rows: u64,
    /// Slice servers that acknowledged a write of the transaction: they
    /// hold pending writes of it unless a restart lost them.
    pub acknowledged: BTreeSet<NodeId>,
    /// Foreign-key work the writers left for the coordinator
    /// ([`crate::foreign_key`]): referenced keys that went away, and the
    /// referencing values of deferred constraints, checked at commit.
    pub fk: Vec<FkEvent>,
    /// `SET CONSTRAINTS` of the transaction.
    pub fk_modes: FkModes,
}

/// Which deferrable constraints a transaction has made deferred or
/// immediate (`SET CONSTRAINTS`), over their `INITIALLY` mode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FkModes {
    /// `SET CONSTRAINTS ALL …`: deferred or not.
    pub all: Option<bool>,
    /// `SET CONSTRAINTS name …` since.
    pub named: BTreeMap<String, bool>,
}

impl FkModes {
    /// Is `fk` checked at commit rather than at the end of each statement?
    pub fn deferred(&self, fk: &slicedb_common::ForeignKeyDef) -> bool {
        if !fk.deferrable {
            return false;
        }
        self.named.get(&fk.name).copied().or(self.all).unwrap_or(fk.deferred)
    }
}

/// Foreign-key work a write leaves for the end of its statement (or, for a
/// deferred constraint, for commit).
#[derive(Debug, Clone, PartialEq)]
pub enum FkEvent {
    /// A row of a referenced table that held `old` in the referenced
    /// columns of constraint `fk` (on table `child`) was deleted
    /// (`new: None`) or now holds `new` there.
    Removed {
        seq: u32,
        child: TableId,
        fk: String,
        old: Vec<Datum>,
        new: Option<Vec<Datum>>,
    },
    /// A row of `child` now references `values` through the deferred
    /// constraint `fk`: the referenced row must exist at commit.
    Referenced {
        seq: u32,
        child: TableId,
        fk: String,
        values: Vec<Datum>,
    },
}

impl FkEvent {
    /// The statement that left it.
    pub fn seq(&self) -> u32 {
        match self {
            FkEvent::Removed { seq, .. } | FkEvent::Referenced { seq, .. } => *seq,
        }
    }
}

impl TxnWrites {
    /// The slice servers holding writes of the transaction.
    pub fn nodes(&self) -> BTreeSet<NodeId> {
        self.placed.values().flat_map(|b| b.values().copied()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.placed.is_empty()
    }
}

/// A statement's transaction context.
#[derive(Debug, Clone)]
pub struct StatementTxn {
    /// What the statement reads.
    pub read: ReadAt,
    /// How it writes; `None` for a statement that may not write.
    pub write: Option<TxnWrite>,
    /// Shared with the coordinator's transaction.
    pub writes: Arc<Mutex<TxnWrites>>,
}

impl StatementTxn {
    /// A read-only statement at snapshot `ts`.
    pub fn read_only(ts: Timestamp) -> StatementTxn {
        StatementTxn {
            read: ReadAt::at(ts),
            write: None,
            writes: Arc::default(),
        }
    }

    /// The write context, or an error for a read-only statement.
    pub fn writer(&self) -> Result<TxnWrite> {
        self.write
            .ok_or_else(|| Error::internal("a read-only statement tried to write"))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, TxnWrites>> {
        self.writes
            .lock()
            .map_err(|_| Error::internal("transaction writes lock poisoned"))
    }

    /// Records that `node` received writes of `buckets` of `table`.
    pub fn record(&self, table: TableId, node: NodeId, buckets: impl Iterator<Item = u16>) -> Result<()> {
        let mut w = self.lock()?;
        let placed = w.placed.entry(table).or_default();
        for b in buckets {
            placed.insert(b, node);
        }
        Ok(())
    }

    /// Has `node` acknowledged writes of the transaction?
    pub fn wrote_to(&self, node: NodeId) -> Result<bool> {
        Ok(self.lock()?.acknowledged.contains(&node))
    }

    /// Records that `node` acknowledged a write.
    pub fn acknowledge(&self, node: NodeId) -> Result<()> {
        self.lock()?.acknowledged.insert(node);
        Ok(())
    }

    /// Records `rows` rows written.
    pub fn add_rows(&self, rows: u64) -> Result<()> {
        self.lock()?.rows += rows;
        Ok(())
    }

    /// Leaves foreign-key work for the coordinator.
    pub fn add_fk_events(&self, events: impl IntoIterator<Item = FkEvent>) -> Result<()> {
        self.lock()?.fk.extend(events);
        Ok(())
    }

    /// The transaction's `SET CONSTRAINTS` modes.
    pub fn fk_modes(&self) -> Result<FkModes> {
        Ok(self.lock()?.fk_modes.clone())
    }

    /// Takes the foreign-key work that `keep` does not keep.
    pub fn take_fk_events(&self, keep: impl Fn(&FkEvent) -> bool) -> Result<Vec<FkEvent>> {
        let mut w = self.lock()?;
        let (kept, taken): (Vec<FkEvent>, Vec<FkEvent>) = std::mem::take(&mut w.fk).into_iter().partition(keep);
        w.fk = kept;
        Ok(taken)
    }
}

/// When each bucket of each table was last cut over to a new owner.
#[derive(Debug, Default)]
pub struct Cutovers {
    tables: Mutex<HashMap<TableId, TableCutovers>>,
}

#[derive(Debug)]
struct TableCutovers {
    /// The latest cut-over of any bucket.
    latest: Timestamp,
    /// Per bucket.
    at: Vec<Timestamp>,
}

impl Cutovers {
    /// Records a cut-over of the bucket `runs` (inclusive) of `table` at
    /// `ts`. Call it before the catalog publishes the new placement.
    pub fn record(&self, table: TableId, runs: &[(u16, u16)], ts: Timestamp) {
        if let Ok(mut tables) = self.tables.lock() {
            let t = tables.entry(table).or_insert_with(|| TableCutovers {
                latest: 0,
                at: vec![0; 1 << 16],
            });
            t.latest = t.latest.max(ts);
            for (start, end) in runs {
                for b in *start..=*end {
                    t.at[b as usize] = t.at[b as usize].max(ts);
                }
            }
        }
    }

    /// Fails with 40001 when snapshot `ts` predates the last cut-over of
    /// one of `buckets` of `table`.
    pub fn check(
        &self,
        table: TableId,
        name: &str,
        ts: Timestamp,
        mut buckets: impl Iterator<Item = u16>,
    ) -> Result<()> {
        let moved = match self.tables.lock() {
            Ok(tables) => match tables.get(&table) {
                Some(t) if t.latest > ts => buckets.any(|b| t.at[b as usize] > ts),
                _ => false,
            },
            Err(_) => return Err(Error::internal("cut-over registry lock poisoned")),
        };
        if moved {
            return Err(err!(
                SerializationFailure,
                "could not serialize access: a redistribution moved buckets of \"{name}\" after the transaction's snapshot"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_older_than_a_cut_over_of_its_buckets_is_refused() {
        let c = Cutovers::default();
        c.check(1, "t", 5, 0..=u16::MAX).unwrap();
        c.record(1, &[(10, 20)], 10);
        assert_eq!(c.check(1, "t", 9, [15].into_iter()).unwrap_err().state.code(), "40001");
        c.check(1, "t", 9, [21, 9].into_iter()).unwrap();
        c.check(1, "t", 10, 0..=u16::MAX).unwrap();
        c.check(2, "u", 1, 0..=u16::MAX).unwrap();
    }
}
