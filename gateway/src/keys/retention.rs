//! Spend-log retention (`general_settings.maximum_spend_logs_retention_period`): a background
//! task deletes the spend-log rows that started longer ago than the period, once shortly after
//! start and then every `maximum_spend_logs_retention_interval` (default a day). Spend totals on
//! keys, teams and users are running sums kept on those rows, so budgets do not change; only
//! the per-request history goes. Several instances on one database may all run it: a row is
//! deleted once whoever gets there first.

use std::sync::Arc;
use std::time::Duration;

use crate::config::SpendLogsRetention;
use crate::store::{Store, StoreError};

/// Rows deleted per statement: each is a short write, so the spend writer is never held up
/// for long behind a large backlog.
pub const BATCH: u32 = 5_000;

/// Before the first run: start-up (migrations, runtime models) goes first.
const FIRST_RUN_AFTER: Duration = Duration::from_secs(1);

/// Pause before trying again after a failed run (the store may be down).
const RETRY_AFTER: Duration = Duration::from_secs(300);

/// Deletes every row older than `period` from now, in batches of `batch`; returns how many.
pub async fn prune(store: &dyn Store, period: Duration, batch: u32) -> Result<u64, StoreError> {
    let period = chrono::Duration::from_std(period).unwrap_or(chrono::Duration::MAX);
    let cutoff = crate::store::now()
        .checked_sub_signed(period)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let mut deleted = 0;
    loop {
        let n = store.delete_spend_logs_before(cutoff, batch).await?;
        deleted += n;
        if n < u64::from(batch) {
            return Ok(deleted);
        }
        // Let the spend writer and admin writes in between batches.
        tokio::task::yield_now().await;
    }
}

/// The retention task; it ends when the handle is dropped.
pub struct RetentionTask(tokio::task::JoinHandle<()>);

impl Drop for RetentionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts deleting spend logs older than `retention.period`, every `retention.every`.
pub fn spawn(store: Arc<dyn Store>, retention: SpendLogsRetention) -> RetentionTask {
    RetentionTask(tokio::spawn(async move {
        tokio::time::sleep(FIRST_RUN_AFTER).await;
        loop {
            let pause = match prune(store.as_ref(), retention.period, BATCH).await {
                Ok(0) => retention.every,
                Ok(n) => {
                    tracing::info!(
                        rows = n,
                        older_than_secs = retention.period.as_secs(),
                        "spend logs past their retention period deleted"
                    );
                    retention.every
                }
                Err(e) => {
                    tracing::warn!(error = %e, "spend log retention failed; trying again later");
                    RETRY_AFTER.min(retention.every)
                }
            };
            tokio::time::sleep(pause).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::{Page, SpendEntry, SpendLogFilter, SpendStatus, Usd};

    fn entry(id: &str, age: chrono::Duration) -> SpendEntry {
        let t = crate::store::truncate_time(crate::store::now() - age);
        SpendEntry {
            request_id: id.to_owned(),
            key_public_id: None,
            team_id: None,
            user_id: None,
            organization_id: None,
            model_group: "g".to_owned(),
            deployment_id: None,
            prompt_tokens: 1,
            completion_tokens: 1,
            cost: Usd::from_nanos(1),
            status: SpendStatus::Success,
            start_time: t,
            end_time: t,
        }
    }

    async fn ids(store: &dyn Store) -> Vec<String> {
        let page = store
            .spend_logs(&SpendLogFilter::default(), Page::new(1000, 0))
            .await
            .unwrap();
        let mut ids: Vec<String> = page.items.into_iter().map(|e| e.request_id).collect();
        ids.sort();
        ids
    }

    /// Rows older than the period go, in as many batches as it takes; newer rows stay.
    #[tokio::test]
    async fn prune_deletes_old_rows_in_batches_and_keeps_new_ones() {
        let store = crate::store::connect("sqlite::memory:").await.unwrap();
        let day = chrono::Duration::days(1);
        let mut rows: Vec<SpendEntry> = (0..7)
            .map(|i| entry(&format!("old-{i}"), day * 8 + chrono::Duration::minutes(i)))
            .collect();
        rows.push(entry("new-0", chrono::Duration::hours(1)));
        rows.push(entry("new-1", day * 6));
        store.record_spend(&rows).await.unwrap();
        let week = Duration::from_secs(7 * 86_400);
        assert_eq!(prune(store.as_ref(), week, 3).await.unwrap(), 7);
        assert_eq!(ids(store.as_ref()).await, ["new-0", "new-1"]);
        assert_eq!(prune(store.as_ref(), week, 3).await.unwrap(), 0);
    }
}
