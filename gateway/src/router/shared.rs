//! Cooldowns shared between gateway instances through Redis (`router_settings.redis_*`).
//!
//! When this instance cools a deployment down, it publishes the deployment, its upstream and
//! when the cooldown ends on one channel, and sets a key that expires with the cooldown. Every
//! other instance applies the notice to its deployment of the same id and the same upstream,
//! lengthening a cooldown and never shortening one; an instance that (re)connects reads the
//! keys of its deployments, so it learns the cooldowns that began before it was listening.
//! Redis is never on a request's path: notices queue and go out from a task of their own, and
//! while Redis is unreachable each instance cools down on its own failures, as without it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisResult};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::ModelRouter;
use crate::config::{Deployment, RedisConfig, RedisTarget};

/// Names in one namespace (`redis_namespace`): the channel every instance of the cluster
/// publishes its cooldowns on and listens to, and `<ns>:cooldown:<upstream>:<deployment id>`,
/// which holds when a cooldown ends (Unix milliseconds) and expires then.
#[derive(Clone, Debug)]
struct Names {
    channel: String,
    key_prefix: String,
}

impl Names {
    fn new(namespace: &str) -> Self {
        Names {
            channel: format!("{namespace}:cooldowns"),
            key_prefix: format!("{namespace}:cooldown:"),
        }
    }

    fn key(&self, upstream: &str, deployment: &str) -> String {
        format!("{}{upstream}:{deployment}", self.key_prefix)
    }
}
/// Notices waiting for Redis; past this, new ones are dropped (each instance still cools down
/// on its own failures).
const QUEUE: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
const COOLING_ALONE: &str = "each instance cools deployments down on its own";
/// The longest cooldown taken from another instance: a guard against a skewed clock or a
/// garbled notice, far above any `cooldown_time` or Retry-After in use.
const MAX_SHARED: Duration = Duration::from_secs(3600);

/// What goes over the channel.
#[derive(Debug, Serialize, Deserialize)]
struct Notice {
    /// The instance that cooled the deployment down (it ignores its own notices).
    from: String,
    deployment: String,
    /// [`upstream_of`] the deployment: only a deployment calling the same upstream takes it.
    upstream: String,
    /// When the cooldown ends, Unix milliseconds.
    until_ms: u64,
}

/// The upstream a deployment calls (provider, base URL, model, API version), hashed: two
/// instances' deployments of one id share a cooldown only when they call the same thing. The
/// API key is not part of it and never leaves the process.
pub fn upstream_of(d: &Deployment) -> String {
    let mut h = Sha256::new();
    for part in [
        d.provider.as_str(),
        d.api_base.as_deref().unwrap_or(""),
        &d.upstream_model,
        d.api_version.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..12])
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How much of a cooldown ending at `until_ms` is left, capped; `None` when it is over.
fn remaining(until_ms: u64) -> Option<Duration> {
    let left = until_ms.checked_sub(now_ms()).filter(|ms| *ms > 0)?;
    Some(Duration::from_millis(left).min(MAX_SHARED))
}

/// The Redis client for `cfg`, made once per gateway for everything it shares; connects only
/// when asked to.
pub fn client(cfg: &RedisConfig) -> RedisResult<redis::Client> {
    match &cfg.target {
        RedisTarget::Url(url) => redis::Client::open(url.expose_secret()),
        RedisTarget::Host {
            host,
            port,
            password,
            db,
        } => {
            let mut settings = RedisConnectionInfo::default().set_db(i64::from(*db));
            if let Some(p) = password {
                settings = settings.set_password(p.expose_secret());
            }
            let info = ConnectionAddr::Tcp(host.clone(), *port)
                .into_connection_info()?
                .set_redis_settings(settings);
            redis::Client::open(info)
        }
    }
}

