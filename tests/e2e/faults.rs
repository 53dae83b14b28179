//! Each fault kind on a primary deployment, with a fallback on another provider: the mock
//! journals say how often the primary was tried, which fault it applied, and who served.

use std::time::Duration;

use mock_providers::{ContentPolicyMode, Dialect, EndKind, FaultEffect, RetryAfter, Selection};
use switchyard::config::{PerClassCounts, RouterSettings};
use switchyard_e2e::{chat_body, stream_body, Env, Upstream};
use tokio::time::Instant;

use crate::{assert_hits, bounded, fault, rule, PAIRS};

fn primary_id(d: Dialect) -> String {
    format!("primary-{d}")
}

fn backup_id(d: Dialect) -> String {
    format!("backup-{d}")
}

/// Groups `primary` (one deployment, `primary`) and `backup` (one deployment of another
/// provider), with `fallbacks: [{primary: [backup]}]` added to `settings`.
async fn pair(primary: Upstream, backup: Dialect, settings: RouterSettings) -> Env {
    let settings = RouterSettings {
        fallbacks: Some(vec![rule("primary", &["backup"])]),
        ..settings
    };
    let backup = Upstream::new(&backup_id(backup), backup, "backup");
    Env::start(vec![primary, backup], settings)
        .await
        .expect("starting mocks and gateway")
}

fn retries(n: u32) -> RouterSettings {
    RouterSettings {
        num_retries: Some(n),
        ..RouterSettings::default()
    }
}

#[tokio::test]
async fn server_error_503_is_retried_then_falls_back_to_another_provider() {
    bounded(async {
        for (p, b) in PAIRS {
            let outage = FaultEffect::HttpError {
                status: 503,
                message: None,
                retry_after: Vec::new(),
                body: None,
                content_type: None,
            };
            let primary =
                Upstream::new(&primary_id(p), p, "primary").fault(fault("outage", outage));
            let env = pair(primary, b, retries(1)).await;
            let rid = format!("503-{p}");
            let r = env
                .chat(&chat_body("primary", &rid).unwrap())
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{p}: {}", r.json);
            assert!(!r.content().is_empty());
            assert_eq!(r.header("x-switchyard-deployment"), backup_id(b));
            assert_eq!(r.header("x-switchyard-model-group"), "backup");
            assert_eq!(r.header("x-switchyard-attempts"), "3");
            assert_eq!(r.header("x-switchyard-fallback-depth"), "1");
            assert_eq!(r.header("x-litellm-attempted-retries"), "1");
            assert_eq!(r.header("x-litellm-attempted-fallbacks"), "1");

            env.settle().await.unwrap();
            assert_hits(&env, &rid, &[(&primary_id(p), 2), (&backup_id(b), 1)]);
            for h in env.hits(&primary_id(p), &rid) {
                assert_eq!(h.fault_id.as_deref(), Some("outage"));
                assert_eq!(h.outcome.status, Some(503));
            }
            let served = &env.hits(&backup_id(b), &rid)[0];
            assert_eq!(
                (served.fault_id.as_deref(), served.outcome.status),
                (None, Some(200))
            );
            assert_eq!(env.stats().injected(&primary_id(p), "outage"), 2);
        }
    })
    .await;
}

#[tokio::test]
async fn rate_limit_is_retried_per_num_retries_after_retry_after_ms_then_falls_back() {
    bounded(async {
        for (p, b) in PAIRS {
            let throttle = FaultEffect::RateLimit {
                retry_after: vec![RetryAfter::Ms(250)],
                message: None,
            };
            let primary =
                Upstream::new(&primary_id(p), p, "primary").fault(fault("throttle", throttle));
            let env = pair(primary, b, retries(2)).await;
            let rid = format!("429-{p}");
            let r = env
                .chat(&chat_body("primary", &rid).unwrap())
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{p}: {}", r.json);
            assert_eq!(r.header("x-switchyard-deployment"), backup_id(b));
            assert_eq!(r.header("x-switchyard-attempts"), "4");
            assert_eq!(r.header("x-litellm-attempted-retries"), "2");
            assert_eq!(r.header("x-switchyard-fallback-depth"), "1");

            env.settle().await.unwrap();
            assert_hits(&env, &rid, &[(&primary_id(p), 3), (&backup_id(b), 1)]);
            let tried = env.hits(&primary_id(p), &rid);
            assert!(tried.iter().all(
                |h| h.fault_id.as_deref() == Some("throttle") && h.outcome.status == Some(429)
            ));
            // retry-after-ms: 250 is longer than the 100/200 ms backoff, so it sets each wait.
            for w in tried.windows(2) {
                let gap = w[1].t_ms - w[0].t_ms;
                assert!(
                    gap >= 240,
                    "{p}: retry {gap} ms after a retry-after-ms of 250"
                );
            }
            assert_eq!(env.stats().injected(&primary_id(p), "throttle"), 3);
        }
    })
    .await;
}

