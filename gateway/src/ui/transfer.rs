//! The export/import page: download an export (format, sections, secrets mode), upload or
//! paste a document, see the plan (create / update / unchanged / skip / conflict with field
//! diffs), then apply or cancel. The document model, planning and the one-transaction apply
//! are `state::`; this file only collects the form and renders the plan.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Serialize;

use super::{page, render, store, Admin, Flash, UiError, UiResult, UiState};
use crate::error::ApiError;
use crate::state::{self as st, ConflictMode, Format, ImportError, Include, SecretsMode, Section};
use crate::store::{Actor, SealPurpose, SecretCipher};

/// Pairs of a urlencoded query or form; repeated names (`include=teams&include=keys`) kept.
fn pairs(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(bytes).unwrap_or_default()
}

fn one<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn include(pairs: &[(String, String)]) -> Result<Include, UiError> {
    let mut sections = Vec::new();
    for (_, v) in pairs.iter().filter(|(k, _)| k == "include") {
        let s: Section = v
            .parse()
            .map_err(|e: String| UiError(ApiError::bad_request(e).with_param("include")))?;
        sections.push(s);
    }
    Ok(if sections.is_empty() {
        Include::all()
    } else {
        Include::only(sections)
    })
}

fn cipher(ui: &UiState) -> Result<Option<SecretCipher>, UiError> {
    ui.app
        .config
        .general_settings
        .salt_key
        .as_ref()
        .map(|salt| SecretCipher::derive(salt, SealPurpose::ExportSecrets))
        .transpose()
        .map_err(|e| UiError(e.into()))
}

#[derive(Serialize)]
struct SectionView {
    name: &'static str,
}

fn base(admin: &Admin) -> tera::Context {
    let mut ctx = page(Some(admin), "Export and import", "state");
    let sections: Vec<SectionView> = Section::ALL
        .iter()
        .map(|s| SectionView { name: s.as_str() })
        .collect();
    ctx.insert("sections", &sections);
    ctx
}

pub async fn page_route(
    State(_ui): State<UiState>,
    admin: Admin,
    axum::extract::Query(flash): axum::extract::Query<Flash>,
) -> UiResult {
    let mut ctx = base(&admin);
    ctx.insert("flash", &flash.message());
    ctx.insert("document", "");
    Ok(render("transfer.html", &ctx))
}

pub async fn export(State(ui): State<UiState>, _admin: Admin, RawQuery(q): RawQuery) -> UiResult {
    let store = store(&ui)?;
    let p = pairs(q.unwrap_or_default().as_bytes());
    let format = match one(&p, "format").unwrap_or("yaml").parse::<Format>() {
        Ok(f) => f,
        Err(e) => return Err(UiError(ApiError::bad_request(e).with_param("format"))),
    };
    let secrets = match one(&p, "secrets").unwrap_or("redacted") {
        "encrypted" => SecretsMode::Encrypted,
        _ => SecretsMode::Redacted,
    };
    let opts = st::ExportOptions {
        secrets,
        include: include(&p)?,
        instance: None,
        export_cipher: cipher(&ui)?,
    };
    let doc = st::export(store.as_ref(), Some(&ui.app.config), &opts)
        .await
        .map_err(|e| match e {
            st::ExportError::Store(e) => UiError(e.into()),
            st::ExportError::NoSaltKey => UiError(ApiError::bad_request(e.to_string())),
            other => UiError(ApiError::internal(other)),
        })?;
    let ext = match format {
        Format::Yaml => "yaml",
        Format::Json => "json",
    };
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"switchyard-state.{ext}\""),
            ),
        ],
        doc.render(format),
    )
        .into_response())
}

fn import_error(e: ImportError) -> UiError {
    match e {
        ImportError::Store(e) => UiError(e.into()),
        other => UiError(ApiError::bad_request(other.to_string()).with_param("document")),
    }
}

struct ImportForm {
    document: String,
    on_conflict: ConflictMode,
    include: Include,
    include_raw: Vec<String>,
    /// Values typed for redacted secrets, by `CREDENTIAL/FIELD` (form fields `bind:NAME`).
    /// Never rendered back into a page.
    bindings: BTreeMap<String, SecretString>,
}

/// Form fields carrying a value for a redacted secret are named `bind:CREDENTIAL/FIELD`.
const BIND_PREFIX: &str = "bind:";

fn import_form(bytes: &[u8]) -> Result<ImportForm, UiError> {
    let p = pairs(bytes);
    let on_conflict = one(&p, "on_conflict")
        .unwrap_or("replace")
        .parse::<ConflictMode>()
        .map_err(|e| UiError(ApiError::bad_request(e).with_param("on_conflict")))?;
    Ok(ImportForm {
        document: one(&p, "document").unwrap_or_default().to_string(),
        on_conflict,
        include: include(&p)?,
        include_raw: p
            .iter()
            .filter(|(k, _)| k == "include")
            .map(|(_, v)| v.clone())
            .collect(),
        bindings: p
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(BIND_PREFIX)?;
                (!v.is_empty()).then(|| (name.to_string(), SecretString::from(v.clone())))
            })
            .collect(),
    })
}

/// A plan, and the redacted secrets it still needs values for (`CREDENTIAL/FIELD`). With
/// some unbound, the plan shown is made with stand-in values and must not be applied.
struct Planned {
    plan: st::ImportPlan,
    unbound: Vec<String>,
}

