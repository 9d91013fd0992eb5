//! berth's RuntimeDefault seccomp profile.
//!
//! The policy is the one Docker and containerd made the de facto standard:
//! deny with EPERM by default, allow what ordinary programs use, and allow the
//! syscalls that only make sense with a capability when the container holds
//! that capability. The lists below are grouped by what the calls do so that
//! a reviewer can judge each group; names the running kernel or libseccomp do
//! not know (32-bit variants on 64-bit hosts, very new calls) are skipped by
//! the OCI runtime.
//!
//! Left out on purpose: `keyctl`/`add_key`/`request_key` (the keyring is not
//! namespaced), `io_uring_*` (a large, often-exploited attack surface),
//! `userfaultfd` (a kernel-exploit primitive), `kexec_*`, swap and module
//! control without the matching capability, obsolete calls (`uselib`,
//! `_sysctl`, `nfsservctl`, `vm86`).

use oci_spec::runtime::{
    Arch, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompOperator,
};
use oci_spec::OciSpecError;

use super::{ArchMapEntry, Filter, Profile, Rule};

const EPERM: u32 = libc::EPERM as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;

/// Namespace-creating `clone` flags: NEWNS | NEWCGROUP | NEWUTS | NEWIPC |
/// NEWUSER | NEWPID | NEWNET. Without CAP_SYS_ADMIN, `clone` must not set any.
pub(super) const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

#[rustfmt::skip]
const FILES: &[&str] = &[
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2",
    "fadvise64", "fadvise64_64", "fallocate", "fchdir", "fchmod", "fchmodat",
    "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync",
    "fgetxattr", "file_getattr", "file_setattr", "flistxattr", "flock", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync",
    "ftruncate", "ftruncate64", "futimesat", "getcwd", "getdents", "getdents64",
    "getxattr", "getxattrat", "ioctl", "lchown", "lchown32", "lgetxattr", "link",
    "linkat", "listxattr", "listxattrat", "llistxattr", "_llseek", "lremovexattr",
    "lseek", "lsetxattr", "lstat", "lstat64", "mkdir", "mkdirat", "mknod", "mknodat",
    "newfstatat", "open", "openat", "openat2", "pread64",
    "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
    "readlink", "readlinkat", "readv", "removexattr", "removexattrat", "rename",
    "renameat", "renameat2", "rmdir", "sendfile", "sendfile64", "setxattr",
    "setxattrat", "splice", "stat", "stat64", "statfs", "statfs64", "statx",
    "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate",
    "truncate64", "umask", "unlink", "unlinkat", "utime", "utimensat",
    "utimensat_time64", "utimes", "vmsplice", "write", "writev",
];

#[rustfmt::skip]
const PROCESSES: &[&str] = &[
    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork",
    "get_robust_list", "get_thread_area", "getcpu", "getpgid", "getpgrp", "getpid",
    "getppid", "getpriority", "getrlimit", "getrusage", "getsid", "gettid", "kill",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
    "pidfd_open", "pidfd_send_signal", "prctl", "prlimit64", "process_mrelease",
    // Tracing one's own children; tracing others still needs CAP_SYS_PTRACE
    // in the kernel's own check.
    "ptrace", "restart_syscall", "rseq", "seccomp", "set_robust_list",
    "set_thread_area", "set_tid_address", "setpgid", "setpriority", "setrlimit",
    "setsid", "sysinfo", "tgkill", "times", "tkill", "ugetrlimit", "uname",
    "uretprobe", "vfork", "wait4", "waitid", "waitpid",
];

#[rustfmt::skip]
const IDENTITY: &[&str] = &[
    "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
    "getgroups32", "getresgid", "getresgid32", "getresuid", "getresuid32", "getuid",
    "getuid32", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid",
    "setgid32", "setgroups", "setgroups32", "setregid", "setregid32", "setresgid",
    "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setuid",
    "setuid32",
];

#[rustfmt::skip]
const MEMORY: &[&str] = &[
    "brk", "cachestat", "madvise", "map_shadow_stack", "membarrier", "memfd_create",
    "memfd_secret", "mincore", "mlock", "mlock2", "mlockall", "mmap", "mmap2",
    "mprotect", "mremap", "mseal", "msync", "munlock", "munlockall", "munmap",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages",
];

#[rustfmt::skip]
const SIGNALS_AND_TIME: &[&str] = &[
    "adjtimex", "alarm", "clock_adjtime", "clock_adjtime64", "clock_getres",
    "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "getitimer", "gettimeofday", "nanosleep", "pause",
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
    "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "setitimer", "sigaction", "sigaltstack", "signal", "signalfd",
    "signalfd4", "sigpending", "sigprocmask", "sigreturn", "sigsuspend", "time",
    "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
];

#[rustfmt::skip]
const WAITING: &[&str] = &[
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
    "fanotify_mark", "futex", "futex_requeue", "futex_time64", "futex_wait",
    "futex_waitv", "futex_wake", "inotify_add_watch", "inotify_init", "inotify_init1",
    "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64", "io_setup", "io_submit", "ioprio_get", "ioprio_set",
    "_newselect", "poll", "ppoll", "ppoll_time64", "pselect6", "pselect6_time64",
    "select",
];

#[rustfmt::skip]
const NETWORK: &[&str] = &[
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
    "listen", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send",
    "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socket", "socketcall",
    "socketpair",
];

#[rustfmt::skip]
const IPC: &[&str] = &[
    "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink",
    "msgctl", "msgget", "msgrcv", "msgsnd", "pipe", "pipe2", "semctl", "semget", "semop",
    "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
];

