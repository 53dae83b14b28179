//! Key and team rpm/tpm counts shared between gateway instances through Redis
//! (`router_settings.redis_*`). A request is admitted on this instance's own counts, as without
//! Redis, and also on an estimate of every instance's count in the current wall-clock minute:
//! the total Redis last returned plus what this instance counted since. Every [`SYNC_EVERY`], a
//! task adds this instance's new counts to the subject's Redis counter for that minute
//! (`INCRBY`, expiring after two minutes) and keeps the total it gets back. So a limit holds
//! across N instances to within what they admit in one sync interval, and Redis is never on a
//! request's path: while it is unreachable, each instance limits on its own counts. Only limited
//! counters travel (a key's tokens without a `tpm_limit` never do).

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::RedisResult;

use super::limits::{Count, Subject, Subjects};
use crate::config::RedisConfig;
use crate::router::shared::{connect, Outage};

/// How often counts go to Redis (and totals come back).
pub const SYNC_EVERY: Duration = Duration::from_millis(200);
/// A minute's counter outlives the minute by one, then expires.
const EXPIRE_SECS: u64 = 120;

/// `<namespace>:limit:<subject>:<minute>:<r|t>`: one subject's requests or tokens in one
/// wall-clock minute.
fn key(namespace: &str, subject: &str, minute: u64, which: Count) -> String {
    let c = match which {
        Count::Requests => 'r',
        Count::Tokens => 't',
    };
    format!("{namespace}:limit:{subject}:{minute}:{c}")
}

/// The sync task; it ends when the handle is dropped, or by itself once `subjects` is gone.
pub struct SyncTask(tokio::task::JoinHandle<()>);

impl Drop for SyncTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts syncing `subjects` with the Redis of `cfg` through `client`.
pub fn spawn(client: redis::Client, cfg: &RedisConfig, subjects: Weak<Subjects>) -> SyncTask {
    let shown = cfg.shown();
    let namespace = cfg.namespace.clone();
    SyncTask(tokio::spawn(async move {
        let mut outage = Outage::new(
            "share rpm/tpm counts",
            "each instance limits on its own counts",
            shown,
        );
        loop {
            let mut conn = match connect(&client).await {
                Ok(c) => c,
                Err(e) => {
                    outage.failed(&e).await;
                    continue;
                }
            };
            outage.up();
            loop {
                tokio::time::sleep(SYNC_EVERY).await;
                let Some(subjects) = subjects.upgrade() else {
                    return;
                };
                let due = subjects.with_unsent();
                drop(subjects);
                if let Err(e) = sync(&mut conn, &namespace, &due).await {
                    outage.failed(&e).await;
                    break;
                }
            }
        }
    }))
}

/// Sends the unsent counts of `due` in one pipeline and records the totals.
async fn sync(
    conn: &mut redis::aio::MultiplexedConnection,
    namespace: &str,
    due: &[Arc<Subject>],
) -> RedisResult<()> {
    let mut taken = Vec::new();
    for s in due {
        for which in [Count::Requests, Count::Tokens] {
            if let Some((minute, n)) = s.take_unsent(which) {
                taken.push((s, which, minute, n));
            }
        }
    }
    if taken.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (s, which, minute, n) in &taken {
        let k = key(namespace, s.name(), *minute, *which);
        pipe.cmd("INCRBY").arg(&k).arg(*n);
        pipe.cmd("EXPIRE").arg(&k).arg(EXPIRE_SECS).ignore();
    }
    match pipe.query_async::<Vec<u64>>(conn).await {
        Ok(totals) => {
            for ((s, which, minute, n), total) in taken.iter().zip(totals) {
                s.sent(*which, *minute, *n, Some(total));
            }
            Ok(())
        }
        Err(e) => {
            for (s, which, minute, n) in &taken {
                s.sent(*which, *minute, *n, None);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_subject_minute_and_count() {
        assert_eq!(
            key("switchyard", "k:abc", 29_000_000, Count::Requests),
            "switchyard:limit:k:abc:29000000:r"
        );
        assert_eq!(key("prod", "t:x", 1, Count::Tokens), "prod:limit:t:x:1:t");
    }
}
