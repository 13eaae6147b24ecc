//! Fixed-window rate limits (a minute and an hour) counted in the `Cache` port, so every
//! instance sharing Redis enforces one budget. Keys are a route class plus the client IP,
//! or the normalized login identifier.

use crate::service::Service;
use gatehouse_domain::ports::Cache;
use gatehouse_domain::{AppError, Code, Timestamp};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Limits per window (`[rate_limit]`). 0 means no limit for that window.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Login, login steps, password change, per client IP.
    pub credential_per_minute: u32,
    pub credential_per_hour: u32,
    /// Refresh-token rotation, per client IP.
    pub refresh_per_minute: u32,
    pub refresh_per_hour: u32,
    /// Every other route, per client IP.
    pub default_per_minute: u32,
    pub default_per_hour: u32,
    /// Login attempts per normalized identifier, from any IP.
    pub identifier_per_minute: u32,
    pub identifier_per_hour: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            credential_per_minute: 20,
            credential_per_hour: 200,
            refresh_per_minute: 120,
            refresh_per_hour: 3000,
            default_per_minute: 1200,
            default_per_hour: 36000,
            identifier_per_minute: 10,
            identifier_per_hour: 100,
        }
    }
}

/// Which budget a request draws on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Credential,
    Refresh,
    Default,
}

impl Class {
    /// Label for keys and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Credential => "credential",
            Class::Refresh => "refresh",
            Class::Default => "default",
        }
    }
}

impl RateLimitConfig {
    /// (per minute, per hour) for a class.
    pub fn limits(&self, class: Class) -> (u32, u32) {
        match class {
            Class::Credential => (self.credential_per_minute, self.credential_per_hour),
            Class::Refresh => (self.refresh_per_minute, self.refresh_per_hour),
            Class::Default => (self.default_per_minute, self.default_per_hour),
        }
    }
}

/// The outcome of counting one request, for the `X-RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the deciding window starts over.
    pub reset_secs: u64,
}

/// Counts one request against `key` in both windows and reports the tighter one.
pub async fn hit(
    cache: &dyn Cache,
    now: Timestamp,
    key: &str,
    (per_minute, per_hour): (u32, u32),
) -> Result<Option<Decision>, AppError> {
    let secs = now.unix_seconds().max(0);
    let mut decision: Option<Decision> = None;
    for (len, limit) in [(60i64, per_minute), (3600i64, per_hour)] {
        if limit == 0 {
            continue;
        }
        let index = secs / len;
        let reset = u64::try_from((index + 1) * len - secs).unwrap_or(1);
        let n = cache
            .incr(
                &format!("rl:{key}:{len}:{index}"),
                Duration::from_secs(reset + 1),
            )
            .await?;
        let used = u32::try_from(n).unwrap_or(u32::MAX);
        let d = Decision {
            allowed: used <= limit,
            limit,
            remaining: limit.saturating_sub(used),
            reset_secs: reset,
        };
        decision = Some(match decision {
            None => d,
            // A refusal wins; between refusals the longer wait; else the fewer remaining.
            Some(prev) if !prev.allowed && (d.allowed || prev.reset_secs >= d.reset_secs) => prev,
            Some(prev) if prev.allowed && d.allowed && prev.remaining <= d.remaining => prev,
            Some(_) => d,
        });
    }
    Ok(decision)
}

/// Login attempts per identifier, whatever the IP (spreading a guess over many addresses
/// does not help). `RATE_LIMIT_EXCEEDED` with `Retry-After` when over.
pub async fn check_identifier(svc: &Service, identifier: &str) -> Result<(), AppError> {
    let cfg = &svc.cfg.rate_limit;
    if !cfg.enabled {
        return Ok(());
    }
    let limits = (cfg.identifier_per_minute, cfg.identifier_per_hour);
    match hit(
        svc.cache.as_ref(),
        svc.now(),
        &format!("id:{identifier}"),
        limits,
    )
    .await?
    {
        Some(d) if !d.allowed => {
            svc.metrics
                .inc("gatehouse_rate_limited_total", &[("class", "identifier")]);
            Err(AppError::new(Code::RATE_LIMIT_EXCEEDED).retry_after(d.reset_secs.max(1)))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_domain::ports::ManualClock;
    use std::sync::Arc;

    #[tokio::test]
    async fn the_minute_window_refuses_and_starts_over() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
        let cache = gatehouse_cache::MemoryCache::new(clock.clone());
        let now = || gatehouse_domain::ports::Clock::now(clock.as_ref());
        for i in 0..3u32 {
            let d = hit(&cache, now(), "k", (3, 100)).await.unwrap().unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, 2 - i);
        }
        let d = hit(&cache, now(), "k", (3, 100)).await.unwrap().unwrap();
        assert!(!d.allowed && d.reset_secs <= 60);
        clock.advance(Duration::from_secs(d.reset_secs));
        assert!(
            hit(&cache, now(), "k", (3, 100))
                .await
                .unwrap()
                .unwrap()
                .allowed
        );
    }

    #[tokio::test]
    async fn the_hour_window_holds_across_minutes() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
        let cache = gatehouse_cache::MemoryCache::new(clock.clone());
        let now = || gatehouse_domain::ports::Clock::now(clock.as_ref());
        for _ in 0..2 {
            assert!(
                hit(&cache, now(), "h", (10, 2))
                    .await
                    .unwrap()
                    .unwrap()
                    .allowed
            );
            clock.advance(Duration::from_secs(61));
        }
        let d = hit(&cache, now(), "h", (10, 2)).await.unwrap().unwrap();
        assert!(!d.allowed);
        assert!(d.reset_secs > 60, "the hour window decides: {d:?}");
        assert_eq!(hit(&cache, now(), "none", (0, 0)).await.unwrap(), None);
    }
}
