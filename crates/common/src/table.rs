//! Table definitions as the catalog records them.
//!
//! [`TableDef::columns`] are the columns a user sees, in order; every
//! position the definition holds (keys, indexes, foreign keys, comments)
//! is a position in that list. A stored row has one value per **slot**: the
//! visible columns in order, with a slot left wherever `ALTER TABLE … DROP
//! COLUMN` took a column out ([`TableDef::dropped`], as PostgreSQL keeps a
//! dropped column's `attnum`). Dropping a column rewrites no row: stored
//! rows keep the dropped value, which no reader asks for
//! ([`slot_of`]), and rows written since hold NULL there
//! ([`TableDef::stored_row`]). Without dropped columns a column's position
//! is its slot.
//!
//! `ALTER TABLE … ADD COLUMN` appends a column (and a slot) without
//! touching stored rows: a row written before it is shorter than the table,
//! and a scan reads the missing tail as each column's
//! [`ColumnDef::missing`] value (the default at the time the column was
//! added, as PostgreSQL's `attmissingval`). Defaults and `CHECK`
//! constraints are kept as SQL text and planned where they are used.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
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
    /// Secondary indexes (`CREATE INDEX`, `UNIQUE` constraints): see [`IndexDef`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<IndexDef>,
    /// `FOREIGN KEY` constraints of this table (the referencing side).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_keys: Vec<ForeignKeyDef>,
    /// `COMMENT ON TABLE` / `COMMENT ON COLUMN`.
    #[serde(default, skip_serializing_if = "Comments::is_empty")]
    pub comments: Comments,
    /// The stored-row slots of dropped columns, ascending (see the module
    /// comment). Slots are never reused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<u32>,
    /// Its owner and the privileges granted on it.
    #[serde(default)]
    pub acl: crate::acl::Acl,
}

/// The stored-row slot of visible column `c` of a table whose dropped
/// columns had the slots `dropped` (ascending).
///
/// ```
/// use slicedb_common::slot_of;
/// assert_eq!(slot_of(&[], 3), 3);
/// // (a, b, c, d) with b dropped, then e added: a c d e are slots 0 2 3 4.
/// assert_eq!((0..4).map(|c| slot_of(&[1], c)).collect::<Vec<_>>(), vec![0, 2, 3, 4]);
/// ```
pub fn slot_of(dropped: &[u32], c: usize) -> usize {
    let mut slot = c;
    for d in dropped {
        if *d as usize <= slot {
            slot += 1;
        } else {
            break;
        }
    }
    slot
}

/// The comments of a table and of its columns (by column id, which never
/// changes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comments {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub columns: std::collections::BTreeMap<usize, String>,
}

impl Comments {
    pub fn is_empty(&self) -> bool {
        self.table.is_none() && self.columns.is_empty()
    }
}

/// What a foreign key does to referencing rows when the row they
/// reference is deleted, or its referenced columns change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FkAction {
    /// Fail (`23503`) if referencing rows remain at the end of the
    /// statement (or, for a deferred constraint, at commit).
    #[default]
    NoAction,
    /// Fail (`23503`) if referencing rows remain; never deferred.
    Restrict,
    /// Delete the referencing rows (or, on update, change their
    /// referencing columns to the new values).
    Cascade,
    /// Set the referencing columns to NULL.
    SetNull,
    /// Set the referencing columns to their defaults.
    SetDefault,
}

impl FkAction {
    /// The action as SQL spells it.
    pub fn sql(self) -> &'static str {
        match self {
            FkAction::NoAction => "NO ACTION",
            FkAction::Restrict => "RESTRICT",
            FkAction::Cascade => "CASCADE",
            FkAction::SetNull => "SET NULL",
            FkAction::SetDefault => "SET DEFAULT",
        }
    }
}

/// A `FOREIGN KEY (columns) REFERENCES parent (ref_columns)` constraint,
/// kept on the referencing (child) table.
///
/// The referenced columns are the parent's primary key or the columns of
/// one of its unique indexes, so a referenced row is found with one point
/// read wherever it lives. Matching is `MATCH SIMPLE`: a row with a NULL
/// in any referencing column references nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKeyDef {
    pub name: String,
    /// Referencing columns of this table.
    pub columns: Vec<usize>,
    /// The referenced table's id (it survives renames).
    pub ref_table: TableId,
    /// Referenced columns of the parent, pairwise with `columns`.
    pub ref_columns: Vec<usize>,
    #[serde(default)]
    pub on_delete: FkAction,
    #[serde(default)]
    pub on_update: FkAction,
    /// `DEFERRABLE`.
    #[serde(default)]
    pub deferrable: bool,
    /// `INITIALLY DEFERRED`: checked at commit rather than at the end of
    /// each statement.
    #[serde(default)]
    pub deferred: bool,
}

