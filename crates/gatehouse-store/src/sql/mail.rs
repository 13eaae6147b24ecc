//! [`MailStore`]: the outbox and the single-use e-mail codes.

use super::Adapter;
use super::accounts::insert_account;
use super::common::{DbRow, Tx, insert_audit};
use super::credentials::replace_password_tx;
use crate::dialect::Dialect;
use crate::map_err;
use async_trait::async_trait;
use gatehouse_domain::mail::{CodeCheck, CodePurpose, MailStore, NewEmailCode, OutboxMail};
use gatehouse_domain::model::AuditEvent;
use gatehouse_domain::ports::{NewAccount, StoreResult};
use gatehouse_domain::{Id, Timestamp};
use sqlx::Row as _;
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

const OUTBOX_COLS: &str =
    "id, kind, account_id, recipient, subject, body_text, body_html, created_at, attempts";

fn outbox_row(r: &DbRow) -> Result<OutboxMail, sqlx::Error> {
    Ok(OutboxMail {
        id: r.try_get::<Uuid, _>("id")?,
        kind: r.try_get("kind")?,
        account_id: r.try_get::<Option<Uuid>, _>("account_id")?,
        recipient: r.try_get("recipient")?,
        subject: r.try_get("subject")?,
        body_text: r.try_get("body_text")?,
        body_html: r.try_get("body_html")?,
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
        attempts: r.try_get("attempts")?,
    })
}

