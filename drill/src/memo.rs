//! The journal → memo mapping: turns a run's `journal.json` into the readiness memo's data
//! (`switchyard_reports::model::Memo`). Pure and deterministic: the same journal bytes give the
//! same memo, which is what lets `drill verify` re-render the memo and compare bytes. Rendering
//! is `switchyard_reports::render`; file I/O is `output` (after a run) and `signoff`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context as _};
use sha2::{Digest as _, Sha256};
use switchyard_reports::model::{
    Check, CheckVerdict, DeploymentSeries, Digests, FallbackChain, FallbackScope, FaultWindow,
    Finding, Header, Injection, InventoryRow, Memo, Percentiles, Phase, Provenance, Risk, Role,
    SettingRow, Severity, SignoffRow, Traffic, Verdict as MemoVerdict, VerdictSummary,
    MEMO_VERSION,
};

use crate::evidence::{
    CheckEvidence, FaultEvidence, LatencySummary, PhaseEvidence, RunJournal, Verdict,
    SCHEMA_VERSION,
};
use crate::signoff::{MemoSource, JOURNAL};

/// Effective-settings fields the memo lists under "retry, timeout and cooldown settings"
/// (fallback lists and aliases have their own section).
const SETTING_FIELDS: &[&str] = &[
    "routing_strategy",
    "num_retries",
    "retry_policy",
    "allowed_fails",
    "allowed_fails_policy",
    "cooldown_time",
    "timeout",
    "stream_timeout",
    "max_fallbacks",
    "retry_after_cap",
];

/// Reads the memo's data from the run directory's `journal.json`.
pub struct JournalMemo;

impl MemoSource for JournalMemo {
    fn memo(&self, run_dir: &Path) -> anyhow::Result<Memo> {
        let path = run_dir.join(JOURNAL);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read {}\nhint: is {} a run directory written by `drill run`?",
                path.display(),
                run_dir.display()
            )
        })?;
        let journal = parse_journal(&bytes).with_context(|| format!("{}", path.display()))?;
        Ok(memo_from_journal(&journal, &sha256_hex(&bytes)))
    }
}

