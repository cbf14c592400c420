//! The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677), as PostgreSQL
//! runs it.
//!
//! ```text
//! client-first:  n,,n=,r=<client nonce>
//! server-first:  r=<client nonce><server nonce>,s=<salt>,i=<iterations>
//! client-final:  c=biws,r=<both nonces>,p=<proof>
//! server-final:  v=<server signature>
//! ```
//!
//! The server keeps only the role's verifier (`StoredKey`, `ServerKey`,
//! salt and iteration count; [`slicedb_catalog::role`]). The client proves
//! it knows the password by a proof from which the server recovers
//! `ClientKey` and checks `H(ClientKey) = StoredKey`; the server proves it
//! knows the verifier by `ServerSignature`. The user name inside the
//! exchange is ignored, as PostgreSQL ignores it: the startup packet's is
//! the one authenticated.
//!
//! A role that does not exist, or has no password, still gets a full
//! exchange with a made-up salt (stable per name within a process) and
//! fails only at the end, so a client cannot tell which roles exist.
//! Channel binding (`SCRAM-SHA-256-PLUS`) is not offered; a client that
//! asks for it (`p=…`) is refused.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac};
use slicedb_catalog::role::ScramVerifier;

/// Why an exchange failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramError {
    /// A message that breaks the protocol (08P01).
    Malformed(&'static str),
    /// A wrong proof, or a role that cannot log in with a password (28P01).
    WrongPassword,
}

/// An exchange after the server's first message, waiting for the client's final one.
pub struct Exchange {
    verifier: Option<ScramVerifier>,
    gs2_header: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

/// A process-wide random key from which the made-up salts of unknown roles derive.
fn mock_key() -> &'static hmac::Key {
    static KEY: std::sync::OnceLock<hmac::Key> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut bytes = [0u8; 32];
        let _ = SystemRandom::new().fill(&mut bytes);
        hmac::Key::new(hmac::HMAC_SHA256, &bytes)
    })
}

impl Exchange {
    /// Reads the client's first message and answers with the server's:
    /// `verifier` is the role's (`None` for a role that does not exist or
    /// has no password, whose exchange can only fail).
    pub fn start(
        client_first: &[u8],
        verifier: Option<ScramVerifier>,
        user: &str,
    ) -> Result<(Exchange, String), ScramError> {
        let text = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("client-first is not UTF-8"))?;
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = text
            .split_once(',')
            .ok_or(ScramError::Malformed("client-first has no GS2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::Malformed("channel binding is not offered")),
            _ => return Err(ScramError::Malformed("bad GS2 channel-binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("client-first has no GS2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed("an authorization identity is not supported"));
        }
        let gs2_header = format!("{flag},{authzid},");
        let mut attributes = bare.split(',');
        let first = attributes.next().unwrap_or_default();
        if first.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory SCRAM extensions are not supported"));
        }
        if !first.starts_with("n=") {
            return Err(ScramError::Malformed("client-first has no user name attribute"));
        }
        let client_nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
            .ok_or(ScramError::Malformed("client-first has no nonce"))?;
        let mut server_nonce = [0u8; 18];
        SystemRandom::new()
            .fill(&mut server_nonce)
            .map_err(|_| ScramError::Malformed("no randomness for a nonce"))?;
        let nonce = format!("{client_nonce}{}", STANDARD.encode(server_nonce));
        let (salt, iterations) = match &verifier {
            Some(v) => (v.salt.clone(), v.iterations),
            None => (hmac::sign(mock_key(), user.as_bytes()).as_ref()[..16].to_vec(), 4096),
        };
        let server_first = format!("r={nonce},s={},i={iterations}", STANDARD.encode(&salt));
        Ok((
            Exchange {
                verifier,
                gs2_header,
                nonce,
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
            },
            server_first,
        ))
    }

