//! DDL: tables and views in the catalog.
//!
//! `CREATE TABLE` binds the table to a hash map: the one named by `HASH
//! MAP`, else the current map (seed 002, S3). The distribution key is the
//! `DISTRIBUTED BY` list, else the first primary-key column, else the first
//! column (as Greenplum does), and a primary key must contain it (as Citus
//! requires), so that uniqueness can be checked inside one bucket.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{self, ColumnOption, ObjectName, ObjectType, TableConstraint};
use slicedb_catalog::{Change, SequenceDef, ViewDef};
use slicedb_common::{err, CheckDef, ColumnDef, Error, Identity, Result, SqlType, TableDef};
use slicedb_transport::SliceRequest;

use crate::{CommandTag, Coordinator, Output, SCHEMA};

/// An identifier as PostgreSQL folds it: lower case unless quoted.
pub fn normalize(ident: &ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The relation name of `name`, which may be qualified by the `public` schema.
pub fn relation_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| {
            p.as_ident()
                .map(normalize)
                .ok_or_else(|| err!(SyntaxError, "invalid name {name}"))
        })
        .collect::<Result<_>>()?;
    match parts.as_slice() {
        [table] => Ok(table.clone()),
        [schema, table] if schema == SCHEMA => Ok(table.clone()),
        [_, table] | [_, _, table] => Err(err!(
            InvalidParameterValue,
            "only the \"{SCHEMA}\" schema exists (in {table})"
        )),
        _ => Err(err!(SyntaxError, "invalid name {name}")),
    }
}

impl Coordinator {
    /// `COMMENT ON TABLE t IS '…'` and `COMMENT ON COLUMN t.c IS '…'`;
    /// `IS NULL` removes the comment. Other objects are refused (0A000).
    pub(crate) async fn comment_on(
        &self,
        object_type: ast::CommentObject,
        name: &ObjectName,
        comment: Option<String>,
    ) -> Result<Output> {
        let (table, column) = match object_type {
            ast::CommentObject::Table => (relation_name(name)?, None),
            ast::CommentObject::Column => {
                let mut parts = name.0.clone();
                let column = parts
                    .pop()
                    .and_then(|p| p.as_ident().map(normalize))
                    .ok_or_else(|| err!(SyntaxError, "column name must be qualified"))?;
                if parts.is_empty() {
                    return Err(err!(SyntaxError, "column name must be qualified"));
                }
                (relation_name(&ObjectName(parts))?, Some(column))
            }
            other => return Err(err!(FeatureNotSupported, "COMMENT ON {other} is not supported")),
        };
        self.catalog.update(|state| {
            let mut t = (*state.table(&table)?).clone();
            match &column {
                None => t.comments.table = comment.clone(),
                Some(c) => {
                    let i = t.column_index(c).ok_or_else(|| {
                        err!(UndefinedColumn, "column \"{c}\" of relation \"{table}\" does not exist")
                    })?;
                    match &comment {
                        Some(text) => t.comments.columns.insert(i, text.clone()),
                        None => t.comments.columns.remove(&i),
                    };
                }
            }
            Ok(vec![Change::PutTable(t)])
        })?;
        Ok(Output::Command(CommandTag::new("COMMENT")))
    }
}

/// The extensions `CREATE EXTENSION` accepts, because what applications
/// use them for is built in: `plpgsql` (installed in every PostgreSQL
/// database), `pgcrypto` and `uuid-ossp` for `gen_random_uuid()` and
/// `uuid_generate_v4()`. Their other functions are not there.
const BUILT_IN_EXTENSIONS: [&str; 3] = ["plpgsql", "pgcrypto", "uuid-ossp"];

/// `CREATE EXTENSION`: see [`BUILT_IN_EXTENSIONS`]; any other is 0A000.
pub(crate) fn create_extension(ext: &ast::CreateExtension) -> Result<Output> {
    let name = normalize(&ext.name);
    if !BUILT_IN_EXTENSIONS.contains(&name.as_str()) {
        return Err(err!(FeatureNotSupported, "extension \"{name}\" is not available"));
    }
    Ok(Output::Command(CommandTag::new("CREATE EXTENSION")))
}

/// The refusal of a constraint slicedb cannot enforce yet.
fn constraint_unsupported(what: &str) -> Error {
    err!(FeatureNotSupported, "constraint {what} is not supported yet")
}

