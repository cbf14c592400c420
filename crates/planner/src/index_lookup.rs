//! [`IndexLookupExec`]: reads rows through a global secondary index.
//!
//! When a query's filters pin every column of a usable index to one or a
//! few values (`email = $1`, `a = 1 AND b IN (2, 3)`), the scan becomes two
//! steps instead of a read of every slice:
//!
//! 1. the index entries of those values are read on the slice servers that
//!    own their buckets (one bucket per value: a point read for a unique
//!    index, a read of that bucket filtered by the values otherwise), at
//!    the statement's snapshot, which also sees the transaction's own
//!    entries;
//! 2. the row keys the entries hold are read as point reads, batched per
//!    slice server, with the scan's projection and pushed predicate.
//!
//! Entries and rows are written in the same transactions, so a snapshot
//! sees them agree. The filters stay in the plan above (they are pushed as
//! inexact), so the answer does not depend on the index being chosen.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BinaryArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions,
};
use futures::{StreamExt, TryStreamExt};
use slicedb_codec::key::{bucket_of_row_key, row_key};
use slicedb_codec::RowKey;
use slicedb_common::{Datum, Error, IndexDef, NodeId, Result, TableDef};
use slicedb_hashmap::{bucket_of, HashMap};
use slicedb_transport::{batches_as, Cluster, CmpOp, Predicate, ScanRequest};

use crate::table::SCAN_BATCH_ROWS;

/// Reads the rows of `table` whose indexed columns hold one of `lookups`.
pub struct IndexLookupExec {
    table: Arc<TableDef>,
    index: IndexDef,
    map: Arc<HashMap>,
    /// Values of the indexed columns to look up (index column order).
    lookups: Vec<Vec<Datum>>,
    /// The read of the rows found: everything but `keys`.
    rows: ScanRequest,
    schema: SchemaRef,
    cluster: Arc<Cluster>,
    properties: Arc<PlanProperties>,
}

impl IndexLookupExec {
    pub fn new(
        table: Arc<TableDef>,
        index: IndexDef,
        map: Arc<HashMap>,
        lookups: Vec<Vec<Datum>>,
        rows: ScanRequest,
        schema: SchemaRef,
        cluster: Arc<Cluster>,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        IndexLookupExec {
            table,
            index,
            map,
            lookups,
            rows,
            schema,
            cluster,
            properties,
        }
    }

    /// The slice servers that hold the looked-up entries.
    fn entry_nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self
            .lookups
            .iter()
            .map(|v| self.map.owner(bucket_of(v.iter())))
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// Step 1: the entry reads, one per slice server.
    fn entry_requests(&self) -> Result<Vec<(NodeId, ScanRequest)>> {
        let entries = self.index.entry_table(&self.table);
        let n = self.index.columns.len();
        let base = ScanRequest {
            table_id: self.index.id,
            column_types: entries.column_types(),
            projection: vec![n],
            with_key: false,
            buckets: Vec::new(),
            keys: None,
            predicate: None,
            limit: None,
            batch_size: SCAN_BATCH_ROWS,
            at: self.rows.at,
            missing: Vec::new(),
            dropped: Vec::new(),
        };
        // Per slice server: keys (unique), or buckets and their values.
        type Reads = (Vec<RowKey>, Vec<(u16, u16)>, Vec<Predicate>);
        let mut per_node: BTreeMap<NodeId, Reads> = BTreeMap::new();
        for values in &self.lookups {
            let bucket = bucket_of(values.iter());
            let e = per_node.entry(self.map.owner(bucket)).or_default();
            if self.index.unique {
                e.0.push(row_key(bucket, values)?);
            } else {
                e.1.push((bucket, bucket));
                let eqs: Vec<Predicate> = values
                    .iter()
                    .enumerate()
                    .map(|(column, value)| Predicate::Compare {
                        column,
                        op: CmpOp::Eq,
                        value: value.clone(),
                    })
                    .collect();
                e.2.push(Predicate::And(eqs));
            }
        }
        Ok(per_node
            .into_iter()
            .map(|(node, (keys, mut buckets, preds))| {
                let request = if self.index.unique {
                    ScanRequest {
                        keys: Some(keys),
                        ..base.clone()
                    }
                } else {
                    buckets.sort_unstable();
                    buckets.dedup();
                    ScanRequest {
                        buckets,
                        predicate: Some(Predicate::Or(preds)),
                        ..base.clone()
                    }
                };
                (node, request)
            })
            .collect())
    }

    async fn run(
        cluster: Arc<Cluster>,
        entry_requests: Vec<(NodeId, ScanRequest)>,
        map: Arc<HashMap>,
        rows: ScanRequest,
    ) -> Result<Vec<slicedb_transport::RecordBatchStream>> {
        let reads = entry_requests.into_iter().map(|(node, request)| {
            let cluster = cluster.clone();
            async move {
                let batches: Vec<_> = cluster.client(node)?.scan(request).await?.try_collect().await?;
                Ok::<_, Error>(batches)
            }
        });
        let mut per_node: BTreeMap<NodeId, Vec<RowKey>> = BTreeMap::new();
        for batches in futures::future::try_join_all(reads).await? {
            for batch in batches {
                let keys = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<BinaryArray>()
                    .ok_or_else(|| Error::internal("index entry key column is not binary"))?;
                for i in 0..keys.len() {
                    let key = keys.value(i).to_vec();
                    per_node
                        .entry(map.owner(bucket_of_row_key(&key)?))
                        .or_default()
                        .push(key);
                }
            }
        }
        let scans = per_node.into_iter().map(|(node, keys)| {
            let cluster = cluster.clone();
            let request = ScanRequest {
                keys: Some(keys),
                ..rows.clone()
            };
            async move { cluster.client(node)?.scan(request).await }
        });
        futures::future::try_join_all(scans).await
    }
}

impl fmt::Debug for IndexLookupExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IndexLookupExec({} via {})", self.table.name, self.index.name)
    }
}

impl DisplayAs for IndexLookupExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let nodes: Vec<String> = self.entry_nodes().iter().map(|n| n.to_string()).collect();
        write!(
            f,
            "IndexLookupExec: table={}, index={} ({}), lookups={}, index_slice_servers=[{}]",
            self.table.name,
            self.index.name,
            self.index.column_list(&self.table),
            self.lookups.len(),
            nodes.join(", ")
        )?;
        if let Some(p) = &self.rows.predicate {
            let columns: Vec<String> = self.table.columns.iter().map(|c| c.name.clone()).collect();
            write!(f, ", predicate={}", p.to_sql(&columns))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for IndexLookupExec {
    fn name(&self) -> &'static str {
        "IndexLookupExec"
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
        let entry_requests = self.entry_requests().map_err(Error::into_datafusion)?;
        let (cluster, map, rows) = (self.cluster.clone(), self.map.clone(), self.rows.clone());
        Ok(batches_as(self.schema.clone(), async move {
            let streams = Self::run(cluster, entry_requests, map, rows).await?;
            Ok(futures::stream::select_all(streams).boxed())
        }))
    }
}
