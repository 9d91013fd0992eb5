//! berth: a Kubernetes CRI runtime that also speaks the Docker Engine API.
#![deny(unsafe_code)]
#![recursion_limit = "256"]

pub mod build;
pub mod cgroups;
pub mod config;
pub mod cri;
pub mod daemon;
pub mod docker;
pub mod engine;
pub mod image;
pub mod memory;
pub mod metrics;
pub mod monitor;
pub mod network;
pub mod panics;
pub mod runtime;
pub mod sandbox;
pub mod storage;
pub mod store;
pub mod streaming;
