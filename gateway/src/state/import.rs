//! Import: parse a document under size and shape limits, validate all of it against the
//! target, build an [`ImportPlan`] (create / update with field changes / unchanged / skip /
//! conflict per object), then apply the plan through `StateStore::apply_state` in one
//! transaction. Nothing is written unless the whole plan is clean.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::export::{convert, spec_of};
use super::schema::*;
use crate::admin::validate::{key_aliases_known, router_settings_known, KnownTargets};
use crate::config::{Config, RouterSettings};
use crate::store::{
    AccessGroup, Actor, ApplyOutcome, BudgetSpec, CredentialUpsert, CredentialValues, KeySpec,
    ModelSpec, OrganizationSpec, SecretCipher, StateChanges, Store, StoreError, Tag, TeamSpec,
    UserSpec,
};

/// Largest document accepted: 10,000 keys export to about 4 MiB of YAML.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Deepest nesting accepted (JSON and YAML): documents nest about 8 levels; metadata more.
const MAX_DEPTH: usize = 64;

/// What to do with an object that exists in the target with other values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictMode {
    /// Leave the target's object as it is.
    Skip,
    /// Replace it with the document's object (the default).
    #[default]
    Replace,
    /// Keep the target's fields the document leaves out; maps are merged, the document
    /// winning on shared keys.
    Merge,
}

impl std::str::FromStr for ConflictMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip" => Ok(ConflictMode::Skip),
            "replace" => Ok(ConflictMode::Replace),
            "merge" => Ok(ConflictMode::Merge),
            other => Err(format!(
                "unknown conflict mode {other:?}; expected skip, replace or merge"
            )),
        }
    }
}

/// How to import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    pub on_conflict: ConflictMode,
    pub include: Include,
    /// Values for redacted placeholders, by `CREDENTIAL/FIELD`.
    pub bindings: BTreeMap<String, SecretString>,
    /// Opens `encrypted:v1:` values (salt key, `SealPurpose::ExportSecrets`).
    pub export_cipher: Option<SecretCipher>,
}

/// One problem found in a document: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("document is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("{location}: {message}")]
    Parse { location: String, message: String },
    #[error(
        "document schema_version {document} is newer than this binary supports ({supported})\n\
         upgrade switchyard to import it"
    )]
    SchemaTooNew { document: u64, supported: u32 },
    #[error("document schema_version {found} is not supported; expected {supported}")]
    SchemaUnsupported { found: String, supported: u32 },
    #[error("document kind is {found:?}, expected {expected:?}")]
    WrongKind {
        found: String,
        expected: &'static str,
    },
    #[error("document is invalid ({} problems):\n{}", .0.len(), render_problems(.0))]
    Invalid(Vec<Problem>),
    #[error(
        "redacted secrets are not bound: {}\nbind each with --bind-secret CREDENTIAL/FIELD=ENV_VAR \
         (API: bind_secrets), or create the credential in the target first",
        .0.join(", ")
    )]
    Unbound(Vec<String>),
    #[error("encrypted values of credential {0:?} do not open with this salt key\nuse the salt key (SWITCHYARD_SALT_KEY) of the exporting environment")]
    WrongSalt(String),
    #[error("the document has encrypted secrets, and no salt key is configured\nset SWITCHYARD_SALT_KEY")]
    NoSaltKey,
    #[error("the plan has {0} conflicts; nothing was changed")]
    NotClean(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn render_problems(p: &[Problem]) -> String {
    p.iter()
        .map(|p| format!("  {}: {}", p.path, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------
// Parsing

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    schema_version: Option<Value>,
    #[serde(default)]
    kind: Option<Value>,
}

/// Parses a YAML or JSON document: size limit first, then version and kind (so a newer
/// document is refused for its version, not its new fields), then the full shape with the
/// location of the first error.
pub fn parse_document(text: &str, max_bytes: usize) -> Result<StateDocument, ImportError> {
    if text.len() > max_bytes {
        return Err(ImportError::TooLarge {
            size: text.len(),
            limit: max_bytes,
        });
    }
    let json = text.trim_start().starts_with('{');
    if !json {
        check_yaml_shape(text)?;
    }
    let probe: Probe = if json {
        serde_json::from_str(text).map_err(json_error)?
    } else {
        serde_yaml::from_str(text).map_err(|e| yaml_error("", e))?
    };
    match &probe.schema_version {
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {}
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v > u64::from(SCHEMA_VERSION)) => {
            return Err(ImportError::SchemaTooNew {
                document: n.as_u64().unwrap_or_default(),
                supported: SCHEMA_VERSION,
            })
        }
        other => {
            return Err(ImportError::SchemaUnsupported {
                found: other
                    .as_ref()
                    .map_or("(missing)".to_owned(), |v| v.to_string()),
                supported: SCHEMA_VERSION,
            })
        }
    }
    match &probe.kind {
        Some(Value::String(k)) if k == KIND => {}
        other => {
            return Err(ImportError::WrongKind {
                found: other
                    .as_ref()
                    .map_or("(missing)".to_owned(), |v| v.to_string()),
                expected: KIND,
            })
        }
    }
    let mut doc: StateDocument = if json {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ImportError::Parse {
                location: format!("line {}, column {}: {path}", inner.line(), inner.column()),
                message: inner.to_string(),
            }
        })?
    } else {
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            yaml_error(&path, e.into_inner())
        })?
    };
    doc.spec.normalize();
    Ok(doc)
}

