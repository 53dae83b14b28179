//! Renders a [`Memo`] to `memo.html` and `memo.md` with the embedded tera templates. Numbers are
//! formatted here with pinned precision, so the same memo always renders the same bytes; the
//! templates only place strings. Autoescape is on for both outputs and nothing is marked safe.

use std::collections::BTreeMap;

use serde::Serialize;
use tera::{Context, Tera};

use crate::chart::{self, LatencyChart, TrafficChart, PALETTE};
use crate::model::{
    CheckVerdict, Finding, Memo, Risk, SettingRow, Severity, Verdict, MEMO_VERSION,
};

const HTML_TEMPLATE: &str = include_str!("../templates/memo.html.tera");
const MD_TEMPLATE: &str = include_str!("../templates/memo.md.tera");

/// The two rendered documents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub html: String,
    pub markdown: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("memo version {found} is newer than this drill understands (version {supported})\nhint: re-render with a newer drill")]
    NewerVersion { found: u32, supported: u32 },
    #[error("cannot render the memo: {0}")]
    Template(String),
}

fn template_error(e: tera::Error) -> RenderError {
    // tera nests the useful message in `source()`; keep the whole chain on one line.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    RenderError::Template(msg)
}

/// HTML escaping for text and attribute values (`&<>"'`).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Markdown escaping for table cells and inline text: HTML-significant characters become
/// entities (GitHub renders no raw HTML from evidence), Markdown punctuation is backslashed,
/// and line breaks become spaces so a value cannot break a table row.
pub fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' => {
                out.push('\\');
                out.push(ch);
            }
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1} ms")
    } else {
        "n/a".to_owned()
    }
}

fn signed_ms(v: f64) -> String {
    if !v.is_finite() {
        "n/a".to_owned()
    } else if v >= 0.0 {
        format!("+{v:.1} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0.0%".to_owned()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn opt_u64(v: Option<u64>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| v.to_string())
}

fn verdict_class(v: CheckVerdict) -> &'static str {
    match v {
        CheckVerdict::Pass => "pass",
        CheckVerdict::Fail => "fail",
        CheckVerdict::Inconclusive => "inconclusive",
    }
}

#[derive(Serialize)]
struct HeaderView<'a> {
    title: &'a str,
    status: &'a str,
    author: &'a str,
    date: &'a str,
    reviewers: String,
    approvers: String,
    approval_date: &'a str,
    revisit_date: &'a str,
    scenario: &'a str,
    target: &'a str,
}

#[derive(Serialize)]
struct VerdictView<'a> {
    text: &'static str,
    class: &'static str,
    summary: &'a str,
    passed: u32,
    failed: u32,
    inconclusive: u32,
    requests: u64,
}

#[derive(Serialize)]
struct InventoryView<'a> {
    model_group: &'a str,
    deployment_id: &'a str,
    provider: &'a str,
    region: &'a str,
    role: &'static str,
    rpm: String,
    tpm: String,
    color: String,
}

#[derive(Serialize)]
struct ChainView<'a> {
    kind: &'a str,
    group: &'a str,
    targets: String,
    provenance: &'static str,
}

#[derive(Serialize)]
struct ScopeView<'a> {
    scope: &'a str,
    chains: Vec<ChainView<'a>>,
}

#[derive(Serialize)]
struct FindingView<'a> {
    id: &'a str,
    severity: &'static str,
    objects: String,
    message: &'a str,
    fix: &'a str,
}

#[derive(Serialize)]
struct CheckView<'a> {
    name: &'a str,
    expected: &'a str,
    observed: &'a str,
    verdict: &'static str,
    class: &'static str,
}

#[derive(Serialize)]
struct InjectionView<'a> {
    deployment: &'a str,
    fault: &'a str,
    count: u64,
}

#[derive(Serialize)]
struct ShareView {
    deployment: String,
    color: String,
    served: u64,
    share: String,
}

#[derive(Serialize)]
struct LatencyView {
    p50: String,
    p90: String,
    p95: String,
    p99: String,
    max: String,
}

#[derive(Serialize)]
struct PhaseView<'a> {
    index: usize,
    name: &'a str,
    window: String,
    requests: u64,
    errors: u64,
    error_rate: String,
    injected: Vec<InjectionView<'a>>,
    checks: Vec<CheckView<'a>>,
    latency: LatencyView,
    shares: Vec<ShareView>,
    chart: TrafficChart,
    faults: Vec<String>,
}

