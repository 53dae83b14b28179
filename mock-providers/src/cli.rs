//! The `mock-providers` command line: flags, the teaching `--help`, and
//! `run`, which serves a spec until interrupted. `main.rs` only calls `run`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::server::MockServer;
use crate::spec::MockSpec;

const EXAMPLE_SPEC: &str = r#"# mock-providers spec
seed: 20261121                 # drives every seeded choice (default 0)
journal_capacity: 100000       # journal entries kept per deployment (default 100000)
deployments:
  - id: openai-east            # unique id: journal, stats, library calls
    dialect: openai            # openai | azure | anthropic
    api_key: sk-mock-east      # optional: require this key (default: none)
    models: [gpt-4o]           # optional: model names served (default: any)
    context_window: 128000     # optional: tokens; longer prompts get the real error
    baseline: {ttft: 120ms, inter_token: 10ms, output_tokens: 60}
    port: 0                    # optional: 0 (default) picks a free port
  - id: azure-west
    dialect: azure
    models: [gpt-4o-west]      # Azure: the {deployment} path segment
  - id: claude-west
    dialect: anthropic
    faults:                    # optional: rules active from the start
      - {id: slow-start, effect: {type: latency, ttft: 2s}, selection: {first: 5}}
"#;

const AFTER_HELP: &str = r#"SPEC FORMAT (YAML; unknown keys are errors; print a full example with --print-example):
  seed: 42                          drives fault draws, latency samples and answer text
  journal_capacity: 100000          journal ring buffer size per deployment
  deployments:
    - id: openai-east               unique id
      dialect: openai               openai | azure | anthropic
      api_key: sk-x                 optional; OpenAI "Authorization: Bearer", Azure "api-key",
                                    Anthropic "x-api-key" (+ "anthropic-version", always required)
      models: [gpt-4o]              optional; default: any model (Azure: deployment path segment)
      context_window: 8192          optional tokens; prompt > window -> the provider's real 400
      baseline: {ttft: 120ms, inter_token: 10ms, output_tokens: 60}
      port: 0                       optional; default 0 = ephemeral
      faults: [...]                 optional; same rules as PUT /_mock/faults
  Durations: "250us", "120ms", "2s", "1.5s", "1m".

WHERE TO POINT A GATEWAY (one listener per deployment on 127.0.0.1):
  openai     api_base = http://127.0.0.1:PORT/v1   POST /v1/chat/completions, /v1/embeddings, GET /v1/models
  azure      api_base = http://127.0.0.1:PORT      POST /openai/deployments/{dep}/chat/completions?api-version=...
  anthropic  api_base = http://127.0.0.1:PORT      POST /v1/messages

FAULT RULES  {id: NAME, effect: {type: ..., ...}, selection: ...}
  The first rule (in order) whose effect applies and whose selection fires wins; one per request.
  effect:
    {type: http_error, status: 503}                   the provider's own error body for that status
        [message: TEXT] [retry_after: ...] [body: RAW, content_type: text/html]
    {type: rate_limit, retry_after: RA}               429 + provider body and x-ratelimit headers
        RA: {seconds: 2} | {ms: 1500} | {http_date_in: 2s} | {raw: "soon"} | [several]
        (negative, zero and huge values are sent as given)
    {type: overloaded}                                Anthropic 529 overloaded_error; OpenAI/Azure 503
    {type: latency, ttft: 2s, inter_token: 50ms}      also {uniform: {min, max}}, {normal: {mean, stddev}},
                                                      {exponential: {mean}} (seeded)
    {type: stall, for: 30s}                           never answer (close after `for`, if given)
    {type: reset}                                     TCP RST before any response byte
    {type: close_after_bytes, bytes: 100}             FIN after N response bytes (headers included)
    {type: stream_error_before, status: 500}          stream requests: error status before the stream
    {type: stream_inband_error, after_chunks: 3}      200, N chunks, then OpenAI data: {"error":...}
                                                      / Anthropic event: error; no [DONE]/message_stop
    {type: stream_cut, after_chunks: 3}               N chunks, then the connection closes mid-body
    {type: stream_no_done, after_chunks: 3}           N chunks, clean end without [DONE]/message_stop
    {type: context_window_exceeded}                   the provider's context-window 400
    {type: content_policy, mode: error}               policy 400; mode: finish_reason -> 200 with
                                                      finish_reason content_filter (Anthropic: refusal)
    {type: auth_error}                                401 in the provider's shape
  selection (default always):
    always | {probability: 0.3} (seeded) | {first: 5} | {every_nth: 3}
    | {fail_then_pass: 2} (per correlation id) | {prompt_tokens_over: 1000}

