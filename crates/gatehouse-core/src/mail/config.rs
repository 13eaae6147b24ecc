//! `[mail]`: where mail goes and how the codes behave.

use super::{FileMailer, Mailer, SmtpMailer};
use gatehouse_domain::Secret;
use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Mail settings (`[mail]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// `smtp://host:port`, `smtp://user:pass@host:587?tls=required` or `smtps://host:465`.
    /// Empty: messages are written as `.eml` files under `file_dir`.
    #[serde(
        serialize_with = "crate::config::redact",
        deserialize_with = "crate::config::secret_opt"
    )]
    pub smtp_url: Option<Secret>,
    /// The sender, e.g. `Gatehouse <no-reply@example.com>`.
    pub from: String,
    /// Where the file adapter writes.
    pub file_dir: String,
    /// Connect and command timeout for SMTP.
    pub timeout_seconds: u64,
    /// Language of the messages: `en`, `zh-CN` or `vi`.
    pub language: String,
    /// How long a code (and its link) stays valid.
    pub code_ttl_seconds: u64,
    /// Wrong attempts a code survives.
    pub code_max_attempts: u32,
    /// First retry delay after a failed delivery; doubled each time up to `retry_max_seconds`.
    pub retry_initial_seconds: u64,
    pub retry_max_seconds: u64,
    /// A message still undelivered this long after it was queued is given up (audited).
    pub give_up_after_seconds: u64,
    /// How often the sender looks for due messages (it is also woken when one is queued).
    pub poll_interval_ms: u64,
    /// Sent and given-up rows are deleted after this many days (0 keeps them).
    pub retention_days: u64,
    /// Filled from the top-level `public_url`: the only base links are built from.
    #[serde(skip)]
    pub public_url: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: "Gatehouse <gatehouse@localhost>".into(),
            file_dir: "./data/mail".into(),
            timeout_seconds: 10,
            language: "en".into(),
            code_ttl_seconds: 1800,
            code_max_attempts: 5,
            retry_initial_seconds: 5,
            retry_max_seconds: 300,
            give_up_after_seconds: 24 * 3600,
            poll_interval_ms: 1000,
            retention_days: 7,
            public_url: String::new(),
        }
    }
}

impl MailConfig {
    /// Checks the settings; `(key, problem)` for the first bad one.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: &str| Err((format!("mail.{k}"), m.to_string()));
        if self.from.parse::<Mailbox>().is_err() {
            return bad(
                "from",
                "must be an address like `Gatehouse <no-reply@example.com>`",
            );
        }
        if let Some(url) = &self.smtp_url {
            let u = url.expose();
            if !(u.starts_with("smtp://") || u.starts_with("smtps://")) {
                return bad("smtp_url", "must start with smtp:// or smtps://");
            }
            if lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(u).is_err() {
                return bad("smtp_url", "is not a valid SMTP URL");
            }
        }
        if self.file_dir.trim().is_empty() {
            return bad("file_dir", "must not be empty");
        }
        if !matches!(self.language.as_str(), "en" | "zh-CN" | "vi") {
            return bad("language", "must be en, zh-CN or vi");
        }
        if !(60..=86_400).contains(&self.code_ttl_seconds) {
            return bad("code_ttl_seconds", "must be between 60 and 86400");
        }
        if !(1..=20).contains(&self.code_max_attempts) {
            return bad("code_max_attempts", "must be between 1 and 20");
        }
        if self.timeout_seconds == 0 || self.poll_interval_ms == 0 {
            return bad("timeout_seconds", "timeouts and intervals must be positive");
        }
        if self.retry_initial_seconds == 0 || self.retry_max_seconds < self.retry_initial_seconds {
            return bad(
                "retry_max_seconds",
                "retry_initial_seconds must be ≥ 1 and ≤ retry_max_seconds",
            );
        }
        if self.give_up_after_seconds < self.retry_initial_seconds {
            return bad(
                "give_up_after_seconds",
                "must be at least retry_initial_seconds",
            );
        }
        Ok(())
    }

    /// The sender as a mailbox (validated at start).
    pub fn from_mailbox(&self) -> Result<Mailbox, String> {
        self.from
            .parse()
            .map_err(|_| "mail.from is not a valid address".to_string())
    }

    /// The configured adapter: SMTP when `smtp_url` is set, else files.
    pub fn mailer(&self) -> Result<Arc<dyn Mailer>, String> {
        let from = self.from_mailbox()?;
        Ok(match &self.smtp_url {
            Some(url) => Arc::new(SmtpMailer::new(
                url.expose(),
                from,
                Duration::from_secs(self.timeout_seconds),
            )?),
            None => Arc::new(FileMailer::new(&self.file_dir, from)),
        })
    }

    /// A link to `path` under `public_url` (never from request headers).
    pub fn link(&self, path: &str) -> String {
        format!("{}{}", self.public_url.trim_end_matches('/'), path)
    }
}
