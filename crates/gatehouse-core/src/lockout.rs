//! Lockout: consecutive failures per normalized identifier, counted whether or not the
//! account exists, in the `Cache` port so every instance sees the same count.

use crate::config::LockoutConfig;
use crate::service::cache_err;
use gatehouse_domain::ports::Cache;
use gatehouse_domain::{AppError, Code};
use std::time::Duration;

fn fail_key(identifier: &str) -> String {
    format!("lockout:fail:{identifier}")
}

fn lock_key(identifier: &str) -> String {
    format!("lockout:lock:{identifier}")
}

/// `ACCOUNT_LOCKED` (with `Retry-After`) if the identifier is locked.
pub async fn check(
    cache: &dyn Cache,
    cfg: &LockoutConfig,
    identifier: &str,
) -> Result<(), AppError> {
    if !cfg.enabled {
        return Ok(());
    }
    match cache.ttl(&lock_key(identifier)).await.map_err(cache_err)? {
        Some(left) => Err(AppError::new(Code::ACCOUNT_LOCKED).retry_after(left.as_secs().max(1))),
        None => Ok(()),
    }
}

/// Counts a failure; returns `true` if this failure locked the identifier.
pub async fn record_failure(
    cache: &dyn Cache,
    cfg: &LockoutConfig,
    identifier: &str,
) -> Result<bool, AppError> {
    if !cfg.enabled {
        return Ok(false);
    }
    let window = Duration::from_secs(cfg.window_seconds.max(1));
    let n = cache
        .incr(&fail_key(identifier), window)
        .await
        .map_err(cache_err)?;
    if n >= i64::from(cfg.max_failures) {
        let duration = Duration::from_secs(cfg.duration_seconds);
        let newly = cache
            .set_nx(&lock_key(identifier), b"1", duration)
            .await
            .map_err(cache_err)?;
        cache
            .delete(&fail_key(identifier))
            .await
            .map_err(cache_err)?;
        return Ok(newly);
    }
    Ok(false)
}

/// Forgets failures after a success.
pub async fn reset(cache: &dyn Cache, identifier: &str) -> Result<(), AppError> {
    cache.delete(&fail_key(identifier)).await.map_err(cache_err)
}

/// Lifts a lock and its counter (admin unlock).
pub async fn unlock(cache: &dyn Cache, identifier: &str) -> Result<(), AppError> {
    cache
        .delete(&lock_key(identifier))
        .await
        .map_err(cache_err)?;
    cache.delete(&fail_key(identifier)).await.map_err(cache_err)
}
