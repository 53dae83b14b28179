//! Chooses which deployments of a group serve a request, in order. Does no I/O and reads no
//! clock: callers hand in a snapshot of each deployment; calling providers and recording
//! failures happen in `router::execute`.

use std::cmp::Ordering;
use std::time::Duration;

use rand::Rng;

use crate::config::RoutingStrategy;

/// What the planner needs to know about one deployment right now.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Priority tier (`order`): lower first; `None` after every ordered tier.
    pub order: Option<u32>,
    /// Selection weight for simple-shuffle (already chosen among weight / rpm / tpm).
    pub weight: f64,
    pub in_flight: u32,
    /// Latency EWMA in µs; 0 = no sample yet (tried early to learn it).
    pub latency_us: u64,
    /// Tokens used this minute.
    pub tokens: u64,
    /// Remaining cooldown, when cooling down.
    pub cooling: Option<Duration>,
    /// Time until a per-deployment limit (rpm/tpm/parallel) frees up, when at a limit.
    pub at_limit: Option<Duration>,
    /// Already tried for this request in this group: kept, but after untried ones.
    pub tried: bool,
}

/// Why no deployment can take the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Every deployment is cooling down.
    CoolingDown,
    /// Every deployment not cooling is at its rpm/tpm/parallel limit.
    AtLimits,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Indices into the snapshot slice, first choice first.
    Ordered(Vec<usize>),
    /// Nobody can serve; retry after the shortest wait.
    Unavailable {
        reason: Unavailable,
        retry_after: Duration,
    },
}

/// Orders the deployments that may serve now.
pub fn plan<R: Rng + ?Sized>(snaps: &[Snapshot], strategy: RoutingStrategy, rng: &mut R) -> Plan {
    let mut ready: Vec<(usize, f64)> = Vec::with_capacity(snaps.len());
    let mut shortest_cooling: Option<Duration> = None;
    let mut shortest_limit: Option<Duration> = None;
    for (i, s) in snaps.iter().enumerate() {
        if let Some(c) = s.cooling {
            shortest_cooling = Some(shortest_cooling.map_or(c, |x| x.min(c)));
            continue;
        }
        if let Some(l) = s.at_limit {
            shortest_limit = Some(shortest_limit.map_or(l, |x| x.min(l)));
            continue;
        }
        // Random tie-breaker per candidate, drawn once so sorting stays consistent.
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        let key = match strategy {
            // Efraimidis–Spirakis: sorting by u^(1/w) descending is a weighted shuffle.
            RoutingStrategy::SimpleShuffle => -(u.powf(1.0 / s.weight.max(f64::MIN_POSITIVE))),
            RoutingStrategy::LeastBusy => s.in_flight as f64 + u * 0.5,
            RoutingStrategy::LatencyBased => s.latency_us as f64 + u * 0.5,
            RoutingStrategy::UsageBasedV2 => s.tokens as f64 + u * 0.5,
        };
        ready.push((i, key));
    }
    if ready.is_empty() {
        return match (shortest_limit, shortest_cooling) {
            (Some(l), _) => Plan::Unavailable {
                reason: Unavailable::AtLimits,
                retry_after: l,
            },
            (None, Some(c)) => Plan::Unavailable {
                reason: Unavailable::CoolingDown,
                retry_after: c,
            },
            (None, None) => Plan::Unavailable {
                reason: Unavailable::CoolingDown,
                retry_after: Duration::ZERO,
            },
        };
    }
    ready.sort_by(|(a, ka), (b, kb)| {
        let (sa, sb) = (&snaps[*a], &snaps[*b]);
        sa.tried
            .cmp(&sb.tried)
            .then_with(|| tier(sa.order).cmp(&tier(sb.order)))
            .then_with(|| ka.partial_cmp(kb).unwrap_or(Ordering::Equal))
    });
    Plan::Ordered(ready.into_iter().map(|(i, _)| i).collect())
}

