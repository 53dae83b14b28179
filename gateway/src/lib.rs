//! Switchyard: an OpenAI-compatible LLM gateway. `app` builds the HTTP router over an
//! [`AppState`]; `serve` runs it on a listener with graceful shutdown; `run` is the binary.

pub mod admin;
pub mod api;
pub mod cli;
pub mod config;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod providers;
pub mod router;
pub mod run;
pub mod state;
pub mod store;
pub mod ui;
pub mod watch;

use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::config::{defaults, Config};
use crate::error::ApiError;
use crate::keys::auth::{presented_token, Authenticator, MasterKeyAuth};
use crate::keys::cache::KeyCache;
use crate::keys::global::GlobalRouterSettings;
use crate::keys::limits::Subjects;
use crate::keys::spend::SpendRecorder;
use crate::keys::virtual_key::VirtualKeyAuth;
use crate::metrics::Metrics;
use crate::providers::ProviderClient;
use crate::router::ModelRouter;
use crate::store::Store;

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub config: Arc<Config>,
    pub router: Arc<ModelRouter>,
    pub client: ProviderClient,
    pub auth: Arc<dyn Authenticator>,
    pub metrics: Arc<Metrics>,
    /// Global router settings: the config file's, with the runtime block (state import) over
    /// them field by field.
    pub global_settings: Arc<GlobalRouterSettings>,
    pub max_body: usize,
    /// The SQL store, when one is configured: virtual keys and the admin API need it.
    pub store: Option<Arc<dyn Store>>,
    /// Resolved virtual keys; admin changes invalidate it.
    pub key_cache: Arc<KeyCache>,
    /// Per key and team: limit windows, requests in flight, spend not yet in the store.
    pub subjects: Arc<Subjects>,
    /// Writes spend to the store in batches (with a store only).
    pub spend: Option<SpendRecorder>,
    /// Deletes spend logs past `maximum_spend_logs_retention_period` (with a store only).
    _retention: Option<keys::retention::RetentionTask>,
    /// Sends key and team rpm/tpm counts to Redis (with a store and Redis only).
    _limits_sync: Option<keys::shared_limits::SyncTask>,
    /// The store's change version the routing table and key cache were last loaded at
    /// (`i64::MIN` before the first load); see [`watch`].
    seen_change: AtomicI64,
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// Knobs that describe this process rather than the deployments.
#[derive(Clone, Debug, Default)]
pub struct StateOptions {
    /// Master key from the environment (`SWITCHYARD_MASTER_KEY`); wins over the config file's.
    pub master_key: Option<secrecy::SecretString>,
    /// Disable backoff jitter (tests).
    pub no_jitter: bool,
    /// The store (from `DATABASE_URL`); `None` = master key only, no admin API.
    pub store: Option<Arc<dyn Store>>,
}

impl AppState {
    pub fn new(config: Config, opts: StateOptions) -> Self {
        let metrics = Arc::new(Metrics::new());
        let global_settings = Arc::new(GlobalRouterSettings::new(config.router_settings.clone()));
        let mut router = ModelRouter::new(&config, Arc::clone(&metrics));
        if opts.no_jitter {
            router = router.without_jitter();
        }
        let router = Arc::new(router);
        // One Redis client for everything instances share (the loader has checked the URL).
        let redis = config.redis.as_ref().and_then(|cfg| {
            router::shared::client(cfg)
                .inspect_err(|e| {
                    tracing::error!(redis = %cfg.shown(), error = %e, "cannot use the Redis settings; nothing is shared")
                })
                .ok()
                .map(|client| (cfg, client))
        });
        if let Some((cfg, client)) = &redis {
            let shared = router::shared::SharedCooldowns::spawn(
                client.clone(),
                cfg,
                Arc::downgrade(&router),
            );
            router.share_cooldowns(shared);
            tracing::info!(redis = %cfg.shown(), "cooldowns shared through Redis");
        }
        let master_key = opts
            .master_key
            .or_else(|| config.general_settings.master_key.clone());
        let master = MasterKeyAuth::new(master_key, Arc::clone(&global_settings));
        let key_cache = Arc::new(KeyCache::new());
        // Keys and teams exist only with a store; with Redis too, their counts are shared.
        let shared_limits = redis.filter(|_| opts.store.is_some());
        let subjects = Arc::new(match shared_limits {
            Some(_) => Subjects::shared(),
            None => Subjects::default(),
        });
        let limits_sync = shared_limits.map(|(cfg, client)| {
            keys::shared_limits::spawn(client, cfg, Arc::downgrade(&subjects))
        });
        let auth: Arc<dyn Authenticator> = match &opts.store {
            Some(store) => Arc::new(VirtualKeyAuth::new(
                master,
                Arc::clone(store),
                Arc::clone(&key_cache),
                Arc::clone(&subjects),
                Arc::clone(&global_settings),
                Arc::clone(&router),
            )),
            None => Arc::new(master),
        };
        let spend = opts.store.as_ref().map(|store| {
            let cache = Arc::clone(&key_cache);
            SpendRecorder::new(Arc::clone(store), Arc::new(move || cache.invalidate_all()))
        });
        let retention = match (&opts.store, config.general_settings.spend_logs_retention) {
            (Some(store), Some(r)) => Some(keys::retention::spawn(Arc::clone(store), r)),
            _ => None,
        };
        let max_body = config
            .general_settings
            .max_request_body_bytes
            .unwrap_or(defaults::MAX_BODY_BYTES);
        let inner = Arc::new(AppInner {
            config: Arc::new(config),
            router,
            client: ProviderClient::new(),
            auth,
            metrics,
            global_settings,
            max_body,
            store: opts.store,
            key_cache,
            subjects,
            spend,
            _retention: retention,
            _limits_sync: limits_sync,
            seen_change: AtomicI64::new(i64::MIN),
        });
        if inner.store.is_some() {
            watch::spawn(Arc::downgrade(&inner), watch::POLL_EVERY);
        }
        AppState(inner)
    }

