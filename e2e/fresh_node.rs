//! A fresh node: `config/run.sh`'s host preparation on a host in the broken
//! state, then berthd with its embedded defaults (no config file, the default
//! paths and ports) running a CRI pod and a `docker run` on its built-in
//! network — the README's quick start, end to end.
//!
//! Everything happens in a scratch mount + network namespace
//! (`unshare --mount --net`): empty tmpfs over `/etc/cni/net.d`,
//! `/var/lib/berth`, `/run/berth` and `/var/lib/cni`, the hugetlb v1 mount
//! taken away; the built-in bridge and its iptables rules live in that
//! network namespace and vanish with it. The test reaches the daemon's
//! sockets through `/proc/<pid>/root`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::StatusRequest;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::support::daemon::BERTHD;
use crate::support::docker::{run, Run, DOCKER};
use crate::support::pods::{self, RuntimeClient};
use crate::support::{log_file_pair, read_text, short_tempdir, wait_until, ChildGuard};

/// Directories the scratch namespace covers with an empty tmpfs.
const SCRATCH_DIRS: &[&str] = &[
    "/etc/cni/net.d",
    "/var/lib/berth",
    "/run/berth",
    "/var/lib/cni",
];

/// Safety net for start-up and waits; not a timing assertion.
const LIMIT: Duration = Duration::from_secs(90);

/// One scratch node at a time: both use the same host mount points, which the
/// last one out removes again.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// berthd with its embedded defaults in a scratch mount + network namespace.
struct ScratchNode {
    child: Option<ChildGuard>,
    log: PathBuf,
    /// Directories that did not exist on the host and were made for the mounts.
    created: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

impl ScratchNode {
    /// Breaks the namespace's host state, runs the host preparation of
    /// `config/run.sh` (without apt) when `prepare`, then execs berthd with no
    /// config file.
    fn start(prepare: bool, extra_setup: &str) -> ScratchNode {
        let dir = short_tempdir("fresh");
        let mut created = Vec::new();
        for d in SCRATCH_DIRS {
            // Parents first, so each one made here is removed again.
            let mut missing: Vec<PathBuf> = Path::new(d)
                .ancestors()
                .take_while(|p| !p.exists())
                .map(Path::to_path_buf)
                .collect();
            missing.reverse();
            for m in missing {
                std::fs::create_dir(&m).expect("create mount point");
                created.push(m);
            }
        }
        let repo = env!("CARGO_MANIFEST_DIR");
        let prep = if prepare {
            format!("{repo}/config/prepare-host.sh --no-install\n")
        } else {
            String::new()
        };
        let script = format!(
            "set -e\n\
             ip link set lo up\n\
             for d in {dirs}; do mount -t tmpfs -o mode=0755 tmpfs \"$d\"; done\n\
             if grep -q ' /sys/fs/cgroup/hugetlb cgroup ' /proc/mounts; then umount /sys/fs/cgroup/hugetlb; fi\n\
             {extra_setup}\n\
             {prep}\
             exec {BERTHD}\n",
            dirs = SCRATCH_DIRS.join(" "),
        );
        let log = dir.path().join("berthd.log");
        let (out, err) = log_file_pair(&log);
        let child = Command::new("unshare")
            .args(["--mount", "--net", "--propagation", "private", "bash", "-c"])
            .arg(&script)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn unshare");
        ScratchNode {
            child: Some(ChildGuard::new(child)),
            log,
            created,
            dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").pid()
    }

    /// A path inside the scratch namespace, as the host reaches it.
    fn inside(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.pid()))
    }

    fn log(&self) -> String {
        read_text(&self.log)
    }

