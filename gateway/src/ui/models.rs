//! The models page: deployments by model group with their state right now (cooling down,
//! in flight, requests and tokens this minute, latency). Config-file deployments are
//! read-only here; runtime models from the store are created, edited and deleted through the
//! same functions as `/model/new|update|delete` (`admin::models`). No secret is shown: an API
//! key is a write-only field, and appears only as "set" or "not set".

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::Form;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::settings::FieldError;
use super::teams::urlencode;
use super::{bad, names, num, page, render_as, store, Admin, Flash, UiError, UiResult, UiState};
use crate::admin::models::{self as admin, NewBody, UpdateBody, CREDENTIAL_PARAM};
use crate::error::ApiError;
use crate::store::{
    Actor, CredentialPatch, CredentialValues, JsonObject, NewCredential, RuntimeModel, StoreError,
};

#[derive(Debug, Serialize)]
struct DeploymentRow {
    id: String,
    /// `id` percent-encoded for links.
    path: String,
    provider: &'static str,
    upstream_model: String,
    api_base: Option<String>,
    api_key_set: bool,
    rpm: Option<u64>,
    tpm: Option<u64>,
    order: Option<u32>,
    in_flight: u32,
    requests_this_minute: u64,
    tokens_this_minute: u64,
    latency_ms: Option<f64>,
    cooling_down_s: Option<f64>,
}

#[derive(Debug, Serialize)]
struct GroupView {
    name: String,
    deployments: Vec<DeploymentRow>,
    healthy: usize,
}

#[derive(Debug, Serialize)]
struct RuntimeRow {
    id: String,
    /// `id` percent-encoded for links.
    path: String,
    group: String,
    credential: Option<String>,
    model: Option<String>,
    api_base: Option<String>,
    api_key_set: bool,
    serving: bool,
}

async fn render_page(
    ui: &UiState,
    admin: &Admin,
    form: Option<(&ModelForm, &FieldError)>,
    flash: Option<&'static str>,
) -> UiResult {
    let now = Instant::now();
    let mut groups: BTreeMap<String, Vec<DeploymentRow>> = BTreeMap::new();
    for d in ui.app.router.groups().deployments() {
        let dep = &d.deployment;
        let (requests, tokens) = d.usage_now(now);
        let latency = d.latency_us();
        groups
            .entry(dep.model_name.clone())
            .or_default()
            .push(DeploymentRow {
                id: dep.id.0.clone(),
                path: urlencode(&dep.id.0),
                provider: dep.provider.as_str(),
                upstream_model: dep.upstream_model.clone(),
                api_base: dep
                    .api_base
                    .as_deref()
                    .map(crate::config::url::without_userinfo),
                api_key_set: dep.api_key.is_some(),
                rpm: dep.rpm,
                tpm: dep.tpm,
                order: dep.order,
                in_flight: d.in_flight(),
                requests_this_minute: requests,
                tokens_this_minute: tokens,
                latency_ms: (latency > 0).then(|| latency as f64 / 1000.0),
                cooling_down_s: d
                    .cooldown_remaining(now)
                    .map(|r| (r.as_secs_f64() * 10.0).ceil() / 10.0),
            });
    }
    let groups: Vec<GroupView> = groups
        .into_iter()
        .map(|(name, mut deployments)| {
            deployments.sort_by(|a, b| a.id.cmp(&b.id));
            let healthy = deployments
                .iter()
                .filter(|d| d.cooling_down_s.is_none())
                .count();
            GroupView {
                name,
                deployments,
                healthy,
            }
        })
        .collect();
    let runtime: Vec<RuntimeRow> = match &ui.app.store {
        Some(store) => store
            .list_models()
            .await?
            .into_iter()
            .map(|m| {
                let p = &m.spec.litellm_params;
                let s = |k: &str| p.get(k).and_then(|v| v.as_str()).map(String::from);
                let id = m.spec.model_id.clone();
                RuntimeRow {
                    path: urlencode(&id),
                    serving: ui
                        .app
                        .router
                        .runtime_ids()
                        .contains(&crate::config::DeploymentId(id.clone())),
                    id,
                    group: m.spec.model_name.clone(),
                    credential: m.spec.credential_name.clone(),
                    model: s("model"),
                    api_base: s("api_base")
                        .as_deref()
                        .map(crate::config::url::without_userinfo),
                    api_key_set: api_key_set(&m),
                }
            })
            .collect(),
        None => Vec::new(),
    };
    let unserved: Vec<(String, String)> = ui
        .app
        .config
        .unserved
        .iter()
        .map(|u| (u.id.0.clone(), u.model_name.clone()))
        .collect();
    let runtime_ids: std::collections::BTreeSet<&str> =
        runtime.iter().map(|r| r.id.as_str()).collect();
    let mut ctx = page(Some(admin), "Models", "models");
    ctx.insert("runtime_ids", &runtime_ids);
    ctx.insert("has_store", &ui.app.store.is_some());
    ctx.insert("credentials", &credential_names(ui).await?);
    ctx.insert("flash", &flash);
    let mut status = axum::http::StatusCode::OK;
    match form {
        Some((f, e)) => {
            ctx.insert("form", &f.shown());
            ctx.insert("errors", &super::errors_of(e));
            status = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        }
        None => ctx.insert("form", &ModelForm::default()),
    }
    ctx.insert("groups", &groups);
    ctx.insert("runtime", &runtime);
    ctx.insert("unserved", &unserved);
    ctx.insert(
        "config_file",
        &ui.app
            .config
            .source
            .as_ref()
            .map(|p| p.display().to_string()),
    );
    Ok(render_as("models.html", &ctx, status))
}

