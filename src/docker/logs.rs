//! `GET /containers/{id}/logs`: the container's CRI log file replayed in
//! Docker's shape — multiplexed frames for non-tty containers, raw bytes for
//! tty ones — with `tail`, `since`/`until`, `timestamps` and `follow`.
//!
//! The CRI file holds records `<ts> <stdout|stderr> <P|F> <text>`; `P`
//! records are pieces of one long line and are joined before output, so a
//! line is one message (one timestamp, one frame). The files rotated out by
//! `--log-opt max-size` are read first, oldest first. Following polls the
//! file, survives rotation and `ReopenContainerLog` (the old file is renamed
//! and a new one made at the same path: the old one is drained, then the
//! next one by identity, see [`crate::engine::logfiles`]), and ends once the container is no longer running and the file is
//! drained — the monitor flushes the log before it records the exit.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::error::{flag, Query};
use super::{time, ApiError, ApiVersion, Shared};
use crate::engine::logfiles::{self, FileId};
use crate::engine::records::ContainerState;

/// Stream ids of Docker's multiplexed framing.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// Docker's "system error" stream, for errors met after the 200 was sent.
pub const SYSERR: u8 = 3;

/// `application/vnd.docker.multiplexed-stream`: frames of [`frame`].
pub const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";
/// `application/vnd.docker.raw-stream`: bytes as the tty gave them.
pub const RAW: &str = "application/vnd.docker.raw-stream";

/// One frame of Docker's multiplexed stream: `[stream, 0, 0, 0, len u32 BE]`
/// then the payload.
pub fn frame(stream: u8, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + data.len());
    b.put_u8(stream);
    b.put_slice(&[0, 0, 0]);
    b.put_u32(data.len() as u32);
    b.put_slice(data);
    b.freeze()
}

/// The content type Docker answers a log or attach stream with: frames for
/// non-tty containers from API 1.42 on, the raw type otherwise.
pub fn stream_content_type(tty: bool, version: Option<ApiVersion>) -> &'static str {
    if !tty && version.is_none_or(|v| v >= ApiVersion(1, 42)) {
        MULTIPLEXED
    } else {
        RAW
    }
}

/// A joined P-part line is cut after this many bytes and sent as it is, so
/// a container printing without newlines cannot grow a buffer without bound.
const MAX_JOINED: usize = 1024 * 1024;
/// How often a follower looks at the file when it has read everything.
const POLL: Duration = Duration::from_millis(100);

pub fn routes() -> Router<Shared> {
    Router::new().route("/containers/{id}/logs", get(logs))
}

/// One log message: a whole line (P records joined), with its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Unix nanoseconds of the line's first record.
    pub ts: i64,
    /// [`STDOUT`] or [`STDERR`].
    pub stream: u8,
    pub line: Vec<u8>,
}

/// Turns CRI log lines into [`Message`]s, joining partial records per stream.
#[derive(Default)]
pub struct Parser {
    /// Pending P parts of stdout and stderr: (first timestamp, bytes).
    pending: [Option<(i64, Vec<u8>)>; 2],
}

impl Parser {
    /// Feeds one line of the file (without its `\n`); malformed lines are skipped.
    pub fn line(&mut self, raw: &[u8]) -> Option<Message> {
        let (ts, rest) = split_word(raw)?;
        let (stream, rest) = split_word(rest)?;
        let (tag, text) = split_word(rest).unwrap_or((rest, &[][..]));
        let ts = time::parse_rfc3339(std::str::from_utf8(ts).ok()?)?;
        let stream = match stream {
            b"stdout" => STDOUT,
            b"stderr" => STDERR,
            _ => return None,
        };
        // Tags are `:`-separated; the first says partial or full.
        let partial = tag.split(|b| *b == b':').next() == Some(b"P");
        let slot = &mut self.pending[usize::from(stream - 1)];
        let (first_ts, mut line) = slot.take().unwrap_or((ts, Vec::new()));
        line.extend_from_slice(text);
        if partial {
            if line.len() < MAX_JOINED {
                *slot = Some((first_ts, line));
                return None;
            }
        } else {
            line.push(b'\n');
        }
        Some(Message {
            ts: first_ts,
            stream,
            line,
        })
    }
}

impl Parser {
    /// The partial records still pending (a last line the container ended
    /// without a newline), as they are: no newline is added.
    pub fn flush(&mut self) -> Vec<Message> {
        let mut out: Vec<Message> = self
            .pending
            .iter_mut()
            .zip([STDOUT, STDERR])
            .filter_map(|(slot, stream)| slot.take().map(|(ts, line)| Message { ts, stream, line }))
            .collect();
        out.sort_by_key(|m| m.ts);
        out
    }
}

