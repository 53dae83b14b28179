//! The admin API (LiteLLM paths): virtual keys, teams, organizations, users, budgets,
//! credentials, runtime models, state export/import, and the audit and spend logs to read back.
//! Master key only; every change is audited (as `LiteLLM-Changed-By` names, else the master key)
//! and invalidates the key cache so it takes effect on the next request.

mod audit;
mod budgets;
mod credentials;
pub(crate) mod keys;
pub mod models;
mod organizations;
mod spend;
mod state;
pub(crate) mod teams;
mod users;
pub(crate) mod validate;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::sync::Arc;

use crate::error::ApiError;
use crate::keys::auth::presented_token;
use crate::store::{Actor, Page, Store, MAX_PAGE_LIMIT};
use crate::AppState;

/// The admin routes, behind [`require_master`].
pub fn routes(state: AppState) -> axum::Router<AppState> {
    // Admin bodies are bounded like proxied ones (`general_settings.max_request_body_bytes`);
    // the import route below allows more.
    let body_limit = axum::extract::DefaultBodyLimit::max(state.max_body);
    axum::Router::new()
        .route("/audit", get(audit::list))
        .route("/spend/logs", get(spend::logs))
        .route("/key/generate", post(keys::generate))
        .route("/key/update", post(keys::update))
        .route("/key/delete", post(keys::delete))
        .route("/key/info", get(keys::info))
        .route("/key/list", get(keys::list))
        .route("/key/regenerate", post(keys::regenerate))
        .route("/key/block", post(keys::block))
        .route("/key/unblock", post(keys::unblock))
        .route("/team/new", post(teams::create))
        .route("/team/update", post(teams::update))
        .route("/team/delete", post(teams::delete))
        .route("/team/info", get(teams::info))
        .route("/team/list", get(teams::list))
        .route("/team/member_add", post(teams::member_add))
        .route("/team/member_delete", post(teams::member_delete))
        .route("/organization/new", post(organizations::create))
        .route("/organization/update", post(organizations::update))
        .route("/organization/delete", post(organizations::delete))
        .route("/organization/info", get(organizations::info))
        .route("/organization/list", get(organizations::list))
        .route("/user/new", post(users::create))
        .route("/user/update", post(users::update))
        .route("/user/delete", post(users::delete))
        .route("/user/info", get(users::info))
        .route("/user/list", get(users::list))
        .route("/budget/new", post(budgets::create))
        .route("/budget/update", post(budgets::update))
        .route("/budget/delete", post(budgets::delete))
        .route("/budget/info", get(budgets::info).post(budgets::info_many))
        .route("/budget/list", get(budgets::list))
        .route(
            "/credentials",
            get(credentials::list).post(credentials::create),
        )
        .route("/credentials/by_name/{name}", get(credentials::info))
        .route(
            "/credentials/{name}",
            patch(credentials::update).delete(credentials::delete),
        )
        .route("/model/new", post(models::create))
        .route("/model/update", post(models::update))
        .route("/model/delete", post(models::delete))
        .route("/model/info", get(models::info))
        .route("/v1/model/info", get(models::info))
        .route("/config/export", get(state::export))
        .route(
            "/config/import",
            // The document travels as a JSON string; escaping can double its size.
            post(state::import).layer(axum::extract::DefaultBodyLimit::max(
                2 * crate::state::DEFAULT_MAX_BYTES,
            )),
        )
        .route_layer(middleware::from_fn_with_state(state, require_master))
        .layer(body_limit)
}

/// Only the master key (or an open gateway) reaches admin handlers; a virtual key gets 403.
async fn require_master(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let token = presented_token(req.headers());
    match state.auth.authenticate(token).await {
        Ok(ctx) if ctx.is_admin() => next.run(req).await,
        Ok(_) => ApiError::forbidden("admin routes need the master key").into_response(),
        Err(e) => e.into_response(),
    }
}

/// Who an admin change is recorded as in the audit log: the person LiteLLM's
/// `LiteLLM-Changed-By` header names (a platform calling on its user's behalf; the call still
/// needs the master key), else the master key itself.
pub struct ChangedBy(Option<String>);

