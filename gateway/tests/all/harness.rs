//! Starts an in-process gateway on 127.0.0.1:0 over a programmatic config, and builds
//! wiremock upstream responses in the OpenAI shape.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard::config::{
    Config, Deployment, DeploymentId, ModelInfo, ProviderKind, RouterSettings,
};
use switchyard::store::Store;
use switchyard::{AppState, StateOptions};
use tokio::sync::oneshot;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub struct Gateway {
    pub url: String,
    /// The running gateway's state (flush spend, inspect limiters).
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn start(config: Config, master_key: Option<&str>) -> Gateway {
    start_with_store(config, master_key, None).await
}

/// [`start`] with a store: virtual keys and the admin API are on.
pub async fn start_with_store(
    config: Config,
    master_key: Option<&str>,
    store: Option<Arc<dyn Store>>,
) -> Gateway {
    let state = AppState::new(
        config,
        StateOptions {
            master_key: master_key.map(|k| k.to_string().into()),
            no_jitter: true,
            store,
        },
    );
    state.load_runtime().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let served = state.clone();
    tokio::spawn(async move {
        switchyard::serve(
            listener,
            served,
            async {
                let _ = rx.await;
            },
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    });
    Gateway {
        url,
        state,
        shutdown: Some(tx),
    }
}

pub fn openai(id: &str, group: &str, server: &MockServer) -> Deployment {
    Deployment {
        id: DeploymentId(id.to_string()),
        model_name: group.to_string(),
        provider: ProviderKind::OpenAi,
        upstream_model: format!("upstream-{id}"),
        api_base: Some(format!("{}/v1", server.uri())),
        api_key: Some("sk-upstream-secret-0123456789".to_string().into()),
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

pub fn config(model_list: Vec<Deployment>, router_settings: RouterSettings) -> Config {
    Config {
        model_list,
        router_settings,
        ..Default::default()
    }
}

pub fn completion(model: &str, content: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    })
}

/// A mock upstream that always answers `template` on the chat route.
pub async fn upstream(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

pub async fn ok_upstream(content: &str) -> MockServer {
    upstream(ResponseTemplate::new(200).set_body_json(completion("m", content))).await
}

pub fn openai_error(
    status: u16,
    kind: &str,
    code: Option<&str>,
    message: &str,
) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

pub async fn calls(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .map(|r| r.len())
        .unwrap_or(0)
}

pub fn sse(chunks: &[Value], done: bool) -> ResponseTemplate {
    let mut body = String::new();
    for c in chunks {
        body.push_str("data: ");
        body.push_str(&c.to_string());
        body.push_str("\n\n");
    }
    if done {
        body.push_str("data: [DONE]\n\n");
    }
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_raw(body, "text/event-stream")
}

pub fn chunk(content: &str, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
    })
}

pub fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

pub async fn post(gw: &Gateway, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap()
}

/// Polls `check` every 100 ms until it holds, for at most `deadline`; whether it held.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if check().await {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The gateway's `/metrics` text.
pub async fn metrics_text(gw: &Gateway) -> String {
    reqwest::get(format!("{}/metrics", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
