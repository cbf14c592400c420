//! The constraint views of `information_schema`, from slicedb's catalog,
//! and the pointing of `information_schema.columns` at
//! [`crate::information_columns`].
//!
//! DataFusion's `information_schema` has `tables`, `views` and `columns`,
//! but not the views migration tools and ORMs read a schema's keys from
//! (Prisma, Flyway, Liquibase, jOOQ): `table_constraints`,
//! `key_column_usage`, `referential_constraints`, `constraint_column_usage`
//! and `check_constraints`. DataFusion answers every name under
//! `information_schema` itself, so a query that names one of these is
//! pointed at a table of the same rows under `pg_catalog`
//! ([`rewrite_relations`], applied with the other catalog rewrites), which
//! [`crate::pg_catalog::PgCatalog`] builds at each scan from the same
//! constraints `pg_constraint` shows ([`rows`]).
//!
//! As in PostgreSQL, `table_constraints` lists primary keys, `UNIQUE`,
//! `FOREIGN KEY` and `CHECK` constraints, and one `CHECK` row per `NOT
//! NULL` column, named `<namespace oid>_<table oid>_<column number>_not_null`
//! (whose `check_clause` is `c IS NOT NULL`); an index that backs no
//! constraint is not a constraint.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast;
use slicedb_catalog::CatalogState;
use slicedb_common::{FkAction, TableDef};

use crate::pg_catalog::{Constraint, Oids};

/// The views served here, as `information_schema` names them (`columns`
/// by [`crate::information_columns`]).
pub const VIEWS: [&str; 6] = [
    "columns",
    "table_constraints",
    "key_column_usage",
    "referential_constraints",
    "constraint_column_usage",
    "check_constraints",
];

/// The name of a view's table under `pg_catalog`.
pub fn internal_name(view: &str) -> String {
    format!("information_schema_{view}")
}

/// The view a `pg_catalog` table name stands for, if it is one.
pub fn view_of(internal: &str) -> Option<&'static str> {
    let view = internal.strip_prefix("information_schema_")?;
    VIEWS.into_iter().find(|v| *v == view)
}

