//! `drill run`: loads and checks a scenario (or suite), starts the mocks and the target,
//! runs the phases with their faults, verifies each phase from the mock journals, and writes
//! the outputs. Owns the order of things and the exit code; the parts live in `harness`,
//! `load`, `verify` and `output`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use mock_providers::{FaultRule, MockServer};
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use switchyard::config::Config;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::documented::Documented;
use crate::evidence::{
    ConfigEvidence, Environment, ExportEvidence, FaultEvidence, LatencySummary, PhaseEvidence,
    RunJournal, ScenarioEvidence, ScheduleEvidence, Verdict, SCHEMA_VERSION,
};
use crate::harness::{self, Embedded, Mocks};
use crate::load::{self, LoadCtx, ReadyProfile, RequestRecord, Sequencer};
use crate::scenario::{self, Document, LoadModel, Problem, Scenario, ScenarioError, Source};
use crate::verify;

/// Exit codes (documented in `--help`).
pub mod exit {
    pub const PASSED: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const INCONCLUSIVE: u8 = 2;
    pub const ABORTED: u8 = 3;
    pub const INVALID_SCENARIO: u8 = 4;
    pub const ENVIRONMENT: u8 = 5;
    pub const VERIFICATION: u8 = 6;
}

/// The request log `--keep-request-log` writes in the run directory.
pub const REQUEST_LOG: &str = "requests.jsonl";

/// Default environment variable of the key for profiles without one (external mode).
pub const DEFAULT_CLIENT_KEY_ENV: &str = "DRILL_CLIENT_KEY";

/// Why a run produced no verdict.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Invalid(#[from] ScenarioError),
    #[error("environment error: {0:#}")]
    Environment(anyhow::Error),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Invalid(_) => exit::INVALID_SCENARIO,
            RunError::Environment(_) => exit::ENVIRONMENT,
        }
    }
}

fn env_err(e: anyhow::Error) -> RunError {
    RunError::Environment(e)
}

/// Environment lookup passed in (no process-global state in tests).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// How to run, from the command line.
#[derive(Clone)]
pub struct RunOptions {
    pub target: Option<String>,
    pub config: Option<PathBuf>,
    /// A Switchyard export replacing the scenario's `gateway.export`.
    pub export: Option<PathBuf>,
    /// `PROVIDER=URL` overrides of mock addresses (external mode).
    pub mocks: Vec<String>,
    pub seed: Option<u64>,
    pub fail_fast: bool,
    pub quiet: bool,
    /// Write `requests.jsonl` in the run directory (streamed, one line per request).
    pub keep_request_log: bool,
    /// Environment lookup (client keys in external mode); a map in tests.
    pub env: EnvLookup,
    /// Stops the run (Ctrl-C); outputs are still written.
    pub cancel: CancellationToken,
    /// Progress bars (only on a terminal).
    pub progress: bool,
}

impl RunOptions {
    pub fn new(env: EnvLookup) -> Self {
        Self {
            target: None,
            config: None,
            export: None,
            mocks: Vec::new(),
            seed: None,
            fail_fast: false,
            quiet: true,
            keep_request_log: false,
            env,
            cancel: CancellationToken::new(),
            progress: false,
        }
    }
}

/// The exit code of a verdict.
pub fn exit_code(v: Verdict) -> u8 {
    match v {
        Verdict::Passed => exit::PASSED,
        Verdict::Failed => exit::FAILED,
        Verdict::Inconclusive => exit::INCONCLUSIVE,
        Verdict::Aborted => exit::ABORTED,
        Verdict::Invalid => exit::VERIFICATION,
    }
}

/// Worst of several verdicts: aborted > failed > invalid > inconclusive > passed.
pub fn worst(vs: impl IntoIterator<Item = Verdict>) -> Verdict {
    vs.into_iter().max().unwrap_or(Verdict::Passed)
}

/// A checked scenario, ready to run.
pub struct Prepared {
    pub source: Source,
    pub scenario: Scenario,
    /// Config the embedded gateway runs (None in external mode without one).
    pub run_config: Option<(PathBuf, Config)>,
    pub documented_path: Option<PathBuf>,
    pub documented: Documented,
    /// The export the embedded gateway imports (and that documents, unless
    /// `documented_export` does).
    pub export: Option<crate::export::Export>,
    /// The export the chains were documented from, when one documents them.
    pub documented_export: Option<crate::export::Export>,
}

