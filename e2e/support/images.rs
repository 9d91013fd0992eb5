//! Image configs, manifests (Docker schema2 and OCI), indexes / manifest
//! lists, and pushing them over the distribution HTTP API.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::layers::Layer;
use super::registry::TestRegistry;
use super::{digest_of, sha256_hex};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// The registry's name for the host architecture (`amd64`, `arm64`).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no image architecture known for {other}"),
    }
}

/// An architecture that is not the host's, for platform-selection tests.
pub fn other_arch() -> &'static str {
    if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

/// Which manifest format an image is pushed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Docker,
    Oci,
}

/// Describes an image: its layers and the runtime config.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    pub arch: String,
    pub layers: Vec<Layer>,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub user: String,
    pub workdir: String,
    pub labels: BTreeMap<String, String>,
    pub format: Format,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageBuilder {
    /// An image for the host architecture with no layers, Docker format.
    pub fn new() -> Self {
        Self {
            arch: host_arch().to_string(),
            layers: Vec::new(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: vec!["sh".into()],
            entrypoint: Vec::new(),
            user: String::new(),
            workdir: "/".into(),
            labels: BTreeMap::new(),
            format: Format::Docker,
        }
    }

    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    pub fn user(mut self, user: &str) -> Self {
        self.user = user.into();
        self
    }

    pub fn cmd(mut self, cmd: &[&str]) -> Self {
        self.cmd = cmd.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn entrypoint(mut self, ep: &[&str]) -> Self {
        self.entrypoint = ep.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn env(mut self, kv: &str) -> Self {
        self.env.push(kv.into());
        self
    }

    pub fn workdir(mut self, dir: &str) -> Self {
        self.workdir = dir.into();
        self
    }

    /// A label; also the cheap way to make two images differ only in config.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn arch(mut self, arch: &str) -> Self {
        self.arch = arch.into();
        self
    }

    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// The image config JSON as the runtime will read it.
    pub fn config_json(&self) -> Value {
        let diff_ids: Vec<&str> = self.layers.iter().map(|l| l.diff_id.as_str()).collect();
        let history: Vec<Value> = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, _)| json!({"created": "2023-11-14T22:13:20Z", "created_by": format!("berth-e2e layer {i}")}))
            .collect();
        let mut config = json!({
            "Env": self.env,
            "Cmd": self.cmd,
            "WorkingDir": self.workdir,
            "Labels": self.labels,
        });
        if !self.user.is_empty() {
            config["User"] = json!(self.user);
        }
        if !self.entrypoint.is_empty() {
            config["Entrypoint"] = json!(self.entrypoint);
        }
        json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": self.arch,
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        })
    }

    pub fn build(&self) -> BuiltImage {
        self.build_with(|_| {}, |_| {})
    }

    /// Builds with hooks that edit the config and then the manifest JSON
    /// before they are serialized and digested (for broken images).
    pub fn build_with(
        &self,
        edit_config: impl FnOnce(&mut Value),
        edit_manifest: impl FnOnce(&mut Value),
    ) -> BuiltImage {
        let mut config_value = self.config_json();
        edit_config(&mut config_value);
        let config = serde_json::to_vec(&config_value).expect("serialize config");
        let (manifest_type, config_type) = match self.format {
            Format::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG),
            Format::Oci => (OCI_MANIFEST, OCI_CONFIG),
        };
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|l| {
                let media_type = match self.format {
                    Format::Docker => l.docker_media_type(),
                    Format::Oci => l.oci_media_type(),
                };
                json!({"mediaType": media_type, "size": l.data.len(), "digest": l.digest})
            })
            .collect();
        let mut manifest_value = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "size": config.len(), "digest": digest_of(&config)},
            "layers": layers,
        });
        edit_manifest(&mut manifest_value);
        let manifest = serde_json::to_vec_pretty(&manifest_value).expect("serialize manifest");
        BuiltImage {
            manifest_digest: digest_of(&manifest),
            manifest_media_type: manifest_type.to_string(),
            manifest,
            config_digest: digest_of(&config),
            config,
            layers: self.layers.clone(),
            arch: self.arch.clone(),
        }
    }
}

/// A built image: bytes and digests of everything that gets pushed.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
    pub manifest_digest: String,
    pub config: Vec<u8>,
    /// The image id a runtime reports.
    pub config_digest: String,
    pub layers: Vec<Layer>,
    pub arch: String,
}

impl BuiltImage {
    /// The image id: the config digest.
    pub fn id(&self) -> &str {
        &self.config_digest
    }

