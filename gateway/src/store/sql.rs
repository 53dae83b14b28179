//! The SQL both backends share, compiled once for each: `sqlite.rs` and `postgres.rs` each
//! include this file as their `sql` module, after defining `Db` (the sqlx database), `This`
//! (the store type) and `dialect` (the handful of differences: collation, row locks, deferred
//! foreign keys, how a constraint violation names its column). One body of SQL means one set
//! of bugs, and the conformance suite runs it on both databases.
//!
//! Shape of every write: validate → begin → read the previous row (locked on PostgreSQL) →
//! check references and unique aliases (for precise errors; the schema's constraints stay the
//! backstop) → write multi-row statements → audit entries → commit.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sqlx::query_builder::Separated;
use sqlx::{QueryBuilder, Row};

use super::{dialect, Db, This};
use crate::config::RouterSettings;
use crate::store::keys::{PublicId, TokenHash};
use crate::store::model::{
    canonical_object, canonical_value, check_name, next_reset, now, validate_credential,
};
use crate::store::*;

type DbRow = <Db as sqlx::Database>::Row;
type Conn = <Db as sqlx::Database>::Connection;
type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Rows per multi-row statement, at most; fewer when the row is wide (see `rows_per_chunk`).
const MAX_ROWS_PER_STATEMENT: usize = 1000;

// ---------------------------------------------------------------------------------------
// Schema

/// Refuses a database migrated by a newer binary, then applies the embedded migrations.
pub(super) async fn migrate(
    pool: &sqlx::Pool<Db>,
    migrator: &sqlx::migrate::Migrator,
) -> Result<()> {
    let binary = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let has_table: bool = sqlx::query_scalar(dialect::MIGRATIONS_TABLE_EXISTS)
        .fetch_one(pool)
        .await
        .map_err(db_err)?;
    if has_table {
        let database: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(pool)
            .await
            .map_err(db_err)?;
        if let Some(database) = database.filter(|v| *v > binary) {
            return Err(StoreError::SchemaTooNew { database, binary });
        }
    }
    migrator.run(pool).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Errors

/// Maps a sqlx error to the store's: unreachable database → `Unavailable`; a unique
/// violation the schema can name → `Conflict`; anything else → `Database`.
pub(super) fn db_err(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match e {
        E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
            StoreError::Unavailable(e)
        }
        E::Database(ref d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            let target = dialect::unique_columns(d.as_ref())
                .and_then(|(table, column)| unique_target(&table, &column));
            match target {
                Some((kind, field)) => StoreError::Conflict {
                    kind,
                    field,
                    value: dialect::violation_value(d.as_ref()).unwrap_or_default(),
                },
                None => StoreError::Database(e),
            }
        }
        other => StoreError::Database(other),
    }
}

/// Unique columns by table. An empty column from the dialect means "the primary key".
const UNIQUE_COLUMNS: &[(&str, &str, bool, ObjectKind)] = &[
    (
        "organizations",
        "organization_id",
        true,
        ObjectKind::Organization,
    ),
    ("budgets", "budget_id", true, ObjectKind::Budget),
    ("users", "user_id", true, ObjectKind::User),
    ("teams", "team_id", true, ObjectKind::Team),
    ("teams", "team_alias", false, ObjectKind::Team),
    ("team_members", "team_id", true, ObjectKind::TeamMember),
    ("virtual_keys", "public_id", true, ObjectKind::Key),
    ("virtual_keys", "token_hash", false, ObjectKind::Key),
    ("virtual_keys", "key_alias", false, ObjectKind::Key),
    ("models", "model_id", true, ObjectKind::Model),
    (
        "credentials",
        "credential_name",
        true,
        ObjectKind::Credential,
    ),
    ("access_groups", "name", true, ObjectKind::AccessGroup),
    ("tags", "name", true, ObjectKind::Tag),
    ("general_settings", "name", true, ObjectKind::GeneralSetting),
    ("spend_logs", "request_id", true, ObjectKind::SpendLog),
];

fn unique_target(table: &str, column: &str) -> Option<(ObjectKind, &'static str)> {
    UNIQUE_COLUMNS
        .iter()
        .find(|(t, c, pk, _)| *t == table && (*c == column || (column.is_empty() && *pk)))
        .map(|(_, c, _, kind)| (*kind, *c))
}

/// A foreign key, as the schema declares it. Drives existence checks before writes,
/// "still in use" checks before deletes, and the whole-state check at the end of an import.
struct Reference {
    child: &'static str,
    column: &'static str,
    child_kind: ObjectKind,
    parent: &'static str,
    parent_column: &'static str,
    parent_kind: ObjectKind,
    /// Deleting the parent deletes the child rows (memberships); never "in use".
    cascade: bool,
}

const REFERENCES: &[Reference] = &[
    Reference {
        child: "organizations",
        column: "budget_id",
        child_kind: ObjectKind::Organization,
        parent: "budgets",
        parent_column: "budget_id",
        parent_kind: ObjectKind::Budget,
        cascade: false,
    },
    Reference {
        child: "teams",
        column: "organization_id",
        child_kind: ObjectKind::Team,
        parent: "organizations",
        parent_column: "organization_id",
        parent_kind: ObjectKind::Organization,
        cascade: false,
    },
    Reference {
        child: "team_members",
        column: "user_id",
        child_kind: ObjectKind::TeamMember,
        parent: "users",
        parent_column: "user_id",
        parent_kind: ObjectKind::User,
        cascade: true,
    },
    Reference {
        child: "team_members",
        column: "team_id",
        child_kind: ObjectKind::TeamMember,
        parent: "teams",
        parent_column: "team_id",
        parent_kind: ObjectKind::Team,
        cascade: true,
    },
    Reference {
        child: "virtual_keys",
        column: "team_id",
        child_kind: ObjectKind::Key,
        parent: "teams",
        parent_column: "team_id",
        parent_kind: ObjectKind::Team,
        cascade: false,
    },
    Reference {
        child: "virtual_keys",
        column: "user_id",
        child_kind: ObjectKind::Key,
        parent: "users",
        parent_column: "user_id",
        parent_kind: ObjectKind::User,
        cascade: false,
    },
    Reference {
        child: "models",
        column: "credential_name",
        child_kind: ObjectKind::Model,
        parent: "credentials",
        parent_column: "credential_name",
        parent_kind: ObjectKind::Credential,
        cascade: false,
    },
];

fn reference(child: &str, column: &str) -> Option<&'static Reference> {
    REFERENCES
        .iter()
        .find(|r| r.child == child && r.column == column)
}

// ---------------------------------------------------------------------------------------
// Binding and decoding

/// One bound value of a row; lets a whole row be built before any SQL text exists.
enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(bool),
    Time(Option<DateTime<Utc>>),
    Bytes(Vec<u8>),
}

fn text(s: &str) -> Arg {
    Arg::Text(Some(s.to_owned()))
}

fn opt_text(s: Option<&str>) -> Arg {
    Arg::Text(s.map(str::to_owned))
}

fn money(v: Option<Usd>) -> Arg {
    Arg::Int(v.map(Usd::nanos))
}

fn count(field: &str, v: Option<u64>) -> Result<Arg> {
    v.map(|n| db_count(field, n)).transpose().map(Arg::Int)
}

/// A count as the database's signed 64-bit integer.
pub(super) fn db_count(field: &str, n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::invalid(field, "too large"))
}

fn json_text<T: Serialize + ?Sized>(field: &str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::invalid(field, e.to_string()))
}

fn json_arg<T: Serialize + ?Sized>(field: &str, v: &T) -> Result<Arg> {
    json_text(field, v).map(|s| Arg::Text(Some(s)))
}

fn opt_json_arg<T: Serialize>(field: &str, v: Option<&T>) -> Result<Arg> {
    v.map(|v| json_text(field, v)).transpose().map(Arg::Text)
}

fn push_arg(b: &mut Separated<'_, 'static, Db, &'static str>, arg: Arg) {
    match arg {
        Arg::Text(v) => b.push_bind(v),
        Arg::Int(v) => b.push_bind(v),
        Arg::Bool(v) => b.push_bind(v),
        Arg::Time(v) => b.push_bind(v),
        Arg::Bytes(v) => b.push_bind(v),
    };
}

fn col<T>(row: &DbRow, name: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, Db> + sqlx::Type<Db>,
{
    row.try_get(name).map_err(db_err)
}

fn col_money(row: &DbRow, name: &str) -> Result<Option<Usd>> {
    Ok(col::<Option<i64>>(row, name)?.map(Usd::from_nanos))
}

fn col_count(row: &DbRow, name: &str) -> Result<Option<u64>> {
    col::<Option<i64>>(row, name)?
        .map(|n| u64::try_from(n).map_err(|_| StoreError::corrupt(name, "negative count")))
        .transpose()
}

fn col_json<T: DeserializeOwned>(row: &DbRow, name: &str) -> Result<T> {
    let s: String = col(row, name)?;
    serde_json::from_str(&s).map_err(|e| StoreError::corrupt(format!("column {name}"), e))
}

fn col_opt_json<T: DeserializeOwned>(row: &DbRow, name: &str) -> Result<Option<T>> {
    col::<Option<String>>(row, name)?
        .map(|s| {
            serde_json::from_str(&s).map_err(|e| StoreError::corrupt(format!("column {name}"), e))
        })
        .transpose()
}

fn to_value<T: Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| StoreError::invalid("audit", e.to_string()))
}

/// How many rows fit one statement without passing the bind-parameter limit.
fn rows_per_chunk(columns: usize) -> usize {
    (dialect::MAX_BINDS / columns.max(1)).clamp(1, MAX_ROWS_PER_STATEMENT)
}

/// Escapes `%`, `_` and `\` for `LIKE ... ESCAPE '\'`, lowercased and wrapped in `%`.
fn like_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

// ---------------------------------------------------------------------------------------
// Tables and entities

struct Table {
    name: &'static str,
    pk: &'static str,
    cols: &'static [&'static str],
    /// Written when the row is created, kept by every later upsert (spend, creation time).
    insert_only: &'static [&'static str],
}

impl Table {
    fn select(&self) -> String {
        format!("SELECT {} FROM {}", self.cols.join(", "), self.name)
    }

    fn update_cols(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.cols
            .iter()
            .copied()
            .filter(|c| *c != self.pk && !self.insert_only.contains(c))
    }
}

/// One kind of stored object with a stable identity: everything the generic create, update,
/// delete, upsert-many and read-all functions need to know about it.
trait Entity: Clone + Send + Sync + Sized + 'static {
    type Spec: Clone + Send + Sync + Serialize;
    const KIND: ObjectKind;
    const TABLE: Table;

    fn id(spec: &Self::Spec) -> &str;
    fn spec(&self) -> &Self::Spec;
    fn validate(spec: &Self::Spec) -> Result<()>;
    /// Puts the spec in its stored form (sorted JSON keys, sorted members).
    fn canonicalize(_spec: &mut Self::Spec) {}
    /// The record a write of `spec` produces, given the row it replaces.
    fn build(spec: Self::Spec, prev: Option<&Self>, now: DateTime<Utc>, actor: &Actor) -> Self;
    /// Column values in `TABLE.cols` order.
    fn args(&self) -> Result<Vec<Arg>>;
    fn decode(row: &DbRow) -> Result<Self>;
    /// Unique columns other than the primary key, with this spec's values.
    fn uniques(_spec: &Self::Spec) -> Vec<(&'static str, Option<&str>)> {
        Vec::new()
    }
    /// `(child table, column, value)` for every reference this spec makes.
    fn refs(_spec: &Self::Spec) -> Vec<(&'static str, &'static str, &str)> {
        Vec::new()
    }
    /// Loads rows kept in other tables (team members).
    fn load_children<'a>(_conn: &'a mut Conn, _recs: &'a mut [Self]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    /// Replaces rows kept in other tables.
    fn write_children<'a>(_conn: &'a mut Conn, _recs: &'a [Self]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Keeps a value the store manages by itself across a rewrite, or starts it fresh.
fn reset_at(
    prev_duration: Option<Option<&str>>,
    prev_reset: Option<DateTime<Utc>>,
    duration: Option<&str>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match prev_duration {
        Some(d) if d == duration => prev_reset,
        _ => next_reset(duration, now),
    }
}

impl Entity for Organization {
    type Spec = OrganizationSpec;
    const KIND: ObjectKind = ObjectKind::Organization;
    const TABLE: Table = Table {
        name: "organizations",
        pk: "organization_id",
        cols: &[
            "organization_id",
            "organization_alias",
            "budget_id",
            "models",
            "metadata",
            "spend",
            "created_at",
            "updated_at",
        ],
        insert_only: &["spend", "created_at"],
    };

