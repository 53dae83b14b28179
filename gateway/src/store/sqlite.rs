//! SQLite backend, the embedded default: a file (`sqlite://switchyard.db`, created if
//! missing, WAL) or an in-memory database (`sqlite::memory:`) for tests and drills. The SQL
//! itself is shared with PostgreSQL in `sql.rs`; this file owns connecting, the pools and
//! SQLite's dialect.
//!
//! Writes go through a one-connection pool: SQLite allows one writer at a time anyway, and
//! queueing in the pool is cheaper and fairer than retrying on `SQLITE_BUSY`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};

use super::{Backend, SecretCipher, Store, StoreError, StoreOptions};

type Db = sqlx::Sqlite;
type This = SqliteStore;

#[allow(clippy::duplicate_mod)] // sql.rs is deliberately compiled once per backend
#[path = "sql.rs"]
mod sql;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a writer waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What SQLite does differently from PostgreSQL.
mod dialect {
    use sqlx::error::DatabaseError;

    /// SQLite's default collation is already byte order.
    pub const COLLATE: &str = "";
    /// One writer at a time: no row locks needed (or available).
    pub const FOR_UPDATE: &str = "";
    pub const LOCK_ROWS_FOR_SPEND: bool = false;
    /// Until the end of the current transaction.
    pub const DEFER_FOREIGN_KEYS: &str = "PRAGMA defer_foreign_keys = ON";
    /// SQLite allows 32766 bound parameters per statement.
    pub const MAX_BINDS: usize = 30_000;
    pub const MIGRATIONS_TABLE_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM sqlite_master \
         WHERE type = 'table' AND name = '_sqlx_migrations')";

    /// `UNIQUE constraint failed: virtual_keys.key_alias` → `(virtual_keys, key_alias)`.
    pub fn unique_columns(e: &dyn DatabaseError) -> Option<(String, String)> {
        let cols = e.message().split_once("constraint failed: ")?.1;
        let first = cols.split(", ").next()?;
        let (table, column) = first.split_once('.')?;
        Some((table.to_owned(), column.to_owned()))
    }

    /// Spend rows: multi-row `INSERT`s of fixed sizes, each prepared once per connection.
    /// `Ok(false)` when a row's request id is stored already.
    pub async fn insert_spend(
        conn: &mut sqlx::SqliteConnection,
        rows: &[&crate::store::SpendEntry],
    ) -> Result<bool, crate::store::StoreError> {
        super::sql::insert_spend_values(conn, rows).await
    }

    /// SQLite does not report the offending value.
    pub fn violation_value(_: &dyn DatabaseError) -> Option<String> {
        None
    }
}

/// The SQLite store. Cheap to clone (pools are shared).
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    cipher: Option<SecretCipher>,
    /// An in-memory database lives as long as its last connection; this one is never used
    /// and never closed, so pool connections may come and go without losing the data.
    keeper: Option<Arc<tokio::sync::Mutex<SqliteConnection>>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("in_memory", &self.keeper.is_some())
            .field("cipher", &self.cipher.is_some())
            .finish()
    }
}

fn is_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and migrates it.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|_| StoreError::invalid("DATABASE_URL", "not a valid SQLite URL"))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = |max: u32| super::pool_options::<Db>(max, options.acquire_timeout);
        if is_memory(url) {
            let keeper = connect.connect().await.map_err(sql::db_err)?;
            let writer = pool(1).connect_with(connect).await.map_err(sql::db_err)?;
            let mut store = Self::open(writer, options).await?;
            store.keeper = Some(Arc::new(tokio::sync::Mutex::new(keeper)));
            Ok(store)
        } else {
            let connect = connect
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            let writer = pool(1)
                .connect_with(connect.clone())
                .await
                .map_err(sql::db_err)?;
            sql::migrate(&writer, &MIGRATOR).await?;
            let reader = pool(options.max_connections.max(1))
                .connect_with(connect)
                .await
                .map_err(sql::db_err)?;
            Ok(SqliteStore {
                writer,
                reader,
                cipher: options.cipher,
                keeper: None,
            })
        }
    }

    /// Uses an existing pool for reads and writes (give it one connection for an in-memory
    /// database) and migrates it. Refuses a schema newer than this binary.
    pub async fn open(pool: SqlitePool, options: StoreOptions) -> Result<Self, StoreError> {
        sql::migrate(&pool, &MIGRATOR).await?;
        Ok(SqliteStore {
            writer: pool.clone(),
            reader: pool,
            cipher: options.cipher,
            keeper: None,
        })
    }

    /// The write pool, for tools and tests that need raw SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// Newest migration this binary knows.
    pub fn schema_version() -> i64 {
        MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
    }

    fn cipher(&self) -> Option<&SecretCipher> {
        self.cipher.as_ref()
    }

    /// `BEGIN IMMEDIATE` takes the write lock up front, so a transaction never fails halfway
    /// on a lock upgrade when another process writes too.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sql::db_err)
    }

    /// A read transaction: in WAL mode its first read fixes the snapshot.
    async fn begin_snapshot(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        self.reader.begin().await.map_err(sql::db_err)
    }

    async fn read_conn(&self) -> Result<sqlx::pool::PoolConnection<Db>, StoreError> {
        self.reader.acquire().await.map_err(sql::db_err)
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.read_conn().await?;
        conn.ping().await.map_err(sql::db_err)
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}
