//! Checks router settings saved on keys and teams against the groups and deployments the
//! gateway knows (the config file's and the runtime models of the live routing table):
//! unknown names and fallback cycles are refused before anything is saved.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Config, FallbackRule, RouterSettings};
use crate::error::ApiError;
use crate::AppState;

/// Every name a fallback or alias may point at: model groups, deployment ids (with their
/// group) and the global model group aliases. The admin API, the admin UI and imports check
/// against this; the UI also lists it in the fallback editor.
#[derive(Clone, Debug, Default)]
pub struct KnownTargets {
    pub groups: BTreeSet<String>,
    /// Deployment id → its model group.
    pub deployments: BTreeMap<String, String>,
    pub aliases: BTreeSet<String>,
}

fn alias_names(rs: &RouterSettings) -> BTreeSet<String> {
    rs.model_group_alias
        .iter()
        .flat_map(|m| m.keys().cloned())
        .collect()
}

impl KnownTargets {
    /// What the config file serves, with its global aliases.
    pub fn of(config: &Config) -> Self {
        let groups = config.group_names().into_iter().map(String::from).collect();
        let deployments = config
            .model_list
            .iter()
            .map(|d| (d.id.0.clone(), d.model_name.clone()))
            .chain(
                config
                    .unserved
                    .iter()
                    .map(|u| (u.id.0.clone(), u.model_name.clone())),
            )
            .collect();
        KnownTargets {
            groups,
            deployments,
            aliases: alias_names(&config.router_settings),
        }
    }

    /// What the gateway serves now: the live routing table (config and runtime models), the
    /// config file's unserved deployments, and the aliases of the live global layer (the
    /// config file's `router_settings` with the runtime block over them).
    pub fn live(state: &AppState) -> Self {
        let mut known = KnownTargets::of(&state.config);
        let table = state.router.groups();
        known.groups.extend(table.names().map(String::from));
        known.deployments.extend(
            table
                .deployments()
                .map(|d| (d.id().0.clone(), d.deployment.model_name.clone())),
        );
        known.aliases = alias_names(&state.global_settings.current().merged);
        known
    }

    /// Adds runtime models: `(model group, deployment id)` pairs.
    pub fn with_models<'a>(mut self, models: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        for (group, id) in models {
            self.groups.insert(group.to_owned());
            self.deployments.insert(id.to_owned(), group.to_owned());
        }
        self
    }

    /// Every name, sorted and once each.
    pub fn all(&self) -> Vec<String> {
        let mut v: BTreeSet<&String> = self.groups.iter().collect();
        v.extend(self.deployments.keys());
        v.extend(self.aliases.iter());
        v.into_iter().cloned().collect()
    }
}

fn unknown(field: &str, name: &str, groups: &BTreeSet<String>) -> ApiError {
    let list: Vec<&str> = groups.iter().map(String::as_str).collect();
    ApiError::bad_request(format!(
        "{field} names unknown model group or deployment {name:?}; known groups: {}",
        list.join(", ")
    ))
    .with_param(field)
}

/// Refuses `settings` (of a key or team) naming unknown groups or forming a fallback cycle,
/// against what the gateway serves now ([`KnownTargets::live`]).
pub fn router_settings(state: &AppState, settings: &RouterSettings) -> Result<(), ApiError> {
    router_settings_known(&KnownTargets::live(state), settings)
}

/// [`router_settings`] against an explicit set of targets (an import adds runtime models).
pub fn router_settings_known(
    known: &KnownTargets,
    settings: &RouterSettings,
) -> Result<(), ApiError> {
    let (groups, deployments) = (&known.groups, &known.deployments);
    let aliases: BTreeSet<&str> = settings
        .model_group_alias
        .iter()
        .flat_map(|m| m.keys().map(String::as_str))
        .chain(known.aliases.iter().map(String::as_str))
        .collect();
    let is_known =
        |n: &str| groups.contains(n) || deployments.contains_key(n) || aliases.contains(n);
    let lists: [(&str, &Option<Vec<FallbackRule>>); 3] = [
        ("router_settings.fallbacks", &settings.fallbacks),
        (
            "router_settings.context_window_fallbacks",
            &settings.context_window_fallbacks,
        ),
        (
            "router_settings.content_policy_fallbacks",
            &settings.content_policy_fallbacks,
        ),
    ];
    for (field, rules) in lists {
        let Some(rules) = rules else { continue };
        let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for r in rules {
            if r.group != "*" && !is_known(&r.group) {
                return Err(unknown(field, &r.group, groups));
            }
            for t in &r.targets {
                if !is_known(t) {
                    return Err(unknown(field, t, groups));
                }
                edges.entry(r.group.as_str()).or_default().push(t.as_str());
            }
        }
        if let Some(cycle) = find_cycle(&edges) {
            return Err(ApiError::bad_request(format!(
                "{field} forms a fallback cycle: {}",
                cycle.join(" -> ")
            ))
            .with_param(field));
        }
    }
    for t in settings.default_fallbacks.iter().flatten() {
        if !is_known(t) {
            return Err(unknown("router_settings.default_fallbacks", t, groups));
        }
    }
    for target in settings.model_group_alias.iter().flat_map(|m| m.values()) {
        if !groups.contains(target.target()) {
            return Err(unknown(
                "router_settings.model_group_alias",
                target.target(),
                groups,
            ));
        }
    }
    Ok(())
}

/// A key's `aliases` map must point at known groups.
pub fn key_aliases(state: &AppState, aliases: &BTreeMap<String, String>) -> Result<(), ApiError> {
    key_aliases_known(&KnownTargets::live(state), aliases)
}

/// [`key_aliases`] against an explicit set of targets.
pub fn key_aliases_known(
    known: &KnownTargets,
    aliases: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    for target in aliases.values() {
        if !known.groups.contains(target) {
            return Err(unknown("aliases", target, &known.groups));
        }
    }
    Ok(())
}

fn find_cycle<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(pos) = stack.iter().position(|n| *n == node) {
            let mut c = stack[pos..].to_vec();
            c.push(node);
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for start in edges.keys() {
        if let Some(c) = visit(start, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_found() {
        let mut e = BTreeMap::new();
        e.insert("a", vec!["b"]);
        e.insert("b", vec!["c"]);
        assert!(find_cycle(&e).is_none());
        e.insert("c", vec!["a"]);
        assert_eq!(find_cycle(&e), Some(vec!["a", "b", "c", "a"]));
    }
}
