//! Malformed or unauthenticated requests get the provider's own 4xx, so a
//! gateway that forgets a header or mangles a body is caught.

use mock_providers::Dialect;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn openai_bad_bodies_get_openai_400s() {
    let server = start(vec![dep("d", Dialect::Openai)]).await;
    let url = format!("{}/chat/completions", server.api_base("d"));
    let resp = client()
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_shape(
        &fixture("openai/error_invalid_json.json"),
        &json_of(resp).await,
    );
    let resp = client()
        .post(&url)
        .json(&json!({"model": "gpt-4o"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_shape(
        &fixture("openai/error_missing_messages.json"),
        &json_of(resp).await,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn missing_or_wrong_keys_get_each_providers_401() {
    let mut o = dep("o", Dialect::Openai);
    o.api_key = Some("sk-o".into());
    let mut z = dep("z", Dialect::Azure);
    z.api_key = Some("az-key".into());
    let mut a = dep("a", Dialect::Anthropic);
    a.api_key = Some("sk-ant".into());
    let server = start(vec![o, z, a]).await;

    let (url, body) = chat_request(&server, "o", "hi", false);
    let r = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_shape(
        &fixture("openai/error_missing_api_key.json"),
        &json_of(r).await,
    );
    let r = client()
        .post(&url)
        .bearer_auth("sk-wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_shape(
        &fixture("openai/error_invalid_api_key.json"),
        &json_of(r).await,
    );
    let r = client()
        .post(&url)
        .bearer_auth("sk-o")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (url, body) = chat_request(&server, "z", "hi", false);
    let r = client()
        .post(&url)
        .bearer_auth("az-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "Azure wants api-key, not Authorization");
    assert_shape(&fixture("azure/error_401.json"), &json_of(r).await);
    let r = client()
        .post(&url)
        .header("api-key", "az-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (url, body) = chat_request(&server, "a", "hi", false);
    let r = client()
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_shape(
        &fixture("anthropic/error_missing_api_key.json"),
        &json_of(r).await,
    );
    let r = client()
        .post(&url)
        .header("x-api-key", "nope")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_shape(
        &fixture("anthropic/error_invalid_api_key.json"),
        &json_of(r).await,
    );
    let r = client()
        .post(&url)
        .header("x-api-key", "sk-ant")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "anthropic-version is required");
    assert_shape(
        &fixture("anthropic/error_missing_version.json"),
        &json_of(r).await,
    );
    let r = client()
        .post(&url)
        .header("x-api-key", "sk-ant")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn anthropic_bad_bodies_get_anthropic_400s() {
    let server = start(vec![dep("a", Dialect::Anthropic)]).await;
    let url = format!("{}/v1/messages", server.api_base("a"));
    let r = client()
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v = json_of(r).await;
    assert_shape(&fixture("anthropic/error_invalid_request.json"), &v);
    assert_eq!(v["error"]["message"], "max_tokens: Field required");
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_models_and_azure_api_version() {
    let mut o = dep("o", Dialect::Openai);
    o.models = vec!["gpt-4o".into()];
    let mut z = dep("z", Dialect::Azure);
    z.models = vec!["gpt-4o".into()];
    let mut a = dep("a", Dialect::Anthropic);
    a.models = vec!["claude-sonnet-4".into()];
    let server = start(vec![o, z, a]).await;

    let r = client()
        .post(format!("{}/chat/complete", server.api_base("o")))
        .json(&openai_body("x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_shape(&fixture("openai/error_invalid_url.json"), &json_of(r).await);
    let mut body = openai_body("x", false);
    body["model"] = json!("gpt-5-turbo");
    let r = client()
        .post(format!("{}/chat/completions", server.api_base("o")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_shape(
        &fixture("openai/error_model_not_found.json"),
        &json_of(r).await,
    );

    let base = server.api_base("z");
    let body = json!({"messages": [{"role": "user", "content": "x"}]});
    let r = client()
        .post(format!("{base}/openai/deployments/gpt-4o/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "api-version is required");
    assert_shape(&fixture("azure/error_404_resource.json"), &json_of(r).await);
    let r = client()
        .post(format!(
            "{base}/openai/deployments/other/chat/completions?api-version=2024-10-21"
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_shape(
        &fixture("azure/error_deployment_not_found.json"),
        &json_of(r).await,
    );

    let mut body = anthropic_body("x", false);
    body["model"] = json!("claude-unknown");
    let r = client()
        .post(format!("{}/v1/messages", server.api_base("a")))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_shape(
        &fixture("anthropic/error_not_found.json"),
        &json_of(r).await,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_http_gets_400_and_is_journaled() {
    let server = start(vec![dep("d", Dialect::Openai)]).await;
    let raw = raw_exchange(server.addr("d").unwrap(), b"THIS IS NOT HTTP\r\n\r\n").await;
    let parsed = parse_response(&raw.bytes);
    assert_eq!(parsed.status, 400);
    assert!(server.wait_for_completed("d", 1, T).await);
    assert_eq!(server.journal()[0].rejected.as_deref(), Some("bad_request"));
    server.shutdown().await;
}

#[tokio::test]
async fn chunked_and_expect_continue_request_bodies_are_read() {
    let server = start(vec![dep("d", Dialect::Openai)]).await;
    let body = serde_json::to_vec(&openai_body("chunked [drill:rid=ch-1]", false)).unwrap();
    let (a, b) = body.split_at(10);
    let mut req = b"POST /v1/chat/completions HTTP/1.1\r\nhost: m\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for part in [a, b] {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let parsed = parse_response(&raw_exchange(server.addr("d").unwrap(), &req).await.bytes);
    assert_eq!(parsed.status, 200);

    // Large bodies make curl-like clients send Expect: 100-continue.
    let big = serde_json::to_vec(&openai_body(&"z".repeat(5000), false)).unwrap();
    let r = client()
        .post(format!("{}/chat/completions", server.api_base("d")))
        .header("expect", "100-continue")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(server.wait_for_completed("d", 2, T).await);
    assert_eq!(server.journal()[0].correlation_id.as_deref(), Some("ch-1"));
    server.shutdown().await;
}
