//! HTTPS: the certificate chain and key named by `--tls-cert` and `--tls-key`, read and
//! checked before the daemon creates anything, as a rustls server configuration on the
//! aws-lc-rs provider (the build's only one).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::{self, PemObject};
use rustls::{Error, InconsistentKeys, ServerConfig};

/// The server configuration for `cert` (PEM: the daemon's certificate first, then any
/// intermediates) and `key` (PEM: PKCS#8, PKCS#1 or SEC1), or the one line that says what is
/// wrong with them.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs = kup_client::read_pem_certificates(cert, "TLS certificate")?;
    let key_der = read_key(key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| match e {
            Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => format!(
                "TLS key {} does not match certificate {}",
                key.display(),
                cert.display()
            ),
            e @ Error::InvalidCertificate(_) => format!(
                "TLS certificate {}: {}",
                cert.display(),
                kup_client::certificate_problem(&e)
            ),
            e => format!(
                "TLS certificate {} with key {}: {e}",
                cert.display(),
                key.display()
            ),
        })?;
    // The server speaks HTTP/1.1 only; saying so lets a client that offers h2 fall back.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read TLS key {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => format!(
            "TLS key {} holds no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        ),
        e => format!(
            "TLS key {} is not valid PEM: {}",
            path.display(),
            kup_client::pem_problem(&e)
        ),
    })
}
