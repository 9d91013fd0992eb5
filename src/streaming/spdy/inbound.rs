//! The task that owns the transport's read half and the inbound zlib context,
//! and applies each frame the peer sends to the session state.
//!
//! It never waits on the application, with one exception: a peer that ignores
//! flow control (spdystream) and overfills a stream nobody reads makes this
//! task stop reading until that stream drains — TCP backpressure, which is
//! exactly how spdystream treats a slow reader itself.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use super::decode::FrameDecoder;
use super::frame::{
    Frame, GoAwayStatus, RstStatus, FLAG_FIN, FLAG_UNIDIRECTIONAL, SETTINGS_INITIAL_WINDOW_SIZE,
};
use super::headers::Headers;
use super::state::{Shared, State, StreamState, LENIENT_BUFFER_LIMIT};
use super::stream::{IncomingStream, StreamReader, StreamWriter};

const READ_CHUNK: usize = 32 * 1024;
const MAX_WINDOW: i64 = 0x7fff_ffff;

pub(super) async fn run<R>(mut io: R, shared: Arc<Shared>, mut closed: watch::Receiver<bool>)
where
    R: AsyncRead + Unpin,
{
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let frame = match decoder.decode(&mut buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                buf.reserve(READ_CHUNK);
                let read = tokio::select! {
                    read = io.read_buf(&mut buf) => read,
                    _ = closed.wait_for(|c| *c) => return,
                };
                match read {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::debug!(error = %e, "spdy connection read failed");
                        break;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "closing spdy session after a protocol error");
                let mut st = shared.lock();
                st.go_away(GoAwayStatus::PROTOCOL_ERROR);
                st.terminate();
                return;
            }
        };
        let overfull = handle(&shared, frame);
        if let Some(id) = overfull {
            wait_drained(&shared, id, &mut closed).await;
        }
    }
    shared.lock().terminate();
}

/// Applies one frame; returns a stream id whose buffer is over the lenient
/// limit and must drain before more is read.
fn handle(shared: &Arc<Shared>, frame: Frame) -> Option<u32> {
    let mut guard = shared.lock();
    let st = &mut *guard;
    match frame {
        Frame::SynStream {
            stream_id,
            flags,
            headers,
            ..
        } => {
            accept(shared, st, stream_id, flags, headers);
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            st.received(data.len());
            return data_frame(st, stream_id, flags, data);
        }
        Frame::WindowUpdate { stream_id, delta } => {
            st.flow_enforced = true;
            if stream_id == 0 {
                st.send_window = (st.send_window + i64::from(delta)).min(MAX_WINDOW);
                st.wake_writers();
            } else if let Some(s) = st.streams.get_mut(&stream_id) {
                s.send_window += i64::from(delta);
                if s.send_window > MAX_WINDOW {
                    st.reset_stream(stream_id, RstStatus::FLOW_CONTROL_ERROR);
                } else if let Some(w) = s.write_waker.take() {
                    w.wake();
                }
            }
        }
        Frame::Settings { entries, .. } => {
            for e in entries {
                if e.id == SETTINGS_INITIAL_WINDOW_SIZE && i64::from(e.value) <= MAX_WINDOW {
                    // Applies to every stream, open ones included (§2.6.4).
                    let delta = i64::from(e.value) - st.peer_initial_window;
                    st.peer_initial_window = i64::from(e.value);
                    st.streams.values_mut().for_each(|s| s.send_window += delta);
                    st.flow_enforced = true;
                    st.wake_writers();
                }
            }
        }
        Frame::Ping { id } => {
            if !id.is_multiple_of(2) {
                st.queue(Frame::Ping { id });
            } else if let Some(tx) = st.pings.remove(&id) {
                let _ = tx.send(());
            }
        }
        Frame::RstStream { stream_id, .. } => {
            if let Some(s) = st.streams.get_mut(&stream_id) {
                s.reset = true;
                s.recv_buf.clear();
                s.buffered = 0;
                s.wake();
                st.settle(stream_id);
            }
        }
        Frame::Headers {
            stream_id, flags, ..
        } => {
            if flags & FLAG_FIN != 0 {
                remote_fin(st, stream_id);
            }
        }
        Frame::GoAway { .. } => {
            // We open no streams, so the peer's last-good id concerns nothing
            // of ours; what matters is that it will open no more.
            st.going_away = true;
            st.accept = None;
            st.maybe_finish();
        }
        Frame::SynReply { stream_id, .. } => {
            // Only the client opens streams in these protocols.
            st.reset_stream(stream_id, RstStatus::PROTOCOL_ERROR);
        }
        Frame::Unknown { .. } => {}
    }
    None
}