fn json_error(e: serde_json::Error) -> ImportError {
    ImportError::Parse {
        location: format!("line {}, column {}", e.line(), e.column()),
        message: e.to_string(),
    }
}

fn yaml_error(path: &str, e: serde_yaml::Error) -> ImportError {
    let at = e
        .location()
        .map(|l| format!("line {}, column {}", l.line(), l.column()))
        .unwrap_or_else(|| "document".to_owned());
    ImportError::Parse {
        location: if path.is_empty() || path == "." {
            at
        } else {
            format!("{at}: {path}")
        },
        message: e.to_string(),
    }
}

/// Refuses YAML anchors and aliases (exports never write them; an alias bomb expands a few
/// hundred bytes into gigabytes) and nesting deeper than [`MAX_DEPTH`], before any value
/// is built.
fn check_yaml_shape(text: &str) -> Result<(), ImportError> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| ImportError::Parse {
            location: format!(
                "line {}, column {}",
                e.marker().line(),
                e.marker().col() + 1
            ),
            message: e.info().to_owned(),
        })?;
        let at = || format!("line {}, column {}", mark.line(), mark.col() + 1);
        match event {
            Event::StreamEnd => return Ok(()),
            Event::Alias(_) => {
                return Err(ImportError::Parse {
                    location: at(),
                    message: "YAML aliases are not allowed in state documents".into(),
                })
            }
            Event::Scalar(_, _, anchor, _)
            | Event::SequenceStart(anchor, _)
            | Event::MappingStart(anchor, _)
                if anchor > 0 =>
            {
                return Err(ImportError::Parse {
                    location: at(),
                    message: "YAML anchors are not allowed in state documents".into(),
                });
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ImportError::Parse {
                        location: at(),
                        message: format!("nesting deeper than {MAX_DEPTH} levels"),
                    });
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Plans

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Unchanged,
    /// Exists with other values; left alone (`--on-conflict skip`).
    Skip,
    /// Cannot be applied (e.g. its alias belongs to another object in the target).
    Conflict,
}

/// One field that differs. Secret values are never shown: credential values appear as
/// placeholders or `<changed>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedObject {
    pub section: String,
    pub id: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub create: usize,
    pub update: usize,
    pub unchanged: usize,
    pub skip: usize,
    pub conflict: usize,
}

/// What an import would do, object by object. Applying it writes exactly the creates and
/// updates listed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportPlan {
    pub summary: PlanSummary,
    /// Every object but the unchanged ones, in section order then by identity.
    pub objects: Vec<PlannedObject>,
    #[serde(skip)]
    changes: StateChanges,
}

