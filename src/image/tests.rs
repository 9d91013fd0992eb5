//! Pull pipeline tests against an in-process registry that speaks the
//! distribution API with bearer-token auth. (The end-to-end tests in `e2e/` use
//! Debian's real docker-registry; this one exists to reach what that registry
//! cannot be made to do: token auth, and serving corrupt content.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use base64::Engine as _;

use super::auth::Credentials;
use super::manifest::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use super::{Digest, ImageService, Kind};
use crate::config::Config;
use crate::store::Store;

#[derive(Default)]
struct Fake {
    blobs: HashMap<String, Vec<u8>>,
    manifests: HashMap<String, (String, Vec<u8>)>,
    /// digest → bytes served instead of the real blob
    corrupt: HashMap<String, Vec<u8>>,
    blob_gets: HashMap<String, usize>,
    password: String,
}

type Shared = Arc<Mutex<Fake>>;

const TOKEN: &str = "sekrit-token";

async fn handle(state: Shared, addr: String, req: Request<Body>) -> Response {
    let path = req.uri().path().to_string();
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut f = state.lock().unwrap();
    let reply = |code: StatusCode, body: Vec<u8>| {
        Response::builder()
            .status(code)
            .body(Body::from(body))
            .unwrap()
    };
    if path == "/token" {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("user:{}", f.password))
        );
        if auth != want {
            return reply(StatusCode::UNAUTHORIZED, b"{}".to_vec());
        }
        return reply(
            StatusCode::OK,
            format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#).into_bytes(),
        );
    }
    if auth != format!("Bearer {TOKEN}") {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(
                header::WWW_AUTHENTICATE,
                format!(
                    r#"Bearer realm="http://{addr}/token",service="fake",scope="repository:x:pull""#
                ),
            )
            .body(Body::from(
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            ))
            .unwrap();
    }
    if let Some(i) = path.find("/manifests/") {
        let r = &path[i + "/manifests/".len()..];
        return match f.manifests.get(r) {
            Some((ct, body)) => Response::builder()
                .header(header::CONTENT_TYPE, ct.as_str())
                .body(Body::from(body.clone()))
                .unwrap(),
            None => reply(
                StatusCode::NOT_FOUND,
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                    .to_vec(),
            ),
        };
    }
    if let Some(i) = path.find("/blobs/") {
        let d = path[i + "/blobs/".len()..].to_string();
        *f.blob_gets.entry(d.clone()).or_default() += 1;
        let body = f.corrupt.get(&d).or_else(|| f.blobs.get(&d)).cloned();
        return match body {
            Some(b) => reply(StatusCode::OK, b),
            None => reply(StatusCode::NOT_FOUND, b"{}".to_vec()),
        };
    }
    reply(StatusCode::NOT_FOUND, b"{}".to_vec())
}

async fn serve(state: Shared) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let a = addr.clone();
    let app = axum::Router::new()
        .fallback(move |req: Request<Body>| handle(state.clone(), a.clone(), req));
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Adds a one-layer image (gzip) under `tag`; returns (config digest, layer digest).
fn add_image(f: &mut Fake, tag: &str, marker: &str, media_type: &str) -> (Digest, Digest, Vec<u8>) {
    let raw = layer(&[(marker, b"hello")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    let gz = gz.finish().unwrap();
    let ld = Digest::of(&gz);
    let platform = super::manifest::host_platform();
    let cfg = serde_json::json!({
        "architecture": platform.architecture, "os": "linux",
        "config": {"User": "1234:1234"},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&raw).to_string()]},
    })
    .to_string()
    .into_bytes();
    let cd = Digest::of(&cfg);
    let man = serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld.to_string(), "size": gz.len()}],
    })
    .to_string()
    .into_bytes();
    f.blobs.insert(ld.to_string(), gz);
    f.blobs.insert(cd.to_string(), cfg);
    f.manifests.insert(
        Digest::of(&man).to_string(),
        (media_type.into(), man.clone()),
    );
    f.manifests
        .insert(tag.into(), (media_type.into(), man.clone()));
    (cd, ld, man)
}

struct Env {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    images: ImageService,
}

fn env(yaml: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let cfg = Config::parse(&format!("root: {}\n{yaml}", root.display())).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let store = Arc::new(Store::open(&root.join("meta.redb")).unwrap());
    let images = ImageService::open(Arc::new(cfg), store).unwrap();
    Env {
        _dir: dir,
        root,
        images,
    }
}

fn creds(pw: &str) -> Credentials {
    Credentials::Basic {
        username: "user".into(),
        password: pw.into(),
    }
}

