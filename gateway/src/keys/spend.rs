//! Spend: what each request cost (tokens × the serving deployment's `model_info` prices), kept
//! in memory per key and team so budget checks never wait on the database, and written to the
//! store in batches by one background task ([`SpendRecorder`]), flushed on shutdown.
//!
//! Budget arithmetic without reading the store per request: a key's spend is the total the
//! store had when the key was resolved, plus what this process recorded since, minus what of
//! that had already been flushed before the read ([`Ledger`]). A flush racing the read makes
//! the estimate high by at most one batch until the next resolution: the safe direction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::config::Deployment;
use crate::store::{PublicId, SpendEntry, SpendStatus, Store, Usd};

/// Entries per `record_spend` call: one transaction each.
const MAX_BATCH: usize = 500;
/// How long the writer waits to fill a batch after its first entry.
const BATCH_WINDOW: Duration = Duration::from_millis(200);
/// Pause before retrying a batch the store refused (store down); entries are kept.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How often the writer starts new budget periods (`budget_duration`).
const BUDGET_RESET_EVERY: Duration = Duration::from_secs(60);

/// What one request cost: USD per token from the deployment's `model_info`, zero when unpriced.
pub fn cost(d: &Deployment, prompt_tokens: u64, completion_tokens: u64) -> Usd {
    let input = d.info.input_cost_per_token.unwrap_or(0.0);
    let output = d.info.output_cost_per_token.unwrap_or(0.0);
    Usd::from_dollars(prompt_tokens as f64 * input + completion_tokens as f64 * output)
        .unwrap_or(Usd::ZERO)
}

/// Spend this process recorded per subject (`k:<public id>`, `t:<team id>`): everything, and
/// the part already written to the store.
#[derive(Debug, Default)]
pub struct Ledger {
    by_subject: Mutex<HashMap<String, LedgerEntry>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerEntry {
    pub recorded: Usd,
    pub flushed: Usd,
}

impl Ledger {
    pub fn entry(&self, subject: &str) -> LedgerEntry {
        self.lock().get(subject).copied().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LedgerEntry>> {
        self.by_subject.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, subjects: &[String], cost: Usd, flushed: bool) {
        let mut map = self.lock();
        for s in subjects {
            let e = map.entry(s.clone()).or_default();
            if flushed {
                e.flushed = e.flushed.checked_add(cost).unwrap_or(e.flushed);
            } else {
                e.recorded = e.recorded.checked_add(cost).unwrap_or(e.recorded);
            }
        }
    }

    /// Spend of `subject` now, given the store's total read when `at_read` was the ledger entry.
    pub fn spend_since(&self, subject: &str, stored: Usd, at_read: LedgerEntry) -> Usd {
        let now = self.entry(subject);
        let unflushed_at_read = now.recorded.nanos() - at_read.flushed.nanos();
        Usd::from_nanos(stored.nanos().saturating_add(unflushed_at_read.max(0)))
    }
}

/// Subject names in the ledger and the limiters.
pub fn key_subject(public_id: &str) -> String {
    format!("k:{public_id}")
}

pub fn team_subject(team_id: &str) -> String {
    format!("t:{team_id}")
}

/// One request's spend, as the proxy hands it over.
#[derive(Debug, Clone)]
pub struct Usage {
    pub key_public_id: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub organization_id: Option<String>,
    pub model_group: String,
    pub deployment_id: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Usd,
    pub start_time: chrono::DateTime<Utc>,
}

// Nearly every message is an entry: boxing it would add an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Entry(SpendEntry, Vec<String>),
    Flush(oneshot::Sender<()>),
}

/// Hands spend to the background writer. Cheap to clone; the writer starts with the first
/// entry (inside the runtime) and keeps running until the process ends.
#[derive(Clone)]
pub struct SpendRecorder {
    inner: Arc<RecorderInner>,
}

struct RecorderInner {
    store: Arc<dyn Store>,
    ledger: Arc<Ledger>,
    tx: OnceLock<mpsc::UnboundedSender<Msg>>,
    on_reset: Arc<dyn Fn() + Send + Sync>,
    /// Cuts the writer's batch window short when a flush is waiting.
    flush: Arc<Notify>,
}

impl SpendRecorder {
    /// `on_reset` runs after budget periods were reset (to drop cached spend).
    pub fn new(
        store: Arc<dyn Store>,
        ledger: Arc<Ledger>,
        on_reset: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        SpendRecorder {
            inner: Arc::new(RecorderInner {
                store,
                ledger,
                tx: OnceLock::new(),
                on_reset,
                flush: Arc::new(Notify::new()),
            }),
        }
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.inner.ledger
    }

