//! Streaming failures: before the first byte the gateway falls back; after it, the client gets
//! the chunks already produced and then an in-band error, never `[DONE]`, and no other
//! deployment is called.

use std::time::Duration;

use mock_providers::{Delay, EndKind, FaultEffect};
use switchyard::config::RouterSettings;
use switchyard_e2e::{stream_body, Env, Upstream};
use tokio::time::Instant;

use crate::{assert_hits, bounded, fault, rule, PAIRS};

async fn pair(primary: Upstream, backup: Upstream) -> Env {
    let settings = RouterSettings {
        num_retries: Some(2),
        fallbacks: Some(vec![rule("primary", &["backup"])]),
        ..RouterSettings::default()
    };
    Env::start(vec![primary, backup], settings)
        .await
        .expect("starting mocks and gateway")
}

#[tokio::test]
async fn stream_error_before_first_byte_falls_back() {
    bounded(async {
        for (p, b) in PAIRS {
            let primary = Upstream::new("primary", p, "primary").fault(fault(
                "early",
                FaultEffect::StreamErrorBefore { status: 500 },
            ));
            let env = pair(primary, Upstream::new("backup", b, "backup")).await;
            let rid = format!("early-{p}");
            let s = env
                .chat_stream(&stream_body("primary", &rid, true).unwrap())
                .await
                .unwrap();
            assert_eq!(s.status, 200, "{p}: {}", s.raw);
            assert!(s.done(), "{p}: {}", s.raw);
            assert!(s.errors().is_empty(), "{p}: {}", s.raw);
            assert!(!s.content().is_empty(), "{p}: {}", s.raw);
            assert_eq!(s.usage().len(), 1, "{p}: {}", s.raw);
            assert_eq!(s.header("x-switchyard-deployment"), "backup");
            assert_eq!(
                s.header("x-switchyard-attempts"),
                "4",
                "{p}: 1 + 2 retries + backup"
            );
            assert_eq!(s.header("x-switchyard-fallback-depth"), "1");
            env.settle().await.unwrap();
            assert_hits(&env, &rid, &[("primary", 3), ("backup", 1)]);
            for h in env.hits("primary", &rid) {
                assert!(h.stream);
                assert_eq!(h.fault_id.as_deref(), Some("early"));
                assert_eq!(h.outcome.status, Some(500));
                assert_eq!(h.outcome.chunks, 0);
            }
            let served = &env.hits("backup", &rid)[0];
            assert_eq!(served.outcome.end, EndKind::Complete);
        }
    })
    .await;
}

#[tokio::test]
async fn stream_broken_after_first_chunk_ends_with_inband_error_and_no_fallback() {
    bounded(async {
        let breaks = [
            (FaultEffect::StreamCut { after_chunks: 2 }, EndKind::Cut),
            (
                FaultEffect::StreamInbandError {
                    after_chunks: 2,
                    message: Some("upstream exploded".to_owned()),
                },
                EndKind::InbandError,
            ),
            (
                FaultEffect::StreamNoDone { after_chunks: 2 },
                EndKind::NoTerminator,
            ),
        ];
        for (p, b) in PAIRS {
            for (effect, end) in &breaks {
                let kind = effect.kind();
                let primary =
                    Upstream::new("primary", p, "primary").fault(fault("broken", effect.clone()));
                let env = pair(primary, Upstream::new("backup", b, "backup")).await;
                let rid = format!("{kind}-{p}");
                let s = env
                    .chat_stream(&stream_body("primary", &rid, true).unwrap())
                    .await
                    .unwrap();
                let what = format!("{p} {kind}");
                assert_eq!(s.status, 200, "{what}: {}", s.raw);
                assert_eq!(s.header("x-switchyard-deployment"), "primary", "{what}");
                assert!(
                    !s.has_done(),
                    "{what}: a broken stream ended with [DONE]: {}",
                    s.raw
                );
                assert!(
                    !s.content().is_empty(),
                    "{what}: the chunks sent before the break are missing: {}",
                    s.raw
                );
                let errors = s.errors();
                assert_eq!(errors.len(), 1, "{what}: {}", s.raw);
                let last = s.events().pop().unwrap();
                assert!(last.get("error").is_some(), "{what}: last event {last}");
                assert!(
                    errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{what}: {}",
                    errors[0]
                );
                assert!(s.usage().is_empty(), "{what}: usage on a broken stream");

                env.settle().await.unwrap();
                assert_hits(&env, &rid, &[("primary", 1), ("backup", 0)]);
                let h = &env.hits("primary", &rid)[0];
                assert_eq!(h.fault_id.as_deref(), Some("broken"), "{what}");
                assert_eq!(h.outcome.status, Some(200), "{what}");
                assert_eq!(h.outcome.end, *end, "{what}");
                assert_eq!(h.outcome.chunks, 2, "{what}");
                // The client saw exactly the words the mock sent before the break.
                let words = s.content().split_whitespace().count();
                assert_eq!(words, 2, "{what}: {}", s.raw);
            }
        }
    })
    .await;
}

#[tokio::test]
async fn stream_going_silent_after_first_chunk_ends_with_a_timeout_error_event() {
    bounded(async {
        const SILENCE: Duration = Duration::from_millis(300);
        for (p, b) in PAIRS {
            // The first content chunk comes at once, every later one a second apart.
            let slow = FaultEffect::Latency {
                ttft: None,
                inter_token: Some(Delay::from(Duration::from_secs(1))),
            };
            let primary = Upstream::new("primary", p, "primary")
                .fault(fault("slow", slow))
                .stream_timeout(SILENCE);
            let env = pair(primary, Upstream::new("backup", b, "backup")).await;
            let rid = format!("silent-{p}");
            let started = Instant::now();
            let s = env
                .chat_stream(&stream_body("primary", &rid, false).unwrap())
                .await
                .unwrap();
            assert!(started.elapsed() >= SILENCE, "{p}");
            assert_eq!(s.status, 200, "{p}: {}", s.raw);
            assert_eq!(s.header("x-switchyard-deployment"), "primary");
            assert!(!s.has_done(), "{p}: {}", s.raw);
            assert_eq!(s.content().split_whitespace().count(), 1, "{p}: {}", s.raw);
            let errors = s.errors();
            assert_eq!(errors.len(), 1, "{p}: {}", s.raw);
            assert_eq!(errors[0]["code"], "stream_timeout", "{p}: {}", errors[0]);

            env.settle().await.unwrap();
            assert_hits(&env, &rid, &[("primary", 1), ("backup", 0)]);
            let h = &env.hits("primary", &rid)[0];
            assert_eq!(h.fault_id.as_deref(), Some("slow"));
            assert_eq!(h.outcome.end, EndKind::ClientClosed, "{p}: {h:#?}");
        }
    })
    .await;
}
