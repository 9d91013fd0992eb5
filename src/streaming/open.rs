//! Opening the channels of an exec or attach on the negotiated transport.
//!
//! Over SPDY the client opens one stream per channel, named by its
//! `streamType` header, and berth waits for all it expects. Over WebSocket
//! the channels exist from the start, numbered as the kubelet numbers them,
//! and berth sends an empty message on the first output channel to tell the
//! client they are ready.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::cache::ExecRequest;
use super::spdy::{self, IncomingStream};
use super::transport::{Input, Negotiated, Output, Session, Streams, Transport};
use super::ws;

/// How long the client gets to open its streams (the kubelet allows 30 s).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// WebSocket channel numbers of exec and attach.
pub(super) mod channel {
    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    pub const ERROR: u8 = 3;
    pub const RESIZE: u8 = 4;
}

/// Starts the session on `io` and returns it with the request's channels.
/// On failure the session has been aborted.
pub(super) async fn exec_channels<T>(
    io: T,
    req: &ExecRequest,
    negotiated: Negotiated,
) -> Result<(Session, Streams), String>
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    match negotiated.transport {
        Transport::Spdy => {
            let (session, mut incoming) = spdy::Session::new(io);
            match collect(&mut incoming, req, negotiated.protocol).await {
                // Streams opened later are not part of the protocol; refusing
                // them by dropping the receiver also lets the session end
                // once ours close.
                Ok(streams) => Ok((Session::Spdy(session), streams)),
                Err(e) => {
                    session.abort();
                    Err(e)
                }
            }
        }
        Transport::WebSocket(codec) => Ok(websocket(io, req, codec, negotiated)),
        Transport::SpdyOverWebSocket => Err("exec and attach are not tunnelled".into()),
    }
}

fn websocket<T>(io: T, req: &ExecRequest, codec: ws::Codec, n: Negotiated) -> (Session, Streams)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut inputs = Vec::new();
    if req.stdin {
        inputs.push(channel::STDIN);
    }
    if req.tty {
        inputs.push(channel::RESIZE);
    }
    let config = ws::ChannelConfig {
        codec,
        close_signal: n.close_signal(),
        inputs,
    };
    let (session, mut readers) = ws::Session::new(io, config);
    // A terminal has no separate stderr (the kubelet drops it too).
    let stderr = req.stderr && !req.tty;
    let first = if req.stdout {
        channel::STDOUT
    } else if stderr {
        channel::STDERR
    } else {
        channel::ERROR
    };
    session.announce(first);
    let out = |on: bool, ch: u8| on.then(|| Output::Ws(session.writer(ch)));
    let streams = Streams {
        error: Output::Ws(session.writer(channel::ERROR)),
        stdin: readers.remove(&channel::STDIN).map(Input::Ws),
        stdout: out(req.stdout, channel::STDOUT),
        stderr: out(stderr, channel::STDERR),
        resize: readers.remove(&channel::RESIZE).map(Input::Ws),
    };
    (Session::Ws(session), streams)
}

/// Waits until every expected SPDY stream is open.
async fn collect(
    incoming: &mut tokio::sync::mpsc::Receiver<IncomingStream>,
    req: &ExecRequest,
    protocol: &str,
) -> Result<Streams, String> {
    let mut want = vec!["error"];
    if req.stdin {
        want.push("stdin");
    }
    if req.stdout {
        want.push("stdout");
    }
    if req.stderr && !req.tty {
        want.push("stderr");
    }
    if req.tty
        && matches!(
            protocol,
            "v3.channel.k8s.io" | "v4.channel.k8s.io" | "v5.channel.k8s.io"
        )
    {
        want.push("resize");
    }
    let mut got: HashMap<String, IncomingStream> = HashMap::new();
    let wait = async {
        while !want.iter().all(|w| got.contains_key(*w)) {
            let Some(s) = incoming.recv().await else {
                return Err("the client closed the connection before opening its streams");
            };
            let kind = s.header("streamtype").unwrap_or_default().to_string();
            if want.contains(&kind.as_str()) {
                got.insert(kind, s);
            } else {
                s.writer.reset(spdy::RstStatus::REFUSED_STREAM);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(STREAM_CREATION_TIMEOUT, wait).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            return Err(format!(
                "timed out waiting for the client's streams: wanted {want:?}"
            ))
        }
    }
    let mut take = |k: &str| got.remove(k);
    Ok(Streams {
        error: Output::Spdy(take("error").expect("waited for").writer),
        stdin: take("stdin").map(Input::from),
        stdout: take("stdout").map(|s| Output::Spdy(s.writer)),
        stderr: take("stderr").map(|s| Output::Spdy(s.writer)),
        resize: take("resize").map(Input::from),
    })
}
