//! The PostgreSQL wire-protocol front end, on the `pgwire` crate.
//!
//! Each connection gets a [`Session`] (settings, transaction status) and
//! sends statements to the shared [`Coordinator`]:
//! - simple queries run every statement of the string in order;
//! - the extended protocol (Parse/Bind/Describe/Execute) prepares a
//!   statement once, with DataFusion inferring the `$n` parameter types, and
//!   binds values per execution, which is what drivers do;
//! - `COPY … FROM STDIN` hands the data chunks to the coordinator's
//!   [`slicedb_coordinator::CopyIn`].
//!
//! Arrow results reach the wire through `arrow-pg`. Every error carries
//! its slicedb SQLSTATE ([`error_info`]). A malformed message ends only its
//! own connection: each connection runs in its own task.
//!
//! Before any of that, a connection may switch to TLS ([`tls`]) and must
//! pass the host rules and authenticate ([`auth`]).

pub mod auth;
pub mod text_format;
mod text_types;
pub mod tls;

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use arrow_pg::datatypes::{encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Schema};
use futures::{stream, Sink, SinkExt, StreamExt};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, PgWireServerHandlers, Type, DEFAULT_NAME,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{Describe, Execute, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;
use slicedb_common::Error;
use slicedb_coordinator::session::REPORTED;
use slicedb_coordinator::{CommandTag, Coordinator, CopyIn, Output, Prepared, Session};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// A slicedb error as a PostgreSQL ErrorResponse.
pub fn error_info(e: &Error) -> ErrorInfo {
    ErrorInfo::new("ERROR".to_string(), e.state.code().to_string(), e.message.clone())
}

fn pg_error(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&e)))
}

/// Per-connection state, kept in the connection's session extensions.
#[derive(Default)]
struct Connection {
    session: Session,
    copy: Option<Box<CopyIn>>,
}

fn connection<C: ClientInfo>(client: &C) -> Arc<Mutex<Connection>> {
    client
        .session_extensions()
        .get_or_insert_with(|| Mutex::new(Connection::default()))
}

/// Sets the status pgwire starts a query from to the session's own: in a
/// block or not. pgwire then derives the status it reports from the
/// responses (an error fails a block; `BEGIN` opens one; `COMMIT` and
/// `ROLLBACK` end it), and `ROLLBACK TO SAVEPOINT` in a failed block
/// correctly returns to "in transaction" rather than staying failed.
async fn start_from_session_status<C: ClientInfo>(client: &mut C) {
    let in_block = connection(client).lock().await.session.in_block();
    client.set_transaction_status(if in_block {
        TransactionStatus::Transaction
    } else {
        TransactionStatus::Idle
    });
}

/// The pgwire handlers of one server.
pub struct Handlers {
    coordinator: Arc<Coordinator>,
    service: Arc<SliceDbService>,
    startup: Arc<auth::Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    /// Handlers that admit clients by `rules`.
    pub fn new(coordinator: Arc<Coordinator>, rules: auth::hba::HostRules) -> Self {
        let manager = Arc::new(ConnectionManager::new());
        Handlers {
            coordinator: coordinator.clone(),
            service: Arc::new(SliceDbService {
                coordinator: coordinator.clone(),
                parser: Arc::new(CoordinatorParser {
                    coordinator: coordinator.clone(),
                }),
            }),
            startup: Arc::new(auth::Startup::new(
                manager.clone(),
                coordinator.clone(),
                Arc::new(rules),
            )),
            cancel: Arc::new(DefaultCancelHandler::new(manager)),
        }
    }

    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.service.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// Accepts connections until the listener fails; one task per connection.
/// With `tls`, a client that asks for TLS (an SSLRequest, or a direct TLS
/// handshake) gets it; without, it is told TLS is not offered.
pub async fn serve(
    listener: TcpListener,
    handlers: Arc<Handlers>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
) -> std::io::Result<()> {
    loop {
        let (socket, peer) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        let handlers = handlers.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!(%peer, "connection closed: {e}");
            }
        });
    }
}

struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        tracing::debug!("sending error: {error}");
    }
}

pub struct SliceDbService {
    coordinator: Arc<Coordinator>,
    parser: Arc<CoordinatorParser>,
}

fn tag(t: CommandTag) -> Tag {
    let mut tag = Tag::new(&t.tag);
    if t.tag == "INSERT" {
        tag = tag.with_oid(0);
    }
    if let Some(rows) = t.rows {
        tag = tag.with_rows(rows as usize);
    }
    tag
}

