//! Foreign keys, as the writers see them.
//!
//! A `FOREIGN KEY (c) REFERENCES p (r)` constraint ([`ForeignKeyDef`]) is
//! kept on two sides, both in the writing statement's transaction:
//!
//! - **Referencing rows** (the child): every write that leaves a row whose
//!   referencing values are new (an insert, or an update that changed
//!   them) locks the referenced row with a [`RowWrite::Lock`], sent to the
//!   slice server that owns the row (the parent's primary key) or its
//!   unique index entry. The lock waits for any transaction that holds the
//!   row, reports whether it exists now, and is held until the transaction
//!   ends, so no other transaction can delete the row in between: a
//!   missing row fails the statement with 23503. A deferred constraint
//!   (`INITIALLY DEFERRED`, or `SET CONSTRAINTS … DEFERRED`) leaves an
//!   [`FkEvent::Referenced`] instead, and the coordinator locks at commit.
//! - **Referenced rows** (the parent): a write that deletes a referenced
//!   row, or changes its referenced values, leaves an
//!   [`FkEvent::Removed`]. The row's own lock is held by that write. At the
//!   end of the statement the coordinator looks for referencing rows at a
//!   new snapshot, taken after the lock, so that it sees every referencing
//!   row committed by a transaction that held the referenced row's lock
//!   before; it then fails (`NO ACTION`, `RESTRICT`), or deletes or
//!   updates them (`CASCADE`, `SET NULL`, `SET DEFAULT`), through the
//!   ordinary write path.
//!
//! Locking the referenced row exclusively (PostgreSQL takes a shared
//! `KEY SHARE` lock) makes concurrent inserts of rows that reference the
//! same row wait for each other's commit; they do not fail.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use slicedb_catalog::CatalogState;
use slicedb_codec::key::row_key;
use slicedb_codec::{RowWrite, Seen, TxnWrite};
use slicedb_common::{err, pad_row, Datum, ForeignKeyDef, Result, SqlType, TableDef, TableId};

use crate::txn::FkEvent;
use crate::write::{bucket_of_row, insert_write, After, Batch, RowRouter};

/// The foreign keys of other tables (or of `table` itself) that reference
/// `table`, with the referencing table.
pub fn referencing(catalog: &CatalogState, table: TableId) -> Vec<(Arc<TableDef>, ForeignKeyDef)> {
    let mut out = Vec::new();
    for t in catalog.tables.values() {
        for fk in &t.foreign_keys {
            if fk.ref_table == table {
                out.push((t.clone(), fk.clone()));
            }
        }
    }
    out
}

/// The parent table of `fk`.
pub fn parent_of(catalog: &CatalogState, fk: &ForeignKeyDef) -> Result<Arc<TableDef>> {
    catalog
        .tables
        .values()
        .find(|t| t.id == fk.ref_table)
        .cloned()
        .ok_or_else(|| {
            err!(
                UndefinedTable,
                "the table referenced by constraint \"{}\" does not exist",
                fk.name
            )
        })
}

/// Where the row of `parent` that holds `values` in `ref_columns` is
/// locked: the storage id (the table, or a unique index's entries) and the
/// bucket and key of the row or entry.
///
/// `ref_columns` must be the parent's primary key or the columns of one of
/// its unique indexes, in any order (42830 otherwise).
pub fn lock_target(parent: &TableDef, ref_columns: &[usize], values: &[Datum]) -> Result<(TableId, u16, Vec<u8>)> {
    let same = |cols: &[usize]| cols.len() == ref_columns.len() && cols.iter().all(|c| ref_columns.contains(c));
    let mut row = vec![Datum::Null; parent.columns.len()];
    for (c, v) in ref_columns.iter().zip(values) {
        row[*c] = coerce(v.clone(), parent.columns[*c].sql_type);
    }
    if parent.has_primary_key() && same(&parent.primary_key) {
        let pk: Vec<Datum> = parent.primary_key.iter().map(|c| row[*c].clone()).collect();
        let bucket = bucket_of_row(parent, &row);
        return Ok((parent.id, bucket, row_key(bucket, &pk)?));
    }
    if let Some(index) = parent
        .indexes
        .iter()
        .find(|i| i.unique && i.is_plain() && same(&i.columns))
    {
        let entries = index.entry_table(parent);
        let entry = index
            .entry(&row, &[])
            .ok_or_else(|| slicedb_common::Error::internal("a referenced value is NULL"))?;
        if let (bucket, RowWrite::Insert { key, .. }) = insert_write(&entries, entry)? {
            return Ok((index.id, bucket, key));
        }
    }
    Err(err!(
        InvalidForeignKey,
        "there is no unique constraint matching given keys for referenced table \"{}\"",
        parent.name
    ))
}

