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

  Promote admin-managed state (keys, teams, ...) from staging to prod:
    switchyard config export --url https://staging:4000 --secrets encrypted --out state.yaml
    switchyard config import state.yaml --url https://prod:4000 --dry-run
    switchyard config diff state.yaml https://prod:4000

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
    /// Export all admin-managed state as one versioned, deterministic document.
    ///
    /// Keys (by public id, with token hash, never the key), teams, users, organizations,
    /// budgets, runtime models, credentials, access groups, tags, general and global router
    /// settings. Two exports of unchanged state are byte-identical. The master key, salt key,
    /// database URL and listen address never appear. Exit codes: 0 written, 2 error.
    #[command(after_long_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// Import a state document: validate it all, print the plan, apply it in one transaction.
    ///
    /// Objects are matched by stable identity (key public id, team_id, user_id, model id,
    /// credential name, ...). Objects the document does not name are left alone. Nothing is
    /// written unless the whole document is valid and the plan has no conflicts.
    /// Exit codes: 0 applied (or, with --dry-run, the plan applies cleanly); 1 invalid
    /// document or conflicts; 2 usage or connection error.
    #[command(after_long_help = IMPORT_EXAMPLES)]
    Import(ImportArgs),
    /// Compare two state snapshots, each a document file or a live gateway URL.
    ///
    /// Exit codes: 0 equal, 1 different, 2 error.
    #[command(after_long_help = DIFF_EXAMPLES)]
    Diff(DiffArgs),
}

const EXPORT_EXAMPLES: &str = "\
Examples:
  From a running gateway (master key from $SWITCHYARD_MASTER_KEY):
    switchyard config export --url http://127.0.0.1:4000 --out state.yaml
  From the database directly, secrets sealed with $SWITCHYARD_SALT_KEY, JSON:
    switchyard config export --database-url sqlite://switchyard.db --secrets encrypted --format json
  Only teams and keys:
    switchyard config export --url http://127.0.0.1:4000 --include teams,keys";

const IMPORT_EXAMPLES: &str = "\
Examples:
  Show what would change, change nothing (exit 0 = applies cleanly, 1 = not):
    switchyard config import state.yaml --url http://127.0.0.1:4000 --dry-run
  Apply into a database directly; check fallback targets against the target's config:
    switchyard config import state.yaml --database-url postgres://db/switchyard --config config.yaml
  Bind a redacted credential value from an environment variable:
    switchyard config import state.yaml --url http://127.0.0.1:4000 --bind-secret openai-prod/api_key=OPENAI_KEY
  Keep the target's values where the document differs:
    switchyard config import state.yaml --url http://127.0.0.1:4000 --on-conflict skip";

const DIFF_EXAMPLES: &str = "\
Examples:
  A file against a live gateway:
    switchyard config diff state.yaml http://127.0.0.1:4000
  Two files, for tools:
    switchyard config diff before.yaml after.yaml --format json";

/// Where state is read from or written to.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// A live gateway's base URL; talks to its admin API with the master key.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "database_url",
        required_unless_present = "database_url"
    )]
    pub url: Option<String>,

    /// Master key for --url (default: $SWITCHYARD_MASTER_KEY).
    #[arg(
        long,
        env = "SWITCHYARD_MASTER_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub master_key: Option<String>,

    /// Open the store directly instead of a gateway: sqlite://FILE or postgres://...
    /// Credential values need $SWITCHYARD_SALT_KEY. Gateways serving from that database pick
    /// the import up within about a second (they poll the store for changes).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// With --database-url: the target's config file, listed in exports and used to check
    /// that fallback targets exist (without it only runtime models count).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DocFormat {
    Yaml,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecretsArg {
    /// Placeholders such as <redacted:credentials/openai-prod/api_key>.
    Redacted,
    /// Values sealed with a key derived from $SWITCHYARD_SALT_KEY; importable where it matches.
    Encrypted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConflictArg {
    /// Leave the target's object as it is.
    Skip,
    /// Replace the target's object with the document's.
    Replace,
    /// Keep the target's fields the document leaves out; merge maps.
    Merge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Document format.
    #[arg(long, value_enum, default_value_t = DocFormat::Yaml)]
    pub format: DocFormat,
    /// Comma-separated sections to export (default: all): general_settings, router_settings,
    /// models, credentials, organizations, teams, users, budgets, keys, access_groups, tags.
    #[arg(long, value_name = "SECTIONS")]
    pub include: Option<String>,
    /// How credential values are written.
    #[arg(long, value_enum, default_value_t = SecretsArg::Redacted)]
    pub secrets: SecretsArg,
    /// Write to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// A name for this instance, written to source.instance.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The state document (YAML or JSON).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// What to do with objects that exist in the target with other values.
    #[arg(long, value_enum, default_value_t = ConflictArg::Replace)]
    pub on_conflict: ConflictArg,
    /// Comma-separated sections to import (default: every section in the document).
    #[arg(long, value_name = "SECTIONS")]
    pub include: Option<String>,
    /// Bind a redacted credential value: CREDENTIAL/FIELD=ENV_VAR reads the value from the
    /// environment variable ENV_VAR. Repeatable.
    #[arg(long = "bind-secret", value_name = "NAME=ENV")]
    pub bind_secret: Vec<String>,
    /// Plan output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Who the audit log records for the changes (a person, a pipeline run); sent to a gateway
    /// as the LiteLLM-Changed-By header. Default: "import".
    #[arg(long, value_name = "NAME")]
    pub changed_by: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// First snapshot: a document file or a gateway URL (http://...).
    #[arg(value_name = "A")]
    pub a: String,
    /// Second snapshot: a document file or a gateway URL (http://...).
    #[arg(value_name = "B")]
    pub b: String,
    /// Master key for URL sides (default: $SWITCHYARD_MASTER_KEY).
    #[arg(
        long,
        env = "SWITCHYARD_MASTER_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub master_key: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
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
