//! [`Session`]: one client connection's settings and transaction status.
//!
//! `SET` stores any setting (drivers send many at start-up); `SHOW` reads
//! one back. The defaults are what PostgreSQL 15 reports for a UTF-8
//! database in UTC, so drivers find what they check for.

use std::collections::BTreeMap;

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

/// Per-connection state.
#[derive(Debug, Clone)]
pub struct Session {
    settings: BTreeMap<String, String>,
    /// Inside `BEGIN … COMMIT`.
    pub in_block: bool,
    /// A statement in the current block wrote rows (see `ROLLBACK`).
    pub block_wrote: bool,
    /// Settings changed since [`Session::take_changed`] last ran.
    changed: Vec<String>,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            settings: default_settings(),
            in_block: false,
            block_wrote: false,
            changed: Vec::new(),
        }
    }
}

impl Session {
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

    /// The settings changed since the last call, with their values now.
    pub fn take_changed(&mut self) -> Vec<(String, String)> {
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

    pub fn all(&self) -> &BTreeMap<String, String> {
        &self.settings
    }
}
