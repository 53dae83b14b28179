//! `/organization/*` handlers: new, update, delete, info, list. Budget fields given inline on
//! `/organization/new` create the organization's budget row, LiteLLM's shape; the store does
//! field checks, reference checks and audit entries.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, double, query_error, store, ChangedBy};
use crate::error::ApiError;
use crate::store::{
    BudgetSpec, JsonObject, Organization, OrganizationPatch, OrganizationSpec, Page, Store, Usd,
};
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBody {
    #[serde(default)]
    organization_id: Option<String>,
    organization_alias: String,
    #[serde(default)]
    budget_id: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    metadata: JsonObject,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    organization_id: String,
    #[serde(default)]
    organization_alias: Option<String>,
    #[serde(default, deserialize_with = "double")]
    budget_id: Option<Option<String>>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    metadata: Option<JsonObject>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    organization_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoQuery {
    organization_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    page: Option<u64>,
    #[serde(default)]
    size: Option<u32>,
}

fn view(o: &Organization) -> Value {
    super::spec_view(
        &o.spec,
        [
            ("spend", json!(o.spend)),
            ("created_at", json!(o.created_at)),
            ("updated_at", json!(o.updated_at)),
        ],
    )
}

async fn find(store: &dyn Store, id: &str) -> Result<Organization, ApiError> {
    store
        .organization(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("organization {id:?} not found")))
}

impl NewBody {
    /// The inline budget, when any budget field was given.
    fn inline_budget(&self, organization_id: &str) -> Option<BudgetSpec> {
        let any = self.max_budget.is_some()
            || self.soft_budget.is_some()
            || self.budget_duration.is_some()
            || self.rpm_limit.is_some()
            || self.tpm_limit.is_some()
            || self.max_parallel_requests.is_some();
        any.then(|| BudgetSpec {
            budget_id: format!("{organization_id}-budget"),
            max_budget: self.max_budget,
            soft_budget: self.soft_budget,
            budget_duration: self.budget_duration.clone(),
            rpm_limit: self.rpm_limit,
            tpm_limit: self.tpm_limit,
            max_parallel_requests: self.max_parallel_requests,
        })
    }
}

pub async fn create(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: NewBody = body(&bytes)?;
    let organization_id = b
        .organization_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let inline = b.inline_budget(&organization_id);
    if inline.is_some() && b.budget_id.is_some() {
        return Err(ApiError::bad_request(
            "give either budget_id or inline budget fields (max_budget, ...), not both",
        )
        .with_param("budget_id"));
    }
    // Refuse a taken id before the inline budget is written, so a conflict writes nothing.
    if store.organization(&organization_id).await?.is_some() {
        return Err(crate::store::StoreError::Conflict {
            kind: crate::store::ObjectKind::Organization,
            field: "organization_id",
            value: organization_id,
        }
        .into());
    }
    let actor = by.actor();
    let budget_id = match &inline {
        Some(spec) => Some(store.create_budget(&actor, spec).await?.spec.budget_id),
        None => b.budget_id,
    };
    let spec = OrganizationSpec {
        organization_id,
        organization_alias: b.organization_alias,
        budget_id,
        models: b.models,
        metadata: b.metadata,
    };
    match store.create_organization(&actor, &spec).await {
        Ok(org) => {
            state.key_cache.invalidate_all();
            Ok(Json(view(&org)))
        }
        Err(e) => {
            // Undo the inline budget: the organization was refused, so nothing stays.
            if let Some(spec) = &inline {
                if let Err(undo) = store.delete_budget(&actor, &spec.budget_id).await {
                    tracing::warn!(budget_id = %spec.budget_id, error = %undo, "could not remove the inline budget of a refused organization");
                }
            }
            Err(e.into())
        }
    }
}

pub async fn update(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: UpdateBody = body(&bytes)?;
    let patch = OrganizationPatch {
        organization_alias: b.organization_alias,
        budget_id: b.budget_id,
        models: b.models,
        metadata: b.metadata,
    };
    let org = store
        .update_organization(&by.actor(), &b.organization_id, &patch)
        .await?;
    state.key_cache.invalidate_all();
    Ok(Json(view(&org)))
}

pub async fn delete(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: DeleteBody = body(&bytes)?;
    for id in &b.organization_ids {
        find(store.as_ref(), id).await?;
    }
    let mut deleted = Vec::new();
    for id in &b.organization_ids {
        let org = store.delete_organization(&by.actor(), id).await?;
        deleted.push(view(&org));
    }
    state.key_cache.invalidate_all();
    Ok(Json(json!({ "deleted_organizations": deleted })))
}

pub async fn info(
    State(state): State<AppState>,
    q: Result<Query<InfoQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let store = store(&state)?;
    let org = find(store.as_ref(), &q.organization_id).await?;
    let mut v = view(&org);
    if let (Some(m), Some(id)) = (v.as_object_mut(), &org.spec.budget_id) {
        let budget = store.budget(id).await?;
        m.insert("litellm_budget_table".into(), json!(budget.map(|b| b.spec)));
    }
    Ok(Json(v))
}

pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let store = store(&state)?;
    let size = q.size.unwrap_or(100);
    let page = q.page.unwrap_or(1).max(1);
    let paged = store
        .list_organizations(Page::new(size, (page - 1) * u64::from(size)))
        .await?;
    Ok(Json(Value::Array(paged.items.iter().map(view).collect())))
}
