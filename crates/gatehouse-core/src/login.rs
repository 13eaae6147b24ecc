//! Sign-in as a typed state machine.
//!
//! Every way in (today the password; later SSO, a passkey, an e-mail code) proves a first
//! [`Method`], builds one [`LoginState`] and hands it to [`Service::advance`]. `advance` asks
//! [`next_step`] what the sign-in still owes: nothing (tokens are issued), or a [`Step`],
//! for which a single-use challenge is opened that carries the state to the next call.
//! Each step's handler proves one more method and calls `advance` again.
//!
//! ```text
//!  entry point ──proves Password──▶ advance ──▶ next_step ──None──▶ issue ──▶ Done(tokens)
//!                                      ▲            │
//!                                      │            └─Some(step)──▶ challenge ──▶ Step(…)
//!      step handler (ChangePassword,   │                                  │
//!      VerifySecondFactor, EnrollTotp) └────────proves one more method◀───┘
//! ```
//!
//! The decision ([`next_step`]) is a pure function of what the account requires, the
//! instance's [`MfaPolicy`] and the methods proven so far, so each transition is unit-tested
//! without a store.

use crate::audit::{AuditExt, event};
use crate::auth::{Issued, identifiers};
use crate::lockout::{self, Subject};
use crate::mfa::Keep;
use crate::password::{Verified, check_policy};
use crate::service::{RequestMeta, Service};
use crate::tenancy::LoginContext;
use crate::tokens::{digest, digest_hex, opaque_token};
use gatehouse_domain::ids::new_id;
use gatehouse_domain::model::{
    Account, AccountStatus, LoginCommit, NewToken, Session, SessionStatus, TokenKind,
};
use gatehouse_domain::values::Identifier;
use gatehouse_domain::{AppError, Code, FieldError, Id, Secret};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Wrong codes a login challenge survives; the next one ends it.
pub const MAX_CODE_ATTEMPTS: i64 = 5;
const LONGEST_LOGIN_PASSWORD: usize = 1024;

/// A step a sign-in can owe before tokens are issued. The wire name (`nextAction.type`)
/// is [`Step::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// The account must choose a new password (`change_password`).
    #[serde(rename = "change_password")]
    ChangePassword,
    /// The instance requires a second factor and the account has none: set up TOTP
    /// (`enroll_totp`).
    #[serde(rename = "enroll_totp")]
    EnrollTotp,
    /// Prove the second factor: a TOTP or recovery code (`verify_totp`).
    #[serde(rename = "verify_totp")]
    VerifySecondFactor,
    /// Confirm the e-mail address with the mailed code (`verify_email`).
    #[serde(rename = "verify_email")]
    VerifyEmail,
}

impl Step {
    /// The name clients see in `nextAction.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::ChangePassword => "change_password",
            Step::EnrollTotp => "enroll_totp",
            Step::VerifySecondFactor => "verify_totp",
            Step::VerifyEmail => "verify_email",
        }
    }

    /// The catalog code a challenge for this step answers with.
    pub fn code(self) -> Code {
        match self {
            Step::ChangePassword => Code::AUTH_PASSWORD_CHANGE_REQUIRED,
            Step::EnrollTotp => Code::AUTH_MFA_ENROLLMENT_REQUIRED,
            Step::VerifySecondFactor => Code::AUTH_MFA_REQUIRED,
            Step::VerifyEmail => Code::EMAIL_NOT_VERIFIED,
        }
    }
}

/// A way the caller proved who they are during this sign-in (stored on the session as
/// [`Method::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    #[serde(rename = "pwd")]
    Password,
    #[serde(rename = "totp")]
    Totp,
    #[serde(rename = "recovery_code")]
    RecoveryCode,
    /// Signed in at an upstream provider (SSO).
    #[serde(rename = "sso")]
    Sso,
    /// The upstream provider's id_token shows MFA (`amr`) and the provider is trusted for
    /// it (`trust_upstream_mfa`): counts as the second factor.
    #[serde(rename = "sso_mfa")]
    UpstreamMfa,
}

impl Method {
    /// The stored and audited name (`pwd`, `totp`, `recovery_code`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Password => "pwd",
            Method::Totp => "totp",
            Method::RecoveryCode => "recovery_code",
            Method::Sso => "sso",
            Method::UpstreamMfa => "sso_mfa",
        }
    }

    /// True for methods that count as the second factor.
    pub fn is_second_factor(self) -> bool {
        matches!(
            self,
            Method::Totp | Method::RecoveryCode | Method::UpstreamMfa
        )
    }
}

/// The instance's two-factor policy (`mfaPolicy` in the settings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MfaPolicy {
    /// No second factor is asked, and enrolment is refused.
    Off,
    /// Accounts with TOTP are asked for a code; others are not.
    #[default]
    Optional,
    /// Every account must have and use a second factor.
    Required,
}

impl MfaPolicy {
    /// Every policy, in the order the settings page lists them.
    pub const ALL: [MfaPolicy; 3] = [MfaPolicy::Off, MfaPolicy::Optional, MfaPolicy::Required];

    /// The settings value (`off`, `optional`, `required`).
    pub fn as_str(self) -> &'static str {
        match self {
            MfaPolicy::Off => "off",
            MfaPolicy::Optional => "optional",
            MfaPolicy::Required => "required",
        }
    }

    /// The policy a settings value names; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// What the account and the instance require, as far as the next step is concerned.
#[derive(Clone, Copy, Debug)]
pub struct Requirements {
    /// An admin (or the account's creation) requires a new password.
    pub must_change_password: bool,
    /// The account has confirmed TOTP.
    pub has_totp: bool,
    pub policy: MfaPolicy,
    /// The instance requires confirmed e-mail and this account's is not confirmed yet.
    pub email_unverified: bool,
}

