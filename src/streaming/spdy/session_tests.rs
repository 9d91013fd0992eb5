//! Session behaviour against the test client: stream set-up, half-close,
//! PING, resets, GOAWAY and teardown.

use std::future::Future;
use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::frame::{Frame, GoAwayStatus, RstStatus, FLAG_FIN};
use super::test_client::TestClient;
use super::{IncomingStream, Session, SessionConfig, SessionError, DEFAULT_WINDOW};

/// Turns a hang into a failure instead of a stuck test run.
pub(super) async fn guard<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("test did not finish")
}

pub(super) async fn pair(
    config: SessionConfig,
    flow_control: bool,
    window: u32,
) -> (Session, mpsc::Receiver<IncomingStream>, TestClient) {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let (session, rx) = Session::with_config(server_io, config);
    let client = TestClient::connect(client_io, flow_control, window).await;
    (session, rx, client)
}

async fn default_pair() -> (Session, mpsc::Receiver<IncomingStream>, TestClient) {
    pair(SessionConfig::default(), true, DEFAULT_WINDOW).await
}

#[tokio::test]
async fn exec_like_session_with_half_close() {
    guard(async {
        let (session, mut rx, mut client) = default_pair().await;
        let error = client.open(&[("streamType", "error")], 0).await;
        let stdin = client.open(&[("streamType", "stdin")], 0).await;
        let stdout = client.open(&[("streamType", "stdout")], 0).await;
        let mut accepted = Vec::new();
        for _ in 0..3 {
            accepted.push(rx.recv().await.unwrap());
        }
        let kinds: Vec<_> = accepted
            .iter()
            .map(|s| (s.id, s.header("STREAMTYPE").unwrap()))
            .collect();
        assert_eq!(kinds, [(1, "error"), (3, "stdin"), (5, "stdout")]);
        assert_eq!(
            accepted[0].headers,
            [("streamtype".to_string(), "error".to_string())]
        );
        for s in [&error, &stdin, &stdout] {
            s.wait_reply().await;
        }
        let [mut err_s, mut in_s, mut out_s]: [IncomingStream; 3] = accepted.try_into().unwrap();

        stdin.write_all(b"hello").await;
        stdin.finish().await;
        let mut got = Vec::new();
        in_s.reader.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");

        out_s.writer.write_all(b"world").await.unwrap();
        out_s.writer.shutdown().await.unwrap();
        assert_eq!(stdout.read_to_end().await, b"world");
        let err = out_s.writer.write_all(b"late").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);

        err_s
            .writer
            .write_all(br#"{"status":"Success"}"#)
            .await
            .unwrap();
        drop(err_s);
        assert_eq!(error.read_to_end().await, br#"{"status":"Success"}"#);

        // The server's stdin writer is dropped (FIN); the client closes the
        // directions it never used, as kubectl does when it is done.
        drop(in_s);
        stdout.finish().await;
        error.finish().await;
        session.close();
        let goaway = client.wait_for(|s| s.goaway).await;
        assert_eq!(goaway, (5, GoAwayStatus::OK));
        assert!(rx.recv().await.is_none(), "no streams after GOAWAY");
        drop(out_s);
        session.wait().await;
        client.wait_for(|s| s.eof.then_some(())).await;
        assert_eq!(client.wait_for(|s| Some(s.window_violations)).await, 0);
    })
    .await;
}

#[tokio::test]
async fn ping_both_ways() {
    guard(async {
        let (session, _rx, client) = default_pair().await;
        client.send(Frame::Ping { id: 1 }).await;
        client
            .wait_for(|s| s.pongs.contains(&1).then_some(()))
            .await;
        session.ping().await.unwrap();
        session.ping().await.unwrap();
        // Server PINGs carry even ids; the client saw them as well.
        let pongs = client.wait_for(|s| Some(s.pongs.clone())).await;
        assert_eq!(pongs, [1, 2, 4]);
        client.disconnect().await;
        assert!(matches!(session.ping().await, Err(SessionError::Closed)));
    })
    .await;
}

#[tokio::test]
async fn frames_for_unknown_streams_are_reset() {
    guard(async {
        let (_session, _rx, mut client) = default_pair().await;
        client
            .send(Frame::Data {
                stream_id: 99,
                flags: 0,
                data: "x".into(),
            })
            .await;
        let reset = client.wait_for(|s| s.resets.first().copied()).await;
        assert_eq!(reset, (99, RstStatus::INVALID_STREAM));

        // Even (server-side) ids and ids already used are refused.
        let s1 = client.open(&[], 0).await;
        s1.wait_reply().await;
        let syn = |stream_id| Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers: vec![],
        };
        client.send(syn(2)).await;
        client.send(syn(1)).await;
        let resets = client
            .wait_for(|s| (s.resets.len() == 3).then(|| s.resets.clone()))
            .await;
        assert_eq!(
            resets[1..],
            [
                (2, RstStatus::PROTOCOL_ERROR),
                (1, RstStatus::STREAM_IN_USE)
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn peer_goaway_ends_session_once_streams_close() {
    guard(async {
        let (session, mut rx, mut client) = default_pair().await;
        let s = client.open(&[("streamType", "stdout")], 0).await;
        let mut srv = rx.recv().await.unwrap();
        client
            .send(Frame::GoAway {
                last_good_stream_id: 0,
                status: GoAwayStatus::OK,
            })
            .await;
        assert!(rx.recv().await.is_none());
        // A stream opened after GOAWAY is ignored, the open one still works.
        let late = client.open(&[], 0).await;
        srv.writer.write_all(b"still here").await.unwrap();
        srv.writer.shutdown().await.unwrap();
        assert_eq!(s.read_to_end().await, b"still here");
        assert!(!session.is_closed());
        s.finish().await;
        session.wait().await;
        client.wait_for(|s| s.eof.then_some(())).await;
        let replied = client
            .wait_for(|seen| Some(seen.streams[&late.id].replied))
            .await;
        assert!(!replied);
    })
    .await;
}

#[tokio::test]
async fn resets_fail_both_halves_and_reach_the_peer() {
    guard(async {
        let (_session, mut rx, mut client) = default_pair().await;
        let a = client.open(&[], 0).await;
        let b = client.open(&[], 0).await;
        let mut srv_a = rx.recv().await.unwrap();
        let srv_b = rx.recv().await.unwrap();

        client
            .send(Frame::RstStream {
                stream_id: a.id,
                status: RstStatus::CANCEL,
            })
            .await;
        let err = srv_a.reader.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        let err = srv_a.writer.write_all(b"x").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);

        srv_b.writer.reset(RstStatus::INTERNAL_ERROR);
        let status = client.wait_for(|s| s.streams[&b.id].reset).await;
        assert_eq!(status, RstStatus::INTERNAL_ERROR);
    })
    .await;
}

#[tokio::test]
async fn streams_beyond_the_backlog_are_refused() {
    guard(async {
        let config = SessionConfig {
            accept_backlog: 1,
            ..SessionConfig::default()
        };
        let (_session, mut rx, mut client) = pair(config, true, DEFAULT_WINDOW).await;
        let first = client.open(&[], 0).await;
        let second = client.open(&[], FLAG_FIN).await;
        first.wait_reply().await;
        let reset = client.wait_for(|s| s.resets.first().copied()).await;
        assert_eq!(reset, (second.id, RstStatus::REFUSED_STREAM));
        assert_eq!(rx.recv().await.unwrap().id, first.id);
    })
    .await;
}

#[tokio::test]
async fn abrupt_disconnect_ends_everything() {
    guard(async {
        let (session, mut rx, mut client) = default_pair().await;
        let a = client.open(&[], 0).await;
        let _b = client.open(&[], 0).await;
        let mut srv_a = rx.recv().await.unwrap();
        let mut srv_b = rx.recv().await.unwrap();
        a.wait_reply().await;
        // One server task blocked reading, one blocked on the client's window.
        let reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            srv_a.reader.read_to_end(&mut buf).await
        });
        let writer = tokio::spawn(async move {
            let data = vec![0u8; 4 * DEFAULT_WINDOW as usize];
            srv_b.writer.write_all(&data).await
        });
        client.disconnect().await;

        let err = reader.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        let err = writer.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
        assert!(rx.recv().await.is_none());
        session.closed().await;
        assert!(session.is_closed());
        session.wait().await;
    })
    .await;
}

#[tokio::test]
async fn abort_resets_open_streams_and_closes() {
    guard(async {
        let (session, mut rx, mut client) = default_pair().await;
        let a = client.open(&[], 0).await;
        let _srv_a = rx.recv().await.unwrap();
        session.abort();
        client.wait_for(|s| s.eof.then_some(())).await;
        let reset = client.wait_for(|s| s.streams[&a.id].reset).await;
        assert_eq!(reset, RstStatus::CANCEL);
        assert_eq!(client.wait_for(|s| s.goaway).await, (1, GoAwayStatus::OK));
        session.wait().await;
    })
    .await;
}

#[test]
fn handles_can_move_between_tasks() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Session>();
    send_sync::<IncomingStream>();
}
