//! The monitor's socket (`monitor.sock`): every output client gets the
//! container's output as it is read for the CRI log, and may feed the
//! container's stdin; control clients resize the terminal or have the log
//! reopened. The protocol is `berth.monitor.v1` (see [`super::proto`] and
//! `proto/berth/monitor/v1/monitor.proto`), per connection:
//!
//! ```text
//! client ── Hello { version, kind } ──> monitor
//!        <── Ack { version, error } ──   (output clients: once registered)
//! KIND_OUTPUT      <── Output { stream, data } … until the output ends (close)
//! KIND_STDIN       the same, and the client's bytes ──> container stdin (half-close: EOF)
//! KIND_RESIZE      ── Resize { width, height } … ──> the terminal
//! KIND_LOG_REOPEN  the Ack comes after the log file was reopened
//! ```
//!
//! An unknown version or kind is answered by an Ack with an error and the
//! connection is closed. A stdin client's bytes go to the container's stdin
//! (for a terminal: into the pty); when it closes its side and the container
//! was made with `stdin_once`, the container's stdin is closed too (a
//! terminal stays open: other processes may hold it).
//!
//! A client that cannot keep up (a write blocks longer than
//! [`WRITE_TIMEOUT`]) is dropped, so attach never stalls the CRI log.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::log::Stream;
use super::proto::{self, pb};

const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a new connection gets to say what it is. berthd writes its
/// hello right after connecting, but on a loaded node that can take more
/// than a second (seen: compose's `run --rm` failing to attach).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What reopens the container's log file (set by the monitor).
pub type Reopen = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A unix socket path that fits `sun_path` (108 bytes): the path itself when
/// short enough, else `/proc/self/fd/<dir fd>/<name>` through an open handle
/// of its directory, which the caller keeps while it binds or connects.
pub fn socket_path(path: &Path) -> io::Result<(Option<File>, std::path::PathBuf)> {
    use std::os::fd::AsRawFd;
    if path.as_os_str().len() < 108 {
        return Ok((None, path.to_path_buf()));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path has no directory",
        ));
    };
    let handle = File::open(dir)?;
    let short =
        std::path::PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd())).join(name);
    Ok((Some(handle), short))
}

/// The attach clients of one container.
pub struct Attach {
    clients: Mutex<Vec<UnixStream>>,
    stdin: Mutex<Option<File>>,
    stdin_once: bool,
    /// The terminal's master, for resizes.
    console: Option<File>,
    reopen: OnceLock<Reopen>,
}

impl Attach {
    /// Listens on `path`; `stdin` is the write end of the container's stdin,
    /// `console` the master of its terminal if it has one.
    pub fn serve(
        path: &Path,
        stdin: Option<File>,
        stdin_once: bool,
        console: Option<File>,
    ) -> io::Result<Arc<Attach>> {
        let _ = std::fs::remove_file(path);
        let (_dir, short) = socket_path(path)?;
        let listener = UnixListener::bind(&short)?;
        let attach = Arc::new(Attach {
            clients: Mutex::new(Vec::new()),
            stdin: Mutex::new(stdin),
            stdin_once,
            console,
            reopen: OnceLock::new(),
        });
        let a = attach.clone();
        spawn(move || {
            for conn in listener.incoming().flatten() {
                a.accept(conn);
            }
        })?;
        Ok(attach)
    }

    /// What a `KIND_LOG_REOPEN` request runs (refused until it is set).
    pub fn on_log_reopen(&self, reopen: Reopen) {
        let _ = self.reopen.set(reopen);
    }

    fn accept(self: &Arc<Self>, mut conn: UnixStream) {
        let _ = conn.set_read_timeout(Some(HELLO_TIMEOUT));
        let Ok(Some(hello)) = proto::read_msg::<pb::Hello>(&mut conn) else {
            return;
        };
        let _ = conn.set_read_timeout(None);
        let _ = conn.set_write_timeout(Some(WRITE_TIMEOUT));
        if hello.version != proto::VERSION {
            let _ = ack(
                &mut conn,
                format!("unsupported protocol version {}", hello.version),
            );
            return;
        }
        let stdin = match pb::Kind::try_from(hello.kind) {
            Ok(pb::Kind::Output) => false,
            Ok(pb::Kind::Stdin) => true,
            Ok(pb::Kind::Resize) => {
                if ack(&mut conn, String::new()).is_ok() {
                    let a = self.clone();
                    let _ = spawn(move || a.apply_resizes(conn));
                }
                return;
            }
            Ok(pb::Kind::LogReopen) => {
                let done = match self.reopen.get() {
                    Some(reopen) => reopen().err().unwrap_or_default(),
                    None => "this monitor keeps no log".into(),
                };
                let _ = ack(&mut conn, done);
                return;
            }
            Ok(pb::Kind::Unspecified) | Err(_) => {
                let _ = ack(&mut conn, format!("unknown kind {}", hello.kind));
                return;
            }
        };
        if let Ok(c) = conn.try_clone() {
            // The ack is written under the clients lock: no frame can come
            // before it, and every frame broadcast after it reaches us.
            let mut clients = self.lock_clients();
            if ack(&mut conn, String::new()).is_err() {
                return;
            }
            clients.push(c);
        }
        if stdin {
            let a = self.clone();
            let _ = spawn(move || a.feed_stdin(conn));
        }
    }

