//! Config loader tests: realistic LiteLLM configs load, every kind of bad config fails with a
//! located message (pinned by snapshots), the LiteLLM corpus and the shipped scenarios load.
//! Environment variables come from a lookup closure; nothing here touches the process env.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::ExposeSecret;
use switchyard::config::{
    load_file, load_str, ConfigErrors, Diagnostic, LoadOptions, Loaded, ProviderKind, RedisTarget,
    RoutingStrategy, Severity,
};

fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn load_with(yaml: &str, env: &[(&str, &str)], strict: bool) -> Result<Loaded, ConfigErrors> {
    load_str(
        yaml,
        Path::new("config.yaml"),
        &lookup(env),
        &LoadOptions { strict },
    )
}

fn load_ok(yaml: &str, env: &[(&str, &str)]) -> Loaded {
    match load_with(yaml, env, false) {
        Ok(loaded) => loaded,
        Err(e) => panic!("expected the config to load:\n{e}"),
    }
}

fn load_err(yaml: &str, env: &[(&str, &str)]) -> ConfigErrors {
    match load_with(yaml, env, false) {
        Ok(loaded) => panic!(
            "expected errors, loaded with warnings {:#?}",
            loaded.warnings
        ),
        Err(e) => e,
    }
}

fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

const REALISTIC: &str = r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: os.environ/OPENAI_BASE
      api_key: os.environ/OPENAI_KEY
      rpm: 600
      tpm: 100_000
      timeout: 30
      stream_timeout: 0.5
      weight: 2
      order: 1
      max_parallel_requests: 50
      region_name: us-east
    model_info:
      id: gpt-4o-east
      max_input_tokens: 128000
      max_output_tokens: 16384
      access_groups: [beta]
      input_cost_per_token: 0.0000025
      output_cost_per_token: 0.00001
  - model_name: gpt-4o
    params:                                  # LiteLLM's alias for litellm_params
      model: azure/gpt-4o-prod
      api_base: os.environ/AZURE_API_BASE
      api_key: os.environ/AZURE_API_KEY
      api_version: "2024-06-01"
      cooldown_time: 0
    model_info:
      id: gpt-4o-west
  - model_name: claude-sonnet
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_key: os.environ/ANTHROPIC_API_KEY
  - model_name: cheap
    litellm_params:
      model: gpt-4o-mini                     # bare: LiteLLM infers openai
      api_key: sk-literal

router_settings:
  routing_strategy: least-busy
  num_retries: 3
  timeout: 45
  fallbacks: [{"gpt-4o": ["claude-sonnet", "cheap"]}]
  retry_policy: {"RateLimitErrorRetries": 4, "AuthenticationErrorRetries": 0}
  allowed_fails_policy:
    RateLimitErrorAllowedFails: 100
  model_group_alias: {"gpt-4": "gpt-4o", "old-claude": {"model": "claude-sonnet", "hidden": true}}

litellm_settings:
  num_retries: 9                             # router_settings wins
  request_timeout: 600                       # router_settings.timeout wins
  allowed_fails: 2
  cooldown_time: 20
  context_window_fallbacks:
    - gpt-4o: claude-sonnet                  # block style, single target

general_settings:
  master_key: os.environ/MASTER_KEY
  database_url: os.environ/DATABASE_URL
  max_request_size_mb: 2

environment_variables:
  AZURE_API_BASE: https://example-west.openai.azure.com
"#;

const REALISTIC_ENV: &[(&str, &str)] = &[
    ("OPENAI_BASE", "http://127.0.0.1:9001/v1"),
    ("OPENAI_KEY", "sk-openai-secret"),
    (
        "AZURE_API_BASE",
        "https://from-the-real-environment.invalid",
    ),
    ("AZURE_API_KEY", "azure-secret"),
    ("ANTHROPIC_API_KEY", "sk-ant-secret"),
    ("MASTER_KEY", "sk-master-secret"),
    ("DATABASE_URL", "sqlite://switchyard.db"),
];

