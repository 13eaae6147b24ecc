//! Second factors: TOTP enrolment and codes, recovery codes, trusted devices and the
//! admin reset. The sign-in steps that use them live in [`crate::login`]; this module
//! offers the checks (`spend_totp`, `spend_recovery_code`, `confirm_pending`, …) and the
//! signed-in management flows.

use crate::audit::{AuditExt, event};
use crate::lockout;
use crate::login::MfaPolicy;
use crate::service::{Principal, RequestMeta, Service};
use crate::tokens::{b64url, digest, opaque_token};
use crate::totp;
use gatehouse_domain::ids::new_id;
use gatehouse_domain::model::{Account, TrustedDevice};
use gatehouse_domain::{AppError, Code, Id, Secret};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// A new TOTP secret as the user sees it once: for typing, for apps, and as a QR code.
pub struct Enrollment {
    /// Base32, as authenticator apps take it.
    pub secret: Secret,
    pub otpauth_url: Secret,
    /// `data:image/svg+xml;base64,…`
    pub qr_code: Secret,
}

/// Which pending TOTP secret an enrolment start may show again instead of making a new one.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Keep<'a> {
    /// None: always a fresh secret, replacing any pending one.
    Fresh,
    /// Whatever is pending (the signed-in owner asked to see it again).
    Any,
    /// Only the pending secret whose sealed form has this digest (the one this sign-in
    /// challenge showed before): a secret someone else started is never shown.
    Bound(&'a [u8]),
}

/// The signed-in account's second-factor state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MfaStatus {
    pub enabled: bool,
    pub recovery_codes_left: u64,
}

