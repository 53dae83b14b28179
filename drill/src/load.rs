//! The load generator: an open model (fixed arrival schedule, `max_in_flight` cap, arrivals
//! over the cap counted as overflow and not sent, so a slow gateway cannot slow the schedule
//! down) or a closed model (N clients back to back). Sends OpenAI chat requests carrying the
//! correlation marker, classifies what each client saw, measures latency and time to first
//! byte. Knows nothing about mocks or verdicts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::Rng as _;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::scenario::{LoadModel, LoadSpec};

/// Stream bodies are read up to this size; the rest is drained uncounted.
const MAX_BODY: usize = 4 << 20;

/// What the client saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientOutcome {
    /// 200 with a complete answer (streams: `[DONE]` seen, no error event).
    Success,
    /// A non-200 status.
    HttpError,
    /// A 200 stream that ended with an in-band error event: an honest failure.
    StreamError,
    /// A 200 stream that ended cleanly without `[DONE]` or an error event: a truncated answer
    /// passed off as success.
    Truncated,
    /// A 200 whose body was not a chat completion.
    BadBody,
    /// Connection failed or broke mid-body.
    Transport,
    /// No complete answer within the request timeout.
    Timeout,
}

impl ClientOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientOutcome::Success => "success",
            ClientOutcome::HttpError => "http_error",
            ClientOutcome::StreamError => "stream_error",
            ClientOutcome::Truncated => "truncated",
            ClientOutcome::BadBody => "bad_body",
            ClientOutcome::Transport => "transport",
            ClientOutcome::Timeout => "timeout",
        }
    }
}

/// One client request and what came back.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub rid: String,
    pub profile: usize,
    /// Send time since the phase start.
    pub sent_ms: u64,
    pub latency_us: u64,
    /// Streams: time to the first body byte.
    pub ttft_us: Option<u64>,
    pub status: Option<u16>,
    pub outcome: ClientOutcome,
    pub stream: bool,
    /// The serving deployment the gateway claims (`x-switchyard-deployment` or
    /// `x-litellm-model-id`); a cross-check only.
    pub header_deployment: Option<String>,
}

/// A request profile ready to send.
#[derive(Debug, Clone)]
pub struct ReadyProfile {
    pub id: String,
    pub weight: f64,
    pub bearer: Option<String>,
    pub model: String,
    pub stream: bool,
    pub prompt_tokens: u32,
    pub max_tokens: Option<u32>,
}

/// Live counters for progress display.
#[derive(Debug, Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub overflow: AtomicU64,
    pub by_header: Mutex<BTreeMap<String, u64>>,
}

/// Everything shared by the requests of a run.
pub struct LoadCtx {
    pub client: reqwest::Client,
    /// `{base}/v1/chat/completions`.
    pub endpoint: String,
    pub profiles: Vec<ReadyProfile>,
    pub request_timeout: Duration,
    /// Prefix of every correlation id of this run.
    pub rid_prefix: String,
    pub live: Arc<Live>,
}

/// What one phase's load produced (the requests themselves went to the caller's channel as
/// they finished).
pub struct PhaseLoad {
    /// Arrivals dropped because `max_in_flight` requests were in flight.
    pub overflow: u64,
    /// Arrivals scheduled (open model) or requests started (closed model).
    pub scheduled: u64,
    /// Requests that finished (each was sent on the channel).
    pub finished: u64,
    /// Requests still running when the drain timed out or the run was stopped.
    pub abandoned: u64,
    /// Lateness of each send against its schedule, microseconds (open model).
    pub lag_us: Histogram<u64>,
    /// Time from the phase start to the last send.
    pub last_send: Duration,
    pub target_rate: Option<f64>,
}

/// Deterministic request sequence: profile choice by weight, from the run's seeded generator.
pub struct Sequencer {
    rng: ChaCha8Rng,
    next: u64,
    total_weight: f64,
}

impl Sequencer {
    pub fn new(rng: ChaCha8Rng, profiles: &[ReadyProfile]) -> Self {
        Self {
            rng,
            next: 0,
            total_weight: profiles.iter().map(|p| p.weight).sum(),
        }
    }

    /// The next request: (sequence number, profile index).
    pub fn next(&mut self, profiles: &[ReadyProfile]) -> (u64, usize) {
        let n = self.next;
        self.next += 1;
        let mut x = self.rng.gen::<f64>() * self.total_weight;
        let mut idx = profiles.len().saturating_sub(1);
        for (i, p) in profiles.iter().enumerate() {
            if x < p.weight {
                idx = i;
                break;
            }
            x -= p.weight;
        }
        (n, idx)
    }
}

