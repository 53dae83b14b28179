//! The Anthropic Messages dialect: routes, `x-api-key` / `anthropic-version`
//! checks, request validation, and bodies, headers and SSE events in their
//! wire shapes (see `fixtures/anthropic/`).

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use serde_json::{json, Map, Value};

use crate::api::{
    announced_millis, json_type, looks_like_object, retry_after_headers, sse_event, to_body,
    Answer, ApiError, Call, Ctx, FastMessage, Finish,
};
use crate::content::{collect_text, estimate_tokens, Pieces};
use crate::http::{Reply, ReplyBody, Request, StreamPlan};
use crate::journal::Endpoint;
use crate::seeded::alnum_id;

const RATE_LIMIT_REQUESTS: u64 = 4_000;
const RATE_LIMIT_INPUT_TOKENS: u64 = 2_000_000;
const RATE_LIMIT_OUTPUT_TOKENS: u64 = 400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Messages,
    Models,
    Unknown,
}

pub(crate) fn route(req: &Request) -> Route {
    match (req.method.as_str(), req.path.trim_end_matches('/')) {
        ("POST", "/v1/messages") => Route::Messages,
        ("GET", "/v1/models") => Route::Models,
        _ => Route::Unknown,
    }
}

/// `x-api-key` (when the deployment has a key), then `anthropic-version`
/// (always: the real API requires it on every request).
pub(crate) fn check_headers(req: &Request, api_key: Option<&str>) -> Result<(), ApiError> {
    if let Some(expected) = api_key {
        match req.header("x-api-key") {
            None => return Err(ApiError::AuthMissing),
            Some(k) if k == expected => {}
            Some(_) => return Err(ApiError::AuthInvalid),
        }
    }
    match req.header("anthropic-version") {
        Some(v) if !v.is_empty() => Ok(()),
        _ => Err(ApiError::VersionMissing),
    }
}

fn field_required(name: &str) -> ApiError {
    ApiError::bad_request(format!("{name}: Field required"), None, None)
}

#[derive(Deserialize)]
struct FastMessages<'a> {
    #[serde(borrow)]
    model: Cow<'a, str>,
    max_tokens: u64,
    #[serde(borrow)]
    messages: Vec<FastMessage<'a>>,
    #[serde(default, borrow)]
    system: Option<Pieces<'a>>,
    #[serde(default)]
    stream: Option<bool>,
}

/// The hot path: typed, borrowing parse of a valid body. `None` means "not
/// obviously valid": the `Value` path then decides and words the error.
fn parse_messages_fast(body: &[u8]) -> Option<Call> {
    if !looks_like_object(body) {
        return None;
    }
    let fast: FastMessages<'_> = serde_json::from_slice(body).ok()?;
    if fast.model.is_empty() || fast.max_tokens == 0 || fast.messages.is_empty() {
        return None;
    }
    let mut prompt = String::new();
    if let Some(system) = &fast.system {
        if !system.shaped {
            return None;
        }
        system.push_into(&mut prompt);
    }
    for m in &fast.messages {
        let content = m.content.as_ref().filter(|c| c.shaped)?;
        if m.role != "user" && m.role != "assistant" {
            return None;
        }
        content.push_into(&mut prompt);
    }
    let prompt_tokens = estimate_tokens(&prompt);
    Some(Call {
        endpoint: Some(Endpoint::Chat),
        model: Some(fast.model.into_owned()),
        stream: fast.stream.unwrap_or(false),
        include_usage: true,
        max_tokens: Some(fast.max_tokens),
        prompt,
        prompt_tokens,
        ..Call::default()
    })
}

