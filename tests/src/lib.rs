//! Black-box test harness: real mock providers plus an in-process gateway, both on 127.0.0.1:0.
//!
//! A test describes its upstreams with [`Upstream`] (one mock deployment each, standing in for
//! one gateway deployment), starts everything with [`Env::start`], sends chat requests that
//! carry a correlation marker (`[drill:rid=ID]`) through the gateway, and asserts the path from
//! the mock journals: which deployment saw which correlation id, how often, with which fault.
//! Gateway `x-switchyard-*` headers are a cross-check only.

use std::time::Duration;

use anyhow::{bail, Context as _};
use mock_providers::{
    marker, Baseline, DeploymentSpec, Dialect, FaultRule, JournalEntry, MockServer, MockSpec, Stats,
};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use switchyard::config::{
    Config, Deployment, DeploymentId, ModelInfo, ProviderKind, RouterSettings,
};
use switchyard::{AppState, StateOptions};
use tokio::sync::oneshot;

/// The master key the gateway requires; every helper request presents it.
pub const MASTER_KEY: &str = "sk-e2e-master-key";

/// Upstream model of OpenAI deployments (the mock serves only this name).
pub const OPENAI_MODEL: &str = "gpt-4o-mini";

/// Upstream model of Anthropic deployments (the mock serves only this name).
pub const ANTHROPIC_MODEL: &str = "claude-3-5-haiku-20241022";

/// Azure `api-version` the gateway sends (new enough for `stream_options`).
pub const AZURE_API_VERSION: &str = "2024-10-21";

/// Tokens every mock generates per answer unless an [`Upstream`] says otherwise.
pub const OUTPUT_TOKENS: u32 = 8;

/// How long a single client request may take before the helper gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How long [`Env::settle`] waits for the mocks to journal what they received.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The Azure deployment name (URL path segment) of mock deployment `id`.
pub fn azure_deployment_name(id: &str) -> String {
    format!("az-{id}")
}

/// The model name the gateway must send to a deployment of `dialect` with id `id`.
pub fn upstream_model(dialect: Dialect, id: &str) -> String {
    match dialect {
        Dialect::Openai => OPENAI_MODEL.to_owned(),
        Dialect::Azure => azure_deployment_name(id),
        Dialect::Anthropic => ANTHROPIC_MODEL.to_owned(),
    }
}

/// One mock deployment and the gateway deployment that points at it.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Deployment id, the same in the mock and the gateway.
    pub id: String,
    pub dialect: Dialect,
    /// Gateway model group (`model_name`).
    pub group: String,
    /// Fault rules active from the start.
    pub faults: Vec<FaultRule>,
    pub output_tokens: u32,
    /// Gateway per-deployment `timeout`.
    pub timeout: Option<Duration>,
    /// Gateway per-deployment `stream_timeout`.
    pub stream_timeout: Option<Duration>,
    /// Gateway priority tier.
    pub order: Option<u32>,
}

impl Upstream {
    pub fn new(id: &str, dialect: Dialect, group: &str) -> Self {
        Self {
            id: id.to_owned(),
            dialect,
            group: group.to_owned(),
            faults: Vec::new(),
            output_tokens: OUTPUT_TOKENS,
            timeout: None,
            stream_timeout: None,
            order: None,
        }
    }

    pub fn openai(id: &str, group: &str) -> Self {
        Self::new(id, Dialect::Openai, group)
    }

    pub fn azure(id: &str, group: &str) -> Self {
        Self::new(id, Dialect::Azure, group)
    }

    pub fn anthropic(id: &str, group: &str) -> Self {
        Self::new(id, Dialect::Anthropic, group)
    }

