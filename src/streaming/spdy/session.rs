//! One SPDY/3.1 connection, server side.
//!
//! Two tasks drive it: `inbound` reads and dispatches frames, `writer` owns
//! the write half. Handles ([`Session`], stream readers and writers) share
//! the bookkeeping in `state`. The session ends when the peer disconnects,
//! on a protocol error, on [`Session::abort`], or — after a GOAWAY either way,
//! or once nobody holds the stream receiver — when its last stream closes.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::frame::{Frame, GoAwayStatus, RstStatus};
use super::state::{Shared, State};
use super::stream::IncomingStream;
use super::{inbound, writer};

/// How the peer's flow-control windows are treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlowControl {
    /// Enforce windows only once the peer shows it implements them (sends a
    /// WINDOW_UPDATE or SETTINGS_INITIAL_WINDOW_SIZE). Go's spdystream, used
    /// by kubectl, crictl and the kubelet, never does: it neither sends
    /// WINDOW_UPDATE nor honours ours, so strict windows would stall any
    /// stream after 64 KiB.
    #[default]
    Detect,
    /// Enforce SPDY/3.1 windows from the first byte.
    Enforce,
}

/// Tunables of a session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub flow_control: FlowControl,
    /// Accepted streams waiting in the receiver; beyond this, new streams are
    /// refused with RST_STREAM REFUSED_STREAM rather than stalling the session.
    pub accept_backlog: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            flow_control: FlowControl::Detect,
            accept_backlog: 64,
        }
    }
}

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("spdy session closed")]
    Closed,
}

/// Handle to a running session. Dropping it does not end the session; the
/// stream handles keep working until the connection closes.
pub struct Session {
    shared: Arc<Shared>,
    closed: watch::Receiver<bool>,
    tasks: [JoinHandle<()>; 2],
}

impl Session {
    /// Starts serving `io` (the connection after `101 Switching Protocols`)
    /// with the default configuration. Must be called within a tokio runtime.
    pub fn new<T>(io: T) -> (Session, mpsc::Receiver<IncomingStream>)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        Self::with_config(io, SessionConfig::default())
    }

    /// Starts serving `io` with `config`.
    pub fn with_config<T>(io: T, config: SessionConfig) -> (Session, mpsc::Receiver<IncomingStream>)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (accept_tx, accept_rx) = mpsc::channel(config.accept_backlog.max(1));
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = watch::channel(false);
        let enforce = config.flow_control == FlowControl::Enforce;
        let state = State::new(out_tx, closed_tx, accept_tx, enforce);
        let shared = Arc::new(Shared::new(state));
        let (rd, wr) = tokio::io::split(io);
        let tasks = [
            tokio::spawn(inbound::run(rd, shared.clone(), closed_rx.clone())),
            tokio::spawn(writer::run(wr, out_rx, shared.clone())),
        ];
        let session = Session {
            shared,
            closed: closed_rx,
            tasks,
        };
        (session, accept_rx)
    }

    /// Sends GOAWAY and stops accepting streams; the session ends once the
    /// open streams have closed in both directions.
    pub fn close(&self) {
        let mut st = self.shared.lock();
        st.go_away(GoAwayStatus::OK);
        st.maybe_finish();
    }

    /// Resets every open stream, sends GOAWAY and ends the session now —
    /// what the kubelet's streaming server does when an exec finishes.
    pub fn abort(&self) {
        let mut st = self.shared.lock();
        st.reset_all(RstStatus::CANCEL);
        st.go_away(GoAwayStatus::OK);
        st.terminate();
    }

    /// Sends a PING and waits for the peer to echo it.
    pub async fn ping(&self) -> Result<(), SessionError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if st.terminated {
                return Err(SessionError::Closed);
            }
            let id = st.next_ping;
            // Server-initiated PING ids are even; wrap before the top bit.
            st.next_ping = if id >= 0x7fff_fffe { 2 } else { id + 2 };
            st.pings.insert(id, tx);
            st.queue(Frame::Ping { id });
        }
        rx.await.map_err(|_| SessionError::Closed)
    }

    /// Whether the session has ended (its tasks may still be finishing).
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves once the session has ended — for instance to stop an exec
    /// whose client went away.
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        // An error means the state, and with it the session, is gone.
        let _ = closed.wait_for(|c| *c).await;
    }

    /// Waits until the session has ended and both of its tasks have exited.
    pub async fn wait(self) {
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "spdy session task failed");
            }
        }
    }
}
