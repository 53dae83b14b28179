//! Talks to upstream providers. Translation between the OpenAI chat-completions shape (what
//! clients send and receive) and each upstream dialect lives in `openai.rs` and `anthropic.rs`;
//! upstream failures are classified once, here, into a [`FailureClass`]. Choosing deployments,
//! retrying and falling back are the router's job.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use serde_json::Value;

use crate::config::DeploymentId;

/// Why an upstream call failed, decided where the upstream answer is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureClass {
    /// 429, Anthropic 529 `overloaded_error`.
    RateLimited,
    /// No answer (or no next chunk) within the timeout.
    Timeout,
    /// Connection refused or reset before a response.
    Connection,
    /// 5xx, or a 2xx body that is not a valid response.
    ServerError,
    /// 401 / 403.
    Auth,
    /// 404: unknown model or deployment upstream.
    NotFound,
    /// Other 4xx.
    BadRequest,
    /// The prompt is longer than the model's context window.
    ContextWindowExceeded,
    /// Refused by the provider's content filter (error, or `finish_reason: content_filter`).
    ContentPolicy,
    /// A stream that ended without its terminator, cut mid-body, or carried an in-band error.
    StreamBroken,
}

impl FailureClass {
    pub const ALL: [FailureClass; 10] = [
        FailureClass::RateLimited,
        FailureClass::Timeout,
        FailureClass::Connection,
        FailureClass::ServerError,
        FailureClass::Auth,
        FailureClass::NotFound,
        FailureClass::BadRequest,
        FailureClass::ContextWindowExceeded,
        FailureClass::ContentPolicy,
        FailureClass::StreamBroken,
    ];

