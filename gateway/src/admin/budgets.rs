//! `/budget/*` handlers: new, update, delete, info, list. A budget is a reusable set of limits
//! (LiteLLM's budget table) that organizations point at with `budget_id`.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, double, query_error, store, ChangedBy};
use crate::error::ApiError;
use crate::store::{Budget, BudgetPatch, BudgetSpec, Page, Usd};
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBody {
    #[serde(default)]
    budget_id: Option<String>,
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
    budget_id: String,
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
}

/// LiteLLM deletes one budget per call, by `id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    id: String,
}

/// LiteLLM's `POST /budget/info` takes a list of ids.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoBody {
    budgets: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoQuery {
    budget_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    page: Option<u64>,
    #[serde(default)]
    size: Option<u32>,
}

fn view(b: &Budget) -> Value {
    super::spec_view(
        &b.spec,
        [
            ("budget_reset_at", json!(b.budget_reset_at)),
            ("created_at", json!(b.created_at)),
            ("updated_at", json!(b.updated_at)),
        ],
    )
}

pub async fn create(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: NewBody = body(&bytes)?;
    let spec = BudgetSpec {
        budget_id: b
            .budget_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        max_budget: b.max_budget,
        soft_budget: b.soft_budget,
        budget_duration: b.budget_duration,
        rpm_limit: b.rpm_limit,
        tpm_limit: b.tpm_limit,
        max_parallel_requests: b.max_parallel_requests,
    };
    let budget = store.create_budget(&by.actor(), &spec).await?;
    state.key_cache.invalidate_all();
    Ok(Json(view(&budget)))
}

pub async fn update(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: UpdateBody = body(&bytes)?;
    let patch = BudgetPatch {
        max_budget: b.max_budget,
        soft_budget: b.soft_budget,
        budget_duration: b.budget_duration,
        rpm_limit: b.rpm_limit,
        tpm_limit: b.tpm_limit,
        max_parallel_requests: b.max_parallel_requests,
    };
    let budget = store
        .update_budget(&by.actor(), &b.budget_id, &patch)
        .await?;
    state.key_cache.invalidate_all();
    Ok(Json(view(&budget)))
}

pub async fn delete(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: DeleteBody = body(&bytes)?;
    let budget = store.delete_budget(&by.actor(), &b.id).await?;
    state.key_cache.invalidate_all();
    Ok(Json(view(&budget)))
}

/// `POST /budget/info {"budgets": [...]}`: every named budget, or 404 naming the first missing.
pub async fn info_many(
    State(state): State<AppState>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: InfoBody = body(&bytes)?;
    let mut out = Vec::new();
    for id in &b.budgets {
        let budget = store
            .budget(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("budget {id:?} not found")))?;
        out.push(view(&budget));
    }
    Ok(Json(Value::Array(out)))
}

/// `GET /budget/info?budget_id=...`: one budget.
pub async fn info(
    State(state): State<AppState>,
    q: Result<Query<InfoQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let store = store(&state)?;
    let budget = store
        .budget(&q.budget_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("budget {:?} not found", q.budget_id)))?;
    Ok(Json(view(&budget)))
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
        .list_budgets(Page::new(size, (page - 1) * u64::from(size)))
        .await?;
    Ok(Json(Value::Array(paged.items.iter().map(view).collect())))
}
