//! (being written)

use axum::Router;

use super::Shared;

pub fn routes() -> Router<Shared> {
    Router::new()
}
