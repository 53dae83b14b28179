//! `/key/*` handlers: generate, update, delete, info, list, regenerate, block, unblock. The
//! secret appears only in generate and regenerate responses.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::Json;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};

use axum::extract::rejection::QueryRejection;

use super::{body, double, query_error, store, validate, ChangedBy};
use crate::config::RouterSettings;
use crate::error::ApiError;
use crate::keys::virtual_key::resolve_settings;
use crate::store::keys::{self as keygen, GeneratedKey, KeyPrefix, PublicId, TokenHash};
use crate::store::{
    self as st, parse_budget_duration, Actor, JsonObject, KeyFilter, KeyPatch, KeyRecord, KeySpec,
    Page, Store, Usd,
};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateBody {
    #[serde(default)]
    pub key_alias: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub max_budget: Option<Usd>,
    #[serde(default)]
    pub soft_budget: Option<Usd>,
    #[serde(default)]
    pub budget_duration: Option<String>,
    #[serde(default)]
    pub rpm_limit: Option<u64>,
    #[serde(default)]
    pub tpm_limit: Option<u64>,
    #[serde(default)]
    pub max_parallel_requests: Option<u64>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub metadata: JsonObject,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    #[serde(default)]
    pub router_settings: Option<RouterSettings>,
    #[serde(default)]
    pub blocked: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    pub key: String,
    #[serde(default, deserialize_with = "double")]
    pub key_alias: Option<Option<String>>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double")]
    pub team_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    pub user_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    pub max_budget: Option<Option<Usd>>,
    #[serde(default, deserialize_with = "double")]
    pub soft_budget: Option<Option<Usd>>,
    #[serde(default, deserialize_with = "double")]
    pub budget_duration: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    pub rpm_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double")]
    pub tpm_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double")]
    pub max_parallel_requests: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double")]
    pub duration: Option<Option<String>>,
    #[serde(default)]
    pub metadata: Option<JsonObject>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub aliases: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "double")]
    pub router_settings: Option<Option<RouterSettings>>,
    #[serde(default)]
    pub blocked: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub key_aliases: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoQuery {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    key_alias: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    page: Option<u64>,
    #[serde(default)]
    size: Option<u32>,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    key_alias: Option<String>,
}

fn expiry(duration: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    parse_budget_duration(duration)
        .map(|d| st::now() + d)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid duration {duration:?}: expected a number and a unit (s, m, h, d, w, mo)"
            ))
            .with_param("duration")
        })
}

/// A key as admins see it: every stored field but never the secret.
fn view(r: &KeyRecord) -> Value {
    let key_name = keygen::display_name(&KeyPrefix::default(), &r.spec.public_id);
    super::spec_view(
        &r.spec,
        [
            ("key_name", json!(key_name)),
            ("token", json!(r.spec.token_hash.as_str())),
            ("expires", json!(r.spec.expires_at)),
            ("spend", json!(r.spend)),
            ("budget_reset_at", json!(r.budget_reset_at)),
            ("created_at", json!(r.created_at)),
            ("updated_at", json!(r.updated_at)),
            ("created_by", json!(r.created_by)),
        ],
    )
}

/// Finds a key by the full key, its hash (LiteLLM's `token`) or its public id.
pub(super) async fn find(store: &dyn Store, key: &str) -> Result<KeyRecord, ApiError> {
    let not_found = || ApiError::not_found("key not found");
    let found = if key.starts_with(keygen::KEY_SCHEME) {
        let presented = keygen::parse(key).map_err(|_| not_found())?;
        store.key_by_hash(&presented.hash).await?
    } else if let Ok(hash) = TokenHash::new(key) {
        store.key_by_hash(&hash).await?
    } else if let Ok(id) = PublicId::new(key) {
        store.key_by_public_id(&id).await?
    } else {
        None
    };
    found.ok_or_else(not_found)
}

pub(super) async fn find_alias(store: &dyn Store, alias: &str) -> Result<KeyRecord, ApiError> {
    store
        .key_by_alias(alias)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no key with alias {alias:?}")))
}

pub async fn generate(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (rec, key) = generate_key(&state, &by.actor(), body(&bytes)?).await?;
    Ok(Json(with_secret(view(&rec), &key)))
}

