//! Runtime models (`/model/new|update|delete|info`): checked like config-file deployments,
//! merged with them into the live routing table, serving on the next request, loaded from the
//! store at start-up; the config file's stay read-only. SQLite and PostgreSQL.

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::{json, Value};
use switchyard::config::{Config, DeploymentId, RouterSettings};
use switchyard::store::{self, SecretCipher};

use crate::harness::*;
use crate::keys::{admin_get, admin_post, chat, drop_schema, generate, stores_with, MASTER};

pub(crate) fn options() -> store::StoreOptions {
    let cipher =
        SecretCipher::for_credentials(&SecretString::from("model-test-salt-key-0123456789abcdef"))
            .unwrap();
    store::StoreOptions::default().with_cipher(cipher)
}

fn file_config(a: &wiremock::MockServer) -> Config {
    config(
        vec![openai("a1", "a", a)],
        RouterSettings {
            num_retries: Some(0),
            ..Default::default()
        },
    )
}

fn param(v: &Value) -> &str {
    v["error"]["param"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn runtime_models_serve_at_once_and_the_config_files_stay_read_only() {
    let (stores, pg) = stores_with(options()).await;
    for (backend, store) in stores {
        let a = ok_upstream("from a").await;
        let r = ok_upstream("from r").await;
        let r2 = ok_upstream("from r2").await;
        let gw = start_with_store(file_config(&a), Some(MASTER), Some(Arc::clone(&store))).await;
        let gw = &gw;

        assert_eq!(chat(gw, MASTER, "r").await.0, 404, "{backend}: not yet");
        let (s, v) = admin_post(
            gw,
            "/model/new",
            MASTER,
            json!({"model_name": "r",
                   "litellm_params": {"model": "openai/gpt-r", "api_base": format!("{}/v1", r.uri())},
                   "model_info": {"id": "r1", "input_cost_per_token": 0.000001}}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(v["model_info"]["serving"], true, "{backend}: {v}");
        assert_eq!(
            chat(gw, MASTER, "r").await,
            (200, "from r".into()),
            "{backend}"
        );
        assert_eq!(calls(&r).await, 1);

        // Keys, teams and /v1/models see the runtime group.
        let key = generate(
            gw,
            json!({"models": ["r"], "router_settings": {"fallbacks": [{"r": ["a"]}]}}),
        )
        .await;
        assert_eq!(chat(gw, &key, "r").await, (200, "from r".into()));
        let models = crate::keys::client()
            .get(format!("{}/v1/models", gw.url))
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let ids: Vec<&str> = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a", "r"], "{backend}");

        // Listed with the config file's, which are marked read-only.
        let (s, v) = admin_get(gw, "/model/info", MASTER).await;
        assert_eq!(s, 200, "{backend}: {v}");
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2, "{backend}: {v}");
        assert_eq!(data[0]["model_info"]["id"], "a1");
        assert_eq!(data[0]["model_info"]["read_only"], true);
        assert_eq!(data[0]["model_info"]["db_model"], false);
        assert_eq!(data[1]["model_info"]["id"], "r1");
        assert_eq!(data[1]["model_info"]["db_model"], true);
        assert!(
            !v.to_string().contains("sk-upstream-secret"),
            "{backend}: the config file's key is never listed"
        );
        let (s, v) = admin_get(gw, "/v1/model/info?litellm_model_id=r1", MASTER).await;
        assert_eq!(
            (s, v["data"].as_array().unwrap().len()),
            (200, 1),
            "{backend}: {v}"
        );

        for (path, body) in [
            (
                "/model/update",
                json!({"model_info": {"id": "a1"}, "model_name": "x"}),
            ),
            ("/model/delete", json!({"id": "a1"})),
        ] {
            let (s, v) = admin_post(gw, path, MASTER, body).await;
            assert_eq!(s, 403, "{backend}: {path} {v}");
            assert!(v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("config file"));
        }

        // Bad models are refused, naming the field; nothing is written.
        let cases = [
            (
                json!({"model_name": "z", "litellm_params": {"model": "nosuchprovider/x"},
                       "model_info": {"id": "z1"}}),
                400,
            ),
            (
                json!({"model_name": "z", "litellm_params": {"model": "openai/x", "rpm": "ten"},
                       "model_info": {"id": "z1"}}),
                400,
            ),
            (
                json!({"model_name": "z", "litellm_params": {"model": "openai/x", "api_key": "sk-plain"},
                       "model_info": {"id": "z1"}}),
                400,
            ),
            (
                json!({"model_name": "z", "litellm_params": {"model": "openai/x",
                       "litellm_credential_name": "missing"}, "model_info": {"id": "z1"}}),
                400,
            ),
            (
                json!({"model_name": "z", "litellm_params": {"model": "openai/x"}, "extra": 1}),
                400,
            ),
            (
                json!({"model_name": "z", "litellm_params": {"model": "openai/x"},
                       "model_info": {"id": "a1"}}),
                409,
            ),
            (
                json!({"model_name": "z", "litellm_params": {"model": "openai/x"},
                       "model_info": {"id": "r1"}}),
                409,
            ),
        ];
        for (body, status) in cases {
            let (s, v) = admin_post(gw, "/model/new", MASTER, body.clone()).await;
            assert_eq!(s, status, "{backend}: {body} -> {v}");
            if status == 400 {
                assert!(
                    !param(&v).is_empty()
                        || v["error"]["message"].as_str().unwrap().contains("extra"),
                    "{backend}: field named: {v}"
                );
            }
        }
        assert!(store.model("z1").await.unwrap().is_none(), "{backend}");
        assert_eq!(store.list_models().await.unwrap().len(), 1);

        // A credential supplies the key and base; rotating it takes effect at once.
        let (s, v) = admin_post(
            gw,
            "/credentials",
            MASTER,
            json!({"credential_name": "r2-cred",
                   "credential_values": {"api_key": "sk-cred-secret-r2", "api_base": format!("{}/v1", r2.uri())}}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        let (s, v) = admin_post(
            gw,
            "/model/update",
            MASTER,
            json!({"model_info": {"id": "r1"},
                   "litellm_params": {"api_base": null, "litellm_credential_name": "r2-cred"}}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert!(!v.to_string().contains("sk-cred-secret-r2"));
        assert_eq!(
            chat(gw, MASTER, "r").await,
            (200, "from r2".into()),
            "{backend}"
        );
        let seen = r2.received_requests().await.unwrap();
        let auth = seen.last().unwrap().headers.get("authorization").unwrap();
        assert_eq!(
            auth.to_str().unwrap(),
            "Bearer sk-cred-secret-r2",
            "{backend}"
        );
        let (s, _) = admin_post(
            gw,
            "/credentials",
            MASTER,
            json!({"credential_name": "r2-cred"}),
        )
        .await;
        assert_eq!(s, 409, "{backend}");
        let rotated = crate::keys::client()
            .patch(format!("{}/credentials/r2-cred", gw.url))
            .bearer_auth(MASTER)
            .json(&json!({"credential_values": {"api_key": "sk-cred-rotated", "api_base": format!("{}/v1", r2.uri())}}))
            .send()
            .await
            .unwrap();
        assert_eq!(rotated.status(), 200);
        chat(gw, MASTER, "r").await;
        let seen = r2.received_requests().await.unwrap();
        let auth = seen.last().unwrap().headers.get("authorization").unwrap();
        assert_eq!(
            auth.to_str().unwrap(),
            "Bearer sk-cred-rotated",
            "{backend}"
        );

        // A restart (a new gateway over the same store) serves the runtime model from the start.
        let gw2 = start_with_store(file_config(&a), Some(MASTER), Some(Arc::clone(&store))).await;
        assert_eq!(
            chat(&gw2, MASTER, "r").await,
            (200, "from r2".into()),
            "{backend}"
        );

        // Invalid update: nothing changes; then delete: gone on the next request.
        let (s, v) = admin_post(
            gw,
            "/model/update",
            MASTER,
            json!({"model_info": {"id": "r1"}, "litellm_params": {"model": "bogus/x"}}),
        )
        .await;
        assert_eq!(s, 400, "{backend}: {v}");
        assert_eq!(chat(gw, MASTER, "r").await.0, 200, "{backend}");
        let (s, v) = admin_post(gw, "/model/delete", MASTER, json!({"id": "r1"})).await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(chat(gw, MASTER, "r").await.0, 404, "{backend}");
        let (s, _) = admin_post(gw, "/model/delete", MASTER, json!({"id": "r1"})).await;
        assert_eq!(s, 404, "{backend}");
        assert_eq!(chat(gw, MASTER, "a").await, (200, "from a".into()));
        gw.state
            .flush_spend(std::time::Duration::from_secs(5))
            .await;
        gw2.state
            .flush_spend(std::time::Duration::from_secs(5))
            .await;
    }
    drop_schema(pg).await;
}

#[tokio::test]
async fn a_runtime_model_joins_a_config_group_and_keeps_its_neighbours_state() {
    let (stores, pg) = stores_with(options()).await;
    for (backend, store) in stores {
        let a = ok_upstream("from a").await;
        let b = ok_upstream("from b").await;
        let gw = start_with_store(file_config(&a), Some(MASTER), Some(Arc::clone(&store))).await;
        let before = gw.state.router.groups();
        let a1 = Arc::clone(before.deployment(&DeploymentId("a1".into())).unwrap());
        let (s, v) = admin_post(
            &gw,
            "/model/new",
            MASTER,
            json!({"model_name": "a",
                   "litellm_params": {"model": "openai/gpt-b", "api_base": format!("{}/v1", b.uri())},
                   "model_info": {"id": "b1"}}),
        )
        .await;
        assert_eq!(s, 200, "{backend}: {v}");
        let after = gw.state.router.groups();
        let kept = after.deployment(&DeploymentId("a1".into())).unwrap();
        assert!(
            Arc::ptr_eq(&a1, kept),
            "{backend}: a1's state survives the reload"
        );
        assert_eq!(kept.group_size(), 2);
        let mut served = std::collections::BTreeSet::new();
        for _ in 0..40 {
            served.insert(chat(&gw, MASTER, "a").await.1);
            if served.len() == 2 {
                break;
            }
        }
        assert_eq!(served.len(), 2, "{backend}: both deployments serve group a");
        gw.state
            .flush_spend(std::time::Duration::from_secs(5))
            .await;
    }
    drop_schema(pg).await;
}

/// A password in an upstream URL (`http://user:password@host/v1`) is never sent upstream (no
/// Basic auth from URLs). A runtime model may not store one (model params are listed and
/// exported in plain text); a config file's is left out of `/model/info`.
#[tokio::test]
async fn passwords_in_upstream_urls_are_refused_for_runtime_models_and_hidden_for_the_files() {
    const FILE_PW: &str = "file-url-password-4711";
    const NEW_PW: &str = "runtime-url-password-0815";
    let (stores, pg) = stores_with(options()).await;
    for (backend, store) in stores {
        let a = ok_upstream("from a").await;
        let mut config = file_config(&a);
        let host = a.uri().trim_start_matches("http://").to_owned();
        config.model_list[0].api_base = Some(format!("http://svc:{FILE_PW}@{host}/v1"));
        let gw = start_with_store(config, Some(MASTER), Some(Arc::clone(&store))).await;
        let gw = &gw;
        // The file's deployment serves; the password goes nowhere.
        assert_eq!(chat(gw, MASTER, "a").await, (200, "from a".into()));
        let sent = a.received_requests().await.unwrap();
        assert!(
            !format!("{:?}", sent[0].headers).contains(FILE_PW),
            "{backend}: never sent upstream"
        );

        let (s, v) = admin_get(gw, "/model/info", MASTER).await;
        assert_eq!(s, 200, "{backend}: {v}");
        assert_eq!(
            v["data"][0]["litellm_params"]["api_base"],
            format!("http://svc@{host}/v1"),
            "{backend}: {v}"
        );
        assert!(!v.to_string().contains(FILE_PW), "{backend}: {v}");

        // A runtime model with one is refused, naming the field and not the value.
        let new_model = |base: &str| {
            json!({"model_name": "r", "litellm_params": {"model": "openai/x", "api_base": base},
                   "model_info": {"id": "r1"}})
        };
        let base = format!("http://svc:{NEW_PW}@{host}/v1");
        let (s, v) = admin_post(gw, "/model/new", MASTER, new_model(&base)).await;
        assert_eq!(s, 400, "{backend}: {v}");
        assert_eq!(param(&v), "litellm_params.api_base", "{backend}: {v}");
        assert!(!v.to_string().contains(NEW_PW), "{backend}: {v}");
        // Nor may an update add one; the stored model stays as it was.
        let plain = format!("http://{host}/v1");
        let (s, v) = admin_post(gw, "/model/new", MASTER, new_model(&plain)).await;
        assert_eq!(s, 200, "{backend}: {v}");
        let (s, v) = admin_post(
            gw,
            "/model/update",
            MASTER,
            json!({"model_info": {"id": "r1"}, "litellm_params": {"api_base": base}}),
        )
        .await;
        assert_eq!(s, 400, "{backend}: {v}");
        assert_eq!(param(&v), "litellm_params.api_base", "{backend}: {v}");
        let (_, v) = admin_get(gw, "/model/info?litellm_model_id=r1", MASTER).await;
        assert_eq!(
            v["data"][0]["litellm_params"]["api_base"], plain,
            "{backend}"
        );
    }
    drop_schema(pg).await;
}
