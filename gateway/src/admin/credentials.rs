//! `/credentials` handlers (LiteLLM's paths): create, list, info, update and delete reusable
//! provider credentials by name. Values are sealed by the store with the salt key and never
//! returned: responses carry the value *names* only. Runtime models that name a credential are
//! rebuilt after every change, so a rotated key serves on the next request.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, models, store, ChangedBy};
use crate::error::ApiError;
use crate::store::{Credential, CredentialPatch, JsonObject, NewCredential, StoreError};
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBody {
    credential_name: String,
    #[serde(default)]
    credential_values: BTreeMap<String, SecretString>,
    #[serde(default)]
    credential_info: JsonObject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    /// Optional: must equal the path's name when given (LiteLLM sends the whole item).
    #[serde(default)]
    credential_name: Option<String>,
    /// Replaces every value when given.
    #[serde(default)]
    credential_values: Option<BTreeMap<String, SecretString>>,
    #[serde(default)]
    credential_info: Option<JsonObject>,
}

fn view(c: &Credential) -> Value {
    json!({
        "credential_name": c.credential_name,
        "credential_info": c.credential_info,
        "credential_values": c.value_names,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    })
}

/// Credential errors as the client sees them: a missing salt key is the operator's to fix.
fn mapped(e: StoreError) -> ApiError {
    match e {
        StoreError::NoSaltKey => ApiError::unavailable(
            "credential values need a salt key, and none is configured: set SWITCHYARD_SALT_KEY",
        ),
        other => other.into(),
    }
}

pub async fn create(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: NewBody = body(&bytes)?;
    let new = NewCredential {
        credential_name: b.credential_name,
        credential_info: b.credential_info,
        values: b.credential_values,
    };
    let c = store
        .create_credential(&by.actor(), &new)
        .await
        .map_err(mapped)?;
    state.key_cache.invalidate_all();
    Ok(Json(view(&c)))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let all = store.list_credentials().await.map_err(mapped)?;
    let creds: Vec<Value> = all.iter().map(view).collect();
    Ok(Json(json!({ "credentials": creds })))
}

pub async fn info(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let c = store
        .credential(&name)
        .await
        .map_err(mapped)?
        .ok_or_else(|| ApiError::not_found(format!("credential {name:?} not found")))?;
    Ok(Json(view(&c)))
}

pub async fn update(
    State(state): State<AppState>,
    by: ChangedBy,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let b: UpdateBody = body(&bytes)?;
    if let Some(n) = &b.credential_name {
        if n != &name {
            return Err(ApiError::bad_request(format!(
                "credential_name {n:?} differs from the name in the path {name:?}; credentials cannot be renamed"
            ))
            .with_param("credential_name"));
        }
    }
    let patch = CredentialPatch {
        credential_info: b.credential_info,
        values: b.credential_values,
    };
    let c = store
        .update_credential(&by.actor(), &name, &patch)
        .await
        .map_err(mapped)?;
    state.key_cache.invalidate_all();
    models::reload_after_change(&state).await;
    Ok(Json(view(&c)))
}

pub async fn delete(
    State(state): State<AppState>,
    by: ChangedBy,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = store(&state)?;
    let c = store
        .delete_credential(&by.actor(), &name)
        .await
        .map_err(mapped)?;
    state.key_cache.invalidate_all();
    Ok(Json(json!({ "deleted": view(&c) })))
}
