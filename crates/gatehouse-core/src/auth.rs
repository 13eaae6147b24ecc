//! Sessions once signed in: refresh rotation, token authentication, branch selection,
//! logout, password change and the caller's sessions. Signing in itself is
//! [`crate::login`].

use crate::audit::{AuditExt, event};
use crate::jwt::Claims;
use crate::lockout;
use crate::password::check_policy;
use crate::service::{AuthVia, Principal, RequestMeta, Service};
use crate::tenancy::{BranchContext, LoginContext};
use crate::tokens::{digest, opaque_token};
use gatehouse_domain::model::{
    Account, AccountStatus, NewToken, RefreshPolicy, Rotation, Session, SessionStatus,
};
use gatehouse_domain::{AppError, Code, FieldError, Id, Secret};
use std::sync::Arc;
use std::time::Duration;

/// Tokens handed out by a completed sign-in or a refresh.
#[derive(Debug)]
pub struct Issued {
    pub account: Account,
    pub session_id: Id,
    /// The access JWT (API sign-ins and refreshes; `None` for web sign-ins).
    pub access_token: Option<Secret>,
    pub expires_in: u64,
    /// The refresh token (API) or web-session token (pages).
    pub token: Secret,
    pub token_expires_in: u64,
    /// A new trusted-device cookie value ("trust this browser"), with its lifetime.
    pub trusted_device: Option<(Secret, u64)>,
    /// The tenancy context the tokens are scoped to, or the branches to choose from.
    pub context: LoginContext,
}

impl Service {
    /// Signs an access token: branch-scoped (`ws`, `br`, the roles held there) with a
    /// context, account-scoped (the account's global roles) without.
    pub(crate) fn sign_access(
        &self,
        account: &Account,
        session_id: Id,
        ctx: Option<&BranchContext>,
    ) -> Result<String, AppError> {
        let now = self.now().unix_seconds();
        let ttl = i64::try_from(self.cfg.jwt.access_ttl_seconds).unwrap_or(900);
        self.keys.sign(&Claims {
            iss: self.cfg.jwt.issuer.clone(),
            aud: self.cfg.jwt.audience.clone(),
            sub: account.id,
            sid: session_id,
            jti: crate::tokens::b64url(&crate::tokens::random_bytes::<16>()?),
            iat: now,
            nbf: now,
            exp: now + ttl,
            typ: "access".into(),
            scope: if ctx.is_some() { "branch" } else { "account" }.into(),
            ws: ctx.map(|c| c.workspace.id),
            br: ctx.map(|c| c.branch.id),
            roles: match ctx {
                Some(c) => c.token_roles.clone(),
                None => account.roles.clone(),
            },
        })
    }

