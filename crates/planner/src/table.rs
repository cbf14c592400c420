//! [`SliceTable`]: the DataFusion `TableProvider` of a distributed table.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::datasource::{provider_as_source, TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{cast, col, Expr, LogicalPlanBuilder, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use slicedb_catalog::Catalog;
use slicedb_codec::key::{bucket_of_row_key, row_key};
use slicedb_codec::ReadAt;
use slicedb_common::{Error, NodeId, TableDef};
use slicedb_hashmap::{Bucket, HashMap};
use slicedb_transport::message::ROW_KEY_COLUMN;
use slicedb_transport::{Cluster, Predicate, ScanRequest};

use crate::index_lookup::IndexLookupExec;
use crate::pushdown::{index_key_combinations, pins_expression_index, point_keys, prune_buckets, to_predicate};
use crate::scan::{SliceScan, SliceScanExec};
use crate::txn::{Cutovers, StatementTxn};
use crate::write::{ReturningSink, SliceDeleteExec, SliceInsertExec, SliceUpdateExec};
use crate::write_hold::WriteHolds;

/// Rows per record batch a slice server sends.
pub const SCAN_BATCH_ROWS: usize = 8192;

/// What writers route by when they send, rather than when they were
/// planned: the catalog's latest placement of the table, read under the
/// table's write gates (a redistribution may cut buckets over in between).
pub struct LiveRouting {
    pub catalog: Arc<Catalog>,
    pub holds: Arc<WriteHolds>,
    pub cutovers: Arc<Cutovers>,
}

impl LiveRouting {
    /// The catalog's placement of `table` now.
    pub fn placement(&self, table: &TableDef) -> Result<Arc<HashMap>, Error> {
        let snapshot = self.catalog.snapshot();
        let now = self.live_table(table)?;
        snapshot.table_map(&now)
    }

    /// The catalog's definition of `table` now (its indexes may have
    /// changed since planning).
    pub fn live_table(&self, table: &TableDef) -> Result<Arc<TableDef>, Error> {
        let snapshot = self.catalog.snapshot();
        match snapshot.tables.get(&table.name) {
            // Rows keyed as planned: a primary key added since (which
            // rewrote every row under its key) makes the writer start over.
            Some(now) if now.id == table.id && now.primary_key != table.primary_key => Err(slicedb_common::err!(
                SerializationFailure,
                "the primary key of \"{}\" changed during the statement",
                table.name
            )),
            Some(now) if now.id == table.id => Ok(now.clone()),
            // Rewritten into new storage (`ALTER COLUMN … TYPE`): the rows
            // were built for the old columns; the statement can start over.
            Some(_) => Err(slicedb_common::err!(
                SerializationFailure,
                "relation \"{}\" was rewritten during the statement",
                table.name
            )),
            None => Err(slicedb_common::err!(
                UndefinedTable,
                "relation \"{}\" was dropped during the statement",
                table.name
            )),
        }
    }
}

/// A distributed table as DataFusion sees it, bound to its hash map (or, in
/// the middle of a redistribution, to its placement at planning time).
#[derive(Clone)]
pub struct SliceTable {
    pub table: Arc<TableDef>,
    pub map: Arc<HashMap>,
    pub cluster: Arc<Cluster>,
    pub routing: Arc<LiveRouting>,
    schema: SchemaRef,
    /// The planned DEFAULT and CHECK expressions ([`SliceTable::with_constraints`]).
    pub constraints: Arc<Constraints>,
}

/// A table's DEFAULT expressions (by column) and CHECK constraints,
/// planned from the catalog's SQL text.
#[derive(Debug, Default)]
pub struct Constraints {
    pub defaults: Vec<Option<Expr>>,
    pub checks: Vec<(String, Expr)>,
}

