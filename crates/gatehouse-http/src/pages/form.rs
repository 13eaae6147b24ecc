//! Form posts and the `next` parameter. A bad form is a page with a message, never a 500.

use crate::api::query_params;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

/// An `application/x-www-form-urlencoded` body. Repeated fields make it malformed.
pub struct Form(HashMap<String, String>);

/// Why a form could not be read; the status to answer with.
#[derive(Debug)]
pub struct FormError(pub StatusCode);

/// Handlers take `Result<Form, FormError>` and render their own page; this is only the
/// bare fallback axum requires of a rejection.
impl IntoResponse for FormError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl Form {
    /// The field's value, empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("")
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = FormError;

    async fn from_request(req: Request, state: &S) -> Result<Self, FormError> {
        let mut types = req.headers().get_all(CONTENT_TYPE).iter();
        let is_form = match (types.next(), types.next()) {
            (Some(v), None) => v.to_str().is_ok_and(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            }),
            _ => false,
        };
        if !is_form {
            return Err(FormError(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                FormError(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                FormError(StatusCode::BAD_REQUEST)
            }
        })?;
        let text =
            String::from_utf8(bytes.to_vec()).map_err(|_| FormError(StatusCode::BAD_REQUEST))?;
        query_params(Some(text))
            .map(Form)
            .map_err(|_| FormError(StatusCode::BAD_REQUEST))
    }
}

/// `next` if it is a path on this site, else `None`. Refuses `//host`, `/\host`, schemes,
/// control characters and anything long, so a sign-in link cannot send people elsewhere.
pub fn safe_next(next: &str) -> Option<&str> {
    let rest = next.strip_prefix('/')?;
    let ok = next.len() <= 512
        && !rest.starts_with(['/', '\\'])
        && !next
            .chars()
            .any(|c| c.is_control() || c == '\\' || c.is_whitespace());
    ok.then_some(next)
}

/// `next` made safe for a `Location` header: non-ASCII bytes percent-encoded.
pub fn location(next: &str) -> String {
    let mut out = String::with_capacity(next.len());
    for b in next.bytes() {
        if b.is_ascii() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_accepts_local_paths_only() {
        for good in ["/", "/account", "/account?tab=sessions#top", "/a/b//c"] {
            assert_eq!(safe_next(good), Some(good), "{good}");
        }
        for bad in [
            "",
            "account",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/\t/evil.example",
            "/a\nb",
            "/a\\b",
            " /account",
            "/a b",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(600))), None);
    }

    #[test]
    fn location_percent_encodes_non_ascii() {
        assert_eq!(location("/tài-khoản"), "/t%C3%A0i-kho%E1%BA%A3n");
    }
}
