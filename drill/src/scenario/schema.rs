//! The scenario file's authoring types (DESIGN §4.1): strict (`deny_unknown_fields`), every
//! optional field with a documented default. Loading and checking live in `load` and `validate`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use mock_providers::{Baseline, Dialect, FaultEffect, HumanDuration, Selection};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// The only `apiVersion` this drill reads.
pub const API_VERSION: &str = "drill/v1";

/// Default `min_samples` of every check.
pub const DEFAULT_MIN_SAMPLES: u64 = 20;

/// A drill scenario (`kind: Drill`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Must be `drill/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `Drill` (a scenario) or `Suite` (see [`Suite`]).
    pub kind: String,
    pub metadata: Metadata,
    /// Drives every random choice of the drill and the mocks (default 0; `--seed` overrides).
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub gateway: GatewaySpec,
    /// Mock providers, each standing in for one gateway deployment.
    pub providers: Vec<Provider>,
    pub traffic: Traffic,
    pub phases: Vec<Phase>,
    #[serde(default)]
    pub stop_conditions: StopConditions,
    #[serde(default)]
    pub memo: MemoSpec,
}

/// A suite (`kind: Suite`): scenario files run one after the other.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    /// Scenario files, relative to the suite file.
    pub scenarios: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Short id: names the run directory and the JUnit suite.
    pub name: String,
    /// Human title (default: the name).
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Which gateway is drilled and where its documented settings come from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    /// LiteLLM-compatible config, relative to the scenario file. Embedded mode runs it; in every
    /// mode it documents the fallback chains (unless `documented_config` is set). `--config`
    /// overrides it.
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// A config that documents the chains when it differs from the one the gateway runs
    /// (default: `config`). Lets a drill prove that drift between the two is caught.
    #[serde(default)]
    pub documented_config: Option<PathBuf>,
    /// A Switchyard export (`kind: switchyard/state`, `schema_version: 1`), relative to the
    /// scenario file; `--export` overrides it. Its teams and keys (with their router settings)
    /// document the key-level chains, Key > Team > Global over `config`'s global settings.
    /// `config` is still needed: an export lists config-file deployments by name only. With an
    /// export, `traffic.keys` name exported keys by `key_alias` and set no `team` or
    /// `router_settings`, and `traffic.teams` is empty. Embedded mode imports the export (as
    /// `POST /config/import` does; credentials and runtime models excepted) and regenerates
    /// each scenario key through `/key/regenerate` to obtain a secret; the key's settings stay
    /// the export's. Default none.
    #[serde(default)]
    pub export: Option<PathBuf>,
    /// An export that documents the chains when it differs from the one the gateway runs
    /// (default: `export`). Like `documented_config`, proves drift is caught.
    #[serde(default)]
    pub documented_export: Option<PathBuf>,
    /// Values for `os.environ/NAME` references in the config (default none). In embedded mode
    /// other references resolve to a placeholder: deployments backed by a provider get the
    /// mock's address and key anyway.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// External mode only: environment variable holding the key used for profiles without a
    /// `key` (default `DRILL_CLIENT_KEY`).
    #[serde(default)]
    pub client_key_env: Option<String>,
}

/// One mock provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Mock id: names the provider in faults and the journal.
    pub id: String,
    /// `openai`, `azure` or `anthropic`; must match the deployment's provider.
    pub dialect: Dialect,
    /// The gateway deployment (`model_info.id`) it stands in for (default: `id`).
    #[serde(default)]
    pub deployment: Option<String>,
    /// Healthy timing (default: no delay, 16 output tokens).
    #[serde(default)]
    pub baseline: Baseline,
    /// Tokens; longer prompts get the provider's context-window error (default unlimited).
    #[serde(default)]
    pub context_window: Option<u64>,
    /// Fixed loopback port for `drill mocks` / external mode (default 0: ephemeral).
    #[serde(default)]
    pub port: u16,
}

