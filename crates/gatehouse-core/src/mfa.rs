//! Two-factor sign-in: the owed-step decision of the login state machine, the TOTP and
//! recovery-code steps, enrolment (signed in, or as a login step), recovery codes,
//! trusted devices and the admin reset.

use crate::audit::{AuditExt, event};
use crate::auth::{ChallengeState, LoginOutcome, STEP_CHANGE_PASSWORD};
use crate::lockout;
use crate::service::{Principal, RequestMeta, Service, cache_err, store_err};
use crate::tokens::{b64url, digest, opaque_token};
use crate::totp;
use gatehouse_domain::ids::new_id;
use gatehouse_domain::model::{Account, TokenKind, TrustedDevice};
use gatehouse_domain::{AppError, Code, Id, Secret};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// Login step: enter a TOTP (or recovery) code.
pub const STEP_VERIFY_TOTP: &str = "verify_totp";
/// Login step: set up TOTP (the instance requires it).
pub const STEP_ENROLL_TOTP: &str = "enroll_totp";
/// Wrong codes a login challenge survives; the next one ends it.
pub const MAX_CODE_ATTEMPTS: i64 = 5;

/// The extras a login request may carry besides identifier and password.
#[derive(Clone, Debug, Default)]
pub struct LoginOptions {
    /// A TOTP code, to complete `verify_totp` in the same call.
    pub totp: Option<Secret>,
    /// Trust this browser after a successful TOTP step.
    pub remember_device: bool,
    /// The browser's trusted-device cookie, if any.
    pub device: Option<Secret>,
    /// The workspace (slug) to sign in to, for accounts in several.
    pub workspace: Option<String>,
}

/// A new TOTP secret as the user sees it once: for typing, for apps, and as a QR code.
pub struct Enrollment {
    /// Base32, as authenticator apps take it.
    pub secret: Secret,
    pub otpauth_url: Secret,
    /// `data:image/svg+xml;base64,…`
    pub qr_code: Secret,
}

/// The signed-in account's second-factor state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MfaStatus {
    pub enabled: bool,
    pub recovery_codes_left: u64,
}

/// The catalog code a challenge for `step` answers with.
pub fn step_code(step: &str) -> Code {
    match step {
        STEP_VERIFY_TOTP => Code::AUTH_MFA_REQUIRED,
        STEP_ENROLL_TOTP => Code::AUTH_MFA_ENROLLMENT_REQUIRED,
        _ => Code::AUTH_PASSWORD_CHANGE_REQUIRED,
    }
}

fn has_second_factor(methods: &[String]) -> bool {
    methods.iter().any(|m| m == "totp" || m == "recovery_code")
}

impl Service {
    /// The 32-byte key that seals TOTP secrets; `SERVICE_UNAVAILABLE` if none is configured.
    fn secrets_key(&self) -> Result<[u8; 32], AppError> {
        self.cfg
            .secrets
            .encryption_key
            .as_ref()
            .and_then(|k| totp::parse_key(k.expose()))
            .ok_or_else(|| {
                AppError::internal(
                    Code::SERVICE_UNAVAILABLE,
                    "secrets.encryption_key is not configured",
                )
            })
    }

