//! The OpenAI-compatible HTTP surface: request parsing and validation, response shaping and
//! the `x-switchyard-*` headers. Routing decisions are the router's; auth is `keys::auth`'s.

pub mod chat;
pub mod embeddings;
pub mod health;
pub mod models;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::ApiError;
use crate::keys::effective::Source;
use crate::providers::body::{json_type_of, NotAnObject, RawObject};
use crate::router::{Attempt, RouteError, Routed};

/// Reads a request body up to `limit` bytes; larger bodies are a 413.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return Err(ApiError::payload_too_large(limit));
                }
                source = err.source();
            }
            Err(ApiError::bad_request(format!(
                "could not read the request body: {e}"
            )))
        }
    }
}

/// Parses a JSON object body one level deep, naming what is wrong.
pub fn parse_object(bytes: Bytes) -> Result<RawObject, ApiError> {
    match RawObject::parse(bytes) {
        Ok(Ok(o)) => Ok(o),
        Ok(Err(NotAnObject(kind))) => Err(ApiError::bad_request(format!(
            "request body must be a JSON object, got {kind}"
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "request body is not valid JSON: {e}"
        ))),
    }
}

/// The required string field `model`.
pub fn required_model(body: &RawObject) -> Result<String, ApiError> {
    match body.get("model") {
        Some(raw) if raw.first() == Some(&b'"') => match body.get_str("model") {
            Some(s) if !s.trim().is_empty() => Ok(s.into_owned()),
            _ => Err(ApiError::bad_request("`model` must not be empty").with_param("model")),
        },
        Some(raw) => Err(ApiError::bad_request(format!(
            "`model` must be a string, got {}",
            json_type_of(raw)
        ))
        .with_param("model")),
        None => Err(ApiError::bad_request("missing required field `model`").with_param("model")),
    }
}

/// An optional boolean field; `null` counts as absent.
pub fn optional_bool(body: &RawObject, field: &str) -> Result<Option<bool>, ApiError> {
    match body.get(field) {
        None | Some(b"null") => Ok(None),
        Some(b"true") => Ok(Some(true)),
        Some(b"false") => Ok(Some(false)),
        Some(other) => Err(ApiError::bad_request(format!(
            "`{field}` must be a boolean, got {}",
            json_type_of(other)
        ))
        .with_param(field)),
    }
}

/// Gateway-only request fields, removed before the body goes upstream.
pub struct GatewayFields {
    pub fallbacks: Option<Vec<String>>,
    pub disable_fallbacks: bool,
}

