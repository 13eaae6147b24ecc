//! The rate-limit layer: every request but the operations endpoints draws on a per-IP
//! budget for its route class; answers carry `X-RateLimit-*`, refusals are
//! `429 RATE_LIMIT_EXCEEDED` with `Retry-After`. If the cache is down the request gets 503:
//! limits are never skipped.

use crate::envelope::ApiError;
use crate::{AppState, context};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatehouse_core::ratelimit::{Class, Decision, hit};
use gatehouse_domain::{AppError, Code};

/// Paths never limited: probes, scrapes and public documents.
const EXEMPT: &[&str] = &[
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
    "/.well-known/jwks.json",
];

/// The budget a request draws on.
pub fn classify(method: &Method, path: &str) -> Class {
    let credential = [
        "/api/v1/auth/login",
        "/api/v1/auth/password",
        "/api/v1/auth/register",
        "/api/v1/auth/email",
        "/api/v1/auth/totp",
        "/api/v1/auth/recovery-codes",
        "/auth/login",
        "/account/password",
        "/password",
        "/account/totp",
        "/account/recovery-codes",
    ];
    // SSO start, callback and exchange spend upstream round trips and create accounts:
    // credential class whatever the method.
    let sso = path.starts_with("/api/v1/auth/sso/")
        && ["/start", "/callback", "/exchange"]
            .iter()
            .any(|end| path.ends_with(end));
    let credential = *method != Method::GET
        && credential
            .iter()
            .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    if sso || credential {
        Class::Credential
    } else if path == "/api/v1/auth/refresh" {
        Class::Refresh
    } else {
        Class::Default
    }
}

fn headers(h: &mut HeaderMap, d: &Decision) {
    for (name, value) in [
        ("x-ratelimit-limit", d.limit.to_string()),
        ("x-ratelimit-remaining", d.remaining.to_string()),
        ("x-ratelimit-reset", d.reset_secs.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
}

/// Counts the request and refuses it when over budget.
pub async fn middleware(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let cfg = &s.svc.cfg.rate_limit;
    let path = req.uri().path();
    if !cfg.enabled || EXEMPT.contains(&path) {
        return next.run(req).await;
    }
    let class = classify(req.method(), path);
    let ip = context::current()
        .ip
        .clone()
        .unwrap_or_else(|| "unknown".into());
    let key = format!("ip:{}:{ip}", class.as_str());
    match hit(s.svc.cache.as_ref(), s.svc.now(), &key, cfg.limits(class)).await {
        Err(e) => ApiError(e).into_response(),
        Ok(None) => next.run(req).await,
        Ok(Some(d)) if !d.allowed => {
            s.svc
                .metrics
                .inc("gatehouse_rate_limited_total", &[("class", class.as_str())]);
            let mut res =
                ApiError(AppError::new(Code::RATE_LIMIT_EXCEEDED).retry_after(d.reset_secs.max(1)))
                    .into_response();
            headers(res.headers_mut(), &d);
            res
        }
        Ok(Some(d)) => {
            let mut res = next.run(req).await;
            headers(res.headers_mut(), &d);
            res
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fall_into_classes() {
        assert_eq!(
            classify(&Method::POST, "/api/v1/auth/login"),
            Class::Credential
        );
        assert_eq!(
            classify(&Method::POST, "/api/v1/auth/login/password"),
            Class::Credential
        );
        assert_eq!(classify(&Method::POST, "/auth/login"), Class::Credential);
        assert_eq!(classify(&Method::GET, "/auth/login"), Class::Default);
        assert_eq!(
            classify(&Method::POST, "/api/v1/auth/refresh"),
            Class::Refresh
        );
        assert_eq!(classify(&Method::GET, "/api/v1/auth/me"), Class::Default);
        for sso in ["/start", "/callback"] {
            let path = format!("/api/v1/auth/sso/corp{sso}");
            assert_eq!(classify(&Method::GET, &path), Class::Credential, "{path}");
        }
        assert_eq!(
            classify(&Method::POST, "/api/v1/auth/sso/corp/exchange"),
            Class::Credential
        );
        assert_eq!(
            classify(&Method::GET, "/api/v1/auth/sso/providers"),
            Class::Default
        );
        assert_eq!(
            classify(&Method::POST, "/api/v1/auth/loginx"),
            Class::Default
        );
    }
}