/// A key value converted to the type of the column it is compared with:
/// integers of one width to another (a referencing `integer` column may
/// reference a `bigint` key); other values as they are.
pub fn coerce(v: Datum, ty: SqlType) -> Datum {
    let int = match v {
        Datum::Int16(i) => i64::from(i),
        Datum::Int32(i) => i64::from(i),
        Datum::Int64(i) => i,
        other => return other,
    };
    match ty {
        SqlType::SmallInt => i16::try_from(int).map(Datum::Int16).unwrap_or(Datum::Int64(int)),
        SqlType::Integer => i32::try_from(int).map(Datum::Int32).unwrap_or(Datum::Int64(int)),
        _ => Datum::Int64(int),
    }
}

/// `Key (a, b)=(1, 2)`, for messages.
pub fn key_text(table: &TableDef, columns: &[usize], values: &[Datum]) -> String {
    let names: Vec<&str> = columns.iter().map(|c| table.columns[*c].name.as_str()).collect();
    let vals: Vec<String> = columns
        .iter()
        .zip(values)
        .map(|(c, v)| v.pg_text(table.columns[*c].sql_type).unwrap_or_else(|| "null".into()))
        .collect();
    format!("Key ({})=({})", names.join(", "), vals.join(", "))
}

impl RowRouter {
    /// The foreign-key work of one flush of writes to `table` (as the
    /// catalog has it now): locks the rows that new referencing values
    /// reference (or leaves them for commit), and leaves the referenced
    /// keys that went away for the coordinator.
    ///
    /// `referencing` are the foreign keys that reference `table`
    /// ([`referencing`]); `after[i]` is what write `i` left and `seen[i]`
    /// what it found; `moves` holds the positions of deletes whose row
    /// moved to the write that follows (an update of its key).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn keep_foreign_keys(
        &self,
        txn: TxnWrite,
        catalog: &CatalogState,
        table: &TableDef,
        referencing: &[(Arc<TableDef>, ForeignKeyDef)],
        after: &[After],
        seen: &[Option<Seen>],
        moves: &HashSet<usize>,
    ) -> Result<()> {
        let missing = table.missing_values();
        let old_row = |pos: usize| -> Option<Vec<Datum>> {
            let found = seen.get(pos)?.as_ref().filter(|s| s.applied)?;
            let mut old = found.old.clone()?;
            pad_row(&mut old, &missing);
            Some(old)
        };
        let applied = |pos: usize| seen.get(pos).and_then(Option::as_ref).is_some_and(|s| s.applied);
        let mut events = Vec::new();
        let modes = self.txn.fk_modes()?;
        // The referencing side.
        for fk in &table.foreign_keys {
            let mut values: Vec<Vec<Datum>> = Vec::new();
            for (pos, a) in after.iter().enumerate() {
                if !applied(pos) {
                    continue;
                }
                let Some(new) = a.row.as_ref().and_then(|r| fk.values_of(r)) else {
                    continue;
                };
                // A row moved by an update was deleted at `pos - 1`.
                let before = match pos > 0 && moves.contains(&(pos - 1)) {
                    true => old_row(pos - 1),
                    false => old_row(pos),
                };
                if before.and_then(|o| fk.values_of(&o)).as_ref() != Some(&new) {
                    values.push(new);
                }
            }
            if values.is_empty() {
                continue;
            }
            if modes.deferred(fk) {
                events.extend(values.into_iter().map(|values| FkEvent::Referenced {
                    seq: txn.seq,
                    child: table.id,
                    fk: fk.name.clone(),
                    values,
                }));
            } else {
                self.lock_referenced(txn, catalog, table, fk, values).await?;
            }
        }
        // The referenced side.
        if !referencing.is_empty() {
            for (child, fk) in referencing {
                let mut gone: Vec<(Vec<Datum>, Option<Vec<Datum>>)> = Vec::new();
                let mut kept: Vec<Vec<Datum>> = Vec::new();
                for (pos, a) in after.iter().enumerate() {
                    if !applied(pos) {
                        continue;
                    }
                    let new = a.row.as_ref().and_then(|r| fk.ref_values_of(r));
                    if let Some(n) = &new {
                        kept.push(n.clone());
                    }
                    let Some(old) = old_row(pos).and_then(|o| fk.ref_values_of(&o)) else {
                        continue;
                    };
                    let new = match moves.contains(&pos) {
                        true => after
                            .get(pos + 1)
                            .and_then(|a| a.row.as_ref())
                            .and_then(|r| fk.ref_values_of(r)),
                        false => new,
                    };
                    if new.as_ref() != Some(&old) {
                        gone.push((old, new));
                    }
                }
                // A key written again in the same flush is still there.
                gone.retain(|(old, _)| !kept.contains(old));
                events.extend(gone.into_iter().map(|(old, new)| FkEvent::Removed {
                    seq: txn.seq,
                    child: child.id,
                    fk: fk.name.clone(),
                    old,
                    new,
                }));
            }
        }
        if !events.is_empty() {
            self.txn.add_fk_events(events)?;
        }
        Ok(())
    }

    /// Locks the rows of `fk`'s parent that hold `values` (each a tuple of
    /// referencing values of a row of `child`); fails with 23503 naming
    /// the first that does not exist.
    pub async fn lock_referenced(
        &self,
        txn: TxnWrite,
        catalog: &CatalogState,
        child: &TableDef,
        fk: &ForeignKeyDef,
        values: Vec<Vec<Datum>>,
    ) -> Result<()> {
        let parent = parent_of(catalog, fk)?;
        let placement = catalog.table_map(&parent)?;
        // One lock per distinct key, grouped by storage id (the table or
        // a unique index's entries).
        // Per storage id: the lock writes, and the values each stands for.
        type Locks = (Vec<(u16, RowWrite)>, Vec<Vec<Datum>>);
        let mut targets: BTreeMap<TableId, Locks> = BTreeMap::new();
        let mut keys = HashSet::new();
        for v in values {
            let (id, bucket, key) = lock_target(&parent, &fk.ref_columns, &v)?;
            if keys.insert(key.clone()) {
                let t = targets.entry(id).or_default();
                t.0.push((bucket, RowWrite::Lock { key }));
                t.1.push(v);
            }
        }
        for (id, (writes, values)) in targets {
            let batches = Batch::by_owner(&placement, writes);
            let (_, found) = self.send(txn, id, &fk.name, batches, true).await?;
            for (v, s) in values.iter().zip(found) {
                if s.and_then(|s| s.old).is_none() {
                    return Err(err!(
                        ForeignKeyViolation,
                        "insert or update on table \"{}\" violates foreign key constraint \"{}\" ({} is not present in table \"{}\")",
                        child.name,
                        fk.name,
                        key_text(child, &fk.columns, v),
                        parent.name
                    ));
                }
            }
        }
        Ok(())
    }
}
