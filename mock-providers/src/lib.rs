//! Faithful imitations of the OpenAI, Azure OpenAI and Anthropic HTTP APIs on
//! loopback, with a runtime fault catalog, seeded selection, a request journal
//! and a control API — the drill's ground truth.
//!
//! This crate keeps its own wire shapes (`serde_json` values checked against
//! the recorded provider shapes in `fixtures/`) and depends on no sibling
//! crate, so a gateway's wire-format mistakes cannot be mirrored here.
//!
//! # Serving
//!
//! Every deployment of a [`MockSpec`] gets its own listener on `127.0.0.1`
//! ([`MockServer::base_url`]). What a gateway's `api_base` must be:
//!
//! | dialect     | routes                                                                  | auth (when `api_key` is set)        | gateway `api_base`   |
//! |-------------|-------------------------------------------------------------------------|-------------------------------------|----------------------|
//! | `openai`    | `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models`     | `Authorization: Bearer KEY`          | `base_url + "/v1"`   |
//! | `azure`     | `POST /openai/deployments/{deployment}/chat/completions?api-version=V`, `.../embeddings` | `api-key: KEY`         | `base_url`           |
//! | `anthropic` | `POST /v1/messages`, `GET /v1/models`                                   | `x-api-key: KEY`; `anthropic-version` always required | `base_url` |
//!
//! A request is checked in this order, each failure answered in the
//! provider's own shape: route (404), credentials (401; Anthropic without
//! `anthropic-version`: 400), body (400), model or Azure deployment name
//! against `models` (404), prompt against `context_window` (the provider's
//! context-window 400, no fault needed), then the deployment's faults, then
//! the normal answer. The journal records mock-side refusals in `rejected`.
//!
//! Answers are deterministic: the words derive from the seed, the deployment
//! id and the prompt text; `usage` counts what was sent (prompt tokens are
//! estimated as characters / 4 rounded up, output tokens are one per stream
//! chunk). OpenAI streams honour `stream_options.include_usage`; Anthropic
//! streams carry usage in `message_start` and `message_delta`; Azure streams
//! start with the `prompt_filter_results` event.
//!
//! # Spec (YAML)
//!
//! ```yaml
//! seed: 42                       # drives every seeded choice (default 0)
//! journal_capacity: 100000       # entries kept per deployment (default 100000)
//! deployments:
//!   - id: openai-east            # unique; names the deployment everywhere
//!     dialect: openai            # openai | azure | anthropic
//!     api_key: sk-east           # optional: require this key
//!     models: [gpt-4o]           # optional: names served (default: any)
//!     context_window: 128000     # optional: tokens (default: unlimited)
//!     baseline: {ttft: 120ms, inter_token: 10ms, output_tokens: 60}
//!     port: 0                    # optional: fixed port (default: ephemeral)
//!     faults: []                 # optional: rules active from the start
//! ```
//!
//! # Fault rules
//!
//! `{id, effect: {type: ..., ...}, selection: ...}`; see [`FaultEffect`] and
//! [`Selection`]. The first rule (in order) whose effect applies to the
//! request and whose selection fires is applied; one fault per request.
//!
//! ```yaml
//! - {id: outage, effect: {type: http_error, status: 503}}
//! - {id: throttle, effect: {type: rate_limit, retry_after: [{seconds: 2}, {ms: 1500}]},
//!    selection: {probability: 0.3}}
//! - {id: slow, effect: {type: latency, ttft: {uniform: {min: 1s, max: 3s}}}}
//! - {id: broken, effect: {type: stream_cut, after_chunks: 3}, selection: {every_nth: 2}}
//! ```
//!
//! # Correlation ids
//!
//! A drill puts `[drill:rid=<ID>]` ([`MARKER_PREFIX`]) anywhere in any
//! message text; `<ID>` is 1–64 characters of `A-Za-z0-9._-`. The first
//! well-formed marker is the request's correlation id in the journal and the
//! key of `fail_then_pass`. See [`extract_correlation_id`].
//!
//! # Control API (on every deployment port)
//!
//! `PUT /_mock/faults` (a JSON/YAML list of rules; invalid → 400, nothing
//! applied), `GET|DELETE /_mock/faults`, `GET /_mock/journal[?since=SEQ]`,
//! `GET /_mock/stats`, `POST /_mock/reset`, `GET /_mock/health`.

mod anthropic;
mod api;
pub mod cli;
mod content;
mod control;
mod deployment;
pub mod duration;
pub mod faults;
mod http;
pub mod journal;
pub mod marker;
mod openai;
mod seeded;
mod server;
pub mod spec;

pub use content::estimate_tokens;
pub use control::{parse_fault_rules, CONTROL_PREFIX};
pub use deployment::DEFAULT_REPORTED_CONTEXT_WINDOW;
pub use duration::{Delay, HumanDuration, SignedDuration};
pub use faults::{
    validate_rules, ContentPolicyMode, FaultEffect, FaultRule, RetryAfter, Selection,
};
pub use journal::{
    DeploymentStats, EndKind, Endpoint, JournalEntry, JournalSnapshot, Outcome,
    JOURNAL_SCHEMA_VERSION,
};
pub use marker::{extract_correlation_id, marker, MARKER_PREFIX};
pub use seeded::selection_draw;
pub use server::{MockError, MockServer, Stats};
pub use spec::{Baseline, DeploymentSpec, Dialect, MockSpec, SpecError};
