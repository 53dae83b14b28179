//! Verdicts from ground truth: joins each client request with the mock journal entries that
//! carry its correlation id (which deployments were tried, which faults hit, which one served),
//! then evaluates a phase's checks against the documented chain. Gateway headers are only
//! compared, never believed. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use hdrhistogram::Histogram;
use mock_providers::{EndKind, FaultEffect, JournalEntry};
use serde_json::json;

use crate::documented::{ChainKind, Documented};
use crate::evidence::{
    CheckEvidence, FaultEvidence, HeaderCrossCheck, LatencySummary, RequestCounts, TimePoint,
    Verdict,
};
use crate::load::{ClientOutcome, RequestRecord};
use crate::scenario::{FallbackTarget, Phase, Scenario, DEFAULT_MIN_SAMPLES};

/// Label of requests no mock served.
pub const NONE: &str = "none";

/// One upstream call of a client request, from a mock journal.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub deployment: String,
    pub t_ms: u64,
    pub fault: Option<String>,
    pub status: Option<u16>,
    pub end: EndKind,
    /// 2xx, complete, and no failure fault applied.
    pub served: bool,
}

/// Correlation id → its upstream calls in arrival order. `benign` are rule ids whose effect
/// does not fail the request (latency).
pub fn index_attempts(
    entries: &BTreeMap<String, Vec<JournalEntry>>,
    deployment_of: &dyn Fn(&str) -> String,
    benign: &HashSet<String>,
) -> HashMap<String, Vec<Attempt>> {
    let mut out: HashMap<String, Vec<Attempt>> = HashMap::new();
    for (mock, list) in entries {
        let dep = deployment_of(mock);
        for e in list {
            let Some(rid) = &e.correlation_id else {
                continue;
            };
            let fault_ok = e.fault_id.as_ref().is_none_or(|f| benign.contains(f));
            let served = e.outcome.status.is_some_and(|s| (200..300).contains(&s))
                && e.outcome.end == EndKind::Complete
                && fault_ok;
            out.entry(rid.clone()).or_default().push(Attempt {
                deployment: dep.clone(),
                t_ms: e.t_ms,
                fault: e.fault_id.clone(),
                status: e.outcome.status,
                end: e.outcome.end,
                served,
            });
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|a| a.t_ms);
    }
    out
}

/// The deployment that served `rid`, if any (the last serving call).
pub fn served_by<'a>(attempts: &'a HashMap<String, Vec<Attempt>>, rid: &str) -> Option<&'a str> {
    attempts
        .get(rid)?
        .iter()
        .rev()
        .find(|a| a.served)
        .map(|a| a.deployment.as_str())
}

fn path_of(attempts: &HashMap<String, Vec<Attempt>>, rid: &str) -> String {
    attempts.get(rid).map_or_else(
        || "(no upstream call)".to_owned(),
        |v| {
            v.iter()
                .map(|a| {
                    let what = match (&a.fault, a.served) {
                        (_, true) => "served".to_owned(),
                        (Some(f), false) => f.clone(),
                        (None, false) => a
                            .status
                            .map_or_else(|| a.end.as_str().to_owned(), |s| s.to_string()),
                    };
                    format!("{}({what})", a.deployment)
                })
                .collect::<Vec<_>>()
                .join(" -> ")
        },
    )
}

/// Whether a fault effect fails requests (everything but added latency).
pub fn is_failure(effect: &FaultEffect) -> bool {
    !matches!(effect, FaultEffect::Latency { .. })
}

/// What a phase's verification needs.
pub struct PhaseInput<'a> {
    pub scenario: &'a Scenario,
    pub phase: &'a Phase,
    pub records: &'a [RequestRecord],
    pub attempts: &'a HashMap<String, Vec<Attempt>>,
    pub documented: &'a Documented,
    pub faults: &'a [FaultEvidence],
    /// Successful-request latency histograms (µs) of earlier phases, by phase id.
    pub earlier_latency: &'a BTreeMap<String, Histogram<u64>>,
    /// This phase's successful-request latency histogram (µs).
    pub latency: &'a Histogram<u64>,
}

