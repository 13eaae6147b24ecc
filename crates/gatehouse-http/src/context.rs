//! Per-request context: request and correlation ids, language, client IP and (once known)
//! the account. Held in a task-local so errors rendered anywhere in the request carry them,
//! and logged as one JSON line when the response leaves.

use crate::AppState;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use gatehouse_core::RequestMeta;
use gatehouse_domain::{Code, Id, Locale};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// What the rest of the request knows about itself.
#[derive(Debug)]
pub struct RequestCtx {
    pub request_id: String,
    pub correlation_id: String,
    pub locale: Locale,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub account_id: OnceLock<Id>,
}

impl RequestCtx {
    /// The facts the core records in audit events.
    pub fn meta(&self) -> RequestMeta {
        RequestMeta {
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            request_id: Some(self.request_id.clone()),
        }
    }
}

tokio::task_local! {
    static CTX: Arc<RequestCtx>;
}

/// The current request's context (a blank one outside a request).
pub fn current() -> Arc<RequestCtx> {
    CTX.try_with(Arc::clone).unwrap_or_else(|_| {
        Arc::new(RequestCtx {
            request_id: String::new(),
            correlation_id: String::new(),
            locale: Locale::En,
            ip: None,
            user_agent: None,
            account_id: OnceLock::new(),
        })
    })
}

/// Request counters, plus the domain counters that follow from the response code.
fn record_metrics(
    state: &AppState,
    method: &str,
    route: &str,
    status: u16,
    elapsed: std::time::Duration,
    code: Option<Code>,
) {
    let m = &state.svc.metrics;
    m.request(method, route, status, elapsed);
    let Some(code) = code else { return };
    m.inc("gatehouse_responses_total", &[("code", code.as_str())]);
    if matches!(route, "/api/v1/auth/login" | "/api/v1/auth/login/{step}")
        || route.starts_with("/api/v1/auth/login/")
    {
        m.inc("gatehouse_logins_total", &[("outcome", code.as_str())]);
    } else if route == "/api/v1/auth/refresh" {
        m.inc("gatehouse_refreshes_total", &[("outcome", code.as_str())]);
    }
    if code == Code::REFRESH_TOKEN_REUSED {
        m.inc("gatehouse_refresh_reuse_total", &[]);
    }
}

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// An id from the client is kept only if it is short and plain.
fn well_formed(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn single_header<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut all = h.get_all(name).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// Two years, subdomains included: the browser then never tries plain http for the host.
const HSTS: &str = "max-age=63072000; includeSubDomains";

/// Headers every answer carries, JSON as well as pages: no MIME sniffing, and under an
/// https public URL, HSTS (not under http: a deployment served over http has not
/// committed to https, and browsers ignore HSTS sent over http anyway).
fn security_headers(state: &AppState, h: &mut HeaderMap) {
    h.insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if state.http.secure_cookies() {
        h.insert(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
}

/// Sets up the context, runs the request inside it, stamps ids on the response, and logs
/// one line. Never logs bodies, cookies or credentials.
pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let headers = req.headers();
    let request_id = single_header(headers, &REQUEST_ID)
        .filter(|v| well_formed(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let correlation_id = single_header(headers, &CORRELATION_ID)
        .filter(|v| well_formed(v))
        .map(str::to_string)
        .unwrap_or_else(|| request_id.clone());
    let locale = single_header(headers, &axum::http::header::ACCEPT_LANGUAGE)
        .map(Locale::from_accept_language)
        .unwrap_or_default();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let ip = peer.map(|p| {
        state
            .http
            .trusted_proxies
            .client_ip(p.ip(), headers)
            .to_string()
    });
    let user_agent = single_header(headers, &axum::http::header::USER_AGENT)
        .map(|ua| ua.chars().take(256).collect::<String>());
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let ctx = Arc::new(RequestCtx {
        request_id,
        correlation_id,
        locale,
        ip,
        user_agent,
        account_id: OnceLock::new(),
    });
    let mut res = CTX.scope(ctx.clone(), next.run(req)).await;
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        h.insert(REQUEST_ID.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.correlation_id) {
        h.insert(CORRELATION_ID.clone(), v);
    }
    security_headers(&state, h);
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    record_metrics(
        &state,
        method.as_str(),
        &route,
        status,
        elapsed,
        res.extensions().get::<Code>().copied(),
    );
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    let account_id = ctx.account_id.get().map(|id| id.to_string());
    tracing::info!(
        target: "gatehouse::http",
        method = %method,
        route = %route,
        status,
        latency_ms,
        request_id = %ctx.request_id,
        correlation_id = %ctx.correlation_id,
        account_id = account_id.as_deref().unwrap_or(""),
        "request"
    );
    res
}
