//! The outbox sender: leases due messages, delivers them, and marks them sent; a failed
//! delivery is retried with exponential backoff until `give_up_after_seconds`, then given
//! up with an audit event. Every instance runs one; leases keep a message with one sender.

use super::Mailer;
use crate::audit::{AuditExt, event};
use crate::{RequestMeta, Service};
use gatehouse_domain::mail::OutboxMail;
use gatehouse_domain::{AppError, Id, Timestamp};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a claimed message stays with its sender before another may take it.
const LEASE: Duration = Duration::from_secs(120);
/// Messages claimed per pass.
const BATCH: i64 = 16;

/// The mailer and this instance's sender state.
pub struct MailRuntime {
    pub mailer: Arc<dyn Mailer>,
    /// This instance's lease owner id.
    owner: Id,
    wake: Notify,
}

impl MailRuntime {
    pub fn new(mailer: Arc<dyn Mailer>) -> Self {
        Self {
            mailer,
            owner: gatehouse_domain::ids::new_id(),
            wake: Notify::new(),
        }
    }

    /// Wakes the sender (a message was queued, or the clock moved in a test).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_millis(
        t.millis()
            .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    )
}

impl Service {
    /// The delay before retry number `attempts` (1-based): initial × 2^(attempts-1), capped.
    fn retry_delay(&self, attempts: i64) -> Duration {
        let m = &self.cfg.mail;
        let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
        let secs = m
            .retry_initial_seconds
            .saturating_mul(2u64.saturating_pow(exp))
            .min(m.retry_max_seconds);
        Duration::from_secs(secs)
    }

    /// One pass: delivers every due message this instance can lease. Returns how many
    /// were sent.
    pub async fn send_due_mail(&self) -> Result<usize, AppError> {
        let mut sent = 0;
        loop {
            let now = self.now();
            let batch = self
                .store
                .claim_mail(self.mail.owner, now, after(now, LEASE), BATCH)
                .await?;
            if batch.is_empty() {
                return Ok(sent);
            }
            let full = i64::try_from(batch.len()).unwrap_or(0) == BATCH;
            for mail in batch {
                if self.deliver(&mail).await? {
                    sent += 1;
                }
            }
            if !full {
                return Ok(sent);
            }
        }
    }

    async fn deliver(&self, mail: &OutboxMail) -> Result<bool, AppError> {
        let owner = self.mail.owner;
        match self.mail.mailer.send(mail).await {
            Ok(()) => {
                self.store
                    .mark_mail_sent(mail.id, owner, self.now())
                    .await?;
                self.metrics.inc("gatehouse_mail_sent_total", &[]);
                tracing::info!(kind = %mail.kind, mail_id = %mail.id, via = self.mail.mailer.name(), "mail sent");
                Ok(true)
            }
            Err(e) => {
                let now = self.now();
                let give_up_at = after(
                    mail.created_at,
                    Duration::from_secs(self.cfg.mail.give_up_after_seconds),
                );
                let retry_at = after(now, self.retry_delay(mail.attempts));
                if e.permanent || retry_at > give_up_at {
                    let audit = event(&RequestMeta::default(), now, "mail.give_up", "failure")
                        .target(mail.account_id)
                        .reason(if e.permanent { "REFUSED" } else { "TIMED_OUT" })
                        .details(serde_json::json!({
                            "mailId": mail.id,
                            "kind": mail.kind,
                            "attempts": mail.attempts,
                        }));
                    self.store
                        .give_up_mail(mail.id, owner, now, &e.message, &audit)
                        .await?;
                    self.metrics.inc("gatehouse_mail_failed_total", &[]);
                    tracing::error!(kind = %mail.kind, mail_id = %mail.id, attempts = mail.attempts, error = %e, "mail given up");
                } else {
                    self.store
                        .retry_mail(mail.id, owner, retry_at, &e.message)
                        .await?;
                    self.metrics.inc("gatehouse_mail_retries_total", &[]);
                    tracing::warn!(kind = %mail.kind, mail_id = %mail.id, attempts = mail.attempts, error = %e, "mail not delivered; will retry");
                }
                Ok(false)
            }
        }
    }

    /// Runs the sender: a pass every `mail.poll_interval_ms`, or at once when woken.
    pub fn spawn_mail_sender(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let svc = Arc::clone(self);
        let every = Duration::from_millis(svc.cfg.mail.poll_interval_ms.max(10));
        tokio::spawn(async move {
            loop {
                if let Err(e) = svc.send_due_mail().await {
                    tracing::warn!(error = %e, detail = ?e.detail(), "mail sender pass failed; will retry");
                }
                if svc.cfg.mail.retention_days > 0
                    && let Err(e) = svc.prune_mail().await
                {
                    tracing::warn!(error = %e, detail = ?e.detail(), "mail pruning failed; will retry");
                }
                tokio::select! {
                    _ = svc.mail.wake.notified() => {}
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    }

    /// Deletes finished outbox rows older than `mail.retention_days`.
    pub async fn prune_mail(&self) -> Result<u64, AppError> {
        let keep = Duration::from_secs(self.cfg.mail.retention_days.saturating_mul(24 * 3600));
        let cutoff = Timestamp::from_millis(
            self.now()
                .millis()
                .saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX)),
        );
        Ok(self.store.prune_mail(cutoff).await?)
    }
}
