//! The versioned export document (`schema_version: 1`, `kind: switchyard/state`): its types,
//! its sections and its deterministic serialisation. Authoring rules apply: every type denies
//! unknown fields, optional fields are skipped when empty, lists are sorted by identity.
//! Reading the store, planning and applying live in `export.rs` and `import.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::RouterSettings;
use crate::store::{JsonObject, TeamRole, Usd, UserRole};

/// The document version this binary writes and the newest it reads.
pub const SCHEMA_VERSION: u32 = 1;
/// The document kind.
pub const KIND: &str = "switchyard/state";

/// One export of all admin-managed state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDocument {
    pub schema_version: u32,
    pub kind: String,
    pub source: Source,
    pub secrets: SecretsMode,
    pub spec: Spec,
    /// Read-only: what the config file contributes (its models and global router settings),
    /// so a reader sees the whole effective picture. Never imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<ConfigFileSection>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The Switchyard version that wrote the document.
    pub version: String,
    /// A name for the exporting instance (`--instance`), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// How credential values are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretsMode {
    /// Placeholders naming what was there: `<redacted:credentials/NAME/FIELD>`.
    #[default]
    Redacted,
    /// Each value sealed with a key derived from `SWITCHYARD_SALT_KEY` (`encrypted:v1:HEX`).
    Encrypted,
}

impl SecretsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretsMode::Redacted => "redacted",
            SecretsMode::Encrypted => "encrypted",
        }
    }
}

/// The importable state. A section that is absent was not exported (`--include`) and an
/// import leaves it alone; a present, empty section means "none".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub general_settings: Option<BTreeMap<String, Value>>,
    /// Global router settings saved at runtime (`{}` when none are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_settings: Option<RouterSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<ModelDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Vec<CredentialDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizations: Option<Vec<OrganizationDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams: Option<Vec<TeamDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budgets: Option<Vec<BudgetDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_groups: Option<Vec<AccessGroupDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<TagDoc>>,
}

/// The config file's share of the effective state: listed, never imported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFileSection {
    #[serde(default)]
    pub models: Vec<ConfigModel>,
    #[serde(default)]
    pub router_settings: RouterSettings,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigModel {
    pub model_id: String,
    pub model_name: String,
}

// ---------------------------------------------------------------------------------------
// Sections

/// The sections of `spec`, in document order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    GeneralSettings,
    RouterSettings,
    Models,
    Credentials,
    Organizations,
    Teams,
    Users,
    Budgets,
    Keys,
    AccessGroups,
    Tags,
}

impl Section {
    pub const ALL: [Section; 11] = [
        Section::GeneralSettings,
        Section::RouterSettings,
        Section::Models,
        Section::Credentials,
        Section::Organizations,
        Section::Teams,
        Section::Users,
        Section::Budgets,
        Section::Keys,
        Section::AccessGroups,
        Section::Tags,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Section::GeneralSettings => "general_settings",
            Section::RouterSettings => "router_settings",
            Section::Models => "models",
            Section::Credentials => "credentials",
            Section::Organizations => "organizations",
            Section::Teams => "teams",
            Section::Users => "users",
            Section::Budgets => "budgets",
            Section::Keys => "keys",
            Section::AccessGroups => "access_groups",
            Section::Tags => "tags",
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Section {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        Section::ALL
            .into_iter()
            .find(|x| x.as_str() == s || x.as_str().replace('_', "-") == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Section::ALL.iter().map(|x| x.as_str()).collect();
                format!("unknown section {s:?}; sections: {}", names.join(", "))
            })
    }
}

/// Which sections an export or import covers; empty means all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Include(Vec<Section>);

impl Include {
    pub fn all() -> Self {
        Include(Vec::new())
    }

    pub fn only(sections: impl IntoIterator<Item = Section>) -> Self {
        let mut v: Vec<Section> = sections.into_iter().collect();
        v.sort();
        v.dedup();
        Include(v)
    }

    pub fn contains(&self, s: Section) -> bool {
        self.0.is_empty() || self.0.contains(&s)
    }

    /// `teams,keys` (commas, optional spaces); an empty string means all.
    pub fn parse(list: &str) -> Result<Self, String> {
        let sections = list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Section>, String>>()?;
        Ok(Include::only(sections))
    }
}

