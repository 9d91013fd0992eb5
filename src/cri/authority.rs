//! An HTTP/2 shim on the CRI socket that repairs the `:authority` of old gRPC clients.
//!
//! grpc-go before 1.52 (crictl and critest 1.26 among them) sends the unix socket path,
//! e.g. `/run/berth/berth.sock`, as `:authority`. The `h2` crate rejects that as malformed
//! and resets every stream (hyperium/h2#487), so each accepted connection is piped through
//! a task that re-encodes the client's header blocks, putting `localhost` in place of an
//! `:authority` that is not a URI authority. Other client frames pass byte for byte and
//! server bytes are copied unchanged.
//!
//! ```text
//! client ──UnixStream──▶ pump task ──DuplexStream──▶ tonic
//!          frames parsed, HEADERS (+CONTINUATION) decoded and re-encoded
//! ```
//!
//! HPACK state is per direction and per connection: the shim decodes with the client's
//! dynamic table and re-encodes with its own. Its encoder keeps no dynamic table, so the
//! output never depends on the server's SETTINGS_HEADER_TABLE_SIZE, which the shim does
//! not watch.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use loona_hpack::{Decoder, Encoder};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};
use tokio::io::{BufReader, DuplexStream, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, UdsConnectInfo};
use tracing::{debug, warn};

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Largest header block accepted, compressed or decoded; a bigger one closes the connection.
const MAX_BLOCK: usize = 1 << 20;
/// SETTINGS_MAX_FRAME_SIZE default, which tonic keeps; re-encoded blocks are cut to it.
const MAX_FRAME: usize = 16_384;
/// Bytes buffered in each direction between the pump task and tonic.
const PIPE: usize = 64 << 10;
/// Largest HPACK table a client may ask the shim's decoder for: the HTTP/2 default
/// SETTINGS_HEADER_TABLE_SIZE, which tonic does not change.
const TABLE_SIZE: usize = 4096;

const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Accepts CRI connections, each piped through the `:authority` rewriter.
pub fn incoming(listener: UnixListener) -> impl Stream<Item = io::Result<Conn>> {
    UnixListenerStream::new(listener).map(|res| res.map(shim))
}

/// The server's end of a shimmed connection; carries the client's unix peer info.
pub struct Conn {
    io: DuplexStream,
    info: UdsConnectInfo,
}

