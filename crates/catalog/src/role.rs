//! Roles: who may connect, and with which password.
//!
//! A role is one catalog document, `role/<name>`, holding its attributes
//! (`LOGIN`, `SUPERUSER`) and its password as a SCRAM-SHA-256 *verifier*
//! in PostgreSQL's own format:
//!
//! ```text
//! SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
//! ```
//!
//! The verifier lets the server check a client's proof and prove itself
//! in turn, but it is not the password, and it does not let a reader of
//! the catalog log in (RFC 5802 §3). A `PASSWORD` given as such a string
//! (what psql's `\password` and drivers' "encrypt password" helpers send)
//! is stored as it is; any other string is salted and hashed here, with
//! PostgreSQL's defaults (16-byte random salt, 4,096 iterations).
//!
//! A new catalog gets one role, `postgres`, a superuser that may log in
//! and has no password (PostgreSQL's bootstrap superuser, oid 10).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use slicedb_common::{err, Result};

/// The role a new catalog starts with.
pub const BOOTSTRAP_ROLE: &str = "postgres";
/// Its object id, as in PostgreSQL.
pub const BOOTSTRAP_ROLE_OID: u32 = 10;
/// The object id the first role created by `CREATE ROLE` gets.
pub const FIRST_ROLE_OID: u32 = 16_384;

/// A role, as `CREATE ROLE` defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDef {
    pub name: String,
    pub oid: u32,
    pub superuser: bool,
    pub login: bool,
    /// The SCRAM-SHA-256 verifier; `None`: no password, so a host rule
    /// that asks for one never admits the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl RoleDef {
    /// The bootstrap superuser of a new catalog.
    pub fn bootstrap() -> RoleDef {
        RoleDef {
            name: BOOTSTRAP_ROLE.into(),
            oid: BOOTSTRAP_ROLE_OID,
            superuser: true,
            login: true,
            password: None,
        }
    }

    /// The parsed verifier, if the role has a password.
    pub fn verifier(&self) -> Option<ScramVerifier> {
        self.password.as_deref().and_then(ScramVerifier::parse)
    }
}

/// A SCRAM-SHA-256 verifier (RFC 7677): what the server keeps of a password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";

impl ScramVerifier {
    /// Reads PostgreSQL's text form; `None` if `s` is not one.
    pub fn parse(s: &str) -> Option<ScramVerifier> {
        let rest = s.strip_prefix(SCRAM_PREFIX)?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations: u32 = iterations.parse().ok().filter(|i| *i > 0)?;
        let salt = STANDARD.decode(salt).ok().filter(|s| !s.is_empty())?;
        let stored_key = STANDARD.decode(stored).ok().filter(|k| k.len() == 32)?;
        let server_key = STANDARD.decode(server).ok().filter(|k| k.len() == 32)?;
        Some(ScramVerifier {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// PostgreSQL's text form.
    pub fn to_text(&self) -> String {
        format!(
            "{SCRAM_PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }
}

/// What a role stores for `PASSWORD 'given'`: a verifier given as one is
/// kept (after a check of its form); an MD5 hash is refused (0A000: it
/// cannot be turned into a verifier); anything else is a password, hashed
/// with a fresh random salt. An empty password is refused, as PostgreSQL
/// refuses it (it would never let the role in).
pub fn password_verifier(given: &str) -> Result<String> {
    if given.starts_with(SCRAM_PREFIX) {
        return ScramVerifier::parse(given)
            .map(|v| v.to_text())
            .ok_or_else(|| err!(InvalidParameterValue, "invalid SCRAM-SHA-256 password verifier"));
    }
    if given.len() == 35 && given.starts_with("md5") && given[3..].bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err!(
            FeatureNotSupported,
            "MD5 password hashes are not supported: give the password, or a SCRAM-SHA-256 verifier"
        ));
    }
    if given.is_empty() {
        return Err(err!(InvalidParameterValue, "empty password"));
    }
    Ok(postgres_protocol::password::scram_sha_256(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_become_verifiers_and_verifiers_are_kept() {
        let v = password_verifier("s3cret").unwrap();
        let parsed = ScramVerifier::parse(&v).expect("a verifier");
        assert_eq!(parsed.iterations, 4096);
        assert_eq!(parsed.salt.len(), 16);
        assert_eq!(parsed.to_text(), v);
        // The same password salts differently each time.
        assert_ne!(password_verifier("s3cret").unwrap(), v);
        // A verifier is stored as given, so `\password` works.
        assert_eq!(password_verifier(&v).unwrap(), v);
        // Not the password in any form.
        assert!(!v.contains("s3cret"));
        assert_eq!(
            password_verifier("SCRAM-SHA-256$4096:abc").unwrap_err().state.code(),
            "22023"
        );
        assert_eq!(
            password_verifier("md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
                .unwrap_err()
                .state
                .code(),
            "0A000"
        );
        assert_eq!(password_verifier("").unwrap_err().state.code(), "22023");
    }
}
