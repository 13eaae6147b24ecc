//! Gatehouse HTTP: the JSON API under `/api/v1`, server-rendered pages, operations
//! endpoints and the OpenAPI document, over axum. Handlers are thin: extract, call the
//! core, map to a DTO.

mod api;
mod auth_extract;
mod body;
mod body_deadline;
mod context;
mod cookies;
mod envelope;
mod net;
pub mod openapi;
mod ops;
mod pages;
mod rate_limit;

pub use context::RequestCtx;
pub use net::TrustedProxies;

/// The parsers of untrusted input that live in private modules, reachable by the fuzz
/// targets in `fuzz/` (a separate crate); not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::body::{Fields, JsonBody};
    pub use crate::cookies::{CSRF, DEVICE, REFRESH, SESSION, get as cookie, name as cookie_name};
    pub use crate::envelope::ApiError;
}

use axum::Router;
use gatehouse_core::Service;
use std::sync::Arc;

/// HTTP-level settings.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Base URL users reach the service at; `https://…` makes every cookie `Secure` and
    /// gives the session cookie the `__Host-` prefix.
    pub public_url: String,
    pub trusted_proxies: TrustedProxies,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long the whole request body may take to arrive after the headers.
    pub body_timeout: std::time::Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".into(),
            trusted_proxies: TrustedProxies::default(),
            max_body_bytes: 64 * 1024,
            body_timeout: std::time::Duration::from_secs(6),
        }
    }
}

impl HttpConfig {
    /// True when the public URL is https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub svc: Arc<Service>,
    pub http: Arc<HttpConfig>,
}

/// The whole application: API, pages, operations, with the request-context, logging,
/// panic, body-limit and body-deadline layers.
pub fn app(state: AppState) -> Router {
    let (router, docs) = api::routes()
        .merge(pages::routes())
        .merge(ops::routes())
        .split();
    let doc = Arc::new(openapi::document(&docs));
    router
        .layer(axum::Extension(doc))
        .fallback(envelope::not_found)
        .method_not_allowed_fallback(envelope::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit::middleware,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            envelope::panic_response,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.http.max_body_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            body_deadline::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            context::middleware,
        ))
        .with_state(state)
}

/// Every documented route (for tests and the README).
pub fn route_docs() -> Vec<openapi::RouteDoc> {
    api::routes()
        .merge(pages::routes())
        .merge(ops::routes())
        .docs
}
