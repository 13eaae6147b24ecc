//! [`SessionStore`]: sessions and their refresh / web tokens. The two hot paths go through
//! the dialect: a login's writes in one trip ([`Dialect::LOGIN_WRITES`]) and the common case
//! of a refresh rotation ([`Dialect::rotate_fast`]).

use super::Adapter;
use super::common::{insert_audit, revoke_sessions_tx};
use super::rows::{SESSION_COLS, session_row};
use crate::dialect::Dialect;
use crate::map_err;
use async_trait::async_trait;
use gatehouse_domain::model::{
    AuditEvent, LoginCommit, NewToken, Page, Paged, RefreshPolicy, Rotation, Session, SessionStatus,
};
use gatehouse_domain::ports::{SessionStore, StoreResult};
use gatehouse_domain::{Id, Timestamp};
use sqlx::Row as _;
use uuid::Uuid;

#[async_trait]
impl SessionStore for Adapter {
    async fn commit_login(&self, c: &LoginCommit) -> StoreResult<Vec<Id>> {
        let s = &c.session;
        let now = s.created_at;
        let methods = serde_json::to_string(&s.auth_methods).unwrap_or_else(|_| "[]".into());
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let revoked = if c.revoke_others {
            revoke_sessions_tx(&mut tx, s.account_id, None, now)
                .await
                .map_err(map_err)?
        } else {
            Vec::new()
        };
        if let Some(hash) = &c.rehash {
            sqlx::query(
                "UPDATE credential SET secret = $1, updated_at = $2 WHERE account_id = $3 AND type = 'PASSWORD'",
            )
            .bind(hash)
            .bind(now.millis())
            .bind(s.account_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        // Session, token, last-login stamps and the audit row in one trip (the
        // dialect's `LOGIN_WRITES`: a statement batch on SQLite, one statement of
        // writable CTEs on PostgreSQL), same parameters for both.
        let a = &c.audit;
        sqlx::query(Adapter::LOGIN_WRITES)
            .bind(s.id)
            .bind(s.account_id)
            .bind(s.status.as_str())
            .bind(methods)
            .bind(&s.ip)
            .bind(&s.user_agent)
            .bind(now.millis())
            .bind(s.expires_at.millis())
            .bind(s.workspace_id)
            .bind(s.branch_id)
            .bind(&c.token.hash)
            .bind(c.token_kind.as_str())
            .bind(c.token.expires_at.min(s.expires_at).millis())
            .bind(a.id)
            .bind(a.at.millis())
            .bind(a.actor_id)
            .bind(&a.action)
            .bind(a.target_id)
            .bind(&a.outcome)
            .bind(&a.reason)
            .bind(&a.ip)
            .bind(&a.user_agent)
            .bind(&a.request_id)
            .bind(a.details.to_string())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(revoked)
    }

    async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        new: &NewToken,
        policy: RefreshPolicy,
    ) -> StoreResult<Rotation> {
        let now = policy.now.millis();
        // The common case, in as few trips to the database as the dialect allows
        // (`rotate_fast`): the token is ACTIVE and unexpired and its session ACTIVE
        // and unexpired -> spent, successor stored, session touched. Anything else
        // changed nothing there and is classified below.
        if let Some(session) = self.rotate_fast(policy.now, old_hash, new).await? {
            return Ok(Rotation::Rotated(Session {
                last_seen_at: policy.now,
                ..session
            }));
        }
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let token = sqlx::query(
            "SELECT session_id, status, expires_at FROM session_token WHERE hash = $1 AND kind = 'REFRESH'",
        )
        .bind(old_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some(token) = token else {
            return Ok(Rotation::Unknown);
        };
        let session_id: Uuid = token.try_get("session_id").map_err(map_err)?;
        let token_status: String = token.try_get("status").map_err(map_err)?;
        let token_expires: i64 = token.try_get("expires_at").map_err(map_err)?;
        let sql = format!("SELECT {SESSION_COLS} FROM auth_session s WHERE s.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(session_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let session = session_row(&row).map_err(map_err)?;
        if session.status != SessionStatus::Active || token_status == "REVOKED" {
            return Ok(Rotation::Revoked);
        }
        // The conditional update is the arbiter: of two racing rotations only one
        // sees the token ACTIVE; the loser is treated as reuse.
        let spent = if token_status == "ACTIVE"
            && token_expires > now
            && session.expires_at.millis() > now
        {
            sqlx::query(
                "UPDATE session_token SET status = 'ROTATED', used_at = $1 WHERE hash = $2 AND status = 'ACTIVE'",
            )
            .bind(now)
            .bind(old_hash)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected()
                == 1
        } else if token_status == "ACTIVE" {
            return Ok(Rotation::Expired);
        } else {
            false
        };
        if !spent {
            sqlx::query("UPDATE auth_session SET status = 'REVOKED', revoked_at = $1 WHERE id = $2 AND status = 'ACTIVE'")
                .bind(now)
                .bind(session_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            sqlx::query("UPDATE session_token SET status = 'REVOKED' WHERE session_id = $1 AND status = 'ACTIVE'")
                .bind(session_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            return Ok(Rotation::Reused {
                session_id,
                account_id: session.account_id,
            });
        }
        sqlx::query(
            "INSERT INTO session_token (hash, session_id, kind, status, created_at, expires_at) \
             VALUES ($1, $2, 'REFRESH', 'ACTIVE', $3, $4)",
        )
        .bind(&new.hash)
        .bind(session_id)
        .bind(now)
        .bind(new.expires_at.min(session.expires_at).millis())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query("UPDATE auth_session SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(session_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Rotation::Rotated(Session {
            last_seen_at: policy.now,
            ..session
        }))
    }

    async fn session_by_id(&self, id: Id) -> StoreResult<Option<Session>> {
        let sql = format!("SELECT {SESSION_COLS} FROM auth_session s WHERE s.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await
            .map_err(map_err)?;
        row.as_ref().map(session_row).transpose().map_err(map_err)
    }

    async fn session_by_refresh_token(&self, hash: &[u8]) -> StoreResult<Option<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLS} FROM session_token t JOIN auth_session s ON s.id = t.session_id \
             WHERE t.hash = $1 AND t.kind = 'REFRESH'"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .fetch_optional(self.reader())
            .await
            .map_err(map_err)?;
        row.as_ref().map(session_row).transpose().map_err(map_err)
    }

    async fn session_by_web_token(
        &self,
        hash: &[u8],
        now: Timestamp,
    ) -> StoreResult<Option<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLS} FROM session_token t JOIN auth_session s ON s.id = t.session_id \
             WHERE t.hash = $1 AND t.kind = 'WEB' AND t.status = 'ACTIVE' AND s.status = 'ACTIVE' \
             AND t.expires_at > $2 AND s.expires_at > $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .bind(now.millis())
            .fetch_optional(self.reader())
            .await
            .map_err(map_err)?;
        row.as_ref().map(session_row).transpose().map_err(map_err)
    }

