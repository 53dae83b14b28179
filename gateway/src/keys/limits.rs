//! Per-key and per-team usage limits, in memory, checked at authentication: `rpm_limit`
//! (requests per minute), `tpm_limit` (tokens per minute, counted when a response reports its
//! usage) and `max_parallel_requests` (requests in flight). Over a limit → 429 with
//! `Retry-After`. Windows are fixed one-minute windows per subject (`k:<public id>`,
//! `t:<team id>`); nothing here touches the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);
/// Windows kept before stale ones are swept.
const MAX_WINDOWS: usize = 100_000;
/// How long a client is told to wait when its parallel-request limit is reached.
pub const PARALLEL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Every limiter the proxy checks, shared by authentication (checks) and the handlers (token
/// counts after a response).
#[derive(Debug, Default)]
pub struct Limiters {
    pub requests: MinuteCounter,
    pub tokens: MinuteCounter,
    pub parallel: Arc<ParallelLimiter>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    count: u64,
}

/// Counts per subject for the current minute (requests or tokens).
#[derive(Debug, Default)]
pub struct MinuteCounter {
    windows: Mutex<HashMap<String, Window>>,
}

impl MinuteCounter {
    fn with_window<T>(&self, subject: &str, f: impl FnOnce(&mut Window, Instant) -> T) -> T {
        let now = Instant::now();
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_WINDOWS {
            map.retain(|_, w| now.duration_since(w.start) < WINDOW);
        }
        let w = match map.get_mut(subject) {
            Some(w) => w,
            None => map.entry(subject.to_string()).or_insert(Window {
                start: now,
                count: 0,
            }),
        };
        if now.duration_since(w.start) >= WINDOW {
            w.start = now;
            w.count = 0;
        }
        f(w, now)
    }

    /// Counts one for `subject`; `Err(wait)` (and nothing counted) when that would exceed
    /// `limit` this minute.
    pub fn try_count(&self, subject: &str, limit: u64) -> Result<(), Duration> {
        self.with_window(subject, |w, now| {
            if w.count >= limit {
                return Err(WINDOW.saturating_sub(now.duration_since(w.start)));
            }
            w.count += 1;
            Ok(())
        })
    }

    /// `Err(wait)` when `subject` has already used `limit` this minute; counts nothing.
    pub fn check(&self, subject: &str, limit: u64) -> Result<(), Duration> {
        self.with_window(subject, |w, now| {
            if w.count >= limit {
                Err(WINDOW.saturating_sub(now.duration_since(w.start)))
            } else {
                Ok(())
            }
        })
    }

    /// Adds `n` to `subject`'s count this minute.
    pub fn add(&self, subject: &str, n: u64) {
        self.with_window(subject, |w, _| w.count = w.count.saturating_add(n));
    }
}

/// Requests in flight per subject.
#[derive(Debug, Default)]
pub struct ParallelLimiter {
    in_flight: Mutex<HashMap<String, u64>>,
}

/// Holds one in-flight slot per subject until dropped (the end of the response body).
#[derive(Debug)]
pub struct ParallelGuard {
    limiter: Arc<ParallelLimiter>,
    subjects: Vec<String>,
}

impl Drop for ParallelGuard {
    fn drop(&mut self) {
        let mut map = self
            .limiter
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for s in &self.subjects {
            if let Some(n) = map.get_mut(s) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(s);
                }
            }
        }
    }
}

impl ParallelLimiter {
    /// Takes a slot for every `(subject, limit)`, all or none. `Err(subject)` names the first
    /// subject at its limit.
    pub fn acquire(
        self: &Arc<Self>,
        wanted: &[(&str, u64)],
    ) -> Result<Option<ParallelGuard>, String> {
        if wanted.is_empty() {
            return Ok(None);
        }
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, _)) = wanted
            .iter()
            .find(|(s, limit)| map.get(*s).copied().unwrap_or(0) >= *limit)
        {
            return Err((*s).to_string());
        }
        for (s, _) in wanted {
            *map.entry((*s).to_string()).or_insert(0) += 1;
        }
        Ok(Some(ParallelGuard {
            limiter: Arc::clone(self),
            subjects: wanted.iter().map(|(s, _)| (*s).to_string()).collect(),
        }))
    }

    /// Requests in flight for `subject` now.
    pub fn current(&self, subject: &str) -> u64 {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(subject)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn request_limit_resets_after_the_window() {
        let l = MinuteCounter::default();
        assert!(l.try_count("k", 2).is_ok());
        assert!(l.try_count("k", 2).is_ok());
        let wait = l.try_count("k", 2).unwrap_err();
        assert!(wait > Duration::from_secs(59));
        assert!(l.try_count("other", 2).is_ok());
        tokio::time::advance(WINDOW).await;
        assert!(l.try_count("k", 2).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn token_limit_blocks_once_the_minute_is_used_up() {
        let l = MinuteCounter::default();
        assert!(l.check("k", 100).is_ok());
        l.add("k", 60);
        assert!(l.check("k", 100).is_ok());
        l.add("k", 60);
        assert!(l.check("k", 100).is_err());
        tokio::time::advance(WINDOW).await;
        assert!(l.check("k", 100).is_ok());
    }

    #[test]
    fn parallel_slots_are_taken_all_or_none_and_freed_on_drop() {
        let l = Arc::new(ParallelLimiter::default());
        let a = l.acquire(&[("k:a", 1), ("t:x", 2)]).unwrap();
        assert_eq!(l.current("t:x"), 1);
        // k:a is full: nothing is taken for t:x either.
        assert_eq!(l.acquire(&[("t:x", 2), ("k:a", 1)]).unwrap_err(), "k:a");
        assert_eq!(l.current("t:x"), 1);
        let b = l.acquire(&[("k:b", 1), ("t:x", 2)]).unwrap();
        assert_eq!(l.acquire(&[("k:c", 1), ("t:x", 2)]).unwrap_err(), "t:x");
        drop(a);
        drop(b);
        assert_eq!(l.current("t:x"), 0);
        assert!(l.acquire(&[("k:a", 1)]).unwrap().is_some());
        assert!(l.acquire(&[]).unwrap().is_none());
    }
}
