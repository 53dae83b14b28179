//! The SQL store for runtime-managed state: small async traits by concern, one `Store`
//! supertrait, two backends (`SqliteStore`, the embedded default; `PgStore`, for production)
//! sharing one body of SQL. Caching, HTTP mapping and export documents live elsewhere: the
//! auth layer caches key records, `error.rs` maps `StoreError` to status codes, `state/`
//! turns `StateSnapshot`/`StateChanges` into documents and plans.
//!
//! Every mutating call takes an [`Actor`] and writes an audit entry in the same transaction.
//! Queries are runtime-checked (`sqlx::query`), so building needs no database.
//!
//! **No pool reaper.** Both backends build their pools without an idle timeout or a maximum
//! lifetime, so sqlx never starts its maintenance task. In sqlx 0.8.6 that task sizes its
//! sweep from an idle-connection count that a connection released while another is taken
//! can briefly underflow; reading it then makes the task loop about 2^64 times without
//! yielding: a runtime worker pinned at 100% CPU for good, and a process that never shuts
//! down (launchbadge/sqlx#3645; seen once in this repository's CI, in a SQLite test).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::RouterSettings;

mod crypto;
mod error;
pub mod keys;
mod model;
mod postgres;
mod sqlite;
mod state;

pub use crypto::{OpenError, SealError, SealPurpose, SecretCipher};
pub use error::{ObjectKind, StoreError};
pub use keys::{PublicId, TokenHash};
pub use model::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use state::{ApplyOutcome, Deletes, KindCounts, StateChanges, StateSnapshot, Upserts};

/// How a store is opened. The caller reads the environment; the store never does.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Seals and opens credential values; derived from `SWITCHYARD_SALT_KEY` with
    /// [`SecretCipher::for_credentials`]. Without it credential values cannot be written or read.
    pub cipher: Option<SecretCipher>,
    /// Pool size for PostgreSQL and for SQLite file readers (SQLite has one writer).
    pub max_connections: u32,
    /// How long a call waits for a pooled connection before `StoreError::Unavailable`.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cipher: None,
            // 10: enough for admin calls plus the spend writer; PostgreSQL defaults to 100
            // connections per server and several gateway instances share it.
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

impl StoreOptions {
    pub fn with_cipher(mut self, cipher: SecretCipher) -> Self {
        self.cipher = Some(cipher);
        self
    }
}

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Pool settings of both backends (and of tests that build a pool for a store): at most
/// `max_connections`, waiting up to `acquire_timeout` for one, and no reaper (see "No pool
/// reaper" above).
pub fn pool_options<DB: sqlx::Database>(
    max_connections: u32,
    acquire_timeout: Duration,
) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .idle_timeout(None)
        .max_lifetime(None)
}

/// Opens the store named by `database_url` (`sqlite://switchyard.db`, created if missing;
/// `sqlite::memory:`; `postgres://...`), runs the embedded migrations and refuses a schema
/// newer than this binary. Credential values need [`connect_with`] and a cipher.
pub async fn connect(database_url: &str) -> Result<Arc<dyn Store>, StoreError> {
    connect_with(database_url, StoreOptions::default()).await
}

/// [`connect`] with options.
pub async fn connect_with(
    database_url: &str,
    options: StoreOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    // Only the scheme is ever echoed: the rest of the URL may carry a password.
    let scheme = database_url.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => Ok(Arc::new(SqliteStore::connect(database_url, options).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(PgStore::connect(database_url, options).await?)),
        other => Err(StoreError::UnsupportedUrl {
            scheme: other.chars().take(32).collect(),
        }),
    }
}

