//! SQLite: one writer connection (SQLite allows one writer; several writer connections only
//! trade in "database is locked"), a pool of readers, WAL and a busy timeout; the dialect
//! pieces, among them the rotation batcher that group-commits refresh rotations.

use crate::dialect::Dialect;
use crate::{PoolOptions, map_err};
use gatehouse_domain::Timestamp;
use gatehouse_domain::model::{NewToken, Session};
use gatehouse_domain::ports::{StoreError, StoreResult};
use rows::{SESSION_COLS, session_row};
use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

// The shared SQL (see `dialect`), compiled for this backend: each file sees `Adapter`.
type Adapter = SqliteStore;
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

/// The embedded store.
#[derive(Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    rotations: mpsc::Sender<Rotate>,
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
            crate::migrate::sqlite(&mut conn).await?;
        }
        let read = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.clamp(1, 8))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(base.read_only(true))
            .await
            .map_err(map_err)?;
        let (rotations, queue) = mpsc::channel(1024);
        tokio::spawn(rotation_batcher(write.clone(), queue));
        Ok(Self {
            write,
            read,
            rotations,
        })
    }
}

impl Dialect for SqliteStore {
    type Db = sqlx::Sqlite;

    const NAME: &'static str = "sqlite";

    const ROLES_AGG: &'static str = "group_concat(role, ',')";
    const LOCK_ROWS: &'static str = "";
    const SKIP_LOCKED: &'static str = "";

    /// A login's writes as one batch of statements (one hand-off to the writer's thread);
    /// parameters as in `commit_login`.
    const LOGIN_WRITES: &'static str = "\
        INSERT INTO auth_session (id, account_id, status, auth_methods, ip, user_agent, \
          created_at, last_seen_at, expires_at, workspace_id, branch_id) \
          VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10); \
        INSERT INTO session_token (hash, session_id, kind, status, created_at, expires_at) \
          VALUES ($11, $1, $12, 'ACTIVE', $7, $13); \
        UPDATE account SET last_login_at = $7 WHERE id = $2; \
        UPDATE credential SET last_used_at = $7 WHERE account_id = $2 AND type = 'PASSWORD'; \
        INSERT INTO audit_event (id, at, actor_id, action, target_id, outcome, reason, ip, \
          user_agent, request_id, details) \
          VALUES ($14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)";

    /// The single writer connection.
    fn writer(&self) -> &SqlitePool {
        &self.write
    }

    /// The read-only pool.
    fn reader(&self) -> &SqlitePool {
        &self.read
    }

    /// SQLite has one writer, and every statement through sqlx is a hand-off to the
    /// connection's thread, so rotations are group-committed: whatever queued while the
    /// previous batch ran goes into one transaction as one batch of statements.
    async fn rotate_fast(
        &self,
        now: Timestamp,
        old_hash: &[u8],
        new: &NewToken,
    ) -> StoreResult<Option<Session>> {
        let (reply, answer) = oneshot::channel();
        let job = Rotate {
            now: now.millis(),
            old_hash: old_hash.to_vec(),
            new_hash: new.hash.clone(),
            new_expires: new.expires_at.millis(),
            reply,
        };
        let stopped = || StoreError::Unavailable("the rotation writer stopped".into());
        self.rotations.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A refresh rotation waiting for the writer.
struct Rotate {
    now: i64,
    old_hash: Vec<u8>,
    new_hash: Vec<u8>,
    new_expires: i64,
    reply: oneshot::Sender<StoreResult<Option<Session>>>,
}

/// Rotations committed together at most.
const MAX_BATCH: usize = 32;

/// Runs queued rotations in batches until the store is dropped.
async fn rotation_batcher(write: SqlitePool, mut queue: mpsc::Receiver<Rotate>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match rotate_batch(&write, &batch).await {
            Ok(found) => {
                for (job, session) in batch.drain(..).zip(found) {
                    let _ = job.reply.send(Ok(session));
                }
            }
            Err(e) => {
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One transaction, one batch of statements: per rotation, the conditional update, an
/// insert that `changes()` makes depend on it, and the session touch; then one select of
/// the sessions whose successor token now exists. All or nothing: on error no token of
/// the batch is spent.
async fn rotate_batch(write: &SqlitePool, batch: &[Rotate]) -> StoreResult<Vec<Option<Session>>> {
    let mut sql = String::new();
    let mut fresh = Vec::with_capacity(batch.len());
    for i in 0..batch.len() {
        let (now, old, new, exp) = (4 * i + 1, 4 * i + 2, 4 * i + 3, 4 * i + 4);
        sql.push_str(&format!(
            "UPDATE session_token SET status = 'ROTATED', used_at = ${now} \
             WHERE hash = ${old} AND kind = 'REFRESH' AND status = 'ACTIVE' AND expires_at > ${now} \
               AND EXISTS (SELECT 1 FROM auth_session s WHERE s.id = session_token.session_id \
                           AND s.status = 'ACTIVE' AND s.expires_at > ${now}); \
             INSERT INTO session_token (hash, session_id, kind, status, created_at, expires_at) \
               SELECT ${new}, s.id, 'REFRESH', 'ACTIVE', ${now}, MIN(${exp}, s.expires_at) \
               FROM session_token t JOIN auth_session s ON s.id = t.session_id \
               WHERE t.hash = ${old} AND changes() = 1; \
             UPDATE auth_session SET last_seen_at = ${now} \
               WHERE id = (SELECT session_id FROM session_token WHERE hash = ${new}); "
        ));
        fresh.push(format!("${new}"));
    }
    sql.push_str(&format!(
        "SELECT {SESSION_COLS}, t.hash AS new_hash FROM session_token t \
         JOIN auth_session s ON s.id = t.session_id WHERE t.hash IN ({})",
        fresh.join(", ")
    ));
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for job in batch {
        q = q
            .bind(job.now)
            .bind(job.old_hash.as_slice())
            .bind(job.new_hash.as_slice())
            .bind(job.new_expires);
    }
    let mut tx = write.begin().await.map_err(map_err)?;
    let rows = q.fetch_all(&mut *tx).await.map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    let mut found: Vec<Option<Session>> = batch.iter().map(|_| None).collect();
    for row in &rows {
        let hash: Vec<u8> = row.try_get("new_hash").map_err(map_err)?;
        if let Some(i) = batch.iter().position(|j| j.new_hash == hash) {
            found[i] = Some(session_row(row).map_err(map_err)?);
        }
    }
    Ok(found)
}
