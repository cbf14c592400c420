//! `ALTER TABLE`: changes of a table's definition.
//!
//! Each operation of the statement is applied in order, each as one
//! catalog change. Most change only the catalog and so are instant:
//! renames, defaults, `DROP NOT NULL`, dropping a CHECK, and `ADD COLUMN`,
//! which appends the column without touching stored rows (rows stored
//! before read its default as of the ALTER; see `slicedb_common::table`).
//! Operations that constrain existing rows check them with a query first:
//! `SET NOT NULL` (23502), `ADD CHECK` (23514). `ADD PRIMARY KEY` on a
//! table without one rewrites every row under its new key in one
//! transaction, with the table's writes held (see [`Coordinator::add_primary_key`]).
//!
//! UNIQUE constraints build a global index (`crate::index`); FOREIGN KEY
//! constraints are checked against the stored rows (`crate::foreign_key`).
//!
//! `DROP COLUMN` is instant too: the column leaves the definition and its
//! slot stays in stored rows, unread (see [`Coordinator::drop_column`]).
//!
//! Refused with 0A000: dropping a column of the primary or distribution
//! key, type changes other than between the text types, `ADD COLUMN` with
//! a volatile default (each would need a rewrite).

use datafusion::sql::sqlparser::ast::{self, AlterColumnOperation, AlterTableOperation, TableConstraint};
use slicedb_catalog::Change;
use slicedb_common::{err, Datum, Identity, Result, SqlType, TableDef};

use crate::ddl::{column_def, nextval_default, normalize, owned_sequence_name, relation_name, sequence_from_options};
use crate::{CommandTag, Coordinator, Output};

