//! Asking registries about things that are not pulled: whether credentials
//! work (login), which repositories match a term (search), and what a
//! remote image is (its descriptor and platforms) — nothing is stored.

use std::time::Duration;

use reqwest::{header, Method, StatusCode, Url};
use serde::Deserialize;

use super::auth::{parse_challenge, Credentials};
use super::manifest::{self, Document, Platform};
use super::registry::RegistryClient;
use super::session::{basic, status_error, Body, Session};
use super::{Digest, Error, Reference};

/// A login, a search or a look at a remote image gives up after this: a
/// host that cannot be reached (no network) fails fast with its cause.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Catalog pages read before a search stops (distribution pages by 100s).
const MAX_CATALOG_PAGES: usize = 20;
/// Largest image config read to name a manifest's platform.
const MAX_CONFIG_BYTES: usize = 8 << 20;

/// One search hit, as Docker's index API gives it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct SearchResult {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub star_count: u64,
    #[serde(default)]
    pub is_official: bool,
    #[serde(default)]
    pub is_automated: bool,
}

/// What a remote image is: the descriptor its reference resolves to, and
/// the platforms it offers.
#[derive(Debug, Clone)]
pub struct RemoteDescriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub platforms: Vec<Platform>,
}

/// The registry host a login's `serveraddress` names (`127.0.0.1:5000`,
/// `http://127.0.0.1:5000/v2/`, Docker Hub's `https://index.docker.io/v1/`).
pub fn login_host(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or("");
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            super::reference::DEFAULT_REGISTRY.to_string()
        }
        h => h.to_string(),
    }
}

/// Splits a search term into the registry it names, if any, and the rest.
pub fn split_term(term: &str) -> (Option<&str>, &str) {
    match term.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, term),
    }
}

#[derive(Deserialize)]
struct LoginToken {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    refresh_token: String,
}

