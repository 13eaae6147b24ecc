//! Sign-in through an upstream identity provider (OIDC or plain OAuth2).
//!
//! ```text
//!  start ──▶ flow state in the cache (state → nonce, PKCE verifier, next, mode, browser)
//!    │        302 to the provider
//!  callback ──▶ take the state (single use, same browser) ──▶ exchange the code,
//!    verify the id_token / read userinfo ──▶ resolve (provider, subject) to an account
//!    ──▶ login::login_upstream (lockout, status, MFA, tenancy, single-session) ──▶ tokens
//! ```
//!
//! Account linking is the dangerous part. A new upstream subject is linked to an existing
//! local account only when the provider opts in (`link_by_verified_email`), the provider
//! says the e-mail is verified, and the local account's e-mail is verified too; otherwise
//! the answer is `SSO_LINK_REQUIRED` and the owner links it from their account page.

pub mod admin;
pub mod config;
pub mod upstream;

use crate::audit::{AuditExt, event};
use crate::login::{LoginOptions, LoginOutcome};
use crate::service::{Principal, RequestMeta, Service};
use crate::tokens::{digest_hex, opaque_token};
use config::{ProviderConfig, ProviderKind};
use gatehouse_domain::ids::new_id;
use gatehouse_domain::model::{Account, AccountStatus, TokenKind};
use gatehouse_domain::ports::NewAccount;
use gatehouse_domain::sso::{ExternalIdentity, Unlink};
use gatehouse_domain::values::Email;
use gatehouse_domain::{AppError, Code, FieldError, Id};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;
use upstream::{AuthRequest, Upstream, UpstreamUser};

/// How long a started sign-in may take at the provider.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// Linking needs a session at most this old.
pub const LINK_MAX_SESSION_AGE_MS: i64 = 10 * 60 * 1000;

/// The SSO part of the service: the back channel and the buttons last seen.
pub struct Registry {
    pub(crate) upstream: Upstream,
    /// (id, name) of the enabled stored providers, as last read (for the sign-in page,
    /// which renders without a store call).
    stored_buttons: Mutex<Vec<(String, String)>>,
    /// `allowPasswordLogin` as last read (the sign-in page hides its password form when
    /// it is off and a provider button is there instead).
    password_login: std::sync::atomic::AtomicBool,
}

impl Registry {
    pub fn new(cfg: &config::SsoConfig) -> Result<Self, AppError> {
        Ok(Self {
            upstream: Upstream::new(cfg)?,
            stored_buttons: Mutex::new(Vec::new()),
            password_login: std::sync::atomic::AtomicBool::new(true),
        })
    }
}

/// What a started flow is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Login,
    Link,
}

/// A started flow, kept server-side under the digest of its `state`.
#[derive(Serialize, Deserialize)]
struct Flow {
    provider: String,
    nonce: String,
    verifier: Option<String>,
    next: Option<String>,
    mode: Mode,
    /// SHA-256 (hex) of the browser cookie the flow is bound to.
    browser: String,
    /// Link mode: the signed-in account.
    account: Option<Id>,
    workspace: Option<String>,
}

/// How a browser callback ended.
#[derive(Debug)]
pub enum Finished {
    /// A sign-in: tokens or the next owed step, and where to go after.
    SignedIn(Box<LoginOutcome>, Option<String>),
    /// An identity was linked to the signed-in account.
    Linked(Option<String>),
}

/// What the start of a flow needs from the HTTP layer.
pub struct StartRequest<'a> {
    /// The value of this browser's SSO cookie (the flow is bound to it).
    pub browser: &'a str,
    pub next: Option<String>,
    pub workspace: Option<String>,
    /// Link mode: the signed-in principal (web session).
    pub link: Option<&'a Principal>,
}

/// An identity as the API lists it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityView {
    #[serde(flatten)]
    pub identity: ExternalIdentity,
    /// The provider's display name, when it is still configured.
    pub provider_name: Option<String>,
}

fn state_key(state: &str) -> String {
    format!("sso:{}", digest_hex(state))
}

/// Audit reason for a refused sign-in: the catalog code, never a provider message.
fn reason(e: &AppError) -> &'static str {
    e.code.as_str()
}