impl Connected for Conn {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> UdsConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Starts the pump task for one client and returns the end that tonic serves.
fn shim(client: UnixStream) -> Conn {
    let info = client.connect_info();
    let (ours, theirs) = tokio::io::duplex(PIPE);
    tokio::spawn(pump(client, ours));
    Conn { io: theirs, info }
}

/// Moves bytes both ways until the server side ends, the client side fails, or the
/// client closes and the server then finishes. Dropping the halves closes both ends.
async fn pump(client: UnixStream, server: DuplexStream) {
    let (client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = tokio::io::split(server);
    let down = async move {
        tokio::io::copy(&mut server_rd, &mut client_wr).await?;
        client_wr.shutdown().await
    };
    tokio::pin!(down);
    let up = async {
        rewrite(BufReader::new(client_rd), &mut server_wr).await?;
        server_wr.shutdown().await
    };
    tokio::select! {
        res = up => match res {
            Ok(()) => {
                let _ = down.await;
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => warn!("closing CRI connection: {e}"),
            Err(e) => debug!("closing CRI connection: {e}"),
        },
        _ = &mut down => {}
    }
}

fn malformed(msg: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed HTTP/2 from client: {msg}"),
    )
}

/// A 9-byte frame header.
struct Head {
    raw: [u8; 9],
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

async fn read_head<R: AsyncRead + Unpin>(rd: &mut R) -> io::Result<Head> {
    let mut raw = [0u8; 9];
    rd.read_exact(&mut raw).await?;
    Ok(Head {
        raw,
        len: usize::from(raw[0]) << 16 | usize::from(raw[1]) << 8 | usize::from(raw[2]),
        kind: raw[3],
        flags: raw[4],
        stream: u32::from_be_bytes([raw[5], raw[6], raw[7], raw[8]]) & 0x7fff_ffff,
    })
}

fn push_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// Copies the client's frames to `wr`, re-encoding every header block.
/// Returns `Ok` when the client closes between frames.
async fn rewrite<R, W>(mut rd: R, wr: &mut W) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; 24];
    rd.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(malformed("bad connection preface"));
    }
    wr.write_all(&preface).await?;
    let mut codec = Codec::new();
    loop {
        if rd.fill_buf().await?.is_empty() {
            return Ok(());
        }
        let head = read_head(&mut rd).await?;
        match head.kind {
            HEADERS => {
                let block = read_block(&mut rd, &head).await?;
                wr.write_all(&codec.reencode(&block)?).await?;
            }
            // A client never sends PUSH_PROMISE, and CONTINUATION only inside a block.
            PUSH_PROMISE | CONTINUATION => return Err(malformed("unexpected frame type")),
            _ => {
                wr.write_all(&head.raw).await?;
                let n = tokio::io::copy_buf(&mut (&mut rd).take(head.len as u64), wr).await?;
                if n != head.len as u64 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
    }
}

/// One header block: a HEADERS frame and its CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

async fn read_block<R: AsyncRead + Unpin>(rd: &mut R, head: &Head) -> io::Result<Block> {
    if head.len > MAX_BLOCK {
        return Err(malformed("header block too large"));
    }
    let mut payload = vec![0u8; head.len];
    rd.read_exact(&mut payload).await?;
    let (mut start, mut end) = (0, payload.len());
    if head.flags & PADDED != 0 {
        let pad = usize::from(
            *payload
                .first()
                .ok_or_else(|| malformed("missing pad length"))?,
        );
        start = 1;
        end = end
            .checked_sub(pad)
            .ok_or_else(|| malformed("padding too long"))?;
    }
    let mut priority = None;
    if head.flags & PRIORITY != 0 {
        let p = payload
            .get(start..start + 5)
            .and_then(|p| <[u8; 5]>::try_from(p).ok());
        priority = Some(p.ok_or_else(|| malformed("short priority"))?);
        start += 5;
    }
    if start > end {
        return Err(malformed("padding too long"));
    }
    payload.truncate(end);
    payload.drain(..start);
    let mut block = Block {
        stream: head.stream,
        end_stream: head.flags & END_STREAM != 0,
        priority,
        fragment: payload,
    };
    let mut flags = head.flags;
    while flags & END_HEADERS == 0 {
        let next = read_head(rd).await?;
        if next.kind != CONTINUATION || next.stream != block.stream {
            return Err(malformed("header block interrupted"));
        }
        let old = block.fragment.len();
        if old + next.len > MAX_BLOCK {
            return Err(malformed("header block too large"));
        }
        block.fragment.resize(old + next.len, 0);
        rd.read_exact(&mut block.fragment[old..]).await?;
        flags = next.flags;
    }
    Ok(block)
}

/// The connection's HPACK state: the client's table to decode, ours to encode.
struct Codec {
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
}

impl Codec {
    fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(TABLE_SIZE);
        let mut encoder = Encoder::new();
        encoder.set_max_table_size(0);
        Codec { decoder, encoder }
    }

    /// Decodes a block, repairs `:authority`, and frames the re-encoded block.
    fn reencode(&mut self, block: &Block) -> io::Result<Vec<u8>> {
        let mut fields = Vec::new();
        let mut size = 0;
        self.decoder
            .decode_with_cb(&block.fragment, |name: Cow<[u8]>, value: Cow<[u8]>| {
                // Counted as HTTP/2 counts a header list, so an HPACK bomb stays bounded.
                size += name.len() + value.len() + 32;
                if size <= MAX_BLOCK {
                    fields.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| malformed(&format!("bad header block: {e}")))?;
        if size > MAX_BLOCK {
            return Err(malformed("header list too large"));
        }
        for (name, value) in &mut fields {
            if name == b":authority" && http::uri::Authority::try_from(&value[..]).is_err() {
                *value = b"localhost".to_vec();
            }
        }
        let mut encoded = Vec::new();
        self.encoder
            .encode_into(fields.iter().map(|(n, v)| (&n[..], &v[..])), &mut encoded)?;

        let mut out = Vec::with_capacity(encoded.len() + 32);
        let prio = block.priority.map_or(0, |_| 5);
        let (chunk, mut rest) = encoded.split_at(encoded.len().min(MAX_FRAME - prio));
        let mut flags = if block.end_stream { END_STREAM } else { 0 };
        if block.priority.is_some() {
            flags |= PRIORITY;
        }
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        push_head(&mut out, prio + chunk.len(), HEADERS, flags, block.stream);
        out.extend_from_slice(block.priority.as_ref().map_or(&[][..], |p| &p[..]));
        out.extend_from_slice(chunk);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
            let flags = if tail.is_empty() { END_HEADERS } else { 0 };
            push_head(&mut out, chunk.len(), CONTINUATION, flags, block.stream);
            out.extend_from_slice(chunk);
            rest = tail;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http::HeaderMap;
    use tokio::sync::mpsc;

    use super::*;

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;
    const WAIT: Duration = Duration::from_secs(20);
    const DATA: u8 = 0x0;
    const SETTINGS: u8 = 0x4;

    /// What the real h2 server saw of one request.
    struct Seen {
        uri: http::Uri,
        headers: HeaderMap,
        body: Vec<u8>,
        trailers: Option<HeaderMap>,
    }

    /// Serves `conn` with a real h2 server that answers every request with "pong" and
    /// the trailer `x-end: done`, and reports what it saw.
    fn serve(conn: Conn) -> mpsc::UnboundedReceiver<Seen> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut h2 = h2::server::handshake(conn).await.unwrap();
            while let Some(Ok((req, mut respond))) = h2.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let (parts, mut body) = req.into_parts();
                    let mut data = Vec::new();
                    while let Some(chunk) = body.data().await {
                        let chunk = chunk.unwrap();
                        body.flow_control().release_capacity(chunk.len()).unwrap();
                        data.extend_from_slice(&chunk);
                    }
                    let trailers = body.trailers().await.unwrap();
                    let (uri, headers) = (parts.uri, parts.headers);
                    tx.send(Seen {
                        uri,
                        headers,
                        body: data,
                        trailers,
                    })
                    .unwrap();
                    let mut send = respond
                        .send_response(http::Response::new(()), false)
                        .unwrap();
                    send.send_data(Bytes::from_static(b"pong"), false).unwrap();
                    let mut end = HeaderMap::new();
                    end.insert("x-end", "done".parse().unwrap());
                    send.send_trailers(end).unwrap();
                });
            }
        });
        rx
    }

    /// Appends an HPACK literal with a literal name: `0x40` indexes it, `0x00` does not.
    fn literal(out: &mut Vec<u8>, kind: u8, name: &str, value: &str) {
        out.push(kind);
        for s in [name, value] {
            out.extend(loona_hpack::encoder::encode_integer(s.len(), 7));
            out.extend_from_slice(s.as_bytes());
        }
    }

    /// A request block with `:authority` set to a socket path; `kind` as in [`literal`].
    fn path_request(kind: u8, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
        literal(
            &mut block,
            kind,
            ":path",
            "/runtime.v1.RuntimeService/Version",
        );
        literal(&mut block, kind, ":authority", "/run/berth/berth.sock");
        literal(&mut block, kind, "content-type", "application/grpc");
        for (name, value) in extra {
            literal(&mut block, 0, name, value);
        }
        block
    }

    /// A hand-driven HTTP/2 client, for what the h2 client will not send.
    struct Raw {
        io: UnixStream,
        dec: Decoder<'static>,
    }

    impl Raw {
        async fn start(io: UnixStream) -> Raw {
            let mut raw = Raw {
                io,
                dec: Decoder::new(),
            };
            raw.io.write_all(PREFACE).await.unwrap();
            raw.frame(SETTINGS, 0, 0, &[]).await;
            raw
        }

        async fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
            let mut out = Vec::new();
            push_head(&mut out, payload.len(), kind, flags, stream);
            out.extend_from_slice(payload);
            self.io.write_all(&out).await.unwrap();
        }

        /// Sends the rest of a request after its header block: a body and trailers.
        async fn finish(&mut self, stream: u32) {
            self.frame(DATA, 0, stream, b"ping").await;
            let mut trailers = Vec::new();
            literal(&mut trailers, 0, "x-trailer", "yes");
            self.frame(HEADERS, END_HEADERS | END_STREAM, stream, &trailers)
                .await;
        }

        /// Reads frames until `stream` ends: its headers, body and trailers.
        async fn response(&mut self, stream: u32) -> (Fields, Vec<u8>, Fields) {
            let (mut blocks, mut body) = (Vec::new(), Vec::new());
            loop {
                let head = read_head(&mut self.io).await.unwrap();
                let mut payload = vec![0; head.len];
                self.io.read_exact(&mut payload).await.unwrap();
                match head.kind {
                    SETTINGS if head.flags == 0 => self.frame(SETTINGS, 1, 0, &[]).await,
                    HEADERS => blocks.push(self.dec.decode(&payload).unwrap()),
                    DATA => body.extend_from_slice(&payload),
                    _ => {}
                }
                if head.stream == stream && head.flags & END_STREAM != 0 {
                    let trailers = blocks.pop().unwrap();
                    return (blocks.pop().unwrap(), body, trailers);
                }
            }
        }
    }

    fn check(seen: Seen, authority: &str) {
        assert_eq!(seen.uri.authority().unwrap(), authority);
        assert_eq!(seen.headers["content-type"], "application/grpc");
        assert_eq!(seen.body, b"ping");
        assert_eq!(seen.trailers.unwrap()["x-trailer"], "yes");
    }

    fn field(name: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
        (name.as_bytes().to_vec(), value.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn socket_path_authority_becomes_localhost() {
        let (client, server) = UnixStream::pair().unwrap();
        let mut seen = serve(shim(server));
        let mut raw = Raw::start(client).await;
        // A table size update, then fields indexed into the client's dynamic table...
        let mut first = loona_hpack::encoder::encode_integer(4096, 5);
        first[0] |= 0x20;
        first.extend(path_request(0x40, &[]));
        // ...that the next requests refer to: :path 64, :authority 63, content-type 62.
        let again = [0x83, 0x86, 0x80 | 64, 0x80 | 63, 0x80 | 62];
        for (stream, block) in [(1, &first[..]), (3, &again), (5, &again)] {
            raw.frame(HEADERS, END_HEADERS, stream, block).await;
            raw.finish(stream).await;
            let (head, body, trailers) = tokio::time::timeout(WAIT, raw.response(stream))
                .await
                .unwrap();
            assert!(head.contains(&field(":status", "200")));
            assert_eq!(body, b"pong");
            assert_eq!(trailers, vec![field("x-end", "done")]);
            let s = seen.recv().await.unwrap();
            assert_eq!(s.uri.path(), "/runtime.v1.RuntimeService/Version");
            check(s, "localhost");
        }
    }

    #[tokio::test]
    async fn continuation_padding_and_priority() {
        let (client, server) = UnixStream::pair().unwrap();
        let mut seen = serve(shim(server));
        let mut raw = Raw::start(client).await;
        let big = "b".repeat(40_000);
        let block = path_request(0, &[("x-big", &big)]);
        // HEADERS padded and with a priority, then two CONTINUATIONs; the shim's output
        // is also too big for one frame.
        let (first, rest) = block.split_at(10_000);
        let (second, third) = rest.split_at(20_000);
        let mut payload = vec![3, 0, 0, 0, 0, 16];
        payload.extend_from_slice(first);
        payload.extend_from_slice(&[0; 3]);
        raw.frame(HEADERS, PADDED | PRIORITY, 1, &payload).await;
        raw.frame(CONTINUATION, 0, 1, second).await;
        raw.frame(CONTINUATION, END_HEADERS, 1, third).await;
        raw.finish(1).await;
        let s = tokio::time::timeout(WAIT, seen.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.headers["x-big"], big.as_str());
        check(s, "localhost");
        // The connection stays usable after the re-split block.
        raw.frame(HEADERS, END_HEADERS, 3, &path_request(0, &[]))
            .await;
        raw.finish(3).await;
        check(seen.recv().await.unwrap(), "localhost");
    }

    #[tokio::test]
    async fn valid_authority_passes_through_incoming() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.sock");
        let mut conns = Box::pin(incoming(UnixListener::bind(&path).unwrap()));
        let client = UnixStream::connect(&path).await.unwrap();
        let conn = conns.next().await.unwrap().unwrap();
        assert!(conn.connect_info().peer_cred.is_some());
        let mut seen = serve(conn);
        let (h2c, connection) = h2::client::handshake(client).await.unwrap();
        tokio::spawn(connection);
        // Huffman-coded, dynamic-table-indexed blocks from a real client, one big enough
        // to need CONTINUATION frames.
        for size in [10, 40_000, 10] {
            let mut h2c = h2c.clone().ready().await.unwrap();
            let req = http::Request::post("http://berth.test:1234/x")
                .header("content-type", "application/grpc")
                .header("x-pad", "p".repeat(size))
                .body(())
                .unwrap();
            let (resp, mut send) = h2c.send_request(req, false).unwrap();
            send.send_data(Bytes::from_static(b"ping"), false).unwrap();
            let mut trailers = HeaderMap::new();
            trailers.insert("x-trailer", "yes".parse().unwrap());
            send.send_trailers(trailers).unwrap();
            let mut body = tokio::time::timeout(WAIT, resp)
                .await
                .unwrap()
                .unwrap()
                .into_body();
            assert_eq!(body.data().await.unwrap().unwrap(), "pong");
            assert!(body.data().await.is_none());
            assert_eq!(body.trailers().await.unwrap().unwrap()["x-end"], "done");
            let s = seen.recv().await.unwrap();
            assert_eq!(s.headers["x-pad"].len(), size);
            check(s, "berth.test:1234");
        }
    }

    /// Feeds `input` to a shim with no server and returns what the server side received
    /// before the shim closed the connection.
    async fn forwarded(input: Vec<u8>) -> Vec<u8> {
        let (client, server) = UnixStream::pair().unwrap();
        let mut conn = shim(server);
        let (mut rd, mut wr) = client.into_split();
        let writer = tokio::spawn(async move { wr.write_all(&input).await });
        let mut got = Vec::new();
        tokio::time::timeout(WAIT, conn.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        // The client is closed too (reset if its bytes were left unread).
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(WAIT, rd.read_to_end(&mut rest))
            .await
            .unwrap();
        assert!(rest.is_empty());
        let _ = writer.await.unwrap();
        got
    }

    #[tokio::test]
    async fn malformed_input_closes_the_connection() {
        assert!(forwarded(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())
            .await
            .is_empty());

        // A header block over the limit, spread over CONTINUATION frames.
        let mut input = PREFACE.to_vec();
        push_head(&mut input, 0, SETTINGS, 0, 0);
        let settings_end = input.len();
        push_head(&mut input, MAX_FRAME, HEADERS, 0, 1);
        input.resize(input.len() + MAX_FRAME, 0x40);
        for _ in 0..MAX_BLOCK / MAX_FRAME {
            push_head(&mut input, MAX_FRAME, CONTINUATION, 0, 1);
            input.resize(input.len() + MAX_FRAME, 0x40);
        }
        assert_eq!(forwarded(input.clone()).await, input[..settings_end]);

        // A small block that decodes to a huge header list.
        input.truncate(settings_end);
        let mut bomb = Vec::new();
        literal(&mut bomb, 0x40, "x-bomb", &"b".repeat(4000));
        bomb.resize(bomb.len() + 300, 0x80 | 62);
        push_head(&mut input, bomb.len(), HEADERS, END_HEADERS, 1);
        input.extend_from_slice(&bomb);
        assert_eq!(forwarded(input.clone()).await, input[..settings_end]);

        // An HPACK index that the client's table does not hold.
        input.truncate(settings_end);
        push_head(&mut input, 1, HEADERS, END_HEADERS, 1);
        input.push(0x80 | 70);
        assert_eq!(forwarded(input.clone()).await, input[..settings_end]);
    }
}