impl Constraints {
    /// Plans `table`'s defaults and checks with `state`'s functions.
    pub fn plan(table: &TableDef, state: &datafusion::execution::SessionState) -> Result<Constraints, Error> {
        let mut out = Constraints::default();
        if table.columns.iter().all(|c| c.default.is_none()) && table.checks.is_empty() {
            return Ok(out);
        }
        let empty = datafusion::common::DFSchema::empty();
        for c in &table.columns {
            out.defaults.push(match &c.default {
                Some(sql) => Some(state.create_logical_expr(sql, &empty)?),
                None => None,
            });
        }
        let schema = constraint_schema(table)?;
        for check in &table.checks {
            out.checks
                .push((check.name.clone(), state.create_logical_expr(&check.expr, &schema)?));
        }
        Ok(out)
    }
}

/// The schema CHECK constraints are planned over: the table's columns,
/// qualified by its name, all nullable (NULL passes a CHECK).
pub fn constraint_schema(table: &TableDef) -> Result<datafusion::common::DFSchema, Error> {
    let schema = Schema::new(
        table
            .columns
            .iter()
            .map(|c| c.sql_type.field(&c.name, true))
            .collect::<Vec<_>>(),
    );
    Ok(datafusion::common::DFSchema::try_from_qualified_schema(
        table.name.as_str(),
        &schema,
    )?)
}

impl std::fmt::Debug for SliceTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SliceTable({} on {})", self.table.name, self.map.name)
    }
}

impl SliceTable {
    pub fn new(table: Arc<TableDef>, map: Arc<HashMap>, cluster: Arc<Cluster>, routing: Arc<LiveRouting>) -> Self {
        // Every column is nullable as DataFusion sees it: NOT NULL is checked
        // row by row when written (23502, after defaults are applied, as
        // PostgreSQL does), and a non-nullable field would make DataFusion
        // fail on the NULLs PostgreSQL produces from such a column (a
        // scalar subquery that finds no row, the column of an outer join).
        let schema = crate::write::nullable_schema(&table);
        SliceTable {
            table,
            map,
            cluster,
            routing,
            schema,
            constraints: Arc::default(),
        }
    }

    /// The same table with its DEFAULT and CHECK expressions planned.
    pub fn with_constraints(mut self, state: &datafusion::execution::SessionState) -> Result<Self, Error> {
        self.constraints = Arc::new(Constraints::plan(&self.table, state)?);
        Ok(self)
    }

    /// The CHECK constraints as physical expressions over the table's columns.
    pub fn physical_checks(&self, state: &dyn Session) -> DfResult<Vec<(String, Arc<dyn PhysicalExpr>)>> {
        if self.constraints.checks.is_empty() {
            return Ok(Vec::new());
        }
        let schema = constraint_schema(&self.table).map_err(Error::into_datafusion)?;
        self.constraints
            .checks
            .iter()
            .map(|(name, e)| Ok((name.clone(), state.create_physical_expr(e.clone(), &schema)?)))
            .collect()
    }

