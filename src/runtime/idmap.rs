//! Idmapped mounts for user-namespaced pods: a user namespace with the
//! pod's mappings as a file descriptor, and detached idmapped clones of
//! directories (the rootfs layers) made with it.

#![allow(unsafe_code)]

use std::path::PathBuf;

use super::userns::PodUserNamespace;

/// A user namespace with the pod's mappings, as a file descriptor (what
/// `mount_setattr(MOUNT_ATTR_IDMAP)` takes): a child forked into a new user
/// namespace is given the mappings, its namespace opened, then it exits.
pub fn namespace_fd(u: &PodUserNamespace) -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::sched::{unshare, CloneFlags};
    use nix::unistd::{fork, pipe, read, write, ForkResult};
    let (ready_r, ready_w) = pipe()?;
    let (hold_r, hold_w) = pipe()?;
    // SAFETY: the child only makes async-signal-safe calls (unshare, write,
    // read, _exit) before it exits.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(ready_r);
            drop(hold_w);
            let ok = unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = write(&ready_w, if ok { b"1" } else { b"0" });
            let mut b = [0u8; 1];
            // Held until the parent has opened the namespace (EOF).
            let _ = read(std::os::fd::AsRawFd::as_raw_fd(&hold_r), &mut b);
            // SAFETY: _exit is async-signal-safe; nothing is unwound.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(hold_r);
            let done = |r: std::io::Result<std::os::fd::OwnedFd>| {
                drop(hold_w);
                // The daemon's reaper may have collected it already.
                let _ = nix::sys::wait::waitpid(child, None);
                r
            };
            let mut b = [0u8; 1];
            let n = read(std::os::fd::AsRawFd::as_raw_fd(&ready_r), &mut b)?;
            if n != 1 || b[0] != b'1' {
                return done(Err(std::io::Error::other(
                    "could not make a user namespace (unshare CLONE_NEWUSER failed)",
                )));
            }
            let map = |m: &oci_spec::runtime::LinuxIdMapping| {
                format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())
            };
            let r = std::fs::write(format!("/proc/{child}/uid_map"), map(&u.uid))
                .and_then(|()| std::fs::write(format!("/proc/{child}/gid_map"), map(&u.gid)))
                .and_then(|()| {
                    std::fs::File::open(format!("/proc/{child}/ns/user")).map(Into::into)
                });
            done(r)
        }
    }
}

/// Detached idmapped clones of `dirs` (`open_tree` + `mount_setattr`).
pub fn idmapped_layers(
    dirs: &[PathBuf],
    u: &PodUserNamespace,
) -> std::io::Result<Vec<std::os::fd::OwnedFd>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    let ns = namespace_fd(u)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: ns.as_raw_fd() as u64,
    };
    let mut fds = Vec::with_capacity(dirs.len());
    for d in dirs {
        let path = std::ffi::CString::new(d.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("a layer path holds a NUL byte"))?;
        // SAFETY: plain syscalls on a valid C string and a struct of the
        // kernel's layout; the returned fd is owned at once.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                path.as_ptr(),
                OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by open_tree and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: as above.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                fd.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        fds.push(fd);
    }
    Ok(fds)
}
