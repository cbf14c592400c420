//! The coordinator: catalog, routing and statement execution.
//!
//! A statement arrives as text from the pgwire front end, is parsed
//! ([`parser`]), and is executed by [`Coordinator::execute`]:
//! - queries, INSERT, UPDATE, DELETE and EXPLAIN are planned by DataFusion
//!   over [`slicedb_planner::SliceTable`]s;
//! - DDL and slicedb's cluster statements change the catalog ([`ddl`], [`admin`]);
//! - `COPY` streams rows in and out ([`copy`]);
//! - `SET`, `SHOW` and transaction control act on the [`Session`].
//!
//! The coordinator owns the catalog and reaches slice servers only through
//! [`slicedb_transport::Cluster`]. [`Coordinator::open_embedded`] starts the
//! embedded layout: three slice servers in this process over the in-process
//! transport.

pub mod admin;
pub mod copy;
pub mod ddl;
pub mod execute;
pub mod parser;
pub mod session;

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::SendableRecordBatchStream;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use slicedb_catalog::{Catalog, Change, NodeInfo};
use slicedb_common::{Error, NodeId, Result};
use slicedb_hashmap::HashMap;
use slicedb_planner::SliceSchemaProvider;
use slicedb_slice_server::SliceServer;
use slicedb_transport::local::LocalTransport;
use slicedb_transport::Cluster;

pub use copy::CopyIn;
pub use execute::Prepared;
pub use session::Session;

/// Name of the database (DataFusion catalog) that holds the tables.
pub const DATABASE: &str = "slicedb";
/// Name of the schema that holds the tables.
pub const SCHEMA: &str = "public";
/// Name of the hash map created on first start.
pub const INITIAL_MAP: &str = "hm1";

/// What a statement produced.
pub enum Output {
    /// Rows, streamed.
    Rows {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
    },
    /// A command tag such as `CREATE TABLE` or `INSERT 0 5`.
    Command(CommandTag),
    /// The client must now send COPY data.
    CopyIn(Box<CopyIn>),
    /// COPY TO STDOUT: data rows, already formatted, one string per row.
    CopyOut {
        columns: usize,
        rows: futures::stream::BoxStream<'static, Result<Vec<u8>>>,
    },
    /// Transaction-control acknowledgements, which change the session status.
    TransactionStart(CommandTag),
    TransactionEnd(CommandTag),
    Empty,
}

/// A command completion tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTag {
    pub tag: String,
    pub rows: Option<u64>,
}

impl CommandTag {
    pub fn new(tag: &str) -> Self {
        CommandTag {
            tag: tag.to_string(),
            rows: None,
        }
    }

    pub fn with_rows(tag: &str, rows: u64) -> Self {
        CommandTag {
            tag: tag.to_string(),
            rows: Some(rows),
        }
    }
}

/// `version()`, as PostgreSQL clients parse it.
fn version_udf() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
    let version = format!(
        "PostgreSQL {} (slicedb {}) on {}-linux, compiled by rustc",
        session::SERVER_VERSION,
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(version.clone()))))),
    )
}

/// The coordinator of one cluster.
pub struct Coordinator {
    pub catalog: Arc<Catalog>,
    pub cluster: Arc<Cluster>,
    pub ctx: Arc<SessionContext>,
    schema: Arc<SliceSchemaProvider>,
}

impl Coordinator {
    /// Starts the embedded layout under `data_dir`: a catalog and
    /// `slice_servers` slice servers in this process. On first start the
    /// slice servers are registered and hash map `hm1` over all of them
    /// becomes current.
    pub fn open_embedded(data_dir: &Path, slice_servers: u32) -> Result<Coordinator> {
        std::fs::create_dir_all(data_dir)?;
        let catalog = Arc::new(Catalog::open(&data_dir.join("catalog"))?);
        let cluster = Arc::new(Cluster::new());
        let nodes: Vec<NodeId> = (1..=slice_servers).collect();
        for node in &nodes {
            let server = SliceServer::open(*node, &data_dir.join(format!("slice-{node}")))?;
            cluster.add(Arc::new(LocalTransport::new(*node, Arc::new(server))));
        }
        if catalog.snapshot().nodes.is_empty() {
            let map = HashMap::range(INITIAL_MAP, &nodes)?;
            catalog.update(|_| {
                let mut changes: Vec<Change> = nodes
                    .iter()
                    .map(|id| {
                        Change::PutNode(NodeInfo {
                            id: *id,
                            address: "embedded".into(),
                        })
                    })
                    .collect();
                changes.push(Change::PutHashMap(map));
                changes.push(Change::SetCurrentMap(INITIAL_MAP.into()));
                Ok(changes)
            })?;
            tracing::info!(slice_servers, "initialized a new catalog with hash map {INITIAL_MAP}");
        }
        Coordinator::new(catalog, cluster)
    }

    /// A coordinator over an opened catalog and connected slice servers.
    pub fn new(catalog: Arc<Catalog>, cluster: Arc<Cluster>) -> Result<Coordinator> {
        let config = SessionConfig::new()
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(DATABASE, SCHEMA)
            .with_information_schema(true)
            .with_target_partitions(4);
        let ctx = SessionContext::new_with_config(config);
        ctx.add_analyzer_rule(Arc::new(slicedb_planner::bytea::ByteaInput));
        let ctx = Arc::new(ctx);
        let schema = Arc::new(SliceSchemaProvider::new(catalog.clone(), cluster.clone()));
        schema.set_context(&ctx);
        let db = Arc::new(MemoryCatalogProvider::new());
        db.register_schema(SCHEMA, schema.clone()).map_err(Error::from)?;
        ctx.register_catalog(DATABASE, db);
        setup_pg_catalog(&ctx, DATABASE, EmptyContextProvider).map_err(|e| Error::from(*e))?;
        ctx.register_udf(version_udf());
        Ok(Coordinator {
            catalog,
            cluster,
            ctx,
            schema,
        })
    }

    /// The DataFusion provider of table `name`.
    pub fn slice_table(&self, name: &str) -> Result<slicedb_planner::SliceTable> {
        self.schema.slice_table(name)
    }
}