/// The chat request body of request `n` of profile `p`.
pub fn request_body(p: &ReadyProfile, rid: &str) -> Vec<u8> {
    let mut text = format!("Drill request for profile {}. [drill:rid={rid}]", p.id);
    let want = p.prompt_tokens as usize * 4;
    while text.len() + 6 <= want {
        text.push_str(" rails");
    }
    let mut body = json!({
        "model": p.model,
        "messages": [{"role": "user", "content": text}],
    });
    if p.stream {
        body["stream"] = json!(true);
    }
    if let Some(m) = p.max_tokens {
        body["max_tokens"] = json!(m);
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A 1 µs .. 1 h histogram with 3 significant digits (send lag, latency, TTFT).
pub fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 h, 3 significant digits; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// Runs one phase's load for `duration`, stopping early on `cancel`. Each request is sent on
/// `tx` as it finishes (so nothing accumulates here); `tx` is dropped on return.
pub async fn run_phase(
    ctx: &Arc<LoadCtx>,
    phase_idx: usize,
    spec: &LoadSpec,
    duration: Duration,
    seq: &Arc<Mutex<Sequencer>>,
    cancel: &CancellationToken,
    tx: mpsc::UnboundedSender<RequestRecord>,
) -> PhaseLoad {
    let start = Instant::now();
    let end = start + duration;
    let finished = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    let mut lag = new_histogram();
    let mut overflow = 0u64;
    let mut scheduled = 0u64;
    let mut last_send = Duration::ZERO;
    let mut target_rate = None;

    match spec.model {
        LoadModel::Open => {
            let rate = spec.rate.0;
            target_rate = Some(rate);
            let interval = Duration::from_secs_f64(1.0 / rate);
            let permits = Arc::new(Semaphore::new(spec.max_in_flight as usize));
            let mut k: u32 = 0;
            loop {
                let due = start + interval.mul_f64(f64::from(k));
                if due >= end {
                    break;
                }
                let now = Instant::now();
                if due > now {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = cancel.cancelled() => break,
                    }
                }
                if cancel.is_cancelled() {
                    break;
                }
                let now = Instant::now();
                let _ = lag.record((now.saturating_duration_since(due).as_micros() as u64).max(1));
                k += 1;
                scheduled += 1;
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    overflow += 1;
                    ctx.live.overflow.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let (n, idx) = lock(seq).next(&ctx.profiles);
                last_send = now - start;
                let ctx2 = Arc::clone(ctx);
                let tx2 = tx.clone();
                let fin = Arc::clone(&finished);
                set.spawn(async move {
                    let rec = send(&ctx2, phase_idx, n, idx, start).await;
                    fin.fetch_add(1, Ordering::Relaxed);
                    let _ = tx2.send(rec);
                    drop(permit);
                });
                while set.try_join_next().is_some() {}
            }
        }
        LoadModel::Closed => {
            let started = Arc::new(AtomicU64::new(0));
            for _ in 0..spec.concurrency {
                let ctx2 = Arc::clone(ctx);
                let tx2 = tx.clone();
                let seq2 = Arc::clone(seq);
                let cancel2 = cancel.clone();
                let started2 = Arc::clone(&started);
                let fin = Arc::clone(&finished);
                set.spawn(async move {
                    while Instant::now() < end && !cancel2.is_cancelled() {
                        let (n, idx) = lock(&seq2).next(&ctx2.profiles);
                        started2.fetch_add(1, Ordering::Relaxed);
                        let rec = send(&ctx2, phase_idx, n, idx, start).await;
                        fin.fetch_add(1, Ordering::Relaxed);
                        let _ = tx2.send(rec);
                    }
                });
            }
            tokio::select! {
                () = tokio::time::sleep_until(end) => {}
                () = cancel.cancelled() => {}
            }
            scheduled = started.load(Ordering::Relaxed);
            last_send = duration;
        }
    }
    drop(tx);
    // Drain: every request gets its timeout (plus a margin) unless the run is stopped.
    let drain = ctx.request_timeout + Duration::from_secs(2);
    let drained = tokio::select! {
        r = tokio::time::timeout(drain, async { while set.join_next().await.is_some() {} }) => r.is_ok(),
        () = cancel.cancelled() => false,
    };
    if !drained {
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
    let finished = finished.load(Ordering::Relaxed);
    let abandoned = scheduled.saturating_sub(overflow + finished);
    PhaseLoad {
        finished,
        overflow,
        scheduled,
        abandoned,
        lag_us: lag,
        last_send,
        target_rate,
    }
}

fn lock(seq: &Mutex<Sequencer>) -> std::sync::MutexGuard<'_, Sequencer> {
    seq.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends request `n` (profile `idx`) and classifies the answer.
async fn send(
    ctx: &LoadCtx,
    phase_idx: usize,
    n: u64,
    idx: usize,
    phase_start: Instant,
) -> RequestRecord {
    let p = &ctx.profiles[idx];
    let rid = format!("{}-{phase_idx}-{n}", ctx.rid_prefix);
    let body = request_body(p, &rid);
    let t0 = Instant::now();
    let sent_ms = (t0 - phase_start).as_millis() as u64;
    ctx.live.sent.fetch_add(1, Ordering::Relaxed);
    let mut rec = RequestRecord {
        rid,
        profile: idx,
        sent_ms,
        latency_us: 0,
        ttft_us: None,
        status: None,
        outcome: ClientOutcome::Transport,
        stream: p.stream,
        header_deployment: None,
    };
    let fut = exchange(ctx, p, body, t0, &mut rec);
    if tokio::time::timeout(ctx.request_timeout, fut)
        .await
        .is_err()
    {
        rec.outcome = ClientOutcome::Timeout;
    }
    rec.latency_us = t0.elapsed().as_micros() as u64;
    if rec.outcome == ClientOutcome::Success {
        ctx.live.ok.fetch_add(1, Ordering::Relaxed);
    } else {
        ctx.live.failed.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(h) = &rec.header_deployment {
        if let Ok(mut m) = ctx.live.by_header.lock() {
            *m.entry(h.clone()).or_insert(0) += 1;
        }
    }
    rec
}

async fn exchange(
    ctx: &LoadCtx,
    p: &ReadyProfile,
    body: Vec<u8>,
    t0: Instant,
    rec: &mut RequestRecord,
) {
    let mut req = ctx
        .client
        .post(&ctx.endpoint)
        .header("content-type", "application/json")
        .body(body);
    if let Some(b) = &p.bearer {
        req = req.bearer_auth(b);
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(_) => {
            rec.outcome = ClientOutcome::Transport;
            return;
        }
    };
    let status = resp.status().as_u16();
    rec.status = Some(status);
    rec.header_deployment = ["x-switchyard-deployment", "x-litellm-model-id"]
        .iter()
        .find_map(|h| resp.headers().get(*h))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if rec.ttft_us.is_none() && !c.is_empty() {
                    rec.ttft_us = Some(t0.elapsed().as_micros() as u64);
                }
                if buf.len() < MAX_BODY {
                    buf.extend_from_slice(&c);
                }
            }
            Ok(None) => break,
            Err(_) => {
                rec.outcome = if status == 200 {
                    ClientOutcome::Transport
                } else {
                    ClientOutcome::HttpError
                };
                return;
            }
        }
    }
    rec.outcome = if status != 200 {
        ClientOutcome::HttpError
    } else if p.stream {
        classify_stream(&buf)
    } else {
        match serde_json::from_slice::<serde_json::Value>(&buf) {
            Ok(v) if v.get("choices").is_some_and(serde_json::Value::is_array) => {
                ClientOutcome::Success
            }
            _ => ClientOutcome::BadBody,
        }
    };
}

