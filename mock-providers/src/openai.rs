//! The OpenAI dialect and its Azure OpenAI flavour: routes, auth, request
//! validation, and every body, header and SSE event in their wire shapes
//! (see `fixtures/openai/` and `fixtures/azure/`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use std::borrow::Cow;

use crate::api::{
    announced_millis, go_duration, json_type, looks_like_object, retry_after_headers, sse_data,
    to_body, Answer, ApiError, Call, Ctx, FastMessage, Finish,
};
use crate::content::{collect_text, embedding, estimate_tokens, estimate_tokens_from_chars};
use crate::http::{Reply, ReplyBody, Request, StreamPlan};
use crate::journal::Endpoint;
use crate::seeded::{alnum_id, hex_id, uuid_like};

/// `openai-version` response header value.
pub const OPENAI_VERSION: &str = "2020-10-01";
/// Default embedding width (text-embedding-3-small).
pub const DEFAULT_EMBEDDING_DIMENSIONS: usize = 1536;
const RATE_LIMIT_REQUESTS: u64 = 10_000;
const RATE_LIMIT_TOKENS: u64 = 30_000_000;

/// Which of the two flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    OpenAi,
    Azure,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Chat,
    Embeddings,
    Models,
    /// Azure path without `api-version`.
    MissingApiVersion,
    Unknown,
}

/// Routes a request; for Azure also returns the `{deployment}` segment.
pub(crate) fn route(flavor: Flavor, req: &Request) -> (Route, Option<String>) {
    let post = req.method == "POST";
    match flavor {
        Flavor::OpenAi => {
            let route = match (req.method.as_str(), req.path.trim_end_matches('/')) {
                ("POST", "/v1/chat/completions") => Route::Chat,
                ("POST", "/v1/embeddings") => Route::Embeddings,
                ("GET", "/v1/models") => Route::Models,
                _ => Route::Unknown,
            };
            (route, None)
        }
        Flavor::Azure => {
            let Some(rest) = req.path.strip_prefix("/openai/deployments/") else {
                return (Route::Unknown, None);
            };
            let Some((deployment, op)) = rest.split_once('/') else {
                return (Route::Unknown, None);
            };
            let route = match (post, op.trim_end_matches('/')) {
                (true, "chat/completions") => Route::Chat,
                (true, "embeddings") => Route::Embeddings,
                _ => return (Route::Unknown, None),
            };
            if deployment.is_empty() {
                return (Route::Unknown, None);
            }
            if req.query_param("api-version").is_none_or(str::is_empty) {
                return (Route::MissingApiVersion, Some(deployment.to_owned()));
            }
            (route, Some(deployment.to_owned()))
        }
    }
}

/// Checks the credentials a deployment with `api_key` requires.
pub(crate) fn check_auth(flavor: Flavor, req: &Request, api_key: &str) -> Result<(), ApiError> {
    match flavor {
        Flavor::OpenAi => match req.header("authorization") {
            None => Err(ApiError::AuthMissing),
            Some(v) => match v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
            {
                Some(key) if key.trim() == api_key => Ok(()),
                _ => Err(ApiError::AuthInvalid),
            },
        },
        Flavor::Azure => match req.header("api-key") {
            None => Err(ApiError::AuthMissing),
            Some(key) if key == api_key => Ok(()),
            Some(_) => Err(ApiError::AuthInvalid),
        },
    }
}

const BAD_JSON: &str = "We could not parse the JSON body of your request. (HINT: This likely means you \
aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was \
not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help \
center at help.openai.com.)";

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::bad_request(BAD_JSON, None, None)),
    }
}

fn invalid_type(param: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::bad_request(
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            json_type(got)
        ),
        Some(param),
        Some("invalid_type"),
    )
}

fn model_field(
    flavor: Flavor,
    obj: &Map<String, Value>,
    azure_deployment: Option<&str>,
) -> Result<Option<String>, ApiError> {
    match (obj.get("model"), flavor) {
        (Some(Value::String(m)), Flavor::OpenAi) if !m.is_empty() => Ok(Some(m.clone())),
        (Some(v @ (Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_))), _) => {
            Err(invalid_type("model", "a string", v))
        }
        (_, Flavor::OpenAi) => Err(ApiError::bad_request(
            "you must provide a model parameter",
            None,
            None,
        )),
        // Azure routes by the deployment in the path; `model` is ignored.
        (_, Flavor::Azure) => Ok(azure_deployment.map(str::to_owned)),
    }
}

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

