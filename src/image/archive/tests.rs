use std::io::Read;

use super::*;
use crate::image::service::{ImageRecord, LayerRecord};

/// A blob directory with one image: a gzip layer, its config and manifest.
struct Fixture {
    dir: tempfile::TempDir,
    rec: ImageRecord,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

fn layer_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "hello.txt", &b"hello"[..]).unwrap();
    b.into_inner().unwrap()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tar = layer_tar();
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let layer = gz.finish().unwrap();
    let layer_digest = Digest::of(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let id = Digest::of(&config);
    let gzip = layer_media_type(Compression::Gzip).to_string();
    let manifest = oci_manifest(
        &id,
        config.len() as u64,
        &[(layer_digest.clone(), layer.len() as u64, gzip.clone())],
    );
    let manifest_digest = Digest::of(&manifest);
    for (d, data) in [
        (&id, &config),
        (&layer_digest, &layer),
        (&manifest_digest, &manifest),
    ] {
        std::fs::write(dir.path().join(d.hex()), data).unwrap();
    }
    let rec = ImageRecord {
        id,
        repo_tags: vec!["127.0.0.1:5000/test/busybox:v1".into()],
        repo_digests: vec![],
        size: 0,
        manifest_digest,
        index_digest: None,
        layers: vec![LayerRecord {
            digest: layer_digest,
            media_type: gzip,
            size: layer.len() as u64,
            diff_id: diff_id.clone(),
            chain_id: diff_id,
        }],
        pulled_at: 0,
    };
    Fixture {
        dir,
        rec,
        config,
        manifest,
    }
}

fn save(f: &Fixture, tags: &[&str]) -> Vec<u8> {
    let images = [SaveImage {
        record: &f.rec,
        manifest: f.manifest.clone(),
        tags: tags.iter().map(|t| Reference::parse(t).unwrap()).collect(),
    }];
    write_archive(Vec::new(), &images, |d| f.dir.path().join(d.hex())).unwrap()
}

fn entries(tar_bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(tar_bytes);
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(name, data);
    }
    out
}

fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}

