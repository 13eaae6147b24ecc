//! Checks Gatehouse credentials in a service that sits behind Gatehouse.
//!
//! - **Access tokens** (JWTs) are verified offline: EdDSA signatures against the issuer's
//!   JWKS (fetched, cached, refetched when a token names an unknown `kid`, at most once per
//!   `jwks_refetch_interval`), `alg` pinned to `EdDSA`, `iss`, `aud`, `typ`, `exp`, `nbf`
//!   checked. Like any offline check, a logout is seen only when the token expires; use
//!   introspection where that matters.
//! - **Personal access tokens** (`gatehouse_pat_…`) are checked by introspection with an
//!   API key holding `tokens:introspect`, with a short positive cache
//!   (`introspection_cache`, so a revoked token may pass for that long).
//! - [`Verified`] is an axum extractor yielding the [`Claims`], and rejecting with
//!   Gatehouse's envelope and codes (`AUTHENTICATION_REQUIRED`, `TOKEN_INVALID`,
//!   `TOKEN_EXPIRED`, `SERVICE_UNAVAILABLE`), localized by `Accept-Language`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use gatehouse_verify::{Config, Verified, Verifier};
//!
//! async fn hello(Verified(claims): Verified) -> String {
//!     format!("hello {}", claims.sub)
//! }
//!
//! # fn build() -> Result<Router, gatehouse_verify::VerifyError> {
//! let verifier = Arc::new(Verifier::new(Config::new("https://auth.example.com"))?);
//! let app: Router = Router::new().route("/hello", get(hello)).with_state(verifier);
//! # Ok(app) }
//! ```

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use gatehouse_domain::{Code, Locale};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, RwLock};

/// What every personal access token starts with.
pub const PAT_PREFIX: &str = "gatehouse_pat_";

/// Where the issuer is and how closely to follow it.
#[derive(Clone)]
pub struct Config {
    /// The Gatehouse base URL, e.g. `https://auth.example.com`.
    pub base_url: String,
    /// The `iss` tokens must carry (Gatehouse's `jwt.issuer`).
    pub issuer: String,
    /// The `aud` tokens must carry (Gatehouse's `jwt.audience`).
    pub audience: String,
    /// The API key used for introspection; without one, personal access tokens are refused.
    pub api_key: Option<ApiKey>,
    /// The least time between two JWKS fetches caused by unknown `kid`s.
    pub jwks_refetch_interval: Duration,
    /// How long a fetched JWKS is used before it is fetched again.
    pub jwks_max_age: Duration,
    /// How long an active introspection answer is reused.
    pub introspection_cache: Duration,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Timeout of each call to Gatehouse.
    pub timeout: Duration,
}

impl Config {
    /// Defaults for an issuer at `base_url`: Gatehouse's default `iss`/`aud` (`gatehouse`),
    /// a JWKS refetch at most every 30 s, kept 10 min, introspection answers kept 30 s.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            issuer: "gatehouse".into(),
            audience: "gatehouse".into(),
            api_key: None,
            jwks_refetch_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(600),
            introspection_cache: Duration::from_secs(30),
            leeway: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("base_url", &self.base_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("api_key", &self.api_key)
            .field("jwks_refetch_interval", &self.jwks_refetch_interval)
            .field("jwks_max_age", &self.jwks_max_age)
            .field("introspection_cache", &self.introspection_cache)
            .finish()
    }
}

/// An API key (access key and secret key) of a service account holding `tokens:introspect`.
#[derive(Clone)]
pub struct ApiKey {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("access_key", &self.access_key)
            .field("secret_key", &"[redacted]")
            .finish()
    }
}

/// Which kind of credential the caller presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    AccessToken,
    PersonalAccessToken,
}

/// Who the caller is, as Gatehouse vouches for it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Claims {
    /// The account id.
    pub sub: String,
    pub kind: CredentialKind,
    /// `account` or `branch`.
    pub scope: String,
    /// Expiry (Unix seconds); `None` for a personal access token that never expires.
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    /// The session (access tokens).
    pub sid: Option<String>,
    pub ws: Option<String>,
    pub br: Option<String>,
    pub roles: Vec<String>,
    /// A personal access token's effective permissions (its scopes ∩ the owner's).
    pub permissions: Option<Vec<String>>,
}

/// Why a credential was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no credentials")]
    Missing,
    #[error("the token is invalid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("gatehouse is unavailable: {0}")]
    Unavailable(String),
}

