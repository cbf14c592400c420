//! Global secondary indexes: `CREATE [UNIQUE] INDEX`, `UNIQUE`
//! constraints, `DROP INDEX`.
//!
//! An index is part of its table's definition ([`IndexDef`]); its entries
//! are stored on the slice servers like rows of a table of their own,
//! hash-distributed by the indexed values over the table's hash map
//! ([`IndexDef::entry_table`]). Every writer keeps them in step with the
//! rows in the same transaction (`planner::write::RowRouter`), and the
//! planner reads them for equalities on the indexed columns
//! (`planner::index_lookup`).
//!
//! A build (`add_index`) holds the table's write gates for its whole
//! length, as PostgreSQL's `CREATE INDEX` holds a lock that blocks writers:
//!
//! 1. take the gates; if a transaction that wrote to the table is still
//!    open, let go, wait for it to end (up to [`OPEN_WRITERS_LIMIT`]) and
//!    start over, so that no uncommitted row escapes the back-fill;
//! 2. publish the index as *building* (a coordinator that restarts drops
//!    such an index: [`Coordinator::drop_unfinished_indexes`]);
//! 3. in a transaction of its own, read every row at its snapshot and write
//!    the entries (a unique index meets a duplicate as 23505 and the build
//!    fails, leaving no index);
//! 4. commit, publish the index as usable from the next timestamp, and let
//!    the writers go: they find it in the catalog and maintain it.
//!
//! Readers are never held up. Writers wait for the build (`CONCURRENTLY` is
//! accepted but builds the same way).

use std::time::Duration;

use datafusion::sql::sqlparser::ast;
use slicedb_catalog::Change;
use slicedb_common::{err, Datum, IndexDef, Result, TableDef};

use crate::ddl::{normalize, relation_name};
use crate::{CommandTag, Coordinator, Output};

/// How long a build waits for transactions that wrote to its table to end.
pub const OPEN_WRITERS_LIMIT: Duration = Duration::from_secs(30);

/// What to build: an index or a `UNIQUE` constraint.
#[derive(Debug, Clone)]
pub struct IndexSpec {
    pub table: String,
    pub name: Option<String>,
    pub columns: Vec<String>,
    pub unique: bool,
    pub constraint: bool,
    pub if_not_exists: bool,
}

/// The column a key or index element names (expressions are refused).
pub fn index_column_name(c: &ast::IndexColumn) -> Result<String> {
    match &c.column.expr {
        ast::Expr::Identifier(i) => Ok(normalize(i)),
        other => Err(err!(
            FeatureNotSupported,
            "an index on expression {other} is not supported"
        )),
    }
}

/// A `UNIQUE` constraint of CREATE or ALTER TABLE as an index to build.
pub fn unique_spec(table: &str, u: &ast::UniqueConstraint, column: Option<&str>) -> Result<IndexSpec> {
    if matches!(u.nulls_distinct, ast::NullsDistinctOption::NotDistinct) {
        return Err(err!(FeatureNotSupported, "UNIQUE NULLS NOT DISTINCT is not supported"));
    }
    if u.characteristics.as_ref().is_some_and(|c| c.deferrable == Some(true)) {
        return Err(err!(
            FeatureNotSupported,
            "DEFERRABLE unique constraints are not supported"
        ));
    }
    let columns = match column {
        Some(c) => vec![c.to_string()],
        None => u.columns.iter().map(index_column_name).collect::<Result<_>>()?,
    };
    Ok(IndexSpec {
        table: table.to_string(),
        name: u.name.as_ref().or(u.index_name.as_ref()).map(normalize),
        columns,
        unique: true,
        constraint: true,
        if_not_exists: false,
    })
}

/// The name PostgreSQL gives an unnamed index: `t_a_b_key` for a unique
/// constraint, `t_a_b_idx` for an index, numbered when taken.
pub fn default_index_name(
    state: &slicedb_catalog::CatalogState,
    table: &str,
    columns: &[String],
    constraint: bool,
) -> String {
    let base = format!(
        "{table}_{}_{}",
        columns.join("_"),
        if constraint { "key" } else { "idx" }
    );
    (0..)
        .map(|i| match i {
            0 => base.clone(),
            i => format!("{base}{i}"),
        })
        .find(|n| !state.relation_exists(n))
        .unwrap_or(base)
}

