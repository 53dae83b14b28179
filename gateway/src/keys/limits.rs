//! Per-key request-rate limits (`rpm_limit`): a fixed one-minute window per public id, in
//! memory, checked at authentication. Over the limit → 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);
/// Windows kept before stale ones are swept.
const MAX_WINDOWS: usize = 100_000;

#[derive(Debug)]
struct Window {
    start: Instant,
    count: u64,
}

/// Request counts per key for the current minute.
#[derive(Debug, Default)]
pub struct RpmLimiter {
    windows: Mutex<HashMap<String, Window>>,
}

impl RpmLimiter {
    /// Counts one request for `key`; `Err(wait)` when it would exceed `limit` this minute.
    pub fn check(&self, key: &str, limit: u64) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut map) = self.windows.lock() else {
            return Ok(());
        };
        if map.len() >= MAX_WINDOWS {
            map.retain(|_, w| now.duration_since(w.start) < WINDOW);
        }
        let w = map.entry(key.to_string()).or_insert(Window {
            start: now,
            count: 0,
        });
        if now.duration_since(w.start) >= WINDOW {
            w.start = now;
            w.count = 0;
        }
        if w.count >= limit {
            return Err(WINDOW.saturating_sub(now.duration_since(w.start)));
        }
        w.count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limit_resets_after_the_window() {
        let l = RpmLimiter::default();
        assert!(l.check("k", 2).is_ok());
        assert!(l.check("k", 2).is_ok());
        let wait = l.check("k", 2).unwrap_err();
        assert!(wait > Duration::from_secs(59));
        assert!(l.check("other", 2).is_ok());
        tokio::time::advance(WINDOW).await;
        assert!(l.check("k", 2).is_ok());
    }
}
