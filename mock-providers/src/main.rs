//! `mock-providers --spec FILE`: a thin main over `mock_providers::cli::run`.

use std::process::ExitCode;

use clap::Parser;
use mock_providers::cli::{run, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    run(Cli::parse()).await
}
