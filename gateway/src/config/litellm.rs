//! What LiteLLM knows, so Switchyard can tell "LiteLLM has this, we do not implement it" (a
//! warning) from "nobody has this" (an error, with a did-you-mean): the keys of each config
//! section, the provider prefixes, and how a prefix-less model names its provider.
//!
//! Sources (BerriAI/litellm, read 2026): `docs/my-website/docs/proxy/config_settings.md` (the
//! "all settings" block and the general_settings / litellm_settings / router_settings tables),
//! `litellm/router.py` `Router.__init__` parameters, `litellm/types/router.py`
//! (`GenericLiteLLMParams`, `CredentialLiteLLMParams`, `LiteLLMParamsTypedDict`, `ModelInfo`,
//! `RetryPolicy`, `AllowedFailsPolicy`), the module attributes of `litellm/__init__.py` (every
//! `litellm_settings` key is `setattr(litellm, key, value)`), `litellm/types/utils.py`
//! (`LlmProviders`), `litellm/constants.py` (`openai_compatible_providers`,
//! `openai_compatible_endpoints`), `litellm/litellm_core_utils/get_llm_provider_logic.py` (default
//! `api_base` per OpenAI-compatible provider, bare-model inference),
//! `litellm/llms/openai_like/providers.json`, and keys used by LiteLLM's own example configs.

use super::ProviderKind;

/// Top-level sections LiteLLM reads that Switchyard does not.
pub(crate) const TOP_LEVEL_LITELLM: &[&str] = &[
    "assistant_settings",
    "callback_settings",
    "credential_list",
    "files_settings",
    "finetune_settings",
    "guardrails",
    "mcp_servers",
    "policies",
    "policy_attachments",
    "prompts",
    "sandbox_tools",
    "search_tools",
    "vector_store_registry",
];

/// `Router.__init__` parameters and documented `router_settings` keys Switchyard does not implement.
pub(crate) const ROUTER_LITELLM: &[&str] = &[
    "alerting_config",
    "assistants_config",
    "cache_kwargs",
    "cache_params",
    "cache_responses",
    "caching_groups",
    "client_ttl",
    "debug_level",
    "default_litellm_params",
    "default_max_parallel_requests",
    "default_priority",
    "deployment_affinity_ttl_seconds",
    "enable_pre_call_check",
    "enable_pre_call_checks",
    "enable_tag_filtering",
    "guardrail_list",
    "ignore_invalid_deployments",
    "max_retries",
    "model_group_affinity_config",
    "model_group_retry_policy",
    "optional_pre_call_checks",
    "polling_interval",
    "provider_budget_config",
    "retry_after",
    "router_general_settings",
    "routing_groups",
    "routing_strategy_args",
    "search_tools",
    "set_verbose",
    "tag_filtering_match_any",
    "tag_routing_prefix",
];

/// What ignoring a LiteLLM key means, where the bare "not implemented" would let a user
/// assume otherwise.
pub(crate) fn not_implemented_note(key: &str) -> Option<&'static str> {
    match key {
        "cache" | "cache_params" => Some(
            "switchyard does not cache responses; the Redis it uses is `router_settings.redis_*`, \
             for cooldowns and rpm/tpm counts shared between gateway instances",
        ),
        _ => None,
    }
}

/// Every key `router_settings` may hold in LiteLLM, implemented or not; used to point out router
/// settings written under `litellm_settings`, where LiteLLM silently ignores most of them.
pub(crate) const ROUTER_ALL: &[&str] = &[
    "allowed_fails",
    "allowed_fails_policy",
    "content_policy_fallbacks",
    "context_window_fallbacks",
    "cooldown_time",
    "default_fallbacks",
    "disable_cooldowns",
    "fallbacks",
    "max_fallbacks",
    "model_group_alias",
    "num_retries",
    "redis_host",
    "redis_password",
    "redis_port",
    "redis_url",
    "retry_policy",
    "routing_strategy",
    "stream_timeout",
    "timeout",
];