/// The step a sign-in owes next, or `None` when tokens may be issued. `trusted`: this
/// browser holds a live trusted-device cookie, which stands in for the second factor.
///
/// Every factor the account has is proven before any required action: someone holding
/// only the password must not be able to set a new one (which would lock the owner out
/// and revoke their sessions and trusted browsers).
pub fn next_step(req: &Requirements, proven: &[Method], trusted: bool) -> Option<Step> {
    let second_factor_owed = req.policy != MfaPolicy::Off
        && req.has_totp
        && !trusted
        && !proven.iter().any(|m| m.is_second_factor());
    if second_factor_owed {
        return Some(Step::VerifySecondFactor);
    }
    if req.email_unverified {
        return Some(Step::VerifyEmail);
    }
    if req.must_change_password {
        return Some(Step::ChangePassword);
    }
    let enrolment_owed = req.policy == MfaPolicy::Required
        && !req.has_totp
        && !proven.iter().any(|m| m.is_second_factor());
    enrolment_owed.then_some(Step::EnrollTotp)
}

/// Everything a sign-in carries from step to step. Between calls it lives in the cache
/// under the challenge token's digest, in the same JSON shape earlier versions wrote.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoginState {
    pub account_id: Id,
    /// What the sign-in ends in: API tokens or a web session.
    #[serde(with = "token_kind")]
    pub kind: TokenKind,
    /// The methods proven so far, in order.
    pub methods: Vec<Method>,
    /// This browser holds a trusted-device cookie, so TOTP is not asked.
    #[serde(default)]
    pub trusted: bool,
    /// The workspace slug the login asked for, resolved once the steps are done.
    #[serde(default)]
    pub workspace: Option<String>,
    /// A stronger hash of the password, to store with the session (first step only; never
    /// written to the cache).
    #[serde(skip)]
    pub rehash: Option<String>,
}

impl LoginState {
    /// A sign-in that has just proven its first method.
    pub fn new(account_id: Id, kind: TokenKind, first: Method) -> Self {
        Self {
            account_id,
            kind,
            methods: vec![first],
            trusted: false,
            workspace: None,
            rehash: None,
        }
    }

    fn has_second_factor(&self) -> bool {
        self.methods.iter().any(|m| m.is_second_factor())
    }
}

/// What the cache holds for an open challenge: the state and the step it waits for.
#[derive(Serialize, Deserialize)]
struct Pending {
    step: Step,
    #[serde(flatten)]
    state: LoginState,
}

