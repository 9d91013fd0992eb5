//! Docker's `filters` query parameter, shared by every list and prune route:
//! parsing, refusing unknown keys, and `label` matching.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::ApiError;

/// Filter key → the values asked for.
pub type Filters = BTreeMap<String, Vec<String>>;

/// Docker's filters parameter: `{"key":["value"]}` or the older
/// `{"key":{"value":true}}` (a `false` entry asks for nothing).
pub fn parse_filters(raw: Option<&str>) -> Result<Filters, ApiError> {
    let raw = raw.unwrap_or("").trim();
    let mut out = BTreeMap::new();
    if raw.is_empty() {
        return Ok(out);
    }
    let v: Map<String, Value> = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
    for (k, vals) in v {
        let list: Vec<String> = match vals {
            Value::Object(m) => m
                .into_iter()
                .filter(|(_, on)| on.as_bool() != Some(false))
                .map(|(v, _)| v)
                .collect(),
            Value::Array(a) => a
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(ApiError::bad_request(format!(
                        "invalid filter value for {k:?}: {other}"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid filter value for {k:?}: {other}"
                )))
            }
        };
        out.insert(k, list);
    }
    Ok(out)
}

/// Refuses filter keys outside `allowed`, as Docker does.
pub fn check_filter_keys(f: &Filters, allowed: &[&str]) -> Result<(), ApiError> {
    match f.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
        None => Ok(()),
    }
}

/// A `label` filter value, `key` or `key=value`, against labels looked up
/// with `get`.
pub fn label_matches<'a>(get: impl Fn(&str) -> Option<&'a str>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => get(k) == Some(v),
        None => get(want).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_by_key_or_pair() {
        let labels = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let get = |k: &str| labels.get(k).map(String::as_str);
        assert!(label_matches(get, "a"));
        assert!(label_matches(get, "a=1"));
        assert!(!label_matches(get, "a=2"));
        assert!(!label_matches(get, "b"));
    }

    #[test]
    fn keys_outside_the_allowed_ones_are_refused() {
        let f = parse_filters(Some(r#"{"status":["running"],"x":{"y":true,"z":false}}"#)).unwrap();
        assert_eq!(f["x"], ["y"]);
        assert!(check_filter_keys(&f, &["status"]).is_err());
        assert!(check_filter_keys(&f, &["status", "x"]).is_ok());
        assert!(parse_filters(Some(r#"{"a":"b"}"#)).is_err());
    }
}

/// The container ports (`port/proto`) a `publish` or `expose` filter of
/// `docker ps` names: `80`, `80/udp`, or a range `8000-8080[/proto]`, tcp
/// when no protocol is given (as Docker reads them).
pub fn port_filter(
    key: &str,
    values: Option<&Vec<String>>,
) -> Result<std::collections::HashSet<String>, ApiError> {
    let mut out = std::collections::HashSet::new();
    for v in values.into_iter().flatten() {
        if v.contains(':') {
            return Err(ApiError::bad_request(format!(
                "filter for '{key}' should not contain ':': {v}"
            )));
        }
        let (ports, proto) = v.split_once('/').unwrap_or((v.as_str(), "tcp"));
        let proto = if proto.is_empty() { "tcp" } else { proto };
        let bad = || {
            ApiError::bad_request(format!(
                "error while looking up for {key} {v}: invalid port range: {ports}"
            ))
        };
        let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
        let lo = lo.parse::<u16>().map_err(|_| bad())?;
        let hi = hi.parse::<u16>().map_err(|_| bad())?;
        if hi < lo {
            return Err(bad());
        }
        out.extend((lo..=hi).map(|p| format!("{p}/{}", proto.to_ascii_lowercase())));
    }
    Ok(out)
}

#[cfg(test)]
mod port_filter_tests {
    use super::port_filter;

    #[test]
    fn ports_ranges_and_protocols() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let got = port_filter("publish", Some(&v(&["80", "53/udp", "8000-8002/tcp"]))).unwrap();
        let mut got: Vec<_> = got.into_iter().collect();
        got.sort();
        assert_eq!(
            got,
            ["53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp"]
        );
        for bad in ["1:80", "x", "90-80", "70000"] {
            assert!(port_filter("expose", Some(&v(&[bad]))).is_err(), "{bad}");
        }
        assert!(port_filter("expose", None).unwrap().is_empty());
    }
}