/// `litellm_settings` keys LiteLLM knows that Switchyard does not implement: the module
/// attributes of `litellm/__init__.py`, the documented table, and keys the proxy handles itself.
pub(crate) const LITELLM_SETTINGS_LITELLM: &[&str] = &[
    "add_function_to_prompt",
    "add_user_information_to_llm_headers",
    "aiohttp_trust_env",
    "aleph_alpha_key",
    "allow_dynamic_callback_disabling",
    "amazon_nova_api_key",
    "anthropic_beta_headers_url",
    "anthropic_key",
    "anthropic_prompt_caching_ttl",
    "api_base",
    "api_key",
    "api_version",
    "argilla_batch_size",
    "argilla_transformation_object",
    "audit_log_callbacks",
    "aws_sqs_callback_params",
    "azure_key",
    "banned_keywords_list",
    "baseten_key",
    "blocked_user_list",
    "blog_posts_url",
    "budget_duration",
    "budget_exceeded_throttle_percentage",
    "bytez_key",
    "cache",
    "cache_params",
    "caching",
    "caching_with_models",
    "callback_settings",
    "callbacks",
    "check_provider_endpoint",
    "clarifai_key",
    "cloudflare_api_key",
    "code_interpreter_interception_params",
    "cohere_key",
    "cold_storage_custom_logger",
    "cometapi_key",
    "common_cloud_provider_auth_params",
    "config_path",
    "cost_discount_config",
    "cost_margin_config",
    "credential_list",
    "custom_prometheus_metadata_labels",
    "custom_prometheus_tags",
    "custom_prompt_dict",
    "databricks_key",
    "datadog_llm_observability_params",
    "datadog_params",
    "datadog_use_v1",
    "datarobot_key",
    "default_in_memory_ttl",
    "default_internal_user_params",
    "default_key_generate_params",
    "default_key_max_budget_alert_emails",
    "default_max_internal_user_budget",
    "default_redis_batch_cache_expiry",
    "default_redis_ttl",
    "default_soft_budget",
    "default_team_params",
    "default_team_settings",
    "disable_add_prefix_to_prompt",
    "disable_add_transform_inline_image_block",
    "disable_add_user_agent_to_request_tags",
    "disable_aiohttp_transport",
    "disable_aiohttp_trust_env",
    "disable_anthropic_gemini_context_caching_transform",
    "disable_copilot_system_to_assistant",
    "disable_end_user_cost_tracking",
    "disable_end_user_cost_tracking_prometheus_only",
    "disable_hf_tokenizer_download",
    "disable_stop_sequence_limit",
    "disable_streaming_logging",
    "disable_token_counter",
    "disable_vertex_batch_output_transformation",
    "drop_params",
    "dynamodb_table_name",
    "email",
    "enable_anthropic_prompt_caching",
    "enable_azure_ad_token_refresh",
    "enable_caching_on_provider_specific_optional_params",
    "enable_end_user_cost_tracking_prometheus_only",
    "enable_gemini_default_thinking_level_low",
    "enable_json_schema_validation",
    "enable_key_alias_format_validation",
    "enable_loadbalancing_on_batch_endpoints",
    "enable_model_config_credential_overrides",
    "enable_preview_features",
    "enable_redis_auth_cache",
    "expose_router_debug_in_errors",
    "extra_spend_tag_headers",
    "failure_callback",
    "filter_invalid_headers",
    "force_ipv4",
    "forward_traceparent_to_llm_provider",
    "gcs_pub_sub_use_v1",
    "gdc_api_base",
    "gdc_key",
    "gemini_live_defer_setup",
    "generic_api_use_v1",
    "generic_logger_headers",
    "gigachat_key",
    "google_moderation_confidence_threshold",
    "gradient_ai_api_key",
    "groq_key",
    "guardrail_name_config_map",
    "guardrails",
    "headers",
    "heroku_key",
    "huggingface_key",
    "inception_key",
    "include_cost_in_streaming_usage",
    "infinity_key",
    "input_callback",
    "internal_user_budget_duration",
    "json_logs",
    "key_generation_settings",
    "langfuse_default_tags",
    "langsmith_batch_size",
    "lemonade_key",
    "llama_api_key",
    "llamaguard_model_name",
    "llamaguard_unsafe_content_categories",
    "llm_guard_mode",
    "log_raw_request_response",
    "logged_real_time_event_types",
    "logging",
    "maritalk_key",
    "max_budget",
    "max_end_user_budget",
    "max_end_user_budget_id",
    "max_internal_user_budget",
    "max_tokens",
    "max_ui_session_budget",
    "max_user_budget",
    "mcp_aliases",
    "model_alias_map",
    "model_cost_map_url",
    "model_fallbacks",
    "model_group_settings",
    "modify_params",
    "nebius_key",
    "network_mock",
    "newrelic_params",
    "nlp_cloud_key",
    "novita_api_key",
    "num_retries_per_request",
    "ollama_key",
    "openai_key",
    "openai_like_key",
    "openai_moderations_model_name",
    "openrouter_key",
    "organization",
    "output_parse_pii",
    "overwrite_user_with_key_hash",
    "ovhcloud_key",
    "post_call_rules",
    "pre_call_rules",
    "predibase_key",
    "predibase_tenant_id",
    "presidio_ad_hoc_recognizers",
    "priority_reservation",
    "priority_reservation_settings",
    "project",
    "prometheus_emit_rate_limit_labels",
    "prometheus_emit_stream_label",
    "prometheus_end_user_metrics_cleanup_interval_seconds",
    "prometheus_end_user_metrics_max_series_per_metric",
    "prometheus_end_user_metrics_ttl_seconds",
    "prometheus_initialize_budget_metrics",
    "prometheus_latency_buckets",
    "prometheus_metrics_config",
    "prometheus_user_budget_label_include_email_alias",
    "prompt_name_config_map",
    "provider_url_destination_allowed_hosts",
    "proxy_auth",
    "public_agent_groups",
    "public_mcp_hub_strict_whitelist",
    "public_mcp_servers",
    "public_model_groups",
    "public_model_groups_links",
    "reasoning_auto_summary",
    "redact_messages_in_exceptions",
    "redact_user_api_key_info",
    "replicate_key",
    "require_auth_for_metrics_endpoint",
    "require_managed_files",
    "retry",
    "return_response_headers",
    "route_all_chat_openai_to_responses",
    "s3_audit_callback_params",
    "s3_callback_params",
    "safe_memory_mode",
    "sap_service_key",
    "service_callback",
    "service_callbacks",
    "set_verbose",
    "skip_system_message_in_guardrail",
    "skip_tool_message_in_guardrail",
    "snowflake_key",
    "ssl_certificate",
    "ssl_ecdh_curve",
    "ssl_security_level",
    "ssl_verify",
    "standard_logging_payload_excluded_fields",
    "store_audit_logs",
    "strip_anthropic_total_tokens",
    "success_callback",
    "suppress_debug_info",
    "tag_budget_config",
    "telemetry",
    "togetherai_api_key",
    "token",
    "turn_off_message_logging",
    "upperbound_key_generate_params",
    "use_aiohttp_transport",
    "use_chat_completions_url_for_anthropic_messages",
    "use_client",
    "use_legacy_interactions_schema",
    "use_litellm_proxy",
    "user_url_allowed_hosts",
    "user_url_validation",
    "validate_end_user_id_in_db",
    "vercel_ai_gateway_key",
    "vertex_ai_safety_settings",
    "vertex_location",
    "vertex_project",
    "wandb_key",
    "xai_key",
];

