//! Cluster statements: hash maps, nodes and slices.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use slicedb_catalog::{CatalogState, Change, NodeInfo};
use slicedb_common::{err, Error, NodeId, Result, TableId};
use slicedb_hashmap::{HashMap, Strategy};
use slicedb_storage::TableStats;
use slicedb_transport::quic::{check_identity, QuicClient};
use slicedb_transport::{SliceRequest, SliceResponse};

use crate::execute::batch_rows;
use crate::{CommandTag, Coordinator, Output};

fn node_list(nodes: &[NodeId]) -> String {
    nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
}

/// A new map over `nodes` by a strategy a user names (`range` unless given).
fn build_map(state: &CatalogState, name: &str, nodes: &[NodeId], strategy: Option<Strategy>) -> Result<HashMap> {
    match strategy.unwrap_or(Strategy::Range) {
        Strategy::Range => HashMap::range(name, nodes),
        Strategy::MinimalMove => HashMap::minimal_move(name, state.current_map()?.as_ref(), nodes),
        Strategy::Derived => Err(err!(
            InvalidParameterValue,
            "derived hash maps are made by DRAIN NODE and REBALANCE"
        )),
    }
}

impl Coordinator {
    /// `ADD NODE 'host:port' [WITHOUT HASH MAP] [STRATEGY s]` (seed 002, S2).
    ///
    /// Connects to the slice server (mutual TLS against the cluster CA),
    /// checks its protocol version and that it belongs to no other cluster,
    /// registers it under the next node id, and — unless `WITHOUT HASH MAP`
    /// — makes a new hash map over every node and makes it current. Tables keep
    /// their maps: nothing moves until `REDISTRIBUTE`, and no statement waits.
    pub async fn add_node(&self, address: &str, new_map: bool, strategy: Option<Strategy>) -> Result<Output> {
        let endpoint = self
            .endpoint
            .clone()
            .ok_or_else(|| err!(FeatureNotSupported, "this coordinator has no QUIC endpoint"))?;
        if address.parse::<std::net::SocketAddr>().is_err() && !address.contains(':') {
            return Err(err!(
                InvalidParameterValue,
                "node address \"{address}\" is not host:port"
            ));
        }
        let _membership = self.membership.lock().await;
        let state = self.catalog.snapshot();
        if let Some(n) = state.nodes.values().find(|n| n.address == address) {
            return Err(err!(DuplicateObject, "node {} already has address {address}", n.id));
        }
        let cluster_id = state.cluster_id();
        let unreachable = |e: Error| {
            if e.state == slicedb_common::SqlState::ConnectionFailure {
                err!(
                    ConnectionFailure,
                    "cannot reach slice server at {address}: {}",
                    e.message
                )
            } else {
                e
            }
        };
        let node = endpoint
            .register(address, cluster_id, |pong| match pong {
                // A registration interrupted before the catalog recorded it
                // is resumed under the id it got.
                SliceResponse::Pong {
                    node_id: Some(n),
                    cluster_id: Some(c),
                    ..
                } if *c == cluster_id && !state.nodes.contains_key(n) && *n >= state.next_node_id() => Ok(*n),
                _ => {
                    check_identity(pong, None, cluster_id)?;
                    Ok(state.next_node_id())
                }
            })
            .await
            .map_err(unreachable)?;
        let mut map_name = None;
        self.catalog.update(|state| {
            let mut changes = vec![Change::PutNode(NodeInfo {
                id: node,
                address: address.to_string(),
                capacity_mb: None,
            })];
            if new_map {
                let mut nodes: Vec<NodeId> = state.nodes.keys().copied().collect();
                nodes.push(node);
                let name = state.unused_map_name();
                let map = build_map(state, &name, &nodes, strategy)?;
                changes.push(Change::PutHashMap(map));
                changes.push(Change::SetCurrentMap(name.clone()));
                map_name = Some(name);
            }
            Ok(changes)
        })?;
        self.cluster
            .add(Arc::new(QuicClient::new(node, address, cluster_id, endpoint.clone())));
        match &map_name {
            Some(m) => tracing::info!(node, address, "added node {node}; hash map {m} is now current"),
            None => tracing::info!(node, address, "added node {node} without a new hash map"),
        }
        Ok(Output::Command(CommandTag::new("ADD NODE")))
    }

