//! `information_schema.columns`, from slicedb's catalog.
//!
//! DataFusion's `information_schema.columns` describes a column by its
//! Arrow type (`Int64`, `Utf8`) and lacks most of PostgreSQL's columns
//! (`udt_name`, `is_identity`…). Migration tools and ORMs that read a
//! schema from `information_schema` (Flyway, Liquibase, Prisma's
//! introspection, Rails' `columns` on some adapters) compare those
//! strings with PostgreSQL's. This view has PostgreSQL 15's 44 columns,
//! filled as PostgreSQL fills them for each column of each table:
//! `data_type` as the SQL standard names the type (`integer`, `character
//! varying`, `ARRAY` for an array), `udt_name` as `pg_type` does (`int4`,
//! `varchar`, `_text`), lengths, precisions and scales from the type's
//! modifier, the default as `pg_get_expr` prints it, and the identity
//! columns. Views' columns are not listed (PostgreSQL lists them).
//!
//! `information_schema.columns` is pointed here as the constraint views
//! are (`crate::information_schema`).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use slicedb_catalog::CatalogState;
use slicedb_common::{ColumnDef, Identity, SqlType};

/// The view's columns in PostgreSQL 15's order; `true` for its numbers
/// (`cardinal_number`), the others are text.
const COLUMNS: [(&str, bool); 44] = [
    ("table_catalog", false),
    ("table_schema", false),
    ("table_name", false),
    ("column_name", false),
    ("ordinal_position", true),
    ("column_default", false),
    ("is_nullable", false),
    ("data_type", false),
    ("character_maximum_length", true),
    ("character_octet_length", true),
    ("numeric_precision", true),
    ("numeric_precision_radix", true),
    ("numeric_scale", true),
    ("datetime_precision", true),
    ("interval_type", false),
    ("interval_precision", true),
    ("character_set_catalog", false),
    ("character_set_schema", false),
    ("character_set_name", false),
    ("collation_catalog", false),
    ("collation_schema", false),
    ("collation_name", false),
    ("domain_catalog", false),
    ("domain_schema", false),
    ("domain_name", false),
    ("udt_catalog", false),
    ("udt_schema", false),
    ("udt_name", false),
    ("scope_catalog", false),
    ("scope_schema", false),
    ("scope_name", false),
    ("maximum_cardinality", true),
    ("dtd_identifier", false),
    ("is_self_referencing", false),
    ("is_identity", false),
    ("identity_generation", false),
    ("identity_start", false),
    ("identity_increment", false),
    ("identity_maximum", false),
    ("identity_minimum", false),
    ("identity_cycle", false),
    ("is_generated", false),
    ("generation_expression", false),
    ("is_updatable", false),
];

/// The view's schema.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|(name, number)| Field::new(*name, if *number { DataType::Int32 } else { DataType::Utf8 }, true))
            .collect::<Vec<_>>(),
    ))
}

/// One value of a row: text or a number.
enum Value {
    Text(Option<String>),
    Number(Option<i32>),
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(Some(s.into()))
}

/// The SQL standard's name of a type, as `data_type` has it.
fn data_type(t: SqlType) -> String {
    match t {
        SqlType::Array(_) => "ARRAY".into(),
        SqlType::Varchar(_) => "character varying".into(),
        SqlType::Char(_) => "character".into(),
        SqlType::Numeric { .. } => "numeric".into(),
        other => other.pg_name(),
    }
}

/// `pg_type.typname` of a type.
fn udt_name(t: SqlType) -> String {
    match t {
        SqlType::SmallInt => "int2".into(),
        SqlType::Integer => "int4".into(),
        SqlType::BigInt => "int8".into(),
        SqlType::Real => "float4".into(),
        SqlType::Double => "float8".into(),
        SqlType::Numeric { .. } => "numeric".into(),
        SqlType::Boolean => "bool".into(),
        SqlType::Text => "text".into(),
        SqlType::Varchar(_) => "varchar".into(),
        SqlType::Char(_) => "bpchar".into(),
        SqlType::Bytea => "bytea".into(),
        SqlType::Date => "date".into(),
        SqlType::Timestamp => "timestamp".into(),
        SqlType::TimestampTz => "timestamptz".into(),
        SqlType::Time => "time".into(),
        SqlType::Interval => "interval".into(),
        SqlType::Uuid => "uuid".into(),
        SqlType::Json => "json".into(),
        SqlType::Jsonb => "jsonb".into(),
        SqlType::Array(e) => format!("_{}", udt_name(e.sql_type())),
    }
}

/// `character_maximum_length`, `character_octet_length`,
/// `numeric_precision`, `numeric_precision_radix`, `numeric_scale` and
/// `datetime_precision` of a type, as PostgreSQL 15 gives them.
fn sizes(t: SqlType) -> [Option<i32>; 6] {
    // A text without a length may hold 1 GiB.
    const UNBOUNDED_OCTETS: i32 = 1_073_741_824;
    match t {
        SqlType::Varchar(Some(n)) | SqlType::Char(n) => [
            Some(n as i32),
            Some((n as i32).saturating_mul(4)),
            None,
            None,
            None,
            None,
        ],
        SqlType::Varchar(None) | SqlType::Text => [None, Some(UNBOUNDED_OCTETS), None, None, None, None],
        SqlType::SmallInt => [None, None, Some(16), Some(2), Some(0), None],
        SqlType::Integer => [None, None, Some(32), Some(2), Some(0), None],
        SqlType::BigInt => [None, None, Some(64), Some(2), Some(0), None],
        SqlType::Real => [None, None, Some(24), Some(2), None, None],
        SqlType::Double => [None, None, Some(53), Some(2), None, None],
        SqlType::Numeric { precision, scale } => {
            [None, None, Some(precision as i32), Some(10), Some(scale as i32), None]
        }
        SqlType::Date => [None, None, None, None, None, Some(0)],
        SqlType::Timestamp | SqlType::TimestampTz | SqlType::Time | SqlType::Interval => {
            [None, None, None, None, None, Some(6)]
        }
        _ => [None; 6],
    }
}

