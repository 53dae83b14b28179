//! The audit's own view of what it reviews: model groups' deployments, the global router
//! settings, and optional teams and keys with theirs. Built from a LiteLLM `config.yaml`
//! (through the gateway's own loader) or read from a versioned JSON/YAML document, so the
//! Switchyard export can be adapted to it without touching the checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use switchyard::config::{self, Config, LoadOptions, RouterSettings};
use switchyard_reports::model::{Finding, Severity};

/// `kind` of an audit input document.
pub const INPUT_KIND: &str = "switchyard-audit-input";
/// Version of the audit input document this drill reads.
pub const INPUT_VERSION: u32 = 1;
/// OpenAI's SDKs give up after 600 s: the client timeout assumed when none is given.
pub const DEFAULT_CLIENT_TIMEOUT_S: f64 = 600.0;

/// One deployment as the audit sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentInfo {
    pub id: String,
    pub group: String,
    /// "openai", "azure", "anthropic", or a LiteLLM prefix Switchyard does not serve.
    pub provider: String,
    #[serde(default)]
    pub region: Option<String>,
    /// Maximum input tokens, when known.
    #[serde(default)]
    pub context_window: Option<u64>,
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
}

/// A team or a virtual key with its own router settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// Team alias or key alias (never the key itself).
    pub name: String,
    /// For a key: the team it belongs to.
    #[serde(default)]
    pub team: Option<String>,
    /// Model groups it may call; empty = all.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub max_budget: Option<f64>,
    #[serde(default)]
    pub router_settings: RouterSettings,
}

/// Everything the checks look at.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditInput {
    /// Must be [`INPUT_KIND`] in a document.
    pub kind: String,
    pub version: u32,
    #[serde(default)]
    pub deployments: Vec<DeploymentInfo>,
    #[serde(default)]
    pub router_settings: RouterSettings,
    #[serde(default)]
    pub teams: Vec<Principal>,
    #[serde(default)]
    pub keys: Vec<Principal>,
    /// Seconds the calling clients wait before giving up.
    #[serde(default)]
    pub client_timeout_s: Option<f64>,
    /// Names of MCP servers, when the config has any.
    #[serde(default)]
    pub mcp_servers: Vec<String>,
}

impl AuditInput {
    /// Every model group, with its deployments in file order.
    pub fn groups(&self) -> BTreeMap<&str, Vec<&DeploymentInfo>> {
        let mut m: BTreeMap<&str, Vec<&DeploymentInfo>> = BTreeMap::new();
        for d in &self.deployments {
            m.entry(d.group.as_str()).or_default().push(d);
        }
        m
    }

    /// The deployments a fallback target names: a group (through an alias) or a deployment id.
    pub fn target_deployments(&self, target: &str) -> Vec<&DeploymentInfo> {
        let target = self.canonical(target);
        let by_group: Vec<&DeploymentInfo> = self
            .deployments
            .iter()
            .filter(|d| d.group == target)
            .collect();
        if !by_group.is_empty() {
            return by_group;
        }
        self.deployments.iter().filter(|d| d.id == target).collect()
    }

    /// An alias resolved to its model group; other names unchanged.
    pub fn canonical<'a>(&'a self, name: &'a str) -> &'a str {
        self.router_settings
            .model_group_alias
            .as_ref()
            .and_then(|m| m.get(name))
            .map_or(name, |a| a.target())
    }

    pub fn team(&self, name: &str) -> Option<&Principal> {
        self.teams.iter().find(|t| t.name == name)
    }

    pub fn group_names(&self) -> BTreeSet<&str> {
        self.deployments.iter().map(|d| d.group.as_str()).collect()
    }
}

/// Builds the input from a loaded gateway config.
pub fn from_config(cfg: &Config, mcp_servers: Vec<String>) -> AuditInput {
    let mut deployments: Vec<DeploymentInfo> = cfg
        .model_list
        .iter()
        .map(|d| DeploymentInfo {
            id: d.id.to_string(),
            group: d.model_name.clone(),
            provider: d.provider.as_str().to_owned(),
            region: d.region_name.clone(),
            context_window: d.info.max_input_tokens,
            rpm: d.rpm,
            tpm: d.tpm,
        })
        .collect();
    deployments.extend(cfg.unserved.iter().map(|u| DeploymentInfo {
        id: u.id.to_string(),
        group: u.model_name.clone(),
        provider: u.provider.clone(),
        region: None,
        context_window: None,
        rpm: None,
        tpm: None,
    }));
    AuditInput {
        kind: INPUT_KIND.to_owned(),
        version: INPUT_VERSION,
        deployments,
        router_settings: cfg.router_settings.clone(),
        teams: Vec::new(),
        keys: Vec::new(),
        client_timeout_s: None,
        mcp_servers,
    }
}

/// `kind` of a Switchyard export document (`switchyard config export`).
pub const EXPORT_KIND: &str = "switchyard/state";