/// `TokenKind` as the challenge JSON has always spelled it.
mod token_kind {
    use gatehouse_domain::model::TokenKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(k: &TokenKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(k.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TokenKind, D::Error> {
        let s = String::deserialize(d)?;
        Ok(if s == TokenKind::Web.as_str() {
            TokenKind::Web
        } else {
            TokenKind::Refresh
        })
    }
}

/// A step still owed before tokens are issued.
#[derive(Debug)]
pub struct Challenge {
    pub token: Secret,
    pub step: Step,
    pub code: Code,
    pub expires_in: u64,
    pub account: Account,
}

/// What a sign-in call ended in.
#[derive(Debug)]
pub enum LoginOutcome {
    Done(Issued),
    Step(Challenge),
}

/// The extras a password login may carry besides identifier and password.
#[derive(Clone, Debug, Default)]
pub struct LoginOptions {
    /// A TOTP code, to settle `verify_totp` in the same call.
    pub totp: Option<Secret>,
    /// Trust this browser after a successful second factor.
    pub remember_device: bool,
    /// The browser's trusted-device cookie, if any.
    pub device: Option<Secret>,
    /// The workspace (slug) to sign in to, for accounts in several.
    pub workspace: Option<String>,
}

/// The identifier as an audit row may hold it. An account's own e-mail or username is
/// kept; for a name no account has, only an e-mail address is kept as typed, anything else
/// as a digest: a password typed into the identifier field must not land in the audit.
fn audit_identifier(ident: &Identifier, known: bool) -> serde_json::Value {
    match ident {
        _ if known => serde_json::json!(ident.normalized()),
        Identifier::Email(e) => serde_json::json!(e.as_str()),
        Identifier::Username(u) => {
            let hex = digest_hex(u.as_str());
            serde_json::json!(format!("sha256:{}", &hex[..16]))
        }
    }
}

impl Service {
    /// Password sign-in without extras; see [`Service::login_with`].
    pub async fn login(
        &self,
        identifier: &str,
        password: &Secret,
        kind: TokenKind,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        self.login_with(identifier, password, &LoginOptions::default(), kind, meta)
            .await
    }

    /// The password entry point. Checks, in order: lockout → credentials → account status
    /// → instance settings; then advances. Unknown users, wrong passwords and disabled
    /// accounts with a wrong password all fail the same way, at the same cost.
    #[tracing::instrument(skip_all, fields(account_id))]
    pub async fn login_with(
        &self,
        identifier: &str,
        password: &Secret,
        opts: &LoginOptions,
        kind: TokenKind,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        let ident = Identifier::parse(identifier)
            .ok_or_else(|| AppError::validation(vec![FieldError::new("identifier", "invalid")]))?;
        if password.expose().chars().count() > LONGEST_LOGIN_PASSWORD {
            return Err(AppError::validation(vec![FieldError::new(
                "password", "too_long",
            )]));
        }
        let key = ident.normalized().to_string();
        let now = self.now();
        crate::ratelimit::check_identifier(self, &key).await?;
        let account = match &ident {
            Identifier::Email(e) => self.store.account_by_email(e.as_str()).await,
            Identifier::Username(u) => self.store.account_by_username(u.as_str()).await,
        }?;
        // Failures count per account, whichever name it was given by, and per name for
        // names no account has: both lock the same way, so a lock tells nothing.
        let subject = match &account {
            Some(a) => Subject::Account(a.id),
            None => Subject::Unknown(&key),
        };
        let shown = audit_identifier(&ident, account.is_some());
        let target = account.as_ref().map(|a| a.id);
        if let Err(e) = lockout::check(self.cache.as_ref(), &self.cfg.lockout, subject).await {
            if e.code == Code::ACCOUNT_LOCKED {
                self.audit(
                    event(meta, now, "login", "failure")
                        .target(target)
                        .reason("ACCOUNT_LOCKED")
                        .details(serde_json::json!({ "identifier": shown })),
                )
                .await;
            }
            return Err(e);
        }
        let stored = match &account {
            Some(a) => self.store.password_hash(a.id).await?,
            None => None,
        };
        let verified = self.hasher.verify(password, stored.as_deref()).await?;
        let account = match (account, verified.ok()) {
            (Some(a), true) => a,
            _ => {
                self.audit(
                    event(meta, now, "login", "failure")
                        .target(target)
                        .reason("INVALID_CREDENTIALS")
                        .details(serde_json::json!({ "identifier": shown })),
                )
                .await;
                self.count_failure(subject, &shown, meta).await?;
                return Err(Code::INVALID_CREDENTIALS.into());
            }
        };
        tracing::Span::current().record("account_id", tracing::field::display(account.id));
        let refuse = |reason: &'static str| {
            event(meta, now, "login", "failure")
                .target(Some(account.id))
                .reason(reason)
        };
        if account.status != AccountStatus::Active {
            self.audit(refuse("ACCOUNT_DISABLED")).await;
            return Err(Code::ACCOUNT_DISABLED.into());
        }
        // Read only now, so the answer tells nothing about unknown users. Settings that do
        // not parse refuse every sign-in rather than fall back to something weaker.
        let settings = match self.instance_settings().await {
            Ok(s) => s,
            Err(e) => {
                self.audit(refuse(e.code.as_str())).await;
                return Err(e);
            }
        };
        if !account.has_role("admin") && !settings.allow_password_login {
            self.audit(refuse("PASSWORD_LOGIN_DISABLED")).await;
            return Err(Code::PASSWORD_LOGIN_DISABLED.into());
        }
        let mut state = LoginState::new(account.id, kind, Method::Password);
        state.workspace = opts.workspace.clone();
        if let Verified::YesRehashed(h) = verified {
            state.rehash = Some(h);
        }
        self.after_password(account, state, opts, meta).await
    }

    /// The upstream (SSO) entry point, once the provider's answer is verified and resolved
    /// to `account`: lockout → account status → instance settings, then the same steps as
    /// after a password (trusted device, TOTP, enrolment, tenancy, single-session).
    /// `upstream_mfa`: the provider is trusted for MFA and its id_token shows it.
    #[tracing::instrument(skip_all, fields(account_id = %account.id))]
    pub async fn login_upstream(
        &self,
        account: Account,
        upstream_mfa: bool,
        opts: &LoginOptions,
        kind: TokenKind,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        let now = self.now();
        let refuse = |reason: &str| {
            event(meta, now, "login", "failure")
                .target(Some(account.id))
                .reason(reason)
                .details(serde_json::json!({ "method": Method::Sso.as_str() }))
        };
        let subject = Subject::Account(account.id);
        if let Err(e) = lockout::check(self.cache.as_ref(), &self.cfg.lockout, subject).await {
            if e.code == Code::ACCOUNT_LOCKED {
                self.audit(refuse("ACCOUNT_LOCKED")).await;
            }
            return Err(e);
        }
        if account.status != AccountStatus::Active {
            self.audit(refuse("ACCOUNT_DISABLED")).await;
            return Err(Code::ACCOUNT_DISABLED.into());
        }
        if let Err(e) = self.instance_settings().await {
            self.audit(refuse(e.code.as_str())).await;
            return Err(e);
        }
        let mut state = LoginState::new(account.id, kind, Method::Sso);
        if upstream_mfa {
            state.methods.push(Method::UpstreamMfa);
        }
        state.workspace = opts.workspace.clone();
        self.after_password(account, state, opts, meta).await
    }

    /// Everything after a correct password: the trusted-device cookie, a TOTP code sent
    /// along with the password, then the owed steps or tokens.
    async fn after_password(
        &self,
        account: Account,
        mut state: LoginState,
        opts: &LoginOptions,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        state.trusted = match &opts.device {
            Some(cookie) => self.device_trusted(account.id, cookie.expose()).await?,
            None => false,
        };
        let mut owed = self.owed_step(&account, &state).await?;
        if owed == Some(Step::VerifySecondFactor)
            && let Some(code) = &opts.totp
        {
            if let Err(e) = self.spend_totp(&account, code.expose()).await {
                return Err(self.code_failure(None, &account, e, meta).await);
            }
            state.methods.push(Method::Totp);
            owed = self.owed_step(&account, &state).await?;
        }
        if owed != Some(Step::VerifySecondFactor) {
            // Failures are forgiven only once no second factor is owed any more, so a
            // known password cannot buy fresh TOTP guesses.
            lockout::reset(self.cache.as_ref(), Subject::Account(account.id)).await?;
        }
        let remember = opts.remember_device && state.has_second_factor();
        let outcome = self.advance_to(owed, account, state, meta).await?;
        self.finish_second_factor(outcome, remember, meta).await
    }

    /// What the sign-in owes next (see [`next_step`]). Reads only what the decision needs:
    /// no TOTP lookup once a second factor is proven or the policy is off.
    async fn owed_step(
        &self,
        account: &Account,
        state: &LoginState,
    ) -> Result<Option<Step>, AppError> {
        let settings = self.instance_settings().await?;
        let policy = settings.mfa_policy;
        let email_unverified =
            settings.require_email_verification && self.store.email_unverified(account.id).await?;
        let has_totp = if policy == MfaPolicy::Off || state.has_second_factor() {
            false
        } else {
            self.store.totp(account.id).await?.is_some_and(|t| t.active)
        };
        let req = Requirements {
            must_change_password: account.must_change_password,
            has_totp,
            policy,
            email_unverified,
        };
        Ok(next_step(&req, &state.methods, state.trusted))
    }

    /// The one transition every entry point and step ends in: opens a challenge for the
    /// next owed step, or issues tokens when nothing is owed.
    pub async fn advance(
        &self,
        account: Account,
        state: LoginState,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        let owed = self.owed_step(&account, &state).await?;
        self.advance_to(owed, account, state, meta).await
    }

    /// [`Service::advance`] with the owed step already known.
    async fn advance_to(
        &self,
        owed: Option<Step>,
        account: Account,
        state: LoginState,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        match owed {
            Some(step) => self
                .open_challenge(account, step, state)
                .await
                .map(LoginOutcome::Step),
            None => self
                .issue(account, state, meta)
                .await
                .map(LoginOutcome::Done),
        }
    }

    async fn open_challenge(
        &self,
        account: Account,
        step: Step,
        state: LoginState,
    ) -> Result<Challenge, AppError> {
        let token = opaque_token()?;
        let bytes = serde_json::to_vec(&Pending { step, state })
            .map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
        let ttl = self.cfg.session.challenge_ttl_seconds;
        self.cache
            .set(
                &format!("chal:{}", digest_hex(&token)),
                &bytes,
                Duration::from_secs(ttl),
            )
            .await?;
        Ok(Challenge {
            token: Secret::new(token),
            step,
            code: step.code(),
            expires_in: ttl,
            account,
        })
    }

    /// The state behind a live challenge for `step`, with its cache key;
    /// `CHALLENGE_INVALID` for an unknown, expired, spent or other-step challenge.
    pub(crate) async fn load_challenge(
        &self,
        token: &str,
        step: Step,
    ) -> Result<(String, LoginState), AppError> {
        let key = format!("chal:{}", digest_hex(token));
        let raw = self.cache.get(&key).await?.ok_or(Code::CHALLENGE_INVALID)?;
        let pending: Pending = serde_json::from_slice(&raw).map_err(|_| Code::CHALLENGE_INVALID)?;
        if pending.step != step {
            return Err(Code::CHALLENGE_INVALID.into());
        }
        Ok((key, pending.state))
    }

    /// Takes a challenge: whoever takes it first may continue, which makes a step
    /// single-use.
    pub(crate) async fn take_challenge(&self, key: &str) -> Result<(), AppError> {
        self.cache.take(key).await?.ok_or(Code::CHALLENGE_INVALID)?;
        Ok(())
    }

    /// The account behind a challenge, if it may still sign in.
    pub(crate) async fn active_account(&self, id: Id) -> Result<Account, AppError> {
        let account = self
            .store
            .account_by_id(id)
            .await?
            .ok_or(Code::CHALLENGE_INVALID)?;
        if account.status != AccountStatus::Active {
            return Err(Code::ACCOUNT_DISABLED.into());
        }
        Ok(account)
    }

    /// The `change_password` step: sets a new password that passes the policy and differs
    /// from the old one, then advances.
    pub async fn complete_password_change(
        &self,
        challenge: &str,
        new_password: &Secret,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        let (key, mut state) = self.load_challenge(challenge, Step::ChangePassword).await?;
        let account = self.active_account(state.account_id).await?;
        check_policy(
            &self.cfg.password,
            new_password,
            "newPassword",
            &identifiers(&account),
        )?;
        let old = self.store.password_hash(account.id).await?;
        if old.is_some() && self.hasher.verify(new_password, old.as_deref()).await?.ok() {
            return Err(AppError {
                fields: vec![FieldError::new("newPassword", "same_as_current")],
                ..AppError::new(Code::PASSWORD_POLICY_VIOLATION)
            });
        }
        let hash = self.hasher.hash(new_password).await?;
        self.take_challenge(&key).await?;
        let now = self.now();
        let audit = event(meta, now, "password.change", "success")
            .actor(Some(account.id))
            .target(Some(account.id));
        let revoked = self
            .store_password(&account, &hash, None, now, &audit)
            .await;
        self.account_changed(account.id);
        let revoked = revoked?;
        self.mark_sessions_revoked(&revoked).await?;
        let account = self.active_account(account.id).await?;
        // The new password revoked every trusted device, this browser's too.
        state.trusted = false;
        self.advance(account, state, meta).await
    }

    /// Loads a live challenge for a code step and its account; refuses while the account's
    /// email is locked out.
    async fn code_challenge(
        &self,
        challenge: &str,
        step: Step,
    ) -> Result<(String, LoginState, Account), AppError> {
        let (key, state) = self.load_challenge(challenge, step).await?;
        let account = self.active_account(state.account_id).await?;
        let subject = Subject::Account(account.id);
        lockout::check(self.cache.as_ref(), &self.cfg.lockout, subject).await?;
        Ok((key, state, account))
    }

    /// A code step passed: takes the challenge, records the method and advances.
    async fn pass_step(
        &self,
        key: &str,
        mut state: LoginState,
        account: Account,
        method: Method,
        remember: bool,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        self.take_challenge(key).await?;
        state.methods.push(method);
        let outcome = self.advance(account, state, meta).await?;
        self.finish_second_factor(outcome, remember, meta).await
    }

    /// The `verify_totp` step with a TOTP code.
    #[tracing::instrument(skip_all)]
    pub async fn complete_totp(
        &self,
        challenge: &str,
        code: &str,
        remember: bool,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        let (key, state, account) = self
            .code_challenge(challenge, Step::VerifySecondFactor)
            .await?;
        if let Err(e) = self.spend_totp(&account, code).await {
            return Err(self.code_failure(Some(&key), &account, e, meta).await);
        }
        self.pass_step(&key, state, account, Method::Totp, remember, meta)
            .await
    }

    /// The `verify_totp` step with a recovery code, which is then used up.
    #[tracing::instrument(skip_all)]
    pub async fn complete_recovery_code(
        &self,
        challenge: &str,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        let (key, state, account) = self
            .code_challenge(challenge, Step::VerifySecondFactor)
            .await?;
        if let Err(e) = self.spend_recovery_code(&account, code, meta).await {
            return Err(self.code_failure(Some(&key), &account, e, meta).await);
        }
        self.pass_step(&key, state, account, Method::RecoveryCode, false, meta)
            .await
    }

    /// The `enroll_totp` step, first half: the secret to scan. The first call for a
    /// challenge makes a fresh secret (replacing any pending one, so nobody can plant a
    /// secret ahead of the owner) and binds it to the challenge; asking again with the same
    /// challenge shows the same secret, so a page reload does not invalidate what was
    /// scanned.
    pub async fn login_enrollment(
        &self,
        challenge: &str,
    ) -> Result<crate::mfa::Enrollment, AppError> {
        let (key, state) = self.load_challenge(challenge, Step::EnrollTotp).await?;
        let account = self.active_account(state.account_id).await?;
        let bound_key = format!("{key}:totp");
        let bound = self.cache.get(&bound_key).await?;
        let keep = match &bound {
            Some(d) => Keep::Bound(d),
            None => Keep::Fresh,
        };
        let (enrollment, shown) = self.start_enrollment(&account, keep).await?;
        if bound.as_deref() != Some(&shown[..]) {
            let ttl = Duration::from_secs(self.cfg.session.challenge_ttl_seconds);
            self.cache.set(&bound_key, &shown, ttl).await?;
        }
        Ok(enrollment)
    }

    /// The `enroll_totp` step, second half: the first code of the secret this challenge
    /// showed turns TOTP on, then the sign-in advances. Returns the outcome and the new
    /// recovery codes.
    #[tracing::instrument(skip_all)]
    pub async fn complete_enrollment(
        &self,
        challenge: &str,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<(LoginOutcome, Vec<String>), AppError> {
        let (key, state, account) = self.code_challenge(challenge, Step::EnrollTotp).await?;
        let confirmed = async {
            // The pending secret must be the one this challenge showed.
            let bound = self
                .cache
                .get(&format!("{key}:totp"))
                .await?
                .ok_or(Code::MFA_CODE_INVALID)?;
            let pending = self.store.totp(account.id).await?;
            let ours = pending.is_some_and(|c| {
                bool::from(subtle::ConstantTimeEq::ct_eq(
                    &bound[..],
                    &digest(&c.secret)[..],
                ))
            });
            if !ours {
                return Err(AppError::new(Code::MFA_CODE_INVALID));
            }
            self.confirm_pending(&account, code, meta).await
        };
        let codes = match confirmed.await {
            Ok(codes) => codes,
            Err(e) => return Err(self.code_failure(Some(&key), &account, e, meta).await),
        };
        let outcome = self
            .pass_step(&key, state, account, Method::Totp, false, meta)
            .await?;
        Ok((outcome, codes))
    }

    /// A wrong code at sign-in: audited, counted toward the account's lockout and, for a
    /// challenge, toward its attempt limit (the fifth wrong code ends it). Returns `e`
    /// unless counting itself failed.
    async fn code_failure(
        &self,
        challenge_key: Option<&str>,
        account: &Account,
        e: AppError,
        meta: &RequestMeta,
    ) -> AppError {
        if e.code != Code::MFA_CODE_INVALID {
            return e;
        }
        let now = self.now();
        self.audit(
            event(meta, now, "mfa.verify", "failure")
                .actor(Some(account.id))
                .target(Some(account.id))
                .reason("MFA_CODE_INVALID"),
        )
        .await;
        let counted = async {
            let shown = serde_json::json!(account.email);
            self.count_failure(Subject::Account(account.id), &shown, meta)
                .await?;
            if let Some(key) = challenge_key {
                let ttl = Duration::from_secs(self.cfg.session.challenge_ttl_seconds);
                let n = self.cache.incr(&format!("{key}:fail"), ttl).await?;
                if n >= MAX_CODE_ATTEMPTS {
                    self.cache.delete(key).await?;
                }
            }
            Ok::<(), AppError>(())
        };
        match counted.await {
            Ok(()) => e,
            Err(err) => err,
        }
    }

    /// After a second factor: forgives earlier failures and, if asked, trusts the browser.
    async fn finish_second_factor(
        &self,
        outcome: LoginOutcome,
        remember: bool,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        let LoginOutcome::Done(mut issued) = outcome else {
            return Ok(outcome);
        };
        // The session is already committed: nothing below may turn the sign-in into an
        // error, or the client would be refused a session that exists. Missing either step
        // only makes things stricter (failures stay counted; the browser is not trusted).
        let subject = Subject::Account(issued.account.id);
        if let Err(e) = lockout::reset(self.cache.as_ref(), subject).await {
            tracing::warn!(error = %e, detail = ?e.detail(), "lockout counters not cleared after sign-in");
        }
        if remember {
            match self.trust_device(issued.account.id, meta).await {
                Ok(device) => issued.trusted_device = Some(device),
                Err(e) => {
                    tracing::warn!(error = %e, detail = ?e.detail(), "browser not remembered after sign-in")
                }
            }
        }
        Ok(LoginOutcome::Done(issued))
    }

    /// The final transition: creates the session and its token in one transaction, then
    /// signs an access token.
    async fn issue(
        &self,
        account: Account,
        state: LoginState,
        meta: &RequestMeta,
    ) -> Result<Issued, AppError> {
        // Tenancy comes last: every other step has been passed by now.
        let context = self
            .resolve_login_context(&account, state.workspace.as_deref())
            .await?;
        let branch = match &context {
            LoginContext::Branch(c) => Some(c.as_ref()),
            _ => None,
        };
        let now = self.now();
        let s = &self.cfg.session;
        let kind = state.kind;
        let session = Session {
            id: new_id(),
            account_id: account.id,
            status: SessionStatus::Active,
            auth_methods: state
                .methods
                .iter()
                .map(|m| m.as_str().to_string())
                .collect(),
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at: now.plus(Duration::from_secs(s.refresh_absolute_seconds)),
            revoked_at: None,
            workspace_id: branch.map(|c| c.workspace.id),
            branch_id: branch.map(|c| c.branch.id),
        };
        // Sign before writing, so a missing key fails without leaving a session behind.
        let access = match kind {
            TokenKind::Refresh => Some(self.sign_access(&account, session.id, branch)?),
            TokenKind::Web => None,
        };
        let token = opaque_token()?;
        let idle = Duration::from_secs(s.refresh_idle_seconds);
        let audit = event(meta, now, "login", "success")
            .actor(Some(account.id))
            .target(Some(account.id))
            .details(serde_json::json!({ "sessionId": session.id,
                "methods": session.auth_methods, "kind": kind.as_str() }));
        let commit = LoginCommit {
            session: session.clone(),
            token: NewToken {
                hash: digest(&token),
                expires_at: now.plus(idle),
            },
            token_kind: kind,
            rehash: state.rehash,
            revoke_others: self.instance_settings().await?.single_session,
            audit,
        };
        let revoked = self.store.commit_login(&commit).await;
        self.account_changed(account.id);
        let revoked = revoked?;
        self.mark_sessions_revoked(&revoked).await?;
        Ok(Issued {
            account,
            session_id: session.id,
            access_token: access.map(Secret::new),
            expires_in: self.cfg.jwt.access_ttl_seconds,
            token: Secret::new(token),
            token_expires_in: s.refresh_idle_seconds,
            trusted_device: None,
            context,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(must_change_password: bool, has_totp: bool, policy: MfaPolicy) -> Requirements {
        Requirements {
            must_change_password,
            has_totp,
            policy,
            email_unverified: false,
        }
    }

    const PWD: &[Method] = &[Method::Password];

    #[test]
    fn an_unconfirmed_email_is_owed_after_the_second_factor_and_before_other_actions() {
        let unverified = |must_change, has_totp, policy| Requirements {
            email_unverified: true,
            ..req(must_change, has_totp, policy)
        };
        // The second factor first: the password alone does not reveal the step.
        assert_eq!(
            next_step(&unverified(false, true, MfaPolicy::Optional), PWD, false),
            Some(Step::VerifySecondFactor)
        );
        let both = [Method::Password, Method::Totp];
        assert_eq!(
            next_step(&unverified(true, true, MfaPolicy::Optional), &both, false),
            Some(Step::VerifyEmail)
        );
        // Before a password change and before enrolment.
        assert_eq!(
            next_step(&unverified(true, false, MfaPolicy::Required), PWD, false),
            Some(Step::VerifyEmail)
        );
        assert_eq!(
            next_step(&unverified(false, false, MfaPolicy::Off), PWD, false),
            Some(Step::VerifyEmail)
        );
        assert_eq!(Step::VerifyEmail.as_str(), "verify_email");
        assert_eq!(Step::VerifyEmail.code(), Code::EMAIL_NOT_VERIFIED);
    }

    #[test]
    fn the_second_factor_comes_before_a_required_password_change() {
        for policy in [MfaPolicy::Optional, MfaPolicy::Required] {
            assert_eq!(
                next_step(&req(true, true, policy), PWD, false),
                Some(Step::VerifySecondFactor)
            );
            let both = [Method::Password, Method::Totp];
            assert_eq!(
                next_step(&req(true, true, policy), &both, false),
                Some(Step::ChangePassword)
            );
        }
    }

    #[test]
    fn a_required_password_change_comes_before_enrolment() {
        assert_eq!(
            next_step(&req(true, false, MfaPolicy::Required), PWD, false),
            Some(Step::ChangePassword)
        );
        for policy in [MfaPolicy::Off, MfaPolicy::Optional] {
            for has_totp in [false, true] {
                if policy == MfaPolicy::Optional && has_totp {
                    continue;
                }
                assert_eq!(
                    next_step(&req(true, has_totp, policy), PWD, false),
                    Some(Step::ChangePassword)
                );
            }
        }
    }

    #[test]
    fn an_account_with_totp_owes_the_code_unless_the_policy_is_off() {
        assert_eq!(
            next_step(&req(false, true, MfaPolicy::Optional), PWD, false),
            Some(Step::VerifySecondFactor)
        );
        assert_eq!(
            next_step(&req(false, true, MfaPolicy::Required), PWD, false),
            Some(Step::VerifySecondFactor)
        );
        assert_eq!(
            next_step(&req(false, true, MfaPolicy::Off), PWD, false),
            None
        );
    }

    #[test]
    fn a_trusted_browser_stands_in_for_the_code() {
        assert_eq!(
            next_step(&req(false, true, MfaPolicy::Required), PWD, true),
            None
        );
    }

    #[test]
    fn a_trusted_browser_does_not_excuse_enrolment_under_required() {
        assert_eq!(
            next_step(&req(false, false, MfaPolicy::Required), PWD, true),
            Some(Step::EnrollTotp)
        );
    }

    #[test]
    fn without_totp_only_the_required_policy_asks_for_enrolment() {
        assert_eq!(
            next_step(&req(false, false, MfaPolicy::Required), PWD, false),
            Some(Step::EnrollTotp)
        );
        assert_eq!(
            next_step(&req(false, false, MfaPolicy::Optional), PWD, false),
            None
        );
        assert_eq!(
            next_step(&req(false, false, MfaPolicy::Off), PWD, false),
            None
        );
    }

    #[test]
    fn a_proven_second_factor_settles_the_second_factor_steps() {
        for second in [Method::Totp, Method::RecoveryCode] {
            let proven = [Method::Password, second];
            for policy in MfaPolicy::ALL {
                for has_totp in [false, true] {
                    assert_eq!(
                        next_step(&req(false, has_totp, policy), &proven, false),
                        None
                    );
                }
            }
        }
    }

    #[test]
    fn the_password_alone_is_not_a_second_factor() {
        assert!(!Method::Password.is_second_factor());
        assert!(Method::Totp.is_second_factor());
        assert!(Method::RecoveryCode.is_second_factor());
    }

    #[test]
    fn steps_and_methods_keep_their_wire_names() {
        for step in [
            Step::ChangePassword,
            Step::EnrollTotp,
            Step::VerifySecondFactor,
        ] {
            let json = serde_json::to_string(&step).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", step.as_str()));
        }
        for m in [Method::Password, Method::Totp, Method::RecoveryCode] {
            let json = serde_json::to_string(&m).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", m.as_str()));
        }
        assert_eq!(Step::VerifySecondFactor.code(), Code::AUTH_MFA_REQUIRED);
        assert_eq!(Step::EnrollTotp.code(), Code::AUTH_MFA_ENROLLMENT_REQUIRED);
        assert_eq!(
            Step::ChangePassword.code(),
            Code::AUTH_PASSWORD_CHANGE_REQUIRED
        );
    }

    #[test]
    fn policies_parse_only_their_own_names() {
        for p in MfaPolicy::ALL {
            assert_eq!(MfaPolicy::parse(p.as_str()), Some(p));
        }
        for bad in ["", "OFF", "Required", "none", "optional "] {
            assert_eq!(MfaPolicy::parse(bad), None);
        }
    }

    #[test]
    fn a_challenge_reads_what_earlier_versions_wrote() {
        // The shape written before the state machine was typed: a rolling upgrade must not
        // end sign-ins that are half way through a step.
        let old = r#"{"account_id":"0190b8a2-7c1e-7cc0-8000-000000000001","step":"verify_totp",
            "kind":"WEB","methods":["pwd"],"trusted":false,"workspace":"acme"}"#;
        let p: Pending = serde_json::from_str(old).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.step, Step::VerifySecondFactor);
        assert_eq!(p.state.kind, TokenKind::Web);
        assert_eq!(p.state.methods, vec![Method::Password]);
        assert_eq!(p.state.workspace.as_deref(), Some("acme"));
        let back = serde_json::to_value(&p).unwrap_or_default();
        assert_eq!(back["step"], "verify_totp");
        assert_eq!(back["kind"], "WEB");
        assert_eq!(back["methods"], serde_json::json!(["pwd"]));
        assert!(
            back.get("rehash").is_none(),
            "the rehash never reaches the cache"
        );
    }

    #[test]
    fn an_unknown_step_or_method_in_a_challenge_is_refused() {
        let bad_step = r#"{"account_id":"0190b8a2-7c1e-7cc0-8000-000000000001",
            "step":"skip_everything","kind":"REFRESH","methods":["pwd"]}"#;
        assert!(serde_json::from_str::<Pending>(bad_step).is_err());
        let bad_method = r#"{"account_id":"0190b8a2-7c1e-7cc0-8000-000000000001",
            "step":"verify_totp","kind":"REFRESH","methods":["pwd","magic"]}"#;
        assert!(serde_json::from_str::<Pending>(bad_method).is_err());
    }
}

/// The machine driven through the service, on a real SQLite store, the memory cache and a
/// manual clock.
#[cfg(test)]
mod flow_tests {
    use super::*;
    use crate::admin::{CreateUser, SettingsPatch};
    use crate::config::CoreConfig;
    use gatehouse_domain::Timestamp;
    use gatehouse_domain::model::{AuditFilter, Page};
    use gatehouse_domain::ports::ManualClock;
    use std::sync::Arc;