fn query_response(
    schema: &Schema,
    stream: datafusion::execution::SendableRecordBatchStream,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(text_types::pg_fields(schema, format, Some(options))?);
    let rows_fields = fields.clone();
    let encoding = Arc::new(text_format::encoding_fields(&fields));
    let rows = stream
        .map(move |batch| {
            let batch = batch
                .map_err(Error::from)
                .and_then(|b| text_types::for_binary(&rows_fields, b))
                .and_then(|b| text_format::for_text(&rows_fields, b));
            let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send + Sync> = match batch {
                Ok(b) => encode_recordbatch(encoding.clone(), b),
                Err(e) => Box::new(std::iter::once(Err(pg_error(e)))),
            };
            stream::iter(rows)
        })
        .flatten();
    Ok(QueryResponse::new(fields, rows))
}

impl SliceDbService {
    /// Turns a coordinator output into a pgwire response.
    async fn respond<C>(&self, client: &mut C, output: Output, format: &Format) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Ok(match output {
            Output::Rows { schema, stream } => {
                let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
                Response::Query(query_response(&schema, stream, format, options)?)
            }
            Output::Returned { tag, schema, batches } => {
                let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
                let stream = datafusion::physical_plan::memory::MemoryStream::try_new(batches, schema.clone(), None)
                    .map_err(|e| pg_error(Error::from(e)))?;
                let mut response = query_response(&schema, Box::pin(stream), format, options)?;
                response.set_command_tag(&tag);
                Response::Query(response)
            }
            Output::Command(t) => Response::Execution(tag(t)),
            Output::TransactionStart(t) => Response::TransactionStart(tag(t)),
            Output::TransactionEnd(t) => Response::TransactionEnd(tag(t)),
            Output::Empty => Response::EmptyQuery,
            Output::CopyIn(copy) => {
                let columns = copy.columns();
                let format = copy.binary() as i8;
                connection(client).lock().await.copy = Some(copy);
                Response::CopyIn(CopyResponse::new(format, columns, stream::empty()))
            }
            Output::CopyOut { columns, binary, rows } => {
                let data = rows.map(|r| r.map(|bytes| CopyData::new(bytes.into())).map_err(pg_error));
                Response::CopyOut(CopyResponse::new(binary as i8, columns, data))
            }
        })
    }

    /// Sends ParameterStatus for reported settings a statement changed, and
    /// keeps the settings arrow-pg formats values by in the client metadata.
    async fn report_settings<C>(&self, client: &mut C, changed: Vec<(String, String)>) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        for (name, value) in changed {
            client.metadata_mut().insert(name.to_ascii_lowercase(), value.clone());
            if REPORTED.contains(&name.as_str()) {
                client
                    .send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(name, value)))
                    .await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SimpleQueryHandler for SliceDbService {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        start_from_session_status(client).await;
        self._on_query(client, query).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = connection(client);
        let (outputs, changed) = {
            let mut guard = conn.lock().await;
            let outputs = self.coordinator.execute_sql(&mut guard.session, query).await;
            (outputs, guard.session.take_changed())
        };
        self.report_settings(client, changed).await?;
        let mut responses = Vec::with_capacity(outputs.len());
        for out in outputs {
            match out {
                Ok(o) => responses.push(self.respond(client, o, &Format::UnifiedText).await?),
                Err(e) => responses.push(Response::Error(Box::new(error_info(&e)))),
            }
        }
        Ok(responses)
    }
}

/// What the extended protocol stores per prepared statement.
pub type StoredStatement = Arc<Prepared>;

/// Puts back the NULL parameters that arrow-pg's decoding leaves out: a
/// NULL whose type neither the client (no oid, or `unknown`, as psycopg
/// sends `None`) nor the planner knows is skipped there, which shifts every
/// later parameter. Each becomes an untyped NULL at its position.
fn with_untyped_nulls<S: Clone>(
    portal: &Portal<S>,
    inferred: &[Option<DataType>],
    params: datafusion::common::ParamValues,
) -> PgWireResult<datafusion::common::ParamValues> {
    let datafusion::common::ParamValues::List(mut list) = params else {
        return Ok(params);
    };
    if list.len() < portal.parameters.len() {
        for (i, value) in portal.parameters.iter().enumerate() {
            let hint = portal.statement.parameter_types.get(i).cloned().flatten();
            let untyped =
                hint.is_none_or(|t| t == pgwire::api::Type::UNKNOWN) && inferred.get(i).is_none_or(Option::is_none);
            if value.is_none() && untyped && i <= list.len() {
                list.insert(i, datafusion::common::ScalarValue::Null.into());
            }
        }
    }
    if list.len() != portal.parameters.len() {
        return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_string(),
            "08P01".to_string(),
            format!(
                "could not decode the parameters: {} of {} have a type slicedb cannot read",
                portal.parameters.len() - list.len().min(portal.parameters.len()),
                portal.parameters.len()
            ),
        ))));
    }
    Ok(datafusion::common::ParamValues::List(list))
}

