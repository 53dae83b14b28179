//! Criterion bench of the router's planning step (pure; no I/O).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use switchyard::config::RoutingStrategy;
use switchyard::router::plan::{plan, Snapshot};

fn bench_plan(c: &mut Criterion) {
    let mut rng = SmallRng::seed_from_u64(1);
    for n in [1usize, 4, 16] {
        let snaps: Vec<Snapshot> = (0..n)
            .map(|i| Snapshot {
                weight: 1.0 + i as f64,
                in_flight: i as u32,
                latency_us: 100 * i as u64,
                ..Default::default()
            })
            .collect();
        for (name, strategy) in [
            ("simple-shuffle", RoutingStrategy::SimpleShuffle),
            ("least-busy", RoutingStrategy::LeastBusy),
            ("latency-based", RoutingStrategy::LatencyBased),
        ] {
            c.bench_function(&format!("plan/{name}/{n}"), |b| {
                b.iter(|| plan(black_box(&snaps), strategy, &mut rng))
            });
        }
    }
}

criterion_group!(benches, bench_plan);
criterion_main!(benches);