/// The sharing side of a router: queue of notices to publish, the two tasks, and whether
/// Redis answered last time.
pub struct SharedCooldowns {
    tx: mpsc::Sender<Notice>,
    instance: String,
    connected: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SharedCooldowns {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl std::fmt::Debug for SharedCooldowns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCooldowns")
            .field("instance", &self.instance)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl SharedCooldowns {
    /// Starts publishing and listening for `router` through `client` (made by [`client`] from
    /// `cfg`); an unreachable Redis is retried in the background.
    pub fn spawn(client: redis::Client, cfg: &RedisConfig, router: Weak<ModelRouter>) -> Self {
        let shown = cfg.shown();
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let connected = Arc::new(AtomicBool::new(false));
        let names = Names::new(&cfg.namespace);
        let (tx, rx) = mpsc::channel(QUEUE);
        let publisher = tokio::spawn(publish(
            client.clone(),
            names.clone(),
            rx,
            Arc::clone(&connected),
            shown.clone(),
        ));
        let listener = tokio::spawn(listen(
            client,
            names,
            router,
            instance.clone(),
            Arc::clone(&connected),
            shown,
        ));
        SharedCooldowns {
            tx,
            instance,
            connected,
            tasks: vec![publisher, listener],
        }
    }

    /// Whether Redis is reachable as far as this instance knows: the subscription is up and
    /// the last publish went through.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Tells the other instances that `d` cools down for `length` from now.
    pub fn announce(&self, d: &Deployment, length: Duration) {
        let until_ms = now_ms().saturating_add(u64::try_from(length.as_millis()).unwrap_or(0));
        let notice = Notice {
            from: self.instance.clone(),
            deployment: d.id.0.clone(),
            upstream: upstream_of(d),
            until_ms,
        };
        if self.tx.try_send(notice).is_err() {
            tracing::debug!(deployment = %d.id, "cooldown not shared: the queue to Redis is full");
        }
    }
}

/// Logs the first failure of a run of them and the recovery after, not every retry.
pub(crate) struct Outage {
    /// What stops while Redis is down, and what happens meanwhile.
    what: &'static str,
    meanwhile: &'static str,
    shown: String,
    down: bool,
    wait: Duration,
}

impl Outage {
    pub(crate) fn new(what: &'static str, meanwhile: &'static str, shown: String) -> Self {
        Outage {
            what,
            meanwhile,
            shown,
            down: false,
            wait: RETRY_FIRST,
        }
    }

    pub(crate) async fn failed(&mut self, error: &redis::RedisError) {
        if !self.down {
            tracing::warn!(redis = %self.shown, error = %error, "cannot {} through Redis; {} until it is back", self.what, self.meanwhile);
            self.down = true;
        }
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(RETRY_MAX);
    }

    pub(crate) fn up(&mut self) {
        if self.down {
            tracing::info!(redis = %self.shown, "Redis reachable again; {} resumes", self.what);
        }
        self.down = false;
        self.wait = RETRY_FIRST;
    }
}

pub(crate) async fn connect(
    client: &redis::Client,
) -> RedisResult<redis::aio::MultiplexedConnection> {
    match tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    }
}

/// Sends queued notices: the key (for instances that join later), then the message.
async fn publish(
    client: redis::Client,
    names: Names,
    mut rx: mpsc::Receiver<Notice>,
    connected: Arc<AtomicBool>,
    shown: String,
) {
    let mut outage = Outage::new("share cooldowns", COOLING_ALONE, shown);
    let mut pending: Option<Notice> = None;
    loop {
        let mut conn = match connect(&client).await {
            Ok(c) => c,
            Err(e) => {
                connected.store(false, Ordering::Relaxed);
                outage.failed(&e).await;
                continue;
            }
        };
        connected.store(true, Ordering::Relaxed);
        outage.up();
        loop {
            let notice = match pending.take() {
                Some(n) => n,
                None => match rx.recv().await {
                    Some(n) => n,
                    None => return,
                },
            };
            // A notice that waited out its cooldown (Redis was down) says nothing any more.
            let Some(left) = remaining(notice.until_ms) else {
                continue;
            };
            let Ok(payload) = serde_json::to_string(&notice) else {
                continue;
            };
            let sent: RedisResult<()> = redis::pipe()
                .cmd("SET")
                .arg(names.key(&notice.upstream, &notice.deployment))
                .arg(notice.until_ms)
                .arg("PX")
                .arg(u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1))
                .ignore()
                .cmd("PUBLISH")
                .arg(&names.channel)
                .arg(payload)
                .ignore()
                .query_async(&mut conn)
                .await;
            if let Err(e) = sent {
                connected.store(false, Ordering::Relaxed);
                pending = Some(notice);
                outage.failed(&e).await;
                break;
            }
        }
    }
}