#[test]
fn realistic_config_loads_every_section() {
    let loaded = load_ok(REALISTIC, REALISTIC_ENV);
    let c = &loaded.config;
    assert_eq!(c.model_list.len(), 4);

    let east = &c.model_list[0];
    assert_eq!(east.id.as_str(), "gpt-4o-east");
    assert_eq!(east.model_name, "gpt-4o");
    assert_eq!(east.provider, ProviderKind::OpenAi);
    assert_eq!(east.upstream_model, "gpt-4o");
    assert_eq!(east.api_base.as_deref(), Some("http://127.0.0.1:9001/v1"));
    assert_eq!(
        east.api_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned())
            .as_deref(),
        Some("sk-openai-secret")
    );
    assert_eq!((east.rpm, east.tpm), (Some(600), Some(100_000)));
    assert_eq!(east.timeout, Some(Duration::from_secs(30)));
    assert_eq!(east.stream_timeout, Some(Duration::from_millis(500)));
    assert_eq!(
        (east.weight, east.order, east.max_parallel_requests),
        (Some(2.0), Some(1), Some(50))
    );
    assert_eq!(east.region_name.as_deref(), Some("us-east"));
    assert_eq!(east.info.max_input_tokens, Some(128_000));
    assert_eq!(east.info.access_groups, vec!["beta".to_owned()]);
    assert_eq!(east.info.output_cost_per_token, Some(0.00001));

    let west = &c.model_list[1];
    assert_eq!(west.provider, ProviderKind::Azure);
    assert_eq!(west.upstream_model, "gpt-4o-prod");
    // environment_variables are consulted before the real environment.
    assert_eq!(
        west.api_base.as_deref(),
        Some("https://example-west.openai.azure.com")
    );
    assert_eq!(west.api_version.as_deref(), Some("2024-06-01"));
    assert_eq!(west.cooldown_time, Some(Duration::ZERO));

    assert_eq!(c.model_list[2].provider, ProviderKind::Anthropic);
    assert_eq!(c.model_list[2].upstream_model, "claude-sonnet-4-5");
    assert_eq!(c.model_list[3].provider, ProviderKind::OpenAi);
    assert_eq!(c.model_list[3].upstream_model, "gpt-4o-mini");

    let r = &c.router_settings;
    assert_eq!(r.routing_strategy, Some(RoutingStrategy::LeastBusy));
    assert_eq!(
        r.num_retries,
        Some(3),
        "router_settings wins over litellm_settings"
    );
    assert_eq!(r.timeout.map(|s| s.0), Some(Duration::from_secs(45)));
    assert_eq!(
        r.allowed_fails,
        Some(2),
        "litellm_settings fills what router_settings leaves"
    );
    assert_eq!(r.cooldown_time.map(|s| s.0), Some(Duration::from_secs(20)));
    let fallbacks = r.fallbacks.as_ref().unwrap();
    assert_eq!(fallbacks[0].group, "gpt-4o");
    assert_eq!(
        fallbacks[0].targets,
        vec!["claude-sonnet".to_owned(), "cheap".to_owned()]
    );
    let cw = r.context_window_fallbacks.as_ref().unwrap();
    assert_eq!(cw[0].targets, vec!["claude-sonnet".to_owned()]);
    assert_eq!(r.retry_policy.as_ref().unwrap().rate_limit, Some(4));
    assert_eq!(r.retry_policy.as_ref().unwrap().authentication, Some(0));
    assert_eq!(
        r.allowed_fails_policy.as_ref().unwrap().rate_limit,
        Some(100)
    );
    let aliases = r.model_group_alias.as_ref().unwrap();
    assert_eq!(aliases["gpt-4"].target(), "gpt-4o");
    assert!(aliases["old-claude"].hidden());

    let g = &c.general_settings;
    assert_eq!(
        g.master_key.as_ref().unwrap().expose_secret(),
        "sk-master-secret"
    );
    assert_eq!(
        g.database_url.as_ref().unwrap().expose_secret(),
        "sqlite://switchyard.db"
    );
    assert_eq!(g.max_request_body_bytes, Some(2 * 1024 * 1024));
    assert_eq!(c.source.as_deref(), Some(Path::new("config.yaml")));

    // The only thing worth a warning: the litellm_settings values router_settings overrides.
    insta::assert_snapshot!("realistic_warnings", render(&loaded.warnings));
}

#[test]
fn secrets_never_reach_debug_output_or_messages() {
    let loaded = load_ok(REALISTIC, REALISTIC_ENV);
    let debug = format!("{:?}", loaded.config);
    for secret in [
        "sk-openai-secret",
        "azure-secret",
        "sk-ant-secret",
        "sk-master-secret",
        "sk-literal",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked into Debug output");
    }
    // A type error next to a secret does not quote the secret, and a value that came from the
    // environment is never quoted, even in the wrong field.
    let yaml = "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n      api_key: os.environ/KEY\n      rpm: os.environ/KEY\n      tpm: [1]\n";
    let errors = load_err(yaml, &[("KEY", "sk-very-secret")]);
    let text = errors.to_string();
    assert!(!text.contains("sk-very-secret"), "{text}");
    assert_eq!(
        errors.errors[0].message,
        "invalid type: a string from the environment, expected u64"
    );
}

