//! The `switchyard` binary: exit codes, `--help`, `config validate`, serving and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn scenario(name: &str) -> String {
    format!("{}/../scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn mock_env(cmd: &mut Command) -> &mut Command {
    cmd.env("MOCK_OPENAI_BASE", "http://127.0.0.1:9/v1")
        .env("MOCK_OPENAI_KEY", "sk-a")
        .env("MOCK_AZURE_BASE", "http://127.0.0.1:9")
        .env("MOCK_AZURE_KEY", "sk-b")
        .env("MOCK_ANTHROPIC_BASE", "http://127.0.0.1:9")
        .env("MOCK_ANTHROPIC_KEY", "sk-c")
}

#[test]
fn help_documents_every_flag_with_its_default() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--config",
        "--host",
        "[default: 127.0.0.1]",
        "--port",
        "[default: 4000]",
        "--strict",
        "config",
        "Examples:",
    ] {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
}

#[test]
fn validate_accepts_the_shipped_config_and_names_a_missing_variable() {
    let out = mock_env(Command::new(BIN).args(["config", "validate", &scenario("gateway.yaml")]))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (3 deployments in 2 model groups"));

    let out = Command::new(BIN)
        .args(["config", "validate", &scenario("gateway.yaml")])
        .env_remove("MOCK_OPENAI_BASE")
        .env("MOCK_OPENAI_KEY", "sk-very-secret-value")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MOCK_OPENAI_BASE") && err.contains("model_list[0].litellm_params.api_base"),
        "{err}"
    );
    assert!(
        !err.contains("sk-very-secret-value"),
        "values from the environment never appear: {err}"
    );
}

#[test]
fn validate_reports_errors_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/gpt-4o\n      rpm: ten\nrouter_settings:\n  fallbacks: [{\"a\": [\"nowhere\"]}]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "validate"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:5:"), "rpm error located: {err}");
    assert!(
        err.contains("nowhere"),
        "unknown fallback target reported in the same pass: {err}"
    );
}

#[test]
fn serving_without_a_config_is_a_usage_error() {
    let out = Command::new(BIN)
        .env_remove("SWITCHYARD_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

/// Kills the child if the test fails before it exits, so no server outlives the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serves_and_exits_cleanly_on_sigterm() {
    let child = mock_env(Command::new(BIN).args([
        "serve",
        "--config",
        &scenario("gateway.yaml"),
        "--port",
        "0",
        "--grace",
        "2",
    ]))
    .env("RUST_LOG", "info")
    .stderr(Stdio::piped())
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let mut guard = KillOnDrop(child);
    let child = &mut guard.0;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("address=") {
                let addr: String = line[i + 8..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the server logs its address");
    let body = reqwest::get(format!("http://{addr}/health/liveliness"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("alive"));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::SystemTime::now() + Duration::from_secs(10);
    loop {
        if let Some(code) = child.try_wait().unwrap() {
            assert!(code.success(), "exit status {code}");
            break;
        }
        assert!(
            std::time::SystemTime::now() < deadline,
            "did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
