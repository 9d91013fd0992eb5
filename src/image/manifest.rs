//! Manifests and indexes (OCI and Docker schema 2), and platform selection.

use serde::{Deserialize, Serialize};

use super::{Digest, Error};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What the registry is asked to return, best first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest accepted (the distribution spec suggests 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// The platform an index entry is for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]` (as `docker pull --platform` and containerd
    /// write it).
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if ok(os) && ok(arch) => {
                let variant = parts.get(2).map(|v| v.to_string());
                if variant.as_deref().is_some_and(|v| !ok(v)) {
                    return Err(format!("{s:?} has a bad variant (want os/arch[/variant])"));
                }
                Ok(Platform {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant,
                })
            }
            _ => Err(format!(
                "{s:?} is not a platform (want os/arch[/variant], e.g. linux/arm64)"
            )),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An image index / manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// A parsed manifest document.
#[derive(Debug, Clone)]
pub enum Document {
    Index(Index),
    Manifest(Manifest),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
}

/// Parses a manifest body; `content_type` is the registry's header, used only
/// when the document does not name its own media type.
pub fn parse(what: &str, content_type: &str, body: &[u8]) -> Result<Document, Error> {
    let bad = |reason: String| Error::BadManifest {
        what: what.to_string(),
        reason,
    };
    let probe: Probe =
        serde_json::from_slice(body).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let media_type = probe.media_type.clone().unwrap_or_else(|| {
        content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    });
    if probe.schema_version == Some(1) || media_type == DOCKER_SCHEMA1 {
        return Err(bad(
            "Docker schema 1 manifests are not supported; push the image with schema 2 or OCI"
                .into(),
        ));
    }
    if probe.schema_version != Some(2) {
        return Err(bad(format!(
            "unsupported schemaVersion {:?}",
            probe.schema_version
        )));
    }
    let is_index = match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        _ => probe.manifests.is_some() && probe.layers.is_none(),
    };
    if is_index {
        let idx: Index =
            serde_json::from_slice(body).map_err(|e| bad(format!("invalid index: {e}")))?;
        Ok(Document::Index(idx))
    } else {
        let m: Manifest =
            serde_json::from_slice(body).map_err(|e| bad(format!("invalid manifest: {e}")))?;
        for l in &m.layers {
            if !is_supported_layer(&l.media_type) {
                return Err(bad(format!(
                    "layer {} has unsupported media type {:?}",
                    l.digest, l.media_type
                )));
            }
        }
        Ok(Document::Manifest(m))
    }
}

/// Layer media types berth can unpack.
pub fn is_supported_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar"
    )
}

/// The platform of this host in OCI terms.
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        other => (other, None),
    };
    Platform {
        architecture: architecture.into(),
        os: "linux".into(),
        variant: variant.map(Into::into),
    }
}

/// Picks the index entry for `want`; an entry without a variant matches any
/// variant, and an exact variant match wins.
pub fn select_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    let candidates = index.manifests.iter().filter(|d| {
        matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST | "")
            && d.platform
                .as_ref()
                .is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
    });
    let mut best: Option<&Descriptor> = None;
    for d in candidates {
        let v = d.platform.as_ref().and_then(|p| p.variant.as_deref());
        if v.is_some() && v == want.variant.as_deref() {
            return Some(d);
        }
        // arm64 images usually omit "v8"; a different explicit variant does not match
        if (v.is_none() || want.variant.is_none()) && best.is_none() {
            best = Some(d);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(arch: &str, variant: Option<&str>, n: u8) -> serde_json::Value {
        let mut p = serde_json::json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": Digest::of(&[n]).to_string(),
            "size": 10,
            "platform": p,
        })
    }

    fn index(entries: Vec<serde_json::Value>) -> Index {
        let body =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        match parse("test", "", body.to_string().as_bytes()).unwrap() {
            Document::Index(i) => i,
            _ => panic!("expected an index"),
        }
    }

    #[test]
    fn picks_the_host_arch_and_best_variant() {
        let idx = index(vec![
            desc("arm", Some("v6"), 1),
            desc("arm64", None, 2),
            desc("amd64", None, 3),
        ]);
        let amd = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(
            select_platform(&idx, &amd).unwrap().digest,
            Digest::of(&[3])
        );
        let arm64 = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(
            select_platform(&idx, &arm64).unwrap().digest,
            Digest::of(&[2])
        );
        let armv7 = Platform {
            architecture: "arm".into(),
            os: "linux".into(),
            variant: Some("v7".into()),
        };
        assert!(
            select_platform(&idx, &armv7).is_none(),
            "v6 must not satisfy v7"
        );
        let s390 = Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            variant: None,
        };
        assert!(select_platform(&idx, &s390).is_none());
    }

    #[test]
    fn manifests_are_recognised_by_content() {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(b"c").to_string(), "size": 1},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": Digest::of(b"l").to_string(), "size": 1}],
        });
        assert!(matches!(
            parse("t", "", m.to_string().as_bytes()).unwrap(),
            Document::Manifest(_)
        ));
    }

    #[test]
    fn unsupported_documents_are_refused() {
        let s1 = br#"{"schemaVersion": 1, "name": "x", "fsLayers": []}"#;
        let e = parse("t", DOCKER_SCHEMA1, s1).unwrap_err().to_string();
        assert!(e.contains("schema 1"), "{e}");
        assert!(parse("t", "", b"not json").is_err());
        let foreign = serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "x", "digest": Digest::of(b"c").to_string(), "size": 1},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": Digest::of(b"l").to_string(), "size": 1}],
        });
        let e = parse("t", "", foreign.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported media type"), "{e}");
        let bad_digest = br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:zz","size":1}]}"#;
        assert!(parse("t", OCI_INDEX, bad_digest).is_err());
    }
}
