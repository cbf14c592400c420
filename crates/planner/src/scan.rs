//! [`SliceScanExec`]: the leaf of every query plan over a distributed table.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions,
};
use slicedb_common::{NodeId, TableDef};
use slicedb_hashmap::HashMap;
use slicedb_transport::{batches_as, Cluster, ScanRequest};

/// What one partition of a scan reads: a slice server and its request.
#[derive(Debug, Clone)]
pub struct SliceScan {
    pub node: NodeId,
    pub request: ScanRequest,
    /// Buckets of this slice server the scan covers (for EXPLAIN).
    pub bucket_count: usize,
}

/// Scans one table on the slice servers that hold the buckets it needs, one
/// output partition per slice server, streaming Arrow batches as they come.
pub struct SliceScanExec {
    table: Arc<TableDef>,
    /// The hash map the scans were routed by.
    map: Arc<HashMap>,
    /// Names of the table's columns, for EXPLAIN.
    columns: Vec<String>,
    schema: SchemaRef,
    scans: Vec<SliceScan>,
    cluster: Arc<Cluster>,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for SliceScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SliceScanExec")
            .field("table", &self.table.name)
            .field("scans", &self.scans)
            .finish()
    }
}

impl SliceScanExec {
    pub fn new(
        table: Arc<TableDef>,
        map: Arc<HashMap>,
        schema: SchemaRef,
        scans: Vec<SliceScan>,
        cluster: Arc<Cluster>,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(scans.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        SliceScanExec {
            columns: table.columns.iter().map(|c| c.name.clone()).collect(),
            table,
            map,
            schema,
            scans,
            cluster,
            properties,
        }
    }

    pub fn table(&self) -> &TableDef {
        &self.table
    }

    pub fn map(&self) -> &HashMap {
        &self.map
    }

    /// The slice servers the scan reads, ascending.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.scans.iter().map(|s| s.node).collect()
    }

    /// The table column behind output column `index` (`None` for the row key).
    pub fn table_column(&self, index: usize) -> Option<usize> {
        self.scans.first()?.request.projection.get(index).copied()
    }

    /// The same scan narrowed to slice server `node`, if it reads there.
    pub fn for_node(&self, node: NodeId) -> Option<SliceScanExec> {
        let scan = self.scans.iter().find(|s| s.node == node)?.clone();
        Some(SliceScanExec::new(
            self.table.clone(),
            self.map.clone(),
            self.schema.clone(),
            vec![scan],
            self.cluster.clone(),
        ))
    }

    /// The request, if the scan reads exactly one slice server.
    pub fn single_request(&self) -> Option<&ScanRequest> {
        match self.scans.as_slice() {
            [one] => Some(&one.request),
            _ => None,
        }
    }
}

impl DisplayAs for SliceScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let buckets: usize = self.scans.iter().map(|s| s.bucket_count).sum();
        write!(
            f,
            "SliceScanExec: table={}, buckets={buckets}, slice_servers=[",
            self.table.name
        )?;
        for (i, s) in self.scans.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(
                f,
                "{}: {} bucket{}",
                s.node,
                s.bucket_count,
                if s.bucket_count == 1 { "" } else { "s" }
            )?;
        }
        write!(f, "]")?;
        if let Some(first) = self.scans.first() {
            if let Some(keys) = &first.request.keys {
                let total: usize = self
                    .scans
                    .iter()
                    .map(|s| s.request.keys.as_ref().map_or(0, Vec::len))
                    .sum();
                let _ = keys;
                write!(f, ", point_reads={total}")?;
            }
            if let Some(p) = &first.request.predicate {
                write!(f, ", predicate={}", p.to_sql(&self.columns))?;
            }
            if let Some(l) = first.request.limit {
                write!(f, ", limit={l}")?;
            }
        }
        Ok(())
    }
}

impl ExecutionPlan for SliceScanExec {
    fn name(&self) -> &'static str {
        "SliceScanExec"
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

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let schema = self.schema.clone();
        let Some(scan) = self.scans.get(partition).cloned() else {
            let empty = futures::stream::empty();
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, empty)));
        };
        let cluster = self.cluster.clone();
        Ok(batches_as(schema, async move {
            cluster.client(scan.node)?.scan(scan.request).await
        }))
    }
}
