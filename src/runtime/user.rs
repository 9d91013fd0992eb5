//! Resolving the container's user and groups against the image's own
//! `/etc/passwd` and `/etc/group`, the way Docker and containerd do.
//!
//! A user is written `user[:group]`, each part a name or a number. A number
//! need not exist in the files (uid 1234 with no passwd entry runs with gid 0),
//! a name must. The primary group comes from the explicit group, else the
//! passwd entry, else 0. Under the Kubernetes "Merge" supplemental-groups
//! policy the groups that list the user's name as a member are added too.

use std::path::{Path, PathBuf};

use super::SpecError;

/// The identity the container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; the primary gid always comes first.
    pub additional_gids: Vec<u32>,
    /// The passwd name of `uid`, when the image has one.
    pub username: Option<String>,
    /// The passwd home directory of `uid`, when the image has one.
    pub home: Option<String>,
}

/// What to resolve, already reduced from the CRI and image config.
#[derive(Debug, Default, Clone)]
pub struct UserRequest {
    /// `user[:group]`; empty means root.
    pub user: String,
    /// `run_as_group`: replaces whatever group `user` implies.
    pub group: Option<i64>,
    /// Extra groups from the pod/container security context.
    pub supplemental_groups: Vec<i64>,
    /// Add the groups `/etc/group` lists the user in (Kubernetes' "Merge" policy).
    pub merge_image_groups: bool,
}

/// One `/etc/passwd` line.
#[derive(Debug, Clone)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// One `/etc/group` line.
#[derive(Debug, Clone)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves `request` against `rootfs/etc/passwd` and `rootfs/etc/group`.
/// Missing files count as empty.
/// An image's or a Docker request's `uid[:gid]` / `name[:gid]` as the CRI
/// user fields of `sc`; `what` names the field in the error ("User",
/// "USER"): group names are not resolved here.
pub fn apply_image_user(
    user: &str,
    what: &str,
    sc: &mut k8s_cri::v1::LinuxContainerSecurityContext,
) -> Result<(), String> {
    if user.is_empty() {
        return Ok(());
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    match u.parse::<i64>() {
        Ok(uid) => sc.run_as_user = Some(k8s_cri::v1::Int64Value { value: uid }),
        Err(_) => sc.run_as_username = u.to_string(),
    }
    if let Some(g) = g {
        let gid = g.parse::<i64>().map_err(|_| {
            format!("unable to find group {g}: group names in {what} are not supported, use a numeric gid")
        })?;
        sc.run_as_group = Some(k8s_cri::v1::Int64Value { value: gid });
    }
    Ok(())
}

pub fn resolve_user(rootfs: &Path, request: &UserRequest) -> Result<ResolvedUser, SpecError> {
    let passwd = parse_passwd(&read_database(rootfs, "etc/passwd")?);
    let groups = parse_group(&read_database(rootfs, "etc/group")?);

    let (user_part, group_part) = match request.user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (request.user.as_str(), None),
    };

    let entry =
        if user_part.is_empty() {
            passwd.iter().find(|e| e.uid == 0)
        } else if let Ok(uid) = user_part.parse::<i64>() {
            let uid = to_id(uid, &request.user, "uid")?;
            passwd.iter().find(|e| e.uid == uid)
        } else {
            Some(passwd.iter().find(|e| e.name == user_part).ok_or_else(|| {
                SpecError::UnknownUser {
                    name: user_part.to_string(),
                }
            })?)
        };
    let uid = match (entry, user_part.parse::<i64>()) {
        (Some(e), _) => e.uid,
        (None, Ok(uid)) => to_id(uid, &request.user, "uid")?,
        (None, Err(_)) => 0,
    };
    let mut gid = entry.map(|e| e.gid).unwrap_or(0);

    match group_part {
        Some("") => {
            return Err(SpecError::InvalidUser {
                user: request.user.to_string(),
                reason: "empty group after ':'".to_string(),
            })
        }
        Some(group) => {
            gid = match group.parse::<i64>() {
                Ok(n) => to_id(n, &request.user, "gid")?,
                Err(_) => groups
                    .iter()
                    .find(|g| g.name == group)
                    .map(|g| g.gid)
                    .ok_or_else(|| SpecError::UnknownGroup {
                        name: group.to_string(),
                    })?,
            }
        }
        None => {}
    }
    if let Some(group) = request.group {
        gid = to_id(group, &group.to_string(), "run_as_group")?;
    }

    let mut additional_gids = vec![gid];
    if request.merge_image_groups {
        if let Some(name) = entry.map(|e| e.name.as_str()) {
            for g in &groups {
                if g.members.iter().any(|m| m == name) && !additional_gids.contains(&g.gid) {
                    additional_gids.push(g.gid);
                }
            }
        }
    }
    for &g in &request.supplemental_groups {
        let g = to_id(g, &g.to_string(), "supplemental group")?;
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }

    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        username: entry.map(|e| e.name.clone()),
        home: entry.map(|e| e.home.clone()),
    })
}

