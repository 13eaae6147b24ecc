//! SQLite: one writer connection (SQLite allows one writer; several writer connections only
//! trade in "database is locked"), a pool of readers, WAL and a busy timeout.

use crate::{PoolOptions, map_err};
use gatehouse_domain::ports::StoreError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

/// The embedded store.
#[derive(Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating file and folder if needed) and migrates `sqlite:PATH`.
    pub async fn connect(url: &str, opts: &PoolOptions) -> Result<Self, StoreError> {
        let path = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let path = path.split('?').next().unwrap_or(path);
        if path != ":memory:"
            && let Some(dir) = std::path::Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", dir.display())))?;
        }
        let base = SqliteConnectOptions::from_str(url)
            .map_err(map_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            .statement_cache_capacity(256);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(base.clone())
            .await
            .map_err(map_err)?;
        {
            let mut conn = write.acquire().await.map_err(map_err)?;
            crate::migrate::apply!(conn, crate::migrate::SQLITE)?;
        }
        let read = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.clamp(1, 8))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(base.read_only(true))
            .await
            .map_err(map_err)?;
        Ok(Self { write, read })
    }

    fn w(&self) -> &SqlitePool {
        &self.write
    }

    fn r(&self) -> &SqlitePool {
        &self.read
    }
}

crate::sql::sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    "sqlite",
    "group_concat(role, ',')"
);
