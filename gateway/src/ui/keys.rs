//! Virtual key pages: the searchable, paged list with the create form; the key page with its
//! details, actions (edit, block, regenerate, delete) and the router settings editor. A new
//! or regenerated key's secret is rendered once, on the response to that POST, and never again.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tera::Context;

use super::settings::{Draft, FieldError, ScalarForm, SettingsForm, Subject};
use super::{
    dollars, names, num, page, render, store, Admin, Flash, UiError, UiResult, UiState, PAGE_SIZE,
};
use crate::admin::keys::{self as keys_api, DeleteBody, GenerateBody, UpdateBody};
use crate::admin::validate::KnownTargets;
use crate::config::RouterSettings;
use crate::error::ApiError;
use crate::keys::effective::Source;
use crate::store::keys::{self as keygen, KeyPrefix, PublicId};
use crate::store::{
    self as st, Actor, KeyFilter, KeyRecord, KeyStatus, Page, Store, Team, TeamFilter,
};

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    page: Option<u64>,
    #[serde(default)]
    done: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct KeyForm {
    #[serde(default)]
    key_alias: String,
    #[serde(default)]
    team_id: String,
    #[serde(default)]
    models: String,
    #[serde(default)]
    max_budget: String,
    #[serde(default)]
    rpm_limit: String,
    #[serde(default)]
    tpm_limit: String,
    #[serde(default)]
    max_parallel_requests: String,
    /// `30d`, `12h`, ...; on edit, empty keeps the expiry and `never` removes it.
    #[serde(default)]
    expires_in: String,
}

/// A key as the pages show it. Never the secret; the hash is not shown either.
#[derive(Debug, Serialize)]
pub struct KeyRow {
    id: String,
    name: String,
    alias: Option<String>,
    team_id: Option<String>,
    /// `team_id` percent-encoded for links.
    team_path: Option<String>,
    team_label: Option<String>,
    models: Vec<String>,
    spend: String,
    max_budget: Option<String>,
    rpm_limit: Option<u64>,
    tpm_limit: Option<u64>,
    max_parallel_requests: Option<u64>,
    status: &'static str,
    expires: Option<String>,
    created: String,
    overrides: bool,
}

fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn row(r: &KeyRecord, team: Option<&Team>) -> KeyRow {
    let s = &r.spec;
    KeyRow {
        id: s.public_id.as_str().to_string(),
        name: keygen::display_name(&KeyPrefix::default(), &s.public_id),
        alias: s.key_alias.clone(),
        team_id: s.team_id.clone(),
        team_path: s.team_id.as_deref().map(super::teams::urlencode),
        team_label: team.map(|t| t.spec.team_alias.clone().unwrap_or(t.spec.team_id.clone())),
        models: s.models.clone(),
        spend: r.spend.to_string(),
        max_budget: s.max_budget.map(|b| b.to_string()),
        rpm_limit: s.rpm_limit,
        tpm_limit: s.tpm_limit,
        max_parallel_requests: s.max_parallel_requests,
        status: match r.status(st::now()) {
            KeyStatus::Active => "active",
            KeyStatus::Blocked => "blocked",
            KeyStatus::Expired => "expired",
        },
        expires: s.expires_at.map(date),
        created: date(r.created_at),
        overrides: s.router_settings.is_some(),
    }
}