#[test]
fn saved_archives_hold_both_docker_and_oci_layouts() {
    let f = fixture();
    let tar = save(&f, &["127.0.0.1:5000/test/busybox:v1", "busybox"]);
    let files = entries(&tar);
    let layer = &f.rec.layers[0];
    let want: Vec<String> = [
        "blobs/".to_string(),
        "blobs/sha256/".to_string(),
        blob_path(&f.rec.id),
        blob_path(&layer.digest),
        blob_path(&f.rec.manifest_digest),
        "index.json".into(),
        "manifest.json".into(),
        "oci-layout".into(),
        "repositories".into(),
    ]
    .into_iter()
    .collect::<std::collections::BTreeSet<_>>()
    .into_iter()
    .collect();
    assert_eq!(files.keys().cloned().collect::<Vec<_>>(), want);
    assert_eq!(files[&blob_path(&f.rec.id)], f.config);

    let m = json_of(&files["manifest.json"]);
    assert_eq!(
        m[0]["Config"],
        json!(format!("blobs/sha256/{}", f.rec.id.hex()))
    );
    assert_eq!(
        m[0]["RepoTags"],
        json!(["127.0.0.1:5000/test/busybox:v1", "busybox:latest"])
    );
    assert_eq!(m[0]["Layers"], json!([blob_path(&layer.digest)]));

    let idx = json_of(&files["index.json"]);
    assert_eq!(idx["mediaType"], json!(manifest::OCI_INDEX));
    let entries = idx["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["digest"], json!(f.rec.manifest_digest));
    assert_eq!(entries[0]["size"], json!(f.manifest.len()));
    assert_eq!(
        entries[1]["annotations"][IMAGE_NAME_ANNOTATION],
        json!("docker.io/library/busybox:latest")
    );
    assert_eq!(
        entries[1]["annotations"][REF_NAME_ANNOTATION],
        json!("latest")
    );

    let repos = json_of(&files["repositories"]);
    assert_eq!(
        repos["busybox"]["latest"],
        json!(layer.diff_id.hex()),
        "{repos}"
    );
    assert_eq!(
        json_of(&files["oci-layout"])["imageLayoutVersion"],
        json!("1.0.0")
    );
}

#[test]
fn untagged_saves_have_no_names() {
    let f = fixture();
    let files = entries(&save(&f, &[]));
    assert!(!files.contains_key("repositories"));
    assert_eq!(json_of(&files["manifest.json"])[0]["RepoTags"], json!([]));
    let idx = json_of(&files["index.json"]);
    assert!(idx["manifests"][0].get("annotations").is_none());
}

fn load(tar_bytes: &[u8]) -> Result<(tempfile::TempDir, Vec<LoadImage>), ArchiveError> {
    let dir = tempfile::tempdir().unwrap();
    let a = read_archive(tar_bytes, dir.path())?;
    let imgs = a.images()?;
    Ok((dir, imgs))
}

#[test]
fn saved_archives_load_back_with_their_manifest() {
    let f = fixture();
    let (_dir, imgs) = load(&save(&f, &["127.0.0.1:5000/test/busybox:v1"])).unwrap();
    assert_eq!(imgs.len(), 1);
    let img = &imgs[0];
    assert_eq!(img.config, f.config);
    assert_eq!(img.manifest.as_deref(), Some(&f.manifest[..]));
    assert_eq!(img.layers.len(), 1);
    assert_eq!(img.layers[0].file.digest, f.rec.layers[0].digest);
    assert_eq!(img.layers[0].media_type, f.rec.layers[0].media_type);
    assert_eq!(
        img.tags.iter().map(Reference::familiar).collect::<Vec<_>>(),
        vec!["127.0.0.1:5000/test/busybox:v1"]
    );
}

/// Rewrites an archive: `edit` may drop or change entries by name.
fn rewrite(tar_bytes: &[u8], edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries(tar_bytes) {
        if name.ends_with('/') {
            continue;
        }
        if let Some(data) = edit(&name, data) {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, &name, &data[..]).unwrap();
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn oci_layouts_without_manifest_json_load_by_annotation() {
    let f = fixture();
    let tar = rewrite(&save(&f, &["busybox:1"]), |n, d| {
        (n != "manifest.json" && n != "repositories").then_some(d)
    });
    let (_dir, imgs) = load(&tar).unwrap();
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0].config, f.config);
    assert_eq!(imgs[0].tags[0].familiar(), "busybox:1");
    assert_eq!(imgs[0].manifest.as_deref(), Some(&f.manifest[..]));
}

/// A tar with one raw entry name, bypassing the builder's path checks.
fn raw_entry(name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn invalid(r: Result<(tempfile::TempDir, Vec<LoadImage>), ArchiveError>) -> String {
    match r {
        Err(ArchiveError::Invalid(m)) => m,
        Err(e) => panic!("expected an invalid-archive error, got {e}"),
        Ok(_) => panic!("a hostile archive was accepted"),
    }
}

#[test]
fn entries_escaping_the_archive_are_refused() {
    for name in ["../evil", "/etc/evil", "a/../../evil"] {
        let m = invalid(load(&raw_entry(name, tar::EntryType::Regular, None, b"x")));
        assert!(m.contains("escapes the archive"), "{name}: {m}");
    }
    let m = invalid(load(&raw_entry(
        "blobs/link",
        tar::EntryType::Symlink,
        Some("../../etc/passwd"),
        b"",
    )));
    assert!(m.contains("outside the archive"), "{m}");
}

#[test]
fn manifests_naming_paths_outside_are_refused() {
    let f = fixture();
    let tar = rewrite(&save(&f, &[]), |n, d| {
        if n == "manifest.json" {
            Some(br#"[{"Config":"../../etc/passwd","RepoTags":[],"Layers":[]}]"#.to_vec())
        } else {
            Some(d)
        }
    });
    let m = invalid(load(&tar));
    assert!(m.contains("escapes the archive"), "{m}");
}

#[test]
fn blobs_must_match_their_digest() {
    let f = fixture();
    let layer = blob_path(&f.rec.layers[0].digest);
    let tar = rewrite(&save(&f, &[]), |n, d| {
        if n == layer {
            Some(b"not the layer".to_vec())
        } else {
            Some(d)
        }
    });
    let m = invalid(load(&tar));
    assert!(m.contains("does not match its digest"), "{m}");
}

#[test]
fn archives_without_images_or_with_bad_configs_are_refused() {
    let m = invalid(load(&raw_entry(
        "hello.txt",
        tar::EntryType::Regular,
        None,
        b"x",
    )));
    assert!(m.contains("neither a manifest.json nor"), "{m}");
    let f = fixture();
    let tar = rewrite(&save(&f, &[]), |n, d| {
        if n == "manifest.json" {
            let m = json!([{"Config": blob_path(&f.rec.id), "RepoTags": [], "Layers": []}]);
            Some(serde_json::to_vec(&m).unwrap())
        } else {
            Some(d)
        }
    });
    let m = invalid(load(&tar));
    assert!(m.contains("layers length mismatch"), "{m}");
}

#[test]
fn layer_media_types_follow_the_content() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, layer_tar()).unwrap();
    assert_eq!(
        sniff_media_type(&plain).unwrap(),
        "application/vnd.oci.image.layer.v1.tar"
    );
    let gz = dir.path().join("gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&layer_tar()).unwrap();
    std::fs::write(&gz, e.finish().unwrap()).unwrap();
    assert_eq!(
        sniff_media_type(&gz).unwrap(),
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
}

#[test]
fn links_resolve_inside_the_archive_only() {
    assert_eq!(
        resolve_inside("a/b/../c/layer.tar").as_deref(),
        Some("a/c/layer.tar")
    );
    assert_eq!(resolve_inside("a/../../x"), None);
}

/// What is not a tar (text, random bytes, a tar cut short) is the caller's
/// fault: an invalid-archive error (400 at the Docker door), never I/O.
#[test]
fn bodies_that_are_not_tars_are_invalid() {
    let mut noise = vec![0u8; 4096];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let whole = raw_entry(
        "manifest.json",
        tar::EntryType::Regular,
        None,
        &[b'x'; 2000],
    );
    let cut = &whole[..700];
    for (what, body) in [
        ("text", &b"this is not a tar archive, just some text that is long enough to fill a header block or two. "
            .repeat(8)[..]),
        ("noise", &noise[..]),
        ("truncated", cut),
    ] {
        let m = invalid(load(body));
        assert!(m.contains("tar") || m.contains("no image"), "{what}: {m}");
    }
}
