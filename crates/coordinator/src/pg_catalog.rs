//! `pg_catalog` as slicedb's tables really are.
//!
//! datafusion-pg-catalog serves PostgreSQL's system catalogs from the Arrow
//! schemas DataFusion sees: every text column is `text`, every numeric one
//! bare `numeric`, nothing is `NOT NULL`, and no default, constraint or
//! index exists. psql's `\d`, ORMs and migration tools read exactly those.
//! [`PgCatalog`] wraps that schema and answers five of its tables from
//! slicedb's own catalog instead:
//!
//! | table           | rows of slicedb's tables                                  |
//! |-----------------|-----------------------------------------------------------|
//! | `pg_class`      | tables (`r`), their indexes and primary keys (`i`), sequences (`S`) |
//! | `pg_attribute`  | columns with their type oid, `atttypmod`, `NOT NULL`, default, identity |
//! | `pg_attrdef`    | column defaults                                           |
//! | `pg_index`      | primary keys, unique constraints and `CREATE INDEX` indexes |
//! | `pg_constraint` | primary key (`p`), unique (`u`), foreign key (`f`), check (`c`) |
//!
//! `pg_roles` and `pg_authid` list the catalog's roles ([`roles`]).
//!
//! It also serves the `pg_indexes` view (slicedb's primary keys and
//! indexes with their `CREATE INDEX`), which datafusion-pg-catalog lacks,
//! and the tables behind `information_schema`'s constraint views
//! ([`crate::information_schema`]).
//!
//! Rows of other relations (pg_catalog's own, views) are the wrapped
//! schema's. The functions that decode these rows, `pg_get_constraintdef`,
//! `pg_get_indexdef`, `pg_get_expr`, `pg_get_serial_sequence`,
//! `pg_get_triggerdef` (NULL: slicedb has no triggers), `pg_typeof`,
//! `obj_description` and `col_description` (`COMMENT ON`), are here too
//! ([`functions`]).
//!
//! Object ids are derived from the catalog, so they are the same in every
//! query and on every coordinator: a table or index is `1_000_000 + its
//! storage id`, a primary key's index `2_000_000 + the table's id`; see
//! [`Oids`].

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{new_empty_array, Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use slicedb_catalog::{Catalog, CatalogState};
use slicedb_common::{FkAction, KeyFunction, TableDef};

type DfResult<T> = datafusion::common::Result<T>;

/// Where the object ids of slicedb's catalog objects start.
pub struct Oids;

impl Oids {
    const RELATION: i64 = 1_000_000;
    const PRIMARY_KEY: i64 = 2_000_000;
    const PK_CONSTRAINT: i64 = 3_000_000;
    const UNIQUE_CONSTRAINT: i64 = 4_000_000;
    const FOREIGN_KEY: i64 = 5_000_000;
    const CHECK: i64 = 6_000_000;
    const DEFAULT: i64 = 7_000_000;
    const SEQUENCE: i64 = 8_000_000;
    /// Constraints of one kind, or defaults, per table.
    const PER_TABLE: i64 = 1_000;

    /// A table, or an index (by its entries' storage id).
    pub fn relation(id: u32) -> i64 {
        Self::RELATION + id as i64
    }

    /// A table's primary key, as an index.
    pub fn primary_key(table: u32) -> i64 {
        Self::PRIMARY_KEY + table as i64
    }

    /// A sequence: its name's hash, so that dropping another does not move it.
    fn sequence(name: &str) -> i64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        Self::SEQUENCE + (h.finish() % 1_000_000_000) as i64
    }

    fn per_table(base: i64, table: u32, n: usize) -> i64 {
        base + table as i64 * Self::PER_TABLE + n as i64
    }
}

/// One row of a catalog table: column name to value; a column it does not
/// name is NULL, or its type's zero when the column is not nullable.
type Row = HashMap<&'static str, ScalarValue>;

fn text(s: impl Into<String>) -> ScalarValue {
    ScalarValue::Utf8(Some(s.into()))
}

fn oid(v: i64) -> ScalarValue {
    ScalarValue::Int64(Some(v))
}

fn int(v: i64) -> ScalarValue {
    ScalarValue::Int64(Some(v))
}

fn boolean(v: bool) -> ScalarValue {
    ScalarValue::Boolean(Some(v))
}

fn int2_array(values: impl IntoIterator<Item = usize>) -> ScalarValue {
    let values: Vec<ScalarValue> = values.into_iter().map(|v| ScalarValue::Int16(Some(v as i16))).collect();
    ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Int16))
}

/// Space-separated attribute numbers, as an `int2vector` prints.
fn int2_vector(values: impl IntoIterator<Item = usize>) -> ScalarValue {
    text(values.into_iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" "))
}

/// Builds a batch of `schema` from `rows`.
fn batch(schema: &SchemaRef, rows: &[Row]) -> DfResult<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| -> DfResult<ArrayRef> {
            let ty = field.data_type();
            if rows.is_empty() {
                return Ok(new_empty_array(ty));
            }
            let values = rows
                .iter()
                .map(|row| match row.get(field.name().as_str()) {
                    Some(v) if !v.is_null() => v.cast_to(ty),
                    _ if field.is_nullable() => ScalarValue::try_from(ty),
                    _ => zero(ty),
                })
                .collect::<DfResult<Vec<_>>>()?;
            ScalarValue::iter_to_array(values)
        })
        .collect::<DfResult<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn zero(ty: &DataType) -> DfResult<ScalarValue> {
    Ok(match ty {
        DataType::Utf8 => text(""),
        DataType::Boolean => boolean(false),
        other => ScalarValue::new_zero(other)?,
    })
}

/// The wrapped schema's table `name`, read whole.
async fn read(inner: &dyn SchemaProvider, name: &str) -> DfResult<(SchemaRef, Vec<RecordBatch>)> {
    let Some(table) = inner.table(name).await? else {
        return Err(DataFusionError::Plan(format!("pg_catalog.{name} is missing")));
    };
    let ctx = SessionContext::new();
    let plan = table.scan(&ctx.state(), None, &[], None).await?;
    let batches = datafusion::physical_plan::collect(plan, Arc::new(TaskContext::default())).await?;
    Ok((table.schema(), batches))
}

