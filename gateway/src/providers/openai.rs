//! The OpenAI chat-completions dialect, spoken by OpenAI, by every OpenAI-compatible server
//! reached through `api_base` (vLLM, Ollama, Groq, ...) and by Azure OpenAI (the same wire
//! format on Azure's deployment paths, authenticated with `api-key`). Pure translation and
//! classification; `client.rs` does the I/O.

use std::collections::VecDeque;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use super::body::RawObject;
use super::scan::CompletionScan;
use super::{
    class_for_status, content_filtered, invalid_response, json_headers, mentions_context_window,
    parse_retry_after, provider_error_message, upstream_model, ChatRequest, ChatResponse, Dialect,
    FailureClass, ProviderError, SseEvent, StreamControl, UpstreamRequest,
};
use crate::config::{Deployment, DeploymentId};

/// Where `openai/...` deployments without `api_base` go.
pub const DEFAULT_API_BASE: &str = "https://api.openai.com/v1";

/// `api-version` for Azure deployments that set none: LiteLLM's default
/// (`litellm.AZURE_DEFAULT_API_VERSION`), so an existing LiteLLM config calls the same API here.
pub const AZURE_DEFAULT_API_VERSION: &str = "2025-02-01-preview";

/// OpenAI and every OpenAI-compatible server: `POST {api_base}/chat/completions`, Bearer auth.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenAi;

/// Azure OpenAI: `POST {api_base}/openai/deployments/{deployment}/chat/completions
/// ?api-version=...`, `api-key` header. Same bodies, errors and streams as [`OpenAi`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Azure;

/// Translation state of one OpenAI/Azure stream.
#[derive(Clone, Debug)]
pub struct OpenAiStream {
    /// The client asked for `stream_options.include_usage`; if not, the per-chunk
    /// `"usage": null` that the forced upstream option adds is removed again.
    include_usage: bool,
}

#[derive(Clone, Copy)]
enum Endpoint {
    Chat,
    Embeddings,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat/completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

impl Dialect for OpenAi {
    const TYPE: &'static str = "openai";
    type StreamState = OpenAiStream;

    fn build_request(
        &self,
        req: &ChatRequest,
        d: &Deployment,
        stream: bool,
    ) -> Result<UpstreamRequest, ProviderError> {
        let client = req.body.get_str("model");
        let model = upstream_model(client.as_deref(), d)?;
        Ok(UpstreamRequest {
            url: openai_url(d, Endpoint::Chat),
            headers: openai_headers(d)?,
            body: chat_body(&req.body, model, BodyMode::new(stream), &d.id)?,
        })
    }

    fn parse_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &Bytes,
        d: &Deployment,
    ) -> Result<ChatResponse, ProviderError> {
        parse_chat_response(status, headers, body, &d.id)
    }

    fn parse_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        d: &DeploymentId,
    ) -> ProviderError {
        classify_error(status, headers, body, d)
    }

    fn stream_state(&self, req: &ChatRequest) -> OpenAiStream {
        OpenAiStream {
            include_usage: req.include_usage,
        }
    }

    fn parse_event(
        &self,
        state: &mut OpenAiStream,
        event: &SseEvent,
        d: &DeploymentId,
        out: &mut VecDeque<Value>,
    ) -> Result<StreamControl, ProviderError> {
        parse_stream_event(state, event, d, out)
    }

    fn build_embeddings_request(
        &self,
        body: &RawObject,
        d: &Deployment,
    ) -> Result<UpstreamRequest, ProviderError> {
        let client = body.get_str("model");
        let model = upstream_model(client.as_deref(), d)?;
        Ok(UpstreamRequest {
            url: openai_url(d, Endpoint::Embeddings),
            headers: openai_headers(d)?,
            body: embeddings_body(body, model, &d.id)?,
        })
    }
}

impl Dialect for Azure {
    const TYPE: &'static str = "azure";
    type StreamState = OpenAiStream;

