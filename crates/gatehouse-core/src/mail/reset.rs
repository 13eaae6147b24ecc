//! Password reset by e-mail: `forgot` queues a single-use code (never sent inline, the
//! same answer whether or not the identifier names an account); `reset` spends the code,
//! sets the password, revokes every session, refresh token and trusted device (personal
//! access tokens stay), clears the lockout and notifies the account.

use super::templates::{self, Kind, Vars};
use crate::audit::{AuditExt, event};
use crate::auth::identifiers;
use crate::lockout::{self, Subject};
use crate::password::check_policy;
use crate::tokens::random_bytes;
use crate::{RequestMeta, Service};
use gatehouse_domain::mail::{CodeCheck, CodePurpose, NewEmailCode, OutboxMail};
use gatehouse_domain::model::{Account, AccountStatus};
use gatehouse_domain::values::Identifier;
use gatehouse_domain::{AppError, Code, FieldError, Id, Secret, Timestamp};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The code alphabet: no 0/O, 1/I/L.
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const CODE_LEN: usize = 8;

/// A fresh 8-character code (uniform: bytes beyond the last full multiple are dropped).
pub fn new_code() -> Result<String, AppError> {
    let limit = 256 - (256 % ALPHABET.len());
    let mut out = String::with_capacity(CODE_LEN);
    while out.len() < CODE_LEN {
        for b in random_bytes::<16>()? {
            if usize::from(b) < limit && out.len() < CODE_LEN {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(out)
}

/// The code as typed, uppercased without spaces or dashes; `None` if it cannot be one.
pub fn normalize_code(raw: &str) -> Option<String> {
    let c: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (c.len() == CODE_LEN && c.bytes().all(|b| ALPHABET.contains(&b))).then_some(c)
}

/// What is stored: SHA-256 over the account, the purpose and the code.
pub fn code_hash(account_id: Id, purpose: CodePurpose, code: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(account_id.as_bytes());
    h.update(purpose.as_str().as_bytes());
    h.update(code.as_bytes());
    h.finalize().to_vec()
}

/// Percent-encodes a query value.
fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn invalid_code() -> AppError {
    AppError::new(Code::EMAIL_CODE_INVALID)
}

impl Service {
    /// An outbox row for `account` from a rendered template.
    pub(crate) fn outbox_mail(
        &self,
        account: &Account,
        kind: Kind,
        vars: &Vars<'_>,
        now: Timestamp,
    ) -> OutboxMail {
        let r = templates::render(kind, templates::locale(&self.cfg.mail.language), vars);
        OutboxMail {
            id: gatehouse_domain::ids::new_id(),
            kind: kind.as_str().to_string(),
            account_id: Some(account.id),
            recipient: account.email.clone(),
            subject: r.subject,
            body_text: r.text,
            body_html: r.html,
            created_at: now,
            attempts: 0,
        }
    }

    /// Stores a new password (revoking sessions but `keep`, trusted devices and reset
    /// codes) with the "password changed" notice when the instance sends it, in one
    /// transaction; returns the revoked session ids.
    pub(crate) async fn store_password(
        &self,
        account: &Account,
        hash: &str,
        keep: Option<Id>,
        now: Timestamp,
        audit: &gatehouse_domain::model::AuditEvent,
    ) -> Result<Vec<Id>, AppError> {
        if !self.instance_settings().await?.notify_password_changed {
            return Ok(self
                .store
                .change_password(account.id, hash, keep, now, audit)
                .await?);
        }
        let notice = self.outbox_mail(account, Kind::PasswordChanged, &Vars::default(), now);
        let revoked = self
            .store
            .reset_password(account.id, hash, keep, now, Some(&notice), audit)
            .await?;
        self.mail.wake();
        Ok(revoked)
    }

    async fn account_by_identifier(&self, ident: &Identifier) -> Result<Option<Account>, AppError> {
        Ok(match ident {
            Identifier::Email(e) => self.store.account_by_email(e.as_str()).await,
            Identifier::Username(u) => self.store.account_by_username(u.as_str()).await,
        }?)
    }

    /// `POST /auth/password/forgot`: queues a reset code for an active account. The
    /// answer is the same for unknown identifiers, and the mail is never sent inline.
    pub async fn forgot_password(
        &self,
        identifier: &str,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let ident = Identifier::parse(identifier)
            .ok_or_else(|| AppError::validation(vec![FieldError::new("identifier", "invalid")]))?;
        crate::ratelimit::check_identifier(self, ident.normalized()).await?;
        let now = self.now();
        let account = self
            .account_by_identifier(&ident)
            .await?
            .filter(|a| a.status == AccountStatus::Active);
        let Some(account) = account else {
            // The same kind of write as the known path, so the answer takes as long.
            self.audit(
                event(meta, now, "password.reset.request", "failure").reason("UNKNOWN_IDENTIFIER"),
            )
            .await;
            return Ok(());
        };
        let code = new_code()?;
        let ttl = Duration::from_secs(self.cfg.mail.code_ttl_seconds);
        let link = self.cfg.mail.link(&format!(
            "/password/reset?identifier={}&code={code}",
            query_value(&account.email)
        ));
        let mail = self.outbox_mail(
            &account,
            Kind::PasswordReset,
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
            purpose: CodePurpose::PasswordReset,
            code_hash: code_hash(account.id, CodePurpose::PasswordReset, &code),
            new_email: None,
            created_at: now,
            expires_at: now.plus(ttl),
        };
        let audit = event(meta, now, "password.reset.request", "success")
            .target(Some(account.id))
            .details(serde_json::json!({ "mailId": mail.id }));
        self.store.create_email_code(&new, &mail, &audit).await?;
        self.mail.wake();
        Ok(())
    }

    /// `POST /auth/password/reset`: spends the code and sets the new password.
    pub async fn reset_password(
        &self,
        identifier: &str,
        code: &str,
        new_password: &Secret,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let ident = Identifier::parse(identifier)
            .ok_or_else(|| AppError::validation(vec![FieldError::new("identifier", "invalid")]))?;
        crate::ratelimit::check_identifier(self, ident.normalized()).await?;
        check_policy(&self.cfg.password, new_password, "newPassword", &[])?;
        let now = self.now();
        let account = self
            .account_by_identifier(&ident)
            .await?
            .filter(|a| a.status == AccountStatus::Active);
        let (Some(account), Some(code)) = (account, normalize_code(code)) else {
            return Err(invalid_code());
        };
        check_policy(
            &self.cfg.password,
            new_password,
            "newPassword",
            &identifiers(&account),
        )?;
        let hash = code_hash(account.id, CodePurpose::PasswordReset, &code);
        let outcome = self
            .store
            .check_email_code(
                account.id,
                CodePurpose::PasswordReset,
                &hash,
                now,
                i64::from(self.cfg.mail.code_max_attempts),
            )
            .await?;
        if outcome != (CodeCheck::Spent { new_email: None }) {
            // A reset code's wrong attempts count toward that code only, not the lockout.
            self.audit(
                event(meta, now, "password.reset", "failure")
                    .target(Some(account.id))
                    .reason("EMAIL_CODE_INVALID"),
            )
            .await;
            return Err(invalid_code());
        }
        let password_hash = self.hasher.hash(new_password).await?;
        let notice = self
            .instance_settings()
            .await?
            .notify_password_changed
            .then(|| self.outbox_mail(&account, Kind::PasswordChanged, &Vars::default(), now));
        let audit = event(meta, now, "password.reset", "success")
            .actor(Some(account.id))
            .target(Some(account.id));
        let revoked = self
            .store
            .reset_password(
                account.id,
                &password_hash,
                None,
                now,
                notice.as_ref(),
                &audit,
            )
            .await;
        self.account_changed(account.id);
        let revoked = revoked?;
        self.mark_sessions_revoked(&revoked).await?;
        lockout::unlock(self.cache.as_ref(), Subject::Account(account.id)).await?;
        self.mail.wake();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_unambiguous_characters_and_normalize_back() {
        for _ in 0..200 {
            let c = new_code().unwrap_or_default();
            assert_eq!(c.len(), 8);
            assert!(!c.contains(['0', 'O', '1', 'I', 'L']));
            let typed = format!("{}-{}", &c[..4], &c[4..]).to_lowercase();
            assert_eq!(normalize_code(&typed).as_deref(), Some(c.as_str()));
        }
        assert_eq!(normalize_code("ABCD234"), None);
        assert_eq!(normalize_code("ABCD2340"), None);
    }

    #[test]
    fn the_hash_binds_account_and_purpose() {
        let a = gatehouse_domain::ids::new_id();
        let b = gatehouse_domain::ids::new_id();
        let h = code_hash(a, CodePurpose::PasswordReset, "ABCD2345");
        assert_ne!(h, code_hash(b, CodePurpose::PasswordReset, "ABCD2345"));
        assert_ne!(h, code_hash(a, CodePurpose::VerifyEmail, "ABCD2345"));
    }
}
