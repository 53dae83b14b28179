//! `POST /v1/chat/completions`: validates the request, routes it, and answers with JSON or an
//! SSE stream. A stream may fall back until its first chunk is ready; after the first byte has
//! gone out, an upstream failure ends the stream with an in-band error event and no `[DONE]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::time::Instant;

use super::{
    read_body, required_model, route_failure, routed_headers, routed_json, take_gateway_fields,
};
use crate::error::ApiError;
use crate::keys::auth::AuthContext;
use crate::providers::body::{json_type_of, messages_shape, MessagesShape, RawObject};
use crate::providers::{chunk_usage, is_usage_chunk, ChatRequest, ChunkStream, ProviderError};
use crate::router::RouteRequest;
use crate::AppState;

pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(auth): Extension<AuthContext>,
    body: Body,
) -> Response {
    let started = Instant::now();
    let resp = match handle(&state, &auth, body, started).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state
        .metrics
        .request("chat_completions", resp.status().as_u16());
    resp
}

fn validate_messages(body: &RawObject) -> Result<(), ApiError> {
    let Some(raw) = body.get("messages") else {
        return Err(
            ApiError::bad_request("missing required field `messages`").with_param("messages")
        );
    };
    match messages_shape(raw) {
        MessagesShape::Ok => Ok(()),
        MessagesShape::Empty => {
            Err(ApiError::bad_request("`messages` must not be empty").with_param("messages"))
        }
        MessagesShape::NotAnArray(kind) => Err(ApiError::bad_request(format!(
            "`messages` must be an array, got {kind}"
        ))
        .with_param("messages")),
        MessagesShape::NotAnObject(i) => Err(ApiError::bad_request(format!(
            "`messages[{i}]` must be an object"
        ))
        .with_param(&format!("messages[{i}]"))),
        MessagesShape::RoleNotAString(i) => Err(ApiError::bad_request(format!(
            "`messages[{i}].role` must be a string"
        ))
        .with_param(&format!("messages[{i}].role"))),
    }
}

