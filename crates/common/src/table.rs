//! Table definitions as the catalog records them.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::SqlType;

/// Catalog-wide identifier of a table. Id 0 is reserved for slice-server metadata keys.
pub type TableId = u32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub sql_type: SqlType,
    pub nullable: bool,
}

/// A distributed table: its columns, keys, and the hash map it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}
