//! What exec, attach and port-forward see of a connection, whichever
//! transport carries it: a [`Session`] to watch and end, and per-channel
//! [`Input`]s and [`Output`]s. SPDY gives each channel its own stream;
//! WebSocket multiplexes channels in messages (see `ws::session`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::spdy::{self, StreamReader, StreamWriter};
use super::ws;

/// The connection under one streaming request.
pub(super) enum Session {
    Spdy(spdy::Session),
    Ws(ws::Session),
}

impl Session {
    /// Resolves once the client is gone or the session otherwise ended.
    pub async fn closed(&self) {
        match self {
            Session::Spdy(s) => s.closed().await,
            Session::Ws(s) => s.closed().await,
        }
    }

    /// Ends the session politely once what is queued has been sent.
    pub fn close(&self) {
        match self {
            Session::Spdy(s) => s.close(),
            Session::Ws(s) => s.close(),
        }
    }

    /// Ends the session now.
    pub fn abort(&self) {
        match self {
            Session::Spdy(s) => s.abort(),
            Session::Ws(s) => s.abort(),
        }
    }
}

/// Data from the client on one channel; EOF when the client closes it.
pub(super) enum Input {
    /// Our half of a SPDY stdin stream stays open while reading (the
    /// writer is held): Go clients take its FIN as the end of the session.
    Spdy {
        reader: StreamReader,
        _keep_open: Option<StreamWriter>,
    },
    Ws(ws::ChannelReader),
}

impl From<spdy::IncomingStream> for Input {
    fn from(s: spdy::IncomingStream) -> Self {
        Input::Spdy {
            reader: s.reader,
            _keep_open: Some(s.writer),
        }
    }
}

impl AsyncRead for Input {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Input::Spdy { reader, .. } => Pin::new(reader).poll_read(cx, buf),
            Input::Ws(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// Data to the client on one channel; `shutdown` ends the channel where the
/// transport can say so (SPDY's FIN).
pub(super) enum Output {
    Spdy(StreamWriter),
    Ws(ws::ChannelWriter),
}

impl AsyncWrite for Output {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Output::Spdy(w) => Pin::new(w).poll_write(cx, buf),
            Output::Ws(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Output::Spdy(w) => Pin::new(w).poll_flush(cx),
            Output::Ws(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Output::Spdy(w) => Pin::new(w).poll_shutdown(cx),
            Output::Ws(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// The channels of one exec or attach.
pub(super) struct Streams {
    pub error: Output,
    pub stdin: Option<Input>,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
    pub resize: Option<Input>,
}

/// How a request's connection is carried, as negotiated by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// SPDY/3.1 streams.
    Spdy,
    /// The `channel.k8s.io` family over WebSocket.
    WebSocket(ws::Codec),
    /// SPDY/3.1 inside WebSocket binary messages (port-forward only).
    SpdyOverWebSocket,
}

/// What the upgrade settled: transport and sub-protocol ("" for a legacy
/// client that offered none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub transport: Transport,
    pub protocol: &'static str,
}

impl Negotiated {
    /// Whether the exit status goes out as a v4 `metav1.Status`.
    pub fn status_v4(&self) -> bool {
        matches!(
            self.protocol,
            "v4.channel.k8s.io" | "v5.channel.k8s.io" | "v4.base64.channel.k8s.io"
        )
    }

    /// Whether the client may end a channel with the v5 close signal.
    pub fn close_signal(&self) -> bool {
        self.protocol == "v5.channel.k8s.io"
    }
}