    const PASSWORD: &str = "correct horse battery staple 42";

    struct Kit {
        svc: Service,
        clock: Arc<ManualClock>,
        key: [u8; 32],
        dir: std::path::PathBuf,
    }

    impl Drop for Kit {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn kit() -> Kit {
        let dir = std::env::temp_dir().join(format!("gatehouse-login-{}", new_id()));
        let url = format!("sqlite:{}", dir.join("t.db").display());
        let store = gatehouse_store::SqliteStore::connect(&url, &Default::default())
            .await
            .unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
        let cache = Arc::new(gatehouse_cache::MemoryCache::new(clock.clone()));
        let mut cfg = CoreConfig::default();
        let key_text = crate::totp::new_key_text().unwrap();
        let key = crate::totp::parse_key(&key_text).unwrap();
        cfg.secrets.encryption_key = Some(Secret::new(key_text));
        let svc = Service::new(Arc::new(store), cache, clock.clone(), cfg)
            .await
            .unwrap();
        Kit {
            svc,
            clock,
            key,
            dir,
        }
    }

    async fn user(k: &Kit, email: &str, must_change_password: bool) -> Account {
        let input = CreateUser {
            email: email.into(),
            password: Some(Secret::new(PASSWORD)),
            must_change_password: Some(must_change_password),
            roles: vec!["user".into()],
            ..Default::default()
        };
        k.svc
            .create_user(None, input, &RequestMeta::default())
            .await
            .unwrap()
    }

