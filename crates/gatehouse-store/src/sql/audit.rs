//! [`AuditStore`]: the audit trail.

use super::Adapter;
use super::common::insert_audit;
use super::rows::{AUDIT_COLS, audit_row};
use crate::dialect::Dialect;
use crate::map_err;
use async_trait::async_trait;
use gatehouse_domain::Timestamp;
use gatehouse_domain::model::{AuditEvent, AuditFilter, Page, Paged};
use gatehouse_domain::ports::{AuditStore, StoreResult};

#[async_trait]
impl AuditStore for Adapter {
    async fn append_audit(&self, events: &[AuditEvent]) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        for e in events {
            insert_audit(&mut tx, e).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn prune_audit(&self, before: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM audit_event WHERE at < $1")
            .bind(before.millis())
            .execute(self.writer())
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn list_audit(&self, f: &AuditFilter, page: Page) -> StoreResult<Paged<AuditEvent>> {
        let filter = "($1 IS NULL OR actor_id = $1 OR target_id = $1) AND ($2 IS NULL OR action = $2) \
                      AND ($3 IS NULL OR outcome = $3) AND ($4 IS NULL OR at >= $4) AND ($5 IS NULL OR at < $5)";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM audit_event WHERE {filter}"
        )))
        .bind(f.account_id)
        .bind(&f.action)
        .bind(&f.outcome)
        .bind(f.from.map(Timestamp::millis))
        .bind(f.to.map(Timestamp::millis))
        .fetch_one(self.reader())
        .await
        .map_err(map_err)?;
        let sql = format!(
            "SELECT {AUDIT_COLS} FROM audit_event WHERE {filter} ORDER BY at DESC, id DESC LIMIT $6 OFFSET $7"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(f.account_id)
            .bind(&f.action)
            .bind(&f.outcome)
            .bind(f.from.map(Timestamp::millis))
            .bind(f.to.map(Timestamp::millis))
            .bind(i64::from(page.page_size))
            .bind(page.offset())
            .fetch_all(self.reader())
            .await
            .map_err(map_err)?;
        let items = rows
            .iter()
            .map(audit_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }
}
