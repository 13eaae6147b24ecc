//! Access-token verification (`gatehouse_core::jwt::Keyring::verify`): the compact JWS
//! every API request carries as a bearer token. Two key rings, HS256 and EdDSA, verify every
//! input. Input: a raw token, or `hs:`/`ed:` then `header JSON \n claims JSON`, which the
//! target signs with the matching key so the fuzzer gets past the signature to the header
//! and claims rules. Beyond not panicking: an accepted token has our `alg`, issuer,
//! audience, type and a live lifetime; it re-encodes to itself when written the way we write
//! tokens (so one signing input has one valid signature, no malleability); and its claims,
//! signed again, verify to the same claims.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use gatehouse_core::config::{JwtAlgorithm, JwtConfig, SecretsConfig};
use gatehouse_core::jwt::{Claims, Keyring};
use gatehouse_domain::model::SigningKey;
use gatehouse_domain::ports::{KeyStore, StoreResult};
use gatehouse_domain::{Secret, Timestamp};
use gatehouse_fuzz::block_on;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use std::sync::LazyLock;

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const HS_SECRET: &str = "fuzz-hs256-secret-0123456789abcdef";
const ED_PRIVATE: [u8; 32] = [1; 32];

/// A key store holding fixed keys (the EdDSA private half in clear, as older versions kept it).
struct Keys(Vec<SigningKey>);

#[async_trait::async_trait]
impl KeyStore for Keys {
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        Ok(self.0.clone())
    }
    async fn rotate_signing_key(&self, _: &SigningKey, _: Timestamp) -> StoreResult<()> {
        Ok(())
    }
    async fn insert_first_signing_key(&self, _: &SigningKey) -> StoreResult<()> {
        Ok(())
    }
    async fn reseal_signing_key(&self, _: &str, _: &[u8], _: &[u8]) -> StoreResult<bool> {
        Ok(false)
    }
}

struct Rings {
    hs: Keyring,
    ed: Keyring,
}

static RINGS: LazyLock<Rings> = LazyLock::new(|| {
    let secrets = SecretsConfig::default();
    let hs = Keyring::new(
        JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            secret: Some(Secret::new(HS_SECRET)),
            ..JwtConfig::default()
        },
        &secrets,
    );
    let public = ed25519_dalek::SigningKey::from_bytes(&ED_PRIVATE)
        .verifying_key()
        .to_bytes();
    let store = Keys(vec![SigningKey {
        kid: "fuzz-ed".into(),
        alg: "EdDSA".into(),
        private_key: ED_PRIVATE.to_vec(),
        public_key: public.to_vec(),
        created_at: NOW,
        retired_at: None,
    }]);
    let ed = Keyring::new(JwtConfig::default(), &secrets);
    for ring in [&hs, &ed] {
        if let Err(e) = block_on(ring.load(&store, NOW)) {
            panic!("key ring setup: {e:?}");
        }
    }
    Rings { hs, ed }
});

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.claims.signature` over the given JSON texts, signed with the `hs` or `ed` key.
fn signed(kind: &str, header: &str, claims: &str) -> Option<String> {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let sig = match kind {
        "hs" => {
            let mut mac = Hmac::<Sha256>::new_from_slice(HS_SECRET.as_bytes()).ok()?;
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "ed" => ed25519_dalek::SigningKey::from_bytes(&ED_PRIVATE)
            .sign(input.as_bytes())
            .to_bytes()
            .to_vec(),
        _ => return None,
    };
    Some(format!("{input}.{}", b64(&sig)))
}

fn check_accepted(ring: &Keyring, alg: &str, token: &str, claims: &Claims) {
    assert_eq!(claims.iss, "gatehouse");
    assert_eq!(claims.aud, "gatehouse");
    assert_eq!(claims.typ, "access");
    let now = NOW.unix_seconds();
    assert!(claims.nbf <= now + 5 && claims.exp.saturating_add(5) > now);
    let header = token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok());
    assert_eq!(
        header
            .as_ref()
            .and_then(|h| h.get("alg"))
            .and_then(|a| a.as_str()),
        Some(alg),
        "accepted a token with another alg: {token}"
    );
    let Ok(again) = ring.sign(claims) else {
        panic!("cannot sign accepted claims");
    };
    // Same signing input as we would write it: then it must be exactly our token.
    let input = |t: &str| t.rsplit_once('.').map(|(i, _)| i.to_string());
    if input(token) == input(&again) {
        assert_eq!(
            token, again,
            "a second valid signature for one signing input"
        );
    }
    assert_eq!(ring.verify(&again, NOW).ok().as_ref(), Some(claims));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let token = match text.split_once(':') {
        Some((kind @ ("hs" | "ed"), rest)) => {
            let (header, claims) = rest.split_once('\n').unwrap_or((rest, ""));
            match signed(kind, header, claims) {
                Some(t) => t,
                None => return,
            }
        }
        _ => text.to_string(),
    };
    let rings = &*RINGS;
    for (ring, alg) in [(&rings.hs, "HS256"), (&rings.ed, "EdDSA")] {
        if let Ok(claims) = ring.verify(&token, NOW) {
            check_accepted(ring, alg, &token, &claims);
        }
    }
});
