//! Picks up admin changes that other gateway instances made to the shared store. Every admin
//! change counts itself in the store's change version (see `AuditStore::change_version`); each
//! instance reads that number every [`POLL_EVERY`] and, when it moved, drops its cached keys
//! and reloads the runtime router settings and models. So a key blocked, a budget lowered or a
//! model added through one instance holds on all of them within about a second, with nothing
//! but the database in common. An instance's own changes apply at once, without waiting.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use crate::AppInner;

/// How often the store's change version is read: one indexed single-row read per instance.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Starts polling the store of `state` every `every`; the task ends once the state is gone.
pub(crate) fn spawn(state: Weak<AppInner>, every: Duration) {
    tokio::spawn(async move {
        // Whether the last read failed: an outage is logged once, not every second.
        let mut failing = false;
        loop {
            tokio::time::sleep(every).await;
            let Some(inner) = state.upgrade() else {
                return;
            };
            let app = crate::AppState(inner);
            failing = poll_once(&app, failing).await;
        }
    });
}

/// One poll: reload when the version moved. Returns whether the store could not be read.
async fn poll_once(app: &crate::AppState, failing: bool) -> bool {
    let Some(store) = &app.store else {
        return false;
    };
    let version = match store.change_version().await {
        Ok(v) => v,
        Err(e) => {
            if !failing {
                tracing::warn!(error = %e, "cannot read the store's change version; changes made through other instances wait until it is back");
            }
            return true;
        }
    };
    if failing {
        tracing::info!("store readable again; watching for changes");
    }
    if version == app.seen_change.load(Ordering::Acquire) {
        return false;
    }
    // `load_runtime` records the version it read before loading, so a change that lands
    // while it runs is picked up by the next poll; the model reload at its end drops the
    // cached keys (they hold groups expanded from the old table), so key changes apply too.
    match app.load_runtime().await {
        Ok(n) => {
            tracing::info!(
                change_version = version,
                runtime_models = n,
                "store changed; cached keys dropped, routing table reloaded"
            );
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "store changed but the routing table could not be reloaded; trying again");
            false
        }
    }
}
