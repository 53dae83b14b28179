//! Embedded runs end to end: the shipped quarterly suite passes against Switchyard; a fault
//! that never fires makes the phase invalid (exit 6); too few samples are inconclusive (exit 2);
//! outputs are written and complete.

use super::support::{dir_with, journal, messages, quarterly_config, repo, run, PROVIDERS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarterly_suite_passes_against_switchyard() {
    let out = tempfile::tempdir().unwrap();
    let code = run(&repo().join("scenarios/quarterly.yaml"), out.path()).await;
    let summary = std::fs::read_to_string(out.path().join("summary.txt")).unwrap_or_default();
    assert_eq!(code, 0, "{summary}");
    let junit = std::fs::read_to_string(out.path().join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testsuite ").count(), 10);
    assert!(!junit.contains("<failure"), "{junit}");
    for name in [
        "rate-limited-primary",
        "provider-outage",
        "slow-provider",
        "connection-resets",
        "broken-streams",
        "context-window",
        "content-policy",
        "key-level-fallback",
        "cascading-failure",
        "recovery-after-cooldown",
    ] {
        let dir = out.path().join(name);
        let j = journal(&dir);
        assert_eq!(j["status"], "passed", "{name}: {}", messages(&j));
        // The memo written at the end of the run is what the journal renders to, byte for
        // byte: `drill verify` depends on it.
        let memo = drill::signoff::MemoSource::memo(&drill::memo::JournalMemo, &dir).unwrap();
        let again = switchyard_reports::render(&memo).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("memo.html")).unwrap(),
            again.html,
            "{name}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("memo.md")).unwrap(),
            again.markdown,
            "{name}"
        );
        assert!(again.markdown.contains("Verdict: **READY**"), "{name}");
        // No vacuous pass: every phase with faults saw them injected.
        for p in j["phases"].as_array().unwrap() {
            for f in p["faults"].as_array().unwrap() {
                assert!(f["injected"].as_u64().unwrap() > 0, "{name}: {f}");
            }
        }
    }
    // The key-level scenario verified both keys' chains from the mocks.
    let j = journal(&out.path().join("key-level-fallback"));
    let outage = &j["phases"][1]["served_by"];
    assert!(outage["claude-west"].as_u64().unwrap() > 10, "{outage}");
    assert!(outage["mini-azure"].as_u64().unwrap() > 10, "{outage}");
}

