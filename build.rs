//! Compiles berth's own protobuf (`proto/`: the monitor <-> daemon protocol)
//! into Rust with prost-build, at build time; the generated module is
//! included by `src/monitor/proto.rs`.

use std::path::{Path, PathBuf};

const PROTOS: &[&str] = &["proto/berth/monitor/v1/monitor.proto"];

fn main() {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let Some(protoc) = find_protoc() else {
        let where_ = match std::env::var_os("PROTOC") {
            Some(p) => format!("PROTOC={} is not a file", Path::new(&p).display()),
            None => "it was not found on PATH".into(),
        };
        eprintln!(
            "error: protoc (the protobuf compiler) is needed to build berth's proto/ files \
             and {where_}: install Debian's `protobuf-compiler` \
             (apt-get install protobuf-compiler) or set PROTOC to its path"
        );
        std::process::exit(1);
    };
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    if let Err(e) = config.compile_protos(PROTOS, &["proto"]) {
        eprintln!("error: failed to compile {PROTOS:?}: {e}");
        std::process::exit(1);
    }
}

/// `$PROTOC` if set, else `protoc` on `$PATH`.
fn find_protoc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROTOC") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("protoc"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