    /// The same table with each row's key exposed as an extra last column
    /// (UPDATE and DELETE address rows by it).
    pub fn with_row_key(&self) -> Self {
        let mut fields: Vec<Field> = self.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(ROW_KEY_COLUMN, DataType::Binary, false));
        SliceTable {
            schema: Arc::new(Schema::new(fields)),
            ..self.clone()
        }
    }

    /// Splits a scan at snapshot `at` into one request per slice server
    /// that owns a needed bucket under placement `map`.
    pub fn plan_scans(
        &self,
        map: &HashMap,
        at: ReadAt,
        projection: &[usize],
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Vec<SliceScan> {
        let table = &self.table;
        let key_index = table.columns.len();
        let with_key = projection.contains(&key_index);
        let columns: Vec<usize> = projection.iter().copied().filter(|c| *c != key_index).collect();
        let predicates: Vec<Predicate> = filters.iter().filter_map(|f| to_predicate(f, table)).collect();
        let predicate = match predicates.len() {
            0 => None,
            1 => predicates.into_iter().next(),
            _ => Some(Predicate::And(predicates)),
        };
        let base = ScanRequest {
            table_id: table.id,
            column_types: table.column_types(),
            projection: columns,
            with_key,
            buckets: Vec::new(),
            keys: None,
            predicate,
            limit,
            batch_size: SCAN_BATCH_ROWS,
            at,
            missing: table.missing_values(),
            dropped: table.dropped.clone(),
        };

        // Point reads: every primary-key column pinned.
        if let Some(points) = point_keys(filters, table) {
            let mut per_node: BTreeMap<NodeId, (BTreeSet<Bucket>, Vec<Vec<u8>>)> = BTreeMap::new();
            for (bucket, pk) in points {
                if let Ok(k) = row_key(bucket, &pk) {
                    let e = per_node.entry(map.owner(bucket)).or_default();
                    e.0.insert(bucket);
                    e.1.push(k);
                }
            }
            return per_node
                .into_iter()
                .map(|(node, (buckets, keys))| SliceScan {
                    node,
                    bucket_count: buckets.len(),
                    request: ScanRequest {
                        keys: Some(keys),
                        ..base.clone()
                    },
                })
                .collect();
        }

        // Bucket pruning: the distribution key pinned to a few values.
        let mut per_node: BTreeMap<NodeId, Vec<(u16, u16)>> = BTreeMap::new();
        match prune_buckets(filters, table) {
            Some(buckets) => {
                for b in buckets {
                    per_node.entry(map.owner(b)).or_default().push((b, b));
                }
            }
            None => {
                for r in map.ranges() {
                    per_node.entry(r.node).or_default().push((r.start, r.end));
                }
            }
        }
        per_node
            .into_iter()
            .map(|(node, ranges)| SliceScan {
                node,
                bucket_count: ranges.iter().map(|(s, e)| (*e - *s) as usize + 1).sum(),
                request: ScanRequest {
                    buckets: ranges,
                    ..base.clone()
                },
            })
            .collect()
    }

    /// The index to read through, and the values to look up, when the
    /// filters pin every column of a usable index and the scan is not
    /// already a point read or a read of a few buckets. Indexes are taken
    /// from the catalog of the moment; one still being built, or finished
    /// after the snapshot, is not usable.
    fn index_lookup(
        &self,
        at: ReadAt,
        scans: &[SliceScan],
        filters: &[Expr],
    ) -> Option<(slicedb_common::IndexDef, Vec<Vec<slicedb_common::Datum>>)> {
        if scans.iter().any(|s| s.request.keys.is_some()) || prune_buckets(filters, &self.table).is_some() {
            return None;
        }
        let live = self.routing.live_table(&self.table).ok()?;
        live.indexes
            .iter()
            // A partial index lacks the rows its WHERE leaves out.
            .filter(|i| !i.building && i.predicate.is_empty() && i.usable_from <= at.ts)
            .filter_map(|i| Some((i.clone(), index_key_combinations(filters, &live, i)?)))
            .min_by_key(|(i, lookups)| (lookups.len(), !i.unique))
    }

    fn key_scan_plan(&self, filters: Vec<Expr>, exprs: Vec<Expr>) -> DfResult<datafusion::logical_expr::LogicalPlan> {
        let source = provider_as_source(Arc::new(self.with_row_key()));
        let mut builder = LogicalPlanBuilder::scan(self.table.name.as_str(), source, None)?;
        if let Some(predicate) = conjunction(filters) {
            builder = builder.filter(predicate)?;
        }
        builder.project(exprs)?.build()
    }
}

