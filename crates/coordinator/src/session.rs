//! [`Session`]: one client connection's settings and transaction status.
//!
//! `SET` stores any setting (drivers send many at start-up); `SHOW` reads
//! one back. The defaults are what PostgreSQL 15 reports for a UTF-8
//! database in UTC, so drivers find what they check for (a block runs at
//! `read committed` unless it or `default_transaction_isolation` asks for
//! `repeatable read`, see `docs/transactions.md`).
//!
//! The session also holds its transaction block, if one is open, and
//! whether an error has failed it (then every statement but the end of the
//! block gets 25P02).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::DataFusionError;

use slicedb_txn::Transaction;

/// Settings PostgreSQL reports to clients in `ParameterStatus` messages.
pub const REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
];

/// Settings that hold a duration (checked when set, see
/// [`crate::timeout::parse_duration_ms`]).
pub const DURATIONS: &[&str] = &["statement_timeout", "lock_timeout"];

/// The PostgreSQL version slicedb speaks for.
pub const SERVER_VERSION: &str = "15.0";

pub fn default_settings() -> BTreeMap<String, String> {
    [
        ("application_name", ""),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("default_transaction_isolation", "read committed"),
        ("default_transaction_read_only", "off"),
        ("extra_float_digits", "1"),
        ("in_hot_standby", "off"),
        ("integer_datetimes", "on"),
        ("IntervalStyle", "postgres"),
        ("is_superuser", "on"),
        ("lock_timeout", "0"),
        ("max_identifier_length", "63"),
        ("search_path", "\"$user\", public"),
        ("server_encoding", "UTF8"),
        ("server_version", SERVER_VERSION),
        ("server_version_num", "150000"),
        ("session_authorization", "postgres"),
        ("standard_conforming_strings", "on"),
        ("statement_timeout", "0"),
        ("TimeZone", "UTC"),
        ("transaction_isolation", "read committed"),
        ("transaction_read_only", "off"),
        ("bytea_output", "hex"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// What a statement's functions read of its session, carried to them as a
/// DataFusion config extension of each statement the coordinator runs:
/// the values `currval` and `lastval` return ([`crate::sequence`]), the
/// session's role, which `current_user` and `session_user` return
/// ([`crate::roles`]), and a statement's relation sizes
/// ([`crate::relation_size`]).
#[derive(Debug, Clone)]
pub struct SessionValues {
    pub sequences: Arc<Mutex<crate::sequence::SessionSequenceValues>>,
    pub user: Arc<str>,
    /// Bytes per table and index, gathered for a statement that calls a
    /// size function ([`crate::relation_size`]).
    pub relation_bytes: Option<Arc<crate::relation_size::RelationBytes>>,
    /// The session's settings as the statement started, which
    /// `current_setting` reads ([`crate::settings_functions`]).
    pub settings: Arc<BTreeMap<String, String>>,
    /// Settings that `set_config` changed, for the session to take on
    /// before its next statement ([`Session::apply_set_configs`]).
    pub set_configs: Arc<Mutex<Vec<(String, String)>>>,
}

impl Default for SessionValues {
    fn default() -> Self {
        SessionValues::of(slicedb_catalog::role::BOOTSTRAP_ROLE)
    }
}

impl SessionValues {
    /// Fresh values for a session of role `user`.
    pub fn of(user: &str) -> SessionValues {
        SessionValues {
            sequences: Arc::default(),
            user: Arc::from(user),
            relation_bytes: None,
            settings: Arc::default(),
            set_configs: Arc::default(),
        }
    }
}

impl ExtensionOptions for SessionValues {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, _value: &str) -> datafusion::common::Result<()> {
        Err(DataFusionError::Configuration(format!(
            "unknown setting slicedb_session.{key}"
        )))
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        Vec::new()
    }
}

impl ConfigExtension for SessionValues {
    const PREFIX: &'static str = "slicedb_session";
}

/// Per-connection state.
pub struct Session {
    /// The role the connection authenticated as (the startup packet's
    /// user, admitted by the front end's host rules). Privilege checks
    /// read this, never a setting a client can change.
    pub user: String,
    settings: BTreeMap<String, String>,
    /// The open `BEGIN … COMMIT` block's transaction.
    pub txn: Option<Transaction>,
    /// The values `currval`, `lastval` and `current_user` return.
    pub sequences: SessionValues,
    /// Statements of SQL-level `PREPARE`, by name.
    pub statements: std::collections::HashMap<String, crate::prepared_sql::SqlPrepared>,
    /// An error failed the open block: statements get 25P02 until it ends.
    pub failed: bool,
    /// The open block is `READ ONLY`.
    pub read_only: bool,
    /// A query of the block failed while its rows streamed (set by the
    /// stream, after the statement returned).
    pub stream_failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Settings changed since [`Session::take_changed`] last ran.
    changed: Vec<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("txn", &self.txn.as_ref().map(Transaction::id))
            .field("failed", &self.failed)
            .finish()
    }
}

impl Default for Session {
    fn default() -> Self {
        Session {
            user: slicedb_catalog::role::BOOTSTRAP_ROLE.to_string(),
            settings: default_settings(),
            txn: None,
            sequences: Default::default(),
            statements: Default::default(),
            failed: false,
            read_only: false,
            stream_failed: Default::default(),
            changed: Vec::new(),
        }
    }
}

impl Session {
    /// A session of role `user` (whose `superuser` attribute is reported
    /// as `is_superuser`).
    pub fn authenticated(user: &str, superuser: bool) -> Session {
        let mut session = Session {
            user: user.to_string(),
            sequences: SessionValues::of(user),
            ..Session::default()
        };
        session.set("session_authorization", user);
        session.set("is_superuser", if superuser { "on" } else { "off" });
        session.changed.clear();
        session
    }

    /// Inside a `BEGIN … COMMIT` block (failed or not).
    pub fn in_block(&self) -> bool {
        self.txn.is_some()
    }

    /// The canonical spelling of a setting name (`datestyle` → `DateStyle`).
    fn canonical(&self, name: &str) -> String {
        self.settings
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .cloned()
            .unwrap_or_else(|| name.to_ascii_lowercase())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.settings.get(&self.canonical(name)).map(String::as_str)
    }

    /// Stores a setting; returns its canonical name.
    pub fn set(&mut self, name: &str, value: &str) -> String {
        let key = self.canonical(name);
        let value = if key == "TimeZone" && value.eq_ignore_ascii_case("utc") {
            "UTC".to_string()
        } else {
            value.to_string()
        };
        self.settings.insert(key.clone(), value);
        self.changed.push(key.clone());
        key
    }

    /// Takes on the settings that `set_config` changed in earlier
    /// statements.
    pub fn apply_set_configs(&mut self) {
        let changes = match self.sequences.set_configs.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => Vec::new(),
        };
        for (name, value) in changes {
            self.set(&name, &value);
        }
    }

    /// What a statement's functions read of the session, its settings as
    /// they are now.
    pub fn statement_values(&mut self) -> SessionValues {
        self.apply_set_configs();
        self.sequences.settings = Arc::new(self.settings.clone());
        self.sequences.clone()
    }

    /// The settings changed since the last call, with their values now.
    pub fn take_changed(&mut self) -> Vec<(String, String)> {
        self.apply_set_configs();
        let mut names = std::mem::take(&mut self.changed);
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|n| {
                let v = self.settings.get(&n).cloned().unwrap_or_default();
                (n, v)
            })
            .collect()
    }

    pub fn reset(&mut self, name: &str) {
        let key = self.canonical(name);
        match default_settings().remove(&key) {
            Some(v) => self.settings.insert(key.clone(), v),
            None => self.settings.remove(&key),
        };
        self.changed.push(key);
    }

    /// `RESET ALL`: every setting back to its default.
    pub fn reset_all(&mut self) {
        let names: Vec<String> = self.settings.keys().cloned().collect();
        for name in names {
            self.reset(&name);
        }
    }

    /// `statement_timeout` in milliseconds; 0 is none.
    pub fn statement_timeout_ms(&self) -> u64 {
        self.get("statement_timeout")
            .and_then(|v| crate::timeout::parse_duration_ms("statement_timeout", v).ok())
            .unwrap_or(0)
    }

    /// `lock_timeout` in milliseconds; 0 is none.
    pub fn lock_timeout_ms(&self) -> u32 {
        self.get("lock_timeout")
            .and_then(|v| crate::timeout::parse_duration_ms("lock_timeout", v).ok())
            .map_or(0, |ms| u32::try_from(ms).unwrap_or(u32::MAX))
    }

    pub fn all(&self) -> &BTreeMap<String, String> {
        &self.settings
    }
}
