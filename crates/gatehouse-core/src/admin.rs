//! Administration: accounts, sessions, the audit trail, instance settings, registration,
//! bootstrap. Callers are checked with [`Service::require_permission`] (see [`crate::authz`]).

use crate::audit::{AuditExt, event};
use crate::lockout;
use crate::login::MfaPolicy;
use crate::password::check_policy;
use crate::service::{RequestMeta, Service};
use gatehouse_domain::ids::new_id;
use gatehouse_domain::model::{
    Account, AccountKind, AccountStatus, AuditEvent, AuditFilter, Page, Paged, Session,
};
use gatehouse_domain::ports::NewAccount;
use gatehouse_domain::values::{Email, Username};
use gatehouse_domain::{AppError, Code, FieldError, Id, Secret};
use serde::{Deserialize, Serialize};

/// Global roles an account can hold until tenancy brings per-workspace roles.
pub const GLOBAL_ROLES: &[&str] = &["admin", "user"];

/// Instance-wide switches (`GET/PATCH /admin/settings`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct InstanceSettings {
    pub allow_password_login: bool,
    pub allow_registration: bool,
    pub mfa_policy: MfaPolicy,
    pub single_session: bool,
    /// Self-registered accounts confirm their e-mail address (a mailed code) before their
    /// first sign-in completes.
    pub require_email_verification: bool,
    /// Mail "your password was changed" after every password change and reset.
    pub notify_password_changed: bool,
    /// Mail "your e-mail address was changed" to the old address.
    pub notify_email_changed: bool,
}

impl Default for InstanceSettings {
    fn default() -> Self {
        Self {
            allow_password_login: true,
            allow_registration: false,
            mfa_policy: MfaPolicy::Optional,
            single_session: false,
            require_email_verification: false,
            notify_password_changed: true,
            notify_email_changed: true,
        }
    }
}

const SETTINGS_KEY: &str = "instance";

/// A new account as an admin (or the CLI) describes it.
#[derive(Clone, Debug, Default)]
pub struct CreateUser {
    pub email: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub password: Option<Secret>,
    pub must_change_password: Option<bool>,
    pub roles: Vec<String>,
}

impl Service {
    /// The instance settings, defaults where never set; from this instance's short read
    /// cache when fresh (see `read_cache`).
    pub async fn instance_settings(&self) -> Result<InstanceSettings, AppError> {
        let now = self.now();
        if let Some(s) = self.settings.get((), now) {
            return Ok(InstanceSettings::clone(&s));
        }
        let generation = self.settings.generation();
        let s = self.instance_settings_fresh().await?;
        self.settings
            .put(generation, (), std::sync::Arc::new(s.clone()), now);
        Ok(s)
    }

    /// The instance settings as stored now. A stored value that does not parse (an
    /// unknown `mfaPolicy`, a string where a switch belongs) is refused, never read as the
    /// defaults: that would quietly turn `required` into `optional`.
    async fn instance_settings_fresh(&self) -> Result<InstanceSettings, AppError> {
        self.stored_settings().await?.map_err(|e| {
            tracing::error!(error = %e, "stored instance settings do not parse; sign-ins are refused until PATCH /admin/settings repairs them");
            AppError::internal(
                Code::SERVICE_UNAVAILABLE,
                format!("stored instance settings do not parse: {e}"),
            )
        })
    }

    /// The stored settings, or why they do not parse (absent fields take their defaults).
    async fn stored_settings(
        &self,
    ) -> Result<Result<InstanceSettings, serde_json::Error>, AppError> {
        let value = self.store.setting(SETTINGS_KEY).await?;
        Ok(match value {
            Some(v) => serde_json::from_value(v),
            None => Ok(InstanceSettings::default()),
        })
    }

    /// Creates an account. Validation errors name every bad field; a taken email or
    /// username is `CONFLICT`.
    pub async fn create_user(
        &self,
        actor: Option<Id>,
        input: CreateUser,
        meta: &RequestMeta,
    ) -> Result<Account, AppError> {
        self.create_account_as(actor, input, true, meta).await
    }