/// The first space-separated word and the rest after the space.
fn split_word(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|c| *c == b' ')?;
    Some((&b[..i], &b[i + 1..]))
}

/// Which messages to send and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub stdout: bool,
    pub stderr: bool,
    /// Keep messages at or after this (unix nanos; 0: all).
    pub since: i64,
    /// Stop at messages after this (0: never).
    pub until: i64,
    pub timestamps: bool,
    /// Last N messages of the file; `None`: all.
    pub tail: Option<usize>,
    /// Frames (non-tty) or raw bytes (tty).
    pub mux: bool,
}

impl Options {
    /// Before the tail is applied: whether a message is in the time window.
    fn in_window(&self, m: &Message) -> bool {
        m.ts >= self.since
    }

    fn past_until(&self, m: &Message) -> bool {
        self.until > 0 && m.ts > self.until
    }

    /// The bytes sent for a message, `None` when its stream is not wanted.
    pub fn encode(&self, m: &Message) -> Option<Bytes> {
        let wanted = match m.stream {
            STDOUT => self.stdout,
            _ => self.stderr,
        };
        if !wanted {
            return None;
        }
        let mut payload = Vec::with_capacity(m.line.len() + 32);
        if self.timestamps {
            payload.extend_from_slice(time::rfc3339(m.ts).as_bytes());
            payload.push(b' ');
        }
        payload.extend_from_slice(&m.line);
        Some(if self.mux {
            frame(m.stream, &payload)
        } else {
            Bytes::from(payload)
        })
    }
}

/// Keeps the last `n` items (all with `None`).
pub struct Tail<T> {
    keep: Option<usize>,
    items: VecDeque<T>,
}

impl<T> Tail<T> {
    pub fn new(keep: Option<usize>) -> Self {
        Tail {
            keep,
            items: VecDeque::new(),
        }
    }

    pub fn push(&mut self, t: T) {
        if self.keep == Some(0) {
            return;
        }
        self.items.push_back(t);
        if self.keep.is_some_and(|k| self.items.len() > k) {
            self.items.pop_front();
        }
    }

    pub fn into_items(self) -> VecDeque<T> {
        self.items
    }
}

/// `tail=N|all`: Docker reads anything that is not a number as "all", and a
/// negative number too.
pub fn parse_tail(s: Option<&str>) -> Option<usize> {
    s.and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|n| usize::try_from(n).ok())
}

#[derive(Deserialize)]
struct Params {
    follow: Option<String>,
    stdout: Option<String>,
    stderr: Option<String>,
    since: Option<String>,
    until: Option<String>,
    timestamps: Option<String>,
    tail: Option<String>,
}

fn point(name: &str, v: Option<&str>) -> Result<i64, ApiError> {
    match v.map(str::trim) {
        None | Some("") | Some("0") => Ok(0),
        Some(v) => time::parse_point(v, time::now_nanos())
            .map_err(|e| ApiError::bad_request(format!("invalid value for \"{name}\": {e}"))),
    }
}

async fn logs(
    State(d): State<Shared>,
    Path(id): Path<String>,
    version: Option<Extension<ApiVersion>>,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let (stdout, stderr) = (flag(&p.stdout), flag(&p.stderr));
    if !stdout && !stderr {
        return Err(ApiError::bad_request("You must choose at least one stream"));
    }
    let since = point("since", p.since.as_deref())?;
    let until = point("until", p.until.as_deref())?;
    let rec = d.container(&id)?;
    let Some(path) = rec.log_path.clone() else {
        return Err(ApiError::new(
            http::StatusCode::NOT_IMPLEMENTED,
            format!(
                "configured logging driver does not support reading: container {} has no log file",
                rec.id
            ),
        ));
    };
    let tty = rec.config.tty;
    let opts = Options {
        stdout,
        stderr,
        since,
        until,
        timestamps: flag(&p.timestamps),
        tail: parse_tail(p.tail.as_deref()),
        mux: !tty,
    };
    // Docker follows only a running container's log.
    let follow = flag(&p.follow) && rec.state == ContainerState::Running;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let reader = Reader {
        d: d.clone(),
        id: rec.id.clone(),
        path,
        opts,
        tx,
    };
    tokio::spawn(async move {
        if let Err(e) = reader.run(follow).await {
            tracing::warn!(container = %reader.id, "failed to read the log: {e}");
            reader.send_error(&e).await;
        }
    });
    let stream =
        tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>);
    let content_type = stream_content_type(tty, version.map(|Extension(v)| v));
    Response::builder()
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(format!("failed to build the log response: {e}")))
}

struct Reader {
    d: Shared,
    id: String,
    path: PathBuf,
    opts: Options,
    tx: mpsc::Sender<Bytes>,
}

