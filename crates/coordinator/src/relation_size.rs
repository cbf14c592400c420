//! PostgreSQL's size functions: `pg_table_size`, `pg_relation_size`,
//! `pg_indexes_size`, `pg_total_relation_size` and `pg_database_size`,
//! which psql's `\dt+`, `\di+` and `\l+` and monitoring tools call.
//!
//! A table's bytes are spread over the slice servers, so a function cannot
//! read them while DataFusion evaluates it. Before a query that calls one
//! runs ([`calls_size_functions`]), the coordinator asks every node for
//! its bytes per table and index table (`slice_load::relation_bytes`:
//! RocksDB's estimates of SST files and memtables, the figures of
//! `slicedb.bucket_load`), and hands them to the query among the session's
//! values; [`SizeFunction`] looks them up by object id.
//!
//! - `pg_table_size(t)` and `pg_relation_size(t)`: the table's rows and
//!   their older versions. A primary key is the table's own key order, so
//!   the primary key index has no bytes of its own (0).
//! - `pg_relation_size(i)` of an index: its entries; `pg_indexes_size(t)`
//!   all of the table's indexes; `pg_total_relation_size(t)` the table and
//!   its indexes.
//! - `pg_database_size(name or oid)`: every table and index.
//!
//! An object id that is not slicedb's is NULL, as in PostgreSQL. A text
//! argument (`pg_total_relation_size('orders')`) is read as a relation name.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Builder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use slicedb_catalog::{Catalog, CatalogState};
use slicedb_common::{TableDef, TableId};

use crate::pg_catalog::Oids;
use crate::session::SessionValues;

/// Bytes per table and index table id, as gathered for one statement.
pub type RelationBytes = BTreeMap<TableId, u64>;

/// The size functions of the module comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Table,
    Relation,
    Indexes,
    Total,
    Database,
}

const KINDS: [(Kind, &str); 5] = [
    (Kind::Table, "pg_table_size"),
    (Kind::Relation, "pg_relation_size"),
    (Kind::Indexes, "pg_indexes_size"),
    (Kind::Total, "pg_total_relation_size"),
    (Kind::Database, "pg_database_size"),
];

/// Whether `plan` calls one of the size functions: then the statement
/// needs [`RelationBytes`] gathered first.
pub fn calls_size_functions(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if KINDS.iter().any(|(_, name)| f.func.name() == *name) {
                        found = true;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

/// One size function; it reads the catalog to map object ids and names.
struct SizeFunction {
    kind: Kind,
    signature: Signature,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for SizeFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl PartialEq for SizeFunction {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl Eq for SizeFunction {}

impl std::hash::Hash for SizeFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

/// The functions, to register.
pub fn functions(catalog: Arc<Catalog>) -> Vec<ScalarUDF> {
    KINDS
        .iter()
        .map(|(kind, _)| {
            ScalarUDF::new_from_impl(SizeFunction {
                kind: *kind,
                // One argument; `pg_relation_size(rel, fork)` names a fork.
                signature: Signature::variadic_any(Volatility::Volatile),
                catalog: catalog.clone(),
            })
        })
        .collect()
}

/// What an object id or a name stands for.
enum Relation<'a> {
    Table(&'a Arc<TableDef>),
    Index(TableId),
    PrimaryKey,
}

fn relation_by_oid(state: &CatalogState, oid: i64) -> Option<Relation<'_>> {
    for t in state.tables.values() {
        if Oids::relation(t.id) == oid {
            return Some(Relation::Table(t));
        }
        if t.has_primary_key() && Oids::primary_key(t.id) == oid {
            return Some(Relation::PrimaryKey);
        }
        if let Some(i) = t.indexes.iter().find(|i| Oids::relation(i.id) == oid) {
            return Some(Relation::Index(i.id));
        }
    }
    None
}

fn relation_by_name<'a>(state: &'a CatalogState, name: &str) -> Option<Relation<'a>> {
    let name = name.trim_matches('"');
    let name = name.strip_prefix("public.").unwrap_or(name);
    for t in state.tables.values() {
        if t.name == name {
            return Some(Relation::Table(t));
        }
        if t.has_primary_key() && t.pkey_name() == name {
            return Some(Relation::PrimaryKey);
        }
        if let Some(i) = t.indexes.iter().find(|i| i.name == name) {
            return Some(Relation::Index(i.id));
        }
    }
    None
}

impl SizeFunction {
    fn size(&self, bytes: &RelationBytes, relation: Relation<'_>) -> Option<i64> {
        let of = |id: &TableId| bytes.get(id).copied().unwrap_or(0);
        let indexes = |t: &TableDef| t.indexes.iter().map(|i| of(&i.id)).sum::<u64>();
        let n = match (self.kind, relation) {
            (Kind::Table | Kind::Relation, Relation::Table(t)) => of(&t.id),
            (Kind::Indexes, Relation::Table(t)) => indexes(t),
            (Kind::Total, Relation::Table(t)) => of(&t.id) + indexes(t),
            (Kind::Table | Kind::Relation | Kind::Total, Relation::Index(id)) => of(&id),
            (_, Relation::PrimaryKey) | (Kind::Indexes, Relation::Index(_)) => 0,
            (Kind::Database, _) => return None,
        };
        i64::try_from(n).ok()
    }
}

impl ScalarUDFImpl for SizeFunction {
    fn name(&self) -> &str {
        KINDS.iter().find(|(k, _)| *k == self.kind).map_or("", |(_, n)| n)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (arrays, n, scalar) = slicedb_planner::udf::arguments(&args)?;
        let Some(arg) = arrays.first() else {
            return Err(slicedb_common::Error::new(
                slicedb_common::SqlState::UndefinedFunction,
                format!("function {}() needs an argument", self.name()),
            )
            .into_datafusion());
        };
        let bytes: Arc<RelationBytes> = args
            .config_options
            .extensions
            .get::<SessionValues>()
            .and_then(|v| v.relation_bytes.clone())
            .unwrap_or_default();
        let state = self.catalog.snapshot();
        let total: i64 = bytes.values().map(|b| *b as i64).sum();
        let text = matches!(
            arg.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        );
        let keys: ArrayRef = match text {
            true => cast(arg, &DataType::Utf8)?,
            false => cast(arg, &DataType::Int64)?,
        };
        let mut out = Int64Builder::with_capacity(n);
        for row in 0..n {
            if keys.is_null(row) {
                out.append_null();
                continue;
            }
            let size = match (self.kind, text) {
                // One database: every relation (a name or an oid of it).
                (Kind::Database, _) => Some(total),
                (_, true) => {
                    relation_by_name(&state, keys.as_string::<i32>().value(row)).and_then(|r| self.size(&bytes, r))
                }
                (_, false) => relation_by_oid(
                    &state,
                    keys.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                        .value(row),
                )
                .and_then(|r| self.size(&bytes, r)),
            };
            out.append_option(size);
        }
        slicedb_planner::udf::result(Arc::new(out.finish()), scalar)
    }
}
