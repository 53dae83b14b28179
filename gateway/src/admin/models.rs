//! `/model/new|update|delete|info` (and `/v1/model/info`): deployments added at runtime. They
//! live in the store, are checked by the same loader as the config file's (provider prefix,
//! params, ids), and are merged with the config file's into the router's table, which is
//! swapped whole so they serve on the next request. The config file's deployments are listed
//! too, marked read-only; changing them here is refused.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{body, query_error, store, ChangedBy};
use crate::config::{load_str, Deployment, DeploymentId, LoadOptions};
use crate::error::ApiError;
use crate::store::{
    Actor, CredentialValues, JsonObject, ModelPatch, ModelSpec, RuntimeModel, Store, StoreError,
};
use crate::AppState;

/// LiteLLM's way of naming a credential inside `litellm_params`; kept as `credential_name`.
pub const CREDENTIAL_PARAM: &str = "litellm_credential_name";
/// Credential values copied into the params as plain settings (not secrets).
const PLAIN_CREDENTIAL_VALUES: &[&str] = &["api_base", "api_version"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBody {
    pub model_name: String,
    pub litellm_params: JsonObject,
    #[serde(default)]
    pub model_info: JsonObject,
}

/// LiteLLM's shape: the deployment is named by `model_info.id`; `litellm_params` and
/// `model_info` are merged key by key (`null` removes a key).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    #[serde(default)]
    pub model_name: Option<String>,
    #[serde(default)]
    pub litellm_params: Option<JsonObject>,
    pub model_info: JsonObject,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoQuery {
    #[serde(default)]
    litellm_model_id: Option<String>,
}

fn read_only(id: &str) -> ApiError {
    ApiError::forbidden(format!(
        "model {id:?} comes from the config file and is read-only here; change the config file instead"
    ))
    .with_param("model_info.id")
    .with_code("read_only")
}

pub(crate) fn is_file_model(state: &AppState, id: &str) -> bool {
    state.router.file_deployments().iter().any(|d| d.id.0 == id)
        || state.config.unserved.iter().any(|u| u.id.0 == id)
}

/// Takes `model_info.id` out as a string.
fn take_id(info: &mut JsonObject) -> Result<Option<String>, ApiError> {
    match info.remove("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid type for model_info.id: {other}, expected a string"
        ))
        .with_param("model_info.id")),
    }
}

/// Takes `litellm_params.litellm_credential_name` out: absent, cleared (`null`) or a name.
fn take_credential(params: &mut JsonObject) -> Result<Option<Option<String>>, ApiError> {
    match params.remove(CREDENTIAL_PARAM) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s))),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid type for litellm_params.{CREDENTIAL_PARAM}: {other}, expected a string"
        ))
        .with_param(&format!("litellm_params.{CREDENTIAL_PARAM}"))),
    }
}