    /// Checks the client's final message; on success returns the server's
    /// final message (its signature), which the client checks in turn.
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("client-final is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("client-final has no proof"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("client-final has no channel binding"))?;
        if binding != STANDARD.encode(&self.gs2_header) {
            return Err(ScramError::Malformed("channel binding does not match the GS2 header"));
        }
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("client-final has no nonce"))?;
        if nonce != self.nonce {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let Some(verifier) = self.verifier else {
            return Err(ScramError::WrongPassword);
        };
        if proof.len() != verifier.stored_key.len() {
            return Err(ScramError::WrongPassword);
        }
        let auth_message = format!("{},{},{without_proof}", self.client_first_bare, self.server_first);
        let client_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &verifier.stored_key),
            auth_message.as_bytes(),
        );
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature.as_ref())
            .map(|(p, s)| p ^ s)
            .collect();
        let stored_key = digest::digest(&digest::SHA256, &client_key);
        // Compared in constant time: every byte is looked at.
        let differ = stored_key
            .as_ref()
            .iter()
            .zip(&verifier.stored_key)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differ != 0 {
            return Err(ScramError::WrongPassword);
        }
        let server_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &verifier.server_key),
            auth_message.as_bytes(),
        );
        Ok(format!("v={}", STANDARD.encode(server_signature.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's side of the exchange, computed from the password as
    /// RFC 5802 §3 defines it, independently of the server code above.
    fn client_final(
        password: &str,
        salt_b64: &str,
        iterations: u32,
        nonce: &str,
        auth_prefix: &str,
    ) -> (String, Vec<u8>) {
        let salt = STANDARD.decode(salt_b64).unwrap();
        let mut salted = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(iterations).unwrap(),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{auth_prefix},{without_proof}");
        let signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac::sign(&key, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        (
            format!("{without_proof},p={}", STANDARD.encode(proof)),
            server_signature.as_ref().to_vec(),
        )
    }

    fn run(stored_password: Option<&str>, typed: &str) -> Result<String, ScramError> {
        let verifier = stored_password
            .map(|p| ScramVerifier::parse(&slicedb_catalog::role::password_verifier(p).unwrap()).unwrap());
        let bare = "n=,r=rOprNGfwEbeRWgbNEkqO";
        let (exchange, server_first) = Exchange::start(format!("n,,{bare}").as_bytes(), verifier, "alice")?;
        let mut parts = server_first.split(',');
        let nonce = parts.next().unwrap().strip_prefix("r=").unwrap();
        let salt = parts.next().unwrap().strip_prefix("s=").unwrap();
        let iterations: u32 = parts.next().unwrap().strip_prefix("i=").unwrap().parse().unwrap();
        assert!(nonce.starts_with("rOprNGfwEbeRWgbNEkqO") && nonce.len() > 20);
        let (message, expected_signature) =
            client_final(typed, salt, iterations, nonce, &format!("{bare},{server_first}"));
        let server_final = exchange.finish(message.as_bytes())?;
        assert_eq!(server_final, format!("v={}", STANDARD.encode(expected_signature)));
        Ok(server_final)
    }

    #[test]
    fn the_right_password_passes_and_a_wrong_one_fails() {
        assert!(run(Some("correct horse"), "correct horse").is_ok());
        assert_eq!(
            run(Some("correct horse"), "battery staple"),
            Err(ScramError::WrongPassword)
        );
        // No verifier: the exchange runs to the end and fails there.
        assert_eq!(run(None, "anything"), Err(ScramError::WrongPassword));
    }

    #[test]
    fn malformed_messages_are_protocol_errors() {
        let v = || ScramVerifier::parse(&slicedb_catalog::role::password_verifier("pw").unwrap());
        for bad in [
            "",
            "x,,n=,r=abc",
            "p=tls-server-end-point,,n=,r=abc",
            "n,,n=,r=",
            "n,,r=abc",
            "n,a=bob,n=,r=abc",
        ] {
            assert!(
                matches!(Exchange::start(bad.as_bytes(), v(), "u"), Err(ScramError::Malformed(_))),
                "{bad:?}"
            );
        }
        let (exchange, _) = Exchange::start(b"n,,n=,r=abc", v(), "u").unwrap();
        assert!(matches!(
            exchange.finish(b"c=biws,r=abcWRONG,p=AAAA"),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_roles_get_a_stable_made_up_salt() {
        let salt = |user: &str| {
            let (_, first) = Exchange::start(b"n,,n=,r=abc", None, user).unwrap();
            first.split(",s=").nth(1).unwrap().to_string()
        };
        assert_eq!(salt("nobody"), salt("nobody"));
        assert_ne!(salt("nobody"), salt("somebody"));
    }
}
