//! The `drill` binary: parses the command line and hands it to `drill::run`.

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    match drill::cli::Cli::try_parse() {
        Ok(cli) => drill::run(cli),
        Err(e) => {
            let args: Vec<String> = std::env::args().skip(1).collect();
            let code = drill::cli::parse_error_code(&e, &args);
            let _ = e.print();
            ExitCode::from(code)
        }
    }
}