    async fn policy(k: &Kit, p: &str) {
        let patch = SettingsPatch {
            mfa_policy: Some(p.into()),
            ..Default::default()
        };
        k.svc
            .update_settings(None, patch, &RequestMeta::default())
            .await
            .unwrap();
    }

    async fn login(k: &Kit, email: &str, password: &str) -> Result<LoginOutcome, AppError> {
        k.svc
            .login(
                email,
                &Secret::new(password),
                TokenKind::Refresh,
                &RequestMeta::default(),
            )
            .await
    }

    fn step(o: LoginOutcome) -> Challenge {
        match o {
            LoginOutcome::Step(c) => c,
            LoginOutcome::Done(_) => panic!("expected a step, got tokens"),
        }
    }

    fn done(o: LoginOutcome) -> Issued {
        match o {
            LoginOutcome::Done(i) => i,
            LoginOutcome::Step(c) => panic!("expected tokens, got step {:?}", c.step),
        }
    }

    async fn code_now(k: &Kit, id: Id) -> String {
        let cred = k.svc.store.totp(id).await.unwrap().unwrap();
        let raw = crate::totp::open(&k.key, id, &cred.secret).unwrap();
        let now = k.svc.now().unix_seconds();
        crate::totp::code_at(&raw, crate::totp::step_at(now))
    }