#[rustfmt::skip]
const SCHEDULING: &[&str] = &[
    "getrandom", "sched_get_priority_max", "sched_get_priority_min",
    "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity",
    "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
];

/// Calls that are only useful with a capability, keyed by that capability.
#[rustfmt::skip]
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen",
            "fspick", "lookup_dcookie", "mount", "mount_setattr", "move_mount",
            "name_to_handle_at", "open_tree", "open_tree_attr", "perf_event_open",
            "pivot_root", "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns",
            "syslog", "umount", "umount2", "unshare",
        ],
    ),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    ("CAP_SYS_MODULE", &["delete_module", "finit_module", "init_module"]),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev"],
    ),
    ("CAP_SYS_RAWIO", &["ioperm", "iopl"]),
    ("CAP_SYS_TIME", &["clock_settime", "clock_settime64", "settimeofday", "stime"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &["get_mempolicy", "mbind", "migrate_pages", "move_pages", "set_mempolicy",
          "set_mempolicy_home_node"],
    ),
];

/// Calls that exist only on some architectures, keyed by Go architecture names.
#[rustfmt::skip]
const BY_ARCH: &[(&[&str], &[&str])] = &[
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "386"], &["modify_ldt"]),
    (
        &["arm", "arm64"],
        &["arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls",
          "sync_file_range2"],
    ),
    (&["s390", "s390x"], &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"]),
];

/// `personality` values ordinary programs use: PER_LINUX, PER_LINUX32,
/// UNAME26, UNAME26|PER_LINUX32 and the 0xffffffff query.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn rule(names: &[&str]) -> Rule {
    Rule {
        names: strings(names),
        name: None,
        action: LinuxSeccompAction::ScmpActAllow,
        errno_ret: None,
        args: Vec::new(),
        includes: Filter::default(),
        excludes: Filter::default(),
    }
}

fn arg(
    index: usize,
    value: u64,
    op: LinuxSeccompOperator,
) -> Result<LinuxSeccompArg, OciSpecError> {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op)
        .build()
}

fn sys_admin_only() -> Filter {
    Filter {
        caps: vec!["CAP_SYS_ADMIN".to_string()],
        arches: Vec::new(),
    }
}

/// The profile before it is compiled for a container.
pub(super) fn profile() -> Result<Profile, OciSpecError> {
    let mut syscalls = vec![rule(
        &[
            FILES,
            PROCESSES,
            IDENTITY,
            MEMORY,
            SIGNALS_AND_TIME,
            WAITING,
            NETWORK,
            IPC,
            SCHEDULING,
        ]
        .concat(),
    )];

    for &value in PERSONALITIES {
        let mut r = rule(&["personality"]);
        r.args = vec![arg(0, value, LinuxSeccompOperator::ScmpCmpEq)?];
        syscalls.push(r);
    }

    // Threads and plain fork are fine; new namespaces need CAP_SYS_ADMIN. The
    // flags are the first argument everywhere but s390, where they are the second.
    let mut clone = rule(&["clone"]);
    clone.args = vec![arg(
        0,
        CLONE_NAMESPACE_FLAGS,
        LinuxSeccompOperator::ScmpCmpMaskedEq,
    )?];
    clone.excludes = Filter {
        caps: vec!["CAP_SYS_ADMIN".to_string()],
        arches: strings(&["s390", "s390x"]),
    };
    syscalls.push(clone);
    let mut clone_s390 = rule(&["clone"]);
    clone_s390.args = vec![arg(
        1,
        CLONE_NAMESPACE_FLAGS,
        LinuxSeccompOperator::ScmpCmpMaskedEq,
    )?];
    clone_s390.includes.arches = strings(&["s390", "s390x"]);
    clone_s390.excludes = sys_admin_only();
    syscalls.push(clone_s390);

    // clone3 passes its flags in memory, out of seccomp's sight. Answer ENOSYS
    // rather than EPERM so that libc falls back to clone, which we can check.
    let mut clone3 = rule(&["clone3"]);
    clone3.action = LinuxSeccompAction::ScmpActErrno;
    clone3.errno_ret = Some(ENOSYS);
    clone3.excludes = sys_admin_only();
    syscalls.push(clone3);

    for (cap, names) in BY_CAPABILITY {
        let mut r = rule(names);
        r.includes.caps = vec![cap.to_string()];
        syscalls.push(r);
    }
    for (arches, names) in BY_ARCH {
        let mut r = rule(names);
        r.includes.arches = strings(arches);
        syscalls.push(r);
    }

    Ok(Profile {
        default_action: LinuxSeccompAction::ScmpActErrno,
        default_errno_ret: Some(EPERM),
        architectures: Vec::new(),
        arch_map: [
            (
                Arch::ScmpArchX86_64,
                vec![Arch::ScmpArchX86, Arch::ScmpArchX32],
            ),
            (Arch::ScmpArchAarch64, vec![Arch::ScmpArchArm]),
            (Arch::ScmpArchS390x, vec![Arch::ScmpArchS390]),
            (Arch::ScmpArchRiscv64, Vec::new()),
            (Arch::ScmpArchPpc64le, Vec::new()),
        ]
        .into_iter()
        .map(|(architecture, sub_architectures)| ArchMapEntry {
            architecture,
            sub_architectures,
        })
        .collect(),
        flags: Vec::new(),
        listener_path: None,
        listener_metadata: None,
        syscalls,
    })
}
