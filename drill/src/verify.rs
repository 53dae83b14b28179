//! Verdicts from ground truth: joins each client request with the mock journal entries that
//! carry its correlation id (which deployments were tried, which faults hit, which one served),
//! then evaluates a phase's checks against the documented chain. Gateway headers are only
//! compared, never believed. Pure: no I/O.
//!
//! Incremental, so memory does not grow with the run's length: each finished request is folded
//! into the phase's aggregates ([`PhaseFold`]: counters per check, histograms, a per-second
//! time series) together with its journal entries, then dropped. [`Verifier`] holds a request
//! until the mocks' journals are known to hold every upstream call it made (a watermark of the
//! mocks' received/completed counters, like the end-of-phase settle), so what is retained is
//! bounded by the requests in flight plus that wait, never by the phase's length.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use hdrhistogram::Histogram;
use mock_providers::{EndKind, FaultEffect, JournalEntry};
use serde_json::json;

use crate::documented::{ChainKind, Documented};
use crate::evidence::{
    CheckEvidence, FaultEvidence, HeaderCrossCheck, LatencySummary, RequestCounts, TimePoint,
    Verdict,
};
use crate::load::{new_histogram, ClientOutcome, RequestRecord};
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

/// Where a call sorts among its request's calls: (arrival in µs, mock rank, journal seq). The
/// mocks share one clock; milliseconds were too coarse (a fallback call often arrives within
/// the millisecond of the failure before it, and the tie went to the mock's rank).
type CallOrder = (u64, usize, u64);

/// A journal entry's arrival in microseconds (from `t_ms` for journals without `t_us`).
fn arrival_us(e: &JournalEntry) -> u64 {
    if e.t_us > 0 || e.t_ms == 0 {
        e.t_us
    } else {
        e.t_ms * 1000
    }
}

/// Correlation id → its upstream calls, filled from journal drains. Calls of one request are
/// ordered by arrival time, then mock id, then journal order, whatever the drains' timing.
pub struct AttemptIndex {
    /// Mock id → deployment id and rank (mock ids in order).
    mocks: BTreeMap<String, (String, usize)>,
    benign: HashSet<String>,
    /// rid → (first drained at, calls with their order).
    by_rid: HashMap<String, (u64, Vec<(CallOrder, Attempt)>)>,
}

impl AttemptIndex {
    /// `benign` are rule ids whose effect does not fail the request (latency).
    pub fn new(
        mock_ids: impl IntoIterator<Item = String>,
        deployment_of: &dyn Fn(&str) -> String,
        benign: HashSet<String>,
    ) -> Self {
        let ids: BTreeSet<String> = mock_ids.into_iter().collect();
        let mocks = ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                let dep = deployment_of(&id);
                (id, (dep, i))
            })
            .collect();
        Self {
            mocks,
            benign,
            by_rid: HashMap::new(),
        }
    }

    /// Adds drained entries (mock id → entries in journal order), drained at `now_ms`.
    pub fn add(&mut self, entries: BTreeMap<String, Vec<JournalEntry>>, now_ms: u64) {
        for (mock, list) in entries {
            let (dep, rank) = self
                .mocks
                .get(&mock)
                .cloned()
                .unwrap_or_else(|| (mock.clone(), usize::MAX));
            for e in list {
                let at = arrival_us(&e);
                let Some(rid) = e.correlation_id else {
                    continue;
                };
                let fault_ok = e.fault_id.as_ref().is_none_or(|f| self.benign.contains(f));
                let served = e.outcome.status.is_some_and(|s| (200..300).contains(&s))
                    && e.outcome.end == EndKind::Complete
                    && fault_ok;
                self.by_rid
                    .entry(rid)
                    .or_insert_with(|| (now_ms, Vec::new()))
                    .1
                    .push((
                        (at, rank, e.seq),
                        Attempt {
                            deployment: dep.clone(),
                            t_ms: e.t_ms,
                            fault: e.fault_id,
                            status: e.outcome.status,
                            end: e.outcome.end,
                            served,
                        },
                    ));
            }
        }
    }

    /// Removes and returns the calls of `rid` in order (empty: no upstream call).
    pub fn take(&mut self, rid: &str) -> Vec<Attempt> {
        let mut v = self.by_rid.remove(rid).map(|(_, v)| v).unwrap_or_default();
        v.sort_by_key(|(k, _)| *k);
        v.into_iter().map(|(_, a)| a).collect()
    }

    /// Forgets calls first drained before `before_ms` (requests that never finished, or calls
    /// made after their request was verified).
    pub fn evict_older(&mut self, before_ms: u64) {
        self.by_rid.retain(|_, (t, _)| *t >= before_ms);
    }

    /// Correlation ids held.
    pub fn len(&self) -> usize {
        self.by_rid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_rid.is_empty()
    }
}

