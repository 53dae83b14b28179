//! The run journal (`journal.json`, `schema_version` 1): everything measured and decided, and
//! everything the readiness memo needs to be rendered later without re-running (inventory,
//! documented chains with provenance, effective settings, fault windows, memo header, open
//! risks). Types only; `output` writes them, `verify` and the runner fill them.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::documented::{ChainDoc, InventoryItem};
use crate::scenario::MemoSpec;

/// Version of `journal.json`; changed only on purpose.
pub const SCHEMA_VERSION: u32 = 1;

/// A verdict, of a check, a phase or the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    Inconclusive,
    /// The phase could not be verified (a fault was never injected, journals incomplete).
    Invalid,
    Failed,
    /// Stopped by a stop condition, the deadline or Ctrl-C.
    Aborted,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Invalid => "invalid",
            Verdict::Failed => "failed",
            Verdict::Aborted => "aborted",
        }
    }
}

/// One check of one phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckEvidence {
    /// `fallback`, `success_ratio`, ...
    pub check: String,
    pub verdict: Verdict,
    pub samples: u64,
    pub min_samples: u64,
    pub expected: String,
    pub observed: String,
    /// One line saying why, naming the deviation when it failed.
    pub message: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// A fault as it was set on a mock, and how often it hit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultEvidence {
    pub provider: String,
    pub deployment: String,
    /// Rule id in the mock journal.
    pub rule_id: String,
    pub effect: serde_json::Value,
    pub selection: serde_json::Value,
    /// Window, since the run started.
    pub start_offset_ms: u64,
    pub end_offset_ms: u64,
    pub injected: u64,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    /// From a histogram of microseconds.
    pub fn from_us(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

/// One second of one phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimePoint {
    /// Seconds since the run started.
    pub t_s: u64,
    pub phase: String,
    pub sent: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Requests served, by deployment (from the mock journals), sent in this second.
    pub served: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequestCounts {
    pub sent: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Arrivals not sent: `max_in_flight` requests were in flight.
    pub overflow: u64,
    /// Still running when the phase drain ended.
    pub abandoned: u64,
    pub by_outcome: BTreeMap<String, u64>,
    pub by_status: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScheduleEvidence {
    /// `open` or `closed`.
    pub model: String,
    pub target_rate: Option<f64>,
    pub scheduled: u64,
    pub achieved_rate: f64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
}

/// Gateway response headers compared with the mock journals.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HeaderCrossCheck {
    pub compared: u64,
    pub disagreements: u64,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseEvidence {
    pub id: String,
    pub start_offset_ms: u64,
    pub end_offset_ms: u64,
    pub duration_ms: u64,
    pub warmup_ms: u64,
    pub verdict: Verdict,
    /// Why the phase is invalid or aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub faults: Vec<FaultEvidence>,
    pub requests: RequestCounts,
    /// Client requests by the deployment that served them (`none`: no mock served it).
    pub served_by: BTreeMap<String, u64>,
    /// Client requests by how many upstream calls they caused.
    pub upstream_attempts: BTreeMap<u32, u64>,
    pub checks: Vec<CheckEvidence>,
    /// Successful requests after warmup.
    pub latency: LatencySummary,
    /// Successful streams after warmup: time to first byte.
    pub ttft: LatencySummary,
    pub schedule: ScheduleEvidence,
    pub time_series: Vec<TimePoint>,
    pub header_cross_check: HeaderCrossCheck,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioEvidence {
    pub path: String,
    pub sha256: String,
    /// The file exactly as read.
    pub text: String,
    pub name: String,
    pub title: Option<String>,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigEvidence {
    /// The config the gateway ran (embedded) or that documents it (external).
    pub path: Option<String>,
    pub sha256_start: Option<String>,
    pub sha256_end: Option<String>,
    /// The config the chains were documented from, when it differs.
    pub documented_path: Option<String>,
    pub documented_sha256: Option<String>,
    /// `config` (LiteLLM config file alone) or `export` (a Switchyard export over it).
    pub kind: String,
    /// The Switchyard export, when the run used one (`--export` / `gateway.export`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportEvidence>,
}

/// Digests of the export at the start and the end of the run (sha256 of its bytes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportEvidence {
    /// The export the embedded gateway imported (external mode: the one that documents it).
    pub path: String,
    pub sha256_start: String,
    /// None when the file could not be read at the end.
    pub sha256_end: Option<String>,
    /// The export the chains were documented from, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documented_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documented_sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Environment {
    pub drill_version: String,
    pub os: String,
    pub arch: String,
    pub cpus: usize,
    pub mode: String,
    pub target: String,
    pub gateway: String,
}

/// `journal.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunJournal {
    pub schema_version: u32,
    pub status: Verdict,
    pub exit_code: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub seed: u64,
    pub scenario: ScenarioEvidence,
    pub config: ConfigEvidence,
    pub inventory: Vec<InventoryItem>,
    pub documented_chains: Vec<ChainDoc>,
    /// Effective router settings (`{value, source}` per field) by subject (`global`, `key:NAME`).
    pub effective_settings: BTreeMap<String, serde_json::Value>,
    pub phases: Vec<PhaseEvidence>,
    pub memo: MemoSpec,
    pub environment: Environment,
    /// Findings of `drill audit` on the documented config at the start of the run, so the memo
    /// renders from the journal alone.
    #[serde(default)]
    pub audit: Vec<switchyard_reports::model::Finding>,
}