/// A form field's text, trimmed; empty = `None`.
fn opt_text(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// A refused key form: the API's `duration` is the form's `expires_in`; a refusal naming no
/// field (a taken alias) goes next to the alias.
fn field_of(e: impl Into<UiError>) -> Result<FieldError, UiError> {
    super::refused(e, &[("duration", "expires_in")], "key_alias")
}

async fn team_options(store: &dyn Store) -> Result<Vec<(String, String)>, UiError> {
    // The create form's team menu: the first 200 teams by id; larger sites type the id.
    let teams = store
        .list_teams(&TeamFilter::default(), Page::new(200, 0))
        .await?;
    Ok(teams
        .items
        .iter()
        .map(|t| {
            let label = t.spec.team_alias.clone().unwrap_or(t.spec.team_id.clone());
            (t.spec.team_id.clone(), label)
        })
        .collect())
}

async fn render_list(
    ui: &UiState,
    admin: &Admin,
    q: &ListQuery,
    form: Option<(&KeyForm, &FieldError)>,
) -> UiResult {
    let store = store(ui)?;
    let search = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let page_no = q.page.unwrap_or(1).max(1);
    let filter = KeyFilter {
        alias_contains: search.map(String::from),
        ..Default::default()
    };
    let offset = (page_no - 1) * u64::from(PAGE_SIZE);
    let paged = store
        .list_keys(&filter, Page::new(PAGE_SIZE, offset))
        .await?;
    let mut team_cache: std::collections::BTreeMap<String, Option<Team>> = Default::default();
    let mut rows = Vec::with_capacity(paged.items.len());
    for r in &paged.items {
        let team = match &r.spec.team_id {
            Some(t) => {
                if !team_cache.contains_key(t) {
                    team_cache.insert(t.clone(), store.team(t).await?);
                }
                team_cache.get(t).and_then(Option::as_ref)
            }
            None => None,
        };
        rows.push(row(r, team));
    }
    let pages = paged.total.div_ceil(u64::from(PAGE_SIZE)).max(1);
    let mut ctx = page(Some(admin), "Virtual keys", "keys");
    ctx.insert("keys", &rows);
    ctx.insert("total", &paged.total);
    ctx.insert("page", &page_no);
    ctx.insert("pages", &pages);
    ctx.insert("q", search.unwrap_or_default());
    ctx.insert(
        "q_url",
        &super::teams::urlencode(search.unwrap_or_default()),
    );
    ctx.insert("teams", &team_options(store.as_ref()).await?);
    ctx.insert(
        "flash",
        &Flash {
            done: q.done.clone(),
        }
        .message(),
    );
    let status = match form {
        Some((f, e)) => {
            ctx.insert("form", f);
            ctx.insert("errors", &super::errors_of(e));
            axum::http::StatusCode::UNPROCESSABLE_ENTITY
        }
        None => {
            ctx.insert("form", &KeyForm::default());
            axum::http::StatusCode::OK
        }
    };
    Ok(super::render_as("keys.html", &ctx, status))
}

pub async fn list(State(ui): State<UiState>, admin: Admin, Query(q): Query<ListQuery>) -> UiResult {
    render_list(&ui, &admin, &q, None).await
}

fn secret_page(admin: &Admin, rec: &KeyRecord, secret: &str, what: &str) -> Response {
    let mut ctx = page(Some(admin), "Copy the key now", "keys");
    ctx.insert("key", &row(rec, None));
    ctx.insert("secret", secret);
    ctx.insert("what", what);
    render("secret.html", &ctx)
}

pub async fn create(State(ui): State<UiState>, admin: Admin, Form(f): Form<KeyForm>) -> UiResult {
    let created = match generate_body(&f) {
        Ok(b) => keys_api::generate_key(&ui.app, &Actor::master_key(), b)
            .await
            .map_err(UiError),
        Err(e) => Err(e),
    };
    match created {
        Ok((rec, minted)) => Ok(secret_page(
            &admin,
            &rec,
            minted.key.expose_secret(),
            "created",
        )),
        Err(e) => {
            let fe = field_of(e)?;
            render_list(&ui, &admin, &ListQuery::default(), Some((&f, &fe))).await
        }
    }
}

/// The create form as `/key/generate` takes it; the team, the expiry and the rest are checked
/// there.
fn generate_body(f: &KeyForm) -> Result<GenerateBody, UiError> {
    let fe = |e: FieldError| UiError(ApiError::bad_request(e.message).with_param(&e.field));
    Ok(GenerateBody {
        key_alias: opt_text(&f.key_alias),
        team_id: opt_text(&f.team_id),
        models: names(&f.models),
        max_budget: dollars(&f.max_budget).map_err(fe)?,
        rpm_limit: num("rpm_limit", "requests per minute", &f.rpm_limit).map_err(fe)?,
        tpm_limit: num("tpm_limit", "tokens per minute", &f.tpm_limit).map_err(fe)?,
        max_parallel_requests: num(
            "max_parallel_requests",
            "parallel requests",
            &f.max_parallel_requests,
        )
        .map_err(fe)?,
        duration: opt_text(&f.expires_in),
        ..Default::default()
    })
}

async fn find(store: &dyn Store, id: &str) -> Result<KeyRecord, UiError> {
    let not_found = || {
        UiError(ApiError::not_found(
            "there is no such key (it may have been deleted)",
        ))
    };
    let id = PublicId::new(id).map_err(|_| not_found())?;
    store.key_by_public_id(&id).await?.ok_or_else(not_found)
}

/// A refused submission to show again on the key page.
#[derive(Default)]
pub struct Refused {
    settings: Option<(Draft, ScalarForm, FieldError)>,
    edit: Option<(KeyForm, FieldError)>,
}

async fn subject_parts(
    ui: &UiState,
    store: &dyn Store,
    rec: &KeyRecord,
) -> Result<(Option<Team>, Option<BTreeSet<String>>), UiError> {
    let team = match &rec.spec.team_id {
        Some(t) => store.team(t).await?,
        None => None,
    };
    let models = if !rec.spec.models.is_empty() {
        rec.spec.models.clone()
    } else {
        team.as_ref()
            .map(|t| t.spec.models.clone())
            .unwrap_or_default()
    };
    let usable = super::settings::usable_groups(&ui.app.router.groups(), store, &models).await?;
    Ok((team, usable))
}

/// The key's settings as the editor sees them: its own layer over its team's (when it has a
/// team) over `global`, the live global layer `/key/info` resolves with.
fn key_subject<'a>(
    rec: &'a KeyRecord,
    team: Option<&'a Team>,
    global: &'a RouterSettings,
    usable: Option<BTreeSet<String>>,
) -> Subject<'a> {
    static NONE: LazyLock<RouterSettings> = LazyLock::new(RouterSettings::default);
    let mut parents = Vec::new();
    if let Some(t) = team {
        let team_rs = t.spec.router_settings.as_ref().unwrap_or(&NONE);
        parents.push((Source::Team, team_rs));
    }
    parents.push((Source::Global, global));
    Subject {
        level: Source::Key,
        own: rec.spec.router_settings.as_ref(),
        parents,
        usable,
    }
}

