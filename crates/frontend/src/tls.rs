//! TLS on the PostgreSQL port.
//!
//! The server presents a certificate chain and key from PEM files: the
//! user's own, or one `slicedb certs server` issued from the cluster CA
//! for the host names clients use. Clients ask for TLS as PostgreSQL's do
//! (an SSLRequest before the startup packet, or PostgreSQL 17's direct
//! TLS with ALPN `postgresql`); whether a connection may go without it is
//! for the host rules (`hostssl`, [`crate::auth::hba`]). Clients are not
//! asked for certificates: they authenticate with a password.

use std::path::Path;
use std::sync::Arc;

pub use pgwire::tokio::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use slicedb_common::{err, Result};

/// An acceptor for the certificate chain in `cert` and the key in `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| err!(InvalidParameterValue, "cannot read {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(err!(InvalidParameterValue, "{} holds no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| err!(InvalidParameterValue, "cannot read {}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| err!(InvalidParameterValue, "TLS settings: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| err!(InvalidParameterValue, "TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
