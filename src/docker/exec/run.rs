//! Running one exec on Docker's hijacked connection: the engine runs the
//! process ([`crate::engine::execs`]); this frames its output for the client
//! (the 8-byte multiplexed header unless it has a terminal) through one
//! writer task, and ends the stream only once the exit is recorded.

use tokio::sync::mpsc;

use super::super::hijack::{Conn, MuxWriter, STDERR, STDOUT};
use super::super::Shared;
use crate::engine::execs::StartedExec;
use crate::engine::process::{Outcome, ProcessIo};
use crate::monitor::log::Stream;

/// One started exec, from its process's start to its recorded exit.
pub(super) struct Run {
    pub d: Shared,
    pub started: StartedExec,
}

impl Run {
    /// Runs the process (stdio on `conn`, or nowhere when detached); the
    /// client's stream ends after the exit is recorded: the CLI inspects
    /// the exec for its exit code as soon as the stream ends.
    pub async fn go(self, conn: Option<Conn>) {
        let (input, output) = match conn {
            Some(Conn { input, output }) => (input, Some(output)),
            None => (None, None),
        };
        let spec = self.started.exec.spec.clone();
        let (tx, rx) = mpsc::channel::<(Stream, Vec<u8>)>(64);
        let writer = output.map(|out| {
            tokio::spawn(write_output(
                MuxWriter::new(out, spec.tty),
                rx,
                spec.attach_stdout,
                spec.attach_stderr,
            ))
        });
        // Held until the exit is recorded: the writer ends the client's
        // stream only once every sender is gone.
        let hold = tx.clone();
        let io = ProcessIo {
            stdin: input.filter(|_| spec.attach_stdin),
            output: writer.is_some().then_some(tx),
            resizes: None,
        };
        let outcome = self
            .d
            .engine
            .run_exec(self.started, io, std::future::pending())
            .await;
        if let Outcome::RuntimeFailed { errors, .. } = outcome {
            // The runtime could not run the command: its words are what the
            // client gets, as Docker shows them.
            let _ = hold.send((Stream::Stdout, errors.into_bytes())).await;
        }
        drop(hold);
        if let Some(w) = writer {
            let _ = w.await;
        }
    }
}

/// Writes output to the client until every sender is gone, then ends the
/// stream; a client that left is drained into nothing.
async fn write_output(
    mut out: MuxWriter<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    mut rx: mpsc::Receiver<(Stream, Vec<u8>)>,
    stdout: bool,
    stderr: bool,
) {
    let mut ok = true;
    while let Some((stream, data)) = rx.recv().await {
        let (id, wanted) = match stream {
            Stream::Stdout => (STDOUT, stdout),
            Stream::Stderr => (STDERR, stderr),
        };
        if ok && wanted && out.write(id, &data).await.is_err() {
            ok = false;
        }
    }
    if ok {
        let _ = out.shutdown().await;
    }
}
