//! COPY and ADD: the files they name become a new layer written directly
//! as a tar (no container is needed): context or stage paths are resolved
//! inside their root, the destination through the parent image's file
//! system (a read-only view), so symbolic links in either never lead out.
//! Destination directories the parent lacks are made (owned by `--chown`'s
//! ids, as Docker makes them). ADD unpacks a local tar archive (plain, gzip
//! or zstd) into the destination, keeping the archive's owners.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::build::context::{resolve_in, walk};
use crate::build::ignore::{clean, Ignore};
use crate::build::Error as InputError;
use crate::image::archive::Spooled;
use crate::image::digest::{Digest, Hasher};
use crate::image::service::StepLayer;
use crate::storage::diff::Hashing;

/// What an entry of the new layer is.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Dir,
    File(PathBuf),
    Symlink(PathBuf),
}

/// One entry of the new layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Path in the image, without the leading `/`.
    pub path: String,
    pub body: Body,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

/// Who owns copied files: `--chown`'s ids, or the source's own (ADD archives).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Owner {
    Ids(u64, u64),
    Keep,
}

/// One source of a COPY: its host path and, for a context path, its path
/// in the context (so `.dockerignore` applies below it).
#[derive(Debug, Clone)]
pub struct Source {
    pub host: PathBuf,
    pub ctx: Option<String>,
}

/// Plans the entries of a COPY of `sources` to `dest` (absolute, cleaned;
/// `dest_is_dir` when it ends in `/`, names several sources or is a
/// directory already). `dest_real` maps an in-image directory to where
/// it really is (its links followed in the parent's file system).
pub fn plan(
    sources: &[Source],
    dest: &str,
    dest_is_dir: bool,
    owner: Owner,
    chmod: Option<u32>,
    ignore: &Ignore,
) -> Result<Vec<Entry>, InputError> {
    let dest = match clean(dest) {
        d if d == "." => String::new(),
        d => d,
    };
    let mut out = Vec::new();
    for s in sources {
        let meta = std::fs::symlink_metadata(&s.host).map_err(|e| {
            InputError::Context(format!("failed to stat {}: {e}", s.host.display()))
        })?;
        if meta.is_dir() {
            for f in walk(&s.host, s.ctx.as_deref(), ignore)? {
                if f.rel.is_empty() {
                    continue;
                }
                if let Some(e) = entry(&f.host, &join(&dest, &f.rel), owner, chmod)? {
                    out.push(e);
                }
            }
        } else {
            let target = if dest_is_dir {
                let name = s
                    .host
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                join(&dest, &name)
            } else {
                dest.clone()
            };
            if let Some(e) = entry(&s.host, &target, owner, chmod)? {
                out.push(e);
            }
        }
    }
    Ok(out)
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

fn entry(
    host: &Path,
    path: &str,
    owner: Owner,
    chmod: Option<u32>,
) -> Result<Option<Entry>, InputError> {
    let m = std::fs::symlink_metadata(host)
        .map_err(|e| InputError::Context(format!("failed to stat {}: {e}", host.display())))?;
    let ft = m.file_type();
    let body = if ft.is_dir() {
        Body::Dir
    } else if ft.is_file() {
        Body::File(host.to_path_buf())
    } else if ft.is_symlink() {
        let t = std::fs::read_link(host).map_err(|e| {
            InputError::Context(format!("failed to read link {}: {e}", host.display()))
        })?;
        Body::Symlink(t)
    } else {
        return Ok(None); // devices, sockets and fifos are not copied
    };
    let (uid, gid) = match owner {
        Owner::Ids(u, g) => (u, g),
        Owner::Keep => (u64::from(m.uid()), u64::from(m.gid())),
    };
    let mode = match (&body, chmod) {
        (Body::Symlink(_), _) => 0o777,
        (_, Some(c)) => c,
        _ => m.mode() & 0o7777,
    };
    Ok(Some(Entry {
        path: path.to_string(),
        body,
        mode,
        uid,
        gid,
        mtime: m.mtime().max(0) as u64,
    }))
}

/// The directories `dest_dir` (in-image, absolute) needs that `view` (the
/// parent's file system; None for scratch) lacks, parents first.
pub fn missing_dirs(view: Option<&Path>, dest_dir: &str, owner: Owner) -> Vec<Entry> {
    let c = clean(dest_dir);
    if c == "." {
        return vec![];
    }
    let (uid, gid) = match owner {
        Owner::Ids(u, g) => (u, g),
        Owner::Keep => (0, 0),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut out = Vec::new();
    let mut prefix = String::new();
    for part in c.split('/') {
        prefix = join(&prefix, part);
        let exists = view.is_some_and(|v| {
            resolve_in(v, &prefix, true)
                .is_ok_and(|p| std::fs::metadata(p).is_ok_and(|m| m.is_dir()))
        });
        if !exists {
            out.push(Entry {
                path: prefix.clone(),
                body: Body::Dir,
                mode: 0o755,
                uid,
                gid,
                mtime: now,
            });
        }
    }
    out
}

/// A digest of what the entries hold (paths, modes, owners, link targets,
/// file bytes): the COPY's part of its cache key.
pub fn content_digest(entries: &[Entry]) -> Result<String, InputError> {
    let mut h = Hasher::default();
    for e in entries {
        h.update(format!("{}\0{:o}\0{}:{}\0", e.path, e.mode, e.uid, e.gid).as_bytes());
        match &e.body {
            Body::Dir => h.update(b"d\0"),
            Body::Symlink(t) => h.update(format!("l\0{}\0", t.display()).as_bytes()),
            Body::File(p) => {
                h.update(b"f\0");
                let mut f = File::open(p).map_err(|err| {
                    InputError::Context(format!("failed to read {}: {err}", p.display()))
                })?;
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = f.read(&mut buf).map_err(|err| {
                        InputError::Context(format!("failed to read {}: {err}", p.display()))
                    })?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                h.update(b"\0");
            }
        }
    }
    Ok(h.finish().to_string())
}

/// Writes `entries` as a gzip-compressed layer tar at `path`.
pub fn write_layer(entries: &[Entry], path: &Path) -> io::Result<StepLayer> {
    let file = File::create(path)?;
    let compressed = Hashing::new(io::BufWriter::new(file));
    let gz = flate2::write::GzEncoder::new(compressed, flate2::Compression::fast());
    let plain = Hashing::new(gz);
    let mut b = tar::Builder::new(plain);
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        match &e.body {
            Body::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, format!("{}/", e.path), io::empty())?;
            }
            Body::File(p) => {
                let f = File::open(p)?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(f.metadata()?.len());
                b.append_data(&mut h, &e.path, f)?;
            }
            Body::Symlink(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, &e.path, t)?;
            }
        }
    }
    let plain = b.into_inner()?;
    let digest = |h: String| Digest::parse(&h).map_err(io::Error::other);
    let diff_id = digest(plain.digest())?;
    let mut compressed = plain.inner.finish()?;
    compressed.flush()?;
    Ok(StepLayer {
        file: Spooled {
            path: path.to_path_buf(),
            size: compressed.n,
            digest: digest(compressed.digest())?,
        },
        diff_id,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
    })
}