fn from_export_text(
    text: &str,
    shown: &str,
    config_path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, InputError> {
    let doc = switchyard::state::parse_document(text, switchyard::state::DEFAULT_MAX_BYTES)
        .map_err(|e| InputError::Document {
            path: shown.to_owned(),
            detail: e.to_string(),
        })?;
    let config = match config_path {
        Some(p) => match config::load_file(p, env, &LoadOptions::default()) {
            Ok(loaded) => Some(loaded.config),
            Err(errors) => {
                return Ok(Loaded::Rejected(
                    errors.errors.iter().map(finding_from_diagnostic).collect(),
                ))
            }
        },
        None => None,
    };
    let listed = doc.config_file.as_ref().map_or(0, |c| c.models.len());
    if config.is_none() && listed > 0 {
        return Err(InputError::Document {
            path: shown.to_owned(),
            detail: format!(
                "the export lists {listed} config-file deployments by name only\nhint: pass --config FILE (the gateway's config.yaml) so the audit knows their providers, regions and limits"
            ),
        });
    }
    Ok(Loaded::Input(Box::new(from_export(&doc, config.as_ref()))))
}

/// Builds the input from a Switchyard export (and the config file it was exported beside):
/// the config's deployments and router settings, the runtime models, and every team and key
/// with its own router settings. Keys and teams are named by alias (never by secret).
pub fn from_export(doc: &switchyard::state::StateDocument, config: Option<&Config>) -> AuditInput {
    let mut input = config.map_or_else(
        || AuditInput {
            kind: INPUT_KIND.to_owned(),
            version: INPUT_VERSION,
            ..AuditInput::default()
        },
        |c| from_config(c, Vec::new()),
    );
    if config.is_none() {
        if let Some(cf) = &doc.config_file {
            input.router_settings = cf.router_settings.clone();
        }
    }
    // The runtime global block (set by an import) goes over the config file's, field by field,
    // as the gateway applies it.
    if let Some(runtime) = &doc.spec.router_settings {
        input.router_settings = switchyard::keys::global::overlay(runtime, &input.router_settings);
    }
    let str_of = |m: &BTreeMap<String, serde_json::Value>, k: &str| {
        m.get(k).and_then(|v| v.as_str()).map(str::to_owned)
    };
    let num_of = |m: &BTreeMap<String, serde_json::Value>, k: &str| {
        m.get(k).and_then(serde_json::Value::as_u64)
    };
    for m in doc.spec.models.iter().flatten() {
        let model = str_of(&m.litellm_params, "model").unwrap_or_default();
        input.deployments.push(DeploymentInfo {
            id: m.model_id.clone(),
            group: m.model_name.clone(),
            provider: model
                .split_once('/')
                .map_or("openai", |(prefix, _)| prefix)
                .to_owned(),
            region: str_of(&m.litellm_params, "region_name"),
            context_window: num_of(&m.model_info, "max_input_tokens"),
            rpm: num_of(&m.litellm_params, "rpm"),
            tpm: num_of(&m.litellm_params, "tpm"),
        });
    }
    let team_names: BTreeMap<&str, String> = doc
        .spec
        .teams
        .iter()
        .flatten()
        .map(|t| {
            (
                t.team_id.as_str(),
                t.team_alias.clone().unwrap_or_else(|| t.team_id.clone()),
            )
        })
        .collect();
    for t in doc.spec.teams.iter().flatten() {
        input.teams.push(Principal {
            name: team_names[t.team_id.as_str()].clone(),
            team: None,
            models: t.models.clone(),
            max_budget: t.max_budget.map(|b| b.dollars()),
            router_settings: t.router_settings.clone().unwrap_or_default(),
        });
    }
    for k in doc.spec.keys.iter().flatten() {
        input.keys.push(Principal {
            name: k.key_alias.clone().unwrap_or_else(|| k.public_id.clone()),
            team: k
                .team_id
                .as_deref()
                .map(|id| team_names.get(id).cloned().unwrap_or_else(|| id.to_owned())),
            models: k.models.clone(),
            max_budget: k.max_budget.map(|b| b.dollars()),
            router_settings: k.router_settings.clone().unwrap_or_default(),
        });
    }
    input
}

/// What `drill audit FILE` was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Decide from the content: an audit input document has `kind: switchyard-audit-input`,
    /// an export `kind: switchyard/state`.
    Auto,
    /// A LiteLLM-compatible `config.yaml`.
    Litellm,
    /// An audit input document (JSON or YAML).
    Input,
    /// A Switchyard export (`kind: switchyard/state`, from `switchyard config export`).
    Export,
}

/// The input could not be read at all (exit 2), as opposed to a config with errors (findings).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not YAML or JSON: {detail}\nhint: pass a LiteLLM config.yaml or a {INPUT_KIND} document")]
    Syntax { path: String, detail: String },
    #[error("{path}: {detail}")]
    Document { path: String, detail: String },
    #[error("{path}: audit input version {found} is newer than this drill reads (version {INPUT_VERSION})\nhint: use a newer drill")]
    NewerVersion { path: String, found: u32 },
}

/// A loaded input, or the findings of a config the gateway itself refuses.
pub enum Loaded {
    Input(Box<AuditInput>),
    /// The gateway's loader rejected the config: every error, as findings.
    Rejected(Vec<Finding>),
}

