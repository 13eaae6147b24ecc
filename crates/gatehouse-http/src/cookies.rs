//! Cookies: reading by name and writing with the right attributes. Under an https public URL
//! every cookie is `Secure`; host-wide ones take the `__Host-` prefix, and the refresh
//! cookie (path `/api/v1/auth`, so it cannot be `__Host-`) takes `__Secure-`, so a
//! plain-http page or a sibling subdomain cannot plant one the browser would send.

use crate::HttpConfig;
use axum::http::{HeaderMap, HeaderValue, header};

/// Browser binding for CSRF tokens (the pre-session).
pub const CSRF: &str = "gh_csrf";
/// Web session.
pub const SESSION: &str = "gh_session";
/// Refresh token for browser API clients.
pub const REFRESH: &str = "gh_refresh";
/// Trusted device ("trust this browser"): a signed token that skips the TOTP step.
pub const DEVICE: &str = "gh_device";
const REFRESH_PATH: &str = "/api/v1/auth";

/// The name cookie `base` has under this config (for writing and reading alike).
pub fn name(cfg: &HttpConfig, base: &str) -> String {
    match (cfg.secure_cookies(), base == REFRESH) {
        (false, _) => base.to_string(),
        (true, true) => format!("__Secure-{base}"),
        (true, false) => format!("__Host-{base}"),
    }
}

/// The value of cookie `name`, if sent exactly once.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = None;
    for v in headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=')
                && k == name
            {
                if found.is_some() {
                    return None;
                }
                found = Some(val.trim_matches('"').to_string());
            }
        }
    }
    found.filter(|v| !v.is_empty() && v.len() <= 512)
}

/// A `Set-Cookie` value. `max_age` `Some(0)` deletes the cookie.
pub fn set(cfg: &HttpConfig, base: &str, value: &str, max_age: Option<u64>) -> Option<HeaderValue> {
    let path = if base == REFRESH { REFRESH_PATH } else { "/" };
    let mut c = format!(
        "{}={value}; Path={path}; HttpOnly; SameSite=Lax",
        name(cfg, base)
    );
    if cfg.secure_cookies() {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&c).ok()
}

/// Appends a `Set-Cookie` to `headers`.
pub fn append(headers: &mut HeaderMap, value: Option<HeaderValue>) {
    if let Some(v) = value {
        headers.append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn https() -> HttpConfig {
        HttpConfig {
            public_url: "https://auth.example.com".into(),
            ..HttpConfig::default()
        }
    }

    #[test]
    fn under_https_the_refresh_cookie_is_secure_prefixed_and_the_others_host_prefixed() {
        let cfg = https();
        assert_eq!(name(&cfg, REFRESH), "__Secure-gh_refresh");
        for base in [CSRF, SESSION, DEVICE] {
            assert_eq!(name(&cfg, base), format!("__Host-{base}"));
        }
        let set = set(&cfg, REFRESH, "t", Some(60)).unwrap();
        let set = set.to_str().unwrap();
        assert!(
            set.starts_with("__Secure-gh_refresh=t; Path=/api/v1/auth;"),
            "{set}"
        );
        assert!(set.contains("; Secure"), "{set}");
    }

    #[test]
    fn under_http_cookies_keep_their_plain_names() {
        let cfg = HttpConfig::default();
        for base in [CSRF, SESSION, DEVICE, REFRESH] {
            assert_eq!(name(&cfg, base), base);
        }
    }
}