    /// Layer blob digests, in order.
    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.digest.clone()).collect()
    }

    /// The OCI chain ids of the layers (`sha256:…`), snapshot keys in order.
    pub fn chain_ids(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for layer in &self.layers {
            let next = match out.last() {
                None => layer.diff_id.clone(),
                Some(prev) => format!(
                    "sha256:{}",
                    sha256_hex(format!("{prev} {}", layer.diff_id).as_bytes())
                ),
            };
            out.push(next);
        }
        out
    }

    /// Every blob digest this image stores: manifest, config and layers.
    pub fn all_digests(&self) -> Vec<String> {
        let mut v = vec![self.manifest_digest.clone(), self.config_digest.clone()];
        v.extend(self.layer_digests());
        v
    }

    /// Pushes layers, config and manifest as `<repo>:<reference>`
    /// (`reference` may be a tag or the manifest digest).
    pub async fn push(&self, reg: &TestRegistry, repo: &str, reference: &str) {
        let pusher = Pusher::new(reg);
        for layer in &self.layers {
            pusher.blob(repo, &layer.digest, &layer.data).await;
        }
        pusher.blob(repo, &self.config_digest, &self.config).await;
        pusher
            .manifest(repo, reference, &self.manifest_media_type, &self.manifest)
            .await;
    }

    /// Pushes by tag and returns `<addr>/<repo>:<tag>`.
    pub async fn push_tag(&self, reg: &TestRegistry, repo: &str, tag: &str) -> String {
        self.push(reg, repo, tag).await;
        reg.image(&format!("{repo}:{tag}"))
    }
}

/// An OCI index or Docker manifest list over several images.
#[derive(Debug, Clone)]
pub struct BuiltIndex {
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub digest: String,
    pub images: Vec<BuiltImage>,
}

impl BuiltIndex {
    /// Lists `images` (each with its own `arch`) in an index; `Format::Oci`
    /// makes an OCI index, `Format::Docker` a Docker manifest list.
    pub fn new(format: Format, images: Vec<BuiltImage>) -> Self {
        let media_type = match format {
            Format::Docker => DOCKER_LIST,
            Format::Oci => OCI_INDEX,
        };
        let manifests: Vec<Value> = images
            .iter()
            .map(|img| {
                json!({
                    "mediaType": img.manifest_media_type,
                    "size": img.manifest.len(),
                    "digest": img.manifest_digest,
                    "platform": {"architecture": img.arch, "os": "linux"},
                })
            })
            .collect();
        let value = json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests});
        let manifest = serde_json::to_vec_pretty(&value).expect("serialize index");
        Self {
            digest: digest_of(&manifest),
            media_type: media_type.to_string(),
            manifest,
            images,
        }
    }

    /// The image of `arch` in this index.
    pub fn image_for(&self, arch: &str) -> &BuiltImage {
        self.images
            .iter()
            .find(|i| i.arch == arch)
            .unwrap_or_else(|| panic!("no {arch} image in index"))
    }

    /// Pushes every image by digest, then the index as `<repo>:<reference>`.
    pub async fn push(&self, reg: &TestRegistry, repo: &str, reference: &str) {
        for img in &self.images {
            img.push(reg, repo, &img.manifest_digest).await;
        }
        Pusher::new(reg)
            .manifest(repo, reference, &self.media_type, &self.manifest)
            .await;
    }
}

/// Pushes blobs and manifests with the distribution API (monolithic upload).
pub struct Pusher {
    client: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

impl Pusher {
    pub fn new(reg: &TestRegistry) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: reg.url(),
            auth: reg
                .credentials()
                .map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }

    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, url);
        match &self.auth {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    }

    /// POST /v2/<repo>/blobs/uploads/ then PUT <location>&digest=<digest>.
    pub async fn blob(&self, repo: &str, digest: &str, data: &[u8]) {
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let resp = self
            .req(reqwest::Method::POST, &url)
            .send()
            .await
            .expect("start blob upload");
        assert_eq!(resp.status(), 202, "start upload of {digest} to {repo}");
        let location = resp
            .headers()
            .get("location")
            .expect("upload location")
            .to_str()
            .expect("location is text")
            .to_string();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let resp = self
            .req(
                reqwest::Method::PUT,
                &format!("{location}{sep}digest={digest}"),
            )
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("finish blob upload");
        assert_eq!(resp.status(), 201, "finish upload of {digest} to {repo}");
    }

    /// PUT /v2/<repo>/manifests/<reference>; checks the registry's digest.
    pub async fn manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self
            .req(reqwest::Method::PUT, &url)
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("put manifest");
        let status = resp.status();
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 201, "put manifest {repo}:{reference}: {text}");
        assert_eq!(
            digest,
            Some(digest_of(body)),
            "registry digest of {repo}:{reference}"
        );
    }

    /// DELETE /v2/<repo>/manifests/<digest>.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) {
        let url = format!("{}/v2/{repo}/manifests/{digest}", self.base);
        let resp = self
            .req(reqwest::Method::DELETE, &url)
            .send()
            .await
            .expect("delete manifest");
        assert_eq!(resp.status(), 202, "delete manifest {repo}@{digest}");
    }
}