/// Index definitions for the `UNIQUE` constraints of a table being created
/// (it has no rows: nothing to back-fill); ids follow `first_id`.
pub fn new_table_indexes(
    state: &slicedb_catalog::CatalogState,
    table: &TableDef,
    specs: &[IndexSpec],
) -> Result<Vec<IndexDef>> {
    let mut out: Vec<IndexDef> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let columns = resolve_columns(table, &spec.columns)?;
        if spec.unique && table.has_primary_key() && columns == table.primary_key {
            // The primary key already makes these columns unique.
            continue;
        }
        let name = match &spec.name {
            Some(n) => n.clone(),
            None => {
                let mut n = default_index_name(state, &table.name, &spec.columns, spec.constraint);
                let mut k = 1;
                while out.iter().any(|o| o.name == n) {
                    n = format!(
                        "{}{k}",
                        default_index_name(state, &table.name, &spec.columns, spec.constraint)
                    );
                    k += 1;
                }
                n
            }
        };
        if state.relation_exists(&name) || out.iter().any(|o| o.name == name) || name == table.name {
            return Err(err!(DuplicateTable, "relation \"{name}\" already exists"));
        }
        out.push(IndexDef {
            name,
            id: table.id + 1 + i as u32,
            columns,
            unique: spec.unique,
            constraint: spec.constraint,
            building: false,
            usable_from: 0,
        });
    }
    Ok(out)
}

fn resolve_columns(table: &TableDef, columns: &[String]) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(columns.len());
    for c in columns {
        let i = table
            .column_index(c)
            .ok_or_else(|| err!(UndefinedColumn, "column \"{c}\" does not exist"))?;
        if out.contains(&i) {
            return Err(err!(DuplicateColumn, "column \"{c}\" appears twice in index"));
        }
        out.push(i);
    }
    if out.is_empty() {
        return Err(err!(SyntaxError, "an index needs at least one column"));
    }
    Ok(out)
}

impl Coordinator {
    /// `CREATE [UNIQUE] INDEX`.
    pub async fn create_index(&self, session: &crate::Session, ci: ast::CreateIndex) -> Result<Output> {
        if ci.predicate.is_some() {
            return Err(err!(
                FeatureNotSupported,
                "partial indexes (CREATE INDEX … WHERE) are not supported"
            ));
        }
        if !ci.include.is_empty() {
            return Err(err!(FeatureNotSupported, "CREATE INDEX … INCLUDE is not supported"));
        }
        if ci.nulls_distinct == Some(false) {
            return Err(err!(FeatureNotSupported, "NULLS NOT DISTINCT is not supported"));
        }
        if let Some(using) = &ci.using {
            let kind = using.to_string().to_lowercase();
            if kind != "btree" && kind != "hash" {
                return Err(err!(
                    FeatureNotSupported,
                    "index access method \"{kind}\" is not supported"
                ));
            }
        }
        let table = relation_name(&ci.table_name)?;
        let columns: Vec<String> = ci.columns.iter().map(index_column_name).collect::<Result<_>>()?;
        let spec = IndexSpec {
            table,
            name: ci.name.as_ref().map(relation_name).transpose()?,
            columns,
            unique: ci.unique,
            constraint: false,
            if_not_exists: ci.if_not_exists,
        };
        self.add_index(Some(session), spec).await?;
        Ok(Output::Command(CommandTag::new("CREATE INDEX")))
    }

