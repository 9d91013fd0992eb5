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
