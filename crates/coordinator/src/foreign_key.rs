//! Foreign keys: their DDL, and the end-of-statement and commit-time work
//! the writers leave ([`slicedb_planner::foreign_key`] describes the
//! protocol).
//!
//! After each write statement, [`Coordinator::keep_foreign_keys`] takes the
//! referenced keys the statement removed ([`FkEvent::Removed`]) and, at a
//! new snapshot (taken after the statement holds the removed rows' locks),
//! with the transaction's own writes visible:
//!
//! 1. drops the keys that are present again (re-inserted in the same
//!    statement);
//! 2. for `NO ACTION` and `RESTRICT`, fails with 23503 if a referencing
//!    row remains; for `CASCADE`, deletes the referencing rows (or, on an
//!    update, changes their referencing values to the new ones); for `SET
//!    NULL` and `SET DEFAULT`, updates them; these writes go through the
//!    ordinary write path in the same transaction and statement, and may
//!    leave work of their own, done in the next round.
//!
//! A deferred constraint's work waits for commit: [`Coordinator::
//! keep_deferred_foreign_keys`] then also locks the rows that deferred
//! references point to ([`FkEvent::Referenced`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::sqlparser::ast::{self, ForeignKeyConstraint, ReferentialAction};
use slicedb_catalog::CatalogState;
use slicedb_common::datum::build_array;
use slicedb_common::{err, Datum, Error, FkAction, ForeignKeyDef, Result, SqlType, TableDef};
use slicedb_planner::foreign_key::{coerce, key_text, lock_target, parent_of};
use slicedb_planner::txn::{FkEvent, StatementTxn};
use slicedb_storage::{OwnWrites, ReadAt};

use crate::ddl::{normalize, relation_name};
use crate::execute::PlanKind;
use crate::parser::{self, Statement};
use crate::sequence::SessionValues;
use crate::Coordinator;

/// Rounds of cascaded work after one statement (a chain of `CASCADE`
/// constraints deeper than this fails rather than running on).
const MAX_ROUNDS: usize = 1000;

/// Referenced keys per query or cascaded write.
const CHUNK: usize = 500;

impl Coordinator {
    /// `SET CONSTRAINTS {ALL | names} {DEFERRED | IMMEDIATE}`: changes when
    /// the transaction checks its deferrable foreign keys; a constraint made
    /// immediate is checked at once for what the transaction did so far.
    /// Outside a block it does nothing, as in PostgreSQL (which warns).
    pub(crate) async fn set_constraints(
        &self,
        session: &mut crate::Session,
        names: Option<Vec<String>>,
        deferred: bool,
    ) -> Result<crate::Output> {
        let tag = || crate::Output::Command(crate::CommandTag::new("SET CONSTRAINTS"));
        let Some(txn) = session.txn.as_mut() else {
            return Ok(tag());
        };
        if let Some(names) = &names {
            let catalog = self.catalog.snapshot();
            for n in names {
                let found: Vec<&ForeignKeyDef> = catalog
                    .tables
                    .values()
                    .flat_map(|t| t.foreign_keys.iter())
                    .filter(|f| &f.name == n)
                    .collect();
                if found.is_empty() {
                    return Err(err!(UndefinedObject, "constraint \"{n}\" does not exist"));
                }
                if found.iter().any(|f| !f.deferrable) {
                    return Err(err!(WrongObjectType, "constraint \"{n}\" is not deferrable"));
                }
            }
        }
        {
            let mut w = txn
                .writes
                .lock()
                .map_err(|_| Error::internal("transaction writes lock poisoned"))?;
            match &names {
                None => {
                    w.fk_modes.all = Some(deferred);
                    w.fk_modes.named.clear();
                }
                Some(names) => {
                    for n in names {
                        w.fk_modes.named.insert(n.clone(), deferred);
                    }
                }
            }
        }
        if !deferred {
            let (stmt, snapshot) = self.txns.next_statement(txn).await?;
            let sequences = session.sequences.clone();
            let checked = self.keep_foreign_keys(&stmt, &sequences, false).await;
            drop(snapshot);
            checked?;
        }
        Ok(tag())
    }
}

