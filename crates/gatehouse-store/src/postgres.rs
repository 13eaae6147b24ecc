//! PostgreSQL: a pool with bounded size and acquire timeout; migrations (see `migrate`) on a
//! connection of their own under an advisory lock.

use crate::dialect::Dialect;
use crate::{PoolOptions, map_err};
use gatehouse_domain::Timestamp;
use gatehouse_domain::model::{NewToken, Session};
use gatehouse_domain::ports::{StoreError, StoreResult};
use rows::{SESSION_COLS, session_row};
use sqlx::Connection as _;
use sqlx::postgres::{PgPool, PgPoolOptions};

// The shared SQL (see `dialect`), compiled for this backend: each file sees `Adapter`.
type Adapter = PgStore;
#[path = "sql/accounts.rs"]
mod accounts;
#[path = "sql/audit.rs"]
mod audit;
#[path = "sql/common.rs"]
mod common;
#[path = "sql/credentials.rs"]
mod credentials;
#[path = "sql/keys.rs"]
mod keys;
#[path = "sql/mail.rs"]
mod mail;
#[path = "sql/mfa.rs"]
mod mfa;
#[path = "sql/rows.rs"]
mod rows;
#[path = "sql/sessions.rs"]
mod sessions;
#[path = "sql/settings.rs"]
mod settings;
#[path = "sql/sso.rs"]
mod sso;
#[path = "sql/tenancy.rs"]
mod tenancy;
#[path = "sql/tokens.rs"]
mod tokens;

/// The scale-out store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and migrates.
    pub async fn connect(url: &str, opts: &PoolOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .connect(url)
            .await
            .map_err(map_err)?;
        // A connection of its own, closed afterwards: ending its session is what releases
        // the migration lock should the explicit unlock fail.
        let mut conn = pool.acquire().await.map_err(map_err)?.detach();
        let migrated = crate::migrate::postgres(&mut conn).await;
        if let Err(e) = conn.close().await {
            tracing::debug!(error = %e, "closing the migration connection");
        }
        migrated?;
        Ok(Self { pool })
    }
}

/// Spends an ACTIVE, unexpired refresh token of an ACTIVE, unexpired session, stores its
/// successor and touches the session, in one statement (writable CTEs): one round trip,
/// atomic without an explicit transaction. Of two racing rotations the second waits on the
/// token's row lock, then finds it ROTATED and gets nothing. `None`: nothing was changed.
const ROTATE_FAST: &str = "WITH spent AS ( \
       UPDATE session_token t SET status = 'ROTATED', used_at = $1 FROM auth_session s \
       WHERE t.hash = $2 AND t.kind = 'REFRESH' AND t.status = 'ACTIVE' AND t.expires_at > $1 \
         AND s.id = t.session_id AND s.status = 'ACTIVE' AND s.expires_at > $1 \
       RETURNING t.session_id, s.expires_at AS session_expires), \
     fresh AS ( \
       INSERT INTO session_token (hash, session_id, kind, status, created_at, expires_at) \
       SELECT $3, session_id, 'REFRESH', 'ACTIVE', $1, LEAST($4, session_expires) FROM spent \
       RETURNING session_id), \
     seen AS ( \
       UPDATE auth_session SET last_seen_at = $1 WHERE id IN (SELECT session_id FROM fresh)) \
     SELECT {cols} FROM auth_session s WHERE s.id IN (SELECT session_id FROM fresh)";

impl Dialect for PgStore {
    type Db = sqlx::Postgres;

    const NAME: &'static str = "postgres";

    const ROLES_AGG: &'static str = "string_agg(role, ',')";
    const LOCK_ROWS: &'static str = " FOR UPDATE";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";

    /// A login's writes as one statement (writable CTEs; the token's foreign key is checked at
    /// the end of the statement, after the session row exists); parameters as in
    /// `commit_login`.
    const LOGIN_WRITES: &'static str = "\
        WITH s AS ( \
          INSERT INTO auth_session (id, account_id, status, auth_methods, ip, user_agent, \
            created_at, last_seen_at, expires_at, workspace_id, branch_id) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10)), \
        t AS ( \
          INSERT INTO session_token (hash, session_id, kind, status, created_at, expires_at) \
            VALUES ($11, $1, $12, 'ACTIVE', $7, $13)), \
        a AS (UPDATE account SET last_login_at = $7 WHERE id = $2), \
        c AS (UPDATE credential SET last_used_at = $7 WHERE account_id = $2 AND type = 'PASSWORD') \
        INSERT INTO audit_event (id, at, actor_id, action, target_id, outcome, reason, ip, \
          user_agent, request_id, details) \
          VALUES ($14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)";

    /// Reads and writes share the pool.
    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    async fn rotate_fast(
        &self,
        now: Timestamp,
        old_hash: &[u8],
        new: &NewToken,
    ) -> StoreResult<Option<Session>> {
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| ROTATE_FAST.replace("{cols}", SESSION_COLS));
        let row = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
            .bind(now.millis())
            .bind(old_hash)
            .bind(&new.hash)
            .bind(new.expires_at.millis())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(session_row).transpose().map_err(map_err)
    }
}
