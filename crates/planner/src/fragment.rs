//! Fragments: parts of a query plan that run on the slice servers.
//!
//! DataFusion plans every query on the coordinator, and without this module
//! it would also run all of it there: each slice server only scans. Two
//! shapes are worth sending to the data instead:
//!
//! - a **partial aggregate** (`AggregateExec` in `Partial` mode) over one
//!   table's scan: each slice server aggregates its own rows and the
//!   coordinator only merges one row per group per slice server;
//! - a **co-located join**: a hash join of two tables bound to the *same*
//!   hash map on their full distribution keys (same types, same order).
//!   Matching rows then share a bucket, hence a slice server, so each slice
//!   server joins its own slices and no row crosses the network to be joined
//!   (a partial aggregate above such a join goes along).
//!
//! [`PushDownFragments`] is a physical optimizer rule that runs last. It
//! finds the topmost such subtree, builds one plan per slice server (its
//! scans narrowed to that server's buckets, the join made `CollectLeft`,
//! repartitioning dropped), encodes each with datafusion-proto, and replaces
//! the subtree with a [`SliceFragmentExec`], which sends each slice server its
//! plan and streams back the results, one partition per slice server. A
//! scan leaf is encoded as a [`FragmentScan`]: the slice server reads its
//! own storage for it. If the replaced subtree promised hash partitioning to
//! its parent, the fragment's output is repartitioned the same way.
//!
//! Anything else — a join across hash maps (seed 002's S4: the old table's
//! rows are redistributed at query time), a join on other columns, a
//! function the slice servers do not have — stays on the coordinator.
//! `EXPLAIN` shows which: a `SliceFragmentExec` line and, under it, the plan
//! one slice server runs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use datafusion::prelude::SessionContext;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use slicedb_common::{Error, NodeId};
use slicedb_transport::message::FragmentScan;
use slicedb_transport::{batches_as, wire, Cluster};

use crate::scan::SliceScanExec;

/// The physical optimizer rule that sends partial aggregates and
/// co-located joins to the slice servers. Register it last.
pub struct PushDownFragments {
    cluster: Arc<Cluster>,
}

impl fmt::Debug for PushDownFragments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PushDownFragments")
    }
}

impl PushDownFragments {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        PushDownFragments { cluster }
    }
}

impl PhysicalOptimizerRule for PushDownFragments {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| match self.fragment(&node)? {
            Some(replaced) => Ok(Transformed::new(replaced, true, TreeNodeRecursion::Jump)),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "push_down_fragments"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

impl PushDownFragments {
    /// The fragment replacing `node`, if `node` is worth and able to run on
    /// the slice servers.
    fn fragment(&self, node: &Arc<dyn ExecutionPlan>) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let worth = node
            .downcast_ref::<AggregateExec>()
            .is_some_and(|a| *a.mode() == AggregateMode::Partial)
            || node.downcast_ref::<HashJoinExec>().is_some();
        if !worth {
            return Ok(None);
        }
        let Some(nodes) = distributable(node) else {
            return Ok(None);
        };
        let mut fragments = Vec::new();
        let mut shown = None;
        for n in nodes {
            let plan = narrow(node, n)?;
            if !uses_only_builtin_functions(&plan)? {
                return Ok(None);
            }
            let bytes = match datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec(
                plan.clone(),
                &FragmentCodec,
            ) {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    tracing::debug!("not pushed down (cannot encode): {e}");
                    return Ok(None);
                }
            };
            shown.get_or_insert(plan);
            fragments.push((n, bytes));
        }
        let Some(shown) = shown else {
            return Ok(None);
        };
        let exec: Arc<dyn ExecutionPlan> = Arc::new(SliceFragmentExec::new(
            node.schema(),
            fragments,
            shown,
            self.cluster.clone(),
        ));
        // Keep the partitioning the parent was promised (when it is one a
        // parent can use: over columns of the output).
        Ok(Some(match node.output_partitioning() {
            p @ Partitioning::Hash(exprs, _) if exprs.iter().all(|e| e.downcast_ref::<Column>().is_some()) => {
                Arc::new(RepartitionExec::try_new(exec, p.clone())?)
            }
            _ => exec,
        }))
    }
}