/// `general_settings` keys LiteLLM documents that Switchyard does not implement.
pub(crate) const GENERAL_LITELLM: &[&str] = &[
    "admin_only_routes",
    "alert_to_webhook_url",
    "alert_types",
    "alerting",
    "alerting_args",
    "alerting_threshold",
    "allow_client_side_credentials",
    "allow_requests_on_db_unavailable",
    "allow_user_auth",
    "allowed_ips",
    "allowed_routes",
    "background_health_checks",
    "completion_model",
    "custom_auth",
    "custom_key_generate",
    "custom_sso",
    "database_connection_pool_limit",
    "database_connection_timeout",
    "default_team_disabled",
    "disable_adding_master_key_hash_to_db",
    "disable_master_key_return",
    "disable_prisma_schema_update",
    "disable_reset_budget",
    "disable_responses_id_security",
    "disable_retry_on_max_parallel_request_limit_error",
    "disable_spend_logs",
    "disable_spend_updates",
    "embedding_model",
    "enable_jwt_auth",
    "enable_oauth2_auth",
    "enable_oauth2_proxy_auth",
    "enforce_user_param",
    "enforced_params",
    "forward_client_headers_to_llm_api",
    "forward_openai_org_id",
    "global_max_parallel_requests",
    "health_check_details",
    "health_check_interval",
    "image_generation_model",
    "infer_model_from_keys",
    "key_management_settings",
    "key_management_system",
    "litellm_jwtauth",
    "litellm_key_header_name",
    "litellm_license",
    "max_parallel_requests",
    "max_response_size_mb",
    "moderation_model",
    "oauth2_config_mappings",
    "pass_through_endpoints",
    "proxy_batch_polling_interval",
    "proxy_batch_write_at",
    "proxy_budget_rescheduler_max_time",
    "proxy_budget_rescheduler_min_time",
    "public_routes",
    "reject_clientside_metadata_tags",
    "service_account_settings",
    "spend_report_frequency",
    "store_model_in_db",
    "store_prompts_in_spend_logs",
    "supported_db_objects",
    "ui_access_mode",
    "use_azure_key_vault",
    "use_client_credentials_pass_through_routes",
    "use_google_kms",
    "user_api_key_cache_ttl",
    "user_mcp_management_mode",
];

