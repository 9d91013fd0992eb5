//! `berthd`: the berth daemon.
//!
//! ```text
//! berthd [--config FILE]        run the daemon (embedded defaults without --config)
//! berthd config default         print the full default configuration
//! berthd config check FILE      validate a configuration file
//! berthd --version
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use berth::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: berthd [--config FILE] | berthd config default | berthd config check FILE | berthd --version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["--version"] | ["version"] => {
            println!("berthd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["--help"] | ["-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        ["config", "default"] => {
            print!("{}", Config::default_yaml());
            ExitCode::SUCCESS
        }
        ["config", "check", file] => match Config::load(&PathBuf::from(file)) {
            Ok(_) => {
                println!("{file}: ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("berthd: {e}");
                ExitCode::FAILURE
            }
        },
        // The per-container monitor: no tracing, no async runtime.
        ["monitor", file] => ExitCode::from(berth::monitor::main(&PathBuf::from(file)) as u8),
        // Namespace pinning and the pod infra process: fresh, single-threaded.
        ["ns-pin", rest @ ..] => ExitCode::from(berth::sandbox::ns_pin_main(rest) as u8),
        ["pause"] => ExitCode::from(berth::sandbox::pause_main() as u8),
        [] => run(Config::default()),
        ["--config", file] | ["-c", file] => match Config::load(&PathBuf::from(file)) {
            Ok(c) => run(c),
            Err(e) => {
                eprintln!("berthd: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// glibc makes up to 8 malloc arenas per core, one per thread that meets
/// contention, and keeps what each has freed: after a burst of pods (the
/// 250-pod scale run) berthd held ~20 MiB more than before it. Two arenas
/// bound that; berthd's threads are mostly idle, so contention is rare.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a glibc tunable; it is called before the
    // runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn run(config: Config) -> ExitCode {
    limit_malloc_arenas();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},h2=info,hyper=info,tower=info",
            config.log_level
        ))
    });
    // Colours only for a terminal: logs in files and journals stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    berth::panics::install_hook();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthd: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(berth::daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("berthd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