#[derive(Deserialize)]
struct FastChat<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    messages: Vec<FastMessage<'a>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<FastStreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct FastStreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// The hot path: typed, borrowing parse of a valid body. `None` means "not
/// obviously valid": the `Value` path then decides and words the error.
fn parse_chat_fast(flavor: Flavor, body: &[u8], azure_deployment: Option<&str>) -> Option<Call> {
    if !looks_like_object(body) {
        return None;
    }
    let fast: FastChat<'_> = serde_json::from_slice(body).ok()?;
    let model = match flavor {
        Flavor::OpenAi => Some(fast.model.filter(|m| !m.is_empty())?.into_owned()),
        Flavor::Azure => azure_deployment.map(str::to_owned),
    };
    if fast.messages.is_empty() {
        return None;
    }
    let stream = fast.stream.unwrap_or(false);
    if fast.stream_options.is_some() && !stream {
        return None;
    }
    let include_usage = fast
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let mut max_tokens = None;
    for v in [fast.max_tokens, fast.max_completion_tokens] {
        match v {
            Some(0) => return None,
            Some(n) => max_tokens = Some(n),
            None => {}
        }
    }
    let mut prompt = String::new();
    for m in &fast.messages {
        if !ROLES.contains(&&*m.role) {
            return None;
        }
        if let Some(c) = &m.content {
            c.push_into(&mut prompt);
        }
    }
    let prompt_tokens = estimate_tokens(&prompt);
    Some(Call {
        endpoint: Some(Endpoint::Chat),
        model,
        stream,
        include_usage,
        max_tokens,
        prompt,
        prompt_tokens,
        ..Call::default()
    })
}

/// Validates a chat-completions body.
pub(crate) fn parse_chat(
    flavor: Flavor,
    body: &[u8],
    azure_deployment: Option<&str>,
) -> Result<Call, ApiError> {
    if let Some(call) = parse_chat_fast(flavor, body, azure_deployment) {
        return Ok(call);
    }
    let obj = parse_object(body)?;
    let model = model_field(flavor, &obj, azure_deployment)?;
    let messages = match obj.get("messages") {
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "Missing required parameter: 'messages'.",
                Some("messages"),
                Some("missing_required_parameter"),
            ))
        }
        Some(Value::Array(a)) => a,
        Some(other) => return Err(invalid_type("messages", "an array of objects", other)),
    };
    if messages.is_empty() {
        return Err(ApiError::bad_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("messages"),
            Some("empty_array"),
        ));
    }
    let mut prompt = String::new();
    for (i, m) in messages.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(invalid_type(&format!("messages[{i}]"), "an object", m));
        };
        match m.get("role") {
            None => {
                return Err(ApiError::bad_request(
                    format!("Missing required parameter: 'messages[{i}].role'."),
                    Some(&format!("messages[{i}].role")),
                    Some("missing_required_parameter"),
                ))
            }
            Some(Value::String(r)) if ROLES.contains(&r.as_str()) => {}
            Some(other) => {
                return Err(ApiError::bad_request(
                    format!(
                        "Invalid value: {}. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.",
                        match other { Value::String(s) => format!("'{s}'"), v => v.to_string() }
                    ),
                    Some(&format!("messages[{i}].role")),
                    Some("invalid_value"),
                ))
            }
        }
        if let Some(content) = m.get("content") {
            collect_text(content, &mut prompt);
        }
    }
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(invalid_type("stream", "a boolean", other)),
    };
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => {
            if !stream {
                return Err(ApiError::bad_request(
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    Some("stream_options"),
                    None,
                ));
            }
            o.get("include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        }
        Some(other) => return Err(invalid_type("stream_options", "an object", other)),
    };
    let mut max_tokens = None;
    for name in ["max_tokens", "max_completion_tokens"] {
        match obj.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v >= 1) => max_tokens = n.as_u64(),
            Some(Value::Number(n)) if n.as_i64().is_some() => {
                return Err(ApiError::bad_request(
                    format!("Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {n} instead."),
                    Some(name),
                    Some("integer_below_min_value"),
                ))
            }
            Some(other) => return Err(invalid_type(name, "an integer", other)),
        }
    }
    let prompt_tokens = estimate_tokens(&prompt);
    Ok(Call {
        endpoint: Some(Endpoint::Chat),
        model,
        stream,
        include_usage,
        max_tokens,
        prompt,
        prompt_tokens,
        ..Call::default()
    })
}

