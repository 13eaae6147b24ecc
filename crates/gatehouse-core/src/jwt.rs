//! Access tokens: compact JWS (RFC 7515) signed with EdDSA (RFC 8037; keys in the store,
//! their private halves sealed with `secrets.encryption_key`, rotated, published as JWKS) or
//! HS256 (shared secret from config).
//!
//! The JWS layer is written here rather than taken from a JWT crate: it is a few dozen lines,
//! it only ever reads tokens this service wrote, the key ring's reload-on-unknown-kid and
//! verified-token cache sit directly on it, and the tests below hold it to the RFC vectors.
//! What it refuses: an `alg` other than its key's (so `none` and key confusion), any header
//! member it does not know (`crit` above all, RFC 7515 §4.1.11: we implement no extension),
//! duplicated members, a header or claims set that is not a JSON object, and Ed25519
//! signatures that are non-canonical or made with a small-order key (`verify_strict`).

use crate::config::{JwtAlgorithm, JwtConfig, SecretsConfig};
use crate::seal::{self, Purpose};
use crate::tokens::{b64url, b64url_decode, random_bytes};
use ed25519_dalek::Signer;
use gatehouse_domain::model::SigningKey;
use gatehouse_domain::ports::KeyStore;
use gatehouse_domain::{AppError, Code, Id, Timestamp};
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use zeroize::Zeroizing;

/// Claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: Id,
    pub sid: Id,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub typ: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub br: Option<Id>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The JOSE header, as written and as accepted. Unknown members (`crit`, `jku`, `x5u`, …)
/// and duplicated ones fail deserialization, so a token asking for anything we do not
/// implement is refused rather than half-understood.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    kid: String,
}

/// Longest `kid` accepted: ours are 16 characters; this bounds what junk tokens can make us
/// look up (and reload for).
const MAX_KID_LEN: usize = 64;

/// An Ed25519 private key written in clear by versions before sealing: exactly this long.
const ED25519_KEY_BYTES: usize = 32;

/// Starts a sealed private key in the store (then nonce ‖ ciphertext ‖ tag, never 32 bytes
/// long, so it cannot be mistaken for a key written in clear).
const SEALED_V1: &[u8] = b"GHK1";

#[derive(Clone)]
enum VerifyKey {
    Ed(ed25519_dalek::VerifyingKey),
    Hs(Arc<Zeroizing<Vec<u8>>>),
}

/// Signing keys; the Ed25519 key wipes itself on drop (ed25519-dalek's `zeroize` feature).
#[derive(Clone)]
enum SignKey {
    Ed(Box<ed25519_dalek::SigningKey>),
    Hs(Arc<Zeroizing<Vec<u8>>>),
}

#[derive(Default)]
struct KeySet {
    signer: Option<(String, SignKey)>,
    verifiers: HashMap<String, VerifyKey>,
    jwks: Vec<serde_json::Value>,
}

/// The keys this instance signs and verifies with; reloaded from the store periodically so
/// every instance of a cluster follows a rotation.
#[derive(Clone)]
pub struct Keyring {
    cfg: JwtConfig,
    /// `secrets.encryption_key`: seals and opens the private halves of EdDSA keys.
    sealing_key: Option<Arc<Zeroizing<[u8; 32]>>>,
    set: Arc<RwLock<Arc<KeySet>>>,
    /// When an unknown `kid` last forced a reload (ms), so junk tokens cannot hammer the store.
    last_forced: Arc<AtomicI64>,
    verified: Arc<VerifiedCache>,
}

/// Seconds a token may be early (`nbf`) or late (`exp`) to absorb clock skew between hosts.
const LEEWAY_SECS: i64 = 5;

impl Keyring {
    /// An empty keyring; call [`Keyring::load`] before use. `secrets.encryption_key` seals
    /// the EdDSA private keys it writes and opens the ones it reads; without it, only keys
    /// written in clear by earlier versions can sign, and no new key can be made.
    pub fn new(cfg: JwtConfig, secrets: &SecretsConfig) -> Self {
        let sealing_key = secrets
            .encryption_key
            .as_ref()
            .and_then(|k| seal::parse_key(k.expose()))
            .map(Arc::new);
        Self {
            cfg,
            sealing_key,
            set: Arc::new(RwLock::new(Arc::new(KeySet::default()))),
            last_forced: Arc::new(AtomicI64::new(i64::MIN)),
            verified: Arc::default(),
        }
    }

    /// Verifies; if the token names a key this instance has not loaded yet (another
    /// instance rotated), reloads from the store first, at most once a second.
    pub async fn verify_or_reload(
        &self,
        store: &dyn KeyStore,
        token: &str,
        now: Timestamp,
    ) -> Result<Claims, AppError> {
        match self.verify(token, now) {
            Err(e) if e.code == Code::TOKEN_INVALID && self.names_unknown_kid(token) => {
                let last = self.last_forced.load(Ordering::Relaxed);
                if now.millis().saturating_sub(last) < 1000
                    || self
                        .last_forced
                        .compare_exchange(last, now.millis(), Ordering::AcqRel, Ordering::Relaxed)
                        .is_err()
                {
                    return Err(e);
                }
                self.load(store, now).await?;
                self.verify(token, now)
            }
            other => other,
        }
    }

