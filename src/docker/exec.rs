//! (being written)

use axum::Router;

use super::Shared;

/// Exec instances made by `POST /containers/{id}/exec`.
#[derive(Default)]
pub struct Execs {}

pub fn routes() -> Router<Shared> {
    Router::new()
}
