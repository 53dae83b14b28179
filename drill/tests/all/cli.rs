//! The binary's surface: `--help` documents the exit codes; scenario errors exit 4 naming
//! file, line, column and key path; an unreachable target exits 5.

use std::process::Command;

use super::support::{dir_with, repo, PROVIDERS};

fn drill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_drill"))
}

#[test]
fn help_documents_every_exit_code() {
    let out = drill().args(["run", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "0 passed",
        "1 failed",
        "2 inconclusive",
        "3 aborted",
        "4 invalid scenario",
        "5 environment error",
        "6 verification failed",
        "--target",
        "--seed",
        "--fail-fast",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn unknown_key_exits_4_with_file_line_and_key_path() {
    let text = "apiVersion: drill/v1
kind: Drill
metadata: {name: typo}
gateway: {config: gw.yaml}
providers:
  - {id: a, dialect: openai}
traffic:
  profiles: [{id: p, request: {model: gpt-4o}}]
phases:
  - id: one
    durration: 2s
";
    let d = dir_with(&[("s.yaml", text)]);
    let out = drill()
        .arg("run")
        .arg(d.path().join("s.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s.yaml:11:5: phases[0].durration: unknown field `durration`, expected one of `id`, `duration`"),
        "{err}"
    );
}

#[test]
fn type_error_names_the_expected_type() {
    let text = "apiVersion: drill/v1
kind: Drill
metadata: {name: t}
providers:
  - {id: a, dialect: openai}
traffic:
  profiles: [{id: p, weight: heavy, request: {model: gpt-4o}}]
phases: [{id: one, duration: 2s}]
";
    let d = dir_with(&[("s.yaml", text)]);
    let out = drill()
        .arg("run")
        .arg(d.path().join("s.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s.yaml:7:"), "{err}");
    assert!(err.contains("traffic.profiles[0].weight"), "{err}");
}

#[test]
fn every_semantic_problem_is_reported_with_its_line() {
    let cfg = std::fs::read_to_string(repo().join("scenarios/quarterly/gateway.yaml")).unwrap();
    let text = format!(
        "apiVersion: drill/v1
kind: Drill
metadata: {{name: refs}}
gateway: {{config: gw.yaml}}
{PROVIDERS}traffic:
  profiles: [{{id: p, key: nobody, request: {{model: gpt-4o}}}}]
phases:
  - id: one
    duration: 2s
    faults: [{{provider: nowhere, effect: {{type: reset}}}}]
    expect:
      latency_delta: {{vs_phase: later, max_increase: 1s}}
      fallback: {{from: gpt-4o-east, min_share: 1.5}}
"
    );
    let d = dir_with(&[("s.yaml", &text), ("gw.yaml", &cfg)]);
    let out = drill()
        .arg("run")
        .arg(d.path().join("s.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s.yaml:11:")
            && err.contains("traffic.profiles[0].key: unknown key \"nobody\""),
        "{err}"
    );
    assert!(
        err.contains("phases[0].faults[0].provider: unknown provider \"nowhere\""),
        "{err}"
    );
    assert!(
        err.contains("phases[0].expect.latency_delta.vs_phase"),
        "{err}"
    );
    assert!(
        err.contains("phases[0].expect.fallback.min_share: 1.5 is outside [0, 1]"),
        "{err}"
    );
}

#[test]
fn shipped_scenarios_all_validate() {
    // Loading the suite validates every scenario it lists (and their gateway config).
    let opts = drill::run::RunOptions::new(std::sync::Arc::new(|_: &str| None));
    let prepared = drill::run::prepare_all(&repo().join("scenarios/quarterly.yaml"), &opts)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(prepared.len(), 10);
}

#[test]
fn unreachable_target_exits_5() {
    let text = format!(
        "apiVersion: drill/v1
kind: Drill
metadata: {{name: ext}}
{PROVIDERS}traffic:
  profiles: [{{id: p, request: {{model: gpt-4o}}}}]
phases: [{{id: one, duration: 1s}}]
"
    );
    let d = dir_with(&[("s.yaml", &text)]);
    // Port 1 on loopback refuses connections.
    let out = drill()
        .arg("run")
        .arg(d.path().join("s.yaml"))
        .args(["--target", "http://127.0.0.1:1", "--out"])
        .arg(d.path().join("out"))
        .args([
            "--mock",
            "openai-east=http://127.0.0.1:1",
            "--mock",
            "anthropic-west=http://127.0.0.1:1",
            "--mock",
            "azure-mini=http://127.0.0.1:1",
            "--mock",
            "openai-long=http://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreachable"), "{err}");
}

#[tokio::test]
async fn drill_mocks_prints_addresses_and_serves_the_control_api() {
    use std::io::BufRead as _;
    let text = format!(
        "apiVersion: drill/v1
kind: Drill
metadata: {{name: m}}
{PROVIDERS}traffic:
  profiles: [{{id: p, request: {{model: gpt-4o}}}}]
phases: [{{id: one, duration: 1s}}]
"
    );
    let d = dir_with(&[("s.yaml", &text)]);
    let mut child = drill()
        .arg("mocks")
        .arg(d.path().join("s.yaml"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut bases = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.starts_with("# serving") {
            break;
        }
        if !line.starts_with('#') {
            bases.push(line.split_whitespace().nth(3).unwrap().to_owned());
        }
    }
    assert_eq!(bases.len(), 4, "{bases:?}");
    let client = reqwest::Client::new();
    for b in &bases {
        let r = client
            .get(format!("{b}/_mock/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn ctrl_c_aborts_with_exit_3_and_still_writes_outputs() {
    use std::io::BufRead as _;
    let cfg = std::fs::read_to_string(repo().join("scenarios/quarterly/gateway.yaml")).unwrap();
    let text = format!(
        "apiVersion: drill/v1
kind: Drill
metadata: {{name: interrupted}}
gateway: {{config: gw.yaml}}
{PROVIDERS}traffic:
  profiles: [{{id: p, request: {{model: gpt-4o}}}}]
phases: [{{id: long, duration: 60s}}]
"
    );
    let d = dir_with(&[("s.yaml", &text), ("gw.yaml", &cfg)]);
    let out = d.path().join("out");
    let mut child = drill()
        .arg("run")
        .arg(d.path().join("s.yaml"))
        .arg("--out")
        .arg(&out)
        .env("CI", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    // Readiness: the phase has started.
    for line in lines.by_ref() {
        if line.unwrap().contains("phase long") {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(3));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("journal.json")).unwrap()).unwrap();
    assert_eq!(j["status"], "aborted");
    assert_eq!(j["phases"][0]["verdict"], "aborted");
    assert!(j["abort_reason"].as_str().unwrap().contains("Ctrl-C"));
}