    fn names_unknown_kid(&self, token: &str) -> bool {
        let kid = token
            .split('.')
            .next()
            .and_then(parse_header)
            .map(|h| h.kid);
        kid.is_some_and(|k| !self.current().verifiers.contains_key(&k))
    }

    /// Creates the first EdDSA key if the store has none (safe when instances race).
    pub async fn ensure_key(&self, store: &dyn KeyStore, now: Timestamp) -> Result<(), AppError> {
        if self.cfg.algorithm != JwtAlgorithm::EdDSA {
            return Ok(());
        }
        let keys = store.signing_keys().await?;
        if !keys
            .iter()
            .any(|k| k.alg == "EdDSA" && k.retired_at.is_none())
        {
            store.insert_first_signing_key(&self.generate(now)?).await?;
        }
        // Keys written in clear by versions before sealing are sealed in place, keeping
        // their kid, so tokens already issued stay valid. Instances racing here are fine:
        // the update is conditional, and either instance's sealed form opens.
        let clear = keys
            .iter()
            .filter(|k| k.private_key.len() == ED25519_KEY_BYTES);
        for k in clear {
            let Some(sealing_key) = self.sealing_key.as_deref() else {
                tracing::warn!(kid = %k.kid, "a signing key is stored in clear and secrets.encryption_key is not set to seal it");
                continue;
            };
            let mut sealed = SEALED_V1.to_vec();
            sealed.extend(seal::seal(
                sealing_key,
                Purpose::SigningKey(&k.kid),
                &k.private_key,
            )?);
            if store
                .reseal_signing_key(&k.kid, &k.private_key, &sealed)
                .await?
            {
                tracing::info!(kid = %k.kid, "sealed a signing key stored in clear by an earlier version");
            }
        }
        Ok(())
    }

    /// Generates a new EdDSA key and makes it the signing key; old keys keep verifying
    /// until the tokens they signed have expired.
    pub async fn rotate(&self, store: &dyn KeyStore, now: Timestamp) -> Result<String, AppError> {
        let key = self.generate(now)?;
        store.rotate_signing_key(&key, now).await?;
        self.load(store, now).await?;
        Ok(key.kid)
    }

