//! Checks that need the whole config at once: deployment ids are unique, every fallback source
//! and target names something that exists (a model group, a wildcard group that matches, an
//! alias, or a deployment id), no fallback chain loops, and every `model_group_alias` points at
//! a group. Findings go to the sink with the key path of the offending value; the sink finds
//! its line.

use std::collections::{BTreeMap, BTreeSet};

use super::diagnostic::{did_you_mean, list_names, Sink};
use super::yaml::KeyPath;
use super::GroupAlias;

/// A place in a loaded file.
#[derive(Clone, Debug)]
pub(crate) struct Site {
    pub file: usize,
    pub path: KeyPath,
}

/// Where a deployment landed in the output.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Slot {
    Served(usize),
    Unserved(usize),
}

/// What validation needs to know about one deployment.
#[derive(Clone, Debug)]
pub(crate) struct DeploymentRecord {
    pub id: String,
    /// `model_info.id` was given (else the id is derived).
    pub explicit: bool,
    pub group: String,
    pub served: bool,
    pub site: Site,
    pub id_site: Site,
    pub slot: Slot,
}

/// One fallback rule with the position of its group and of each target.
#[derive(Clone, Debug)]
pub(crate) struct LocatedRule {
    pub group: String,
    pub group_site: Site,
    pub targets: Vec<(String, Site)>,
}

/// One fallback list (`fallbacks`, `context_window_fallbacks`, ...) as written.
#[derive(Clone, Debug)]
pub(crate) struct LocatedList {
    pub field: &'static str,
    pub site: Site,
    pub rules: Vec<LocatedRule>,
}

#[derive(Clone, Debug)]
pub(crate) struct LocatedAlias {
    pub alias: String,
    pub target: String,
    pub site: Site,
}

/// `model_list[0].model_info.id (line 5, column 18)`, naming the file when it is not `from`'s.
fn location(sink: &Sink, site: &Site, from: usize) -> String {
    let file = sink.file(site.file);
    let mark = file.root.as_ref().map(|root| root.locate(&site.path));
    match (site.file == from, mark) {
        (true, Some(m)) => format!("{} (line {}, column {})", site.path, m.line, m.col),
        (false, Some(m)) => format!(
            "{} ({}:{}:{})",
            site.path,
            file.path.display(),
            m.line,
            m.col
        ),
        (_, None) => format!("{} ({})", site.path, file.path.display()),
    }
}

/// Makes deployment ids unique. Two explicit ids that collide are an error naming both places.
/// Two derived ids collide only for deployments that differ in nothing the id is derived from
/// (typically the same model with two API keys); the later one gets a positional suffix and a
/// warning, since its id is then only as stable as the order of the file.
pub(crate) fn settle_ids(records: &mut [DeploymentRecord], sink: &mut Sink) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..records.len() {
        if !records[i].explicit {
            continue;
        }
        match seen.get(&records[i].id) {
            Some(&first) => {
                let first_at = location(sink, &records[first].id_site, records[i].id_site.file);
                let r = &records[i];
                sink.error(
                    r.id_site.file,
                    &r.id_site.path,
                    format!("duplicate deployment id `{}`", r.id),
                    Some(format!("also used by {first_at}")),
                );
            }
            None => {
                seen.insert(records[i].id.clone(), i);
            }
        }
    }
    for i in 0..records.len() {
        if records[i].explicit {
            continue;
        }
        let Some(&first) = seen.get(&records[i].id) else {
            seen.insert(records[i].id.clone(), i);
            continue;
        };
        let first_at = location(sink, &records[first].site, records[i].site.file);
        if records[first].explicit {
            let r = &records[i];
            sink.error(
                r.site.file,
                &r.site.path,
                format!("derived deployment id `{}` equals an explicit id", r.id),
                Some(format!("also used by {first_at}; set `model_info.id` here")),
            );
            continue;
        }
        let base = records[i].id.clone();
        let id = (2..)
            .map(|n| format!("{base}-{n}"))
            .find(|candidate| !seen.contains_key(candidate))
            .unwrap_or(base);
        records[i].id = id.clone();
        seen.insert(id.clone(), i);
        let r = &records[i];
        sink.warn(
            r.site.file,
            &r.site.path,
            format!(
                "same model_name, model, api_base and api_version as {first_at}; its derived id is `{id}`, by position"
            ),
            Some("set `model_info.id` on both so their ids survive reordering".to_owned()),
        );
    }
}

