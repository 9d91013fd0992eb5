//! Entry metadata: ownership, mode, mtime and xattrs, read from the tar
//! header and its PAX records, and applied to the unpacked file.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::error::{invalid, UnpackError};
use super::Kind;

/// Xattrs of overlayfs itself; see `set_xattr`.
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

/// Ownership, mode, times and xattrs from an entry's header and PAX records.
pub(super) struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: TimeSpec,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(super) fn read_attrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &str,
) -> Result<Attrs, UnpackError> {
    let header = entry.header();
    let old = header.as_old();
    let mode = numeric(header.mode().map(u64::from), &old.mode)
        .ok_or_else(|| invalid(path, "bad mode field"))? as u32
        & 0o7777;
    let id = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok());
    let uid = id(numeric(header.uid(), &old.uid)).ok_or_else(|| invalid(path, "bad uid field"))?;
    let gid = id(numeric(header.gid(), &old.gid)).ok_or_else(|| invalid(path, "bad gid field"))?;
    let secs = numeric(header.mtime(), &old.mtime)
        .and_then(|s| i64::try_from(s).ok())
        .ok_or_else(|| invalid(path, "bad mtime field"))?;
    let mut mtime = TimeSpec::new(secs, 0);
    let mut xattrs = Vec::new();
    let read_err = |source| UnpackError::ReadEntry {
        path: path.to_string(),
        source,
    };
    if let Some(records) = entry.pax_extensions().map_err(read_err)? {
        for record in records {
            let record = record.map_err(read_err)?;
            let key = record.key_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), record.value_bytes().to_vec()));
            } else if key == b"mtime" {
                if let Some((s, ns)) = parse_pax_time(record.value_bytes()) {
                    mtime = TimeSpec::new(s, ns);
                }
            }
        }
    }
    Ok(Attrs {
        uid,
        gid,
        mode,
        mtime,
        xattrs,
    })
}

/// A numeric header field, reading a blank one (all NULs or spaces, as some
/// writers leave unused fields) as 0 the way Go's archive/tar does.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> Option<u64> {
    match parsed {
        Ok(v) => Some(v),
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Some(0),
        Err(_) => None,
    }
}

/// Parses a PAX time (`1700000000.123456789`, possibly negative) into
/// seconds and nanoseconds.
fn parse_pax_time(value: &[u8]) -> Option<(i64, i64)> {
    let s = std::str::from_utf8(value).ok()?;
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for i in 0..9 {
        let digit = frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
        nanos = nanos * 10 + digit;
    }
    Some(match (negative, nanos) {
        (false, _) => (secs, nanos),
        (true, 0) => (-secs, 0),
        (true, _) => (-secs - 1, 1_000_000_000 - nanos),
    })
}

pub(super) fn set_xattr(
    target: &Path,
    name: &[u8],
    value: &[u8],
    kind: Kind,
    path: &str,
) -> Result<(), UnpackError> {
    let name_os = OsStr::from_bytes(name);
    if name.starts_with(OVERLAY_XATTR_PREFIX) {
        // overlayfs's own attributes (redirect, metacopy, origin, ...) would
        // steer lookups across layers; OCI layers express whiteouts and
        // opaque dirs as `.wh.` entries, which are turned into these here.
        tracing::debug!(entry = path, xattr = ?name_os, "skipping overlayfs xattr from layer");
        return Ok(());
    }
    let err = match xattr::set(target, name_os, value) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let unsupported = err.raw_os_error() == Some(libc::EOPNOTSUPP)
        // The kernel refuses user.* xattrs on anything but files and
        // directories: the attribute cannot exist there at all.
        || (err.raw_os_error() == Some(libc::EPERM)
            && name.starts_with(b"user.")
            && !matches!(kind, Kind::File | Kind::Dir));
    if unsupported {
        tracing::debug!(entry = path, xattr = ?name_os, error = %err, "skipping unsupported xattr");
        return Ok(());
    }
    Err(UnpackError::Xattr {
        path: path.to_string(),
        name: String::from_utf8_lossy(name).into_owned(),
        source: err,
    })
}

pub(super) fn set_times(target: &Path, mtime: TimeSpec) -> io::Result<()> {
    utimensat(
        None,
        target,
        &mtime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e: Errno| e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pax_times() {
        assert_eq!(parse_pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parse_pax_time(b"1.5"), Some((1, 500_000_000)));
        assert_eq!(parse_pax_time(b"1.1234567899"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time(b"-3"), Some((-3, 0)));
        for bad in [&b""[..], b".5", b"1.x", b"abc", b"1e9"] {
            assert_eq!(parse_pax_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn blank_numeric_fields_read_as_zero() {
        let err = || io::Error::other("not a number");
        assert_eq!(numeric(Ok(7), b"0000007\0"), Some(7));
        assert_eq!(numeric(Err(err()), b"\0\0\0\0"), Some(0));
        assert_eq!(numeric(Err(err()), b"    \0"), Some(0));
        assert_eq!(numeric(Err(err()), b"12x"), None);
    }
}
