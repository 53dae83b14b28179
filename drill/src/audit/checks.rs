//! The fallback-readiness checks. Each check is a function over [`AuditInput`] that returns its
//! findings; settings are resolved Key > Team > Global with the gateway's own resolver, so the
//! audit sees exactly what the gateway would do.

use std::collections::{BTreeMap, BTreeSet};

use switchyard::config::{defaults, FallbackRule, RouterSettings};
use switchyard::keys::effective::{EffectiveRouterSettings, Source};
use switchyard_reports::model::{Finding, Severity};

use super::input::{AuditInput, DeploymentInfo, Principal, DEFAULT_CLIENT_TIMEOUT_S};

/// Check ids with a one-line description (SARIF rules, `--help`).
pub const CHECKS: &[(&str, &str)] = &[
    (
        "config.invalid",
        "the gateway's own loader rejects the config",
    ),
    (
        "fallback.missing",
        "a reachable model group has no fallback",
    ),
    (
        "fallback.target-missing",
        "a fallback target names no model group, alias or deployment",
    ),
    ("fallback.cycle", "fallback chains loop"),
    (
        "fallback.chain-too-long",
        "a chain has more targets than max_fallbacks allows",
    ),
    (
        "fallback.single-vendor",
        "a chain never leaves the primary's provider",
    ),
    (
        "fallback.single-region",
        "a chain never leaves the primary's region",
    ),
    (
        "fallback.context-window",
        "a fallback target has a smaller context window than the primary",
    ),
    (
        "settings.default",
        "a retry/timeout/cooldown setting is left to its default",
    ),
    (
        "settings.retry-budget",
        "retries × timeout over the chain exceed the client timeout",
    ),
    (
        "access.fallback-target",
        "a key or team may not call a target of its own chain",
    ),
    ("budget.missing", "a key or team has no budget"),
    (
        "credentials.unresolvable",
        "an os.environ/ reference does not resolve",
    ),
    (
        "fallback.capacity",
        "fallback capacity (rpm/tpm) is below the primary's",
    ),
    (
        "mcp.name",
        "an MCP server name breaks the SEP-986 naming rule",
    ),
];

/// A scope whose settings are checked: global, or a team, or a key (with its team).
struct Scope<'a> {
    label: String,
    principal: Option<&'a Principal>,
    effective: EffectiveRouterSettings,
}

fn scopes(input: &AuditInput) -> Vec<Scope<'_>> {
    let global = &input.router_settings;
    let mut out = vec![Scope {
        label: "global".into(),
        principal: None,
        effective: EffectiveRouterSettings::resolve(&[(Source::Global, global)]),
    }];
    for t in &input.teams {
        out.push(Scope {
            label: format!("team {}", t.name),
            principal: Some(t),
            effective: EffectiveRouterSettings::resolve(&[
                (Source::Team, &t.router_settings),
                (Source::Global, global),
            ]),
        });
    }
    let empty = RouterSettings::default();
    for k in &input.keys {
        let team = k.team.as_deref().and_then(|t| input.team(t));
        let team_rs = team.map_or(&empty, |t| &t.router_settings);
        out.push(Scope {
            label: format!("key {}", k.name),
            principal: Some(k),
            effective: EffectiveRouterSettings::resolve(&[
                (Source::Key, &k.router_settings),
                (Source::Team, team_rs),
                (Source::Global, global),
            ]),
        });
    }
    out
}

fn finding(
    id: &str,
    severity: Severity,
    objects: Vec<String>,
    message: String,
    fix: String,
) -> Finding {
    Finding {
        id: id.to_owned(),
        severity,
        objects,
        message,
        fix,
    }
}

/// The model groups a scope may reach: its allow-list (empty = all groups).
fn reachable<'a>(input: &'a AuditInput, scope: &Scope<'a>) -> BTreeSet<&'a str> {
    let all = input.group_names();
    match scope.principal {
        Some(p) if !p.models.is_empty() => p
            .models
            .iter()
            .map(|m| input.canonical(m))
            .filter(|m| all.contains(m))
            .collect(),
        _ => all,
    }
}

