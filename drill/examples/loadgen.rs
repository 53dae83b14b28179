//! Load-generator benchmark: the drill's open-model generator against one fast in-process
//! OpenAI mock (no delay, journal on), reporting achieved rate and schedule lag.
//!
//!   cargo run --release -p drill --example loadgen -- --rate 2000 --seconds 10
//!
//! Schedule lag is how late sends leave against their fixed arrival schedule; the run passes
//! when every scheduled arrival was sent (no overflow), the achieved rate is within 1% of the
//! target and the worst lag is under 1% of the run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use drill::load::{run_phase, LoadCtx, ReadyProfile, Sequencer};
use drill::scenario::{LoadModel, LoadSpec, Rate};
use mock_providers::{Baseline, DeploymentSpec, Dialect, MockServer, MockSpec};
use rand::SeedableRng as _;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// Arrivals per second.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Length of the run, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// In-flight cap.
    #[arg(long, default_value_t = 512)]
    max_in_flight: u32,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()?;
    rt.block_on(bench(args))
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let mut d = DeploymentSpec::new("fast", Dialect::Openai);
    d.baseline = Baseline {
        output_tokens: 8,
        ..Baseline::default()
    };
    let mut spec = MockSpec::new(1, vec![d]);
    spec.journal_capacity = 10_000;
    let mock = MockServer::start(spec).await?;
    let profiles = vec![ReadyProfile {
        id: "chat".into(),
        weight: 1.0,
        bearer: None,
        model: "gpt-4o".into(),
        stream: false,
        prompt_tokens: 16,
        max_tokens: None,
    }];
    let ctx = Arc::new(LoadCtx {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .build()?,
        endpoint: format!("{}/v1/chat/completions", mock.base_url("fast")),
        profiles: profiles.clone(),
        request_timeout: Duration::from_secs(10),
        rid_prefix: "bench".into(),
        live: Arc::default(),
    });
    let seq = Arc::new(Mutex::new(Sequencer::new(
        rand_chacha::ChaCha8Rng::seed_from_u64(1),
        &profiles,
    )));
    let load = LoadSpec {
        model: LoadModel::Open,
        rate: Rate(args.rate),
        max_in_flight: args.max_in_flight,
        concurrency: 1,
    };
    let duration = Duration::from_secs(args.seconds);
    // Requests are counted as they finish and dropped: memory does not grow with --seconds.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<drill::load::RequestRecord>();
    let counter = tokio::spawn(async move {
        let mut ok = 0usize;
        while let Some(r) = rx.recv().await {
            if r.outcome == drill::load::ClientOutcome::Success {
                ok += 1;
            }
        }
        ok
    });
    let pl = run_phase(
        &ctx,
        0,
        &load,
        duration,
        &seq,
        &CancellationToken::new(),
        tx,
    )
    .await;
    let ok = counter.await?;
    let sent = pl.finished as usize;
    let achieved = sent as f64 / duration.as_secs_f64();
    let q = |x: f64| pl.lag_us.value_at_quantile(x) as f64 / 1000.0;
    let max_lag_ms = pl.lag_us.max() as f64 / 1000.0;
    let lag_pct = max_lag_ms / (duration.as_secs_f64() * 1000.0) * 100.0;
    let rate_err = (achieved - args.rate).abs() / args.rate * 100.0;
    println!(
        "target {:.0}/s for {}s: scheduled {} sent {} ok {} overflow {} abandoned {}",
        args.rate, args.seconds, pl.scheduled, sent, ok, pl.overflow, pl.abandoned
    );
    println!(
        "achieved {achieved:.1}/s ({rate_err:.2}% off target); send lag p50 {:.3} ms p99 {:.3} ms max {max_lag_ms:.3} ms ({lag_pct:.3}% of the run)",
        q(0.5),
        q(0.99)
    );
    let pass = pl.overflow == 0 && rate_err < 1.0 && lag_pct < 1.0 && ok == sent;
    println!("{}", if pass { "PASS" } else { "FAIL" });
    mock.shutdown().await;
    if pass {
        Ok(())
    } else {
        anyhow::bail!("the generator did not keep its schedule")
    }
}