/// The slice servers a subtree reads, if it can run on them: only
/// filters, projections and repartitioning over scans,
/// co-located hash joins and partial aggregates.
fn distributable(plan: &Arc<dyn ExecutionPlan>) -> Option<Vec<NodeId>> {
    if let Some(scan) = plan.downcast_ref::<SliceScanExec>() {
        return Some(scan.nodes());
    }
    if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
        let left = distributable(join.left())?;
        let right = distributable(join.right())?;
        if !colocated(join) {
            return None;
        }
        let mut all = left;
        all.extend(right);
        all.sort_unstable();
        all.dedup();
        return Some(all);
    }
    let passes = plan.downcast_ref::<FilterExec>().is_some()
        || plan.downcast_ref::<ProjectionExec>().is_some()
        || plan.downcast_ref::<RepartitionExec>().is_some()
        || plan.downcast_ref::<CoalescePartitionsExec>().is_some()
        || plan
            .downcast_ref::<AggregateExec>()
            .is_some_and(|a| *a.mode() == AggregateMode::Partial);
    match plan.children().as_slice() {
        [child] if passes => distributable(child),
        _ => None,
    }
}

/// A scan and one of its table's columns.
type TracedColumn<'a> = (&'a SliceScanExec, usize);

/// The scan and table column behind output column `index` of `plan`,
/// following only plans that pass columns through unchanged.
fn trace_column(plan: &Arc<dyn ExecutionPlan>, index: usize) -> Option<TracedColumn<'_>> {
    if let Some(scan) = plan.downcast_ref::<SliceScanExec>() {
        return scan.table_column(index).map(|c| (scan, c));
    }
    if let Some(filter) = plan.downcast_ref::<FilterExec>() {
        let index = match filter.projection() {
            Some(p) => *p.get(index)?,
            None => index,
        };
        return trace_column(filter.input(), index);
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let expr = &projection.expr().get(index)?.expr;
        let column = expr.downcast_ref::<Column>()?;
        return trace_column(projection.input(), column.index());
    }
    if plan.downcast_ref::<RepartitionExec>().is_some() || plan.downcast_ref::<CoalescePartitionsExec>().is_some() {
        return trace_column(plan.children().first()?, index);
    }
    None
}

/// Is `join` an equi-join of two tables on the same hash map that pins
/// both full distribution keys to each other, column by column?
fn colocated(join: &HashJoinExec) -> bool {
    let on: Vec<(Option<TracedColumn>, Option<TracedColumn>)> = join
        .on()
        .iter()
        .map(|(l, r)| {
            let l = l
                .downcast_ref::<Column>()
                .and_then(|c| trace_column(join.left(), c.index()));
            let r = r
                .downcast_ref::<Column>()
                .and_then(|c| trace_column(join.right(), c.index()));
            (l, r)
        })
        .collect();
    let Some((Some((left, _)), Some((right, _)))) = on.first().copied() else {
        return false;
    };
    let (lt, rt) = (left.table(), right.table());
    if left.map().name != right.map().name || lt.distribution_key.len() != rt.distribution_key.len() {
        return false;
    }
    lt.distribution_key.iter().zip(&rt.distribution_key).all(|(lk, rk)| {
        lt.columns[*lk].sql_type == rt.columns[*rk].sql_type
            && on.iter().any(|pair| match pair {
                (Some((ls, lc)), Some((rs, rc))) => {
                    std::ptr::eq(*ls, left) && std::ptr::eq(*rs, right) && lc == lk && rc == rk
                }
                _ => false,
            })
    })
}

/// The plan slice server `node` runs for `plan`: scans narrowed to its
/// buckets, repartitioning dropped, hash joins made `CollectLeft`.
fn narrow(plan: &Arc<dyn ExecutionPlan>, node: NodeId) -> DfResult<Arc<dyn ExecutionPlan>> {
    if let Some(scan) = plan.downcast_ref::<SliceScanExec>() {
        return Ok(match scan.for_node(node) {
            Some(s) => Arc::new(s),
            None => Arc::new(EmptyExec::new(scan.schema())),
        });
    }
    // One partition per slice server: nothing to repartition or merge.
    if plan.downcast_ref::<RepartitionExec>().is_some() || plan.downcast_ref::<CoalescePartitionsExec>().is_some() {
        if let Some(child) = plan.children().first() {
            return narrow(child, node);
        }
    }
    let children = plan
        .children()
        .into_iter()
        .map(|c| narrow(c, node))
        .collect::<DfResult<Vec<_>>>()?;
    if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
        return join
            .builder()
            .with_new_children(children)?
            .with_partition_mode(PartitionMode::CollectLeft)
            .build_exec();
    }
    plan.clone()
        .replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
}

