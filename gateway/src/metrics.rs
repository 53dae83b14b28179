//! Prometheus metrics. Per-deployment handles are resolved once at start-up and kept on the
//! deployment's state, so the hot path never looks labels up.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use crate::config::DeploymentId;
use crate::providers::FailureClass;

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

/// Handles for one deployment.
#[derive(Debug, Clone)]
pub struct DeploymentMetrics {
    pub success: IntCounter,
    failures: Vec<IntCounter>,
    pub latency: Histogram,
    pub cooldowns: IntCounter,
}

impl DeploymentMetrics {
    pub fn failure(&self, class: FailureClass) -> &IntCounter {
        let i = FailureClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(0);
        &self.failures[i]
    }
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    /// `(route, 200)` handles, resolved on first use: nearly every request is one of these,
    /// and a label lookup hashes and allocates.
    requests_ok: [(&'static str, OnceLock<IntCounter>); 4],
    deployment_requests: IntCounterVec,
    latency: HistogramVec,
    cooldowns: IntCounterVec,
    /// Cooldowns taken from another instance through Redis (rare: labels looked up per use).
    pub shared_cooldowns: IntCounterVec,
    pub retries: IntCounterVec,
    pub fallbacks: IntCounterVec,
    pub access_denied: IntCounter,
    /// Gateway time outside upstream calls, per request (non-streaming).
    pub overhead: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "switchyard_requests_total",
                "Client requests by route and HTTP status",
            ),
            &["route", "status"],
        )
        .expect("static metric definition");
        let deployment_requests = IntCounterVec::new(
            Opts::new(
                "switchyard_deployment_requests_total",
                "Upstream calls per deployment by outcome",
            ),
            &["deployment", "model_group", "outcome"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "switchyard_deployment_latency_seconds",
                "Upstream call latency per deployment (to first chunk for streams)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["deployment", "model_group"],
        )
        .expect("static metric definition");
        let cooldowns = IntCounterVec::new(
            Opts::new(
                "switchyard_cooldowns_total",
                "Times a deployment entered cooldown",
            ),
            &["deployment", "model_group"],
        )
        .expect("static metric definition");
        let shared_cooldowns = IntCounterVec::new(
            Opts::new(
                "switchyard_shared_cooldowns_total",
                "Times a deployment cooled down because another instance reported it through Redis",
            ),
            &["deployment", "model_group"],
        )
        .expect("static metric definition");
        let retries = IntCounterVec::new(
            Opts::new("switchyard_retries_total", "Retries within a model group"),
            &["model_group"],
        )
        .expect("static metric definition");
        let fallbacks = IntCounterVec::new(
            Opts::new("switchyard_fallbacks_total", "Fallback hops taken"),
            &["from", "to", "kind"],
        )
        .expect("static metric definition");
        let access_denied = IntCounter::new(
            "switchyard_fallback_access_denied_total",
            "Groups skipped because the key may not use them",
        )
        .expect("static metric definition");
        let overhead = Histogram::with_opts(
            HistogramOpts::new(
                "switchyard_overhead_seconds",
                "Gateway time per request outside upstream calls",
            )
            .buckets(OVERHEAD_BUCKETS.to_vec()),
        )
        .expect("static metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(deployment_requests.clone()),
            Box::new(latency.clone()),
            Box::new(cooldowns.clone()),
            Box::new(shared_cooldowns.clone()),
            Box::new(retries.clone()),
            Box::new(fallbacks.clone()),
            Box::new(access_denied.clone()),
            Box::new(overhead.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            requests_ok: ["chat_completions", "embeddings", "models", "auth"]
                .map(|route| (route, OnceLock::new())),
            deployment_requests,
            latency,
            cooldowns,
            shared_cooldowns,
            retries,
            fallbacks,
            access_denied,
            overhead,
        }
    }

    pub fn deployment(&self, id: &DeploymentId, group: &str) -> DeploymentMetrics {
        let id = id.as_str();
        DeploymentMetrics {
            success: self
                .deployment_requests
                .with_label_values(&[id, group, "success"]),
            failures: FailureClass::ALL
                .iter()
                .map(|c| {
                    self.deployment_requests
                        .with_label_values(&[id, group, c.as_str()])
                })
                .collect(),
            latency: self.latency.with_label_values(&[id, group]),
            cooldowns: self.cooldowns.with_label_values(&[id, group]),
        }
    }

    pub fn request(&self, route: &str, status: u16) {
        if status == 200 {
            if let Some((route, handle)) = self.requests_ok.iter().find(|(r, _)| *r == route) {
                handle
                    .get_or_init(|| self.requests.with_label_values(&[route, "200"]))
                    .inc();
                return;
            }
        }
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
