//! The monitor <-> daemon protocol: berth's own protobuf
//! (`proto/berth/monitor/v1/monitor.proto`, compiled by `build.rs`), the
//! framing of its messages, and how the daemon tells which protocol a
//! monitor speaks.
//!
//! ## Which protocol a monitor speaks
//!
//! A monitor outlives the daemon that started it, so after an upgrade the
//! daemon meets monitors of the unversioned first protocol ("v0": a JSON
//! config and exit file, one-byte hellos and raw frames on the attach
//! socket). The version is told by **file names**, never by sniffing
//! contents:
//!
//! | what | v0 | v1 |
//! |---|---|---|
//! | config (in the bundle) | `monitor.json` | `monitor.pb` |
//! | exit file | `*.json` (`exit.json`) | anything else (`exit.pb`) |
//! | socket | `attach.sock` | `monitor.sock` |
//!
//! Names rather than a version byte in the hello, because a v0 monitor does
//! not refuse a hello it does not know: it takes any unknown byte for an
//! output client without acknowledgement and starts sending raw frames, so
//! an in-band probe could not fail cleanly. Names also keep a new daemon
//! from ever decoding an old exit file with the new decoder (or the other
//! way round), and an old berthd never wrote a `.pb` name. From v1 on, the
//! Hello carries the client's version, so a later version can be agreed on
//! in-band and the names can stay.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use prost::Message;

/// The generated messages of `berth.monitor.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/berth.monitor.v1.rs"));
}

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The v1 config file in a bundle.
pub const CONFIG_V1: &str = "monitor.pb";
/// The v0 config file (JSON) in a bundle.
pub const CONFIG_V0: &str = "monitor.json";
/// The v1 socket in a bundle.
pub const SOCKET_V1: &str = "monitor.sock";
/// The v0 attach socket in a bundle.
pub const SOCKET_V0: &str = "attach.sock";
/// A container's v1 exit file in its bundle.
pub const EXIT_V1: &str = "exit.pb";
/// A container's v0 exit file (JSON) in its bundle.
pub const EXIT_V0: &str = "exit.json";

/// The largest message a reader takes before its payload: hellos, acks,
/// resizes and output frames (the monitor sends reads of 32 KiB).
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// A monitor's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The first, unversioned one (berth before `proto/`).
    V0,
    /// `berth.monitor.v1`.
    V1,
}

impl Protocol {
    /// The protocol of the monitor of the bundle `dir`: v0 when only a v0
    /// config is there; v1 otherwise, also for a bundle not yet given a
    /// monitor (this daemon starts only v1 monitors).
    pub fn of_bundle(dir: &Path) -> Protocol {
        if !dir.join(CONFIG_V1).exists() && dir.join(CONFIG_V0).exists() {
            Protocol::V0
        } else {
            Protocol::V1
        }
    }

    /// The protocol a socket speaks, by its name: v0 monitors served only
    /// `attach.sock`.
    pub fn of_socket(path: &Path) -> Protocol {
        match path.file_name() {
            Some(n) if n == SOCKET_V0 => Protocol::V0,
            _ => Protocol::V1,
        }
    }

    /// The format of an exit file, by its name: v0 monitors wrote JSON to
    /// `*.json` names only.
    pub fn of_exit_file(path: &Path) -> Protocol {
        match path.extension() {
            Some(e) if e == "json" => Protocol::V0,
            _ => Protocol::V1,
        }
    }

    /// Where a monitor of this protocol serves its socket in bundle `dir`.
    pub fn socket_in(self, dir: &Path) -> PathBuf {
        dir.join(match self {
            Protocol::V0 => SOCKET_V0,
            Protocol::V1 => SOCKET_V1,
        })
    }

    /// Where a container's monitor of this protocol writes its exit.
    pub fn exit_file_in(self, dir: &Path) -> PathBuf {
        dir.join(match self {
            Protocol::V0 => EXIT_V0,
            Protocol::V1 => EXIT_V1,
        })
    }
}

/// Writes `msg` length-delimited.
pub fn write_msg(w: &mut impl Write, msg: &impl Message) -> io::Result<()> {
    w.write_all(&msg.encode_length_delimited_to_vec())
}

