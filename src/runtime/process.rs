//! The container process: command line, environment, working directory and
//! the user request, merged from the image config and the CRI config the way
//! Kubernetes defines it.

use k8s_cri::v1::{
    ContainerConfig, KeyValue, LinuxContainerSecurityContext, SupplementalGroupsPolicy,
};
use oci_spec::image::Config as ImageConfig;

use super::user::UserRequest;
use super::SpecError;

/// `PATH` for images that do not set one (Docker's and containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process argv: CRI `command` replaces the image Entrypoint *and* drops
/// its Cmd; CRI `args` replace the image Cmd. Docker calls these
/// entrypoint/cmd, Kubernetes command/args.
pub fn process_args(
    container: &ContainerConfig,
    image: Option<&ImageConfig>,
) -> Result<Vec<String>, SpecError> {
    let mut command = container.command.clone();
    let mut args = container.args.clone();
    if command.is_empty() {
        if args.is_empty() {
            args = image.and_then(|c| c.cmd().clone()).unwrap_or_default();
        }
        let entrypoint = image
            .and_then(|c| c.entrypoint().clone())
            .unwrap_or_default();
        // `ENTRYPOINT [""]` is how a Dockerfile clears an inherited entrypoint.
        if !(entrypoint.len() == 1 && entrypoint[0].is_empty()) {
            command = entrypoint;
        }
    }
    command.extend(args);
    if command.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(command)
}

/// Sets `KEY=value` in `env`, replacing an existing `KEY=` in place.
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// The process environment, later layers overriding earlier ones by key:
/// runtime defaults (`PATH`, `HOSTNAME`, `TERM` for a tty), then the image's
/// `Env`, then the CRI `envs`.
pub fn process_env(
    image: Option<&ImageConfig>,
    cri_envs: &[KeyValue],
    hostname: &str,
    tty: bool,
) -> Vec<String> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        env.push("TERM=xterm".to_string());
    }
    for entry in image.and_then(|c| c.env().as_ref()).into_iter().flatten() {
        // Entries without '=' carry no value; an image has no business unsetting ours.
        if entry.contains('=') {
            set_env(&mut env, entry.clone());
        }
    }
    for kv in cri_envs {
        set_env(&mut env, format!("{}={}", kv.key, kv.value));
    }
    env
}

/// The working directory: CRI `working_dir`, else the image's, else `/`.
pub fn working_dir(
    container: &ContainerConfig,
    image: Option<&ImageConfig>,
) -> Result<String, SpecError> {
    if !container.working_dir.is_empty() {
        if !container.working_dir.starts_with('/') {
            return Err(SpecError::InvalidWorkingDir {
                dir: container.working_dir.clone(),
            });
        }
        return Ok(container.working_dir.clone());
    }
    match image.and_then(|c| c.working_dir().as_deref()) {
        Some(dir) if !dir.is_empty() && dir.starts_with('/') => Ok(dir.to_string()),
        // Docker resolves a relative image WORKDIR against `/`.
        Some(dir) if !dir.is_empty() => Ok(format!("/{dir}")),
        _ => Ok("/".to_string()),
    }
}

