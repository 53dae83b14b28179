//! `ApiError` and the one place where errors become OpenAI-shaped HTTP responses.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::providers::FailureClass;
use crate::router::RouteError;
use crate::store::StoreError;

/// An error as the client sees it: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI `type`: `invalid_request_error`, `authentication_error`, `rate_limit_error`, ...
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<String>,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
            .with_code("invalid_api_key")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message).with_code("not_found")
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("model {model:?} does not exist or is not served by this gateway"),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("request body is larger than the limit of {limit} bytes"),
        )
        .with_code("request_too_large")
    }

    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
            .with_code("rate_limit_exceeded");
        e.retry_after = Some(retry_after);
        e
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "api_error", message)
            .with_code("service_unavailable")
    }

    /// Internal errors reach the client as a generic message; the detail is logged once here.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "internal error",
        )
    }

    /// The body as JSON (also used for in-band stream errors).
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(ra) = self.retry_after {
            let secs = ra.as_secs() + u64::from(ra.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
            if let Ok(v) = HeaderValue::from_str(&ra.as_millis().max(1).to_string()) {
                resp.headers_mut().insert("retry-after-ms", v);
            }
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
            StoreError::Conflict { field, .. } => {
                ApiError::new(StatusCode::CONFLICT, "invalid_request_error", e.to_string())
                    .with_param(field)
                    .with_code("conflict")
            }
            StoreError::InUse { .. } => {
                ApiError::new(StatusCode::CONFLICT, "invalid_request_error", e.to_string())
                    .with_code("in_use")
            }
            StoreError::UnknownReference { field, .. } => {
                ApiError::bad_request(e.to_string()).with_param(field)
            }
            StoreError::Invalid { field, .. } => {
                let field = field.clone();
                ApiError::bad_request(e.to_string()).with_param(&field)
            }
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store unavailable");
                ApiError::unavailable("store unavailable")
            }
            _ => ApiError::internal(&e),
        }
    }
}

impl From<&RouteError> for ApiError {
    fn from(e: &RouteError) -> Self {
        match e {
            RouteError::ModelNotFound { model } => ApiError::model_not_found(model),
            RouteError::ModelNotAllowed { model } => ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                format!("model {model:?} is not available to this key"),
            )
            .with_param("model")
            .with_code("model_not_allowed"),
            RouteError::NoDeploymentAvailable {
                group,
                retry_after,
                reason,
                ..
            } => {
                let why = match reason {
                    crate::router::plan::Unavailable::CoolingDown => "cooling down",
                    crate::router::plan::Unavailable::AtLimits => "at their rate limits",
                };
                ApiError::rate_limited(
                    format!("all deployments of model group {group:?} (and its fallbacks) are {why}; retry later"),
                    *retry_after,
                )
            }
            RouteError::Failed { last, .. } => {
                let d = &last.deployment;
                let upstream = if last.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", last.message)
                };
                match last.class {
                    FailureClass::RateLimited => ApiError::rate_limited(
                        format!("deployment {d} is rate limited{upstream}"),
                        last.retry_after.unwrap_or(Duration::from_secs(1)),
                    ),
                    FailureClass::Timeout => ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "timeout_error",
                        format!("deployment {d} did not answer in time"),
                    )
                    .with_code("upstream_timeout"),
                    FailureClass::Connection => ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "api_error",
                        format!("could not connect to deployment {d}"),
                    )
                    .with_code("upstream_connection_error"),
                    FailureClass::ServerError => {
                        let status = last
                            .status
                            .filter(|s| (500..600).contains(s))
                            .and_then(|s| StatusCode::from_u16(s).ok())
                            .unwrap_or(StatusCode::BAD_GATEWAY);
                        ApiError::new(
                            status,
                            "api_error",
                            format!("deployment {d} failed{upstream}"),
                        )
                        .with_code("upstream_error")
                    }
                    FailureClass::StreamBroken => ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "api_error",
                        format!("deployment {d} broke off its stream{upstream}"),
                    )
                    .with_code("upstream_stream_broken"),
                    // The gateway's credentials or model mapping are wrong: not the client's key.
                    FailureClass::Auth => ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "api_error",
                        format!("deployment {d} rejected the gateway's credentials"),
                    )
                    .with_code("upstream_auth_error"),
                    FailureClass::NotFound => ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "api_error",
                        format!("deployment {d} does not know the configured model{upstream}"),
                    )
                    .with_code("upstream_not_found"),
                    FailureClass::BadRequest => ApiError::bad_request(format!(
                        "deployment {d} rejected the request{upstream}"
                    ))
                    .with_code("bad_request"),
                    FailureClass::ContextWindowExceeded => ApiError::bad_request(format!(
                        "the prompt exceeds the context window of deployment {d}{upstream}"
                    ))
                    .with_param("messages")
                    .with_code("context_length_exceeded"),
                    FailureClass::ContentPolicy => ApiError::bad_request(format!(
                        "deployment {d} refused the request under its content policy{upstream}"
                    ))
                    .with_code("content_policy_violation"),
                }
            }
        }
    }
}
