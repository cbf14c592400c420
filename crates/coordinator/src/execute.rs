//! Statement dispatch: which component runs each statement.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;
use slicedb_common::{err, Error, Result};
use slicedb_planner::point_query::PointQuery;
use slicedb_planner::point_write::PointWrite;
use slicedb_planner::txn::StatementTxn;
use slicedb_storage::ReadAt;

use crate::parser::{self, Statement};
use crate::redistribute::QueryGuard;
use crate::rewrite::{Returning, Upsert};
use crate::sequence::SessionValues;
use crate::session::Session;
use crate::timeout;
use crate::{CommandTag, Coordinator, Output};
use slicedb_planner::write::ReturningSink;

/// PostgreSQL's limit on bind parameters.
const MAX_PARAMETERS: usize = 65_535;

/// A statement prepared by the extended protocol's Parse message.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub statement: Option<Statement>,
    /// Set when the statement is a primary-key point query (see [`PointQuery`]).
    pub point: Option<PointQuery>,
    /// DataFusion's plan, for statements DataFusion plans.
    pub plan: Option<LogicalPlan>,
    /// The catalog version the plan was made at; a later version re-plans
    /// (the plan embeds table ids and hash maps).
    pub catalog_version: u64,
    /// The `RETURNING` list of a write, and the columns it gives.
    pub returning: Option<(Returning, SchemaRef)>,
    /// `INSERT … ON CONFLICT DO NOTHING`.
    pub do_nothing: bool,
    /// A query's column names as PostgreSQL gives them.
    pub names: Option<Vec<String>>,
    /// Set when the write goes the write router (see [`PointWrite`]); the
    /// plan is kept for the parameters' types and as the fallback.
    pub routed: Option<PointWrite>,
    /// An `INSERT … ON CONFLICT` run row by row (see [`crate::upsert`]):
    /// the INSERT without its `ON CONFLICT`, and what to do on a conflict.
    pub upsert: Option<Box<(ast::Statement, Upsert)>>,
    /// An UPDATE or DELETE whose rows a query finds first (see
    /// [`crate::keyed`]), after the rewrites; `plan` is then that query's.
    pub keyed: Option<Box<ast::Statement>>,
}

/// What a statement runs as.
pub(crate) enum Work<'a> {
    /// A DataFusion plan, with the parameters bound.
    Plan {
        plan: LogicalPlan,
        returning: Option<&'a Returning>,
        do_nothing: bool,
    },
    /// The write router; `statement` is planned instead when the router
    /// declines it.
    Routed {
        write: &'a PointWrite,
        returning: Option<&'a Returning>,
        params: Option<&'a ParamValues>,
        statement: &'a ast::Statement,
    },
    /// An `INSERT … ON CONFLICT`, row by row ([`crate::upsert`]).
    Upsert {
        insert: &'a ast::Statement,
        update: &'a Upsert,
        returning: Option<&'a Returning>,
        params: Option<&'a ParamValues>,
    },
    /// An UPDATE or DELETE that finds its rows with a query first
    /// ([`crate::keyed`]).
    Keyed {
        statement: &'a ast::Statement,
        returning: Option<&'a Returning>,
        params: Option<&'a ParamValues>,
    },
}

impl Work<'_> {
    fn writes(&self, kind: PlanKind) -> bool {
        matches!(self, Work::Routed { .. } | Work::Upsert { .. } | Work::Keyed { .. })
            || matches!(kind, PlanKind::Insert | PlanKind::Update | PlanKind::Delete)
    }
}

/// A statement DataFusion planned, with what it took off the syntax tree.
pub(crate) struct Planned {
    pub(crate) plan: LogicalPlan,
    returning: Option<Returning>,
    pub(crate) do_nothing: bool,
    /// Boxed: a syntax tree is large, and futures hold this.
    upsert: Option<Box<(ast::Statement, Upsert)>>,
    /// A query's output names as PostgreSQL gives them.
    names: Option<Vec<String>>,
}

/// `schema` with its fields renamed to `names` (same count).
fn renamed_schema(schema: &SchemaRef, names: &[String]) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .zip(names)
            .map(|(f, n)| f.as_ref().clone().with_name(n))
            .collect::<Vec<_>>(),
    ))
}

/// Renames the columns of a query's rows to PostgreSQL's names.
fn rename_rows(out: Output, names: Option<&Vec<String>>) -> Result<Output> {
    use futures::StreamExt;
    let Some(names) = names else {
        return Ok(out);
    };
    match out {
        Output::Rows { schema, stream }
            if names.len() == schema.fields().len()
                && schema.fields().iter().zip(names).any(|(f, n)| f.name() != n) =>
        {
            let renamed = renamed_schema(&schema, names);
            let target = renamed.clone();
            let stream = stream
                .map(move |batch| batch.and_then(|b| Ok(RecordBatch::try_new(target.clone(), b.columns().to_vec())?)));
            Ok(Output::Rows {
                schema: renamed.clone(),
                stream: Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    renamed, stream,
                )),
            })
        }
        other => Ok(other),
    }
}

/// What kind of result a DataFusion-planned statement gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlanKind {
    Query,
    Explain,
    Insert,
    Update,
    Delete,
}

impl PlanKind {
    fn tag(self) -> &'static str {
        match self {
            PlanKind::Query => "SELECT",
            PlanKind::Explain => "EXPLAIN",
            PlanKind::Insert => "INSERT",
            PlanKind::Update => "UPDATE",
            PlanKind::Delete => "DELETE",
        }
    }
}

/// How many times a statement outside a transaction block is retried
/// after a serialization failure.
const IMPLICIT_RETRIES: u32 = 4;

/// Is `e` worth another attempt of a statement outside a block: a
/// serialization failure, or, when nothing was committed yet
/// (`before_commit`), a lost slice server connection? Waits a little (1, 4,
/// 16, 64 ms) before saying yes.
async fn retryable(e: &Error, before_commit: bool, attempt: &mut u32) -> bool {
    use slicedb_common::SqlState;
    let transient =
        e.state == SqlState::SerializationFailure || (before_commit && e.state == SqlState::ConnectionFailure);
    if !transient || *attempt >= IMPLICIT_RETRIES {
        return false;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1 << (2 * *attempt))).await;
    *attempt += 1;
    true
}

/// How many times a `READ COMMITTED` write statement starts again after
/// meeting rows committed after its snapshot.
const RC_RESTARTS: u32 = 100;