/// Scalar functions a slice server knows: DataFusion's built-ins, except
/// those the coordinator replaces with its own of the same name, and
/// slicedb's checked integer arithmetic (`slicedb_common::int_arith`) and
/// `numeric` division and rounding (`slicedb_common::numeric`).
static BUILTIN_FUNCTIONS: LazyLock<std::collections::HashSet<String>> = LazyLock::new(|| {
    SessionContext::new()
        .state()
        .scalar_functions()
        .keys()
        .filter(|name| !crate::to_char::REPLACES.contains(&name.as_str()))
        .cloned()
        .chain(slicedb_common::int_arith::udfs().iter().map(|f| f.name().to_string()))
        .chain(slicedb_common::numeric::udfs().iter().map(|f| f.name().to_string()))
        .collect()
});

/// Aggregate functions a slice server knows: DataFusion's built-ins, and
/// `numeric_avg` (`slicedb_common::numeric`).
static BUILTIN_AGGREGATES: LazyLock<std::collections::HashSet<String>> = LazyLock::new(|| {
    SessionContext::new()
        .state()
        .aggregate_functions()
        .keys()
        .cloned()
        .chain(slicedb_common::numeric::udafs().iter().map(|f| f.name().to_string()))
        .collect()
});

/// Does `plan` call only functions a slice server has?
fn uses_only_builtin_functions(plan: &Arc<dyn ExecutionPlan>) -> DfResult<bool> {
    let mut ok = true;
    plan.apply(|node| {
        if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
            if aggregate
                .aggr_expr()
                .iter()
                .any(|a| !BUILTIN_AGGREGATES.contains(a.fun().name()))
            {
                ok = false;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        node.apply_expressions(&mut |expr: &Arc<dyn PhysicalExpr>| {
            expr.apply(|e| {
                if let Some(f) = e.downcast_ref::<ScalarFunctionExpr>() {
                    if !BUILTIN_FUNCTIONS.contains(f.name()) {
                        ok = false;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    })?;
    Ok(ok)
}

/// Encodes a fragment's scan leaves as [`FragmentScan`]s.
#[derive(Debug)]
struct FragmentCodec;

impl PhysicalExtensionCodec for FragmentCodec {
    fn try_decode(
        &self,
        _buf: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Internal(
            "fragments are decoded by slice servers".into(),
        ))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        let scan = node
            .downcast_ref::<SliceScanExec>()
            .ok_or_else(|| DataFusionError::NotImplemented(format!("{} cannot run on a slice server", node.name())))?;
        let request = scan
            .single_request()
            .ok_or_else(|| DataFusionError::Internal("a fragment scan reads one slice server".into()))?;
        let payload = FragmentScan {
            request: request.clone(),
            schema: wire::schema_to_bytes(&scan.schema()).map_err(Error::into_datafusion)?,
        };
        buf.extend(wire::encode(&payload).map_err(Error::into_datafusion)?);
        Ok(())
    }
}

/// Runs a fragment on each slice server it names; one output partition per
/// slice server.
pub struct SliceFragmentExec {
    schema: SchemaRef,
    /// Each slice server and its encoded plan.
    fragments: Vec<(NodeId, Vec<u8>)>,
    /// The plan of the first slice server, shown by EXPLAIN.
    shown: Arc<dyn ExecutionPlan>,
    cluster: Arc<Cluster>,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for SliceFragmentExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<NodeId> = self.fragments.iter().map(|(n, _)| *n).collect();
        write!(f, "SliceFragmentExec({nodes:?})")
    }
}

impl SliceFragmentExec {
    fn new(
        schema: SchemaRef,
        fragments: Vec<(NodeId, Vec<u8>)>,
        shown: Arc<dyn ExecutionPlan>,
        cluster: Arc<Cluster>,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(fragments.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        SliceFragmentExec {
            schema,
            fragments,
            shown,
            cluster,
            properties,
        }
    }
}

impl DisplayAs for SliceFragmentExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let nodes: BTreeMap<NodeId, usize> = self.fragments.iter().map(|(n, b)| (*n, b.len())).collect();
        write!(
            f,
            "SliceFragmentExec: runs on slice_servers=[{}], plan of slice server {} below",
            nodes.keys().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
            nodes.keys().next().copied().unwrap_or_default()
        )
    }
}

impl ExecutionPlan for SliceFragmentExec {
    fn name(&self) -> &'static str {
        "SliceFragmentExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    /// The plan one slice server runs, for display only: the coordinator
    /// never executes it.
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.shown]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let schema = self.schema.clone();
        let Some((node, plan)) = self.fragments.get(partition).cloned() else {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::empty(),
            )));
        };
        let cluster = self.cluster.clone();
        Ok(batches_as(
            schema,
            async move { cluster.client(node)?.fragment(plan).await },
        ))
    }
}
