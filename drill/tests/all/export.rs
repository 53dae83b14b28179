//! `drill run --export`: a Switchyard export documents the key-level chains (Key > Team >
//! Global over the config's router settings); embedded mode imports it and sends as its keys.
//! Traffic that follows the export passes, an export the gateway does not follow fails naming
//! the deviation, an unreadable export exits 4 with file:line, and `--config` with `--export`
//! is a usage error (4).

use std::process::Command;

use super::support::{dir_with, journal, messages, quarterly_config, run_with, PROVIDERS};
use drill::run::RunOptions;

/// An export beside the quarterly config: team payments documents claude-sonnet as gpt-4o's
/// fallback (like the config's global chain), key payments-batch overrides it with
/// `BATCH_FALLBACK`.
fn export(batch_fallback: &str) -> String {
    format!(
        "schema_version: 1
kind: switchyard/state
source: {{version: 0.1.0}}
secrets: redacted
spec:
  teams:
  - team_id: t-payments
    team_alias: payments
    router_settings:
      fallbacks: [{{gpt-4o: [claude-sonnet]}}]
  keys:
  - public_id: batchKey0001
    key_alias: payments-batch
    token_hash: '0000000000000000000000000000000000000000000000000000000000000001'
    team_id: t-payments
    router_settings:
      fallbacks: [{{gpt-4o: [{batch_fallback}]}}]
config_file:
  models:
  - {{model_id: gpt-4o-east, model_name: gpt-4o}}
  - {{model_id: claude-west, model_name: claude-sonnet}}
  - {{model_id: mini-azure, model_name: gpt-4o-mini}}
  - {{model_id: long-east, model_name: gpt-4o-long}}
"
    )
}

fn scenario(gateway: &str) -> String {
    format!(
        "apiVersion: drill/v1
kind: Drill
metadata: {{name: exported}}
gateway: {gateway}
{PROVIDERS}traffic:
  keys:
    batch: {{key_alias: payments-batch}}
  profiles: [{{id: batch, key: batch, request: {{model: gpt-4o}}}}]
  load: {{rate: 30/s}}
phases:
  - id: outage
    duration: 3s
    faults: [{{provider: openai-east, effect: {{type: http_error, status: 503}}}}]
    expect: {{fallback: {{from: gpt-4o-east, to: documented, min_share: 0.95}}}}
"
    )
}

fn opts_with_export(path: std::path::PathBuf) -> RunOptions {
    let mut o = RunOptions::new(std::sync::Arc::new(|_: &str| None));
    o.export = Some(path);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_follows_the_exported_key_chain_not_the_global_one() {
    let cfg = quarterly_config();
    assert!(cfg.contains(r#"fallbacks: [{"gpt-4o": ["claude-sonnet", "gpt-4o-mini"]}]"#));
    let ex = export("gpt-4o-mini");
    let d = dir_with(&[
        ("s.yaml", &scenario("{config: gateway.yaml}")),
        ("gateway.yaml", &cfg),
        ("export.yaml", &ex),
    ]);
    let out = d.path().join("out");
    let code = run_with(
        &d.path().join("s.yaml"),
        &out,
        opts_with_export(d.path().join("export.yaml")),
    )
    .await;
    let j = journal(&out);
    assert_eq!(code, 0, "{}", messages(&j));
    // The gateway served the batch key's exported fallback, not the global claude-sonnet.
    let served = &j["phases"][0]["served_by"];
    assert!(served["mini-azure"].as_u64().unwrap() > 20, "{served}");
    assert!(served.get("claude-west").is_none(), "{served}");
    let chain = j["documented_chains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["subject"] == "key:batch" && c["kind"] == "general")
        .unwrap();
    assert_eq!(chain["targets"], serde_json::json!(["gpt-4o-mini"]));
    assert_eq!(chain["source"], "key");
    // The export's digest at start and end, as for the config.
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(ex.as_bytes()));
    assert_eq!(j["config"]["kind"], "export");
    assert_eq!(j["config"]["export"]["sha256_start"], sha.as_str());
    assert_eq!(j["config"]["export"]["sha256_end"], sha.as_str());
    assert!(j["config"]["sha256_start"].is_string());
    let memo = std::fs::read_to_string(out.join("memo.md")).unwrap();
    assert!(
        memo.contains(&format!("| Export at start | {sha} |")),
        "{memo}"
    );
    // The secret drill minted for the exported key appears nowhere in the outputs.
    for f in ["journal.json", "junit.xml", "summary.txt"] {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(!text.contains("sk-"), "{f} holds a key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_documenting_a_chain_the_gateway_does_not_follow_fails() {
    // The gateway imports the batch key with gpt-4o-mini; the documentation says the key's
    // chain is claude-sonnet.
    let d = dir_with(&[
        (
            "s.yaml",
            &scenario(
                "{config: gateway.yaml, export: running.yaml, documented_export: documented.yaml}",
            ),
        ),
        ("gateway.yaml", &quarterly_config()),
        ("running.yaml", &export("gpt-4o-mini")),
        ("documented.yaml", &export("claude-sonnet")),
    ]);
    let out = d.path().join("out");
    let code = run_with(
        &d.path().join("s.yaml"),
        &out,
        RunOptions::new(std::sync::Arc::new(|_: &str| None)),
    )
    .await;
    let j = journal(&out);
    let m = messages(&j);
    assert_eq!(code, 1, "{m}");
    assert!(
        m.contains("failed fallback")
            && m.contains("served by mini-azure")
            && m.contains("documentation says key batch: claude-west")
            && m.contains("set by key"),
        "{m}"
    );
    assert!(j["config"]["export"]["documented_path"]
        .as_str()
        .unwrap()
        .ends_with("documented.yaml"));
}

fn drill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_drill"))
}

fn run_bad_export(text: &str) -> (Option<i32>, String) {
    let d = dir_with(&[
        ("s.yaml", &scenario("{config: gateway.yaml}")),
        ("gateway.yaml", &quarterly_config()),
        ("export.yaml", text),
    ]);
    let out = drill()
        .arg("run")
        .arg(d.path().join("s.yaml"))
        .arg("--export")
        .arg(d.path().join("export.yaml"))
        .arg("--out")
        .arg(d.path().join("out"))
        .output()
        .unwrap();
    assert!(!d.path().join("out").exists(), "nothing runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_export_exits_4_with_file_and_line() {
    let good = export("gpt-4o-mini");
    let (code, err) = run_bad_export(&good.replace("kind: switchyard/state", "kind: litellm"));
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("export.yaml:2:") && err.contains("kind") && err.contains("litellm"),
        "{err}"
    );
    let (code, err) = run_bad_export(&good.replace("schema_version: 1", "schema_version: 2"));
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("export.yaml:1:")
            && err.contains("newer than this drill reads (1)")
            && !err.contains("to import it"),
        "{err}"
    );
    let (code, err) = run_bad_export(&good.replace("    team_alias: payments", "    team_alas: x"));
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("export.yaml:8:") && err.contains("team_alas"),
        "{err}"
    );
    // A scenario key the export does not have.
    let (code, err) =
        run_bad_export(&good.replace("key_alias: payments-batch", "key_alias: other"));
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("s.yaml:") && err.contains("no key with key_alias \"payments-batch\""),
        "{err}"
    );
}

#[test]
fn config_and_export_together_are_a_usage_error() {
    let out = drill()
        .args(["run", "s.yaml", "--config", "c.yaml", "--export", "e.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--export") && err.contains("--config"),
        "{err}"
    );
    let help = drill().args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("--export <FILE>") && text.contains("usage"),
        "{text}"
    );
}
