//! The back channel to upstream providers: one HTTP client (rustls, no redirects, bounded
//! time), discovery cached per issuer, the authorization URL, the code exchange, id_token
//! verification and userinfo. Nothing here logs a code, a token or a secret: failures are
//! described by their kind only.

use super::config::{ProviderConfig, ProviderKind, SsoConfig};
use gatehouse_domain::{AppError, Code};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreIdToken, CoreIdTokenClaims, CoreJsonWebKey,
    CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
    CoreUserInfoClaims,
};
use openidconnect::{
    AccessToken, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest,
    HttpResponse, IdTokenVerifier, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenUrl,
};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The discovery fields Gatehouse reads beyond OpenID Connect Core.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct ExtraMetadata {
    /// RFC 9207: the provider sends `iss` with every authorization response, so a callback
    /// without it is refused (mix-up defence).
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
}

impl openidconnect::AdditionalProviderMetadata for ExtraMetadata {}

/// Provider metadata with [`ExtraMetadata`].
pub type ProviderMetadata = openidconnect::ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// Who the provider says the user is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamUser {
    pub subject: String,
    pub email: Option<String>,
    /// The provider vouches for the e-mail (a boolean `true` or the string `"true"`).
    pub email_verified: bool,
    pub name: Option<String>,
    /// The id_token's `amr` says the user passed MFA upstream.
    pub mfa: bool,
}

/// What the authorization request binds: the values kept server-side for the callback.
pub struct AuthRequest<'a> {
    pub state: &'a str,
    /// OIDC: the nonce the id_token must carry; `None` (SPA exchange without one): the
    /// code is bound to the client by PKCE alone.
    pub nonce: Option<&'a str>,
    pub pkce_verifier: Option<&'a str>,
    pub redirect_uri: &'a str,
}

/// The back-channel client and the discovery cache.
pub struct Upstream {
    http: reqwest::Client,
    channel: BackChannel,
    ttl: Duration,
    discovered: Mutex<HashMap<String, (Instant, Arc<ProviderMetadata>)>>,
}

/// The HTTP client openidconnect and oauth2 call (a named type rather than a closure, so
/// the futures stay `Send` for every lifetime axum asks about).
struct BackChannel(reqwest::Client);

type SendFuture<'c> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<HttpResponse, BackChannelError>> + Send + 'c>,
>;

impl<'c> openidconnect::AsyncHttpClient<'c> for BackChannel {
    type Error = BackChannelError;
    type Future = SendFuture<'c>;

    fn call(&'c self, req: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let res = self
                .0
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| BackChannelError(describe(&e)))?;
            let mut out = openidconnect::http::Response::builder().status(res.status());
            for (k, v) in res.headers() {
                out = out.header(k, v);
            }
            let bytes = res
                .bytes()
                .await
                .map_err(|e| BackChannelError(describe(&e)))?;
            out.body(bytes.to_vec())
                .map_err(|e| BackChannelError(e.to_string()))
        })
    }
}

/// A failed back-channel call, described without anything it carried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackChannelError(String);

fn provider_error(what: &str, detail: impl std::fmt::Display) -> AppError {
    AppError::internal(Code::SSO_PROVIDER_ERROR, format!("{what}: {detail}"))
}

/// A token-endpoint failure by kind: the provider's error code, never the body (which may
/// hold tokens).
fn token_error<E: std::error::Error>(
    e: RequestTokenError<E, impl openidconnect::ErrorResponse>,
) -> AppError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let shown = serde_json::to_value(&r)
                .ok()
                .and_then(|v| v.get("error").and_then(|c| c.as_str()).map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            provider_error("token endpoint refused the code", shown)
        }
        RequestTokenError::Request(e) => provider_error("token endpoint unreachable", e),
        RequestTokenError::Parse(_, _) => {
            provider_error("token endpoint", "response did not parse")
        }
        RequestTokenError::Other(s) => provider_error("token endpoint", s),
    }
}