#[tokio::test]
async fn anthropic_overloaded_529_is_treated_as_rate_limited() {
    bounded(async {
        // Rate limits get one retry, server errors none: the retry count shows the class.
        let policy = RouterSettings {
            num_retries: Some(0),
            retry_policy: Some(PerClassCounts {
                rate_limit: Some(1),
                internal_server: Some(0),
                ..PerClassCounts::default()
            }),
            ..RouterSettings::default()
        };
        let overloaded = FaultEffect::Overloaded {
            retry_after: Vec::new(),
        };
        let primary = Upstream::anthropic("primary-anthropic", "primary")
            .fault(fault("overloaded", overloaded.clone()));
        let env = pair(primary, Dialect::Openai, policy.clone()).await;
        let r = env
            .chat(&chat_body("primary", "529").unwrap())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.header("x-switchyard-deployment"), "backup-openai");
        assert_eq!(r.header("x-litellm-attempted-retries"), "1");
        env.settle().await.unwrap();
        assert_hits(
            &env,
            "529",
            &[("primary-anthropic", 2), ("backup-openai", 1)],
        );
        for h in env.hits("primary-anthropic", "529") {
            assert_eq!(h.outcome.status, Some(529));
            assert_eq!(h.fault_id.as_deref(), Some("overloaded"));
        }

        // Control: OpenAI has no 529; its overloaded answer is a 503 server error, not retried
        // under the same policy.
        let primary =
            Upstream::openai("primary-openai", "primary").fault(fault("overloaded", overloaded));
        let env = pair(primary, Dialect::Anthropic, policy).await;
        let r = env
            .chat(&chat_body("primary", "503-control").unwrap())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.header("x-switchyard-deployment"), "backup-anthropic");
        env.settle().await.unwrap();
        assert_hits(
            &env,
            "503-control",
            &[("primary-openai", 1), ("backup-anthropic", 1)],
        );
        assert_eq!(
            env.hits("primary-openai", "503-control")[0].outcome.status,
            Some(503)
        );
    })
    .await;
}