/// Parses `journal.json`, refusing a newer schema version by name.
pub fn parse_journal(bytes: &[u8]) -> anyhow::Result<RunJournal> {
    let v: serde_json::Value = serde_json::from_slice(bytes).context("not JSON")?;
    match v.get("schema_version").and_then(serde_json::Value::as_u64) {
        Some(found) if found > u64::from(SCHEMA_VERSION) => bail!(
            "journal schema version {found} is newer than this drill reads (version {SCHEMA_VERSION})\nhint: use a newer drill"
        ),
        Some(_) => {}
        None => bail!("not a drill journal (no schema_version)"),
    }
    serde_json::from_value(v).context("not a drill journal")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The memo of one run. `journal_sha256` is the digest of the journal's bytes.
pub fn memo_from_journal(j: &RunJournal, journal_sha256: &str) -> Memo {
    let date: String = j.started_at.chars().take(10).collect();
    let checks: Vec<&CheckEvidence> = j.phases.iter().flat_map(|p| &p.checks).collect();
    let count = |v: CheckVerdict| {
        checks
            .iter()
            .filter(|c| check_verdict(c.verdict) == v)
            .count()
    };
    let (passed, failed, inconclusive) = (
        count(CheckVerdict::Pass),
        count(CheckVerdict::Fail),
        count(CheckVerdict::Inconclusive),
    );
    let requests: u64 = j.phases.iter().map(|p| p.requests.sent).sum();
    let verdict = match j.status {
        Verdict::Passed => MemoVerdict::Ready,
        Verdict::Inconclusive => MemoVerdict::Inconclusive,
        Verdict::Failed | Verdict::Invalid | Verdict::Aborted => MemoVerdict::NotReady,
    };
    Memo {
        version: MEMO_VERSION,
        header: header(j, &date),
        verdict: VerdictSummary {
            verdict,
            summary: summary(j, passed, failed, inconclusive),
            checks_passed: passed as u32,
            checks_failed: failed as u32,
            checks_inconclusive: inconclusive as u32,
            requests,
        },
        inventory: inventory(j),
        fallback_order: fallback_order(j),
        settings: settings(j),
        findings: j.audit.clone(),
        phases: j.phases.iter().map(phase).collect(),
        signoff: signoff(j, &date),
        residual_risks: residual_risks(j),
        digests: Digests {
            scenario_sha256: j.scenario.sha256.clone(),
            // The Switchyard export's digests when the run used one, else the config's.
            export_start_sha256: j.config.export.as_ref().map_or_else(
                || j.config.sha256_start.clone().unwrap_or_default(),
                |e| e.sha256_start.clone(),
            ),
            export_end_sha256: j.config.export.as_ref().map_or_else(
                || j.config.sha256_end.clone().unwrap_or_default(),
                |e| e.sha256_end.clone().unwrap_or_default(),
            ),
            journal_sha256: journal_sha256.to_owned(),
        },
    }
}

fn header(j: &RunJournal, date: &str) -> Header {
    let h = &j.memo.header;
    Header {
        title: j
            .scenario
            .title
            .clone()
            .unwrap_or_else(|| format!("Fallback readiness: {}", j.scenario.name)),
        status: h.status.clone(),
        author: h
            .author
            .clone()
            .or_else(|| j.scenario.owner.clone())
            .unwrap_or_else(|| "(not set)".to_owned()),
        date: date.to_owned(),
        reviewers: h.reviewers.clone(),
        approvers: h.approvers.clone(),
        approval_date: h.approval_date.clone(),
        revisit_date: h
            .revisit_after
            .as_deref()
            .and_then(|after| revisit_date(date, after)),
        scenario: j.scenario.name.clone(),
        target: format!(
            "{} ({} mode) at {}",
            j.environment.gateway, j.environment.mode, j.environment.target
        ),
    }
}

/// `date` (`YYYY-MM-DD`) plus `after` (`90d`, `12w`); `None` when either does not parse.
fn revisit_date(date: &str, after: &str) -> Option<String> {
    let start = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let after = after.trim();
    let (n, unit) = after.split_at(after.len().checked_sub(1)?);
    let n: i64 = n.trim().parse().ok()?;
    let days = match unit {
        "d" => n,
        "w" => n.checked_mul(7)?,
        _ => return None,
    };
    let end = start.checked_add_signed(chrono::Duration::try_days(days)?)?;
    Some(end.format("%Y-%m-%d").to_string())
}

fn summary(j: &RunJournal, passed: usize, failed: usize, inconclusive: usize) -> String {
    let total = passed + failed + inconclusive;
    let phases = j.phases.len();
    let mut s = format!("{passed} of {total} checks passed across {phases} phases");
    if failed > 0 {
        s.push_str(&format!("; {failed} failed"));
    }
    if inconclusive > 0 {
        s.push_str(&format!("; {inconclusive} inconclusive"));
    }
    let invalid: Vec<&str> = j
        .phases
        .iter()
        .filter(|p| p.verdict == Verdict::Invalid)
        .map(|p| p.id.as_str())
        .collect();
    if !invalid.is_empty() {
        s.push_str(&format!(
            "; phases without evidence: {}",
            invalid.join(", ")
        ));
    }
    if let Some(reason) = &j.abort_reason {
        s.push_str(&format!("; aborted: {reason}"));
    }
    s.push('.');
    s
}

fn inventory(j: &RunJournal) -> Vec<InventoryRow> {
    let mut rows: Vec<InventoryRow> = j
        .inventory
        .iter()
        .map(|d| InventoryRow {
            model_group: d.group.clone(),
            deployment_id: d.deployment.clone(),
            provider: d.provider.clone(),
            region: d.region.clone(),
            role: if d.role == "fallback" {
                Role::Fallback
            } else {
                Role::Primary
            },
            rpm: d.rpm,
            tpm: d.tpm,
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.model_group, a.role != Role::Primary, &a.deployment_id).cmp(&(
            &b.model_group,
            b.role != Role::Primary,
            &b.deployment_id,
        ))
    });
    rows
}

fn provenance(source: &str) -> Provenance {
    match source {
        "key" => Provenance::Key,
        "team" => Provenance::Team,
        "global" => Provenance::Global,
        _ => Provenance::Default,
    }
}

/// `global` → "global", `key:NAME` → "key NAME".
fn scope_name(subject: &str) -> String {
    match subject.split_once(':') {
        Some((kind, name)) => format!("{kind} {name}"),
        None => subject.to_owned(),
    }
}

