//! Per-deployment cooldown: a small state machine on `tokio::time::Instant` (so tests run on
//! paused time). Failures that say something about the deployment's health are counted in a
//! one-minute window; more than `allowed_fails` of them cool the deployment down for
//! `cooldown_time`. An upstream Retry-After lengthens a cooldown and never shortens it.

use std::time::Duration;

use tokio::time::Instant;

/// Failures are counted per window of this length (LiteLLM counts fails per minute).
pub const FAIL_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct CooldownState {
    window_start: Instant,
    fails: u32,
    cooling_until: Option<Instant>,
}

/// What a failure did to the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CooldownChange {
    /// Counted; still below the threshold.
    Counted,
    /// Crossed the threshold: the deployment now cools down until the given instant.
    Entered(Instant),
    /// Already cooling; the cooldown end is now the given instant (maybe unchanged).
    Extended(Instant),
}

impl CooldownState {
    pub fn new(now: Instant) -> Self {
        CooldownState {
            window_start: now,
            fails: 0,
            cooling_until: None,
        }
    }

    /// Time left in the cooldown, or `None` when the deployment may serve.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        match self.cooling_until {
            Some(until) if until > now => Some(until - now),
            _ => None,
        }
    }

    /// Cools down until `until` unless already cooling longer (another instance's cooldown,
    /// shared through Redis). Returns whether the cooldown got longer.
    pub fn cool_until(&mut self, until: Instant) -> bool {
        if self.cooling_until.is_some_and(|u| u >= until) {
            return false;
        }
        self.cooling_until = Some(until);
        self.fails = 0;
        true
    }

    /// Records a failure that counts toward cooldown.
    pub fn record_failure(
        &mut self,
        now: Instant,
        allowed_fails: u32,
        cooldown_time: Duration,
        retry_after: Option<Duration>,
    ) -> CooldownChange {
        if let Some(until) = self.cooling_until.filter(|u| *u > now) {
            let extended = retry_after.map(|ra| (now + ra).max(until)).unwrap_or(until);
            self.cooling_until = Some(extended);
            return CooldownChange::Extended(extended);
        }
        if now.duration_since(self.window_start) >= FAIL_WINDOW {
            self.window_start = now;
            self.fails = 0;
        }
        self.fails = self.fails.saturating_add(1);
        if self.fails > allowed_fails {
            let length = cooldown_time.max(retry_after.unwrap_or_default());
            let until = now + length;
            self.cooling_until = Some(until);
            self.fails = 0;
            self.window_start = now;
            CooldownChange::Entered(until)
        } else {
            CooldownChange::Counted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn cools_down_after_more_than_allowed_fails_and_recovers() {
        let mut s = CooldownState::new(Instant::now());
        assert_eq!(
            s.record_failure(Instant::now(), 1, COOL, None),
            CooldownChange::Counted
        );
        assert!(s.remaining(Instant::now()).is_none());
        assert!(matches!(
            s.record_failure(Instant::now(), 1, COOL, None),
            CooldownChange::Entered(_)
        ));
        assert_eq!(s.remaining(Instant::now()), Some(COOL));
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert!(s.remaining(Instant::now()).is_some());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            s.remaining(Instant::now()).is_none(),
            "cooldown must expire"
        );
        // A fresh failure after expiry starts counting from zero again.
        assert_eq!(
            s.record_failure(Instant::now(), 1, COOL, None),
            CooldownChange::Counted
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_extends_but_never_shortens() {
        let mut s = CooldownState::new(Instant::now());
        s.record_failure(Instant::now(), 0, COOL, Some(Duration::from_secs(2)));
        assert_eq!(
            s.remaining(Instant::now()),
            Some(COOL),
            "cooldown_time wins over a shorter Retry-After"
        );
        s.record_failure(Instant::now(), 0, COOL, Some(Duration::from_secs(1)));
        assert_eq!(
            s.remaining(Instant::now()),
            Some(COOL),
            "a shorter Retry-After never shortens"
        );
        s.record_failure(Instant::now(), 0, COOL, Some(Duration::from_secs(30)));
        assert_eq!(s.remaining(Instant::now()), Some(Duration::from_secs(30)));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_longer_than_cooldown_sets_its_length_on_entry() {
        let mut s = CooldownState::new(Instant::now());
        s.record_failure(Instant::now(), 0, COOL, Some(Duration::from_secs(12)));
        assert_eq!(s.remaining(Instant::now()), Some(Duration::from_secs(12)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_cooldown_lengthens_and_never_shortens() {
        let mut s = CooldownState::new(Instant::now());
        s.record_failure(Instant::now(), 0, COOL, None);
        assert!(!s.cool_until(Instant::now() + Duration::from_secs(2)));
        assert_eq!(s.remaining(Instant::now()), Some(COOL));
        assert!(s.cool_until(Instant::now() + Duration::from_secs(9)));
        assert_eq!(s.remaining(Instant::now()), Some(Duration::from_secs(9)));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(s.remaining(Instant::now()).is_none());
        // After it ran out, a new one applies even when short.
        assert!(s.cool_until(Instant::now() + Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn fails_outside_the_window_do_not_accumulate() {
        let mut s = CooldownState::new(Instant::now());
        s.record_failure(Instant::now(), 1, COOL, None);
        tokio::time::advance(FAIL_WINDOW).await;
        assert_eq!(
            s.record_failure(Instant::now(), 1, COOL, None),
            CooldownChange::Counted
        );
    }
}
