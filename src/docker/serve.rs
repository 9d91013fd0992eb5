//! Serving the Docker routes: on the unix socket, and on TCP only with TLS
//! that verifies client certificates against `docker.tls.ca`. Connections
//! are HTTP/1.1 with upgrades (attach and exec hijack the connection).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::response::IntoResponse;
use axum::Router;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tower::ServiceExt;
use tracing::{debug, warn};

use super::{strip_version, API_VERSION};
use crate::config::TlsConfig;

/// Answers one request: version prefix stripped, routed, Docker's headers added.
async fn handle(router: Router, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let req = req.map(Body::new);
    let mut res = match strip_version(req) {
        Ok(req) => match router.oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        },
        Err(e) => e.into_response(),
    };
    let h = res.headers_mut();
    h.insert("api-version", HeaderValue::from_static(API_VERSION));
    h.insert("docker-experimental", HeaderValue::from_static("false"));
    h.insert("ostype", HeaderValue::from_static("linux"));
    h.insert(
        "server",
        HeaderValue::from_static(concat!("berth/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    Ok(res)
}

/// Serves one connection until it closes (or is upgraded and handed off).
async fn connection<I>(router: Router, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| handle(router.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        debug!(error = %e, "Docker API connection ended");
    }
}

/// Accepts with `accept` until `shutdown` resolves, handing each stream to
/// `serve` on a task of its own; accept errors (EMFILE…) back off briefly.
async fn accept_loop<S, A, AF, F, FF>(
    mut accept: A,
    serve: F,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    A: FnMut() -> AF,
    AF: Future<Output = io::Result<S>>,
    F: Fn(S) -> FF,
    FF: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            acc = accept() => match acc {
                Ok(s) => { tokio::spawn(serve(s)); }
                Err(e) => {
                    warn!(error = %e, "Docker API accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Accepts on the unix socket until `shutdown` resolves.
pub async fn unix(
    listener: UnixListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let serve = move |s| connection(router.clone(), s);
    accept_loop(
        || async { listener.accept().await.map(|(s, _)| s) },
        serve,
        shutdown,
    )
    .await
}

/// Accepts TLS connections (client certificates required) until `shutdown`.
pub async fn tcp_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let serve = move |(s, peer): (tokio::net::TcpStream, std::net::SocketAddr)| {
        let (acceptor, router) = (acceptor.clone(), router.clone());
        async move {
            match acceptor.accept(s).await {
                Ok(tls) => connection(router, tls).await,
                Err(e) => debug!(%peer, error = %e, "Docker API TLS handshake failed"),
            }
        }
    };
    accept_loop(|| listener.accept(), serve, shutdown).await
}

/// A TLS acceptor from `docker.tls`: all of cert, key and ca are required,
/// and clients must present a certificate signed by the ca.
pub fn tls_acceptor(tls: &TlsConfig) -> io::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    let (Some(cert), Some(key), Some(ca)) = (&tls.cert, &tls.key, &tls.ca) else {
        return Err(bad(
            "docker.tcp needs docker.tls.cert, docker.tls.key and docker.tls.ca (client certificates are always verified)".into(),
        ));
    };
    let read_certs = |p: &Path| -> io::Result<Vec<CertificateDer<'static>>> {
        CertificateDer::pem_file_iter(p)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                bad(format!(
                    "failed to read certificates from {}: {e}",
                    p.display()
                ))
            })
    };
    let certs = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad(format!("failed to read private key {}: {e}", key.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(ca)? {
        roots
            .add(c)
            .map_err(|e| bad(format!("bad CA certificate in {}: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| bad(format!("bad client CA {}: {e}", ca.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| bad(format!("bad server certificate or key: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
