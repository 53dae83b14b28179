//! Virtual keys end to end: admin API over a real store (SQLite in memory, and PostgreSQL
//! when `SWITCHYARD_TEST_POSTGRES_URL` is set), key-level fallbacks resolved Key > Team >
//! Global, provenance in `/key/info`, cache invalidation and admin-route protection.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard::config::{Config, RouterSettings};
use switchyard::store::{self, Store};
use wiremock::MockServer;

use crate::harness::*;

pub(crate) const MASTER: &str = "sk-master-test-key";
const POSTGRES_ENV: &str = "SWITCHYARD_TEST_POSTGRES_URL";

/// A PostgreSQL schema made for one test, dropped by [`drop_schema`] when the test passes.
pub(crate) struct PgSchema {
    admin: sqlx::PgPool,
    schema: String,
}

pub(crate) async fn drop_schema(pg: Option<PgSchema>) {
    use sqlx::Executor;
    if let Some(pg) = pg {
        // A gateway of the test may still hold the schema's tables (its spend writer, say):
        // a deadlock with it is retried, a bounded number of times.
        let sql = format!("DROP SCHEMA \"{}\" CASCADE", pg.schema);
        for attempt in 1..=5 {
            match pg.admin.execute(sql.as_str()).await {
                Ok(_) => return,
                Err(e) if attempt < 5 => {
                    eprintln!("drop schema {}: {e}; retrying", pg.schema);
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => panic!("drop schema {}: {e}", pg.schema),
            }
        }
    }
}

/// Every store the tests run on: SQLite in memory always, PostgreSQL (a fresh schema) when
/// `SWITCHYARD_TEST_POSTGRES_URL` is set.
pub(crate) async fn stores() -> (Vec<(&'static str, Arc<dyn Store>)>, Option<PgSchema>) {
    stores_with(store::StoreOptions::default()).await
}

/// [`stores`] opened with `options` (a salt key for credentials, say).
pub(crate) async fn stores_with(
    options: store::StoreOptions,
) -> (Vec<(&'static str, Arc<dyn Store>)>, Option<PgSchema>) {
    let mut out: Vec<(&'static str, Arc<dyn Store>)> = vec![(
        "sqlite",
        store::connect_with("sqlite::memory:", options.clone())
            .await
            .unwrap(),
    )];
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => {
            use sqlx::Executor;
            let schema = format!("sy_keys_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&url).await.unwrap();
            admin
                .execute(format!("CREATE SCHEMA \"{schema}\"").as_str())
                .await
                .unwrap();
            let sep = if url.contains('?') { '&' } else { '?' };
            let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
            out.push((
                "postgres",
                store::connect_with(&scoped, options).await.unwrap(),
            ));
            return (out, Some(PgSchema { admin, schema }));
        }
        _ => eprintln!("postgres: skipped ({POSTGRES_ENV} not set)"),
    }
    (out, None)
}

pub(crate) struct Fixture {
    pub(crate) gw: Gateway,
    _a: MockServer,
    pub(crate) b: MockServer,
    pub(crate) c: MockServer,
}

/// Groups `a` (always 500), `b` and `c` (answer "from b" / "from c"), no retries.
pub(crate) async fn fixture(store: Arc<dyn Store>) -> Fixture {
    let a = upstream(openai_error(500, "api_error", None, "a is down")).await;
    let b = ok_upstream("from b").await;
    let c = ok_upstream("from c").await;
    let cfg: Config = config(
        vec![
            openai("a1", "a", &a),
            openai("b1", "b", &b),
            openai("c1", "c", &c),
        ],
        RouterSettings {
            num_retries: Some(0),
            disable_cooldowns: Some(true),
            ..Default::default()
        },
    );
    let gw = start_with_store(cfg, Some(MASTER), Some(store)).await;
    Fixture { gw, _a: a, b, c }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub(crate) async fn admin_post(gw: &Gateway, path: &str, token: &str, body: Value) -> (u16, Value) {
    let req = client()
        .post(format!("{}{path}", gw.url))
        .bearer_auth(token);
    status_json(req.json(&body)).await
}

pub(crate) async fn admin_get(gw: &Gateway, path: &str, token: &str) -> (u16, Value) {
    status_json(client().get(format!("{}{path}", gw.url)).bearer_auth(token)).await
}

/// Sends `req`; the status and the JSON body (`null` when it is not JSON).
pub(crate) async fn status_json(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn chat(gw: &Gateway, key: &str, model: &str) -> (u16, String) {
    let r = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(&chat_body(model))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, content)
}

pub(crate) async fn generate(gw: &Gateway, body: Value) -> String {
    let (status, v) = admin_post(gw, "/key/generate", MASTER, body).await;
    assert_eq!(status, 200, "{v}");
    v["key"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn key_level_fallbacks_override_the_team_and_take_effect_at_once() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let f = fixture(store).await;
        let gw = &f.gw;
        let (s, v) = admin_post(
            gw,
            "/team/new",
            MASTER,
            json!({"team_id": "t1", "router_settings": {"fallbacks": [{"a": ["b"]}]}}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        let key_c = generate(
            gw,
            json!({"team_id": "t1", "key_alias": "k-c",
                   "router_settings": {"fallbacks": [{"a": ["c"]}]}}),
        )
        .await;
        let key_team = generate(gw, json!({"team_id": "t1", "key_alias": "k-team"})).await;
        let key_none = generate(
            gw,
            json!({"team_id": "t1", "key_alias": "k-none", "router_settings": {"fallbacks": []}}),
        )
        .await;

        assert_eq!(
            chat(gw, &key_c, "a").await,
            (200, "from c".into()),
            "{backend}"
        );
        assert_eq!(
            chat(gw, &key_team, "a").await,
            (200, "from b".into()),
            "{backend}"
        );
        let (status, _) = chat(gw, &key_none, "a").await;
        assert_eq!(
            status, 500,
            "{backend}: the upstream error reaches the client"
        );

        // Provenance.
        let (s, info) = admin_get(gw, "/key/info?key_alias=k-c", MASTER).await;
        assert_eq!(s, 200, "{backend}: {info}");
        let eff = &info["effective_router_settings"];
        assert_eq!(eff["fallbacks"]["source"], "key");
        assert_eq!(eff["fallbacks"]["value"], json!([{"a": ["c"]}]));
        assert_eq!(eff["num_retries"], json!({"value": 0, "source": "global"}));
        assert_eq!(eff["max_fallbacks"]["source"], "default");
        let (_, info) = admin_get(gw, "/key/info?key_alias=k-team", MASTER).await;
        assert_eq!(
            info["effective_router_settings"]["fallbacks"]["source"],
            "team"
        );
        let (_, info) = admin_get(gw, "/key/info?key_alias=k-none", MASTER).await;
        assert_eq!(
            info["effective_router_settings"]["fallbacks"],
            json!({"value": [], "source": "key"})
        );

        // Updating the key's settings takes effect on the next request.
        let (s, v) = admin_post(
            gw,
            "/key/update",
            MASTER,
            json!({"key": key_team, "router_settings": {"fallbacks": [{"a": ["c"]}]}}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(
            chat(gw, &key_team, "a").await,
            (200, "from c".into()),
            "{backend}"
        );
        // Clearing it returns to inheriting from the team.
        let (s, _) = admin_post(
            gw,
            "/key/update",
            MASTER,
            json!({"key": key_team, "router_settings": null}),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(
            chat(gw, &key_team, "a").await,
            (200, "from b".into()),
            "{backend}"
        );
        // A team change reaches its keys too.
        let (s, _) = admin_post(
            gw,
            "/team/update",
            MASTER,
            json!({"team_id": "t1", "router_settings": {"fallbacks": [{"a": ["c"]}]}}),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(
            chat(gw, &key_team, "a").await,
            (200, "from c".into()),
            "{backend}"
        );
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn a_key_skips_fallback_targets_it_may_not_use() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let f = fixture(store).await;
        let key = generate(
            &f.gw,
            json!({"models": ["a", "b"], "router_settings": {"fallbacks": [{"a": ["c", "b"]}]}}),
        )
        .await;
        assert_eq!(
            chat(&f.gw, &key, "a").await,
            (200, "from b".into()),
            "{backend}"
        );
        assert_eq!(
            calls(&f.c).await,
            0,
            "{backend}: c is not allowed for this key"
        );
        assert_eq!(calls(&f.b).await, 1);
        let (status, _) = chat(&f.gw, &key, "c").await;
        assert!(
            status == 401 || status == 403 || status == 404,
            "{backend}: {status}"
        );
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn access_rules_for_keys_and_admin_routes() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let f = fixture(store).await;
        let gw = &f.gw;
        let key = generate(gw, json!({"key_alias": "plain"})).await;
        assert_eq!(chat(gw, &key, "b").await.0, 200, "{backend}");
        // A virtual key never reaches admin routes.
        for path in ["/key/generate", "/key/update", "/key/delete", "/team/new"] {
            let (s, v) = admin_post(gw, path, &key, json!({})).await;
            assert_eq!(s, 403, "{backend} {path}: {v}");
        }
        let (s, _) = admin_get(gw, "/key/list", &key).await;
        assert_eq!(s, 403);
        let (s, _) = admin_get(gw, "/key/list", "sk-nope").await;
        assert_eq!(s, 401);
        // Unknown, blocked and deleted keys all get the same 401.
        assert_eq!(chat(gw, "sk-sy-unknownid00-x", "b").await.0, 401);
        let (s, _) = admin_post(gw, "/key/block", MASTER, json!({"key": key})).await;
        assert_eq!(s, 200);
        assert_eq!(chat(gw, &key, "b").await.0, 401, "{backend}: blocked");
        let (s, _) = admin_post(gw, "/key/unblock", MASTER, json!({"key": key})).await;
        assert_eq!(s, 200);
        assert_eq!(chat(gw, &key, "b").await.0, 200, "{backend}: unblocked");
        // Regenerate: the old secret stops working, the new one works.
        let (s, v) = admin_post(gw, "/key/regenerate", MASTER, json!({"key": key})).await;
        assert_eq!(s, 200);
        let new_key = v["key"].as_str().unwrap().to_string();
        assert_eq!(chat(gw, &key, "b").await.0, 401);
        assert_eq!(chat(gw, &new_key, "b").await.0, 200);
        let (s, _) = admin_post(gw, "/key/delete", MASTER, json!({"key_aliases": ["plain"]})).await;
        assert_eq!(s, 200);
        assert_eq!(chat(gw, &new_key, "b").await.0, 401, "{backend}: deleted");
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn bad_admin_input_is_refused_and_nothing_is_saved() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let f = fixture(store).await;
        let gw = &f.gw;
        let (s, v) = admin_post(
            gw,
            "/key/generate",
            MASTER,
            json!({"key_alias": "x", "bogus": 1}),
        )
        .await;
        assert_eq!(s, 400, "{backend}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("bogus"),
            "{v}"
        );
        let (s, v) = admin_post(
            gw,
            "/key/generate",
            MASTER,
            json!({"key_alias": "x", "router_settings": {"fallbacks": [{"a": ["nope"]}]}}),
        )
        .await;
        assert_eq!(s, 400, "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("nope") && msg.contains("a, b, c"), "{msg}");
        let (s, v) = admin_post(
            gw,
            "/team/new",
            MASTER,
            json!({"router_settings": {"fallbacks": [{"a": ["b"]}, {"b": ["a"]}]}}),
        )
        .await;
        assert_eq!(s, 400, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("cycle"),
            "{v}"
        );
        let (_, list) = admin_get(gw, "/key/list", MASTER).await;
        assert_eq!(list["total_count"], 0, "{backend}: nothing saved");
        let (_, list) = admin_get(gw, "/team/list", MASTER).await;
        assert_eq!(list["total_count"], 0, "{backend}: nothing saved");
        let (s, v) = admin_post(gw, "/key/generate", MASTER, json!({"team_id": "ghost"})).await;
        assert_eq!(s, 400, "{v}");
        generate(gw, json!({"key_alias": "dup"})).await;
        let (s, v) = admin_post(gw, "/key/generate", MASTER, json!({"key_alias": "dup"})).await;
        assert_eq!(s, 409, "{backend}: {v}");
        assert!(v["error"]["message"].is_string());
        let (s, _) = admin_get(gw, "/key/info?key_alias=missing", MASTER).await;
        assert_eq!(s, 404);
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn the_secret_only_appears_in_generate_and_regenerate() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let f = fixture(store).await;
        let gw = &f.gw;
        admin_post(gw, "/team/new", MASTER, json!({"team_id": "t"})).await;
        let key = generate(gw, json!({"key_alias": "secret", "team_id": "t"})).await;
        let secret_part = key.rsplit('-').next().unwrap().to_string();
        let mut bodies = vec![
            admin_get(gw, "/key/info?key_alias=secret", MASTER).await.1,
            admin_get(gw, &format!("/key/info?key={key}"), MASTER)
                .await
                .1,
            admin_get(gw, "/key/list", MASTER).await.1,
            admin_get(gw, "/key/list?team_id=t&key_alias=sec", MASTER)
                .await
                .1,
            admin_get(gw, "/team/info?team_id=t", MASTER).await.1,
            admin_post(
                gw,
                "/key/update",
                MASTER,
                json!({"key": key, "tags": ["x"]}),
            )
            .await
            .1,
            admin_post(gw, "/key/block", MASTER, json!({"key": key}))
                .await
                .1,
            admin_post(gw, "/key/unblock", MASTER, json!({"key": key}))
                .await
                .1,
        ];
        let (_, list) = admin_get(gw, "/key/list?key_alias=sec", MASTER).await;
        assert_eq!(list["total_count"], 1, "{backend}: {list}");
        let r = client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(&chat_body("a"))
            .send()
            .await
            .unwrap();
        bodies.push(r.json().await.unwrap_or(Value::Null));
        bodies.push(
            admin_post(gw, "/key/delete", MASTER, json!({"keys": [key]}))
                .await
                .1,
        );
        for b in bodies {
            assert!(
                !b.to_string().contains(&secret_part),
                "{backend}: secret leaked in {b}"
            );
        }
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn rpm_limit_is_enforced_per_key_with_retry_after() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let f = fixture(store).await;
        let limited = generate(&f.gw, json!({"rpm_limit": 2})).await;
        let other = generate(&f.gw, json!({})).await;
        assert_eq!(chat(&f.gw, &limited, "b").await.0, 200, "{backend}");
        assert_eq!(chat(&f.gw, &limited, "b").await.0, 200, "{backend}");
        let r = client()
            .post(format!("{}/v1/chat/completions", f.gw.url))
            .bearer_auth(&limited)
            .json(&chat_body("b"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{backend}");
        let retry: u64 = header(&r, "retry-after").parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(
            chat(&f.gw, &other, "b").await.0,
            200,
            "{backend}: other keys unaffected"
        );
    }
    drop_schema(pg).await;
}

/// `(status, error code)` of a chat request.
async fn chat_error_code(gw: &Gateway, key: &str, model: &str) -> (u16, String) {
    let r = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(&chat_body(model))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        v["error"]["code"].as_str().unwrap_or_default().into(),
    )
}

/// A state document with only `spec`, as `/config/import` takes it.
pub(crate) fn import_body(spec: Value) -> Value {
    let doc = json!({"schema_version": 1, "kind": "switchyard/state",
                     "source": {"version": "0.0.0"}, "secrets": "redacted", "spec": spec});
    json!({"document": doc.to_string()})
}

// Issue 4: access groups of runtime models are honoured at once (no restart), dropped with the
// model, and re-checked on every fallback hop.
#[tokio::test]
async fn runtime_model_access_groups_apply_at_once_and_leave_with_the_model() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let f = fixture(store).await;
        let gw = &f.gw;
        let key = generate(
            gw,
            json!({"models": ["a", "ag-c"], "router_settings": {"fallbacks": [{"a": ["c"]}]}}),
        )
        .await;
        // Group c is not the key's yet: asked directly, and as a fallback of a.
        assert_eq!(
            chat_error_code(gw, &key, "c").await,
            (403, "model_not_allowed".into()),
            "{backend}"
        );
        assert_eq!(chat(gw, &key, "a").await.0, 500, "{backend}");
        assert_eq!(calls(&f.c).await, 0, "{backend}: the hop to c is skipped");

        // A runtime deployment of group c in access group ag-c opens c to the key at once.
        let (s, v) = admin_post(
            gw,
            "/model/new",
            MASTER,
            json!({"model_name": "c",
                   "litellm_params": {"model": "openai/gpt-c", "api_base": format!("{}/v1", f.c.uri())},
                   "model_info": {"id": "c2", "access_groups": ["ag-c"]}}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(
            chat(gw, &key, "c").await,
            (200, "from c".into()),
            "{backend}"
        );
        assert_eq!(
            chat(gw, &key, "a").await,
            (200, "from c".into()),
            "{backend}: the fallback hop to c is allowed now"
        );
        let served = calls(&f.c).await;
        assert_eq!(served, 2, "{backend}");

        // Deleted: c1 (config file) still serves group c, but not to this key.
        let (s, v) = admin_post(gw, "/model/delete", MASTER, json!({"id": "c2"})).await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(
            chat_error_code(gw, &key, "c").await,
            (403, "model_not_allowed".into()),
            "{backend}"
        );
        assert_eq!(chat(gw, &key, "a").await.0, 500, "{backend}");
        assert_eq!(
            calls(&f.c).await,
            served,
            "{backend}: the hop is re-checked"
        );

        // The same through a state import: the table and the keys follow it.
        let (s, v) = admin_post(
            gw,
            "/config/import",
            MASTER,
            import_body(json!({"models": [{"model_id": "c3", "model_name": "c",
                "litellm_params": {"model": "openai/gpt-c", "api_base": format!("{}/v1", f.c.uri())},
                "model_info": {"access_groups": ["ag-c"]}}]})),
        )
        .await;
        assert_eq!((s, &v["applied"]), (200, &json!(true)), "{backend}: {v}");
        assert_eq!(
            chat(gw, &key, "c").await,
            (200, "from c".into()),
            "{backend}"
        );
        // A key without the access group still may not use c.
        let other = generate(gw, json!({"models": ["a"]})).await;
        assert_eq!(
            chat_error_code(gw, &other, "c").await,
            (403, "model_not_allowed".into()),
            "{backend}"
        );
    }
    drop_schema(pg).await;
}

// Two instances on one store (DESIGN §2.5): a change made through one reaches the other's
// key cache, effective settings and routing table within seconds (the watcher polls every
// second), not when its one-minute key cache expires or at its next restart.
#[tokio::test]
async fn changes_through_one_instance_reach_another_on_the_same_store() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let f = fixture(Arc::clone(&store)).await;
        let one = &f.gw;
        let other = fixture(store).await;
        let two = &other.gw;
        let deadline = Duration::from_secs(5);

        let key = generate(one, json!({"key_alias": "shared"})).await;
        // The other instance resolves the key from the store, and caches it.
        assert_eq!(
            chat(two, &key, "b").await,
            (200, "from b".into()),
            "{backend}"
        );
        assert_eq!(
            chat(two, &key, "a").await.0,
            500,
            "{backend}: a has no fallback yet"
        );

        // Fallbacks given to the key through one instance apply on the other.
        let (s, v) = admin_post(
            one,
            "/key/update",
            MASTER,
            json!({"key": key, "router_settings": {"fallbacks": [{"a": ["c"]}]}}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert!(
            eventually(deadline, || async {
                chat(two, &key, "a").await == (200, "from c".into())
            })
            .await,
            "{backend}: the other instance still routes with the key's old settings"
        );

        // A model added through one instance serves on the other.
        assert_eq!(chat_error_code(two, &key, "d").await.0, 404, "{backend}");
        let (s, v) = admin_post(
            one,
            "/model/new",
            MASTER,
            json!({"model_name": "d",
                   "litellm_params": {"model": "openai/gpt-d", "api_base": format!("{}/v1", other.b.uri())},
                   "model_info": {"id": "d1"}}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert!(
            eventually(deadline, || async {
                chat(two, &key, "d").await == (200, "from b".into())
            })
            .await,
            "{backend}: the other instance never loaded the runtime model"
        );

        // A key blocked through one instance is refused by the other.
        let (s, v) = admin_post(one, "/key/block", MASTER, json!({"key": key})).await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert!(
            eventually(deadline, || async { chat(two, &key, "b").await.0 == 401 }).await,
            "{backend}: the other instance still serves a blocked key from its cache"
        );
    }
    drop_schema(pg).await;
}

// Issue 4: global router settings saved at runtime (a state import's `spec.router_settings`)
// apply on the next request, over the config file's field by field, reported as `global`.
#[tokio::test]
async fn runtime_global_router_settings_apply_over_the_config_files() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let f = fixture(Arc::clone(&store)).await;
        let gw = &f.gw;
        let key = generate(gw, json!({"key_alias": "plain"})).await;
        let key_own = generate(
            gw,
            json!({"key_alias": "own", "router_settings": {"fallbacks": [{"a": ["c"]}]}}),
        )
        .await;
        assert_eq!(
            chat(gw, MASTER, "a").await.0,
            500,
            "{backend}: no fallbacks yet"
        );
        assert_eq!(chat(gw, &key, "a").await.0, 500, "{backend}");

        let (s, v) = admin_post(
            gw,
            "/config/import",
            MASTER,
            import_body(json!({"router_settings": {"fallbacks": [{"a": ["b"]}]}})),
        )
        .await;
        assert_eq!((s, &v["applied"]), (200, &json!(true)), "{backend}: {v}");
        let r = client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(&chat_body("a"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{backend}: the cached key resolves afresh");
        assert_eq!(header(&r, "x-switchyard-settings-source"), "global");
        assert_eq!(
            chat(gw, MASTER, "a").await,
            (200, "from b".into()),
            "{backend}: the master key too"
        );
        assert_eq!(
            chat(gw, &key_own, "a").await,
            (200, "from c".into()),
            "{backend}: a key's own field still wins"
        );
        let (s, info) = admin_get(gw, "/key/info?key_alias=plain", MASTER).await;
        assert_eq!(s, 200, "{backend}: {info}");
        let eff = &info["effective_router_settings"];
        assert_eq!(
            eff["fallbacks"],
            json!({"value": [{"a": ["b"]}], "source": "global"})
        );
        // Field by field: the config file's num_retries is kept, as global.
        assert_eq!(eff["num_retries"], json!({"value": 0, "source": "global"}));
        let (_, export) = admin_get(gw, "/config/export?format=json", MASTER).await;
        assert_eq!(
            export["spec"]["router_settings"],
            json!({"fallbacks": [{"a": ["b"]}]}),
            "{backend}: {export}"
        );

        // A gateway started on the same store applies them from the start.
        let again = start_with_store(
            gw.state.config.as_ref().clone(),
            Some(MASTER),
            Some(Arc::clone(&store)),
        )
        .await;
        assert_eq!(
            chat(&again, MASTER, "a").await,
            (200, "from b".into()),
            "{backend}"
        );
        assert_eq!(calls(&f.b).await, 3, "{backend}");
    }
    drop_schema(pg).await;
}

// Issue 4: `/user/new` with an unknown second team is a 400 naming it, and nothing is written.
#[tokio::test]
async fn user_new_with_an_unknown_team_writes_nothing() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let f = fixture(store).await;
        let gw = &f.gw;
        let (s, v) = admin_post(gw, "/team/new", MASTER, json!({"team_id": "t1"})).await;
        assert_eq!(s, 200, "{backend}: {v}");
        let (s, v) = admin_post(
            gw,
            "/user/new",
            MASTER,
            json!({"user_id": "u1", "teams": ["t1", "ghost"]}),
        )
        .await;
        assert_eq!(s, 400, "{backend}: {v}");
        assert_eq!(v["error"]["param"], "teams", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("\"ghost\""),
            "{v}"
        );
        let (s, _) = admin_get(gw, "/user/info?user_id=u1", MASTER).await;
        assert_eq!(s, 404, "{backend}: no user left behind");
        let (_, t) = admin_get(gw, "/team/info?team_id=t1", MASTER).await;
        assert_eq!(t["team_info"]["members"], json!([]), "{backend}: {t}");

        let (s, v) = admin_post(
            gw,
            "/user/new",
            MASTER,
            json!({"user_id": "u1", "teams": ["t1"]}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        let (_, t) = admin_get(gw, "/team/info?team_id=t1", MASTER).await;
        assert_eq!(t["team_info"]["members"][0]["user_id"], "u1", "{t}");
    }
    drop_schema(pg).await;
}
