//! RUN: the command runs in a container the engine makes the way `docker
//! run` does (a one-container pod labelled as Docker's, from the step's
//! parent image), its output streamed into the build's progress as it is
//! written to the container's log; the container's writable layer then
//! becomes the step's layer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_cri::v1 as cri;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tracing::warn;

use super::Progress;
use crate::build::progress::Message;
use crate::engine::docker::{CONFIG_ANNOTATION, NAME_ANNOTATION, NETWORK_ANNOTATION, OWNER_LABEL};
use crate::engine::records::{new_id, ContainerState};
use crate::engine::{Engine, Error};

/// What a RUN step runs.
pub struct RunSpec<'a> {
    pub image_id: &'a str,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub user: String,
    pub working_dir: String,
    /// `networkmode`: default, bridge, host or none.
    pub network_mode: &'a str,
}

/// A build container that ran.
pub struct Ran {
    pub id: String,
    pub pod_id: String,
    pub exit_code: i32,
}

impl Engine {
    /// Makes, starts and waits for a RUN step's container, streaming what
    /// it writes; the container is left (exited) for the caller to commit
    /// and remove.
    pub(super) async fn run_step(
        &self,
        spec: RunSpec<'_>,
        progress: &Progress,
    ) -> Result<Ran, Error> {
        let id = new_id();
        let name = format!("build_{}", &id[..12]);
        let log_dir = self.config.root.join("docker").join("logs").join(&id);
        let network = match spec.network_mode {
            "" | "default" | "bridge" | "none" => cri::NamespaceMode::Pod,
            "host" => cri::NamespaceMode::Node,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "network mode {other:?} is not supported for RUN (use default, bridge, host or none)"
                )))
            }
        };
        let mut annotations = HashMap::new();
        if spec.network_mode == "none" {
            annotations.insert(NETWORK_ANNOTATION.to_string(), "none".to_string());
        }
        let pod = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.clone(),
                uid: id.clone(),
                namespace: "docker".into(),
                attempt: 0,
            }),
            hostname: if network == cri::NamespaceMode::Node {
                String::new()
            } else {
                id[..12].to_string()
            },
            log_directory: log_dir.to_string_lossy().into_owned(),
            labels: HashMap::from([(OWNER_LABEL.to_string(), "docker".to_string())]),
            annotations,
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: network as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut sc = cri::LinuxContainerSecurityContext {
            seccomp: Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        crate::runtime::user::apply_image_user(&spec.user, "USER", &mut sc)
            .map_err(Error::InvalidArgument)?;
        let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        // What `docker inspect` of the build container shows.
        let request = json!({
            "Image": spec.image_id, "Cmd": spec.argv, "Env": env,
            "User": spec.user, "WorkingDir": spec.working_dir,
        });
        let ctr = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.clone(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: spec.image_id.to_string(),
                ..Default::default()
            }),
            command: spec.argv.clone(),
            working_dir: spec.working_dir.clone(),
            envs: spec
                .env
                .iter()
                .map(|(k, v)| cri::KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            annotations: HashMap::from([
                (NAME_ANNOTATION.to_string(), name.clone()),
                (CONFIG_ANNOTATION.to_string(), request.to_string()),
            ]),
            log_path: "container.log".into(),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(sc),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod_id = self.run_pod_sandbox(pod, "").await?;
        let made = self.create_container_as(&pod_id, ctr, id.clone()).await;
        if let Err(e) = made {
            self.discard_build_pod(&pod_id).await;
            return Err(e);
        }
        progress.send(Message::running_in(&id)).await;
        let (_, mut events) = self.events.subscribe();
        if let Err(e) = self.start_container(&id).await {
            self.discard_build_pod(&pod_id).await;
            return Err(e);
        }
        let log = log_dir.join("container.log");
        let mut tail = LogTail::new(log);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let exit_code = loop {
            tokio::select! {
                _ = tick.tick() => {}
                ev = events.recv() => {
                    if !matches!(ev, Ok(ref e) if e.id == id) { continue; }
                }
            }
            tail.forward(progress).await;
            match self.refreshed(&id)? {
                Some(r) if r.state == ContainerState::Exited => break r.exit_code,
                Some(_) => {}
                None => return Err(Error::internal(format!("build container {id} vanished"))),
            }
        };
        tail.forward(progress).await;
        tail.finish(progress).await;
        Ok(Ran {
            id,
            pod_id,
            exit_code,
        })
    }

    /// Removes a build container's pod (and with it the container).
    pub(super) async fn discard_build_pod(&self, pod_id: &str) {
        if let Err(e) = self.remove_pod_sandbox(pod_id).await {
            warn!(pod = %pod_id, error = %e, "failed to remove a build container's pod");
        }
    }
}

/// Follows a CRI log file (`<time> <stream> <P|F> <text>`), turning its
/// lines back into the output the command wrote.
struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl LogTail {
    fn new(path: PathBuf) -> Self {
        LogTail {
            path,
            offset: 0,
            partial: Vec::new(),
        }
    }

    async fn forward(&mut self, progress: &Progress) {
        let Ok(mut f) = tokio::fs::File::open(&self.path).await else {
            return;
        };
        if f.seek(std::io::SeekFrom::Start(self.offset)).await.is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).await.is_err() {
            return;
        }
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let mut text = String::new();
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            text.push_str(&cri_line(&line[..line.len() - 1]));
        }
        if !text.is_empty() {
            progress.send(Message::Stream(text)).await;
        }
    }

    async fn finish(&mut self, progress: &Progress) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            progress.send(Message::Stream(cri_line(&rest))).await;
        }
    }
}

/// One CRI log line's text, with its newline unless it was partial.
fn cri_line(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    let mut parts = s.splitn(4, ' ');
    let (_ts, _stream, tag, text) = (parts.next(), parts.next(), parts.next(), parts.next());
    match tag {
        Some("P") => text.unwrap_or("").to_string(),
        Some(_) => format!("{}\n", text.unwrap_or("")),
        None => format!("{s}\n"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cri_log_lines() {
        assert_eq!(
            super::cri_line(b"2026-01-01T00:00:00Z stdout F hello world"),
            "hello world\n"
        );
        assert_eq!(
            super::cri_line(b"2026-01-01T00:00:00Z stderr P part"),
            "part"
        );
        assert_eq!(super::cri_line(b"2026-01-01T00:00:00Z stdout F "), "\n");
    }
}
