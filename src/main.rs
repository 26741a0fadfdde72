//! The `windlass` binary: parse the command line, set up logging, run the verb,
//! turn the outcome into an exit code. Everything else lives in the library.

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use windlass::cli::{self, Cli, EXIT_ERROR};

/// mimalloc rather than the system allocator: rendering builds and frees
/// millions of small values, and glibc's malloc spent about 15 % of the
/// render benchmark's time. `benches/render.rs` uses the same allocator.
/// Built with `no_thp` (Cargo.toml): mimalloc otherwise asks for transparent
/// huge pages, and each 2 MiB page counts whole in the controller's RSS
/// (1,000 Applications: peak 124–131 MiB with them, about 82 MiB without).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The controller is a service: its progress is worth logging by default.
    let service = matches!(cli.command, cli::Command::Controller(_));
    init_tracing(cli.global.verbose, cli.global.log_format, service);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };

    match runtime.block_on(cli::run(cli)) {
        Ok(status) => ExitCode::from(status as u8),
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Logs go to stderr; stdout carries the verb's output. Without `-v` only
/// windlass's own warnings show: errors reach the user once, as the verb's
/// error, not again as a library's log line.
fn init_tracing(verbose: u8, format: cli::LogFormat, service: bool) {
    let default = match verbose {
        0 if service => "windlass=info,warn",
        0 => "windlass=warn",
        1 => "windlass=info,warn",
        2 => "windlass=debug,info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match format {
        cli::LogFormat::Json => builder.json().with_current_span(true).init(),
        cli::LogFormat::Text => builder.with_ansi(io::stderr().is_terminal()).init(),
    }
}

/// `windlass history | head` closing the pipe early is not an error.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
