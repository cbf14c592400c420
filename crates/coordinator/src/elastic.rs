//! Statements that change where a table's buckets live by policy rather
//! than by a map the user names: `DRAIN NODE` (scale-in) and `REBALANCE`
//! (bytes from the fullest nodes to those with room).
//!
//! The policy ([`slicedb_rebalance`]) derives a target map from each
//! table's own map; the mechanism is the redistribution job of
//! [`crate::redistribute`], one per table, with its write queues,
//! per-batch cut-over, resume and cancel. Tables that share a map share
//! the derived map, so a drain adds one map per map in use, and the maps it
//! leaves behind name the drained node: `REMOVE NODE` drops them.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use slicedb_catalog::{CatalogState, Change};
use slicedb_common::{err, NodeId, Result, TableDef, TableId};
use slicedb_hashmap::HashMap;
use slicedb_rebalance::TableLayout;

use crate::execute::batch_rows;
use crate::redistribute::NewJobs;
use crate::{Coordinator, Output};

/// The percentage of its share a node may be off by, unless a
/// `REBALANCE` names another.
pub const DEFAULT_THRESHOLD_PCT: f64 = 10.0;

/// Refuses (55006) while a redistribution runs: a table mid-move has two
/// maps, and a new move would race the running job's cut-over.
pub(crate) fn refuse_while_moving(s: &CatalogState, what: &str) -> Result<()> {
    match s.jobs.values().find(|j| j.state.is_active()) {
        Some(j) => Err(err!(
            ObjectInUse,
            "cannot {what} while redistribution {} of table \"{}\" runs; wait for it or CANCEL REDISTRIBUTION {}",
            j.id,
            j.table,
            j.id
        )),
        None => Ok(()),
    }
}

/// Each node's weight for `REBALANCE`: its capacity in MiB; a node with
/// none weighs the average of those that have one, and if none has one,
/// every node weighs the same.
pub fn node_weights(s: &CatalogState) -> BTreeMap<NodeId, f64> {
    let set: Vec<f64> = s
        .nodes
        .values()
        .filter_map(|n| n.capacity_mb)
        .map(|c| c as f64)
        .collect();
    let default = if set.is_empty() {
        1.0
    } else {
        set.iter().sum::<f64>() / set.len() as f64
    };
    s.nodes
        .values()
        .map(|n| (n.id, n.capacity_mb.map_or(default, |c| c as f64)))
        .collect()
}

impl Coordinator {
    /// `DRAIN NODE n [WITH (max_rate_mb = N)]`: moves every bucket of every
    /// table off node `n`, to the other nodes, and makes a map without `n`
    /// current, so that no new table lands there. Only `n`'s buckets move.
    /// Returns the redistribution jobs, as `REDISTRIBUTE` does; once they
    /// are done, `REMOVE NODE n` succeeds.
    ///
    /// Refused (55006) while a redistribution runs.
    pub async fn drain_node(&self, node: NodeId, max_rate_mb: Option<f64>) -> Result<Output> {
        let _membership = self.membership.lock().await;
        let mut jobs = NewJobs::default();
        self.catalog.update(|s| {
            if !s.nodes.contains_key(&node) {
                return Err(err!(UndefinedObject, "node {node} does not exist"));
            }
            refuse_while_moving(s, &format!("drain node {node}"))?;
            let receivers: Vec<NodeId> = s.nodes.keys().copied().filter(|n| *n != node).collect();
            let mut fresh = s.unused_map_names();
            // Source map name → the map derived from it without `node`.
            let mut derived: BTreeMap<String, Arc<HashMap>> = BTreeMap::new();
            let mut derive = |base: &HashMap| -> Result<Arc<HashMap>> {
                if let Some(d) = derived.get(&base.name) {
                    return Ok(d.clone());
                }
                let d = Arc::new(slicedb_rebalance::drain(base, node, &receivers, &fresh())?);
                derived.insert(base.name.clone(), d.clone());
                Ok(d)
            };
            let mut moves: Vec<(Arc<TableDef>, Arc<HashMap>)> = Vec::new();
            for def in s.tables.values() {
                let map = s.hash_map(&def.hash_map)?;
                if map.bucket_counts().contains_key(&node) {
                    moves.push((def.clone(), derive(&map)?));
                }
            }
            let mut changes = Vec::new();
            if let Ok(current) = s.current_map() {
                if current.bucket_counts().contains_key(&node) || current.nodes.contains(&node) {
                    let d = derive(&current)?;
                    changes.push(Change::SetCurrentMap(d.name.clone()));
                }
            }
            // The maps first: the jobs and the current-map change name them.
            let mut all = derived
                .into_values()
                .map(|m| Change::PutHashMap((*m).clone()))
                .collect::<Vec<_>>();
            all.append(&mut changes);
            jobs.plan(s, moves, max_rate_mb, &mut all)?;
            Ok(all)
        })?;
        tracing::info!(
            node,
            jobs = jobs.created.len(),
            "draining node {node}: {} tables move off it",
            jobs.created.len()
        );
        self.start_jobs(jobs)
    }

