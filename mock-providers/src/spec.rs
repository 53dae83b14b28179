//! The mock spec: which deployments to serve, in which dialect, with which
//! baseline behaviour. YAML-loadable authoring types with strict checking;
//! faults are defined in `faults`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::duration::HumanDuration;
use crate::faults::{validate_rules, FaultRule};

/// Default journal capacity per deployment (entries kept in the ring buffer).
pub const DEFAULT_JOURNAL_CAPACITY: usize = 100_000;

/// Default generated output length, in tokens (one token per stream chunk).
pub const DEFAULT_OUTPUT_TOKENS: u32 = 16;

/// The upstream API a deployment imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// OpenAI: `POST /v1/chat/completions`, `POST /v1/embeddings`,
    /// `GET /v1/models`; `Authorization: Bearer`. api_base = base_url + "/v1".
    Openai,
    /// Azure OpenAI: `POST /openai/deployments/{deployment}/chat/completions?api-version=...`
    /// (and `/embeddings`); `api-key` header. api_base = base_url.
    Azure,
    /// Anthropic: `POST /v1/messages`, `GET /v1/models`; `x-api-key` and
    /// `anthropic-version` headers. api_base = base_url.
    Anthropic,
}

impl Dialect {
    /// The config tag, as written in specs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Dialect::Openai => "openai",
            Dialect::Azure => "azure",
            Dialect::Anthropic => "anthropic",
        }
    }

    /// The path a gateway's `api_base` must add to the server's base URL.
    pub const fn api_base_suffix(self) -> &'static str {
        match self {
            Dialect::Openai => "/v1",
            Dialect::Azure | Dialect::Anthropic => "",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Baseline behaviour of a healthy deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Baseline {
    /// Time to first token (default `0s`). For non-streaming requests the
    /// whole answer is delayed by `ttft + inter_token * output_tokens`.
    pub ttft: HumanDuration,
    /// Delay between stream chunks (default `0s`).
    pub inter_token: HumanDuration,
    /// Tokens generated per answer (default 16), capped by the request's
    /// `max_tokens` / `max_completion_tokens`.
    pub output_tokens: u32,
}

impl Default for Baseline {
    fn default() -> Self {
        Self {
            ttft: HumanDuration::ZERO,
            inter_token: HumanDuration::ZERO,
            output_tokens: DEFAULT_OUTPUT_TOKENS,
        }
    }
}

/// One mock deployment, served on its own listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Unique id; names the deployment in the journal, stats and library calls.
    pub id: String,
    /// Which API it speaks.
    pub dialect: Dialect,
    /// When set, requests must authenticate with it (OpenAI
    /// `Authorization: Bearer`, Azure `api-key`, Anthropic `x-api-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Model names served (OpenAI/Anthropic: the body's `model`; Azure: the
    /// `{deployment}` path segment). Empty (default) accepts any name.
    /// `model: gpt-4o` is accepted as a one-element list.
    #[serde(
        default,
        alias = "model",
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub models: Vec<String>,
    /// Context window in tokens; longer prompts get the provider's
    /// context-window error. Unset (default): unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// Healthy behaviour.
    #[serde(default)]
    pub baseline: Baseline,
    /// Port on 127.0.0.1 (default 0: an ephemeral port).
    #[serde(default)]
    pub port: u16,
    /// Faults active from the start (default none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultRule>,
}

impl DeploymentSpec {
    /// A deployment with defaults for everything but id and dialect.
    pub fn new(id: impl Into<String>, dialect: Dialect) -> Self {
        Self {
            id: id.into(),
            dialect,
            api_key: None,
            models: Vec::new(),
            context_window: None,
            baseline: Baseline::default(),
            port: 0,
            faults: Vec::new(),
        }
    }
}

/// Everything a mock server serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockSpec {
    /// Drives every seeded choice (fault draws, latency samples, content).
    #[serde(default)]
    pub seed: u64,
    /// Journal entries kept per deployment (ring buffer; older entries are
    /// dropped and counted). Default 100000.
    #[serde(default = "default_capacity")]
    pub journal_capacity: usize,
    /// The deployments, each on its own listener.
    pub deployments: Vec<DeploymentSpec>,
}

fn default_capacity() -> usize {
    DEFAULT_JOURNAL_CAPACITY
}

impl MockSpec {
    /// A spec with the given seed and deployments and default journal capacity.
    pub fn new(seed: u64, deployments: Vec<DeploymentSpec>) -> Self {
        Self {
            seed,
            journal_capacity: DEFAULT_JOURNAL_CAPACITY,
            deployments,
        }
    }

    /// Parses and validates YAML (JSON is YAML too).
    pub fn from_yaml_str(text: &str) -> Result<Self, SpecError> {
        Self::parse(text, None)
    }