impl ForeignKeyDef {
    /// The referencing values of `row` (all columns, table order), or
    /// `None` when one of them is NULL (the row references nothing).
    pub fn values_of(&self, row: &[Datum]) -> Option<Vec<Datum>> {
        key_values(&self.columns, row)
    }

    /// The referenced values of `parent_row`, or `None` when one is NULL.
    pub fn ref_values_of(&self, parent_row: &[Datum]) -> Option<Vec<Datum>> {
        key_values(&self.ref_columns, parent_row)
    }
}

fn key_values(columns: &[usize], row: &[Datum]) -> Option<Vec<Datum>> {
    let mut out = Vec::with_capacity(columns.len());
    for c in columns {
        match row.get(*c) {
            None | Some(Datum::Null) => return None,
            Some(v) => out.push(v.clone()),
        }
    }
    Some(out)
}

/// A global secondary index of a table.
///
/// Its entries are stored like the rows of a table of their own (id
/// [`IndexDef::id`]), hash-distributed by the indexed values over the base
/// table's hash map, so an equality lookup asks one slice server. An entry
/// holds the indexed values and the [row key](ROW_KEY_ENTRY_COLUMN) of the
/// row it points to; [`IndexDef::entry_table`] describes that layout. A
/// unique index keys its entries by the indexed values alone, so a second
/// entry with the same values is a 23505 wherever the two rows live; a
/// non-unique one keys them by the values and the row key. Rows with a NULL
/// in an indexed column get no entry: NULLs never conflict (as in
/// PostgreSQL) and no equality finds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    pub name: String,
    /// Storage id of the entries (from the catalog's table ids).
    pub id: TableId,
    /// Indexed columns of the base table, in index order.
    pub columns: Vec<usize>,
    pub unique: bool,
    /// Made by a `UNIQUE` constraint (dropped with `DROP CONSTRAINT`,
    /// shown as a constraint) rather than by `CREATE INDEX`.
    #[serde(default)]
    pub constraint: bool,
    /// Still being built: writers maintain it, readers do not use it.
    #[serde(default)]
    pub building: bool,
    /// Snapshots at or after this timestamp see every entry (those before
    /// the build finished do not use the index).
    #[serde(default)]
    pub usable_from: u64,
    /// Per indexed column, the function its value goes through before it
    /// is indexed (`lower(email)`); empty when every column is indexed as
    /// it is. A query reads through such an index when its filters pin
    /// each element (`lower(email) = …`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<KeyFunction>,
    /// A partial index's `WHERE`: conditions that must all hold for a row
    /// to have an entry (`deleted_at IS NULL`); empty for a full index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub predicate: Vec<NullTest>,
}

/// `column IS NULL` (`is_null`) or `column IS NOT NULL`: a condition of a
/// partial index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NullTest {
    pub column: usize,
    pub is_null: bool,
}

/// What an index applies to a column's value: nothing, or one of the
/// functions of an expression index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum KeyFunction {
    #[default]
    None,
    /// `lower(c)`, as slicedb's `lower` computes it (Unicode lower case).
    Lower,
    /// `upper(c)`.
    Upper,
}

impl KeyFunction {
    /// The function's SQL name (`None` for a plain column).
    pub fn name(self) -> Option<&'static str> {
        match self {
            KeyFunction::None => None,
            KeyFunction::Lower => Some("lower"),
            KeyFunction::Upper => Some("upper"),
        }
    }

    /// The function of this SQL name.
    pub fn from_name(name: &str) -> Option<KeyFunction> {
        match name {
            "lower" => Some(KeyFunction::Lower),
            "upper" => Some(KeyFunction::Upper),
            _ => None,
        }
    }

    fn apply(self, v: &Datum) -> Datum {
        match (self, v) {
            (KeyFunction::Lower, Datum::Text(s)) => Datum::Text(s.to_lowercase()),
            (KeyFunction::Upper, Datum::Text(s)) => Datum::Text(s.to_uppercase()),
            _ => v.clone(),
        }
    }
}

