//! The exit file: how a monitor tells the daemon (now or after a restart) how
//! and when the container's init ended. Written to a temp file and renamed,
//! so a reader sees all of it or nothing.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A container's end.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code; 128 + signal when killed by a signal.
    pub exit_code: i32,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Unix nanoseconds.
    pub exited_at: i64,
    pub oom_killed: bool,
}

impl ExitStatus {
    /// A status stamped with the current time.
    pub fn now(exit_code: i32, signal: Option<i32>, oom_killed: bool) -> Self {
        let exited_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        ExitStatus {
            exit_code,
            signal,
            exited_at,
            oom_killed,
        }
    }

    /// Writes atomically (temp file, fsync, rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Reads an exit file; `Ok(None)` while the container has not exited.
    pub fn read(path: &Path) -> std::io::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("exit");
        assert_eq!(ExitStatus::read(&p).unwrap(), None);
        let s = ExitStatus::now(137, Some(9), true);
        s.write(&p).unwrap();
        assert_eq!(ExitStatus::read(&p).unwrap(), Some(s));
        assert!(!p.with_extension("tmp").exists());
    }
}
