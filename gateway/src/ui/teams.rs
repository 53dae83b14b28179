//! Team pages: the paged list with the create form, and the team page with its details and
//! the team-level router settings editor, listing the team's keys that override each field.

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::Form;
use serde::{Deserialize, Serialize};

use super::settings::{Draft, FieldError, ScalarForm, SettingsForm, Subject, KINDS};
use super::{
    dollars, names, num, page, refused, render_as, store, Admin, Flash, UiError, UiResult, UiState,
    PAGE_SIZE,
};
use crate::admin::teams::{self as teams_api, DeleteBody, NewBody, UpdateBody};
use crate::admin::validate::KnownTargets;
use crate::error::ApiError;
use crate::keys::effective::Source;
use crate::store::{Actor, KeyFilter, Page, Store, Team, TeamFilter, Usd};

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
pub struct TeamForm {
    #[serde(default)]
    team_id: String,
    #[serde(default)]
    team_alias: String,
    #[serde(default)]
    models: String,
    #[serde(default)]
    max_budget: String,
    #[serde(default)]
    rpm_limit: String,
    #[serde(default)]
    tpm_limit: String,
}

#[derive(Debug, Serialize)]
struct TeamRow {
    id: String,
    /// `id` percent-encoded for links.
    path: String,
    alias: Option<String>,
    models: Vec<String>,
    spend: String,
    max_budget: Option<String>,
    rpm_limit: Option<u64>,
    tpm_limit: Option<u64>,
    blocked: bool,
    members: usize,
    overrides: bool,
}

fn row(t: &Team) -> TeamRow {
    TeamRow {
        id: t.spec.team_id.clone(),
        path: urlencode(&t.spec.team_id),
        alias: t.spec.team_alias.clone(),
        models: t.spec.models.clone(),
        spend: t.spend.to_string(),
        max_budget: t.spec.max_budget.map(|b| b.to_string()),
        rpm_limit: t.spec.rpm_limit,
        tpm_limit: t.spec.tpm_limit,
        blocked: t.spec.blocked,
        members: t.spec.members.len(),
        overrides: t.spec.router_settings.is_some(),
    }
}

async fn render_list(
    ui: &UiState,
    admin: &Admin,
    q: &ListQuery,
    form: Option<(&TeamForm, &FieldError)>,
) -> UiResult {
    let store = store(ui)?;
    let search = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let page_no = q.page.unwrap_or(1).max(1);
    let filter = TeamFilter {
        alias_contains: search.map(String::from),
        ..Default::default()
    };
    let paged = store
        .list_teams(
            &filter,
            Page::new(PAGE_SIZE, (page_no - 1) * u64::from(PAGE_SIZE)),
        )
        .await?;
    let rows: Vec<TeamRow> = paged.items.iter().map(row).collect();
    let mut ctx = page(Some(admin), "Teams", "teams");
    ctx.insert("teams", &rows);
    ctx.insert("total", &paged.total);
    ctx.insert("page", &page_no);
    ctx.insert("pages", &paged.total.div_ceil(u64::from(PAGE_SIZE)).max(1));
    ctx.insert("q", search.unwrap_or_default());
    ctx.insert(
        "q_url",
        &super::teams::urlencode(search.unwrap_or_default()),
    );
    ctx.insert(
        "flash",
        &Flash {
            done: q.done.clone(),
        }
        .message(),
    );
    let mut status = axum::http::StatusCode::OK;
    match form {
        Some((f, e)) => {
            ctx.insert("form", f);
            ctx.insert("errors", &super::errors_of(e));
            status = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        }
        None => ctx.insert("form", &TeamForm::default()),
    }
    Ok(render_as("teams.html", &ctx, status))
}

pub async fn list(State(ui): State<UiState>, admin: Admin, Query(q): Query<ListQuery>) -> UiResult {
    render_list(&ui, &admin, &q, None).await
}

/// Budget, rpm and tpm from the form.
type Limits = (Option<Usd>, Option<u64>, Option<u64>);

fn limits(f: &TeamForm) -> Result<Limits, FieldError> {
    Ok((
        dollars(&f.max_budget)?,
        num("rpm_limit", "requests per minute", &f.rpm_limit)?,
        num("tpm_limit", "tokens per minute", &f.tpm_limit)?,
    ))
}

