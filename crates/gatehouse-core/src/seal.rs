//! Secrets sealed at rest: ChaCha20-Poly1305 under `[secrets] encryption_key`, with
//! associated data that names what is sealed and whose it is, so a sealed value cannot be
//! moved to another row or read as another kind of secret.

use crate::tokens::random_bytes;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use gatehouse_domain::{AppError, Code, Id};
use zeroize::Zeroizing;

const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

/// What is sealed, and the row it belongs to.
#[derive(Clone, Copy, Debug)]
pub enum Purpose<'a> {
    /// A TOTP secret, bound to its account.
    TotpSecret(Id),
    /// A token-signing private key, bound to its kid.
    SigningKey(&'a str),
    /// A stored SSO provider's client secret, bound to the provider id.
    SsoClientSecret(&'a str),
}

impl Purpose<'_> {
    /// The associated data. A TOTP secret's is its 16 account-id bytes alone, as sealed since
    /// the first release (so stored secrets stay readable); every other purpose's starts with
    /// a longer tag of its own, so no two purposes can share associated data.
    fn aad(&self) -> Vec<u8> {
        match self {
            Purpose::TotpSecret(account) => account.as_bytes().to_vec(),
            Purpose::SigningKey(kid) => {
                [b"gatehouse signing-key v1\0".as_slice(), kid.as_bytes()].concat()
            }
            Purpose::SsoClientSecret(id) => [
                b"gatehouse sso-client-secret v1\0".as_slice(),
                id.as_bytes(),
            ]
            .concat(),
        }
    }

    fn what(&self) -> String {
        match self {
            Purpose::TotpSecret(_) => "TOTP secret".into(),
            Purpose::SigningKey(kid) => format!("signing key {kid}"),
            Purpose::SsoClientSecret(id) => format!("client secret of SSO provider {id}"),
        }
    }
}

/// Parses `[secrets] encryption_key`: base64 of exactly 32 bytes. Wiped when dropped.
pub fn parse_key(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let bytes = Zeroizing::new(STANDARD.decode(text.trim()).ok()?);
    <[u8; 32]>::try_from(bytes.as_slice())
        .ok()
        .map(Zeroizing::new)
}

/// Encrypts `plain` for `purpose`: nonce ‖ ciphertext ‖ tag.
pub fn seal(key: &[u8; 32], purpose: Purpose<'_>, plain: &[u8]) -> Result<Vec<u8>, AppError> {
    let nonce_bytes = random_bytes::<NONCE_BYTES>()?;
    let aad = purpose.aad();
    let sealed = ChaCha20Poly1305::new(key.into())
        .encrypt(
            &Nonce::from(nonce_bytes),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .map_err(|_| {
            AppError::internal(
                Code::INTERNAL_ERROR,
                format!("{} encryption failed", purpose.what()),
            )
        })?;
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Decrypts what [`seal`] produced for the same purpose. A wrong key, another row's value or
/// tampered bytes are an internal error that names the likely cause.
pub fn open(
    key: &[u8; 32],
    purpose: Purpose<'_>,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, AppError> {
    let bad = || {
        AppError::internal(
            Code::INTERNAL_ERROR,
            format!(
                "{} cannot be decrypted (wrong secrets.encryption_key?)",
                purpose.what()
            ),
        )
    };
    if sealed.len() < NONCE_BYTES + TAG_BYTES {
        return Err(bad());
    }
    let (nonce, ct) = sealed.split_at(NONCE_BYTES);
    let nonce = <[u8; NONCE_BYTES]>::try_from(nonce).map_err(|_| bad())?;
    let aad = purpose.aad();
    ChaCha20Poly1305::new(key.into())
        .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_domain::ids::new_id;

    #[test]
    fn opens_only_with_the_same_key_purpose_and_row() {
        let key = [7u8; 32];
        let sealed = seal(&key, Purpose::SigningKey("k1"), b"private").unwrap();
        assert_eq!(sealed.len(), NONCE_BYTES + 7 + TAG_BYTES);
        assert_eq!(
            open(&key, Purpose::SigningKey("k1"), &sealed)
                .unwrap()
                .as_slice(),
            b"private"
        );
        assert!(open(&[8u8; 32], Purpose::SigningKey("k1"), &sealed).is_err());
        assert!(open(&key, Purpose::SigningKey("k2"), &sealed).is_err());
        assert!(open(&key, Purpose::TotpSecret(new_id()), &sealed).is_err());
        assert!(open(&key, Purpose::SigningKey("k1"), &sealed[..20]).is_err());
        let mut flipped = sealed.clone();
        flipped[15] ^= 1;
        assert!(open(&key, Purpose::SigningKey("k1"), &flipped).is_err());
    }

    #[test]
    fn a_wrong_key_is_a_clear_error() {
        let sealed = seal(&[1u8; 32], Purpose::SigningKey("kid-9"), b"x").unwrap();
        let e = open(&[2u8; 32], Purpose::SigningKey("kid-9"), &sealed).unwrap_err();
        assert_eq!(e.code, Code::INTERNAL_ERROR);
        let detail = e.detail().unwrap();
        assert!(detail.contains("signing key kid-9"), "{detail}");
        assert!(detail.contains("secrets.encryption_key"), "{detail}");
    }

    #[test]
    fn purposes_never_share_associated_data() {
        let id = new_id();
        assert_eq!(Purpose::TotpSecret(id).aad().len(), 16);
        assert!(Purpose::SigningKey("").aad().len() > 16);
    }

    #[test]
    fn keys_are_32_bytes_of_base64() {
        let key = parse_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        assert_eq!(key[31], 31);
        assert!(parse_key("c2hvcnQ=").is_none());
        assert!(parse_key("not base64!").is_none());
    }
}
