//! The router: resolves the requested model to a group, plans deployments, calls them with
//! retries, records cooldowns and walks the fallback chain chosen by the failure's kind.
//! Translation and failure classification are the providers' job; HTTP shapes are the api's.

pub mod cooldown;
pub mod groups;
pub mod plan;
pub mod shared;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rand::Rng;
use tokio::time::Instant;

use crate::config::{defaults, Config, Deployment, DeploymentId, FallbackRule, PerClassCounts};
use crate::keys::effective::EffectiveRouterSettings;
use crate::metrics::Metrics;
use crate::providers::{FailureClass, FallbackKind, ProviderError};
use cooldown::CooldownChange;
use groups::{DeploymentState, InFlight, ModelGroups, ResolvedGroup};
use plan::{Plan, Snapshot, Unavailable};

/// One call to one deployment, as it happened.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub deployment: String,
    pub group: String,
    /// `None` when this attempt served the request.
    pub class: Option<FailureClass>,
    pub status: Option<u16>,
}

/// What the caller asked for and under which settings.
pub struct RouteRequest<'a> {
    pub model: &'a str,
    pub settings: &'a EffectiveRouterSettings,
    /// Request-body `fallbacks`: replaces the configured general chain.
    pub body_fallbacks: Option<Vec<String>>,
    pub disable_fallbacks: bool,
    /// May the caller use this group? Checked for the primary and again on every fallback hop.
    pub may_use: &'a (dyn Fn(&str) -> bool + Send + Sync),
}

/// A served request: the value plus the path taken.
pub struct Routed<T> {
    pub value: T,
    pub deployment: Arc<DeploymentState>,
    /// The group that served (differs from `requested_group` after a fallback).
    pub group: String,
    pub requested_group: String,
    pub attempts: Vec<Attempt>,
    pub fallback_depth: u32,
    /// Keeps the deployment's in-flight count up; hold it for as long as a stream runs.
    pub in_flight: InFlight,
}

/// Why the router could not serve.
#[derive(Debug)]
pub enum RouteError {
    /// No group, alias, deployment id or wildcard matches.
    ModelNotFound { model: String },
    /// The caller may not use the group (and no fallback it may use served).
    ModelNotAllowed { model: String },
    /// Every deployment of every group tried was cooling down or at its limits.
    NoDeploymentAvailable {
        group: String,
        retry_after: Duration,
        reason: Unavailable,
        attempts: Vec<Attempt>,
    },
    /// Deployments were called and the last failure ended the chain.
    Failed {
        last: ProviderError,
        attempts: Vec<Attempt>,
        requested_group: String,
    },
}

impl RouteError {
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            RouteError::NoDeploymentAvailable { attempts, .. }
            | RouteError::Failed { attempts, .. } => attempts,
            _ => &[],
        }
    }
}

enum GroupOutcome<T> {
    Served(T, Arc<DeploymentState>, InFlight),
    Failed(ProviderError),
    Unavailable {
        reason: Unavailable,
        retry_after: Duration,
    },
}

/// Routes requests over the model groups of the config file plus the models added at runtime.
/// The routing table is immutable and swapped whole on a reload: a request keeps the table it
/// started with, the next one sees the new models.
pub struct ModelRouter {
    groups: RwLock<Arc<ModelGroups>>,
    /// The config file's deployments: always present, never changed at runtime.
    file: Vec<Deployment>,
    /// Ids of the deployments added at runtime, in the current table.
    runtime: RwLock<Arc<BTreeSet<DeploymentId>>>,
    /// Serialises reloads, so two admin changes cannot install their tables out of order.
    reload: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
    /// Randomise backoff (off in tests, so paused-time tests are exact).
    jitter: bool,
    /// Cooldowns shared with other instances through Redis, when configured.
    shared: std::sync::OnceLock<shared::SharedCooldowns>,
}

impl ModelRouter {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        ModelRouter {
            groups: RwLock::new(Arc::new(ModelGroups::from_config(config, &metrics))),
            file: config.model_list.clone(),
            runtime: RwLock::new(Arc::default()),
            reload: tokio::sync::Mutex::new(()),
            metrics,
            jitter: true,
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Shares this router's cooldowns through Redis from now on (once; later calls are
    /// ignored).
    pub fn share_cooldowns(&self, shared: shared::SharedCooldowns) {
        let _ = self.shared.set(shared);
    }

