//! `GET /audit`: the log of admin changes, newest first, with LiteLLM's path, paging and field
//! names (`changed_by`, `table_name`, `before_value`, `updated_values`). Each entry holds the
//! object before and after the change; secret values never enter the log.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{paged_json, paging, query_error, store};
use crate::error::ApiError;
use crate::store::{AuditEntry, AuditFilter, ObjectKind};
use crate::AppState;

/// LiteLLM's table names for the kinds it audits too; a `table_name` filter takes these or
/// Switchyard's kind names (`key`, `team`, `budget`, ...).
const LITELLM_TABLES: &[(ObjectKind, &str)] = &[
    (ObjectKind::Key, "LiteLLM_VerificationToken"),
    (ObjectKind::Team, "LiteLLM_TeamTable"),
    (ObjectKind::User, "LiteLLM_UserTable"),
    (ObjectKind::Model, "LiteLLM_ProxyModelTable"),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    page: Option<u64>,
    #[serde(default)]
    page_size: Option<u32>,
    #[serde(default)]
    changed_by: Option<String>,
    #[serde(default)]
    object_id: Option<String>,
    #[serde(default)]
    table_name: Option<String>,
}

/// The kind a `table_name` filter names, or a 400 listing the names it may take.
fn kind_named(name: &str) -> Result<ObjectKind, ApiError> {
    LITELLM_TABLES
        .iter()
        .find(|(_, table)| table.eq_ignore_ascii_case(name))
        .map(|(kind, _)| *kind)
        .or_else(|| ObjectKind::from_name(name))
        .ok_or_else(|| {
            let known: Vec<&str> = ObjectKind::ALL.iter().map(|k| k.as_str()).collect();
            ApiError::bad_request(format!(
                "unknown table_name {name:?}: one of {}, or LiteLLM's {}",
                known.join(", "),
                LITELLM_TABLES
                    .iter()
                    .map(|(_, t)| *t)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .with_param("table_name")
        })
}

fn view(e: &AuditEntry) -> Value {
    let table = LITELLM_TABLES
        .iter()
        .find(|(kind, _)| kind.as_str() == e.object_kind)
        .map_or(e.object_kind.as_str(), |(_, t)| t);
    json!({
        "id": e.id,
        "updated_at": e.at,
        "changed_by": e.actor,
        "action": e.action,
        "table_name": table,
        "object_kind": e.object_kind,
        "object_id": e.object_id,
        "before_value": e.before,
        "updated_values": e.after,
    })
}

pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let store = store(&state)?;
    let (page, size, window) = paging(q.page, q.page_size)?;
    let filter = AuditFilter {
        object_kind: q.table_name.as_deref().map(kind_named).transpose()?,
        object_id: q.object_id,
        actor: q.changed_by,
    };
    let paged = store.audit_log(&filter, window).await?;
    let items = paged.items.iter().map(view).collect();
    Ok(Json(paged_json(
        "audit_logs",
        items,
        paged.total,
        page,
        size,
    )))
}