/// Queues `mail` inside `tx`, due at once.
async fn insert_mail_tx(tx: &mut Tx<'_>, mail: &OutboxMail) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO mail_outbox (id, kind, account_id, recipient, subject, body_text, \
         body_html, status, attempts, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'PENDING', 0, $8, $8)",
    )
    .bind(mail.id)
    .bind(&mail.kind)
    .bind(mail.account_id)
    .bind(&mail.recipient)
    .bind(&mail.subject)
    .bind(&mail.body_text)
    .bind(&mail.body_html)
    .bind(mail.created_at.millis())
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// Ends a leased row with `status`, dropping its bodies.
async fn finish_mail<'e, E>(
    exec: E,
    id: Id,
    owner: Id,
    status: &str,
    now: Timestamp,
    error: Option<&str>,
) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = <Adapter as Dialect>::Db>,
{
    let done = sqlx::query(
        "UPDATE mail_outbox SET status = $1, finished_at = $2, body_text = '', body_html = '', \
         lease_owner = NULL, lease_until = NULL, last_error = COALESCE($3, last_error) \
         WHERE id = $4 AND lease_owner = $5 AND status = 'PENDING'",
    )
    .bind(status)
    .bind(now.millis())
    .bind(error)
    .bind(id)
    .bind(owner)
    .execute(exec)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores a code inside `tx`, superseding the account's live code of the same purpose.
async fn insert_code_tx(tx: &mut Tx<'_>, code: &NewEmailCode) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE email_code SET status = 'SUPERSEDED' \
             WHERE account_id = $1 AND purpose = $2 AND status = 'PENDING'",
    )
    .bind(code.account_id)
    .bind(code.purpose.as_str())
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO email_code (id, account_id, purpose, code_hash, new_email, status, \
             attempts, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, 'PENDING', 0, $6, $7)",
    )
    .bind(code.id)
    .bind(code.account_id)
    .bind(code.purpose.as_str())
    .bind(&code.code_hash)
    .bind(&code.new_email)
    .bind(code.created_at.millis())
    .bind(code.expires_at.millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Presents a code for the account's live code of `purpose` inside `tx` (see
/// `MailStore::check_email_code`).
async fn check_code_tx(
    tx: &mut Tx<'_>,
    account_id: Id,
    purpose: CodePurpose,
    code_hash: &[u8],
    now: Timestamp,
    max_attempts: i64,
) -> Result<CodeCheck, sqlx::Error> {
    let sql = format!(
        "SELECT id, code_hash, new_email, attempts FROM email_code \
             WHERE account_id = $1 AND purpose = $2 AND status = 'PENDING' \
             AND expires_at > $3{}",
        Adapter::LOCK_ROWS
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(account_id)
        .bind(purpose.as_str())
        .bind(now.millis())
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else {
        return Ok(CodeCheck::NoCode);
    };
    let id: Uuid = row.try_get("id")?;
    let stored: Vec<u8> = row.try_get("code_hash")?;
    let attempts: i64 = row.try_get("attempts")?;
    if attempts >= max_attempts {
        return Ok(CodeCheck::NoCode);
    }
    let outcome = if bool::from(stored.as_slice().ct_eq(code_hash)) {
        sqlx::query("UPDATE email_code SET status = 'USED', used_at = $1 WHERE id = $2")
            .bind(now.millis())
            .bind(id)
            .execute(&mut **tx)
            .await?;
        CodeCheck::Spent {
            new_email: row.try_get("new_email")?,
        }
    } else {
        let used = attempts + 1;
        let status = if used >= max_attempts {
            "EXHAUSTED"
        } else {
            "PENDING"
        };
        sqlx::query("UPDATE email_code SET attempts = $1, status = $2 WHERE id = $3")
            .bind(used)
            .bind(status)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        CodeCheck::Wrong {
            left: max_attempts - used,
        }
    };
    Ok(outcome)
}

#[async_trait]
impl MailStore for Adapter {
    async fn enqueue_mail(&self, mail: &OutboxMail, audit: Option<&AuditEvent>) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        insert_mail_tx(&mut tx, mail).await.map_err(map_err)?;
        if let Some(a) = audit {
            insert_audit(&mut tx, a).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn claim_mail(
        &self,
        owner: Id,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<OutboxMail>> {
        // The outer conditions repeat the inner ones: a claimer that waited on a row lock
        // re-checks them against the row as the other claimer left it, and skips it.
        let sql = format!(
            "UPDATE mail_outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM mail_outbox WHERE status = 'PENDING' \
               AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until <= $3) \
               ORDER BY next_attempt_at LIMIT $4{}) \
             AND status = 'PENDING' AND (lease_until IS NULL OR lease_until <= $3) \
             RETURNING {OUTBOX_COLS}",
            Adapter::SKIP_LOCKED
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(lease_until.millis())
            .bind(now.millis())
            .bind(limit)
            .fetch_all(self.writer())
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(outbox_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn mark_mail_sent(&self, id: Id, owner: Id, now: Timestamp) -> StoreResult<bool> {
        finish_mail(self.writer(), id, owner, "SENT", now, None)
            .await
            .map_err(map_err)
    }

    async fn retry_mail(
        &self,
        id: Id,
        owner: Id,
        retry_at: Timestamp,
        error: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE mail_outbox SET next_attempt_at = $1, lease_owner = NULL, lease_until = NULL, \
             last_error = $2 WHERE id = $3 AND lease_owner = $4 AND status = 'PENDING'",
        )
        .bind(retry_at.millis())
        .bind(error)
        .bind(id)
        .bind(owner)
        .execute(self.writer())
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn give_up_mail(
        &self,
        id: Id,
        owner: Id,
        now: Timestamp,
        error: &str,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done = finish_mail(&mut *tx, id, owner, "FAILED", now, Some(error))
            .await
            .map_err(map_err)?;
        if done {
            insert_audit(&mut tx, audit).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(done)
    }

    async fn prune_mail(&self, before: Timestamp) -> StoreResult<u64> {
        let done =
            sqlx::query("DELETE FROM mail_outbox WHERE status <> 'PENDING' AND finished_at < $1")
                .bind(before.millis())
                .execute(self.writer())
                .await
                .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    // Through the writer: read-your-writes (a SQLite reader connection may still hold a
    // snapshot from before the last commit).
    async fn pending_mail(&self) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM mail_outbox WHERE status = 'PENDING'")
                .fetch_one(self.writer())
                .await
                .map_err(map_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn create_email_code(
        &self,
        code: &NewEmailCode,
        mail: &OutboxMail,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        insert_code_tx(&mut tx, code).await.map_err(map_err)?;
        insert_mail_tx(&mut tx, mail).await.map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn check_email_code(
        &self,
        account_id: Id,
        purpose: CodePurpose,
        code_hash: &[u8],
        now: Timestamp,
        max_attempts: i64,
    ) -> StoreResult<CodeCheck> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let outcome = check_code_tx(&mut tx, account_id, purpose, code_hash, now, max_attempts)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(outcome)
    }

    async fn reset_password(
        &self,
        account_id: Id,
        hash: &str,
        keep: Option<Id>,
        now: Timestamp,
        notice: Option<&OutboxMail>,
        audit: &AuditEvent,
    ) -> StoreResult<Vec<Id>> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let revoked = replace_password_tx(&mut tx, account_id, hash, keep, now)
            .await
            .map_err(map_err)?;
        // A reset ends every outstanding code of the account for resetting, too.
        sqlx::query(
            "UPDATE email_code SET status = 'SUPERSEDED' \
             WHERE account_id = $1 AND purpose = $2 AND status = 'PENDING'",
        )
        .bind(account_id)
        .bind(CodePurpose::PasswordReset.as_str())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if let Some(mail) = notice {
            insert_mail_tx(&mut tx, mail).await.map_err(map_err)?;
        }
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(revoked)
    }

    async fn create_unverified_account(
        &self,
        new: &NewAccount,
        code: &NewEmailCode,
        mail: &OutboxMail,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        insert_account(&mut tx, new).await.map_err(map_err)?;
        sqlx::query("INSERT INTO email_unverified (account_id, created_at) VALUES ($1, $2)")
            .bind(new.account.id)
            .bind(new.account.created_at.millis())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_code_tx(&mut tx, code).await.map_err(map_err)?;
        insert_mail_tx(&mut tx, mail).await.map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    // Through the writer: the login step right after a confirmation must see it.
    async fn email_unverified(&self, account_id: Id) -> StoreResult<bool> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM email_unverified WHERE account_id = $1")
                .bind(account_id)
                .fetch_one(self.writer())
                .await
                .map_err(map_err)?;
        Ok(n > 0)
    }

    async fn verify_email(
        &self,
        account_id: Id,
        code_hash: &[u8],
        now: Timestamp,
        max_attempts: i64,
        audit: &AuditEvent,
    ) -> StoreResult<CodeCheck> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let outcome = check_code_tx(
            &mut tx,
            account_id,
            CodePurpose::VerifyEmail,
            code_hash,
            now,
            max_attempts,
        )
        .await
        .map_err(map_err)?;
        if matches!(outcome, CodeCheck::Spent { .. }) {
            sqlx::query("DELETE FROM email_unverified WHERE account_id = $1")
                .bind(account_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            sqlx::query("UPDATE account SET email_verified = TRUE WHERE id = $1")
                .bind(account_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            insert_audit(&mut tx, audit).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(outcome)
    }

    async fn mark_email_verified(&self, account_id: Id, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done = sqlx::query("DELETE FROM email_unverified WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        // The address is proven from now on, also for SSO's linking rule.
        let proven = sqlx::query(
            "UPDATE account SET email_verified = TRUE WHERE id = $1 AND email_verified = FALSE",
        )
        .bind(account_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() + proven.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE email_code SET status = 'SUPERSEDED' \
             WHERE account_id = $1 AND purpose = $2 AND status = 'PENDING'",
        )
        .bind(account_id)
        .bind(CodePurpose::VerifyEmail.as_str())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn change_email(
        &self,
        account_id: Id,
        code_hash: &[u8],
        now: Timestamp,
        max_attempts: i64,
        notice: Option<&OutboxMail>,
        audit: &AuditEvent,
    ) -> StoreResult<CodeCheck> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let outcome = check_code_tx(
            &mut tx,
            account_id,
            CodePurpose::ChangeEmail,
            code_hash,
            now,
            max_attempts,
        )
        .await
        .map_err(map_err)?;
        if let CodeCheck::Spent {
            new_email: Some(email),
        } = &outcome
        {
            sqlx::query("UPDATE account SET email = $1, updated_at = $2 WHERE id = $3")
                .bind(email)
                .bind(now.millis())
                .bind(account_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            sqlx::query("DELETE FROM email_unverified WHERE account_id = $1")
                .bind(account_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            sqlx::query("UPDATE account SET email_verified = TRUE WHERE id = $1")
                .bind(account_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            if let Some(mail) = notice {
                insert_mail_tx(&mut tx, mail).await.map_err(map_err)?;
            }
            insert_audit(&mut tx, audit).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(outcome)
    }
}