pub fn take_gateway_fields(body: &mut RawObject) -> Result<GatewayFields, ApiError> {
    let disable_fallbacks = optional_bool(body, "disable_fallbacks")?.unwrap_or(false);
    body.remove("disable_fallbacks");
    let list_error = |found: &str| {
        ApiError::bad_request(format!(
            "`fallbacks` must be a list of model group names, found {found}"
        ))
        .with_param("fallbacks")
    };
    let fallbacks = match body.get("fallbacks") {
        None | Some(b"null") => None,
        Some(raw) if raw.first() == Some(&b'[') => {
            // The body parsed, so only nesting limits can refuse the array here.
            let items = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(raw)
                .map_err(|_| list_error("an unreadable value"))?;
            Some(
                items
                    .into_iter()
                    .map(|v| {
                        serde_json::from_str::<String>(v.get())
                            .map_err(|_| list_error(json_type_of(v.get().as_bytes())))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
        Some(raw) => {
            return Err(ApiError::bad_request(format!(
                "`fallbacks` must be a list of model group names, got {}",
                json_type_of(raw)
            ))
            .with_param("fallbacks"))
        }
    };
    body.remove("fallbacks");
    // LiteLLM-only bookkeeping fields that upstreams would reject.
    for f in [
        "metadata",
        "tags",
        "mock_testing_fallbacks",
        "num_retries",
        "caching",
    ] {
        body.remove(f);
    }
    Ok(GatewayFields {
        fallbacks,
        disable_fallbacks,
    })
}

/// The observability headers' names, checked at compile time.
mod names {
    use axum::http::HeaderName;
    pub const DEPLOYMENT: HeaderName = HeaderName::from_static("x-switchyard-deployment");
    pub const MODEL_GROUP: HeaderName = HeaderName::from_static("x-switchyard-model-group");
    pub const ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");
    pub const FALLBACK_DEPTH: HeaderName = HeaderName::from_static("x-switchyard-fallback-depth");
    pub const SETTINGS_SOURCE: HeaderName = HeaderName::from_static("x-switchyard-settings-source");
    pub const LITELLM_MODEL_ID: HeaderName = HeaderName::from_static("x-litellm-model-id");
    pub const LITELLM_MODEL_GROUP: HeaderName = HeaderName::from_static("x-litellm-model-group");
    pub const LITELLM_RETRIES: HeaderName = HeaderName::from_static("x-litellm-attempted-retries");
    pub const LITELLM_FALLBACKS: HeaderName =
        HeaderName::from_static("x-litellm-attempted-fallbacks");
}

/// Headers a response carries besides the observability ones (content type, request id).
const OTHER_HEADERS: usize = 3;

/// Sets `name` to a text value; a value that is not a valid header (never for ids and group
/// names the config accepted) is left out rather than failing the response.
fn header(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

fn number(headers: &mut HeaderMap, name: HeaderName, value: usize) {
    // Counts are almost always single digits: those are static values, not formatted ones.
    static DIGITS: [HeaderValue; 10] = [
        HeaderValue::from_static("0"),
        HeaderValue::from_static("1"),
        HeaderValue::from_static("2"),
        HeaderValue::from_static("3"),
        HeaderValue::from_static("4"),
        HeaderValue::from_static("5"),
        HeaderValue::from_static("6"),
        HeaderValue::from_static("7"),
        HeaderValue::from_static("8"),
        HeaderValue::from_static("9"),
    ];
    let v = match DIGITS.get(value) {
        Some(v) => v.clone(),
        None => HeaderValue::from(value),
    };
    headers.insert(name, v);
}

/// Number of group hops in an attempt list (consecutive attempts on one group are one hop).
fn groups_in(attempts: &[Attempt]) -> usize {
    let mut groups = 0;
    let mut last: Option<&str> = None;
    for a in attempts {
        if last != Some(a.group.as_str()) {
            groups += 1;
            last = Some(&a.group);
        }
    }
    groups
}

fn retries_in(attempts: &[Attempt]) -> usize {
    attempts.len().saturating_sub(groups_in(attempts))
}

/// Observability headers on a served response (DESIGN §2.3).
pub fn routed_headers<T>(headers: &mut HeaderMap, r: &Routed<T>, source: Source) {
    headers.reserve(9 + OTHER_HEADERS);
    let d = &r.deployment;
    let cached = |name: HeaderName, v: &Option<HeaderValue>, text: &str, h: &mut HeaderMap| match v
    {
        Some(v) => {
            h.insert(name, v.clone());
        }
        None => header(h, name, text),
    };
    let id = d.id().as_str();
    cached(names::DEPLOYMENT, &d.id_header, id, headers);
    cached(names::LITELLM_MODEL_ID, &d.id_header, id, headers);
    // The serving group is the deployment's own, except for wildcard and alias routes.
    if r.group == d.deployment.model_name {
        cached(names::MODEL_GROUP, &d.group_header, &r.group, headers);
        cached(
            names::LITELLM_MODEL_GROUP,
            &d.group_header,
            &r.group,
            headers,
        );
    } else {
        header(headers, names::MODEL_GROUP, &r.group);
        header(headers, names::LITELLM_MODEL_GROUP, &r.group);
    }
    number(headers, names::ATTEMPTS, r.attempts.len());
    number(headers, names::FALLBACK_DEPTH, r.fallback_depth as usize);
    headers.insert(
        names::SETTINGS_SOURCE,
        HeaderValue::from_static(source.as_str()),
    );
    number(headers, names::LITELLM_RETRIES, retries_in(&r.attempts));
    number(headers, names::LITELLM_FALLBACKS, r.fallback_depth as usize);
}

/// Observability headers on a failed response: what was tried (the last attempt's deployment
/// and group; depth counts group hops, so it is right even when a fallback target was skipped).
pub fn failure_headers(headers: &mut HeaderMap, e: &RouteError, source: Source) {
    let attempts = e.attempts();
    number(headers, names::ATTEMPTS, attempts.len());
    headers.insert(
        names::SETTINGS_SOURCE,
        HeaderValue::from_static(source.as_str()),
    );
    number(headers, names::LITELLM_RETRIES, retries_in(attempts));
    let depth = groups_in(attempts).saturating_sub(1);
    number(headers, names::FALLBACK_DEPTH, depth);
    number(headers, names::LITELLM_FALLBACKS, depth);
    if let Some(last) = attempts.last() {
        header(headers, names::DEPLOYMENT, &last.deployment);
        header(headers, names::MODEL_GROUP, &last.group);
        header(headers, names::LITELLM_MODEL_ID, &last.deployment);
        header(headers, names::LITELLM_MODEL_GROUP, &last.group);
    }
}

/// The response for a request the router could not serve: OpenAI-shaped error plus the path tried.
pub fn route_failure(e: &RouteError, source: Source) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut resp = ApiError::from(e).into_response();
    failure_headers(resp.headers_mut(), e, source);
    resp
}

/// A served JSON body with the observability headers.
pub fn routed_json<T>(body: Bytes, r: &Routed<T>, source: Source) -> axum::response::Response {
    let mut resp = axum::response::Response::new(Body::from(body));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    routed_headers(resp.headers_mut(), r, source);
    resp
}

/// Rough token estimate used before the upstream reports usage (4 bytes per token).
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// Timeouts below this are clamped so a zero in config never disables a call outright.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Where a served request's token usage goes: the caller's tpm windows and, for virtual keys
/// with a store, the spend ledger and batch writer. Built before a stream starts, used when
/// its usage chunk arrives.
#[derive(Clone)]
pub struct UsageSink {
    state: crate::AppState,
    key: Option<std::sync::Arc<crate::keys::auth::KeyContext>>,
    started: chrono::DateTime<chrono::Utc>,
}

impl UsageSink {
    pub fn new(state: &crate::AppState, auth: &crate::keys::auth::AuthContext) -> Self {
        UsageSink {
            state: state.clone(),
            key: auth.key.clone(),
            started: chrono::Utc::now(),
        }
    }

    /// Counts `prompt + completion` tokens served by `deployment` for group `group`.
    pub fn record(
        &self,
        deployment: &crate::config::Deployment,
        group: &str,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) {
        use crate::keys::spend::{cost, Usage};
        let Some(key) = &self.key else {
            return;
        };
        let tokens = prompt_tokens.saturating_add(completion_tokens);
        if key.limits.tpm.is_some() {
            key.subject.add_tokens(tokens);
        }
        if let (Some(team), Some(l)) = (&key.team_subject, &key.team_limits) {
            if l.tpm.is_some() {
                team.add_tokens(tokens);
            }
        }
        if let Some(spend) = &self.state.spend {
            spend.record(Usage {
                key: std::sync::Arc::clone(key),
                model_group: group.to_string(),
                deployment_id: deployment.id.0.clone(),
                prompt_tokens,
                completion_tokens,
                cost: cost(deployment, prompt_tokens, completion_tokens),
                start_time: self.started,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &'static str) -> RawObject {
        parse_object(Bytes::from_static(text.as_bytes())).expect("object")
    }

    #[test]
    fn gateway_fields_are_read_and_removed() {
        let mut b = body(
            r#"{"model":"m","fallbacks":["a","b\u0021"],"disable_fallbacks":true,"metadata":{"x":1},"n":1}"#,
        );
        let gw = take_gateway_fields(&mut b).unwrap();
        assert_eq!(gw.fallbacks, Some(vec!["a".to_string(), "b!".to_string()]));
        assert!(gw.disable_fallbacks);
        assert_eq!(b.write_patched(&[], &[]), br#"{"model":"m","n":1}"#);
        let gw = take_gateway_fields(&mut body(r#"{"fallbacks":null}"#)).unwrap();
        assert_eq!(gw.fallbacks, None);
        assert!(!gw.disable_fallbacks);
    }

    #[test]
    fn bad_gateway_fields_name_the_field_and_what_was_found() {
        for (text, message) in [
            (
                r#"{"fallbacks":["a",2]}"#,
                "`fallbacks` must be a list of model group names, found a number",
            ),
            (
                r#"{"fallbacks":[{"a":["b"]}]}"#,
                "`fallbacks` must be a list of model group names, found an object",
            ),
            (
                r#"{"fallbacks":"a"}"#,
                "`fallbacks` must be a list of model group names, got a string",
            ),
            (
                r#"{"disable_fallbacks":"yes"}"#,
                "`disable_fallbacks` must be a boolean, got a string",
            ),
        ] {
            let Err(e) = take_gateway_fields(&mut body(text)) else {
                panic!("{text} was accepted");
            };
            assert_eq!(e.message, message, "{text}");
            assert!(e.param.is_some(), "{text}");
        }
    }
}