    /// Installs what the store holds for routing: the runtime global router settings, then the
    /// runtime models (merged with the config file's). Returns how many runtime models serve.
    /// Records the store's change version read before loading (see [`watch`]).
    pub async fn load_runtime(&self) -> Result<usize, crate::store::StoreError> {
        let mut version = None;
        if let Some(store) = &self.store {
            version = Some(store.change_version().await?);
            self.global_settings.load(store.as_ref()).await?;
        }
        let n = admin::models::load(self).await?;
        if let Some(v) = version {
            self.seen_change.store(v, Ordering::Release);
        }
        Ok(n)
    }

    /// Waits until recorded spend is in the store (at most `deadline`); `false` on timeout.
    pub async fn flush_spend(&self, deadline: Duration) -> bool {
        match &self.spend {
            Some(s) => s.flush(deadline).await,
            None => true,
        }
    }
}

/// The HTTP application.
pub fn app(state: AppState) -> axum::Router {
    let proxied = axum::Router::new()
        .route("/v1/chat/completions", post(api::chat::chat_completions))
        .route("/chat/completions", post(api::chat::chat_completions))
        .route("/v1/embeddings", post(api::embeddings::embeddings))
        .route("/embeddings", post(api::embeddings::embeddings))
        .route("/v1/models", get(api::models::list_models))
        .route("/models", get(api::models::list_models))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    axum::Router::new()
        .merge(proxied)
        .merge(admin::routes(state.clone()))
        .merge(ui::routes(state.clone()))
        .route("/health/liveliness", get(api::health::liveliness))
        .route("/health/liveness", get(api::health::liveliness))
        .route("/health/readiness", get(api::health::readiness))
        .route("/metrics", get(api::health::metrics))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

async fn not_found(req: Request) -> Response {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}

async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match authorize(&state, req.headers()).await {
        Ok((ctx, guard)) => {
            req.extensions_mut().insert(ctx);
            hold(next.run(req).await, guard)
        }
        Err(resp) => resp,
    }
}

/// The caller of a proxied request and its parallel-request slot, or the refusal.
async fn authorize(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<
    (
        keys::auth::AuthContext,
        Option<Arc<keys::limits::ParallelGuard>>,
    ),
    Response,
> {
    match state.auth.authenticate(presented_token(headers)).await {
        Ok(mut ctx) => {
            let guard = ctx.parallel.take();
            Ok((ctx, guard))
        }
        Err(e) => {
            state.metrics.request("auth", e.status.as_u16());
            Err(e.into_response())
        }
    }
}

/// Keeps the parallel-request slot taken until the response body (a stream, maybe) is done or
/// dropped.
fn hold(resp: Response, guard: Option<Arc<keys::limits::ParallelGuard>>) -> Response {
    match guard {
        Some(guard) => resp.map(|body| {
            Body::new(Held {
                body,
                _guard: guard,
            })
        }),
        None => resp,
    }
}

/// A response body that holds a value (a parallel-request slot) until it is finished or
/// dropped. Frames and size pass through unchanged, so a JSON answer keeps its
/// `content-length` instead of becoming a chunked stream.
struct Held<T> {
    body: Body,
    _guard: T,
}

impl<T: Unpin> hyper::body::Body for Held<T> {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// Echoes a sane client `x-request-id` or makes one, on every response.
async fn request_id(req: Request, next: Next) -> Response {
    let id = request_id_of(req.headers());
    finish_response(next.run(req).await, id)
}

/// The client's `x-request-id` when it is sane (printable ASCII, at most 128 bytes), else a
/// new UUID.
fn request_id_of(headers: &axum::http::HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|v| v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic()))
        .cloned()
        .unwrap_or_else(|| {
            let mut buf = uuid::Uuid::encode_buffer();
            let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
            HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("unknown"))
        })
}