/// Validates an embeddings body.
pub(crate) fn parse_embeddings(
    flavor: Flavor,
    body: &[u8],
    azure_deployment: Option<&str>,
) -> Result<Call, ApiError> {
    let obj = parse_object(body)?;
    let model = model_field(flavor, &obj, azure_deployment)?;
    let mut inputs = Vec::new();
    let mut token_ids = 0u64;
    match obj.get("input") {
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "Missing required parameter: 'input'.",
                Some("input"),
                Some("missing_required_parameter"),
            ))
        }
        Some(Value::String(s)) => inputs.push(s.clone()),
        Some(Value::Array(items)) if !items.is_empty() => {
            for item in items {
                match item {
                    Value::String(s) => inputs.push(s.clone()),
                    Value::Number(_) => token_ids += 1,
                    Value::Array(ids) if ids.iter().all(Value::is_number) => {
                        token_ids += ids.len() as u64;
                        inputs.push(ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
                    }
                    other => return Err(invalid_type("input", "a string or array", other)),
                }
            }
            if inputs.is_empty() {
                // A single array of token ids.
                inputs.push(items.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference. (got {})", json_type(other)),
                Some("input"),
                None,
            ))
        }
    }
    let dimensions = match obj.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|d| (1..=8192).contains(&d)) => {
            n.as_u64().map(|d| d as usize)
        }
        Some(other) => {
            return Err(invalid_type(
                "dimensions",
                "an integer between 1 and 8192",
                other,
            ))
        }
    };
    let text_chars: u64 = obj
        .get("input")
        .map(|v| match v {
            Value::String(s) => s.chars().count() as u64,
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or(0, |s| s.chars().count() as u64))
                .sum(),
            _ => 0,
        })
        .unwrap_or(0);
    let prompt = inputs.join("\n");
    Ok(Call {
        endpoint: Some(Endpoint::Embeddings),
        model,
        prompt_tokens: estimate_tokens_from_chars(text_chars) + token_ids,
        prompt,
        inputs,
        dimensions,
        ..Call::default()
    })
}

/// Headers every OpenAI/Azure response carries.
fn base_headers(
    flavor: Flavor,
    ctx: &Ctx<'_>,
    remaining_requests: u64,
    reset_requests_ms: i64,
) -> Vec<(&'static str, String)> {
    let remaining_tokens = RATE_LIMIT_TOKENS.saturating_sub(ctx.prompt_tokens);
    match flavor {
        Flavor::OpenAi => vec![
            (
                "x-request-id",
                format!("req_{}", hex_id(ctx.id_bits("request-id"), 32)),
            ),
            ("openai-organization", "org-mock".to_owned()),
            ("openai-processing-ms", "1".to_owned()),
            ("openai-version", OPENAI_VERSION.to_owned()),
            (
                "x-ratelimit-limit-requests",
                RATE_LIMIT_REQUESTS.to_string(),
            ),
            ("x-ratelimit-limit-tokens", RATE_LIMIT_TOKENS.to_string()),
            (
                "x-ratelimit-remaining-requests",
                remaining_requests.to_string(),
            ),
            ("x-ratelimit-remaining-tokens", remaining_tokens.to_string()),
            ("x-ratelimit-reset-requests", go_duration(reset_requests_ms)),
            ("x-ratelimit-reset-tokens", "0s".to_owned()),
        ],
        Flavor::Azure => {
            let id = uuid_like(ctx.id_bits("request-id"));
            vec![
                ("x-request-id", id.clone()),
                ("apim-request-id", id),
                ("x-ms-region", "Mock Region".to_owned()),
                (
                    "x-ratelimit-remaining-requests",
                    remaining_requests.to_string(),
                ),
                ("x-ratelimit-remaining-tokens", remaining_tokens.to_string()),
            ]
        }
    }
}

