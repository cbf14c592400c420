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
//! [`slicedb_transport::Cluster`]:
//! - [`Coordinator::open_embedded`] starts the embedded layout: three slice
//!   servers in this process over the in-process transport, their stores
//!   in one RocksDB;
//! - [`Coordinator::open_cluster`] reaches slice-server processes over QUIC.
//!
//! Either way, slice servers on other hosts join with `ADD NODE` ([`admin`])
//! over QUIC, authenticated by the cluster CA, and `REDISTRIBUTE` moves
//! tables onto them in the background ([`redistribute`]).

pub mod admin;
pub mod alter;
pub mod alter_type;
pub mod auto_rebalance;
pub mod auto_split;
pub mod copy;
pub mod copy_binary;
pub mod ddl;
pub mod elastic;
pub mod execute;
pub mod foreign_key;
pub mod format_type;
pub mod index;
pub mod index_build;
pub mod information_columns;
pub mod information_schema;
pub mod keyed;
pub mod names;
pub mod not_in;
pub mod observe;
pub mod parser;
pub mod pg_catalog;
pub mod prepared_sql;
pub mod privileges;
pub mod redistribute;
pub mod relation_size;
pub mod rewrite;
pub mod roles;
pub mod routed;
pub mod sequence;
pub mod session;
pub mod settings;
pub mod settings_functions;
pub mod slice_load;
pub mod system;
pub mod timeout;
pub mod txn_statements;
pub mod upsert;

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, SchemaProvider};
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::SendableRecordBatchStream;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use slicedb_catalog::{Catalog, Change, NodeInfo};
use slicedb_common::{Error, NodeId, Result};
use slicedb_hashmap::HashMap;
use slicedb_planner::write_hold::WriteHolds;
use slicedb_planner::SliceSchemaProvider;
use slicedb_slice_server::SliceServer;
use slicedb_transport::local::LocalTransport;
use slicedb_transport::quic::{check_identity, QuicClient, QuicEndpoint};
use slicedb_transport::Cluster;

pub use copy::CopyIn;
pub use execute::Prepared;
pub use session::Session;

/// Name of the database (DataFusion catalog) that holds the tables.
pub const DATABASE: &str = "slicedb";
/// Name of the schema that holds the tables.
pub const SCHEMA: &str = "public";
/// Name of the schema of slicedb's system views.
pub const SYSTEM_SCHEMA: &str = "slicedb";
/// Name of the hash map created on first start.
pub const INITIAL_MAP: &str = "hm1";
/// The address recorded for slice servers inside the coordinator's process.
pub const EMBEDDED_ADDRESS: &str = "embedded";
/// How long a starting coordinator waits for its initial slice servers.
const INITIAL_REGISTRATION_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

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
        /// The data is in the binary format.
        binary: bool,
        rows: futures::stream::BoxStream<'static, Result<Vec<u8>>>,
    },
    /// Rows of a write's `RETURNING` list, under the write's command tag
    /// (`INSERT 0`, `UPDATE`, `DELETE`; the row count is added when sent).
    Returned {
        tag: String,
        schema: SchemaRef,
        batches: Vec<datafusion::arrow::record_batch::RecordBatch>,
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

/// `pg_is_in_recovery()`: false, as on a PostgreSQL primary. A coordinator
/// that answers takes writes; pg_dump and pg_restore ask first.
fn in_recovery_udf() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
    create_udf(
        "pg_is_in_recovery",
        vec![],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(false))))),
    )
}

/// The coordinator of one cluster.
pub struct Coordinator {
    pub catalog: Arc<Catalog>,
    pub cluster: Arc<Cluster>,
    pub ctx: Arc<SessionContext>,
    schema: Arc<SliceSchemaProvider>,
    /// This coordinator's QUIC endpoint, for slice servers in other processes.
    pub endpoint: Option<Arc<QuicEndpoint>>,
    /// Serializes `ADD NODE`, `REMOVE NODE` and the start of redistributions.
    pub(crate) membership: tokio::sync::Mutex<()>,
    /// Writers' gates, which a redistribution's cut-over holds per bucket batch.
    pub holds: Arc<WriteHolds>,
    /// Redistribution runners and the statements cleanup waits for.
    pub redistributions: Arc<redistribute::Redistributions>,
    /// Index builds running here (`slicedb.index_builds`).
    pub index_builds: Arc<index_build::IndexBuilds>,
    /// Where writers route now, and when each table last cut buckets over.
    pub routing: Arc<slicedb_planner::table::LiveRouting>,
    /// The clock, snapshots and two-phase commit.
    pub txns: Arc<slicedb_txn::TxnManager>,
    /// Cached ranges of sequence values.
    pub sequences: Arc<sequence::Sequences>,
    /// DataFusion's session state as the write router reads it (functions
    /// and options), taken once: cloning it costs more than a one-row write.
    pub(crate) router_state: std::sync::OnceLock<datafusion::execution::SessionState>,
}

