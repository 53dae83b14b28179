//! drill's integration tests: the CLI surface (exit codes, located scenario errors), the
//! shipped quarterly suite end to end, sensitivity (the drill catches a gateway that contradicts
//! its documentation), external mode against a separately started gateway, the audit checks,
//! and sign-off of a run directory.

// Helpers outside #[test] fns: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod audit;
mod cli;
mod cli_signoff;
mod export;
mod external;
mod runs;
mod sensitivity;
mod signoff;
mod support;

use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A run directory as `drill run` left it (journal.json and junit.xml of a real run of the
/// shipped provider-outage scenario); tests render the memo with `drill memo` when they need it.
/// The fixture is regenerated with
/// `drill run scenarios/quarterly/provider-outage.yaml --out DIR` when the journal schema changes.
pub fn run_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for f in ["journal.json", "junit.xml"] {
        std::fs::copy(fixtures().join("run").join(f), dir.path().join(f))
            .expect("copy run fixture");
    }
    dir
}
