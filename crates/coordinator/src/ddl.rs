//! DDL: tables and views in the catalog.
//!
//! `CREATE TABLE` binds the table to a hash map: the one named by `HASH
//! MAP`, else the current map (seed 002, S3). The distribution key is the
//! `DISTRIBUTED BY` list, else the first primary-key column, else the first
//! column (as Greenplum does), and a primary key must contain it (as Citus
//! requires), so that uniqueness can be checked inside one bucket.

use datafusion::sql::sqlparser::ast::{self, ColumnOption, ObjectName, ObjectType, TableConstraint};
use slicedb_catalog::{Change, ViewDef};
use slicedb_common::{err, ColumnDef, Result, SqlType, TableDef};
use slicedb_transport::SliceRequest;

use crate::{CommandTag, Coordinator, Output, SCHEMA};

/// An identifier as PostgreSQL folds it: lower case unless quoted.
pub fn normalize(ident: &ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The relation name of `name`, which may be qualified by the `public` schema.
pub fn relation_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| {
            p.as_ident()
                .map(normalize)
                .ok_or_else(|| err!(SyntaxError, "invalid name {name}"))
        })
        .collect::<Result<_>>()?;
    match parts.as_slice() {
        [table] => Ok(table.clone()),
        [schema, table] if schema == SCHEMA => Ok(table.clone()),
        [_, table] | [_, _, table] => Err(err!(
            InvalidParameterValue,
            "only the \"{SCHEMA}\" schema exists (in {table})"
        )),
        _ => Err(err!(SyntaxError, "invalid name {name}")),
    }
}

fn index_column_name(c: &ast::IndexColumn) -> Result<String> {
    match &c.column.expr {
        ast::Expr::Identifier(i) => Ok(normalize(i)),
        other => Err(err!(FeatureNotSupported, "key on expression {other} is not supported")),
    }
}

/// The relations a view's query names (folded like identifiers).
fn relations_of(sql: &str) -> Result<Vec<String>> {
    use std::ops::ControlFlow;
    let mut names = Vec::new();
    for stmt in crate::parser::parse(sql)? {
        if let crate::parser::Statement::Sql(s) = stmt {
            let _ = ast::visit_relations(s.as_ref(), |r| {
                if let Ok(n) = relation_name(r) {
                    names.push(n);
                }
                ControlFlow::<()>::Continue(())
            });
        }
    }
    Ok(names)
}

/// Would defining view `name` as `sql` make a view read itself, directly or
/// through other views? (Views are expanded when planned, so the stored
/// definitions are what must be followed.)
fn view_cycle(state: &slicedb_catalog::CatalogState, name: &str, sql: &str) -> Result<bool> {
    let mut pending = relations_of(sql)?;
    let mut seen = std::collections::BTreeSet::new();
    while let Some(r) = pending.pop() {
        if r == name {
            return Ok(true);
        }
        if seen.insert(r.clone()) {
            if let Some(view) = state.views.get(&r) {
                pending.extend(relations_of(&view.sql)?);
            }
        }
    }
    Ok(false)
}

