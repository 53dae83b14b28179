//! Per-key and per-team usage limits and spend, in memory, checked at authentication:
//! `rpm_limit` (requests per minute), `tpm_limit` (tokens per minute, counted when a response
//! reports its usage), `max_parallel_requests` (requests in flight) and the spend recorded
//! since the key was read from the store. Over a limit → 429 with `Retry-After`. Windows are
//! fixed one-minute windows per subject (`k:<public id>`, `t:<team id>`); nothing here touches
//! the store. With Redis, rpm and tpm also count every instance's requests in the wall-clock
//! minute, as `shared_limits` last learned them.
//!
//! Each subject's counters live in one shared [`Subject`], found by name in [`Subjects`] when a
//! key is resolved (a key-cache miss) and then held by the cached key: a request updates its
//! key's and team's counters directly, with no map lookup and no lock shared with other keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::Usd;

const WINDOW: Duration = Duration::from_secs(60);
/// Subjects kept before idle ones (no cached key holds them, nothing in flight, nothing
/// unflushed) are swept.
const MAX_SUBJECTS: usize = 100_000;
/// How long a client is told to wait when its parallel-request limit is reached.
pub const PARALLEL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Every subject the proxy counts for, by name.
#[derive(Debug, Default)]
pub struct Subjects {
    by_name: Mutex<HashMap<String, Arc<Subject>>>,
    /// Request and token counts are shared with other instances through Redis
    /// ([`super::shared_limits`]).
    shared: bool,
}

impl Subjects {
    /// Subjects whose rpm and tpm counts are shared with other gateway instances.
    pub fn shared() -> Self {
        Subjects {
            shared: true,
            ..Default::default()
        }
    }

    /// The subjects with counts not yet sent to Redis.
    pub(crate) fn with_unsent(&self) -> Vec<Arc<Subject>> {
        let map = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
            .filter(|s| s.has_unsent())
            .map(Arc::clone)
            .collect()
    }

    /// The counters of `name`, made on first use.
    pub fn get(&self, name: &str) -> Arc<Subject> {
        let mut map = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(name) {
            return Arc::clone(s);
        }
        if map.len() >= MAX_SUBJECTS {
            sweep(&mut map, Instant::now());
        }
        let s = Arc::new(Subject::new(name, self.shared));
        map.insert(name.to_string(), Arc::clone(&s));
        s
    }

    /// The ledger entry of `name` (zero when nothing was recorded for it).
    pub fn ledger(&self, name: &str) -> LedgerEntry {
        let map = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name).map(|s| s.ledger()).unwrap_or_default()
    }
}

/// Forgets subjects no cached key holds and that have nothing to lose (see [`Subject::is_idle`]).
fn sweep(map: &mut HashMap<String, Arc<Subject>>, now: Instant) {
    map.retain(|_, s| Arc::strong_count(s) > 1 || !s.is_idle(now));
}

/// Subject names.
pub fn key_subject(public_id: &str) -> String {
    format!("k:{public_id}")
}

pub fn team_subject(team_id: &str) -> String {
    format!("t:{team_id}")
}

#[derive(Debug)]
struct Window {
    start: Instant,
    count: u64,
    /// With shared counts: this instance's view of the wall-clock minute `minute` (minutes
    /// since the Unix epoch) across every instance.
    global: GlobalMinute,
}

/// One subject's count for one wall-clock minute across instances: the total Redis last
/// returned, what is on its way there, and what was counted here since.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GlobalMinute {
    pub minute: u64,
    pub seen: u64,
    pub sending: u64,
    pub unsent: u64,
    /// A limit is checked on this count, so it is worth sending (tokens are counted for every
    /// subject, limited or not).
    pub limited: bool,
    /// Redis has answered with this minute's total at least once.
    pub read: bool,
}

