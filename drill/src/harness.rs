//! What a run drives: the scenario's mock providers (in-process, or remote ones started by
//! `drill mocks`) and the target gateway (an in-process Switchyard on SQLite in memory, or an
//! external URL). Creates the scenario's teams and keys through the admin API in embedded mode.
//! Does not decide anything about verdicts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use mock_providers::{
    DeploymentSpec, Dialect, FaultRule, JournalEntry, JournalSnapshot, MockServer, MockSpec, Stats,
};
use rand::RngCore as _;
use serde_json::{json, Value};
use switchyard::config::{Config, ProviderKind};
use switchyard::{AppState, StateOptions};
use tokio::sync::oneshot;

use crate::scenario::{Problem, Scenario, ScenarioError, Source};

/// Azure `api-version` the embedded gateway sends to Azure mocks.
const AZURE_API_VERSION: &str = "2024-10-21";

/// How long the mocks get to journal what they received after traffic stops.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The mock spec for a scenario's providers. Embedded: ephemeral ports and a per-provider API
/// key the gateway must present; otherwise (`drill mocks`): the scenario's ports, any key.
pub fn mock_spec(s: &Scenario, seed: u64, embedded: bool) -> MockSpec {
    let deployments = s
        .providers
        .iter()
        .map(|p| {
            let mut d = DeploymentSpec::new(p.id.clone(), p.dialect);
            if embedded {
                d.api_key = Some(mock_api_key(&p.id));
            } else {
                d.port = p.port;
            }
            d.context_window = p.context_window;
            d.baseline = p.baseline.clone();
            d
        })
        .collect();
    MockSpec::new(seed, deployments)
}

fn mock_api_key(provider: &str) -> String {
    format!("sk-drill-mock-{provider}")
}

/// Control of the mocks: in-process handle, or the `/_mock/` API of remote ones.
pub enum Mocks {
    Local(MockServer),
    Remote {
        client: reqwest::Client,
        /// Provider id → base URL (`http://127.0.0.1:PORT`).
        bases: BTreeMap<String, String>,
    },
}

impl Mocks {
    pub fn ids(&self) -> Vec<String> {
        match self {
            Mocks::Local(m) => m.deployment_ids(),
            Mocks::Remote { bases, .. } => bases.keys().cloned().collect(),
        }
    }