pub async fn page_route(
    State(ui): State<UiState>,
    admin: Admin,
    Query(flash): Query<Flash>,
) -> UiResult {
    render_page(&ui, &admin, None, flash.message()).await
}

/// Whether a runtime model has an API key: an `os.environ/` reference or a credential.
fn api_key_set(m: &RuntimeModel) -> bool {
    m.spec.litellm_params.contains_key("api_key") || m.spec.credential_name.is_some()
}

async fn credential_names(ui: &UiState) -> Result<Vec<String>, UiError> {
    Ok(match &ui.app.store {
        Some(store) => match store.list_credentials().await {
            Ok(list) => list.into_iter().map(|c| c.credential_name).collect(),
            Err(e) => return Err(e.into()),
        },
        None => Vec::new(),
    })
}

/// The create and edit form of a runtime model, as typed. `api_key` is write-only: it is
/// never rendered back (see [`ModelForm::shown`]).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ModelForm {
    #[serde(default)]
    model_id: String,
    #[serde(default)]
    model_name: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    api_base: String,
    #[serde(default)]
    credential: String,
    #[serde(default, skip_serializing)]
    api_key: String,
    #[serde(default)]
    clear_api_key: Option<String>,
    #[serde(default)]
    rpm: String,
    #[serde(default)]
    tpm: String,
    #[serde(default)]
    weight: String,
    #[serde(default)]
    order: String,
    #[serde(default)]
    timeout: String,
    #[serde(default)]
    access_groups: String,
    #[serde(default)]
    input_cost_per_token: String,
    #[serde(default)]
    output_cost_per_token: String,
}

/// An optional non-negative number (`weight`, `timeout`, prices): empty = `None`.
fn decimal(field: &str, label: &str, v: &str) -> Result<Option<f64>, FieldError> {
    match v.trim() {
        "" => Ok(None),
        v => v
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(Some)
            .ok_or_else(|| {
                bad(
                    field,
                    format!("{label} must be a number such as 2 or 0.5, not {v:?}"),
                )
            }),
    }
}

/// The name of the credential the UI keeps a model's typed API key in.
fn own_credential(model_id: &str) -> String {
    format!("{model_id}-api-key")
}

/// What the form sets, in LiteLLM's shape; an empty field is `null` (removed on update).
struct Parsed {
    params: JsonObject,
    info: JsonObject,
    /// A typed key to keep in the model's own credential.
    literal_key: Option<SecretString>,
}

impl ModelForm {
    /// The form as rendered again after an error: everything but the secret.
    fn shown(&self) -> ModelForm {
        ModelForm {
            api_key: String::new(),
            ..self.clone()
        }
    }

