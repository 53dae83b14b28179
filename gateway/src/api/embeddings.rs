//! `POST /v1/embeddings`: routed like chat, answered as JSON.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{read_body, required_model, route_failure, routed_json, take_gateway_fields};
use crate::error::ApiError;
use crate::keys::auth::AuthContext;
use crate::providers::body::json_type_of;
use crate::router::RouteRequest;
use crate::AppState;

pub async fn embeddings(
    State(state): State<AppState>,
    Extension(auth): Extension<AuthContext>,
    body: Body,
) -> Response {
    let resp = match handle(&state, &auth, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state.metrics.request("embeddings", resp.status().as_u16());
    resp
}

async fn handle(state: &AppState, auth: &AuthContext, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, state.max_body).await?;
    let mut obj = super::parse_object(bytes)?;
    let model = required_model(&obj)?;
    let model = auth.resolve_alias(&model).to_string();
    match obj.get("input") {
        Some(raw) if matches!(raw.first(), Some(b'"' | b'[')) => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`input` must be a string or an array, got {}",
                json_type_of(other)
            ))
            .with_param("input"))
        }
        None => {
            return Err(ApiError::bad_request("missing required field `input`").with_param("input"))
        }
    }
    let gw = take_gateway_fields(&mut obj)?;
    let settings = Arc::clone(&auth.settings);
    let may_use = |g: &str| auth.may_use(g);
    let route = RouteRequest {
        model: &model,
        settings: &settings,
        body_fallbacks: gw.fallbacks,
        disable_fallbacks: gw.disable_fallbacks,
        may_use: &may_use,
    };
    let timeout = settings.timeout().max(super::MIN_TIMEOUT);
    let result = state
        .router
        .route(&route, |d| {
            let obj = &obj;
            let client = &state.client;
            async move {
                let r = client
                    .embeddings(&d.deployment, obj, d.deployment.timeout.unwrap_or(timeout))
                    .await;
                if let Ok((_, tokens)) = &r {
                    d.record_tokens(*tokens);
                }
                r
            }
        })
        .await;
    let source = settings.headline_source();
    match result {
        Ok(routed) => {
            super::UsageSink::new(state, auth).record(
                &routed.deployment.deployment,
                &routed.group,
                routed.value.1,
                0,
            );
            let body = serde_json::to_vec(&routed.value.0).map_err(ApiError::internal)?;
            Ok(routed_json(body.into(), &routed, source))
        }
        Err(e) => Ok(route_failure(&e, source)),
    }
}
