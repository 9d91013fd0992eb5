//! `docker build`'s inputs, outside the engine: the Dockerfile parser and
//! its word lexer, `.dockerignore` patterns, the build context (a tar from
//! the request body), and the progress messages the Docker CLI and SDKs
//! read. The steps themselves run in the engine (`engine::build`).

pub mod context;
pub mod dockerfile;
pub mod ignore;
pub mod progress;
pub mod shell;

/// Errors in a build's inputs; all of them are the caller's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The Dockerfile does not parse.
    #[error("{}{message}", line.map(|l| format!("Dockerfile parse error line {l}: ")).unwrap_or_default())]
    Syntax {
        line: Option<usize>,
        message: String,
    },
    /// The build context is unusable (not a tar, a path outside it, a missing file).
    #[error("{0}")]
    Context(String),
}

impl Error {
    pub(crate) fn syntax(message: impl Into<String>) -> Self {
        Error::Syntax {
            line: None,
            message: message.into(),
        }
    }

    pub(crate) fn at_line(self, n: usize) -> Self {
        match self {
            Error::Syntax {
                line: None,
                message,
            } => Error::Syntax {
                line: Some(n),
                message,
            },
            e => e,
        }
    }
}
