//! Docker's time formats: RFC 3339 with nanoseconds (Go's zero time for
//! "never"), and the `since`/`until` forms clients send (unix seconds with an
//! optional fraction, RFC 3339, or a duration like `10m` before now).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Go's zero `time.Time`, which Docker prints for "never".
pub const ZERO: &str = "0001-01-01T00:00:00Z";

/// Unix nanoseconds as Docker prints them (`ZERO` for 0).
pub fn rfc3339(nanos: i64) -> String {
    if nanos <= 0 {
        return ZERO.to_string();
    }
    let t = UNIX_EPOCH + Duration::from_nanos(nanos as u64);
    crate::monitor::log::rfc3339_nano(t)
}

/// Unix nanoseconds now.
pub fn now_nanos() -> i64 {
    crate::engine::records::now_nanos()
}

/// Parses a `since`/`until` value into unix nanoseconds.
pub fn parse_point(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty time".into());
    }
    if let Some(d) = parse_duration(s) {
        return Ok(now - d.as_nanos() as i64);
    }
    if s.bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && !s.contains('-')
    {
        let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
        let secs: i64 = secs.parse().map_err(|_| format!("bad timestamp {s:?}"))?;
        let mut frac = frac.to_string();
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("bad timestamp {s:?}"));
        }
        while frac.len() < 9 {
            frac.push('0');
        }
        let nanos: i64 = frac.parse().unwrap_or(0);
        return Ok(secs * 1_000_000_000 + nanos);
    }
    parse_rfc3339(s).ok_or_else(|| format!("bad timestamp {s:?}"))
}

/// `300ms`, `10s`, `5m`, `1h30m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut rest = s;
    let mut any = false;
    while !rest.is_empty() {
        let c = rest.chars().next()?;
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let (unit, scale) = [
            ("ms", 1e-3),
            ("us", 1e-6),
            ("ns", 1e-9),
            ("h", 3600.0),
            ("m", 60.0),
            ("s", 1.0),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))?;
        let n: f64 = num.parse().ok()?;
        total += Duration::from_secs_f64(n * scale);
        num.clear();
        rest = &rest[unit.len()..];
        any = true;
    }
    (any && num.is_empty()).then_some(total)
}

/// `2006-01-02T15:04:05[.999999999](Z|±hh:mm)` to unix nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut nanos = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let mut frac = s[start..i].to_string();
        frac.truncate(9);
        while frac.len() < 9 {
            frac.push('0');
        }
        nanos = frac.parse().ok()?;
    }
    let offset = match &s[i..] {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let v = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs * 1_000_000_000 + nanos)
}

/// (year, month, day) to days since 1970-01-01, Howard Hinnant's algorithm.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of a `SystemTime` (for Docker's integer fields).
pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        let n = 1_700_000_000_123_456_789;
        let s = rfc3339(n);
        assert_eq!(s, "2023-11-14T22:13:20.123456789Z");
        assert_eq!(parse_rfc3339(&s), Some(n));
        assert_eq!(rfc3339(0), ZERO);
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000_000_000)
        );
    }

    #[test]
    fn since_forms() {
        let now = 2_000_000_000_000_000_000;
        assert_eq!(
            parse_point("1700000000", now),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_point("1700000000.5", now),
            Ok(1_700_000_000_500_000_000)
        );
        assert_eq!(parse_point("10m", now), Ok(now - 600_000_000_000));
        assert_eq!(parse_point("1h30m", now), Ok(now - 5_400_000_000_000));
        assert!(parse_point("yesterday", now).is_err());
    }
}
