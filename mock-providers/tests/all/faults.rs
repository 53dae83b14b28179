//! Each fault produces exactly the bytes and connection behaviour it
//! promises, in each dialect's shape, and is journaled and counted.

use std::time::Duration;

use mock_providers::{
    ContentPolicyMode, Delay, Dialect, EndKind, FaultEffect, FaultRule, HumanDuration, MockServer,
    RetryAfter, SignedDuration,
};
use serde_json::Value;
use tokio::time::Instant;

use crate::support::*;

async fn with_fault(dialect: Dialect, effect: FaultEffect) -> MockServer {
    let mut d = dep("d", dialect);
    d.baseline.output_tokens = 6;
    let server = start(vec![d]).await;
    server
        .set_faults("d", vec![FaultRule::new("f", effect)])
        .unwrap();
    server
}

async fn last_entry(server: &MockServer, n: u64) -> mock_providers::JournalEntry {
    assert!(
        server.wait_for_completed("d", n, T).await,
        "request {n} was not journaled"
    );
    server.journal_of("d", n - 1).unwrap().entries.remove(0)
}

const ALL: [Dialect; 3] = [Dialect::Openai, Dialect::Azure, Dialect::Anthropic];

#[tokio::test]
async fn http_error_uses_each_providers_error_body() {
    let cases = [
        (Dialect::Openai, 500, "openai/error_server_error.json"),
        (Dialect::Openai, 503, "openai/error_overloaded.json"),
        (Dialect::Azure, 429, "azure/error_404_resource.json"),
        (Dialect::Anthropic, 500, "anthropic/error_api_error.json"),
        (Dialect::Anthropic, 529, "anthropic/error_overloaded.json"),
    ];
    for (dialect, status, fixture_file) in cases {
        let server = with_fault(
            dialect,
            FaultEffect::HttpError {
                status,
                message: None,
                retry_after: vec![],
                body: None,
                content_type: None,
            },
        )
        .await;
        let resp = chat(&server, "d", "hi", false).await;
        assert_eq!(resp.status().as_u16(), status, "{dialect}");
        let body = json_of(resp).await;
        let mut expected = fixture(fixture_file);
        if dialect == Dialect::Azure {
            // Azure's platform errors carry the status as the code.
            expected["error"]["code"] = Value::from("429");
        }
        assert_shape(&expected, &body);
        let e = last_entry(&server, 1).await;
        assert_eq!(e.fault_id.as_deref(), Some("f"));
        assert_eq!(e.outcome.end, EndKind::ErrorStatus);
        assert_eq!(e.outcome.status, Some(status));
        assert_eq!(server.stats().injected("d", "f"), 1);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn http_error_with_a_raw_body_sends_it_verbatim() {
    let page = "<html><body><h1>502 Bad Gateway</h1></body></html>";
    let server = with_fault(
        Dialect::Openai,
        FaultEffect::HttpError {
            status: 502,
            message: None,
            retry_after: vec![RetryAfter::Seconds(1)],
            body: Some(page.into()),
            content_type: None,
        },
    )
    .await;
    let resp = chat(&server, "d", "hi", false).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "text/html");
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.text().await.unwrap(), page);
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limit_sends_every_retry_after_form() {
    let server = with_fault(
        Dialect::Openai,
        FaultEffect::RateLimit {
            retry_after: vec![RetryAfter::Seconds(2), RetryAfter::Ms(1500)],
            message: None,
        },
    )
    .await;
    let resp = chat(&server, "d", "hi", false).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(resp.headers()["retry-after-ms"], "1500");
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
    assert_eq!(resp.headers()["x-ratelimit-reset-requests"], "2s");
    assert_shape(
        &fixture("openai/error_rate_limit.json"),
        &json_of(resp).await,
    );

    server
        .set_faults(
            "d",
            vec![FaultRule::new(
                "date",
                FaultEffect::RateLimit {
                    retry_after: vec![RetryAfter::HttpDateIn(SignedDuration { millis: 30_000 })],
                    message: None,
                },
            )],
        )
        .unwrap();
    let resp = chat(&server, "d", "hi", false).await;
    let date = resp.headers()["retry-after"].to_str().unwrap().to_owned();
    let at = httpdate::parse_http_date(&date).unwrap();
    let ahead = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        ahead > Duration::from_secs(20) && ahead <= Duration::from_secs(31),
        "{date}"
    );

    // Odd values are sent as given, for gateway robustness.
    for (form, header, value) in [
        (RetryAfter::Seconds(0), "retry-after", "0"),
        (RetryAfter::Seconds(-5), "retry-after", "-5"),
        (
            RetryAfter::Seconds(9_999_999_999),
            "retry-after",
            "9999999999",
        ),
        (RetryAfter::Ms(-1), "retry-after-ms", "-1"),
        (RetryAfter::Raw("soon".into()), "retry-after", "soon"),
    ] {
        server
            .set_faults(
                "d",
                vec![FaultRule::new(
                    "odd",
                    FaultEffect::RateLimit {
                        retry_after: vec![form],
                        message: None,
                    },
                )],
            )
            .unwrap();
        let resp = chat(&server, "d", "hi", false).await;
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header], value);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limit_in_azure_and_anthropic_shapes() {
    let ra = vec![RetryAfter::Seconds(2)];
    let server = with_fault(
        Dialect::Azure,
        FaultEffect::RateLimit {
            retry_after: ra.clone(),
            message: None,
        },
    )
    .await;
    let resp = chat(&server, "d", "hi", false).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    let body = json_of(resp).await;
    assert_shape(&fixture("azure/error_429.json"), &body);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Please retry after 2 seconds"));
    server.shutdown().await;

    let server = with_fault(
        Dialect::Anthropic,
        FaultEffect::RateLimit {
            retry_after: ra,
            message: None,
        },
    )
    .await;
    let resp = chat(&server, "d", "hi", false).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()["anthropic-ratelimit-requests-remaining"],
        "0"
    );
    assert_shape(
        &fixture("anthropic/error_rate_limit.json"),
        &json_of(resp).await,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn overloaded_is_529_for_anthropic_and_503_for_openai() {
    let server = with_fault(
        Dialect::Anthropic,
        FaultEffect::Overloaded {
            retry_after: vec![],
        },
    )
    .await;
    let resp = chat(&server, "d", "hi", false).await;
    assert_eq!(resp.status().as_u16(), 529);
    assert_shape(
        &fixture("anthropic/error_overloaded.json"),
        &json_of(resp).await,
    );
    server.shutdown().await;

    let server = with_fault(
        Dialect::Openai,
        FaultEffect::Overloaded {
            retry_after: vec![],
        },
    )
    .await;
    let resp = chat(&server, "d", "hi", false).await;
    assert_eq!(resp.status(), 503);
    assert_shape(
        &fixture("openai/error_overloaded.json"),
        &json_of(resp).await,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn latency_delays_first_byte_and_chunks() {
    let server = with_fault(
        Dialect::Openai,
        FaultEffect::Latency {
            ttft: Some(Delay::Fixed(HumanDuration::from_millis(300))),
            inter_token: None,
        },
    )
    .await;
    let t0 = Instant::now();
    let resp = chat(&server, "d", "hi", false).await;
    assert_eq!(resp.status(), 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    server
        .set_faults(
            "d",
            vec![FaultRule::new(
                "gaps",
                FaultEffect::Latency {
                    ttft: None,
                    inter_token: Some(Delay::Uniform {
                        min: HumanDuration::from_millis(40),
                        max: HumanDuration::from_millis(60),
                    }),
                },
            )],
        )
        .unwrap();
    let t0 = Instant::now();
    let text = chat(&server, "d", "hi", true).await.text().await.unwrap();
    // 6 chunks: 5 gaps of at least 40ms.
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
    server.shutdown().await;
}

#[tokio::test]
async fn baseline_timing_applies_without_faults() {
    let mut d = dep("d", Dialect::Anthropic);
    d.baseline.ttft = HumanDuration::from_millis(150);
    d.baseline.output_tokens = 2;
    let server = start(vec![d]).await;
    let t0 = Instant::now();
    assert_eq!(
        chat(&server, "d", "hi", true)
            .await
            .text()
            .await
            .unwrap()
            .matches("content_block_delta")
            .count(),
        4
    );
    assert!(t0.elapsed() >= Duration::from_millis(150));
    server.shutdown().await;
}

#[tokio::test]
async fn stall_never_answers_and_is_journaled_when_the_client_gives_up() {
    let server = with_fault(Dialect::Openai, FaultEffect::Stall { duration: None }).await;
    let (url, body) = chat_request(&server, "d", "hi", false);
    let err = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let e = last_entry(&server, 1).await;
    assert_eq!(e.outcome.end, EndKind::Stalled);
    assert_eq!(e.outcome.status, None);
    assert_eq!(e.outcome.bytes, 0);

    // With `for`, the connection closes without a single response byte.
    server
        .set_faults(
            "d",
            vec![FaultRule::new(
                "brief",
                FaultEffect::Stall {
                    duration: Some(HumanDuration::from_millis(100)),
                },
            )],
        )
        .unwrap();
    let raw = raw_exchange(
        server.addr("d").unwrap(),
        &raw_chat(&server, "d", "hi", false),
    )
    .await;
    assert_eq!(raw.end, RawEnd::Eof);
    assert!(raw.bytes.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn reset_sends_rst_before_any_byte() {
    for dialect in ALL {
        let server = with_fault(dialect, FaultEffect::Reset {}).await;
        let raw = raw_exchange(
            server.addr("d").unwrap(),
            &raw_chat(&server, "d", "hi", true),
        )
        .await;
        assert_eq!(raw.end, RawEnd::Reset, "{dialect}");
        assert!(raw.bytes.is_empty());
        let e = last_entry(&server, 1).await;
        assert_eq!(e.outcome.end, EndKind::Reset);
        // reqwest sees a transport error, not an HTTP status.
        let (url, body) = chat_request(&server, "d", "hi", false);
        let err = client()
            .post(url)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .unwrap_err();
        assert!(err.status().is_none());
        server.shutdown().await;
    }
}

#[tokio::test]
async fn close_after_bytes_sends_exactly_n_bytes() {
    let server = with_fault(Dialect::Openai, FaultEffect::CloseAfterBytes { bytes: 37 }).await;
    let raw = raw_exchange(
        server.addr("d").unwrap(),
        &raw_chat(&server, "d", "hi", false),
    )
    .await;
    assert_eq!(raw.end, RawEnd::Eof);
    assert_eq!(raw.bytes.len(), 37);
    assert!(raw.bytes.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let e = last_entry(&server, 1).await;
    assert_eq!(e.outcome.end, EndKind::Cut);
    assert_eq!(e.outcome.bytes, 37);

    // A budget larger than the response: all of it, then the connection closes.
    server
        .set_faults(
            "d",
            vec![FaultRule::new(
                "big",
                FaultEffect::CloseAfterBytes { bytes: 1 << 20 },
            )],
        )
        .unwrap();
    let raw = raw_exchange(
        server.addr("d").unwrap(),
        &raw_chat(&server, "d", "hi", true),
    )
    .await;
    let parsed = parse_response(&raw.bytes);
    assert!(parsed.complete);
    assert_eq!(last_entry(&server, 2).await.outcome.end, EndKind::Complete);
    server.shutdown().await;
}

#[tokio::test]
async fn stream_error_before_sends_an_error_status_instead_of_the_stream() {
    for (dialect, file) in [
        (Dialect::Openai, "openai/error_server_error.json"),
        (Dialect::Anthropic, "anthropic/error_api_error.json"),
    ] {
        let server = with_fault(dialect, FaultEffect::StreamErrorBefore { status: 500 }).await;
        // Non-streaming requests are not affected and do not count.
        assert_eq!(chat(&server, "d", "hi", false).await.status(), 200);
        let resp = chat(&server, "d", "hi", true).await;
        assert_eq!(resp.status(), 500);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        assert_shape(&fixture(file), &json_of(resp).await);
        assert_eq!(server.stats().injected("d", "f"), 1);
        server.shutdown().await;
    }
}

fn content_events(dialect: Dialect, events: &[Sse]) -> usize {
    events
        .iter()
        .filter(|e| match dialect {
            Dialect::Anthropic => e.0.as_deref() == Some("content_block_delta"),
            _ => openai_kind(&e.1) == "content",
        })
        .count()
}

#[tokio::test]
async fn stream_inband_error_follows_n_chunks_then_ends_cleanly() {
    for dialect in ALL {
        let server = with_fault(
            dialect,
            FaultEffect::StreamInbandError {
                after_chunks: 2,
                message: None,
            },
        )
        .await;
        let raw = raw_exchange(
            server.addr("d").unwrap(),
            &raw_chat(&server, "d", "hi", true),
        )
        .await;
        let parsed = parse_response(&raw.bytes);
        assert_eq!(parsed.status, 200);
        assert!(parsed.complete, "{dialect}: chunked body must end properly");
        let events = parse_sse(&parsed.text());
        assert_eq!(content_events(dialect, &events), 2);
        let last = events.last().unwrap();
        match dialect {
            Dialect::Anthropic => {
                assert_eq!(last.0.as_deref(), Some("error"));
                assert_shape(
                    &serde_json::from_str(&fixture_sse("anthropic/stream_error_event.sse")[0].1)
                        .unwrap(),
                    &serde_json::from_str(&last.1).unwrap(),
                );
                assert!(!parsed.text().contains("message_stop"));
            }
            _ => {
                assert_eq!(openai_kind(&last.1), "error");
                assert_shape(
                    &serde_json::from_str(&fixture_sse("openai/stream_inband_error.sse")[0].1)
                        .unwrap(),
                    &serde_json::from_str(&last.1).unwrap(),
                );
                assert!(!parsed.text().contains("[DONE]"));
            }
        }
        let e = last_entry(&server, 1).await;
        assert_eq!(e.outcome.end, EndKind::InbandError);
        assert_eq!(e.outcome.chunks, 2);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn stream_cut_closes_mid_body_without_chunked_terminator() {
    for dialect in ALL {
        let server = with_fault(dialect, FaultEffect::StreamCut { after_chunks: 3 }).await;
        let raw = raw_exchange(
            server.addr("d").unwrap(),
            &raw_chat(&server, "d", "hi", true),
        )
        .await;
        assert_eq!(raw.end, RawEnd::Eof);
        assert!(!raw.bytes.ends_with(b"0\r\n\r\n"));
        let parsed = parse_response(&raw.bytes);
        assert_eq!(parsed.status, 200);
        assert!(
            !parsed.complete,
            "{dialect}: no chunked terminator expected"
        );
        assert_eq!(content_events(dialect, &parse_sse(&parsed.text())), 3);
        let e = last_entry(&server, 1).await;
        assert_eq!(e.outcome.end, EndKind::Cut);
        assert_eq!(e.outcome.chunks, 3);
        assert_eq!(e.outcome.bytes, raw.bytes.len() as u64);

        // reqwest reports a body error, not a clean end.
        let resp = chat(&server, "d", "hi", true).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().await.is_err());
        server.shutdown().await;
    }
}

#[tokio::test]
async fn stream_no_done_ends_cleanly_without_protocol_terminator() {
    for dialect in ALL {
        let server = with_fault(dialect, FaultEffect::StreamNoDone { after_chunks: 2 }).await;
        let raw = raw_exchange(
            server.addr("d").unwrap(),
            &raw_chat(&server, "d", "hi", true),
        )
        .await;
        assert_eq!(raw.end, RawEnd::Eof);
        let parsed = parse_response(&raw.bytes);
        assert!(parsed.complete, "{dialect}: the HTTP body ends properly");
        assert_eq!(parsed.header("connection"), Some("close"));
        let text = parsed.text();
        assert!(!text.contains("[DONE]") && !text.contains("message_stop"));
        assert_eq!(content_events(dialect, &parse_sse(&text)), 2);
        assert_eq!(
            last_entry(&server, 1).await.outcome.end,
            EndKind::NoTerminator
        );

        // With all chunks sent, everything but the terminator arrives.
        server
            .set_faults(
                "d",
                vec![FaultRule::new(
                    "all",
                    FaultEffect::StreamNoDone { after_chunks: 99 },
                )],
            )
            .unwrap();
        let raw = raw_exchange(
            server.addr("d").unwrap(),
            &raw_chat(&server, "d", "hi", true),
        )
        .await;
        let text = parse_response(&raw.bytes).text();
        let events = parse_sse(&text);
        assert_eq!(content_events(dialect, &events), 6);
        match dialect {
            Dialect::Anthropic => {
                assert_eq!(events.last().unwrap().0.as_deref(), Some("message_delta"));
            }
            _ => assert_eq!(openai_kind(&events.last().unwrap().1), "finish"),
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn context_window_errors_forced_and_natural() {
    for (dialect, file) in [
        (Dialect::Openai, "openai/error_context_length_exceeded.json"),
        (Dialect::Azure, "azure/error_context_length_exceeded.json"),
        (Dialect::Anthropic, "anthropic/error_prompt_too_long.json"),
    ] {
        // Forced by a fault.
        let server = with_fault(dialect, FaultEffect::ContextWindowExceeded {}).await;
        let resp = chat(&server, "d", "short", false).await;
        assert_eq!(resp.status(), 400);
        assert_shape(&fixture(file), &json_of(resp).await);
        server.shutdown().await;

        // Natural: prompt over the configured window, no fault set.
        let mut d = dep("d", dialect);
        d.context_window = Some(10);
        let server = start(vec![d]).await;
        assert_eq!(
            chat(&server, "d", &"x".repeat(40), false).await.status(),
            200
        );
        let resp = chat(&server, "d", &"x".repeat(41), false).await;
        assert_eq!(resp.status(), 400);
        let body = json_of(resp).await;
        assert_shape(&fixture(file), &body);
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("11") && msg.contains("10"), "{msg}");
        let e = last_entry(&server, 2).await;
        assert_eq!(e.fault_id, None);
        assert_eq!(e.rejected.as_deref(), Some("context_window_exceeded"));
        server.shutdown().await;
    }
}

#[tokio::test]
async fn content_policy_as_error_and_as_finish_reason() {
    for (dialect, file) in [
        (Dialect::Openai, "openai/error_content_policy.json"),
        (Dialect::Azure, "azure/error_content_filter.json"),
        (Dialect::Anthropic, "anthropic/error_invalid_request.json"),
    ] {
        let server = with_fault(
            dialect,
            FaultEffect::ContentPolicy {
                mode: ContentPolicyMode::Error,
            },
        )
        .await;
        let resp = chat(&server, "d", "hi", false).await;
        assert_eq!(resp.status(), 400);
        assert_shape(&fixture(file), &json_of(resp).await);

        server
            .set_faults(
                "d",
                vec![FaultRule::new(
                    "filter",
                    FaultEffect::ContentPolicy {
                        mode: ContentPolicyMode::FinishReason,
                    },
                )],
            )
            .unwrap();
        let body = json_of(chat(&server, "d", "hi", false).await).await;
        match dialect {
            Dialect::Anthropic => {
                assert_eq!(body["stop_reason"], "refusal");
                assert_eq!(body["usage"]["output_tokens"], 3);
            }
            Dialect::Azure => {
                assert_shape(&fixture("azure/chat_completion_content_filter.json"), &body);
                assert_eq!(
                    body["choices"][0]["content_filter_results"]["violence"]["filtered"],
                    true
                );
            }
            Dialect::Openai => {
                assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
                assert_eq!(body["usage"]["completion_tokens"], 3);
            }
        }
        let text = chat(&server, "d", "hi", true).await.text().await.unwrap();
        match dialect {
            Dialect::Anthropic => assert!(text.contains("\"stop_reason\":\"refusal\"")),
            _ => assert!(text.contains("\"finish_reason\":\"content_filter\"")),
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn auth_error_is_a_401_in_each_shape() {
    for (dialect, file) in [
        (Dialect::Openai, "openai/error_invalid_api_key.json"),
        (Dialect::Azure, "azure/error_401.json"),
        (Dialect::Anthropic, "anthropic/error_invalid_api_key.json"),
    ] {
        let server = with_fault(dialect, FaultEffect::AuthError {}).await;
        let resp = chat(&server, "d", "hi", false).await;
        assert_eq!(resp.status(), 401);
        assert_shape(&fixture(file), &json_of(resp).await);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn faults_apply_to_embeddings_but_never_to_models_or_control() {
    let server = with_fault(
        Dialect::Openai,
        FaultEffect::HttpError {
            status: 503,
            message: None,
            retry_after: vec![],
            body: None,
            content_type: None,
        },
    )
    .await;
    let base = server.api_base("d");
    let resp = client()
        .post(format!("{base}/embeddings"))
        .json(&serde_json::json!({"model": "e", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        client()
            .get(format!("{base}/models"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let health = client()
        .get(format!("{}/_mock/health", server.base_url("d")))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(server.stats().injected("d", "f"), 1);
    server.shutdown().await;
}