async fn render_detail(
    ui: &UiState,
    admin: &Admin,
    rec: &KeyRecord,
    refused: Refused,
    flash: Option<&'static str>,
) -> UiResult {
    let store = store(ui)?;
    let (team, usable) = subject_parts(ui, store.as_ref(), rec).await?;
    let global = ui.app.global_settings.current();
    let subject = key_subject(rec, team.as_ref(), &global.merged, usable.clone());
    let known = KnownTargets::live(&ui.app);
    let view = match &refused.settings {
        Some((draft, scalars, err)) => subject.view(&known, draft, Some(scalars), Some(err)),
        None => subject.view(
            &known,
            &Draft::of(rec.spec.router_settings.as_ref()),
            None,
            None,
        ),
    };
    let r = row(rec, team.as_ref());
    let title = r.alias.clone().unwrap_or(r.name.clone());
    let mut ctx: Context = page(Some(admin), &title, "keys");
    let form = match &refused.edit {
        Some((f, e)) => {
            ctx.insert("errors", &super::errors_of(e));
            f.clone()
        }
        None => KeyForm {
            key_alias: rec.spec.key_alias.clone().unwrap_or_default(),
            team_id: rec.spec.team_id.clone().unwrap_or_default(),
            models: rec.spec.models.join(", "),
            max_budget: rec
                .spec
                .max_budget
                .map(|b| b.dollars().to_string())
                .unwrap_or_default(),
            rpm_limit: rec
                .spec
                .rpm_limit
                .map(|n| n.to_string())
                .unwrap_or_default(),
            tpm_limit: rec
                .spec
                .tpm_limit
                .map(|n| n.to_string())
                .unwrap_or_default(),
            max_parallel_requests: rec
                .spec
                .max_parallel_requests
                .map(|n| n.to_string())
                .unwrap_or_default(),
            expires_in: String::new(),
        },
    };
    ctx.insert("key", &r);
    ctx.insert("form", &form);
    ctx.insert("teams", &team_options(store.as_ref()).await?);
    ctx.insert("usable", &usable);
    ctx.insert("rs", &view);
    ctx.insert("action", &format!("/ui/keys/{}/settings", r.id));
    ctx.insert("flash", &flash);
    let failed = refused.settings.is_some() || refused.edit.is_some();
    let status = if failed {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    Ok(super::render_as("key.html", &ctx, status))
}

pub async fn detail(
    State(ui): State<UiState>,
    admin: Admin,
    Path(id): Path<String>,
    Query(flash): Query<Flash>,
) -> UiResult {
    let store = store(&ui)?;
    let rec = find(store.as_ref(), &id).await?;
    let flash = flash.message();
    render_detail(&ui, &admin, &rec, Refused::default(), flash).await
}

pub async fn edit(
    State(ui): State<UiState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(f): Form<KeyForm>,
) -> UiResult {
    let store = store(&ui)?;
    let rec = find(store.as_ref(), &id).await?;
    let saved = match update_body(&rec, &f) {
        Ok(b) => keys_api::update_key(&ui.app, &Actor::master_key(), b)
            .await
            .map_err(UiError),
        Err(e) => Err(e),
    };
    if let Err(e) = saved {
        let refused = Refused {
            edit: Some((f, field_of(e)?)),
            ..Default::default()
        };
        return render_detail(&ui, &admin, &rec, refused, None).await;
    }
    Ok(Redirect::to(&format!("/ui/keys/{id}?done=saved")).into_response())
}

/// The edit form as `/key/update` takes it: every form field is set (empty clears it), the
/// expiry only when typed (`never` removes it).
fn update_body(rec: &KeyRecord, f: &KeyForm) -> Result<UpdateBody, UiError> {
    let fe = |e: FieldError| UiError(ApiError::bad_request(e.message).with_param(&e.field));
    let duration = match f.expires_in.trim() {
        "" => None,
        "never" => Some(None),
        v => Some(Some(v.to_string())),
    };
    Ok(UpdateBody {
        key: rec.spec.public_id.as_str().to_string(),
        key_alias: Some(opt_text(&f.key_alias)),
        team_id: Some(opt_text(&f.team_id)),
        models: Some(names(&f.models)),
        max_budget: Some(dollars(&f.max_budget).map_err(fe)?),
        rpm_limit: Some(num("rpm_limit", "requests per minute", &f.rpm_limit).map_err(fe)?),
        tpm_limit: Some(num("tpm_limit", "tokens per minute", &f.tpm_limit).map_err(fe)?),
        max_parallel_requests: Some(
            num(
                "max_parallel_requests",
                "parallel requests",
                &f.max_parallel_requests,
            )
            .map_err(fe)?,
        ),
        duration,
        ..Default::default()
    })
}

pub async fn save_settings(
    State(ui): State<UiState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(f): Form<SettingsForm>,
) -> UiResult {
    let store = store(&ui)?;
    let rec = find(store.as_ref(), &id).await?;
    let (team, usable) = subject_parts(&ui, store.as_ref(), &rec).await?;
    let global = ui.app.global_settings.current();
    let subject = key_subject(&rec, team.as_ref(), &global.merged, usable);
    let known = KnownTargets::live(&ui.app);
    match subject.apply(&known, &f) {
        Ok(own) => {
            let body = UpdateBody {
                key: rec.spec.public_id.as_str().to_string(),
                router_settings: Some(own),
                ..Default::default()
            };
            keys_api::update_key(&ui.app, &Actor::master_key(), body).await?;
            tracing::info!(public_id = %rec.spec.public_id, "key router settings saved in the admin ui");
            Ok(Redirect::to(&format!("/ui/keys/{id}?done=saved#router-settings")).into_response())
        }
        Err(refused) => {
            let (draft, err) = *refused;
            let refused = Refused {
                settings: Some((draft, f.scalars(), err)),
                ..Default::default()
            };
            render_detail(&ui, &admin, &rec, refused, None).await
        }
    }
}

async fn set_blocked(ui: &UiState, id: &str, blocked: bool) -> UiResult {
    let store = store(ui)?;
    let rec = find(store.as_ref(), id).await?;
    keys_api::set_key_blocked(
        &ui.app,
        &Actor::master_key(),
        rec.spec.public_id.as_str(),
        blocked,
    )
    .await?;
    let done = if blocked { "blocked" } else { "unblocked" };
    Ok(Redirect::to(&format!("/ui/keys/{id}?done={done}")).into_response())
}

pub async fn block(State(ui): State<UiState>, _admin: Admin, Path(id): Path<String>) -> UiResult {
    set_blocked(&ui, &id, true).await
}

pub async fn unblock(State(ui): State<UiState>, _admin: Admin, Path(id): Path<String>) -> UiResult {
    set_blocked(&ui, &id, false).await
}

pub async fn regenerate(
    State(ui): State<UiState>,
    admin: Admin,
    Path(id): Path<String>,
) -> UiResult {
    let store = store(&ui)?;
    let rec = find(store.as_ref(), &id).await?;
    let (rec, minted) =
        keys_api::regenerate_key(&ui.app, &Actor::master_key(), rec.spec.public_id.as_str())
            .await?;
    Ok(secret_page(
        &admin,
        &rec,
        minted.key.expose_secret(),
        "regenerated",
    ))
}

pub async fn delete(State(ui): State<UiState>, _admin: Admin, Path(id): Path<String>) -> UiResult {
    let store = store(&ui)?;
    let rec = find(store.as_ref(), &id).await?;
    let body = DeleteBody {
        keys: vec![rec.spec.public_id.as_str().to_string()],
        ..Default::default()
    };
    keys_api::delete_keys(&ui.app, &Actor::master_key(), body).await?;
    Ok(Redirect::to("/ui/keys?done=deleted").into_response())
}