    /// Label used in metrics, logs and drill evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::RateLimited => "rate_limited",
            FailureClass::Timeout => "timeout",
            FailureClass::Connection => "connection_error",
            FailureClass::ServerError => "server_error",
            FailureClass::Auth => "auth_error",
            FailureClass::NotFound => "not_found",
            FailureClass::BadRequest => "bad_request",
            FailureClass::ContextWindowExceeded => "context_window_exceeded",
            FailureClass::ContentPolicy => "content_policy",
            FailureClass::StreamBroken => "stream_broken",
        }
    }

    /// Whether retrying the same group can help. Auth, bad request, context window and
    /// content policy failures are deterministic for the same input: never retried.
    pub fn retryable(self) -> bool {
        !matches!(
            self,
            FailureClass::Auth
                | FailureClass::BadRequest
                | FailureClass::ContextWindowExceeded
                | FailureClass::ContentPolicy
                | FailureClass::NotFound
        )
    }

    /// Whether the failure counts toward the deployment's cooldown (it says something about
    /// the deployment's health rather than the request).
    pub fn cools_down(self) -> bool {
        matches!(
            self,
            FailureClass::RateLimited
                | FailureClass::Timeout
                | FailureClass::Connection
                | FailureClass::ServerError
                | FailureClass::Auth
                | FailureClass::NotFound
                | FailureClass::StreamBroken
        )
    }

    /// Which fallback list applies after the group is exhausted.
    pub fn fallback_kind(self) -> FallbackKind {
        match self {
            FailureClass::ContextWindowExceeded => FallbackKind::ContextWindow,
            FailureClass::ContentPolicy => FallbackKind::ContentPolicy,
            // A malformed request fails the same way everywhere.
            FailureClass::BadRequest => FallbackKind::None,
            _ => FallbackKind::General,
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which fallback list a failure selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackKind {
    /// `fallbacks`, then `default_fallbacks`.
    General,
    /// `context_window_fallbacks`.
    ContextWindow,
    /// `content_policy_fallbacks`.
    ContentPolicy,
    /// No fallback applies.
    None,
}

/// A classified upstream failure. `message` is safe to show a client: it is the provider's
/// own error message (truncated), never a raw body, header or secret.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{deployment}: {class}{}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
pub struct ProviderError {
    pub deployment: DeploymentId,
    pub class: FailureClass,
    /// Upstream HTTP status when there was one.
    pub status: Option<u16>,
    /// Upstream `retry-after-ms` / `retry-after` (seconds or HTTP-date), as a duration from now.
    pub retry_after: Option<Duration>,
    pub message: String,
}

impl ProviderError {
    pub fn new(deployment: &DeploymentId, class: FailureClass, message: impl Into<String>) -> Self {
        let mut message: String = message.into();
        if message.len() > 500 {
            let mut cut = 500;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        ProviderError {
            deployment: deployment.clone(),
            class,
            status: None,
            retry_after: None,
            message,
        }
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }
}

/// A chat-completions request as the client sent it (OpenAI shape), with the fields the
/// gateway needs pulled out. Gateway-only fields (`fallbacks`, `disable_fallbacks`, ...) have
/// already been removed from `body`.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    /// The full OpenAI-shaped body, one level deep. `model` is rewritten per deployment by
    /// the dialect.
    pub body: body::RawObject,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

/// Token counts reported by the upstream (used for spend and tpm accounting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A complete (non-streaming) response, already in OpenAI `chat.completion` shape.
#[derive(Clone, Debug)]
pub struct ChatResponse {
    /// The JSON the client gets: an OpenAI-dialect upstream's bytes unchanged, a translated
    /// answer serialized once.
    pub body: Bytes,
    pub usage: Usage,
}

impl ChatResponse {
    /// The body as a JSON tree (tests and diagnostics; the proxy never parses it again).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One item of a translated stream: an OpenAI `chat.completion.chunk` object.
/// The stream ends with `Ok(None)`-free semantics: the stream yields chunks and finishes
/// normally only if the upstream sent its terminator; otherwise it yields an `Err`
/// with class `StreamBroken` (or `Timeout` when no chunk arrived within `stream_timeout`).
///
/// Details the consumer relies on:
/// - Every dialect yields chunks in OpenAI shape; the first chunk carries
///   `delta.role: "assistant"` and the last content chunk carries `finish_reason`.
/// - **Usage chunk.** The upstream is always asked for token usage (OpenAI/Azure get
///   `stream_options.include_usage: true`; Anthropic reports it natively), so a normal stream
///   ends with one usage-only chunk, `{"choices": [], "usage": {...}}`, *whatever the client
///   asked*. It is left in the stream so the gateway can account tokens: read it with
///   [`chunk_usage`], recognise it with [`is_usage_chunk`], and drop it before it reaches a client
///   whose request had no `stream_options.include_usage` ([`ChatRequest::include_usage`]).
///   For such clients the per-chunk `"usage": null` that OpenAI adds is already removed.
///   Exception: Azure `api-version`s older than `2024-09-01-preview` refuse
///   `stream_options`, so their streams end without a usage chunk.
/// - Errors are terminal: after an `Err` the stream yields nothing more. A stream cut, an EOF
///   without terminator (`data: [DONE]`, Anthropic `message_stop`) or an in-band error event
///   is `StreamBroken` (message from the provider's error event when it had one); no upstream
///   event within the timeout is `Timeout`. Once a chunk has gone to the client the router
///   cannot fall back any more: it must end the client's stream with an in-band error.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Value, ProviderError>> + Send>>;

pub mod body;
pub mod client;
mod h1;
pub use client::ProviderClient;

pub mod anthropic;
pub mod openai;
mod scan;
pub mod sse;

pub use anthropic::Anthropic;
pub use openai::{Azure, OpenAi};
pub use sse::SseEvent;

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::config::{Deployment, ProviderKind};

/// One upstream HTTP call, fully built by a [`Dialect`]: the client only sends it (`POST`).
/// Credential headers are marked sensitive, so `Debug` shows them as `Sensitive`.
#[derive(Debug)]
pub struct UpstreamRequest {
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What [`Dialect::parse_event`] learnt from one upstream SSE event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamControl {
    /// Keep reading.
    Continue,
    /// The upstream's terminator: the stream ended normally.
    Done,
}

/// How one upstream API dialect is spoken: building the upstream request, reading its answer,
/// translating its SSE events. No I/O here (the HTTP half is [`ProviderClient`]), so every
/// method is tested against recorded fixtures. OpenAI-compatible vendors share one dialect.
pub trait Dialect: Copy + Send + Sync + 'static {
    /// The config tag (`litellm_params.model` prefix) this dialect serves.
    const TYPE: &'static str;

    /// Per-stream translation state, created once per streaming call.
    type StreamState: Send + 'static;

    /// The upstream chat request for `req` on deployment `d`. `stream` selects the streaming
    /// form regardless of what the client body says (the router chose the call).
    fn build_request(
        &self,
        req: &ChatRequest,
        d: &Deployment,
        stream: bool,
    ) -> Result<UpstreamRequest, ProviderError>;

    /// A complete upstream answer: a 2xx becomes an OpenAI `chat.completion`; anything else,
    /// and a 2xx that is not a valid completion, is a classified [`ProviderError`].
    fn parse_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &Bytes,
        d: &Deployment,
    ) -> Result<ChatResponse, ProviderError>;

    /// Classifies a non-2xx answer (status, provider error body, Retry-After headers).
    fn parse_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        d: &DeploymentId,
    ) -> ProviderError;

    /// Fresh translation state for one streaming call of `req`.
    fn stream_state(&self, req: &ChatRequest) -> Self::StreamState;

    /// Translates one upstream SSE event, pushing zero or more OpenAI `chat.completion.chunk`
    /// objects onto `out`. An in-band upstream error is returned as `StreamBroken`.
    fn parse_event(
        &self,
        state: &mut Self::StreamState,
        event: &SseEvent,
        d: &DeploymentId,
        out: &mut VecDeque<Value>,
    ) -> Result<StreamControl, ProviderError>;

    /// The upstream embeddings request. Dialects without an embeddings API keep this default.
    fn build_embeddings_request(
        &self,
        _body: &body::RawObject,
        d: &Deployment,
    ) -> Result<UpstreamRequest, ProviderError> {
        Err(ProviderError::new(
            &d.id,
            FailureClass::BadRequest,
            format!("embeddings are not supported by {} deployments", Self::TYPE),
        ))
    }
}

/// Whether `chunk` is the usage-only chunk that ends a normal stream (`choices: []` with a
/// `usage` object). See [`ChunkStream`].
pub fn is_usage_chunk(chunk: &Value) -> bool {
    chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|c| c.is_empty())
        && chunk.get("usage").is_some_and(Value::is_object)
}

/// Token usage carried by a chunk (the usage chunk, or any chunk of a server that attaches
/// usage to content chunks). The last one seen in a stream is the total.
pub fn chunk_usage(chunk: &Value) -> Option<Usage> {
    chunk
        .get("usage")
        .filter(|u| u.is_object())
        .map(usage_from_openai)
}

/// The model name to send upstream: the deployment's `upstream_model`, or for wildcard
/// deployments (`upstream_model == "*"`) the client's model with a known provider prefix
/// (`openai/`, `azure/`, `anthropic/`) stripped.
pub fn upstream_model<'a>(
    client_model: Option<&'a str>,
    d: &'a Deployment,
) -> Result<&'a str, ProviderError> {
    if d.upstream_model != "*" {
        return Ok(&d.upstream_model);
    }
    let model = client_model.filter(|m| !m.is_empty()).ok_or_else(|| {
        ProviderError::new(&d.id, FailureClass::BadRequest, "request has no model")
    })?;
    let stripped = ProviderKind::KNOWN_PREFIXES.iter().find_map(|(prefix, _)| {
        model
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
    });
    Ok(stripped.filter(|m| !m.is_empty()).unwrap_or(model))
}

