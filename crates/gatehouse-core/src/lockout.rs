//! Lockout: consecutive failed secret checks per account — whichever name it was signed in
//! by, and whichever secret failed (password, TOTP or recovery code, the current password
//! when changing it or turning TOTP off) — and per identifier that names no account, so
//! unknown names lock exactly like known ones. Counted in the `Cache` port so every
//! instance sees the same count.

use crate::audit::AuditExt;
use crate::config::LockoutConfig;
use gatehouse_domain::ports::Cache;
use gatehouse_domain::{AppError, Code, Id};
use std::time::Duration;

/// Whose failures are counted.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// An existing account, however it was named.
    Account(Id),
    /// A normalized identifier that names no account.
    Unknown(&'a str),
}

impl Subject<'_> {
    fn key(&self) -> String {
        match self {
            Subject::Account(id) => format!("acct:{id}"),
            Subject::Unknown(ident) => format!("ident:{ident}"),
        }
    }
}

fn fail_key(subject: &Subject<'_>) -> String {
    format!("lockout:fail:{}", subject.key())
}

fn lock_key(subject: &Subject<'_>) -> String {
    format!("lockout:lock:{}", subject.key())
}

/// `ACCOUNT_LOCKED` (with `Retry-After`) if the subject is locked.
pub async fn check(
    cache: &dyn Cache,
    cfg: &LockoutConfig,
    subject: Subject<'_>,
) -> Result<(), AppError> {
    if !cfg.enabled {
        return Ok(());
    }
    match cache.ttl(&lock_key(&subject)).await? {
        Some(left) => Err(AppError::new(Code::ACCOUNT_LOCKED).retry_after(left.as_secs().max(1))),
        None => Ok(()),
    }
}

/// Counts a failure; returns `true` if this failure locked the subject.
pub async fn record_failure(
    cache: &dyn Cache,
    cfg: &LockoutConfig,
    subject: Subject<'_>,
) -> Result<bool, AppError> {
    if !cfg.enabled {
        return Ok(false);
    }
    let window = Duration::from_secs(cfg.window_seconds.max(1));
    let n = cache.incr(&fail_key(&subject), window).await?;
    if n >= i64::from(cfg.max_failures) {
        let duration = Duration::from_secs(cfg.duration_seconds);
        let newly = cache.set_nx(&lock_key(&subject), b"1", duration).await?;
        cache.delete(&fail_key(&subject)).await?;
        return Ok(newly);
    }
    Ok(false)
}

/// Forgets failures after a success.
pub async fn reset(cache: &dyn Cache, subject: Subject<'_>) -> Result<(), AppError> {
    cache
        .delete(&fail_key(&subject))
        .await
        .map_err(AppError::from)
}

/// Lifts a lock and its counter (admin unlock).
pub async fn unlock(cache: &dyn Cache, subject: Subject<'_>) -> Result<(), AppError> {
    cache.delete(&lock_key(&subject)).await?;
    cache
        .delete(&fail_key(&subject))
        .await
        .map_err(AppError::from)
}

impl crate::Service {
    /// Counts a failed secret check against `subject`; when it locks, the lock is audited
    /// (with `identifier` as typed, already made safe to store) and counted in metrics.
    pub(crate) async fn count_failure(
        &self,
        subject: Subject<'_>,
        identifier: &serde_json::Value,
        meta: &crate::RequestMeta,
    ) -> Result<(), AppError> {
        if record_failure(self.cache.as_ref(), &self.cfg.lockout, subject).await? {
            let target = match subject {
                Subject::Account(id) => Some(id),
                Subject::Unknown(_) => None,
            };
            self.metrics.inc("gatehouse_lockouts_total", &[]);
            self.audit(
                crate::audit::event(meta, self.now(), "account.locked", "success")
                    .target(target)
                    .details(serde_json::json!({ "identifier": identifier })),
            )
            .await;
        }
        Ok(())
    }
}