/// Validates a messages body.
pub(crate) fn parse_messages(body: &[u8]) -> Result<Call, ApiError> {
    if let Some(call) = parse_messages_fast(body) {
        return Ok(call);
    }
    let obj: Map<String, Value> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(ApiError::bad_request(
                "Input should be a valid dictionary",
                None,
                None,
            ))
        }
        Err(e) => {
            return Err(ApiError::bad_request(
                format!("The request body is not valid JSON: {e}"),
                None,
                None,
            ))
        }
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(Value::String(_)) => {
            return Err(ApiError::bad_request(
                "model: String should have at least 1 character",
                None,
                None,
            ))
        }
        None | Some(Value::Null) => return Err(field_required("model")),
        Some(_) => {
            return Err(ApiError::bad_request(
                "model: Input should be a valid string",
                None,
                None,
            ))
        }
    };
    let max_tokens = match obj.get("max_tokens") {
        None | Some(Value::Null) => return Err(field_required("max_tokens")),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v >= 1) => n.as_u64(),
        Some(Value::Number(_)) => {
            return Err(ApiError::bad_request(
                "max_tokens: Input should be greater than or equal to 1",
                None,
                None,
            ))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "max_tokens: Input should be a valid integer",
                None,
                None,
            ))
        }
    };
    let messages = match obj.get("messages") {
        None | Some(Value::Null) => return Err(field_required("messages")),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(ApiError::bad_request(
                "messages: Input should be a valid list",
                None,
                None,
            ))
        }
    };
    if messages.is_empty() {
        return Err(ApiError::bad_request(
            "messages: at least one message is required",
            None,
            None,
        ));
    }
    let mut prompt = String::new();
    if let Some(system) = obj.get("system") {
        match system {
            Value::String(_) | Value::Array(_) => collect_text(system, &mut prompt),
            Value::Null => {}
            other => {
                return Err(ApiError::bad_request(
                    format!(
                        "system: Input should be a valid string or list (got {})",
                        json_type(other)
                    ),
                    None,
                    None,
                ))
            }
        }
    }
    for (i, m) in messages.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(ApiError::bad_request(
                format!("messages.{i}: Input should be a valid dictionary"),
                None,
                None,
            ));
        };
        match m.get("role") {
            Some(Value::String(r)) if r == "user" || r == "assistant" => {}
            None => return Err(field_required(&format!("messages.{i}.role"))),
            Some(_) => {
                return Err(ApiError::bad_request(
                    format!("messages.{i}.role: Input should be 'user' or 'assistant'"),
                    None,
                    None,
                ))
            }
        }
        match m.get("content") {
            None => return Err(field_required(&format!("messages.{i}.content"))),
            Some(c @ (Value::String(_) | Value::Array(_))) => collect_text(c, &mut prompt),
            Some(_) => {
                return Err(ApiError::bad_request(
                    format!("messages.{i}.content: Input should be a valid string or list"),
                    None,
                    None,
                ))
            }
        }
    }
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::bad_request(
                "stream: Input should be a valid boolean",
                None,
                None,
            ))
        }
    };
    let prompt_tokens = estimate_tokens(&prompt);
    Ok(Call {
        endpoint: Some(Endpoint::Chat),
        model: Some(model),
        stream,
        include_usage: true,
        max_tokens,
        prompt,
        prompt_tokens,
        ..Call::default()
    })
}

fn request_id(ctx: &Ctx<'_>) -> String {
    format!("req_011C{}", alnum_id(ctx.id_bits("request-id"), 20))
}

fn rfc3339_in(d: Duration) -> String {
    let at = chrono::Utc::now() + chrono::Duration::from_std(d).unwrap_or_default();
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn headers(
    ctx: &Ctx<'_>,
    remaining_requests: u64,
    reset_in: Duration,
) -> Vec<(&'static str, String)> {
    let reset = rfc3339_in(reset_in);
    let tokens_reset = rfc3339_in(Duration::from_secs(1));
    let input_remaining = RATE_LIMIT_INPUT_TOKENS.saturating_sub(ctx.prompt_tokens);
    vec![
        ("request-id", request_id(ctx)),
        (
            "anthropic-organization-id",
            "00000000-0000-4000-8000-00000000a11c".to_owned(),
        ),
        (
            "anthropic-ratelimit-requests-limit",
            RATE_LIMIT_REQUESTS.to_string(),
        ),
        (
            "anthropic-ratelimit-requests-remaining",
            remaining_requests.to_string(),
        ),
        ("anthropic-ratelimit-requests-reset", reset),
        (
            "anthropic-ratelimit-input-tokens-limit",
            RATE_LIMIT_INPUT_TOKENS.to_string(),
        ),
        (
            "anthropic-ratelimit-input-tokens-remaining",
            input_remaining.to_string(),
        ),
        (
            "anthropic-ratelimit-input-tokens-reset",
            tokens_reset.clone(),
        ),
        (
            "anthropic-ratelimit-output-tokens-limit",
            RATE_LIMIT_OUTPUT_TOKENS.to_string(),
        ),
        (
            "anthropic-ratelimit-output-tokens-remaining",
            RATE_LIMIT_OUTPUT_TOKENS.to_string(),
        ),
        (
            "anthropic-ratelimit-output-tokens-reset",
            tokens_reset.clone(),
        ),
        (
            "anthropic-ratelimit-tokens-limit",
            (RATE_LIMIT_INPUT_TOKENS + RATE_LIMIT_OUTPUT_TOKENS).to_string(),
        ),
        (
            "anthropic-ratelimit-tokens-remaining",
            (input_remaining + RATE_LIMIT_OUTPUT_TOKENS).to_string(),
        ),
        ("anthropic-ratelimit-tokens-reset", tokens_reset),
    ]
}

fn success_headers(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    headers(ctx, RATE_LIMIT_REQUESTS - 1, Duration::from_millis(15))
}

fn error_body(ctx: &Ctx<'_>, kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id(ctx)})
}

/// The `error.type` Anthropic uses for a status.
fn error_type(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("invalid_request_error", "Invalid request"),
        401 => ("authentication_error", "invalid x-api-key"),
        402 => (
            "billing_error",
            "Your credit balance is too low to access the Anthropic API.",
        ),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => ("not_found_error", "Not found"),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        429 => (
            "rate_limit_error",
            "Number of requests has exceeded your per-minute rate limit.",
        ),
        500 => ("api_error", "Internal server error"),
        504 => ("timeout_error", "Request timed out"),
        529 => ("overloaded_error", "Overloaded"),
        s if s >= 500 => ("api_error", "Internal server error"),
        _ => ("invalid_request_error", "Invalid request"),
    }
}