/// `litellm_params` LiteLLM defines (`GenericLiteLLMParams` and friends, plus the OpenAI request
/// parameters it forwards as per-deployment defaults) that Switchyard does not implement. Any
/// other key is forwarded to the provider by LiteLLM, so unknown keys here are warnings too.
pub(crate) const PARAMS_LITELLM: &[&str] = &[
    "adaptive_router_config",
    "adaptive_router_default_model",
    "additional_drop_params",
    "allow_client_keepalive_override",
    "allowed_openai_params",
    "auto_router_config",
    "auto_router_config_path",
    "auto_router_default_model",
    "auto_router_embedding_model",
    "auto_router_max_input_chars",
    "aws_access_key_id",
    "aws_batch_role_arn",
    "aws_bedrock_project_id",
    "aws_bedrock_runtime_endpoint",
    "aws_external_id",
    "aws_profile_name",
    "aws_region_name",
    "aws_role_name",
    "aws_secret_access_key",
    "aws_session_name",
    "aws_session_token",
    "aws_sts_endpoint",
    "aws_web_identity_token",
    "azure_ad_token",
    "base_model",
    "base_url",
    "bedrock_tags",
    "budget_duration",
    "complexity_router_config",
    "complexity_router_default_model",
    "configurable_clientside_auth_params",
    "default_api_key_rpm_limit",
    "default_api_key_tpm_limit",
    "default_headers",
    "deployment_id",
    "drop_params",
    "embedding_model",
    "extra_body",
    "extra_headers",
    "frequency_penalty",
    "gcs_bucket_name",
    "index_name",
    "input_cost_per_second",
    "itpm",
    "keepalive_seconds",
    "litellm_credential_name",
    "litellm_trace_id",
    "logit_bias",
    "logprobs",
    "max_budget",
    "max_completion_tokens",
    "max_file_size_mb",
    "max_retries",
    "max_tokens",
    "merge_reasoning_content_in_choices",
    "milvus_db_name",
    "milvus_partition_names",
    "milvus_text_field",
    "mock_response",
    "mock_timeout",
    "model_info",
    "n",
    "num_retries",
    "organization",
    "otpm",
    "output_cost_per_second",
    "parallel_tool_calls",
    "presence_penalty",
    "quality_router_config",
    "quality_router_default_model",
    "reasoning_effort",
    "response_format",
    "s3_bucket_name",
    "s3_encryption_key_id",
    "s3_output_bucket_name",
    "s3_region_name",
    "seed",
    "stop",
    "stream",
    "tag_regex",
    "tags",
    "temperature",
    "thinking",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "use_chat_completions_api",
    "use_in_pass_through",
    "use_litellm_proxy",
    "use_xai_oauth",
    "user",
    "valkey_embedding_field",
    "valkey_host",
    "valkey_password",
    "valkey_port",
    "valkey_ssl",
    "valkey_text_field",
    "vector_bucket_name",
    "vector_store_id",
    "vertex_credentials",
    "vertex_location",
    "vertex_project",
    "watsonx_region_name",
];

/// `model_info` keys LiteLLM defines (`ModelInfo`, the pricing fields it mirrors, and the
/// model-map fields) that Switchyard does not implement. `model_info` allows extra keys in
/// LiteLLM, so unknown keys here are warnings.
pub(crate) const MODEL_INFO_LITELLM: &[&str] = &[
    "access_via_team_ids",
    "allow_fail_open",
    "base_model",
    "blocked",
    "cost_per_ptu_per_hour",
    "created_at",
    "created_by",
    "db_model",
    "description",
    "direct_access",
    "enable_tag_filtering",
    "health_check_model",
    "health_check_timeout",
    "input_cost_per_second",
    "litellm_provider",
    "max_tokens",
    "metadata",
    "output_cost_per_second",
    "ptu_count",
    "ptu_effective_from",
    "ptu_effective_to",
    "team_id",
    "team_public_model_name",
    "tier",
    "updated_at",
    "updated_by",
];

/// `RetryPolicy` / `AllowedFailsPolicy` names LiteLLM has beyond the classes Switchyard counts.
pub(crate) const ALLOWED_FAILS_POLICY_LITELLM: &[&str] = &[
    "BadGatewayErrorAllowedFails",
    "NotFoundErrorAllowedFails",
    "ServiceUnavailableErrorAllowedFails",
];

