//! Answering one DNS query from a network's [`Table`], or deciding that it
//! goes upstream, as Docker's embedded resolver does: A and AAAA for the
//! network's names (a known name without addresses of the asked family
//! gets an empty NOERROR answer), PTR for its containers' addresses;
//! every other name and type is forwarded. Parsing and encoding are
//! hickory-proto's.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::table::{Lookup, Table};

/// The TTL of answers from the table (Docker's).
pub const TTL: u32 = 600;

/// What to do with a query.
#[derive(Debug)]
pub enum Reply {
    /// Send these bytes back.
    Answer(Vec<u8>),
    /// Not the network's: ask the upstream servers.
    Forward,
    /// Not a DNS query worth an answer (a response, garbage): drop it.
    Drop,
}

/// Decides what `query` (the wire bytes) gets from `table`.
pub fn answer(query: &[u8], table: Option<&Table>) -> Reply {
    let Ok(msg) = Message::from_vec(query) else {
        // Too broken for an answer with its id: a resolver times out.
        return Reply::Drop;
    };
    if msg.message_type() != MessageType::Query {
        return Reply::Drop;
    }
    if msg.op_code() != OpCode::Query || msg.queries().len() != 1 {
        return encode(error_reply(&msg, ResponseCode::NotImp));
    }
    let q = &msg.queries()[0];
    if q.query_class() != DNSClass::IN {
        return Reply::Forward;
    }
    let Some(table) = table else {
        return Reply::Forward;
    };
    let name = q.name().to_ascii();
    let records: Vec<Record> = match q.query_type() {
        RecordType::A => match table.lookup_v4(&name) {
            Lookup::Found(ips) => ips
                .into_iter()
                .map(|ip| Record::from_rdata(q.name().clone(), TTL, RData::A(A(ip))))
                .collect(),
            Lookup::NotOurs => return Reply::Forward,
        },
        RecordType::AAAA => match table.lookup_v6(&name) {
            Lookup::Found(ips) => ips
                .into_iter()
                .map(|ip| Record::from_rdata(q.name().clone(), TTL, RData::AAAA(AAAA(ip))))
                .collect(),
            Lookup::NotOurs => return Reply::Forward,
        },
        RecordType::PTR => {
            let Some(target) = reverse_ip(&name)
                .and_then(|ip| table.reverse(ip))
                .and_then(|n| Name::from_ascii(format!("{n}.")).ok())
            else {
                return Reply::Forward;
            };
            vec![Record::from_rdata(
                q.name().clone(),
                TTL,
                RData::PTR(PTR(target)),
            )]
        }
        _ => return Reply::Forward,
    };
    let mut reply = response_to(&msg);
    reply.set_authoritative(true);
    reply.add_answers(records);
    encode(reply)
}

/// A SERVFAIL for `query` (no upstream answered), if it parses.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let msg = Message::from_vec(query).ok()?;
    error_reply(&msg, ResponseCode::ServFail).to_vec().ok()
}