impl Service {
    /// The 32-byte key that seals TOTP secrets; `SERVICE_UNAVAILABLE` if none is configured.
    pub(crate) fn secrets_key(&self) -> Result<[u8; 32], AppError> {
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

    /// Checks a TOTP code against the active secret and spends its time-step. A code for a
    /// step already used (replay) is as wrong as a wrong code.
    pub(crate) async fn spend_totp(&self, account: &Account, code: &str) -> Result<(), AppError> {
        let cred = self.store.totp(account.id).await?;
        let cred = cred.filter(|c| c.active).ok_or(Code::MFA_CODE_INVALID)?;
        let key = totp::open(&self.secrets_key()?, account.id, &cred.secret)?;
        let step = totp::matching_step(&key, code, self.now().unix_seconds())
            .ok_or(Code::MFA_CODE_INVALID)?;
        let now = self.now();
        if self.store.use_totp_step(account.id, step, now).await? {
            Ok(())
        } else {
            Err(Code::MFA_CODE_INVALID.into())
        }
    }

    /// [`Service::spend_totp`] for a signed-in account: refused while the account is
    /// locked, and a wrong code counts toward the lockout.
    async fn spend_counted_totp(
        &self,
        account: &Account,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let subject = lockout::Subject::Account(account.id);
        lockout::check(self.cache.as_ref(), &self.cfg.lockout, subject).await?;
        let spent = self.spend_totp(account, code).await;
        if let Err(e) = &spent
            && e.code == Code::MFA_CODE_INVALID
        {
            self.count_failure(subject, &serde_json::json!(account.email), meta)
                .await?;
        }
        spent
    }

    /// Checks a recovery code and uses it up (audited with the number left).
    pub(crate) async fn spend_recovery_code(
        &self,
        account: &Account,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let now = self.now();
        let keyed = totp::recovery_hash(&self.secrets_key()?, code)?;
        let mut used = self
            .store
            .use_recovery_code(account.id, &keyed, now)
            .await?;
        if !used {
            // Codes issued before verifiers were keyed.
            let legacy = totp::legacy_recovery_hash(code);
            used = self
                .store
                .use_recovery_code(account.id, &legacy, now)
                .await?;
        }
        if !used {
            return Err(Code::MFA_CODE_INVALID.into());
        }
        let left = self.store.recovery_codes_left(account.id).await?;
        self.audit(
            event(meta, now, "mfa.recovery_code.use", "success")
                .actor(Some(account.id))
                .target(Some(account.id))
                .details(serde_json::json!({ "remaining": left })),
        )
        .await;
        Ok(())
    }

    /// Stores a new pending secret (or, with `reuse`, shows the pending one again).
    /// Returns the enrolment and the digest of the sealed pending secret it shows, which a
    /// caller can later pass as [`Keep::Bound`].
    pub(crate) async fn start_enrollment(
        &self,
        account: &Account,
        keep: Keep<'_>,
    ) -> Result<(Enrollment, Vec<u8>), AppError> {
        if self.instance_settings().await?.mfa_policy == MfaPolicy::Off {
            return Err(Code::PERMISSION_REQUIRED.into());
        }
        let key = self.secrets_key()?;
        let existing = self.store.totp(account.id).await?;
        let kept = |sealed: &str| match keep {
            Keep::Fresh => false,
            Keep::Any => true,
            Keep::Bound(d) => bool::from(subtle::ConstantTimeEq::ct_eq(d, &digest(sealed)[..])),
        };
        let (raw, sealed) = match existing {
            Some(c) if c.active => return Err(Code::CONFLICT.into()),
            Some(c) if kept(&c.secret) => (totp::open(&key, account.id, &c.secret)?, c.secret),
            _ => {
                let raw = totp::new_secret()?.to_vec();
                let sealed = totp::seal(&key, account.id, &raw)?;
                if !self
                    .store
                    .put_pending_totp(account.id, &sealed, self.now())
                    .await?
                {
                    return Err(Code::CONFLICT.into());
                }
                (raw, sealed)
            }
        };
        let secret = totp::base32(&raw);
        let url = totp::otpauth_url(&self.cfg.jwt.issuer, &account.email, &secret);
        let qr = totp::qr_data_url(&url)?;
        let enrollment = Enrollment {
            secret: Secret::new(secret),
            otpauth_url: Secret::new(url),
            qr_code: Secret::new(qr),
        };
        Ok((enrollment, digest(&sealed)))
    }

    /// Checks `code` against the pending secret and turns TOTP on with ten new recovery
    /// codes, in one transaction.
    pub(crate) async fn confirm_pending(
        &self,
        account: &Account,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<Vec<String>, AppError> {
        let cred = self.store.totp(account.id).await?;
        let cred = match cred {
            Some(c) if c.active => return Err(Code::CONFLICT.into()),
            Some(c) => c,
            None => return Err(Code::MFA_CODE_INVALID.into()),
        };
        let raw = totp::open(&self.secrets_key()?, account.id, &cred.secret)?;
        let step = totp::matching_step(&raw, code, self.now().unix_seconds())
            .ok_or(Code::MFA_CODE_INVALID)?;
        let codes = totp::new_recovery_codes()?;
        let key = self.secrets_key()?;
        let hashes = codes
            .iter()
            .map(|c| totp::recovery_hash(&key, c))
            .collect::<Result<Vec<_>, _>>()?;
        let now = self.now();
        let audit = event(meta, now, "mfa.totp.enroll", "success")
            .actor(Some(account.id))
            .target(Some(account.id));
        if !self
            .store
            .confirm_totp(account.id, step, &hashes, now, &audit)
            .await?
        {
            return Err(Code::CONFLICT.into());
        }
        Ok(codes)
    }

    /// Starts TOTP enrolment for the signed-in account: a fresh secret each call, unless
    /// `reuse` asks for the pending one again. `CONFLICT` if TOTP is already on.
    pub async fn enroll_totp(&self, p: &Principal, reuse: bool) -> Result<Enrollment, AppError> {
        p.require_session()?;
        let account = self.me(p).await?;
        let keep = if reuse { Keep::Any } else { Keep::Fresh };
        Ok(self.start_enrollment(&account, keep).await?.0)
    }

    /// Turns TOTP on with the first code; returns the ten recovery codes (shown once).
    pub async fn confirm_totp(
        &self,
        p: &Principal,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<Vec<String>, AppError> {
        p.require_session()?;
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
        p.require_session()?;
        let account = self.me(p).await?;
        self.spend_counted_totp(&account, code, meta).await?;
        let codes = totp::new_recovery_codes()?;
        let key = self.secrets_key()?;
        let hashes = codes
            .iter()
            .map(|c| totp::recovery_hash(&key, c))
            .collect::<Result<Vec<_>, _>>()?;
        let now = self.now();
        let audit = event(meta, now, "mfa.recovery_codes.regenerate", "success")
            .actor(Some(account.id))
            .target(Some(account.id));
        self.store
            .replace_recovery_codes(account.id, &hashes, now, &audit)
            .await?;
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
        p.require_session()?;
        let account = self.me(p).await?;
        let active = self.store.totp(account.id).await?.is_some_and(|c| c.active);
        if !active {
            return Err(Code::NOT_FOUND.into());
        }
        match (password, code) {
            (Some(pw), _) => {
                self.check_current_password(&account, pw, "mfa.totp.disable", meta)
                    .await?
            }
            (None, Some(c)) => self.spend_counted_totp(&account, c, meta).await?,
            (None, None) => {
                return Err(AppError::validation(vec![
                    gatehouse_domain::FieldError::new("password", "required"),
                ]));
            }
        }
        let audit = event(meta, self.now(), "mfa.totp.disable", "success")
            .actor(Some(account.id))
            .target(Some(account.id));
        self.store.remove_mfa(account.id, &audit).await?;
        Ok(())
    }

    /// Whether TOTP is on, and how many recovery codes are left.
    pub async fn mfa_status(&self, p: &Principal) -> Result<MfaStatus, AppError> {
        let enabled = self
            .store
            .totp(p.account_id)
            .await?
            .is_some_and(|c| c.active);
        let recovery_codes_left = if enabled {
            self.store.recovery_codes_left(p.account_id).await?
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
        let account = self.store.account_by_id(id).await?.ok_or(Code::NOT_FOUND)?;
        let audit = event(meta, self.now(), "admin.user.reset_mfa", "success")
            .actor(actor)
            .target(Some(id));
        self.store.remove_mfa(id, &audit).await?;
        Ok(account)
    }

    /// The caller's trusted devices.
    pub async fn my_trusted_devices(&self, p: &Principal) -> Result<Vec<TrustedDevice>, AppError> {
        self.store
            .trusted_devices(p.account_id, self.now())
            .await
            .map_err(AppError::from)
    }

    /// Revokes one of the caller's trusted devices (`NOT_FOUND` for anyone else's), or all
    /// of them with `None`; returns how many.
    pub async fn revoke_trusted_devices(
        &self,
        p: &Principal,
        id: Option<Id>,
        meta: &RequestMeta,
    ) -> Result<u64, AppError> {
        p.require_session()?;
        let audit = event(meta, self.now(), "mfa.device.revoke", "success")
            .actor(Some(p.account_id))
            .target(Some(p.account_id))
            .details(serde_json::json!({ "deviceId": id }));
        let n = self
            .store
            .revoke_trusted_devices(p.account_id, id, &audit)
            .await?;
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
    pub(crate) async fn trust_device(
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
            .await?;
        Ok((Secret::new(cookie), secs))
    }

    /// True if `cookie` is a correctly signed, live trusted device of `account`.
    pub(crate) async fn device_trusted(&self, account: Id, cookie: &str) -> Result<bool, AppError> {
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
            .map_err(AppError::from)
    }
}
