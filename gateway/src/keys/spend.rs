//! Spend: what each request cost (tokens × the serving deployment's `model_info` prices), kept
//! in memory per key and team ([`Subject`]) so budget checks never wait on the database, and
//! written to the store in batches by one background task ([`SpendRecorder`]), flushed on
//! shutdown.
//!
//! Budget arithmetic without reading the store per request: a key's spend is the total the
//! store had when the key was resolved, plus what this process recorded since, minus what of
//! that had already been flushed before the read ([`Subject::spend_since`]). A flush racing the
//! read makes the estimate high by at most one batch until the next resolution: the safe
//! direction.
//!
//! The request path only appends to a queue under a short lock; the writer takes the whole
//! queue once per batch window, builds the spend-log rows and writes them. At thousands of
//! requests per second a channel message or a wake-up per request costs the proxy more than
//! the write itself.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{oneshot, Notify};

use super::auth::KeyContext;
use super::limits::Subject;
use crate::config::Deployment;
use crate::store::{PublicId, SpendEntry, SpendStatus, Store, Usd};

/// Entries per `record_spend` call: one transaction each. A 200 ms window at 10,000 requests
/// per second fits in one (a commit is a WAL flush on PostgreSQL).
const MAX_BATCH: usize = 2000;
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

/// One request's spend, as the proxy hands it over.
#[derive(Debug, Clone)]
pub struct Usage {
    /// The virtual key that made the request (its owners and its ledger subjects).
    pub key: Arc<KeyContext>,
    pub model_group: String,
    pub deployment_id: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Usd,
    pub start_time: chrono::DateTime<Utc>,
}

/// Hands spend to the background writer. Cheap to clone; the writer starts with the first
/// entry (inside the runtime) and stops once every recorder is gone.
#[derive(Clone)]
pub struct SpendRecorder {
    inner: Arc<RecorderInner>,
}

struct RecorderInner {
    store: Arc<dyn Store>,
    timing: Timing,
    queue: Mutex<Queue>,
    signals: Arc<Signals>,
    writer: OnceLock<()>,
    on_reset: Arc<dyn Fn() + Send + Sync>,
}

/// The writer's clock: how long a batch fills, and how often budget periods are checked.
#[derive(Clone, Copy)]
struct Timing {
    batch_window: Duration,
    reset_every: Duration,
}

const TIMING: Timing = Timing {
    batch_window: BATCH_WINDOW,
    reset_every: BUDGET_RESET_EVERY,
};

#[derive(Default)]
struct Queue {
    entries: Vec<Queued>,
    /// Flushes waiting for everything queued before them.
    waiting: Vec<oneshot::Sender<()>>,
}

/// A queued request: its usage and when it ended.
struct Queued {
    usage: Usage,
    end_time: chrono::DateTime<Utc>,
}

#[derive(Default)]
struct Signals {
    /// The first entry went into an empty queue.
    arrived: Notify,
    /// A flush is waiting: cut the batch window short.
    flush: Notify,
}

impl SpendRecorder {
    /// `on_reset` runs after budget periods were reset (to drop cached spend).
    pub fn new(store: Arc<dyn Store>, on_reset: Arc<dyn Fn() + Send + Sync>) -> Self {
        Self::with_timing(store, on_reset, TIMING)
    }

