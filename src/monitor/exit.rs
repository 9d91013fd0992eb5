//! The exit file: how a monitor tells the daemon (now or after a restart) how
//! and when the container's init ended. Written to a temp file and renamed,
//! so a reader sees all of it or nothing. Monitors write `pb::ExitStatus`
//! (protobuf); the JSON files of v0 monitors are still read, told apart by
//! their `.json` name (see [`super::proto`]).

use std::io::Write;
use std::path::Path;

use prost::Message;
use serde::Deserialize;

use super::proto::{pb, Protocol};

/// A container's end.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
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

    /// Writes atomically (temp file, fsync, rename), as protobuf.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&pb::ExitStatus::from(*self).encode_to_vec())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Reads an exit file, in the format its name says; `Ok(None)` while
    /// the container has not exited.
    pub fn read(path: &Path) -> std::io::Result<Option<Self>> {
        let b = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match Protocol::of_exit_file(path) {
            Protocol::V0 => serde_json::from_slice(&b).map_err(super::proto::invalid),
            Protocol::V1 => pb::ExitStatus::decode(b.as_slice())
                .map(ExitStatus::from)
                .map_err(super::proto::invalid),
        }
        .map(Some)
    }
}

impl From<ExitStatus> for pb::ExitStatus {
    fn from(s: ExitStatus) -> Self {
        pb::ExitStatus {
            exit_code: s.exit_code,
            signal: s.signal,
            exited_at: s.exited_at,
            oom_killed: s.oom_killed,
        }
    }
}

impl From<pb::ExitStatus> for ExitStatus {
    fn from(s: pb::ExitStatus) -> Self {
        ExitStatus {
            exit_code: s.exit_code,
            signal: s.signal,
            exited_at: s.exited_at,
            oom_killed: s.oom_killed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("exit.pb");
        assert_eq!(ExitStatus::read(&p).unwrap(), None);
        let s = ExitStatus::now(137, Some(9), true);
        s.write(&p).unwrap();
        assert_eq!(ExitStatus::read(&p).unwrap(), Some(s));
        assert!(!p.with_extension("tmp").exists());
        // Protobuf on disk, not JSON.
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(
            pb::ExitStatus::decode(raw.as_slice()).unwrap().exit_code,
            137
        );
        // A clean exit: no signal survives the round trip as Some(0).
        let s = ExitStatus::now(0, None, false);
        s.write(&p).unwrap();
        assert_eq!(ExitStatus::read(&p).unwrap(), Some(s));
    }

    /// The exit file of a monitor started by a berthd before `proto/`,
    /// byte for byte as it wrote them.
    #[test]
    fn reads_the_json_exit_file_of_a_v0_monitor() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("exit.json");
        std::fs::write(
            &p,
            r#"{"exit_code":137,"signal":9,"exited_at":1764770000123456789,"oom_killed":true}"#,
        )
        .unwrap();
        let want = ExitStatus {
            exit_code: 137,
            signal: Some(9),
            exited_at: 1764770000123456789,
            oom_killed: true,
        };
        assert_eq!(ExitStatus::read(&p).unwrap(), Some(want));
        std::fs::write(
            &p,
            r#"{"exit_code":0,"signal":null,"exited_at":5,"oom_killed":false}"#,
        )
        .unwrap();
        assert_eq!(ExitStatus::read(&p).unwrap().unwrap().signal, None);
    }

    /// Neither reader takes the other's file for its own.
    #[test]
    fn a_file_in_the_other_format_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let json = d.path().join("exit.json");
        ExitStatus::now(1, None, false).write(&json).unwrap();
        let e = ExitStatus::read(&json).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        let pb = d.path().join("exit.pb");
        std::fs::write(
            &pb,
            r#"{"exit_code":1,"signal":null,"exited_at":5,"oom_killed":false}"#,
        )
        .unwrap();
        assert!(ExitStatus::read(&pb).is_err());
    }
}