/// A table-level CHECK constraint, named as PostgreSQL names it unless
/// named: `t_col_check` when it reads one column, `t_check` otherwise.
pub(crate) fn table_check(table: &str, check: &ast::CheckConstraint, taken: &[CheckDef]) -> CheckDef {
    let expr = check.expr.to_string();
    let mut columns: Vec<String> = Vec::new();
    let _ = ast::visit_expressions(&*check.expr, |e| {
        let column = match e {
            ast::Expr::Identifier(i) => Some(normalize(i)),
            ast::Expr::CompoundIdentifier(parts) => parts.last().map(normalize),
            _ => None,
        };
        if let Some(c) = column.filter(|c| !columns.contains(c)) {
            columns.push(c);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    let only = (columns.len() == 1).then(|| columns[0].as_str());
    let name = check
        .name
        .as_ref()
        .map(normalize)
        .unwrap_or_else(|| check_name(table, only, taken));
    CheckDef { name, expr }
}

/// The name PostgreSQL gives an unnamed CHECK constraint: `t_col_check`
/// for one on (or reading only) column `col`, `t_check` otherwise,
/// numbered when taken.
pub(crate) fn check_name(table: &str, column: Option<&str>, taken: &[CheckDef]) -> String {
    let base = match column {
        Some(c) => format!("{table}_{c}_check"),
        None => format!("{table}_check"),
    };
    let mut name = base.clone();
    let mut n = 0;
    while taken.iter().any(|c| c.name == name) {
        n += 1;
        name = format!("{base}{n}");
    }
    name
}

/// The integer type of `serial`, `bigserial` and `smallserial`.
fn serial_type(dt: &ast::DataType) -> Option<SqlType> {
    match dt {
        ast::DataType::Custom(name, _) => match name.to_string().to_ascii_lowercase().as_str() {
            "serial" | "serial4" => Some(SqlType::Integer),
            "bigserial" | "serial8" => Some(SqlType::BigInt),
            "smallserial" | "serial2" => Some(SqlType::SmallInt),
            _ => None,
        },
        _ => None,
    }
}

/// The name of the sequence behind a serial or identity column.
pub fn owned_sequence_name(table: &str, column: &str) -> String {
    format!("{table}_{column}_seq")
}

/// The default that draws from sequence `name`.
pub fn nextval_default(name: &str) -> String {
    format!("nextval('{}')", name.replace('\'', "''"))
}

/// An integer option value of CREATE SEQUENCE (`5`, `-1`).
fn option_value(e: &ast::Expr) -> Result<i64> {
    let bad = || err!(InvalidParameterValue, "invalid sequence option value {e}");
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.parse().map_err(|_| bad()),
            _ => Err(bad()),
        },
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => option_value(expr)?.checked_neg().ok_or_else(bad),
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Plus,
            expr,
        } => option_value(expr),
        _ => Err(bad()),
    }
}

/// A sequence from CREATE SEQUENCE's (or an identity column's) options,
/// with PostgreSQL's defaults for what they leave out.
pub fn sequence_from_options(name: &str, data_type: SqlType, options: &[ast::SequenceOptions]) -> Result<SequenceDef> {
    let mut seq = SequenceDef::new(name, data_type);
    apply_sequence_options(&mut seq, None, options, None, true)?;
    Ok(seq)
}

/// Applies the options of a `CREATE SEQUENCE` (`creating`: what they leave
/// out takes PostgreSQL's default) or of an `ALTER SEQUENCE` (what they
/// leave out stays, except that limits at the old type's bounds follow a
/// new `AS` type, as in PostgreSQL). `restart` is `RESTART [WITH n]`.
pub fn apply_sequence_options(
    seq: &mut SequenceDef,
    data_type: Option<SqlType>,
    options: &[ast::SequenceOptions],
    restart: Option<Option<i64>>,
    creating: bool,
) -> Result<()> {
    use ast::SequenceOptions as O;
    let old_type = seq.data_type;
    if let Some(t) = data_type {
        seq.data_type = t;
    }
    if !seq.data_type.is_integer() {
        return Err(err!(
            InvalidParameterValue,
            "sequence type must be smallint, integer, or bigint"
        ));
    }
    // `Some(None)`: NO MINVALUE / NO MAXVALUE.
    let (mut min, mut max, mut start) = (None, None, None);
    for o in options {
        match o {
            O::IncrementBy(e, _) => seq.increment = option_value(e)?,
            O::MinValue(e) => min = Some(e.as_ref().map(option_value).transpose()?),
            O::MaxValue(e) => max = Some(e.as_ref().map(option_value).transpose()?),
            O::StartWith(e, _) => start = Some(option_value(e)?),
            O::Cache(e) => seq.cache = option_value(e)?,
            // sqlparser marks `NO CYCLE` with `true`.
            O::Cycle(no) => seq.cycle = !*no,
        }
    }
    let (lo, hi) = (
        slicedb_catalog::sequence::type_min(seq.data_type),
        slicedb_catalog::sequence::type_max(seq.data_type),
    );
    let ascending = seq.increment > 0;
    let retyped = seq.data_type != old_type;
    match min {
        Some(Some(v)) => seq.min = v,
        Some(None) => seq.min = if ascending { 1 } else { lo },
        None if creating => seq.min = if ascending { 1 } else { lo },
        None if retyped && seq.min == slicedb_catalog::sequence::type_min(old_type) => seq.min = lo,
        None => {}
    }
    match max {
        Some(Some(v)) => seq.max = v,
        Some(None) => seq.max = if ascending { hi } else { -1 },
        None if creating => seq.max = if ascending { hi } else { -1 },
        None if retyped && seq.max == slicedb_catalog::sequence::type_max(old_type) => seq.max = hi,
        None => {}
    }
    match start {
        Some(v) => seq.start = v,
        None if creating => seq.start = if ascending { seq.min } else { seq.max },
        None => {}
    }
    if creating {
        seq.next = Some(seq.start);
    }
    if let Some(restart) = restart {
        seq.next = Some(restart.unwrap_or(seq.start));
    }
    seq.validate()?;
    if let Some(next) = seq.next {
        if next < seq.min {
            return Err(err!(
                InvalidParameterValue,
                "RESTART value ({next}) cannot be less than MINVALUE ({})",
                seq.min
            ));
        }
        if next > seq.max {
            return Err(err!(
                InvalidParameterValue,
                "RESTART value ({next}) cannot be greater than MAXVALUE ({})",
                seq.max
            ));
        }
    }
    Ok(())
}