    async fn methods_of(k: &Kit, issued: &Issued) -> Vec<String> {
        let s = k.svc.store.session_by_id(issued.session_id).await.unwrap();
        s.unwrap().auth_methods
    }

    #[tokio::test]
    async fn each_transition_from_password_change_through_enrolment_to_the_code_step() {
        let k = kit().await;
        let meta = RequestMeta::default();
        let a = user(&k, "walk@example.com", true).await;
        policy(&k, "required").await;

        // Password → ChangePassword (first, whatever else is owed).
        let ch = step(login(&k, "walk@example.com", PASSWORD).await.unwrap());
        assert_eq!(ch.step, Step::ChangePassword);
        assert_eq!(ch.code, Code::AUTH_PASSWORD_CHANGE_REQUIRED);
        // A challenge answers only its own step.
        let wrong = k
            .svc
            .complete_totp(ch.token.expose(), "000000", false, &meta);
        assert_eq!(wrong.await.unwrap_err().code, Code::CHALLENGE_INVALID);

        // ChangePassword → EnrollTotp (policy required, no TOTP yet).
        let new = Secret::new("a brand new passphrase 77");
        let next = k
            .svc
            .complete_password_change(ch.token.expose(), &new, &meta);
        let ch2 = step(next.await.unwrap());
        assert_eq!(ch2.step, Step::EnrollTotp);
        // The spent challenge is gone.
        let again = k
            .svc
            .complete_password_change(ch.token.expose(), &new, &meta);
        assert_eq!(again.await.unwrap_err().code, Code::CHALLENGE_INVALID);

        // EnrollTotp → Done, with both methods on the session.
        k.svc.login_enrollment(ch2.token.expose()).await.unwrap();
        let code = code_now(&k, a.id).await;
        let (outcome, codes) = k
            .svc
            .complete_enrollment(ch2.token.expose(), &code, &meta)
            .await
            .unwrap();
        assert_eq!(codes.len(), 10);
        let issued = done(outcome);
        assert!(issued.access_token.is_some());
        assert_eq!(methods_of(&k, &issued).await, vec!["pwd", "totp"]);

        // Next sign-in: Password → VerifySecondFactor → Done (a new time-step).
        k.clock.advance(Duration::from_secs(30));
        let ch3 = step(login(&k, "walk@example.com", new.expose()).await.unwrap());
        assert_eq!(ch3.step, Step::VerifySecondFactor);
        let code = code_now(&k, a.id).await;
        let issued = done(
            k.svc
                .complete_totp(ch3.token.expose(), &code, false, &meta)
                .await
                .unwrap(),
        );
        assert_eq!(methods_of(&k, &issued).await, vec!["pwd", "totp"]);

        // VerifySecondFactor settled by a recovery code instead.
        let ch4 = step(login(&k, "walk@example.com", new.expose()).await.unwrap());
        let issued = done(
            k.svc
                .complete_recovery_code(ch4.token.expose(), &codes[0], &meta)
                .await
                .unwrap(),
        );
        assert_eq!(methods_of(&k, &issued).await, vec!["pwd", "recovery_code"]);
    }

