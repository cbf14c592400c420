//! Redistribution jobs as the catalog records them (SPEC §4, step 1).
//!
//! A job moves one table from its hash map (`from_map`) to another
//! (`to_map`), and with it the same buckets of the table's index entry
//! tables (`index_tables`: entries are hash-distributed over the table's
//! buckets, so a bucket's rows and entries always have one owner). Its moving buckets are grouped by (source, target) node
//! pair; each [`MovePair`] records how far its snapshot copy got, so that a
//! restarted coordinator resumes the copy where it stopped. `moved` lists the
//! buckets already cut over: while a job is active the table's placement is
//! `from_map` overlaid with `to_map`'s owners for those buckets
//! ([`crate::CatalogState::table_map`]).

use serde::{Deserialize, Serialize};
use slicedb_common::{NodeId, TableId};

/// Where a job is. A job only moves forward; `done`, `cancelled` and
/// `failed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Persisted; sources are told to start capturing.
    Planning,
    /// Sources copy the moving buckets to the targets.
    Copying,
    /// Write-queue entries are shipped until the backlog is small.
    CatchingUp,
    /// Bucket batches are handed over one at a time.
    CuttingOver,
    /// The table is on its new map; sources drop the moved buckets.
    Cleaning,
    Done,
    Cancelled,
    Failed,
}

impl JobState {
    /// The state's name in `SHOW REDISTRIBUTIONS`.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Planning => "planning",
            JobState::Copying => "copying",
            JobState::CatchingUp => "catching up",
            JobState::CuttingOver => "cutting over",
            JobState::Cleaning => "cleaning",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        }
    }

    /// Not final: the job still has work (and a runner).
    pub fn is_active(&self) -> bool {
        !matches!(self, JobState::Done | JobState::Cancelled | JobState::Failed)
    }

    /// Has the hand-over begun? From then on the job can only go forward.
    pub fn past_cutover(&self) -> bool {
        matches!(self, JobState::CuttingOver | JobState::Cleaning | JobState::Done)
    }
}

/// The buckets moving from one source node to one target node, and the
/// progress of their copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovePair {
    pub source: NodeId,
    pub target: NodeId,
    /// Inclusive bucket runs, ascending.
    pub buckets: Vec<(u16, u16)>,
    /// The snapshot copy is complete.
    pub copied: bool,
    /// Which of the job's tables ([`RedistributionJob::tables`]) the copy
    /// is at: the table's rows first, then each index's entries.
    #[serde(default)]
    pub table_at: usize,
    /// The last row key of that table the target stored durably; the copy
    /// resumes after it.
    pub cursor: Option<Vec<u8>>,
    pub rows_copied: u64,
    pub bytes_copied: u64,
}

impl MovePair {
    pub fn bucket_count(&self) -> u64 {
        self.buckets.iter().map(|(s, e)| (*e - *s) as u64 + 1).sum()
    }
}

/// One `REDISTRIBUTE` of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedistributionJob {
    pub id: u64,
    pub table: String,
    pub table_id: TableId,
    /// The storage ids of the table's index entry tables when the job was
    /// planned (no index is created or dropped while the job runs).
    #[serde(default)]
    pub index_tables: Vec<TableId>,
    pub from_map: String,
    pub to_map: String,
    /// Copy throttle in MB/s (`WITH (max_rate_mb = …)`); `None` is unthrottled.
    pub max_rate_mb: Option<f64>,
    pub state: JobState,
    pub pairs: Vec<MovePair>,
    /// Buckets already cut over (inclusive runs, ascending).
    pub moved: Vec<(u16, u16)>,
    /// The catalog version at which the last bucket batch was cut over:
    /// queries planned before it may still read the sources.
    pub cutover_version: u64,
    /// Why the job failed, or the last error it is retrying after.
    pub error: Option<String>,
    /// `CANCEL REDISTRIBUTION` was asked for; the runner acts on it.
    pub cancel_requested: bool,
    /// Unix milliseconds.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// Why the coordinator started the job by itself (a high watermark, a
    /// split by load); `None` for a job a statement started.
    #[serde(default)]
    pub reason: Option<String>,
}

impl RedistributionJob {
    /// Every storage table the job moves: the table, then its index entry tables.
    pub fn tables(&self) -> Vec<TableId> {
        std::iter::once(self.table_id)
            .chain(self.index_tables.iter().copied())
            .collect()
    }

    /// The number of buckets the job moves.
    pub fn buckets_total(&self) -> u64 {
        self.pairs.iter().map(MovePair::bucket_count).sum()
    }

    /// The number of buckets already cut over.
    pub fn buckets_moved(&self) -> u64 {
        self.moved.iter().map(|(s, e)| (*e - *s) as u64 + 1).sum()
    }

    pub fn rows_copied(&self) -> u64 {
        self.pairs.iter().map(|p| p.rows_copied).sum()
    }

    pub fn bytes_copied(&self) -> u64 {
        self.pairs.iter().map(|p| p.bytes_copied).sum()
    }

    /// The name of the table's placement while the job has moved some buckets.
    pub fn placement_name(&self) -> String {
        format!("{}+{}#{}.{}", self.from_map, self.to_map, self.id, self.buckets_moved())
    }
}

/// Adds an inclusive bucket run to a sorted list of runs, merging neighbours.
pub fn add_run(runs: &mut Vec<(u16, u16)>, run: (u16, u16)) {
    runs.push(run);
    runs.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::with_capacity(runs.len());
    for (s, e) in runs.drain(..) {
        match merged.last_mut() {
            Some(last) if s as u32 <= last.1 as u32 + 1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    *runs = merged;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge() {
        let mut runs = vec![];
        add_run(&mut runs, (10, 20));
        add_run(&mut runs, (0, 4));
        add_run(&mut runs, (21, 30));
        add_run(&mut runs, (5, 8));
        assert_eq!(runs, vec![(0, 8), (10, 30)]);
        add_run(&mut runs, (9, 9));
        assert_eq!(runs, vec![(0, 30)]);
        add_run(&mut runs, (65535, 65535));
        assert_eq!(runs, vec![(0, 30), (65535, 65535)]);
    }
}
