//! Plan fragments: the part of a query the coordinator sends to the data.
//!
//! The coordinator's `PushDownFragments` rule encodes a physical plan
//! (partial aggregates, co-located joins) with datafusion-proto; its scan
//! leaves are [`FragmentScan`]s. Here the plan is decoded with
//! [`LocalScanCodec`], which turns each scan leaf into a [`LocalScanExec`]
//! over this slice server's own storage, and executed with DataFusion; the
//! results stream back like a scan's. Fragments run in [`context`].

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use datafusion::prelude::SessionContext;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use futures::{StreamExt, TryStreamExt};
use slicedb_common::{Error, Result};
use slicedb_transport::message::FragmentScan;
use slicedb_transport::{batches_as, wire, RecordBatchStream, ScanRequest};

use crate::{scan_stream, ScanSource};

/// The context fragments are decoded and run in: DataFusion's built-in
/// functions, and slicedb's checked integer arithmetic
/// (`slicedb_common::int_arith`) and `numeric` functions
/// (`slicedb_common::numeric`), which the coordinator's plans call.
pub fn context() -> SessionContext {
    let ctx = SessionContext::new();
    for udf in slicedb_common::int_arith::udfs() {
        ctx.register_udf(udf);
    }
    for udf in slicedb_common::numeric::udfs() {
        ctx.register_udf(udf);
    }
    for udaf in slicedb_common::numeric::udafs() {
        ctx.register_udaf(udaf);
    }
    ctx
}

/// Decodes and runs one fragment against `source`.
pub fn run_fragment(source: &ScanSource, ctx: &SessionContext, plan: &[u8]) -> Result<RecordBatchStream> {
    let task = ctx.task_ctx();
    let codec = LocalScanCodec { source: source.clone() };
    let plan = datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(plan, &task, &codec)?;
    let plan: Arc<dyn ExecutionPlan> = if plan.output_partitioning().partition_count() > 1 {
        Arc::new(CoalescePartitionsExec::new(plan))
    } else {
        plan
    };
    let stream = plan.execute(0, task)?;
    Ok(stream.map_err(Error::from).boxed())
}

/// Turns a fragment's [`FragmentScan`] leaves into [`LocalScanExec`]s.
pub struct LocalScanCodec {
    source: ScanSource,
}

impl fmt::Debug for LocalScanCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalScanCodec")
    }
}

impl PhysicalExtensionCodec for LocalScanCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let scan: FragmentScan = wire::decode(buf).map_err(Error::into_datafusion)?;
        let schema = wire::schema_from_bytes(&scan.schema).map_err(Error::into_datafusion)?;
        Ok(Arc::new(LocalScanExec::new(schema, scan.request, self.source.clone())))
    }

    fn try_encode(
        &self,
        _node: Arc<dyn ExecutionPlan>,
        _buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        Err(DataFusionError::Internal(
            "slice servers do not encode fragments".into(),
        ))
    }
}

/// A scan of this slice server's own slices inside a fragment.
pub struct LocalScanExec {
    schema: SchemaRef,
    request: ScanRequest,
    source: ScanSource,
    properties: Arc<PlanProperties>,
}

impl LocalScanExec {
    pub fn new(schema: SchemaRef, request: ScanRequest, source: ScanSource) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        LocalScanExec {
            schema,
            request,
            source,
            properties,
        }
    }
}

impl fmt::Debug for LocalScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalScanExec(table {})", self.request.table_id)
    }
}

impl DisplayAs for LocalScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "LocalScanExec: table_id={}", self.request.table_id)
    }
}

impl ExecutionPlan for LocalScanExec {
    fn name(&self) -> &'static str {
        "LocalScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
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

    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let batches = scan_stream(self.source.clone(), self.request.clone());
        Ok(batches_as(self.schema.clone(), async move { batches }))
    }
}