    fn sender(&self) -> &mpsc::UnboundedSender<Msg> {
        self.inner.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(writer(
                Arc::clone(&self.inner.store),
                Arc::clone(&self.inner.ledger),
                rx,
                Arc::clone(&self.inner.on_reset),
                Arc::clone(&self.inner.flush),
            ));
            tx
        })
    }

    /// Counts `usage` in the ledger at once and queues it for the store.
    pub fn record(&self, usage: Usage) {
        let mut subjects = Vec::with_capacity(2);
        if let Some(k) = &usage.key_public_id {
            subjects.push(key_subject(k));
        }
        if let Some(t) = &usage.team_id {
            subjects.push(team_subject(t));
        }
        self.inner.ledger.add(&subjects, usage.cost, false);
        let entry = SpendEntry {
            request_id: uuid::Uuid::new_v4().to_string(),
            key_public_id: usage.key_public_id.and_then(|k| PublicId::new(&k).ok()),
            team_id: usage.team_id,
            user_id: usage.user_id,
            organization_id: usage.organization_id,
            model_group: usage.model_group,
            deployment_id: Some(usage.deployment_id),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cost: usage.cost,
            status: SpendStatus::Success,
            start_time: crate::store::truncate_time(usage.start_time),
            end_time: crate::store::now(),
        };
        if self.sender().send(Msg::Entry(entry, subjects)).is_err() {
            tracing::error!("spend writer has stopped; spend of this request is not stored");
        }
    }

    /// Waits until everything recorded before this call is in the store (or `deadline` passed;
    /// then `false`). Called on shutdown and by tests.
    pub async fn flush(&self, deadline: Duration) -> bool {
        let Some(tx) = self.inner.tx.get() else {
            return true;
        };
        let (ack, done) = oneshot::channel();
        if tx.send(Msg::Flush(ack)).is_err() {
            return false;
        }
        self.inner.flush.notify_one();
        tokio::time::timeout(deadline, done).await.is_ok()
    }
}

async fn writer(
    store: Arc<dyn Store>,
    ledger: Arc<Ledger>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    on_reset: Arc<dyn Fn() + Send + Sync>,
    flush: Arc<Notify>,
) {
    let mut pending = Pending::default();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut next_reset = tokio::time::Instant::now() + BUDGET_RESET_EVERY;
    loop {
        // Wait for work: an entry, a flush request, or the budget-reset tick.
        if pending.is_empty() && waiting.is_empty() {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => take(m, &mut pending, &mut waiting),
                    None => return,
                },
                _ = tokio::time::sleep_until(next_reset) => {
                    reset_budgets(&*store, &*on_reset).await;
                    next_reset = tokio::time::Instant::now() + BUDGET_RESET_EVERY;
                    continue;
                }
            }
        }
        // Let the batch fill for a short window, unless someone is waiting for a flush. The
        // window is slept through, not woken for each entry: at thousands of requests per
        // second a wake-up per entry costs the request path more than the write itself.
        if waiting.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(BATCH_WINDOW) => {}
                _ = flush.notified() => {}
            }
        }
        // A flush covers everything queued before it: drain what is already in the channel.
        while let Ok(m) = rx.try_recv() {
            take(m, &mut pending, &mut waiting);
        }
        while !pending.entries.is_empty() {
            let n = pending.entries.len().min(MAX_BATCH);
            match store.record_spend(&pending.entries[..n]).await {
                Ok(_) => {
                    for (e, subjects) in pending.entries.drain(..n).zip(pending.subjects.drain(..n))
                    {
                        ledger.add(&subjects, e.cost, true);
                    }
                }
                Err(e) => {
                    // Request ids make a retried batch count once; keep everything.
                    tracing::warn!(error = %e, entries = pending.entries.len(), "spend write failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    if rx.is_closed() && waiting.is_empty() {
                        return;
                    }
                }
            }
        }
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
    }
}

/// Entries not yet in the store, and the ledger subjects of each.
#[derive(Default)]
struct Pending {
    entries: Vec<SpendEntry>,
    subjects: Vec<Vec<String>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn take(m: Msg, pending: &mut Pending, waiting: &mut Vec<oneshot::Sender<()>>) {
    match m {
        Msg::Entry(e, s) => {
            pending.entries.push(e);
            pending.subjects.push(s);
        }
        Msg::Flush(ack) => waiting.push(ack),
    }
}

async fn reset_budgets(store: &dyn Store, on_reset: &(dyn Fn() + Send + Sync)) {
    match store.reset_due_budgets(crate::store::now()).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(rows = n, "budget periods reset");
            on_reset();
        }
        Err(e) => tracing::warn!(error = %e, "budget reset failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_since_counts_only_what_the_store_had_not_seen() {
        let l = Ledger::default();
        let s = vec!["k:a".to_string()];
        l.add(&s, Usd::from_nanos(10), false);
        l.add(&s, Usd::from_nanos(10), true); // flushed: the store's 100 includes it
        let at_read = l.entry("k:a");
        let stored = Usd::from_nanos(100);
        assert_eq!(l.spend_since("k:a", stored, at_read), Usd::from_nanos(100));
        l.add(&s, Usd::from_nanos(5), false);
        assert_eq!(l.spend_since("k:a", stored, at_read), Usd::from_nanos(105));
        // Flushing later does not double count.
        l.add(&s, Usd::from_nanos(5), true);
        assert_eq!(l.spend_since("k:a", stored, at_read), Usd::from_nanos(105));
    }

    #[test]
    fn cost_uses_the_deployment_prices() {
        let mut d =
            crate::providers::tests::deployment(crate::config::ProviderKind::OpenAi, "gpt-4o");
        d.info.input_cost_per_token = Some(0.000_002);
        d.info.output_cost_per_token = Some(0.000_01);
        assert_eq!(cost(&d, 1000, 100), Usd::from_dollars(0.003).unwrap());
        d.info.input_cost_per_token = None;
        d.info.output_cost_per_token = None;
        assert_eq!(cost(&d, 1000, 100), Usd::ZERO);
    }
}