    fn id(spec: &Self::Spec) -> &str {
        &spec.organization_id
    }
    fn spec(&self) -> &Self::Spec {
        &self.spec
    }
    fn validate(spec: &Self::Spec) -> Result<()> {
        spec.validate()
    }
    fn canonicalize(spec: &mut Self::Spec) {
        spec.metadata = canonical_object(&spec.metadata);
    }
    fn build(spec: Self::Spec, prev: Option<&Self>, now: DateTime<Utc>, _: &Actor) -> Self {
        Organization {
            spec,
            spend: prev.map_or(Usd::ZERO, |p| p.spend),
            created_at: prev.map_or(now, |p| p.created_at),
            updated_at: now,
        }
    }
    fn args(&self) -> Result<Vec<Arg>> {
        let s = &self.spec;
        Ok(vec![
            text(&s.organization_id),
            text(&s.organization_alias),
            opt_text(s.budget_id.as_deref()),
            json_arg("models", &s.models)?,
            json_arg("metadata", &s.metadata)?,
            money(Some(self.spend)),
            Arg::Time(Some(self.created_at)),
            Arg::Time(Some(self.updated_at)),
        ])
    }
    fn decode(row: &DbRow) -> Result<Self> {
        Ok(Organization {
            spec: OrganizationSpec {
                organization_id: col(row, "organization_id")?,
                organization_alias: col(row, "organization_alias")?,
                budget_id: col(row, "budget_id")?,
                models: col_json(row, "models")?,
                metadata: col_json(row, "metadata")?,
            },
            spend: Usd::from_nanos(col(row, "spend")?),
            created_at: col(row, "created_at")?,
            updated_at: col(row, "updated_at")?,
        })
    }
    fn refs(spec: &Self::Spec) -> Vec<(&'static str, &'static str, &str)> {
        spec.budget_id
            .as_deref()
            .map(|b| ("organizations", "budget_id", b))
            .into_iter()
            .collect()
    }
}

impl Entity for Budget {
    type Spec = BudgetSpec;
    const KIND: ObjectKind = ObjectKind::Budget;
    const TABLE: Table = Table {
        name: "budgets",
        pk: "budget_id",
        cols: &[
            "budget_id",
            "max_budget",
            "soft_budget",
            "budget_duration",
            "budget_reset_at",
            "rpm_limit",
            "tpm_limit",
            "max_parallel_requests",
            "created_at",
            "updated_at",
        ],
        insert_only: &["created_at"],
    };

    fn id(spec: &Self::Spec) -> &str {
        &spec.budget_id
    }
    fn spec(&self) -> &Self::Spec {
        &self.spec
    }
    fn validate(spec: &Self::Spec) -> Result<()> {
        spec.validate()
    }
    fn build(spec: Self::Spec, prev: Option<&Self>, now: DateTime<Utc>, _: &Actor) -> Self {
        let budget_reset_at = reset_at(
            prev.map(|p| p.spec.budget_duration.as_deref()),
            prev.and_then(|p| p.budget_reset_at),
            spec.budget_duration.as_deref(),
            now,
        );
        Budget {
            spec,
            budget_reset_at,
            created_at: prev.map_or(now, |p| p.created_at),
            updated_at: now,
        }
    }
    fn args(&self) -> Result<Vec<Arg>> {
        let s = &self.spec;
        Ok(vec![
            text(&s.budget_id),
            money(s.max_budget),
            money(s.soft_budget),
            opt_text(s.budget_duration.as_deref()),
            Arg::Time(self.budget_reset_at),
            count("rpm_limit", s.rpm_limit)?,
            count("tpm_limit", s.tpm_limit)?,
            count("max_parallel_requests", s.max_parallel_requests)?,
            Arg::Time(Some(self.created_at)),
            Arg::Time(Some(self.updated_at)),
        ])
    }
    fn decode(row: &DbRow) -> Result<Self> {
        Ok(Budget {
            spec: BudgetSpec {
                budget_id: col(row, "budget_id")?,
                max_budget: col_money(row, "max_budget")?,
                soft_budget: col_money(row, "soft_budget")?,
                budget_duration: col(row, "budget_duration")?,
                rpm_limit: col_count(row, "rpm_limit")?,
                tpm_limit: col_count(row, "tpm_limit")?,
                max_parallel_requests: col_count(row, "max_parallel_requests")?,
            },
            budget_reset_at: col(row, "budget_reset_at")?,
            created_at: col(row, "created_at")?,
            updated_at: col(row, "updated_at")?,
        })
    }
}

impl Entity for User {
    type Spec = UserSpec;
    const KIND: ObjectKind = ObjectKind::User;
    const TABLE: Table = Table {
        name: "users",
        pk: "user_id",
        cols: &[
            "user_id",
            "user_email",
            "user_role",
            "models",
            "max_budget",
            "soft_budget",
            "budget_duration",
            "budget_reset_at",
            "rpm_limit",
            "tpm_limit",
            "metadata",
            "spend",
            "created_at",
            "updated_at",
        ],
        insert_only: &["spend", "created_at"],
    };

    fn id(spec: &Self::Spec) -> &str {
        &spec.user_id
    }
    fn spec(&self) -> &Self::Spec {
        &self.spec
    }
    fn validate(spec: &Self::Spec) -> Result<()> {
        spec.validate()
    }
    fn canonicalize(spec: &mut Self::Spec) {
        spec.metadata = canonical_object(&spec.metadata);
    }
    fn build(spec: Self::Spec, prev: Option<&Self>, now: DateTime<Utc>, _: &Actor) -> Self {
        let budget_reset_at = reset_at(
            prev.map(|p| p.spec.budget_duration.as_deref()),
            prev.and_then(|p| p.budget_reset_at),
            spec.budget_duration.as_deref(),
            now,
        );
        User {
            spec,
            spend: prev.map_or(Usd::ZERO, |p| p.spend),
            budget_reset_at,
            created_at: prev.map_or(now, |p| p.created_at),
            updated_at: now,
        }
    }
    fn args(&self) -> Result<Vec<Arg>> {
        let s = &self.spec;
        Ok(vec![
            text(&s.user_id),
            opt_text(s.user_email.as_deref()),
            text(s.user_role.as_str()),
            json_arg("models", &s.models)?,
            money(s.max_budget),
            money(s.soft_budget),
            opt_text(s.budget_duration.as_deref()),
            Arg::Time(self.budget_reset_at),
            count("rpm_limit", s.rpm_limit)?,
            count("tpm_limit", s.tpm_limit)?,
            json_arg("metadata", &s.metadata)?,
            money(Some(self.spend)),
            Arg::Time(Some(self.created_at)),
            Arg::Time(Some(self.updated_at)),
        ])
    }
    fn decode(row: &DbRow) -> Result<Self> {
        let role: String = col(row, "user_role")?;
        Ok(User {
            spec: UserSpec {
                user_id: col(row, "user_id")?,
                user_email: col(row, "user_email")?,
                user_role: UserRole::parse(&role)
                    .ok_or_else(|| StoreError::corrupt("column user_role", role))?,
                models: col_json(row, "models")?,
                max_budget: col_money(row, "max_budget")?,
                soft_budget: col_money(row, "soft_budget")?,
                budget_duration: col(row, "budget_duration")?,
                rpm_limit: col_count(row, "rpm_limit")?,
                tpm_limit: col_count(row, "tpm_limit")?,
                metadata: col_json(row, "metadata")?,
            },
            spend: Usd::from_nanos(col(row, "spend")?),
            budget_reset_at: col(row, "budget_reset_at")?,
            created_at: col(row, "created_at")?,
            updated_at: col(row, "updated_at")?,
        })
    }
}

impl Entity for Team {
    type Spec = TeamSpec;
    const KIND: ObjectKind = ObjectKind::Team;
    const TABLE: Table = Table {
        name: "teams",
        pk: "team_id",
        cols: &[
            "team_id",
            "team_alias",
            "organization_id",
            "models",
            "max_budget",
            "soft_budget",
            "budget_duration",
            "budget_reset_at",
            "rpm_limit",
            "tpm_limit",
            "max_parallel_requests",
            "router_settings",
            "metadata",
            "blocked",
            "spend",
            "created_at",
            "updated_at",
        ],
        insert_only: &["spend", "created_at"],
    };

    fn id(spec: &Self::Spec) -> &str {
        &spec.team_id
    }
    fn spec(&self) -> &Self::Spec {
        &self.spec
    }
    fn validate(spec: &Self::Spec) -> Result<()> {
        spec.validate()
    }
    fn canonicalize(spec: &mut Self::Spec) {
        spec.metadata = canonical_object(&spec.metadata);
        spec.sort_members();
    }
    fn build(spec: Self::Spec, prev: Option<&Self>, now: DateTime<Utc>, _: &Actor) -> Self {
        let budget_reset_at = reset_at(
            prev.map(|p| p.spec.budget_duration.as_deref()),
            prev.and_then(|p| p.budget_reset_at),
            spec.budget_duration.as_deref(),
            now,
        );
        Team {
            spec,
            spend: prev.map_or(Usd::ZERO, |p| p.spend),
            budget_reset_at,
            created_at: prev.map_or(now, |p| p.created_at),
            updated_at: now,
        }
    }
    fn args(&self) -> Result<Vec<Arg>> {
        let s = &self.spec;
        Ok(vec![
            text(&s.team_id),
            opt_text(s.team_alias.as_deref()),
            opt_text(s.organization_id.as_deref()),
            json_arg("models", &s.models)?,
            money(s.max_budget),
            money(s.soft_budget),
            opt_text(s.budget_duration.as_deref()),
            Arg::Time(self.budget_reset_at),
            count("rpm_limit", s.rpm_limit)?,
            count("tpm_limit", s.tpm_limit)?,
            count("max_parallel_requests", s.max_parallel_requests)?,
            opt_json_arg("router_settings", s.router_settings.as_ref())?,
            json_arg("metadata", &s.metadata)?,
            Arg::Bool(s.blocked),
            money(Some(self.spend)),
            Arg::Time(Some(self.created_at)),
            Arg::Time(Some(self.updated_at)),
        ])
    }
    fn decode(row: &DbRow) -> Result<Self> {
        Ok(Team {
            spec: TeamSpec {
                team_id: col(row, "team_id")?,
                team_alias: col(row, "team_alias")?,
                organization_id: col(row, "organization_id")?,
                models: col_json(row, "models")?,
                max_budget: col_money(row, "max_budget")?,
                soft_budget: col_money(row, "soft_budget")?,
                budget_duration: col(row, "budget_duration")?,
                rpm_limit: col_count(row, "rpm_limit")?,
                tpm_limit: col_count(row, "tpm_limit")?,
                max_parallel_requests: col_count(row, "max_parallel_requests")?,
                router_settings: col_opt_json(row, "router_settings")?,
                metadata: col_json(row, "metadata")?,
                blocked: col(row, "blocked")?,
                members: Vec::new(),
            },
            spend: Usd::from_nanos(col(row, "spend")?),
            budget_reset_at: col(row, "budget_reset_at")?,
            created_at: col(row, "created_at")?,
            updated_at: col(row, "updated_at")?,
        })
    }
    fn uniques(spec: &Self::Spec) -> Vec<(&'static str, Option<&str>)> {
        vec![("team_alias", spec.team_alias.as_deref())]
    }
    fn refs(spec: &Self::Spec) -> Vec<(&'static str, &'static str, &str)> {
        let org = spec
            .organization_id
            .as_deref()
            .map(|o| ("teams", "organization_id", o));
        let members = spec
            .members
            .iter()
            .map(|m| ("team_members", "user_id", m.user_id.as_str()));
        org.into_iter().chain(members).collect()
    }
    fn load_children<'a>(conn: &'a mut Conn, recs: &'a mut [Self]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let ids: Vec<String> = recs.iter().map(|t| t.spec.team_id.clone()).collect();
            let mut members: HashMap<String, Vec<TeamMember>> = HashMap::new();
            for chunk in ids.chunks(MAX_ROWS_PER_STATEMENT) {
                let mut qb = QueryBuilder::<Db>::new(
                    "SELECT team_id, user_id, role FROM team_members WHERE team_id IN ",
                );
                qb.push_tuples(chunk.iter().cloned(), |mut b, id| {
                    b.push_bind(id);
                });
                qb.push(format_args!(" ORDER BY user_id{}", dialect::COLLATE));
                let rows = qb
                    .build()
                    .persistent(false)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db_err)?;
                for row in rows {
                    let role: String = col(&row, "role")?;
                    let role = TeamRole::parse(&role)
                        .ok_or_else(|| StoreError::corrupt("column team_members.role", role))?;
                    members
                        .entry(col(&row, "team_id")?)
                        .or_default()
                        .push(TeamMember::new(col::<String>(&row, "user_id")?, role));
                }
            }
            for t in recs.iter_mut() {
                t.spec.members = members.remove(&t.spec.team_id).unwrap_or_default();
            }
            Ok(())
        })
    }
    fn write_children<'a>(conn: &'a mut Conn, recs: &'a [Self]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let ids: Vec<String> = recs.iter().map(|t| t.spec.team_id.clone()).collect();
            delete_where_in(conn, "team_members", "team_id", &ids).await?;
            let rows: Vec<Vec<Arg>> = recs
                .iter()
                .flat_map(|t| {
                    t.spec.members.iter().map(|m| {
                        vec![
                            text(&t.spec.team_id),
                            text(&m.user_id),
                            text(m.role.as_str()),
                        ]
                    })
                })
                .collect();
            insert_rows(
                conn,
                "team_members",
                &["team_id", "user_id", "role"],
                None,
                rows,
            )
            .await
        })
    }
}

impl Entity for KeyRecord {
    type Spec = KeySpec;
    const KIND: ObjectKind = ObjectKind::Key;
    const TABLE: Table = Table {
        name: "virtual_keys",
        pk: "public_id",
        cols: &[
            "public_id",
            "token_hash",
            "key_alias",
            "team_id",
            "user_id",
            "models",
            "max_budget",
            "soft_budget",
            "budget_duration",
            "budget_reset_at",
            "rpm_limit",
            "tpm_limit",
            "max_parallel_requests",
            "expires_at",
            "metadata",
            "tags",
            "aliases",
            "router_settings",
            "blocked",
            "spend",
            "created_at",
            "created_by",
            "updated_at",
        ],
        insert_only: &["spend", "created_at", "created_by"],
    };

