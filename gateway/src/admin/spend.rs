//! `GET /spend/logs`: recorded requests, newest first, one row per proxied request with its
//! tokens and cost, filtered by key, team, user, model group and time (LiteLLM's path and row
//! field names, Switchyard's paging). Rows reach the store in batches, so the newest second or
//! so of traffic may not be listed yet.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{keys, paged_json, paging, query_error, store};
use crate::error::ApiError;
use crate::store::{PublicId, SpendEntry, SpendLogFilter, Store};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendQuery {
    /// The key as `/key/info` takes it: the full key, its hash (LiteLLM's `token`) or its public
    /// id (which also finds the rows of a deleted key).
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    key_alias: Option<String>,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    /// A model group.
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    start_date: Option<String>,
    #[serde(default)]
    end_date: Option<String>,
    #[serde(default)]
    page: Option<u64>,
    #[serde(default)]
    page_size: Option<u32>,
}

/// `YYYY-MM-DD` (midnight UTC; an end date counts whole, up to the next midnight) or an RFC 3339
/// time (exact).
fn parse_time(param: &str, value: &str, end: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| if end { d.succ_opt() } else { Some(d) })
        .and_then(|d| d.and_hms_opt(0, 0, 0));
    day.map(|t| t.and_utc()).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{param} {value:?}: expected YYYY-MM-DD or an RFC 3339 time"
        ))
        .with_param(param)
    })
}

/// The public id of the key `api_key` names. A public id is taken as it is, so the rows of a
/// deleted key stay reachable.
async fn key_id(store: &dyn Store, api_key: &str) -> Result<PublicId, ApiError> {
    match keys::find(store, api_key).await {
        Ok(rec) => Ok(rec.spec.public_id),
        Err(e) => PublicId::new(api_key).map_err(|_| e.with_param("api_key")),
    }
}

fn view(e: &SpendEntry) -> Value {
    json!({
        "request_id": e.request_id,
        "key_public_id": e.key_public_id.as_ref().map(PublicId::as_str),
        "team_id": e.team_id,
        "user": e.user_id,
        "organization_id": e.organization_id,
        "model_group": e.model_group,
        "model_id": e.deployment_id,
        "prompt_tokens": e.prompt_tokens,
        "completion_tokens": e.completion_tokens,
        "total_tokens": e.total_tokens(),
        "spend": e.cost,
        "status": e.status.as_str(),
        "startTime": e.start_time,
        "endTime": e.end_time,
    })
}

pub async fn logs(
    State(state): State<AppState>,
    q: Result<Query<SpendQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let store = store(&state)?;
    let (page, size, window) = paging(q.page, q.page_size)?;
    let since = q
        .start_date
        .as_deref()
        .map(|v| parse_time("start_date", v, false))
        .transpose()?;
    let until = q
        .end_date
        .as_deref()
        .map(|v| parse_time("end_date", v, true))
        .transpose()?;
    let key_public_id = match (&q.api_key, &q.key_alias) {
        (Some(k), _) => Some(key_id(store.as_ref(), k).await?),
        (None, Some(alias)) => Some(
            keys::find_alias(store.as_ref(), alias)
                .await
                .map_err(|e| e.with_param("key_alias"))?
                .spec
                .public_id,
        ),
        (None, None) => None,
    };
    let filter = SpendLogFilter {
        key_public_id,
        team_id: q.team_id,
        user_id: q.user_id,
        model_group: q.model,
        since,
        until,
    };
    let paged = store.spend_logs(&filter, window).await?;
    let items = paged.items.iter().map(view).collect();
    Ok(Json(paged_json("logs", items, paged.total, page, size)))
}