async fn planned(ui: &UiState, f: &ImportForm) -> Result<Planned, UiError> {
    let store = store(ui)?;
    if f.document.trim().is_empty() {
        return Err(UiError(
            ApiError::bad_request("choose a file or paste a document first").with_param("document"),
        ));
    }
    let doc = st::parse_document(&f.document, st::DEFAULT_MAX_BYTES).map_err(import_error)?;
    let mut opts = st::ImportOptions {
        on_conflict: f.on_conflict,
        include: f.include.clone(),
        bindings: f.bindings.clone(),
        export_cipher: cipher(ui)?,
    };
    match st::plan(store.as_ref(), Some(&ui.app.config), doc.clone(), &opts).await {
        Ok(plan) => Ok(Planned {
            plan,
            unbound: Vec::new(),
        }),
        Err(ImportError::Unbound(unbound)) => {
            // Planned again with stand-ins, only to show what the import would do.
            for name in &unbound {
                opts.bindings
                    .insert(name.clone(), SecretString::from(String::new()));
            }
            let plan = st::plan(store.as_ref(), Some(&ui.app.config), doc, &opts)
                .await
                .map_err(import_error)?;
            Ok(Planned { plan, unbound })
        }
        Err(e) => Err(import_error(e)),
    }
}

fn refused(admin: &Admin, f: &ImportForm, e: UiError) -> UiResult {
    if !e.0.status.is_client_error() {
        return Err(e);
    }
    let mut ctx = base(admin);
    ctx.insert("document", &f.document);
    ctx.insert(
        "errors",
        &std::collections::BTreeMap::from([("document".to_string(), e.0.message)]),
    );
    let mut resp = render("transfer.html", &ctx);
    *resp.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    Ok(resp)
}

#[derive(Serialize)]
struct BindView {
    /// `CREDENTIAL/FIELD`.
    name: String,
    /// The input's element id.
    id: String,
    error: Option<String>,
}

#[derive(Serialize)]
struct ChangeView {
    field: String,
    before: Option<String>,
    after: Option<String>,
}

#[derive(Serialize)]
struct ObjectView {
    section: String,
    id: String,
    action: String,
    reason: Option<String>,
    changes: Vec<ChangeView>,
}

fn render_plan(
    admin: &Admin,
    f: &ImportForm,
    planned: &Planned,
    error: Option<&str>,
    missing: bool,
) -> Response {
    let plan = &planned.plan;
    let mut ctx = page(Some(admin), "Import plan", "state");
    let unbound: Vec<BindView> = planned
        .unbound
        .iter()
        .enumerate()
        .map(|(i, name)| BindView {
            name: name.clone(),
            id: format!("bind-{i}"),
            error: missing
                .then(|| format!("enter the value of {name}: the document has only a placeholder")),
        })
        .collect();
    ctx.insert("unbound", &unbound);
    let objects: Vec<ObjectView> = plan
        .objects
        .iter()
        .map(|o| ObjectView {
            section: o.section.clone(),
            id: o.id.clone(),
            action: serde_json::to_value(o.action)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            reason: o.reason.clone(),
            changes: o
                .changes
                .iter()
                .map(|c| ChangeView {
                    field: c.field.clone(),
                    before: c.before.as_ref().map(|v| v.to_string()),
                    after: c.after.as_ref().map(|v| v.to_string()),
                })
                .collect(),
        })
        .collect();
    ctx.insert("summary", &plan.summary);
    ctx.insert("objects", &objects);
    ctx.insert("clean", &plan.is_clean());
    ctx.insert("noop", &plan.is_noop());
    ctx.insert("document", &f.document);
    ctx.insert(
        "on_conflict",
        match f.on_conflict {
            ConflictMode::Skip => "skip",
            ConflictMode::Replace => "replace",
            ConflictMode::Merge => "merge",
        },
    );
    ctx.insert("include", &f.include_raw);
    ctx.insert("error", &error);
    render("plan.html", &ctx)
}

pub async fn plan(State(ui): State<UiState>, admin: Admin, bytes: Bytes) -> UiResult {
    let f = import_form(&bytes)?;
    match planned(&ui, &f).await {
        Ok(p) => Ok(render_plan(&admin, &f, &p, None, false)),
        Err(e) => refused(&admin, &f, e),
    }
}

pub async fn apply(State(ui): State<UiState>, admin: Admin, bytes: Bytes) -> UiResult {
    let f = import_form(&bytes)?;
    // Planned again against the store as it is now: what is applied is what was checked.
    let planned = match planned(&ui, &f).await {
        Ok(p) => p,
        Err(e) => return refused(&admin, &f, e),
    };
    if !planned.unbound.is_empty() {
        let msg = match planned.unbound.len() {
            1 => "a redacted secret has no value; nothing was changed".to_string(),
            n => format!("{n} redacted secrets have no value; nothing was changed"),
        };
        let mut resp = render_plan(&admin, &f, &planned, Some(&msg), true);
        *resp.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(resp);
    }
    let plan = &planned.plan;
    if !plan.is_clean() {
        let msg = format!(
            "the plan has {} conflicts; nothing was changed",
            plan.summary.conflict
        );
        let mut resp = render_plan(&admin, &f, &planned, Some(&msg), false);
        *resp.status_mut() = axum::http::StatusCode::CONFLICT;
        return Ok(resp);
    }
    let store = store(&ui)?;
    st::apply(store.as_ref(), &Actor::import(), plan)
        .await
        .map_err(import_error)?;
    ui.app.key_cache.invalidate_all();
    // Imported models and credentials serve from the next request on.
    crate::admin::models::reload_after_change(&ui.app).await;
    tracing::info!(
        create = plan.summary.create,
        update = plan.summary.update,
        "state imported in the admin ui"
    );
    Ok(Redirect::to("/ui/state?done=imported").into_response())
}