/// Longest `LiteLLM-Changed-By` value accepted.
const CHANGED_BY_MAX: usize = 256;

impl ChangedBy {
    /// The named person, else the master key.
    pub fn actor(&self) -> Actor {
        self.or(Actor::master_key())
    }

    /// The named person, else `default`.
    pub fn or(&self, default: Actor) -> Actor {
        self.0.as_deref().map_or(default, Actor::new)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ChangedBy {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("litellm-changed-by") else {
            return Ok(ChangedBy(None));
        };
        let name = std::str::from_utf8(value.as_bytes()).map_err(|_| "not UTF-8".to_owned());
        name.and_then(changed_by_name)
            .map(ChangedBy)
            .map_err(|why| {
                ApiError::bad_request(format!("LiteLLM-Changed-By header: {why}"))
                    .with_param("LiteLLM-Changed-By")
            })
    }
}

/// A `LiteLLM-Changed-By` name (also `config import --changed-by`), trimmed; `None` when blank.
/// Refused: control characters (it is logged), more than [`CHANGED_BY_MAX`] characters, and
/// what looks like an API key (`sk-...`), which the audit log must never hold.
pub(crate) fn changed_by_name(raw: &str) -> Result<Option<String>, String> {
    let name = raw.trim();
    if name.starts_with("sk-") {
        return Err("looks like an API key (sk-...); name a person or a system".to_owned());
    }
    if name.chars().any(char::is_control) {
        return Err("control characters are not allowed".to_owned());
    }
    if name.chars().count() > CHANGED_BY_MAX {
        return Err(format!("longer than {CHANGED_BY_MAX} characters"));
    }
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

/// The store, or 503 when none is configured.
fn store(state: &AppState) -> Result<Arc<dyn Store>, ApiError> {
    state.store.clone().ok_or_else(|| {
        ApiError::unavailable("no store configured: set DATABASE_URL to use the admin API")
    })
}

/// Parses a JSON body; errors (wrong types and unknown fields included) are 400 naming the
/// field, in the message and in `param`.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ApiError::bad_request(format!("invalid request body: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid request body: {path}: {inner}"))
                .with_param(&path)
        }
    })
}

/// For patch bodies: absent → `None`, `null` → `Some(None)`, value → `Some(Some(v))`.
fn double<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `page` (from 1, default 1) and `page_size` (default 50; more than 1000 or 0 is a 400 naming
/// it) of a listing, and the store page they select.
fn paging(page: Option<u64>, page_size: Option<u32>) -> Result<(u64, u32, Page), ApiError> {
    let size = page_size.unwrap_or(50);
    if !(1..=MAX_PAGE_LIMIT).contains(&size) {
        return Err(ApiError::bad_request(format!(
            "page_size must be between 1 and {MAX_PAGE_LIMIT}, got {size}"
        ))
        .with_param("page_size"));
    }
    let page = page.unwrap_or(1).max(1);
    let offset = (page - 1).saturating_mul(u64::from(size));
    Ok((page, size, Page::new(size, offset)))
}

/// A page of a listing: the items under `name`, with the total and the page numbers.
fn paged_json(
    name: &str,
    items: Vec<serde_json::Value>,
    total: u64,
    page: u64,
    size: u32,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "total": total,
        "page": page,
        "page_size": size,
        "total_pages": total.div_ceil(u64::from(size.max(1))),
    });
    v[name] = serde_json::Value::Array(items);
    v
}

/// A bad query string as a 400 naming the parameter.
fn query_error(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request(e.body_text())
}

/// The JSON view of a stored record: its spec's fields plus `extra` (spend, timestamps, ...),
/// which win over a spec field of the same name.
pub(crate) fn spec_view<'a>(
    spec: &impl serde::Serialize,
    extra: impl IntoIterator<Item = (&'a str, serde_json::Value)>,
) -> serde_json::Value {
    let mut v = serde_json::to_value(spec).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(m) = v.as_object_mut() {
        for (k, x) in extra {
            m.insert(k.to_owned(), x);
        }
    }
    v
}
