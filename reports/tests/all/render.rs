//! Memo rendering: snapshots, determinism, charts, escaping, size and speed.

use switchyard_reports::model::{DeploymentSeries, FaultWindow, Memo, Phase, Traffic};
use switchyard_reports::render;

use crate::fixture;

/// The visible text of an HTML document: tags and the style block dropped, whitespace folded.
fn html_text(html: &str) -> String {
    let body = match (html.find("</style>"), html.find("<main>")) {
        (Some(_), Some(m)) => &html[m..],
        _ => html,
    };
    let mut out = String::new();
    let mut in_tag = false;
    for ch in body.chars() {
        match ch {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let mut lines = Vec::new();
    for line in out.lines() {
        let folded = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if !folded.is_empty() {
            lines.push(folded);
        }
    }
    lines.join("\n")
}

#[test]
fn markdown_snapshot() {
    let r = render(&fixture()).unwrap();
    insta::assert_snapshot!("memo_md", r.markdown);
}

#[test]
fn html_text_snapshot() {
    let r = render(&fixture()).unwrap();
    insta::assert_snapshot!("memo_html_text", html_text(&r.html));
}

#[test]
fn two_renders_are_byte_identical() {
    let memo = fixture();
    let a = render(&memo).unwrap();
    let b = render(&memo.clone()).unwrap();
    assert_eq!(a.html.as_bytes(), b.html.as_bytes());
    assert_eq!(a.markdown.as_bytes(), b.markdown.as_bytes());
}

#[test]
fn html_is_self_contained() {
    let r = render(&fixture()).unwrap();
    for needle in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!r.html.contains(needle), "memo.html contains {needle}");
    }
    assert!(r.html.contains("<style>"));
    assert!(r.html.contains("name=\"viewport\""));
    assert!(r.html.contains("@media print"));
}

#[test]
fn every_chart_has_data() {
    let memo = fixture();
    let r = render(&memo).unwrap();
    let charts: Vec<&str> = r.html.split("<svg").skip(1).collect();
    // One traffic chart per phase plus the latency chart.
    assert_eq!(charts.len(), memo.phases.len() + 1);
    for (i, chart) in charts.iter().enumerate() {
        let chart = &chart[..chart.find("</svg>").unwrap()];
        if chart.contains("traffic") {
            let areas = chart.matches("<path d=\"M").count();
            assert_eq!(areas, 3, "traffic chart {i} draws every deployment");
            // A path with points, not an empty `d`.
            assert!(chart.matches('L').count() > 10, "chart {i} has no points");
        } else {
            assert_eq!(
                chart.matches("<rect class=\"bar").count(),
                memo.phases.len() * 3
            );
        }
    }
    // Fault windows are shaded in the phases that have them.
    assert_eq!(r.html.matches("<rect class=\"fault\"").count(), 2);
}

#[test]
fn evidence_with_script_is_escaped() {
    let mut memo = fixture();
    memo.phases[0].checks[0].observed = "<script>alert(1)</script>".into();
    memo.header.title = "x\" onload=\"alert(2)".into();
    memo.findings[0].message = "a | b <img src=x onerror=alert(3)>".into();
    let r = render(&memo).unwrap();
    assert!(!r.html.contains("<script>"));
    assert!(
        r.html
            .contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;")
            || r.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
    );
    assert!(!r.html.contains("onload=\"alert"));
    assert!(!r.html.contains("<img"));
    assert!(!r.markdown.contains("<script>"));
    assert!(!r.markdown.contains("<img"));
    assert!(r.markdown.contains("a \\| b &lt;img"));
}

#[test]
fn newer_memo_version_is_refused() {
    let mut memo = fixture();
    memo.version = 99;
    let err = render(&memo).unwrap_err().to_string();
    assert!(err.contains("99") && err.contains("version 1"), "{err}");
}

/// A one-hour phase: 3,600 points for each of six deployments.
fn one_hour_memo() -> Memo {
    let mut memo = fixture();
    let deployments: Vec<String> = (0..6).map(|i| format!("deployment-{i}")).collect();
    let series = deployments
        .iter()
        .enumerate()
        .map(|(i, d)| DeploymentSeries {
            deployment: d.clone(),
            served: (0..3600u32).map(|t| (t * 7 + i as u32 * 13) % 17).collect(),
        })
        .collect();
    let mut phase: Phase = memo.phases[1].clone();
    phase.name = "one hour".into();
    phase.duration_s = 3600;
    phase.traffic = Traffic {
        start_s: 0,
        step_s: 1,
        series,
    };
    phase.fault_windows = vec![FaultWindow {
        deployment: "deployment-0".into(),
        fault: "status 503".into(),
        start_s: 600,
        end_s: 1800,
    }];
    memo.phases = vec![phase.clone(), phase];
    memo
}

#[test]
fn one_hour_journal_stays_under_two_megabytes() {
    let r = render(&one_hour_memo()).unwrap();
    assert!(
        r.html.len() < 2 * 1024 * 1024,
        "memo.html is {} bytes",
        r.html.len()
    );
    // 3,600 s are drawn as 360 buckets of 10 s.
    assert!(r.html.contains("10 s per point"));
}

/// Timing printout, not a timed assertion: `cargo test -p switchyard-reports --release
/// --test all -- --ignored --nocapture render_timing`.
#[test]
#[ignore]
// Wall-clock timing of a synchronous render; no tokio time involved.
#[allow(clippy::disallowed_types)]
fn render_timing() {
    let memo = one_hour_memo();
    let start = std::time::Instant::now();
    let runs = 10;
    let mut bytes = 0;
    for _ in 0..runs {
        bytes = render(&memo).unwrap().html.len();
    }
    println!(
        "one-hour memo (2 phases × 6 deployments × 3600 s): {:.1} ms per render, html {} bytes",
        start.elapsed().as_secs_f64() * 1000.0 / runs as f64,
        bytes
    );
}
