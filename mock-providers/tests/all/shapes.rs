//! Healthy answers have the providers' real wire shapes (checked against
//! `fixtures/`), consistent usage, and SSE a standard parser accepts.

use eventsource_stream::Eventsource;
use futures::StreamExt;
use mock_providers::{Baseline, Dialect};
use serde_json::{json, Value};

use crate::support::*;

async fn sse_events(resp: reqwest::Response) -> Vec<Sse> {
    assert_eq!(resp.status(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events: Vec<_> =
        tokio::time::timeout(T, resp.bytes_stream().eventsource().collect::<Vec<_>>())
            .await
            .unwrap();
    events
        .into_iter()
        .map(|e| {
            let e = e.expect("eventsource-stream rejected the stream");
            let name = (e.event != "message").then_some(e.event);
            (name, e.data)
        })
        .collect()
}

#[tokio::test]
async fn openai_chat_completion_matches_fixture_and_counts_usage() {
    let server = start(vec![dep("oa", Dialect::Openai)]).await;
    let resp = chat(&server, "oa", "abcdefgh", false).await;
    assert_eq!(resp.status(), 200);
    for h in [
        "x-request-id",
        "openai-version",
        "openai-processing-ms",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
    ] {
        assert!(resp.headers().contains_key(h), "missing header {h}");
    }
    let body = json_of(resp).await;
    assert_shape(&fixture("openai/chat_completion.json"), &body);
    assert_eq!(body["usage"]["prompt_tokens"], 2);
    assert_eq!(body["usage"]["completion_tokens"], 16);
    assert_eq!(body["usage"]["total_tokens"], 18);
    assert_eq!(body["model"], "gpt-4o");
    let words = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .split(' ')
        .count();
    assert_eq!(words, 16);
    server.shutdown().await;
}

#[tokio::test]
async fn content_is_deterministic_per_seed_deployment_and_prompt() {
    let server = start(vec![dep("a", Dialect::Openai), dep("b", Dialect::Openai)]).await;
    let text = |v: Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let a1 = text(json_of(chat(&server, "a", "same prompt", false).await).await);
    let a2 = text(json_of(chat(&server, "a", "same prompt", false).await).await);
    let b1 = text(json_of(chat(&server, "b", "same prompt", false).await).await);
    let a3 = text(json_of(chat(&server, "a", "other prompt", false).await).await);
    assert_eq!(a1, a2);
    assert_ne!(a1, b1);
    assert_ne!(a1, a3);
    server.shutdown().await;
}

#[tokio::test]
async fn max_tokens_caps_the_answer_with_finish_reason_length() {
    let server = start(vec![
        dep("oa", Dialect::Openai),
        dep("an", Dialect::Anthropic),
    ])
    .await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 3});
    let resp = client()
        .post(format!("{}/chat/completions", server.api_base("oa")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let v = json_of(resp).await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    let body =
        json!({"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]});
    let resp = client()
        .post(format!("{}/v1/messages", server.api_base("an")))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    let v = json_of(resp).await;
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 2);
    server.shutdown().await;
}

#[tokio::test]
async fn openai_stream_parses_with_eventsource_and_matches_fixture() {
    let mut d = dep("oa", Dialect::Openai);
    d.baseline = Baseline {
        output_tokens: 5,
        ..Baseline::default()
    };
    let server = start(vec![d]).await;
    let events = sse_events(chat(&server, "oa", "hello", true).await).await;
    assert_stream_matches(
        &fixture_sse("openai/chat_completion_stream.sse"),
        &events,
        |e| openai_kind(&e.1),
    );
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let content: String = events
        .iter()
        .filter(|e| openai_kind(&e.1) == "content")
        .map(|e| {
            let v: Value = serde_json::from_str(&e.1).unwrap();
            v["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(content.split(' ').count(), 5);
    server.shutdown().await;
}

#[tokio::test]
async fn openai_stream_include_usage_ends_with_a_usage_chunk() {
    let server = start(vec![dep("oa", Dialect::Openai)]).await;
    let mut body = openai_body("abcdefgh", true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = client()
        .post(format!("{}/chat/completions", server.api_base("oa")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let events = sse_events(resp).await;
    assert_stream_matches(
        &fixture_sse("openai/chat_completion_stream_include_usage.sse"),
        &events,
        |e| openai_kind(&e.1),
    );
    let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 2);
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 16);
    let content_chunks = events
        .iter()
        .filter(|e| openai_kind(&e.1) == "content")
        .count();
    assert_eq!(content_chunks, 16);
    server.shutdown().await;
}

#[tokio::test]
async fn azure_chat_and_stream_match_fixtures() {
    let mut d = dep("az", Dialect::Azure);
    d.models = vec!["gpt-4o".into()];
    d.api_key = Some("azure-key".into());
    let server = start(vec![d]).await;
    let url = format!(
        "{}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
        server.api_base("az")
    );
    let resp = client()
        .post(&url)
        .header("api-key", "azure-key")
        .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("apim-request-id"));
    let body = json_of(resp).await;
    assert_shape(&fixture("azure/chat_completion.json"), &body);
    assert_eq!(body["model"], "gpt-4o");

    let resp = client()
        .post(&url)
        .header("api-key", "azure-key")
        .json(&json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}))
        .send()
        .await
        .unwrap();
    let events = sse_events(resp).await;
    assert_stream_matches(
        &fixture_sse("azure/chat_completion_stream.sse"),
        &events,
        |e| openai_kind(&e.1),
    );
    server.shutdown().await;
}

#[tokio::test]
async fn anthropic_message_and_stream_match_fixtures() {
    let mut d = dep("an", Dialect::Anthropic);
    d.baseline.output_tokens = 4;
    let server = start(vec![d]).await;
    let resp = chat(&server, "an", "abcdefgh", false).await;
    assert_eq!(resp.status(), 200);
    for h in [
        "request-id",
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-tokens-reset",
    ] {
        assert!(resp.headers().contains_key(h), "missing header {h}");
    }
    let body = json_of(resp).await;
    assert_shape(&fixture("anthropic/message.json"), &body);
    assert_eq!(body["usage"]["input_tokens"], 2);
    assert_eq!(body["usage"]["output_tokens"], 4);

    let events = sse_events(chat(&server, "an", "abcdefgh", true).await).await;
    assert_stream_matches(
        &fixture_sse("anthropic/message_stream.sse"),
        &events,
        anthropic_kind,
    );
    let start: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(start["message"]["usage"]["input_tokens"], 2);
    let delta = events
        .iter()
        .find(|e| e.0.as_deref() == Some("message_delta"))
        .unwrap();
    let delta: Value = serde_json::from_str(&delta.1).unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 4);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.0.as_deref() == Some("content_block_delta"))
            .count(),
        4
    );
    server.shutdown().await;
}

#[tokio::test]
async fn embeddings_and_models_match_fixtures() {
    let mut d = dep("oa", Dialect::Openai);
    d.models = vec!["gpt-4o".into(), "text-embedding-3-small".into()];
    let server = start(vec![d]).await;
    let resp = client()
        .post(format!("{}/embeddings", server.api_base("oa")))
        .json(
            &json!({"model": "text-embedding-3-small", "input": ["abcd", "efgh"], "dimensions": 8}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = json_of(resp).await;
    assert_shape(&fixture("openai/embeddings.json"), &body);
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][1]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(body["usage"]["prompt_tokens"], 2);

    let resp = client()
        .get(format!("{}/models", server.api_base("oa")))
        .send()
        .await
        .unwrap();
    let body = json_of(resp).await;
    assert_shape(&fixture("openai/models.json"), &body);
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    server.shutdown().await;
}