fn success_headers(flavor: Flavor, ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    base_headers(flavor, ctx, RATE_LIMIT_REQUESTS - 1, 6)
}

fn openai_error_body(
    message: &str,
    kind: Option<&str>,
    param: Option<&str>,
    code: Option<&str>,
) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

fn azure_platform_error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

const SERVER_ERROR: &str =
    "The server had an error while processing your request. Sorry about that!";
const AZURE_SERVER_ERROR: &str =
    "The server had an error processing your request. Sorry about that! \
You can retry your request, or contact us through an Azure support request at: \
https://go.microsoft.com/fwlink/?linkid=2213926 if you keep seeing this error.";
const OVERLOADED: &str = "The engine is currently overloaded, please try again later.";
const AZURE_CONTENT_FILTER: &str = "The response was filtered due to the prompt triggering Azure \
OpenAI's content management policy. Please modify your prompt and retry. To learn more about our \
content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766";
const AZURE_AUTH: &str =
    "Access denied due to invalid subscription key or wrong API endpoint. Make \
sure to provide a valid key for an active subscription and use a correct regional API endpoint for \
your resource.";

fn filter_results(filtered_category: Option<&str>) -> Value {
    let mut map = Map::new();
    for cat in ["hate", "self_harm", "sexual", "violence"] {
        let hit = filtered_category == Some(cat);
        map.insert(
            cat.to_owned(),
            json!({"filtered": hit, "severity": if hit { "medium" } else { "safe" }}),
        );
    }
    Value::Object(map)
}

/// Renders an error in this flavour's shape.
pub(crate) fn error_reply(flavor: Flavor, err: &ApiError, ctx: &Ctx<'_>) -> Reply {
    let azure = flavor == Flavor::Azure;
    let mut extra = Vec::new();
    let (status, body) = match err {
        ApiError::BadRequest { message, param, code } => (
            400,
            openai_error_body(message, Some("invalid_request_error"), param.as_deref(), *code),
        ),
        ApiError::AuthMissing | ApiError::AuthInvalid if azure => {
            (401, azure_platform_error("401", AZURE_AUTH))
        }
        ApiError::AuthMissing => (
            401,
            openai_error_body(
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from https://platform.openai.com/account/api-keys.",
                Some("invalid_request_error"),
                None,
                None,
            ),
        ),
        ApiError::AuthInvalid => (
            401,
            openai_error_body(
                "Incorrect API key provided: sk-mock****. You can find your API key at https://platform.openai.com/account/api-keys.",
                Some("invalid_request_error"),
                None,
                Some("invalid_api_key"),
            ),
        ),
        ApiError::VersionMissing => (400, openai_error_body("Missing API version.", Some("invalid_request_error"), None, None)),
        ApiError::NotFound { method, path } if !azure => (
            404,
            openai_error_body(&format!("Invalid URL ({method} {path})"), Some("invalid_request_error"), None, None),
        ),
        ApiError::NotFound { .. } | ApiError::ApiVersionMissing => {
            (404, azure_platform_error("404", "Resource not found"))
        }
        ApiError::ModelNotFound { model } if azure => (
            404,
            azure_platform_error(
                "DeploymentNotFound",
                &format!("The API deployment {model} for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."),
            ),
        ),
        ApiError::ModelNotFound { model } => (
            404,
            openai_error_body(
                &format!("The model `{model}` does not exist or you do not have access to it."),
                Some("invalid_request_error"),
                None,
                Some("model_not_found"),
            ),
        ),
        ApiError::ContextWindow { window, prompt_tokens } => {
            let message = if ctx.model.contains("embedding") {
                format!("This model's maximum context length is {window} tokens, however you requested {prompt_tokens} tokens ({prompt_tokens} in your prompt; 0 for the completion). Please reduce your prompt; or completion length.")
            } else {
                format!("This model's maximum context length is {window} tokens. However, your messages resulted in {prompt_tokens} tokens. Please reduce the length of the messages.")
            };
            (
                400,
                openai_error_body(&message, Some("invalid_request_error"), Some("messages"), Some("context_length_exceeded")),
            )
        }
        ApiError::ContentPolicy if azure => {
            let mut body = openai_error_body(AZURE_CONTENT_FILTER, None, Some("prompt"), Some("content_filter"));
            if let Some(e) = body.get_mut("error").and_then(Value::as_object_mut) {
                e.insert("status".to_owned(), json!(400));
                e.insert(
                    "innererror".to_owned(),
                    json!({"code": "ResponsibleAIPolicyViolation", "content_filter_result": filter_results(Some("violence"))}),
                );
            }
            (400, body)
        }
        ApiError::ContentPolicy => (
            400,
            openai_error_body(
                "Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.",
                Some("invalid_request_error"),
                None,
                Some("content_policy_violation"),
            ),
        ),
        ApiError::RateLimited { retry_after, message } => {
            let wait_ms = announced_millis(retry_after).unwrap_or(1000);
            retry_after_headers(retry_after, &mut extra);
            let body = if azure {
                let secs = (wait_ms.max(0) + 999) / 1000;
                let text = message.clone().unwrap_or_else(|| format!(
                    "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version {} have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after {secs} seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
                    ctx.api_version.unwrap_or("2024-10-21")
                ));
                azure_platform_error("429", &text)
            } else {
                let text = message.clone().unwrap_or_else(|| format!(
                    "Rate limit reached for {} in organization org-mock on requests per min (RPM): Limit {RATE_LIMIT_REQUESTS}, Used {RATE_LIMIT_REQUESTS}, Requested 1. Please try again in {}. Visit https://platform.openai.com/account/rate-limits to learn more.",
                    ctx.model, go_duration(wait_ms)
                ));
                openai_error_body(&text, Some("requests"), None, Some("rate_limit_exceeded"))
            };
            let mut headers = base_headers(flavor, ctx, 0, wait_ms);
            headers.extend(extra);
            return Reply::json(429, headers, to_body(&body));
        }
        ApiError::Overloaded { retry_after } => {
            retry_after_headers(retry_after, &mut extra);
            let body = if azure {
                azure_platform_error("ServiceUnavailable", "The service is temporarily unable to process your request. Please try again later.")
            } else {
                openai_error_body(OVERLOADED, Some("server_error"), None, None)
            };
            (503, body)
        }
        ApiError::Status { status, message, retry_after } => {
            retry_after_headers(retry_after, &mut extra);
            (*status, status_body(flavor, *status, message.as_deref(), ctx))
        }
    };
    let mut headers = success_headers(flavor, ctx);
    headers.extend(extra);
    Reply::json(status, headers, to_body(&body))
}