/// The view with the new secret: generate and regenerate responses only.
fn with_secret(mut v: Value, key: &GeneratedKey) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("key".into(), json!(key.key.expose_secret()));
    }
    v
}

/// Creates a key (`/key/generate` and the UI): settings and aliases checked against what the
/// gateway serves, written with an audit entry by `actor`, in force from the next request.
/// The secret is in the returned [`GeneratedKey`] only.
pub(crate) async fn generate_key(
    state: &AppState,
    actor: &Actor,
    b: GenerateBody,
) -> Result<(KeyRecord, GeneratedKey), ApiError> {
    let store = store(state)?;
    if let Some(rs) = &b.router_settings {
        validate::router_settings(state, rs)?;
    }
    validate::key_aliases(state, &b.aliases)?;
    let minted = keygen::generate(&KeyPrefix::default());
    let mut spec = KeySpec::new(minted.public_id.clone(), minted.hash.clone());
    spec.key_alias = b.key_alias;
    spec.team_id = b.team_id;
    spec.user_id = b.user_id;
    spec.models = b.models;
    spec.max_budget = b.max_budget;
    spec.soft_budget = b.soft_budget;
    spec.budget_duration = b.budget_duration;
    spec.rpm_limit = b.rpm_limit;
    spec.tpm_limit = b.tpm_limit;
    spec.max_parallel_requests = b.max_parallel_requests;
    spec.expires_at = b.duration.as_deref().map(expiry).transpose()?;
    spec.metadata = b.metadata;
    spec.tags = b.tags;
    spec.aliases = b.aliases;
    spec.router_settings = b.router_settings;
    spec.blocked = b.blocked;
    let rec = store.insert_key(actor, &spec).await?;
    state.key_cache.invalidate_all();
    tracing::info!(public_id = %rec.spec.public_id, %actor, "key generated");
    Ok((rec, minted))
}

pub async fn update(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let rec = update_key(&state, &by.actor(), body(&bytes)?).await?;
    Ok(Json(view(&rec)))
}

/// Changes a key (`/key/update` and the UI): absent fields are kept, `null` clears; checked
/// like [`generate_key`], audited as `actor`.
pub(crate) async fn update_key(
    state: &AppState,
    actor: &Actor,
    b: UpdateBody,
) -> Result<KeyRecord, ApiError> {
    let store = store(state)?;
    if let Some(Some(rs)) = &b.router_settings {
        validate::router_settings(state, rs)?;
    }
    if let Some(a) = &b.aliases {
        validate::key_aliases(state, a)?;
    }
    let rec = find(store.as_ref(), &b.key).await?;
    let expires_at = match b.duration {
        None => None,
        Some(None) => Some(None),
        Some(Some(d)) => Some(Some(expiry(&d)?)),
    };
    let patch = KeyPatch {
        key_alias: b.key_alias,
        team_id: b.team_id,
        user_id: b.user_id,
        models: b.models,
        max_budget: b.max_budget,
        soft_budget: b.soft_budget,
        budget_duration: b.budget_duration,
        rpm_limit: b.rpm_limit,
        tpm_limit: b.tpm_limit,
        max_parallel_requests: b.max_parallel_requests,
        expires_at,
        metadata: b.metadata,
        tags: b.tags,
        aliases: b.aliases,
        router_settings: b.router_settings,
        blocked: b.blocked,
    };
    let rec = store.update_key(actor, &rec.spec.public_id, &patch).await?;
    state.key_cache.invalidate_all();
    Ok(rec)
}

pub async fn delete(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let deleted = delete_keys(&state, &by.actor(), body(&bytes)?).await?;
    let ids: Vec<&str> = deleted.iter().map(|r| r.spec.public_id.as_str()).collect();
    Ok(Json(json!({"deleted_keys": ids})))
}

/// Deletes keys named by key (or hash, or public id) and by alias (`/key/delete` and the UI):
/// all found first, then deleted together, audited as `actor`.
pub(crate) async fn delete_keys(
    state: &AppState,
    actor: &Actor,
    b: DeleteBody,
) -> Result<Vec<KeyRecord>, ApiError> {
    let store = store(state)?;
    if b.keys.is_empty() && b.key_aliases.is_empty() {
        return Err(
            ApiError::bad_request("name the keys to delete in keys or key_aliases")
                .with_param("keys"),
        );
    }
    let mut ids = Vec::new();
    for k in &b.keys {
        ids.push(find(store.as_ref(), k).await?.spec.public_id);
    }
    for a in &b.key_aliases {
        ids.push(find_alias(store.as_ref(), a).await?.spec.public_id);
    }
    ids.sort();
    ids.dedup();
    let deleted = store.delete_keys(actor, &ids).await?;
    state.key_cache.invalidate_all();
    tracing::info!(count = deleted.len(), %actor, "keys deleted");
    Ok(deleted)
}