/// Classifies a complete 200 SSE body.
pub fn classify_stream(body: &[u8]) -> ClientOutcome {
    let text = String::from_utf8_lossy(body);
    let mut done = false;
    let mut error = false;
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let data = data.trim();
        if data == "[DONE]" {
            done = true;
        } else if data.contains("\"error\"") {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(data) {
                if v.get("error").is_some_and(|e| !e.is_null()) {
                    error = true;
                }
            }
        }
    }
    if error {
        ClientOutcome::StreamError
    } else if done {
        ClientOutcome::Success
    } else {
        ClientOutcome::Truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn profile(id: &str, weight: f64) -> ReadyProfile {
        ReadyProfile {
            id: id.into(),
            weight,
            bearer: None,
            model: "m".into(),
            stream: false,
            prompt_tokens: 100,
            max_tokens: None,
        }
    }

    #[test]
    fn streams_are_classified_by_terminator_and_error_events() {
        assert_eq!(
            classify_stream(b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n"),
            ClientOutcome::Success
        );
        assert_eq!(
            classify_stream(
                b"data: {\"choices\":[]}\n\ndata: {\"error\": {\"message\": \"x\"}}\n\n"
            ),
            ClientOutcome::StreamError
        );
        assert_eq!(
            classify_stream(b"data: {\"choices\":[]}\n\n"),
            ClientOutcome::Truncated
        );
    }

    #[test]
    fn same_seed_gives_the_same_request_sequence() {
        let profiles = vec![profile("a", 1.0), profile("b", 3.0)];
        let run = || {
            let mut s = Sequencer::new(ChaCha8Rng::seed_from_u64(7), &profiles);
            (0..200).map(|_| s.next(&profiles).1).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let b_share = a.iter().filter(|i| **i == 1).count() as f64 / 200.0;
        assert!((0.6..0.9).contains(&b_share), "{b_share}");
    }

    #[test]
    fn prompt_carries_marker_and_reaches_the_size() {
        let p = profile("a", 1.0);
        let body = String::from_utf8(request_body(&p, "r-0-1")).unwrap();
        assert!(body.contains("[drill:rid=r-0-1]"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let text = v["messages"][0]["content"].as_str().unwrap();
        assert!(text.len() > 390 && text.len() <= 400, "{}", text.len());
    }
}
