//! Keys never reach logs or error bodies: the gateway's tracing output (every level, text and
//! JSON) is captured into a buffer across generate, auth failures, fallbacks, limits, budgets,
//! regeneration and upstream errors, then searched for each full key and its secret part.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use switchyard::config::{Config, FallbackRule, RouterSettings};
use tracing_subscriber::fmt::MakeWriter;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, MockServer};

use crate::harness::*;
use crate::keys::{admin_get, admin_post, client, drop_schema, generate, stores, MASTER};

/// A `MakeWriter` appending to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The secret part of `sk-<prefix>-<public_id>-<secret>`.
fn secret_part(key: &str) -> &str {
    key.rsplit('-').next().unwrap()
}

/// Sends a chat request with `key`, returns status and body text.
async fn chat_raw(gw: &Gateway, key: &str, body: Value) -> (u16, String) {
    let r = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn fixture_config(a: &wiremock::MockServer, b: &wiremock::MockServer) -> Config {
    config(
        vec![openai("a1", "a", a), openai("b1", "b", b)],
        RouterSettings {
            num_retries: Some(0),
            disable_cooldowns: Some(true),
            fallbacks: Some(vec![FallbackRule {
                group: "a".into(),
                targets: vec!["b".into()],
            }]),
            ..Default::default()
        },
    )
}

/// Everything that handles a key, once; returns every key minted and every error body seen.
async fn exercise(gw: &Gateway) -> (Vec<String>, Vec<String>) {
    let mut keys = Vec::new();
    let mut bodies = Vec::new();
    let ok = generate(gw, json!({"key_alias": "ok", "rpm_limit": 2})).await;
    let narrow = generate(gw, json!({"key_alias": "narrow", "models": ["a"]})).await;
    let broke = generate(gw, json!({"key_alias": "broke", "max_budget": 0})).await;
    let blocked = generate(gw, json!({"key_alias": "blocked", "blocked": true})).await;
    keys.extend([ok.clone(), narrow.clone(), broke.clone(), blocked.clone()]);

    // Served after a fallback a -> b; a fallback the key may not use (debug log).
    let (s, body) = chat_raw(gw, &ok, chat_body("a")).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = chat_raw(gw, &narrow, chat_body("a")).await;
    assert_eq!(s, 500, "{body}");
    bodies.push(body);
    // Streaming through the fallback.
    let mut stream = chat_body("a");
    stream["stream"] = json!(true);
    let (s, body) = chat_raw(gw, &ok, stream).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("from b"), "{body}");
    // Rate limit (rpm 2), budget, blocked, wrong secret, unknown key, malformed key.
    let (s, body) = chat_raw(gw, &ok, chat_body("b")).await;
    assert_eq!(s, 429, "{body}");
    bodies.push(body);
    let (s, body) = chat_raw(gw, &broke, chat_body("b")).await;
    assert!(s == 400 || s == 429, "{s} {body}");
    bodies.push(body);
    let (s, body) = chat_raw(gw, &blocked, chat_body("b")).await;
    assert!(s == 401 || s == 403, "{s} {body}");
    bodies.push(body);
    let wrong = format!(
        "{}{}",
        &narrow[..narrow.len() - 4],
        if narrow.ends_with("zzzz") {
            "yyyy"
        } else {
            "zzzz"
        }
    );
    keys.push(wrong.clone());
    let (s, body) = chat_raw(gw, &wrong, chat_body("a")).await;
    assert_eq!(s, 401, "{body}");
    bodies.push(body);
    let legacy = "sk-legacy-never-issued-0123456789abcdef".to_string();
    keys.push(legacy.clone());
    let (s, body) = chat_raw(gw, &legacy, chat_body("a")).await;
    assert_eq!(s, 401, "{body}");
    bodies.push(body);
    // Disallowed model; no fallback and an upstream error reaching the client.
    let (s, body) = chat_raw(gw, &narrow, chat_body("b")).await;
    assert_eq!(s, 403, "{body}");
    bodies.push(body);
    let mut no_fallback = chat_body("a");
    no_fallback["disable_fallbacks"] = json!(true);
    let (s, body) = chat_raw(gw, MASTER, no_fallback).await;
    assert_eq!(s, 500, "{body}");
    bodies.push(body);

    // Admin paths that take a key: info by the full key, update, regenerate, delete.
    let (s, v) = admin_get(gw, &format!("/key/info?key={narrow}"), MASTER).await;
    assert_eq!(s, 200, "{v}");
    bodies.push(v.to_string());
    let (s, v) = admin_post(
        gw,
        "/key/update",
        MASTER,
        json!({"key": narrow, "rpm_limit": 9}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    bodies.push(v.to_string());
    let (s, v) = admin_post(gw, "/key/regenerate", MASTER, json!({"key": narrow})).await;
    assert_eq!(s, 200, "{v}");
    let fresh = v["key"].as_str().unwrap().to_string();
    keys.push(fresh.clone());
    let (s, body) = chat_raw(gw, &narrow, chat_body("a")).await;
    assert_eq!(s, 401, "{body}");
    bodies.push(body);
    let (s, v) = admin_get(gw, &format!("/key/info?key={fresh}"), MASTER).await;
    assert_eq!(s, 200, "{v}");
    bodies.push(v.to_string());
    // A virtual key on an admin route.
    let (s, v) = admin_post(gw, "/key/generate", &fresh, json!({})).await;
    assert_eq!(s, 403, "{v}");
    bodies.push(v.to_string());
    let (s, v) = admin_post(gw, "/key/delete", MASTER, json!({"keys": [fresh, ok]})).await;
    assert_eq!(s, 200, "{v}");
    bodies.push(v.to_string());
    let (s, body) = chat_raw(gw, &ok, chat_body("b")).await;
    assert_eq!(s, 401, "{body}");
    bodies.push(body);
    assert!(
        gw.state
            .flush_spend(std::time::Duration::from_secs(5))
            .await
    );
    (keys, bodies)
}

#[tokio::test]
async fn keys_never_appear_in_logs_or_error_bodies() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        for json_format in [false, true] {
            let captured = Captured::default();
            let filter = tracing_subscriber::EnvFilter::new(
                "switchyard=trace,tower_http=trace,axum=trace,sqlx=trace,warn",
            );
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(captured.clone())
                .with_ansi(false);
            // The test runtime is single-threaded: the gateway's tasks run on this thread, so a
            // thread-local subscriber sees all of them.
            let dispatch: tracing::Dispatch = if json_format {
                builder.json().finish().into()
            } else {
                builder.finish().into()
            };
            let _guard = tracing::dispatcher::set_default(&dispatch);

            let a = upstream(openai_error(500, "api_error", None, "a is down")).await;
            let b = MockServer::start().await;
            Mock::given(method("POST"))
                .and(body_partial_json(json!({"stream": true})))
                .respond_with(sse(&[chunk("from b", Some("stop"))], true))
                .with_priority(1)
                .mount(&b)
                .await;
            Mock::given(method("POST"))
                .respond_with(
                    wiremock::ResponseTemplate::new(200).set_body_json(completion("m", "from b")),
                )
                .with_priority(2)
                .mount(&b)
                .await;
            let gw = start_with_store(
                fixture_config(&a, &b),
                Some(MASTER),
                Some(Arc::clone(&store)),
            )
            .await;
            let (keys, bodies) = exercise(&gw).await;
            drop(gw);

            let logs = captured.text();
            // The capture works: the skipped fallback of the narrow key is logged at debug.
            assert!(
                logs.contains("not allowed for this key"),
                "{backend}: nothing captured?\n{logs}"
            );
            for key in &keys {
                let secret = secret_part(key);
                assert!(secret.len() >= 8, "{key}");
                assert!(
                    !logs.contains(key.as_str()),
                    "{backend}: a key is in the logs"
                );
                assert!(
                    !logs.contains(secret),
                    "{backend}: a key's secret is in the logs"
                );
                for body in &bodies {
                    assert!(
                        !body.contains(secret),
                        "{backend}: a key's secret is in a response body: {body}"
                    );
                }
            }
            assert!(
                !logs.contains(MASTER),
                "{backend}: the master key is logged"
            );
            assert!(
                !logs.contains("sk-upstream-secret"),
                "{backend}: an upstream key is logged"
            );
            // The next round mints the same aliases again.
            let gw = start_with_store(
                fixture_config(&a, &b),
                Some(MASTER),
                Some(Arc::clone(&store)),
            )
            .await;
            let (s, v) = admin_post(
                &gw,
                "/key/delete",
                MASTER,
                json!({"key_aliases": ["broke", "blocked"]}),
            )
            .await;
            assert_eq!(s, 200, "{backend}: {v}");
        }
    }
    drop_schema(pg).await;
}
