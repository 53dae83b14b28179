//! `GET /config/export` and `POST /config/import`: the HTTP face of `state/`. Import takes
//! the document as text inside a JSON body (so size, alias and location checks are the
//! CLI's), answers with the plan, and invalidates the key cache after applying so changes
//! take effect on the next request.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use super::{body, query_error, store, ChangedBy};
use crate::error::ApiError;
use crate::state::{self, ConflictMode, Format, ImportError, Include, SecretsMode};
use crate::store::{Actor, SealPurpose, SecretCipher};
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    #[serde(default)]
    format: Format,
    #[serde(default)]
    secrets: SecretsMode,
    /// Comma-separated sections; all when absent.
    #[serde(default)]
    include: Option<String>,
    #[serde(default)]
    instance: Option<String>,
}

/// The cipher for export secrets, from the configured salt key.
fn export_cipher(state: &AppState) -> Result<Option<SecretCipher>, ApiError> {
    state
        .config
        .general_settings
        .salt_key
        .as_ref()
        .map(|salt| SecretCipher::derive(salt, SealPurpose::ExportSecrets))
        .transpose()
        .map_err(ApiError::from)
}

fn include(list: Option<&str>) -> Result<Include, ApiError> {
    Include::parse(list.unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e).with_param("include"))
}

pub async fn export(
    State(state): State<AppState>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(query_error)?;
    let store = store(&state)?;
    let opts = state::ExportOptions {
        secrets: q.secrets,
        include: include(q.include.as_deref())?,
        instance: q.instance,
        export_cipher: export_cipher(&state)?,
    };
    let doc = state::export(store.as_ref(), Some(&state.config), &opts)
        .await
        .map_err(|e| match e {
            state::ExportError::Store(e) => ApiError::from(e),
            state::ExportError::NoSaltKey => ApiError::bad_request(e.to_string()),
            other => ApiError::internal(other),
        })?;
    Ok((
        [(header::CONTENT_TYPE, q.format.content_type())],
        doc.render(q.format),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// The state document, YAML or JSON, as text.
    document: String,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    on_conflict: ConflictMode,
    /// Comma-separated sections; all when absent.
    #[serde(default)]
    include: Option<String>,
    /// Values for redacted placeholders, by `CREDENTIAL/FIELD`.
    #[serde(default)]
    bind_secrets: BTreeMap<String, SecretString>,
}

fn import_error(e: ImportError) -> ApiError {
    match e {
        ImportError::Store(e) => ApiError::from(e),
        ImportError::TooLarge { limit, .. } => ApiError::payload_too_large(limit),
        other => ApiError::bad_request(other.to_string()).with_code("invalid_state_document"),
    }
}

/// Plans the import; applies it unless `dry_run`. 200 with the plan (`applied` says whether
/// it was written); 409 with the plan when it has conflicts; 400 for an invalid document.
pub async fn import(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let req: ImportBody = body(&bytes)?;
    let store = store(&state)?;
    let doc =
        state::parse_document(&req.document, state::DEFAULT_MAX_BYTES).map_err(import_error)?;
    let opts = state::ImportOptions {
        on_conflict: req.on_conflict,
        include: include(req.include.as_deref())?,
        bindings: req.bind_secrets,
        export_cipher: export_cipher(&state)?,
    };
    let plan = state::plan(store.as_ref(), Some(&state.config), doc, &opts)
        .await
        .map_err(import_error)?;
    if !plan.is_clean() {
        let err = ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            format!(
                "the plan has {} conflicts; nothing was changed",
                plan.summary.conflict
            ),
        );
        let mut body = err.body();
        body["applied"] = json!(false);
        body["clean"] = json!(false);
        body["plan"] = json!(plan);
        return Ok((StatusCode::CONFLICT, Json(body)).into_response());
    }
    let applied = if req.dry_run {
        false
    } else {
        state::apply(store.as_ref(), &by.or(Actor::import()), &plan)
            .await
            .map_err(import_error)?;
        // The global router settings may have changed: install them before keys resolve
        // afresh against them. Keys, teams and their settings may have changed: resolve them
        // afresh; runtime models may have changed: install the new routing table.
        if let Err(e) = state.global_settings.load(store.as_ref()).await {
            tracing::warn!(error = %e, "global router settings not reloaded; the previous ones stay");
        }
        state.key_cache.invalidate_all();
        super::models::reload_after_change(&state).await;
        !plan.is_noop()
    };
    Ok(Json(json!({"applied": applied, "clean": true, "plan": plan})).into_response())
}