impl PhaseInput<'_> {
    fn min_samples(&self, own: Option<u64>) -> u64 {
        own.or(self.phase.expect.min_samples)
            .unwrap_or(DEFAULT_MIN_SAMPLES)
    }

    fn after_warmup(&self) -> impl Iterator<Item = &RequestRecord> {
        let w = self.phase.warmup.get().as_millis() as u64;
        self.records.iter().filter(move |r| r.sent_ms >= w)
    }

    fn key_of(&self, r: &RequestRecord) -> Option<&str> {
        self.scenario.traffic.profiles[r.profile].key.as_deref()
    }

    fn group_of_record(&self, r: &RequestRecord) -> String {
        let p = &self.scenario.traffic.profiles[r.profile];
        self.documented
            .resolve_model(p.key.as_deref(), &p.request.model)
    }

    /// Deployments whose providers have faults in this phase.
    fn faulted(&self) -> BTreeSet<String> {
        self.faults.iter().map(|f| f.deployment.clone()).collect()
    }
}

fn check(
    name: &str,
    samples: u64,
    min_samples: u64,
    ok: bool,
    expected: String,
    observed: String,
    fail_message: String,
) -> CheckEvidence {
    let (verdict, message) = if samples < min_samples {
        (
            Verdict::Inconclusive,
            format!("{samples} samples, fewer than min_samples {min_samples}: no verdict"),
        )
    } else if ok {
        (Verdict::Passed, format!("observed {observed}"))
    } else {
        (Verdict::Failed, fail_message)
    };
    CheckEvidence {
        check: name.to_owned(),
        verdict,
        samples,
        min_samples,
        expected,
        observed,
        message,
        detail: serde_json::Value::Null,
    }
}

