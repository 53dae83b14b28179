//! Model groups and the live state of each deployment (in flight, usage this minute, latency,
//! cooldown). Resolves the name a client sent (alias, group, deployment id, wildcard) to a group.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
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
    /// Atomic: a runtime model joining the group changes it without a new state.
    group_size: AtomicUsize,
    in_flight: AtomicU32,
    /// Exponentially weighted latency in microseconds; 0 = no sample yet.
    latency_ewma_us: AtomicU64,
    usage: Mutex<MinuteUsage>,
    pub(crate) cooldown: Mutex<CooldownState>,
    pub metrics: DeploymentMetrics,
    /// The deployment's id and group as response header values, made once (`None` for a
    /// value that is not a valid header, which the config never accepts).
    pub id_header: Option<http::HeaderValue>,
    pub group_header: Option<http::HeaderValue>,
}

impl DeploymentState {
    pub fn new(deployment: Deployment, group_size: usize, metrics: DeploymentMetrics) -> Self {
        let now = Instant::now();
        let id_header = http::HeaderValue::from_str(deployment.id.as_str()).ok();
        let group_header = http::HeaderValue::from_str(&deployment.model_name).ok();
        DeploymentState {
            id_header,
            group_header,
            deployment,
            group_size: AtomicUsize::new(group_size),
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

    pub fn group_size(&self) -> usize {
        self.group_size.load(Ordering::Relaxed)
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
    /// `model_info.access_groups` of every deployment in the table, inverted: access group →
    /// model groups (sorted). Built with the table, so it follows runtime models.
    access_groups: BTreeMap<String, Vec<String>>,
}

impl ModelGroups {
    pub fn from_config(config: &Config, metrics: &Metrics) -> Self {
        Self::build(config.model_list.iter().cloned(), metrics, None)
    }

    /// Groups over `deployments`. A deployment that `previous` already has, unchanged, keeps
    /// its state (cooldown, latency, usage, in-flight count), so a reload after a runtime model
    /// change does not forget what the router learnt about the others.
    pub fn build(
        deployments: impl IntoIterator<Item = Deployment>,
        metrics: &Metrics,
        previous: Option<&ModelGroups>,
    ) -> Self {
        let mut members: BTreeMap<String, Vec<Deployment>> = BTreeMap::new();
        for d in deployments {
            members.entry(d.model_name.clone()).or_default().push(d);
        }
        let mut groups = BTreeMap::new();
        let mut by_id = HashMap::new();
        let mut wildcards = Vec::new();
        let mut access_groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, deployments) in members {
            let size = deployments.len();
            for ag in deployments.iter().flat_map(|d| &d.info.access_groups) {
                let v = access_groups.entry(ag.clone()).or_default();
                // Groups come in name order, so a duplicate can only be the last one.
                if v.last() != Some(&name) {
                    v.push(name.clone());
                }
            }
            let states: Vec<Arc<DeploymentState>> = deployments
                .into_iter()
                .map(|d| {
                    let kept = previous
                        .and_then(|p| p.by_id.get(&d.id))
                        .filter(|old| same_deployment(&old.deployment, &d));
                    match kept {
                        Some(old) => {
                            old.group_size.store(size, Ordering::Relaxed);
                            Arc::clone(old)
                        }
                        None => {
                            let m = metrics.deployment(&d.id, &d.model_name);
                            Arc::new(DeploymentState::new(d, size, m))
                        }
                    }
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
            access_groups,
        }
    }

    /// The model groups an access group opens, from the deployments in this table.
    pub fn access_group(&self, name: &str) -> Option<&[String]> {
        self.access_groups.get(name).map(Vec::as_slice)
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

/// Equal in every field, the secret included (`Debug` redacts it, so it is compared apart).
fn same_deployment(a: &Deployment, b: &Deployment) -> bool {
    use secrecy::ExposeSecret;
    let key = |d: &Deployment| d.api_key.as_ref().map(|k| k.expose_secret().to_owned());
    format!("{a:?}") == format!("{b:?}") && key(a) == key(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelInfo, ProviderKind};

    fn deployment(id: &str, group: &str, base: &str) -> Deployment {
        Deployment {
            id: DeploymentId(id.into()),
            model_name: group.into(),
            provider: ProviderKind::OpenAi,
            upstream_model: "m".into(),
            api_base: Some(base.into()),
            api_key: Some("sk-a".to_string().into()),
            api_version: None,
            timeout: None,
            stream_timeout: None,
            rpm: None,
            tpm: None,
            weight: None,
            order: None,
            max_parallel_requests: None,
            region_name: None,
            cooldown_time: None,
            info: ModelInfo::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rebuild_keeps_the_state_of_unchanged_deployments_only() {
        let metrics = Metrics::new();
        let first = ModelGroups::build(
            [
                deployment("a1", "a", "http://a"),
                deployment("b1", "b", "http://b"),
            ],
            &metrics,
            None,
        );
        let a1 = Arc::clone(first.deployment(&DeploymentId("a1".into())).unwrap());
        a1.record_latency(Duration::from_millis(30));
        a1.cooldown
            .lock()
            .record_failure(Instant::now(), 0, Duration::from_secs(60), None);
        assert!(a1.cooldown_remaining(Instant::now()).is_some());

        // a2 joins group a, b1 changes its base, a1 is untouched.
        let second = ModelGroups::build(
            [
                deployment("a1", "a", "http://a"),
                deployment("a2", "a", "http://a2"),
                deployment("b1", "b", "http://b-new"),
            ],
            &metrics,
            Some(&first),
        );
        let kept = second.deployment(&DeploymentId("a1".into())).unwrap();
        assert!(Arc::ptr_eq(&a1, kept));
        assert_eq!(kept.group_size(), 2);
        assert_eq!(kept.latency_us(), 30_000);
        assert!(kept.cooldown_remaining(Instant::now()).is_some());
        let b_old = first.deployment(&DeploymentId("b1".into())).unwrap();
        let b_new = second.deployment(&DeploymentId("b1".into())).unwrap();
        assert!(!Arc::ptr_eq(b_old, b_new));
        assert_eq!(b_new.deployment.api_base.as_deref(), Some("http://b-new"));

        // A changed secret is a changed deployment too.
        let mut rotated = deployment("a1", "a", "http://a");
        rotated.api_key = Some("sk-b".to_string().into());
        let third = ModelGroups::build([rotated], &metrics, Some(&second));
        assert!(!Arc::ptr_eq(
            kept,
            third.deployment(&DeploymentId("a1".into())).unwrap()
        ));
    }

    #[test]
    fn access_groups_follow_the_deployments_of_the_table() {
        let metrics = Metrics::new();
        let mut a1 = deployment("a1", "a", "http://a");
        a1.info.access_groups = vec!["g".into(), "h".into()];
        let mut a2 = deployment("a2", "a", "http://a2");
        a2.info.access_groups = vec!["g".into()];
        let mut b1 = deployment("b1", "b", "http://b");
        b1.info.access_groups = vec!["g".into()];
        let first = ModelGroups::build([a1.clone(), a2, b1], &metrics, None);
        assert_eq!(
            first.access_group("g"),
            Some(&["a".to_string(), "b".to_string()][..])
        );
        assert_eq!(first.access_group("h"), Some(&["a".to_string()][..]));
        // b1 leaves the table: g no longer opens b.
        let second = ModelGroups::build([a1], &metrics, Some(&first));
        assert_eq!(second.access_group("g"), Some(&["a".to_string()][..]));
        assert_eq!(second.access_group("x"), None);
    }
}