    fn id(spec: &Self::Spec) -> &str {
        spec.public_id.as_str()
    }
    fn spec(&self) -> &Self::Spec {
        &self.spec
    }
    fn validate(spec: &Self::Spec) -> Result<()> {
        spec.validate()
    }
    fn canonicalize(spec: &mut Self::Spec) {
        spec.metadata = canonical_object(&spec.metadata);
        spec.expires_at = spec.expires_at.map(crate::store::model::truncate_time);
    }
    fn build(spec: Self::Spec, prev: Option<&Self>, now: DateTime<Utc>, actor: &Actor) -> Self {
        let budget_reset_at = reset_at(
            prev.map(|p| p.spec.budget_duration.as_deref()),
            prev.and_then(|p| p.budget_reset_at),
            spec.budget_duration.as_deref(),
            now,
        );
        KeyRecord {
            spec,
            spend: prev.map_or(Usd::ZERO, |p| p.spend),
            budget_reset_at,
            created_at: prev.map_or(now, |p| p.created_at),
            created_by: prev.map_or_else(|| Some(actor.to_string()), |p| p.created_by.clone()),
            updated_at: now,
        }
    }
    fn args(&self) -> Result<Vec<Arg>> {
        let s = &self.spec;
        Ok(vec![
            text(s.public_id.as_str()),
            text(s.token_hash.as_str()),
            opt_text(s.key_alias.as_deref()),
            opt_text(s.team_id.as_deref()),
            opt_text(s.user_id.as_deref()),
            json_arg("models", &s.models)?,
            money(s.max_budget),
            money(s.soft_budget),
            opt_text(s.budget_duration.as_deref()),
            Arg::Time(self.budget_reset_at),
            count("rpm_limit", s.rpm_limit)?,
            count("tpm_limit", s.tpm_limit)?,
            count("max_parallel_requests", s.max_parallel_requests)?,
            Arg::Time(s.expires_at),
            json_arg("metadata", &s.metadata)?,
            json_arg("tags", &s.tags)?,
            json_arg("aliases", &s.aliases)?,
            opt_json_arg("router_settings", s.router_settings.as_ref())?,
            Arg::Bool(s.blocked),
            money(Some(self.spend)),
            Arg::Time(Some(self.created_at)),
            opt_text(self.created_by.as_deref()),
            Arg::Time(Some(self.updated_at)),
        ])
    }
    fn decode(row: &DbRow) -> Result<Self> {
        let public_id: String = col(row, "public_id")?;
        let token_hash: String = col(row, "token_hash")?;
        Ok(KeyRecord {
            spec: KeySpec {
                public_id: PublicId::new(&public_id)
                    .map_err(|e| StoreError::corrupt("column public_id", e))?,
                token_hash: TokenHash::new(&token_hash)
                    .map_err(|e| StoreError::corrupt("column token_hash", e))?,
                key_alias: col(row, "key_alias")?,
                team_id: col(row, "team_id")?,
                user_id: col(row, "user_id")?,
                models: col_json(row, "models")?,
                max_budget: col_money(row, "max_budget")?,
                soft_budget: col_money(row, "soft_budget")?,
                budget_duration: col(row, "budget_duration")?,
                rpm_limit: col_count(row, "rpm_limit")?,
                tpm_limit: col_count(row, "tpm_limit")?,
                max_parallel_requests: col_count(row, "max_parallel_requests")?,
                expires_at: col(row, "expires_at")?,
                metadata: col_json(row, "metadata")?,
                tags: col_json(row, "tags")?,
                aliases: col_json(row, "aliases")?,
                router_settings: col_opt_json(row, "router_settings")?,
                blocked: col(row, "blocked")?,
            },
            spend: Usd::from_nanos(col(row, "spend")?),
            budget_reset_at: col(row, "budget_reset_at")?,
            created_at: col(row, "created_at")?,
            created_by: col(row, "created_by")?,
            updated_at: col(row, "updated_at")?,
        })
    }
    fn uniques(spec: &Self::Spec) -> Vec<(&'static str, Option<&str>)> {
        vec![
            ("token_hash", Some(spec.token_hash.as_str())),
            ("key_alias", spec.key_alias.as_deref()),
        ]
    }
    fn refs(spec: &Self::Spec) -> Vec<(&'static str, &'static str, &str)> {
        let team = spec
            .team_id
            .as_deref()
            .map(|t| ("virtual_keys", "team_id", t));
        let user = spec
            .user_id
            .as_deref()
            .map(|u| ("virtual_keys", "user_id", u));
        team.into_iter().chain(user).collect()
    }
}

impl Entity for RuntimeModel {
    type Spec = ModelSpec;
    const KIND: ObjectKind = ObjectKind::Model;
    const TABLE: Table = Table {
        name: "models",
        pk: "model_id",
        cols: &[
            "model_id",
            "model_name",
            "litellm_params",
            "credential_name",
            "model_info",
            "created_at",
            "created_by",
            "updated_at",
        ],
        insert_only: &["created_at", "created_by"],
    };

    fn id(spec: &Self::Spec) -> &str {
        &spec.model_id
    }
    fn spec(&self) -> &Self::Spec {
        &self.spec
    }
    fn validate(spec: &Self::Spec) -> Result<()> {
        spec.validate()
    }
    fn canonicalize(spec: &mut Self::Spec) {
        spec.litellm_params = canonical_object(&spec.litellm_params);
        spec.model_info = canonical_object(&spec.model_info);
    }
    fn build(spec: Self::Spec, prev: Option<&Self>, now: DateTime<Utc>, actor: &Actor) -> Self {
        RuntimeModel {
            spec,
            created_at: prev.map_or(now, |p| p.created_at),
            created_by: prev.map_or_else(|| Some(actor.to_string()), |p| p.created_by.clone()),
            updated_at: now,
        }
    }
    fn args(&self) -> Result<Vec<Arg>> {
        let s = &self.spec;
        Ok(vec![
            text(&s.model_id),
            text(&s.model_name),
            json_arg("litellm_params", &s.litellm_params)?,
            opt_text(s.credential_name.as_deref()),
            json_arg("model_info", &s.model_info)?,
            Arg::Time(Some(self.created_at)),
            opt_text(self.created_by.as_deref()),
            Arg::Time(Some(self.updated_at)),
        ])
    }
    fn decode(row: &DbRow) -> Result<Self> {
        Ok(RuntimeModel {
            spec: ModelSpec {
                model_id: col(row, "model_id")?,
                model_name: col(row, "model_name")?,
                litellm_params: col_json(row, "litellm_params")?,
                credential_name: col(row, "credential_name")?,
                model_info: col_json(row, "model_info")?,
            },
            created_at: col(row, "created_at")?,
            created_by: col(row, "created_by")?,
            updated_at: col(row, "updated_at")?,
        })
    }
    fn refs(spec: &Self::Spec) -> Vec<(&'static str, &'static str, &str)> {
        spec.credential_name
            .as_deref()
            .map(|c| ("models", "credential_name", c))
            .into_iter()
            .collect()
    }
}

/// A credential as stored: its description plus the sealed values. The audit log sees the
/// description and the value names, never the sealed bytes.
#[derive(Clone, Debug, Serialize)]
struct SealedCredential {
    credential_name: String,
    credential_info: JsonObject,
    value_names: Vec<String>,
    #[serde(skip_serializing)]
    sealed_values: Vec<u8>,
}

