//! The rebalance that starts by itself: GemFire's storage threshold
//! (seed 000). A node that holds more than its high watermark of its
//! capacity makes the coordinator run `REBALANCE ALL`, and the log says
//! which node, how full, and against what.
//!
//! A background task checks every [`Watermark::every`]: it asks the slice
//! servers for each node's bytes (RocksDB's estimates, as `REBALANCE`
//! reads them, [`crate::slice_load`]) and compares them with the
//! capacities set by `ALTER NODE n SET (capacity_gb = …)`. Nothing happens
//! while no node has a capacity, while a redistribution runs, or when the
//! rebalance finds nothing to move (every node within the threshold of its
//! share: the cluster is full, not unbalanced; the log says so once per
//! episode rather than at every check).
//!
//! Each job the coordinator starts by itself, here or in
//! [`crate::auto_split`], keeps why in its catalog record; the view
//! `slicedb.rebalance_events` lists them ([`events_rows`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use slicedb_catalog::CatalogState;
use slicedb_common::{NodeId, Result, SqlState};

use crate::elastic::node_weights;
use crate::Coordinator;

/// When the coordinator rebalances by itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Watermark {
    /// The share of its capacity (percent) above which a node triggers a
    /// rebalance; 0 turns the check off.
    pub high_pct: f64,
    /// How often to check.
    pub every: Duration,
}

impl Default for Watermark {
    fn default() -> Self {
        Watermark {
            high_pct: 85.0,
            every: Duration::from_secs(30),
        }
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// No node is above its watermark (or none has a capacity, or a move
    /// is under way).
    Fine,
    /// A node is above its watermark but the plan moves nothing.
    NothingToMove(String),
    /// A rebalance started, for this reason.
    Started(String),
}

/// Starts the background check; it ends when the coordinator is dropped.
pub fn spawn(coordinator: &Arc<Coordinator>, watermark: Watermark) {
    if watermark.high_pct <= 0.0 {
        return;
    }
    let weak = Arc::downgrade(coordinator);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(watermark.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut reported: Option<String> = None;
        loop {
            tick.tick().await;
            let Some(coordinator) = weak.upgrade() else { return };
            match coordinator.check_watermark(watermark.high_pct).await {
                Ok(Check::Started(why)) => {
                    tracing::info!(why = %why, "started a rebalance by itself: {why}");
                    reported = None;
                }
                Ok(Check::NothingToMove(why)) => {
                    if reported.as_deref() != Some(why.as_str()) {
                        tracing::warn!(why = %why, "{why}, but every node is within the threshold of its share: nothing to move; add a node or raise capacities");
                        reported = Some(why);
                    }
                }
                Ok(Check::Fine) => reported = None,
                Err(e) => tracing::warn!(error = %e, "the high-watermark check failed: {e}"),
            }
        }
    });
}

impl Coordinator {
    /// One high-watermark check: rebalances every table if a node holds
    /// more than `high_pct` percent of its capacity.
    pub async fn check_watermark(&self, high_pct: f64) -> Result<Check> {
        let s = self.catalog.snapshot();
        if s.jobs.values().any(|j| j.state.is_active()) || s.nodes.values().all(|n| n.capacity_mb.is_none()) {
            return Ok(Check::Fine);
        }
        let mut held: BTreeMap<NodeId, u64> = BTreeMap::new();
        for g in crate::slice_load::gather(&s, &self.cluster).await? {
            *held.entry(g.node).or_default() += g.buckets.iter().map(|b| b.bytes).sum::<u64>();
        }
        // The fullest node against its capacity (a node without one weighs
        // the average of those that have one, as in REBALANCE).
        let capacity = node_weights(&s);
        let fullest = held
            .iter()
            .filter_map(|(n, bytes)| {
                let cap_bytes = capacity.get(n)? * 1024.0 * 1024.0;
                Some((*n, *bytes, cap_bytes, *bytes as f64 * 100.0 / cap_bytes))
            })
            .max_by(|a, b| a.3.total_cmp(&b.3));
        let Some((node, bytes, cap_bytes, pct)) = fullest.filter(|f| f.3 > high_pct) else {
            return Ok(Check::Fine);
        };
        let why = format!(
            "node {node} holds {:.1} MiB, {pct:.0}% of its capacity of {:.1} MiB, above the high watermark of {high_pct}%",
            bytes as f64 / 1048576.0,
            cap_bytes / 1048576.0
        );
        match self.rebalance_because(None, None, None, false, Some(why.clone())).await {
            Ok(_) => {}
            // A move started meanwhile: the next check looks again.
            Err(e) if e.state == SqlState::ObjectInUse => return Ok(Check::Fine),
            Err(e) => return Err(e),
        }
        let started = self.catalog.snapshot().jobs.values().any(|j| j.state.is_active());
        Ok(if started {
            Check::Started(why)
        } else {
            Check::NothingToMove(why)
        })
    }
}

/// The columns of `slicedb.rebalance_events`.
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("job", DataType::Int64, false),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("table", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("from_map", DataType::Utf8, false),
        Field::new("to_map", DataType::Utf8, false),
        Field::new("buckets", DataType::Int64, false),
        Field::new("state", DataType::Utf8, false),
    ]))
}

/// The jobs the coordinator started by itself, oldest first: when, why,
/// which map to which, how many buckets, and how the job stands.
pub fn events_rows(s: &CatalogState) -> Result<RecordBatch> {
    let jobs: Vec<_> = s.jobs.values().filter(|j| j.reason.is_some()).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(jobs.iter().map(|j| j.id as i64))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(jobs.iter().map(|j| j.started_at * 1000)).with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(jobs.iter().map(|j| j.table.as_str()))),
        Arc::new(StringArray::from_iter_values(
            jobs.iter().map(|j| j.reason.as_deref().unwrap_or_default()),
        )),
        Arc::new(StringArray::from_iter_values(jobs.iter().map(|j| j.from_map.as_str()))),
        Arc::new(StringArray::from_iter_values(jobs.iter().map(|j| j.to_map.as_str()))),
        Arc::new(Int64Array::from_iter_values(
            jobs.iter().map(|j| j.buckets_total() as i64),
        )),
        Arc::new(StringArray::from_iter_values(jobs.iter().map(|j| j.state.name()))),
    ];
    Ok(RecordBatch::try_new(events_schema(), columns)?)
}