/// Loads every scenario of `path` (a suite or a single scenario) and checks them all, so a
/// suite with a broken scenario fails before anything runs.
pub fn prepare_all(path: &Path, opts: &RunOptions) -> Result<Vec<Prepared>, RunError> {
    let src = Source::read(path)?;
    match scenario::load(&src)? {
        Document::Scenario(s) => Ok(vec![prepare(src, *s, opts)?]),
        Document::Suite(suite) => {
            let mut problems = Vec::new();
            let mut out = Vec::new();
            if suite.scenarios.is_empty() {
                problems.push(src.problem("scenarios", "a suite lists at least one scenario"));
            }
            for (i, rel) in suite.scenarios.iter().enumerate() {
                let p = src.dir().join(rel);
                let res = Source::read(&p).and_then(|s2| match scenario::load(&s2)? {
                    Document::Scenario(sc) => prepare(s2, *sc, opts).map_err(|e| match e {
                        RunError::Invalid(e) => e,
                        RunError::Environment(e) => {
                            ScenarioError::single(&p.display().to_string(), format!("{e:#}"))
                        }
                    }),
                    Document::Suite(_) => Err(ScenarioError {
                        problems: vec![src.problem(
                            &format!("scenarios[{i}]"),
                            "a suite cannot list another suite",
                        )],
                    }),
                });
                match res {
                    Ok(p) => out.push(p),
                    Err(e) => problems.extend(e.problems),
                }
            }
            if problems.is_empty() {
                Ok(out)
            } else {
                Err(RunError::Invalid(ScenarioError { problems }))
            }
        }
    }
}

