//! The content store: blobs kept once by digest, written through an ingest
//! directory so that only verified, complete blobs are ever visible.
//!
//! `<root>/blobs/sha256/<hex>` holds blobs; `<root>/ingest/` holds partial
//! downloads, which a restart discards.

use std::path::{Path, PathBuf};

use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::digest::{is_hex64, Hasher};
use super::{Digest, Error};

/// Blobs by digest.
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens the store and drops partial downloads left by a crash.
    pub fn open(blobs: &Path, ingest: &Path) -> Result<Self, Error> {
        let dir = blobs.join("sha256");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("failed to create {}", dir.display()), e))?;
        if ingest.exists() {
            std::fs::remove_dir_all(ingest).map_err(|e| {
                Error::io(
                    format!("failed to clear ingest dir {}", ingest.display()),
                    e,
                )
            })?;
        }
        std::fs::create_dir_all(ingest)
            .map_err(|e| Error::io(format!("failed to create {}", ingest.display()), e))?;
        Ok(ContentStore {
            blobs: blobs.to_path_buf(),
            ingest: ingest.to_path_buf(),
        })
    }

    /// Where a blob lives (whether or not it exists).
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join("sha256").join(d.hex())
    }

    /// True if the blob is present.
    pub fn exists(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// Reads a whole (small) blob.
    pub async fn read(&self, d: &Digest) -> Result<Vec<u8>, Error> {
        let p = self.path(d);
        tokio::fs::read(&p)
            .await
            .map_err(|e| Error::io(format!("failed to read blob {d}"), e))
    }

    /// Writes a blob held in memory after checking its digest.
    pub async fn write(&self, d: &Digest, data: &[u8]) -> Result<(), Error> {
        let actual = Digest::of(data);
        if &actual != d {
            return Err(Error::DigestMismatch {
                what: format!("blob {d}"),
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        if self.exists(d) {
            return Ok(());
        }
        let stream =
            futures::stream::once(async { Ok::<_, Error>(bytes::Bytes::copy_from_slice(data)) });
        self.ingest(d, data.len() as u64, stream).await
    }

    /// Streams a blob into the store, verifying size and digest before it
    /// becomes visible. On any error nothing is left behind.
    pub async fn ingest<S>(&self, d: &Digest, size: u64, stream: S) -> Result<(), Error>
    where
        S: Stream<Item = Result<bytes::Bytes, Error>>,
    {
        let tmp = self
            .ingest
            .join(format!("{}-{}-{}", d.hex(), std::process::id(), next_seq()));
        // Removed on error and also when this future is dropped unfinished
        // (a sibling layer of the same pull failed, the client went away).
        let guard = TempFile(Some(tmp));
        let res = self.ingest_to(guard.path(), d, size, stream).await;
        if res.is_ok() {
            guard.keep();
        }
        res
    }

    async fn ingest_to<S>(&self, tmp: &Path, d: &Digest, size: u64, stream: S) -> Result<(), Error>
    where
        S: Stream<Item = Result<bytes::Bytes, Error>>,
    {
        let what = format!("blob {d}");
        let mut f = tokio::fs::File::create(tmp)
            .await
            .map_err(|e| Error::io(format!("failed to create {}", tmp.display()), e))?;
        let mut hasher = Hasher::default();
        let mut written: u64 = 0;
        futures::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            written += chunk.len() as u64;
            if written > size {
                return Err(Error::SizeMismatch {
                    what,
                    expected: size,
                    actual: written,
                });
            }
            hasher.update(&chunk);
            f.write_all(&chunk)
                .await
                .map_err(|e| Error::io(format!("failed to write {}", tmp.display()), e))?;
        }
        if written != size {
            return Err(Error::SizeMismatch {
                what,
                expected: size,
                actual: written,
            });
        }
        let actual = hasher.finish();
        if &actual != d {
            return Err(Error::DigestMismatch {
                what,
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        f.sync_all()
            .await
            .map_err(|e| Error::io(format!("failed to sync {}", tmp.display()), e))?;
        drop(f);
        let dest = self.path(d);
        tokio::fs::rename(tmp, &dest)
            .await
            .map_err(|e| Error::io(format!("failed to commit blob {d}"), e))?;
        Ok(())
    }

    /// Removes a blob; absent is fine.
    pub fn remove(&self, d: &Digest) -> Result<(), Error> {
        match std::fs::remove_file(self.path(d)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("failed to remove blob {d}"), e))
            }
            _ => Ok(()),
        }
    }

    /// Every blob present.
    pub fn list(&self) -> Result<Vec<Digest>, Error> {
        let dir = self.blobs.join("sha256");
        let rd = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("failed to list {}", dir.display()), e))?;
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if is_hex64(&name) {
                out.push(Digest::parse(&format!("sha256:{name}")).expect("hex checked"));
            }
        }
        Ok(out)
    }

    /// Bytes and files used by blobs.
    pub fn usage(&self) -> (u64, u64) {
        let mut bytes = 0;
        let mut files = 0;
        if let Ok(rd) = std::fs::read_dir(self.blobs.join("sha256")) {
            for e in rd.flatten() {
                if let Ok(m) = e.metadata() {
                    bytes += m.len();
                    files += 1;
                }
            }
        }
        (bytes, files)
    }
}

fn next_seq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// A temporary file removed when dropped, unless kept.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    /// The file was renamed into place (or is wanted): leave it.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(&dir.path().join("blobs"), &dir.path().join("ingest")).unwrap();
        (dir, s)
    }

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<bytes::Bytes, Error>> {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(bytes::Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn verified_blobs_become_visible() {
        let (_d, s) = store();
        let d = Digest::of(b"hello world");
        s.ingest(&d, 11, chunks(&[b"hello ", b"world"]))
            .await
            .unwrap();
        assert_eq!(s.read(&d).await.unwrap(), b"hello world");
        assert_eq!(s.list().unwrap(), vec![d.clone()]);
        assert_eq!(s.usage(), (11, 1));
        s.remove(&d).unwrap();
        s.remove(&d).unwrap();
        assert!(!s.exists(&d));
    }

    #[tokio::test]
    async fn digest_mismatch_leaves_nothing() {
        let (dir, s) = store();
        let claimed = Digest::of(b"something else");
        let e = s
            .ingest(&claimed, 5, chunks(&[b"evil!"]))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
        assert!(e.to_string().contains("digest mismatch"));
        assert!(!s.exists(&claimed));
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn size_mismatch_both_ways() {
        let (_d, s) = store();
        let d = Digest::of(b"abc");
        let e = s.ingest(&d, 2, chunks(&[b"abc"])).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::SizeMismatch {
                    expected: 2,
                    actual: 3,
                    ..
                }
            ),
            "{e}"
        );
        let e = s.ingest(&d, 4, chunks(&[b"abc"])).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::SizeMismatch {
                    expected: 4,
                    actual: 3,
                    ..
                }
            ),
            "{e}"
        );
        assert!(!s.exists(&d));
    }

    #[tokio::test]
    async fn restart_drops_partial_downloads() {
        let dir = tempfile::tempdir().unwrap();
        let (b, i) = (dir.path().join("blobs"), dir.path().join("ingest"));
        drop(ContentStore::open(&b, &i).unwrap());
        std::fs::write(i.join("partial"), b"half").unwrap();
        ContentStore::open(&b, &i).unwrap();
        assert_eq!(std::fs::read_dir(&i).unwrap().count(), 0);
    }
}
