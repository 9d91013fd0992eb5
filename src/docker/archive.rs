//! `docker cp`: `HEAD`, `GET` and `PUT /containers/{id}/archive?path=`.
//!
//! Paths are resolved as Docker resolves them in its chroot: the path is
//! joined to `/` (a relative path is relative to the container's root) and
//! cleaned, then symlinks are followed *inside* the container's root
//! filesystem — an absolute link target restarts at that root and `..` never
//! climbs above it — so nothing outside the rootfs is read or written. The
//! rootfs is the container's overlay mount (present while the container
//! exists, running or not); paths bind-mounted into a running container are
//! not part of it and show the image's content (or nothing) instead.
//!
//! Resolution is by path, not by descriptor: a running container that swaps
//! a directory for a symlink between the check and the use could race an
//! extraction; entries are created with `O_NOFOLLOW`/`O_EXCL` to narrow that.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::error::{flag, Query};
use super::{time, ApiError, Shared};
use crate::engine::records::ContainerRecord;

/// The header carrying a path's stat, base64 of JSON.
pub const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";
/// Symlinks followed in one resolution before giving up (the kernel's limit is 40;
/// moby's scoped resolver allows 255).
const MAX_LINKS: usize = 255;

mod extract;

use extract::{extract, ExtractError};

pub fn routes() -> Router<Shared> {
    Router::new().route(
        "/containers/{id}/archive",
        get(get_archive).head(head_archive).put(put_archive),
    )
}

/// Go's `os.FileMode` of a Unix `st_mode`: permission bits plus Go's own
/// type and special bits (not the Unix ones).
pub fn go_file_mode(st_mode: u32) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const NAMED_PIPE: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHAR_DEVICE: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    let mut m = st_mode & 0o777;
    m |= match st_mode & libc::S_IFMT {
        libc::S_IFDIR => DIR,
        libc::S_IFLNK => SYMLINK,
        libc::S_IFBLK => DEVICE,
        libc::S_IFCHR => DEVICE | CHAR_DEVICE,
        libc::S_IFIFO => NAMED_PIPE,
        libc::S_IFSOCK => SOCKET,
        _ => 0,
    };
    if st_mode & libc::S_ISUID != 0 {
        m |= SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        m |= SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        m |= STICKY;
    }
    m
}

/// `/` + `path`, cleaned lexically (Go's `filepath.Join("/", path)`).
pub fn clean_abs(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The host path of container path `cpath` (absolute, clean) under `root`.
pub fn host_path(root: &Path, cpath: &Path) -> PathBuf {
    root.join(cpath.strip_prefix("/").unwrap_or(cpath))
}

/// Resolves container path `cpath` under `root`, following symlinks inside
/// the root (the last component too when `follow_last`). Missing components
/// are kept as they are, so the result of a broken link is where it points.
/// Returns the resolved container path (absolute, clean).
pub fn resolve_in_root(root: &Path, cpath: &Path, follow_last: bool) -> io::Result<PathBuf> {
    let mut todo: Vec<OsString> = names(cpath).into_iter().rev().collect();
    let mut done = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&name);
        let last = todo.is_empty();
        let meta = std::fs::symlink_metadata(host_path(root, &next));
        let is_link = meta.as_ref().is_ok_and(|m| m.file_type().is_symlink());
        if !is_link || (last && !follow_last) {
            done = next;
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("too many links resolving {}", cpath.display()),
            ));
        }
        let target = std::fs::read_link(host_path(root, &next))?;
        if target.is_absolute() {
            done = PathBuf::from("/");
        }
        todo.extend(names(&target).into_iter().rev());
    }
    Ok(done)
}

/// The normal and `..` components of a path.
fn names(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Docker's `PathStat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub mode: u32,
    pub mtime: i64,
    pub link_target: String,
}