    /// [`Service::create_user`], saying whether the e-mail is known to be the account's
    /// (false for self-registration: SSO never links to such an account by e-mail).
    async fn create_account_as(
        &self,
        actor: Option<Id>,
        input: CreateUser,
        email_verified: bool,
        meta: &RequestMeta,
    ) -> Result<Account, AppError> {
        let new = self.prepare_account(input, email_verified).await?;
        let account = new.account.clone();
        let audit = event(meta, account.created_at, "admin.user.create", "success")
            .actor(actor)
            .target(Some(account.id))
            .details(serde_json::json!({ "email": account.email, "roles": account.roles }));
        self.store.create_account(&new, &audit).await?;
        Ok(account)
    }

    /// Validates a new account (every bad field named), checks and hashes its password.
    /// `email_verified` says whether the address is known to be the account's.
    pub(crate) async fn prepare_account(
        &self,
        input: CreateUser,
        email_verified: bool,
    ) -> Result<NewAccount, AppError> {
        let mut errors = Vec::new();
        let email = Email::parse(&input.email);
        if email.is_none() {
            errors.push(FieldError::new(
                "email",
                if input.email.trim().is_empty() {
                    "required"
                } else {
                    "invalid_email"
                },
            ));
        }
        let username = match input
            .username
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            Some(raw) => match Username::parse(raw) {
                Some(u) => Some(u),
                None => {
                    errors.push(FieldError::new("username", "invalid_username"));
                    None
                }
            },
            None => None,
        };
        let display_name = input
            .display_name
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty());
        if display_name
            .as_ref()
            .is_some_and(|d| d.chars().count() > 200)
        {
            errors.push(FieldError::new("displayName", "too_long"));
        }
        let mut roles: Vec<String> = input
            .roles
            .iter()
            .map(|r| r.trim().to_lowercase())
            .collect();
        roles.sort();
        roles.dedup();
        if roles.iter().any(|r| !GLOBAL_ROLES.contains(&r.as_str())) {
            errors.push(FieldError::new("roles", "invalid"));
        }
        let (Some(email), true) = (email, errors.is_empty()) else {
            return Err(AppError::validation(errors));
        };
        let password_hash = match &input.password {
            Some(pw) => {
                let mut ids = vec![email.local_part()];
                if let Some(u) = &username {
                    ids.push(u.as_str());
                }
                check_policy(&self.cfg.password, pw, "password", &ids)?;
                Some(self.hasher.hash(pw).await?)
            }
            None => None,
        };
        let now = self.now();
        let account = Account {
            id: new_id(),
            email: email.as_str().to_string(),
            username: username.map(|u| u.as_str().to_string()),
            display_name,
            status: AccountStatus::Active,
            kind: AccountKind::User,
            must_change_password: input
                .must_change_password
                .unwrap_or(self.cfg.session.admin_created_must_change_password),
            roles,
            created_at: now,
            updated_at: now,
            last_login_at: None,
        };
        Ok(NewAccount {
            account,
            password_hash,
            email_verified,
        })
    }

    /// Self-registration (`allowRegistration`): creates an ordinary account. A taken email
    /// or username creates nothing yet answers the same, after the same work (validation,
    /// policy, hashing), so registration reveals no accounts. Confirmation mail comes with
    /// the mail feature; until then new accounts can sign in at once.
    pub async fn register(&self, input: CreateUser, meta: &RequestMeta) -> Result<(), AppError> {
        if !self.instance_settings().await?.allow_registration {
            return Err(Code::REGISTRATION_DISABLED.into());
        }
        let input = CreateUser {
            must_change_password: Some(false),
            roles: vec!["user".into()],
            ..input
        };
        let now = self.now();
        if self.instance_settings().await?.require_email_verification {
            return match self.register_unverified(input, meta).await {
                Err(e) if e.code == Code::CONFLICT => {
                    self.audit(event(meta, now, "register", "failure").reason("CONFLICT"))
                        .await;
                    Ok(())
                }
                other => other,
            };
        }
        match self.create_account_as(None, input, false, meta).await {
            Ok(a) => {
                self.audit(
                    event(meta, now, "register", "success")
                        .actor(Some(a.id))
                        .target(Some(a.id)),
                )
                .await;
                Ok(())
            }
            Err(e) if e.code == Code::CONFLICT => {
                self.audit(event(meta, now, "register", "failure").reason("CONFLICT"))
                    .await;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Creates the first admin if the instance has no account yet. `true` if it did.
    pub async fn bootstrap_admin(&self, email: &str, password: &Secret) -> Result<bool, AppError> {
        if self.store.count_accounts().await? > 0 {
            return Ok(false);
        }
        let input = CreateUser {
            email: email.to_string(),
            password: Some(password.clone()),
            must_change_password: Some(false),
            roles: vec!["admin".into()],
            ..CreateUser::default()
        };
        match self.create_user(None, input, &RequestMeta::default()).await {
            Ok(_) => Ok(true),
            // Another instance bootstrapped at the same moment.
            Err(e) if e.code == Code::CONFLICT => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Accounts matching `query` (email, username or display name), a page at a time.
    pub async fn list_users(
        &self,
        query: Option<&str>,
        page: Page,
    ) -> Result<Paged<Account>, AppError> {
        let q = query
            .map(|q| q.trim().to_lowercase())
            .filter(|q| !q.is_empty());
        self.store
            .list_accounts(q.as_deref(), page)
            .await
            .map_err(AppError::from)
    }

    /// Sessions, of one account or of all, a page at a time.
    pub async fn list_sessions(
        &self,
        account_id: Option<Id>,
        page: Page,
    ) -> Result<Paged<Session>, AppError> {
        self.store
            .list_sessions(account_id, page)
            .await
            .map_err(AppError::from)
    }

    /// Audit events matching `filter`, a page at a time.
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: Page,
    ) -> Result<Paged<AuditEvent>, AppError> {
        self.store
            .list_audit(filter, page)
            .await
            .map_err(AppError::from)
    }

    /// Looks an account up by id, email or username (CLI and admin tools).
    pub async fn find_user(&self, key: &str) -> Result<Account, AppError> {
        let found = if let Ok(id) = key.parse::<Id>() {
            self.store.account_by_id(id).await
        } else if let Some(e) = Email::parse(key).filter(|_| key.contains('@')) {
            self.store.account_by_email(e.as_str()).await
        } else if let Some(u) = Username::parse(key) {
            self.store.account_by_username(u.as_str()).await
        } else {
            Ok(None)
        };
        found?.ok_or_else(|| Code::NOT_FOUND.into())
    }

    /// Enables or disables an account; disabling revokes all its sessions at once.
    pub async fn set_user_status(
        &self,
        actor: Option<Id>,
        id: Id,
        status: AccountStatus,
        meta: &RequestMeta,
    ) -> Result<Account, AppError> {
        let action = match status {
            AccountStatus::Active => "admin.user.enable",
            AccountStatus::Disabled => "admin.user.disable",
        };
        let audit = event(meta, self.now(), action, "success")
            .actor(actor)
            .target(Some(id));
        let account_revoked = self
            .store
            .set_account_status(id, status, self.now(), &audit)
            .await;
        self.account_changed(id);
        let (account, revoked) = account_revoked?.ok_or(Code::NOT_FOUND)?;
        self.mark_sessions_revoked(&revoked).await?;
        Ok(account)
    }

    /// Lifts a lockout on the account's email and username.
    pub async fn unlock_user(
        &self,
        actor: Option<Id>,
        id: Id,
        meta: &RequestMeta,
    ) -> Result<Account, AppError> {
        let account = self.store.account_by_id(id).await?.ok_or(Code::NOT_FOUND)?;
        lockout::unlock(self.cache.as_ref(), lockout::Subject::Account(account.id)).await?;
        self.audit(
            event(meta, self.now(), "admin.user.unlock", "success")
                .actor(actor)
                .target(Some(id)),
        )
        .await;
        Ok(account)
    }

    /// Makes the account choose a new password at its next sign-in.
    pub async fn require_password_change(
        &self,
        actor: Option<Id>,
        id: Id,
        meta: &RequestMeta,
    ) -> Result<Account, AppError> {
        let audit = event(
            meta,
            self.now(),
            "admin.user.require_password_change",
            "success",
        )
        .actor(actor)
        .target(Some(id));
        let account = self
            .store
            .set_must_change_password(id, true, self.now(), &audit)
            .await;
        self.account_changed(id);
        account?.ok_or_else(|| Code::NOT_FOUND.into())
    }

    /// Sets a password directly (CLI), subject to the policy; revokes every session.
    pub async fn set_user_password(
        &self,
        actor: Option<Id>,
        id: Id,
        password: &Secret,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let account = self.store.account_by_id(id).await?.ok_or(Code::NOT_FOUND)?;
        check_policy(
            &self.cfg.password,
            password,
            "password",
            &crate::auth::identifiers(&account),
        )?;
        let hash = self.hasher.hash(password).await?;
        let audit = event(meta, self.now(), "admin.user.set_password", "success")
            .actor(actor)
            .target(Some(id));
        let revoked = self
            .store_password(&account, &hash, None, self.now(), &audit)
            .await;
        self.account_changed(id);
        let revoked = revoked?;
        self.mark_sessions_revoked(&revoked).await
    }
}

/// A partial update of [`InstanceSettings`]: absent fields stay as they are.
#[derive(Clone, Debug, Default)]
pub struct SettingsPatch {
    pub allow_password_login: Option<bool>,
    pub allow_registration: Option<bool>,
    pub mfa_policy: Option<String>,
    pub single_session: Option<bool>,
    pub require_email_verification: Option<bool>,
    pub notify_password_changed: Option<bool>,
    pub notify_email_changed: Option<bool>,
}

impl Service {
    /// Applies `patch` to the instance settings and returns the result. An unknown
    /// `mfaPolicy` is a validation error.
    pub async fn update_settings(
        &self,
        actor: Option<Id>,
        patch: SettingsPatch,
        meta: &RequestMeta,
    ) -> Result<InstanceSettings, AppError> {
        let policy = match patch.mfa_policy.as_deref().map(MfaPolicy::parse) {
            Some(None) => {
                return Err(AppError::validation(vec![FieldError::new(
                    "mfaPolicy",
                    "invalid",
                )]));
            }
            Some(Some(p)) => Some(p),
            None => None,
        };
        // A stored value that does not parse is replaced by the defaults plus this patch:
        // the one way to repair it from the API, audited with `before: null`.
        let (mut s, before) = match self.stored_settings().await? {
            Ok(s) => (s.clone(), Some(s)),
            Err(e) => {
                tracing::warn!(error = %e, "replacing stored instance settings that do not parse");
                (InstanceSettings::default(), None)
            }
        };
        if let Some(v) = patch.allow_password_login {
            s.allow_password_login = v;
        }
        if let Some(v) = patch.allow_registration {
            s.allow_registration = v;
        }
        if let Some(v) = policy {
            s.mfa_policy = v;
        }
        if let Some(v) = patch.single_session {
            s.single_session = v;
        }
        if let Some(v) = patch.require_email_verification {
            s.require_email_verification = v;
        }
        if let Some(v) = patch.notify_password_changed {
            s.notify_password_changed = v;
        }
        if let Some(v) = patch.notify_email_changed {
            s.notify_email_changed = v;
        }
        let value =
            serde_json::to_value(&s).map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
        let now = self.now();
        let stored = self.store.put_setting(SETTINGS_KEY, &value, now).await;
        self.settings.invalidate(());
        stored?;
        self.audit(
            event(meta, now, "admin.settings.update", "success")
                .actor(actor)
                .details(serde_json::json!({ "before": before, "after": s })),
        )
        .await;
        Ok(s)
    }
}
