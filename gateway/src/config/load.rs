//! Loading a LiteLLM-compatible `config.yaml` into a [`Config`]: read the file and its
//! `include:`s, parse them once into the spanned tree, sort every key into implemented / known
//! to LiteLLM / unknown, resolve `os.environ/` references, deserialize the authoring types, pick
//! providers, and hand the result to `validate` for the cross-cutting checks. Every problem is
//! collected, so one run reports all of them; nothing here decides how they are printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::diagnostic::{did_you_mean, ConfigErrors, Diagnostic, Sink};
use super::env;
use super::litellm;
use super::raw::{
    self, RawDeploymentTop, RawGeneralSettings, RawLitellmSettings, RawModelInfo, RawParams,
    RawRouterSettings,
};
use super::validate::{self, DeploymentRecord, LocatedAlias, LocatedList, LocatedRule, Site, Slot};
use super::yaml::{self, struct_fields, DeError, Entry, KeyPath, Node, NodeDe, Value};
use super::{
    Config, Deployment, DeploymentId, FallbackRule, GeneralSettings, GroupAlias, ModelInfo,
    PerClassCounts, RouterSettings, RoutingStrategy, UnservedDeployment,
};

/// How strictly to load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Warnings are errors (`--strict`): every key LiteLLM has that Switchyard ignores, every
    /// deployment it cannot serve, makes the config invalid.
    pub strict: bool,
}

/// A config that loaded, and what the operator should still hear about.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Loads `path`. `env` looks up environment variables (pass `|k| std::env::var(k).ok()` in a
/// binary, a map in tests); `environment_variables` in the file are consulted first.
pub fn load_file(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    opts: &LoadOptions,
) -> Result<Loaded, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, path, env, opts),
        Err(e) => {
            let mut sink = Sink::default();
            let file = sink.add_file(path.to_path_buf(), None);
            sink.error_file(file, format!("cannot read config file: {e}"));
            let (errors, warnings) = sink.finish(opts.strict);
            Err(ConfigErrors { errors, warnings })
        }
    }
}

/// Loads config text that came from `file_name`; `include:` entries are relative to its directory.
pub fn load_str(
    text: &str,
    file_name: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    opts: &LoadOptions,
) -> Result<Loaded, ConfigErrors> {
    let mut loader = Loader {
        sink: Sink::default(),
        env,
        vars: BTreeMap::new(),
        deployments: Vec::new(),
        unserved: Vec::new(),
        records: Vec::new(),
        broken_groups: Vec::new(),
        alias_sites: Vec::new(),
    };
    let config = loader.load_main(text, file_name);
    let (errors, warnings) = loader.sink.finish(opts.strict);
    if errors.is_empty() {
        Ok(Loaded { config, warnings })
    } else {
        Err(ConfigErrors { errors, warnings })
    }
}

/// What a section does with keys that are neither implemented nor known to LiteLLM.
#[derive(Clone, Copy)]
enum Unknown {
    /// Fixed-schema sections: LiteLLM would not know the key either.
    Error,
    /// Sections LiteLLM leaves open (provider kwargs, extra model_info): warn and ignore.
    Warn(&'static str),
}

/// How the keys of one mapping are sorted.
struct Section<'a> {
    /// Keys Switchyard reads (deserialized or read by hand).
    implemented: &'a [&'a [&'a str]],
    /// Keys LiteLLM has and Switchyard does not implement.
    litellm: &'a [&'a str],
    /// A prefix LiteLLM owns (`supports_` in model_info).
    litellm_prefix: Option<&'a str>,
    unknown: Unknown,
    /// Keys that belong to another section, with the hint that says where.
    misplaced: &'a [(&'a [&'a str], &'a str)],
}

impl Section<'_> {
    fn is_implemented(&self, key: &str) -> bool {
        self.implemented.iter().any(|keys| keys.contains(&key))
    }

    fn is_litellm(&self, key: &str) -> bool {
        self.litellm.contains(&key) || self.litellm_prefix.is_some_and(|p| key.starts_with(p))
    }

    fn candidates(&self) -> impl Iterator<Item = &str> {
        self.implemented
            .iter()
            .flat_map(|keys| keys.iter().copied())
            .chain(self.litellm.iter().copied())
    }
}

const NOT_IMPLEMENTED: &str = "not implemented by switchyard; ignored";

struct Loader<'e> {
    sink: Sink,
    env: &'e dyn Fn(&str) -> Option<String>,
    /// `environment_variables` from the main file.
    vars: BTreeMap<String, String>,
    deployments: Vec<Deployment>,
    unserved: Vec<UnservedDeployment>,
    records: Vec<DeploymentRecord>,
    /// Groups of deployments that failed to load: still known, so fallbacks naming them do not
    /// pile follow-on errors onto the real one.
    broken_groups: Vec<String>,
    /// Where each `model_group_alias` points, for validation.
    alias_sites: Vec<LocatedAlias>,
}

/// The router keys of one section, with where each fallback rule came from.
#[derive(Default)]
struct RouterPart {
    fallbacks: Option<LocatedList>,
    context_window_fallbacks: Option<LocatedList>,
    content_policy_fallbacks: Option<LocatedList>,
    default_fallbacks: Option<(Vec<(String, Site)>, Site)>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn nonempty_secret(s: Option<SecretString>) -> Option<SecretString> {
    s.filter(|s| !s.expose_secret().is_empty())
}

/// Stable deployment id: the first 16 hex digits of SHA-256 over what identifies the deployment
/// as written (before `os.environ/` resolution, so ids match across environments). Never the key.
fn derive_id(
    model_name: &str,
    model: &str,
    api_base: Option<&str>,
    api_version: Option<&str>,
) -> String {
    let mut hasher = Sha256::new();
    for part in [Some(model_name), Some(model), api_base, api_version] {
        match part {
            Some(s) => {
                hasher.update([1u8]);
                hasher.update((s.len() as u64).to_be_bytes());
                hasher.update(s.as_bytes());
            }
            None => hasher.update([0u8]),
        }
    }
    let digest = hasher.finalize();
    hex::encode(&digest[..8])
}

/// The prefixes Switchyard serves, for hints: the three dialects, then the OpenAI-compatible rest.
fn served_prefix_list() -> String {
    // SERVED lists the common ones first; keep that order rather than sorting.
    let compatible: Vec<&str> = litellm::SERVED
        .iter()
        .filter(|(name, s)| s.kind == super::ProviderKind::OpenAi && *name != "openai")
        .map(|(name, _)| *name)
        .collect();
    let shown = compatible.len().min(16);
    format!(
        "openai, azure, anthropic, and OpenAI-compatible {} (and {} more)",
        compatible[..shown].join(", "),
        compatible.len() - shown
    )
}

impl Loader<'_> {
    // ---- generic machinery -------------------------------------------------------------