fn tier(order: Option<u32>) -> u64 {
    order.map(u64::from).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn snap(weight: f64) -> Snapshot {
        Snapshot {
            weight,
            ..Default::default()
        }
    }

    fn first(p: &Plan) -> usize {
        match p {
            Plan::Ordered(v) => v[0],
            other => panic!("expected a plan, got {other:?}"),
        }
    }

    #[test]
    fn simple_shuffle_follows_weights() {
        let snaps = [snap(9.0), snap(1.0)];
        let mut rng = SmallRng::seed_from_u64(7);
        let n = 10_000;
        let firsts = (0..n)
            .filter(|_| first(&plan(&snaps, RoutingStrategy::SimpleShuffle, &mut rng)) == 0)
            .count();
        let share = firsts as f64 / n as f64;
        assert!(
            (0.87..0.93).contains(&share),
            "share of the weight-9 deployment was {share}"
        );
    }

    #[test]
    fn order_tiers_come_first_and_cooling_is_skipped() {
        let snaps = [
            Snapshot {
                order: Some(2),
                weight: 1.0,
                ..Default::default()
            },
            Snapshot {
                order: Some(1),
                weight: 1.0,
                cooling: Some(Duration::from_secs(3)),
                ..Default::default()
            },
            Snapshot {
                order: Some(1),
                weight: 1.0,
                ..Default::default()
            },
            Snapshot {
                order: None,
                weight: 100.0,
                ..Default::default()
            },
        ];
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(
            plan(&snaps, RoutingStrategy::SimpleShuffle, &mut rng),
            Plan::Ordered(vec![2, 0, 3])
        );
    }

    #[test]
    fn untried_deployments_go_before_tried_ones() {
        let snaps = [
            Snapshot {
                tried: true,
                order: Some(1),
                weight: 1.0,
                ..Default::default()
            },
            snap(1.0),
        ];
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(
            first(&plan(&snaps, RoutingStrategy::SimpleShuffle, &mut rng)),
            1
        );
    }

    #[test]
    fn least_busy_latency_and_usage_pick_the_smallest() {
        let mut rng = SmallRng::seed_from_u64(3);
        let busy = [
            Snapshot {
                in_flight: 5,
                latency_us: 10,
                tokens: 900,
                weight: 1.0,
                ..Default::default()
            },
            Snapshot {
                in_flight: 1,
                latency_us: 900,
                tokens: 10,
                weight: 1.0,
                ..Default::default()
            },
            Snapshot {
                in_flight: 3,
                latency_us: 500,
                tokens: 500,
                weight: 1.0,
                ..Default::default()
            },
        ];
        assert_eq!(first(&plan(&busy, RoutingStrategy::LeastBusy, &mut rng)), 1);
        assert_eq!(
            first(&plan(&busy, RoutingStrategy::LatencyBased, &mut rng)),
            0
        );
        assert_eq!(
            first(&plan(&busy, RoutingStrategy::UsageBasedV2, &mut rng)),
            1
        );
    }

    #[test]
    fn all_cooling_reports_the_shortest_remaining_cooldown() {
        let snaps = [
            Snapshot {
                cooling: Some(Duration::from_secs(7)),
                ..Default::default()
            },
            Snapshot {
                cooling: Some(Duration::from_secs(2)),
                ..Default::default()
            },
        ];
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(
            plan(&snaps, RoutingStrategy::SimpleShuffle, &mut rng),
            Plan::Unavailable {
                reason: Unavailable::CoolingDown,
                retry_after: Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn limits_make_a_deployment_unavailable() {
        let snaps = [Snapshot {
            at_limit: Some(Duration::from_secs(30)),
            ..Default::default()
        }];
        let mut rng = SmallRng::seed_from_u64(1);
        assert!(matches!(
            plan(&snaps, RoutingStrategy::SimpleShuffle, &mut rng),
            Plan::Unavailable {
                reason: Unavailable::AtLimits,
                ..
            }
        ));
    }
}
