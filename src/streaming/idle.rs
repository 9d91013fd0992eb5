//! The idle timeout of streaming sessions (`cri.stream_idle_timeout`): a
//! connection with no bytes in either direction for that long is treated as
//! gone, like a client that vanished, so its process, task and descriptors
//! are released. It works below both transports, on the upgraded byte stream.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A duration written as `4h`, `1h30m`, `90s`, `500ms` or a number of
/// seconds; zero disables the timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleTimeout(pub Duration);

impl IdleTimeout {
    /// containerd's default `stream_idle_timeout`.
    pub const DEFAULT: IdleTimeout = IdleTimeout(Duration::from_secs(4 * 3600));

    /// The timeout, or `None` when disabled.
    pub fn get(self) -> Option<Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }
}

impl Default for IdleTimeout {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for IdleTimeout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not a duration like \"4h\", \"1h30m\", \"90s\" or \"500ms\"");
        let s = s.trim();
        if let Ok(secs) = s.parse::<u64>() {
            return Ok(IdleTimeout(Duration::from_secs(secs)));
        }
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = match &rest[..unit_len] {
                "h" => Duration::from_secs(3600),
                "m" => Duration::from_secs(60),
                "s" => Duration::from_secs(1),
                "ms" => Duration::from_millis(1),
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            let part = unit.checked_mul(u32::try_from(n).map_err(|_| bad())?);
            total = part.and_then(|p| total.checked_add(p)).ok_or_else(bad)?;
        }
        if s.is_empty() {
            return Err(bad());
        }
        Ok(IdleTimeout(total))
    }
}

impl fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for IdleTimeout {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IdleTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a duration such as \"4h\" or seconds")
        })? {
            Raw::Seconds(n) => Ok(IdleTimeout(Duration::from_secs(n))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A byte stream that fails once it has been idle for the timeout: reads
/// then return `TimedOut`, which the session layers take as a lost client.
pub struct IdleIo<T> {
    inner: T,
    timeout: Option<Duration>,
    last: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    expired: bool,
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, timeout: IdleTimeout) -> Self {
        let timeout = timeout.get();
        let last = Instant::now();
        IdleIo {
            inner,
            timeout,
            last,
            timer: timeout.map(|t| Box::pin(tokio::time::sleep_until(last + t))),
            expired: false,
        }
    }

    fn expired_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "streaming connection idle for {}",
                IdleTimeout(self.timeout.unwrap_or_default())
            ),
        )
    }

    /// Whether the timeout has passed since the last traffic; re-arms the
    /// timer otherwise. Registers `cx` with the timer.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let (Some(timer), Some(timeout)) = (self.timer.as_mut(), self.timeout) else {
            return false;
        };
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let deadline = self.last + timeout;
            if Instant::now() >= deadline {
                self.expired = true;
                tracing::info!(timeout = %IdleTimeout(timeout), "closing an idle streaming session");
                return true;
            }
            timer.as_mut().reset(deadline);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired {
            return Poll::Ready(Err(self.expired_error()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.last = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.poll_expired(cx) => Poll::Ready(Err(self.expired_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.expired {
            return Poll::Ready(Err(self.expired_error()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last = Instant::now();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn parse(s: &str) -> Result<Duration, String> {
        s.parse::<IdleTimeout>().map(|t| t.0)
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse("4h"), Ok(Duration::from_secs(4 * 3600)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        for bad in ["", "h", "4x", "-1s", "1.5h", "4h m", "99999999999h"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(IdleTimeout::DEFAULT.to_string(), "4h");
        assert_eq!(
            IdleTimeout(Duration::from_millis(5_401_500)).to_string(),
            "1h30m1s500ms"
        );
        assert_eq!(IdleTimeout(Duration::ZERO).get(), None);
    }

    #[test]
    fn yaml_takes_strings_and_seconds() {
        let t: IdleTimeout = serde_yaml::from_str("\"15m\"").unwrap();
        assert_eq!(t.0, Duration::from_secs(900));
        let t: IdleTimeout = serde_yaml::from_str("30").unwrap();
        assert_eq!(t.0, Duration::from_secs(30));
        assert!(serde_yaml::from_str::<IdleTimeout>("soon").is_err());
        assert_eq!(
            serde_yaml::to_string(&IdleTimeout::DEFAULT).unwrap().trim(),
            "4h"
        );
    }

    #[tokio::test]
    async fn traffic_either_way_keeps_the_stream_alive() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = IdleIo::new(a, IdleTimeout(Duration::from_secs(1)));
        let mut buf = [0u8; 8];
        // Writes alone count as traffic: 1.6 s of them outlive a 1 s timeout.
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            io.write_all(b"x").await.unwrap();
            b.read_exact(&mut buf[..1]).await.unwrap();
        }
        b.write_all(b"in").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 2);
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(io.write_all(b"x").await.is_err());
        // Zero disables it.
        let (a, _b) = tokio::io::duplex(64);
        let mut io = IdleIo::new(a, IdleTimeout(Duration::ZERO));
        let read = tokio::time::timeout(Duration::from_millis(1200), io.read(&mut buf)).await;
        assert!(read.is_err(), "still waiting");
    }
}
