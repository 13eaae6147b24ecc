//! [`PatStore`]: personal access tokens, by the SHA-256 of their text.

use super::Adapter;
use super::common::{DbRow, insert_audit};
use super::rows::ts;
use crate::dialect::Dialect;
use crate::map_err;
use async_trait::async_trait;
use gatehouse_domain::model::{AuditEvent, PersonalAccessToken};
use gatehouse_domain::ports::{PatStore, StoreResult};
use gatehouse_domain::{Id, Timestamp};
use sqlx::Row as _;

const PAT_COLS: &str = "id, account_id, name, scopes, workspace_id, branch_id, created_at, \
     expires_at, last_used_at, last_used_ip, revoked_at";

/// A token selected with [`PAT_COLS`]; unreadable scopes read as none granted (fail closed).
fn pat_row(row: &DbRow) -> Result<PersonalAccessToken, sqlx::Error> {
    let scopes: Option<String> = row.try_get("scopes")?;
    Ok(PersonalAccessToken {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        scopes: scopes.map(|s| serde_json::from_str(&s).unwrap_or_default()),
        workspace_id: row.try_get("workspace_id")?,
        branch_id: row.try_get("branch_id")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        expires_at: ts(row.try_get("expires_at")?),
        last_used_at: ts(row.try_get("last_used_at")?),
        last_used_ip: row.try_get("last_used_ip")?,
        revoked_at: ts(row.try_get("revoked_at")?),
    })
}

#[async_trait]
impl PatStore for Adapter {
    async fn create_pat(
        &self,
        pat: &PersonalAccessToken,
        hash: &[u8],
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let scopes = pat
            .scopes
            .as_ref()
            .map(|s| serde_json::Value::from(s.clone()).to_string());
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO personal_access_token (id, account_id, token_hash, name, scopes, \
             workspace_id, branch_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(pat.id)
        .bind(pat.account_id)
        .bind(hash)
        .bind(&pat.name)
        .bind(scopes)
        .bind(pat.workspace_id)
        .bind(pat.branch_id)
        .bind(pat.created_at.millis())
        .bind(pat.expires_at.map(Timestamp::millis))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn pat_by_hash(&self, hash: &[u8]) -> StoreResult<Option<PersonalAccessToken>> {
        let sql = format!("SELECT {PAT_COLS} FROM personal_access_token WHERE token_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .fetch_optional(self.reader())
            .await
            .map_err(map_err)?;
        row.as_ref().map(pat_row).transpose().map_err(map_err)
    }

    async fn list_pats(&self, account_id: Id) -> StoreResult<Vec<PersonalAccessToken>> {
        let sql = format!(
            "SELECT {PAT_COLS} FROM personal_access_token \
             WHERE account_id = $1 AND revoked_at IS NULL \
             ORDER BY created_at DESC, id DESC LIMIT 500"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .fetch_all(self.reader())
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(pat_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn revoke_pat(
        &self,
        account_id: Id,
        id: Id,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done = sqlx::query(
            "UPDATE personal_access_token SET revoked_at = $1 \
             WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL",
        )
        .bind(now.millis())
        .bind(id)
        .bind(account_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn touch_pat(
        &self,
        id: Id,
        now: Timestamp,
        ip: Option<&str>,
        min_gap_ms: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE personal_access_token SET last_used_at = $1, last_used_ip = $2 \
             WHERE id = $3 AND (last_used_at IS NULL OR last_used_at <= $4)",
        )
        .bind(now.millis())
        .bind(ip)
        .bind(id)
        .bind(now.millis().saturating_sub(min_gap_ms))
        .execute(self.writer())
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }
}