fn prepare(src: Source, s: Scenario, opts: &RunOptions) -> Result<Prepared, RunError> {
    let mut problems: Vec<Problem> = scenario::validate::validate(&s, &src);
    let embedded = opts.target.is_none();
    let config_path = opts
        .config
        .clone()
        .or_else(|| s.gateway.config.as_ref().map(|c| src.dir().join(c)));
    let documented_path = s
        .gateway
        .documented_config
        .as_ref()
        .map(|c| src.dir().join(c))
        .or_else(|| config_path.clone());
    if embedded && config_path.is_none() {
        problems.push(src.problem(
            "gateway.config",
            "embedded mode needs a gateway config (gateway.config or --config)",
        ));
    }
    if !problems.is_empty() {
        return Err(ScenarioError { problems }.into());
    }
    let run_config = match (&config_path, embedded) {
        (Some(p), true) => Some((
            p.clone(),
            harness::load_config(p, &s.gateway.env, true, &|_| None)?,
        )),
        _ => None,
    };
    let documented_config = match &documented_path {
        Some(p) => harness::load_config(p, &s.gateway.env, true, &|_| None)?,
        None => Config::default(),
    };
    if let Some((_, c)) = &run_config {
        problems.extend(harness::check_backing(&s, &src, c));
    }
    // The export: `--export` replaces the scenario's `gateway.export`.
    let export_path = opts
        .export
        .clone()
        .or_else(|| s.gateway.export.as_ref().map(|e| src.dir().join(e)));
    let documented_export_path = s
        .gateway
        .documented_export
        .as_ref()
        .map(|e| src.dir().join(e))
        .or_else(|| export_path.clone());
    let export = export_path
        .as_deref()
        .map(crate::export::load)
        .transpose()?;
    let documented_export = match (&documented_export_path, &export) {
        (Some(p), Some(e)) if Some(p) == export_path.as_ref() => Some(e.clone()),
        (Some(p), _) => Some(crate::export::load(p)?),
        (None, _) => None,
    };
    if let Some(e) = &documented_export {
        if documented_path.is_none() {
            problems.push(src.problem(
                "gateway.config",
                "an export lists config-file deployments by name only: gateway.config names the config it was exported beside",
            ));
        }
        problems.extend(crate::export::check(
            e,
            &s,
            &src,
            documented_path.as_ref().map(|_| &documented_config),
        ));
    }
    if let (Some(e), Some(d)) = (&export, &documented_export) {
        if e.source.path != d.source.path {
            let runs: Option<&Config> = run_config.as_ref().map(|(_, c)| c);
            problems.extend(crate::export::check(e, &s, &src, runs));
        }
    }
    if !problems.is_empty() {
        return Err(ScenarioError { problems }.into());
    }
    let documented_of = |config: Config| match &documented_export {
        Some(e) => Documented::with_export(config, &e.doc, &s),
        None => Documented::new(config, &s),
    };
    if documented_path.is_some() {
        let documented = documented_of(documented_config.clone());
        let groups: Vec<String> = documented
            .config
            .group_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        for (i, p) in s.traffic.profiles.iter().enumerate() {
            let g = documented.resolve_model(p.key.as_deref(), &p.request.model);
            if !groups.contains(&g) {
                problems.push(src.problem(
                    &format!("traffic.profiles[{i}].request.model"),
                    format!(
                        "{:?} is not a model group of the gateway config\nknown groups: {}",
                        p.request.model,
                        groups.join(", ")
                    ),
                ));
            }
        }
    }
    if !embedded {
        for (name, k) in &s.traffic.keys {
            if k.env.is_none() {
                problems.push(src.problem(
                    &format!("traffic.keys.{name}.env"),
                    "external mode reads client keys from the environment: name the variable",
                ));
            }
        }
        if opts.mocks.is_empty() {
            for (i, p) in s.providers.iter().enumerate() {
                if p.port == 0 {
                    problems.push(src.problem(
                        &format!("providers[{i}].port"),
                        "external mode needs a fixed port (or --mock PROVIDER=URL) to reach the mock's journal",
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(ScenarioError { problems }.into());
    }
    let documented = documented_of(documented_config);
    Ok(Prepared {
        source: src,
        scenario: s,
        run_config,
        documented_path,
        documented,
        export,
        documented_export,
    })
}

fn file_sha(p: &Path) -> Option<String> {
    std::fs::read(p)
        .ok()
        .map(|b| hex::encode(Sha256::digest(&b)))
}

/// Shared abort state: the first reason wins.
#[derive(Default)]
struct Abort(Mutex<Option<String>>);

impl Abort {
    fn set(&self, why: String) {
        if let Ok(mut g) = self.0.lock() {
            g.get_or_insert(why);
        }
    }
    fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|g| g.clone())
    }
}

/// Runs one prepared scenario and writes its outputs into `out_dir`.
pub async fn run_prepared(
    prep: &Prepared,
    opts: &RunOptions,
    out_dir: &Path,
) -> Result<RunJournal, RunError> {
    let s = &prep.scenario;
    let seed = opts.seed.unwrap_or(s.seed);
    let started_at = chrono::Utc::now();
    let t0 = Instant::now();
    // Digest of the config before anything runs; compared with the one taken at the end.
    let config_sha_start = prep
        .run_config
        .as_ref()
        .map(|(p, _)| p)
        .or(prep.documented_path.as_ref())
        .and_then(|p| file_sha(p));
    let say = |line: String| {
        if !opts.quiet {
            eprintln!("{line}");
        }
    };

    // Mocks.
    let mocks = match &opts.target {
        None => Mocks::Local(
            MockServer::start(harness::mock_spec(s, seed, true))
                .await
                .map_err(|e| env_err(anyhow!("starting the mock providers: {e}")))?,
        ),
        Some(_) => {
            let mut bases = BTreeMap::new();
            for p in &s.providers {
                bases.insert(p.id.clone(), format!("http://127.0.0.1:{}", p.port));
            }
            for m in &opts.mocks {
                let (id, url) = m.split_once('=').ok_or_else(|| {
                    RunError::Invalid(ScenarioError::single(
                        "--mock",
                        format!("{m:?}: expected PROVIDER=URL"),
                    ))
                })?;
                if !bases.contains_key(id) {
                    return Err(RunError::Invalid(ScenarioError::single(
                        "--mock",
                        format!("unknown provider {id:?}"),
                    )));
                }
                bases.insert(id.to_owned(), url.trim_end_matches('/').to_owned());
            }
            Mocks::Remote {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| env_err(e.into()))?,
                bases,
            }
        }
    };
    let result = drive(prep, opts, &mocks, seed, t0, out_dir, &say).await;
    // Leave remote mocks healthy for the next run.
    for id in mocks.ids() {
        let _ = mocks.set_faults(&id, Vec::new()).await;
    }
    mocks.shutdown().await;
    let (phases, abort_reason, target, gateway_kind) = result?;

    let config_path = prep.run_config.as_ref().map(|(p, _)| p.clone());
    let status = if abort_reason.is_some() {
        Verdict::Aborted
    } else {
        worst(phases.iter().map(|p| p.verdict))
    };
    let documented_differs = prep.documented_path != config_path;
    let documented = &prep.documented;
    let mock_of = |d: &str| {
        s.providers
            .iter()
            .find(|p| p.deployment_id() == d)
            .map(|p| p.id.clone())
    };
    let journal = RunJournal {
        schema_version: SCHEMA_VERSION,
        status,
        exit_code: exit_code(status),
        abort_reason,
        started_at: started_at.to_rfc3339(),
        finished_at: chrono::Utc::now().to_rfc3339(),
        duration_ms: t0.elapsed().as_millis() as u64,
        seed,
        scenario: ScenarioEvidence {
            path: prep.source.file(),
            sha256: prep.source.sha256.clone(),
            text: prep.source.text.clone(),
            name: s.metadata.name.clone(),
            title: s.metadata.title.clone(),
            owner: s.metadata.owner.clone(),
            description: s.metadata.description.clone(),
            tags: s.metadata.tags.clone(),
        },
        config: ConfigEvidence {
            path: config_path
                .as_ref()
                .or(prep.documented_path.as_ref())
                .map(|p| p.display().to_string()),
            sha256_start: config_sha_start,
            sha256_end: config_path
                .as_ref()
                .or(prep.documented_path.as_ref())
                .and_then(|p| file_sha(p)),
            documented_path: if documented_differs {
                prep.documented_path
                    .as_ref()
                    .map(|p| p.display().to_string())
            } else {
                None
            },
            documented_sha256: if documented_differs {
                prep.documented_path.as_ref().and_then(|p| file_sha(p))
            } else {
                None
            },
            kind: if prep.documented_export.is_some() {
                "export".to_owned()
            } else {
                "config".to_owned()
            },
            export: export_evidence(prep),
        },
        inventory: documented.inventory(&mock_of),
        documented_chains: documented.all_chains(),
        effective_settings: documented
            .all_settings()
            .into_iter()
            .map(|(k, v)| (k, serde_json::to_value(v).unwrap_or_default()))
            .collect(),
        phases,
        memo: s.memo.clone(),
        environment: Environment {
            drill_version: env!("CARGO_PKG_VERSION").to_owned(),
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            mode: if opts.target.is_some() {
                "external".to_owned()
            } else {
                "embedded".to_owned()
            },
            target,
            gateway: gateway_kind,
        },
        audit: audit_findings(
            &documented.config,
            prep.documented_export.as_ref().map(|e| &e.doc),
        ),
    };
    crate::output::write_run(out_dir, &journal).map_err(env_err)?;
    Ok(journal)
}

/// The export's digests: at the start (as read before the run) and now.
fn export_evidence(prep: &Prepared) -> Option<ExportEvidence> {
    let ran = prep.export.as_ref().or(prep.documented_export.as_ref())?;
    let documented = prep
        .documented_export
        .as_ref()
        .filter(|d| d.source.path != ran.source.path);
    Some(ExportEvidence {
        path: ran.source.file(),
        sha256_start: ran.source.sha256.clone(),
        sha256_end: file_sha(&ran.source.path),
        documented_path: documented.map(|d| d.source.file()),
        documented_sha256: documented.map(|d| d.source.sha256.clone()),
    })
}

/// `drill audit` of the documented config as the drill loaded it (its `os.environ/`
/// references answered the way the run answered them), for the memo.
/// With an export, its teams and keys are audited too (Key > Team > Global).
fn audit_findings(
    config: &switchyard::config::Config,
    export: Option<&switchyard::state::StateDocument>,
) -> Vec<switchyard_reports::model::Finding> {
    let input = match export {
        Some(doc) => crate::audit::input::from_export(doc, Some(config)),
        None => crate::audit::input::from_config(config, Vec::new()),
    };
    let mut f = crate::audit::audit(&input);
    crate::audit::sort(&mut f);
    f
}

type Driven = (Vec<PhaseEvidence>, Option<String>, String, String);

async fn drive(
    prep: &Prepared,
    opts: &RunOptions,
    mocks: &Mocks,
    seed: u64,
    t0: Instant,
    out_dir: &Path,
    say: &dyn Fn(String),
) -> Result<Driven, RunError> {
    let s = &prep.scenario;
    // `--keep-request-log`: one line per request, written as each is verified.
    let mut request_log = if opts.keep_request_log {
        std::fs::create_dir_all(out_dir)
            .and_then(|()| std::fs::File::create(out_dir.join(REQUEST_LOG)))
            .map(std::io::BufWriter::new)
            .map(Some)
            .with_context(|| format!("creating {}", out_dir.join(REQUEST_LOG).display()))
            .map_err(env_err)?
    } else {
        None
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .map_err(|e| env_err(e.into()))?;

    // Target.
    let mut embedded = None;
    let (url, keys, master, gateway_kind) = match (&opts.target, mocks) {
        (None, Mocks::Local(m)) => {
            let Some((_, cfg)) = &prep.run_config else {
                return Err(env_err(anyhow!("embedded mode without a config")));
            };
            let mut cfg = cfg.clone();
            harness::point_at_mocks(&mut cfg, s, m).map_err(env_err)?;
            let g = Embedded::start(cfg).await.map_err(env_err)?;
            let keys = match &prep.export {
                Some(e) => crate::export::import(&client, &g.url, &g.master_key, e, s).await,
                None => harness::provision(&client, &g.url, &g.master_key, s).await,
            }
            .map_err(env_err)?;
            let out = (
                g.url.clone(),
                keys,
                Some(g.master_key.clone()),
                format!("switchyard {} (embedded)", switchyard_version()),
            );
            embedded = Some(g);
            out
        }
        (Some(t), _) => {
            let mut keys = BTreeMap::new();
            for (name, k) in &s.traffic.keys {
                let var = k.env.clone().unwrap_or_default();
                let v = (opts.env)(&var).ok_or_else(|| {
                    env_err(anyhow!("key {name}: environment variable {var} is not set"))
                })?;
                keys.insert(name.clone(), v);
            }
            let var = s
                .gateway
                .client_key_env
                .clone()
                .unwrap_or_else(|| DEFAULT_CLIENT_KEY_ENV.to_owned());
            let master = (opts.env)(&var);
            // Reachability: any HTTP answer will do; a refused connection is exit 5.
            client
                .get(format!("{}/v1/models", t.trim_end_matches('/')))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .with_context(|| format!("target {t} is unreachable"))
                .map_err(env_err)?;
            (
                t.trim_end_matches('/').to_owned(),
                keys,
                master,
                "external".to_owned(),
            )
        }
        (None, Mocks::Remote { .. }) => {
            return Err(env_err(anyhow!("remote mocks need --target")));
        }
    };
    // Remote mocks must answer before anything runs.
    let mut cursors = mocks.cursors().await.map_err(env_err)?;

    let profiles: Vec<ReadyProfile> = s
        .traffic
        .profiles
        .iter()
        .map(|p| ReadyProfile {
            id: p.id.clone(),
            weight: p.weight,
            bearer: match &p.key {
                Some(k) => keys.get(k).cloned(),
                None => master.clone(),
            },
            model: p.request.model.clone(),
            stream: p.request.stream,
            prompt_tokens: p.request.prompt_tokens,
            max_tokens: p.request.max_tokens,
        })
        .collect();
    let ctx = Arc::new(LoadCtx {
        client: client.clone(),
        endpoint: format!("{url}/v1/chat/completions"),
        profiles: profiles.clone(),
        request_timeout: s.traffic.request_timeout.get(),
        rid_prefix: format!("d{:x}", seed % 0xffff_ffff),
        live: Arc::default(),
    });
    let seq = Arc::new(Mutex::new(Sequencer::new(
        ChaCha8Rng::seed_from_u64(seed),
        &profiles,
    )));

    // Deadline and abort.
    let abort = Arc::new(Abort::default());
    let cancel = opts.cancel.child_token();
    let total: Duration = s.phases.iter().map(|p| p.duration.get()).sum();
    let deadline = s
        .stop_conditions
        .deadline
        .map_or(total + Duration::from_secs(60), |d| d.get());
    let watchdog = {
        let cancel = cancel.clone();
        let abort = Arc::clone(&abort);
        let outer = opts.cancel.clone();
        tokio::spawn(async move {
            // Biased: Ctrl-C also cancels the child token; its reason must win.
            tokio::select! {
                biased;
                () = outer.cancelled() => {
                    abort.set("interrupted (Ctrl-C)".to_owned());
                }
                () = tokio::time::sleep(deadline) => {
                    abort.set(format!("deadline of {:.0}s reached", deadline.as_secs_f64()));
                    cancel.cancel();
                }
                () = cancel.cancelled() => {}
            }
        })
    };

    let deployment_of = |mock: &str| {
        s.providers
            .iter()
            .find(|p| p.id == mock)
            .map_or_else(|| mock.to_owned(), |p| p.deployment_id().to_owned())
    };
    let mut phases_out: Vec<PhaseEvidence> = Vec::new();
    let mut earlier: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut failed_total = 0u64;
    let mut aborted = false;
    say(format!(
        "drill: {} ({} phases, seed {seed}) against {url}",
        s.metadata.name,
        s.phases.len()
    ));
    for (pi, phase) in s.phases.iter().enumerate() {
        if cancel.is_cancelled() {
            aborted = true;
            break;
        }
        // Faults: rule ids carry the phase id so counters never mix phases.
        let mut rules: BTreeMap<String, Vec<FaultRule>> =
            mocks.ids().into_iter().map(|id| (id, Vec::new())).collect();
        let mut faults_ev: Vec<FaultEvidence> = Vec::new();
        let mut benign: HashSet<String> = HashSet::new();
        for f in &phase.faults {
            let list = rules.entry(f.provider.clone()).or_default();
            let base = format!(
                "{}.{}",
                phase.id,
                f.id.clone().unwrap_or_else(|| f.effect.kind().to_owned())
            );
            let mut id = base.clone();
            let mut k = 2;
            while list.iter().any(|r| r.id == id) {
                id = format!("{base}.{k}");
                k += 1;
            }
            if !verify::is_failure(&f.effect) {
                benign.insert(id.clone());
            }
            list.push(FaultRule {
                id: id.clone(),
                effect: f.effect.clone(),
                selection: f.selection,
            });
            faults_ev.push(FaultEvidence {
                provider: f.provider.clone(),
                deployment: deployment_of(&f.provider),
                rule_id: id,
                effect: serde_json::to_value(&f.effect).unwrap_or_default(),
                selection: serde_json::to_value(f.selection).unwrap_or_default(),
                start_offset_ms: 0,
                end_offset_ms: 0,
                injected: 0,
            });
        }
        let before = mocks.stats().await.map_err(env_err)?;
        for (id, r) in rules {
            mocks.set_faults(&id, r).await.map_err(env_err)?;
        }
        let phase_start = t0.elapsed();
        say(format!(
            "phase {} ({:.0}s, {} faults) started",
            phase.id,
            phase.duration.get().as_secs_f64(),
            faults_ev.len()
        ));
        let spec = phase.load.unwrap_or(s.traffic.load);
        let ticker = progress(opts, &ctx, &phase.id, phase.duration.get());
        // Requests are verified as they finish (joined with the journal entries drained from
        // the mocks every DRAIN_EVERY) and dropped, so memory does not grow with the phase.
        let faulted: BTreeSet<String> = faults_ev.iter().map(|f| f.deployment.clone()).collect();
        let fold = verify::PhaseFold::new(
            s,
            phase,
            &prep.documented,
            &faulted,
            phase_start.as_secs(),
            phase.duration.get().as_secs().max(1),
        );
        let index = verify::AttemptIndex::new(mocks.ids(), &deployment_of, benign.clone());
        let max_wait = (s.traffic.request_timeout.get() + harness::SETTLE_TIMEOUT).as_millis();
        let mut verifier = verify::Verifier::new(fold, index, max_wait as u64);
        let mut log_error: Option<std::io::Error> = None;
        let mut log_each = |r: &RequestRecord, a: &[verify::Attempt]| {
            if let (Some(w), None) = (request_log.as_mut(), &log_error) {
                if let Err(e) = write_request_line(w, s, &phase.id, r, a) {
                    log_error = Some(e);
                }
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RequestRecord>();
        let clock = Instant::now();
        let since = |c: Instant| c.elapsed().as_millis() as u64;
        let consume = async {
            let mut tick = tokio::time::interval(DRAIN_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    r = rx.recv() => match r {
                        Some(r) => verifier.finished(since(clock), r),
                        None => break,
                    },
                    _ = tick.tick() => {
                        let st = mocks.stats().await?;
                        let (received, completed) = harness::counters(&st);
                        let entries = mocks.drain(&mut cursors).await?;
                        verifier.drained(since(clock), received, &completed, entries, &mut log_each);
                    }
                }
            }
            Ok::<(), anyhow::Error>(())
        };
        let load = load::run_phase(&ctx, pi, &spec, phase.duration.get(), &seq, &cancel, tx);
        let (pl, consumed) = tokio::join!(load, consume);
        consumed.map_err(env_err)?;
        ticker.finish();
        let phase_end = t0.elapsed();
        for f in &mut faults_ev {
            f.start_offset_ms = phase_start.as_millis() as u64;
            f.end_offset_ms = phase_end.as_millis() as u64;
        }
        let settled = mocks.settle().await.map_err(env_err)?;
        let entries = mocks.drain(&mut cursors).await.map_err(env_err)?;
        verifier.finish_all(entries, &mut log_each);
        if let Some(w) = request_log.as_mut() {
            if let Err(e) = std::io::Write::flush(w) {
                log_error.get_or_insert(e);
            }
        }
        if let Some(e) = log_error {
            return Err(env_err(anyhow!("writing requests.jsonl: {e}")));
        }
        let after = mocks.stats().await.map_err(env_err)?;
        for f in &mut faults_ev {
            f.injected = after
                .injected(&f.provider, &f.rule_id)
                .saturating_sub(before.injected(&f.provider, &f.rule_id));
        }
        let warm = phase.warmup.get().as_millis() as u64;
        say(format!(
            "phase {}: verified as requests finished, at most {} requests and correlation ids held at once",
            phase.id, verifier.high_water
        ));
        let verify::PhaseResult {
            checks,
            stats,
            latency: lat,
            ttft,
        } = verifier.fold.finish(&faults_ev, &earlier);
        let (mut verdict, mut reason) = verify::phase_verdict(&checks, &faults_ev);
        if !settled && verdict != Verdict::Invalid {
            verdict = Verdict::Invalid;
            reason = Some("the mocks did not journal every request in time".to_owned());
        }
        failed_total += stats.requests.failed;
        let mut requests = stats.requests;
        requests.overflow = pl.overflow;
        requests.abandoned = pl.abandoned;
        let sent = requests.sent;
        let lagq = |q: f64| {
            if pl.lag_us.is_empty() {
                0.0
            } else {
                pl.lag_us.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let schedule = ScheduleEvidence {
            model: match spec.model {
                LoadModel::Open => "open".to_owned(),
                LoadModel::Closed => "closed".to_owned(),
            },
            target_rate: pl.target_rate,
            scheduled: pl.scheduled,
            achieved_rate: sent as f64 / phase.duration.get().as_secs_f64(),
            lag_p50_ms: lagq(0.5),
            lag_p99_ms: lagq(0.99),
            lag_max_ms: pl.lag_us.max() as f64 / 1000.0,
        };
        if cancel.is_cancelled() {
            if opts.cancel.is_cancelled() {
                abort.set("interrupted (Ctrl-C)".to_owned());
            }
            verdict = Verdict::Aborted;
            aborted = true;
            reason = abort.get().or(Some("stopped".to_owned()));
        }
        let ev = PhaseEvidence {
            id: phase.id.clone(),
            start_offset_ms: phase_start.as_millis() as u64,
            end_offset_ms: phase_end.as_millis() as u64,
            duration_ms: phase.duration.get().as_millis() as u64,
            warmup_ms: warm,
            verdict,
            reason,
            faults: faults_ev,
            requests,
            served_by: stats.served_by,
            upstream_attempts: stats.upstream_attempts,
            checks,
            latency: LatencySummary::from_us(&lat),
            ttft: LatencySummary::from_us(&ttft),
            schedule,
            time_series: stats.time_series,
            header_cross_check: stats.header,
        };
        say(phase_line(&ev));
        earlier.insert(phase.id.clone(), lat);
        let v = ev.verdict;
        phases_out.push(ev);
        if let Some(max) = s.stop_conditions.max_failed_requests {
            if failed_total > max {
                abort.set(format!(
                    "stop condition: {failed_total} failed requests, more than max_failed_requests {max}"
                ));
                cancel.cancel();
                aborted = true;
                break;
            }
        }
        if opts.fail_fast && v != Verdict::Passed {
            say(format!("--fail-fast: stopping after phase {}", phase.id));
            break;
        }
    }
    cancel.cancel();
    let _ = watchdog.await;
    if let Some(g) = embedded {
        g.stop().await;
    }
    let abort_reason = aborted.then(|| abort.get().unwrap_or_else(|| "stopped".to_owned()));
    Ok((phases_out, abort_reason, url, gateway_kind))
}

fn switchyard_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// How often the mocks' journals are drained while a phase runs.
const DRAIN_EVERY: Duration = Duration::from_millis(500);

/// One line of `requests.jsonl`: who sent what, what came back, which deployments were tried
/// and which served. Names keys by alias; never a secret.
fn write_request_line(
    w: &mut impl std::io::Write,
    s: &Scenario,
    phase: &str,
    r: &RequestRecord,
    attempts: &[verify::Attempt],
) -> std::io::Result<()> {
    let p = &s.traffic.profiles[r.profile];
    let key = p.key.as_ref().map(|k| {
        s.traffic
            .keys
            .get(k)
            .and_then(|spec| spec.key_alias.clone())
            .unwrap_or_else(|| k.clone())
    });
    let line = serde_json::json!({
        "id": r.rid,
        "phase": phase,
        "profile": p.id,
        "key_alias": key,
        "sent_ms": r.sent_ms,
        "status": r.status,
        "outcome": r.outcome.as_str(),
        "latency_ms": r.latency_us as f64 / 1000.0,
        "tried": attempts.iter().map(|a| a.deployment.as_str()).collect::<Vec<_>>(),
        "served_by": verify::served_of(attempts),
    });
    serde_json::to_writer(&mut *w, &line)?;
    w.write_all(b"\n")
}

fn phase_line(p: &PhaseEvidence) -> String {
    let served = p
        .served_by
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut line = format!(
        "phase {} {}: sent {} ok {} failed {} overflow {} | served {}",
        p.id,
        p.verdict.as_str(),
        p.requests.sent,
        p.requests.succeeded,
        p.requests.failed,
        p.requests.overflow,
        served
    );
    if let Some(r) = &p.reason {
        line.push_str(&format!("\n  {r}"));
    }
    for c in &p.checks {
        if c.verdict != Verdict::Passed {
            line.push_str(&format!(
                "\n  {} {}: {}",
                c.verdict.as_str(),
                c.check,
                c.message
            ));
        }
    }
    line
}

/// Progress while a phase runs: a bar on a terminal, a plain line every 5 s otherwise.
struct Ticker {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Ticker {
    fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
        }
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

fn progress(opts: &RunOptions, ctx: &Arc<LoadCtx>, phase: &str, duration: Duration) -> Ticker {
    if opts.quiet {
        return Ticker {
            task: None,
            bar: None,
        };
    }
    let live = Arc::clone(&ctx.live);
    let sent0 = live.sent.load(std::sync::atomic::Ordering::Relaxed);
    let start = Instant::now();
    let phase = phase.to_owned();
    let status = move |live: &load::Live| {
        use std::sync::atomic::Ordering::Relaxed;
        let sent = live.sent.load(Relaxed) - sent0;
        let el = start.elapsed().as_secs_f64().max(0.001);
        let share = live
            .by_header
            .lock()
            .map(|m| {
                let total: u64 = m.values().sum::<u64>().max(1);
                m.iter()
                    .map(|(k, v)| format!("{k} {:.0}%", *v as f64 * 100.0 / total as f64))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        format!(
            "{phase} {el:.0}s {:.0} rps ok {} failed {} | {share}",
            sent as f64 / el,
            live.ok.load(Relaxed),
            live.failed.load(Relaxed)
        )
    };
    if opts.progress && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(duration.as_millis() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let b2 = bar.clone();
        let task = tokio::spawn(async move {
            loop {
                b2.set_position(start.elapsed().as_millis() as u64);
                b2.set_message(status(&live));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Ticker {
            task: Some(task),
            bar: Some(bar),
        }
    } else {
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                eprintln!("  {}", status(&live));
            }
        });
        Ticker {
            task: Some(task),
            bar: None,
        }
    }
}

/// Runs a scenario or suite file; returns the exit code.
pub async fn run_file(path: &Path, out: Option<&Path>, opts: &RunOptions) -> u8 {
    let prepared = match prepare_all(path, opts) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return e.exit_code();
        }
    };
    let single = prepared.len() == 1
        && matches!(
            Source::read(path)
                .ok()
                .and_then(|s| scenario::load(&s).ok()),
            Some(Document::Scenario(_))
        );
    let base = out.map_or_else(
        || {
            PathBuf::from("runs").join(if single {
                prepared[0].scenario.metadata.name.clone()
            } else {
                path.file_stem()
                    .map_or_else(|| "suite".to_owned(), |s| s.to_string_lossy().into_owned())
            })
        },
        Path::to_path_buf,
    );
    let mut runs = Vec::new();
    for p in &prepared {
        if opts.cancel.is_cancelled() {
            break;
        }
        let dir = if single {
            base.clone()
        } else {
            base.join(&p.scenario.metadata.name)
        };
        match run_prepared(p, opts, &dir).await {
            Ok(j) => {
                if !opts.quiet {
                    eprintln!("{}", crate::output::summary(&j));
                }
                let stop = opts.fail_fast && j.status != Verdict::Passed;
                runs.push(j);
                if stop {
                    break;
                }
            }
            Err(e) => {
                eprintln!("{}: {e}", p.scenario.metadata.name);
                return e.exit_code();
            }
        }
    }
    let verdict = if opts.cancel.is_cancelled() {
        Verdict::Aborted
    } else {
        worst(runs.iter().map(|j| j.status))
    };
    if !single {
        if let Err(e) = crate::output::write_suite(&base, &runs, verdict) {
            eprintln!("{e:#}");
            return exit::ENVIRONMENT;
        }
    }
    let code = exit_code(verdict);
    println!(
        "drill: {} (exit {code}) — {} scenario(s), outputs in {}",
        verdict.as_str(),
        runs.len(),
        base.display()
    );
    code
}
