//! The push pipeline against a small in-process registry that speaks the
//! parts of the distribution API a push uses, behind a bearer-token realm
//! that wants basic credentials: relative and absolute `Location`s, chunked
//! and monolithic uploads, the manifest's bytes and media type. (The e2e
//! tests push to Debian's docker-registry; this covers the token flow that
//! registry is not set up for.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::Router;

use super::*;
use crate::config::Config;
use crate::image::service::LayerRecord;

const TOKEN: &str = "tok-push";

#[derive(Default)]
struct Fake {
    addr: String,
    blobs: HashMap<String, Vec<u8>>,
    uploads: HashMap<String, Vec<u8>>,
    manifests: HashMap<String, (String, Vec<u8>)>,
    log: Vec<String>,
    scopes: Vec<String>,
}

type Shared = Arc<Mutex<Fake>>;

async fn require_token(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    let line = format!("{} {}", req.method(), req.uri().path());
    let addr = {
        let mut f = s.lock().unwrap();
        f.log.push(format!("{line} auth={ok}"));
        f.addr.clone()
    };
    if !ok {
        let challenge = format!(
            r#"Bearer realm="http://{addr}/token",service="fake",scope="repository:x/y:pull,push""#
        );
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
        )
            .into_response();
    }
    next.run(req).await
}

async fn token(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let want = super::super::session::basic("u", "p");
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(want.as_str())
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    s.lock()
        .unwrap()
        .scopes
        .push(q.get("scope").cloned().unwrap_or_default());
    // A login asks for an offline token: it gets a refresh token too.
    if q.get("offline_token").map(String::as_str) == Some("true") {
        return axum::Json(serde_json::json!({ "token": TOKEN, "refresh_token": "refresh-1" }))
            .into_response();
    }
    axum::Json(serde_json::json!({ "token": TOKEN })).into_response()
}

async fn head_blob(State(s): State<Shared>, Path(d): Path<String>) -> StatusCode {
    if s.lock().unwrap().blobs.contains_key(&d) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn start_upload(State(s): State<Shared>) -> Response {
    let mut f = s.lock().unwrap();
    let id = format!("u{}", f.uploads.len());
    f.uploads.insert(id.clone(), Vec::new());
    // A relative Location, as some registries give.
    let loc = format!("/v2/x/y/blobs/uploads/{id}?_state=s0");
    (StatusCode::ACCEPTED, [(header::LOCATION, loc)]).into_response()
}

async fn patch_upload(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut f = s.lock().unwrap();
    let addr = f.addr.clone();
    let Some(buf) = f.uploads.get_mut(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let range = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if range != format!("{}-{}", buf.len(), buf.len() + body.len() - 1) {
        return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    }
    buf.extend_from_slice(&body);
    // An absolute one this time.
    let loc = format!("http://{addr}/v2/x/y/blobs/uploads/{id}?_state=s1");
    (StatusCode::ACCEPTED, [(header::LOCATION, loc)]).into_response()
}

async fn finish_upload(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> StatusCode {
    let mut f = s.lock().unwrap();
    if !q.contains_key("_state") {
        return StatusCode::BAD_REQUEST;
    }
    let Some(mut buf) = f.uploads.remove(&id) else {
        return StatusCode::NOT_FOUND;
    };
    buf.extend_from_slice(&body);
    let d = q.get("digest").cloned().unwrap_or_default();
    if Digest::of(&buf).as_str() != d {
        return StatusCode::BAD_REQUEST;
    }
    f.blobs.insert(d, buf);
    StatusCode::CREATED
}

async fn put_manifest(
    State(s): State<Shared>,
    Path(tag): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    s.lock().unwrap().manifests.insert(tag, (ct, body.to_vec()));
    StatusCode::CREATED
}

async fn start_fake() -> Shared {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let s: Shared = Arc::new(Mutex::new(Fake {
        addr,
        ..Default::default()
    }));
    let v2 = Router::new()
        .route("/v2/", get(|| async { StatusCode::OK }))
        .route("/v2/x/y/blobs/{digest}", get(head_blob))
        .route("/v2/x/y/blobs/uploads/", post(start_upload))
        .route(
            "/v2/x/y/blobs/uploads/{id}",
            patch(patch_upload).put(finish_upload),
        )
        .route("/v2/x/y/manifests/{tag}", put(put_manifest))
        .layer(axum::middleware::from_fn_with_state(
            s.clone(),
            require_token,
        ));
    let app = Router::new()
        .route("/token", get(token))
        .merge(v2)
        .with_state(s.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    s
}

struct Local {
    _dir: tempfile::TempDir,
    content: ContentStore,
    rec: ImageRecord,
    manifest: Vec<u8>,
    layer: Vec<u8>,
}

async fn local_image() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let content =
        ContentStore::open(&dir.path().join("blobs"), &dir.path().join("ingest")).unwrap();
    let layer: Vec<u8> = (0..25u8).collect();
    // Within one chunk: the config goes up in one PUT.
    let config = br#"{}"#.to_vec();
    let (ld, cd) = (Digest::of(&layer), Digest::of(&config));
    content.write(&ld, &layer).await.unwrap();
    content.write(&cd, &config).await.unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ld, "size": layer.len()}],
    }))
    .unwrap();
    let md = Digest::of(&manifest);
    content.write(&md, &manifest).await.unwrap();
    let diff = Digest::of(b"diff");
    let rec = ImageRecord {
        id: cd,
        repo_tags: vec![],
        repo_digests: vec![],
        size: 0,
        manifest_digest: md,
        index_digest: None,
        layers: vec![LayerRecord {
            digest: ld,
            media_type: String::new(),
            size: layer.len() as u64,
            diff_id: diff.clone(),
            chain_id: diff,
        }],
        pulled_at: 0,
    };
    Local {
        _dir: dir,
        content,
        rec,
        manifest,
        layer,
    }
}

