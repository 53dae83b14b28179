//! Load benchmark: the same chat requests sent directly to a fast single-threaded mock upstream
//! and through the gateway (master-key auth, routing and metrics on), in one run, so the result
//! is a ratio against a baseline measured under the same machine noise; the two alternate in
//! short phases. Then, per store (SQLite in memory; PostgreSQL when
//! `SWITCHYARD_TEST_POSTGRES_URL` is set), the virtual-key path (auth from the key cache,
//! rpm/tpm/parallel limits and a budget on, spend recorded and written in batches) against the
//! master-key path of the same gateway, phases alternating, each virtual phase ending when the
//! spend it recorded is stored.
//!
//! Run: `cargo bench -p switchyard --bench proxy_load` (env `LOAD_SECS`, default 5 per phase;
//! `LOAD_ONLY=master|virtual` runs that one phase alone, for profiling, on SQLite or with
//! `LOAD_STORE=postgres` on PostgreSQL, at `LOAD_CONNS` connections, default 16).
//! Prints throughput at 16 connections and p50/p99 at 1 and 16 connections, direct vs gateway,
//! and the virtual-key/master-key throughput ratio per store (target >= 90%).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchyard::config::{Config, Deployment, DeploymentId, ModelInfo, ProviderKind};
use switchyard::{AppState, StateOptions};
use tokio::time::Instant;

/// The allocator the `switchyard` binary ships with (it applies to the whole process, so the
/// direct baseline uses it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MASTER_KEY: &str = "sk-bench-master-key";
const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, this is a benchmark answer."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}"#;
const REQUEST: &str = r#"{"model":"bench","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in one sentence."}],"max_tokens":32}"#;

/// A fast upstream on its own single-threaded runtime (its own OS thread).
fn start_mock() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(COMPLETION.as_bytes())))
                                .expect("response"),
                        )
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().expect("mock address")
}

/// The gateway on a 2-worker runtime (the machine has 2 cores), with `store` when given: its
/// address, and its state (to flush recorded spend between phases).
fn start_gateway(upstream: SocketAddr, database_url: Option<String>) -> (SocketAddr, AppState) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let deployment = Deployment {
                id: DeploymentId("bench-1".into()),
                model_name: "bench".into(),
                provider: ProviderKind::OpenAi,
                upstream_model: "m".into(),
                api_base: Some(format!("http://{upstream}/v1")),
                api_key: Some("sk-upstream".to_string().into()),
                api_version: None,
                timeout: None,
                stream_timeout: None,
                rpm: None,
                tpm: None,
                weight: None,
                order: None,
                max_parallel_requests: None,
                region_name: None,
                cooldown_time: None,
                // Priced, so every virtual-key request records a non-zero spend.
                info: ModelInfo {
                    input_cost_per_token: Some(0.000_001),
                    output_cost_per_token: Some(0.000_002),
                    ..ModelInfo::default()
                },
            };
            let config = Config {
                model_list: vec![deployment],
                ..Default::default()
            };
            let store = match database_url {
                Some(url) => Some(switchyard::store::connect(&url).await.expect("store")),
                None => None,
            };
            let state = AppState::new(
                config,
                StateOptions {
                    master_key: Some(MASTER_KEY.to_string().into()),
                    no_jitter: false,
                    store,
                },
            );
            // As `serve` does: runtime settings and models first, and the store's change
            // version with them (otherwise the watcher reloads once, mid-measurement).
            state.load_runtime().await.expect("load runtime state");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send((listener.local_addr().expect("addr"), state.clone()))
                .expect("send");
            switchyard::serve(
                listener,
                state,
                std::future::pending(),
                Duration::from_secs(1),
            )
            .await
            .expect("serve");
        });
    });
    rx.recv().expect("gateway address")
}

/// Mints a virtual key with every limit and a budget on (all far above what a run reaches).
fn generate_key(gateway: SocketAddr) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let body = r#"{"key_alias":"bench","models":["bench"],"rpm_limit":100000000,"tpm_limit":100000000000,"max_parallel_requests":100000,"max_budget":1000000,"budget_duration":"30d"}"#;
        let req = Request::post(format!("http://{gateway}/key/generate"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {MASTER_KEY}"))
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request");
        let resp = client.request(req).await.expect("generate");
        assert!(resp.status().is_success(), "key/generate: {}", resp.status());
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        v["key"].as_str().expect("key").to_string()
    })
}

/// A fresh PostgreSQL schema for one run; its URL and a guard that drops it.
fn postgres_schema(url: &str) -> (String, impl FnOnce()) {
    use sqlx::Executor;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let schema = format!("sy_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = rt.block_on(async {
        let admin = sqlx::PgPool::connect(url).await.expect("postgres");
        admin
            .execute(format!("CREATE SCHEMA \"{schema}\"").as_str())
            .await
            .expect("create schema");
        admin
    });
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    let drop = move || {
        rt.block_on(async {
            let _ = admin
                .execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
                .await;
        });
    };
    (scoped, drop)
}

