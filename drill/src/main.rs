//! The `drill` binary. Its commands (`run`, `audit`, `memo`, `sign`, `cosign`, `verify`, `keygen`,
//! `mocks`) are not built yet; until they are, it says so and fails rather than exit 0.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "drill {}: no commands are implemented yet (drill run/audit/memo/sign/verify arrive with the drill issues)",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
