//! `[sso]` and `[[sso.providers]]`: upstream identity providers from the configuration
//! file (read-only at run time). Providers stored through the admin API use the same
//! [`ProviderConfig`] and the same checks.

use crate::config::{redact, secret_opt};
use gatehouse_domain::Secret;
use serde::{Deserialize, Serialize};

/// `[sso]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsoConfig {
    /// Longest a back-channel call (discovery, token, userinfo, JWKS) may take.
    pub timeout_seconds: u64,
    /// How long a provider's discovery document and keys are kept before they are fetched
    /// again.
    pub discovery_ttl_seconds: u64,
    pub providers: Vec<ProviderConfig>,
    /// The server's public URL (from the top-level `public_url`): callbacks are
    /// `{public_url}/api/v1/auth/sso/{id}/callback`.
    #[serde(skip)]
    pub public_url: String,
}

impl Default for SsoConfig {
    fn default() -> Self {
        Self {
            timeout_seconds: 10,
            discovery_ttl_seconds: 3600,
            providers: Vec::new(),
            public_url: String::new(),
        }
    }
}

/// `oidc` (discovery, id_token) or `oauth2` (explicit endpoints and userinfo fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Oidc,
    Oauth2,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Oidc => "oidc",
            ProviderKind::Oauth2 => "oauth2",
        }
    }
}

/// Which userinfo fields hold what (`oauth2` providers; GitHub: `id`, `email`, …).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldMap {
    pub subject: String,
    pub email: String,
    /// Empty: the provider does not say, so its e-mails count as unverified.
    pub email_verified: String,
    pub name: String,
}

impl Default for FieldMap {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            email: "email".into(),
            email_verified: "email_verified".into(),
            name: "name".into(),
        }
    }
}

fn yes() -> bool {
    true
}

/// One upstream provider.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Slug used in URLs (`/api/v1/auth/sso/{id}/…`) and stored with linked identities.
    pub id: String,
    /// Shown on the sign-in button.
    pub name: String,
    pub kind: ProviderKind,
    /// `oidc`: the issuer; discovery reads `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// `oauth2`: the three endpoints.
    #[serde(default)]
    pub authorize_url: Option<String>,
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub userinfo_url: Option<String>,
    #[serde(default)]
    pub fields: FieldMap,
    pub client_id: String,
    #[serde(default, serialize_with = "redact", deserialize_with = "secret_opt")]
    pub client_secret: Option<Secret>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// A first sign-in with an unknown e-mail creates an account.
    #[serde(default = "yes")]
    pub auto_register: bool,
    /// E-mail domains allowed to sign in (empty: any).
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// Link a new upstream identity to the local account with the same e-mail, when both
    /// sides have verified it.
    #[serde(default)]
    pub link_by_verified_email: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// An id_token whose `amr` shows MFA stands in for the local second factor.
    #[serde(default)]
    pub trust_upstream_mfa: bool,
    /// Send PKCE (S256). Only `oauth2` providers that reject it may turn it off.
    #[serde(default = "yes")]
    pub pkce: bool,
    /// Redirect URIs SPA / native clients may use with `…/exchange` (the browser flow's
    /// own callback is always allowed).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
}

impl ProviderConfig {
    /// The scopes to ask for: the configured ones, else the kind's defaults.
    pub fn scopes(&self) -> Vec<String> {
        if !self.scopes.is_empty() {
            return self.scopes.clone();
        }
        match self.kind {
            ProviderKind::Oidc => vec!["openid".into(), "email".into(), "profile".into()],
            ProviderKind::Oauth2 => Vec::new(),
        }
    }

