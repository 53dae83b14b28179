//! `/user/*` handlers: new, update, delete, info, list. Users are the people keys and team
//! memberships belong to; unlike LiteLLM, `/user/new` does not mint a key (`/key/generate`
//! with `user_id` does).

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, double, query_error, store, ChangedBy};
use crate::error::ApiError;
use crate::store::{
    JsonObject, KeyFilter, Page, Store, TeamFilter, Usd, User, UserFilter, UserPatch, UserRole,
    UserSpec,
};
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBody {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    user_email: Option<String>,
    #[serde(default)]
    user_role: UserRole,
    #[serde(default)]
    models: Vec<String>,
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
    metadata: JsonObject,
    /// Team ids the user joins as a member.
    #[serde(default)]
    teams: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    user_id: String,
    #[serde(default, deserialize_with = "double")]
    user_email: Option<Option<String>>,
    #[serde(default)]
    user_role: Option<UserRole>,
    #[serde(default)]
    models: Option<Vec<String>>,
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
    #[serde(default)]
    metadata: Option<JsonObject>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    user_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoQuery {
    user_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    page: Option<u64>,
    #[serde(default)]
    page_size: Option<u32>,
    #[serde(default)]
    role: Option<UserRole>,
    #[serde(default)]
    user_email: Option<String>,
}

fn view(u: &User) -> Value {
    super::spec_view(
        &u.spec,
        [
            ("spend", json!(u.spend)),
            ("budget_reset_at", json!(u.budget_reset_at)),
            ("created_at", json!(u.created_at)),
            ("updated_at", json!(u.updated_at)),
        ],
    )
}

async fn find(store: &dyn Store, id: &str) -> Result<User, ApiError> {
    store
        .user(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id:?} not found")))
}

pub async fn create(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: NewBody = body(&bytes)?;
    let spec = UserSpec {
        user_id: b
            .user_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        user_email: b.user_email,
        user_role: b.user_role,
        models: b.models,
        max_budget: b.max_budget,
        soft_budget: b.soft_budget,
        budget_duration: b.budget_duration,
        rpm_limit: b.rpm_limit,
        tpm_limit: b.tpm_limit,
        metadata: b.metadata,
    };
    // User, memberships and audit entries in one transaction: an unknown team writes nothing.
    let user = store
        .create_user_in_teams(&by.actor(), &spec, &b.teams)
        .await?;
    state.key_cache.invalidate_all();
    let mut v = view(&user);
    if let Some(m) = v.as_object_mut() {
        m.insert("teams".into(), json!(b.teams));
    }
    Ok(Json(v))
}

pub async fn update(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: UpdateBody = body(&bytes)?;
    let patch = UserPatch {
        user_email: b.user_email,
        user_role: b.user_role,
        models: b.models,
        max_budget: b.max_budget,
        soft_budget: b.soft_budget,
        budget_duration: b.budget_duration,
        rpm_limit: b.rpm_limit,
        tpm_limit: b.tpm_limit,
        metadata: b.metadata,
    };
    let user = store.update_user(&by.actor(), &b.user_id, &patch).await?;
    state.key_cache.invalidate_all();
    Ok(Json(view(&user)))
}

pub async fn delete(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: DeleteBody = body(&bytes)?;
    for id in &b.user_ids {
        find(store.as_ref(), id).await?;
    }
    let mut deleted = Vec::new();
    for id in &b.user_ids {
        deleted.push(store.delete_user(&by.actor(), id).await?.spec.user_id);
    }
    state.key_cache.invalidate_all();
    Ok(Json(json!({ "deleted_users": deleted })))
}

pub async fn info(
    State(state): State<AppState>,
    q: Result<Query<InfoQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let store = store(&state)?;
    let user = find(store.as_ref(), &q.user_id).await?;
    let keys = store
        .list_keys(
            &KeyFilter {
                user_id: Some(q.user_id.clone()),
                ..Default::default()
            },
            Page::new(1000, 0),
        )
        .await?;
    let teams = store
        .list_teams(
            &TeamFilter {
                member_user_id: Some(q.user_id.clone()),
                ..Default::default()
            },
            Page::new(1000, 0),
        )
        .await?;
    // Keys as their public handles only: never a secret, never the hash.
    let keys: Vec<Value> = keys
        .items
        .iter()
        .map(|k| {
            json!({
                "key_name": crate::store::keys::display_name(
                    &crate::store::keys::KeyPrefix::default(),
                    &k.spec.public_id
                ),
                "key_alias": k.spec.key_alias,
                "team_id": k.spec.team_id,
                "spend": k.spend,
                "blocked": k.spec.blocked,
            })
        })
        .collect();
    let teams: Vec<&str> = teams
        .items
        .iter()
        .map(|t| t.spec.team_id.as_str())
        .collect();
    Ok(Json(json!({
        "user_id": user.spec.user_id,
        "user_info": view(&user),
        "keys": keys,
        "teams": teams,
    })))
}

pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let store = store(&state)?;
    let size = q.page_size.unwrap_or(25);
    let page = q.page.unwrap_or(1).max(1);
    let filter = UserFilter {
        email_contains: q.user_email,
        role: q.role,
    };
    let paged = store
        .list_users(&filter, Page::new(size, (page - 1) * u64::from(size)))
        .await?;
    let users: Vec<Value> = paged.items.iter().map(view).collect();
    let total_pages = if size == 0 {
        0
    } else {
        paged.total.div_ceil(u64::from(size))
    };
    Ok(Json(json!({
        "users": users,
        "total": paged.total,
        "page": page,
        "page_size": size,
        "total_pages": total_pages,
    })))
}