impl VerifyError {
    /// The Gatehouse catalog code this answers with.
    pub fn code(&self) -> Code {
        match self {
            VerifyError::Missing => Code::AUTHENTICATION_REQUIRED,
            VerifyError::Invalid => Code::TOKEN_INVALID,
            VerifyError::Expired => Code::TOKEN_EXPIRED,
            VerifyError::Unavailable(_) => Code::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Default)]
struct Jwks {
    keys: HashMap<String, VerifyingKey>,
    fetched: Option<Instant>,
}

/// Checks credentials; share one per process (`Arc<Verifier>` as axum state).
pub struct Verifier {
    cfg: Config,
    http: reqwest::Client,
    jwks: RwLock<Jwks>,
    /// Serializes fetches, so a burst of unknown `kid`s costs one request.
    fetching: Mutex<()>,
    pats: Mutex<HashMap<[u8; 32], (Instant, Claims)>>,
}

/// Most introspection answers kept at once; the cache is emptied when it fills.
const MAX_CACHED: usize = 10_000;
/// Longest token looked at.
const MAX_TOKEN: usize = 4096;

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: String,
}

#[derive(Deserialize)]
struct JwtClaims {
    iss: String,
    aud: String,
    sub: String,
    sid: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    typ: String,
    scope: String,
    #[serde(default)]
    ws: Option<String>,
    #[serde(default)]
    br: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize)]
struct Introspected {
    active: bool,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    ws: Option<String>,
    #[serde(default)]
    br: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn unavailable(e: impl std::fmt::Display) -> VerifyError {
    VerifyError::Unavailable(e.to_string())
}

impl Verifier {
    /// A verifier for `cfg` (no network until the first check).
    pub fn new(cfg: Config) -> Result<Self, VerifyError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(unavailable)?;
        Ok(Self {
            cfg,
            http,
            jwks: RwLock::new(Jwks::default()),
            fetching: Mutex::new(()),
            pats: Mutex::new(HashMap::new()),
        })
    }

