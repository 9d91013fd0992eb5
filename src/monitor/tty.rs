//! Terminals made by the OCI runtime: with `terminal: true` and
//! `--console-socket PATH`, the runtime creates the pty inside the container
//! and sends its master end over that socket (SCM_RIGHTS). The monitor (for
//! a container's init) and the daemon (for Docker's exec) both receive the
//! master here, then read the terminal's output from it, write input into
//! it and set its size.
//!
//! Unsafe code is limited to what nix has no safe call for: adopting a
//! received descriptor, and the TIOCSWINSZ ioctl.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// A listening console socket; its file is removed on drop.
pub struct ConsoleSocket {
    listener: UnixListener,
    file: SocketFile,
}

impl ConsoleSocket {
    /// Listens at `preferred`, or, when that path is too long for a socket
    /// address (108 bytes), at a path of the same name in the temp dir: the
    /// runtime is handed the path, so it must be usable as it is.
    pub fn bind(preferred: &Path) -> io::Result<ConsoleSocket> {
        let path = if preferred.as_os_str().len() < 108 {
            preferred.to_path_buf()
        } else {
            let name = preferred
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            std::env::temp_dir().join(format!(
                "berth-{}-{name}",
                crate::engine::records::new_id().get(..12).unwrap_or("x")
            ))
        };
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        Ok(ConsoleSocket {
            listener,
            file: SocketFile(path),
        })
    }

    /// The path to give the runtime's `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.file.0
    }

    /// Waits up to `timeout` for the runtime to connect and send the master.
    pub fn receive(&self, timeout: Duration) -> io::Result<OwnedFd> {
        // Polled without a poll(2) wrapper: the wait is short and happens once.
        let deadline = std::time::Instant::now() + timeout;
        self.listener.set_nonblocking(true)?;
        let conn = loop {
            match self.listener.accept() {
                Ok((c, _)) => break c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the runtime sent no terminal",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(timeout))?;
        receive_fd(&conn)
    }

    /// The listener as a tokio one, for callers that wait for the runtime
    /// together with other things; the file is still removed on drop.
    pub fn into_tokio(self) -> io::Result<(tokio::net::UnixListener, SocketFile)> {
        let ConsoleSocket { listener, file } = self;
        listener.set_nonblocking(true)?;
        Ok((tokio::net::UnixListener::from_std(listener)?, file))
    }
}

/// Removes a socket's file when dropped.
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Receives one descriptor sent with SCM_RIGHTS on a blocking socket.
pub fn receive_fd(conn: &UnixStream) -> io::Result<OwnedFd> {
    let mut data = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut first = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel just installed these descriptors in our
                // table for this message; nothing else refers to them, so
                // each is owned exactly once (extras are closed on drop).
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                first.get_or_insert(owned);
            }
        }
    }
    first.ok_or_else(|| io::Error::other("no descriptor in the console socket message"))
}

/// Sets the size of the terminal whose master (or slave) is `fd`.
pub fn set_size(fd: &impl AsRawFd, width: u16, height: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: the caller's descriptor is open for the call, and `ws` is a
    // valid winsize that outlives it; the ioctl only reads it.
    unsafe { set_winsize(fd.as_raw_fd(), &ws) }?;
    Ok(())
}

/// A read on a master whose terminal has no users left fails with EIO:
/// that is the end of the output.
pub fn read_master(master: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    match master.read(buf) {
        Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
        r => r,
    }
}

/// The master end of a pty, non-blocking, driven by tokio (the daemon's side).
pub struct PtyMaster(tokio::io::unix::AsyncFd<File>);

impl PtyMaster {
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        let file = File::from(fd);
        // SAFETY: `register` needs the descriptor to stay open while the
        // AsyncFd exists; it owns the File, which closes it only on drop.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(file) }?;
        Ok(PtyMaster(fd))
    }

    /// Reads output; 0 once the terminal's last user closed it.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut g = self.0.readable().await?;
            match g.try_io(|f| (&mut f.get_ref()).read(buf)) {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(r) => return r,
                Err(_) => continue,
            }
        }
    }

    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let mut g = self.0.writable().await?;
            match g.try_io(|f| (&mut f.get_ref()).write(buf)) {
                Ok(Ok(n)) => buf = &buf[n..],
                Ok(Err(e)) => return Err(e),
                Err(_) => continue,
            }
        }
        Ok(())
    }

    pub fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        set_size(self.0.get_ref(), width, height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real pty pair: the master is sent over a console socket, output
    /// written to the slave is read from it, and a resize is seen on the slave.
    #[test]
    fn master_travels_over_the_console_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = ConsoleSocket::bind(&dir.path().join("console.sock")).unwrap();
        let pty = nix::pty::openpty(None, None).unwrap();
        let path = sock.path().to_path_buf();
        let master = pty.master;
        let sender = std::thread::spawn(move || {
            use nix::sys::socket::{sendmsg, ControlMessage};
            let conn = UnixStream::connect(&path).unwrap();
            let fds = [master.as_raw_fd()];
            sendmsg::<()>(
                conn.as_raw_fd(),
                &[std::io::IoSlice::new(b"console")],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )
            .unwrap();
        });
        let got = sock.receive(Duration::from_secs(10)).unwrap();
        sender.join().unwrap();
        let mut got = File::from(got);
        let mut slave = File::from(pty.slave);
        slave.write_all(b"hi\n").unwrap();
        let mut buf = [0u8; 16];
        let n = read_master(&mut got, &mut buf).unwrap();
        // The terminal turns \n into \r\n.
        assert_eq!(&buf[..n], b"hi\r\n");
        set_size(&got, 120, 40).unwrap();
        let ws = nix::pty::Winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let mut ws = ws;
        nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, libc::winsize);
        // SAFETY: a live pty descriptor and a valid winsize to fill.
        unsafe { get_winsize(slave.as_raw_fd(), &mut ws) }.unwrap();
        assert_eq!((ws.ws_col, ws.ws_row), (120, 40));
        drop(slave);
        assert_eq!(read_master(&mut got, &mut buf).unwrap(), 0, "EIO is EOF");
    }

    #[test]
    fn long_paths_fall_back_to_the_temp_dir() {
        let long = PathBuf::from(format!("/nonexistent/{}/console.sock", "d".repeat(120)));
        let sock = ConsoleSocket::bind(&long).unwrap();
        let p = sock.path().to_path_buf();
        assert!(p.starts_with(std::env::temp_dir()), "{}", p.display());
        assert!(p.exists());
        drop(sock);
        assert!(!p.exists());
    }
}
