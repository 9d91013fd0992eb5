//! The builder's instructions, one by one: FROM (a stage, an image or
//! scratch, with the base's ONBUILD triggers), the config-only ones, ARG,
//! RUN, and COPY/ADD/WORKDIR with their layers.

use serde_json::{json, Value};

use super::config::DEFAULT_PATH;
use super::copy::{self, Owner, Source};
use super::run::RunSpec;
use super::view::{lookup_ids, View};
use super::{Build, Failure, StageState, PROXY_ARGS};
use crate::build::context::{resolve_in, sources};
use crate::build::dockerfile::{self, CopySpec, Instruction, Kind};
use crate::build::ignore::{clean, Ignore};
use crate::build::progress::Message;
use crate::engine::Engine;
use crate::image::auth::Credentials;
use crate::image::ImageRecord;

fn fail(message: impl Into<String>) -> Failure {
    Failure {
        code: 0,
        message: message.into(),
    }
}

impl Build<'_> {
    /// Resolves the ARGs before the first FROM.
    pub(super) fn meta_args(&mut self) -> Result<(), Failure> {
        let lexer = self.file.lexer();
        for d in self.file.meta_args.clone() {
            let value = match self.opts.build_args.get(&d.name) {
                Some(v) => {
                    self.consumed.insert(d.name.clone());
                    v.clone()
                }
                None => match &d.default {
                    Some(def) => Some(lexer.word(def, &self.meta)?),
                    None => None,
                },
            };
            if let Some(v) = value {
                self.meta.push((d.name, v));
            }
        }
        Ok(())
    }
}

/// `/abs` stays, `rel` is taken below the working directory; cleaned.
fn absolute(workdir: &str, p: &str) -> String {
    let joined = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{}/{p}", if workdir.is_empty() { "/" } else { workdir })
    };
    let c = clean(&joined);
    if c == "." {
        "/".into()
    } else {
        format!("/{c}")
    }
}

impl Engine {
    /// An image by name: local unless `pull` says otherwise, else pulled.
    async fn base_image(&self, b: &Build<'_>, name: &str) -> Result<ImageRecord, Failure> {
        let local = self.images.resolve(name).ok().flatten();
        if let (Some(rec), false) = (&local, b.opts.pull) {
            return Ok(rec.clone());
        }
        b.progress
            .send(Message::Stream(format!("Pulling {name}\n")))
            .await;
        match self.images.pull(name, &Credentials::default()).await {
            Ok(rec) => Ok(rec),
            Err(e) => match local {
                Some(rec) => {
                    b.progress
                        .send(Message::Stream(format!(
                            "[Warning] failed to pull {name}, using the local image: {e}\n"
                        )))
                        .await;
                    Ok(rec)
                }
                None => Err(fail(format!(
                    "pull access denied for {name}, repository does not exist or may require 'docker login': {e}"
                ))),
            },
        }
    }

    /// FROM: the stage starts from a previous stage, scratch or an image.
    pub(super) async fn base_step(
        &self,
        b: &mut Build<'_>,
        base: &str,
    ) -> Result<StageState, Failure> {
        let base = b.file.lexer().word(base, &b.meta)?;
        if base.is_empty() {
            return Err(fail("base name (FROM) should not be blank"));
        }
        let st = match b.file.stage_index(&base).filter(|i| *i < b.stages.len()) {
            Some(i) if !base.chars().all(|c| c.is_ascii_digit()) => {
                let mut s = b.stages[i].clone();
                s.args.clear();
                s.cmd_set = false;
                s
            }
            _ if base.eq_ignore_ascii_case("scratch") => StageState::scratch(),
            _ => {
                let rec = self.base_image(b, &base).await?;
                let bytes = self.images.read_blob(&rec.id).await?;
                let config = super::ImageConfig::parse(&bytes).map_err(fail)?;
                StageState {
                    image: Some(rec),
                    config,
                    args: vec![],
                    cmd_set: false,
                }
            }
        };
        if let Some(i) = &st.image {
            b.progress.send(Message::image(i.id.as_str())).await;
        }
        let mut st = st;
        let triggers = st.config.onbuild();
        if !triggers.is_empty() {
            b.progress
                .send(Message::Stream(format!(
                    "# Executing {} build trigger{}\n",
                    triggers.len(),
                    if triggers.len() == 1 { "" } else { "s" }
                )))
                .await;
            // The child does not inherit the triggers.
            st.config.set("OnBuild", Value::Null);
            for t in triggers {
                let f = dockerfile::parse(&format!("FROM scratch\n{t}\n"))?;
                for inst in &f.stages[0].instructions {
                    self.dispatch(b, &mut st, inst).await?;
                }
            }
        }
        Ok(st)
    }