fn response_to(msg: &Message) -> Message {
    let mut reply = Message::new();
    reply
        .set_id(msg.id())
        .set_message_type(MessageType::Response)
        .set_op_code(msg.op_code())
        .set_recursion_desired(msg.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(ResponseCode::NoError);
    reply.add_queries(msg.queries().iter().cloned());
    reply
}

fn error_reply(msg: &Message, code: ResponseCode) -> Message {
    let mut reply = response_to(msg);
    reply.set_response_code(code);
    reply
}

fn encode(m: Message) -> Reply {
    match m.to_vec() {
        Ok(b) => Reply::Answer(b),
        Err(_) => Reply::Drop,
    }
}

/// The address of a reverse name (`4.3.2.1.in-addr.arpa.`, or the
/// nibble form under `ip6.arpa.`).
fn reverse_ip(name: &str) -> Option<IpAddr> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if let Some(v4) = name.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<u8> = v4
            .split('.')
            .map(|o| o.parse().ok())
            .collect::<Option<_>>()?;
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(IpAddr::from([octets[0], octets[1], octets[2], octets[3]]));
    }
    let v6 = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = v6
        .split('.')
        .map(|n| u8::from_str_radix(n, 16).ok().filter(|_| n.len() == 1))
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        // rchunks from the end: the last two nibbles are the first byte.
        bytes[i] = (pair[1] << 4) | pair[0];
    }
    Some(IpAddr::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::dns::table::Endpoint;
    use hickory_proto::op::Query;

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(4242).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn table() -> Table {
        Table::new(
            "net",
            &[
                Endpoint {
                    container_id: "a".into(),
                    ips: vec!["10.1.0.2".parse().unwrap()],
                    names: vec!["web".into(), "svc".into()],
                },
                Endpoint {
                    container_id: "b".into(),
                    ips: vec!["10.1.0.3".parse().unwrap()],
                    names: vec!["db".into(), "svc".into()],
                },
            ],
        )
    }

    fn answered(r: Reply) -> Message {
        match r {
            Reply::Answer(b) => Message::from_vec(&b).unwrap(),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    fn a_records(m: &Message) -> Vec<String> {
        m.answers().iter().map(|r| r.data().to_string()).collect()
    }

    #[test]
    fn a_names_of_the_network_are_answered() {
        let t = table();
        let m = answered(answer(&query("WEB.", RecordType::A), Some(&t)));
        assert_eq!(m.id(), 4242);
        assert_eq!(m.message_type(), MessageType::Response);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert_eq!(a_records(&m), ["10.1.0.2"]);
        assert_eq!(m.answers()[0].ttl(), TTL);
        let first = a_records(&answered(answer(&query("svc.", RecordType::A), Some(&t))));
        let second = a_records(&answered(answer(&query("svc.", RecordType::A), Some(&t))));
        assert_eq!(first.len(), 2);
        assert_ne!(first, second, "round robin");
    }

    #[test]
    fn aaaa_of_a_known_name_is_empty_and_others_are_forwarded() {
        let t = table();
        let m = answered(answer(&query("web.", RecordType::AAAA), Some(&t)));
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
        assert!(matches!(
            answer(&query("example.com.", RecordType::A), Some(&t)),
            Reply::Forward
        ));
        assert!(matches!(
            answer(&query("nosuch.", RecordType::A), Some(&t)),
            Reply::Forward
        ));
        assert!(matches!(
            answer(&query("web.", RecordType::MX), Some(&t)),
            Reply::Forward
        ));
        assert!(matches!(
            answer(&query("web.", RecordType::A), None),
            Reply::Forward
        ));
    }

    #[test]
    fn ptr_names_the_container_on_the_network() {
        let t = table();
        let m = answered(answer(
            &query("3.0.1.10.in-addr.arpa.", RecordType::PTR),
            Some(&t),
        ));
        assert_eq!(a_records(&m), ["db.net."]);
        assert!(matches!(
            answer(&query("9.0.1.10.in-addr.arpa.", RecordType::PTR), Some(&t)),
            Reply::Forward
        ));
    }

    #[test]
    fn garbage_is_dropped_and_servfail_keeps_the_id() {
        assert!(matches!(answer(b"\x01\x02", Some(&table())), Reply::Drop));
        let s = Message::from_vec(&servfail(&query("x.", RecordType::A)).unwrap()).unwrap();
        assert_eq!(s.id(), 4242);
        assert_eq!(s.response_code(), ResponseCode::ServFail);
    }

    #[test]
    fn reverse_names_parse() {
        assert_eq!(
            reverse_ip("4.3.2.1.in-addr.arpa."),
            Some("1.2.3.4".parse().unwrap())
        );
        assert_eq!(reverse_ip("3.2.1.in-addr.arpa."), None);
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
        assert_eq!(reverse_ip(v6), Some("2001:db8::1".parse().unwrap()));
    }
}
