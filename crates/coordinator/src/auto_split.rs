//! Load-based split, run by the coordinator by itself (Azure's partition
//! manager, seeds 003/004).
//!
//! A background task gathers the load of every bucket from the slice
//! servers ([`crate::slice_load`]) every [`SplitSettings::every`], and asks
//! the policy ([`slicedb_rebalance::split::pick`]) whether the hottest node
//! is far enough above the mean, and which part of which slice should go
//! to the least-loaded node. Only when the same node stays hot for
//! [`SplitSettings::sustain`] does it act: it derives a map from the
//! table's own in which just those buckets change owner, and moves the
//! table there with an ordinary redistribution job (write queues,
//! per-batch cut-over, resume, cancel; `SHOW REDISTRIBUTIONS` shows it).
//! At most one split starts per [`SplitSettings::cooldown`], and none
//! while a redistribution runs, so the cluster does not thrash. A node
//! whose heat is one hot key is logged once, not split.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slicedb_catalog::Change;
use slicedb_common::{err, NodeId, Result, TableDef};
use slicedb_rebalance::split::{pick, SliceLoad, Split, SplitRules, Verdict};

use crate::elastic::refuse_while_moving;
use crate::redistribute::NewJobs;
use crate::slice_load::gather;
use crate::Coordinator;

/// When and how often the coordinator splits by load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitSettings {
    pub enabled: bool,
    /// How often the load is looked at.
    pub every: Duration,
    /// How long a node must stay hot before a split.
    pub sustain: Duration,
    /// The least time between two splits.
    pub cooldown: Duration,
    pub rules: SplitRules,
}

impl Default for SplitSettings {
    fn default() -> Self {
        SplitSettings {
            // Off until a cut-over fails no statement: today a transaction
            // open across the cut-over of its bucket fails with 40001.
            enabled: false,
            every: Duration::from_secs(2),
            sustain: Duration::from_secs(10),
            cooldown: Duration::from_secs(30),
            rules: SplitRules::default(),
        }
    }
}

/// Starts the background task; it ends when the coordinator is dropped.
pub fn spawn(coordinator: &Arc<Coordinator>, settings: SplitSettings) {
    if !settings.enabled {
        return;
    }
    let weak = Arc::downgrade(coordinator);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hot_since: Option<(NodeId, Instant)> = None;
        let mut last_split: Option<Instant> = None;
        let mut noted: Option<(NodeId, u16)> = None;
        loop {
            tick.tick().await;
            let Some(coordinator) = weak.upgrade() else { return };
            let verdict = match coordinator.split_verdict(&settings.rules).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "the load-based split check failed: {e}");
                    continue;
                }
            };
            let now = Instant::now();
            match verdict {
                Some((table, Verdict::Split(split))) => {
                    let since = match hot_since {
                        Some((node, since)) if node == split.node => since,
                        _ => {
                            hot_since = Some((split.node, now));
                            now
                        }
                    };
                    let cooled = last_split.is_none_or(|t| now - t >= settings.cooldown);
                    if now - since < settings.sustain || !cooled {
                        continue;
                    }
                    let why = format!(
                        "split by load: node {} carries {:.0} rows/s against a mean of {:.0} for {:.0} s; buckets {}..={} of its slice {}..={} of {} ({:.0}% of the slice's load) move to node {}",
                        split.node,
                        split.node_load,
                        split.mean_load,
                        (now - since).as_secs_f64(),
                        split.moving.0,
                        split.moving.1,
                        split.slice.0,
                        split.slice.1,
                        table.name,
                        split.ratio * 100.0,
                        split.receiver
                    );
                    match coordinator.split(&table, &split, why.clone()).await {
                        Ok(job) => {
                            tracing::info!(job, table = %table.name, "{why} (redistribution {job})");
                            last_split = Some(now);
                            hot_since = None;
                        }
                        Err(e) => tracing::warn!(error = %e, "a split by load could not start: {e}"),
                    }
                }
                Some((table, Verdict::OneHotKey { node, bucket, pct, .. })) => {
                    hot_since = None;
                    if noted != Some((node, bucket)) {
                        tracing::info!(
                            table = %table.name,
                            "node {node} is hot, but bucket {bucket} of {} carries {pct:.0}% of its slice's load: one hot key, which a split would not spread",
                            table.name
                        );
                        noted = Some((node, bucket));
                    }
                }
                _ => hot_since = None,
            }
        }
    });
}

impl Coordinator {
    /// What the split policy says of the load now, and about which table;
    /// `None` while a redistribution runs or nothing is hot.
    pub async fn split_verdict(&self, rules: &SplitRules) -> Result<Option<(Arc<TableDef>, Verdict)>> {
        let s = self.catalog.snapshot();
        if s.jobs.values().any(|j| j.state.is_active()) {
            return Ok(None);
        }
        let gathered = gather(&s, &self.cluster).await?;
        let mut node_loads: BTreeMap<NodeId, f64> = s.nodes.keys().map(|n| (*n, 0.0)).collect();
        let mut tables: Vec<Arc<TableDef>> = Vec::new();
        let mut slices = Vec::new();
        for g in &gathered {
            *node_loads.entry(g.node).or_default() += g.buckets.iter().map(|b| b.load()).sum::<f64>();
            let index = match tables.iter().position(|t| t.id == g.table.id) {
                Some(i) => i,
                None => {
                    tables.push(g.table.clone());
                    tables.len() - 1
                }
            };
            // Runs of consecutive buckets.
            let mut run: Option<SliceLoad> = None;
            for b in &g.buckets {
                match &mut run {
                    Some(r) if r.last + 1 == b.bucket => {
                        r.last = b.bucket;
                        r.loads.push(b.load());
                    }
                    _ => {
                        slices.extend(run.take());
                        run = Some(SliceLoad {
                            table: index,
                            node: g.node,
                            first: b.bucket,
                            last: b.bucket,
                            loads: vec![b.load()],
                        });
                    }
                }
            }
            slices.extend(run);
        }
        let verdict = pick(&node_loads, &slices, rules);
        let table = match &verdict {
            Verdict::Split(sp) => sp.table,
            Verdict::OneHotKey { table, .. } => *table,
            Verdict::Balanced => return Ok(None),
        };
        Ok(Some((tables[table].clone(), verdict)))
    }

    /// Moves the buckets `split` names to its receiver: a map derived from
    /// the table's, and one redistribution job. Returns the job's id.
    pub async fn split(&self, table: &TableDef, split: &Split, why: String) -> Result<u64> {
        let _membership = self.membership.lock().await;
        let mut jobs = NewJobs::because(Some(why));
        self.catalog.update(|now| {
            refuse_while_moving(now, "split")?;
            let def = now.table(&table.name)?;
            let map = now.hash_map(&def.hash_map)?;
            let (from, to) = split.moving;
            if def.id != table.id || (from..=to).any(|b| map.owner(b) != split.node) {
                return Err(err!(
                    ObjectInUse,
                    "table \"{}\" changed while its split was planned",
                    def.name
                ));
            }
            let derived = map.reassign(&now.unused_map_names()(), (from..=to).map(|b| (b, split.receiver)));
            let mut changes = vec![Change::PutHashMap(derived.clone())];
            jobs.plan(now, [(def, Arc::new(derived))], None, &mut changes)?;
            Ok(changes)
        })?;
        let id = jobs
            .created
            .first()
            .map(|j| j.id)
            .ok_or_else(|| slicedb_common::Error::internal("a split planned no job"))?;
        self.start_jobs(jobs)?;
        Ok(id)
    }
}
