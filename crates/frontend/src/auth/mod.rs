//! Who may connect: host rules, passwords, and the start of a session.
//!
//! A connection's startup packet names a user and a database. The first
//! matching host rule ([`hba`]) picks the method:
//! - `trust`: the role must exist and may log in (28000 otherwise);
//! - `scram-sha-256`: the client runs a SCRAM-SHA-256 exchange ([`scram`])
//!   against the role's verifier from the catalog; a wrong password, or a
//!   role without one, is 28P01, logged with the user and the client's
//!   address (never the password or the proof);
//! - `reject`, or no rule: 28000.
//!
//! Then the session starts as that role ([`Session::authenticated`]): it
//! adopts the settings of the startup packet and reports slicedb's own
//! values to the client. TLS, if the client asked for it, was negotiated
//! before any of this (`crate::serve`), so a `hostssl` rule sees it.

pub mod hba;
pub mod scram;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::sasl::SCRAM_SHA_256_METHOD;
use pgwire::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, DefaultServerParameterProvider, ServerParameterProvider,
    StartupHandler,
};
use pgwire::api::{
    ClientInfo, ConnectionManager, PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
    METADATA_DATABASE, METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use slicedb_coordinator::{Coordinator, Session};
use tokio::sync::Mutex;

use crate::connection;
use hba::{HostRules, Method};
use scram::{Exchange, ScramError};

/// Where a connection's authentication stands (kept in its session extensions).
#[derive(Default)]
enum Progress {
    /// The server asked for SCRAM and waits for the client's first message.
    #[default]
    AwaitingClientFirst,
    /// The server sent its first message and waits for the client's final one.
    AwaitingClientFinal(Box<Exchange>),
    Done,
}

/// The startup handler: host rules, authentication, then the session.
pub struct Startup {
    pub(crate) manager: Arc<ConnectionManager>,
    pub(crate) coordinator: Arc<Coordinator>,
    pub(crate) rules: Arc<HostRules>,
    pids: RandomPidSecretKeyGenerator,
}

impl Startup {
    pub fn new(manager: Arc<ConnectionManager>, coordinator: Arc<Coordinator>, rules: Arc<HostRules>) -> Self {
        Startup {
            manager,
            coordinator,
            rules,
            pids: RandomPidSecretKeyGenerator::default(),
        }
    }
}

/// Counts a refused login (`slicedb_login_failures_total`), by why.
fn refused(reason: &'static str) {
    metrics::counter!("slicedb_login_failures_total", "reason" => reason).increment(1);
}

/// Counts an admitted connection in `slicedb_connections` while it lives
/// (kept in its session extensions, dropped with it).
struct Connected;

impl Connected {
    fn new() -> Connected {
        metrics::gauge!("slicedb_connections").increment(1.0);
        Connected
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        metrics::gauge!("slicedb_connections").decrement(1.0);
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message)))
}

/// The user and database of the startup packet (the database defaults to the user, as in PostgreSQL).
fn who<C: ClientInfo>(client: &C) -> PgWireResult<(String, String)> {
    let user = client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .ok_or(PgWireError::UserNameRequired)?;
    let database = client
        .metadata()
        .get(METADATA_DATABASE)
        .cloned()
        .unwrap_or_else(|| user.clone());
    Ok((user, database))
}

