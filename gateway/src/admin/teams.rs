//! `/team/*` handlers: new, update, delete, info, list, member_add, member_delete.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, double, query_error, store, validate, ChangedBy};
use crate::config::RouterSettings;
use crate::error::ApiError;
use crate::store::{
    Actor, JsonObject, Page, Store, Team, TeamFilter, TeamMember, TeamPatch, TeamRole, TeamSpec,
    Usd,
};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBody {
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub team_alias: Option<String>,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
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
    pub router_settings: Option<RouterSettings>,
    #[serde(default)]
    pub metadata: JsonObject,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default, alias = "members")]
    pub members_with_roles: Vec<MemberBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    pub user_id: String,
    #[serde(default)]
    pub role: TeamRole,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    pub team_id: String,
    #[serde(default, deserialize_with = "double")]
    pub team_alias: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    pub organization_id: Option<Option<String>>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
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
    pub router_settings: Option<Option<RouterSettings>>,
    #[serde(default)]
    pub metadata: Option<JsonObject>,
    #[serde(default)]
    pub blocked: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    pub team_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoQuery {
    team_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    page: Option<u64>,
    #[serde(default)]
    size: Option<u32>,
    #[serde(default)]
    organization_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    team_alias: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(MemberBody),
    Many(Vec<MemberBody>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberAddBody {
    team_id: String,
    member: OneOrMany,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberDeleteBody {
    team_id: String,
    user_id: String,
}

fn view(t: &Team) -> Value {
    super::spec_view(
        &t.spec,
        [
            ("spend", json!(t.spend)),
            ("budget_reset_at", json!(t.budget_reset_at)),
            ("created_at", json!(t.created_at)),
            ("updated_at", json!(t.updated_at)),
        ],
    )
}

async fn find(store: &dyn Store, id: &str) -> Result<Team, ApiError> {
    store
        .team(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("team {id:?} not found")))
}

pub async fn create(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let team = create_team(&state, &by.actor(), body(&bytes)?).await?;
    Ok(Json(view(&team)))
}

/// Creates a team (`/team/new` and the UI): router settings checked against what the gateway
/// serves, members that are not users yet created with it in one transaction, audited as
/// `actor`.
pub(crate) async fn create_team(
    state: &AppState,
    actor: &Actor,
    b: NewBody,
) -> Result<Team, ApiError> {
    let store = store(state)?;
    if let Some(rs) = &b.router_settings {
        validate::router_settings(state, rs)?;
    }
    let members: Vec<TeamMember> = b
        .members_with_roles
        .into_iter()
        .map(|m| TeamMember::new(m.user_id, m.role))
        .collect();
    let spec = TeamSpec {
        team_id: b
            .team_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        team_alias: b.team_alias,
        organization_id: b.organization_id,
        models: b.models,
        max_budget: b.max_budget,
        soft_budget: b.soft_budget,
        budget_duration: b.budget_duration,
        rpm_limit: b.rpm_limit,
        tpm_limit: b.tpm_limit,
        max_parallel_requests: b.max_parallel_requests,
        router_settings: b.router_settings,
        metadata: b.metadata,
        blocked: b.blocked,
        members,
    };
    let team = store.create_team_and_users(actor, &spec).await?;
    state.key_cache.invalidate_all();
    Ok(team)
}

pub async fn update(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let team = update_team(&state, &by.actor(), body(&bytes)?).await?;
    Ok(Json(view(&team)))
}

/// Changes a team (`/team/update` and the UI): absent fields are kept, `null` clears;
/// audited as `actor`, in force for the team's keys from the next request.
pub(crate) async fn update_team(
    state: &AppState,
    actor: &Actor,
    b: UpdateBody,
) -> Result<Team, ApiError> {
    let store = store(state)?;
    if let Some(Some(rs)) = &b.router_settings {
        validate::router_settings(state, rs)?;
    }
    let patch = TeamPatch {
        team_alias: b.team_alias,
        organization_id: b.organization_id,
        models: b.models,
        max_budget: b.max_budget,
        soft_budget: b.soft_budget,
        budget_duration: b.budget_duration,
        rpm_limit: b.rpm_limit,
        tpm_limit: b.tpm_limit,
        max_parallel_requests: b.max_parallel_requests,
        router_settings: b.router_settings,
        metadata: b.metadata,
        blocked: b.blocked,
        members: None,
    };
    let team = store.update_team(actor, &b.team_id, &patch).await?;
    state.key_cache.invalidate_all();
    Ok(team)
}

pub async fn delete(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let deleted = delete_teams(&state, &by.actor(), body(&bytes)?).await?;
    Ok(Json(json!({"deleted_teams": deleted})))
}

/// Deletes teams (`/team/delete` and the UI): every id must exist before any is deleted;
/// audited as `actor`. Returns the deleted ids.
pub(crate) async fn delete_teams(
    state: &AppState,
    actor: &Actor,
    b: DeleteBody,
) -> Result<Vec<String>, ApiError> {
    let store = store(state)?;
    for id in &b.team_ids {
        find(store.as_ref(), id).await?;
    }
    let mut deleted = Vec::new();
    for id in &b.team_ids {
        deleted.push(store.delete_team(actor, id).await?.spec.team_id);
    }
    state.key_cache.invalidate_all();
    Ok(deleted)
}

pub async fn info(
    State(state): State<AppState>,
    q: Result<Query<InfoQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let store = store(&state)?;
    let team = find(store.as_ref(), &q.team_id).await?;
    Ok(Json(
        json!({"team_id": team.spec.team_id, "team_info": view(&team)}),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let store = store(&state)?;
    let size = q.size.unwrap_or(100);
    let page = q.page.unwrap_or(1).max(1);
    let filter = TeamFilter {
        organization_id: q.organization_id,
        member_user_id: q.user_id,
        alias_contains: q.team_alias,
    };
    let paged = store
        .list_teams(&filter, Page::new(size, (page - 1) * u64::from(size)))
        .await?;
    let teams: Vec<Value> = paged.items.iter().map(view).collect();
    Ok(Json(
        json!({"teams": teams, "total_count": paged.total, "current_page": page}),
    ))
}

pub async fn member_add(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: MemberAddBody = body(&bytes)?;
    let members: Vec<TeamMember> = match b.member {
        OneOrMany::One(m) => vec![TeamMember::new(m.user_id, m.role)],
        OneOrMany::Many(ms) => ms
            .into_iter()
            .map(|m| TeamMember::new(m.user_id, m.role))
            .collect(),
    };
    // Missing users, memberships and audit entries in one transaction: all or nothing.
    let team = store
        .add_team_members(&by.actor(), &b.team_id, &members)
        .await?;
    state.key_cache.invalidate_all();
    Ok(Json(view(&team)))
}

pub async fn member_delete(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: MemberDeleteBody = body(&bytes)?;
    let team = store
        .remove_team_member(&by.actor(), &b.team_id, &b.user_id)
        .await?;
    state.key_cache.invalidate_all();
    Ok(Json(view(&team)))
}