/// Points `information_schema.<view>` (also `slicedb.information_schema.<view>`)
/// at its table under `pg_catalog`. Returns whether anything changed.
pub fn rewrite_relations(stmt: &mut ast::Statement) -> bool {
    let mut changed = false;
    let _ = ast::visit_relations_mut(stmt, |name| {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
            .collect();
        if let [.., schema, view] = parts.as_slice() {
            if schema == "information_schema" && parts.len() <= 3 {
                if let Some(view) = VIEWS.into_iter().find(|v| v == view) {
                    *name = ast::ObjectName::from(vec![
                        ast::Ident::new("pg_catalog"),
                        ast::Ident::new(internal_name(view)),
                    ]);
                    changed = true;
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

/// The columns of `view`, as PostgreSQL 15 has them.
pub fn schema(view: &str) -> SchemaRef {
    if view == "columns" {
        return crate::information_columns::schema();
    }
    let triple = |of: &str| ["catalog", "schema", "name"].map(|part| format!("{of}_{part}"));
    let more = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let names: Vec<String> = match view {
        "table_constraints" => [
            &triple("constraint")[..],
            &triple("table"),
            &more(&[
                "constraint_type",
                "is_deferrable",
                "initially_deferred",
                "enforced",
                "nulls_distinct",
            ]),
        ]
        .concat(),
        "key_column_usage" => [&triple("constraint")[..], &triple("table"), &more(&["column_name"])].concat(),
        "referential_constraints" => [
            &triple("constraint")[..],
            &triple("unique_constraint"),
            &more(&["match_option", "update_rule", "delete_rule"]),
        ]
        .concat(),
        "check_constraints" => [&triple("constraint")[..], &more(&["check_clause"])].concat(),
        _ => [&triple("table")[..], &more(&["column_name"]), &triple("constraint")].concat(),
    };
    let mut fields: Vec<Field> = names.iter().map(|n| text(n)).collect();
    if view == "key_column_usage" {
        fields.push(Field::new("ordinal_position", DataType::Int32, true));
        fields.push(Field::new("position_in_unique_constraint", DataType::Int32, true));
    }
    Arc::new(Schema::new(fields))
}

/// A view's rows: text columns as built, then `key_column_usage`'s two numbers.
struct Rows {
    text: Vec<StringBuilder>,
    numbers: Vec<Int32Builder>,
}

impl Rows {
    fn new(schema: &SchemaRef) -> Rows {
        let numbers = schema
            .fields()
            .iter()
            .filter(|f| f.data_type() == &DataType::Int32)
            .count();
        Rows {
            text: (0..schema.fields().len() - numbers)
                .map(|_| StringBuilder::new())
                .collect(),
            numbers: (0..numbers).map(|_| Int32Builder::new()).collect(),
        }
    }

    fn push(&mut self, text: &[Option<&str>], numbers: &[Option<i32>]) {
        for (b, v) in self.text.iter_mut().zip(text) {
            b.append_option(*v);
        }
        for (b, v) in self.numbers.iter_mut().zip(numbers) {
            b.append_option(*v);
        }
    }

    fn finish(mut self, schema: &SchemaRef) -> datafusion::common::Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = self.text.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        columns.extend(self.numbers.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

fn rule(action: FkAction) -> &'static str {
    match action {
        FkAction::NoAction => "NO ACTION",
        FkAction::Restrict => "RESTRICT",
        FkAction::Cascade => "CASCADE",
        FkAction::SetNull => "SET NULL",
        FkAction::SetDefault => "SET DEFAULT",
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "YES"
    } else {
        "NO"
    }
}

/// `[catalog, schema, name]` of an object of schema `public`.
fn qualified(name: &str) -> [Option<&str>; 3] {
    [Some(crate::DATABASE), Some(crate::SCHEMA), Some(name)]
}

/// The key of `parent` a foreign key references (`columns`, in any
/// order): the primary key or a unique index, with its name.
fn referenced_key<'a>(parent: &'a TableDef, columns: &[usize]) -> Option<(String, &'a [usize])> {
    let same = |key: &[usize]| key.len() == columns.len() && key.iter().all(|k| columns.contains(k));
    if same(&parent.primary_key) {
        return Some((parent.pkey_name(), &parent.primary_key));
    }
    let index = parent
        .indexes
        .iter()
        .find(|i| i.unique && i.is_plain() && same(&i.columns))?;
    Some((index.name.clone(), &index.columns))
}

/// The rows of `view`: from `constraints` (every constraint of `state`,
/// as `pg_constraint` has them) and, for the `NOT NULL` rows, the oid of
/// namespace `public`.
pub(crate) fn rows(
    view: &str,
    state: &CatalogState,
    constraints: &[Constraint],
    public_oid: i64,
) -> datafusion::common::Result<RecordBatch> {
    if view == "columns" {
        return crate::information_columns::rows(state);
    }
    let schema = schema(view);
    let mut rows = Rows::new(&schema);
    let table = |id: u32| state.tables.values().find(|t| t.id == id);
    for c in constraints {
        let Some(t) = table(c.table) else { continue };
        let name = qualified(&c.name);
        let on = qualified(&t.name);
        match view {
            "table_constraints" => {
                let kind = match c.kind {
                    'p' => "PRIMARY KEY",
                    'u' => "UNIQUE",
                    'f' => "FOREIGN KEY",
                    _ => "CHECK",
                };
                let nulls_distinct = (c.kind == 'u').then_some("YES");
                let rest = [
                    Some(kind),
                    Some(yes(c.deferrable)),
                    Some(yes(c.deferred)),
                    Some("YES"),
                    nulls_distinct,
                ];
                rows.push(&[&name[..], &on, &rest].concat(), &[]);
            }
            "key_column_usage" if c.kind != 'c' => {
                let key = c
                    .references
                    .as_ref()
                    .and_then(|r| Some((r, referenced_key(table(r.table)?, &r.columns)?.1)));
                for (n, col) in c.columns.iter().enumerate() {
                    // Where the referenced column stands in the key it belongs to.
                    let in_unique = key.and_then(|(r, key)| {
                        let at = key.iter().position(|k| Some(k) == r.columns.get(n))?;
                        Some(at as i32 + 1)
                    });
                    let column = [t.columns.get(*col).map(|c| c.name.as_str())];
                    rows.push(&[&name[..], &on, &column].concat(), &[Some(n as i32 + 1), in_unique]);
                }
            }
            "referential_constraints" => {
                let Some(r) = &c.references else { continue };
                let Some(parent) = table(r.table) else { continue };
                let unique = referenced_key(parent, &r.columns).map(|(name, _)| name);
                let mut unique = qualified(unique.as_deref().unwrap_or_default());
                if unique[2] == Some("") {
                    unique[2] = None;
                }
                let rest = [Some("NONE"), Some(rule(r.on_update)), Some(rule(r.on_delete))];
                rows.push(&[&name[..], &unique, &rest].concat(), &[]);
            }
            "check_constraints" if c.kind == 'c' => {
                let clause = c.definition.strip_prefix("CHECK ").unwrap_or(&c.definition);
                rows.push(&[&name[..], &[Some(clause)]].concat(), &[]);
            }
            "constraint_column_usage" => {
                let (owner, columns) = match &c.references {
                    Some(r) => match table(r.table) {
                        Some(parent) => (parent, &r.columns),
                        None => continue,
                    },
                    None => (t, &c.columns),
                };
                for col in columns {
                    let column = [owner.columns.get(*col).map(|c| c.name.as_str())];
                    rows.push(&[&qualified(&owner.name)[..], &column, &name].concat(), &[]);
                }
            }
            _ => {}
        }
    }
    if matches!(view, "table_constraints" | "check_constraints") {
        // PostgreSQL 15 lists each NOT NULL column as a CHECK constraint.
        for t in state.tables.values() {
            for (i, col) in t.columns.iter().enumerate().filter(|(_, c)| !c.nullable) {
                let check = format!("{public_oid}_{}_{}_not_null", Oids::relation(t.id), i + 1);
                if view == "check_constraints" {
                    let clause = format!("{} IS NOT NULL", crate::pg_catalog::quote_ident(&col.name));
                    rows.push(&[&qualified(&check)[..], &[Some(clause.as_str())]].concat(), &[]);
                    continue;
                }
                let rest = [Some("CHECK"), Some("NO"), Some("NO"), Some("YES"), None];
                rows.push(&[&qualified(&check)[..], &qualified(&t.name), &rest].concat(), &[]);
            }
        }
    }
    rows.finish(&schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn constraint_views_are_pointed_at_pg_catalog() {
        let mut stmt = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT * FROM information_schema.table_constraints tc \
             JOIN INFORMATION_SCHEMA.Key_Column_Usage k ON true \
             JOIN information_schema.columns c ON true \
             JOIN information_schema.tables t ON true",
        )
        .unwrap()
        .remove(0);
        assert!(rewrite_relations(&mut stmt));
        assert_eq!(
            stmt.to_string(),
            "SELECT * FROM pg_catalog.information_schema_table_constraints tc \
             JOIN pg_catalog.information_schema_key_column_usage k ON true \
             JOIN pg_catalog.information_schema_columns c ON true \
             JOIN information_schema.tables t ON true"
        );
        assert_eq!(view_of("information_schema_key_column_usage"), Some("key_column_usage"));
        assert_eq!(view_of("information_schema_columns"), Some("columns"));
        assert_eq!(view_of("information_schema_tables"), None);
    }
}
