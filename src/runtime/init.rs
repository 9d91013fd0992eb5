//! Docker's `--init`: a small init (tini, as Docker's `docker-init` is) runs
//! as the container's PID 1, forwards signals to the command and reaps
//! orphans. The host's static binary is bound read-only at
//! `/sbin/docker-init` and put before the command.

use std::path::Path;

use oci_spec::runtime::{Mount, MountBuilder};

use super::SpecError;

/// Container annotation: the host path of the init binary to run as PID 1.
pub const INIT_ANNOTATION: &str = "io.berth.init";
/// Where the init appears in the container, as in Docker.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// The command run under the init: `docker-init -- CMD…`.
pub fn wrap(args: Vec<String>) -> Vec<String> {
    let mut out = vec![INIT_PATH.to_string(), "--".to_string()];
    out.extend(args);
    out
}

/// The read-only bind of the init binary.
pub fn mount(host_binary: &str) -> Result<Mount, SpecError> {
    if !Path::new(host_binary).is_absolute() {
        return Err(SpecError::InvalidMount {
            container_path: INIT_PATH.into(),
            reason: format!("init binary {host_binary:?} is not an absolute path"),
        });
    }
    Ok(MountBuilder::default()
        .destination(INIT_PATH)
        .typ("bind")
        .source(host_binary)
        .options(vec![
            "bind".into(),
            "ro".into(),
            "nosuid".into(),
            "nodev".into(),
        ])
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_runs_under_the_init() {
        assert_eq!(
            wrap(vec!["sleep".into(), "1".into()]),
            ["/sbin/docker-init", "--", "sleep", "1"]
        );
        let m = mount("/usr/bin/tini-static").unwrap();
        assert_eq!(m.destination(), Path::new(INIT_PATH));
        assert!(m.options().as_ref().unwrap().contains(&"ro".to_string()));
        assert!(mount("tini").is_err());
    }
}