    async fn touch_session(&self, id: Id, now: Timestamp, min_gap_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE auth_session SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $3",
        )
        .bind(now.millis())
        .bind(id)
        .bind(now.millis() - min_gap_ms)
        .execute(self.writer())
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn active_sessions(&self, account_id: Id, now: Timestamp) -> StoreResult<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLS} FROM auth_session s WHERE s.account_id = $1 AND s.status = 'ACTIVE' \
             AND s.expires_at > $2 ORDER BY s.created_at DESC LIMIT 500"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(now.millis())
            .fetch_all(self.reader())
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(session_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn list_sessions(
        &self,
        account_id: Option<Id>,
        page: Page,
    ) -> StoreResult<Paged<Session>> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM auth_session s WHERE ($1 IS NULL OR s.account_id = $1)",
        )
        .bind(account_id)
        .fetch_one(self.reader())
        .await
        .map_err(map_err)?;
        let sql = format!(
            "SELECT {SESSION_COLS} FROM auth_session s WHERE ($1 IS NULL OR s.account_id = $1) \
             ORDER BY s.created_at DESC LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(i64::from(page.page_size))
            .bind(page.offset())
            .fetch_all(self.reader())
            .await
            .map_err(map_err)?;
        let items = rows
            .iter()
            .map(session_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn revoked_since(&self, since: Timestamp) -> StoreResult<Vec<(Id, Timestamp)>> {
        let rows = sqlx::query(
            "SELECT id, revoked_at FROM auth_session WHERE revoked_at >= $1 ORDER BY revoked_at, id",
        )
        .bind(since.millis())
        .fetch_all(self.reader())
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                let at: i64 = r.try_get("revoked_at")?;
                Ok((r.try_get("id")?, Timestamp::from_millis(at)))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    async fn denied_tokens(&self, now: Timestamp) -> StoreResult<Vec<(String, Timestamp)>> {
        let rows = sqlx::query(
            "SELECT jti, expires_at FROM denied_access_token WHERE expires_at > $1 ORDER BY expires_at, jti",
        )
        .bind(now.millis())
        .fetch_all(self.reader())
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                let at: i64 = r.try_get("expires_at")?;
                Ok((r.try_get("jti")?, Timestamp::from_millis(at)))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    async fn revoke_session(
        &self,
        id: Id,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done = sqlx::query("UPDATE auth_session SET status = 'REVOKED', revoked_at = $1 WHERE id = $2 AND status = 'ACTIVE'")
            .bind(now.millis())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query("UPDATE session_token SET status = 'REVOKED' WHERE session_id = $1 AND status = 'ACTIVE'")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_account_sessions(
        &self,
        account_id: Id,
        keep: Option<Id>,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Vec<Id>> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let ids = revoke_sessions_tx(&mut tx, account_id, keep, now)
            .await
            .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(ids)
    }

    async fn count_sessions(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM auth_session")
            .fetch_one(self.reader())
            .await
            .map_err(map_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