/// Checks a runtime model with the config loader and turns it into a deployment; `values` are
/// its credential's (secrets never enter the loader's text, so never its messages).
fn deployment(spec: &ModelSpec, values: Option<&CredentialValues>) -> Result<Deployment, ApiError> {
    let mut params = spec.litellm_params.clone();
    if let Some(values) = values {
        for name in PLAIN_CREDENTIAL_VALUES {
            if let (Some(v), false) = (values.get(*name), params.contains_key(*name)) {
                params.insert((*name).into(), Value::String(v.expose_secret().to_owned()));
            }
        }
    }
    let mut info = spec.model_info.clone();
    info.insert("id".into(), Value::String(spec.model_id.clone()));
    let text = json!({"model_list": [{
        "model_name": spec.model_name,
        "litellm_params": params,
        "model_info": info,
    }]})
    .to_string();
    let env = |name: &str| std::env::var(name).ok();
    let loaded = load_str(
        &text,
        std::path::Path::new("model"),
        &env,
        &LoadOptions::default(),
    )
    .map_err(|errors| {
        let first = errors.errors.first();
        let field = first
            .map(|d| d.key_path.trim_start_matches("model_list[0].").to_owned())
            .unwrap_or_default();
        let messages: Vec<String> = errors
            .errors
            .iter()
            .map(|d| {
                let path = d.key_path.trim_start_matches("model_list[0].");
                match &d.hint {
                    Some(h) => format!("{path}: {}\n{h}", d.message),
                    None => format!("{path}: {}", d.message),
                }
            })
            .collect();
        let e = ApiError::bad_request(format!("invalid model: {}", messages.join("; ")));
        if field.is_empty() {
            e
        } else {
            e.with_param(&field)
        }
    })?;
    if let Some(u) = loaded.config.unserved.first() {
        return Err(ApiError::bad_request(format!(
            "provider {:?} of model {:?} is not served by switchyard (served: openai, azure, anthropic and OpenAI-compatible servers)",
            u.provider, u.id.0
        ))
        .with_param("litellm_params.model"));
    }
    let mut d = loaded
        .config
        .model_list
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::bad_request("invalid model: nothing to serve"))?;
    if let Some(key) = values.and_then(|v| v.get("api_key")) {
        if d.api_key.is_none() {
            d.api_key = Some(key.clone());
        }
    }
    Ok(d)
}

/// The credential values a model names; 400 when the credential does not exist.
async fn credential_values(
    store: &dyn Store,
    spec: &ModelSpec,
) -> Result<Option<CredentialValues>, ApiError> {
    let Some(name) = &spec.credential_name else {
        return Ok(None);
    };
    match store.credential_values(name).await {
        Ok(Some(v)) => Ok(Some(v)),
        Ok(None) => Err(ApiError::bad_request(format!(
            "litellm_params.{CREDENTIAL_PARAM} references unknown credential {name:?}"
        ))
        .with_param(&format!("litellm_params.{CREDENTIAL_PARAM}"))),
        Err(StoreError::NoSaltKey) => Err(ApiError::unavailable(
            "credential values need a salt key, and none is configured: set SWITCHYARD_SALT_KEY",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Full check of a runtime model before it is saved: field rules, loader, id not the file's.
async fn check(state: &AppState, store: &dyn Store, spec: &ModelSpec) -> Result<(), ApiError> {
    spec.validate()?;
    if is_file_model(state, &spec.model_id) {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "invalid_request_error",
            format!(
                "model id {:?} is already a deployment of the config file",
                spec.model_id
            ),
        )
        .with_param("model_info.id")
        .with_code("conflict"));
    }
    let values = credential_values(store, spec).await?;
    deployment(spec, values.as_ref())?;
    Ok(())
}

/// Reads every runtime model from the store and installs the merged table. A model that no
/// longer checks out (its credential gone, the config file now has its id) is left out and
/// logged by id; the others serve. Returns how many runtime models serve.
pub async fn load(state: &AppState) -> Result<usize, StoreError> {
    let Some(store) = state.store.clone() else {
        return Ok(0);
    };
    let _guard = state.router.reload_guard().await;
    let models = store.list_models().await?;
    let mut deployments = Vec::with_capacity(models.len());
    for m in &models {
        let spec = &m.spec;
        if is_file_model(state, &spec.model_id) {
            tracing::warn!(model_id = %spec.model_id, "runtime model shares its id with a config-file deployment; not served");
            continue;
        }
        let values = match credential_values(store.as_ref(), spec).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(model_id = %spec.model_id, error = %e.message, "runtime model's credential is unusable; not served");
                continue;
            }
        };
        match deployment(spec, values.as_ref()) {
            Ok(d) => deployments.push(d),
            Err(e) => {
                tracing::warn!(model_id = %spec.model_id, error = %e.message, "runtime model is invalid; not served")
            }
        }
    }
    let n = deployments.len();
    state.router.set_runtime(deployments);
    // Resolved keys hold groups expanded from the old table's access groups.
    state.key_cache.invalidate_all();
    Ok(n)
}