/// Maps a loader error to a finding. The ids follow the check the error belongs to, so
/// `--fail-on` and SARIF rules treat "the gateway refuses this" like the audit's own checks.
fn finding_from_diagnostic(d: &config::Diagnostic) -> Finding {
    let m = &d.message;
    let id = if m.contains("fallback cycle") {
        "fallback.cycle"
    } else if m.contains("unknown fallback target") || m.contains("for unknown model group") {
        "fallback.target-missing"
    } else if m.contains("environment variable") || m.contains("os.environ/") {
        "credentials.unresolvable"
    } else {
        "config.invalid"
    };
    let location = match (d.line, d.column) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}", d.file.display()),
        (Some(l), None) => format!("{}:{l}", d.file.display()),
        _ => d.file.display().to_string(),
    };
    let mut objects = vec![location];
    if !d.key_path.is_empty() {
        objects.push(d.key_path.clone());
    }
    Finding {
        id: id.to_owned(),
        severity: Severity::Error,
        objects,
        message: format!("the gateway refuses this config: {m}"),
        fix: d
            .hint
            .clone()
            .unwrap_or_else(|| "fix the config so `switchyard --check-config` accepts it".into()),
    }
}

/// Reads `path` as `format`. `env` resolves `os.environ/` references.
pub fn load(
    path: &Path,
    format: InputFormat,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, InputError> {
    load_with(path, format, env, None)
}

/// [`load`], with the gateway's `config.yaml` beside a Switchyard export: an export lists the
/// config file's deployments by name only, so their providers, regions and limits come from it.
pub fn load_with(
    path: &Path,
    format: InputFormat,
    env: &dyn Fn(&str) -> Option<String>,
    config_path: Option<&Path>,
) -> Result<Loaded, InputError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| InputError::Read {
        path: shown.clone(),
        source,
    })?;
    // serde_yaml only decides the kind of document; a LiteLLM config is then read by the
    // gateway's own loader, which also accepts what serde_yaml refuses (duplicate keys).
    let parsed: Result<serde_yaml::Value, _> = serde_yaml::from_str(&text);
    let value = match parsed {
        Ok(v) => v,
        Err(e) if matches!(format, InputFormat::Input | InputFormat::Export) => {
            return Err(InputError::Syntax {
                path: shown,
                detail: e.to_string(),
            })
        }
        Err(e) => {
            return match config::load_str(&text, path, env, &LoadOptions::default()) {
                Ok(loaded) => Ok(Loaded::Input(Box::new(from_config(
                    &loaded.config,
                    Vec::new(),
                )))),
                Err(_) => Err(InputError::Syntax {
                    path: shown,
                    detail: e.to_string(),
                }),
            }
        }
    };
    let Some(map) = value.as_mapping() else {
        return Err(InputError::Syntax {
            path: shown,
            detail: "the document is not a mapping".into(),
        });
    };
    let kind = map.get("kind").and_then(|k| k.as_str());
    if format == InputFormat::Export || (format == InputFormat::Auto && kind == Some(EXPORT_KIND)) {
        return from_export_text(&text, &shown, config_path, env);
    }
    let is_input = kind == Some(INPUT_KIND);
    let as_input = match format {
        InputFormat::Auto => is_input,
        InputFormat::Input => true,
        InputFormat::Litellm | InputFormat::Export => false,
    };
    if as_input {
        if let Some(v) = map.get("version").and_then(|v| v.as_u64()) {
            if v > u64::from(INPUT_VERSION) {
                return Err(InputError::NewerVersion {
                    path: shown,
                    found: u32::try_from(v).unwrap_or(u32::MAX),
                });
            }
        }
        let input: AuditInput =
            serde_yaml::from_value(value).map_err(|e| InputError::Document {
                path: shown.clone(),
                detail: e.to_string(),
            })?;
        if input.kind != INPUT_KIND {
            return Err(InputError::Document {
                path: shown,
                detail: format!("kind is `{}`, expected `{INPUT_KIND}`", input.kind),
            });
        }
        return Ok(Loaded::Input(Box::new(input)));
    }
    const SECTIONS: &[&str] = &[
        "model_list",
        "include",
        "router_settings",
        "litellm_settings",
        "general_settings",
    ];
    if !SECTIONS.iter().any(|k| map.contains_key(*k)) {
        return Err(InputError::Document {
            path: shown,
            detail: format!(
                "none of {} found: not a LiteLLM config\nhint: pass a LiteLLM config.yaml or a {INPUT_KIND} document",
                SECTIONS.join(", ")
            ),
        });
    }
    let mcp_servers = map
        .get("mcp_servers")
        .and_then(|m| m.as_mapping())
        .map(|m| {
            m.keys()
                .map(|k| match k.as_str() {
                    Some(s) => s.to_owned(),
                    None => serde_yaml::to_string(k)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    match config::load_str(&text, path, env, &LoadOptions::default()) {
        Ok(loaded) => Ok(Loaded::Input(Box::new(from_config(
            &loaded.config,
            mcp_servers,
        )))),
        Err(errors) => Ok(Loaded::Rejected(
            errors.errors.iter().map(finding_from_diagnostic).collect(),
        )),
    }
}