/// LiteLLM routing strategies Switchyard does not implement.
pub(crate) const ROUTING_STRATEGIES_LITELLM: &[&str] = &["cost-based-routing"];

/// How Switchyard serves a provider prefix that speaks a dialect it implements.
#[derive(Debug)]
pub(crate) struct Served {
    pub kind: ProviderKind,
    /// LiteLLM's documented default `api_base`; `None` = the dialect's own default (OpenAI,
    /// Anthropic) or, with `needs_base`, none at all.
    pub default_base: Option<&'static str>,
    /// The deployment is unusable without an `api_base` (Azure, self-hosted servers).
    pub needs_base: bool,
    /// Variables LiteLLM reads when `api_key` is not given, in LiteLLM's order.
    pub key_env: &'static [&'static str],
    /// Variables LiteLLM reads when `api_base` is not given.
    pub base_env: &'static [&'static str],
}

const fn openai_compatible(
    base: &'static str,
    key_env: &'static [&'static str],
    base_env: &'static [&'static str],
) -> Served {
    Served {
        kind: ProviderKind::OpenAi,
        default_base: Some(base),
        needs_base: false,
        key_env,
        base_env,
    }
}

const fn self_hosted(
    key_env: &'static [&'static str],
    base_env: &'static [&'static str],
) -> Served {
    Served {
        kind: ProviderKind::OpenAi,
        default_base: None,
        needs_base: true,
        key_env,
        base_env,
    }
}

const OPENAI: Served = Served {
    kind: ProviderKind::OpenAi,
    default_base: None,
    needs_base: false,
    key_env: &["OPENAI_API_KEY"],
    base_env: &["OPENAI_BASE_URL", "OPENAI_API_BASE"],
};

