//! Admin API for organizations, users, budgets and credentials over a real store (SQLite, and
//! PostgreSQL when `SWITCHYARD_TEST_POSTGRES_URL` is set): LiteLLM paths and fields, bad input
//! refused with the field named and nothing written, conflicts, audit entries, values of
//! credentials never returned.

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::{json, Value};
use switchyard::config::{Config, RouterSettings};
use switchyard::store::{self, AuditFilter, ObjectKind, Page, SecretCipher, Store};

use crate::harness::*;
use crate::keys::{admin_get, admin_post, drop_schema, generate, stores, stores_with, MASTER};

const SALT: &str = "test-salt-key-for-credentials-0123456789";
const UPSTREAM_SECRET: &str = "sk-upstream-credential-value-987654321";

async fn gateway(store: Arc<dyn Store>) -> (Gateway, wiremock::MockServer) {
    let up = ok_upstream("ok").await;
    let cfg: Config = config(vec![openai("a1", "a", &up)], RouterSettings::default());
    (start_with_store(cfg, Some(MASTER), Some(store)).await, up)
}

fn param(v: &Value) -> &str {
    v["error"]["param"].as_str().unwrap_or_default()
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

async fn audit_count(store: &dyn Store, kind: ObjectKind, id: &str) -> u64 {
    store
        .audit_log(
            &AuditFilter {
                object_kind: Some(kind),
                object_id: Some(id.into()),
                actor: None,
            },
            Page::default(),
        )
        .await
        .unwrap()
        .total
}

#[tokio::test]
async fn budgets_are_managed_and_bad_input_writes_nothing() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let (gw, _up) = gateway(Arc::clone(&store)).await;
        let gw = &gw;
        let (s, v) = admin_post(
            gw,
            "/budget/new",
            MASTER,
            json!({"budget_id": "b1", "max_budget": 10.5, "budget_duration": "30d", "rpm_limit": 100}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(v["max_budget"], 10.5);
        assert!(v["budget_reset_at"].is_string(), "{backend}: {v}");

        let (s, v) = admin_post(gw, "/budget/new", MASTER, json!({"budget_id": "b1"})).await;
        assert_eq!(s, 409, "{backend}: duplicate {v}");

        for (body, field) in [
            (json!({"budget_id": "neg", "max_budget": -1}), "max_budget"),
            (json!({"budget_id": "neg", "rpm_limit": "ten"}), "rpm_limit"),
            (json!({"budget_id": "neg", "max_budgett": 1}), "max_budgett"),
            (
                json!({"budget_id": "neg", "budget_duration": "soon"}),
                "budget_duration",
            ),
        ] {
            let (s, v) = admin_post(gw, "/budget/new", MASTER, body.clone()).await;
            assert_eq!(s, 400, "{backend}: {body} -> {v}");
            assert!(
                message(&v).contains(field) || param(&v) == field,
                "{backend}: {field} not named in {v}"
            );
        }
        assert!(
            store.budget("neg").await.unwrap().is_none(),
            "{backend}: nothing written"
        );

        let (s, v) = admin_post(
            gw,
            "/budget/update",
            MASTER,
            json!({"budget_id": "b1", "max_budget": 20, "rpm_limit": null}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(v["max_budget"], 20.0);
        assert!(v["rpm_limit"].is_null());
        let (s, v) = admin_post(
            gw,
            "/budget/update",
            MASTER,
            json!({"budget_id": "b1", "soft_budget": -3}),
        )
        .await;
        assert_eq!((s, param(&v)), (400, "soft_budget"), "{backend}: {v}");

        let (s, v) = admin_post(gw, "/budget/info", MASTER, json!({"budgets": ["b1"]})).await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(v[0]["budget_id"], "b1");
        assert!(v[0]["soft_budget"].is_null(), "{backend}: update refused");
        let (s, v) = admin_get(gw, "/budget/info?budget_id=b1", MASTER).await;
        assert_eq!((s, v["max_budget"].clone()), (200, json!(20.0)));
        let (s, v) = admin_get(gw, "/budget/info?budget_id=nope", MASTER).await;
        assert_eq!(s, 404, "{backend}: {v}");
        admin_post(gw, "/budget/new", MASTER, json!({"budget_id": "b2"})).await;
        let (s, v) = admin_get(gw, "/budget/list", MASTER).await;
        assert_eq!(s, 200);
        let ids: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["budget_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["b1", "b2"], "{backend}");

        let (s, v) = admin_post(gw, "/budget/delete", MASTER, json!({"id": "b2"})).await;
        assert_eq!(s, 200, "{backend}: {v}");
        let (s, _) = admin_post(gw, "/budget/delete", MASTER, json!({"id": "b2"})).await;
        assert_eq!(s, 404, "{backend}");
        // create, update, create b2, delete b2: the refused calls left no entry.
        assert_eq!(
            audit_count(store.as_ref(), ObjectKind::Budget, "b1").await,
            2
        );
        assert_eq!(
            audit_count(store.as_ref(), ObjectKind::Budget, "neg").await,
            0
        );
        gw.state
            .flush_spend(std::time::Duration::from_secs(5))
            .await;
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn organizations_reference_budgets_and_refuse_unknown_ones() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let (gw, _up) = gateway(Arc::clone(&store)).await;
        let gw = &gw;
        admin_post(
            gw,
            "/budget/new",
            MASTER,
            json!({"budget_id": "b1", "max_budget": 100}),
        )
        .await;
        let (s, v) = admin_post(
            gw,
            "/organization/new",
            MASTER,
            json!({"organization_id": "o1", "organization_alias": "Org One", "budget_id": "b1",
                   "models": ["a"], "metadata": {"cost_center": "42"}}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(v["organization_alias"], "Org One");

        let (s, v) = admin_post(
            gw,
            "/organization/new",
            MASTER,
            json!({"organization_id": "o2", "organization_alias": "x", "budget_id": "nope"}),
        )
        .await;
        assert_eq!((s, param(&v)), (400, "budget_id"), "{backend}: {v}");
        let (s, _) = admin_get(gw, "/organization/info?organization_id=o2", MASTER).await;
        assert_eq!(s, 404, "{backend}: nothing written");

        let (s, v) = admin_post(
            gw,
            "/organization/new",
            MASTER,
            json!({"organization_id": "o2", "organization_alias": 7}),
        )
        .await;
        assert_eq!(s, 400, "{backend}: {v}");
        assert!(message(&v).contains("organization_alias"), "{backend}: {v}");
        let (s, v) = admin_post(
            gw,
            "/organization/new",
            MASTER,
            json!({"organization_id": "o2"}),
        )
        .await;
        assert_eq!(s, 400, "{backend}: missing alias {v}");

        // Inline budget fields make the organization's budget; a conflict writes neither.
        let (s, v) = admin_post(
            gw,
            "/organization/new",
            MASTER,
            json!({"organization_id": "o1", "organization_alias": "dup", "max_budget": 5}),
        )
        .await;
        assert_eq!(s, 409, "{backend}: {v}");
        assert!(
            store.budget("o1-budget").await.unwrap().is_none(),
            "{backend}"
        );
        let (s, v) = admin_post(
            gw,
            "/organization/new",
            MASTER,
            json!({"organization_id": "o3", "organization_alias": "Three", "max_budget": 5,
                   "tpm_limit": 1000}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(v["budget_id"], "o3-budget");
        let (s, v) = admin_post(
            gw,
            "/organization/new",
            MASTER,
            json!({"organization_id": "o4", "organization_alias": "Four", "max_budget": -5}),
        )
        .await;
        assert_eq!((s, param(&v)), (400, "max_budget"), "{backend}: {v}");
        assert!(store.budget("o4-budget").await.unwrap().is_none());
        assert!(store.organization("o4").await.unwrap().is_none());

        let (s, v) = admin_post(
            gw,
            "/organization/update",
            MASTER,
            json!({"organization_id": "o1", "organization_alias": "Org 1"}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        let (s, v) = admin_post(
            gw,
            "/organization/update",
            MASTER,
            json!({"organization_id": "o1", "budget_id": "missing"}),
        )
        .await;
        assert_eq!((s, param(&v)), (400, "budget_id"), "{backend}: {v}");
        let (s, v) = admin_get(gw, "/organization/info?organization_id=o1", MASTER).await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(v["organization_alias"], "Org 1");
        assert_eq!(
            v["budget_id"], "b1",
            "{backend}: refused update wrote nothing"
        );
        assert_eq!(v["litellm_budget_table"]["max_budget"], 100.0);
        let (s, v) = admin_get(gw, "/organization/list", MASTER).await;
        assert_eq!(s, 200);
        assert_eq!(v.as_array().unwrap().len(), 2, "{backend}: {v}");

        // References hold: a budget in use, an organization with teams.
        let (s, v) = admin_post(gw, "/budget/delete", MASTER, json!({"id": "b1"})).await;
        assert_eq!(s, 409, "{backend}: {v}");
        let (s, v) = admin_post(
            gw,
            "/team/new",
            MASTER,
            json!({"team_id": "t1", "organization_id": "o1"}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        let (s, v) = admin_post(
            gw,
            "/team/new",
            MASTER,
            json!({"team_id": "t2", "organization_id": "o-missing"}),
        )
        .await;
        assert_eq!((s, param(&v)), (400, "organization_id"), "{backend}: {v}");
        let (s, v) = admin_post(
            gw,
            "/organization/delete",
            MASTER,
            json!({"organization_ids": ["o1"]}),
        )
        .await;
        assert_eq!(s, 409, "{backend}: {v}");
        admin_post(gw, "/team/delete", MASTER, json!({"team_ids": ["t1"]})).await;
        let (s, v) = admin_post(
            gw,
            "/organization/delete",
            MASTER,
            json!({"organization_ids": ["o1", "o3"]}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(v["deleted_organizations"].as_array().unwrap().len(), 2);
        assert_eq!(
            audit_count(store.as_ref(), ObjectKind::Organization, "o1").await,
            3,
            "{backend}: create, update, delete"
        );
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn users_join_teams_own_keys_and_are_listed() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let (gw, _up) = gateway(Arc::clone(&store)).await;
        let gw = &gw;
        admin_post(gw, "/team/new", MASTER, json!({"team_id": "t1"})).await;

        let (s, v) = admin_post(
            gw,
            "/user/new",
            MASTER,
            json!({"user_id": "u1", "teams": ["t1", "nope"]}),
        )
        .await;
        assert_eq!((s, param(&v)), (400, "teams"), "{backend}: {v}");
        assert!(store.user("u1").await.unwrap().is_none(), "{backend}");
        let (s, v) = admin_post(
            gw,
            "/user/new",
            MASTER,
            json!({"user_id": "u1", "max_budget": -0.5}),
        )
        .await;
        assert_eq!((s, param(&v)), (400, "max_budget"), "{backend}: {v}");
        let (s, v) = admin_post(
            gw,
            "/user/new",
            MASTER,
            json!({"user_id": "u1", "user_role": "emperor"}),
        )
        .await;
        assert_eq!(s, 400, "{backend}: {v}");
        assert!(message(&v).contains("user_role"), "{backend}: {v}");

        let (s, v) = admin_post(
            gw,
            "/user/new",
            MASTER,
            json!({"user_id": "u1", "user_email": "ada@example.com", "user_role": "proxy_admin",
                   "max_budget": 3, "teams": ["t1"]}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(v["teams"], json!(["t1"]));
        let (s, _) = admin_post(gw, "/user/new", MASTER, json!({"user_id": "u1"})).await;
        assert_eq!(s, 409, "{backend}");
        admin_post(gw, "/user/new", MASTER, json!({"user_id": "u2"})).await;

        let key = generate(gw, json!({"user_id": "u1", "key_alias": "ada-key"})).await;
        let (s, v) = admin_get(gw, "/user/info?user_id=u1", MASTER).await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(v["user_info"]["user_email"], "ada@example.com");
        assert_eq!(v["teams"], json!(["t1"]));
        assert_eq!(v["keys"][0]["key_alias"], "ada-key");
        assert!(
            !v.to_string().contains(&key),
            "{backend}: the key is never shown again"
        );

        let (s, v) = admin_post(
            gw,
            "/user/update",
            MASTER,
            json!({"user_id": "u1", "user_email": null, "rpm_limit": 5}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert!(v["user_email"].is_null());
        let (s, v) = admin_post(
            gw,
            "/user/update",
            MASTER,
            json!({"user_id": "ghost", "rpm_limit": 5}),
        )
        .await;
        assert_eq!(s, 404, "{backend}: {v}");

        let (s, v) = admin_get(gw, "/user/list?page=1&page_size=1", MASTER).await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(
            (v["total"].clone(), v["total_pages"].clone()),
            (json!(2), json!(2))
        );
        assert_eq!(v["users"][0]["user_id"], "u1");
        let (_, v) = admin_get(gw, "/user/list?role=proxy_admin", MASTER).await;
        assert_eq!(v["total"], 1, "{backend}: {v}");

        // A user with keys stays until the keys go; the key cache forgets deleted keys.
        let (s, v) = admin_post(gw, "/user/delete", MASTER, json!({"user_ids": ["u1"]})).await;
        assert_eq!(s, 409, "{backend}: {v}");
        let (status, _) = crate::keys::chat(gw, &key, "a").await;
        assert_eq!(status, 200, "{backend}");
        admin_post(
            gw,
            "/key/delete",
            MASTER,
            json!({"key_aliases": ["ada-key"]}),
        )
        .await;
        let (status, _) = crate::keys::chat(gw, &key, "a").await;
        assert_eq!(status, 401, "{backend}");
        let (s, v) = admin_post(
            gw,
            "/user/delete",
            MASTER,
            json!({"user_ids": ["u1", "u2"]}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(v["deleted_users"], json!(["u1", "u2"]));
        let (_, v) = admin_get(gw, "/team/info?team_id=t1", MASTER).await;
        assert_eq!(v["team_info"]["members"], json!([]), "{backend}: {v}");
        gw.state
            .flush_spend(std::time::Duration::from_secs(5))
            .await;
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn admin_routes_refuse_virtual_keys() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let (gw, _up) = gateway(store).await;
        let key = generate(&gw, json!({})).await;
        for path in [
            "/organization/new",
            "/user/new",
            "/budget/new",
            "/credentials",
        ] {
            let (s, _) = admin_post(&gw, path, &key, json!({})).await;
            assert_eq!(s, 403, "{backend}: {path}");
        }
        for path in [
            "/organization/list",
            "/user/list",
            "/budget/list",
            "/model/info",
        ] {
            let (s, _) = admin_get(&gw, path, &key).await;
            assert_eq!(s, 403, "{backend}: {path}");
        }
    }
    drop_schema(pg).await;
}

/// Admin bodies are bounded like proxied ones (10 MiB by default): a larger one is refused
/// with 413 in the API's error shape and nothing is created. The import route allows more.
#[tokio::test]
async fn admin_bodies_over_the_limit_are_refused_in_the_error_shape() {
    let store = store::connect("sqlite::memory:").await.unwrap();
    let (gw, _up) = gateway(Arc::clone(&store)).await;
    let padding = "x".repeat(11 * 1024 * 1024);
    let r = crate::keys::client()
        .post(format!("{}/key/generate", gw.url))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"key_alias":"big","metadata":{{"pad":"{padding}"}}}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "request_too_large", "{v}");
    assert_eq!(
        store
            .list_keys(&Default::default(), Page::default())
            .await
            .unwrap()
            .total,
        0
    );
    // A body under the limit still works.
    let (s, _) = admin_post(&gw, "/key/generate", MASTER, json!({"key_alias": "small"})).await;
    assert_eq!(s, 200);
}

fn cipher_options() -> store::StoreOptions {
    let cipher = SecretCipher::for_credentials(&SecretString::from(SALT)).unwrap();
    store::StoreOptions::default().with_cipher(cipher)
}

async fn send(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = crate::keys::client()
        .request(method, format!("{}{path}", gw.url))
        .bearer_auth(MASTER);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn credentials_are_managed_by_name_and_values_never_returned() {
    let (stores, pg) = stores_with(cipher_options()).await;
    for (backend, store) in stores {
        let (gw, _up) = gateway(Arc::clone(&store)).await;
        let gw = &gw;
        let (s, text) = send(
            gw,
            reqwest::Method::POST,
            "/credentials",
            Some(json!({"credential_name": "openai-prod",
                        "credential_values": {"api_key": UPSTREAM_SECRET, "api_base": "http://127.0.0.1:9/v1"},
                        "credential_info": {"custom_llm_provider": "openai"}})),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {text}");
        assert!(!text.contains(UPSTREAM_SECRET), "{backend}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["credential_values"], json!(["api_base", "api_key"]));

        let (s, text) = send(
            gw,
            reqwest::Method::POST,
            "/credentials",
            Some(json!({"credential_name": "openai-prod", "credential_values": {"api_key": "x"}})),
        )
        .await;
        assert_eq!(s, 409, "{backend}: {text}");
        let (s, text) = send(
            gw,
            reqwest::Method::POST,
            "/credentials",
            Some(json!({"credential_name": "bad", "credential_values": {"api_key": 12}})),
        )
        .await;
        assert_eq!(s, 400, "{backend}: {text}");
        assert!(text.contains("credential_values"), "{backend}: {text}");
        assert!(store.credential("bad").await.unwrap().is_none());
        let (s, text) = send(
            gw,
            reqwest::Method::POST,
            "/credentials",
            Some(json!({"credential_name": "", "credential_values": {}})),
        )
        .await;
        assert_eq!(s, 400, "{backend}: {text}");

        let (s, text) = send(gw, reqwest::Method::GET, "/credentials", None).await;
        assert_eq!(s, 200, "{backend}: {text}");
        assert!(!text.contains(UPSTREAM_SECRET), "{backend}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["credentials"][0]["credential_name"], "openai-prod");

        let rotated = "sk-rotated-credential-value-555";
        let (s, text) = send(
            gw,
            reqwest::Method::PATCH,
            "/credentials/openai-prod",
            Some(json!({"credential_values": {"api_key": rotated}})),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {text}");
        assert!(!text.contains(rotated), "{backend}: {text}");
        let values = store
            .credential_values("openai-prod")
            .await
            .unwrap()
            .unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(values["api_key"].expose_secret(), rotated, "{backend}");
        let (s, text) = send(
            gw,
            reqwest::Method::PATCH,
            "/credentials/openai-prod",
            Some(json!({"credential_name": "renamed"})),
        )
        .await;
        assert_eq!(s, 400, "{backend}: {text}");

        let (s, text) = send(
            gw,
            reqwest::Method::GET,
            "/credentials/by_name/openai-prod",
            None,
        )
        .await;
        assert_eq!(s, 200, "{backend}: {text}");
        assert!(!text.contains(rotated) && !text.contains(UPSTREAM_SECRET));
        let (s, _) = send(gw, reqwest::Method::GET, "/credentials/by_name/nope", None).await;
        assert_eq!(s, 404, "{backend}");

        // Audit entries exist and never hold a value.
        let audit = store
            .audit_log(
                &AuditFilter {
                    object_kind: Some(ObjectKind::Credential),
                    ..Default::default()
                },
                Page::default(),
            )
            .await
            .unwrap();
        assert_eq!(audit.total, 2, "{backend}: create and update");
        let dump = serde_json::to_string(&audit.items).unwrap();
        assert!(!dump.contains(rotated) && !dump.contains(UPSTREAM_SECRET));

        let (s, text) = send(
            gw,
            reqwest::Method::DELETE,
            "/credentials/openai-prod",
            None,
        )
        .await;
        assert_eq!(s, 200, "{backend}: {text}");
        let (s, _) = send(
            gw,
            reqwest::Method::DELETE,
            "/credentials/openai-prod",
            None,
        )
        .await;
        assert_eq!(s, 404, "{backend}");
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn credentials_without_a_salt_key_say_how_to_fix_it() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let (gw, _up) = gateway(store).await;
        let (s, text) = send(
            &gw,
            reqwest::Method::POST,
            "/credentials",
            Some(
                json!({"credential_name": "c", "credential_values": {"api_key": UPSTREAM_SECRET}}),
            ),
        )
        .await;
        assert_eq!(s, 503, "{backend}: {text}");
        assert!(text.contains("SWITCHYARD_SALT_KEY"), "{backend}: {text}");
        assert!(!text.contains(UPSTREAM_SECRET));
    }
    drop_schema(pg).await;
}

/// A POST to the admin API naming who the change is for (`LiteLLM-Changed-By`).
pub(crate) async fn post_as(
    gw: &Gateway,
    path: &str,
    changed_by: &str,
    body: Value,
) -> (u16, Value) {
    let req = crate::keys::client()
        .post(format!("{}{path}", gw.url))
        .bearer_auth(MASTER)
        .header("LiteLLM-Changed-By", changed_by);
    crate::keys::status_json(req.json(&body)).await
}

/// `GET /audit` lists admin changes newest first with LiteLLM's field names, filtered by who,
/// which kind (Switchyard's kind or LiteLLM's table name) and which object. `LiteLLM-Changed-By`
/// names who a change was made for; without it the master key is recorded. Bad filters and bad
/// header values are 400s naming them, and a refused change writes nothing.
#[tokio::test]
async fn the_audit_log_says_who_changed_what() {
    let (stores, pg) = stores().await;
    for (backend, store) in stores {
        let (gw, _up) = gateway(store.clone()).await;
        let budget = json!({"budget_id": "b1", "max_budget": 10});
        assert_eq!(admin_post(&gw, "/budget/new", MASTER, budget).await.0, 200);
        let raise = json!({"budget_id": "b1", "max_budget": 20});
        let (s, v) = post_as(&gw, "/budget/update", "  ada@example.com ", raise).await;
        assert_eq!(s, 200, "{backend}: {v}");
        let (s, v) = post_as(
            &gw,
            "/key/generate",
            "ci-pipeline",
            json!({"key_alias": "k"}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");

        let (s, v) = admin_get(&gw, "/audit?table_name=budget&object_id=b1", MASTER).await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(v["total"], 2, "{backend}: {v}");
        let logs = v["audit_logs"].as_array().unwrap();
        let newest = &logs[0];
        assert_eq!(
            newest["changed_by"], "ada@example.com",
            "{backend}: trimmed"
        );
        assert_eq!(newest["action"], "update", "{backend}");
        assert_eq!(newest["object_kind"], "budget", "{backend}");
        let max_budget = |v: &Value| v["max_budget"].as_f64();
        assert_eq!(
            max_budget(&newest["before_value"]),
            Some(10.0),
            "{backend}: {newest}"
        );
        assert_eq!(
            max_budget(&newest["updated_values"]),
            Some(20.0),
            "{backend}: {newest}"
        );
        assert!(
            newest["updated_at"].as_str().is_some(),
            "{backend}: {newest}"
        );
        assert_eq!(logs[1]["changed_by"], "master_key", "{backend}: no header");
        assert_eq!(logs[1]["action"], "create", "{backend}");

        let (_, v) = admin_get(&gw, "/audit?changed_by=ada%40example.com", MASTER).await;
        assert_eq!(v["total"], 1, "{backend}: {v}");
        let (_, v) = admin_get(&gw, "/audit?table_name=LiteLLM_VerificationToken", MASTER).await;
        assert_eq!(v["total"], 1, "{backend}: {v}");
        let key_entry = &v["audit_logs"][0];
        assert_eq!(key_entry["table_name"], "LiteLLM_VerificationToken");
        assert_eq!(key_entry["object_kind"], "key");
        assert_eq!(key_entry["changed_by"], "ci-pipeline");
        let text = v.to_string();
        assert!(
            !text.contains("sk-"),
            "{backend}: no key in the log: {text}"
        );

        // Paging: one entry per page, newest first.
        let (_, all) = admin_get(&gw, "/audit", MASTER).await;
        let total = all["total"].as_u64().unwrap();
        assert!(total >= 3, "{backend}: {all}");
        let (_, p2) = admin_get(&gw, "/audit?page=2&page_size=1", MASTER).await;
        assert_eq!(p2["total_pages"], total, "{backend}");
        assert_eq!(p2["audit_logs"].as_array().unwrap().len(), 1);
        assert_eq!(p2["audit_logs"][0], all["audit_logs"][1], "{backend}");

        for (query, param_name) in [
            ("table_name=nope", "table_name"),
            ("page_size=0", "page_size"),
            ("page_size=1001", "page_size"),
        ] {
            let (s, v) = admin_get(&gw, &format!("/audit?{query}"), MASTER).await;
            assert_eq!((s, param(&v)), (400, param_name), "{backend}: {query}: {v}");
        }
        let (s, v) = admin_get(&gw, "/audit?table_name=nope", MASTER).await;
        assert!(
            message(&v).contains("budget"),
            "{backend}: lists kinds: {v}"
        );
        let (s2, _) = admin_get(&gw, "/audit?chnged_by=ada", MASTER).await;
        assert_eq!((s, s2), (400, 400), "{backend}: unknown parameter");

        // A name too long to record, or a key pasted by mistake: refused, nothing changes.
        let lower = json!({"budget_id": "b1", "max_budget": 5});
        for name in ["x".repeat(257), MASTER.to_owned()] {
            let (s, v) = post_as(&gw, "/budget/update", &name, lower.clone()).await;
            assert_eq!(
                (s, param(&v)),
                (400, "LiteLLM-Changed-By"),
                "{backend}: {v}"
            );
            assert!(!v.to_string().contains(MASTER), "{backend}: {v}");
        }
        assert_eq!(
            audit_count(store.as_ref(), ObjectKind::Budget, "b1").await,
            2
        );
        let (_, v) = admin_get(&gw, "/budget/info?budget_id=b1", MASTER).await;
        assert_eq!(max_budget(&v), Some(20.0), "{backend}: unchanged: {v}");

        let key = generate(&gw, json!({})).await;
        assert_eq!(admin_get(&gw, "/audit", &key).await.0, 403, "{backend}");
    }
    drop_schema(pg).await;
}