/// The global chains, then each key whose chains come (in part) from its own or its team's
/// settings: the memo shows keys only where they differ from the global design.
fn fallback_order(j: &RunJournal) -> Vec<FallbackScope> {
    let mut scopes: BTreeMap<&str, Vec<FallbackChain>> = BTreeMap::new();
    for c in &j.documented_chains {
        scopes
            .entry(c.subject.as_str())
            .or_default()
            .push(FallbackChain {
                kind: c.kind.as_str().to_owned(),
                group: c.group.clone(),
                targets: c.targets.clone(),
                provenance: provenance(&c.source),
            });
    }
    let differs = |chains: &[FallbackChain]| {
        chains
            .iter()
            .any(|c| matches!(c.provenance, Provenance::Key | Provenance::Team))
    };
    let mut out = Vec::new();
    if let Some(global) = scopes.remove("global") {
        out.push(FallbackScope {
            scope: "global".to_owned(),
            chains: global,
        });
    }
    for (subject, chains) in scopes {
        if differs(&chains) {
            out.push(FallbackScope {
                scope: scope_name(subject),
                chains,
            });
        }
    }
    out
}

/// A setting's value as an operator would read it.
fn show_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "(not set)".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Object(m) if m.is_empty() => "(none)".to_owned(),
        other => other.to_string(),
    }
}

/// The global settings, then each key's fields that its own or its team's settings set.
fn settings(j: &RunJournal) -> Vec<SettingRow> {
    let mut rows = Vec::new();
    let subjects = std::iter::once("global").chain(
        j.effective_settings
            .keys()
            .map(String::as_str)
            .filter(|s| *s != "global"),
    );
    for subject in subjects {
        let Some(fields) = j.effective_settings.get(subject) else {
            continue;
        };
        for name in SETTING_FIELDS {
            let Some(field) = fields.get(*name) else {
                continue;
            };
            let source = field
                .get("source")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("default");
            if subject != "global" && !matches!(source, "key" | "team") {
                continue;
            }
            rows.push(SettingRow {
                name: (*name).to_owned(),
                value: show_value(field.get("value").unwrap_or(&serde_json::Value::Null)),
                scope: if subject == "global" {
                    "global".to_owned()
                } else {
                    format!("{} (from its {source})", scope_name(subject))
                },
                is_default: source == "default",
            });
        }
    }
    rows
}

fn check_verdict(v: Verdict) -> CheckVerdict {
    match v {
        Verdict::Passed => CheckVerdict::Pass,
        Verdict::Inconclusive => CheckVerdict::Inconclusive,
        Verdict::Failed | Verdict::Invalid | Verdict::Aborted => CheckVerdict::Fail,
    }
}

