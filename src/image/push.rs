//! The push pipeline: an image's blobs and manifest, as stored, uploaded to
//! the registry its new name points at (never to a mirror).
//!
//! ```text
//!  for each layer, then the config:
//!    HEAD blob ── 200 ──> exists
//!        │ 404
//!    (another repo of this registry had the image) POST ?mount=&from=
//!        │ 201 ──> mounted          │ 202: an upload began, go on with it
//!    POST uploads/ ── 202 Location ─┘
//!    size <= chunk:  PUT Location?digest=  (the whole blob)
//!    size >  chunk:  PATCH Location (Content-Range) … then PUT ?digest=
//!  PUT manifests/<tag>  (the stored bytes, so the digest stays the same)
//! ```
//!
//! Every image berth has keeps its compressed layer blobs and its manifest
//! in the content store: pulled ones as the registry served them, loaded,
//! imported and built ones as they were registered (an OCI manifest is made
//! for those); so a push reads nothing but the content store. An image
//! pulled through an index is pushed as its platform manifest alone, as
//! Docker's classic store does.

use futures::{StreamExt, TryStreamExt};
use reqwest::{header, Method, StatusCode, Url};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, info};

use super::content::ContentStore;
use super::manifest::{self, Descriptor, Document};
use super::registry::RegistryClient;
use super::service::ImageRecord;
use super::session::{location, status_error, Body, Session};
use super::{Digest, Error, Reference};
use crate::image::auth::Credentials;

/// Blobs uploaded at once.
const PUSH_PARALLELISM: usize = 3;

/// What happened to one blob of a push, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobState {
    /// Waiting its turn.
    Preparing,
    /// The registry already has it in this repository.
    Exists,
    /// Mounted from another repository of the registry.
    Mounted(String),
    /// Bytes sent so far of the whole.
    Pushing {
        sent: u64,
        total: u64,
    },
    Pushed,
}

/// A progress event: blob `digest` (a layer, with its diff id, or the
/// config) reached `state`.
#[derive(Debug, Clone)]
pub struct PushEvent {
    pub digest: Digest,
    pub diff_id: Option<Digest>,
    pub state: BlobState,
}

/// What a push produced.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub reference: Reference,
    pub tag: String,
    /// The manifest's digest (the same as the stored one).
    pub digest: Digest,
    /// The manifest's size in bytes.
    pub size: u64,
    pub media_type: String,
}

/// One push: an image to a tagged reference.
pub struct Push<'a> {
    pub registry: &'a RegistryClient,
    pub content: &'a ContentStore,
    pub progress: Option<UnboundedSender<PushEvent>>,
}