    fn parse(&self) -> Result<Parsed, FieldError> {
        let text = |v: &str| match v.trim() {
            "" => Value::Null,
            v => Value::String(v.to_string()),
        };
        let int = |field: &str, label: &str, v: &str| -> Result<Value, FieldError> {
            Ok(num(field, label, v)?.map_or(Value::Null, Value::from))
        };
        let dec = |field: &str, label: &str, v: &str| -> Result<Value, FieldError> {
            Ok(decimal(field, label, v)?.map_or(Value::Null, Value::from))
        };
        if self.model.trim().is_empty() {
            return Err(bad(
                "model",
                "enter the upstream model as provider/model, such as openai/gpt-4o",
            ));
        }
        let mut params = JsonObject::new();
        params.insert("model".into(), text(&self.model));
        params.insert("api_base".into(), text(&self.api_base));
        params.insert("rpm".into(), int("rpm", "requests per minute", &self.rpm)?);
        params.insert("tpm".into(), int("tpm", "tokens per minute", &self.tpm)?);
        params.insert("order".into(), int("order", "order", &self.order)?);
        params.insert("weight".into(), dec("weight", "weight", &self.weight)?);
        params.insert("timeout".into(), dec("timeout", "timeout", &self.timeout)?);
        params.insert(CREDENTIAL_PARAM.into(), text(&self.credential));
        let key = self.api_key.trim();
        let mut literal_key = None;
        if self.clear_api_key.is_some() {
            params.insert("api_key".into(), Value::Null);
        } else if key.starts_with("os.environ/") {
            params.insert("api_key".into(), Value::String(key.to_string()));
        } else if !key.is_empty() {
            literal_key = Some(SecretString::from(key.to_string()));
        }
        let mut info = JsonObject::new();
        let groups = names(&self.access_groups);
        info.insert(
            "access_groups".into(),
            if groups.is_empty() {
                Value::Null
            } else {
                Value::from(groups)
            },
        );
        for (field, label) in [
            ("input_cost_per_token", "the input price"),
            ("output_cost_per_token", "the output price"),
        ] {
            let v = match field {
                "input_cost_per_token" => &self.input_cost_per_token,
                _ => &self.output_cost_per_token,
            };
            info.insert(field.into(), dec(field, label, v)?);
        }
        Ok(Parsed {
            params,
            info,
            literal_key,
        })
    }