pub async fn info(
    State(state): State<AppState>,
    q: Result<Query<InfoQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let store = store(&state)?;
    let rec = match (&q.key, &q.key_alias) {
        (Some(k), _) => find(store.as_ref(), k).await?,
        (None, Some(a)) => find_alias(store.as_ref(), a).await?,
        (None, None) => {
            return Err(ApiError::bad_request("pass key or key_alias").with_param("key"))
        }
    };
    let team = match &rec.spec.team_id {
        Some(t) => store.team(t).await?,
        None => None,
    };
    let global = state.global_settings.current();
    let effective = resolve_settings(&rec.spec, team.as_ref(), &global.merged);
    Ok(Json(json!({
        "key": rec.spec.token_hash.as_str(),
        "info": view(&rec),
        "effective_router_settings": effective,
        "settings_source": effective.headline_source(),
    })))
}

pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let store = store(&state)?;
    let size = q.size.unwrap_or(10);
    let page = q.page.unwrap_or(1).max(1);
    let filter = KeyFilter {
        team_id: q.team_id,
        user_id: q.user_id,
        alias_contains: q.key_alias,
        ..Default::default()
    };
    let paged = store
        .list_keys(&filter, Page::new(size, (page - 1) * u64::from(size)))
        .await?;
    let keys: Vec<Value> = paged.items.iter().map(view).collect();
    let total_pages = paged.total.div_ceil(u64::from(size.max(1)));
    Ok(Json(json!({
        "keys": keys,
        "total_count": paged.total,
        "current_page": page,
        "total_pages": total_pages,
    })))
}

pub async fn regenerate(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: KeyRef = body(&bytes)?;
    let (rec, key) = regenerate_key(&state, &by.actor(), &b.key).await?;
    Ok(Json(with_secret(view(&rec), &key)))
}

/// Mints a new secret for a key (`/key/regenerate` and the UI); the old one stops working
/// on the next request. The secret is in the returned [`GeneratedKey`] only.
pub(crate) async fn regenerate_key(
    state: &AppState,
    actor: &Actor,
    key: &str,
) -> Result<(KeyRecord, GeneratedKey), ApiError> {
    let store = store(state)?;
    let rec = find(store.as_ref(), key).await?;
    let minted = keygen::regenerate(&KeyPrefix::default(), &rec.spec.public_id);
    let rec = store
        .regenerate_key(actor, &rec.spec.public_id, &minted.hash)
        .await?;
    state.key_cache.invalidate_all();
    tracing::info!(public_id = %rec.spec.public_id, %actor, "key regenerated");
    Ok((rec, minted))
}

/// Blocks or unblocks a key (`/key/block`, `/key/unblock` and the UI), audited as `actor`.
pub(crate) async fn set_key_blocked(
    state: &AppState,
    actor: &Actor,
    key: &str,
    blocked: bool,
) -> Result<KeyRecord, ApiError> {
    let store = store(state)?;
    let rec = find(store.as_ref(), key).await?;
    let patch = KeyPatch {
        blocked: Some(blocked),
        ..Default::default()
    };
    let rec = store.update_key(actor, &rec.spec.public_id, &patch).await?;
    state.key_cache.invalidate_all();
    Ok(rec)
}

async fn set_blocked(
    state: &AppState,
    by: &ChangedBy,
    bytes: &Bytes,
    blocked: bool,
) -> Result<Value, ApiError> {
    let b: KeyRef = body(bytes)?;
    let rec = set_key_blocked(state, &by.actor(), &b.key, blocked).await?;
    Ok(view(&rec))
}

pub async fn block(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    set_blocked(&state, &by, &bytes, true).await.map(Json)
}

pub async fn unblock(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    set_blocked(&state, &by, &bytes, false).await.map(Json)
}