/// "http_error status=503": the effect's type, then its other scalar fields in order.
fn describe_fault(f: &FaultEvidence) -> String {
    let Some(obj) = f.effect.as_object() else {
        return f.rule_id.clone();
    };
    let mut s = obj
        .get("type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(&f.rule_id)
        .to_owned();
    let mut rest: Vec<(&String, &serde_json::Value)> =
        obj.iter().filter(|(k, _)| k.as_str() != "type").collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in rest {
        match v {
            serde_json::Value::String(x) => s.push_str(&format!(" {k}={x}")),
            serde_json::Value::Number(x) => s.push_str(&format!(" {k}={x}")),
            serde_json::Value::Bool(x) => s.push_str(&format!(" {k}={x}")),
            _ => {}
        }
    }
    s
}

fn percentiles(l: &LatencySummary) -> Percentiles {
    Percentiles {
        p50_ms: l.p50_ms,
        p90_ms: l.p90_ms,
        p95_ms: l.p95_ms,
        p99_ms: l.p99_ms,
        max_ms: l.max_ms,
    }
}

fn phase(p: &PhaseEvidence) -> Phase {
    let deployments: BTreeSet<&str> = p
        .time_series
        .iter()
        .flat_map(|t| t.served.keys().map(String::as_str))
        .collect();
    let series = deployments
        .iter()
        .map(|d| DeploymentSeries {
            deployment: (*d).to_owned(),
            served: p
                .time_series
                .iter()
                .map(|t| {
                    t.served
                        .get(*d)
                        .copied()
                        .unwrap_or(0)
                        .min(u64::from(u32::MAX)) as u32
                })
                .collect(),
        })
        .collect();
    Phase {
        name: p.id.clone(),
        start_s: p.start_offset_ms / 1000,
        duration_s: p.duration_ms / 1000,
        requests: p.requests.sent,
        errors: p.requests.failed,
        injected: p
            .faults
            .iter()
            .map(|f| Injection {
                deployment: f.deployment.clone(),
                fault: describe_fault(f),
                count: f.injected,
            })
            .collect(),
        checks: p
            .checks
            .iter()
            .map(|c| Check {
                name: c.check.clone(),
                expected: c.expected.clone(),
                observed: c.observed.clone(),
                verdict: check_verdict(c.verdict),
            })
            .collect(),
        latency: percentiles(&p.latency),
        traffic: Traffic {
            start_s: p
                .time_series
                .first()
                .map_or(p.start_offset_ms / 1000, |t| t.t_s),
            step_s: 1,
            series,
        },
        fault_windows: p
            .faults
            .iter()
            .map(|f| FaultWindow {
                deployment: f.deployment.clone(),
                fault: describe_fault(f),
                start_s: f.start_offset_ms / 1000,
                end_s: f.end_offset_ms.div_ceil(1000),
            })
            .collect(),
    }
}

/// One row per phase that injected faults: which deployment failed, which one served instead
/// (most requests of the phase among the others), and the p95 change against the first phase
/// without faults.
fn signoff(j: &RunJournal, date: &str) -> Vec<SignoffRow> {
    let baseline = j.phases.iter().find(|p| p.faults.is_empty());
    j.phases
        .iter()
        .filter(|p| !p.faults.is_empty())
        .map(|p| {
            let failed: BTreeSet<&str> = p.faults.iter().map(|f| f.deployment.as_str()).collect();
            let observed = p
                .served_by
                .iter()
                .filter(|(d, n)| !failed.contains(d.as_str()) && d.as_str() != "none" && **n > 0)
                .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                .map_or_else(|| "none".to_owned(), |(d, _)| d.clone());
            let delta = baseline.map_or(0.0, |b| p.latency.p95_ms - b.latency.p95_ms);
            SignoffRow {
                test_date: date.to_owned(),
                failed_deployment: failed.into_iter().collect::<Vec<_>>().join(", "),
                observed_fallback: observed,
                latency_delta_ms: (delta * 1000.0).round() / 1000.0,
                verdict: check_verdict(p.verdict),
                open_risks: p
                    .checks
                    .iter()
                    .filter(|c| check_verdict(c.verdict) != CheckVerdict::Pass)
                    .map(|c| format!("{}: {}", c.check, c.message))
                    .chain(p.reason.iter().cloned())
                    .collect(),
            }
        })
        .collect()
}

fn residual_risks(j: &RunJournal) -> Vec<Risk> {
    let scenario = j.memo.open_risks.iter().map(|r| Risk {
        source: "scenario".to_owned(),
        text: r.clone(),
    });
    let checks = j.phases.iter().flat_map(|p| {
        p.checks
            .iter()
            .filter(|c| check_verdict(c.verdict) != CheckVerdict::Pass)
            .map(move |c| Risk {
                source: "check".to_owned(),
                text: format!(
                    "{} / {} ({}): {}",
                    p.id,
                    c.check,
                    c.verdict.as_str(),
                    c.message
                ),
            })
    });
    let findings = j
        .audit
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f: &Finding| Risk {
            source: "finding".to_owned(),
            text: format!("{}: {}", f.id, f.message),
        });
    scenario.chain(checks).chain(findings).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisit_date_adds_days_and_weeks() {
        assert_eq!(
            revisit_date("2026-11-29", "90d").as_deref(),
            Some("2027-02-27")
        );
        assert_eq!(
            revisit_date("2026-11-29", "2w").as_deref(),
            Some("2026-12-13")
        );
        assert_eq!(revisit_date("2026-11-29", "soon"), None);
        assert_eq!(revisit_date("not a date", "90d"), None);
    }

    #[test]
    fn newer_journal_is_refused_naming_both_versions() {
        let err = parse_journal(br#"{"schema_version": 99}"#).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("99") && text.contains(&format!("version {SCHEMA_VERSION}")),
            "{text}"
        );
    }

    #[test]
    fn fault_description_lists_scalar_fields_in_order() {
        let f = FaultEvidence {
            provider: "p".into(),
            deployment: "d".into(),
            rule_id: "outage".into(),
            effect: serde_json::json!({"type": "rate_limit", "status": 429, "retry_after": "2s", "body": {"x": 1}}),
            selection: serde_json::Value::Null,
            start_offset_ms: 0,
            end_offset_ms: 0,
            injected: 3,
        };
        assert_eq!(describe_fault(&f), "rate_limit retry_after=2s status=429");
    }
}
