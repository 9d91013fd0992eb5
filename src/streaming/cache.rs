//! Pending streaming requests, keyed by single-use random tokens: the CRI call
//! validates and stores the request, the URL it returns names the token, and
//! the streaming server takes the request back out (as the kubelet's
//! streaming server cache does). Tokens expire after [`TOKEN_TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a returned URL stays valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// Most requests waiting at once; beyond this the oldest expire early.
const MAX_PENDING: usize = 1024;

/// An exec or attach, as validated by the CRI call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub container_id: String,
    /// Empty for attach.
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A streaming request waiting for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Exec(ExecRequest),
    Attach(ExecRequest),
    PortForward { pod_id: String },
}

impl Request {
    /// The URL path segment of this kind of request.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Exec(_) => "exec",
            Request::Attach(_) => "attach",
            Request::PortForward { .. } => "portforward",
        }
    }
}

/// Requests by token.
#[derive(Default)]
pub struct Cache {
    pending: Mutex<HashMap<String, (Request, Instant)>>,
}

impl Cache {
    /// Stores `req` under a new token and returns the token.
    pub fn insert(&self, req: Request) -> String {
        let token = crate::engine::records::new_id()[..32].to_string();
        let now = Instant::now();
        let mut pending = self.pending.lock().expect("cache lock");
        pending.retain(|_, (_, at)| now.duration_since(*at) < TOKEN_TTL);
        if pending.len() >= MAX_PENDING {
            if let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
            {
                pending.remove(&oldest);
            }
        }
        pending.insert(token.clone(), (req, now));
        token
    }

    /// Takes the request of `token` if it exists, has not expired and is of
    /// `kind`; a token works once.
    pub fn take(&self, kind: &str, token: &str) -> Option<Request> {
        let mut pending = self.pending.lock().expect("cache lock");
        let (req, at) = pending.remove(token)?;
        (at.elapsed() < TOKEN_TTL && req.kind() == kind).then_some(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_single_use_and_typed() {
        let c = Cache::default();
        let req = Request::PortForward { pod_id: "p".into() };
        let t = c.insert(req.clone());
        let u = c.insert(req.clone());
        assert_ne!(t, u);
        assert_eq!(c.take("portforward", &t), Some(req));
        assert_eq!(c.take("portforward", &t), None, "a token works once");
        assert_eq!(c.take("exec", &u), None, "a token is for one kind");
        assert_eq!(c.take("portforward", &u), None);
        assert_eq!(c.take("exec", "nope"), None);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let c = Cache::default();
        let t = c.insert(Request::PortForward { pod_id: "p".into() });
        c.pending.lock().unwrap().get_mut(&t).unwrap().1 -= TOKEN_TTL;
        assert_eq!(c.take("portforward", &t), None);
    }
}
