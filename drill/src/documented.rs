//! What the documentation says: the gateway config (or the documented config) plus the
//! scenario's keys and teams, resolved Key > Team > Global field by field. Gives the fallback
//! chain a request should walk, which deployments should serve when some are down, the
//! deployment inventory and the effective settings with their provenance. Written from the
//! README's documented semantics, not by calling the gateway's router, so a router bug is not
//! mirrored into the expectation.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use switchyard::config::{Config, FallbackRule, GroupAlias, RouterSettings};
use switchyard::keys::effective::{EffectiveRouterSettings, Source as SettingSource};

use crate::scenario::validate::router_settings;
use crate::scenario::Scenario;

/// Which fallback list a failure walks (README: "the failure's kind picks the chain").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainKind {
    /// `fallbacks`, else `default_fallbacks`.
    General,
    ContextWindow,
    ContentPolicy,
}

impl ChainKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainKind::General => "fallbacks",
            ChainKind::ContextWindow => "context_window_fallbacks",
            ChainKind::ContentPolicy => "content_policy_fallbacks",
        }
    }
}

/// Key-level and team-level settings of one scenario key.
#[derive(Debug, Clone, Default)]
struct KeyLayers {
    key: RouterSettings,
    team: Option<RouterSettings>,
}

/// The documented view of the gateway.
#[derive(Debug)]
pub struct Documented {
    pub config: Config,
    keys: BTreeMap<String, KeyLayers>,
}

/// A documented chain and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainDoc {
    /// `global` or `key:NAME`.
    pub subject: String,
    pub group: String,
    pub kind: ChainKind,
    /// Fallback targets in order (groups or deployment ids), after `max_fallbacks`.
    pub targets: Vec<String>,
    /// Which layer set the list (`key`, `team`, `global`, `default`).
    pub source: String,
}

/// One deployment of the inventory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryItem {
    pub group: String,
    pub deployment: String,
    pub provider: String,
    pub upstream_model: String,
    pub region: Option<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub order: Option<u32>,
    /// Per-deployment overrides of the router settings, seconds (None: the router's value).
    pub timeout_s: Option<f64>,
    pub stream_timeout_s: Option<f64>,
    pub cooldown_time_s: Option<f64>,
    /// `primary` unless its group is a fallback target of some documented chain.
    pub role: String,
    /// The mock provider standing in for it, if any.
    pub mock: Option<String>,
}

impl Documented {
    /// `config` documents the global settings; the scenario adds keys and teams.
    pub fn new(config: Config, scenario: &Scenario) -> Self {
        let mut keys = BTreeMap::new();
        for (name, k) in &scenario.traffic.keys {
            let parse = |v: &Option<serde_json::Value>| {
                v.as_ref()
                    .and_then(|v| router_settings(v).ok())
                    .unwrap_or_default()
            };
            let team = k.team.as_ref().map(|t| {
                scenario
                    .traffic
                    .teams
                    .get(t)
                    .map(|t| parse(&t.router_settings))
                    .unwrap_or_default()
            });
            keys.insert(
                name.clone(),
                KeyLayers {
                    key: parse(&k.router_settings),
                    team,
                },
            );
        }
        Self { config, keys }
    }

    /// `config` documents the global settings, with the export's runtime global
    /// `router_settings` over them field by field (as the gateway applies them); the export's
    /// keys (matched to the scenario's keys by `key_alias`) and their teams add the key and
    /// team layers.
    pub fn with_export(
        mut config: Config,
        export: &switchyard::state::StateDocument,
        scenario: &Scenario,
    ) -> Self {
        if let Some(runtime) = &export.spec.router_settings {
            config.router_settings =
                switchyard::keys::global::overlay(runtime, &config.router_settings);
        }
        let mut keys = BTreeMap::new();
        for name in scenario.traffic.keys.keys() {
            let Some(k) = crate::export::key_of(export, scenario, name) else {
                continue;
            };
            let team = k.team_id.as_ref().map(|id| {
                export
                    .spec
                    .teams
                    .iter()
                    .flatten()
                    .find(|t| &t.team_id == id)
                    .and_then(|t| t.router_settings.clone())
                    .unwrap_or_default()
            });
            keys.insert(
                name.clone(),
                KeyLayers {
                    key: k.router_settings.clone().unwrap_or_default(),
                    team,
                },
            );
        }
        Self { config, keys }
    }

    /// Effective settings for a request made with scenario key `key` (None: master key).
    pub fn effective(&self, key: Option<&str>) -> EffectiveRouterSettings {
        let global = &self.config.router_settings;
        match key.and_then(|k| self.keys.get(k)) {
            Some(l) => {
                let mut layers: Vec<(SettingSource, &RouterSettings)> =
                    vec![(SettingSource::Key, &l.key)];
                if let Some(t) = &l.team {
                    layers.push((SettingSource::Team, t));
                }
                layers.push((SettingSource::Global, global));
                EffectiveRouterSettings::resolve(&layers)
            }
            None => EffectiveRouterSettings::global(global),
        }
    }

