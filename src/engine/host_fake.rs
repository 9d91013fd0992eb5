//! A fake host for engine unit tests (see `host.rs`): one [`FakeHost`] is
//! the OCI runtime, the monitors, the pod network and the mounts at once,
//! records every call, keeps each container's runtime state, and fails an
//! operation on demand.
//!
//! A container the fake "creates" is two real `sleep` processes, so that
//! [`ProcessId::alive`] and the engine's signals work as on a host: the
//! container's, and its monitor's. A task stands in for the monitor: when the
//! container's process ends it writes the exit file (the code fed by
//! [`FakeHost::exit`], else 128 + the signal), ends the monitor's process,
//! and announces the exit as a real monitor's waiter does.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use k8s_cri::v1::PodSandboxConfig;

use super::features::HandlerFeatures;
use super::host::{HostOps, Monitors, Mounts, PodNetwork, Probe, Runtime};
use super::oci::OciRuntime;
use super::records::ProcessId;
use super::{Engine, Error, HostFacts};
use crate::monitor::{ExitStatus, MonitorConfig};
use crate::network::{Attachment, Cni, CniError, CniResult, NetworkConfigList};
use crate::runtime::userns::PodUserNamespace;
use crate::sandbox::{NsKinds, PinnedNamespaces, PodFiles, SandboxError};

/// An operation the fake can be told to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    /// The monitor's create.
    Spawn,
    /// The runtime's start.
    Start,
    /// CNI ADD.
    CniAdd,
    /// A rootfs mount.
    Mount,
}

/// A container as the fake runtime knows it.
struct FakeContainer {
    /// `created`, `running`, `paused` or `stopped`.
    status: &'static str,
    pid: ProcessId,
    /// True once its monitor recorded the exit.
    done: tokio::sync::watch::Receiver<bool>,
}

#[derive(Default)]
struct State {
    containers: HashMap<String, FakeContainer>,
    calls: Vec<String>,
    failing: HashSet<Op>,
    /// Exit codes fed for the next exit of a container.
    exits: HashMap<String, i32>,
    mounted: BTreeSet<PathBuf>,
    pinned: BTreeSet<PathBuf>,
    attached: BTreeSet<String>,
}

/// The fake host (see the module doc).
#[derive(Clone, Default)]
pub(crate) struct FakeHost {
    st: Arc<Mutex<State>>,
}

impl FakeHost {
    pub fn new() -> Self {
        Self::default()
    }

