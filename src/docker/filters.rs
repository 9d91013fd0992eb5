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
