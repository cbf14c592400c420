//! Rewrites that give a plan PostgreSQL's meaning where DataFusion's
//! differs, applied to the plan as the SQL planner made it:
//!
//! - `numeric` arithmetic, `avg` and casts to integers
//!   ([`crate::numeric`]);
//! - `AT TIME ZONE` of a `timestamptz` ([`crate::at_time_zone`]).
//!
//! They change the types of columns (a quotient's scale, `avg`'s type, a
//! `timestamp` for a `timestamptz`), so they run before anything reads the
//! plan's schema (a prepared statement's description, a query's row
//! description). Like [`crate::int_arith::numeric_sums`], the nodes are
//! typed again from their inputs, and coerced again, when anything
//! changed.

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Expr, LogicalPlan};

/// One expression with every rewrite, its types read in `schema`;
/// `values` for an expression of a `VALUES` list.
fn rewrite_expr(expr: Expr, schema: &DFSchema, values: bool) -> DfResult<Transformed<Expr>> {
    crate::numeric::rewrite_expr(expr, schema, !values)?
        .transform_data(|e| crate::at_time_zone::rewrite_expr(e, schema))
}

/// Applies the rewrites to every expression of `plan` and of its
/// subqueries (see the module comment).
pub fn postgres_semantics(plan: LogicalPlan, config: &ConfigOptions) -> DfResult<LogicalPlan> {
    let out = plan.transform_up_with_subqueries(|node| {
        let inputs = node.inputs();
        let values = matches!(node, LogicalPlan::Values(_));
        let schema = match inputs.is_empty() {
            true => node.schema().as_ref().clone(),
            false => merge_schema(&inputs),
        };
        let names = NamePreserver::new(&node);
        let mapped = node.map_expressions(|e| {
            let saved = names.save(&e);
            Ok(rewrite_expr(e, &schema, values)?.update_data(|e| saved.restore(e)))
        })?;
        match mapped.transformed {
            true => mapped.map_data(|node| node.recompute_schema()),
            false => Ok(mapped),
        }
    })?;
    crate::int_arith::retyped(out, config)
}

/// The rewrites of one expression whose types `schema` gives (the write
/// router's values, which are not planned as a plan).
pub fn postgres_semantics_expr(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    rewrite_expr(expr, schema, false)
}