#[async_trait]
pub trait OrganizationStore: Send + Sync {
    async fn create_organization(
        &self,
        actor: &Actor,
        spec: &OrganizationSpec,
    ) -> Result<Organization, StoreError>;
    async fn organization(&self, id: &str) -> Result<Option<Organization>, StoreError>;
    async fn update_organization(
        &self,
        actor: &Actor,
        id: &str,
        patch: &OrganizationPatch,
    ) -> Result<Organization, StoreError>;
    /// Refused with `InUse` while teams belong to it.
    async fn delete_organization(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<Organization, StoreError>;
    async fn list_organizations(&self, page: Page) -> Result<Paged<Organization>, StoreError>;
}

#[async_trait]
pub trait BudgetStore: Send + Sync {
    async fn create_budget(&self, actor: &Actor, spec: &BudgetSpec) -> Result<Budget, StoreError>;
    async fn budget(&self, id: &str) -> Result<Option<Budget>, StoreError>;
    async fn update_budget(
        &self,
        actor: &Actor,
        id: &str,
        patch: &BudgetPatch,
    ) -> Result<Budget, StoreError>;
    /// Refused with `InUse` while an organization uses it.
    async fn delete_budget(&self, actor: &Actor, id: &str) -> Result<Budget, StoreError>;
    async fn list_budgets(&self, page: Page) -> Result<Paged<Budget>, StoreError>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(&self, actor: &Actor, spec: &UserSpec) -> Result<User, StoreError>;
    /// Creates the user and makes it a member (default role) of every team in `teams`, in one
    /// transaction with its audit entries: an unknown team is an `UnknownReference` on
    /// `teams` and nothing is written.
    async fn create_user_in_teams(
        &self,
        actor: &Actor,
        spec: &UserSpec,
        teams: &[String],
    ) -> Result<User, StoreError>;
    async fn user(&self, id: &str) -> Result<Option<User>, StoreError>;
    async fn update_user(
        &self,
        actor: &Actor,
        id: &str,
        patch: &UserPatch,
    ) -> Result<User, StoreError>;
    /// Removes the user's team memberships; refused with `InUse` while keys belong to them.
    async fn delete_user(&self, actor: &Actor, id: &str) -> Result<User, StoreError>;
    async fn list_users(&self, filter: &UserFilter, page: Page) -> Result<Paged<User>, StoreError>;
}

#[async_trait]
pub trait TeamStore: Send + Sync {
    /// Creates the team with its members (who must exist as users).
    async fn create_team(&self, actor: &Actor, spec: &TeamSpec) -> Result<Team, StoreError>;
    async fn team(&self, id: &str) -> Result<Option<Team>, StoreError>;
    async fn team_by_alias(&self, alias: &str) -> Result<Option<Team>, StoreError>;
    async fn update_team(
        &self,
        actor: &Actor,
        id: &str,
        patch: &TeamPatch,
    ) -> Result<Team, StoreError>;
    /// Refused with `InUse` while keys belong to it.
    async fn delete_team(&self, actor: &Actor, id: &str) -> Result<Team, StoreError>;
    async fn list_teams(&self, filter: &TeamFilter, page: Page) -> Result<Paged<Team>, StoreError>;
    /// [`TeamStore::create_team`], creating the members that are not users yet (as LiteLLM
    /// does), all in one transaction.
    async fn create_team_and_users(
        &self,
        actor: &Actor,
        spec: &TeamSpec,
    ) -> Result<Team, StoreError>;
    /// Adds a member or changes their role.
    async fn add_team_member(
        &self,
        actor: &Actor,
        team_id: &str,
        member: &TeamMember,
    ) -> Result<Team, StoreError>;
    async fn remove_team_member(
        &self,
        actor: &Actor,
        team_id: &str,
        user_id: &str,
    ) -> Result<Team, StoreError>;
    /// Adds (or re-roles) every member in one transaction, creating the members that are not
    /// users yet; the team must exist.
    async fn add_team_members(
        &self,
        actor: &Actor,
        team_id: &str,
        members: &[TeamMember],
    ) -> Result<Team, StoreError>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a key minted with [`keys::generate`] (or imported with a known hash).
    async fn insert_key(&self, actor: &Actor, spec: &KeySpec) -> Result<KeyRecord, StoreError>;
    /// The auth path's lookup. Deleted keys are gone; blocked and expired keys are returned,
    /// and [`KeyRecord::status`] says so.
    async fn key_by_hash(&self, hash: &TokenHash) -> Result<Option<KeyRecord>, StoreError>;
    async fn key_by_public_id(&self, id: &PublicId) -> Result<Option<KeyRecord>, StoreError>;
    async fn key_by_alias(&self, alias: &str) -> Result<Option<KeyRecord>, StoreError>;
    async fn update_key(
        &self,
        actor: &Actor,
        id: &PublicId,
        patch: &KeyPatch,
    ) -> Result<KeyRecord, StoreError>;
    /// Replaces the key's hash (a new secret minted with [`keys::regenerate`]); the old key
    /// stops working at once. The public id, settings and spend stay.
    async fn regenerate_key(
        &self,
        actor: &Actor,
        id: &PublicId,
        new_hash: &TokenHash,
    ) -> Result<KeyRecord, StoreError>;
    /// Deletes (revokes) keys, all or none: `NotFound` if any is missing.
    async fn delete_keys(
        &self,
        actor: &Actor,
        ids: &[PublicId],
    ) -> Result<Vec<KeyRecord>, StoreError>;
    async fn list_keys(
        &self,
        filter: &KeyFilter,
        page: Page,
    ) -> Result<Paged<KeyRecord>, StoreError>;
}

#[async_trait]
pub trait ModelStore: Send + Sync {
    async fn create_model(
        &self,
        actor: &Actor,
        spec: &ModelSpec,
    ) -> Result<RuntimeModel, StoreError>;
    async fn model(&self, id: &str) -> Result<Option<RuntimeModel>, StoreError>;
    async fn update_model(
        &self,
        actor: &Actor,
        id: &str,
        patch: &ModelPatch,
    ) -> Result<RuntimeModel, StoreError>;
    async fn delete_model(&self, actor: &Actor, id: &str) -> Result<RuntimeModel, StoreError>;
    /// Every runtime model, by model id.
    async fn list_models(&self) -> Result<Vec<RuntimeModel>, StoreError>;
}

#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Seals the values with the store's cipher (`NoSaltKey` without one).
    async fn create_credential(
        &self,
        actor: &Actor,
        new: &NewCredential,
    ) -> Result<Credential, StoreError>;
    async fn credential(&self, name: &str) -> Result<Option<Credential>, StoreError>;
    /// Opens the sealed values: `Decrypt` with the wrong salt key, `NoSaltKey` without one.
    async fn credential_values(&self, name: &str) -> Result<Option<CredentialValues>, StoreError>;
    async fn update_credential(
        &self,
        actor: &Actor,
        name: &str,
        patch: &CredentialPatch,
    ) -> Result<Credential, StoreError>;
    /// Refused with `InUse` while a model uses it.
    async fn delete_credential(&self, actor: &Actor, name: &str) -> Result<Credential, StoreError>;
    async fn list_credentials(&self) -> Result<Vec<Credential>, StoreError>;
}