impl RegistryClient {
    /// Checks `creds` against `host`'s `/v2/` challenge: a basic challenge
    /// is answered with the credentials, a bearer one by a token from its
    /// realm. Returns the identity (refresh) token the realm gave, if any.
    pub async fn login(&self, host: &str, creds: &Credentials) -> Result<Option<String>, Error> {
        let ep = self.direct_endpoint(host)?;
        let url = Url::parse(&format!("{}v2/", ep.base)).map_err(|e| Error::InvalidReference {
            reference: host.to_string(),
            reason: e.to_string(),
        })?;
        let http = self.http();
        let net = |source| Error::Network {
            url: url.to_string(),
            source,
        };
        let get = |auth: Option<String>| {
            let mut r = http.get(url.clone()).timeout(REQUEST_TIMEOUT);
            if let Some(a) = auth {
                r = r.header(header::AUTHORIZATION, a);
            }
            r
        };
        let failed = |status: StatusCode| Error::LoginFailed {
            url: url.to_string(),
            status: status.to_string(),
        };
        let resp = get(None).send().await.map_err(net)?;
        match resp.status() {
            s if s.is_success() => return Ok(None),
            StatusCode::UNAUTHORIZED => {}
            s => return Err(failed(s)),
        }
        let challenge = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
            .ok_or_else(|| failed(StatusCode::UNAUTHORIZED))?;
        let (auth, identity) = match (challenge.scheme.as_str(), creds) {
            ("basic", Credentials::Basic { username, password }) => {
                (basic(username, password), None)
            }
            ("bearer", _) => {
                let realm = challenge.params.get("realm").cloned().unwrap_or_default();
                let realm_url = Url::parse(&realm).map_err(|e| Error::Auth {
                    registry: host.to_string(),
                    reason: format!("bad token realm {realm:?}: {e}"),
                })?;
                let service = challenge.params.get("service").cloned().unwrap_or_default();
                let req = match creds {
                    Credentials::IdentityToken(t) => http.post(realm_url).form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", t.as_str()),
                        ("service", service.as_str()),
                        ("client_id", "berth"),
                        ("access_type", "offline"),
                    ]),
                    Credentials::Basic { username, password } => http
                        .get(realm_url)
                        .query(&[
                            ("service", service.as_str()),
                            ("client_id", "berth"),
                            ("offline_token", "true"),
                        ])
                        .basic_auth(username, Some(password)),
                    _ => return Err(failed(StatusCode::UNAUTHORIZED)),
                };
                let resp = req
                    .timeout(REQUEST_TIMEOUT)
                    .send()
                    .await
                    .map_err(|source| Error::Network {
                        url: realm.clone(),
                        source,
                    })?;
                if !resp.status().is_success() {
                    return Err(Error::LoginFailed {
                        url: realm,
                        status: resp.status().to_string(),
                    });
                }
                let t: LoginToken = resp.json().await.map_err(|e| Error::Auth {
                    registry: host.to_string(),
                    reason: format!("bad token response from {realm}: {e}"),
                })?;
                let token = if t.token.is_empty() {
                    t.access_token
                } else {
                    t.token
                };
                let identity = Some(t.refresh_token).filter(|t| !t.is_empty());
                (format!("Bearer {token}"), identity)
            }
            _ => return Err(failed(StatusCode::UNAUTHORIZED)),
        };
        let resp = get(Some(auth)).send().await.map_err(net)?;
        if resp.status().is_success() {
            Ok(identity)
        } else {
            Err(failed(resp.status()))
        }
    }

    /// Repositories matching `term`: Docker's index search API (`/v1/search`)
    /// on the registry the term names, or on `docker.search_index` for a
    /// plain term; a registry without that API is asked for its v2 catalog,
    /// which is filtered by the term.
    pub async fn search(
        &self,
        term: &str,
        limit: usize,
        creds: &Credentials,
    ) -> Result<Vec<SearchResult>, Error> {
        let (registry, query) = split_term(term);
        let index_base = match registry {
            Some(r) => self.direct_endpoint(r)?.base.to_string(),
            None => self.config().docker.search_index.clone(),
        };
        let index = self.index_search(&index_base, query, limit).await;
        let Some(registry) = registry else {
            return index.map_err(|e| Error::Search {
                registry: index_base.trim_end_matches('/').to_string(),
                reason: crate::cri::chain(&e),
            });
        };
        let index_err = match index {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        match self.catalog_search(registry, query, limit, creds).await {
            Ok(v) => Ok(v),
            Err(e) => Err(Error::Search {
                registry: registry.to_string(),
                reason: format!(
                    "it answers neither the search API ({}) nor the v2 catalog ({})",
                    crate::cri::chain(&index_err),
                    crate::cri::chain(&e)
                ),
            }),
        }
    }

    async fn index_search(
        &self,
        base: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<SearchResult>, Error> {
        #[derive(Deserialize)]
        struct Results {
            results: Vec<SearchResult>,
        }
        let mut url =
            Url::parse(&format!("{}/v1/search", base.trim_end_matches('/'))).map_err(|e| {
                Error::InvalidReference {
                    reference: base.to_string(),
                    reason: e.to_string(),
                }
            })?;
        url.query_pairs_mut()
            .append_pair("q", query)
            .append_pair("n", &limit.to_string());
        let resp = self
            .http()
            .get(url.clone())
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|source| Error::Network {
                url: url.to_string(),
                source,
            })?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &url, "search results").await);
        }
        let r: Results = resp.json().await.map_err(|e| Error::BadManifest {
            what: format!("search results from {url}"),
            reason: e.to_string(),
        })?;
        Ok(r.results.into_iter().take(limit).collect())
    }

    async fn catalog_search(
        &self,
        registry: &str,
        query: &str,
        limit: usize,
        creds: &Credentials,
    ) -> Result<Vec<SearchResult>, Error> {
        #[derive(Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Vec<String>,
        }
        let ep = self.direct_endpoint(registry)?;
        let s = Session::new(self, ep, creds, "registry:catalog:*".into())?;
        let needle = query.to_ascii_lowercase();
        let mut out = Vec::new();
        let mut url = s.url("_catalog?n=100")?;
        for _ in 0..MAX_CATALOG_PAGES {
            let resp = tokio::time::timeout(
                REQUEST_TIMEOUT,
                s.expect(
                    Method::GET,
                    &url,
                    &Body::default(),
                    &[StatusCode::OK],
                    "catalog",
                ),
            )
            .await
            .map_err(|_| Error::Timeout {
                url: url.to_string(),
                after: REQUEST_TIMEOUT,
            })??;
            let next = next_page(&resp);
            let c: Catalog = resp.json().await.map_err(|e| Error::BadManifest {
                what: format!("catalog of {registry}"),
                reason: e.to_string(),
            })?;
            out.extend(
                c.repositories
                    .into_iter()
                    .filter(|r| r.to_ascii_lowercase().contains(&needle))
                    .map(|r| SearchResult {
                        name: format!("{registry}/{r}"),
                        description: String::new(),
                        star_count: 0,
                        is_official: false,
                        is_automated: false,
                    }),
            );
            match next.and_then(|n| url.join(&n).ok()) {
                Some(n) if out.len() < limit => url = n,
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// The descriptor `image` resolves to on its registry (mirrors first)
    /// and the platforms it offers: an index's entries, or the config's
    /// platform for a single manifest.
    pub async fn describe(
        &self,
        image: &str,
        creds: &Credentials,
    ) -> Result<RemoteDescriptor, Error> {
        let r = Reference::parse(image)?;
        let mut last = None;
        for ep in self.endpoints(&r) {
            let m = match tokio::time::timeout(
                REQUEST_TIMEOUT,
                self.manifest(&ep, &r.repository, &r.manifest_ref(), creds),
            )
            .await
            {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    last = Some(e);
                    continue;
                }
                Err(_) => {
                    last = Some(Error::Timeout {
                        url: ep.base.to_string(),
                        after: REQUEST_TIMEOUT,
                    });
                    continue;
                }
            };
            let what = format!("manifest of {r}");
            let doc = manifest::parse(&what, &m.content_type, &m.body)?;
            let (media_type, platforms) = match doc {
                Document::Index(idx) => (
                    idx.media_type
                        .clone()
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| media_type_or(&m.content_type, manifest::OCI_INDEX)),
                    idx.manifests
                        .iter()
                        .filter_map(|d| d.platform.clone())
                        .collect(),
                ),
                Document::Manifest(man) => {
                    let resp = self
                        .blob(&ep, &r.repository, &man.config.digest, creds)
                        .await?;
                    let body = resp.bytes().await.map_err(|source| Error::Network {
                        url: ep.base.to_string(),
                        source,
                    })?;
                    if body.len() > MAX_CONFIG_BYTES || Digest::of(&body) != man.config.digest {
                        return Err(Error::BadManifest {
                            what: format!("config {}", man.config.digest),
                            reason: "too large or not matching its digest".into(),
                        });
                    }
                    let p: Platform =
                        serde_json::from_slice(&body).map_err(|e| Error::BadManifest {
                            what: format!("config {}", man.config.digest),
                            reason: e.to_string(),
                        })?;
                    (super::push::manifest_media_type(&man), vec![p])
                }
            };
            return Ok(RemoteDescriptor {
                media_type,
                digest: m.digest,
                size: m.body.len() as u64,
                platforms,
            });
        }
        Err(last.unwrap_or_else(|| Error::InvalidReference {
            reference: r.to_string(),
            reason: "no endpoint to ask".into(),
        }))
    }
}

