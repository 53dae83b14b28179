//! Runtime configuration: the validated, typed form of a LiteLLM-compatible `config.yaml`.
//! Parsing, environment interpolation and validation live in the submodules; everything
//! downstream (router, providers, api) only ever sees the types in this file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

mod diagnostic;
mod env;
mod litellm;
mod load;
mod raw;
pub mod url;
mod validate;
mod yaml;

pub use diagnostic::{ConfigErrors, Diagnostic, Severity};
pub use load::{load_file, load_str, LoadOptions, Loaded};

/// Stable identity of one deployment (LiteLLM `model_info.id`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeploymentId(pub String);

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl DeploymentId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which upstream API dialect a deployment speaks, chosen by the `litellm_params.model` prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// `openai/...` and every OpenAI-compatible server reached through `api_base`.
    OpenAi,
    /// `azure/<deployment>`: OpenAI wire format on Azure's paths with the `api-key` header.
    Azure,
    /// `anthropic/...`: the Messages API, translated to and from chat completions.
    Anthropic,
}

impl ProviderKind {
    /// Config prefixes, defined once. `text-completion-openai`/`hosted_vllm` etc. map to OpenAI.
    pub const KNOWN_PREFIXES: &'static [(&'static str, ProviderKind)] = &[
        ("openai", ProviderKind::OpenAi),
        ("azure", ProviderKind::Azure),
        ("anthropic", ProviderKind::Anthropic),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Azure => "azure",
            ProviderKind::Anthropic => "anthropic",
        }
    }
}

/// Per-deployment metadata (`model_info`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelInfo {
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub access_groups: Vec<String>,
    /// USD per input token; used for spend tracking.
    pub input_cost_per_token: Option<f64>,
    /// USD per output token; used for spend tracking.
    pub output_cost_per_token: Option<f64>,
    /// `chat` (default) or `embedding`.
    pub mode: Option<String>,
}

/// One upstream deployment: a member of the model group named `model_name`.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub id: DeploymentId,
    /// The model group (the name clients send). May be a wildcard such as `openai/*` or `*`.
    pub model_name: String,
    pub provider: ProviderKind,
    /// Upstream model name with the provider prefix removed (`gpt-4o`, or the Azure deployment name).
    /// For wildcard deployments (`openai/*`) this is `*` and the client's model is forwarded.
    pub upstream_model: String,
    pub api_base: Option<String>,
    pub api_key: Option<SecretString>,
    pub api_version: Option<String>,
    pub timeout: Option<Duration>,
    pub stream_timeout: Option<Duration>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub weight: Option<f64>,
    /// Priority tier: lower is tried first. Absent = after every ordered tier.
    pub order: Option<u32>,
    pub max_parallel_requests: Option<u32>,
    pub region_name: Option<String>,
    /// Per-deployment override of `router_settings.cooldown_time`.
    pub cooldown_time: Option<Duration>,
    pub info: ModelInfo,
}

/// How the router picks among healthy deployments of a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoutingStrategy {
    #[default]
    #[serde(rename = "simple-shuffle")]
    SimpleShuffle,
    #[serde(rename = "least-busy")]
    LeastBusy,
    #[serde(rename = "latency-based-routing")]
    LatencyBased,
    #[serde(rename = "usage-based-routing-v2", alias = "usage-based-routing")]
    UsageBasedV2,
}

impl RoutingStrategy {
    pub const NAMES: &'static [&'static str] = &[
        "simple-shuffle",
        "least-busy",
        "latency-based-routing",
        "usage-based-routing-v2",
    ];
}

/// Number of seconds, written as an integer or float in YAML/JSON (LiteLLM's unit).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Seconds(pub Duration);

impl Serialize for Seconds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let secs = self.0.as_secs_f64();
        if secs.fract() == 0.0 && secs < u64::MAX as f64 {
            s.serialize_u64(secs as u64)
        } else {
            s.serialize_f64(secs)
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !v.is_finite() || v < 0.0 {
            return Err(serde::de::Error::custom(format!(
                "expected a non-negative number of seconds, got {v}"
            )));
        }
        Ok(Seconds(Duration::from_secs_f64(v)))
    }
}

