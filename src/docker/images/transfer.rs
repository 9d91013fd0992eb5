//! `docker save` (`GET /images/{name}/get`, `GET /images/get?names=`) and
//! `docker load` (`POST /images/load`), over the archive format of
//! [`crate::image::archive`]. The tar is produced and consumed on blocking
//! threads, bridged to the HTTP bodies by bounded channels.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::header;
use serde_json::json;
use tokio::sync::mpsc;

use super::{emit, find_image, json_line};
use crate::docker::{ApiError, Shared};
use crate::image::archive::{self, SaveImage};
use crate::image::{ImageRecord, Reference};

/// A request's query as its (name, value) pairs in order, repeated names
/// kept (`names=a&names=b`, `t=a&t=b`).
pub(crate) fn query_pairs(uri: &http::Uri) -> Result<Vec<(String, String)>, ApiError> {
    let uri: http::Uri = format!("/?{}", uri.query().unwrap_or(""))
        .parse()
        .map_err(|e| ApiError::bad_request(format!("invalid query parameters: {e}")))?;
    let axum::extract::Query(pairs) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .map_err(|e| ApiError::bad_request(format!("invalid query parameters: {e}")))?;
    Ok(pairs)
}

/// `GET /images/get?names=a&names=b`.
pub async fn save_many(State(docker): State<Shared>, uri: http::Uri) -> Result<Response, ApiError> {
    let pairs = query_pairs(&uri)?;
    let names: Vec<String> = pairs
        .into_iter()
        .filter(|(k, _)| k == "names")
        .map(|(_, v)| v)
        .collect();
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names given to save"));
    }
    save(docker, names).await
}

/// True if a name carries its own tag (`name:tag`, not a registry port).
pub(super) fn has_explicit_tag(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.contains(':') && !name.contains('@')
}

/// The images `names` select, each with the names to save it under.
fn select(
    docker: &Shared,
    names: &[String],
) -> Result<Vec<(ImageRecord, Vec<Reference>)>, ApiError> {
    let mut out: Vec<(ImageRecord, Vec<Reference>)> = Vec::new();
    let mut add = |rec: ImageRecord, tag: Option<Reference>| {
        let i = match out.iter().position(|(r, _)| r.id == rec.id) {
            Some(i) => i,
            None => {
                out.push((rec, Vec::new()));
                out.len() - 1
            }
        };
        if let Some(t) = tag {
            if !out[i].1.contains(&t) {
                out[i].1.push(t);
            }
        }
    };
    for name in names {
        let parsed = Reference::parse(name).ok();
        let by_name = parsed.as_ref().filter(|r| r.digest.is_none());
        match by_name {
            Some(r) if has_explicit_tag(name) => {
                add(find_image(docker, name)?, Some(r.clone()));
            }
            Some(r) => {
                // A bare repository name saves every tag of it.
                let repo = r.name();
                let mut found = false;
                for rec in docker.engine.images.list()? {
                    let tags: Vec<Reference> = rec
                        .repo_tags
                        .iter()
                        .filter_map(|t| Reference::parse(t).ok())
                        .filter(|t| t.name() == repo)
                        .collect();
                    for t in tags {
                        found = true;
                        add(rec.clone(), Some(t));
                    }
                }
                if !found {
                    add(find_image(docker, name)?, None);
                }
            }
            // An id, an id prefix or a digest reference: no names.
            None => add(find_image(docker, name)?, None),
        }
    }
    Ok(out)
}

/// Streams a `docker save` archive of the images `names` select.
pub async fn save(docker: Shared, names: Vec<String>) -> Result<Response, ApiError> {
    let selected = select(&docker, &names)?;
    let mut manifests = Vec::with_capacity(selected.len());
    for (rec, _) in &selected {
        manifests.push(docker.engine.images.read_blob(&rec.manifest_digest).await?);
    }
    for (rec, _) in &selected {
        emit(&docker, "save", rec.id.as_str(), rec.id.as_str());
    }
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
    let d = docker.clone();
    tokio::task::spawn_blocking(move || {
        let images: Vec<SaveImage<'_>> = selected
            .iter()
            .zip(manifests)
            .map(|((rec, tags), manifest)| SaveImage {
                record: rec,
                manifest,
                tags: tags.clone(),
            })
            .collect();
        let out = io::BufWriter::with_capacity(256 << 10, ChannelWriter(tx.clone()));
        let res = archive::write_archive(out, &images, |dg| d.engine.images.blob_path(dg))
            .and_then(|mut w| w.flush());
        if let Err(e) = res {
            tracing::warn!(error = %e, "failed to write image archive");
            // Ends the body with an error, so the client sees a broken transfer.
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Sends what is written to an HTTP body.
struct ChannelWriter(mpsc::Sender<io::Result<Bytes>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads an HTTP body on a blocking thread.
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl ChannelReader {
    pub(crate) fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// `POST /images/load`: imports every image of a `docker save` archive (or
/// an OCI layout tar) and answers `Loaded image: name:tag` lines. The whole
/// archive is read and checked before any image is recorded, so a bad
/// archive is a plain error response and leaves no image behind.
pub async fn load(State(docker): State<Shared>, body: Body) -> Result<Response, ApiError> {
    let images = &docker.engine.images;
    let scratch = images.scratch()?;
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
    let dir = scratch.path().to_path_buf();
    let reading = tokio::task::spawn_blocking(move || {
        let a = archive::read_archive(
            ChannelReader {
                rx,
                cur: Bytes::new(),
            },
            &dir,
        )?;
        let imgs = a.images()?;
        Ok::<_, archive::ArchiveError>(imgs)
    });
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(io::Error::other);
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            break; // the reader stopped (done or failed); its result says which
        }
    }
    drop(tx);
    let found = reading
        .await
        .map_err(|e| ApiError::internal(format!("image archive reader failed: {e}")))?
        .map_err(crate::image::Error::from)?;
    if found.is_empty() {
        return Err(ApiError::bad_request("invalid archive: it holds no image"));
    }
    let mut lines = Vec::new();
    let mut loaded: HashMap<String, ()> = HashMap::new();
    for img in found {
        let names: Vec<String> = img.tags.iter().filter_map(Reference::tagged).collect();
        let familiar: Vec<String> = img.tags.iter().map(Reference::familiar).collect();
        let rec = images
            .register(img.config, img.layers, img.manifest, names)
            .await?;
        emit(&docker, "load", rec.id.as_str(), rec.id.as_str());
        if familiar.is_empty() {
            if loaded.insert(rec.id.to_string(), ()).is_none() {
                lines.push(format!("Loaded image ID: {}\n", rec.id));
            }
        } else {
            lines.extend(familiar.iter().map(|n| format!("Loaded image: {n}\n")));
        }
    }
    drop(scratch);
    let body: Vec<u8> = lines
        .iter()
        .flat_map(|l| json_line(&json!({ "stream": l })).to_vec())
        .collect();
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response())
}
