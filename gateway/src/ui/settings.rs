//! Router settings as the UI shows and edits them for one key or team: the effective chain per
//! model group and fallback kind with the layer each entry comes from, the editable own layer
//! (the "draft"), and the server-side check of a submitted draft. Resolution itself is
//! `keys::effective`; name and cycle checks are `admin::validate`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::admin::validate::{self, KnownTargets};
use crate::config::{FallbackRule, RouterSettings, RoutingStrategy, Seconds};
use crate::keys::effective::{EffectiveRouterSettings, Source, Sourced};
use crate::keys::virtual_key::expand_models;
use crate::router::groups::ModelGroups;
use crate::store::Store;

/// The fallback kinds, in the order the page shows them.
pub const KINDS: [(&str, &str, &str); 4] = [
    (
        "fallbacks",
        "General",
        "Tried when a group fails with errors, timeouts or rate limits after its retries.",
    ),
    (
        "context_window_fallbacks",
        "Context window",
        "Tried when the prompt is longer than the group's context window.",
    ),
    (
        "content_policy_fallbacks",
        "Content policy",
        "Tried when the provider refuses the content.",
    ),
    (
        "default_fallbacks",
        "Default",
        "Tried for any group that has no general rule of its own.",
    ),
];

/// The editable fallback fields of one layer; `None` = inherit, `Some(vec![])` = explicitly none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Draft {
    #[serde(default)]
    pub fallbacks: Option<Vec<FallbackRule>>,
    #[serde(default)]
    pub context_window_fallbacks: Option<Vec<FallbackRule>>,
    #[serde(default)]
    pub content_policy_fallbacks: Option<Vec<FallbackRule>>,
    #[serde(default)]
    pub default_fallbacks: Option<Vec<String>>,
}

impl Draft {
    pub fn of(rs: Option<&RouterSettings>) -> Draft {
        let Some(rs) = rs else {
            return Draft::default();
        };
        Draft {
            fallbacks: rs.fallbacks.clone(),
            context_window_fallbacks: rs.context_window_fallbacks.clone(),
            content_policy_fallbacks: rs.content_policy_fallbacks.clone(),
            default_fallbacks: rs.default_fallbacks.clone(),
        }
    }

    fn rules(&self, field: &str) -> Option<&Vec<FallbackRule>> {
        match field {
            "fallbacks" => self.fallbacks.as_ref(),
            "context_window_fallbacks" => self.context_window_fallbacks.as_ref(),
            "content_policy_fallbacks" => self.content_policy_fallbacks.as_ref(),
            _ => None,
        }
    }

    fn is_set(&self, field: &str) -> bool {
        match field {
            "default_fallbacks" => self.default_fallbacks.is_some(),
            f => self.rules(f).is_some(),
        }
    }

    /// Every target named, with the field naming it.
    fn targets(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        for (field, _, _) in KINDS {
            for r in self.rules(field).into_iter().flatten() {
                out.extend(r.targets.iter().map(|t| (field, t.as_str())));
            }
        }
        out.extend(
            self.default_fallbacks
                .iter()
                .flatten()
                .map(|t| ("default_fallbacks", t.as_str())),
        );
        out
    }
}

/// The scalar settings the page edits, as typed into the form (empty = inherit).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ScalarForm {
    #[serde(default)]
    pub num_retries: String,
    #[serde(default)]
    pub timeout: String,
    #[serde(default)]
    pub cooldown_time: String,
    #[serde(default)]
    pub routing_strategy: String,
}

/// The settings form as posted: the editor's JSON plus the scalar fields.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    pub fallbacks_json: String,
    #[serde(default)]
    pub num_retries: String,
    #[serde(default)]
    pub timeout: String,
    #[serde(default)]
    pub cooldown_time: String,
    #[serde(default)]
    pub routing_strategy: String,
}

