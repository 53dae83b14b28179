//! PostgreSQL backend, for production and for several gateway instances sharing one store.
//! The SQL itself is shared with SQLite in `sql.rs`; this file owns connecting, the pool and
//! PostgreSQL's dialect. Tables live in the connection's `search_path`, so a deployment (or
//! a test) can put them in a schema of its own.

use std::fmt;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPool;
use sqlx::Connection;

use super::{Backend, SecretCipher, Store, StoreError, StoreOptions};

type Db = sqlx::Postgres;
type This = PgStore;

#[allow(clippy::duplicate_mod)] // sql.rs is deliberately compiled once per backend
#[path = "sql.rs"]
mod sql;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// What PostgreSQL does differently from SQLite.
mod dialect {
    use sqlx::error::DatabaseError;
    use sqlx::postgres::PgDatabaseError;

    /// Byte order, as SQLite sorts: exports must not depend on the server's locale.
    pub const COLLATE: &str = " COLLATE \"C\"";
    pub const FOR_UPDATE: &str = " FOR UPDATE";
    pub const LOCK_ROWS_FOR_SPEND: bool = true;
    /// Foreign keys are declared `DEFERRABLE INITIALLY IMMEDIATE`: checked per statement,
    /// except inside an import, which defers them to commit.
    pub const DEFER_FOREIGN_KEYS: &str = "SET CONSTRAINTS ALL DEFERRED";
    /// PostgreSQL allows 65535 bound parameters per statement.
    pub const MAX_BINDS: usize = 60_000;
    pub const MIGRATIONS_TABLE_EXISTS: &str = "SELECT to_regclass('_sqlx_migrations') IS NOT NULL";

    /// Constraint `virtual_keys_key_alias_key` on `virtual_keys` → `(virtual_keys, key_alias)`;
    /// `teams_pkey` → `(teams, "")`, the primary key.
    pub fn unique_columns(e: &dyn DatabaseError) -> Option<(String, String)> {
        let table = e.table()?;
        let constraint = e.constraint()?;
        let rest = constraint.strip_prefix(table)?.strip_prefix('_')?;
        let column = if rest == "pkey" {
            ""
        } else {
            rest.strip_suffix("_key")?
        };
        Some((table.to_owned(), column.to_owned()))
    }

    /// Spend rows: one `COPY ... FROM STDIN` in binary format per batch. The server does about
    /// half the work it does for the same rows as multi-row `INSERT`s (no statement, no
    /// per-row expression evaluation), and binary saves it parsing numbers and timestamps from
    /// text (about a seventh of its time per row, measured); the request path's CPU is shared
    /// with it on a small machine. `Ok(false)` when a row's request id is stored already (the
    /// copy fails whole).
    pub async fn insert_spend(
        conn: &mut sqlx::PgConnection,
        rows: &[&crate::store::SpendEntry],
    ) -> Result<bool, crate::store::StoreError> {
        use std::sync::OnceLock;
        static STATEMENT: OnceLock<String> = OnceLock::new();
        let statement = STATEMENT.get_or_init(|| {
            format!(
                "COPY spend_logs ({}) FROM STDIN (FORMAT binary)",
                super::sql::SPEND_COLS.join(", ")
            )
        });
        let data = copy_binary(rows)?;
        let copied = async {
            let mut copy = conn.copy_in_raw(statement).await?;
            copy.send(data).await?;
            copy.finish().await
        };
        match copied.await {
            Ok(_) => Ok(true),
            Err(e) if super::sql::is_unique_violation(&e) => Ok(false),
            Err(e) => Err(super::sql::db_err(e)),
        }
    }

