//! The I/O half of providers: one pooled HTTP client, dispatch by dialect. Sends what a
//! [`Dialect`] built, hands the answer back to it for parsing and classification, and maps
//! transport failures (connect, reset, timeout) to failure classes itself.

use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Map, Value};

use super::{
    invalid_response, sse, Anthropic, Azure, ChatRequest, ChatResponse, ChunkStream, Dialect,
    FailureClass, OpenAi, ProviderError, UpstreamRequest,
};
use crate::config::{Deployment, DeploymentId, ProviderKind};

/// Idle keep-alive connections kept per upstream host. Generous: a busy gateway talks to few
/// hosts, and a reconnect (TCP + TLS) costs more than an idle socket.
const POOL_MAX_IDLE_PER_HOST: usize = 512;
/// Idle connections are closed after this; upstream load balancers commonly drop at 60-350 s.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// Shared upstream client (connection pool). Cheap to clone.
#[derive(Clone, Debug)]
pub struct ProviderClient {
    http: reqwest::Client,
}

impl ProviderClient {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(30))
            // A redirect would carry `api-key`/`x-api-key` to another host; API upstreams
            // never redirect, so a 3xx is reported as a server error instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            // Building fails only when the TLS backend cannot initialise, and then the default
            // client (which also panics there) is all that is left.
            .unwrap_or_default();
        Self::with_client(http)
    }

    /// Uses the given HTTP client (tests, custom TLS or proxies).
    pub fn with_client(http: reqwest::Client) -> Self {
        ProviderClient { http }
    }

    /// Non-streaming chat completion. `timeout` bounds the whole call.
    pub async fn chat(
        &self,
        d: &Deployment,
        req: &ChatRequest,
        timeout: Duration,
    ) -> Result<ChatResponse, ProviderError> {
        match d.provider {
            ProviderKind::OpenAi => self.chat_with(OpenAi, d, req, timeout).await,
            ProviderKind::Azure => self.chat_with(Azure, d, req, timeout).await,
            ProviderKind::Anthropic => self.chat_with(Anthropic, d, req, timeout).await,
        }
    }

    /// Streaming chat completion. Resolves once the upstream answered with a success status
    /// (errors before the stream are returned here, classified); `timeout` bounds the wait for
    /// the response head and for each subsequent chunk.
    pub async fn chat_stream(
        &self,
        d: &Deployment,
        req: &ChatRequest,
        timeout: Duration,
    ) -> Result<ChunkStream, ProviderError> {
        match d.provider {
            ProviderKind::OpenAi => self.chat_stream_with(OpenAi, d, req, timeout).await,
            ProviderKind::Azure => self.chat_stream_with(Azure, d, req, timeout).await,
            ProviderKind::Anthropic => self.chat_stream_with(Anthropic, d, req, timeout).await,
        }
    }

    /// Embeddings (OpenAI and Azure only). Returns the OpenAI-shaped body and prompt tokens.
    pub async fn embeddings(
        &self,
        d: &Deployment,
        body: &serde_json::Map<String, Value>,
        timeout: Duration,
    ) -> Result<(Value, u64), ProviderError> {
        match d.provider {
            ProviderKind::OpenAi => self.embeddings_with(OpenAi, d, body, timeout).await,
            ProviderKind::Azure => self.embeddings_with(Azure, d, body, timeout).await,
            ProviderKind::Anthropic => self.embeddings_with(Anthropic, d, body, timeout).await,
        }
    }

    async fn chat_with<D: Dialect>(
        &self,
        dialect: D,
        d: &Deployment,
        req: &ChatRequest,
        timeout: Duration,
    ) -> Result<ChatResponse, ProviderError> {
        let upstream = dialect.build_request(req, d, false)?;
        let call = async {
            let (status, headers, body) = self.exchange(upstream, &d.id).await?;
            dialect.parse_response(status, &headers, &body, d)
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(timed_out(&d.id, timeout)))
    }

    async fn chat_stream_with<D: Dialect>(
        &self,
        dialect: D,
        d: &Deployment,
        req: &ChatRequest,
        timeout: Duration,
    ) -> Result<ChunkStream, ProviderError> {
        let upstream = dialect.build_request(req, d, true)?;
        let head = async {
            let mut response = self.send(upstream, &d.id).await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let headers = std::mem::take(response.headers_mut());
            let body = response.bytes().await.map_err(|e| body_failed(&d.id, &e))?;
            Err(dialect.parse_error(status, &headers, &body, &d.id))
        };
        let response = tokio::time::timeout(timeout, head)
            .await
            .unwrap_or_else(|_| Err(timed_out(&d.id, timeout)))?;
        let bytes = response
            .bytes_stream()
            .map(|r| r.map_err(|e| Cause::of(&e)));
        Ok(sse::translate(
            dialect,
            dialect.stream_state(req),
            bytes,
            d.id.clone(),
            timeout,
        ))
    }

    async fn embeddings_with<D: Dialect>(
        &self,
        dialect: D,
        d: &Deployment,
        body: &Map<String, Value>,
        timeout: Duration,
    ) -> Result<(Value, u64), ProviderError> {
        let upstream = dialect.build_embeddings_request(body, d)?;
        let call = async {
            let (status, headers, body) = self.exchange(upstream, &d.id).await?;
            if !status.is_success() {
                return Err(dialect.parse_error(status, &headers, &body, &d.id));
            }
            let body: Value =
                serde_json::from_slice(&body).map_err(|_| invalid_response(&d.id, status))?;
            if !body.get("data").is_some_and(Value::is_array) {
                return Err(invalid_response(&d.id, status));
            }
            let tokens = body
                .pointer("/usage/prompt_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            Ok((body, tokens))
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(timed_out(&d.id, timeout)))
    }

    async fn send(
        &self,
        upstream: UpstreamRequest,
        d: &DeploymentId,
    ) -> Result<reqwest::Response, ProviderError> {
        self.http
            .post(upstream.url)
            .headers(upstream.headers)
            .body(upstream.body)
            .send()
            .await
            .map_err(|e| send_failed(d, &e))
    }

    /// Sends and reads the whole answer.
    async fn exchange(
        &self,
        upstream: UpstreamRequest,
        d: &DeploymentId,
    ) -> Result<(http::StatusCode, http::HeaderMap, bytes::Bytes), ProviderError> {
        let mut response = self.send(upstream, d).await?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let body = response.bytes().await.map_err(|e| body_failed(d, &e))?;
        Ok((status, headers, body))
    }
}