    /// Rotates a refresh token. A token that was already rotated revokes its whole session.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, token: &Secret, meta: &RequestMeta) -> Result<Issued, AppError> {
        let now = self.now();
        let s = &self.cfg.session;
        let idle = Duration::from_secs(s.refresh_idle_seconds);
        let next = opaque_token()?;
        let policy = RefreshPolicy {
            now,
            idle_ms: i64::try_from(idle.as_millis()).unwrap_or(i64::MAX),
        };
        let new = NewToken {
            hash: digest(&next),
            expires_at: now.plus(idle),
        };
        let hash = digest(token.expose());
        // Everything the answer needs is read before the rotation commits: if the store
        // fails here, the token is not spent and the client can simply retry.
        let prepared = match self.store.session_by_refresh_token(&hash).await? {
            Some(session) if session.status == SessionStatus::Active => {
                // A disabled account's sessions are revoked in the store, which the
                // rotation checks; the short account cache is enough here.
                let account = self.account_for_request(session.account_id).await?;
                let account = account
                    .filter(|a| a.status == AccountStatus::Active)
                    .ok_or(Code::ACCOUNT_DISABLED)?;
                // Membership and roles are re-read: a disabled member or a removed role
                // takes effect here.
                let context = match session.branch_id {
                    Some(branch) => LoginContext::Branch(Box::new(
                        self.branch_context(account.id, branch).await?,
                    )),
                    None => LoginContext::Account,
                };
                Some((session.id, account, context))
            }
            _ => None,
        };
        match self.store.rotate_refresh(&hash, &new, policy).await? {
            Rotation::Rotated(session) => {
                let Some((_, account, context)) = prepared.filter(|p| p.0 == session.id) else {
                    return Err(Code::TOKEN_REVOKED.into());
                };
                let branch = match &context {
                    LoginContext::Branch(c) => Some(c.as_ref()),
                    _ => None,
                };
                let access = self.sign_access(&account, session.id, branch)?;
                Ok(Issued {
                    account,
                    session_id: session.id,
                    access_token: Some(Secret::new(access)),
                    expires_in: self.cfg.jwt.access_ttl_seconds,
                    token: Secret::new(next),
                    token_expires_in: now
                        .until(session.expires_at)
                        .as_secs()
                        .min(s.refresh_idle_seconds),
                    trusted_device: None,
                    context,
                })
            }
            Rotation::Reused {
                session_id,
                account_id,
            } => {
                self.mark_sessions_revoked(&[session_id]).await?;
                self.audit(
                    event(meta, now, "refresh.reuse", "failure")
                        .target(Some(account_id))
                        .reason("REFRESH_TOKEN_REUSED")
                        .details(serde_json::json!({ "sessionId": session_id })),
                )
                .await;
                Err(Code::REFRESH_TOKEN_REUSED.into())
            }
            Rotation::Expired => Err(Code::TOKEN_EXPIRED.into()),
            Rotation::Revoked => Err(Code::TOKEN_REVOKED.into()),
            Rotation::Unknown => Err(Code::TOKEN_INVALID.into()),
        }
    }

    /// Checks an access token: signature, lifetime, then the shared denylist and session
    /// revocation marks (one cache round trip).
    pub async fn authenticate_bearer(&self, token: &str) -> Result<Principal, AppError> {
        let claims = self
            .keys
            .verify_or_reload(self.store.as_ref(), token, self.now())
            .await?;
        let deny = format!("deny:{}", claims.jti);
        let srev = format!("srev:{}", claims.sid);
        if self.cache.exists_any(&[&deny, &srev]).await? {
            return Err(Code::TOKEN_REVOKED.into());
        }
        Ok(Principal {
            account_id: claims.sub,
            session_id: claims.sid,
            jti: Some((
                claims.jti,
                gatehouse_domain::Timestamp::from_millis(claims.exp * 1000),
            )),
            via: AuthVia::Bearer,
            workspace_id: claims.ws,
            branch_id: claims.br,
            token: None,
        })
    }

    /// Checks a web-session cookie token.
    pub async fn authenticate_web(&self, token: &str) -> Result<Principal, AppError> {
        let now = self.now();
        let session = self.store.session_by_web_token(&digest(token), now).await?;
        let session = session.ok_or(Code::AUTHENTICATION_REQUIRED)?;
        self.store.touch_session(session.id, now, 60_000).await?;
        Ok(Principal {
            account_id: session.account_id,
            session_id: session.id,
            jti: None,
            via: AuthVia::Cookie,
            workspace_id: session.workspace_id,
            branch_id: session.branch_id,
            token: None,
        })
    }

    /// Moves the caller's session into `branch_id` (first choice or a later switch): a new
    /// branch-scoped access token and a rotated refresh token for the same session. The
    /// caller's old access token is denied.
    #[tracing::instrument(skip_all, fields(account_id = %p.account_id))]
    pub async fn select_branch(
        &self,
        p: &Principal,
        branch_id: Id,
        meta: &RequestMeta,
    ) -> Result<Issued, AppError> {
        p.require_session()?;
        let account = self.me(p).await?;
        let ctx = self.branch_context(account.id, branch_id).await?;
        let now = self.now();
        let idle = self.cfg.session.refresh_idle_seconds;
        let access = self.sign_access(&account, p.session_id, Some(&ctx))?;
        let token = opaque_token()?;
        let new = NewToken {
            hash: digest(&token),
            expires_at: now.plus(Duration::from_secs(idle)),
        };
        let moved = self
            .store
            .set_session_context(
                p.session_id,
                Some(ctx.workspace.id),
                Some(ctx.branch.id),
                Some(&new),
                p.jti.as_ref(),
                now,
            )
            .await?;
        if !moved {
            return Err(Code::TOKEN_REVOKED.into());
        }
        self.deny_access_token(p).await?;
        self.audit(
            event(meta, now, "session.select_branch", "success")
                .actor(Some(account.id))
                .target(Some(account.id))
                .details(serde_json::json!({ "sessionId": p.session_id,
                    "workspaceId": ctx.workspace.id, "branchId": ctx.branch.id })),
        )
        .await;
        let session = self.store.session_by_id(p.session_id).await?;
        let left = session.map_or(idle, |s| now.until(s.expires_at).as_secs().min(idle));
        Ok(Issued {
            account,
            session_id: p.session_id,
            access_token: Some(Secret::new(access)),
            expires_in: self.cfg.jwt.access_ttl_seconds,
            token: Secret::new(token),
            token_expires_in: left,
            trusted_device: None,
            context: LoginContext::Branch(Box::new(ctx)),
        })
    }

    /// The caller's account; `ACCOUNT_DISABLED` if it was disabled since.
    pub async fn me(&self, p: &Principal) -> Result<Account, AppError> {
        let account = self.account_for_request(p.account_id).await?;
        let account = account.ok_or(Code::TOKEN_REVOKED)?;
        if account.status != AccountStatus::Active {
            return Err(Code::ACCOUNT_DISABLED.into());
        }
        Ok(account)
    }

    /// The account behind an already-authenticated request: from this instance's short
    /// account cache when fresh, else from the store (see `read_cache`).
    async fn account_for_request(&self, id: Id) -> Result<Option<Account>, AppError> {
        let now = self.now();
        if let Some(a) = self.accounts.get(id, now) {
            return Ok(Some(Account::clone(&a)));
        }
        let generation = self.accounts.generation();
        let account = self.store.account_by_id(id).await?;
        if let Some(a) = &account
            && self.accounts.enabled()
        {
            self.accounts.put(generation, id, Arc::new(a.clone()), now);
        }
        Ok(account)
    }

    /// Drops this instance's cached copy of `id` after a committed change to it.
    pub(crate) fn account_changed(&self, id: Id) {
        self.accounts.invalidate(id);
    }

    /// Ends the caller's session: the session is revoked and the access token denied.
    pub async fn logout(&self, p: &Principal, meta: &RequestMeta) -> Result<(), AppError> {
        p.require_session()?;
        let now = self.now();
        let audit = event(meta, now, "logout", "success")
            .actor(Some(p.account_id))
            .target(Some(p.account_id))
            .details(serde_json::json!({ "sessionId": p.session_id }));
        self.store.revoke_session(p.session_id, now, &audit).await?;
        self.mark_sessions_revoked(&[p.session_id]).await?;
        self.deny_access_token(p).await
    }

    /// Ends every session of the caller's account.
    pub async fn logout_all(&self, p: &Principal, meta: &RequestMeta) -> Result<usize, AppError> {
        p.require_session()?;
        let now = self.now();
        let audit = event(meta, now, "logout.all", "success")
            .actor(Some(p.account_id))
            .target(Some(p.account_id));
        let ids = self
            .store
            .revoke_account_sessions(p.account_id, None, now, &audit)
            .await?;
        self.mark_sessions_revoked(&ids).await?;
        self.deny_access_token(p).await?;
        Ok(ids.len())
    }

    async fn deny_access_token(&self, p: &Principal) -> Result<(), AppError> {
        if let Some((jti, exp)) = &p.jti {
            let ttl = self.now().until(*exp) + Duration::from_secs(10);
            self.cache.set(&format!("deny:{jti}"), b"1", ttl).await?;
        }
        Ok(())
    }

    /// Changes the caller's password (needs the current one) and revokes their other sessions.
    pub async fn change_password(
        &self,
        p: &Principal,
        current: &Secret,
        new: &Secret,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        p.require_session()?;
        let account = self.me(p).await?;
        // The current password is a secret check like any other: it counts toward the
        // account's lockout, and a locked account cannot try it.
        self.check_current_password(&account, current, "password.change", meta)
            .await?;
        let now = self.now();
        check_policy(
            &self.cfg.password,
            new,
            "newPassword",
            &identifiers(&account),
        )?;
        if current == new {
            return Err(AppError {
                fields: vec![FieldError::new("newPassword", "same_as_current")],
                ..AppError::new(Code::PASSWORD_POLICY_VIOLATION)
            });
        }
        let hash = self.hasher.hash(new).await?;
        let audit = event(meta, now, "password.change", "success")
            .actor(Some(account.id))
            .target(Some(account.id));
        let revoked = self
            .store_password(&account, &hash, Some(p.session_id), now, &audit)
            .await;
        self.account_changed(account.id);
        let revoked = revoked?;
        self.mark_sessions_revoked(&revoked).await
    }

    /// The caller's active sessions, newest first.
    pub async fn my_sessions(&self, p: &Principal) -> Result<Vec<Session>, AppError> {
        self.store
            .active_sessions(p.account_id, self.now())
            .await
            .map_err(AppError::from)
    }

    /// Revokes one of the caller's own sessions; `NOT_FOUND` for anyone else's.
    pub async fn revoke_my_session(
        &self,
        p: &Principal,
        id: Id,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        p.require_session()?;
        let session = self.store.session_by_id(id).await?;
        let session =
            session.filter(|s| s.account_id == p.account_id && s.status == SessionStatus::Active);
        let session = session.ok_or(Code::NOT_FOUND)?;
        let now = self.now();
        let audit = event(meta, now, "session.revoke", "success")
            .actor(Some(p.account_id))
            .target(Some(p.account_id))
            .details(serde_json::json!({ "sessionId": session.id }));
        self.store.revoke_session(session.id, now, &audit).await?;
        self.mark_sessions_revoked(&[session.id]).await?;
        if session.id == p.session_id {
            self.deny_access_token(p).await?;
        }
        Ok(())
    }

    /// Checks a signed-in account's current password (to change it, or to turn TOTP off):
    /// refused while the account is locked; a wrong one is audited under `action` and
    /// counted toward the lockout.
    pub(crate) async fn check_current_password(
        &self,
        account: &Account,
        password: &Secret,
        action: &str,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let subject = lockout::Subject::Account(account.id);
        lockout::check(self.cache.as_ref(), &self.cfg.lockout, subject).await?;
        let stored = self.store.password_hash(account.id).await?;
        if self.hasher.verify(password, stored.as_deref()).await?.ok() {
            return Ok(());
        }
        self.audit(
            event(meta, self.now(), action, "failure")
                .actor(Some(account.id))
                .target(Some(account.id))
                .reason("INVALID_CREDENTIALS"),
        )
        .await;
        self.count_failure(subject, &serde_json::json!(account.email), meta)
            .await?;
        Err(Code::INVALID_CREDENTIALS.into())
    }

    /// Writes an audit row outside a transaction. A failure is logged, never hidden from
    /// operators, but does not turn the user's answer into an error.
    pub async fn audit(&self, e: gatehouse_domain::model::AuditEvent) {
        if let Err(err) = self.store.append_audit(std::slice::from_ref(&e)).await {
            tracing::error!(action = %e.action, error = %err, "audit write failed");
        }
    }
}

/// Email local part and username: a password must not contain them.
pub fn identifiers(account: &Account) -> Vec<&str> {
    let mut ids = vec![account.email.split('@').next().unwrap_or("")];
    if let Some(u) = &account.username {
        ids.push(u);
    }
    ids
}
