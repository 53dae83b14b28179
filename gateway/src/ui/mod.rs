//! The admin web UI under `/ui`: server-rendered pages (Tera, autoescaped) for virtual keys
//! with the key-level fallback editor, teams, models, export/import and the activity (audit)
//! log, plus a small embedded stylesheet and script. Sessions and CSRF live in `session`; data
//! goes through the store and the admin validation (`admin::validate`), so the UI can save
//! nothing the admin API would refuse.

mod activity;
mod keys;
mod limit;
mod models;
mod session;
mod settings;
mod teams;
mod transfer;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Form;
use serde::Deserialize;
use tera::{Context, Tera};

use crate::error::ApiError;
use crate::keys::auth::Principal;
use crate::store::{Store, Usd};
use crate::AppState;
use session::{is_tls, set_cookie_header, Session, Sessions};
use settings::FieldError;

/// Form posts are small; this bounds what the CSRF check buffers (1 MiB).
const MAX_FORM_BYTES: usize = 1024 * 1024;
/// Import forms carry a whole state document, urlencoded (up to 3 bytes per byte).
const MAX_IMPORT_FORM_BYTES: usize = 3 * crate::state::DEFAULT_MAX_BYTES;
/// Rows per page on the keys and teams lists.
pub const PAGE_SIZE: u32 = 25;

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/app.js");

static TEMPLATES: LazyLock<Result<Tera, String>> = LazyLock::new(|| {
    let mut t = Tera::default();
    t.add_raw_templates([
        ("base.html", include_str!("templates/base.html")),
        ("macros.html", include_str!("templates/macros.html")),
        ("login.html", include_str!("templates/login.html")),
        ("error.html", include_str!("templates/error.html")),
        ("keys.html", include_str!("templates/keys.html")),
        ("key.html", include_str!("templates/key.html")),
        ("secret.html", include_str!("templates/secret.html")),
        ("settings.html", include_str!("templates/settings.html")),
        ("teams.html", include_str!("templates/teams.html")),
        ("team.html", include_str!("templates/team.html")),
        ("models.html", include_str!("templates/models.html")),
        ("model.html", include_str!("templates/model.html")),
        ("transfer.html", include_str!("templates/transfer.html")),
        ("activity.html", include_str!("templates/activity.html")),
        ("plan.html", include_str!("templates/plan.html")),
    ])
    .map_err(|e| format!("{e:?}"))?;
    // Autoescape is on for `.html` by default; say so, so nobody turns it off by accident.
    t.autoescape_on(vec![".html"]);
    Ok(t)
});

/// State of the UI routes: the gateway's state plus the sessions.
#[derive(Clone)]
pub struct UiState {
    pub app: AppState,
    sessions: Arc<Sessions>,
    logins: Arc<limit::LoginLimiter>,
}

/// Largest form body the UI reads (sign-in, key, team and model forms).
const FORM_MAX_BYTES: usize = 1024 * 1024;

/// State documents (plan and apply) may be as large as an import through the admin API.
fn document_limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(2 * crate::state::DEFAULT_MAX_BYTES)
}

/// The `/ui` routes, ready to merge into the app.
pub fn routes<S: Clone + Send + Sync + 'static>(state: AppState) -> axum::Router<S> {
    let ui = UiState {
        app: state,
        sessions: Arc::new(Sessions::default()),
        logins: Arc::new(limit::LoginLimiter::default()),
    };
    axum::Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/keys") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/keys") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/assets/style.css", get(style))
        .route("/ui/assets/app.js", get(script))
        .route("/ui/keys", get(keys::list).post(keys::create))
        .route("/ui/keys/{id}", get(keys::detail).post(keys::edit))
        .route("/ui/keys/{id}/settings", post(keys::save_settings))
        .route("/ui/keys/{id}/block", post(keys::block))
        .route("/ui/keys/{id}/unblock", post(keys::unblock))
        .route("/ui/keys/{id}/regenerate", post(keys::regenerate))
        .route("/ui/keys/{id}/delete", post(keys::delete))
        .route("/ui/teams", get(teams::list).post(teams::create))
        .route("/ui/teams/{id}", get(teams::detail).post(teams::edit))
        .route("/ui/teams/{id}/settings", post(teams::save_settings))
        .route("/ui/teams/{id}/delete", post(teams::delete))
        .route("/ui/models", get(models::page_route).post(models::create))
        .route("/ui/models/{id}", get(models::detail).post(models::edit))
        .route("/ui/models/{id}/delete", post(models::delete))
        .route("/ui/activity", get(activity::page_route))
        .route("/ui/state", get(transfer::page_route))
        .route("/ui/state/export", get(transfer::export))
        .route(
            "/ui/state/plan",
            post(transfer::plan).layer(document_limit()),
        )
        .route(
            "/ui/state/apply",
            post(transfer::apply).layer(document_limit()),
        )
        .layer(middleware::from_fn_with_state(ui.clone(), guard))
        // The sign-in form is open to anyone: no body may be read without a bound.
        .layer(axum::extract::DefaultBodyLimit::max(FORM_MAX_BYTES))
        .with_state(ui)
}