/// The body OpenAI/Azure send for an arbitrary error status.
fn status_body(flavor: Flavor, status: u16, message: Option<&str>, ctx: &Ctx<'_>) -> Value {
    let azure = flavor == Flavor::Azure;
    let msg = |default: &str| message.unwrap_or(default).to_owned();
    match status {
        401 if azure => azure_platform_error("401", &msg(AZURE_AUTH)),
        403 if azure => azure_platform_error("403", &msg("Access denied due to Virtual Network/Firewall rules.")),
        404 if azure => azure_platform_error("404", &msg("Resource not found")),
        429 if azure => azure_platform_error("429", &msg("Rate limit is exceeded. Try again in 1 seconds.")),
        503 if azure => azure_platform_error("ServiceUnavailable", &msg("The service is temporarily unable to process your request. Please try again later.")),
        500 if azure => openai_error_body(&msg(AZURE_SERVER_ERROR), Some("server_error"), None, None),
        400 => openai_error_body(&msg("Invalid request."), Some("invalid_request_error"), None, None),
        401 => openai_error_body(
            &msg("Incorrect API key provided: sk-mock****. You can find your API key at https://platform.openai.com/account/api-keys."),
            Some("invalid_request_error"),
            None,
            Some("invalid_api_key"),
        ),
        403 => openai_error_body(&msg("Country, region, or territory not supported"), Some("request_forbidden"), None, Some("unsupported_country_region_territory")),
        404 => openai_error_body(
            &msg(&format!("The model `{}` does not exist or you do not have access to it.", ctx.model)),
            Some("invalid_request_error"),
            None,
            Some("model_not_found"),
        ),
        429 => openai_error_body(
            &msg(&format!("Rate limit reached for {} in organization org-mock on requests per min (RPM): Limit {RATE_LIMIT_REQUESTS}, Used {RATE_LIMIT_REQUESTS}, Requested 1. Please try again in 1s. Visit https://platform.openai.com/account/rate-limits to learn more.", ctx.model)),
            Some("requests"),
            None,
            Some("rate_limit_exceeded"),
        ),
        500 => openai_error_body(&msg(SERVER_ERROR), Some("server_error"), None, None),
        502 => openai_error_body(&msg("Bad gateway."), Some("server_error"), None, None),
        503 => openai_error_body(&msg(OVERLOADED), Some("server_error"), None, None),
        504 => openai_error_body(&msg("Gateway timeout."), Some("server_error"), None, None),
        s if s >= 500 => openai_error_body(&msg(SERVER_ERROR), Some("server_error"), None, None),
        _ => openai_error_body(&msg("Invalid request."), Some("invalid_request_error"), None, None),
    }
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ContentFilter => "content_filter",
    }
}