    /// Keeps the implemented keys of mapping `node`; reports the others. `None` if `node` is
    /// not a mapping (null counts as an empty one).
    fn split(
        &mut self,
        file: usize,
        node: &Node,
        path: &KeyPath,
        section: &Section<'_>,
    ) -> Option<Node> {
        let entries = match &node.value {
            Value::Map(entries) => entries,
            _ if node.is_null() => {
                return Some(Node {
                    mark: node.mark,
                    value: Value::Map(Vec::new()),
                })
            }
            _ => {
                self.sink.error(
                    file,
                    path,
                    format!("expected a mapping, found {}", node.describe()),
                    None,
                );
                return None;
            }
        };
        let mut kept = Vec::new();
        for entry in entries {
            let key = entry.key.as_str();
            let at = path.key(key);
            if section.is_implemented(key) {
                kept.push(entry.clone());
            } else if section.is_litellm(key) {
                let note = litellm::not_implemented_note(key).map(str::to_owned);
                self.sink.warn(file, &at, NOT_IMPLEMENTED, note);
            } else if let Some((_, hint)) = section
                .misplaced
                .iter()
                .find(|(keys, _)| keys.contains(&key))
            {
                self.sink
                    .error(file, &at, "misplaced key", Some((*hint).to_owned()));
            } else {
                let hint =
                    did_you_mean(key, section.candidates()).map(|c| format!("did you mean `{c}`?"));
                match section.unknown {
                    Unknown::Error => self.sink.error(
                        file,
                        &at,
                        "unknown key; LiteLLM does not have it either",
                        hint,
                    ),
                    Unknown::Warn(message) => self.sink.warn(file, &at, message, hint),
                }
            }
        }
        Some(Node {
            mark: node.mark,
            value: Value::Map(kept),
        })
    }