/// Upstream Retry-After as a duration from `now`: `retry-after-ms` (float milliseconds) wins
/// over `retry-after` (integer or float seconds, or an HTTP-date). Negative, non-finite,
/// unparsable and past values are ignored.
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    fn number(v: &HeaderValue) -> Option<f64> {
        let n: f64 = v.to_str().ok()?.trim().parse().ok()?;
        (n.is_finite() && n >= 0.0).then_some(n)
    }
    if let Some(ms) = headers.get("retry-after-ms").and_then(number) {
        if let Ok(d) = Duration::try_from_secs_f64(ms / 1000.0) {
            return Some(d);
        }
    }
    let v = headers.get(http::header::RETRY_AFTER)?;
    if let Some(secs) = number(v) {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let date = httpdate::parse_http_date(v.to_str().ok()?.trim()).ok()?;
    date.duration_since(now).ok()
}

/// The class a status alone decides; `None` for the 4xx statuses whose body must be read
/// (bad request, context window, content policy). Dialects refine this (Anthropic 529).
pub(crate) fn class_for_status(status: StatusCode) -> Option<FailureClass> {
    match status.as_u16() {
        429 => Some(FailureClass::RateLimited),
        408 => Some(FailureClass::Timeout),
        401 | 403 => Some(FailureClass::Auth),
        404 => Some(FailureClass::NotFound),
        400..=499 => None,
        // 5xx, and the 1xx/3xx an API upstream never answers with (redirects are not followed).
        _ => Some(FailureClass::ServerError),
    }
}

