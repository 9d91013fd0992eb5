//! A small upstream DNS server for tests of berth's embedded DNS: UDP on a
//! loopback address of the host (127.0.0.x), answering A queries for the
//! names it was given and NXDOMAIN for every other name, counting what it
//! was asked. It runs on a thread of its own (tests block their runtime
//! on CLI calls) and stops when dropped.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

/// The server; its thread ends when this is dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    /// Serves `names` (lower case, with or without the final dot) on
    /// `ip`:<free port>.
    pub fn start(ip: Ipv4Addr, names: &[(&str, Ipv4Addr)]) -> Upstream {
        let sock = std::net::UdpSocket::bind((ip, 0)).expect("bind the upstream DNS socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let addr = sock.local_addr().expect("local addr");
        let names: HashMap<String, Ipv4Addr> = names
            .iter()
            .map(|(n, ip)| (n.trim_end_matches('.').to_ascii_lowercase(), *ip))
            .collect();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(query) = q.queries().first().cloned() else {
                    continue;
                };
                let name = query.name().to_ascii();
                let key = name.trim_end_matches('.').to_ascii_lowercase();
                log.lock().unwrap().push(key.clone());
                let mut r = Message::new();
                r.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_recursion_desired(q.recursion_desired())
                    .set_recursion_available(true);
                r.add_query(query.clone());
                match names.get(&key) {
                    Some(ip) if query.query_type() == RecordType::A => {
                        r.add_answer(Record::from_rdata(
                            query.name().clone(),
                            60,
                            RData::A(A(*ip)),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        r.set_response_code(ResponseCode::NXDomain);
                    }
                }
                if let Ok(b) = r.to_vec() {
                    let _ = sock.send_to(&b, peer);
                }
            }
        });
        Upstream {
            addr,
            asked,
            stop,
            thread: Some(thread),
        }
    }

    /// The names asked so far (lower case, no final dot), in order.
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Asks 127.0.0.11:53 for the A records of `name` from a socket inside the
/// network namespace of process `pid` (a thread of this process that
/// setns()es into it), over TCP or UDP; the addresses answered.
pub fn query_in_netns(pid: u32, name: &str, tcp: bool) -> Vec<Ipv4Addr> {
    use std::io::{Read, Write};
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("open the netns");
    let mut m = Message::new();
    m.set_id(7).set_recursion_desired(true);
    m.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii(format!("{name}.")).expect("name"),
        RecordType::A,
    ));
    let q = m.to_vec().expect("encode");
    let answer = std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let limit = Some(Duration::from_secs(10));
        if tcp {
            let mut s = std::net::TcpStream::connect("127.0.0.11:53").expect("connect over TCP");
            s.set_read_timeout(limit).expect("timeout");
            s.write_all(&(q.len() as u16).to_be_bytes()).expect("write");
            s.write_all(&q).expect("write");
            let mut len = [0u8; 2];
            s.read_exact(&mut len).expect("read the length");
            let mut b = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut b).expect("read the answer");
            b
        } else {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.set_read_timeout(limit).expect("timeout");
            s.send_to(&q, "127.0.0.11:53").expect("send");
            let mut b = vec![0u8; 4096];
            let n = s.recv(&mut b).expect("an answer");
            b.truncate(n);
            b
        }
    })
    .join()
    .expect("query thread");
    let a = Message::from_vec(&answer).expect("decode");
    assert_eq!(a.id(), 7);
    a.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}