    /// Checks what types cannot: `(key, message)` naming the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: &str| Err((k.to_string(), m.to_string()));
        if !valid_slug(&self.id) {
            return bad("id", "use 1-40 lowercase letters, digits and dashes");
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 80 {
            return bad("name", "must be 1-80 characters");
        }
        if self.client_id.trim().is_empty() || self.client_id.len() > 512 {
            return bad("client_id", "must be 1-512 characters");
        }
        if self
            .client_secret
            .as_ref()
            .is_some_and(|s| s.expose().len() > 1024)
        {
            return bad("client_secret", "must be at most 1024 characters");
        }
        match self.kind {
            ProviderKind::Oidc => match &self.issuer {
                Some(i) if check_url(i).is_ok() => {}
                Some(i) => return bad("issuer", &check_url(i).err().unwrap_or_default()),
                None => return bad("issuer", "required for kind = \"oidc\""),
            },
            ProviderKind::Oauth2 => {
                for (key, v) in [
                    ("authorize_url", &self.authorize_url),
                    ("token_url", &self.token_url),
                    ("userinfo_url", &self.userinfo_url),
                ] {
                    match v {
                        Some(u) => {
                            if let Err(m) = check_url(u) {
                                return bad(key, &m);
                            }
                        }
                        None => return bad(key, "required for kind = \"oauth2\""),
                    }
                }
                if self.fields.subject.trim().is_empty() {
                    return bad("fields.subject", "required for kind = \"oauth2\"");
                }
            }
        }
        if !self.pkce && self.kind == ProviderKind::Oidc {
            return bad("pkce", "OIDC providers always use PKCE");
        }
        if self.scopes.len() > 32 || self.scopes.iter().any(|s| !valid_scope(s)) {
            return bad(
                "scopes",
                "at most 32 scopes of visible ASCII without spaces",
            );
        }
        for d in &self.allowed_email_domains {
            if d.is_empty() || d.contains('@') || d.chars().any(char::is_whitespace) {
                return bad(
                    "allowed_email_domains",
                    "list bare domains such as example.com",
                );
            }
        }
        for u in &self.redirect_uris {
            if let Err(m) = check_redirect(u) {
                return bad("redirect_uris", &m);
            }
        }
        Ok(())
    }

    /// Whether `email`'s domain may sign in through this provider.
    pub fn domain_allowed(&self, email: Option<&str>) -> bool {
        if self.allowed_email_domains.is_empty() {
            return true;
        }
        let Some(domain) = email.and_then(|e| e.rsplit_once('@')).map(|(_, d)| d) else {
            return false;
        };
        self.allowed_email_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }
}

impl SsoConfig {
    /// Checks `[sso]` and every `[[sso.providers]]`: `(key, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=120).contains(&self.timeout_seconds) {
            return Err((
                "sso.timeout_seconds".into(),
                "must be between 1 and 120".into(),
            ));
        }
        if self.discovery_ttl_seconds == 0 {
            return Err(("sso.discovery_ttl_seconds".into(), "must be ≥ 1".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            p.validate()
                .map_err(|(k, m)| (format!("sso.providers[{i}].{k}"), m))?;
            if !seen.insert(p.id.as_str()) {
                return Err((
                    format!("sso.providers[{i}].id"),
                    format!("`{}` is used by another provider", p.id),
                ));
            }
        }
        Ok(())
    }
}

/// 1-40 of `[a-z0-9-]`, not starting or ending with a dash.
pub fn valid_slug(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn valid_scope(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
}

/// The host of an `http(s)://` URL, if it is one.
fn host_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split_once(']').map(|(h, _)| &h[1..])?
    } else {
        host.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A back-channel URL: `https://`, or `http://` to a loopback host (development).
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be a URL without spaces, at most 2048 characters".into());
    }
    let Some(host) = host_of(url) else {
        return Err("must be an http(s):// URL".into());
    };
    if url.starts_with("http://") && !is_loopback(host) {
        return Err("must use https:// (http:// only for localhost)".into());
    }
    Ok(())
}

