//! Choosing the transport and sub-protocol of a streaming request.
//!
//! SPDY clients send `Upgrade: SPDY/3.1` and offer sub-protocols in
//! `X-Stream-Protocol-Version`; berth picks the best one it supports.
//! WebSocket clients send `Upgrade: websocket` (RFC 6455) and offer
//! sub-protocols in `Sec-WebSocket-Protocol`; as the kubelet does, berth
//! takes the first offer it supports, in the client's order. A client that
//! offers nothing gets the oldest protocol and no protocol header back.

use axum::http::{header, HeaderMap, HeaderValue};

use super::transport::{Negotiated, Transport};
use super::ws::{self, Codec};

/// Exec and attach over SPDY, best first.
pub const EXEC_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// Port-forward over SPDY.
pub const PORT_FORWARD_PROTOCOLS: &[&str] = &["portforward.k8s.io"];

/// Exec and attach over WebSocket, with their message codec.
const WS_EXEC_PROTOCOLS: &[(&str, Codec)] = &[
    ("v5.channel.k8s.io", Codec::Binary),
    ("v4.channel.k8s.io", Codec::Binary),
    ("v4.base64.channel.k8s.io", Codec::Base64),
    ("v3.channel.k8s.io", Codec::Binary),
    ("v2.channel.k8s.io", Codec::Binary),
    ("channel.k8s.io", Codec::Binary),
    ("base64.channel.k8s.io", Codec::Base64),
];
/// What kubectl 1.31+ offers for port-forward: SPDY inside WebSocket.
pub const SPDY_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// Port-forward over WebSocket channels (the kubelet's, plus the SPDY name).
const WS_PORT_FORWARD_PROTOCOLS: &[(&str, Codec)] = &[
    ("v4.channel.k8s.io", Codec::Binary),
    ("v4.base64.channel.k8s.io", Codec::Base64),
    ("portforward.k8s.io", Codec::Binary),
    ("channel.k8s.io", Codec::Binary),
    ("base64.channel.k8s.io", Codec::Base64),
];

pub(super) const SPDY_PROTOCOL_HEADER: &str = "x-stream-protocol-version";
const WS_PROTOCOL_HEADER: &str = "sec-websocket-protocol";

/// The transport a request asks to upgrade to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Upgrade {
    Spdy,
    WebSocket,
}

/// Why a request cannot be upgraded; the text goes back to the client.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// 400: not an upgrade we speak, or a malformed one.
    BadRequest(String),
    /// 403: no sub-protocol in common.
    Forbidden(String),
}

/// Which upgrade the request asks for, if any.
pub(super) fn upgrade_of(h: &HeaderMap) -> Option<Upgrade> {
    if !has_token(h, header::CONNECTION, "upgrade") {
        return None;
    }
    if has_token(h, header::UPGRADE, "spdy/3.1") {
        Some(Upgrade::Spdy)
    } else if has_token(h, header::UPGRADE, "websocket") {
        Some(Upgrade::WebSocket)
    } else {
        None
    }
}

fn has_token(h: &HeaderMap, name: header::HeaderName, want: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
    })
}