/// The general-fallback targets of `group` in `eff`: its own rule, else a `*` rule, else
/// `default_fallbacks`.
fn general_targets<'e>(eff: &'e EffectiveRouterSettings, group: &str) -> Option<&'e [String]> {
    let rules = &eff.fallbacks.value;
    rules
        .iter()
        .find(|r| r.group == group)
        .or_else(|| rules.iter().find(|r| r.group == "*"))
        .map(|r| r.targets.as_slice())
        .or_else(|| {
            let d = &eff.default_fallbacks.value;
            (!d.is_empty()).then_some(d.as_slice())
        })
}

fn all_lists(eff: &EffectiveRouterSettings) -> [(&'static str, &Vec<FallbackRule>); 3] {
    [
        ("fallbacks", &eff.fallbacks.value),
        (
            "context_window_fallbacks",
            &eff.context_window_fallbacks.value,
        ),
        (
            "content_policy_fallbacks",
            &eff.content_policy_fallbacks.value,
        ),
    ]
}

/// Scopes other than global only repeat a finding when their own layer set the field.
fn own(scope: &Scope<'_>, source: Source) -> bool {
    scope.principal.is_none() || matches!(source, Source::Key | Source::Team)
}

pub fn run_all(input: &AuditInput) -> Vec<Finding> {
    let scopes = scopes(input);
    let mut out = Vec::new();
    for scope in &scopes {
        fallback_missing(input, scope, &mut out);
        targets_exist(input, scope, &mut out);
        cycles(input, scope, &mut out);
        chain_length(scope, &mut out);
        diversity(input, scope, &mut out);
        context_window(input, scope, &mut out);
        retry_budget(input, scope, &mut out);
        capacity(input, scope, &mut out);
        access(input, scope, &mut out);
        budget(scope, &mut out);
    }
    settings_defaults(input, &mut out);
    mcp_names(input, &mut out);
    out
}

fn fallback_missing(input: &AuditInput, scope: &Scope<'_>, out: &mut Vec<Finding>) {
    let eff = &scope.effective;
    if !(own(scope, eff.fallbacks.source) || own(scope, eff.default_fallbacks.source))
        && scope.principal.is_some_and(|p| p.models.is_empty())
    {
        return;
    }
    // A group that is itself some chain's target is the end of the line, not a gap: an acyclic
    // set of chains always ends in groups without fallbacks.
    let targets: BTreeSet<&str> = eff
        .fallbacks
        .value
        .iter()
        .flat_map(|r| &r.targets)
        .chain(&eff.default_fallbacks.value)
        .flat_map(|t| input.target_deployments(t))
        .map(|d| d.group.as_str())
        .collect();
    for group in reachable(input, scope) {
        if targets.contains(group) {
            continue;
        }
        if general_targets(eff, group).is_none_or(<[String]>::is_empty) {
            out.push(finding(
                "fallback.missing",
                Severity::Error,
                vec![format!("group {group}"), scope.label.clone()],
                format!("model group `{group}` has no fallback in {} settings: when its deployments fail, requests fail", scope.label),
                format!("add `- {group}: [<group on another provider>]` to router_settings.fallbacks (or default_fallbacks)"),
            ));
        }
    }
}

fn targets_exist(input: &AuditInput, scope: &Scope<'_>, out: &mut Vec<Finding>) {
    let eff = &scope.effective;
    let mut check = |field: &str, group: &str, target: &str| {
        if input.target_deployments(target).is_empty() {
            out.push(finding(
                "fallback.target-missing",
                Severity::Error,
                vec![format!("group {group}"), format!("target {target}"), scope.label.clone()],
                format!("{field} of `{group}` names `{target}`, which is no model group, alias or deployment id"),
                format!("fix the name or add a deployment with model_name `{target}`; known groups: {}", input.group_names().into_iter().collect::<Vec<_>>().join(", ")),
            ));
        }
    };
    for (field, rules) in all_lists(eff) {
        let source = match field {
            "fallbacks" => eff.fallbacks.source,
            "context_window_fallbacks" => eff.context_window_fallbacks.source,
            _ => eff.content_policy_fallbacks.source,
        };
        if !own(scope, source) {
            continue;
        }
        for r in rules {
            for t in &r.targets {
                check(field, &r.group, t);
            }
        }
    }
    if own(scope, eff.default_fallbacks.source) {
        for t in &eff.default_fallbacks.value {
            check("default_fallbacks", "*", t);
        }
    }
}

fn cycles(input: &AuditInput, scope: &Scope<'_>, out: &mut Vec<Finding>) {
    let eff = &scope.effective;
    for (field, rules) in all_lists(eff) {
        let edges: BTreeMap<&str, Vec<&str>> = rules
            .iter()
            .filter(|r| r.group != "*")
            .map(|r| {
                (
                    input.canonical(&r.group),
                    r.targets.iter().map(|t| input.canonical(t)).collect(),
                )
            })
            .collect();
        let mut reported = BTreeSet::new();
        for start in edges.keys() {
            // Depth-first walk bounded by the number of groups (a path longer than that loops).
            let mut stack = vec![(*start, vec![*start])];
            while let Some((node, path)) = stack.pop() {
                for next in edges.get(node).into_iter().flatten() {
                    if *next == *start {
                        let mut cyc = path.clone();
                        let min = cyc.iter().min().copied().unwrap_or(start);
                        let pos = cyc.iter().position(|n| *n == min).unwrap_or(0);
                        cyc.rotate_left(pos);
                        if reported.insert(cyc.clone()) {
                            let mut text = cyc.join(" → ");
                            text.push_str(" → ");
                            text.push_str(cyc[0]);
                            out.push(finding(
                                "fallback.cycle",
                                Severity::Error,
                                cyc.iter().map(|g| format!("group {g}")).chain([scope.label.clone()]).collect(),
                                format!("{field} loop in {}: {text}", scope.label),
                                "remove one edge of the loop; a failing request would bounce between these groups".into(),
                            ));
                        }
                    } else if !path.contains(next) && path.len() <= edges.len() {
                        let mut p = path.clone();
                        p.push(next);
                        stack.push((next, p));
                    }
                }
            }
        }
    }
}

fn chain_length(scope: &Scope<'_>, out: &mut Vec<Finding>) {
    let eff = &scope.effective;
    let max = eff.max_fallbacks.value as usize;
    for (field, rules) in all_lists(eff) {
        for r in rules {
            if r.targets.len() > max {
                out.push(finding(
                    "fallback.chain-too-long",
                    Severity::Warning,
                    vec![format!("group {}", r.group), scope.label.clone()],
                    format!(
                        "{field} of `{}` lists {} targets but max_fallbacks is {max}: {} are never tried",
                        r.group,
                        r.targets.len(),
                        r.targets[max..].join(", ")
                    ),
                    format!("shorten the chain or set max_fallbacks ≥ {}", r.targets.len()),
                ));
            }
        }
    }
}

fn providers<'a>(ds: &[&'a DeploymentInfo]) -> BTreeSet<&'a str> {
    ds.iter().map(|d| d.provider.as_str()).collect()
}

