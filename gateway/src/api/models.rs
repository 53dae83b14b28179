//! `GET /v1/models`: the model groups (and visible aliases) the caller may use.

use axum::extract::State;
use axum::Extension;
use axum::Json;
use serde_json::{json, Value};

use crate::keys::auth::AuthContext;
use crate::AppState;

pub async fn list_models(
    State(state): State<AppState>,
    Extension(auth): Extension<AuthContext>,
) -> Json<Value> {
    let mut names: Vec<String> = state
        .router
        .groups()
        .names()
        .filter(|g| auth.may_use(g))
        .map(str::to_string)
        .collect();
    for (alias, target) in &auth.settings.model_group_alias.value {
        if !target.hidden() && auth.may_use(target.target()) && !names.contains(alias) {
            names.push(alias.clone());
        }
    }
    names.sort();
    let data: Vec<Value> = names
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "switchyard"}))
        .collect();
    state.metrics.request("models", 200);
    Json(json!({"object": "list", "data": data}))
}