pub async fn create(State(ui): State<UiState>, admin: Admin, Form(f): Form<TeamForm>) -> UiResult {
    let (max_budget, rpm_limit, tpm_limit) = match limits(&f) {
        Ok(l) => l,
        Err(e) => return render_list(&ui, &admin, &ListQuery::default(), Some((&f, &e))).await,
    };
    let id = f.team_id.trim();
    let alias = f.team_alias.trim();
    let body = NewBody {
        team_id: (!id.is_empty()).then(|| id.to_string()),
        team_alias: (!alias.is_empty()).then(|| alias.to_string()),
        models: names(&f.models),
        max_budget,
        rpm_limit,
        tpm_limit,
        ..Default::default()
    };
    match teams_api::create_team(&ui.app, &Actor::master_key(), body).await {
        Ok(t) => Ok(Redirect::to(&format!(
            "/ui/teams/{}?done=created",
            urlencode(&t.spec.team_id)
        ))
        .into_response()),
        Err(e) => {
            let e = refused(e, &[], "team_id")?;
            render_list(&ui, &admin, &ListQuery::default(), Some((&f, &e))).await
        }
    }
}

/// Percent-encodes a path segment (team ids are free text).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn find(store: &dyn Store, id: &str) -> Result<Team, UiError> {
    store
        .team(id)
        .await?
        .ok_or_else(|| UiError(ApiError::not_found(format!("there is no team {id:?}"))))
}

#[derive(Debug, Serialize)]
struct OverridingKey {
    id: String,
    label: String,
    fields: Vec<&'static str>,
}

/// The team's keys that set their own router settings, and which of the page's fields.
async fn overriding_keys(
    store: &dyn Store,
    team_id: &str,
) -> Result<(Vec<OverridingKey>, u64), UiError> {
    let filter = KeyFilter {
        team_id: Some(team_id.to_string()),
        ..Default::default()
    };
    // One page of 1000: a team with more keys shows the first 1000 and says so.
    let keys = store.list_keys(&filter, Page::new(1000, 0)).await?;
    let mut out = Vec::new();
    for k in &keys.items {
        let Some(rs) = &k.spec.router_settings else {
            continue;
        };
        let mut fields = Vec::new();
        let d = Draft::of(Some(rs));
        for (field, label, _) in KINDS {
            let set = match field {
                "fallbacks" => d.fallbacks.is_some(),
                "context_window_fallbacks" => d.context_window_fallbacks.is_some(),
                "content_policy_fallbacks" => d.content_policy_fallbacks.is_some(),
                _ => d.default_fallbacks.is_some(),
            };
            if set {
                fields.push(label);
            }
        }
        if rs.num_retries.is_some() {
            fields.push("Retries");
        }
        if rs.timeout.is_some() {
            fields.push("Timeout");
        }
        if rs.cooldown_time.is_some() {
            fields.push("Cooldown");
        }
        if rs.routing_strategy.is_some() {
            fields.push("Routing strategy");
        }
        if fields.is_empty() {
            continue;
        }
        out.push(OverridingKey {
            id: k.spec.public_id.as_str().to_string(),
            label: k
                .spec
                .key_alias
                .clone()
                .unwrap_or_else(|| k.spec.public_id.as_str().to_string()),
            fields,
        });
    }
    Ok((out, keys.total))
}

#[derive(Default)]
pub struct Refused {
    settings: Option<(Draft, ScalarForm, FieldError)>,
    edit: Option<(TeamForm, FieldError)>,
}

