//! The store's entities. Each is split the same way:
//! - a `*Spec`: what an admin manages, including its stable identity. Created, upserted by
//!   import and exported as is; no timestamps, no spend.
//! - a record (`Team`, `KeyRecord`, ...): the spec plus what the store keeps by itself
//!   (spend, budget reset time, created/updated times).
//! - a `*Patch`: a partial update; `None` leaves a field alone, `Some(None)` clears it.
//!
//! Validation of single fields (negative budgets, malformed durations, empty aliases) lives
//! here; checks that need the database (references, uniqueness) live in the SQL backends.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, DurationRound, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::keys::{PublicId, TokenHash};
use super::{ObjectKind, StoreError};
use crate::config::RouterSettings;

/// A JSON object with sorted keys (metadata, `litellm_params`, `model_info`, ...).
pub type JsonObject = BTreeMap<String, Value>;

/// Longest id, alias or name the store accepts.
pub const MAX_NAME_LEN: usize = 256;
/// Largest page a list call may ask for.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// Current wall time, truncated to microseconds: PostgreSQL keeps microseconds, so a record
/// read back from either backend equals the one written.
pub fn now() -> DateTime<Utc> {
    truncate_time(Utc::now())
}

pub(crate) fn truncate_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::microseconds(1)).unwrap_or(t)
}

/// An amount of US dollars, kept as an exact integer number of nano-dollars (1e-9 USD), so
/// spend totals are sums of integers and never drift from their spend logs. Serialized as a
/// plain number of dollars, LiteLLM's unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(i64);

impl Usd {
    pub const ZERO: Usd = Usd(0);
    const NANOS_PER_DOLLAR: f64 = 1e9;

    pub const fn from_nanos(nanos: i64) -> Self {
        Usd(nanos)
    }

    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// Rounds to the nearest nano-dollar; `None` for NaN, infinities and values beyond
    /// ±9.2 billion dollars.
    pub fn from_dollars(dollars: f64) -> Option<Self> {
        let nanos = (dollars * Self::NANOS_PER_DOLLAR).round();
        if nanos.is_finite() && nanos.abs() < i64::MAX as f64 {
            Some(Usd(nanos as i64))
        } else {
            None
        }
    }

    pub fn dollars(self) -> f64 {
        self.0 as f64 / Self::NANOS_PER_DOLLAR
    }

    pub fn checked_add(self, other: Usd) -> Option<Usd> {
        self.0.checked_add(other.0).map(Usd)
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let frac = format!("{:09}", abs % 1_000_000_000);
        let frac = frac.trim_end_matches('0');
        let frac = if frac.len() < 2 {
            format!("{frac:0<2}")
        } else {
            frac.to_owned()
        };
        write!(f, "{sign}${}.{frac}", abs / 1_000_000_000)
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.dollars())
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Usd::from_dollars(v)
            .ok_or_else(|| serde::de::Error::custom(format!("{v} is not a usable dollar amount")))
    }
}

/// Who made a change, as written to the audit log: `master_key`, `import`, the name a
/// `LiteLLM-Changed-By` header or `config import --changed-by` gave, ... Never a key or a
/// secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Actor(String);

impl Actor {
    pub fn new(name: impl Into<String>) -> Self {
        Actor(name.into())
    }

    pub fn master_key() -> Self {
        Actor("master_key".into())
    }

    /// A state import nobody named (`LiteLLM-Changed-By`, `config import --changed-by`).
    pub fn import() -> Self {
        Actor("import".into())
    }