/// Renders an error in Anthropic's shape.
pub(crate) fn error_reply(err: &ApiError, ctx: &Ctx<'_>) -> Reply {
    let mut extra = Vec::new();
    let (status, kind, message): (u16, &str, String) = match err {
        ApiError::BadRequest { message, .. } => (400, "invalid_request_error", message.clone()),
        ApiError::AuthMissing => (
            401,
            "authentication_error",
            "x-api-key header is required".to_owned(),
        ),
        ApiError::AuthInvalid => (401, "authentication_error", "invalid x-api-key".to_owned()),
        ApiError::VersionMissing => (
            400,
            "invalid_request_error",
            "anthropic-version: header is required".to_owned(),
        ),
        ApiError::NotFound { .. } | ApiError::ApiVersionMissing => {
            (404, "not_found_error", "Not Found".to_owned())
        }
        ApiError::ModelNotFound { model } => (404, "not_found_error", format!("model: {model}")),
        ApiError::ContextWindow {
            window,
            prompt_tokens,
        } => (
            400,
            "invalid_request_error",
            format!("prompt is too long: {prompt_tokens} tokens > {window} maximum"),
        ),
        ApiError::ContentPolicy => (
            400,
            "invalid_request_error",
            "Output blocked by content filtering policy".to_owned(),
        ),
        ApiError::RateLimited {
            retry_after,
            message,
        } => {
            retry_after_headers(retry_after, &mut extra);
            let wait = announced_millis(retry_after).unwrap_or(1000).max(0) as u64;
            let text = message.clone().unwrap_or_else(|| format!(
                "This request would exceed the rate limit for your organization of {RATE_LIMIT_REQUESTS} requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later."
            ));
            let mut h = headers(ctx, 0, Duration::from_millis(wait));
            h.extend(extra);
            return Reply::json(429, h, to_body(&error_body(ctx, "rate_limit_error", &text)));
        }
        ApiError::Overloaded { retry_after } => {
            retry_after_headers(retry_after, &mut extra);
            (529, "overloaded_error", "Overloaded".to_owned())
        }
        ApiError::Status {
            status,
            message,
            retry_after,
        } => {
            retry_after_headers(retry_after, &mut extra);
            let (kind, default) = error_type(*status);
            (
                *status,
                kind,
                message.clone().unwrap_or_else(|| default.to_owned()),
            )
        }
    };
    let mut h = success_headers(ctx);
    h.extend(extra);
    Reply::json(status, h, to_body(&error_body(ctx, kind, &message)))
}

fn stop_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::ContentFilter => "refusal",
    }
}

fn message_id(ctx: &Ctx<'_>) -> String {
    format!("msg_01{}", alnum_id(ctx.id_bits("message"), 22))
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
struct TextBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: &'a [TextBlock<'a>],
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'static str>,
    usage: Usage,
}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: Message<'a>,
}

#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    content_block: TextBlock<'a>,
}

#[derive(Serialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: TextDelta<'a>,
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<&'static str>,
}

#[derive(Serialize)]
struct OutputUsage {
    output_tokens: u64,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: OutputUsage,
}

