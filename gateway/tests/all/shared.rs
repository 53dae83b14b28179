//! What gateway instances share through Redis (`router_settings.redis_*`): cooldowns and key
//! rpm counts, on the local Redis (127.0.0.1:6379). Without it these tests print a `skipped`
//! line, and fail under `CI=true` (where `.ci/run` starts it). Deployments are told apart by
//! their upstream (every wiremock server has its own port) and keys by their random public id,
//! so parallel tests never see each other's state.

use std::time::Duration;

use serde_json::Value;
use switchyard::config::{Config, Deployment, DeploymentId, RedisConfig, RouterSettings, Seconds};
use tokio::time::Instant;
use wiremock::MockServer;

use crate::harness::*;

const REDIS: &str = "127.0.0.1:6379";

/// Whether the local Redis answers; `false` prints the skip (or fails under CI).
async fn redis_available() -> bool {
    let up = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(REDIS),
    )
    .await
    .is_ok_and(|c| c.is_ok());
    if !up {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("Redis is not running on {REDIS}; .ci/run starts it");
        }
        eprintln!("skipped: redis (nothing answers on {REDIS})");
    }
    up
}

/// Group `g`: `p1` on `bad` tried first (order 1), `p2` on `good` after it. One failure cools a
/// deployment down for 30 s when `allowed_fails` is 0; with a high one, only a shared
/// cooldown does.
fn cfg(bad: &MockServer, good: &MockServer, allowed_fails: u32, redis: &str) -> Config {
    let mut p1 = openai("p1", "g", bad);
    p1.order = Some(1);
    let mut p2 = openai("p2", "g", good);
    p2.order = Some(2);
    let mut c = config(
        vec![p1, p2],
        RouterSettings {
            num_retries: Some(0),
            allowed_fails: Some(allowed_fails),
            cooldown_time: Some(Seconds(Duration::from_secs(30))),
            ..Default::default()
        },
    );
    c.redis = Some(RedisConfig::url(&format!("redis://{redis}/0")));
    c
}

fn p1(gw: &Gateway) -> std::sync::Arc<switchyard::router::groups::DeploymentState> {
    let groups = gw.state.router.groups();
    groups
        .deployment(&DeploymentId("p1".into()))
        .expect("p1")
        .clone()
}

fn cooling(gw: &Gateway) -> bool {
    p1(gw).cooldown_remaining(Instant::now()).is_some()
}

/// Waits (at most 5 s) until `p1` cools down on `gw`.
async fn until_cooling(gw: &Gateway) -> bool {
    until_cooling_within(gw, Duration::from_secs(5)).await
}

async fn until_cooling_within(gw: &Gateway, limit: Duration) -> bool {
    eventually(limit, || async { cooling(gw) }).await
}