struct Result {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
}

impl Result {
    fn empty() -> Self {
        Result {
            requests: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            hist: histogram(),
        }
    }

    /// Adds another phase of the same path: counts, time and latencies.
    fn add(&mut self, other: Result) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.hist.add(other.hist).expect("merge");
    }
}

/// Latencies in microseconds, 1 µs to 60 s, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram")
}

/// One load-generator thread, `conns` keep-alive connections, for `secs`, with `token`.
fn drive(addr: SocketAddr, token: &str, conns: usize, secs: u64) -> Result {
    let bearer = format!("Bearer {token}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(conns)
            .build_http();
        let client = Arc::new(client);
        let uri: hyper::Uri = format!("http://{addr}/v1/chat/completions")
            .parse()
            .expect("uri");
        // Warm up connections.
        let deadline = Instant::now() + Duration::from_secs(secs);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let client = Arc::clone(&client);
            let uri = uri.clone();
            let bearer = bearer.clone();
            tasks.push(tokio::spawn(async move {
                let mut hist = histogram();
                let (mut n, mut errors) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let req = Request::post(uri.clone())
                        .header("content-type", "application/json")
                        .header("authorization", bearer.as_str())
                        .body(Full::new(Bytes::from_static(REQUEST.as_bytes())))
                        .expect("request");
                    let t = Instant::now();
                    match client.request(req).await {
                        Ok(resp) => {
                            let ok = resp.status().is_success();
                            let _ = resp.into_body().collect().await;
                            if ok {
                                n += 1;
                                hist.record(t.elapsed().as_micros() as u64).ok();
                            } else {
                                errors += 1;
                            }
                        }
                        Err(_) => errors += 1,
                    }
                }
                (n, errors, hist)
            }));
        }
        let mut hist = histogram();
        let (mut requests, mut errors) = (0, 0);
        for t in tasks {
            let (n, e, h) = t.await.expect("task");
            requests += n;
            errors += e;
            hist.add(h).expect("merge");
        }
        Result {
            requests,
            errors,
            elapsed: started.elapsed(),
            hist,
        }
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench --list compatibility
    }
    let secs: u64 = std::env::var("LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .clamp(1, 60);
    let mock = start_mock();
    // One phase alone, for a profiler (e.g. `valgrind --tool=callgrind --separate-threads=yes`):
    // `LOAD_ONLY=master|virtual` drives a SQLite gateway at 16 connections (`LOAD_CONNS`) with
    // that key.
    // `LOAD_STORE=postgres` puts that gateway on PostgreSQL (`SWITCHYARD_TEST_POSTGRES_URL`).
    if let Ok(only) = std::env::var("LOAD_ONLY") {
        let (url, drop) = match std::env::var("LOAD_STORE").as_deref() {
            Ok("postgres") => {
                let url = std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
                    .expect("LOAD_STORE=postgres needs SWITCHYARD_TEST_POSTGRES_URL");
                let (scoped, drop) = postgres_schema(&url);
                (scoped, Some(drop))
            }
            Ok("sqlite") | Err(_) => ("sqlite::memory:".to_string(), None),
            Ok(other) => panic!("LOAD_STORE must be sqlite or postgres, not {other}"),
        };
        let (gateway, _) = start_gateway(mock, Some(url));
        let token = match only.as_str() {
            "master" => MASTER_KEY.to_string(),
            "virtual" => generate_key(gateway),
            other => panic!("LOAD_ONLY must be master or virtual, not {other}"),
        };
        let conns = std::env::var("LOAD_CONNS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(16)
            .clamp(1, 256);
        let r = drive(gateway, &token, conns, secs);
        row(&format!("{only} c={conns}"), &r);
        if let Some(drop) = drop {
            drop();
        }
        return;
    }
    let (gateway, _) = start_gateway(mock, None);
    // Short warm-up of both paths.
    drive(mock, MASTER_KEY, 4, 1);
    drive(gateway, MASTER_KEY, 4, 1);

    // Direct and gateway alternate in one-second phases (the order flips every round), so a
    // slow stretch of this shared machine lands on both paths alike.
    let compare = |conns| {
        let (mut direct, mut through) = (Result::empty(), Result::empty());
        for round in 0..secs {
            let (d, g) = alternating(
                round,
                || drive(mock, MASTER_KEY, conns, 1),
                || drive(gateway, MASTER_KEY, conns, 1),
            );
            direct.add(d);
            through.add(g);
        }
        (direct, through)
    };
    let (d1, g1) = compare(1);
    let (d16, g16) = compare(16);
    println!("phase            requests  errors      rps    p50 ms   p99 ms");
    for (name, r) in [
        ("direct  c=1", &d1),
        ("gateway c=1", &g1),
        ("direct  c=16", &d16),
        ("gateway c=16", &g16),
    ] {
        row(name, r);
    }
    println!();
    println!(
        "throughput ratio gateway/direct at c=16: {:.1}%  (target >= 30%)",
        100.0 * rps(&g16) / rps(&d16)
    );
    println!(
        "added p50 at c=1:  {:.3} ms  (target <= 0.15 ms)",
        ms(g1.hist.value_at_quantile(0.5)) - ms(d1.hist.value_at_quantile(0.5))
    );
    println!(
        "added p99 at c=16: {:.3} ms  (target <= 1 ms)",
        ms(g16.hist.value_at_quantile(0.99)) - ms(d16.hist.value_at_quantile(0.99))
    );

    // Virtual key vs master key, per store, on one gateway: `LOAD_SECS` rounds of a two-second
    // phase each (order flipping every round). After each virtual phase the gateway's spend
    // queue is flushed and the flush counts as that phase's time, so the store work for its
    // requests is paid inside it, never by the master phase after it. (During the flush only
    // the writer and the store work, so this errs against the virtual key by up to the flush's
    // share of the phase: about 1%.)
    let mut stores = vec![("sqlite", "sqlite::memory:".to_string(), None)];
    match std::env::var("SWITCHYARD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            let (scoped, drop) = postgres_schema(&url);
            stores.push(("postgres", scoped, Some(drop)));
        }
        _ => println!("\npostgres: skipped (SWITCHYARD_TEST_POSTGRES_URL not set)"),
    }
    for (backend, url, drop) in stores {
        let (gateway, state) = start_gateway(mock, Some(url));
        let key = generate_key(gateway);
        drive(gateway, MASTER_KEY, 4, 1);
        drive(gateway, &key, 4, 1);
        flush_spend(&state);
        let (mut master, mut virt) = (Result::empty(), Result::empty());
        let mut pair_ratios = Vec::new();
        let mut flushing = Duration::ZERO;
        for round in 0..secs {
            let (m, v) = alternating(
                round,
                || drive(gateway, MASTER_KEY, 16, 2),
                || {
                    let mut r = drive(gateway, &key, 16, 2);
                    let flush = flush_spend(&state);
                    flushing += flush;
                    r.elapsed += flush;
                    r
                },
            );
            pair_ratios.push(rps(&v) / rps(&m));
            master.add(m);
            virt.add(v);
        }
        pair_ratios.sort_by(f64::total_cmp);
        println!();
        println!("{backend}: phase        requests  errors      rps    p50 ms   p99 ms");
        row("master  c=16", &master);
        row("virtual c=16", &virt);
        println!(
            "{backend}: throughput ratio virtual/master at c=16: {:.1}%  (target >= 90%); \
             per round: median {:.1}%, range {:.1}%..{:.1}%",
            100.0 * rps(&virt) / rps(&master),
            100.0 * pair_ratios[pair_ratios.len() / 2],
            100.0 * pair_ratios[0],
            100.0 * pair_ratios[pair_ratios.len() - 1],
        );
        println!(
            "{backend}: final spend flushes took {:.0} ms, {:.1}% of the virtual phases' time",
            flushing.as_secs_f64() * 1000.0,
            100.0 * flushing.as_secs_f64() / virt.elapsed.as_secs_f64()
        );
        if let Some(drop) = drop {
            drop();
        }
    }
}

/// Runs both phases of a round, `a` first in even rounds and `b` first in odd ones.
fn alternating<A, B>(round: u64, a: impl FnOnce() -> A, b: impl FnOnce() -> B) -> (A, B) {
    if round % 2 == 0 {
        let a = a();
        (a, b())
    } else {
        let b = b();
        (a(), b)
    }
}

/// Waits until the gateway has written every spend entry recorded so far; how long that took.
fn flush_spend(state: &AppState) -> Duration {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let flushed = rt.block_on(state.flush_spend(Duration::from_secs(60)));
    assert!(flushed, "spend flush did not finish within 60 s");
    started.elapsed()
}

fn rps(r: &Result) -> f64 {
    r.requests as f64 / r.elapsed.as_secs_f64()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn row(name: &str, r: &Result) {
    println!(
        "{name:<15} {:>9} {:>7} {:>8.0} {:>9.3} {:>8.3}",
        r.requests,
        r.errors,
        rps(r),
        ms(r.hist.value_at_quantile(0.5)),
        ms(r.hist.value_at_quantile(0.99))
    );
}
