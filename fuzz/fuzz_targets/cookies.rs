//! Cookie reading (`gatehouse_http` cookies): every `Cookie` header a client sends, for
//! the CSRF binding, session, refresh and trusted-device cookies. Input: one `Cookie`
//! header value per line; the first line may name an extra cookie to look up
//! (`name:<name>`). Beyond not panicking: a value read is non-empty, short, unquoted and
//! `;`-free, and reading it back from a header we would write gives the same value.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use gatehouse_http::HttpConfig;
use gatehouse_http::fuzzing::{CSRF, DEVICE, REFRESH, SESSION, cookie, cookie_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n').peekable();
    let extra = lines
        .peek()
        .and_then(|l| l.strip_prefix("name:"))
        .map(str::to_string);
    if extra.is_some() {
        lines.next();
    }
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Ok(v) = HeaderValue::from_str(line) {
            headers.append(header::COOKIE, v);
        }
    }
    let plain = HttpConfig::default();
    let secure = HttpConfig {
        public_url: "https://auth.example".into(),
        ..HttpConfig::default()
    };
    let mut names: Vec<String> = [CSRF, SESSION, REFRESH, DEVICE]
        .iter()
        .flat_map(|b| [cookie_name(&plain, b), cookie_name(&secure, b)])
        .collect();
    names.extend(extra);
    for name in &names {
        let Some(v) = cookie(&headers, name) else {
            continue;
        };
        assert!(!v.is_empty() && v.len() <= 512);
        assert!(!v.starts_with('"') && !v.ends_with('"'));
        assert!(!v.contains(';'));
        // What a browser sends back after our `Set-Cookie: name=value; …`. (Only for values
        // without trailing blanks: a quoted `"x "` reads as `x `, whose blank the header
        // trims when sent bare; our own values are base64url and never have one.)
        let mut again = HeaderMap::new();
        if v.ends_with(|c: char| c.is_ascii_whitespace()) {
            continue;
        }
        if let Ok(h) = HeaderValue::from_str(&format!("{name}={v}")) {
            again.insert(header::COOKIE, h);
            assert_eq!(cookie(&again, name).as_deref(), Some(v.as_str()), "{name}");
        }
    }
});
