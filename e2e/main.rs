//! End-to-end tests: the real `berthd` binary, driven over its real unix
//! socket by a real tonic CRI client, pulling images that the tests build
//! from the host's busybox and serve from a real registry on 127.0.0.1.
//! Must run as root.

mod chaos;
mod daemon_basics;
mod docker;
mod fresh_node;
mod fuzz;
mod harness;
mod images;
mod kubelet;
mod network;
mod runtime;
mod static_build;
mod streaming;
mod support;
mod upgrade;
