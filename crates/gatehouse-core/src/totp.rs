//! Second-factor primitives: HOTP/TOTP (RFC 4226 / RFC 6238, HMAC-SHA-1), base32, the
//! sealing of TOTP secrets at rest (see [`crate::seal`]), recovery codes and the QR code.

use crate::seal::Purpose;
use crate::tokens::random_bytes;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_domain::{AppError, Code, Id};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Seconds per time-step.
pub const PERIOD: i64 = 30;
/// Digits in a code.
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one (clock drift).
const WINDOW: i64 = 1;
/// Bytes in a TOTP secret: 160 bits, as RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;
/// Recovery codes handed out at once.
pub const RECOVERY_CODES: usize = 10;

/// RFC 4226 HOTP with HMAC-SHA-1: the `digits`-digit code for `counter`.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        // HMAC takes keys of any length, so this cannot happen.
        return 0;
    };
    mac.update(&counter.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[19] & 0x0f);
    let bin = (u32::from(hash[offset]) & 0x7f) << 24
        | u32::from(hash[offset + 1]) << 16
        | u32::from(hash[offset + 2]) << 8
        | u32::from(hash[offset + 3]);
    bin % 10u32.pow(digits)
}

/// The time-step a Unix time falls in.
pub fn step_at(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(PERIOD)
}

/// The six-digit code for `step`, zero-padded.
pub fn code_at(key: &[u8], step: i64) -> String {
    let n = hotp(key, u64::try_from(step).unwrap_or(0), DIGITS);
    format!("{n:0width$}", width = DIGITS as usize)
}

/// The step within ±1 of `unix_seconds` whose code is `code`, newest first; `None` if none.
/// Compared in constant time.
pub fn matching_step(key: &[u8], code: &str, unix_seconds: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_at(unix_seconds);
    let mut found = None;
    for step in (now - WINDOW..=now + WINDOW).rev() {
        let hit: bool = code_at(key, step).as_bytes().ct_eq(code.as_bytes()).into();
        if hit && found.is_none() {
            found = Some(step);
        }
    }
    found
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding (what authenticator apps expect).
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(B32[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(B32[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// A fresh 160-bit secret from the OS CSPRNG.
pub fn new_secret() -> Result<[u8; SECRET_BYTES], AppError> {
    random_bytes::<SECRET_BYTES>()
}

/// `otpauth://totp/…` for authenticator apps.
pub fn otpauth_url(issuer: &str, account: &str, secret_b32: &str) -> String {
    let issuer = url_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?secret={secret_b32}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={PERIOD}",
        url_encode(account)
    )
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `text` as an SVG QR code in a `data:` URL.
pub fn qr_data_url(text: &str) -> Result<String, AppError> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    Ok(format!(
        "data:image/svg+xml;base64,{}",
        STANDARD.encode(svg.as_bytes())
    ))
}

/// Parses `[secrets] encryption_key`: base64 of exactly 32 bytes.
pub fn parse_key(text: &str) -> Option<[u8; 32]> {
    crate::seal::parse_key(text).map(|k| *k)
}

/// A fresh `[secrets] encryption_key`: base64 of 32 random bytes.
pub fn new_key_text() -> Result<String, AppError> {
    Ok(STANDARD.encode(random_bytes::<32>()?))
}

/// Encrypts a TOTP secret for `account`: base64 of nonce ‖ ciphertext. The account id is
/// bound in as associated data, so a sealed secret cannot be moved to another account.
pub fn seal(key: &[u8; 32], account: Id, plain: &[u8]) -> Result<String, AppError> {
    Ok(STANDARD.encode(crate::seal::seal(key, Purpose::TotpSecret(account), plain)?))
}

/// Decrypts what [`seal`] produced. A wrong key or tampered text is an internal error.
pub fn open(key: &[u8; 32], account: Id, sealed: &str) -> Result<Vec<u8>, AppError> {
    let bytes = STANDARD.decode(sealed).map_err(|_| {
        AppError::internal(
            Code::INTERNAL_ERROR,
            "TOTP secret cannot be decrypted (not base64)",
        )
    })?;
    let mut plain = crate::seal::open(key, Purpose::TotpSecret(account), &bytes)?;
    // Moved out rather than copied, so no unwiped copy is left behind.
    Ok(std::mem::take(&mut *plain))
}

/// Ten recovery codes of 50 random bits each, shown as `xxxxx-xxxxx` (lowercase base32).
pub fn new_recovery_codes() -> Result<Vec<String>, AppError> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw = base32(&random_bytes::<7>()?).to_lowercase();
            Ok(format!("{}-{}", &raw[..5], &raw[5..10]))
        })
        .collect()
}

/// A recovery code as typed, without separators and case.
fn normalize_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The stored verifier of a recovery code: `h1:` and the hex of an HMAC-SHA-256 under the
/// server's encryption key. Codes carry only 50 bits; keyed, a stolen database does not let
/// anyone test guesses offline.
pub fn recovery_hash(key: &[u8; 32], code: &str) -> Result<String, AppError> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
    mac.update(b"gatehouse recovery code\0");
    mac.update(normalize_recovery_code(code).as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("h1:{hex}"))
}

