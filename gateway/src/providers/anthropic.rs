//! The Anthropic Messages dialect: translates OpenAI chat completions to `POST /v1/messages`
//! and Anthropic's answers, SSE events and errors back to OpenAI shapes. Pure translation and
//! classification; `client.rs` does the I/O.
//!
//! Request: `system`/`developer` messages → top-level `system`; `user`/`assistant` content
//! (text, `image_url` as base64 or URL image source); assistant `tool_calls` → `tool_use`
//! blocks; `tool` messages → `tool_result` blocks (consecutive same-role turns merged);
//! `tools`/`tool_choice`/`parallel_tool_calls`; `max_completion_tokens`/`max_tokens` (default
//! [`DEFAULT_MAX_TOKENS`]); `stop` → `stop_sequences`; `temperature`, `top_p`, `top_k`;
//! `user` → `metadata.user_id`. OpenAI-only parameters Anthropic has no equivalent for
//! (`presence_penalty`, `logprobs`, `seed`, `response_format`, ...) are not sent; `n > 1`
//! is refused. Thinking blocks are not translated.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{
    class_for_status, invalid_response, json_headers, mentions_context_window, parse_retry_after,
    provider_error_message, reject_content_filter, unix_now, upstream_model, ChatRequest,
    ChatResponse, Dialect, FailureClass, ProviderError, SseEvent, StreamControl, UpstreamRequest,
    Usage,
};
use crate::config::{Deployment, DeploymentId};

/// Where `anthropic/...` deployments without `api_base` go.
pub const DEFAULT_API_BASE: &str = "https://api.anthropic.com";
/// The `anthropic-version` header every request carries.
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` is required by Anthropic; used when the client sent none (LiteLLM's default).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The Anthropic Messages API.
#[derive(Clone, Copy, Debug, Default)]
pub struct Anthropic;

/// `{api_base}/v1/messages`; an `api_base` that already ends in `/v1/messages` is used as is
/// (LiteLLM does the same).
pub fn messages_url(api_base: Option<&str>) -> String {
    let base = api_base.map(str::trim).filter(|b| !b.is_empty());
    let base = base.unwrap_or(DEFAULT_API_BASE).trim_end_matches('/');
    if base.ends_with("/v1/messages") {
        base.to_owned()
    } else {
        format!("{base}/v1/messages")
    }
}

impl Dialect for Anthropic {
    const TYPE: &'static str = "anthropic";
    type StreamState = AnthropicStream;

    fn build_request(
        &self,
        req: &ChatRequest,
        d: &Deployment,
        stream: bool,
    ) -> Result<UpstreamRequest, ProviderError> {
        // Translation works on the whole tree.
        let tree = req.body.to_map().map_err(|_| {
            ProviderError::new(
                &d.id,
                FailureClass::BadRequest,
                "request body is nested too deeply to translate",
            )
        })?;
        let model = upstream_model(tree.get("model").and_then(Value::as_str), d)?;
        let body = translate_request(&tree, model, stream)
            .map_err(|m| ProviderError::new(&d.id, FailureClass::BadRequest, m))?;
        let body = serde_json::to_vec(&body).map_err(|_| {
            ProviderError::new(
                &d.id,
                FailureClass::BadRequest,
                "request body could not be serialized",
            )
        })?;
        let auth = d
            .api_key
            .as_ref()
            .map(|k| ("x-api-key", k.expose_secret().to_owned()));
        let mut headers = json_headers(d, auth)?;
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        Ok(UpstreamRequest {
            url: messages_url(d.api_base.as_deref()),
            headers,
            body: Bytes::from(body),
        })
    }

    fn parse_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &Bytes,
        d: &Deployment,
    ) -> Result<ChatResponse, ProviderError> {
        if !status.is_success() {
            return Err(self.parse_error(status, headers, body, &d.id));
        }
        let message: Value =
            serde_json::from_slice(body).map_err(|_| invalid_response(&d.id, status))?;
        let (body, usage) =
            translate_response(&message).ok_or_else(|| invalid_response(&d.id, status))?;
        reject_content_filter(&body, &d.id, status)?;
        let body = serde_json::to_vec(&body).map_err(|_| invalid_response(&d.id, status))?;
        Ok(ChatResponse {
            body: Bytes::from(body),
            usage,
        })
    }

    /// Anthropic errors: `{"type": "error", "error": {"type": "...", "message": "..."},
    /// "request_id": "..."}`. 529 `overloaded_error` is capacity, so it is rate limiting;
    /// `invalid_request_error` "prompt is too long: N tokens > M maximum" is the context window;
    /// `invalid_request_error` "Output blocked by content filtering policy" is content policy
    /// (as LiteLLM maps it), so `content_policy_fallbacks` apply.
    fn parse_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        d: &DeploymentId,
    ) -> ProviderError {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let parsed = parsed.as_ref();
        let message = parsed.and_then(provider_error_message);
        let kind = parsed
            .and_then(|b| b.pointer("/error/type"))
            .and_then(Value::as_str);
        let class = if status.as_u16() == 529 || kind == Some("overloaded_error") {
            FailureClass::RateLimited
        } else if let Some(class) = class_for_status(status) {
            class
        } else if message.is_some_and(mentions_context_window) {
            FailureClass::ContextWindowExceeded
        } else if message.is_some_and(mentions_content_filtering) {
            FailureClass::ContentPolicy
        } else {
            FailureClass::BadRequest
        };
        let message = match message {
            Some(m) => m.to_owned(),
            None => format!("upstream answered HTTP {}", status.as_u16()),
        };
        ProviderError::new(d, class, message)
            .with_status(status.as_u16())
            .with_retry_after(parse_retry_after(headers, SystemTime::now()))
    }

    fn stream_state(&self, _req: &ChatRequest) -> AnthropicStream {
        AnthropicStream::new(unix_now())
    }

    fn parse_event(
        &self,
        state: &mut AnthropicStream,
        event: &SseEvent,
        d: &DeploymentId,
        out: &mut VecDeque<Value>,
    ) -> Result<StreamControl, ProviderError> {
        state.translate(event, d, out)
    }
}