/// Provider prefixes Switchyard serves. The OpenAI-compatible ones map to `ProviderKind::OpenAi`
/// with the default `api_base` LiteLLM uses for them.
pub(crate) const SERVED: &[(&str, Served)] = &[
    ("openai", OPENAI),
    (
        "azure",
        Served {
            kind: ProviderKind::Azure,
            default_base: None,
            needs_base: true,
            key_env: &["AZURE_API_KEY", "AZURE_OPENAI_API_KEY"],
            base_env: &["AZURE_API_BASE"],
        },
    ),
    (
        "anthropic",
        Served {
            kind: ProviderKind::Anthropic,
            default_base: None,
            needs_base: false,
            key_env: &["ANTHROPIC_API_KEY"],
            base_env: &["ANTHROPIC_API_BASE"],
        },
    ),
    (
        "groq",
        openai_compatible(
            "https://api.groq.com/openai/v1",
            &["GROQ_API_KEY"],
            &["GROQ_API_BASE"],
        ),
    ),
    (
        "together_ai",
        openai_compatible(
            "https://api.together.xyz/v1",
            &[
                "TOGETHER_API_KEY",
                "TOGETHER_AI_API_KEY",
                "TOGETHERAI_API_KEY",
                "TOGETHER_AI_TOKEN",
            ],
            &["TOGETHER_AI_API_BASE"],
        ),
    ),
    (
        "mistral",
        openai_compatible("https://api.mistral.ai/v1", &["MISTRAL_API_KEY"], &[]),
    ),
    (
        "deepseek",
        openai_compatible(
            "https://api.deepseek.com/beta",
            &["DEEPSEEK_API_KEY"],
            &["DEEPSEEK_API_BASE"],
        ),
    ),
    (
        "openrouter",
        openai_compatible("https://openrouter.ai/api/v1", &["OPENROUTER_API_KEY"], &[]),
    ),
    (
        "fireworks_ai",
        openai_compatible(
            "https://api.fireworks.ai/inference/v1",
            &[
                "FIREWORKS_API_KEY",
                "FIREWORKS_AI_API_KEY",
                "FIREWORKSAI_API_KEY",
            ],
            &["FIREWORKS_API_BASE"],
        ),
    ),
    (
        "xai",
        openai_compatible("https://api.x.ai/v1", &["XAI_API_KEY"], &["XAI_API_BASE"]),
    ),
    (
        "perplexity",
        openai_compatible("https://api.perplexity.ai", &["PERPLEXITYAI_API_KEY"], &[]),
    ),
    (
        "deepinfra",
        openai_compatible(
            "https://api.deepinfra.com/v1/openai",
            &["DEEPINFRA_API_KEY"],
            &[],
        ),
    ),
    (
        "cerebras",
        openai_compatible(
            "https://api.cerebras.ai/v1",
            &["CEREBRAS_API_KEY"],
            &["CEREBRAS_API_BASE"],
        ),
    ),
    (
        "nvidia_nim",
        openai_compatible(
            "https://integrate.api.nvidia.com/v1",
            &["NVIDIA_NIM_API_KEY"],
            &["NVIDIA_NIM_API_BASE"],
        ),
    ),
    (
        "sambanova",
        openai_compatible(
            "https://api.sambanova.ai/v1",
            &["SAMBANOVA_API_KEY"],
            &["SAMBANOVA_API_BASE"],
        ),
    ),
    ("hosted_vllm", self_hosted(&[], &[])),
    ("lm_studio", self_hosted(&[], &[])),
    (
        "litellm_proxy",
        self_hosted(&["LITELLM_PROXY_API_KEY"], &["LITELLM_PROXY_API_BASE"]),
    ),
    ("custom_openai", self_hosted(&[], &[])),
    ("text-completion-openai", OPENAI),
    ("aiohttp_openai", OPENAI),
    // The rest, as LiteLLM lists them (litellm/constants.py, llms/openai_like/providers.json).
    (
        "ai21_chat",
        openai_compatible(
            "https://api.ai21.com/studio/v1",
            &["AI21_API_KEY"],
            &["AI21_API_BASE"],
        ),
    ),
    (
        "anyscale",
        openai_compatible(
            "https://api.endpoints.anyscale.com/v1",
            &["ANYSCALE_API_KEY"],
            &["ANYSCALE_API_BASE"],
        ),
    ),
    (
        "codestral",
        openai_compatible(
            "https://codestral.mistral.ai/v1",
            &["CODESTRAL_API_KEY"],
            &["CODESTRAL_API_BASE"],
        ),
    ),
    (
        "empower",
        openai_compatible(
            "https://app.empower.dev/api/v1",
            &["EMPOWER_API_KEY"],
            &["EMPOWER_API_BASE"],
        ),
    ),
    (
        "featherless_ai",
        openai_compatible(
            "https://api.featherless.ai/v1",
            &["FEATHERLESS_AI_API_KEY"],
            &[],
        ),
    ),
    (
        "friendliai",
        openai_compatible(
            "https://api.friendli.ai/serverless/v1",
            &["FRIENDLIAI_API_KEY", "FRIENDLI_TOKEN"],
            &["FRIENDLI_API_BASE"],
        ),
    ),
    (
        "galadriel",
        openai_compatible(
            "https://api.galadriel.com/v1",
            &["GALADRIEL_API_KEY"],
            &["GALADRIEL_API_BASE"],
        ),
    ),
    (
        "github",
        openai_compatible(
            "https://models.inference.ai.azure.com",
            &["GITHUB_API_KEY"],
            &["GITHUB_API_BASE"],
        ),
    ),
    (
        "meta_llama",
        openai_compatible(
            "https://api.llama.com/compat/v1",
            &["LLAMA_API_KEY"],
            &["LLAMA_API_BASE"],
        ),
    ),
    (
        "nebius",
        openai_compatible("https://api.studio.nebius.ai/v1", &[], &[]),
    ),
    (
        "nscale",
        openai_compatible("https://inference.api.nscale.com/v1", &[], &[]),
    ),
    (
        "volcengine",
        openai_compatible(
            "https://ark.cn-beijing.volces.com/api/v3",
            &["VOLCENGINE_API_KEY"],
            &["VOLCENGINE_API_BASE"],
        ),
    ),
    (
        "abliteration",
        openai_compatible(
            "https://api.abliteration.ai/v1",
            &["ABLITERATION_API_KEY"],
            &[],
        ),
    ),
    (
        "aihubmix",
        openai_compatible(
            "https://aihubmix.com/v1",
            &["AIHUBMIX_API_KEY"],
            &["AIHUBMIX_API_BASE"],
        ),
    ),
    (
        "apertis",
        openai_compatible("https://api.stima.tech/v1", &["STIMA_API_KEY"], &[]),
    ),
    (
        "chutes",
        openai_compatible("https://llm.chutes.ai/v1/", &["CHUTES_API_KEY"], &[]),
    ),
    (
        "gmi",
        openai_compatible("https://api.gmi-serving.com/v1", &["GMI_API_KEY"], &[]),
    ),
    (
        "helicone",
        openai_compatible(
            "https://ai-gateway.helicone.ai/",
            &["HELICONE_API_KEY"],
            &[],
        ),
    ),
    (
        "llamagate",
        openai_compatible("https://api.llamagate.dev/v1", &["LLAMAGATE_API_KEY"], &[]),
    ),
    (
        "nano-gpt",
        openai_compatible("https://nano-gpt.com/api/v1", &["NANOGPT_API_KEY"], &[]),
    ),
    (
        "poe",
        openai_compatible("https://api.poe.com/v1", &["POE_API_KEY"], &[]),
    ),
    (
        "scaleway",
        openai_compatible("https://api.scaleway.ai/v1", &["SCW_SECRET_KEY"], &[]),
    ),
    (
        "synthetic",
        openai_compatible(
            "https://api.synthetic.new/openai/v1",
            &["SYNTHETIC_API_KEY"],
            &[],
        ),
    ),
    (
        "veniceai",
        openai_compatible("https://api.venice.ai/api/v1", &["VENICE_AI_API_KEY"], &[]),
    ),
    (
        "xiaomi_mimo",
        openai_compatible(
            "https://api.xiaomimimo.com/v1",
            &["XIAOMI_MIMO_API_KEY"],
            &[],
        ),
    ),
    ("llamafile", self_hosted(&[], &[])),
    ("openai_like", self_hosted(&[], &[])),
    ("xinference", self_hosted(&[], &[])),
];

