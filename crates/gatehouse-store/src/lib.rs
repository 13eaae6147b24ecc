//! Gatehouse store adapters. One SQL implementation ([`sql`]) is generated for SQLite and
//! for PostgreSQL; only connection set-up and a few dialect fragments differ.

mod migrate;
mod postgres;
mod sql;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use gatehouse_domain::ports::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// Pool settings (`[database]`).
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// Opens the store named by `url` (`sqlite:PATH` or `postgres://…`) and applies migrations.
/// An unknown scheme is an error, never a silent SQLite file.
pub async fn connect(url: &str, opts: &PoolOptions) -> Result<Arc<dyn Store>, StoreError> {
    let store: Arc<dyn Store> = match scheme(url) {
        Some(Backend::Sqlite) => Arc::new(SqliteStore::connect(url, opts).await?),
        Some(Backend::Postgres) => Arc::new(PgStore::connect(url, opts).await?),
        None => {
            return Err(StoreError::Other(
                "database.url must start with sqlite: or postgres:// (postgresql://)".into(),
            ));
        }
    };
    Ok(store)
}

/// Which adapter a URL selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backend a URL names, if any.
pub fn scheme(url: &str) -> Option<Backend> {
    if url.starts_with("sqlite:") {
        Some(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(Backend::Postgres)
    } else {
        None
    }
}

/// Maps a driver error. Connection trouble is `Unavailable` (503, retried by clients);
/// unique violations are `Conflict`; the rest is `Other` (logged, 500).
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Database(d) => {
            // PostgreSQL classes 08 (connection), 53 (resources), 57 (operator intervention,
            // e.g. shutdown); SQLite BUSY/LOCKED (5, 6).
            let code = d.code().unwrap_or_default();
            let transient = code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || code == "5"
                || code == "6";
            if transient {
                StoreError::Unavailable(e.to_string())
            } else {
                StoreError::Other(e.to_string())
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Other(e.to_string()),
    }
}
