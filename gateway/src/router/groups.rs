//! Model groups and the live state of each deployment (in flight, usage this minute, latency,
//! cooldown). Resolves the name a client sent (alias, group, deployment id, wildcard) to a group.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::cooldown::CooldownState;
use crate::config::{Config, Deployment, DeploymentId, GroupAlias};
use crate::metrics::{DeploymentMetrics, Metrics};

/// Requests and tokens in the current one-minute window, for rpm/tpm limits and usage routing.
#[derive(Debug)]
struct MinuteUsage {
    window_start: Instant,
    requests: u64,
    tokens: u64,
}

const USAGE_WINDOW: Duration = Duration::from_secs(60);

/// A deployment plus everything the router learns about it while serving.
#[derive(Debug)]
pub struct DeploymentState {
    pub deployment: Deployment,
    /// Number of deployments in this deployment's group (cooldown is skipped for singletons).
    pub group_size: usize,
    in_flight: AtomicU32,
    /// Exponentially weighted latency in microseconds; 0 = no sample yet.
    latency_ewma_us: AtomicU64,
    usage: Mutex<MinuteUsage>,
    pub(crate) cooldown: Mutex<CooldownState>,
    pub metrics: DeploymentMetrics,
}

impl DeploymentState {
    pub fn new(deployment: Deployment, group_size: usize, metrics: DeploymentMetrics) -> Self {
        let now = Instant::now();
        DeploymentState {
            deployment,
            group_size,
            in_flight: AtomicU32::new(0),
            latency_ewma_us: AtomicU64::new(0),
            usage: Mutex::new(MinuteUsage {
                window_start: now,
                requests: 0,
                tokens: 0,
            }),
            cooldown: Mutex::new(CooldownState::new(now)),
            metrics,
        }
    }

    pub fn id(&self) -> &DeploymentId {
        &self.deployment.id
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Marks one request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.usage_mut(Instant::now(), |u| u.requests += 1);
        InFlight(Arc::clone(self))
    }

    pub fn latency_us(&self) -> u64 {
        self.latency_ewma_us.load(Ordering::Relaxed)
    }

    pub fn record_latency(&self, d: Duration) {
        let sample = d.as_micros().min(u64::MAX as u128) as u64;
        let old = self.latency_ewma_us.load(Ordering::Relaxed);
        // alpha = 1/4: reacts within a handful of requests, smooths single outliers.
        let new = if old == 0 {
            sample.max(1)
        } else {
            (old * 3 + sample) / 4
        };
        self.latency_ewma_us.store(new.max(1), Ordering::Relaxed);
    }

    pub fn record_tokens(&self, tokens: u64) {
        self.usage_mut(Instant::now(), |u| u.tokens += tokens);
    }

    /// (requests, tokens) in the current minute.
    pub fn usage_now(&self, now: Instant) -> (u64, u64) {
        self.usage_mut(now, |u| (u.requests, u.tokens))
    }

    /// Time until the usage window rolls over.
    pub fn usage_window_left(&self, now: Instant) -> Duration {
        let u = self.usage.lock();
        (u.window_start + USAGE_WINDOW).saturating_duration_since(now)
    }

    fn usage_mut<T>(&self, now: Instant, f: impl FnOnce(&mut MinuteUsage) -> T) -> T {
        let mut u = self.usage.lock();
        if now.duration_since(u.window_start) >= USAGE_WINDOW {
            u.window_start = now;
            u.requests = 0;
            u.tokens = 0;
        }
        f(&mut u)
    }

    /// Time left in this deployment's cooldown.
    pub fn cooldown_remaining(&self, now: Instant) -> Option<Duration> {
        self.cooldown.lock().remaining(now)
    }
}

/// Keeps a deployment's in-flight count raised while alive.
#[derive(Debug)]
pub struct InFlight(Arc<DeploymentState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A resolved target: the group's name and the deployments that may serve it.
#[derive(Debug, Clone)]
pub struct ResolvedGroup {
    pub name: String,
    pub deployments: Arc<[Arc<DeploymentState>]>,
    /// True when the client named one deployment by id.
    pub pinned: bool,
}

/// All model groups of a config.
#[derive(Debug, Default)]
pub struct ModelGroups {
    groups: BTreeMap<String, Arc<[Arc<DeploymentState>]>>,
    by_id: HashMap<DeploymentId, Arc<DeploymentState>>,
    /// Wildcard groups (`openai/*`, `*`): prefix before the `*`, longest first.
    wildcards: Vec<(String, String)>,
}

impl ModelGroups {
    pub fn from_config(config: &Config, metrics: &Metrics) -> Self {
        let mut members: BTreeMap<String, Vec<Deployment>> = BTreeMap::new();
        for d in &config.model_list {
            members
                .entry(d.model_name.clone())
                .or_default()
                .push(d.clone());
        }
        let mut groups = BTreeMap::new();
        let mut by_id = HashMap::new();
        let mut wildcards = Vec::new();
        for (name, deployments) in members {
            let size = deployments.len();
            let states: Vec<Arc<DeploymentState>> = deployments
                .into_iter()
                .map(|d| {
                    let m = metrics.deployment(&d.id, &d.model_name);
                    Arc::new(DeploymentState::new(d, size, m))
                })
                .collect();
            for s in &states {
                by_id.insert(s.id().clone(), Arc::clone(s));
            }
            if let Some(prefix) = name.strip_suffix('*') {
                wildcards.push((prefix.to_string(), name.clone()));
            }
            groups.insert(name, states.into());
        }
        wildcards.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        ModelGroups {
            groups,
            by_id,
            wildcards,
        }
    }

    /// Resolves a client-supplied model name: alias, then exact group, then deployment id,
    /// then the most specific wildcard group.
    pub fn resolve(
        &self,
        model: &str,
        aliases: &BTreeMap<String, GroupAlias>,
    ) -> Option<ResolvedGroup> {
        let model = aliases.get(model).map(|a| a.target()).unwrap_or(model);
        if let Some(ds) = self.groups.get(model) {
            return Some(ResolvedGroup {
                name: model.to_string(),
                deployments: Arc::clone(ds),
                pinned: false,
            });
        }
        if let Some(d) = self.by_id.get(&DeploymentId(model.to_string())) {
            return Some(ResolvedGroup {
                name: d.deployment.model_name.clone(),
                deployments: vec![Arc::clone(d)].into(),
                pinned: true,
            });
        }
        self.wildcards
            .iter()
            .find(|(prefix, _)| model.starts_with(prefix.as_str()))
            .and_then(|(_, name)| {
                self.groups.get(name).map(|ds| ResolvedGroup {
                    name: name.clone(),
                    deployments: Arc::clone(ds),
                    pinned: false,
                })
            })
    }

    /// Group names, sorted (wildcard groups included).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    pub fn deployments(&self) -> impl Iterator<Item = &Arc<DeploymentState>> {
        self.groups.values().flat_map(|ds| ds.iter())
    }

    pub fn deployment(&self, id: &DeploymentId) -> Option<&Arc<DeploymentState>> {
        self.by_id.get(id)
    }
}
