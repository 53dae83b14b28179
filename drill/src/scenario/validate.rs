//! Cross-field checks of a parsed scenario: ids unique and referenced ids known, durations and
//! shares in range, fault rules valid for the mocks. Every problem in one pass, each with its
//! key path and line. Checks against the gateway config are `documented`'s.

use std::collections::BTreeSet;

use mock_providers::{validate_rules, FaultRule};
use switchyard::config::RouterSettings;

use super::load::{Problem, Source};
use super::schema::{FallbackTarget, LoadModel, LoadSpec, Scenario};

/// Longest phase accepted (bounds every run).
const MAX_PHASE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses a `router_settings` value the way the admin API will.
pub fn router_settings(v: &serde_json::Value) -> Result<RouterSettings, String> {
    serde_path_to_error::deserialize::<_, RouterSettings>(v.clone()).map_err(|e| {
        let p = e.path().to_string();
        if p == "." {
            e.into_inner().to_string()
        } else {
            format!("{p}: {}", e.into_inner())
        }
    })
}

/// Every semantic problem of `s`.
pub fn validate(s: &Scenario, src: &Source) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut bad = |path: &str, msg: String| out.push(src.problem(path, msg));

    if !valid_id(&s.metadata.name) {
        bad(
            "metadata.name",
            format!(
                "{:?} must be 1-64 characters of A-Z a-z 0-9 . _ -",
                s.metadata.name
            ),
        );
    }
    if s.kind != "Drill" {
        bad("kind", format!("expected `Drill`, got {:?}", s.kind));
    }

    // Providers.
    if s.providers.is_empty() {
        bad("providers", "at least one provider is required".to_owned());
    }
    let mut ids = BTreeSet::new();
    let mut deps = BTreeSet::new();
    for (i, p) in s.providers.iter().enumerate() {
        let at = format!("providers[{i}]");
        if !valid_id(&p.id) {
            bad(
                &format!("{at}.id"),
                format!("{:?} must be 1-64 characters of A-Z a-z 0-9 . _ -", p.id),
            );
        } else if !ids.insert(p.id.as_str()) {
            bad(
                &format!("{at}.id"),
                format!("duplicate provider id {:?}", p.id),
            );
        }
        if !deps.insert(p.deployment_id()) {
            bad(
                &format!("{at}.deployment"),
                format!(
                    "deployment {:?} is backed by two providers",
                    p.deployment_id()
                ),
            );
        }
        if p.baseline.output_tokens == 0 {
            bad(
                &format!("{at}.baseline.output_tokens"),
                "must be at least 1".to_owned(),
            );
        }
    }

    // Teams and keys.
    for (name, t) in &s.traffic.teams {
        if let Some(rs) = &t.router_settings {
            if let Err(e) = router_settings(rs) {
                bad(&format!("traffic.teams.{name}.router_settings"), e);
            }
        }
    }
    for (name, k) in &s.traffic.keys {
        if let Some(team) = &k.team {
            if !s.traffic.teams.contains_key(team) {
                bad(
                    &format!("traffic.keys.{name}.team"),
                    format!(
                        "unknown team {team:?}\nknown teams: {}",
                        list(s.traffic.teams.keys())
                    ),
                );
            }
        }
        if let Some(rs) = &k.router_settings {
            if let Err(e) = router_settings(rs) {
                bad(&format!("traffic.keys.{name}.router_settings"), e);
            }
        }
    }

    // Profiles.
    if s.traffic.profiles.is_empty() {
        bad(
            "traffic.profiles",
            "at least one request profile is required".to_owned(),
        );
    }
    let mut pids = BTreeSet::new();
    for (i, p) in s.traffic.profiles.iter().enumerate() {
        let at = format!("traffic.profiles[{i}]");
        if !pids.insert(p.id.as_str()) {
            bad(
                &format!("{at}.id"),
                format!("duplicate profile id {:?}", p.id),
            );
        }
        if !(p.weight > 0.0 && p.weight.is_finite()) {
            bad(
                &format!("{at}.weight"),
                format!("{} must be a positive number", p.weight),
            );
        }
        if let Some(k) = &p.key {
            if !s.traffic.keys.contains_key(k) {
                bad(
                    &format!("{at}.key"),
                    format!(
                        "unknown key {k:?}\nknown keys: {}",
                        list(s.traffic.keys.keys())
                    ),
                );
            }
        }
        if p.request.prompt_tokens > 1_000_000 {
            bad(
                &format!("{at}.request.prompt_tokens"),
                "at most 1000000".to_owned(),
            );
        }
    }
    check_load(&s.traffic.load, "traffic.load", &mut bad);
    if s.traffic.request_timeout.get().is_zero() {
        bad("traffic.request_timeout", "must be more than 0s".to_owned());
    }

    // Phases.
    if s.phases.is_empty() {
        bad("phases", "at least one phase is required".to_owned());
    }
    let known_deployments: BTreeSet<&str> = s.providers.iter().map(|p| p.deployment_id()).collect();
    let mut seen_phases: Vec<&str> = Vec::new();
    for (i, ph) in s.phases.iter().enumerate() {
        let at = format!("phases[{i}]");
        if !valid_id(&ph.id) {
            bad(
                &format!("{at}.id"),
                format!("{:?} must be 1-64 characters of A-Z a-z 0-9 . _ -", ph.id),
            );
        } else if seen_phases.contains(&ph.id.as_str()) {
            bad(
                &format!("{at}.id"),
                format!("duplicate phase id {:?}", ph.id),
            );
        }
        let d = ph.duration.get();
        if d.is_zero() || d > MAX_PHASE {
            bad(
                &format!("{at}.duration"),
                "must be more than 0s and at most 24h".to_owned(),
            );
        }
        if ph.warmup.get() >= d && !d.is_zero() {
            bad(
                &format!("{at}.warmup"),
                "must be shorter than the phase".to_owned(),
            );
        }
        if let Some(l) = &ph.load {
            check_load(l, &format!("{at}.load"), &mut bad);
        }
        // Faults, as the mocks will receive them per provider.
        for (j, f) in ph.faults.iter().enumerate() {
            if !ids.contains(f.provider.as_str()) {
                bad(
                    &format!("{at}.faults[{j}].provider"),
                    format!(
                        "unknown provider {:?}\nknown providers: {}",
                        f.provider,
                        list(&ids)
                    ),
                );
            }
            let rule = FaultRule {
                id: f.id.clone().unwrap_or_default(),
                effect: f.effect.clone(),
                selection: f.selection,
            };
            if let Err(errs) = validate_rules(std::slice::from_ref(&rule)) {
                for e in errs {
                    let e = e.trim_start_matches("[0]").trim_start_matches('.');
                    bad(&format!("{at}.faults[{j}]"), e.to_owned());
                }
            }
        }
        let e = &ph.expect;
        if let Some(fb) = &e.fallback {
            let p = format!("{at}.expect.fallback");
            if !known_deployments.contains(fb.from.as_str()) {
                bad(
                    &format!("{p}.from"),
                    format!(
                        "unknown deployment {:?}\ndeployments backed by providers: {}",
                        fb.from,
                        list(&known_deployments)
                    ),
                );
            }
            if let FallbackTarget::Explicit(v) = &fb.to {
                if v.is_empty() {
                    bad(
                        &format!("{p}.to"),
                        "an empty list of deployments".to_owned(),
                    );
                }
                for t in v {
                    if !known_deployments.contains(t.as_str()) {
                        bad(
                            &format!("{p}.to"),
                            format!(
                                "unknown deployment {t:?}\ndeployments backed by providers: {}",
                                list(&known_deployments)
                            ),
                        );
                    }
                }
            }
            share(fb.min_share, &format!("{p}.min_share"), &mut bad);
            for (k, id) in fb.profiles.iter().enumerate() {
                if !pids.contains(id.as_str()) {
                    bad(
                        &format!("{p}.profiles[{k}]"),
                        format!("unknown profile {id:?}\nknown profiles: {}", list(&pids)),
                    );
                }
            }
            if fb.within.get() >= d && !d.is_zero() {
                bad(
                    &format!("{p}.within"),
                    "must be shorter than the phase".to_owned(),
                );
            }
        }
        if let Some(r) = e.success_ratio {
            share(r.0, &format!("{at}.expect.success_ratio"), &mut bad);
        }
        if e.max_upstream_attempts == Some(0) {
            bad(
                &format!("{at}.expect.max_upstream_attempts"),
                "must be at least 1".to_owned(),
            );
        }
        if let Some(ld) = &e.latency_delta {
            if !seen_phases.contains(&ld.vs_phase.as_str()) {
                bad(
                    &format!("{at}.expect.latency_delta.vs_phase"),
                    format!(
                        "{:?} is not an earlier phase\nearlier phases: {}",
                        ld.vs_phase,
                        list(&seen_phases)
                    ),
                );
            }
        }
        if let Some(tr) = &e.traffic_returns {
            let p = format!("{at}.expect.traffic_returns");
            if !known_deployments.contains(tr.to.as_str()) {
                bad(
                    &format!("{p}.to"),
                    format!(
                        "unknown deployment {:?}\ndeployments backed by providers: {}",
                        tr.to,
                        list(&known_deployments)
                    ),
                );
            }
            share(tr.min_share, &format!("{p}.min_share"), &mut bad);
        }
        if e.faults_injected.is_some() && ph.faults.is_empty() {
            bad(
                &format!("{at}.expect.faults_injected"),
                "the phase sets no faults".to_owned(),
            );
        }
        seen_phases.push(&ph.id);
    }
    if let Some(m) = s.stop_conditions.max_failed_requests {
        if m == 0 {
            bad(
                "stop_conditions.max_failed_requests",
                "must be at least 1".to_owned(),
            );
        }
    }
    out
}

