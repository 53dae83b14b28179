//! Writes a run's outputs: `journal.json`, `junit.xml` (one testcase per phase check, failure
//! messages naming phase, check, expected and observed), `summary.txt`, and the readiness memo
//! rendered from the journal (`memo.html`, `memo.md`).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::evidence::{RunJournal, Verdict};

/// Writes the three files of one scenario run into `dir`.
pub fn write_run(dir: &Path, j: &RunJournal) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_vec_pretty(j).context("serializing journal.json")?;
    write(dir, "journal.json", &json)?;
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    x.push_str(&junit_suite(j));
    x.push_str("</testsuites>\n");
    write(dir, "junit.xml", x.as_bytes())?;
    write(dir, "summary.txt", summary(j).as_bytes())?;
    let memo = crate::memo::memo_from_journal(j, &crate::memo::sha256_hex(&json));
    let r = switchyard_reports::render(&memo).context("rendering the memo")?;
    write(dir, crate::signoff::MEMO_HTML, r.html.as_bytes())?;
    write(dir, crate::signoff::MEMO_MD, r.markdown.as_bytes())?;
    Ok(())
}

/// Combined files of a suite.
pub fn write_suite(dir: &Path, runs: &[RunJournal], verdict: Verdict) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    let mut s = format!("suite: {}\n", verdict.as_str());
    for j in runs {
        x.push_str(&junit_suite(j));
        let _ = writeln!(
            s,
            "  {:<32} {}  ({})",
            j.scenario.name,
            j.status.as_str(),
            j.scenario.name
        );
    }
    x.push_str("</testsuites>\n");
    s.push('\n');
    for j in runs {
        s.push_str(&summary(j));
        s.push('\n');
    }
    write(dir, "junit.xml", x.as_bytes())?;
    write(dir, "summary.txt", s.as_bytes())?;
    Ok(())
}

/// Through a temporary file and a rename: a reader never sees a half-written file.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    crate::signoff::write_atomic(&dir.join(name), bytes, 0o644)
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => o.push(c),
        }
    }
    o
}

fn junit_suite(j: &RunJournal) -> String {
    let mut cases = String::new();
    let (mut tests, mut failures, mut errors, mut skipped) = (0, 0, 0, 0);
    for p in &j.phases {
        let mut entries: Vec<(String, Verdict, String)> = p
            .checks
            .iter()
            .map(|c| {
                (
                    format!("{}.{}", p.id, c.check),
                    c.verdict,
                    format!(
                        "phase {} check {}: {} (expected {}; observed {}; {} samples)",
                        p.id, c.check, c.message, c.expected, c.observed, c.samples
                    ),
                )
            })
            .collect();
        if matches!(p.verdict, Verdict::Invalid | Verdict::Aborted) || p.checks.is_empty() {
            entries.push((
                format!("{}.phase", p.id),
                p.verdict,
                format!(
                    "phase {}: {}",
                    p.id,
                    p.reason
                        .clone()
                        .unwrap_or_else(|| p.verdict.as_str().to_owned())
                ),
            ));
        }
        for (name, v, msg) in entries {
            tests += 1;
            let _ = write!(
                cases,
                "    <testcase classname=\"{}\" name=\"{}\">",
                esc(&j.scenario.name),
                esc(&name)
            );
            match v {
                Verdict::Passed => {}
                Verdict::Failed => {
                    failures += 1;
                    let _ = write!(
                        cases,
                        "<failure message=\"{}\" type=\"failed\"/>",
                        esc(&msg)
                    );
                }
                Verdict::Inconclusive => {
                    skipped += 1;
                    let _ = write!(cases, "<skipped message=\"inconclusive: {}\"/>", esc(&msg));
                }
                Verdict::Invalid | Verdict::Aborted => {
                    errors += 1;
                    let _ = write!(
                        cases,
                        "<error message=\"{}\" type=\"{}\"/>",
                        esc(&msg),
                        v.as_str()
                    );
                }
            }
            cases.push_str("</testcase>\n");
        }
    }
    format!(
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{:.3}\">\n{cases}  </testsuite>\n",
        esc(&j.scenario.name),
        j.duration_ms as f64 / 1000.0
    )
}

/// Human summary of one run.
pub fn summary(j: &RunJournal) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} (exit {}) seed {} in {:.1}s [{}]",
        j.scenario.name,
        j.status.as_str(),
        j.exit_code,
        j.seed,
        j.duration_ms as f64 / 1000.0,
        j.environment.mode
    );
    if let Some(r) = &j.abort_reason {
        let _ = writeln!(s, "  aborted: {r}");
    }
    for p in &j.phases {
        let served = p
            .served_by
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            s,
            "  phase {:<20} {:<12} sent {} ok {} failed {} overflow {} p95 {:.0}ms  served: {}",
            p.id,
            p.verdict.as_str(),
            p.requests.sent,
            p.requests.succeeded,
            p.requests.failed,
            p.requests.overflow,
            p.latency.p95_ms,
            served
        );
        if let Some(r) = &p.reason {
            let _ = writeln!(s, "    {r}");
        }
        for f in &p.faults {
            let _ = writeln!(
                s,
                "    fault {} on {} injected {}x",
                f.rule_id, f.provider, f.injected
            );
        }
        for c in &p.checks {
            let _ = writeln!(
                s,
                "    {:<8} {:<22} {}",
                c.verdict.as_str(),
                c.check,
                if c.verdict == Verdict::Passed {
                    format!("{} (expected {})", c.observed, c.expected)
                } else {
                    c.message.clone()
                }
            );
        }
        if p.header_cross_check.disagreements > 0 {
            let _ =
                writeln!(
                s,
                "    header cross-check: {} of {} gateway headers disagree with the mocks, e.g. {}",
                p.header_cross_check.disagreements,
                p.header_cross_check.compared,
                p.header_cross_check.examples.first().cloned().unwrap_or_default()
            );
        }
    }
    s
}
