//! The coordinator's side of the write router ([`PointWrite`]): which
//! statements go it, and the DataFusion session state it evaluates values
//! with.
//!
//! A write is recognized after the rewrites of [`crate::rewrite`] (so the
//! `DEFAULT` keyword, identity columns, `RETURNING` and `ON CONFLICT DO
//! NOTHING` are settled the same way as for a planned write). The router
//! reads one shared session state, taken once: cloning DataFusion's state
//! costs more than a one-row write. What belongs to the statement (its
//! start time, for `now()`, and the session's sequences, for `nextval`)
//! travels in its own `ExecutionProps`.

use std::sync::Arc;

use datafusion::common::ParamValues;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::sql::sqlparser::ast;
use slicedb_common::Result;
use slicedb_planner::point_write::{PointWrite, Written};
use slicedb_planner::txn::StatementTxn;

use crate::rewrite::Rewritten;
use crate::sequence::SessionValues;
use crate::Coordinator;

impl Coordinator {
    /// The statement as a routable write, after the rewrites, with what
    /// they took off it; `None` if it is to be planned.
    pub(crate) fn routed_write(&self, stmt: &ast::Statement) -> Result<Option<(PointWrite, Rewritten)>> {
        if !matches!(
            stmt,
            ast::Statement::Insert(_) | ast::Statement::Update(_) | ast::Statement::Delete(_)
        ) {
            return Ok(None);
        }
        let mut stmt = stmt.clone();
        let rewritten = crate::rewrite::for_planning(&mut stmt, &self.catalog.snapshot())?;
        if rewritten.upsert.is_some() {
            return Ok(None);
        }
        Ok(PointWrite::recognize(&stmt, rewritten.do_nothing).map(|w| (w, rewritten)))
    }

    /// Runs a routable write in the statement's transaction `stmt`; `None`
    /// if the router declines it (then nothing was written).
    pub(crate) async fn run_routed(
        &self,
        write: &PointWrite,
        params: Option<&ParamValues>,
        stmt: &Arc<StatementTxn>,
        sequences: &SessionValues,
        keep_rows: bool,
    ) -> Result<Option<Written>> {
        let Ok(table) = self.slice_table(write.table()) else {
            return Ok(None);
        };
        let state = self.router_state.get_or_init(|| self.ctx.state());
        let mut config = state.config_options().as_ref().clone();
        config.extensions.insert(sequences.clone());
        let mut props = ExecutionProps::new();
        props.mark_start_execution(Arc::new(config));
        write
            .execute(&table, state, &props, stmt.clone(), params, keep_rows)
            .await
    }
}