impl Spec {
    /// Drops the sections `include` leaves out.
    pub fn retain(&mut self, include: &Include) {
        macro_rules! keep {
            ($($field:ident => $section:expr),*) => {
                $(if !include.contains($section) { self.$field = None; })*
            };
        }
        keep!(general_settings => Section::GeneralSettings,
              router_settings => Section::RouterSettings,
              models => Section::Models,
              credentials => Section::Credentials,
              organizations => Section::Organizations,
              teams => Section::Teams,
              users => Section::Users,
              budgets => Section::Budgets,
              keys => Section::Keys,
              access_groups => Section::AccessGroups,
              tags => Section::Tags);
    }

    /// Every object as JSON, by section and identity: the common ground of plans and diffs.
    /// General settings are one object per setting; global router settings one object
    /// named `global`.
    pub fn objects(&self) -> BTreeMap<Section, BTreeMap<String, Value>> {
        let mut out = BTreeMap::new();
        if let Some(g) = &self.general_settings {
            out.insert(
                Section::GeneralSettings,
                g.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            );
        }
        if let Some(r) = &self.router_settings {
            out.insert(
                Section::RouterSettings,
                BTreeMap::from([(GLOBAL.to_owned(), to_json(r))]),
            );
        }
        fn list<T: DocObject>(
            out: &mut BTreeMap<Section, BTreeMap<String, Value>>,
            items: &Option<Vec<T>>,
        ) {
            if let Some(items) = items {
                out.insert(
                    T::SECTION,
                    items
                        .iter()
                        .map(|i| (i.id().to_owned(), to_json(i)))
                        .collect(),
                );
            }
        }
        list(&mut out, &self.models);
        list(&mut out, &self.credentials);
        list(&mut out, &self.organizations);
        list(&mut out, &self.teams);
        list(&mut out, &self.users);
        list(&mut out, &self.budgets);
        list(&mut out, &self.keys);
        list(&mut out, &self.access_groups);
        list(&mut out, &self.tags);
        out
    }

    /// Sorts every list by identity and every set-like list inside objects, so the document
    /// has one byte form whatever order the objects were given in.
    pub fn normalize(&mut self) {
        fn sort<T: DocObject>(items: &mut Option<Vec<T>>) {
            if let Some(items) = items {
                for i in items.iter_mut() {
                    i.normalize();
                }
                items.sort_by(|a, b| a.id().cmp(b.id()));
            }
        }
        sort(&mut self.models);
        sort(&mut self.credentials);
        sort(&mut self.organizations);
        sort(&mut self.teams);
        sort(&mut self.users);
        sort(&mut self.budgets);
        sort(&mut self.keys);
        sort(&mut self.access_groups);
        sort(&mut self.tags);
        if let Some(g) = &mut self.general_settings {
            for v in g.values_mut() {
                *v = canonical(v);
            }
        }
    }
}

/// The identity of the one global router settings object.
pub const GLOBAL: &str = "global";