    /// Reloads keys from the store (and the HS256 secret from config). On error the keys
    /// already loaded stay in use.
    pub async fn load(&self, store: &dyn KeyStore, now: Timestamp) -> Result<(), AppError> {
        let mut set = KeySet::default();
        match self.cfg.algorithm {
            JwtAlgorithm::HS256 => {
                if let Some(secret) = self.cfg.secret.as_ref().filter(|s| s.expose().len() >= 32) {
                    let bytes = Arc::new(Zeroizing::new(secret.expose().as_bytes().to_vec()));
                    let kid = format!(
                        "hs256-{}",
                        &crate::tokens::digest_hex(secret.expose())[..12]
                    );
                    set.verifiers
                        .insert(kid.clone(), VerifyKey::Hs(bytes.clone()));
                    set.signer = Some((kid, SignKey::Hs(bytes)));
                }
            }
            JwtAlgorithm::EdDSA => {
                let keys = store.signing_keys().await?;
                let grace_ms = i64::try_from(self.cfg.access_ttl_seconds).unwrap_or(0) * 1000
                    + LEEWAY_SECS * 1000;
                for key in keys.iter().filter(|k| k.alg == "EdDSA") {
                    let usable = key
                        .retired_at
                        .is_none_or(|r| r.millis() + grace_ms > now.millis());
                    let Ok(public) = <[u8; 32]>::try_from(key.public_key.as_slice()) else {
                        continue;
                    };
                    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&public) else {
                        continue;
                    };
                    // A small-order key verifies forged signatures; never trust one.
                    if !usable || vk.is_weak() {
                        continue;
                    }
                    set.verifiers.insert(key.kid.clone(), VerifyKey::Ed(vk));
                    set.jwks.push(serde_json::json!({
                        "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
                        "kid": key.kid, "x": b64url(&public),
                    }));
                    let newest = set.signer.is_none() && key.retired_at.is_none();
                    if newest && let Some(sk) = self.open_private(key)? {
                        set.signer = Some((key.kid.clone(), SignKey::Ed(Box::new(sk))));
                    }
                }
            }
        }
        if let Ok(mut guard) = self.set.write() {
            *guard = Arc::new(set);
        }
        // A removed key must stop verifying at once, cached or not.
        self.verified.clear();
        Ok(())
    }

    /// A fresh Ed25519 key whose private half is sealed for the store; its kid is derived
    /// from the public key.
    fn generate(&self, now: Timestamp) -> Result<SigningKey, AppError> {
        let sealing_key = self.sealing_key()?;
        let private = Zeroizing::new(random_bytes::<ED25519_KEY_BYTES>()?);
        let sk = ed25519_dalek::SigningKey::from_bytes(&private);
        let public = sk.verifying_key().to_bytes();
        let kid = b64url(&Sha256::digest(public)[..12]);
        let mut sealed = SEALED_V1.to_vec();
        sealed.extend(seal::seal(
            sealing_key,
            Purpose::SigningKey(&kid),
            private.as_slice(),
        )?);
        Ok(SigningKey {
            kid,
            alg: "EdDSA".into(),
            private_key: sealed,
            public_key: public.to_vec(),
            created_at: now,
            retired_at: None,
        })
    }

    fn sealing_key(&self) -> Result<&[u8; 32], AppError> {
        self.sealing_key.as_deref().map(|k| &**k).ok_or_else(|| {
            AppError::internal(
                Code::SERVICE_UNAVAILABLE,
                "secrets.encryption_key is not configured: EdDSA signing keys are sealed with it",
            )
        })
    }

    /// The private half of a stored key: `None` for a verify-only key (empty), opened when
    /// sealed, taken as is when written in clear by an earlier version.
    fn open_private(
        &self,
        key: &SigningKey,
    ) -> Result<Option<ed25519_dalek::SigningKey>, AppError> {
        let stored = key.private_key.as_slice();
        let bad = |why: &str| {
            AppError::internal(
                Code::INTERNAL_ERROR,
                format!("signing key {}: {why}", key.kid),
            )
        };
        let plain = if stored.is_empty() {
            return Ok(None);
        } else if stored.len() == ED25519_KEY_BYTES {
            Zeroizing::new(stored.to_vec())
        } else if let Some(sealed) = stored.strip_prefix(SEALED_V1) {
            seal::open(self.sealing_key()?, Purpose::SigningKey(&key.kid), sealed)?
        } else {
            return Err(bad("the stored private key is in no known format"));
        };
        let private = Zeroizing::new(
            <[u8; ED25519_KEY_BYTES]>::try_from(plain.as_slice())
                .map_err(|_| bad("the private key is not 32 bytes"))?,
        );
        let sk = ed25519_dalek::SigningKey::from_bytes(&private);
        if sk.verifying_key().as_bytes().as_slice() != key.public_key.as_slice() {
            return Err(bad("the private key does not match the public key"));
        }
        Ok(Some(sk))
    }

    fn current(&self) -> Arc<KeySet> {
        self.set.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// The public keys as a JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.current().jwks })
    }

    /// The kid of the current signing key, if any.
    pub fn signing_kid(&self) -> Option<String> {
        self.current().signer.as_ref().map(|(kid, _)| kid.clone())
    }

    /// Signs `claims`; `JWT_KEY_NOT_CONFIGURED` without a usable key.
    pub fn sign(&self, claims: &Claims) -> Result<String, AppError> {
        let set = self.current();
        let (kid, key) = set.signer.as_ref().ok_or(Code::JWT_KEY_NOT_CONFIGURED)?;
        let alg = match key {
            SignKey::Ed(_) => "EdDSA",
            SignKey::Hs(_) => "HS256",
        };
        let header = Header {
            alg: alg.into(),
            typ: Some("JWT".into()),
            kid: kid.clone(),
        };
        let enc = |v: &dyn erased::Json| v.to_json().map(|j| b64url(&j));
        let signing_input = format!("{}.{}", enc(&header)?, enc(claims)?);
        let sig = sign_input(key, signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", b64url(&sig)))
    }

    /// Verifies signature, algorithm, issuer, audience, type and lifetime.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Claims, AppError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.verified.get(&key) {
            check_times(&claims, now)?;
            return Ok(claims);
        }
        let claims = self.verify_uncached(token, now)?;
        self.verified.put(key, &claims);
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str, now: Timestamp) -> Result<Claims, AppError> {
        let set = self.current();
        if set.verifiers.is_empty() {
            return Err(Code::JWT_KEY_NOT_CONFIGURED.into());
        }
        let invalid = || AppError::new(Code::TOKEN_INVALID);
        let (h, p, s) = split_compact(token).ok_or_else(invalid)?;
        let header = parse_header(h).ok_or_else(invalid)?;
        let key = set.verifiers.get(&header.kid).ok_or_else(invalid)?;
        let sig = b64url_decode(s).ok_or_else(invalid)?;
        let signing_input = &token[..h.len() + 1 + p.len()];
        if !signature_valid(key, &header.alg, signing_input.as_bytes(), &sig) {
            return Err(invalid());
        }
        let claims: Claims = parse_object(p).ok_or_else(invalid)?;
        if claims.iss != self.cfg.issuer
            || claims.aud != self.cfg.audience
            || claims.typ != "access"
        {
            return Err(invalid());
        }
        check_times(&claims, now)?;
        Ok(claims)
    }
}

/// How a stored key's private half is kept, for `gatehouse keys list`: `sealed`, `clear`
/// (written by a version before sealing; the next rotation replaces it), `none`
/// (verify-only) or `unknown`.
pub fn private_key_storage(key: &SigningKey) -> &'static str {
    match key.private_key.as_slice() {
        [] => "none",
        k if k.len() == ED25519_KEY_BYTES => "clear",
        k if k.starts_with(SEALED_V1) => "sealed",
        _ => "unknown",
    }
}

/// The three segments of a compact JWS; anything but exactly three is refused.
fn split_compact(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.split('.');
    let segments = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some(segments)
}

/// A header we accept: only our members, each once, `typ` absent or `JWT`, a short `kid`.
fn parse_header(segment: &str) -> Option<Header> {
    let header: Header = parse_object(segment)?;
    let typ_ok = header.typ.as_deref().is_none_or(|t| t == "JWT");
    (typ_ok && header.kid.len() <= MAX_KID_LEN).then_some(header)
}