impl Service {
    /// The callback URL of provider `id`.
    pub fn sso_callback_url(&self, id: &str) -> String {
        format!(
            "{}/api/v1/auth/sso/{id}/callback",
            self.cfg.sso.public_url.trim_end_matches('/')
        )
    }

    /// Every provider, config file first, then stored ones (secrets opened).
    pub async fn sso_providers(&self) -> Result<Vec<ProviderConfig>, AppError> {
        let mut all = self.cfg.sso.providers.clone();
        for stored in self.store.stored_providers().await? {
            if all.iter().any(|p| p.id == stored.id) {
                continue;
            }
            all.push(self.open_stored(&stored)?);
        }
        let buttons = all
            .iter()
            .filter(|p| p.enabled && !self.cfg.sso.providers.iter().any(|c| c.id == p.id))
            .map(|p| (p.id.clone(), p.name.clone()))
            .collect();
        if let Ok(mut b) = self.sso.stored_buttons.lock() {
            *b = buttons;
        }
        Ok(all)
    }

    /// The enabled providers as (id, name), for buttons: the configured ones and the stored
    /// ones as last read (see [`Service::sso_providers`]). No I/O.
    pub fn sso_buttons(&self) -> Vec<(String, String)> {
        let mut out: Vec<_> = self
            .cfg
            .sso
            .providers
            .iter()
            .filter(|p| p.enabled)
            .map(|p| (p.id.clone(), p.name.clone()))
            .collect();
        if let Ok(b) = self.sso.stored_buttons.lock() {
            out.extend(b.iter().cloned());
        }
        out
    }

