//! The messages of `POST /build`'s JSON stream, as the Docker CLI's
//! `jsonmessage` and docker-py's `images.build` read them: `stream` text
//! (`Step 1/6 : FROM busybox\n`, ` ---> abc123\n`, a RUN's output), `aux`
//! with the built image's ID, and `errorDetail` + `error` ending a failed build.

use serde_json::{json, Value};

/// One message of the build's progress stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Text for the terminal, newline included.
    Stream(String),
    /// The image built (`{"aux":{"ID":"sha256:…"}}`).
    Built(String),
    /// The build failed; `code` is a RUN's exit code (0 otherwise).
    Error { code: i64, message: String },
}

impl Message {
    /// The message as a JSON object.
    pub fn to_json(&self) -> Value {
        match self {
            Message::Stream(s) => json!({ "stream": s }),
            Message::Built(id) => json!({ "aux": { "ID": id } }),
            Message::Error { code, message } if *code != 0 => json!({
                "errorDetail": { "code": code, "message": message },
                "error": message,
            }),
            Message::Error { message, .. } => json!({
                "errorDetail": { "message": message },
                "error": message,
            }),
        }
    }

    /// `Step 2/5 : RUN make`.
    pub fn step(n: usize, total: usize, original: &str) -> Message {
        Message::Stream(format!("Step {n}/{total} : {original}\n"))
    }

    /// ` ---> 3f2a1b4c5d6e` (the short id).
    pub fn image(id: &str) -> Message {
        Message::Stream(format!(" ---> {}\n", short_id(id)))
    }

    /// ` ---> Running in 0123456789ab`.
    pub fn running_in(container: &str) -> Message {
        Message::Stream(format!(" ---> Running in {}\n", short_id(container)))
    }

    /// ` ---> Using cache`.
    pub fn using_cache() -> Message {
        Message::Stream(" ---> Using cache\n".into())
    }

    /// Whether quiet mode (`q=1`) still shows it: only errors and the result.
    pub fn shown_when_quiet(&self) -> bool {
        !matches!(self, Message::Stream(_))
    }
}

/// The first 12 hex digits of an id, without `sha256:`.
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_the_cli_reads_them() {
        assert_eq!(
            Message::step(1, 6, "FROM busybox").to_json(),
            json!({"stream": "Step 1/6 : FROM busybox\n"})
        );
        let id = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            Message::image(&id).to_json(),
            json!({"stream": " ---> abababababab\n"})
        );
        assert_eq!(
            Message::Built(id.clone()).to_json(),
            json!({"aux": {"ID": id}})
        );
        let m = "The command '/bin/sh -c false' returned a non-zero code: 1";
        assert_eq!(
            Message::Error {
                code: 1,
                message: m.into()
            }
            .to_json(),
            json!({"errorDetail": {"code": 1, "message": m}, "error": m})
        );
        assert_eq!(
            Message::Error {
                code: 0,
                message: "x".into()
            }
            .to_json(),
            json!({"errorDetail": {"message": "x"}, "error": "x"})
        );
        assert!(!Message::using_cache().shown_when_quiet());
        assert!(Message::Built(id).shown_when_quiet());
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(
            Message::running_in(&"0123456789abcdef".repeat(4)).to_json(),
            json!({"stream": " ---> Running in 0123456789ab\n"})
        );
    }
}
