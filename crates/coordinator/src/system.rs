//! System views: live cluster state that `SELECT` can read, such as
//! `slicedb.redistributions` (the coordinator's) and `slicedb.bucket_load`
//! (gathered from the slice servers).
//!
//! A [`SystemView`] computes its rows when a query scans it, so two scans a
//! second apart see the state of each moment.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use futures::future::BoxFuture;
use futures::FutureExt;
use slicedb_common::Result;

type Rows = dyn Fn() -> BoxFuture<'static, Result<RecordBatch>> + Send + Sync;

/// A read-only table whose rows come from a function called at each scan.
pub struct SystemView {
    schema: SchemaRef,
    rows: Arc<Rows>,
}

impl std::fmt::Debug for SystemView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemView")
    }
}

impl SystemView {
    pub fn new(schema: SchemaRef, rows: impl Fn() -> Result<RecordBatch> + Send + Sync + 'static) -> Self {
        SystemView {
            schema,
            rows: Arc::new(move || futures::future::ready(rows()).boxed()),
        }
    }

    /// A view whose rows take asking other processes (the slice servers).
    pub fn new_async<F>(schema: SchemaRef, rows: impl Fn() -> F + Send + Sync + 'static) -> Self
    where
        F: Future<Output = Result<RecordBatch>> + Send + 'static,
    {
        SystemView {
            schema,
            rows: Arc::new(move || rows().boxed()),
        }
    }
}

#[async_trait]
impl TableProvider for SystemView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = (self.rows)().await.map_err(|e| e.into_datafusion())?;
        let table = MemTable::try_new(self.schema.clone(), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}
