//! One mock deployment: turns a parsed request into a response plan in its
//! dialect (auth → validation → context window → faults → answer) and
//! records the outcome. Does no I/O: `http::Conn` executes the plan.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::anthropic;
use crate::api::{Answer, ApiError, Call, Ctx, Finish};
use crate::content::answer_pieces;
use crate::duration::Delay;
use crate::faults::{
    normalize_ids, validate_rules, ActiveRules, ContentPolicyMode, FaultEffect, FaultRule,
    SelectCtx,
};
use crate::http::{Action, Reply, ReplyBody, Request, StreamEnd};
use crate::journal::{
    DeploymentStats, Endpoint, Journal, JournalEntry, JournalSnapshot, Outcome, StatsRecorder,
};
use crate::marker::extract_correlation_id;
use crate::openai::{self, Flavor};
use crate::seeded::StableHasher;
use crate::spec::{DeploymentSpec, Dialect};

/// Context window reported by a forced `context_window_exceeded` fault on a
/// deployment without a configured window.
pub const DEFAULT_REPORTED_CONTEXT_WINDOW: u64 = 128_000;

/// The journal fields known before the response is sent.
#[derive(Debug)]
pub(crate) struct Draft {
    arrived: Instant,
    t_us: u64,
    endpoint: Endpoint,
    method: String,
    path: String,
    model: Option<String>,
    stream: bool,
    prompt_tokens: u64,
    correlation_id: Option<String>,
    fault_id: Option<String>,
    rejected: Option<&'static str>,
}

/// A deployment's live state.
#[derive(Debug)]
pub(crate) struct Deployment {
    pub id: Arc<str>,
    pub spec: DeploymentSpec,
    seed: u64,
    fingerprint: String,
    started: Instant,
    faults: RwLock<Arc<ActiveRules>>,
    journal: Journal,
    stats: StatsRecorder,
    requests: AtomicU64,
    /// Responses ended since start/reset, with a wake-up for waiters.
    completed: AtomicU64,
    completed_changed: Notify,
    /// Tasks in `wait_completed`; lets `finish` skip the notify (a lock)
    /// when nobody waits.
    waiters: AtomicU64,
}