impl GlobalMinute {
    /// The minute `minute`, started fresh when this one is older.
    fn at(&mut self, minute: u64) -> &mut Self {
        if self.minute != minute {
            *self = GlobalMinute {
                minute,
                limited: self.limited,
                ..Default::default()
            };
        }
        self
    }

    fn estimate(&self) -> u64 {
        self.seen + self.sending + self.unsent
    }

    /// Worth a round trip: limited, and either counted here since or never read (and not
    /// being read now).
    fn is_due(&self) -> bool {
        self.limited && (self.unsent > 0 || (!self.read && self.sending == 0))
    }
}

/// The wall-clock minute now, and the time left in it.
fn wall_minute() -> (u64, Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let minute = now.as_secs() / 60;
    let into = now - Duration::from_secs(minute * 60);
    (minute, WINDOW.saturating_sub(into))
}

impl Window {
    fn new(start: Instant) -> Self {
        Window {
            start,
            count: 0,
            global: GlobalMinute::default(),
        }
    }

    /// The window at `now`: a fresh one when a minute has passed since this one started.
    fn current(&mut self, now: Instant) -> &mut Self {
        if now.duration_since(self.start) >= WINDOW {
            self.start = now;
            self.count = 0;
        }
        self
    }

    /// Time left in this window at `now`.
    fn left(&self, now: Instant) -> Duration {
        WINDOW.saturating_sub(now.duration_since(self.start))
    }
}

/// One subject's counters: request and token windows, requests in flight, and spend this
/// process recorded (all of it, and the part already written to the store).
#[derive(Debug)]
pub struct Subject {
    name: String,
    requests: Mutex<Window>,
    tokens: Mutex<Window>,
    in_flight: AtomicU64,
    recorded: AtomicI64,
    flushed: AtomicI64,
    /// Counts are shared with other instances: limits also check the global estimate.
    shared: bool,
}

/// Spend recorded for a subject in this process, in nano-dollars: everything, and the part
/// already written to the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerEntry {
    pub recorded: Usd,
    pub flushed: Usd,
}

/// Which of a subject's two counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Count {
    Requests,
    Tokens,
}

impl Subject {
    fn new(name: &str, shared: bool) -> Self {
        let start = Instant::now();
        Subject {
            name: name.to_string(),
            requests: Mutex::new(Window::new(start)),
            tokens: Mutex::new(Window::new(start)),
            in_flight: AtomicU64::new(0),
            recorded: AtomicI64::new(0),
            flushed: AtomicI64::new(0),
            shared,
        }
    }

