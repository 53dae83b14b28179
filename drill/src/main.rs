//! The `drill` binary: parses the command line and hands it to the library. The sign-off and
//! audit commands are built; `run` and `mocks` arrive with the drill issue.

use std::process::ExitCode;

use clap::Parser;
use drill::signoff_cli::{self, SignoffCommand};

/// Resilience drill for LLM gateways: audit a config, and sign and verify the readiness memo.
///
/// Exit codes: 0 ok · 1 findings at or above --fail-on · 2 usage or unreadable input ·
/// 6 verification failed.
#[derive(Debug, Parser)]
#[command(name = "drill", version)]
struct Cli {
    #[command(subcommand)]
    command: SignoffCommand,
}

fn main() -> ExitCode {
    signoff_cli::run(Cli::parse().command)
}