/// LiteLLM providers Switchyard does not serve (their own wire formats or auth schemes, or an
/// OpenAI-compatible default base we could not confirm).
pub(crate) const NOT_SERVED: &[&str] = &[
    "ai21",
    "aiml",
    "aleph_alpha",
    "amazon_nova",
    "assemblyai",
    "auto_router",
    "aws_polly",
    "azure_ai",
    "azure_anthropic",
    "azure_text",
    "baseten",
    "bedrock",
    "bedrock_mantle",
    "black_forest_labs",
    "bytez",
    "chatgpt",
    "clarifai",
    "cloudflare",
    "cohere",
    "cohere_chat",
    "cometapi",
    "compactifai",
    "custom",
    "darkbloom",
    "dashscope",
    "databricks",
    "datarobot",
    "deepgram",
    "docker_model_runner",
    "dotprompt",
    "elevenlabs",
    "fal_ai",
    "gemini",
    "gigachat",
    "github_copilot",
    "gradient_ai",
    "heroku",
    "huggingface",
    "humanloop",
    "hyperbolic",
    "inception",
    "infinity",
    "jina_ai",
    "lambda_ai",
    "langfuse",
    "lemonade",
    "maritalk",
    "milvus",
    "minimax",
    "modelscope",
    "moonshot",
    "morph",
    "nlp_cloud",
    "novita",
    "nvidia_riva",
    "oci",
    "ollama",
    "ollama_chat",
    "oobabooga",
    "ovhcloud",
    "palm",
    "petals",
    "pg_vector",
    "predibase",
    "publicai",
    "recraft",
    "reducto",
    "replicate",
    "runwayml",
    "sagemaker",
    "sagemaker_chat",
    "sap",
    "sarvam",
    "snowflake",
    "soniox",
    "stability",
    "tencent",
    "text-completion-codestral",
    "text-completion-inception",
    "topaz",
    "triton",
    "v0",
    "vercel_ai_gateway",
    "vertex_ai",
    "vertex_ai_beta",
    "vllm",
    "voyage",
    "wandb",
    "watsonx",
    "watsonx_text",
    "zai",
];

pub(crate) fn served(provider: &str) -> Option<&'static Served> {
    SERVED
        .iter()
        .find(|(name, _)| *name == provider)
        .map(|(_, s)| s)
}

pub(crate) fn is_known_provider(provider: &str) -> bool {
    served(provider).is_some() || NOT_SERVED.contains(&provider)
}