/// [`load`] after an admin change; a failure is logged and the previous table stays.
pub(crate) async fn reload_after_change(state: &AppState) {
    match load(state).await {
        Ok(n) => tracing::info!(runtime_models = n, "routing table reloaded"),
        Err(e) => tracing::warn!(error = %e, "routing table not reloaded; the previous one stays"),
    }
}

fn runtime_view(m: &RuntimeModel, serving: bool) -> Value {
    let mut params: JsonObject = m.spec.without_url_password().litellm_params;
    if let Some(c) = &m.spec.credential_name {
        params.insert(CREDENTIAL_PARAM.into(), json!(c));
    }
    let mut info: JsonObject = m.spec.model_info.clone();
    info.insert("id".into(), json!(m.spec.model_id));
    info.insert("db_model".into(), json!(true));
    info.insert("source".into(), json!("runtime"));
    info.insert("read_only".into(), json!(false));
    info.insert("serving".into(), json!(serving));
    info.insert("created_at".into(), json!(m.created_at));
    info.insert("updated_at".into(), json!(m.updated_at));
    info.insert("created_by".into(), json!(m.created_by));
    json!({"model_name": m.spec.model_name, "litellm_params": params, "model_info": info})
}

/// A config-file deployment as LiteLLM lists it, without secrets.
fn file_view(d: &Deployment) -> Value {
    let model = if d.upstream_model.is_empty() {
        d.provider.as_str().to_owned()
    } else {
        format!("{}/{}", d.provider.as_str(), d.upstream_model)
    };
    let mut params = Map::new();
    params.insert("model".into(), json!(model));
    for (k, v) in [
        (
            "api_base",
            json!(d
                .api_base
                .as_deref()
                .map(crate::config::url::without_password)),
        ),
        ("api_version", json!(d.api_version)),
        ("rpm", json!(d.rpm)),
        ("tpm", json!(d.tpm)),
        ("order", json!(d.order)),
        ("region_name", json!(d.region_name)),
    ] {
        if !v.is_null() {
            params.insert(k.into(), v);
        }
    }
    json!({
        "model_name": d.model_name,
        "litellm_params": params,
        "model_info": {
            "id": d.id.0,
            "db_model": false,
            "source": "config",
            "read_only": true,
            "serving": true,
            "access_groups": d.info.access_groups,
            "max_input_tokens": d.info.max_input_tokens,
            "max_output_tokens": d.info.max_output_tokens,
            "input_cost_per_token": d.info.input_cost_per_token,
            "output_cost_per_token": d.info.output_cost_per_token,
        },
    })
}

async fn find(store: &dyn Store, id: &str) -> Result<RuntimeModel, ApiError> {
    store
        .model(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("model {id:?} not found")))
}

fn serving(state: &AppState, id: &str) -> bool {
    state
        .router
        .runtime_ids()
        .contains(&DeploymentId(id.to_owned()))
}

pub async fn create(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let model = create_model(&state, &by.actor(), body(&bytes)?).await?;
    Ok(Json(runtime_view(
        &model,
        serving(&state, &model.spec.model_id),
    )))
}

/// Creates a runtime model (`/model/new` and the UI): checked like the config file's,
/// written with an audit entry, and served from the next request on.
pub(crate) async fn create_model(
    state: &AppState,
    actor: &Actor,
    mut b: NewBody,
) -> Result<RuntimeModel, ApiError> {
    let store = store(state)?;
    let model_id = take_id(&mut b.model_info)?.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let credential_name = take_credential(&mut b.litellm_params)?.flatten();
    let spec = ModelSpec {
        model_id,
        model_name: b.model_name,
        litellm_params: b.litellm_params,
        credential_name,
        model_info: b.model_info,
    };
    check(state, store.as_ref(), &spec).await?;
    let model = store.create_model(actor, &spec).await?;
    reload_after_change(state).await;
    state.key_cache.invalidate_all();
    Ok(model)
}

