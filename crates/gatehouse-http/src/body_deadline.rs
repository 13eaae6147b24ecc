//! The request body's deadline: the whole body (up to one byte past the size limit, so the
//! extractors still answer 413 for larger ones) must arrive within `body_timeout` of the
//! headers, or the answer is 408 and the connection is closed. Without it a client could
//! hold a connection, and a handler, open by trickling a body one byte at a time.

use crate::AppState;
use crate::envelope::ApiError;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatehouse_domain::Code;
use http_body_util::BodyExt as _;

/// Reads the body under the deadline, then hands the request on with the bytes read.
pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let limit = state.http.max_body_bytes.saturating_add(1);
    match tokio::time::timeout(state.http.body_timeout, read_up_to(body, limit)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        // The client broke off mid-body; whoever is still listening learns it was malformed.
        Ok(Err(_)) => ApiError::from(Code::MALFORMED_JSON).into_response(),
        Err(_) => {
            let mut res = ApiError::from(Code::REQUEST_TIMEOUT).into_response();
            // The rest of the body may still be on its way: the connection cannot be reused.
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
    }
}

/// Collects the body's data, stopping once `limit` bytes are in.
async fn read_up_to(mut body: Body, limit: usize) -> Result<Bytes, axum::Error> {
    let mut buf = Vec::new();
    while buf.len() < limit {
        let Some(frame) = body.frame().await else {
            break;
        };
        if let Ok(data) = frame?.into_data() {
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}
