//! Optional TLS for the streaming server (`cri.streaming_tls`): a server
//! certificate and key, and with `ca` the client must present a certificate
//! signed by it (as the apiserver does towards a kubelet).

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// The acceptor `tls` describes; `None` when it names neither cert nor key.
pub fn acceptor(tls: &TlsConfig) -> io::Result<Option<tokio_rustls::TlsAcceptor>> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    let (cert, key) = match (&tls.cert, &tls.key) {
        (None, None) if tls.ca.is_none() => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => {
            return Err(bad(
                "cri.streaming_tls needs both cert and key (ca is optional)".into(),
            ))
        }
    };
    let certs = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad(format!("failed to read private key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?;
    let builder = match &tls.ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| bad(format!("bad CA certificate in {}: {e}", ca.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| bad(format!("bad client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| bad(format!("bad server certificate or key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

fn read_certs(p: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(p)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("failed to read certificates from {}: {e}", p.display()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_off_unless_configured_and_needs_cert_and_key() {
        assert!(acceptor(&TlsConfig::default()).unwrap().is_none());
        let half = TlsConfig {
            cert: Some("/nonexistent/cert.pem".into()),
            ..TlsConfig::default()
        };
        let e = acceptor(&half).err().expect("refused");
        assert!(e.to_string().contains("both cert and key"), "{e}");
        let missing = TlsConfig {
            cert: Some("/nonexistent/cert.pem".into()),
            key: Some("/nonexistent/key.pem".into()),
            ca: None,
        };
        let e = acceptor(&missing).err().expect("refused");
        assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
    }
}