    /// The form filled from a stored runtime model (the API key only as set / not set).
    fn of(m: &RuntimeModel) -> ModelForm {
        let p = &m.spec.litellm_params;
        let i = &m.spec.model_info;
        let show = |v: Option<&Value>| match v {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        ModelForm {
            model_id: m.spec.model_id.clone(),
            model_name: m.spec.model_name.clone(),
            model: show(p.get("model")),
            api_base: show(p.get("api_base")),
            credential: m.spec.credential_name.clone().unwrap_or_default(),
            api_key: String::new(),
            clear_api_key: None,
            rpm: show(p.get("rpm")),
            tpm: show(p.get("tpm")),
            weight: show(p.get("weight")),
            order: show(p.get("order")),
            timeout: show(p.get("timeout")),
            access_groups: i
                .get("access_groups")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
            input_cost_per_token: show(i.get("input_cost_per_token")),
            output_cost_per_token: show(i.get("output_cost_per_token")),
        }
    }
}

/// Where an admin error belongs in the form: its `param` (`litellm_params.rpm`) named as the
/// form's field (`rpm`); anything else goes next to the upstream model.
fn field_error(e: ApiError) -> Result<FieldError, UiError> {
    if !e.status.is_client_error() {
        return Err(UiError(e));
    }
    let param = e.param.as_deref().unwrap_or_default();
    let field = match param {
        "model_name" => "model_name",
        "model_info.id" | "id" => "model_id",
        p if p == format!("litellm_params.{CREDENTIAL_PARAM}") => "credential",
        p => match p.rsplit('.').next().unwrap_or_default() {
            f @ ("api_base"
            | "rpm"
            | "tpm"
            | "order"
            | "weight"
            | "timeout"
            | "api_key"
            | "access_groups"
            | "input_cost_per_token"
            | "output_cost_per_token") => f,
            _ => "model",
        },
    };
    Ok(bad(field, e.message))
}

/// What saving a typed key did to the model's own credential, so a failed model save can
/// undo it: the credential was made, or it held these values before.
enum Kept {
    Created(String),
    Replaced(String, CredentialValues),
}

/// Keeps a typed API key in the model's own credential (created, or replaced when the model
/// already uses it), so the models table never holds a secret. A credential of that name the
/// model does not use is someone else's: refused, never overwritten.
async fn keep_key(
    ui: &UiState,
    model_id: &str,
    key: SecretString,
    current: Option<&str>,
) -> Result<Kept, FieldError> {
    let store = store(ui).map_err(|e| bad("api_key", e.0.message))?;
    let name = own_credential(model_id);
    let values = BTreeMap::from([("api_key".to_string(), key)]);
    let actor = Actor::master_key();
    // Reading the stored key and writing the new one fail the same ways.
    let refused = |e: StoreError| {
        match e {
        StoreError::NoSaltKey => bad(
            "api_key",
            "storing an API key needs a salt key (set SWITCHYARD_SALT_KEY), or enter os.environ/NAME to read it from the environment",
        ),
        e => bad("api_key", UiError::from(e).0.message),
    }
    };
    let previous = store.credential_values(&name).await.map_err(refused)?;
    match previous {
        Some(_) if current != Some(name.as_str()) => {
            return Err(bad(
                "api_key",
                format!(
                    "a credential named {name:?} exists already and this model does not use it; \
                     choose it as the model's credential, or enter the key under another model id"
                ),
            ))
        }
        Some(previous) => {
            let patch = CredentialPatch {
                credential_info: None,
                values: Some(values),
            };
            store
                .update_credential(&actor, &name, &patch)
                .await
                .map(|_| Kept::Replaced(name, previous))
        }
        None => {
            let new = NewCredential {
                credential_name: name.clone(),
                credential_info: JsonObject::new(),
                values,
            };
            store
                .create_credential(&actor, &new)
                .await
                .map(|_| Kept::Created(name))
        }
    }
    .map_err(refused)
}

/// Binds a typed key (if any) to the model's own credential in `params`; `current` is the
/// credential the model uses now (`None` for a new model).
async fn bind_key(
    ui: &UiState,
    model_id: &str,
    p: &mut Parsed,
    chosen_credential: &str,
    current: Option<&str>,
) -> Result<Option<Kept>, FieldError> {
    let Some(key) = p.literal_key.take() else {
        return Ok(None);
    };
    let own = own_credential(model_id);
    if !chosen_credential.trim().is_empty() && chosen_credential.trim() != own {
        return Err(bad(
            "api_key",
            "choose a credential or enter an API key, not both",
        ));
    }
    let kept = keep_key(ui, model_id, key, current).await?;
    p.params.insert(CREDENTIAL_PARAM.into(), Value::String(own));
    Ok(Some(kept))
}

/// Undoes [`keep_key`] for a model whose save then failed: a credential made for it is
/// removed, a replaced key is put back.
async fn undo_key(ui: &UiState, kept: Option<Kept>) {
    match kept {
        None => {}
        Some(Kept::Created(name)) => forget_credential(ui, Some(name)).await,
        Some(Kept::Replaced(name, previous)) => {
            if let Some(store) = &ui.app.store {
                let patch = CredentialPatch {
                    credential_info: None,
                    values: Some(previous),
                };
                if let Err(e) = store
                    .update_credential(&Actor::master_key(), &name, &patch)
                    .await
                {
                    tracing::warn!(credential = %name, error = %e, "the previous API key could not be put back");
                }
            }
        }
    }
}

/// Removes a credential the UI made for a model whose save then failed.
async fn forget_credential(ui: &UiState, name: Option<String>) {
    if let (Some(name), Some(store)) = (name, &ui.app.store) {
        let _ = store.delete_credential(&Actor::master_key(), &name).await;
    }
}

pub async fn create(State(ui): State<UiState>, admin: Admin, Form(f): Form<ModelForm>) -> UiResult {
    let fail = |e: FieldError| {
        let (ui, admin, f) = (&ui, &admin, &f);
        async move { render_page(ui, admin, Some((f, &e)), None).await }
    };
    let mut p = match f.parse() {
        Ok(p) => p,
        Err(e) => return fail(e).await,
    };
    let id = match f.model_id.trim() {
        "" => uuid::Uuid::new_v4().to_string(),
        id => id.to_string(),
    };
    // An empty field on create is simply absent.
    p.params.retain(|_, v| !v.is_null());
    p.info.retain(|_, v| !v.is_null());
    p.info.insert("id".into(), Value::String(id.clone()));
    if admin::is_file_model(&ui.app, &id) {
        return fail(bad(
            "model_id",
            format!("model id {id:?} is already a deployment of the config file"),
        ))
        .await;
    }
    let made = match bind_key(&ui, &id, &mut p, &f.credential, None).await {
        Ok(made) => made,
        Err(e) => return fail(e).await,
    };
    let body = NewBody {
        model_name: f.model_name.trim().to_string(),
        litellm_params: p.params,
        model_info: p.info,
    };
    match admin::create_model(&ui.app, &Actor::master_key(), body).await {
        Ok(m) => {
            tracing::info!(model_id = %m.spec.model_id, "runtime model created in the admin ui");
            Ok(Redirect::to("/ui/models?done=created").into_response())
        }
        Err(e) => {
            undo_key(&ui, made).await;
            fail(field_error(e)?).await
        }
    }
}

async fn runtime_model(ui: &UiState, id: &str) -> Result<RuntimeModel, UiError> {
    if admin::is_file_model(&ui.app, id) {
        return Err(UiError(ApiError::forbidden(format!(
            "model {id:?} comes from the config file and is read-only here; change the config file instead"
        ))));
    }
    store(ui)?.model(id).await?.ok_or_else(|| {
        UiError(ApiError::not_found(format!(
            "there is no runtime model {id:?}"
        )))
    })
}

async fn render_edit(
    ui: &UiState,
    admin: &Admin,
    m: &RuntimeModel,
    form: Option<(&ModelForm, &FieldError)>,
    flash: Option<&'static str>,
) -> UiResult {
    let mut ctx = page(Some(admin), &format!("Model {}", m.spec.model_id), "models");
    ctx.insert("id", &m.spec.model_id);
    ctx.insert("path", &urlencode(&m.spec.model_id));
    ctx.insert("api_key_set", &api_key_set(m));
    ctx.insert("credentials", &credential_names(ui).await?);
    ctx.insert("flash", &flash);
    let mut status = axum::http::StatusCode::OK;
    match form {
        Some((f, e)) => {
            ctx.insert("form", &f.shown());
            ctx.insert("errors", &super::errors_of(e));
            status = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        }
        None => ctx.insert("form", &ModelForm::of(m)),
    }
    Ok(render_as("model.html", &ctx, status))
}

pub async fn detail(
    State(ui): State<UiState>,
    admin: Admin,
    Path(id): Path<String>,
    Query(flash): Query<Flash>,
) -> UiResult {
    let m = runtime_model(&ui, &id).await?;
    render_edit(&ui, &admin, &m, None, flash.message()).await
}

pub async fn edit(
    State(ui): State<UiState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(f): Form<ModelForm>,
) -> UiResult {
    let m = runtime_model(&ui, &id).await?;
    let mut p = match f.parse() {
        Ok(p) => p,
        Err(e) => return render_edit(&ui, &admin, &m, Some((&f, &e)), None).await,
    };
    let own = own_credential(&id);
    let drop_own =
        f.clear_api_key.is_some() && m.spec.credential_name.as_deref() == Some(own.as_str());
    if drop_own {
        p.params.insert(CREDENTIAL_PARAM.into(), Value::Null);
    }
    let current = m.spec.credential_name.as_deref();
    let made = match bind_key(&ui, &id, &mut p, &f.credential, current).await {
        Ok(made) => made,
        Err(e) => return render_edit(&ui, &admin, &m, Some((&f, &e)), None).await,
    };
    p.info.insert("id".into(), Value::String(id.clone()));
    let body = UpdateBody {
        model_name: Some(f.model_name.trim().to_string()),
        litellm_params: Some(p.params),
        model_info: p.info,
    };
    match admin::update_model(&ui.app, &Actor::master_key(), body).await {
        Ok(_) => {
            if drop_own {
                // The key's credential was this model's alone.
                forget_credential(&ui, Some(own)).await;
            }
            tracing::info!(model_id = %id, "runtime model updated in the admin ui");
            Ok(Redirect::to(&format!("/ui/models/{}?done=saved", urlencode(&id))).into_response())
        }
        Err(e) => {
            undo_key(&ui, made).await;
            let e = field_error(e)?;
            render_edit(&ui, &admin, &m, Some((&f, &e)), None).await
        }
    }
}

pub async fn delete(State(ui): State<UiState>, _admin: Admin, Path(id): Path<String>) -> UiResult {
    let m = admin::delete_model(&ui.app, &Actor::master_key(), &id).await?;
    // The credential the UI made for this model's key goes with it (kept if others use it).
    if m.spec.credential_name.as_deref() == Some(own_credential(&id).as_str()) {
        forget_credential(&ui, m.spec.credential_name).await;
    }
    tracing::info!(model_id = %id, "runtime model deleted in the admin ui");
    Ok(Redirect::to("/ui/models?done=deleted").into_response())
}
