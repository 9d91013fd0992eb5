//! The build context: the tar the client sends as the request body (plain,
//! gzip or zstd), unpacked into a scratch directory, and paths resolved
//! inside a root (the context, or another stage's file system) without ever
//! leaving it — `..` and symbolic links are resolved against the root, as
//! if it were `/`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use super::ignore::{clean, Ignore};
use super::Error;
use crate::storage::compression::Compression;

/// Most symbolic links followed to resolve one path.
const MAX_LINKS: usize = 40;

/// Unpacks the context tar into `dest` (an empty directory). Entries that
/// would land outside it are refused by the tar reader; owners are not
/// kept (COPY makes files root's unless `--chown` says otherwise).
pub fn extract<R: Read>(input: R, dest: &Path) -> Result<(), Error> {
    extract_with(input, dest, false)
}

/// [`extract`], keeping the archive's owners when `owners` (ADD of a local
/// archive keeps them, as Docker does).
pub fn extract_with<R: Read>(input: R, dest: &Path, owners: bool) -> Result<(), Error> {
    let mut r = BufReader::with_capacity(256 << 10, input);
    let head = r
        .fill_buf()
        .map_err(|e| Error::Context(format!("failed to read the build context: {e}")))?
        .to_vec();
    if head.is_empty() {
        // An empty body is an empty context (`docker build - < Dockerfile`
        // sends the Dockerfile itself, handled by the caller).
        return Ok(());
    }
    let kind = Compression::from_magic(&head).unwrap_or(Compression::None);
    let reader = kind
        .decoder(r)
        .map_err(|e| Error::Context(format!("failed to read the build context: {e}")))?;
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_mtime(true);
    tar.set_overwrite(true);
    tar.set_unpack_xattrs(false);
    tar.set_preserve_ownerships(owners);
    let entries = tar
        .entries()
        .map_err(|e| Error::Context(format!("the build context is not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry
            .map_err(|e| Error::Context(format!("the build context is not a tar archive: {e}")))?;
        let kind = entry.header().entry_type();
        if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            continue;
        }
        entry.unpack_in(dest).map_err(|e| {
            Error::Context(format!(
                "failed to unpack {} from the build context: {e}",
                entry
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ))
        })?;
    }
    Ok(())
}

/// Is `head` a tar (for `docker build - < Dockerfile`, where the body is
/// the Dockerfile itself)?
pub fn looks_like_archive(head: &[u8]) -> bool {
    if Compression::from_magic(head).is_some_and(|c| c != Compression::None) {
        return true;
    }
    head.len() >= 262 && &head[257..262] == b"ustar"
}

/// `rel` (an absolute or relative path inside `root`) resolved to a host
/// path below `root`, following symbolic links as if `root` were `/`. With
/// `follow_last` false a link in the last element is not followed (COPY
/// copies a link itself). The result may not exist.
pub fn resolve_in(root: &Path, rel: &str, follow_last: bool) -> Result<PathBuf, Error> {
    let mut parts: Vec<String> = Vec::new();
    let mut todo: Vec<String> = rel
        .split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .rev()
        .collect();
    let mut links = 0;
    while let Some(p) = todo.pop() {
        match p.as_str() {
            "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        parts.push(p);
        let last = todo.is_empty();
        if last && !follow_last {
            break;
        }
        let host = join(root, &parts);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(Error::Context(format!(
                "too many levels of symbolic links in {rel}"
            )));
        }
        let target = std::fs::read_link(&host)
            .map_err(|e| Error::Context(format!("failed to read link {rel}: {e}")))?;
        parts.pop();
        let t = target.to_string_lossy().into_owned();
        if t.starts_with('/') {
            parts.clear();
        }
        todo.extend(
            t.split('/')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .rev(),
        );
    }
    Ok(join(root, &parts))
}

fn join(root: &Path, parts: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    for x in parts {
        p.push(x);
    }
    p
}

/// One file found for a COPY source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where it is on the host.
    pub host: PathBuf,
    /// Its path relative to the source (`""` for the source itself).
    pub rel: String,
}

/// The context paths a COPY source names: its literal path, or each match
/// of its wildcards (`*`, `?`, `[…]` per element), skipping what
/// `.dockerignore` excludes. Returns (path in the context, host path).
pub fn sources(root: &Path, src: &str, ignore: &Ignore) -> Result<Vec<(String, PathBuf)>, Error> {
    let c = clean(src);
    if c == "." {
        return Ok(vec![(".".into(), root.to_path_buf())]);
    }
    let has_glob = c.contains(['*', '?', '[']);
    if !has_glob {
        let host = resolve_in(root, &c, true)?;
        if std::fs::symlink_metadata(&host).is_err() || ignore.excludes(&c) {
            return Err(Error::Context(format!(
                "COPY failed: file not found in build context or excluded by .dockerignore: stat {c}: file does not exist"
            )));
        }
        return Ok(vec![(c, host)]);
    }
    let pat: Vec<&str> = c.split('/').collect();
    let mut out = Vec::new();
    glob_walk(root, "", &pat, ignore, &mut out)?;
    out.sort();
    if out.is_empty() {
        return Err(Error::Context(format!(
            "COPY failed: no source files were specified (no match for {c})"
        )));
    }
    Ok(out)
}