fn accept(shared: &Arc<Shared>, st: &mut State, id: u32, flags: u8, headers: Headers) {
    if st.going_away {
        // §2.6.6: after GOAWAY, new streams are ignored.
        return;
    }
    if id.is_multiple_of(2) || id <= st.last_accepted {
        // Client stream ids are odd and increasing. spdystream answers a
        // violation with a stream reset, not a session error; so do we.
        let status = if st.streams.contains_key(&id) {
            RstStatus::STREAM_IN_USE
        } else {
            RstStatus::PROTOCOL_ERROR
        };
        st.queue(Frame::RstStream {
            stream_id: id,
            status,
        });
        return;
    }
    st.last_accepted = id;
    let permit = st.accept.clone().map(|tx| tx.try_reserve_owned());
    let Some(Ok(permit)) = permit else {
        st.queue(Frame::RstStream {
            stream_id: id,
            status: RstStatus::REFUSED_STREAM,
        });
        st.maybe_finish();
        return;
    };
    let unidirectional = flags & FLAG_UNIDIRECTIONAL != 0;
    let state = StreamState::new(
        st.peer_initial_window,
        flags & FLAG_FIN != 0,
        unidirectional,
    );
    st.streams.insert(id, state);
    st.active += 1;
    if !unidirectional {
        st.queue(Frame::SynReply {
            stream_id: id,
            flags: 0,
            headers: Vec::new(),
        });
    }
    permit.send(IncomingStream {
        id,
        headers,
        reader: StreamReader {
            shared: shared.clone(),
            id,
        },
        writer: StreamWriter {
            shared: shared.clone(),
            id,
        },
    });
}

fn data_frame(st: &mut State, id: u32, flags: u8, data: bytes::Bytes) -> Option<u32> {
    let enforced = st.flow_enforced;
    let Some(s) = st.streams.get_mut(&id) else {
        if id.is_multiple_of(2) || id > st.last_accepted {
            st.queue(Frame::RstStream {
                stream_id: id,
                status: RstStatus::INVALID_STREAM,
            });
        }
        // Otherwise a stream we already forgot: frames may still be in flight.
        return None;
    };
    if s.reset {
        return None;
    }
    if s.remote_fin {
        st.reset_stream(id, RstStatus::STREAM_ALREADY_CLOSED);
        return None;
    }
    let len = data.len();
    if enforced && len as i64 > s.recv_window {
        st.reset_stream(id, RstStatus::FLOW_CONTROL_ERROR);
        return None;
    }
    s.recv_window -= len as i64;
    let mut update = None;
    if !s.reader_alive {
        update = s.consumed(len);
    } else if len > 0 {
        s.recv_buf.push_back(data);
        s.buffered += len;
        if let Some(w) = s.read_waker.take() {
            w.wake();
        }
    }
    let overfull = !enforced && s.buffered > LENIENT_BUFFER_LIMIT;
    if let Some(delta) = update {
        st.queue(Frame::WindowUpdate {
            stream_id: id,
            delta,
        });
    }
    if flags & FLAG_FIN != 0 {
        remote_fin(st, id);
    }
    overfull.then_some(id)
}

fn remote_fin(st: &mut State, id: u32) {
    if let Some(s) = st.streams.get_mut(&id) {
        s.remote_fin = true;
        s.wake();
        st.settle(id);
    }
}

/// Stops reading the connection until stream `id` is back under the limit.
async fn wait_drained(shared: &Shared, id: u32, closed: &mut watch::Receiver<bool>) {
    loop {
        let notified = shared.drained.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let st = shared.lock();
            let over = st
                .streams
                .get(&id)
                .is_some_and(|s| s.buffered > LENIENT_BUFFER_LIMIT);
            if !over || st.terminated {
                return;
            }
        }
        tokio::select! {
            _ = notified => {}
            _ = closed.wait_for(|c| *c) => return,
        }
    }
}
