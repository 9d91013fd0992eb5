//! The task that owns the transport's write half and the outbound zlib context.
//!
//! Every frame of the session passes through here in queue order, so header
//! blocks are compressed in exactly the order the peer will inflate them, and
//! a SYN_REPLY queued before a stream is handed out always precedes its DATA.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::frame::{Frame, FrameEncoder};
use super::state::{Outbound, Shared};

/// Batch queued frames into one write up to about this many bytes.
const BATCH: usize = 64 * 1024;

pub(super) async fn run<W>(
    mut io: W,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    shared: Arc<Shared>,
) where
    W: AsyncWrite + Unpin,
{
    let mut encoder = FrameEncoder::new();
    let mut buf = BytesMut::with_capacity(BATCH);
    let mut shutdown = false;
    while !shutdown {
        let Some(mut next) = rx.recv().await else {
            break;
        };
        let mut data_bytes = 0;
        loop {
            match next {
                Outbound::Shutdown => {
                    shutdown = true;
                    break;
                }
                Outbound::Frame(frame) => {
                    if let Frame::Data { data, .. } = &frame {
                        data_bytes += data.len();
                    }
                    // Our own frames are always within limits; this only
                    // trips on a bug, which should not end the session.
                    if let Err(e) = encoder.encode(&frame, &mut buf) {
                        tracing::error!(error = %e, "failed to encode spdy frame");
                    }
                }
            }
            if buf.len() >= BATCH {
                break;
            }
            match rx.try_recv() {
                Ok(msg) => next = msg,
                Err(_) => break,
            }
        }
        if !buf.is_empty() {
            let written = async {
                io.write_all(&buf).await?;
                io.flush().await
            }
            .await;
            buf.clear();
            if let Err(e) = written {
                tracing::debug!(error = %e, "spdy connection write failed");
                break;
            }
        }
        shared.lock().written(data_bytes);
    }
    let _ = io.shutdown().await;
    shared.lock().terminate();
}