    #[tokio::test]
    async fn settings_that_do_not_parse_refuse_sign_in_until_repaired() {
        let k = kit().await;
        user(&k, "closed@example.com", false).await;
        let now = k.svc.now();
        let bad = serde_json::json!({ "mfaPolicy": "sometimes" });
        k.svc
            .store
            .put_setting("instance", &bad, now)
            .await
            .unwrap();

        let e = login(&k, "closed@example.com", PASSWORD).await.unwrap_err();
        assert_eq!(e.code, Code::SERVICE_UNAVAILABLE);
        let filter = AuditFilter {
            action: Some("login".into()),
            outcome: Some("failure".into()),
            ..Default::default()
        };
        let page = Page {
            page: 1,
            page_size: 10,
        };
        let rows = k.svc.store.list_audit(&filter, page).await.unwrap();
        assert!(
            rows.items
                .iter()
                .any(|r| r.reason.as_deref() == Some("SERVICE_UNAVAILABLE")),
            "the refusal is audited"
        );

        // A string where a switch belongs is just as malformed.
        let bad = serde_json::json!({ "allowPasswordLogin": "yes" });
        k.svc
            .store
            .put_setting("instance", &bad, now)
            .await
            .unwrap();
        let e = login(&k, "closed@example.com", PASSWORD).await.unwrap_err();
        assert_eq!(e.code, Code::SERVICE_UNAVAILABLE);

        // An admin's PATCH replaces the broken value; sign-in follows the repaired policy.
        policy(&k, "required").await;
        let ch = step(login(&k, "closed@example.com", PASSWORD).await.unwrap());
        assert_eq!(ch.step, Step::EnrollTotp);
    }