impl SettingsForm {
    pub fn scalars(&self) -> ScalarForm {
        ScalarForm {
            num_retries: self.num_retries.clone(),
            timeout: self.timeout.clone(),
            cooldown_time: self.cooldown_time.clone(),
            routing_strategy: self.routing_strategy.clone(),
        }
    }
}

/// A refused save: which part of the form, in plain words.
#[derive(Clone, Debug, Serialize)]
pub struct FieldError {
    /// A fallback field (`fallbacks`, ...), a scalar field, or `settings` for the whole form.
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Whose settings these are and what sits above them.
pub struct Subject<'a> {
    pub level: Source,
    pub own: Option<&'a RouterSettings>,
    /// The layers below `own`, most specific first (team then global, or global).
    pub parents: Vec<(Source, &'a RouterSettings)>,
    /// Groups the subject may use; `None` = every group.
    pub usable: Option<BTreeSet<String>>,
}

/// The groups `models` allow (`None` = every group), as the request path expands them.
pub async fn usable_groups(
    table: &ModelGroups,
    store: &dyn Store,
    models: &[String],
) -> Result<Option<BTreeSet<String>>, crate::store::StoreError> {
    Ok(expand_models(table, store, models)
        .await?
        .map(|s| s.into_iter().collect()))
}

#[derive(Debug, Serialize)]
pub struct TargetView {
    pub name: String,
    pub source: &'static str,
}

#[derive(Debug, Serialize)]
pub struct ChainRow {
    pub group: String,
    pub targets: Vec<TargetView>,
    pub source: &'static str,
    /// Set when the chain comes from another field (`default_fallbacks` for general).
    pub via: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct EditorRow {
    pub group: String,
    pub targets: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct KindView {
    pub field: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    /// The own layer sets this field (in the draft shown).
    pub overridden: bool,
    /// Overridden with an empty list: explicitly no fallbacks.
    pub none: bool,
    /// Where the value would come from without the own layer.
    pub inherited_source: &'static str,
    pub effective: Vec<ChainRow>,
    pub rows: Vec<EditorRow>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ScalarView {
    pub field: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    /// The own layer's value as the input shows it ("" = inherit).
    pub own: String,
    pub effective: String,
    pub source: &'static str,
    /// Choices for a select; empty for a number input.
    pub options: Vec<&'static str>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SettingsView {
    pub level: &'static str,
    pub parent: &'static str,
    pub kinds: Vec<KindView>,
    pub scalars: Vec<ScalarView>,
    pub known: Vec<String>,
    /// Everything the script needs, as JSON (goes into a `data-` attribute, autoescaped).
    pub editor_json: String,
    /// The draft as JSON, for the "edit as JSON" field.
    pub draft_json: String,
    pub error: Option<String>,
}

fn rule_for<'a>(rules: &'a [FallbackRule], group: &str) -> Option<&'a [String]> {
    rules
        .iter()
        .find(|r| r.group == group)
        .or_else(|| rules.iter().find(|r| r.group == "*"))
        .map(|r| r.targets.as_slice())
}

fn chain(targets: &[String], group: &str, source: Source) -> Vec<TargetView> {
    targets
        .iter()
        .filter(|t| t.as_str() != group)
        .map(|t| TargetView {
            name: t.clone(),
            source: source.as_str(),
        })
        .collect()
}

fn rules_of<'a>(e: &'a EffectiveRouterSettings, field: &str) -> &'a Sourced<Vec<FallbackRule>> {
    match field {
        "context_window_fallbacks" => &e.context_window_fallbacks,
        "content_policy_fallbacks" => &e.content_policy_fallbacks,
        _ => &e.fallbacks,
    }
}

fn field_source(e: &EffectiveRouterSettings, field: &str) -> Source {
    e.sources().get(field).copied().unwrap_or(Source::Default)
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", d.as_secs())
    } else {
        format!("{s}")
    }
}

fn strategy_name(s: RoutingStrategy) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

