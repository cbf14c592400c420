//! What the coordinator reports to the metrics recorder.
//!
//! Statements are counted and timed as they finish ([`statement_done`]);
//! the cluster's shape and the redistributions' progress are read from the
//! catalog every two seconds ([`Coordinator::report_catalog_gauges`]).
//! The names, with those the slice servers, the WAL syncer, the
//! transaction core and the front end record, are listed in
//! `docs/operations.md` ("Monitoring"). Without an exporter installed
//! (`--metrics-listen`), recording is a no-op.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `slicedb_statements_total` | counter | `kind` (select, insert, update, delete, copy, ddl, transaction, cluster, other), `outcome` (ok, error) |
//! | `slicedb_statement_errors_total` | counter | `sqlstate` |
//! | `slicedb_statement_duration_seconds` | histogram | `kind` (until the first row or the tag) |
//! | `slicedb_nodes` | gauge | |
//! | `slicedb_tables` | gauge | |
//! | `slicedb_hash_map_buckets` | gauge | `map`, `node`, `current` |
//! | `slicedb_redistributions_active` | gauge | |
//! | `slicedb_redistribution_buckets_total`, `…_buckets_moved`, `…_rows_copied` | gauge | `job`, `table` |

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::sql::sqlparser::ast;
use slicedb_common::Result;

use crate::parser::Statement;
use crate::{Coordinator, Output};

/// The label of a statement's kind.
pub(crate) fn kind(stmt: Option<&Statement>) -> &'static str {
    use ast::Statement as S;
    match stmt {
        None => "other",
        Some(Statement::Sql(s)) => match s.as_ref() {
            S::Query(_) | S::Explain { .. } | S::ShowVariable { .. } => "select",
            S::Insert(_) => "insert",
            S::Update(_) => "update",
            S::Delete(_) => "delete",
            S::Copy { .. } => "copy",
            S::StartTransaction { .. }
            | S::Commit { .. }
            | S::Rollback { .. }
            | S::Savepoint { .. }
            | S::ReleaseSavepoint { .. } => "transaction",
            S::CreateView(_)
            | S::CreateIndex(_)
            | S::AlterTable(_)
            | S::Drop { .. }
            | S::Truncate(_)
            | S::Comment { .. }
            | S::Grant(_)
            | S::Revoke(_) => "ddl",
            _ => "other",
        },
        Some(Statement::CreateTable { .. } | Statement::CreateRole { .. })
        | Some(Statement::AlterRole { .. } | Statement::DropRole { .. })
        | Some(Statement::CreateSequence { .. } | Statement::AlterSequence { .. }) => "ddl",
        Some(
            Statement::CreateHashMap { .. }
            | Statement::SetCurrentHashMap(_)
            | Statement::DropHashMap { .. }
            | Statement::AddNode { .. }
            | Statement::RemoveNode(_)
            | Statement::Redistribute { .. }
            | Statement::DrainNode { .. }
            | Statement::Rebalance { .. }
            | Statement::AlterNode { .. }
            | Statement::CancelRedistribution(_),
        ) => "cluster",
        Some(_) => "other",
    }
}

/// Counts and times one statement that ran.
pub(crate) fn statement_done(kind: &'static str, started: Instant, result: &Result<Output>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => {
            metrics::counter!("slicedb_statement_errors_total", "sqlstate" => e.state.code()).increment(1);
            "error"
        }
    };
    metrics::counter!("slicedb_statements_total", "kind" => kind, "outcome" => outcome).increment(1);
    metrics::histogram!("slicedb_statement_duration_seconds", "kind" => kind).record(started.elapsed().as_secs_f64());
}

impl Coordinator {
    /// Sets the catalog's gauges every two seconds, for as long as the
    /// coordinator lives (the task holds it weakly).
    pub fn report_catalog_gauges(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                let Some(coordinator) = weak.upgrade() else {
                    return;
                };
                coordinator.catalog_gauges();
            }
        });
    }

    fn catalog_gauges(&self) {
        let state = self.catalog.snapshot();
        metrics::gauge!("slicedb_nodes").set(state.nodes.len() as f64);
        metrics::gauge!("slicedb_tables").set(state.tables.len() as f64);
        let current = state.current_map_name().unwrap_or_default().to_string();
        for (name, map) in &state.hash_maps {
            let is_current = if *name == current { "true" } else { "false" };
            for (node, count) in map.bucket_counts() {
                metrics::gauge!(
                    "slicedb_hash_map_buckets",
                    "map" => name.clone(),
                    "node" => node.to_string(),
                    "current" => is_current
                )
                .set(count as f64);
            }
        }
        let active: Vec<_> = state.jobs.values().filter(|j| j.state.is_active()).collect();
        metrics::gauge!("slicedb_redistributions_active").set(active.len() as f64);
        for job in active {
            let labels = [("job", job.id.to_string()), ("table", job.table.clone())];
            metrics::gauge!("slicedb_redistribution_buckets_total", &labels).set(job.buckets_total() as f64);
            metrics::gauge!("slicedb_redistribution_buckets_moved", &labels).set(job.buckets_moved() as f64);
            metrics::gauge!("slicedb_redistribution_rows_copied", &labels).set(job.rows_copied() as f64);
        }
    }
}