impl Upstream {
    /// The client: rustls, no redirects (a provider URL must not bounce us elsewhere),
    /// `sso.timeout_seconds` per call.
    pub fn new(cfg: &SsoConfig) -> Result<Self, AppError> {
        let timeout = Duration::from_secs(cfg.timeout_seconds.max(1));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
        Ok(Self {
            channel: BackChannel(http.clone()),
            http,
            ttl: Duration::from_secs(cfg.discovery_ttl_seconds.max(1)),
            discovered: Mutex::new(HashMap::new()),
        })
    }

    /// The provider's discovery document and keys, from the cache while fresh.
    pub async fn metadata(&self, issuer: &str) -> Result<Arc<ProviderMetadata>, AppError> {
        if let Ok(cache) = self.discovered.lock()
            && let Some((at, m)) = cache.get(issuer)
            && at.elapsed() < self.ttl
        {
            return Ok(Arc::clone(m));
        }
        let url =
            IssuerUrl::new(issuer.to_string()).map_err(|e| provider_error("issuer URL", e))?;
        let m = ProviderMetadata::discover_async(url, &self.channel)
            .await
            .map_err(|e| provider_error("discovery failed", discovery_kind(&e)))?;
        let m = Arc::new(m);
        if let Ok(mut cache) = self.discovered.lock() {
            cache.insert(issuer.to_string(), (Instant::now(), Arc::clone(&m)));
        }
        Ok(m)
    }

    /// Whether the provider promises the RFC 9207 `iss` parameter on its callbacks.
    pub async fn sends_iss(&self, issuer: &str) -> Result<bool, AppError> {
        Ok(self
            .metadata(issuer)
            .await?
            .additional_metadata()
            .authorization_response_iss_parameter_supported
            == Some(true))
    }

    /// Forgets a provider's discovery (its keys may have rotated).
    pub fn forget(&self, issuer: &str) {
        if let Ok(mut cache) = self.discovered.lock() {
            cache.remove(issuer);
        }
    }