impl ImportPlan {
    /// True when the plan can be applied: no conflicts.
    pub fn is_clean(&self) -> bool {
        self.summary.conflict == 0
    }

    /// True when applying would change nothing.
    pub fn is_noop(&self) -> bool {
        self.summary.create == 0 && self.summary.update == 0
    }

    /// The plan for people: one line per object that changes, its field changes indented,
    /// then the totals.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for o in &self.objects {
            let (mark, word) = match o.action {
                Action::Create => ('+', "create"),
                Action::Update => ('~', "update"),
                Action::Unchanged => ('=', "unchanged"),
                Action::Skip => ('-', "skip (exists with other values)"),
                Action::Conflict => ('!', "conflict"),
            };
            let _ = write!(out, "{mark} {}/{}: {word}", o.section, o.id);
            if let Some(r) = &o.reason {
                let _ = write!(out, ": {r}");
            }
            out.push('\n');
            for c in &o.changes {
                let _ = writeln!(
                    out,
                    "    {}: {} -> {}",
                    c.field,
                    show(c.before.as_ref()),
                    show(c.after.as_ref())
                );
            }
        }
        let s = self.summary;
        let _ = writeln!(
            out,
            "plan: {} to create, {} to update, {} unchanged, {} skipped, {} conflicts",
            s.create, s.update, s.unchanged, s.skip, s.conflict
        );
        out
    }
}

pub(crate) fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".to_owned(),
        Some(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// Field-level differences between two JSON objects (or one field `value` for scalars).
pub(crate) fn field_changes(before: Option<&Value>, after: Option<&Value>) -> Vec<FieldChange> {
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let fields: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            fields
                .into_iter()
                .filter(|f| b.get(*f) != a.get(*f))
                .map(|f| FieldChange {
                    field: f.clone(),
                    before: b.get(f).cloned(),
                    after: a.get(f).cloned(),
                })
                .collect()
        }
        (b, a) if b != a => vec![FieldChange {
            field: "value".into(),
            before: b.cloned(),
            after: a.cloned(),
        }],
        _ => Vec::new(),
    }
}