    fn build_request(
        &self,
        req: &ChatRequest,
        d: &Deployment,
        stream: bool,
    ) -> Result<UpstreamRequest, ProviderError> {
        let client = req.body.get_str("model");
        let model = upstream_model(client.as_deref(), d)?;
        let mode = match BodyMode::new(stream) {
            BodyMode::Stream if !azure_accepts_stream_options(azure_api_version(d)) => {
                BodyMode::StreamWithoutUsage
            }
            mode => mode,
        };
        Ok(UpstreamRequest {
            url: azure_url(d, model, Endpoint::Chat)?,
            headers: azure_headers(d)?,
            body: chat_body(&req.body, model, mode, &d.id)?,
        })
    }

    fn parse_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &Bytes,
        d: &Deployment,
    ) -> Result<ChatResponse, ProviderError> {
        parse_chat_response(status, headers, body, &d.id)
    }

    fn parse_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        d: &DeploymentId,
    ) -> ProviderError {
        classify_error(status, headers, body, d)
    }

    fn stream_state(&self, req: &ChatRequest) -> OpenAiStream {
        OpenAiStream {
            include_usage: req.include_usage,
        }
    }

    fn parse_event(
        &self,
        state: &mut OpenAiStream,
        event: &SseEvent,
        d: &DeploymentId,
        out: &mut VecDeque<Value>,
    ) -> Result<StreamControl, ProviderError> {
        parse_stream_event(state, event, d, out)
    }

    fn build_embeddings_request(
        &self,
        body: &RawObject,
        d: &Deployment,
    ) -> Result<UpstreamRequest, ProviderError> {
        let client = body.get_str("model");
        let model = upstream_model(client.as_deref(), d)?;
        Ok(UpstreamRequest {
            url: azure_url(d, model, Endpoint::Embeddings)?,
            headers: azure_headers(d)?,
            body: embeddings_body(body, model, &d.id)?,
        })
    }
}

fn openai_url(d: &Deployment, endpoint: Endpoint) -> String {
    let base = d
        .api_base
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty());
    let base = base.unwrap_or(DEFAULT_API_BASE).trim_end_matches('/');
    format!("{base}/{}", endpoint.path())
}

fn azure_url(d: &Deployment, model: &str, endpoint: Endpoint) -> Result<String, ProviderError> {
    let base = d
        .api_base
        .as_deref()
        .map(|b| b.trim().trim_end_matches('/'));
    let base = base.filter(|b| !b.is_empty()).ok_or_else(|| {
        ProviderError::new(
            &d.id,
            FailureClass::NotFound,
            "azure deployment has no api_base",
        )
    })?;
    // `https://res.openai.azure.com/openai` is a common way to write the resource endpoint.
    let base = base.strip_suffix("/openai").unwrap_or(base);
    // The deployment name is a path segment, and for wildcard deployments it comes from the
    // client: allow only Azure's deployment-name characters, never `/`, `?` or dot segments.
    let valid = !model.is_empty()
        && model != "."
        && model != ".."
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(ProviderError::new(
            &d.id,
            FailureClass::BadRequest,
            format!("\"{model}\" is not a valid azure deployment name"),
        ));
    }
    let version = azure_api_version(d);
    Ok(format!(
        "{base}/openai/deployments/{model}/{}?api-version={version}",
        endpoint.path()
    ))
}

fn azure_api_version(d: &Deployment) -> &str {
    let version = d.api_version.as_deref().map(str::trim);
    version
        .filter(|v| !v.is_empty())
        .unwrap_or(AZURE_DEFAULT_API_VERSION)
}

fn openai_headers(d: &Deployment) -> Result<HeaderMap, ProviderError> {
    // Keyless deployments are normal for local OpenAI-compatible servers (Ollama, vLLM).
    let auth = d
        .api_key
        .as_ref()
        .map(|k| ("authorization", format!("Bearer {}", k.expose_secret())));
    json_headers(d, auth)
}

