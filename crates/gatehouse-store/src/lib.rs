//! Gatehouse store adapters: the domain's store ports on SQLite and on PostgreSQL.
//!
//! - `sqlite.rs`, `postgres.rs`: each backend's connection set-up and its [`dialect`]
//!   pieces (the one-trip login writes, the refresh rotation fast path: SQLite's
//!   group-committing writer, PostgreSQL's single statement).
//! - `sql/`: the SQL both backends share, one file per port (`accounts.rs`, `sessions.rs`,
//!   …) plus the row mappers (`rows.rs`) and what the ports share (`common.rs`). These files
//!   are not a module of their own: each backend includes them, so they are compiled once
//!   per backend against its concrete driver; `dialect.rs` explains how.
//! - `migrate.rs`: the embedded migrations, run through sqlx's migrator.

mod dialect;
mod migrate;
#[allow(
    clippy::duplicate_mod,
    reason = "both backends include the shared files of sql/, once each (see `dialect`)"
)]
mod postgres;
#[allow(
    clippy::duplicate_mod,
    reason = "both backends include the shared files of sql/, once each (see `dialect`)"
)]
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
///
/// `StoreError` carries a message at most, so nothing the message could hold is dropped:
/// a database error keeps its code, constraint and table next to the driver's text (which
/// has neither), and `Conflict`, which carries nothing, logs which constraint it was. Row
/// values (PostgreSQL's "detail") are left out on purpose: they may hold secrets.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            tracing::debug!(
                constraint = d.constraint(),
                table = d.table(),
                "unique violation: {}",
                d.message()
            );
            StoreError::Conflict
        }
        sqlx::Error::Database(d) => {
            let message = describe(d.as_ref());
            if is_transient(d.as_ref()) {
                StoreError::Unavailable(message)
            } else {
                StoreError::Other(message)
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

/// Whether a database error means "try again later": PostgreSQL classes 08 (connection),
/// 53 (resources), 57 (operator intervention, e.g. shutdown); SQLite BUSY and LOCKED (5, 6),
/// which sqlx reports as extended codes (e.g. 517, BUSY_SNAPSHOT), so only the primary code
/// in the low byte counts.
fn is_transient(d: &dyn sqlx::error::DatabaseError) -> bool {
    let code = d.code().unwrap_or_default();
    if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(5 | 6))
    } else {
        code.starts_with("08") || code.starts_with("53") || code.starts_with("57")
    }
}

/// The driver's message with what its `Display` leaves out: the code, and the constraint
/// and table when the database names them.
fn describe(d: &dyn sqlx::error::DatabaseError) -> String {
    let mut out = format!("error returned from database: {d}");
    if let Some(code) = d.code() {
        out.push_str(&format!(" (code {code}"));
        if let Some(constraint) = d.constraint() {
            out.push_str(&format!(", constraint {constraint}"));
        }
        if let Some(table) = d.table() {
            out.push_str(&format!(", table {table}"));
        }
        out.push(')');
    }
    out
}