    /// The group a requested model name resolves to (aliases followed once).
    pub fn resolve_model(&self, key: Option<&str>, model: &str) -> String {
        let eff = self.effective(key);
        eff.model_group_alias
            .value
            .get(model)
            .map_or_else(|| model.to_owned(), |a: &GroupAlias| a.target().to_owned())
    }

    pub fn group_of(&self, deployment: &str) -> Option<&str> {
        self.config
            .model_list
            .iter()
            .find(|d| d.id.as_str() == deployment)
            .map(|d| d.model_name.as_str())
    }

    /// Deployments a target names: a group's deployments, or the one deployment with that id.
    pub fn deployments_of(&self, target: &str) -> Vec<String> {
        let in_group: Vec<String> = self
            .config
            .model_list
            .iter()
            .filter(|d| d.model_name == target)
            .map(|d| d.id.as_str().to_owned())
            .collect();
        if !in_group.is_empty() {
            return in_group;
        }
        self.config
            .model_list
            .iter()
            .filter(|d| d.id.as_str() == target)
            .map(|d| d.id.as_str().to_owned())
            .collect()
    }

    /// The documented fallback targets of `group` for `kind`, with the layer that set them.
    pub fn chain(&self, key: Option<&str>, group: &str, kind: ChainKind) -> ChainDoc {
        let eff = self.effective(key);
        let rule_for = |rules: &[FallbackRule]| -> Option<Vec<String>> {
            rules
                .iter()
                .find(|r| r.group == group)
                .or_else(|| rules.iter().find(|r| r.group == "*"))
                .map(|r| r.targets.clone())
        };
        let (targets, source) = match kind {
            ChainKind::General => match rule_for(&eff.fallbacks.value) {
                Some(t) => (t, eff.fallbacks.source),
                // No rule for the group: `default_fallbacks` decides. When nobody set those,
                // the layer that set `fallbacks` (e.g. a key's `[]`) is what emptied the chain.
                None => (
                    eff.default_fallbacks.value.clone(),
                    if eff.default_fallbacks.source == SettingSource::Default {
                        eff.fallbacks.source
                    } else {
                        eff.default_fallbacks.source
                    },
                ),
            },
            ChainKind::ContextWindow => (
                rule_for(&eff.context_window_fallbacks.value).unwrap_or_default(),
                eff.context_window_fallbacks.source,
            ),
            ChainKind::ContentPolicy => (
                rule_for(&eff.content_policy_fallbacks.value).unwrap_or_default(),
                eff.content_policy_fallbacks.source,
            ),
        };
        let targets: Vec<String> = targets
            .into_iter()
            .filter(|t| t != group)
            .take(eff.max_fallbacks.value as usize)
            .collect();
        ChainDoc {
            subject: key.map_or_else(|| "global".to_owned(), |k| format!("key:{k}")),
            group: group.to_owned(),
            kind,
            targets,
            source: source.as_str().to_owned(),
        }
    }

    /// The deployments that should serve a request for `group` when the deployments in `down`
    /// fail: the group's own healthy deployments, else those of the first chain target that has
    /// a healthy one. Empty when the documentation promises no server.
    pub fn expected_servers(
        &self,
        key: Option<&str>,
        group: &str,
        kind: ChainKind,
        down: &BTreeSet<String>,
    ) -> Vec<String> {
        let chain = self.chain(key, group, kind);
        std::iter::once(group.to_owned())
            .chain(chain.targets)
            .map(|t| {
                self.deployments_of(&t)
                    .into_iter()
                    .filter(|d| !down.contains(d))
                    .collect::<Vec<_>>()
            })
            .find(|v| !v.is_empty())
            .unwrap_or_default()
    }

    /// The documented cooldown of a deployment in seconds-precision duration.
    pub fn cooldown(&self, key: Option<&str>, deployment: &str) -> std::time::Duration {
        let per = self
            .config
            .model_list
            .iter()
            .find(|d| d.id.as_str() == deployment)
            .and_then(|d| d.cooldown_time);
        per.unwrap_or_else(|| self.effective(key).cooldown_time.value.0)
    }

    /// Every documented chain, for the global settings and every scenario key.
    pub fn all_chains(&self) -> Vec<ChainDoc> {
        let groups: BTreeSet<&str> = self.config.group_names();
        let subjects: Vec<Option<&str>> = std::iter::once(None)
            .chain(self.keys.keys().map(|k| Some(k.as_str())))
            .collect();
        let mut out = Vec::new();
        for s in subjects {
            for g in &groups {
                for kind in [
                    ChainKind::General,
                    ChainKind::ContextWindow,
                    ChainKind::ContentPolicy,
                ] {
                    let c = self.chain(s, g, kind);
                    if !c.targets.is_empty() {
                        out.push(c);
                    }
                }
            }
        }
        out
    }

    /// Effective settings (value + source of every field) for the global layer and every key.
    pub fn all_settings(&self) -> BTreeMap<String, EffectiveRouterSettings> {
        let mut out = BTreeMap::new();
        out.insert("global".to_owned(), self.effective(None));
        for k in self.keys.keys() {
            out.insert(format!("key:{k}"), self.effective(Some(k)));
        }
        out
    }