/// Every state-changing request: same-origin only, and (except the login form) a live
/// session whose CSRF token comes with the form (`csrf`) or the `x-csrf-token` header.
async fn guard(State(ui): State<UiState>, req: Request, next: Next) -> Response {
    let mut resp = if req.method() == Method::GET || req.method() == Method::HEAD {
        next.run(req).await
    } else if cross_site(req.headers()) {
        plain(StatusCode::FORBIDDEN, "cross-site request refused")
    } else if req.uri().path() == "/ui/login" {
        next.run(req).await
    } else {
        let Some(session) = ui.sessions.get(req.headers()) else {
            return Redirect::to("/ui/login").into_response();
        };
        let (parts, body) = req.into_parts();
        let limit = if parts.uri.path().starts_with("/ui/state/") {
            MAX_IMPORT_FORM_BYTES
        } else {
            MAX_FORM_BYTES
        };
        let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "form too large");
        };
        let header_token = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let form_token = form_urlencoded_field(&bytes, "csrf");
        let ok = header_token
            .or(form_token)
            .is_some_and(|t| session.csrf_ok(&t));
        if !ok {
            return plain(
                StatusCode::FORBIDDEN,
                "the form's security token is missing or stale: reload the page and try again",
            );
        }
        next.run(Request::from_parts(parts, Body::from(bytes)))
            .await
    };
    let h = resp.headers_mut();
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // Everything is served from here: no CDN, no inline script, no framing.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    resp
}

/// A browser tells us when a request comes from another site (`Sec-Fetch-Site`, `Origin`).
fn cross_site(h: &HeaderMap) -> bool {
    if h.get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site")
    {
        return true;
    }
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin_host, host) {
        (Some(o), Some(h)) => o != h,
        // `Origin: null` (sandboxed frames, some redirects) or no Host to compare with.
        _ => true,
    }
}

fn form_urlencoded_field(bytes: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn plain(status: StatusCode, msg: &'static str) -> Response {
    (status, msg).into_response()
}

/// A signed-in administrator; handlers that take it redirect to the login page otherwise.
pub struct Admin {
    pub session: Session,
}

impl FromRequestParts<UiState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ui: &UiState) -> Result<Self, Response> {
        match ui.sessions.get(&parts.headers) {
            Some(session) => Ok(Admin { session }),
            None => Err(Redirect::to("/ui/login").into_response()),
        }
    }
}

/// What a handler failed with: rendered as a page with the message in plain words.
pub struct UiError(pub ApiError);

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError(e)
    }
}

impl From<crate::store::StoreError> for UiError {
    fn from(e: crate::store::StoreError) -> Self {
        UiError(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self.0.message, "admin ui request failed");
        }
        let mut ctx = Context::new();
        ctx.insert("title", "Something went wrong");
        ctx.insert("status", &status.as_u16());
        let message = if status.is_server_error() {
            "the gateway could not complete this request; see its log".to_string()
        } else {
            self.0.message
        };
        ctx.insert("message", &message);
        let mut resp = render("error.html", &ctx);
        *resp.status_mut() = status;
        resp
    }
}

pub type UiResult = Result<Response, UiError>;