/// True when the file at `p` is a tar archive ADD unpacks (plain, gzip, zstd).
pub fn is_archive(p: &Path) -> bool {
    let Ok(mut f) = File::open(p) else {
        return false;
    };
    let mut head = vec![0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    head.truncate(n);
    match crate::storage::compression::Compression::from_magic(&head) {
        Some(c) => {
            // Compressed: a tar only if what it holds is one.
            let Ok(f) = File::open(p) else { return false };
            let Ok(mut d) = c.decoder(io::BufReader::new(f)) else {
                return false;
            };
            let mut inner = vec![0u8; 512];
            let mut k = 0;
            while k < inner.len() {
                match d.read(&mut inner[k..]) {
                    Ok(0) | Err(_) => break,
                    Ok(x) => k += x,
                }
            }
            k >= 262 && &inner[257..262] == b"ustar"
        }
        None => n >= 262 && &head[257..262] == b"ustar",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_plan_and_write() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("ctx/app/sub")).unwrap();
        std::fs::write(r.join("ctx/app/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(r.join("ctx/app/sub/x.log"), "log").unwrap();
        std::fs::write(r.join("ctx/one"), "1").unwrap();
        std::os::unix::fs::symlink("run.sh", r.join("ctx/app/link")).unwrap();
        let ig = Ignore::parse("**/*.log\n");
        let dir = Source {
            host: r.join("ctx/app"),
            ctx: Some("app".into()),
        };
        let e = plan(&[dir], "/srv/", true, Owner::Ids(10, 20), None, &ig).unwrap();
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["srv/link", "srv/run.sh", "srv/sub"]);
        assert!(e.iter().all(|e| e.uid == 10 && e.gid == 20));
        assert_eq!(e[0].body, Body::Symlink("run.sh".into()));
        let one = Source {
            host: r.join("ctx/one"),
            ctx: Some("one".into()),
        };
        let f = plan(
            std::slice::from_ref(&one),
            "/etc/renamed",
            false,
            Owner::Ids(0, 0),
            Some(0o600),
            &ig,
        )
        .unwrap();
        assert_eq!(f[0].path, "etc/renamed");
        assert_eq!(f[0].mode, 0o600);
        let f2 = plan(&[one], "/etc/", true, Owner::Ids(0, 0), None, &ig).unwrap();
        assert_eq!(f2[0].path, "etc/one");
        // The digest follows content.
        let d1 = content_digest(&f).unwrap();
        std::fs::write(r.join("ctx/one"), "2").unwrap();
        assert_ne!(d1, content_digest(&f).unwrap());

        // Missing directories, against a view that has /etc.
        std::fs::create_dir_all(r.join("view/etc")).unwrap();
        let m = missing_dirs(Some(&r.join("view")), "/etc/app/conf", Owner::Ids(5, 5));
        let mp: Vec<&str> = m.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(mp, vec!["etc/app", "etc/app/conf"]);
        assert_eq!(missing_dirs(None, "/a", Owner::Keep).len(), 1);
        assert!(missing_dirs(None, "/", Owner::Keep).is_empty());

        let mut all = m;
        all.extend(e);
        let out = r.join("layer.tar.gz");
        let layer = write_layer(&all, &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(layer.file.size, bytes.len() as u64);
        assert_eq!(layer.file.digest, crate::image::Digest::of(&bytes));
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(layer.diff_id, crate::image::Digest::of(&plain));
        let mut a = tar::Archive::new(&plain[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            vec![
                "etc/app/",
                "etc/app/conf/",
                "srv/link",
                "srv/run.sh",
                "srv/sub/"
            ]
        );
        assert!(!is_archive(&r.join("ctx/one")));
        assert!(is_archive(&out));
    }
}
