//! The `drill` command line (clap structs only). `run` and `mocks` live here; the audit, memo
//! and signing commands (`signoff_cli`) are flattened into the same `Command` enum.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The top-level help: `run` and the sign-off commands use their exit codes differently.
pub const TOP_HELP: &str = "\
Commands and their exit codes:
  drill run       0 passed, 1 failed, 2 inconclusive, 3 aborted, 4 invalid scenario or
                  usage, 5 environment error, 6 verification failed (see `drill run --help`)
  drill mocks     serves until Ctrl-C; 4 invalid scenario or usage, 5 environment error
  drill audit     0 clean, 1 findings at or above --fail-on, 2 unreadable input
  drill keygen | sign | cosign | memo
                  0 ok, 2 usage or unreadable input, 6 the run changed since it was signed
  drill verify    0 verified, 2 unreadable input, 6 a signature, digest or re-render mismatch";

/// Resilience drill for LLM gateways: mock providers, fault phases, verified fallbacks, and a
/// signed readiness memo.
#[derive(Debug, Parser)]
#[command(name = "drill", version, about, after_long_help = TOP_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario (or a suite of them) and verify the traffic shift against the documentation.
    ///
    /// Embedded mode (default): starts the scenario's mock providers and an in-process Switchyard
    /// (SQLite in memory) whose deployments point at them, creates the scenario's teams and keys
    /// through the admin API, and runs the phases, setting each phase's faults on the mocks.
    ///
    /// External mode (`--target URL`): drives any OpenAI-compatible gateway whose upstreams
    /// point at mocks started with `drill mocks SCENARIO.yaml`; client keys come from the
    /// environment variables the scenario names. Verdicts come from the mocks' journals, never
    /// from gateway headers.
    ///
    /// The scenario format is described in docs/scenario.md.
    #[command(after_long_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Serve a scenario's mock providers (fixed ports from the scenario) until Ctrl-C.
    ///
    /// Prints one line per provider: id, dialect, deployment, base URL and the `api_base` a
    /// gateway should use. The control API (`/_mock/faults`, `/_mock/journal`, ...) is served on
    /// every port, which `drill run --target` uses.
    Mocks(MocksArgs),
    /// Audit, memo and signing commands.
    #[command(flatten)]
    Signoff(crate::signoff_cli::SignoffCommand),
}

const RUN_EXAMPLES: &str = "\
Examples:
  drill run scenarios/quarterly.yaml                       the shipped suite, embedded gateway
  drill run scenarios/provider-outage.yaml --out runs/x    one scenario, outputs in runs/x
  drill mocks scenarios/provider-outage.yaml &             mocks for an external gateway, then:
  drill run scenarios/provider-outage.yaml --target http://127.0.0.1:4000

Outputs (in --out): journal.json (schema_version 1), junit.xml, summary.txt, memo.html, memo.md,
and requests.jsonl with --keep-request-log; a suite writes one directory per scenario plus a
combined summary.txt and junit.xml. Memory does not grow with the run's length: requests are
verified as they finish and dropped (histograms and per-second series are kept).

Exit codes:
  0 passed: every check of every phase passed
  1 failed: a check failed (the gateway does not do what its documentation says)
  2 inconclusive: a check had fewer samples than its min_samples
  3 aborted: a stop condition, the deadline or Ctrl-C stopped the run (outputs still written)
  4 invalid scenario: unknown key, type error or bad reference (file:line: key.path: problem),
    an export drill cannot read, or a usage error (e.g. --config with --export)
  5 environment error: target unreachable, a port in use, the run dir not writable
  6 verification failed: a phase is invalid (a fault was never injected), so no verdict";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario or suite file (YAML, `apiVersion: drill/v1`).
    pub scenario: PathBuf,
    /// Drive this OpenAI-compatible gateway instead of an embedded Switchyard (external mode).
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Gateway config: embedded mode runs it, every mode documents the fallback chains from it
    /// (default: the scenario's gateway.config).
    #[arg(long, value_name = "FILE", conflicts_with = "export")]
    pub config: Option<PathBuf>,
    /// A Switchyard export (`switchyard config export`, kind switchyard/state) that documents
    /// teams and keys with their router settings (default: the scenario's gateway.export).
    /// The gateway config still comes from the scenario's gateway.config (an export lists
    /// config-file deployments by name only), so --export and --config exclude each other.
    /// Embedded mode imports it and regenerates each scenario key to get a secret; the keys'
    /// settings stay the export's.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// External mode: where a provider's mock listens, `PROVIDER=URL` (repeatable; default
    /// http://127.0.0.1:PORT from the scenario's provider port).
    #[arg(long = "mock", value_name = "PROVIDER=URL")]
    pub mocks: Vec<String>,
    /// Output directory (default: runs/<scenario name>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seed for every random choice (default: the scenario's seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop after the first phase that does not pass (remaining phases are not run).
    #[arg(long)]
    pub fail_fast: bool,
    /// Print only the final verdict line.
    #[arg(long, short)]
    pub quiet: bool,
    /// Also write requests.jsonl in the run directory: one JSON line per request (id, phase,
    /// profile, key_alias, sent_ms, status, outcome, latency_ms, tried deployments, served_by),
    /// streamed to disk as requests are verified. Without it nothing per request is kept:
    /// memory stays flat however long the run (histograms and per-second series only).
    #[arg(long)]
    pub keep_request_log: bool,
}

#[derive(Debug, Args)]
pub struct MocksArgs {
    /// Scenario file whose providers to serve.
    pub scenario: PathBuf,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The exit code of a command line clap refused: 0 for `--help`/`--version`; for `run` and
/// `mocks` a usage error is 4 (2 means inconclusive there); the sign-off commands keep 2.
pub fn parse_error_code(e: &clap::Error, args: &[String]) -> u8 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return 0;
    }
    match args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(String::as_str)
    {
        Some("run" | "mocks") => crate::run::exit::INVALID_SCENARIO,
        _ => 2,
    }
}
