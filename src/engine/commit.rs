//! Images and archives made from a container's file system: `commit` (its
//! writable layer as a new image over its own), `changes` (what that layer
//! adds, changes and deletes) and `export` (the merged root file system).
//!
//! ```text
//! commit: changes parsed ─▶ [pause] ─▶ upper dir ─┬─▶ layer tar.gz (digest, diff id)
//!                                                 └─▶ snapshot copy (chain id key)
//!         ─▶ [resume] ─▶ config + changes + history ─▶ image store (named)
//! ```
//!
//! The layer tar and the snapshot are both made from the upper dir
//! (`storage::diff`), so the new image's top snapshot needs no unpack.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::build::config::ImageConfig;
use super::container::blocking;
use super::records::ContainerRecord;
use super::{rootfs, Engine, Error};
use crate::build::dockerfile::{self, Kind};
use crate::build::ignore::clean;
use crate::image::archive::Spooled;
use crate::image::digest::chain_ids;
use crate::image::service::{ImageRecord, StepLayer};
use crate::image::Digest;
use crate::storage::diff::{self, Change};

/// What `POST /commit` asks for besides the container.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Full `registry/repo:tag` names for the new image (none: untagged).
    pub names: Vec<String>,
    pub author: String,
    pub comment: String,
    /// Dockerfile instructions applied to the config (`docker commit -c`).
    pub changes: Vec<String>,
    /// Freeze a running container while its layer is read.
    pub pause: bool,
    /// The container's run config (Docker's `Config`: Cmd, Env, …) laid
    /// over the image's before the changes; None keeps the image's.
    pub run_config: Option<serde_json::Map<String, Value>>,
}

/// The instructions `changes` may hold (moby's `validCommitCommands`).
fn allowed(k: &Kind) -> Option<&'static str> {
    Some(match k {
        Kind::Cmd(_) => "CMD",
        Kind::Entrypoint(_) => "ENTRYPOINT",
        Kind::Env(_) => "ENV",
        Kind::Expose(_) => "EXPOSE",
        Kind::Label(_) => "LABEL",
        Kind::User(_) => "USER",
        Kind::Workdir(_) => "WORKDIR",
        Kind::Volume(_) => "VOLUME",
        Kind::StopSignal(_) => "STOPSIGNAL",
        Kind::Healthcheck(_) => "HEALTHCHECK",
        Kind::Onbuild(_) => "ONBUILD",
        _ => return None,
    })
}

/// Parses `changes` (one instruction each) with the Dockerfile parser.
fn parse_changes(changes: &[String]) -> Result<Vec<dockerfile::Instruction>, Error> {
    if changes.iter().all(|c| c.trim().is_empty()) {
        return Ok(vec![]);
    }
    let mut text = String::from("FROM scratch\n");
    for c in changes {
        text.push_str(c);
        text.push('\n');
    }
    let file = dockerfile::parse(&text)
        .map_err(|e| Error::InvalidArgument(format!("invalid change: {e}")))?;
    if file.stages.len() > 1 {
        return Err(Error::InvalidArgument(
            "FROM is not a valid change command".into(),
        ));
    }
    let out: Vec<_> = file
        .stages
        .into_iter()
        .flat_map(|s| s.instructions)
        .collect();
    for i in &out {
        if allowed(&i.kind).is_none() {
            let word = i.original.split_whitespace().next().unwrap_or_default();
            return Err(Error::InvalidArgument(format!(
                "{} is not a valid change command",
                word.to_ascii_uppercase()
            )));
        }
    }
    Ok(out)
}