/// Applies a JSON merge of `patch` onto `target`: `null` removes a key.
fn merge(target: &mut JsonObject, patch: JsonObject) {
    for (k, v) in patch {
        if v.is_null() {
            target.remove(&k);
        } else {
            target.insert(k, v);
        }
    }
}

pub async fn update(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let model = update_model(&state, &by.actor(), body(&bytes)?).await?;
    Ok(Json(runtime_view(
        &model,
        serving(&state, &model.spec.model_id),
    )))
}

/// Changes a runtime model (`/model/update` and the UI): LiteLLM's merge (`null` removes a
/// key), checked again in whole, config-file models refused.
pub(crate) async fn update_model(
    state: &AppState,
    actor: &Actor,
    mut b: UpdateBody,
) -> Result<RuntimeModel, ApiError> {
    let store = store(state)?;
    let id = take_id(&mut b.model_info)?.ok_or_else(|| {
        ApiError::bad_request("model_info.id names the model to update and is required")
            .with_param("model_info.id")
    })?;
    if is_file_model(state, &id) {
        return Err(read_only(&id));
    }
    let current = find(store.as_ref(), &id).await?;
    let mut spec = current.spec.clone();
    if let Some(name) = b.model_name {
        spec.model_name = name;
    }
    if let Some(mut params) = b.litellm_params {
        if let Some(c) = take_credential(&mut params)? {
            spec.credential_name = c;
        }
        merge(&mut spec.litellm_params, params);
    }
    merge(&mut spec.model_info, b.model_info);
    check(state, store.as_ref(), &spec).await?;
    let patch = ModelPatch {
        model_name: Some(spec.model_name.clone()),
        litellm_params: Some(spec.litellm_params.clone()),
        credential_name: Some(spec.credential_name.clone()),
        model_info: Some(spec.model_info.clone()),
    };
    let model = store.update_model(actor, &id, &patch).await?;
    reload_after_change(state).await;
    state.key_cache.invalidate_all();
    Ok(model)
}

pub async fn delete(
    State(state): State<AppState>,
    by: ChangedBy,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: DeleteBody = body(&bytes)?;
    let model = delete_model(&state, &by.actor(), &b.id).await?;
    Ok(Json(json!({"deleted": runtime_view(&model, false)})))
}

/// Deletes a runtime model (`/model/delete` and the UI); config-file models are refused.
pub(crate) async fn delete_model(
    state: &AppState,
    actor: &Actor,
    id: &str,
) -> Result<RuntimeModel, ApiError> {
    let store = store(state)?;
    if is_file_model(state, id) {
        return Err(read_only(id));
    }
    let model = store.delete_model(actor, id).await?;
    reload_after_change(state).await;
    state.key_cache.invalidate_all();
    Ok(model)
}

/// Every deployment: the config file's (read-only) first, then the runtime ones. Without a
/// store, only the config file's.
pub async fn info(
    State(state): State<AppState>,
    q: Result<Query<InfoQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let wanted = |id: &str| q.litellm_model_id.as_deref().is_none_or(|w| w == id);
    let mut data: Vec<Value> = state
        .router
        .file_deployments()
        .iter()
        .filter(|d| wanted(&d.id.0))
        .map(file_view)
        .collect();
    if let Some(store) = &state.store {
        let runtime = state.router.runtime_ids();
        for m in store.list_models().await? {
            if wanted(&m.spec.model_id) {
                let on = runtime.contains(&DeploymentId(m.spec.model_id.clone()));
                data.push(runtime_view(&m, on));
            }
        }
    }
    if let (Some(id), true) = (&q.litellm_model_id, data.is_empty()) {
        return Err(ApiError::not_found(format!("model {id:?} not found")));
    }
    Ok(Json(json!({ "data": data })))
}