fn tls_words(tls: bool) -> &'static str {
    if tls {
        "with TLS"
    } else {
        "without TLS"
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let (user, database) = who(client)?;
                let peer = client.socket_addr().ip();
                let tls = client.is_secure();
                match self.rules.method(peer, tls, &database, &user) {
                    None => {
                        refused("no_rule");
                        tracing::warn!(%peer, user, database, tls, "connection refused: no host rule matches");
                        Err(fatal(
                            "28000",
                            format!(
                                "no host rule admits host \"{peer}\", user \"{user}\", database \"{database}\", {}",
                                tls_words(tls)
                            ),
                        ))
                    }
                    Some(Method::Reject) => {
                        refused("reject");
                        tracing::warn!(%peer, user, database, tls, "connection refused by a reject rule");
                        Err(fatal(
                            "28000",
                            format!(
                                "host rule rejects connection for host \"{peer}\", user \"{user}\", database \"{database}\", {}",
                                tls_words(tls)
                            ),
                        ))
                    }
                    Some(Method::Trust) => self.admit(client, &user).await,
                    Some(Method::ScramSha256) => {
                        client.set_state(PgWireConnectionState::AuthenticationInProgress);
                        client
                            .session_extensions()
                            .insert(Mutex::new(Progress::AwaitingClientFirst));
                        client
                            .send(PgWireBackendMessage::Authentication(Authentication::SASL(vec![
                                SCRAM_SHA_256_METHOD.to_string(),
                            ])))
                            .await?;
                        Ok(())
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => {
                let (user, _) = who(client)?;
                let Some(progress) = client.session_extensions().get::<Mutex<Progress>>() else {
                    return Err(fatal("08P01", "unexpected password message".into()));
                };
                let mut progress = progress.lock().await;
                match std::mem::take(&mut *progress) {
                    Progress::AwaitingClientFirst => {
                        let first = msg.into_sasl_initial_response()?;
                        if first.auth_method != SCRAM_SHA_256_METHOD {
                            return Err(fatal(
                                "08P01",
                                format!("SASL mechanism \"{}\" is not offered", first.auth_method),
                            ));
                        }
                        let data = first.data.unwrap_or_default();
                        let verifier = self
                            .coordinator
                            .catalog
                            .snapshot()
                            .roles
                            .get(&user)
                            .and_then(|r| r.verifier());
                        let (exchange, server_first) =
                            Exchange::start(&data, verifier, &user).map_err(|e| self.failed(client, &user, e))?;
                        *progress = Progress::AwaitingClientFinal(Box::new(exchange));
                        drop(progress);
                        client
                            .send(PgWireBackendMessage::Authentication(Authentication::SASLContinue(
                                server_first.into_bytes().into(),
                            )))
                            .await?;
                        Ok(())
                    }
                    Progress::AwaitingClientFinal(exchange) => {
                        let last = msg.into_sasl_response()?;
                        let server_final = exchange.finish(&last.data).map_err(|e| self.failed(client, &user, e))?;
                        *progress = Progress::Done;
                        drop(progress);
                        client
                            .feed(PgWireBackendMessage::Authentication(Authentication::SASLFinal(
                                server_final.into_bytes().into(),
                            )))
                            .await?;
                        self.admit(client, &user).await
                    }
                    Progress::Done => Err(fatal("08P01", "unexpected password message".into())),
                }
            }
            _ => Ok(()),
        }
    }
}

impl Startup {
    /// Logs a failed exchange and turns it into the client's error.
    fn failed<C: ClientInfo>(&self, client: &C, user: &str, e: ScramError) -> PgWireError {
        let peer = client.socket_addr().ip();
        match e {
            ScramError::WrongPassword => {
                refused("password");
                tracing::warn!(%peer, user, "password authentication failed");
                fatal("28P01", format!("password authentication failed for user \"{user}\""))
            }
            ScramError::Malformed(why) => {
                refused("protocol");
                tracing::warn!(%peer, user, "malformed SCRAM exchange: {why}");
                fatal("08P01", format!("malformed SCRAM message: {why}"))
            }
        }
    }

    /// Starts the session of an authenticated (or trusted) client, once
    /// the role is known to exist and may log in.
    async fn admit<C>(&self, client: &mut C, user: &str) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let role = self.coordinator.catalog.snapshot().roles.get(user).cloned();
        let Some(role) = role else {
            refused("no_role");
            return Err(fatal("28000", format!("role \"{user}\" does not exist")));
        };
        if !role.login {
            refused("no_login");
            return Err(fatal("28000", format!("role \"{user}\" is not permitted to log in")));
        }
        let (pid, secret_key) = self.pids.generate(&*client);
        client.set_pid_and_secret_key(pid, secret_key.clone());
        let (handle, guard) = self.manager.register(pid, secret_key.clone());
        client.session_extensions().insert(handle);
        client.session_extensions().insert(guard);
        client.session_extensions().insert(Connected::new());

        let mut session = Session::authenticated(&role.name, role.superuser);
        // The settings the client sent (drivers send `application_name`,
        // `DateStyle`, `extra_float_digits`, …), but never who it is.
        for (name, value) in client.metadata() {
            match name.as_str() {
                "user" | "database" | "replication" => {}
                n if n.eq_ignore_ascii_case("session_authorization") || n.eq_ignore_ascii_case("is_superuser") => {}
                // `PGOPTIONS='-c name=value …'`, as PostgreSQL reads it.
                "options" => {
                    for (name, value) in crate::startup_options(value) {
                        if !["session_authorization", "is_superuser"]
                            .iter()
                            .any(|n| n.eq_ignore_ascii_case(&name))
                        {
                            session.set(&name, &value);
                        }
                    }
                }
                _ => {
                    session.set(name, value);
                }
            }
        }
        session.take_changed();
        let mut report: HashMap<String, String> = DefaultServerParameterProvider::default()
            .server_parameters(client)
            .unwrap_or_default();
        for name in [
            "server_version",
            "TimeZone",
            "DateStyle",
            "IntervalStyle",
            "application_name",
            "client_encoding",
            "is_superuser",
            "session_authorization",
        ] {
            report.insert(name.to_string(), session.get(name).unwrap_or_default().to_string());
        }
        connection(client).lock().await.session = session;
        client
            .feed(PgWireBackendMessage::Authentication(Authentication::Ok))
            .await?;
        for (name, value) in report {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(name, value)))
                .await?;
        }
        client
            .feed(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(
                pid, secret_key,
            )))
            .await?;
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                TransactionStatus::Idle,
            )))
            .await?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }
}