/// JSON of a document object. Document types hold only strings, numbers, maps and lists, so
/// this cannot fail; `Null` would only show a bug.
pub fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Sorts nested object keys (the workspace's serde_json keeps insertion order).
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn canonical_object(o: &mut JsonObject) {
    for v in o.values_mut() {
        *v = canonical(v);
    }
}

fn sort_set(v: &mut Vec<String>) {
    v.sort();
    v.dedup();
}

/// An object of one list section.
pub trait DocObject: Serialize + DeserializeOwned + Clone + PartialEq {
    const SECTION: Section;
    /// Stable identity, unique within the section.
    fn id(&self) -> &str;
    /// Sorts set-like lists and nested JSON.
    fn normalize(&mut self) {}
}

// ---------------------------------------------------------------------------------------
// Objects. Field names and meanings are the store's (`store::model`); conversion goes
// through JSON (`export.rs`), so a field added to a store spec shows up here or fails loudly.

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDoc {
    pub model_id: String,
    pub model_name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub litellm_params: JsonObject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_info: JsonObject,
}

impl DocObject for ModelDoc {
    const SECTION: Section = Section::Models;
    fn id(&self) -> &str {
        &self.model_id
    }
    fn normalize(&mut self) {
        canonical_object(&mut self.litellm_params);
        canonical_object(&mut self.model_info);
    }
}

/// A credential: its description and its values, redacted or sealed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialDoc {
    pub credential_name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credential_info: JsonObject,
    /// Value name → `<redacted:credentials/NAME/FIELD>` or `encrypted:v1:HEX`.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

impl DocObject for CredentialDoc {
    const SECTION: Section = Section::Credentials;
    fn id(&self) -> &str {
        &self.credential_name
    }
    fn normalize(&mut self) {
        canonical_object(&mut self.credential_info);
    }
}

/// The placeholder a redacted export writes for one credential value.
pub fn redacted_placeholder(credential: &str, field: &str) -> String {
    format!("<redacted:credentials/{credential}/{field}>")
}

/// Prefix of a sealed value in an encrypted export.
pub const ENCRYPTED_PREFIX: &str = "encrypted:v1:";

/// The authenticated context a value is sealed under: moving it to another credential or
/// field makes it fail to open.
pub fn seal_context(credential: &str, field: &str) -> Vec<u8> {
    format!("credentials/{credential}/{field}").into_bytes()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationDoc {
    pub organization_id: String,
    pub organization_alias: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: JsonObject,
}

impl DocObject for OrganizationDoc {
    const SECTION: Section = Section::Organizations;
    fn id(&self) -> &str {
        &self.organization_id
    }
    fn normalize(&mut self) {
        sort_set(&mut self.models);
        canonical_object(&mut self.metadata);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberDoc {
    pub user_id: String,
    pub role: TeamRole,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamDoc {
    pub team_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_budget: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_settings: Option<RouterSettings>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: JsonObject,
    #[serde(default, skip_serializing_if = "is_false")]
    pub blocked: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberDoc>,
}

impl DocObject for TeamDoc {
    const SECTION: Section = Section::Teams;
    fn id(&self) -> &str {
        &self.team_id
    }
    fn normalize(&mut self) {
        sort_set(&mut self.models);
        canonical_object(&mut self.metadata);
        self.members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserDoc {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    #[serde(default)]
    pub user_role: UserRole,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_budget: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: JsonObject,
}

impl DocObject for UserDoc {
    const SECTION: Section = Section::Users;
    fn id(&self) -> &str {
        &self.user_id
    }
    fn normalize(&mut self) {
        sort_set(&mut self.models);
        canonical_object(&mut self.metadata);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetDoc {
    pub budget_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_budget: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_requests: Option<u64>,
}

impl DocObject for BudgetDoc {
    const SECTION: Section = Section::Budgets;
    fn id(&self) -> &str {
        &self.budget_id
    }
}

/// A virtual key: its public id (stable identity), the hash of its secret (the key itself is
/// never stored), and everything an admin set on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDoc {
    pub public_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_alias: Option<String>,
    pub token_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_budget: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: JsonObject,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_settings: Option<RouterSettings>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub blocked: bool,
}

impl DocObject for KeyDoc {
    const SECTION: Section = Section::Keys;
    fn id(&self) -> &str {
        &self.public_id
    }
    fn normalize(&mut self) {
        sort_set(&mut self.models);
        sort_set(&mut self.tags);
        canonical_object(&mut self.metadata);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessGroupDoc {
    pub name: String,
    #[serde(default)]
    pub models: Vec<String>,
}

impl DocObject for AccessGroupDoc {
    const SECTION: Section = Section::AccessGroups;
    fn id(&self) -> &str {
        &self.name
    }
    fn normalize(&mut self) {
        sort_set(&mut self.models);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagDoc {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: JsonObject,
}

impl DocObject for TagDoc {
    const SECTION: Section = Section::Tags;
    fn id(&self) -> &str {
        &self.name
    }
    fn normalize(&mut self) {
        sort_set(&mut self.models);
        canonical_object(&mut self.metadata);
    }
}

// ---------------------------------------------------------------------------------------
// Formats

/// Output format of a document, plan or diff.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Yaml,
    Json,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "yaml" | "yml" => Ok(Format::Yaml),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format {other:?}; expected yaml or json")),
        }
    }
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Yaml => "application/yaml",
            Format::Json => "application/json",
        }
    }
}

impl StateDocument {
    /// The document's one byte form in `format` (JSON pretty-printed, newline-terminated).
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Yaml => serde_yaml::to_string(self).unwrap_or_default(),
            Format::Json => {
                let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
                s.push('\n');
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_parses_names_and_refuses_unknown_ones() {
        let i = Include::parse("teams, keys").unwrap();
        assert!(i.contains(Section::Teams) && i.contains(Section::Keys));
        assert!(!i.contains(Section::Users));
        assert!(Include::parse("").unwrap().contains(Section::Users));
        let err = Include::parse("teams,widgets").unwrap_err();
        assert!(
            err.contains("\"widgets\"") && err.contains("access_groups"),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err = serde_json::from_str::<TeamDoc>(r#"{"team_id":"t","colour":"red"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }
}