impl Coordinator {
    pub async fn create_table(
        &self,
        create: ast::CreateTable,
        distributed_by: Option<Vec<String>>,
        hash_map: Option<String>,
    ) -> Result<Output> {
        if create.query.is_some() {
            return Err(err!(
                FeatureNotSupported,
                "CREATE TABLE … AS is not supported; create the table, then INSERT … SELECT"
            ));
        }
        if create.temporary {
            return Err(err!(FeatureNotSupported, "temporary tables are not supported"));
        }
        let name = relation_name(&create.name)?;
        let mut columns: Vec<ColumnDef> = Vec::new();
        let mut primary_key: Vec<String> = Vec::new();
        for c in &create.columns {
            let col_name = normalize(&c.name);
            if columns.iter().any(|x| x.name == col_name) {
                return Err(err!(DuplicateColumn, "column \"{col_name}\" specified more than once"));
            }
            let sql_type = SqlType::from_ast(&c.data_type)?;
            let mut nullable = true;
            for opt in &c.options {
                match &opt.option {
                    ColumnOption::Null => nullable = true,
                    ColumnOption::NotNull => nullable = false,
                    ColumnOption::PrimaryKey(_) => {
                        if !primary_key.is_empty() {
                            return Err(err!(
                                InvalidTableDefinition,
                                "multiple primary keys for table \"{name}\" are not allowed"
                            ));
                        }
                        primary_key.push(col_name.clone());
                        nullable = false;
                    }
                    other => {
                        return Err(err!(FeatureNotSupported, "column option {other} is not supported"));
                    }
                }
            }
            columns.push(ColumnDef {
                name: col_name,
                sql_type,
                nullable,
            });
        }
        if columns.is_empty() {
            return Err(err!(FeatureNotSupported, "tables without columns are not supported"));
        }
        for constraint in &create.constraints {
            match constraint {
                TableConstraint::PrimaryKey(pk) => {
                    if !primary_key.is_empty() {
                        return Err(err!(
                            InvalidTableDefinition,
                            "multiple primary keys for table \"{name}\" are not allowed"
                        ));
                    }
                    for c in &pk.columns {
                        primary_key.push(index_column_name(c)?);
                    }
                }
                other => return Err(err!(FeatureNotSupported, "constraint {other} is not supported")),
            }
        }
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let index = |col: &str| {
            names
                .iter()
                .position(|c| c == col)
                .ok_or_else(|| err!(UndefinedColumn, "column \"{col}\" named in key does not exist"))
        };
        let pk: Vec<usize> = primary_key.iter().map(|c| index(c)).collect::<Result<_>>()?;
        for i in &pk {
            columns[*i].nullable = false;
        }
        let dist: Vec<usize> = match &distributed_by {
            Some(cols) => cols.iter().map(|c| index(c)).collect::<Result<_>>()?,
            None if !pk.is_empty() => vec![pk[0]],
            None => vec![0],
        };
        if !pk.is_empty() && !dist.iter().all(|d| pk.contains(d)) {
            return Err(err!(
                FeatureNotSupported,
                "cannot create table \"{name}\": the primary key must include the distribution key ({})",
                dist.iter()
                    .map(|d| columns[*d].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let if_not_exists = create.if_not_exists;
        let mut existed = false;
        self.catalog.update(|state| {
            if state.tables.contains_key(&name) || state.views.contains_key(&name) {
                if if_not_exists {
                    existed = true;
                    return Ok(vec![]);
                }
                return Err(err!(DuplicateTable, "relation \"{name}\" already exists"));
            }
            let map = match &hash_map {
                Some(m) => state.hash_map(m)?,
                None => state.current_map()?,
            };
            Ok(vec![Change::PutTable(TableDef {
                id: state.next_table_id(),
                name: name.clone(),
                columns,
                primary_key: pk,
                distribution_key: dist,
                hash_map: map.name.clone(),
            })])
        })?;
        if existed {
            tracing::info!("relation \"{name}\" already exists, skipping");
        }
        Ok(Output::Command(CommandTag::new("CREATE TABLE")))
    }

    pub async fn drop_objects(
        &self,
        kind: ObjectType,
        if_exists: bool,
        names: &[ObjectName],
        cascade: bool,
    ) -> Result<Output> {
        let names: Vec<String> = names.iter().map(relation_name).collect::<Result<_>>()?;
        match kind {
            ObjectType::Table => {
                let _ = cascade;
                let mut dropped = Vec::new();
                self.catalog.update(|state| {
                    let mut changes = Vec::new();
                    for n in &names {
                        match state.tables.get(n) {
                            Some(t) => {
                                if let Some(j) = state.active_job(n) {
                                    return Err(err!(
                                        ObjectInUse,
                                        "cannot drop table \"{n}\" while redistribution {} moves it (CANCEL REDISTRIBUTION {} or wait for it)",
                                        j.id,
                                        j.id
                                    ));
                                }
                                dropped.push((t.clone(), state.hash_map(&t.hash_map)?));
                                changes.push(Change::DropTable(n.clone()));
                            }
                            None if if_exists => {}
                            None => return Err(err!(UndefinedTable, "table \"{n}\" does not exist")),
                        }
                    }
                    Ok(changes)
                })?;
                // The catalog no longer names the tables, so no new rows can
                // arrive; delete their rows from the slice servers. Table ids
                // are never reused, so rows a crash leaves here are unreachable.
                for (t, map) in dropped {
                    self.delete_rows(t.id, &map).await?;
                }
                Ok(Output::Command(CommandTag::new("DROP TABLE")))
            }
            ObjectType::View => {
                self.catalog.update(|state| {
                    let mut changes = Vec::new();
                    for n in &names {
                        if state.views.contains_key(n) {
                            changes.push(Change::DropView(n.clone()));
                        } else if !if_exists {
                            return Err(err!(UndefinedTable, "view \"{n}\" does not exist"));
                        }
                    }
                    Ok(changes)
                })?;
                Ok(Output::Command(CommandTag::new("DROP VIEW")))
            }
            other => Err(err!(FeatureNotSupported, "DROP {other} is not supported")),
        }
    }

    pub async fn create_view(&self, view: ast::CreateView) -> Result<Output> {
        if view.materialized {
            return Err(err!(FeatureNotSupported, "materialized views are not supported"));
        }
        let name = relation_name(&view.name)?;
        let sql = view.query.to_string();
        // Plan it now so that a view over unknown tables or columns is
        // refused; a view that would expand into itself is refused below.
        self.ctx.state().create_logical_plan(&sql).await?;
        let or_replace = view.or_replace;
        self.catalog.update(|state| {
            if view_cycle(state, &name, &sql)? {
                return Err(err!(InvalidRecursion, "infinite recursion detected in view \"{name}\""));
            }
            if state.tables.contains_key(&name) || (state.views.contains_key(&name) && !or_replace) {
                return Err(err!(DuplicateTable, "relation \"{name}\" already exists"));
            }
            Ok(vec![Change::PutView(ViewDef {
                name: name.clone(),
                sql: sql.clone(),
            })])
        })?;
        Ok(Output::Command(CommandTag::new("CREATE VIEW")))
    }

    pub async fn truncate(&self, t: &ast::Truncate) -> Result<Output> {
        let snapshot = self.catalog.snapshot();
        let mut tables = Vec::new();
        for target in &t.table_names {
            let name = relation_name(&target.name)?;
            match snapshot.table(&name) {
                Ok(table) => tables.push(table),
                Err(_) if t.if_exists => {}
                Err(e) => return Err(e),
            }
        }
        for table in &tables {
            self.check_not_moving(&table.name, "truncate")?;
        }
        for table in tables {
            self.delete_table_rows(table.id, &table.hash_map).await?;
        }
        Ok(Output::Command(CommandTag::new("TRUNCATE TABLE")))
    }

    /// Deletes every row of a table on every slice server of its map.
    pub async fn delete_table_rows(&self, table_id: u32, map_name: &str) -> Result<()> {
        let map = self.catalog.snapshot().hash_map(map_name)?;
        self.delete_rows(table_id, &map).await
    }

    /// Deletes every row of a table on every slice server of `map`.
    async fn delete_rows(&self, table_id: u32, map: &slicedb_hashmap::HashMap) -> Result<()> {
        let requests = map.nodes.iter().map(|node| {
            let cluster = self.cluster.clone();
            async move { cluster.client(*node)?.call(SliceRequest::DropTable { table_id }).await }
        });
        for r in futures::future::join_all(requests).await {
            r?;
        }
        Ok(())
    }
}