    /// The host operations of an engine on this fake.
    pub fn ops(&self) -> HostOps {
        let me = Arc::new(self.clone());
        HostOps {
            runtime: Some(me.clone()),
            monitors: me.clone(),
            network: me.clone(),
            mounts: me.clone(),
            probe: me,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails `op` from now on.
    pub fn fail(&self, op: Op) {
        self.lock().failing.insert(op);
    }

    /// Lets `op` succeed again.
    pub fn heal(&self, op: Op) {
        self.lock().failing.remove(&op);
    }

    fn failing(&self, op: Op) -> bool {
        self.lock().failing.contains(&op)
    }

    fn record(&self, call: String) {
        self.lock().calls.push(call);
    }

    /// Every call so far, as `verb id…` lines.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The calls that start with `prefix`.
    pub fn calls_of(&self, prefix: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .collect()
    }

    /// Fails the test, listing every call, unless some call starts with `prefix`.
    #[track_caller]
    pub fn assert_called(&self, prefix: &str) {
        assert!(
            !self.calls_of(prefix).is_empty(),
            "no `{prefix}` call in {:?}",
            self.calls()
        );
    }

    /// What is mounted now (rootfs overlays, image volumes, pods' /dev/shm).
    pub fn mounted(&self) -> Vec<PathBuf> {
        self.lock().mounted.iter().cloned().collect()
    }

    /// The namespaces pinned now.
    pub fn pinned(&self) -> Vec<PathBuf> {
        self.lock().pinned.iter().cloned().collect()
    }

    /// The pods attached to a CNI network now.
    pub fn attached(&self) -> Vec<String> {
        self.lock().attached.iter().cloned().collect()
    }

    /// The runtime's status of a container, as `crun state` would say it.
    pub fn status_of(&self, id: &str) -> Option<&'static str> {
        self.lock().containers.get(id).map(|c| c.status)
    }

    /// Marks a created container running behind the engine's back (a
    /// `crun start` that a daemon crash kept from being recorded).
    pub fn start_behind(&self, id: &str) {
        match self.lock().containers.get_mut(id) {
            Some(c) if c.status == "created" => c.status = "running",
            _ => panic!("the fake runtime has no created container {id}"),
        }
    }

    /// Ends a container's process; its monitor records `code` as the exit.
    pub fn exit(&self, id: &str, code: i32) {
        let pid = {
            let mut st = self.lock();
            st.exits.insert(id.to_string(), code);
            st.containers.get(id).map(|c| c.pid)
        };
        match pid {
            Some(p) => {
                assert!(
                    p.signal(nix::sys::signal::Signal::SIGKILL),
                    "container {id} has no live process to end"
                );
            }
            None => panic!("the fake runtime does not know container {id}"),
        }
    }

    fn signal(&self, id: &str, signal: &str) -> Result<(), Error> {
        let name = if signal.starts_with("SIG") {
            signal.to_string()
        } else {
            format!("SIG{signal}")
        };
        let sig = match signal.parse::<i32>() {
            Ok(n) => nix::sys::signal::Signal::try_from(n).ok(),
            Err(_) => name.parse::<nix::sys::signal::Signal>().ok(),
        }
        .ok_or_else(|| Error::InvalidArgument(format!("unknown signal {signal:?}")))?;
        let st = self.lock();
        let Some(c) = st.containers.get(id) else {
            return Err(runtime_err(
                format!("signal container {id}"),
                "container does not exist",
            ));
        };
        if c.status == "stopped" {
            return Err(runtime_err(
                format!("signal container {id}"),
                "container is not running",
            ));
        }
        c.pid.signal(sig);
        Ok(())
    }

    /// Starts the two processes of a created container and the task that
    /// plays its monitor.
    async fn create(
        &self,
        engine: &Engine,
        cfg: &MonitorConfig,
    ) -> Result<(ProcessId, ProcessId), Error> {
        let sleep = || {
            tokio::process::Command::new("sleep")
                .arg("3600")
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| Error::internal(format!("fake: failed to run sleep: {e}")))
        };
        let (mut ctr, mut mon) = (sleep()?, sleep()?);
        let pid_of = |c: &tokio::process::Child| {
            c.id()
                .and_then(|p| ProcessId::of(p as i32))
                .ok_or_else(|| Error::internal("fake: a sleep vanished"))
        };
        let (pid, monitor) = (pid_of(&ctr)?, pid_of(&mon)?);
        let (done_tx, done) = tokio::sync::watch::channel(false);
        self.lock().containers.insert(
            cfg.id.clone(),
            FakeContainer {
                status: "created",
                pid,
                done,
            },
        );
        let (me, id, exit_file) = (self.clone(), cfg.id.clone(), cfg.exit_file.clone());
        let exits = engine.monitor_exits.clone();
        tokio::spawn(async move {
            let status = ctr.wait().await;
            let fed = me.lock().exits.remove(&id);
            let signal = status.as_ref().ok().and_then(|s| s.signal());
            let code = fed.unwrap_or_else(|| match (&status, signal) {
                (_, Some(sig)) => 128 + sig,
                (Ok(s), None) => s.code().unwrap_or(255),
                (Err(_), None) => 255,
            });
            let signal = if fed.is_some() { None } else { signal };
            // Written before the monitor ends, as the real one does.
            if let Err(e) = ExitStatus::now(code, signal, false).write(&exit_file) {
                tracing::warn!(container = %id, error = %e, "fake monitor: no exit file");
            }
            if let Some(c) = me.lock().containers.get_mut(&id) {
                if c.pid == pid {
                    c.status = "stopped";
                }
            }
            let _ = mon.kill().await;
            let _ = done_tx.send(true);
            let _ = exits.send(id);
        });
        Ok((pid, monitor))
    }
}

fn runtime_err(what: String, message: &str) -> Error {
    Error::Runtime {
        what,
        message: message.to_string(),
    }
}