/// `*` matching any run of characters, as LiteLLM's wildcard model groups do.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Every name a fallback or alias may use, and whether Switchyard serves it.
pub(crate) struct Names {
    groups: BTreeMap<String, bool>,
    wildcards: Vec<(String, bool)>,
    ids: BTreeMap<String, bool>,
    aliases: BTreeMap<String, String>,
}

impl Names {
    pub fn new(
        records: &[DeploymentRecord],
        broken: &[String],
        aliases: Option<&BTreeMap<String, GroupAlias>>,
    ) -> Self {
        let mut groups: BTreeMap<String, bool> = BTreeMap::new();
        for r in records {
            *groups.entry(r.group.clone()).or_insert(false) |= r.served;
        }
        // A group whose deployment failed to load was already reported; treat it as fine here.
        for g in broken {
            groups.insert(g.clone(), true);
        }
        let wildcards = groups
            .iter()
            .filter(|(g, _)| g.contains('*'))
            .map(|(g, s)| (g.clone(), *s))
            .collect();
        let mut ids: BTreeMap<String, bool> = BTreeMap::new();
        for r in records {
            ids.insert(r.id.clone(), r.served);
        }
        let aliases = aliases
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.clone(), v.target().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Names {
            groups,
            wildcards,
            ids,
            aliases,
        }
    }

    /// A model group, exactly or through a wildcard group: `Some(served)`.
    fn group(&self, name: &str) -> Option<bool> {
        if let Some(served) = self.groups.get(name) {
            return Some(*served);
        }
        let matching: Vec<bool> = self
            .wildcards
            .iter()
            .filter(|(p, _)| glob(p, name))
            .map(|(_, s)| *s)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().any(|s| *s))
    }

    /// Anything a fallback may name: group, alias, or deployment id.
    fn target(&self, name: &str) -> Option<bool> {
        if let Some(served) = self.groups.get(name) {
            return Some(*served);
        }
        if let Some(target) = self.aliases.get(name) {
            return self.group(target);
        }
        if let Some(served) = self.ids.get(name) {
            return Some(*served);
        }
        self.group(name)
    }

    /// Aliases resolved, so `a -> alias-of-a` is seen as the loop it is.
    fn canonical<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map_or(name, String::as_str)
    }

    fn unknown_hint(&self, name: &str) -> String {
        let candidates = self
            .groups
            .keys()
            .chain(self.aliases.keys())
            .chain(self.ids.keys())
            .map(String::as_str);
        let mean = did_you_mean(name, candidates)
            .map(|c| format!("did you mean `{c}`? "))
            .unwrap_or_default();
        if self.groups.is_empty() {
            return format!("{mean}the config defines no model groups");
        }
        format!(
            "{mean}known groups: {}",
            list_names(self.groups.keys().map(String::as_str), 20)
        )
    }
}