fn azure_headers(d: &Deployment) -> Result<HeaderMap, ProviderError> {
    let auth = d
        .api_key
        .as_ref()
        .map(|k| ("api-key", k.expose_secret().to_owned()));
    json_headers(d, auth)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyMode {
    Complete,
    /// Streaming, asking for the usage chunk.
    Stream,
    /// Streaming on an Azure `api-version` that refuses `stream_options` (400).
    StreamWithoutUsage,
}

impl BodyMode {
    fn new(stream: bool) -> BodyMode {
        if stream {
            BodyMode::Stream
        } else {
            BodyMode::Complete
        }
    }
}

/// Azure accepts `stream_options` from `2024-09-01-preview` (GA `2024-10-21`) on and answers
/// 400 "Unrecognized request argument" before. Non-date versions (`preview`, `latest`, `v1`)
/// are the current API.
fn azure_accepts_stream_options(api_version: &str) -> bool {
    let date = api_version.get(..10).unwrap_or(api_version);
    let is_date = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    !is_date || date >= "2024-09-01"
}

/// The client body with `model` rewritten. Streaming always asks for usage (the gateway
/// accounts tokens from it) where the upstream accepts it; non-streaming drops
/// `stream`/`stream_options`, which OpenAI refuses without `stream: true`.
fn chat_body(
    body: &RawObject,
    model: &str,
    mode: BodyMode,
    d: &DeploymentId,
) -> Result<Bytes, ProviderError> {
    let model = serde_json::to_string(model).map_err(|_| unserializable(d))?;
    let out = match mode {
        BodyMode::StreamWithoutUsage => body.write_patched(
            &[("model", &model), ("stream", "true")],
            &["stream_options"],
        ),
        BodyMode::Stream => {
            let mut options = match body.object("stream_options").map(|o| o.to_map()) {
                Some(Ok(o)) => o,
                _ => Map::new(),
            };
            options.insert("include_usage".into(), Value::Bool(true));
            let options = serde_json::to_string(&options).map_err(|_| unserializable(d))?;
            body.write_patched(
                &[
                    ("model", &model),
                    ("stream", "true"),
                    ("stream_options", &options),
                ],
                &[],
            )
        }
        BodyMode::Complete => {
            body.write_patched(&[("model", &model)], &["stream", "stream_options"])
        }
    };
    Ok(Bytes::from(out))
}

fn embeddings_body(
    body: &RawObject,
    model: &str,
    d: &DeploymentId,
) -> Result<Bytes, ProviderError> {
    let model = serde_json::to_string(model).map_err(|_| unserializable(d))?;
    Ok(Bytes::from(body.write_patched(&[("model", &model)], &[])))
}

fn unserializable(d: &DeploymentId) -> ProviderError {
    ProviderError::new(
        d,
        FailureClass::BadRequest,
        "request body could not be serialized",
    )
}

/// A 2xx passes through byte for byte once it proved to be a completion (JSON with a `choices`
/// array, no choice stopped by the content filter); its usage is read on the way.
fn parse_chat_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &Bytes,
    d: &DeploymentId,
) -> Result<ChatResponse, ProviderError> {
    if !status.is_success() {
        return Err(classify_error(status, headers, body, d));
    }
    let scan = CompletionScan::of(body).ok_or_else(|| invalid_response(d, status))?;
    if scan.content_filtered() {
        return Err(content_filtered(d, status));
    }
    Ok(ChatResponse {
        body: body.clone(),
        usage: scan.usage(),
    })
}