/// Applies other instances' notices to `router`, after reading the cooldowns already running
/// for its deployments; reconnects when the subscription drops.
/// The subscription notices a lost connection at once (the publisher only when it next
/// sends), so it keeps `connected` current for `/health/readiness`.
async fn listen(
    client: redis::Client,
    names: Names,
    router: Weak<ModelRouter>,
    instance: String,
    connected: Arc<AtomicBool>,
    shown: String,
) {
    let mut outage = Outage::new("receive shared cooldowns", COOLING_ALONE, shown);
    loop {
        match listen_once(&client, &names, &router, &instance, &connected, &mut outage).await {
            Ok(()) => return, // the router is gone
            Err(e) => {
                connected.store(false, Ordering::Relaxed);
                outage.failed(&e).await
            }
        }
    }
}

async fn listen_once(
    client: &redis::Client,
    names: &Names,
    router: &Weak<ModelRouter>,
    instance: &str,
    connected: &AtomicBool,
    outage: &mut Outage,
) -> RedisResult<()> {
    let mut pubsub = match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
        Ok(r) => r?,
        Err(_) => return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    };
    pubsub.subscribe(&names.channel).await?;
    // Subscribed first, then read: a cooldown that starts in between arrives as a message.
    let mut conn = connect(client).await?;
    {
        let Some(router) = router.upgrade() else {
            return Ok(());
        };
        let groups = router.groups();
        let ids: Vec<(String, String)> = groups
            .deployments()
            .map(|d| (d.id().0.clone(), upstream_of(&d.deployment)))
            .collect();
        if !ids.is_empty() {
            let keys: Vec<String> = ids.iter().map(|(id, up)| names.key(up, id)).collect();
            let untils: Vec<Option<u64>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
            for ((id, up), until) in ids.iter().zip(untils) {
                if let Some(until_ms) = until {
                    router.apply_shared_cooldown(id, up, until_ms);
                }
            }
        }
    }
    drop(conn);
    connected.store(true, Ordering::Relaxed);
    outage.up();
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let Ok(payload) = msg.get_payload::<String>() else {
            continue;
        };
        let Ok(notice) = serde_json::from_str::<Notice>(&payload) else {
            tracing::debug!(channel = %names.channel, "ignored a malformed message");
            continue;
        };
        if notice.from == instance {
            continue;
        }
        let Some(router) = router.upgrade() else {
            return Ok(());
        };
        router.apply_shared_cooldown(&notice.deployment, &notice.upstream, notice.until_ms);
    }
    Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
}

impl ModelRouter {
    /// Applies a cooldown another instance reported for deployment `id`, when this table has
    /// that deployment calling the same upstream; lengthens, never shortens.
    pub(crate) fn apply_shared_cooldown(&self, id: &str, upstream: &str, until_ms: u64) {
        let Some(left) = remaining(until_ms) else {
            return;
        };
        let groups = self.groups();
        let Some(d) = groups.deployment(&crate::config::DeploymentId(id.to_owned())) else {
            return;
        };
        if upstream_of(&d.deployment) != upstream {
            return;
        }
        let until = tokio::time::Instant::now() + left;
        if d.cooldown.lock().cool_until(until) {
            self.metrics
                .shared_cooldowns
                .with_label_values(&[id, &d.deployment.model_name])
                .inc();
            tracing::warn!(deployment = %d.id(), cooldown_s = left.as_secs_f64(), "deployment cooling down, as another gateway instance reported");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;

    fn deployment(base: &str, key: &str) -> Deployment {
        let mut d = crate::providers::tests::deployment(ProviderKind::OpenAi, "m");
        d.api_base = Some(base.into());
        d.api_key = Some(key.to_owned().into());
        d
    }

    #[test]
    fn the_upstream_names_what_is_called_never_the_key() {
        let a = deployment("http://a/v1", "sk-one");
        assert_eq!(
            upstream_of(&a),
            upstream_of(&deployment("http://a/v1", "sk-two"))
        );
        assert_ne!(
            upstream_of(&a),
            upstream_of(&deployment("http://b/v1", "sk-one"))
        );
        assert_eq!(upstream_of(&a).len(), 24);
    }

    #[test]
    fn remaining_is_capped_and_over_once_past() {
        assert_eq!(remaining(now_ms().saturating_sub(1)), None);
        let left = remaining(now_ms() + 5_000).unwrap();
        assert!(left <= Duration::from_secs(5) && left > Duration::from_secs(4));
        assert_eq!(remaining(u64::MAX), Some(MAX_SHARED));
    }
}
