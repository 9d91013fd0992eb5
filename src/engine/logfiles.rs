//! A container log as files on disk: the live file and, for a Docker
//! container with `--log-opt max-size`, the files its monitor rotated out
//! (`0.log.1` newest … `0.log.N` oldest, see [`crate::monitor::log::LogFile`]).
//! Readers walk them oldest first and step from one to the next by identity
//! (device, inode), so a rotation between two reads loses and repeats nothing.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::monitor::log::rotated_name;

/// (device, inode): a file's identity across renames.
pub type FileId = (u64, u64);

/// The log's files as they are now, oldest first; the live file is last
/// (missing when the container never started).
pub fn log_files(path: &Path) -> Vec<(PathBuf, FileId)> {
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let mut files = Vec::new();
    let mut n = 1;
    while let Some(i) = id(&rotated_name(path, n)) {
        files.push((rotated_name(path, n), i));
        n += 1;
    }
    files.reverse();
    if let Some(i) = id(path) {
        files.push((path.to_path_buf(), i));
    }
    files
}

/// Opens the file that follows `after` in the log (the oldest one for
/// `None`); `None` when `after` is the live file or there is no file. A file
/// that has left the list (dropped by a rotation, or renamed away by the
/// kubelet's own rotation) is followed by the oldest one still there.
pub fn open_next(path: &Path, after: Option<FileId>) -> std::io::Result<Option<(File, FileId)>> {
    // A rotation between listing and opening renames the file: list again.
    for _ in 0..16 {
        let files = log_files(path);
        if after.is_some() && files.last().map(|f| f.1) == after {
            return Ok(None);
        }
        let pos = after
            .and_then(|a| files.iter().position(|f| f.1 == a))
            .map_or(0, |p| p + 1);
        let Some((p, want)) = files.get(pos) else {
            return Ok(None);
        };
        let f = match File::open(p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let m = f.metadata()?;
        if (m.dev(), m.ino()) == *want {
            return Ok(Some((f, *want)));
        }
    }
    Ok(None)
}

/// The identity of the live file, if there is one.
pub fn live_id(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Reads one of the log's files incrementally, line by line; an
/// unterminated last line waits for its end (the writer is mid-line).
pub struct LogCursor {
    file: tokio::fs::File,
    id: FileId,
    leftover: Vec<u8>,
}

impl LogCursor {
    /// The log file after `after` (the oldest for `None`), if any.
    pub fn next(path: &Path, after: Option<FileId>) -> std::io::Result<Option<LogCursor>> {
        Ok(open_next(path, after)?.map(|(f, id)| LogCursor {
            file: tokio::fs::File::from_std(f),
            id,
            leftover: Vec::new(),
        }))
    }

    /// The identity of the file being read.
    pub fn id(&self) -> FileId {
        self.id
    }

    /// Hands every complete line there is now to `line` (without its `\n`).
    pub async fn drain(&mut self, line: &mut impl FnMut(&[u8])) -> std::io::Result<()> {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.file.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            let mut chunk = &buf[..n];
            while let Some(i) = chunk.iter().position(|b| *b == b'\n') {
                if self.leftover.is_empty() {
                    line(&chunk[..i]);
                } else {
                    self.leftover.extend_from_slice(&chunk[..i]);
                    line(&self.leftover);
                    self.leftover.clear();
                }
                chunk = &chunk[i + 1..];
            }
            self.leftover.extend_from_slice(chunk);
        }
    }

    /// The unterminated rest, once no more will come (the file is done).
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.leftover)
    }

    /// True when the path now names another file (rotated) or none.
    pub fn replaced(&self, path: &Path) -> bool {
        live_id(path) != Some(self.id)
    }
}

/// Every complete line of the log as it is now, rotated files first
/// (oldest first), the live file last.
pub async fn read_lines(path: &Path, mut line: impl FnMut(&[u8])) -> std::io::Result<()> {
    let mut after = None;
    while let Some(mut c) = LogCursor::next(path, after)? {
        c.drain(&mut line).await?;
        after = Some(c.id());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_come_whole_across_reads_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(rotated_name(&path, 1), "old 1\nold 2\n").unwrap();
        std::fs::write(&path, "new 1\nhalf").unwrap();
        let mut all = Vec::new();
        read_lines(&path, |l| all.push(String::from_utf8_lossy(l).into_owned()))
            .await
            .unwrap();
        assert_eq!(
            all,
            ["old 1", "old 2", "new 1"],
            "the unterminated line waits"
        );
        let mut c = LogCursor::next(&path, Some(live_id(&rotated_name(&path, 1)).unwrap()))
            .unwrap()
            .unwrap();
        let mut seen = Vec::new();
        c.drain(&mut |l| seen.push(l.to_vec())).await.unwrap();
        assert_eq!(seen, [b"new 1".to_vec()]);
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b" done\n").unwrap();
        c.drain(&mut |l| seen.push(l.to_vec())).await.unwrap();
        assert_eq!(seen.last().unwrap(), b"half done");
        assert!(!c.replaced(&path));
        std::fs::rename(&path, rotated_name(&path, 1)).unwrap();
        assert!(c.replaced(&path));
    }

    #[test]
    fn walks_oldest_first_and_stops_at_the_live_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        assert!(open_next(&path, None).unwrap().is_none());
        std::fs::write(rotated_name(&path, 2), "a").unwrap();
        std::fs::write(rotated_name(&path, 1), "b").unwrap();
        std::fs::write(&path, "c").unwrap();
        let mut seen = String::new();
        let mut at = None;
        while let Some((mut f, id)) = open_next(&path, at).unwrap() {
            std::io::Read::read_to_string(&mut f, &mut seen).unwrap();
            at = Some(id);
        }
        assert_eq!(seen, "abc");
        assert_eq!(at, live_id(&path));
    }

    #[test]
    fn a_file_rotated_away_is_followed_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "a").unwrap();
        let a = live_id(&path);
        // Rotated: the old live file is now .1, a new live file beside it.
        std::fs::rename(&path, rotated_name(&path, 1)).unwrap();
        std::fs::write(&path, "b").unwrap();
        let (_, next) = open_next(&path, a).unwrap().unwrap();
        assert_eq!(Some(next), live_id(&path));
        // Renamed out of the list (the kubelet's rotation): the oldest left.
        std::fs::rename(rotated_name(&path, 1), dir.path().join("0.log.2026")).unwrap();
        let (_, next) = open_next(&path, a).unwrap().unwrap();
        assert_eq!(Some(next), live_id(&path));
    }
}
