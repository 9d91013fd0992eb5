//! `-v`/`--mount` of a create request → CRI mounts: host binds, named
//! volumes and anonymous ones (`-v /data`, the image's `VOLUME`s not
//! covered by another mount), all made by the engine.

use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;

use super::CreateRequest;
use crate::docker::{ApiError, Shared};
use crate::runtime::tmpfs::TmpfsMount;

/// A named volume's directory, made on first use (`<root>/volumes/<name>/_data`).
fn volume_dir(d: &Shared, name: &str) -> Result<PathBuf, ApiError> {
    Ok(d.engine.ensure_volume(name)?.mountpoint)
}

/// A container path as Docker compares them (no trailing `/`).
fn clean(p: &str) -> &str {
    match p.trim_end_matches('/') {
        "" => "/",
        t => t,
    }
}

fn propagation(p: &str) -> Result<i32, ApiError> {
    Ok(match p {
        "" | "rprivate" | "private" => cri::MountPropagation::PropagationPrivate,
        "rslave" | "slave" => cri::MountPropagation::PropagationHostToContainer,
        "rshared" | "shared" => cri::MountPropagation::PropagationBidirectional,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid propagation mode: {other}"
            )))
        }
    } as i32)
}

/// The CRI mounts of a create request, and the container paths of volume
/// mounts that must not be filled from the image (`nocopy`).
pub(super) struct Mounts {
    pub mounts: Vec<cri::Mount>,
    pub nocopy: Vec<String>,
}

/// `-v src:dst[:opts]` and `--mount` entries → CRI mounts; then an
/// anonymous volume for each path of `Config.Volumes` and of the image's
/// `image_volumes` that no mount (nor tmpfs) covers.
pub(super) fn mounts(
    d: &Shared,
    req: &CreateRequest,
    image_volumes: &[String],
) -> Result<Mounts, ApiError> {
    let mut out = vec![];
    let mut nocopy = vec![];
    for b in req.host_config.binds.iter().flatten() {
        let parts: Vec<&str> = b.split(':').collect();
        let (src, dst, opts) = match parts.as_slice() {
            [s, t] => (*s, *t, ""),
            [s, t, o] => (*s, *t, *o),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid volume specification: '{b}'"
                )))
            }
        };
        if !dst.starts_with('/') {
            return Err(ApiError::bad_request(format!(
                "invalid volume specification: '{b}': invalid mount config: mount path must be absolute"
            )));
        }
        let host = if src.starts_with('/') {
            d.engine.ensure_bind_source(src)?
        } else {
            volume_dir(d, src)?
        };
        let mut readonly = false;
        let mut prop = String::new();
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" => readonly = true,
                "rw" => readonly = false,
                "nocopy" => nocopy.push(dst.to_string()),
                "z" | "Z" => {}
                p => {
                    propagation(p)?;
                    prop = p.to_string();
                }
            }
        }
        out.push(cri::Mount {
            container_path: dst.to_string(),
            host_path: host.to_string_lossy().into_owned(),
            readonly,
            propagation: propagation(&prop)?,
            ..Default::default()
        });
    }
    for m in req.host_config.mounts.iter().flatten() {
        let host = match m.kind.as_str() {
            // Mounted by the spec builder (see [`tmpfs`]).
            "tmpfs" => continue,
            "bind" => {
                if !Path::new(&m.source).is_absolute() || !Path::new(&m.source).exists() {
                    return Err(ApiError::bad_request(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        m.source
                    )));
                }
                PathBuf::from(&m.source)
            }
            "volume" => {
                if m.volume_options.as_ref().is_some_and(|o| o.no_copy) {
                    nocopy.push(m.target.clone());
                }
                if m.source.is_empty() {
                    d.engine.create_anonymous_volume()?.mountpoint
                } else {
                    volume_dir(d, &m.source)?
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "mount type {other:?} is not supported (bind, volume and tmpfs are)"
                )))
            }
        };
        let prop = m
            .bind_options
            .as_ref()
            .map(|b| b.propagation.as_str())
            .unwrap_or("");
        out.push(cri::Mount {
            container_path: m.target.clone(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: m.read_only,
            propagation: propagation(prop)?,
            ..Default::default()
        });
    }
    let mut covered: Vec<String> = out
        .iter()
        .map(|m| clean(&m.container_path).to_string())
        .collect();
    covered.extend(
        req.host_config
            .tmpfs
            .iter()
            .flatten()
            .map(|(p, _)| clean(p).to_string()),
    );
    covered.extend(
        req.host_config
            .mounts
            .iter()
            .flatten()
            .filter(|m| m.kind == "tmpfs")
            .map(|m| clean(&m.target).to_string()),
    );
    let mut wanted: Vec<&str> = req
        .volumes
        .iter()
        .flatten()
        .map(|(p, _)| p.as_str())
        .collect();
    wanted.sort();
    wanted.extend(image_volumes.iter().map(String::as_str));
    for p in wanted {
        if !p.starts_with('/') {
            return Err(ApiError::bad_request(format!(
                "invalid volume specification: '{p}': invalid mount config: mount path must be absolute"
            )));
        }
        if covered.iter().any(|c| c == clean(p)) {
            continue;
        }
        covered.push(clean(p).to_string());
        let v = d.engine.create_anonymous_volume()?;
        out.push(cri::Mount {
            container_path: clean(p).to_string(),
            host_path: v.mountpoint.to_string_lossy().into_owned(),
            ..Default::default()
        });
    }
    Ok(Mounts {
        mounts: out,
        nocopy,
    })
}

/// `--tmpfs PATH[:OPTS]` (`HostConfig.Tmpfs`) and `Mounts` of type
/// `tmpfs` (`TmpfsOptions.SizeBytes`, `.Mode`) → tmpfs mounts.
pub(super) fn tmpfs(req: &CreateRequest) -> Result<Vec<TmpfsMount>, ApiError> {
    let mut out: Vec<TmpfsMount> = Vec::new();
    let mut given: Vec<(&String, &String)> = req.host_config.tmpfs.iter().flatten().collect();
    given.sort();
    for (path, opts) in given {
        let opts: Vec<&str> = opts.split(',').collect();
        out.push(TmpfsMount::new(path, &opts).map_err(ApiError::bad_request)?);
    }
    for m in req.host_config.mounts.iter().flatten() {
        if m.kind != "tmpfs" {
            continue;
        }
        if !m.source.is_empty() {
            return Err(ApiError::bad_request(
                "invalid mount config for type \"tmpfs\": source must be empty",
            ));
        }
        let mut opts = Vec::new();
        if m.read_only {
            opts.push("ro".to_string());
        }
        if let Some(t) = &m.tmpfs_options {
            if t.size_bytes < 0 {
                return Err(ApiError::bad_request(format!(
                    "invalid tmpfs size {}",
                    t.size_bytes
                )));
            }
            if t.size_bytes > 0 {
                opts.push(format!("size={}", t.size_bytes));
            }
            if t.mode != 0 {
                opts.push(format!("mode={:o}", t.mode & 0o7777));
            }
        }
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        out.push(TmpfsMount::new(&m.target, &opts).map_err(ApiError::bad_request)?);
    }
    for (i, t) in out.iter().enumerate() {
        if out[..i].iter().any(|o| o.path == t.path) {
            return Err(ApiError::bad_request(format!(
                "Duplicate mount point: {}",
                t.path
            )));
        }
    }
    Ok(out)
}