/// Correlation id → its upstream calls in arrival order, all at once (tests and tools).
pub fn index_attempts(
    entries: &BTreeMap<String, Vec<JournalEntry>>,
    deployment_of: &dyn Fn(&str) -> String,
    benign: &HashSet<String>,
) -> HashMap<String, Vec<Attempt>> {
    let mut index = AttemptIndex::new(entries.keys().cloned(), deployment_of, benign.clone());
    index.add(entries.clone(), 0);
    let rids: Vec<String> = index.by_rid.keys().cloned().collect();
    rids.into_iter()
        .map(|rid| {
            let v = index.take(&rid);
            (rid, v)
        })
        .collect()
}

/// The deployment that served a request with these calls, if any (the last serving call).
pub fn served_of(attempts: &[Attempt]) -> Option<&str> {
    attempts
        .iter()
        .rev()
        .find(|a| a.served)
        .map(|a| a.deployment.as_str())
}

/// The deployment that served `rid`, if any.
pub fn served_by<'a>(attempts: &'a HashMap<String, Vec<Attempt>>, rid: &str) -> Option<&'a str> {
    served_of(attempts.get(rid)?)
}

/// The calls of one request as `dep(what) -> dep(what)`.
pub fn path_text(attempts: &[Attempt]) -> String {
    if attempts.is_empty() {
        return "(no upstream call)".to_owned();
    }
    attempts
        .iter()
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
}

#[cfg(test)]
fn path_of(attempts: &HashMap<String, Vec<Attempt>>, rid: &str) -> String {
    path_text(attempts.get(rid).map_or(&[], Vec::as_slice))
}

/// Whether a fault effect fails requests (everything but added latency).
pub fn is_failure(effect: &FaultEffect) -> bool {
    !matches!(effect, FaultEffect::Latency { .. })
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

/// Counts, served-by, attempts per request, time series and header cross-check of a phase.
pub struct PhaseStats {
    pub requests: RequestCounts,
    pub served_by: BTreeMap<String, u64>,
    pub upstream_attempts: BTreeMap<u32, u64>,
    pub time_series: Vec<TimePoint>,
    pub header: HeaderCrossCheck,
}

/// What a phase's verification produced.
pub struct PhaseResult {
    pub checks: Vec<CheckEvidence>,
    pub stats: PhaseStats,
    /// Successful-request latency after warmup, µs.
    pub latency: Histogram<u64>,
    /// Successful streams' time to first byte after warmup, µs.
    pub ttft: Histogram<u64>,
}

/// `fallback`: requests for the group after `within`, and where they went.
struct FallbackAcc {
    group: String,
    kind: ChainKind,
    down: BTreeSet<String>,
    from_ms: u64,
    /// Per profile: whether its requests count.
    counted: Vec<bool>,
    n: u64,
    hit: u64,
    served: BTreeMap<String, u64>,
    /// Per key: expected servers and the documented chain's text.
    docs: BTreeMap<Option<String>, (Vec<String>, String)>,
}

/// `traffic_returns`: the window start depends on the largest documented cooldown among the
/// keys that sent requests, so counts are kept per candidate start (one per distinct cooldown).
struct ReturnsAcc {
    group: String,
    in_group: Vec<bool>,
    /// Per profile: its documented cooldown of `to`.
    cooldown: Vec<std::time::Duration>,
    /// Largest cooldown of a profile that sent a request.
    seen: Option<std::time::Duration>,
    /// Window start (ms) → (n, hit, served).
    windows: BTreeMap<u64, (u64, u64, BTreeMap<String, u64>)>,
    per_sec: BTreeMap<u64, (u64, u64)>,
}

/// A phase's aggregates, folded one finished request at a time. Memory: constant per check,
/// one time point per second of the phase.
pub struct PhaseFold<'a> {
    scenario: &'a Scenario,
    phase: &'a Phase,
    documented: &'a Documented,
    warm_ms: u64,
    latency: Histogram<u64>,
    ttft: Histogram<u64>,
    requests: RequestCounts,
    served: BTreeMap<String, u64>,
    ups: BTreeMap<u32, u64>,
    series: Vec<TimePoint>,
    header: HeaderCrossCheck,
    fallback: Option<Option<FallbackAcc>>,
    /// max_upstream_attempts: samples, over, worst (rid, calls, path).
    att_samples: u64,
    att_over: u64,
    att_worst: Option<(String, usize, String)>,
    /// success_ratio: n, ok, outcomes.
    sr_n: u64,
    sr_ok: u64,
    sr_by: BTreeMap<String, u64>,
    returns: Option<ReturnsAcc>,
    /// no_truncated_success: streams, truncated, first example (rid, path).
    tr_n: u64,
    tr_bad: u64,
    tr_example: Option<(String, String)>,
}

