//! The service: ports, keys and settings in one handle that every flow hangs off.

use crate::config::CoreConfig;
use crate::csrf::Csrf;
use crate::jwt::Keyring;
use crate::password::Hasher;
use crate::tokens::{b64url, b64url_decode, random_bytes};
use gatehouse_domain::ports::{Cache, Clock, Store};
use gatehouse_domain::{AppError, Code, Id, Timestamp};
use std::sync::Arc;
use std::time::Duration;

/// Who is calling, as proven by a bearer token, a personal access token or a web-session
/// cookie.
#[derive(Clone, Debug)]
pub struct Principal {
    pub account_id: Id,
    /// The session; for a personal access token, the token's id (it has no session).
    pub session_id: Id,
    /// The access token's `jti` and expiry (bearer only), for the denylist at logout.
    pub jti: Option<(String, Timestamp)>,
    pub via: AuthVia,
    /// The workspace and branch of a branch-scoped token or session (`None`: account scope).
    pub workspace_id: Option<Id>,
    pub branch_id: Option<Id>,
    /// Set when the caller presented a long-lived credential instead of a session.
    pub token: Option<TokenGrant>,
}

/// A long-lived credential a request was made with: which one, and what it may do.
#[derive(Clone, Debug)]
pub struct TokenGrant {
    pub kind: CredentialKind,
    pub id: Id,
    pub name: String,
    /// Caps the owner's permissions (`None`: no cap).
    pub scopes: Option<crate::authz::PermissionSet>,
}

/// The kinds of long-lived credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// A personal access token (`gatehouse_pat_…`).
    Pat,
    /// A service account's API key (`gatehouse_ak_…` with its secret).
    ApiKey,
}

impl CredentialKind {
    /// The wire name (`/auth/me`'s `credential.kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Pat => "pat",
            CredentialKind::ApiKey => "api_key",
        }
    }
}

impl Principal {
    /// `SESSION_REQUIRED` for a caller holding only a long-lived credential: what manages
    /// credentials and sessions (passwords, two-factor, tokens, logout) needs a sign-in.
    pub fn require_session(&self) -> Result<(), AppError> {
        match self.token {
            Some(_) => Err(Code::SESSION_REQUIRED.into()),
            None => Ok(()),
        }
    }

    /// What the caller holds once its credential's scopes are applied.
    pub fn cap(&self, held: crate::authz::PermissionSet) -> crate::authz::PermissionSet {
        match self.token.as_ref().and_then(|t| t.scopes) {
            Some(scopes) => held.intersect(&scopes),
            None => held,
        }
    }
}

/// How the caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthVia {
    Bearer,
    Cookie,
}

/// Request facts the flows record (audit) but never trust for authorization.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// Every port and policy the flows need.
pub struct Service {
    pub store: Arc<dyn Store>,
    pub cache: Arc<dyn Cache>,
    pub clock: Arc<dyn Clock>,
    pub hasher: Hasher,
    pub keys: Keyring,
    pub csrf: Csrf,
    pub cfg: CoreConfig,
    pub metrics: crate::metrics::Metrics,
    /// Upstream sign-in: the back-channel client and discovery cache.
    pub sso: crate::sso::Registry,
    /// The mailer and this instance's outbox sender.
    pub mail: crate::mail::MailRuntime,
    pub(crate) accounts: crate::read_cache::ReadCache<Id, gatehouse_domain::model::Account>,
    pub(crate) settings: crate::read_cache::ReadCache<(), crate::admin::InstanceSettings>,
}

const CSRF_SECRET_KEY: &str = "secret.csrf";
const CSRF_MAX_AGE_SECS: i64 = 12 * 3600;

