//! Cooldown end to end: a failing deployment is skipped while it cools down (its journal stops
//! growing), and traffic returns to it once the fault is gone and the cooldown is over.

use std::time::Duration;

use mock_providers::FaultEffect;
use switchyard::config::{RouterSettings, Seconds};
use switchyard_e2e::{chat_body, Env, Upstream};
use tokio::time::Instant;

use crate::{assert_hits, bounded, fault};

const COOLDOWN: Duration = Duration::from_secs(1);

#[tokio::test]
async fn failing_deployment_is_skipped_while_cooling_and_serves_again_after_cooldown() {
    bounded(async {
        // `order` makes `flaky` the first choice whenever it is not cooling down.
        let outage = FaultEffect::HttpError {
            status: 503,
            message: None,
            retry_after: Vec::new(),
            body: None,
            content_type: None,
        };
        let flaky = Upstream::openai("flaky", "chat")
            .order(1)
            .fault(fault("outage", outage));
        let steady = Upstream::anthropic("steady", "chat").order(2);
        let settings = RouterSettings {
            num_retries: Some(1),
            allowed_fails: Some(0),
            cooldown_time: Some(Seconds(COOLDOWN)),
            ..RouterSettings::default()
        };
        let env = Env::start(vec![flaky, steady], settings).await.unwrap();

        // The first request fails on flaky (cooling it down) and is retried on steady.
        let failed_at = Instant::now();
        let r = env.chat(&chat_body("chat", "cd-0").unwrap()).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.header("x-switchyard-deployment"), "steady");
        assert_eq!(r.header("x-switchyard-attempts"), "2");

        // While it cools down, flaky is not even tried.
        for i in 1..=5 {
            let rid = format!("cd-{i}");
            let r = env.chat(&chat_body("chat", &rid).unwrap()).await.unwrap();
            assert_eq!(r.status, 200, "{}", r.json);
            assert_eq!(r.header("x-switchyard-deployment"), "steady");
            assert_eq!(
                r.header("x-switchyard-attempts"),
                "1",
                "flaky tried while cooling"
            );
        }
        env.settle().await.unwrap();
        assert_eq!(
            env.journal("flaky").len(),
            1,
            "flaky was called while cooling down"
        );
        assert_hits(&env, "cd-0", &[("flaky", 1), ("steady", 1)]);
        assert_eq!(env.journal("steady").len(), 6);
        assert!(
            failed_at.elapsed() < COOLDOWN,
            "the skip phase outlasted the cooldown; the machine is too slow for this test"
        );

        // Heal flaky; traffic must come back once the cooldown ends, not before.
        env.mocks.clear_faults("flaky").unwrap();
        let deadline = failed_at + COOLDOWN * 4;
        let mut n = 6;
        let returned_at = loop {
            let rid = format!("cd-{n}");
            n += 1;
            let r = env.chat(&chat_body("chat", &rid).unwrap()).await.unwrap();
            assert_eq!(r.status, 200, "{}", r.json);
            if r.header("x-switchyard-deployment") == "flaky" {
                assert_eq!(r.header("x-switchyard-attempts"), "1");
                break Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "traffic did not return to flaky within {:?}",
                COOLDOWN * 4
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            returned_at.duration_since(failed_at) >= COOLDOWN,
            "flaky served again after {:?}, before its cooldown of {COOLDOWN:?}",
            returned_at.duration_since(failed_at)
        );
        env.settle().await.unwrap();
        let flaky = env.journal("flaky");
        assert_eq!(flaky.len(), 2, "{flaky:#?}");
        assert_eq!(flaky[1].fault_id, None);
        assert_eq!(flaky[1].outcome.status, Some(200));
        assert_eq!(
            flaky[1].correlation_id.as_deref(),
            Some(format!("cd-{}", n - 1).as_str())
        );
    })
    .await;
}