impl<'a> PhaseFold<'a> {
    /// `faulted`: deployments whose providers have faults in this phase.
    pub fn new(
        scenario: &'a Scenario,
        phase: &'a Phase,
        documented: &'a Documented,
        faulted: &BTreeSet<String>,
        phase_start_s: u64,
        duration_s: u64,
    ) -> Self {
        let buckets = duration_s.max(1);
        let series = (0..buckets)
            .map(|i| TimePoint {
                t_s: phase_start_s + i,
                phase: phase.id.clone(),
                sent: 0,
                succeeded: 0,
                failed: 0,
                served: BTreeMap::new(),
            })
            .collect();
        let warm_ms = phase.warmup.get().as_millis() as u64;
        let profiles = &scenario.traffic.profiles;
        let group_of_profile = |i: usize| {
            let p = &profiles[i];
            documented.resolve_model(p.key.as_deref(), &p.request.model)
        };
        let fallback = phase.expect.fallback.as_ref().map(|fb| {
            let group = documented.group_of(&fb.from)?.to_owned();
            let kind = fb
                .kind
                .unwrap_or_else(|| chain_kind(scenario, phase, &fb.from));
            let mut down = faulted.clone();
            down.insert(fb.from.clone());
            let counted = (0..profiles.len())
                .map(|i| {
                    group_of_profile(i) == group
                        && (fb.profiles.is_empty() || fb.profiles.contains(&profiles[i].id))
                })
                .collect();
            Some(FallbackAcc {
                from_ms: (phase.warmup.get().max(fb.within.get())).as_millis() as u64,
                group,
                kind,
                down,
                counted,
                n: 0,
                hit: 0,
                served: BTreeMap::new(),
                docs: BTreeMap::new(),
            })
        });
        let returns = phase.expect.traffic_returns.as_ref().map(|tr| {
            let group = documented.group_of(&tr.to).unwrap_or("").to_owned();
            let in_group: Vec<bool> = (0..profiles.len())
                .map(|i| group_of_profile(i) == group)
                .collect();
            let cooldown: Vec<std::time::Duration> = profiles
                .iter()
                .map(|p| documented.cooldown(p.key.as_deref(), &tr.to))
                .collect();
            let mut windows = BTreeMap::new();
            let candidates = cooldown
                .iter()
                .copied()
                .chain(std::iter::once(documented.cooldown(None, &tr.to)));
            for c in candidates {
                windows.insert(returns_from_ms(phase, tr, c), (0, 0, BTreeMap::new()));
            }
            ReturnsAcc {
                group,
                in_group,
                cooldown,
                seen: None,
                windows,
                per_sec: BTreeMap::new(),
            }
        });
        Self {
            scenario,
            phase,
            documented,
            warm_ms,
            latency: new_histogram(),
            ttft: new_histogram(),
            requests: RequestCounts::default(),
            served: BTreeMap::new(),
            ups: BTreeMap::new(),
            series,
            header: HeaderCrossCheck::default(),
            fallback,
            att_samples: 0,
            att_over: 0,
            att_worst: None,
            sr_n: 0,
            sr_ok: 0,
            sr_by: BTreeMap::new(),
            returns,
            tr_n: 0,
            tr_bad: 0,
            tr_example: None,
        }
    }

    /// Requests folded so far.
    pub fn folded(&self) -> u64 {
        self.requests.sent
    }