impl Provider {
    pub fn deployment_id(&self) -> &str {
        self.deployment.as_deref().unwrap_or(&self.id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Teams created through `/team/new` before the run (embedded mode), by name.
    #[serde(default)]
    pub teams: BTreeMap<String, TeamSpec>,
    /// Virtual keys created through `/key/generate` (embedded) or read from `env` (external).
    #[serde(default)]
    pub keys: BTreeMap<String, KeySpec>,
    /// Request profiles, picked at random by weight for every request.
    pub profiles: Vec<Profile>,
    #[serde(default)]
    pub load: LoadSpec,
    /// Client timeout per request (default 30s).
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamSpec {
    /// Default: the team's name in this map.
    #[serde(default)]
    pub team_alias: Option<String>,
    /// The team's `router_settings` (same fields as the config's block; default none).
    #[serde(default)]
    pub router_settings: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// Default: the key's name in this map.
    #[serde(default)]
    pub key_alias: Option<String>,
    /// A team of `traffic.teams` the key belongs to (default none).
    #[serde(default)]
    pub team: Option<String>,
    /// The key's `router_settings` (default none: inherit team, then global).
    #[serde(default)]
    pub router_settings: Option<serde_json::Value>,
    /// External mode: environment variable holding the key (required there).
    #[serde(default)]
    pub env: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub id: String,
    /// A key of `traffic.keys` (default: the master key in embedded mode).
    #[serde(default)]
    pub key: Option<String>,
    /// Relative weight (default 1).
    #[serde(default = "one")]
    pub weight: f64,
    pub request: RequestSpec,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Model group (or alias) asked for.
    pub model: String,
    /// SSE streaming (default false).
    #[serde(default)]
    pub stream: bool,
    /// Approximate prompt size in tokens (4 characters each; default 16).
    #[serde(default = "default_prompt_tokens")]
    pub prompt_tokens: u32,
    /// `max_tokens` sent (default: not sent).
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

fn default_prompt_tokens() -> u32 {
    16
}

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadModel {
    /// Fixed arrival rate, independent of responses (default).
    #[default]
    Open,
    /// `concurrency` clients, each sending its next request when the last one ended.
    Closed,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    #[serde(default)]
    pub model: LoadModel,
    /// Open model: arrivals per second, written `20/s`, `1200/m` or a number (default 20/s).
    #[serde(default = "default_rate")]
    pub rate: Rate,
    /// Open model: requests in flight at most; arrivals beyond it are counted as overflow and
    /// not sent (default 200).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// Closed model: concurrent clients (default 8).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
}

impl Default for LoadSpec {
    fn default() -> Self {
        Self {
            model: LoadModel::Open,
            rate: default_rate(),
            max_in_flight: default_max_in_flight(),
            concurrency: default_concurrency(),
        }
    }
}

fn default_rate() -> Rate {
    Rate(20.0)
}
fn default_max_in_flight() -> u32 {
    200
}
fn default_concurrency() -> u32 {
    8
}

/// Requests per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(into = "String")]
pub struct Rate(pub f64);

impl From<Rate> for String {
    fn from(r: Rate) -> String {
        format!("{}/s", r.0)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate such as `50/s`, `600/m` or a number of requests per second")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Rate, E> {
                Ok(Rate(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Rate, E> {
                Ok(Rate(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Rate, E> {
                Ok(Rate(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Rate, E> {
                parse_rate(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    let t = text.trim();
    let (num, per) = match t.split_once('/') {
        Some((n, p)) => (n.trim(), p.trim()),
        None => (t, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid rate {text:?}: expected e.g. `50/s` or `600/m`"))?;
    let secs = match per {
        "s" => 1.0,
        "m" | "min" => 60.0,
        _ => return Err(format!("invalid rate {text:?}: the unit must be /s or /m")),
    };
    Ok(Rate(n / secs))
}

/// One phase: a fixed duration of load with a set of faults and the expectations checked on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub id: String,
    pub duration: HumanDuration,
    /// Requests sent in the first `warmup` of the phase are excluded from checks (default 0s).
    #[serde(default)]
    pub warmup: HumanDuration,
    /// Faults set on the mocks for this phase; every other provider is healthy (default none).
    #[serde(default)]
    pub faults: Vec<PhaseFault>,
    /// Overrides `traffic.load` for this phase (default: `traffic.load`).
    #[serde(default)]
    pub load: Option<LoadSpec>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseFault {
    /// A provider id.
    pub provider: String,
    /// Rule id in the mock journal (default: the effect type).
    #[serde(default)]
    pub id: Option<String>,
    /// The mock-providers fault effect (`{type: http_error, status: 503}`, ...).
    pub effect: FaultEffect,
    /// Which requests it hits (default `always`).
    #[serde(default)]
    pub selection: Selection,
}

/// What must hold in a phase. Every check is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Default `min_samples` of this phase's checks (default 20).
    #[serde(default)]
    pub min_samples: Option<u64>,
    #[serde(default)]
    pub fallback: Option<FallbackExpect>,
    /// No client request may reach the mocks more often than this (retries + fallbacks).
    #[serde(default)]
    pub max_upstream_attempts: Option<u32>,
    /// Share of client requests that succeed: `0.99` or `">= 0.99"`.
    #[serde(default)]
    pub success_ratio: Option<Ratio>,
    #[serde(default)]
    pub latency_delta: Option<LatencyDelta>,
    #[serde(default)]
    pub traffic_returns: Option<TrafficReturns>,
    /// `true`: no 200 stream may end without its terminator or an error event.
    #[serde(default)]
    pub no_truncated_success: Option<bool>,
    /// Each of the phase's faults injected at least `min` times (default min 1).
    #[serde(default)]
    pub faults_injected: Option<FaultsInjected>,
}

/// `fallback`: requests for the failing deployment's group are served by the documented target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackExpect {
    /// The failing deployment id.
    pub from: String,
    /// `documented` (default): the first healthy deployments along the documented chain for the
    /// request's key; or a deployment id, or a list of them.
    #[serde(default)]
    pub to: FallbackTarget,
    /// Share of in-scope requests the target must serve (default 0.95).
    #[serde(default = "default_min_share")]
    pub min_share: f64,
    /// Requests sent earlier than this after the phase start are not counted (default 0s).
    #[serde(default)]
    pub within: HumanDuration,
    #[serde(default)]
    pub min_samples: Option<u64>,
    /// Which documented list applies: `general` (`fallbacks`, then `default_fallbacks`),
    /// `context_window` or `content_policy` (default: from the phase's faults on `from`).
    #[serde(default)]
    pub kind: Option<crate::documented::ChainKind>,
    /// Only requests of these profiles count (default: every profile asking for the group).
    #[serde(default)]
    pub profiles: Vec<String>,
}

fn default_min_share() -> f64 {
    0.95
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FallbackTarget {
    #[default]
    Documented,
    Explicit(Vec<String>),
}

impl<'de> Deserialize<'de> for FallbackTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FallbackTarget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`documented`, a deployment id or a list of deployment ids")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(if v == "documented" {
                    FallbackTarget::Documented
                } else {
                    FallbackTarget::Explicit(vec![v.to_owned()])
                })
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    v.push(s);
                }
                Ok(FallbackTarget::Explicit(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A ratio threshold: `0.99` or `">= 0.99"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(into = "f64")]
pub struct Ratio(pub f64);

impl From<Ratio> for f64 {
    fn from(r: Ratio) -> f64 {
        r.0
    }
}

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Ratio;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a ratio between 0 and 1, e.g. 0.99 or \">= 0.99\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Ratio, E> {
                Ok(Ratio(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ratio, E> {
                Ok(Ratio(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ratio, E> {
                let t = v.trim().trim_start_matches(">=").trim();
                t.parse::<f64>().map(Ratio).map_err(|_| {
                    E::custom(format!(
                        "invalid ratio {v:?}: expected e.g. 0.99 or \">= 0.99\""
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Which latency statistic a `latency_delta` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    P50,
    P90,
    P95,
    P99,
    Max,
}

impl Stat {
    pub fn as_str(self) -> &'static str {
        match self {
            Stat::P50 => "p50",
            Stat::P90 => "p90",
            Stat::P95 => "p95",
            Stat::P99 => "p99",
            Stat::Max => "max",
        }
    }

    pub fn quantile(self) -> f64 {
        match self {
            Stat::P50 => 0.50,
            Stat::P90 => 0.90,
            Stat::P95 => 0.95,
            Stat::P99 => 0.99,
            Stat::Max => 1.0,
        }
    }
}

/// `latency_delta`: this phase's latency statistic may exceed a named phase's by at most
/// `max_increase` (successful requests only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyDelta {
    /// Default p95.
    #[serde(default = "default_stat")]
    pub stat: Stat,
    /// An earlier phase.
    pub vs_phase: String,
    pub max_increase: HumanDuration,
    #[serde(default)]
    pub min_samples: Option<u64>,
}

fn default_stat() -> Stat {
    Stat::P95
}

/// `traffic_returns`: after faults clear, the deployment serves its group's traffic again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficReturns {
    /// The deployment id that must serve again.
    pub to: String,
    /// Share of its group's requests it must serve after `within` (default 0.9).
    #[serde(default = "default_return_share")]
    pub min_share: f64,
    /// Default: the documented cooldown of the deployment plus 2s.
    #[serde(default)]
    pub within: Option<HumanDuration>,
    #[serde(default)]
    pub min_samples: Option<u64>,
}

fn default_return_share() -> f64 {
    0.9
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsInjected {
    /// Default 1.
    #[serde(default = "one_u64")]
    pub min: u64,
}

fn one_u64() -> u64 {
    1
}

/// When a run is aborted (exit 3).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopConditions {
    /// Abort when more client requests than this have failed in the run (default: never).
    #[serde(default)]
    pub max_failed_requests: Option<u64>,
    /// Overall deadline (default: the phases' total duration plus 60s).
    #[serde(default)]
    pub deadline: Option<HumanDuration>,
}

/// What the readiness memo (rendered later from journal.json) needs from the author.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoSpec {
    #[serde(default)]
    pub header: MemoHeader,
    #[serde(default)]
    pub open_risks: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoHeader {
    /// Default `draft`.
    #[serde(default = "draft")]
    pub status: String,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub reviewers: Vec<String>,
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default)]
    pub approval_date: Option<String>,
    /// e.g. `90d`.
    #[serde(default)]
    pub revisit_after: Option<String>,
}

impl Default for MemoHeader {
    fn default() -> Self {
        Self {
            status: draft(),
            author: None,
            reviewers: Vec::new(),
            approvers: Vec::new(),
            approval_date: None,
            revisit_after: None,
        }
    }
}

fn draft() -> String {
    "draft".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_every_form() {
        assert_eq!(parse_rate("50/s").unwrap(), Rate(50.0));
        assert_eq!(parse_rate("600/m").unwrap(), Rate(10.0));
        assert_eq!(parse_rate("7").unwrap(), Rate(7.0));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("5/h").is_err());
    }

    #[test]
    fn ratio_accepts_number_and_comparison() {
        let r: Ratio = serde_yaml::from_str("\">= 0.99\"").unwrap();
        assert_eq!(r, Ratio(0.99));
        let r: Ratio = serde_yaml::from_str("0.5").unwrap();
        assert_eq!(r, Ratio(0.5));
    }

    #[test]
    fn fallback_target_forms() {
        let t: FallbackTarget = serde_yaml::from_str("documented").unwrap();
        assert_eq!(t, FallbackTarget::Documented);
        let t: FallbackTarget = serde_yaml::from_str("claude-west").unwrap();
        assert_eq!(t, FallbackTarget::Explicit(vec!["claude-west".into()]));
        let t: FallbackTarget = serde_yaml::from_str("[a, b]").unwrap();
        assert_eq!(t, FallbackTarget::Explicit(vec!["a".into(), "b".into()]));
    }
}
