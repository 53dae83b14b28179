//! Proxy behaviour against wiremock upstreams: the path taken is asserted through exact
//! upstream call counts, not only through the answer.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard::config::{FallbackRule, PerClassCounts, RouterSettings, Seconds};
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::*;

fn rule(group: &str, targets: &[&str]) -> FallbackRule {
    FallbackRule {
        group: group.into(),
        targets: targets.iter().map(|s| s.to_string()).collect(),
    }
}

fn fallbacks(rules: Vec<FallbackRule>) -> RouterSettings {
    RouterSettings {
        fallbacks: Some(rules),
        ..Default::default()
    }
}

#[tokio::test]
async fn rate_limited_primary_is_retried_twice_then_falls_back() {
    let primary = upstream(openai_error(
        429,
        "rate_limit_error",
        Some("rate_limit_exceeded"),
        "slow down",
    ))
    .await;
    let backup = ok_upstream("from backup").await;
    let gw = start(
        config(
            vec![
                openai("p", "gpt-4o", &primary),
                openai("b", "claude", &backup),
            ],
            RouterSettings {
                num_retries: Some(2),
                ..fallbacks(vec![rule("gpt-4o", &["claude"])])
            },
        ),
        None,
    )
    .await;
    let resp = post(&gw, &chat_body("gpt-4o")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-deployment"), "b");
    assert_eq!(header(&resp, "x-switchyard-model-group"), "claude");
    assert_eq!(header(&resp, "x-switchyard-attempts"), "4");
    assert_eq!(header(&resp, "x-switchyard-fallback-depth"), "1");
    assert_eq!(header(&resp, "x-switchyard-settings-source"), "global");
    assert_eq!(header(&resp, "x-litellm-model-id"), "b");
    assert_eq!(header(&resp, "x-litellm-attempted-retries"), "2");
    assert_eq!(header(&resp, "x-litellm-attempted-fallbacks"), "1");
    assert!(!header(&resp, "x-request-id").is_empty());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "from backup");
    assert_eq!(calls(&primary).await, 3, "1 call + num_retries: 2");
    assert_eq!(calls(&backup).await, 1);
}