/// One fallback rule: requests for `group` that fail try `targets` in order.
/// Written as LiteLLM does: a single-key map `{"gpt-4o": ["claude-sonnet", "gpt-4o-mini"]}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FallbackRule {
    pub group: String,
    pub targets: Vec<String>,
}

impl Serialize for FallbackRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(&self.group, &self.targets)?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for FallbackRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Targets {
            Many(Vec<String>),
            One(String),
        }
        let map = BTreeMap::<String, Targets>::deserialize(d)?;
        if map.len() != 1 {
            return Err(serde::de::Error::custom(format!(
                "expected a single-entry map {{model_group: [fallback, ...]}}, got {} entries",
                map.len()
            )));
        }
        let (group, targets) = map.into_iter().next().expect("len checked above");
        let targets = match targets {
            Targets::Many(v) => v,
            Targets::One(s) => vec![s],
        };
        Ok(FallbackRule { group, targets })
    }
}

/// LiteLLM `model_group_alias` value: a plain target name or `{model, hidden}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GroupAlias {
    Name(String),
    Detailed {
        model: String,
        #[serde(default)]
        hidden: bool,
    },
}

impl GroupAlias {
    pub fn target(&self) -> &str {
        match self {
            GroupAlias::Name(s) => s,
            GroupAlias::Detailed { model, .. } => model,
        }
    }
    pub fn hidden(&self) -> bool {
        matches!(self, GroupAlias::Detailed { hidden: true, .. })
    }
}

/// Per-failure-class counts, LiteLLM's `retry_policy` / `allowed_fails_policy` field names.
/// `None` = the class uses the general value (`num_retries` / `allowed_fails`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerClassCounts {
    #[serde(
        rename = "BadRequestErrorRetries",
        alias = "BadRequestErrorAllowedFails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bad_request: Option<u32>,
    #[serde(
        rename = "AuthenticationErrorRetries",
        alias = "AuthenticationErrorAllowedFails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub authentication: Option<u32>,
    #[serde(
        rename = "TimeoutErrorRetries",
        alias = "TimeoutErrorAllowedFails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<u32>,
    #[serde(
        rename = "RateLimitErrorRetries",
        alias = "RateLimitErrorAllowedFails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub rate_limit: Option<u32>,
    #[serde(
        rename = "ContentPolicyViolationErrorRetries",
        alias = "ContentPolicyViolationErrorAllowedFails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub content_policy: Option<u32>,
    #[serde(
        rename = "InternalServerErrorRetries",
        alias = "InternalServerErrorAllowedFails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub internal_server: Option<u32>,
}

/// Router settings. Every field is optional so the same type serves the global block and the
/// key-level and team-level overrides; `None` means "inherit". Serialized in LiteLLM's shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_strategy: Option<RoutingStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<PerClassCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_fails: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_fails_policy: Option<PerClassCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_time: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_timeout: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallbacks: Option<Vec<FallbackRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window_fallbacks: Option<Vec<FallbackRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_policy_fallbacks: Option<Vec<FallbackRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_fallbacks: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fallbacks: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_group_alias: Option<BTreeMap<String, GroupAlias>>,
    /// Cap on any single retry wait, including upstream Retry-After (seconds). Default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_cap: Option<Seconds>,
    /// Cool down even a group's only deployment (LiteLLM does not by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_single_deployment: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_cooldowns: Option<bool>,
}

/// Documented defaults for every router setting that has one.
pub mod defaults {
    use std::time::Duration;
    pub const REDIS_PORT: u16 = 6379;
    pub const NUM_RETRIES: u32 = 2;
    pub const ALLOWED_FAILS: u32 = 3;
    pub const COOLDOWN_TIME: Duration = Duration::from_secs(5);
    pub const TIMEOUT: Duration = Duration::from_secs(600);
    pub const MAX_FALLBACKS: u32 = 5;
    pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);
    /// First backoff step; doubles per retry, with jitter.
    pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
    pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
}

