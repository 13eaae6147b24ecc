//! [`SsoStore`]: external identities linked to accounts, and the providers stored by the
//! admin API (client secret sealed by the core before it gets here).

use super::Adapter;
use super::accounts::insert_account;
use super::common::{DbRow, Tx, insert_audit};
use super::rows::ts;
use crate::dialect::Dialect;
use crate::map_err;
use async_trait::async_trait;
use gatehouse_domain::model::AuditEvent;
use gatehouse_domain::ports::{NewAccount, StoreResult};
use gatehouse_domain::sso::{ExternalIdentity, SsoStore, StoredProvider, Unlink};
use gatehouse_domain::{Id, Timestamp};
use sqlx::Row as _;

const IDENTITY_COLS: &str =
    "id, provider, subject, account_id, email, created_account, created_at, last_used_at";
const PROVIDER_COLS: &str = "id, settings, sealed_secret, created_at, updated_at";

fn identity_row(r: &DbRow) -> Result<ExternalIdentity, sqlx::Error> {
    Ok(ExternalIdentity {
        id: r.try_get("id")?,
        provider: r.try_get("provider")?,
        subject: r.try_get("subject")?,
        account_id: r.try_get("account_id")?,
        email: r.try_get("email")?,
        created_account: r.try_get("created_account")?,
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
        last_used_at: ts(r.try_get("last_used_at")?),
    })
}

fn provider_row(r: &DbRow) -> Result<StoredProvider, sqlx::Error> {
    let settings: String = r.try_get("settings")?;
    Ok(StoredProvider {
        id: r.try_get("id")?,
        settings: serde_json::from_str(&settings).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        sealed_secret: r.try_get("sealed_secret")?,
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
        updated_at: Timestamp::from_millis(r.try_get("updated_at")?),
    })
}

async fn insert_identity(tx: &mut Tx<'_>, i: &ExternalIdentity) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO external_identity (id, provider, subject, account_id, email, \
         created_account, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(i.id)
    .bind(&i.provider)
    .bind(&i.subject)
    .bind(i.account_id)
    .bind(&i.email)
    .bind(i.created_account)
    .bind(i.created_at.millis())
    .bind(i.last_used_at.map(|t| t.millis()))
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

#[async_trait]
impl SsoStore for Adapter {
    async fn identity_by_subject(
        &self,
        provider: &str,
        subject: &str,
    ) -> StoreResult<Option<ExternalIdentity>> {
        let sql = format!(
            "SELECT {IDENTITY_COLS} FROM external_identity WHERE provider = $1 AND subject = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(provider)
            .bind(subject)
            .fetch_optional(self.reader())
            .await
            .map_err(map_err)?;
        row.as_ref().map(identity_row).transpose().map_err(map_err)
    }

    async fn identities_of(&self, account_id: Id) -> StoreResult<Vec<ExternalIdentity>> {
        let sql = format!(
            "SELECT {IDENTITY_COLS} FROM external_identity WHERE account_id = $1 \
             ORDER BY created_at, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .fetch_all(self.reader())
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(identity_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn link_identity(
        &self,
        identity: &ExternalIdentity,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        insert_identity(&mut tx, identity).await.map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn register_with_identity(
        &self,
        new: &NewAccount,
        identity: &ExternalIdentity,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        insert_account(&mut tx, new).await.map_err(map_err)?;
        insert_identity(&mut tx, identity).await.map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn touch_identity(&self, id: Id, email: Option<&str>, now: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "UPDATE external_identity SET last_used_at = $1, email = COALESCE($2, email) \
             WHERE id = $3",
        )
        .bind(now.millis())
        .bind(email)
        .bind(id)
        .execute(self.writer())
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn unlink_identity(
        &self,
        account_id: Id,
        id: Id,
        audit: &AuditEvent,
    ) -> StoreResult<Unlink> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        // Lock the account's identities, so two unlinks of its last two cannot both pass.
        let sql = format!(
            "SELECT id FROM external_identity WHERE account_id = $1{}",
            Adapter::LOCK_ROWS
        );
        let ids: Vec<Id> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        if !ids.contains(&id) {
            return Ok(Unlink::NotFound);
        }
        let has_password: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM credential WHERE account_id = $1 \
             AND type = 'PASSWORD' AND status = 'ACTIVE')",
        )
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        if !has_password && ids.len() < 2 {
            return Ok(Unlink::LastWay);
        }
        sqlx::query("DELETE FROM external_identity WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Unlink::Removed)
    }

    async fn email_verified(&self, account_id: Id) -> StoreResult<bool> {
        let v: Option<bool> =
            sqlx::query_scalar("SELECT email_verified FROM account WHERE id = $1")
                .bind(account_id)
                .fetch_optional(self.reader())
                .await
                .map_err(map_err)?;
        Ok(v.unwrap_or(false))
    }

    async fn stored_providers(&self) -> StoreResult<Vec<StoredProvider>> {
        let sql = format!("SELECT {PROVIDER_COLS} FROM sso_provider ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.reader())
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(provider_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn stored_provider(&self, id: &str) -> StoreResult<Option<StoredProvider>> {
        let sql = format!("SELECT {PROVIDER_COLS} FROM sso_provider WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await
            .map_err(map_err)?;
        row.as_ref().map(provider_row).transpose().map_err(map_err)
    }

    async fn create_stored_provider(
        &self,
        p: &StoredProvider,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO sso_provider (id, settings, sealed_secret, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&p.id)
        .bind(p.settings.to_string())
        .bind(&p.sealed_secret)
        .bind(p.created_at.millis())
        .bind(p.updated_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn update_stored_provider(
        &self,
        p: &StoredProvider,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let n = sqlx::query(
            "UPDATE sso_provider SET settings = $1, sealed_secret = $2, updated_at = $3 \
             WHERE id = $4",
        )
        .bind(p.settings.to_string())
        .bind(&p.sealed_secret)
        .bind(p.updated_at.millis())
        .bind(&p.id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn delete_stored_provider(&self, id: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let n = sqlx::query("DELETE FROM sso_provider WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }
}