    /// `k:<public id>` or `t:<team id>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn window<T>(w: &Mutex<Window>, f: impl FnOnce(&mut Window, Instant) -> T) -> T {
        let now = Instant::now();
        let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
        f(w.current(now), now)
    }

    /// The wall-clock minute, when counts are shared.
    fn minute(&self) -> Option<(u64, Duration)> {
        self.shared.then(wall_minute)
    }

    /// `Err(wait)` when `w` has reached `limit`: this instance's own minute, or (shared)
    /// every instance's count of this wall-clock minute as last seen plus what is on its way.
    fn over(
        w: &mut Window,
        now: Instant,
        limit: u64,
        minute: Option<(u64, Duration)>,
    ) -> Result<(), Duration> {
        if w.count >= limit {
            return Err(w.left(now));
        }
        if let Some((m, left)) = minute {
            let g = w.global.at(m);
            g.limited = true;
            if g.estimate() >= limit {
                return Err(left);
            }
        }
        Ok(())
    }

    fn count(w: &mut Window, n: u64, minute: Option<(u64, Duration)>) {
        w.count = w.count.saturating_add(n);
        if let Some((m, _)) = minute {
            let g = w.global.at(m);
            g.unsent = g.unsent.saturating_add(n);
        }
    }

    /// Counts one request; `Err(wait)` (and nothing counted) when that would exceed `limit`
    /// this minute.
    pub fn try_count_request(&self, limit: u64) -> Result<(), Duration> {
        let minute = self.minute();
        Self::window(&self.requests, |w, now| {
            Self::over(w, now, limit, minute)?;
            Self::count(w, 1, minute);
            Ok(())
        })
    }

    /// `Err(wait)` when this minute's tokens have already reached `limit`; counts nothing.
    pub fn check_tokens(&self, limit: u64) -> Result<(), Duration> {
        let minute = self.minute();
        Self::window(&self.tokens, |w, now| Self::over(w, now, limit, minute))
    }

    /// Adds `n` tokens to this minute's count.
    pub fn add_tokens(&self, n: u64) {
        let minute = self.minute();
        Self::window(&self.tokens, |w, _| Self::count(w, n, minute));
    }

    fn counter(&self, which: Count) -> &Mutex<Window> {
        match which {
            Count::Requests => &self.requests,
            Count::Tokens => &self.tokens,
        }
    }

    fn has_unsent(&self) -> bool {
        [Count::Requests, Count::Tokens].into_iter().any(|c| {
            let w = self.counter(c).lock().unwrap_or_else(|p| p.into_inner());
            w.global.is_due()
        })
    }

    /// For the Redis sync: moves the unsent count of a limited counter to "sending" and
    /// returns `(minute, n)`, or `None` when there is nothing worth sending. `n` may be 0:
    /// the minute's total was never read (a limit checked before anything was counted).
    pub(crate) fn take_unsent(&self, which: Count) -> Option<(u64, u64)> {
        let mut w = self
            .counter(which)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let g = &mut w.global;
        if !g.is_due() {
            return None;
        }
        let n = std::mem::take(&mut g.unsent);
        g.sending += n;
        Some((g.minute, n))
    }

    /// For the Redis sync: `n` of `minute` reached Redis, whose total is now `total`
    /// (`None`: sending failed, the count waits for the next try).
    pub(crate) fn sent(&self, which: Count, minute: u64, n: u64, total: Option<u64>) {
        let mut w = self
            .counter(which)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let g = &mut w.global;
        if g.minute != minute {
            return; // that minute is over; its counts do not matter any more
        }
        g.sending = g.sending.saturating_sub(n);
        match total {
            Some(t) => {
                g.seen = g.seen.max(t);
                g.read = true;
            }
            None => g.unsent += n,
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Adds `cost` to the spend recorded (`flushed = false`) or written to the store.
    pub fn add_spend(&self, cost: Usd, flushed: bool) {
        let counter = if flushed {
            &self.flushed
        } else {
            &self.recorded
        };
        let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            v.checked_add(cost.nanos())
        });
    }

    pub fn ledger(&self) -> LedgerEntry {
        LedgerEntry {
            recorded: Usd::from_nanos(self.recorded.load(Ordering::Acquire)),
            flushed: Usd::from_nanos(self.flushed.load(Ordering::Acquire)),
        }
    }

    /// Spend now, given the store's total read when `at_read` was the ledger entry: the store's
    /// total plus what this process recorded that the store had not seen at that read. A flush
    /// racing the read makes this high by at most one batch: the safe direction.
    pub fn spend_since(&self, stored: Usd, at_read: LedgerEntry) -> Usd {
        let unflushed_at_read = self.recorded.load(Ordering::Acquire) - at_read.flushed.nanos();
        Usd::from_nanos(stored.nanos().saturating_add(unflushed_at_read.max(0)))
    }

    /// Nothing to lose by forgetting it: no window running, nothing in flight or unflushed.
    fn is_idle(&self, now: Instant) -> bool {
        let expired = |w: &Mutex<Window>| {
            let w = w.lock().unwrap_or_else(|p| p.into_inner());
            w.count == 0 || w.left(now).is_zero()
        };
        self.in_flight() == 0
            && self.recorded.load(Ordering::Acquire) == self.flushed.load(Ordering::Acquire)
            && expired(&self.requests)
            && expired(&self.tokens)
    }
}

