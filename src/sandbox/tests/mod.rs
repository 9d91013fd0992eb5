//! Tests of the sandbox module against the real kernel (root) and, where
//! installed, crun. Each undoes its mounts and processes through guards.

mod files;
mod infra;
mod pin;
