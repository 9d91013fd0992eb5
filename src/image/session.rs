//! An authorised conversation with one registry for one scope: the requests
//! of a push, a login, a catalog read. Unlike a pull's GETs, a push sends
//! bodies, which must not be spent on a request the registry answers with a
//! challenge; so the `Authorization` that answered the last challenge is kept
//! and sent up front, and a body is sent again only when a new challenge
//! (a token for a wider scope) comes back.

use bytes::Bytes;
use reqwest::{header, Method, StatusCode, Url};

use super::auth::{parse_challenge, Credentials};
use super::registry::{registry_error_detail, Endpoint, RegistryClient};
use super::Error;

/// Challenges answered for one request before giving up (a token for a
/// read scope, then one for the push scope).
const MAX_CHALLENGES: usize = 2;

/// One registry endpoint, credentials and token scope, with the
/// `Authorization` header that last worked.
pub struct Session<'a> {
    pub client: &'a RegistryClient,
    pub ep: Endpoint,
    creds: Credentials,
    scope: String,
    auth: std::sync::Mutex<Option<String>>,
}

/// What a request sends besides its method and URL.
#[derive(Default, Clone)]
pub struct Body {
    pub headers: Vec<(header::HeaderName, String)>,
    pub bytes: Option<Bytes>,
}

impl<'a> Session<'a> {
    /// A session for `scope` (e.g. `repository:a/b:pull,push`); anonymous
    /// `creds` fall back to the config's `registries.<host>.auth`.
    pub fn new(
        client: &'a RegistryClient,
        ep: Endpoint,
        creds: &Credentials,
        scope: String,
    ) -> Result<Self, Error> {
        let creds = match creds {
            Credentials::Anonymous => client.config_credentials(&ep.auth_host)?,
            c => c.clone(),
        };
        let preset = match &creds {
            Credentials::RegistryToken(t) => Some(format!("Bearer {t}")),
            _ => None,
        };
        Ok(Session {
            client,
            ep,
            creds,
            scope,
            auth: std::sync::Mutex::new(preset),
        })
    }

    /// `<base>/v2/<tail>`.
    pub fn url(&self, tail: &str) -> Result<Url, Error> {
        let base = self.ep.base.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/v2/{tail}")).map_err(|e| Error::InvalidReference {
            reference: tail.to_string(),
            reason: format!("not a registry path: {e}"),
        })
    }

    fn current_auth(&self) -> Option<String> {
        self.auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sends a request, answering challenges; any status comes back (the
    /// caller decides what a 404 means), but a 401 that no credentials
    /// could answer is an [`Error::Auth`] or [`Error::Registry`].
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        body: &Body,
    ) -> Result<reqwest::Response, Error> {
        let http = self.client.http();
        let net = |source| Error::Network {
            url: url.to_string(),
            source,
        };
        let mut answered = 0;
        loop {
            let mut r = http.request(method.clone(), url.clone());
            for (k, v) in &body.headers {
                r = r.header(k, v);
            }
            if let Some(a) = self.current_auth() {
                r = r.header(header::AUTHORIZATION, a);
            }
            match &body.bytes {
                Some(b) => r = r.header(header::CONTENT_LENGTH, b.len()).body(b.clone()),
                None if method == Method::PUT || method == Method::POST => {
                    r = r.header(header::CONTENT_LENGTH, 0)
                }
                None => {}
            }
            let resp = r.send().await.map_err(net)?;
            if resp.status() != StatusCode::UNAUTHORIZED
                || answered >= MAX_CHALLENGES
                || matches!(self.creds, Credentials::RegistryToken(_))
            {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            let next = match challenge {
                Some(c) if c.scheme == "bearer" => {
                    let t = self
                        .client
                        .tokens()
                        .token(http, &self.ep.auth_host, &c, &self.scope, &self.creds)
                        .await?;
                    format!("Bearer {t}")
                }
                Some(c) if c.scheme == "basic" => match &self.creds {
                    Credentials::Basic { username, password } => basic(username, password),
                    _ => {
                        return Err(Error::Auth {
                            registry: self.ep.auth_host.clone(),
                            reason: "the registry requires basic authentication and no credentials were given (docker login first)".into(),
                        })
                    }
                },
                _ => return Ok(resp),
            };
            if self.current_auth().as_deref() == Some(next.as_str()) {
                // The same answer again: the credentials are refused.
                return Ok(resp);
            }
            *self
                .auth
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(next);
            answered += 1;
        }
    }

    /// [`Session::send`] that wants one of `ok`; anything else is an
    /// [`Error::Registry`] with the registry's own error text.
    pub async fn expect(
        &self,
        method: Method,
        url: &Url,
        body: &Body,
        ok: &[StatusCode],
        what: &str,
    ) -> Result<reqwest::Response, Error> {
        let resp = self.send(method, url, body).await?;
        if ok.contains(&resp.status()) {
            return Ok(resp);
        }
        Err(status_error(resp, url, what).await)
    }
}

/// The registry's refusal as an [`Error::Registry`].
pub async fn status_error(resp: reqwest::Response, url: &Url, what: &str) -> Error {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    Error::Registry {
        what: what.to_string(),
        url: url.to_string(),
        status,
        detail: registry_error_detail(&body),
    }
}

/// `Basic base64(user:pass)`.
pub fn basic(username: &str, password: &str) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {b}")
}

/// A `Location` header resolved against the URL it answered (registries
/// give absolute URLs or absolute paths).
pub fn location(resp: &reqwest::Response, what: &str) -> Result<Url, Error> {
    let bad = |reason: String| Error::BadManifest {
        what: what.to_string(),
        reason,
    };
    let loc = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad("the registry answered without a Location header".into()))?;
    resp.url()
        .join(loc)
        .map_err(|e| bad(format!("bad Location {loc:?}: {e}")))
}