    /// Builds an index on a table that may hold rows and take writes (see
    /// the module comment). Returns `false` when it existed already (`IF
    /// NOT EXISTS`).
    pub async fn add_index(&self, session: Option<&crate::Session>, spec: IndexSpec) -> Result<bool> {
        let snapshot = self.catalog.snapshot();
        let table = snapshot.table(&spec.table)?;
        if let Some(name) = &spec.name {
            if snapshot.relation_exists(name) {
                if spec.if_not_exists {
                    tracing::info!("relation \"{name}\" already exists, skipping");
                    return Ok(false);
                }
                return Err(err!(DuplicateTable, "relation \"{name}\" already exists"));
            }
        }
        let columns = resolve_columns(&table, &spec.columns)?;
        if spec.unique && table.has_primary_key() && columns == table.primary_key && spec.constraint {
            return Ok(false);
        }
        self.check_not_moving(&table.name, "index")?;
        let open = session.and_then(|s| s.txn.as_ref());
        let own = open.map(|t| t.id()).unwrap_or(0);
        if let Some(t) = open {
            if t.writes.lock().is_ok_and(|w| w.placed.contains_key(&table.id)) {
                return Err(err!(
                    FeatureNotSupported,
                    "cannot index \"{}\" in a transaction that wrote to it",
                    table.name
                ));
            }
        }
        // 1. The gates, with no open writer of the table behind them.
        let gates = self.holds.current(table.id);
        let mut attempts = 0;
        let _hold = loop {
            let hold = gates.hold(0).await;
            let writers = self.txns.open_writers(table.id, own)?;
            if writers.is_empty() {
                break hold;
            }
            drop(hold);
            attempts += 1;
            if attempts > 100 {
                return Err(err!(
                    LockNotAvailable,
                    "could not create index on \"{}\": transactions keep writing to it",
                    table.name
                ));
            }
            self.txns
                .wait_finished(&writers, OPEN_WRITERS_LIMIT, "could not create index")
                .await?;
        };
        // 2. Publish it as building, under the gates.
        let mut index = None;
        self.catalog.update(|state| {
            let mut t = (*state.table(&spec.table)?).clone();
            if t.id != table.id {
                return Err(err!(UndefinedTable, "relation \"{}\" was dropped", spec.table));
            }
            crate::redistribute::not_moving(state, &t.name, "index")?;
            let name = match &spec.name {
                Some(n) => n.clone(),
                None => default_index_name(state, &t.name, &spec.columns, spec.constraint),
            };
            if state.relation_exists(&name) {
                return Err(err!(DuplicateTable, "relation \"{name}\" already exists"));
            }
            let def = IndexDef {
                name,
                id: state.next_table_id(),
                columns: resolve_columns(&t, &spec.columns)?,
                unique: spec.unique,
                constraint: spec.constraint,
                building: true,
                usable_from: 0,
            };
            t.indexes.push(def.clone());
            index = Some(def);
            Ok(vec![Change::PutTable(t)])
        })?;
        let index = index.ok_or_else(|| slicedb_common::Error::internal("index not published"))?;
        // 3 and 4.
        match self.backfill(&spec.table, &index).await {
            Ok(()) => {
                slicedb_common::failpoint::failpoint_async("index-build-before-ready").await;
                let usable_from = self.txns.now()?;
                self.catalog.update(|state| {
                    let mut t = (*state.table(&spec.table)?).clone();
                    for i in t.indexes.iter_mut().filter(|i| i.id == index.id) {
                        i.building = false;
                        i.usable_from = usable_from;
                    }
                    Ok(vec![Change::PutTable(t)])
                })?;
                Ok(true)
            }
            Err(e) => {
                self.forget_index(&spec.table, &index).await;
                Err(match e.state {
                    slicedb_common::SqlState::UniqueViolation => err!(
                        UniqueViolation,
                        "could not create unique index \"{}\": a key value of ({}) is duplicated",
                        index.name,
                        spec.columns.join(", ")
                    ),
                    _ => e,
                })
            }
        }
    }

    /// Writes the entries of every row of `table` into `index`, in a
    /// transaction of its own, holding the table's gates.
    async fn backfill(&self, table: &str, index: &IndexDef) -> Result<()> {
        use futures::StreamExt;

        let source = self.slice_table(table)?;
        let def = source.table.clone();
        let mut txn = self.txns.begin().await?;
        let fill = async {
            let stmt = txn.statement();
            let mut rows = self.rows_with_keys(&source, stmt.clone()).await?;
            let router = slicedb_planner::write::RowRouter::new(source.clone(), stmt).holding_gates();
            let types = def.column_types();
            while let Some(batch) = rows.next().await {
                let batch = batch?;
                let keys = crate::alter::row_keys(&batch, types.len())?;
                let mut entries = Vec::with_capacity(batch.num_rows());
                for i in 0..batch.num_rows() {
                    let row: Vec<Datum> = index
                        .columns
                        .iter()
                        .map(|c| Datum::from_array(batch.column(*c).as_ref(), i, types[*c]))
                        .collect::<Result<_>>()?;
                    let full: Vec<Datum> = (0..types.len())
                        .map(|c| match index.columns.iter().position(|x| *x == c) {
                            Some(p) => row[p].clone(),
                            None => Datum::Null,
                        })
                        .collect();
                    entries.push((keys.value(i).to_vec(), full));
                }
                router.backfill(index, &entries).await?;
            }
            Ok::<(), slicedb_common::Error>(())
        };
        match fill.await {
            Ok(()) => {
                slicedb_common::failpoint::failpoint_async("index-build-before-commit").await;
                self.txns.commit_holding_gates(&mut txn).await
            }
            Err(e) => {
                self.txns.rollback(&mut txn).await;
                Err(e)
            }
        }
    }

