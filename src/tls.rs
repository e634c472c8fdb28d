//! Whom a TLS client trusts: the system's certificates and, for a province's private
//! CA, the ones in a PEM file (`--ca FILE`); and the small HTTPS client the Zalo relay
//! posts with. The tools' `wss://` and the relay's https both use it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read the CA file {path}: {message} (give a PEM file with the CA's certificate)"
    )]
    Ca { path: PathBuf, message: String },
    #[error("{path} holds no certificate (a PEM file starts with -----BEGIN CERTIFICATE-----)")]
    EmptyCa { path: PathBuf },
    #[error("no certificate to trust: neither the system's nor --ca")]
    NoRoots,
    #[error("TLS setup failed: {0}")]
    Setup(#[from] rustls::Error),
}

/// A TLS client trusting the system's roots, plus `ca` if given (also the Zalo relay's).
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped: `--ca` may be all there is.
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca {
        let failed = |message: String| TlsError::Ca {
            path: path.to_path_buf(),
            message,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| failed(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed(e.to_string()))?;
        if certs.is_empty() {
            return Err(TlsError::EmptyCa {
                path: path.to_path_buf(),
            });
        }
        for cert in certs {
            roots.add(cert).map_err(|e| failed(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why a request got no answer. The texts never hold the address (a bot's token is
/// part of its URL).
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("not a valid address")]
    BadAddress,
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("cannot connect")]
    Connect,
    #[error("the connection failed")]
    Failed,
}

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// HTTP/1.1 over TLS (or plain http), trusting the system's certificates, with a
/// deadline per request.
pub struct HttpsClient {
    http: hyper_util::client::legacy::Client<Https, http_body_util::Full<bytes::Bytes>>,
    timeout: std::time::Duration,
}

impl HttpsClient {
    pub fn new(timeout: std::time::Duration) -> HttpsClient {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = match client_config(None) {
            Ok(tls) => (*tls).clone(),
            Err(e) => {
                tracing::warn!(error = %e, "no certificates to trust: https addresses will fail");
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("ring has the default protocol versions")
                    .with_root_certificates(RootCertStore::empty())
                    .with_no_client_auth()
            }
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        HttpsClient {
            http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https),
            timeout,
        }
    }

    /// POSTs a JSON `body`; the answer's status and body.
    pub async fn post_json(&self, url: &str, body: String) -> Result<(u16, Vec<u8>), PostError> {
        use http_body_util::BodyExt;
        let request = hyper::Request::post(url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|_| PostError::BadAddress)?;
        let exchange = async {
            let answer = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    PostError::Connect
                } else {
                    PostError::Failed
                }
            })?;
            let status = answer.status().as_u16();
            let bytes = answer
                .into_body()
                .collect()
                .await
                .map_err(|_| PostError::Failed)?;
            Ok((status, bytes.to_bytes().to_vec()))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| PostError::Timeout(self.timeout.as_millis()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_a_certificate_says_what_it_needs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = client_config(Some(&path)).err().expect("refused");
        assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
        let missing = client_config(Some(&dir.path().join("none.pem")))
            .err()
            .unwrap();
        assert!(missing.to_string().contains("none.pem"), "{missing}");
    }
}