/// One log file being read, with the messages its lines parse to.
struct FileCursor(logfiles::LogCursor);

impl FileCursor {
    /// The log file after `after` (the oldest for `None`), if any.
    fn next(path: &std::path::Path, after: Option<FileId>) -> std::io::Result<Option<FileCursor>> {
        Ok(logfiles::LogCursor::next(path, after)?.map(FileCursor))
    }

    fn id(&self) -> FileId {
        self.0.id()
    }

    /// Parses what is there now; an unterminated last line waits for its end.
    async fn drain(
        &mut self,
        parser: &mut Parser,
        out: &mut impl FnMut(Message),
    ) -> std::io::Result<()> {
        self.0
            .drain(&mut |l| {
                if let Some(m) = parser.line(l) {
                    out(m)
                }
            })
            .await
    }

    fn replaced(&self, path: &std::path::Path) -> bool {
        self.0.replaced(path)
    }
}

impl Reader {
    async fn run(&self, follow: bool) -> std::io::Result<()> {
        // Never started: no file yet, nothing to show.
        let mut cursor = FileCursor::next(&self.path, None)?;
        let mut parser = Parser::default();
        // The backlog: the files as they are now (rotated ones first, oldest
        // first), tail applied, then the window.
        if let Some(mut c) = cursor.take() {
            let mut tail = Tail::new(self.opts.tail);
            c.drain(&mut parser, &mut |m| tail.push(m)).await?;
            while let Some(next) = FileCursor::next(&self.path, Some(c.id()))? {
                // What was written before the rotation, then the next file.
                c.drain(&mut parser, &mut |m| tail.push(m)).await?;
                c = next;
                c.drain(&mut parser, &mut |m| tail.push(m)).await?;
            }
            cursor = Some(c);
            if !follow {
                for m in parser.flush() {
                    tail.push(m);
                }
            }
            if !self.send_all(tail.into_items()).await {
                return Ok(());
            }
        }
        if !follow {
            return Ok(());
        }
        loop {
            // Everything read: has the file been rotated (maybe more than
            // once since the last look), or has the container ended?
            if cursor.as_ref().is_none_or(|c| c.replaced(&self.path)) {
                while let Some(next) =
                    FileCursor::next(&self.path, cursor.as_ref().map(|c| c.id()))?
                {
                    // The old file gets no more bytes once renamed: drain it, go on.
                    if let Some(mut old) = cursor.take() {
                        if !self.follow_drain(&mut old, &mut parser).await? {
                            return Ok(());
                        }
                    }
                    cursor = Some(next);
                }
            }
            let running = self
                .d
                .engine
                .refreshed(&self.id)
                .ok()
                .flatten()
                .is_some_and(|r| r.state == ContainerState::Running);
            // The monitor records the exit after flushing the log: a read
            // after seeing the exit gets everything.
            if let Some(c) = cursor.as_mut() {
                if !self.follow_drain(c, &mut parser).await? {
                    return Ok(());
                }
            }
            if !running {
                self.send_all(parser.flush()).await;
                return Ok(());
            }
            if self.opts.until > 0 && time::now_nanos() > self.opts.until {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = self.tx.closed() => return Ok(()),
            }
        }
    }

    /// Sends what a followed file has now; false when the stream is over.
    async fn follow_drain(&self, c: &mut FileCursor, parser: &mut Parser) -> std::io::Result<bool> {
        let mut msgs = Vec::new();
        c.drain(parser, &mut |m| msgs.push(m)).await?;
        Ok(self.send_all(msgs).await)
    }

    /// Sends messages in the window; false once the client left or `until` passed.
    async fn send_all(&self, msgs: impl IntoIterator<Item = Message>) -> bool {
        for m in msgs {
            if self.opts.past_until(&m) {
                return false;
            }
            if !self.opts.in_window(&m) {
                continue;
            }
            if let Some(b) = self.opts.encode(&m) {
                if self.tx.send(b).await.is_err() {
                    return false;
                }
            }
        }
        true
    }

    /// An error after the 200 went out travels in band, as Docker's does.
    async fn send_error(&self, e: &std::io::Error) {
        let text = format!(
            "Error grabbing logs: failed to read {}: {e}\n",
            self.path.display()
        );
        let b = if self.opts.mux {
            frame(SYSERR, text.as_bytes())
        } else {
            Bytes::from(text)
        };
        let _ = self.tx.send(b).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &str) -> Vec<Message> {
        let mut p = Parser::default();
        text.lines().filter_map(|l| p.line(l.as_bytes())).collect()
    }

    const T0: &str = "2024-01-01T00:00:00.000000001Z";
    const T0_NANOS: i64 = 1_704_067_200_000_000_001;