/// Name of the last column of an index entry: the base row's key.
pub const ROW_KEY_ENTRY_COLUMN: &str = "__slicedb_row_key";

impl IndexDef {
    /// The entries' layout as a table: the indexed columns (NOT NULL), then
    /// the base row's key as `bytea`; keyed by the indexed columns (unique)
    /// or by all of them, distributed by the indexed columns over `base`'s
    /// hash map.
    pub fn entry_table(&self, base: &TableDef) -> TableDef {
        let mut columns: Vec<ColumnDef> = self
            .columns
            .iter()
            .enumerate()
            .map(|(n, c)| {
                // `lower(name)` for an expression's column: names stay unique.
                let name = match self.function(n).name() {
                    Some(f) => format!("{f}({})", base.columns[*c].name),
                    None => base.columns[*c].name.clone(),
                };
                let mut col = ColumnDef::new(name, base.columns[*c].sql_type);
                col.nullable = false;
                col
            })
            .collect();
        let mut key = ColumnDef::new(ROW_KEY_ENTRY_COLUMN, SqlType::Bytea);
        key.nullable = false;
        columns.push(key);
        let n = self.columns.len();
        let primary_key = match self.unique {
            true => (0..n).collect(),
            false => (0..=n).collect(),
        };
        TableDef {
            distribution_key: (0..n).collect(),
            primary_key_name: Some(self.name.clone()),
            ..TableDef::new(self.id, &self.name, columns, primary_key, &base.hash_map)
        }
    }

    /// The entry of a row (all columns, table order) whose key is
    /// `row_key`, or `None` when an indexed value is NULL or the row fails
    /// a partial index's condition.
    pub fn entry(&self, row: &[Datum], row_key: &[u8]) -> Option<Vec<Datum>> {
        let null = |c: usize| row.get(c).is_none_or(Datum::is_null);
        if self.predicate.iter().any(|t| null(t.column) != t.is_null) {
            return None;
        }
        let mut entry = Vec::with_capacity(self.columns.len() + 1);
        for (i, c) in self.columns.iter().enumerate() {
            match row.get(*c) {
                None | Some(Datum::Null) => return None,
                Some(v) => entry.push(self.function(i).apply(v)),
            }
        }
        entry.push(Datum::Bytes(row_key.to_vec()));
        Some(entry)
    }

    /// The function the index applies to its `i`-th column.
    pub fn function(&self, i: usize) -> KeyFunction {
        self.functions.get(i).copied().unwrap_or_default()
    }

    /// Whether every column is indexed as it is, for every row: only such
    /// an index finds rows for a foreign key, `ON CONFLICT` or the
    /// point-query router.
    pub fn is_plain(&self) -> bool {
        self.functions.iter().all(|f| *f == KeyFunction::None) && self.predicate.is_empty()
    }

    /// The columns an entry depends on: the indexed ones and those of the
    /// `WHERE` of a partial index.
    pub fn read_columns(&self) -> Vec<usize> {
        let mut out = self.columns.clone();
        for t in &self.predicate {
            if !out.contains(&t.column) {
                out.push(t.column);
            }
        }
        out
    }

    /// ` WHERE (a IS NULL)`, as PostgreSQL prints a partial index's
    /// condition, or nothing for a full index.
    pub fn predicate_text(&self, base: &TableDef) -> String {
        let tests: Vec<String> = self
            .predicate
            .iter()
            .map(|t| {
                let name = &base.columns[t.column].name;
                format!("({name} IS {}NULL)", if t.is_null { "" } else { "NOT " })
            })
            .collect();
        match tests.as_slice() {
            [] => String::new(),
            [one] => format!(" WHERE {one}"),
            many => format!(" WHERE ({})", many.join(" AND ")),
        }
    }

    /// `a, lower(b)`: the indexed columns, for messages and definitions.
    pub fn column_list(&self, base: &TableDef) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let name = &base.columns[*c].name;
                match self.function(i).name() {
                    Some(f) => format!("{f}({name})"),
                    None => name.clone(),
                }
            })
            .collect();
        names.join(", ")
    }
}

