//! In-memory cache of resolved virtual keys (SHA-256 of the presented key → context) so the
//! proxy hot path never touches the database. Entries live for a short TTL; admin changes
//! invalidate everything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::auth::AuthContext;

/// How long a resolved key stays cached.
pub const POSITIVE_TTL: Duration = Duration::from_secs(60);
/// How long an unknown, blocked or expired key stays cached as "no".
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// How long past its TTL a resolved key may still be used while the store is unreachable.
pub const STALE_GRACE: Duration = Duration::from_secs(600);
/// Entries kept before the cache is swept.
const MAX_ENTRIES: usize = 100_000;

/// A key resolved against the store: the context to attach, and when the key expires.
#[derive(Debug, Clone)]
pub struct ResolvedKey {
    pub context: AuthContext,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct Entry {
    value: Option<Arc<ResolvedKey>>,
    until: Instant,
}

/// A key's SHA-256.
pub type Digest = [u8; 32];

/// Digest → resolved key (or a negative entry). A generation counter stops a lookup that
/// started before an invalidation from caching stale data.
#[derive(Debug, Default)]
pub struct KeyCache {
    /// Keyed hashing (the default): clients choose what they present, so they could grind
    /// digests that collide in an unkeyed table of cached unknown keys.
    entries: Mutex<HashMap<Digest, Entry>>,
    generation: AtomicU64,
}

/// What the cache knows about a digest.
pub enum Cached {
    Miss,
    Known(Option<Arc<ResolvedKey>>),
}

impl KeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, digest: &Digest) -> Cached {
        let now = Instant::now();
        let Ok(map) = self.entries.lock() else {
            return Cached::Miss;
        };
        match map.get(digest) {
            Some(e) if e.until > now => Cached::Known(e.value.clone()),
            _ => Cached::Miss,
        }
    }

    /// A resolved key whose TTL ran out less than [`STALE_GRACE`] ago: what the proxy serves
    /// with while the store cannot be reached. Negative entries are never served stale.
    pub fn get_stale(&self, digest: &Digest) -> Option<Arc<ResolvedKey>> {
        let now = Instant::now();
        let map = self.entries.lock().ok()?;
        map.get(digest)
            .filter(|e| e.until + STALE_GRACE > now)
            .and_then(|e| e.value.clone())
    }

    /// Caches `value` unless the cache was invalidated since `generation` was read.
    pub fn put(&self, digest: &Digest, value: Option<Arc<ResolvedKey>>, generation: u64) {
        let ttl = if value.is_some() {
            POSITIVE_TTL
        } else {
            NEGATIVE_TTL
        };
        let now = Instant::now();
        let Ok(mut map) = self.entries.lock() else {
            return;
        };
        if self.generation() != generation {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| e.until > now);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(
            *digest,
            Entry {
                value,
                until: now + ttl,
            },
        );
    }

    /// Drops every entry: called after any admin change to a key or team.
    pub fn invalidate_all(&self) {
        if let Ok(mut map) = self.entries.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            map.clear();
        }
    }
}
