//! A drill that cannot fail is worthless: gateways whose behaviour contradicts the
//! documentation make `drill run` exit 1 with a message naming the deviation.

use super::support::{dir_with, journal, messages, quarterly_config, run, PROVIDERS};

const DOCUMENTED_FALLBACKS: &str = r#"fallbacks: [{"gpt-4o": ["claude-sonnet", "gpt-4o-mini"]}]"#;

/// A scenario documented by the shipped config while the gateway runs `running`.
fn setup(name: &str, running: &str, phases: &str, extra: &str) -> tempfile::TempDir {
    let s = format!(
        "apiVersion: drill/v1
kind: Drill
metadata: {{name: {name}}}
gateway: {{config: running.yaml, documented_config: documented.yaml}}
{PROVIDERS}traffic:
  profiles: [{{id: chat, request: {{model: gpt-4o}}}}]
  load: {{rate: 30/s}}
{extra}phases:
{phases}"
    );
    dir_with(&[
        ("s.yaml", &s),
        ("documented.yaml", &quarterly_config()),
        ("running.yaml", running),
    ])
}

const OUTAGE: &str = "  - id: outage
    duration: 3s
    faults: [{provider: openai-east, effect: {type: http_error, status: 503}}]
    expect: {fallback: {from: gpt-4o-east, to: documented, min_share: 0.95}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_routing_to_another_fallback_than_documented_fails() {
    let cfg = quarterly_config();
    assert!(cfg.contains(DOCUMENTED_FALLBACKS));
    let running = cfg.replace(
        DOCUMENTED_FALLBACKS,
        r#"fallbacks: [{"gpt-4o": ["gpt-4o-mini"]}]"#,
    );
    let d = setup("drifted", &running, OUTAGE, "");
    let out = d.path().join("out");
    assert_eq!(run(&d.path().join("s.yaml"), &out).await, 1);
    let m = messages(&journal(&out));
    assert!(
        m.contains("failed fallback")
            && m.contains("served by mini-azure")
            && m.contains("documentation says master key: claude-west"),
        "{m}"
    );
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<failure message=\"phase outage check fallback"),
        "{junit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_fallbacks_fail_naming_the_documented_target() {
    let running = quarterly_config().replace(DOCUMENTED_FALLBACKS, "fallbacks: []");
    let d = setup("disabled", &running, OUTAGE, "");
    let out = d.path().join("out");
    assert_eq!(run(&d.path().join("s.yaml"), &out).await, 1);
    let m = messages(&journal(&out));
    assert!(
        m.contains("served by none") && m.contains("claude-west"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooldown_that_never_expires_fails_traffic_returns() {
    let running = quarterly_config().replace("cooldown_time: 2", "cooldown_time: 3600");
    let phases = format!(
        "{OUTAGE}  - id: recovery
    duration: 6s
    expect: {{traffic_returns: {{to: gpt-4o-east, min_share: 0.9}}}}
"
    );
    let d = setup("stuck", &running, &phases, "");
    let out = d.path().join("out");
    assert_eq!(run(&d.path().join("s.yaml"), &out).await, 1);
    let m = messages(&journal(&out));
    assert!(
        m.contains("traffic did not return to gpt-4o-east within 4.0s")
            && m.contains("claude-west"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_condition_aborts_and_still_writes_outputs() {
    let running = quarterly_config().replace(DOCUMENTED_FALLBACKS, "fallbacks: []");
    let phases = format!("{OUTAGE}  - {{id: never-run, duration: 5s}}\n");
    let d = setup(
        "abort",
        &running,
        &phases,
        "stop_conditions: {max_failed_requests: 5}\n",
    );
    let out = d.path().join("out");
    assert_eq!(run(&d.path().join("s.yaml"), &out).await, 3);
    let j = journal(&out);
    assert_eq!(j["status"], "aborted");
    assert!(j["abort_reason"]
        .as_str()
        .unwrap()
        .contains("max_failed_requests 5"));
    assert_eq!(j["phases"].as_array().unwrap().len(), 1);
}
