use base64::Engine as _;
use http::StatusCode;

use super::delete::{plan, Step, User};
use super::pull::{
    apply_change, error_line, progress_line, pull_error, pull_reference, registry_auth, status_line,
};
use super::*;
use crate::image::auth::Credentials;
use crate::image::Digest;

fn record(tags: &[&str], digests: &[&str]) -> ImageRecord {
    ImageRecord {
        id: Digest::of(b"config"),
        repo_tags: tags.iter().map(|s| s.to_string()).collect(),
        repo_digests: digests.iter().map(|s| s.to_string()).collect(),
        size: 0,
        manifest_digest: Digest::of(b"manifest"),
        index_digest: None,
        layers: vec![],
        pulled_at: 0,
    }
}

fn json_of(b: &Bytes) -> Value {
    assert!(b.ends_with(b"\n"), "a stream line ends with a newline");
    serde_json::from_slice(b).unwrap()
}

#[test]
fn message_stream_lines_have_dockers_shape() {
    assert_eq!(
        json_of(&status_line("Pulling from test/busybox", Some("v1"))),
        json!({"status": "Pulling from test/busybox", "id": "v1"})
    );
    assert_eq!(
        json_of(&status_line("Digest: sha256:abc", None)),
        json!({"status": "Digest: sha256:abc"})
    );
    assert_eq!(
        json_of(&progress_line("Pull complete", "0123456789ab")),
        json!({"status": "Pull complete", "progressDetail": {}, "id": "0123456789ab"})
    );
    assert_eq!(
        json_of(&error_line("boom")),
        json!({"errorDetail": {"message": "boom"}, "error": "boom"})
    );
}

#[test]
fn pull_references_combine_image_and_tag() {
    let r = pull_reference("127.0.0.1:5000/test/busybox", "v1").unwrap();
    assert_eq!(r.to_string(), "127.0.0.1:5000/test/busybox:v1");
    assert_eq!(
        pull_reference("busybox", "").unwrap().familiar(),
        "busybox:latest"
    );
    // `pull -a` sends a trailing colon.
    assert_eq!(
        pull_reference("busybox:", "1").unwrap().familiar(),
        "busybox:1"
    );
    let d = Digest::of(b"m");
    let r = pull_reference("busybox", d.as_str()).unwrap();
    assert_eq!((r.tag, r.digest), (None, Some(d)));
    let e = pull_reference("Bad/Name", "").unwrap_err();
    assert_eq!(e.status, StatusCode::BAD_REQUEST);
}

#[test]
fn pull_errors_read_like_dockers() {
    let r = pull_reference("127.0.0.1:5000/test/busybox", "nope").unwrap();
    let unknown_tag = crate::image::Error::Registry {
        what: "manifest".into(),
        url: "http://127.0.0.1:5000/v2/test/busybox/manifests/nope".into(),
        status: 404,
        detail: "manifest unknown (MANIFEST_UNKNOWN)".into(),
    };
    let e = pull_error(&r, unknown_tag);
    assert_eq!(e.status, StatusCode::NOT_FOUND);
    assert!(
        e.message.starts_with(
            "manifest for 127.0.0.1:5000/test/busybox:nope not found: manifest unknown"
        ),
        "{}",
        e.message
    );
    let unknown_repo = crate::image::Error::Registry {
        what: "manifest".into(),
        url: "u".into(),
        status: 404,
        detail: "repository name not known to registry (NAME_UNKNOWN)".into(),
    };
    let e = pull_error(&r, unknown_repo);
    assert!(
        e.message.starts_with(
            "pull access denied for 127.0.0.1:5000/test/busybox, repository does not exist"
        ),
        "{}",
        e.message
    );
}

#[test]
fn registry_auth_headers_decode_to_credentials() {
    let mut h = HeaderMap::new();
    assert_eq!(registry_auth(&h), Credentials::Anonymous);
    let body = br#"{"username":"u","password":"p?>","serveraddress":"127.0.0.1:5000"}"#;
    let enc = base64::engine::general_purpose::URL_SAFE.encode(body);
    h.insert("x-registry-auth", enc.parse().unwrap());
    assert_eq!(
        registry_auth(&h),
        Credentials::Basic {
            username: "u".into(),
            password: "p?>".into()
        }
    );
    let tok = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"identitytoken":"t"}"#);
    h.insert("x-registry-auth", tok.parse().unwrap());
    assert_eq!(registry_auth(&h), Credentials::IdentityToken("t".into()));
    // Docker ignores an undecodable header.
    h.insert("x-registry-auth", "!!!".parse().unwrap());
    assert_eq!(registry_auth(&h), Credentials::Anonymous);
}

use http::HeaderMap;

