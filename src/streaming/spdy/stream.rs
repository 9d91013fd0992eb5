//! Application-facing halves of one SPDY stream.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::{Frame, RstStatus, FLAG_FIN};
use super::headers::Headers;
use super::state::{Shared, LENIENT_BUFFER_LIMIT, QUEUE_LIMIT};

/// Largest DATA frame we send; small enough to interleave streams fairly.
const MAX_CHUNK: usize = 16 * 1024;

/// A stream the peer opened, already answered with SYN_REPLY.
pub struct IncomingStream {
    pub id: u32,
    /// Headers of the SYN_STREAM, names lowercase.
    pub headers: Headers,
    /// Data from the peer; EOF once the peer sent FIN.
    pub reader: StreamReader,
    /// Data to the peer; `shutdown` (or drop) sends FIN.
    pub writer: StreamWriter,
}

impl IncomingStream {
    /// The value of header `name`, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for IncomingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingStream")
            .field("id", &self.id)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Receiving half of a stream. Consuming data re-opens the peer's window;
/// a reader that is not polled stalls only its own stream.
pub struct StreamReader {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u32,
}

/// Sending half of a stream; waits for the peer's stream and session windows.
pub struct StreamWriter {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u32,
}

fn closed_error(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, format!("spdy {what}"))
}

impl AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut guard = self.shared.lock();
        let st = &mut *guard;
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        if s.reset {
            return Poll::Ready(Err(closed_error(
                io::ErrorKind::ConnectionReset,
                "stream reset",
            )));
        }
        if !s.recv_buf.is_empty() {
            let was_over = s.buffered > LENIENT_BUFFER_LIMIT;
            let mut copied = 0;
            while buf.remaining() > 0 {
                let Some(front) = s.recv_buf.front_mut() else {
                    break;
                };
                let n = front.len().min(buf.remaining());
                buf.put_slice(&front[..n]);
                front.advance(n);
                if front.is_empty() {
                    s.recv_buf.pop_front();
                }
                copied += n;
            }
            s.buffered -= copied;
            if let Some(delta) = s.consumed(copied) {
                st.queue(Frame::WindowUpdate {
                    stream_id: self.id,
                    delta,
                });
            }
            if was_over {
                self.shared.drained.notify_waiters();
            }
            return Poll::Ready(Ok(()));
        }
        if s.remote_fin || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if st.terminated {
            return Poll::Ready(Err(closed_error(
                io::ErrorKind::UnexpectedEof,
                "session closed",
            )));
        }
        s.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if let Some(s) = st.streams.get_mut(&self.id) {
            // Unread data is thrown away but still re-credited, so a peer
            // writing to a stream nobody reads is not left blocked.
            s.reader_alive = false;
            s.recv_buf.clear();
            let discarded = std::mem::take(&mut s.buffered);
            if let Some(delta) = s.consumed(discarded) {
                st.queue(Frame::WindowUpdate {
                    stream_id: self.id,
                    delta,
                });
            }
            st.settle(self.id);
        }
        drop(st);
        self.shared.drained.notify_waiters();
    }
}

impl StreamWriter {
    /// Aborts the stream with RST_STREAM; both halves then fail.
    pub fn reset(&self, status: RstStatus) {
        let mut st = self.shared.lock();
        let open = st.streams.get(&self.id).is_some_and(|s| !s.reset);
        if open && !st.terminated {
            st.reset_stream(self.id, status);
        }
        drop(st);
        self.shared.drained.notify_waiters();
    }

    /// Queues FIN unless this side is already closed.
    fn finish(&self) -> io::Result<()> {
        let mut st = self.shared.lock();
        let terminated = st.terminated;
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Ok(());
        };
        if s.local_fin || s.reset {
            return Ok(());
        }
        if terminated {
            return Err(closed_error(io::ErrorKind::BrokenPipe, "session closed"));
        }
        s.local_fin = true;
        st.queue_data(self.id, FLAG_FIN, Bytes::new());
        st.settle(self.id);
        Ok(())
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut guard = self.shared.lock();
        let st = &mut *guard;
        if st.terminated {
            return Poll::Ready(Err(closed_error(
                io::ErrorKind::BrokenPipe,
                "session closed",
            )));
        }
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(closed_error(
                io::ErrorKind::BrokenPipe,
                "stream closed",
            )));
        };
        if s.reset {
            return Poll::Ready(Err(closed_error(
                io::ErrorKind::ConnectionReset,
                "stream reset",
            )));
        }
        if s.local_fin {
            return Poll::Ready(Err(closed_error(
                io::ErrorKind::BrokenPipe,
                "stream shut down",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut n = buf.len().min(MAX_CHUNK);
        if st.flow_enforced {
            let window = s.send_window.min(st.send_window);
            if window <= 0 {
                s.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            n = n.min(window as usize);
        }
        if st.queued_data >= QUEUE_LIMIT {
            st.queue_waiters.push(cx.waker().clone());
            return Poll::Pending;
        }
        // Windows are tracked even while not enforced, so enforcement that
        // starts later (a peer's first WINDOW_UPDATE) begins from the truth.
        s.send_window -= n as i64;
        st.send_window -= n as i64;
        st.queue_data(self.id, 0, Bytes::copy_from_slice(&buf[..n]));
        Poll::Ready(Ok(n))
    }

    /// Frames are handed to the session's writer task, which flushes after
    /// every batch; there is nothing to wait for here.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.finish())
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        // Dropping the writer closes our side, like dropping a TcpStream.
        let _ = self.finish();
        let mut st = self.shared.lock();
        if let Some(s) = st.streams.get_mut(&self.id) {
            s.writer_alive = false;
            st.settle(self.id);
        }
    }
}
