//! Health endpoints: liveness (the process answers) and readiness (it can serve).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

pub async fn liveliness() -> Json<Value> {
    Json(json!("I'm alive!"))
}

/// How long the store gets to answer a readiness probe.
const STORE_PROBE: std::time::Duration = std::time::Duration::from_secs(2);

/// `db` is `connected`, `disconnected` (no answer within [`STORE_PROBE`]) or `not configured`.
/// Without its store the gateway still serves the master key and, for a bounded time, cached
/// virtual keys, so the answer stays 200 and `status` says `degraded` rather than taking every
/// instance out of a load balancer over a database blip.
pub async fn readiness(State(state): State<AppState>) -> Json<Value> {
    let deployments = state.router.groups().deployments().count();
    let db = match &state.store {
        None => "not configured",
        Some(store) => match tokio::time::timeout(STORE_PROBE, store.ping()).await {
            Ok(Ok(())) => "connected",
            _ => "disconnected",
        },
    };
    // Cooldowns shared between instances: whether the last exchange with Redis worked.
    let redis = match state.router.shared_cooldowns() {
        None => "not configured",
        Some(s) if s.is_connected() => "connected",
        Some(_) => "disconnected",
    };
    let status = if db == "disconnected" || redis == "disconnected" {
        "degraded"
    } else {
        "healthy"
    };
    Json(json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "db": db,
        "redis": redis,
        "cache": null,
        "model_groups": state.router.groups().names().count(),
        "deployments": deployments,
    }))
}

pub async fn metrics(
    State(state): State<AppState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}