    /// Checks an access token or a personal access token.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN {
            return Err(VerifyError::Invalid);
        }
        if token.starts_with(PAT_PREFIX) {
            self.introspect(token).await
        } else {
            self.verify_jwt(token).await
        }
    }

    async fn verify_jwt(&self, token: &str) -> Result<Claims, VerifyError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Invalid);
        };
        let decode = |seg: &str| {
            URL_SAFE_NO_PAD
                .decode(seg)
                .map_err(|_| VerifyError::Invalid)
        };
        let header: Header =
            serde_json::from_slice(&decode(h)?).map_err(|_| VerifyError::Invalid)?;
        if header.alg != "EdDSA" {
            return Err(VerifyError::Invalid);
        }
        let key = self.key(&header.kid).await?;
        let sig = Signature::from_slice(&decode(s)?).map_err(|_| VerifyError::Invalid)?;
        let signed = &token[..h.len() + 1 + p.len()];
        key.verify_strict(signed.as_bytes(), &sig)
            .map_err(|_| VerifyError::Invalid)?;
        let c: JwtClaims = serde_json::from_slice(&decode(p)?).map_err(|_| VerifyError::Invalid)?;
        if c.iss != self.cfg.issuer || c.aud != self.cfg.audience || c.typ != "access" {
            return Err(VerifyError::Invalid);
        }
        let now = now_secs();
        let leeway = i64::try_from(self.cfg.leeway.as_secs()).unwrap_or(0);
        if c.nbf > now.saturating_add(leeway) {
            return Err(VerifyError::Invalid);
        }
        if c.exp.saturating_add(leeway) <= now {
            return Err(VerifyError::Expired);
        }
        Ok(Claims {
            sub: c.sub,
            kind: CredentialKind::AccessToken,
            scope: c.scope,
            exp: Some(c.exp),
            iat: Some(c.iat),
            sid: Some(c.sid),
            ws: c.ws,
            br: c.br,
            roles: c.roles,
            permissions: None,
        })
    }

    /// The key `kid`: from the cached JWKS when fresh; else fetched (an unknown `kid`
    /// fetches at most once per `jwks_refetch_interval`).
    async fn key(&self, kid: &str) -> Result<VerifyingKey, VerifyError> {
        let fresh = |j: &Jwks| {
            j.fetched
                .is_some_and(|t| t.elapsed() < self.cfg.jwks_max_age)
        };
        {
            let j = self.jwks.read().await;
            if fresh(&j)
                && let Some(k) = j.keys.get(kid)
            {
                return Ok(*k);
            }
        }
        let _one_at_a_time = self.fetching.lock().await;
        let (stale, recent) = {
            let j = self.jwks.read().await;
            if fresh(&j)
                && let Some(k) = j.keys.get(kid)
            {
                return Ok(*k);
            }
            let recent = j
                .fetched
                .is_some_and(|t| t.elapsed() < self.cfg.jwks_refetch_interval);
            (!fresh(&j), recent)
        };
        if !stale && recent {
            return Err(VerifyError::Invalid);
        }
        let keys = self.fetch_jwks().await?;
        let found = keys.get(kid).copied();
        *self.jwks.write().await = Jwks {
            keys,
            fetched: Some(Instant::now()),
        };
        found.ok_or(VerifyError::Invalid)
    }

    async fn fetch_jwks(&self) -> Result<HashMap<String, VerifyingKey>, VerifyError> {
        let url = format!("{}/.well-known/jwks.json", self.cfg.base_url);
        tracing::debug!(%url, "fetching the JWKS");
        let res = self.http.get(&url).send().await.map_err(unavailable)?;
        if !res.status().is_success() {
            return Err(unavailable(format!("JWKS answered {}", res.status())));
        }
        let doc: serde_json::Value = res.json().await.map_err(unavailable)?;
        let mut keys = HashMap::new();
        for k in doc["keys"].as_array().into_iter().flatten() {
            let ed = k["kty"] == "OKP" && k["crv"] == "Ed25519";
            let (Some(kid), Some(x)) = (k["kid"].as_str(), k["x"].as_str()) else {
                continue;
            };
            let Some(bytes) = URL_SAFE_NO_PAD
                .decode(x)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            else {
                continue;
            };
            match VerifyingKey::from_bytes(&bytes) {
                // A small-order key would accept forged signatures.
                Ok(vk) if ed && !vk.is_weak() => {
                    keys.insert(kid.to_string(), vk);
                }
                _ => continue,
            }
        }
        Ok(keys)
    }

    async fn introspect(&self, token: &str) -> Result<Claims, VerifyError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((at, claims)) = self.pats.lock().await.get(&key)
            && at.elapsed() < self.cfg.introspection_cache
            && claims.exp.is_none_or(|e| e > now_secs())
        {
            return Ok(claims.clone());
        }
        let api = self
            .cfg
            .api_key
            .as_ref()
            .ok_or_else(|| unavailable("no API key configured for introspection"))?;
        let url = format!("{}/api/v1/auth/introspect", self.cfg.base_url);
        let res = self
            .http
            .post(&url)
            .basic_auth(&api.access_key, Some(&api.secret_key))
            .form(&[("token", token)])
            .send()
            .await
            .map_err(unavailable)?;
        if res.status() != reqwest::StatusCode::OK {
            return Err(unavailable(format!(
                "introspection answered {}",
                res.status()
            )));
        }
        let answer: Introspected = res.json().await.map_err(unavailable)?;
        let (true, Some(sub)) = (answer.active, answer.sub) else {
            return Err(VerifyError::Invalid);
        };
        let claims = Claims {
            sub,
            kind: CredentialKind::PersonalAccessToken,
            scope: answer.scope.unwrap_or_else(|| "account".into()),
            exp: answer.exp,
            iat: answer.iat,
            sid: None,
            ws: answer.ws,
            br: answer.br,
            roles: answer.roles,
            permissions: answer.permissions,
        };
        if !self.cfg.introspection_cache.is_zero() {
            let mut cache = self.pats.lock().await;
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), claims.clone()));
        }
        Ok(claims)
    }
}

/// The verified caller of an axum handler. Needs `Arc<Verifier>` in the router's state.
#[derive(Clone, Debug)]
pub struct Verified(pub Claims);