/// Renders a template; a template bug is a 500 with a short text, logged.
pub fn render(name: &str, ctx: &Context) -> Response {
    let out = match &*TEMPLATES {
        Ok(t) => t.render(name, ctx).map_err(|e| format!("{e:?}")),
        Err(e) => Err(e.clone()),
    };
    match out {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "admin ui template failed");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "template error; see the gateway log",
            )
        }
    }
}

/// [`render`] with `status` (a form's 422, say); a template failure stays a 500.
pub fn render_as(name: &str, ctx: &Context, status: StatusCode) -> Response {
    let mut resp = render(name, ctx);
    if resp.status().is_success() {
        *resp.status_mut() = status;
    }
    resp
}

/// A page context with the layout's variables: title, active nav entry, CSRF token.
pub fn page(admin: Option<&Admin>, title: &str, nav: &str) -> Context {
    let mut ctx = Context::new();
    ctx.insert("title", title);
    ctx.insert("nav", nav);
    ctx.insert("signed_in", &admin.is_some());
    ctx.insert("errors", &BTreeMap::<String, String>::new());
    ctx.insert("flash", &None::<&str>);
    ctx.insert(
        "csrf",
        admin.map(|a| a.session.csrf.as_str()).unwrap_or_default(),
    );
    ctx
}

/// A field error as the templates want it: `errors.<field>` is the message.
pub fn errors_of(e: &settings::FieldError) -> BTreeMap<String, String> {
    BTreeMap::from([(e.field.clone(), e.message.clone())])
}

/// The store, or a page saying the UI needs one.
pub fn store(ui: &UiState) -> Result<Arc<dyn Store>, UiError> {
    ui.app.store.clone().ok_or_else(|| {
        UiError(ApiError::unavailable(
            "this gateway has no store: set DATABASE_URL to manage keys and teams",
        ))
    })
}

/// One line of feedback after a redirect (`?done=...`): fixed texts only, never user input.
#[derive(Debug, Default, Deserialize)]
pub struct Flash {
    #[serde(default)]
    done: Option<String>,
}

impl Flash {
    pub fn message(&self) -> Option<&'static str> {
        Some(match self.done.as_deref()? {
            "saved" => "Saved.",
            "blocked" => "Key blocked: requests with it are refused.",
            "unblocked" => "Key unblocked.",
            "deleted" => "Deleted.",
            "created" => "Created.",
            "imported" => "Imported: the plan was applied in one transaction.",
            _ => return None,
        })
    }
}

async fn login_page(State(ui): State<UiState>, headers: HeaderMap) -> Response {
    if ui.sessions.get(&headers).is_some() {
        return Redirect::to("/ui/keys").into_response();
    }
    render("login.html", &page(None, "Sign in", "login"))
}

/// The client's address for the sign-in limit: the peer's, or with
/// `general_settings.use_x_forwarded_for` the one the reverse proxy in front appended to
/// `X-Forwarded-For` (`limit::forwarded_client`). Without that setting forwarding headers count
/// for nothing: anyone can send them, and the limit must hold for the one sending.
pub struct ClientIp(Option<std::net::IpAddr>);

impl FromRequestParts<UiState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, ui: &UiState) -> Result<Self, Self::Rejection> {
        let forwarded = ui.app.config.general_settings.use_x_forwarded_for;
        let peer = || {
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip().to_canonical())
        };
        Ok(ClientIp(
            forwarded
                .then(|| limit::forwarded_client(&parts.headers))
                .flatten()
                .or_else(peer),
        ))
    }
}

/// 429 with `Retry-After` and the sign-in page saying when to try again.
fn too_many_sign_ins(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut ctx = page(None, "Sign in", "login");
    ctx.insert(
        "error",
        &format!("Too many failed sign-ins from here. Wait {secs} seconds and try again."),
    );
    let mut r = render("login.html", &ctx);
    *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    master_key: String,
}