    /// Waits for the default CRI socket to answer, then returns a client.
    async fn runtime_client(&mut self) -> RuntimeClient {
        let socket = self.inside("/run/berth/berth.sock");
        let mut last = String::new();
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().and_then(ChildGuard::try_wait) {
                panic!("berthd exited ({status}); log:\n{}", self.log());
            }
            match connect(&socket).await {
                Ok(mut c) => {
                    if c.status(StatusRequest { verbose: false }).await.is_ok() {
                        return c;
                    }
                }
                Err(e) => last = e.to_string(),
            }
            assert!(
                start.elapsed() < LIMIT,
                "berthd's default socket never answered ({last}); log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A docker CLI command on the default Docker socket (stdin null).
    fn cli(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.inside("/run/berth/docker.sock").display()),
            )
            .env("DOCKER_CONFIG", self.dir.path().join("docker-cli"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .stdin(Stdio::null());
        c
    }

    /// The docker CLI to its end.
    fn docker(&self, args: &[&str]) -> Run {
        run(self.cli(args))
    }

    /// The docker CLI with `input` on stdin.
    fn docker_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        use std::io::Write;
        let mut c = self.cli(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn docker");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("write stdin");
        drop(stdin);
        let o = child.wait_with_output().expect("wait docker");
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs `sh -c script` inside the scratch mount namespace.
    fn sh_inside(&self, script: &str) -> std::process::Output {
        Command::new("nsenter")
            .args([
                "-t",
                &self.pid().to_string(),
                "-m",
                "-n",
                "sh",
                "-c",
                script,
            ])
            .output()
            .expect("run nsenter")
    }

    /// SIGTERM and wait for berthd to end; panics if it does not.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        child.signal(Signal::SIGTERM);
        let status = child.wait_timeout(LIMIT);
        assert!(
            status.is_some_and(|s| s.success()),
            "berthd did not stop cleanly ({status:?}); log:\n{}",
            self.log()
        );
        let log = self.log();
        assert!(!log.contains("panicked"), "berthd panicked; log:\n{log}");
    }
}

impl Drop for ScratchNode {
    /// On a failed test: ends the containers through crun inside the
    /// namespace and every process of that mount namespace (monitors), so the
    /// namespaces go away; then removes the mount points this test made.
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let pid = child.pid();
            let _ = Command::new("nsenter")
                .args(["-t", &pid.to_string(), "-m", "sh", "-c"])
                .arg(
                    "for r in /run/berth/runtime/*; do for id in $(ls \"$r\"); do \
                     crun --root \"$r\" kill --all \"$id\" KILL; \
                     crun --root \"$r\" delete --force \"$id\"; done; done",
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/mnt")) {
                for p in crate::support::host::all_pids() {
                    if p != pid as i32
                        && std::fs::read_link(format!("/proc/{p}/ns/mnt")).is_ok_and(|n| n == ns)
                    {
                        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                    }
                }
            }
            child.kill();
        }
        for d in self.created.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

async fn connect(socket: &Path) -> Result<RuntimeClient, tonic::transport::Error> {
    let path = socket.to_path_buf();
    let channel: Channel = Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    UnixStream::connect(path).await?,
                ))
            }
        }))
        .await?;
    Ok(RuntimeServiceClient::new(channel))
}

/// A busybox rootfs as a tar, made the way the README's quick start makes
/// it: the static busybox with a relative link per applet.
fn busybox_rootfs_tar(dir: &Path) -> Vec<u8> {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir rootfs/bin");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
                .expect("link applet");
        }
    }
    let out = Command::new("tar")
        .args(["-C"])
        .arg(&root)
        .args(["-c", "."])
        .output()
        .expect("tar rootfs");
    assert!(out.status.success(), "tar failed");
    out.stdout
}

