//! `ProviderClient` against real sockets: wiremock upstreams on 127.0.0.1 for answers and
//! request shapes, and a tiny raw TCP server for what wiremock cannot do (stalls, resets,
//! connections cut mid-body). No fixed ports, no internet, every test bounded in time.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde_json::{json, Map, Value};
use switchyard::config::{Deployment, DeploymentId, ModelInfo, ProviderKind};
use switchyard::providers::{
    chunk_usage, is_usage_chunk, ChatRequest, ChunkStream, FailureClass, ProviderClient,
    ProviderError, Usage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "sk-test-7f3a9c1e5b";
const LIMIT: Duration = Duration::from_secs(20);
const TIMEOUT: Duration = Duration::from_secs(10);

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!("../../src/providers/fixtures/", $path))
    };
}

/// Every test body runs under this bound.
async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test exceeded its time bound")
}

fn deployment(provider: ProviderKind, upstream_model: &str, api_base: String) -> Deployment {
    Deployment {
        id: DeploymentId(format!("{}-east", provider.as_str())),
        model_name: "group".into(),
        provider,
        upstream_model: upstream_model.into(),
        api_base: Some(api_base),
        api_key: Some(String::from(KEY).into()),
        api_version: None,
        timeout: None,
        stream_timeout: None,
        rpm: None,
        tpm: None,
        weight: None,
        order: None,
        max_parallel_requests: None,
        region_name: None,
        cooldown_time: None,
        info: ModelInfo::default(),
    }
}

fn openai(server: &MockServer) -> Deployment {
    deployment(
        ProviderKind::OpenAi,
        "gpt-4o-2024-08-06",
        format!("{}/v1", server.uri()),
    )
}

fn azure(server: &MockServer) -> Deployment {
    let mut d = deployment(ProviderKind::Azure, "gpt4o-prod", server.uri());
    d.api_version = Some("2024-10-21".into());
    d
}

fn anthropic(server: &MockServer) -> Deployment {
    deployment(
        ProviderKind::Anthropic,
        "claude-sonnet-4-5-20250929",
        server.uri(),
    )
}

fn request(body: Value) -> ChatRequest {
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Value::Object(body) = body else {
        panic!("body must be an object")
    };
    ChatRequest {
        body: switchyard::providers::body::RawObject::from_map(&body),
        stream,
        include_usage,
    }
}

fn hello(stream: bool) -> ChatRequest {
    request(
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}], "stream": stream}),
    )
}

async fn mount(server: &MockServer, at: &str, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(at))
        .respond_with(response)
        .mount(server)
        .await;
}

fn json_response(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

fn sse_response(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "text/event-stream")
}

async fn only_request(server: &MockServer) -> Request {
    let mut received = server
        .received_requests()
        .await
        .expect("request recording is on");
    assert_eq!(received.len(), 1, "exactly one upstream call");
    received.remove(0)
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers
        .get(name)
        .map(|v| v.to_str().expect("ascii header"))
}

async fn collect(stream: ChunkStream) -> Vec<Result<Value, ProviderError>> {
    stream.collect().await
}

fn assert_safe(err: &ProviderError) {
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains(KEY),
        "the api key leaked into an error: {shown}"
    );
    assert!(
        !shown.contains("127.0.0.1"),
        "the upstream URL leaked into an error: {shown}"
    );
}

// ---------------------------------------------------------------------------------------------
// Non-streaming success and request shapes

#[tokio::test]
async fn openai_chat_success_and_exact_request_shape() {
    bounded(async {
        let server = MockServer::start().await;
        mount(&server, "/v1/chat/completions", json_response(200, fixture!("openai/chat_response.json"))).await;
        let req = request(json!({
            "model": "gpt-4o", "messages": [{"role": "user", "content": "Capital of France?"}],
            "temperature": 0, "stream": false, "stream_options": {"include_usage": true}
        }));
        let resp = ProviderClient::new().chat(&openai(&server), &req, TIMEOUT).await.unwrap();
        assert_eq!(resp.usage, Usage { prompt_tokens: 24, completion_tokens: 8 });
        assert_eq!(resp.json()["choices"][0]["message"]["content"], "Paris is the capital of France.");

        let sent = only_request(&server).await;
        assert_eq!(sent.url.path(), "/v1/chat/completions");
        assert_eq!(header(&sent, "authorization"), Some(format!("Bearer {KEY}").as_str()));
        assert_eq!(header(&sent, "content-type"), Some("application/json"));
        assert_eq!(
            sent.body_json::<Value>().unwrap(),
            json!({"model": "gpt-4o-2024-08-06", "messages": [{"role": "user", "content": "Capital of France?"}],
                   "temperature": 0})
        );
    })
    .await;
}

