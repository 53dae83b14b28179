//! What the dialects share: the normalised view of a request (`Call`), the
//! provider-neutral error catalogue (`ApiError`) each dialect renders in its
//! own wire shape, and small wire helpers (SSE framing, `retry-after`).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::faults::RetryAfter;
use crate::journal::Endpoint;
use crate::seeded::StableHasher;

/// A request, normalised across dialects.
#[derive(Debug, Clone, Default)]
pub(crate) struct Call {
    pub endpoint: Option<Endpoint>,
    /// The model asked for (Azure: the deployment path segment).
    pub model: Option<String>,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// `max_tokens` / `max_completion_tokens`.
    pub max_tokens: Option<u64>,
    /// All message text, joined with newlines.
    pub prompt: String,
    pub prompt_tokens: u64,
    /// Embedding inputs.
    pub inputs: Vec<String>,
    /// Embedding `dimensions`.
    pub dimensions: Option<usize>,
}

/// Why a request fails, before it is rendered in a dialect's shape.
#[derive(Debug, Clone)]
pub(crate) enum ApiError {
    /// Malformed or invalid request body.
    BadRequest {
        message: String,
        param: Option<String>,
        code: Option<&'static str>,
    },
    /// No credentials where the provider requires them.
    AuthMissing,
    /// Wrong credentials (also the `auth_error` fault).
    AuthInvalid,
    /// Anthropic: no `anthropic-version` header.
    VersionMissing,
    /// Unknown route.
    NotFound { method: String, path: String },
    /// Azure: `api-version` query parameter missing.
    ApiVersionMissing,
    /// Model (Azure: deployment) not served here.
    ModelNotFound { model: String },
    /// Prompt longer than the context window.
    ContextWindow { window: u64, prompt_tokens: u64 },
    /// Content-policy refusal as an error status.
    ContentPolicy,
    /// 429.
    RateLimited {
        retry_after: Vec<RetryAfter>,
        message: Option<String>,
    },
    /// Anthropic 529 / OpenAI 503.
    Overloaded { retry_after: Vec<RetryAfter> },
    /// Any other status, in the provider's shape for that status.
    Status {
        status: u16,
        message: Option<String>,
        retry_after: Vec<RetryAfter>,
    },
}

impl ApiError {
    /// The journal's `rejected` reason when the mock itself (not a fault)
    /// refused the request.
    pub fn rejected_reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::AuthMissing | ApiError::VersionMissing => "auth_missing",
            ApiError::AuthInvalid => "auth_invalid",
            ApiError::NotFound { .. } | ApiError::ApiVersionMissing => "not_found",
            ApiError::ModelNotFound { .. } => "model_not_found",
            ApiError::ContextWindow { .. } => "context_window_exceeded",
            ApiError::ContentPolicy => "content_policy",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Status { .. } => "error_status",
        }
    }

    pub fn bad_request(
        message: impl Into<String>,
        param: Option<&str>,
        code: Option<&'static str>,
    ) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            param: param.map(str::to_owned),
            code,
        }
    }
}

/// How an answer finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    Length,
    ContentFilter,
}

/// The generated answer to a chat request.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// One piece per output token / stream chunk.
    pub pieces: Vec<Cow<'static, str>>,
    pub finish: Finish,
}

impl Answer {
    pub fn text(&self) -> String {
        self.pieces.concat()
    }

    pub fn completion_tokens(&self) -> u64 {
        self.pieces.len() as u64
    }
}

/// One chat message for the typed fast path of request parsing.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct FastMessage<'a> {
    #[serde(borrow)]
    pub role: Cow<'a, str>,
    #[serde(default, borrow)]
    pub content: Option<crate::content::Pieces<'a>>,
}

/// Whether a body is a JSON object (typed structs would also accept arrays).
pub(crate) fn looks_like_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Per-request rendering context.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub seed: u64,
    pub deployment: &'a str,
    /// OpenAI `system_fingerprint` of this deployment.
    pub fingerprint: &'a str,
    /// Per-deployment request number; ids derive from it.
    pub request_no: u64,
    /// The model to echo in bodies.
    pub model: &'a str,
    pub prompt_tokens: u64,
    /// Azure `api-version`.
    pub api_version: Option<&'a str>,
    /// Unix seconds for `created` fields.
    pub created: u64,
}

impl Ctx<'_> {
    /// Random bits for ids of this request.
    pub fn id_bits(&self, salt: &str) -> u64 {
        StableHasher::new(self.seed)
            .str("id")
            .str(self.deployment)
            .u64(self.request_no)
            .str(salt)
            .finish()
    }
}

/// `data: {json}\n\n`
pub(crate) fn sse_data<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    // Serialising plain data to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    out
}

/// `event: name\ndata: {json}\n\n`
pub(crate) fn sse_event<T: serde::Serialize + ?Sized>(name: &str, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    out
}

pub(crate) fn to_body<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let _ = serde_json::to_writer(&mut out, value);
    out
}

/// Headers for each `retry-after` form.
pub(crate) fn retry_after_headers(list: &[RetryAfter], out: &mut Vec<(&'static str, String)>) {
    for r in list {
        match r {
            RetryAfter::Seconds(s) => out.push(("retry-after", s.to_string())),
            RetryAfter::Ms(ms) => out.push(("retry-after-ms", ms.to_string())),
            RetryAfter::HttpDateIn(d) => {
                let now = SystemTime::now();
                let offset = Duration::from_millis(d.millis.unsigned_abs());
                let at = if d.millis >= 0 {
                    now.checked_add(offset)
                } else {
                    now.checked_sub(offset)
                }
                .unwrap_or(now);
                out.push(("retry-after", httpdate::fmt_http_date(at)));
            }
            RetryAfter::Raw(text) => out.push(("retry-after", text.clone())),
        }
    }
}

/// The first announced delay, in milliseconds.
pub(crate) fn announced_millis(list: &[RetryAfter]) -> Option<i64> {
    list.iter().find_map(RetryAfter::millis)
}

/// Go-style duration text as in OpenAI's `x-ratelimit-reset-*` headers
/// (`"6ms"`, `"1.5s"`, `"6m0s"`).
pub(crate) fn go_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = ms as f64 / 1000.0;
        let text = format!("{s:.3}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text}s")
    } else {
        let m = ms / 60_000;
        let rest = (ms % 60_000) / 1000;
        format!("{m}m{rest}s")
    }
}

/// JSON type name as the providers' validation messages say it.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::SignedDuration;
    use serde_json::json;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(6), "6ms");
        assert_eq!(go_duration(1500), "1.5s");
        assert_eq!(go_duration(2000), "2s");
        assert_eq!(go_duration(360_000), "6m0s");
        assert_eq!(go_duration(-5), "0ms");
    }

    #[test]
    fn retry_after_forms() {
        let mut h = Vec::new();
        retry_after_headers(
            &[
                RetryAfter::Seconds(-1),
                RetryAfter::Ms(1500),
                RetryAfter::HttpDateIn(SignedDuration { millis: 2000 }),
                RetryAfter::Raw("soon".into()),
            ],
            &mut h,
        );
        assert_eq!(h[0], ("retry-after", "-1".to_owned()));
        assert_eq!(h[1], ("retry-after-ms", "1500".to_owned()));
        assert!(httpdate::parse_http_date(&h[2].1).is_ok());
        assert_eq!(h[3], ("retry-after", "soon".to_owned()));
    }

    #[test]
    fn sse_framing() {
        assert_eq!(sse_data(&json!({"a": 1})), b"data: {\"a\":1}\n\n");
        assert_eq!(
            sse_event("ping", &json!({"type": "ping"})),
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
    }
}