/// The conditions of Status, as (type, status, message).
async fn conditions(c: &mut RuntimeClient) -> Vec<(String, bool, String)> {
    c.status(StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner()
        .status
        .map(|s| {
            s.conditions
                .into_iter()
                .map(|c| (c.r#type, c.status, c.message))
                .collect()
        })
        .unwrap_or_default()
}

fn ready(conds: &[(String, bool, String)], kind: &str) -> bool {
    conds.iter().any(|(t, s, _)| t == kind && *s)
}

#[tokio::test]
async fn run_sh_host_preparation_leaves_a_node_that_runs_pods_and_docker_containers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut node = ScratchNode::start(true, "");
    let mut rt = node.runtime_client().await;

    // The preparation mounted hugetlb as v1 again, in this namespace.
    let mounts_of_berthd = read_text(Path::new(&format!("/proc/{}/mounts", node.pid())));
    assert!(
        mounts_of_berthd
            .lines()
            .any(|l| l.contains(" /sys/fs/cgroup/hugetlb cgroup ")),
        "hugetlb is mounted as cgroup v1 in berthd's namespace:\n{mounts_of_berthd}"
    );
    let conds = conditions(&mut rt).await;
    assert!(ready(&conds, "RuntimeReady"), "{conds:?}");
    assert!(
        ready(&conds, "NetworkReady"),
        "the built-in network makes an empty conf dir ready: {conds:?}"
    );

    // The README's quick start: an image made from busybox, then docker run.
    let tar = busybox_rootfs_tar(node.dir.path());
    node.docker_stdin(&["import", "-", "busybox:latest"], &tar)
        .ok();
    let hi = node
        .docker(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo hi; ip -4 addr show eth0",
        ])
        .ok();
    let mut lines = hi.stdout.lines();
    assert_eq!(lines.next(), Some("hi"), "{hi:?}");
    assert!(
        hi.stdout.contains("inet 10.88."),
        "the container is on the built-in bridge network: {hi:?}"
    );

    // A CRI pod and container on the same node, same image.
    let logs = node.dir.path().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("mkdir logs");
    let pod_cfg = pods::pod_config("fresh", &logs);
    let pod = pods::run_pod(&mut rt, &pod_cfg).await;
    let status = pods::pod_status(&mut rt, &pod).await.expect("pod status");
    let ip = status
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    assert!(
        ip.starts_with("10.88."),
        "pod IP {ip:?} from the built-in network"
    );
    let cfg = pods::container_config("hello", "busybox", "echo hello from cri", "fresh-node");
    let ctr = pods::run(&mut rt, &pod, &cfg, &pod_cfg).await;
    let exited = pods::wait_exited(&mut rt, &ctr).await;
    assert_eq!(exited.exit_code, 0, "{exited:?}");
    let log = read_text(&logs.join("hello/0.log"));
    assert!(
        pods::stream_lines(&pods::parse_log(&log), "stdout") == ["hello from cri"],
        "{log}"
    );

    // The same container seen through both doors.
    let ps = node.docker(&["ps", "-a", "--format", "{{.ID}}"]).ok();
    assert!(
        ps.stdout.lines().any(|l| ctr.starts_with(l)),
        "docker ps -a lists the CRI container {ctr}: {ps:?}"
    );

    pods::remove(&mut rt, &ctr).await.expect("remove container");
    pods::stop_pod(&mut rt, &pod).await.expect("stop pod");
    pods::remove_pod(&mut rt, &pod).await.expect("remove pod");
    drop(rt);
    node.stop();
}

#[tokio::test]
async fn runtime_ready_follows_the_cgroup_layout_without_a_restart() {
    // A v2 hierarchy that claims hugetlb, as on a hybrid host where hugetlb
    // was never mounted as v1: a file bind-mounted over cgroup.controllers
    // inside the scratch namespace (the host's own file is untouched).
    let fake = "f=$(mktemp /tmp/berth-controllers.XXXXXX); echo hugetlb > \"$f\"; \
                mount --bind \"$f\" /sys/fs/cgroup/unified/cgroup.controllers; rm -f \"$f\"";
    if !Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        eprintln!("skipped: this host has no hybrid v2 mount at /sys/fs/cgroup/unified");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let mut node = ScratchNode::start(false, fake);
    let mut rt = node.runtime_client().await;
    let conds = conditions(&mut rt).await;
    let (_, ok, message) = conds
        .iter()
        .find(|(t, _, _)| t == "RuntimeReady")
        .cloned()
        .expect("RuntimeReady condition");
    assert!(
        !ok,
        "hugetlb on the v2 side makes the runtime not ready: {conds:?}"
    );
    assert!(
        message.contains("hugetlb") && message.contains("mount -t cgroup -o hugetlb"),
        "the message names the controller and the fix: {message}"
    );

    // The fix, while berthd runs.
    let out = node.sh_inside("umount /sys/fs/cgroup/unified/cgroup.controllers");
    assert!(out.status.success(), "{out:?}");
    wait_until("RuntimeReady to turn true", LIMIT, || {
        let mut rt = rt.clone();
        async move { ready(&conditions(&mut rt).await, "RuntimeReady").then_some(()) }
    })
    .await;
    drop(rt);
    node.stop();
    assert!(
        node.log().contains("the cgroup layout is usable now"),
        "the change is logged: {}",
        node.log()
    );
}