impl PathStat {
    pub fn header_value(&self) -> String {
        let json = serde_json::json!({
            "name": self.name,
            "size": self.size,
            "mode": self.mode,
            "mtime": time::rfc3339(self.mtime),
            "linkTarget": self.link_target,
        });
        base64::engine::general_purpose::STANDARD.encode(json.to_string())
    }
}

/// A path inside a container's root, resolved for reading.
#[derive(Debug)]
pub struct Located {
    /// The container path asked for, cleaned (`/` + path).
    pub cpath: PathBuf,
    /// The name of the top entry of its tar: the base name, or `.` for a
    /// directory asked for as `dir/.` (its content only) or for `/`.
    pub base: PathBuf,
    /// Where it is on the host (parents resolved, last component not followed
    /// unless the path ended in `/` or `/.`).
    pub host: PathBuf,
    pub meta: std::fs::Metadata,
    pub stat: PathStat,
}

/// Finds `path` in the container root as Docker's stat does.
pub fn locate(root: &Path, path: &str) -> io::Result<Located> {
    let cpath = clean_abs(path);
    // A trailing `/` or `/.` makes the kernel follow the last link too.
    let trailing = path.ends_with('/') || path.ends_with("/.");
    let parent = cpath.parent().unwrap_or(Path::new("/"));
    let resolved = match cpath.file_name() {
        Some(name) if !trailing => resolve_in_root(root, parent, true)?.join(name),
        _ => resolve_in_root(root, &cpath, true)?,
    };
    let host = host_path(root, &resolved);
    let meta = std::fs::symlink_metadata(&host)?;
    if trailing && !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{path}: not a directory"),
        ));
    }
    let link_target = if meta.file_type().is_symlink() {
        resolve_in_root(root, &resolved, true)?
            .to_string_lossy()
            .into_owned()
    } else {
        String::new()
    };
    let name = cpath
        .file_name()
        .map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned());
    let stat = PathStat {
        name,
        size: meta.len() as i64,
        mode: go_file_mode(meta.mode()),
        mtime: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        link_target,
    };
    let base = if path.ends_with("/.") || cpath.file_name().is_none() {
        PathBuf::from(".")
    } else {
        PathBuf::from(cpath.file_name().unwrap_or_default())
    };
    Ok(Located {
        cpath,
        base,
        host,
        meta,
        stat,
    })
}

#[derive(Deserialize)]
struct Params {
    path: Option<String>,
    #[serde(rename = "noOverwriteDirNonDir")]
    no_overwrite_dir_non_dir: Option<String>,
}

fn required_path(p: &Params) -> Result<String, ApiError> {
    p.path
        .clone()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request("bad parameter: path cannot be empty"))
}

/// The container's root, checked to be its mounted overlay (not the empty
/// directory under the bundle).
fn rootfs(rec: &ContainerRecord) -> Result<PathBuf, ApiError> {
    let root = rec.rootfs();
    let mounted = match (std::fs::metadata(&root), std::fs::metadata(&rec.dir)) {
        (Ok(r), Ok(d)) => r.is_dir() && r.dev() != d.dev(),
        _ => false,
    };
    if !mounted {
        return Err(ApiError::conflict(format!(
            "the root filesystem of container {} is not mounted",
            rec.id
        )));
    }
    Ok(root)
}

/// Docker's answers for a failed path operation.
fn path_error(e: io::Error, path: &str, name: &str) -> ApiError {
    match e.kind() {
        io::ErrorKind::NotFound => ApiError::not_found(format!(
            "Could not find the file {path} in container {name}"
        )),
        io::ErrorKind::InvalidInput | io::ErrorKind::NotADirectory => {
            ApiError::bad_request(e.to_string())
        }
        _ => ApiError::internal(e.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("archive task failed: {e}")))?
}

async fn head_archive(
    State(d): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let path = required_path(&p)?;
    let rec = d.container(&id)?;
    let root = rootfs(&rec)?;
    let name = id.clone();
    let loc =
        blocking(move || locate(&root, &path).map_err(|e| path_error(e, &path, &name))).await?;
    Ok(([(STAT_HEADER, loc.stat.header_value())], StatusCode::OK).into_response())
}