impl Coordinator {
    /// Starts the embedded layout under `data_dir`: a catalog and
    /// `slice_servers` slice servers in this process. On first start the
    /// slice servers are registered and hash map `hm1` over all of them
    /// becomes current.
    ///
    /// `endpoint`, if given, reaches slice servers added later with `ADD
    /// NODE` from other processes.
    pub fn open_embedded(
        data_dir: &Path,
        slice_servers: u32,
        endpoint: Option<Arc<QuicEndpoint>>,
    ) -> Result<Coordinator> {
        std::fs::create_dir_all(data_dir)?;
        let catalog = Arc::new(Catalog::open(&data_dir.join("catalog"))?);
        let cluster = Arc::new(Cluster::new());
        let cluster_id = catalog.snapshot().cluster_id();
        let fresh = catalog.snapshot().nodes.is_empty();
        let nodes: Vec<NodeId> = if fresh {
            (1..=slice_servers).collect()
        } else {
            let s = catalog.snapshot();
            s.nodes
                .values()
                .filter(|n| n.address == EMBEDDED_ADDRESS)
                .map(|n| n.id)
                .collect()
        };
        // The slice servers share one RocksDB under `slices/`; a directory
        // of the layout before it (one RocksDB per slice server, in
        // `slice-<node>/`) is opened as it is.
        // The coordinator stages its commit records in the shared RocksDB
        // too (in the catalog with the older layout).
        let separate = nodes.iter().any(|node| data_dir.join(format!("slice-{node}")).exists());
        let (shared, servers) = if separate {
            let servers = nodes
                .iter()
                .map(|node| SliceServer::open(&data_dir.join(format!("slice-{node}"))))
                .collect::<Result<Vec<_>>>()?;
            (None, servers)
        } else {
            let (db, servers) = SliceServer::open_shared(&data_dir.join("slices"), &nodes)?;
            (Some(db), servers)
        };
        for (node, server) in nodes.iter().zip(servers) {
            server.register(*node, cluster_id)?;
            cluster.add(Arc::new(LocalTransport::new(*node, Arc::new(server))));
        }
        if fresh {
            let map = HashMap::range(INITIAL_MAP, &nodes)?;
            catalog.update(|_| {
                let mut changes: Vec<Change> = nodes
                    .iter()
                    .map(|id| {
                        Change::PutNode(NodeInfo {
                            id: *id,
                            address: EMBEDDED_ADDRESS.into(),
                            capacity_mb: None,
                        })
                    })
                    .collect();
                changes.push(Change::PutHashMap(map));
                changes.push(Change::SetCurrentMap(INITIAL_MAP.into()));
                Ok(changes)
            })?;
            tracing::info!(slice_servers, "initialized a new catalog with hash map {INITIAL_MAP}");
        }
        Coordinator::new(catalog, cluster, endpoint, shared)
    }