/// Reads again, as PostgreSQL reads them, the array parameters sent as
/// text: pgwire's reader takes an empty element (`""`) and a quoted
/// `"NULL"` for NULL.
fn reread_text_arrays<S: Clone>(portal: &Portal<S>, params: &mut datafusion::common::ParamValues) -> PgWireResult<()> {
    let datafusion::common::ParamValues::List(list) = params else {
        return Ok(());
    };
    for (i, slot) in list.iter_mut().enumerate() {
        let (Some(Some(raw)), false) = (portal.parameters.get(i), portal.parameter_format.is_binary(i)) else {
            continue;
        };
        let Some(ty @ slicedb_common::SqlType::Array(_)) = slicedb_common::SqlType::from_arrow(&slot.value.data_type())
        else {
            continue;
        };
        let text = String::from_utf8_lossy(raw);
        let strings = datafusion::arrow::array::StringArray::from(vec![text.as_ref()]);
        let array = slicedb_planner::array_text::text_column(&strings, ty, None).map_err(pg_error)?;
        let value = datafusion::common::ScalarValue::try_from_array(&array, 0).map_err(|e| pg_error(e.into()))?;
        *slot = value.into();
    }
    Ok(())
}

/// The parser the pgwire machinery calls: it holds the coordinator.
pub struct CoordinatorParser {
    coordinator: Arc<Coordinator>,
}

#[async_trait]
impl QueryParser for CoordinatorParser {
    type Statement = StoredStatement;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let prepared = self.coordinator.prepare(sql).await.map_err(pg_error)?;
        Ok(Some(Arc::new(prepared)))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Coordinator::parameter_fields(stmt)
            .map_err(pg_error)?
            .iter()
            .map(|f| match f {
                Some(f) => text_types::pg_type(f).map_or_else(|| into_pg_type(f.data_type()), Ok),
                None => Ok(Type::UNKNOWN),
            })
            .collect()
    }

    fn get_result_schema(&self, stmt: &Self::Statement, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        match Coordinator::result_schema(stmt) {
            Some(schema) => text_types::pg_fields(&schema, format.unwrap_or(&Format::UnifiedText), None),
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for SliceDbService {
    type Statement = StoredStatement;
    type QueryParser = CoordinatorParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        start_from_session_status(client).await;
        self._on_execute(client, message).await
    }

    /// pgwire answers Describe of a statement that has parameters but
    /// returns no rows (an INSERT with `$1`) with an empty RowDescription;
    /// PostgreSQL sends NoData, and JDBC relies on it.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
            if let Some(Entry::Value(stmt)) = client.portal_store().get_statement(name) {
                let response = self.do_describe_statement(client, &stmt).await?;
                if response.fields.is_empty() {
                    let oids = response.parameters.iter().map(|t| t.oid()).collect();
                    client
                        .send(PgWireBackendMessage::ParameterDescription(ParameterDescription::new(
                            oids,
                        )))
                        .await?;
                    client.send(PgWireBackendMessage::NoData(NoData::new())).await?;
                    return Ok(());
                }
            }
        }
        self._on_describe(client, message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = portal.statement.statement.clone();
        let fields = Coordinator::parameter_fields(&prepared).map_err(pg_error)?;
        let types: Vec<Option<DataType>> = fields
            .iter()
            .map(|f| f.as_ref().map(|f| f.data_type().clone()))
            .collect();
        // uuid and jsonb parameters, as text arrow-pg can decode.
        let text_kinds: Vec<Option<Type>> = fields
            .iter()
            .map(|f| f.as_ref().and_then(|f| text_types::pg_type(f)))
            .collect();
        let converted = text_types::text_parameters(portal, &text_kinds).map_err(pg_error)?;
        let portal = converted.as_ref().unwrap_or(portal);
        // A float bound where the planner wants a numeric (Python's float
        // for a `numeric` column) is decoded as a float, then cast: arrow-pg
        // does not coerce floats to decimals.
        let float_to_decimal: Vec<Option<DataType>> = types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let hint = portal.statement.parameter_types.get(i).cloned().flatten();
                let float = matches!(hint, Some(pgwire::api::Type::FLOAT4 | pgwire::api::Type::FLOAT8));
                t.clone().filter(|t| float && matches!(t, DataType::Decimal128(..)))
            })
            .collect();
        let refs: Vec<Option<&DataType>> = types
            .iter()
            .zip(&float_to_decimal)
            .map(|(t, d)| if d.is_some() { None } else { t.as_ref() })
            .collect();
        // A value with no type from the client nor from planning is text
        // (arrow-pg would read one spelled `{…}` as an array).
        let server_types: Vec<Option<&Type>> = (0..portal.parameters.len())
            .map(|i| {
                let declared = portal.statement.parameter_types.get(i).cloned().flatten();
                let untyped = declared.is_none_or(|t| t == Type::UNKNOWN) && refs.get(i).is_none_or(Option::is_none);
                (untyped && portal.parameters[i].is_some()).then_some(&Type::TEXT)
            })
            .collect();
        let decoded = deserialize_parameters_with_server_types(portal, &refs, &server_types)?;
        let mut params = with_untyped_nulls(portal, &types, decoded)?;
        reread_text_arrays(portal, &mut params)?;
        if let datafusion::common::ParamValues::List(list) = &mut params {
            for (slot, target) in list.iter_mut().zip(&float_to_decimal) {
                if let Some(target) = target {
                    let cast = slot.value.cast_to(target).map_err(|e| {
                        PgWireError::UserError(Box::new(ErrorInfo::new(
                            "ERROR".to_string(),
                            "22003".to_string(),
                            format!("numeric field overflow: {e}"),
                        )))
                    })?;
                    *slot = cast.into();
                }
            }
        }
        let conn = connection(client);
        let (result, changed) = {
            let mut guard = conn.lock().await;
            let result = self
                .coordinator
                .execute_prepared(&mut guard.session, &prepared, params)
                .await;
            (result, guard.session.take_changed())
        };
        self.report_settings(client, changed).await?;
        let output = result.map_err(pg_error)?;
        self.respond(client, output, &portal.result_column_format).await
    }
}

