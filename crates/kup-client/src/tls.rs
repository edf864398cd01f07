//! TLS for an `https://` daemon: the CAs trusted besides the system's (`--ca-file`), PEM
//! reading shared with the daemon's `--tls-cert`, and telling a refused certificate apart
//! from any other failure to connect.

use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};

use crate::ClientError;

/// The certificates of a PEM file (`what` names it in messages: "CA file", "TLS
/// certificate"), in their order; a file without any is an error.
pub fn read_pem_certificates(
    path: &Path,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{what} {} is not valid PEM: {}",
                path.display(),
                pem_problem(&e)
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// What is wrong with a PEM text, in words: the parser's own text shows the offending line as
/// a list of byte values.
pub fn pem_problem(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".into(),
        pem::Error::Base64Decode(e) => format!("a section is not base64 ({e})"),
        pem::Error::SectionTooLarge => "a section is too large".into(),
        e => e.to_string(),
    }
}

/// Why rustls refused a certificate given to it, in words: its own text speaks of a "peer
/// certificate", which a file on disk is not.
pub fn certificate_problem(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => format!("it cannot be used ({c:?})"),
        e => e.to_string(),
    }
}

/// The CA certificates a client trusts besides the system's, for an `https://` URL.
#[derive(Clone, Debug, Default)]
pub struct TrustedCas {
    certs: Vec<CertificateDer<'static>>,
}

impl TrustedCas {
    /// The certificates of a PEM file (one CA or a bundle). Each must parse as a trust
    /// anchor: a file that could never verify anything is refused now, naming the file,
    /// rather than at the first request.
    pub fn from_pem_file(path: &Path) -> Result<TrustedCas, ClientError> {
        let certs = read_pem_certificates(path, "CA file").map_err(ClientError::Config)?;
        for cert in &certs {
            rustls::RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| {
                    ClientError::Config(format!(
                        "CA file {} holds a certificate that cannot be trusted: {}",
                        path.display(),
                        certificate_problem(&e)
                    ))
                })?;
        }
        Ok(TrustedCas { certs })
    }

    pub(crate) fn reqwest_certificates(&self) -> Result<Vec<reqwest::Certificate>, ClientError> {
        self.certs
            .iter()
            .map(|c| {
                reqwest::Certificate::from_der(c)
                    .map_err(|e| ClientError::Config(format!("cannot use a CA certificate: {e}")))
            })
            .collect()
    }
}

/// The TLS error somewhere in `e`'s chain.
pub(crate) fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        // An `io::Error`'s `source` skips the error it wraps (which may be another one).
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// Whether `e` is the peer's certificate being refused (not some other handshake failure).
pub(crate) fn is_certificate_error(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType
    )
}