fn check_load(l: &LoadSpec, at: &str, bad: &mut impl FnMut(&str, String)) {
    match l.model {
        LoadModel::Open => {
            if !(l.rate.0 > 0.0 && l.rate.0 <= 100_000.0) {
                bad(
                    &format!("{at}.rate"),
                    format!("{}/s must be more than 0 and at most 100000/s", l.rate.0),
                );
            }
            if l.max_in_flight == 0 {
                bad(
                    &format!("{at}.max_in_flight"),
                    "must be at least 1".to_owned(),
                );
            }
        }
        LoadModel::Closed => {
            if l.concurrency == 0 || l.concurrency > 10_000 {
                bad(
                    &format!("{at}.concurrency"),
                    "must be between 1 and 10000".to_owned(),
                );
            }
        }
    }
}

fn share(v: f64, at: &str, bad: &mut impl FnMut(&str, String)) {
    if !(0.0..=1.0).contains(&v) {
        bad(at, format!("{v} is outside [0, 1]"));
    }
}

fn list<'a, I: IntoIterator<Item = T>, T: AsRef<str> + 'a>(items: I) -> String {
    let v: Vec<String> = items.into_iter().map(|s| s.as_ref().to_owned()).collect();
    if v.is_empty() {
        "(none)".to_owned()
    } else {
        v.join(", ")
    }
}
