//! Operations endpoints (no prefix): liveness, readiness, OpenAPI, JWKS.

use crate::AppState;
use crate::envelope::{ApiResult, ok};
use crate::openapi::{RouteDoc, Routes};
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gatehouse_domain::{AppError, Code};
use serde_json::{Value, json};
use std::sync::Arc;

const OPS: &str = "operations";

/// The operations routes.
pub fn routes() -> Routes {
    Routes::new()
        .at(
            RouteDoc {
                codes: &[Code::OK],
                ..RouteDoc::new("GET", "/health", OPS, "Liveness: the process answers")
            },
            get(health),
        )
        .at(
            RouteDoc {
                codes: &[Code::OK, Code::SERVICE_UNAVAILABLE],
                ..RouteDoc::new("GET", "/ready", OPS, "Readiness: store and cache reachable")
            },
            get(ready),
        )
        .at(
            RouteDoc {
                plain: Some("application/json"),
                ..RouteDoc::new("GET", "/openapi.json", OPS, "This document")
            },
            get(openapi),
        )
        .at(
            RouteDoc {
                plain: Some("application/json"),
                ..RouteDoc::new(
                    "GET",
                    "/.well-known/jwks.json",
                    OPS,
                    "Public keys that verify access tokens",
                )
            },
            get(jwks),
        )
        .at(
            RouteDoc {
                plain: Some("text/plain"),
                ..RouteDoc::new("GET", "/metrics", OPS, "Prometheus metrics (text format)")
            },
            get(metrics),
        )
}

async fn health() -> Response {
    ok(Code::OK, json!({ "status": "ok" }))
}

async fn ready(State(s): State<AppState>) -> ApiResult {
    let checks = s.svc.readiness().await;
    let all_ok = checks.iter().all(|c| c.2);
    let detail: Vec<Value> = checks
        .iter()
        .map(|(name, backend, up)| json!({ "name": name, "backend": backend, "status": if *up { "up" } else { "down" } }))
        .collect();
    if all_ok {
        return Ok(ok(Code::OK, json!({ "status": "ready", "checks": detail })));
    }
    let down: Vec<&str> = checks.iter().filter(|c| !c.2).map(|c| c.0).collect();
    let mut res = crate::envelope::ApiError(
        AppError::internal(Code::SERVICE_UNAVAILABLE, format!("not ready: {down:?}"))
            .retry_after(1),
    )
    .into_response();
    // Operators need to see which dependency failed; it names no internals beyond that.
    let body = json!({
        "success": false, "code": "SERVICE_UNAVAILABLE", "message": Code::SERVICE_UNAVAILABLE.message(crate::context::current().locale),
        "data": { "status": "not_ready", "checks": detail }, "errors": [], "requestId": crate::context::current().request_id,
    });
    *res.body_mut() = axum::body::Body::from(body.to_string());
    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    Ok(res)
}

async fn openapi(Extension(doc): Extension<Arc<Value>>) -> Response {
    let mut res = axum::Json(doc.as_ref().clone()).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    res
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut res = s.svc.render_metrics().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

async fn jwks(State(s): State<AppState>) -> Response {
    let mut res = axum::Json(s.svc.keys.jwks()).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    res
}