/// Reads one length-delimited message; `Ok(None)` on a clean end of the
/// stream before its first byte.
pub fn read_msg<M: Message + Default>(r: &mut impl Read) -> io::Result<Option<M>> {
    let Some(len) = read_len(r)? else {
        return Ok(None);
    };
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    M::decode(buf.as_slice()).map(Some).map_err(invalid)
}

/// A varint length prefix, byte by byte (so nothing past the message is
/// consumed); `Ok(None)` on end of stream before it.
fn read_len(r: &mut impl Read) -> io::Result<Option<usize>> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(0) if i == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        len |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return check_len(len).map(Some);
        }
    }
    Err(invalid("bad message length"))
}

/// Refuses lengths past [`MAX_MESSAGE`].
pub fn check_len(len: u64) -> io::Result<usize> {
    match usize::try_from(len) {
        Ok(n) if n <= MAX_MESSAGE => Ok(n),
        _ => Err(invalid(format!("message too long ({len} bytes)"))),
    }
}

/// An `InvalidData` error.
pub fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A path as the protocol carries it (raw bytes).
pub fn path_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

/// A path from the protocol's raw bytes.
pub fn bytes_path(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_length_delimited() {
        let mut buf = Vec::new();
        let hello = pb::Hello {
            version: VERSION,
            kind: pb::Kind::Stdin as i32,
        };
        let out = pb::Output {
            stream: pb::Stream::Stderr as i32,
            data: vec![7u8; 300],
        };
        write_msg(&mut buf, &hello).unwrap();
        write_msg(&mut buf, &out).unwrap();
        // 300 bytes of data need a two-byte length.
        assert_eq!(buf[0] as usize, hello.encoded_len());
        let mut r = buf.as_slice();
        assert_eq!(read_msg::<pb::Hello>(&mut r).unwrap(), Some(hello));
        assert_eq!(read_msg::<pb::Output>(&mut r).unwrap(), Some(out));
        assert_eq!(read_msg::<pb::Output>(&mut r).unwrap(), None);
    }

    #[test]
    fn truncated_and_oversized_messages_are_errors() {
        let mut buf = Vec::new();
        write_msg(
            &mut buf,
            &pb::Resize {
                width: 80,
                height: 24,
            },
        )
        .unwrap();
        buf.pop();
        let e = read_msg::<pb::Resize>(&mut buf.as_slice()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // A length prefix cut short.
        let e = read_msg::<pb::Resize>(&mut &[0x80u8][..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // 2 MiB announced.
        let e = read_msg::<pb::Resize>(&mut &[0x80u8, 0x80, 0x80, 0x01][..]).unwrap_err();
        assert!(e.to_string().contains("too long"), "{e}");
    }

    #[test]
    fn names_tell_the_version() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Protocol::of_bundle(d.path()), Protocol::V1, "a new bundle");
        std::fs::write(d.path().join(CONFIG_V0), "{}").unwrap();
        assert_eq!(Protocol::of_bundle(d.path()), Protocol::V0);
        std::fs::write(d.path().join(CONFIG_V1), "").unwrap();
        assert_eq!(Protocol::of_bundle(d.path()), Protocol::V1, "upgraded");
        let (v0, v1) = (
            Protocol::V0.socket_in(d.path()),
            Protocol::V1.socket_in(d.path()),
        );
        assert_eq!(Protocol::of_socket(&v0), Protocol::V0);
        assert_eq!(Protocol::of_socket(&v1), Protocol::V1);
        let (v0, v1) = (
            Protocol::V0.exit_file_in(d.path()),
            Protocol::V1.exit_file_in(d.path()),
        );
        assert_eq!(Protocol::of_exit_file(&v0), Protocol::V0);
        assert_eq!(Protocol::of_exit_file(&v1), Protocol::V1);
        assert_eq!(
            Protocol::of_exit_file(Path::new("/p/infra-exit.json")),
            Protocol::V0
        );
    }

    #[test]
    fn paths_keep_non_utf8_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/run/\xffx"));
        assert_eq!(bytes_path(path_bytes(p)), p);
    }
}