    /// `rows` as a whole `COPY ... (FORMAT binary)` stream: signature, flags and header
    /// extension length, then per row the field count and each field as a big-endian length
    /// (-1 for NULL) and its bytes, then the -1 trailer. Columns in `SPEND_COLS` order.
    fn copy_binary(
        rows: &[&crate::store::SpendEntry],
    ) -> Result<Vec<u8>, crate::store::StoreError> {
        const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
        let count = super::sql::db_count;
        let fields = i16::try_from(super::sql::SPEND_COLS.len()).unwrap_or(i16::MAX);
        let mut out = Vec::with_capacity(19 + rows.len() * 256);
        out.extend_from_slice(SIGNATURE);
        out.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        out.extend_from_slice(&0i32.to_be_bytes()); // header extension: none
        for e in rows {
            out.extend_from_slice(&fields.to_be_bytes());
            for t in [
                Some(e.request_id.as_str()),
                e.key_public_id.as_ref().map(|k| k.as_str()),
                e.team_id.as_deref(),
                e.user_id.as_deref(),
                e.organization_id.as_deref(),
                Some(e.model_group.as_str()),
                e.deployment_id.as_deref(),
            ] {
                copy_text(&mut out, t)?;
            }
            for n in [
                count("prompt_tokens", e.prompt_tokens)?,
                count("completion_tokens", e.completion_tokens)?,
                count("total_tokens", e.total_tokens())?,
                e.cost.nanos(),
            ] {
                copy_i64(&mut out, n);
            }
            copy_text(&mut out, Some(e.status.as_str()))?;
            for t in [e.start_time, e.end_time] {
                copy_i64(&mut out, pg_timestamp(t));
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        Ok(out)
    }

    /// A `text` field of a binary `COPY` row (or NULL).
    fn copy_text(out: &mut Vec<u8>, t: Option<&str>) -> Result<(), crate::store::StoreError> {
        match t {
            Some(t) => {
                let len = i32::try_from(t.len())
                    .map_err(|_| crate::store::StoreError::invalid("spend log", "text too long"))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(t.as_bytes());
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        Ok(())
    }

    /// An 8-byte field (`bigint`, `timestamptz`) of a binary `COPY` row.
    fn copy_i64(out: &mut Vec<u8>, n: i64) {
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&n.to_be_bytes());
    }

    /// A `timestamptz` on the wire: microseconds since 2000-01-01 00:00:00 UTC, truncated to
    /// whole microseconds as every stored time is (`truncate_time`).
    fn pg_timestamp(t: chrono::DateTime<chrono::Utc>) -> i64 {
        /// 2000-01-01T00:00:00Z in Unix microseconds.
        const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
        t.timestamp_micros() - PG_EPOCH_UNIX_MICROS
    }

    /// `Key (key_alias)=(prod) already exists.` → `prod`.
    pub fn violation_value(e: &dyn DatabaseError) -> Option<String> {
        let detail = e.try_downcast_ref::<PgDatabaseError>()?.detail()?;
        let start = detail.find(")=(")? + 3;
        let end = detail.rfind(") ")?;
        (start <= end).then(|| detail[start..end].to_owned())
    }
}

/// The PostgreSQL store. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    cipher: Option<SecretCipher>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("cipher", &self.cipher.is_some())
            .finish()
    }
}

impl PgStore {
    /// Connects to `url` and migrates the database.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let pool =
            super::pool_options::<Db>(options.max_connections.max(1), options.acquire_timeout)
                .connect(url)
                .await
                .map_err(|e| match e {
                    // The message could quote the URL, password included.
                    sqlx::Error::Configuration(_) => {
                        StoreError::invalid("DATABASE_URL", "not a valid PostgreSQL URL")
                    }
                    other => sql::db_err(other),
                })?;
        Self::open(pool, options).await
    }

    /// Uses an existing pool and migrates it. Refuses a schema newer than this binary.
    pub async fn open(pool: PgPool, options: StoreOptions) -> Result<Self, StoreError> {
        sql::migrate(&pool, &MIGRATOR).await?;
        Ok(PgStore {
            pool,
            cipher: options.cipher,
        })
    }

    /// The pool, for tools and tests that need raw SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Newest migration this binary knows.
    pub fn schema_version() -> i64 {
        MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
    }

    fn cipher(&self) -> Option<&SecretCipher> {
        self.cipher.as_ref()
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        self.pool.begin().await.map_err(sql::db_err)
    }

    /// One snapshot for a whole export: every table as of the same moment.
    async fn begin_snapshot(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(sql::db_err)
    }

    async fn read_conn(&self) -> Result<sqlx::pool::PoolConnection<Db>, StoreError> {
        self.pool.acquire().await.map_err(sql::db_err)
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.read_conn().await?;
        conn.ping().await.map_err(sql::db_err)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