    /// Reads, parses and validates a spec file.
    pub fn from_file(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, Some(path.display().to_string()))
    }

    fn parse(text: &str, file: Option<String>) -> Result<Self, SpecError> {
        // serde_yaml's messages already start with the key path
        // (`deployments[0].baseline: ...`); the location is kept apart.
        let spec: MockSpec = serde_yaml::from_str(text).map_err(|e| SpecError::Parse {
            file: file.clone().unwrap_or_else(|| "<spec>".to_owned()),
            location: e.location().map(|l| (l.line(), l.column())),
            message: strip_location(&e.to_string()),
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the whole spec; every problem is reported in one error.
    pub fn validate(&self) -> Result<(), SpecError> {
        let mut problems = Vec::new();
        if self.deployments.is_empty() {
            problems.push("deployments: at least one deployment is required".to_owned());
        }
        if self.journal_capacity == 0 {
            problems.push("journal_capacity: must be at least 1".to_owned());
        }
        let mut ids = BTreeSet::new();
        let mut ports = BTreeSet::new();
        for (i, d) in self.deployments.iter().enumerate() {
            let at = format!("deployments[{i}]");
            if d.id.is_empty() || d.id.len() > 128 {
                problems.push(format!("{at}.id: must be 1 to 128 characters"));
            } else if d.id.contains(['/', '?', '#', ' ']) {
                problems.push(format!(
                    "{at}.id: {:?} must not contain '/', '?', '#' or spaces",
                    d.id
                ));
            } else if !ids.insert(d.id.as_str()) {
                problems.push(format!("{at}.id: duplicate deployment id {:?}", d.id));
            }
            if d.port != 0 && !ports.insert(d.port) {
                problems.push(format!("{at}.port: port {} is used twice", d.port));
            }
            if d.context_window == Some(0) {
                problems.push(format!("{at}.context_window: must be at least 1 token"));
            }
            if d.baseline.output_tokens == 0 {
                problems.push(format!("{at}.baseline.output_tokens: must be at least 1"));
            }
            if d.models.iter().any(String::is_empty) {
                problems.push(format!("{at}.models: model names must not be empty"));
            }
            if let Some(k) = &d.api_key {
                if k.is_empty() || k.contains(['\r', '\n']) {
                    problems.push(format!("{at}.api_key: must be non-empty and on one line"));
                }
            }
            if let Err(errs) = validate_rules(&d.faults) {
                problems.extend(errs.into_iter().map(|e| format!("{at}.faults{e}")));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SpecError::Invalid { problems })
        }
    }
}

/// serde_yaml appends " at line L column C" to its messages; the location is
/// reported separately.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a model name or a list of model names")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(vec![v.to_owned()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// Why a spec could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read spec {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", location_text(file, *location))]
    Parse {
        file: String,
        location: Option<(usize, usize)>,
        message: String,
    },
    #[error("invalid spec:\n  {}", problems.join("\n  "))]
    Invalid { problems: Vec<String> },
}

fn location_text(file: &str, location: Option<(usize, usize)>) -> String {
    match location {
        Some((line, col)) => format!("{file}:{line}:{col}"),
        None => file.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
seed: 42
deployments:
  - id: openai-east
    dialect: openai
    api_key: sk-east
    models: [gpt-4o, gpt-4o-mini]
    context_window: 128000
    baseline: {ttft: 120ms, inter_token: 10ms, output_tokens: 60}
  - id: claude-west
    dialect: anthropic
    model: claude-sonnet-4
"#;

    #[test]
    fn example_spec_loads() {
        let spec = MockSpec::from_yaml_str(EXAMPLE).unwrap();
        assert_eq!(spec.seed, 42);
        assert_eq!(spec.journal_capacity, DEFAULT_JOURNAL_CAPACITY);
        assert_eq!(spec.deployments.len(), 2);
        let d = &spec.deployments[0];
        assert_eq!(d.baseline.ttft.get().as_millis(), 120);
        assert_eq!(d.models, vec!["gpt-4o", "gpt-4o-mini"]);
        assert_eq!(spec.deployments[1].models, vec!["claude-sonnet-4"]);
        assert_eq!(spec.deployments[1].baseline, Baseline::default());
    }

    #[test]
    fn unknown_keys_are_errors_with_location_and_path() {
        let text = "deployments:\n  - id: a\n    dialect: openai\n    colour: red\n";
        let err = MockSpec::from_yaml_str(text).unwrap_err().to_string();
        assert!(
            err.starts_with("<spec>:4:5: deployments[0]: unknown field `colour`"),
            "{err}"
        );
    }

    #[test]
    fn bad_dialect_names_the_choices() {
        let text = "deployments:\n  - {id: a, dialect: gemini}\n";
        let err = MockSpec::from_yaml_str(text).unwrap_err().to_string();
        assert!(err.contains("deployments[0].dialect"), "{err}");
        assert!(err.contains("openai"), "{err}");
    }

    #[test]
    fn all_semantic_problems_in_one_error() {
        let text = "journal_capacity: 0\ndeployments:\n  - {id: a, dialect: openai, context_window: 0}\n  - {id: a, dialect: azure}\n";
        let err = MockSpec::from_yaml_str(text).unwrap_err().to_string();
        assert!(err.contains("journal_capacity"), "{err}");
        assert!(err.contains("context_window"), "{err}");
        assert!(err.contains("duplicate deployment id"), "{err}");
    }

    #[test]
    fn spec_round_trips_through_yaml() {
        let spec = MockSpec::from_yaml_str(EXAMPLE).unwrap();
        let text = serde_yaml::to_string(&spec).unwrap();
        assert_eq!(MockSpec::from_yaml_str(&text).unwrap(), spec);
    }
}