impl Push<'_> {
    fn report(&self, digest: &Digest, diff_id: Option<&Digest>, state: BlobState) {
        if let Some(tx) = &self.progress {
            // A listener that went away does not stop the push.
            let _ = tx.send(PushEvent {
                digest: digest.clone(),
                diff_id: diff_id.cloned(),
                state,
            });
        }
    }

    /// Pushes `rec` as `target` (which carries the tag).
    pub async fn run(
        &self,
        rec: &ImageRecord,
        target: &Reference,
        creds: &Credentials,
    ) -> Result<Pushed, Error> {
        let tag = target.tag.clone().ok_or_else(|| Error::InvalidReference {
            reference: target.to_string(),
            reason: "a push needs a tag".into(),
        })?;
        let body = self.content.read(&rec.manifest_digest).await?;
        let what = format!("manifest {} of image {}", rec.manifest_digest, rec.id);
        let m = match manifest::parse(&what, "", &body)? {
            Document::Manifest(m) => m,
            Document::Index(_) => {
                return Err(Error::BadManifest {
                    what,
                    reason: "an image's manifest is an index".into(),
                })
            }
        };
        let media_type = manifest_media_type(&m);
        let repo = target.repository.as_str();
        let mount_from = mount_sources(rec, target);
        let scope = match mount_from.first() {
            Some(from) => format!("repository:{repo}:pull,push repository:{from}:pull"),
            None => format!("repository:{repo}:pull,push"),
        };
        let ep = self.registry.direct_endpoint(&target.registry)?;
        let session = Session::new(self.registry, ep, creds, scope)?;
        let chunk = self.registry.push_chunk_bytes(&target.registry);

        let diff_of = |d: &Digest| {
            rec.layers
                .iter()
                .find(|l| &l.digest == d)
                .map(|l| l.diff_id.clone())
        };
        let layers: Vec<(Descriptor, Option<Digest>)> = m
            .layers
            .iter()
            .filter(|l| !is_foreign(l))
            .map(|l| (l.clone(), diff_of(&l.digest)))
            .collect();
        for (l, diff) in &layers {
            self.report(&l.digest, diff.as_ref(), BlobState::Preparing);
        }
        // By index: a closure over borrowed items makes the future's lifetimes
        // higher-ranked, and the spawned push would not be Send.
        let from = mount_from.first();
        let jobs = (0..layers.len()).map(|i| {
            let (l, diff) = &layers[i];
            self.blob(&session, repo, l, diff.as_ref(), from, chunk)
        });
        futures::stream::iter(jobs)
            .buffer_unordered(PUSH_PARALLELISM)
            .try_collect::<Vec<()>>()
            .await?;
        // The config last: a registry may check a manifest's blobs exist.
        self.blob(&session, repo, &m.config, None, from, chunk)
            .await?;

        let url = session.url(&format!("{repo}/manifests/{tag}"))?;
        let digest = Digest::of(&body);
        let size = body.len() as u64;
        session
            .expect(
                Method::PUT,
                &url,
                &Body {
                    headers: vec![(header::CONTENT_TYPE, media_type.clone())],
                    bytes: Some(body.into()),
                },
                &[StatusCode::CREATED, StatusCode::OK],
                &format!("manifest {repo}:{tag}"),
            )
            .await?;
        info!(image = %rec.id, target = %target, %digest, "pushed image");
        Ok(Pushed {
            reference: target.clone(),
            tag,
            digest,
            size,
            media_type,
        })
    }

    /// Makes sure the registry has blob `desc` in `repo`.
    async fn blob(
        &self,
        s: &Session<'_>,
        repo: &str,
        desc: &Descriptor,
        diff_id: Option<&Digest>,
        mount_from: Option<&String>,
        chunk: u64,
    ) -> Result<(), Error> {
        let d = &desc.digest;
        if !self.content.exists(d) {
            return Err(Error::io(
                format!("blob {d} of the image is missing from the content store"),
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        let what = format!("blob {d}");
        let head = s.url(&format!("{repo}/blobs/{d}"))?;
        let resp = s.send(Method::HEAD, &head, &Body::default()).await?;
        match resp.status() {
            StatusCode::OK => {
                self.report(d, diff_id, BlobState::Exists);
                return Ok(());
            }
            StatusCode::NOT_FOUND => {}
            _ => return Err(status_error(resp, &head, &what).await),
        }
        let mut upload = None;
        if let Some(from) = mount_from {
            let mut url = s.url(&format!("{repo}/blobs/uploads/"))?;
            url.query_pairs_mut()
                .append_pair("mount", d.as_str())
                .append_pair("from", from);
            let resp = s.send(Method::POST, &url, &Body::default()).await?;
            match resp.status() {
                StatusCode::CREATED => {
                    debug!(blob = %d, from, "mounted blob");
                    self.report(d, diff_id, BlobState::Mounted(from.clone()));
                    return Ok(());
                }
                // The registry could not mount and opened an upload instead.
                StatusCode::ACCEPTED => upload = Some(location(&resp, &what)?),
                _ => {}
            }
        }
        let mut loc = match upload {
            Some(u) => u,
            None => {
                let url = s.url(&format!("{repo}/blobs/uploads/"))?;
                let resp = s
                    .expect(
                        Method::POST,
                        &url,
                        &Body::default(),
                        &[StatusCode::ACCEPTED],
                        &format!("upload of {what}"),
                    )
                    .await?;
                location(&resp, &what)?
            }
        };
        self.report(
            d,
            diff_id,
            BlobState::Pushing {
                sent: 0,
                total: desc.size,
            },
        );
        let path = self.content.path(d);
        let io = |e| Error::io(format!("failed to read blob {d}"), e);
        let mut file = tokio::fs::File::open(&path).await.map_err(io)?;
        let total = desc.size;
        let octets = (header::CONTENT_TYPE, "application/octet-stream".to_string());
        let last_body = if total <= chunk {
            let mut buf = Vec::with_capacity(total as usize);
            file.read_to_end(&mut buf).await.map_err(io)?;
            check_size(&what, total, buf.len() as u64)?;
            Body {
                headers: vec![octets],
                bytes: Some(buf.into()),
            }
        } else {
            let mut sent = 0u64;
            while sent < total {
                let n = chunk.min(total - sent);
                let mut buf = vec![0u8; n as usize];
                file.seek(std::io::SeekFrom::Start(sent))
                    .await
                    .map_err(io)?;
                file.read_exact(&mut buf).await.map_err(io)?;
                let range = format!("{}-{}", sent, sent + n - 1);
                let resp = s
                    .expect(
                        Method::PATCH,
                        &loc,
                        &Body {
                            headers: vec![octets.clone(), (header::CONTENT_RANGE, range)],
                            bytes: Some(buf.into()),
                        },
                        &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT],
                        &format!("chunk of {what}"),
                    )
                    .await?;
                loc = location(&resp, &what)?;
                sent += n;
                self.report(d, diff_id, BlobState::Pushing { sent, total });
            }
            Body::default()
        };
        let put = with_digest(loc, d);
        s.expect(
            Method::PUT,
            &put,
            &last_body,
            &[StatusCode::CREATED, StatusCode::NO_CONTENT, StatusCode::OK],
            &format!("upload of {what}"),
        )
        .await?;
        self.report(d, diff_id, BlobState::Pushed);
        Ok(())
    }
}

fn check_size(what: &str, expected: u64, actual: u64) -> Result<(), Error> {
    if expected == actual {
        return Ok(());
    }
    Err(Error::SizeMismatch {
        what: what.to_string(),
        expected,
        actual,
    })
}

/// The manifest's media type: its own field, else what its config says
/// (OCI manifests may leave the field out).
pub fn manifest_media_type(m: &manifest::Manifest) -> String {
    if let Some(t) = m.media_type.as_ref().filter(|t| !t.is_empty()) {
        return t.clone();
    }
    if m.config.media_type == "application/vnd.docker.container.image.v1+json" {
        manifest::DOCKER_MANIFEST.to_string()
    } else {
        manifest::OCI_MANIFEST.to_string()
    }
}

/// Layers a registry does not take (Windows base layers and the like).
fn is_foreign(d: &Descriptor) -> bool {
    d.media_type.contains("foreign") || d.media_type.contains("nondistributable")
}

/// Other repositories of the target's registry the image is known under:
/// its blobs are there already, so they can be mounted.
pub fn mount_sources(rec: &ImageRecord, target: &Reference) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in rec.repo_digests.iter().chain(&rec.repo_tags) {
        let Ok(r) = Reference::parse(name) else {
            continue;
        };
        if r.registry == target.registry
            && r.repository != target.repository
            && !out.contains(&r.repository)
        {
            out.push(r.repository);
        }
    }
    out
}

