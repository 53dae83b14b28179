//! Bounded load measurement: how many requests per second one mock
//! deployment serves with no faults and the journal on.
//!
//! ```text
//! cargo run --release -p mock-providers --example load -- --seconds 5 --connections 64
//! cargo run --release -p mock-providers --example load -- --dialect anthropic --stream
//! cargo run --release -p mock-providers --example load -- --addr 127.0.0.1:PORT   # an external mock
//! ```
//!
//! The server runs in-process on a 2-worker Tokio runtime (the target machine
//! has 2 cores); the load generator is ONE thread driving `--connections`
//! keep-alive HTTP/1.1 connections over raw TCP (so the client costs little
//! CPU). Every request carries a unique `[drill:rid=...]` marker. The run
//! is bounded by `--seconds` and `--max-requests`; at the end the journal is
//! checked to hold every request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mock_providers::{DeploymentSpec, Dialect, MockServer, MockSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Measure the request rate of one mock deployment.
#[derive(Debug, Parser)]
struct Args {
    /// Measurement length in seconds (after a 1 s warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent keep-alive connections driven by the single client thread.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Stop after this many requests even if time is left.
    #[arg(long, default_value_t = 5_000_000)]
    max_requests: u64,
    /// openai | azure | anthropic
    #[arg(long, default_value = "openai")]
    dialect: String,
    /// Streaming requests (SSE) instead of plain JSON.
    #[arg(long)]
    stream: bool,
    /// Output tokens per answer.
    #[arg(long, default_value_t = 16)]
    output_tokens: u32,
    /// Drive an already running mock (e.g. the binary) instead of an in-process one.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Server worker threads for the in-process mock.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
}

fn request(dialect: Dialect, stream: bool, rid: u64) -> Vec<u8> {
    let text = format!("Where does the night mail stop? [drill:rid=load-{rid:012}]");
    let (path, body, extra) = match dialect {
        Dialect::Openai => (
            "/v1/chat/completions",
            format!(
                r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{text}"}}],"stream":{stream}}}"#
            ),
            "",
        ),
        Dialect::Azure => (
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            format!(r#"{{"messages":[{{"role":"user","content":"{text}"}}],"stream":{stream}}}"#),
            "",
        ),
        Dialect::Anthropic => (
            "/v1/messages",
            format!(
                r#"{{"model":"claude-sonnet-4","max_tokens":256,"messages":[{{"role":"user","content":"{text}"}}],"stream":{stream}}}"#
            ),
            "anthropic-version: 2023-06-01\r\n",
        ),
    };
    format!(
        "POST {path} HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Reads one response (content-length or chunked) from `buf`/`stream`.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let mut tmp = [0u8; 16 * 1024];
    loop {
        if let Some(head_end) = find(buf, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..head_end])
                .unwrap()
                .to_ascii_lowercase();
            let status: u16 = head[9..12].parse().unwrap();
            if let Some(i) = head.find("content-length: ") {
                let len: usize = head[i + 16..]
                    .split("\r\n")
                    .next()
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                while buf.len() < head_end + 4 + len {
                    let n = stream.read(&mut tmp).await?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    buf.extend_from_slice(&tmp[..n]);
                }
                buf.drain(..head_end + 4 + len);
                return Ok(status);
            }
            // Chunked: wait for the terminator.
            loop {
                if let Some(end) = find(&buf[head_end..], b"\r\n0\r\n\r\n") {
                    buf.drain(..head_end + end + 7);
                    return Ok(status);
                }
                let n = stream.read(&mut tmp).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&tmp[..n]);
            }
        }
        let n = stream.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    measuring: AtomicBool,
    measured: AtomicU64,
    stop: AtomicBool,
}