/// A non-streaming message.
pub(crate) fn message_reply(ctx: &Ctx<'_>, answer: &Answer) -> Reply {
    let id = message_id(ctx);
    let text = answer.text();
    let body = Message {
        id: &id,
        kind: "message",
        role: "assistant",
        model: ctx.model,
        content: &[TextBlock {
            kind: "text",
            text: &text,
        }],
        stop_reason: Some(stop_reason(answer.finish)),
        stop_sequence: None,
        usage: Usage {
            input_tokens: ctx.prompt_tokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
            output_tokens: answer.completion_tokens(),
        },
    };
    Reply::json(200, success_headers(ctx), to_body(&body))
}

/// A streaming message plan (delays and ending are set by the caller).
pub(crate) fn message_stream(ctx: &Ctx<'_>, answer: &Answer) -> Reply {
    let id = message_id(ctx);
    let mut plan = StreamPlan::default();
    plan.preamble.push(sse_event(
        "message_start",
        &MessageStart {
            kind: "message_start",
            message: Message {
                id: &id,
                kind: "message",
                role: "assistant",
                model: ctx.model,
                content: &[],
                stop_reason: None,
                stop_sequence: None,
                usage: Usage {
                    input_tokens: ctx.prompt_tokens,
                    cache_creation_input_tokens: 0,
                    cache_read_input_tokens: 0,
                    output_tokens: 1,
                },
            },
        },
    ));
    plan.preamble.push(sse_event(
        "content_block_start",
        &BlockStart {
            kind: "content_block_start",
            index: 0,
            content_block: TextBlock {
                kind: "text",
                text: "",
            },
        },
    ));
    plan.preamble
        .push(sse_event("ping", &TypeOnly { kind: "ping" }));
    for piece in &answer.pieces {
        plan.content.push(sse_event(
            "content_block_delta",
            &BlockDelta {
                kind: "content_block_delta",
                index: 0,
                delta: TextDelta {
                    kind: "text_delta",
                    text: piece,
                },
            },
        ));
    }
    plan.epilogue.push(sse_event(
        "content_block_stop",
        &BlockStop {
            kind: "content_block_stop",
            index: 0,
        },
    ));
    plan.epilogue.push(sse_event(
        "message_delta",
        &MessageDelta {
            kind: "message_delta",
            delta: StopDelta {
                stop_reason: stop_reason(answer.finish),
                stop_sequence: None,
            },
            usage: OutputUsage {
                output_tokens: answer.completion_tokens(),
            },
        },
    ));
    plan.terminator = sse_event(
        "message_stop",
        &TypeOnly {
            kind: "message_stop",
        },
    );
    let mut h = vec![
        (
            "content-type",
            "text/event-stream; charset=utf-8".to_owned(),
        ),
        ("cache-control", "no-cache".to_owned()),
    ];
    h.extend(success_headers(ctx));
    Reply {
        status: 200,
        headers: h,
        body: ReplyBody::Stream(plan),
        delay: Duration::ZERO,
        close_after_bytes: None,
        close: false,
    }
}

/// The `event: error` sent inside a `200` stream.
pub(crate) fn inband_error(message: Option<&str>) -> Vec<u8> {
    sse_event(
        "error",
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": message.unwrap_or("Overloaded")}}),
    )
}

/// `GET /v1/models`.
pub(crate) fn models_reply(ctx: &Ctx<'_>, models: &[String]) -> Reply {
    let data: Vec<Value> = models
        .iter()
        .map(|m| json!({"type": "model", "id": m, "display_name": m, "created_at": "2025-05-22T00:00:00Z"}))
        .collect();
    let body = json!({
        "data": data,
        "has_more": false,
        "first_id": models.first(),
        "last_id": models.last(),
    });
    Reply::json(200, success_headers(ctx), to_body(&body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_messages_match_anthropic() {
        let err = |b: &str| match parse_messages(b.as_bytes()) {
            Err(ApiError::BadRequest { message, .. }) => message,
            other => panic!("{other:?}"),
        };
        assert!(err("{").starts_with("The request body is not valid JSON"));
        assert_eq!(
            err(r#"{"max_tokens":5,"messages":[]}"#),
            "model: Field required"
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[]}"#),
            "max_tokens: Field required"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":5}"#),
            "messages: Field required"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"x"}]}"#),
            "messages.0.role: Input should be 'user' or 'assistant'"
        );
    }

    #[test]
    fn system_and_blocks_count_toward_the_prompt() {
        let call = parse_messages(
            br#"{"model":"m","max_tokens":5,"system":"abcd","messages":[{"role":"user","content":[{"type":"text","text":"efgh"}]}]}"#,
        )
        .unwrap();
        assert_eq!(call.prompt, "abcd\nefgh");
        assert_eq!(call.prompt_tokens, 3);
    }
}
