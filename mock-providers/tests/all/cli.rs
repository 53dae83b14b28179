//! The `mock-providers` binary: teaching `--help`, `--check` exit codes,
//! and serving a spec until terminated.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_mock-providers");

fn spec_file(text: &str) -> tempfile_path::TempFile {
    tempfile_path::TempFile::new(text)
}

/// A spec file in the target's temp dir, removed on drop.
mod tempfile_path {
    pub struct TempFile(pub std::path::PathBuf);
    impl TempFile {
        pub fn new(text: &str) -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("mock-spec-{}-{n}.yaml", std::process::id()));
            std::fs::write(&path, text).unwrap();
            Self(path)
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn help_documents_spec_faults_marker_and_control_api() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--spec <FILE>",
        "[drill:rid=ID]",
        "dialect: openai",
        "stream_no_done",
        "close_after_bytes",
        "{probability: 0.3}",
        "PUT    /_mock/faults",
        "api_base = http://127.0.0.1:PORT/v1",
        "EXIT CODES",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}");
    }
}

#[test]
fn check_validates_and_sets_the_exit_code() {
    let good = spec_file("deployments:\n  - {id: a, dialect: openai}\n");
    let out = std::process::Command::new(BIN)
        .args(["--check", "--spec"])
        .arg(&good.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let bad = spec_file("deployments:\n  - {id: a, dialect: openai, colour: red}\n");
    let out = std::process::Command::new(BIN)
        .args(["--check", "--spec"])
        .arg(&bad.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(":2:") && err.contains("unknown field `colour`"),
        "{err}"
    );
    let out = std::process::Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn print_example_is_a_valid_spec() {
    let out = std::process::Command::new(BIN)
        .arg("--print-example")
        .output()
        .unwrap();
    assert!(out.status.success());
    mock_providers::MockSpec::from_yaml_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
}

#[tokio::test]
async fn serves_the_spec_until_killed() {
    let spec = spec_file("seed: 1\ndeployments:\n  - {id: east, dialect: openai}\n  - {id: west, dialect: anthropic}\n");
    let addr_file = spec.0.with_extension("addrs.json");
    let mut child = tokio::process::Command::new(BIN)
        .arg("--spec")
        .arg(&spec.0)
        .arg("--addr-file")
        .arg(&addr_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The first stdout line is the readiness signal.
    let first = tokio::time::timeout(T, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let fields: Vec<&str> = first.split('\t').collect();
    assert_eq!(&fields[..2], ["east", "openai"]);
    let api_base = fields[3].strip_prefix("api_base=").unwrap();
    let addrs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&addr_file).unwrap()).unwrap();
    let _ = std::fs::remove_file(&addr_file);
    assert_eq!(addrs["deployments"]["east"]["api_base"], api_base);
    assert_eq!(addrs["deployments"]["west"]["dialect"], "anthropic");
    let resp = client()
        .post(format!("{api_base}/chat/completions"))
        .json(&openai_body("hello", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let base = fields[2];
    let stats = json_of(
        client()
            .get(format!("{base}/_mock/stats"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(stats["requests"], 1);
    child.start_kill().unwrap();
    let _ = tokio::time::timeout(T, child.wait()).await.unwrap();
}