    /// Applies the sizes a resize client sends until it closes.
    fn apply_resizes(&self, mut conn: UnixStream) {
        let mut conn = io::BufReader::new(&mut conn);
        while let Ok(Some(r)) = proto::read_msg::<pb::Resize>(&mut conn) {
            let clamp = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
            if let Some(c) = &self.console {
                let _ = super::tty::set_size(c, clamp(r.width), clamp(r.height));
            }
        }
    }

    /// Copies a client's bytes to the container's stdin until it closes.
    fn feed_stdin(&self, mut conn: UnixStream) {
        let mut buf = vec![0u8; 8 * 1024];
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let mut g = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
                    let written = g.as_mut().map(|f| f.write_all(&buf[..n]));
                    if !matches!(written, Some(Ok(()))) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
        if self.stdin_once {
            *self.stdin.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// Sends output to every client, dropping those that fail.
    pub fn broadcast(&self, stream: Stream, data: &[u8]) {
        let mut clients = self.lock_clients();
        if clients.is_empty() {
            return;
        }
        let stream = match stream {
            Stream::Stdout => pb::Stream::Stdout,
            Stream::Stderr => pb::Stream::Stderr,
        };
        let frame = prost::Message::encode_length_delimited_to_vec(&pb::Output {
            stream: stream as i32,
            data: data.to_vec(),
        });
        clients.retain_mut(|c| c.write_all(&frame).is_ok());
    }

    /// Ends every client's connection: the container's output is over.
    pub fn close(&self) {
        for c in self.lock_clients().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    fn lock_clients(&self) -> std::sync::MutexGuard<'_, Vec<UnixStream>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Answers a hello: `error` empty for yes.
fn ack(conn: &mut UnixStream, error: String) -> io::Result<()> {
    let a = pb::Ack {
        version: proto::VERSION,
        error,
    };
    proto::write_msg(conn, &a)
}

fn spawn(f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(f)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for_clients(a: &Attach, n: usize) {
        for _ in 0..200 {
            if a.lock_clients().len() == n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("clients did not register");
    }

    fn hello(path: &Path, version: u32, kind: pb::Kind) -> (UnixStream, pb::Ack) {
        let mut c = UnixStream::connect(path).unwrap();
        let h = pb::Hello {
            version,
            kind: kind as i32,
        };
        proto::write_msg(&mut c, &h).unwrap();
        let ack = proto::read_msg::<pb::Ack>(&mut c).unwrap().unwrap();
        (c, ack)
    }

    #[test]
    fn output_fans_out_and_stdin_flows_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.sock");
        let (r, w) = nix::unistd::pipe().unwrap();
        let a = Attach::serve(&path, Some(File::from(w)), true, None).unwrap();
        let (mut reader, ack) = hello(&path, proto::VERSION, pb::Kind::Output);
        assert_eq!((ack.version, ack.error.as_str()), (proto::VERSION, ""));
        let (mut writer, _) = hello(&path, proto::VERSION, pb::Kind::Stdin);
        wait_for_clients(&a, 2);
        a.broadcast(Stream::Stderr, b"hello");
        let frame = proto::read_msg::<pb::Output>(&mut reader).unwrap().unwrap();
        assert_eq!(frame.stream, pb::Stream::Stderr as i32);
        assert_eq!(frame.data, b"hello");
        writer.write_all(b"typed").unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = String::new();
        File::from(r).read_to_string(&mut got).unwrap();
        assert_eq!(got, "typed", "stdin_once: the client's EOF closes stdin");
        a.close();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn unknown_versions_and_kinds_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.sock");
        let a = Attach::serve(&path, None, false, None).unwrap();
        let (mut c, ack) = hello(&path, 2, pb::Kind::Output);
        assert!(ack.error.contains("version 2"), "{ack:?}");
        assert_eq!(ack.version, proto::VERSION);
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "closed after the refusal");
        let (_, ack) = hello(&path, proto::VERSION, pb::Kind::Unspecified);
        assert!(ack.error.contains("unknown kind"), "{ack:?}");
        assert!(a.lock_clients().is_empty());
    }

    #[test]
    fn log_reopen_runs_the_reopen_and_answers_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.sock");
        let a = Attach::serve(&path, None, false, None).unwrap();
        let (_, ack) = hello(&path, proto::VERSION, pb::Kind::LogReopen);
        assert_eq!(ack.error, "this monitor keeps no log");
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = count.clone();
        a.on_log_reopen(Box::new(move || {
            match c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => Ok(()),
                _ => Err("disk full".into()),
            }
        }));
        let (_, ack) = hello(&path, proto::VERSION, pb::Kind::LogReopen);
        assert_eq!(ack.error, "");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
        let (_, ack) = hello(&path, proto::VERSION, pb::Kind::LogReopen);
        assert_eq!(ack.error, "disk full");
    }
}