    /// Reads what the sign-in page shows (stored providers' buttons, whether password
    /// sign-in is on), so [`Service::sso_buttons`] and [`Service::password_form_shown`]
    /// answer without I/O.
    pub async fn refresh_sign_in_page(&self) -> Result<(), AppError> {
        self.sso_providers().await?;
        let allowed = self.instance_settings().await?.allow_password_login;
        self.sso
            .password_login
            .store(allowed, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Whether the sign-in page shows its password form: always, unless password sign-in
    /// is off and there is a provider to sign in with instead (admins, who may still use
    /// their password, sign in through the API then).
    pub fn password_form_shown(&self) -> bool {
        self.sso
            .password_login
            .load(std::sync::atomic::Ordering::Relaxed)
            || self.sso_buttons().is_empty()
    }

    /// An enabled provider; `NOT_FOUND` for an unknown or disabled one.
    pub async fn sso_provider(&self, id: &str) -> Result<ProviderConfig, AppError> {
        if let Some(p) = self.cfg.sso.providers.iter().find(|p| p.id == id) {
            return p.enabled.then(|| p.clone()).ok_or(Code::NOT_FOUND.into());
        }
        if !config::valid_slug(id) {
            return Err(Code::NOT_FOUND.into());
        }
        match self.store.stored_provider(id).await? {
            Some(s) => {
                let p = self.open_stored(&s)?;
                p.enabled.then_some(p).ok_or(Code::NOT_FOUND.into())
            }
            None => Err(Code::NOT_FOUND.into()),
        }
    }

    /// Starts a browser flow: stores its state and returns the provider URL to redirect to.
    pub async fn sso_start(
        &self,
        id: &str,
        req: StartRequest<'_>,
        meta: &RequestMeta,
    ) -> Result<String, AppError> {
        let p = self.sso_provider(id).await?;
        let (mode, account) = match req.link {
            Some(principal) => {
                let session = self
                    .store
                    .session_by_id(principal.session_id)
                    .await?
                    .ok_or(Code::AUTHENTICATION_REQUIRED)?;
                if self.now().millis() - session.created_at.millis() > LINK_MAX_SESSION_AGE_MS {
                    return Err(Code::SSO_REAUTHENTICATION_REQUIRED.into());
                }
                (Mode::Link, Some(principal.account_id))
            }
            None => (Mode::Login, None),
        };
        let state = opaque_token()?;
        let nonce = opaque_token()?;
        let verifier = p.pkce.then(opaque_token).transpose()?;
        let redirect_uri = self.sso_callback_url(&p.id);
        let url = self
            .sso
            .upstream
            .authorize_url(
                &p,
                &AuthRequest {
                    state: &state,
                    nonce: Some(&nonce),
                    pkce_verifier: verifier.as_deref(),
                    redirect_uri: &redirect_uri,
                },
            )
            .await
            .inspect_err(
                |e| tracing::warn!(provider = %p.id, detail = ?e.detail(), "SSO start failed"),
            );
        let url = match url {
            Ok(u) => u,
            Err(e) => {
                self.audit(
                    event(meta, self.now(), "sso.login", "failure")
                        .reason(reason(&e))
                        .details(serde_json::json!({ "provider": p.id, "stage": "start" })),
                )
                .await;
                return Err(e);
            }
        };
        let flow = Flow {
            provider: p.id.clone(),
            nonce,
            verifier,
            next: req.next,
            mode,
            browser: digest_hex(req.browser),
            account,
            workspace: req.workspace,
        };
        let bytes =
            serde_json::to_vec(&flow).map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
        self.cache.set(&state_key(&state), &bytes, FLOW_TTL).await?;
        Ok(url)
    }

    /// Completes a browser flow. `iss` is the RFC 9207 parameter, checked when present;
    /// `browser` the SSO cookie of the browser that came back.
    #[allow(clippy::too_many_arguments)]
    pub async fn sso_callback(
        &self,
        id: &str,
        code: &str,
        state: &str,
        iss: Option<&str>,
        browser: Option<&str>,
        opts: &LoginOptions,
        meta: &RequestMeta,
    ) -> Result<Finished, AppError> {
        let result = self
            .sso_callback_inner(id, code, state, iss, browser, opts, meta)
            .await;
        if let Err(e) = &result {
            self.audit(
                event(meta, self.now(), "sso.login", "failure")
                    .reason(reason(e))
                    .details(serde_json::json!({ "provider": id })),
            )
            .await;
            if let Some(detail) = e.detail() {
                tracing::warn!(provider = %id, code = e.code.as_str(), %detail, "SSO callback refused");
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn sso_callback_inner(
        &self,
        id: &str,
        code: &str,
        state: &str,
        iss: Option<&str>,
        browser: Option<&str>,
        opts: &LoginOptions,
        meta: &RequestMeta,
    ) -> Result<Finished, AppError> {
        if state.is_empty() || state.len() > 256 {
            return Err(Code::SSO_STATE_INVALID.into());
        }
        // Single use: whoever takes it first continues; a replay finds nothing.
        let raw = self
            .cache
            .take(&state_key(state))
            .await?
            .ok_or(Code::SSO_STATE_INVALID)?;
        let flow: Flow = serde_json::from_slice(&raw).map_err(|_| Code::SSO_STATE_INVALID)?;
        let same_browser = browser.is_some_and(|b| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                digest_hex(b).as_bytes(),
                flow.browser.as_bytes(),
            ))
        });
        if flow.provider != id || !same_browser {
            return Err(Code::SSO_STATE_INVALID.into());
        }
        let p = self.sso_provider(id).await?;
        if p.kind == ProviderKind::Oidc {
            match iss {
                Some(iss) if Some(iss) != p.issuer.as_deref() => {
                    return Err(AppError::internal(
                        Code::SSO_STATE_INVALID,
                        "the iss parameter names another issuer (mix-up)",
                    ));
                }
                None if self
                    .sso
                    .upstream
                    .sends_iss(p.issuer.as_deref().unwrap_or_default())
                    .await? =>
                {
                    return Err(AppError::internal(
                        Code::SSO_STATE_INVALID,
                        "the provider promises an iss parameter and none came (mix-up)",
                    ));
                }
                _ => {}
            }
        }
        if code.is_empty() || code.len() > 2048 {
            return Err(Code::SSO_STATE_INVALID.into());
        }
        let redirect_uri = self.sso_callback_url(&p.id);
        let user = self
            .sso
            .upstream
            .finish(
                &p,
                code,
                &AuthRequest {
                    state,
                    nonce: Some(&flow.nonce),
                    pkce_verifier: flow.verifier.as_deref(),
                    redirect_uri: &redirect_uri,
                },
            )
            .await?;
        match flow.mode {
            Mode::Link => {
                let account_id = flow.account.ok_or(Code::SSO_STATE_INVALID)?;
                self.link_upstream(&p, &user, account_id, meta).await?;
                Ok(Finished::Linked(flow.next))
            }
            Mode::Login => {
                let opts = LoginOptions {
                    workspace: flow.workspace.clone().or_else(|| opts.workspace.clone()),
                    ..opts.clone()
                };
                let outcome = self
                    .sign_in_upstream(&p, &user, &opts, TokenKind::Web, meta)
                    .await?;
                Ok(Finished::SignedIn(Box::new(outcome), flow.next))
            }
        }
    }

    /// The SPA / native flow: the client ran PKCE itself and hands over the code.
    #[allow(clippy::too_many_arguments)]
    pub async fn sso_exchange(
        &self,
        id: &str,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        nonce: Option<&str>,
        opts: &LoginOptions,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        let p = self.sso_provider(id).await?;
        if !p.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err(AppError::validation(vec![FieldError::new(
                "redirectUri",
                "invalid",
            )]));
        }
        let result = async {
            let user = self
                .sso
                .upstream
                .finish(
                    &p,
                    code,
                    &AuthRequest {
                        state: "",
                        nonce,
                        pkce_verifier: Some(verifier),
                        redirect_uri,
                    },
                )
                .await?;
            self.sign_in_upstream(&p, &user, opts, TokenKind::Refresh, meta)
                .await
        }
        .await;
        if let Err(e) = &result {
            self.audit(
                event(meta, self.now(), "sso.login", "failure")
                    .reason(reason(e))
                    .details(serde_json::json!({ "provider": id, "flow": "exchange" })),
            )
            .await;
            if let Some(detail) = e.detail() {
                tracing::warn!(provider = %id, code = e.code.as_str(), %detail, "SSO exchange refused");
            }
        }
        result
    }

    /// Resolves the upstream user to an account (linking or registering by the rules) and
    /// enters the login state machine.
    async fn sign_in_upstream(
        &self,
        p: &ProviderConfig,
        user: &UpstreamUser,
        opts: &LoginOptions,
        kind: TokenKind,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        let account = self.resolve_upstream(p, user, meta).await?;
        let upstream_mfa = p.trust_upstream_mfa && user.mfa;
        let outcome = self
            .login_upstream(account.clone(), upstream_mfa, opts, kind, meta)
            .await?;
        self.audit(
            event(meta, self.now(), "sso.login", "success")
                .actor(Some(account.id))
                .target(Some(account.id))
                .details(serde_json::json!({
                    "provider": p.id,
                    "upstreamMfa": upstream_mfa,
                    "completed": matches!(outcome, LoginOutcome::Done(_)),
                })),
        )
        .await;
        Ok(outcome)
    }

    /// (provider, subject) → account; a new subject is registered, linked by verified
    /// e-mail, or refused (see the module docs).
    async fn resolve_upstream(
        &self,
        p: &ProviderConfig,
        user: &UpstreamUser,
        meta: &RequestMeta,
    ) -> Result<Account, AppError> {
        let now = self.now();
        if let Some(identity) = self.store.identity_by_subject(&p.id, &user.subject).await? {
            self.store
                .touch_identity(identity.id, user.email.as_deref(), now)
                .await?;
            return self
                .store
                .account_by_id(identity.account_id)
                .await?
                .ok_or_else(|| {
                    AppError::internal(Code::INTERNAL_ERROR, "identity without account")
                });
        }
        if !p.domain_allowed(user.email.as_deref()) {
            return Err(Code::SSO_IDENTIFIER_REJECTED.into());
        }
        // An account needs an e-mail address.
        let email = user
            .email
            .as_deref()
            .and_then(Email::parse)
            .ok_or(Code::SSO_IDENTIFIER_REJECTED)?;
        let identity = ExternalIdentity {
            id: new_id(),
            provider: p.id.clone(),
            subject: user.subject.clone(),
            account_id: new_id(),
            email: Some(email.as_str().to_string()),
            created_account: false,
            created_at: now,
            last_used_at: Some(now),
        };
        if let Some(existing) = self.store.account_by_email(email.as_str()).await? {
            let linkable = p.link_by_verified_email
                && user.email_verified
                && self.store.email_verified(existing.id).await?;
            if !linkable {
                return Err(Code::SSO_LINK_REQUIRED.into());
            }
            let identity = ExternalIdentity {
                account_id: existing.id,
                ..identity
            };
            let audit = event(meta, now, "sso.link", "success")
                .actor(Some(existing.id))
                .target(Some(existing.id))
                .details(serde_json::json!({ "provider": p.id, "by": "verified_email" }));
            self.store.link_identity(&identity, &audit).await?;
            return Ok(existing);
        }
        if !p.auto_register {
            return Err(Code::REGISTRATION_DISABLED.into());
        }
        let display_name = user
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| n.chars().take(100).collect::<String>());
        let account = Account {
            id: identity.account_id,
            email: email.as_str().to_string(),
            username: None,
            display_name,
            status: AccountStatus::Active,
            must_change_password: false,
            roles: vec!["user".into()],
            created_at: now,
            updated_at: now,
            last_login_at: None,
            kind: gatehouse_domain::model::AccountKind::User,
        };
        let identity = ExternalIdentity {
            created_account: true,
            ..identity
        };
        let audit = event(meta, now, "sso.register", "success")
            .actor(Some(account.id))
            .target(Some(account.id))
            .details(serde_json::json!({ "provider": p.id, "email": account.email }));
        let new = NewAccount {
            account: account.clone(),
            password_hash: None,
            email_verified: user.email_verified,
        };
        match self
            .store
            .register_with_identity(&new, &identity, &audit)
            .await
        {
            Ok(()) => Ok(account),
            // Someone took the e-mail (or the subject) in between: never link by accident.
            Err(gatehouse_domain::ports::StoreError::Conflict) => {
                Err(Code::SSO_LINK_REQUIRED.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Links the upstream user to the signed-in account (link mode).
    async fn link_upstream(
        &self,
        p: &ProviderConfig,
        user: &UpstreamUser,
        account_id: Id,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let now = self.now();
        let account = self
            .store
            .account_by_id(account_id)
            .await?
            .filter(|a| a.status == AccountStatus::Active)
            .ok_or(Code::ACCOUNT_DISABLED)?;
        if let Some(existing) = self.store.identity_by_subject(&p.id, &user.subject).await? {
            if existing.account_id == account.id {
                return Ok(());
            }
            return Err(Code::CONFLICT.into());
        }
        if !p.domain_allowed(user.email.as_deref()) {
            return Err(Code::SSO_IDENTIFIER_REJECTED.into());
        }
        let identity = ExternalIdentity {
            id: new_id(),
            provider: p.id.clone(),
            subject: user.subject.clone(),
            account_id: account.id,
            email: user.email.clone(),
            created_account: false,
            created_at: now,
            last_used_at: Some(now),
        };
        let audit = event(meta, now, "sso.link", "success")
            .actor(Some(account.id))
            .target(Some(account.id))
            .details(serde_json::json!({ "provider": p.id, "by": "signed_in" }));
        match self.store.link_identity(&identity, &audit).await {
            Err(gatehouse_domain::ports::StoreError::Conflict) => Err(Code::CONFLICT.into()),
            other => other.map_err(AppError::from),
        }
    }

    /// The account's linked identities.
    pub async fn sso_identities(&self, account_id: Id) -> Result<Vec<IdentityView>, AppError> {
        let providers = self.sso_providers().await.unwrap_or_default();
        Ok(self
            .store
            .identities_of(account_id)
            .await?
            .into_iter()
            .map(|identity| IdentityView {
                provider_name: providers
                    .iter()
                    .find(|p| p.id == identity.provider)
                    .map(|p| p.name.clone()),
                identity,
            })
            .collect())
    }

    /// Removes one of the account's identities, unless it is its last way to sign in.
    pub async fn sso_unlink(
        &self,
        account_id: Id,
        identity_id: Id,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let now = self.now();
        let audit = event(meta, now, "sso.unlink", "success")
            .actor(Some(account_id))
            .target(Some(account_id))
            .details(serde_json::json!({ "identityId": identity_id }));
        match self
            .store
            .unlink_identity(account_id, identity_id, &audit)
            .await?
        {
            Unlink::Removed => Ok(()),
            Unlink::NotFound => Err(Code::NOT_FOUND.into()),
            Unlink::LastWay => {
                self.audit(
                    event(meta, now, "sso.unlink", "failure")
                        .actor(Some(account_id))
                        .target(Some(account_id))
                        .reason("SSO_LAST_SIGN_IN_METHOD"),
                )
                .await;
                Err(Code::SSO_LAST_SIGN_IN_METHOD.into())
            }
        }
    }
}

/// A fresh value for the browser-binding cookie.
pub fn new_browser_binding() -> Result<String, AppError> {
    opaque_token()
}
