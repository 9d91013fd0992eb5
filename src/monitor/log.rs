//! The CRI container log format, as the kubelet reads it:
//! `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <message>\n`.
//!
//! A line longer than the line limit is split into `P` (partial) records
//! followed by a final `F` record; a tail without a newline when the stream
//! ends is written as a `P` record (as conmon does), so readers do not
//! invent the newline the container never printed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The longest message in one record (containerd uses 16 KiB too).
pub const MAX_LINE: usize = 16 * 1024;

/// Which stream a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Splits one stream's bytes into CRI log records.
pub struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    pub fn new(stream: Stream) -> Self {
        Self::with_limit(stream, MAX_LINE)
    }

    pub fn with_limit(stream: Stream, max: usize) -> Self {
        LineSplitter {
            stream,
            pending: Vec::new(),
            max,
        }
    }

    /// Feeds bytes read from the container; complete records go to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut impl RecordSink) -> io::Result<()> {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.push(&data[..i], out)?;
                    out.record(self.stream, false, &self.pending)?;
                    self.pending.clear();
                    data = &data[i + 1..];
                }
                None => {
                    self.push(data, out)?;
                    data = &[];
                }
            }
        }
        Ok(())
    }

    /// The stream ended: a pending tail (no newline) is written as a partial record.
    pub fn finish(&mut self, out: &mut impl RecordSink) -> io::Result<()> {
        if !self.pending.is_empty() {
            out.record(self.stream, true, &self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Appends to the pending line, flushing `P` records whenever it reaches the limit.
    fn push(&mut self, mut bytes: &[u8], out: &mut impl RecordSink) -> io::Result<()> {
        while self.pending.len() + bytes.len() > self.max {
            let take = self.max - self.pending.len();
            self.pending.extend_from_slice(&bytes[..take]);
            out.record(self.stream, true, &self.pending)?;
            self.pending.clear();
            bytes = &bytes[take..];
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }
}

/// Where records go.
pub trait RecordSink {
    fn record(&mut self, stream: Stream, partial: bool, msg: &[u8]) -> io::Result<()>;
}

/// Writes records to a file (or any writer) in the CRI format.
pub struct CriLogWriter<W: RecordOut> {
    pub out: W,
}

/// Takes whole records (one line each, newline included).
pub trait RecordOut {
    fn put(&mut self, line: &[u8]) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

impl RecordOut for Vec<u8> {
    fn put(&mut self, line: &[u8]) -> io::Result<()> {
        self.extend_from_slice(line);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: RecordOut> RecordSink for CriLogWriter<W> {
    fn record(&mut self, stream: Stream, partial: bool, msg: &[u8]) -> io::Result<()> {
        let mut line = Vec::with_capacity(msg.len() + 48);
        line.extend_from_slice(rfc3339_nano(std::time::SystemTime::now()).as_bytes());
        line.push(b' ');
        line.extend_from_slice(stream.as_str().as_bytes());
        line.extend_from_slice(if partial { b" P " } else { b" F " });
        line.extend_from_slice(msg);
        line.push(b'\n');
        // One write per record so concurrent stdout/stderr writers never interleave.
        self.out.put(&line)
    }
}

/// Docker's `--log-opt max-size=… --log-opt max-file=…`: the log is kept as
/// at most `max_files` files (`0.log`, `0.log.1`, … oldest last), each at
/// most `max_size` bytes (a single record longer than that gets a file of
/// its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub max_size: u64,
    pub max_files: u32,
}

/// The name of the `n`th older file of `path` (`0.log.1` for 1).
pub fn rotated_name(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The log file the monitor appends to, rotated when a record would take it
/// past the size limit. Records are never split across files: a record goes
/// whole into the file it starts in, so no byte is lost or written twice.
pub struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Option<Rotation>,
}

impl LogFile {
    /// Opens (or creates) `path` for appending; an existing file's size counts.
    pub fn open(path: &Path, rotation: Option<Rotation>) -> io::Result<LogFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
        })
    }

    /// Shifts `path.1`… up by one (the oldest beyond `max_files - 1` goes),
    /// renames `path` to `path.1` and starts an empty `path`.
    fn rotate(&mut self, r: Rotation) -> io::Result<()> {
        self.file.flush()?;
        if r.max_files <= 1 {
            // Only one file is kept: it starts again, empty.
            std::fs::remove_file(&self.path).or_else(not_found_ok)?;
        } else {
            // `path.(max_files-1)` is replaced by the rename onto it.
            for n in (1..r.max_files - 1).rev() {
                std::fs::rename(rotated_name(&self.path, n), rotated_name(&self.path, n + 1))
                    .or_else(not_found_ok)?;
            }
            std::fs::rename(&self.path, rotated_name(&self.path, 1)).or_else(not_found_ok)?;
        }
        // Files left from a larger max-file of an earlier config are not ours to keep.
        let mut n = r.max_files.max(1);
        while std::fs::remove_file(rotated_name(&self.path, n)).is_ok() {
            n += 1;
        }
        *self = LogFile::open(&self.path, Some(r))?;
        Ok(())
    }
}

fn not_found_ok(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

impl RecordOut for LogFile {
    fn put(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64;
        if let Some(r) = self.rotation {
            if self.size > 0 && self.size + len > r.max_size {
                self.rotate(r)?;
            }
        }
        self.file.write_all(line)?;
        self.size += len;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// `2006-01-02T15:04:05.999999999Z` (UTC, trailing zeros of the fraction kept, as CRI-O does).
pub fn rfc3339_nano(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<(Stream, bool, String)>);
    impl RecordSink for Collect {
        fn record(&mut self, s: Stream, p: bool, m: &[u8]) -> io::Result<()> {
            self.0.push((s, p, String::from_utf8_lossy(m).into_owned()));
            Ok(())
        }
    }

    fn run(limit: usize, chunks: &[&str]) -> Vec<(bool, String)> {
        let mut s = LineSplitter::with_limit(Stream::Stdout, limit);
        let mut c = Collect::default();
        for ch in chunks {
            s.feed(ch.as_bytes(), &mut c).unwrap();
        }
        s.finish(&mut c).unwrap();
        c.0.into_iter().map(|(_, p, m)| (p, m)).collect()
    }

    #[test]
    fn lines_across_chunks() {
        assert_eq!(
            run(100, &["hel", "lo\nwor", "ld\n\n", "tail"]),
            vec![
                (false, "hello".into()),
                (false, "world".into()),
                (false, "".into()),
                // No newline at the end: a partial record.
                (true, "tail".into())
            ]
        );
    }

    #[test]
    fn long_lines_are_split_with_partial_records() {
        assert_eq!(
            run(4, &["abcdefghij\n", "xy"]),
            vec![
                (true, "abcd".into()),
                (true, "efgh".into()),
                (false, "ij".into()),
                (true, "xy".into())
            ]
        );
        // A line of exactly the limit is one full record.
        assert_eq!(run(4, &["abcd\n"]), vec![(false, "abcd".into())]);
    }

    #[test]
    fn record_format() {
        let mut w = CriLogWriter {
            out: Vec::<u8>::new(),
        };
        w.record(Stream::Stderr, true, b"x y").unwrap();
        let s = String::from_utf8(w.out).unwrap();
        let parts: Vec<&str> = s.splitn(4, ' ').collect();
        assert_eq!(parts[1..], ["stderr", "P", "x y\n"]);
        assert_eq!(
            parts[0].len(),
            "2006-01-02T15:04:05.123456789Z".len(),
            "{s}"
        );
    }

    #[test]
    fn timestamps() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20.000000005Z");
        let leap = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_nano(leap), "2000-02-29T00:00:00.000000000Z");
    }

    fn lines_of(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn rotation_keeps_max_files_of_at_most_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let r = Rotation {
            max_size: 400,
            max_files: 3,
        };
        let mut w = CriLogWriter {
            out: LogFile::open(&path, Some(r)).unwrap(),
        };
        for i in 0..100 {
            w.record(Stream::Stdout, false, format!("line-{i:03}").as_bytes())
                .unwrap();
        }
        w.out.flush().unwrap();
        assert!(!rotated_name(&path, 3).exists(), "a fourth file was kept");
        let mut all = Vec::new();
        for p in [rotated_name(&path, 2), rotated_name(&path, 1), path.clone()] {
            let len = std::fs::metadata(&p).unwrap().len();
            assert!(len <= 400, "{} has {len} bytes", p.display());
            all.extend(lines_of(&p));
        }
        // The files, oldest first, hold the last lines in order, no gap, no repeat.
        let first: usize = all[0].trim_start_matches("line-").parse().unwrap();
        let want: Vec<String> = (first..100).map(|i| format!("line-{i:03}")).collect();
        assert_eq!(all, want);
        assert!(first > 0 && all.len() > 10, "{all:?}");
    }

    #[test]
    fn a_record_longer_than_max_size_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let r = Rotation {
            max_size: 60,
            max_files: 2,
        };
        let mut out = LogFile::open(&path, Some(r)).unwrap();
        out.put(b"short\n").unwrap();
        out.put(&[b'x'; 100]).unwrap();
        out.put(b"next\n").unwrap();
        assert_eq!(
            std::fs::read(rotated_name(&path, 1)).unwrap(),
            vec![b'x'; 100]
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"next\n");
    }

    #[test]
    fn one_file_starts_again_and_no_rotation_never_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let one = Rotation {
            max_size: 10,
            max_files: 1,
        };
        let mut out = LogFile::open(&path, Some(one)).unwrap();
        out.put(b"aaaaaaa\n").unwrap();
        out.put(b"bbbbbbb\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"bbbbbbb\n");
        assert!(!rotated_name(&path, 1).exists());

        let plain = dir.path().join("1.log");
        let mut out = LogFile::open(&plain, None).unwrap();
        for _ in 0..100 {
            out.put(b"0123456789\n").unwrap();
        }
        assert_eq!(std::fs::metadata(&plain).unwrap().len(), 1100);
        assert!(!rotated_name(&plain, 1).exists());
    }

    #[test]
    fn reopening_counts_what_the_file_has() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, b"012345678\n").unwrap();
        let r = Rotation {
            max_size: 15,
            max_files: 2,
        };
        let mut out = LogFile::open(&path, Some(r)).unwrap();
        out.put(b"abcdefghi\n").unwrap();
        assert_eq!(
            std::fs::read(rotated_name(&path, 1)).unwrap(),
            b"012345678\n"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"abcdefghi\n");
    }
}