#[tokio::test]
async fn connection_reset_is_retried_then_falls_back() {
    bounded(async {
        for (p, b) in PAIRS {
            let primary = Upstream::new(&primary_id(p), p, "primary")
                .fault(fault("rst", FaultEffect::Reset {}));
            let env = pair(primary, b, retries(1)).await;
            let rid = format!("reset-{p}");
            let r = env
                .chat(&chat_body("primary", &rid).unwrap())
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{p}: {}", r.json);
            assert_eq!(r.header("x-switchyard-deployment"), backup_id(b));
            assert_eq!(r.header("x-switchyard-attempts"), "3");
            env.settle().await.unwrap();
            assert_hits(&env, &rid, &[(&primary_id(p), 2), (&backup_id(b), 1)]);
            for h in env.hits(&primary_id(p), &rid) {
                assert_eq!(h.outcome.end, EndKind::Reset, "{p}");
                assert_eq!(h.outcome.status, None, "{p}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn stalled_upstream_times_out_and_falls_back() {
    bounded(async {
        const LIMIT: Duration = Duration::from_millis(300);
        for (p, b) in PAIRS {
            let primary = Upstream::new(&primary_id(p), p, "primary")
                .fault(fault("stall", FaultEffect::Stall { duration: None }))
                .timeout(LIMIT)
                .stream_timeout(LIMIT);
            let env = pair(primary, b, retries(0)).await;

            let rid = format!("stall-{p}");
            let started = Instant::now();
            let r = env
                .chat(&chat_body("primary", &rid).unwrap())
                .await
                .unwrap();
            let took = started.elapsed();
            assert_eq!(r.status, 200, "{p}: {}", r.json);
            assert_eq!(r.header("x-switchyard-deployment"), backup_id(b));
            assert!(took >= LIMIT, "{p}: served in {took:?}, before the timeout");

            let srid = format!("stall-stream-{p}");
            let s = env
                .chat_stream(&stream_body("primary", &srid, false).unwrap())
                .await
                .unwrap();
            assert_eq!(s.status, 200, "{p}: {}", s.raw);
            assert!(s.done(), "{p}: {}", s.raw);
            assert_eq!(s.header("x-switchyard-deployment"), backup_id(b));

            env.settle().await.unwrap();
            for rid in [&rid, &srid] {
                assert_hits(&env, rid, &[(&primary_id(p), 1), (&backup_id(b), 1)]);
                let h = &env.hits(&primary_id(p), rid)[0];
                assert_eq!(h.fault_id.as_deref(), Some("stall"));
                assert_eq!(
                    h.outcome.status, None,
                    "{p}: the stalled call got an answer"
                );
                assert!(
                    matches!(h.outcome.end, EndKind::Stalled | EndKind::ClientClosed),
                    "{p}: {h:#?}"
                );
            }
        }
    })
    .await;
}

/// Groups `primary`, `general` and `special`; `fallbacks` send primary to general, and
/// `special` fallbacks (context window or content policy) send it to special.
async fn three_groups(
    primary: Upstream,
    general: Dialect,
    special: Dialect,
    settings: RouterSettings,
) -> Env {
    let upstreams = vec![
        primary,
        Upstream::new("general", general, "general"),
        Upstream::new("special", special, "special"),
    ];
    let settings = RouterSettings {
        num_retries: Some(2),
        fallbacks: Some(vec![rule("primary", &["general"])]),
        ..settings
    };
    Env::start(upstreams, settings)
        .await
        .expect("starting mocks and gateway")
}

#[tokio::test]
async fn context_window_exceeded_uses_context_window_fallbacks_only() {
    bounded(async {
        for (p, b) in PAIRS {
            let primary = Upstream::new(&primary_id(p), p, "primary")
                .fault(fault("too-long", FaultEffect::ContextWindowExceeded {}));
            let settings = RouterSettings {
                context_window_fallbacks: Some(vec![rule("primary", &["special"])]),
                ..RouterSettings::default()
            };
            let env = three_groups(primary, p, b, settings).await;
            let rid = format!("cw-{p}");
            let r = env
                .chat(&chat_body("primary", &rid).unwrap())
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{p}: {}", r.json);
            assert_eq!(r.header("x-switchyard-deployment"), "special");
            assert_eq!(r.header("x-switchyard-attempts"), "2", "{p}: no retry");
            env.settle().await.unwrap();
            assert_hits(
                &env,
                &rid,
                &[(&primary_id(p), 1), ("general", 0), ("special", 1)],
            );
            assert_eq!(env.hits(&primary_id(p), &rid)[0].outcome.status, Some(400));
        }
    })
    .await;
}

#[tokio::test]
async fn context_window_exceeded_without_its_fallback_reaches_the_client() {
    bounded(async {
        let primary = Upstream::openai("primary-openai", "primary")
            .fault(fault("too-long", FaultEffect::ContextWindowExceeded {}));
        let env = three_groups(
            primary,
            Dialect::Azure,
            Dialect::Anthropic,
            RouterSettings::default(),
        )
        .await;
        let r = env
            .chat(&chat_body("primary", "cw-none").unwrap())
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{}", r.json);
        assert!(r.json["error"]["message"].is_string(), "{}", r.json);
        env.settle().await.unwrap();
        assert_hits(
            &env,
            "cw-none",
            &[("primary-openai", 1), ("general", 0), ("special", 0)],
        );
    })
    .await;
}

#[tokio::test]
async fn content_policy_uses_content_policy_fallbacks_in_both_modes() {
    bounded(async {
        for (p, b) in PAIRS {
            for mode in [ContentPolicyMode::Error, ContentPolicyMode::FinishReason] {
                let primary = Upstream::new(&primary_id(p), p, "primary")
                    .fault(fault("policy", FaultEffect::ContentPolicy { mode }));
                let settings = RouterSettings {
                    content_policy_fallbacks: Some(vec![rule("primary", &["special"])]),
                    ..RouterSettings::default()
                };
                let env = three_groups(primary, p, b, settings).await;
                let rid = format!("policy-{p}-{mode:?}");
                let r = env
                    .chat(&chat_body("primary", &rid).unwrap())
                    .await
                    .unwrap();
                assert_eq!(r.status, 200, "{p} {mode:?}: {}", r.json);
                assert_eq!(
                    r.header("x-switchyard-deployment"),
                    "special",
                    "{p} {mode:?}"
                );
                assert_eq!(r.header("x-switchyard-attempts"), "2", "{p} {mode:?}");
                assert_eq!(
                    r.json["choices"][0]["finish_reason"], "stop",
                    "{p} {mode:?}"
                );
                env.settle().await.unwrap();
                assert_hits(
                    &env,
                    &rid,
                    &[(&primary_id(p), 1), ("general", 0), ("special", 1)],
                );
                let h = &env.hits(&primary_id(p), &rid)[0];
                assert_eq!(h.fault_id.as_deref(), Some("policy"));
                let status = match mode {
                    ContentPolicyMode::Error => 400,
                    ContentPolicyMode::FinishReason => 200,
                };
                assert_eq!(h.outcome.status, Some(status), "{p} {mode:?}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn auth_error_is_not_retried_and_falls_back() {
    bounded(async {
        for (p, b) in PAIRS {
            let primary = Upstream::new(&primary_id(p), p, "primary")
                .fault(fault("denied", FaultEffect::AuthError {}));
            let env = pair(primary, b, retries(3)).await;
            let rid = format!("auth-{p}");
            let r = env
                .chat(&chat_body("primary", &rid).unwrap())
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{p}: {}", r.json);
            assert_eq!(r.header("x-switchyard-deployment"), backup_id(b));
            assert_eq!(r.header("x-switchyard-attempts"), "2");
            assert_eq!(r.header("x-litellm-attempted-retries"), "0");
            env.settle().await.unwrap();
            assert_hits(&env, &rid, &[(&primary_id(p), 1), (&backup_id(b), 1)]);
            assert_eq!(env.hits(&primary_id(p), &rid)[0].outcome.status, Some(401));
        }
    })
    .await;
}

#[tokio::test]
async fn fail_then_pass_is_served_by_the_primary_on_its_second_try() {
    bounded(async {
        for (p, b) in PAIRS {
            let once_503 = fault(
                "once",
                FaultEffect::HttpError {
                    status: 503,
                    message: None,
                    retry_after: Vec::new(),
                    body: None,
                    content_type: None,
                },
            )
            .with_selection(Selection::FailThenPass(1));
            let once_before_stream = fault(
                "once-stream",
                FaultEffect::StreamErrorBefore { status: 500 },
            )
            .with_selection(Selection::FailThenPass(1));
            let primary = Upstream::new(&primary_id(p), p, "primary").fault(once_503);
            let env = pair(primary, b, retries(1)).await;

            let rid = format!("ftp-{p}");
            let r = env
                .chat(&chat_body("primary", &rid).unwrap())
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{p}: {}", r.json);
            assert_eq!(r.header("x-switchyard-deployment"), primary_id(p));
            assert_eq!(r.header("x-switchyard-attempts"), "2");
            assert_eq!(r.header("x-switchyard-fallback-depth"), "0");
            assert_eq!(r.header("x-litellm-attempted-retries"), "1");

            // Fresh rules (and counters) for the streaming half.
            env.mocks
                .set_faults(&primary_id(p), vec![once_before_stream])
                .unwrap();
            let srid = format!("ftp-stream-{p}");
            let s = env
                .chat_stream(&stream_body("primary", &srid, true).unwrap())
                .await
                .unwrap();
            assert_eq!(s.status, 200, "{p}: {}", s.raw);
            assert!(s.done(), "{p}: {}", s.raw);
            assert_eq!(s.header("x-switchyard-deployment"), primary_id(p));
            assert_eq!(s.header("x-switchyard-attempts"), "2");

            env.settle().await.unwrap();
            for (rid, fault_id, status) in [(&rid, "once", 503), (&srid, "once-stream", 500)] {
                assert_hits(&env, rid, &[(&primary_id(p), 2), (&backup_id(b), 0)]);
                let hits = env.hits(&primary_id(p), rid);
                assert_eq!(hits[0].fault_id.as_deref(), Some(fault_id), "{p}");
                assert_eq!(hits[0].outcome.status, Some(status), "{p}");
                assert_eq!(hits[1].fault_id, None, "{p}");
                assert_eq!(hits[1].outcome.status, Some(200), "{p}");
                assert_eq!(hits[1].outcome.end, EndKind::Complete, "{p}");
            }
        }
    })
    .await;
}