    /// Runs one instruction of a stage.
    pub(super) async fn dispatch(
        &self,
        b: &mut Build<'_>,
        st: &mut StageState,
        inst: &Instruction,
    ) -> Result<(), Failure> {
        let lexer = b.file.lexer();
        let env = st.expand_env();
        let word = |s: &str| lexer.word(s, &env);
        match &inst.kind {
            Kind::Env(pairs) => {
                let mut set = Vec::new();
                for (k, v) in pairs {
                    set.push((word(k)?, word(v)?));
                }
                let text = format!(
                    "ENV {}",
                    set.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                self.config_step(b, st, &text, |c| {
                    for (k, v) in &set {
                        c.set_env(k, v);
                    }
                })
                .await
            }
            Kind::Label(pairs) => {
                let mut set = Vec::new();
                for (k, v) in pairs {
                    set.push((word(k)?, word(v)?));
                }
                let text = format!(
                    "LABEL {}",
                    set.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                let values = set.into_iter().map(|(k, v)| (k, json!(v))).collect();
                self.config_step(b, st, &text, |c| c.merge_map("Labels", values))
                    .await
            }
            Kind::Arg(decls) => {
                let mut shown = Vec::new();
                for d in decls {
                    let value = match b.opts.build_args.get(&d.name) {
                        Some(v) => {
                            b.consumed.insert(d.name.clone());
                            v.clone()
                        }
                        None => match &d.default {
                            Some(def) => Some(lexer.word(def, &st.expand_env())?),
                            None => b
                                .meta
                                .iter()
                                .find(|(k, _)| *k == d.name)
                                .map(|(_, v)| v.clone()),
                        },
                    };
                    st.args.retain(|(k, _)| *k != d.name);
                    if let Some(v) = &value {
                        st.args.push((d.name.clone(), v.clone()));
                        shown.push(format!("{}={v}", d.name));
                    } else {
                        shown.push(d.name.clone());
                    }
                }
                self.config_step(b, st, &format!("ARG {}", shown.join(" ")), |_| {})
                    .await
            }
            Kind::Workdir(p) => {
                let dir = absolute(&st.config.working_dir(), &word(p)?);
                self.workdir_step(b, st, &dir).await
            }
            Kind::User(u) => {
                let u = word(u)?;
                self.config_step(b, st, &format!("USER {u}"), |c| c.set("User", json!(u)))
                    .await
            }
            Kind::Expose(ports) => {
                let mut set = Vec::new();
                for p in lexer.words(ports, &env)? {
                    let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                    let proto = proto.to_ascii_lowercase();
                    let (lo, hi) = port.split_once('-').unwrap_or((port, port));
                    let (lo, hi) = match (lo.parse::<u16>(), hi.parse::<u16>()) {
                        (Ok(l), Ok(h)) if l <= h => (l, h),
                        _ => return Err(fail(format!("Invalid containerPort: {p}"))),
                    };
                    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
                        return Err(fail(format!("invalid proto: {proto}")));
                    }
                    for n in lo..=hi {
                        set.push(format!("{n}/{proto}"));
                    }
                }
                let text = format!("EXPOSE {}", set.join(" "));
                let values = set.into_iter().map(|k| (k, json!({}))).collect();
                self.config_step(b, st, &text, |c| c.merge_map("ExposedPorts", values))
                    .await
            }
            Kind::Volume(args) => {
                let vols = args.expand(&lexer, &env)?;
                if vols.iter().any(|v| v.trim().is_empty()) {
                    return Err(fail("VOLUME specified can not be an empty string"));
                }
                let text = format!("VOLUME [{}]", vols.join(" "));
                let values = vols.into_iter().map(|k| (k, json!({}))).collect();
                self.config_step(b, st, &text, |c| c.merge_map("Volumes", values))
                    .await
            }
            Kind::StopSignal(s) => {
                let s = word(s)?;
                self.config_step(b, st, &format!("STOPSIGNAL {s}"), |c| {
                    c.set("StopSignal", json!(s))
                })
                .await
            }
            Kind::Cmd(c) => {
                let argv = st.config.argv(c);
                st.cmd_set = true;
                self.config_step(b, st, &format!("CMD {}", json!(argv)), |cfg| {
                    cfg.set_strings("Cmd", argv.clone())
                })
                .await
            }
            Kind::Entrypoint(c) => {
                let argv = st.config.argv(c);
                let keep_cmd = st.cmd_set;
                self.config_step(b, st, &format!("ENTRYPOINT {}", json!(argv)), |cfg| {
                    cfg.set_strings("Entrypoint", argv.clone());
                    if !keep_cmd {
                        // A base image's CMD does not outlive a new ENTRYPOINT.
                        cfg.set("Cmd", Value::Null);
                    }
                })
                .await
            }
            Kind::Shell(sh) => {
                let sh = sh.clone();
                self.config_step(b, st, &format!("SHELL {}", json!(sh)), |c| {
                    c.set_strings("Shell", sh.clone())
                })
                .await
            }
            Kind::Healthcheck(h) => {
                let h = h.clone();
                self.config_step(b, st, &inst.original, |c| c.set_health(&h))
                    .await
            }
            Kind::Onbuild(t) => {
                let t = t.clone();
                self.config_step(b, st, &format!("ONBUILD {t}"), |c| {
                    let mut list = c.onbuild();
                    list.push(t.clone());
                    c.set_strings("OnBuild", list);
                })
                .await
            }
            Kind::Maintainer(m) => {
                let m = m.clone();
                self.config_step(b, st, &format!("MAINTAINER {m}"), |c| {
                    if let Some(o) = c.0.as_object_mut() {
                        o.insert("author".into(), json!(m));
                    }
                })
                .await
            }
            Kind::Run(cmd) => self.run_instruction(b, st, cmd).await,
            Kind::Copy(spec) => self.copy_step(b, st, spec, false).await,
            Kind::Add(spec) => self.copy_step(b, st, spec, true).await,
        }
    }

    async fn run_instruction(
        &self,
        b: &mut Build<'_>,
        st: &mut StageState,
        cmd: &dockerfile::Command,
    ) -> Result<(), Failure> {
        let argv = st.config.argv(cmd);
        let mut env = st.config.env();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
        }
        // ARG values reach the command unless ENV sets the same name.
        let mut args: Vec<(String, String)> = st
            .args
            .iter()
            .filter(|(k, _)| !env.iter().any(|(e, _)| e == k))
            .cloned()
            .collect();
        for p in PROXY_ARGS {
            if let Some(Some(v)) = b.opts.build_args.get(*p) {
                if !args.iter().any(|(k, _)| k == p) {
                    args.push((p.to_string(), v.clone()));
                }
            }
        }
        let shown: Vec<String> = args
            .iter()
            .filter(|(k, _)| !PROXY_ARGS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let created_by = if shown.is_empty() {
            argv.join(" ")
        } else {
            format!("|{} {} {}", shown.len(), shown.join(" "), argv.join(" "))
        };
        let key = Self::cache_key(st, &format!("RUN {created_by}"));
        if self.cached(b, st, &key).await? {
            return Ok(());
        }
        let Some(image) = st.image.clone() else {
            return Err(fail(
                "no such file or directory: a RUN needs a base image with a shell (this stage is FROM scratch)",
            ));
        };
        env.extend(args);
        let ran = self
            .run_step(
                RunSpec {
                    image_id: image.id.as_str(),
                    argv: argv.clone(),
                    env,
                    user: st.config.user(),
                    working_dir: st.config.working_dir(),
                    network_mode: &b.opts.network_mode,
                },
                b.progress,
            )
            .await?;
        if ran.exit_code != 0 {
            if b.opts.force_rm {
                self.discard_build_pod(&ran.pod_id).await;
            }
            return Err(Failure {
                code: i64::from(ran.exit_code),
                message: format!(
                    "The command '{}' returned a non-zero code: {}",
                    argv.join(" "),
                    ran.exit_code
                ),
            });
        }
        let layer_path = b.scratch.path().join(format!("{}.tar.gz", &ran.id[..12]));
        let layer = self.container_layer(&ran.id, &image, &layer_path).await;
        if b.opts.rm || b.opts.force_rm || layer.is_err() {
            self.discard_build_pod(&ran.pod_id).await;
            b.progress
                .send(Message::Stream(format!(
                    "Removing intermediate container {}\n",
                    &ran.id[..12]
                )))
                .await;
        }
        let (layer, hold) = layer?;
        let recorded = self.record_step(st, &created_by, Some(layer), key).await;
        self.images.release_snapshots(&hold);
        recorded
    }

    /// WORKDIR: the directory is made (a layer) when the parent lacks it.
    async fn workdir_step(
        &self,
        b: &mut Build<'_>,
        st: &mut StageState,
        dir: &str,
    ) -> Result<(), Failure> {
        let key = Self::cache_key(st, &format!("WORKDIR {dir}"));
        if self.cached(b, st, &key).await? {
            return Ok(());
        }
        st.config.set("WorkingDir", json!(dir));
        let missing = {
            let view = View::open(&self.images, st.image.as_ref())?;
            copy::missing_dirs(Some(view.path()), dir, Owner::Ids(0, 0))
        };
        let created_by = format!("/bin/sh -c #(nop) WORKDIR {dir}");
        if missing.is_empty() {
            return self.record_step(st, &created_by, None, key).await;
        }
        let path = b.scratch.path().join(format!("workdir-{}.tar.gz", key));
        let layer = tokio::task::spawn_blocking(move || copy::write_layer(&missing, &path))
            .await
            .map_err(|e| fail(format!("layer writer failed: {e}")))?
            .map_err(|e| fail(format!("failed to write the WORKDIR layer: {e}")))?;
        self.record_step(st, &created_by, Some(layer), key).await
    }

    /// COPY / ADD.
    async fn copy_step(
        &self,
        b: &mut Build<'_>,
        st: &mut StageState,
        spec: &CopySpec,
        add: bool,
    ) -> Result<(), Failure> {
        let lexer = b.file.lexer();
        let env = st.expand_env();
        let kw = if add { "ADD" } else { "COPY" };
        let mut words = spec
            .args
            .as_ref()
            .map(|a| a.expand(&lexer, &env))
            .transpose()?
            .unwrap_or_default();
        let Some(dest_word) = words.pop() else {
            return Err(fail(format!("{kw} requires at least two arguments")));
        };
        let chown = spec
            .chown
            .as_deref()
            .map(|c| lexer.word(c, &env))
            .transpose()?;
        let chmod = match &spec.chmod {
            None => None,
            Some(c) => {
                let c = lexer.word(c, &env)?;
                Some(
                    u32::from_str_radix(&c, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| fail(format!("invalid chmod value {c:?}")))?,
                )
            }
        };
        let from = spec
            .from
            .as_deref()
            .map(|f| lexer.word(f, &env))
            .transpose()?;
        // The source root: the context, a stage, or an image.
        let from_image = match &from {
            None => None,
            Some(f) => match b.file.stage_index(f).filter(|i| *i < b.stages.len()) {
                Some(i) => Some(b.stages[i].image.clone()),
                None => {
                    if f.chars().all(|c| c.is_ascii_digit()) {
                        return Err(fail(format!(
                            "invalid from flag value {f}: stage {f} is not built yet"
                        )));
                    }
                    Some(Some(self.base_image(b, f).await?))
                }
            },
        };
        let src_view = match &from_image {
            Some(img) => Some(View::open(&self.images, img.as_ref())?),
            None => None,
        };
        let dest_view = View::open(&self.images, st.image.as_ref())?;
        let workdir = st.config.working_dir();
        let scratch = self.images.scratch()?;
        let (root, ignore) = match &src_view {
            Some(v) => (v.path().to_path_buf(), Ignore::default()),
            None => (b.context.to_path_buf(), b.ignore.clone()),
        };
        let in_context = src_view.is_none();
        let dest_root = dest_view.path().to_path_buf();
        let unpack_dir = scratch.path().to_path_buf();
        let owner_spec = chown.clone();
        let kw_s = kw.to_string();
        let plan = tokio::task::spawn_blocking(move || -> Result<(Vec<copy::Entry>, String), Failure> {
            let mut found: Vec<(String, std::path::PathBuf)> = Vec::new();
            for w in &words {
                if add && (w.starts_with("http://") || w.starts_with("https://")) {
                    return Err(fail(format!(
                        "ADD from a URL ({w}) is not supported by berth's builder; download it in a RUN step"
                    )));
                }
                found.extend(sources(&root, w, &ignore)?);
            }
            let wild = words.iter().any(|w| w.contains(['*', '?', '[']));
            let dest = absolute(&workdir, &dest_word);
            let dest_exists_dir = resolve_in(&dest_root, &dest, true)
                .is_ok_and(|p| std::fs::metadata(p).is_ok_and(|m| m.is_dir()));
            let dest_is_dir = dest_word.ends_with('/') || dest_exists_dir || dest_word == ".";
            if (found.len() > 1 || wild) && !dest_is_dir {
                return Err(fail(format!(
                    "When using {kw_s} with more than one source file, the destination must be a directory and end with a /"
                )));
            }
            let owner = match &owner_spec {
                Some(c) => {
                    let (u, g) = lookup_ids(&dest_root, c).map_err(fail)?;
                    Owner::Ids(u, g)
                }
                None => Owner::Ids(0, 0),
            };
            // Where the destination really is in the parent (its links followed).
            let (dir, file) = if dest_is_dir {
                (dest.clone(), None)
            } else {
                let (d, f) = dest.rsplit_once('/').unwrap_or(("", &dest));
                (if d.is_empty() { "/".to_string() } else { d.to_string() }, Some(f.to_string()))
            };
            let real_dir = resolve_in(&dest_root, &dir, true)
                .ok()
                .and_then(|p| p.strip_prefix(&dest_root).ok().map(|p| format!("/{}", p.display())))
                .unwrap_or(dir);
            let real_dest = match &file {
                Some(f) => format!("{}/{f}", real_dir.trim_end_matches('/')),
                None => real_dir.clone(),
            };
            let mut entries = copy::missing_dirs(Some(&dest_root), &real_dir, owner);
            for (n, (rel, host)) in found.iter().enumerate() {
                let ctx = in_context.then(|| rel.clone());
                if add && std::fs::symlink_metadata(host).is_ok_and(|m| m.is_file()) && copy::is_archive(host) {
                    let into = unpack_dir.join(format!("archive-{n}"));
                    std::fs::create_dir_all(&into)
                        .map_err(|e| fail(format!("failed to unpack {rel}: {e}")))?;
                    let f = std::fs::File::open(host)
                        .map_err(|e| fail(format!("failed to open {rel}: {e}")))?;
                    crate::build::context::extract_with(f, &into, true)?;
                    let keep = if owner_spec.is_some() { owner } else { Owner::Keep };
                    let src = Source { host: into, ctx: None };
                    entries.extend(copy::plan(&[src], &real_dir, true, keep, chmod, &Ignore::default())?);
                    continue;
                }
                let src = Source { host: host.clone(), ctx };
                entries.extend(copy::plan(&[src], &real_dest, dest_is_dir, owner, chmod, &ignore)?);
            }
            let digest = copy::content_digest(&entries)?;
            Ok((entries, format!("{digest} in {dest}")))
        })
        .await
        .map_err(|e| fail(format!("{kw} planner failed: {e}")))??;
        let (entries, summary) = plan;
        // The entries point into the views (and the scratch dir): they stay
        // mounted until the layer is written.
        drop(dest_view);
        let text = format!(
            "{kw} {}{}{summary}",
            from.as_deref()
                .map(|f| format!("--from={f} "))
                .unwrap_or_default(),
            chown
                .as_deref()
                .map(|c| format!("--chown={c} "))
                .unwrap_or_default(),
        );
        let key = Self::cache_key(st, &text);
        if self.cached(b, st, &key).await? {
            return Ok(());
        }
        let path = b.scratch.path().join(format!("copy-{key}.tar.gz"));
        let layer = tokio::task::spawn_blocking(move || copy::write_layer(&entries, &path))
            .await
            .map_err(|e| fail(format!("layer writer failed: {e}")))?
            .map_err(|e| fail(format!("failed to write the {kw} layer: {e}")))?;
        drop(src_view);
        drop(scratch);
        self.record_step(st, &format!("/bin/sh -c #(nop) {text}"), Some(layer), key)
            .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_below_the_workdir() {
        assert_eq!(super::absolute("", "app"), "/app");
        assert_eq!(super::absolute("/srv", "app/"), "/srv/app");
        assert_eq!(super::absolute("/srv", "/etc"), "/etc");
        assert_eq!(super::absolute("/srv", "."), "/srv");
        assert_eq!(super::absolute("/srv", "../.."), "/");
    }
}