fn to_id(value: i64, user: &str, what: &str) -> Result<u32, SpecError> {
    u32::try_from(value).map_err(|_| SpecError::InvalidUser {
        user: user.to_string(),
        reason: format!("{what} {value} is out of range"),
    })
}

/// Largest passwd/group file we are willing to read.
const MAX_DATABASE_BYTES: u64 = 16 << 20;

/// Reads `rel` inside `rootfs`, following symlinks as if `rootfs` were `/`,
/// so an image cannot point us at a host file. Missing means empty.
fn read_database(rootfs: &Path, rel: &str) -> Result<String, SpecError> {
    let read_err = |source| SpecError::ReadFile {
        path: rootfs.join(rel),
        source,
    };
    let path = match resolve_in_root(rootfs, Path::new(rel)) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(read_err(e)),
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(read_err(e)),
    };
    // A FIFO or device here would block or flood us; only plain files count.
    if !meta.is_file() || meta.len() > MAX_DATABASE_BYTES {
        return Err(read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file of sane size",
        )));
    }
    let bytes = std::fs::read(&path).map_err(read_err)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Resolves `rel` under `root` with every symlink interpreted relative to
/// `root` and `..` unable to climb above it (what containerd calls a secure
/// join); a missing component is `NotFound`.
pub(crate) fn resolve_in_root(root: &Path, rel: &Path) -> std::io::Result<PathBuf> {
    use crate::storage::scoped;
    let host = scoped::host_path(
        root,
        &scoped::resolve(root, &scoped::clean_abs(&rel.to_string_lossy()), true)?,
    );
    std::fs::symlink_metadata(&host)?;
    Ok(host)
}

/// Data lines of a colon-separated database: no blanks, no comments.
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

