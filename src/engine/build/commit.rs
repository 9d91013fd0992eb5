//! The one point where a RUN's container becomes a layer: its writable
//! layer (the overlay upper dir) as a compressed layer tar. Kept narrow so
//! the engine's own container diff (issue 13's layer diff) can take its place.

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::copy::{self, Body, Entry};
use crate::build::ignore::clean;
use crate::engine::{Engine, Error};
use crate::image::service::StepLayer;

impl Engine {
    /// The writable layer of the exited container `id`, written at `path`.
    pub(super) async fn container_layer(&self, id: &str, path: &Path) -> Result<StepLayer, Error> {
        let rec = self.container(id)?;
        let upper = rec.layer_dir.join("upper");
        let path = path.to_path_buf();
        let spec = rec.dir.join("config.json");
        tokio::task::spawn_blocking(move || {
            // The runtime's mount points (/etc/hosts, /proc, …) are made in
            // the upper dir but are not the command's changes.
            let mounts: HashSet<String> = oci_spec::runtime::Spec::load(&spec)
                .map_err(|e| Error::internal(format!("failed to read {}: {e}", spec.display())))?
                .mounts()
                .iter()
                .flatten()
                .map(|m| clean(&m.destination().to_string_lossy()))
                .collect();
            let entries = upper_entries(&upper, &mounts)?;
            copy::write_layer(&entries, &path).map_err(|e| {
                Error::internal(format!(
                    "failed to write the layer of {}: {e}",
                    upper.display()
                ))
            })
        })
        .await
        .map_err(|e| Error::internal(format!("layer writer failed: {e}")))?
    }
}

/// The upper dir's entries in layer form: overlay whiteouts (0/0 character
/// devices) as `.wh.` files, opaque directories with `.wh..wh..opq`.
/// Mount points in `skip` are left out, with what is below them.
fn upper_entries(upper: &Path, skip: &HashSet<String>) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    walk(upper, "", skip, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, rel: &str, skip: &HashSet<String>, out: &mut Vec<Entry>) -> Result<(), Error> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::internal(format!("failed to read {}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for n in names {
        let name = n.to_string_lossy().into_owned();
        let host = dir.join(&n);
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if skip.contains(&path) {
            continue;
        }
        let m = std::fs::symlink_metadata(&host)
            .map_err(|e| Error::internal(format!("failed to stat {}: {e}", host.display())))?;
        let ft = m.file_type();
        let base = Entry {
            path: path.clone(),
            body: Body::Dir,
            mode: m.mode() & 0o7777,
            uid: u64::from(m.uid()),
            gid: u64::from(m.gid()),
            mtime: m.mtime().max(0) as u64,
        };
        if ft.is_char_device() && m.rdev() == 0 {
            let wh = match path.rsplit_once('/') {
                Some((d, f)) => format!("{d}/.wh.{f}"),
                None => format!(".wh.{path}"),
            };
            out.push(Entry {
                path: wh,
                body: Body::File("/dev/null".into()),
                mode: 0o644,
                uid: 0,
                gid: 0,
                ..base
            });
        } else if ft.is_dir() {
            out.push(base);
            let opaque = xattr::get(&host, "trusted.overlay.opaque")
                .ok()
                .flatten()
                .is_some_and(|v| v == b"y");
            if opaque {
                out.push(Entry {
                    path: format!("{path}/.wh..wh..opq"),
                    body: Body::File("/dev/null".into()),
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    mtime: 0,
                });
            }
            walk(&host, &path, skip, out)?;
        } else if ft.is_file() {
            out.push(Entry {
                body: Body::File(host.clone()),
                ..base
            });
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&host).map_err(|e| {
                Error::internal(format!("failed to read link {}: {e}", host.display()))
            })?;
            out.push(Entry {
                body: Body::Symlink(t),
                mode: 0o777,
                ..base
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_dirs_in_layer_form() {
        let t = tempfile::tempdir().unwrap();
        let u = t.path();
        std::fs::create_dir_all(u.join("etc")).unwrap();
        std::fs::write(u.join("etc/hosts"), "").unwrap();
        std::fs::write(u.join("etc/app.conf"), "x").unwrap();
        std::fs::create_dir(u.join("proc")).unwrap();
        std::fs::create_dir(u.join("opq")).unwrap();
        xattr::set(u.join("opq"), "trusted.overlay.opaque", b"y").unwrap();
        std::fs::write(u.join("opq/new"), "n").unwrap();
        std::os::unix::fs::symlink("app.conf", u.join("etc/link")).unwrap();
        nix::sys::stat::mknod(
            &u.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        let skip: HashSet<String> = ["etc/hosts".to_string(), "proc".to_string()].into();
        let e = upper_entries(u, &skip).unwrap();
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "etc",
                "etc/app.conf",
                "etc/.wh.gone",
                "etc/link",
                "opq",
                "opq/.wh..wh..opq",
                "opq/new"
            ]
        );
        assert_eq!(e[3].body, Body::Symlink("app.conf".into()));
        assert_eq!(e[2].body, Body::File("/dev/null".into()));
        let layer = copy::write_layer(&e, &t.path().join("l.tar.gz")).unwrap();
        assert!(layer.file.size > 0);
    }
}