/// The unkeyed SHA-256 verifier earlier versions stored; still accepted for codes issued
/// before the switch, until they are used or regenerated.
pub fn legacy_recovery_hash(code: &str) -> String {
    Sha256::digest(normalize_recovery_code(code).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_KEY: &[u8] = b"12345678901234567890";

    #[test]
    fn hotp_matches_rfc4226_appendix_d() {
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, want) in expected.iter().enumerate() {
            assert_eq!(hotp(RFC_KEY, counter as u64, 6), *want, "counter {counter}");
        }
    }

    #[test]
    fn totp_matches_rfc6238_appendix_b_sha1() {
        let cases = [
            (59, 94287082),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ];
        for (t, want) in cases {
            assert_eq!(hotp(RFC_KEY, step_at(t) as u64, 8), want, "T = {t}");
        }
    }

    #[test]
    fn codes_are_accepted_one_step_either_side_only() {
        let t = 1_700_000_000;
        let step = step_at(t);
        assert_eq!(
            matching_step(RFC_KEY, &code_at(RFC_KEY, step), t),
            Some(step)
        );
        assert_eq!(
            matching_step(RFC_KEY, &code_at(RFC_KEY, step - 1), t),
            Some(step - 1)
        );
        assert_eq!(
            matching_step(RFC_KEY, &code_at(RFC_KEY, step + 1), t),
            Some(step + 1)
        );
        assert_eq!(matching_step(RFC_KEY, &code_at(RFC_KEY, step - 2), t), None);
        assert_eq!(matching_step(RFC_KEY, "12345", t), None);
        assert_eq!(matching_step(RFC_KEY, "abcdef", t), None);
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(&[0u8; 20]).len(), 32);
    }

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_account() {
        let key = [7u8; 32];
        let account = gatehouse_domain::ids::new_id();
        let sealed = seal(&key, account, b"secret-bytes").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(open(&key, account, &sealed).unwrap(), b"secret-bytes");
        assert!(open(&[8u8; 32], account, &sealed).is_err());
        assert!(open(&key, gatehouse_domain::ids::new_id(), &sealed).is_err());
    }

    /// A secret sealed the way TOTP secrets were sealed before `seal.rs` existed (base64 of
    /// nonce ‖ ChaCha20-Poly1305 with the account id as associated data) still opens.
    #[test]
    fn secrets_sealed_in_the_original_format_still_open() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::{ChaCha20Poly1305, Nonce};
        let key = [9u8; 32];
        let account = gatehouse_domain::ids::new_id();
        let nonce = [3u8; 12];
        let ct = ChaCha20Poly1305::new((&key).into())
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: b"legacy-secret".as_slice(),
                    aad: account.as_bytes(),
                },
            )
            .unwrap();
        let stored = STANDARD.encode([nonce.as_slice(), &ct].concat());
        assert_eq!(open(&key, account, &stored).unwrap(), b"legacy-secret");
    }

    #[test]
    fn recovery_codes_are_distinct_and_hash_the_same_however_typed() {
        let codes = new_recovery_codes().unwrap();
        assert_eq!(codes.len(), 10);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10);
        assert_eq!(codes[0].len(), 11);
        let upper = codes[0].to_uppercase().replace('-', " ");
        let key = [7u8; 32];
        assert_eq!(
            recovery_hash(&key, &codes[0]).unwrap(),
            recovery_hash(&key, &upper).unwrap()
        );
        assert_eq!(
            legacy_recovery_hash(&codes[0]),
            legacy_recovery_hash(&upper)
        );
    }

    #[test]
    fn otpauth_url_has_every_parameter() {
        let url = otpauth_url("Gate house", "a@b.c", "ABC");
        assert_eq!(
            url,
            "otpauth://totp/Gate%20house:a@b.c?secret=ABC&issuer=Gate%20house&algorithm=SHA1&digits=6&period=30"
        );
        assert!(
            qr_data_url(&url)
                .unwrap()
                .starts_with("data:image/svg+xml;base64,")
        );
    }
}