/// What user to run as, before it is resolved against the image's files.
///
/// `run_as_username` beats `run_as_user`, which beats the image's `User`;
/// `run_as_group` replaces the group from any of them.
pub fn user_request(
    sc: Option<&LinuxContainerSecurityContext>,
    image: Option<&ImageConfig>,
) -> UserRequest {
    let user = match sc {
        Some(sc) if !sc.run_as_username.is_empty() => sc.run_as_username.clone(),
        Some(LinuxContainerSecurityContext {
            run_as_user: Some(uid),
            ..
        }) => uid.value.to_string(),
        _ => image.and_then(|c| c.user().clone()).unwrap_or_default(),
    };
    UserRequest {
        user,
        group: sc.and_then(|sc| sc.run_as_group.as_ref()).map(|g| g.value),
        supplemental_groups: sc
            .map(|sc| sc.supplemental_groups.clone())
            .unwrap_or_default(),
        merge_image_groups: sc
            .is_none_or(|sc| sc.supplemental_groups_policy() != SupplementalGroupsPolicy::Strict),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::Int64Value;
    use oci_spec::image::ConfigBuilder;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        ConfigBuilder::default()
            .entrypoint(strings(entrypoint))
            .cmd(strings(cmd))
            .build()
            .unwrap()
    }

    fn container(command: &[&str], args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            command: strings(command),
            args: strings(args),
            ..Default::default()
        }
    }

    #[test]
    fn args_follow_kubernetes_rules() {
        let img = image(&["/entry", "-e"], &["cmd", "-c"]);
        let img = Some(&img);
        assert_eq!(
            process_args(&container(&[], &[]), img).unwrap(),
            strings(&["/entry", "-e", "cmd", "-c"])
        );
        // args replace Cmd, keep Entrypoint.
        assert_eq!(
            process_args(&container(&[], &["x"]), img).unwrap(),
            strings(&["/entry", "-e", "x"])
        );
        // command replaces Entrypoint and drops Cmd.
        assert_eq!(
            process_args(&container(&["/bin/sh"], &[]), img).unwrap(),
            strings(&["/bin/sh"])
        );
        assert_eq!(
            process_args(&container(&["/bin/sh"], &["-c", "true"]), img).unwrap(),
            strings(&["/bin/sh", "-c", "true"])
        );
    }

    #[test]
    fn empty_entrypoint_string_is_cleared() {
        let img = image(&[""], &["sh"]);
        assert_eq!(
            process_args(&container(&[], &[]), Some(&img)).unwrap(),
            strings(&["sh"])
        );
    }

    #[test]
    fn no_command_anywhere_is_an_error() {
        let err = process_args(&container(&[], &[]), None).unwrap_err();
        assert!(matches!(err, SpecError::NoCommand));
        let img = image(&[], &[]);
        assert!(process_args(&container(&[], &[]), Some(&img)).is_err());
    }

    #[test]
    fn env_layers_override_by_key() {
        let img = ConfigBuilder::default()
            .env(strings(&["PATH=/image/bin", "FOO=image", "BARE", "EMPTY="]))
            .build()
            .unwrap();
        let cri = vec![
            KeyValue {
                key: "FOO".into(),
                value: "cri".into(),
            },
            KeyValue {
                key: "NEW".into(),
                value: "a=b".into(),
            },
        ];
        let env = process_env(Some(&img), &cri, "pod-a", true);
        assert_eq!(
            env,
            strings(&[
                "PATH=/image/bin",
                "HOSTNAME=pod-a",
                "TERM=xterm",
                "FOO=cri",
                "EMPTY=",
                "NEW=a=b"
            ])
        );
        let env = process_env(None, &[], "h", false);
        assert_eq!(
            env,
            vec![format!("PATH={DEFAULT_PATH}"), "HOSTNAME=h".to_string()]
        );
    }

    #[test]
    fn working_dir_precedence() {
        let img = ConfigBuilder::default()
            .working_dir("/srv")
            .build()
            .unwrap();
        let mut c = container(&[], &[]);
        assert_eq!(working_dir(&c, Some(&img)).unwrap(), "/srv");
        assert_eq!(working_dir(&c, None).unwrap(), "/");
        let rel = ConfigBuilder::default().working_dir("app").build().unwrap();
        assert_eq!(working_dir(&c, Some(&rel)).unwrap(), "/app");
        c.working_dir = "/work".into();
        assert_eq!(working_dir(&c, Some(&img)).unwrap(), "/work");
        c.working_dir = "work".into();
        assert!(matches!(
            working_dir(&c, Some(&img)).unwrap_err(),
            SpecError::InvalidWorkingDir { .. }
        ));
    }

    #[test]
    fn user_request_precedence() {
        let img = ConfigBuilder::default().user("app:staff").build().unwrap();
        assert_eq!(user_request(None, Some(&img)).user, "app:staff");
        assert!(user_request(None, Some(&img)).merge_image_groups);

        let mut sc = LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 1000 }),
            run_as_group: Some(Int64Value { value: 2000 }),
            supplemental_groups: vec![3000],
            ..Default::default()
        };
        let req = user_request(Some(&sc), Some(&img));
        assert_eq!(req.user, "1000");
        assert_eq!(req.group, Some(2000));
        assert_eq!(req.supplemental_groups, vec![3000]);

        sc.run_as_username = "bob".into();
        sc.supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
        let req = user_request(Some(&sc), Some(&img));
        assert_eq!(req.user, "bob");
        assert!(!req.merge_image_groups);

        let none = LinuxContainerSecurityContext::default();
        assert_eq!(user_request(Some(&none), Some(&img)).user, "app:staff");
    }
}