#[tokio::test]
async fn auth_failure_is_not_retried_and_goes_straight_to_fallback() {
    let primary = upstream(openai_error(
        401,
        "invalid_request_error",
        Some("invalid_api_key"),
        "bad key",
    ))
    .await;
    let backup = ok_upstream("ok").await;
    let gw = start(
        config(
            vec![
                openai("p", "gpt-4o", &primary),
                openai("b", "backup", &backup),
            ],
            RouterSettings {
                num_retries: Some(3),
                ..fallbacks(vec![rule("gpt-4o", &["backup"])])
            },
        ),
        None,
    )
    .await;
    let resp = post(&gw, &chat_body("gpt-4o")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(calls(&primary).await, 1);
    assert_eq!(calls(&backup).await, 1);
}

#[tokio::test]
async fn context_window_error_uses_context_window_fallbacks_only() {
    let primary = upstream(openai_error(
        400,
        "invalid_request_error",
        Some("context_length_exceeded"),
        "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
    ))
    .await;
    let general = ok_upstream("general").await;
    let big = ok_upstream("big").await;
    let gw = start(
        config(
            vec![
                openai("p", "small", &primary),
                openai("g", "general", &general),
                openai("big", "big", &big),
            ],
            RouterSettings {
                num_retries: Some(3),
                context_window_fallbacks: Some(vec![rule("small", &["big"])]),
                ..fallbacks(vec![rule("small", &["general"])])
            },
        ),
        None,
    )
    .await;
    let resp = post(&gw, &chat_body("small")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-deployment"), "big");
    assert_eq!(
        (
            calls(&primary).await,
            calls(&general).await,
            calls(&big).await
        ),
        (1, 0, 1)
    );
}

#[tokio::test]
async fn context_window_error_without_its_fallback_reaches_the_client() {
    let primary = upstream(openai_error(
        400,
        "invalid_request_error",
        Some("context_length_exceeded"),
        "maximum context length is 8192 tokens",
    ))
    .await;
    let general = ok_upstream("general").await;
    let gw = start(
        config(
            vec![
                openai("p", "small", &primary),
                openai("g", "general", &general),
            ],
            fallbacks(vec![rule("small", &["general"])]),
        ),
        None,
    )
    .await;
    let resp = post(&gw, &chat_body("small")).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert_eq!(
        calls(&general).await,
        0,
        "general fallbacks do not apply to context-window errors"
    );
}

#[tokio::test]
async fn content_policy_error_and_content_filter_finish_use_content_policy_fallbacks() {
    let refusing = upstream(openai_error(
        400,
        "invalid_request_error",
        Some("content_policy_violation"),
        "Your request was rejected as a result of our safety system.",
    ))
    .await;
    let mut filtered_body = completion("m", "");
    filtered_body["choices"][0]["finish_reason"] = json!("content_filter");
    let filtering = upstream(ResponseTemplate::new(200).set_body_json(filtered_body)).await;
    let general = ok_upstream("general").await;
    let lenient = ok_upstream("lenient").await;
    let gw = start(
        config(
            vec![
                openai("r", "refuses", &refusing),
                openai("f", "filters", &filtering),
                openai("g", "general", &general),
                openai("l", "lenient", &lenient),
            ],
            RouterSettings {
                num_retries: Some(2),
                content_policy_fallbacks: Some(vec![
                    rule("refuses", &["lenient"]),
                    rule("filters", &["lenient"]),
                ]),
                ..fallbacks(vec![
                    rule("refuses", &["general"]),
                    rule("filters", &["general"]),
                ])
            },
        ),
        None,
    )
    .await;
    for model in ["refuses", "filters"] {
        let resp = post(&gw, &chat_body(model)).await;
        assert_eq!(resp.status(), 200, "{model}");
        assert_eq!(header(&resp, "x-switchyard-deployment"), "l", "{model}");
    }
    assert_eq!(
        (calls(&refusing).await, calls(&filtering).await),
        (1, 1),
        "no retries"
    );
    assert_eq!(calls(&general).await, 0);
    assert_eq!(calls(&lenient).await, 2);
}

#[tokio::test]
async fn deployment_is_skipped_while_cooling_down_after_allowed_fails() {
    let failing = upstream(openai_error(500, "server_error", None, "boom")).await;
    let healthy = ok_upstream("ok").await;
    let mut a = openai("a", "gpt-4o", &failing);
    a.order = Some(1);
    let mut b = openai("b", "gpt-4o", &healthy);
    b.order = Some(2);
    let gw = start(
        config(
            vec![a, b],
            RouterSettings {
                num_retries: Some(1),
                allowed_fails: Some(1),
                cooldown_time: Some(Seconds(Duration::from_secs(60))),
                ..Default::default()
            },
        ),
        None,
    )
    .await;
    for _ in 0..5 {
        let resp = post(&gw, &chat_body("gpt-4o")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-switchyard-deployment"), "b");
    }
    assert_eq!(
        calls(&failing).await,
        2,
        "the second failure exceeds allowed_fails: 1 and cools `a` down"
    );
    assert_eq!(calls(&healthy).await, 5);
    let metrics = metrics_text(&gw).await;
    assert!(
        metrics.contains(r#"switchyard_cooldowns_total{deployment="a",model_group="gpt-4o"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"switchyard_deployment_requests_total{deployment="a",model_group="gpt-4o",outcome="server_error"} 2"#));
    assert!(metrics.contains(r#"switchyard_retries_total{model_group="gpt-4o"} 2"#));
}

#[tokio::test]
async fn retry_waits_for_the_upstream_retry_after_ms() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            openai_error(429, "rate_limit_error", None, "wait")
                .insert_header("retry-after-ms", "400"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("m", "ok")))
        .mount(&server)
        .await;
    let gw = start(
        config(
            vec![openai("p", "gpt-4o", &server)],
            RouterSettings {
                num_retries: Some(1),
                ..Default::default()
            },
        ),
        None,
    )
    .await;
    let started = Instant::now();
    let resp = post(&gw, &chat_body("gpt-4o")).await;
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "retried after {:?}",
        started.elapsed()
    );
    assert_eq!(calls(&server).await, 2);
}

#[tokio::test]
async fn chain_of_two_fallbacks_where_the_first_also_fails() {
    let primary = upstream(openai_error(503, "server_error", None, "down")).await;
    let first = upstream(openai_error(503, "server_error", None, "down too")).await;
    let second = ok_upstream("second").await;
    let gw = start(
        config(
            vec![
                openai("p", "a", &primary),
                openai("f1", "b", &first),
                openai("f2", "c", &second),
            ],
            RouterSettings {
                num_retries: Some(0),
                ..fallbacks(vec![rule("a", &["b", "c"])])
            },
        ),
        None,
    )
    .await;
    let resp = post(&gw, &chat_body("a")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-deployment"), "f2");
    assert_eq!(header(&resp, "x-switchyard-fallback-depth"), "2");
    assert_eq!(
        (
            calls(&primary).await,
            calls(&first).await,
            calls(&second).await
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn max_fallbacks_bounds_the_chain() {
    let down = || upstream(openai_error(500, "server_error", None, "down"));
    let (p, f1, f2, f3) = (
        down().await,
        down().await,
        down().await,
        ok_upstream("too far").await,
    );
    let gw = start(
        config(
            vec![
                openai("p", "a", &p),
                openai("f1", "b", &f1),
                openai("f2", "c", &f2),
                openai("f3", "d", &f3),
            ],
            RouterSettings {
                num_retries: Some(0),
                max_fallbacks: Some(2),
                ..fallbacks(vec![rule("a", &["b", "c", "d"])])
            },
        ),
        None,
    )
    .await;
    let resp = post(&gw, &chat_body("a")).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(header(&resp, "x-switchyard-attempts"), "3");
    assert_eq!(header(&resp, "x-switchyard-fallback-depth"), "2");
    assert_eq!(header(&resp, "x-litellm-attempted-fallbacks"), "2");
    assert_eq!(header(&resp, "x-switchyard-deployment"), "f2");
    assert_eq!(header(&resp, "x-litellm-model-group"), "c");
    assert_eq!(
        (calls(&f1).await, calls(&f2).await, calls(&f3).await),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn all_deployments_cooling_answers_429_with_retry_after() {
    let (a, b) = (
        upstream(openai_error(500, "server_error", None, "down")).await,
        upstream(openai_error(500, "server_error", None, "down")).await,
    );
    let gw = start(
        config(
            vec![openai("a", "gpt-4o", &a), openai("b", "gpt-4o", &b)],
            RouterSettings {
                num_retries: Some(1),
                allowed_fails: Some(0),
                cooldown_time: Some(Seconds(Duration::from_secs(30))),
                ..Default::default()
            },
        ),
        None,
    )
    .await;
    let first = post(&gw, &chat_body("gpt-4o")).await;
    assert_eq!(first.status(), 500);
    assert_eq!(calls(&a).await + calls(&b).await, 2);
    let resp = post(&gw, &chat_body("gpt-4o")).await;
    assert_eq!(resp.status(), 429);
    let retry_after: u64 = header(&resp, "retry-after").parse().unwrap();
    assert!(
        (29..=30).contains(&retry_after),
        "retry-after {retry_after}"
    );
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"gpt-4o\""),
        "{body}"
    );
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(
        calls(&a).await + calls(&b).await,
        2,
        "no upstream call while everything cools down"
    );
}

#[tokio::test]
async fn retry_policy_per_class_overrides_num_retries() {
    let primary = upstream(openai_error(429, "rate_limit_error", None, "slow")).await;
    let gw = start(
        config(
            vec![openai("p", "a", &primary)],
            RouterSettings {
                num_retries: Some(5),
                retry_policy: Some(PerClassCounts {
                    rate_limit: Some(1),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        None,
    )
    .await;
    let resp = post(&gw, &chat_body("a")).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(calls(&primary).await, 2);
}

#[tokio::test]
async fn stream_failing_before_first_byte_falls_back() {
    let primary = upstream(openai_error(500, "server_error", None, "down")).await;
    let backup = upstream(sse(&[chunk("Hel", None), chunk("lo", Some("stop"))], true)).await;
    let gw = start(
        config(
            vec![openai("p", "a", &primary), openai("b", "b", &backup)],
            RouterSettings {
                num_retries: Some(0),
                ..fallbacks(vec![rule("a", &["b"])])
            },
        ),
        None,
    )
    .await;
    let mut body = chat_body("a");
    body["stream"] = json!(true);
    let resp = post(&gw, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-deployment"), "b");
    assert!(header(&resp, "content-type").starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    assert!(text.contains("Hel") && text.contains("lo"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!((calls(&primary).await, calls(&backup).await), (1, 1));
}

#[tokio::test]
async fn stream_failing_after_first_byte_ends_with_an_error_event() {
    // One chunk, then the upstream closes without [DONE].
    let primary = upstream(sse(&[chunk("partial", None)], false)).await;
    let backup = ok_upstream("never").await;
    let gw = start(
        config(
            vec![openai("p", "a", &primary), openai("b", "b", &backup)],
            RouterSettings {
                num_retries: Some(0),
                ..fallbacks(vec![rule("a", &["b"])])
            },
        ),
        None,
    )
    .await;
    let mut body = chat_body("a");
    body["stream"] = json!(true);
    let resp = post(&gw, &body).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("partial"), "{text}");
    assert!(
        !text.contains("[DONE]"),
        "a broken stream must not look complete: {text}"
    );
    let last = text.trim_end().lines().last().unwrap();
    let err: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(err["error"]["code"], "stream_broken", "{text}");
    assert_eq!(calls(&backup).await, 0, "no fallback after the first byte");
}

#[tokio::test]
async fn usage_chunk_is_forwarded_only_when_asked_for() {
    let usage_chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}});
    let server = upstream(sse(&[chunk("hi", Some("stop")), usage_chunk], true)).await;
    let gw = start(
        config(vec![openai("p", "a", &server)], RouterSettings::default()),
        None,
    )
    .await;
    let mut body = chat_body("a");
    body["stream"] = json!(true);
    let text = post(&gw, &body).await.text().await.unwrap();
    assert!(!text.contains("total_tokens"), "{text}");
    body["stream_options"] = json!({"include_usage": true});
    let text = post(&gw, &body).await.text().await.unwrap();
    assert!(text.contains("\"total_tokens\":5"), "{text}");
}

#[tokio::test]
async fn bad_requests_get_openai_shaped_errors_naming_the_field() {
    let server = ok_upstream("ok").await;
    let mut cfg = config(
        vec![openai("p", "gpt-4o", &server)],
        RouterSettings::default(),
    );
    cfg.general_settings.max_request_body_bytes = Some(1024);
    let gw = start(cfg, None).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", gw.url);
    let cases: Vec<(String, u16, Option<&str>)> = vec![
        ("{not json".into(), 400, None),
        ("[]".into(), 400, None),
        (json!({"messages": [{"role": "user", "content": "x"}]}).to_string(), 400, Some("model")),
        (json!({"model": 5, "messages": [{"role": "user", "content": "x"}]}).to_string(), 400, Some("model")),
        (json!({"model": "gpt-4o"}).to_string(), 400, Some("messages")),
        (json!({"model": "gpt-4o", "messages": "hi"}).to_string(), 400, Some("messages")),
        (json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}).to_string(), 400, Some("stream")),
        (json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}).to_string(), 404, Some("model")),
        (json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(2000)}]}).to_string(), 413, None),
    ];
    for (body, status, param) in cases {
        let resp = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert!(
            v["error"]["message"].is_string() && v["error"]["type"].is_string(),
            "{v}"
        );
        if let Some(p) = param {
            assert_eq!(v["error"]["param"], p, "{body}");
        }
    }
    assert_eq!(calls(&server).await, 0);
}

#[tokio::test]
async fn unknown_model_is_model_not_found() {
    let server = ok_upstream("ok").await;
    let gw = start(
        config(
            vec![openai("p", "gpt-4o", &server)],
            RouterSettings::default(),
        ),
        None,
    )
    .await;
    let resp = post(&gw, &chat_body("gpt-5")).await;
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn garbage_from_upstream_is_a_502_naming_the_deployment_without_leaking() {
    let server = upstream(
        ResponseTemplate::new(200)
            .set_body_string("<html>sk-upstream-secret-0123456789 oops</html>"),
    )
    .await;
    let gw = start(
        config(
            vec![openai("dep-1", "gpt-4o", &server)],
            RouterSettings {
                num_retries: Some(0),
                ..Default::default()
            },
        ),
        None,
    )
    .await;
    let resp = post(&gw, &chat_body("gpt-4o")).await;
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert!(text.contains("dep-1"), "{text}");
    assert!(
        !text.contains("sk-upstream") && !text.contains("<html>"),
        "{text}"
    );
}

#[tokio::test]
async fn master_key_guards_proxy_routes_but_not_health() {
    let server = ok_upstream("ok").await;
    let gw = start(
        config(
            vec![openai("p", "gpt-4o", &server)],
            RouterSettings::default(),
        ),
        Some("sk-master-1"),
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", gw.url);
    let no_key = client
        .post(&url)
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    let wrong = client
        .post(&url)
        .bearer_auth("sk-master-2")
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    let ok = client
        .post(&url)
        .bearer_auth("sk-master-1")
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok = client
        .post(&url)
        .header("x-api-key", "sk-master-1")
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    for p in [
        "/health/liveliness",
        "/health/liveness",
        "/health/readiness",
        "/metrics",
    ] {
        assert_eq!(
            client
                .get(format!("{}{p}", gw.url))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{p}"
        );
    }
    let ready: Value = client
        .get(format!("{}/health/readiness", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&ready["status"], &ready["db"]),
        (&json!("healthy"), &json!("not configured"))
    );
    let models = client
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth("sk-master-1")
        .send()
        .await
        .unwrap();
    let v: Value = models.json().await.unwrap();
    assert_eq!(v["data"][0]["id"], "gpt-4o");
    assert_eq!(calls(&server).await, 2);
}

#[tokio::test]
async fn request_body_fallbacks_and_disable_fallbacks_are_honoured() {
    let primary = upstream(openai_error(503, "server_error", None, "down")).await;
    let configured = ok_upstream("configured").await;
    let requested = ok_upstream("requested").await;
    let gw = start(
        config(
            vec![
                openai("p", "a", &primary),
                openai("c", "c", &configured),
                openai("r", "r", &requested),
            ],
            RouterSettings {
                num_retries: Some(0),
                ..fallbacks(vec![rule("a", &["c"])])
            },
        ),
        None,
    )
    .await;
    let mut body = chat_body("a");
    body["fallbacks"] = json!(["r"]);
    let resp = post(&gw, &body).await;
    assert_eq!(header(&resp, "x-switchyard-deployment"), "r");
    let mut body = chat_body("a");
    body["disable_fallbacks"] = json!(true);
    let resp = post(&gw, &body).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(calls(&configured).await, 0);
    // The gateway-only fields never reach the upstream.
    for req in primary.received_requests().await.unwrap() {
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert!(
            sent.get("fallbacks").is_none() && sent.get("disable_fallbacks").is_none(),
            "{sent}"
        );
        assert_eq!(sent["model"], "upstream-p");
    }
}

#[tokio::test]
async fn deployment_id_and_alias_resolve_to_groups() {
    let a = ok_upstream("a").await;
    let b = ok_upstream("b").await;
    let mut aliases = std::collections::BTreeMap::new();
    aliases.insert(
        "latest".to_string(),
        switchyard::config::GroupAlias::Name("g".into()),
    );
    let gw = start(
        config(
            vec![openai("d-a", "g", &a), openai("d-b", "g", &b)],
            RouterSettings {
                model_group_alias: Some(aliases),
                ..Default::default()
            },
        ),
        None,
    )
    .await;
    for _ in 0..3 {
        let resp = post(&gw, &chat_body("d-b")).await;
        assert_eq!(header(&resp, "x-switchyard-deployment"), "d-b");
    }
    let resp = post(&gw, &chat_body("latest")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-model-group"), "g");
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let server = upstream(
        ResponseTemplate::new(200)
            .set_body_json(completion("m", "slow"))
            .set_delay(Duration::from_millis(500)),
    )
    .await;
    let state = switchyard::AppState::new(
        config(vec![openai("p", "a", &server)], RouterSettings::default()),
        switchyard::StateOptions::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/chat/completions",
        listener.local_addr().unwrap()
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(switchyard::serve(
        listener,
        state,
        async {
            let _ = rx.await;
        },
        Duration::from_secs(5),
    ));
    let client = reqwest::Client::new();
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .post(url)
                .json(&chat_body("a"))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    // Shut down once the request has reached the upstream.
    tokio::time::timeout(Duration::from_secs(5), async {
        while calls(&server).await == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    tx.send(()).unwrap();
    assert_eq!(
        in_flight.await.unwrap(),
        200,
        "the in-flight request completes during the drain"
    );
    tokio::time::timeout(Duration::from_secs(5), server_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        client
            .post(&url)
            .json(&chat_body("a"))
            .send()
            .await
            .is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn deployment_at_its_rpm_limit_is_skipped() {
    let limited = ok_upstream("limited").await;
    let spare = ok_upstream("spare").await;
    let mut a = openai("a", "g", &limited);
    a.rpm = Some(2);
    a.order = Some(1);
    let mut b = openai("b", "g", &spare);
    b.order = Some(2);
    let gw = start(config(vec![a, b], RouterSettings::default()), None).await;
    let mut served = Vec::new();
    for _ in 0..4 {
        let resp = post(&gw, &chat_body("g")).await;
        assert_eq!(resp.status(), 200);
        served.push(header(&resp, "x-switchyard-deployment").to_string());
    }
    assert_eq!(served, ["a", "a", "b", "b"]);
    assert_eq!((calls(&limited).await, calls(&spare).await), (2, 2));
}

#[tokio::test]
async fn slow_deployment_times_out_and_falls_back() {
    let slow = upstream(
        ResponseTemplate::new(200)
            .set_body_json(completion("m", "late"))
            .set_delay(Duration::from_secs(5)),
    )
    .await;
    let fast = ok_upstream("fast").await;
    let mut s = openai("slow", "a", &slow);
    s.timeout = Some(Duration::from_millis(200));
    let gw = start(
        config(
            vec![s, openai("fast", "b", &fast)],
            RouterSettings {
                num_retries: Some(1),
                ..fallbacks(vec![rule("a", &["b"])])
            },
        ),
        None,
    )
    .await;
    let started = Instant::now();
    let resp = post(&gw, &chat_body("a")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-deployment"), "fast");
    assert_eq!(calls(&slow).await, 2, "a timeout is retried");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the per-deployment timeout bounds each attempt"
    );
}

#[tokio::test]
async fn global_timeout_applies_when_the_deployment_sets_none() {
    let slow = upstream(
        ResponseTemplate::new(200)
            .set_body_json(completion("m", "late"))
            .set_delay(Duration::from_secs(5)),
    )
    .await;
    let gw = start(
        config(
            vec![openai("slow", "a", &slow)],
            RouterSettings {
                num_retries: Some(0),
                timeout: Some(Seconds(Duration::from_millis(200))),
                ..Default::default()
            },
        ),
        None,
    )
    .await;
    let resp = post(&gw, &chat_body("a")).await;
    assert_eq!(resp.status(), 504);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_timeout");
}

/// `serve` answers chat completions without the router; `app()` still routes them. The same
/// requests get the same answers both ways: success, refusal, bad body, echoed request id.
#[tokio::test]
async fn chat_completions_answer_the_same_through_serve_and_through_the_router() {
    use tower::ServiceExt;
    let server = ok_upstream("same").await;
    let gw = start(
        config(
            vec![openai("d", "gpt-4o", &server)],
            RouterSettings::default(),
        ),
        Some("sk-master-0123"),
    )
    .await;
    let router = switchyard::app(gw.state.clone());
    let client = reqwest::Client::new();
    let cases: [(&str, Option<&str>, String); 4] = [
        (
            "sk-master-0123",
            Some("req-1"),
            chat_body("gpt-4o").to_string(),
        ),
        ("sk-wrong", None, chat_body("gpt-4o").to_string()),
        (
            "sk-master-0123",
            None,
            r#"{"model": "gpt-4o", "messages": "hi"}"#.into(),
        ),
        (
            "sk-master-0123",
            None,
            r#"{"model": "nope", "messages": []}"#.into(),
        ),
    ];
    for (key, request_id, body) in cases {
        let mut served = client
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.clone());
        let mut routed = axum::http::Request::post("/chat/completions")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json");
        if let Some(id) = request_id {
            served = served.header("x-request-id", id);
            routed = routed.header("x-request-id", id);
        }
        let served = served.send().await.unwrap();
        let routed = router
            .clone()
            .oneshot(routed.body(axum::body::Body::from(body.clone())).unwrap())
            .await
            .unwrap();
        assert_eq!(served.status().as_u16(), routed.status().as_u16(), "{body}");
        let names = |h: &axum::http::HeaderMap| {
            let mut n: Vec<String> = h
                .keys()
                .map(|k| k.to_string())
                .filter(|k| k != "date" && k != "content-length")
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(served.headers()), names(routed.headers()), "{body}");
        let served_id = header(&served, "x-request-id").to_string();
        let routed_id = routed.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        match request_id {
            Some(id) => {
                assert_eq!(served_id, id);
                assert_eq!(routed_id, id);
            }
            None => assert!(!served_id.is_empty() && !routed_id.is_empty()),
        }
        let served: Value = served.json().await.unwrap();
        let routed = axum::body::to_bytes(routed.into_body(), usize::MAX)
            .await
            .unwrap();
        let routed: Value = serde_json::from_slice(&routed).unwrap();
        assert_eq!(served, routed, "{body}");
    }
    assert_eq!(calls(&server).await, 2, "one served request per path");
}
