//! Authoring types: the parts of `config.yaml` Switchyard implements, as written.
//!
//! Each type holds only the keys Switchyard acts on; the loader sorts every other key of a
//! section into "LiteLLM has it, not implemented" (warning) or "unknown" before deserializing, so
//! `deny_unknown_fields` here only guards against the two lists drifting apart. Keys that need a
//! hand-written parse to keep per-element positions (fallbacks, `model_group_alias`, the
//! per-class policies) are listed in the `*_MANUAL` constants and read from the YAML tree.
//! Secrets are `SecretString` from the moment they are read.

use secrecy::SecretString;
use serde::Deserialize;

use super::Seconds;

/// `model_list[].litellm_params` (alias `params`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawParams {
    pub api_base: Option<String>,
    pub api_key: Option<SecretString>,
    pub api_version: Option<String>,
    pub timeout: Option<Seconds>,
    pub stream_timeout: Option<Seconds>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub weight: Option<f64>,
    pub order: Option<u32>,
    pub max_parallel_requests: Option<u32>,
    pub region_name: Option<String>,
    pub cooldown_time: Option<Seconds>,
    /// LiteLLM copies custom pricing from `litellm_params` into `model_info`; so do we.
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
}

/// `litellm_params` keys read by hand, first, because the provider decides how the rest is read:
/// `model` (`provider/upstream-model`, or a bare name LiteLLM infers the provider of) and
/// `custom_llm_provider` (names the provider instead of a prefix).
pub(crate) const PARAMS_MANUAL: &[&str] = &["model", "custom_llm_provider"];

/// `model_list[].model_info`. Absent = all defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModelInfo {
    /// The deployment id; derived from the deployment when absent.
    pub id: Option<String>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub access_groups: Option<Vec<String>>,
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    /// `chat` (default), `embedding`, ... (LiteLLM's modes, kept as written).
    pub mode: Option<String>,
}

/// Keys of a `model_list[]` entry besides the three sections. LiteLLM's router honours `rpm`
/// and `tpm` written next to `litellm_params` (old style), so Switchyard does too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDeploymentTop {
    pub model_name: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

/// The sections of a `model_list[]` entry, read by hand.
pub(crate) const DEPLOYMENT_MANUAL: &[&str] = &["litellm_params", "params", "model_info"];

/// `router_settings`, simple fields. Every field is optional: absent = the documented default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouterSettings {
    pub routing_strategy: Option<String>,
    pub num_retries: Option<u32>,
    pub allowed_fails: Option<u32>,
    pub cooldown_time: Option<Seconds>,
    pub timeout: Option<Seconds>,
    pub stream_timeout: Option<Seconds>,
    pub max_fallbacks: Option<u32>,
    pub disable_cooldowns: Option<bool>,
    /// Switchyard: cap on any single retry wait, including upstream Retry-After (seconds).
    pub retry_after_cap: Option<Seconds>,
    /// Switchyard: cool down even a group's only deployment.
    pub cooldown_single_deployment: Option<bool>,
    /// LiteLLM: the Redis that gateway instances share cooldowns through (`redis_url`, or
    /// `redis_host` with `redis_port`, `redis_password`, `redis_db`).
    pub redis_url: Option<SecretString>,
    pub redis_host: Option<String>,
    pub redis_port: Option<u16>,
    pub redis_password: Option<SecretString>,
    pub redis_db: Option<u32>,
    /// Switchyard: prefix of Switchyard's channels and keys in that Redis (one per cluster).
    pub redis_namespace: Option<String>,
}

/// `router_settings` keys read by hand.
pub(crate) const ROUTER_MANUAL: &[&str] = &[
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "default_fallbacks",
    "retry_policy",
    "allowed_fails_policy",
    "model_group_alias",
];

/// The router keys LiteLLM honours under `litellm_settings` (module attributes the router reads).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLitellmSettings {
    pub num_retries: Option<u32>,
    /// Becomes the router `timeout`.
    pub request_timeout: Option<Seconds>,
    pub allowed_fails: Option<u32>,
    pub cooldown_time: Option<Seconds>,
    pub max_fallbacks: Option<u32>,
}

/// `litellm_settings` keys read by hand.
pub(crate) const LITELLM_MANUAL: &[&str] = &[
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "default_fallbacks",
];

/// `general_settings` Switchyard implements.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGeneralSettings {
    pub master_key: Option<SecretString>,
    pub database_url: Option<SecretString>,
    /// LiteLLM's request size limit, in MB.
    pub max_request_size_mb: Option<f64>,
    /// Switchyard: the key credentials are sealed with (LiteLLM reads `LITELLM_SALT_KEY`).
    pub salt_key: Option<SecretString>,
    /// Switchyard: how long in-flight requests may drain on shutdown (seconds).
    pub graceful_shutdown_timeout: Option<Seconds>,
    /// LiteLLM's: the client's address is the one the reverse proxy in front appended to
    /// `X-Forwarded-For`.
    pub use_x_forwarded_for: Option<bool>,
    /// LiteLLM's: spend-log rows older than this (`7d`, `24h`, ...) are deleted.
    pub maximum_spend_logs_retention_period: Option<String>,
    /// LiteLLM's: how often that deletion runs (default `1d`).
    pub maximum_spend_logs_retention_interval: Option<String>,
}

/// Top-level sections Switchyard reads.
pub(crate) const TOP_LEVEL: &[&str] = &[
    "model_list",
    "router_settings",
    "litellm_settings",
    "general_settings",
    "environment_variables",
    "include",
];