/// A base64url segment holding a JSON object. The object check matters: serde would also
/// read a struct from a JSON array.
fn parse_object<T: DeserializeOwned>(segment: &str) -> Option<T> {
    let bytes = b64url_decode(segment)?;
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// The JWS signature layer: is `sig` a valid `alg` signature of `signing_input` under `key`?
/// The algorithm must be the key's own; Ed25519 is checked strictly (canonical `S`, no
/// small-order key or `R`), so one message has one valid signature per key.
fn signature_valid(key: &VerifyKey, alg: &str, signing_input: &[u8], sig: &[u8]) -> bool {
    match (key, alg) {
        (VerifyKey::Ed(vk), "EdDSA") => ed25519_dalek::Signature::from_slice(sig)
            .is_ok_and(|sig| vk.verify_strict(signing_input, &sig).is_ok()),
        (VerifyKey::Hs(secret), "HS256") => Hmac::<Sha256>::new_from_slice(secret)
            .map(|mut mac| {
                mac.update(signing_input);
                mac.verify_slice(sig).is_ok()
            })
            .unwrap_or(false),
        _ => false,
    }
}

/// The JWS signature of `signing_input` under `key`.
fn sign_input(key: &SignKey, signing_input: &[u8]) -> Result<Vec<u8>, AppError> {
    match key {
        SignKey::Ed(k) => Ok(k.sign(signing_input).to_bytes().to_vec()),
        SignKey::Hs(secret) => hmac_sha256(secret, signing_input),
    }
}

/// `nbf` and `exp`, with leeway for clock skew between hosts.
fn check_times(claims: &Claims, now: Timestamp) -> Result<(), AppError> {
    let now_s = now.unix_seconds();
    // Saturating: `exp` near `i64::MAX` must not overflow (found by the `jwt_verify` fuzz
    // target; it takes a signed token, so only a key holder could send one).
    if claims.nbf > now_s.saturating_add(LEEWAY_SECS) {
        return Err(Code::TOKEN_INVALID.into());
    }
    if claims.exp.saturating_add(LEEWAY_SECS) <= now_s {
        return Err(Code::TOKEN_EXPIRED.into());
    }
    Ok(())
}

/// Tokens whose signature and claims were already checked, by SHA-256 of the whole token,
/// so a client's repeat requests skip the signature verification (the largest per-request
/// cost). Lifetimes are still checked on every hit; revocation is checked elsewhere.
#[derive(Default)]
struct VerifiedCache(std::sync::Mutex<HashMap<[u8; 32], Claims>>);

/// Entries kept before the cache starts over.
const VERIFIED_CAPACITY: usize = 50_000;

impl VerifiedCache {
    fn get(&self, key: &[u8; 32]) -> Option<Claims> {
        self.0.lock().ok().and_then(|m| m.get(key).cloned())
    }

    fn clear(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }

    fn put(&self, key: [u8; 32], claims: &Claims) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= VERIFIED_CAPACITY {
                m.clear();
            }
            m.insert(key, claims.clone());
        }
    }
}

fn hmac_sha256(secret: &[u8], data: &[u8]) -> Result<Vec<u8>, AppError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

mod erased {
    use gatehouse_domain::{AppError, Code};

    /// Serializes header and claims through one closure.
    pub trait Json {
        fn to_json(&self) -> Result<Vec<u8>, AppError>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>, AppError> {
            serde_json::to_vec(self).map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_domain::Secret;
    use gatehouse_domain::ids::new_id;
    use gatehouse_domain::ports::StoreResult;
    use std::sync::Mutex;

    /// The key store port over a vector, newest first like the SQL adapters.
    #[derive(Default)]
    struct MemKeys(Mutex<Vec<SigningKey>>);

    #[async_trait::async_trait]
    impl KeyStore for MemKeys {
        async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
            Ok(self.0.lock().unwrap().clone())
        }

        async fn rotate_signing_key(&self, key: &SigningKey, now: Timestamp) -> StoreResult<()> {
            let mut keys = self.0.lock().unwrap();
            for k in keys.iter_mut().filter(|k| k.retired_at.is_none()) {
                k.retired_at = Some(now);
            }
            keys.insert(0, key.clone());
            Ok(())
        }

        async fn insert_first_signing_key(&self, key: &SigningKey) -> StoreResult<()> {
            let mut keys = self.0.lock().unwrap();
            if keys.is_empty() {
                keys.push(key.clone());
            }
            Ok(())
        }

        async fn reseal_signing_key(&self, kid: &str, old: &[u8], new: &[u8]) -> StoreResult<bool> {
            let mut keys = self.0.lock().unwrap();
            let row = keys
                .iter_mut()
                .find(|k| k.kid == kid && k.private_key == old);
            Ok(row.map(|k| k.private_key = new.to_vec()).is_some())
        }
    }

    const NOW_MS: i64 = 1_800_000_000_000;
    const ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const HS_SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

    fn now() -> Timestamp {
        Timestamp::from_millis(NOW_MS)
    }

    fn secrets(key: &str) -> SecretsConfig {
        SecretsConfig {
            encryption_key: Some(Secret::new(key)),
        }
    }

