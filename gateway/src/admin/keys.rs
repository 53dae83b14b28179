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

use super::{body, double, query_error, store, validate};
use crate::config::RouterSettings;
use crate::error::ApiError;
use crate::keys::virtual_key::resolve_settings;
use crate::store::keys::{self as keygen, KeyPrefix, PublicId, TokenHash};
use crate::store::{
    self as st, parse_budget_duration, Actor, JsonObject, KeyFilter, KeyPatch, KeyRecord, KeySpec,
    Page, Store, Usd,
};
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateBody {
    #[serde(default)]
    key_alias: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    max_budget: Option<Usd>,
    #[serde(default)]
    soft_budget: Option<Usd>,
    #[serde(default)]
    budget_duration: Option<String>,
    #[serde(default)]
    rpm_limit: Option<u64>,
    #[serde(default)]
    tpm_limit: Option<u64>,
    #[serde(default)]
    max_parallel_requests: Option<u64>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    metadata: JsonObject,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    router_settings: Option<RouterSettings>,
    #[serde(default)]
    blocked: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    key: String,
    #[serde(default, deserialize_with = "double")]
    key_alias: Option<Option<String>>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double")]
    team_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    user_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    max_budget: Option<Option<Usd>>,
    #[serde(default, deserialize_with = "double")]
    soft_budget: Option<Option<Usd>>,
    #[serde(default, deserialize_with = "double")]
    budget_duration: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    rpm_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double")]
    tpm_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double")]
    max_parallel_requests: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double")]
    duration: Option<Option<String>>,
    #[serde(default)]
    metadata: Option<JsonObject>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    aliases: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "double")]
    router_settings: Option<Option<RouterSettings>>,
    #[serde(default)]
    blocked: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    key_aliases: Vec<String>,
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
    let mut v = serde_json::to_value(&r.spec).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "key_name".into(),
            json!(keygen::display_name(
                &KeyPrefix::default(),
                &r.spec.public_id
            )),
        );
        o.insert("token".into(), json!(r.spec.token_hash.as_str()));
        o.insert("expires".into(), json!(r.spec.expires_at));
        o.insert("spend".into(), json!(r.spend));
        o.insert("budget_reset_at".into(), json!(r.budget_reset_at));
        o.insert("created_at".into(), json!(r.created_at));
        o.insert("updated_at".into(), json!(r.updated_at));
        o.insert("created_by".into(), json!(r.created_by));
    }
    v
}

/// Finds a key by the full key, its hash (LiteLLM's `token`) or its public id.
async fn find(store: &dyn Store, key: &str) -> Result<KeyRecord, ApiError> {
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

async fn find_alias(store: &dyn Store, alias: &str) -> Result<KeyRecord, ApiError> {
    store
        .key_by_alias(alias)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no key with alias {alias:?}")))
}

pub async fn generate(
    State(state): State<AppState>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: GenerateBody = body(&bytes)?;
    if let Some(rs) = &b.router_settings {
        validate::router_settings(&state, rs)?;
    }
    validate::key_aliases(&state, &b.aliases)?;
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
    let rec = store.insert_key(&Actor::master_key(), &spec).await?;
    state.key_cache.invalidate_all();
    tracing::info!(public_id = %rec.spec.public_id, "key generated");
    let mut v = view(&rec);
    if let Some(o) = v.as_object_mut() {
        o.insert("key".into(), json!(minted.key.expose_secret()));
    }
    Ok(Json(v))
}

pub async fn update(State(state): State<AppState>, bytes: Bytes) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: UpdateBody = body(&bytes)?;
    if let Some(Some(rs)) = &b.router_settings {
        validate::router_settings(&state, rs)?;
    }
    if let Some(a) = &b.aliases {
        validate::key_aliases(&state, a)?;
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
    let rec = store
        .update_key(&Actor::master_key(), &rec.spec.public_id, &patch)
        .await?;
    state.key_cache.invalidate_all();
    Ok(Json(view(&rec)))
}

pub async fn delete(State(state): State<AppState>, bytes: Bytes) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: DeleteBody = body(&bytes)?;
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
    let deleted = store.delete_keys(&Actor::master_key(), &ids).await?;
    state.key_cache.invalidate_all();
    let ids: Vec<&str> = deleted.iter().map(|r| r.spec.public_id.as_str()).collect();
    Ok(Json(json!({"deleted_keys": ids})))
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
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: KeyRef = body(&bytes)?;
    let rec = find(store.as_ref(), &b.key).await?;
    let minted = keygen::regenerate(&KeyPrefix::default(), &rec.spec.public_id);
    let rec = store
        .regenerate_key(&Actor::master_key(), &rec.spec.public_id, &minted.hash)
        .await?;
    state.key_cache.invalidate_all();
    tracing::info!(public_id = %rec.spec.public_id, "key regenerated");
    let mut v = view(&rec);
    if let Some(o) = v.as_object_mut() {
        o.insert("key".into(), json!(minted.key.expose_secret()));
    }
    Ok(Json(v))
}

async fn set_blocked(state: &AppState, bytes: &Bytes, blocked: bool) -> Result<Value, ApiError> {
    let store = store(state)?;
    let b: KeyRef = body(bytes)?;
    let rec = find(store.as_ref(), &b.key).await?;
    let patch = KeyPatch {
        blocked: Some(blocked),
        ..Default::default()
    };
    let rec = store
        .update_key(&Actor::master_key(), &rec.spec.public_id, &patch)
        .await?;
    state.key_cache.invalidate_all();
    Ok(view(&rec))
}

pub async fn block(State(state): State<AppState>, bytes: Bytes) -> Result<Json<Value>, ApiError> {
    set_blocked(&state, &bytes, true).await.map(Json)
}

pub async fn unblock(State(state): State<AppState>, bytes: Bytes) -> Result<Json<Value>, ApiError> {
    set_blocked(&state, &bytes, false).await.map(Json)
}
