//! Mail: the durable outbox and the single-use e-mail codes (password reset, e-mail
//! verification, e-mail change), and the store port that keeps them.

use crate::model::AuditEvent;
use crate::ports::{NewAccount, StoreResult};
use crate::{Id, Timestamp};
use async_trait::async_trait;

/// A rendered message waiting in the outbox. The bodies hold the code and the link in
/// clear, so the store keeps them only until the message is sent (or given up).
#[derive(Clone)]
pub struct OutboxMail {
    pub id: Id,
    /// What the message is about (`password_reset`, `notice.password_changed`, …): logged
    /// and audited instead of the body.
    pub kind: String,
    pub account_id: Option<Id>,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub created_at: Timestamp,
    /// Delivery attempts so far (the claim that hands it out counts as one).
    pub attempts: i64,
}

impl std::fmt::Debug for OutboxMail {
    // Never the recipient or the bodies: they hold codes and links.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMail")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("account_id", &self.account_id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// What a single-use e-mail code is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodePurpose {
    PasswordReset,
    VerifyEmail,
    ChangeEmail,
}

impl CodePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CodePurpose::PasswordReset => "PASSWORD_RESET",
            CodePurpose::VerifyEmail => "VERIFY_EMAIL",
            CodePurpose::ChangeEmail => "CHANGE_EMAIL",
        }
    }
}

/// A new single-use code (its SHA-256, never the code).
#[derive(Clone, Debug)]
pub struct NewEmailCode {
    pub id: Id,
    pub account_id: Id,
    pub purpose: CodePurpose,
    pub code_hash: Vec<u8>,
    /// The address being confirmed (e-mail change).
    pub new_email: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// The outcome of presenting a code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeCheck {
    /// Right, live and now spent; with the code's `new_email`.
    Spent { new_email: Option<String> },
    /// No live code (none asked for, expired, superseded, spent, or out of attempts).
    NoCode,
    /// Wrong; the attempt was counted and `left` remain (0: the code is now dead).
    Wrong { left: i64 },
}

/// The outbox and the e-mail codes. Every change writes its audit row and its outbox row
/// (when it has one) in the same transaction.
#[async_trait]
pub trait MailStore: Send + Sync {
    /// Queues a message (with an optional audit row), atomically.
    async fn enqueue_mail(&self, mail: &OutboxMail, audit: Option<&AuditEvent>) -> StoreResult<()>;
    /// Hands out up to `limit` messages due at `now` and not leased by anyone, leasing them
    /// to `owner` until `lease_until` and counting an attempt. Two instances never get the
    /// same message while its lease runs (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the
    /// single writer on SQLite).
    async fn claim_mail(
        &self,
        owner: Id,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<OutboxMail>>;
    /// Marks a message this owner holds sent and drops its bodies. `false` if the lease
    /// was lost.
    async fn mark_mail_sent(&self, id: Id, owner: Id, now: Timestamp) -> StoreResult<bool>;
    /// Releases a message after a failed attempt, to be retried at `retry_at`.
    async fn retry_mail(
        &self,
        id: Id,
        owner: Id,
        retry_at: Timestamp,
        error: &str,
    ) -> StoreResult<bool>;
    /// Gives a message up (bodies dropped) with the audit row, atomically.
    async fn give_up_mail(
        &self,
        id: Id,
        owner: Id,
        now: Timestamp,
        error: &str,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// Deletes sent and given-up messages finished before `before`; returns how many.
    async fn prune_mail(&self, before: Timestamp) -> StoreResult<u64>;
    /// Messages still waiting (operations and tests).
    async fn pending_mail(&self) -> StoreResult<u64>;
    /// Stores a code, superseding the account's live code of the same purpose, and queues
    /// its message and writes the audit row, in one transaction.
    async fn create_email_code(
        &self,
        code: &NewEmailCode,
        mail: &OutboxMail,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// Presents a code for the account's live code of `purpose`: spends it when
    /// `code_hash` matches (compared in constant time), else counts a wrong attempt and
    /// kills the code after `max_attempts`.
    async fn check_email_code(
        &self,
        account_id: Id,
        purpose: CodePurpose,
        code_hash: &[u8],
        now: Timestamp,
        max_attempts: i64,
    ) -> StoreResult<CodeCheck>;
    /// Sets a new password (after a reset, or any change that notifies): replaces the
    /// password, revokes every session except `keep`, every refresh token and trusted
    /// device, ends outstanding reset codes, queues `notice`, writes the audit row, in one
    /// transaction; returns the revoked session ids.
    async fn reset_password(
        &self,
        account_id: Id,
        hash: &str,
        keep: Option<Id>,
        now: Timestamp,
        notice: Option<&OutboxMail>,
        audit: &AuditEvent,
    ) -> StoreResult<Vec<Id>>;
    /// Creates a self-registered account whose e-mail is not confirmed yet, with its
    /// confirmation code, the mail carrying it and the audit row, in one transaction.
    /// `Conflict` if the email or username is taken.
    async fn create_unverified_account(
        &self,
        new: &NewAccount,
        code: &NewEmailCode,
        mail: &OutboxMail,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// `true` while the account's e-mail address awaits confirmation.
    async fn email_unverified(&self, account_id: Id) -> StoreResult<bool>;
    /// Presents a confirmation code (as [`MailStore::check_email_code`]); when it is
    /// right, the address is confirmed and `audit` written in the same transaction.
    async fn verify_email(
        &self,
        account_id: Id,
        code_hash: &[u8],
        now: Timestamp,
        max_attempts: i64,
        audit: &AuditEvent,
    ) -> StoreResult<CodeCheck>;
    /// Marks the address confirmed (admin), with the audit row. `false` if it already was.
    async fn mark_email_verified(&self, account_id: Id, audit: &AuditEvent) -> StoreResult<bool>;
    /// Presents an e-mail-change code; when it is right, the account's address becomes the
    /// code's `new_email` (and counts as confirmed), `notice` (to the old address) is
    /// queued and `audit` written, in one transaction. `Conflict`, and no change, if the
    /// new address was taken meanwhile.
    async fn change_email(
        &self,
        account_id: Id,
        code_hash: &[u8],
        now: Timestamp,
        max_attempts: i64,
        notice: Option<&OutboxMail>,
        audit: &AuditEvent,
    ) -> StoreResult<CodeCheck>;
}