    #[test]
    fn full_and_partial_records_become_lines() {
        let text = format!(
            "{T0} stdout P hel\n\
             2024-01-01T00:00:01Z stderr F oops\n\
             2024-01-01T00:00:02Z stdout P lo \n\
             2024-01-01T00:00:03Z stdout F world\n\
             2024-01-01T00:00:04Z stdout F \n\
             garbage line\n\
             2024-01-01T00:00:05Z weird F x\n"
        );
        let m = parse_all(&text);
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m[0].stream, STDERR);
        assert_eq!(m[0].line, b"oops\n");
        // The joined line keeps the first part's time.
        assert_eq!(m[1].stream, STDOUT);
        assert_eq!(m[1].line, b"hello world\n");
        assert_eq!(m[1].ts, T0_NANOS);
        // An empty line stays a line.
        assert_eq!(m[2].line, b"\n");
        // A last partial line comes out as it is, without a newline.
        let mut p = Parser::default();
        assert!(p.line(format!("{T0} stdout P abc").as_bytes()).is_none());
        let m = p.flush();
        assert_eq!((m.len(), m[0].line.as_slice()), (1, &b"abc"[..]));
        assert!(p.flush().is_empty());
    }

    #[test]
    fn runaway_partial_lines_are_cut() {
        let mut p = Parser::default();
        let part = "x".repeat(MAX_JOINED / 2 + 1);
        assert!(p.line(format!("{T0} stdout P {part}").as_bytes()).is_none());
        let m = p.line(format!("{T0} stdout P {part}").as_bytes()).unwrap();
        assert_eq!(m.line.len(), 2 * part.len(), "sent without a newline");
        assert!(p.line(format!("{T0} stdout F y").as_bytes()).unwrap().line == b"y\n");
    }

    #[test]
    fn frames_have_docker_headers() {
        let f = frame(STDERR, b"abc");
        assert_eq!(&f[..], &[2, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c']);
        let big = frame(STDOUT, &vec![0u8; 70_000]);
        assert_eq!(&big[..8], &[1, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn encoding_picks_streams_and_prefixes_timestamps() {
        let m = Message {
            ts: T0_NANOS,
            stream: STDOUT,
            line: b"hi\n".to_vec(),
        };
        let mut o = Options {
            stdout: true,
            stderr: false,
            since: 0,
            until: 0,
            timestamps: true,
            tail: None,
            mux: false,
        };
        assert_eq!(o.encode(&m).unwrap(), Bytes::from(format!("{T0} hi\n")));
        o.mux = true;
        o.timestamps = false;
        assert_eq!(o.encode(&m).unwrap(), frame(STDOUT, b"hi\n"));
        let e = Message {
            stream: STDERR,
            ..m
        };
        assert_eq!(o.encode(&e), None, "stderr not asked for");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(parse_tail(Some("2")), Some(2));
        assert_eq!(parse_tail(Some("all")), None);
        assert_eq!(parse_tail(Some("-1")), None);
        assert_eq!(parse_tail(None), None);
        let mut t = Tail::new(Some(2));
        (1..=5).for_each(|i| t.push(i));
        assert_eq!(t.into_items(), [4, 5]);
        let mut t = Tail::new(Some(0));
        t.push(1);
        assert!(t.into_items().is_empty());
        let mut t = Tail::new(None);
        (1..=3).for_each(|i| t.push(i));
        assert_eq!(t.into_items().len(), 3);
    }

    #[test]
    fn content_types_follow_tty_and_version() {
        assert_eq!(stream_content_type(false, None), MULTIPLEXED);
        assert_eq!(
            stream_content_type(false, Some(ApiVersion(1, 42))),
            MULTIPLEXED
        );
        assert_eq!(stream_content_type(false, Some(ApiVersion(1, 41))), RAW);
        assert_eq!(stream_content_type(true, None), RAW);
    }

    #[tokio::test]
    async fn cursor_waits_for_the_end_of_a_line() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut f = std::fs::File::create(&path).unwrap();
        write!(f, "{T0} stdout F one\n{T0} stdout F tw").unwrap();
        let mut c = FileCursor::next(&path, None).unwrap().unwrap();
        let mut p = Parser::default();
        let mut got = vec![];
        c.drain(&mut p, &mut |m| got.push(m.line)).await.unwrap();
        assert_eq!(got, [b"one\n".to_vec()]);
        writeln!(f, "o").unwrap();
        c.drain(&mut p, &mut |m| got.push(m.line)).await.unwrap();
        assert_eq!(got, [b"one\n".to_vec(), b"two\n".to_vec()]);
        assert!(!c.replaced(&path));
        std::fs::rename(&path, dir.path().join("c.log.1")).unwrap();
        std::fs::File::create(&path).unwrap();
        assert!(c.replaced(&path), "rotation is noticed");
    }
}
