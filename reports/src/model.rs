//! The readiness memo as plain data: everything the memo shows, in the order it shows it.
//! The drill maps its journal (and the export/config and audit findings) into a [`Memo`];
//! `render` turns a `Memo` into bytes. Nothing here formats, computes or reads a clock.

use serde::{Deserialize, Serialize};

/// Version of the [`Memo`] document. A memo of a newer version is refused, naming both.
pub const MEMO_VERSION: u32 = 1;

/// The whole memo. Lists are shown in the order given: the producer sorts them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memo {
    /// Always [`MEMO_VERSION`] when produced by this crate.
    pub version: u32,
    pub header: Header,
    pub verdict: VerdictSummary,
    /// One row per deployment, primary deployments first within a model group.
    pub inventory: Vec<InventoryRow>,
    /// Fallback order as documented: the global chains, then every key/team scope that differs.
    pub fallback_order: Vec<FallbackScope>,
    /// Retry, timeout and cooldown settings exactly as configured, defaults marked.
    pub settings: Vec<SettingRow>,
    /// Findings of the static audit (`drill audit`) of the config under test.
    pub findings: Vec<Finding>,
    /// The drill's phases in the order they ran.
    pub phases: Vec<Phase>,
    /// The sign-off table: one row per failure the drill injected.
    pub signoff: Vec<SignoffRow>,
    /// Open risks: from the scenario, failed/inconclusive checks, error findings.
    pub residual_risks: Vec<Risk>,
    pub digests: Digests,
}

/// The readiness document header (SRE production-readiness review style).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Document title, e.g. "Fallback readiness: chat-prod".
    pub title: String,
    /// Document status as written by its author: "draft", "in review", "approved".
    pub status: String,
    pub author: String,
    /// Date of the test run, `YYYY-MM-DD` (UTC), taken from the journal (never a render clock).
    pub date: String,
    pub reviewers: Vec<String>,
    pub approvers: Vec<String>,
    /// `YYYY-MM-DD`, when approved.
    #[serde(default)]
    pub approval_date: Option<String>,
    /// `YYYY-MM-DD`: when this readiness review must be repeated.
    #[serde(default)]
    pub revisit_date: Option<String>,
    /// Scenario name (from the scenario file).
    pub scenario: String,
    /// What was tested, e.g. "switchyard 0.1.0 at 127.0.0.1:4000".
    pub target: String,
}

/// Overall outcome of the drill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every check passed.
    Ready,
    /// At least one check failed.
    NotReady,
    /// No check failed, but at least one could not be decided.
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ready => "ready",
            Verdict::NotReady => "not ready",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// Outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckVerdict {
    Pass,
    Fail,
    Inconclusive,
}

impl CheckVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckVerdict::Pass => "pass",
            CheckVerdict::Fail => "fail",
            CheckVerdict::Inconclusive => "inconclusive",
        }
    }
}

/// "Verdict at a glance".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictSummary {
    pub verdict: Verdict,
    /// One or two sentences written by the producer, e.g. "Traffic moved to the documented
    /// fallback in every phase within 2 s."
    pub summary: String,
    pub checks_passed: u32,
    pub checks_failed: u32,
    pub checks_inconclusive: u32,
    /// Total requests the drill sent.
    pub requests: u64,
}

/// Role of a deployment in the tested fallback design.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Fallback,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Fallback => "fallback",
        }
    }
}

/// One deployment of the config under test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryRow {
    pub model_group: String,
    pub deployment_id: String,
    /// Provider as the config names it: "openai", "azure", "anthropic".
    pub provider: String,
    #[serde(default)]
    pub region: Option<String>,
    pub role: Role,
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
}

/// Where a resolved setting came from (Key > Team > Global > default), as the gateway resolves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    Key,
    Team,
    Global,
    Default,
}

impl Provenance {
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Key => "key",
            Provenance::Team => "team",
            Provenance::Global => "global",
            Provenance::Default => "default",
        }
    }
}