fn scenario(name: &str, phases: &str) -> String {
    format!(
        "apiVersion: drill/v1
kind: Drill
metadata: {{name: {name}}}
seed: 5
gateway: {{config: gw.yaml}}
{PROVIDERS}traffic:
  profiles: [{{id: chat, request: {{model: gpt-4o}}}}]
  load: {{rate: 30/s}}
phases:
{phases}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_never_injected_makes_the_phase_invalid() {
    let s = scenario(
        "never",
        "  - id: outage
    duration: 2s
    faults: [{provider: openai-east, effect: {type: http_error, status: 503}, selection: {first: 0}}]
    expect: {success_ratio: 0.9}
",
    );
    let cfg = quarterly_config();
    let d = dir_with(&[("s.yaml", &s), ("gw.yaml", &cfg)]);
    let out = d.path().join("out");
    assert_eq!(run(&d.path().join("s.yaml"), &out).await, 6);
    let j = journal(&out);
    assert_eq!(j["phases"][0]["verdict"], "invalid");
    assert!(
        messages(&j).contains("fault never injected"),
        "{}",
        messages(&j)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_samples_is_inconclusive_and_the_journal_is_complete() {
    let s = scenario(
        "few",
        "  - id: baseline
    duration: 2s
    expect: {success_ratio: 0.9, min_samples: 100000}
",
    );
    let cfg = quarterly_config();
    let d = dir_with(&[("s.yaml", &s), ("gw.yaml", &cfg)]);
    let out = d.path().join("out");
    assert_eq!(run(&d.path().join("s.yaml"), &out).await, 2);
    let j = journal(&out);
    assert_eq!(j["schema_version"], 1);
    assert_eq!(j["status"], "inconclusive");
    assert_eq!(j["seed"], 5);
    assert_eq!(j["scenario"]["text"], s.as_str());
    assert_eq!(j["scenario"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(j["config"]["sha256_start"], j["config"]["sha256_end"]);
    assert_eq!(j["inventory"].as_array().unwrap().len(), 4);
    assert!(j["documented_chains"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["group"] == "gpt-4o"
            && c["targets"] == serde_json::json!(["claude-sonnet", "gpt-4o-mini"])
            && c["source"] == "global"));
    assert_eq!(
        j["effective_settings"]["global"]["cooldown_time"]["source"],
        "global"
    );
    let p = &j["phases"][0];
    assert!(p["requests"]["sent"].as_u64().unwrap() >= 50, "{p}");
    assert!(p["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(p["time_series"].as_array().unwrap().len(), 2);
    assert_eq!(p["checks"][0]["verdict"], "inconclusive");
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("<skipped"), "{junit}");
    assert!(std::fs::read_to_string(out.join("summary.txt"))
        .unwrap()
        .contains("inconclusive"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_request_log_writes_one_line_per_request_without_secrets() {
    let s = scenario(
        "logged",
        "  - {id: baseline, duration: 2s}
  - id: outage
    duration: 2s
    faults: [{provider: openai-east, effect: {type: http_error, status: 503}}]
",
    )
    .replace(
        "  profiles: [{id: chat, request: {model: gpt-4o}}]",
        "  keys: {web: {key_alias: web-alias}}
  profiles: [{id: chat, key: web, request: {model: gpt-4o}}]",
    );
    let cfg = quarterly_config();
    let d = dir_with(&[("s.yaml", &s), ("gw.yaml", &cfg)]);
    let out = d.path().join("out");
    let mut opts = drill::run::RunOptions::new(std::sync::Arc::new(|_: &str| None));
    opts.keep_request_log = true;
    assert_eq!(
        super::support::run_with(&d.path().join("s.yaml"), &out, opts).await,
        0
    );
    let j = journal(&out);
    let sent: u64 = j["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"]["sent"].as_u64().unwrap())
        .sum();
    let text = std::fs::read_to_string(out.join(drill::run::REQUEST_LOG)).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, sent);
    assert!(sent > 80, "{sent}");
    for l in &lines {
        for f in [
            "id",
            "phase",
            "profile",
            "key_alias",
            "sent_ms",
            "status",
            "latency_ms",
            "tried",
            "served_by",
        ] {
            assert!(l.get(f).is_some(), "{f} missing in {l}");
        }
        assert_eq!(l["key_alias"], "web-alias");
    }
    // Outage requests were served by the documented fallback; the first ones tried the failing
    // primary before it (later ones skip it while it cools down).
    let outage: Vec<&serde_json::Value> = lines.iter().filter(|l| l["phase"] == "outage").collect();
    let moved = outage
        .iter()
        .filter(|l| l["served_by"] == "claude-west")
        .count();
    assert!(
        moved * 10 >= outage.len() * 9,
        "{moved} of {}",
        outage.len()
    );
    let tried: std::collections::BTreeSet<String> =
        outage.iter().map(|l| l["tried"].to_string()).collect();
    assert!(
        outage
            .iter()
            .any(|l| l["tried"] == serde_json::json!(["gpt-4o-east", "claude-west"])),
        "outage requests tried: {tried:?}"
    );
    // Per phase, the log agrees with the journal's served-by counts.
    let served = lines
        .iter()
        .filter(|l| l["phase"] == "baseline" && l["served_by"] == "gpt-4o-east")
        .count() as u64;
    assert_eq!(j["phases"][0]["served_by"]["gpt-4o-east"], served);
    // Keys are named by alias; no secret (sk-...) is written.
    assert!(!text.contains("sk-"), "a key in requests.jsonl");
}