// Typed success bodies: serialised straight to bytes (no `Value` maps) on
// the hot path. Field order is the providers' order.

#[derive(Serialize)]
struct PromptTokensDetails {
    cached_tokens: u64,
    audio_tokens: u64,
}

#[derive(Serialize)]
struct CompletionTokensDetails {
    reasoning_tokens: u64,
    audio_tokens: u64,
    accepted_prediction_tokens: u64,
    rejected_prediction_tokens: u64,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptTokensDetails,
    completion_tokens_details: CompletionTokensDetails,
}

fn usage(prompt: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: PromptTokensDetails {
            cached_tokens: 0,
            audio_tokens: 0,
        },
        completion_tokens_details: CompletionTokensDetails {
            reasoning_tokens: 0,
            audio_tokens: 0,
            accepted_prediction_tokens: 0,
            rejected_prediction_tokens: 0,
        },
    }
}

#[derive(Serialize)]
struct Category {
    filtered: bool,
    severity: &'static str,
}

/// Azure's per-category content filter verdicts.
#[derive(Serialize)]
struct Filters {
    hate: Category,
    self_harm: Category,
    sexual: Category,
    violence: Category,
}

impl Filters {
    fn new(violence_filtered: bool) -> Self {
        let safe = || Category {
            filtered: false,
            severity: "safe",
        };
        Self {
            hate: safe(),
            self_harm: safe(),
            sexual: safe(),
            violence: if violence_filtered {
                Category {
                    filtered: true,
                    severity: "medium",
                }
            } else {
                safe()
            },
        }
    }
}

#[derive(Serialize)]
struct PromptFilter {
    prompt_index: u32,
    content_filter_results: Filters,
}

fn prompt_filters() -> [PromptFilter; 1] {
    [PromptFilter {
        prompt_index: 0,
        content_filter_results: Filters::new(false),
    }]
}