    #[tokio::test]
    async fn absent_settings_fields_take_their_defaults() {
        let k = kit().await;
        user(&k, "partial@example.com", false).await;
        let now = k.svc.now();
        let partial = serde_json::json!({ "singleSession": true });
        k.svc
            .store
            .put_setting("instance", &partial, now)
            .await
            .unwrap();
        let s = k.svc.instance_settings().await.unwrap();
        assert_eq!(s.mfa_policy, MfaPolicy::Optional);
        assert!(s.single_session);
        done(login(&k, "partial@example.com", PASSWORD).await.unwrap());
    }

    #[tokio::test]
    async fn recovery_codes_are_stored_keyed_and_legacy_ones_still_work() {
        let k = kit().await;
        let meta = RequestMeta::default();
        let a = user(&k, "keyed@example.com", false).await;
        k.svc.start_enrollment(&a, Keep::Fresh).await.unwrap();
        let code = code_now(&k, a.id).await;
        let codes = k.svc.confirm_pending(&a, &code, &meta).await.unwrap();
        // What the database holds is not the plain SHA-256 of a code.
        let plain = crate::totp::legacy_recovery_hash(&codes[0]);
        let now = k.svc.now();
        assert!(
            !k.svc
                .store
                .use_recovery_code(a.id, &plain, now)
                .await
                .unwrap()
        );
        k.svc
            .spend_recovery_code(&a, &codes[0], &meta)
            .await
            .unwrap();
        let again = k.svc.spend_recovery_code(&a, &codes[0], &meta).await;
        assert_eq!(again.unwrap_err().code, Code::MFA_CODE_INVALID);

        // Codes issued before the switch (unkeyed) are still honoured, once.
        let legacy = crate::totp::legacy_recovery_hash("abcde-fghij");
        let audit = crate::audit::event(&meta, now, "test", "success");
        k.svc
            .store
            .replace_recovery_codes(a.id, &[legacy], now, &audit)
            .await
            .unwrap();
        k.svc
            .spend_recovery_code(&a, "ABCDE FGHIJ", &meta)
            .await
            .unwrap();
        let again = k.svc.spend_recovery_code(&a, "abcde-fghij", &meta).await;
        assert_eq!(again.unwrap_err().code, Code::MFA_CODE_INVALID);
    }
}