    /// The URL to send the browser to.
    pub async fn authorize_url(
        &self,
        p: &ProviderConfig,
        req: &AuthRequest<'_>,
    ) -> Result<String, AppError> {
        let redirect = RedirectUrl::new(req.redirect_uri.to_string())
            .map_err(|e| AppError::internal(Code::INTERNAL_ERROR, e))?;
        let state = req.state.to_string();
        let challenge = req.pkce_verifier.map(|v| {
            PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(v.into()))
        });
        let scopes = p
            .scopes()
            .into_iter()
            .filter(|s| p.kind != ProviderKind::Oidc || s != "openid")
            .map(Scope::new);
        let url = match p.kind {
            ProviderKind::Oidc => {
                let m = self.metadata(issuer_of(p)?).await?;
                let client = CoreClient::from_provider_metadata(
                    (*m).clone(),
                    ClientId::new(p.client_id.clone()),
                    None,
                )
                .set_redirect_uri(redirect);
                let nonce = req.nonce.unwrap_or_default().to_string();
                let mut r = client
                    .authorize_url(
                        CoreAuthenticationFlow::AuthorizationCode,
                        move || CsrfToken::new(state),
                        move || Nonce::new(nonce),
                    )
                    .add_scopes(scopes);
                if let Some(c) = challenge {
                    r = r.set_pkce_challenge(c);
                }
                r.url().0
            }
            ProviderKind::Oauth2 => {
                let client = oauth2_client(p)?.set_redirect_uri(redirect);
                let mut r = client
                    .authorize_url(move || CsrfToken::new(state))
                    .add_scopes(scopes);
                if let Some(c) = challenge {
                    r = r.set_pkce_challenge(c);
                }
                r.url().0
            }
        };
        Ok(url.to_string())
    }

    /// Exchanges the code and works out who signed in: for `oidc` the verified id_token
    /// (plus userinfo for what it lacks), for `oauth2` the userinfo fields.
    pub async fn finish(
        &self,
        p: &ProviderConfig,
        code: &str,
        req: &AuthRequest<'_>,
    ) -> Result<UpstreamUser, AppError> {
        let redirect = RedirectUrl::new(req.redirect_uri.to_string())
            .map_err(|_| AppError::new(Code::VALIDATION_ERROR))?;
        let secret = p
            .client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose().to_string()));
        let http = &self.channel;
        match p.kind {
            ProviderKind::Oidc => {
                let issuer = issuer_of(p)?;
                let m = self.metadata(issuer).await?;
                let client = CoreClient::from_provider_metadata(
                    (*m).clone(),
                    ClientId::new(p.client_id.clone()),
                    secret,
                )
                .set_redirect_uri(redirect);
                let mut exchange = client
                    .exchange_code(AuthorizationCode::new(code.to_string()))
                    .map_err(|e| provider_error("no token endpoint", e))?;
                if let Some(v) = req.pkce_verifier {
                    exchange = exchange.set_pkce_verifier(PkceCodeVerifier::new(v.to_string()));
                }
                let tokens = exchange.request_async(http).await.map_err(token_error)?;
                let id_token = tokens
                    .extra_fields()
                    .id_token()
                    .ok_or_else(|| provider_error("token response", "no id_token"))?;
                let keys = VerifyKeys {
                    issuer,
                    client_id: &p.client_id,
                    jwks: m.jwks().clone(),
                    algs: m.id_token_signing_alg_values_supported().to_vec(),
                };
                let mut user = match verify_id_token(id_token, &keys, req.nonce) {
                    Ok(u) => u,
                    Err(e) => {
                        // Keys may have rotated since discovery: look again next time.
                        self.forget(issuer);
                        return Err(e);
                    }
                };
                if user.email.is_none()
                    && let Ok(info) = client.user_info(
                        tokens.access_token().clone(),
                        Some(openidconnect::SubjectIdentifier::new(user.subject.clone())),
                    )
                {
                    let claims: CoreUserInfoClaims = info
                        .request_async(http)
                        .await
                        .map_err(|e| provider_error("userinfo", userinfo_kind(&e)))?;
                    user.email = claims.email().map(|e| e.as_str().to_lowercase());
                    user.email_verified = claims.email_verified().unwrap_or(false);
                    if user.name.is_none() {
                        user.name = claims
                            .name()
                            .and_then(|n| n.get(None))
                            .map(|n| n.as_str().to_string());
                    }
                }
                Ok(user)
            }
            ProviderKind::Oauth2 => {
                let client = oauth2_client(p)?.set_redirect_uri(redirect);
                let mut exchange = client.exchange_code(AuthorizationCode::new(code.to_string()));
                if let Some(v) = req.pkce_verifier {
                    exchange = exchange.set_pkce_verifier(PkceCodeVerifier::new(v.to_string()));
                }
                let tokens = exchange.request_async(http).await.map_err(token_error)?;
                let info = self.userinfo(p, tokens.access_token()).await?;
                map_userinfo(p, &info)
            }
        }
    }

    /// `oauth2` userinfo as JSON.
    async fn userinfo(
        &self,
        p: &ProviderConfig,
        token: &AccessToken,
    ) -> Result<serde_json::Value, AppError> {
        let url = p
            .userinfo_url
            .as_deref()
            .ok_or_else(|| provider_error("userinfo", "no URL"))?;
        let res = self
            .http
            .get(url)
            .bearer_auth(token.secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| provider_error("userinfo", describe(&e)))?;
        if !res.status().is_success() {
            return Err(provider_error("userinfo", res.status()));
        }
        res.json()
            .await
            .map_err(|_| provider_error("userinfo", "response did not parse"))
    }
}

/// An error from reqwest by kind (its URL is a provider endpoint, never a token).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "redirect refused"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "request failed"
    };
    match e.url() {
        Some(u) => format!("{kind} ({}{})", u.origin().ascii_serialization(), u.path()),
        None => kind.to_string(),
    }
}

fn discovery_kind<E: std::error::Error>(e: &openidconnect::DiscoveryError<E>) -> String {
    match e {
        openidconnect::DiscoveryError::Request(inner) => inner.to_string(),
        openidconnect::DiscoveryError::Response(status, _, _) => format!("status {status}"),
        openidconnect::DiscoveryError::Validation(m) => format!("invalid document: {m}"),
        openidconnect::DiscoveryError::Parse(_) => "document did not parse".into(),
        other => other.to_string(),
    }
}