    /// The Redis sharing, when configured: `/health/readiness` reports whether it is up.
    pub fn shared_cooldowns(&self) -> Option<&shared::SharedCooldowns> {
        self.shared.get()
    }

    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The current routing table (a snapshot: later reloads do not change it).
    pub fn groups(&self) -> Arc<ModelGroups> {
        Arc::clone(&*self.groups.read())
    }

    /// The config file's deployments.
    pub fn file_deployments(&self) -> &[Deployment] {
        &self.file
    }

    /// Ids of the runtime deployments in the current table.
    pub fn runtime_ids(&self) -> Arc<BTreeSet<DeploymentId>> {
        Arc::clone(&*self.runtime.read())
    }

    /// Held by whoever reads the runtime models and calls [`ModelRouter::set_runtime`], so
    /// concurrent reloads install their tables in order.
    pub async fn reload_guard(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.reload.lock().await
    }

    /// Installs a table of the config file's deployments plus `runtime`. Deployments present
    /// before and unchanged keep their cooldown, latency and usage state. The caller has
    /// checked `runtime` (provider, no id shared with the file's deployments).
    pub fn set_runtime(&self, runtime: Vec<Deployment>) {
        let ids: BTreeSet<DeploymentId> = runtime.iter().map(|d| d.id.clone()).collect();
        let previous = self.groups();
        let table = ModelGroups::build(
            self.file.iter().cloned().chain(runtime),
            &self.metrics,
            Some(&previous),
        );
        *self.groups.write() = Arc::new(table);
        *self.runtime.write() = Arc::new(ids);
    }

    /// Serves `req` by calling `call` on deployments until one succeeds or the chain ends.
    pub async fn route<T, F, Fut>(
        &self,
        req: &RouteRequest<'_>,
        call: F,
    ) -> Result<Routed<T>, RouteError>
    where
        F: Fn(Arc<DeploymentState>) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let s = req.settings;
        let aliases = &s.model_group_alias.value;
        // One table for the whole request, fallbacks included, even if a reload lands meanwhile.
        let table = self.groups();
        let primary =
            table
                .resolve(req.model, aliases)
                .ok_or_else(|| RouteError::ModelNotFound {
                    model: req.model.to_string(),
                })?;
        let mut attempts = Vec::new();
        let mut last_error: Option<ProviderError> = None;
        let mut unavailable: Option<(Unavailable, Duration)> = None;

        if (req.may_use)(&primary.name) {
            match self.try_group(&primary, s, &call, &mut attempts).await {
                GroupOutcome::Served(value, deployment, in_flight) => {
                    return Ok(self.served(
                        value,
                        deployment,
                        in_flight,
                        &primary.name,
                        &primary.name,
                        attempts,
                        0,
                    ));
                }
                GroupOutcome::Failed(e) => last_error = Some(e),
                GroupOutcome::Unavailable {
                    reason,
                    retry_after,
                } => unavailable = Some((reason, retry_after)),
            }
        } else {
            self.metrics.access_denied.inc();
        }