    async fn ed_ring(store: &MemKeys) -> Keyring {
        let ring = Keyring::new(JwtConfig::default(), &secrets(ENCRYPTION_KEY));
        ring.ensure_key(store, now()).await.unwrap();
        ring.load(store, now()).await.unwrap();
        ring
    }

    async fn hs_ring() -> Keyring {
        let cfg = JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            secret: Some(Secret::new(HS_SECRET)),
            ..JwtConfig::default()
        };
        let ring = Keyring::new(cfg, &SecretsConfig::default());
        ring.load(&MemKeys::default(), now()).await.unwrap();
        ring
    }

    fn claims() -> Claims {
        let t = NOW_MS / 1000;
        Claims {
            iss: "gatehouse".into(),
            aud: "gatehouse".into(),
            sub: new_id(),
            sid: new_id(),
            jti: "jti-1".into(),
            iat: t,
            nbf: t,
            exp: t + 900,
            typ: "access".into(),
            scope: "account".into(),
            ws: None,
            br: None,
            roles: vec!["user".into()],
        }
    }

    fn code(r: Result<Claims, AppError>) -> Code {
        r.unwrap_err().code
    }

    /// A token with `header` and `payload` (JSON text, as given) signed by `ring`'s key.
    fn forge(ring: &Keyring, header: &str, payload: &str) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.as_bytes()),
            b64url(payload.as_bytes())
        );
        let set = ring.current();
        let (_, key) = set.signer.as_ref().unwrap();
        let sig = sign_input(key, input.as_bytes()).unwrap();
        format!("{input}.{}", b64url(&sig))
    }

    fn header_of(ring: &Keyring, alg: &str) -> String {
        format!(
            r#"{{"alg":"{alg}","typ":"JWT","kid":"{}"}}"#,
            ring.signing_kid().unwrap()
        )
    }

    fn ed_pair(d: &str) -> (SignKey, VerifyKey) {
        let private = <[u8; 32]>::try_from(b64url_decode(d).unwrap().as_slice()).unwrap();
        let sk = ed25519_dalek::SigningKey::from_bytes(&private);
        let vk = sk.verifying_key();
        (SignKey::Ed(Box::new(sk)), VerifyKey::Ed(vk))
    }

    // RFC 8037 Appendix A.1 (the key) and A.4 (the JWS).
    const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_INPUT: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    const RFC8037_SIG: &str =
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

    #[test]
    fn rfc8037_a1_key_and_a4_signature() {
        let (sign, verify) = ed_pair(RFC8037_D);
        let VerifyKey::Ed(vk) = &verify else {
            unreachable!()
        };
        assert_eq!(b64url(vk.as_bytes()), RFC8037_X, "A.2 public key from A.1");
        let sig = sign_input(&sign, RFC8037_INPUT.as_bytes()).unwrap();
        assert_eq!(b64url(&sig), RFC8037_SIG, "A.4 signature");
        assert!(signature_valid(
            &verify,
            "EdDSA",
            RFC8037_INPUT.as_bytes(),
            &sig
        ));
    }

    #[test]
    fn rfc8037_a5_only_the_exact_jws_validates() {
        let (_, verify) = ed_pair(RFC8037_D);
        let sig = b64url_decode(RFC8037_SIG).unwrap();
        let input = RFC8037_INPUT.as_bytes();
        assert!(signature_valid(&verify, "EdDSA", input, &sig));
        // Another payload, a flipped signature bit, a short signature, another algorithm.
        let other = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmG";
        assert!(!signature_valid(&verify, "EdDSA", other.as_bytes(), &sig));
        let mut flipped = sig.clone();
        flipped[10] ^= 0x01;
        assert!(!signature_valid(&verify, "EdDSA", input, &flipped));
        assert!(!signature_valid(&verify, "EdDSA", input, &sig[..63]));
        assert!(!signature_valid(&verify, "HS256", input, &sig));
        assert!(!signature_valid(&verify, "none", input, &sig));
        // Another key.
        let (_, stranger) = ed_pair(&b64url(&[7u8; 32]));
        assert!(!signature_valid(&stranger, "EdDSA", input, &sig));
    }

    #[test]
    fn rfc7515_a1_hs256_signature() {
        let k = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let key = Arc::new(Zeroizing::new(b64url_decode(k).unwrap()));
        let (h, p, s) = split_compact(token).unwrap();
        let input = format!("{h}.{p}");
        let sig = b64url_decode(s).unwrap();
        assert!(signature_valid(
            &VerifyKey::Hs(key.clone()),
            "HS256",
            input.as_bytes(),
            &sig
        ));
        assert_eq!(
            sign_input(&SignKey::Hs(key.clone()), input.as_bytes()).unwrap(),
            sig
        );
        assert!(!signature_valid(
            &VerifyKey::Hs(key.clone()),
            "HS256",
            format!("{input}x").as_bytes(),
            &sig
        ));
        assert!(!signature_valid(
            &VerifyKey::Hs(key),
            "EdDSA",
            input.as_bytes(),
            &sig
        ));
        // Its header has no `kid` and its claims are not ours: the full check refuses it.
        assert!(parse_header(h).is_none());
    }

    #[tokio::test]
    async fn signed_tokens_verify_and_their_claims_are_checked() {
        let store = MemKeys::default();
        let ring = ed_ring(&store).await;
        let c = claims();
        assert_eq!(ring.verify(&ring.sign(&c).unwrap(), now()).unwrap(), c);

        let with = |f: &dyn Fn(&mut Claims)| {
            let mut c = claims();
            f(&mut c);
            ring.verify(&ring.sign(&c).unwrap(), now())
        };
        assert_eq!(
            code(with(&|c| c.exp = NOW_MS / 1000 - 10)),
            Code::TOKEN_EXPIRED
        );
        assert_eq!(
            code(with(&|c| c.nbf = NOW_MS / 1000 + 60)),
            Code::TOKEN_INVALID
        );
        assert_eq!(code(with(&|c| c.aud = "other".into())), Code::TOKEN_INVALID);
        assert_eq!(code(with(&|c| c.iss = "other".into())), Code::TOKEN_INVALID);
        assert_eq!(
            code(with(&|c| c.typ = "refresh".into())),
            Code::TOKEN_INVALID
        );
        // Within the leeway either side.
        assert!(with(&|c| c.nbf = NOW_MS / 1000 + 4).is_ok());
        assert!(with(&|c| c.exp = NOW_MS / 1000 - 4).is_ok());
        // Extreme lifetimes neither overflow nor wrap around.
        assert!(with(&|c| c.exp = i64::MAX).is_ok());
        assert_eq!(code(with(&|c| c.nbf = i64::MAX)), Code::TOKEN_INVALID);
        // A cached token still expires.
        let token = ring.sign(&c).unwrap();
        ring.verify(&token, now()).unwrap();
        let later = Timestamp::from_millis(NOW_MS + 1_000_000);
        assert_eq!(code(ring.verify(&token, later)), Code::TOKEN_EXPIRED);
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        let store = MemKeys::default();
        let ring = ed_ring(&store).await;
        let payload = serde_json::to_string(&claims()).unwrap();
        let unsigned = format!(
            "{}.{}.",
            b64url(header_of(&ring, "none").as_bytes()),
            b64url(payload.as_bytes())
        );
        assert_eq!(code(ring.verify(&unsigned, now())), Code::TOKEN_INVALID);
        // Nor with a real signature under a `none` header.
        let signed = forge(&ring, &header_of(&ring, "none"), &payload);
        assert_eq!(code(ring.verify(&signed, now())), Code::TOKEN_INVALID);
    }

    #[tokio::test]
    async fn algorithm_and_key_confusion_is_refused() {
        let store = MemKeys::default();
        let ed = ed_ring(&store).await;
        let payload = serde_json::to_string(&claims()).unwrap();
        // HS256 keyed with the Ed25519 public key (as raw bytes and as published in JWKS),
        // under the Ed key's kid.
        let public = ed.jwks()["keys"][0]["x"].as_str().unwrap().to_string();
        let input = format!(
            "{}.{}",
            b64url(header_of(&ed, "HS256").as_bytes()),
            b64url(payload.as_bytes())
        );
        for secret in [b64url_decode(&public).unwrap(), public.into_bytes()] {
            let mac = hmac_sha256(&secret, input.as_bytes()).unwrap();
            let token = format!("{input}.{}", b64url(&mac));
            assert_eq!(code(ed.verify(&token, now())), Code::TOKEN_INVALID);
        }
        // An HS256 token at an EdDSA ring, and an EdDSA token at an HS256 ring.
        let hs = hs_ring().await;
        let hs_token = hs.sign(&claims()).unwrap();
        assert_eq!(code(ed.verify(&hs_token, now())), Code::TOKEN_INVALID);
        let ed_token = ed.sign(&claims()).unwrap();
        assert_eq!(code(hs.verify(&ed_token, now())), Code::TOKEN_INVALID);
        // An EdDSA signature presented under the HS256 kid.
        let relabelled = forge(&ed, &header_of(&hs, "EdDSA"), &payload);
        assert_eq!(code(hs.verify(&relabelled, now())), Code::TOKEN_INVALID);
        assert!(hs.verify(&hs_token, now()).is_ok());
    }

    #[tokio::test]
    async fn unknown_or_wrong_kids_are_refused() {
        let store = MemKeys::default();
        let ring = ed_ring(&store).await;
        let payload = serde_json::to_string(&claims()).unwrap();
        let unknown = forge(
            &ring,
            r#"{"alg":"EdDSA","typ":"JWT","kid":"nope"}"#,
            &payload,
        );
        assert_eq!(code(ring.verify(&unknown, now())), Code::TOKEN_INVALID);
        let long_kid = format!(r#"{{"alg":"EdDSA","kid":"{}"}}"#, "k".repeat(65));
        assert_eq!(
            code(ring.verify(&forge(&ring, &long_kid, &payload), now())),
            Code::TOKEN_INVALID
        );
        // A kid this ring knows, but the signature is another key's.
        let other_store = MemKeys::default();
        let other = ed_ring(&other_store).await;
        let swapped = forge(&other, &header_of(&ring, "EdDSA"), &payload);
        assert_eq!(code(ring.verify(&swapped, now())), Code::TOKEN_INVALID);
    }

    /// The group order L of Ed25519, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    #[tokio::test]
    async fn malleable_ed25519_signatures_are_refused() {
        let store = MemKeys::default();
        let ring = ed_ring(&store).await;
        let token = ring.sign(&claims()).unwrap();
        let (h, p, s) = split_compact(&token).unwrap();
        let mut sig = b64url_decode(s).unwrap();
        // S + L is the same scalar mod L: a second encoding of a valid signature.
        let mut carry = 0u16;
        for (byte, l) in sig[32..].iter_mut().zip(L) {
            let sum = u16::from(*byte) + u16::from(l) + carry;
            *byte = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        let malleated = format!("{h}.{p}.{}", b64url(&sig));
        assert_eq!(code(ring.verify(&malleated, now())), Code::TOKEN_INVALID);
        assert!(ring.verify(&token, now()).is_ok());
    }

    #[tokio::test]
    async fn small_order_public_keys_are_refused() {
        // The identity point: with R = identity and S = 0, `verify` accepts any message.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let sig = ed25519_dalek::Signature::from_bytes(&forged);
        assert!(
            ed25519_dalek::Verifier::verify(&vk, b"any message", &sig).is_ok(),
            "the lax check accepts it, which is why it is not used"
        );
        assert!(!signature_valid(
            &VerifyKey::Ed(vk),
            "EdDSA",
            b"any message",
            &forged
        ));
        // Nor is such a key ever loaded from the store.
        let store = MemKeys::default();
        store.0.lock().unwrap().push(SigningKey {
            kid: "weak".into(),
            alg: "EdDSA".into(),
            private_key: Vec::new(),
            public_key: identity.to_vec(),
            created_at: now(),
            retired_at: None,
        });
        let ring = Keyring::new(JwtConfig::default(), &secrets(ENCRYPTION_KEY));
        ring.load(&store, now()).await.unwrap();
        assert!(ring.current().verifiers.is_empty());
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 0);
    }

    #[tokio::test]
    async fn headers_of_unexpected_shape_are_refused() {
        let store = MemKeys::default();
        let ring = ed_ring(&store).await;
        let kid = ring.signing_kid().unwrap();
        let payload = serde_json::to_string(&claims()).unwrap();
        let refused = |header: String, payload: &str| {
            let token = forge(&ring, &header, payload);
            assert_eq!(
                code(ring.verify(&token, now())),
                Code::TOKEN_INVALID,
                "{header} {payload}"
            );
        };
        // The control: our own header, forged the same way, passes.
        let ok = forge(&ring, &header_of(&ring, "EdDSA"), &payload);
        assert!(ring.verify(&ok, now()).is_ok());

        refused(
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","crit":["exp"],"exp":1}}"#),
            &payload,
        );
        refused(
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","crit":[]}}"#),
            &payload,
        );
        refused(
            format!(r#"{{"alg":"EdDSA","kid":"{kid}","jku":"https://x"}}"#),
            &payload,
        );
        refused(
            format!(r#"{{"alg":"HS256","alg":"EdDSA","kid":"{kid}"}}"#),
            &payload,
        );
        refused(
            format!(r#"{{"alg":"EdDSA","kid":"other","kid":"{kid}"}}"#),
            &payload,
        );
        refused(format!(r#"["EdDSA","JWT","{kid}"]"#), &payload);
        refused(
            format!(r#"{{"alg":"EdDSA","typ":"JOSE","kid":"{kid}"}}"#),
            &payload,
        );
        refused(r#"{"alg":"EdDSA","typ":null,"kid":5}"#.into(), &payload);
        refused(r#"{"alg":"EdDSA"}"#.into(), &payload);
        // Claims: a duplicated member, or not an object.
        let dup = payload.replacen('{', r#"{"aud":"elsewhere","#, 1);
        refused(header_of(&ring, "EdDSA"), &dup);
        refused(header_of(&ring, "EdDSA"), "[]");
        // Not exactly three segments.
        assert_eq!(
            code(ring.verify(&format!("{ok}.x"), now())),
            Code::TOKEN_INVALID
        );
        let two = ok.rsplit_once('.').unwrap().0;
        assert_eq!(code(ring.verify(two, now())), Code::TOKEN_INVALID);
    }

    #[tokio::test]
    async fn private_keys_are_sealed_in_the_store() {
        let store = MemKeys::default();
        let ring = ed_ring(&store).await;
        let row = store.0.lock().unwrap()[0].clone();
        assert!(row.private_key.starts_with(SEALED_V1));
        assert_ne!(row.private_key.len(), ED25519_KEY_BYTES);
        let key = seal::parse_key(ENCRYPTION_KEY).unwrap();
        let clear = seal::open(
            &key,
            Purpose::SigningKey(&row.kid),
            &row.private_key[SEALED_V1.len()..],
        )
        .unwrap();
        assert_eq!(clear.len(), ED25519_KEY_BYTES);
        assert!(
            !row.private_key
                .windows(ED25519_KEY_BYTES)
                .any(|w| w == clear.as_slice())
        );
        assert!(ring.verify(&ring.sign(&claims()).unwrap(), now()).is_ok());
        // Rotation seals too.
        let kid = ring.rotate(&store, now()).await.unwrap();
        let rows = store.0.lock().unwrap().clone();
        assert_eq!(rows[0].kid, kid);
        assert!(rows[0].private_key.starts_with(SEALED_V1));
    }

    /// A row as versions before sealing wrote it: the private key in clear.
    fn legacy_row(seed: u8) -> SigningKey {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        SigningKey {
            kid: format!("legacy-{seed}"),
            alg: "EdDSA".into(),
            private_key: sk.to_bytes().to_vec(),
            public_key: sk.verifying_key().to_bytes().to_vec(),
            created_at: Timestamp::from_millis(NOW_MS - 1000),
            retired_at: None,
        }
    }

    #[tokio::test]
    async fn keys_written_in_clear_are_sealed_in_place_and_keep_working() {
        // Without an encryption key a clear row is read as is.
        let bare_store = MemKeys::default();
        bare_store.0.lock().unwrap().push(legacy_row(5));
        let bare = Keyring::new(JwtConfig::default(), &SecretsConfig::default());
        bare.load(&bare_store, now()).await.unwrap();
        let old = bare.sign(&claims()).unwrap();
        assert!(bare.verify(&old, now()).is_ok());

        // With one, start-up seals it in place: same kid, so its tokens stay valid.
        let store = MemKeys::default();
        store.0.lock().unwrap().push(legacy_row(5));
        let ring = ed_ring(&store).await;
        assert_eq!(store.0.lock().unwrap().len(), 1);
        assert_eq!(private_key_storage(&store.0.lock().unwrap()[0]), "sealed");
        assert_eq!(ring.signing_kid().as_deref(), Some("legacy-5"));
        assert!(ring.verify(&old, now()).is_ok());
        assert!(ring.verify(&ring.sign(&claims()).unwrap(), now()).is_ok());
        // The next rotation writes a sealed key; the clear one still verifies its tokens.
        ring.rotate(&store, now()).await.unwrap();
        assert!(
            store.0.lock().unwrap()[0]
                .private_key
                .starts_with(SEALED_V1)
        );
        assert_ne!(ring.signing_kid().as_deref(), Some("legacy-5"));
        assert!(ring.verify(&old, now()).is_ok());
        let rows = store.0.lock().unwrap().clone();
        assert_eq!(private_key_storage(&rows[0]), "sealed");
        assert_eq!(private_key_storage(&rows[1]), "sealed");
    }

    #[tokio::test]
    async fn a_wrong_or_missing_encryption_key_is_a_clear_error() {
        let store = MemKeys::default();
        let ring = ed_ring(&store).await;
        let good = ring.sign(&claims()).unwrap();

        let other = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
        let wrong = Keyring::new(JwtConfig::default(), &secrets(other));
        let e = wrong.load(&store, now()).await.unwrap_err();
        assert_eq!(e.code, Code::INTERNAL_ERROR);
        let detail = e.detail().unwrap();
        assert!(detail.contains("secrets.encryption_key"), "{detail}");
        assert!(detail.contains(&ring.signing_kid().unwrap()), "{detail}");

        let missing = Keyring::new(JwtConfig::default(), &SecretsConfig::default());
        let e = missing.load(&store, now()).await.unwrap_err();
        assert!(e.detail().unwrap().contains("secrets.encryption_key"));
        let e = missing
            .ensure_key(&MemKeys::default(), now())
            .await
            .unwrap_err();
        assert!(e.detail().unwrap().contains("secrets.encryption_key"));

        // A failed reload keeps the keys already loaded.
        let store2 = MemKeys::default();
        let ring2 = ed_ring(&store2).await;
        store2.0.lock().unwrap()[0].private_key[10] ^= 1;
        assert!(ring2.load(&store2, now()).await.is_err());
        assert!(ring2.verify(&ring2.sign(&claims()).unwrap(), now()).is_ok());
        assert!(ring.verify(&good, now()).is_ok());
    }

    #[tokio::test]
    async fn another_instance_picks_up_a_rotation_on_an_unknown_kid() {
        let store = MemKeys::default();
        let a = ed_ring(&store).await;
        let b = ed_ring(&store).await;
        assert_eq!(a.signing_kid(), b.signing_kid());
        a.rotate(&store, now()).await.unwrap();
        let token = a.sign(&claims()).unwrap();
        assert_eq!(code(b.verify(&token, now())), Code::TOKEN_INVALID);
        assert!(b.verify_or_reload(&store, &token, now()).await.is_ok());
        assert_eq!(a.signing_kid(), b.signing_kid());
        // Forced reloads are rate-limited: a second unknown kid within the second is refused
        // without a reload.
        a.rotate(&store, now()).await.unwrap();
        let newer = a.sign(&claims()).unwrap();
        assert_eq!(
            code(b.verify_or_reload(&store, &newer, now()).await),
            Code::TOKEN_INVALID
        );
        let later = Timestamp::from_millis(NOW_MS + 1500);
        assert!(b.verify_or_reload(&store, &newer, later).await.is_ok());
    }

    #[tokio::test]
    async fn hs256_signs_and_verifies_without_the_store() {
        let ring = hs_ring().await;
        assert!(ring.signing_kid().unwrap().starts_with("hs256-"));
        let token = ring.sign(&claims()).unwrap();
        assert!(ring.verify(&token, now()).is_ok());
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 0);
    }
}
