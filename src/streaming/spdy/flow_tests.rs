//! Flow control: large transfers, slow readers, peers without flow control.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::frame::{Frame, Setting, SETTINGS_INITIAL_WINDOW_SIZE};
use super::session_tests::{guard, pair};
use super::{FlowControl, SessionConfig, DEFAULT_WINDOW};

const MIB: usize = 1024 * 1024;
const WINDOW: usize = DEFAULT_WINDOW as usize;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Lets every other task run until nothing is left to do. The tests run on
/// tokio's single-threaded runtime, so this is a quiescence point, not a delay.
async fn quiesce() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn large_transfers_both_ways_stay_within_windows() {
    guard(async {
        // A 40 KiB client window forces window-limited, odd-sized frames.
        let (_session, mut rx, mut client) = pair(SessionConfig::default(), true, 40 * 1024).await;
        let s = client.open(&[("streamType", "data")], 0).await;
        let srv = rx.recv().await.unwrap();
        let up = pattern(4 * MIB + 7, 1);
        let down = pattern(5 * MIB + 3, 2);

        let (mut srv_r, mut srv_w, expect_down) = (srv.reader, srv.writer, down.clone());
        let server = tokio::spawn(async move {
            let send = async {
                srv_w.write_all(&expect_down).await.unwrap();
                srv_w.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let recv = srv_r.read_to_end(&mut got);
            let ((), read) = tokio::join!(send, recv);
            read.unwrap();
            got
        });
        let send = async {
            s.write_all(&up).await;
            s.finish().await;
        };
        let ((), got_down) = tokio::join!(send, s.read_to_end());
        assert!(got_down == down, "download corrupted");
        assert!(server.await.unwrap() == up, "upload corrupted");

        let (violations, min_stream) = client
            .wait_for(|seen| Some((seen.window_violations, seen.streams[&s.id].min_recv_window)))
            .await;
        assert_eq!(violations, 0);
        assert_eq!(min_stream, 0, "server used the whole window");
    })
    .await;
}

#[tokio::test]
async fn slow_reader_stalls_only_its_own_stream() {
    guard(async {
        let (_session, mut rx, mut client) =
            pair(SessionConfig::default(), true, DEFAULT_WINDOW).await;
        let a = client.open(&[("streamType", "stdin")], 0).await;
        let b = client.open(&[("streamType", "data")], 0).await;
        let mut srv_a = rx.recv().await.unwrap();
        let mut srv_b = rx.recv().await.unwrap();

        // Client to server: nobody reads stream a on the server.
        let slow_up = tokio::spawn(async move {
            a.write_all(&pattern(3 * WINDOW, 3)).await;
            a.finish().await;
            a
        });
        let fast_up = pattern(2 * MIB, 4);
        let push_b = async {
            b.write_all(&fast_up).await;
            b.finish().await;
        };
        let mut got = Vec::new();
        let ((), read) = tokio::join!(push_b, srv_b.reader.read_to_end(&mut got));
        read.unwrap();
        assert!(got == fast_up);
        assert!(!slow_up.is_finished(), "stream a has no window left");
        let mut got = Vec::new();
        srv_a.reader.read_to_end(&mut got).await.unwrap();
        assert!(got == pattern(3 * WINDOW, 3));
        let a = slow_up.await.unwrap();

        // Server to client: the client does not read stream a.
        let mut w_a = srv_a.writer;
        let slow_down = tokio::spawn(async move { w_a.write_all(&pattern(3 * WINDOW, 5)).await });
        let fast_down = pattern(2 * MIB, 6);
        let send_b = async {
            srv_b.writer.write_all(&fast_down).await.unwrap();
            srv_b.writer.shutdown().await.unwrap();
        };
        let ((), got_b) = tokio::join!(send_b, b.read_to_end());
        assert!(got_b == fast_down);
        quiesce().await;
        assert!(!slow_down.is_finished(), "stream a has no window left");
        assert_eq!(a.pending(), WINDOW);
        let mut got = Vec::new();
        while got.len() < 3 * WINDOW {
            got.extend_from_slice(&a.read().await.unwrap());
        }
        assert!(got == pattern(3 * WINDOW, 5));
        slow_down.await.unwrap().unwrap();
        assert_eq!(client.wait_for(|s| Some(s.window_violations)).await, 0);
    })
    .await;
}

#[tokio::test]
async fn peer_without_flow_control_is_not_stalled() {
    guard(async {
        // Like spdystream: no SETTINGS, no WINDOW_UPDATE, windows ignored.
        let (_session, mut rx, mut client) =
            pair(SessionConfig::default(), false, DEFAULT_WINDOW).await;
        let s = client.open(&[("streamType", "stdout")], 0).await;
        let mut srv = rx.recv().await.unwrap();
        let down = pattern(3 * MIB, 7);
        srv.writer.write_all(&down).await.unwrap();
        srv.writer.shutdown().await.unwrap();
        assert!(s.read_to_end().await == down);

        // More than the lenient buffer limit arrives before the server reads.
        let up = pattern(3 * MIB, 8);
        let push = async {
            s.write_all(&up).await;
            s.finish().await;
        };
        let mut got = Vec::new();
        let ((), read) = tokio::join!(push, async {
            quiesce().await;
            srv.reader.read_to_end(&mut got).await
        });
        read.unwrap();
        assert!(got == up);
    })
    .await;
}

#[tokio::test]
async fn enforce_mode_waits_for_a_silent_peer() {
    guard(async {
        let config = SessionConfig {
            flow_control: FlowControl::Enforce,
            ..SessionConfig::default()
        };
        let (_session, mut rx, mut client) = pair(config, false, DEFAULT_WINDOW).await;
        let s = client.open(&[], 0).await;
        let mut srv = rx.recv().await.unwrap();
        let data = pattern(WINDOW + 1000, 9);
        let expect = data.clone();
        let writer = tokio::spawn(async move { srv.writer.write_all(&data).await });
        quiesce().await;
        assert_eq!(s.pending(), WINDOW);
        assert!(!writer.is_finished());
        client
            .send(Frame::WindowUpdate {
                stream_id: s.id,
                delta: 1000,
            })
            .await;
        client
            .send(Frame::WindowUpdate {
                stream_id: 0,
                delta: 1000,
            })
            .await;
        writer.await.unwrap().unwrap();
        let mut got = Vec::new();
        while got.len() < expect.len() {
            got.extend_from_slice(&s.read().await.unwrap());
        }
        assert!(got == expect);
    })
    .await;
}

#[tokio::test]
async fn settings_initial_window_applies_to_open_streams() {
    guard(async {
        let (_session, mut rx, mut client) =
            pair(SessionConfig::default(), true, DEFAULT_WINDOW).await;
        let s = client.open(&[], 0).await;
        let mut srv = rx.recv().await.unwrap();
        s.wait_reply().await;
        // Shrink every stream window to 1 KiB; the open stream goes along.
        let entry = Setting {
            flags: 0,
            id: SETTINGS_INITIAL_WINDOW_SIZE,
            value: 1024,
        };
        client
            .send(Frame::Settings {
                flags: 0,
                entries: vec![entry],
            })
            .await;
        client.send(Frame::Ping { id: 1 }).await;
        client
            .wait_for(|seen| seen.pongs.contains(&1).then_some(()))
            .await;
        let writer = tokio::spawn(async move { srv.writer.write_all(&[1; 4096]).await });
        quiesce().await;
        assert_eq!(s.pending(), 1024);
        assert!(!writer.is_finished());
        let mut total = 0;
        while total < 4096 {
            total += s.read().await.unwrap().len();
        }
        writer.await.unwrap().unwrap();
    })
    .await;
}
