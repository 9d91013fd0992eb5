//! What current kubelets (1.30–1.35) ask of a runtime beyond critest v1.26:
//! the features `Status` advertises (and that they hold), idempotent
//! StopContainer, PID namespace TARGET (`kubectl debug --target`), the
//! status fields the evented PLEG and in-place resize read, pinned images,
//! UpdateRuntimeConfig, user-namespaced pods, CRI metrics.

mod checkpoint;
mod events;
mod features;
mod image_volume;
mod metrics;
mod statuses;
mod target;
mod userns;

pub use crate::runtime::Env;
