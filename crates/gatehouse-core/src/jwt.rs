//! Access tokens: compact JWS signed with EdDSA (keys in the store, rotated, published as
//! JWKS) or HS256 (shared secret from config). The algorithm is pinned per key: a token's
//! `alg` header must equal its key's, so `none` and key confusion are refused.

use crate::config::{JwtAlgorithm, JwtConfig};
use crate::tokens::{b64url, b64url_decode, random_bytes};
use ed25519_dalek::{Signer, Verifier};
use gatehouse_domain::model::SigningKey;
use gatehouse_domain::ports::Store;
use gatehouse_domain::{AppError, Code, Id, Timestamp};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

/// Claims of an access token (DESIGN.md §3).
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

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Clone)]
enum VerifyKey {
    Ed(ed25519_dalek::VerifyingKey),
    Hs(Arc<Vec<u8>>),
}

#[derive(Clone)]
enum SignKey {
    Ed(Box<ed25519_dalek::SigningKey>),
    Hs(Arc<Vec<u8>>),
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
    set: Arc<RwLock<Arc<KeySet>>>,
    /// When an unknown `kid` last forced a reload (ms), so junk tokens cannot hammer the store.
    last_forced: Arc<AtomicI64>,
    verified: Arc<VerifiedCache>,
}

/// Seconds a token may be early (`nbf`) or late (`exp`) to absorb clock skew between hosts.
const LEEWAY_SECS: i64 = 5;

impl Keyring {
    /// An empty keyring; call [`Keyring::load`] before use.
    pub fn new(cfg: JwtConfig) -> Self {
        Self {
            cfg,
            set: Arc::new(RwLock::new(Arc::new(KeySet::default()))),
            last_forced: Arc::new(AtomicI64::new(i64::MIN)),
            verified: Arc::default(),
        }
    }

    /// Verifies; if the token names a key this instance has not loaded yet (another
    /// instance rotated), reloads from the store first, at most once a second.
    pub async fn verify_or_reload(
        &self,
        store: &dyn Store,
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
        let header = token.split('.').next().and_then(b64url_decode);
        let kid = header
            .and_then(|h| serde_json::from_slice::<Header>(&h).ok())
            .and_then(|h| h.kid);
        kid.is_some_and(|k| k.len() <= 64 && !self.current().verifiers.contains_key(&k))
    }

    /// Creates the first EdDSA key if the store has none (safe when instances race).
    pub async fn ensure_key(&self, store: &dyn Store, now: Timestamp) -> Result<(), AppError> {
        if self.cfg.algorithm != JwtAlgorithm::EdDSA {
            return Ok(());
        }
        let keys = store
            .signing_keys()
            .await
            .map_err(crate::service::store_err)?;
        if !keys
            .iter()
            .any(|k| k.alg == "EdDSA" && k.retired_at.is_none())
        {
            store
                .insert_first_signing_key(&generate_ed25519(now)?)
                .await
                .map_err(crate::service::store_err)?;
        }
        Ok(())
    }

    /// Generates a new EdDSA key and makes it the signing key; old keys keep verifying
    /// until the tokens they signed have expired.
    pub async fn rotate(&self, store: &dyn Store, now: Timestamp) -> Result<String, AppError> {
        let key = generate_ed25519(now)?;
        store
            .rotate_signing_key(&key, now)
            .await
            .map_err(crate::service::store_err)?;
        self.load(store, now).await?;
        Ok(key.kid)
    }

    /// Reloads keys from the store (and the HS256 secret from config).
    pub async fn load(&self, store: &dyn Store, now: Timestamp) -> Result<(), AppError> {
        let mut set = KeySet::default();
        match self.cfg.algorithm {
            JwtAlgorithm::HS256 => {
                if let Some(secret) = self.cfg.secret.as_ref().filter(|s| s.expose().len() >= 32) {
                    let bytes = Arc::new(secret.expose().as_bytes().to_vec());
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
                let keys = store
                    .signing_keys()
                    .await
                    .map_err(crate::service::store_err)?;
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
                    if !usable {
                        continue;
                    }
                    set.verifiers.insert(key.kid.clone(), VerifyKey::Ed(vk));
                    set.jwks.push(serde_json::json!({
                        "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
                        "kid": key.kid, "x": b64url(&public),
                    }));
                    let newest = set.signer.is_none() && key.retired_at.is_none();
                    if newest && let Ok(private) = <[u8; 32]>::try_from(key.private_key.as_slice())
                    {
                        let sk = ed25519_dalek::SigningKey::from_bytes(&private);
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
            kid: Some(kid.clone()),
        };
        let enc = |v: &dyn erased::Json| v.to_json().map(|j| b64url(&j));
        let signing_input = format!("{}.{}", enc(&header)?, enc(claims)?);
        let sig = match key {
            SignKey::Ed(k) => k.sign(signing_input.as_bytes()).to_bytes().to_vec(),
            SignKey::Hs(secret) => hmac_sha256(secret, signing_input.as_bytes())?,
        };
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
        let mut parts = token.splitn(3, '.');
        let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let header: Header = serde_json::from_slice(&b64url_decode(h).ok_or_else(invalid)?)
            .map_err(|_| invalid())?;
        let kid = header.kid.ok_or_else(invalid)?;
        let key = set.verifiers.get(&kid).ok_or_else(invalid)?;
        let sig = b64url_decode(s).ok_or_else(invalid)?;
        let signing_input = &token[..h.len() + 1 + p.len()];
        let ok = match key {
            VerifyKey::Ed(vk) if header.alg == "EdDSA" => {
                let sig = ed25519_dalek::Signature::from_slice(&sig).map_err(|_| invalid())?;
                vk.verify(signing_input.as_bytes(), &sig).is_ok()
            }
            VerifyKey::Hs(secret) if header.alg == "HS256" => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| invalid())?;
                mac.update(signing_input.as_bytes());
                mac.verify_slice(&sig).is_ok()
            }
            _ => false,
        };
        if !ok {
            return Err(invalid());
        }
        let claims: Claims = serde_json::from_slice(&b64url_decode(p).ok_or_else(invalid)?)
            .map_err(|_| invalid())?;
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

/// `nbf` and `exp`, with leeway for clock skew between hosts.
fn check_times(claims: &Claims, now: Timestamp) -> Result<(), AppError> {
    let now_s = now.unix_seconds();
    if claims.nbf > now_s + LEEWAY_SECS {
        return Err(Code::TOKEN_INVALID.into());
    }
    if claims.exp + LEEWAY_SECS <= now_s {
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

/// A fresh Ed25519 signing key; its kid is derived from the public key.
pub fn generate_ed25519(now: Timestamp) -> Result<SigningKey, AppError> {
    let private = random_bytes::<32>()?;
    let sk = ed25519_dalek::SigningKey::from_bytes(&private);
    let public = sk.verifying_key().to_bytes();
    let digest = Sha256::digest(public);
    Ok(SigningKey {
        kid: b64url(&digest[..12]),
        alg: "EdDSA".into(),
        private_key: private.to_vec(),
        public_key: public.to_vec(),
        created_at: now,
        retired_at: None,
    })
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