/// Whether a provider error message says the prompt does not fit the context window. The
/// phrases are the ones OpenAI, Azure, Anthropic and the common OpenAI-compatible servers
/// (vLLM, llama.cpp) use.
pub(crate) fn mentions_context_window(message: &str) -> bool {
    const PHRASES: &[&str] = &[
        "maximum context length",
        "context_length_exceeded",
        "context length exceeded",
        "prompt is too long",
        "exceed context limit",
        "exceeds the context window",
        "is longer than the model's context length",
        "model's maximum context limit",
        "input tokens exceed the configured limit",
        "exceeds the available context size",
        "reduce the length of the messages",
    ];
    let lower = message.to_ascii_lowercase();
    // OpenAI's 64-character `user` limit says "string too long" but is a plain bad request.
    !lower.contains("string_above_max_length") && PHRASES.iter().any(|p| lower.contains(p))
}

/// The error a 2xx answer gets when its body is not a valid response. Never carries the body.
pub(crate) fn invalid_response(d: &DeploymentId, status: StatusCode) -> ProviderError {
    ProviderError::new(
        d,
        FailureClass::ServerError,
        "invalid response from upstream",
    )
    .with_status(status.as_u16())
}

/// A 200 whose choices were stopped by the provider's content filter is a content-policy
/// failure (so `content_policy_fallbacks` apply), not a success.
pub(crate) fn reject_content_filter(
    body: &Value,
    d: &DeploymentId,
    status: StatusCode,
) -> Result<(), ProviderError> {
    let filtered = body
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.get("finish_reason").and_then(Value::as_str) == Some("content_filter"))
        });
    if filtered {
        return Err(content_filtered(d, status));
    }
    Ok(())
}

/// The failure of a 2xx answer the provider's content filter stopped.
pub(crate) fn content_filtered(d: &DeploymentId, status: StatusCode) -> ProviderError {
    ProviderError::new(
        d,
        FailureClass::ContentPolicy,
        "the completion was blocked by the provider's content filter",
    )
    .with_status(status.as_u16())
}

/// `usage.prompt_tokens` / `usage.completion_tokens` of an OpenAI-shaped usage object.
pub(crate) fn usage_from_openai(usage: &Value) -> Usage {
    let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        prompt_tokens: n("prompt_tokens"),
        completion_tokens: n("completion_tokens"),
    }
}

