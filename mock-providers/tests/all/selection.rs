//! Selections over real HTTP: seeded probability is reproducible and
//! predictable, probability 0 injects nothing, and the counting selections
//! pick exactly the requests they promise.

use mock_providers::{
    selection_draw, DeploymentSpec, Dialect, FaultEffect, FaultRule, MockServer, MockSpec,
    Selection,
};

use crate::support::*;

fn outage() -> FaultEffect {
    FaultEffect::HttpError {
        status: 503,
        message: None,
        retry_after: vec![],
        body: None,
        content_type: None,
    }
}

/// Sends `n` sequential requests; returns which ones were faulted.
async fn pattern(server: &MockServer, n: usize) -> Vec<bool> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let resp = chat(server, "d", &format!("req {i}"), false).await;
        out.push(resp.status() == 503);
    }
    out
}

async fn seeded_server(seed: u64, p: f64) -> MockServer {
    let spec = MockSpec::new(seed, vec![DeploymentSpec::new("d", Dialect::Openai)]);
    let server = MockServer::start(spec).await.unwrap();
    server
        .set_faults(
            "d",
            vec![FaultRule::new("coin", outage()).with_selection(Selection::Probability(p))],
        )
        .unwrap();
    server
}

#[tokio::test]
async fn same_seed_gives_the_same_sequence_and_it_is_predictable() {
    let a = seeded_server(11, 0.5).await;
    let b = seeded_server(11, 0.5).await;
    let c = seeded_server(12, 0.5).await;
    let pa = pattern(&a, 60).await;
    let pb = pattern(&b, 60).await;
    let pc = pattern(&c, 60).await;
    assert_eq!(pa, pb);
    assert_ne!(pa, pc);
    let predicted: Vec<bool> = (0..60)
        .map(|n| selection_draw(11, "d", "coin", n) < 0.5)
        .collect();
    assert_eq!(pa, predicted);
    let injected = pa.iter().filter(|f| **f).count() as u64;
    assert_eq!(a.stats().injected("d", "coin"), injected);
    assert!((15..=45).contains(&injected), "{injected}");
    for s in [a, b, c] {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn set_faults_restarts_the_sequence() {
    let server = seeded_server(5, 0.5).await;
    let first = pattern(&server, 30).await;
    server
        .set_faults(
            "d",
            vec![FaultRule::new("coin", outage()).with_selection(Selection::Probability(0.5))],
        )
        .unwrap();
    assert_eq!(pattern(&server, 30).await, first);
    server.shutdown().await;
}

#[tokio::test]
async fn probability_zero_injects_nothing() {
    let server = seeded_server(1, 0.0).await;
    assert!(pattern(&server, 100).await.iter().all(|f| !f));
    assert_eq!(server.stats().injected("d", "coin"), 0);
    assert_eq!(
        server.stats().deployment("d").unwrap().outcomes["complete"],
        100
    );
    server.shutdown().await;
}

#[tokio::test]
async fn first_and_every_nth() {
    let server = start(vec![dep("d", Dialect::Openai)]).await;
    server
        .set_faults(
            "d",
            vec![FaultRule::new("first", outage()).with_selection(Selection::First(3))],
        )
        .unwrap();
    assert_eq!(
        pattern(&server, 6).await,
        vec![true, true, true, false, false, false]
    );
    server
        .set_faults(
            "d",
            vec![FaultRule::new("nth", outage()).with_selection(Selection::EveryNth(3))],
        )
        .unwrap();
    assert_eq!(
        pattern(&server, 7).await,
        vec![false, false, true, false, false, true, false]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn fail_then_pass_counts_per_correlation_id() {
    let server = start(vec![dep("d", Dialect::Openai)]).await;
    server
        .set_faults(
            "d",
            vec![FaultRule::new("ftp", outage()).with_selection(Selection::FailThenPass(2))],
        )
        .unwrap();
    let mut seen = Vec::new();
    for rid in ["a", "a", "b", "a", "b", "b", "c"] {
        let resp = chat(&server, "d", &format!("retry me [drill:rid={rid}]"), false).await;
        seen.push(resp.status().as_u16());
    }
    assert_eq!(seen, vec![503, 503, 503, 200, 503, 200, 503]);
    server.shutdown().await;
}

#[tokio::test]
async fn prompt_tokens_over_selects_long_prompts() {
    let server = start(vec![dep("d", Dialect::Anthropic)]).await;
    server
        .set_faults(
            "d",
            vec![
                FaultRule::new("long", FaultEffect::ContextWindowExceeded {})
                    .with_selection(Selection::PromptTokensOver(10)),
            ],
        )
        .unwrap();
    assert_eq!(
        chat(&server, "d", &"y".repeat(40), false).await.status(),
        200
    );
    assert_eq!(
        chat(&server, "d", &"y".repeat(41), false).await.status(),
        400
    );
    server.shutdown().await;
}

#[tokio::test]
async fn first_matching_rule_wins_in_order() {
    let server = start(vec![dep("d", Dialect::Openai)]).await;
    server
        .set_faults(
            "d",
            vec![
                FaultRule::new("two", FaultEffect::AuthError {})
                    .with_selection(Selection::First(2)),
                FaultRule::new("rest", outage()),
            ],
        )
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(chat(&server, "d", "x", false).await.status().as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 503, 503]);
    let stats = server.stats();
    assert_eq!(stats.injected("d", "two"), 2);
    assert_eq!(stats.injected("d", "rest"), 2);
    server.shutdown().await;
}
