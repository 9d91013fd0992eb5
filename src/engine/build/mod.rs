//! Docker's classic builder (`POST /build`): the stages of a parsed
//! Dockerfile run step by step; each step's image is recorded in the build
//! cache under a key made of its parent image, its instruction (with the
//! build arguments it sees) and, for COPY/ADD, the digest of what it copies,
//! so an unchanged rebuild reuses every step. RUN runs in a container
//! (`run.rs`) whose writable layer becomes the step's layer; COPY, ADD and
//! WORKDIR write their layer directly (`copy.rs`); the other instructions
//! change only the config (`config.rs`, history `empty_layer`).
//!
//! ```text
//!  context tar ─▶ scratch dir ─▶ Dockerfile + .dockerignore ─▶ stages
//!  for each step:  key = sha256(parent id, instruction, content)
//!                  cached? ─yes─▶ " ---> Using cache", parent = cached image
//!                          └no──▶ run / copy / config change ─▶ register_step
//!  last step of the target stage ─▶ promoted to an image with every tag
//! ```

mod commit;
pub mod config;
mod copy;
mod run;
mod steps;
mod view;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use tokio::sync::mpsc;

use crate::build::dockerfile::{self, Dockerfile};
use crate::build::ignore::Ignore;
use crate::build::progress::Message;
use crate::build::Error as InputError;
use crate::engine::{Engine, Error};
use crate::image::service::Scratch;
use crate::image::{Digest, ImageRecord, Reference};
use config::ImageConfig;

/// Build arguments Docker knows without an ARG (and keeps out of history).
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The parameters of `POST /build` the builder acts on.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's path in the context (`Dockerfile` when empty).
    pub dockerfile: String,
    /// Names to give the image (`t`, several).
    pub tags: Vec<String>,
    /// `buildargs`: a null value means "take it from the environment",
    /// which the daemon does not have, so it is unset.
    pub build_args: HashMap<String, Option<String>>,
    pub labels: HashMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// Remove a RUN's container after a successful step (default true).
    pub rm: bool,
    /// Remove it also after a failed step.
    pub force_rm: bool,
    /// Pull base images even when present.
    pub pull: bool,
    pub network_mode: String,
}

/// Where a build's messages go; in quiet mode only errors and the result.
#[derive(Clone)]
pub struct Progress {
    tx: mpsc::Sender<Message>,
    quiet: bool,
}

impl Progress {
    pub fn new(tx: mpsc::Sender<Message>, quiet: bool) -> Self {
        Progress { tx, quiet }
    }

    /// Sends a message; a client that went away just stops hearing.
    pub async fn send(&self, m: Message) {
        if self.quiet && !m.shown_when_quiet() {
            return;
        }
        let _ = self.tx.send(m).await;
    }
}

/// Why a build stopped: the message and a RUN's exit code (0 otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: i64,
    pub message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            code: 0,
            message: e.to_string(),
        }
    }
}

impl From<InputError> for Failure {
    fn from(e: InputError) -> Self {
        Failure {
            code: 0,
            message: e.to_string(),
        }
    }
}

impl From<crate::image::Error> for Failure {
    fn from(e: crate::image::Error) -> Self {
        Error::from(e).into()
    }
}

/// The state of a stage between steps.
#[derive(Clone)]
struct StageState {
    /// None: `FROM scratch` with nothing recorded yet.
    image: Option<ImageRecord>,
    config: ImageConfig,
    /// ARG values declared in this stage, in order.
    args: Vec<(String, String)>,
    /// CMD set by this Dockerfile (ENTRYPOINT keeps it then).
    cmd_set: bool,
}

impl StageState {
    fn scratch() -> Self {
        StageState {
            image: None,
            config: ImageConfig::scratch(),
            args: vec![],
            cmd_set: false,
        }
    }

    fn id(&self) -> String {
        self.image
            .as_ref()
            .map(|i| i.id.to_string())
            .unwrap_or_else(|| "scratch".into())
    }

    /// What words see: ARG values, overridden by ENV.
    fn expand_env(&self) -> Vec<(String, String)> {
        let mut v = self.args.clone();
        v.extend(self.config.env());
        v
    }
}

