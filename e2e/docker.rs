//! The Docker API façade end to end: the real `docker` CLI (and `bollard`)
//! against a real berthd, with images from a loopback registry and real
//! containers under crun.

mod attach;
mod build;
mod commit;
mod compose;
mod connect;
mod containers;
mod cp;
mod cri_events;
mod dns;
mod exec;
mod exit_codes;
mod health;
mod images;
mod logs;
mod network;
mod networks;
mod options;
mod push;
mod restart;
mod run;
mod sdk;
mod serving;
mod sidecar;
mod start_attach;
mod stats;
mod stdio;
mod tmpfs;
mod volume_mounts;
mod volumes;