    /// Folds one finished request with its upstream calls (in arrival order).
    pub fn add(&mut self, r: &RequestRecord, attempts: &[Attempt]) {
        let served = served_of(attempts);
        let label = served.unwrap_or(NONE);
        let success = r.outcome == ClientOutcome::Success;
        let warm = r.sent_ms >= self.warm_ms;
        let key = self.scenario.traffic.profiles[r.profile].key.as_deref();

        // Counts, served-by, calls per request, time series, header cross-check.
        self.requests.sent += 1;
        if success {
            self.requests.succeeded += 1;
        } else {
            self.requests.failed += 1;
        }
        *self
            .requests
            .by_outcome
            .entry(r.outcome.as_str().to_owned())
            .or_insert(0) += 1;
        let st = r
            .status
            .map_or_else(|| "none".to_owned(), |s| s.to_string());
        *self.requests.by_status.entry(st).or_insert(0) += 1;
        *self.served.entry(label.to_owned()).or_insert(0) += 1;
        *self.ups.entry(attempts.len() as u32).or_insert(0) += 1;
        let b = ((r.sent_ms / 1000) as usize).min(self.series.len() - 1);
        let p = &mut self.series[b];
        p.sent += 1;
        if success {
            p.succeeded += 1;
        } else {
            p.failed += 1;
        }
        *p.served.entry(label.to_owned()).or_insert(0) += 1;
        if let (Some(h), Some(s)) = (&r.header_deployment, served) {
            if success {
                self.header.compared += 1;
                if h != s {
                    self.header.disagreements += 1;
                    if self.header.examples.len() < 5 {
                        self.header.examples.push(format!(
                            "{}: gateway header says {h}, the mocks say {s}",
                            r.rid
                        ));
                    }
                }
            }
        }

        // Latency and TTFT of successes after warmup.
        if warm && success {
            let _ = self.latency.record(r.latency_us.max(1));
            if let Some(t) = r.ttft_us {
                if r.stream {
                    let _ = self.ttft.record(t.max(1));
                }
            }
        }

        // fallback
        if let Some(Some(fb)) = &mut self.fallback {
            if r.sent_ms >= fb.from_ms && fb.counted[r.profile] {
                let spec = self.phase.expect.fallback.as_ref();
                let docs = self.documented;
                let (expected, _) = fb.docs.entry(key.map(str::to_owned)).or_insert_with(|| {
                    let expected = match spec.map(|s| &s.to) {
                        Some(FallbackTarget::Explicit(v)) => v.clone(),
                        _ => docs.expected_servers(key, &fb.group, fb.kind, &fb.down),
                    };
                    let c = docs.chain(key, &fb.group, fb.kind);
                    let text = format!(
                        "{} chain for {}: {} -> [{}] (set by {})",
                        fb.kind.as_str(),
                        c.subject,
                        fb.group,
                        c.targets.join(", "),
                        c.source
                    );
                    (expected, text)
                });
                fb.n += 1;
                let ok = match served {
                    Some(d) => expected.iter().any(|e| e == d),
                    None => expected.is_empty(),
                };
                if ok {
                    fb.hit += 1;
                }
                *fb.served.entry(label.to_owned()).or_insert(0) += 1;
            }
        }

        // max_upstream_attempts
        if let (Some(max), true) = (self.phase.expect.max_upstream_attempts, warm) {
            let n = attempts.len();
            if n > 0 {
                self.att_samples += 1;
                if n > max as usize {
                    self.att_over += 1;
                }
                if self.att_worst.as_ref().is_none_or(|(_, w, _)| n > *w) {
                    self.att_worst = Some((r.rid.clone(), n, path_text(attempts)));
                }
            }
        }

        // success_ratio
        if self.phase.expect.success_ratio.is_some() && warm {
            self.sr_n += 1;
            if success {
                self.sr_ok += 1;
            }
            *self.sr_by.entry(r.outcome.as_str().to_owned()).or_insert(0) += 1;
        }

        // traffic_returns
        if let (Some(ra), Some(tr)) = (&mut self.returns, &self.phase.expect.traffic_returns) {
            if ra.in_group[r.profile] {
                let c = ra.cooldown[r.profile];
                ra.seen = Some(ra.seen.map_or(c, |s| s.max(c)));
                let to_here = served == Some(tr.to.as_str());
                let e = ra.per_sec.entry(r.sent_ms / 1000).or_insert((0, 0));
                e.1 += 1;
                if to_here {
                    e.0 += 1;
                }
                for (from_ms, (n, hit, by)) in &mut ra.windows {
                    if r.sent_ms < *from_ms {
                        continue;
                    }
                    *n += 1;
                    if to_here {
                        *hit += 1;
                    }
                    *by.entry(label.to_owned()).or_insert(0) += 1;
                }
            }
        }

        // no_truncated_success
        if self.phase.expect.no_truncated_success == Some(true)
            && warm
            && r.stream
            && r.status == Some(200)
        {
            self.tr_n += 1;
            if r.outcome == ClientOutcome::Truncated {
                self.tr_bad += 1;
                if self.tr_example.is_none() {
                    self.tr_example = Some((r.rid.clone(), path_text(attempts)));
                }
            }
        }
    }

    fn min_samples(&self, own: Option<u64>) -> u64 {
        own.or(self.phase.expect.min_samples)
            .unwrap_or(DEFAULT_MIN_SAMPLES)
    }

