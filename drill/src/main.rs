//! The `drill` binary: parses the command line and hands it to `drill::run`.

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    drill::run(drill::cli::Cli::parse())
}