/// A column of CREATE TABLE (or ALTER TABLE … ADD COLUMN): its definition,
/// the sequence a serial or identity column owns, and its CHECK
/// constraints (added to `checks`).
pub fn column_def(
    table: &str,
    c: &ast::ColumnDef,
    checks: &mut Vec<CheckDef>,
) -> Result<(ColumnDef, Option<SequenceDef>)> {
    let name = normalize(&c.name);
    let serial = serial_type(&c.data_type);
    let sql_type = match serial {
        Some(t) => t,
        None => SqlType::from_ast(&c.data_type)?,
    };
    let mut column = ColumnDef::new(name.clone(), sql_type);
    let mut sequence = None;
    if serial.is_some() {
        let mut seq = SequenceDef::new(owned_sequence_name(table, &name), sql_type);
        seq.owned_by = Some((table.to_string(), name.clone()));
        column.default = Some(nextval_default(&seq.name));
        column.nullable = false;
        sequence = Some(seq);
    }
    let two_defaults = || {
        err!(
            SyntaxError,
            "multiple default values specified for column \"{name}\" of table \"{table}\""
        )
    };
    for opt in &c.options {
        match &opt.option {
            ColumnOption::Null => column.nullable = true,
            ColumnOption::NotNull | ColumnOption::PrimaryKey(_) => column.nullable = false,
            ColumnOption::Default(e) => {
                if column.default.is_some() {
                    return Err(two_defaults());
                }
                column.default = Some(e.to_string());
            }
            ColumnOption::Check(check) => {
                let expr = check.expr.to_string();
                let cname = check
                    .name
                    .as_ref()
                    .or(opt.name.as_ref())
                    .map(normalize)
                    .unwrap_or_else(|| check_name(table, Some(&name), checks));
                checks.push(CheckDef { name: cname, expr });
            }
            ColumnOption::Generated {
                generated_as,
                sequence_options,
                generation_expr: None,
                ..
            } => {
                if column.default.is_some() {
                    return Err(two_defaults());
                }
                if !sql_type.is_integer() {
                    return Err(err!(
                        InvalidParameterValue,
                        "identity column type must be smallint, integer, or bigint"
                    ));
                }
                column.identity = Some(match generated_as {
                    ast::GeneratedAs::ByDefault => Identity::ByDefault,
                    _ => Identity::Always,
                });
                let mut seq = sequence_from_options(
                    &owned_sequence_name(table, &name),
                    sql_type,
                    sequence_options.as_deref().unwrap_or(&[]),
                )?;
                seq.owned_by = Some((table.to_string(), name.clone()));
                column.default = Some(nextval_default(&seq.name));
                column.nullable = false;
                sequence = Some(seq);
            }
            ColumnOption::Generated { .. } => {
                return Err(err!(FeatureNotSupported, "generated columns are not supported"));
            }
            // Built by the caller (`create_table`, `add_column`).
            ColumnOption::Unique(u) => {
                crate::index::unique_spec(table, u, Some(&name))?;
            }
            // Built by the caller (`create_table`, `add_column`).
            ColumnOption::ForeignKey(fk) => {
                crate::foreign_key::fk_spec(fk, Some(&name))?;
            }
            other => return Err(err!(FeatureNotSupported, "column option {other} is not supported")),
        }
    }
    Ok((column, sequence))
}

/// The columns of table `table` as a DataFusion schema, every column
/// nullable, qualified by the table's name (CHECK constraints are planned
/// over it).
pub fn columns_schema(table: &str, columns: &[ColumnDef]) -> Result<datafusion::common::DFSchema> {
    use datafusion::arrow::datatypes::Schema;
    let schema = Schema::new(
        columns
            .iter()
            .map(|c| c.sql_type.field(&c.name, true))
            .collect::<Vec<_>>(),
    );
    Ok(datafusion::common::DFSchema::try_from_qualified_schema(table, &schema)?)
}

