//! What the ports share: the driver types, the audit insert every change writes in its own
//! transaction, session revocation (accounts, passwords and logins use it), and the
//! [`Store`] handle itself.

use super::Adapter;
use crate::dialect::Dialect;
use crate::map_err;
use async_trait::async_trait;
use gatehouse_domain::model::AuditEvent;
use gatehouse_domain::ports::{Store, StoreResult};
use gatehouse_domain::{Id, Timestamp};
use sqlx::Row as _;
use uuid::Uuid;

/// The driver this copy of the shared SQL is compiled for.
pub(super) type Db = <Adapter as Dialect>::Db;
/// A row of that driver.
pub(super) type DbRow = <Db as sqlx::Database>::Row;
/// A transaction on that driver.
pub(super) type Tx<'a> = sqlx::Transaction<'a, Db>;

/// The nil id: stands for "none" in `id <> $n` and `id = $n` filters (no session to keep,
/// no workspace, no branch), where a NULL would make the comparison NULL.
pub(super) const NIL_ID: Uuid = Uuid::nil();

/// Writes the audit row of a change inside the change's own transaction.
pub(super) async fn insert_audit(tx: &mut Tx<'_>, e: &AuditEvent) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_event (id, at, actor_id, action, target_id, outcome, reason, ip, \
         user_agent, request_id, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(e.id)
    .bind(e.at.millis())
    .bind(e.actor_id)
    .bind(&e.action)
    .bind(e.target_id)
    .bind(&e.outcome)
    .bind(&e.reason)
    .bind(&e.ip)
    .bind(&e.user_agent)
    .bind(&e.request_id)
    .bind(e.details.to_string())
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// Revokes the account's active sessions except `keep`, inside `tx`; returns their ids.
pub(super) async fn revoke_sessions_tx(
    tx: &mut Tx<'_>,
    account_id: Id,
    keep: Option<Id>,
    now: Timestamp,
) -> Result<Vec<Id>, sqlx::Error> {
    let rows = sqlx::query(
        "UPDATE auth_session SET status = 'REVOKED', revoked_at = $1 \
         WHERE account_id = $2 AND status = 'ACTIVE' AND id <> $3 RETURNING id",
    )
    .bind(now.millis())
    .bind(account_id)
    .bind(keep.unwrap_or(NIL_ID))
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(|r| r.try_get::<Uuid, _>("id")).collect()
}

#[async_trait]
impl Store for Adapter {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(self.reader())
            .await
            .map_err(map_err)?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        Adapter::NAME
    }
}