        let kind = last_error
            .as_ref()
            .map(|e| e.class.fallback_kind())
            .unwrap_or(FallbackKind::General);
        let chain = if req.disable_fallbacks {
            Vec::new()
        } else {
            fallback_chain(s, &primary.name, kind, req.body_fallbacks.as_deref())
        };
        let mut depth = 0u32;
        let mut any_allowed = (req.may_use)(&primary.name);
        for target in chain.iter().take(s.max_fallbacks.value as usize) {
            let Some(group) = table.resolve(target, aliases) else {
                // Config and key validation refuse unknown targets; a group removed at runtime
                // is skipped rather than failing the whole request.
                tracing::warn!(target = %target, "fallback target does not resolve; skipped");
                continue;
            };
            depth += 1;
            if !(req.may_use)(&group.name) {
                self.metrics.access_denied.inc();
                tracing::debug!(group = %group.name, "fallback target not allowed for this key; skipped");
                continue;
            }
            any_allowed = true;
            self.metrics
                .fallbacks
                .with_label_values(&[&primary.name, &group.name, kind_label(kind)])
                .inc();
            match self.try_group(&group, s, &call, &mut attempts).await {
                GroupOutcome::Served(value, deployment, in_flight) => {
                    return Ok(self.served(
                        value,
                        deployment,
                        in_flight,
                        &group.name,
                        &primary.name,
                        attempts,
                        depth,
                    ));
                }
                GroupOutcome::Failed(e) => last_error = Some(e),
                GroupOutcome::Unavailable {
                    reason,
                    retry_after,
                } => {
                    unavailable = Some(match unavailable {
                        Some((r0, t0)) if t0 <= retry_after => (r0, t0),
                        _ => (reason, retry_after),
                    })
                }
            }
        }
        if !any_allowed {
            return Err(RouteError::ModelNotAllowed {
                model: req.model.to_string(),
            });
        }
        match (last_error, unavailable) {
            (Some(last), _) => Err(RouteError::Failed {
                last,
                attempts,
                requested_group: primary.name,
            }),
            (None, Some((reason, retry_after))) => Err(RouteError::NoDeploymentAvailable {
                group: primary.name,
                retry_after,
                reason,
                attempts,
            }),
            (None, None) => Err(RouteError::ModelNotAllowed {
                model: req.model.to_string(),
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn served<T>(
        &self,
        value: T,
        deployment: Arc<DeploymentState>,
        in_flight: InFlight,
        group: &str,
        requested: &str,
        attempts: Vec<Attempt>,
        depth: u32,
    ) -> Routed<T> {
        Routed {
            value,
            deployment,
            group: group.to_string(),
            requested_group: requested.to_string(),
            attempts,
            fallback_depth: depth,
            in_flight,
        }
    }

    /// Tries one group with its own retry budget.
    async fn try_group<T, F, Fut>(
        &self,
        group: &ResolvedGroup,
        s: &EffectiveRouterSettings,
        call: &F,
        attempts: &mut Vec<Attempt>,
    ) -> GroupOutcome<T>
    where
        F: Fn(Arc<DeploymentState>) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut tried: Vec<usize> = Vec::new();
        let mut retries_used = 0u32;
        // (deployment index, its Retry-After) of the last failure, honoured if it is next again.
        let mut pending: Option<(usize, Option<Duration>)> = None;
        let mut last_error: Option<ProviderError> = None;
        loop {
            let now = Instant::now();
            let snaps = snapshots(&group.deployments, now, &tried, s);
            let choice = match plan::plan(&snaps, s.routing_strategy.value, &mut rand::thread_rng())
            {
                Plan::Ordered(order) => order[0],
                Plan::Unavailable {
                    reason,
                    retry_after,
                } => {
                    return match last_error {
                        Some(e) => GroupOutcome::Failed(e),
                        None => GroupOutcome::Unavailable {
                            reason,
                            retry_after,
                        },
                    };
                }
            };
            if let Some((prev, retry_after)) = pending.take() {
                let mut wait = self.backoff(retries_used);
                if prev == choice {
                    wait = wait.max(retry_after.unwrap_or_default());
                }
                tokio::time::sleep(wait.min(s.retry_after_cap.value.0)).await;
            }
            let d = Arc::clone(&group.deployments[choice]);
            let in_flight = d.begin();
            let started = Instant::now();
            let result = call(Arc::clone(&d)).await;
            let elapsed = started.elapsed();
            match result {
                Ok(value) => {
                    d.record_latency(elapsed);
                    d.metrics.success.inc();
                    d.metrics.latency.observe(elapsed.as_secs_f64());
                    attempts.push(Attempt {
                        deployment: d.id().to_string(),
                        group: group.name.clone(),
                        class: None,
                        status: None,
                    });
                    return GroupOutcome::Served(value, d, in_flight);
                }
                Err(e) => {
                    drop(in_flight);
                    d.metrics.failure(e.class).inc();
                    d.metrics.latency.observe(elapsed.as_secs_f64());
                    tracing::debug!(deployment = %d.id(), class = %e.class, status = ?e.status, "deployment call failed");
                    attempts.push(Attempt {
                        deployment: d.id().to_string(),
                        group: group.name.clone(),
                        class: Some(e.class),
                        status: e.status,
                    });
                    self.record_cooldown(&d, &e, s);
                    if !tried.contains(&choice) {
                        tried.push(choice);
                    }
                    let allowed = retries_for(e.class, s);
                    if retries_used >= allowed {
                        return GroupOutcome::Failed(e);
                    }
                    retries_used += 1;
                    self.metrics.retries.with_label_values(&[&group.name]).inc();
                    pending = Some((choice, e.retry_after));
                    last_error = Some(e);
                }
            }
        }
    }

    fn record_cooldown(&self, d: &DeploymentState, e: &ProviderError, s: &EffectiveRouterSettings) {
        if !e.class.cools_down() || s.disable_cooldowns.value {
            return;
        }
        if d.group_size() < 2 && !s.cooldown_single_deployment.value {
            return;
        }
        let allowed =
            policy_count(&s.allowed_fails_policy.value, e.class).unwrap_or(s.allowed_fails.value);
        // A per-deployment cooldown_time wins over the router setting unless the key or team
        // set one explicitly.
        let cooldown = match (d.deployment.cooldown_time, s.cooldown_time.source) {
            (
                Some(t),
                crate::keys::effective::Source::Global | crate::keys::effective::Source::Default,
            ) => t,
            _ => s.cooldown_time.value.0,
        };
        let change =
            d.cooldown
                .lock()
                .record_failure(Instant::now(), allowed, cooldown, e.retry_after);
        let until = match change {
            CooldownChange::Entered(until) => {
                d.metrics.cooldowns.inc();
                tracing::warn!(deployment = %d.id(), class = %e.class, cooldown_s = cooldown.as_secs_f64(), "deployment cooling down");
                until
            }
            CooldownChange::Extended(until) => until,
            CooldownChange::Counted => return,
        };
        if let Some(shared) = self.shared.get() {
            shared.announce(
                &d.deployment,
                until.saturating_duration_since(Instant::now()),
            );
        }
    }

    /// Exponential backoff: 100 ms, 200 ms, 400 ms, ...; with jitter, uniformly in [b/2, b].
    fn backoff(&self, retry: u32) -> Duration {
        let base = defaults::BACKOFF_BASE.saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        if self.jitter {
            let half = base / 2;
            half + half.mul_f64(rand::thread_rng().gen::<f64>())
        } else {
            base
        }
    }
}

fn snapshots(
    deployments: &[Arc<DeploymentState>],
    now: Instant,
    tried: &[usize],
    s: &EffectiveRouterSettings,
) -> Vec<Snapshot> {
    // simple-shuffle weighs by `weight`, else `rpm`, else `tpm`, decided for the whole group.
    let weight_of: fn(&DeploymentState) -> Option<f64> =
        if deployments.iter().any(|d| d.deployment.weight.is_some()) {
            |d| d.deployment.weight
        } else if deployments.iter().any(|d| d.deployment.rpm.is_some()) {
            |d| d.deployment.rpm.map(|v| v as f64)
        } else {
            |d| d.deployment.tpm.map(|v| v as f64)
        };
    deployments
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let (requests, tokens) = d.usage_now(now);
            let dep = &d.deployment;
            let over_rate = dep.rpm.is_some_and(|rpm| requests >= rpm)
                || dep.tpm.is_some_and(|tpm| tokens >= tpm);
            let over_parallel = dep
                .max_parallel_requests
                .is_some_and(|m| d.in_flight() >= m);
            let at_limit = if over_rate {
                Some(d.usage_window_left(now).max(Duration::from_millis(1)))
            } else if over_parallel {
                Some(Duration::from_secs(1))
            } else {
                None
            };
            Snapshot {
                order: dep.order,
                weight: weight_of(d).unwrap_or(1.0),
                in_flight: d.in_flight(),
                latency_us: d.latency_us(),
                tokens,
                cooling: if s.disable_cooldowns.value {
                    None
                } else {
                    d.cooldown_remaining(now)
                },
                at_limit,
                tried: tried.contains(&i),
            }
        })
        .collect()
}

fn policy_count(p: &PerClassCounts, class: FailureClass) -> Option<u32> {
    match class {
        FailureClass::RateLimited => p.rate_limit,
        FailureClass::Timeout => p.timeout,
        FailureClass::Auth => p.authentication,
        FailureClass::BadRequest | FailureClass::NotFound | FailureClass::ContextWindowExceeded => {
            p.bad_request
        }
        FailureClass::ContentPolicy => p.content_policy,
        FailureClass::ServerError | FailureClass::Connection | FailureClass::StreamBroken => {
            p.internal_server
        }
    }
}

/// Retries allowed for a failure class: an explicit `retry_policy` entry wins; otherwise
/// `num_retries` for retryable classes and 0 for deterministic ones.
fn retries_for(class: FailureClass, s: &EffectiveRouterSettings) -> u32 {
    match policy_count(&s.retry_policy.value, class) {
        Some(n) => n,
        None if class.retryable() => s.num_retries.value,
        None => 0,
    }
}

fn rule_for<'a>(rules: &'a [FallbackRule], group: &str) -> Option<&'a [String]> {
    rules
        .iter()
        .find(|r| r.group == group)
        .or_else(|| rules.iter().find(|r| r.group == "*"))
        .map(|r| r.targets.as_slice())
}