/// Parses `/etc/passwd`, skipping malformed lines as libc does.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    records(text)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// Parses `/etc/group`, skipping malformed lines.
fn parse_group(text: &str) -> Vec<GroupEntry> {
    records(text)
        .filter_map(|f| {
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment

daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
broken line
bob:x:1001:100::/home/bob:/bin/sh
";
    const GROUP: &str = "\
root:x:0:
wheel:x:10:root,alice
users:x:100:
alice:x:1000:
video:x:44:bob, alice
staff:x:50:bob
";

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        dir
    }

    fn resolve(root: &Path, user: &str) -> Result<ResolvedUser, SpecError> {
        resolve_user(
            root,
            &UserRequest {
                user: user.to_string(),
                merge_image_groups: true,
                ..Default::default()
            },
        )
    }

    #[test]
    fn empty_user_is_root_with_its_groups() {
        let dir = rootfs();
        let u = resolve(dir.path(), "").unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        assert_eq!(u.additional_gids, vec![0, 10]);
        assert_eq!(u.username.as_deref(), Some("root"));
        assert_eq!(u.home.as_deref(), Some("/root"));
    }

    #[test]
    fn name_resolves_uid_gid_and_memberships() {
        let dir = rootfs();
        let u = resolve(dir.path(), "alice").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![1000, 10, 44]);
    }

    #[test]
    fn numeric_uid_takes_gid_from_passwd() {
        let dir = rootfs();
        let u = resolve(dir.path(), "1001").unwrap();
        assert_eq!((u.uid, u.gid), (1001, 100));
        assert_eq!(u.additional_gids, vec![100, 44, 50]);
        assert_eq!(u.username.as_deref(), Some("bob"));
    }

    #[test]
    fn unknown_numeric_uid_gets_gid_zero() {
        let dir = rootfs();
        let u = resolve(dir.path(), "4242").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 0));
        assert_eq!(u.additional_gids, vec![0]);
        assert_eq!(u.username, None);
    }

    #[test]
    fn explicit_group_by_name_or_number() {
        let dir = rootfs();
        let u = resolve(dir.path(), "alice:video").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 44));
        assert_eq!(u.additional_gids, vec![44, 10]);
        let u = resolve(dir.path(), "1000:777").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 777));
        let u = resolve(dir.path(), "5:6").unwrap();
        assert_eq!((u.uid, u.gid), (5, 6));
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let dir = rootfs();
        let err = resolve(dir.path(), "mallory").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find user mallory: no matching entries in passwd file"
        );
        let err = resolve(dir.path(), "alice:nogroup").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find group nogroup: no matching entries in group file"
        );
        assert!(matches!(
            resolve(dir.path(), "alice:").unwrap_err(),
            SpecError::InvalidUser { .. }
        ));
        assert!(matches!(
            resolve(dir.path(), "-1").unwrap_err(),
            SpecError::InvalidUser { .. }
        ));
    }

    #[test]
    fn run_as_group_and_supplemental_groups() {
        let dir = rootfs();
        let u = resolve_user(
            dir.path(),
            &UserRequest {
                user: "1000".to_string(),
                group: Some(3000),
                supplemental_groups: vec![4000, 10, 4000],
                merge_image_groups: true,
            },
        )
        .unwrap();
        assert_eq!((u.uid, u.gid), (1000, 3000));
        assert_eq!(u.additional_gids, vec![3000, 10, 44, 4000]);
    }

    #[test]
    fn strict_policy_skips_image_groups() {
        let dir = rootfs();
        let u = resolve_user(
            dir.path(),
            &UserRequest {
                user: "alice".to_string(),
                group: None,
                supplemental_groups: vec![5000],
                merge_image_groups: false,
            },
        )
        .unwrap();
        assert_eq!(u.additional_gids, vec![1000, 5000]);
    }

    #[test]
    fn missing_files_allow_numbers_only() {
        let dir = tempfile::tempdir().unwrap();
        let u = resolve(dir.path(), "").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.clone()), (0, 0, vec![0]));
        let u = resolve(dir.path(), "12:34").unwrap();
        assert_eq!((u.uid, u.gid), (12, 34));
        assert!(matches!(
            resolve(dir.path(), "alice").unwrap_err(),
            SpecError::UnknownUser { .. }
        ));
    }

    #[test]
    fn symlinks_stay_inside_the_rootfs() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:666:666::/:/bin/sh\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(dir.path().join("real")).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(dir.path().join("real/passwd"), "app:x:7:8::/:/bin/sh\n").unwrap();

        // An absolute link means the rootfs' /real/passwd, not the host's.
        std::os::unix::fs::symlink("/real/passwd", etc.join("passwd")).unwrap();
        let u = resolve(dir.path(), "app").unwrap();
        assert_eq!((u.uid, u.gid), (7, 8));

        // `..` cannot climb out of the rootfs either.
        std::fs::remove_file(etc.join("passwd")).unwrap();
        let escape = format!(
            "../../../../../..{}",
            outside.path().join("passwd").display()
        );
        std::os::unix::fs::symlink(&escape, etc.join("passwd")).unwrap();
        assert!(matches!(
            resolve(dir.path(), "evil").unwrap_err(),
            SpecError::UnknownUser { .. }
        ));
    }

    #[test]
    fn a_fifo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("etc/passwd"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        let err = resolve(dir.path(), "").unwrap_err();
        assert!(matches!(err, SpecError::ReadFile { .. }), "{err}");
    }
}