/// An extractor refusal: Gatehouse's error envelope with its code and status.
#[derive(Debug)]
pub struct Rejection {
    pub error: VerifyError,
    locale: Locale,
    request_id: String,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let code = self.error.code();
        if let VerifyError::Unavailable(reason) = &self.error {
            tracing::warn!(%reason, "credential check failed: gatehouse unavailable");
        }
        let status =
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({
            "success": false,
            "code": code.as_str(),
            "message": code.message(self.locale),
            "data": null,
            "requestId": self.request_id,
        });
        let mut res = (status, axum::Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            res.headers_mut().insert("x-request-id", v);
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

impl<S> FromRequestParts<S> for Verified
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
        let header_str = |name: header::HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let locale = header_str(header::ACCEPT_LANGUAGE)
            .map(|h| Locale::from_accept_language(&h))
            .unwrap_or_default();
        let request_id = header_str(header::HeaderName::from_static("x-request-id"))
            .filter(|id| {
                (1..=128).contains(&id.len())
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let reject = |error| Rejection {
            error,
            locale,
            request_id: request_id.clone(),
        };
        let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
        let token = match (values.next(), values.next()) {
            (None, _) => return Err(reject(VerifyError::Missing)),
            (Some(v), None) => v
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.to_string())
                .ok_or_else(|| reject(VerifyError::Invalid))?,
            _ => return Err(reject(VerifyError::Invalid)),
        };
        let verifier = Arc::<Verifier>::from_ref(state);
        verifier.verify(&token).await.map(Verified).map_err(reject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn sign(key: &SigningKey, header: serde_json::Value, claims: serde_json::Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let sig = key.sign(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    /// A verifier whose JWKS is already loaded with `key` as `kid` (no network).
    async fn verifier_with(kid: &str, key: &SigningKey) -> Verifier {
        let v = Verifier::new(Config::new("http://127.0.0.1:9")).unwrap();
        *v.jwks.write().await = Jwks {
            keys: HashMap::from([(kid.to_string(), key.verifying_key())]),
            fetched: Some(Instant::now()),
        };
        v
    }

    fn claims(exp_in: i64) -> serde_json::Value {
        let now = now_secs();
        serde_json::json!({ "iss": "gatehouse", "aud": "gatehouse", "sub": "u1", "sid": "s1",
            "jti": "j", "iat": now, "nbf": now, "exp": now + exp_in, "typ": "access",
            "scope": "account", "roles": ["user"] })
    }

    #[tokio::test]
    async fn a_good_token_verifies_and_everything_else_is_refused() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let v = verifier_with("k1", &key).await;
        let hdr = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": "k1" });
        let ok = v
            .verify(&sign(&key, hdr.clone(), claims(60)))
            .await
            .unwrap();
        assert_eq!(
            (ok.sub.as_str(), ok.kind),
            ("u1", CredentialKind::AccessToken)
        );

        let expired = sign(&key, hdr.clone(), claims(-60));
        assert!(matches!(
            v.verify(&expired).await,
            Err(VerifyError::Expired)
        ));
        let mut wrong_aud = claims(60);
        wrong_aud["aud"] = "other".into();
        assert!(matches!(
            v.verify(&sign(&key, hdr.clone(), wrong_aud)).await,
            Err(VerifyError::Invalid)
        ));
        let mut refresh = claims(60);
        refresh["typ"] = "refresh".into();
        assert!(matches!(
            v.verify(&sign(&key, hdr.clone(), refresh)).await,
            Err(VerifyError::Invalid)
        ));
        let hs = serde_json::json!({ "alg": "HS256", "kid": "k1" });
        assert!(matches!(
            v.verify(&sign(&key, hs, claims(60))).await,
            Err(VerifyError::Invalid)
        ));
        let other = SigningKey::from_bytes(&[9u8; 32]);
        assert!(matches!(
            v.verify(&sign(&other, hdr, claims(60))).await,
            Err(VerifyError::Invalid)
        ));
        for junk in ["", "a.b", "a.b.c.d", "x.y.z"] {
            assert!(matches!(v.verify(junk).await, Err(VerifyError::Invalid)));
        }
    }

    #[tokio::test]
    async fn an_unknown_kid_within_the_refetch_interval_is_refused_without_a_fetch() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        // The JWKS was fetched just now, so an unknown kid may not fetch again: were it
        // to try, the unreachable issuer would make it `Unavailable`.
        let v = verifier_with("k1", &key).await;
        let hdr = serde_json::json!({ "alg": "EdDSA", "kid": "k2" });
        assert!(matches!(
            v.verify(&sign(&key, hdr, claims(60))).await,
            Err(VerifyError::Invalid)
        ));
    }

    #[test]
    fn refusals_carry_gatehouse_codes() {
        assert_eq!(VerifyError::Missing.code(), Code::AUTHENTICATION_REQUIRED);
        assert_eq!(VerifyError::Expired.code(), Code::TOKEN_EXPIRED);
        assert_eq!(VerifyError::Unavailable("x".into()).code().status(), 503);
        assert!(!format!("{:?}", Config::new("http://x")).contains("secret"));
        let key = ApiKey {
            access_key: "ak".into(),
            secret_key: "hunter2".into(),
        };
        assert!(!format!("{key:?}").contains("hunter2"));
    }
}
