//! The models page: deployments by model group with their state right now (cooling down,
//! in flight, requests and tokens this minute, latency). Config-file deployments are
//! read-only here; runtime models from the store are listed beside them. No secret is shown:
//! an API key appears only as "set" or "not set".

use std::collections::BTreeMap;

use axum::extract::State;
use serde::Serialize;
use tokio::time::Instant;

use super::{page, render, Admin, UiResult, UiState};

#[derive(Debug, Serialize)]
struct DeploymentRow {
    id: String,
    provider: &'static str,
    upstream_model: String,
    api_base: Option<String>,
    api_key_set: bool,
    rpm: Option<u64>,
    tpm: Option<u64>,
    order: Option<u32>,
    in_flight: u32,
    requests_this_minute: u64,
    tokens_this_minute: u64,
    latency_ms: Option<f64>,
    cooling_down_s: Option<f64>,
}

#[derive(Debug, Serialize)]
struct GroupView {
    name: String,
    deployments: Vec<DeploymentRow>,
    healthy: usize,
}

#[derive(Debug, Serialize)]
struct RuntimeRow {
    id: String,
    group: String,
    credential: Option<String>,
    model: Option<String>,
    api_base: Option<String>,
}

/// An upstream URL without `user:password@`: credentials sometimes ride in the URL.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

pub async fn page_handler(ui: &UiState, admin: &Admin) -> UiResult {
    let now = Instant::now();
    let mut groups: BTreeMap<String, Vec<DeploymentRow>> = BTreeMap::new();
    for d in ui.app.router.groups().deployments() {
        let dep = &d.deployment;
        let (requests, tokens) = d.usage_now(now);
        let latency = d.latency_us();
        groups
            .entry(dep.model_name.clone())
            .or_default()
            .push(DeploymentRow {
                id: dep.id.0.clone(),
                provider: dep.provider.as_str(),
                upstream_model: dep.upstream_model.clone(),
                api_base: dep.api_base.as_deref().map(without_userinfo),
                api_key_set: dep.api_key.is_some(),
                rpm: dep.rpm,
                tpm: dep.tpm,
                order: dep.order,
                in_flight: d.in_flight(),
                requests_this_minute: requests,
                tokens_this_minute: tokens,
                latency_ms: (latency > 0).then(|| latency as f64 / 1000.0),
                cooling_down_s: d
                    .cooldown_remaining(now)
                    .map(|r| (r.as_secs_f64() * 10.0).ceil() / 10.0),
            });
    }
    let groups: Vec<GroupView> = groups
        .into_iter()
        .map(|(name, mut deployments)| {
            deployments.sort_by(|a, b| a.id.cmp(&b.id));
            let healthy = deployments
                .iter()
                .filter(|d| d.cooling_down_s.is_none())
                .count();
            GroupView {
                name,
                deployments,
                healthy,
            }
        })
        .collect();
    let runtime: Vec<RuntimeRow> = match &ui.app.store {
        Some(store) => store
            .list_models()
            .await?
            .into_iter()
            .map(|m| {
                let p = &m.spec.litellm_params;
                let s = |k: &str| p.get(k).and_then(|v| v.as_str()).map(String::from);
                RuntimeRow {
                    id: m.spec.model_id.clone(),
                    group: m.spec.model_name.clone(),
                    credential: m.spec.credential_name.clone(),
                    model: s("model"),
                    api_base: s("api_base").as_deref().map(without_userinfo),
                }
            })
            .collect(),
        None => Vec::new(),
    };
    let unserved: Vec<(String, String)> = ui
        .app
        .config
        .unserved
        .iter()
        .map(|u| (u.id.0.clone(), u.model_name.clone()))
        .collect();
    let mut ctx = page(Some(admin), "Models", "models");
    ctx.insert("groups", &groups);
    ctx.insert("runtime", &runtime);
    ctx.insert("unserved", &unserved);
    ctx.insert(
        "config_file",
        &ui.app
            .config
            .source
            .as_ref()
            .map(|p| p.display().to_string()),
    );
    Ok(render("models.html", &ctx))
}

pub async fn page_route(State(ui): State<UiState>, admin: Admin) -> UiResult {
    page_handler(&ui, &admin).await
}

#[cfg(test)]
mod tests {
    use super::without_userinfo;

    #[test]
    fn credentials_in_upstream_urls_are_hidden() {
        assert_eq!(
            without_userinfo("https://user:pw@api.example/v1"),
            "https://…@api.example/v1"
        );
        assert_eq!(
            without_userinfo("http://127.0.0.1:9101/v1"),
            "http://127.0.0.1:9101/v1"
        );
        assert_eq!(without_userinfo("http://h/p@q"), "http://h/p@q");
    }
}