/// Does the DEFAULT expression `default` draw from sequence `seq`
/// (`nextval('seq')`, however the name is spelled)?
pub fn default_uses_sequence(default: &str, seq: &str) -> bool {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use std::ops::ControlFlow;
    let Ok(expr) = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(default)
        .and_then(|mut p| p.parse_expr())
    else {
        return false;
    };
    let found = ast::visit_expressions(&expr, |e| {
        if let ast::Expr::Function(f) = e {
            let is_nextval = f.name.to_string().eq_ignore_ascii_case("nextval");
            if let (true, ast::FunctionArguments::List(list)) = (is_nextval, &f.args) {
                for a in &list.args {
                    if let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg)) = a {
                        let text = match arg {
                            ast::Expr::Value(v) => match &v.value {
                                ast::Value::SingleQuotedString(s) => Some(s.clone()),
                                _ => None,
                            },
                            ast::Expr::Cast { expr, .. } => match expr.as_ref() {
                                ast::Expr::Value(v) => match &v.value {
                                    ast::Value::SingleQuotedString(s) => Some(s.clone()),
                                    _ => None,
                                },
                                _ => None,
                            },
                            _ => None,
                        };
                        if text.and_then(|t| crate::sequence::sequence_name(&t).ok()).as_deref() == Some(seq) {
                            return ControlFlow::Break(());
                        }
                    }
                }
            }
        }
        ControlFlow::Continue(())
    });
    found.is_break()
}

/// The `(table, column)` of `OWNED BY t.c`, or `None` for `OWNED BY NONE`.
fn owned_by_column(state: &slicedb_catalog::CatalogState, owner: &ObjectName) -> Result<Option<(String, String)>> {
    let parts: Vec<String> = owner.0.iter().filter_map(|p| p.as_ident().map(normalize)).collect();
    match parts.as_slice() {
        [none] if none == "none" => Ok(None),
        [table, column] | [_, table, column] => {
            let t = state.table(table)?;
            if t.column_index(column).is_none() {
                return Err(err!(
                    UndefinedColumn,
                    "column \"{column}\" of relation \"{table}\" does not exist"
                ));
            }
            Ok(Some((table.clone(), column.clone())))
        }
        _ => Err(err!(SyntaxError, "invalid OWNED BY option")),
    }
}

/// The relations a view's query names (folded like identifiers).
fn relations_of(sql: &str) -> Result<Vec<String>> {
    use std::ops::ControlFlow;
    let mut names = Vec::new();
    for stmt in crate::parser::parse(sql)? {
        if let crate::parser::Statement::Sql(s) = stmt {
            let _ = ast::visit_relations(s.as_ref(), |r| {
                if let Ok(n) = relation_name(r) {
                    names.push(n);
                }
                ControlFlow::<()>::Continue(())
            });
        }
    }
    Ok(names)
}

/// Would defining view `name` as `sql` make a view read itself, directly or
/// through other views? (Views are expanded when planned, so the stored
/// definitions are what must be followed.)
fn view_cycle(state: &slicedb_catalog::CatalogState, name: &str, sql: &str) -> Result<bool> {
    let mut pending = relations_of(sql)?;
    let mut seen = std::collections::BTreeSet::new();
    while let Some(r) = pending.pop() {
        if r == name {
            return Ok(true);
        }
        if seen.insert(r.clone()) {
            if let Some(view) = state.views.get(&r) {
                pending.extend(relations_of(&view.sql)?);
            }
        }
    }
    Ok(false)
}