/// Every rule's group and every target must name something that exists.
pub(crate) fn check_fallbacks(
    names: &Names,
    lists: &[&LocatedList],
    default_fallbacks: Option<&(Vec<(String, Site)>, Site)>,
    sink: &mut Sink,
) {
    let check_target = |sink: &mut Sink, field: &str, target: &str, site: &Site| {
        match names.target(target) {
        None => sink.error(
            site.file,
            &site.path,
            format!("unknown fallback target `{target}` in {field}: no model group, alias or deployment id has this name"),
            Some(names.unknown_hint(target)),
        ),
        Some(false) => sink.warn(
            site.file,
            &site.path,
            format!("fallback target `{target}` in {field} has no deployment switchyard serves"),
            None,
        ),
        Some(true) => {}
    }
    };
    for list in lists {
        for rule in &list.rules {
            if rule.group != "*" && names.target(&rule.group).is_none() {
                sink.error(
                    rule.group_site.file,
                    &rule.group_site.path,
                    format!("{} for unknown model group `{}`", list.field, rule.group),
                    Some(names.unknown_hint(&rule.group)),
                );
            }
            for (target, site) in &rule.targets {
                check_target(sink, list.field, target, site);
            }
        }
    }
    if let Some((targets, _)) = default_fallbacks {
        for (target, site) in targets {
            check_target(sink, "default_fallbacks", target, site);
        }
    }
}

/// A fallback list must not loop: `a -> b -> a` would bounce a failing request between groups.
pub(crate) fn check_cycles(names: &Names, lists: &[&LocatedList], sink: &mut Sink) {
    for list in lists {
        let mut edges: BTreeMap<&str, Vec<(&str, &Site)>> = BTreeMap::new();
        for rule in list.rules.iter().filter(|r| r.group != "*") {
            let from = names.canonical(&rule.group);
            let out = edges.entry(from).or_default();
            for (target, site) in &rule.targets {
                out.push((names.canonical(target), site));
            }
        }
        let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let starts: Vec<&str> = edges.keys().copied().collect();
        for start in starts {
            if done.contains(start) {
                continue;
            }
            let mut stack: Vec<&str> = Vec::new();
            visit(start, &edges, &mut stack, &mut done, &mut |cycle, site| {
                // The same loop is found from every node on it; report it once.
                let min = cycle
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, n)| **n)
                    .map_or(0, |(i, _)| i);
                let key: Vec<String> = cycle[min..]
                    .iter()
                    .chain(&cycle[..min])
                    .map(|s| (*s).to_owned())
                    .collect();
                if reported.insert(key) {
                    let mut text = cycle.join(" -> ");
                    text.push_str(" -> ");
                    text.push_str(cycle[0]);
                    sink.error(
                        site.file,
                        &site.path,
                        format!("fallback cycle in {}: {text}", list.field),
                        Some("a failing request would bounce between these groups; remove one of the edges".to_owned()),
                    );
                }
            });
        }
    }
}

fn visit<'a>(
    node: &'a str,
    edges: &BTreeMap<&'a str, Vec<(&'a str, &'a Site)>>,
    stack: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
    report: &mut dyn FnMut(&[&'a str], &'a Site),
) {
    stack.push(node);
    for &(next, site) in edges.get(node).map(Vec::as_slice).unwrap_or_default() {
        if let Some(pos) = stack.iter().position(|n| *n == next) {
            report(&stack[pos..], site);
        } else if !done.contains(next) {
            visit(next, edges, stack, done, report);
        }
    }
    stack.pop();
    done.insert(node);
}

/// Every `model_group_alias` must point at a model group.
pub(crate) fn check_aliases(names: &Names, aliases: &[LocatedAlias], sink: &mut Sink) {
    for a in aliases {
        if names.group(&a.target).is_none() {
            sink.error(
                a.site.file,
                &a.site.path,
                format!(
                    "model_group_alias `{}` points to unknown model group `{}`",
                    a.alias, a.target
                ),
                Some(names.unknown_hint(&a.target)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_litellm_wildcards() {
        assert!(glob("*", "gpt-5.5"));
        assert!(glob("azure/*", "azure/gpt-4o"));
        assert!(!glob("azure/*", "openai/gpt-4o"));
        assert!(glob("claude-*-sonnet", "claude-3-5-sonnet"));
        assert!(!glob("claude-*-sonnet", "claude-3-5-haiku"));
        assert!(glob("a*", "a"));
    }
}