/// Seconds since the Unix epoch, for the `created` field of translated responses.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `application/json` request headers plus one credential header (marked sensitive).
pub(crate) fn json_headers(
    d: &Deployment,
    auth: Option<(&'static str, String)>,
) -> Result<HeaderMap, ProviderError> {
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some((name, value)) = auth {
        let mut value = HeaderValue::try_from(value).map_err(|_| {
            // Never echo the key: only say which deployment's key is unusable.
            ProviderError::new(
                &d.id,
                FailureClass::Auth,
                "api_key is not a valid HTTP header value",
            )
        })?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(headers)
}

/// The message a provider put in its error body: OpenAI/Azure `error.message`, Anthropic
/// `error.message`, or the flat `message`/`detail`/`error` strings of OpenAI-compatible servers.
pub(crate) fn provider_error_message(body: &Value) -> Option<&str> {
    let error = body.get("error");
    error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .or_else(|| error.and_then(Value::as_str))
        .or_else(|| body.get("message").and_then(Value::as_str))
        .or_else(|| body.get("detail").and_then(Value::as_str))
        .filter(|m| !m.trim().is_empty())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::ModelInfo;

    /// A deployment with a key and nothing else configured.
    pub(crate) fn deployment(provider: ProviderKind, upstream_model: &str) -> Deployment {
        Deployment {
            id: DeploymentId("dep-1".into()),
            model_name: "group".into(),
            provider,
            upstream_model: upstream_model.into(),
            api_base: None,
            api_key: Some(String::from("sk-test-secret").into()),
            api_version: None,
            timeout: None,
            stream_timeout: None,
            rpm: None,
            tpm: None,
            weight: None,
            order: None,
            max_parallel_requests: None,
            region_name: None,
            cooldown_time: None,
            info: ModelInfo::default(),
        }
    }

    /// A request as the API layer hands it over.
    pub(crate) fn chat_request(body: Value) -> ChatRequest {
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let include_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let Value::Object(body) = body else {
            panic!("request body must be an object")
        };
        ChatRequest {
            body: body::RawObject::from_map(&body),
            stream,
            include_usage,
        }
    }

    /// Runs an SSE fixture through a dialect, fed in `piece`-byte fragments (events split
    /// across reads, as on the wire).
    pub(crate) async fn run_sse<D: Dialect>(
        dialect: D,
        req: &ChatRequest,
        sse: &str,
        piece: usize,
    ) -> Vec<Result<Value, ProviderError>> {
        use futures::StreamExt;
        let pieces: Vec<Result<Bytes, std::convert::Infallible>> = sse
            .as_bytes()
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let stream = sse::translate(
            dialect,
            dialect.stream_state(req),
            futures::stream::iter(pieces),
            DeploymentId("dep-1".into()),
            Duration::from_secs(5),
        );
        stream.collect().await
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ra = |pairs: &[(&'static str, &str)]| parse_retry_after(&headers(pairs), now);
        assert_eq!(ra(&[("retry-after", "7")]), Some(Duration::from_secs(7)));
        assert_eq!(
            ra(&[("retry-after", "1.5")]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(ra(&[("retry-after", "0")]), Some(Duration::ZERO));
        assert_eq!(
            ra(&[("retry-after-ms", "250.5")]),
            Some(Duration::from_micros(250_500))
        );
        // retry-after-ms wins when both are present.
        assert_eq!(
            ra(&[("retry-after", "9"), ("retry-after-ms", "20")]),
            Some(Duration::from_millis(20))
        );
        // An unusable retry-after-ms falls back to retry-after.
        assert_eq!(
            ra(&[("retry-after", "3"), ("retry-after-ms", "soon")]),
            Some(Duration::from_secs(3))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(ra(&[("retry-after", &date)]), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(ra(&[("retry-after", &past)]), None);
        for garbage in ["-1", "-0.5", "NaN", "inf", "soon", "", "1e400"] {
            assert_eq!(ra(&[("retry-after", garbage)]), None, "{garbage:?}");
            assert_eq!(ra(&[("retry-after-ms", garbage)]), None, "{garbage:?}");
        }
        assert_eq!(ra(&[]), None);
    }

    #[test]
    fn status_classes() {
        let c = |s: u16| class_for_status(StatusCode::from_u16(s).unwrap());
        assert_eq!(c(429), Some(FailureClass::RateLimited));
        assert_eq!(c(408), Some(FailureClass::Timeout));
        assert_eq!(c(401), Some(FailureClass::Auth));
        assert_eq!(c(403), Some(FailureClass::Auth));
        assert_eq!(c(404), Some(FailureClass::NotFound));
        assert_eq!(c(400), None);
        assert_eq!(c(422), None);
        assert_eq!(c(500), Some(FailureClass::ServerError));
        assert_eq!(c(503), Some(FailureClass::ServerError));
        assert_eq!(c(302), Some(FailureClass::ServerError));
    }

    #[test]
    fn context_window_phrases() {
        assert!(mentions_context_window(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130532 tokens."
        ));
        assert!(mentions_context_window(
            "prompt is too long: 215439 tokens > 200000 maximum"
        ));
        assert!(mentions_context_window(
            "input length and `max_tokens` exceed context limit: 197865 + 21333 > 200000"
        ));
        assert!(!mentions_context_window(
            "Invalid 'user': string too long. Expected a string with maximum length 64 (string_above_max_length)"
        ));
        assert!(!mentions_context_window("Invalid value for 'temperature'"));
    }

    #[test]
    fn patched_object_replaces_in_place_and_appends() {
        let base = body::RawObject::parse(bytes::Bytes::from_static(
            br#"{"model":"g","messages":[],"stream":true,"n":1}"#,
        ))
        .unwrap()
        .unwrap();
        let out = base.write_patched(&[("model", r#""up""#), ("extra", "true")], &["stream"]);
        assert_eq!(out, br#"{"model":"up","messages":[],"n":1,"extra":true}"#);
    }

    #[test]
    fn usage_chunk_recognised() {
        let usage = serde_json::json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}});
        assert!(is_usage_chunk(&usage));
        assert_eq!(
            chunk_usage(&usage),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4
            })
        );
        let azure_filter = serde_json::json!({"choices": [], "prompt_filter_results": []});
        assert!(!is_usage_chunk(&azure_filter));
        let content = serde_json::json!({"choices": [{"delta": {"content": "x"}}], "usage": null});
        assert!(!is_usage_chunk(&content));
        assert_eq!(chunk_usage(&content), None);
    }
}
