//! Spend, budgets and usage limits of virtual keys through the proxy, on SQLite and
//! PostgreSQL: spend totals agree with the spend logs under concurrency, budgets stop a key
//! (and a team), tpm and parallel limits answer 429 with `Retry-After`, key model aliases route,
//! secrets never reach the logs, and a store outage is a 503 on admin routes while cached keys
//! keep serving.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use switchyard::config::{Config, ModelInfo, RouterSettings};
use switchyard::store::{Page, SpendLogFilter, Store, Usd};
use wiremock::{MockServer, ResponseTemplate};

use crate::harness::*;
use crate::keys::{admin_get, admin_post, chat, client, drop_schema, generate, stores, MASTER};

/// USD per input and output token of the priced deployment. A request costs
/// 5 × 0.000_001_25 + 3 × 0.000_003_75 = $0.000_017_5 (the mock reports 5 + 3 tokens).
const INPUT_PRICE: f64 = 0.000_001_25;
const OUTPUT_PRICE: f64 = 0.000_003_75;
const REQUEST_COST_NANOS: i64 = 17_500;

async fn priced_gateway(store: Arc<dyn Store>, upstream: &MockServer) -> Gateway {
    let mut d = openai("b1", "b", upstream);
    d.info = ModelInfo {
        input_cost_per_token: Some(INPUT_PRICE),
        output_cost_per_token: Some(OUTPUT_PRICE),
        ..Default::default()
    };
    let cfg: Config = config(
        vec![d],
        RouterSettings {
            num_retries: Some(0),
            disable_cooldowns: Some(true),
            ..Default::default()
        },
    );
    start_with_store(cfg, Some(MASTER), Some(store)).await
}

/// [`priced_gateway`] over a fresh upstream, with the team `team_id` created.
async fn priced_gateway_with_team(store: &Arc<dyn Store>, team_id: &str) -> (Gateway, MockServer) {
    let up = ok_upstream("priced").await;
    let gw = priced_gateway(Arc::clone(store), &up).await;
    let (status, team) = admin_post(&gw, "/team/new", MASTER, json!({"team_id": team_id})).await;
    assert_eq!(status, 200, "{team}");
    (gw, up)
}

async fn key_spend(store: &Arc<dyn Store>, alias: &str) -> Usd {
    store.key_by_alias(alias).await.unwrap().unwrap().spend
}