/// A referenced key's old values and, for an update, its new ones.
type KeyChange = (Vec<Datum>, Option<Vec<Datum>>);

/// A foreign key as written in CREATE or ALTER TABLE, before the tables'
/// ids are known.
#[derive(Debug, Clone)]
pub struct FkSpec {
    pub name: Option<String>,
    pub columns: Vec<String>,
    pub parent: String,
    /// Empty: the parent's primary key.
    pub ref_columns: Vec<String>,
    pub on_delete: FkAction,
    pub on_update: FkAction,
    pub deferrable: bool,
    pub deferred: bool,
}

fn action(a: Option<ReferentialAction>) -> FkAction {
    match a {
        None | Some(ReferentialAction::NoAction) => FkAction::NoAction,
        Some(ReferentialAction::Restrict) => FkAction::Restrict,
        Some(ReferentialAction::Cascade) => FkAction::Cascade,
        Some(ReferentialAction::SetNull) => FkAction::SetNull,
        Some(ReferentialAction::SetDefault) => FkAction::SetDefault,
    }
}

/// Reads a `FOREIGN KEY … REFERENCES` clause; `column` is the column of a
/// column constraint (`c int REFERENCES p`).
pub fn fk_spec(fk: &ForeignKeyConstraint, column: Option<&str>) -> Result<FkSpec> {
    if let Some(kind) = &fk.match_kind {
        if !matches!(kind, ast::ConstraintReferenceMatchKind::Simple) {
            return Err(err!(FeatureNotSupported, "MATCH {kind} foreign keys are not supported"));
        }
    }
    let (mut deferrable, mut deferred) = (false, false);
    if let Some(c) = &fk.characteristics {
        if c.enforced == Some(false) {
            return Err(err!(FeatureNotSupported, "NOT ENFORCED constraints are not supported"));
        }
        deferrable = c.deferrable.unwrap_or(false);
        if matches!(c.initially, Some(ast::DeferrableInitial::Deferred)) {
            if c.deferrable == Some(false) {
                return Err(err!(
                    InvalidTableDefinition,
                    "constraint declared INITIALLY DEFERRED must be DEFERRABLE"
                ));
            }
            deferrable = true;
            deferred = true;
        }
    }
    let mut columns: Vec<String> = fk.columns.iter().map(normalize).collect();
    if columns.is_empty() {
        columns.extend(column.map(str::to_string));
    }
    Ok(FkSpec {
        name: fk.name.as_ref().map(normalize),
        columns,
        parent: relation_name(&fk.foreign_table)?,
        ref_columns: fk.referred_columns.iter().map(normalize).collect(),
        on_delete: action(fk.on_delete),
        on_update: action(fk.on_update),
        deferrable,
        deferred,
    })
}

/// Can a referencing value of type `child` find a referenced one of type
/// `parent` by key? (Keys compare by their encoding: integers of any width
/// and the text types are converted; others must match.)
fn compatible(child: SqlType, parent: SqlType) -> bool {
    let text = |t: SqlType| matches!(t, SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_));
    child == parent || (child.is_integer() && parent.is_integer()) || (text(child) && text(parent))
}