#[test]
fn filters_accept_both_encodings() {
    let f = parse_filters(Some(r#"{"dangling":{"true":true},"reference":["busy*"]}"#)).unwrap();
    assert_eq!(f["dangling"], vec!["true"]);
    assert_eq!(f["reference"], vec!["busy*"]);
    assert!(parse_filters(None).unwrap().is_empty());
    assert!(parse_filters(Some("[1]")).is_err());
    assert!(check_filter_keys(&f, &["dangling"]).is_err());
    assert!(check_filter_keys(&f, &["dangling", "reference"]).is_ok());
}

#[test]
fn reference_patterns_match_like_go_path_match() {
    assert!(glob("busy*", "busybox"));
    assert!(!glob("busy*", "busybox/x"), "* stops at /");
    assert!(glob("*/test/*", "127.0.0.1:5000/test/busybox"));
    assert!(glob("b?sybox", "busybox"));
    assert!(glob("[a-c]usybox", "busybox"));
    assert!(!glob("[^a-c]usybox", "busybox"));
    assert!(reference_matches(
        "busybox",
        "docker.io/library/busybox:latest"
    ));
    assert!(reference_matches(
        "busybox:latest",
        "docker.io/library/busybox:latest"
    ));
    assert!(!reference_matches(
        "busybox:1",
        "docker.io/library/busybox:latest"
    ));
    assert!(reference_matches(
        "127.0.0.1:5000/test/*",
        "127.0.0.1:5000/test/busybox:v1"
    ));
}

#[test]
fn labels_match_by_key_or_pair() {
    let l = json!({"a": "1", "b": ""});
    assert!(label_matches(&l, "a"));
    assert!(label_matches(&l, "a=1"));
    assert!(!label_matches(&l, "a=2"));
    assert!(!label_matches(&l, "c"));
    assert!(!label_matches(&Value::Null, "a"));
}

#[test]
fn repo_and_tag_make_one_reference() {
    assert_eq!(
        repo_tag("busybox", Some("x")).unwrap().to_string(),
        "docker.io/library/busybox:x"
    );
    assert_eq!(
        repo_tag("127.0.0.1:5000/a:b", None).unwrap().familiar(),
        "127.0.0.1:5000/a:b"
    );
    assert!(repo_tag(&format!("a@{}", Digest::of(b"x")), None).is_err());
}

#[test]
fn image_names_are_shown_familiar() {
    assert_eq!(
        familiar("docker.io/library/busybox:latest"),
        "busybox:latest"
    );
    assert_eq!(
        familiar("127.0.0.1:5000/test/busybox:v1"),
        "127.0.0.1:5000/test/busybox:v1"
    );
    assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    assert_eq!(
        split_action("127.0.0.1:5000/a/b:v1/json"),
        Some(("127.0.0.1:5000/a/b:v1", "json"))
    );
    assert_eq!(split_action("json"), None);
    assert!(transfer::has_explicit_tag("127.0.0.1:5000/a:v1"));
    assert!(!transfer::has_explicit_tag("127.0.0.1:5000/a"));
}

const BB: &str = "docker.io/library/busybox:latest";

fn stopped() -> Vec<User> {
    vec![User {
        id: "c0ffee0000000000".into(),
        running: false,
    }]
}

fn running() -> Vec<User> {
    vec![User {
        id: "c0ffee0000000000".into(),
        running: true,
    }]
}

#[test]
fn removing_one_of_several_tags_only_untags() {
    let rec = record(&[BB, "docker.io/library/other:1"], &[]);
    let steps = plan(&rec, "busybox", &running(), false).unwrap();
    assert_eq!(steps, vec![Step::Untag(BB.into())]);
}

#[test]
fn removing_the_last_tag_deletes_and_takes_repo_digests() {
    let dig = format!("docker.io/library/busybox@{}", Digest::of(b"m"));
    let rec = record(&[BB], &[&dig]);
    let steps = plan(&rec, "busybox:latest", &[], false).unwrap();
    assert_eq!(
        steps,
        vec![Step::Untag(BB.into()), Step::Untag(dig), Step::Delete]
    );
}

#[test]
fn images_in_use_need_force_and_running_ones_stay() {
    let rec = record(&[BB], &[]);
    let e = plan(&rec, "busybox", &stopped(), false).unwrap_err();
    assert_eq!(e.status, StatusCode::CONFLICT);
    assert!(
        e.message.starts_with(r#"conflict: unable to remove repository reference "busybox" (must force) - container c0ffee000000 is using its referenced image"#),
        "{}",
        e.message
    );
    // Forced, a stopped container's image goes; a running one's only loses its name.
    assert_eq!(
        plan(&rec, "busybox", &stopped(), true).unwrap(),
        vec![Step::Untag(BB.into()), Step::Delete]
    );
    assert_eq!(
        plan(&rec, "busybox", &running(), true).unwrap(),
        vec![Step::Untag(BB.into())]
    );
    // By id, a running container's image cannot be removed at all.
    for force in [false, true] {
        let e = plan(&rec, rec.id.hex(), &running(), force).unwrap_err();
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(
            e.message,
            format!(
                "conflict: unable to delete {} (cannot be forced) - image is being used by running container c0ffee000000",
                &rec.id.hex()[..12]
            )
        );
    }
    let e = plan(&rec, &rec.id.hex()[..8], &stopped(), false).unwrap_err();
    assert!(
        e.message
            .contains("(must be forced) - image is being used by stopped container"),
        "{}",
        e.message
    );
}

#[test]
fn removing_by_id_with_names_in_several_repositories_needs_force() {
    let rec = record(&[BB, "docker.io/library/other:1"], &[]);
    let e = plan(&rec, rec.id.as_str(), &[], false).unwrap_err();
    assert!(
        e.message
            .ends_with("(must be forced) - image is referenced in multiple repositories"),
        "{}",
        e.message
    );
    assert_eq!(
        plan(&rec, rec.id.as_str(), &[], true).unwrap(),
        vec![
            Step::Untag(BB.into()),
            Step::Untag("docker.io/library/other:1".into()),
            Step::Delete
        ]
    );
    let bare = record(&[], &[]);
    assert_eq!(
        plan(&bare, bare.id.as_str(), &[], false).unwrap(),
        vec![Step::Delete]
    );
}

#[test]
fn import_changes_edit_the_config() {
    let mut c = json!({});
    apply_change(&mut c, r#"CMD ["echo", "hi"]"#).unwrap();
    apply_change(&mut c, "ENTRYPOINT /bin/true").unwrap();
    apply_change(&mut c, "ENV A=1 B=2").unwrap();
    apply_change(&mut c, "ENV A=3").unwrap();
    apply_change(&mut c, "WORKDIR /srv").unwrap();
    apply_change(&mut c, "LABEL k=v").unwrap();
    apply_change(&mut c, "EXPOSE 80 53/udp").unwrap();
    assert_eq!(c["Cmd"], json!(["echo", "hi"]));
    assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/bin/true"]));
    assert_eq!(c["Env"], json!(["B=2", "A=3"]));
    assert_eq!(c["WorkingDir"], json!("/srv"));
    assert_eq!(c["Labels"], json!({"k": "v"}));
    assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
    assert!(apply_change(&mut c, "RUN rm -rf /").is_err());
}

fn facts_of(config: Value, sizes: Vec<u64>) -> Facts {
    Facts {
        rec: record(&["127.0.0.1:5000/test/busybox:v1"], &[]),
        config,
        layer_sizes: sizes,
    }
}

#[test]
fn summaries_have_dockers_fields() {
    let f = facts_of(
        json!({"created": "2023-11-14T22:13:20Z", "config": {"Labels": {"a": "b"}}}),
        vec![10, 5],
    );
    let s = summary(&f, &f.rec.repo_tags, Some(ApiVersion(1, 47)));
    assert_eq!(s["Id"], json!(f.rec.id));
    assert_eq!(s["Created"], json!(1_700_000_000));
    assert_eq!(s["Size"], json!(15));
    assert_eq!(s["RepoTags"], json!(["127.0.0.1:5000/test/busybox:v1"]));
    assert_eq!(s["RepoDigests"], json!([]));
    assert_eq!(s["Labels"], json!({"a": "b"}));
    assert_eq!(s["Containers"], json!(-1));
    assert!(s.get("VirtualSize").is_none());
    let old = summary(&f, &[], Some(ApiVersion(1, 41)));
    assert_eq!(old["RepoTags"], json!(["<none>:<none>"]));
    assert_eq!(old["VirtualSize"], json!(15));
}

#[test]
fn history_is_newest_first_with_the_id_on_top() {
    let f = facts_of(
        json!({"history": [
            {"created": "2023-11-14T22:13:20Z", "created_by": "layer 0"},
            {"created": "2023-11-14T22:13:21Z", "created_by": "ENV x=y", "empty_layer": true},
            {"created": "2023-11-14T22:13:22Z", "created_by": "layer 1", "comment": "c"},
        ]}),
        vec![7, 3],
    );
    let h = history_body(&f);
    assert_eq!(h.len(), 3);
    assert_eq!(h[0]["Id"], json!(f.rec.id));
    assert_eq!(h[0]["Tags"], json!(["127.0.0.1:5000/test/busybox:v1"]));
    assert_eq!(h[0]["CreatedBy"], json!("layer 1"));
    assert_eq!(h[0]["Size"], json!(3));
    assert_eq!(h[0]["Comment"], json!("c"));
    assert_eq!(h[1]["Size"], json!(0));
    assert_eq!(h[1]["Id"], json!("<missing>"));
    assert_eq!(h[2]["Size"], json!(7));
    assert_eq!(h[2]["Created"], json!(1_700_000_000));
    assert_eq!(h[2]["Tags"], Value::Null);
}