async fn connection(
    addr: SocketAddr,
    dialect: Dialect,
    stream_mode: bool,
    c: Arc<Counters>,
    max: u64,
    lat: Arc<parking_lot::Mutex<Vec<u32>>>,
) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::with_capacity(32 * 1024);
    let mut local_lat = Vec::with_capacity(1 << 16);
    while !c.stop.load(Ordering::Relaxed) {
        let rid = c.sent.fetch_add(1, Ordering::Relaxed);
        if rid >= max {
            break;
        }
        let req = request(dialect, stream_mode, rid);
        let t0 = Instant::now();
        if stream.write_all(&req).await.is_err() {
            c.errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
        match read_response(&mut stream, &mut buf).await {
            Ok(200) => {
                c.ok.fetch_add(1, Ordering::Relaxed);
                if c.measuring.load(Ordering::Relaxed) {
                    c.measured.fetch_add(1, Ordering::Relaxed);
                    if local_lat.len() < (1 << 20) {
                        local_lat.push(t0.elapsed().as_micros() as u32);
                    }
                }
            }
            Ok(_) | Err(_) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    lat.lock().extend(local_lat);
}

fn main() {
    let args = Args::parse();
    let dialect = match args.dialect.as_str() {
        "openai" => Dialect::Openai,
        "azure" => Dialect::Azure,
        "anthropic" => Dialect::Anthropic,
        other => panic!("unknown dialect {other}"),
    };
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads)
        .enable_all()
        .build()
        .unwrap();
    let (server, addr) = match args.addr {
        Some(a) => (None, a),
        None => {
            let mut d = DeploymentSpec::new("load", dialect);
            d.baseline.output_tokens = args.output_tokens;
            let mut spec = MockSpec::new(42, vec![d]);
            spec.journal_capacity = 1_000_000;
            let server = server_rt.block_on(MockServer::start(spec)).unwrap();
            let addr = server.addr("load").unwrap();
            (Some(server), addr)
        }
    };

    let counters = Arc::new(Counters {
        sent: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        measured: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let lat = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seconds = args.seconds;
    let conns = args.connections;
    let max = args.max_requests;
    let stream_mode = args.stream;
    let c = counters.clone();
    let l = lat.clone();
    // ONE load-generator thread.
    let client = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..conns {
                tasks.spawn(connection(
                    addr,
                    dialect,
                    stream_mode,
                    c.clone(),
                    max,
                    l.clone(),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
            let t0 = Instant::now();
            c.measuring.store(true, Ordering::Relaxed);
            let deadline = tokio::time::sleep(Duration::from_secs(seconds));
            tokio::pin!(deadline);
            tokio::select! {
                () = &mut deadline => {}
                () = async { while tasks.join_next().await.is_some() {} } => {}
            }
            c.measuring.store(false, Ordering::Relaxed);
            let elapsed = t0.elapsed();
            c.stop.store(true, Ordering::Relaxed);
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            elapsed
        })
    });
    let elapsed = client.join().unwrap();
    let measured = counters.measured.load(Ordering::Relaxed);
    let rps = measured as f64 / elapsed.as_secs_f64();
    let mut lat = lat.lock().clone();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "dialect={} stream={} connections={} server_threads={} client_threads=1",
        args.dialect, args.stream, args.connections, args.server_threads
    );
    println!(
        "measured {measured} requests in {:.2}s: {rps:.0} req/s; latency p50 {}us p99 {}us max {}us; errors {}",
        elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or(0),
        counters.errors.load(Ordering::Relaxed)
    );
    if let Some(server) = server {
        let ok = counters.ok.load(Ordering::Relaxed);
        let within = Duration::from_secs(10);
        let all_journaled = server_rt.block_on(server.wait_for_completed("load", ok, within));
        let stats = server.stats();
        let s = stats.deployment("load").unwrap();
        let journal = server.journal_of("load", 0).unwrap();
        let with_ids = journal
            .entries
            .iter()
            .filter(|e| e.correlation_id.is_some())
            .count();
        println!(
            "journal: {} entries ({} with correlation ids, {} dropped); stats: {} requests, {} completed; all journaled: {all_journaled}",
            journal.entries.len(),
            with_ids,
            journal.dropped,
            s.requests,
            s.completed
        );
        server_rt.block_on(server.shutdown());
    }
}