/// Classifies an OpenAI/Azure (or OpenAI-compatible) error answer. Shapes:
/// `{"error": {"message", "type", "param", "code"}}`; Azure adds `status` and, for its content
/// filter, `innererror: {"code": "ResponsibleAIPolicyViolation", "content_filter_result"}`.
pub(crate) fn classify_error(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    d: &DeploymentId,
) -> ProviderError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let parsed = parsed.as_ref();
    let message = parsed.and_then(provider_error_message);
    let class = class_for_status(status).unwrap_or_else(|| {
        let error = parsed.and_then(|b| b.get("error"));
        let code = error.and_then(|e| e.get("code")).and_then(Value::as_str);
        let inner = error
            .and_then(|e| e.get("innererror").or_else(|| e.get("inner_error")))
            .and_then(|i| i.get("code"))
            .and_then(Value::as_str);
        if code == Some("context_length_exceeded") || message.is_some_and(mentions_context_window) {
            FailureClass::ContextWindowExceeded
        } else if matches!(code, Some("content_policy_violation" | "content_filter"))
            || inner == Some("ResponsibleAIPolicyViolation")
            || message.is_some_and(mentions_content_policy)
        {
            FailureClass::ContentPolicy
        } else {
            FailureClass::BadRequest
        }
    });
    let message = match message {
        Some(m) => m.to_owned(),
        None => format!("upstream answered HTTP {}", status.as_u16()),
    };
    ProviderError::new(d, class, message)
        .with_status(status.as_u16())
        .with_retry_after(parse_retry_after(headers, SystemTime::now()))
}

fn mentions_content_policy(message: &str) -> bool {
    const PHRASES: &[&str] = &[
        "content management policy",
        "content_policy_violation",
        "responsibleaipolicyviolation",
        "as a result of our safety system",
        "flagged as potentially violating our usage policy",
    ];
    let lower = message.to_ascii_lowercase();
    PHRASES.iter().any(|p| lower.contains(p))
}

fn parse_stream_event(
    state: &OpenAiStream,
    event: &SseEvent,
    d: &DeploymentId,
    out: &mut VecDeque<Value>,
) -> Result<StreamControl, ProviderError> {
    let data = event.data.trim();
    if data == "[DONE]" {
        return Ok(StreamControl::Done);
    }
    let parsed = serde_json::from_str::<Value>(data);
    // vLLM and some proxies name the event; OpenAI sends `data: {"error": {...}}`.
    if event.event == "error" {
        return Err(stream_error(
            d,
            parsed.ok().as_ref().and_then(provider_error_message),
        ));
    }
    let Ok(mut chunk) = parsed else {
        return Err(stream_error(d, Some("invalid stream event from upstream")));
    };
    if chunk.get("error").is_some_and(|e| !e.is_null()) && chunk.get("choices").is_none() {
        return Err(stream_error(d, provider_error_message(&chunk)));
    }
    let Some(object) = chunk.as_object_mut() else {
        return Err(stream_error(d, Some("invalid stream event from upstream")));
    };
    match object.get("choices") {
        Some(Value::Array(choices)) if choices.is_empty() => {
            // The usage chunk stays (see `ChunkStream`); Azure's leading
            // `prompt_filter_results` chunk carries nothing a chat client reads.
            if object.get("usage").is_some_and(Value::is_object) {
                out.push_back(chunk);
            }
            return Ok(StreamControl::Continue);
        }
        Some(Value::Array(_)) => {}
        _ => return Err(stream_error(d, Some("invalid stream event from upstream"))),
    }
    if !state.include_usage && object.get("usage").is_some_and(Value::is_null) {
        object.shift_remove("usage");
    }
    out.push_back(chunk);
    Ok(StreamControl::Continue)
}

