//! [`CredentialStore`]: the password credential.

use super::Adapter;
use super::common::{Tx, insert_audit, revoke_sessions_tx};
use crate::dialect::Dialect;
use crate::map_err;
use async_trait::async_trait;
use gatehouse_domain::model::AuditEvent;
use gatehouse_domain::ports::{CredentialStore, StoreResult};
use gatehouse_domain::{Id, Timestamp};

#[async_trait]
impl CredentialStore for Adapter {
    async fn password_hash(&self, account_id: Id) -> StoreResult<Option<String>> {
        sqlx::query_scalar(
            "SELECT secret FROM credential WHERE account_id = $1 AND type = 'PASSWORD' AND status = 'ACTIVE'",
        )
        .bind(account_id)
        .fetch_optional(self.reader())
        .await
        .map_err(map_err)
    }

    async fn change_password(
        &self,
        account_id: Id,
        hash: &str,
        keep: Option<Id>,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Vec<Id>> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let revoked = replace_password_tx(&mut tx, account_id, hash, keep, now)
            .await
            .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(revoked)
    }
}

/// Replaces the password, clears `must_change_password`, revokes the account's sessions
/// except `keep` and deletes its trusted devices, inside `tx`; returns the revoked ids.
pub(super) async fn replace_password_tx(
    tx: &mut Tx<'_>,
    account_id: Id,
    hash: &str,
    keep: Option<Id>,
    now: Timestamp,
) -> Result<Vec<Id>, sqlx::Error> {
    sqlx::query(
            "INSERT INTO credential (id, account_id, type, secret, status, created_at, updated_at) \
             VALUES ($1, $2, 'PASSWORD', $3, 'ACTIVE', $4, $4) \
             ON CONFLICT (account_id) WHERE type = 'PASSWORD' \
             DO UPDATE SET secret = excluded.secret, status = 'ACTIVE', updated_at = excluded.updated_at",
        )
        .bind(gatehouse_domain::ids::new_id())
        .bind(account_id)
        .bind(hash)
        .bind(now.millis())
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE account SET must_change_password = FALSE, updated_at = $1 WHERE id = $2")
        .bind(now.millis())
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    let revoked = revoke_sessions_tx(tx, account_id, keep, now).await?;
    // A new password also ends every "trust this browser" grant.
    sqlx::query("DELETE FROM trusted_device WHERE account_id = $1")
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    Ok(revoked)
}
