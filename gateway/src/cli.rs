//! Command-line surface of the `switchyard` binary (clap structs only).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  Serve a LiteLLM-compatible config on 127.0.0.1:4000:
    switchyard --config config.yaml

  The same, on all interfaces and another port, refusing unimplemented LiteLLM keys:
    switchyard serve --config config.yaml --host 0.0.0.0 --port 8080 --strict

  Check a config before deploying it (exit 0 = valid, 1 = errors):
    switchyard config validate config.yaml

Environment:
  SWITCHYARD_MASTER_KEY   master key for the proxy and admin routes (wins over general_settings.master_key)
  SWITCHYARD_CONFIG       default for --config
  RUST_LOG                log filter, e.g. `info` (default) or `switchyard=debug`";

/// OpenAI-compatible LLM gateway: model groups, load balancing, retries, cooldowns and fallbacks.
///
/// Reads a LiteLLM-compatible config.yaml (model_list, router_settings, litellm_settings,
/// general_settings, environment_variables, include) and serves /v1/chat/completions,
/// /v1/embeddings, /v1/models, /health/* and /metrics. Settings LiteLLM has but Switchyard does not
/// implement are reported as warnings (errors with --strict), never silently ignored.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, after_long_help = EXAMPLES, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(flatten)]
    pub serve: ServeArgs,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// Log output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gateway (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Work with config files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a config file: prints every error and warning; exit 0 when valid, 1 when not.
    Validate {
        /// The config file to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Treat LiteLLM settings that Switchyard does not implement as errors.
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// LiteLLM-compatible config file to serve.
    #[arg(long, short = 'c', env = "SWITCHYARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on.
    #[arg(long, default_value_t = 4000)]
    pub port: u16,

    /// Treat LiteLLM settings that Switchyard does not implement as errors.
    #[arg(long)]
    pub strict: bool,

    /// Seconds to drain in-flight requests after SIGTERM/SIGINT before exiting
    /// (default: general_settings, else 30).
    #[arg(long, value_name = "SECONDS")]
    pub grace: Option<u64>,
}