fn userinfo_kind<E: std::error::Error>(e: &openidconnect::UserInfoError<E>) -> String {
    match e {
        openidconnect::UserInfoError::Request(inner) => inner.to_string(),
        openidconnect::UserInfoError::Response(status, _, _) => format!("status {status}"),
        openidconnect::UserInfoError::ClaimsVerification(c) => c.to_string(),
        _ => "response did not parse".into(),
    }
}

fn issuer_of(p: &ProviderConfig) -> Result<&str, AppError> {
    p.issuer
        .as_deref()
        .ok_or_else(|| AppError::internal(Code::SSO_PROVIDER_ERROR, "oidc provider without issuer"))
}

type OAuth2Client = oauth2::basic::BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn oauth2_client(p: &ProviderConfig) -> Result<OAuth2Client, AppError> {
    let bad = |what: &str| AppError::internal(Code::SSO_PROVIDER_ERROR, format!("bad {what}"));
    let auth = AuthUrl::new(p.authorize_url.clone().unwrap_or_default())
        .map_err(|_| bad("authorize_url"))?;
    let token =
        TokenUrl::new(p.token_url.clone().unwrap_or_default()).map_err(|_| bad("token_url"))?;
    let mut c = oauth2::basic::BasicClient::new(oauth2::ClientId::new(p.client_id.clone()))
        .set_auth_uri(auth)
        .set_token_uri(token);
    if let Some(s) = &p.client_secret {
        c = c.set_client_secret(oauth2::ClientSecret::new(s.expose().to_string()));
    }
    Ok(c)
}