    /// The deployment inventory, `mock_of` naming the provider behind each deployment.
    pub fn inventory(&self, mock_of: &dyn Fn(&str) -> Option<String>) -> Vec<InventoryItem> {
        let fallback_groups: BTreeSet<String> = self
            .all_chains()
            .into_iter()
            .flat_map(|c| c.targets)
            .flat_map(|t| {
                let g = self.group_of(&t).map(str::to_owned);
                std::iter::once(t).chain(g)
            })
            .collect();
        self.config
            .model_list
            .iter()
            .map(|d| InventoryItem {
                group: d.model_name.clone(),
                deployment: d.id.as_str().to_owned(),
                provider: d.provider.as_str().to_owned(),
                upstream_model: d.upstream_model.clone(),
                region: d.region_name.clone(),
                rpm: d.rpm,
                tpm: d.tpm,
                order: d.order,
                timeout_s: d.timeout.map(|t| t.as_secs_f64()),
                stream_timeout_s: d.stream_timeout.map(|t| t.as_secs_f64()),
                cooldown_time_s: d.cooldown_time.map(|t| t.as_secs_f64()),
                role: if fallback_groups.contains(&d.model_name)
                    || fallback_groups.contains(d.id.as_str())
                {
                    "fallback".to_owned()
                } else {
                    "primary".to_owned()
                },
                mock: mock_of(d.id.as_str()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CONFIG: &str = r#"
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "http://127.0.0.1:9/v1", api_key: k}
    model_info: {id: east}
  - model_name: claude
    litellm_params: {model: anthropic/claude-x, api_base: "http://127.0.0.1:9", api_key: k}
    model_info: {id: west}
  - model_name: mini
    litellm_params: {model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:9/v1", api_key: k}
    model_info: {id: mini-1}
router_settings:
  fallbacks: [{"gpt-4o": ["claude", "mini"]}]
  context_window_fallbacks: [{"gpt-4o": ["mini"]}]
"#;

    fn scenario(keys: &str) -> Scenario {
        let text = format!(
            "apiVersion: drill/v1\nkind: Drill\nmetadata: {{name: t}}\nproviders: []\nphases: []\ntraffic:\n  profiles: []\n{keys}"
        );
        serde_yaml::from_str(&text).unwrap()
    }

    fn doc(keys: &str) -> Documented {
        let loaded = switchyard::config::load_str(
            CONFIG,
            Path::new("c.yaml"),
            &|_| None,
            &Default::default(),
        )
        .unwrap();
        Documented::new(loaded.config, &scenario(keys))
    }

    #[test]
    fn first_healthy_target_along_the_chain_is_expected() {
        let d = doc("");
        let down: BTreeSet<String> = ["east".to_owned()].into();
        assert_eq!(
            d.expected_servers(None, "gpt-4o", ChainKind::General, &down),
            ["west"]
        );
        let down: BTreeSet<String> = ["east".to_owned(), "west".to_owned()].into();
        assert_eq!(
            d.expected_servers(None, "gpt-4o", ChainKind::General, &down),
            ["mini-1"]
        );
        let down: BTreeSet<String> = ["east".to_owned()].into();
        assert_eq!(
            d.expected_servers(None, "gpt-4o", ChainKind::ContextWindow, &down),
            ["mini-1"]
        );
    }

    #[test]
    fn an_exports_runtime_global_settings_go_over_the_config_files() {
        let export = switchyard::state::parse_document(
            "schema_version: 1\nkind: switchyard/state\nsource: {version: 0.1.0}\nsecrets: redacted\n\
             spec:\n  router_settings: {fallbacks: [{gpt-4o: [mini]}]}\n",
            1 << 20,
        )
        .unwrap();
        let config = switchyard::config::load_str(
            CONFIG,
            Path::new("c.yaml"),
            &|_| None,
            &Default::default(),
        )
        .unwrap()
        .config;
        let d = Documented::with_export(config, &export, &scenario(""));
        let c = d.chain(None, "gpt-4o", ChainKind::General);
        assert_eq!(c.targets, ["mini"]);
        assert_eq!(c.source, "global");
        // Fields the runtime block does not set stay the config file's.
        let c = d.chain(None, "gpt-4o", ChainKind::ContextWindow);
        assert_eq!(c.targets, ["mini"]);
    }

    #[test]
    fn key_settings_override_team_and_global_with_provenance() {
        let d = doc(
            "  teams: {t: {router_settings: {fallbacks: [{gpt-4o: [mini]}]}}}\n  keys:\n    a: {team: t}\n    b: {team: t, router_settings: {fallbacks: []}}\n",
        );
        let c = d.chain(Some("a"), "gpt-4o", ChainKind::General);
        assert_eq!(c.targets, ["mini"]);
        assert_eq!(c.source, "team");
        let c = d.chain(Some("b"), "gpt-4o", ChainKind::General);
        assert!(c.targets.is_empty());
        assert_eq!(c.source, "key");
        let c = d.chain(None, "gpt-4o", ChainKind::General);
        assert_eq!(c.targets, ["claude", "mini"]);
        assert_eq!(c.source, "global");
    }
}