/// Column `name` of `batch`, cast to `ty`.
fn column_as(batch: &RecordBatch, name: &str, ty: &DataType) -> DfResult<ArrayRef> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| DataFusionError::Plan(format!("no column {name}")))?;
    Ok(datafusion::arrow::compute::cast(column, ty)?)
}

/// Column `name` of `batch` as i64 values (oids are int4 there).
fn int_column(batch: &RecordBatch, name: &str) -> DfResult<Vec<Option<i64>>> {
    let column = column_as(batch, name, &DataType::Int64)?;
    let column = column.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    Ok(column.iter().collect())
}

fn string_column(batch: &RecordBatch, name: &str) -> DfResult<Vec<Option<String>>> {
    let column = column_as(batch, name, &DataType::Utf8)?;
    Ok(column
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

/// The rows of `batches` whose oid in `column` is not one of `replaced`,
/// plus `extra`, as one batch.
fn merge(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    column: &str,
    replaced: &[i64],
    extra: &[Row],
) -> DfResult<RecordBatch> {
    let mut out = Vec::with_capacity(batches.len() + 1);
    for b in batches {
        let keep: Vec<bool> = int_column(b, column)?
            .iter()
            .map(|o| !o.is_some_and(|o| replaced.contains(&o)))
            .collect();
        out.push(filter_record_batch(
            b,
            &datafusion::arrow::array::BooleanArray::from(keep),
        )?);
    }
    out.push(batch(schema, extra)?);
    Ok(concat_batches(schema, &out)?)
}

/// `pg_catalog`, with the tables named in the module comment answered from
/// slicedb's catalog.
#[derive(Clone)]
pub struct PgCatalog {
    inner: Arc<dyn SchemaProvider>,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for PgCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgCatalog")
    }
}

impl PgCatalog {
    pub fn new(inner: Arc<dyn SchemaProvider>, catalog: Arc<Catalog>) -> Self {
        PgCatalog { inner, catalog }
    }

    /// The oid of namespace `public` in the wrapped `pg_namespace`.
    async fn public(&self) -> DfResult<i64> {
        let (_, namespaces) = read(self.inner.as_ref(), "pg_namespace").await?;
        for b in &namespaces {
            for (o, name) in int_column(b, "oid")?.into_iter().zip(string_column(b, "nspname")?) {
                if name.as_deref() == Some(crate::SCHEMA) {
                    return o.ok_or_else(|| DataFusionError::Plan("namespace public has no oid".into()));
                }
            }
        }
        Err(DataFusionError::Plan("no namespace public".into()))
    }

    /// The oids the wrapped `pg_class` (its rows `classes`) gave slicedb's
    /// tables in namespace `public`: their rows are replaced.
    fn replaced(classes: &[RecordBatch], public: i64, state: &CatalogState) -> DfResult<Vec<i64>> {
        let mut theirs = Vec::new();
        for b in classes {
            let names = string_column(b, "relname")?;
            let spaces = int_column(b, "relnamespace")?;
            for ((o, name), space) in int_column(b, "oid")?.into_iter().zip(names).zip(spaces) {
                if space == Some(public) && name.is_some_and(|n| state.tables.contains_key(&n)) {
                    theirs.extend(o);
                }
            }
        }
        Ok(theirs)
    }

    async fn pg_class(&self, state: &CatalogState) -> DfResult<RecordBatch> {
        let public = self.public().await?;
        let (schema, batches) = read(self.inner.as_ref(), "pg_class").await?;
        let theirs = Self::replaced(&batches, public, state)?;
        let mut rows = Vec::new();
        let relation = |o: i64, name: &str, kind: &str, natts: usize| -> Row {
            Row::from([
                ("oid", oid(o)),
                ("relname", text(name)),
                ("relnamespace", oid(public)),
                ("relowner", int(10)),
                ("relfilenode", oid(o)),
                ("relkind", text(kind)),
                ("relnatts", int(natts as i64)),
                ("relpersistence", text("p")),
                ("relreplident", text(if kind == "i" { "n" } else { "d" })),
                ("relispopulated", boolean(true)),
                (
                    "relam",
                    int(if kind == "i" {
                        403
                    } else if kind == "r" {
                        2
                    } else {
                        0
                    }),
                ),
            ])
        };
        // psql shows a table's foreign keys, and those referencing it, when
        // it has triggers (PostgreSQL enforces them with triggers).
        let referenced: Vec<u32> = state
            .tables
            .values()
            .flat_map(|t| t.foreign_keys.iter().map(|f| f.ref_table))
            .collect();
        for t in state.tables.values() {
            let mut row = relation(Oids::relation(t.id), &t.name, "r", t.columns.len());
            if let Some(owner) = state.roles.get(&t.acl.owner) {
                row.insert("relowner", int(owner.oid as i64));
            }
            row.insert(
                "relhastriggers",
                boolean(!t.foreign_keys.is_empty() || referenced.contains(&t.id)),
            );
            row.insert("relchecks", int(t.checks.len() as i64));
            row.insert("relhasindex", boolean(t.has_primary_key() || !t.indexes.is_empty()));
            rows.push(row);
            if t.has_primary_key() {
                rows.push(relation(
                    Oids::primary_key(t.id),
                    &t.pkey_name(),
                    "i",
                    t.primary_key.len(),
                ));
            }
            for i in &t.indexes {
                rows.push(relation(Oids::relation(i.id), &i.name, "i", i.columns.len()));
            }
        }
        for name in state.sequences.keys() {
            rows.push(relation(Oids::sequence(name), name, "S", 3));
        }
        merge(&schema, &batches, "oid", &theirs, &rows)
    }

    async fn pg_attribute(&self, state: &CatalogState) -> DfResult<RecordBatch> {
        let (_, classes) = read(self.inner.as_ref(), "pg_class").await?;
        let theirs = Self::replaced(&classes, self.public().await?, state)?;
        let (schema, batches) = read(self.inner.as_ref(), "pg_attribute").await?;
        let mut rows = Vec::new();
        let attribute = |rel: i64, num: usize, col: &slicedb_common::ColumnDef| -> Row {
            let ty = col.sql_type;
            Row::from([
                ("attrelid", oid(rel)),
                ("attname", text(&col.name)),
                ("atttypid", oid(ty.pg_oid() as i64)),
                ("attstattarget", int(-1)),
                ("attlen", int(ty.pg_len() as i64)),
                ("attnum", int(num as i64)),
                ("atttypmod", int(ty.pg_typmod() as i64)),
                ("attbyval", boolean(ty.pg_len() > 0 && ty.pg_len() <= 8)),
                ("attalign", text(if ty.pg_len() == 8 { "d" } else { "i" })),
                // As the type's typstorage: plain, main (numeric), extended.
                (
                    "attstorage",
                    text(match ty {
                        _ if ty.pg_len() > 0 => "p",
                        slicedb_common::SqlType::Numeric { .. } => "m",
                        _ => "x",
                    }),
                ),
                ("attislocal", boolean(true)),
                ("attcollation", int(if ty.is_text() { 100 } else { 0 })),
            ])
        };
        for t in state.tables.values() {
            let rel = Oids::relation(t.id);
            for (i, col) in t.columns.iter().enumerate() {
                let mut row = attribute(rel, i + 1, col);
                row.insert("attnotnull", boolean(!col.nullable || t.primary_key.contains(&i)));
                row.insert("atthasdef", boolean(col.default.is_some() && col.identity.is_none()));
                let identity = match col.identity {
                    Some(slicedb_common::Identity::Always) => "a",
                    Some(slicedb_common::Identity::ByDefault) => "d",
                    None => "",
                };
                row.insert("attidentity", text(identity));
                rows.push(row);
            }
            let mut index = |rel: i64, columns: &[usize]| {
                for (n, c) in columns.iter().enumerate() {
                    rows.push(attribute(rel, n + 1, &t.columns[*c]));
                }
            };
            if t.has_primary_key() {
                index(Oids::primary_key(t.id), &t.primary_key);
            }
            for i in &t.indexes {
                index(Oids::relation(i.id), &i.columns);
            }
        }
        merge(&schema, &batches, "attrelid", &theirs, &rows)
    }

    async fn pg_attrdef(&self, state: &CatalogState) -> DfResult<RecordBatch> {
        let (schema, _) = read(self.inner.as_ref(), "pg_attrdef").await?;
        let mut rows = Vec::new();
        for t in state.tables.values() {
            for (i, col) in t.columns.iter().enumerate() {
                let Some(default) = col.default.as_deref().filter(|_| col.identity.is_none()) else {
                    continue;
                };
                rows.push(Row::from([
                    ("oid", oid(Oids::per_table(Oids::DEFAULT, t.id, i + 1))),
                    ("adrelid", oid(Oids::relation(t.id))),
                    ("adnum", int(i as i64 + 1)),
                    ("adbin", text(default_expr(default, col.sql_type))),
                ]));
            }
        }
        batch(&schema, &rows)
    }

    async fn pg_index(&self, state: &CatalogState) -> DfResult<RecordBatch> {
        let (schema, _) = read(self.inner.as_ref(), "pg_index").await?;
        let mut rows = Vec::new();
        for t in state.tables.values() {
            // An expression's column is 0 in `indkey`, as in PostgreSQL.
            let index = |rel: i64,
                         columns: &[usize],
                         functions: &[KeyFunction],
                         unique: bool,
                         primary: bool,
                         valid: bool|
             -> Row {
                let key = columns.iter().enumerate().map(|(n, c)| match functions.get(n) {
                    Some(f) if *f != KeyFunction::None => 0,
                    _ => c + 1,
                });
                Row::from([
                    ("indexrelid", oid(rel)),
                    ("indrelid", oid(Oids::relation(t.id))),
                    ("indnatts", int(columns.len() as i64)),
                    ("indnkeyatts", int(columns.len() as i64)),
                    ("indisunique", boolean(unique)),
                    ("indisprimary", boolean(primary)),
                    ("indimmediate", boolean(true)),
                    ("indisvalid", boolean(valid)),
                    ("indisready", boolean(true)),
                    ("indislive", boolean(true)),
                    ("indkey", int2_vector(key)),
                    (
                        "indcollation",
                        int2_vector(
                            columns
                                .iter()
                                .map(|c| if t.columns[*c].sql_type.is_text() { 100 } else { 0 }),
                        ),
                    ),
                    ("indclass", int2_vector(columns.iter().map(|_| 0))),
                    ("indoption", int2_vector(columns.iter().map(|_| 0))),
                ])
            };
            if t.has_primary_key() {
                rows.push(index(Oids::primary_key(t.id), &t.primary_key, &[], true, true, true));
            }
            for i in &t.indexes {
                rows.push(index(
                    Oids::relation(i.id),
                    &i.columns,
                    &i.functions,
                    i.unique,
                    false,
                    !i.building,
                ));
            }
        }
        batch(&schema, &rows)
    }

    async fn pg_constraint(&self, state: &CatalogState, schema: &SchemaRef) -> DfResult<RecordBatch> {
        let public = self.public().await?;
        let rows: Vec<Row> = constraints(state)
            .into_iter()
            .map(|c| {
                let mut row = Row::from([
                    ("oid", oid(c.oid)),
                    ("conname", text(c.name)),
                    ("connamespace", oid(public)),
                    ("contype", text(c.kind.to_string())),
                    ("condeferrable", boolean(c.deferrable)),
                    ("condeferred", boolean(c.deferred)),
                    ("convalidated", boolean(true)),
                    ("conrelid", oid(Oids::relation(c.table))),
                    ("conindid", oid(c.index)),
                    ("conislocal", boolean(true)),
                    ("connoinherit", boolean(c.kind != 'c')),
                    ("conkey", int2_array(c.columns.iter().map(|c| c + 1))),
                    ("confupdtype", text(" ")),
                    ("confdeltype", text(" ")),
                    ("confmatchtype", text(" ")),
                ]);
                if let Some(fk) = c.references {
                    row.insert("confrelid", oid(Oids::relation(fk.table)));
                    row.insert("confkey", int2_array(fk.columns.iter().map(|c| c + 1)));
                    row.insert("confupdtype", text(action_code(fk.on_update)));
                    row.insert("confdeltype", text(action_code(fk.on_delete)));
                    row.insert("confmatchtype", text("s"));
                }
                if let Some(expr) = c.check {
                    row.insert("conbin", text(expr));
                }
                row
            })
            .collect();
        batch(schema, &rows)
    }
}

/// The tables [`PgCatalog`] answers itself.
const OWN_TABLES: [&str; 7] = [
    "pg_class",
    "pg_attribute",
    "pg_attrdef",
    "pg_index",
    "pg_constraint",
    "pg_roles",
    "pg_authid",
];

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.push("pg_indexes".into());
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let name = name.to_ascii_lowercase();
        if name == "pg_indexes" {
            return Ok(Some(Arc::new(CatalogTable {
                name: "pg_indexes",
                schema: Arc::new(Schema::new(
                    ["schemaname", "tablename", "indexname", "tablespace", "indexdef"]
                        .map(|n| Field::new(n, DataType::Utf8, true))
                        .to_vec(),
                )),
                catalog: self.clone(),
            })));
        }
        if let Some(view) = crate::information_schema::view_of(&name) {
            return Ok(Some(Arc::new(CatalogTable {
                name: view,
                schema: crate::information_schema::schema(view),
                catalog: self.clone(),
            })));
        }
        let Some(name) = OWN_TABLES.into_iter().find(|t| *t == name) else {
            return self.inner.table(&name).await;
        };
        // The rows are read when the table is scanned, not here: the
        // wrapped pg_attribute asks every table for its schema, this one too.
        let Some(theirs) = self.inner.table(name).await? else {
            return Ok(None);
        };
        let schema = if name == "pg_constraint" {
            constraint_schema(&theirs.schema())
        } else {
            theirs.schema()
        };
        Ok(Some(Arc::new(CatalogTable {
            name,
            schema,
            catalog: self.clone(),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        name == "pg_indexes" || crate::information_schema::view_of(&name).is_some() || self.inner.table_exist(&name)
    }
}

/// `pg_constraint`'s schema: the wrapped one with `conkey` and `confkey` as
/// `int2[]` (it has them as text).
fn constraint_schema(theirs: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = theirs
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "conkey" | "confkey" => Field::new(
                f.name(),
                DataType::List(Arc::new(Field::new_list_field(DataType::Int16, true))),
                true,
            ),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// One of [`OWN_TABLES`], or one of the `information_schema` views of
/// [`crate::information_schema`]: its rows are built from the catalog at
/// each scan.
#[derive(Debug)]
struct CatalogTable {
    name: &'static str,
    schema: SchemaRef,
    catalog: PgCatalog,
}

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::View
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::prelude::Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let c = &self.catalog;
        let state_now = c.catalog.snapshot();
        let batch = match self.name {
            "pg_class" => c.pg_class(&state_now).await?,
            "pg_attribute" => c.pg_attribute(&state_now).await?,
            "pg_attrdef" => c.pg_attrdef(&state_now).await?,
            "pg_index" => c.pg_index(&state_now).await?,
            "pg_constraint" => c.pg_constraint(&state_now, &self.schema).await?,
            "pg_indexes" => pg_indexes(&state_now, &self.schema)?,
            "pg_roles" | "pg_authid" => roles(&state_now, &self.schema, self.name == "pg_roles")?,
            view => {
                let all = constraints(&state_now);
                crate::information_schema::rows(view, &state_now, &all, c.public().await?)?
            }
        };
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// `pg_constraint.confupdtype` / `confdeltype` of an action.
/// `pg_roles` (or `pg_authid`): the catalog's roles. A superuser has
/// every attribute a role can have; no role has a connection limit or an
/// expiry. `pg_roles` shows a password as `********`, as PostgreSQL does;
/// `pg_authid` shows none (slicedb does not give verifiers out over SQL).
fn roles(state: &CatalogState, schema: &SchemaRef, masked: bool) -> DfResult<RecordBatch> {
    let rows: Vec<Row> = state
        .roles
        .values()
        .map(|r| {
            let mut row = Row::from([
                ("oid", oid(r.oid as i64)),
                ("rolname", text(r.name.clone())),
                ("rolsuper", boolean(r.superuser)),
                ("rolinherit", boolean(true)),
                ("rolcreaterole", boolean(r.superuser)),
                ("rolcreatedb", boolean(r.superuser)),
                ("rolcanlogin", boolean(r.login)),
                ("rolreplication", boolean(false)),
                ("rolbypassrls", boolean(r.superuser)),
                ("rolconnlimit", int(-1)),
            ]);
            if masked && r.password.is_some() {
                row.insert("rolpassword", text("********"));
            }
            row
        })
        .collect();
    batch(schema, &rows)
}

fn action_code(action: FkAction) -> &'static str {
    match action {
        FkAction::NoAction => "a",
        FkAction::Restrict => "r",
        FkAction::Cascade => "c",
        FkAction::SetNull => "n",
        FkAction::SetDefault => "d",
    }
}

/// A column default of a column of type `ty` as PostgreSQL prints it: a
/// sequence's name is a `regclass` (`nextval('t_id_seq'::regclass)`), and
/// a quoted literal of a text column carries its cast (`'x'::text`,
/// `'x'::character varying`); PostgreSQL also writes other types' literals
/// in their output form (`'01:00:00'::interval`), which slicedb does not.
pub(crate) fn default_expr(default: &str, ty: slicedb_common::SqlType) -> String {
    if let Some(seq) = default.strip_prefix("nextval('").and_then(|r| r.strip_suffix("')")) {
        if !seq.contains('\'') {
            return format!("nextval('{seq}'::regclass)");
        }
    }
    let quoted = default.len() >= 2
        && default.starts_with('\'')
        && default.ends_with('\'')
        && !default[1..default.len() - 1].replace("''", "").contains('\'');
    let cast = match ty {
        slicedb_common::SqlType::Text => "text",
        slicedb_common::SqlType::Varchar(_) => "character varying",
        slicedb_common::SqlType::Char(_) => "bpchar",
        _ => "",
    };
    match quoted && !cast.is_empty() {
        true => format!("{default}::{cast}"),
        false => default.to_string(),
    }
}

/// The referenced side of a foreign key.
pub(crate) struct Referenced {
    pub(crate) table: u32,
    pub(crate) columns: Vec<usize>,
    pub(crate) on_update: FkAction,
    pub(crate) on_delete: FkAction,
}

/// One row of `pg_constraint`, and what `pg_get_constraintdef` prints for it.
pub(crate) struct Constraint {
    oid: i64,
    pub(crate) name: String,
    pub(crate) kind: char,
    pub(crate) table: u32,
    pub(crate) columns: Vec<usize>,
    /// The index that enforces it (`p`, `u`), or the referenced key's (`f`).
    index: i64,
    pub(crate) deferrable: bool,
    pub(crate) deferred: bool,
    pub(crate) references: Option<Referenced>,
    check: Option<String>,
    /// As `pg_get_constraintdef(oid)` prints it; with `pretty`, a check's
    /// condition loses its outer parentheses.
    pub(crate) definition: String,
}

impl Constraint {
    fn definition(&self, pretty: bool) -> String {
        match &self.check {
            Some(expr) if pretty => format!("CHECK ({expr})"),
            _ => self.definition.clone(),
        }
    }
}

/// `name` quoted where PostgreSQL would quote it.
pub fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn column_list(t: &TableDef, columns: &[usize]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(&t.columns[*c].name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every constraint of every table, in table order.
pub(crate) fn constraints(state: &CatalogState) -> Vec<Constraint> {
    let mut out = Vec::new();
    let by_id: HashMap<u32, &Arc<TableDef>> = state.tables.values().map(|t| (t.id, t)).collect();
    for t in state.tables.values() {
        let constraint = |oid, name: String, kind, columns: Vec<usize>, index, definition| Constraint {
            oid,
            name,
            kind,
            table: t.id,
            columns,
            index,
            deferrable: false,
            deferred: false,
            references: None,
            check: None,
            definition,
        };
        if t.has_primary_key() {
            out.push(constraint(
                Oids::PK_CONSTRAINT + t.id as i64,
                t.pkey_name(),
                'p',
                t.primary_key.clone(),
                Oids::primary_key(t.id),
                format!("PRIMARY KEY ({})", column_list(t, &t.primary_key)),
            ));
        }
        for i in t.indexes.iter().filter(|i| i.constraint) {
            out.push(constraint(
                Oids::UNIQUE_CONSTRAINT + i.id as i64,
                i.name.clone(),
                'u',
                i.columns.clone(),
                Oids::relation(i.id),
                format!("UNIQUE ({})", column_list(t, &i.columns)),
            ));
        }
        for (n, fk) in t.foreign_keys.iter().enumerate() {
            let Some(parent) = by_id.get(&fk.ref_table) else {
                continue;
            };
            let mut definition = format!(
                "FOREIGN KEY ({}) REFERENCES {}({})",
                column_list(t, &fk.columns),
                quote_ident(&parent.name),
                column_list(parent, &fk.ref_columns)
            );
            if fk.on_update != FkAction::NoAction {
                definition += &format!(" ON UPDATE {}", fk.on_update.sql());
            }
            if fk.on_delete != FkAction::NoAction {
                definition += &format!(" ON DELETE {}", fk.on_delete.sql());
            }
            if fk.deferrable {
                definition += " DEFERRABLE";
            }
            if fk.deferred {
                definition += " INITIALLY DEFERRED";
            }
            let index = if fk.ref_columns == parent.primary_key {
                Oids::primary_key(parent.id)
            } else {
                parent
                    .indexes
                    .iter()
                    .find(|i| i.unique && i.is_plain() && i.columns == fk.ref_columns)
                    .map_or(0, |i| Oids::relation(i.id))
            };
            let mut c = constraint(
                Oids::per_table(Oids::FOREIGN_KEY, t.id, n),
                fk.name.clone(),
                'f',
                fk.columns.clone(),
                index,
                definition,
            );
            c.deferrable = fk.deferrable;
            c.deferred = fk.deferred;
            c.references = Some(Referenced {
                table: parent.id,
                columns: fk.ref_columns.clone(),
                on_update: fk.on_update,
                on_delete: fk.on_delete,
            });
            out.push(c);
        }
        for (n, check) in t.checks.iter().enumerate() {
            let columns = t
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| mentions(&check.expr, &c.name))
                .map(|(i, _)| i)
                .collect();
            let mut c = constraint(
                Oids::per_table(Oids::CHECK, t.id, n),
                check.name.clone(),
                'c',
                columns,
                0,
                format!("CHECK (({}))", check.expr),
            );
            c.check = Some(check.expr.clone());
            out.push(c);
        }
    }
    out
}

/// True if `expr` names column `name` as a whole word (for `conkey`).
fn mentions(expr: &str, name: &str) -> bool {
    let lower = expr.to_ascii_lowercase();
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    lower
        .match_indices(&name.to_ascii_lowercase())
        .any(|(at, m)| !word(lower[..at].chars().next_back()) && !word(lower[at + m.len()..].chars().next()))
}

/// Qualifies an unqualified `pg_indexes` with `pg_catalog` (the
/// compatibility parser qualifies the names of the catalogs it knows, and
/// this one it does not). Returns whether anything changed.
pub fn qualify_pg_indexes(stmt: &mut datafusion::sql::sqlparser::ast::Statement) -> bool {
    use datafusion::sql::sqlparser::ast;
    let mut changed = false;
    let _ = ast::visit_relations_mut(stmt, |name| {
        if let [only] = name.0.as_slice() {
            if only
                .as_ident()
                .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_indexes"))
            {
                *name = ast::ObjectName::from(vec![ast::Ident::new("pg_catalog"), ast::Ident::new("pg_indexes")]);
                changed = true;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    changed
}

/// The `pg_indexes` view: every primary key and index of slicedb's tables
/// (not one still being built), with its `CREATE INDEX` statement.
fn pg_indexes(state: &CatalogState, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let mut columns: Vec<StringBuilder> = (0..5).map(|_| StringBuilder::new()).collect();
    for t in state.tables.values() {
        let mut oids: Vec<(String, i64)> = Vec::new();
        if t.has_primary_key() {
            oids.push((t.pkey_name(), Oids::primary_key(t.id)));
        }
        oids.extend(
            t.indexes
                .iter()
                .filter(|i| !i.building)
                .map(|i| (i.name.clone(), Oids::relation(i.id))),
        );
        for (name, oid) in oids {
            let row = [
                Some(crate::SCHEMA.to_string()),
                Some(t.name.clone()),
                Some(name),
                None,
                index_definition(state, oid, 0),
            ];
            for (b, v) in columns.iter_mut().zip(row) {
                b.append_option(v);
            }
        }
    }
    let arrays: Vec<ArrayRef> = columns.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}

/// `CREATE [UNIQUE] INDEX …` of the index with `oid`, or its `column`th
/// column's name when `column` > 0.
fn index_definition(state: &CatalogState, oid: i64, column: i64) -> Option<String> {
    for t in state.tables.values() {
        let found = if t.has_primary_key() && oid == Oids::primary_key(t.id) {
            Some((t.pkey_name(), t.primary_key.clone(), true, Vec::new(), String::new()))
        } else {
            t.indexes.iter().find(|i| Oids::relation(i.id) == oid).map(|i| {
                (
                    i.name.clone(),
                    i.columns.clone(),
                    i.unique,
                    i.functions.clone(),
                    i.predicate_text(t),
                )
            })
        };
        let Some((name, columns, unique, functions, predicate)) = found else {
            continue;
        };
        // A column, or the function an expression index applies to it.
        let element = |n: usize| {
            let c = quote_ident(&t.columns[columns[n]].name);
            match functions.get(n).and_then(|f| f.name()) {
                Some(f) => format!("{f}({c})"),
                None => c,
            }
        };
        if column > 0 {
            return (column as usize <= columns.len()).then(|| element(column as usize - 1));
        }
        return Some(format!(
            "CREATE {}INDEX {} ON {}.{} USING btree ({}){predicate}",
            if unique { "UNIQUE " } else { "" },
            quote_ident(&name),
            crate::SCHEMA,
            quote_ident(&t.name),
            (0..columns.len()).map(element).collect::<Vec<_>>().join(", ")
        ));
    }
    None
}

/// The sequence behind column `column` of `table` (a `serial` or identity
/// column), schema-qualified.
fn serial_sequence(state: &CatalogState, table: &str, column: &str) -> Option<String> {
    let table = table.rsplit('.').next()?.trim_matches('"');
    let t = state.tables.get(table)?;
    let col = t.columns.iter().find(|c| c.name == column)?;
    let default = col.default.as_deref()?;
    let seq = default.strip_prefix("nextval('")?.strip_suffix("')")?;
    state
        .sequences
        .contains_key(seq)
        .then(|| format!("{}.{}", crate::SCHEMA, quote_ident(seq)))
}

/// The PostgreSQL name of the type of values of Arrow type `t`.
pub fn pg_type_name(t: &DataType) -> String {
    match t {
        DataType::Null => "unknown".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 | DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            "bytea".into()
        }
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp without time zone".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone".into(),
        DataType::Interval(_) | DataType::Duration(_) => "interval".into(),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            format!("{}[]", pg_type_name(f.data_type()))
        }
        DataType::Dictionary(_, v) => pg_type_name(v),
        DataType::Struct(_) => "record".into(),
        other => other.to_string(),
    }
}

/// What answers a client's catalog query that DataFusion cannot plan, when
/// its answer is known to be empty.
///
/// psql's `\d t` lists `t`'s triggers when the table has foreign keys; the
/// query reads `pg_partition_ancestors(t.tgrelid) WITH ORDINALITY` (a table
/// function over an outer column). slicedb has no triggers: the answer is
/// no row, with the columns psql reads.
pub fn client_query_replacement(sql: &str) -> Option<&'static str> {
    (sql.contains("FROM pg_catalog.pg_trigger t") && sql.contains("pg_partition_ancestors(t.tgrelid)")).then_some(
        "SELECT NULL::text AS tgname, NULL::text AS pg_get_triggerdef, NULL::text AS tgenabled, \
         NULL::boolean AS tgisinternal, NULL::text AS parent WHERE false",
    )
}

/// psql's `\d+ t` (verbose) reads a table's storage options with its
/// TOAST table's: `array_to_string(c.reloptions || array(select 'toast.'
/// || x from unnest(tc.reloptions) x), ', ')`, a correlated set-returning
/// subquery DataFusion cannot plan. slicedb keeps no storage options
/// (they are accepted and have no effect) and has no TOAST tables, so the
/// value is the empty string, and psql prints no `Options:` line. Returns
/// the query with that expression so replaced, if it has it.
pub fn client_query_patch(sql: &str) -> Option<String> {
    const TOAST_OPTIONS: &str = "pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ')";
    if sql.contains(TOAST_OPTIONS) {
        return Some(sql.replace(TOAST_OPTIONS, "''::text"));
    }
    asyncpg_type_introspection(sql)
}

/// asyncpg looks up the types of a statement's parameters and columns that
/// it has no built-in codec for (arrays, for one) with a recursive query
/// over `pg_type` whose select list holds, per type, a correlated scalar
/// subquery in a `CASE` for a domain's base type (a recursive CTE of its
/// own) and two for a composite type's attributes (`array_agg` over
/// `pg_attribute`), which DataFusion cannot plan. slicedb has neither
/// domains nor composite types of its own, and asyncpg asks only about the
/// types slicedb describes, so each such `CASE` is NULL: it becomes
/// `NULL::oid` or `NULL::text[]`. Returns the query so patched, if it is
/// asyncpg's.
fn asyncpg_type_introspection(sql: &str) -> Option<String> {
    if !sql.contains("typeinfo_tree") || !sql.contains("typebases") {
        return None;
    }
    let mut out = sql.to_string();
    for marker in ["(CASE WHEN t.typtype = 'd' THEN", "(CASE WHEN t.typtype = 'c' THEN"] {
        while let Some(start) = out.find(marker) {
            let end = closing_paren(&out, start)?;
            let null = match marker.contains("'d'") {
                true => "NULL::oid",
                // Typed `text[]`, which asyncpg decodes without
                // introspection (an `oid[]` is described as `int4[]` here,
                // which it would look up with this same query).
                false => "NULL::text[]",
            };
            out.replace_range(start..=end, null);
        }
    }
    Some(out)
}

/// The position of the `)` that closes the `(` at `open` (quotes aside:
/// the blocks patched hold no parenthesis in a string).
fn closing_paren(sql: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in sql[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Name of the function that prints a relation's oid as its name.
const REGCLASS_NAME: &str = "slicedb_regclass_name";

/// Makes a select list's `x::regclass` print the relation's name, as a
/// `regclass` does in PostgreSQL (slicedb's oid types are integers): the
/// item becomes `slicedb_regclass_name(x)`, keeping its alias. Casts of
/// literals (`'t'::regclass`, resolved to an oid) and casts elsewhere
/// (comparisons) are left alone. Returns whether anything changed.
pub fn name_regclass_outputs(stmt: &mut datafusion::sql::sqlparser::ast::Statement) -> bool {
    use datafusion::sql::sqlparser::ast::{self, VisitMut, VisitorMut};
    struct Outputs(bool);
    impl VisitorMut for Outputs {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut ast::Query) -> std::ops::ControlFlow<()> {
            let ast::SetExpr::Select(select) = query.body.as_mut() else {
                return std::ops::ControlFlow::Continue(());
            };
            for item in &mut select.projection {
                let (expr, alias) = match item {
                    ast::SelectItem::UnnamedExpr(e) => (e.clone(), None),
                    ast::SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
                    _ => continue,
                };
                let ast::Expr::Cast {
                    expr: inner, data_type, ..
                } = &expr
                else {
                    continue;
                };
                let ty = data_type.to_string().to_ascii_lowercase();
                if ty.rsplit('.').next() != Some("regclass") || matches!(inner.as_ref(), ast::Expr::Value(_)) {
                    continue;
                }
                let call = slicedb_planner::udf::call(REGCLASS_NAME, vec![*inner.clone()]);
                // An unnamed item is not named after the column (`oid`):
                // DataFusion would find that name ambiguous beside `c.oid`.
                *item = match alias {
                    Some(alias) => ast::SelectItem::ExprWithAlias { expr: call, alias },
                    None => ast::SelectItem::UnnamedExpr(call),
                };
                self.0 = true;
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut outputs = Outputs(false);
    let _ = stmt.visit(&mut outputs);
    outputs.0
}

/// slicedb's table with object id `oid`.
fn table_by_oid(state: &CatalogState, oid: i64) -> Option<&Arc<TableDef>> {
    state.tables.values().find(|t| Oids::relation(t.id) == oid)
}

/// The name of the relation with object id `oid`, if it is slicedb's.
fn relation_name(state: &CatalogState, oid: i64) -> Option<String> {
    for t in state.tables.values() {
        if Oids::relation(t.id) == oid {
            return Some(quote_ident(&t.name));
        }
        if t.has_primary_key() && Oids::primary_key(t.id) == oid {
            return Some(quote_ident(&t.pkey_name()));
        }
        if let Some(i) = t.indexes.iter().find(|i| Oids::relation(i.id) == oid) {
            return Some(quote_ident(&i.name));
        }
    }
    state
        .sequences
        .keys()
        .find(|s| Oids::sequence(s) == oid)
        .map(|s| quote_ident(s))
}

/// Which catalog function a [`CatalogFunction`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    ConstraintDef,
    IndexDef,
    Expr,
    SerialSequence,
    TypeOf,
    /// slicedb has no triggers: always NULL (psql asks when a table has
    /// foreign keys).
    TriggerDef,
    RegclassName,
    /// `obj_description(oid[, catalog])`: a table's comment.
    ObjDescription,
    /// `col_description(table oid, column number)`.
    ColDescription,
    /// `pg_get_userbyid(role oid)`: the role's name (psql's `\dt`
    /// shows owners with it); `unknown (OID=n)` for no role, as in
    /// PostgreSQL.
    UserById,
}

/// A function over slicedb's catalog (see the module comment).
struct CatalogFunction {
    kind: Kind,
    signature: Signature,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for CatalogFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CatalogFunction({:?})", self.kind)
    }
}

impl PartialEq for CatalogFunction {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.catalog, &other.catalog)
    }
}

impl Eq for CatalogFunction {}

impl Hash for CatalogFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

/// Argument `i` of row `row` as an i64 (oids and attribute numbers).
fn int_arg(args: &[ArrayRef], i: usize, row: usize) -> DfResult<Option<i64>> {
    let Some(a) = args.get(i) else {
        return Ok(None);
    };
    let a = datafusion::arrow::compute::cast(a, &DataType::Int64)?;
    let a = a.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    Ok(a.is_valid(row).then(|| a.value(row)))
}

fn bool_arg(args: &[ArrayRef], i: usize, row: usize) -> DfResult<Option<bool>> {
    let Some(a) = args.get(i) else {
        return Ok(None);
    };
    let a = a.as_boolean();
    Ok(a.is_valid(row).then(|| a.value(row)))
}

fn text_arg(args: &[ArrayRef], i: usize, row: usize) -> DfResult<Option<String>> {
    let a = datafusion::arrow::compute::cast(&args[i], &DataType::Utf8)?;
    let a = a.as_string::<i32>();
    Ok(a.is_valid(row).then(|| a.value(row).to_string()))
}

impl ScalarUDFImpl for CatalogFunction {
    fn name(&self) -> &str {
        match self.kind {
            Kind::ConstraintDef => "pg_get_constraintdef",
            Kind::IndexDef => "pg_get_indexdef",
            Kind::Expr => "pg_get_expr",
            Kind::SerialSequence => "pg_get_serial_sequence",
            Kind::TypeOf => "pg_typeof",
            Kind::TriggerDef => "pg_get_triggerdef",
            Kind::RegclassName => REGCLASS_NAME,
            Kind::ObjDescription => "obj_description",
            Kind::ColDescription => "col_description",
            Kind::UserById => "pg_get_userbyid",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        if self.kind == Kind::TypeOf {
            let field = &args.arg_fields[0];
            let name = match field.metadata().get(slicedb_common::text_types::PG_TYPE_KEY) {
                Some(t) => t.clone(),
                None => pg_type_name(field.data_type()),
            };
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let state = self.catalog.snapshot();
        let definitions: HashMap<i64, Constraint> = match self.kind {
            Kind::ConstraintDef => constraints(&state).into_iter().map(|c| (c.oid, c)).collect(),
            _ => HashMap::new(),
        };
        let mut out = StringBuilder::new();
        for row in 0..rows.max(arrays.first().map_or(0, |a| a.len())) {
            let value = match self.kind {
                Kind::ConstraintDef => {
                    let pretty = bool_arg(&arrays, 1, row)?.unwrap_or(false);
                    int_arg(&arrays, 0, row)?.and_then(|o| definitions.get(&o).map(|c| c.definition(pretty)))
                }
                Kind::IndexDef => match int_arg(&arrays, 0, row)? {
                    Some(o) => index_definition(&state, o, int_arg(&arrays, 1, row)?.unwrap_or(0)),
                    None => None,
                },
                // adbin, conbin and the like hold their expression as text.
                Kind::Expr => text_arg(&arrays, 0, row)?,
                Kind::SerialSequence => match (text_arg(&arrays, 0, row)?, text_arg(&arrays, 1, row)?) {
                    (Some(t), Some(c)) => serial_sequence(&state, &t, &c),
                    _ => None,
                },
                Kind::TriggerDef => None,
                Kind::ObjDescription => int_arg(&arrays, 0, row)?.and_then(|o| {
                    let catalog = arrays
                        .get(1)
                        .map(|_| text_arg(&arrays, 1, row))
                        .transpose()
                        .ok()?
                        .flatten();
                    if catalog.is_some_and(|c| c != "pg_class") {
                        return None;
                    }
                    table_by_oid(&state, o)?.comments.table.clone()
                }),
                Kind::ColDescription => match (int_arg(&arrays, 0, row)?, int_arg(&arrays, 1, row)?) {
                    (Some(o), Some(n)) if n > 0 => {
                        table_by_oid(&state, o).and_then(|t| t.comments.columns.get(&(n as usize - 1)).cloned())
                    }
                    _ => None,
                },
                // Another relation (pg_catalog's own) prints its number.
                Kind::RegclassName => {
                    int_arg(&arrays, 0, row)?.map(|o| relation_name(&state, o).unwrap_or(o.to_string()))
                }
                Kind::UserById => int_arg(&arrays, 0, row)?.map(|o| {
                    state
                        .roles
                        .values()
                        .find(|r| r.oid as i64 == o)
                        .map(|r| r.name.clone())
                        .unwrap_or_else(|| format!("unknown (OID={o})"))
                }),
                Kind::TypeOf => unreachable!("answered above"),
            };
            out.append_option(value);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The catalog functions, to register in the session context after
/// datafusion-pg-catalog's (they replace its placeholders of the same names).
pub fn functions(catalog: Arc<Catalog>) -> Vec<ScalarUDF> {
    use DataType::{Boolean, Int32, Int64, Utf8};
    let exact = |types: Vec<Vec<DataType>>| {
        Signature::one_of(
            types.into_iter().map(TypeSignature::Exact).collect(),
            Volatility::Stable,
        )
    };
    let oids = |rest: &[DataType]| {
        [Int32, Int64]
            .into_iter()
            .map(|o| std::iter::once(o).chain(rest.iter().cloned()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let with_pretty = |rest: &[DataType]| {
        let mut all = oids(rest);
        all.extend(oids(&[rest, &[Boolean]].concat()));
        all
    };
    let make = |kind, signature| {
        ScalarUDF::new_from_impl(CatalogFunction {
            kind,
            signature,
            catalog: catalog.clone(),
        })
    };
    let mut expr = Vec::new();
    for o in [Int32, Int64] {
        expr.push(vec![Utf8, o.clone()]);
        expr.push(vec![Utf8, o, Boolean]);
    }
    vec![
        make(Kind::ConstraintDef, exact(with_pretty(&[]))),
        make(
            Kind::IndexDef,
            exact([oids(&[]), oids(&[Int32, Boolean]), oids(&[Int64, Boolean])].concat()),
        ),
        make(Kind::Expr, exact(expr)),
        make(Kind::SerialSequence, exact(vec![vec![Utf8, Utf8]])),
        make(Kind::TypeOf, Signature::any(1, Volatility::Immutable)),
        make(Kind::TriggerDef, exact(with_pretty(&[]))),
        make(Kind::RegclassName, exact(oids(&[]))),
        make(Kind::ObjDescription, exact([oids(&[]), oids(&[Utf8])].concat())),
        make(Kind::ColDescription, exact([oids(&[Int32]), oids(&[Int64])].concat())),
        make(Kind::UserById, exact(oids(&[]))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_as_postgres_does() {
        assert_eq!(quote_ident("amount"), "amount");
        assert_eq!(quote_ident("Amount"), "\"Amount\"");
        assert_eq!(quote_ident("a b"), "\"a b\"");
        assert_eq!(quote_ident("1a"), "\"1a\"");
    }

    #[test]
    fn serial_defaults_print_their_sequence_as_regclass() {
        use slicedb_common::SqlType;
        assert_eq!(
            default_expr("nextval('t_id_seq')", SqlType::BigInt),
            "nextval('t_id_seq'::regclass)"
        );
        assert_eq!(default_expr("now()", SqlType::TimestampTz), "now()");
        assert_eq!(default_expr("'it''s'", SqlType::Text), "'it''s'::text");
        assert_eq!(default_expr("'a' || 'b'", SqlType::Text), "'a' || 'b'");
        assert_eq!(default_expr("'x'", SqlType::Varchar(Some(3))), "'x'::character varying");
    }

    #[test]
    fn checks_name_the_columns_they_mention() {
        assert!(mentions("amount >= 0", "amount"));
        assert!(!mentions("amounts >= 0", "amount"));
        assert!(mentions("(a + b) > c", "b"));
    }
}