    /// `REBALANCE [TABLE t | ALL] [WITH (max_rate_mb = N, threshold_pct =
    /// P)] [DRY RUN]`: plans, by each table's bytes per node, the moves
    /// that bring every node within P% (default 10) of its share of the
    /// bytes of the tables named ([`slicedb_rebalance::balance`]). `DRY RUN`
    /// returns the plan (table, from_node, to_node, buckets, bytes);
    /// otherwise each table with moves gets a map derived from its own and
    /// a redistribution job, returned as `REDISTRIBUTE` returns them. A
    /// node's share is in proportion to its capacity ([`node_weights`]).
    pub async fn rebalance(
        &self,
        table: Option<&str>,
        max_rate_mb: Option<f64>,
        threshold_pct: Option<f64>,
        dry_run: bool,
    ) -> Result<Output> {
        self.rebalance_because(table, max_rate_mb, threshold_pct, dry_run, None)
            .await
    }

    /// [`Coordinator::rebalance`], recording in its jobs why the
    /// coordinator started it by itself (`slicedb.rebalance_events`).
    pub(crate) async fn rebalance_because(
        &self,
        table: Option<&str>,
        max_rate_mb: Option<f64>,
        threshold_pct: Option<f64>,
        dry_run: bool,
        reason: Option<String>,
    ) -> Result<Output> {
        let threshold = threshold_pct.unwrap_or(DEFAULT_THRESHOLD_PCT);
        let _membership = self.membership.lock().await;
        let s = self.catalog.snapshot();
        if !dry_run {
            refuse_while_moving(&s, "rebalance")?;
        }
        let defs: Vec<Arc<TableDef>> = match table {
            Some(t) => vec![s.table(t)?],
            None => s.tables.values().cloned().collect(),
        };
        let maps: Vec<Arc<HashMap>> = defs.iter().map(|d| s.hash_map(&d.hash_map)).collect::<Result<_>>()?;
        // Bytes of each table and its index tables, per node: RocksDB's
        // estimates of each bucket, which read no rows (`slice_load`).
        let mut stored: BTreeMap<(TableId, NodeId), u64> = BTreeMap::new();
        for g in crate::slice_load::gather(&s, &self.cluster).await? {
            *stored.entry((g.table.id, g.node)).or_default() += g.buckets.iter().map(|b| b.bytes).sum::<u64>();
        }
        let layouts: Vec<TableLayout> = defs
            .iter()
            .zip(&maps)
            .map(|(def, map)| TableLayout {
                map,
                bytes: map
                    .bucket_counts()
                    .keys()
                    .map(|n| (*n, stored.get(&(def.id, *n)).copied().unwrap_or(0)))
                    .collect(),
            })
            .collect();
        let weights = node_weights(&s);
        let plan = slicedb_rebalance::balance(&layouts, &weights, threshold);
        tracing::info!(
            threshold_pct = threshold,
            "rebalance{}: bytes per node {:?}, shares {:?}; {} moves of {} bytes leave {:?}",
            if dry_run { " (dry run)" } else { "" },
            plan.before,
            plan.share
                .iter()
                .map(|(n, s)| (*n, *s as u64))
                .collect::<BTreeMap<_, _>>(),
            plan.moves.len(),
            plan.bytes_moved(),
            plan.after
        );
        if dry_run {
            let schema = Arc::new(Schema::new(vec![
                Field::new("table", DataType::Utf8, false),
                Field::new("from_node", DataType::Int64, false),
                Field::new("to_node", DataType::Int64, false),
                Field::new("buckets", DataType::Int64, false),
                Field::new("bytes", DataType::Int64, false),
            ]));
            let m = &plan.moves;
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    m.iter().map(|x| defs[x.table].name.clone()),
                )),
                Arc::new(Int64Array::from_iter_values(m.iter().map(|x| x.from as i64))),
                Arc::new(Int64Array::from_iter_values(m.iter().map(|x| x.to as i64))),
                Arc::new(Int64Array::from_iter_values(m.iter().map(|x| x.buckets.len() as i64))),
                Arc::new(Int64Array::from_iter_values(m.iter().map(|x| x.bytes as i64))),
            ];
            return batch_rows(RecordBatch::try_new(schema, columns)?);
        }
        let mut jobs = NewJobs::because(reason);
        self.catalog.update(|now| {
            refuse_while_moving(now, "rebalance")?;
            let mut fresh = now.unused_map_names();
            let mut changes = Vec::new();
            let mut moves = Vec::new();
            for (t, map) in plan.maps(&layouts, &mut fresh) {
                let def = now.table(&defs[t].name)?;
                if def.id != defs[t].id || def.hash_map != defs[t].hash_map {
                    return Err(err!(
                        ObjectInUse,
                        "table \"{}\" changed while the rebalance was planned; run REBALANCE again",
                        def.name
                    ));
                }
                changes.push(Change::PutHashMap(map.clone()));
                moves.push((def, Arc::new(map)));
            }
            jobs.plan(now, moves, max_rate_mb, &mut changes)?;
            Ok(changes)
        })?;
        self.start_jobs(jobs)
    }

    /// `ALTER NODE n SET (capacity_gb = N)`: the node's share in
    /// `REBALANCE`.
    pub fn alter_node(&self, node: NodeId, capacity_gb: Option<f64>) -> Result<Output> {
        self.catalog.update(|s| {
            let mut info = s
                .nodes
                .get(&node)
                .cloned()
                .ok_or_else(|| err!(UndefinedObject, "node {node} does not exist"))?;
            if let Some(gb) = capacity_gb {
                info.capacity_mb = Some((gb * 1024.0).round().max(1.0) as u64);
            }
            Ok(vec![Change::PutNode(info)])
        })?;
        Ok(Output::Command(crate::CommandTag::new("ALTER NODE")))
    }
}