    /// Removes an index from its table's definition, then its entries.
    async fn forget_index(&self, table: &str, index: &IndexDef) {
        let map = self.catalog.update(|state| {
            let Ok(t) = state.table(table) else {
                return Ok(vec![]);
            };
            let mut t = (*t).clone();
            t.indexes.retain(|i| i.id != index.id);
            Ok(vec![Change::PutTable(t)])
        });
        if let Err(e) = map {
            tracing::warn!("could not drop index \"{}\": {e}", index.name);
            return;
        }
        let map_name = self.catalog.snapshot().table(table).map(|t| t.hash_map.clone());
        if let Ok(m) = map_name {
            if let Err(e) = self.delete_table_rows(index.id, &m).await {
                tracing::warn!("entries of index \"{}\" stay behind: {e}", index.name);
            }
        }
    }

    /// `DROP INDEX [IF EXISTS] name, …`. An index behind a `UNIQUE`
    /// constraint goes with `ALTER TABLE … DROP CONSTRAINT` only.
    pub async fn drop_indexes(&self, names: &[String], if_exists: bool) -> Result<Output> {
        for name in names {
            let snapshot = self.catalog.snapshot();
            let Some((table, index)) = snapshot.index(name) else {
                if if_exists {
                    continue;
                }
                return Err(err!(UndefinedObject, "index \"{name}\" does not exist"));
            };
            if index.constraint {
                return Err(err!(
                    DependentObjectsStillExist,
                    "cannot drop index {name} because constraint {name} on table {} requires it",
                    table.name
                ));
            }
            self.drop_index(&table.name.clone(), &index.clone()).await?;
        }
        Ok(Output::Command(CommandTag::new("DROP INDEX")))
    }

    /// Drops one index: out of the catalog under the table's gates (no
    /// writer is between reading the catalog and writing entries), then
    /// its entries.
    pub(crate) async fn drop_index(&self, table: &str, index: &IndexDef) -> Result<()> {
        let id = self.catalog.snapshot().table(table)?.id;
        let gates = self.holds.current(id);
        let hold = gates.hold(0).await;
        self.catalog.update(|state| {
            let mut t = (*state.table(table)?).clone();
            crate::redistribute::not_moving(state, &t.name, "drop an index of")?;
            t.indexes.retain(|i| i.id != index.id);
            crate::foreign_key::check_still_referencable(state, &t, &index.name)?;
            Ok(vec![Change::PutTable(t)])
        })?;
        drop(hold);
        let map = self.catalog.snapshot().table(table)?.hash_map.clone();
        self.delete_table_rows(index.id, &map).await
    }

    /// Drops the indexes a build left unfinished (the coordinator stopped
    /// during it): out of the catalog at once, their entries in the
    /// background (ids are never reused, so entries left behind by a
    /// failure here are unreachable). Called at start.
    pub fn drop_unfinished_indexes(&self) -> Result<()> {
        let mut dropped: Vec<(String, slicedb_common::TableId, String)> = Vec::new();
        self.catalog.update(|state| {
            let mut changes = Vec::new();
            for t in state.tables.values().filter(|t| t.indexes.iter().any(|i| i.building)) {
                let mut t = (**t).clone();
                for i in t.indexes.iter().filter(|i| i.building) {
                    dropped.push((i.name.clone(), i.id, t.hash_map.clone()));
                }
                t.indexes.retain(|i| !i.building);
                changes.push(Change::PutTable(t));
            }
            Ok(changes)
        })?;
        for (name, id, map) in dropped {
            tracing::info!("dropped index \"{name}\", whose build did not finish");
            let (catalog, cluster) = (self.catalog.clone(), self.cluster.clone());
            tokio::spawn(async move {
                let Ok(map) = catalog.snapshot().hash_map(&map) else {
                    return;
                };
                for node in &map.nodes {
                    let request = slicedb_transport::SliceRequest::DropTable { table_id: id };
                    let sent = match cluster.client(*node) {
                        Ok(c) => c.call(request).await.map(|_| ()),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = sent {
                        tracing::warn!("entries of index \"{name}\" stay on node {node}: {e}");
                    }
                }
            });
        }
        Ok(())
    }
}