    /// Replaces every `os.environ/NAME` string below `node` by the variable's value.
    fn resolve_env(&mut self, file: usize, node: &mut Node, path: &KeyPath) {
        match &mut node.value {
            Value::Scalar(s) if s.kind == yaml::ScalarKind::Str => {
                let Some(name) = env::reference(&s.text) else {
                    return;
                };
                match env::resolve(name, &self.vars, self.env) {
                    Ok(value) => {
                        s.text = value;
                        s.from_env = true;
                    }
                    Err(e) => {
                        self.sink.error(file, path, e.to_string(), e.hint());
                        self.sink.suppress(file, path);
                        *node = Node::null(node.mark);
                    }
                }
            }
            Value::Scalar(_) => {}
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.resolve_env(file, item, &path.index(i));
                }
            }
            Value::Map(entries) => {
                for entry in entries.iter_mut() {
                    let at = path.key(&entry.key);
                    self.resolve_env(file, &mut entry.value, &at);
                }
            }
        }
    }

    /// Deserializes `node` into `T`, reporting every field that fails (not only the first): a
    /// failing field is reported, removed, and the rest tried again.
    fn typed<T: DeserializeOwned>(
        &mut self,
        file: usize,
        node: &Node,
        path: &KeyPath,
    ) -> Option<T> {
        let mut node = node.clone();
        let mut removed: Vec<String> = Vec::new();
        loop {
            match serde_path_to_error::deserialize::<_, T>(NodeDe(&node)) {
                Ok(value) => return Some(value),
                Err(err) => {
                    let at = path.join_serde(err.path());
                    let first_key = match err.path().iter().next() {
                        Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
                        _ => None,
                    };
                    let inner: DeError = err.into_inner();
                    if inner
                        .missing_field
                        .is_some_and(|f| removed.iter().any(|r| r == f))
                    {
                        return None; // follows from a field already reported
                    }
                    self.sink.error(file, &at, inner.message, None);
                    match (first_key, &mut node.value) {
                        (Some(key), Value::Map(entries))
                            if entries.iter().any(|e| e.key == key) =>
                        {
                            entries.retain(|e| e.key != key);
                            removed.push(key);
                        }
                        _ => return None,
                    }
                }
            }
        }
    }

    /// The text of a scalar that names something (a model, a provider); reports anything else.
    fn text_of(&mut self, file: usize, node: &Node, path: &KeyPath) -> Option<String> {
        match node.as_text() {
            Some(t) => Some(t.to_owned()),
            None => {
                self.sink.error(
                    file,
                    path,
                    format!("expected a string, found {}", node.describe()),
                    None,
                );
                None
            }
        }
    }

    fn resolved_text(
        &mut self,
        file: usize,
        node: &Node,
        path: &KeyPath,
    ) -> (Node, Option<String>) {
        let mut node = node.clone();
        self.resolve_env(file, &mut node, path);
        let text = self.text_of(file, &node, path);
        (node, text)
    }

    /// Resolves a reference without reporting: for peeking at values reported elsewhere.
    fn peek_text(&self, node: Option<&Entry>) -> Option<String> {
        let text = node?.value.as_text()?;
        match env::reference(text) {
            Some(name) => env::resolve(name, &self.vars, self.env).ok(),
            None => Some(text.to_owned()),
        }
    }

    fn implicit_env(&self, names: &[&str]) -> Option<String> {
        env::first_set(names, &self.vars, self.env).map(|(_, v)| v)
    }

    // ---- files -------------------------------------------------------------------------

    /// Parses one file into the sink. `Err(())`: not YAML, already reported; `Ok(None)`: empty.
    fn parse_file(&mut self, path: PathBuf, text: &str) -> (usize, Result<Option<Node>, ()>) {
        let file = self.sink.add_file(path, None);
        match yaml::parse(text) {
            Ok(parsed) => {
                self.sink.set_root(file, parsed.root.clone());
                for dup in parsed.duplicates {
                    self.sink.warn(
                        file,
                        &dup.path,
                        "duplicate key; the later value wins, as in LiteLLM",
                        None,
                    );
                }
                (file, Ok(parsed.root))
            }
            Err(e) => {
                let hint = e.message.contains("tab").then(|| {
                    "YAML does not allow tabs in indentation; LiteLLM's PyYAML rejects this file too".to_owned()
                });
                self.sink
                    .error_at(file, e.mark, format!("invalid YAML: {}", e.message), hint);
                (file, Err(()))
            }
        }
    }

    fn load_main(&mut self, text: &str, file_name: &Path) -> Config {
        let mut config = Config {
            source: Some(file_name.to_path_buf()),
            ..Config::default()
        };
        let (file, root) = self.parse_file(file_name.to_path_buf(), text);
        let root = match root {
            Ok(Some(root)) => root,
            Ok(None) => {
                self.sink.error_file(file, "the config file is empty");
                return config;
            }
            Err(()) => return config,
        };
        let top = KeyPath::root();
        let section = Section {
            implemented: &[raw::TOP_LEVEL],
            litellm: litellm::TOP_LEVEL_LITELLM,
            litellm_prefix: None,
            unknown: Unknown::Error,
            misplaced: &[
                (
                    litellm::ROUTER_ALL,
                    "this is a router setting; put it under `router_settings`",
                ),
                (
                    &["master_key", "database_url"],
                    "this belongs under `general_settings`",
                ),
            ],
        };
        let Some(root) = self.split(file, &root, &top, &section) else {
            return config;
        };

        if let Some(e) = root.get("environment_variables") {
            self.load_environment_variables(
                file,
                &e.value.clone(),
                &top.key("environment_variables"),
            );
        }
        if let Some(e) = root.get("model_list") {
            self.load_model_list(file, &e.value.clone(), &top.key("model_list"));
        }
        if let Some(e) = root.get("include") {
            let base = file_name.parent().unwrap_or(Path::new("")).to_path_buf();
            self.load_includes(file, &e.value.clone(), &top.key("include"), &base);
        }

        let mut router_part = RouterPart::default();
        let mut router_raw = RawRouterSettings::default();
        let mut router_settings = RouterSettings::default();
        if let Some(e) = root.get("router_settings") {
            if let Some(raw) = self.load_router_settings(
                file,
                &e.value.clone(),
                &top.key("router_settings"),
                &mut router_settings,
                &mut router_part,
            ) {
                router_raw = raw;
            }
        }
        let mut litellm_part = RouterPart::default();
        let mut litellm_raw = RawLitellmSettings::default();
        if let Some(e) = root.get("litellm_settings") {
            if let Some(raw) = self.load_litellm_settings(
                file,
                &e.value.clone(),
                &top.key("litellm_settings"),
                &mut litellm_part,
            ) {
                litellm_raw = raw;
            }
        }
        let mut general_raw = RawGeneralSettings::default();
        let mut retention = None;
        if let Some(e) = root.get("general_settings") {
            let at = top.key("general_settings");
            if let Some(raw) = self.load_general_settings(file, &e.value.clone(), &at) {
                retention = self.spend_logs_retention(file, &raw, &at);
                general_raw = raw;
            }
        }

        config.redis = self.redis(file, &mut router_raw, &top.key("router_settings"));

        // router_settings wins field by field; litellm_settings fills the gaps.
        let r = router_raw;
        let l = litellm_raw;
        let shadowed = [
            (
                "num_retries",
                r.num_retries.is_some() && l.num_retries.is_some(),
                "num_retries",
            ),
            (
                "allowed_fails",
                r.allowed_fails.is_some() && l.allowed_fails.is_some(),
                "allowed_fails",
            ),
            (
                "cooldown_time",
                r.cooldown_time.is_some() && l.cooldown_time.is_some(),
                "cooldown_time",
            ),
            (
                "request_timeout",
                r.timeout.is_some() && l.request_timeout.is_some(),
                "timeout",
            ),
            (
                "max_fallbacks",
                r.max_fallbacks.is_some() && l.max_fallbacks.is_some(),
                "max_fallbacks",
            ),
        ];
        for (key, both, router_key) in shadowed {
            if both {
                self.sink.warn(
                    file,
                    &top.key("litellm_settings").key(key),
                    format!("overridden by `router_settings.{router_key}`; ignored"),
                    None,
                );
            }
        }
        router_settings.num_retries = r.num_retries.or(l.num_retries);
        router_settings.allowed_fails = r.allowed_fails.or(l.allowed_fails);
        router_settings.cooldown_time = r.cooldown_time.or(l.cooldown_time);
        router_settings.timeout = r.timeout.or(l.request_timeout);
        router_settings.stream_timeout = r.stream_timeout;
        router_settings.max_fallbacks = r.max_fallbacks.or(l.max_fallbacks);
        router_settings.retry_after_cap = r.retry_after_cap;
        router_settings.cooldown_single_deployment = r.cooldown_single_deployment;
        router_settings.disable_cooldowns = r.disable_cooldowns;

        let fallbacks = self.pick(router_part.fallbacks, litellm_part.fallbacks, "fallbacks");
        let context_window = self.pick(
            router_part.context_window_fallbacks,
            litellm_part.context_window_fallbacks,
            "context_window_fallbacks",
        );
        let content_policy = self.pick(
            router_part.content_policy_fallbacks,
            litellm_part.content_policy_fallbacks,
            "content_policy_fallbacks",
        );
        let default_fallbacks = self.pick(
            router_part.default_fallbacks,
            litellm_part.default_fallbacks,
            "default_fallbacks",
        );
        let to_rules = |list: &Option<LocatedList>| {
            list.as_ref().map(|l| {
                l.rules
                    .iter()
                    .map(|r| FallbackRule {
                        group: r.group.clone(),
                        targets: r.targets.iter().map(|(t, _)| t.clone()).collect(),
                    })
                    .collect()
            })
        };
        router_settings.fallbacks = to_rules(&fallbacks);
        router_settings.context_window_fallbacks = to_rules(&context_window);
        router_settings.content_policy_fallbacks = to_rules(&content_policy);
        router_settings.default_fallbacks = default_fallbacks
            .as_ref()
            .map(|(targets, _)| targets.iter().map(|(t, _)| t.clone()).collect());

        config.general_settings = self.general_settings(general_raw);
        config.general_settings.spend_logs_retention = retention;

        // Cross-cutting checks.
        validate::settle_ids(&mut self.records, &mut self.sink);
        for rec in &self.records {
            match rec.slot {
                Slot::Served(i) => self.deployments[i].id = DeploymentId(rec.id.clone()),
                Slot::Unserved(i) => self.unserved[i].id = DeploymentId(rec.id.clone()),
            }
        }
        let aliases: Vec<LocatedAlias> = self.alias_sites.drain(..).collect();
        let names = validate::Names::new(
            &self.records,
            &self.broken_groups,
            router_settings.model_group_alias.as_ref(),
        );
        let lists: Vec<&LocatedList> = [&fallbacks, &context_window, &content_policy]
            .into_iter()
            .flatten()
            .collect();
        validate::check_fallbacks(&names, &lists, default_fallbacks.as_ref(), &mut self.sink);
        validate::check_cycles(&names, &lists, &mut self.sink);
        validate::check_aliases(&names, &aliases, &mut self.sink);

        config.router_settings = router_settings;
        config.model_list = std::mem::take(&mut self.deployments);
        config.unserved = std::mem::take(&mut self.unserved);
        config
    }

    /// The `router_settings` value if set, else the `litellm_settings` one; a shadowed
    /// `litellm_settings` value is reported so nobody edits it expecting an effect.
    fn pick<T: HasSite>(
        &mut self,
        router: Option<T>,
        litellm: Option<T>,
        field: &str,
    ) -> Option<T> {
        match (router, litellm) {
            (Some(r), Some(l)) => {
                let site = l.site();
                self.sink.warn(
                    site.file,
                    &site.path,
                    format!("overridden by `router_settings.{field}`; ignored"),
                    None,
                );
                Some(r)
            }
            (r, l) => r.or(l),
        }
    }

    fn load_environment_variables(&mut self, file: usize, node: &Node, path: &KeyPath) {
        let entries = match &node.value {
            Value::Map(entries) => entries.clone(),
            _ if node.is_null() => return,
            _ => {
                self.sink.error(
                    file,
                    path,
                    format!(
                        "expected a mapping of NAME: value, found {}",
                        node.describe()
                    ),
                    None,
                );
                return;
            }
        };
        for entry in entries {
            match &entry.value.value {
                Value::Scalar(s) => {
                    // PyYAML gives LiteLLM ints and bools here; it exports their text.
                    self.vars.insert(entry.key.clone(), s.text.clone());
                }
                _ => self.sink.error(
                    file,
                    &path.key(&entry.key),
                    format!("expected a string, found {}", entry.value.describe()),
                    None,
                ),
            }
        }
    }

    fn load_includes(&mut self, file: usize, node: &Node, path: &KeyPath, base: &Path) {
        let items = match &node.value {
            Value::Seq(items) => items.clone(),
            _ if node.is_null() => return,
            _ => {
                self.sink.error(
                    file,
                    path,
                    format!("expected a list of file paths, found {}", node.describe()),
                    Some("write `include: [models.yaml]`".to_owned()),
                );
                return;
            }
        };
        for (i, item) in items.iter().enumerate() {
            let at = path.index(i);
            let Some(name) = self.text_of(file, item, &at) else {
                continue;
            };
            let full = base.join(&name);
            let text = match std::fs::read_to_string(&full) {
                Ok(text) => text,
                Err(e) => {
                    self.sink.error(
                        file,
                        &at,
                        format!("cannot read included file `{name}`: {e}"),
                        None,
                    );
                    continue;
                }
            };
            let (inc, root) = self.parse_file(full, &text);
            let root = match root {
                Ok(Some(root)) => root,
                Ok(None) => {
                    self.sink
                        .warn(file, &at, format!("included file `{name}` is empty"), None);
                    continue;
                }
                Err(()) => continue,
            };
            let Value::Map(entries) = &root.value else {
                self.sink.error(
                    inc,
                    &KeyPath::root(),
                    format!("expected a mapping, found {}", root.describe()),
                    None,
                );
                continue;
            };
            for entry in entries.clone() {
                let key_path = KeyPath::root().key(&entry.key);
                if entry.key == "model_list" {
                    self.load_model_list(inc, &entry.value, &key_path);
                } else {
                    self.sink.warn(
                        inc,
                        &key_path,
                        "only `model_list` is read from an included file; ignored",
                        None,
                    );
                }
            }
        }
    }

    // ---- model_list --------------------------------------------------------------------

    fn load_model_list(&mut self, file: usize, node: &Node, path: &KeyPath) {
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.load_deployment(file, item, &path.index(i));
                }
            }
            _ if node.is_null() => {}
            _ => self.sink.error(
                file,
                path,
                format!("expected a list of deployments, found {}", node.describe()),
                None,
            ),
        }
    }

    fn load_deployment(&mut self, file: usize, entry: &Node, path: &KeyPath) {
        let top_fields = struct_fields::<RawDeploymentTop>();
        let section = Section {
            implemented: &[top_fields, raw::DEPLOYMENT_MANUAL],
            litellm: &[],
            litellm_prefix: None,
            unknown: Unknown::Warn("unknown key in a model_list entry; ignored"),
            misplaced: &[],
        };
        let Some(filtered) = self.split(file, entry, path, &section) else {
            return;
        };

        let mut top = filtered.clone();
        if let Value::Map(entries) = &mut top.value {
            entries.retain(|e| !raw::DEPLOYMENT_MANUAL.contains(&e.key.as_str()));
        }
        self.resolve_env(file, &mut top, path);
        let top: Option<RawDeploymentTop> = self.typed(file, &top, path);
        let Some(top) = top else { return };
        let group = top.model_name.clone();
        let model_name_raw = entry
            .get("model_name")
            .and_then(|e| e.value.as_text())
            .unwrap_or(&group)
            .to_owned();

        let params_key = match (filtered.get("litellm_params"), filtered.get("params")) {
            (Some(_), Some(_)) => {
                self.sink.error(
                    file,
                    &path.key("params"),
                    "both `litellm_params` and its alias `params` are set",
                    Some("keep one of them".to_owned()),
                );
                "litellm_params"
            }
            (None, Some(_)) => "params",
            (Some(_), None) => "litellm_params",
            (None, None) => {
                self.sink
                    .error(file, path, "missing field `litellm_params`", None);
                self.broken_groups.push(group);
                return;
            }
        };
        let params_path = path.key(params_key);
        let params_node = filtered
            .get(params_key)
            .map(|e| e.value.clone())
            .unwrap_or_else(|| Node::null(entry.mark));
        let mut params = match &params_node.value {
            Value::Map(_) => params_node.clone(),
            _ if params_node.is_null() => Node {
                mark: params_node.mark,
                value: Value::Map(Vec::new()),
            },
            _ => {
                self.sink.error(
                    file,
                    &params_path,
                    format!("expected a mapping, found {}", params_node.describe()),
                    None,
                );
                self.broken_groups.push(group);
                return;
            }
        };

        // The provider decides what else is read, so `model` comes first.
        let model_path = params_path.key("model");
        let Some(model_entry) = params.get("model").cloned() else {
            self.sink
                .error(file, &params_path, "missing field `model`", None);
            self.broken_groups.push(group);
            return;
        };
        let (model_node, model) = self.resolved_text(file, &model_entry.value, &model_path);
        let custom = match params.get("custom_llm_provider").cloned() {
            Some(e) => {
                let at = params_path.key("custom_llm_provider");
                let (node, text) = self.resolved_text(file, &e.value, &at);
                replace_entry(&mut params, "custom_llm_provider", node);
                text
            }
            None => None,
        };
        replace_entry(&mut params, "model", model_node);
        let Some(model) = model else {
            self.broken_groups.push(group);
            return;
        };
        let model_raw = model_entry.value.as_text().unwrap_or(&model).to_owned();
        let api_base_peek = self.peek_text(params.get("api_base"));
        let raw_text = |key: &str| {
            params_node
                .get(key)
                .and_then(|e| e.value.as_text())
                .map(str::to_owned)
        };
        let derived = derive_id(
            &model_name_raw,
            &model_raw,
            raw_text("api_base").as_deref(),
            raw_text("api_version").as_deref(),
        );
        let explicit_id = entry
            .get("model_info")
            .and_then(|e| e.value.get("id"))
            .map(|e| e.value.clone());

        let (provider, upstream) = match self.resolve_provider(
            file,
            &model_path,
            &model,
            custom.as_deref(),
            api_base_peek.as_deref(),
        ) {
            Some(p) => p,
            None => {
                self.broken_groups.push(group);
                return;
            }
        };
        let Some(spec) = litellm::served(&provider) else {
            self.sink.warn(
                file,
                &model_path,
                format!(
                    "deployment of `{group}` uses provider `{provider}`, which LiteLLM supports and switchyard does not serve; left out"
                ),
                Some(format!("`{group}` still counts as a known model group, e.g. as a fallback target")),
            );
            let id = self.explicit_id(
                file,
                explicit_id.as_ref(),
                &path.key("model_info").key("id"),
            );
            self.unserved.push(UnservedDeployment {
                id: DeploymentId(id.clone().unwrap_or_else(|| derived.clone())),
                model_name: group.clone(),
                provider,
            });
            self.records.push(DeploymentRecord {
                explicit: id.is_some(),
                id: id.unwrap_or(derived),
                group,
                served: false,
                site: Site {
                    file,
                    path: path.clone(),
                },
                id_site: Site {
                    file,
                    path: path.key("model_info").key("id"),
                },
                slot: Slot::Unserved(self.unserved.len() - 1),
            });
            return;
        };
        if upstream.is_empty() {
            self.sink.warn(
                file,
                &model_path,
                format!("`{model}` names no upstream model after the provider prefix; deployment of `{group}` left out"),
                Some(format!("write `{provider}/<model or deployment name>`")),
            );
            self.broken_groups.push(group);
            return;
        }

        let params_fields = struct_fields::<RawParams>();
        let section = Section {
            implemented: &[params_fields, raw::PARAMS_MANUAL],
            litellm: litellm::PARAMS_LITELLM,
            litellm_prefix: None,
            unknown: Unknown::Warn("not a LiteLLM parameter switchyard knows; ignored (LiteLLM passes such keys to the provider)"),
            misplaced: &[],
        };
        let Some(mut p) = self.split(file, &params, &params_path, &section) else {
            self.broken_groups.push(group);
            return;
        };
        take_entries(&mut p, raw::PARAMS_MANUAL);
        self.resolve_env(file, &mut p, &params_path);
        let raw_params: Option<RawParams> = self.typed(file, &p, &params_path);

        let info_path = path.key("model_info");
        let info = match filtered.get("model_info") {
            None => Some(RawModelInfo::default()),
            Some(e) => {
                let info_fields = struct_fields::<RawModelInfo>();
                let section = Section {
                    implemented: &[info_fields],
                    litellm: litellm::MODEL_INFO_LITELLM,
                    litellm_prefix: Some("supports_"),
                    unknown: Unknown::Warn("unknown model_info key; ignored"),
                    misplaced: &[],
                };
                match self.split(file, &e.value, &info_path, &section) {
                    Some(mut node) => {
                        self.resolve_env(file, &mut node, &info_path);
                        self.typed::<RawModelInfo>(file, &node, &info_path)
                    }
                    None => None,
                }
            }
        };
        let (Some(rp), Some(info)) = (raw_params, info) else {
            self.broken_groups.push(group);
            return;
        };

        let api_base = nonempty(rp.api_base)
            .or_else(|| self.implicit_env(spec.base_env))
            .or_else(|| spec.default_base.map(str::to_owned));
        if api_base.is_none() && spec.needs_base {
            let hint = match spec.base_env.first() {
                Some(var) => format!("set `api_base` (LiteLLM would also read {var})"),
                None => "set `api_base` to the server's OpenAI-compatible base URL".to_owned(),
            };
            self.sink.error(
                file,
                &params_path,
                format!("provider `{provider}` needs `api_base`"),
                Some(hint),
            );
        }
        if api_base.as_deref().is_some_and(super::url::has_password) {
            self.sink.warn(
                file,
                &params_path.key("api_base"),
                "the URL carries a password (user:password@), which switchyard does not send \
                 upstream",
                Some(
                    "set `api_key` instead; /model/info and the admin UI leave the password out"
                        .to_owned(),
                ),
            );
        }
        let api_key = nonempty_secret(rp.api_key)
            .or_else(|| self.implicit_env(spec.key_env).map(SecretString::from));
        let api_version = nonempty(rp.api_version).or_else(|| {
            (spec.kind == super::ProviderKind::Azure)
                .then(|| self.implicit_env(&["AZURE_API_VERSION"]))
                .flatten()
        });
        if let Some(w) = rp.weight {
            if !(w.is_finite() && w >= 0.0) {
                self.sink.error(
                    file,
                    &params_path.key("weight"),
                    format!("weight must be a non-negative number, got {w}"),
                    None,
                );
            }
        }
        let id = match info.id {
            Some(id) if id.is_empty() => {
                self.sink
                    .error(file, &info_path.key("id"), "deployment id is empty", None);
                None
            }
            other => other,
        };
        let deployment = Deployment {
            id: DeploymentId(id.clone().unwrap_or_else(|| derived.clone())),
            model_name: group.clone(),
            provider: spec.kind,
            upstream_model: upstream,
            api_base,
            api_key,
            api_version,
            timeout: rp.timeout.map(|s| s.0),
            stream_timeout: rp.stream_timeout.map(|s| s.0),
            rpm: rp.rpm.or(top.rpm),
            tpm: rp.tpm.or(top.tpm),
            weight: rp.weight,
            order: rp.order,
            max_parallel_requests: rp.max_parallel_requests,
            region_name: nonempty(rp.region_name),
            cooldown_time: rp.cooldown_time.map(|s| s.0),
            info: ModelInfo {
                max_input_tokens: info.max_input_tokens,
                max_output_tokens: info.max_output_tokens,
                access_groups: info.access_groups.unwrap_or_default(),
                input_cost_per_token: info.input_cost_per_token.or(rp.input_cost_per_token),
                output_cost_per_token: info.output_cost_per_token.or(rp.output_cost_per_token),
                mode: info.mode,
            },
        };
        self.deployments.push(deployment);
        self.records.push(DeploymentRecord {
            explicit: id.is_some(),
            id: id.unwrap_or(derived),
            group,
            served: true,
            site: Site {
                file,
                path: path.clone(),
            },
            id_site: Site {
                file,
                path: info_path.key("id"),
            },
            slot: Slot::Served(self.deployments.len() - 1),
        });
    }

    /// `model_info.id` of a deployment that is otherwise not read.
    fn explicit_id(&mut self, file: usize, node: Option<&Node>, path: &KeyPath) -> Option<String> {
        let node = node?;
        let (_, text) = self.resolved_text(file, node, path);
        text.filter(|t| !t.is_empty())
    }

    /// (provider, upstream model) for `model`, or `None` after reporting why not.
    fn resolve_provider(
        &mut self,
        file: usize,
        at: &KeyPath,
        model: &str,
        custom: Option<&str>,
        api_base: Option<&str>,
    ) -> Option<(String, String)> {
        let known_hint = |name: &str| {
            let all = litellm::SERVED
                .iter()
                .map(|(n, _)| *n)
                .chain(litellm::NOT_SERVED.iter().copied());
            let mean = did_you_mean(name, all)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            format!(
                "{mean}known prefixes: {}; LiteLLM's other providers (bedrock, vertex_ai, gemini, cohere, ...) are recognised but not served",
                served_prefix_list()
            )
        };
        if let Some(provider) = custom {
            if !litellm::is_known_provider(provider) {
                self.sink.error(
                    file,
                    &at.parent_key("custom_llm_provider"),
                    format!("unknown provider `{provider}`"),
                    Some(known_hint(provider)),
                );
                return None;
            }
            let upstream = model.strip_prefix(&format!("{provider}/")).unwrap_or(model);
            return Some((provider.to_owned(), upstream.to_owned()));
        }
        if let Some((prefix, rest)) = model.split_once('/') {
            if litellm::is_known_provider(prefix) {
                return Some((prefix.to_owned(), rest.to_owned()));
            }
            if let Some(provider) = litellm::infer_provider(model, api_base) {
                return Some((provider.to_owned(), model.to_owned()));
            }
            self.sink.error(
                file,
                at,
                format!("unknown provider prefix `{prefix}/` in `{model}`"),
                Some(known_hint(prefix)),
            );
            return None;
        }
        match litellm::infer_provider(model, api_base) {
            Some(provider) => Some((provider.to_owned(), model.to_owned())),
            None => {
                self.sink.error(
                    file,
                    at,
                    format!("cannot tell which provider serves `{model}`"),
                    Some(format!(
                        "prefix it with its provider, e.g. `openai/{model}` for an OpenAI-compatible server at `api_base`; known prefixes: {}",
                        served_prefix_list()
                    )),
                );
                None
            }
        }
    }

    // ---- settings ----------------------------------------------------------------------

    fn load_router_settings(
        &mut self,
        file: usize,
        node: &Node,
        path: &KeyPath,
        out: &mut RouterSettings,
        part: &mut RouterPart,
    ) -> Option<RawRouterSettings> {
        let fields = struct_fields::<RawRouterSettings>();
        let section = Section {
            implemented: &[fields, raw::ROUTER_MANUAL],
            litellm: litellm::ROUTER_LITELLM,
            litellm_prefix: None,
            unknown: Unknown::Error,
            misplaced: &[(
                &["request_timeout"],
                "LiteLLM reads `request_timeout` under litellm_settings; in router_settings it is `timeout`",
            )],
        };
        let mut node = self.split(file, node, path, &section)?;
        self.resolve_env(file, &mut node, path);
        let manual = take_entries(&mut node, raw::ROUTER_MANUAL);
        for entry in &manual {
            let at = path.key(&entry.key);
            match entry.key.as_str() {
                "retry_policy" => {
                    out.retry_policy =
                        self.per_class_counts(file, &entry.value, &at, "Retries", &[])
                }
                "allowed_fails_policy" => {
                    out.allowed_fails_policy = self.per_class_counts(
                        file,
                        &entry.value,
                        &at,
                        "AllowedFails",
                        litellm::ALLOWED_FAILS_POLICY_LITELLM,
                    )
                }
                "model_group_alias" => {
                    out.model_group_alias = self.model_group_alias(file, &entry.value, &at)
                }
                _ => self.fallback_entry(file, entry, &at, part),
            }
        }
        let raw: RawRouterSettings = self.typed(file, &node, path)?;
        if let Some(name) = &raw.routing_strategy {
            out.routing_strategy = self.routing_strategy(file, name, &path.key("routing_strategy"));
        }
        Some(raw)
    }

    fn load_litellm_settings(
        &mut self,
        file: usize,
        node: &Node,
        path: &KeyPath,
        part: &mut RouterPart,
    ) -> Option<RawLitellmSettings> {
        let fields = struct_fields::<RawLitellmSettings>();
        let section = Section {
            implemented: &[fields, raw::LITELLM_MANUAL],
            litellm: litellm::LITELLM_SETTINGS_LITELLM,
            litellm_prefix: None,
            unknown: Unknown::Error,
            misplaced: &[(
                litellm::ROUTER_ALL,
                "a router setting LiteLLM ignores under litellm_settings; move it to `router_settings`",
            )],
        };
        let mut node = self.split(file, node, path, &section)?;
        self.resolve_env(file, &mut node, path);
        for entry in take_entries(&mut node, raw::LITELLM_MANUAL) {
            let at = path.key(&entry.key);
            self.fallback_entry(file, &entry, &at, part);
        }
        self.typed(file, &node, path)
    }

    fn load_general_settings(
        &mut self,
        file: usize,
        node: &Node,
        path: &KeyPath,
    ) -> Option<RawGeneralSettings> {
        let fields = struct_fields::<RawGeneralSettings>();
        let section = Section {
            implemented: &[fields],
            litellm: litellm::GENERAL_LITELLM,
            litellm_prefix: None,
            unknown: Unknown::Error,
            misplaced: &[],
        };
        let mut node = self.split(file, node, path, &section)?;
        self.resolve_env(file, &mut node, path);
        let raw: RawGeneralSettings = self.typed(file, &node, path)?;
        if let Some(mb) = raw.max_request_size_mb {
            if !(mb.is_finite() && mb > 0.0) {
                self.sink.error(
                    file,
                    &path.key("max_request_size_mb"),
                    format!("must be a positive number of megabytes, got {mb}"),
                    None,
                );
            }
        }
        Some(raw)
    }

    fn general_settings(&self, raw: RawGeneralSettings) -> GeneralSettings {
        GeneralSettings {
            master_key: nonempty_secret(raw.master_key),
            database_url: nonempty_secret(raw.database_url),
            salt_key: nonempty_secret(raw.salt_key),
            max_request_body_bytes: raw
                .max_request_size_mb
                .filter(|mb| mb.is_finite() && *mb > 0.0)
                .map(|mb| (mb * 1024.0 * 1024.0) as usize),
            graceful_shutdown_timeout: raw.graceful_shutdown_timeout.map(|s| s.0),
            use_x_forwarded_for: raw.use_x_forwarded_for.unwrap_or(false),
            spend_logs_retention: None,
        }
    }

    /// `router_settings.redis_*` (taken out of `raw`): where Redis is, and the namespace.
    fn redis(
        &mut self,
        file: usize,
        raw: &mut RawRouterSettings,
        at: &KeyPath,
    ) -> Option<super::RedisConfig> {
        let namespace = raw.redis_namespace.take();
        let target = self.redis_target(file, raw, at);
        let namespace = match namespace {
            Some(ns) => {
                let ok = !ns.is_empty()
                    && ns.len() <= 64
                    && ns
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !ok {
                    self.sink.error(
                        file,
                        &at.key("redis_namespace"),
                        "expected 1 to 64 letters, digits, `-`, `_` or `.`",
                        Some(
                            "one name per gateway cluster sharing this Redis: prod, staging".into(),
                        ),
                    );
                    return None;
                }
                if target.is_none() {
                    self.sink.error(
                        file,
                        &at.key("redis_namespace"),
                        "needs `redis_host` (or a `redis_url`)",
                        None,
                    );
                }
                ns
            }
            None => super::RedisConfig::DEFAULT_NAMESPACE.to_owned(),
        };
        target.map(|target| super::RedisConfig { target, namespace })
    }

    /// `redis_url`, or `redis_host` with `redis_port`, `redis_password` and `redis_db`.
    /// Values are never echoed in errors.
    fn redis_target(
        &mut self,
        file: usize,
        raw: &mut RawRouterSettings,
        at: &KeyPath,
    ) -> Option<super::RedisTarget> {
        let url = raw.redis_url.take();
        let host = raw.redis_host.take();
        let port = raw.redis_port.take();
        let password = raw.redis_password.take();
        let db = raw.redis_db.take();
        if let Some(url) = url {
            let text = url.expose_secret();
            let scheme = text.split_once("://").map(|(s, _)| s);
            let hint = "write redis://[[user]:password@]host[:port][/db]".to_owned();
            match scheme {
                Some("redis") if redis::parse_redis_url(text).is_some() => {}
                Some("rediss") => {
                    self.sink.error(
                        file,
                        &at.key("redis_url"),
                        "TLS connections to Redis (rediss://) are not supported",
                        Some(hint),
                    );
                    return None;
                }
                _ => {
                    self.sink.error(
                        file,
                        &at.key("redis_url"),
                        "expected a redis:// URL",
                        Some(hint),
                    );
                    return None;
                }
            }
            for (key, set) in [
                ("redis_host", host.is_some()),
                ("redis_port", port.is_some()),
                ("redis_password", password.is_some()),
                ("redis_db", db.is_some()),
            ] {
                if set {
                    self.sink.warn(
                        file,
                        &at.key(key),
                        "ignored: `redis_url` is set and names the whole connection",
                        None,
                    );
                }
            }
            return Some(super::RedisTarget::Url(url));
        }
        match host.map(|h| h.trim().to_owned()) {
            // Only what cannot be a host is refused here; a name that does not resolve is
            // logged when connecting, and the gateway serves without sharing meanwhile.
            Some(host) if !host.is_empty() && !host.contains(['/', '@', '?', '#']) => {
                Some(super::RedisTarget::Host {
                    host,
                    port: port.unwrap_or(super::defaults::REDIS_PORT),
                    password,
                    db: db.unwrap_or(0),
                })
            }
            Some(_) => {
                self.sink.error(
                    file,
                    &at.key("redis_host"),
                    "expected a host name or IP address",
                    Some("the port goes in `redis_port`, the password in `redis_password`".into()),
                );
                None
            }
            None => {
                for (key, set) in [
                    ("redis_port", port.is_some()),
                    ("redis_password", password.is_some()),
                    ("redis_db", db.is_some()),
                ] {
                    if set {
                        self.sink.error(
                            file,
                            &at.key(key),
                            "needs `redis_host` (or a `redis_url` instead)",
                            None,
                        );
                    }
                }
                None
            }
        }
    }

    /// `maximum_spend_logs_retention_period` and `_interval` as durations (`30s`, `10m`, `24h`,
    /// `7d`, `1w`, `1mo`); an interval without a period is an error, since nothing would run.
    fn spend_logs_retention(
        &mut self,
        file: usize,
        raw: &RawGeneralSettings,
        at: &KeyPath,
    ) -> Option<super::SpendLogsRetention> {
        let mut duration = |key: &str, value: &Option<String>| {
            let v = value.as_deref()?;
            let parsed = crate::store::parse_budget_duration(v.trim())
                .and_then(|d| d.to_std().ok())
                .filter(|d| !d.is_zero());
            if parsed.is_none() {
                self.sink.error(
                    file,
                    &at.key(key),
                    format!("`{v}` is not a duration"),
                    Some("write a number and a unit: 30s, 10m, 24h, 7d, 1w, 1mo".to_owned()),
                );
            }
            parsed
        };
        let period = duration(
            "maximum_spend_logs_retention_period",
            &raw.maximum_spend_logs_retention_period,
        );
        let every = duration(
            "maximum_spend_logs_retention_interval",
            &raw.maximum_spend_logs_retention_interval,
        );
        match (period, &raw.maximum_spend_logs_retention_period) {
            (Some(period), _) => Some(super::SpendLogsRetention {
                period,
                every: every.unwrap_or(super::SpendLogsRetention::DEFAULT_EVERY),
            }),
            (None, None) if raw.maximum_spend_logs_retention_interval.is_some() => {
                self.sink.error(
                    file,
                    &at.key("maximum_spend_logs_retention_interval"),
                    "an interval without `maximum_spend_logs_retention_period` deletes nothing",
                    Some(
                        "set the period too, e.g. `maximum_spend_logs_retention_period: 30d`"
                            .to_owned(),
                    ),
                );
                None
            }
            _ => None,
        }
    }

    fn routing_strategy(
        &mut self,
        file: usize,
        name: &str,
        at: &KeyPath,
    ) -> Option<RoutingStrategy> {
        let de: serde::de::value::StrDeserializer<'_, DeError> = name.into_deserializer();
        match RoutingStrategy::deserialize(de) {
            Ok(strategy) => Some(strategy),
            Err(_) if litellm::ROUTING_STRATEGIES_LITELLM.contains(&name) => {
                self.sink.warn(
                    file,
                    at,
                    format!("routing strategy `{name}` is not implemented by switchyard; using the default, simple-shuffle"),
                    None,
                );
                None
            }
            Err(_) => {
                let mean = did_you_mean(name, RoutingStrategy::NAMES.iter().copied())
                    .map(|c| format!("did you mean `{c}`? "))
                    .unwrap_or_default();
                self.sink.error(
                    file,
                    at,
                    format!("unknown routing strategy `{name}`"),
                    Some(format!(
                        "{mean}valid strategies: {}",
                        RoutingStrategy::NAMES.join(", ")
                    )),
                );
                None
            }
        }
    }

    /// `retry_policy` (`*Retries`) or `allowed_fails_policy` (`*AllowedFails`).
    fn per_class_counts(
        &mut self,
        file: usize,
        node: &Node,
        path: &KeyPath,
        suffix: &str,
        litellm_only: &[&str],
    ) -> Option<PerClassCounts> {
        const CLASSES: [&str; 6] = [
            "BadRequestError",
            "AuthenticationError",
            "TimeoutError",
            "RateLimitError",
            "ContentPolicyViolationError",
            "InternalServerError",
        ];
        let names: Vec<String> = CLASSES.iter().map(|c| format!("{c}{suffix}")).collect();
        let entries = match &node.value {
            Value::Map(entries) => entries.clone(),
            _ if node.is_null() => return None,
            _ => {
                self.sink.error(
                    file,
                    path,
                    format!("expected a mapping, found {}", node.describe()),
                    None,
                );
                return None;
            }
        };
        let mut counts = PerClassCounts::default();
        for entry in entries {
            let at = path.key(&entry.key);
            let Some(class) = names.iter().position(|n| *n == entry.key) else {
                if litellm_only.contains(&entry.key.as_str()) {
                    self.sink.warn(file, &at, NOT_IMPLEMENTED, None);
                } else {
                    let hint = did_you_mean(&entry.key, names.iter().map(String::as_str))
                        .map(|c| format!("did you mean `{c}`?"))
                        .or_else(|| Some(format!("valid keys: {}", names.join(", "))));
                    self.sink.error(
                        file,
                        &at,
                        "unknown key; LiteLLM does not have it either",
                        hint,
                    );
                }
                continue;
            };
            let Some(n) = self.typed::<Option<u32>>(file, &entry.value, &at) else {
                continue;
            };
            let slot = match class {
                0 => &mut counts.bad_request,
                1 => &mut counts.authentication,
                2 => &mut counts.timeout,
                3 => &mut counts.rate_limit,
                4 => &mut counts.content_policy,
                _ => &mut counts.internal_server,
            };
            *slot = n;
        }
        Some(counts)
    }

    fn model_group_alias(
        &mut self,
        file: usize,
        node: &Node,
        path: &KeyPath,
    ) -> Option<BTreeMap<String, GroupAlias>> {
        let entries = match &node.value {
            Value::Map(entries) => entries.clone(),
            _ if node.is_null() => return None,
            _ => {
                self.sink.error(
                    file,
                    path,
                    format!(
                        "expected a mapping of alias: model group, found {}",
                        node.describe()
                    ),
                    None,
                );
                return None;
            }
        };
        let mut out = BTreeMap::new();
        for entry in entries {
            let at = path.key(&entry.key);
            let alias = match &entry.value.value {
                Value::Scalar(_) => match self.text_of(file, &entry.value, &at) {
                    Some(target) => GroupAlias::Name(target),
                    None => continue,
                },
                Value::Map(fields) => {
                    for f in fields
                        .iter()
                        .filter(|f| f.key != "model" && f.key != "hidden")
                    {
                        let hint = did_you_mean(&f.key, ["model", "hidden"])
                            .map(|c| format!("did you mean `{c}`?"));
                        self.sink.error(
                            file,
                            &at.key(&f.key),
                            "unknown key; LiteLLM does not have it either",
                            hint,
                        );
                    }
                    let Some(model) = entry.value.get("model") else {
                        self.sink.error(file, &at, "missing field `model`", None);
                        continue;
                    };
                    let Some(model) = self.text_of(file, &model.value, &at.key("model")) else {
                        continue;
                    };
                    let hidden = match entry.value.get("hidden") {
                        Some(h) => self
                            .typed::<Option<bool>>(file, &h.value, &at.key("hidden"))
                            .flatten()
                            .unwrap_or(false),
                        None => false,
                    };
                    GroupAlias::Detailed { model, hidden }
                }
                Value::Seq(_) => {
                    self.sink.error(
                        file,
                        &at,
                        "expected a model group name or {model, hidden}, found a sequence",
                        None,
                    );
                    continue;
                }
            };
            let target_path = match &alias {
                GroupAlias::Name(_) => at.clone(),
                GroupAlias::Detailed { .. } => at.key("model"),
            };
            self.alias_sites.push(LocatedAlias {
                alias: entry.key.clone(),
                target: alias.target().to_owned(),
                site: Site {
                    file,
                    path: target_path,
                },
            });
            out.insert(entry.key.clone(), alias);
        }
        Some(out)
    }

    /// One of `fallbacks`, `context_window_fallbacks`, `content_policy_fallbacks`, `default_fallbacks`.
    fn fallback_entry(&mut self, file: usize, entry: &Entry, at: &KeyPath, part: &mut RouterPart) {
        let site = Site {
            file,
            path: at.clone(),
        };
        match entry.key.as_str() {
            "default_fallbacks" => {
                if let Some(targets) = self.targets(file, &entry.value, at) {
                    part.default_fallbacks = Some((targets, site));
                }
            }
            key => {
                let field = match key {
                    "fallbacks" => "fallbacks",
                    "context_window_fallbacks" => "context_window_fallbacks",
                    _ => "content_policy_fallbacks",
                };
                let Some(list) = self.fallback_list(file, &entry.value, at, field) else {
                    return;
                };
                match field {
                    "fallbacks" => part.fallbacks = Some(list),
                    "context_window_fallbacks" => part.context_window_fallbacks = Some(list),
                    _ => part.content_policy_fallbacks = Some(list),
                }
            }
        }
    }

    /// `[{"gpt-4o": ["claude-sonnet"]}, ...]`, flow or block style; a target may be one string.
    fn fallback_list(
        &mut self,
        file: usize,
        node: &Node,
        path: &KeyPath,
        field: &'static str,
    ) -> Option<LocatedList> {
        const SHAPE: &str = "write each rule as a one-key mapping: `- gpt-4o: [claude-sonnet]`";
        let items = match &node.value {
            Value::Seq(items) => items.clone(),
            _ if node.is_null() => return None,
            _ => {
                self.sink.error(
                    file,
                    path,
                    format!(
                        "expected a list of fallback rules, found {}",
                        node.describe()
                    ),
                    Some(SHAPE.to_owned()),
                );
                return None;
            }
        };
        let mut rules = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = path.index(i);
            let entries = match &item.value {
                Value::Map(entries) if entries.len() == 1 => entries,
                Value::Map(entries) => {
                    self.sink.error(
                        file,
                        &at,
                        format!("a fallback rule maps exactly one model group to its fallbacks, found {} keys", entries.len()),
                        Some(SHAPE.to_owned()),
                    );
                    continue;
                }
                _ => {
                    self.sink.error(
                        file,
                        &at,
                        format!("expected a one-key mapping, found {}", item.describe()),
                        Some(SHAPE.to_owned()),
                    );
                    continue;
                }
            };
            let entry = &entries[0];
            let group_path = at.key(&entry.key);
            let Some(targets) = self.targets(file, &entry.value, &group_path) else {
                continue;
            };
            rules.push(LocatedRule {
                group: entry.key.clone(),
                group_site: Site {
                    file,
                    path: group_path,
                },
                targets,
            });
        }
        Some(LocatedList {
            field,
            site: Site {
                file,
                path: path.clone(),
            },
            rules,
        })
    }

    /// A target or a list of targets, each with its position.
    fn targets(&mut self, file: usize, node: &Node, path: &KeyPath) -> Option<Vec<(String, Site)>> {
        match &node.value {
            Value::Seq(items) => {
                let mut out = Vec::new();
                for (j, item) in items.iter().enumerate() {
                    let at = path.index(j);
                    if let Some(t) = self.text_of(file, item, &at) {
                        out.push((t, Site { file, path: at }));
                    }
                }
                Some(out)
            }
            Value::Scalar(_) if !node.is_null() => {
                let t = self.text_of(file, node, path)?;
                Some(vec![(
                    t,
                    Site {
                        file,
                        path: path.clone(),
                    },
                )])
            }
            _ => {
                self.sink.error(
                    file,
                    path,
                    format!(
                        "expected a fallback target or a list of targets, found {}",
                        node.describe()
                    ),
                    None,
                );
                None
            }
        }
    }
}