async fn render_detail(
    ui: &UiState,
    admin: &Admin,
    team: &Team,
    refused: Refused,
    flash: Option<&'static str>,
) -> UiResult {
    let store = store(ui)?;
    let usable: Option<BTreeSet<String>> =
        super::settings::usable_groups(&ui.app.router.groups(), store.as_ref(), &team.spec.models)
            .await?;
    let global_layer = ui.app.global_settings.current();
    let subject = Subject {
        level: Source::Team,
        own: team.spec.router_settings.as_ref(),
        parents: vec![(Source::Global, &global_layer.merged)],
        usable: usable.clone(),
    };
    let known = KnownTargets::live(&ui.app);
    let view = match &refused.settings {
        Some((d, s, e)) => subject.view(&known, d, Some(s), Some(e)),
        None => subject.view(
            &known,
            &Draft::of(team.spec.router_settings.as_ref()),
            None,
            None,
        ),
    };
    let (overriding, key_count) = overriding_keys(store.as_ref(), &team.spec.team_id).await?;
    let r = row(team);
    let title = r.alias.clone().unwrap_or(r.id.clone());
    let mut ctx = page(Some(admin), &format!("Team {title}"), "teams");
    let form = match &refused.edit {
        Some((f, e)) => {
            ctx.insert("errors", &super::errors_of(e));
            f.clone()
        }
        None => TeamForm {
            team_id: team.spec.team_id.clone(),
            team_alias: team.spec.team_alias.clone().unwrap_or_default(),
            models: team.spec.models.join(", "),
            max_budget: team
                .spec
                .max_budget
                .map(|b| b.dollars().to_string())
                .unwrap_or_default(),
            rpm_limit: team
                .spec
                .rpm_limit
                .map(|n| n.to_string())
                .unwrap_or_default(),
            tpm_limit: team
                .spec
                .tpm_limit
                .map(|n| n.to_string())
                .unwrap_or_default(),
        },
    };
    ctx.insert("team", &r);
    ctx.insert("team_path", &urlencode(&team.spec.team_id));
    ctx.insert("form", &form);
    ctx.insert("usable", &usable);
    ctx.insert("rs", &view);
    ctx.insert("overriding", &overriding);
    ctx.insert("key_count", &key_count);
    ctx.insert(
        "action",
        &format!("/ui/teams/{}/settings", urlencode(&team.spec.team_id)),
    );
    ctx.insert("flash", &flash);
    let failed = refused.settings.is_some() || refused.edit.is_some();
    let status = if failed {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    Ok(render_as("team.html", &ctx, status))
}

pub async fn detail(
    State(ui): State<UiState>,
    admin: Admin,
    Path(id): Path<String>,
    Query(flash): Query<Flash>,
) -> UiResult {
    let store = store(&ui)?;
    let team = find(store.as_ref(), &id).await?;
    render_detail(&ui, &admin, &team, Refused::default(), flash.message()).await
}

pub async fn edit(
    State(ui): State<UiState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(f): Form<TeamForm>,
) -> UiResult {
    let store = store(&ui)?;
    let team = find(store.as_ref(), &id).await?;
    let (max_budget, rpm_limit, tpm_limit) = match limits(&f) {
        Ok(l) => l,
        Err(e) => {
            let refused = Refused {
                edit: Some((f, e)),
                ..Default::default()
            };
            return render_detail(&ui, &admin, &team, refused, None).await;
        }
    };
    let alias = f.team_alias.trim();
    let body = UpdateBody {
        team_id: team.spec.team_id.clone(),
        team_alias: Some((!alias.is_empty()).then(|| alias.to_string())),
        models: Some(names(&f.models)),
        max_budget: Some(max_budget),
        rpm_limit: Some(rpm_limit),
        tpm_limit: Some(tpm_limit),
        ..Default::default()
    };
    if let Err(e) = teams_api::update_team(&ui.app, &Actor::master_key(), body).await {
        let r = Refused {
            edit: Some((f, refused(e, &[], "team_alias")?)),
            ..Default::default()
        };
        return render_detail(&ui, &admin, &team, r, None).await;
    }
    Ok(Redirect::to(&format!("/ui/teams/{}?done=saved", urlencode(&id))).into_response())
}

pub async fn save_settings(
    State(ui): State<UiState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(f): Form<SettingsForm>,
) -> UiResult {
    let store = store(&ui)?;
    let team = find(store.as_ref(), &id).await?;
    let usable =
        super::settings::usable_groups(&ui.app.router.groups(), store.as_ref(), &team.spec.models)
            .await?;
    let global_layer = ui.app.global_settings.current();
    let subject = Subject {
        level: Source::Team,
        own: team.spec.router_settings.as_ref(),
        parents: vec![(Source::Global, &global_layer.merged)],
        usable,
    };
    let known = KnownTargets::live(&ui.app);
    match subject.apply(&known, &f) {
        Ok(own) => {
            let body = UpdateBody {
                team_id: team.spec.team_id.clone(),
                router_settings: Some(own),
                ..Default::default()
            };
            teams_api::update_team(&ui.app, &Actor::master_key(), body).await?;
            tracing::info!(team_id = %team.spec.team_id, "team router settings saved in the admin ui");
            Ok(Redirect::to(&format!(
                "/ui/teams/{}?done=saved#router-settings",
                urlencode(&id)
            ))
            .into_response())
        }
        Err(refused) => {
            let (draft, err) = *refused;
            let refused = Refused {
                settings: Some((draft, f.scalars(), err)),
                ..Default::default()
            };
            render_detail(&ui, &admin, &team, refused, None).await
        }
    }
}

pub async fn delete(State(ui): State<UiState>, _admin: Admin, Path(id): Path<String>) -> UiResult {
    let store = store(&ui)?;
    let team = find(store.as_ref(), &id).await?;
    let body = DeleteBody {
        team_ids: vec![team.spec.team_id.clone()],
    };
    teams_api::delete_teams(&ui.app, &Actor::master_key(), body).await?;
    Ok(Redirect::to("/ui/teams?done=deleted").into_response())
}