fn stream_error(d: &DeploymentId, message: Option<&str>) -> ProviderError {
    ProviderError::new(
        d,
        FailureClass::StreamBroken,
        message.unwrap_or("upstream sent an error event mid-stream"),
    )
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::*;
    use crate::config::ProviderKind;
    use crate::providers::tests::{chat_request, deployment, run_sse};
    use crate::providers::{is_usage_chunk, Usage};

    fn body_json(up: &UpstreamRequest) -> Value {
        serde_json::from_slice(&up.body).unwrap()
    }

    fn id() -> DeploymentId {
        DeploymentId("dep-1".into())
    }

    #[test]
    fn openai_request_rewrites_model_and_uses_bearer_auth() {
        let d = deployment(ProviderKind::OpenAi, "gpt-4o-2024-08-06");
        let req = chat_request(json!({
            "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
            "stream": true, "stream_options": {"include_usage": false}, "temperature": 0.3
        }));
        let up = OpenAi.build_request(&req, &d, false).unwrap();
        assert_eq!(up.url, "https://api.openai.com/v1/chat/completions");
        let auth = up.headers.get("authorization").unwrap();
        assert_eq!(auth, "Bearer sk-test-secret");
        assert!(auth.is_sensitive());
        assert!(!format!("{up:?}").contains("sk-test-secret"));
        assert_eq!(up.headers.get("content-type").unwrap(), "application/json");
        // Non-streaming call: the streaming fields are gone, order and other fields kept.
        assert_eq!(
            serde_json::from_slice::<Value>(&up.body)
                .unwrap()
                .to_string(),
            r#"{"model":"gpt-4o-2024-08-06","messages":[{"role":"user","content":"hi"}],"temperature":0.3}"#
        );
    }

    #[test]
    fn openai_streaming_request_always_asks_for_usage() {
        let mut d = deployment(ProviderKind::OpenAi, "llama3");
        d.api_base = Some("http://10.0.0.5:8000/v1/".into());
        d.api_key = None;
        let req = chat_request(json!({
            "model": "local", "messages": [], "stream": true,
            "stream_options": {"include_usage": false, "continuous_usage_stats": true}
        }));
        let up = OpenAi.build_request(&req, &d, true).unwrap();
        assert_eq!(up.url, "http://10.0.0.5:8000/v1/chat/completions");
        assert!(
            up.headers.get("authorization").is_none(),
            "keyless servers get no auth header"
        );
        assert_eq!(
            body_json(&up),
            json!({"model": "llama3", "messages": [], "stream": true,
                   "stream_options": {"include_usage": true, "continuous_usage_stats": true}})
        );
        // A client that sent no stream fields gets them added.
        let req = chat_request(json!({"model": "local", "messages": []}));
        let up = OpenAi.build_request(&req, &d, true).unwrap();
        assert_eq!(
            body_json(&up)["stream_options"],
            json!({"include_usage": true})
        );
        assert_eq!(body_json(&up)["stream"], json!(true));
    }

    #[test]
    fn wildcard_deployment_forwards_client_model_without_prefix() {
        let d = deployment(ProviderKind::OpenAi, "*");
        for (client, upstream) in [
            ("openai/gpt-4o-mini", "gpt-4o-mini"),
            ("gpt-4o-mini", "gpt-4o-mini"),
            ("openai/meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B"),
            ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B"),
        ] {
            let req = chat_request(json!({"model": client, "messages": []}));
            let up = OpenAi.build_request(&req, &d, false).unwrap();
            assert_eq!(body_json(&up)["model"], upstream, "{client}");
        }
        let req = chat_request(json!({"messages": []}));
        let err = OpenAi.build_request(&req, &d, false).unwrap_err();
        assert_eq!(err.class, FailureClass::BadRequest);
    }

    #[test]
    fn azure_request_uses_deployment_path_api_version_and_api_key() {
        let mut d = deployment(ProviderKind::Azure, "gpt4o-eastus");
        d.api_base = Some("https://contoso-east.openai.azure.com/".into());
        let req = chat_request(json!({"model": "gpt-4o", "messages": []}));
        let up = Azure.build_request(&req, &d, false).unwrap();
        assert_eq!(
            up.url,
            format!(
                "https://contoso-east.openai.azure.com/openai/deployments/gpt4o-eastus/chat/completions?api-version={AZURE_DEFAULT_API_VERSION}"
            )
        );
        let key = up.headers.get("api-key").unwrap();
        assert_eq!(key, "sk-test-secret");
        assert!(key.is_sensitive());
        assert!(up.headers.get("authorization").is_none());
        assert_eq!(body_json(&up)["model"], "gpt4o-eastus");

        d.api_version = Some("2024-10-21".into());
        d.api_base = Some("https://contoso-east.openai.azure.com/openai".into());
        let up = Azure.build_embeddings_request(&req.body, &d).unwrap();
        assert_eq!(
            up.url,
            "https://contoso-east.openai.azure.com/openai/deployments/gpt4o-eastus/embeddings?api-version=2024-10-21"
        );
    }

    #[test]
    fn azure_sends_stream_options_only_where_the_api_version_accepts_them() {
        let mut d = deployment(ProviderKind::Azure, "gpt4o");
        d.api_base = Some("https://contoso.openai.azure.com".into());
        let req = chat_request(json!({"model": "m", "messages": [], "stream": true,
                                      "stream_options": {"include_usage": true}}));
        for (version, usage) in [
            (None, true),
            (Some("2024-10-21"), true),
            (Some("2024-09-01-preview"), true),
            (Some("2025-04-01-preview"), true),
            (Some("preview"), true),
            (Some("2024-08-01-preview"), false),
            (Some("2024-06-01"), false),
            (Some("2023-05-15"), false),
        ] {
            d.api_version = version.map(String::from);
            let body = body_json(&Azure.build_request(&req, &d, true).unwrap());
            assert_eq!(body["stream"], json!(true), "{version:?}");
            let expected = usage.then(|| json!({"include_usage": true}));
            assert_eq!(body.get("stream_options").cloned(), expected, "{version:?}");
        }
    }

    #[test]
    fn azure_refuses_unsafe_deployment_names_and_missing_base() {
        let mut d = deployment(ProviderKind::Azure, "*");
        d.api_base = Some("https://contoso.openai.azure.com".into());
        for model in ["azure/../../admin", "a/b", "x?y=1", "azure/..", ""] {
            let req = chat_request(json!({"model": model, "messages": []}));
            let err = Azure.build_request(&req, &d, false).unwrap_err();
            assert_eq!(err.class, FailureClass::BadRequest, "{model}");
        }
        let req = chat_request(json!({"model": "azure/gpt-4o-west", "messages": []}));
        let up = Azure.build_request(&req, &d, false).unwrap();
        assert!(up
            .url
            .contains("/openai/deployments/gpt-4o-west/chat/completions?"));
        d.api_base = None;
        let err = Azure.build_request(&req, &d, false).unwrap_err();
        assert_eq!(err.class, FailureClass::NotFound);
    }

    #[test]
    fn openai_embeddings_request() {
        let d = deployment(ProviderKind::OpenAi, "text-embedding-3-small");
        let body = json!({"model": "embed", "input": ["a", "b"]});
        let up = OpenAi
            .build_embeddings_request(&RawObject::from_map(body.as_object().unwrap()), &d)
            .unwrap();
        assert_eq!(up.url, "https://api.openai.com/v1/embeddings");
        assert_eq!(
            body_json(&up),
            json!({"model": "text-embedding-3-small", "input": ["a", "b"]})
        );
    }

    fn parse(status: u16, body: &str) -> Result<ChatResponse, ProviderError> {
        let d = deployment(ProviderKind::OpenAi, "gpt-4o");
        let status = StatusCode::from_u16(status).unwrap();
        let body = Bytes::copy_from_slice(body.as_bytes());
        OpenAi.parse_response(status, &HeaderMap::new(), &body, &d)
    }

    #[test]
    fn success_response_passes_through_with_usage() {
        let raw = include_str!("fixtures/openai/chat_response.json");
        let resp = parse(200, raw).unwrap();
        // Byte for byte, not merely the same JSON.
        assert_eq!(resp.body, raw.as_bytes());
        assert_eq!(
            resp.usage,
            Usage {
                prompt_tokens: 24,
                completion_tokens: 8
            }
        );
        let resp = parse(
            200,
            include_str!("fixtures/openai/chat_response_tool_calls.json"),
        )
        .unwrap();
        assert_eq!(resp.json()["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            resp.usage,
            Usage {
                prompt_tokens: 81,
                completion_tokens: 19
            }
        );
    }

    #[test]
    fn content_filter_finish_reason_is_a_content_policy_failure() {
        let err = parse(
            200,
            include_str!("fixtures/azure/chat_response_content_filter.json"),
        )
        .unwrap_err();
        assert_eq!(err.class, FailureClass::ContentPolicy);
        assert_eq!(err.status, Some(200));
        // Any choice, not only the first.
        let two = json!({"choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": null}, "finish_reason": "content_filter"}
        ]});
        assert_eq!(
            parse(200, &two.to_string()).unwrap_err().class,
            FailureClass::ContentPolicy
        );
    }

    #[test]
    fn garbage_success_body_is_an_invalid_response() {
        for body in [
            "<html>502 Bad Gateway</html>",
            "",
            "[]",
            r#"{"object":"chat.completion"}"#,
            "{\"choices\": 3}",
        ] {
            let err = parse(200, body).unwrap_err();
            assert_eq!(err.class, FailureClass::ServerError, "{body:?}");
            assert_eq!(err.message, "invalid response from upstream");
            assert_eq!(err.status, Some(200));
        }
    }

    fn classify(status: u16, body: &str) -> ProviderError {
        classify_error(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
            &id(),
        )
    }

    #[test]
    fn errors_are_classified_from_real_shapes() {
        use FailureClass::*;
        let cases: &[(u16, &str, FailureClass)] = &[
            (
                400,
                include_str!("fixtures/openai/error_context_length.json"),
                ContextWindowExceeded,
            ),
            (
                400,
                include_str!("fixtures/openai/error_vllm_context.json"),
                ContextWindowExceeded,
            ),
            (
                400,
                include_str!("fixtures/azure/error_context_length.json"),
                ContextWindowExceeded,
            ),
            (
                400,
                include_str!("fixtures/azure/error_content_filter.json"),
                ContentPolicy,
            ),
            (
                400,
                include_str!("fixtures/openai/error_bad_request.json"),
                BadRequest,
            ),
            (
                400,
                include_str!("fixtures/openai/error_user_too_long.json"),
                BadRequest,
            ),
            (422, r#"{"detail":"Field required: messages"}"#, BadRequest),
            (
                429,
                include_str!("fixtures/openai/error_rate_limit.json"),
                RateLimited,
            ),
            (
                429,
                include_str!("fixtures/azure/error_rate_limit.json"),
                RateLimited,
            ),
            (
                401,
                include_str!("fixtures/openai/error_invalid_api_key.json"),
                Auth,
            ),
            (
                401,
                include_str!("fixtures/azure/error_unauthorized.json"),
                Auth,
            ),
            (
                403,
                r#"{"error":{"message":"Country, region, or territory not supported","type":"request_forbidden","param":null,"code":"unsupported_country_region_territory"}}"#,
                Auth,
            ),
            (
                404,
                include_str!("fixtures/openai/error_model_not_found.json"),
                NotFound,
            ),
            (
                404,
                include_str!("fixtures/azure/error_deployment_not_found.json"),
                NotFound,
            ),
            (408, "", Timeout),
            (
                500,
                include_str!("fixtures/openai/error_server.json"),
                ServerError,
            ),
            (
                503,
                "upstream connect error or disconnect/reset before headers",
                ServerError,
            ),
        ];
        for (status, body, class) in cases {
            let err = classify(*status, body);
            assert_eq!(err.class, *class, "HTTP {status}: {body}");
            assert_eq!(err.status, Some(*status));
        }
    }

    #[test]
    fn error_message_is_the_providers_never_the_raw_body() {
        let err = classify(
            400,
            include_str!("fixtures/openai/error_context_length.json"),
        );
        assert!(err
            .message
            .starts_with("This model's maximum context length is 128000 tokens."));
        let err = classify(502, "<html><body>nginx secret-internal-host</body></html>");
        assert_eq!(err.message, "upstream answered HTTP 502");
        let err = classify(400, r#"{"error":"model is required"}"#);
        assert_eq!(err.message, "model is required");
    }

    #[test]
    fn retry_after_is_attached_to_errors() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        headers.insert("retry-after", HeaderValue::from_static("2"));
        let err = classify_error(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            include_str!("fixtures/openai/error_rate_limit.json").as_bytes(),
            &id(),
        );
        assert_eq!(
            err.retry_after,
            Some(std::time::Duration::from_millis(1500))
        );
    }

    fn ok_chunks(items: Vec<Result<Value, ProviderError>>) -> Vec<Value> {
        items.into_iter().map(|r| r.unwrap()).collect()
    }

    #[tokio::test]
    async fn stream_translates_and_keeps_the_usage_chunk_last() {
        let sse = include_str!("fixtures/openai/stream.sse");
        for piece in [7, 64, sse.len()] {
            let req = chat_request(json!({"model": "gpt-4o", "messages": [], "stream": true}));
            let chunks = ok_chunks(run_sse(OpenAi, &req, sse, piece).await);
            assert_eq!(chunks.len(), 5, "piece {piece}");
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
            let text: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert_eq!(text, "Bonjour !");
            assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
            assert!(is_usage_chunk(&chunks[4]));
            assert_eq!(
                crate::providers::chunk_usage(&chunks[4]),
                Some(Usage {
                    prompt_tokens: 12,
                    completion_tokens: 3
                })
            );
            // The client did not ask for usage: no `"usage": null` on content chunks.
            assert!(chunks[..4].iter().all(|c| c.get("usage").is_none()));
        }
        let req = chat_request(json!({"model": "gpt-4o", "messages": [], "stream": true,
                                      "stream_options": {"include_usage": true}}));
        let chunks = ok_chunks(run_sse(OpenAi, &req, sse, 64).await);
        assert!(chunks[..4]
            .iter()
            .all(|c| c.get("usage") == Some(&Value::Null)));
    }

    #[tokio::test]
    async fn stream_tool_call_deltas_pass_through() {
        let req = chat_request(json!({"model": "m", "messages": [], "stream": true}));
        let chunks = ok_chunks(
            run_sse(
                OpenAi,
                &req,
                include_str!("fixtures/openai/stream_tool_calls.sse"),
                50,
            )
            .await,
        );
        let args: String = chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(args, r#"{"location":"Lyon"}"#);
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "tool_calls");
        assert!(is_usage_chunk(chunks.last().unwrap()));
    }

    #[tokio::test]
    async fn azure_stream_drops_the_prompt_filter_chunk() {
        let req = chat_request(json!({"model": "m", "messages": [], "stream": true}));
        let chunks =
            ok_chunks(run_sse(Azure, &req, include_str!("fixtures/azure/stream.sse"), 33).await);
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(is_usage_chunk(&chunks[3]));
    }

    #[tokio::test]
    async fn in_band_error_breaks_the_stream_with_the_providers_message() {
        let req = chat_request(json!({"model": "m", "messages": [], "stream": true}));
        let items = run_sse(
            OpenAi,
            &req,
            include_str!("fixtures/openai/stream_error.sse"),
            40,
        )
        .await;
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        let err = items[2].as_ref().unwrap_err();
        assert_eq!(err.class, FailureClass::StreamBroken);
        assert_eq!(
            err.message,
            "The server had an error while processing your request. Sorry about that!"
        );

        let named = "event: error\ndata: {\"object\":\"error\",\"message\":\"engine died\",\"code\":500}\n\n";
        let items = run_sse(OpenAi, &req, named, 100).await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].as_ref().unwrap_err().message, "engine died");
    }

    #[tokio::test]
    async fn eof_without_done_breaks_the_stream() {
        let req = chat_request(json!({"model": "m", "messages": [], "stream": true}));
        let items = run_sse(
            OpenAi,
            &req,
            include_str!("fixtures/openai/stream_no_done.sse"),
            16,
        )
        .await;
        assert_eq!(items.len(), 3);
        let err = items[2].as_ref().unwrap_err();
        assert_eq!(err.class, FailureClass::StreamBroken);
        // A non-JSON event is broken too, not skipped.
        let items = run_sse(OpenAi, &req, "data: {not json\n\n", 100).await;
        assert_eq!(
            items[0].as_ref().unwrap_err().class,
            FailureClass::StreamBroken
        );
    }
}