#[tokio::test]
async fn spend_totals_match_the_spend_logs_to_the_nano_dollar_under_concurrency() {
    const REQUESTS: usize = 200;
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let (gw, _up) = priced_gateway_with_team(&store, "t-spend").await;
        let key = generate(&gw, json!({"key_alias": "spender", "team_id": "t-spend"})).await;
        let tasks: Vec<_> = (0..REQUESTS)
            .map(|_| {
                let url = gw.url.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    client()
                        .post(format!("{url}/v1/chat/completions"))
                        .bearer_auth(&key)
                        .json(&chat_body("b"))
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200, "{backend}");
        }
        assert!(
            gw.state.flush_spend(Duration::from_secs(30)).await,
            "{backend}"
        );

        let record = store.key_by_alias("spender").await.unwrap().unwrap();
        let logs = store
            .spend_logs(
                &SpendLogFilter {
                    key_public_id: Some(record.spec.public_id.clone()),
                    ..Default::default()
                },
                Page {
                    limit: 1000,
                    offset: 0,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            logs.items.len(),
            REQUESTS,
            "{backend}: one log row per request"
        );
        let logged: i64 = logs.items.iter().map(|e| e.cost.nanos()).sum();
        assert_eq!(logged, REQUEST_COST_NANOS * REQUESTS as i64, "{backend}");
        assert_eq!(record.spend.nanos(), logged, "{backend}: key total = logs");
        let team = store.team("t-spend").await.unwrap().unwrap();
        assert_eq!(team.spend.nanos(), logged, "{backend}: team total = logs");
        assert!(logs.items.iter().all(|e| e.prompt_tokens == 5
            && e.completion_tokens == 3
            && e.deployment_id.as_deref() == Some("b1")
            && e.model_group == "b"));
        // /key/info shows the same total.
        let (status, info) = admin_get(&gw, "/key/info?key_alias=spender", MASTER).await;
        assert_eq!(status, 200, "{info}");
        let shown = info["info"]["spend"]
            .as_f64()
            .unwrap_or(info["spend"].as_f64().unwrap_or(-1.0));
        assert!(
            (shown - logged as f64 / 1e9).abs() < 1e-9,
            "{backend}: {info}"
        );
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn a_key_over_its_budget_gets_budget_exceeded_with_spend_and_limit() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let up = ok_upstream("priced").await;
        let gw = priced_gateway(Arc::clone(&store), &up).await;
        // Two requests fit ($0.000035 > $0.00003 only after the second).
        let key = generate(&gw, json!({"key_alias": "capped", "max_budget": 0.00003})).await;
        let free = generate(&gw, json!({"key_alias": "free"})).await;
        assert_eq!(chat(&gw, &key, "b").await.0, 200, "{backend}");
        assert_eq!(chat(&gw, &key, "b").await.0, 200, "{backend}");
        let r = client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(&chat_body("b"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{backend}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "budget_exceeded", "{body}");
        assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("$0.000035") && msg.contains("$0.00003"),
            "{msg}"
        );
        assert!(!msg.contains(&key), "the key never appears in errors");
        assert_eq!(
            chat(&gw, &free, "b").await.0,
            200,
            "{backend}: other keys unaffected"
        );
        // The budget holds across the batch writer and a cache reload.
        assert!(gw.state.flush_spend(Duration::from_secs(10)).await);
        gw.state.key_cache.invalidate_all();
        assert_eq!(chat(&gw, &key, "b").await.0, 400, "{backend}");
        assert_eq!(
            key_spend(&store, "capped").await.nanos(),
            2 * REQUEST_COST_NANOS
        );
        // Raising the budget takes effect on the next request.
        let (status, v) = admin_post(
            &gw,
            "/key/update",
            MASTER,
            json!({"key": key, "max_budget": 1.0}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(chat(&gw, &key, "b").await.0, 200, "{backend}");
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn a_team_budget_stops_every_key_of_the_team() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let up = ok_upstream("priced").await;
        let gw = priced_gateway(Arc::clone(&store), &up).await;
        let (status, v) = admin_post(
            &gw,
            "/team/new",
            MASTER,
            json!({"team_id": "t-cap", "max_budget": 0.00002}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        let k1 = generate(&gw, json!({"team_id": "t-cap"})).await;
        let k2 = generate(&gw, json!({"team_id": "t-cap"})).await;
        assert_eq!(chat(&gw, &k1, "b").await.0, 200, "{backend}");
        assert_eq!(chat(&gw, &k1, "b").await.0, 200, "{backend}");
        let (status, _) = chat(&gw, &k2, "b").await;
        assert_eq!(status, 400, "{backend}: the team's budget is spent");
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn tpm_limit_counts_reported_tokens_and_answers_429() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let up = ok_upstream("priced").await;
        let gw = priced_gateway(Arc::clone(&store), &up).await;
        // 8 tokens per request: the third request starts with 16 of 10 used.
        let key = generate(&gw, json!({"tpm_limit": 10})).await;
        assert_eq!(chat(&gw, &key, "b").await.0, 200, "{backend}");
        assert_eq!(chat(&gw, &key, "b").await.0, 200, "{backend}");
        let r = client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(&chat_body("b"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{backend}");
        let retry: u64 = header(&r, "retry-after").parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("tpm_limit"),
            "{body}"
        );
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn max_parallel_requests_refuses_the_request_over_the_limit() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let slow = upstream(
            ResponseTemplate::new(200)
                .set_body_json(completion("m", "slow"))
                .set_delay(Duration::from_millis(600)),
        )
        .await;
        let gw = priced_gateway(Arc::clone(&store), &slow).await;
        let key = generate(&gw, json!({"max_parallel_requests": 1})).await;
        let first = {
            let url = gw.url.clone();
            let key = key.clone();
            tokio::spawn(async move {
                client()
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&chat_body("b"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        };
        // Wait until the first request is in flight upstream (bounded).
        tokio::time::timeout(Duration::from_secs(10), async {
            while slow
                .received_requests()
                .await
                .unwrap_or_default()
                .is_empty()
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        let r = client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(&chat_body("b"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{backend}");
        assert_eq!(header(&r, "retry-after"), "1");
        assert_eq!(first.await.unwrap(), 200, "{backend}");
        // The slot is free again once the first response is done.
        assert_eq!(chat(&gw, &key, "b").await.0, 200, "{backend}");
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn key_model_aliases_route_to_the_aliased_group() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let up = ok_upstream("from b").await;
        let gw = priced_gateway(Arc::clone(&store), &up).await;
        let key = generate(&gw, json!({"aliases": {"my-model": "b"}})).await;
        let plain = generate(&gw, json!({})).await;
        assert_eq!(
            chat(&gw, &key, "my-model").await,
            (200, "from b".into()),
            "{backend}"
        );
        assert_eq!(chat(&gw, &plain, "my-model").await.0, 404, "{backend}");
    }
    drop_schema(pg).await;
}

/// Collects everything the gateway logs (any level) into a string.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// Issue 4: keys never appear in logs or error bodies. A current-thread runtime keeps the
// gateway's tasks on this thread, so a thread-local subscriber sees all of them.
#[tokio::test(flavor = "current_thread")]
async fn keys_and_upstream_secrets_never_reach_the_logs() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let store = switchyard::store::connect("sqlite::memory:").await.unwrap();
    let down = upstream(openai_error(500, "api_error", None, "down")).await;
    let up = ok_upstream("ok").await;
    let mut bad = openai("a1", "a", &down);
    bad.api_key = Some("sk-upstream-secret-aaaa".to_string().into());
    let mut d = openai("b1", "b", &up);
    d.api_key = Some("sk-upstream-secret-bbbb".to_string().into());
    let cfg = config(
        vec![bad, d],
        RouterSettings {
            num_retries: Some(1),
            fallbacks: Some(vec![switchyard::config::FallbackRule {
                group: "a".into(),
                targets: vec!["b".into()],
            }]),
            ..Default::default()
        },
    );
    let gw = start_with_store(cfg, Some(MASTER), Some(store)).await;
    let key = generate(&gw, json!({"key_alias": "logged", "rpm_limit": 3})).await;
    let mut bodies = String::new();
    for model in ["a", "b", "nope"] {
        let r = client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(&chat_body(model))
            .send()
            .await
            .unwrap();
        bodies.push_str(&r.text().await.unwrap());
    }
    // Over the rpm limit, a wrong key, a regenerated key, a deleted key.
    for token in [key.as_str(), "sk-not-a-real-key-1234567890"] {
        let r = client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(token)
            .json(&chat_body("b"))
            .send()
            .await
            .unwrap();
        bodies.push_str(&r.text().await.unwrap());
    }
    let (_, v) = admin_post(&gw, "/key/regenerate", MASTER, json!({"key": key})).await;
    let regenerated = v["key"].as_str().unwrap().to_string();
    let (_, v) = admin_post(
        &gw,
        "/key/delete",
        MASTER,
        json!({"key_aliases": ["logged"]}),
    )
    .await;
    bodies.push_str(&v.to_string());
    drop(gw);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.len() > 200, "the gateway logged something: {text}");
    for secret in [
        key.as_str(),
        regenerated.as_str(),
        MASTER,
        "sk-upstream-secret-aaaa",
        "sk-upstream-secret-bbbb",
        "sk-not-a-real-key-1234567890",
    ] {
        assert!(!text.contains(secret), "secret {secret:.8}… in the logs");
        assert!(
            !bodies.contains(secret),
            "secret {secret:.8}… in a response body"
        );
    }
    // The secret part of a key must not appear on its own either.
    let secret_part = key.rsplit('-').next().unwrap();
    assert!(!text.contains(secret_part));
}

#[tokio::test]
async fn store_outage_is_503_on_admin_routes_while_cached_keys_keep_serving() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let up = ok_upstream("from b").await;
        let gw = priced_gateway(Arc::clone(&store), &up).await;
        let key = generate(&gw, json!({"key_alias": "cached"})).await;
        assert_eq!(
            chat(&gw, &key, "b").await.0,
            200,
            "{backend}: key now cached"
        );
        let readiness = || async {
            let (status, v) = admin_get(&gw, "/health/readiness", "").await;
            assert_eq!(status, 200, "{backend}: {v}");
            (v["status"].clone(), v["db"].clone())
        };
        assert_eq!(readiness().await, (json!("healthy"), json!("connected")));
        store.close().await;
        assert_eq!(
            readiness().await,
            (json!("degraded"), json!("disconnected")),
            "{backend}: still 200, cached keys serve"
        );
        let (status, v) = admin_get(&gw, "/key/info?key_alias=cached", MASTER).await;
        assert_eq!(status, 503, "{backend}: {v}");
        assert_eq!(v["error"]["code"], "service_unavailable", "{v}");
        let (status, _) = admin_post(&gw, "/key/generate", MASTER, json!({})).await;
        assert_eq!(status, 503, "{backend}");
        assert_eq!(
            chat(&gw, &key, "b").await.0,
            200,
            "{backend}: cached key still serves"
        );
        // An unknown key cannot be checked: 503, not 401 (the store, not the key, is at fault).
        let (status, _) = chat(
            &gw,
            "sk-sy-abcdefghijkl-0123456789abcdefghijklmnopqrstuv",
            "b",
        )
        .await;
        assert!(status == 503 || status == 401, "{backend}: {status}");
    }
    drop_schema(pg).await;
}

/// `GET /spend/logs` lists recorded requests newest first with LiteLLM's row fields, filtered by
/// key (the full key, its alias, or its public id, which still finds a deleted key's rows), team,
/// model group and dates; bad dates and unknown keys are errors naming the parameter, and no row
/// carries a key.
#[tokio::test]
async fn spend_logs_are_listed_by_key_team_model_and_date() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let (gw, _up) = priced_gateway_with_team(&store, "t-logs").await;
        let a = generate(&gw, json!({"key_alias": "logs-a", "team_id": "t-logs"})).await;
        let b = generate(&gw, json!({"key_alias": "logs-b"})).await;
        let gone = generate(&gw, json!({"key_alias": "logs-gone"})).await;
        for key in [&a, &a, &a, &b, &gone] {
            assert_eq!(chat(&gw, key, "b").await.0, 200, "{backend}");
        }
        assert!(gw.state.flush_spend(Duration::from_secs(10)).await);
        let (_, info) = admin_get(&gw, "/key/info?key_alias=logs-gone", MASTER).await;
        let gone_id = info["info"]["public_id"].as_str().unwrap().to_owned();
        let (s, _) = admin_post(&gw, "/key/delete", MASTER, json!({"keys": [gone]})).await;
        assert_eq!(s, 200, "{backend}");

        let logs = |query: String| {
            let gw = &gw;
            async move {
                let (s, v) = admin_get(gw, &format!("/spend/logs{query}"), MASTER).await;
                assert_eq!(s, 200, "{query}: {v}");
                v
            }
        };
        let all = logs(String::new()).await;
        assert_eq!(all["total"], 5, "{backend}: {all}");
        for k in [&a, &b, &gone] {
            assert!(
                !all.to_string().contains(k.as_str()),
                "{backend}: a key in {all}"
            );
        }

        let v = logs(format!("?api_key={a}")).await;
        assert_eq!(v["total"], 3, "{backend}: {v}");
        let row = &v["logs"][0];
        assert_eq!(row["model_group"], "b", "{backend}: {row}");
        assert_eq!(row["model_id"], "b1");
        assert_eq!(row["team_id"], "t-logs");
        assert_eq!(row["status"], "success");
        assert_eq!(
            (row["prompt_tokens"].as_u64(), row["total_tokens"].as_u64()),
            (Some(5), Some(8))
        );
        let spend = row["spend"].as_f64().unwrap();
        assert!(
            (spend - REQUEST_COST_NANOS as f64 / 1e9).abs() < 1e-12,
            "{row}"
        );
        assert!(row["request_id"].as_str().is_some_and(|r| !r.is_empty()));
        assert!(row["startTime"].as_str().is_some(), "{row}");

        assert_eq!(
            logs("?key_alias=logs-b".into()).await["total"],
            1,
            "{backend}"
        );
        assert_eq!(
            logs(format!("?api_key={gone_id}")).await["total"],
            1,
            "{backend}"
        );
        assert_eq!(
            logs("?team_id=t-logs".into()).await["total"],
            3,
            "{backend}"
        );
        assert_eq!(logs("?model=nope".into()).await["total"], 0, "{backend}");

        // Whole days around the rows' own start times (not the clock, which may pass midnight).
        let day_of = |row: &Value| {
            let t = row["startTime"].as_str().unwrap();
            chrono::NaiveDate::parse_from_str(&t[..10], "%Y-%m-%d").unwrap()
        };
        let (first, last) = (day_of(&all["logs"][4]), day_of(&all["logs"][0]));
        let day = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
        let v = logs(format!("?start_date={}&end_date={}", day(first), day(last))).await;
        assert_eq!(v["total"], 5, "{backend}: the end day counts whole: {v}");
        let before = day(first.pred_opt().unwrap());
        assert_eq!(logs(format!("?end_date={before}")).await["total"], 0);
        let after = day(last.succ_opt().unwrap());
        assert_eq!(logs(format!("?start_date={after}")).await["total"], 0);

        let page2 = logs("?page=2&page_size=2".into()).await;
        assert_eq!(page2["total_pages"], 3, "{backend}");
        assert_eq!(
            page2["logs"][0], all["logs"][2],
            "{backend}: newest first, paged"
        );

        for (query, status, param) in [
            ("?start_date=2026-13-01", 400, "start_date"),
            ("?end_date=yesterday", 400, "end_date"),
            ("?page_size=0", 400, "page_size"),
            ("?api_key=sk-sy-nokey", 404, "api_key"),
            ("?key_alias=nobody", 404, "key_alias"),
        ] {
            let (s, v) = admin_get(&gw, &format!("/spend/logs{query}"), MASTER).await;
            assert_eq!(s, status, "{backend}: {query}: {v}");
            assert_eq!(v["error"]["param"], param, "{backend}: {query}: {v}");
        }
        assert_eq!(admin_get(&gw, "/spend/logs", &a).await.0, 403, "{backend}");
    }
    drop_schema(pg).await;
}

/// With `maximum_spend_logs_retention_period` set, a serving gateway deletes the spend-log rows
/// older than the period soon after it starts (then once per interval); newer rows stay.
#[tokio::test]
async fn a_gateway_deletes_spend_logs_past_their_retention_period() {
    use crate::store::conformance::spend_entry;
    use switchyard::config::SpendLogsRetention;
    use switchyard::store::{PublicId, SpendEntry};
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let rows: Vec<SpendEntry> = [("old-1", 40), ("old-2", 31), ("recent", 1)]
            .into_iter()
            .map(|(id, days_ago)| {
                let mut e = spend_entry(id, &PublicId::random(), 1);
                e.start_time = chrono::Utc::now() - chrono::Duration::days(days_ago);
                e.end_time = e.start_time;
                e
            })
            .collect();
        store.record_spend(&rows).await.unwrap();
        let up = ok_upstream("unused").await;
        let mut cfg = config(vec![openai("b1", "b", &up)], RouterSettings::default());
        cfg.general_settings.spend_logs_retention = Some(SpendLogsRetention {
            period: Duration::from_secs(30 * 86_400),
            every: SpendLogsRetention::DEFAULT_EVERY,
        });
        let gw = start_with_store(cfg, Some(MASTER), Some(store)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let left = loop {
            let (status, v) = admin_get(&gw, "/spend/logs", MASTER).await;
            assert_eq!(status, 200, "{backend}: {v}");
            if v["total"] == 1 || tokio::time::Instant::now() > deadline {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(left["total"], 1, "{backend}: {left}");
        assert_eq!(left["logs"][0]["request_id"], "recent", "{backend}");
    }
    drop_schema(pg).await;
}
