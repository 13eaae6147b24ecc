//! Mail: the [`Mailer`] port and its two adapters (a file adapter, the zero-setup default,
//! and SMTP through lettre over rustls), the outbox sender that delivers queued messages
//! with retries and backoff, templates, and the flows that send codes.

mod change;
mod config;
pub mod reset;
mod sender;
pub mod templates;
mod verify;

pub use config::MailConfig;
pub use sender::MailRuntime;

use async_trait::async_trait;
use gatehouse_domain::mail::OutboxMail;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;
use std::time::Duration;

/// Why a message was not delivered (worth retrying unless `permanent`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MailError {
    pub message: String,
    /// The message itself is refused (a bad address): retrying cannot help.
    pub permanent: bool,
}

impl MailError {
    fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }
    fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }
}

/// Delivers one rendered message.
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: &OutboxMail) -> Result<(), MailError>;
    /// `file` or `smtp`, for logs.
    fn name(&self) -> &'static str;
}

/// Builds the MIME message (plain text and HTML alternatives).
fn build_message(from: &Mailbox, mail: &OutboxMail) -> Result<Message, MailError> {
    let to: Mailbox = mail
        .recipient
        .parse()
        .map_err(|_| MailError::permanent("the recipient is not a valid address"))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .multipart(MultiPart::alternative_plain_html(
            mail.body_text.clone(),
            mail.body_html.clone(),
        ))
        .map_err(|e| MailError::permanent(format!("cannot build the message: {e}")))
}

/// Writes each message as `<dir>/<created>-<id>.eml` and logs where.
pub struct FileMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl FileMailer {
    pub fn new(dir: impl Into<PathBuf>, from: Mailbox) -> Self {
        Self {
            dir: dir.into(),
            from,
        }
    }
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, mail: &OutboxMail) -> Result<(), MailError> {
        let bytes = build_message(&self.from, mail)?.formatted();
        let dir = self.dir.clone();
        let path = dir.join(format!("{}-{}.eml", mail.created_at.millis(), mail.id));
        let target = path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            // The messages hold reset and confirmation codes: the folder and every file
            // are readable by the service's own user only, wherever `file_dir` points.
            let mut folder = std::fs::DirBuilder::new();
            folder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut folder, 0o700);
            folder.create(&dir)?;
            let tmp = target.with_extension("eml.tmp");
            let mut file = std::fs::OpenOptions::new();
            file.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
            std::io::Write::write_all(&mut file.open(&tmp)?, &bytes)?;
            std::fs::rename(&tmp, &target)
        })
        .await
        .map_err(|e| MailError::transient(format!("mail writer stopped: {e}")))?
        .map_err(|e| MailError::transient(format!("cannot write {}: {e}", path.display())))?;
        tracing::info!(kind = %mail.kind, mail_id = %mail.id, path = %path.display(), "mail written to a file (no SMTP configured)");
        Ok(())
    }

    fn name(&self) -> &'static str {
        "file"
    }
}

/// Sends through an SMTP server (pooled connections; TLS by rustls).
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// `smtp://host:port` (plain), `smtp://…?tls=required` (STARTTLS) or `smtps://…`
    /// (TLS from the start); user and password in the URL's user-info.
    pub fn new(url: &str, from: Mailbox, timeout: Duration) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("invalid SMTP URL: {e}"))?
            .timeout(Some(timeout))
            .build();
        Ok(Self { transport, from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &OutboxMail) -> Result<(), MailError> {
        let message = build_message(&self.from, mail)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(MailError::permanent(e.to_string())),
            Err(e) => Err(MailError::transient(e.to_string())),
        }
    }

    fn name(&self) -> &'static str {
        "smtp"
    }
}
