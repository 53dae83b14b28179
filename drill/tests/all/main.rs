//! drill's integration tests: the CLI surface (exit codes, located scenario errors), the
//! shipped quarterly suite end to end, sensitivity (the drill catches a gateway that contradicts
//! its documentation), external mode against a separately started gateway, the audit checks,
//! and sign-off of a run directory.

// Helpers outside #[test] fns: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod audit;
mod cli;
mod cli_signoff;
mod external;
mod runs;
mod sensitivity;
mod signoff;
mod support;

use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The memo fixture of switchyard-reports: realistic memo data for a run directory.
pub fn memo_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/tests/fixtures/memo.json")
}

/// A run directory as `drill run` will leave it: journal, memo data, junit; the memo is
/// rendered with `drill memo` by the tests that need it.
pub fn run_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(memo_fixture(), dir.path().join("memo.json")).expect("copy memo.json");
    std::fs::write(
        dir.path().join("journal.json"),
        br#"{"version":1,"scenario":"primary-outage-and-rate-limit","events":[]}"#,
    )
    .expect("write journal");
    std::fs::write(
        dir.path().join("junit.xml"),
        br#"<testsuites><testsuite name="drill" tests="7" failures="1"/></testsuites>"#,
    )
    .expect("write junit");
    dir
}
