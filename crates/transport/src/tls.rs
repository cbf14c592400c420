//! The cluster CA and node certificates (mutual TLS for QUIC).
//!
//! Every node of a cluster — the coordinator and each slice server — holds a
//! certificate signed by the cluster's own CA, and trusts only that CA. A
//! QUIC connection is refused unless *both* ends present a certificate that
//! the CA signed, so a process holding a certificate from another CA (or
//! none) cannot read or write a slice.
//!
//! A certificate directory holds PEM files:
//!
//! ```text
//! ca.crt, ca.key            the cluster CA (keep ca.key off the nodes if you can)
//! <name>.crt, <name>.key    one per node: coordinator, slice-server-1, …
//! ```
//!
//! Every node certificate names [`CLUSTER_SERVER_NAME`] among its DNS names,
//! and clients verify servers against that name: nodes are reached by any
//! `host:port`, so membership is what the CA vouches for, not a host name.
//! The CA key is needed only to issue more certificates
//! ([`CertDir::issue`]); nodes load just their own pair and `ca.crt`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use slicedb_common::{err, Error, Result};

/// The DNS name every node certificate carries and every client checks.
pub const CLUSTER_SERVER_NAME: &str = "slicedb-node";
/// The CA's common name (also what issuing re-derives the issuer from).
const CA_COMMON_NAME: &str = "slicedb cluster CA";
/// ALPN protocol of slicedb's node-to-node QUIC.
pub const ALPN: &[u8] = b"slicedb/1";

fn tls_error(what: &str, e: impl std::fmt::Display) -> Error {
    err!(InvalidParameterValue, "{what}: {e}")
}

/// A directory of cluster certificates.
#[derive(Debug, Clone)]
pub struct CertDir {
    pub dir: PathBuf,
}

impl CertDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CertDir { dir: dir.into() }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Does the directory already hold a CA?
    pub fn has_ca(&self) -> bool {
        self.path("ca.crt").exists() && self.path("ca.key").exists()
    }

    /// Does it hold a certificate for `name`?
    pub fn has(&self, name: &str) -> bool {
        self.path(&format!("{name}.crt")).exists() && self.path(&format!("{name}.key")).exists()
    }

    fn ca_params() -> Result<CertificateParams> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_error("CA parameters", e))?;
        params.distinguished_name.push(DnType::CommonName, CA_COMMON_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ok(params)
    }

    /// Creates a new CA in the directory. Refuses to overwrite one.
    pub fn init_ca(&self) -> Result<()> {
        if self.path("ca.crt").exists() || self.path("ca.key").exists() {
            return Err(err!(
                DuplicateObject,
                "{} already holds a cluster CA",
                self.dir.display()
            ));
        }
        std::fs::create_dir_all(&self.dir)?;
        let key = KeyPair::generate().map_err(|e| tls_error("generating the CA key", e))?;
        let cert = Self::ca_params()?
            .self_signed(&key)
            .map_err(|e| tls_error("signing the CA certificate", e))?;
        write_private(&self.path("ca.key"), &key.serialize_pem())?;
        std::fs::write(self.path("ca.crt"), cert.pem())?;
        Ok(())
    }

    /// Issues a certificate for node `name`, signed by the directory's CA.
    pub fn issue(&self, name: &str) -> Result<()> {
        self.sign(
            name,
            vec![name.to_string(), CLUSTER_SERVER_NAME.to_string()],
            vec![
                rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// Issues a server certificate `name` for the PostgreSQL port, signed by
    /// the directory's CA, for the host names and IP addresses in `hosts`
    /// (a client with `sslmode=verify-full` checks the one it connected to).
    pub fn issue_server(&self, name: &str, hosts: &[String]) -> Result<()> {
        if hosts.is_empty() {
            return Err(err!(
                InvalidParameterValue,
                "a server certificate needs at least one host name"
            ));
        }
        self.sign(name, hosts.to_vec(), vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth])
    }

    /// Writes `<name>.crt` and `<name>.key`: a new key, and a certificate
    /// for `sans` (an IP address is an IP name) signed by the CA.
    fn sign(&self, name: &str, sans: Vec<String>, usages: Vec<rcgen::ExtendedKeyUsagePurpose>) -> Result<()> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
            return Err(err!(
                InvalidParameterValue,
                "invalid certificate name \"{name}\" (letters, digits, '-' and '.')"
            ));
        }
        let ca_pem = std::fs::read_to_string(self.path("ca.key"))
            .map_err(|e| err!(UndefinedObject, "no CA key in {}: {e}", self.dir.display()))?;
        let ca_key = KeyPair::from_pem(&ca_pem).map_err(|e| tls_error("reading ca.key", e))?;
        let issuer = Issuer::new(Self::ca_params()?, ca_key);
        let key = KeyPair::generate().map_err(|e| tls_error("generating a key", e))?;
        let mut params = CertificateParams::new(sans).map_err(|e| tls_error("certificate parameters", e))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| tls_error("signing a certificate", e))?;
        write_private(&self.path(&format!("{name}.key")), &key.serialize_pem())?;
        std::fs::write(self.path(&format!("{name}.crt")), cert.pem())?;
        Ok(())
    }

    /// Loads node `name`'s certificate and key together with the CA it trusts.
    pub fn identity(&self, name: &str) -> Result<NodeIdentity> {
        let read_certs = |file: &str| -> Result<Vec<CertificateDer<'static>>> {
            let path = self.path(file);
            let certs = CertificateDer::pem_file_iter(&path)
                .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| err!(UndefinedObject, "cannot read {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(err!(UndefinedObject, "{} holds no certificate", path.display()));
            }
            Ok(certs)
        };
        let ca = read_certs("ca.crt")?;
        let chain = read_certs(&format!("{name}.crt"))?;
        let key_path = self.path(&format!("{name}.key"));
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| err!(UndefinedObject, "cannot read {}: {e}", key_path.display()))?;
        let mut roots = RootCertStore::empty();
        for c in ca {
            roots.add(c).map_err(|e| tls_error("loading ca.crt", e))?;
        }
        Ok(NodeIdentity {
            name: name.to_string(),
            roots: Arc::new(roots),
            chain,
            key,
        })
    }
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, pem: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| Error::io(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// A node's certificate chain and key, and the CA it trusts.
pub struct NodeIdentity {
    pub name: String,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl NodeIdentity {
    /// TLS for connecting to other nodes: verify them against the CA and
    /// present our own certificate.
    pub fn client_config(&self) -> Result<rustls::ClientConfig> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error("TLS client", e))?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| tls_error("TLS client certificate", e))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// TLS for accepting nodes: require a client certificate the CA signed.
    pub fn server_config(&self) -> Result<rustls::ServerConfig> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| tls_error("TLS client verifier", e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error("TLS server", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| tls_error("TLS server certificate", e))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let certs = CertDir::new(dir.path());
        certs.init_ca().unwrap();
        assert!(certs.init_ca().is_err(), "a CA is never overwritten");
        certs.issue("slice-server-1").unwrap();
        let id = certs.identity("slice-server-1").unwrap();
        id.client_config().unwrap();
        id.server_config().unwrap();
        assert!(certs.issue("bad name").is_err());
        assert!(certs.identity("nobody").is_err());
    }
}