fn media_type_or(content_type: &str, default: &str) -> String {
    let t = content_type.split(';').next().unwrap_or("").trim();
    if t.is_empty() {
        default.to_string()
    } else {
        t.to_string()
    }
}

/// The next page of a paginated answer (`Link: </v2/_catalog?…>; rel="next"`).
fn next_page(resp: &reqwest::Response) -> Option<String> {
    let link = resp.headers().get(header::LINK)?.to_str().ok()?;
    let (target, params) = link.split_once(';')?;
    if !params.contains("rel=\"next\"") && !params.contains("rel=next") {
        return None;
    }
    Some(
        target
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_hosts() {
        assert_eq!(login_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(login_host("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(login_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(login_host(""), "docker.io");
        assert_eq!(login_host("quay.io"), "quay.io");
    }

    #[test]
    fn search_terms() {
        assert_eq!(
            split_term("127.0.0.1:5000/bus"),
            (Some("127.0.0.1:5000"), "bus")
        );
        assert_eq!(split_term("localhost/x"), (Some("localhost"), "x"));
        assert_eq!(split_term("quay.io/a/b"), (Some("quay.io"), "a/b"));
        assert_eq!(split_term("busybox"), (None, "busybox"));
        assert_eq!(split_term("library/busybox"), (None, "library/busybox"));
    }
}