/// Anthropic's content-filter refusal of a request: HTTP 400 `invalid_request_error`,
/// "Output blocked by content filtering policy".
fn mentions_content_filtering(message: &str) -> bool {
    message
        .to_ascii_lowercase()
        .contains("content filtering policy")
}

// ---------------------------------------------------------------------------------------------
// Request: OpenAI chat completion → Anthropic message. Borrows from the client body (content
// can be megabytes of base64 images), so nothing is copied but tool-call arguments, which
// Anthropic wants as parsed JSON.

#[derive(Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: Cow<'a, Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'a>>,
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<&'a Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Content<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(&'a str),
    Blocks(Vec<Block<'a>>),
}

impl<'a> Content<'a> {
    fn into_blocks(self) -> Vec<Block<'a>> {
        match self {
            Content::Text(text) => vec![Block::Text {
                text,
                cache_control: None,
            }],
            Content::Blocks(blocks) => blocks,
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Image {
        source: ImageSource<'a>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: Content<'a>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSource<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

#[derive(Serialize)]
struct Tool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Cow<'a, Value>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    user_id: &'a str,
}

/// Builds the Anthropic body; `Err` is a client-facing bad-request message.
fn translate_request<'a>(
    body: &'a Map<String, Value>,
    model: &'a str,
    stream: bool,
) -> Result<MessagesRequest<'a>, String> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err("n > 1 is not supported by anthropic deployments".into());
    }
    let messages = match body.get("messages") {
        Some(Value::Array(m)) => m.as_slice(),
        _ => return Err("messages must be an array".into()),
    };
    let mut system = Vec::new();
    let mut turns: Vec<Turn<'a>> = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        let content = message.get("content").unwrap_or(&Value::Null);
        match role {
            Some("system" | "developer") => system.extend(text_blocks(content, i)?),
            Some("user") => push_turn(&mut turns, "user", user_content(content, i)?),
            Some("assistant") => {
                if let Some(content) = assistant_content(message, content, i)? {
                    push_turn(&mut turns, "assistant", content);
                }
            }
            Some("tool") => {
                let tool_use_id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("messages[{i}].tool_call_id is required"))?;
                let content = match content {
                    Value::String(s) => Content::Text(s),
                    _ => Content::Blocks(text_blocks(content, i)?),
                };
                let result = Block::ToolResult {
                    tool_use_id,
                    content,
                };
                push_turn(&mut turns, "user", Content::Blocks(vec![result]));
            }
            Some(other) => {
                return Err(format!(
                    "messages[{i}].role \"{other}\" is not supported by anthropic deployments"
                ))
            }
            None => return Err(format!("messages[{i}].role is required")),
        }
    }

    let max_tokens = match body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
    {
        Some(v) if !v.is_null() => Cow::Borrowed(v),
        _ => Cow::Owned(Value::from(DEFAULT_MAX_TOKENS)),
    };
    let stop_sequences = match body.get("stop") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let tools = translate_tools(body.get("tools"))?;
    let tool_choice = if tools.is_empty() {
        None
    } else {
        translate_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))?
    };
    let present = |k: &str| body.get(k).filter(|v| !v.is_null());
    Ok(MessagesRequest {
        model,
        max_tokens,
        system,
        messages: turns,
        stop_sequences,
        temperature: present("temperature"),
        top_p: present("top_p"),
        top_k: present("top_k"),
        tools,
        tool_choice,
        metadata: body
            .get("user")
            .and_then(Value::as_str)
            .map(|user_id| Metadata { user_id }),
        stream,
    })
}