async fn get_archive(
    State(d): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let path = required_path(&p)?;
    let rec = d.container(&id)?;
    let root = rootfs(&rec)?;
    let name = id.clone();
    let loc =
        blocking(move || locate(&root, &path).map_err(|e| path_error(e, &path, &name))).await?;
    let header = loc.stat.header_value();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let cid = rec.id.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter { tx };
        if let Err(e) = write_tar(&loc, &mut w) {
            // The 200 is out: the truncated tar tells the client.
            tracing::warn!(container = %cid, "failed to archive {}: {e}", loc.cpath.display());
        }
    });
    d.engine.emit_container("archive-path", &rec, &[]);
    let body = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, io::Error>);
    Response::builder()
        .header(STAT_HEADER, header)
        .header(http::header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::internal(format!("failed to build the archive response: {e}")))
}

/// Sends written bytes to an async body; fails once the client left.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the tar Docker sends for a located path: a directory as `<base>/…`
/// (its own name, or `.` for a path ending in `/.`), anything else as one
/// entry named after it. Symlinks are archived as links, never followed.
pub fn write_tar(loc: &Located, out: &mut impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    let base = loc.base.clone();
    append(&mut b, &loc.host, &base, &loc.meta)?;
    if loc.meta.is_dir() {
        let mut stack = vec![(loc.host.clone(), base)];
        while let Some((dir, name)) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&dir)?.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let meta = e.path().symlink_metadata()?;
                let child = name.join(e.file_name());
                append(&mut b, &e.path(), &child, &meta)?;
                if meta.is_dir() {
                    stack.push((e.path(), child));
                }
            }
        }
    }
    b.into_inner()?.flush()
}

fn append<W: Write>(
    b: &mut tar::Builder<W>,
    host: &Path,
    name: &Path,
    meta: &std::fs::Metadata,
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
    let ft = meta.file_type();
    if ft.is_symlink() {
        h.set_size(0);
        let target = std::fs::read_link(host)?;
        b.append_link(&mut h, name, target)
    } else if ft.is_file() {
        let f = std::fs::File::open(host)?;
        b.append_data(&mut h, name, f)
    } else if ft.is_dir() {
        h.set_size(0);
        let mut dir = name.as_os_str().to_os_string();
        dir.push("/");
        b.append_data(&mut h, dir, io::empty())
    } else {
        // Devices and fifos: the header says it all; sockets are skipped, as Go does.
        use std::os::unix::fs::FileTypeExt;
        if ft.is_socket() {
            return Ok(());
        }
        h.set_size(0);
        b.append_data(&mut h, name, io::empty())
    }
}

async fn put_archive(
    State(d): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(p): Query<Params>,
    req: Request,
) -> Result<Response, ApiError> {
    let path = required_path(&p)?;
    let no_overwrite = flag(&p.no_overwrite_dir_non_dir);
    let rec = d.container(&id)?;
    let root = rootfs(&rec)?;
    if rec
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.readonly_rootfs)
    {
        return Err(ApiError::bad_request(
            "container rootfs is marked read-only",
        ));
    }
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
    let mut body = req.into_body().into_data_stream();
    let feed = tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            let item = chunk.map_err(io::Error::other);
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    let name = id.clone();
    let res = blocking(move || {
        let reader = ChannelReader {
            rx,
            buf: Bytes::new(),
        };
        extract(&root, &path, reader, no_overwrite).map_err(|e| match e {
            ExtractError::Io(e) => path_error(e, &path, &name),
            ExtractError::Refused(m) => ApiError::bad_request(m),
        })
    })
    .await;
    feed.abort();
    res?;
    d.engine.emit_container("extract-to-dir", &rec, &[]);
    Ok(StatusCode::OK.into_response())
}

/// Reads an async body from a blocking thread.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    buf: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.buf = chunk?,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