fn counts_text(m: &BTreeMap<String, u64>, n: u64) -> String {
    let mut v: Vec<(&String, &u64)> = m.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, c)| format!("{k} {c}/{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every check of the phase's `expect`, in a fixed order.
pub fn evaluate(input: &PhaseInput<'_>) -> Vec<CheckEvidence> {
    let e = &input.phase.expect;
    let pid = &input.phase.id;
    let mut out = Vec::new();

    if let Some(fb) = &e.fallback {
        out.push(fallback_check(input, fb));
    }

    if let Some(max) = e.max_upstream_attempts {
        let mut samples = 0u64;
        let mut worst: Option<(&str, usize)> = None;
        let mut over = 0u64;
        for r in input.after_warmup() {
            let n = input.attempts.get(&r.rid).map_or(0, Vec::len);
            if n == 0 {
                continue;
            }
            samples += 1;
            if n > max as usize {
                over += 1;
            }
            if worst.is_none_or(|(_, w)| n > w) {
                worst = Some((&r.rid, n));
            }
        }
        let (wrid, wn) = worst.unwrap_or(("", 0));
        out.push(check(
            "max_upstream_attempts",
            samples,
            input.min_samples(None),
            over == 0,
            format!("at most {max} upstream calls per request"),
            format!("at most {wn} ({over} requests over {max})"),
            format!(
                "phase {pid}: {over} of {samples} requests made more than {max} upstream calls; worst {wrid}: {wn} calls: {}",
                path_of(input.attempts, wrid)
            ),
        ));
    }

    if let Some(ratio) = e.success_ratio {
        let mut n = 0u64;
        let mut ok = 0u64;
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for r in input.after_warmup() {
            n += 1;
            if r.outcome == ClientOutcome::Success {
                ok += 1;
            }
            *by.entry(r.outcome.as_str().to_owned()).or_insert(0) += 1;
        }
        let share = if n == 0 { 0.0 } else { ok as f64 / n as f64 };
        out.push(check(
            "success_ratio",
            n,
            input.min_samples(None),
            share >= ratio.0,
            format!(">= {}", ratio.0),
            format!("{share:.4} ({ok}/{n})"),
            format!(
                "phase {pid}: success ratio {share:.4} ({ok}/{n}) is below {}; client outcomes: {}",
                ratio.0,
                counts_text(&by, n)
            ),
        ));
    }

    if let Some(ld) = &e.latency_delta {
        let base = input.earlier_latency.get(&ld.vs_phase);
        let samples = base.map_or(0, |b| b.len().min(input.latency.len()));
        let q = ld.stat.quantile();
        let stat = |h: &Histogram<u64>| -> f64 {
            if h.is_empty() {
                0.0
            } else if q >= 1.0 {
                h.max() as f64 / 1000.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let before = base.map_or(0.0, stat);
        let now = stat(input.latency);
        let inc = now - before;
        let max_ms = ld.max_increase.get().as_secs_f64() * 1000.0;
        out.push(check(
            "latency_delta",
            samples,
            input.min_samples(ld.min_samples),
            inc <= max_ms,
            format!(
                "{} at most {max_ms:.0} ms above phase {}",
                ld.stat.as_str(),
                ld.vs_phase
            ),
            format!(
                "{} {now:.1} ms vs {before:.1} ms ({inc:+.1} ms)",
                ld.stat.as_str()
            ),
            format!(
                "phase {pid}: {} latency rose {inc:.1} ms over phase {} ({before:.1} -> {now:.1} ms), more than {max_ms:.0} ms",
                ld.stat.as_str(),
                ld.vs_phase
            ),
        ));
    }

    if let Some(tr) = &e.traffic_returns {
        out.push(traffic_returns_check(input, tr));
    }

    if e.no_truncated_success == Some(true) {
        let mut n = 0u64;
        let mut bad = Vec::new();
        for r in input.after_warmup() {
            if r.stream && r.status == Some(200) {
                n += 1;
                if r.outcome == ClientOutcome::Truncated {
                    bad.push(r.rid.clone());
                }
            }
        }
        let example = bad.first().cloned().unwrap_or_default();
        out.push(check(
            "no_truncated_success",
            n,
            input.min_samples(None),
            bad.is_empty(),
            "every 200 stream ends with [DONE] or an error event".to_owned(),
            format!("{} truncated of {n} streams", bad.len()),
            format!(
                "phase {pid}: {} of {n} streams answered 200 and ended without [DONE] or an error event (a truncation passed off as success); e.g. {example}: {}",
                bad.len(),
                path_of(input.attempts, &example)
            ),
        ));
    }

    if let Some(fi) = &e.faults_injected {
        let short: Vec<String> = input
            .faults
            .iter()
            .filter(|f| f.injected < fi.min)
            .map(|f| format!("{} on {} ({}x)", f.rule_id, f.provider, f.injected))
            .collect();
        let total: u64 = input.faults.iter().map(|f| f.injected).sum();
        let mut c = check(
            "faults_injected",
            total,
            0,
            short.is_empty(),
            format!("each fault injected at least {} times", fi.min),
            input
                .faults
                .iter()
                .map(|f| format!("{}={}", f.rule_id, f.injected))
                .collect::<Vec<_>>()
                .join(", "),
            format!(
                "phase {pid}: faults injected fewer than {} times: {}",
                fi.min,
                short.join(", ")
            ),
        );
        c.detail = json!(input
            .faults
            .iter()
            .map(|f| (f.rule_id.clone(), f.injected))
            .collect::<BTreeMap<_, _>>());
        out.push(c);
    }
    out
}

fn chain_kind(input: &PhaseInput<'_>, from: &str) -> ChainKind {
    let mut kind = ChainKind::General;
    for f in &input.phase.faults {
        let dep = input
            .scenario
            .providers
            .iter()
            .find(|p| p.id == f.provider)
            .map(|p| p.deployment_id());
        if dep != Some(from) {
            continue;
        }
        match f.effect {
            FaultEffect::ContextWindowExceeded {} => kind = ChainKind::ContextWindow,
            FaultEffect::ContentPolicy { .. } => kind = ChainKind::ContentPolicy,
            _ => {}
        }
    }
    kind
}

fn fallback_check(input: &PhaseInput<'_>, fb: &crate::scenario::FallbackExpect) -> CheckEvidence {
    let pid = &input.phase.id;
    let Some(group) = input.documented.group_of(&fb.from).map(str::to_owned) else {
        return check(
            "fallback",
            0,
            1,
            false,
            String::new(),
            String::new(),
            String::new(),
        );
    };
    let kind = fb.kind.unwrap_or_else(|| chain_kind(input, &fb.from));
    let mut down = input.faulted();
    down.insert(fb.from.clone());
    let from_ms = (input.phase.warmup.get().max(fb.within.get())).as_millis() as u64;
    let mut n = 0u64;
    let mut hit = 0u64;
    let mut served: BTreeMap<String, u64> = BTreeMap::new();
    // Expected servers and the documented chain, per key (profiles may use several keys).
    let mut docs: BTreeMap<Option<String>, (Vec<String>, String)> = BTreeMap::new();
    for r in input.records.iter().filter(|r| r.sent_ms >= from_ms) {
        if input.group_of_record(r) != group {
            continue;
        }
        if !fb.profiles.is_empty()
            && !fb
                .profiles
                .contains(&input.scenario.traffic.profiles[r.profile].id)
        {
            continue;
        }
        let key = input.key_of(r).map(str::to_owned);
        let (expected, _) = docs.entry(key.clone()).or_insert_with(|| {
            let expected = match &fb.to {
                FallbackTarget::Documented => {
                    input
                        .documented
                        .expected_servers(key.as_deref(), &group, kind, &down)
                }
                FallbackTarget::Explicit(v) => v.clone(),
            };
            let c = input.documented.chain(key.as_deref(), &group, kind);
            let text = format!(
                "{} chain for {}: {} -> [{}] (set by {})",
                kind.as_str(),
                c.subject,
                group,
                c.targets.join(", "),
                c.source
            );
            (expected, text)
        });
        n += 1;
        let s = served_by(input.attempts, &r.rid);
        let label = s.unwrap_or(NONE).to_owned();
        let ok = match s {
            Some(d) => expected.iter().any(|e| e == d),
            None => expected.is_empty(),
        };
        if ok {
            hit += 1;
        }
        *served.entry(label).or_insert(0) += 1;
    }
    let share = if n == 0 { 0.0 } else { hit as f64 / n as f64 };
    let expected_text = docs
        .iter()
        .map(|(k, (exp, chain))| {
            let who = k
                .as_deref()
                .map_or("master key".to_owned(), |k| format!("key {k}"));
            let exp = if exp.is_empty() {
                "no deployment (the documentation promises no fallback)".to_owned()
            } else {
                exp.join(" or ")
            };
            format!("{who}: {exp} (documented {chain})")
        })
        .collect::<Vec<_>>()
        .join("; ");
    let observed = format!(
        "{:.1}% on target; served by {}",
        share * 100.0,
        counts_text(&served, n)
    );
    let mut c = check(
        "fallback",
        n,
        input.min_samples(fb.min_samples),
        share >= fb.min_share,
        format!(
            "with {} failing, >= {:.0}% of {group} requests served by {expected_text}",
            fb.from,
            fb.min_share * 100.0
        ),
        observed.clone(),
        format!(
            "phase {pid}: with {} failing, requests for {group} were served by {} but the documentation says {expected_text}; only {:.1}% matched (min {:.0}%)",
            fb.from,
            counts_text(&served, n),
            share * 100.0,
            fb.min_share * 100.0
        ),
    );
    c.detail = json!({"served_by": served, "group": group, "kind": kind.as_str()});
    c
}

fn traffic_returns_check(
    input: &PhaseInput<'_>,
    tr: &crate::scenario::TrafficReturns,
) -> CheckEvidence {
    let pid = &input.phase.id;
    let group = input.documented.group_of(&tr.to).unwrap_or("").to_owned();
    let in_group: Vec<&RequestRecord> = input
        .records
        .iter()
        .filter(|r| input.group_of_record(r) == group)
        .collect();
    let cooldown = in_group
        .iter()
        .map(|r| input.documented.cooldown(input.key_of(r), &tr.to))
        .max()
        .unwrap_or_else(|| input.documented.cooldown(None, &tr.to));
    let within = tr
        .within
        .map_or_else(|| cooldown + std::time::Duration::from_secs(2), |w| w.get());
    let from_ms = within.max(input.phase.warmup.get()).as_millis() as u64;
    let mut n = 0u64;
    let mut hit = 0u64;
    let mut served: BTreeMap<String, u64> = BTreeMap::new();
    // Per second: (to, all) to report when the traffic came back.
    let mut per_sec: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for r in &in_group {
        let s = served_by(input.attempts, &r.rid);
        let e = per_sec.entry(r.sent_ms / 1000).or_insert((0, 0));
        e.1 += 1;
        if s == Some(tr.to.as_str()) {
            e.0 += 1;
        }
        if r.sent_ms < from_ms {
            continue;
        }
        n += 1;
        if s == Some(tr.to.as_str()) {
            hit += 1;
        }
        *served.entry(s.unwrap_or(NONE).to_owned()).or_insert(0) += 1;
    }
    let returned_at = per_sec
        .iter()
        .find(|(_, (t, a))| *a > 0 && (*t as f64 / *a as f64) >= tr.min_share)
        .map(|(s, _)| *s);
    let share = if n == 0 { 0.0 } else { hit as f64 / n as f64 };
    let mut c = check(
        "traffic_returns",
        n,
        input.min_samples(tr.min_samples),
        share >= tr.min_share,
        format!(
            ">= {:.0}% of {group} requests served by {} from {:.1}s after faults cleared (documented cooldown {:.1}s)",
            tr.min_share * 100.0,
            tr.to,
            within.as_secs_f64(),
            cooldown.as_secs_f64()
        ),
        format!(
            "{:.1}% on {}; returned at {}",
            share * 100.0,
            tr.to,
            returned_at.map_or_else(|| "never".to_owned(), |s| format!("{s}s"))
        ),
        format!(
            "phase {pid}: traffic did not return to {} within {:.1}s after faults cleared (documented cooldown {:.1}s): it served {:.1}% of {n} requests for {group}, the rest were served by {}",
            tr.to,
            within.as_secs_f64(),
            cooldown.as_secs_f64(),
            share * 100.0,
            counts_text(&served, n)
        ),
    );
    c.detail = json!({"served_by": served, "returned_at_s": returned_at, "within_ms": within.as_millis() as u64});
    c
}

/// The phase verdict: invalid when a fault was never injected, else the worst check.
pub fn phase_verdict(
    checks: &[CheckEvidence],
    faults: &[FaultEvidence],
) -> (Verdict, Option<String>) {
    let never: Vec<String> = faults
        .iter()
        .filter(|f| f.injected == 0)
        .map(|f| format!("{} on {}", f.rule_id, f.provider))
        .collect();
    if !never.is_empty() {
        return (
            Verdict::Invalid,
            Some(format!(
                "fault never injected: {} (the phase did not test what it claims)",
                never.join(", ")
            )),
        );
    }
    if checks.iter().any(|c| c.verdict == Verdict::Failed) {
        (Verdict::Failed, None)
    } else if checks.iter().any(|c| c.verdict == Verdict::Inconclusive) {
        (Verdict::Inconclusive, None)
    } else {
        (Verdict::Passed, None)
    }
}

/// Counts, served-by, attempts per request, time series and header cross-check of a phase.
pub struct PhaseStats {
    pub requests: RequestCounts,
    pub served_by: BTreeMap<String, u64>,
    pub upstream_attempts: BTreeMap<u32, u64>,
    pub time_series: Vec<TimePoint>,
    pub header: HeaderCrossCheck,
}

pub fn phase_stats(
    phase_id: &str,
    phase_start_s: u64,
    duration_s: u64,
    records: &[RequestRecord],
    attempts: &HashMap<String, Vec<Attempt>>,
) -> PhaseStats {
    let mut requests = RequestCounts::default();
    let mut served: BTreeMap<String, u64> = BTreeMap::new();
    let mut ups: BTreeMap<u32, u64> = BTreeMap::new();
    let buckets = duration_s.max(1) as usize;
    let mut series: Vec<TimePoint> = (0..buckets)
        .map(|i| TimePoint {
            t_s: phase_start_s + i as u64,
            phase: phase_id.to_owned(),
            sent: 0,
            succeeded: 0,
            failed: 0,
            served: BTreeMap::new(),
        })
        .collect();
    let mut header = HeaderCrossCheck::default();
    for r in records {
        requests.sent += 1;
        if r.outcome == ClientOutcome::Success {
            requests.succeeded += 1;
        } else {
            requests.failed += 1;
        }
        *requests
            .by_outcome
            .entry(r.outcome.as_str().to_owned())
            .or_insert(0) += 1;
        let st = r
            .status
            .map_or_else(|| "none".to_owned(), |s| s.to_string());
        *requests.by_status.entry(st).or_insert(0) += 1;
        let s = served_by(attempts, &r.rid);
        let label = s.unwrap_or(NONE).to_owned();
        *served.entry(label.clone()).or_insert(0) += 1;
        let n = attempts.get(&r.rid).map_or(0, Vec::len) as u32;
        *ups.entry(n).or_insert(0) += 1;
        let b = ((r.sent_ms / 1000) as usize).min(buckets - 1);
        let p = &mut series[b];
        p.sent += 1;
        if r.outcome == ClientOutcome::Success {
            p.succeeded += 1;
        } else {
            p.failed += 1;
        }
        *p.served.entry(label).or_insert(0) += 1;
        if let (Some(h), Some(s)) = (&r.header_deployment, s) {
            if r.outcome == ClientOutcome::Success {
                header.compared += 1;
                if h != s {
                    header.disagreements += 1;
                    if header.examples.len() < 5 {
                        header.examples.push(format!(
                            "{}: gateway header says {h}, the mocks say {s}",
                            r.rid
                        ));
                    }
                }
            }
        }
    }
    PhaseStats {
        requests,
        served_by: served,
        upstream_attempts: ups,
        time_series: series,
        header,
    }
}

/// Latency summary helper re-exported for the runner.
pub fn summary(h: &Histogram<u64>) -> LatencySummary {
    LatencySummary::from_us(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mock_providers::{Dialect, Endpoint, Outcome};

    fn entry(rid: &str, t: u64, status: u16, end: EndKind, fault: Option<&str>) -> JournalEntry {
        JournalEntry {
            seq: t,
            t_ms: t,
            duration_ms: 1,
            deployment: "m".into(),
            dialect: Dialect::Openai,
            endpoint: Endpoint::Chat,
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            model: None,
            stream: false,
            prompt_tokens: 4,
            correlation_id: Some(rid.into()),
            fault_id: fault.map(str::to_owned),
            rejected: None,
            outcome: Outcome {
                status: Some(status),
                bytes: 10,
                chunks: 0,
                end,
            },
        }
    }

    #[test]
    fn only_a_complete_2xx_without_a_failure_fault_serves() {
        let mut entries = BTreeMap::new();
        entries.insert(
            "east".to_owned(),
            vec![
                entry("r1", 1, 503, EndKind::ErrorStatus, Some("p.outage")),
                entry("r2", 2, 200, EndKind::Complete, Some("p.slow")),
                entry("r3", 3, 200, EndKind::Complete, Some("p.policy")),
            ],
        );
        entries.insert(
            "west".to_owned(),
            vec![
                entry("r1", 5, 200, EndKind::Complete, None),
                entry("r3", 6, 200, EndKind::Cut, None),
            ],
        );
        let benign: HashSet<String> = ["p.slow".to_owned()].into();
        let a = index_attempts(&entries, &|m: &str| format!("{m}-dep"), &benign);
        assert_eq!(served_by(&a, "r1"), Some("west-dep"));
        assert_eq!(a["r1"].len(), 2);
        // Latency faults still serve; a 200 with a policy fault or a cut body does not.
        assert_eq!(served_by(&a, "r2"), Some("east-dep"));
        assert_eq!(served_by(&a, "r3"), None);
        assert_eq!(path_of(&a, "r1"), "east-dep(p.outage) -> west-dep(served)");
    }

    #[test]
    fn a_fault_never_injected_invalidates_the_phase_whatever_the_checks() {
        let f = FaultEvidence {
            provider: "east".into(),
            deployment: "east".into(),
            rule_id: "p.outage".into(),
            effect: serde_json::Value::Null,
            selection: serde_json::Value::Null,
            start_offset_ms: 0,
            end_offset_ms: 1,
            injected: 0,
        };
        let (v, why) = phase_verdict(&[], std::slice::from_ref(&f));
        assert_eq!(v, Verdict::Invalid);
        assert!(why.unwrap().contains("p.outage on east"));
        let f = FaultEvidence { injected: 3, ..f };
        let c = check(
            "x",
            5,
            20,
            true,
            String::new(),
            String::new(),
            String::new(),
        );
        assert_eq!(c.verdict, Verdict::Inconclusive);
        assert_eq!(phase_verdict(&[c], &[f]).0, Verdict::Inconclusive);
    }
}
