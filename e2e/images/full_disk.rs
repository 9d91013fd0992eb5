//! A full disk: berthd's root on a size-capped tmpfs. A pull that does not
//! fit fails with a clear error and leaves nothing of itself (no listed
//! image, its space given back); a container that fills its writable layer
//! gets ENOSPC inside while the daemon goes on; afterwards pulls and
//! containers work again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_cri::v1::ContainerState;

use super::Env;
use crate::support::catalog;
use crate::support::cri;
use crate::support::pods;

/// Root capacity: busybox (~1 MB blob, ~2 MB unpacked) fits many times,
/// the ~50 MB image (blobs plus unpacked layers) does not.
const ROOT_MIB: u64 = 40;

/// A tmpfs mounted over a directory (the root of the daemon living in
/// `.1`), lazily unmounted on drop — after, for a failed test, ending what
/// the daemon left running there.
struct Tmpfs(PathBuf, PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mib: u64, daemon_dir: &Path) -> Tmpfs {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0711")])
            .arg("tmpfs")
            .arg(at)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount a tmpfs at {}", at.display());
        Tmpfs(at.to_path_buf(), daemon_dir.to_path_buf())
    }

    /// Bytes used on the filesystem.
    fn used(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.0).expect("statvfs");
        (st.blocks() - st.blocks_free()) * st.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        crate::support::host::scrub(&self.1);
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Copies `from`'s entries into `to` (`cp -a from/. to`).
fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .expect("run cp");
    assert!(st.success(), "copy {} to {}", from.display(), to.display());
}

/// The biggest entries under `dir`, for a failure message.
fn du(dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("du -ak {} | sort -n | tail -12", dir.display()))
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn full_disk_fails_pulls_and_writes_cleanly_and_recovers() {
    let mut e = Env::new().await;
    let busybox = catalog::busybox().build();
    let small = busybox.push_tag(&e.reg, "test/busybox", "v1").await;
    let again = busybox.push_tag(&e.reg, "test/busybox-again", "v1").await;
    let big_img = catalog::big_image(0).build();
    let big = big_img.push_tag(&e.reg, "test/big", "v1").await;

    // Move the daemon's root onto a capped tmpfs (what it wrote at start-up
    // goes along).
    e.d.stop();
    let root = e.d.root();
    let saved = root.with_extension("before-tmpfs");
    std::fs::rename(&root, &saved).expect("move the root aside");
    std::fs::create_dir(&root).expect("new root dir");
    let fs = Tmpfs::mount(&root, ROOT_MIB, e.d.dir());
    copy_tree(&saved, &root);
    e.d.restart().await;
    let mut c = e.d.image_client().await;

    cri::pull_ok(&mut c, &small).await;
    let used_before = fs.used();

    // The big pull runs out of space.
    let err = cri::pull(&mut c, &big)
        .await
        .expect_err("a 50 MB pull cannot fit in a 40 MiB root");
    let msg = err.message().to_lowercase();
    assert!(
        msg.contains("no space left on device"),
        "the error says why: {:?} {}",
        err.code(),
        err.message()
    );
    assert_ne!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        cri::status(&mut c, &big).await.is_none(),
        "a pull that failed is not an image"
    );
    let listed: Vec<_> = cri::list(&mut c).await;
    assert_eq!(listed.len(), 1, "only busybox is listed: {listed:?}");
    // What the failed pull wrote is given back (a little slack for the
    // daemon's database pages).
    let used_after = fs.used();
    assert!(
        used_after <= used_before + (2 << 20),
        "the failed pull left {} KiB behind:\n{}",
        (used_after.saturating_sub(used_before)) >> 10,
        du(&root)
    );

    // The next pull works.
    cri::pull_ok(&mut c, &again).await;

    // A container that fills its writable layer gets ENOSPC; the daemon
    // and the container's record stay sound.
    let logs = crate::support::short_tempdir("fdlogs");
    let mut rt = e.d.runtime_client().await;
    let pod_cfg = pods::pod_config(&pods::unique("fulldisk"), logs.path());
    let pod = pods::run_pod(&mut rt, &pod_cfg).await;
    let fill = pods::container_config(
        "fill",
        &small,
        "dd if=/dev/zero of=/fill bs=1M count=200; echo dd=$?",
        "fulldisk",
    );
    let id = pods::run(&mut rt, &pod, &fill, &pod_cfg).await;
    let st = pods::wait_exited(&mut rt, &id).await;
    assert_eq!(st.state, ContainerState::ContainerExited as i32);
    let log = std::fs::read_to_string(logs.path().join("fill/0.log")).expect("container log");
    assert!(
        log.contains("No space left on device") && log.contains("dd=1"),
        "dd saw ENOSPC: {log}"
    );
    pods::remove(&mut rt, &id).await.expect("remove the filler");
    // Its layer's space comes back (the removal's runtime part finishes in
    // the background) and a new container runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while fs.used() >= used_before + (8 << 20) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        fs.used() < used_before + (8 << 20),
        "the removed container's layer was freed: {} KiB used, {} KiB before\n{}",
        fs.used() >> 10,
        used_before >> 10,
        du(&root)
    );
    let ok = pods::container_config("ok", &small, "echo fine", "fulldisk");
    let id = pods::run(&mut rt, &pod, &ok, &pod_cfg).await;
    let st = pods::wait_exited(&mut rt, &id).await;
    assert_eq!(st.exit_code, 0, "{st:?}");
    let log = std::fs::read_to_string(logs.path().join("ok/0.log")).expect("container log");
    assert!(log.contains("fine"), "{log}");
    pods::remove(&mut rt, &id).await.expect("remove");
    pods::stop_pod(&mut rt, &pod).await.expect("stop pod");
    pods::remove_pod(&mut rt, &pod).await.expect("remove pod");

    // A restart on the (nearly) full root comes back with both images.
    e.d.restart().await;
    let mut c = e.d.image_client().await;
    assert!(cri::status(&mut c, &small).await.is_some());
    assert!(cri::status(&mut c, &again).await.is_some());
    assert!(cri::status(&mut c, &big).await.is_none());
    tokio::time::sleep(Duration::from_millis(100)).await;
    e.d.stop();
    drop(fs);
    let _ = std::fs::remove_dir_all(&saved);
}