/// Fields the document leaves out keep the target's; maps are merged one level deep.
fn merge(target: &Value, incoming: &Value) -> Value {
    match (target, incoming) {
        (Value::Object(t), Value::Object(i)) => {
            let mut out = t.clone();
            for (k, v) in i {
                let merged = match (t.get(k), v) {
                    (Some(Value::Object(tv)), Value::Object(iv)) => {
                        let mut m = tv.clone();
                        m.extend(iv.iter().map(|(k, v)| (k.clone(), v.clone())));
                        Value::Object(m)
                    }
                    _ => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            canonical(&Value::Object(out))
        }
        (_, i) => i.clone(),
    }
}

/// The credential values an import writes, resolved from bindings or sealed values.
struct ResolvedSecrets {
    /// Per credential: every value in clear, or `None` to keep the target's values.
    values: BTreeMap<String, Option<CredentialValues>>,
    /// Credentials whose values differ from the target's (or cannot be compared).
    changed: BTreeSet<String>,
}

/// Builds the plan for importing `doc` into `store`: reads the target once, validates every
/// section, and decides per object. `config` supplies the groups fallback targets may name
/// besides runtime models; without it only runtime models count.
pub async fn plan(
    store: &dyn Store,
    config: Option<&Config>,
    mut doc: StateDocument,
    opts: &ImportOptions,
) -> Result<ImportPlan, ImportError> {
    doc.spec.retain(&opts.include);
    let incoming = doc.spec;
    let snapshot = store.read_state().await?;
    let target = spec_of(&snapshot).map_err(|e| {
        ImportError::Store(StoreError::Corrupt {
            what: "state".into(),
            reason: e.to_string(),
        })
    })?;

    let mut problems = Vec::new();
    check_duplicates(&incoming, &mut problems);
    let specs = to_specs(&incoming, &mut problems);
    let secrets =
        resolve_secrets(store, &incoming, &target, doc.secrets, opts, &mut problems).await?;

    // Decide per object, on JSON: the document's object against the target's. Credential
    // values are compared in clear above (`secrets.changed`); here both sides show
    // placeholders.
    let mut compared = incoming.clone();
    for c in compared.credentials.iter_mut().flatten() {
        for (field, v) in c.values.iter_mut() {
            *v = redacted_placeholder(&c.credential_name, field);
        }
    }
    let inc_objects = compared.objects();
    let mut tgt_objects = target.objects();
    // No runtime router settings and an empty block in the document are the same thing.
    if snapshot.router_settings.is_none() {
        tgt_objects.remove(&Section::RouterSettings);
    }
    let empty_object = Value::Object(Default::default());
    let mut objects = Vec::new();
    let mut summary = PlanSummary::default();
    // The object written for each (section, id): the document's, or merged with the target's.
    let mut writes: BTreeMap<Section, BTreeMap<String, Value>> = BTreeMap::new();
    for (section, items) in &inc_objects {
        let empty = BTreeMap::new();
        let existing = tgt_objects.get(section).unwrap_or(&empty);
        for (id, new) in items {
            let old = existing.get(id);
            let secret_changed =
                *section == Section::Credentials && secrets.changed.contains(id) && old.is_some();
            let (action, written, mut changes) = match old {
                None if *section == Section::RouterSettings && *new == empty_object => {
                    (Action::Unchanged, None, Vec::new())
                }
                None => (Action::Create, Some(new.clone()), Vec::new()),
                Some(old) if old == new && !secret_changed => (Action::Unchanged, None, Vec::new()),
                Some(old) => {
                    let target_obj = match opts.on_conflict {
                        ConflictMode::Merge => merge(old, new),
                        _ => new.clone(),
                    };
                    let changes = field_changes(Some(old), Some(&target_obj));
                    match opts.on_conflict {
                        _ if changes.is_empty() && !secret_changed => {
                            (Action::Unchanged, None, changes)
                        }
                        ConflictMode::Skip => (Action::Skip, None, changes),
                        _ => (Action::Update, Some(target_obj), changes),
                    }
                }
            };
            if secret_changed && action != Action::Unchanged {
                changes.push(FieldChange {
                    field: "values (secret)".into(),
                    before: Some(Value::String("<stored>".into())),
                    after: Some(Value::String("<changed>".into())),
                });
            }
            if let Some(w) = written {
                writes.entry(*section).or_default().insert(id.clone(), w);
            }
            objects.push(PlannedObject {
                section: section.as_str().to_owned(),
                id: id.clone(),
                action,
                changes,
                reason: None,
            });
        }
    }

    // The state after the import: the target with every write laid over it.
    let mut after = tgt_objects.clone();
    for (section, items) in &writes {
        let s = after.entry(*section).or_default();
        for (id, v) in items {
            s.insert(id.clone(), v.clone());
        }
    }
    check_references(&after, config, &mut problems);
    let conflicts = check_uniques(&after, &writes);
    for o in &mut objects {
        if let Some(reason) = conflicts.get(&(o.section.clone(), o.id.clone())) {
            o.action = Action::Conflict;
            o.reason = Some(reason.clone());
        }
    }
    if !problems.is_empty() {
        return Err(ImportError::Invalid(problems));
    }

    for o in &objects {
        match o.action {
            Action::Create => summary.create += 1,
            Action::Update => summary.update += 1,
            Action::Unchanged => summary.unchanged += 1,
            Action::Skip => summary.skip += 1,
            Action::Conflict => summary.conflict += 1,
        }
    }
    let changes = build_changes(&writes, &specs, &secrets)?;
    objects.retain(|o| o.action != Action::Unchanged);
    Ok(ImportPlan {
        summary,
        objects,
        changes,
    })
}

/// Applies a clean plan in one transaction; returns what the store did.
pub async fn apply(
    store: &dyn Store,
    actor: &Actor,
    plan: &ImportPlan,
) -> Result<ApplyOutcome, ImportError> {
    if !plan.is_clean() {
        return Err(ImportError::NotClean(plan.summary.conflict));
    }
    if plan.is_noop() {
        return Ok(ApplyOutcome::default());
    }
    Ok(store.apply_state(actor, &plan.changes).await?)
}

fn check_duplicates(spec: &Spec, problems: &mut Vec<Problem>) {
    fn dup<T: DocObject>(items: &Option<Vec<T>>, problems: &mut Vec<Problem>) {
        let mut seen = BTreeSet::new();
        let mut reported = BTreeSet::new();
        for item in items.iter().flatten() {
            if !seen.insert(item.id()) && reported.insert(item.id()) {
                problems.push(Problem {
                    path: format!("spec.{}[{:?}]", T::SECTION, item.id()),
                    message: "listed more than once".into(),
                });
            }
        }
    }
    dup(&spec.models, problems);
    dup(&spec.credentials, problems);
    dup(&spec.organizations, problems);
    dup(&spec.teams, problems);
    dup(&spec.users, problems);
    dup(&spec.budgets, problems);
    dup(&spec.keys, problems);
    dup(&spec.access_groups, problems);
    dup(&spec.tags, problems);
}

/// Store specs of every document object, checked with the store's own field rules.
#[derive(Default)]
struct Specs {
    budgets: BTreeMap<String, BudgetSpec>,
    models: BTreeMap<String, ModelSpec>,
    organizations: BTreeMap<String, OrganizationSpec>,
    users: BTreeMap<String, UserSpec>,
    teams: BTreeMap<String, TeamSpec>,
    keys: BTreeMap<String, KeySpec>,
    access_groups: BTreeMap<String, AccessGroup>,
    tags: BTreeMap<String, Tag>,
}

fn to_specs(spec: &Spec, problems: &mut Vec<Problem>) -> Specs {
    fn each<T: DocObject, S: serde::de::DeserializeOwned>(
        items: &Option<Vec<T>>,
        validate: impl Fn(&S) -> Result<(), StoreError>,
        problems: &mut Vec<Problem>,
    ) -> BTreeMap<String, S> {
        let mut out = BTreeMap::new();
        for item in items.iter().flatten() {
            let path = format!("spec.{}[{:?}]", T::SECTION, item.id());
            match convert::<T, S>(item) {
                Ok(s) => match validate(&s) {
                    Ok(()) => {
                        out.insert(item.id().to_owned(), s);
                    }
                    Err(e) => problems.push(Problem {
                        path,
                        message: e.to_string(),
                    }),
                },
                Err(e) => problems.push(Problem { path, message: e }),
            }
        }
        out
    }
    Specs {
        budgets: each(&spec.budgets, BudgetSpec::validate, problems),
        models: each(&spec.models, ModelSpec::validate, problems),
        organizations: each(&spec.organizations, OrganizationSpec::validate, problems),
        users: each(&spec.users, UserSpec::validate, problems),
        teams: each(&spec.teams, TeamSpec::validate, problems),
        keys: each(&spec.keys, KeySpec::validate, problems),
        access_groups: each(&spec.access_groups, AccessGroup::validate, problems),
        tags: each(&spec.tags, Tag::validate, problems),
    }
}

/// Turns every credential's document values into clear values (from bindings or sealed
/// values), or decides to keep the target's. Unbound placeholders are collected and
/// reported together.
async fn resolve_secrets(
    store: &dyn Store,
    incoming: &Spec,
    target: &Spec,
    mode: SecretsMode,
    opts: &ImportOptions,
    problems: &mut Vec<Problem>,
) -> Result<ResolvedSecrets, ImportError> {
    let mut out = ResolvedSecrets {
        values: BTreeMap::new(),
        changed: BTreeSet::new(),
    };
    let Some(creds) = &incoming.credentials else {
        return Ok(out);
    };
    let existing: BTreeMap<&str, &CredentialDoc> = target
        .credentials
        .iter()
        .flatten()
        .map(|c| (c.credential_name.as_str(), c))
        .collect();
    let mut unbound = Vec::new();
    for c in creds {
        let name = &c.credential_name;
        let mut clear: CredentialValues = BTreeMap::new();
        let mut missing = Vec::new();
        for (field, v) in &c.values {
            let path = format!("spec.credentials[{name:?}].values.{field}");
            let binding = opts.bindings.get(&format!("{name}/{field}"));
            match mode {
                SecretsMode::Redacted => {
                    if *v != redacted_placeholder(name, field) {
                        problems.push(Problem {
                            path,
                            message: format!(
                                "a redacted document holds placeholders only; expected {:?}",
                                redacted_placeholder(name, field)
                            ),
                        });
                        continue;
                    }
                    match binding {
                        Some(b) => {
                            clear.insert(field.clone(), b.clone());
                        }
                        None => missing.push(field.clone()),
                    }
                }
                SecretsMode::Encrypted => {
                    let Some(hex_part) = v.strip_prefix(ENCRYPTED_PREFIX) else {
                        problems.push(Problem {
                            path,
                            message: format!("expected a sealed value ({ENCRYPTED_PREFIX}...)"),
                        });
                        continue;
                    };
                    let cipher = opts.export_cipher.as_ref().ok_or(ImportError::NoSaltKey)?;
                    let sealed =
                        hex::decode(hex_part).map_err(|_| ImportError::WrongSalt(name.clone()))?;
                    let plain = cipher
                        .open(&seal_context(name, field), &sealed)
                        .map_err(|_| ImportError::WrongSalt(name.clone()))?;
                    let plain = String::from_utf8(plain)
                        .map_err(|_| ImportError::WrongSalt(name.clone()))?;
                    clear.insert(field.clone(), SecretString::from(plain));
                }
            }
        }
        let stored = existing.get(name.as_str());
        let same_names = stored.is_some_and(|s| {
            s.values.keys().collect::<Vec<_>>() == c.values.keys().collect::<Vec<_>>()
        });
        if clear.is_empty() && missing.is_empty() && c.values.is_empty() {
            // No values at all.
            if stored.is_some_and(|s| !s.values.is_empty()) {
                out.changed.insert(name.clone());
            }
            out.values.insert(name.clone(), Some(BTreeMap::new()));
            continue;
        }
        if clear.is_empty() {
            // Only placeholders: keep the target's values, which must exist.
            if same_names {
                out.values.insert(name.clone(), None);
            } else {
                unbound.extend(missing.iter().map(|f| format!("{name}/{f}")));
            }
            continue;
        }
        // Some values given: the rest come from the target, and the result is compared.
        let current = if stored.is_some() {
            match store.credential_values(name).await {
                Ok(v) => v,
                Err(StoreError::NoSaltKey) | Err(StoreError::Decrypt { .. }) => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        for f in &missing {
            match current.as_ref().and_then(|c| c.get(f)) {
                Some(v) => {
                    clear.insert(f.clone(), v.clone());
                }
                None => unbound.push(format!("{name}/{f}")),
            }
        }
        let equal = current.as_ref().is_some_and(|cur| {
            cur.len() == clear.len()
                && cur.iter().all(|(k, v)| {
                    clear
                        .get(k)
                        .is_some_and(|c| c.expose_secret() == v.expose_secret())
                })
        });
        if equal {
            out.values.insert(name.clone(), None);
        } else {
            out.changed.insert(name.clone());
            out.values.insert(name.clone(), Some(clear));
        }
    }
    if !unbound.is_empty() {
        return Err(ImportError::Unbound(unbound));
    }
    Ok(out)
}

/// Every reference must resolve in the state after the import.
fn check_references(
    after: &BTreeMap<Section, BTreeMap<String, Value>>,
    config: Option<&Config>,
    problems: &mut Vec<Problem>,
) {
    let empty = BTreeMap::new();
    let get = |s: Section| after.get(&s).unwrap_or(&empty);
    let mut check = |section: Section, field: &str, target: Section| {
        for (id, v) in get(section) {
            let refs: Vec<String> = match v.get(field) {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|m| m.get("user_id").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            };
            for r in refs {
                if !get(target).contains_key(&r) {
                    problems.push(Problem {
                        path: format!("spec.{section}[{id:?}].{field}"),
                        message: format!(
                            "references {} {r:?}, which neither the document nor the target has",
                            target.as_str().trim_end_matches('s')
                        ),
                    });
                }
            }
        }
    };
    check(Section::Organizations, "budget_id", Section::Budgets);
    check(Section::Teams, "organization_id", Section::Organizations);
    check(Section::Teams, "members", Section::Users);
    check(Section::Keys, "team_id", Section::Teams);
    check(Section::Keys, "user_id", Section::Users);
    check(Section::Models, "credential_name", Section::Credentials);

    // Fallback targets and aliases: config groups plus runtime models after the import.
    let known =
        config
            .map(KnownTargets::of)
            .unwrap_or_default()
            .with_models(get(Section::Models).values().filter_map(|m| {
                Some((m.get("model_name")?.as_str()?, m.get("model_id")?.as_str()?))
            }));
    let mut settings = |path: String, v: Option<&Value>| {
        let Some(v) = v else { return };
        match serde_json::from_value::<RouterSettings>(v.clone()) {
            Ok(rs) => {
                if let Err(e) = router_settings_known(&known, &rs) {
                    problems.push(Problem {
                        path,
                        message: e.message,
                    });
                }
            }
            Err(e) => problems.push(Problem {
                path,
                message: e.to_string(),
            }),
        }
    };
    for (id, v) in get(Section::RouterSettings) {
        if id == GLOBAL {
            settings("spec.router_settings".into(), Some(v));
        }
    }
    for (id, v) in get(Section::Teams) {
        settings(
            format!("spec.teams[{id:?}].router_settings"),
            v.get("router_settings"),
        );
    }
    let mut alias_problems = Vec::new();
    for (id, v) in get(Section::Keys) {
        settings(
            format!("spec.keys[{id:?}].router_settings"),
            v.get("router_settings"),
        );
        if let Some(aliases) = v.get("aliases") {
            if let Ok(map) = serde_json::from_value::<BTreeMap<String, String>>(aliases.clone()) {
                if let Err(e) = key_aliases_known(&known, &map) {
                    alias_problems.push(Problem {
                        path: format!("spec.keys[{id:?}].aliases"),
                        message: e.message,
                    });
                }
            }
        }
    }
    problems.extend(alias_problems);
}

/// Unique aliases and token hashes in the state after the import. A clash that involves a
/// written object makes that object a conflict.
fn check_uniques(
    after: &BTreeMap<Section, BTreeMap<String, Value>>,
    writes: &BTreeMap<Section, BTreeMap<String, Value>>,
) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for (section, field) in [
        (Section::Keys, "key_alias"),
        (Section::Keys, "token_hash"),
        (Section::Teams, "team_alias"),
    ] {
        let mut holders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (id, v) in after.get(&section).into_iter().flatten() {
            if let Some(value) = v.get(field).and_then(Value::as_str) {
                holders.entry(value).or_default().push(id);
            }
        }
        let written = writes.get(&section);
        for (value, ids) in holders.into_iter().filter(|(_, ids)| ids.len() > 1) {
            for id in &ids {
                if written.is_some_and(|w| w.contains_key(*id)) {
                    let others: Vec<&str> = ids.iter().filter(|o| *o != id).copied().collect();
                    let shown = if field == "token_hash" {
                        "its token_hash".to_owned()
                    } else {
                        format!("{field} {value:?}")
                    };
                    out.insert(
                        (section.as_str().to_owned(), (*id).to_owned()),
                        format!("{shown} is also held by {}", others.join(", ")),
                    );
                }
            }
        }
    }
    out
}

fn build_changes(
    writes: &BTreeMap<Section, BTreeMap<String, Value>>,
    specs: &Specs,
    secrets: &ResolvedSecrets,
) -> Result<StateChanges, ImportError> {
    let mut changes = StateChanges::default();
    let up = &mut changes.upsert;
    let mut problems = Vec::new();
    // A merged object differs from the document's; convert what is written.
    fn spec_for<S: serde::de::DeserializeOwned + Clone>(
        section: Section,
        id: &str,
        written: &Value,
        parsed: Option<&S>,
        problems: &mut Vec<Problem>,
    ) -> Option<S> {
        match serde_json::from_value::<S>(written.clone()) {
            Ok(s) => Some(s),
            Err(e) => {
                // The document's own object always converts (checked in to_specs).
                if parsed.is_none() {
                    problems.push(Problem {
                        path: format!("spec.{section}[{id:?}]"),
                        message: e.to_string(),
                    });
                }
                parsed.cloned()
            }
        }
    }
    for (section, items) in writes {
        for (id, v) in items {
            match section {
                Section::GeneralSettings => {
                    up.general_settings.insert(id.clone(), v.clone());
                }
                Section::RouterSettings => {
                    match serde_json::from_value::<RouterSettings>(v.clone()) {
                        Ok(rs) => up.router_settings = Some(rs),
                        Err(e) => problems.push(Problem {
                            path: "spec.router_settings".into(),
                            message: e.to_string(),
                        }),
                    }
                }
                Section::Models => up.models.extend(spec_for(
                    *section,
                    id,
                    v,
                    specs.models.get(id),
                    &mut problems,
                )),
                Section::Budgets => up.budgets.extend(spec_for(
                    *section,
                    id,
                    v,
                    specs.budgets.get(id),
                    &mut problems,
                )),
                Section::Organizations => up.organizations.extend(spec_for(
                    *section,
                    id,
                    v,
                    specs.organizations.get(id),
                    &mut problems,
                )),
                Section::Users => up.users.extend(spec_for(
                    *section,
                    id,
                    v,
                    specs.users.get(id),
                    &mut problems,
                )),
                Section::Teams => up.teams.extend(spec_for(
                    *section,
                    id,
                    v,
                    specs.teams.get(id),
                    &mut problems,
                )),
                Section::Keys => {
                    up.keys
                        .extend(spec_for(*section, id, v, specs.keys.get(id), &mut problems))
                }
                Section::AccessGroups => up.access_groups.extend(spec_for(
                    *section,
                    id,
                    v,
                    specs.access_groups.get(id),
                    &mut problems,
                )),
                Section::Tags => {
                    up.tags
                        .extend(spec_for(*section, id, v, specs.tags.get(id), &mut problems))
                }
                Section::Credentials => {
                    let info = v
                        .get("credential_info")
                        .and_then(|i| serde_json::from_value(i.clone()).ok())
                        .unwrap_or_default();
                    up.credentials.push(CredentialUpsert {
                        credential_name: id.clone(),
                        credential_info: info,
                        values: secrets.values.get(id).cloned().flatten(),
                    });
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(ImportError::Invalid(problems));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_target_fields_and_merges_maps() {
        let t = serde_json::json!({"a": 1, "m": {"x": 1, "y": 2}, "l": [1]});
        let i = serde_json::json!({"b": 2, "m": {"y": 3}, "l": [2]});
        assert_eq!(
            merge(&t, &i),
            serde_json::json!({"a": 1, "b": 2, "l": [2], "m": {"x": 1, "y": 3}})
        );
    }

    #[test]
    fn newer_schema_is_refused_naming_both_versions() {
        let err = parse_document(
            "schema_version: 7\nkind: switchyard/state\nfuture_field: 1\n",
            DEFAULT_MAX_BYTES,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains('7') && err.contains("(1)"), "{err}");
    }

    #[test]
    fn aliases_and_oversized_documents_are_refused() {
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n";
        let err = parse_document(bomb, DEFAULT_MAX_BYTES)
            .unwrap_err()
            .to_string();
        assert!(err.contains("anchors are not allowed"), "{err}");
        let err = parse_document(&"#".repeat(100), 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("over the 10-byte limit"), "{err}");
    }

    #[test]
    fn unknown_fields_error_names_line_and_path() {
        let text = "schema_version: 1\nkind: switchyard/state\nsource: {version: \"0.1.0\"}\n\
                    secrets: redacted\nspec:\n  teams:\n  - team_id: t1\n    colour: red\n";
        let err = parse_document(text, DEFAULT_MAX_BYTES)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 8"), "{err}");
        assert!(err.contains("spec.teams[0]"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }
}