impl Coordinator {
    /// `CREATE TABLE`, the table owned by role `owner`.
    pub async fn create_table(
        &self,
        create: ast::CreateTable,
        distributed_by: Option<Vec<String>>,
        hash_map: Option<String>,
        owner: &str,
    ) -> Result<Output> {
        if create.temporary {
            return Err(err!(FeatureNotSupported, "temporary tables are not supported"));
        }
        let name = relation_name(&create.name)?;
        match &create.table_options {
            ast::CreateTableOptions::None => {}
            ast::CreateTableOptions::With(options) => crate::alter::check_storage_options(options)?,
            other => return Err(err!(FeatureNotSupported, "table options {other} are not supported")),
        }
        let mut columns: Vec<ColumnDef> = Vec::new();
        let mut primary_key: Vec<String> = Vec::new();
        let mut primary_key_name: Option<String> = None;
        let mut checks: Vec<CheckDef> = Vec::new();
        let mut sequences: Vec<SequenceDef> = Vec::new();
        let mut uniques: Vec<crate::index::IndexSpec> = Vec::new();
        let mut foreign_keys: Vec<crate::foreign_key::FkSpec> = Vec::new();
        for c in &create.columns {
            let col_name = normalize(&c.name);
            if columns.iter().any(|x| x.name == col_name) {
                return Err(err!(DuplicateColumn, "column \"{col_name}\" specified more than once"));
            }
            let (column, sequence) = column_def(&name, c, &mut checks)?;
            for opt in &c.options {
                if let ColumnOption::Unique(u) = &opt.option {
                    let mut spec = crate::index::unique_spec(&name, u, Some(&col_name))?;
                    spec.name = spec.name.or(opt.name.as_ref().map(normalize));
                    uniques.push(spec);
                }
                if let ColumnOption::ForeignKey(fk) = &opt.option {
                    let mut spec = crate::foreign_key::fk_spec(fk, Some(&col_name))?;
                    spec.name = spec.name.or(opt.name.as_ref().map(normalize));
                    foreign_keys.push(spec);
                }
                if let ColumnOption::PrimaryKey(pk) = &opt.option {
                    if !primary_key.is_empty() {
                        return Err(err!(
                            InvalidTableDefinition,
                            "multiple primary keys for table \"{name}\" are not allowed"
                        ));
                    }
                    primary_key.push(col_name.clone());
                    primary_key_name = pk.name.as_ref().or(opt.name.as_ref()).map(normalize);
                }
            }
            sequences.extend(sequence);
            columns.push(column);
        }
        if columns.is_empty() {
            return Err(err!(FeatureNotSupported, "tables without columns are not supported"));
        }
        for constraint in &create.constraints {
            match constraint {
                TableConstraint::PrimaryKey(pk) => {
                    if !primary_key.is_empty() {
                        return Err(err!(
                            InvalidTableDefinition,
                            "multiple primary keys for table \"{name}\" are not allowed"
                        ));
                    }
                    for c in &pk.columns {
                        primary_key.push(crate::index::index_column_name(c)?);
                    }
                    primary_key_name = pk.name.as_ref().map(normalize);
                }
                TableConstraint::Check(check) => {
                    let check = table_check(&name, check, &checks);
                    checks.push(check);
                }
                TableConstraint::Unique(u) => uniques.push(crate::index::unique_spec(&name, u, None)?),
                TableConstraint::ForeignKey(fk) => foreign_keys.push(crate::foreign_key::fk_spec(fk, None)?),
                other => return Err(constraint_unsupported(&other.to_string())),
            }
        }
        for check in &checks {
            self.check_check_expr(&name, &columns, check)?;
        }
        for c in &columns {
            if let Some(default) = &c.default {
                self.check_default_expr(c, default)?;
            }
        }
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let index = |col: &str| {
            names
                .iter()
                .position(|c| c == col)
                .ok_or_else(|| err!(UndefinedColumn, "column \"{col}\" named in key does not exist"))
        };
        let pk: Vec<usize> = primary_key.iter().map(|c| index(c)).collect::<Result<_>>()?;
        for i in &pk {
            crate::index::check_key_type(&columns[*i])?;
            columns[*i].nullable = false;
        }
        let dist: Vec<usize> = match &distributed_by {
            Some(cols) => cols.iter().map(|c| index(c)).collect::<Result<_>>()?,
            None if !pk.is_empty() => vec![pk[0]],
            None => vec![0],
        };
        if !pk.is_empty() && !dist.iter().all(|d| pk.contains(d)) {
            return Err(err!(
                FeatureNotSupported,
                "cannot create table \"{name}\": the primary key must include the distribution key ({})",
                dist.iter()
                    .map(|d| columns[*d].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let if_not_exists = create.if_not_exists;
        let mut existed = false;
        self.catalog.update(|state| {
            if state.relation_exists(&name) {
                if if_not_exists {
                    existed = true;
                    return Ok(vec![]);
                }
                return Err(err!(DuplicateTable, "relation \"{name}\" already exists"));
            }
            for seq in &sequences {
                if state.relation_exists(&seq.name) {
                    return Err(err!(DuplicateTable, "relation \"{}\" already exists", seq.name));
                }
            }
            let map = match &hash_map {
                Some(m) => state.hash_map(m)?,
                None => state.current_map()?,
            };
            let mut changes: Vec<Change> = sequences.iter().cloned().map(Change::PutSequence).collect();
            let mut table = TableDef {
                id: state.next_table_id(),
                name: name.clone(),
                columns,
                primary_key: pk,
                distribution_key: dist,
                hash_map: map.name.clone(),
                checks,
                primary_key_name,
                indexes: Vec::new(),
                foreign_keys: Vec::new(),
                comments: Default::default(),
                dropped: Vec::new(),
                acl: slicedb_common::acl::Acl::owned_by(owner),
            };
            table.indexes = crate::index::new_table_indexes(state, &table, &uniques)?;
            let mut taken = crate::foreign_key::constraint_names(&table);
            for spec in &foreign_keys {
                if spec.parent != table.name {
                    crate::redistribute::not_moving(state, &spec.parent, "reference table")?;
                }
                let fk = crate::foreign_key::resolve(state, &table, spec, &taken)?;
                taken.push(fk.name.clone());
                table.foreign_keys.push(fk);
            }
            changes.push(Change::PutTable(table));
            Ok(changes)
        })?;
        if existed {
            tracing::info!("relation \"{name}\" already exists, skipping");
        }
        Ok(Output::Command(CommandTag::new("CREATE TABLE")))
    }

    /// Plans a CHECK constraint's condition over the table's columns: it
    /// must name only them and be boolean.
    pub(crate) fn check_check_expr(&self, table: &str, columns: &[ColumnDef], check: &CheckDef) -> Result<()> {
        let schema = columns_schema(table, columns)?;
        let expr = self.ctx.state().create_logical_expr(&check.expr, &schema)?;
        let ty = datafusion::logical_expr::ExprSchemable::get_type(&expr, &schema)?;
        if ty != datafusion::arrow::datatypes::DataType::Boolean && ty != datafusion::arrow::datatypes::DataType::Null {
            return Err(err!(
                DatatypeMismatch,
                "argument of CHECK must be type boolean, not type {ty}"
            ));
        }
        Ok(())
    }

    /// Plans a DEFAULT expression: it may not name columns, and its value
    /// must cast to the column's type.
    pub(crate) fn check_default_expr(&self, column: &ColumnDef, default: &str) -> Result<()> {
        let empty = datafusion::common::DFSchema::empty();
        let expr = self.ctx.state().create_logical_expr(default, &empty).map_err(|e| {
            let e = Error::from(e);
            if e.state == slicedb_common::SqlState::UndefinedColumn {
                err!(FeatureNotSupported, "cannot use column reference in DEFAULT expression")
            } else {
                e
            }
        })?;
        let ty = datafusion::logical_expr::ExprSchemable::get_type(&expr, &empty)?;
        let target = column.sql_type.arrow_type();
        if !datafusion::arrow::compute::can_cast_types(&ty, &target) {
            return Err(err!(
                DatatypeMismatch,
                "column \"{}\" is of type {} but default expression is of type {ty}",
                column.name,
                column.sql_type.pg_name()
            ));
        }
        Ok(())
    }

    /// `CREATE SEQUENCE`.
    pub async fn create_sequence(
        &self,
        if_not_exists: bool,
        name: &ObjectName,
        clauses: &crate::parser::SequenceClauses,
    ) -> Result<Output> {
        let name = relation_name(name)?;
        let data_type = clauses.data_type.unwrap_or(SqlType::BigInt);
        let mut seq = sequence_from_options(&name, data_type, &clauses.options)?;
        let snapshot = self.catalog.snapshot();
        if let Some(owner) = &clauses.owned_by {
            seq.owned_by = owned_by_column(&snapshot, owner)?;
        }
        let mut existed = false;
        self.catalog.update(|state| {
            if state.relation_exists(&name) {
                if if_not_exists && state.sequences.contains_key(&name) {
                    existed = true;
                    return Ok(vec![]);
                }
                return Err(err!(DuplicateTable, "relation \"{name}\" already exists"));
            }
            Ok(vec![Change::PutSequence(seq.clone())])
        })?;
        if existed {
            tracing::info!("relation \"{name}\" already exists, skipping");
        }
        self.sequences.forget(&name);
        Ok(Output::Command(CommandTag::new("CREATE SEQUENCE")))
    }

    /// `ALTER SEQUENCE`: new options (values continue from where the
    /// sequence is unless `RESTART`; a range this coordinator had cached is
    /// given up), or `OWNER TO`, which checks the role and the sequence:
    /// slicedb's sequences have no owner (every role may use them).
    pub async fn alter_sequence(
        &self,
        if_exists: bool,
        name: &ObjectName,
        action: &crate::parser::AlterSequence,
    ) -> Result<Output> {
        let name = relation_name(name)?;
        let done = Ok(Output::Command(CommandTag::new("ALTER SEQUENCE")));
        let missing = || err!(UndefinedTable, "relation \"{name}\" does not exist");
        let clauses = match action {
            crate::parser::AlterSequence::OwnerTo(role) => {
                let snapshot = self.catalog.snapshot();
                if let Some(role) = role {
                    snapshot.role(role)?;
                }
                return match snapshot.sequences.contains_key(&name) {
                    true => done,
                    false if if_exists => done,
                    false => Err(missing()),
                };
            }
            crate::parser::AlterSequence::Options(clauses) => clauses,
        };
        let snapshot = self.catalog.snapshot();
        let owned_by = match &clauses.owned_by {
            Some(owner) => Some(owned_by_column(&snapshot, owner)?),
            None => None,
        };
        // The values this coordinator cached and has not handed out go
        // back to the sequence, so that the change (a new limit, say) is
        // checked against the next value a session would really get.
        let unused = self.sequences.take_range(&name);
        let mut found = true;
        let updated = self.catalog.update(|state| {
            let Some(seq) = state.sequences.get(&name) else {
                found = false;
                return if if_exists { Ok(vec![]) } else { Err(missing()) };
            };
            let mut seq = seq.clone();
            if let Some(unused) = &unused {
                unused.give_back(&mut seq);
            }
            apply_sequence_options(&mut seq, clauses.data_type, &clauses.options, clauses.restart, false)?;
            if let Some(owned_by) = &owned_by {
                seq.owned_by = owned_by.clone();
            }
            Ok(vec![Change::PutSequence(seq)])
        });
        if let Err(e) = updated {
            if let Some(unused) = unused {
                self.sequences.put_back(&name, unused);
            }
            return Err(e);
        }
        if !found {
            tracing::info!("relation \"{name}\" does not exist, skipping");
        }
        self.sequences.forget(&name);
        done
    }

    pub async fn drop_objects(
        &self,
        kind: ObjectType,
        if_exists: bool,
        names: &[ObjectName],
        cascade: bool,
    ) -> Result<Output> {
        let names: Vec<String> = names.iter().map(relation_name).collect::<Result<_>>()?;
        match kind {
            ObjectType::Table => {
                let mut dropped = Vec::new();
                let mut sequences = Vec::new();
                self.catalog.update(|state| {
                    let mut changes = Vec::new();
                    // Foreign keys of other tables that reference a dropped
                    // one: refused (2BP01), or with CASCADE dropped.
                    let mut unreferenced: BTreeMap<String, TableDef> = BTreeMap::new();
                    for n in &names {
                        let Some(t) = state.tables.get(n) else { continue };
                        for (child, fk) in crate::foreign_key::referenced_by(state, t) {
                            if names.contains(&child) {
                                continue;
                            }
                            if !cascade {
                                return Err(err!(
                                    DependentObjectsStillExist,
                                    "cannot drop table {n} because other objects depend on it (constraint {fk} on table {child} depends on table {n}); use DROP … CASCADE to drop the dependent objects too"
                                ));
                            }
                            let c = unreferenced
                                .entry(child.clone())
                                .or_insert_with(|| (*state.tables[&child]).clone());
                            c.foreign_keys.retain(|f| f.name != fk);
                        }
                    }
                    changes.extend(unreferenced.into_values().map(Change::PutTable));
                    for n in &names {
                        match state.tables.get(n) {
                            Some(t) => {
                                if let Some(j) = state.active_job(n) {
                                    return Err(err!(
                                        ObjectInUse,
                                        "cannot drop table \"{n}\" while redistribution {} moves it (CANCEL REDISTRIBUTION {} or wait for it)",
                                        j.id,
                                        j.id
                                    ));
                                }
                                dropped.push((t.clone(), state.hash_map(&t.hash_map)?));
                                changes.push(Change::DropTable(n.clone()));
                                // Sequences owned by its columns go with it.
                                for seq in state.sequences.values() {
                                    if seq.owned_by.as_ref().is_some_and(|(table, _)| table == n) {
                                        changes.push(Change::DropSequence(seq.name.clone()));
                                        sequences.push(seq.name.clone());
                                    }
                                }
                            }
                            None if if_exists => {}
                            None => return Err(err!(UndefinedTable, "table \"{n}\" does not exist")),
                        }
                    }
                    Ok(changes)
                })?;
                for s in &sequences {
                    self.sequences.forget(s);
                }
                // The catalog no longer names the tables, so no new rows can
                // arrive; delete their rows from the slice servers. Table ids
                // are never reused, so rows a crash leaves here are unreachable.
                for (t, map) in dropped {
                    self.delete_rows(t.id, &map).await?;
                    for index in &t.indexes {
                        self.delete_rows(index.id, &map).await?;
                    }
                }
                Ok(Output::Command(CommandTag::new("DROP TABLE")))
            }
            ObjectType::View => {
                self.catalog.update(|state| {
                    let mut changes = Vec::new();
                    for n in &names {
                        if state.views.contains_key(n) {
                            changes.push(Change::DropView(n.clone()));
                        } else if !if_exists {
                            return Err(err!(UndefinedTable, "view \"{n}\" does not exist"));
                        }
                    }
                    Ok(changes)
                })?;
                Ok(Output::Command(CommandTag::new("DROP VIEW")))
            }
            ObjectType::Sequence => {
                self.catalog.update(|state| {
                    let mut changes = Vec::new();
                    for n in &names {
                        match state.sequences.get(n) {
                            Some(_) => {
                                for t in state.tables.values() {
                                    let users = t.columns.iter().filter(|c| {
                                        c.default.as_deref().is_some_and(|d| default_uses_sequence(d, n))
                                    });
                                    let mut changed = (**t).clone();
                                    let mut any = false;
                                    for c in users {
                                        if !cascade {
                                            return Err(err!(
                                                DependentObjectsStillExist,
                                                "cannot drop sequence {n} because default value for column {} of table {} depends on it",
                                                c.name,
                                                t.name
                                            ));
                                        }
                                        any = true;
                                        if let Some(col) = changed.columns.iter_mut().find(|x| x.name == c.name) {
                                            col.default = None;
                                            col.identity = None;
                                        }
                                    }
                                    if any {
                                        changes.push(Change::PutTable(changed));
                                    }
                                }
                                changes.push(Change::DropSequence(n.clone()));
                            }
                            None if if_exists => {}
                            None => return Err(err!(UndefinedTable, "sequence \"{n}\" does not exist")),
                        }
                    }
                    Ok(changes)
                })?;
                for n in &names {
                    self.sequences.forget(n);
                }
                Ok(Output::Command(CommandTag::new("DROP SEQUENCE")))
            }
            other => Err(err!(FeatureNotSupported, "DROP {other} is not supported")),
        }
    }

    /// `CREATE [OR REPLACE] VIEW`, owned by role `owner` (a replaced
    /// view keeps its owner and grants).
    pub async fn create_view(&self, view: ast::CreateView, owner: &str) -> Result<Output> {
        if view.materialized {
            return Err(err!(FeatureNotSupported, "materialized views are not supported"));
        }
        let name = relation_name(&view.name)?;
        let sql = view.query.to_string();
        // Plan it now so that a view over unknown tables or columns is
        // refused; a view that would expand into itself is refused below.
        self.ctx.state().create_logical_plan(&sql).await?;
        let or_replace = view.or_replace;
        self.catalog.update(|state| {
            if view_cycle(state, &name, &sql)? {
                return Err(err!(InvalidRecursion, "infinite recursion detected in view \"{name}\""));
            }
            if state.tables.contains_key(&name) || (state.views.contains_key(&name) && !or_replace) {
                return Err(err!(DuplicateTable, "relation \"{name}\" already exists"));
            }
            let acl = match state.views.get(&name) {
                Some(old) => old.acl.clone(),
                None => slicedb_common::acl::Acl::owned_by(owner),
            };
            Ok(vec![Change::PutView(ViewDef {
                name: name.clone(),
                sql: sql.clone(),
                acl,
            })])
        })?;
        Ok(Output::Command(CommandTag::new("CREATE VIEW")))
    }

    pub async fn truncate(&self, t: &ast::Truncate) -> Result<Output> {
        let snapshot = self.catalog.snapshot();
        let mut tables = Vec::new();
        for target in &t.table_names {
            let name = relation_name(&target.name)?;
            match snapshot.table(&name) {
                Ok(table) => tables.push(table),
                Err(_) if t.if_exists => {}
                Err(e) => return Err(e),
            }
        }
        // A referenced table is truncated only with the tables that
        // reference it (or, with CASCADE, they are truncated too).
        let cascade = matches!(t.cascade, Some(ast::CascadeOption::Cascade));
        let mut i = 0;
        while i < tables.len() {
            for (child, _) in crate::foreign_key::referenced_by(&snapshot, &tables[i]) {
                if tables.iter().any(|t| t.name == child) {
                    continue;
                }
                if !cascade {
                    return Err(err!(
                        FeatureNotSupported,
                        "cannot truncate a table referenced in a foreign key constraint (table \"{child}\" references \"{}\"; truncate table \"{child}\" at the same time, or use TRUNCATE … CASCADE)",
                        tables[i].name
                    ));
                }
                tables.push(snapshot.table(&child)?);
            }
            i += 1;
        }
        for table in &tables {
            self.check_not_moving(&table.name, "truncate")?;
        }
        for table in &tables {
            self.delete_table_rows(table.id, &table.hash_map).await?;
            for index in &table.indexes {
                self.delete_table_rows(index.id, &table.hash_map).await?;
            }
        }
        if matches!(t.identity, Some(ast::TruncateIdentityOption::Restart)) {
            // The sequences of the tables' serial and identity columns start over.
            for seq in snapshot.sequences.values() {
                if seq
                    .owned_by
                    .as_ref()
                    .is_some_and(|(owner, _)| tables.iter().any(|t| &t.name == owner))
                {
                    self.sequences.set_value(&seq.name, seq.start, false)?;
                }
            }
        }
        Ok(Output::Command(CommandTag::new("TRUNCATE TABLE")))
    }

    /// Deletes every row of a table on every slice server of its map.
    pub async fn delete_table_rows(&self, table_id: u32, map_name: &str) -> Result<()> {
        let map = self.catalog.snapshot().hash_map(map_name)?;
        self.delete_rows(table_id, &map).await
    }

    /// Deletes every row of a table on every slice server of `map`.
    async fn delete_rows(&self, table_id: u32, map: &slicedb_hashmap::HashMap) -> Result<()> {
        let requests = map.nodes.iter().map(|node| {
            let cluster = self.cluster.clone();
            async move { cluster.client(*node)?.call(SliceRequest::DropTable { table_id }).await }
        });
        for r in futures::future::join_all(requests).await {
            r?;
        }
        Ok(())
    }
}
