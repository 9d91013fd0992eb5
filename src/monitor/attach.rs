//! The monitor's attach socket: every client gets the container's output as
//! it is read for the CRI log, and may feed the container's stdin.
//!
//! Protocol, per connection: the client first sends one byte, the hello:
//!
//! * [`HELLO_STDIN`] (`i`) if it will write stdin, [`HELLO_OUTPUT`] (`o`) if it
//!   only reads;
//! * [`HELLO_STDIN_ACK`] (`I`) and [`HELLO_OUTPUT_ACK`] (`O`): the same, and
//!   the monitor first answers one byte [`ACK`] once the client is
//!   registered, so output the container prints after the ack reaches the
//!   client (Docker attaches before it starts the container);
//! * [`HELLO_RESIZE`] (`r`): a control connection, see below.
//!
//! After an output hello the monitor sends frames `tag (1 byte) | length
//! (u32, big endian) | bytes`, tag [`TAG_STDOUT`] or [`TAG_STDERR`] (a
//! terminal has only stdout), and closes the connection once the
//! container's output has ended. A stdin client's bytes go to the
//! container's stdin (for a terminal: into the pty); when it closes its side
//! and the container was made with `stdin_once`, the container's stdin is
//! closed too (a terminal stays open: other processes may hold it).
//!
//! A resize connection sends any number of messages `width (u16 BE) |
//! height (u16 BE)`, each applied to the container's terminal (ignored
//! without one), and gets nothing back.
//!
//! A client that cannot keep up (a write blocks longer than
//! [`WRITE_TIMEOUT`]) is dropped, so attach never stalls the CRI log.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::log::Stream;

pub const HELLO_STDIN: u8 = b'i';
pub const HELLO_OUTPUT: u8 = b'o';
pub const HELLO_STDIN_ACK: u8 = b'I';
pub const HELLO_OUTPUT_ACK: u8 = b'O';
pub const HELLO_RESIZE: u8 = b'r';
/// The monitor's answer to an acknowledged hello.
pub const ACK: u8 = 0;
pub const TAG_STDOUT: u8 = 1;
pub const TAG_STDERR: u8 = 2;

const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a new connection gets to say what it is. berthd writes its
/// hello right after connecting, but on a loaded node that can take more
/// than a second (seen: compose's `run --rm` failing to attach).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

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
        });
        let a = attach.clone();
        spawn(move || {
            for conn in listener.incoming().flatten() {
                a.accept(conn);
            }
        })?;
        Ok(attach)
    }

    fn accept(self: &Arc<Self>, mut conn: UnixStream) {
        let _ = conn.set_read_timeout(Some(HELLO_TIMEOUT));
        let mut hello = [0u8; 1];
        if conn.read_exact(&mut hello).is_err() {
            return;
        }
        let _ = conn.set_read_timeout(None);
        let _ = conn.set_write_timeout(Some(WRITE_TIMEOUT));
        let (stdin, ack) = match hello[0] {
            HELLO_RESIZE => {
                let a = self.clone();
                let _ = spawn(move || a.apply_resizes(conn));
                return;
            }
            HELLO_STDIN => (true, false),
            HELLO_STDIN_ACK => (true, true),
            HELLO_OUTPUT_ACK => (false, true),
            _ => (false, false),
        };
        if let Ok(c) = conn.try_clone() {
            // The ack is written under the clients lock: no frame can come
            // before it, and every frame broadcast after it reaches us.
            let mut clients = self.lock_clients();
            if ack && conn.write_all(&[ACK]).is_err() {
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
        let mut msg = [0u8; 4];
        while conn.read_exact(&mut msg).is_ok() {
            let width = u16::from_be_bytes([msg[0], msg[1]]);
            let height = u16::from_be_bytes([msg[2], msg[3]]);
            if let Some(c) = &self.console {
                let _ = super::tty::set_size(c, width, height);
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
        let tag = match stream {
            Stream::Stdout => TAG_STDOUT,
            Stream::Stderr => TAG_STDERR,
        };
        let mut frame = Vec::with_capacity(5 + data.len());
        frame.push(tag);
        frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
        frame.extend_from_slice(data);
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

    #[test]
    fn output_fans_out_and_stdin_flows_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attach.sock");
        let (r, w) = nix::unistd::pipe().unwrap();
        let a = Attach::serve(&path, Some(File::from(w)), true, None).unwrap();
        let mut reader = UnixStream::connect(&path).unwrap();
        reader.write_all(&[HELLO_OUTPUT]).unwrap();
        let mut writer = UnixStream::connect(&path).unwrap();
        writer.write_all(&[HELLO_STDIN]).unwrap();
        wait_for_clients(&a, 2);
        a.broadcast(Stream::Stderr, b"hello");
        let mut frame = [0u8; 10];
        reader.read_exact(&mut frame).unwrap();
        assert_eq!(&frame, b"\x02\x00\x00\x00\x05hello");
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
}
