//! A real OCI distribution registry (Debian's `docker-registry`, distribution
//! 2.8) on 127.0.0.1, with filesystem storage in a temp dir.
//!
//! distribution writes two logs: the access log on stdout in Apache
//! "combined" format, one line per finished response:
//!
//! ```text
//! 127.0.0.1 - - [23/Nov/2026:17:09:39 +0000] "GET /v2/test/x/blobs/sha256:… HTTP/1.1" 200 157 "" "agent"
//! ```
//!
//! and the application log (logrus text, `msg="response completed"` lines
//! with `http.request.method=… http.request.uri=…`) on stderr. Request
//! counting parses the access log; the line is written once the handler has
//! returned, so readers first wait for the file to stop growing.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{free_port, read_text, short_tempdir, ChildGuard};

/// One request from the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// A registry process serving plain HTTP on 127.0.0.1; killed on drop.
pub struct TestRegistry {
    addr: String,
    credentials: Option<(String, String)>,
    access_log: PathBuf,
    app_log: PathBuf,
    child: ChildGuard,
    // Dropped last: the process is gone before its storage is removed.
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts an open registry (no authentication).
    pub async fn start() -> Self {
        Self::start_inner(None).await
    }

    /// Starts a registry that demands HTTP basic auth (htpasswd, bcrypt).
    /// distribution 2.8 accepts htpasswd over plain HTTP; only its docs ask
    /// for TLS.
    pub async fn start_with_htpasswd(user: &str, pass: &str) -> Self {
        Self::start_inner(Some((user.to_string(), pass.to_string()))).await
    }

    async fn start_inner(credentials: Option<(String, String)>) -> Self {
        // A port picked by free_port can be taken by a parallel test before the
        // registry binds it; try again with a new one.
        let mut last_log = String::new();
        for _ in 0..5 {
            match Self::try_start(credentials.clone()).await {
                Ok(reg) => return reg,
                Err(log) => last_log = log,
            }
        }
        panic!("docker-registry did not start; last log:\n{last_log}");
    }

    async fn try_start(credentials: Option<(String, String)>) -> Result<Self, String> {
        let dir = short_tempdir("reg");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let auth = match &credentials {
            Some((user, pass)) => {
                let htpasswd = dir.path().join("htpasswd");
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, pass])
                    .output()
                    .expect("run htpasswd (apache2-utils)");
                assert!(out.status.success(), "htpasswd failed: {out:?}");
                std::fs::write(&htpasswd, &out.stdout).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: berth-e2e\n    path: {}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n  secret: berth-e2e-secret\n{auth}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let access_log = dir.path().join("access.log");
        let app_log = dir.path().join("registry.log");
        let stdout = std::fs::File::create(&access_log).expect("create access log");
        let stderr = std::fs::File::create(&app_log).expect("create registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn docker-registry");
        let mut reg = TestRegistry {
            addr,
            credentials,
            access_log,
            app_log,
            child: ChildGuard::new(child),
            _dir: dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if reg.child.try_wait().is_some() {
                return Err(reg.log());
            }
            let mut req = client.get(format!("{}/v2/", reg.url()));
            if let Some((u, p)) = &reg.credentials {
                req = req.basic_auth(u, Some(p));
            }
            if let Ok(resp) = req.send().await {
                if resp.status() == 200 {
                    return Ok(reg);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(reg.log())
    }

    /// `127.0.0.1:PORT`, the registry host as image names use it.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Basic-auth credentials when started with htpasswd.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// `<addr>/<repo>`: an image name in this registry.
    pub fn image(&self, repo_and_ref: &str) -> String {
        format!("{}/{}", self.addr, repo_and_ref)
    }

    /// berthd `registries:` YAML that allows plain HTTP to this registry.
    pub fn insecure_yaml(&self) -> String {
        format!("registries:\n  \"{}\": {{insecure: true}}\n", self.addr)
    }

    /// The application log (stderr).
    pub fn log(&self) -> String {
        read_text(&self.app_log)
    }

    /// The access log (stdout), combined log format.
    pub fn access_log(&self) -> String {
        read_text(&self.access_log)
    }

    /// Every request in the access log, in order, once the log is quiet.
    pub async fn requests(&self) -> Vec<AccessEntry> {
        self.settle().await;
        self.requests_now()
    }

    /// Every request logged so far, without waiting for late lines.
    pub fn requests_now(&self) -> Vec<AccessEntry> {
        self.access_log()
            .lines()
            .filter_map(parse_access_line)
            .collect()
    }

    /// How many requests with `method` had a path containing `path_part`.
    pub async fn count_requests(&self, method: &str, path_part: &str) -> usize {
        self.requests()
            .await
            .iter()
            .filter(|e| e.method == method && e.path.contains(path_part))
            .count()
    }

    /// Like `count_requests`, counting only 2xx answers.
    pub async fn count_ok(&self, method: &str, path_part: &str) -> usize {
        self.requests()
            .await
            .iter()
            .filter(|e| e.method == method && e.path.contains(path_part))
            .filter(|e| (200..300).contains(&e.status))
            .count()
    }

    /// Waits until the access log has not grown for 200 ms: a line lands a
    /// moment after the client has read the last byte of the response.
    async fn settle(&self) {
        let len = || std::fs::metadata(&self.access_log).map_or(0, |m| m.len());
        let mut last = len();
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = len();
            if now == last {
                return;
            }
            last = now;
        }
        panic!("registry access log kept growing for 10 s");
    }
}

/// Parses `… "METHOD PATH PROTO" STATUS SIZE …` from a combined-log line.
pub fn parse_access_line(line: &str) -> Option<AccessEntry> {
    let start = line.find('"')? + 1;
    let rest = &line[start..];
    let end = rest.find('"')?;
    let mut request = rest[..end].split(' ');
    let method = request.next()?.to_string();
    let path = request.next()?.to_string();
    let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
    Some(AccessEntry {
        method,
        path,
        status,
    })
}

#[test]
fn parses_combined_log_lines() {
    let line = r#"127.0.0.1 - - [23/Nov/2026:17:09:39 +0000] "GET /v2/test/x/blobs/sha256:00 HTTP/1.1" 404 157 "" "curl/7.88.1""#;
    assert_eq!(
        parse_access_line(line),
        Some(AccessEntry {
            method: "GET".into(),
            path: "/v2/test/x/blobs/sha256:00".into(),
            status: 404
        })
    );
    assert_eq!(parse_access_line("time=\"x\" level=info"), None);
}
