//! Resolves router settings field by field, Key > Team > Global > default, recording where
//! each value came from. Pure: callers hand in the layers; nothing here reads the store.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::{
    defaults, FallbackRule, GroupAlias, PerClassCounts, RouterSettings, RoutingStrategy, Seconds,
};

/// Where a resolved setting came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Key,
    Team,
    Global,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Key => "key",
            Source::Team => "team",
            Source::Global => "global",
            Source::Default => "default",
        }
    }
}

/// A resolved value and its provenance.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

macro_rules! effective_settings {
    ($( $(#[$doc:meta])* $field:ident : $ty:ty = $default:expr, |$raw:ident| $conv:expr ;)*) => {
        /// Router settings after resolution: every field has a value and a source.
        #[derive(Clone, Debug, PartialEq, Serialize)]
        pub struct EffectiveRouterSettings {
            $( $(#[$doc])* pub $field: Sourced<$ty>, )*
        }

        impl EffectiveRouterSettings {
            /// Resolves `layers` (most specific first) field by field. A layer whose field is
            /// `None` is skipped; an explicit value (an empty list included) wins.
            pub fn resolve(layers: &[(Source, &RouterSettings)]) -> Self {
                EffectiveRouterSettings {
                    $( $field: layers
                        .iter()
                        .find_map(|(source, s)| {
                            s.$field.as_ref().map(|$raw| Sourced { value: $conv, source: *source })
                        })
                        .unwrap_or(Sourced { value: $default, source: Source::Default }), )*
                }
            }

            /// The sources of every field, by field name (for `/key/info` and the UI).
            pub fn sources(&self) -> BTreeMap<&'static str, Source> {
                let mut m = BTreeMap::new();
                $( m.insert(stringify!($field), self.$field.source); )*
                m
            }

            /// The source of every field, in declaration order, without allocating.
            fn each_source(&self) -> impl Iterator<Item = Source> {
                [ $( self.$field.source, )* ].into_iter()
            }
        }
    };
}

effective_settings! {
    routing_strategy: RoutingStrategy = RoutingStrategy::SimpleShuffle, |v| *v;
    num_retries: u32 = defaults::NUM_RETRIES, |v| *v;
    retry_policy: PerClassCounts = PerClassCounts::default(), |v| v.clone();
    allowed_fails: u32 = defaults::ALLOWED_FAILS, |v| *v;
    allowed_fails_policy: PerClassCounts = PerClassCounts::default(), |v| v.clone();
    cooldown_time: Seconds = Seconds(defaults::COOLDOWN_TIME), |v| *v;
    /// Per-attempt timeout for non-streaming calls.
    timeout: Seconds = Seconds(defaults::TIMEOUT), |v| *v;
    /// Timeout for the stream head and between chunks; `None` = use `timeout`.
    stream_timeout: Option<Seconds> = None, |v| Some(*v);
    fallbacks: Vec<FallbackRule> = Vec::new(), |v| v.clone();
    context_window_fallbacks: Vec<FallbackRule> = Vec::new(), |v| v.clone();
    content_policy_fallbacks: Vec<FallbackRule> = Vec::new(), |v| v.clone();
    default_fallbacks: Vec<String> = Vec::new(), |v| v.clone();
    max_fallbacks: u32 = defaults::MAX_FALLBACKS, |v| *v;
    model_group_alias: BTreeMap<String, GroupAlias> = BTreeMap::new(), |v| v.clone();
    retry_after_cap: Seconds = Seconds(defaults::RETRY_AFTER_CAP), |v| *v;
    cooldown_single_deployment: bool = false, |v| *v;
    disable_cooldowns: bool = false, |v| *v;
}

impl EffectiveRouterSettings {
    /// Settings with only the global layer (no key or team).
    pub fn global(global: &RouterSettings) -> Self {
        Self::resolve(&[(Source::Global, global)])
    }

    /// The most specific layer that contributed any field: what `x-switchyard-settings-source`
    /// reports. All-default counts as `global` (the global layer decided to leave defaults).
    pub fn headline_source(&self) -> Source {
        self.each_source()
            .filter(|s| *s != Source::Default)
            .min()
            .unwrap_or(Source::Global)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.value.0
    }

    pub fn stream_timeout(&self) -> Duration {
        self.stream_timeout
            .value
            .map(|s| s.0)
            .unwrap_or(self.timeout.value.0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn rule(group: &str, targets: &[&str]) -> FallbackRule {
        FallbackRule {
            group: group.into(),
            targets: targets.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn absent_fields_inherit_field_by_field() {
        let global = RouterSettings {
            num_retries: Some(4),
            fallbacks: Some(vec![rule("a", &["b"])]),
            ..Default::default()
        };
        let team = RouterSettings {
            cooldown_time: Some(Seconds(Duration::from_secs(9))),
            ..Default::default()
        };
        let key = RouterSettings {
            fallbacks: Some(vec![rule("a", &["c"])]),
            ..Default::default()
        };
        let eff = EffectiveRouterSettings::resolve(&[
            (Source::Key, &key),
            (Source::Team, &team),
            (Source::Global, &global),
        ]);
        assert_eq!(
            eff.fallbacks,
            Sourced {
                value: vec![rule("a", &["c"])],
                source: Source::Key
            }
        );
        assert_eq!(eff.cooldown_time.source, Source::Team);
        assert_eq!(
            eff.num_retries,
            Sourced {
                value: 4,
                source: Source::Global
            }
        );
        assert_eq!(
            eff.max_fallbacks,
            Sourced {
                value: 5,
                source: Source::Default
            }
        );
        assert_eq!(eff.headline_source(), Source::Key);
    }

    #[test]
    fn explicit_empty_list_overrides_inherited_fallbacks() {
        let global = RouterSettings {
            fallbacks: Some(vec![rule("a", &["b"])]),
            ..Default::default()
        };
        let key = RouterSettings {
            fallbacks: Some(vec![]),
            ..Default::default()
        };
        let eff =
            EffectiveRouterSettings::resolve(&[(Source::Key, &key), (Source::Global, &global)]);
        assert!(eff.fallbacks.value.is_empty());
        assert_eq!(eff.fallbacks.source, Source::Key);
    }

    #[test]
    fn all_defaults_report_global_as_headline() {
        let eff = EffectiveRouterSettings::global(&RouterSettings::default());
        assert_eq!(eff.headline_source(), Source::Global);
        assert_eq!(eff.stream_timeout(), defaults::TIMEOUT);
    }
}