/// `{}` (Azure's filter results on the role chunk).
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(untagged)]
enum FilterField {
    Empty(Empty),
    Filters(Filters),
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<&'static str>,
    annotations: [u8; 0],
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_filter_results: Option<Filters>,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Usage,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'static str>,
    system_fingerprint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_filter_results: Option<[PromptFilter; 1]>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    /// `Some(None)` serialises `"refusal": null` (role chunk only).
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Option<&'static str>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_filter_results: Option<FilterField>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'a str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'static str>,
    /// `Some(None)`: `"usage": null` (with `include_usage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

/// Azure's first stream event.
#[derive(Serialize)]
struct AzurePromptFilterEvent {
    choices: [u8; 0],
    created: u64,
    id: &'static str,
    model: &'static str,
    object: &'static str,
    prompt_filter_results: [PromptFilter; 1],
}

fn completion_id(ctx: &Ctx<'_>) -> String {
    format!("chatcmpl-{}", alnum_id(ctx.id_bits("completion"), 29))
}

/// `system_fingerprint`: stable per seed and deployment.
pub(crate) fn fingerprint(seed: u64, deployment: &str) -> String {
    format!(
        "fp_{}",
        hex_id(
            crate::seeded::StableHasher::new(seed)
                .str(deployment)
                .finish(),
            10
        )
    )
}

/// A non-streaming chat completion.
pub(crate) fn chat_reply(flavor: Flavor, ctx: &Ctx<'_>, answer: &Answer) -> Reply {
    let azure = flavor == Flavor::Azure;
    let filtered = answer.finish == Finish::ContentFilter;
    let text = answer.text();
    let id = completion_id(ctx);
    let body = Completion {
        id: &id,
        object: "chat.completion",
        created: ctx.created,
        model: ctx.model,
        choices: [Choice {
            index: 0,
            message: Message {
                role: "assistant",
                content: &text,
                refusal: None,
                annotations: [],
            },
            logprobs: None,
            finish_reason: finish_reason(answer.finish),
            content_filter_results: azure.then(|| Filters::new(filtered)),
        }],
        usage: usage(ctx.prompt_tokens, answer.completion_tokens()),
        service_tier: (!azure).then_some("default"),
        system_fingerprint: ctx.fingerprint,
        prompt_filter_results: azure.then(prompt_filters),
    };
    Reply::json(200, success_headers(flavor, ctx), to_body(&body))
}

/// A streaming chat completion plan (delays and ending are set by the caller).
pub(crate) fn chat_stream(flavor: Flavor, ctx: &Ctx<'_>, call: &Call, answer: &Answer) -> Reply {
    let azure = flavor == Flavor::Azure;
    let id = completion_id(ctx);
    let chunk = |choices: &[ChunkChoice<'_>], usage_value: Option<Usage>| {
        sse_data(&Chunk {
            id: &id,
            object: "chat.completion.chunk",
            created: ctx.created,
            model: ctx.model,
            system_fingerprint: ctx.fingerprint,
            choices,
            service_tier: (!azure).then_some("default"),
            usage: call.include_usage.then_some(usage_value),
        })
    };
    fn delta(content: Option<&str>) -> Delta<'_> {
        Delta {
            role: None,
            content,
            refusal: None,
        }
    }
    let mut plan = StreamPlan::default();
    if azure {
        // Azure's first event: prompt filter results with empty id/model/choices.
        plan.preamble.push(sse_data(&AzurePromptFilterEvent {
            choices: [],
            created: 0,
            id: "",
            model: "",
            object: "",
            prompt_filter_results: prompt_filters(),
        }));
    }
    plan.preamble.push(chunk(
        &[ChunkChoice {
            index: 0,
            delta: Delta {
                role: Some("assistant"),
                content: Some(""),
                refusal: Some(None),
            },
            logprobs: None,
            finish_reason: None,
            content_filter_results: azure.then_some(FilterField::Empty(Empty {})),
        }],
        None,
    ));
    for piece in &answer.pieces {
        plan.content.push(chunk(
            &[ChunkChoice {
                index: 0,
                delta: delta(Some(piece)),
                logprobs: None,
                finish_reason: None,
                content_filter_results: azure.then(|| FilterField::Filters(Filters::new(false))),
            }],
            None,
        ));
    }
    let filtered = answer.finish == Finish::ContentFilter;
    plan.epilogue.push(chunk(
        &[ChunkChoice {
            index: 0,
            delta: delta(None),
            logprobs: None,
            finish_reason: Some(finish_reason(answer.finish)),
            content_filter_results: azure.then(|| FilterField::Filters(Filters::new(filtered))),
        }],
        None,
    ));
    if call.include_usage {
        plan.epilogue.push(chunk(
            &[],
            Some(usage(ctx.prompt_tokens, answer.completion_tokens())),
        ));
    }
    plan.terminator = b"data: [DONE]\n\n".to_vec();
    let mut headers = vec![
        (
            "content-type",
            "text/event-stream; charset=utf-8".to_owned(),
        ),
        ("cache-control", "no-cache".to_owned()),
    ];
    headers.extend(success_headers(flavor, ctx));
    Reply {
        status: 200,
        headers,
        body: ReplyBody::Stream(plan),
        delay: std::time::Duration::ZERO,
        close_after_bytes: None,
        close: false,
    }
}

/// The in-band error event sent after a `200` stream has started.
pub(crate) fn inband_error(message: Option<&str>) -> Vec<u8> {
    sse_data(&openai_error_body(
        message.unwrap_or(SERVER_ERROR),
        Some("server_error"),
        None,
        None,
    ))
}