/// Resolves `spec` on `child` (whose id is already assigned) against the
/// catalog `state` (or `child` itself for a self-reference): the
/// referenced columns must be the parent's primary key or a unique index.
/// `taken` are constraint names in use on the child.
pub fn resolve(state: &CatalogState, child: &TableDef, spec: &FkSpec, taken: &[String]) -> Result<ForeignKeyDef> {
    let parent: Arc<TableDef> = if spec.parent == child.name {
        Arc::new(child.clone())
    } else {
        state.table(&spec.parent)?
    };
    let columns: Vec<usize> = spec
        .columns
        .iter()
        .map(|c| {
            child.column_index(c).ok_or_else(|| {
                err!(
                    UndefinedColumn,
                    "column \"{c}\" referenced in foreign key constraint does not exist"
                )
            })
        })
        .collect::<Result<_>>()?;
    let ref_columns: Vec<usize> = if spec.ref_columns.is_empty() {
        if !parent.has_primary_key() {
            return Err(err!(
                InvalidForeignKey,
                "there is no primary key for referenced table \"{}\"",
                parent.name
            ));
        }
        parent.primary_key.clone()
    } else {
        spec.ref_columns
            .iter()
            .map(|c| {
                parent.column_index(c).ok_or_else(|| {
                    err!(
                        UndefinedColumn,
                        "column \"{c}\" referenced in foreign key constraint does not exist"
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    if columns.len() != ref_columns.len() {
        return Err(err!(
            InvalidForeignKey,
            "number of referencing and referenced columns for foreign key disagree"
        ));
    }
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| default_name(child, &columns, taken));
    if taken.contains(&name) {
        return Err(err!(
            DuplicateObject,
            "constraint \"{name}\" for relation \"{}\" already exists",
            child.name
        ));
    }
    for (c, r) in columns.iter().zip(&ref_columns) {
        let (ct, pt) = (child.columns[*c].sql_type, parent.columns[*r].sql_type);
        if !compatible(ct, pt) {
            return Err(err!(
                DatatypeMismatch,
                "foreign key constraint \"{name}\" cannot be implemented: key columns \"{}\" and \"{}\" are of incompatible types: {} and {}",
                child.columns[*c].name,
                parent.columns[*r].name,
                ct.pg_name(),
                pt.pg_name()
            ));
        }
    }
    if parent
        .indexes
        .iter()
        .any(|i| i.building && i.unique && i.is_plain() && i.columns.iter().all(|c| ref_columns.contains(c)))
    {
        return Err(err!(
            ObjectNotInPrerequisiteState,
            "the unique index of \"{}\" that constraint \"{name}\" needs is still being built",
            parent.name
        ));
    }
    // The referenced columns must be a key: lock_target says so.
    let probe: Vec<Datum> = ref_columns
        .iter()
        .map(|c| probe_value(parent.columns[*c].sql_type))
        .collect();
    lock_target(&parent, &ref_columns, &probe)?;
    Ok(ForeignKeyDef {
        name,
        columns,
        ref_table: parent.id,
        ref_columns,
        on_delete: spec.on_delete,
        on_update: spec.on_update,
        deferrable: spec.deferrable,
        deferred: spec.deferred,
    })
}

/// A value of type `ty` (what it is does not matter: only its key's shape).
fn probe_value(ty: SqlType) -> Datum {
    match ty {
        SqlType::Boolean => Datum::Bool(false),
        SqlType::SmallInt => Datum::Int16(0),
        SqlType::Integer => Datum::Int32(0),
        SqlType::BigInt => Datum::Int64(0),
        SqlType::Real => Datum::Float32(0.0),
        SqlType::Double => Datum::Float64(0.0),
        SqlType::Date => Datum::Date(0),
        SqlType::Timestamp | SqlType::TimestampTz => Datum::Timestamp(0),
        SqlType::Bytea => Datum::Bytes(Vec::new()),
        SqlType::Numeric { scale, .. } => Datum::Decimal { value: 0, scale },
        SqlType::Time => Datum::Time(0),
        SqlType::Interval => Datum::Interval {
            months: 0,
            days: 0,
            micros: 0,
        },
        SqlType::Array(_) => Datum::Array(Vec::new()),
        _ => Datum::Text(String::new()),
    }
}

/// PostgreSQL's name for an unnamed foreign key: `t_a_b_fkey`, numbered
/// when taken.
fn default_name(child: &TableDef, columns: &[usize], taken: &[String]) -> String {
    let cols: Vec<&str> = columns.iter().map(|c| child.columns[*c].name.as_str()).collect();
    let base = format!("{}_{}_fkey", child.name, cols.join("_"));
    let mut name = base.clone();
    let mut n = 1;
    while taken.contains(&name) {
        name = format!("{base}{n}");
        n += 1;
    }
    name
}

/// Constraint names in use on `table`.
pub fn constraint_names(table: &TableDef) -> Vec<String> {
    let mut names: Vec<String> = table.checks.iter().map(|c| c.name.clone()).collect();
    names.extend(table.indexes.iter().map(|i| i.name.clone()));
    names.extend(table.foreign_keys.iter().map(|f| f.name.clone()));
    names.push(table.pkey_name());
    names
}

/// The foreign keys of other tables that reference `table` (by id), as
/// `(child name, constraint name)`.
pub fn referenced_by(state: &CatalogState, table: &TableDef) -> Vec<(String, String)> {
    slicedb_planner::foreign_key::referencing(state, table.id)
        .into_iter()
        .filter(|(child, _)| child.id != table.id)
        .map(|(child, fk)| (child.name.clone(), fk.name))
        .collect()
}

/// `"c"` quoted as an identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `values` as scalars of the types of `columns` of `table`.
fn scalars(table: &TableDef, columns: &[usize], values: &[Datum]) -> Result<Vec<ScalarValue>> {
    columns
        .iter()
        .zip(values)
        .map(|(c, v)| {
            let ty = table.columns[*c].sql_type;
            let v = coerce(v.clone(), ty);
            let array = build_array(ty, std::iter::once(&v))?;
            Ok(ScalarValue::try_from_array(array.as_ref(), 0)?)
        })
        .collect()
}

/// `WHERE` text matching `columns` of `table` against each tuple of
/// `keys`, with parameters from `$first`; and the parameters.
fn key_filter(
    table: &TableDef,
    columns: &[usize],
    keys: &[Vec<Datum>],
    first: usize,
) -> Result<(String, Vec<ScalarValue>)> {
    let mut params = Vec::new();
    let mut n = first;
    let filter = if columns.len() == 1 {
        let mut list = Vec::new();
        for k in keys {
            params.extend(scalars(table, columns, k)?);
            list.push(format!("${n}"));
            n += 1;
        }
        format!("{} IN ({})", ident(&table.columns[columns[0]].name), list.join(", "))
    } else {
        let mut ors = Vec::new();
        for k in keys {
            params.extend(scalars(table, columns, k)?);
            let ands: Vec<String> = columns
                .iter()
                .map(|c| {
                    let s = format!("{} = ${n}", ident(&table.columns[*c].name));
                    n += 1;
                    s
                })
                .collect();
            ors.push(format!("({})", ands.join(" AND ")));
        }
        ors.join(" OR ")
    };
    Ok((filter, params))
}

impl Coordinator {
    /// Does the work that the statement `stmt` left for the end of its
    /// statement, and with `at_commit` the deferred work too; see the
    /// module documentation.
    pub(crate) async fn keep_foreign_keys(
        &self,
        stmt: &Arc<StatementTxn>,
        sequences: &SessionValues,
        at_commit: bool,
    ) -> Result<()> {
        for _ in 0..MAX_ROUNDS {
            let catalog = self.catalog.snapshot();
            let modes = stmt.fk_modes()?;
            let deferred = |e: &FkEvent| -> bool {
                let (child, fk) = match e {
                    FkEvent::Removed { child, fk, .. } | FkEvent::Referenced { child, fk, .. } => (child, fk),
                };
                let Some(def) = fk_by_name(&catalog, *child, fk) else {
                    return false;
                };
                match e {
                    FkEvent::Removed { new, .. } => {
                        let action = if new.is_none() { def.on_delete } else { def.on_update };
                        modes.deferred(def) && action == FkAction::NoAction
                    }
                    FkEvent::Referenced { .. } => modes.deferred(def),
                }
            };
            let events = stmt.take_fk_events(|e| !at_commit && deferred(e))?;
            if events.is_empty() {
                return Ok(());
            }
            // A snapshot taken now sees every referencing row committed by
            // a transaction that held a removed row's lock before us.
            let snapshot = self.txns.snapshot().await?;
            let fresh = Arc::new(StatementTxn {
                read: ReadAt {
                    ts: snapshot.ts,
                    own: stmt.read.own.map(|o| OwnWrites {
                        txn: o.txn,
                        before_seq: u32::MAX,
                    }),
                },
                write: stmt.write,
                writes: stmt.writes.clone(),
            });
            // Grouped by constraint and kind, in order of first appearance.
            let mut groups: BTreeMap<(u32, String, u8), Vec<KeyChange>> = BTreeMap::new();
            for e in events {
                match e {
                    FkEvent::Removed {
                        child, fk, old, new, ..
                    } => {
                        let kind = if new.is_none() { 0 } else { 1 };
                        groups.entry((child, fk, kind)).or_default().push((old, new));
                    }
                    FkEvent::Referenced { child, fk, values, .. } => {
                        groups.entry((child, fk, 2)).or_default().push((values, None));
                    }
                }
            }
            for ((child, fk, kind), keys) in groups {
                let Some(child) = catalog.tables.values().find(|t| t.id == child).cloned() else {
                    continue;
                };
                let Some(fk) = child.foreign_keys.iter().find(|f| f.name == fk).cloned() else {
                    continue;
                };
                if kind == 2 {
                    let values = keys.into_iter().map(|(v, _)| v).collect();
                    self.lock_deferred(&fresh, &catalog, &child, &fk, values).await?;
                    continue;
                }
                let parent = parent_of(&catalog, &fk)?;
                self.act_on_removed(&fresh, sequences, &parent, &child, &fk, kind == 0, keys)
                    .await?;
            }
            drop(snapshot);
        }
        Err(err!(
            ObjectNotInPrerequisiteState,
            "foreign key actions cascaded more than {MAX_ROUNDS} levels deep"
        ))
    }

    /// Locks the rows that the references of a deferred constraint point
    /// to (23503 if one is missing).
    async fn lock_deferred(
        &self,
        stmt: &Arc<StatementTxn>,
        catalog: &CatalogState,
        child: &Arc<TableDef>,
        fk: &ForeignKeyDef,
        values: Vec<Vec<Datum>>,
    ) -> Result<()> {
        let table = self.slice_table(&child.name)?;
        let router = slicedb_planner::write::RowRouter::new(table, stmt.clone());
        router.lock_referenced(stmt.writer()?, catalog, child, fk, values).await
    }

    /// Applies `fk`'s action to the rows of `child` that reference keys of
    /// `parent` the statement deleted (`deleted`) or changed.
    #[allow(clippy::too_many_arguments)]
    async fn act_on_removed(
        &self,
        stmt: &Arc<StatementTxn>,
        sequences: &SessionValues,
        parent: &TableDef,
        child: &TableDef,
        fk: &ForeignKeyDef,
        deleted: bool,
        mut keys: Vec<KeyChange>,
    ) -> Result<()> {
        // Keys present again are still referenced rightly.
        let mut present: Vec<Vec<Datum>> = Vec::new();
        let olds: Vec<Vec<Datum>> = keys.iter().map(|(o, _)| o.clone()).collect();
        for chunk in olds.chunks(CHUNK) {
            let (filter, params) = key_filter(parent, &fk.ref_columns, chunk, 1)?;
            let cols: Vec<String> = fk.ref_columns.iter().map(|c| ident(&parent.columns[*c].name)).collect();
            let sql = format!("SELECT {} FROM {} WHERE {filter}", cols.join(", "), ident(&parent.name));
            present.extend(
                self.key_rows(&sql, params, stmt, sequences, parent, &fk.ref_columns)
                    .await?,
            );
        }
        keys.retain(|(old, _)| !present.iter().any(|p| same_key(p, old)));
        if keys.is_empty() {
            return Ok(());
        }
        let action = if deleted { fk.on_delete } else { fk.on_update };
        let set = |value: &str| -> String {
            fk.columns
                .iter()
                .map(|c| format!("{} = {value}", ident(&child.columns[*c].name)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match action {
            FkAction::NoAction | FkAction::Restrict => {
                let olds: Vec<Vec<Datum>> = keys.iter().map(|(o, _)| o.clone()).collect();
                for chunk in olds.chunks(CHUNK) {
                    let (filter, params) = key_filter(child, &fk.columns, chunk, 1)?;
                    let cols: Vec<String> = fk.columns.iter().map(|c| ident(&child.columns[*c].name)).collect();
                    let sql = format!(
                        "SELECT {} FROM {} WHERE {filter} LIMIT 1",
                        cols.join(", "),
                        ident(&child.name)
                    );
                    let found = self.key_rows(&sql, params, stmt, sequences, child, &fk.columns).await?;
                    if let Some(k) = found.first() {
                        return Err(err!(
                            ForeignKeyViolation,
                            "update or delete on table \"{}\" violates foreign key constraint \"{}\" on table \"{}\" ({} is still referenced from table \"{}\")",
                            parent.name,
                            fk.name,
                            child.name,
                            key_text(parent, &fk.ref_columns, k),
                            child.name
                        ));
                    }
                }
            }
            FkAction::Cascade if deleted => {
                let olds: Vec<Vec<Datum>> = keys.iter().map(|(o, _)| o.clone()).collect();
                for chunk in olds.chunks(CHUNK) {
                    let (filter, params) = key_filter(child, &fk.columns, chunk, 1)?;
                    let sql = format!("DELETE FROM {} WHERE {filter}", ident(&child.name));
                    self.cascaded_write(&sql, params, PlanKind::Delete, stmt, sequences)
                        .await?;
                }
            }
            FkAction::Cascade => {
                for (old, new) in keys {
                    let Some(new) = new else { continue };
                    let mut params = scalars(child, &fk.columns, &new)?;
                    let assignments: Vec<String> = fk
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| format!("{} = ${}", ident(&child.columns[*c].name), i + 1))
                        .collect();
                    let (filter, more) = key_filter(child, &fk.columns, &[old], fk.columns.len() + 1)?;
                    params.extend(more);
                    let sql = format!(
                        "UPDATE {} SET {} WHERE {filter}",
                        ident(&child.name),
                        assignments.join(", ")
                    );
                    self.cascaded_write(&sql, params, PlanKind::Update, stmt, sequences)
                        .await?;
                }
            }
            FkAction::SetNull | FkAction::SetDefault => {
                let value = if action == FkAction::SetNull { "NULL" } else { "DEFAULT" };
                let olds: Vec<Vec<Datum>> = keys.iter().map(|(o, _)| o.clone()).collect();
                for chunk in olds.chunks(CHUNK) {
                    let (filter, params) = key_filter(child, &fk.columns, chunk, 1)?;
                    let sql = format!("UPDATE {} SET {} WHERE {filter}", ident(&child.name), set(value));
                    self.cascaded_write(&sql, params, PlanKind::Update, stmt, sequences)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The values of `columns` of `table` in the rows of query `sql`.
    async fn key_rows(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        stmt: &Arc<StatementTxn>,
        sequences: &SessionValues,
        table: &TableDef,
        columns: &[usize],
    ) -> Result<Vec<Vec<Datum>>> {
        let query = single(sql)?;
        let params = ParamValues::List(params.into_iter().map(Into::into).collect());
        let batches = self.query_rows(query, Some(&params), stmt, sequences).await?;
        let mut out = Vec::new();
        for b in batches {
            for i in 0..b.num_rows() {
                let row: Vec<Datum> = columns
                    .iter()
                    .enumerate()
                    .map(|(j, c)| Datum::from_array(b.column(j).as_ref() as &dyn Array, i, table.columns[*c].sql_type))
                    .collect::<Result<_>>()?;
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Runs a cascaded DELETE or UPDATE in the statement's transaction.
    async fn cascaded_write(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        kind: PlanKind,
        stmt: &Arc<StatementTxn>,
        sequences: &SessionValues,
    ) -> Result<u64> {
        let statement = single(sql)?;
        let params = ParamValues::List(params.into_iter().map(Into::into).collect());
        let plan = self.plan(&statement).await?.plan.replace_params_with_values(&params)?;
        let (n, _) = self
            .execute_plan(plan, kind, stmt.clone(), sequences, false, false)
            .await?;
        Ok(n)
    }
}

/// Do two keys hold the same values (integers of any width alike)?
fn same_key(a: &[Datum], b: &[Datum]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || x.sql_cmp(y) == Some(std::cmp::Ordering::Equal))
}

/// The constraint `name` of the table with id `child`.
fn fk_by_name<'a>(catalog: &'a CatalogState, child: u32, name: &str) -> Option<&'a ForeignKeyDef> {
    catalog
        .tables
        .values()
        .find(|t| t.id == child)?
        .foreign_keys
        .iter()
        .find(|f| f.name == name)
}

/// The one SQL statement of `sql`.
fn single(sql: &str) -> Result<ast::Statement> {
    match parser::parse(sql)?.pop() {
        Some(Statement::Sql(s)) => Ok(*s),
        _ => Err(Error::internal(format!("an internal statement did not parse: {sql}"))),
    }
}

impl Coordinator {
    /// `ALTER TABLE child ADD [CONSTRAINT n] FOREIGN KEY …`: writers check
    /// the constraint from the moment it is published; then the rows
    /// already stored are checked, and the constraint taken back if one
    /// references a missing row (23503).
    pub(crate) async fn add_foreign_key(&self, child: &str, spec: &FkSpec) -> Result<()> {
        let mut added = None;
        self.catalog.update(|state| {
            let mut t = (*state.table(child)?).clone();
            crate::redistribute::not_moving(state, &spec.parent, "reference table")?;
            let def = resolve(state, &t, spec, &constraint_names(&t))?;
            added = Some(def.clone());
            t.foreign_keys.push(def);
            Ok(vec![slicedb_catalog::Change::PutTable(t)])
        })?;
        let Some(def) = added else {
            return Err(Error::internal("a foreign key was not added"));
        };
        let snapshot = self.catalog.snapshot();
        let t = snapshot.table(child)?;
        let parent = parent_of(&snapshot, &def)?;
        let pairs: Vec<String> = def
            .columns
            .iter()
            .zip(&def.ref_columns)
            .map(|(c, r)| {
                format!(
                    "p.{} = c.{}",
                    ident(&parent.columns[*r].name),
                    ident(&t.columns[*c].name)
                )
            })
            .collect();
        let not_null: Vec<String> = def
            .columns
            .iter()
            .map(|c| format!("c.{} IS NOT NULL", ident(&t.columns[*c].name)))
            .collect();
        let sql = format!(
            "SELECT count(*) FROM {} AS c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} AS p WHERE {})",
            ident(child),
            not_null.join(" AND "),
            ident(&parent.name),
            pairs.join(" AND ")
        );
        let orphans = self.query_count(&sql).await;
        if !matches!(orphans, Ok(0)) {
            self.catalog.update(|state| {
                let mut t = (*state.table(child)?).clone();
                t.foreign_keys.retain(|f| f.name != def.name);
                Ok(vec![slicedb_catalog::Change::PutTable(t)])
            })?;
            orphans?;
            return Err(err!(
                ForeignKeyViolation,
                "insert or update on table \"{child}\" violates foreign key constraint \"{}\"",
                def.name
            ));
        }
        Ok(())
    }
}

/// Refuses (2BP01) to leave `parent` (as it would be without index
/// `index`) without the key a foreign key that references it needs.
pub fn check_still_referencable(state: &CatalogState, parent: &TableDef, index: &str) -> Result<()> {
    for (child, fk) in slicedb_planner::foreign_key::referencing(state, parent.id) {
        let probe: Vec<Datum> = fk
            .ref_columns
            .iter()
            .map(|c| probe_value(parent.columns[*c].sql_type))
            .collect();
        if lock_target(parent, &fk.ref_columns, &probe).is_err() {
            return Err(err!(
                DependentObjectsStillExist,
                "cannot drop index {index} because constraint {} on table {} requires it",
                fk.name,
                child.name
            ));
        }
    }
    Ok(())
}
