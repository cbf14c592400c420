//! Table definitions as the catalog records them.
//!
//! A column's position in [`TableDef::columns`] is also its position in a
//! stored row. `ALTER TABLE … ADD COLUMN` appends a column without touching
//! stored rows: a row written before it is shorter than the table, and a
//! scan reads the missing tail as each column's [`ColumnDef::missing`] value
//! (the default at the time the column was added, as PostgreSQL's
//! `attmissingval`). Defaults and `CHECK` constraints are kept as SQL text
//! and planned where they are used.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::{Datum, SqlType};

/// Catalog-wide identifier of a table. Id 0 is reserved for slice-server metadata keys.
pub type TableId = u32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub sql_type: SqlType,
    pub nullable: bool,
    /// The `DEFAULT` expression, as SQL text (`nextval('t_id_seq')` for a
    /// serial or identity column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// `GENERATED … AS IDENTITY`, with its sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// The value rows stored before this column was added read as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Datum>,
}

impl ColumnDef {
    /// A nullable column with no default.
    pub fn new(name: impl Into<String>, sql_type: SqlType) -> Self {
        ColumnDef {
            name: name.into(),
            sql_type,
            nullable: true,
            default: None,
            identity: None,
            missing: None,
        }
    }
}

/// An identity column: `GENERATED ALWAYS` refuses explicit values unless
/// `OVERRIDING SYSTEM VALUE`; `BY DEFAULT` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Identity {
    Always,
    ByDefault,
}

/// A `CHECK` constraint: rows for which `expr` is false are refused (23514).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDef {
    pub name: String,
    /// The condition, as SQL text over the table's columns.
    pub expr: String,
}

/// A distributed table: its columns, keys, and the hash map it is bound to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub id: TableId,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Column indexes of the primary key. Empty: rows get a hidden row id.
    pub primary_key: Vec<usize>,
    /// Column indexes of the distribution key (a subset of the primary key when there is one).
    pub distribution_key: Vec<usize>,
    /// Name of the hash map the table is bound to.
    pub hash_map: String,
    /// `CHECK` constraints, checked on every INSERT, UPDATE and COPY.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDef>,
    /// The name of the primary-key constraint (`t_pkey` unless named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key_name: Option<String>,
}

impl TableDef {
    /// The Arrow schema of the table's visible columns.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.sql_type.arrow_type(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn column_types(&self) -> Vec<SqlType> {
        self.columns.iter().map(|c| c.sql_type).collect()
    }

    pub fn has_primary_key(&self) -> bool {
        !self.primary_key.is_empty()
    }

    /// The value each column reads as in a row stored before the column was
    /// added, for rows shorter than the table (see the module comment).
    pub fn missing_values(&self) -> Vec<Datum> {
        let last = self.columns.iter().rposition(|c| c.missing.is_some());
        match last {
            None => Vec::new(),
            Some(last) => self.columns[..=last]
                .iter()
                .map(|c| c.missing.clone().unwrap_or(Datum::Null))
                .collect(),
        }
    }
}

/// Pads a stored row that predates columns added since with their missing
/// values (`missing` from [`TableDef::missing_values`]).
pub fn pad_row(row: &mut Vec<Datum>, missing: &[Datum]) {
    if row.len() < missing.len() {
        row.extend_from_slice(&missing[row.len()..]);
    }
}