impl Deployment {
    /// `spec.faults` must already be validated.
    pub fn new(spec: DeploymentSpec, seed: u64, journal_capacity: usize, started: Instant) -> Self {
        let mut rules = spec.faults.clone();
        normalize_ids(&mut rules);
        Self {
            id: Arc::from(spec.id.as_str()),
            fingerprint: openai::fingerprint(seed, &spec.id),
            spec,
            seed,
            started,
            faults: RwLock::new(Arc::new(ActiveRules::new(rules))),
            journal: Journal::new(journal_capacity),
            stats: StatsRecorder::default(),
            requests: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            completed_changed: Notify::new(),
            waiters: AtomicU64::new(0),
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.spec.dialect
    }

    /// Replaces the rules atomically (fresh selection counters). Invalid
    /// rules change nothing.
    pub fn set_faults(&self, mut rules: Vec<FaultRule>) -> Result<(), Vec<String>> {
        normalize_ids(&mut rules);
        validate_rules(&rules)?;
        *self.faults.write() = Arc::new(ActiveRules::new(rules));
        Ok(())
    }

    pub fn faults(&self) -> Vec<FaultRule> {
        self.faults
            .read()
            .rules
            .iter()
            .map(|r| r.rule.clone())
            .collect()
    }

    pub fn journal(&self, since: u64) -> JournalSnapshot {
        self.journal.snapshot(&self.id, since)
    }

    /// Removes and returns the journal's entries.
    pub fn take_journal(&self) -> JournalSnapshot {
        self.journal.take(&self.id)
    }

    pub fn stats(&self) -> DeploymentStats {
        self.stats
            .snapshot(&self.id, self.spec.dialect, &self.journal)
    }

    /// Back to the start state: no faults, empty journal, zero counters.
    pub fn reset(&self) {
        *self.faults.write() = Arc::new(ActiveRules::default());
        self.journal.clear();
        self.stats.clear();
        self.requests.store(0, Ordering::Relaxed);
        self.completed.store(0, Ordering::SeqCst);
    }

    /// Waits until at least `n` responses have ended (journal entries were
    /// recorded) since start or the last reset.
    pub async fn wait_completed(&self, n: u64) {
        struct Waiting<'a>(&'a AtomicU64);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiters);
        loop {
            let notified = self.completed_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // SeqCst pairs with `finish`: either this load sees the new
            // count, or `finish` sees this waiter and notifies.
            if self.completed.load(Ordering::SeqCst) >= n {
                return;
            }
            notified.await;
        }
    }

    fn new_draft(&self, method: &str, path: &str) -> Draft {
        let arrived = Instant::now();
        Draft {
            arrived,
            t_us: arrived.saturating_duration_since(self.started).as_micros() as u64,
            endpoint: Endpoint::Other,
            method: method.to_owned(),
            path: path.to_owned(),
            model: None,
            stream: false,
            prompt_tokens: 0,
            correlation_id: None,
            fault_id: None,
            rejected: None,
        }
    }

    /// A request that could not even be parsed as HTTP.
    pub fn unreadable(&self, status: u16) -> Draft {
        self.stats.request_received();
        let mut d = self.new_draft("", "");
        d.rejected = Some(if status == 400 {
            "bad_request"
        } else {
            "too_large"
        });
        d
    }

    /// Records how a request ended.
    pub fn finish(&self, draft: Draft, outcome: Outcome) {
        self.stats.completed(&outcome, draft.rejected);
        self.journal.push(JournalEntry {
            seq: 0,
            t_ms: draft.t_us / 1000,
            t_us: draft.t_us,
            duration_ms: draft.arrived.elapsed().as_millis() as u64,
            deployment: self.id.to_string(),
            dialect: self.spec.dialect,
            endpoint: draft.endpoint,
            method: draft.method,
            path: draft.path,
            model: draft.model,
            stream: draft.stream,
            prompt_tokens: draft.prompt_tokens,
            correlation_id: draft.correlation_id,
            fault_id: draft.fault_id,
            rejected: draft.rejected.map(str::to_owned),
            outcome,
        });
        self.completed.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.completed_changed.notify_waiters();
        }
    }

    /// Plans the response to an API request.
    pub fn handle(&self, req: &Request) -> (Action, Draft) {
        self.stats.request_received();
        let request_no = self.requests.fetch_add(1, Ordering::Relaxed);
        let mut draft = self.new_draft(&req.method, &req.path);
        let action = self.plan(req, request_no, &mut draft);
        if draft.rejected.is_some() && draft.correlation_id.is_none() {
            // Refused before the body was understood: the marker may still
            // be in the raw bytes (a gateway that forgot the key, say).
            draft.correlation_id = std::str::from_utf8(&req.body)
                .ok()
                .and_then(extract_correlation_id)
                .map(str::to_owned);
        }
        (action, draft)
    }

    fn ctx<'a>(
        &'a self,
        request_no: u64,
        model: &'a str,
        prompt_tokens: u64,
        req: &'a Request,
    ) -> Ctx<'a> {
        Ctx {
            seed: self.seed,
            deployment: &self.id,
            fingerprint: &self.fingerprint,
            request_no,
            model,
            prompt_tokens,
            api_version: req.query_param("api-version"),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    fn render_error(&self, err: &ApiError, ctx: &Ctx<'_>) -> Action {
        Action::Respond(match self.spec.dialect {
            Dialect::Openai => openai::error_reply(Flavor::OpenAi, err, ctx),
            Dialect::Azure => openai::error_reply(Flavor::Azure, err, ctx),
            Dialect::Anthropic => anthropic::error_reply(err, ctx),
        })
    }

    /// The mock itself refuses the request (recorded as `rejected`).
    fn reject(&self, err: &ApiError, ctx: &Ctx<'_>, draft: &mut Draft) -> Action {
        draft.rejected = Some(err.rejected_reason());
        self.render_error(err, ctx)
    }

    fn plan(&self, req: &Request, request_no: u64, draft: &mut Draft) -> Action {
        let dialect = self.spec.dialect;
        let early = self.ctx(request_no, "", 0, req);
        let not_found = ApiError::NotFound {
            method: req.method.clone(),
            path: req.path.clone(),
        };

        // Route.
        let (endpoint, azure_deployment) = match dialect {
            Dialect::Openai | Dialect::Azure => {
                let flavor = if dialect == Dialect::Azure {
                    Flavor::Azure
                } else {
                    Flavor::OpenAi
                };
                let (route, dep) = openai::route(flavor, req);
                let endpoint = match route {
                    openai::Route::Chat => Endpoint::Chat,
                    openai::Route::Embeddings => Endpoint::Embeddings,
                    openai::Route::Models => Endpoint::Models,
                    openai::Route::MissingApiVersion => {
                        return self.reject(&ApiError::ApiVersionMissing, &early, draft)
                    }
                    openai::Route::Unknown => return self.reject(&not_found, &early, draft),
                };
                (endpoint, dep)
            }
            Dialect::Anthropic => match anthropic::route(req) {
                anthropic::Route::Messages => (Endpoint::Chat, None),
                anthropic::Route::Models => (Endpoint::Models, None),
                anthropic::Route::Unknown => return self.reject(&not_found, &early, draft),
            },
        };
        draft.endpoint = endpoint;

        // Credentials.
        let auth = match dialect {
            Dialect::Openai => self
                .spec
                .api_key
                .as_deref()
                .map_or(Ok(()), |k| openai::check_auth(Flavor::OpenAi, req, k)),
            Dialect::Azure => self
                .spec
                .api_key
                .as_deref()
                .map_or(Ok(()), |k| openai::check_auth(Flavor::Azure, req, k)),
            Dialect::Anthropic => anthropic::check_headers(req, self.spec.api_key.as_deref()),
        };
        if let Err(e) = auth {
            return self.reject(&e, &early, draft);
        }

        // Body.
        let parsed = match (dialect, endpoint) {
            (_, Endpoint::Models) => Ok(Call {
                endpoint: Some(Endpoint::Models),
                ..Call::default()
            }),
            (Dialect::Anthropic, _) => anthropic::parse_messages(&req.body),
            (Dialect::Openai, Endpoint::Chat) => {
                openai::parse_chat(Flavor::OpenAi, &req.body, None)
            }
            (Dialect::Azure, Endpoint::Chat) => {
                openai::parse_chat(Flavor::Azure, &req.body, azure_deployment.as_deref())
            }
            (Dialect::Openai, _) => openai::parse_embeddings(Flavor::OpenAi, &req.body, None),
            (Dialect::Azure, _) => {
                openai::parse_embeddings(Flavor::Azure, &req.body, azure_deployment.as_deref())
            }
        };
        let call = match parsed {
            Ok(c) => c,
            Err(e) => return self.reject(&e, &early, draft),
        };
        draft.model = call.model.clone();
        draft.stream = call.stream;
        draft.prompt_tokens = call.prompt_tokens;
        draft.correlation_id = extract_correlation_id(&call.prompt).map(str::to_owned);
        let model = call.model.as_deref().unwrap_or("");
        let ctx = self.ctx(request_no, model, call.prompt_tokens, req);

        if endpoint == Endpoint::Models {
            return Action::Respond(match dialect {
                Dialect::Anthropic => anthropic::models_reply(&ctx, &self.spec.models),
                _ => openai::models_reply(&ctx, &self.spec.models),
            });
        }

        // Model (Azure: deployment) served here?
        if !self.spec.models.is_empty() && !self.spec.models.iter().any(|m| m == model) {
            return self.reject(
                &ApiError::ModelNotFound {
                    model: model.to_owned(),
                },
                &ctx,
                draft,
            );
        }

        // The real context-window error, without any fault.
        if let Some(window) = self.spec.context_window {
            if call.prompt_tokens > window {
                return self.reject(
                    &ApiError::ContextWindow {
                        window,
                        prompt_tokens: call.prompt_tokens,
                    },
                    &ctx,
                    draft,
                );
            }
        }

        // Faults.
        let rules = self.faults.read().clone();
        if !rules.is_empty() {
            let select = SelectCtx {
                endpoint,
                stream: call.stream,
                prompt_tokens: call.prompt_tokens,
                correlation_id: draft.correlation_id.as_deref(),
            };
            if let Some(decision) = rules.decide(self.seed, &self.id, &select) {
                let rule = &rules.rules[decision.index].rule;
                draft.fault_id = Some(rule.id.clone());
                self.stats.fault_injected(&rule.id);
                return self.apply(&rule.effect, &call, &ctx);
            }
        }
        Action::Respond(self.success(&call, &ctx, None, None))
    }

    fn apply(&self, effect: &FaultEffect, call: &Call, ctx: &Ctx<'_>) -> Action {
        match effect {
            FaultEffect::HttpError {
                status,
                retry_after,
                body: Some(body),
                content_type,
                ..
            } => {
                let mut headers = vec![(
                    "content-type",
                    content_type
                        .clone()
                        .unwrap_or_else(|| "text/html".to_owned()),
                )];
                crate::api::retry_after_headers(retry_after, &mut headers);
                Action::Respond(Reply {
                    status: *status,
                    headers,
                    body: ReplyBody::Full(body.clone().into_bytes()),
                    delay: Duration::ZERO,
                    close_after_bytes: None,
                    close: false,
                })
            }
            FaultEffect::HttpError {
                status,
                message,
                retry_after,
                ..
            } => self.render_error(
                &ApiError::Status {
                    status: *status,
                    message: message.clone(),
                    retry_after: retry_after.clone(),
                },
                ctx,
            ),
            FaultEffect::RateLimit {
                retry_after,
                message,
            } => self.render_error(
                &ApiError::RateLimited {
                    retry_after: retry_after.clone(),
                    message: message.clone(),
                },
                ctx,
            ),
            FaultEffect::Overloaded { retry_after } => self.render_error(
                &ApiError::Overloaded {
                    retry_after: retry_after.clone(),
                },
                ctx,
            ),
            FaultEffect::Latency { ttft, inter_token } => {
                Action::Respond(self.success(call, ctx, None, Some((*ttft, *inter_token))))
            }
            FaultEffect::Stall { duration } => Action::Stall(duration.map(|d| d.get())),
            FaultEffect::Reset {} => Action::Reset,
            FaultEffect::CloseAfterBytes { bytes } => {
                let mut reply = self.success(call, ctx, None, None);
                reply.close_after_bytes = Some(*bytes);
                Action::Respond(reply)
            }
            FaultEffect::StreamErrorBefore { status } => self.render_error(
                &ApiError::Status {
                    status: *status,
                    message: None,
                    retry_after: Vec::new(),
                },
                ctx,
            ),
            FaultEffect::StreamInbandError {
                after_chunks,
                message,
            } => {
                let event = match self.spec.dialect {
                    Dialect::Anthropic => anthropic::inband_error(message.as_deref()),
                    _ => openai::inband_error(message.as_deref()),
                };
                Action::Respond(self.stream_ending(
                    call,
                    ctx,
                    StreamEnd::Inband {
                        after: *after_chunks as usize,
                        event,
                    },
                ))
            }
            FaultEffect::StreamCut { after_chunks } => Action::Respond(self.stream_ending(
                call,
                ctx,
                StreamEnd::Cut {
                    after: *after_chunks as usize,
                },
            )),
            FaultEffect::StreamNoDone { after_chunks } => {
                let mut reply = self.stream_ending(
                    call,
                    ctx,
                    StreamEnd::NoTerminator {
                        after: *after_chunks as usize,
                    },
                );
                reply.close = true;
                Action::Respond(reply)
            }
            FaultEffect::ContextWindowExceeded {} => {
                let window = self
                    .spec
                    .context_window
                    .unwrap_or(DEFAULT_REPORTED_CONTEXT_WINDOW);
                self.render_error(
                    &ApiError::ContextWindow {
                        window,
                        prompt_tokens: call.prompt_tokens.max(window + 1),
                    },
                    ctx,
                )
            }
            FaultEffect::ContentPolicy {
                mode: ContentPolicyMode::Error,
            } => self.render_error(&ApiError::ContentPolicy, ctx),
            FaultEffect::ContentPolicy {
                mode: ContentPolicyMode::FinishReason,
            } => Action::Respond(self.success(call, ctx, Some(Finish::ContentFilter), None)),
            FaultEffect::AuthError {} => self.render_error(&ApiError::AuthInvalid, ctx),
        }
    }

    fn stream_ending(&self, call: &Call, ctx: &Ctx<'_>, end: StreamEnd) -> Reply {
        let mut reply = self.success(call, ctx, None, None);
        if let ReplyBody::Stream(plan) = &mut reply.body {
            plan.end = end;
        }
        reply
    }

    fn answer(&self, call: &Call, finish: Option<Finish>) -> Answer {
        let wanted = u64::from(self.spec.baseline.output_tokens);
        let (count, mut finish_reason) = match call.max_tokens {
            Some(cap) if cap < wanted => (cap, Finish::Length),
            _ => (wanted, Finish::Stop),
        };
        let mut pieces = answer_pieces(self.seed, &self.id, &call.prompt, count as u32);
        if finish == Some(Finish::ContentFilter) {
            pieces.truncate((pieces.len() / 2).max(1));
            finish_reason = Finish::ContentFilter;
        }
        Answer {
            pieces,
            finish: finish_reason,
        }
    }

    /// A successful answer with baseline (or overridden) timing.
    fn success(
        &self,
        call: &Call,
        ctx: &Ctx<'_>,
        finish: Option<Finish>,
        latency: Option<(Option<Delay>, Option<Delay>)>,
    ) -> Reply {
        if call.endpoint == Some(Endpoint::Embeddings) {
            let flavor = if self.spec.dialect == Dialect::Azure {
                Flavor::Azure
            } else {
                Flavor::OpenAi
            };
            let mut reply = openai::embeddings_reply(flavor, ctx, call);
            let (ttft, _) = self.delays(latency);
            reply.delay = ttft.sample(self.latency_key(ctx, 0));
            return reply;
        }
        let answer = self.answer(call, finish);
        let mut reply = match (self.spec.dialect, call.stream) {
            (Dialect::Anthropic, false) => anthropic::message_reply(ctx, &answer),
            (Dialect::Anthropic, true) => anthropic::message_stream(ctx, &answer),
            (Dialect::Openai, false) => openai::chat_reply(Flavor::OpenAi, ctx, &answer),
            (Dialect::Openai, true) => openai::chat_stream(Flavor::OpenAi, ctx, call, &answer),
            (Dialect::Azure, false) => openai::chat_reply(Flavor::Azure, ctx, &answer),
            (Dialect::Azure, true) => openai::chat_stream(Flavor::Azure, ctx, call, &answer),
        };
        let (ttft, inter) = self.delays(latency);
        if ttft.is_zero() && inter.is_zero() {
            return reply;
        }
        let n = answer.pieces.len();
        match &mut reply.body {
            ReplyBody::Full(_) => {
                let first = ttft.sample(self.latency_key(ctx, 0));
                let gap = inter.sample(self.latency_key(ctx, 1));
                reply.delay = first + gap.saturating_mul(n as u32);
            }
            ReplyBody::Stream(plan) => {
                plan.delays = (0..n)
                    .map(|i| {
                        let d = if i == 0 { &ttft } else { &inter };
                        d.sample(self.latency_key(ctx, i as u64))
                    })
                    .collect();
            }
        }
        reply
    }

    fn delays(&self, latency: Option<(Option<Delay>, Option<Delay>)>) -> (Delay, Delay) {
        let base_ttft = Delay::Fixed(self.spec.baseline.ttft);
        let base_inter = Delay::Fixed(self.spec.baseline.inter_token);
        match latency {
            None => (base_ttft, base_inter),
            Some((ttft, inter)) => (ttft.unwrap_or(base_ttft), inter.unwrap_or(base_inter)),
        }
    }

    fn latency_key(&self, ctx: &Ctx<'_>, i: u64) -> StableHasher {
        StableHasher::new(self.seed)
            .str("latency")
            .str(&self.id)
            .u64(ctx.request_no)
            .u64(i)
    }
}
