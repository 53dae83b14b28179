//! Failed sign-ins are limited per client IP and across all clients, so the master key cannot
//! be guessed at network speed: after `PER_IP` failures within a window the address is refused
//! with 429 until the window ends; a success clears the address's count. The clock is tokio's,
//! so tests move it with paused time.
//!
//! The address is the peer's, unless `general_settings.use_x_forwarded_for` says a reverse proxy
//! stands in front: then it is the last address of `X-Forwarded-For` ([`forwarded_client`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Failures one address may make per window.
pub const PER_IP: u32 = 5;
/// Failures all addresses together may make per window (a spread-out guessing run).
pub const GLOBAL: u32 = 100;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Bounds memory: beyond this many addresses, expired windows are dropped first.
const MAX_TRACKED: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

impl Window {
    fn live(&self, now: Instant) -> bool {
        now < self.started + WINDOW
    }

    fn retry_after(&self, now: Instant) -> Duration {
        (self.started + WINDOW).saturating_duration_since(now)
    }
}

#[derive(Default)]
pub struct LoginLimiter {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_ip: HashMap<IpAddr, Window>,
    global: Option<Window>,
}

impl LoginLimiter {
    /// `Err(retry_after)` when `ip` (or everyone) has used up the failures of this window.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let inner = self.inner.lock();
        let spent = |w: Option<&Window>, limit: u32| {
            w.filter(|w| w.live(now) && w.failures >= limit)
                .map(|w| w.retry_after(now).max(Duration::from_secs(1)))
        };
        if let Some(wait) = spent(ip.and_then(|ip| inner.by_ip.get(&ip)), PER_IP) {
            return Err(wait);
        }
        match spent(inner.global.as_ref(), GLOBAL) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed sign-in from `ip`.
    pub fn failed(&self, ip: Option<IpAddr>) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let bump = |w: &mut Window| {
            if !w.live(now) {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures = w.failures.saturating_add(1);
        };
        bump(inner.global.get_or_insert(Window {
            started: now,
            failures: 0,
        }));
        let Some(ip) = ip else { return };
        if inner.by_ip.len() >= MAX_TRACKED && !inner.by_ip.contains_key(&ip) {
            inner.by_ip.retain(|_, w| w.live(now));
            if inner.by_ip.len() >= MAX_TRACKED {
                // Still full of live windows: the global limit covers the rest.
                return;
            }
        }
        bump(inner.by_ip.entry(ip).or_insert(Window {
            started: now,
            failures: 0,
        }));
    }

    /// A successful sign-in from `ip` clears its failures.
    pub fn succeeded(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.inner.lock().by_ip.remove(&ip);
        }
    }
}

/// The address the nearest proxy appended to `X-Forwarded-For`: the last entry of the last
/// header line (`1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`). Entries before
/// it came from the client or from proxies further out, and anyone can write those. `None`
/// when there is no header or its last entry is not an address (the caller then falls back to
/// the peer, which is stricter: every such client shares the proxy's count).
pub fn forwarded_client(headers: &axum::http::HeaderMap) -> Option<IpAddr> {
    let line = headers.get_all("x-forwarded-for").iter().next_back()?;
    let last = line.to_str().ok()?.rsplit(',').next()?.trim();
    let ip = last
        .parse::<IpAddr>()
        .or_else(|_| last.parse::<std::net::SocketAddr>().map(|a| a.ip()))
        .or_else(|_| {
            last.strip_prefix('[')
                .and_then(|v6| v6.strip_suffix(']'))
                .unwrap_or(last)
                .parse::<IpAddr>()
        })
        .ok()?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_client_is_the_last_address_appended() {
        let of = |lines: &[&str]| {
            let mut h = axum::http::HeaderMap::new();
            for l in lines {
                h.append("x-forwarded-for", l.parse().unwrap());
            }
            forwarded_client(&h)
        };
        assert_eq!(of(&["203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(of(&["1.1.1.1, 10.0.0.9,203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(
            of(&["1.1.1.1", "203.0.113.7"]),
            ip("203.0.113.7"),
            "the last header line is the nearest proxy's"
        );
        assert_eq!(of(&["203.0.113.7:51234"]), ip("203.0.113.7"));
        assert_eq!(of(&["2001:db8::1"]), ip("2001:db8::1"));
        assert_eq!(of(&["[2001:db8::1]"]), ip("2001:db8::1"));
        assert_eq!(of(&["[2001:db8::1]:443"]), ip("2001:db8::1"));
        assert_eq!(
            of(&["::ffff:203.0.113.7"]),
            ip("203.0.113.7"),
            "an IPv4-mapped address counts as the IPv4 address"
        );
        for junk in ["", "unknown", "203.0.113.7, ", "_hidden", "1.2.3.4 5.6.7.8"] {
            assert_eq!(of(&[junk]), None, "{junk:?}");
        }
        assert_eq!(of(&[]), None);
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn five_failures_lock_one_address_for_the_rest_of_the_minute() {
        let l = LoginLimiter::default();
        let a = ip("10.0.0.1");
        for _ in 0..PER_IP {
            assert!(l.check(a).is_ok());
            l.failed(a);
        }
        let wait = l.check(a).unwrap_err();
        assert_eq!(wait, WINDOW);
        assert!(
            l.check(ip("10.0.0.2")).is_ok(),
            "other addresses still sign in"
        );
        tokio::time::advance(Duration::from_secs(45)).await;
        assert_eq!(l.check(a).unwrap_err(), Duration::from_secs(15));
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(l.check(a).is_ok(), "a new window");
        l.failed(a);
        assert!(l.check(a).is_ok(), "the count starts again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_address() {
        let l = LoginLimiter::default();
        let a = ip("::1");
        for _ in 0..PER_IP - 1 {
            l.failed(a);
        }
        l.succeeded(a);
        for _ in 0..PER_IP - 1 {
            l.failed(a);
        }
        assert!(l.check(a).is_ok());
        l.failed(a);
        assert!(l.check(a).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_from_many_addresses_hit_the_global_limit() {
        let l = LoginLimiter::default();
        for i in 0..GLOBAL {
            let a = Some(IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]));
            l.failed(a);
        }
        assert!(l.check(ip("192.168.1.1")).is_err());
        assert!(l.check(None).is_err());
        tokio::time::advance(WINDOW).await;
        assert!(l.check(ip("192.168.1.1")).is_ok());
    }
}
