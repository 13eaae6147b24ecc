//! [`PatStore`] and [`ApiKeyStore`]: personal access tokens by the SHA-256 of their text;
//! service accounts and their API keys by access key, with the SHA-256 of the secret.

use super::Adapter;
use super::common::{Db, DbRow, Tx, insert_audit};
use super::rows::{account_cols, account_row, ts};
use crate::dialect::Dialect;
use crate::map_err;
use async_trait::async_trait;
use gatehouse_domain::model::{
    Account, ApiKey, AuditEvent, Page, Paged, PersonalAccessToken, Status,
};
use gatehouse_domain::ports::{ApiKeyStore, PatStore, StoreResult};
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

/// Records a credential's use (time and IP) in `table`, at most once per `min_gap_ms`;
/// `true` if this call wrote it.
async fn touch_last_used(
    pool: &sqlx::Pool<Db>,
    table: &'static str,
    id: Id,
    now: Timestamp,
    ip: Option<&str>,
    min_gap_ms: i64,
) -> StoreResult<bool> {
    let sql = format!(
        "UPDATE {table} SET last_used_at = $1, last_used_ip = $2 \
         WHERE id = $3 AND (last_used_at IS NULL OR last_used_at <= $4)"
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now.millis())
        .bind(ip)
        .bind(id)
        .bind(now.millis().saturating_sub(min_gap_ms))
        .execute(pool)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected() == 1)
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
    ) -> StoreResult<Option<Vec<u8>>> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let hash: Option<Vec<u8>> = sqlx::query_scalar(
            "UPDATE personal_access_token SET revoked_at = $1 \
             WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL RETURNING token_hash",
        )
        .bind(now.millis())
        .bind(id)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        if hash.is_none() {
            return Ok(None);
        }
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(hash)
    }

    async fn touch_pat(
        &self,
        id: Id,
        now: Timestamp,
        ip: Option<&str>,
        min_gap_ms: i64,
    ) -> StoreResult<bool> {
        touch_last_used(
            self.writer(),
            "personal_access_token",
            id,
            now,
            ip,
            min_gap_ms,
        )
        .await
    }
}

const KEY_COLS: &str = "id, account_id, name, access_key, scopes, status, created_at, expires_at, \
     last_used_at, last_used_ip, rotated_at";

/// A key selected with [`KEY_COLS`]; unreadable scopes read as none granted (fail closed).
fn key_row(row: &DbRow) -> Result<ApiKey, sqlx::Error> {
    let scopes: Option<String> = row.try_get("scopes")?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        access_key: row.try_get("access_key")?,
        scopes: scopes.map(|s| serde_json::from_str(&s).unwrap_or_default()),
        status: Status::from_db(&row.try_get::<String, _>("status")?),
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        expires_at: ts(row.try_get("expires_at")?),
        last_used_at: ts(row.try_get("last_used_at")?),
        last_used_ip: row.try_get("last_used_ip")?,
        rotated_at: ts(row.try_get("rotated_at")?),
    })
}

impl Adapter {
    async fn key_in(tx: &mut Tx<'_>, id: Id) -> Result<Option<ApiKey>, sqlx::Error> {
        let sql = format!("SELECT {KEY_COLS} FROM api_key WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(key_row).transpose()
    }
}

#[async_trait]
impl ApiKeyStore for Adapter {
    async fn list_service_accounts(&self, page: Page) -> StoreResult<Paged<Account>> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM account WHERE kind = 'SERVICE'")
            .fetch_one(self.reader())
            .await
            .map_err(map_err)?;
        let cols = account_cols();
        let sql = format!(
            "SELECT {cols} FROM account a WHERE a.kind = 'SERVICE' \
             ORDER BY a.created_at, a.id LIMIT $1 OFFSET $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(page.page_size))
            .bind(page.offset())
            .fetch_all(self.reader())
            .await
            .map_err(map_err)?;
        let items = rows
            .iter()
            .map(account_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn delete_service_account(&self, id: Id, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done = sqlx::query("DELETE FROM account WHERE id = $1 AND kind = 'SERVICE'")
            .bind(id)
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

    async fn create_api_key(
        &self,
        key: &ApiKey,
        secret_hash: &[u8],
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let scopes = key
            .scopes
            .as_ref()
            .map(|s| serde_json::Value::from(s.clone()).to_string());
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO api_key (id, account_id, access_key, secret_hash, name, scopes, status, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(key.id)
        .bind(key.account_id)
        .bind(&key.access_key)
        .bind(secret_hash)
        .bind(&key.name)
        .bind(scopes)
        .bind(key.status.as_str())
        .bind(key.created_at.millis())
        .bind(key.expires_at.map(Timestamp::millis))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn api_key_by_access_key(
        &self,
        access_key: &str,
    ) -> StoreResult<Option<(ApiKey, Vec<u8>)>> {
        let sql = format!("SELECT {KEY_COLS}, secret_hash FROM api_key WHERE access_key = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(access_key)
            .fetch_optional(self.reader())
            .await
            .map_err(map_err)?;
        row.as_ref()
            .map(|r| Ok::<_, sqlx::Error>((key_row(r)?, r.try_get("secret_hash")?)))
            .transpose()
            .map_err(map_err)
    }

    async fn api_key_by_id(&self, id: Id) -> StoreResult<Option<ApiKey>> {
        let sql = format!("SELECT {KEY_COLS} FROM api_key WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await
            .map_err(map_err)?;
        row.as_ref().map(key_row).transpose().map_err(map_err)
    }

    async fn list_api_keys(
        &self,
        account_id: Option<Id>,
        page: Page,
    ) -> StoreResult<Paged<ApiKey>> {
        let filter = "($1 IS NULL OR account_id = $1)";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM api_key WHERE {filter}"
        )))
        .bind(account_id)
        .fetch_one(self.reader())
        .await
        .map_err(map_err)?;
        let sql = format!(
            "SELECT {KEY_COLS} FROM api_key WHERE {filter} \
             ORDER BY created_at, id LIMIT $2 OFFSET $3"
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
            .map(key_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn set_api_key_status(
        &self,
        id: Id,
        status: Status,
        audit: &AuditEvent,
    ) -> StoreResult<Option<ApiKey>> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done = sqlx::query("UPDATE api_key SET status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        let key = Self::key_in(&mut tx, id).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(key)
    }

    async fn rotate_api_key(
        &self,
        id: Id,
        secret_hash: &[u8],
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Option<ApiKey>> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done =
            sqlx::query("UPDATE api_key SET secret_hash = $1, rotated_at = $2 WHERE id = $3")
                .bind(secret_hash)
                .bind(now.millis())
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        let key = Self::key_in(&mut tx, id).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(key)
    }

    async fn delete_api_key(&self, id: Id, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done = sqlx::query("DELETE FROM api_key WHERE id = $1")
            .bind(id)
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

    async fn touch_api_key(
        &self,
        id: Id,
        now: Timestamp,
        ip: Option<&str>,
        min_gap_ms: i64,
    ) -> StoreResult<bool> {
        touch_last_used(self.writer(), "api_key", id, now, ip, min_gap_ms).await
    }
}
