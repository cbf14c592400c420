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
//! A build runs online, while the table takes writes: see
//! [`crate::index_build`].

use datafusion::sql::sqlparser::ast;
use slicedb_catalog::Change;
use slicedb_common::{err, IndexDef, KeyFunction, NullTest, Result, TableDef};

use crate::ddl::{normalize, relation_name};
use crate::{CommandTag, Coordinator, Output};

/// What to build: an index or a `UNIQUE` constraint.
#[derive(Debug, Clone)]
pub struct IndexSpec {
    pub table: String,
    pub name: Option<String>,
    pub columns: Vec<String>,
    /// Per column, the function of an expression index (`lower(email)`);
    /// empty for an index of plain columns.
    pub functions: Vec<KeyFunction>,
    /// A partial index's conditions, by column name: `(column, is_null)`.
    pub predicate: Vec<(String, bool)>,
    pub unique: bool,
    pub constraint: bool,
    pub if_not_exists: bool,
}

/// The conditions of a partial index's `WHERE`: `c IS NULL`, `c IS NOT
/// NULL`, and ANDs of them (the soft-delete pattern, `WHERE deleted_at IS
/// NULL`); other conditions are refused (`0A000`).
fn index_predicate(e: &ast::Expr, out: &mut Vec<(String, bool)>) -> Result<()> {
    let column = |e: &ast::Expr| match e {
        ast::Expr::Identifier(i) => Some(normalize(i)),
        ast::Expr::Nested(inner) => match inner.as_ref() {
            ast::Expr::Identifier(i) => Some(normalize(i)),
            _ => None,
        },
        _ => None,
    };
    match e {
        ast::Expr::Nested(inner) => index_predicate(inner, out),
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            index_predicate(left, out)?;
            index_predicate(right, out)
        }
        ast::Expr::IsNull(c) if column(c).is_some() => {
            out.extend(column(c).map(|c| (c, true)));
            Ok(())
        }
        ast::Expr::IsNotNull(c) if column(c).is_some() => {
            out.extend(column(c).map(|c| (c, false)));
            Ok(())
        }
        other => Err(err!(
            FeatureNotSupported,
            "a partial index on {other} is not supported (its WHERE takes column IS [NOT] NULL, and ANDs of those)"
        )),
    }
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

/// The column of an element of `CREATE INDEX`, and the function an
/// expression index applies to it: a column, or `lower(c)` / `upper(c)`
/// (also as pg_dump writes them, `lower((c)::text)`). Other expressions
/// are refused (`0A000`).
fn index_element(c: &ast::IndexColumn) -> Result<(String, KeyFunction)> {
    fn column_of(e: &ast::Expr) -> Option<String> {
        match e {
            ast::Expr::Identifier(i) => Some(normalize(i)),
            ast::Expr::Nested(e) => column_of(e),
            ast::Expr::Cast { expr, data_type, .. }
                if matches!(
                    slicedb_common::SqlType::from_ast(data_type),
                    Ok(slicedb_common::SqlType::Text | slicedb_common::SqlType::Varchar(_))
                ) =>
            {
                column_of(expr)
            }
            _ => None,
        }
    }
    let expr = &c.column.expr;
    if let ast::Expr::Function(f) = expr {
        let name = f.name.to_string().to_ascii_lowercase();
        let function = KeyFunction::from_name(name.trim_start_matches("pg_catalog."));
        if let (Some(function), ast::FunctionArguments::List(list)) = (function, &f.args) {
            if let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))] = list.args.as_slice() {
                if let Some(column) = column_of(arg) {
                    return Ok((column, function));
                }
            }
        }
    }
    match column_of(expr) {
        Some(column) if matches!(expr, ast::Expr::Identifier(_) | ast::Expr::Nested(_)) => {
            Ok((column, KeyFunction::None))
        }
        _ => Err(err!(
            FeatureNotSupported,
            "an index on expression {expr} is not supported (an index takes columns, lower(column) and upper(column))"
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
        functions: Vec::new(),
        predicate: Vec::new(),
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
        let columns = resolve_columns(table, &spec.columns, &spec.functions)?;
        if spec.unique && table.has_primary_key() && columns == table.primary_key && spec.functions.is_empty() {
            // The primary key already makes these columns unique.
            continue;
        }
        let name = match &spec.name {
            Some(n) => n.clone(),
            None => {
                let mut n = default_index_name(state, &table.name, &spec.name_parts(), spec.constraint);
                let mut k = 1;
                while out.iter().any(|o| o.name == n) {
                    n = format!(
                        "{}{k}",
                        default_index_name(state, &table.name, &spec.name_parts(), spec.constraint)
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
            functions: spec.functions.clone(),
            predicate: spec.resolve_predicate(table)?,
        });
    }
    Ok(out)
}

impl IndexSpec {
    /// What an unnamed index is named after: each column's name, or the
    /// function's for an expression (`users_lower_idx`, as PostgreSQL).
    pub fn name_parts(&self) -> Vec<String> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let f = self.functions.get(i).copied().unwrap_or_default();
                f.name().map(str::to_string).unwrap_or_else(|| c.clone())
            })
            .collect()
    }

    /// The partial index's conditions, by column position.
    pub fn resolve_predicate(&self, table: &TableDef) -> Result<Vec<NullTest>> {
        self.predicate
            .iter()
            .map(|(c, is_null)| {
                let column = table
                    .column_index(c)
                    .ok_or_else(|| err!(UndefinedColumn, "column \"{c}\" does not exist"))?;
                Ok(NullTest {
                    column,
                    is_null: *is_null,
                })
            })
            .collect()
    }

    /// Refuses a function of a column that is not text ([`check_functions`]).
    pub fn check_functions(&self, table: &TableDef, columns: &[usize]) -> Result<()> {
        check_functions(table, columns, &self.functions)
    }
}