#[derive(Serialize)]
struct SignoffView<'a> {
    test_date: &'a str,
    failed_deployment: &'a str,
    observed_fallback: &'a str,
    latency_delta: String,
    verdict: &'static str,
    class: &'static str,
    open_risks: String,
}

#[derive(Serialize)]
struct View<'a> {
    version: u32,
    header: HeaderView<'a>,
    verdict: VerdictView<'a>,
    inventory: Vec<InventoryView<'a>>,
    fallback_order: Vec<ScopeView<'a>>,
    settings: &'a [SettingRow],
    findings: Vec<FindingView<'a>>,
    finding_counts: String,
    phases: Vec<PhaseView<'a>>,
    latency_chart: LatencyChart,
    signoff: Vec<SignoffView<'a>>,
    risks: &'a [Risk],
    digests: &'a crate::model::Digests,
}

fn join(v: &[String], empty: &str) -> String {
    if v.is_empty() {
        empty.to_owned()
    } else {
        v.join(", ")
    }
}

fn finding_view(f: &Finding) -> FindingView<'_> {
    FindingView {
        id: &f.id,
        severity: f.severity.as_str(),
        objects: join(&f.objects, "—"),
        message: &f.message,
        fix: &f.fix,
    }
}

fn view(memo: &Memo) -> View<'_> {
    // Colours follow inventory order, then any deployment seen only in traffic.
    let mut colors: BTreeMap<&str, String> = BTreeMap::new();
    let mut next = 0usize;
    let names = memo
        .inventory
        .iter()
        .map(|r| r.deployment_id.as_str())
        .chain(
            memo.phases
                .iter()
                .flat_map(|p| p.traffic.series.iter().map(|s| s.deployment.as_str())),
        );
    for name in names {
        if !colors.contains_key(name) {
            colors.insert(name, PALETTE[next % PALETTE.len()].to_owned());
            next += 1;
        }
    }
    let color = |d: &str| {
        colors
            .get(d)
            .cloned()
            .unwrap_or_else(|| PALETTE[0].to_owned())
    };
    let h = &memo.header;
    let v = &memo.verdict;
    let (text, class) = match v.verdict {
        Verdict::Ready => ("READY", "pass"),
        Verdict::NotReady => ("NOT READY", "fail"),
        Verdict::Inconclusive => ("INCONCLUSIVE", "inconclusive"),
    };
    let mut findings: Vec<&Finding> = memo.findings.iter().collect();
    // Most severe first; the producer's order otherwise (stable sort).
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let count = |s: Severity| memo.findings.iter().filter(|f| f.severity == s).count();
    let phases = memo
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut shares: Vec<ShareView> = p
                .traffic
                .series
                .iter()
                .map(|s| ShareView {
                    deployment: s.deployment.clone(),
                    color: color(&s.deployment),
                    served: s.served.iter().map(|v| u64::from(*v)).sum(),
                    share: String::new(),
                })
                .collect();
            let total: u64 = shares.iter().map(|s| s.served).sum();
            for s in &mut shares {
                s.share = percent(s.served, total);
            }
            PhaseView {
                index: i + 1,
                name: &p.name,
                window: format!("{}–{} s", p.start_s, p.start_s + p.duration_s),
                requests: p.requests,
                errors: p.errors,
                error_rate: percent(p.errors, p.requests),
                injected: p
                    .injected
                    .iter()
                    .map(|j| InjectionView {
                        deployment: &j.deployment,
                        fault: &j.fault,
                        count: j.count,
                    })
                    .collect(),
                checks: p
                    .checks
                    .iter()
                    .map(|c| CheckView {
                        name: &c.name,
                        expected: &c.expected,
                        observed: &c.observed,
                        verdict: c.verdict.as_str(),
                        class: verdict_class(c.verdict),
                    })
                    .collect(),
                latency: LatencyView {
                    p50: ms(p.latency.p50_ms),
                    p90: ms(p.latency.p90_ms),
                    p95: ms(p.latency.p95_ms),
                    p99: ms(p.latency.p99_ms),
                    max: ms(p.latency.max_ms),
                },
                shares,
                chart: chart::traffic(p, &color),
                faults: p
                    .fault_windows
                    .iter()
                    .map(|w| {
                        format!(
                            "{}: {} ({}–{} s)",
                            w.deployment, w.fault, w.start_s, w.end_s
                        )
                    })
                    .collect(),
            }
        })
        .collect();
    View {
        version: memo.version,
        header: HeaderView {
            title: &h.title,
            status: &h.status,
            author: &h.author,
            date: &h.date,
            reviewers: join(&h.reviewers, "—"),
            approvers: join(&h.approvers, "—"),
            approval_date: h.approval_date.as_deref().unwrap_or("—"),
            revisit_date: h.revisit_date.as_deref().unwrap_or("—"),
            scenario: &h.scenario,
            target: &h.target,
        },
        verdict: VerdictView {
            text,
            class,
            summary: &v.summary,
            passed: v.checks_passed,
            failed: v.checks_failed,
            inconclusive: v.checks_inconclusive,
            requests: v.requests,
        },
        inventory: memo
            .inventory
            .iter()
            .map(|r| InventoryView {
                model_group: &r.model_group,
                deployment_id: &r.deployment_id,
                provider: &r.provider,
                region: r.region.as_deref().unwrap_or("—"),
                role: r.role.as_str(),
                rpm: opt_u64(r.rpm),
                tpm: opt_u64(r.tpm),
                color: color(&r.deployment_id),
            })
            .collect(),
        fallback_order: memo
            .fallback_order
            .iter()
            .map(|s| ScopeView {
                scope: &s.scope,
                chains: s
                    .chains
                    .iter()
                    .map(|c| ChainView {
                        kind: &c.kind,
                        group: &c.group,
                        targets: if c.targets.is_empty() {
                            "(none)".to_owned()
                        } else {
                            c.targets.join(" → ")
                        },
                        provenance: c.provenance.as_str(),
                    })
                    .collect(),
            })
            .collect(),
        settings: &memo.settings,
        findings: findings.into_iter().map(finding_view).collect(),
        finding_counts: format!(
            "{} error, {} warning, {} info",
            count(Severity::Error),
            count(Severity::Warning),
            count(Severity::Info)
        ),
        phases,
        latency_chart: chart::latency(&memo.phases),
        signoff: memo
            .signoff
            .iter()
            .map(|r| SignoffView {
                test_date: &r.test_date,
                failed_deployment: &r.failed_deployment,
                observed_fallback: &r.observed_fallback,
                latency_delta: signed_ms(r.latency_delta_ms),
                verdict: r.verdict.as_str(),
                class: verdict_class(r.verdict),
                open_risks: join(&r.open_risks, "none"),
            })
            .collect(),
        risks: &memo.residual_risks,
        digests: &memo.digests,
    }
}

