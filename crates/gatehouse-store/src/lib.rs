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

#[cfg(test)]
mod tests {
    //! `map_err` on real SQLite errors.

    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
    use sqlx::{Connection as _, Executor as _};
    use std::str::FromStr as _;

    async fn open(path: &std::path::Path) -> SqliteConnection {
        let options = SqliteConnectOptions::from_str(&format!("sqlite:{}", path.display()))
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::ZERO);
        SqliteConnection::connect_with(&options).await.unwrap()
    }

    #[tokio::test]
    async fn sqlite_errors_keep_their_class_and_code() {
        let dir = std::env::temp_dir().join(format!("gh_map_err_{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let mut a = open(&path).await;
        let mut b = open(&path).await;
        a.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .await
            .unwrap();

        let unique = a.execute("INSERT INTO t VALUES (1, 'x'), (1, 'y')").await;
        assert!(matches!(map_err(unique.unwrap_err()), StoreError::Conflict));

        // SQLITE_CONSTRAINT_NOTNULL, an extended code: the code is in the message.
        let not_null = a.execute("INSERT INTO t VALUES (2, NULL)").await;
        match map_err(not_null.unwrap_err()) {
            StoreError::Other(m) => assert!(m.contains("(code 1299"), "{m}"),
            other => panic!("{other:?}"),
        }

        // SQLITE_BUSY_SNAPSHOT (517): `b` read a snapshot that `a` has since written past,
        // so `b` cannot write in that transaction. Transient: try again later.
        b.execute("BEGIN").await.unwrap();
        b.execute("SELECT COUNT(*) FROM t").await.unwrap();
        a.execute("INSERT INTO t VALUES (3, 'z')").await.unwrap();
        let busy = b.execute("INSERT INTO t VALUES (4, 'w')").await;
        match map_err(busy.unwrap_err()) {
            StoreError::Unavailable(m) => assert!(m.contains("(code 517"), "{m}"),
            other => panic!("{other:?}"),
        }

        b.close().await.unwrap();
        a.close().await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