/// Applies the parsed changes to `config`, words expanded with its ENV.
fn apply_changes(
    config: &mut ImageConfig,
    changes: &[dockerfile::Instruction],
) -> Result<(), Error> {
    let lexer = crate::build::shell::Lexer::default();
    let bad = |e: crate::build::Error| Error::InvalidArgument(format!("invalid change: {e}"));
    for inst in changes {
        let env = config.env();
        let word = |s: &str| lexer.word(s, &env).map_err(bad);
        match &inst.kind {
            Kind::Env(pairs) => {
                for (k, v) in pairs {
                    let (k, v) = (word(k)?, word(v)?);
                    config.set_env(&k, &v);
                }
            }
            Kind::Label(pairs) => {
                let mut set = Vec::new();
                for (k, v) in pairs {
                    set.push((word(k)?, json!(word(v)?)));
                }
                config.merge_map("Labels", set);
            }
            Kind::User(u) => config.set("User", json!(word(u)?)),
            Kind::Workdir(p) => {
                let p = word(p)?;
                let dir = if p.starts_with('/') {
                    p
                } else {
                    format!("{}/{p}", config.working_dir())
                };
                let dir = match clean(&dir) {
                    c if c == "." => "/".to_string(),
                    c => format!("/{c}"),
                };
                config.set("WorkingDir", json!(dir));
            }
            Kind::Expose(ports) => {
                let mut set = Vec::new();
                for p in lexer.words(ports, &env).map_err(bad)? {
                    let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                    if port.parse::<u16>().is_err() {
                        return Err(Error::InvalidArgument(format!(
                            "invalid containerPort: {p}"
                        )));
                    }
                    set.push((format!("{port}/{}", proto.to_ascii_lowercase()), json!({})));
                }
                config.merge_map("ExposedPorts", set);
            }
            Kind::Volume(args) => {
                let vols = args.expand(&lexer, &env).map_err(bad)?;
                config.merge_map(
                    "Volumes",
                    vols.into_iter().map(|v| (v, json!({}))).collect(),
                );
            }
            Kind::StopSignal(s) => config.set("StopSignal", json!(word(s)?)),
            Kind::Cmd(c) => {
                let argv = config.argv(c);
                config.set_strings("Cmd", argv);
            }
            Kind::Entrypoint(c) => {
                let argv = config.argv(c);
                config.set_strings("Entrypoint", argv);
            }
            Kind::Healthcheck(h) => config.set_health(h),
            Kind::Onbuild(t) => {
                let mut list = config.onbuild();
                list.push(t.clone());
                config.set_strings("OnBuild", list);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Lays the container's run config over the image's: Env by variable,
/// Labels, ExposedPorts and Volumes by key, the rest replaced.
fn lay_over(config: &mut ImageConfig, run: &serde_json::Map<String, Value>) {
    for (k, v) in run {
        match (k.as_str(), v) {
            (_, Value::Null) => {}
            ("Env", Value::Array(a)) => {
                for kv in a.iter().filter_map(Value::as_str) {
                    let (name, value) = kv.split_once('=').unwrap_or((kv, ""));
                    config.set_env(name, value);
                }
            }
            ("Labels" | "ExposedPorts" | "Volumes", Value::Object(m)) => {
                config.merge_map(k, m.clone().into_iter().collect());
            }
            _ => config.set(k, v.clone()),
        }
    }
}

/// The runtime's mount points in the container's spec (relative, clean):
/// made in the upper dir by the runtime, not by the container's command.
pub(crate) fn mount_points(rec: &ContainerRecord) -> Result<HashSet<PathBuf>, Error> {
    let spec = rec.dir.join("config.json");
    Ok(oci_spec::runtime::Spec::load(&spec)
        .map_err(|e| Error::internal(format!("failed to read {}: {e}", spec.display())))?
        .mounts()
        .iter()
        .flatten()
        .map(|m| PathBuf::from(clean(&m.destination().to_string_lossy())))
        .collect())
}

impl Engine {
    /// Makes an image of container `id`: its image's config (with the
    /// container's run config and `o.changes` over it) and layers, plus its
    /// writable layer as a new one.
    pub async fn commit_container(&self, id: &str, o: CommitOptions) -> Result<ImageRecord, Error> {
        let rec = self.container(id)?;
        let changes = parse_changes(&o.changes)?;
        let image = self.images.resolve(&rec.image_id)?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "the image {} of container {id} is no longer stored",
                rec.image_name
            ))
        })?;
        let mut config = ImageConfig::parse(&self.images.read_blob(&image.id).await?)
            .map_err(|e| Error::internal(format!("bad config of image {}: {e}", image.id)))?;
        if let Some(run) = &o.run_config {
            lay_over(&mut config, run);
        }
        apply_changes(&mut config, &changes)?;

        let wants_pause =
            o.pause && rec.state == super::records::ContainerState::Running && !rec.paused;
        let paused_here = match wants_pause {
            false => false,
            true => match self.set_paused(id, true).await {
                Ok(()) => true,
                // It exited meanwhile: nothing is writing, no pause needed.
                Err(_) if self.running(id).is_err() => false,
                Err(e) => return Err(e),
            },
        };
        let layer = self.diff_layer(&rec, &image).await;
        if paused_here {
            if let Err(e) = self.set_paused(id, false).await {
                tracing::warn!(container = id, error = %e, "failed to resume a container after commit");
            }
        }
        let (layer, _scratch, hold) = layer?;

        let cmd = rec
            .config
            .command
            .iter()
            .chain(&rec.config.args)
            .cloned()
            .collect::<Vec<_>>();
        config.record(
            &cmd.join(" "),
            Some(layer.diff_id.as_str()),
            super::records::now_nanos(),
        );
        if let Some(top) = config.0.as_object_mut() {
            for (k, v) in [("author", &o.author), ("comment", &o.comment)] {
                if !v.is_empty() {
                    top.insert(k.into(), json!(v));
                    if let Some(h) = top
                        .get_mut("history")
                        .and_then(Value::as_array_mut)
                        .and_then(|a| a.last_mut())
                        .and_then(Value::as_object_mut)
                    {
                        h.insert(k.into(), json!(v));
                    }
                }
            }
            top.insert("container".into(), json!(rec.id));
        }
        let made = self
            .images
            .register_child(config.to_bytes(), Some(&image), Some(layer), o.names)
            .await;
        self.images.release_snapshots(&hold);
        if made.is_err() {
            // The snapshot made for the layer is referenced by nothing now.
            if let Err(e) = self.images.gc().await {
                tracing::warn!(error = %e, "failed to collect an unfinished commit");
            }
        }
        let made = made?;
        self.emit_container("commit", &rec, &[("comment", &o.comment)]);
        Ok(made)
    }

    /// The writable layer of `rec` as a layer file in a scratch dir, and as
    /// the snapshot its chain id names (held under the returned key until
    /// the image is recorded).
    async fn diff_layer(
        &self,
        rec: &ContainerRecord,
        parent: &ImageRecord,
    ) -> Result<(StepLayer, crate::image::service::Scratch, String), Error> {
        let scratch = self.images.scratch()?;
        let path = scratch.path().join("layer.tar.gz");
        let (layer, hold) = self.upper_layer(rec, Some(parent), path).await?;
        Ok((layer, scratch, hold))
    }

    /// The writable layer of `rec` written at `path` as a gzip layer tar,
    /// and copied into the snapshot of its chain id over `parent`'s layers,
    /// so recording the image unpacks nothing. The snapshot is held under
    /// the returned key: release it once the image is recorded.
    pub(crate) async fn upper_layer(
        &self,
        rec: &ContainerRecord,
        parent: Option<&ImageRecord>,
        path: PathBuf,
    ) -> Result<(StepLayer, String), Error> {
        let skip = mount_points(rec)?;
        let upper = rec.layer_dir.join("upper");
        let (u, p, s) = (upper.clone(), path.clone(), skip.clone());
        let d = blocking(move || {
            let f = std::fs::File::create(&p)
                .map_err(|e| Error::io(format!("failed to create {}", p.display()), e))?;
            diff::write_layer(&u, &s, f)
                .map_err(|e| Error::io(format!("failed to write the layer of {}", u.display()), e))
        })
        .await?;
        let parse =
            |s: &str| Digest::parse(s).map_err(|e| Error::internal(format!("bad digest {s}: {e}")));
        let diff_id = parse(&d.diff_id)?;
        // The chain id of the new top, over the parent's top chain id.
        let chain = match parent.and_then(|p| p.layers.last()) {
            Some(top) => chain_ids(&[top.chain_id.clone(), diff_id.clone()]),
            None => vec![diff_id.clone()],
        };
        let key = chain
            .last()
            .map(|c| c.hex().to_string())
            .unwrap_or_default();
        let hold = format!("layer-{}-{}", rec.id, super::records::now_nanos());
        self.images.hold_snapshots(&hold, vec![key.clone()]);
        let snaps = self.images.snapshots().clone();
        let imported = blocking(move || {
            snaps
                .import_upper(&key, &upper, &skip)
                .map_err(|e| Error::internal(format!("failed to make the committed snapshot: {e}")))
        })
        .await;
        if let Err(e) = imported {
            self.images.release_snapshots(&hold);
            return Err(e);
        }
        let layer = StepLayer {
            file: Spooled {
                path,
                size: d.size,
                digest: parse(&d.digest)?,
            },
            diff_id,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        };
        Ok((layer, hold))
    }

    /// What the writable layer of container `id` adds, changes and deletes.
    pub async fn container_changes(&self, id: &str) -> Result<Vec<Change>, Error> {
        let rec = self.container(id)?;
        let skip = mount_points(&rec)?;
        let lowers: Vec<PathBuf> = rec
            .snapshots
            .iter()
            .rev()
            .map(|k| self.images.snapshots().fs_path(k))
            .collect();
        let upper = rec.layer_dir.join("upper");
        blocking(move || {
            diff::changes(&upper, &lowers, &skip).map_err(|e| {
                Error::internal(format!(
                    "failed to read the changes of {}: {e}",
                    upper.display()
                ))
            })
        })
        .await
    }

    /// Writes the merged root file system of container `id` as a plain tar
    /// to `out`; a rootfs that is not mounted (after a host reboot) is
    /// mounted for the time of the export.
    pub async fn export_container<W: Write + Send + 'static>(
        &self,
        id: &str,
        out: W,
    ) -> Result<(), Error> {
        let rec = self.container(id)?;
        let root = rec.rootfs();
        let mounted = crate::storage::is_mounted(&root);
        // A temporary mount keeps the container from starting meanwhile.
        let _g = if mounted {
            None
        } else {
            Some(self.locks.lock(id).await)
        };
        let mounted = mounted || crate::storage::is_mounted(&root);
        if !mounted {
            let lowers: Vec<PathBuf> = rec
                .snapshots
                .iter()
                .map(|k| self.images.snapshots().fs_path(k))
                .collect();
            let (u, w, r) = (
                rec.layer_dir.join("upper"),
                rec.layer_dir.join("work"),
                root.clone(),
            );
            blocking(move || rootfs::mount_overlay(&lowers, &u, &w, &r)).await?;
        }
        let r = root.clone();
        let res = blocking(move || {
            diff::export_tree(&r, out)
                .map_err(|e| Error::internal(format!("failed to export {}: {e}", r.display())))
        })
        .await;
        if !mounted {
            let r = root.clone();
            blocking(move || rootfs::unmount(&r)).await?;
        }
        res?;
        self.emit_container("export", &rec, &[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_to_the_config() {
        let mut c = ImageConfig::parse(
            br#"{"config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/srv"},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let ch = parse_changes(&[
            r#"CMD ["cat","/x"]"#.into(),
            "ENV A=1 B=$PATH".into(),
            "LABEL a=b".into(),
            "EXPOSE 80 53/udp".into(),
            "WORKDIR app".into(),
            "USER 10:10".into(),
            "VOLUME /data".into(),
            "STOPSIGNAL SIGINT".into(),
            "ENTRYPOINT /bin/sh".into(),
        ])
        .unwrap();
        apply_changes(&mut c, &ch).unwrap();
        let r = &c.0["config"];
        assert_eq!(r["Cmd"], json!(["cat", "/x"]));
        assert_eq!(r["Env"], json!(["PATH=/bin", "A=1", "B=/bin"]));
        assert_eq!(r["Labels"], json!({"a": "b"}));
        assert_eq!(r["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(r["WorkingDir"], json!("/srv/app"));
        assert_eq!(r["User"], json!("10:10"));
        assert_eq!(r["Volumes"], json!({"/data": {}}));
        assert_eq!(r["StopSignal"], json!("SIGINT"));
        assert_eq!(r["Entrypoint"], json!(["/bin/sh", "-c", "/bin/sh"]));
        for bad in ["RUN true", "FROM busybox", "COPY a b", "NOSUCH x"] {
            assert!(
                matches!(parse_changes(&[bad.into()]), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
        assert!(parse_changes(&[String::new()]).unwrap().is_empty());
    }
}