/// Anthropic merges consecutive same-role turns anyway; merging here keeps a tool turn's
/// `tool_result` blocks in one user message, as the API documents them.
fn push_turn<'a>(turns: &mut Vec<Turn<'a>>, role: &'static str, content: Content<'a>) {
    match turns.last_mut() {
        Some(last) if last.role == role => {
            let previous = std::mem::replace(&mut last.content, Content::Blocks(Vec::new()));
            let mut blocks = previous.into_blocks();
            blocks.extend(content.into_blocks());
            last.content = Content::Blocks(blocks);
        }
        _ => turns.push(Turn { role, content }),
    }
}

/// Text-only content (system prompts, tool results): a string or `text` parts.
fn text_blocks(content: &Value, i: usize) -> Result<Vec<Block<'_>>, String> {
    match content {
        Value::String(text) if text.is_empty() => Ok(Vec::new()),
        Value::String(text) => Ok(vec![Block::Text {
            text,
            cache_control: None,
        }]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| match part_type(part) {
                Some("text") => text_part(part, i, j),
                other => Err(unsupported_part(other, i, j)),
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(format!(
            "messages[{i}].content must be a string or an array"
        )),
    }
}

fn user_content(content: &Value, i: usize) -> Result<Content<'_>, String> {
    match content {
        Value::String(text) => Ok(Content::Text(text)),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| match part_type(part) {
                Some("text") => text_part(part, i, j),
                Some("image_url") => image_part(part, i, j),
                other => Err(unsupported_part(other, i, j)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Content::Blocks),
        _ => Err(format!(
            "messages[{i}].content must be a string or an array"
        )),
    }
}

/// Assistant text plus `tool_calls` as `tool_use` blocks; `None` when there is nothing to
/// send (Anthropic refuses empty text blocks).
fn assistant_content<'a>(
    message: &'a Value,
    content: &'a Value,
    i: usize,
) -> Result<Option<Content<'a>>, String> {
    let calls = match message.get("tool_calls") {
        Some(Value::Array(calls)) if !calls.is_empty() => calls.as_slice(),
        _ => &[],
    };
    if calls.is_empty() {
        if let Value::String(text) = content {
            return Ok((!text.is_empty()).then_some(Content::Text(text)));
        }
    }
    let mut blocks = match content {
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .filter_map(|(j, part)| match part_type(part) {
                Some("text") | Some("refusal") => {
                    let key = if part_type(part) == Some("text") {
                        "text"
                    } else {
                        "refusal"
                    };
                    let text = part.get(key).and_then(Value::as_str).unwrap_or_default();
                    (!text.is_empty()).then_some(Ok(Block::Text {
                        text,
                        cache_control: None,
                    }))
                }
                other => Some(Err(unsupported_part(other, i, j))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Value::String(text) if !text.is_empty() => vec![Block::Text {
            text,
            cache_control: None,
        }],
        _ => Vec::new(),
    };
    for (j, call) in calls.iter().enumerate() {
        let function = call.get("function");
        let field = |k: &str| {
            function
                .and_then(|f| f.get(k))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("messages[{i}].tool_calls[{j}].function.{k} is required"))
        };
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("messages[{i}].tool_calls[{j}].id is required"))?;
        let name = field("name")?;
        let arguments = field("arguments")?;
        let input = if arguments.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            match serde_json::from_str::<Value>(arguments) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return Err(format!(
                        "messages[{i}].tool_calls[{j}].function.arguments must be a JSON object"
                    ))
                }
            }
        };
        blocks.push(Block::ToolUse { id, name, input });
    }
    Ok((!blocks.is_empty()).then_some(Content::Blocks(blocks)))
}

fn part_type(part: &Value) -> Option<&str> {
    part.get("type").and_then(Value::as_str)
}

fn unsupported_part(kind: Option<&str>, i: usize, j: usize) -> String {
    match kind {
        Some(kind) => format!(
            "messages[{i}].content[{j}]: content type \"{kind}\" is not supported by anthropic deployments"
        ),
        None => format!("messages[{i}].content[{j}].type is required"),
    }
}

fn text_part(part: &Value, i: usize, j: usize) -> Result<Block<'_>, String> {
    let text = part
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("messages[{i}].content[{j}].text must be a string"))?;
    Ok(Block::Text {
        text,
        cache_control: part.get("cache_control"),
    })
}