/// An upload's `Location` with `digest=` added to the query the registry
/// put there (its upload state).
fn with_digest(mut url: Url, d: &Digest) -> Url {
    url.query_pairs_mut().append_pair("digest", d.as_str());
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(names: &[&str]) -> ImageRecord {
        let d = Digest::of(b"x");
        ImageRecord {
            id: d.clone(),
            repo_tags: names
                .iter()
                .filter(|n| !n.contains('@'))
                .map(|s| s.to_string())
                .collect(),
            repo_digests: names
                .iter()
                .filter(|n| n.contains('@'))
                .map(|s| s.to_string())
                .collect(),
            size: 0,
            manifest_digest: d,
            index_digest: None,
            layers: vec![],
            pulled_at: 0,
        }
    }

    #[test]
    fn mounts_come_from_other_repositories_of_the_same_registry() {
        let d = Digest::of(b"m");
        let r = rec(&[
            "127.0.0.1:5000/test/busybox:v1",
            &format!("127.0.0.1:5000/test/busybox@{d}"),
            "127.0.0.1:5000/x/y:t",
            "127.0.0.1:6000/other/repo:v1",
            "docker.io/library/busybox:latest",
        ]);
        let target = Reference::parse("127.0.0.1:5000/x/y:t").unwrap();
        assert_eq!(mount_sources(&r, &target), ["test/busybox"]);
        let hub = Reference::parse("busybox:2").unwrap();
        assert!(mount_sources(&r, &hub).is_empty());
    }

    #[test]
    fn media_type_from_the_manifest_or_its_config() {
        let parse = |s: &str| match manifest::parse("m", "", s.as_bytes()).unwrap() {
            Document::Manifest(m) => m,
            Document::Index(_) => panic!("not a manifest"),
        };
        let d = Digest::of(b"c");
        let docker = parse(&format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{d}","size":1}},"layers":[]}}"#,
            manifest::DOCKER_MANIFEST
        ));
        assert_eq!(manifest_media_type(&docker), manifest::DOCKER_MANIFEST);
        let oci = parse(&format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":1}},"layers":[]}}"#
        ));
        assert_eq!(manifest_media_type(&oci), manifest::OCI_MANIFEST);
    }

    #[test]
    fn locations_and_digest_queries() {
        let base = Url::parse("http://127.0.0.1:5000/v2/x/y/blobs/uploads/").unwrap();
        let abs = base
            .join("http://127.0.0.1:5000/v2/x/y/blobs/uploads/u1?_state=abc")
            .unwrap();
        let rel = base.join("/v2/x/y/blobs/uploads/u2?_state=def").unwrap();
        let d = Digest::of(b"b");
        assert_eq!(
            with_digest(abs, &d).as_str(),
            format!(
                "http://127.0.0.1:5000/v2/x/y/blobs/uploads/u1?_state=abc&digest=sha256%3A{}",
                d.hex()
            )
        );
        assert_eq!(
            with_digest(rel, &d).as_str(),
            format!(
                "http://127.0.0.1:5000/v2/x/y/blobs/uploads/u2?_state=def&digest=sha256%3A{}",
                d.hex()
            )
        );
    }
}

#[cfg(test)]
#[path = "push_tests.rs"]
mod fake_registry_tests;