async fn handle(
    state: &AppState,
    auth: &AuthContext,
    body: Body,
    started: Instant,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, state.max_body).await?;
    let mut obj = super::parse_object(bytes)?;
    let model = required_model(&obj)?;
    let model = auth.resolve_alias(&model).to_string();
    validate_messages(&obj)?;
    let stream = super::optional_bool(&obj, "stream")?.unwrap_or(false);
    let include_usage = match obj.get("stream_options") {
        None | Some(b"null") => false,
        Some(raw) => match obj.object("stream_options") {
            Some(o) => super::optional_bool(&o, "include_usage")
                .map_err(|e| ApiError {
                    param: Some("stream_options.include_usage".into()),
                    ..e
                })?
                .unwrap_or(false),
            None => {
                return Err(ApiError::bad_request(format!(
                    "`stream_options` must be an object, got {}",
                    json_type_of(raw)
                ))
                .with_param("stream_options"))
            }
        },
    };
    let gw = take_gateway_fields(&mut obj)?;
    let req = ChatRequest {
        body: obj,
        stream,
        include_usage,
    };
    let settings = Arc::clone(&auth.settings);
    let may_use = |g: &str| auth.may_use(g);
    let route = RouteRequest {
        model: &model,
        settings: &settings,
        body_fallbacks: gw.fallbacks,
        disable_fallbacks: gw.disable_fallbacks,
        may_use: &may_use,
    };
    let source = settings.headline_source();
    let upstream_us = AtomicU64::new(0);
    let usage = super::UsageSink::new(state, auth);

    if !stream {
        let timeout = settings.timeout().max(super::MIN_TIMEOUT);
        let result = state
            .router
            .route(&route, |d| {
                let req = &req;
                let client = &state.client;
                let upstream_us = &upstream_us;
                async move {
                    let t = Instant::now();
                    let r = client
                        .chat(&d.deployment, req, d.deployment.timeout.unwrap_or(timeout))
                        .await;
                    upstream_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                    if let Ok(resp) = &r {
                        d.record_tokens(resp.usage.prompt_tokens + resp.usage.completion_tokens);
                    }
                    r
                }
            })
            .await;
        return match result {
            Ok(routed) => {
                let u = &routed.value.usage;
                usage.record(
                    &routed.deployment.deployment,
                    &routed.group,
                    u.prompt_tokens,
                    u.completion_tokens,
                );
                let resp = routed_json(routed.value.body.clone(), &routed, source);
                let total_us = started.elapsed().as_micros() as u64;
                let overhead_us = total_us.saturating_sub(upstream_us.load(Ordering::Relaxed));
                state.metrics.overhead.observe(overhead_us as f64 / 1e6);
                Ok(resp)
            }
            Err(e) => Ok(route_failure(&e, source)),
        };
    }

    let timeout = settings.stream_timeout().max(super::MIN_TIMEOUT);
    let result = state
        .router
        .route(&route, |d| {
            let req = &req;
            let client = &state.client;
            async move {
                let mut s: ChunkStream = client
                    .chat_stream(
                        &d.deployment,
                        req,
                        d.deployment.stream_timeout.unwrap_or(timeout),
                    )
                    .await?;
                // Pull the first chunk before answering, so failures up to here can fall back.
                match s.next().await {
                    Some(Ok(first)) => Ok((first, s)),
                    Some(Err(e)) => Err(e),
                    None => Err(ProviderError::new(
                        d.id(),
                        crate::providers::FailureClass::StreamBroken,
                        "stream ended before its first chunk",
                    )),
                }
            }
        })
        .await;
    match result {
        Ok(routed) => {
            let mut headers = axum::http::HeaderMap::new();
            routed_headers(&mut headers, &routed, source);
            let (first, rest) = routed.value;
            let deployment = Arc::clone(&routed.deployment);
            let group = routed.group.clone();
            let in_flight = routed.in_flight;
            let body = async_stream::stream! {
                let _in_flight = in_flight;
                let mut pending = Some(first);
                let mut rest = rest;
                let mut last_usage: Option<crate::providers::Usage> = None;
                loop {
                    let chunk = match pending.take() {
                        Some(c) => c,
                        None => match rest.next().await {
                            Some(Ok(c)) => c,
                            Some(Err(e)) => {
                                if let Some(u) = last_usage.take() {
                                    usage.record(&deployment.deployment, &group, u.prompt_tokens, u.completion_tokens);
                                }
                                tracing::warn!(deployment = %e.deployment, class = %e.class, "stream failed after first byte");
                                deployment.metrics.failure(e.class).inc();
                                let err = mid_stream_error(&e);
                                yield Ok::<Bytes, std::convert::Infallible>(sse_data(&err));
                                return;
                            }
                            None => break,
                        },
                    };
                    if let Some(u) = chunk_usage(&chunk) {
                        deployment.record_tokens(u.prompt_tokens + u.completion_tokens);
                        // The last usage a stream reports is its total.
                        last_usage = Some(u);
                    }
                    if !include_usage && is_usage_chunk(&chunk) {
                        continue;
                    }
                    yield Ok(sse_data(&chunk));
                }
                if let Some(u) = last_usage.take() {
                    usage.record(&deployment.deployment, &group, u.prompt_tokens, u.completion_tokens);
                }
                yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
            };
            let mut resp = Response::new(Body::from_stream(body));
            *resp.headers_mut() = headers;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            *resp.status_mut() = StatusCode::OK;
            Ok(resp)
        }
        Err(e) => Ok(route_failure(&e, source)),
    }
}

fn sse_data(v: &Value) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    // Serializing a Value cannot fail.
    let _ = serde_json::to_writer(&mut out, v);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The in-band error that ends a stream which broke after its first byte.
fn mid_stream_error(e: &ProviderError) -> Value {
    let mut err = ApiError::new(
        StatusCode::BAD_GATEWAY,
        "api_error",
        format!(
            "deployment {} failed after the stream started ({}); the response is incomplete and cannot fall back",
            e.deployment, e.class
        ),
    )
    .with_code("stream_broken");
    if e.class == crate::providers::FailureClass::Timeout {
        err = err.with_code("stream_timeout");
    }
    err.body()
}
