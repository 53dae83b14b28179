//! Health endpoints: liveness (the process answers) and readiness (it can serve).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

pub async fn liveliness() -> Json<Value> {
    Json(json!("I'm alive!"))
}

pub async fn readiness(State(state): State<AppState>) -> Json<Value> {
    let deployments = state.router.groups().deployments().count();
    Json(json!({
        "status": "healthy",
        "version": env!("CARGO_PKG_VERSION"),
        "db": "not configured",
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
