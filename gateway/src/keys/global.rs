//! The global layer of router settings: the config file's `router_settings` with the runtime
//! block (saved by a state import, `spec.router_settings`) over it, field by field. Both count
//! as `global` in provenance. The merged layer is swapped whole when the runtime block changes,
//! so requests read it from memory; the store is read only at start-up and after an import.

use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;

use super::effective::EffectiveRouterSettings;
use crate::config::RouterSettings;
use crate::store::{Store, StoreError};

/// One version of the global layer.
#[derive(Debug)]
pub struct GlobalLayer {
    /// The runtime block over the config file's, field by field.
    pub merged: RouterSettings,
    /// `merged` resolved alone: the settings of master-key requests.
    pub effective: Arc<EffectiveRouterSettings>,
}

impl GlobalLayer {
    fn new(file: &RouterSettings, runtime: Option<&RouterSettings>) -> Self {
        let merged = match runtime {
            Some(r) => overlay(r, file),
            None => file.clone(),
        };
        let effective = Arc::new(EffectiveRouterSettings::global(&merged));
        GlobalLayer { merged, effective }
    }
}

/// The live global router settings.
#[derive(Debug)]
pub struct GlobalRouterSettings {
    file: RouterSettings,
    current: RwLock<Arc<GlobalLayer>>,
}

impl GlobalRouterSettings {
    /// The config file's settings alone, until [`GlobalRouterSettings::set_runtime`].
    pub fn new(file: RouterSettings) -> Self {
        let current = RwLock::new(Arc::new(GlobalLayer::new(&file, None)));
        GlobalRouterSettings { file, current }
    }

    /// The layer in force now (a snapshot: later changes do not alter it).
    pub fn current(&self) -> Arc<GlobalLayer> {
        Arc::clone(&*self.current.read())
    }

    /// The config file's block, as loaded.
    pub fn file(&self) -> &RouterSettings {
        &self.file
    }

    /// Installs `runtime` over the config file's block (`None`: the file's alone).
    pub fn set_runtime(&self, runtime: Option<&RouterSettings>) {
        *self.current.write() = Arc::new(GlobalLayer::new(&self.file, runtime));
    }

    /// Reads the runtime block from `store` and installs it.
    pub async fn load(&self, store: &dyn Store) -> Result<(), StoreError> {
        let runtime = store.router_settings().await?;
        self.set_runtime(runtime.as_ref());
        Ok(())
    }
}

/// `top` over `base`, field by field: a field `top` sets (an empty list included) wins.
pub fn overlay(top: &RouterSettings, base: &RouterSettings) -> RouterSettings {
    // Both are the same type with `skip_serializing_if = "Option::is_none"` on every field, so
    // their JSON objects hold exactly the fields each sets; this stays right as fields are added.
    let (Ok(Value::Object(mut merged)), Ok(Value::Object(top_fields))) =
        (serde_json::to_value(base), serde_json::to_value(top))
    else {
        return top.clone();
    };
    merged.extend(top_fields);
    serde_json::from_value(Value::Object(merged)).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "router settings did not merge; the runtime block alone applies");
        top.clone()
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Seconds;
    use crate::keys::effective::tests::rule;
    use crate::keys::effective::Source;

    #[test]
    fn the_runtime_block_wins_field_by_field_and_an_empty_list_counts() {
        let file = RouterSettings {
            num_retries: Some(4),
            cooldown_time: Some(Seconds(Duration::from_secs(9))),
            fallbacks: Some(vec![rule("a", &["b"])]),
            ..Default::default()
        };
        let runtime = RouterSettings {
            num_retries: Some(1),
            fallbacks: Some(vec![]),
            max_fallbacks: Some(2),
            ..Default::default()
        };
        let merged = overlay(&runtime, &file);
        assert_eq!(merged.num_retries, Some(1));
        assert_eq!(merged.fallbacks, Some(vec![]));
        assert_eq!(merged.max_fallbacks, Some(2));
        assert_eq!(merged.cooldown_time, file.cooldown_time);

        let global = GlobalRouterSettings::new(file.clone());
        assert_eq!(global.current().merged, file);
        global.set_runtime(Some(&runtime));
        let eff = Arc::clone(&global.current().effective);
        assert_eq!(eff.num_retries.value, 1);
        assert_eq!(eff.num_retries.source, Source::Global);
        assert!(eff.fallbacks.value.is_empty());
        assert_eq!(eff.cooldown_time.value.0, Duration::from_secs(9));
        assert_eq!(eff.timeout.source, Source::Default);
        global.set_runtime(None);
        assert_eq!(global.current().merged, file);
    }
}