#[tokio::test]
async fn azure_chat_uses_deployment_path_api_version_and_api_key() {
    bounded(async {
        let server = MockServer::start().await;
        mount(
            &server,
            "/openai/deployments/gpt4o-prod/chat/completions",
            json_response(200, fixture!("openai/chat_response_tool_calls.json")),
        )
        .await;
        let resp = ProviderClient::new()
            .chat(&azure(&server), &hello(false), TIMEOUT)
            .await
            .unwrap();
        assert_eq!(resp.json()["choices"][0]["finish_reason"], "tool_calls");

        let sent = only_request(&server).await;
        assert_eq!(sent.url.query(), Some("api-version=2024-10-21"));
        assert_eq!(header(&sent, "api-key"), Some(KEY));
        assert_eq!(header(&sent, "authorization"), None);
        assert_eq!(sent.body_json::<Value>().unwrap()["model"], "gpt4o-prod");
    })
    .await;
}

#[tokio::test]
async fn anthropic_chat_is_translated_both_ways() {
    bounded(async {
        let server = MockServer::start().await;
        mount(
            &server,
            "/v1/messages",
            json_response(200, fixture!("anthropic/response_tool_use.json")),
        )
        .await;
        let mut req: Value =
            serde_json::from_str(fixture!("anthropic/request_openai.json")).unwrap();
        req["stream"] = json!(false);
        let resp = ProviderClient::new()
            .chat(&anthropic(&server), &request(req), TIMEOUT)
            .await
            .unwrap();
        let body = resp.json();
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(
            choice["message"]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        assert_eq!(
            resp.usage,
            Usage {
                prompt_tokens: 2620,
                completion_tokens: 89
            }
        );

        let sent = only_request(&server).await;
        assert_eq!(sent.url.path(), "/v1/messages");
        assert_eq!(header(&sent, "x-api-key"), Some(KEY));
        assert_eq!(header(&sent, "anthropic-version"), Some("2023-06-01"));
        assert_eq!(header(&sent, "authorization"), None);
        let mut expected: Value =
            serde_json::from_str(fixture!("anthropic/request_expected.json")).unwrap();
        expected.as_object_mut().unwrap().remove("stream");
        assert_eq!(sent.body_json::<Value>().unwrap(), expected);
    })
    .await;
}

#[tokio::test]
async fn wildcard_deployment_forwards_the_clients_model() {
    bounded(async {
        let server = MockServer::start().await;
        mount(
            &server,
            "/v1/chat/completions",
            json_response(200, fixture!("openai/chat_response.json")),
        )
        .await;
        let d = deployment(ProviderKind::OpenAi, "*", format!("{}/v1", server.uri()));
        let req = request(json!({"model": "openai/gpt-4.1-mini", "messages": []}));
        ProviderClient::new().chat(&d, &req, TIMEOUT).await.unwrap();
        assert_eq!(
            only_request(&server).await.body_json::<Value>().unwrap()["model"],
            "gpt-4.1-mini"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Classification

struct Case {
    provider: ProviderKind,
    status: u16,
    body: &'static str,
    class: FailureClass,
}

#[tokio::test]
async fn every_error_class_from_real_upstream_answers() {
    use FailureClass::*;
    use ProviderKind::{Anthropic as An, Azure as Az, OpenAi as Oa};
    let cases = [
        Case {
            provider: Oa,
            status: 429,
            body: fixture!("openai/error_rate_limit.json"),
            class: RateLimited,
        },
        Case {
            provider: Az,
            status: 429,
            body: fixture!("azure/error_rate_limit.json"),
            class: RateLimited,
        },
        Case {
            provider: An,
            status: 429,
            body: fixture!("anthropic/error_rate_limit.json"),
            class: RateLimited,
        },
        Case {
            provider: An,
            status: 529,
            body: fixture!("anthropic/error_overloaded.json"),
            class: RateLimited,
        },
        Case {
            provider: Oa,
            status: 500,
            body: fixture!("openai/error_server.json"),
            class: ServerError,
        },
        Case {
            provider: Oa,
            status: 503,
            body: "",
            class: ServerError,
        },
        Case {
            provider: An,
            status: 500,
            body: r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
            class: ServerError,
        },
        Case {
            provider: Oa,
            status: 401,
            body: fixture!("openai/error_invalid_api_key.json"),
            class: Auth,
        },
        Case {
            provider: Az,
            status: 401,
            body: fixture!("azure/error_unauthorized.json"),
            class: Auth,
        },
        Case {
            provider: An,
            status: 403,
            body: r#"{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission to use the specified resource."}}"#,
            class: Auth,
        },
        Case {
            provider: Oa,
            status: 404,
            body: fixture!("openai/error_model_not_found.json"),
            class: NotFound,
        },
        Case {
            provider: Az,
            status: 404,
            body: fixture!("azure/error_deployment_not_found.json"),
            class: NotFound,
        },
        Case {
            provider: An,
            status: 404,
            body: fixture!("anthropic/error_not_found.json"),
            class: NotFound,
        },
        Case {
            provider: Oa,
            status: 408,
            body: "",
            class: Timeout,
        },
        Case {
            provider: Oa,
            status: 400,
            body: fixture!("openai/error_bad_request.json"),
            class: BadRequest,
        },
        Case {
            provider: An,
            status: 400,
            body: fixture!("anthropic/error_invalid_request.json"),
            class: BadRequest,
        },
        Case {
            provider: Oa,
            status: 400,
            body: fixture!("openai/error_context_length.json"),
            class: ContextWindowExceeded,
        },
        Case {
            provider: Az,
            status: 400,
            body: fixture!("azure/error_context_length.json"),
            class: ContextWindowExceeded,
        },
        Case {
            provider: An,
            status: 400,
            body: fixture!("anthropic/error_prompt_too_long.json"),
            class: ContextWindowExceeded,
        },
        Case {
            provider: Az,
            status: 400,
            body: fixture!("azure/error_content_filter.json"),
            class: ContentPolicy,
        },
        Case {
            provider: Oa,
            status: 400,
            body: r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#,
            class: ContentPolicy,
        },
    ];
    bounded(async {
        let client = ProviderClient::new();
        for case in cases {
            let server = MockServer::start().await;
            let response = json_response(case.status, case.body);
            let (d, at) = match case.provider {
                ProviderKind::OpenAi => (openai(&server), "/v1/chat/completions"),
                ProviderKind::Azure => (
                    azure(&server),
                    "/openai/deployments/gpt4o-prod/chat/completions",
                ),
                ProviderKind::Anthropic => (anthropic(&server), "/v1/messages"),
            };
            mount(&server, at, response).await;
            let err = client.chat(&d, &hello(false), TIMEOUT).await.unwrap_err();
            assert_eq!(
                err.class, case.class,
                "{:?} HTTP {}: {}",
                case.provider, case.status, case.body
            );
            assert_eq!(err.status, Some(case.status));
            assert_eq!(err.deployment, d.id);
            assert!(!err.message.is_empty());
            assert_safe(&err);
            // Streaming calls classify the same answer the same way, before any chunk.
            let err = match client.chat_stream(&d, &hello(true), TIMEOUT).await {
                Ok(_) => panic!(
                    "{:?} HTTP {} must fail before the stream",
                    case.provider, case.status
                ),
                Err(e) => e,
            };
            assert_eq!(
                err.class, case.class,
                "stream {:?} HTTP {}",
                case.provider, case.status
            );
        }
    })
    .await;
}

#[tokio::test]
async fn error_message_is_the_providers_own() {
    bounded(async {
        let server = MockServer::start().await;
        mount(
            &server,
            "/v1/messages",
            json_response(529, fixture!("anthropic/error_overloaded.json")),
        )
        .await;
        let err = ProviderClient::new()
            .chat(&anthropic(&server), &hello(false), TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(err.message, "Overloaded");
        assert_eq!(err.to_string(), "anthropic-east: rate_limited (HTTP 529)");
    })
    .await;
}

/// Response headers to send, and the accepted `retry_after` range in milliseconds.
type Headers = Vec<(&'static str, String)>;
type MillisRange = (u64, u64);

#[tokio::test]
async fn retry_after_in_every_form() {
    let in_20s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(20));
    let cases: Vec<(Headers, Option<MillisRange>)> = vec![
        (vec![("retry-after", "7".into())], Some((7000, 7000))),
        (vec![("retry-after", "2.5".into())], Some((2500, 2500))),
        (vec![("retry-after-ms", "350.5".into())], Some((350, 351))),
        (vec![("retry-after", in_20s)], Some((18_000, 20_000))),
        // retry-after-ms wins over retry-after.
        (
            vec![
                ("retry-after", "30".into()),
                ("retry-after-ms", "1200".into()),
            ],
            Some((1200, 1200)),
        ),
        (vec![("retry-after", "-3".into())], None),
        (vec![("retry-after", "tomorrow-ish".into())], None),
        (
            vec![("retry-after-ms", "-1".into()), ("retry-after", "4".into())],
            Some((4000, 4000)),
        ),
        (vec![], None),
    ];
    bounded(async {
        let client = ProviderClient::new();
        for (headers, expected) in cases {
            for provider in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
                let server = MockServer::start().await;
                let (d, at, body) = match provider {
                    ProviderKind::Anthropic => (
                        anthropic(&server),
                        "/v1/messages",
                        fixture!("anthropic/error_overloaded.json"),
                    ),
                    _ => (
                        openai(&server),
                        "/v1/chat/completions",
                        fixture!("openai/error_rate_limit.json"),
                    ),
                };
                let status = if provider == ProviderKind::Anthropic {
                    529
                } else {
                    429
                };
                let mut response = json_response(status, body);
                for (k, v) in &headers {
                    response = response.insert_header(*k, v.as_str());
                }
                mount(&server, at, response).await;
                let err = client.chat(&d, &hello(false), TIMEOUT).await.unwrap_err();
                assert_eq!(err.class, FailureClass::RateLimited);
                let got = err.retry_after.map(|d| d.as_millis() as u64);
                match expected {
                    None => assert_eq!(got, None, "{headers:?}"),
                    Some((lo, hi)) => {
                        let got = got.unwrap_or_else(|| panic!("no retry_after for {headers:?}"));
                        assert!((lo..=hi).contains(&got), "{headers:?}: {got} ms");
                    }
                }
            }
        }
    })
    .await;
}

#[tokio::test]
async fn content_filter_finish_reason_on_200_is_content_policy() {
    bounded(async {
        let server = MockServer::start().await;
        mount(
            &server,
            "/openai/deployments/gpt4o-prod/chat/completions",
            json_response(200, fixture!("azure/chat_response_content_filter.json")),
        )
        .await;
        let err = ProviderClient::new()
            .chat(&azure(&server), &hello(false), TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(err.class, FailureClass::ContentPolicy);
        assert_eq!(err.status, Some(200));

        let server = MockServer::start().await;
        mount(
            &server,
            "/v1/messages",
            json_response(200, fixture!("anthropic/response_refusal.json")),
        )
        .await;
        let err = ProviderClient::new()
            .chat(&anthropic(&server), &hello(false), TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(err.class, FailureClass::ContentPolicy);
    })
    .await;
}

#[tokio::test]
async fn garbage_200_is_an_invalid_response_naming_the_deployment() {
    bounded(async {
        for provider in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
            let server = MockServer::start().await;
            let body = "<html><body>upstream proxy error: internal-host-7 token=abc</body></html>";
            let response =
                ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "text/html");
            let d = match provider {
                ProviderKind::Anthropic => {
                    mount(&server, "/v1/messages", response).await;
                    anthropic(&server)
                }
                _ => {
                    mount(&server, "/v1/chat/completions", response).await;
                    openai(&server)
                }
            };
            let err = ProviderClient::new()
                .chat(&d, &hello(false), TIMEOUT)
                .await
                .unwrap_err();
            assert_eq!(err.class, FailureClass::ServerError);
            assert_eq!(err.message, "invalid response from upstream");
            assert!(err.to_string().contains(d.id.as_str()));
            assert!(!format!("{err:?}").contains("internal-host-7"));
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Transport failures

#[tokio::test]
async fn slow_answer_is_a_timeout() {
    bounded(async {
        let server = MockServer::start().await;
        let slow = json_response(200, fixture!("openai/chat_response.json"))
            .set_delay(Duration::from_secs(5));
        mount(&server, "/v1/chat/completions", slow).await;
        let client = ProviderClient::new();
        let err = client
            .chat(&openai(&server), &hello(false), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(err.class, FailureClass::Timeout);
        let err = match client
            .chat_stream(&openai(&server), &hello(true), Duration::from_millis(200))
            .await
        {
            Ok(_) => panic!("the head never came"),
            Err(e) => e,
        };
        assert_eq!(err.class, FailureClass::Timeout);
    })
    .await;
}

#[tokio::test]
async fn refused_connection_is_a_connection_error() {
    bounded(async {
        // Bind and drop: nothing listens on this port any more.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let d = deployment(ProviderKind::OpenAi, "gpt-4o", format!("http://{addr}/v1"));
        let err = ProviderClient::new()
            .chat(&d, &hello(false), TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(err.class, FailureClass::Connection);
        assert_eq!(err.status, None);
        assert_safe(&err);
    })
    .await;
}

#[tokio::test]
async fn reset_before_response_is_a_connection_error() {
    bounded(async {
        let addr = raw_server(Script::ResetAfterRequest).await;
        let d = deployment(ProviderKind::OpenAi, "gpt-4o", format!("http://{addr}/v1"));
        let err = ProviderClient::new()
            .chat(&d, &hello(false), TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(err.class, FailureClass::Connection, "{err:?}");
        assert_safe(&err);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Streams

#[tokio::test]
async fn openai_stream_yields_chunks_then_usage_then_ends() {
    bounded(async {
        let server = MockServer::start().await;
        mount(
            &server,
            "/v1/chat/completions",
            sse_response(fixture!("openai/stream.sse")),
        )
        .await;
        let stream = ProviderClient::new()
            .chat_stream(&openai(&server), &hello(true), TIMEOUT)
            .await
            .unwrap();
        let chunks: Vec<Value> = collect(stream)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
        assert!(is_usage_chunk(&chunks[4]));
        assert_eq!(
            chunk_usage(&chunks[4]),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 3
            })
        );

        let sent = only_request(&server).await;
        let body = sent.body_json::<Value>().unwrap();
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert_eq!(body["model"], "gpt-4o-2024-08-06");
    })
    .await;
}

#[tokio::test]
async fn anthropic_stream_is_translated_to_openai_chunks() {
    bounded(async {
        let server = MockServer::start().await;
        mount(
            &server,
            "/v1/messages",
            sse_response(fixture!("anthropic/stream_tool_use.sse")),
        )
        .await;
        let stream = ProviderClient::new()
            .chat_stream(&anthropic(&server), &hello(true), TIMEOUT)
            .await
            .unwrap();
        let chunks: Vec<Value> = collect(stream)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let calls: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
            .collect();
        assert_eq!(calls[0]["index"], 0);
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert!(calls
            .iter()
            .any(|c| c["index"] == 1 && c["function"]["name"] == "get_time"));
        assert_eq!(
            chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
            "tool_calls"
        );
        assert_eq!(
            chunk_usage(chunks.last().unwrap()),
            Some(Usage {
                prompt_tokens: 472,
                completion_tokens: 89
            })
        );

        let sent = only_request(&server).await;
        let body = sent.body_json::<Value>().unwrap();
        assert_eq!(body["stream"], true);
        assert!(body.get("stream_options").is_none());
    })
    .await;
}

fn assert_broken_after(
    items: &[Result<Value, ProviderError>],
    ok: usize,
    class: FailureClass,
) -> &ProviderError {
    assert_eq!(items.len(), ok + 1, "{items:?}");
    assert!(items[..ok].iter().all(Result::is_ok));
    let err = items[ok]
        .as_ref()
        .expect_err("the stream must end with an error");
    assert_eq!(err.class, class, "{err:?}");
    assert_safe(err);
    err
}

#[tokio::test]
async fn eof_without_terminator_is_a_broken_stream() {
    bounded(async {
        let client = ProviderClient::new();
        let server = MockServer::start().await;
        mount(
            &server,
            "/v1/chat/completions",
            sse_response(fixture!("openai/stream_no_done.sse")),
        )
        .await;
        let stream = client
            .chat_stream(&openai(&server), &hello(true), TIMEOUT)
            .await
            .unwrap();
        assert_broken_after(&collect(stream).await, 2, FailureClass::StreamBroken);

        let server = MockServer::start().await;
        mount(
            &server,
            "/v1/messages",
            sse_response(fixture!("anthropic/stream_no_stop.sse")),
        )
        .await;
        let stream = client
            .chat_stream(&anthropic(&server), &hello(true), TIMEOUT)
            .await
            .unwrap();
        assert_broken_after(&collect(stream).await, 2, FailureClass::StreamBroken);
    })
    .await;
}

#[tokio::test]
async fn in_band_error_event_is_a_broken_stream_with_the_providers_message() {
    bounded(async {
        let client = ProviderClient::new();
        let server = MockServer::start().await;
        mount(
            &server,
            "/v1/chat/completions",
            sse_response(fixture!("openai/stream_error.sse")),
        )
        .await;
        let stream = client
            .chat_stream(&openai(&server), &hello(true), TIMEOUT)
            .await
            .unwrap();
        let items = collect(stream).await;
        let err = assert_broken_after(&items, 2, FailureClass::StreamBroken);
        assert_eq!(
            err.message,
            "The server had an error while processing your request. Sorry about that!"
        );

        let server = MockServer::start().await;
        mount(
            &server,
            "/v1/messages",
            sse_response(fixture!("anthropic/stream_error.sse")),
        )
        .await;
        let stream = client
            .chat_stream(&anthropic(&server), &hello(true), TIMEOUT)
            .await
            .unwrap();
        let items = collect(stream).await;
        let err = assert_broken_after(&items, 2, FailureClass::StreamBroken);
        assert_eq!(err.message, "Overloaded");
    })
    .await;
}

#[tokio::test]
async fn connection_cut_mid_body_is_a_broken_stream() {
    bounded(async {
        let first = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
        let addr = raw_server(Script::StreamThen { first, then: After::Close }).await;
        let d = deployment(ProviderKind::OpenAi, "gpt-4o", format!("http://{addr}/v1"));
        let stream = ProviderClient::new().chat_stream(&d, &hello(true), TIMEOUT).await.unwrap();
        let items = collect(stream).await;
        assert_broken_after(&items, 1, FailureClass::StreamBroken);
    })
    .await;
}

#[tokio::test]
async fn stalled_stream_times_out_per_chunk() {
    bounded(async {
        let first = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n";
        let addr = raw_server(Script::StreamThen { first, then: After::Stall }).await;
        let d = deployment(ProviderKind::Anthropic, "claude-sonnet-4-5-20250929", format!("http://{addr}"));
        let timeout = Duration::from_millis(300);
        let stream = ProviderClient::new().chat_stream(&d, &hello(true), timeout).await.unwrap();
        let items = collect(stream).await;
        let err = assert_broken_after(&items, 1, FailureClass::Timeout);
        assert_eq!(err.deployment, d.id);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Embeddings

#[tokio::test]
async fn embeddings_pass_through_for_openai_and_azure() {
    let answer = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023,-0.0093,0.0158]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5}}"#;
    let body: Map<String, Value> =
        serde_json::from_value(json!({"model": "embed", "input": "The food was delicious"}))
            .unwrap();
    let body = switchyard::providers::body::RawObject::from_map(&body);
    bounded(async {
        let client = ProviderClient::new();
        let server = MockServer::start().await;
        mount(&server, "/v1/embeddings", json_response(200, answer)).await;
        let d = deployment(
            ProviderKind::OpenAi,
            "text-embedding-3-small",
            format!("{}/v1", server.uri()),
        );
        let (value, tokens) = client.embeddings(&d, &body, TIMEOUT).await.unwrap();
        assert_eq!(tokens, 5);
        assert_eq!(value, serde_json::from_str::<Value>(answer).unwrap());
        let sent = only_request(&server).await;
        assert_eq!(
            header(&sent, "authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(
            sent.body_json::<Value>().unwrap(),
            json!({"model": "text-embedding-3-small", "input": "The food was delicious"})
        );

        let server = MockServer::start().await;
        mount(
            &server,
            "/openai/deployments/gpt4o-prod/embeddings",
            json_response(200, answer),
        )
        .await;
        let (_, tokens) = client
            .embeddings(&azure(&server), &body, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(tokens, 5);
        let sent = only_request(&server).await;
        assert_eq!(sent.url.query(), Some("api-version=2024-10-21"));
        assert_eq!(header(&sent, "api-key"), Some(KEY));

        let server = MockServer::start().await;
        mount(
            &server,
            "/v1/embeddings",
            json_response(429, fixture!("openai/error_rate_limit.json")),
        )
        .await;
        let d = deployment(
            ProviderKind::OpenAi,
            "text-embedding-3-small",
            format!("{}/v1", server.uri()),
        );
        let err = client.embeddings(&d, &body, TIMEOUT).await.unwrap_err();
        assert_eq!(err.class, FailureClass::RateLimited);
    })
    .await;
}

#[tokio::test]
async fn embeddings_on_anthropic_are_refused_without_a_call() {
    bounded(async {
        let server = MockServer::start().await;
        let body: Map<String, Value> =
            serde_json::from_value(json!({"model": "m", "input": "x"})).unwrap();
        let body = switchyard::providers::body::RawObject::from_map(&body);
        let err = ProviderClient::new()
            .embeddings(&anthropic(&server), &body, TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(err.class, FailureClass::BadRequest);
        assert_eq!(
            err.message,
            "embeddings are not supported by anthropic deployments"
        );
        assert!(server.received_requests().await.unwrap().is_empty());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 upstream for failures wiremock cannot script.

#[derive(Clone, Copy)]
enum After {
    /// Keep the connection open and send nothing more.
    Stall,
    /// Close without ending the chunked body.
    Close,
}

#[derive(Clone, Copy)]
enum Script {
    /// Read the request, then reset the connection (RST) without answering.
    ResetAfterRequest,
    /// Answer 200 `text/event-stream`, send `first` as one chunk, then `then`.
    StreamThen { first: &'static str, then: After },
}

/// Serves `script` to every connection on a fresh loopback port.
async fn raw_server(script: Script) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket, script));
        }
    });
    addr
}

async fn serve(mut socket: TcpStream, script: Script) {
    read_request(&mut socket).await;
    match script {
        Script::ResetAfterRequest => {
            // SO_LINGER 0 makes close send RST; it does not block with a zero timeout.
            #[allow(deprecated)]
            socket.set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
            drop(socket);
        }
        Script::StreamThen { first, then } => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
            let chunk = format!("{:x}\r\n{first}\r\n", first.len());
            socket.write_all(head.as_bytes()).await.expect("write head");
            socket
                .write_all(chunk.as_bytes())
                .await
                .expect("write chunk");
            socket.flush().await.expect("flush");
            match then {
                After::Close => drop(socket),
                After::Stall => {
                    tokio::time::sleep(LIMIT).await;
                    drop(socket);
                }
            }
        }
    }
}

/// Reads one request: the head, then `content-length` bytes of body.
async fn read_request(socket: &mut TcpStream) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        data.extend_from_slice(&buf[..n]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if data.len() >= end + 4 + length {
            return;
        }
    }
}
