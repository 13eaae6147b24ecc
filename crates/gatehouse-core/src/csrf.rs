//! CSRF tokens: signed double-submit. A token is an HMAC over the browser's binding (the
//! pre-session cookie, which survives sign-in), an issue time and a nonce, so it cannot be
//! forged, moved to another browser, or used after `max_age`.

use crate::tokens::{b64url, b64url_decode, random_bytes};
use gatehouse_domain::{AppError, Code, Timestamp};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Signs and checks CSRF tokens with a secret shared by every instance (kept in the store).
#[derive(Clone)]
pub struct Csrf {
    secret: Vec<u8>,
    max_age_secs: i64,
}

impl Csrf {
    /// A signer with `secret` (≥ 32 bytes); tokens live `max_age_secs`.
    pub fn new(secret: Vec<u8>, max_age_secs: i64) -> Self {
        Self {
            secret,
            max_age_secs,
        }
    }

    fn mac(&self, binding: &str, issued: i64, nonce: &str) -> Result<Hmac<Sha256>, AppError> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret)
            .map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
        mac.update(binding.as_bytes());
        mac.update(b"|");
        mac.update(issued.to_string().as_bytes());
        mac.update(b"|");
        mac.update(nonce.as_bytes());
        Ok(mac)
    }

    /// A token for the browser identified by `binding`.
    pub fn issue(&self, binding: &str, now: Timestamp) -> Result<String, AppError> {
        let issued = now.unix_seconds();
        let nonce = b64url(&random_bytes::<16>()?);
        let sig = self.mac(binding, issued, &nonce)?.finalize().into_bytes();
        Ok(format!("{issued}.{nonce}.{}", b64url(&sig)))
    }

    /// Checks `token` for the browser identified by `binding`.
    pub fn check(
        &self,
        token: Option<&str>,
        binding: Option<&str>,
        now: Timestamp,
    ) -> Result<(), AppError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(Code::CSRF_MISSING)?;
        let invalid = || AppError::new(Code::CSRF_INVALID);
        let binding = binding.filter(|b| !b.is_empty()).ok_or_else(invalid)?;
        if token.len() > 256 {
            return Err(invalid());
        }
        let mut parts = token.splitn(3, '.');
        let (Some(issued), Some(nonce), Some(sig)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let issued: i64 = issued.parse().map_err(|_| invalid())?;
        // Checked: a client-chosen issue time near `i64::MIN` must not overflow (found by
        // the `csrf_check` fuzz target).
        let age = now.unix_seconds().checked_sub(issued).ok_or_else(invalid)?;
        if !(-60..=self.max_age_secs).contains(&age) {
            return Err(invalid());
        }
        let sig = b64url_decode(sig).ok_or_else(invalid)?;
        self.mac(binding, issued, nonce)?
            .verify_slice(&sig)
            .map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csrf() -> Csrf {
        Csrf::new(vec![7u8; 32], 3600)
    }

    #[test]
    fn token_verifies_for_its_own_browser_only() {
        let now = Timestamp::from_millis(1_800_000_000_000);
        let t = csrf().issue("browser-a", now).unwrap();
        assert!(csrf().check(Some(&t), Some("browser-a"), now).is_ok());
        let err = csrf().check(Some(&t), Some("browser-b"), now).unwrap_err();
        assert_eq!(err.code, Code::CSRF_INVALID);
    }

    #[test]
    fn missing_tampered_and_expired_tokens_are_refused() {
        let now = Timestamp::from_millis(1_800_000_000_000);
        let t = csrf().issue("b", now).unwrap();
        assert_eq!(
            csrf().check(None, Some("b"), now).unwrap_err().code,
            Code::CSRF_MISSING
        );
        let tampered = format!("{}x", &t[..t.len() - 1]);
        assert_eq!(
            csrf()
                .check(Some(&tampered), Some("b"), now)
                .unwrap_err()
                .code,
            Code::CSRF_INVALID
        );
        let later = now.plus(std::time::Duration::from_secs(3601));
        assert_eq!(
            csrf().check(Some(&t), Some("b"), later).unwrap_err().code,
            Code::CSRF_INVALID
        );
        let other_key = Csrf::new(vec![8u8; 32], 3600);
        assert!(other_key.check(Some(&t), Some("b"), now).is_err());
    }

    #[test]
    fn an_issue_time_far_in_the_past_is_refused_not_overflowed() {
        let now = Timestamp::from_millis(1_800_000_000_000);
        let token = format!("{}.x.y", i64::MIN);
        let err = csrf().check(Some(&token), Some("b"), now).unwrap_err();
        assert_eq!(err.code, Code::CSRF_INVALID);
    }
}