impl TableDef {
    /// A table with these columns, keyed and distributed by `primary_key`,
    /// bound to `hash_map`: no constraint, index or comment besides.
    pub fn new(id: TableId, name: &str, columns: Vec<ColumnDef>, primary_key: Vec<usize>, hash_map: &str) -> TableDef {
        TableDef {
            id,
            name: name.into(),
            columns,
            distribution_key: primary_key.clone(),
            primary_key,
            hash_map: hash_map.into(),
            checks: Vec::new(),
            primary_key_name: None,
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            comments: Default::default(),
            dropped: Vec::new(),
            acl: Default::default(),
        }
    }

    /// The Arrow schema of the table's visible columns.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| c.sql_type.field(&c.name, c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn column_types(&self) -> Vec<SqlType> {
        self.columns.iter().map(|c| c.sql_type).collect()
    }

    /// The name of the primary-key constraint.
    pub fn pkey_name(&self) -> String {
        self.primary_key_name
            .clone()
            .unwrap_or_else(|| format!("{}_pkey", self.name))
    }

    /// The indexes writers maintain (ready or being built).
    pub fn index(&self, name: &str) -> Option<&IndexDef> {
        self.indexes.iter().find(|i| i.name == name)
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

impl TableDef {
    /// A row of the visible columns, in order, as it is stored: with a NULL
    /// in the slot of each dropped column.
    pub fn stored_row(&self, mut row: Vec<Datum>) -> Vec<Datum> {
        for d in &self.dropped {
            let d = *d as usize;
            if d <= row.len() {
                row.insert(d, Datum::Null);
            }
        }
        row
    }

    /// The visible columns of a stored row (the inverse of
    /// [`TableDef::stored_row`]); a row stored before columns were added
    /// stays short (see [`pad_row`]).
    pub fn visible_row(&self, mut stored: Vec<Datum>) -> Vec<Datum> {
        for d in self.dropped.iter().rev() {
            let d = *d as usize;
            if d < stored.len() {
                stored.remove(d);
            }
        }
        stored
    }
}

/// Pads a stored row that predates columns added since with their missing
/// values (`missing` from [`TableDef::missing_values`]).
pub fn pad_row(row: &mut Vec<Datum>, missing: &[Datum]) {
    if row.len() < missing.len() {
        row.extend_from_slice(&missing[row.len()..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(columns: &[&str], dropped: Vec<u32>) -> TableDef {
        TableDef {
            id: 1,
            name: "t".into(),
            columns: columns.iter().map(|c| ColumnDef::new(*c, SqlType::Integer)).collect(),
            primary_key: vec![0],
            distribution_key: vec![0],
            hash_map: "m".into(),
            checks: Vec::new(),
            primary_key_name: None,
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            comments: Default::default(),
            dropped,
            acl: Default::default(),
        }
    }

    fn ints(v: &[i32]) -> Vec<Datum> {
        v.iter().map(|i| Datum::Int32(*i)).collect()
    }

    /// (a, b, c, d, e) with b and d dropped, then f added: a c e f are
    /// slots 0 2 4 5.
    #[test]
    fn rows_go_to_their_slots_and_come_back() {
        let t = table(&["a", "c", "e", "f"], vec![1, 3]);
        let slots: Vec<usize> = (0..4).map(|c| slot_of(&t.dropped, c)).collect();
        assert_eq!(slots, [0, 2, 4, 5]);
        let stored = t.stored_row(ints(&[1, 3, 5, 6]));
        assert_eq!(
            stored,
            [
                Datum::Int32(1),
                Datum::Null,
                Datum::Int32(3),
                Datum::Null,
                Datum::Int32(5),
                Datum::Int32(6)
            ]
        );
        assert_eq!(t.visible_row(stored), ints(&[1, 3, 5, 6]));
        // Stored before the drops (b and d hold values) and before f.
        assert_eq!(t.visible_row(ints(&[1, 2, 3, 4, 5])), ints(&[1, 3, 5]));
        // Stored before d and e were added.
        assert_eq!(t.visible_row(ints(&[1, 2, 3])), ints(&[1, 3]));
        let plain = table(&["a", "b"], Vec::new());
        assert_eq!(plain.visible_row(plain.stored_row(ints(&[1, 2]))), ints(&[1, 2]));
    }
}