/// What one build is doing (shared by its steps).
struct Build<'a> {
    opts: &'a BuildOptions,
    progress: &'a Progress,
    file: Dockerfile,
    context: &'a Path,
    ignore: Ignore,
    /// Meta ARG values (before the first FROM).
    meta: Vec<(String, String)>,
    /// Build arguments some ARG consumed.
    consumed: HashSet<String>,
    /// Results of the stages done so far.
    stages: Vec<StageState>,
    /// Layer files of this build.
    scratch: Scratch,
}

impl Engine {
    /// Unpacks a build context (the request body) into a scratch directory.
    /// A body that is not an archive is the Dockerfile itself
    /// (`docker build - < Dockerfile`).
    pub async fn build_context<R: Read + Send + 'static>(
        &self,
        input: R,
    ) -> Result<Scratch, Error> {
        let scratch = self.images.scratch()?;
        let dir = scratch.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut input = input;
            let mut head = vec![0u8; 512];
            let mut n = 0;
            while n < head.len() {
                match input.read(&mut head[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) => {
                        return Err(InputError::Context(format!(
                            "failed to read the build context: {e}"
                        )))
                    }
                }
            }
            head.truncate(n);
            let whole = std::io::Cursor::new(head.clone()).chain(input);
            if n == 0 || crate::build::context::looks_like_archive(&head) {
                crate::build::context::extract(whole, &dir)
            } else {
                let mut text = Vec::new();
                let mut whole = whole;
                whole.read_to_end(&mut text).map_err(|e| {
                    InputError::Context(format!("failed to read the Dockerfile: {e}"))
                })?;
                std::fs::write(dir.join("Dockerfile"), text).map_err(|e| {
                    InputError::Context(format!("failed to store the Dockerfile: {e}"))
                })
            }
        })
        .await
        .map_err(|e| Error::internal(format!("build context reader failed: {e}")))?
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(scratch)
    }

    /// Builds the image the context's Dockerfile describes, sending progress;
    /// returns the image, recorded with every tag.
    pub async fn build(
        &self,
        context: &Path,
        opts: &BuildOptions,
        progress: &Progress,
    ) -> Result<ImageRecord, Failure> {
        let mut tags = Vec::new();
        for t in &opts.tags {
            let r = Reference::parse(t).map_err(|e| Failure {
                code: 0,
                message: format!("invalid tag {t:?}: {e}"),
            })?;
            if r.digest.is_some() {
                return Err(Failure {
                    code: 0,
                    message: format!("invalid tag {t:?}: a tag cannot hold a digest"),
                });
            }
            let full = r.tagged().unwrap_or_else(|| t.clone());
            tags.push((full, r.familiar()));
        }
        let name = if opts.dockerfile.is_empty() {
            "Dockerfile"
        } else {
            opts.dockerfile.as_str()
        };
        let path = crate::build::context::resolve_in(context, name, true)?;
        let text = std::fs::read_to_string(&path).map_err(|_| Failure {
            code: 0,
            message: format!("Cannot locate specified Dockerfile: {name}"),
        })?;
        let file = dockerfile::parse(&text)?;
        let ignore = std::fs::read_to_string(context.join(".dockerignore"))
            .map(|t| Ignore::parse(&t))
            .unwrap_or_default();
        let last = match &opts.target {
            Some(t) if !t.is_empty() => file.stage_index(t).ok_or_else(|| Failure {
                code: 0,
                message: format!("failed to reach build target {t} in Dockerfile"),
            })?,
            _ => file.stages.len() - 1,
        };
        let mut b = Build {
            opts,
            progress,
            file,
            context,
            ignore,
            meta: vec![],
            consumed: HashSet::new(),
            stages: vec![],
            scratch: self.images.scratch()?,
        };
        b.meta_args()?;
        let total: usize = b.file.stages[..=last]
            .iter()
            .map(|s| 1 + s.instructions.len())
            .sum();
        let mut n = 0;
        for si in 0..=last {
            let stage = b.file.stages[si].clone();
            n += 1;
            progress
                .send(Message::step(n, total, &stage.original))
                .await;
            let mut st = self.base_step(&mut b, &stage.base).await?;
            for inst in &stage.instructions {
                n += 1;
                progress.send(Message::step(n, total, &inst.original)).await;
                self.dispatch(&mut b, &mut st, inst).await?;
                progress.send(Message::image(&st.id())).await;
            }
            b.stages.push(st);
        }
        let mut st = b.stages.pop().expect("one stage at least");
        if !opts.labels.is_empty() {
            let mut labels: Vec<(String, String)> = opts
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            let text = format!(
                "LABEL {}",
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let values = labels
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            self.config_step(&mut b, &mut st, &text, |c| c.merge_map("Labels", values))
                .await?;
        }
        let unused: Vec<&String> = {
            let mut u: Vec<&String> = opts
                .build_args
                .keys()
                .filter(|k| !b.consumed.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
                .collect();
            u.sort();
            u
        };
        if !unused.is_empty() {
            let list: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            progress
                .send(Message::Stream(format!(
                    "[Warning] One or more build-args [{}] were not consumed\n",
                    list.join(" ")
                )))
                .await;
        }
        let id = match &st.image {
            Some(i) => i.id.clone(),
            None => {
                // `FROM scratch` alone: an image with no layers.
                self.config_step(&mut b, &mut st, "FROM scratch", |_| {})
                    .await?;
                st.image.as_ref().expect("recorded").id.clone()
            }
        };
        let rec = self
            .images
            .promote(&id, tags.iter().map(|(f, _)| f.clone()).collect())
            .await?;
        progress.send(Message::Built(rec.id.to_string())).await;
        if progress.quiet {
            // What `-q` prints: the image id alone.
            let _ = progress
                .tx
                .send(Message::Stream(format!("{}\n", rec.id)))
                .await;
        }
        progress
            .send(Message::Stream(format!(
                "Successfully built {}\n",
                crate::build::progress::short_id(rec.id.as_str())
            )))
            .await;
        for (_, familiar) in &tags {
            self.events.emit(
                crate::engine::events::Event::new("image", "tag", rec.id.as_str())
                    .with("name", familiar.as_str()),
            );
            progress
                .send(Message::Stream(format!("Successfully tagged {familiar}\n")))
                .await;
        }
        Ok(rec)
    }

    /// `POST /build/prune`: the ids forgotten and the bytes reclaimed.
    pub async fn prune_build_cache(&self) -> Result<(Vec<String>, u64), Error> {
        Ok(self.images.prune_build_cache().await?)
    }

    /// The build cache key of a step over `st`'s image.
    fn cache_key(st: &StageState, text: &str) -> String {
        Digest::of(format!("{}\n{text}", st.id()).as_bytes())
            .hex()
            .to_string()
    }

    /// Takes the step from the cache when it is there (and allowed).
    async fn cached(&self, b: &Build<'_>, st: &mut StageState, key: &str) -> Result<bool, Failure> {
        if b.opts.no_cache {
            return Ok(false);
        }
        let Some(rec) = self.images.cached_step(key)? else {
            return Ok(false);
        };
        let bytes = self.images.read_blob(&rec.id).await?;
        st.config = ImageConfig::parse(&bytes).map_err(|m| Failure {
            code: 0,
            message: m,
        })?;
        st.image = Some(rec);
        b.progress.send(Message::using_cache()).await;
        Ok(true)
    }

    /// A step that changes only the config.
    async fn config_step(
        &self,
        b: &mut Build<'_>,
        st: &mut StageState,
        text: &str,
        change: impl FnOnce(&mut ImageConfig),
    ) -> Result<(), Failure> {
        let key = Self::cache_key(st, text);
        if self.cached(b, st, &key).await? {
            return Ok(());
        }
        change(&mut st.config);
        self.record_step(st, &format!("/bin/sh -c #(nop)  {text}"), None, key)
            .await
    }

    /// Records a step's image: the config with its history entry (and the
    /// layer's diff ID) over the parent.
    async fn record_step(
        &self,
        st: &mut StageState,
        created_by: &str,
        layer: Option<crate::image::service::StepLayer>,
        key: String,
    ) -> Result<(), Failure> {
        let diff = layer.as_ref().map(|l| l.diff_id.to_string());
        st.config.record(
            created_by,
            diff.as_deref(),
            crate::engine::records::now_nanos(),
        );
        let rec = self
            .images
            .register_step(st.config.to_bytes(), st.image.as_ref(), layer, key)
            .await?;
        st.image = Some(rec);
        Ok(())
    }
}
