//! Helpers: repository paths, scenario files in temp dirs, library runs, reading journals.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use drill::run::{run_file, RunOptions};
use serde_json::Value;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The quarterly suite's gateway config text.
pub fn quarterly_config() -> String {
    std::fs::read_to_string(repo().join("scenarios/quarterly/gateway.yaml")).unwrap()
}

/// The quarterly suite's providers block (ephemeral ports).
pub const PROVIDERS: &str = "providers:
  - {id: openai-east, dialect: openai, deployment: gpt-4o-east, baseline: {ttft: 10ms, output_tokens: 8}}
  - {id: anthropic-west, dialect: anthropic, deployment: claude-west, baseline: {ttft: 10ms, output_tokens: 8}}
  - {id: azure-mini, dialect: azure, deployment: mini-azure, baseline: {ttft: 10ms, output_tokens: 8}}
  - {id: openai-long, dialect: openai, deployment: long-east, baseline: {ttft: 10ms, output_tokens: 8}}
";

/// Runs `scenario` (a file) with library defaults; returns the exit code.
pub async fn run(scenario: &Path, out: &Path) -> u8 {
    run_with(scenario, out, RunOptions::new(Arc::new(|_: &str| None))).await
}

pub async fn run_with(scenario: &Path, out: &Path, opts: RunOptions) -> u8 {
    tokio::time::timeout(
        std::time::Duration::from_secs(240),
        run_file(scenario, Some(out), &opts),
    )
    .await
    .expect("the run ended within its bound")
}

pub fn journal(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("journal.json")).unwrap()).unwrap()
}

/// Every check message of a journal, one per line.
pub fn messages(j: &Value) -> String {
    let mut out = String::new();
    for p in j["phases"].as_array().unwrap() {
        if let Some(r) = p["reason"].as_str() {
            out.push_str(r);
            out.push('\n');
        }
        for c in p["checks"].as_array().unwrap() {
            out.push_str(&format!(
                "{} {} {}\n",
                c["verdict"].as_str().unwrap(),
                c["check"].as_str().unwrap(),
                c["message"].as_str().unwrap()
            ));
        }
    }
    out
}

/// Writes `files` (name, text) into a fresh temp dir.
pub fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}