/// May a `READ COMMITTED` write statement that failed with `e` start again
/// at a new snapshot?
fn restartable(e: &Error, attempt: &mut u32) -> bool {
    if e.state != slicedb_common::SqlState::SerializationFailure || *attempt >= RC_RESTARTS {
        return false;
    }
    *attempt += 1;
    true
}

/// Does `stmt` end the block or roll back within it?
fn ends_or_rolls_back(stmt: Option<&Statement>) -> bool {
    matches!(stmt, Some(Statement::Sql(s)) if matches!(**s, ast::Statement::Commit { .. } | ast::Statement::Rollback { .. }))
}

/// In a failed transaction block, only the end of the block may run. A
/// block whose query failed while its rows streamed is failed too.
fn check_not_failed(session: &mut Session, stmt: Option<&Statement>) -> Result<()> {
    if session.stream_failed.swap(false, std::sync::atomic::Ordering::AcqRel) && session.in_block() {
        session.failed = true;
    }
    if !session.failed || ends_or_rolls_back(stmt) {
        return Ok(());
    }
    Err(err!(
        InFailedSqlTransaction,
        "current transaction is aborted, commands ignored until end of transaction block"
    ))
}

/// Marks the block failed while a statement of it runs, so that a
/// statement cancelled halfway (its future dropped) leaves the block failed,
/// as an error would. Returns whether it did.
fn assume_failure(session: &mut Session, stmt: Option<&Statement>) -> bool {
    let assume = session.in_block() && !ends_or_rolls_back(stmt);
    if assume {
        session.failed = true;
    }
    assume
}

/// Clears the assumed failure if the statement succeeded; a query's rows
/// that fail while streaming fail the block later (`stream_failed`).
fn settle_failure(session: &mut Session, assumed: bool, out: Result<Output>) -> Result<Output> {
    if assumed && out.is_ok() {
        session.failed = false;
    }
    match out {
        Ok(Output::Rows { schema, stream }) if session.in_block() => {
            use futures::StreamExt;
            let flag = session.stream_failed.clone();
            let stream = stream.inspect(move |batch| {
                if batch.is_err() {
                    flag.store(true, std::sync::atomic::Ordering::Release);
                }
            });
            Ok(Output::Rows {
                schema: schema.clone(),
                stream: Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    schema, stream,
                )),
            })
        }
        other => other,
    }
}

fn plan_kind(stmt: &ast::Statement) -> Option<PlanKind> {
    match stmt {
        ast::Statement::Query(_) | ast::Statement::ShowTables { .. } | ast::Statement::ShowColumns { .. } => {
            Some(PlanKind::Query)
        }
        ast::Statement::Explain { .. } => Some(PlanKind::Explain),
        ast::Statement::Insert(_) => Some(PlanKind::Insert),
        ast::Statement::Update(_) => Some(PlanKind::Update),
        ast::Statement::Delete(_) => Some(PlanKind::Delete),
        _ => None,
    }
}

/// Does the plan read any table (through a scan)?
fn scans_a_table(plan: &LogicalPlan) -> Result<bool> {
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        if matches!(node, LogicalPlan::TableScan(_)) {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(found)
}

/// Reads a row stream to the end and replays it from memory.
async fn collect_rows(schema: SchemaRef, stream: datafusion::execution::SendableRecordBatchStream) -> Result<Output> {
    use futures::TryStreamExt;
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    let stream = MemoryStream::try_new(batches, schema.clone(), None)?;
    Ok(Output::Rows {
        schema,
        stream: Box::pin(stream),
    })
}

/// Keeps `guard` alive until the rows of `out` have been read (or dropped).
pub(crate) fn keep_until_read<G: Send + 'static>(out: Output, guard: G) -> Output {
    use futures::StreamExt;
    match out {
        Output::Rows { schema, stream } => {
            let inner = stream.map(move |batch| {
                let _ = &guard;
                batch
            });
            Output::Rows {
                schema: schema.clone(),
                stream: Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    schema, inner,
                )),
            }
        }
        Output::CopyOut { columns, binary, rows } => Output::CopyOut {
            columns,
            binary,
            rows: rows
                .map(move |row| {
                    let _ = &guard;
                    row
                })
                .boxed(),
        },
        other => other,
    }
}

/// One-column or multi-column text rows as an [`Output::Rows`].
pub fn text_rows(columns: &[&str], rows: Vec<Vec<String>>) -> Result<Output> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[i].as_str()))) as ArrayRef)
        .collect();
    batch_rows(RecordBatch::try_new(schema, arrays)?)
}

/// A single record batch as an [`Output::Rows`].
pub fn batch_rows(batch: RecordBatch) -> Result<Output> {
    let schema = batch.schema();
    let stream = MemoryStream::try_new(vec![batch], schema.clone(), None)?;
    Ok(Output::Rows {
        schema,
        stream: Box::pin(stream),
    })
}

impl Coordinator {
    /// Parses and runs every statement of `sql` in order, stopping at the first error.
    pub async fn execute_sql(&self, session: &mut Session, sql: &str) -> Vec<Result<Output>> {
        let statements = match parser::parse(sql) {
            Ok(s) => s,
            Err(e) => return vec![Err(e)],
        };
        if statements.is_empty() {
            return vec![Ok(Output::Empty)];
        }
        let mut out = Vec::with_capacity(statements.len());
        let last = statements.len() - 1;
        for (i, stmt) in statements.into_iter().enumerate() {
            let mut r = self.execute(session, stmt).await;
            // Rows stream lazily; a later statement must not run before an
            // earlier query has read its rows.
            if i < last {
                if let Ok(Output::Rows { schema, stream }) = r {
                    r = collect_rows(schema, stream).await;
                }
            }
            let failed = r.is_err();
            out.push(r);
            if failed {
                break;
            }
        }
        out
    }

