//! Docker's image archives, as `docker save` writes and `docker load` reads
//! them: one tar that is both Docker's format (`manifest.json`,
//! `repositories`) and an OCI image layout (`oci-layout`, `index.json`),
//! with every file under `blobs/sha256/<hex>`, as Docker 25+ writes it.
//!
//! Saving streams blobs from the content store as they are (layers stay
//! compressed; both formats point at them by path or digest). Loading spools
//! the tar into a scratch directory first, because `manifest.json` may come
//! after the blobs it names; entries that would land outside the archive
//! (`..`, absolute paths, links out of it) are refused, and every blob is
//! checked against the digest its path or descriptor claims.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use super::digest::{is_hex64, Hasher};
use super::manifest::{self, Descriptor, Document};
use super::{Digest, Reference};
use crate::storage::compression::Compression;

/// Largest JSON file (manifest.json, index.json, a config) read from an archive.
const MAX_JSON_BYTES: u64 = 8 << 20;
/// How many links are followed to reach a file.
const MAX_LINK_HOPS: usize = 16;
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// containerd's annotation for an image's full name in an OCI layout.
const IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";
/// The OCI annotation for a manifest's reference name (usually only a tag).
const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive is malformed or hostile; a client error.
    #[error("invalid archive: {0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

/// The input could not be read as a tar stream (not a tar, truncated, or
/// the client's body failed): the caller's fault, never the daemon's.
fn unreadable(e: io::Error) -> ArchiveError {
    ArchiveError::Invalid(format!("not a readable tar archive: {e}"))
}

impl ArchiveError {
    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| ArchiveError::Io { context, source }
    }
}

impl From<ArchiveError> for super::Error {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::Invalid(reason) => super::Error::BadManifest {
                what: "image archive".into(),
                reason,
            },
            ArchiveError::Io { context, source } => super::Error::Io { context, source },
        }
    }
}

mod save;
pub use save::{blob_path, write_archive, SaveImage};

/// A file spooled out of an archive.
#[derive(Debug, Clone)]
pub struct Spooled {
    pub path: PathBuf,
    pub size: u64,
    pub digest: Digest,
}

/// An archive unpacked into a scratch directory.
#[derive(Debug)]
pub struct Archive {
    files: BTreeMap<String, Spooled>,
    /// Links (symbolic or hard) by their path, to the archive path they name.
    links: BTreeMap<String, String>,
}

/// A layer of an image found in an archive.
#[derive(Debug, Clone)]
pub struct LoadLayer {
    pub file: Spooled,
    pub media_type: String,
}

/// An image found in an archive, ready to be imported.
#[derive(Debug, Clone)]
pub struct LoadImage {
    pub config: Vec<u8>,
    pub layers: Vec<LoadLayer>,
    /// The archive's manifest for the image, when it carries one that matches.
    pub manifest: Option<Vec<u8>>,
    /// Names to give the image.
    pub tags: Vec<Reference>,
}

/// Reads a tar into `scratch` (one file per entry, named by sequence, so no
/// archive path is ever used on the host), hashing every file.
pub fn read_archive<R: Read>(input: R, scratch: &Path) -> Result<Archive, ArchiveError> {
    let mut tar = tar::Archive::new(input);
    let mut files = BTreeMap::new();
    let mut links = BTreeMap::new();
    let entries = tar.entries().map_err(unreadable)?;
    for (n, entry) in entries.enumerate() {
        let mut entry = entry.map_err(unreadable)?;
        let raw = entry
            .path()
            .map_err(unreadable)?
            .to_string_lossy()
            .into_owned();
        let name = clean(&raw)?;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {}
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let path = scratch.join(format!("f{n}"));
                let (size, digest) = spool(&mut entry, &path)?;
                files.insert(name, Spooled { path, size, digest });
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(unreadable)?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if target.starts_with('/') {
                    return Err(ArchiveError::Invalid(format!(
                        "link {raw:?} points outside the archive"
                    )));
                }
                let parent = name.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                let joined = if parent.is_empty() {
                    target.clone()
                } else {
                    format!("{parent}/{target}")
                };
                let resolved = resolve_inside(&joined).ok_or_else(|| {
                    ArchiveError::Invalid(format!("link {raw:?} points outside the archive"))
                })?;
                links.insert(name, resolved);
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(unreadable)?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                links.insert(name, clean(&target)?);
            }
            // Docker archives never hold these; PAX and GNU long-name records
            // are consumed by the tar reader itself.
            other => {
                return Err(ArchiveError::Invalid(format!(
                    "entry {raw:?} has unsupported type {other:?}"
                )))
            }
        }
    }
    Ok(Archive { files, links })
}