#[async_trait]
impl CopyHandler for SliceDbService {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = connection(client);
        let mut guard = conn.lock().await;
        let Some(copy) = guard.copy.as_mut() else {
            return Err(pg_error(Error::new(
                slicedb_common::SqlState::ProtocolViolation,
                "COPY data without COPY",
            )));
        };
        if let Err(e) = copy.push(&copy_data.data).await {
            let Some(copy) = guard.copy.take() else {
                return Err(pg_error(e));
            };
            let e = self.coordinator.abort_copy(&mut guard.session, *copy, e).await;
            return Err(pg_error(e));
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = connection(client);
        let mut guard = conn.lock().await;
        let Some(copy) = guard.copy.take() else {
            return Err(pg_error(Error::new(
                slicedb_common::SqlState::ProtocolViolation,
                "COPY done without COPY",
            )));
        };
        let result = self.coordinator.finish_copy(&mut guard.session, *copy).await;
        drop(guard);
        let rows = result.map_err(pg_error)?;
        client
            .send(PgWireBackendMessage::CommandComplete(
                tag(CommandTag::with_rows("COPY", rows)).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = connection(client);
        let mut guard = conn.lock().await;
        let error = Error::new(
            slicedb_common::SqlState::QueryCanceled,
            format!("COPY from stdin failed: {}", fail.message),
        );
        let error = match guard.copy.take() {
            Some(copy) => self.coordinator.abort_copy(&mut guard.session, *copy, error).await,
            None => error,
        };
        drop(guard);
        pg_error(error)
    }
}

/// The settings in a startup packet's `options` (`-c name=value` or
/// `--name=value`, separated by spaces; a backslash keeps the next
/// character, so `read\ committed` is one value). Other switches are
/// ignored.
pub(crate) fn startup_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let setting = match w.as_str() {
            "-c" => words.next(),
            _ => w
                .strip_prefix("--")
                .or_else(|| w.strip_prefix("-c"))
                .map(str::to_string),
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            out.push((name.replace('-', "_"), value.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::startup_options;

    #[test]
    fn startup_options_read_as_postgresql_reads_them() {
        let set = |n: &str, v: &str| (n.to_string(), v.to_string());
        assert_eq!(
            startup_options(
                r"-c default_transaction_isolation=read\ committed --lock-timeout=2s -cstatement_timeout=5"
            ),
            vec![
                set("default_transaction_isolation", "read committed"),
                set("lock_timeout", "2s"),
                set("statement_timeout", "5"),
            ]
        );
        assert!(startup_options("").is_empty());
    }
}