fn engine(name: &str, text: &str, escape: fn(&str) -> String) -> Result<Tera, RenderError> {
    let mut tera = Tera::default();
    tera.add_raw_template(name, text).map_err(template_error)?;
    // Both outputs are autoescaped, each with the escaping its format needs.
    tera.autoescape_on(vec![".html", ".md"]);
    tera.set_escape_fn(escape);
    Ok(tera)
}

/// Renders both documents. Pure: the same memo always gives the same bytes.
pub fn render(memo: &Memo) -> Result<Rendered, RenderError> {
    if memo.version > MEMO_VERSION {
        return Err(RenderError::NewerVersion {
            found: memo.version,
            supported: MEMO_VERSION,
        });
    }
    let ctx = Context::from_serialize(view(memo)).map_err(template_error)?;
    let html = engine("memo.html", HTML_TEMPLATE, escape_html)?
        .render("memo.html", &ctx)
        .map_err(template_error)?;
    let markdown = engine("memo.md", MD_TEMPLATE, escape_markdown)?
        .render("memo.md", &ctx)
        .map_err(template_error)?;
    Ok(Rendered { html, markdown })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escape_keeps_table_rows_whole() {
        assert_eq!(escape_markdown("a|b\nc"), "a\\|b c");
        assert_eq!(escape_markdown("<script>"), "&lt;script&gt;");
    }

    #[test]
    fn html_escape_covers_attributes() {
        assert_eq!(escape_html(r#"a"b'<&>"#), "a&quot;b&#39;&lt;&amp;&gt;");
    }

    #[test]
    fn signed_ms_pins_sign_and_precision() {
        assert_eq!(signed_ms(412.04), "+412.0 ms");
        assert_eq!(signed_ms(-3.26), "-3.3 ms");
        assert_eq!(signed_ms(f64::NAN), "n/a");
    }
}