/// A JSON value as text: strings as they are, numbers (GitHub's `id`) as digits.
fn text_of(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `true` or `"true"`; anything else (absent, false, other text) is unverified.
pub fn truthy(v: Option<&serde_json::Value>) -> bool {
    match v {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The configured userinfo fields (`oauth2` providers).
pub fn map_userinfo(
    p: &ProviderConfig,
    info: &serde_json::Value,
) -> Result<UpstreamUser, AppError> {
    let f = &p.fields;
    let field = |name: &str| (!name.is_empty()).then(|| info.get(name)).flatten();
    let subject = text_of(field(&f.subject))
        .filter(|s| s.len() <= 255)
        .ok_or_else(|| provider_error("userinfo", "no subject field"))?;
    Ok(UpstreamUser {
        subject,
        email: text_of(field(&f.email)).map(|e| e.to_lowercase()),
        email_verified: truthy(field(&f.email_verified)),
        name: text_of(field(&f.name)),
        mfa: false,
    })
}

/// What an id_token is checked against.
pub struct VerifyKeys<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub jwks: CoreJsonWebKeySet,
    /// The provider's advertised signing algorithms; `none` and the HMAC ones (which would
    /// make the client secret a signing key) are never accepted.
    pub algs: Vec<CoreJwsSigningAlgorithm>,
}

/// Verifies an id_token: signature from the provider's keys with an advertised asymmetric
/// algorithm, `iss` exactly, `aud` (and `azp`), `exp`, and `nonce`.
pub fn verify_id_token(
    token: &CoreIdToken,
    keys: &VerifyKeys<'_>,
    nonce: Option<&str>,
) -> Result<UpstreamUser, AppError> {
    use CoreJwsSigningAlgorithm as A;
    let algs: Vec<_> = keys
        .algs
        .iter()
        .filter(|a| !matches!(a, A::None | A::HmacSha256 | A::HmacSha384 | A::HmacSha512))
        .cloned()
        .collect();
    let issuer =
        IssuerUrl::new(keys.issuer.to_string()).map_err(|e| provider_error("issuer URL", e))?;
    let verifier = IdTokenVerifier::new_public_client(
        ClientId::new(keys.client_id.to_string()),
        issuer,
        keys.jwks.clone(),
    )
    .set_allowed_algs(algs);
    let expected = nonce.map(|n| Nonce::new(n.to_string()));
    let check_nonce = |got: Option<&Nonce>| match (&expected, got) {
        (None, _) => Ok(()),
        (Some(want), Some(got)) => {
            let same: bool =
                subtle::ConstantTimeEq::ct_eq(want.secret().as_bytes(), got.secret().as_bytes())
                    .into();
            if same {
                Ok(())
            } else {
                Err("nonce mismatch".to_string())
            }
        }
        (Some(_), None) => Err("missing nonce claim".to_string()),
    };
    let claims: &CoreIdTokenClaims = token.claims(&verifier, check_nonce).map_err(|e| {
        AppError::internal(Code::SSO_PROVIDER_ERROR, format!("id_token refused: {e}"))
    })?;
    let mfa = claims
        .auth_method_refs()
        .is_some_and(|amr| amr.iter().any(|m| m.as_str() == "mfa"));
    Ok(UpstreamUser {
        subject: claims.subject().as_str().to_string(),
        email: claims.email().map(|e| e.as_str().to_lowercase()),
        email_verified: claims.email_verified().unwrap_or(false),
        name: claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_string()),
        mfa,
    })
}

/// Parses a raw id_token (for the SPA exchange's tests and the oidc path alike).
pub fn parse_id_token(raw: &str) -> Result<CoreIdToken, AppError> {
    CoreIdToken::from_str(raw).map_err(|_| provider_error("id_token", "did not parse"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use openidconnect::core::{CoreEdDsaPrivateSigningKey, CoreIdTokenClaims};
    use openidconnect::{
        Audience, EmptyAdditionalClaims, EndUserEmail, JsonWebKeyId, PrivateSigningKey,
        StandardClaims, SubjectIdentifier,
    };

    const ISSUER: &str = "https://idp.example.com";
    const CLIENT: &str = "gatehouse";
    const NONCE: &str = "n-0123456789";

    fn key(seed: u8) -> CoreEdDsaPrivateSigningKey {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let pem = sk
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        CoreEdDsaPrivateSigningKey::from_ed25519_pem(&pem, Some(JsonWebKeyId::new("k1".into())))
            .unwrap()
    }

    fn keys(seed: u8) -> VerifyKeys<'static> {
        VerifyKeys {
            issuer: ISSUER,
            client_id: CLIENT,
            jwks: CoreJsonWebKeySet::new(vec![key(seed).as_verification_key()]),
            algs: vec![CoreJwsSigningAlgorithm::EdDsa],
        }
    }

    struct Claims {
        iss: &'static str,
        aud: &'static str,
        nonce: &'static str,
        expires_in: i64,
    }

    const GOOD: Claims = Claims {
        iss: ISSUER,
        aud: CLIENT,
        nonce: NONCE,
        expires_in: 300,
    };

    fn token(c: Claims, seed: u8) -> CoreIdToken {
        let now = chrono::Utc::now();
        let claims = CoreIdTokenClaims::new(
            IssuerUrl::new(c.iss.into()).unwrap(),
            vec![Audience::new(c.aud.into())],
            now + chrono::Duration::seconds(c.expires_in),
            now - chrono::Duration::seconds(10),
            StandardClaims::new(SubjectIdentifier::new("upstream-1".into()))
                .set_email(Some(EndUserEmail::new("Ann@Example.com".into())))
                .set_email_verified(Some(true)),
            EmptyAdditionalClaims {},
        )
        .set_nonce(Some(Nonce::new(c.nonce.into())));
        CoreIdToken::new(
            claims,
            &key(seed),
            CoreJwsSigningAlgorithm::EdDsa,
            None,
            None,
        )
        .unwrap()
    }

    #[test]
    fn a_good_token_gives_the_user() {
        let u = verify_id_token(&token(GOOD, 1), &keys(1), Some(NONCE)).unwrap();
        assert_eq!(u.subject, "upstream-1");
        assert_eq!(u.email.as_deref(), Some("ann@example.com"));
        assert!(u.email_verified);
        assert!(!u.mfa);
    }

    fn refused(t: CoreIdToken, k: &VerifyKeys<'_>, nonce: &str) {
        let e = verify_id_token(&t, k, Some(nonce)).unwrap_err();
        assert_eq!(e.code, Code::SSO_PROVIDER_ERROR);
    }

    #[test]
    fn a_wrong_nonce_is_refused() {
        refused(token(GOOD, 1), &keys(1), "another-nonce");
        // No nonce expected (an SPA exchange without one): PKCE alone binds the code.
        assert!(verify_id_token(&token(GOOD, 1), &keys(1), None).is_ok());
        let t = token(
            Claims {
                nonce: "attacker-nonce",
                ..GOOD
            },
            1,
        );
        refused(t, &keys(1), NONCE);
    }

    #[test]
    fn a_wrong_audience_is_refused() {
        let t = token(
            Claims {
                aud: "someone-else",
                ..GOOD
            },
            1,
        );
        refused(t, &keys(1), NONCE);
    }

    #[test]
    fn a_wrong_issuer_is_refused() {
        let t = token(
            Claims {
                iss: "https://idp.example.com/other",
                ..GOOD
            },
            1,
        );
        refused(t, &keys(1), NONCE);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let t = token(
            Claims {
                expires_in: -120,
                ..GOOD
            },
            1,
        );
        refused(t, &keys(1), NONCE);
    }

    #[test]
    fn another_keys_signature_is_refused() {
        refused(token(GOOD, 2), &keys(1), NONCE);
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let raw = serde_json::to_value(token(GOOD, 1)).unwrap();
        let raw = raw.as_str().unwrap().to_string();
        let parts: Vec<&str> = raw.split('.').collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        payload["sub"] = "someone-else".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(payload.to_string()),
            parts[2]
        );
        refused(parse_id_token(&forged).unwrap(), &keys(1), NONCE);
    }

    #[test]
    fn alg_none_and_unadvertised_algs_are_refused() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let raw = serde_json::to_value(token(GOOD, 1)).unwrap();
        let payload = raw.as_str().unwrap().split('.').nth(1).unwrap().to_string();
        let unsigned = format!("{}.{payload}.", b64.encode(r#"{"alg":"none"}"#));
        if let Ok(t) = parse_id_token(&unsigned) {
            refused(t, &keys(1), NONCE);
        }
        // A provider that advertises only RS256 gets no say for an EdDSA token.
        let mut rs_only = keys(1);
        rs_only.algs = vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256];
        refused(token(GOOD, 1), &rs_only, NONCE);
        // HS256 (the client secret as a key) is never accepted, even if advertised.
        let mut hs = keys(1);
        hs.algs = vec![CoreJwsSigningAlgorithm::HmacSha256];
        refused(token(GOOD, 1), &hs, NONCE);
    }

    #[test]
    fn userinfo_fields_map_github_style() {
        let mut p: ProviderConfig = serde_json::from_value(serde_json::json!({
            "id": "github", "name": "GitHub", "kind": "oauth2", "client_id": "x",
            "authorize_url": "https://github.com/login/oauth/authorize",
            "token_url": "https://github.com/login/oauth/access_token",
            "userinfo_url": "https://api.github.com/user",
            "fields": { "subject": "id", "email": "email", "email_verified": "", "name": "login" }
        }))
        .unwrap();
        let info =
            serde_json::json!({ "id": 583231, "email": "Octo@GitHub.com", "login": "octocat" });
        let u = map_userinfo(&p, &info).unwrap();
        assert_eq!(u.subject, "583231");
        assert_eq!(u.email.as_deref(), Some("octo@github.com"));
        assert!(!u.email_verified, "no verified field: never verified");
        assert_eq!(u.name.as_deref(), Some("octocat"));
        p.fields.email_verified = "verified".into();
        for (v, want) in [
            (serde_json::json!(true), true),
            (serde_json::json!("true"), true),
            (serde_json::json!("TRUE"), true),
            (serde_json::json!("yes"), false),
            (serde_json::json!(1), false),
            (serde_json::json!(false), false),
        ] {
            let mut info = info.clone();
            info["verified"] = v.clone();
            assert_eq!(map_userinfo(&p, &info).unwrap().email_verified, want, "{v}");
        }
        let e = map_userinfo(&p, &serde_json::json!({ "email": "a@b.c" })).unwrap_err();
        assert_eq!(e.code, Code::SSO_PROVIDER_ERROR);
    }
}