    pub fn fault(mut self, rule: FaultRule) -> Self {
        self.faults.push(rule);
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    pub fn stream_timeout(mut self, t: Duration) -> Self {
        self.stream_timeout = Some(t);
        self
    }

    pub fn order(mut self, order: u32) -> Self {
        self.order = Some(order);
        self
    }

    pub fn api_key(&self) -> String {
        format!("sk-{}-upstream-key", self.id)
    }

    fn mock_spec(&self) -> DeploymentSpec {
        let mut spec = DeploymentSpec::new(self.id.clone(), self.dialect);
        spec.api_key = Some(self.api_key());
        // The mock refuses any other model name: catches a gateway that forwards the
        // client's group name instead of the deployment's upstream model.
        spec.models = vec![upstream_model(self.dialect, &self.id)];
        spec.baseline = Baseline {
            output_tokens: self.output_tokens,
            ..Baseline::default()
        };
        spec.faults = self.faults.clone();
        spec
    }

    fn gateway_deployment(&self, mocks: &MockServer) -> anyhow::Result<Deployment> {
        let base = mocks
            .try_base_url(&self.id)
            .with_context(|| format!("mock deployment {} is not running", self.id))?;
        let (provider, api_version) = match self.dialect {
            Dialect::Openai => (ProviderKind::OpenAi, None),
            Dialect::Azure => (ProviderKind::Azure, Some(AZURE_API_VERSION.to_owned())),
            Dialect::Anthropic => (ProviderKind::Anthropic, None),
        };
        Ok(Deployment {
            id: DeploymentId(self.id.clone()),
            model_name: self.group.clone(),
            provider,
            upstream_model: upstream_model(self.dialect, &self.id),
            api_base: Some(format!("{base}{}", self.dialect.api_base_suffix())),
            api_key: Some(self.api_key().into()),
            api_version,
            timeout: self.timeout,
            stream_timeout: self.stream_timeout,
            rpm: None,
            tpm: None,
            weight: None,
            order: self.order,
            max_parallel_requests: None,
            region_name: None,
            cooldown_time: None,
            info: ModelInfo::default(),
        })
    }
}

/// Running mocks and a gateway in front of them.
pub struct Env {
    pub mocks: MockServer,
    /// `http://127.0.0.1:PORT` of the gateway.
    pub url: String,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Env {
    /// Starts one mock deployment per upstream and a gateway (no jitter, master key
    /// [`MASTER_KEY`]) whose deployments point at them.
    pub async fn start(upstreams: Vec<Upstream>, settings: RouterSettings) -> anyhow::Result<Self> {
        let spec = MockSpec::new(7, upstreams.iter().map(Upstream::mock_spec).collect());
        let mocks = MockServer::start(spec).await.context("starting mocks")?;
        let model_list = upstreams
            .iter()
            .map(|u| u.gateway_deployment(&mocks))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let config = Config {
            model_list,
            router_settings: settings,
            ..Config::default()
        };
        let state = AppState::new(
            config,
            StateOptions {
                master_key: Some(MASTER_KEY.to_owned().into()),
                no_jitter: true,
                ..StateOptions::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the gateway listener")?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) =
                switchyard::serve(listener, state, shutdown, Duration::from_secs(1)).await
            {
                eprintln!("gateway stopped with an error: {e}");
            }
        });
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the client")?;
        Ok(Self {
            mocks,
            url,
            client,
            shutdown: Some(tx),
        })
    }

    /// `POST /v1/chat/completions` with `body`, reading the whole JSON answer.
    pub async fn chat(&self, body: &Value) -> anyhow::Result<Reply> {
        let resp = self.post(body).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.context("reading the gateway's answer")?;
        let json = serde_json::from_str(&text)
            .with_context(|| format!("gateway answered HTTP {status} with non-JSON: {text}"))?;
        Ok(Reply {
            status,
            headers,
            json,
        })
    }

    /// `POST /v1/chat/completions` with a streaming `body`, reading the whole SSE answer.
    pub async fn chat_stream(&self, body: &Value) -> anyhow::Result<StreamReply> {
        let resp = self.post(body).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let raw = resp.text().await.context("reading the gateway's stream")?;
        Ok(StreamReply::parse(status, headers, raw))
    }

    async fn post(&self, body: &Value) -> anyhow::Result<reqwest::Response> {
        self.client
            .post(format!("{}/v1/chat/completions", self.url))
            .bearer_auth(MASTER_KEY)
            .json(body)
            .send()
            .await
            .context("sending to the gateway")
    }

    /// Waits until every mock has journaled every request it received (a response can
    /// reach the client a moment before the mock records how it ended).
    pub async fn settle(&self) -> anyhow::Result<()> {
        for id in self.mocks.deployment_ids() {
            let received = self.mocks.stats().deployment(&id).map_or(0, |s| s.requests);
            if !self
                .mocks
                .wait_for_completed(&id, received, SETTLE_TIMEOUT)
                .await
            {
                bail!(
                    "mock {id} did not journal its {received} requests within {SETTLE_TIMEOUT:?}"
                );
            }
        }
        Ok(())
    }

    /// The journal of one mock deployment (empty for an unknown id).
    pub fn journal(&self, id: &str) -> Vec<JournalEntry> {
        self.mocks
            .journal_of(id, 0)
            .map(|s| s.entries)
            .unwrap_or_default()
    }

    /// Journal entries of deployment `id` for correlation id `rid`, in arrival order.
    pub fn hits(&self, id: &str, rid: &str) -> Vec<JournalEntry> {
        let mut hits: Vec<JournalEntry> = self
            .journal(id)
            .into_iter()
            .filter(|e| e.correlation_id.as_deref() == Some(rid))
            .collect();
        hits.sort_by_key(|e| (e.t_ms, e.seq));
        hits
    }

    /// How many requests carrying `rid` each deployment saw, by deployment id (every
    /// deployment listed, zeros included).
    pub fn hit_counts(&self, rid: &str) -> Vec<(String, usize)> {
        self.mocks
            .deployment_ids()
            .into_iter()
            .map(|id| {
                let n = self.hits(&id, rid).len();
                (id, n)
            })
            .collect()
    }

    pub fn stats(&self) -> Stats {
        self.mocks.stats()
    }
}

/// A user message that carries the correlation marker of `rid`.
///
/// # Errors
/// When `rid` is not a valid correlation id.
pub fn prompt(rid: &str) -> anyhow::Result<String> {
    let m = marker(rid).with_context(|| format!("{rid:?} is not a valid correlation id"))?;
    Ok(format!("Say something about rail yards. {m}"))
}

/// A non-streaming chat request for `model` carrying `rid`.
pub fn chat_body(model: &str, rid: &str) -> anyhow::Result<Value> {
    Ok(json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt(rid)?}],
    }))
}

