//! E-mail change: the signed-in account names a new address and its current password; a
//! code goes to the new address; entering it switches the address and sends a notice to
//! the old one.

use super::reset::{code_hash, new_code, normalize_code};
use super::templates::{Kind, Vars};
use crate::audit::{AuditExt, event};
use crate::{Principal, RequestMeta, Service};
use gatehouse_domain::mail::{CodeCheck, CodePurpose, NewEmailCode};
use gatehouse_domain::values::Email;
use gatehouse_domain::{AppError, Code, FieldError, Secret};
use std::time::Duration;

impl Service {
    /// `POST /auth/email`: checks the current password (lockout applies) and mails a
    /// code to the new address. Whether the address is taken is not told here (it would
    /// let any account probe addresses); confirming a taken one is `CONFLICT`.
    pub async fn request_email_change(
        &self,
        p: &Principal,
        new_email: &str,
        current: &Secret,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let email = Email::parse(new_email).ok_or_else(|| {
            AppError::validation(vec![FieldError::new("newEmail", "invalid_email")])
        })?;
        let account = self.me(p).await?;
        self.check_current_password(&account, current, "email.change.request", meta)
            .await?;
        if email.as_str() == account.email {
            return Err(AppError::validation(vec![FieldError::new(
                "newEmail",
                "same_as_current",
            )]));
        }
        let now = self.now();
        let code = new_code()?;
        let ttl = Duration::from_secs(self.cfg.mail.code_ttl_seconds);
        let link = self.cfg.mail.link(&format!("/account/email?code={code}"));
        let mut mail = self.outbox_mail(
            &account,
            Kind::ChangeEmail,
            &Vars {
                code: Some(&code),
                link: Some(&link),
                minutes: ttl.as_secs() / 60,
            },
            now,
        );
        mail.recipient = email.as_str().to_string();
        let new = NewEmailCode {
            id: gatehouse_domain::ids::new_id(),
            account_id: account.id,
            purpose: CodePurpose::ChangeEmail,
            code_hash: code_hash(account.id, CodePurpose::ChangeEmail, &code),
            new_email: Some(email.as_str().to_string()),
            created_at: now,
            expires_at: now.plus(ttl),
        };
        let audit = event(meta, now, "email.change.request", "success")
            .actor(Some(account.id))
            .target(Some(account.id))
            .details(serde_json::json!({ "mailId": mail.id }));
        self.store.create_email_code(&new, &mail, &audit).await?;
        self.mail.wake();
        Ok(())
    }

    /// `POST /auth/email/confirm`: the code from the new address switches the account to
    /// it and notifies the old address.
    pub async fn confirm_email_change(
        &self,
        p: &Principal,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let account = self.me(p).await?;
        crate::ratelimit::check_identifier(self, &account.email).await?;
        let Some(code) = normalize_code(code) else {
            return Err(Code::EMAIL_CODE_INVALID.into());
        };
        let now = self.now();
        let notice = self
            .instance_settings()
            .await?
            .notify_email_changed
            .then(|| self.outbox_mail(&account, Kind::EmailChanged, &Vars::default(), now));
        let audit = event(meta, now, "email.change", "success")
            .actor(Some(account.id))
            .target(Some(account.id))
            .details(serde_json::json!({ "from": account.email }));
        let outcome = self
            .store
            .change_email(
                account.id,
                &code_hash(account.id, CodePurpose::ChangeEmail, &code),
                now,
                i64::from(self.cfg.mail.code_max_attempts),
                notice.as_ref(),
                &audit,
            )
            .await;
        self.account_changed(account.id);
        if !matches!(outcome?, CodeCheck::Spent { .. }) {
            self.audit(
                event(meta, now, "email.change", "failure")
                    .target(Some(account.id))
                    .reason("EMAIL_CODE_INVALID"),
            )
            .await;
            return Err(Code::EMAIL_CODE_INVALID.into());
        }
        self.mail.wake();
        Ok(())
    }
}
