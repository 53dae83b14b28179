//! The `switchyard` binary: parse arguments, set up logging, hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use switchyard::cli::{Cli, LogFormat};

/// mimalloc: per-request allocations (headers, JSON, buffers) cost about half what glibc's
/// malloc takes on the proxy path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    switchyard::run::run(cli).await
}