impl Runtime for FakeHost {
    fn has_state(&self, id: &str) -> bool {
        self.lock().containers.contains_key(id)
    }

    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.record(format!("start {id}"));
            let what = format!("start container {id}");
            if self.failing(Op::Start) {
                return Err(runtime_err(what, "fake: start failed"));
            }
            let mut st = self.lock();
            match st.containers.get_mut(id) {
                Some(c) if c.status == "created" => {
                    c.status = "running";
                    Ok(())
                }
                Some(c) => Err(runtime_err(what, &format!("container is {}", c.status))),
                None => Err(runtime_err(what, "container does not exist")),
            }
        })
    }

    fn kill<'a>(
        &'a self,
        id: &'a str,
        signal: &'a str,
        all: bool,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.record(format!(
                "kill {id} {signal}{}",
                if all { " --all" } else { "" }
            ));
            self.signal(id, signal)
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.record(format!("delete {id}"));
            let gone = self.lock().containers.remove(id);
            // As `delete --force`: the container is dead on return (and
            // here its monitor is done writing).
            if let Some(mut c) = gone {
                c.pid.signal(nix::sys::signal::Signal::SIGKILL);
                let done = c.done.wait_for(|d| *d);
                if tokio::time::timeout(std::time::Duration::from_secs(10), done)
                    .await
                    .is_err()
                {
                    return Err(runtime_err(
                        format!("delete container {id}"),
                        "fake: the container did not die",
                    ));
                }
            }
            Ok(())
        })
    }

    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move { self.status_of(id).map(str::to_string) })
    }

    fn set_paused<'a>(&'a self, id: &'a str, pause: bool) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let verb = if pause { "pause" } else { "resume" };
            self.record(format!("{verb} {id}"));
            let mut st = self.lock();
            let what = format!("{verb} container {id}");
            match st.containers.get_mut(id) {
                Some(c) if c.status == "running" || c.status == "paused" => {
                    c.status = if pause { "paused" } else { "running" };
                    Ok(())
                }
                _ => Err(runtime_err(what, "container is not running")),
            }
        })
    }
}

impl Monitors for FakeHost {
    fn spawn<'a>(
        &'a self,
        engine: &'a Engine,
        cfg: &'a MonitorConfig,
    ) -> BoxFuture<'a, Result<(ProcessId, ProcessId), Error>> {
        Box::pin(async move {
            self.record(format!("spawn {}", cfg.id));
            // What a restart reads again, as the real monitor spawn leaves it.
            std::fs::create_dir_all(&cfg.bundle)
                .and_then(|()| cfg.write())
                .map_err(|e| Error::internal(format!("fake: monitor config: {e}")))?;
            if self.failing(Op::Spawn) {
                return Err(runtime_err(
                    format!("create container {}", cfg.id),
                    "fake: create failed",
                ));
            }
            self.create(engine, cfg).await
        })
    }
}

impl PodNetwork for FakeHost {
    fn pin(
        &self,
        dir: &Path,
        want: NsKinds,
        _hostname: Option<&str>,
    ) -> Result<PinnedNamespaces, SandboxError> {
        self.record(format!("pin {}", dir.display()));
        let pin = |on: bool, name: &str| -> Result<Option<PathBuf>, SandboxError> {
            if !on {
                return Ok(None);
            }
            let p = dir.join(name);
            std::fs::write(&p, b"").map_err(|e| SandboxError::io("create", &p, e))?;
            self.lock().pinned.insert(p.clone());
            Ok(Some(p))
        };
        Ok(PinnedNamespaces {
            net: pin(want.net, "net")?,
            ipc: pin(want.ipc, "ipc")?,
            uts: pin(want.uts, "uts")?,
        })
    }

    fn is_pinned(&self, path: &Path) -> bool {
        self.lock().pinned.contains(path)
    }