/// `image_url` (`{"url": ...}` or a bare string): `data:<media>;base64,<data>` URLs become a
/// base64 source, anything else a URL source.
fn image_part(part: &Value, i: usize, j: usize) -> Result<Block<'_>, String> {
    let image = part.get("image_url");
    let url = image
        .and_then(|u| u.get("url"))
        .or(image)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("messages[{i}].content[{j}].image_url.url must be a string"))?;
    let source = match url.strip_prefix("data:") {
        Some(data_url) => {
            let (media_type, data) = data_url.split_once(";base64,").ok_or_else(|| {
                format!(
                    "messages[{i}].content[{j}].image_url.url: only base64 data URLs are supported"
                )
            })?;
            ImageSource::Base64 { media_type, data }
        }
        None => ImageSource::Url { url },
    };
    Ok(Block::Image { source })
}

fn translate_tools(tools: Option<&Value>) -> Result<Vec<Tool<'_>>, String> {
    let tools = match tools {
        Some(Value::Array(tools)) => tools,
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(_) => return Err("tools must be an array".into()),
    };
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            if let Some(kind) = tool
                .get("type")
                .and_then(Value::as_str)
                .filter(|k| *k != "function")
            {
                return Err(format!(
                    "tools[{i}]: tool type \"{kind}\" is not supported by anthropic deployments"
                ));
            }
            let function = tool
                .get("function")
                .ok_or_else(|| format!("tools[{i}].function is required"))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("tools[{i}].function.name is required"))?;
            let input_schema = match function.get("parameters") {
                Some(p @ Value::Object(_)) => Cow::Borrowed(p),
                _ => Cow::Owned(json!({"type": "object", "properties": {}})),
            };
            Ok(Tool {
                name,
                description: function.get("description").and_then(Value::as_str),
                input_schema,
            })
        })
        .collect()
}

/// `auto` → `auto`, `required` → `any`, `none` → `none`, a named function → `tool`;
/// `parallel_tool_calls: false` → `disable_parallel_tool_use: true`.
fn translate_tool_choice(
    choice: Option<&Value>,
    parallel: Option<&Value>,
) -> Result<Option<Value>, String> {
    let mut out = match choice {
        None | Some(Value::Null) => json!({"type": "auto"}),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => return Ok(Some(json!({"type": "none"}))),
            other => return Err(format!("tool_choice \"{other}\" is not supported")),
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or("tool_choice.function.name is required")?;
            json!({"type": "tool", "name": name})
        }
        Some(_) => return Err("tool_choice must be a string or an object".into()),
    };
    if parallel == Some(&Value::Bool(false)) {
        out["disable_parallel_tool_use"] = Value::Bool(true);
    } else if choice.is_none() {
        // Anthropic's default is `auto` already: send nothing the client did not ask for.
        return Ok(None);
    }
    Ok(Some(out))
}

// ---------------------------------------------------------------------------------------------
// Response: Anthropic message → OpenAI chat completion.

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, and anything newer.
        _ => "stop",
    }
}

/// Anthropic usage → (prompt, completion, cached). Prompt tokens include cache reads and
/// writes, which Anthropic counts apart from `input_tokens`.
fn anthropic_usage(usage: Option<&Value>) -> (Option<u64>, Option<u64>, u64) {
    let n = |k: &str| usage.and_then(|u| u.get(k)).and_then(Value::as_u64);
    let created = n("cache_creation_input_tokens").unwrap_or(0);
    let read = n("cache_read_input_tokens").unwrap_or(0);
    let prompt = n("input_tokens").map(|input| input + created + read);
    (prompt, n("output_tokens"), read)
}

fn openai_usage(prompt: u64, completion: u64, cached: u64) -> Value {
    let mut usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    });
    if cached > 0 {
        usage["prompt_tokens_details"] = json!({"cached_tokens": cached});
    }
    usage
}