/// One in-flight slot on each of up to two subjects (a key and its team), released on drop
/// (the end of the response body).
#[derive(Debug)]
pub struct ParallelGuard {
    held: [Option<Arc<Subject>>; 2],
}

impl Drop for ParallelGuard {
    fn drop(&mut self) {
        for s in self.held.iter().flatten() {
            s.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Takes an in-flight slot on every `(subject, limit)`, all or none. `Err(subject)` is the
/// first subject at its limit. A slot is counted before it is checked, so two requests racing
/// for the last slot can both be refused, but never both admitted.
pub fn acquire_parallel(
    wanted: [Option<(&Arc<Subject>, u64)>; 2],
) -> Result<Option<ParallelGuard>, Arc<Subject>> {
    if wanted.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut guard = ParallelGuard { held: [None, None] };
    for (slot, (s, limit)) in wanted.into_iter().flatten().enumerate() {
        let before = s.in_flight.fetch_add(1, Ordering::AcqRel);
        guard.held[slot] = Some(Arc::clone(s));
        if before >= limit {
            // Dropping the guard gives back every slot taken so far, this one included.
            return Err(Arc::clone(s));
        }
    }
    Ok(Some(guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn request_limit_resets_after_the_window() {
        let subjects = Subjects::default();
        let k = subjects.get("k");
        assert!(k.try_count_request(2).is_ok());
        assert!(k.try_count_request(2).is_ok());
        let wait = k.try_count_request(2).unwrap_err();
        assert!(wait > Duration::from_secs(59));
        assert!(subjects.get("other").try_count_request(2).is_ok());
        // The same name is the same counters.
        assert!(subjects.get("k").try_count_request(2).is_err());
        tokio::time::advance(WINDOW).await;
        assert!(k.try_count_request(2).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn token_limit_blocks_once_the_minute_is_used_up() {
        let k = Subjects::default().get("k");
        assert!(k.check_tokens(100).is_ok());
        k.add_tokens(60);
        assert!(k.check_tokens(100).is_ok());
        k.add_tokens(60);
        assert!(k.check_tokens(100).is_err());
        tokio::time::advance(WINDOW).await;
        assert!(k.check_tokens(100).is_ok());
    }

    #[test]
    fn shared_counts_admit_on_every_instances_estimate() {
        let subjects = Subjects::shared();
        let k = subjects.get("k:a");
        k.try_count_request(5).unwrap();
        k.try_count_request(5).unwrap();
        assert_eq!(subjects.with_unsent().len(), 1);
        let (minute, n) = k.take_unsent(Count::Requests).unwrap();
        assert_eq!(n, 2);
        assert!(k.take_unsent(Count::Requests).is_none(), "on its way");
        // Redis: 4 this minute, 2 of them from other instances.
        k.sent(Count::Requests, minute, 2, Some(4));
        assert!(subjects.with_unsent().is_empty());
        k.try_count_request(5).unwrap();
        // 3 counted here, but 5 in all: refused until the wall-clock minute ends.
        let wait = k.try_count_request(5).unwrap_err();
        assert!(wait <= WINDOW);
        // A send that failed puts its count back for the next try.
        let (minute, n) = k.take_unsent(Count::Requests).unwrap();
        k.sent(Count::Requests, minute, n, None);
        assert_eq!(k.take_unsent(Count::Requests), Some((minute, 1)));

        // Tokens travel only once a limit is checked on them; the first check asks for the
        // total (n = 0) even with nothing counted.
        let t = subjects.get("k:b");
        t.add_tokens(100);
        assert!(t.take_unsent(Count::Tokens).is_none());
        let u = subjects.get("k:c");
        u.check_tokens(1_000).unwrap();
        let (minute, n) = u.take_unsent(Count::Tokens).unwrap();
        assert_eq!(n, 0);
        u.sent(Count::Tokens, minute, 0, Some(1_000));
        assert!(
            u.check_tokens(1_000).is_err(),
            "other instances used the minute up"
        );

        // Without Redis nothing is ever due, and only this instance's counts limit.
        let alone = Subjects::default().get("k:a");
        alone.try_count_request(1).unwrap();
        assert!(alone.take_unsent(Count::Requests).is_none());
    }

    #[test]
    fn parallel_slots_are_taken_all_or_none_and_freed_on_drop() {
        let subjects = Subjects::default();
        let (ka, kb, kc, tx) = (
            subjects.get("k:a"),
            subjects.get("k:b"),
            subjects.get("k:c"),
            subjects.get("t:x"),
        );
        let a = acquire_parallel([Some((&ka, 1)), Some((&tx, 2))]).unwrap();
        assert_eq!(tx.in_flight(), 1);
        // k:a is full: nothing is taken for t:x either.
        let refused = acquire_parallel([Some((&tx, 2)), Some((&ka, 1))]).unwrap_err();
        assert_eq!(refused.name(), "k:a");
        assert_eq!((tx.in_flight(), ka.in_flight()), (1, 1));
        let b = acquire_parallel([Some((&kb, 1)), Some((&tx, 2))]).unwrap();
        let refused = acquire_parallel([Some((&kc, 1)), Some((&tx, 2))]).unwrap_err();
        assert_eq!(refused.name(), "t:x");
        assert_eq!(kc.in_flight(), 0);
        drop(a);
        drop(b);
        assert_eq!((tx.in_flight(), ka.in_flight(), kb.in_flight()), (0, 0, 0));
        assert!(acquire_parallel([Some((&ka, 1)), None]).unwrap().is_some());
        assert!(acquire_parallel([None, None]).unwrap().is_none());
    }

    #[test]
    fn parallel_limit_holds_under_concurrency() {
        let k = Subjects::default().get("k");
        let admitted = AtomicU64::new(0);
        let peak = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..2_000 {
                        if let Ok(g) = acquire_parallel([Some((&k, 3)), None]) {
                            let now = admitted.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            admitted.fetch_sub(1, Ordering::SeqCst);
                            drop(g);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(k.in_flight(), 0);
    }

    #[test]
    fn spend_since_counts_only_what_the_store_had_not_seen() {
        let subjects = Subjects::default();
        let k = subjects.get("k:a");
        k.add_spend(Usd::from_nanos(10), false);
        k.add_spend(Usd::from_nanos(10), true); // flushed: the store's 100 includes it
        let at_read = subjects.ledger("k:a");
        let stored = Usd::from_nanos(100);
        assert_eq!(k.spend_since(stored, at_read), Usd::from_nanos(100));
        k.add_spend(Usd::from_nanos(5), false);
        assert_eq!(k.spend_since(stored, at_read), Usd::from_nanos(105));
        // Flushing later does not double count.
        k.add_spend(Usd::from_nanos(5), true);
        assert_eq!(k.spend_since(stored, at_read), Usd::from_nanos(105));
        assert_eq!(subjects.ledger("nobody"), LedgerEntry::default());
    }

    #[tokio::test(start_paused = true)]
    async fn only_idle_unheld_subjects_are_swept() {
        let subjects = Subjects::default();
        let held = subjects.get("k:held");
        held.try_count_request(10).unwrap();
        let unflushed = subjects.get("k:unflushed");
        unflushed.add_spend(Usd::from_nanos(1), false);
        drop(unflushed);
        drop(subjects.get("k:idle"));
        tokio::time::advance(WINDOW).await;
        let mut map = subjects.by_name.lock().unwrap();
        sweep(&mut map, Instant::now());
        let mut left: Vec<_> = map.keys().cloned().collect();
        left.sort();
        assert_eq!(left, ["k:held", "k:unflushed"]);
    }
}