fn diversity(input: &AuditInput, scope: &Scope<'_>, out: &mut Vec<Finding>) {
    let eff = &scope.effective;
    if !own(scope, eff.fallbacks.source) {
        return;
    }
    let groups = input.groups();
    for r in eff.fallbacks.value.iter().filter(|r| r.group != "*") {
        let Some(primary) = groups.get(input.canonical(&r.group)) else {
            continue;
        };
        let targets: Vec<&DeploymentInfo> = r
            .targets
            .iter()
            .flat_map(|t| input.target_deployments(t))
            .collect();
        if targets.is_empty() {
            continue;
        }
        let pp = providers(primary);
        if providers(&targets).is_subset(&pp) {
            out.push(finding(
                "fallback.single-vendor",
                Severity::Warning,
                vec![format!("group {}", r.group), scope.label.clone()],
                format!(
                    "every fallback of `{}` runs on {} like the primary: a provider outage takes out the whole chain",
                    r.group,
                    pp.into_iter().collect::<Vec<_>>().join(", ")
                ),
                "add a fallback target served by a different provider".into(),
            ));
            continue;
        }
        let regions = |ds: &[&DeploymentInfo]| -> Option<BTreeSet<String>> {
            ds.iter().map(|d| d.region.clone()).collect()
        };
        if let (Some(pr), Some(tr)) = (regions(primary), regions(&targets)) {
            if tr.is_subset(&pr) {
                out.push(finding(
                    "fallback.single-region",
                    Severity::Warning,
                    vec![format!("group {}", r.group), scope.label.clone()],
                    format!(
                        "every fallback of `{}` runs in {} like the primary",
                        r.group,
                        pr.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                    "add a fallback target in another region".into(),
                ));
            }
        }
    }
}

fn min_window(ds: &[&DeploymentInfo]) -> Option<u64> {
    ds.iter()
        .map(|d| d.context_window)
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()
}

fn context_window(input: &AuditInput, scope: &Scope<'_>, out: &mut Vec<Finding>) {
    let eff = &scope.effective;
    if !own(scope, eff.fallbacks.source) {
        return;
    }
    let groups = input.groups();
    for r in eff.fallbacks.value.iter().filter(|r| r.group != "*") {
        let Some(primary) = groups.get(input.canonical(&r.group)) else {
            continue;
        };
        let Some(need) = primary.iter().filter_map(|d| d.context_window).max() else {
            continue;
        };
        // A context-window fallback with enough room covers the gap.
        let covered = eff
            .context_window_fallbacks
            .value
            .iter()
            .filter(|c| c.group == r.group)
            .flat_map(|c| &c.targets)
            .any(|t| min_window(&input.target_deployments(t)).is_some_and(|w| w >= need));
        if covered {
            continue;
        }
        for t in &r.targets {
            if let Some(w) = min_window(&input.target_deployments(t)) {
                if w < need {
                    out.push(finding(
                        "fallback.context-window",
                        Severity::Warning,
                        vec![format!("group {}", r.group), format!("target {t}"), scope.label.clone()],
                        format!("fallback `{t}` accepts {w} input tokens, the primary `{}` up to {need}: long prompts fail over to an error", r.group),
                        format!("add a context_window_fallbacks entry for `{}` with a target of ≥ {need} tokens", r.group),
                    ));
                }
            }
        }
    }
}

fn settings_defaults(input: &AuditInput, out: &mut Vec<Finding>) {
    let rs = &input.router_settings;
    let unset: [(&str, bool, String); 4] = [
        (
            "num_retries",
            rs.num_retries.is_none(),
            defaults::NUM_RETRIES.to_string(),
        ),
        (
            "timeout",
            rs.timeout.is_none(),
            format!("{} s", defaults::TIMEOUT.as_secs()),
        ),
        (
            "cooldown_time",
            rs.cooldown_time.is_none(),
            format!("{} s", defaults::COOLDOWN_TIME.as_secs()),
        ),
        (
            "allowed_fails",
            rs.allowed_fails.is_none(),
            defaults::ALLOWED_FAILS.to_string(),
        ),
    ];
    for (name, is_unset, default) in unset {
        if is_unset {
            out.push(finding(
                "settings.default",
                Severity::Info,
                vec![format!("router_settings.{name}")],
                format!("{name} is not set: the default {default} applies"),
                format!("set router_settings.{name} explicitly so the readiness memo documents it"),
            ));
        }
    }
}

fn retry_budget(input: &AuditInput, scope: &Scope<'_>, out: &mut Vec<Finding>) {
    let eff = &scope.effective;
    if !(own(scope, eff.num_retries.source)
        || own(scope, eff.timeout.source)
        || own(scope, eff.fallbacks.source))
    {
        return;
    }
    let client = input.client_timeout_s.unwrap_or(DEFAULT_CLIENT_TIMEOUT_S);
    let per_hop = f64::from(eff.num_retries.value + 1) * eff.timeout().as_secs_f64();
    let max = eff.max_fallbacks.value as usize;
    let longest = eff
        .fallbacks
        .value
        .iter()
        .map(|r| (r.group.as_str(), r.targets.len().min(max)))
        .max_by_key(|(_, n)| *n);
    let (group, hops) = longest.unwrap_or(("(all groups)", 0));
    let budget = per_hop * (hops as f64 + 1.0);
    if budget > client {
        out.push(finding(
            "settings.retry-budget",
            Severity::Warning,
            vec![format!("group {group}"), scope.label.clone()],
            format!(
                "worst case {:.0} s ((num_retries {} + 1) × timeout {:.0} s × {} deployments tried) exceeds the client timeout of {client:.0} s: clients give up before the fallback is reached",
                budget, eff.num_retries.value, eff.timeout().as_secs_f64(), hops + 1
            ),
            "lower timeout or num_retries so the whole chain fits in the client timeout".into(),
        ));
    }
}

fn capacity(input: &AuditInput, scope: &Scope<'_>, out: &mut Vec<Finding>) {
    let eff = &scope.effective;
    if !own(scope, eff.fallbacks.source) {
        return;
    }
    let groups = input.groups();
    let sum = |ds: &[&DeploymentInfo], f: fn(&DeploymentInfo) -> Option<u64>| -> Option<u64> {
        ds.iter().map(|d| f(d)).sum()
    };
    for r in eff.fallbacks.value.iter().filter(|r| r.group != "*") {
        let Some(primary) = groups.get(input.canonical(&r.group)) else {
            continue;
        };
        let targets: Vec<&DeploymentInfo> = r
            .targets
            .iter()
            .flat_map(|t| input.target_deployments(t))
            .collect();
        if targets.is_empty() {
            continue;
        }
        for (unit, f) in [
            (
                "rpm",
                (|d: &DeploymentInfo| d.rpm) as fn(&DeploymentInfo) -> Option<u64>,
            ),
            ("tpm", |d: &DeploymentInfo| d.tpm),
        ] {
            if let (Some(p), Some(t)) = (sum(primary, f), sum(&targets, f)) {
                if t < p {
                    out.push(finding(
                        "fallback.capacity",
                        Severity::Warning,
                        vec![format!("group {}", r.group), scope.label.clone()],
                        format!("fallbacks of `{}` have {t} {unit} in total, the primary {p} {unit}: a full failover is throttled", r.group),
                        format!("raise the {unit} of the fallback deployments or add one"),
                    ));
                }
            }
        }
    }
}

fn access(input: &AuditInput, scope: &Scope<'_>, out: &mut Vec<Finding>) {
    let Some(p) = scope.principal else {
        return;
    };
    if p.models.is_empty() {
        return;
    }
    let allowed: BTreeSet<&str> = p.models.iter().map(|m| input.canonical(m)).collect();
    let eff = &scope.effective;
    for group in reachable(input, scope) {
        for t in general_targets(eff, group).unwrap_or_default() {
            let target_groups: BTreeSet<&str> = input
                .target_deployments(t)
                .iter()
                .map(|d| d.group.as_str())
                .collect();
            if !target_groups.is_empty() && target_groups.is_disjoint(&allowed) {
                out.push(finding(
                    "access.fallback-target",
                    Severity::Error,
                    vec![scope.label.clone(), format!("group {group}"), format!("target {t}")],
                    format!("{} may not call `{t}`, the fallback of `{group}` it uses: the gateway re-checks access on each hop, so the fallback is refused", scope.label),
                    format!("add `{t}` to the models of {} or change its fallback", scope.label),
                ));
            }
        }
    }
}

fn budget(scope: &Scope<'_>, out: &mut Vec<Finding>) {
    if let Some(p) = scope.principal {
        if p.max_budget.is_none() {
            out.push(finding(
                "budget.missing",
                Severity::Warning,
                vec![scope.label.clone()],
                format!("{} has no max_budget: a runaway client (or a fallback to a pricier model) spends without limit", scope.label),
                format!("set max_budget on {}", scope.label),
            ));
        }
    }
}

/// SEP-986: 1–64 characters of `A-Z a-z 0-9 _ - . /`.
pub fn valid_mcp_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
}

fn mcp_names(input: &AuditInput, out: &mut Vec<Finding>) {
    for name in &input.mcp_servers {
        if !valid_mcp_name(name) {
            out.push(finding(
                "mcp.name",
                Severity::Error,
                vec![format!("mcp server {name}")],
                format!("MCP server name `{name}` is not 1–64 characters of A-Z a-z 0-9 _ - . /"),
                "rename the server (SEP-986), e.g. replace spaces with `-`".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcp_names_follow_sep_986() {
        assert!(valid_mcp_name("github"));
        assert!(valid_mcp_name("acme/search-v1.2_beta"));
        assert!(!valid_mcp_name(""));
        assert!(!valid_mcp_name("my server"));
        assert!(!valid_mcp_name(&"a".repeat(65)));
        assert!(!valid_mcp_name("naïve"));
    }
}
