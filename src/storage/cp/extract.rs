//! Extracting a tar into a directory of a container's root: every entry
//! stays under the extraction point, parents are resolved inside the root,
//! modes, owners and times come from the archive.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::storage::scoped::{clean_abs, host_path, names, resolve as resolve_in_root};

/// Why an extraction stopped.
#[derive(Debug)]
pub enum ExtractError {
    Io(io::Error),
    /// The archive is not acceptable (escapes, overwrite rules): 400.
    Refused(String),
}

impl From<io::Error> for ExtractError {
    fn from(e: io::Error) -> Self {
        ExtractError::Io(e)
    }
}

/// A plain, gzip or zstd tar, by its first bytes.
fn decompress<'a>(r: impl Read + 'a) -> Result<Box<dyn Read + 'a>, ExtractError> {
    use std::io::BufRead;
    let mut r = io::BufReader::new(r);
    let head = r.fill_buf()?.to_vec();
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::Decoder::with_buffer(r)?)
    } else if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z']) {
        return Err(ExtractError::Refused(
            "unsupported archive compression (bzip2/xz); send a plain or gzip tar".into(),
        ));
    } else {
        Box::new(r)
    })
}

/// A tar entry name as a clean relative path under the extraction point;
/// absolute names and names climbing out with `..` are refused.
pub fn entry_rel(name: &[u8], dest: &Path) -> Result<PathBuf, ExtractError> {
    let p = Path::new(OsStr::from_bytes(name));
    let out_of = || {
        ExtractError::Refused(format!(
            "{:?} is outside of {:?}",
            String::from_utf8_lossy(name),
            dest.display().to_string()
        ))
    };
    if p.is_absolute() {
        return Err(out_of());
    }
    let mut rel = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            // Climbing above the extraction point.
            Component::ParentDir => rel.pop().then_some(()).ok_or_else(out_of)?,
            _ => {}
        }
    }
    Ok(rel)
}

/// Lexically: is `target` (a link in an entry at container path `at`) inside `dest`?
fn link_inside(dest: &Path, at_dir: &Path, target: &Path) -> bool {
    let joined = if target.is_absolute() {
        // Go's filepath.Join keeps an absolute target under the entry's dir.
        at_dir.join(target.strip_prefix("/").unwrap_or(target))
    } else {
        at_dir.join(target)
    };
    clean_abs(&joined.to_string_lossy()).starts_with(dest)
}

/// Makes container directory `cpath` exist inside `root` (creating missing
/// components with mode 0755, following symlinks only inside the root);
/// returns its resolved container path.
fn ensure_dir(root: &Path, cpath: &Path) -> io::Result<PathBuf> {
    let mut cur = PathBuf::from("/");
    for name in names(cpath) {
        let next = resolve_in_root(root, &cur.join(&name), true)?;
        let host = host_path(root, &next);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", next.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&host)?;
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755))?;
            }
            Err(e) => return Err(e),
        }
        cur = next;
    }
    Ok(cur)
}

/// Extracts a tar into directory `path` of the container root, as Docker's
/// `containerExtractToDir`: modes, owners and times from the archive.
pub fn extract(
    root: &Path,
    path: &str,
    body: impl Read,
    no_overwrite_dir_non_dir: bool,
) -> Result<(), ExtractError> {
    let dest = resolve_in_root(root, &clean_abs(path), true)?;
    let dest_host = host_path(root, &dest);
    let m = std::fs::symlink_metadata(&dest_host)?;
    if !m.is_dir() {
        return Err(ExtractError::Refused(
            "extraction point is not a directory".into(),
        ));
    }
    let mut archive = tar::Archive::new(decompress(body)?);
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            continue;
        }
        let rel = entry_rel(&entry.path_bytes(), &dest)?;
        let cpath = dest.join(&rel);
        let (parent, file) = match (cpath.parent(), cpath.file_name()) {
            (Some(p), Some(f)) if !rel.as_os_str().is_empty() => {
                (p.to_path_buf(), f.to_os_string())
            }
            // `.`: the extraction point itself, which exists as a directory.
            _ => continue,
        };
        let parent = ensure_dir(root, &parent)?;
        let target = host_path(root, &parent).join(&file);
        let is_dir = kind == tar::EntryType::Directory;
        if let Ok(existing) = std::fs::symlink_metadata(&target) {
            if no_overwrite_dir_non_dir && existing.is_dir() && !is_dir {
                return Err(ExtractError::Refused(format!(
                    "cannot overwrite directory {:?} with non-directory {:?}",
                    cpath.display().to_string(),
                    dest.display().to_string()
                )));
            }
            if no_overwrite_dir_non_dir && !existing.is_dir() && is_dir {
                return Err(ExtractError::Refused(format!(
                    "cannot overwrite non-directory {:?} with directory {:?}",
                    cpath.display().to_string(),
                    dest.display().to_string()
                )));
            }
            if !(existing.is_dir() && is_dir) {
                if existing.is_dir() {
                    std::fs::remove_dir_all(&target)?;
                } else {
                    std::fs::remove_file(&target)?;
                }
            }
        }
        let h = entry.header().clone();
        let mode = h.mode()? & 0o7777;
        match kind {
            tar::EntryType::Directory => {
                if std::fs::symlink_metadata(&target).is_err() {
                    std::fs::create_dir(&target)?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&target)?;
                io::copy(&mut entry, &mut f)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()?
                    .ok_or_else(|| ExtractError::Refused("symlink without a target".into()))?
                    .into_owned();
                if !link_inside(&dest, &parent, &link) {
                    return Err(ExtractError::Refused(format!(
                        "invalid symlink {:?} -> {:?}",
                        cpath.display().to_string(),
                        link.display().to_string()
                    )));
                }
                std::os::unix::fs::symlink(&link, &target)?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()?
                    .ok_or_else(|| ExtractError::Refused("hard link without a target".into()))?;
                let rel = entry_rel(link.as_os_str().as_bytes(), &dest)?;
                let src = resolve_in_root(root, &dest.join(rel), false)?;
                std::fs::hard_link(host_path(root, &src), &target)?;
            }
            tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
                use nix::sys::stat::{makedev, mknod, Mode, SFlag};
                let kind = match kind {
                    tar::EntryType::Fifo => SFlag::S_IFIFO,
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    _ => SFlag::S_IFBLK,
                };
                let dev = makedev(
                    u64::from(h.device_major()?.unwrap_or(0)),
                    u64::from(h.device_minor()?.unwrap_or(0)),
                );
                mknod(&target, kind, Mode::from_bits_truncate(0o600), dev)
                    .map_err(io::Error::from)?;
            }
            // Other types (sparse continuations, vendor extensions) are skipped, as Go does.
            _ => continue,
        }
        let (uid, gid) = (h.uid()? as u32, h.gid()? as u32);
        nix::unistd::fchownat(
            None,
            &target,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(io::Error::from)?;
        if kind != tar::EntryType::Symlink {
            // After chown, which clears set-id bits.
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
        }
        let mtime = h.mtime().unwrap_or(0) as i64;
        if is_dir {
            dir_times.push((target, mtime));
        } else {
            set_mtime(&target, mtime)?;
        }
    }
    // Directories last: creating their entries changed their times.
    for (dir, mtime) in dir_times.iter().rev() {
        set_mtime(dir, *mtime)?;
    }
    Ok(())
}

fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let t = TimeSpec::new(secs, 0);
    utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}
