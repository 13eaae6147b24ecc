//! The response envelope (docs/api.md, "Conventions"). Every JSON answer, success or error, goes through
//! here, so codes, statuses, localized messages and request ids are set in one place.

use crate::context;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_domain::catalog::field_message;
use gatehouse_domain::{AppError, Code};
use serde::Serialize;
use serde_json::json;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        Self(e)
    }
}

impl From<Code> for ApiError {
    fn from(c: Code) -> Self {
        Self(AppError::new(c))
    }
}

/// The result type of every API handler.
pub type ApiResult = Result<Response, ApiError>;

fn status(code: Code) -> StatusCode {
    StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ctx = context::current();
        let e = self.0;
        if let Some(detail) = e.detail() {
            // The detail (the whole source chain) is for operators only; the client gets
            // the catalog text.
            if e.code.status() >= 500 {
                tracing::error!(code = e.code.as_str(), request_id = %ctx.request_id, detail = %detail, "request failed");
            } else {
                tracing::warn!(code = e.code.as_str(), request_id = %ctx.request_id, detail = %detail, "request refused");
            }
        }
        let errors: Vec<_> = e
            .fields
            .iter()
            .map(|f| json!({ "field": f.field, "code": f.code, "message": field_message(f.code, ctx.locale) }))
            .collect();
        let body = json!({
            "success": false,
            "code": e.code.as_str(),
            "message": e.code.message(ctx.locale),
            "data": null,
            "errors": errors,
            "requestId": ctx.request_id,
        });
        let mut res = (status(e.code), axum::Json(body)).into_response();
        res.extensions_mut().insert(e.code);
        if let Some(secs) = e.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// A success envelope with `data`.
pub fn ok<T: Serialize>(code: Code, data: T) -> Response {
    ok_status(StatusCode::OK, code, data)
}

/// A success envelope with an explicit status (e.g. 201).
pub fn ok_status<T: Serialize>(status: StatusCode, code: Code, data: T) -> Response {
    let ctx = context::current();
    // Serialized straight from the handler's types (no intermediate `Value`); fields in
    // the same (alphabetical) order as the error envelope.
    let body = Success {
        code: code.as_str(),
        data,
        message: code.message(ctx.locale),
        request_id: &ctx.request_id,
        success: true,
    };
    let mut res = (status, axum::Json(body)).into_response();
    res.extensions_mut().insert(code);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Success<'a, T> {
    code: &'a str,
    data: T,
    message: &'a str,
    request_id: &'a str,
    success: bool,
}

/// Fallback for unknown paths.
pub async fn not_found() -> Response {
    ApiError::from(Code::NOT_FOUND).into_response()
}

/// Fallback for a known path with the wrong method.
pub async fn method_not_allowed() -> Response {
    ApiError::from(Code::METHOD_NOT_ALLOWED).into_response()
}

/// A panic in a handler becomes a 500 envelope; the panic text goes to the log only.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let text = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("panic");
    ApiError(AppError::internal(
        Code::INTERNAL_ERROR,
        format!("handler panicked: {text}"),
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_a_500_envelope_without_the_panic_text() {
        async fn boom() -> &'static str {
            panic!("internal detail 42")
        }
        let app = axum::Router::new()
            .route("/boom", axum::routing::get(boom))
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                panic_response,
            ));
        let res = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "INTERNAL_ERROR");
        assert_eq!(v["success"], false);
        assert!(!String::from_utf8_lossy(&body).contains("internal detail"));
    }
}
