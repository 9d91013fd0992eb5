//! Session bookkeeping shared by the reader task, the writer task and the
//! stream handles, behind one mutex that is never held across an await.
//!
//! A stream's two directions close independently:
//!
//! ```text
//!            SYN_STREAM (+FIN: remote closed, +UNIDIRECTIONAL: local closed)
//!                 |
//!               open ── we send FIN ──> local closed ──┐
//!                 │                                    ├─> closed ──> removed once
//!                 └──── peer sends FIN ─> remote closed┘   both handles are dropped
//!   RST_STREAM either way, GOAWAY/disconnect teardown: closed at once
//! ```
//!
//! `active` counts streams not yet closed both ways; a session that is going
//! away ends when it reaches zero.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::frame::{Frame, GoAwayStatus, RstStatus};
use super::stream::IncomingStream;
use super::DEFAULT_WINDOW;

/// Bytes a stream may buffer from a peer that ignores flow control before the
/// reader task stops reading the connection (what spdystream itself does).
pub(super) const LENIENT_BUFFER_LIMIT: usize = 1024 * 1024;
/// DATA bytes queued for the writer task before stream writers must wait.
pub(super) const QUEUE_LIMIT: usize = 256 * 1024;
/// Re-credit a window once this much of it has been consumed.
const UPDATE_THRESHOLD: u32 = DEFAULT_WINDOW / 2;

/// What the writer task is asked to do.
pub(super) enum Outbound {
    Frame(Frame),
    /// Write everything queued before this, then close the transport.
    Shutdown,
}

/// State reachable from every handle of one session.
pub(super) struct Shared {
    state: Mutex<State>,
    /// Signalled when a stream buffer over `LENIENT_BUFFER_LIMIT` shrinks.
    pub drained: Notify,
}

