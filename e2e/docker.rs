//! The Docker API façade end to end: the real `docker` CLI (and `bollard`)
//! against a real berthd, with images from a loopback registry and real
//! containers under crun.

mod attach;
mod build;
mod containers;
mod cp;
mod exec;
mod images;
mod logs;
mod network;
mod networks;
mod restart;
mod run;
mod serving;
mod stats;
mod stdio;
mod volumes;
