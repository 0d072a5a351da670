//! Persistence of accounts, sessions and projects over SQLite or PostgreSQL.
//!
//! [`Store`] is an enum over the two pools; every query is written once with `$N`
//! placeholders (which both backends accept) and dispatched by [`on_pool!`]. Timestamps
//! are Unix milliseconds and secrets are stored only as SHA-256 hashes. Every
//! tenant-scoped method takes the owner's [`UserId`] first, so no caller can forget the
//! tenant filter.

mod accounts;
mod login_failures;
mod projects;

pub use accounts::{NewUser, UserId, UserRecord};
pub use projects::{NewProject, ProjectRecord, SettingsOverrides};

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// Runs `$body` with `$pool` bound to whichever pool the store holds. Both arms must
/// produce the same type, so row decoding and result inspection happen inside `$body`.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write (e.g. an email already registered).
    #[error("a record with this unique value already exists")]
    Conflict,
    /// A stored value cannot be decoded (a bug or a hand-edited database).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The database failed or is unreachable.
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Database(error),
        }
    }
}

/// The database: a cheap-to-clone handle over a connection pool.
#[derive(Clone, Debug)]
pub enum Store {
    /// Embedded single-file database (the default).
    Sqlite(SqlitePool),
    /// Shared database for several nodes.
    Postgres(PgPool),
}

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`). For SQLite the file and its
    /// folder are created if missing, and every commit is fsynced (WAL with
    /// `synchronous=FULL`) so an acknowledged write survives a crash or power loss.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .context("parsing the SQLite database URL")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            if let Some(parent) = options.get_filename().parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).with_context(|| {
                        format!("creating the database folder {}", parent.display())
                    })?;
                }
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await
                .context("opening the SQLite database")?;
            Ok(Self::Sqlite(pool))
        } else {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await
                .context("connecting to PostgreSQL")?;
            Ok(Self::Postgres(pool))
        }
    }

    /// Applies the backend's pending migrations (`migrations/sqlite` or
    /// `migrations/postgres`, embedded in the binary).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await,
            Self::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
        }
        .context("applying database migrations")
    }

    /// Which backend this is, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Answers when the database does (readiness probe).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned (used at shutdown).
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// Converts a stored integer to `u32`, refusing values a bug or hand edit could leave.
pub(crate) fn to_u32(value: i64, column: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} = {value}")))
}