    fn with_timing(
        store: Arc<dyn Store>,
        on_reset: Arc<dyn Fn() + Send + Sync>,
        timing: Timing,
    ) -> Self {
        SpendRecorder {
            inner: Arc::new(RecorderInner {
                store,
                timing,
                queue: Mutex::new(Queue::default()),
                signals: Arc::default(),
                writer: OnceLock::new(),
                on_reset,
            }),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start_writer(&self) {
        self.inner.writer.get_or_init(|| {
            tokio::spawn(writer(
                Arc::downgrade(&self.inner),
                Arc::clone(&self.inner.signals),
                self.inner.timing,
            ));
        });
    }

    /// Counts `usage` against its key's and team's spend at once and queues it for the store.
    pub fn record(&self, usage: Usage) {
        for s in subjects(&usage.key).into_iter().flatten() {
            s.add_spend(usage.cost, false);
        }
        self.start_writer();
        let queued = Queued {
            usage,
            end_time: crate::store::now(),
        };
        let was_empty = {
            let mut q = self.queue();
            q.entries.push(queued);
            q.entries.len() == 1
        };
        if was_empty {
            self.inner.signals.arrived.notify_one();
        }
    }

    /// Waits until everything recorded before this call is in the store (or `deadline` passed;
    /// then `false`). Called on shutdown and by tests.
    pub async fn flush(&self, deadline: Duration) -> bool {
        if self.inner.writer.get().is_none() {
            return true;
        }
        let (ack, done) = oneshot::channel();
        self.queue().waiting.push(ack);
        self.inner.signals.flush.notify_one();
        matches!(tokio::time::timeout(deadline, done).await, Ok(Ok(())))
    }
}

/// The ledger subjects a request's spend counts against: its key and the key's team.
fn subjects(key: &KeyContext) -> [Option<&Arc<Subject>>; 2] {
    [Some(&key.subject), key.team_subject.as_ref()]
}

/// The spend-log row of a queued request.
fn spend_entry(q: &Queued) -> SpendEntry {
    let u = &q.usage;
    SpendEntry {
        request_id: uuid::Uuid::now_v7().to_string(),
        key_public_id: PublicId::new(&u.key.public_id).ok(),
        team_id: u.key.team_id.clone(),
        user_id: u.key.user_id.clone(),
        organization_id: u.key.organization_id.clone(),
        model_group: u.model_group.clone(),
        deployment_id: Some(u.deployment_id.clone()),
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        cost: u.cost,
        status: SpendStatus::Success,
        start_time: crate::store::truncate_time(u.start_time),
        end_time: q.end_time,
    }
}

/// Writes the queue once per batch window until the recorder is gone. Holds the recorder
/// only while writing (not while waiting), so dropping every [`SpendRecorder`] ends it.
async fn writer(inner: Weak<RecorderInner>, signals: Arc<Signals>, timing: Timing) {
    let mut next_reset = tokio::time::Instant::now() + timing.reset_every;
    let mut taken: Vec<Queued> = Vec::new();
    loop {
        let idle = match inner.upgrade() {
            Some(i) => {
                let q = i.queue.lock().unwrap_or_else(|p| p.into_inner());
                q.entries.is_empty() && q.waiting.is_empty()
            }
            None => return,
        };
        // Wait for work: an entry, a flush request, or the budget-reset tick.
        if idle {
            tokio::select! {
                _ = signals.arrived.notified() => {}
                _ = signals.flush.notified() => {}
                _ = tokio::time::sleep_until(next_reset) => {}
            }
        }
        let flush_waiting = {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            if tokio::time::Instant::now() >= next_reset {
                reset_budgets(&*inner.store, &*inner.on_reset).await;
                next_reset = tokio::time::Instant::now() + timing.reset_every;
            }
            let q = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            !q.waiting.is_empty()
        };
        // Let the batch fill for a short window, unless someone is waiting for a flush.
        if !flush_waiting {
            tokio::select! {
                _ = tokio::time::sleep(timing.batch_window) => {}
                _ = signals.flush.notified() => {}
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        // Everything queued so far, and the flushes that were waiting for it.
        let waiting = {
            let mut q = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::swap(&mut q.entries, &mut taken);
            std::mem::take(&mut q.waiting)
        };
        let mut rows: Vec<SpendEntry> = taken.iter().map(spend_entry).collect();
        let mut done = 0;
        while done < rows.len() {
            let n = (rows.len() - done).min(MAX_BATCH);
            match inner.store.record_spend(&rows[done..done + n]).await {
                Ok(_) => {
                    for q in &taken[done..done + n] {
                        for s in subjects(&q.usage.key).into_iter().flatten() {
                            s.add_spend(q.usage.cost, true);
                        }
                    }
                    done += n;
                }
                Err(e) => {
                    // Request ids make a retried batch count once; keep everything.
                    tracing::warn!(error = %e, entries = rows.len() - done, "spend write failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    if Arc::strong_count(&inner) == 1 && waiting.is_empty() {
                        // Every recorder is gone and nobody waits: nothing will read this.
                        return;
                    }
                }
            }
        }
        rows.clear();
        taken.clear();
        // Let go of the recorder before answering: a flushed recorder can then be dropped
        // and this task ends at its next turn.
        drop(inner);
        for w in waiting {
            let _ = w.send(());
        }
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

    use crate::keys::auth::SubjectLimits;
    use crate::keys::limits::{key_subject, Subjects};
    use crate::store::{keys, Actor, KeySpec, Page, SpendLogFilter};

    fn key_context(subjects: &Subjects, public_id: &PublicId) -> Arc<KeyContext> {
        Arc::new(KeyContext {
            public_id: public_id.as_str().to_string(),
            subject: subjects.get(&key_subject(public_id.as_str())),
            team_subject: None,
            alias: None,
            team_id: None,
            user_id: None,
            organization_id: None,
            limits: SubjectLimits::default(),
            team_limits: None,
            aliases: Default::default(),
        })
    }

    fn usage(key: &Arc<KeyContext>, nanos: i64) -> Usage {
        Usage {
            key: Arc::clone(key),
            model_group: "g".into(),
            deployment_id: "d".into(),
            prompt_tokens: 3,
            completion_tokens: 4,
            cost: Usd::from_nanos(nanos),
            start_time: Utc::now(),
        }
    }

    #[tokio::test]
    async fn everything_recorded_before_a_flush_is_stored_once_and_counted_flushed() {
        let store = crate::store::connect("sqlite::memory:").await.unwrap();
        let generated = keys::generate(&Default::default());
        let spec = KeySpec::new(generated.public_id.clone(), generated.hash.clone());
        store.insert_key(&Actor::new("test"), &spec).await.unwrap();
        let subjects = Subjects::default();
        let key = key_context(&subjects, &generated.public_id);
        let recorder = SpendRecorder::new(Arc::clone(&store), Arc::new(|| {}));
        assert!(
            recorder.flush(Duration::from_secs(1)).await,
            "nothing recorded yet"
        );

        // Four tasks record 300 each while flushes run: more than one batch (MAX_BATCH).
        let mut tasks = Vec::new();
        for t in 0..4 {
            let (recorder, key) = (recorder.clone(), Arc::clone(&key));
            tasks.push(tokio::spawn(async move {
                for i in 0..300 {
                    recorder.record(usage(&key, 1 + t * 1000 + i));
                    if i % 100 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(recorder.flush(Duration::from_secs(10)).await);
        let expected: i64 = (0..4)
            .flat_map(|t| (0..300).map(move |i| 1 + t * 1000 + i))
            .sum();
        let logs = store
            .spend_logs(&SpendLogFilter::default(), Page::new(1, 0))
            .await
            .unwrap();
        assert_eq!(logs.total, 1200);
        let stored = store
            .key_by_public_id(&generated.public_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.spend, Usd::from_nanos(expected));
        let ledger = key.subject.ledger();
        assert_eq!(ledger.recorded, Usd::from_nanos(expected));
        assert_eq!(ledger.flushed, Usd::from_nanos(expected));
    }

    #[tokio::test]
    async fn the_writer_ends_when_every_recorder_is_gone() {
        let store = crate::store::connect("sqlite::memory:").await.unwrap();
        let recorder = SpendRecorder::new(Arc::clone(&store), Arc::new(|| {}));
        let subjects = Subjects::default();
        let key = key_context(&subjects, &PublicId::random());
        recorder.record(usage(&key, 5));
        assert!(recorder.flush(Duration::from_secs(5)).await);
        let weak = Arc::downgrade(&recorder.inner);
        drop(recorder);
        assert!(
            weak.upgrade().is_none(),
            "the writer holds no strong reference"
        );
    }

    /// Budget periods restart while traffic never lets the writer go idle. (The writer used to
    /// check the reset tick only when idle, so a busy gateway never reset budgets.)
    #[tokio::test]
    async fn budgets_reset_under_constant_traffic() {
        let store = crate::store::connect("sqlite::memory:").await.unwrap();
        let generated = keys::generate(&Default::default());
        let mut spec = KeySpec::new(generated.public_id.clone(), generated.hash.clone());
        spec.max_budget = Some(Usd::from_dollars(10.0).unwrap());
        spec.budget_duration = Some("1s".into());
        store.insert_key(&Actor::new("test"), &spec).await.unwrap();
        let subjects = Subjects::default();
        let key = key_context(&subjects, &generated.public_id);
        let resets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&resets);
        // The production clock, 100 times faster: 2 ms windows, budgets checked every 600 ms.
        let timing = Timing {
            batch_window: BATCH_WINDOW / 100,
            reset_every: BUDGET_RESET_EVERY / 100,
        };
        let on_reset = Arc::new(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let recorder = SpendRecorder::with_timing(Arc::clone(&store), on_reset, timing);
        // The key's period (1 s) is over.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        // An entry every 100 µs from another thread for three reset intervals: entries arrive
        // while the writer writes, so it is seldom idle when a check is due.
        recorder.record(usage(&key, 1)); // starts the writer on this runtime
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let traffic = {
            let (recorder, key, stop) = (recorder.clone(), Arc::clone(&key), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    recorder.record(usage(&key, 1));
                    std::thread::sleep(Duration::from_micros(100));
                }
            })
        };
        tokio::time::sleep(3 * timing.reset_every).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        while !traffic.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(recorder.flush(Duration::from_secs(10)).await);
        assert!(
            resets.load(std::sync::atomic::Ordering::SeqCst) >= 1,
            "the due budget was never reset"
        );
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
