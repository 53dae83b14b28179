//! The `/_mock/` control API on each deployment port.

use mock_providers::Dialect;
use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn put_faults_applies_to_the_next_request_and_delete_clears() {
    let server = start(vec![
        dep("a", Dialect::Openai),
        dep("b", Dialect::Anthropic),
    ])
    .await;
    let ctl = format!("{}/_mock/faults", server.base_url("a"));
    let resp = client()
        .put(&ctl)
        .json(&json!([{"id": "down", "effect": {"type": "http_error", "status": 503}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v = json_of(resp).await;
    assert_eq!(v["faults"][0]["id"], "down");
    assert_eq!(chat(&server, "a", "x", false).await.status(), 503);
    // Only that deployment.
    assert_eq!(chat(&server, "b", "x", false).await.status(), 200);
    let listed = json_of(client().get(&ctl).send().await.unwrap()).await;
    assert_eq!(listed["faults"].as_array().unwrap().len(), 1);
    assert_eq!(server.faults("a").unwrap().len(), 1);

    assert_eq!(client().delete(&ctl).send().await.unwrap().status(), 200);
    assert_eq!(chat(&server, "a", "x", false).await.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn put_faults_accepts_yaml() {
    let server = start(vec![dep("a", Dialect::Openai)]).await;
    let yaml = "- id: slow\n  effect: {type: latency, ttft: 10ms}\n  selection: {first: 1}\n";
    let resp = client()
        .put(format!("{}/_mock/faults", server.base_url("a")))
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(server.faults("a").unwrap()[0].id, "slow");
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_fault_specs_are_400_and_change_nothing() {
    let server = start(vec![dep("a", Dialect::Openai)]).await;
    let ctl = format!("{}/_mock/faults", server.base_url("a"));
    client()
        .put(&ctl)
        .json(&json!([{"id": "keep", "effect": {"type": "reset"}}]))
        .send()
        .await
        .unwrap();
    for (body, needle) in [
        (json!([{"effect": {"type": "explode"}}]), "[0].effect"),
        (
            json!([{"effect": {"type": "http_error", "status": 200}}]),
            "not an error status",
        ),
        (
            json!([{"effect": {"type": "reset"}, "selection": {"probability": 2.0}}]),
            "outside [0, 1]",
        ),
        (
            json!([{"id": "x", "effect": {"type": "reset"}}, {"id": "x", "effect": {"type": "reset"}}]),
            "duplicate fault id",
        ),
        (
            json!([{"effect": {"type": "reset"}, "colour": "red"}]),
            "unknown field `colour`",
        ),
        (json!({"not": "a list"}), "invalid"),
    ] {
        let resp = client().put(&ctl).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let v = json_of(resp).await;
        assert_eq!(v["error"]["type"], "invalid_fault_spec");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("nothing applied") && msg.contains(needle),
            "{msg}"
        );
        let faults = server.faults("a").unwrap();
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].id, "keep");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn journal_stats_reset_and_health() {
    let server = start(vec![dep("a", Dialect::Azure)]).await;
    let base = server.base_url("a");
    client()
        .put(format!("{base}/_mock/faults"))
        .json(&json!([{"id": "once", "effect": {"type": "auth_error"}, "selection": {"first": 1}}]))
        .send()
        .await
        .unwrap();
    for i in 0..3 {
        let _ = chat(&server, "a", &format!("[drill:rid=c{i}]"), false).await;
    }
    assert!(server.wait_for_completed("a", 3, T).await);
    let j: Value = json_of(
        client()
            .get(format!("{base}/_mock/journal"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(j["schema_version"], 1);
    assert_eq!(j["deployment"], "a");
    assert_eq!(j["entries"].as_array().unwrap().len(), 3);
    assert_eq!(j["entries"][0]["fault_id"], "once");
    assert_eq!(j["entries"][0]["dialect"], "azure");
    let j: Value = json_of(
        client()
            .get(format!("{base}/_mock/journal?since=2"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(j["entries"].as_array().unwrap().len(), 1);
    assert_eq!(j["entries"][0]["correlation_id"], "c2");

    let s: Value = json_of(
        client()
            .get(format!("{base}/_mock/stats"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s["requests"], 3);
    assert_eq!(s["faults_injected"]["once"], 1);
    assert_eq!(s["outcomes"]["complete"], 2);
    assert_eq!(s["outcomes"]["error_status"], 1);
    assert_eq!(s["statuses"]["401"], 1);

    let r = client()
        .post(format!("{base}/_mock/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s: Value = json_of(
        client()
            .get(format!("{base}/_mock/stats"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s["requests"], 0);
    assert!(server.journal().is_empty());
    assert!(server.faults("a").unwrap().is_empty());

    let h: Value = json_of(
        client()
            .get(format!("{base}/_mock/health"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(h["status"], "ok");
    // Control calls are not journaled.
    assert!(server.journal().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_control_paths_and_methods() {
    let server = start(vec![dep("a", Dialect::Openai)]).await;
    let base = server.base_url("a");
    let r = client()
        .get(format!("{base}/_mock/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(json_of(r).await["error"]["message"]
        .as_str()
        .unwrap()
        .contains("PUT|DELETE /_mock/faults"));
    let r = client()
        .post(format!("{base}/_mock/journal"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = client()
        .get(format!("{base}/_mock/journal?since=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    server.shutdown().await;
}