    pub fn key(id: &PublicId) -> Self {
        Actor(format!("key:{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------
// Organizations, budgets, users, teams

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrganizationSpec {
    pub organization_id: String,
    pub organization_alias: String,
    /// The organization's budget (a `budgets` row), LiteLLM's shape.
    #[serde(default)]
    pub budget_id: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub metadata: JsonObject,
}

impl OrganizationSpec {
    pub fn new(id: impl Into<String>, alias: impl Into<String>) -> Self {
        OrganizationSpec {
            organization_id: id.into(),
            organization_alias: alias.into(),
            budget_id: None,
            models: Vec::new(),
            metadata: JsonObject::new(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrganizationPatch {
    pub organization_alias: Option<String>,
    pub budget_id: Option<Option<String>>,
    pub models: Option<Vec<String>>,
    pub metadata: Option<JsonObject>,
}

impl OrganizationPatch {
    pub(crate) fn apply(&self, s: &mut OrganizationSpec) {
        set(&mut s.organization_alias, &self.organization_alias);
        set(&mut s.budget_id, &self.budget_id);
        set(&mut s.models, &self.models);
        set(&mut s.metadata, &self.metadata);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Organization {
    pub spec: OrganizationSpec,
    pub spend: Usd,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetSpec {
    pub budget_id: String,
    #[serde(default)]
    pub max_budget: Option<Usd>,
    #[serde(default)]
    pub soft_budget: Option<Usd>,
    /// `30s`, `10m`, `24h`, `30d`, `1w`, `1mo` (30 days).
    #[serde(default)]
    pub budget_duration: Option<String>,
    #[serde(default)]
    pub rpm_limit: Option<u64>,
    #[serde(default)]
    pub tpm_limit: Option<u64>,
    #[serde(default)]
    pub max_parallel_requests: Option<u64>,
}

impl BudgetSpec {
    pub fn new(id: impl Into<String>) -> Self {
        BudgetSpec {
            budget_id: id.into(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct BudgetPatch {
    pub max_budget: Option<Option<Usd>>,
    pub soft_budget: Option<Option<Usd>>,
    pub budget_duration: Option<Option<String>>,
    pub rpm_limit: Option<Option<u64>>,
    pub tpm_limit: Option<Option<u64>>,
    pub max_parallel_requests: Option<Option<u64>>,
}

impl BudgetPatch {
    pub(crate) fn apply(&self, s: &mut BudgetSpec) {
        set(&mut s.max_budget, &self.max_budget);
        set(&mut s.soft_budget, &self.soft_budget);
        set(&mut s.budget_duration, &self.budget_duration);
        set(&mut s.rpm_limit, &self.rpm_limit);
        set(&mut s.tpm_limit, &self.tpm_limit);
        set(&mut s.max_parallel_requests, &self.max_parallel_requests);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Budget {
    pub spec: BudgetSpec,
    /// When the budget period next restarts (from `budget_duration`).
    pub budget_reset_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// LiteLLM's user roles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    ProxyAdmin,
    ProxyAdminViewer,
    OrgAdmin,
    #[default]
    InternalUser,
    InternalUserViewer,
}

impl UserRole {
    pub const ALL: [UserRole; 5] = [
        UserRole::ProxyAdmin,
        UserRole::ProxyAdminViewer,
        UserRole::OrgAdmin,
        UserRole::InternalUser,
        UserRole::InternalUserViewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::ProxyAdmin => "proxy_admin",
            UserRole::ProxyAdminViewer => "proxy_admin_viewer",
            UserRole::OrgAdmin => "org_admin",
            UserRole::InternalUser => "internal_user",
            UserRole::InternalUserViewer => "internal_user_viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserSpec {
    pub user_id: String,
    #[serde(default)]
    pub user_email: Option<String>,
    #[serde(default)]
    pub user_role: UserRole,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub max_budget: Option<Usd>,
    #[serde(default)]
    pub soft_budget: Option<Usd>,
    #[serde(default)]
    pub budget_duration: Option<String>,
    #[serde(default)]
    pub rpm_limit: Option<u64>,
    #[serde(default)]
    pub tpm_limit: Option<u64>,
    #[serde(default)]
    pub metadata: JsonObject,
}

impl UserSpec {
    pub fn new(id: impl Into<String>) -> Self {
        UserSpec {
            user_id: id.into(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserPatch {
    pub user_email: Option<Option<String>>,
    pub user_role: Option<UserRole>,
    pub models: Option<Vec<String>>,
    pub max_budget: Option<Option<Usd>>,
    pub soft_budget: Option<Option<Usd>>,
    pub budget_duration: Option<Option<String>>,
    pub rpm_limit: Option<Option<u64>>,
    pub tpm_limit: Option<Option<u64>>,
    pub metadata: Option<JsonObject>,
}

impl UserPatch {
    pub(crate) fn apply(&self, s: &mut UserSpec) {
        set(&mut s.user_email, &self.user_email);
        set(&mut s.user_role, &self.user_role);
        set(&mut s.models, &self.models);
        set(&mut s.max_budget, &self.max_budget);
        set(&mut s.soft_budget, &self.soft_budget);
        set(&mut s.budget_duration, &self.budget_duration);
        set(&mut s.rpm_limit, &self.rpm_limit);
        set(&mut s.tpm_limit, &self.tpm_limit);
        set(&mut s.metadata, &self.metadata);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct User {
    pub spec: UserSpec,
    pub spend: Usd,
    pub budget_reset_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A member's role in a team.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TeamRole {
    Admin,
    #[default]
    User,
}

impl TeamRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Admin => "admin",
            TeamRole::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(TeamRole::Admin),
            "user" => Some(TeamRole::User),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TeamMember {
    pub user_id: String,
    pub role: TeamRole,
}

impl TeamMember {
    pub fn new(user_id: impl Into<String>, role: TeamRole) -> Self {
        TeamMember {
            user_id: user_id.into(),
            role,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TeamSpec {
    pub team_id: String,
    /// Unique when set.
    #[serde(default)]
    pub team_alias: Option<String>,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub max_budget: Option<Usd>,
    #[serde(default)]
    pub soft_budget: Option<Usd>,
    #[serde(default)]
    pub budget_duration: Option<String>,
    #[serde(default)]
    pub rpm_limit: Option<u64>,
    #[serde(default)]
    pub tpm_limit: Option<u64>,
    #[serde(default)]
    pub max_parallel_requests: Option<u64>,
    /// Team-level router settings; absent fields inherit from the global block.
    #[serde(default)]
    pub router_settings: Option<RouterSettings>,
    #[serde(default)]
    pub metadata: JsonObject,
    #[serde(default)]
    pub blocked: bool,
    /// Sorted by user id when read back.
    #[serde(default)]
    pub members: Vec<TeamMember>,
}

impl TeamSpec {
    pub fn new(id: impl Into<String>) -> Self {
        TeamSpec {
            team_id: id.into(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TeamPatch {
    pub team_alias: Option<Option<String>>,
    pub organization_id: Option<Option<String>>,
    pub models: Option<Vec<String>>,
    pub max_budget: Option<Option<Usd>>,
    pub soft_budget: Option<Option<Usd>>,
    pub budget_duration: Option<Option<String>>,
    pub rpm_limit: Option<Option<u64>>,
    pub tpm_limit: Option<Option<u64>>,
    pub max_parallel_requests: Option<Option<u64>>,
    pub router_settings: Option<Option<RouterSettings>>,
    pub metadata: Option<JsonObject>,
    pub blocked: Option<bool>,
    /// Replaces the whole member list.
    pub members: Option<Vec<TeamMember>>,
}

impl TeamPatch {
    pub(crate) fn apply(&self, s: &mut TeamSpec) {
        set(&mut s.team_alias, &self.team_alias);
        set(&mut s.organization_id, &self.organization_id);
        set(&mut s.models, &self.models);
        set(&mut s.max_budget, &self.max_budget);
        set(&mut s.soft_budget, &self.soft_budget);
        set(&mut s.budget_duration, &self.budget_duration);
        set(&mut s.rpm_limit, &self.rpm_limit);
        set(&mut s.tpm_limit, &self.tpm_limit);
        set(&mut s.max_parallel_requests, &self.max_parallel_requests);
        set(&mut s.router_settings, &self.router_settings);
        set(&mut s.metadata, &self.metadata);
        set(&mut s.blocked, &self.blocked);
        set(&mut s.members, &self.members);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Team {
    pub spec: TeamSpec,
    pub spend: Usd,
    pub budget_reset_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------
// Virtual keys

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeySpec {
    /// Stable identity: the lookup and log handle, kept across regeneration.
    pub public_id: PublicId,
    /// SHA-256 of the whole key string. The key itself is never stored.
    pub token_hash: TokenHash,
    /// Unique when set.
    #[serde(default)]
    pub key_alias: Option<String>,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub max_budget: Option<Usd>,
    #[serde(default)]
    pub soft_budget: Option<Usd>,
    #[serde(default)]
    pub budget_duration: Option<String>,
    #[serde(default)]
    pub rpm_limit: Option<u64>,
    #[serde(default)]
    pub tpm_limit: Option<u64>,
    #[serde(default)]
    pub max_parallel_requests: Option<u64>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub metadata: JsonObject,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Model name aliases for this key (`{"gpt-4": "gpt-4o"}`).
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Key-level router settings; absent fields inherit from the team, then the global block.
    #[serde(default)]
    pub router_settings: Option<RouterSettings>,
    #[serde(default)]
    pub blocked: bool,
}

impl KeySpec {
    /// A key with no limits, no team and no settings.
    pub fn new(public_id: PublicId, token_hash: TokenHash) -> Self {
        KeySpec {
            public_id,
            token_hash,
            key_alias: None,
            team_id: None,
            user_id: None,
            models: Vec::new(),
            max_budget: None,
            soft_budget: None,
            budget_duration: None,
            rpm_limit: None,
            tpm_limit: None,
            max_parallel_requests: None,
            expires_at: None,
            metadata: JsonObject::new(),
            tags: Vec::new(),
            aliases: BTreeMap::new(),
            router_settings: None,
            blocked: false,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyPatch {
    pub key_alias: Option<Option<String>>,
    pub team_id: Option<Option<String>>,
    pub user_id: Option<Option<String>>,
    pub models: Option<Vec<String>>,
    pub max_budget: Option<Option<Usd>>,
    pub soft_budget: Option<Option<Usd>>,
    pub budget_duration: Option<Option<String>>,
    pub rpm_limit: Option<Option<u64>>,
    pub tpm_limit: Option<Option<u64>>,
    pub max_parallel_requests: Option<Option<u64>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub metadata: Option<JsonObject>,
    pub tags: Option<Vec<String>>,
    pub aliases: Option<BTreeMap<String, String>>,
    pub router_settings: Option<Option<RouterSettings>>,
    pub blocked: Option<bool>,
}

impl KeyPatch {
    pub(crate) fn apply(&self, s: &mut KeySpec) {
        set(&mut s.key_alias, &self.key_alias);
        set(&mut s.team_id, &self.team_id);
        set(&mut s.user_id, &self.user_id);
        set(&mut s.models, &self.models);
        set(&mut s.max_budget, &self.max_budget);
        set(&mut s.soft_budget, &self.soft_budget);
        set(&mut s.budget_duration, &self.budget_duration);
        set(&mut s.rpm_limit, &self.rpm_limit);
        set(&mut s.tpm_limit, &self.tpm_limit);
        set(&mut s.max_parallel_requests, &self.max_parallel_requests);
        set(&mut s.expires_at, &self.expires_at);
        set(&mut s.metadata, &self.metadata);
        set(&mut s.tags, &self.tags);
        set(&mut s.aliases, &self.aliases);
        set(&mut s.router_settings, &self.router_settings);
        set(&mut s.blocked, &self.blocked);
    }
}

/// Whether a key may be used right now. Deleted (revoked) keys have no record at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Blocked,
    Expired,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyRecord {
    pub spec: KeySpec,
    pub spend: Usd,
    pub budget_reset_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl KeyRecord {
    /// Blocked wins over expired: an admin's explicit block is the more useful answer.
    pub fn status(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.spec.blocked {
            KeyStatus::Blocked
        } else if self.spec.expires_at.is_some_and(|t| t <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }
}

// ---------------------------------------------------------------------------------------
// Models, credentials, access groups, tags, settings

/// Fields of `litellm_params` that hold secrets. Runtime models must name a credential
/// instead (or an `os.environ/NAME` reference), so the `models` table never holds a secret.
pub const SECRET_PARAMS: &[&str] = &[
    "api_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "azure_ad_token",
    "client_secret",
    "vertex_credentials",
];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Stable identity: the deployment id (`model_info.id`).
    pub model_id: String,
    /// The model group.
    pub model_name: String,
    /// LiteLLM params without secrets (`model`, `api_base`, `rpm`, ...).
    #[serde(default)]
    pub litellm_params: JsonObject,
    /// The credential holding this deployment's secrets.
    #[serde(default)]
    pub credential_name: Option<String>,
    #[serde(default)]
    pub model_info: JsonObject,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelPatch {
    pub model_name: Option<String>,
    pub litellm_params: Option<JsonObject>,
    pub credential_name: Option<Option<String>>,
    pub model_info: Option<JsonObject>,
}

impl ModelPatch {
    pub(crate) fn apply(&self, s: &mut ModelSpec) {
        set(&mut s.model_name, &self.model_name);
        set(&mut s.litellm_params, &self.litellm_params);
        set(&mut s.credential_name, &self.credential_name);
        set(&mut s.model_info, &self.model_info);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuntimeModel {
    pub spec: ModelSpec,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A credential as read back: everything but the values, which stay sealed until
/// `CredentialStore::credential_values` opens them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Credential {
    pub credential_name: String,
    /// Non-secret description (`{"custom_llm_provider": "openai"}`).
    pub credential_info: JsonObject,
    /// Names of the sealed values (`api_key`, ...), sorted; enough to write redacted
    /// placeholders such as `<redacted:credentials/openai-prod/api_key>`.
    pub value_names: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Secret values of a credential by name. Never `Debug`-printed in clear.
pub type CredentialValues = BTreeMap<String, SecretString>;

#[derive(Clone, Debug)]
pub struct NewCredential {
    pub credential_name: String,
    pub credential_info: JsonObject,
    pub values: CredentialValues,
}

#[derive(Clone, Debug, Default)]
pub struct CredentialPatch {
    pub credential_info: Option<JsonObject>,
    /// Replaces all values.
    pub values: Option<CredentialValues>,
}

/// A credential in an import: `values: None` keeps the target's existing values (a redacted
/// export), which then must exist.
#[derive(Clone, Debug)]
pub struct CredentialUpsert {
    pub credential_name: String,
    pub credential_info: JsonObject,
    pub values: Option<CredentialValues>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessGroup {
    pub name: String,
    /// Model group names the access group grants.
    pub models: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub metadata: JsonObject,
}

// ---------------------------------------------------------------------------------------
// Spend and audit

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpendStatus {
    #[default]
    Success,
    Failure,
}

impl SpendStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SpendStatus::Success => "success",
            SpendStatus::Failure => "failure",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(SpendStatus::Success),
            "failure" => Some(SpendStatus::Failure),
            _ => None,
        }
    }
}

/// One request's spend. Recording it adds `cost` to the totals of every object it names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpendEntry {
    /// Idempotency key: a request id recorded twice counts once.
    pub request_id: String,
    pub key_public_id: Option<PublicId>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub organization_id: Option<String>,
    pub model_group: String,
    pub deployment_id: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Usd,
    pub status: SpendStatus,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
}

impl SpendEntry {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// What `record_spend` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpendOutcome {
    /// Entries written (and added to totals).
    pub recorded: usize,
    /// Entries whose request id was already recorded; ignored.
    pub duplicates: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Create,
    Update,
    Delete,
    Regenerate,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::Regenerate => "regenerate",
        }
    }
}

/// One admin change. `before`/`after` are the object's spec as JSON; credential values are
/// never part of a spec, so they cannot land here.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub object_kind: String,
    pub object_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

// ---------------------------------------------------------------------------------------
// Paging and filters

/// A page of a list: `limit` in 1..=1000, `offset` rows skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u64,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: 100,
            offset: 0,
        }
    }
}

impl Page {
    pub fn new(limit: u32, offset: u64) -> Self {
        Page { limit, offset }
    }

    pub(crate) fn validate(self) -> Result<(i64, i64), StoreError> {
        if self.limit == 0 || self.limit > MAX_PAGE_LIMIT {
            return Err(StoreError::invalid(
                "limit",
                format!("must be between 1 and {MAX_PAGE_LIMIT}, got {}", self.limit),
            ));
        }
        let offset =
            i64::try_from(self.offset).map_err(|_| StoreError::invalid("offset", "too large"))?;
        Ok((i64::from(self.limit), offset))
    }
}

/// One page of results and the number of rows matching the filter.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Key list filters; all given conditions must hold. Newest keys first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyFilter {
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    /// Case-insensitive substring of the alias.
    pub alias_contains: Option<String>,
    pub blocked: Option<bool>,
    /// `Some(false)`: only keys that have not expired; `Some(true)`: only expired ones.
    pub expired: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TeamFilter {
    pub organization_id: Option<String>,
    /// Teams this user is a member of.
    pub member_user_id: Option<String>,
    pub alias_contains: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserFilter {
    pub email_contains: Option<String>,
    pub role: Option<UserRole>,
}

/// Spend log filters; newest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpendLogFilter {
    pub key_public_id: Option<PublicId>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub model_group: Option<String>,
    /// Entries that started at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Entries that started before this time.
    pub until: Option<DateTime<Utc>>,
}

/// Audit log filters; newest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditFilter {
    pub object_kind: Option<ObjectKind>,
    pub object_id: Option<String>,
    pub actor: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Validation helpers

fn set<T: Clone>(field: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *field = v.clone();
    }
}

pub(crate) fn check_name(field: &str, value: &str) -> Result<(), StoreError> {
    if value.trim().is_empty() {
        return Err(StoreError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(StoreError::invalid(
            field,
            format!("must be at most {MAX_NAME_LEN} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

pub(crate) fn check_opt_name(field: &str, value: Option<&str>) -> Result<(), StoreError> {
    value.map_or(Ok(()), |v| check_name(field, v))
}

pub(crate) fn check_names(field: &str, values: &[String]) -> Result<(), StoreError> {
    values
        .iter()
        .enumerate()
        .try_for_each(|(i, v)| check_name(&format!("{field}[{i}]"), v))
}

pub(crate) fn check_money(field: &str, value: Option<Usd>) -> Result<(), StoreError> {
    match value {
        Some(v) if v < Usd::ZERO => Err(StoreError::invalid(
            field,
            format!("must not be negative, got {}", v.dollars()),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn check_limit(field: &str, value: Option<u64>) -> Result<(), StoreError> {
    match value {
        Some(v) if i64::try_from(v).is_err() => Err(StoreError::invalid(field, "too large")),
        _ => Ok(()),
    }
}

/// Parses LiteLLM's `budget_duration`: a positive integer and a unit among `s`, `m`, `h`,
/// `d`, `w`, `mo` (30 days).
pub fn parse_budget_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().ok().filter(|n| *n > 0)?;
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "mo" => 30 * 86_400,
        _ => return None,
    };
    n.checked_mul(seconds_per)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .map(Duration::seconds)
}

pub(crate) fn check_duration(field: &str, value: Option<&str>) -> Result<(), StoreError> {
    match value {
        Some(v) if parse_budget_duration(v).is_none() => Err(StoreError::invalid(
            field,
            format!("{v:?} is not a duration; expected e.g. 30s, 10m, 24h, 30d, 1w, 1mo"),
        )),
        _ => Ok(()),
    }
}

/// When a budget with `duration` that starts now next resets.
pub(crate) fn next_reset(duration: Option<&str>, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
    duration
        .and_then(parse_budget_duration)
        .and_then(|d| from.checked_add_signed(d))
}

/// Sorts the keys of every nested JSON object, so stored JSON has one byte form.
pub(crate) fn canonical_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical_value(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical_value).collect()),
        other => other.clone(),
    }
}

pub(crate) fn canonical_object(o: &JsonObject) -> JsonObject {
    o.iter()
        .map(|(k, v)| (k.clone(), canonical_value(v)))
        .collect()
}

impl OrganizationSpec {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_name("organization_id", &self.organization_id)?;
        check_name("organization_alias", &self.organization_alias)?;
        check_opt_name("budget_id", self.budget_id.as_deref())?;
        check_names("models", &self.models)
    }
}

impl BudgetSpec {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_name("budget_id", &self.budget_id)?;
        check_money("max_budget", self.max_budget)?;
        check_money("soft_budget", self.soft_budget)?;
        check_duration("budget_duration", self.budget_duration.as_deref())?;
        check_limit("rpm_limit", self.rpm_limit)?;
        check_limit("tpm_limit", self.tpm_limit)?;
        check_limit("max_parallel_requests", self.max_parallel_requests)
    }
}

impl UserSpec {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_name("user_id", &self.user_id)?;
        check_opt_name("user_email", self.user_email.as_deref())?;
        check_names("models", &self.models)?;
        check_money("max_budget", self.max_budget)?;
        check_money("soft_budget", self.soft_budget)?;
        check_duration("budget_duration", self.budget_duration.as_deref())?;
        check_limit("rpm_limit", self.rpm_limit)?;
        check_limit("tpm_limit", self.tpm_limit)
    }
}

impl TeamSpec {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_name("team_id", &self.team_id)?;
        check_opt_name("team_alias", self.team_alias.as_deref())?;
        check_opt_name("organization_id", self.organization_id.as_deref())?;
        check_names("models", &self.models)?;
        check_money("max_budget", self.max_budget)?;
        check_money("soft_budget", self.soft_budget)?;
        check_duration("budget_duration", self.budget_duration.as_deref())?;
        check_limit("rpm_limit", self.rpm_limit)?;
        check_limit("tpm_limit", self.tpm_limit)?;
        check_limit("max_parallel_requests", self.max_parallel_requests)?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, m) in self.members.iter().enumerate() {
            check_name(&format!("members[{i}].user_id"), &m.user_id)?;
            if !seen.insert(&m.user_id) {
                return Err(StoreError::invalid(
                    format!("members[{i}].user_id"),
                    format!("user {:?} is listed twice", m.user_id),
                ));
            }
        }
        Ok(())
    }

    /// Members in their stored order.
    pub(crate) fn sort_members(&mut self) {
        self.members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    }
}

impl KeySpec {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_opt_name("key_alias", self.key_alias.as_deref())?;
        check_opt_name("team_id", self.team_id.as_deref())?;
        check_opt_name("user_id", self.user_id.as_deref())?;
        check_names("models", &self.models)?;
        check_money("max_budget", self.max_budget)?;
        check_money("soft_budget", self.soft_budget)?;
        check_duration("budget_duration", self.budget_duration.as_deref())?;
        check_limit("rpm_limit", self.rpm_limit)?;
        check_limit("tpm_limit", self.tpm_limit)?;
        check_limit("max_parallel_requests", self.max_parallel_requests)?;
        check_names("tags", &self.tags)?;
        for (k, v) in &self.aliases {
            check_name("aliases", k)?;
            check_name(&format!("aliases.{k}"), v)?;
        }
        Ok(())
    }
}

impl ModelSpec {
    /// This spec with any password left out of `api_base`, for showing and exporting: such a
    /// password can only come from a row stored before `validate` refused them, and is never
    /// sent upstream.
    pub fn without_url_password(&self) -> ModelSpec {
        let mut spec = self.clone();
        if let Some(Value::String(base)) = spec.litellm_params.get_mut("api_base") {
            *base = crate::config::url::without_password(base);
        }
        spec
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_name("model_id", &self.model_id)?;
        check_name("model_name", &self.model_name)?;
        check_opt_name("credential_name", self.credential_name.as_deref())?;
        for name in SECRET_PARAMS {
            match self.litellm_params.get(*name) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s.starts_with("os.environ/") => {}
                Some(_) => {
                    return Err(StoreError::invalid(
                        format!("litellm_params.{name}"),
                        "secrets are not stored in model params; put them in a credential \
                         and set credential_name, or use os.environ/NAME",
                    ))
                }
            }
        }
        // Model params are shown by /model/info and exported in plain text.
        if let Some(Value::String(base)) = self.litellm_params.get("api_base") {
            if crate::config::url::has_password(base) {
                return Err(StoreError::invalid(
                    "litellm_params.api_base",
                    "the URL carries a password (user:password@), and model params are not \
                     secret; switchyard does not send URL credentials upstream anyway: remove \
                     it and put the key in api_key through a credential or os.environ/NAME",
                ));
            }
        }
        Ok(())
    }
}

impl AccessGroup {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_name("access_group", &self.name)?;
        check_names("models", &self.models)
    }
}

impl Tag {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_name("tag", &self.name)?;
        check_names("models", &self.models)
    }
}

pub(crate) fn validate_credential(
    name: &str,
    values: Option<&CredentialValues>,
) -> Result<(), StoreError> {
    check_name("credential_name", name)?;
    if let Some(values) = values {
        for k in values.keys() {
            check_name("credential_values", k)?;
        }
    }
    Ok(())
}

impl SpendEntry {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_name("request_id", &self.request_id)?;
        check_name("model_group", &self.model_group)?;
        check_money("cost", Some(self.cost))?;
        check_limit("prompt_tokens", Some(self.prompt_tokens))?;
        check_limit("completion_tokens", Some(self.completion_tokens))?;
        check_limit("total_tokens", Some(self.total_tokens()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_urls_with_a_password_are_refused_and_shown_without_it() {
        let spec = |base: &str| ModelSpec {
            model_id: "m1".into(),
            model_name: "m".into(),
            litellm_params: JsonObject::from([
                ("model".to_owned(), Value::from("openai/x")),
                ("api_base".to_owned(), Value::from(base)),
            ]),
            credential_name: None,
            model_info: JsonObject::new(),
        };
        let with = spec("http://u:hunter2@h/v1");
        let err = with.validate().unwrap_err().to_string();
        assert!(
            err.contains("litellm_params.api_base") && !err.contains("hunter2"),
            "{err}"
        );
        let shown = with.without_url_password();
        assert_eq!(shown.litellm_params["api_base"], "http://u@h/v1");
        assert!(shown.validate().is_ok());
        assert!(spec("http://u@h/v1").validate().is_ok());
        assert!(spec("os.environ/BASE").validate().is_ok());
    }

    #[test]
    fn usd_round_trips_through_dollars_exactly() {
        for d in [
            0.0,
            0.1,
            0.01,
            1.5,
            100.0,
            123.456_789_012,
            2.5e-6,
            9_000_000.25,
        ] {
            let u = Usd::from_dollars(d).unwrap();
            assert_eq!(Usd::from_dollars(u.dollars()), Some(u), "{d}");
        }
        assert_eq!(Usd::from_dollars(0.1).unwrap().nanos(), 100_000_000);
        assert_eq!(Usd::from_dollars(f64::NAN), None);
        assert_eq!(Usd::from_dollars(1e12), None);
        assert_eq!(Usd::from_nanos(1_500_000_000).to_string(), "$1.50");
        assert_eq!(Usd::from_nanos(2_500).to_string(), "$0.0000025");
        assert_eq!(Usd::from_nanos(-10_000_000_000).to_string(), "-$10.00");
        assert_eq!(
            serde_json::to_string(&Usd::from_nanos(250_000_000)).unwrap(),
            "0.25"
        );
    }

    #[test]
    fn budget_durations_parse_like_litellm() {
        assert_eq!(parse_budget_duration("30s"), Some(Duration::seconds(30)));
        assert_eq!(parse_budget_duration("10m"), Some(Duration::minutes(10)));
        assert_eq!(parse_budget_duration("24h"), Some(Duration::hours(24)));
        assert_eq!(parse_budget_duration("30d"), Some(Duration::days(30)));
        assert_eq!(parse_budget_duration("1w"), Some(Duration::days(7)));
        assert_eq!(parse_budget_duration("1mo"), Some(Duration::days(30)));
        for bad in [
            "",
            "d",
            "0d",
            "-1d",
            "1y",
            "1.5h",
            "10",
            "99999999999999999d",
        ] {
            assert_eq!(parse_budget_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn patches_distinguish_unchanged_from_cleared() {
        let mut spec = TeamSpec::new("t1");
        spec.team_alias = Some("a".into());
        spec.rpm_limit = Some(10);
        TeamPatch {
            team_alias: Some(None),
            ..Default::default()
        }
        .apply(&mut spec);
        assert_eq!(spec.team_alias, None);
        assert_eq!(spec.rpm_limit, Some(10));
    }

    #[test]
    fn canonical_json_sorts_nested_objects() {
        let v: Value = serde_json::from_str(r#"{"b":{"z":1,"a":[{"y":1,"x":2}]},"a":0}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&canonical_value(&v)).unwrap(),
            r#"{"a":0,"b":{"a":[{"x":2,"y":1}],"z":1}}"#
        );
    }

    #[test]
    fn secrets_in_model_params_are_refused() {
        let mut m = ModelSpec {
            model_id: "d1".into(),
            model_name: "gpt-4o".into(),
            ..Default::default()
        };
        m.litellm_params.insert(
            "api_key".into(),
            Value::String("os.environ/OPENAI_KEY".into()),
        );
        assert!(m.validate().is_ok());
        m.litellm_params
            .insert("api_key".into(), Value::String("sk-live".into()));
        let err = m.validate().unwrap_err().to_string();
        assert!(err.contains("litellm_params.api_key"), "{err}");
        assert!(!err.contains("sk-live"));
    }

    #[test]
    fn key_status_prefers_blocked_over_expired() {
        let h = TokenHash::of("sk-x");
        let mut spec = KeySpec::new(PublicId::for_legacy(&h), h);
        let t = now();
        spec.expires_at = Some(t);
        let mut rec = KeyRecord {
            spec,
            spend: Usd::ZERO,
            budget_reset_at: None,
            created_at: t,
            created_by: None,
            updated_at: t,
        };
        assert_eq!(rec.status(t - Duration::seconds(1)), KeyStatus::Active);
        assert_eq!(rec.status(t), KeyStatus::Expired);
        rec.spec.blocked = true;
        assert_eq!(rec.status(t), KeyStatus::Blocked);
    }
}