    /// Every check of the phase's `expect` in a fixed order, with the phase's aggregates.
    /// `faults` carry their injection counts; `earlier_latency` the latency histograms of
    /// earlier phases by id.
    pub fn finish(
        self,
        faults: &[FaultEvidence],
        earlier_latency: &BTreeMap<String, Histogram<u64>>,
    ) -> PhaseResult {
        let e = &self.phase.expect;
        let pid = &self.phase.id;
        let mut out = Vec::new();

        if let Some(fb) = &self.fallback {
            out.push(match fb {
                Some(acc) => self.fallback_check(acc),
                None => check(
                    "fallback",
                    0,
                    1,
                    false,
                    String::new(),
                    String::new(),
                    String::new(),
                ),
            });
        }

        if let Some(max) = e.max_upstream_attempts {
            let (wrid, wn, wpath) = self
                .att_worst
                .clone()
                .unwrap_or_else(|| (String::new(), 0, path_text(&[])));
            let (samples, over) = (self.att_samples, self.att_over);
            out.push(check(
                "max_upstream_attempts",
                samples,
                self.min_samples(None),
                over == 0,
                format!("at most {max} upstream calls per request"),
                format!("at most {wn} ({over} requests over {max})"),
                format!(
                    "phase {pid}: {over} of {samples} requests made more than {max} upstream calls; worst {wrid}: {wn} calls: {wpath}"
                ),
            ));
        }

        if let Some(ratio) = e.success_ratio {
            let (n, ok) = (self.sr_n, self.sr_ok);
            let share = if n == 0 { 0.0 } else { ok as f64 / n as f64 };
            out.push(check(
                "success_ratio",
                n,
                self.min_samples(None),
                share >= ratio.0,
                format!(">= {}", ratio.0),
                format!("{share:.4} ({ok}/{n})"),
                format!(
                    "phase {pid}: success ratio {share:.4} ({ok}/{n}) is below {}; client outcomes: {}",
                    ratio.0,
                    counts_text(&self.sr_by, n)
                ),
            ));
        }

        if let Some(ld) = &e.latency_delta {
            let base = earlier_latency.get(&ld.vs_phase);
            let samples = base.map_or(0, |b| b.len().min(self.latency.len()));
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
            let now = stat(&self.latency);
            let inc = now - before;
            let max_ms = ld.max_increase.get().as_secs_f64() * 1000.0;
            out.push(check(
                "latency_delta",
                samples,
                self.min_samples(ld.min_samples),
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

        if let (Some(tr), Some(ra)) = (&e.traffic_returns, &self.returns) {
            out.push(self.traffic_returns_check(tr, ra));
        }

        if e.no_truncated_success == Some(true) {
            let n = self.tr_n;
            let bad = self.tr_bad;
            let (example, path) = self
                .tr_example
                .clone()
                .unwrap_or_else(|| (String::new(), path_text(&[])));
            out.push(check(
                "no_truncated_success",
                n,
                self.min_samples(None),
                bad == 0,
                "every 200 stream ends with [DONE] or an error event".to_owned(),
                format!("{bad} truncated of {n} streams"),
                format!(
                    "phase {pid}: {bad} of {n} streams answered 200 and ended without [DONE] or an error event (a truncation passed off as success); e.g. {example}: {path}"
                ),
            ));
        }

        if let Some(fi) = &e.faults_injected {
            let short: Vec<String> = faults
                .iter()
                .filter(|f| f.injected < fi.min)
                .map(|f| format!("{} on {} ({}x)", f.rule_id, f.provider, f.injected))
                .collect();
            let total: u64 = faults.iter().map(|f| f.injected).sum();
            let mut c = check(
                "faults_injected",
                total,
                0,
                short.is_empty(),
                format!("each fault injected at least {} times", fi.min),
                faults
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
            c.detail = json!(faults
                .iter()
                .map(|f| (f.rule_id.clone(), f.injected))
                .collect::<BTreeMap<_, _>>());
            out.push(c);
        }
        PhaseResult {
            checks: out,
            stats: PhaseStats {
                requests: self.requests,
                served_by: self.served,
                upstream_attempts: self.ups,
                time_series: self.series,
                header: self.header,
            },
            latency: self.latency,
            ttft: self.ttft,
        }
    }

    fn fallback_check(&self, acc: &FallbackAcc) -> CheckEvidence {
        let Some(fb) = &self.phase.expect.fallback else {
            unreachable!("a fallback accumulator exists only with a fallback expectation")
        };
        let pid = &self.phase.id;
        let (n, hit, group) = (acc.n, acc.hit, &acc.group);
        let share = if n == 0 { 0.0 } else { hit as f64 / n as f64 };
        let expected_text = acc
            .docs
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
            counts_text(&acc.served, n)
        );
        let mut c = check(
            "fallback",
            n,
            self.min_samples(fb.min_samples),
            share >= fb.min_share,
            format!(
                "with {} failing, >= {:.0}% of {group} requests served by {expected_text}",
                fb.from,
                fb.min_share * 100.0
            ),
            observed,
            format!(
                "phase {pid}: with {} failing, requests for {group} were served by {} but the documentation says {expected_text}; only {:.1}% matched (min {:.0}%)",
                fb.from,
                counts_text(&acc.served, n),
                share * 100.0,
                fb.min_share * 100.0
            ),
        );
        c.detail = json!({"served_by": acc.served, "group": group, "kind": acc.kind.as_str()});
        c
    }

    fn traffic_returns_check(
        &self,
        tr: &crate::scenario::TrafficReturns,
        ra: &ReturnsAcc,
    ) -> CheckEvidence {
        let pid = &self.phase.id;
        let group = &ra.group;
        let cooldown = ra
            .seen
            .unwrap_or_else(|| self.documented.cooldown(None, &tr.to));
        let within = returns_within(tr, cooldown);
        let from_ms = returns_from_ms(self.phase, tr, cooldown);
        let empty = (0, 0, BTreeMap::new());
        let (n, hit, served) = ra.windows.get(&from_ms).unwrap_or(&empty);
        let (n, hit) = (*n, *hit);
        let returned_at = ra
            .per_sec
            .iter()
            .find(|(_, (t, a))| *a > 0 && (*t as f64 / *a as f64) >= tr.min_share)
            .map(|(s, _)| *s);
        let share = if n == 0 { 0.0 } else { hit as f64 / n as f64 };
        let mut c = check(
            "traffic_returns",
            n,
            self.min_samples(tr.min_samples),
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
                counts_text(served, n)
            ),
        );
        c.detail = json!({"served_by": served, "returned_at_s": returned_at, "within_ms": within.as_millis() as u64});
        c
    }
}

fn returns_within(
    tr: &crate::scenario::TrafficReturns,
    cooldown: std::time::Duration,
) -> std::time::Duration {
    tr.within
        .map_or_else(|| cooldown + std::time::Duration::from_secs(2), |w| w.get())
}

fn returns_from_ms(
    phase: &Phase,
    tr: &crate::scenario::TrafficReturns,
    cooldown: std::time::Duration,
) -> u64 {
    returns_within(tr, cooldown)
        .max(phase.warmup.get())
        .as_millis() as u64
}

fn chain_kind(scenario: &Scenario, phase: &Phase, from: &str) -> ChainKind {
    let mut kind = ChainKind::General;
    for f in &phase.faults {
        let dep = scenario
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

/// Holds finished requests until the mocks' journals are known to hold their upstream calls,
/// then folds them in the order they finished. Times are milliseconds on the caller's clock.
pub struct Verifier<'a> {
    pub fold: PhaseFold<'a>,
    index: AttemptIndex,
    /// Finished requests not yet folded: (finished at, record), oldest first.
    pending: VecDeque<(u64, RequestRecord)>,
    /// Drains not yet known complete: (drained at, requests each mock had received).
    marks: VecDeque<(u64, BTreeMap<String, u64>)>,
    /// A request is folded at the latest this long after it finished, complete or not.
    max_wait_ms: u64,
    /// Largest number of requests and correlation ids held at once.
    pub high_water: usize,
}

impl<'a> Verifier<'a> {
    pub fn new(fold: PhaseFold<'a>, index: AttemptIndex, max_wait_ms: u64) -> Self {
        Self {
            fold,
            index,
            pending: VecDeque::new(),
            marks: VecDeque::new(),
            max_wait_ms: max_wait_ms.max(1),
            high_water: 0,
        }
    }

    /// A request finished at `now_ms`.
    pub fn finished(&mut self, now_ms: u64, r: RequestRecord) {
        self.pending.push_back((now_ms, r));
        self.high_water = self.high_water.max(self.retained());
    }

    /// A drain of the mocks at `now_ms`: `received` and `completed` per mock were read before
    /// `entries` were taken. Folds every request whose calls are all journaled (every call the
    /// mocks had received when it finished has ended), and those past `max_wait_ms`; `each`
    /// sees every folded request with its calls.
    pub fn drained(
        &mut self,
        now_ms: u64,
        received: BTreeMap<String, u64>,
        completed: &BTreeMap<String, u64>,
        entries: BTreeMap<String, Vec<JournalEntry>>,
        each: &mut dyn FnMut(&RequestRecord, &[Attempt]),
    ) {
        self.index.add(entries, now_ms);
        self.marks.push_back((now_ms, received));
        let mut safe: Option<u64> = None;
        while let Some((t, rec)) = self.marks.front() {
            let done = rec
                .iter()
                .all(|(m, n)| completed.get(m).copied().unwrap_or(0) >= *n);
            if !done {
                break;
            }
            safe = Some(*t);
            self.marks.pop_front();
        }
        // A mark that never completes (a hung call) must not hold requests forever.
        while self
            .marks
            .front()
            .is_some_and(|(t, _)| t + self.max_wait_ms < now_ms)
        {
            self.marks.pop_front();
        }
        while let Some((f, _)) = self.pending.front() {
            let ready = safe.is_some_and(|s| *f <= s) || f + self.max_wait_ms <= now_ms;
            if !ready {
                break;
            }
            if let Some((_, r)) = self.pending.pop_front() {
                let a = self.index.take(&r.rid);
                each(&r, &a);
                self.fold.add(&r, &a);
            }
        }
        // Calls nobody will ask for: requests that never finished, calls after the verdict.
        self.index
            .evict_older(now_ms.saturating_sub(2 * self.max_wait_ms));
        self.high_water = self.high_water.max(self.retained());
    }

    /// The end of the phase, after the mocks settled: folds everything still held.
    pub fn finish_all(
        &mut self,
        entries: BTreeMap<String, Vec<JournalEntry>>,
        each: &mut dyn FnMut(&RequestRecord, &[Attempt]),
    ) {
        self.index.add(entries, u64::MAX);
        while let Some((_, r)) = self.pending.pop_front() {
            let a = self.index.take(&r.rid);
            each(&r, &a);
            self.fold.add(&r, &a);
        }
        self.marks.clear();
        self.index.evict_older(u64::MAX);
    }

    /// Requests and correlation ids held right now.
    pub fn retained(&self) -> usize {
        self.pending.len() + self.index.len()
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
            t_us: t * 1000,
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
    fn calls_within_one_millisecond_keep_their_order_across_mocks() {
        // "a-west" ranks before "z-east"; the failed call on z-east came 200 µs earlier.
        let mut failed = entry("r1", 7, 503, EndKind::ErrorStatus, Some("p.outage"));
        failed.t_us = 7_100;
        let mut served = entry("r1", 7, 200, EndKind::Complete, None);
        served.t_us = 7_300;
        // A journal from before `t_us` existed orders by milliseconds.
        let mut old_failed = entry("r2", 8, 503, EndKind::ErrorStatus, Some("p.outage"));
        old_failed.t_us = 0;
        let mut old_served = entry("r2", 9, 200, EndKind::Complete, None);
        old_served.t_us = 0;
        let mut entries = BTreeMap::new();
        entries.insert("z-east".to_owned(), vec![failed, old_failed]);
        entries.insert("a-west".to_owned(), vec![served, old_served]);
        let a = index_attempts(&entries, &|m: &str| format!("{m}-dep"), &HashSet::new());
        assert_eq!(
            path_of(&a, "r1"),
            "z-east-dep(p.outage) -> a-west-dep(served)"
        );
        assert_eq!(
            path_of(&a, "r2"),
            "z-east-dep(p.outage) -> a-west-dep(served)"
        );
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

    const CONFIG: &str = r#"
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "http://127.0.0.1:9/v1", api_key: k}
    model_info: {id: east}
  - model_name: claude
    litellm_params: {model: anthropic/claude-x, api_base: "http://127.0.0.1:9", api_key: k}
    model_info: {id: west}
router_settings:
  fallbacks: [{"gpt-4o": ["claude"]}]
"#;

    const SCENARIO: &str = "apiVersion: drill/v1
kind: Drill
metadata: {name: t}
providers:
  - {id: east, dialect: openai}
  - {id: west, dialect: anthropic}
traffic:
  profiles: [{id: chat, request: {model: gpt-4o}}]
phases:
  - id: outage
    duration: 3600s
    warmup: 1s
    faults: [{provider: east, effect: {type: http_error, status: 503}}]
    expect:
      fallback: {from: east, to: documented, min_share: 0.5}
      max_upstream_attempts: 2
      success_ratio: '>= 0.5'
";

    fn record(i: u64) -> RequestRecord {
        RequestRecord {
            rid: format!("r-{i}"),
            profile: 0,
            sent_ms: i,
            latency_us: 1000 + (i % 97) * 10,
            ttft_us: None,
            status: Some(if i % 5 == 0 { 503 } else { 200 }),
            outcome: if i % 5 == 0 {
                ClientOutcome::HttpError
            } else {
                ClientOutcome::Success
            },
            stream: false,
            header_deployment: None,
        }
    }

    /// Request i calls east at i+1 (ends i+5: 503 when i is odd, else 200) and, when east
    /// failed, west at i+6 (ends i+15); it finishes at i+20. Every 3rd request's calls are
    /// journaled only at the end of its call (as the mocks do).
    fn calls(i: u64) -> Vec<(&'static str, u64, u64, u16)> {
        let mut v = vec![("east", i + 1, i + 5, if i % 2 == 1 { 503 } else { 200 })];
        if i % 2 == 1 {
            v.push(("west", i + 6, i + 15, if i % 5 == 0 { 503 } else { 200 }));
        }
        v
    }

    /// Runs `n` requests (one per ms) through the verifier draining every 500 ms; returns the
    /// high-water mark of retained requests and ids, the result, and every record.
    fn simulate(n: u64) -> (usize, PhaseResult, Vec<(RequestRecord, Vec<Attempt>)>) {
        let loaded = switchyard::config::load_str(
            CONFIG,
            std::path::Path::new("c.yaml"),
            &|_| None,
            &Default::default(),
        )
        .unwrap();
        let sc: Scenario = serde_yaml::from_str(SCENARIO).unwrap();
        let doc = Documented::new(loaded.config, &sc);
        let faulted: BTreeSet<String> = ["east".to_owned()].into();
        let fold = PhaseFold::new(&sc, &sc.phases[0], &doc, &faulted, 0, 3600);
        let benign = HashSet::new();
        let index = AttemptIndex::new(
            ["east".to_owned(), "west".to_owned()],
            &|m: &str| m.to_owned(),
            benign.clone(),
        );
        let mut v = Verifier::new(fold, index, 40_000);
        let mut seq = BTreeMap::<&str, u64>::new();
        let mut journal: BTreeMap<String, Vec<JournalEntry>> = BTreeMap::new();
        let mut all: BTreeMap<String, Vec<JournalEntry>> = BTreeMap::new();
        let (mut received, mut completed) = (BTreeMap::new(), BTreeMap::new());
        for m in ["east", "west"] {
            received.insert(m.to_owned(), 0u64);
            completed.insert(m.to_owned(), 0u64);
        }
        let mut folded = 0usize;
        for now in 0..n + 100 {
            // Calls starting and ending now.
            for i in now.saturating_sub(20)..=now.min(n.saturating_sub(1)) {
                for (m, start, end, status) in calls(i) {
                    if start == now {
                        *received.get_mut(m).unwrap() += 1;
                    }
                    if end == now {
                        let s = seq.entry(m).or_insert(0);
                        let mut e = entry(
                            &format!("r-{i}"),
                            end,
                            status,
                            if status == 200 {
                                EndKind::Complete
                            } else {
                                EndKind::ErrorStatus
                            },
                            None,
                        );
                        e.seq = *s;
                        *s += 1;
                        journal.entry(m.to_owned()).or_default().push(e.clone());
                        all.entry(m.to_owned()).or_default().push(e);
                        *completed.get_mut(m).unwrap() += 1;
                    }
                }
            }
            if now >= 20 && now - 20 < n {
                v.finished(now, record(now - 20));
            }
            if now % 500 == 0 {
                v.drained(
                    now,
                    received.clone(),
                    &completed,
                    std::mem::take(&mut journal),
                    &mut |_, _| folded += 1,
                );
            }
        }
        v.finish_all(std::mem::take(&mut journal), &mut |_, _| folded += 1);
        assert_eq!(folded as u64, n);
        assert_eq!(v.retained(), 0);
        let high = v.high_water;
        let res = v.fold.finish(&[], &BTreeMap::new());
        let index = index_attempts(&all, &|m: &str| m.to_owned(), &benign);
        let records = (0..n)
            .map(|i| {
                let r = record(i);
                let a = index.get(&r.rid).cloned().unwrap_or_default();
                (r, a)
            })
            .collect();
        (high, res, records)
    }

    #[test]
    fn retention_is_bounded_and_aggregates_equal_a_brute_force_count() {
        let (small, _, _) = simulate(2_000);
        let (high, res, records) = simulate(60_000);
        // Held: the requests finished in the last two drain intervals (a drain's watermark is
        // known complete at the next one) and their journaled calls: ~1,500 at 1 request/ms,
        // whatever N.
        assert!(high < 2_000, "{high}");
        assert!(high <= small + 50, "{high} vs {small}");

        // Brute force over every record with all its calls.
        let mut served: BTreeMap<String, u64> = BTreeMap::new();
        let mut ups: BTreeMap<u32, u64> = BTreeMap::new();
        let (mut ok, mut fb_n, mut fb_hit, mut over, mut samples) = (0, 0, 0, 0, 0);
        let mut lat = new_histogram();
        for (r, a) in &records {
            let s = a
                .iter()
                .rev()
                .find(|x| x.served)
                .map(|x| x.deployment.clone());
            *served
                .entry(s.clone().unwrap_or_else(|| NONE.into()))
                .or_insert(0) += 1;
            *ups.entry(a.len() as u32).or_insert(0) += 1;
            if r.sent_ms >= 1000 {
                samples += 1;
                if r.outcome == ClientOutcome::Success {
                    ok += 1;
                    lat.record(r.latency_us).unwrap();
                }
                fb_n += 1;
                if s.as_deref() == Some("west") {
                    fb_hit += 1;
                }
                if a.len() > 2 {
                    over += 1;
                }
            }
        }
        assert_eq!(res.stats.requests.sent, 60_000);
        assert_eq!(res.stats.served_by, served);
        assert_eq!(res.stats.upstream_attempts, ups);
        assert_eq!(res.latency, lat);
        let by_check = |name: &str| res.checks.iter().find(|c| c.check == name).unwrap();
        let fb = by_check("fallback");
        assert_eq!(fb.samples, fb_n);
        assert!(fb.observed.starts_with(&format!(
            "{:.1}% on target",
            fb_hit as f64 * 100.0 / fb_n as f64
        )));
        let sr = by_check("success_ratio");
        assert_eq!(sr.samples, samples);
        assert!(
            sr.observed.ends_with(&format!("({ok}/{samples})")),
            "{}",
            sr.observed
        );
        let mu = by_check("max_upstream_attempts");
        assert_eq!(mu.verdict, Verdict::Passed);
        assert_eq!(over, 0);
        // One point per second of the phase, whatever the request count.
        assert_eq!(res.stats.time_series.len(), 3600);
        let sent: u64 = res.stats.time_series.iter().map(|p| p.sent).sum();
        assert_eq!(sent, 60_000);
    }
}
