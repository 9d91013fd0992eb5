//! Registry authentication: credentials, `WWW-Authenticate` challenges and the
//! bearer-token flow of the distribution spec.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use super::Error;
use crate::config::RegistryAuth;

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token, exchanged at the token realm.
    IdentityToken(String),
    /// A bearer token sent to the registry as is.
    RegistryToken(String),
}

impl Credentials {
    /// From CRI's AuthConfig fields (or the equivalent Docker X-Registry-Auth).
    pub fn from_parts(
        username: &str,
        password: &str,
        auth: &str,
        identity_token: &str,
        registry_token: &str,
    ) -> Result<Self, Error> {
        if !registry_token.is_empty() {
            return Ok(Credentials::RegistryToken(registry_token.to_string()));
        }
        if !identity_token.is_empty() {
            return Ok(Credentials::IdentityToken(identity_token.to_string()));
        }
        if !username.is_empty() {
            return Ok(Credentials::Basic {
                username: username.to_string(),
                password: password.to_string(),
            });
        }
        if !auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Error::Auth {
                    registry: "<request>".into(),
                    reason: "auth is not base64 of username:password".into(),
                })?;
            let (u, p) = decoded.split_once(':').ok_or_else(|| Error::Auth {
                registry: "<request>".into(),
                reason: "auth does not contain username:password".into(),
            })?;
            return Ok(Credentials::Basic {
                username: u.to_string(),
                password: p.to_string(),
            });
        }
        Ok(Credentials::Anonymous)
    }

    /// From the config file's `registries.<host>.auth`.
    pub fn from_config(a: &RegistryAuth) -> Result<Self, Error> {
        Self::from_parts(&a.username, &a.password, &a.auth, &a.identity_token, "")
    }

    /// A stable string identifying these credentials in the token cache.
    fn cache_id(&self) -> String {
        match self {
            Credentials::Anonymous => String::new(),
            Credentials::Basic { username, password } => {
                super::Digest::of(format!("{username}:{password}").as_bytes()).to_string()
            }
            Credentials::IdentityToken(t) | Credentials::RegistryToken(t) => {
                super::Digest::of(t.as_bytes()).to_string()
            }
        }
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer` or `basic`, lowercase.
    pub scheme: String,
    pub params: HashMap<String, String>,
}

/// Parses `Bearer realm="…",service="…",scope="a:b:pull,push"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r.trim()),
        None => (header, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Bearer tokens by (realm, service, scope, credentials).
#[derive(Default)]
pub struct TokenCache {
    tokens: std::sync::Mutex<HashMap<String, (String, Instant)>>,
}

impl TokenCache {
    /// A token for `scope` answering `challenge`, fetched from its realm unless cached.
    pub async fn token(
        &self,
        http: &reqwest::Client,
        registry: &str,
        challenge: &Challenge,
        scope: &str,
        creds: &Credentials,
    ) -> Result<String, Error> {
        if let Credentials::RegistryToken(t) = creds {
            return Ok(t.clone());
        }
        let auth_err = |reason: String| Error::Auth {
            registry: registry.to_string(),
            reason,
        };
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| auth_err("bearer challenge without realm".into()))?;
        let service = challenge.params.get("service").cloned().unwrap_or_default();
        let scope = challenge
            .params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| scope.to_string());
        let key = format!("{realm}\n{service}\n{scope}\n{}", creds.cache_id());
        if let Some((t, until)) = self.tokens.lock().unwrap().get(&key) {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let url = reqwest::Url::parse(realm)
            .map_err(|e| auth_err(format!("bad token realm {realm:?}: {e}")))?;
        let req = match creds {
            Credentials::IdentityToken(refresh) => http.post(url).form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("service", service.as_str()),
                ("scope", scope.as_str()),
                ("client_id", "berth"),
            ]),
            _ => {
                let mut q: Vec<(&str, &str)> = vec![("scope", &scope)];
                if !service.is_empty() {
                    q.push(("service", &service));
                }
                let r = http.get(url).query(&q);
                match creds {
                    Credentials::Basic { username, password } => {
                        r.basic_auth(username, Some(password))
                    }
                    _ => r,
                }
            }
        };
        let resp = req.send().await.map_err(|source| Error::Network {
            url: realm.clone(),
            source,
        })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(auth_err(format!(
                "token endpoint {realm} answered {status}: {}",
                body.chars().take(300).collect::<String>()
            )));
        }
        let t: TokenResponse = resp
            .json()
            .await
            .map_err(|e| auth_err(format!("bad token response from {realm}: {e}")))?;
        let token = if t.token.is_empty() {
            t.access_token
        } else {
            t.token
        };
        if token.is_empty() {
            return Err(auth_err(format!(
                "token endpoint {realm} returned no token"
            )));
        }
        // Renew a little early; the spec's default lifetime is 60 s.
        let ttl = Duration::from_secs(t.expires_in.unwrap_or(60).saturating_sub(10).max(10));
        self.tokens
            .lock()
            .unwrap()
            .insert(key, (token.clone(), Instant::now() + ttl));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["service"], "registry.example");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "Registry Realm");
        let c = parse_challenge("Bearer realm=https://x/t, service=s").unwrap();
        assert_eq!(c.params["realm"], "https://x/t");
        assert_eq!(c.params["service"], "s");
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn credentials_from_parts() {
        assert_eq!(
            Credentials::from_parts("", "", "dXNlcjpwYTpzcw==", "", "").unwrap(),
            Credentials::Basic {
                username: "user".into(),
                password: "pa:ss".into()
            }
        );
        assert_eq!(
            Credentials::from_parts("u", "p", "ignored", "", "").unwrap(),
            Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(
            Credentials::from_parts("", "", "", "", "tok").unwrap(),
            Credentials::RegistryToken("tok".into())
        );
        assert_eq!(
            Credentials::from_parts("", "", "", "", "").unwrap(),
            Credentials::Anonymous
        );
        assert!(Credentials::from_parts("", "", "!!!", "", "").is_err());
        assert!(Credentials::from_parts("", "", "bm9jb2xvbg==", "", "").is_err());
    }
}