/// Every response's last step: the request id, and axum's plain-text refusals in the API's
/// error shape.
fn finish_response(mut resp: Response, id: HeaderValue) -> Response {
    // A body over a route's limit, refused by axum's extractors in plain text: say it in the
    // API's error shape.
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE
        && resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"))
    {
        resp = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request body is larger than this route accepts",
        )
        .with_code("request_too_large")
        .into_response();
    }
    resp.headers_mut().insert(REQUEST_ID, id);
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && resp.headers().get("content-type").is_none()
    {
        let mut e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method not allowed for this route",
        )
        .into_response();
        e.headers_mut().extend(resp.headers().clone());
        return e;
    }
    resp
}

/// The served application per connection. Chat completions, the hot path, go straight to
/// their handler; every other request goes through the [`app`] router. Both take the same
/// steps (request id, authentication, parallel slot), so a chat request is answered the same
/// either way; the direct call only skips the router's dispatch and two layers of boxed
/// middleware.
#[derive(Clone)]
struct Connection {
    state: AppState,
    router: axum::Router,
    /// The peer, for handlers that ask (`ConnectInfo`).
    peer: std::net::SocketAddr,
}

fn is_chat_path(path: &str) -> bool {
    matches!(path, "/v1/chat/completions" | "/chat/completions")
}

impl tower::Service<Request> for Connection {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if req.method() == axum::http::Method::POST && is_chat_path(req.uri().path()) {
            let state = self.state.clone();
            return Box::pin(async move { Ok(chat_direct(state, req).await) });
        }
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let router = self.router.clone();
        Box::pin(tower::ServiceExt::oneshot(router, req))
    }
}

/// `POST /v1/chat/completions` without the router: the `request_id` and `authenticate`
/// middleware steps around the handler.
async fn chat_direct(state: AppState, req: Request) -> Response {
    let id = request_id_of(req.headers());
    let (parts, body) = req.into_parts();
    let resp = match authorize(&state, &parts.headers).await {
        Ok((ctx, guard)) => hold(
            api::chat::chat_completions(State(state), axum::Extension(ctx), body).await,
            guard,
        ),
        Err(resp) => resp,
    };
    finish_response(resp, id)
}

/// Makes a [`Connection`] service per accepted connection.
#[derive(Clone)]
struct MakeConnection {
    state: AppState,
    router: axum::Router,
}

impl tower::Service<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for MakeConnection {
    type Response = Connection;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Connection, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(
        &mut self,
        stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>,
    ) -> Self::Future {
        // Responses and stream chunks go out as soon as they are written: with Nagle's
        // algorithm on, a small write waits for the peer's ACK of the previous one, and a peer
        // that delays its ACKs holds an SSE chunk back for up to 40 ms.
        if let Err(e) = stream.io().set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted connection");
        }
        std::future::ready(Ok(Connection {
            state: self.state.clone(),
            router: self.router.clone(),
            peer: *stream.remote_addr(),
        }))
    }
}

/// Serves `state` on `listener` until `shutdown` resolves, then drains in-flight requests for
/// at most `grace` before returning.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: F,
    grace: Duration,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // The peer address reaches handlers (`ConnectInfo`): the admin UI limits failed sign-ins per IP.
    let service = MakeConnection {
        router: app(state.clone()),
        state,
    };
    let server = axum::serve(listener, service).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = tx.send(());
    });
    let server = std::future::IntoFuture::into_future(server);
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r,
        _ = async { if rx.await.is_ok() { tokio::time::sleep(grace).await } else { std::future::pending::<()>().await } } => {
            tracing::warn!(grace_s = grace.as_secs_f64(), "grace period over; dropping remaining connections");
            Ok(())
        }
    }
}