    /// Parses one statement and, if DataFusion plans it, plans it (with its `$n` parameters).
    pub async fn prepare(&self, sql: &str) -> Result<Prepared> {
        let mut statements = parser::parse(sql)?;
        if statements.len() > 1 {
            return Err(err!(
                SyntaxError,
                "cannot insert multiple commands into a prepared statement"
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok(Prepared {
                statement: None,
                plan: None,
                point: None,
                catalog_version: 0,
                returning: None,
                do_nothing: false,
                names: None,
                routed: None,
                upsert: None,
                keyed: None,
            });
        };
        let catalog_version = self.catalog.snapshot().version();
        let mut upsert = None;
        let mut keyed = None;
        let (plan, returning, names, do_nothing) = match &statement {
            Statement::Sql(s) if crate::keyed::needs_query(s) => {
                let mut rewritten = s.as_ref().clone();
                let r = crate::rewrite::for_planning(&mut rewritten, &self.catalog.snapshot())?;
                let plan = self.keyed_query_plan(&rewritten).await?;
                let returning = match r.returning {
                    Some(r) => {
                        let schema = self.returning_schema(&r)?;
                        Some((r, schema))
                    }
                    None => None,
                };
                keyed = Some(Box::new(rewritten));
                (Some(plan), returning, None, false)
            }
            Statement::Sql(s) if plan_kind(s).is_some() => {
                check_dml(s)?;
                let planned = self.plan(s).await?;
                upsert = planned.upsert;
                let returning = match planned.returning {
                    Some(r) => {
                        let schema = self.returning_schema(&r)?;
                        Some((r, schema))
                    }
                    None => None,
                };
                (Some(planned.plan), returning, planned.names, planned.do_nothing)
            }
            _ => (None, None, None, false),
        };
        let point = match &statement {
            Statement::Sql(s) => PointQuery::recognize(s),
            _ => None,
        };
        let routed = match &statement {
            Statement::Sql(s) => self.routed_write(s)?.map(|(w, _)| w),
            _ => None,
        };
        Ok(Prepared {
            statement: Some(statement),
            plan,
            point,
            catalog_version,
            returning,
            do_nothing,
            names,
            routed,
            upsert,
            keyed,
        })
    }

    /// Plans a statement DataFusion plans, after the rewrites of
    /// [`rewrite`](crate::rewrite); returns its `RETURNING` list apart.
    pub(crate) async fn plan(&self, stmt: &ast::Statement) -> Result<Planned> {
        let mut stmt = stmt.clone();
        let crate::rewrite::Rewritten {
            returning,
            do_nothing,
            upsert,
        } = crate::rewrite::for_planning(&mut stmt, &self.catalog.snapshot())?;
        let upsert = upsert.map(|u| Box::new((stmt.clone(), u)));
        if upsert.is_some() {
            // Planned for its parameters' types only; the alias is for the
            // DO UPDATE clause, and DataFusion refuses it on an INSERT.
            if let ast::Statement::Insert(insert) = &mut stmt {
                insert.table_alias = None;
            }
        }
        let output = match &mut stmt {
            ast::Statement::Query(q) => crate::names::prepare_query(q),
            ast::Statement::Insert(ast::Insert {
                source: Some(source), ..
            }) => {
                crate::names::alias_apart(source);
                None
            }
            _ => None,
        };
        let state = self.ctx.state();
        let plan = state.statement_to_plan(DfStatement::Statement(Box::new(stmt))).await?;
        let plan = slicedb_planner::param_casts::type_cast_parameters(plan)?;
        let plan = slicedb_common::int_arith::numeric_sums(plan, state.config_options())?;
        let plan = slicedb_common::pg_semantics::postgres_semantics(plan, state.config_options())?;
        let names = output.and_then(|o| {
            let fields: Vec<String> = plan.schema().fields().iter().map(|f| f.name().clone()).collect();
            o.resolve(&fields)
        });
        Ok(Planned {
            plan,
            returning,
            do_nothing,
            upsert,
            names,
        })
    }

    /// `CREATE TABLE t [(names)] AS query` (and `SELECT … INTO t`): the table
    /// takes the query's columns, named and typed as the query gives them,
    /// then the query's rows, in the session's transaction. If the rows
    /// cannot be written the table is dropped again. Answers `SELECT n`.
    pub async fn create_table_as(
        &self,
        session: &mut Session,
        mut create: ast::CreateTable,
        distributed_by: Option<Vec<String>>,
        hash_map: Option<String>,
    ) -> Result<Output> {
        let query = create
            .query
            .take()
            .ok_or_else(|| Error::internal("CREATE TABLE AS without a query"))?;
        let name = crate::ddl::relation_name(&create.name)?;
        if create.if_not_exists && self.catalog.snapshot().relation_exists(&name) {
            tracing::info!("relation \"{name}\" already exists, skipping");
            return Ok(Output::Command(CommandTag::new("CREATE TABLE AS")));
        }
        let planned = self.plan(&ast::Statement::Query(query.clone())).await?;
        let fields = planned.plan.schema().fields().clone();
        let mut names: Vec<String> = planned
            .names
            .unwrap_or_else(|| fields.iter().map(|f| f.name().clone()).collect());
        if create.columns.len() > names.len() {
            return Err(err!(SyntaxError, "CREATE TABLE AS specifies too many column names"));
        }
        for (i, c) in create.columns.iter().enumerate() {
            names[i] = crate::ddl::normalize(&c.name);
        }
        let mut columns = Vec::with_capacity(fields.len());
        for (f, n) in fields.iter().zip(&names) {
            let ty = slicedb_common::SqlType::from_field(f).ok_or_else(|| {
                err!(
                    FeatureNotSupported,
                    "column \"{n}\" has type {} which slicedb does not store",
                    f.data_type()
                )
            })?;
            columns.push(format!("\"{}\" {}", n.replace('"', "\"\""), ty.pg_name()));
        }
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let mut ddl = format!("CREATE TABLE {quoted} ({})", columns.join(", "));
        if let Some(cols) = &distributed_by {
            let cols: Vec<String> = cols.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect();
            ddl.push_str(&format!(" DISTRIBUTED BY ({})", cols.join(", ")));
        }
        if let Some(m) = &hash_map {
            ddl.push_str(&format!(" HASH MAP \"{}\"", m.replace('"', "\"\"")));
        }
        for stmt in parser::parse(&ddl)? {
            self.execute_statement(session, stmt).await?;
        }
        let insert = parser::parse(&format!("INSERT INTO {quoted} {query}"))?;
        let mut rows = 0;
        for stmt in insert {
            match self.execute_statement(session, stmt).await {
                Ok(Output::Command(tag)) => rows = tag.rows.unwrap_or(0),
                Ok(_) => {}
                Err(e) => {
                    let drop = ast::ObjectName::from(vec![ast::Ident::with_quote('"', name.clone())]);
                    let _ = self.drop_objects(ast::ObjectType::Table, true, &[drop], false).await;
                    return Err(e);
                }
            }
        }
        Ok(Output::Command(CommandTag::with_rows("SELECT", rows)))
    }

    /// The rows of a `RETURNING` list over `rows` (in the table's column order).
    fn returning_frame(&self, r: &Returning, rows: Vec<RecordBatch>) -> Result<DataFrame> {
        let table = self.catalog.snapshot().table(&r.table)?;
        let schema = slicedb_planner::write::nullable_schema(&table);
        let mem = datafusion::datasource::MemTable::try_new(schema, vec![rows])?;
        let df = self.ctx.read_table(Arc::new(mem))?.alias(&r.alias)?;
        let mut exprs = Vec::new();
        for item in &r.items {
            match item {
                ast::SelectItem::UnnamedExpr(e) => {
                    exprs.push(df.parse_sql_expr(&e.to_string())?.alias(crate::names::output_name(e)))
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => exprs.push(
                    df.parse_sql_expr(&expr.to_string())?
                        .alias(crate::ddl::normalize(alias)),
                ),
                ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..) => exprs.extend(
                    table
                        .columns
                        .iter()
                        .map(|c| datafusion::logical_expr::col(c.name.as_str())),
                ),
                ast::SelectItem::ExprWithAliases { .. } => {
                    return Err(err!(FeatureNotSupported, "several aliases of one RETURNING item"))
                }
            }
        }
        Ok(df.select(exprs)?)
    }

    /// The columns a `RETURNING` list gives.
    fn returning_schema(&self, r: &Returning) -> Result<SchemaRef> {
        Ok(Arc::new(
            self.returning_frame(r, Vec::new())?.schema().as_arrow().clone(),
        ))
    }

    /// The types of `$1, $2, …`, as far as planning could infer them.
    pub fn parameter_types(prepared: &Prepared) -> Result<Vec<Option<DataType>>> {
        Ok(Self::parameter_fields(prepared)?
            .into_iter()
            .map(|f| f.map(|f| f.data_type().clone()))
            .collect())
    }

    /// The fields of `$1, $2, …` (their types, and the metadata that names
    /// a type stored as text), as far as planning could infer them.
    pub fn parameter_fields(prepared: &Prepared) -> Result<Vec<Option<datafusion::arrow::datatypes::FieldRef>>> {
        let Some(plan) = &prepared.plan else {
            return Ok(Vec::new());
        };
        let types = plan.get_parameter_fields()?;
        let mut numbered: Vec<(usize, Option<datafusion::arrow::datatypes::FieldRef>)> = types
            .into_iter()
            .filter_map(|(id, t)| {
                id.trim_start_matches('$')
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .map(|n| (n, t))
            })
            .collect();
        numbered.sort_by_key(|(n, _)| *n);
        let count = numbered.last().map(|(n, _)| *n).unwrap_or(0);
        if count > MAX_PARAMETERS {
            return Err(err!(
                ProtocolViolation,
                "too many parameters: ${count} (at most {MAX_PARAMETERS})"
            ));
        }
        let mut out = vec![None; count];
        for (n, t) in numbered {
            out[n - 1] = t;
        }
        Ok(out)
    }

    /// The columns a prepared statement returns, if it returns rows.
    pub fn result_schema(prepared: &Prepared) -> Option<SchemaRef> {
        if let Some((_, schema)) = &prepared.returning {
            return Some(schema.clone());
        }
        match (&prepared.statement, &prepared.plan) {
            (Some(Statement::Sql(s)), Some(plan)) => match plan_kind(s) {
                Some(PlanKind::Query) => {
                    let schema = Arc::new(plan.schema().as_arrow().clone());
                    Some(match &prepared.names {
                        Some(names) if names.len() == schema.fields().len() => renamed_schema(&schema, names),
                        _ => schema,
                    })
                }
                Some(PlanKind::Explain) => Some(explain_schema()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Runs a prepared statement with bound parameter values.
    pub async fn execute_prepared(
        &self,
        session: &mut Session,
        prepared: &Prepared,
        params: ParamValues,
    ) -> Result<Output> {
        let started = std::time::Instant::now();
        let out = self.execute_prepared_checked(session, prepared, params).await;
        crate::observe::statement_done(crate::observe::kind(prepared.statement.as_ref()), started, &out);
        out
    }

    async fn execute_prepared_checked(
        &self,
        session: &mut Session,
        prepared: &Prepared,
        params: ParamValues,
    ) -> Result<Output> {
        let guard = self.begin_query();
        check_not_failed(session, prepared.statement.as_ref())?;
        let deadline = timeout::deadline(session.statement_timeout_ms());
        let assumed = assume_failure(session, prepared.statement.as_ref());
        // A refusal fails an open block, as any error does.
        if let Some(stmt) = &prepared.statement {
            self.check_privileges(session, stmt)?;
        }
        let out = timeout::within(deadline, self.execute_prepared_statement(session, prepared, params))
            .await
            .map(|out| timeout::bound_output(out, deadline));
        let out = settle_failure(session, assumed, out)?;
        Ok(keep_until_read(out, guard))
    }

    /// Registers a statement as running from the catalog's current version
    /// on, so a redistribution's cleanup waits for it (see
    /// [`crate::redistribute::QueryEpochs`]).
    fn begin_query(&self) -> QueryGuard {
        self.redistributions.queries.begin(self.catalog.snapshot().version())
    }

    pub(crate) async fn execute_prepared_statement(
        &self,
        session: &mut Session,
        prepared: &Prepared,
        params: ParamValues,
    ) -> Result<Output> {
        match (&prepared.statement, &prepared.plan) {
            (None, _) => Ok(Output::Empty),
            (Some(Statement::Sql(s)), Some(plan)) => {
                if let Some(point) = &prepared.point {
                    if let Some(out) = self.point_query(session, point, Some(&params)).await? {
                        return Ok(out);
                    }
                }
                let kind = plan_kind(s).ok_or_else(|| Error::internal("planned statement of unknown kind"))?;
                if let Some(statement) = &prepared.keyed {
                    let work = Work::Keyed {
                        statement,
                        returning: prepared.returning.as_ref().map(|(r, _)| r),
                        params: Some(&params),
                    };
                    return self.run_plan(session, work, kind).await;
                }
                if let Some(upsert) = &prepared.upsert {
                    let (insert, update) = upsert.as_ref();
                    let work = Work::Upsert {
                        insert,
                        update,
                        returning: prepared.returning.as_ref().map(|(r, _)| r),
                        params: Some(&params),
                    };
                    return self.run_plan(session, work, kind).await;
                }
                if let Some(write) = &prepared.routed {
                    let work = Work::Routed {
                        write,
                        returning: prepared.returning.as_ref().map(|(r, _)| r),
                        params: Some(&params),
                        statement: s,
                    };
                    return self.run_plan(session, work, kind).await;
                }
                let planned = if self.catalog.snapshot().version() == prepared.catalog_version {
                    Planned {
                        plan: plan.clone(),
                        returning: prepared.returning.as_ref().map(|(r, _)| r.clone()),
                        do_nothing: prepared.do_nothing,
                        upsert: None,
                        names: prepared.names.clone(),
                    }
                } else {
                    self.plan(s).await?
                };
                let work = Work::Plan {
                    plan: planned.plan.replace_params_with_values(&params)?,
                    returning: planned.returning.as_ref(),
                    do_nothing: planned.do_nothing,
                };
                let out = self.run_plan(session, work, kind).await?;
                rename_rows(out, planned.names.as_ref())
            }
            (Some(stmt), _) => self.execute_statement(session, stmt.clone()).await,
        }
    }

    /// Runs one parsed statement. In a failed transaction block only the
    /// end of the block runs (25P02 otherwise); an error fails the block.
    pub async fn execute(&self, session: &mut Session, stmt: Statement) -> Result<Output> {
        let started = std::time::Instant::now();
        let kind = crate::observe::kind(Some(&stmt));
        let out = self.execute_checked(session, stmt).await;
        crate::observe::statement_done(kind, started, &out);
        out
    }

    async fn execute_checked(&self, session: &mut Session, stmt: Statement) -> Result<Output> {
        let guard = self.begin_query();
        check_not_failed(session, Some(&stmt))?;
        let deadline = timeout::deadline(session.statement_timeout_ms());
        let assumed = assume_failure(session, Some(&stmt));
        // A refusal fails an open block, as any error does.
        self.check_privileges(session, &stmt)?;
        let out = timeout::within(deadline, self.execute_statement(session, stmt))
            .await
            .map(|out| timeout::bound_output(out, deadline));
        let out = settle_failure(session, assumed, out)?;
        Ok(keep_until_read(out, guard))
    }

    async fn execute_statement(&self, session: &mut Session, stmt: Statement) -> Result<Output> {
        let sql = match stmt {
            Statement::Sql(s) => *s,
            Statement::CreateTable {
                create,
                distributed_by,
                hash_map,
            } if create.query.is_some() => {
                return Box::pin(self.create_table_as(session, *create, distributed_by, hash_map)).await;
            }
            Statement::CreateTable {
                create,
                distributed_by,
                hash_map,
            } => {
                return self
                    .create_table(*create, distributed_by, hash_map, &session.user)
                    .await;
            }
            Statement::CreateHashMap {
                name,
                nodes,
                strategy,
                as_current,
            } => {
                self.require_superuser(session, "create hash maps")?;
                return self.create_hash_map(&name, nodes, strategy, as_current);
            }
            Statement::SetCurrentHashMap(name) => {
                self.require_superuser(session, "set the current hash map")?;
                return self.set_current_hash_map(&name);
            }
            Statement::DropHashMap { name, if_exists } => {
                self.require_superuser(session, "drop hash maps")?;
                return self.drop_hash_map(&name, if_exists);
            }
            Statement::CreateRole { name, options } => return self.create_role(session, name, options).await,
            Statement::CreateSequence {
                if_not_exists,
                name,
                clauses,
            } => return self.create_sequence(if_not_exists, &name, &clauses).await,
            Statement::AlterSequence {
                if_exists,
                name,
                action,
            } => return self.alter_sequence(if_exists, &name, &action).await,
            Statement::AlterRole { name, options } => return self.alter_role(session, name, options).await,
            Statement::DropRole { names, if_exists } => return self.drop_role(session, names, if_exists).await,
            Statement::ShowHashMaps => return self.show_hash_maps(),
            Statement::ShowHashMap(name) => return self.show_hash_map(&name),
            Statement::ShowNodes => return self.show_nodes().await,
            Statement::SetConstraints { names, deferred } => {
                return self.set_constraints(session, names, deferred).await;
            }
            Statement::ShowSlices(table) => return self.show_slices(table.as_deref()).await,
            Statement::ShowSliceLoad(table) => return self.show_slice_load(table.as_deref()).await,
            Statement::AddNode {
                address,
                new_map,
                strategy,
            } => {
                self.require_superuser(session, "add nodes")?;
                return self.add_node(&address, new_map, strategy).await;
            }
            Statement::RemoveNode(node) => {
                self.require_superuser(session, "remove nodes")?;
                return self.remove_node(node).await;
            }
            Statement::Redistribute {
                table,
                to_map,
                max_rate_mb,
            } => {
                self.require_superuser(session, "redistribute tables")?;
                return self
                    .redistribute(table.as_deref(), to_map.as_deref(), max_rate_mb)
                    .await;
            }
            Statement::Rebalance {
                table,
                max_rate_mb,
                threshold_pct,
                dry_run,
            } => {
                self.require_superuser(session, "rebalance tables")?;
                return self
                    .rebalance(table.as_deref(), max_rate_mb, threshold_pct, dry_run)
                    .await;
            }
            Statement::AlterNode { node, capacity_gb } => {
                self.require_superuser(session, "alter nodes")?;
                return self.alter_node(node, capacity_gb);
            }
            Statement::DrainNode { node, max_rate_mb } => {
                self.require_superuser(session, "drain nodes")?;
                return self.drain_node(node, max_rate_mb).await;
            }
            Statement::ShowRedistributions => return self.show_redistributions(),
            Statement::Maintenance { command, tables } => {
                // Versions are collected by the MVCC garbage collector on
                // its own (docs/transactions.md); there is nothing more for
                // VACUUM to do, and the planner keeps no statistics yet.
                let snapshot = self.catalog.snapshot();
                for t in &tables {
                    snapshot.table(t)?;
                }
                return Ok(Output::Command(CommandTag::new(command)));
            }
            Statement::CancelRedistribution(job) => {
                self.require_superuser(session, "cancel redistributions")?;
                return self.cancel_redistribution(job).await;
            }
        };
        // `SELECT … INTO t` is `CREATE TABLE t AS SELECT …`.
        if let ast::Statement::Query(q) = &sql {
            if let ast::SetExpr::Select(select) = q.body.as_ref() {
                if let Some(into) = &select.into {
                    if into.temporary {
                        return Err(err!(FeatureNotSupported, "temporary tables are not supported"));
                    }
                    let mut query = q.clone();
                    let target = into.name.clone();
                    if let ast::SetExpr::Select(s) = query.body.as_mut() {
                        s.into = None;
                    }
                    let create = parser::create_table_as(&target, &query)?;
                    return Box::pin(self.create_table_as(session, *create, None, None)).await;
                }
            }
        }
        if let Some(point) = PointQuery::recognize(&sql) {
            if let Some(out) = self.point_query(session, &point, None).await? {
                return Ok(out);
            }
        }
        if let Some(kind) = plan_kind(&sql) {
            check_dml(&sql)?;
            if crate::keyed::needs_query(&sql) {
                let mut statement = sql.clone();
                let rewritten = crate::rewrite::for_planning(&mut statement, &self.catalog.snapshot())?;
                let work = Work::Keyed {
                    statement: &statement,
                    returning: rewritten.returning.as_ref(),
                    params: None,
                };
                return self.run_plan(session, work, kind).await;
            }
            if let Some((write, rewritten)) = self.routed_write(&sql)? {
                let work = Work::Routed {
                    write: &write,
                    returning: rewritten.returning.as_ref(),
                    params: None,
                    statement: &sql,
                };
                return self.run_plan(session, work, kind).await;
            }
            let planned = self.plan(&sql).await?;
            if let Some(upsert) = &planned.upsert {
                let (insert, update) = upsert.as_ref();
                let work = Work::Upsert {
                    insert,
                    update,
                    returning: planned.returning.as_ref(),
                    params: None,
                };
                return self.run_plan(session, work, kind).await;
            }
            let work = Work::Plan {
                plan: planned.plan,
                returning: planned.returning.as_ref(),
                do_nothing: planned.do_nothing,
            };
            let out = self.run_plan(session, work, kind).await?;
            return rename_rows(out, planned.names.as_ref());
        }
        use ast::Statement as S;
        match sql {
            S::Drop {
                object_type: ast::ObjectType::Index,
                if_exists,
                names,
                ..
            } => {
                let names: Vec<String> = names.iter().map(crate::ddl::relation_name).collect::<Result<_>>()?;
                self.drop_indexes(&names, if_exists).await
            }
            S::CreateIndex(ci) => self.create_index(session, ci).await,
            S::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => self.drop_objects(object_type, if_exists, &names, cascade).await,
            S::CreateView(view) => self.create_view(view, &session.user).await,
            S::CreateExtension(ext) => crate::ddl::create_extension(&ext),
            S::Comment {
                object_type,
                object_name,
                comment,
                ..
            } => self.comment_on(object_type, &object_name, comment).await,
            S::AlterTable(alter)
                if alter
                    .operations
                    .iter()
                    .any(|op| matches!(op, ast::AlterTableOperation::OwnerTo { .. })) =>
            {
                let [ast::AlterTableOperation::OwnerTo { new_owner }] = alter.operations.as_slice() else {
                    return Err(err!(
                        FeatureNotSupported,
                        "ALTER TABLE … OWNER TO cannot be combined with other changes"
                    ));
                };
                let name = crate::ddl::relation_name(&alter.name)?;
                self.alter_owner(session, &name, new_owner)?;
                Ok(Output::Command(CommandTag::new("ALTER TABLE")))
            }
            // Boxed: ALTER TABLE runs queries of its own through `execute`.
            S::AlterTable(alter) => Box::pin(self.alter_table(alter)).await,
            S::Grant(g) => {
                self.grant_or_revoke(session, true, &g.privileges, g.objects.as_ref(), &g.grantees)
                    .await
            }
            S::Revoke(r) => {
                self.grant_or_revoke(session, false, &r.privileges, r.objects.as_ref(), &r.grantees)
                    .await
            }
            S::Truncate(t) => self.truncate(&t).await,
            S::Copy {
                source,
                to,
                target,
                options,
                legacy_options,
                ..
            } => self.copy(session, source, to, target, &options, &legacy_options).await,
            S::Set(set) => self.set(session, set),
            S::Reset(reset) => crate::settings::reset(session, reset),
            S::ShowVariable { variable } => crate::settings::show_variable(session, &variable),
            S::StartTransaction { modes, .. } => self.begin_block(session, &modes).await,
            S::Commit { chain: false, .. } => self.commit_block(session).await,
            S::Rollback {
                savepoint: Some(name),
                chain: false,
            } => self.rollback_to_savepoint(session, &name).await,
            S::Rollback { chain: false, .. } => self.rollback_block(session).await,
            S::Commit { chain: true, .. } | S::Rollback { chain: true, .. } => {
                Err(err!(FeatureNotSupported, "AND CHAIN is not supported"))
            }
            S::Savepoint { name } => self.savepoint(session, &name),
            S::ReleaseSavepoint { name } => self.release_savepoint(session, &name),
            S::Discard { object_type } => self.discard_all(session, &object_type),
            S::Deallocate { name, .. } => self.deallocate_sql(session, &name),
            S::Prepare {
                name,
                data_types,
                statement,
            } => self.prepare_sql(session, &name, &data_types, &statement).await,
            S::Execute {
                name: Some(name),
                parameters,
                immediate: false,
                ..
            } => self.execute_sql_prepared(session, &name, &parameters).await,
            other => Err(err!(FeatureNotSupported, "statement not supported: {other}")),
        }
    }

    /// Runs a point query on its slice server, if it fits its table: in
    /// the open transaction, or at a new snapshot.
    async fn point_query(
        &self,
        session: &mut Session,
        point: &PointQuery,
        params: Option<&ParamValues>,
    ) -> Result<Option<Output>> {
        let Ok(table) = self.slice_table(&point.table) else {
            return Ok(None);
        };
        let mut attempt = 0;
        let found = loop {
            let (at, snapshot) = match session.txn.as_mut() {
                Some(txn) => {
                    let (stmt, snapshot) = self.txns.next_statement(txn).await?;
                    (stmt.read, snapshot)
                }
                None => {
                    let s = self.txns.snapshot().await?;
                    (ReadAt::at(s.ts), Some(s))
                }
            };
            match point.execute(&table, params, at).await {
                Err(e) if snapshot.is_some() && retryable(&e, true, &mut attempt).await => continue,
                other => break other?,
            }
        };
        let Some((schema, batches)) = found else {
            return Ok(None);
        };
        let stream = MemoryStream::try_new(batches, schema.clone(), None)?;
        Ok(Some(Output::Rows {
            schema,
            stream: Box::pin(stream),
        }))
    }

    /// Runs a DataFusion plan: in the open transaction block; else a query
    /// at a new snapshot, or a write in a transaction of its own (retried
    /// with a new snapshot on a serialization failure, as nothing of it is
    /// visible yet).
    async fn run_plan(&self, session: &mut Session, work: Work<'_>, kind: PlanKind) -> Result<Output> {
        let sequences = session.statement_values();
        let writes = work.writes(kind);
        let lock_timeout_ms = session.lock_timeout_ms();
        if let Some(txn) = session.txn.as_mut() {
            txn.lock_timeout_ms = lock_timeout_ms;
            if writes && session.read_only {
                return Err(err!(
                    ReadOnlySqlTransaction,
                    "cannot execute {} in a read-only transaction",
                    kind.tag()
                ));
            }
            let mut attempt = 0;
            loop {
                let (stmt, statement_snapshot) = self.txns.next_statement(txn).await?;
                let seq = stmt.write.map(|w| w.seq);
                // The rows may be read after the block ends (a suspended
                // portal): keep the snapshots from garbage collection till then.
                let pin = (txn.pin(), statement_snapshot);
                match self.run_plan_in(&work, kind, stmt, &sequences).await {
                    // READ COMMITTED: a write that met a row committed after
                    // its snapshot starts again at a new one, once its own
                    // writes are undone (PostgreSQL re-checks only the rows
                    // concerned; the result is the same for one statement).
                    Err(e) if txn.read_committed && writes && restartable(&e, &mut attempt) => {
                        if let Some(seq) = seq {
                            self.txns.rollback_to(txn, seq).await?;
                        }
                        continue;
                    }
                    other => return other.map(|out| keep_until_read(out, pin)),
                }
            }
        }
        // At READ COMMITTED a write statement of its own restarts as one
        // in a block does (up to RC_RESTARTS times), not just IMPLICIT_RETRIES.
        let read_committed = writes
            && crate::txn_statements::is_read_committed(
                session.get("default_transaction_isolation").unwrap_or_default(),
            );
        let mut attempt = 0;
        loop {
            // Until COMMIT starts nothing of the statement is visible, so a
            // slice server that was unreachable then is a reason to retry too.
            let mut before_commit = true;
            let result = if writes {
                match self.txns.begin().await {
                    Ok(mut txn) => {
                        txn.lock_timeout_ms = lock_timeout_ms;
                        let stmt = txn.statement();
                        let done = match self.run_plan_in(&work, kind, stmt.clone(), &sequences).await {
                            // Deferred constraints are checked at the end
                            // of the transaction: now.
                            Ok(out) => self.keep_foreign_keys(&stmt, &sequences, true).await.map(|()| out),
                            Err(e) => Err(e),
                        };
                        match done {
                            Ok(out) => {
                                before_commit = false;
                                self.txns.commit(&mut txn).await.map(|()| out)
                            }
                            Err(e) => {
                                self.txns.rollback(&mut txn).await;
                                Err(e)
                            }
                        }
                    }
                    Err(e) => Err(e),
                }
            } else {
                match self.txns.read_only_statement().await {
                    Ok((snapshot, stmt)) => self
                        .run_plan_in(&work, kind, stmt, &sequences)
                        .await
                        .map(|out| keep_until_read(out, snapshot)),
                    Err(e) => Err(e),
                }
            };
            match result {
                Err(e) if read_committed && before_commit && restartable(&e, &mut attempt) => {
                    // Back off a little, as retries do, to let the other writer finish.
                    let pause = 1u64 << (2 * attempt.min(3));
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                    continue;
                }
                Err(e) if retryable(&e, before_commit, &mut attempt).await => continue,
                other => return other,
            }
        }
    }

    /// Runs `work` in the statement's transaction `stmt`; a write then
    /// does the foreign-key work it left ([`crate::foreign_key`]), or, if
    /// it failed, drops it.
    pub(crate) async fn run_plan_in(
        &self,
        work: &Work<'_>,
        kind: PlanKind,
        stmt: Arc<StatementTxn>,
        sequences: &SessionValues,
    ) -> Result<Output> {
        if !work.writes(kind) {
            return self.run_work_in(work, kind, stmt, sequences).await;
        }
        let seq = stmt.write.map(|w| w.seq).unwrap_or(0);
        let mut out = self.run_work_in(work, kind, stmt.clone(), sequences).await;
        if out.is_ok() {
            if let Err(e) = self.keep_foreign_keys(&stmt, sequences, false).await {
                out = Err(e);
            }
        }
        if out.is_err() {
            stmt.take_fk_events(|e| e.seq() < seq)?;
        }
        out
    }

    async fn run_work_in(
        &self,
        work: &Work<'_>,
        kind: PlanKind,
        stmt: Arc<StatementTxn>,
        sequences: &SessionValues,
    ) -> Result<Output> {
        let (plan, returning, do_nothing) = match work {
            Work::Plan {
                plan,
                returning,
                do_nothing,
            } => (plan.clone(), *returning, *do_nothing),
            Work::Routed {
                write,
                returning,
                params,
                statement,
            } => {
                let keep_rows = returning.is_some();
                if let Some(written) = self.run_routed(write, *params, &stmt, sequences, keep_rows).await? {
                    let out = Output::Command(CommandTag::with_rows(kind.tag(), written.count));
                    return match returning {
                        Some(r) => self.returning_output(r, out, written.rows).await,
                        None => Ok(out),
                    };
                }
                // Declined before writing anything: plan it after all.
                let planned = self.plan(statement).await?;
                let plan = match params {
                    Some(p) => planned.plan.replace_params_with_values(p)?,
                    None => planned.plan,
                };
                let work = Work::Plan {
                    plan,
                    returning: planned.returning.as_ref(),
                    do_nothing: planned.do_nothing,
                };
                return Box::pin(self.run_work_in(&work, kind, stmt, sequences)).await;
            }
            Work::Upsert {
                insert,
                update,
                returning,
                params,
            } => {
                let keep_rows = returning.is_some();
                let written = Box::pin(self.upsert_in(insert, update, *params, stmt, sequences, keep_rows)).await?;
                return self.written_output(kind, *returning, written).await;
            }
            Work::Keyed {
                statement,
                returning,
                params,
            } => {
                let keep_rows = returning.is_some();
                let written = Box::pin(self.keyed_in(statement, kind, *params, stmt, sequences, keep_rows)).await?;
                return self.written_output(kind, *returning, written).await;
            }
        };
        if matches!(kind, PlanKind::Query | PlanKind::Explain) {
            let state = match crate::relation_size::calls_size_functions(&plan) {
                true => {
                    let bytes = crate::slice_load::relation_bytes(&self.catalog.snapshot(), &self.cluster).await?;
                    let mut values = sequences.clone();
                    values.relation_bytes = Some(Arc::new(bytes));
                    self.statement_state(stmt, &values, false)
                }
                false => self.statement_state(stmt, sequences, false),
            };
            return Self::run_dataframe(DataFrame::new(state, plan), kind).await;
        }
        let keep_rows = returning.is_some();
        let written = self
            .execute_plan(plan, kind, stmt, sequences, do_nothing, keep_rows)
            .await?;
        self.written_output(kind, returning, written).await
    }

    /// A session state for one statement: its transaction context, the
    /// session's sequences, and its start time.
    fn statement_state(
        &self,
        stmt: Arc<StatementTxn>,
        sequences: &SessionValues,
        do_nothing: bool,
    ) -> datafusion::execution::SessionState {
        let mut state = self.ctx.state();
        if do_nothing {
            state
                .config_mut()
                .set_extension(Arc::new(slicedb_planner::write::OnConflictDoNothing));
        }
        state.config_mut().set_extension(stmt);
        state.config_mut().options_mut().extensions.insert(sequences.clone());
        // Functions read the options as of the start of execution.
        state.mark_start_execution();
        state
    }

    /// Runs a write's plan in the statement's transaction `stmt`: how many
    /// rows it wrote and, with `keep_rows`, the rows (for `RETURNING`).
    pub(crate) async fn execute_plan(
        &self,
        plan: LogicalPlan,
        kind: PlanKind,
        stmt: Arc<StatementTxn>,
        sequences: &SessionValues,
        do_nothing: bool,
        keep_rows: bool,
    ) -> Result<(u64, Vec<RecordBatch>)> {
        let mut state = self.statement_state(stmt, sequences, do_nothing);
        let sink = keep_rows.then(|| Arc::new(ReturningSink::default()));
        if let Some(sink) = &sink {
            state.config_mut().set_extension(sink.clone());
        }
        if matches!(kind, PlanKind::Update | PlanKind::Delete) {
            // DataFusion hands UPDATE and DELETE providers only the filters
            // it finds over the target's scan. When the optimizer proves the
            // WHERE clause never holds (`WHERE 1 = 0`, `= NULL`), it removes
            // the scan altogether, and no filter would reach us: the
            // statement must touch nothing rather than everything.
            let optimized = state.optimize(&plan)?;
            if !scans_a_table(&optimized)? {
                return Ok((0, Vec::new()));
            }
        }
        let count = match Self::run_dataframe(DataFrame::new(state, plan), kind).await? {
            Output::Command(tag) => tag.rows.unwrap_or(0),
            _ => return Err(Error::internal("a write returned rows")),
        };
        let rows = match sink {
            Some(sink) => std::mem::take(&mut *sink.batches.lock().map_err(|_| Error::internal("poisoned"))?),
            None => Vec::new(),
        };
        Ok((count, rows))
    }

    /// The result of a write that counted its rows and kept them for
    /// `RETURNING` (`(count, rows)`).
    async fn written_output(
        &self,
        kind: PlanKind,
        returning: Option<&Returning>,
        (count, rows): (u64, Vec<RecordBatch>),
    ) -> Result<Output> {
        let out = Output::Command(CommandTag::with_rows(kind.tag(), count));
        match returning {
            Some(r) => self.returning_output(r, out, rows).await,
            None => Ok(out),
        }
    }

    /// A write's result with `RETURNING`: its rows, under its command tag.
    async fn returning_output(&self, r: &Returning, out: Output, rows: Vec<RecordBatch>) -> Result<Output> {
        let Output::Command(tag) = out else {
            return Ok(out);
        };
        let df = self.returning_frame(r, rows)?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        let tag = if tag.tag == "INSERT" {
            "INSERT 0".to_string()
        } else {
            tag.tag
        };
        Ok(Output::Returned { tag, schema, batches })
    }

    async fn run_dataframe(df: DataFrame, kind: PlanKind) -> Result<Output> {
        let tag = match kind {
            PlanKind::Query => {
                let schema = Arc::new(df.schema().as_arrow().clone());
                let stream = df.execute_stream().await?;
                return Ok(Output::Rows { schema, stream });
            }
            PlanKind::Explain => {
                let batches = df.collect().await?;
                return explain_output(batches);
            }
            PlanKind::Insert => "INSERT",
            PlanKind::Update => "UPDATE",
            PlanKind::Delete => "DELETE",
        };
        let batches = df.collect().await?;
        let count = batches
            .first()
            .and_then(|b| b.column(0).as_any().downcast_ref::<UInt64Array>())
            .map(|a| a.value(0))
            .unwrap_or(0);
        Ok(Output::Command(CommandTag::with_rows(tag, count)))
    }
}

fn explain_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("QUERY PLAN", DataType::Utf8, false)]))
}

/// DataFusion's EXPLAIN gives (plan_type, plan) rows; PostgreSQL users
/// expect one "QUERY PLAN" column. Show the physical plan, which names the
/// slice servers and buckets each scan touches, or everything for VERBOSE.
fn explain_output(batches: Vec<RecordBatch>) -> Result<Output> {
    let mut lines = Vec::new();
    let mut all = Vec::new();
    for b in &batches {
        if b.num_columns() != 2 {
            return batch_rows(b.clone());
        }
        let kinds = b.column(0).as_any().downcast_ref::<StringArray>();
        let plans = b.column(1).as_any().downcast_ref::<StringArray>();
        let (Some(kinds), Some(plans)) = (kinds, plans) else {
            return batch_rows(b.clone());
        };
        for i in 0..b.num_rows() {
            all.push(format!("{}:", kinds.value(i)));
            all.extend(plans.value(i).lines().map(|l| format!("  {l}")));
            if kinds.value(i) == "physical_plan" {
                lines.extend(plans.value(i).lines().map(str::to_string));
            }
        }
    }
    // EXPLAIN VERBOSE gives every stage's plan: show them all.
    let verbose = all.iter().any(|l| l.starts_with("initial_logical_plan"));
    let rows = if lines.is_empty() || verbose { all } else { lines };
    let array: ArrayRef = Arc::new(StringArray::from_iter_values(rows));
    batch_rows(RecordBatch::try_new(explain_schema(), vec![array])?)
}

/// Refuses the write statements that cannot run (UPDATE and DELETE whose
/// conditions DataFusion's hooks would not see go [`crate::keyed`]).
fn check_dml(stmt: &ast::Statement) -> Result<()> {
    match stmt {
        ast::Statement::Explain {
            analyze: true,
            statement,
            ..
        } if matches!(
            **statement,
            ast::Statement::Insert(_) | ast::Statement::Update(_) | ast::Statement::Delete(_)
        ) =>
        {
            Err(err!(
                FeatureNotSupported,
                "EXPLAIN ANALYZE of INSERT, UPDATE or DELETE is not supported"
            ))
        }
        _ => Ok(()),
    }
}
