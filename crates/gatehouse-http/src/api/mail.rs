//! Mail routes: password reset by e-mail (`forgot` queues a code, `reset` spends it).

use super::meta;
use crate::AppState;
use crate::body::{Fields, JsonBody};
use crate::envelope::{ApiResult, ok};
use crate::openapi::{RouteDoc, Routes};
use axum::extract::State;
use axum::routing::post;
use gatehouse_domain::Code;
use serde_json::Value;

const AUTH: &str = "auth";

/// The mail routes.
pub fn routes() -> Routes {
    use Code as C;
    Routes::new()
        .at(
            RouteDoc {
                body: &[("identifier", "string", true)],
                codes: &[C::OK],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/password/forgot",
                    AUTH,
                    "Ask for a password-reset code by e-mail; the same answer whether or not the identifier names an account",
                )
            },
            post(forgot),
        )
        .at(
            RouteDoc {
                body: &[
                    ("identifier", "string", true),
                    ("code", "string", true),
                    ("newPassword", "string", true),
                ],
                codes: &[C::OK, C::RESET_CODE_INVALID, C::PASSWORD_POLICY_VIOLATION],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/password/reset",
                    AUTH,
                    "Set a new password with the e-mailed code; every session, refresh token and trusted device is revoked",
                )
            },
            post(reset),
        )
}

async fn forgot(State(s): State<AppState>, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let identifier = f.req_str("identifier", 320);
    f.finish()?;
    s.svc.forgot_password(&identifier, &meta()).await?;
    Ok(ok(Code::OK, Value::Null))
}

async fn reset(State(s): State<AppState>, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let identifier = f.req_str("identifier", 320);
    let code = f.req_secret("code", 64);
    let new = f.req_secret("newPassword", 4096);
    f.finish()?;
    s.svc
        .reset_password(&identifier, code.expose(), &new, &meta())
        .await?;
    Ok(ok(Code::OK, Value::Null))
}