#[async_trait]
impl TableProvider for SliceTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        let i = self.table.column_index(column)?;
        self.constraints.defaults.get(i)?.as_ref()
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                // Inexact: DataFusion filters the rows again, so a filter
                // only an expression index reads (`lower(email) = …`) is
                // checked above the scan.
                if to_predicate(f, &self.table).is_some() || pins_expression_index(f, &self.table) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let projection = projection.unwrap_or(&all);
        // Slice servers return the key last; keep it last in the plan too.
        let key_index = self.table.columns.len();
        let mut ordered: Vec<usize> = projection.iter().copied().filter(|c| *c != key_index).collect();
        if projection.contains(&key_index) {
            ordered.push(key_index);
        }
        let schema = Arc::new(self.schema.project(&ordered)?);
        // Read at the statement's snapshot, by the placement of the moment
        // (which the snapshot must not predate: see `crate::txn`).
        let at = match state.config().get_extension::<StatementTxn>() {
            Some(txn) => txn.read,
            None => ReadAt::LATEST,
        };
        let map = self.routing.placement(&self.table).map_err(Error::into_datafusion)?;
        let scans = self.plan_scans(&map, at, &ordered, filters, limit);
        let buckets = scans.iter().flat_map(|s| {
            let ranges = s.request.buckets.iter().flat_map(|(a, b)| *a..=*b);
            let keys = s
                .request
                .keys
                .iter()
                .flatten()
                .filter_map(|k| bucket_of_row_key(k).ok());
            ranges.chain(keys)
        });
        self.routing
            .cutovers
            .check(self.table.id, &self.table.name, at.ts, buckets)
            .map_err(Error::into_datafusion)?;
        if scans.is_empty() {
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let exec: Arc<dyn ExecutionPlan> = match self.index_lookup(at, &scans, filters) {
            Some((index, lookups)) => {
                let mut rows = scans[0].request.clone();
                rows.buckets = Vec::new();
                rows.keys = None;
                Arc::new(IndexLookupExec::new(
                    self.table.clone(),
                    index,
                    map,
                    lookups,
                    rows,
                    schema,
                    self.cluster.clone(),
                ))
            }
            None => Arc::new(SliceScanExec::new(
                self.table.clone(),
                map,
                schema,
                scans,
                self.cluster.clone(),
            )),
        };
        if ordered == *projection {
            return Ok(exec);
        }
        // Restore the requested column order.
        let exprs = projection
            .iter()
            .map(|c| {
                let pos = ordered.iter().position(|o| o == c).unwrap_or(0);
                let name = self.schema.field(*c).name().clone();
                let e: Arc<dyn datafusion::physical_expr::PhysicalExpr> =
                    Arc::new(datafusion::physical_expr::expressions::Column::new(&name, pos));
                (e, name)
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(
            datafusion::physical_plan::projection::ProjectionExec::try_new(exprs, exec)?,
        ))
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(Error::unsupported(format!("{insert_op} is not supported")).into_datafusion());
        }
        let checks = self.physical_checks(state)?;
        let (input, project) = crate::write::take_volatile_projection(input);
        Ok(Arc::new(
            SliceInsertExec::insert(input, self.clone())
                .with_checks(checks)
                .with_projection(project),
        ))
    }

    async fn delete_from(&self, state: &dyn Session, filters: Vec<Expr>) -> DfResult<Arc<dyn ExecutionPlan>> {
        // With RETURNING, the deleted rows' values come along with their keys.
        let mut exprs = vec![col(ROW_KEY_COLUMN)];
        if state.config().get_extension::<ReturningSink>().is_some() {
            exprs.extend(self.table.columns.iter().map(|c| col(c.name.as_str())));
        }
        let plan = self.key_scan_plan(filters, exprs)?;
        let input = state.create_physical_plan(&plan).await?;
        Ok(Arc::new(SliceDeleteExec::delete(input, self.clone())))
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut exprs = vec![col(ROW_KEY_COLUMN)];
        for c in &self.table.columns {
            let value = assignments
                .iter()
                .find(|(name, _)| name == &c.name)
                .map(|(_, e)| e.clone())
                .unwrap_or_else(|| col(c.name.as_str()));
            exprs.push(cast(value, c.sql_type.arrow_type()).alias(c.name.as_str()));
        }
        let plan = self.key_scan_plan(filters, exprs)?;
        let input = state.create_physical_plan(&plan).await?;
        let checks = self.physical_checks(state)?;
        Ok(Arc::new(
            SliceUpdateExec::update(input, self.clone()).with_checks(checks),
        ))
    }
}