/// Something that came from one place in a file.
trait HasSite {
    fn site(&self) -> &Site;
}

impl HasSite for LocatedList {
    fn site(&self) -> &Site {
        &self.site
    }
}

impl HasSite for (Vec<(String, Site)>, Site) {
    fn site(&self) -> &Site {
        &self.1
    }
}

fn replace_entry(map: &mut Node, key: &str, value: Node) {
    if let Value::Map(entries) = &mut map.value {
        if let Some(e) = entries.iter_mut().find(|e| e.key == key) {
            e.value = value;
        }
    }
}

/// Removes and returns the entries of `map` named in `keys`.
fn take_entries(map: &mut Node, keys: &[&str]) -> Vec<Entry> {
    let Value::Map(entries) = &mut map.value else {
        return Vec::new();
    };
    let (taken, kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(entries)
        .into_iter()
        .partition(|e| keys.contains(&e.key.as_str()));
    *entries = kept;
    taken
}

impl KeyPath {
    /// The sibling key `key` of this path's last segment.
    fn parent_key(&self, key: &str) -> KeyPath {
        let segs = self.segs();
        let mut parent = KeyPath::root();
        for seg in &segs[..segs.len().saturating_sub(1)] {
            parent = match seg {
                yaml::Seg::Key(k) => parent.key(k),
                yaml::Seg::Index(i) => parent.index(*i),
            };
        }
        parent.key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_ignore_nothing_they_should_not() {
        let a = derive_id("gpt-4o", "openai/gpt-4o", Some("os.environ/BASE"), None);
        assert_eq!(
            a,
            derive_id("gpt-4o", "openai/gpt-4o", Some("os.environ/BASE"), None)
        );
        assert_eq!(a.len(), 16);
        assert_ne!(a, derive_id("gpt-4o", "openai/gpt-4o", None, None));
        assert_ne!(
            a,
            derive_id(
                "gpt-4o",
                "openai/gpt-4o",
                Some("os.environ/BASE"),
                Some("v1")
            )
        );
        // Field boundaries matter: ("ab", "c") is not ("a", "bc").
        assert_ne!(
            derive_id("ab", "c", None, None),
            derive_id("a", "bc", None, None)
        );
    }
}