/// Refuses an index function of a column that is not text (`lower(integer)`
/// does not exist, `42883`): at `CREATE INDEX`, and when `ALTER COLUMN …
/// TYPE` would change an indexed column's type.
pub(crate) fn check_functions(table: &TableDef, columns: &[usize], functions: &[KeyFunction]) -> Result<()> {
    for (f, c) in functions.iter().zip(columns) {
        let column = &table.columns[*c];
        let text = matches!(
            column.sql_type,
            slicedb_common::SqlType::Text | slicedb_common::SqlType::Varchar(_) | slicedb_common::SqlType::Char(_)
        );
        if let (Some(name), false) = (f.name(), text) {
            return Err(err!(
                UndefinedFunction,
                "function {name}({}) does not exist",
                column.sql_type.pg_name()
            ));
        }
    }
    Ok(())
}

/// Refuses a column whose values cannot be ordered into a key (an array).
pub(crate) fn check_key_type(column: &slicedb_common::ColumnDef) -> Result<()> {
    match column.sql_type {
        slicedb_common::SqlType::Array(_) => Err(err!(
            FeatureNotSupported,
            "column \"{}\" of type {} cannot be part of a key or an index",
            column.name,
            column.sql_type.pg_name()
        )),
        _ => Ok(()),
    }
}

/// The positions of an index's columns; a column may appear twice only
/// through different functions (`upper(name), name`).
pub(crate) fn resolve_columns(table: &TableDef, columns: &[String], functions: &[KeyFunction]) -> Result<Vec<usize>> {
    let mut out: Vec<usize> = Vec::with_capacity(columns.len());
    let function = |n: usize| functions.get(n).copied().unwrap_or_default();
    for (n, c) in columns.iter().enumerate() {
        let i = table
            .column_index(c)
            .ok_or_else(|| err!(UndefinedColumn, "column \"{c}\" does not exist"))?;
        if out
            .iter()
            .enumerate()
            .any(|(m, o)| *o == i && function(m) == function(n))
        {
            return Err(err!(DuplicateColumn, "column \"{c}\" appears twice in index"));
        }
        check_key_type(&table.columns[i])?;
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
        let mut predicate = Vec::new();
        if let Some(p) = &ci.predicate {
            index_predicate(p, &mut predicate)?;
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
        let elements: Vec<(String, KeyFunction)> = ci.columns.iter().map(index_element).collect::<Result<_>>()?;
        let functions: Vec<KeyFunction> = elements.iter().map(|(_, f)| *f).collect();
        let spec = IndexSpec {
            table,
            name: ci.name.as_ref().map(relation_name).transpose()?,
            columns: elements.into_iter().map(|(c, _)| c).collect(),
            functions: match functions.iter().all(|f| *f == KeyFunction::None) {
                true => Vec::new(),
                false => functions,
            },
            predicate,
            unique: ci.unique,
            constraint: false,
            if_not_exists: ci.if_not_exists,
        };
        self.add_index(Some(session), spec).await?;
        Ok(Output::Command(CommandTag::new("CREATE INDEX")))
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
}