async fn login(
    State(ui): State<UiState>,
    headers: HeaderMap,
    uri: Uri,
    ClientIp(ip): ClientIp,
    Form(form): Form<LoginForm>,
) -> Response {
    // Checked before the key is looked at: while limited, even the right key waits.
    if let Err(wait) = ui.logins.check(ip) {
        tracing::warn!(
            client = ip.map(tracing::field::display),
            "admin ui sign-in refused: too many failures"
        );
        return too_many_sign_ins(wait);
    }
    let refuse = |msg: &str| {
        ui.logins.failed(ip);
        tracing::info!(
            client = ip.map(tracing::field::display),
            "admin ui sign-in failed"
        );
        let mut ctx = page(None, "Sign in", "login");
        ctx.insert("error", msg);
        let mut r = render("login.html", &ctx);
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r
    };
    let key = form.master_key.trim();
    if key.is_empty() {
        return refuse("Enter the master key.");
    }
    match ui.app.auth.authenticate(Some(key)).await {
        Ok(ctx) if ctx.principal == Principal::Master => {
            ui.logins.succeeded(ip);
            let id = ui.sessions.create();
            let mut resp = Redirect::to("/ui/keys").into_response();
            set_cookie_header(resp.headers_mut(), Some(&id), is_tls(&headers, &uri));
            tracing::info!("admin ui sign-in");
            resp
        }
        Ok(ctx) if ctx.principal == Principal::Open => refuse(
            "This gateway has no master key, so nobody can sign in: set SWITCHYARD_MASTER_KEY (or general_settings.master_key) and restart.",
        ),
        // Virtual keys and wrong keys get the same answer: the page never says a key exists.
        _ => refuse("That is not the master key. Virtual keys cannot sign in."),
    }
}

async fn logout(State(ui): State<UiState>, headers: HeaderMap, uri: Uri) -> Response {
    ui.sessions.remove(&headers);
    let mut resp = Redirect::to("/ui/login").into_response();
    set_cookie_header(resp.headers_mut(), None, is_tls(&headers, &uri));
    resp
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Assets change only with the binary; an hour keeps pages fast and upgrades visible.
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Parses an optional number from a form field: empty = `None`, junk = a plain-words error.
pub fn opt_num<T: std::str::FromStr>(
    field: &str,
    label: &str,
    v: &str,
) -> Result<Option<T>, UiError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        UiError(
            ApiError::bad_request(format!("{label} must be a whole number, got {v:?}"))
                .with_param(field),
        )
    })
}

/// Comma- or space-separated names from a form field.
pub fn names(v: &str) -> Vec<String> {
    v.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A plain-words error next to a form field.
pub fn bad(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A refused form as an error next to its field: the admin logic names the field in `param`
/// (`rename` maps API names to form names); a refusal naming none, such as a conflict, goes
/// next to `default`. Anything but a client error is a `UiError` page.
pub fn refused(
    e: impl Into<UiError>,
    rename: &[(&str, &str)],
    default: &str,
) -> Result<FieldError, UiError> {
    let e = e.into();
    if !e.0.status.is_client_error() {
        return Err(e);
    }
    let field = match e.0.param.as_deref() {
        Some(p) => rename
            .iter()
            .find(|(api, _)| *api == p)
            .map_or(p, |(_, form)| *form),
        None => default,
    };
    Ok(bad(field, e.0.message))
}

/// An optional whole number from a form field: empty = `None`.
pub fn num(field: &str, label: &str, v: &str) -> Result<Option<u64>, FieldError> {
    match v.trim() {
        "" => Ok(None),
        v => v
            .parse()
            .map(Some)
            .map_err(|_| bad(field, format!("{label} must be a whole number, not {v:?}"))),
    }
}

/// An optional amount of dollars (`25`, `$2.50`) from the `max_budget` field.
pub fn dollars(v: &str) -> Result<Option<Usd>, FieldError> {
    match v.trim().trim_start_matches('$') {
        "" => Ok(None),
        v => v
            .parse::<f64>()
            .ok()
            .filter(|d| *d >= 0.0)
            .and_then(Usd::from_dollars)
            .map(Some)
            .ok_or_else(|| {
                bad(
                    "max_budget",
                    format!(
                        "the budget must be an amount of dollars such as 25 or 2.50, not {v:?}"
                    ),
                )
            }),
    }
}