    /// Starts a cluster coordinator under `data_dir`, reaching slice servers
    /// over QUIC through `endpoint`.
    ///
    /// On first start (an empty catalog) it registers the slice servers at
    /// `initial` — waiting for them to come up — and makes hash map `hm1`
    /// over them current. Later starts reconnect to the nodes the catalog
    /// records, lazily, on their first request.
    pub async fn open_cluster(data_dir: &Path, endpoint: Arc<QuicEndpoint>, initial: &[String]) -> Result<Coordinator> {
        std::fs::create_dir_all(data_dir)?;
        let catalog = Arc::new(Catalog::open(&data_dir.join("catalog"))?);
        let cluster = Arc::new(Cluster::new());
        let snapshot = catalog.snapshot();
        let cluster_id = snapshot.cluster_id();
        if snapshot.nodes.is_empty() && !initial.is_empty() {
            let mut infos = Vec::new();
            for (i, address) in initial.iter().enumerate() {
                let node = i as NodeId + 1;
                register_when_up(&endpoint, address, node, cluster_id).await?;
                infos.push(NodeInfo {
                    id: node,
                    address: address.clone(),
                    capacity_mb: None,
                });
            }
            let ids: Vec<NodeId> = infos.iter().map(|n| n.id).collect();
            let map = HashMap::range(INITIAL_MAP, &ids)?;
            catalog.update(|_| {
                let mut changes: Vec<Change> = infos.iter().cloned().map(Change::PutNode).collect();
                changes.push(Change::PutHashMap(map));
                changes.push(Change::SetCurrentMap(INITIAL_MAP.into()));
                Ok(changes)
            })?;
            tracing::info!(
                slice_servers = ids.len(),
                "initialized a new cluster with hash map {INITIAL_MAP}"
            );
        }
        for node in catalog.snapshot().nodes.values() {
            if node.address == EMBEDDED_ADDRESS {
                return Err(Error::internal(format!(
                    "node {} is an embedded slice server; start this data directory with `slicedb start`",
                    node.id
                )));
            }
            cluster.add(Arc::new(QuicClient::new(
                node.id,
                &node.address,
                cluster_id,
                endpoint.clone(),
            )));
        }
        Coordinator::new(catalog, cluster, Some(endpoint), None)
    }