#[test]
fn wildcard_groups_forward_the_client_model() {
    let yaml = r#"
model_list:
  - model_name: "*"
    litellm_params:
      model: openai/*
      api_key: os.environ/OPENAI_API_KEY
  - model_name: "anthropic/*"
    litellm_params:
      model: "anthropic/*"
      api_key: os.environ/ANTHROPIC_API_KEY
  - model_name: "groq/*"
    litellm_params:
      model: "groq/*"
      api_key: os.environ/GROQ_API_KEY
  - model_name: gpt-4o
    litellm_params:
      model: gpt-4o
litellm_settings:
  # a target served only through a wildcard group
  fallbacks: [{"gpt-4o": ["anthropic/claude-sonnet-4-5"]}]
"#;
    let env = [
        ("OPENAI_API_KEY", "k1"),
        ("ANTHROPIC_API_KEY", "k2"),
        ("GROQ_API_KEY", "k3"),
    ];
    let c = load_ok(yaml, &env).config;
    assert_eq!(c.model_list[0].model_name, "*");
    assert_eq!(c.model_list[0].upstream_model, "*");
    assert_eq!(c.model_list[1].provider, ProviderKind::Anthropic);
    assert_eq!(c.model_list[1].upstream_model, "*");
    assert_eq!(c.model_list[2].provider, ProviderKind::OpenAi);
    assert_eq!(
        c.model_list[2].api_base.as_deref(),
        Some("https://api.groq.com/openai/v1")
    );
    // No api_key written: LiteLLM reads OPENAI_API_KEY, so does Switchyard.
    assert_eq!(
        c.model_list[3].api_key.as_ref().unwrap().expose_secret(),
        "k1"
    );
}

#[test]
fn openai_compatible_providers_get_their_documented_base() {
    let yaml = r#"
model_list:
  - {model_name: a, litellm_params: {model: groq/llama-3.3-70b-versatile}}
  - {model_name: b, litellm_params: {model: together_ai/meta-llama/Llama-3-70b-chat-hf}}
  - {model_name: c, litellm_params: {model: deepseek/deepseek-chat}}
  - {model_name: d, litellm_params: {model: mistral/mistral-large-latest}}
  - {model_name: e, litellm_params: {model: openrouter/anthropic/claude-3.5-sonnet}}
  - {model_name: f, litellm_params: {model: fireworks_ai/accounts/fireworks/models/llama-v3p1-8b-instruct}}
  - {model_name: g, litellm_params: {model: xai/grok-3}}
  - {model_name: h, litellm_params: {model: perplexity/sonar}}
  - {model_name: i, litellm_params: {model: deepinfra/meta-llama/Llama-3-8b}}
  - {model_name: j, litellm_params: {model: hosted_vllm/qwen, api_base: "http://vllm:8000/v1"}}
  - {model_name: k, litellm_params: {model: groq/llama, api_base: "http://my-groq-proxy/v1"}}
"#;
    let c = load_ok(yaml, &[]).config;
    let bases: Vec<(&str, &str, Option<&str>)> = c
        .model_list
        .iter()
        .map(|d| {
            (
                d.model_name.as_str(),
                d.upstream_model.as_str(),
                d.api_base.as_deref(),
            )
        })
        .collect();
    insta::assert_debug_snapshot!("openai_compatible_bases", bases);
    assert!(c
        .model_list
        .iter()
        .all(|d| d.provider == ProviderKind::OpenAi));
}

#[test]
fn bare_models_infer_their_provider() {
    let yaml = r#"
model_list:
  - {model_name: a, litellm_params: {model: gpt-4o}}
  - {model_name: b, litellm_params: {model: o1-preview}}
  - {model_name: c, litellm_params: {model: text-embedding-3-small}}
  - {model_name: d, litellm_params: {model: claude-3-5-sonnet-20241022}}
  - {model_name: e, litellm_params: {model: llama-3.1-8b-instant, api_base: "https://api.groq.com/openai/v1"}}
  - {model_name: f, litellm_params: {model: gpt-4o, custom_llm_provider: azure, api_base: "https://x.openai.azure.com"}}
"#;
    let c = load_ok(yaml, &[]).config;
    let kinds: Vec<ProviderKind> = c.model_list.iter().map(|d| d.provider).collect();
    use ProviderKind::*;
    assert_eq!(
        kinds,
        vec![OpenAi, OpenAi, OpenAi, Anthropic, OpenAi, Azure]
    );
    assert_eq!(c.model_list[5].upstream_model, "gpt-4o");
}

#[test]
fn providers_switchyard_does_not_serve_are_left_out_but_stay_known() {
    let yaml = r#"
model_list:
  - model_name: claude-bedrock
    litellm_params:
      model: bedrock/anthropic.claude-3-sonnet-20240229-v1:0
      aws_region_name: us-east-1                 # no warning of its own: the deployment is out
  - model_name: gemini
    litellm_params:
      model: gemini-1.5-pro                      # bare: vertex_ai
    model_info: {id: gemini-id}
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o}
router_settings:
  fallbacks: [{"gpt-4o": ["claude-bedrock", "gemini-id"]}]
"#;
    let loaded = load_ok(yaml, &[]);
    assert_eq!(loaded.config.model_list.len(), 1);
    let unserved: Vec<(&str, &str, &str)> = loaded
        .config
        .unserved
        .iter()
        .map(|u| (u.model_name.as_str(), u.provider.as_str(), u.id.as_str()))
        .collect();
    assert_eq!(unserved[0].0, "claude-bedrock");
    assert_eq!(unserved[0].1, "bedrock");
    assert_eq!(unserved[1], ("gemini", "vertex_ai", "gemini-id"));
    assert!(loaded.config.group_names().contains("gemini"));
    insta::assert_snapshot!("unserved_warnings", render(&loaded.warnings));

    let strict = load_with(yaml, &[], true).unwrap_err();
    assert!(strict.warnings.is_empty());
    assert_eq!(strict.errors.len(), loaded.warnings.len());
}

#[test]
fn litellm_keys_switchyard_ignores_warn_once_each_and_strict_rejects_them() {
    let yaml = r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      max_retries: 4
      temperature: 0.2
      api_bse: http://typo                       # LiteLLM would forward this to the provider
    model_info:
      base_model: gpt-4o
      supports_vision: true
router_settings:
  enable_pre_call_checks: true
litellm_settings:
  drop_params: true
  success_callback: ["langfuse"]
general_settings:
  alerting: ["slack"]
callback_settings:
  otel: {message_logging: false}
"#;
    let loaded = load_ok(yaml, &[]);
    insta::assert_snapshot!("ignored_keys_warnings", render(&loaded.warnings));
    let strict = load_with(yaml, &[], true).unwrap_err();
    insta::assert_snapshot!("ignored_keys_strict", strict.to_string());
}

#[test]
fn unknown_keys_are_errors_with_did_you_mean() {
    let yaml = r#"
model_lst:
  - model_name: a
router_settings:
  num_retires: 3
  fallback: [{"a": ["b"]}]
  retry_policy: {"RateLimitErrorRetry": 2}
litellm_settings:
  routing_strategy: least-busy                   # a router setting LiteLLM ignores here
  drop_param: true
general_settings:
  master_kay: sk-1
fallbacks: []                                    # belongs under router_settings
"#;
    let e = load_err(yaml, &[]);
    insta::assert_snapshot!("unknown_keys", e.to_string());
}

#[test]
fn type_errors_are_located_and_all_reported_in_one_pass() {
    let yaml = r#"
model_list:
  - model_name: a
    litellm_params:
      model: openai/a
      rpm: ten
      timeout: -1
      weight: heavy
  - model_name: b
    litellm_params:
      model: openai/b
      order: [1]
    model_info:
      max_input_tokens: lots
  - model_name: c
    litellm_params:
      api_base: http://x
router_settings:
  num_retries: "three"
  cooldown_time: soon
  disable_cooldowns: maybe
general_settings:
  max_request_size_mb: 0
"#;
    let e = load_err(yaml, &[]);
    insta::assert_snapshot!("type_errors", e.to_string());
    // The brief's own example, exactly.
    assert_eq!(
        e.errors[0].to_string(),
        "config.yaml:6:7: model_list[0].litellm_params.rpm: invalid type: string \"ten\", expected u64"
    );
}

#[test]
fn unknown_fallback_targets_list_the_known_groups() {
    let yaml = r#"
model_list:
  - {model_name: gpt-4o, litellm_params: {model: openai/gpt-4o}}
  - {model_name: claude-sonnet, litellm_params: {model: anthropic/claude-sonnet-4-5}}
router_settings:
  fallbacks:
    - gpt-4o: [claude-sonet]
    - gpt-5: [gpt-4o]
  content_policy_fallbacks: [{"claude-sonnet": "gemini-pro"}]
  default_fallbacks: ["nope"]
"#;
    let e = load_err(yaml, &[]);
    insta::assert_snapshot!("unknown_fallback_targets", e.to_string());
}

#[test]
fn fallback_cycles_are_printed() {
    let yaml = r#"
model_list:
  - {model_name: a, litellm_params: {model: openai/a}}
  - {model_name: b, litellm_params: {model: openai/b}}
  - {model_name: c, litellm_params: {model: openai/c}}
router_settings:
  model_group_alias: {"alias-of-a": "a"}
  fallbacks:
    - a: [b]
    - b: [c]
    - c: [alias-of-a]
  context_window_fallbacks: [{"a": ["a"]}]
"#;
    let e = load_err(yaml, &[]);
    insta::assert_snapshot!("fallback_cycles", e.to_string());
}

#[test]
fn fallback_targets_may_be_deployment_ids() {
    // LiteLLM's documented pattern: fall back to one deployment of the same group.
    let yaml = r#"
model_list:
  - model_name: gpt-4
    litellm_params: {model: openai/gpt-4}
    model_info: {id: my-specific-model-id}
  - model_name: gpt-4
    litellm_params: {model: azure/chatgpt-v-2, api_base: "https://x.openai.azure.com"}
litellm_settings:
  fallbacks: [{"gpt-4": ["my-specific-model-id"]}]
"#;
    let loaded = load_ok(yaml, &[]);
    assert!(loaded.warnings.is_empty(), "{}", render(&loaded.warnings));
}

#[test]
fn duplicate_deployment_ids_name_both_places() {
    let yaml = r#"
model_list:
  - model_name: a
    litellm_params: {model: openai/a}
    model_info: {id: shared}
  - model_name: b
    litellm_params: {model: openai/b}
    model_info:
      id: shared
"#;
    let e = load_err(yaml, &[]);
    insta::assert_snapshot!("duplicate_ids", e.to_string());
}

#[test]
fn derived_ids_are_stable_across_reordering_and_ignore_the_key() {
    let one = "model_list:\n  - {model_name: a, litellm_params: {model: openai/a, api_key: k1}}\n  - {model_name: b, litellm_params: {model: openai/b}}\n";
    let two = "model_list:\n  - {model_name: b, litellm_params: {model: openai/b}}\n  - {model_name: a, litellm_params: {model: openai/a, api_key: other-key}}\n";
    let ids = |yaml: &str| -> BTreeMap<String, String> {
        load_ok(yaml, &[])
            .config
            .model_list
            .iter()
            .map(|d| (d.model_name.clone(), d.id.as_str().to_owned()))
            .collect()
    };
    assert_eq!(ids(one), ids(two));
    assert!(ids(one)
        .values()
        .all(|id| id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit())));
}

#[test]
fn identical_deployments_get_positional_ids_with_a_warning() {
    // LiteLLM's load_balancer.yaml pattern: the same model twice, with two keys.
    let yaml = r#"
model_list:
  - model_name: gpt-3.5-turbo
    litellm_params: {model: gpt-3.5-turbo, api_key: sk-one}
  - model_name: gpt-3.5-turbo
    litellm_params: {model: gpt-3.5-turbo, api_key: sk-two}
"#;
    let loaded = load_ok(yaml, &[]);
    let ids: Vec<&str> = loaded
        .config
        .model_list
        .iter()
        .map(|d| d.id.as_str())
        .collect();
    assert_eq!(format!("{}-2", ids[0]), ids[1]);
    insta::assert_snapshot!("positional_ids", render(&loaded.warnings));
}

#[test]
fn unknown_provider_prefixes_list_the_known_ones() {
    let yaml = r#"
model_list:
  - {model_name: a, litellm_params: {model: mistralai/mistral-7b-instruct}}
  - {model_name: b, litellm_params: {model: opneai/gpt-4o}}
  - {model_name: c, litellm_params: {model: my-local-model, api_base: "http://localhost:8000"}}
  - {model_name: d, litellm_params: {model: gpt-4o, custom_llm_provider: nope}}
"#;
    let e = load_err(yaml, &[]);
    insta::assert_snapshot!("unknown_providers", e.to_string());
}

#[test]
fn unknown_routing_strategy_lists_the_valid_ones() {
    let e = load_err("router_settings:\n  routing_strategy: round-robin\n", &[]);
    insta::assert_snapshot!("unknown_routing_strategy", e.to_string());
    // LiteLLM has it, Switchyard does not: a warning, and the default strategy.
    let loaded = load_ok(
        "router_settings:\n  routing_strategy: cost-based-routing\n",
        &[],
    );
    assert_eq!(loaded.config.router_settings.routing_strategy, None);
    assert_eq!(loaded.warnings.len(), 1);
    // LiteLLM's v1 name maps to v2.
    let loaded = load_ok(
        "router_settings:\n  routing_strategy: usage-based-routing\n",
        &[],
    );
    assert_eq!(
        loaded.config.router_settings.routing_strategy,
        Some(RoutingStrategy::UsageBasedV2)
    );
}

#[test]
fn model_group_alias_must_point_at_a_group() {
    let yaml = r#"
model_list:
  - {model_name: gpt-4o, litellm_params: {model: openai/gpt-4o}}
  - {model_name: "azure/*", litellm_params: {model: "azure/*", api_base: "https://x.openai.azure.com"}}
router_settings:
  model_group_alias:
    gpt-4: gpt-4o
    via-wildcard: azure/gpt-4o
    broken: gpt-4o-typo
    hidden-broken: {model: nowhere, hidden: true}
"#;
    let e = load_err(yaml, &[]);
    insta::assert_snapshot!("alias_pointing_nowhere", e.to_string());
}

#[test]
fn missing_env_vars_name_key_path_and_variable() {
    let yaml = r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: os.environ/MOCK_OPENAI_BASE
      api_key: os.environ/MOCK_OPENAI_KEY
      rpm: os.environ/RPM
general_settings:
  master_key: os.environ/MASTER_KEY
"#;
    let e = load_err(yaml, &[("MOCK_OPENAI_KEY", "sk-set"), ("RPM", "10")]);
    insta::assert_snapshot!("missing_env", e.to_string());
    assert!(!e.to_string().contains("sk-set"));
    // A numeric field takes a numeric string from the environment.
    let env = [
        ("MOCK_OPENAI_BASE", "http://b"),
        ("MOCK_OPENAI_KEY", "k"),
        ("RPM", "10"),
        ("MASTER_KEY", "m"),
    ];
    assert_eq!(load_ok(yaml, &env).config.model_list[0].rpm, Some(10));
}

#[test]
fn env_values_with_newlines_are_refused() {
    let yaml = "model_list:\n  - {model_name: a, litellm_params: {model: openai/a, api_key: os.environ/KEY}}\n";
    let e = load_err(yaml, &[("KEY", "sk-line-one\nsk-line-two")]);
    insta::assert_snapshot!("env_newline", e.to_string());
    assert!(!e.to_string().contains("sk-line"));
}

#[test]
fn yaml_syntax_errors_are_located() {
    let e = load_err(
        "general_settings:\n  master_key: sk-1\n  database_url: \" # unterminated\n",
        &[],
    );
    insta::assert_snapshot!("syntax_unterminated", e.to_string());
    let e = load_err("router_settings:\n\tnum_retries: 2\n", &[]);
    insta::assert_snapshot!("syntax_tab", e.to_string());
    for empty in ["", "# nothing but a comment\n"] {
        let e = load_err(empty, &[]);
        assert_eq!(
            e.to_string(),
            "invalid config (1 error, 0 warnings)\nconfig.yaml: the config file is empty"
        );
    }
}

#[test]
fn azure_without_api_base_is_an_error() {
    let yaml = "model_list:\n  - {model_name: a, litellm_params: {model: azure/gpt-4o}}\n";
    let e = load_err(yaml, &[]);
    insta::assert_snapshot!("azure_needs_base", e.to_string());
    // LiteLLM reads AZURE_API_BASE / AZURE_API_VERSION when they are not written.
    let c = load_ok(
        yaml,
        &[
            ("AZURE_API_BASE", "https://env.openai.azure.com"),
            ("AZURE_API_VERSION", "2024-06-01"),
        ],
    )
    .config;
    assert_eq!(
        c.model_list[0].api_base.as_deref(),
        Some("https://env.openai.azure.com")
    );
    assert_eq!(c.model_list[0].api_version.as_deref(), Some("2024-06-01"));
}

#[test]
fn deployment_level_rpm_and_tpm_are_honoured() {
    let yaml = r#"
model_list:
  - model_name: a
    litellm_params: {model: openai/a}
    rpm: 3
    tpm: 20000
  - model_name: b
    litellm_params: {model: openai/b, rpm: 5}
    rpm: 3
"#;
    let c = load_ok(yaml, &[]).config;
    assert_eq!(
        (c.model_list[0].rpm, c.model_list[0].tpm),
        (Some(3), Some(20000))
    );
    assert_eq!(c.model_list[1].rpm, Some(5), "litellm_params wins");
}

/// LiteLLM's Redis settings (`router_settings.redis_*`) configure the Redis that instances
/// share cooldowns through: host, port (a number, from the environment too), password and db,
/// or one `redis_url`. The password shows nowhere, errors are located and never echo a value,
/// and general_settings never had them.
#[test]
fn redis_settings_load_and_never_show_the_password() {
    let yaml = "router_settings:\n  redis_host: os.environ/REDIS_HOST\n  redis_port: os.environ/REDIS_PORT\n  redis_password: os.environ/REDIS_PASSWORD\ngeneral_settings:\n  salt_key: os.environ/SALT\n  graceful_shutdown_timeout: 10\n  use_x_forwarded_for: true\n";
    let env = [
        ("SALT", "s"),
        ("REDIS_HOST", "redis.internal"),
        ("REDIS_PORT", "6380"),
        ("REDIS_PASSWORD", "hunter2-redis"),
    ];
    let loaded = load_ok(yaml, &env);
    assert!(loaded.warnings.is_empty(), "{}", render(&loaded.warnings));
    let redis = loaded.config.redis.as_ref().expect("redis configured");
    assert_eq!(redis.namespace, "switchyard");
    match &redis.target {
        RedisTarget::Host {
            host,
            port,
            password,
            db,
        } => {
            assert_eq!((host.as_str(), *port, *db), ("redis.internal", 6380, 0));
            assert_eq!(password.as_ref().unwrap().expose_secret(), "hunter2-redis");
        }
        _ => panic!("expected the redis_host settings: {redis:?}"),
    }
    assert_eq!(redis.shown(), "redis.internal:6380/0");
    assert!(!format!("{:?}", loaded.config).contains("hunter2"));
    let g = &loaded.config.general_settings;
    assert_eq!(g.salt_key.as_ref().unwrap().expose_secret(), "s");
    assert_eq!(g.graceful_shutdown_timeout, Some(Duration::from_secs(10)));
    assert!(g.use_x_forwarded_for);
    assert!(
        !load_ok("{}", &[])
            .config
            .general_settings
            .use_x_forwarded_for
    );
    assert!(load_ok("{}", &[]).config.redis.is_none());

    // One URL names everything; host keys beside it are ignored with a warning each.
    let url =
        "router_settings:\n  redis_url: redis://:hunter2-url@cache:6379/2\n  redis_host: other\n";
    let loaded = load_ok(url, &[]);
    let redis = loaded.config.redis.as_ref().unwrap();
    assert!(matches!(redis.target, RedisTarget::Url(_)));
    assert_eq!(redis.shown(), "redis://cache:6379/2");
    assert!(!format!("{:?}", loaded.config).contains("hunter2"));
    let warnings = render(&loaded.warnings);
    assert!(
        warnings.contains("router_settings.redis_host") && warnings.contains("redis_url"),
        "{warnings}"
    );

    // Errors: located, one per key, no value echoed.
    for (yaml, at, says) in [
        (
            "router_settings:\n  redis_url: rediss://:hunter2@cache:6380\n",
            "router_settings.redis_url",
            "TLS",
        ),
        (
            "router_settings:\n  redis_url: http://:hunter2@cache\n",
            "router_settings.redis_url",
            "redis://",
        ),
        (
            "router_settings:\n  redis_host: cache\n  redis_port: 70000\n",
            "router_settings.redis_port",
            "u16",
        ),
        (
            "router_settings:\n  redis_password: hunter2\n",
            "router_settings.redis_password",
            "redis_host",
        ),
        (
            "router_settings:\n  redis_host: user:hunter2@cache\n",
            "router_settings.redis_host",
            "host name",
        ),
    ] {
        let e = load_err(yaml, &[]).to_string();
        assert!(e.contains(at) && e.contains(says), "{yaml}: {e}");
        assert!(!e.contains("hunter2"), "{yaml}: {e}");
    }
    // One namespace per cluster sharing a Redis.
    let ns = load_ok(
        "router_settings:\n  redis_url: redis://cache\n  redis_namespace: prod-eu\n",
        &[],
    );
    assert_eq!(ns.config.redis.as_ref().unwrap().namespace, "prod-eu");
    for (yaml, says) in [
        (
            "router_settings:\n  redis_url: redis://cache\n  redis_namespace: 'prod eu'\n",
            "letters, digits",
        ),
        (
            "router_settings:\n  redis_namespace: prod\n",
            "needs `redis_host`",
        ),
    ] {
        let e = load_err(yaml, &[]).to_string();
        assert!(
            e.contains("router_settings.redis_namespace") && e.contains(says),
            "{yaml}: {e}"
        );
    }
    // A Redis URL under general_settings was never LiteLLM's: an unknown key.
    let e = load_err("general_settings:\n  redis_url: redis://h\n", &[]).to_string();
    assert!(e.contains("general_settings.redis_url"), "{e}");
    // Response caching is LiteLLM's, not Switchyard's: the warning says so.
    let loaded = load_ok("litellm_settings:\n  cache: true\n", &[]);
    assert!(
        render(&loaded.warnings).contains("does not cache responses"),
        "{}",
        render(&loaded.warnings)
    );
}

#[test]
fn include_merges_model_lists_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "include:\n  - models/extra.yaml\nmodel_list:\n  - {model_name: main, litellm_params: {model: openai/main}}\nrouter_settings:\n  fallbacks: [{\"main\": [\"included\"]}]\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("models")).unwrap();
    std::fs::write(
        dir.path().join("models/extra.yaml"),
        "model_list:\n  - model_name: included\n    litellm_params:\n      model: anthropic/claude\n      api_key: os.environ/INCLUDED_KEY\nrouter_settings:\n  num_retries: 1\n",
    )
    .unwrap();
    let loaded = load_file(
        &dir.path().join("config.yaml"),
        &lookup(&[("INCLUDED_KEY", "k")]),
        &LoadOptions::default(),
    )
    .unwrap();
    let names: Vec<&str> = loaded
        .config
        .model_list
        .iter()
        .map(|d| d.model_name.as_str())
        .collect();
    assert_eq!(names, vec!["main", "included"]);
    let tmp = dir.path().display().to_string();
    insta::assert_snapshot!(
        "include_warnings",
        render(&loaded.warnings).replace(&tmp, "[TMP]")
    );

    // Errors inside an included file name that file.
    std::fs::write(dir.path().join("models/extra.yaml"), "model_list:\n  - model_name: included\n    litellm_params: {model: anthropic/claude, rpm: many}\n").unwrap();
    let e = load_file(
        &dir.path().join("config.yaml"),
        &lookup(&[]),
        &LoadOptions::default(),
    )
    .unwrap_err();
    insta::assert_snapshot!(
        "include_error_in_included_file",
        e.to_string().replace(&tmp, "[TMP]")
    );
}

#[test]
fn missing_include_is_an_error_at_the_include_entry() {
    let e = load_err("include:\n  - models.yaml\n  - non-existent-file.yaml\nlitellm_settings:\n  callbacks: [\"prometheus\"]\n", &[]);
    insta::assert_snapshot!("missing_include", e.to_string());
    let e = load_err("include: models.yaml\n", &[]);
    insta::assert_snapshot!("include_not_a_list", e.to_string());
}

#[test]
fn unreadable_config_file_is_reported() {
    let e = load_file(
        Path::new("/definitely/not/here/config.yaml"),
        &lookup(&[]),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert!(
        e.errors[0].message.starts_with("cannot read config file:"),
        "{e}"
    );
}

#[test]
fn duplicate_keys_warn_and_the_last_value_wins() {
    let loaded = load_ok(
        "router_settings:\n  num_retries: 1\n  num_retries: 2\n",
        &[],
    );
    assert_eq!(loaded.config.router_settings.num_retries, Some(2));
    insta::assert_snapshot!("duplicate_key", render(&loaded.warnings));
}

// ---- the LiteLLM corpus and the shipped scenarios --------------------------------------

fn corpus_dir() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The main checkout sits next to `shared/`; a worktree under `wt/<name>/` one level deeper.
    [
        "../../shared/corpus/litellm-configs",
        "../../../shared/corpus/litellm-configs",
    ]
    .iter()
    .map(|rel| manifest.join(rel))
    .find(|p| p.is_dir())
}

/// Corpus files Switchyard must refuse, and why. Everything else must load.
/// (index.md: `*-INVALID.yaml`, `hosted_litellm.yaml`, the all-settings block and
/// `docs-routing__03` are not YAML; the rest are semantic.)
const CORPUS_INVALID: &[(&str, &str)] = &[
    (
        "docs-config_settings__all-settings.yaml",
        "not YAML: `key=[...]` lines in router_settings",
    ),
    (
        "docs-routing__03-retry-policy-allowed-fails-policy.yaml",
        "not YAML: tabs inside a flow mapping (PyYAML agrees)",
    ),
    (
        "hosted_litellm.yaml",
        "not YAML: unterminated quoted scalar",
    ),
    (
        "config_with_missing_include.yaml",
        "includes a file that does not exist",
    ),
    (
        "china_domestic_free_sources.yaml",
        "fallback ring (a -> b -> a) and providers LiteLLM does not know",
    ),
    (
        "load_balancer.yaml",
        "`mistralai/` is not a provider prefix (LiteLLM's proxy skips such deployments)",
    ),
];

#[test]
fn corpus_configs_load_or_fail_with_located_errors() {
    let Some(dir) = corpus_dir() else {
        eprintln!("skipped: LiteLLM corpus not found next to the repository (../../shared/corpus/litellm-configs)");
        return;
    };
    // Every os.environ/ reference resolves, as it would on a configured host (where a port
    // is a number).
    let env = |name: &str| {
        Some(if name.ends_with("_PORT") {
            "6379".to_owned()
        } else {
            format!("test-value-for-{name}")
        })
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 50,
        "corpus looks incomplete: {} files",
        files.len()
    );
    let (mut loaded, mut with_warnings, mut warnings, mut failed) = (0, 0, 0, 0);
    let mut problems = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expect_invalid =
            name.contains("INVALID") || CORPUS_INVALID.iter().any(|(f, _)| *f == name);
        match load_file(path, &env, &LoadOptions::default()) {
            Ok(l) if !expect_invalid => {
                loaded += 1;
                if std::env::var_os("CORPUS_VERBOSE").is_some() {
                    eprintln!("== {name}\n{}", render(&l.warnings));
                }
                if !l.warnings.is_empty() {
                    with_warnings += 1;
                    warnings += l.warnings.len();
                }
            }
            Ok(_) => problems.push(format!("{name}: loaded, but should have been refused")),
            Err(e) if expect_invalid => {
                failed += 1;
                let located = e.errors.iter().any(|d| d.line.is_some() && d.file == *path);
                if !located {
                    problems.push(format!("{name}: refused without a located error:\n{e}"));
                }
                assert!(e.errors.iter().all(|d| d.severity == Severity::Error));
            }
            Err(e) => problems.push(format!("{name}: should load:\n{e}")),
        }
    }
    eprintln!(
        "corpus: {} files; {loaded} load ({with_warnings} with warnings, {warnings} warnings in all); {failed} refused as expected",
        files.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn corpus_errors_read_well() {
    let Some(dir) = corpus_dir() else {
        eprintln!("skipped: LiteLLM corpus not found");
        return;
    };
    let env = |name: &str| Some(format!("test-value-for-{name}"));
    let mut out = String::new();
    for name in [
        "hosted_litellm.yaml",
        "docs-reliability__05-context-window-different-groups-INVALID.yaml",
        "config_with_missing_include.yaml",
        "china_domestic_free_sources.yaml",
    ] {
        let e = load_file(&dir.join(name), &env, &LoadOptions::default()).unwrap_err();
        let text = render(&e.errors).replace(&dir.display().to_string(), "[CORPUS]");
        out.push_str(&format!("== {name}\n{text}\n"));
    }
    insta::assert_snapshot!("corpus_errors", out);
}

#[test]
fn scenario_gateway_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut count = 0;
    let env = |name: &str| Some(format!("http://127.0.0.1:1/{name}"));
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.lines().any(|l| l.starts_with("model_list:")) {
            continue; // a drill scenario, not a gateway config
        }
        match load_file(&path, &env, &LoadOptions { strict: true }) {
            Ok(_) => count += 1,
            Err(e) => panic!("{} does not load strictly:\n{e}", path.display()),
        }
    }
    assert!(count >= 1, "no gateway config found under scenarios/");
}

#[test]
fn scenario_gateway_yaml_has_the_documented_shape() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/gateway.yaml");
    let env = |name: &str| Some(format!("http://127.0.0.1:1/{name}"));
    let c = load_file(&path, &env, &LoadOptions { strict: true })
        .unwrap()
        .config;
    let ids: Vec<(&str, &str, ProviderKind)> = c
        .model_list
        .iter()
        .map(|d| (d.model_name.as_str(), d.id.as_str(), d.provider))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("gpt-4o", "gpt-4o-east", ProviderKind::OpenAi),
            ("gpt-4o", "gpt-4o-west", ProviderKind::Azure),
            ("claude-sonnet", "claude-west", ProviderKind::Anthropic),
        ]
    );
    let fallbacks = c.router_settings.fallbacks.unwrap();
    assert_eq!(
        (fallbacks[0].group.as_str(), fallbacks[0].targets.as_slice()),
        ("gpt-4o", &["claude-sonnet".to_owned()][..])
    );
    assert_eq!(
        c.model_list[0].api_base.as_deref(),
        Some("http://127.0.0.1:1/MOCK_OPENAI_BASE")
    );
}

/// A password in `api_base` is a warning naming the key path, never the password: switchyard
/// does not send URL credentials (LiteLLM's HTTP client would, as Basic auth). From the
/// environment too.
#[test]
fn a_password_in_api_base_is_a_warning_without_the_password() {
    let yaml = r#"
model_list:
  - {model_name: a, litellm_params: {model: openai/m, api_base: "http://svc:pw-in-file-99@vllm:8000/v1"}}
  - {model_name: b, litellm_params: {model: openai/m, api_base: os.environ/B_BASE}}
  - {model_name: c, litellm_params: {model: openai/m, api_base: "http://svc@vllm:8000/v1"}}
"#;
    let loaded = load_ok(yaml, &[("B_BASE", "http://:pw-in-env-42@vllm:8001/v1")]);
    let text = render(&loaded.warnings);
    assert_eq!(loaded.warnings.len(), 2, "{text}");
    assert!(
        text.contains("model_list[0].litellm_params.api_base")
            && text.contains("model_list[1].litellm_params.api_base")
            && text.contains("does not send"),
        "{text}"
    );
    assert!(
        !text.contains("pw-in-file-99") && !text.contains("pw-in-env-42"),
        "{text}"
    );
}

/// LiteLLM's spend-log retention settings: durations as LiteLLM writes them, the interval a day
/// unless set; a bad duration is a located error naming the key, and an interval without a
/// period (which would delete nothing) is an error too.
#[test]
fn spend_log_retention_takes_litellm_durations() {
    let day = Duration::from_secs(86_400);
    let retention = |yaml: &str| {
        load_ok(yaml, &[])
            .config
            .general_settings
            .spend_logs_retention
    };
    let r = retention("general_settings:\n  maximum_spend_logs_retention_period: 7d\n").unwrap();
    assert_eq!((r.period, r.every), (7 * day, day));
    let r = retention(
        "general_settings:\n  maximum_spend_logs_retention_period: 24h\n  maximum_spend_logs_retention_interval: 3600s\n",
    )
    .unwrap();
    assert_eq!((r.period, r.every), (day, Duration::from_secs(3600)));
    assert_eq!(retention("general_settings: {}\n"), None);

    let e = load_err(
        "general_settings:\n  maximum_spend_logs_retention_period: 7 days\n",
        &[],
    )
    .to_string();
    assert!(
        e.contains("config.yaml:2:")
            && e.contains("general_settings.maximum_spend_logs_retention_period")
            && e.contains("`7 days` is not a duration")
            && e.contains("24h, 7d"),
        "{e}"
    );
    let e = load_err(
        "general_settings:\n  maximum_spend_logs_retention_interval: 1d\n",
        &[],
    )
    .to_string();
    assert!(
        e.contains("maximum_spend_logs_retention_interval") && e.contains("deletes nothing"),
        "{e}"
    );
}