impl Service {
    /// Wires the service: ensures a signing key exists, loads keys and the shared CSRF
    /// secret from the store.
    pub async fn new(
        store: Arc<dyn Store>,
        cache: Arc<dyn Cache>,
        clock: Arc<dyn Clock>,
        cfg: CoreConfig,
    ) -> Result<Self, AppError> {
        let hasher = Hasher::new(&cfg.password)?;
        let keys = Keyring::new(cfg.jwt.clone(), &cfg.secrets);
        let now = clock.now();
        keys.ensure_key(store.as_ref(), now).await?;
        keys.load(store.as_ref(), now).await?;
        let fresh = serde_json::Value::String(b64url(&random_bytes::<32>()?));
        let stored = store
            .setting_or_insert(CSRF_SECRET_KEY, &fresh, now)
            .await?;
        let secret = stored
            .as_str()
            .and_then(b64url_decode)
            .filter(|s| s.len() >= 32)
            .ok_or_else(|| {
                AppError::internal(Code::INTERNAL_ERROR, "stored CSRF secret is malformed")
            })?;
        let csrf = Csrf::new(secret, CSRF_MAX_AGE_SECS);
        let sso = crate::sso::Registry::new(&cfg.sso)?;
        let mailer = cfg
            .mail
            .mailer()
            .map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
        Ok(Self {
            store,
            cache,
            clock,
            hasher,
            keys,
            csrf,
            sso,
            mail: crate::mail::MailRuntime::new(mailer),
            accounts: crate::read_cache::ReadCache::new(cfg.session.account_cache_ms),
            settings: crate::read_cache::ReadCache::new(cfg.session.account_cache_ms),
            cfg,
            metrics: Default::default(),
        })
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Reloads signing keys and rebuilds the revocation marks every
    /// `jwt.key_refresh_seconds`, so a rotation made on one instance reaches all of them
    /// and a flushed cache relearns every logout.
    pub fn spawn_key_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let svc = Arc::clone(self);
        let every = Duration::from_secs(svc.cfg.jwt.key_refresh_seconds.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = svc.keys.load(svc.store.as_ref(), svc.now()).await {
                    tracing::warn!(error = %e, detail = ?e.detail(), "signing key reload failed; keeping the old keys");
                }
                if let Err(e) = svc.restore_revocations().await {
                    tracing::warn!(error = %e, detail = ?e.detail(), "revocation marks not rebuilt; will retry");
                }
            }
        })
    }

    /// Deletes audit events older than `audit.retention_days`, every
    /// `audit.prune_interval_seconds` (all instances may prune; deleting twice is harmless).
    pub fn spawn_audit_pruning(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if self.cfg.audit.retention_days == 0 {
            return None;
        }
        let svc = Arc::clone(self);
        let every = Duration::from_secs(svc.cfg.audit.prune_interval_seconds.max(1));
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = svc.prune_audit().await {
                    tracing::warn!(error = %e, detail = ?e.detail(), "audit pruning failed; will retry");
                }
            }
        }))
    }

    /// One pruning pass; returns how many events were deleted.
    pub async fn prune_audit(&self) -> Result<u64, AppError> {
        let keep = Duration::from_secs(self.cfg.audit.retention_days.saturating_mul(24 * 3600));
        let cutoff = Timestamp::from_millis(
            self.now()
                .millis()
                .saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX)),
        );
        let n = self.store.prune_audit(cutoff).await?;
        if n > 0 {
            tracing::info!(deleted = n, "pruned audit events past retention");
        }
        Ok(n)
    }

    /// Metrics in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.metrics
            .render(self.hasher.queue_depth(), self.hasher.wait_histogram())
    }

    /// Rebuilds the cache's session-revocation marks from the store (the source of
    /// truth): every session revoked within an access token's lifetime gets its mark back
    /// for what is left of it. Run at start and every `jwt.key_refresh_seconds`, so a
    /// restarted memory cache or a flushed Redis forgets no logout for longer than that.
    pub async fn restore_revocations(&self) -> Result<usize, AppError> {
        let now = self.now();
        let window = Duration::from_secs(self.cfg.jwt.access_ttl_seconds + 60);
        let since = Timestamp::from_millis(
            now.millis()
                .saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX)),
        );
        let revoked = self.store.revoked_since(since).await?;
        for (id, at) in &revoked {
            let left = window.saturating_sub(at.until(now));
            if !left.is_zero() {
                self.cache.set(&format!("srev:{id}"), b"1", left).await?;
            }
        }
        let denied = self.store.denied_tokens(now).await?;
        for (jti, expires_at) in &denied {
            let left = now.until(*expires_at) + Duration::from_secs(10);
            self.cache.set(&format!("deny:{jti}"), b"1", left).await?;
        }
        Ok(revoked.len() + denied.len())
    }

    /// Marks sessions revoked in the cache for as long as any of their access tokens live,
    /// so every instance refuses those tokens on the next request.
    pub async fn mark_sessions_revoked(&self, ids: &[Id]) -> Result<(), AppError> {
        let ttl = Duration::from_secs(self.cfg.jwt.access_ttl_seconds + 60);
        for id in ids {
            self.cache.set(&format!("srev:{id}"), b"1", ttl).await?;
        }
        Ok(())
    }

    /// Store and cache reachability, for `/ready`.
    pub async fn readiness(&self) -> Vec<(&'static str, &'static str, bool)> {
        let store = self.store.ping().await.is_ok();
        let cache = self.cache.ping().await.is_ok();
        vec![
            ("store", self.store.backend(), store),
            ("cache", self.cache.backend(), cache),
        ]
    }
}
