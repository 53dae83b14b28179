//! `drill audit`: static fallback-readiness review of a LiteLLM `config.yaml` or an audit input
//! document. Loading is in `input`, the checks in `checks`; this file orders findings and prints
//! them as a table, versioned JSON or SARIF.

pub mod checks;
pub mod input;

use serde_json::json;
use switchyard_reports::model::{Finding, Severity};

pub use input::{load, AuditInput, InputError, InputFormat, Loaded};

/// Version of the `--format json` document.
pub const JSON_VERSION: u32 = 1;

/// Runs every check. Findings are sorted most severe first, then by id and objects, so the
/// output is stable.
pub fn audit(input: &AuditInput) -> Vec<Finding> {
    let mut findings = checks::run_all(input);
    sort(&mut findings);
    findings
}

pub fn sort(findings: &mut Vec<Finding>) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.objects.cmp(&b.objects))
            .then_with(|| a.message.cmp(&b.message))
    });
    findings.dedup();
}

/// Output format of `drill audit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Sarif,
}

fn counts(findings: &[Finding]) -> (usize, usize, usize) {
    let n = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    (n(Severity::Error), n(Severity::Warning), n(Severity::Info))
}

/// A readable table: one block per finding.
pub fn table(source: &str, findings: &[Finding]) -> String {
    let mut out = String::new();
    if findings.is_empty() {
        out.push_str(&format!("{source}: no findings\n"));
        return out;
    }
    let width = findings.iter().map(|f| f.id.len()).max().unwrap_or(0);
    for f in findings {
        out.push_str(&format!(
            "{:<7}  {:<width$}  {}\n",
            f.severity.as_str(),
            f.id,
            f.objects.join(", ")
        ));
        out.push_str(&format!("{:<7}  {:<width$}  {}\n", "", "", f.message));
        out.push_str(&format!("{:<7}  {:<width$}  fix: {}\n\n", "", "", f.fix));
    }
    let (e, w, i) = counts(findings);
    out.push_str(&format!("{source}: {e} error, {w} warning, {i} info\n"));
    out
}

pub fn to_json(source: &str, findings: &[Finding]) -> serde_json::Value {
    let (e, w, i) = counts(findings);
    json!({
        "version": JSON_VERSION,
        "source": source,
        "summary": { "error": e, "warning": w, "info": i },
        "findings": findings,
    })
}

/// SARIF 2.1.0, one run, one rule per check.
pub fn to_sarif(source: &str, findings: &[Finding]) -> serde_json::Value {
    let rules: Vec<_> = checks::CHECKS
        .iter()
        .map(|(id, text)| json!({ "id": id, "shortDescription": { "text": text } }))
        .collect();
    let results: Vec<_> = findings
        .iter()
        .map(|f| {
            let level = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Info => "note",
            };
            json!({
                "ruleId": f.id,
                "level": level,
                "message": { "text": format!("{} Fix: {}", f.message, f.fix) },
                "locations": [{ "physicalLocation": { "artifactLocation": { "uri": source } } }],
                "properties": { "objects": f.objects },
            })
        })
        .collect();
    json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": { "driver": {
                "name": "drill audit",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// True when a finding at or above `fail_on` exists.
pub fn fails(findings: &[Finding], fail_on: Severity) -> bool {
    findings.iter().any(|f| f.severity >= fail_on)
}