impl Shared {
    pub fn new(state: State) -> Self {
        Self {
            state: Mutex::new(state),
            drained: Notify::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Per-stream state.
pub(super) struct StreamState {
    pub recv_buf: VecDeque<Bytes>,
    pub buffered: usize,
    /// Bytes the peer may still send before our next WINDOW_UPDATE.
    pub recv_window: i64,
    /// Bytes consumed by the application but not yet re-credited.
    pub recv_unacked: u32,
    /// Bytes the peer lets us send; negative after a SETTINGS shrink.
    pub send_window: i64,
    pub remote_fin: bool,
    pub local_fin: bool,
    pub reset: bool,
    pub reader_alive: bool,
    pub writer_alive: bool,
    pub read_waker: Option<Waker>,
    pub write_waker: Option<Waker>,
    counted_active: bool,
}

impl StreamState {
    pub fn new(send_window: i64, remote_fin: bool, local_fin: bool) -> Self {
        Self {
            recv_buf: VecDeque::new(),
            buffered: 0,
            recv_window: i64::from(DEFAULT_WINDOW),
            recv_unacked: 0,
            send_window,
            remote_fin,
            local_fin,
            reset: false,
            reader_alive: true,
            writer_alive: true,
            read_waker: None,
            write_waker: None,
            counted_active: true,
        }
    }

    fn closed(&self) -> bool {
        self.reset || (self.local_fin && self.remote_fin)
    }

    pub fn wake(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }

    /// Accounts for `n` bytes the application consumed (or that were thrown
    /// away) and returns the WINDOW_UPDATE delta to send, if one is due.
    pub fn consumed(&mut self, n: usize) -> Option<u32> {
        self.recv_unacked = self.recv_unacked.saturating_add(n as u32);
        if self.remote_fin || self.reset || self.recv_unacked < UPDATE_THRESHOLD {
            return None;
        }
        let delta = std::mem::take(&mut self.recv_unacked);
        self.recv_window += i64::from(delta);
        Some(delta)
    }
}

/// Session-wide state.
pub(super) struct State {
    pub streams: HashMap<u32, StreamState>,
    /// Streams not yet closed in both directions.
    pub active: usize,
    /// Highest stream id the peer opened.
    pub last_accepted: u32,
    pub accept: Option<mpsc::Sender<IncomingStream>>,
    /// GOAWAY sent or received: no new streams.
    pub going_away: bool,
    pub terminated: bool,
    /// Whether the peer's windows are enforced on our sends and ours on its.
    pub flow_enforced: bool,
    pub peer_initial_window: i64,
    pub send_window: i64,
    /// Session-level bytes received but not yet re-credited.
    pub session_unacked: u32,
    /// DATA bytes handed to the writer task and not yet written.
    pub queued_data: usize,
    pub queue_waiters: Vec<Waker>,
    pub pings: HashMap<u32, oneshot::Sender<()>>,
    pub next_ping: u32,
    out: mpsc::UnboundedSender<Outbound>,
    closed: watch::Sender<bool>,
}

impl State {
    pub fn new(
        out: mpsc::UnboundedSender<Outbound>,
        closed: watch::Sender<bool>,
        accept: mpsc::Sender<IncomingStream>,
        flow_enforced: bool,
    ) -> Self {
        Self {
            streams: HashMap::new(),
            active: 0,
            last_accepted: 0,
            accept: Some(accept),
            going_away: false,
            terminated: false,
            flow_enforced,
            peer_initial_window: i64::from(DEFAULT_WINDOW),
            send_window: i64::from(DEFAULT_WINDOW),
            session_unacked: 0,
            queued_data: 0,
            queue_waiters: Vec::new(),
            pings: HashMap::new(),
            next_ping: 2,
            out,
            closed,
        }
    }

    /// Hands a frame to the writer task; a writer that is gone has already
    /// ended the session, so the frame has nowhere to go anyway.
    pub fn queue(&self, frame: Frame) {
        let _ = self.out.send(Outbound::Frame(frame));
    }

    /// Queues DATA, counting it against the writer queue limit.
    pub fn queue_data(&mut self, stream_id: u32, flags: u8, data: Bytes) {
        self.queued_data += data.len();
        self.queue(Frame::Data {
            stream_id,
            flags,
            data,
        });
    }

    /// Called by the writer task once `n` DATA bytes reached the transport.
    pub fn written(&mut self, n: usize) {
        self.queued_data = self.queued_data.saturating_sub(n);
        if self.queued_data < QUEUE_LIMIT {
            self.queue_waiters.drain(..).for_each(Waker::wake);
        }
    }

    /// Credits session-level receive window on arrival: per-stream windows
    /// already bound what can pile up, and crediting on consumption would let
    /// one stalled stream starve all others.
    pub fn received(&mut self, n: usize) {
        self.session_unacked = self.session_unacked.saturating_add(n as u32);
        if self.session_unacked >= UPDATE_THRESHOLD {
            let delta = std::mem::take(&mut self.session_unacked);
            self.queue(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
        }
    }

    pub fn wake_writers(&mut self) {
        for s in self.streams.values_mut() {
            if let Some(w) = s.write_waker.take() {
                w.wake();
            }
        }
        self.queue_waiters.drain(..).for_each(Waker::wake);
    }

    /// Sends RST_STREAM and tears the stream down locally.
    pub fn reset_stream(&mut self, id: u32, status: RstStatus) {
        self.queue(Frame::RstStream {
            stream_id: id,
            status,
        });
        if let Some(s) = self.streams.get_mut(&id) {
            s.reset = true;
            s.recv_buf.clear();
            s.buffered = 0;
            s.wake();
        }
        self.settle(id);
    }

    /// Re-evaluates a stream after its flags changed: stops counting it once
    /// closed both ways, forgets it once its handles are gone too.
    pub fn settle(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if !s.closed() {
            return;
        }
        if s.counted_active {
            s.counted_active = false;
            self.active -= 1;
        }
        if !s.reader_alive && !s.writer_alive {
            self.streams.remove(&id);
        }
        self.maybe_finish();
    }

    /// Ends a session that can get no new streams once its last one closed.
    pub fn maybe_finish(&mut self) {
        let nobody_accepts = self.accept.as_ref().is_none_or(|tx| tx.is_closed());
        if self.terminated || self.active > 0 || !(self.going_away || nobody_accepts) {
            return;
        }
        self.go_away(GoAwayStatus::OK);
        self.terminate();
    }

    /// Sends GOAWAY once and stops accepting streams.
    pub fn go_away(&mut self, status: GoAwayStatus) {
        if !self.going_away && !self.terminated {
            let last_good_stream_id = self.last_accepted;
            self.queue(Frame::GoAway {
                last_good_stream_id,
                status,
            });
        }
        self.going_away = true;
        self.accept = None;
    }

    /// Resets every stream still open in either direction.
    pub fn reset_all(&mut self, status: RstStatus) {
        let open: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.closed())
            .map(|(id, _)| *id)
            .collect();
        for id in open {
            self.reset_stream(id, status);
        }
    }

    /// Ends the session: wakes every handle (they now see EOF or an error),
    /// fails pending pings, and lets both tasks finish.
    pub fn terminate(&mut self) {
        if self.terminated {
            return;
        }
        self.terminated = true;
        self.going_away = true;
        self.accept = None;
        self.pings.clear();
        for s in self.streams.values_mut() {
            s.wake();
        }
        self.wake_writers();
        let _ = self.out.send(Outbound::Shutdown);
        self.closed.send_replace(true);
    }
}