/// The client's offers; the header may repeat and values may be comma lists.
pub(super) fn offered(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The best supported SPDY protocol the client offers.
pub(super) fn spdy(offered: &[String], supported: &[&'static str]) -> Option<&'static str> {
    if offered.is_empty() {
        return Some("");
    }
    supported
        .iter()
        .find(|s| offered.iter().any(|o| o == *s))
        .copied()
}

/// Negotiates an upgrade; returns the choice and the headers of the
/// `101 Switching Protocols` answer.
pub(super) fn negotiate(
    upgrade: Upgrade,
    h: &HeaderMap,
    port_forward: bool,
) -> Result<(Negotiated, Vec<(header::HeaderName, HeaderValue)>), Refusal> {
    match upgrade {
        Upgrade::Spdy => {
            let supported = if port_forward {
                PORT_FORWARD_PROTOCOLS
            } else {
                EXEC_PROTOCOLS
            };
            let offers = offered(h, SPDY_PROTOCOL_HEADER);
            let protocol = spdy(&offers, supported).ok_or_else(|| {
                Refusal::Forbidden(format!(
                    "unable to upgrade: none of the offered protocols {offers:?} is supported; \
                     supported: {supported:?}"
                ))
            })?;
            let mut headers = vec![(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"))];
            if !protocol.is_empty() {
                headers.push((
                    header::HeaderName::from_static(SPDY_PROTOCOL_HEADER),
                    HeaderValue::from_static(protocol),
                ));
            }
            let n = Negotiated {
                transport: Transport::Spdy,
                protocol,
            };
            Ok((n, headers))
        }
        Upgrade::WebSocket => websocket(h, port_forward),
    }
}

fn websocket(
    h: &HeaderMap,
    port_forward: bool,
) -> Result<(Negotiated, Vec<(header::HeaderName, HeaderValue)>), Refusal> {
    let version = h
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok());
    if version.map(str::trim) != Some("13") {
        return Err(Refusal::BadRequest(
            "websocket upgrade needs Sec-WebSocket-Version: 13".into(),
        ));
    }
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| Refusal::BadRequest("websocket upgrade without Sec-WebSocket-Key".into()))?;
    let offers = offered(h, WS_PROTOCOL_HEADER);
    let table = if port_forward {
        WS_PORT_FORWARD_PROTOCOLS
    } else {
        WS_EXEC_PROTOCOLS
    };
    let chosen = if offers.is_empty() {
        Some(("", Transport::WebSocket(Codec::Binary)))
    } else {
        offers.iter().find_map(|o| {
            if port_forward && o == SPDY_TUNNEL_PROTOCOL {
                return Some((SPDY_TUNNEL_PROTOCOL, Transport::SpdyOverWebSocket));
            }
            table
                .iter()
                .find(|(p, _)| p == o)
                .map(|(p, c)| (*p, Transport::WebSocket(*c)))
        })
    };
    let Some((protocol, transport)) = chosen else {
        let mut supported: Vec<&str> = table.iter().map(|(p, _)| *p).collect();
        if port_forward {
            supported.insert(0, SPDY_TUNNEL_PROTOCOL);
        }
        return Err(Refusal::Forbidden(format!(
            "unable to upgrade: none of the offered protocols {offers:?} is supported; \
             supported: {supported:?}"
        )));
    };
    let accept = HeaderValue::from_str(&ws::accept_key(key)).expect("base64 is a header value");
    let mut headers = vec![
        (header::UPGRADE, HeaderValue::from_static("websocket")),
        (header::SEC_WEBSOCKET_ACCEPT, accept),
    ];
    if !protocol.is_empty() {
        headers.push((
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        ));
    }
    Ok((
        Negotiated {
            transport,
            protocol,
        },
        headers,
    ))
}

/// The ports of a WebSocket port-forward: `port=` query parameters, each a
/// port or a comma list, as the kubelet reads them.
pub(super) fn query_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let Some(value) = pair.strip_prefix("port=") else {
            continue;
        };
        let value = value.replace("%2C", ",").replace("%2c", ",");
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in value.split(',') {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => return Err(format!("{p:?} is not a port")),
            }
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required for websocket port-forward".into());
    }
    // Port i uses channels 2i and 2i+1, and channel numbers are one byte;
    // base64 mode writes them as one ASCII digit.
    if ports.len() > 5 {
        return Err("at most 5 ports can be forwarded over one websocket".into());
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn ws_headers(protocols: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        if !protocols.is_empty() {
            let v = HeaderValue::from_str(&protocols.join(", ")).unwrap();
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
        h
    }

    #[test]
    fn spdy_negotiation_picks_the_best_common_protocol() {
        let o = offers(&["channel.k8s.io", "v3.channel.k8s.io", "v4.channel.k8s.io"]);
        assert_eq!(spdy(&o, EXEC_PROTOCOLS), Some("v4.channel.k8s.io"));
        let o = offers(&["v4.channel.k8s.io"]);
        assert_eq!(spdy(&o, PORT_FORWARD_PROTOCOLS), None);
        assert_eq!(spdy(&[], EXEC_PROTOCOLS), Some(""));
    }

    #[test]
    fn offers_and_upgrade_headers_are_parsed() {
        let mut h = HeaderMap::new();
        h.append(SPDY_PROTOCOL_HEADER, HeaderValue::from_static("a, b"));
        h.append(SPDY_PROTOCOL_HEADER, HeaderValue::from_static("c"));
        assert_eq!(offered(&h, SPDY_PROTOCOL_HEADER), offers(&["a", "b", "c"]));
        assert_eq!(upgrade_of(&h), None);
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert_eq!(upgrade_of(&h), Some(Upgrade::Spdy));
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert_eq!(upgrade_of(&h), Some(Upgrade::WebSocket));
    }

    #[test]
    fn websocket_takes_the_clients_first_supported_offer() {
        let h = ws_headers(&[
            "v6.channel.k8s.io",
            "v4.base64.channel.k8s.io",
            "v5.channel.k8s.io",
        ]);
        let (n, headers) = negotiate(Upgrade::WebSocket, &h, false).unwrap();
        assert_eq!(n.protocol, "v4.base64.channel.k8s.io");
        assert_eq!(n.transport, Transport::WebSocket(Codec::Base64));
        assert!(n.status_v4());
        let get = |name: header::HeaderName| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_str().unwrap().to_string())
        };
        assert_eq!(
            get(header::SEC_WEBSOCKET_ACCEPT).as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert_eq!(
            get(header::SEC_WEBSOCKET_PROTOCOL).as_deref(),
            Some("v4.base64.channel.k8s.io")
        );

        let (n, headers) = negotiate(Upgrade::WebSocket, &ws_headers(&[]), false).unwrap();
        assert_eq!((n.protocol, n.status_v4()), ("", false));
        assert!(headers
            .iter()
            .all(|(n, _)| n != header::SEC_WEBSOCKET_PROTOCOL));

        let h = ws_headers(&["v5.channel.k8s.io"]);
        let (n, _) = negotiate(Upgrade::WebSocket, &h, false).unwrap();
        assert!(n.close_signal() && n.status_v4());
    }

    #[test]
    fn websocket_port_forward_protocols() {
        let h = ws_headers(&[SPDY_TUNNEL_PROTOCOL, "portforward.k8s.io"]);
        let (n, _) = negotiate(Upgrade::WebSocket, &h, true).unwrap();
        assert_eq!(n.transport, Transport::SpdyOverWebSocket);
        let h = ws_headers(&["portforward.k8s.io"]);
        let (n, _) = negotiate(Upgrade::WebSocket, &h, true).unwrap();
        assert_eq!(n.transport, Transport::WebSocket(Codec::Binary));
        let h = ws_headers(&[SPDY_TUNNEL_PROTOCOL]);
        assert!(matches!(
            negotiate(Upgrade::WebSocket, &h, false),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn malformed_websocket_upgrades_are_refused() {
        let mut h = ws_headers(&[]);
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert!(matches!(
            negotiate(Upgrade::WebSocket, &h, false),
            Err(Refusal::BadRequest(_))
        ));
        let mut h = ws_headers(&[]);
        h.remove(header::SEC_WEBSOCKET_KEY);
        assert!(matches!(
            negotiate(Upgrade::WebSocket, &h, false),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn port_queries() {
        assert_eq!(query_ports(Some("port=80&port=8080")), Ok(vec![80, 8080]));
        assert_eq!(query_ports(Some("x=1&port=80%2C81")), Ok(vec![80, 81]));
        assert!(query_ports(None).is_err());
        assert!(query_ports(Some("port=")).is_err());
        assert!(query_ports(Some("port=0")).is_err());
        assert!(query_ports(Some("port=70000")).is_err());
    }
}