/// An embeddings response.
pub(crate) fn embeddings_reply(flavor: Flavor, ctx: &Ctx<'_>, call: &Call) -> Reply {
    let dims = call.dimensions.unwrap_or(DEFAULT_EMBEDDING_DIMENSIONS);
    let data: Vec<Value> = call
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            json!({
                "object": "embedding",
                "index": i,
                "embedding": embedding(ctx.seed, ctx.deployment, input, dims),
            })
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": ctx.model,
        "usage": {"prompt_tokens": ctx.prompt_tokens, "total_tokens": ctx.prompt_tokens},
    });
    Reply::json(200, success_headers(flavor, ctx), to_body(&body))
}

/// `GET /v1/models`.
pub(crate) fn models_reply(ctx: &Ctx<'_>, models: &[String]) -> Reply {
    let data: Vec<Value> = models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 1_715_367_049u64, "owned_by": "system"}))
        .collect();
    Reply::json(
        200,
        success_headers(Flavor::OpenAi, ctx),
        to_body(&json!({"object": "list", "data": data})),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx<'static> {
        Ctx {
            seed: 1,
            deployment: "d",
            request_no: 0,
            fingerprint: "fp_test",
            model: "gpt-4o",
            prompt_tokens: 3,
            api_version: Some("2024-10-21"),
            created: 1,
        }
    }

    fn body(r: &Reply) -> Value {
        match &r.body {
            ReplyBody::Full(b) => serde_json::from_slice(b).unwrap(),
            ReplyBody::Stream(_) => panic!("stream"),
        }
    }

    #[test]
    fn validation_messages_match_openai() {
        let err = |b: &str| match parse_chat(Flavor::OpenAi, b.as_bytes(), None) {
            Err(ApiError::BadRequest {
                message,
                param,
                code,
            }) => (message, param, code),
            other => panic!("{other:?}"),
        };
        assert!(err("{not json")
            .0
            .starts_with("We could not parse the JSON body"));
        assert_eq!(
            err(r#"{"messages":[]}"#).0,
            "you must provide a model parameter"
        );
        let (_, param, code) = err(r#"{"model":"m"}"#);
        assert_eq!(
            (param.as_deref(), code),
            (Some("messages"), Some("missing_required_parameter"))
        );
        assert_eq!(err(r#"{"model":"m","messages":[]}"#).2, Some("empty_array"));
        assert_eq!(
            err(r#"{"model":"m","messages":[{"content":"x"}]}"#)
                .1
                .as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"robot"}]}"#).2,
            Some("invalid_value")
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#).2,
            Some("invalid_type")
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"user"}],"stream_options":{"include_usage":true}}"#).1.as_deref(),
            Some("stream_options")
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":0}"#).2,
            Some("integer_below_min_value")
        );
    }

    #[test]
    fn azure_takes_the_model_from_the_path() {
        let call = parse_chat(
            Flavor::Azure,
            br#"{"messages":[{"role":"user","content":"hi"}]}"#,
            Some("dep"),
        )
        .unwrap();
        assert_eq!(call.model.as_deref(), Some("dep"));
        assert_eq!(call.prompt_tokens, 1);
    }

    #[test]
    fn error_shapes() {
        let r = error_reply(
            Flavor::OpenAi,
            &ApiError::ContextWindow {
                window: 10,
                prompt_tokens: 20,
            },
            &ctx(),
        );
        assert_eq!(r.status, 400);
        assert_eq!(body(&r)["error"]["code"], "context_length_exceeded");
        let r = error_reply(Flavor::Azure, &ApiError::AuthMissing, &ctx());
        assert_eq!(body(&r)["error"]["code"], "401");
        let r = error_reply(Flavor::Azure, &ApiError::ContentPolicy, &ctx());
        assert_eq!(
            body(&r)["error"]["innererror"]["code"],
            "ResponsibleAIPolicyViolation"
        );
        let r = error_reply(
            Flavor::OpenAi,
            &ApiError::RateLimited {
                retry_after: vec![],
                message: None,
            },
            &ctx(),
        );
        assert_eq!(r.status, 429);
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| *n == "x-ratelimit-remaining-requests" && v == "0"));
    }
}
