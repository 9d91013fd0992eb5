//! The registry client: OCI distribution v2 over HTTP(S), with mirrors,
//! plain-http `insecure` hosts and basic / bearer authentication.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{header, Method, StatusCode, Url};

use super::auth::{parse_challenge, Credentials, TokenCache};
use super::manifest::{ACCEPT, MAX_MANIFEST_BYTES};
use super::{Digest, Error, Reference};
use crate::config::Config;

/// Push chunk size when `registries.<host>.push_chunk_bytes` is unset.
pub const DEFAULT_PUSH_CHUNK_BYTES: u64 = 16 << 20;

/// One place to fetch a repository from: a mirror or the registry itself.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `scheme://host[:port][/prefix]`, without a trailing slash.
    pub base: Url,
    /// The host whose credentials apply (the mirror's own host for mirrors).
    pub auth_host: String,
    pub is_mirror: bool,
}

impl Endpoint {
    fn url(&self, repository: &str, tail: &str) -> Url {
        let base = self.base.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/v2/{repository}/{tail}")).expect("endpoint URLs are valid")
    }
}

/// A fetched manifest document.
pub struct FetchedManifest {
    pub body: Bytes,
    pub content_type: String,
    pub digest: Digest,
}

/// Talks to registries.
pub struct RegistryClient {
    http: reqwest::Client,
    config: Arc<Config>,
    tokens: TokenCache,
}

