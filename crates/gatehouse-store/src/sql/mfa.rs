//! [`MfaStore`]: second factors (the TOTP secret, recovery codes, trusted devices), all
//! rows of `credential` but the devices.

use super::Adapter;
use super::common::{Tx, insert_audit};
use super::rows::{device_row, totp_row};
use crate::dialect::Dialect;
use crate::map_err;
use async_trait::async_trait;
use gatehouse_domain::model::{AuditEvent, TotpCredential, TrustedDevice};
use gatehouse_domain::ports::{MfaStore, StoreResult};
use gatehouse_domain::{Id, Timestamp};

/// Replaces the account's recovery codes (all of them, used or not) by `hashes`.
async fn insert_recovery_codes(
    tx: &mut Tx<'_>,
    account_id: Id,
    hashes: &[String],
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM credential WHERE account_id = $1 AND type = 'RECOVERY_CODE'")
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    for hash in hashes {
        sqlx::query(
            "INSERT INTO credential (id, account_id, type, secret, status, created_at, updated_at) \
             VALUES ($1, $2, 'RECOVERY_CODE', $3, 'ACTIVE', $4, $4)",
        )
        .bind(gatehouse_domain::ids::new_id())
        .bind(account_id)
        .bind(hash)
        .bind(now.millis())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl MfaStore for Adapter {
    async fn totp(&self, account_id: Id) -> StoreResult<Option<TotpCredential>> {
        let row = sqlx::query(
            "SELECT id, account_id, secret, status, last_used_step, created_at FROM credential \
             WHERE account_id = $1 AND type = 'TOTP'",
        )
        .bind(account_id)
        .fetch_optional(self.reader())
        .await
        .map_err(map_err)?;
        row.as_ref().map(totp_row).transpose().map_err(map_err)
    }

    async fn put_pending_totp(
        &self,
        account_id: Id,
        secret: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO credential (id, account_id, type, secret, status, created_at, updated_at) \
             VALUES ($1, $2, 'TOTP', $3, 'PENDING', $4, $4) \
             ON CONFLICT (account_id) WHERE type = 'TOTP' \
             DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at, \
             updated_at = excluded.updated_at, last_used_step = NULL \
             WHERE credential.status = 'PENDING'",
        )
        .bind(gatehouse_domain::ids::new_id())
        .bind(account_id)
        .bind(secret)
        .bind(now.millis())
        .execute(self.writer())
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn confirm_totp(
        &self,
        account_id: Id,
        step: i64,
        recovery_hashes: &[String],
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done = sqlx::query(
            "UPDATE credential SET status = 'ACTIVE', last_used_step = $1, last_used_at = $2, updated_at = $2 \
             WHERE account_id = $3 AND type = 'TOTP' AND status = 'PENDING'",
        )
        .bind(step)
        .bind(now.millis())
        .bind(account_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_recovery_codes(&mut tx, account_id, recovery_hashes, now)
            .await
            .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn use_totp_step(&self, account_id: Id, step: i64, now: Timestamp) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE credential SET last_used_step = $1, last_used_at = $2 \
             WHERE account_id = $3 AND type = 'TOTP' AND status = 'ACTIVE' \
             AND (last_used_step IS NULL OR last_used_step < $1)",
        )
        .bind(step)
        .bind(now.millis())
        .bind(account_id)
        .execute(self.writer())
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn replace_recovery_codes(
        &self,
        account_id: Id,
        hashes: &[String],
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        insert_recovery_codes(&mut tx, account_id, hashes, now)
            .await
            .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn use_recovery_code(
        &self,
        account_id: Id,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE credential SET status = 'USED', last_used_at = $1, updated_at = $1 \
             WHERE account_id = $2 AND type = 'RECOVERY_CODE' AND secret = $3 AND status = 'ACTIVE'",
        )
        .bind(now.millis())
        .bind(account_id)
        .bind(hash)
        .execute(self.writer())
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn recovery_codes_left(&self, account_id: Id) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM credential WHERE account_id = $1 AND type = 'RECOVERY_CODE' AND status = 'ACTIVE'",
        )
        .bind(account_id)
        .fetch_one(self.reader())
        .await
        .map_err(map_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn remove_mfa(&self, account_id: Id, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let totp = sqlx::query("DELETE FROM credential WHERE account_id = $1 AND type = 'TOTP'")
            .bind(account_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        sqlx::query("DELETE FROM credential WHERE account_id = $1 AND type = 'RECOVERY_CODE'")
            .bind(account_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query("DELETE FROM trusted_device WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(totp > 0)
    }

    async fn add_trusted_device(
        &self,
        d: &TrustedDevice,
        token_hash: &[u8],
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO trusted_device (id, account_id, token_hash, ip, user_agent, created_at, last_used_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(d.id)
        .bind(d.account_id)
        .bind(token_hash)
        .bind(&d.ip)
        .bind(&d.user_agent)
        .bind(d.created_at.millis())
        .bind(d.last_used_at.millis())
        .bind(d.expires_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn use_trusted_device(
        &self,
        account_id: Id,
        token_hash: &[u8],
        now: Timestamp,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE trusted_device SET last_used_at = $1 WHERE token_hash = $2 AND account_id = $3 AND expires_at > $1",
        )
        .bind(now.millis())
        .bind(token_hash)
        .bind(account_id)
        .execute(self.writer())
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn trusted_devices(
        &self,
        account_id: Id,
        now: Timestamp,
    ) -> StoreResult<Vec<TrustedDevice>> {
        let rows = sqlx::query(
            "SELECT id, account_id, ip, user_agent, created_at, last_used_at, expires_at FROM trusted_device \
             WHERE account_id = $1 AND expires_at > $2 ORDER BY created_at DESC LIMIT 500",
        )
        .bind(account_id)
        .bind(now.millis())
        .fetch_all(self.reader())
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(device_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn revoke_trusted_devices(
        &self,
        account_id: Id,
        id: Option<Id>,
        audit: &AuditEvent,
    ) -> StoreResult<u64> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let n = sqlx::query(
            "DELETE FROM trusted_device WHERE account_id = $1 AND ($2 IS NULL OR id = $2)",
        )
        .bind(account_id)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        if n > 0 {
            insert_audit(&mut tx, audit).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(n)
    }
}
