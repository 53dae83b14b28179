//! End-to-end tests: the switchyard gateway, in process, in front of the real mock providers.
//! Ground truth is the mock journal (which deployment saw which correlation id, how often,
//! with which fault); the gateway's `x-switchyard-*` headers are cross-checked.

mod concurrency;
mod cooldown;
mod dialects;
mod faults;
mod streams;

use std::future::Future;
use std::time::Duration;

use mock_providers::{Dialect, FaultEffect, FaultRule};
use switchyard::config::FallbackRule;
use switchyard_e2e::Env;

/// Upper bound on any single test.
const TEST_LIMIT: Duration = Duration::from_secs(30);

/// The three dialects, each paired with a fallback on another provider.
pub const PAIRS: [(Dialect, Dialect); 3] = [
    (Dialect::Openai, Dialect::Anthropic),
    (Dialect::Anthropic, Dialect::Azure),
    (Dialect::Azure, Dialect::Openai),
];

/// Runs a test body under [`TEST_LIMIT`].
pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("test exceeded its time bound")
}

/// `{group: [targets...]}`.
pub fn rule(group: &str, targets: &[&str]) -> FallbackRule {
    FallbackRule {
        group: group.to_owned(),
        targets: targets.iter().map(|t| (*t).to_owned()).collect(),
    }
}

/// A rule that always applies `effect`, named `id`.
pub fn fault(id: &str, effect: FaultEffect) -> FaultRule {
    FaultRule::new(id, effect)
}

/// Asserts how many requests carrying `rid` each listed deployment saw.
#[track_caller]
pub fn assert_hits(env: &Env, rid: &str, expected: &[(&str, usize)]) {
    let counts = env.hit_counts(rid);
    for (id, n) in expected {
        let seen = counts
            .iter()
            .find(|(d, _)| d == id)
            .map(|(_, n)| *n)
            .unwrap_or_else(|| panic!("no mock deployment {id}; known: {counts:?}"));
        assert_eq!(
            seen, *n,
            "deployment {id} saw rid {rid} {seen} times, expected {n}; all: {counts:?}"
        );
    }
}