#[tokio::test]
async fn bearer_auth_pull_records_and_unpacks() {
    let state: Shared = Default::default();
    let (cd, _, _) = add_image(
        &mut state.lock().unwrap(),
        "v1",
        "hello.txt",
        DOCKER_MANIFEST,
    );
    state.lock().unwrap().password = "pw".into();
    let addr = serve(state.clone()).await;
    let e = env("");
    let name = format!("{addr}/team/app:v1");
    let rec = e.images.pull(&name, &creds("pw")).await.unwrap();
    assert_eq!(rec.id, cd);
    assert_eq!(rec.repo_tags, vec![name.clone()]);
    assert_eq!(rec.repo_digests.len(), 1);
    let snap = e
        .root
        .join("snapshots")
        .join(rec.layers[0].chain_id.hex())
        .join("fs/hello.txt");
    assert_eq!(std::fs::read(snap).unwrap(), b"hello");
    // Resolved by tag, by digest, by id and by a short id.
    for key in [
        name.as_str(),
        rec.repo_digests[0].as_str(),
        cd.as_str(),
        &cd.hex()[..12],
    ] {
        assert_eq!(
            e.images.resolve(key).unwrap().map(|r| r.id),
            Some(cd.clone()),
            "{key}"
        );
    }
}

#[tokio::test]
async fn wrong_credentials_are_unauthenticated() {
    let state: Shared = Default::default();
    add_image(&mut state.lock().unwrap(), "v1", "a", OCI_MANIFEST);
    state.lock().unwrap().password = "right".into();
    let addr = serve(state).await;
    let e = env("");
    let err = e
        .images
        .pull(&format!("{addr}/a:v1"), &creds("wrong"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Unauthenticated, "{err}");
    let err = e
        .images
        .pull(&format!("{addr}/a:v1"), &Credentials::Anonymous)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Unauthenticated, "{err}");
}

#[tokio::test]
async fn corrupt_layer_fails_and_leaves_nothing() {
    let state: Shared = Default::default();
    let (_, ld, _) = add_image(&mut state.lock().unwrap(), "v1", "a", OCI_MANIFEST);
    {
        let mut f = state.lock().unwrap();
        f.password = "pw".into();
        let mut evil = f.blobs[ld.as_str()].clone();
        let n = evil.len();
        evil[n / 2] ^= 0xff;
        f.corrupt.insert(ld.to_string(), evil);
    }
    let addr = serve(state.clone()).await;
    let e = env("");
    let err = e
        .images
        .pull(&format!("{addr}/a:v1"), &creds("pw"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::BadContent, "{err}");
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert!(e.images.list().unwrap().is_empty());
    assert!(!e.root.join("blobs/sha256").join(ld.hex()).exists());
    assert_eq!(
        std::fs::read_dir(e.root.join("snapshots")).unwrap().count(),
        0
    );
    // The download was retried only for network errors, not for bad content.
    assert_eq!(state.lock().unwrap().blob_gets[ld.as_str()], 1);
}

#[tokio::test]
async fn mirrors_fall_back_to_the_host_and_keep_names() {
    let state: Shared = Default::default();
    let (cd, _, _) = add_image(&mut state.lock().unwrap(), "v1", "a", OCI_MANIFEST);
    state.lock().unwrap().password = "pw".into();
    let addr = serve(state).await;
    // A dead mirror first (nothing listens on port 9 of 127.0.0.2), then the fake
    // registry as a mirror for a host that does not exist.
    let e = env(&format!(
        "registries:\n  registry.invalid:\n    mirrors: [\"http://127.0.0.2:9\", \"http://{addr}\"]\n    auth: {{username: user, password: pw}}\n  \"{addr}\":\n    auth: {{username: user, password: pw}}\n"
    ));
    let rec = e
        .images
        .pull("registry.invalid/team/app:v1", &Credentials::Anonymous)
        .await
        .unwrap();
    assert_eq!(rec.id, cd);
    assert_eq!(
        rec.repo_tags,
        vec!["registry.invalid/team/app:v1".to_string()]
    );
    assert!(rec.repo_digests[0].starts_with("registry.invalid/team/app@sha256:"));
}

#[tokio::test]
async fn index_selects_host_platform_and_concurrent_pulls_fetch_once() {
    let state: Shared = Default::default();
    let (cd, ld, man) = add_image(&mut state.lock().unwrap(), "unused", "a", OCI_MANIFEST);
    {
        let mut f = state.lock().unwrap();
        f.password = "pw".into();
        let p = super::manifest::host_platform();
        let other = if p.architecture == "amd64" {
            "arm64"
        } else {
            "amd64"
        };
        let idx = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": Digest::of(b"other").to_string(), "size": 5,
                 "platform": {"architecture": other, "os": "linux"}},
                {"mediaType": OCI_MANIFEST, "digest": Digest::of(&man).to_string(), "size": man.len(),
                 "platform": {"architecture": p.architecture, "os": "linux"}},
            ],
        })
        .to_string()
        .into_bytes();
        f.manifests
            .insert("multi".into(), (OCI_INDEX.into(), idx.clone()));
    }
    let addr = serve(state.clone()).await;
    let e = env("");
    let name = format!("{addr}/multi:multi");
    let c = creds("pw");
    let (a, b) = tokio::join!(e.images.pull(&name, &c), e.images.pull(&name, &c));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.id, cd);
    assert_eq!(b.id, cd);
    assert!(a.index_digest.is_some());
    assert_eq!(
        state.lock().unwrap().blob_gets[ld.as_str()],
        1,
        "the shared layer is fetched once"
    );
    // RemoveImage by name removes the image and collects its content.
    assert!(e.images.remove(&name).await.unwrap());
    assert!(e.images.resolve(cd.as_str()).unwrap().is_none());
    assert!(!e.root.join("blobs/sha256").join(ld.hex()).exists());
    assert!(
        !e.images.remove(&name).await.unwrap(),
        "a second remove finds nothing"
    );
}

