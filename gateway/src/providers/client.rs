//! The I/O half of providers: one pooled HTTP client, dispatch by dialect. Sends what a
//! [`Dialect`] built, hands the answer back to it for parsing and classification, and maps
//! transport failures (connect, reset, timeout) to failure classes itself.
//!
//! The client is hyper's own pooled client with rustls (webpki roots; HTTP/2 where the
//! upstream offers it by ALPN), not a higher-level wrapper: on the proxy's hot path a URL
//! parser, redirect machinery and body adapters cost more than the whole routing decision.
//! Redirects are not followed (an API upstream never redirects; a 3xx is a server error) and
//! proxy environment variables (`HTTPS_PROXY`) are not read.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::Value;

use super::body::RawObject;
use super::h1::H1Pool;
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
/// TCP keep-alive probes on upstream sockets start after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type Response = http::Response<hyper::body::Incoming>;

/// Shared upstream client (connection pool). Cheap to clone.
#[derive(Clone, Debug)]
pub struct ProviderClient {
    http: Client<Connector, Full<Bytes>>,
    /// Plain-HTTP upstreams' non-streaming calls (see [`super::h1`]).
    plain: Arc<H1Pool>,
}

impl ProviderClient {
    pub fn new() -> Self {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_keepalive(Some(TCP_KEEPALIVE));
        // The TLS layer below takes `https` URLs; this one must let them through to it.
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(connector);
        let plain = H1Pool::new(POOL_MAX_IDLE_PER_HOST, POOL_IDLE_TIMEOUT, TCP_KEEPALIVE);
        ProviderClient { http, plain }
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
        body: &RawObject,
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
            let response = self.send(upstream, &d.id).await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            let body = read_all(body, &d.id).await?;
            Err(dialect.parse_error(status, &parts.headers, &body, &d.id))
        };
        let response = tokio::time::timeout(timeout, head)
            .await
            .unwrap_or_else(|_| Err(timed_out(&d.id, timeout)))?;
        let bytes = BodyDataStream::new(response.into_body()).map(|r| r.map_err(|e| Cause::of(&e)));
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
        body: &RawObject,
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
    ) -> Result<Response, ProviderError> {
        let uri = upstream_uri(&upstream.url, d)?;
        self.send_to(uri, upstream, d).await
    }

    async fn send_to(
        &self,
        uri: http::Uri,
        upstream: UpstreamRequest,
        d: &DeploymentId,
    ) -> Result<Response, ProviderError> {
        let mut request = http::Request::new(Full::new(upstream.body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = upstream.headers;
        self.http
            .request(request)
            .await
            .map_err(|e| send_failed(d, &e))
    }

    /// Sends and reads the whole answer. Plain-HTTP upstreams go over a connection this task
    /// drives ([`super::h1`]); TLS ones through the pooled client.
    async fn exchange(
        &self,
        upstream: UpstreamRequest,
        d: &DeploymentId,
    ) -> Result<(http::StatusCode, http::HeaderMap, Bytes), ProviderError> {
        let uri = upstream_uri(&upstream.url, d)?;
        if uri.scheme() == Some(&http::uri::Scheme::HTTP) {
            return match self.plain.post(&uri, upstream.headers, upstream.body).await {
                Ok((parts, body)) => Ok((parts.status, parts.headers, body)),
                Err(e) => Err(transport_failed(d, e.stage, &e.cause)),
            };
        }
        let (parts, body) = self.send_to(uri, upstream, d).await?.into_parts();
        let body = read_all(body, d).await?;
        Ok((parts.status, parts.headers, body))
    }
}

/// The upstream URL, parsed. Validated with the config; a URL a wildcard client model made
/// unparsable lands here.
fn upstream_uri(url: &str, d: &DeploymentId) -> Result<http::Uri, ProviderError> {
    http::Uri::try_from(url)
        .map_err(|_| ProviderError::new(d, FailureClass::BadRequest, "invalid upstream URL"))
}

/// Where a call's transport failed; each stage has one wording, whichever client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    /// No connection could be made: refused, unreachable, TLS, DNS.
    Connect,
    /// Connected, but the connection failed or closed before the response head.
    BeforeResponse,
    /// The response head arrived, its body did not arrive whole.
    Body,
}

fn transport_failed(d: &DeploymentId, stage: Stage, cause: &Cause) -> ProviderError {
    let what = match stage {
        Stage::Connect => "could not connect to upstream",
        Stage::BeforeResponse => "upstream connection failed before a response",
        Stage::Body => "reading the upstream response failed",
    };
    ProviderError::new(d, FailureClass::Connection, format!("{what}: {cause}"))
}

/// A whole response body.
async fn read_all(body: hyper::body::Incoming, d: &DeploymentId) -> Result<Bytes, ProviderError> {
    match body.collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(transport_failed(d, Stage::Body, &Cause::of(&e))),
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

/// A failure before any response: refused, reset, TLS, DNS.
fn send_failed(d: &DeploymentId, e: &hyper_util::client::legacy::Error) -> ProviderError {
    let stage = if e.is_connect() {
        Stage::Connect
    } else {
        Stage::BeforeResponse
    };
    transport_failed(d, stage, &Cause::of(e))
}

/// The innermost cause of a transport error ("connection reset by peer"). Neither hyper's nor
/// the OS's messages name the URL or carry request data.
#[derive(Debug)]
pub(super) struct Cause(String);

impl Cause {
    pub(super) fn of(e: &(dyn std::error::Error + 'static)) -> Cause {
        let mut cause = e;
        while let Some(source) = cause.source() {
            cause = source;
        }
        Cause(cause.to_string())
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_worded_by_stage_whichever_client_saw_them() {
        let d = DeploymentId("d".into());
        let cause = Cause("connection refused".into());
        for (stage, message) in [
            (
                Stage::Connect,
                "could not connect to upstream: connection refused",
            ),
            (
                Stage::BeforeResponse,
                "upstream connection failed before a response: connection refused",
            ),
            (
                Stage::Body,
                "reading the upstream response failed: connection refused",
            ),
        ] {
            let e = transport_failed(&d, stage, &cause);
            assert_eq!(e.class, FailureClass::Connection);
            assert_eq!(e.message, message);
        }
    }
}