/// The ordered fallback targets for a failed group.
pub fn fallback_chain(
    s: &EffectiveRouterSettings,
    group: &str,
    kind: FallbackKind,
    body_fallbacks: Option<&[String]>,
) -> Vec<String> {
    let chain: Option<&[String]> = match kind {
        FallbackKind::None => None,
        FallbackKind::General => body_fallbacks
            .or_else(|| rule_for(&s.fallbacks.value, group))
            .or(Some(s.default_fallbacks.value.as_slice())),
        FallbackKind::ContextWindow => rule_for(&s.context_window_fallbacks.value, group),
        FallbackKind::ContentPolicy => rule_for(&s.content_policy_fallbacks.value, group),
    };
    chain
        .unwrap_or_default()
        .iter()
        .filter(|t| t.as_str() != group)
        .cloned()
        .collect()
}

fn kind_label(kind: FallbackKind) -> &'static str {
    match kind {
        FallbackKind::General => "general",
        FallbackKind::ContextWindow => "context_window",
        FallbackKind::ContentPolicy => "content_policy",
        FallbackKind::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouterSettings;

    fn rule(g: &str, t: &[&str]) -> FallbackRule {
        FallbackRule {
            group: g.into(),
            targets: t.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn chain_is_chosen_by_failure_kind() {
        let rs = RouterSettings {
            fallbacks: Some(vec![rule("a", &["b", "c"])]),
            context_window_fallbacks: Some(vec![rule("a", &["big"])]),
            content_policy_fallbacks: Some(vec![rule("*", &["lenient"])]),
            default_fallbacks: Some(vec!["d".into()]),
            ..Default::default()
        };
        let s = EffectiveRouterSettings::global(&rs);
        assert_eq!(
            fallback_chain(&s, "a", FallbackKind::General, None),
            ["b", "c"]
        );
        assert_eq!(fallback_chain(&s, "x", FallbackKind::General, None), ["d"]);
        assert_eq!(
            fallback_chain(&s, "a", FallbackKind::ContextWindow, None),
            ["big"]
        );
        assert!(fallback_chain(&s, "x", FallbackKind::ContextWindow, None).is_empty());
        assert_eq!(
            fallback_chain(&s, "a", FallbackKind::ContentPolicy, None),
            ["lenient"]
        );
        assert!(fallback_chain(&s, "a", FallbackKind::None, None).is_empty());
        let body = vec!["z".to_string()];
        assert_eq!(
            fallback_chain(&s, "a", FallbackKind::General, Some(&body)),
            ["z"]
        );
    }

    #[test]
    fn deterministic_failures_are_not_retried_unless_a_policy_says_so() {
        let s = EffectiveRouterSettings::global(&RouterSettings {
            num_retries: Some(3),
            ..Default::default()
        });
        assert_eq!(retries_for(FailureClass::RateLimited, &s), 3);
        assert_eq!(retries_for(FailureClass::Auth, &s), 0);
        assert_eq!(retries_for(FailureClass::ContextWindowExceeded, &s), 0);
        let s = EffectiveRouterSettings::global(&RouterSettings {
            retry_policy: Some(PerClassCounts {
                rate_limit: Some(1),
                authentication: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(retries_for(FailureClass::RateLimited, &s), 1);
        assert_eq!(retries_for(FailureClass::Auth, &s), 2);
    }
}