    pub async fn set_faults(&self, id: &str, rules: Vec<FaultRule>) -> anyhow::Result<()> {
        match self {
            Mocks::Local(m) => m
                .set_faults(id, rules)
                .map_err(|e| anyhow!("setting faults on {id}: {e}")),
            Mocks::Remote { client, bases } => {
                let base = remote_base(bases, id)?;
                let r = client
                    .put(format!("{base}/_mock/faults"))
                    .json(&rules)
                    .send()
                    .await
                    .with_context(|| format!("setting faults on mock {id} at {base}"))?;
                if !r.status().is_success() {
                    bail!(
                        "mock {id} refused the faults: HTTP {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                }
                Ok(())
            }
        }
    }

    pub async fn stats(&self) -> anyhow::Result<Stats> {
        match self {
            Mocks::Local(m) => Ok(m.stats()),
            Mocks::Remote { client, bases } => {
                let mut out = Stats::default();
                for (id, base) in bases {
                    let v: mock_providers::DeploymentStats = client
                        .get(format!("{base}/_mock/stats"))
                        .send()
                        .await
                        .with_context(|| format!("reading stats of mock {id} at {base}"))?
                        .json()
                        .await
                        .with_context(|| format!("parsing stats of mock {id}"))?;
                    out.deployments.insert(id.clone(), v);
                }
                Ok(out)
            }
        }
    }

    /// Entries of `id` with `seq >= since`.
    pub async fn journal_since(&self, id: &str, since: u64) -> anyhow::Result<JournalSnapshot> {
        match self {
            Mocks::Local(m) => m
                .journal_of(id, since)
                .map_err(|e| anyhow!("reading the journal of {id}: {e}")),
            Mocks::Remote { client, bases } => {
                let base = remote_base(bases, id)?;
                client
                    .get(format!("{base}/_mock/journal?since={since}"))
                    .send()
                    .await
                    .with_context(|| format!("reading the journal of mock {id} at {base}"))?
                    .json()
                    .await
                    .with_context(|| format!("parsing the journal of mock {id}"))
            }
        }
    }

    /// Waits until every mock has journaled every request it received. False on timeout.
    pub async fn settle(&self) -> anyhow::Result<bool> {
        match self {
            Mocks::Local(m) => {
                for id in m.deployment_ids() {
                    let received = m.stats().deployment(&id).map_or(0, |s| s.requests);
                    if !m.wait_for_completed(&id, received, SETTLE_TIMEOUT).await {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Mocks::Remote { .. } => {
                // Poll the counters: no push signal crosses the process boundary.
                let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
                loop {
                    let st = self.stats().await?;
                    if st.deployments.values().all(|d| d.completed >= d.requests) {
                        return Ok(true);
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(false);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// The next journal sequence number of every mock (where the next phase starts reading).
    pub async fn cursors(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        // Journal seqs are stable and dense: length + evicted is the next one.
        let st = self.stats().await?;
        Ok(self
            .ids()
            .into_iter()
            .map(|id| {
                let next = st
                    .deployment(&id)
                    .map_or(0, |d| d.journal_len as u64 + d.journal_dropped);
                (id, next)
            })
            .collect())
    }

    /// Every journal entry since the last drain, by mock id. In-process mocks hand their
    /// entries over (take, not copy: the journal stays short, its cap never drops one); remote
    /// mocks are read from `cursors`, which advance past what was read.
    pub async fn drain(
        &self,
        cursors: &mut BTreeMap<String, u64>,
    ) -> anyhow::Result<BTreeMap<String, Vec<JournalEntry>>> {
        let mut out = BTreeMap::new();
        for id in self.ids() {
            let entries = match self {
                Mocks::Local(m) => {
                    m.take_journal(&id)
                        .map_err(|e| anyhow!("reading the journal of {id}: {e}"))?
                        .entries
                }
                Mocks::Remote { .. } => {
                    let since = cursors.get(&id).copied().unwrap_or(0);
                    let e = self.journal_since(&id, since).await?.entries;
                    if let Some(last) = e.last() {
                        cursors.insert(id.clone(), last.seq + 1);
                    }
                    e
                }
            };
            out.insert(id, entries);
        }
        Ok(out)
    }

    pub async fn shutdown(self) {
        if let Mocks::Local(m) = self {
            m.shutdown().await;
        }
    }
}

/// Requests each mock has received and completed, by mock id.
pub fn counters(st: &Stats) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let received = st
        .deployments
        .iter()
        .map(|(id, d)| (id.clone(), d.requests))
        .collect();
    let completed = st
        .deployments
        .iter()
        .map(|(id, d)| (id.clone(), d.completed))
        .collect();
    (received, completed)
}

fn remote_base<'a>(bases: &'a BTreeMap<String, String>, id: &str) -> anyhow::Result<&'a str> {
    bases
        .get(id)
        .map(String::as_str)
        .ok_or_else(|| anyhow!("no address for mock {id}"))
}

/// Loads a gateway config for the drill. `env` answers `os.environ/` references first; in
/// embedded mode (`placeholder`) every other reference resolves to an unroutable placeholder,
/// since the deployments backed by providers are pointed at the mocks anyway.
pub fn load_config(
    path: &Path,
    env: &BTreeMap<String, String>,
    placeholder: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ScenarioError> {
    let f = |k: &str| {
        env.get(k).cloned().or_else(|| {
            if placeholder {
                Some("http://127.0.0.1:9/drill-placeholder".to_owned())
            } else {
                lookup(k)
            }
        })
    };
    switchyard::config::load_file(path, &f, &switchyard::config::LoadOptions::default())
        .map(|l| l.config)
        .map_err(|e| ScenarioError {
            problems: vec![Problem {
                file: path.display().to_string(),
                location: None,
                path: String::new(),
                message: format!("gateway config: {e}"),
            }],
        })
}

fn provider_kind(d: Dialect) -> ProviderKind {
    match d {
        Dialect::Openai => ProviderKind::OpenAi,
        Dialect::Azure => ProviderKind::Azure,
        Dialect::Anthropic => ProviderKind::Anthropic,
    }
}

/// Checks that every deployment of `config` is backed by a provider of the same dialect, and
/// every provider backs a deployment. Problems point into the scenario.
pub fn check_backing(s: &Scenario, src: &Source, config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, p) in s.providers.iter().enumerate() {
        match config
            .model_list
            .iter()
            .find(|d| d.id.as_str() == p.deployment_id())
        {
            None => out.push(src.problem(
                &format!("providers[{i}].deployment"),
                format!(
                    "the gateway config has no deployment {:?}\nits deployments: {}",
                    p.deployment_id(),
                    config
                        .model_list
                        .iter()
                        .map(|d| d.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            Some(d) if d.provider != provider_kind(p.dialect) => out.push(src.problem(
                &format!("providers[{i}].dialect"),
                format!(
                    "deployment {:?} is a {} deployment, the provider speaks {}",
                    d.id.as_str(),
                    d.provider.as_str(),
                    p.dialect
                ),
            )),
            Some(_) => {}
        }
    }
    for d in &config.model_list {
        if !s
            .providers
            .iter()
            .any(|p| p.deployment_id() == d.id.as_str())
        {
            out.push(src.problem(
                "providers",
                format!(
                    "deployment {:?} (group {:?}) of the gateway config has no provider: in embedded mode every deployment needs one",
                    d.id.as_str(),
                    d.model_name
                ),
            ));
        }
    }
    out
}

/// Points every deployment of `config` at its provider's mock.
pub fn point_at_mocks(config: &mut Config, s: &Scenario, mocks: &MockServer) -> anyhow::Result<()> {
    for d in &mut config.model_list {
        let p = s
            .providers
            .iter()
            .find(|p| p.deployment_id() == d.id.as_str())
            .ok_or_else(|| anyhow!("deployment {} has no provider", d.id))?;
        let base = mocks
            .try_base_url(&p.id)
            .map_err(|e| anyhow!("mock {} is not running: {e}", p.id))?;
        d.api_base = Some(format!("{base}{}", p.dialect.api_base_suffix()));
        d.api_key = Some(mock_api_key(&p.id).into());
        if p.dialect == Dialect::Azure && d.api_version.is_none() {
            d.api_version = Some(AZURE_API_VERSION.to_owned());
        }
    }
    Ok(())
}

/// An in-process gateway.
pub struct Embedded {
    pub url: String,
    pub master_key: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Embedded {
    /// Starts Switchyard on 127.0.0.1:0 with SQLite in memory.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let store = switchyard::store::connect("sqlite::memory:")
            .await
            .map_err(|e| anyhow!("opening the in-memory store: {e}"))?;
        let mut raw = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let master_key = format!("sk-drill-master-{}", hex::encode(raw));
        let state = AppState::new(
            config,
            StateOptions {
                master_key: Some(master_key.clone().into()),
                no_jitter: false,
                store: Some(store),
            },
        );
        // As `switchyard serve` does: the store's runtime state, and its change version.
        state
            .load_runtime()
            .await
            .map_err(|e| anyhow!("reading the in-memory store: {e}"))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the gateway listener")?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) =
                switchyard::serve(listener, state, shutdown, Duration::from_secs(2)).await
            {
                eprintln!("embedded gateway stopped with an error: {e}");
            }
        });
        Ok(Self {
            url,
            master_key,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Creates the scenario's teams and keys through the admin API; returns key name → secret.
pub async fn provision(
    client: &reqwest::Client,
    url: &str,
    master_key: &str,
    s: &Scenario,
) -> anyhow::Result<BTreeMap<String, String>> {
    for (name, t) in &s.traffic.teams {
        let mut body = json!({
            "team_id": name,
            "team_alias": t.team_alias.clone().unwrap_or_else(|| name.clone()),
        });
        if let Some(rs) = &t.router_settings {
            body["router_settings"] = rs.clone();
        }
        admin_post(client, url, master_key, "/team/new", &body)
            .await
            .with_context(|| format!("creating team {name}"))?;
    }
    let mut keys = BTreeMap::new();
    for (name, k) in &s.traffic.keys {
        let mut body = json!({
            "key_alias": k.key_alias.clone().unwrap_or_else(|| name.clone()),
        });
        if let Some(team) = &k.team {
            body["team_id"] = json!(team);
        }
        if let Some(rs) = &k.router_settings {
            body["router_settings"] = rs.clone();
        }
        let v = admin_post(client, url, master_key, "/key/generate", &body)
            .await
            .with_context(|| format!("creating key {name}"))?;
        keys.insert(name.clone(), secret_of(&v, "/key/generate")?);
    }
    Ok(keys)
}

/// The key secret of a `/key/generate` or `/key/regenerate` answer.
pub(crate) fn secret_of(answer: &Value, path: &str) -> anyhow::Result<String> {
    answer
        .get("key")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{path} answered without a key"))
}

pub(crate) async fn admin_post(
    client: &reqwest::Client,
    url: &str,
    master_key: &str,
    path: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let r = client
        .post(format!("{url}{path}"))
        .bearer_auth(master_key)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("POST {path}: HTTP {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("POST {path}: answer is not JSON"))
}