    fn unpin(&self, pinned: &PinnedNamespaces) -> Result<(), SandboxError> {
        for p in [&pinned.net, &pinned.ipc, &pinned.uts]
            .into_iter()
            .flatten()
        {
            self.record(format!("unpin {}", p.display()));
            self.lock().pinned.remove(p);
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }

    fn write_files(
        &self,
        dir: &Path,
        _cfg: &PodSandboxConfig,
        _host_network: bool,
    ) -> Result<PodFiles, SandboxError> {
        let files = PodFiles {
            hosts: dir.join("hosts"),
            resolv_conf: dir.join("resolv.conf"),
            hostname: dir.join("hostname"),
            shm: Some(dir.join("shm")),
        };
        for f in [&files.hosts, &files.resolv_conf, &files.hostname] {
            std::fs::write(f, b"").map_err(|e| SandboxError::io("write", f, e))?;
        }
        if let Some(shm) = &files.shm {
            std::fs::create_dir_all(shm).map_err(|e| SandboxError::io("create", shm, e))?;
            self.lock().mounted.insert(shm.clone());
        }
        Ok(files)
    }

    fn unmount_files(&self, files: &PodFiles) -> Result<(), SandboxError> {
        if let Some(shm) = &files.shm {
            self.lock().mounted.remove(shm);
            let _ = std::fs::remove_dir(shm);
        }
        Ok(())
    }

    fn add<'a>(
        &'a self,
        _cni: &'a Cni,
        _net: &'a NetworkConfigList,
        att: &'a Attachment,
    ) -> BoxFuture<'a, Result<CniResult, CniError>> {
        Box::pin(async move {
            let id = att.container_id.clone();
            self.record(format!("cni add {id}"));
            if self.failing(Op::CniAdd) {
                return Err(CniError::Plugin {
                    plugin: "bridge".into(),
                    command: "ADD",
                    code: 999,
                    msg: "fake: ADD failed".into(),
                    details: String::new(),
                });
            }
            let raw = serde_json::json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": att.ifname, "sandbox": att.netns}],
                "ips": [{"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 0}],
            });
            let res = CniResult::parse(raw).map_err(|reason| CniError::InvalidArgument {
                what: "fake result",
                reason,
            })?;
            self.lock().attached.insert(id);
            Ok(res)
        })
    }

    fn del<'a>(
        &'a self,
        _cni: &'a Cni,
        pod_id: &'a str,
        _netns: Option<&'a Path>,
    ) -> BoxFuture<'a, Result<(), CniError>> {
        Box::pin(async move {
            self.record(format!("cni del {pod_id}"));
            self.lock().attached.remove(pod_id);
            Ok(())
        })
    }

    fn del_interface<'a>(
        &'a self,
        _cni: &'a Cni,
        pod_id: &'a str,
        ifname: &'a str,
        _netns: Option<&'a Path>,
    ) -> BoxFuture<'a, Result<(), CniError>> {
        Box::pin(async move {
            self.record(format!("cni del {pod_id} {ifname}"));
            Ok(())
        })
    }

    fn check<'a>(
        &'a self,
        _cni: &'a Cni,
        pod_id: &'a str,
        _netns: &'a Path,
    ) -> BoxFuture<'a, Result<(), CniError>> {
        Box::pin(async move {
            self.record(format!("cni check {pod_id}"));
            match self.lock().attached.contains(pod_id) {
                true => Ok(()),
                false => Err(CniError::NotAttached {
                    container_id: pod_id.to_string(),
                }),
            }
        })
    }

    fn attached_ids<'a>(&'a self, _cni: &'a Cni) -> BoxFuture<'a, Result<Vec<String>, CniError>> {
        Box::pin(async move { Ok(self.attached()) })
    }
}

impl Mounts for FakeHost {
    fn overlay(
        &self,
        _lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
        _userns: Option<&PodUserNamespace>,
    ) -> Result<(), Error> {
        self.record(format!("mount {}", target.display()));
        if self.failing(Op::Mount) {
            return Err(Error::internal(format!(
                "fake: failed to mount overlay on {}",
                target.display()
            )));
        }
        for d in [upper, work, target] {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::internal(format!("fake: create {}: {e}", d.display())))?;
        }
        self.lock().mounted.insert(target.to_path_buf());
        Ok(())
    }

    fn read_only(&self, _lowers: &[PathBuf], target: &Path) -> Result<(), Error> {
        self.record(format!("mount {}", target.display()));
        if self.failing(Op::Mount) {
            return Err(Error::internal("fake: failed to mount an image volume"));
        }
        std::fs::create_dir_all(target)
            .map_err(|e| Error::internal(format!("fake: create {}: {e}", target.display())))?;
        self.lock().mounted.insert(target.to_path_buf());
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), Error> {
        if self.lock().mounted.remove(target) {
            self.record(format!("unmount {}", target.display()));
        }
        Ok(())
    }

    fn is_mounted(&self, path: &Path) -> bool {
        self.lock().mounted.contains(path)
    }
}

impl Probe for FakeHost {
    fn facts(&self) -> HostFacts {
        HostFacts {
            capabilities: Default::default(),
            min_oom_score_adj: 0,
            swap_accounting: false,
            apparmor: false,
            apparmor_default_profile: None,
        }
    }

    fn features<'a>(
        &'a self,
        runtimes: &'a BTreeMap<String, OciRuntime>,
    ) -> BoxFuture<'a, BTreeMap<String, HandlerFeatures>> {
        Box::pin(async move {
            runtimes
                .keys()
                .map(|k| (k.clone(), HandlerFeatures::default()))
                .collect()
        })
    }
}
