//! `HostConfig.LogConfig` (`docker run --log-driver … --log-opt …`): berth
//! writes every container's log itself, read back as Docker's `json-file`;
//! of that driver's options it takes `max-size` and `max-file` (rotation,
//! done by the container's monitor).

use crate::docker::ApiError;
use crate::monitor::log::Rotation;

use super::request::LogConfig;

/// The rotation a create request asks for; `None`: the log only grows.
pub fn rotation(lc: Option<&LogConfig>) -> Result<Option<Rotation>, ApiError> {
    let Some(lc) = lc else { return Ok(None) };
    if !matches!(lc.kind.as_str(), "" | "json-file") {
        return Err(ApiError::bad_request(format!(
            "logging driver {:?} is not supported: berth keeps every container's log as json-file",
            lc.kind
        )));
    }
    let (mut max_size, mut max_files) = (None, None);
    let mut opts: Vec<(&String, &String)> = lc.config.iter().flatten().collect();
    opts.sort();
    for (k, v) in opts {
        match k.as_str() {
            "max-size" => max_size = parse_size(v)?,
            "max-file" => max_files = Some(parse_files(v)?),
            "compress" => {
                return Err(ApiError::bad_request(
                    "log opt 'compress' is not supported: berth does not compress rotated logs",
                ))
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown log opt '{k}' for json-file log driver (berth takes max-size and max-file)"
                )))
            }
        }
    }
    match (max_size, max_files) {
        (Some(max_size), n) => Ok(Some(Rotation {
            max_size,
            max_files: n.unwrap_or(1),
        })),
        (None, Some(n)) if n > 1 => Err(ApiError::bad_request(
            "max-file cannot be greater than 1 when max-size is not set",
        )),
        (None, _) => Ok(None),
    }
}

/// `max-size`: a positive size with an optional unit (`10k`, `10m`, `1g`,
/// binary multiples as Docker's), or `-1` for no limit.
fn parse_size(v: &str) -> Result<Option<u64>, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "invalid log opt max-size={v:?}: want a size such as 10k, 10m or 1g"
        ))
    };
    let t = v.trim();
    if t == "-1" {
        return Ok(None);
    }
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let num: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = num * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(ApiError::bad_request(format!(
            "invalid log opt max-size={v:?}: it must be at least one byte"
        )));
    }
    Ok(Some(bytes as u64))
}

/// `max-file`: how many files are kept, at least one.
fn parse_files(v: &str) -> Result<u32, ApiError> {
    match v.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "invalid log opt max-file={v:?}: max-file must be a whole number of at least 1"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lc(opts: &[(&str, &str)]) -> LogConfig {
        LogConfig {
            kind: "json-file".into(),
            config: Some(
                opts.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
            ),
        }
    }

    #[test]
    fn sizes_and_counts() {
        let r = rotation(Some(&lc(&[("max-size", "10k"), ("max-file", "3")]))).unwrap();
        assert_eq!(
            r,
            Some(Rotation {
                max_size: 10 * 1024,
                max_files: 3
            })
        );
        let r = rotation(Some(&lc(&[("max-size", "1.5m")]))).unwrap();
        assert_eq!(r.map(|r| (r.max_size, r.max_files)), Some((1_572_864, 1)));
        assert_eq!(rotation(Some(&lc(&[("max-size", "-1")]))).unwrap(), None);
        assert_eq!(rotation(Some(&lc(&[]))).unwrap(), None);
        assert_eq!(rotation(None).unwrap(), None);
        assert_eq!(rotation(Some(&lc(&[("max-file", "1")]))).unwrap(), None);
    }

    #[test]
    fn bad_values_are_refused() {
        for opts in [
            &[("max-size", "abc")][..],
            &[("max-size", "0")],
            &[("max-size", "10q")],
            &[("max-size", "10k"), ("max-file", "0")],
            &[("max-size", "10k"), ("max-file", "x")],
            &[("max-file", "3")],
            &[("compress", "true")],
            &[("labels", "a")],
        ] {
            assert!(rotation(Some(&lc(opts))).is_err(), "{opts:?}");
        }
        let syslog = LogConfig {
            kind: "syslog".into(),
            config: None,
        };
        assert!(rotation(Some(&syslog)).is_err());
    }
}