#[derive(Clone, Debug)]
struct StoredCredential {
    spec: SealedCredential,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl StoredCredential {
    fn public(&self) -> Credential {
        Credential {
            credential_name: self.spec.credential_name.clone(),
            credential_info: self.spec.credential_info.clone(),
            value_names: self.spec.value_names.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

impl Entity for StoredCredential {
    type Spec = SealedCredential;
    const KIND: ObjectKind = ObjectKind::Credential;
    const TABLE: Table = Table {
        name: "credentials",
        pk: "credential_name",
        cols: &[
            "credential_name",
            "credential_info",
            "value_names",
            "sealed_values",
            "created_at",
            "updated_at",
        ],
        insert_only: &["created_at"],
    };

    fn id(spec: &Self::Spec) -> &str {
        &spec.credential_name
    }
    fn spec(&self) -> &Self::Spec {
        &self.spec
    }
    fn validate(spec: &Self::Spec) -> Result<()> {
        check_name("credential_name", &spec.credential_name)
    }
    fn canonicalize(spec: &mut Self::Spec) {
        spec.credential_info = canonical_object(&spec.credential_info);
    }
    fn build(spec: Self::Spec, prev: Option<&Self>, now: DateTime<Utc>, _: &Actor) -> Self {
        StoredCredential {
            spec,
            created_at: prev.map_or(now, |p| p.created_at),
            updated_at: now,
        }
    }
    fn args(&self) -> Result<Vec<Arg>> {
        let s = &self.spec;
        Ok(vec![
            text(&s.credential_name),
            json_arg("credential_info", &s.credential_info)?,
            json_arg("value_names", &s.value_names)?,
            Arg::Bytes(s.sealed_values.clone()),
            Arg::Time(Some(self.created_at)),
            Arg::Time(Some(self.updated_at)),
        ])
    }
    fn decode(row: &DbRow) -> Result<Self> {
        Ok(StoredCredential {
            spec: SealedCredential {
                credential_name: col(row, "credential_name")?,
                credential_info: col_json(row, "credential_info")?,
                value_names: col_json(row, "value_names")?,
                sealed_values: col(row, "sealed_values")?,
            },
            created_at: col(row, "created_at")?,
            updated_at: col(row, "updated_at")?,
        })
    }
}

impl Entity for AccessGroup {
    type Spec = AccessGroup;
    const KIND: ObjectKind = ObjectKind::AccessGroup;
    const TABLE: Table = Table {
        name: "access_groups",
        pk: "name",
        cols: &["name", "models"],
        insert_only: &[],
    };

    fn id(spec: &Self::Spec) -> &str {
        &spec.name
    }
    fn spec(&self) -> &Self::Spec {
        self
    }
    fn validate(spec: &Self::Spec) -> Result<()> {
        spec.validate()
    }
    fn build(spec: Self::Spec, _: Option<&Self>, _: DateTime<Utc>, _: &Actor) -> Self {
        spec
    }
    fn args(&self) -> Result<Vec<Arg>> {
        Ok(vec![text(&self.name), json_arg("models", &self.models)?])
    }
    fn decode(row: &DbRow) -> Result<Self> {
        Ok(AccessGroup {
            name: col(row, "name")?,
            models: col_json(row, "models")?,
        })
    }
}

impl Entity for Tag {
    type Spec = Tag;
    const KIND: ObjectKind = ObjectKind::Tag;
    const TABLE: Table = Table {
        name: "tags",
        pk: "name",
        cols: &["name", "description", "models", "metadata"],
        insert_only: &[],
    };

    fn id(spec: &Self::Spec) -> &str {
        &spec.name
    }
    fn spec(&self) -> &Self::Spec {
        self
    }
    fn validate(spec: &Self::Spec) -> Result<()> {
        spec.validate()
    }
    fn canonicalize(spec: &mut Self::Spec) {
        spec.metadata = canonical_object(&spec.metadata);
    }
    fn build(spec: Self::Spec, _: Option<&Self>, _: DateTime<Utc>, _: &Actor) -> Self {
        spec
    }
    fn args(&self) -> Result<Vec<Arg>> {
        Ok(vec![
            text(&self.name),
            opt_text(self.description.as_deref()),
            json_arg("models", &self.models)?,
            json_arg("metadata", &self.metadata)?,
        ])
    }
    fn decode(row: &DbRow) -> Result<Self> {
        Ok(Tag {
            name: col(row, "name")?,
            description: col(row, "description")?,
            models: col_json(row, "models")?,
            metadata: col_json(row, "metadata")?,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Generic statements

/// `INSERT INTO table (cols) VALUES (...), (...) [ON CONFLICT (pk) DO UPDATE SET ...]`,
/// chunked under the bind limit: a bounded number of round trips however many rows.
async fn insert_rows(
    conn: &mut Conn,
    table: &str,
    cols: &[&str],
    upsert: Option<(&str, Vec<&str>)>,
    rows: Vec<Vec<Arg>>,
) -> Result<()> {
    let per_chunk = rows_per_chunk(cols.len());
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Arg>> = rows.by_ref().take(per_chunk).collect();
        let single = chunk.len() == 1;
        let mut qb = QueryBuilder::<Db>::new(format!("INSERT INTO {table} ({}) ", cols.join(", ")));
        qb.push_values(chunk, |mut b, row| {
            for arg in row {
                push_arg(&mut b, arg);
            }
        });
        if let Some((pk, update)) = &upsert {
            let set: Vec<String> = update
                .iter()
                .map(|c| format!("{c} = excluded.{c}"))
                .collect();
            if set.is_empty() {
                qb.push(format_args!(" ON CONFLICT ({pk}) DO NOTHING"));
            } else {
                qb.push(format_args!(
                    " ON CONFLICT ({pk}) DO UPDATE SET {}",
                    set.join(", ")
                ));
            }
        }
        // Single-row statements repeat (admin calls) and are worth preparing once; bulk
        // statements differ in row count and would only churn the statement cache.
        qb.build()
            .persistent(single)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

async fn delete_where_in(
    conn: &mut Conn,
    table: &str,
    column: &str,
    ids: &[String],
) -> Result<u64> {
    let mut deleted = 0;
    for chunk in ids.chunks(MAX_ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Db>::new(format!("DELETE FROM {table} WHERE {column} IN "));
        qb.push_tuples(chunk.iter().cloned(), |mut b, id| {
            b.push_bind(id);
        });
        deleted += qb
            .build()
            .persistent(false)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?
            .rows_affected();
    }
    Ok(deleted)
}

async fn write_records<E: Entity>(conn: &mut Conn, recs: &[E], upsert: bool) -> Result<()> {
    let rows = recs.iter().map(E::args).collect::<Result<Vec<_>>>()?;
    let table = &E::TABLE;
    let conflict = upsert.then(|| (table.pk, table.update_cols().collect()));
    insert_rows(conn, table.name, table.cols, conflict, rows).await?;
    E::write_children(conn, recs).await
}

async fn fetch_one<E: Entity>(conn: &mut Conn, id: &str, lock: bool) -> Result<Option<E>> {
    let sql = format!(
        "{} WHERE {} = $1{}",
        E::TABLE.select(),
        E::TABLE.pk,
        if lock { dialect::FOR_UPDATE } else { "" }
    );
    let Some(row) = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?
    else {
        return Ok(None);
    };
    let mut recs = vec![E::decode(&row)?];
    E::load_children(conn, &mut recs).await?;
    Ok(recs.pop())
}

async fn fetch_by_column<E: Entity>(
    conn: &mut Conn,
    column: &str,
    value: &str,
) -> Result<Option<E>> {
    let sql = format!("{} WHERE {column} = $1", E::TABLE.select());
    let Some(row) = sqlx::query(&sql)
        .bind(value)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?
    else {
        return Ok(None);
    };
    let mut recs = vec![E::decode(&row)?];
    E::load_children(conn, &mut recs).await?;
    Ok(recs.pop())
}

/// Rows for `ids` (chunked `IN` lists), keyed by id.
async fn fetch_many<E: Entity>(conn: &mut Conn, ids: &[String]) -> Result<HashMap<String, E>> {
    let mut recs = Vec::new();
    for chunk in ids.chunks(MAX_ROWS_PER_STATEMENT) {
        let mut qb =
            QueryBuilder::<Db>::new(format!("{} WHERE {} IN ", E::TABLE.select(), E::TABLE.pk));
        qb.push_tuples(chunk.iter().cloned(), |mut b, id| {
            b.push_bind(id);
        });
        let rows = qb
            .build()
            .persistent(false)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
        for row in &rows {
            recs.push(E::decode(row)?);
        }
    }
    E::load_children(conn, &mut recs).await?;
    Ok(recs
        .into_iter()
        .map(|r| (E::id(r.spec()).to_owned(), r))
        .collect())
}

/// Every row, ordered by identity in byte order on both backends.
async fn fetch_all<E: Entity>(conn: &mut Conn) -> Result<Vec<E>> {
    let sql = format!(
        "{} ORDER BY {}{}",
        E::TABLE.select(),
        E::TABLE.pk,
        dialect::COLLATE
    );
    let rows = sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    let mut recs = rows.iter().map(E::decode).collect::<Result<Vec<_>>>()?;
    E::load_children(conn, &mut recs).await?;
    Ok(recs)
}

async fn exists(conn: &mut Conn, table: &str, column: &str, value: &str) -> Result<bool> {
    let sql = format!("SELECT 1 FROM {table} WHERE {column} = $1 LIMIT 1");
    Ok(sqlx::query(&sql)
        .bind(value)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?
        .is_some())
}

/// Every unique column of `spec` is free, or held by the same object.
async fn check_uniques<E: Entity>(conn: &mut Conn, spec: &E::Spec) -> Result<()> {
    for (column, value) in E::uniques(spec) {
        let Some(value) = value else { continue };
        let sql = format!(
            "SELECT {pk} FROM {t} WHERE {column} = $1",
            pk = E::TABLE.pk,
            t = E::TABLE.name
        );
        let holder: Option<String> = sqlx::query_scalar(&sql)
            .bind(value)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
        if holder.is_some_and(|h| h != E::id(spec)) {
            return Err(StoreError::Conflict {
                kind: E::KIND,
                field: column,
                value: value.to_owned(),
            });
        }
    }
    Ok(())
}

/// Everything `spec` references exists.
async fn check_refs<E: Entity>(conn: &mut Conn, spec: &E::Spec) -> Result<()> {
    let mut wanted: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for (child, column, value) in E::refs(spec) {
        wanted.entry((child, column)).or_default().insert(value);
    }
    for ((child, column), values) in wanted {
        let Some(r) = reference(child, column) else {
            continue;
        };
        let values: Vec<String> = values.into_iter().map(str::to_owned).collect();
        let mut found = HashSet::new();
        for chunk in values.chunks(MAX_ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Db>::new(format!(
                "SELECT {c} FROM {p} WHERE {c} IN ",
                c = r.parent_column,
                p = r.parent
            ));
            qb.push_tuples(chunk.iter().cloned(), |mut b, v| {
                b.push_bind(v);
            });
            let rows: Vec<String> = qb
                .build_query_scalar()
                .persistent(false)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?;
            found.extend(rows);
        }
        if let Some(missing) = values.into_iter().find(|v| !found.contains(v)) {
            return Err(StoreError::UnknownReference {
                kind: r.child_kind,
                field: r.column,
                target: r.parent_kind,
                value: missing,
            });
        }
    }
    Ok(())
}

/// Nothing that would block a delete still references `id`.
async fn check_unreferenced<E: Entity>(conn: &mut Conn, id: &str) -> Result<()> {
    for r in REFERENCES
        .iter()
        .filter(|r| r.parent == E::TABLE.name && !r.cascade)
    {
        if exists(conn, r.child, r.column, id).await? {
            return Err(StoreError::InUse {
                kind: E::KIND,
                id: id.to_owned(),
                by: r.child_kind,
            });
        }
    }
    Ok(())
}

/// After an import's statements: every reference in the database resolves. A dangling
/// reference to an object deleted by the same import is reported as "still in use".
async fn check_all_references(
    conn: &mut Conn,
    deleted: &HashMap<ObjectKind, HashSet<String>>,
) -> Result<()> {
    for r in REFERENCES {
        let sql = format!(
            "SELECT c.{col} FROM {child} c WHERE c.{col} IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM {parent} p WHERE p.{pcol} = c.{col}) LIMIT 1",
            col = r.column,
            child = r.child,
            parent = r.parent,
            pcol = r.parent_column
        );
        let missing: Option<String> = sqlx::query_scalar(&sql)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
        if let Some(value) = missing {
            let was_deleted = deleted
                .get(&r.parent_kind)
                .is_some_and(|ids| ids.contains(&value));
            return Err(if was_deleted {
                StoreError::InUse {
                    kind: r.parent_kind,
                    id: value,
                    by: r.child_kind,
                }
            } else {
                StoreError::UnknownReference {
                    kind: r.child_kind,
                    field: r.column,
                    target: r.parent_kind,
                    value,
                }
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Audit

struct AuditRow {
    action: AuditAction,
    kind: ObjectKind,
    id: String,
    before: Option<Value>,
    after: Option<Value>,
}

/// Writes the audit rows of a change and counts the change in `change_version` (see
/// [`bump_change_version`]); the last statement before the caller commits.
async fn write_audit(
    conn: &mut Conn,
    actor: &Actor,
    at: DateTime<Utc>,
    rows: Vec<AuditRow>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let args = rows
        .into_iter()
        .map(|r| {
            Ok(vec![
                Arg::Time(Some(at)),
                text(actor.as_str()),
                text(r.action.as_str()),
                text(r.kind.as_str()),
                Arg::Text(Some(r.id)),
                opt_json_arg("before", r.before.as_ref())?,
                opt_json_arg("after", r.after.as_ref())?,
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    insert_rows(
        conn,
        "audit_log",
        &[
            "at",
            "actor",
            "action",
            "object_kind",
            "object_id",
            "before_json",
            "after_json",
        ],
        None,
        args,
    )
    .await?;
    bump_change_version(conn).await
}

/// Adds one to the store's change count, which other gateway instances on this database poll
/// to drop their caches. On PostgreSQL the row stays locked until the caller commits, so
/// concurrent changes commit in the order of their counts and a poller that has seen a count
/// sees every change up to it.
async fn bump_change_version(conn: &mut Conn) -> Result<()> {
    sqlx::query("UPDATE change_version SET version = version + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Generic operations

/// A failed `Invalid` names the object it came from when one call writes many.
fn in_object(kind: ObjectKind, id: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Invalid { field, reason } => StoreError::Invalid {
            field: format!("{}[{id:?}].{field}", kind.as_str()),
            reason,
        },
        other => other,
    }
}

fn prepared<E: Entity>(spec: &E::Spec) -> Result<E::Spec> {
    let mut spec = spec.clone();
    E::canonicalize(&mut spec);
    E::validate(&spec)?;
    Ok(spec)
}

async fn create<E: Entity>(store: &This, actor: &Actor, spec: &E::Spec) -> Result<E> {
    let spec = prepared::<E>(spec)?;
    let mut tx = store.begin_write().await?;
    let now = now();
    let (rec, audit) = create_in::<E>(&mut tx, actor, spec, now).await?;
    write_audit(&mut tx, actor, now, vec![audit]).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(rec)
}

/// Inserts a prepared `spec` inside the caller's transaction; returns it with its audit row.
async fn create_in<E: Entity>(
    tx: &mut Conn,
    actor: &Actor,
    spec: E::Spec,
    now: DateTime<Utc>,
) -> Result<(E, AuditRow)> {
    let id = E::id(&spec).to_owned();
    if exists(tx, E::TABLE.name, E::TABLE.pk, &id).await? {
        return Err(StoreError::Conflict {
            kind: E::KIND,
            field: E::TABLE.pk,
            value: id,
        });
    }
    check_uniques::<E>(tx, &spec).await?;
    check_refs::<E>(tx, &spec).await?;
    let rec = E::build(spec, None, now, actor);
    write_records(tx, std::slice::from_ref(&rec), false).await?;
    let audit = AuditRow {
        action: AuditAction::Create,
        kind: E::KIND,
        id,
        before: None,
        after: Some(to_value(rec.spec())?),
    };
    Ok((rec, audit))
}

async fn update<E, F>(
    store: &This,
    actor: &Actor,
    id: &str,
    action: AuditAction,
    edit: F,
) -> Result<E>
where
    E: Entity,
    F: FnOnce(&mut E::Spec) -> Result<()> + Send,
{
    let mut tx = store.begin_write().await?;
    let now = now();
    let (rec, audit) = update_in::<E, F>(&mut tx, actor, id, action, edit, now)
        .await?
        .ok_or_else(|| StoreError::not_found(E::KIND, id))?;
    write_audit(&mut tx, actor, now, vec![audit]).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(rec)
}

/// Edits the object `id` inside the caller's transaction (its row locked on PostgreSQL);
/// returns it with its audit row, or `None` when it does not exist.
async fn update_in<E, F>(
    tx: &mut Conn,
    actor: &Actor,
    id: &str,
    action: AuditAction,
    edit: F,
    now: DateTime<Utc>,
) -> Result<Option<(E, AuditRow)>>
where
    E: Entity,
    F: FnOnce(&mut E::Spec) -> Result<()> + Send,
{
    let Some(prev) = fetch_one::<E>(tx, id, true).await? else {
        return Ok(None);
    };
    let mut spec = prev.spec().clone();
    edit(&mut spec)?;
    let spec = prepared::<E>(&spec)?;
    check_uniques::<E>(tx, &spec).await?;
    check_refs::<E>(tx, &spec).await?;
    let rec = E::build(spec, Some(&prev), now, actor);
    write_records(tx, std::slice::from_ref(&rec), true).await?;
    let audit = AuditRow {
        action,
        kind: E::KIND,
        id: id.to_owned(),
        before: Some(to_value(prev.spec())?),
        after: Some(to_value(rec.spec())?),
    };
    Ok(Some((rec, audit)))
}

/// Creates, inside the caller's transaction, the members that are not users yet (LiteLLM
/// creates them on the fly); returns their audit rows.
async fn create_missing_users(
    tx: &mut Conn,
    actor: &Actor,
    members: &[TeamMember],
    now: DateTime<Utc>,
) -> Result<Vec<AuditRow>> {
    let mut audits = Vec::new();
    for m in members {
        if !exists(tx, User::TABLE.name, User::TABLE.pk, &m.user_id).await? {
            let spec = prepared::<User>(&UserSpec::new(m.user_id.clone()))?;
            let (_, audit) = create_in::<User>(tx, actor, spec, now).await?;
            audits.push(audit);
        }
    }
    Ok(audits)
}

/// Adds (or re-roles) `member` in a team spec.
fn with_member(spec: &mut TeamSpec, member: &TeamMember) {
    spec.members.retain(|m| m.user_id != member.user_id);
    spec.members.push(member.clone());
}

async fn delete<E: Entity>(store: &This, actor: &Actor, id: &str) -> Result<E> {
    let mut tx = store.begin_write().await?;
    let prev = fetch_one::<E>(&mut tx, id, true)
        .await?
        .ok_or_else(|| StoreError::not_found(E::KIND, id))?;
    check_unreferenced::<E>(&mut tx, id).await?;
    delete_where_in(&mut tx, E::TABLE.name, E::TABLE.pk, &[id.to_owned()]).await?;
    let audit = AuditRow {
        action: AuditAction::Delete,
        kind: E::KIND,
        id: id.to_owned(),
        before: Some(to_value(prev.spec())?),
        after: None,
    };
    write_audit(&mut tx, actor, now(), vec![audit]).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(prev)
}

async fn get<E: Entity>(store: &This, id: &str) -> Result<Option<E>> {
    let mut conn = store.read_conn().await?;
    fetch_one::<E>(&mut conn, id, false).await
}

async fn get_by<E: Entity>(store: &This, column: &str, value: &str) -> Result<Option<E>> {
    let mut conn = store.read_conn().await?;
    fetch_by_column::<E>(&mut conn, column, value).await
}

async fn all<E: Entity>(store: &This) -> Result<Vec<E>> {
    let mut conn = store.read_conn().await?;
    fetch_all::<E>(&mut conn).await
}

/// Creates or replaces many objects of one kind inside `conn`'s transaction: one read of
/// the rows they replace, then chunked multi-row upserts. Reference checks are the caller's
/// (once, at the end of the whole apply).
async fn upsert_many<E: Entity>(
    conn: &mut Conn,
    actor: &Actor,
    now: DateTime<Utc>,
    specs: &[E::Spec],
    outcome: &mut ApplyOutcome,
    audit: &mut Vec<AuditRow>,
) -> Result<Vec<E>> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let mut seen = HashSet::new();
    let mut prepared_specs = Vec::with_capacity(specs.len());
    for spec in specs {
        let id = E::id(spec);
        if !seen.insert(id.to_owned()) {
            return Err(StoreError::invalid(
                format!("{}[{id:?}]", E::KIND.as_str()),
                "listed twice in one import",
            ));
        }
        prepared_specs.push(prepared::<E>(spec).map_err(|e| in_object(E::KIND, id, e))?);
    }
    let ids: Vec<String> = seen.into_iter().collect();
    let prevs = fetch_many::<E>(conn, &ids).await?;
    let mut recs = Vec::with_capacity(prepared_specs.len());
    for spec in prepared_specs {
        let prev = prevs.get(E::id(&spec));
        outcome.count(E::KIND, prev.is_none());
        let rec = E::build(spec, prev, now, actor);
        audit.push(AuditRow {
            action: if prev.is_some() {
                AuditAction::Update
            } else {
                AuditAction::Create
            },
            kind: E::KIND,
            id: E::id(rec.spec()).to_owned(),
            before: prev.map(|p| to_value(p.spec())).transpose()?,
            after: Some(to_value(rec.spec())?),
        });
        recs.push(rec);
    }
    write_records(conn, &recs, true).await?;
    Ok(recs)
}

/// Deletes many objects of one kind; every one must exist.
async fn delete_many<E: Entity>(
    conn: &mut Conn,
    ids: &[String],
    outcome: &mut ApplyOutcome,
    audit: &mut Vec<AuditRow>,
) -> Result<Vec<E>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut prevs = fetch_many::<E>(conn, ids).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let prev = prevs
            .remove(id)
            .ok_or_else(|| StoreError::not_found(E::KIND, id))?;
        audit.push(AuditRow {
            action: AuditAction::Delete,
            kind: E::KIND,
            id: id.clone(),
            before: Some(to_value(prev.spec())?),
            after: None,
        });
        out.push(prev);
    }
    delete_where_in(conn, E::TABLE.name, E::TABLE.pk, ids).await?;
    outcome.deleted(E::KIND, out.len());
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Credentials: sealing

fn seal_values(
    cipher: Option<&SecretCipher>,
    name: &str,
    values: &CredentialValues,
) -> Result<(Vec<String>, Vec<u8>)> {
    let cipher = cipher.ok_or(StoreError::NoSaltKey)?;
    let exposed: BTreeMap<&str, &str> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose_secret()))
        .collect();
    let plaintext = Zeroizing::new(
        serde_json::to_vec(&exposed).map_err(|e| StoreError::invalid("values", e.to_string()))?,
    );
    let sealed = cipher
        .seal(name.as_bytes(), &plaintext)
        .map_err(|e| StoreError::invalid("credential values", e.to_string()))?;
    Ok((values.keys().cloned().collect(), sealed))
}

fn open_values(cipher: Option<&SecretCipher>, spec: &SealedCredential) -> Result<CredentialValues> {
    let cipher = cipher.ok_or(StoreError::NoSaltKey)?;
    let plaintext = Zeroizing::new(
        cipher
            .open(spec.credential_name.as_bytes(), &spec.sealed_values)
            .map_err(|_| StoreError::Decrypt {
                credential: spec.credential_name.clone(),
            })?,
    );
    let map: BTreeMap<String, String> =
        serde_json::from_slice(&plaintext).map_err(|_| StoreError::Decrypt {
            credential: spec.credential_name.clone(),
        })?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, SecretString::from(v)))
        .collect())
}

// ---------------------------------------------------------------------------------------
// Paging

async fn paged<E: Entity>(
    store: &This,
    page: Page,
    order: &str,
    push_where: impl Fn(&mut QueryBuilder<'static, Db>),
) -> Result<Paged<E>> {
    let (limit, offset) = page.validate()?;
    let mut conn = store.read_conn().await?;
    let mut qb =
        QueryBuilder::<Db>::new(format!("SELECT COUNT(*) FROM {} WHERE 1=1", E::TABLE.name));
    push_where(&mut qb);
    let total: i64 = qb
        .build_query_scalar()
        .persistent(false)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    let mut qb = QueryBuilder::<Db>::new(format!("{} WHERE 1=1", E::TABLE.select()));
    push_where(&mut qb);
    qb.push(format_args!(" ORDER BY {order} LIMIT "));
    qb.push_bind(limit);
    qb.push(" OFFSET ");
    qb.push_bind(offset);
    let rows = qb
        .build()
        .persistent(false)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    let mut items = rows.iter().map(E::decode).collect::<Result<Vec<_>>>()?;
    E::load_children(&mut conn, &mut items).await?;
    Ok(Paged {
        items,
        total: u64::try_from(total).unwrap_or_default(),
    })
}

fn push_eq(qb: &mut QueryBuilder<'static, Db>, column: &str, value: Option<&str>) {
    if let Some(v) = value {
        qb.push(format_args!(" AND {column} = "));
        qb.push_bind(v.to_owned());
    }
}

fn push_like(qb: &mut QueryBuilder<'static, Db>, column: &str, value: Option<&str>) {
    if let Some(v) = value {
        qb.push(format_args!(" AND lower({column}) LIKE "));
        qb.push_bind(like_pattern(v));
        qb.push(" ESCAPE '\\'");
    }
}

// ---------------------------------------------------------------------------------------
// Trait implementations

#[async_trait]
impl OrganizationStore for This {
    async fn create_organization(
        &self,
        actor: &Actor,
        spec: &OrganizationSpec,
    ) -> Result<Organization> {
        create(self, actor, spec).await
    }
    async fn organization(&self, id: &str) -> Result<Option<Organization>> {
        get(self, id).await
    }
    async fn update_organization(
        &self,
        actor: &Actor,
        id: &str,
        patch: &OrganizationPatch,
    ) -> Result<Organization> {
        update(self, actor, id, AuditAction::Update, |s| {
            patch.apply(s);
            Ok(())
        })
        .await
    }
    async fn delete_organization(&self, actor: &Actor, id: &str) -> Result<Organization> {
        delete(self, actor, id).await
    }
    async fn list_organizations(&self, page: Page) -> Result<Paged<Organization>> {
        let order = format!("organization_id{}", dialect::COLLATE);
        paged(self, page, &order, |_| {}).await
    }
}

#[async_trait]
impl BudgetStore for This {
    async fn create_budget(&self, actor: &Actor, spec: &BudgetSpec) -> Result<Budget> {
        create(self, actor, spec).await
    }
    async fn budget(&self, id: &str) -> Result<Option<Budget>> {
        get(self, id).await
    }
    async fn update_budget(&self, actor: &Actor, id: &str, patch: &BudgetPatch) -> Result<Budget> {
        update(self, actor, id, AuditAction::Update, |s| {
            patch.apply(s);
            Ok(())
        })
        .await
    }
    async fn delete_budget(&self, actor: &Actor, id: &str) -> Result<Budget> {
        delete(self, actor, id).await
    }
    async fn list_budgets(&self, page: Page) -> Result<Paged<Budget>> {
        let order = format!("budget_id{}", dialect::COLLATE);
        paged(self, page, &order, |_| {}).await
    }
}

#[async_trait]
impl UserStore for This {
    async fn create_user_in_teams(
        &self,
        actor: &Actor,
        spec: &UserSpec,
        teams: &[String],
    ) -> Result<User> {
        let spec = prepared::<User>(spec)?;
        let user_id = spec.user_id.clone();
        let mut tx = self.begin_write().await?;
        let now = now();
        let (user, audit) = create_in::<User>(&mut tx, actor, spec, now).await?;
        let mut audits = vec![audit];
        let member = TeamMember::new(user_id, TeamRole::default());
        for team in teams {
            let edit = |s: &mut TeamSpec| {
                with_member(s, &member);
                Ok(())
            };
            match update_in::<Team, _>(&mut tx, actor, team, AuditAction::Update, edit, now).await?
            {
                Some((_, audit)) => audits.push(audit),
                // Dropping `tx` rolls the user back with it.
                None => {
                    return Err(StoreError::UnknownReference {
                        kind: ObjectKind::User,
                        field: "teams",
                        target: ObjectKind::Team,
                        value: team.clone(),
                    })
                }
            }
        }
        write_audit(&mut tx, actor, now, audits).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(user)
    }
    async fn create_user(&self, actor: &Actor, spec: &UserSpec) -> Result<User> {
        create(self, actor, spec).await
    }
    async fn user(&self, id: &str) -> Result<Option<User>> {
        get(self, id).await
    }
    async fn update_user(&self, actor: &Actor, id: &str, patch: &UserPatch) -> Result<User> {
        update(self, actor, id, AuditAction::Update, |s| {
            patch.apply(s);
            Ok(())
        })
        .await
    }
    async fn delete_user(&self, actor: &Actor, id: &str) -> Result<User> {
        delete(self, actor, id).await
    }
    async fn list_users(&self, filter: &UserFilter, page: Page) -> Result<Paged<User>> {
        let order = format!("user_id{}", dialect::COLLATE);
        paged(self, page, &order, |qb| {
            push_like(qb, "user_email", filter.email_contains.as_deref());
            push_eq(qb, "user_role", filter.role.map(UserRole::as_str));
        })
        .await
    }
}

#[async_trait]
impl TeamStore for This {
    async fn create_team(&self, actor: &Actor, spec: &TeamSpec) -> Result<Team> {
        create(self, actor, spec).await
    }
    async fn team(&self, id: &str) -> Result<Option<Team>> {
        get(self, id).await
    }
    async fn team_by_alias(&self, alias: &str) -> Result<Option<Team>> {
        get_by(self, "team_alias", alias).await
    }
    async fn update_team(&self, actor: &Actor, id: &str, patch: &TeamPatch) -> Result<Team> {
        update(self, actor, id, AuditAction::Update, |s| {
            patch.apply(s);
            Ok(())
        })
        .await
    }
    async fn delete_team(&self, actor: &Actor, id: &str) -> Result<Team> {
        delete(self, actor, id).await
    }
    async fn list_teams(&self, filter: &TeamFilter, page: Page) -> Result<Paged<Team>> {
        let order = format!("team_id{}", dialect::COLLATE);
        paged(self, page, &order, |qb| {
            push_eq(qb, "organization_id", filter.organization_id.as_deref());
            push_like(qb, "team_alias", filter.alias_contains.as_deref());
            if let Some(user) = &filter.member_user_id {
                qb.push(" AND team_id IN (SELECT team_id FROM team_members WHERE user_id = ");
                qb.push_bind(user.clone());
                qb.push(")");
            }
        })
        .await
    }
    async fn add_team_member(
        &self,
        actor: &Actor,
        team_id: &str,
        member: &TeamMember,
    ) -> Result<Team> {
        update(
            self,
            actor,
            team_id,
            AuditAction::Update,
            |s: &mut TeamSpec| {
                with_member(s, member);
                Ok(())
            },
        )
        .await
    }
    async fn create_team_and_users(&self, actor: &Actor, spec: &TeamSpec) -> Result<Team> {
        let spec = prepared::<Team>(spec)?;
        let mut tx = self.begin_write().await?;
        let now = now();
        let mut audits = create_missing_users(&mut tx, actor, &spec.members, now).await?;
        let (team, audit) = create_in::<Team>(&mut tx, actor, spec, now).await?;
        audits.push(audit);
        write_audit(&mut tx, actor, now, audits).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(team)
    }
    async fn add_team_members(
        &self,
        actor: &Actor,
        team_id: &str,
        members: &[TeamMember],
    ) -> Result<Team> {
        let mut tx = self.begin_write().await?;
        let now = now();
        if !exists(&mut tx, Team::TABLE.name, Team::TABLE.pk, team_id).await? {
            return Err(StoreError::not_found(ObjectKind::Team, team_id));
        }
        let mut audits = create_missing_users(&mut tx, actor, members, now).await?;
        let edit = |s: &mut TeamSpec| {
            for m in members {
                with_member(s, m);
            }
            Ok(())
        };
        let (team, audit) =
            update_in::<Team, _>(&mut tx, actor, team_id, AuditAction::Update, edit, now)
                .await?
                .ok_or_else(|| StoreError::not_found(ObjectKind::Team, team_id))?;
        audits.push(audit);
        write_audit(&mut tx, actor, now, audits).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(team)
    }
    async fn remove_team_member(
        &self,
        actor: &Actor,
        team_id: &str,
        user_id: &str,
    ) -> Result<Team> {
        update(
            self,
            actor,
            team_id,
            AuditAction::Update,
            |s: &mut TeamSpec| {
                let before = s.members.len();
                s.members.retain(|m| m.user_id != user_id);
                if s.members.len() == before {
                    return Err(StoreError::not_found(
                        ObjectKind::TeamMember,
                        format!("{team_id}/{user_id}"),
                    ));
                }
                Ok(())
            },
        )
        .await
    }
}

#[async_trait]
impl KeyStore for This {
    async fn insert_key(&self, actor: &Actor, spec: &KeySpec) -> Result<KeyRecord> {
        create(self, actor, spec).await
    }
    async fn key_by_hash(&self, hash: &TokenHash) -> Result<Option<KeyRecord>> {
        get_by(self, "token_hash", hash.as_str()).await
    }
    async fn key_by_public_id(&self, id: &PublicId) -> Result<Option<KeyRecord>> {
        get(self, id.as_str()).await
    }
    async fn key_by_alias(&self, alias: &str) -> Result<Option<KeyRecord>> {
        get_by(self, "key_alias", alias).await
    }
    async fn update_key(
        &self,
        actor: &Actor,
        id: &PublicId,
        patch: &KeyPatch,
    ) -> Result<KeyRecord> {
        update(self, actor, id.as_str(), AuditAction::Update, |s| {
            patch.apply(s);
            Ok(())
        })
        .await
    }
    async fn regenerate_key(
        &self,
        actor: &Actor,
        id: &PublicId,
        new_hash: &TokenHash,
    ) -> Result<KeyRecord> {
        update(
            self,
            actor,
            id.as_str(),
            AuditAction::Regenerate,
            |s: &mut KeySpec| {
                s.token_hash = new_hash.clone();
                Ok(())
            },
        )
        .await
    }
    async fn delete_keys(&self, actor: &Actor, ids: &[PublicId]) -> Result<Vec<KeyRecord>> {
        let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
        let mut tx = self.begin_write().await?;
        let mut outcome = ApplyOutcome::default();
        let mut audit = Vec::new();
        let deleted = delete_many::<KeyRecord>(&mut tx, &ids, &mut outcome, &mut audit).await?;
        write_audit(&mut tx, actor, now(), audit).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(deleted)
    }
    async fn list_keys(&self, filter: &KeyFilter, page: Page) -> Result<Paged<KeyRecord>> {
        let order = format!("created_at DESC, public_id{}", dialect::COLLATE);
        let now = now();
        paged(self, page, &order, |qb| {
            push_eq(qb, "team_id", filter.team_id.as_deref());
            push_eq(qb, "user_id", filter.user_id.as_deref());
            push_like(qb, "key_alias", filter.alias_contains.as_deref());
            if let Some(blocked) = filter.blocked {
                qb.push(" AND blocked = ");
                qb.push_bind(blocked);
            }
            match filter.expired {
                Some(true) => {
                    qb.push(" AND expires_at IS NOT NULL AND expires_at <= ");
                    qb.push_bind(now);
                }
                Some(false) => {
                    qb.push(" AND (expires_at IS NULL OR expires_at > ");
                    qb.push_bind(now);
                    qb.push(")");
                }
                None => {}
            }
        })
        .await
    }
}

#[async_trait]
impl ModelStore for This {
    async fn create_model(&self, actor: &Actor, spec: &ModelSpec) -> Result<RuntimeModel> {
        create(self, actor, spec).await
    }
    async fn model(&self, id: &str) -> Result<Option<RuntimeModel>> {
        get(self, id).await
    }
    async fn update_model(
        &self,
        actor: &Actor,
        id: &str,
        patch: &ModelPatch,
    ) -> Result<RuntimeModel> {
        update(self, actor, id, AuditAction::Update, |s| {
            patch.apply(s);
            Ok(())
        })
        .await
    }
    async fn delete_model(&self, actor: &Actor, id: &str) -> Result<RuntimeModel> {
        delete(self, actor, id).await
    }
    async fn list_models(&self) -> Result<Vec<RuntimeModel>> {
        all(self).await
    }
}

#[async_trait]
impl CredentialStore for This {
    async fn create_credential(&self, actor: &Actor, new: &NewCredential) -> Result<Credential> {
        validate_credential(&new.credential_name, Some(&new.values))?;
        let (value_names, sealed_values) =
            seal_values(self.cipher(), &new.credential_name, &new.values)?;
        let spec = SealedCredential {
            credential_name: new.credential_name.clone(),
            credential_info: new.credential_info.clone(),
            value_names,
            sealed_values,
        };
        Ok(create::<StoredCredential>(self, actor, &spec)
            .await?
            .public())
    }
    async fn credential(&self, name: &str) -> Result<Option<Credential>> {
        Ok(get::<StoredCredential>(self, name)
            .await?
            .map(|c| c.public()))
    }
    async fn credential_values(&self, name: &str) -> Result<Option<CredentialValues>> {
        let Some(stored) = get::<StoredCredential>(self, name).await? else {
            return Ok(None);
        };
        open_values(self.cipher(), &stored.spec).map(Some)
    }
    async fn update_credential(
        &self,
        actor: &Actor,
        name: &str,
        patch: &CredentialPatch,
    ) -> Result<Credential> {
        validate_credential(name, patch.values.as_ref())?;
        let cipher = self.cipher();
        let rec = update::<StoredCredential, _>(self, actor, name, AuditAction::Update, |s| {
            if let Some(info) = &patch.credential_info {
                s.credential_info = info.clone();
            }
            if let Some(values) = &patch.values {
                let (names, sealed) = seal_values(cipher, name, values)?;
                s.value_names = names;
                s.sealed_values = sealed;
            }
            Ok(())
        })
        .await?;
        Ok(rec.public())
    }
    async fn delete_credential(&self, actor: &Actor, name: &str) -> Result<Credential> {
        Ok(delete::<StoredCredential>(self, actor, name)
            .await?
            .public())
    }
    async fn list_credentials(&self) -> Result<Vec<Credential>> {
        Ok(all::<StoredCredential>(self)
            .await?
            .iter()
            .map(StoredCredential::public)
            .collect())
    }
}

/// Create-or-replace of one object, for kinds without separate create and update calls.
async fn put<E: Entity>(store: &This, actor: &Actor, spec: &E::Spec) -> Result<E> {
    let mut tx = store.begin_write().await?;
    let now = now();
    let mut audit = Vec::new();
    let mut recs = upsert_many::<E>(
        &mut tx,
        actor,
        now,
        std::slice::from_ref(spec),
        &mut ApplyOutcome::default(),
        &mut audit,
    )
    .await?;
    write_audit(&mut tx, actor, now, audit).await?;
    tx.commit().await.map_err(db_err)?;
    recs.pop()
        .ok_or_else(|| StoreError::not_found(E::KIND, E::id(spec)))
}

#[async_trait]
impl AccessGroupStore for This {
    async fn put_access_group(&self, actor: &Actor, group: &AccessGroup) -> Result<AccessGroup> {
        put(self, actor, group).await
    }
    async fn access_group(&self, name: &str) -> Result<Option<AccessGroup>> {
        get(self, name).await
    }
    async fn delete_access_group(&self, actor: &Actor, name: &str) -> Result<AccessGroup> {
        delete(self, actor, name).await
    }
    async fn list_access_groups(&self) -> Result<Vec<AccessGroup>> {
        all(self).await
    }
}

#[async_trait]
impl TagStore for This {
    async fn put_tag(&self, actor: &Actor, tag: &Tag) -> Result<Tag> {
        put(self, actor, tag).await
    }
    async fn tag(&self, name: &str) -> Result<Option<Tag>> {
        get(self, name).await
    }
    async fn delete_tag(&self, actor: &Actor, name: &str) -> Result<Tag> {
        delete(self, actor, name).await
    }
    async fn list_tags(&self) -> Result<Vec<Tag>> {
        all(self).await
    }
}

// ---------------------------------------------------------------------------------------
// Settings

const ROUTER_SETTINGS_ID: &str = "global";

async fn read_general_settings(conn: &mut Conn) -> Result<BTreeMap<String, Value>> {
    let sql = format!(
        "SELECT name, value FROM general_settings ORDER BY name{}",
        dialect::COLLATE
    );
    let rows = sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|r| Ok((col::<String>(r, "name")?, col_json::<Value>(r, "value")?)))
        .collect()
}

async fn read_router_settings(conn: &mut Conn) -> Result<Option<RouterSettings>> {
    let row = sqlx::query("SELECT settings FROM global_router_settings WHERE id = $1")
        .bind(ROUTER_SETTINGS_ID)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    row.map(|r| col_json::<RouterSettings>(&r, "settings"))
        .transpose()
}

async fn write_general_settings(
    conn: &mut Conn,
    settings: &BTreeMap<String, Value>,
    now: DateTime<Utc>,
    audit: &mut Vec<AuditRow>,
    outcome: &mut ApplyOutcome,
) -> Result<()> {
    if settings.is_empty() {
        return Ok(());
    }
    let before = read_general_settings(conn).await?;
    let mut rows = Vec::with_capacity(settings.len());
    for (name, value) in settings {
        check_name("general_settings", name)?;
        let value = canonical_value(value);
        let prev = before.get(name);
        outcome.count(ObjectKind::GeneralSetting, prev.is_none());
        rows.push(vec![
            text(name),
            json_arg("general_settings", &value)?,
            Arg::Time(Some(now)),
        ]);
        audit.push(AuditRow {
            action: if prev.is_some() {
                AuditAction::Update
            } else {
                AuditAction::Create
            },
            kind: ObjectKind::GeneralSetting,
            id: name.clone(),
            before: prev.cloned(),
            after: Some(value),
        });
    }
    insert_rows(
        conn,
        "general_settings",
        &["name", "value", "updated_at"],
        Some(("name", vec!["value", "updated_at"])),
        rows,
    )
    .await
}

async fn write_router_settings(
    conn: &mut Conn,
    settings: &RouterSettings,
    now: DateTime<Utc>,
    audit: &mut Vec<AuditRow>,
    outcome: &mut ApplyOutcome,
) -> Result<()> {
    let prev = read_router_settings(conn).await?;
    outcome.count(ObjectKind::RouterSettings, prev.is_none());
    audit.push(AuditRow {
        action: if prev.is_some() {
            AuditAction::Update
        } else {
            AuditAction::Create
        },
        kind: ObjectKind::RouterSettings,
        id: ROUTER_SETTINGS_ID.into(),
        before: prev.as_ref().map(to_value).transpose()?,
        after: Some(to_value(settings)?),
    });
    insert_rows(
        conn,
        "global_router_settings",
        &["id", "settings", "updated_at"],
        Some(("id", vec!["settings", "updated_at"])),
        vec![vec![
            text(ROUTER_SETTINGS_ID),
            json_arg("router_settings", settings)?,
            Arg::Time(Some(now)),
        ]],
    )
    .await
}

async fn delete_general_settings(
    conn: &mut Conn,
    names: &[String],
    audit: &mut Vec<AuditRow>,
    outcome: &mut ApplyOutcome,
) -> Result<usize> {
    if names.is_empty() {
        return Ok(0);
    }
    let before = read_general_settings(conn).await?;
    let mut n = 0;
    for name in names {
        let Some(prev) = before.get(name) else {
            return Err(StoreError::not_found(ObjectKind::GeneralSetting, name));
        };
        audit.push(AuditRow {
            action: AuditAction::Delete,
            kind: ObjectKind::GeneralSetting,
            id: name.clone(),
            before: Some(prev.clone()),
            after: None,
        });
        n += 1;
    }
    delete_where_in(conn, "general_settings", "name", names).await?;
    outcome.deleted(ObjectKind::GeneralSetting, n);
    Ok(n)
}

async fn delete_router_settings(
    conn: &mut Conn,
    audit: &mut Vec<AuditRow>,
    outcome: &mut ApplyOutcome,
) -> Result<()> {
    let Some(prev) = read_router_settings(conn).await? else {
        return Err(StoreError::not_found(
            ObjectKind::RouterSettings,
            ROUTER_SETTINGS_ID,
        ));
    };
    audit.push(AuditRow {
        action: AuditAction::Delete,
        kind: ObjectKind::RouterSettings,
        id: ROUTER_SETTINGS_ID.into(),
        before: Some(to_value(&prev)?),
        after: None,
    });
    delete_where_in(
        conn,
        "global_router_settings",
        "id",
        &[ROUTER_SETTINGS_ID.to_owned()],
    )
    .await?;
    outcome.deleted(ObjectKind::RouterSettings, 1);
    Ok(())
}

#[async_trait]
impl SettingsStore for This {
    async fn general_settings(&self) -> Result<BTreeMap<String, Value>> {
        let mut conn = self.read_conn().await?;
        read_general_settings(&mut conn).await
    }
    async fn put_general_setting(&self, actor: &Actor, name: &str, value: &Value) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let now = now();
        let mut audit = Vec::new();
        let one = BTreeMap::from([(name.to_owned(), value.clone())]);
        write_general_settings(&mut tx, &one, now, &mut audit, &mut ApplyOutcome::default())
            .await?;
        write_audit(&mut tx, actor, now, audit).await?;
        tx.commit().await.map_err(db_err)
    }
    async fn delete_general_setting(&self, actor: &Actor, name: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let mut audit = Vec::new();
        let names = [name.to_owned()];
        match delete_general_settings(&mut tx, &names, &mut audit, &mut ApplyOutcome::default())
            .await
        {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        write_audit(&mut tx, actor, now(), audit).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }
    async fn router_settings(&self) -> Result<Option<RouterSettings>> {
        let mut conn = self.read_conn().await?;
        read_router_settings(&mut conn).await
    }
    async fn put_router_settings(&self, actor: &Actor, settings: &RouterSettings) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let now = now();
        let mut audit = Vec::new();
        write_router_settings(
            &mut tx,
            settings,
            now,
            &mut audit,
            &mut ApplyOutcome::default(),
        )
        .await?;
        write_audit(&mut tx, actor, now, audit).await?;
        tx.commit().await.map_err(db_err)
    }
}

// ---------------------------------------------------------------------------------------
// Spend

pub(super) const SPEND_COLS: &[&str] = &[
    "request_id",
    "key_public_id",
    "team_id",
    "user_id",
    "organization_id",
    "model_group",
    "deployment_id",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "status",
    "start_time",
    "end_time",
];

fn spend_args(e: &SpendEntry) -> Result<Vec<Arg>> {
    Ok(vec![
        text(&e.request_id),
        opt_text(e.key_public_id.as_ref().map(PublicId::as_str)),
        opt_text(e.team_id.as_deref()),
        opt_text(e.user_id.as_deref()),
        opt_text(e.organization_id.as_deref()),
        text(&e.model_group),
        opt_text(e.deployment_id.as_deref()),
        count("prompt_tokens", Some(e.prompt_tokens))?,
        count("completion_tokens", Some(e.completion_tokens))?,
        count("total_tokens", Some(e.total_tokens()))?,
        money(Some(e.cost)),
        text(e.status.as_str()),
        Arg::Time(Some(crate::store::model::truncate_time(e.start_time))),
        Arg::Time(Some(crate::store::model::truncate_time(e.end_time))),
    ])
}

/// Rows per spend-log `INSERT`, largest first: a batch is cut into these fixed sizes so each
/// statement text is prepared once per connection and then reused, instead of parsing a new
/// multi-row statement (thousands of placeholders) for every batch.
const SPEND_INSERT_ROWS: [usize; 4] = [64, 16, 4, 1];

/// `INSERT OR FAIL INTO spend_logs (...) VALUES (...), ...` for `rows` rows (SQLite only).
///
/// `OR FAIL` rather than the default `ABORT`: on a duplicate request id, `ABORT` undoes the
/// statement's earlier rows itself, so SQLite first copies every page the statement changes
/// into a statement journal, for every statement. `FAIL` leaves those rows, and the caller
/// rolls the whole transaction back.
fn spend_insert_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<(usize, String)>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        SPEND_INSERT_ROWS
            .into_iter()
            .map(|n| {
                let mut qb = QueryBuilder::<Db>::new(format!(
                    "INSERT OR FAIL INTO spend_logs ({}) ",
                    SPEND_COLS.join(", ")
                ));
                qb.push_values(0..n, |mut b, _| {
                    for _ in SPEND_COLS {
                        b.push_bind(None::<i64>);
                    }
                });
                (n, qb.sql().to_owned())
            })
            .collect()
    });
    all.iter()
        .find(|(n, _)| *n == rows)
        .map(|(_, sql)| sql.as_str())
        .expect("a size of SPEND_INSERT_ROWS")
}

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

type SpendArgs<'q> = <Db as sqlx::Database>::Arguments<'q>;

/// Adds one spend row's values, in `SPEND_COLS` order.
fn bind_spend<'q>(args: &mut SpendArgs<'q>, e: &'q SpendEntry) -> Result<()> {
    use sqlx::Arguments;
    let count = db_count;
    let bound = |r: std::result::Result<(), sqlx::error::BoxDynError>| {
        r.map_err(|e| StoreError::invalid("spend log", e.to_string()))
    };
    bound(args.add(e.request_id.as_str()))?;
    bound(args.add(e.key_public_id.as_ref().map(PublicId::as_str)))?;
    bound(args.add(e.team_id.as_deref()))?;
    bound(args.add(e.user_id.as_deref()))?;
    bound(args.add(e.organization_id.as_deref()))?;
    bound(args.add(e.model_group.as_str()))?;
    bound(args.add(e.deployment_id.as_deref()))?;
    bound(args.add(count("prompt_tokens", e.prompt_tokens)?))?;
    bound(args.add(count("completion_tokens", e.completion_tokens)?))?;
    bound(args.add(count("total_tokens", e.total_tokens())?))?;
    bound(args.add(e.cost.nanos()))?;
    bound(args.add(e.status.as_str()))?;
    bound(args.add(crate::store::model::truncate_time(e.start_time)))?;
    bound(args.add(crate::store::model::truncate_time(e.end_time)))
}

/// Inserts spend rows with multi-row `INSERT`s cut into the fixed sizes of
/// [`SPEND_INSERT_ROWS`]. `Ok(false)`: a row's request id is stored already (rows before it
/// may be in the transaction: the caller must roll back).
#[allow(dead_code)] // PostgreSQL copies instead (its `dialect::insert_spend`)
pub(super) async fn insert_spend_values(conn: &mut Conn, rows: &[&SpendEntry]) -> Result<bool> {
    let mut rest = rows;
    while !rest.is_empty() {
        let n = SPEND_INSERT_ROWS
            .into_iter()
            .find(|&n| n <= rest.len())
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at(n);
        let mut args = SpendArgs::default();
        sqlx::Arguments::reserve(&mut args, n * SPEND_COLS.len(), 0);
        for e in chunk {
            bind_spend(&mut args, e)?;
        }
        match sqlx::query_with(spend_insert_sql(n), args)
            .execute(&mut *conn)
            .await
        {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(false),
            Err(e) => return Err(db_err(e)),
        }
        rest = tail;
    }
    Ok(true)
}

/// Adds the spend of `entries` to their keys', teams', users' and organizations' totals.
async fn add_spend_totals<'a>(
    conn: &mut Conn,
    entries: impl Iterator<Item = &'a SpendEntry>,
) -> Result<()> {
    let mut keys = BTreeMap::new();
    let mut teams = BTreeMap::new();
    let mut users = BTreeMap::new();
    let mut orgs = BTreeMap::new();
    let add = |map: &mut BTreeMap<String, i64>, id: Option<&str>, cost: i64| -> Result<()> {
        if let Some(id) = id {
            let total = map.entry(id.to_owned()).or_insert(0);
            *total = total
                .checked_add(cost)
                .ok_or_else(|| StoreError::invalid("cost", "sum overflows"))?;
        }
        Ok(())
    };
    for e in entries {
        let cost = e.cost.nanos();
        add(
            &mut keys,
            e.key_public_id.as_ref().map(PublicId::as_str),
            cost,
        )?;
        add(&mut teams, e.team_id.as_deref(), cost)?;
        add(&mut users, e.user_id.as_deref(), cost)?;
        add(&mut orgs, e.organization_id.as_deref(), cost)?;
    }
    // Fixed table order, like the lock order inside each table: no deadlock cycles.
    add_spend(&mut *conn, "virtual_keys", "public_id", &keys).await?;
    add_spend(&mut *conn, "teams", "team_id", &teams).await?;
    add_spend(&mut *conn, "users", "user_id", &users).await?;
    add_spend(&mut *conn, "organizations", "organization_id", &orgs).await?;
    Ok(())
}

impl This {
    /// `record_spend` when some rows may already be stored: inserts with `RETURNING` and counts
    /// only the rows that went in.
    async fn record_spend_skipping_known(
        &self,
        batch_len: usize,
        unique: &[&SpendEntry],
    ) -> Result<SpendOutcome> {
        let mut tx = self.begin_write().await?;
        let mut inserted: HashSet<String> = HashSet::new();
        for chunk in unique.chunks(rows_per_chunk(SPEND_COLS.len())) {
            let rows = chunk
                .iter()
                .map(|e| spend_args(e))
                .collect::<Result<Vec<_>>>()?;
            let mut qb = QueryBuilder::<Db>::new(format!(
                "INSERT INTO spend_logs ({}) ",
                SPEND_COLS.join(", ")
            ));
            qb.push_values(rows, |mut b, row| {
                for arg in row {
                    push_arg(&mut b, arg);
                }
            });
            qb.push(" ON CONFLICT (request_id) DO NOTHING RETURNING request_id");
            let ids: Vec<String> = qb
                .build_query_scalar()
                .persistent(false)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
            inserted.extend(ids);
        }
        add_spend_totals(
            &mut tx,
            unique
                .iter()
                .copied()
                .filter(|e| inserted.contains(&e.request_id)),
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(SpendOutcome {
            recorded: inserted.len(),
            duplicates: batch_len - inserted.len(),
        })
    }
}

fn decode_spend(row: &DbRow) -> Result<SpendEntry> {
    let key: Option<String> = col(row, "key_public_id")?;
    let status: String = col(row, "status")?;
    Ok(SpendEntry {
        request_id: col(row, "request_id")?,
        key_public_id: key
            .map(|k| PublicId::new(&k).map_err(|e| StoreError::corrupt("column key_public_id", e)))
            .transpose()?,
        team_id: col(row, "team_id")?,
        user_id: col(row, "user_id")?,
        organization_id: col(row, "organization_id")?,
        model_group: col(row, "model_group")?,
        deployment_id: col(row, "deployment_id")?,
        prompt_tokens: col_count(row, "prompt_tokens")?.unwrap_or_default(),
        completion_tokens: col_count(row, "completion_tokens")?.unwrap_or_default(),
        cost: Usd::from_nanos(col(row, "cost")?),
        status: SpendStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt("column status", status))?,
        start_time: col(row, "start_time")?,
        end_time: col(row, "end_time")?,
    })
}

/// Adds `deltas` to `table.spend` in one statement per chunk. On PostgreSQL the rows are
/// locked in id order first, so concurrent batches touching the same keys queue instead of
/// deadlocking; SQLite has a single writer and needs no locks.
async fn add_spend(
    conn: &mut Conn,
    table: &str,
    pk: &str,
    deltas: &BTreeMap<String, i64>,
) -> Result<()> {
    let deltas: Vec<(String, i64)> = deltas.iter().map(|(k, v)| (k.clone(), *v)).collect();
    for chunk in deltas.chunks(MAX_ROWS_PER_STATEMENT) {
        if dialect::LOCK_ROWS_FOR_SPEND {
            let mut qb =
                QueryBuilder::<Db>::new(format!("SELECT {pk} FROM {table} WHERE {pk} IN "));
            qb.push_tuples(chunk.iter().map(|(id, _)| id.clone()), |mut b, id| {
                b.push_bind(id);
            });
            qb.push(format_args!(" ORDER BY {pk}{}", dialect::FOR_UPDATE));
            qb.build()
                .persistent(false)
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
        }
        let mut qb = QueryBuilder::<Db>::new("WITH v (id, delta) AS (");
        qb.push_values(chunk.iter().cloned(), |mut b, (id, delta)| {
            b.push_bind(id);
            b.push_bind(delta);
        });
        qb.push(format_args!(
            ") UPDATE {table} SET spend = spend + (SELECT v.delta FROM v WHERE v.id = {table}.{pk}) \
             WHERE {pk} IN (SELECT id FROM v)"
        ));
        qb.build()
            .persistent(false)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// The first period end after `now`, stepping from `reset_at` by `duration`.
fn next_period_end(
    reset_at: DateTime<Utc>,
    duration: Option<&str>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let step = crate::store::model::parse_budget_duration(duration?)?.num_seconds();
    let behind = (now - reset_at).num_seconds().max(0);
    let periods = behind / step + 1;
    reset_at.checked_add_signed(chrono::Duration::seconds(step.checked_mul(periods)?))
}

/// Resets the due rows of one table, one statement per chunk (rows locked in id order on
/// PostgreSQL, like `add_spend`). Rows whose duration no longer parses stop resetting.
async fn reset_table(
    conn: &mut Conn,
    table: &str,
    pk: &str,
    has_spend: bool,
    now: DateTime<Utc>,
) -> Result<usize> {
    let sql = format!(
        "SELECT {pk}, budget_duration, budget_reset_at FROM {table} \
         WHERE budget_reset_at IS NOT NULL AND budget_reset_at <= $1 ORDER BY {pk}{}",
        dialect::FOR_UPDATE
    );
    let rows = sqlx::query(&sql)
        .bind(now)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    let mut due = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: String = col(row, pk)?;
        let duration: Option<String> = col(row, "budget_duration")?;
        let reset_at: DateTime<Utc> = col(row, "budget_reset_at")?;
        due.push((id, next_period_end(reset_at, duration.as_deref(), now)));
    }
    for chunk in due.chunks(MAX_ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Db>::new("WITH v (id, next_reset) AS (");
        qb.push_values(chunk.iter().cloned(), |mut b, (id, next)| {
            b.push_bind(id);
            b.push_bind(next);
        });
        let spend = if has_spend { "spend = 0, " } else { "" };
        qb.push(format_args!(
            ") UPDATE {table} SET {spend}budget_reset_at = \
             (SELECT v.next_reset FROM v WHERE v.id = {table}.{pk}) \
             WHERE {pk} IN (SELECT id FROM v)"
        ));
        qb.build()
            .persistent(false)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    Ok(due.len())
}

#[async_trait]
impl SpendStore for This {
    async fn delete_spend_logs_before(&self, cutoff: DateTime<Utc>, limit: u32) -> Result<u64> {
        let cutoff = crate::store::model::truncate_time(cutoff);
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "DELETE FROM spend_logs WHERE request_id IN \
             (SELECT request_id FROM spend_logs WHERE start_time < $1 LIMIT $2)",
        )
        .bind(cutoff)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn reset_due_budgets(&self, now: DateTime<Utc>) -> Result<usize> {
        let now = crate::store::model::truncate_time(now);
        let mut tx = self.begin_write().await?;
        let mut n = reset_table(&mut tx, "virtual_keys", "public_id", true, now).await?;
        n += reset_table(&mut tx, "teams", "team_id", true, now).await?;
        n += reset_table(&mut tx, "users", "user_id", true, now).await?;
        n += reset_table(&mut tx, "budgets", "budget_id", false, now).await?;
        if n > 0 {
            // Other instances hold the old spend in their key caches.
            bump_change_version(&mut tx).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(n)
    }

    async fn record_spend(&self, batch: &[SpendEntry]) -> Result<SpendOutcome> {
        // Request ids are the gateway's own UUIDs or an import's: no adversary picks them, so
        // the fast hasher (this runs once per row on the spend path).
        let mut seen =
            HashSet::with_capacity_and_hasher(batch.len(), foldhash::fast::RandomState::default());
        let mut unique = Vec::with_capacity(batch.len());
        for (i, e) in batch.iter().enumerate() {
            e.validate()
                .map_err(|err| in_object(ObjectKind::SpendLog, &i.to_string(), err))?;
            if seen.insert(e.request_id.as_str()) {
                unique.push(e);
            }
        }
        if unique.is_empty() {
            return Ok(SpendOutcome {
                recorded: 0,
                duplicates: batch.len(),
            });
        }
        // The common case: no row is in the store yet. Plain inserts (no conflict clause: the
        // database checks the key once, as it inserts; see `dialect::insert_spend`); if a row
        // turns out to be there already (a batch retried after a commit whose answer was
        // lost), undo and take the path that learns which ones.
        let mut tx = self.begin_write().await?;
        if !dialect::insert_spend(&mut tx, &unique).await? {
            tx.rollback().await.map_err(db_err)?;
            return self.record_spend_skipping_known(batch.len(), &unique).await;
        }
        add_spend_totals(&mut tx, unique.iter().copied()).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(SpendOutcome {
            recorded: unique.len(),
            duplicates: batch.len() - unique.len(),
        })
    }

    async fn spend_logs(&self, filter: &SpendLogFilter, page: Page) -> Result<Paged<SpendEntry>> {
        let (limit, offset) = page.validate()?;
        let push_where = |qb: &mut QueryBuilder<'static, Db>| {
            push_eq(
                qb,
                "key_public_id",
                filter.key_public_id.as_ref().map(PublicId::as_str),
            );
            push_eq(qb, "team_id", filter.team_id.as_deref());
            push_eq(qb, "user_id", filter.user_id.as_deref());
            push_eq(qb, "model_group", filter.model_group.as_deref());
            if let Some(since) = filter.since {
                qb.push(" AND start_time >= ");
                qb.push_bind(crate::store::model::truncate_time(since));
            }
            if let Some(until) = filter.until {
                qb.push(" AND start_time < ");
                qb.push_bind(crate::store::model::truncate_time(until));
            }
        };
        let mut conn = self.read_conn().await?;
        let mut qb = QueryBuilder::<Db>::new("SELECT COUNT(*) FROM spend_logs WHERE 1=1");
        push_where(&mut qb);
        let total: i64 = qb
            .build_query_scalar()
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)?;
        let mut qb = QueryBuilder::<Db>::new(format!(
            "SELECT {} FROM spend_logs WHERE 1=1",
            SPEND_COLS.join(", ")
        ));
        push_where(&mut qb);
        qb.push(format_args!(
            " ORDER BY start_time DESC, request_id{} LIMIT ",
            dialect::COLLATE
        ));
        qb.push_bind(limit);
        qb.push(" OFFSET ");
        qb.push_bind(offset);
        let rows = qb
            .build()
            .persistent(false)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
        Ok(Paged {
            items: rows.iter().map(decode_spend).collect::<Result<_>>()?,
            total: u64::try_from(total).unwrap_or_default(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Audit log

#[async_trait]
impl AuditStore for This {
    async fn change_version(&self) -> Result<i64> {
        let mut conn = self.read_conn().await?;
        sqlx::query_scalar("SELECT version FROM change_version WHERE id = 1")
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)
    }

    async fn audit_log(&self, filter: &AuditFilter, page: Page) -> Result<Paged<AuditEntry>> {
        let (limit, offset) = page.validate()?;
        let push_where = |qb: &mut QueryBuilder<'static, Db>| {
            push_eq(
                qb,
                "object_kind",
                filter.object_kind.map(ObjectKind::as_str),
            );
            push_eq(qb, "object_id", filter.object_id.as_deref());
            push_eq(qb, "actor", filter.actor.as_deref());
        };
        let mut conn = self.read_conn().await?;
        let mut qb = QueryBuilder::<Db>::new("SELECT COUNT(*) FROM audit_log WHERE 1=1");
        push_where(&mut qb);
        let total: i64 = qb
            .build_query_scalar()
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)?;
        let mut qb = QueryBuilder::<Db>::new(
            "SELECT id, at, actor, action, object_kind, object_id, before_json, after_json \
             FROM audit_log WHERE 1=1",
        );
        push_where(&mut qb);
        qb.push(" ORDER BY id DESC LIMIT ");
        qb.push_bind(limit);
        qb.push(" OFFSET ");
        qb.push_bind(offset);
        let rows = qb
            .build()
            .persistent(false)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: col(r, "id")?,
                    at: col(r, "at")?,
                    actor: col(r, "actor")?,
                    action: col(r, "action")?,
                    object_kind: col(r, "object_kind")?,
                    object_id: col(r, "object_id")?,
                    before: col_opt_json(r, "before_json")?,
                    after: col_opt_json(r, "after_json")?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Paged {
            items,
            total: u64::try_from(total).unwrap_or_default(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Whole state

fn ids_of(ids: &[String]) -> HashSet<String> {
    ids.iter().cloned().collect()
}

#[async_trait]
impl StateStore for This {
    async fn read_state(&self) -> Result<StateSnapshot> {
        let mut tx = self.begin_snapshot().await?;
        let snapshot = StateSnapshot {
            general_settings: read_general_settings(&mut tx).await?,
            router_settings: read_router_settings(&mut tx).await?,
            budgets: fetch_all(&mut tx).await?,
            credentials: fetch_all::<StoredCredential>(&mut tx)
                .await?
                .iter()
                .map(StoredCredential::public)
                .collect(),
            models: fetch_all(&mut tx).await?,
            organizations: fetch_all(&mut tx).await?,
            users: fetch_all(&mut tx).await?,
            teams: fetch_all(&mut tx).await?,
            keys: fetch_all(&mut tx).await?,
            access_groups: fetch_all(&mut tx).await?,
            tags: fetch_all(&mut tx).await?,
        };
        tx.commit().await.map_err(db_err)?;
        Ok(snapshot)
    }

    async fn apply_state(&self, actor: &Actor, changes: &StateChanges) -> Result<ApplyOutcome> {
        let (up, del) = (&changes.upsert, &changes.delete);
        let mut tx = self.begin_write().await?;
        // References are checked once at the end (check_all_references), so rows may arrive
        // in any order: a key may move off a team deleted by the same import.
        sqlx::query(dialect::DEFER_FOREIGN_KEYS)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let now = now();
        let mut outcome = ApplyOutcome::default();
        let mut audit = Vec::new();

        // Deletes first, children before parents, so replaced aliases are free again.
        let key_ids: Vec<String> = del.keys.iter().map(|k| k.as_str().to_owned()).collect();
        delete_many::<KeyRecord>(&mut tx, &key_ids, &mut outcome, &mut audit).await?;
        delete_many::<Team>(&mut tx, &del.teams, &mut outcome, &mut audit).await?;
        delete_many::<User>(&mut tx, &del.users, &mut outcome, &mut audit).await?;
        delete_many::<Organization>(&mut tx, &del.organizations, &mut outcome, &mut audit).await?;
        delete_many::<RuntimeModel>(&mut tx, &del.models, &mut outcome, &mut audit).await?;
        delete_many::<StoredCredential>(&mut tx, &del.credentials, &mut outcome, &mut audit)
            .await?;
        delete_many::<Budget>(&mut tx, &del.budgets, &mut outcome, &mut audit).await?;
        delete_many::<Tag>(&mut tx, &del.tags, &mut outcome, &mut audit).await?;
        delete_many::<AccessGroup>(&mut tx, &del.access_groups, &mut outcome, &mut audit).await?;
        delete_general_settings(&mut tx, &del.general_settings, &mut audit, &mut outcome).await?;
        if del.router_settings {
            delete_router_settings(&mut tx, &mut audit, &mut outcome).await?;
        }

        // Then upserts, parents before children.
        write_general_settings(&mut tx, &up.general_settings, now, &mut audit, &mut outcome)
            .await?;
        if let Some(settings) = &up.router_settings {
            write_router_settings(&mut tx, settings, now, &mut audit, &mut outcome).await?;
        }
        upsert_many::<Budget>(&mut tx, actor, now, &up.budgets, &mut outcome, &mut audit).await?;
        let credentials = sealed_upserts(&mut tx, self.cipher(), &up.credentials).await?;
        upsert_many::<StoredCredential>(
            &mut tx,
            actor,
            now,
            &credentials,
            &mut outcome,
            &mut audit,
        )
        .await?;
        upsert_many::<RuntimeModel>(&mut tx, actor, now, &up.models, &mut outcome, &mut audit)
            .await?;
        upsert_many::<Organization>(
            &mut tx,
            actor,
            now,
            &up.organizations,
            &mut outcome,
            &mut audit,
        )
        .await?;
        upsert_many::<User>(&mut tx, actor, now, &up.users, &mut outcome, &mut audit).await?;
        upsert_many::<Team>(&mut tx, actor, now, &up.teams, &mut outcome, &mut audit).await?;
        upsert_many::<KeyRecord>(&mut tx, actor, now, &up.keys, &mut outcome, &mut audit).await?;
        upsert_many::<AccessGroup>(
            &mut tx,
            actor,
            now,
            &up.access_groups,
            &mut outcome,
            &mut audit,
        )
        .await?;
        upsert_many::<Tag>(&mut tx, actor, now, &up.tags, &mut outcome, &mut audit).await?;

        let deleted = HashMap::from([
            (ObjectKind::Team, ids_of(&del.teams)),
            (ObjectKind::User, ids_of(&del.users)),
            (ObjectKind::Organization, ids_of(&del.organizations)),
            (ObjectKind::Credential, ids_of(&del.credentials)),
            (ObjectKind::Budget, ids_of(&del.budgets)),
        ]);
        check_all_references(&mut tx, &deleted).await?;
        write_audit(&mut tx, actor, now, audit).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(outcome)
    }
}

/// Seals imported credential values; `values: None` keeps the stored ones.
async fn sealed_upserts(
    conn: &mut Conn,
    cipher: Option<&SecretCipher>,
    upserts: &[CredentialUpsert],
) -> Result<Vec<SealedCredential>> {
    let keep: Vec<String> = upserts
        .iter()
        .filter(|c| c.values.is_none())
        .map(|c| c.credential_name.clone())
        .collect();
    let existing = if keep.is_empty() {
        HashMap::new()
    } else {
        fetch_many::<StoredCredential>(conn, &keep).await?
    };
    upserts
        .iter()
        .map(|c| {
            let name = &c.credential_name;
            validate_credential(name, c.values.as_ref())
                .map_err(|e| in_object(ObjectKind::Credential, name, e))?;
            let (value_names, sealed_values) = match &c.values {
                Some(values) => seal_values(cipher, name, values)?,
                None => {
                    let prev = existing.get(name).ok_or_else(|| {
                        StoreError::invalid(
                            format!("credential[{name:?}].values"),
                            "no values given and no stored credential to keep them from",
                        )
                    })?;
                    (
                        prev.spec.value_names.clone(),
                        prev.spec.sealed_values.clone(),
                    )
                }
            };
            Ok(SealedCredential {
                credential_name: name.clone(),
                credential_info: c.credential_info.clone(),
                value_names,
                sealed_values,
            })
        })
        .collect()
}