    /// A coordinator over an opened catalog and connected slice servers.
    /// Nodes the catalog records at other addresses are reached through
    /// `endpoint`. Two-phase commit records are staged in `slices`, the
    /// RocksDB of the slice servers in this process, if given (sharing
    /// their syncs), else in the catalog ([`slicedb_txn::CommitLog`]).
    pub fn new(
        catalog: Arc<Catalog>,
        cluster: Arc<Cluster>,
        endpoint: Option<Arc<QuicEndpoint>>,
        slices: Option<Arc<slicedb_storage::SliceDb>>,
    ) -> Result<Coordinator> {
        if let Some(endpoint) = &endpoint {
            let s = catalog.snapshot();
            for node in s.nodes.values().filter(|n| n.address != EMBEDDED_ADDRESS) {
                if cluster.client(node.id).is_err() {
                    cluster.add(Arc::new(QuicClient::new(
                        node.id,
                        &node.address,
                        s.cluster_id(),
                        endpoint.clone(),
                    )));
                }
            }
        }
        let config = SessionConfig::new()
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(DATABASE, SCHEMA)
            .with_information_schema(true)
            .with_target_partitions(4)
            // `now()` and `…::timestamptz` are timestamps with a time zone,
            // as in PostgreSQL (the session's TimeZone is UTC).
            .set_str("datafusion.execution.time_zone", "+00:00")
            // `1.5` is `numeric`, as in PostgreSQL, not `double precision`.
            .set_bool("datafusion.sql_parser.parse_float_as_decimal", true);
        // DataFusion's physical rules, then ours: it sees the plan they settled on.
        let mut physical_rules = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
        physical_rules.push(Arc::new(slicedb_planner::fragment::PushDownFragments::new(
            cluster.clone(),
        )));
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rules(physical_rules)
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.add_analyzer_rule(Arc::new(slicedb_planner::text_input::TextInput));
        ctx.add_analyzer_rule(Arc::new(slicedb_planner::scalar_subquery::NullableScalarSubquery));
        ctx.add_analyzer_rule(Arc::new(slicedb_common::int_arith::CheckedIntegerArithmetic));
        let ctx = Arc::new(ctx);
        let holds = Arc::new(WriteHolds::new());
        let redistributions = Arc::new(redistribute::Redistributions::default());
        let routing = Arc::new(slicedb_planner::table::LiveRouting {
            catalog: catalog.clone(),
            holds: holds.clone(),
            cutovers: Arc::default(),
        });
        let log = match slices {
            Some(db) => slicedb_txn::CommitLog::shared(db, &catalog)?,
            None => slicedb_txn::CommitLog::Catalog(catalog.clone()),
        };
        let txns = slicedb_txn::TxnManager::open_with_log(catalog.clone(), log, cluster.clone(), routing.clone())?;
        let schema = Arc::new(SliceSchemaProvider::new(
            catalog.clone(),
            cluster.clone(),
            routing.clone(),
        ));
        schema.set_context(&ctx);
        let db = Arc::new(MemoryCatalogProvider::new());
        db.register_schema(SCHEMA, schema.clone()).map_err(Error::from)?;
        ctx.register_catalog(DATABASE, db.clone());
        setup_pg_catalog(&ctx, DATABASE, EmptyContextProvider).map_err(|e| Error::from(*e))?;
        if let Some(theirs) = db.schema("pg_catalog") {
            let ours = Arc::new(pg_catalog::PgCatalog::new(theirs, catalog.clone()));
            db.register_schema("pg_catalog", ours).map_err(Error::from)?;
        }
        {
            // uuid, json and jsonb casts, then datafusion-pg-catalog's oid
            // types; array operators and text literals beside arrays,
            // intervals and times, interval comparisons by length, and
            // jsonb's operators, before DataFusion's (`@>` of arrays).
            // Rebuilt before slicedb's functions are registered: a rebuild
            // registers the functions again in no set order, and one of
            // DataFusion's under an alias (`date_format`, `to_char`) could
            // take back a name slicedb's replaced.
            let state = ctx.state_ref();
            let existing = state.read().clone();
            let mut planners: Vec<Arc<dyn datafusion::logical_expr::planner::ExprPlanner>> = vec![
                Arc::new(slicedb_planner::array_ops::ArrayOperators),
                Arc::new(slicedb_planner::interval_cmp::IntervalComparison),
                Arc::new(slicedb_planner::text_types::JsonOperators),
            ];
            planners.extend(existing.expr_planners().iter().cloned());
            let rebuilt = datafusion::execution::SessionStateBuilder::new_from_existing(existing)
                .with_type_planner(Arc::new(slicedb_planner::text_types::TextTypePlanner::default()))
                .with_expr_planners(planners)
                .build();
            *state.write() = rebuilt;
        }
        ctx.register_udaf(slicedb_planner::single_value::SingleValue::udaf());
        for f in slicedb_common::numeric::udfs() {
            ctx.register_udf(f);
        }
        for f in slicedb_common::numeric::udafs() {
            ctx.register_udaf(f);
        }
        ctx.register_udf(slicedb_planner::size_pretty::udf());
        for f in slicedb_planner::interval_mul::udfs() {
            ctx.register_udf(f);
        }
        for f in slicedb_planner::local_time::LocalTime::udfs() {
            ctx.register_udf(f);
        }
        for f in slicedb_planner::json_agg::JsonAgg::udafs() {
            ctx.register_udaf(f);
        }
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            slicedb_planner::to_char::ToChar::default(),
        ));
        for f in slicedb_planner::text_types::functions() {
            ctx.register_udf(f);
        }
        for f in slicedb_planner::pg_functions::functions() {
            ctx.register_udf(f);
        }
        for f in slicedb_planner::array_int::udfs() {
            ctx.register_udf(f);
        }
        if let Some(theirs) = ctx.state().scalar_functions().get("format_type").cloned() {
            ctx.register_udf(format_type::FormatType::wrapping(theirs));
        }
        for f in slicedb_planner::age::udfs() {
            ctx.register_udf(f);
        }
        for (ours, theirs) in slicedb_planner::pg_functions::ALIASES {
            use datafusion::execution::FunctionRegistry;
            if let Ok(f) = ctx.udf(theirs) {
                ctx.register_udf(f.as_ref().clone().with_aliases([*ours]));
            } else if let Ok(f) = ctx.udaf(theirs) {
                ctx.register_udaf(f.as_ref().clone().with_aliases([*ours]));
            }
        }
        for f in pg_catalog::functions(catalog.clone()) {
            ctx.register_udf(f);
        }
        for f in relation_size::functions(catalog.clone()) {
            ctx.register_udf(f);
        }
        ctx.register_udf(version_udf());
        ctx.register_udf(in_recovery_udf());
        ctx.register_udf(roles::SessionUser::udf());
        ctx.register_udf(settings_functions::CurrentSetting::udf());
        ctx.register_udf(settings_functions::SetConfig::udf());
        let sequences = Arc::new(sequence::Sequences::new(catalog.clone()));
        for f in sequence::functions(sequences.clone()) {
            ctx.register_udf(f);
        }
        let coordinator = Coordinator {
            sequences,
            router_state: std::sync::OnceLock::new(),
            catalog,
            cluster,
            ctx,
            schema,
            endpoint,
            membership: tokio::sync::Mutex::new(()),
            holds,
            redistributions,
            index_builds: Arc::default(),
            routing,
            txns,
        };
        coordinator.register_system_views(&db)?;
        if tokio::runtime::Handle::try_current().is_ok() {
            coordinator.drop_unfinished_indexes()?;
            coordinator.txns.spawn_recovery();
            coordinator.resume_redistributions();
        }
        Ok(coordinator)
    }

    /// Registers slicedb's system views under the `slicedb` schema:
    /// `slicedb.redistributions` reads the same rows as `SHOW REDISTRIBUTIONS`,
    /// `slicedb.index_builds` the index builds running here, and
    /// `slicedb.bucket_load` the load and bytes of every bucket
    /// ([`slice_load`]), `slicedb.rebalance_events` the moves the
    /// coordinator started by itself ([`auto_rebalance`]).
    fn register_system_views(&self, db: &Arc<MemoryCatalogProvider>) -> Result<()> {
        let system = Arc::new(datafusion::catalog::MemorySchemaProvider::new());
        let catalog = self.catalog.clone();
        let registry = self.redistributions.clone();
        let rows = move || redistribute::redistributions_rows(&catalog, &registry);
        system
            .register_table(
                "redistributions".into(),
                Arc::new(system::SystemView::new(Coordinator::redistributions_schema(), rows)),
            )
            .map_err(Error::from)?;
        let builds = self.index_builds.clone();
        system
            .register_table(
                "index_builds".into(),
                Arc::new(system::SystemView::new(index_build::IndexBuilds::schema(), move || {
                    builds.rows()
                })),
            )
            .map_err(Error::from)?;
        let catalog = self.catalog.clone();
        system
            .register_table(
                "rebalance_events".into(),
                Arc::new(system::SystemView::new(auto_rebalance::events_schema(), move || {
                    auto_rebalance::events_rows(&catalog.snapshot())
                })),
            )
            .map_err(Error::from)?;
        let (catalog, cluster) = (self.catalog.clone(), self.cluster.clone());
        system
            .register_table(
                "bucket_load".into(),
                Arc::new(system::SystemView::new_async(
                    slice_load::bucket_load_schema(),
                    move || {
                        let (s, cluster) = (catalog.snapshot(), cluster.clone());
                        async move { slice_load::bucket_load_rows(&s, &cluster).await }
                    },
                )),
            )
            .map_err(Error::from)?;
        db.register_schema(SYSTEM_SCHEMA, system).map_err(Error::from)?;
        Ok(())
    }

    /// The DataFusion provider of table `name`.
    pub fn slice_table(&self, name: &str) -> Result<slicedb_planner::SliceTable> {
        self.schema.slice_table(name)
    }
}

/// Registers the slice server at `address` as `node`, retrying while it is
/// not up yet (containers start in any order).
async fn register_when_up(endpoint: &QuicEndpoint, address: &str, node: NodeId, cluster_id: u64) -> Result<()> {
    let deadline = std::time::Instant::now() + INITIAL_REGISTRATION_WAIT;
    loop {
        // Registered already (a restart during the first start), or not yet.
        let attempt = endpoint.register(address, cluster_id, |pong| {
            check_identity(pong, Some(node), cluster_id).or_else(|_| check_identity(pong, None, cluster_id))?;
            Ok(node)
        });
        match attempt.await {
            Ok(_) => return Ok(()),
            Err(e)
                if e.state == slicedb_common::SqlState::ConnectionFailure && std::time::Instant::now() < deadline =>
            {
                tracing::info!(address, "waiting for slice server: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(slicedb_common::err!(
                    ConnectionFailure,
                    "cannot register slice server {node} at {address}: {}",
                    e.message
                ))
            }
        }
    }
}