async fn ready(gw: &Gateway) -> Value {
    reqwest::get(format!("{}/health/readiness", gw.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits (at most 5 s) until `gw` has reached Redis.
async fn until_connected(gw: &Gateway) {
    until_redis(gw, "connected", Duration::from_secs(5)).await
}

fn upstream_id(d: &Deployment) -> String {
    switchyard::router::shared::upstream_of(d)
}

#[tokio::test]
async fn a_cooldown_entered_on_one_instance_holds_on_the_others() {
    if !redis_available().await {
        return;
    }
    let bad = upstream_failing().await;
    let good = ok_upstream("from p2").await;
    // `one` cools p1 down at its first failure; `two` never would on its own.
    let one = start(cfg(&bad, &good, 0, REDIS), None).await;
    let two = start(cfg(&bad, &good, 100, REDIS), None).await;
    until_connected(&one).await;
    until_connected(&two).await;

    let r = post(&one, &chat_body("g")).await;
    assert_eq!(r.status(), 500);
    assert!(cooling(&one));
    assert!(
        until_cooling(&two).await,
        "the cooldown never reached the other instance"
    );
    assert_eq!(calls(&bad).await, 1);
    // `two` serves from p2 without calling p1 at all.
    let r = post(&two, &chat_body("g")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-deployment"), "p2");
    assert_eq!(calls(&bad).await, 1, "p1 was called although cooling down");
    let metrics = metrics_text(&two).await;
    assert!(
        metrics.contains(r#"switchyard_shared_cooldowns_total{deployment="p1",model_group="g"} 1"#),
        "{metrics}"
    );

    // An instance that starts later learns the running cooldown from Redis, with no request.
    let three = start(cfg(&bad, &good, 100, REDIS), None).await;
    assert!(
        until_cooling(&three).await,
        "a later instance missed the running cooldown"
    );
    let left = p1(&three).cooldown_remaining(Instant::now()).unwrap();
    assert!(
        left > Duration::from_secs(20) && left <= Duration::from_secs(30),
        "{left:?}"
    );

    // A deployment of the same id calling another upstream is a different deployment.
    let elsewhere = upstream_failing().await;
    let other = start(cfg(&elsewhere, &good, 100, REDIS), None).await;
    until_connected(&other).await;
    assert_ne!(
        upstream_id(&p1(&other).deployment),
        upstream_id(&p1(&one).deployment)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!cooling(&other), "a cooldown crossed to another upstream");
}

// `redis_namespace` keeps clusters apart on one Redis (prod and staging calling the same
// upstream with different API keys should not cool each other down).
#[tokio::test]
async fn clusters_in_different_namespaces_share_nothing() {
    if !redis_available().await {
        return;
    }
    let bad = upstream_failing().await;
    let good = ok_upstream("from p2").await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let in_ns = |allowed_fails: u32, ns: &str| {
        let mut c = cfg(&bad, &good, allowed_fails, REDIS);
        c.redis.as_mut().unwrap().namespace = format!("{ns}-{run}");
        c
    };
    let prod = start(in_ns(0, "prod"), None).await;
    let prod_two = start(in_ns(100, "prod"), None).await;
    let staging = start(in_ns(100, "staging"), None).await;
    for gw in [&prod, &prod_two, &staging] {
        until_connected(gw).await;
    }
    assert_eq!(post(&prod, &chat_body("g")).await.status(), 500);
    assert!(until_cooling(&prod_two).await, "same namespace: shared");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!cooling(&staging), "another namespace saw the cooldown");
}

#[tokio::test]
async fn an_unreachable_redis_degrades_readiness_and_requests_still_serve() {
    let bad = upstream_failing().await;
    let good = ok_upstream("from p2").await;
    // Nothing listens on port 1.
    let gw = start(cfg(&bad, &good, 0, "127.0.0.1:1"), None).await;
    until_redis(&gw, "disconnected", Duration::from_secs(5)).await;
    let r = ready(&gw).await;
    assert_eq!(r["status"], "degraded", "{r}");
    // Cooldowns still work per instance, and requests are served.
    assert_eq!(post(&gw, &chat_body("g")).await.status(), 500);
    let r = post(&gw, &chat_body("g")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchyard-deployment"), "p2");
}

/// A deployment that always answers 500.
async fn upstream_failing() -> MockServer {
    upstream(openai_error(500, "api_error", None, "p1 is down")).await
}

/// Waits until the wall clock is at most 40 s into its minute, so a test's counts fall in one
/// minute (shared counts are per wall-clock minute).
async fn early_in_a_minute() {
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if into > 40 {
        tokio::time::sleep(Duration::from_secs(61 - into)).await;
    }
}

// A key's rpm_limit holds across instances: each admits on every instance's count of the
// minute as Redis last returned it, plus its own since (synced every 200 ms).
#[tokio::test]
async fn a_keys_rpm_limit_holds_across_instances() {
    if !redis_available().await {
        return;
    }
    let (stores, pg) = crate::keys::stores().await;
    for (backend, store) in stores {
        let bad = upstream_failing().await;
        let good = ok_upstream("from p2").await;
        // p2 only, so every request is served.
        let mut c = cfg(&bad, &good, 0, REDIS);
        c.model_list.remove(0);
        let master = crate::keys::MASTER;
        let one = start_with_store(c.clone(), Some(master), Some(store.clone())).await;
        let two = start_with_store(c, Some(master), Some(store)).await;
        early_in_a_minute().await;
        let key = crate::keys::generate(&one, serde_json::json!({"rpm_limit": 4})).await;
        let sync = switchyard::keys::shared_limits::SYNC_EVERY * 3;

        for _ in 0..2 {
            assert_eq!(crate::keys::chat(&one, &key, "g").await.0, 200, "{backend}");
        }
        tokio::time::sleep(sync).await;
        assert_eq!(crate::keys::chat(&two, &key, "g").await.0, 200, "{backend}");
        tokio::time::sleep(sync).await;
        // `two` has counted 1 itself; Redis says 3: one more, then the limit.
        assert_eq!(crate::keys::chat(&two, &key, "g").await.0, 200, "{backend}");
        let r = crate::keys::client()
            .post(format!("{}/v1/chat/completions", two.url))
            .bearer_auth(&key)
            .json(&chat_body("g"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{backend}: two admitted a 5th request");
        let wait: u64 = header(&r, "retry-after").parse().unwrap();
        assert!((1..=60).contains(&wait), "{backend}: {wait}");
        assert_eq!(calls(&good).await, 4, "{backend}");
    }
    crate::keys::drop_schema(pg).await;
}

/// A `redis-server` of the test's own on a free port, killed on drop; `None` when the binary
/// is missing (skipped, or failed under CI).
async fn own_redis(port: u16) -> Option<tokio::process::Child> {
    let child = tokio::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(child) = child else {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("redis-server is not installed; .ci/run needs it");
        }
        eprintln!("skipped: redis (no redis-server binary to start)");
        return None;
    };
    let listening = eventually(Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(listening, "redis-server did not start");
    Some(child)
}

/// Waits (at most `limit`) until readiness reports `redis` as `want`.
async fn until_redis(gw: &Gateway, want: &str, limit: Duration) {
    let reached = eventually(limit, || async { ready(gw).await["redis"] == want }).await;
    assert!(reached, "redis never {want}: {}", ready(gw).await);
}

// Redis going away shows in readiness at once (the subscription drops), requests keep being
// served, and when it is back the gateway reconnects by itself and shares again.
#[tokio::test]
async fn readiness_follows_redis_going_away_and_coming_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Some(mut server) = own_redis(port).await else {
        return;
    };
    let bad = upstream_failing().await;
    let good = ok_upstream("from p2").await;
    let at = format!("127.0.0.1:{port}");
    let one = start(cfg(&bad, &good, 0, &at), None).await;
    let two = start(cfg(&bad, &good, 100, &at), None).await;
    until_connected(&one).await;
    until_connected(&two).await;

    server.kill().await.unwrap();
    until_redis(&one, "disconnected", Duration::from_secs(5)).await;
    assert_eq!(ready(&one).await["status"], "degraded");
    // Alone, `one` still cools p1 down and serves from p2.
    assert_eq!(post(&one, &chat_body("g")).await.status(), 500);
    let r = post(&one, &chat_body("g")).await;
    assert_eq!(
        (r.status().as_u16(), header(&r, "x-switchyard-deployment")),
        (200, "p2")
    );

    // Back (empty), both reconnect within the backoff, and the cooldown `one` entered while
    // alone, still running, is published then and reaches `two`.
    assert!(!cooling(&two));
    let _server = own_redis(port).await.unwrap();
    until_redis(&one, "connected", Duration::from_secs(20)).await;
    until_redis(&two, "connected", Duration::from_secs(20)).await;
    // (`one`'s publisher may still be in its backoff: up to a few seconds here.)
    assert!(
        until_cooling_within(&two, Duration::from_secs(20)).await,
        "the cooldown entered during the outage never reached the other instance"
    );
}