/// An archive path with `.` removed; `..`, absolute and empty paths are refused.
fn clean(raw: &str) -> Result<String, ArchiveError> {
    let escapes = || ArchiveError::Invalid(format!("entry {raw:?} escapes the archive"));
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(escapes())
            }
        }
    }
    if parts.is_empty() {
        // `./` itself, the root of the archive.
        return Ok(String::new());
    }
    Ok(parts.join("/"))
}

/// A link target joined to its directory, with `..` applied; `None` if it
/// climbs out of the archive (old Docker archives link `../<id>/layer.tar`).
fn resolve_inside(joined: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn spool(r: &mut impl Read, path: &Path) -> Result<(u64, Digest), ArchiveError> {
    let what = || format!("failed to write {}", path.display());
    let mut f = File::create(path).map_err(ArchiveError::io(what()))?;
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; 256 << 10];
    let mut size = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(unreadable(e)),
        };
        hasher.update(&buf[..n]);
        f.write_all(&buf[..n]).map_err(ArchiveError::io(what()))?;
        size += n as u64;
    }
    Ok((size, hasher.finish()))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestItem {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct Layout {
    manifests: Vec<LayoutEntry>,
}

#[derive(Deserialize)]
struct LayoutEntry {
    #[serde(flatten)]
    descriptor: Descriptor,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl Archive {
    /// The spooled file at archive path `name`, following links; a
    /// `blobs/sha256/<hex>` file must hash to `<hex>`.
    pub fn file(&self, name: &str) -> Result<&Spooled, ArchiveError> {
        let mut at = clean(name)?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(f) = self.files.get(&at) {
                if let Some(hex) = at.strip_prefix("blobs/sha256/") {
                    if is_hex64(hex) && f.digest.hex() != hex {
                        return Err(ArchiveError::Invalid(format!(
                            "{at} does not match its digest (its content is {})",
                            f.digest
                        )));
                    }
                }
                return Ok(f);
            }
            match self.links.get(&at) {
                Some(next) => at = next.clone(),
                None => {
                    return Err(ArchiveError::Invalid(format!(
                        "{name} is missing from the archive"
                    )))
                }
            }
        }
        Err(ArchiveError::Invalid(format!(
            "too many links to reach {name}"
        )))
    }

    fn has(&self, name: &str) -> bool {
        self.files.contains_key(name) || self.links.contains_key(name)
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        let f = self.file(name)?;
        if f.size > MAX_JSON_BYTES {
            return Err(ArchiveError::Invalid(format!(
                "{name} is larger than {MAX_JSON_BYTES} bytes"
            )));
        }
        std::fs::read(&f.path).map_err(ArchiveError::io(format!("failed to read {name}")))
    }

    /// The blob of a descriptor, checked against the descriptor's size.
    fn blob(&self, d: &Descriptor) -> Result<&Spooled, ArchiveError> {
        let f = self.file(&blob_path(&d.digest))?;
        if f.size != d.size {
            return Err(ArchiveError::Invalid(format!(
                "blob {} is {} bytes, its descriptor says {}",
                d.digest, f.size, d.size
            )));
        }
        Ok(f)
    }

    /// The images in the archive: from `manifest.json` when present (names
    /// from its `RepoTags`), else from the OCI `index.json`.
    pub fn images(&self) -> Result<Vec<LoadImage>, ArchiveError> {
        let oci = if self.has("index.json") {
            self.oci_manifests()?
        } else {
            Vec::new()
        };
        if self.has("manifest.json") {
            let body = self.read_small("manifest.json")?;
            let items: Option<Vec<ManifestItem>> = serde_json::from_slice(&body).map_err(|e| {
                ArchiveError::Invalid(format!("failed to decode manifest.json: {e}"))
            })?;
            let items = items.ok_or_else(|| {
                ArchiveError::Invalid("manifest.json must be a list, not null".into())
            })?;
            return items
                .iter()
                .map(|item| self.docker_image(item, &oci))
                .collect();
        }
        if oci.is_empty() {
            return Err(ArchiveError::Invalid(
                "it holds neither a manifest.json nor an OCI index.json".into(),
            ));
        }
        oci.into_iter()
            .map(|m| {
                let config = self.read_small(&blob_path(&m.manifest.config.digest))?;
                let layers = m
                    .manifest
                    .layers
                    .iter()
                    .map(|d| {
                        Ok(LoadLayer {
                            file: self.blob(d)?.clone(),
                            media_type: d.media_type.clone(),
                        })
                    })
                    .collect::<Result<Vec<_>, ArchiveError>>()?;
                check_config(&config, layers.len())?;
                Ok(LoadImage {
                    config,
                    layers,
                    manifest: Some(m.body),
                    tags: m.tags,
                })
            })
            .collect()
    }

    fn docker_image(
        &self,
        item: &ManifestItem,
        oci: &[OciManifest],
    ) -> Result<LoadImage, ArchiveError> {
        let config_file = self.file(&item.config)?;
        let config = self.read_small(&item.config)?;
        check_config(&config, item.layers.len())?;
        let files = item
            .layers
            .iter()
            .map(|l| self.file(l).cloned())
            .collect::<Result<Vec<_>, _>>()?;
        // The OCI side of the archive may carry this image's manifest: keep
        // it (and its digest) when it describes exactly these blobs.
        let matching = oci.iter().find(|m| {
            m.manifest.config.digest == config_file.digest
                && m.manifest.layers.len() == files.len()
                && m.manifest
                    .layers
                    .iter()
                    .zip(&files)
                    .all(|(d, f)| d.digest == f.digest)
        });
        let layers = files
            .into_iter()
            .enumerate()
            .map(|(i, file)| -> Result<LoadLayer, ArchiveError> {
                let media_type = match matching {
                    Some(m) => m.manifest.layers[i].media_type.clone(),
                    None => sniff_media_type(&file.path)?,
                };
                Ok(LoadLayer { file, media_type })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tags = item
            .repo_tags
            .iter()
            .flatten()
            .map(|t| {
                let r = Reference::parse(t)
                    .map_err(|e| ArchiveError::Invalid(format!("invalid tag {t:?}: {e}")))?;
                if r.digest.is_some() {
                    return Err(ArchiveError::Invalid(format!("invalid tag {t:?}")));
                }
                Ok(r)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LoadImage {
            config,
            layers,
            manifest: matching.map(|m| m.body.clone()),
            tags,
        })
    }

    /// The image manifests `index.json` names (an index inside picks this
    /// host's platform), with the names their annotations give.
    fn oci_manifests(&self) -> Result<Vec<OciManifest>, ArchiveError> {
        let body = self.read_small("index.json")?;
        let layout: Layout = serde_json::from_slice(&body)
            .map_err(|e| ArchiveError::Invalid(format!("failed to decode index.json: {e}")))?;
        let mut out: Vec<OciManifest> = Vec::new();
        for entry in layout.manifests {
            let (manifest, body) = self.manifest_of(&entry.descriptor, 0)?;
            let tag = entry
                .annotations
                .get(IMAGE_NAME_ANNOTATION)
                .or_else(|| {
                    // Some tools put the full name in the OCI ref name.
                    entry
                        .annotations
                        .get(REF_NAME_ANNOTATION)
                        .filter(|n| n.contains('/') || n.contains(':'))
                })
                .map(|n| Reference::parse(n))
                .transpose()
                .map_err(|e| ArchiveError::Invalid(format!("invalid image name: {e}")))?
                .filter(|r| r.digest.is_none());
            let digest = Digest::of(&body);
            match out.iter_mut().find(|m| Digest::of(&m.body) == digest) {
                Some(m) => m.tags.extend(tag),
                None => out.push(OciManifest {
                    manifest,
                    body,
                    tags: tag.into_iter().collect(),
                }),
            }
        }
        Ok(out)
    }

    fn manifest_of(
        &self,
        d: &Descriptor,
        depth: usize,
    ) -> Result<(manifest::Manifest, Vec<u8>), ArchiveError> {
        let f = self.blob(d)?;
        if f.size > MAX_JSON_BYTES {
            return Err(ArchiveError::Invalid(format!(
                "manifest {} is too large",
                d.digest
            )));
        }
        let body = std::fs::read(&f.path).map_err(ArchiveError::io(format!(
            "failed to read manifest {}",
            d.digest
        )))?;
        let doc = manifest::parse(&format!("manifest {}", d.digest), &d.media_type, &body)
            .map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        match doc {
            Document::Manifest(m) => Ok((m, body)),
            Document::Index(_) if depth > 0 => Err(ArchiveError::Invalid(
                "nested image indexes are not supported".into(),
            )),
            Document::Index(idx) => {
                let want = manifest::host_platform();
                let pick = manifest::select_platform(&idx, &want).ok_or_else(|| {
                    ArchiveError::Invalid(format!(
                        "index {} has no image for {}/{}",
                        d.digest, want.os, want.architecture
                    ))
                })?;
                self.manifest_of(pick, depth + 1)
            }
        }
    }
}

struct OciManifest {
    manifest: manifest::Manifest,
    body: Vec<u8>,
    tags: Vec<Reference>,
}

/// A config must be a Linux image with one diff ID per layer.
fn check_config(config: &[u8], layers: usize) -> Result<(), ArchiveError> {
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        os: String,
        rootfs: RootFs,
    }
    let c: Config = serde_json::from_slice(config)
        .map_err(|e| ArchiveError::Invalid(format!("invalid image config: {e}")))?;
    if !c.os.is_empty() && c.os != "linux" {
        return Err(ArchiveError::Invalid(format!(
            "cannot load {} image on linux",
            c.os
        )));
    }
    if c.rootfs.diff_ids.len() != layers {
        return Err(ArchiveError::Invalid(format!(
            "layers length mismatch: the manifest lists {layers}, the config {}",
            c.rootfs.diff_ids.len()
        )));
    }
    Ok(())
}

/// The OCI layer media type matching a layer file's compression.
pub fn sniff_media_type(path: &Path) -> Result<String, ArchiveError> {
    let mut head = [0u8; 4];
    let mut f = File::open(path).map_err(ArchiveError::io(format!(
        "failed to open {}",
        path.display()
    )))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(ArchiveError::io(format!(
                    "failed to read {}",
                    path.display()
                ))(e))
            }
        }
    }
    Ok(layer_media_type(Compression::sniff(&head[..n], "")).to_string())
}

/// The OCI layer media type for a compression.
pub fn layer_media_type(c: Compression) -> &'static str {
    match c {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

/// An OCI manifest for a config and layers (an imported or loaded image
/// that came without one).
pub fn oci_manifest(
    config: &Digest,
    config_size: u64,
    layers: &[(Digest, u64, String)],
) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|(d, size, mt)| json!({"mediaType": mt, "digest": d, "size": size}))
        .collect();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": config_size},
        "layers": layers,
    });
    serde_json::to_vec(&m).expect("JSON values serialize")
}

#[cfg(test)]
mod tests;
