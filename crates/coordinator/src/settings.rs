//! `SET`, `SHOW` and `RESET`: a session's settings as statements.
//!
//! The settings themselves, their defaults and how they are checked live in
//! [`crate::session`] and [`crate::timeout`]; this module reads the
//! statements. `SET TRANSACTION` changes the open block
//! ([`crate::txn_statements`]).

use datafusion::sql::sqlparser::ast;
use slicedb_common::{err, Result};

use crate::execute::text_rows;
use crate::session::Session;
use crate::{timeout, CommandTag, Coordinator, Output};

impl Coordinator {
    /// `SET …` (and `SET TRANSACTION`, `SET TIME ZONE`, `SET NAMES`).
    pub(crate) fn set(&self, session: &mut Session, set: ast::Set) -> Result<Output> {
        match set {
            ast::Set::SingleAssignment { variable, values, .. } => {
                let name = variable.to_string();
                let value = values.iter().map(setting_value).collect::<Vec<_>>().join(", ");
                if name.eq_ignore_ascii_case("default_transaction_isolation")
                    || name.eq_ignore_ascii_case("transaction_isolation")
                {
                    crate::txn_statements::check_isolation(&value)?;
                }
                if crate::session::DURATIONS.iter().any(|d| d.eq_ignore_ascii_case(&name))
                    && !value.eq_ignore_ascii_case("default")
                {
                    timeout::parse_duration_ms(&name.to_ascii_lowercase(), &value)?;
                }
                if ["role", "session_authorization"]
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(&name))
                    && !["default", "none"].iter().any(|v| v.eq_ignore_ascii_case(&value))
                {
                    // The same statements as SET ROLE / SET SESSION AUTHORIZATION.
                    check_own_role(session, &format!("SET {name}"), &value)?;
                    return Ok(Output::Command(CommandTag::new("SET")));
                }
                if value.eq_ignore_ascii_case("default") {
                    session.reset(&name);
                } else {
                    session.set(&name, &value);
                }
            }
            ast::Set::SetTimeZone { value, .. } => {
                session.set("TimeZone", &setting_value(&value));
            }
            ast::Set::SetNames { charset_name, .. } => {
                session.set("client_encoding", &charset_name.value);
            }
            ast::Set::SetTransaction {
                modes, session: false, ..
            } => self.set_transaction(session, &modes)?,
            ast::Set::SetTransaction {
                modes, session: true, ..
            } => {
                crate::txn_statements::check_modes(&modes)?;
            }
            ast::Set::SetSessionParam(_) => {}
            ast::Set::SetRole { role_name, .. } => {
                if let Some(role) = role_name {
                    check_own_role(session, "SET ROLE", &crate::ddl::normalize(&role))?;
                }
            }
            ast::Set::SetSessionAuthorization(param) => {
                if let ast::SetSessionAuthorizationParamKind::User(user) = param.kind {
                    check_own_role(session, "SET SESSION AUTHORIZATION", &crate::ddl::normalize(&user))?;
                }
            }
            other => return Err(err!(FeatureNotSupported, "unsupported SET: {other}")),
        }
        Ok(Output::Command(CommandTag::new("SET")))
    }
}

/// slicedb has roles but no role membership, so a session acts as its
/// login role throughout ([`Session::user`]). Switching to that role is a
/// no-op, as in PostgreSQL; switching to any other is refused (0A000),
/// never ignored, so that a client relying on another role's privileges
/// learns it.
fn check_own_role(session: &Session, statement: &str, role: &str) -> Result<()> {
    if role == session.user {
        return Ok(());
    }
    Err(err!(
        FeatureNotSupported,
        "{statement} \"{role}\" is not supported: slicedb has no role membership, every session acts as its login role \"{}\"",
        session.user
    ))
}

/// `RESET name` / `RESET ALL`.
pub(crate) fn reset(session: &mut Session, reset: ast::ResetStatement) -> Result<Output> {
    match reset.reset {
        ast::Reset::ALL => session.reset_all(),
        ast::Reset::ConfigurationParameter(name) => session.reset(&name.to_string()),
    }
    Ok(Output::Command(CommandTag::new("RESET")))
}

fn setting_value(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        ast::Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn show_variable(session: &Session, variable: &[ast::Ident]) -> Result<Output> {
    let name = variable
        .iter()
        .map(|i| i.value.as_str())
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let name = match name.as_str() {
        "transaction isolation level" => "transaction_isolation".to_string(),
        "time zone" => "TimeZone".to_string(),
        _ => name,
    };
    if name == "all" {
        let rows = session
            .all()
            .iter()
            .map(|(k, v)| vec![k.clone(), v.clone(), String::new()])
            .collect();
        return text_rows(&["name", "setting", "description"], rows);
    }
    // The open block's level, else the level the next block gets.
    if name == "transaction_isolation" {
        let read_committed = match &session.txn {
            Some(txn) => txn.read_committed,
            None => {
                let default = session.get("default_transaction_isolation").unwrap_or_default();
                crate::txn_statements::is_read_committed(default)
            }
        };
        let level = if read_committed {
            "read committed"
        } else {
            "repeatable read"
        };
        return text_rows(&["transaction_isolation"], vec![vec![level.to_string()]]);
    }
    match session.get(&name) {
        Some(v) => text_rows(&[name.to_lowercase().as_str()], vec![vec![v.to_string()]]),
        None => Err(err!(UndefinedObject, "unrecognized configuration parameter \"{name}\"")),
    }
}