    /// What the login still owes, given the factors proven so far; `None` when done.
    async fn owed_step(
        &self,
        account: &Account,
        methods: &[String],
        trusted: bool,
    ) -> Result<Option<&'static str>, AppError> {
        if account.must_change_password {
            return Ok(Some(STEP_CHANGE_PASSWORD));
        }
        let policy = self.instance_settings().await?.mfa_policy;
        if policy == "off" || has_second_factor(methods) {
            return Ok(None);
        }
        let active = self
            .store
            .totp(account.id)
            .await
            .map_err(store_err)?
            .is_some_and(|t| t.active);
        Ok(match (active, trusted, policy.as_str()) {
            (true, true, _) => None,
            (true, false, _) => Some(STEP_VERIFY_TOTP),
            (false, _, "required") => Some(STEP_ENROLL_TOTP),
            _ => None,
        })
    }

    /// Opens a challenge for the next owed step, or issues tokens when nothing is owed.
    // Each argument is a piece of login state that a challenge carries between steps.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn advance(
        &self,
        account: Account,
        methods: Vec<String>,
        kind: TokenKind,
        trusted: bool,
        rehash: Option<String>,
        workspace: Option<String>,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        let owed = self.owed_step(&account, &methods, trusted).await?;
        self.advance_owed(
            owed, account, methods, kind, trusted, rehash, workspace, meta,
        )
        .await
    }

    /// [`Service::advance`] with the owed step already known.
    #[allow(clippy::too_many_arguments)]
    async fn advance_owed(
        &self,
        owed: Option<&'static str>,
        account: Account,
        methods: Vec<String>,
        kind: TokenKind,
        trusted: bool,
        rehash: Option<String>,
        workspace: Option<String>,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        match owed {
            Some(step) => self
                .open_challenge(account, step, kind, methods, trusted, workspace)
                .await
                .map(LoginOutcome::Step),
            None => self
                .issue(account, methods, kind, rehash, workspace.as_deref(), meta)
                .await
                .map(LoginOutcome::Done),
        }
    }

    /// Everything after a correct password: the trusted-device cookie, a TOTP code sent
    /// along with the password, then the owed steps or tokens.
    pub(crate) async fn after_password(
        &self,
        account: Account,
        identifier_key: &str,
        kind: TokenKind,
        rehash: Option<String>,
        opts: &LoginOptions,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        let trusted = match &opts.device {
            Some(cookie) => self.device_trusted(account.id, cookie.expose()).await?,
            None => false,
        };
        let mut methods = vec!["pwd".to_string()];
        let owed = self.owed_step(&account, &methods, trusted).await?;
        if owed == Some(STEP_VERIFY_TOTP)
            && let Some(code) = &opts.totp
        {
            if let Err(e) = self.spend_totp(&account, code.expose()).await {
                return Err(self.code_failure(None, &account, e, meta).await);
            }
            methods.push("totp".into());
        }
        if owed != Some(STEP_VERIFY_TOTP) || has_second_factor(&methods) {
            // Failures are forgiven only once no second factor is owed any more, so a
            // known password cannot buy fresh TOTP guesses.
            lockout::reset(self.cache.as_ref(), identifier_key).await?;
        }
        let remember = opts.remember_device && has_second_factor(&methods);
        // A TOTP code spent here settles the only step a correct password can still owe
        // besides a password change (which `owed_step` puts first); otherwise nothing
        // changed since `owed` was worked out, so it is not read again.
        let owed = if owed == Some(STEP_VERIFY_TOTP) && has_second_factor(&methods) {
            None
        } else {
            owed
        };
        let outcome = self
            .advance_owed(
                owed,
                account,
                methods,
                kind,
                trusted,
                rehash,
                opts.workspace.clone(),
                meta,
            )
            .await?;
        self.finish_second_factor(outcome, remember, meta).await
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
        let keys = std::iter::once(issued.account.email.as_str())
            .chain(issued.account.username.as_deref());
        for key in keys {
            if let Err(e) = lockout::reset(self.cache.as_ref(), key).await {
                tracing::warn!(error = %e, "lockout counters not cleared after sign-in");
            }
        }
        if remember {
            match self.trust_device(issued.account.id, meta).await {
                Ok(device) => issued.trusted_device = Some(device),
                Err(e) => tracing::warn!(error = %e, "browser not remembered after sign-in"),
            }
        }
        Ok(LoginOutcome::Done(issued))
    }

    /// Checks a TOTP code against the active secret and spends its time-step. A code for a
    /// step already used (replay) is as wrong as a wrong code.
    async fn spend_totp(&self, account: &Account, code: &str) -> Result<(), AppError> {
        let cred = self.store.totp(account.id).await.map_err(store_err)?;
        let cred = cred.filter(|c| c.active).ok_or(Code::MFA_CODE_INVALID)?;
        let key = totp::open(&self.secrets_key()?, account.id, &cred.secret)?;
        let step = totp::matching_step(&key, code, self.now().unix_seconds())
            .ok_or(Code::MFA_CODE_INVALID)?;
        let now = self.now();
        if self
            .store
            .use_totp_step(account.id, step, now)
            .await
            .map_err(store_err)?
        {
            Ok(())
        } else {
            Err(Code::MFA_CODE_INVALID.into())
        }
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
            if lockout::record_failure(self.cache.as_ref(), &self.cfg.lockout, &account.email)
                .await?
            {
                self.audit(
                    event(meta, now, "account.locked", "success")
                        .target(Some(account.id))
                        .details(serde_json::json!({ "identifier": account.email })),
                )
                .await;
            }
            if let Some(key) = challenge_key {
                let ttl = Duration::from_secs(self.cfg.session.challenge_ttl_seconds);
                let n = self
                    .cache
                    .incr(&format!("{key}:fail"), ttl)
                    .await
                    .map_err(cache_err)?;
                if n >= MAX_CODE_ATTEMPTS {
                    self.cache.delete(key).await.map_err(cache_err)?;
                }
            }
            Ok::<(), AppError>(())
        };
        match counted.await {
            Ok(()) => e,
            Err(err) => err,
        }
    }

    /// Loads a live challenge for a code step and its account; refuses while the account's
    /// email is locked out.
    async fn code_challenge(
        &self,
        challenge: &str,
        step: &str,
    ) -> Result<(String, ChallengeState, Account), AppError> {
        let (key, state) = self.load_challenge(challenge, step).await?;
        let account = self.active_account(state.account_id).await?;
        lockout::check(self.cache.as_ref(), &self.cfg.lockout, &account.email).await?;
        Ok((key, state, account))
    }

    /// Takes the challenge (single use) and moves on to the next step or tokens.
    async fn pass_step(
        &self,
        key: &str,
        mut state: ChallengeState,
        account: Account,
        method: &str,
        remember: bool,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        self.cache
            .take(key)
            .await
            .map_err(cache_err)?
            .ok_or(Code::CHALLENGE_INVALID)?;
        state.methods.push(method.to_string());
        let kind = state.token_kind();
        let outcome = self
            .advance(
                account,
                state.methods,
                kind,
                state.trusted,
                None,
                state.workspace,
                meta,
            )
            .await?;
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
        let (key, state, account) = self.code_challenge(challenge, STEP_VERIFY_TOTP).await?;
        if let Err(e) = self.spend_totp(&account, code).await {
            return Err(self.code_failure(Some(&key), &account, e, meta).await);
        }
        self.pass_step(&key, state, account, "totp", remember, meta)
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
        let (key, state, account) = self.code_challenge(challenge, STEP_VERIFY_TOTP).await?;
        let now = self.now();
        let used = self
            .store
            .use_recovery_code(account.id, &totp::recovery_hash(code), now)
            .await
            .map_err(store_err)?;
        if !used {
            let e = AppError::new(Code::MFA_CODE_INVALID);
            return Err(self.code_failure(Some(&key), &account, e, meta).await);
        }
        let left = self
            .store
            .recovery_codes_left(account.id)
            .await
            .map_err(store_err)?;
        self.audit(
            event(meta, now, "mfa.recovery_code.use", "success")
                .actor(Some(account.id))
                .target(Some(account.id))
                .details(serde_json::json!({ "remaining": left })),
        )
        .await;
        self.pass_step(&key, state, account, "recovery_code", false, meta)
            .await
    }

    /// The `enroll_totp` step, first half: the secret to scan. Asking again shows the same
    /// secret, so a page reload does not invalidate what was scanned.
    pub async fn login_enrollment(&self, challenge: &str) -> Result<Enrollment, AppError> {
        let (_, state) = self.load_challenge(challenge, STEP_ENROLL_TOTP).await?;
        let account = self.active_account(state.account_id).await?;
        self.start_enrollment(&account, true).await
    }

    /// The `enroll_totp` step, second half: the first code turns TOTP on, then the login
    /// continues. Returns the outcome and the new recovery codes.
    #[tracing::instrument(skip_all)]
    pub async fn complete_enrollment(
        &self,
        challenge: &str,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<(LoginOutcome, Vec<String>), AppError> {
        let (key, state, account) = self.code_challenge(challenge, STEP_ENROLL_TOTP).await?;
        let codes = match self.confirm_pending(&account, code, meta).await {
            Ok(codes) => codes,
            Err(e) => return Err(self.code_failure(Some(&key), &account, e, meta).await),
        };
        let outcome = self
            .pass_step(&key, state, account, "totp", false, meta)
            .await?;
        Ok((outcome, codes))
    }

    /// Stores a new pending secret (or, with `reuse`, shows the pending one again).
    async fn start_enrollment(
        &self,
        account: &Account,
        reuse: bool,
    ) -> Result<Enrollment, AppError> {
        if self.instance_settings().await?.mfa_policy == "off" {
            return Err(Code::PERMISSION_REQUIRED.into());
        }
        let key = self.secrets_key()?;
        let existing = self.store.totp(account.id).await.map_err(store_err)?;
        let raw = match existing {
            Some(c) if c.active => return Err(Code::CONFLICT.into()),
            Some(c) if reuse => totp::open(&key, account.id, &c.secret)?,
            _ => {
                let raw = totp::new_secret()?.to_vec();
                let sealed = totp::seal(&key, account.id, &raw)?;
                if !self
                    .store
                    .put_pending_totp(account.id, &sealed, self.now())
                    .await
                    .map_err(store_err)?
                {
                    return Err(Code::CONFLICT.into());
                }
                raw
            }
        };
        let secret = totp::base32(&raw);
        let url = totp::otpauth_url(&self.cfg.jwt.issuer, &account.email, &secret);
        let qr = totp::qr_data_url(&url)?;
        Ok(Enrollment {
            secret: Secret::new(secret),
            otpauth_url: Secret::new(url),
            qr_code: Secret::new(qr),
        })
    }

    /// Checks `code` against the pending secret and turns TOTP on with ten new recovery
    /// codes, in one transaction.
    async fn confirm_pending(
        &self,
        account: &Account,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<Vec<String>, AppError> {
        let cred = self.store.totp(account.id).await.map_err(store_err)?;
        let cred = match cred {
            Some(c) if c.active => return Err(Code::CONFLICT.into()),
            Some(c) => c,
            None => return Err(Code::MFA_CODE_INVALID.into()),
        };
        let raw = totp::open(&self.secrets_key()?, account.id, &cred.secret)?;
        let step = totp::matching_step(&raw, code, self.now().unix_seconds())
            .ok_or(Code::MFA_CODE_INVALID)?;
        let codes = totp::new_recovery_codes()?;
        let hashes: Vec<String> = codes.iter().map(|c| totp::recovery_hash(c)).collect();
        let now = self.now();
        let audit = event(meta, now, "mfa.totp.enroll", "success")
            .actor(Some(account.id))
            .target(Some(account.id));
        if !self
            .store
            .confirm_totp(account.id, step, &hashes, now, &audit)
            .await
            .map_err(store_err)?
        {
            return Err(Code::CONFLICT.into());
        }
        Ok(codes)
    }

    /// Starts TOTP enrolment for the signed-in account: a fresh secret each call, unless
    /// `reuse` asks for the pending one again. `CONFLICT` if TOTP is already on.
    pub async fn enroll_totp(&self, p: &Principal, reuse: bool) -> Result<Enrollment, AppError> {
        let account = self.me(p).await?;
        self.start_enrollment(&account, reuse).await
    }

    /// Turns TOTP on with the first code; returns the ten recovery codes (shown once).
    pub async fn confirm_totp(
        &self,
        p: &Principal,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<Vec<String>, AppError> {
        let account = self.me(p).await?;
        self.confirm_pending(&account, code, meta).await
    }

    /// Replaces the recovery codes; needs a fresh TOTP code.
    pub async fn regenerate_recovery_codes(
        &self,
        p: &Principal,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<Vec<String>, AppError> {
        let account = self.me(p).await?;
        self.spend_totp(&account, code).await?;
        let codes = totp::new_recovery_codes()?;
        let hashes: Vec<String> = codes.iter().map(|c| totp::recovery_hash(c)).collect();
        let now = self.now();
        let audit = event(meta, now, "mfa.recovery_codes.regenerate", "success")
            .actor(Some(account.id))
            .target(Some(account.id));
        self.store
            .replace_recovery_codes(account.id, &hashes, now, &audit)
            .await
            .map_err(store_err)?;
        Ok(codes)
    }

    /// Turns TOTP off (with the password or a current code): the secret, the recovery
    /// codes and every trusted device go.
    pub async fn disable_totp(
        &self,
        p: &Principal,
        password: Option<&Secret>,
        code: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let account = self.me(p).await?;
        let active = self
            .store
            .totp(account.id)
            .await
            .map_err(store_err)?
            .is_some_and(|c| c.active);
        if !active {
            return Err(Code::NOT_FOUND.into());
        }
        match (password, code) {
            (Some(pw), _) => {
                let stored = self
                    .store
                    .password_hash(account.id)
                    .await
                    .map_err(store_err)?;
                if !self.hasher.verify(pw, stored.as_deref()).await?.ok() {
                    return Err(Code::INVALID_CREDENTIALS.into());
                }
            }
            (None, Some(c)) => self.spend_totp(&account, c).await?,
            (None, None) => {
                return Err(AppError::validation(vec![
                    gatehouse_domain::FieldError::new("password", "required"),
                ]));
            }
        }
        let audit = event(meta, self.now(), "mfa.totp.disable", "success")
            .actor(Some(account.id))
            .target(Some(account.id));
        self.store
            .remove_mfa(account.id, &audit)
            .await
            .map_err(store_err)?;
        Ok(())
    }

    /// Whether TOTP is on, and how many recovery codes are left.
    pub async fn mfa_status(&self, p: &Principal) -> Result<MfaStatus, AppError> {
        let enabled = self
            .store
            .totp(p.account_id)
            .await
            .map_err(store_err)?
            .is_some_and(|c| c.active);
        let recovery_codes_left = if enabled {
            self.store
                .recovery_codes_left(p.account_id)
                .await
                .map_err(store_err)?
        } else {
            0
        };
        Ok(MfaStatus {
            enabled,
            recovery_codes_left,
        })
    }

    /// Clears an account's TOTP, recovery codes and trusted devices (admin).
    pub async fn reset_mfa(
        &self,
        actor: Option<Id>,
        id: Id,
        meta: &RequestMeta,
    ) -> Result<Account, AppError> {
        let account = self
            .store
            .account_by_id(id)
            .await
            .map_err(store_err)?
            .ok_or(Code::NOT_FOUND)?;
        let audit = event(meta, self.now(), "admin.user.reset_mfa", "success")
            .actor(actor)
            .target(Some(id));
        self.store.remove_mfa(id, &audit).await.map_err(store_err)?;
        Ok(account)
    }

    /// The caller's trusted devices.
    pub async fn my_trusted_devices(&self, p: &Principal) -> Result<Vec<TrustedDevice>, AppError> {
        self.store
            .trusted_devices(p.account_id, self.now())
            .await
            .map_err(store_err)
    }

    /// Revokes one of the caller's trusted devices (`NOT_FOUND` for anyone else's), or all
    /// of them with `None`; returns how many.
    pub async fn revoke_trusted_devices(
        &self,
        p: &Principal,
        id: Option<Id>,
        meta: &RequestMeta,
    ) -> Result<u64, AppError> {
        let audit = event(meta, self.now(), "mfa.device.revoke", "success")
            .actor(Some(p.account_id))
            .target(Some(p.account_id))
            .details(serde_json::json!({ "deviceId": id }));
        let n = self
            .store
            .revoke_trusted_devices(p.account_id, id, &audit)
            .await
            .map_err(store_err)?;
        if id.is_some() && n == 0 {
            return Err(Code::NOT_FOUND.into());
        }
        Ok(n)
    }

    fn device_mac(&self, token: &str) -> Result<String, AppError> {
        let key = self.secrets_key()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key)
            .map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
        mac.update(b"gatehouse trusted device\0");
        mac.update(token.as_bytes());
        Ok(b64url(&mac.finalize().into_bytes()))
    }

    /// Stores a trusted device and returns its signed cookie value and lifetime (seconds).
    async fn trust_device(
        &self,
        account: Id,
        meta: &RequestMeta,
    ) -> Result<(Secret, u64), AppError> {
        let token = opaque_token()?;
        let cookie = format!("{token}.{}", self.device_mac(&token)?);
        let now = self.now();
        let secs = self.cfg.session.trusted_device_days * 24 * 3600;
        let device = TrustedDevice {
            id: new_id(),
            account_id: account,
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
            created_at: now,
            last_used_at: now,
            expires_at: now.plus(Duration::from_secs(secs)),
        };
        let audit = event(meta, now, "mfa.device.trust", "success")
            .actor(Some(account))
            .target(Some(account))
            .details(serde_json::json!({ "deviceId": device.id }));
        self.store
            .add_trusted_device(&device, &digest(&token), &audit)
            .await
            .map_err(store_err)?;
        Ok((Secret::new(cookie), secs))
    }

    /// True if `cookie` is a correctly signed, live trusted device of `account`.
    async fn device_trusted(&self, account: Id, cookie: &str) -> Result<bool, AppError> {
        let Some((token, sig)) = cookie.split_once('.') else {
            return Ok(false);
        };
        let Ok(expected) = self.device_mac(token) else {
            return Ok(false);
        };
        let signed: bool =
            subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), sig.as_bytes()).into();
        if !signed {
            return Ok(false);
        }
        self.store
            .use_trusted_device(account, &digest(token), self.now())
            .await
            .map_err(store_err)
    }
}