/// Renames column `old` to `new` in a CHECK constraint's SQL text.
fn rename_in_expr(sql: &str, old: &str, new: &str) -> Result<String> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use std::ops::ControlFlow;
    let mut expr = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| slicedb_common::Error::syntax(e.to_string()))?;
    let quoted = |s: &str| ast::Ident::with_quote('"', s);
    let _ = ast::visit_expressions_mut(&mut expr, |e| {
        match e {
            ast::Expr::Identifier(i) if normalize(i) == old => *i = quoted(new),
            ast::Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last_mut() {
                    if normalize(last) == old {
                        *last = quoted(new);
                    }
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(expr.to_string())
}

/// Whether a CHECK constraint's SQL text names column `col`.
pub(crate) fn mentions_column(sql: &str, col: &str) -> Result<bool> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use std::ops::ControlFlow;
    let expr = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| slicedb_common::Error::syntax(e.to_string()))?;
    let found = ast::visit_expressions(&expr, |e| match e {
        ast::Expr::Identifier(i) if normalize(i) == col => ControlFlow::Break(()),
        ast::Expr::CompoundIdentifier(parts) if parts.last().is_some_and(|l| normalize(l) == col) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    Ok(found.is_break())
}

impl Coordinator {
    pub async fn alter_table(&self, alter: ast::AlterTable) -> Result<Output> {
        let name = relation_name(&alter.name)?;
        if !self.catalog.snapshot().tables.contains_key(&name) {
            if alter.if_exists {
                return Ok(Output::Command(CommandTag::new("ALTER TABLE")));
            }
            return Err(err!(UndefinedTable, "relation \"{name}\" does not exist"));
        }
        self.check_not_moving(&name, "alter table")?;
        let mut name = name;
        for op in alter.operations {
            name = self.alter_one(&name, op).await?;
        }
        Ok(Output::Command(CommandTag::new("ALTER TABLE")))
    }

    /// Applies one operation; returns the table's name after it.
    async fn alter_one(&self, name: &str, op: AlterTableOperation) -> Result<String> {
        let table = self.catalog.snapshot().table(name)?;
        let mut t = (*table).clone();
        let column = |t: &TableDef, c: &ast::Ident| -> Result<usize> {
            let c = normalize(c);
            t.column_index(&c)
                .ok_or_else(|| err!(UndefinedColumn, "column \"{c}\" of relation \"{name}\" does not exist"))
        };
        match op {
            AlterTableOperation::AddColumn {
                if_not_exists,
                column_def: def,
                ..
            } => {
                let col_name = normalize(&def.name);
                if t.column_index(&col_name).is_some() {
                    if if_not_exists {
                        return Ok(name.to_string());
                    }
                    return Err(err!(
                        DuplicateColumn,
                        "column \"{col_name}\" of relation \"{name}\" already exists"
                    ));
                }
                let mut checks = Vec::new();
                let (mut col, sequence) = column_def(name, &def, &mut checks)?;
                if sequence.is_some() || !checks.is_empty() {
                    return Err(err!(
                        FeatureNotSupported,
                        "ADD COLUMN with a serial, identity or CHECK would rewrite the table; add the column, then ALTER it"
                    ));
                }
                if def
                    .options
                    .iter()
                    .any(|o| matches!(o.option, ast::ColumnOption::PrimaryKey(_)))
                {
                    return Err(err!(FeatureNotSupported, "ADD COLUMN … PRIMARY KEY is not supported"));
                }
                if let Some(default) = &col.default {
                    self.check_default_expr(&col, default)?;
                    col.missing = Some(self.constant_default(&col, default)?);
                }
                let missing_null = col.missing.as_ref().is_none_or(Datum::is_null);
                if !col.nullable && missing_null && self.has_rows(name).await? {
                    return Err(err!(
                        NotNullViolation,
                        "column \"{col_name}\" of relation \"{name}\" contains null values"
                    ));
                }
                t.columns.push(col);
                self.put_table(name, t)?;
                let built: Result<()> = async {
                    for opt in &def.options {
                        let given = opt.name.as_ref().map(normalize);
                        match &opt.option {
                            ast::ColumnOption::ForeignKey(fk) => {
                                let mut spec = crate::foreign_key::fk_spec(fk, Some(&col_name))?;
                                spec.name = spec.name.or(given);
                                self.add_foreign_key(name, &spec).await?;
                            }
                            ast::ColumnOption::Unique(u) => {
                                let mut spec = crate::index::unique_spec(name, u, Some(&col_name))?;
                                spec.name = spec.name.or(given);
                                self.add_index(None, spec).await?;
                            }
                            _ => {}
                        }
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = built {
                    // The column was added without a rewrite: take it
                    // back, with the constraints built on it.
                    let t = self.catalog.snapshot().table(name)?;
                    let Some(c) = t.column_index(&col_name) else {
                        return Err(e);
                    };
                    for index in t.indexes.iter().filter(|i| i.read_columns().contains(&c)) {
                        self.drop_index(name, index).await?;
                    }
                    self.catalog.update(|state| {
                        let mut t = (*state.table(name)?).clone();
                        t.foreign_keys.retain(|f| !f.columns.contains(&c));
                        if t.columns.last().is_some_and(|x| x.name == col_name) {
                            t.columns.pop();
                        }
                        Ok(vec![Change::PutTable(t)])
                    })?;
                    return Err(e);
                }
            }
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => {
                let i = column(&t, &old_column_name)?;
                let new = normalize(&new_column_name);
                if t.column_index(&new).is_some() {
                    return Err(err!(
                        DuplicateColumn,
                        "column \"{new}\" of relation \"{name}\" already exists"
                    ));
                }
                let old = std::mem::replace(&mut t.columns[i].name, new.clone());
                for check in &mut t.checks {
                    check.expr = rename_in_expr(&check.expr, &old, &new)?;
                }
                let owned: Vec<_> = self
                    .catalog
                    .snapshot()
                    .sequences
                    .values()
                    .filter(|s| s.owned_by.as_ref() == Some(&(name.to_string(), old.clone())))
                    .cloned()
                    .collect();
                self.catalog.update(|_| {
                    let mut changes = vec![Change::PutTable(t.clone())];
                    for mut s in owned.clone() {
                        s.owned_by = Some((name.to_string(), new.clone()));
                        changes.push(Change::PutSequence(s));
                    }
                    Ok(changes)
                })?;
            }
            AlterTableOperation::RenameTable { table_name } => {
                let (ast::RenameTableNameKind::As(new) | ast::RenameTableNameKind::To(new)) = table_name;
                let new = relation_name(&new)?;
                let old = name.to_string();
                t.name = new.clone();
                self.catalog.update(|state| {
                    if state.relation_exists(&new) {
                        return Err(err!(DuplicateTable, "relation \"{new}\" already exists"));
                    }
                    if state.active_job(&old).is_some() {
                        return Err(err!(ObjectInUse, "cannot rename \"{old}\" while it is redistributed"));
                    }
                    let mut changes = vec![Change::DropTable(old.clone()), Change::PutTable(t.clone())];
                    for s in state.sequences.values() {
                        if let Some((owner, c)) = &s.owned_by {
                            if *owner == old {
                                let mut s = s.clone();
                                s.owned_by = Some((new.clone(), c.clone()));
                                changes.push(Change::PutSequence(s));
                            }
                        }
                    }
                    Ok(changes)
                })?;
                return Ok(new);
            }
            AlterTableOperation::AlterColumn { column_name, op } => {
                let i = column(&t, &column_name)?;
                match op {
                    AlterColumnOperation::SetDefault { value } => {
                        let text = value.to_string();
                        self.check_default_expr(&t.columns[i], &text)?;
                        t.columns[i].default = Some(text);
                        self.put_table(name, t)?;
                    }
                    AlterColumnOperation::DropDefault => {
                        t.columns[i].default = None;
                        self.put_table(name, t)?;
                    }
                    AlterColumnOperation::DropNotNull => {
                        if t.primary_key.contains(&i) {
                            return Err(err!(
                                InvalidTableDefinition,
                                "column \"{}\" is in a primary key",
                                t.columns[i].name
                            ));
                        }
                        t.columns[i].nullable = true;
                        self.put_table(name, t)?;
                    }
                    AlterColumnOperation::SetNotNull => {
                        let c = t.columns[i].name.clone();
                        let nulls = self
                            .query_count(&format!("SELECT count(*) FROM \"{name}\" WHERE \"{c}\" IS NULL"))
                            .await?;
                        if nulls > 0 {
                            return Err(err!(
                                NotNullViolation,
                                "column \"{c}\" of relation \"{name}\" contains null values"
                            ));
                        }
                        t.columns[i].nullable = false;
                        self.put_table(name, t)?;
                    }
                    AlterColumnOperation::SetDataType { data_type, using, .. } => {
                        let new = SqlType::from_ast(&data_type)?;
                        let old = t.columns[i].sql_type;
                        let text = |t: SqlType| matches!(t, SqlType::Text | SqlType::Varchar(_));
                        if using.is_none() && old == new {
                            return Ok(name.to_string());
                        }
                        if using.is_some() || !(text(old) && text(new)) {
                            // The stored values change: a rewrite.
                            self.rewrite_column_type(name, i, new, using.as_ref()).await?;
                            return Ok(name.to_string());
                        }
                        if let SqlType::Varchar(Some(n)) = new {
                            let c = t.columns[i].name.clone();
                            let long = self
                                .query_count(&format!(
                                    "SELECT count(*) FROM \"{name}\" WHERE character_length(\"{c}\") > {n}"
                                ))
                                .await?;
                            if long > 0 {
                                return Err(err!(
                                    StringDataRightTruncation,
                                    "value too long for type character varying({n})"
                                ));
                            }
                        }
                        t.columns[i].sql_type = new;
                        self.put_table(name, t)?;
                    }
                    AlterColumnOperation::AddGenerated {
                        generated_as,
                        sequence_options,
                    } => {
                        let col = &t.columns[i];
                        if col.default.is_some() {
                            return Err(err!(
                                InvalidTableDefinition,
                                "column \"{}\" of relation \"{name}\" already has a default",
                                col.name
                            ));
                        }
                        let mut seq = sequence_from_options(
                            &owned_sequence_name(name, &col.name),
                            col.sql_type,
                            sequence_options.as_deref().unwrap_or(&[]),
                        )?;
                        seq.owned_by = Some((name.to_string(), col.name.clone()));
                        t.columns[i].identity = Some(match generated_as {
                            Some(ast::GeneratedAs::ByDefault) => Identity::ByDefault,
                            _ => Identity::Always,
                        });
                        t.columns[i].default = Some(nextval_default(&seq.name));
                        self.catalog.update(|state| {
                            if state.relation_exists(&seq.name) {
                                return Err(err!(DuplicateTable, "relation \"{}\" already exists", seq.name));
                            }
                            Ok(vec![Change::PutSequence(seq.clone()), Change::PutTable(t.clone())])
                        })?;
                    }
                }
            }
            AlterTableOperation::AddConstraint { constraint, .. } => match constraint {
                TableConstraint::Check(check) => {
                    let check = crate::ddl::table_check(name, &check, &t.checks);
                    let cname = check.name.clone();
                    if t.checks.iter().any(|c| c.name == cname) {
                        return Err(err!(
                            DuplicateObject,
                            "constraint \"{cname}\" for relation \"{name}\" already exists"
                        ));
                    }
                    self.check_check_expr(name, &t.columns, &check)?;
                    t.checks.push(check.clone());
                    // Writers planned from now on check it; then the rows
                    // already stored are checked, and the constraint taken
                    // back if one fails it.
                    self.put_table(name, t)?;
                    let failing = self
                        .query_count(&format!("SELECT count(*) FROM \"{name}\" WHERE NOT ({})", check.expr))
                        .await;
                    if !matches!(failing, Ok(0)) {
                        self.catalog.update(|state| {
                            let mut t = (*state.table(name)?).clone();
                            t.checks.retain(|c| c.name != cname);
                            Ok(vec![Change::PutTable(t)])
                        })?;
                        failing?;
                        return Err(err!(
                            CheckViolation,
                            "check constraint \"{cname}\" of relation \"{name}\" is violated by some row"
                        ));
                    }
                }
                TableConstraint::PrimaryKey(pk) => {
                    let columns: Vec<String> = pk
                        .columns
                        .iter()
                        .map(|c| match &c.column.expr {
                            ast::Expr::Identifier(i) => Ok(normalize(i)),
                            other => Err(err!(FeatureNotSupported, "key on expression {other} is not supported")),
                        })
                        .collect::<Result<_>>()?;
                    self.add_primary_key(name, &columns, pk.name.as_ref().map(normalize))
                        .await?;
                }
                TableConstraint::Unique(u) => {
                    self.add_index(None, crate::index::unique_spec(name, &u, None)?).await?;
                }
                TableConstraint::ForeignKey(fk) => {
                    self.add_foreign_key(name, &crate::foreign_key::fk_spec(&fk, None)?)
                        .await?;
                }
                other => return Err(err!(FeatureNotSupported, "constraint {other} is not supported yet")),
            },
            AlterTableOperation::DropConstraint { if_exists, name: c, .. } => {
                let c = normalize(&c);
                if t.foreign_keys.iter().any(|f| f.name == c) {
                    self.catalog.update(|state| {
                        let mut t = (*state.table(name)?).clone();
                        t.foreign_keys.retain(|f| f.name != c);
                        Ok(vec![Change::PutTable(t)])
                    })?;
                    return Ok(name.to_string());
                }
                if let Some(index) = t.indexes.iter().find(|i| i.constraint && i.name == c) {
                    self.drop_index(name, &index.clone()).await?;
                    return Ok(name.to_string());
                }
                let before = t.checks.len();
                t.checks.retain(|x| x.name != c);
                if t.checks.len() == before {
                    let pk_name = t.primary_key_name.clone().unwrap_or_else(|| format!("{name}_pkey"));
                    if t.has_primary_key() && c == pk_name {
                        return Err(err!(FeatureNotSupported, "dropping a primary key is not supported"));
                    }
                    if if_exists {
                        return Ok(name.to_string());
                    }
                    return Err(err!(
                        UndefinedObject,
                        "constraint \"{c}\" of relation \"{name}\" does not exist"
                    ));
                }
                self.put_table(name, t)?;
            }
            AlterTableOperation::SetOptionsParens { options } => check_storage_options(&options)?,
            AlterTableOperation::DropColumn {
                column_names,
                if_exists,
                drop_behavior,
                ..
            } => {
                let cascade = matches!(drop_behavior, Some(ast::DropBehavior::Cascade));
                for c in &column_names {
                    self.drop_column(name, &normalize(c), if_exists, cascade).await?;
                }
            }
            other => return Err(err!(FeatureNotSupported, "ALTER TABLE … {other} is not supported")),
        }
        Ok(name.to_string())
    }

    /// `DROP COLUMN`: the column leaves the definition, and its slot stays
    /// in stored rows, unread (`TableDef::dropped`); no row is rewritten.
    /// As in PostgreSQL, the indexes, CHECK and foreign-key constraints of
    /// the table that involve the column, and the sequence it owns, go
    /// with it; a foreign key of another table that references it needs
    /// `CASCADE` (`2BP01` otherwise). A column of the primary key or of the
    /// distribution key cannot be dropped (`0A000`): the rows' keys and
    /// placement are made of it.
    async fn drop_column(&self, name: &str, col: &str, if_exists: bool, cascade: bool) -> Result<()> {
        let snapshot = self.catalog.snapshot();
        let t = snapshot.table(name)?;
        let Some(c) = t.column_index(col) else {
            if if_exists {
                return Ok(());
            }
            return Err(err!(
                UndefinedColumn,
                "column \"{col}\" of relation \"{name}\" does not exist"
            ));
        };
        if t.primary_key.contains(&c) || t.distribution_key.contains(&c) {
            let what = match t.primary_key.contains(&c) {
                true => "primary key",
                false => "distribution key",
            };
            return Err(err!(
                FeatureNotSupported,
                "cannot drop column \"{col}\" of table \"{name}\": it is part of the table's {what}, and dropping it would rewrite every row"
            ));
        }
        // Foreign keys of other tables that reference the column.
        let referencing: Vec<(String, String)> = snapshot
            .tables
            .values()
            .filter(|o| o.id != t.id)
            .flat_map(|o| {
                o.foreign_keys
                    .iter()
                    .filter(|f| f.ref_table == t.id && f.ref_columns.contains(&c))
                    .map(|f| (o.name.clone(), f.name.clone()))
            })
            .collect();
        if let Some((child, fk)) = referencing.first().filter(|_| !cascade) {
            return Err(err!(
                DependentObjectsStillExist,
                "cannot drop column {col} of table {name} because other objects depend on it (constraint {fk} on table {child} depends on column {col} of table {name}); use DROP … CASCADE to drop the dependent objects too"
            ));
        }
        for (child, fk) in &referencing {
            self.catalog.update(|state| {
                let mut o = (*state.table(child)?).clone();
                o.foreign_keys.retain(|f| f.name != *fk);
                Ok(vec![Change::PutTable(o)])
            })?;
        }
        // The table's own foreign keys that involve the column (a
        // self-reference may name it on either side).
        let own_fks: Vec<String> = t
            .foreign_keys
            .iter()
            .filter(|f| f.columns.contains(&c) || (f.ref_table == t.id && f.ref_columns.contains(&c)))
            .map(|f| f.name.clone())
            .collect();
        if !own_fks.is_empty() {
            self.catalog.update(|state| {
                let mut o = (*state.table(name)?).clone();
                o.foreign_keys.retain(|f| !own_fks.contains(&f.name));
                Ok(vec![Change::PutTable(o)])
            })?;
        }
        for index in t.indexes.iter().filter(|i| i.read_columns().contains(&c)) {
            self.drop_index(name, index).await?;
        }
        let mut checks = Vec::new();
        for check in &t.checks {
            if !mentions_column(&check.expr, col)? {
                checks.push(check.clone());
            }
        }
        // The definition changes under the table's write gates: a writer
        // planned before it fails rather than write rows of the old
        // columns through the new positions (`RowRouter::flush`).
        let gates = self.holds.current(t.id);
        let hold = gates.hold(0).await;
        let result = self.catalog.update(|state| {
            let now = state.table(name)?;
            if now.id != t.id || now.column_index(col) != Some(c) {
                return Err(err!(UndefinedTable, "relation \"{name}\" changed during ALTER TABLE"));
            }
            let mut changes = Vec::new();
            let shift = |p: &mut usize| {
                if *p > c {
                    *p -= 1;
                }
            };
            let mut d = (*now).clone();
            let slot = slicedb_common::slot_of(&d.dropped, c) as u32;
            d.columns.remove(c);
            d.dropped.push(slot);
            d.dropped.sort_unstable();
            d.checks = checks.clone();
            d.primary_key.iter_mut().for_each(shift);
            d.distribution_key.iter_mut().for_each(shift);
            for i in &mut d.indexes {
                i.columns.iter_mut().for_each(shift);
                i.predicate.iter_mut().for_each(|t| shift(&mut t.column));
            }
            for f in &mut d.foreign_keys {
                f.columns.iter_mut().for_each(shift);
                if f.ref_table == d.id {
                    f.ref_columns.iter_mut().for_each(shift);
                }
            }
            d.comments.columns = std::mem::take(&mut d.comments.columns)
                .into_iter()
                .filter(|(k, _)| *k != c)
                .map(|(k, v)| (if k > c { k - 1 } else { k }, v))
                .collect();
            // Foreign keys of other tables that reference columns after it.
            for o in state.tables.values().filter(|o| o.id != d.id) {
                if o.foreign_keys.iter().any(|f| f.ref_table == d.id) {
                    let mut o = (**o).clone();
                    for f in o.foreign_keys.iter_mut().filter(|f| f.ref_table == d.id) {
                        f.ref_columns.iter_mut().for_each(shift);
                    }
                    changes.push(Change::PutTable(o));
                }
            }
            for s in state.sequences.values() {
                if s.owned_by.as_ref() == Some(&(name.to_string(), col.to_string())) {
                    changes.push(Change::DropSequence(s.name.clone()));
                }
            }
            changes.push(Change::PutTable(d));
            Ok(changes)
        });
        drop(hold);
        result?;
        Ok(())
    }

    /// Saves a changed definition of table `name`, if it is still the same table.
    fn put_table(&self, name: &str, t: TableDef) -> Result<()> {
        self.catalog.update(|state| {
            let now = state.table(name)?;
            if now.id != t.id {
                return Err(err!(
                    UndefinedTable,
                    "relation \"{name}\" was dropped during ALTER TABLE"
                ));
            }
            Ok(vec![Change::PutTable(t.clone())])
        })?;
        Ok(())
    }

    /// The value of a non-volatile default, once, for the rows stored
    /// before its column (the value `now()` has at the ALTER, as PostgreSQL).
    fn constant_default(&self, col: &slicedb_common::ColumnDef, default: &str) -> Result<Datum> {
        use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
        let state = self.ctx.state();
        let empty = datafusion::common::DFSchema::empty();
        let expr = state.create_logical_expr(default, &empty)?;
        if expr.is_volatile() {
            return Err(err!(
                FeatureNotSupported,
                "ADD COLUMN with a volatile default ({default}) would rewrite the table, which is not supported yet"
            ));
        }
        let expr = datafusion::logical_expr::ExprSchemable::cast_to(expr, &col.sql_type.arrow_type(), &empty)?;
        // Text read as PostgreSQL reads it (`'{1}'` for an `int[]`).
        let expr = slicedb_planner::text_input::pg_text_input(expr, &empty)?;
        let physical = state.create_physical_expr(expr, &empty)?;
        let one = RecordBatch::try_new_with_options(
            std::sync::Arc::new(datafusion::arrow::datatypes::Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        let array = physical.evaluate(&one)?.into_array(1)?;
        let value = Datum::from_array(array.as_ref(), 0, col.sql_type)?;
        let table = TableDef {
            id: 0,
            name: String::new(),
            columns: vec![col.clone()],
            primary_key: vec![],
            distribution_key: vec![],
            hash_map: String::new(),
            checks: vec![],
            foreign_keys: vec![],
            comments: Default::default(),
            dropped: Vec::new(),
            primary_key_name: None,
            indexes: Vec::new(),
            acl: Default::default(),
        };
        slicedb_planner::write::check_value(&table, 0, value)
    }

    /// Does table `name` hold a row?
    async fn has_rows(&self, name: &str) -> Result<bool> {
        Ok(self
            .query_count(&format!("SELECT count(*) FROM (SELECT 1 FROM \"{name}\" LIMIT 1) AS r"))
            .await?
            > 0)
    }

    /// Every row of `source`'s table, all columns and the row key last, at
    /// the snapshot of `stmt` (rewrites and index builds read this way).
    pub(crate) async fn rows_with_keys(
        &self,
        source: &slicedb_planner::table::SliceTable,
        stmt: std::sync::Arc<slicedb_planner::txn::StatementTxn>,
    ) -> Result<datafusion::execution::SendableRecordBatchStream> {
        self.rows_of(source.with_row_key(), stmt).await
    }

    /// Every row of `source`, at `stmt`'s snapshot.
    pub(crate) async fn rows_of(
        &self,
        source: slicedb_planner::table::SliceTable,
        stmt: std::sync::Arc<slicedb_planner::txn::StatementTxn>,
    ) -> Result<datafusion::execution::SendableRecordBatchStream> {
        use datafusion::dataframe::DataFrame;
        use datafusion::datasource::provider_as_source;
        use datafusion::logical_expr::LogicalPlanBuilder;
        let mut state = self.ctx.state();
        state.config_mut().set_extension(stmt);
        let name = source.table.name.clone();
        let provider = provider_as_source(std::sync::Arc::new(source));
        let plan = LogicalPlanBuilder::scan(name.as_str(), provider, None)?.build()?;
        Ok(DataFrame::new(state, plan).execute_stream().await?)
    }

    /// Runs a `SELECT count(*) …` in a session of its own.
    pub(crate) async fn query_count(&self, sql: &str) -> Result<i64> {
        use datafusion::arrow::array::{Array, Int64Array};
        use futures::TryStreamExt;
        let mut session = crate::Session::default();
        let out = self
            .execute_sql(&mut session, sql)
            .await
            .pop()
            .ok_or_else(|| slicedb_common::Error::internal("no result"))??;
        let Output::Rows { stream, .. } = out else {
            return Err(slicedb_common::Error::internal("a count returned no rows"));
        };
        let batches: Vec<_> = stream.try_collect().await?;
        batches
            .first()
            .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>().map(|a| a.value(0)))
            .ok_or_else(|| slicedb_common::Error::internal("a count returned no value"))
    }
}

/// The row-key column (`index`) of a batch of [`Coordinator::rows_with_keys`].
pub(crate) fn row_keys(
    batch: &datafusion::arrow::record_batch::RecordBatch,
    index: usize,
) -> Result<&datafusion::arrow::array::BinaryArray> {
    batch
        .column(index)
        .as_any()
        .downcast_ref::<datafusion::arrow::array::BinaryArray>()
        .ok_or_else(|| slicedb_common::Error::internal("row key column is not binary"))
}

/// `WITH (…)` / `SET (…)` storage parameters: PostgreSQL's heap options
/// are accepted and have no effect on slicedb's storage; others are refused.
pub fn check_storage_options(options: &[ast::SqlOption]) -> Result<()> {
    for o in options {
        let name = match o {
            ast::SqlOption::KeyValue { key, .. } => normalize(key),
            other => other.to_string(),
        };
        let known = name == "fillfactor"
            || name.starts_with("autovacuum_")
            || name.starts_with("toast.")
            || name == "parallel_workers";
        if !known {
            return Err(err!(InvalidParameterValue, "unrecognized parameter \"{name}\""));
        }
    }
    Ok(())
}

impl Coordinator {
    /// `ADD PRIMARY KEY` on a table without one: its rows are keyed by
    /// hidden row ids, so every row is rewritten under its primary key, in
    /// one transaction, while the table's writes are held (writers wait,
    /// then start over on the new definition: see `LiveRouting::placement`).
    /// A duplicate key fails the rewrite with 23505 and changes nothing.
    /// The distribution key must be part of the key, as in CREATE TABLE, so
    /// every row stays in its bucket.
    async fn add_primary_key(&self, name: &str, columns: &[String], constraint: Option<String>) -> Result<()> {
        use futures::StreamExt;
        use slicedb_storage::key::row_key;
        use slicedb_storage::RowWrite;

        let table = self.catalog.snapshot().table(name)?;
        if table.has_primary_key() {
            return Err(err!(
                InvalidTableDefinition,
                "multiple primary keys for table \"{name}\" are not allowed"
            ));
        }
        let pk: Vec<usize> = columns
            .iter()
            .map(|c| {
                table
                    .column_index(c)
                    .ok_or_else(|| err!(UndefinedColumn, "column \"{c}\" of relation \"{name}\" does not exist"))
            })
            .collect::<Result<_>>()?;
        if !table.distribution_key.iter().all(|d| pk.contains(d)) {
            return Err(err!(
                FeatureNotSupported,
                "the primary key of \"{name}\" must include the distribution key ({})",
                table
                    .distribution_key
                    .iter()
                    .map(|d| table.columns[*d].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let gates = self.holds.current(table.id);
        let _hold = gates.hold(0).await;
        // Under the hold: the definition cannot change under us any more.
        let table = self.catalog.snapshot().table(name)?;
        for c in &pk {
            let col = &table.columns[*c].name;
            let nulls = self
                .query_count(&format!("SELECT count(*) FROM \"{name}\" WHERE \"{col}\" IS NULL"))
                .await?;
            if nulls > 0 {
                return Err(err!(
                    NotNullViolation,
                    "column \"{col}\" of relation \"{name}\" contains null values"
                ));
            }
        }
        let mut keyed = (*table).clone();
        keyed.primary_key = pk.clone();
        keyed.primary_key_name = constraint;
        for c in &pk {
            keyed.columns[*c].nullable = false;
        }
        let source = self.slice_table(name)?;
        let mut txn = self.txns.begin().await?;
        let rewrite = async {
            let stmt = txn.statement();
            let mut rows = self.rows_with_keys(&source, stmt.clone()).await?;
            let mut router = slicedb_planner::write::RowRouter::new(source.clone(), stmt).holding_gates();
            let types = table.column_types();
            while let Some(batch) = rows.next().await {
                let batch = batch?;
                let keys = row_keys(&batch, types.len())?;
                for i in 0..batch.num_rows() {
                    let row: Vec<Datum> = types
                        .iter()
                        .enumerate()
                        .map(|(c, ty)| Datum::from_array(batch.column(c).as_ref(), i, *ty))
                        .collect::<Result<_>>()?;
                    let old = keys.value(i).to_vec();
                    let bucket = slicedb_storage::key::bucket_of_row_key(&old)?;
                    let key_values: Vec<Datum> = pk.iter().map(|c| row[*c].clone()).collect();
                    router.push(bucket, RowWrite::Delete { key: old });
                    router.push(
                        bucket,
                        RowWrite::Insert {
                            key: row_key(bucket, &key_values)?,
                            row,
                        },
                    );
                }
                router.flush_if_full().await?;
            }
            router.flush().await?;
            Ok::<(), slicedb_common::Error>(())
        };
        match rewrite.await {
            Ok(()) => self.txns.commit_holding_gates(&mut txn).await?,
            Err(e) => {
                self.txns.rollback(&mut txn).await;
                return Err(match e.state {
                    slicedb_common::SqlState::UniqueViolation => err!(
                        UniqueViolation,
                        "could not create unique index \"{}\": a key value of ({}) is duplicated",
                        keyed.primary_key_name.clone().unwrap_or_else(|| format!("{name}_pkey")),
                        columns.join(", ")
                    ),
                    _ => e,
                });
            }
        }
        self.put_table(name, keyed)
    }
}