fn glob_walk(
    dir: &Path,
    prefix: &str,
    pat: &[&str],
    ignore: &Ignore,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), Error> {
    let Some((first, rest)) = pat.split_first() else {
        return Ok(());
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !super::ignore::glob(first, &name) {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if ignore.excludes(&rel) && !ignore.has_exceptions() {
            continue;
        }
        if rest.is_empty() {
            if !ignore.excludes(&rel) {
                out.push((rel, e.path()));
            }
        } else if e.file_type().is_ok_and(|t| t.is_dir()) {
            glob_walk(&e.path(), &rel, rest, ignore, out)?;
        }
    }
    Ok(())
}

/// Every file below `host` (itself first), in a stable order, with paths
/// relative to it; context paths excluded by `ignore` (with `ctx` the
/// context path of `host`, None outside the context) are skipped.
pub fn walk(host: &Path, ctx: Option<&str>, ignore: &Ignore) -> Result<Vec<Found>, Error> {
    let mut out = vec![Found {
        host: host.to_path_buf(),
        rel: String::new(),
    }];
    let meta = std::fs::symlink_metadata(host)
        .map_err(|e| Error::Context(format!("failed to stat {}: {e}", host.display())))?;
    if meta.is_dir() {
        walk_dir(host, "", ctx, ignore, &mut out)?;
    }
    Ok(out)
}

fn walk_dir(
    dir: &Path,
    rel: &str,
    ctx: Option<&str>,
    ignore: &Ignore,
    out: &mut Vec<Found>,
) -> Result<(), Error> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::Context(format!("failed to read {}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let r = if rel.is_empty() {
            n.clone()
        } else {
            format!("{rel}/{n}")
        };
        let excluded = ctx.is_some_and(|c| {
            let p = if c == "." {
                r.clone()
            } else {
                format!("{c}/{r}")
            };
            ignore.excludes(&p)
        });
        let host = dir.join(&n);
        let is_dir = std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir());
        if !excluded {
            out.push(Found {
                host: host.clone(),
                rel: r.clone(),
            });
        }
        if is_dir && (!excluded || ignore.has_exceptions()) {
            walk_dir(&host, &r, ctx, ignore, out)?;
        }
    }
    Ok(())
}

/// True for a path that is only `..`/`.` components or empty.
pub fn is_root(p: &str) -> bool {
    Path::new(p).components().all(|c| {
        matches!(
            c,
            Component::RootDir | Component::CurDir | Component::ParentDir
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("src/sub")).unwrap();
        std::fs::write(r.join("src/a.txt"), "a").unwrap();
        std::fs::write(r.join("src/b.log"), "b").unwrap();
        std::fs::write(r.join("src/sub/c.txt"), "c").unwrap();
        std::fs::write(r.join("top.txt"), "t").unwrap();
        std::os::unix::fs::symlink("/etc", r.join("etc-link")).unwrap();
        std::os::unix::fs::symlink("../../..", r.join("src/up")).unwrap();
        t
    }

    #[test]
    fn resolution_stays_inside() {
        let t = tree();
        let r = t.path();
        assert_eq!(
            resolve_in(r, "/etc-link/passwd", true).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(
            resolve_in(r, "src/up/top.txt", true).unwrap(),
            r.join("top.txt")
        );
        assert_eq!(resolve_in(r, "../../x", true).unwrap(), r.join("x"));
        assert_eq!(
            resolve_in(r, "etc-link", false).unwrap(),
            r.join("etc-link")
        );
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert!(resolve_in(r, "loop/x", true).is_err());
        assert!(is_root("../.."));
        assert!(!is_root("../a"));
    }

    #[test]
    fn sources_and_walks() {
        let t = tree();
        let r = t.path();
        let none = Ignore::default();
        let s = sources(r, "src/*.txt", &none).unwrap();
        assert_eq!(s, vec![("src/a.txt".to_string(), r.join("src/a.txt"))]);
        let s = sources(r, "*/*.*", &none).unwrap();
        assert_eq!(s.len(), 2);
        assert!(sources(r, "nope", &none).is_err());
        assert!(sources(r, "*.none", &none).is_err());
        let ig = Ignore::parse("**/*.log\nsrc/sub\n");
        assert!(sources(r, "src/b.log", &ig).is_err());
        let w = walk(&r.join("src"), Some("src"), &ig).unwrap();
        let rels: Vec<&str> = w.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, vec!["", "a.txt", "up"]);
        let w = walk(&r.join("src"), None, &ig).unwrap();
        assert_eq!(w.len(), 6);
        let ig = Ignore::parse("src\n!src/sub/c.txt\n");
        let w = walk(r, Some("."), &ig).unwrap();
        let rels: Vec<&str> = w.iter().map(|f| f.rel.as_str()).collect();
        assert!(
            rels.contains(&"src/sub/c.txt") && !rels.contains(&"src/a.txt"),
            "{rels:?}"
        );
    }

    #[test]
    fn contexts_unpack() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o640);
        h.set_cksum();
        b.append_data(&mut h, "dir/f", &b"abc"[..]).unwrap();
        let plain = b.into_inner().unwrap();
        assert!(looks_like_archive(&plain));
        assert!(!looks_like_archive(b"FROM busybox\n"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        for body in [plain, gz] {
            let t = tempfile::tempdir().unwrap();
            extract(&body[..], t.path()).unwrap();
            assert_eq!(std::fs::read(t.path().join("dir/f")).unwrap(), b"abc");
        }
        let t = tempfile::tempdir().unwrap();
        assert!(extract(
            &b"not a tar at all, just some text that is long enough"[..],
            t.path()
        )
        .is_err());
    }
}