    /// `REMOVE NODE n`: only once no table's hash map, nor the current map,
    /// gives it buckets. Unused maps that name it are dropped with it.
    pub async fn remove_node(&self, node: NodeId) -> Result<Output> {
        let _membership = self.membership.lock().await;
        let names = |maps: &[&HashMap]| maps.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");
        self.catalog.update(|state| {
            if !state.nodes.contains_key(&node) {
                return Err(err!(UndefinedObject, "node {node} does not exist"));
            }
            let naming: Vec<&HashMap> = state
                .hash_maps
                .values()
                .map(|m| m.as_ref())
                .filter(|m| m.nodes.contains(&node) || m.bucket_counts().contains_key(&node))
                .collect();
            let bound: Vec<&HashMap> = naming
                .iter()
                .copied()
                .filter(|m| !state.tables_on_map(&m.name).is_empty() || !state.jobs_using_map(&m.name).is_empty())
                .collect();
            if !bound.is_empty() {
                return Err(err!(
                    DependentObjectsStillExist,
                    "cannot remove node {node}: tables are bound to hash maps that place buckets on it ({}); redistribute them first",
                    names(&bound)
                ));
            }
            if let Some(current) = naming.iter().find(|m| Some(m.name.as_str()) == state.current_map_name()) {
                return Err(err!(
                    ObjectInUse,
                    "cannot remove node {node}: the current hash map {} places buckets on it; SET CURRENT HASH MAP to another first",
                    current.name
                ));
            }
            let mut changes: Vec<Change> = naming.iter().map(|m| Change::DropHashMap(m.name.clone())).collect();
            changes.push(Change::RemoveNode(node));
            Ok(changes)
        })?;
        self.cluster.remove(node);
        tracing::info!(node, "removed node {node}");
        Ok(Output::Command(CommandTag::new("REMOVE NODE")))
    }

    /// `CREATE HASH MAP name [ON NODES (…)] [STRATEGY …] [AS CURRENT]`.
    pub fn create_hash_map(
        &self,
        name: &str,
        nodes: Option<Vec<NodeId>>,
        strategy: Option<Strategy>,
        as_current: bool,
    ) -> Result<Output> {
        self.catalog.update(|state| {
            if state.hash_maps.contains_key(name) {
                return Err(err!(DuplicateObject, "hash map \"{name}\" already exists"));
            }
            let nodes = nodes.clone().unwrap_or_else(|| state.nodes.keys().copied().collect());
            for n in &nodes {
                if !state.nodes.contains_key(n) {
                    return Err(err!(UndefinedObject, "node {n} does not exist"));
                }
            }
            let map = build_map(state, name, &nodes, strategy)?;
            let mut changes = vec![Change::PutHashMap(map)];
            if as_current {
                changes.push(Change::SetCurrentMap(name.to_string()));
            }
            Ok(changes)
        })?;
        Ok(Output::Command(CommandTag::new("CREATE HASH MAP")))
    }

    pub fn set_current_hash_map(&self, name: &str) -> Result<Output> {
        self.catalog.update(|state| {
            state.hash_map(name)?;
            Ok(vec![Change::SetCurrentMap(name.to_string())])
        })?;
        Ok(Output::Command(CommandTag::new("SET CURRENT HASH MAP")))
    }

    pub fn drop_hash_map(&self, name: &str, if_exists: bool) -> Result<Output> {
        self.catalog.update(|state| {
            if !state.hash_maps.contains_key(name) {
                if if_exists {
                    return Ok(vec![]);
                }
                return Err(err!(UndefinedObject, "hash map \"{name}\" does not exist"));
            }
            let bound = state.tables_on_map(name);
            if !bound.is_empty() {
                let names: Vec<&str> = bound.iter().map(|t| t.name.as_str()).collect();
                return Err(err!(
                    DependentObjectsStillExist,
                    "cannot drop hash map \"{name}\": tables are bound to it ({})",
                    names.join(", ")
                ));
            }
            if state.current_map_name() == Some(name) {
                return Err(err!(
                    ObjectInUse,
                    "cannot drop hash map \"{name}\": it is the current hash map"
                ));
            }
            if let Some(j) = state.jobs_using_map(name).first() {
                return Err(err!(
                    ObjectInUse,
                    "cannot drop hash map \"{name}\": redistribution {} moves table \"{}\" with it",
                    j.id,
                    j.table
                ));
            }
            Ok(vec![Change::DropHashMap(name.to_string())])
        })?;
        Ok(Output::Command(CommandTag::new("DROP HASH MAP")))
    }

