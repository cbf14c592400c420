//! [`SliceSchemaProvider`]: the catalog's tables and views, as DataFusion's
//! `public` schema.
//!
//! Every lookup reads the catalog's latest snapshot, so a table created or
//! dropped by one session is seen by the next statement of every session.

use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::{TableProvider, ViewTable};
use datafusion::error::Result as DfResult;
use datafusion::execution::context::SessionContext;
use slicedb_catalog::Catalog;
use slicedb_transport::Cluster;

use crate::table::{LiveRouting, SliceTable};

pub struct SliceSchemaProvider {
    catalog: Arc<Catalog>,
    cluster: Arc<Cluster>,
    routing: Arc<LiveRouting>,
    /// The session context, to plan view definitions. Set once after the
    /// context is built (the context owns this provider).
    context: OnceLock<Weak<SessionContext>>,
}

impl std::fmt::Debug for SliceSchemaProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SliceSchemaProvider")
    }
}

impl SliceSchemaProvider {
    pub fn new(catalog: Arc<Catalog>, cluster: Arc<Cluster>, routing: Arc<LiveRouting>) -> Self {
        SliceSchemaProvider {
            routing,
            catalog,
            cluster,
            context: OnceLock::new(),
        }
    }

    pub fn set_context(&self, ctx: &Arc<SessionContext>) {
        let _ = self.context.set(Arc::downgrade(ctx));
    }

    /// The provider of a distributed table, placed as the catalog places it now.
    pub fn slice_table(&self, name: &str) -> slicedb_common::Result<SliceTable> {
        let snapshot = self.catalog.snapshot();
        let table = snapshot.table(name)?;
        let map = snapshot.table_map(&table)?;
        Ok(SliceTable::new(table, map, self.cluster.clone(), self.routing.clone()))
    }
}

#[async_trait]
impl SchemaProvider for SliceSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        let s = self.catalog.snapshot();
        s.tables.keys().chain(s.views.keys()).cloned().collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let snapshot = self.catalog.snapshot();
        if snapshot.tables.contains_key(name) {
            let mut t = self.slice_table(name).map_err(|e| e.into_datafusion())?;
            if let Some(ctx) = self.context.get().and_then(Weak::upgrade) {
                t = t.with_constraints(&ctx.state()).map_err(|e| e.into_datafusion())?;
            }
            return Ok(Some(Arc::new(t)));
        }
        if let Some(view) = snapshot.views.get(name) {
            let Some(ctx) = self.context.get().and_then(Weak::upgrade) else {
                return Ok(None);
            };
            let plan = ctx.state().create_logical_plan(&view.sql).await?;
            return Ok(Some(Arc::new(ViewTable::new(plan, Some(view.sql.clone())))));
        }
        Ok(None)
    }

    fn table_exist(&self, name: &str) -> bool {
        let s = self.catalog.snapshot();
        s.tables.contains_key(name) || s.views.contains_key(name)
    }
}