/// The fallback chains that apply in one scope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackScope {
    /// "global", "team ml-platform", "key checkout-bot": how the memo names the scope.
    pub scope: String,
    pub chains: Vec<FallbackChain>,
}

/// One documented fallback chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackChain {
    /// "general", "context_window", "content_policy" or "default".
    pub kind: String,
    /// The model group that falls back ("*" for default fallbacks).
    pub group: String,
    /// Targets in the order they are tried (model groups or deployment ids).
    pub targets: Vec<String>,
    /// Which layer this chain was resolved from.
    pub provenance: Provenance,
}

/// One retry/timeout/cooldown setting as configured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingRow {
    /// Field name as in the config: "num_retries", "timeout", "cooldown_time".
    pub name: String,
    /// The value as the operator would write it, e.g. "30 s", "3", "(not set)".
    pub value: String,
    /// Scope the value applies to ("global", "team ml-platform").
    pub scope: String,
    /// The value was not set and the documented default applies.
    pub is_default: bool,
}

/// Severity of an audit finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One audit finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Stable check id, e.g. "fallback.single-vendor".
    pub id: String,
    pub severity: Severity,
    /// Objects involved: "group gpt-4o", "deployment gpt-4o-eu", "team ml-platform".
    pub objects: Vec<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

/// One phase of the drill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    /// Seconds from the start of the run.
    pub start_s: u64,
    pub duration_s: u64,
    /// Requests sent in this phase.
    pub requests: u64,
    /// Requests that reached the client as errors.
    pub errors: u64,
    /// Faults injected, with how many times each fired.
    pub injected: Vec<Injection>,
    /// Expected vs observed, per check.
    pub checks: Vec<Check>,
    pub latency: Percentiles,
    /// Requests served per deployment per second.
    pub traffic: Traffic,
    /// When each fault was active (seconds from the start of the run).
    pub fault_windows: Vec<FaultWindow>,
}

/// A fault injected into one deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    pub deployment: String,
    /// The fault as the scenario names it: "status 503", "rate_limit retry_after=5s".
    pub fault: String,
    /// How many requests the fault answered.
    pub count: u64,
}

/// One verification: what the documentation promises vs what the drill saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub name: String,
    pub expected: String,
    pub observed: String,
    pub verdict: CheckVerdict,
}

/// Client-side latency in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// A time series of served requests, one value per deployment per step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Time of the first point, seconds from the start of the run.
    pub start_s: u64,
    /// Seconds between points (1 for the journal's per-second series).
    pub step_s: u64,
    /// One series per deployment; every `served` has the same length.
    pub series: Vec<DeploymentSeries>,
}

/// Requests one deployment served, per step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSeries {
    pub deployment: String,
    pub served: Vec<u32>,
}

/// A span of time in which a fault was active on a deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultWindow {
    pub deployment: String,
    pub fault: String,
    /// Seconds from the start of the run.
    pub start_s: u64,
    pub end_s: u64,
}

/// One row of the sign-off table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignoffRow {
    /// `YYYY-MM-DD`.
    pub test_date: String,
    pub failed_deployment: String,
    /// The model group (or deployment) that served while the failure lasted.
    pub observed_fallback: String,
    /// p95 during the failure minus p95 of the baseline, milliseconds (negative = faster).
    pub latency_delta_ms: f64,
    pub verdict: CheckVerdict,
    pub open_risks: Vec<String>,
}

/// A residual risk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Risk {
    /// Where it comes from: "scenario", "check", "finding".
    pub source: String,
    pub text: String,
}

/// SHA-256 digests (lowercase hex) of what the memo is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digests {
    pub scenario_sha256: String,
    /// The export/config at the start of the run.
    pub export_start_sha256: String,
    /// The export/config at the end of the run; differs from the start when config drifted.
    pub export_end_sha256: String,
    /// The journal the memo was rendered from.
    pub journal_sha256: String,
}