#[async_trait]
pub trait AccessGroupStore: Send + Sync {
    /// Creates or replaces.
    async fn put_access_group(
        &self,
        actor: &Actor,
        group: &AccessGroup,
    ) -> Result<AccessGroup, StoreError>;
    async fn access_group(&self, name: &str) -> Result<Option<AccessGroup>, StoreError>;
    async fn delete_access_group(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<AccessGroup, StoreError>;
    async fn list_access_groups(&self) -> Result<Vec<AccessGroup>, StoreError>;
}

#[async_trait]
pub trait TagStore: Send + Sync {
    /// Creates or replaces.
    async fn put_tag(&self, actor: &Actor, tag: &Tag) -> Result<Tag, StoreError>;
    async fn tag(&self, name: &str) -> Result<Option<Tag>, StoreError>;
    async fn delete_tag(&self, actor: &Actor, name: &str) -> Result<Tag, StoreError>;
    async fn list_tags(&self) -> Result<Vec<Tag>, StoreError>;
}

#[async_trait]
pub trait SettingsStore: Send + Sync {
    async fn general_settings(&self) -> Result<BTreeMap<String, Value>, StoreError>;
    async fn put_general_setting(
        &self,
        actor: &Actor,
        name: &str,
        value: &Value,
    ) -> Result<(), StoreError>;
    /// `false` if there was no such setting.
    async fn delete_general_setting(&self, actor: &Actor, name: &str) -> Result<bool, StoreError>;
    /// Global router settings saved at runtime; `None` if never saved.
    async fn router_settings(&self) -> Result<Option<RouterSettings>, StoreError>;
    async fn put_router_settings(
        &self,
        actor: &Actor,
        settings: &RouterSettings,
    ) -> Result<(), StoreError>;
}

#[async_trait]
pub trait SpendStore: Send + Sync {
    /// Inserts the logs and adds each new entry's cost to its key, team, user and
    /// organization totals, in one transaction. Request ids already recorded are skipped, so
    /// a retried batch never counts twice.
    async fn record_spend(&self, batch: &[SpendEntry]) -> Result<SpendOutcome, StoreError>;
    async fn spend_logs(
        &self,
        filter: &SpendLogFilter,
        page: Page,
    ) -> Result<Paged<SpendEntry>, StoreError>;
    /// Starts a new budget period for every key, team and user (and budget) whose
    /// `budget_reset_at` is at or before `now`: spend goes to zero and the reset time moves to
    /// the first period end after `now`. For a periodic job; returns how many rows it reset.
    async fn reset_due_budgets(&self, now: DateTime<Utc>) -> Result<usize, StoreError>;
    /// Deletes at most `limit` spend-log rows that started before `cutoff`; returns how many.
    /// Totals on keys, teams and users stay as they are. Callers repeat it until it deletes
    /// fewer than `limit`, so no single statement holds the writer for long.
    async fn delete_spend_logs_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// How many changes the store has committed: every admin change (each transaction that
    /// writes audit entries) and every budget reset that zeroed some spend adds one. Gateway
    /// instances sharing the database poll it to learn when their caches are stale.
    async fn change_version(&self) -> Result<i64, StoreError>;
    async fn audit_log(
        &self,
        filter: &AuditFilter,
        page: Page,
    ) -> Result<Paged<AuditEntry>, StoreError>;
}

#[async_trait]
pub trait StateStore: Send + Sync {
    /// Everything admins manage, read in one consistent snapshot, ordered by identity.
    async fn read_state(&self) -> Result<StateSnapshot, StoreError>;
    /// Applies every change in one transaction, all or nothing, with a bounded number of
    /// statements per kind of object (multi-row, chunked). Writes an audit entry per object.
    async fn apply_state(
        &self,
        actor: &Actor,
        changes: &StateChanges,
    ) -> Result<ApplyOutcome, StoreError>;
}

/// The whole store, as `AppState` holds it: `Arc<dyn Store>`. `Debug` never shows secrets.
#[async_trait]
pub trait Store:
    std::fmt::Debug
    + OrganizationStore
    + BudgetStore
    + UserStore
    + TeamStore
    + KeyStore
    + ModelStore
    + CredentialStore
    + AccessGroupStore
    + TagStore
    + SettingsStore
    + SpendStore
    + AuditStore
    + StateStore
{
    fn backend(&self) -> Backend;
    /// For `/health/readiness`: one round trip.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes the pools; in-flight calls finish first.
    async fn close(&self);
}