impl RegistryClient {
    /// A client honouring the `registries` section of the config.
    pub fn new(config: Arc<Config>) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(8)
            .build()
            .map_err(|source| Error::Network {
                url: "<client>".into(),
                source,
            })?;
        Ok(RegistryClient {
            http,
            config,
            tokens: TokenCache::default(),
        })
    }

    /// The endpoints for a reference: its mirrors in order, then the host
    /// itself unless the host is `mirrors_only`.
    pub fn endpoints(&self, r: &Reference) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let rc = self.config.registries.get(&r.registry);
        if let Some(rc) = rc {
            for m in &rc.mirrors {
                if let Ok(base) = Url::parse(m.trim_end_matches('/')) {
                    let auth_host = host_port(&base);
                    out.push(Endpoint {
                        base,
                        auth_host,
                        is_mirror: true,
                    });
                }
            }
        }
        if rc.is_some_and(|rc| rc.mirrors_only) {
            return out;
        }
        // A parsed reference's host always makes a URL.
        out.extend(self.host_endpoint(&r.registry).ok());
        out
    }

    /// The registry host itself, never a mirror: where pushes, logins and
    /// searches go.
    pub fn host_endpoint(&self, registry: &str) -> Result<Endpoint, Error> {
        let api_host = if registry == super::reference::DEFAULT_REGISTRY {
            "registry-1.docker.io".to_string()
        } else {
            registry.to_string()
        };
        let scheme = if self.is_insecure(registry) {
            "http"
        } else {
            "https"
        };
        let base = Url::parse(&format!("{scheme}://{api_host}"))
            .ok()
            .filter(|u| u.path() == "/" && u.query().is_none() && u.username().is_empty())
            .ok_or_else(|| Error::InvalidReference {
                reference: registry.to_string(),
                reason: "not a registry host[:port]".into(),
            })?;
        Ok(Endpoint {
            base,
            auth_host: registry.to_string(),
            is_mirror: false,
        })
    }

    /// The daemon's configuration.
    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    /// The registry host itself for a push, a login or a catalog read;
    /// refused for a `mirrors_only` host, which this node reaches only
    /// through its mirrors (an air-gapped node never talks to the host).
    pub fn direct_endpoint(&self, registry: &str) -> Result<Endpoint, Error> {
        if self
            .config
            .registries
            .get(registry)
            .is_some_and(|r| r.mirrors_only)
        {
            return Err(Error::InvalidReference {
                reference: registry.to_string(),
                reason: format!(
                    "registries.{registry:?} is mirrors_only: berth reaches it only through its mirrors and never pushes to, logs in to or lists it"
                ),
            });
        }
        self.host_endpoint(registry)
    }

    /// The HTTP client (sessions build their own requests on it).
    pub(super) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The bearer tokens fetched so far.
    pub(super) fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// Blobs larger than this are pushed in chunks of this size.
    pub fn push_chunk_bytes(&self, host: &str) -> u64 {
        match self.config.registries.get(host).map(|r| r.push_chunk_bytes) {
            Some(n) if n > 0 => n,
            _ => DEFAULT_PUSH_CHUNK_BYTES,
        }
    }

    /// Plain http is used for hosts marked `insecure` and, as Docker does, for loopback.
    fn is_insecure(&self, host: &str) -> bool {
        if self.config.registries.get(host).is_some_and(|r| r.insecure) {
            return true;
        }
        let h = host
            .rsplit_once(':')
            .map(|(h, p)| {
                if p.bytes().all(|c| c.is_ascii_digit()) {
                    h
                } else {
                    host
                }
            })
            .unwrap_or(host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    pub(super) fn config_credentials(&self, host: &str) -> Result<Credentials, Error> {
        match self
            .config
            .registries
            .get(host)
            .and_then(|r| r.auth.as_ref())
        {
            Some(a) => Credentials::from_config(a),
            None => Ok(Credentials::Anonymous),
        }
    }

    /// Fetches a manifest by tag or digest, verifying a pinned digest.
    pub async fn manifest(
        &self,
        ep: &Endpoint,
        repository: &str,
        reference: &str,
        creds: &Credentials,
    ) -> Result<FetchedManifest, Error> {
        let url = ep.url(repository, &format!("manifests/{reference}"));
        let what = format!("manifest {repository}:{reference}");
        let resp = self
            .send(
                ep,
                repository,
                Method::GET,
                &url,
                Some(ACCEPT),
                creds,
                &what,
            )
            .await?;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if resp.content_length().unwrap_or(0) > MAX_MANIFEST_BYTES as u64 {
            return Err(Error::BadManifest {
                what,
                reason: format!("larger than {MAX_MANIFEST_BYTES} bytes"),
            });
        }
        let body = read_limited(resp, MAX_MANIFEST_BYTES, &url, &what).await?;
        let digest = Digest::of(&body);
        if let Ok(pinned) = Digest::parse(reference) {
            if pinned != digest {
                return Err(Error::DigestMismatch {
                    what,
                    expected: pinned.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        Ok(FetchedManifest {
            body,
            content_type,
            digest,
        })
    }

    /// Starts a blob download; the caller streams and verifies the body.
    pub async fn blob(
        &self,
        ep: &Endpoint,
        repository: &str,
        digest: &Digest,
        creds: &Credentials,
    ) -> Result<reqwest::Response, Error> {
        let url = ep.url(repository, &format!("blobs/{digest}"));
        let what = format!("blob {digest}");
        self.send(ep, repository, Method::GET, &url, None, creds, &what)
            .await
    }

    /// Sends a request, answering one authentication challenge if the registry asks.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        ep: &Endpoint,
        repository: &str,
        method: Method,
        url: &Url,
        accept: Option<&str>,
        creds: &Credentials,
        what: &str,
    ) -> Result<reqwest::Response, Error> {
        // Request credentials apply to the registry itself; mirrors use their own config.
        let creds = match (ep.is_mirror, creds) {
            (false, c) if *c != Credentials::Anonymous => c.clone(),
            _ => self.config_credentials(&ep.auth_host)?,
        };
        let build = |auth: Option<String>| {
            let mut r = self.http.request(method.clone(), url.clone());
            if let Some(a) = accept {
                r = r.header(header::ACCEPT, a);
            }
            if let Some(a) = auth {
                r = r.header(header::AUTHORIZATION, a);
            }
            r
        };
        let net = |source| Error::Network {
            url: url.to_string(),
            source,
        };
        let preset = match &creds {
            Credentials::RegistryToken(t) => Some(format!("Bearer {t}")),
            _ => None,
        };
        let mut resp = build(preset.clone()).send().await.map_err(net)?;
        if resp.status() == StatusCode::UNAUTHORIZED && preset.is_none() {
            let challenge = resp
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            let auth = match challenge {
                Some(c) if c.scheme == "bearer" => {
                    let scope = format!("repository:{repository}:pull");
                    let t = self
                        .tokens
                        .token(&self.http, &ep.auth_host, &c, &scope, &creds)
                        .await?;
                    Some(format!("Bearer {t}"))
                }
                Some(c) if c.scheme == "basic" => match &creds {
                    Credentials::Basic { username, password } => {
                        use base64::Engine as _;
                        let b = base64::engine::general_purpose::STANDARD
                            .encode(format!("{username}:{password}"));
                        Some(format!("Basic {b}"))
                    }
                    _ => return Err(Error::Auth {
                        registry: ep.auth_host.clone(),
                        reason:
                            "registry requires basic authentication and no credentials were given"
                                .into(),
                    }),
                },
                _ => None,
            };
            if auth.is_some() {
                resp = build(auth).send().await.map_err(net)?;
            }
        }
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        Err(Error::Registry {
            what: what.to_string(),
            url: url.to_string(),
            status: status.as_u16(),
            detail: registry_error_detail(&body),
        })
    }
}

/// `host[:port]` of a URL.
fn host_port(u: &Url) -> String {
    match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

/// The registry's `{"errors":[{"code","message"}]}` as one line.
pub(super) fn registry_error_detail(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct E {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<E>,
    }
    match serde_json::from_str::<Errs>(body) {
        Ok(e) => e
            .errors
            .iter()
            .map(|e| format!("{} ({})", e.message, e.code))
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => body.trim().chars().take(200).collect(),
    }
}

async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
    url: &Url,
    what: &str,
) -> Result<Bytes, Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|source| Error::Network {
        url: url.to_string(),
        source,
    })? {
        buf.extend_from_slice(&chunk);
        if buf.len() > limit {
            return Err(Error::BadManifest {
                what: what.to_string(),
                reason: format!("larger than {limit} bytes"),
            });
        }
    }
    Ok(buf.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(yaml: &str) -> RegistryClient {
        RegistryClient::new(Arc::new(Config::parse(yaml).unwrap())).unwrap()
    }

    #[test]
    fn mirrors_come_first_and_keep_the_repository_path() {
        let c = client("registries:\n  gcr.io:\n    mirrors: [\"http://127.0.0.1:5000\", \"https://m2.example/prefix/\"]\n");
        let r = Reference::parse("gcr.io/k8s-staging-cri-tools/test-image-tag:test").unwrap();
        let eps = c.endpoints(&r);
        let urls: Vec<String> = eps
            .iter()
            .map(|e| e.url(&r.repository, "manifests/test").to_string())
            .collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:5000/v2/k8s-staging-cri-tools/test-image-tag/manifests/test",
                "https://m2.example/prefix/v2/k8s-staging-cri-tools/test-image-tag/manifests/test",
                "https://gcr.io/v2/k8s-staging-cri-tools/test-image-tag/manifests/test",
            ]
        );
        assert!(eps[0].is_mirror && !eps[2].is_mirror);
        assert_eq!(eps[0].auth_host, "127.0.0.1:5000");
    }

    #[test]
    fn mirrors_only_hosts_are_never_tried_themselves() {
        let c = client("registries:\n  gcr.io:\n    mirrors: [\"http://127.0.0.1:5000\"]\n    mirrors_only: true\n");
        let r = Reference::parse("gcr.io/a/b:c").unwrap();
        let eps = c.endpoints(&r);
        assert_eq!(eps.len(), 1);
        assert!(eps[0].is_mirror);
        assert_eq!(eps[0].base.as_str(), "http://127.0.0.1:5000/");
        // Other hosts are untouched.
        let other = c.endpoints(&Reference::parse("quay.io/a/b:c").unwrap());
        assert_eq!(other.len(), 1);
        assert!(!other[0].is_mirror);
    }

    #[test]
    fn pushes_and_logins_never_go_to_mirrors_or_mirrors_only_hosts() {
        let c = client("registries:\n  docker.io:\n    mirrors: [\"http://127.0.0.1:5000\"]\n    mirrors_only: true\n  quay.io:\n    mirrors: [\"http://127.0.0.1:5001\"]\n");
        let e = c.direct_endpoint("docker.io").unwrap_err();
        assert!(e.to_string().contains("mirrors_only"), "{e}");
        let q = c.direct_endpoint("quay.io").unwrap();
        assert!(!q.is_mirror);
        assert_eq!(q.base.as_str(), "https://quay.io/");
        assert_eq!(c.push_chunk_bytes("quay.io"), DEFAULT_PUSH_CHUNK_BYTES);
        assert!(c.host_endpoint("a b").is_err());
        assert!(c.host_endpoint("host/path").is_err());
    }

    #[test]
    fn docker_hub_and_insecure_hosts() {
        let c = client("registries:\n  \"reg.local:5000\":\n    insecure: true\n");
        let ep = |s: &str| {
            c.endpoints(&Reference::parse(s).unwrap())
                .pop()
                .unwrap()
                .base
                .to_string()
        };
        assert_eq!(ep("busybox"), "https://registry-1.docker.io/");
        assert_eq!(ep("reg.local:5000/a"), "http://reg.local:5000/");
        assert_eq!(ep("127.0.0.1:5000/a"), "http://127.0.0.1:5000/");
        assert_eq!(ep("localhost:5000/a"), "http://localhost:5000/");
        assert_eq!(ep("[::1]:5000/a"), "http://[::1]:5000/");
        assert_eq!(ep("quay.io/a/b"), "https://quay.io/");
    }

    #[test]
    fn error_bodies_are_summarised() {
        let d = registry_error_detail(
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#,
        );
        assert_eq!(d, "manifest unknown (MANIFEST_UNKNOWN)");
        assert_eq!(registry_error_detail("plain text\n"), "plain text");
    }
}