#[tokio::test]
async fn pushes_through_a_token_realm_in_chunks_and_keeps_the_manifest_bytes() {
    let fake = start_fake().await;
    let addr = fake.lock().unwrap().addr.clone();
    let cfg = Config::parse(&format!(
        "registries:\n  \"{addr}\": {{push_chunk_bytes: 10}}\n"
    ))
    .unwrap();
    let client = RegistryClient::new(Arc::new(cfg)).unwrap();
    let local = local_image().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let push = Push {
        registry: &client,
        content: &local.content,
        progress: Some(tx),
    };
    let target = Reference::parse(&format!("{addr}/x/y:t")).unwrap();
    let creds = Credentials::Basic {
        username: "u".into(),
        password: "p".into(),
    };
    let pushed = push.run(&local.rec, &target, &creds).await.unwrap();
    assert_eq!(pushed.digest, local.rec.manifest_digest);
    assert_eq!(pushed.media_type, manifest::DOCKER_MANIFEST);
    {
        let f = fake.lock().unwrap();
        let (ct, body) = &f.manifests["t"];
        assert_eq!(ct, manifest::DOCKER_MANIFEST);
        assert_eq!(body, &local.manifest);
        assert_eq!(f.blobs[local.rec.layers[0].digest.as_str()], local.layer);
        assert!(f.blobs.contains_key(local.rec.id.as_str()));
        let patches = f.log.iter().filter(|l| l.starts_with("PATCH")).count();
        assert_eq!(patches, 3, "{:?}", f.log);
        // Bodies go out with the token once it is known: no PATCH or PUT
        // was spent on a 401.
        assert!(
            f.log
                .iter()
                .filter(|l| l.starts_with("PATCH") || l.starts_with("PUT"))
                .all(|l| l.ends_with("auth=true")),
            "{:?}",
            f.log
        );
        assert_eq!(f.scopes, ["repository:x/y:pull,push"]);
    }
    let mut layer_states = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if ev.diff_id.is_some() {
            layer_states.push(ev.state);
        }
    }
    assert_eq!(
        layer_states,
        [
            BlobState::Preparing,
            BlobState::Pushing { sent: 0, total: 25 },
            BlobState::Pushing {
                sent: 10,
                total: 25
            },
            BlobState::Pushing {
                sent: 20,
                total: 25
            },
            BlobState::Pushing {
                sent: 25,
                total: 25
            },
            BlobState::Pushed,
        ]
    );

    // Again: every blob is there.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let again = Push {
        registry: &client,
        content: &local.content,
        progress: Some(tx),
    };
    again.run(&local.rec, &target, &creds).await.unwrap();
    let mut states = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        states.push(ev.state);
    }
    assert_eq!(
        states,
        [BlobState::Preparing, BlobState::Exists, BlobState::Exists]
    );

    // Wrong credentials: the realm refuses, and it says so.
    let wrong = Credentials::Basic {
        username: "u".into(),
        password: "bad".into(),
    };
    let client2 = RegistryClient::new(Arc::new(Config::default())).unwrap();
    let refused = Push {
        registry: &client2,
        content: &local.content,
        progress: None,
    };
    let e = refused.run(&local.rec, &target, &wrong).await.unwrap_err();
    assert_eq!(e.kind(), crate::image::Kind::Unauthenticated, "{e}");
}

#[tokio::test]
async fn login_through_a_token_realm_returns_its_identity_token() {
    let fake = start_fake().await;
    let addr = fake.lock().unwrap().addr.clone();
    let client = RegistryClient::new(Arc::new(Config::default())).unwrap();
    let good = Credentials::Basic {
        username: "u".into(),
        password: "p".into(),
    };
    let token = client.login(&addr, &good).await.unwrap();
    assert_eq!(token.as_deref(), Some("refresh-1"));
    let bad = Credentials::Basic {
        username: "u".into(),
        password: "nope".into(),
    };
    let e = client.login(&addr, &bad).await.unwrap_err();
    assert_eq!(e.kind(), crate::image::Kind::Unauthenticated);
    assert!(e.to_string().starts_with("login attempt to "), "{e}");
    let e = client
        .login(&addr, &Credentials::Anonymous)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), crate::image::Kind::Unauthenticated);
}