/// The row of column `c` (at `position`, from 1) of table `table`.
fn row(table: &str, position: usize, c: &ColumnDef) -> Vec<Value> {
    let ty = c.sql_type;
    let [max_len, octets, precision, radix, scale, dt_precision] = sizes(ty);
    let identity = c.identity.as_ref();
    let mut out = vec![
        text(crate::DATABASE),
        text(crate::SCHEMA),
        text(table),
        text(c.name.clone()),
        Value::Number(Some(position as i32)),
        Value::Text(match identity {
            // An identity column's values come from its sequence, not a default.
            Some(_) => None,
            None => c.default.as_deref().map(|d| crate::pg_catalog::default_expr(d, ty)),
        }),
        text(if c.nullable { "YES" } else { "NO" }),
        text(data_type(ty)),
        Value::Number(max_len),
        Value::Number(octets),
        Value::Number(precision),
        Value::Number(radix),
        Value::Number(scale),
        Value::Number(dt_precision),
        Value::Text(None),
        Value::Number(None),
    ];
    // character_set_*: none; collation_*: none (PostgreSQL names only a
    // collation other than the type's default, and slicedb has one).
    out.extend((0..6).map(|_| Value::Text(None)));
    // domain_*: none; udt_*: the type.
    out.extend((0..3).map(|_| Value::Text(None)));
    out.extend([text(crate::DATABASE), text("pg_catalog"), text(udt_name(ty))]);
    // scope_*, maximum_cardinality: none; dtd_identifier: the position.
    out.extend((0..3).map(|_| Value::Text(None)));
    out.push(Value::Number(None));
    out.push(text(position.to_string()));
    out.push(text("NO"));
    out.push(text(if identity.is_some() { "YES" } else { "NO" }));
    out.push(Value::Text(identity.map(|i| {
        match i {
            Identity::Always => "ALWAYS",
            Identity::ByDefault => "BY DEFAULT",
        }
        .to_string()
    })));
    // identity_start … identity_cycle: PostgreSQL's defaults of a new
    // identity's sequence.
    let (start, increment, maximum, minimum, cycle) = match identity {
        Some(_) => {
            let max = match ty {
                SqlType::SmallInt => i16::MAX as i64,
                SqlType::Integer => i32::MAX as i64,
                _ => i64::MAX,
            };
            (
                Some("1".into()),
                Some("1".into()),
                Some(max.to_string()),
                Some("1".into()),
                Some("NO".into()),
            )
        }
        None => (None, None, None, None, Some("NO".into())),
    };
    out.extend([start, increment, maximum, minimum, cycle].map(Value::Text));
    out.push(text("NEVER"));
    out.push(Value::Text(None));
    out.push(text("YES"));
    out
}

/// The view's rows: every column of every table of `state`, by table name
/// and position.
pub fn rows(state: &CatalogState) -> datafusion::common::Result<RecordBatch> {
    let schema = schema();
    let mut texts: Vec<StringBuilder> = Vec::new();
    let mut numbers: Vec<Int32Builder> = Vec::new();
    for (_, number) in COLUMNS {
        match number {
            true => numbers.push(Int32Builder::new()),
            false => texts.push(StringBuilder::new()),
        }
    }
    let mut tables: Vec<_> = state.tables.values().collect();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    for t in tables {
        for (i, c) in t.columns.iter().enumerate() {
            let (mut ti, mut ni) = (0, 0);
            for v in row(&t.name, i + 1, c) {
                match v {
                    Value::Text(s) => {
                        texts[ti].append_option(s);
                        ti += 1;
                    }
                    Value::Number(n) => {
                        numbers[ni].append_option(n);
                        ni += 1;
                    }
                }
            }
        }
    }
    let (mut ti, mut ni) = (0, 0);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(COLUMNS.len());
    for (_, number) in COLUMNS {
        if number {
            columns.push(Arc::new(numbers[ni].finish()));
            ni += 1;
        } else {
            columns.push(Arc::new(texts[ti].finish()));
            ti += 1;
        }
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row has one value per column, of the column's kind.
    #[test]
    fn rows_fit_the_schema() {
        let mut c = ColumnDef::new("tags", SqlType::Array(slicedb_common::ArrayElem::Text));
        c.default = Some("'{}'".into());
        let values = row("t", 2, &c);
        assert_eq!(values.len(), COLUMNS.len());
        for (v, (name, number)) in values.iter().zip(COLUMNS) {
            assert_eq!(matches!(v, Value::Number(_)), number, "{name}");
        }
        assert_eq!(udt_name(c.sql_type), "_text");
        assert_eq!(data_type(c.sql_type), "ARRAY");
    }
}
