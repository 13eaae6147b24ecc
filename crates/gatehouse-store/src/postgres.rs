//! PostgreSQL: a pool with bounded size and acquire timeout; migrations under an advisory
//! lock so instances starting together do not race.

use crate::{PoolOptions, map_err};
use gatehouse_domain::ports::StoreError;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// The scale-out store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// Arbitrary key for `pg_advisory_lock` around migrations.
const MIGRATION_LOCK: i64 = 0x6761_7465_686f;

impl PgStore {
    /// Connects and migrates.
    pub async fn connect(url: &str, opts: &PoolOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .connect(url)
            .await
            .map_err(map_err)?;
        {
            let mut conn = pool.acquire().await.map_err(map_err)?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
            let applied = crate::migrate::apply!(conn, crate::migrate::POSTGRES);
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
            applied?;
        }
        Ok(Self { pool })
    }

    fn w(&self) -> &PgPool {
        &self.pool
    }

    fn r(&self) -> &PgPool {
        &self.pool
    }
}

crate::sql::sql_store!(PgStore, sqlx::Postgres, "postgres", "string_agg(role, ',')");
