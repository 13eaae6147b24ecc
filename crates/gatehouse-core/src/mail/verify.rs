//! E-mail confirmation: with the instance setting `requireEmailVerification`, a
//! self-registered account gets a code by mail, and its sign-in owes the `verify_email`
//! step (after the right password only) until the code is entered; the step can ask for a
//! new code. Admins can resend the code or mark the address confirmed.

use super::reset::{code_hash, new_code, normalize_code};
use super::templates::{Kind, Vars};
use crate::admin::CreateUser;
use crate::audit::{AuditExt, event};
use crate::login::{LoginOutcome, Step};
use crate::{RequestMeta, Service};
use gatehouse_domain::mail::{CodeCheck, CodePurpose, NewEmailCode, OutboxMail};
use gatehouse_domain::model::Account;
use gatehouse_domain::{AppError, Code, Id, Timestamp};
use std::time::Duration;

impl Service {
    /// A fresh confirmation code for `account` and the mail that carries it.
    fn verification_mail(
        &self,
        account: &Account,
        now: Timestamp,
    ) -> Result<(NewEmailCode, OutboxMail), AppError> {
        let code = new_code()?;
        let ttl = Duration::from_secs(self.cfg.mail.code_ttl_seconds);
        let link = self
            .cfg
            .mail
            .link(&format!("/auth/verify-email?code={code}"));
        let mail = self.outbox_mail(
            account,
            Kind::VerifyEmail,
            &Vars {
                code: Some(&code),
                link: Some(&link),
                minutes: ttl.as_secs() / 60,
            },
            now,
        );
        let new = NewEmailCode {
            id: gatehouse_domain::ids::new_id(),
            account_id: account.id,
            purpose: CodePurpose::VerifyEmail,
            code_hash: code_hash(account.id, CodePurpose::VerifyEmail, &code),
            new_email: None,
            created_at: now,
            expires_at: now.plus(ttl),
        };
        Ok((new, mail))
    }

    /// Registration with confirmation: the account, its code and the mail in one write.
    pub(crate) async fn register_unverified(
        &self,
        input: CreateUser,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let new = self.prepare_account(input, false).await?;
        let now = new.account.created_at;
        let (code, mail) = self.verification_mail(&new.account, now)?;
        let audit = event(meta, now, "register", "success")
            .actor(Some(new.account.id))
            .target(Some(new.account.id))
            .details(serde_json::json!({ "emailVerification": "pending" }));
        self.store
            .create_unverified_account(&new, &code, &mail, &audit)
            .await?;
        self.mail.wake();
        Ok(())
    }

    /// Queues a new confirmation code (superseding the previous one). `false` if the
    /// address is already confirmed.
    async fn send_verification(
        &self,
        account: &Account,
        actor: Option<Id>,
        meta: &RequestMeta,
    ) -> Result<bool, AppError> {
        if !self.store.email_unverified(account.id).await? {
            return Ok(false);
        }
        let now = self.now();
        let (code, mail) = self.verification_mail(account, now)?;
        let audit = event(meta, now, "email.verify.resend", "success")
            .actor(actor)
            .target(Some(account.id));
        self.store.create_email_code(&code, &mail, &audit).await?;
        self.mail.wake();
        Ok(true)
    }

    /// The `verify_email` step: the mailed code confirms the address, then the sign-in
    /// advances. A wrong code counts toward that code only.
    pub async fn complete_email_verification(
        &self,
        challenge: &str,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<LoginOutcome, AppError> {
        let (key, state) = self.load_challenge(challenge, Step::VerifyEmail).await?;
        let account = self.active_account(state.account_id).await?;
        crate::ratelimit::check_identifier(self, &account.email).await?;
        let now = self.now();
        let Some(code) = normalize_code(code) else {
            return Err(Code::EMAIL_CODE_INVALID.into());
        };
        let audit = event(meta, now, "email.verify", "success")
            .actor(Some(account.id))
            .target(Some(account.id));
        let outcome = self
            .store
            .verify_email(
                account.id,
                &code_hash(account.id, CodePurpose::VerifyEmail, &code),
                now,
                i64::from(self.cfg.mail.code_max_attempts),
                &audit,
            )
            .await?;
        if !matches!(outcome, CodeCheck::Spent { .. }) {
            self.audit(
                event(meta, now, "email.verify", "failure")
                    .target(Some(account.id))
                    .reason("EMAIL_CODE_INVALID"),
            )
            .await;
            return Err(Code::EMAIL_CODE_INVALID.into());
        }
        self.take_challenge(&key).await?;
        self.advance(account, state, meta).await
    }

    /// The `verify_email` step's "send me a new code" (the challenge stays open).
    pub async fn resend_email_verification(
        &self,
        challenge: &str,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let (_, state) = self.load_challenge(challenge, Step::VerifyEmail).await?;
        let account = self.active_account(state.account_id).await?;
        crate::ratelimit::check_identifier(self, &account.email).await?;
        self.send_verification(&account, Some(account.id), meta)
            .await?;
        Ok(())
    }

    /// Admin: sends a new confirmation code. `CONFLICT` if the address is confirmed.
    pub async fn admin_resend_verification(
        &self,
        actor: Id,
        account_id: Id,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let account = self
            .store
            .account_by_id(account_id)
            .await?
            .ok_or(Code::NOT_FOUND)?;
        if self.send_verification(&account, Some(actor), meta).await? {
            Ok(())
        } else {
            Err(Code::CONFLICT.into())
        }
    }

    /// Admin: marks the address confirmed. `CONFLICT` if it already was.
    pub async fn admin_mark_email_verified(
        &self,
        actor: Id,
        account_id: Id,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        self.store
            .account_by_id(account_id)
            .await?
            .ok_or(Code::NOT_FOUND)?;
        let audit = event(meta, self.now(), "admin.email.verify", "success")
            .actor(Some(actor))
            .target(Some(account_id));
        if self.store.mark_email_verified(account_id, &audit).await? {
            Ok(())
        } else {
            Err(Code::CONFLICT.into())
        }
    }

    /// Whether the account's e-mail is confirmed (`GET /admin/users/{id}` shows it).
    pub async fn email_verified(&self, account_id: Id) -> Result<bool, AppError> {
        Ok(!self.store.email_unverified(account_id).await?)
    }
}