/// The provider LiteLLM infers for a model written without a prefix (`gpt-4o`, `claude-3-opus`,
/// `anthropic.claude-v2` on Bedrock), or from a well-known `api_base`.
pub(crate) fn infer_provider(model: &str, api_base: Option<&str>) -> Option<&'static str> {
    const BEDROCK: &[&str] = &[
        "anthropic.",
        "amazon.",
        "meta.",
        "cohere.",
        "ai21.",
        "mistral.",
        "deepseek.",
        "writer.",
        "twelvelabs.",
        "stability.",
        "us.",
        "eu.",
        "apac.",
        "global.",
    ];
    const VERTEX: &[&str] = &[
        "gemini-",
        "chat-bison",
        "text-bison",
        "codechat-bison",
        "code-bison",
        "code-gecko",
        "textembedding-gecko",
        "text-embedding-00",
        "text-multilingual-embedding",
        "imagen",
    ];
    const COHERE: &[&str] = &["command", "embed-english", "embed-multilingual", "rerank-"];
    const OPENAI: &[&str] = &[
        "gpt-",
        "chatgpt-",
        "o1",
        "o3",
        "o4",
        "text-embedding-",
        "dall-e-",
        "gpt-image",
        "tts-",
        "whisper-",
        "omni-moderation",
        "text-moderation",
        "davinci-",
        "babbage-",
        "ft:gpt-",
        "codex-",
        "computer-use-",
    ];
    /// `litellm.openai_compatible_endpoints`: a bare model on one of these bases.
    const ENDPOINTS: &[(&str, &str)] = &[
        ("api.perplexity.ai", "perplexity"),
        ("api.endpoints.anyscale.com/v1", "anyscale"),
        ("api.deepinfra.com/v1/openai", "deepinfra"),
        ("api.mistral.ai/v1", "mistral"),
        ("codestral.mistral.ai/v1", "codestral"),
        ("api.groq.com/openai/v1", "groq"),
        ("integrate.api.nvidia.com/v1", "nvidia_nim"),
        ("api.deepseek.com/v1", "deepseek"),
        ("api.together.xyz/v1", "together_ai"),
        ("app.empower.dev/api/v1", "empower"),
        ("api.friendli.ai/serverless/v1", "friendliai"),
        ("api.sambanova.ai/v1", "sambanova"),
        ("api.x.ai/v1", "xai"),
        ("api.llama.com/compat/v1", "meta_llama"),
        ("api.featherless.ai/v1", "featherless_ai"),
    ];
    if model == "*" {
        return Some("openai");
    }
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| model.starts_with(p));
    if starts(BEDROCK) {
        Some("bedrock")
    } else if starts(VERTEX) {
        Some("vertex_ai")
    } else if starts(OPENAI) {
        Some("openai")
    } else if model.starts_with("claude-") {
        Some("anthropic")
    } else if starts(COHERE) {
        Some("cohere")
    } else {
        let base = api_base?;
        ENDPOINTS
            .iter()
            .find(|(endpoint, _)| base.contains(endpoint))
            .map(|(_, p)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_and_not_served_do_not_overlap() {
        for (name, _) in SERVED {
            assert!(!NOT_SERVED.contains(name), "{name} is in both lists");
        }
        let mut all: Vec<&str> = SERVED
            .iter()
            .map(|(n, _)| *n)
            .chain(NOT_SERVED.iter().copied())
            .collect();
        let before = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(before, all.len(), "duplicate provider names");
    }

    #[test]
    fn bare_models_name_their_provider_like_litellm() {
        assert_eq!(infer_provider("gpt-4o", None), Some("openai"));
        assert_eq!(infer_provider("o1-preview", None), Some("openai"));
        assert_eq!(
            infer_provider("text-embedding-3-small", None),
            Some("openai")
        );
        assert_eq!(
            infer_provider("claude-3-opus-20240229", None),
            Some("anthropic")
        );
        assert_eq!(
            infer_provider("anthropic.claude-3-sonnet-20240229-v1:0", None),
            Some("bedrock")
        );
        assert_eq!(
            infer_provider("amazon.titan-embed-text-v1", None),
            Some("bedrock")
        );
        assert_eq!(infer_provider("gemini-1.5-pro", None), Some("vertex_ai"));
        assert_eq!(infer_provider("*", None), Some("openai"));
        assert_eq!(
            infer_provider("llama3-8b", Some("https://api.groq.com/openai/v1")),
            Some("groq")
        );
        assert_eq!(
            infer_provider("my-model", Some("http://localhost:8000")),
            None
        );
    }

    #[test]
    fn tables_are_sorted_and_unique() {
        for table in [
            TOP_LEVEL_LITELLM,
            ROUTER_LITELLM,
            ROUTER_ALL,
            LITELLM_SETTINGS_LITELLM,
            GENERAL_LITELLM,
            PARAMS_LITELLM,
            MODEL_INFO_LITELLM,
            NOT_SERVED,
        ] {
            assert!(
                table.windows(2).all(|w| w[0] < w[1]),
                "not sorted/unique near {:?}",
                table.first()
            );
        }
    }
}