impl Default for ProviderClient {
    fn default() -> Self {
        Self::new()
    }
}

fn timed_out(d: &DeploymentId, timeout: Duration) -> ProviderError {
    ProviderError::new(
        d,
        FailureClass::Timeout,
        format!("upstream did not answer within {timeout:?}"),
    )
}

/// A failure before any response: refused, reset, TLS, DNS, or reqwest's own timeout.
fn send_failed(d: &DeploymentId, e: &reqwest::Error) -> ProviderError {
    let (class, what) = if e.is_timeout() {
        (FailureClass::Timeout, "upstream timed out")
    } else if e.is_connect() {
        (FailureClass::Connection, "could not connect to upstream")
    } else {
        (
            FailureClass::Connection,
            "upstream connection failed before a response",
        )
    };
    ProviderError::new(d, class, format!("{what}: {}", Cause::of(e)))
}

/// A failure while reading a response body the upstream had started to send.
fn body_failed(d: &DeploymentId, e: &reqwest::Error) -> ProviderError {
    let (class, what) = if e.is_timeout() {
        (FailureClass::Timeout, "upstream timed out")
    } else {
        (
            FailureClass::Connection,
            "reading the upstream response failed",
        )
    };
    ProviderError::new(d, class, format!("{what}: {}", Cause::of(e)))
}

/// The innermost cause of a transport error ("connection reset by peer"), without reqwest's
/// outer text, which names the URL.
struct Cause(String);

impl Cause {
    fn of(e: &reqwest::Error) -> Cause {
        let mut cause: &dyn std::error::Error = e;
        while let Some(source) = cause.source() {
            cause = source;
        }
        if std::ptr::addr_eq(cause, e as &dyn std::error::Error) {
            return Cause(
                if e.is_body() || e.is_decode() {
                    "body error"
                } else {
                    "request error"
                }
                .into(),
            );
        }
        Cause(cause.to_string())
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