#[tokio::test]
async fn pull_for_selects_the_requested_platform_from_an_index() {
    let state: Shared = Default::default();
    let (host_cfg, _, host_man) =
        add_image(&mut state.lock().unwrap(), "unused-h", "h", OCI_MANIFEST);
    let (other_cfg, _, other_man) =
        add_image(&mut state.lock().unwrap(), "unused-o", "o", OCI_MANIFEST);
    let host = super::manifest::host_platform();
    let other = super::manifest::Platform::parse(if host.architecture == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64/v8"
    })
    .unwrap();
    {
        let mut f = state.lock().unwrap();
        f.password = "pw".into();
        let idx = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": Digest::of(&host_man).to_string(), "size": host_man.len(),
                 "platform": host},
                {"mediaType": OCI_MANIFEST, "digest": Digest::of(&other_man).to_string(), "size": other_man.len(),
                 "platform": other},
            ],
        })
        .to_string()
        .into_bytes();
        f.manifests.insert("multi".into(), (OCI_INDEX.into(), idx));
    }
    let addr = serve(state.clone()).await;
    let e = env("");
    let name = format!("{addr}/multi:multi");
    let rec = e
        .images
        .pull_for(&name, &creds("pw"), &other)
        .await
        .unwrap();
    assert_eq!(rec.id, other_cfg, "the other platform's image");
    assert_eq!(e.images.resolve(&name).unwrap().unwrap().id, other_cfg);
    // The host's pull of the same name moves the tag to the host's image.
    let rec = e.images.pull(&name, &creds("pw")).await.unwrap();
    assert_eq!(rec.id, host_cfg);
    // A platform the index lacks is a clear error.
    let none = super::manifest::Platform::parse("linux/s390x").unwrap();
    let err = e
        .images
        .pull_for(&name, &creds("pw"), &none)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no manifest for platform linux/s390x"),
        "{err}"
    );
}

#[test]
fn platforms_parse_as_os_arch_variant() {
    use super::manifest::Platform;
    let p = Platform::parse("linux/arm64/v8").unwrap();
    assert_eq!(
        (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()),
        ("linux", "arm64", Some("v8"))
    );
    assert_eq!(p.to_string(), "linux/arm64/v8");
    assert_eq!(Platform::parse("linux/amd64").unwrap().variant, None);
    for bad in [
        "",
        "linux",
        "linux/",
        "/amd64",
        "linux/amd64/v8/x",
        "Linux/AMD64",
        "linux/am d64",
    ] {
        assert!(Platform::parse(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn every_image_write_moves_the_generation_and_reads_do_not() {
    let state: Shared = Default::default();
    add_image(&mut state.lock().unwrap(), "v1", "a", OCI_MANIFEST);
    state.lock().unwrap().password = "pw".into();
    let addr = serve(state).await;
    let e = env("");
    let g0 = e.images.generation();
    let name = format!("{addr}/a:v1");
    let rec = e.images.pull(&name, &creds("pw")).await.unwrap();
    let g1 = e.images.generation();
    assert_ne!(g1, g0, "a pull is a write");
    e.images.list().unwrap();
    e.images.resolve(&name).unwrap();
    assert_eq!(
        e.images.generation(),
        g1,
        "reads leave the generation alone"
    );
    let other = format!("{addr}/b:v2");
    e.images.tag(&rec.id, &other).await.unwrap();
    let g2 = e.images.generation();
    assert_ne!(g2, g1, "a tag is a write");
    e.images.untag(&other).await.unwrap();
    let g3 = e.images.generation();
    assert_ne!(g3, g2, "an untag is a write");
    assert!(e.images.remove(&name).await.unwrap());
    assert_ne!(e.images.generation(), g3, "a removal is a write");
    assert!(e.images.list().unwrap().is_empty());
}