/// A streaming chat request for `model` carrying `rid`.
pub fn stream_body(model: &str, rid: &str, include_usage: bool) -> anyhow::Result<Value> {
    let mut body = chat_body(model, rid)?;
    body["stream"] = Value::Bool(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    Ok(body)
}

/// A complete JSON answer from the gateway.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Reply {
    /// A response header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        header(&self.headers, name)
    }

    /// `choices[0].message.content` ("" when absent).
    pub fn content(&self) -> &str {
        self.json
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// A complete SSE answer from the gateway, split into its `data:` payloads.
#[derive(Debug)]
pub struct StreamReply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as received.
    pub raw: String,
    /// Every event's data, in order (`[DONE]` included as text).
    pub data: Vec<String>,
}

impl StreamReply {
    /// Splits an SSE body into its events' `data` fields.
    pub fn parse(status: u16, headers: HeaderMap, raw: String) -> Self {
        let data = raw
            .replace("\r\n", "\n")
            .split("\n\n")
            .filter_map(|event| {
                let lines: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                (!lines.is_empty()).then(|| lines.join("\n"))
            })
            .collect();
        Self {
            status,
            headers,
            raw,
            data,
        }
    }

    pub fn header(&self, name: &str) -> &str {
        header(&self.headers, name)
    }

    /// Whether the last event is `[DONE]`.
    pub fn done(&self) -> bool {
        self.data.last().is_some_and(|d| d == "[DONE]")
    }

    /// Whether `[DONE]` appears anywhere.
    pub fn has_done(&self) -> bool {
        self.data.iter().any(|d| d == "[DONE]")
    }

    /// The JSON events (everything but `[DONE]`); unparsable events become strings.
    pub fn events(&self) -> Vec<Value> {
        self.data
            .iter()
            .filter(|d| d.as_str() != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.clone())))
            .collect()
    }

    /// `chat.completion.chunk` events that have choices.
    pub fn chunks(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| {
                e.get("choices")
                    .and_then(Value::as_array)
                    .is_some_and(|c| !c.is_empty())
            })
            .collect()
    }

    /// The concatenated `delta.content` of every chunk.
    pub fn content(&self) -> String {
        self.chunks()
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect()
    }

    /// Events that carry a `usage` object.
    pub fn usage(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter_map(|e| e.get("usage").filter(|u| u.is_object()).cloned())
            .collect()
    }

    /// Events of the form `{"error": {...}}`.
    pub fn errors(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter_map(|e| e.get("error").filter(|u| u.is_object()).cloned())
            .collect()
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