    /// `SHOW HASH MAPS`: name, nodes, strategy, current, tables bound.
    pub fn show_hash_maps(&self) -> Result<Output> {
        let s = self.catalog.snapshot();
        let current = s.current_map_name().unwrap_or_default().to_string();
        let maps: Vec<&Arc<HashMap>> = s.hash_maps.values().collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("nodes", DataType::Utf8, false),
            Field::new("strategy", DataType::Utf8, false),
            Field::new("current", DataType::Boolean, false),
            Field::new("tables", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(maps.iter().map(|m| m.name.clone()))),
            Arc::new(StringArray::from_iter_values(maps.iter().map(|m| node_list(&m.nodes)))),
            Arc::new(StringArray::from_iter_values(maps.iter().map(|m| m.strategy.name()))),
            Arc::new(BooleanArray::from_iter(maps.iter().map(|m| Some(m.name == current)))),
            Arc::new(Int64Array::from_iter_values(
                maps.iter().map(|m| s.tables_on_map(&m.name).len() as i64),
            )),
        ];
        batch_rows(RecordBatch::try_new(schema, columns)?)
    }

    /// `SHOW HASH MAP m`: bucket runs and their owner.
    pub fn show_hash_map(&self, name: &str) -> Result<Output> {
        let map = self.catalog.snapshot().hash_map(name)?;
        let ranges = map.ranges();
        let schema = Arc::new(Schema::new(vec![
            Field::new("first_bucket", DataType::Int64, false),
            Field::new("last_bucket", DataType::Int64, false),
            Field::new("buckets", DataType::Int64, false),
            Field::new("node", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(ranges.iter().map(|r| r.start as i64))),
            Arc::new(Int64Array::from_iter_values(ranges.iter().map(|r| r.end as i64))),
            Arc::new(Int64Array::from_iter_values(ranges.iter().map(|r| r.len() as i64))),
            Arc::new(Int64Array::from_iter_values(ranges.iter().map(|r| r.node as i64))),
        ];
        batch_rows(RecordBatch::try_new(schema, columns)?)
    }

    /// Asks one slice server for its rows and bytes of `tables`.
    pub(crate) async fn node_stats(&self, node: NodeId, tables: Vec<TableId>) -> Result<BTreeMap<TableId, TableStats>> {
        match self
            .cluster
            .client(node)?
            .call(SliceRequest::TableStats { table_ids: tables })
            .await?
        {
            SliceResponse::TableStats(stats) => Ok(stats.into_iter().collect()),
            other => Err(Error::internal(format!("unexpected stats response {other:?}"))),
        }
    }

    /// `SHOW NODES`: id, address, state, buckets (in the current map), rows,
    /// bytes, capacity_gb.
    pub async fn show_nodes(&self) -> Result<Output> {
        let s = self.catalog.snapshot();
        let current = s.current_map().ok();
        let tables: Vec<TableId> = s.tables.values().map(|t| t.id).collect();
        let mut rows = Vec::new();
        for node in s.nodes.values() {
            let (state, rows_n, bytes) = match self.node_stats(node.id, tables.clone()).await {
                Ok(stats) => (
                    "up",
                    stats.values().map(|t| t.rows as i64).sum::<i64>(),
                    stats.values().map(|t| t.bytes as i64).sum::<i64>(),
                ),
                Err(_) => ("down", 0, 0),
            };
            let buckets = current
                .as_ref()
                .and_then(|m| m.bucket_counts().get(&node.id).copied())
                .unwrap_or(0) as i64;
            let capacity = node.capacity_mb.map(|mb| mb as f64 / 1024.0);
            rows.push((
                node.id as i64,
                node.address.clone(),
                state,
                buckets,
                rows_n,
                bytes,
                capacity,
            ));
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("address", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("buckets", DataType::Int64, false),
            Field::new("rows", DataType::Int64, false),
            Field::new("bytes", DataType::Int64, false),
            Field::new("capacity_gb", DataType::Float64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.clone()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.5))),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.6))),
        ];
        batch_rows(RecordBatch::try_new(schema, columns)?)
    }

    /// `SHOW SLICES [FOR t]`: per table and slice server, the map's buckets
    /// there and the rows and bytes stored.
    pub async fn show_slices(&self, table: Option<&str>) -> Result<Output> {
        let s = self.catalog.snapshot();
        let tables = match table {
            Some(t) => vec![s.table(t)?],
            None => s.tables.values().cloned().collect(),
        };
        let mut per_node: BTreeMap<NodeId, Vec<TableId>> = BTreeMap::new();
        for t in &tables {
            for n in &s.table_map(t)?.nodes {
                per_node.entry(*n).or_default().push(t.id);
            }
        }
        let mut stats: BTreeMap<(TableId, NodeId), TableStats> = BTreeMap::new();
        for (node, ids) in per_node {
            for (t, st) in self.node_stats(node, ids).await? {
                stats.insert((t, node), st);
            }
        }
        let mut rows = Vec::new();
        for t in &tables {
            let map = s.table_map(t)?;
            for (node, buckets) in map.bucket_counts() {
                let st = stats.get(&(t.id, node)).copied().unwrap_or_default();
                rows.push((
                    t.name.clone(),
                    map.name.clone(),
                    node as i64,
                    buckets as i64,
                    st.rows as i64,
                    st.bytes as i64,
                ));
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("table", DataType::Utf8, false),
            Field::new("hash_map", DataType::Utf8, false),
            Field::new("node", DataType::Int64, false),
            Field::new("buckets", DataType::Int64, false),
            Field::new("rows", DataType::Int64, false),
            Field::new("bytes", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.clone()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.clone()))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.5))),
        ];
        batch_rows(RecordBatch::try_new(schema, columns)?)
    }
}