/// The OpenAI completion and its usage; `None` when `message` is not an Anthropic message.
fn translate_response(message: &Value) -> Option<(Value, Usage)> {
    let blocks = message.get("content")?.as_array()?;
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let t = block.get("text").and_then(Value::as_str)?;
                text.get_or_insert_with(String::new).push_str(t);
            }
            Some("tool_use") => {
                let arguments =
                    serde_json::to_string(block.get("input").unwrap_or(&Value::Null)).ok()?;
                tool_calls.push(json!({
                    "id": block.get("id")?,
                    "type": "function",
                    "function": {"name": block.get("name")?, "arguments": arguments},
                }));
            }
            // thinking, redacted_thinking, server tool blocks: nothing a chat client reads.
            _ => {}
        }
    }
    let mut msg = json!({"role": "assistant", "content": text});
    if !tool_calls.is_empty() {
        msg["tool_calls"] = Value::Array(tool_calls);
    }
    let (prompt, completion, cached) = anthropic_usage(message.get("usage"));
    let (prompt, completion) = (prompt.unwrap_or(0), completion.unwrap_or(0));
    let body = json!({
        "id": message.get("id").and_then(Value::as_str).unwrap_or_default(),
        "object": "chat.completion",
        "created": unix_now(),
        "model": message.get("model").and_then(Value::as_str).unwrap_or_default(),
        "choices": [{
            "index": 0,
            "message": msg,
            "logprobs": null,
            "finish_reason": finish_reason(message.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": openai_usage(prompt, completion, cached),
    });
    Some((
        body,
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// Stream: Anthropic events → OpenAI chunks.

/// Translation state of one Anthropic stream.
#[derive(Debug)]
pub struct AnthropicStream {
    id: Value,
    model: Value,
    created: u64,
    /// Content-block index → OpenAI tool-call index, for `tool_use` blocks.
    tool_blocks: Vec<(u64, u64)>,
    prompt_tokens: u64,
    completion_tokens: u64,
    cached_tokens: u64,
    finished: bool,
}

impl AnthropicStream {
    fn new(created: u64) -> Self {
        AnthropicStream {
            id: Value::from(""),
            model: Value::from(""),
            created,
            tool_blocks: Vec::new(),
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            finished: false,
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        })
    }

    fn usage_chunk(&self) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": openai_usage(self.prompt_tokens, self.completion_tokens, self.cached_tokens),
        })
    }

    fn add_usage(&mut self, usage: Option<&Value>) {
        let (prompt, completion, cached) = anthropic_usage(usage);
        if let Some(prompt) = prompt {
            self.prompt_tokens = prompt;
            self.cached_tokens = cached;
        }
        if let Some(completion) = completion {
            // Anthropic's output_tokens are cumulative, not a delta.
            self.completion_tokens = completion;
        }
    }

    fn translate(
        &mut self,
        event: &SseEvent,
        d: &DeploymentId,
        out: &mut VecDeque<Value>,
    ) -> Result<StreamControl, ProviderError> {
        let broken = |m: &str| ProviderError::new(d, FailureClass::StreamBroken, m);
        let data: Value = match serde_json::from_str(&event.data) {
            Ok(v) => v,
            Err(_) if event.event == "error" => {
                return Err(broken("upstream sent an error event mid-stream"))
            }
            Err(_) => return Err(broken("invalid stream event from upstream")),
        };
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(event.event.as_str());
        match kind {
            "message_start" => {
                let message = data.get("message");
                if let Some(id) = message.and_then(|m| m.get("id")) {
                    self.id = id.clone();
                }
                if let Some(model) = message.and_then(|m| m.get("model")) {
                    self.model = model.clone();
                }
                self.add_usage(message.and_then(|m| m.get("usage")));
                out.push_back(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            "content_block_start" => {
                let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                let block = data.get("content_block");
                match block.and_then(|b| b.get("type")).and_then(Value::as_str) {
                    Some("tool_use") => {
                        let tool_index = self.tool_blocks.len() as u64;
                        self.tool_blocks.push((index, tool_index));
                        let call = json!({
                            "index": tool_index,
                            "id": block.and_then(|b| b.get("id")),
                            "type": "function",
                            "function": {"name": block.and_then(|b| b.get("name")), "arguments": ""},
                        });
                        out.push_back(self.chunk(json!({"tool_calls": [call]}), None));
                    }
                    Some("text") => {
                        let text = block.and_then(|b| b.get("text")).and_then(Value::as_str);
                        if let Some(text) = text.filter(|t| !t.is_empty()) {
                            out.push_back(self.chunk(json!({"content": text}), None));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                let delta = data.get("delta");
                match delta.and_then(|b| b.get("type")).and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta.and_then(|b| b.get("text")).and_then(Value::as_str);
                        if let Some(text) = text.filter(|t| !t.is_empty()) {
                            out.push_back(self.chunk(json!({"content": text}), None));
                        }
                    }
                    Some("input_json_delta") => {
                        let json = delta
                            .and_then(|b| b.get("partial_json"))
                            .and_then(Value::as_str);
                        let tool = self.tool_blocks.iter().find(|(block, _)| *block == index);
                        if let (Some(json), Some((_, tool_index))) =
                            (json.filter(|j| !j.is_empty()), tool)
                        {
                            let call =
                                json!({"index": tool_index, "function": {"arguments": json}});
                            out.push_back(self.chunk(json!({"tool_calls": [call]}), None));
                        }
                    }
                    // thinking_delta, signature_delta, citations_delta: not translated.
                    _ => {}
                }
            }
            "message_delta" => {
                self.add_usage(data.get("usage"));
                let stop = data.pointer("/delta/stop_reason").and_then(Value::as_str);
                self.finished = true;
                out.push_back(self.chunk(json!({}), Some(finish_reason(stop))));
            }
            "message_stop" => {
                if !self.finished {
                    self.finished = true;
                    out.push_back(self.chunk(json!({}), Some("stop")));
                }
                out.push_back(self.usage_chunk());
                return Ok(StreamControl::Done);
            }
            "error" => {
                return Err(broken(
                    provider_error_message(&data)
                        .unwrap_or("upstream sent an error event mid-stream"),
                ))
            }
            // ping, content_block_stop, and event types newer than this code.
            _ => {}
        }
        Ok(StreamControl::Continue)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::config::ProviderKind;
    use crate::providers::tests::{chat_request, deployment, run_sse};
    use crate::providers::{chunk_usage, is_usage_chunk};

    fn body_json(up: &UpstreamRequest) -> Value {
        serde_json::from_slice(&up.body).unwrap()
    }

    fn claude() -> Deployment {
        deployment(ProviderKind::Anthropic, "claude-sonnet-4-5-20250929")
    }

    fn translate(req: Value) -> Result<Value, ProviderError> {
        Anthropic
            .build_request(&chat_request(req), &claude(), false)
            .map(|up| body_json(&up))
    }

    #[test]
    fn request_fixture_translates_to_messages_api() {
        let req: Value =
            serde_json::from_str(include_str!("fixtures/anthropic/request_openai.json")).unwrap();
        let expected: Value =
            serde_json::from_str(include_str!("fixtures/anthropic/request_expected.json")).unwrap();
        let up = Anthropic
            .build_request(&chat_request(req), &claude(), true)
            .unwrap();
        assert_eq!(body_json(&up), expected);
        assert_eq!(up.url, "https://api.anthropic.com/v1/messages");
        let key = up.headers.get("x-api-key").unwrap();
        assert_eq!(key, "sk-test-secret");
        assert!(key.is_sensitive());
        assert_eq!(up.headers.get("anthropic-version").unwrap(), "2023-06-01");
        assert!(up.headers.get("authorization").is_none());
    }

    #[test]
    fn api_base_with_or_without_messages_path() {
        assert_eq!(messages_url(None), "https://api.anthropic.com/v1/messages");
        assert_eq!(
            messages_url(Some("http://127.0.0.1:9000/")),
            "http://127.0.0.1:9000/v1/messages"
        );
        assert_eq!(
            messages_url(Some("https://gw.example.com/anthropic/v1/messages")),
            "https://gw.example.com/anthropic/v1/messages"
        );
    }

    #[test]
    fn minimal_request_gets_default_max_tokens_and_no_stream_flag() {
        let body =
            translate(json!({"model": "c", "messages": [{"role": "user", "content": "Hello"}]}))
                .unwrap();
        assert_eq!(
            body,
            json!({"model": "claude-sonnet-4-5-20250929", "max_tokens": 4096,
                   "messages": [{"role": "user", "content": "Hello"}]})
        );
        let body = translate(
            json!({"model": "c", "max_tokens": 50, "stop": ["END", "STOP"],
                                    "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .unwrap();
        assert_eq!(body["max_tokens"], 50);
        assert_eq!(body["stop_sequences"], json!(["END", "STOP"]));
    }

    #[test]
    fn tool_choice_mappings() {
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
        let with = |choice: Value, parallel: Value| {
            let mut req = json!({"model": "c", "messages": [{"role": "user", "content": "x"}], "tools": tools});
            if !choice.is_null() {
                req["tool_choice"] = choice;
            }
            if !parallel.is_null() {
                req["parallel_tool_calls"] = parallel;
            }
            translate(req).unwrap().get("tool_choice").cloned()
        };
        assert_eq!(with(Value::Null, Value::Null), None);
        assert_eq!(
            with(json!("auto"), Value::Null),
            Some(json!({"type": "auto"}))
        );
        assert_eq!(
            with(json!("required"), Value::Null),
            Some(json!({"type": "any"}))
        );
        assert_eq!(
            with(json!("none"), Value::Null),
            Some(json!({"type": "none"}))
        );
        assert_eq!(
            with(
                json!({"type": "function", "function": {"name": "f"}}),
                json!(false)
            ),
            Some(json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true}))
        );
        assert_eq!(
            with(Value::Null, json!(false)),
            Some(json!({"type": "auto", "disable_parallel_tool_use": true}))
        );
    }

    #[test]
    fn unsupported_input_is_a_bad_request_naming_the_field() {
        let cases = [
            json!({"model": "c", "n": 2, "messages": [{"role": "user", "content": "x"}]}),
            json!({"model": "c", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}),
            json!({"model": "c", "messages": [{"role": "function", "name": "f", "content": "x"}]}),
            json!({"model": "c", "messages": [{"role": "tool", "content": "no id"}]}),
            json!({"model": "c", "messages": [{"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "[1"}}]}]}),
            json!({"model": "c", "messages": "hello"}),
        ];
        for req in cases {
            let err = translate(req.clone()).unwrap_err();
            assert_eq!(err.class, FailureClass::BadRequest, "{req}");
            assert!(!err.message.is_empty());
        }
        let err = translate(json!({"model": "c", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]})).unwrap_err();
        assert_eq!(
            err.message,
            "messages[0].content[0]: content type \"input_audio\" is not supported by anthropic deployments"
        );
    }

    #[test]
    fn empty_assistant_turns_are_dropped_and_roles_merged() {
        let body = translate(json!({"model": "c", "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "b"}
        ]}))
        .unwrap();
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
        );
    }

    fn parse(status: u16, body: &str) -> Result<ChatResponse, ProviderError> {
        Anthropic.parse_response(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            &Bytes::copy_from_slice(body.as_bytes()),
            &claude(),
        )
    }

    #[test]
    fn text_response_translates_to_chat_completion() {
        let resp = parse(200, include_str!("fixtures/anthropic/response_text.json")).unwrap();
        let b = &resp.json();
        assert_eq!(b["id"], "msg_01XFDUDYJgAACzvnptvVoYEL");
        assert_eq!(b["object"], "chat.completion");
        assert_eq!(b["model"], "claude-sonnet-4-5-20250929");
        assert!(b["created"].as_u64().unwrap() > 1_700_000_000);
        assert_eq!(
            b["choices"],
            json!([{"index": 0, "message": {"role": "assistant", "content": "Paris is the capital of France."},
                    "logprobs": null, "finish_reason": "stop"}])
        );
        assert_eq!(
            b["usage"],
            json!({"prompt_tokens": 21, "completion_tokens": 10, "total_tokens": 31})
        );
        assert_eq!(
            resp.usage,
            Usage {
                prompt_tokens: 21,
                completion_tokens: 10
            }
        );
    }

    #[test]
    fn tool_use_response_translates_to_tool_calls_with_cache_tokens_counted() {
        let resp = parse(
            200,
            include_str!("fixtures/anthropic/response_tool_use.json"),
        )
        .unwrap();
        let body = resp.json();
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(
            choice["message"]["content"],
            "I'll look up the weather in Lyon."
        );
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["id"], "toolu_01A09q90qw90lq917835lq9F");
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"location": "Lyon, France", "unit": "celsius"}));
        // 472 input + 100 cache writes + 2048 cache reads.
        assert_eq!(
            resp.usage,
            Usage {
                prompt_tokens: 2620,
                completion_tokens: 89
            }
        );
        assert_eq!(
            resp.json()["usage"]["prompt_tokens_details"]["cached_tokens"],
            2048
        );
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        let resp = parse(
            200,
            include_str!("fixtures/anthropic/response_max_tokens.json"),
        )
        .unwrap();
        assert_eq!(resp.json()["choices"][0]["finish_reason"], "length");
        assert_eq!(finish_reason(Some("end_turn")), "stop");
        assert_eq!(finish_reason(Some("stop_sequence")), "stop");
        assert_eq!(finish_reason(Some("max_tokens")), "length");
        assert_eq!(finish_reason(Some("tool_use")), "tool_calls");
        assert_eq!(finish_reason(Some("refusal")), "content_filter");
        // A refusal on a 200 is a content-policy failure, like OpenAI's content_filter.
        let err = parse(
            200,
            include_str!("fixtures/anthropic/response_refusal.json"),
        )
        .unwrap_err();
        assert_eq!(err.class, FailureClass::ContentPolicy);
    }

    #[test]
    fn garbage_success_body_is_an_invalid_response() {
        for body in ["not json", "{}", r#"{"type":"message","content":"text"}"#] {
            let err = parse(200, body).unwrap_err();
            assert_eq!(
                (err.class, err.message.as_str()),
                (FailureClass::ServerError, "invalid response from upstream")
            );
        }
    }

    #[test]
    fn errors_are_classified_from_real_shapes() {
        use FailureClass::*;
        let cases: &[(u16, &str, FailureClass, &str)] = &[
            (
                529,
                include_str!("fixtures/anthropic/error_overloaded.json"),
                RateLimited,
                "Overloaded",
            ),
            (
                429,
                include_str!("fixtures/anthropic/error_rate_limit.json"),
                RateLimited,
                "This request would exceed",
            ),
            (
                400,
                include_str!("fixtures/anthropic/error_prompt_too_long.json"),
                ContextWindowExceeded,
                "prompt is too long",
            ),
            (
                400,
                include_str!("fixtures/anthropic/error_context_limit.json"),
                ContextWindowExceeded,
                "input length",
            ),
            (
                400,
                include_str!("fixtures/anthropic/error_invalid_request.json"),
                BadRequest,
                "messages.0",
            ),
            (
                400,
                include_str!("fixtures/anthropic/error_content_filtering.json"),
                ContentPolicy,
                "Output blocked by content filtering policy",
            ),
            (
                401,
                include_str!("fixtures/anthropic/error_authentication.json"),
                Auth,
                "invalid x-api-key",
            ),
            (
                404,
                include_str!("fixtures/anthropic/error_not_found.json"),
                NotFound,
                "model: claude-sonnet-9",
            ),
            (
                500,
                r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
                ServerError,
                "Internal",
            ),
            (
                413,
                r#"{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}"#,
                BadRequest,
                "Request exceeds",
            ),
        ];
        for (status, body, class, message) in cases {
            let err = parse(*status, body).unwrap_err();
            assert_eq!(err.class, *class, "HTTP {status}: {body}");
            assert_eq!(err.status, Some(*status));
            assert!(err.message.starts_with(message), "{}", err.message);
        }
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("17"));
        let err = Anthropic.parse_error(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            include_str!("fixtures/anthropic/error_rate_limit.json").as_bytes(),
            &claude().id,
        );
        assert_eq!(err.retry_after, Some(std::time::Duration::from_secs(17)));
    }

    #[tokio::test]
    async fn text_stream_translates_to_openai_chunks() {
        let req = chat_request(json!({"model": "c", "messages": [], "stream": true}));
        let sse = include_str!("fixtures/anthropic/stream_text.sse");
        for piece in [5, 100, sse.len()] {
            let chunks: Vec<Value> = run_sse(Anthropic, &req, sse, piece)
                .await
                .into_iter()
                .map(|c| c.unwrap())
                .collect();
            assert_eq!(chunks.len(), 5, "piece {piece}");
            for c in &chunks {
                assert_eq!(c["object"], "chat.completion.chunk");
                assert_eq!(c["id"], "msg_01QC4g3HwBThD4BaNtBckFDJ");
                assert_eq!(c["model"], "claude-sonnet-4-5-20250929");
            }
            assert_eq!(
                chunks[0]["choices"][0]["delta"],
                json!({"role": "assistant", "content": ""})
            );
            assert_eq!(
                chunks[1]["choices"][0]["delta"],
                json!({"content": "Bonjour"})
            );
            assert_eq!(
                chunks[2]["choices"][0]["delta"],
                json!({"content": ", comment ça va ?"})
            );
            assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
            assert!(is_usage_chunk(&chunks[4]));
            assert_eq!(
                chunk_usage(&chunks[4]),
                Some(Usage {
                    prompt_tokens: 14,
                    completion_tokens: 9
                })
            );
        }
    }

    #[tokio::test]
    async fn tool_use_stream_becomes_indexed_tool_call_deltas() {
        let req = chat_request(json!({"model": "c", "messages": [], "stream": true}));
        let chunks: Vec<Value> = run_sse(
            Anthropic,
            &req,
            include_str!("fixtures/anthropic/stream_tool_use.sse"),
            64,
        )
        .await
        .into_iter()
        .map(|c| c.unwrap())
        .collect();
        let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(deltas[1], &json!({"content": "Checking the weather."}));
        assert_eq!(
            deltas[2],
            &json!({"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                                     "function": {"name": "get_weather", "arguments": ""}}]})
        );
        let args = |i: u64| -> String {
            deltas
                .iter()
                .filter_map(|d| d["tool_calls"][0].as_object())
                .filter(|c| c["index"] == i)
                .filter_map(|c| c["function"]["arguments"].as_str())
                .collect()
        };
        assert_eq!(args(0), r#"{"location": "Lyon, France"}"#);
        assert_eq!(args(1), "{}");
        assert_eq!(
            deltas[5]["tool_calls"][0]["id"],
            "toolu_01Vz8bPqLx2cNm4kRt6wYe9D"
        );
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            chunk_usage(chunks.last().unwrap()),
            Some(Usage {
                prompt_tokens: 472,
                completion_tokens: 89
            })
        );
    }

    #[tokio::test]
    async fn error_event_breaks_the_stream_with_the_providers_message() {
        let req = chat_request(json!({"model": "c", "messages": [], "stream": true}));
        let items = run_sse(
            Anthropic,
            &req,
            include_str!("fixtures/anthropic/stream_error.sse"),
            64,
        )
        .await;
        assert_eq!(items.len(), 3);
        let err = items[2].as_ref().unwrap_err();
        assert_eq!(
            (err.class, err.message.as_str()),
            (FailureClass::StreamBroken, "Overloaded")
        );
    }

    #[tokio::test]
    async fn eof_without_message_stop_breaks_the_stream() {
        let req = chat_request(json!({"model": "c", "messages": [], "stream": true}));
        let items = run_sse(
            Anthropic,
            &req,
            include_str!("fixtures/anthropic/stream_no_stop.sse"),
            64,
        )
        .await;
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[2].as_ref().unwrap_err().class,
            FailureClass::StreamBroken
        );
    }
}