CORRELATION IDS
  Put [drill:rid=ID] anywhere in any message text; ID is 1-64 chars of A-Za-z0-9._-
  The first well-formed marker is journaled as the request's correlation_id.
  Prompt tokens are estimated as characters / 4, rounded up.

CONTROL API (on every deployment port, never journaled or faulted)
  PUT    /_mock/faults        body: JSON or YAML list of rules (400 and nothing applied if invalid)
  GET    /_mock/faults        DELETE /_mock/faults
  GET    /_mock/journal[?since=SEQ]                     GET /_mock/stats
  POST   /_mock/reset         (faults, journal and counters)   GET /_mock/health

EXAMPLES
  mock-providers --print-example > mocks.yaml
  mock-providers --spec mocks.yaml --check
  mock-providers --spec mocks.yaml --addr-file addrs.json
  curl -X PUT localhost:PORT/_mock/faults -d '[{"id":"down","effect":{"type":"http_error","status":503}}]'

EXIT CODES
  0 stopped by Ctrl-C / SIGTERM (or --check passed)   1 could not serve   2 invalid spec or usage
"#;

/// Serve mock OpenAI, Azure OpenAI and Anthropic deployments with injectable faults.
///
/// Each deployment of the spec gets its own listener on 127.0.0.1, speaks its
/// provider's wire format (bodies, errors, headers, SSE streams), journals
/// every request with its correlation id, and takes faults at runtime through
/// the /_mock/ control API on its port. One line per deployment is printed on
/// stdout once listening.
#[derive(Debug, Parser)]
#[command(name = "mock-providers", version, after_long_help = AFTER_HELP)]
pub struct Cli {
    /// The spec file (YAML) naming the deployments to serve.
    #[arg(long, value_name = "FILE", required_unless_present = "print_example")]
    pub spec: Option<PathBuf>,

    /// Validate the spec, print what would be served, and exit (0 valid, 2 invalid).
    #[arg(long)]
    pub check: bool,

    /// Once listening, write every deployment's address as JSON to FILE (a readiness signal for scripts).
    #[arg(long, value_name = "FILE")]
    pub addr_file: Option<PathBuf>,

    /// Print an annotated example spec and exit.
    #[arg(long)]
    pub print_example: bool,
}

/// Runs the command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    if cli.print_example {
        print!("{EXAMPLE_SPEC}");
        return ExitCode::SUCCESS;
    }
    let Some(path) = cli.spec.as_deref() else {
        eprintln!("error: --spec FILE is required");
        return ExitCode::from(2);
    };
    let spec = match MockSpec::from_file(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        for d in &spec.deployments {
            println!("{}\t{}\tport {}", d.id, d.dialect, d.port);
        }
        println!("spec ok: {} deployment(s)", spec.deployments.len());
        return ExitCode::SUCCESS;
    }
    let server = match MockServer::start(spec).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let mut lines = String::new();
    let mut addrs = serde_json::Map::new();
    for id in server.deployment_ids() {
        let base = server.base_url(&id);
        let api_base = server.api_base(&id);
        let dialect = server.dialect(&id).map(|d| d.as_str()).unwrap_or_default();
        lines.push_str(&format!("{id}\t{dialect}\t{base}\tapi_base={api_base}\n"));
        addrs.insert(
            id.clone(),
            serde_json::json!({"dialect": dialect, "base_url": base, "api_base": api_base}),
        );
    }
    if let Some(file) = &cli.addr_file {
        let doc = serde_json::json!({"deployments": addrs});
        if let Err(e) = write_atomically(file, &serde_json::to_vec_pretty(&doc).unwrap_or_default())
        {
            eprintln!("error: cannot write {}: {e}", file.display());
            server.shutdown().await;
            return ExitCode::from(1);
        }
    }
    // Stdout is the readiness signal: printed last, once everything is ready.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(lines.as_bytes());
    let _ = out.flush();
    drop(out);
    wait_for_signal().await;
    server.shutdown().await;
    ExitCode::SUCCESS
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn example_spec_is_valid() {
        let spec = MockSpec::from_yaml_str(EXAMPLE_SPEC).unwrap();
        assert_eq!(spec.deployments.len(), 3);
    }

    #[test]
    fn help_teaches_marker_faults_and_control_api() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "[drill:rid=ID]",
            "stream_cut",
            "PUT    /_mock/faults",
            "api_base",
            "fail_then_pass",
        ] {
            assert!(help.contains(needle), "help lacks {needle}");
        }
    }
}
