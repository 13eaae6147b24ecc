//! [`AccountStore`]: accounts and their global roles.

use super::Adapter;
use super::common::{Db, Tx, insert_audit, revoke_sessions_tx};
use super::rows::{account_cols, account_row};
use crate::dialect::Dialect;
use crate::map_err;
use async_trait::async_trait;
use gatehouse_domain::model::{Account, AccountStatus, AuditEvent, Page, Paged};
use gatehouse_domain::ports::{AccountStore, NewAccount, StoreError, StoreResult};
use gatehouse_domain::{Id, Timestamp};

/// The account matching `clause` (on alias `a`, its value bound as `$1`), if any.
async fn account_where(
    pool: &sqlx::Pool<Db>,
    clause: &str,
    value: impl for<'q> sqlx::Encode<'q, Db> + sqlx::Type<Db> + Send,
) -> StoreResult<Option<Account>> {
    let cols = account_cols();
    let sql = format!("SELECT {cols} FROM account a WHERE {clause}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(value)
        .fetch_optional(pool)
        .await
        .map_err(map_err)?;
    row.as_ref().map(account_row).transpose().map_err(map_err)
}

#[async_trait]
impl AccountStore for Adapter {
    async fn create_account(&self, new: &NewAccount, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        insert_account_tx(&mut tx, new).await.map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn account_by_id(&self, id: Id) -> StoreResult<Option<Account>> {
        account_where(self.reader(), "a.id = $1", id).await
    }

    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
        account_where(self.reader(), "a.email = $1", email.to_string()).await
    }

    async fn account_by_username(&self, username: &str) -> StoreResult<Option<Account>> {
        account_where(self.reader(), "a.username = $1", username.to_string()).await
    }

    async fn count_accounts(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM account")
            .fetch_one(self.reader())
            .await
            .map_err(map_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn list_accounts(&self, query: Option<&str>, page: Page) -> StoreResult<Paged<Account>> {
        let pattern = query.map(|q| {
            let escaped = q
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        let filter = "($1 IS NULL OR a.email LIKE $1 ESCAPE '\\' OR a.username LIKE $1 ESCAPE '\\' \
                      OR LOWER(COALESCE(a.display_name, '')) LIKE $1 ESCAPE '\\')";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM account a WHERE {filter}"
        )))
        .bind(&pattern)
        .fetch_one(self.reader())
        .await
        .map_err(map_err)?;
        let cols = account_cols();
        let sql = format!(
            "SELECT {cols} FROM account a WHERE {filter} ORDER BY a.created_at, a.id LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&pattern)
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

    async fn set_account_status(
        &self,
        id: Id,
        status: AccountStatus,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Option<(Account, Vec<Id>)>> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        if status == AccountStatus::Disabled {
            // The active admins, locked until commit, so two admins disabling each other
            // at once cannot both pass the check.
            let sql = format!(
                "SELECT a.id FROM account a JOIN account_role r ON r.account_id = a.id \
                 WHERE r.role = 'admin' AND a.status = 'ACTIVE'{}",
                Adapter::LOCK_ROWS
            );
            let admins: Vec<Id> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
            if admins == [id] {
                return Err(StoreError::LastAdmin);
            }
        }
        let done = sqlx::query("UPDATE account SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now.millis())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let revoked = match status {
            AccountStatus::Disabled => revoke_sessions_tx(&mut tx, id, None, now)
                .await
                .map_err(map_err)?,
            AccountStatus::Active => Vec::new(),
        };
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        let cols = account_cols();
        let sql = format!("SELECT {cols} FROM account a WHERE a.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let account = account_row(&row).map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some((account, revoked)))
    }

    async fn set_must_change_password(
        &self,
        id: Id,
        value: bool,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Account>> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done = sqlx::query(
            "UPDATE account SET must_change_password = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(value)
        .bind(now.millis())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        let cols = account_cols();
        let sql = format!("SELECT {cols} FROM account a WHERE a.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let account = account_row(&row).map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some(account))
    }
}

/// Inserts the account, its roles and its first password inside `tx`.
pub(super) async fn insert_account_tx(
    tx: &mut Tx<'_>,
    new: &NewAccount,
) -> Result<(), sqlx::Error> {
    let a = &new.account;
    sqlx::query(
        "INSERT INTO account (id, email, username, display_name, status, \
             must_change_password, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(a.id)
    .bind(&a.email)
    .bind(&a.username)
    .bind(&a.display_name)
    .bind(a.status.as_str())
    .bind(a.must_change_password)
    .bind(a.created_at.millis())
    .bind(a.updated_at.millis())
    .execute(&mut **tx)
    .await?;
    for role in &a.roles {
        sqlx::query("INSERT INTO account_role (account_id, role) VALUES ($1, $2)")
            .bind(a.id)
            .bind(role)
            .execute(&mut **tx)
            .await?;
    }
    if let Some(hash) = &new.password_hash {
        sqlx::query(
            "INSERT INTO credential (id, account_id, type, secret, status, created_at, updated_at) \
                 VALUES ($1, $2, 'PASSWORD', $3, 'ACTIVE', $4, $4)",
        )
        .bind(gatehouse_domain::ids::new_id())
        .bind(a.id)
        .bind(hash)
        .bind(a.created_at.millis())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