impl Subject<'_> {
    fn layers<'b>(&'b self, own: &'b RouterSettings) -> Vec<(Source, &'b RouterSettings)> {
        let mut v = vec![(self.level, own)];
        v.extend(self.parents.iter().copied());
        v
    }

    /// Groups shown as rows: the usable ones among the known groups.
    fn rows(&self, known: &KnownTargets) -> Vec<String> {
        known
            .groups
            .iter()
            .filter(|g| self.usable.as_ref().is_none_or(|u| u.contains(*g)))
            .cloned()
            .collect()
    }

    /// The page's view: effective values from the saved settings, the editor from `draft`
    /// (the saved own layer, or a refused submission to show again).
    pub fn view(
        &self,
        known: &KnownTargets,
        draft: &Draft,
        scalars: Option<&ScalarForm>,
        error: Option<&FieldError>,
    ) -> SettingsView {
        let empty = RouterSettings::default();
        let saved = self.own.unwrap_or(&empty);
        let effective = EffectiveRouterSettings::resolve(&self.layers(saved));
        let inherited = EffectiveRouterSettings::resolve(&self.parents);
        let groups = self.rows(known);
        let error_for = |field: &str| {
            error
                .filter(|e| e.field == field)
                .map(|e| e.message.clone())
        };

        let mut kinds = Vec::new();
        for (field, label, help) in KINDS {
            let (effective_rows, rows) = if field == "default_fallbacks" {
                let src = effective.default_fallbacks.source;
                let eff = vec![ChainRow {
                    group: "any group".into(),
                    targets: chain(&effective.default_fallbacks.value, "", src),
                    source: src.as_str(),
                    via: None,
                }];
                let rows = vec![EditorRow {
                    group: String::new(),
                    targets: draft.default_fallbacks.clone().unwrap_or_default(),
                }];
                (eff, rows)
            } else {
                let sourced = rules_of(&effective, field);
                let eff = groups
                    .iter()
                    .map(|g| match rule_for(&sourced.value, g) {
                        Some(t) => ChainRow {
                            group: g.clone(),
                            targets: chain(t, g, sourced.source),
                            source: sourced.source.as_str(),
                            via: None,
                        },
                        None if field == "fallbacks" => {
                            let d = &effective.default_fallbacks;
                            ChainRow {
                                group: g.clone(),
                                targets: chain(&d.value, g, d.source),
                                source: d.source.as_str(),
                                via: Some("default fallbacks"),
                            }
                        }
                        None => ChainRow {
                            group: g.clone(),
                            targets: Vec::new(),
                            source: sourced.source.as_str(),
                            via: None,
                        },
                    })
                    .collect();
                let own_rules = draft.rules(field).cloned().unwrap_or_default();
                let mut rows: Vec<EditorRow> = groups
                    .iter()
                    .map(|g| EditorRow {
                        group: g.clone(),
                        targets: own_rules
                            .iter()
                            .find(|r| &r.group == g)
                            .map(|r| r.targets.clone())
                            .unwrap_or_default(),
                    })
                    .collect();
                for r in &own_rules {
                    if !groups.contains(&r.group) {
                        rows.push(EditorRow {
                            group: r.group.clone(),
                            targets: r.targets.clone(),
                        });
                    }
                }
                (eff, rows)
            };
            let none = match field {
                "default_fallbacks" => draft.default_fallbacks.as_ref().is_some_and(Vec::is_empty),
                f => draft.rules(f).is_some_and(Vec::is_empty),
            };
            kinds.push(KindView {
                field,
                label,
                help,
                overridden: draft.is_set(field),
                none,
                inherited_source: field_source(&inherited, field).as_str(),
                effective: effective_rows,
                rows,
                error: error_for(field),
            });
        }

        let own_scalars = ScalarForm {
            num_retries: saved.num_retries.map(|n| n.to_string()).unwrap_or_default(),
            timeout: saved.timeout.map(|s| secs(s.0)).unwrap_or_default(),
            cooldown_time: saved.cooldown_time.map(|s| secs(s.0)).unwrap_or_default(),
            routing_strategy: saved
                .routing_strategy
                .map(strategy_name)
                .unwrap_or_default(),
        };
        let shown = scalars.unwrap_or(&own_scalars);
        let scalars = vec![
            ScalarView {
                field: "num_retries",
                label: "Retries",
                help: "Retries per group before falling back.",
                own: shown.num_retries.clone(),
                effective: effective.num_retries.value.to_string(),
                source: effective.num_retries.source.as_str(),
                options: Vec::new(),
                error: error_for("num_retries"),
            },
            ScalarView {
                field: "timeout",
                label: "Timeout (seconds)",
                help: "Per attempt, for non-streaming calls.",
                own: shown.timeout.clone(),
                effective: secs(effective.timeout.value.0),
                source: effective.timeout.source.as_str(),
                options: Vec::new(),
                error: error_for("timeout"),
            },
            ScalarView {
                field: "cooldown_time",
                label: "Cooldown (seconds)",
                help: "How long a failing deployment is skipped.",
                own: shown.cooldown_time.clone(),
                effective: secs(effective.cooldown_time.value.0),
                source: effective.cooldown_time.source.as_str(),
                options: Vec::new(),
                error: error_for("cooldown_time"),
            },
            ScalarView {
                field: "routing_strategy",
                label: "Routing strategy",
                help: "How a deployment is picked within a group.",
                own: shown.routing_strategy.clone(),
                effective: strategy_name(effective.routing_strategy.value),
                source: effective.routing_strategy.source.as_str(),
                options: RoutingStrategy::NAMES.to_vec(),
                error: error_for("routing_strategy"),
            },
        ];

        let inherited_json = serde_json::json!({
            "fallbacks": {"value": inherited.fallbacks.value, "source": inherited.fallbacks.source},
            "context_window_fallbacks": {"value": inherited.context_window_fallbacks.value, "source": inherited.context_window_fallbacks.source},
            "content_policy_fallbacks": {"value": inherited.content_policy_fallbacks.value, "source": inherited.content_policy_fallbacks.source},
            "default_fallbacks": {"value": inherited.default_fallbacks.value, "source": inherited.default_fallbacks.source},
        });
        let editor = serde_json::json!({
            "level": self.level.as_str(),
            "draft": draft,
            "inherited": inherited_json,
            "groups": groups,
            "known": known.all(),
            "deployments": known.deployments,
            "usable": self.usable,
        });
        SettingsView {
            level: self.level.as_str(),
            parent: self.parents.first().map_or("global", |(s, _)| s.as_str()),
            kinds,
            scalars,
            known: known.all(),
            editor_json: editor.to_string(),
            draft_json: serde_json::to_string_pretty(draft).unwrap_or_default(),
            error: error
                .filter(|e| e.field == "settings")
                .map(|e| e.message.clone()),
        }
    }

    /// Checks a submitted form and returns the own layer to save (`None` = inherit all), or
    /// the submitted draft with the first problem found. Nothing is saved here.
    pub fn apply(
        &self,
        known: &KnownTargets,
        form: &SettingsForm,
    ) -> Result<Option<RouterSettings>, Box<(Draft, FieldError)>> {
        let json = form.fallbacks_json.trim();
        let draft: Draft = if json.is_empty() {
            Draft::default()
        } else {
            match serde_json::from_str(json) {
                Ok(d) => d,
                Err(e) => {
                    return Err(Box::new((
                        Draft::of(self.own),
                        FieldError::new(
                            "settings",
                            format!("the fallback settings could not be read: {e}"),
                        ),
                    )))
                }
            }
        };
        let fail =
            |field: &str, msg: String| Err(Box::new((draft.clone(), FieldError::new(field, msg))));
        let s = form;
        let num_retries = match s.num_retries.trim() {
            "" => None,
            v => match v.parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) => {
                    return fail(
                        "num_retries",
                        format!("retries must be a whole number of 0 or more, not {v:?}"),
                    )
                }
            },
        };
        let seconds = |field: &str, label: &str, v: &str| -> Result<Option<Seconds>, FieldError> {
            match v.trim() {
                "" => Ok(None),
                v => match v.parse::<f64>() {
                    Ok(n) if n.is_finite() && (0.0..=86_400.0).contains(&n) => {
                        Ok(Some(Seconds(Duration::from_secs_f64(n))))
                    }
                    _ => Err(FieldError::new(
                        field,
                        format!("{label} must be a number of seconds from 0 to 86400, not {v:?}"),
                    )),
                },
            }
        };
        let timeout = match seconds("timeout", "the timeout", &s.timeout) {
            Ok(v) => v,
            Err(e) => return Err(Box::new((draft, e))),
        };
        let cooldown_time = match seconds("cooldown_time", "the cooldown", &s.cooldown_time) {
            Ok(v) => v,
            Err(e) => return Err(Box::new((draft, e))),
        };
        let routing_strategy = match s.routing_strategy.trim() {
            "" => None,
            v => match serde_json::from_value::<RoutingStrategy>(serde_json::Value::from(v)) {
                Ok(r) => Some(r),
                Err(_) => {
                    return fail(
                        "routing_strategy",
                        format!(
                            "unknown routing strategy {v:?}; choose one of {}",
                            RoutingStrategy::NAMES.join(", ")
                        ),
                    )
                }
            },
        };

        let mut rs = self.own.cloned().unwrap_or_default();
        rs.fallbacks = draft.fallbacks.clone();
        rs.context_window_fallbacks = draft.context_window_fallbacks.clone();
        rs.content_policy_fallbacks = draft.content_policy_fallbacks.clone();
        rs.default_fallbacks = draft.default_fallbacks.clone();
        rs.num_retries = num_retries;
        rs.timeout = timeout;
        rs.cooldown_time = cooldown_time;
        rs.routing_strategy = routing_strategy;

        for (field, _, _) in KINDS {
            for r in draft.rules(field).into_iter().flatten() {
                if r.targets.contains(&r.group) {
                    return fail(
                        field,
                        format!(
                            "{} falls back to itself; remove it from its own chain",
                            r.group
                        ),
                    );
                }
            }
        }
        if let Err(e) = validate::router_settings_known(known, &rs) {
            let field = e
                .param
                .as_deref()
                .and_then(|p| p.strip_prefix("router_settings."))
                .filter(|f| KINDS.iter().any(|(k, _, _)| k == f))
                .unwrap_or("settings")
                .to_string();
            let error = FieldError {
                field,
                message: e.message,
            };
            return Err(Box::new((draft, error)));
        }
        if let Some(usable) = &self.usable {
            for (field, target) in draft.targets() {
                let group = known
                    .deployments
                    .get(target)
                    .map(String::as_str)
                    .unwrap_or(target);
                if known.groups.contains(group) && !usable.contains(group) {
                    let who = self.level.as_str();
                    return fail(
                        field,
                        format!(
                            "this {who} may not use {target:?}: add its group to the {who}'s models first"
                        ),
                    );
                }
            }
        }
        Ok((rs != RouterSettings::default()).then_some(rs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(g: &str, t: &[&str]) -> FallbackRule {
        FallbackRule {
            group: g.into(),
            targets: t.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn known() -> KnownTargets {
        KnownTargets {
            groups: ["a", "b", "c"].iter().map(|s| s.to_string()).collect(),
            deployments: [("a1", "a"), ("b1", "b"), ("c1", "c")]
                .iter()
                .map(|(d, g)| (d.to_string(), g.to_string()))
                .collect(),
            aliases: BTreeSet::new(),
        }
    }

    #[test]
    fn effective_chain_marks_the_team_then_the_key_override() {
        let team = RouterSettings {
            fallbacks: Some(vec![rule("a", &["b"])]),
            ..Default::default()
        };
        let global = RouterSettings::default();
        let s = Subject {
            level: Source::Key,
            own: None,
            parents: vec![(Source::Team, &team), (Source::Global, &global)],
            usable: None,
        };
        let v = s.view(&known(), &Draft::default(), None, None);
        let general = &v.kinds[0];
        assert!(!general.overridden);
        assert_eq!(general.inherited_source, "team");
        let a = &general.effective[0];
        assert_eq!((a.group.as_str(), a.source), ("a", "team"));
        assert_eq!(a.targets[0].name, "b");

        let key = RouterSettings {
            fallbacks: Some(vec![rule("a", &["c", "b"])]),
            ..Default::default()
        };
        let s = Subject {
            own: Some(&key),
            ..s
        };
        let v = s.view(&known(), &Draft::of(Some(&key)), None, None);
        let a = &v.kinds[0].effective[0];
        assert_eq!(a.source, "key");
        let names: Vec<&str> = a.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["c", "b"]);
        assert!(v.kinds[0].overridden);
    }

    fn form(json: &str) -> SettingsForm {
        SettingsForm {
            fallbacks_json: json.into(),
            ..Default::default()
        }
    }

    #[test]
    fn unknown_targets_cycles_and_unusable_targets_are_refused() {
        let global = RouterSettings::default();
        let s = Subject {
            level: Source::Key,
            own: None,
            parents: vec![(Source::Global, &global)],
            usable: Some(["a", "b"].iter().map(|s| s.to_string()).collect()),
        };
        let k = known();
        let err = s
            .apply(&k, &form(r#"{"fallbacks":[{"a":["nope"]}]}"#))
            .unwrap_err()
            .1;
        assert_eq!(err.field, "fallbacks");
        assert!(err.message.contains("\"nope\""), "{}", err.message);
        let err = s
            .apply(&k, &form(r#"{"fallbacks":[{"a":["b"]},{"b":["a"]}]}"#))
            .unwrap_err()
            .1;
        assert!(err.message.contains("cycle"), "{}", err.message);
        let err = s
            .apply(&k, &form(r#"{"fallbacks":[{"a":["c1"]}]}"#))
            .unwrap_err()
            .1;
        assert!(err.message.contains("may not use"), "{}", err.message);
        let own = s
            .apply(&k, &form(r#"{"fallbacks":[{"a":["b"]}]}"#))
            .unwrap();
        assert_eq!(own.unwrap().fallbacks, Some(vec![rule("a", &["b"])]));
        let own = s.apply(&k, &form(r#"{"fallbacks":null}"#)).unwrap();
        assert!(own.is_none(), "all inherited: no own layer");
        let own = s.apply(&k, &form(r#"{"fallbacks":[]}"#)).unwrap();
        assert_eq!(
            own.unwrap().fallbacks,
            Some(vec![]),
            "explicit no fallbacks"
        );
    }

    #[test]
    fn scalar_errors_name_the_field() {
        let global = RouterSettings::default();
        let s = Subject {
            level: Source::Team,
            own: None,
            parents: vec![(Source::Global, &global)],
            usable: None,
        };
        let mut f = form("");
        f.num_retries = "two".into();
        let err = s.apply(&known(), &f).unwrap_err().1;
        assert_eq!(err.field, "num_retries");
        let mut f = form("");
        f.timeout = "30".into();
        f.routing_strategy = "least-busy".into();
        let own = s.apply(&known(), &f).unwrap();
        let own = own.unwrap();
        assert_eq!(own.timeout, Some(Seconds(Duration::from_secs(30))));
        assert_eq!(own.routing_strategy, Some(RoutingStrategy::LeastBusy));
    }
}
