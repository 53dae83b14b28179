//! Integration tests of the drill: the audit checks, sign-off of a run directory, and the CLI.

mod audit;
mod cli;
mod signoff;

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
