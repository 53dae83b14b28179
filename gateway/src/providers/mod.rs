//! Talks to upstream providers. Translation between the OpenAI chat-completions shape (what
//! clients send and receive) and each upstream dialect lives in `openai.rs` and `anthropic.rs`;
//! upstream failures are classified once, here, into a [`FailureClass`]. Choosing deployments,
//! retrying and falling back are the router's job.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use serde_json::{Map, Value};

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
    /// The full OpenAI-shaped body. `model` is rewritten per deployment by the dialect.
    pub body: Map<String, Value>,
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
    pub body: Value,
    pub usage: Usage,
}

/// One item of a translated stream: an OpenAI `chat.completion.chunk` object.
/// The stream ends with `Ok(None)`-free semantics: the stream yields chunks and finishes
/// normally only if the upstream sent its terminator; otherwise it yields an `Err`
/// with class `StreamBroken` (or `Timeout` when no chunk arrived within `stream_timeout`).
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Value, ProviderError>> + Send>>;

pub mod client;
pub use client::ProviderClient;