/// A redirect URI a SPA or native client may name: `https://`, loopback `http://`, or a
/// private-use scheme (`com.example.app:/cb`).
fn check_redirect(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return check_url(url);
    }
    let scheme = url.split(':').next().unwrap_or("");
    let ok_scheme = scheme.contains('.')
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'));
    if !ok_scheme || url.len() > 2048 || url.chars().any(char::is_whitespace) {
        return Err(
            "use https://, http://localhost or a private-use scheme (reverse domain)".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc(id: &str) -> ProviderConfig {
        ProviderConfig {
            id: id.into(),
            name: "Corp".into(),
            kind: ProviderKind::Oidc,
            issuer: Some("https://idp.example.com/realms/corp".into()),
            authorize_url: None,
            token_url: None,
            userinfo_url: None,
            fields: FieldMap::default(),
            client_id: "gatehouse".into(),
            client_secret: Some(Secret::new("s3cret-client")),
            scopes: Vec::new(),
            auto_register: true,
            allowed_email_domains: Vec::new(),
            link_by_verified_email: false,
            enabled: true,
            trust_upstream_mfa: false,
            pkce: true,
            redirect_uris: Vec::new(),
        }
    }

    fn key_of(c: &SsoConfig) -> String {
        c.validate().err().map(|(k, _)| k).unwrap_or_default()
    }

    #[test]
    fn a_valid_provider_passes_and_its_secret_never_shows() {
        let c = SsoConfig {
            providers: vec![oidc("corp")],
            ..SsoConfig::default()
        };
        assert!(c.validate().is_ok());
        let shown = format!("{c:?} {}", serde_json::to_string(&c).unwrap_or_default());
        assert!(!shown.contains("s3cret-client"), "{shown}");
    }

    #[test]
    fn each_bad_field_is_named() {
        let with = |f: &dyn Fn(&mut ProviderConfig)| {
            let mut p = oidc("corp");
            f(&mut p);
            key_of(&SsoConfig {
                providers: vec![p],
                ..SsoConfig::default()
            })
        };
        assert_eq!(with(&|p| p.id = "Corp SSO".into()), "sso.providers[0].id");
        assert_eq!(with(&|p| p.issuer = None), "sso.providers[0].issuer");
        assert_eq!(
            with(&|p| p.issuer = Some("http://idp.example.com".into())),
            "sso.providers[0].issuer"
        );
        assert_eq!(
            with(&|p| p.client_id = String::new()),
            "sso.providers[0].client_id"
        );
        assert_eq!(with(&|p| p.pkce = false), "sso.providers[0].pkce");
        assert_eq!(
            with(&|p| p.allowed_email_domains = vec!["@example.com".into()]),
            "sso.providers[0].allowed_email_domains"
        );
        assert_eq!(
            with(&|p| {
                p.kind = ProviderKind::Oauth2;
                p.authorize_url = Some("https://github.com/login/oauth/authorize".into());
            }),
            "sso.providers[0].token_url"
        );
        // Loopback http is fine (development and the tests' provider).
        assert_eq!(
            with(&|p| p.issuer = Some("http://127.0.0.1:9000".into())),
            ""
        );
    }

    #[test]
    fn provider_ids_are_unique_and_the_timeout_bounded() {
        let c = SsoConfig {
            providers: vec![oidc("corp"), oidc("corp")],
            ..SsoConfig::default()
        };
        assert_eq!(key_of(&c), "sso.providers[1].id");
        let c = SsoConfig {
            timeout_seconds: 0,
            ..SsoConfig::default()
        };
        assert_eq!(key_of(&c), "sso.timeout_seconds");
    }

    #[test]
    fn the_domain_filter_matches_the_address_domain_only() {
        let mut p = oidc("corp");
        assert!(p.domain_allowed(None));
        p.allowed_email_domains = vec!["Example.com".into()];
        assert!(p.domain_allowed(Some("ann@example.COM")));
        assert!(!p.domain_allowed(Some("ann@example.com.evil.test")));
        assert!(!p.domain_allowed(Some("example.com@evil.test")));
        assert!(!p.domain_allowed(None));
    }
}
