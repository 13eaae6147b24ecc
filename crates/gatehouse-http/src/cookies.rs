//! Cookies: reading by name and writing with the right attributes. Under an https public URL
//! every cookie is `Secure`, and host-wide ones take the `__Host-` prefix.

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

/// The name a host-wide cookie has under this config.
pub fn name(cfg: &HttpConfig, base: &str) -> String {
    if cfg.secure_cookies() && base != REFRESH {
        format!("__Host-{base}")
    } else {
        base.to_string()
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
