//! Writing `docker save` archives.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{IMAGE_NAME_ANNOTATION, REF_NAME_ANNOTATION};
use crate::image::manifest;
use crate::image::service::ImageRecord;
use crate::image::{Digest, Reference};

/// One image to put in a saved archive.
pub struct SaveImage<'a> {
    pub record: &'a ImageRecord,
    /// The image's manifest blob, as stored.
    pub manifest: Vec<u8>,
    /// Full names (`registry/repo:tag`) to list in `manifest.json` and `index.json`.
    pub tags: Vec<Reference>,
}

/// Writes a `docker save` archive of `images` to `out`; `blob` gives the file
/// holding a blob. Blobs shared by several images are written once.
pub fn write_archive<W: Write>(
    out: W,
    images: &[SaveImage<'_>],
    blob: impl Fn(&Digest) -> PathBuf,
) -> io::Result<W> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    dir_entry(&mut tar, "blobs/")?;
    dir_entry(&mut tar, "blobs/sha256/")?;
    let mut written: HashSet<Digest> = HashSet::new();
    let mut items = Vec::new();
    let mut index = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for img in images {
        let rec = img.record;
        for d in std::iter::once(&rec.id).chain(rec.layers.iter().map(|l| &l.digest)) {
            if written.insert(d.clone()) {
                let path = blob(d);
                let mut f = File::open(&path)?;
                let len = f.metadata()?.len();
                file_header(&mut tar, &blob_path(d), len, &mut f)?;
            }
        }
        if written.insert(rec.manifest_digest.clone()) {
            file_entry(&mut tar, &blob_path(&rec.manifest_digest), &img.manifest)?;
        }
        let media_type = manifest_media_type(&img.manifest);
        let descriptor = |annotations: Option<Value>| {
            let mut d = json!({
                "mediaType": media_type,
                "digest": rec.manifest_digest,
                "size": img.manifest.len(),
            });
            if let Some(a) = annotations {
                d["annotations"] = a;
            }
            d
        };
        for t in &img.tags {
            let tag = t.tag.clone().unwrap_or_default();
            index.push(descriptor(Some(json!({
                IMAGE_NAME_ANNOTATION: t.to_string(),
                REF_NAME_ANNOTATION: tag,
            }))));
            if let Some(top) = rec.layers.last() {
                repositories
                    .entry(t.familiar_name())
                    .or_default()
                    .insert(tag, top.diff_id.hex().to_string());
            }
        }
        if img.tags.is_empty() {
            index.push(descriptor(None));
        }
        items.push(json!({
            "Config": blob_path(&rec.id),
            "RepoTags": img.tags.iter().map(Reference::familiar).collect::<Vec<_>>(),
            "Layers": rec.layers.iter().map(|l| blob_path(&l.digest)).collect::<Vec<_>>(),
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": index,
    });
    file_entry(&mut tar, "index.json", &to_json(&index))?;
    file_entry(&mut tar, "manifest.json", &to_json(&Value::Array(items)))?;
    file_entry(
        &mut tar,
        "oci-layout",
        br#"{"imageLayoutVersion": "1.0.0"}"#,
    )?;
    if !repositories.is_empty() {
        file_entry(&mut tar, "repositories", &to_json(&json!(repositories)))?;
    }
    tar.into_inner()
}

fn to_json(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).expect("JSON values serialize");
    b.push(b'\n');
    b
}

/// `blobs/sha256/<hex>`, where both formats keep a blob.
pub fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn manifest_media_type(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct M {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
    }
    serde_json::from_slice::<M>(body)
        .ok()
        .and_then(|m| m.media_type)
        .unwrap_or_else(|| manifest::OCI_MANIFEST.to_string())
}

fn header(path: &str, size: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    // Paths are short ASCII (`blobs/sha256/<64 hex>` at most 77 bytes).
    let _ = h.set_path(path);
    h.set_cksum();
    h
}

fn dir_entry<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut h = header(path, 0, tar::EntryType::Directory, 0o755);
    tar.append_data(&mut h, path, io::empty())
}

fn file_entry<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> io::Result<()> {
    file_header(tar, path, data.len() as u64, data)
}

fn file_header<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut h = header(path, size, tar::EntryType::Regular, 0o644);
    tar.append_data(&mut h, path, data.take(size))
}