/// `general_settings` fields Switchyard implements.
#[derive(Clone, Debug, Default)]
pub struct GeneralSettings {
    pub master_key: Option<SecretString>,
    pub database_url: Option<SecretString>,
    pub salt_key: Option<SecretString>,
    /// Request body limit in bytes (default 10 MiB).
    pub max_request_body_bytes: Option<usize>,
    /// Grace period for draining in-flight requests on shutdown (default 30 s).
    pub graceful_shutdown_timeout: Option<Duration>,
    /// Every request comes through one reverse proxy that appends the client's address to
    /// `X-Forwarded-For`: where a client's address counts (the admin UI's sign-in limit), it is
    /// that header's last address rather than the proxy's (default false: the peer's address).
    pub use_x_forwarded_for: bool,
    /// Spend-log rows are deleted once older than this (`maximum_spend_logs_retention_period`).
    pub spend_logs_retention: Option<SpendLogsRetention>,
}

/// How long spend-log rows are kept, and how often older ones are deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpendLogsRetention {
    pub period: Duration,
    /// `maximum_spend_logs_retention_interval`, default a day.
    pub every: Duration,
}

impl SpendLogsRetention {
    pub const DEFAULT_EVERY: Duration = Duration::from_secs(86_400);
}

/// A deployment in the file that Switchyard does not serve: its provider is one LiteLLM knows
/// and Switchyard does not implement (Bedrock, Vertex AI, Gemini, Cohere, ...). It is not in
/// `model_list`, but its group and id still count as known, e.g. as fallback targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnservedDeployment {
    pub id: DeploymentId,
    pub model_name: String,
    /// The LiteLLM provider prefix, e.g. `bedrock`.
    pub provider: String,
}

/// `router_settings.redis_*`: the Redis through which gateway instances share cooldowns and
/// key/team rpm/tpm counts, and the namespace that keeps one cluster's state from another's.
#[derive(Clone)]
pub struct RedisConfig {
    pub target: RedisTarget,
    /// Prefix of every channel and key (`redis_namespace`, default `switchyard`).
    pub namespace: String,
}

/// Where Redis is.
#[derive(Clone)]
pub enum RedisTarget {
    /// `redis_url`: `redis://[[user]:password@]host[:port][/db]`.
    Url(SecretString),
    /// `redis_host` with `redis_port` (default 6379), `redis_password` and `redis_db` (0).
    Host {
        host: String,
        port: u16,
        password: Option<SecretString>,
        db: u32,
    },
}

impl RedisConfig {
    pub const DEFAULT_NAMESPACE: &'static str = "switchyard";

    /// `url` in the default namespace.
    pub fn url(url: &str) -> Self {
        RedisConfig {
            target: RedisTarget::Url(url.to_owned().into()),
            namespace: Self::DEFAULT_NAMESPACE.to_owned(),
        }
    }

    /// Where it points, for logs and `/health/readiness`: never the password.
    pub fn shown(&self) -> String {
        use secrecy::ExposeSecret;
        match &self.target {
            RedisTarget::Url(u) => url::without_password(u.expose_secret()),
            RedisTarget::Host { host, port, db, .. } => format!("{host}:{port}/{db}"),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RedisConfig({}, namespace {})",
            self.shown(),
            self.namespace
        )
    }
}

/// A validated configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub model_list: Vec<Deployment>,
    pub router_settings: RouterSettings,
    pub general_settings: GeneralSettings,
    /// Shared cooldowns between instances; `None` = each instance keeps its own.
    pub redis: Option<RedisConfig>,
    /// The file this was loaded from, if any.
    pub source: Option<PathBuf>,
    /// Deployments left out of `model_list` because Switchyard does not serve their provider.
    pub unserved: Vec<UnservedDeployment>,
}

impl Config {
    /// Every model group the file names, served or not (wildcard groups as written).
    pub fn group_names(&self) -> BTreeSet<&str> {
        self.model_list
            .iter()
            .map(|d| d.model_name.as_str())
            .chain(self.unserved.iter().map(|u| u.model_name.as_str()))
            .collect()
    }
}
