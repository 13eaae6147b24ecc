//! Mail routes: password reset by e-mail (`forgot` queues a code, `reset` spends it).

use super::{login_response, meta};
use crate::AppState;
use crate::auth_extract::{Auth, RequirePermission, perm};
use crate::body::{Fields, JsonBody, path_id};
use crate::envelope::{ApiResult, ok};
use crate::openapi::{RouteDoc, Routes, Security};
use axum::extract::{Path, State};
use axum::routing::post;
use gatehouse_domain::Code;
use serde_json::Value;

const AUTH: &str = "auth";
const ADMIN: &str = "admin";

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
                codes: &[C::OK, C::EMAIL_CODE_INVALID, C::PASSWORD_POLICY_VIOLATION],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/password/reset",
                    AUTH,
                    "Set a new password with the e-mailed code; every session, refresh token and trusted device is revoked",
                )
            },
            post(reset),
        )
        .at(
            RouteDoc {
                body: &[("challengeToken", "string", true), ("code", "string", true)],
                codes: &[
                    C::AUTH_LOGIN_SUCCESS,
                    C::AUTH_PASSWORD_CHANGE_REQUIRED,
                    C::AUTH_MFA_ENROLLMENT_REQUIRED,
                    C::EMAIL_CODE_INVALID,
                    C::CHALLENGE_INVALID,
                    C::ACCOUNT_DISABLED,
                    C::WORKSPACE_DISABLED,
                    C::MEMBER_DISABLED,
                    C::PERMISSION_REQUIRED,
                    C::JWT_KEY_NOT_CONFIGURED,
                ],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/login/email/verify",
                    AUTH,
                    "Login step verify_email: the code mailed at registration confirms the address",
                )
            },
            post(login_verify_email),
        )
        .at(
            RouteDoc {
                body: &[("challengeToken", "string", true)],
                codes: &[C::OK, C::CHALLENGE_INVALID, C::ACCOUNT_DISABLED],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/login/email/resend",
                    AUTH,
                    "Login step verify_email: mail a new code (the previous one stops working)",
                )
            },
            post(login_resend_email),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND, C::CONFLICT],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/users/{id}/email/resend-verification",
                    ADMIN,
                    "Mail a new confirmation code (users:write); CONFLICT if the address is confirmed",
                )
            },
            post(admin_resend),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND, C::CONFLICT],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/users/{id}/email/verify",
                    ADMIN,
                    "Mark the e-mail address confirmed (users:write); CONFLICT if it already is",
                )
            },
            post(admin_verify),
        )
        .at(
            RouteDoc {
                security: Security::User,
                body: &[("newEmail", "string", true), ("currentPassword", "string", true)],
                codes: &[C::OK, C::INVALID_CREDENTIALS, C::ACCOUNT_LOCKED],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/email",
                    AUTH,
                    "Change the e-mail address: a code goes to the new address",
                )
            },
            post(request_email_change),
        )
        .at(
            RouteDoc {
                security: Security::User,
                body: &[("code", "string", true)],
                codes: &[C::OK, C::EMAIL_CODE_INVALID, C::CONFLICT],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/email/confirm",
                    AUTH,
                    "Confirm the new address with its code; the old address gets a notice",
                )
            },
            post(confirm_email_change),
        )
}

async fn request_email_change(
    State(s): State<AppState>,
    Auth(p): Auth,
    body: JsonBody,
) -> ApiResult {
    let mut f = Fields::new(body);
    let email = f.req_str("newEmail", 320);
    let current = f.req_secret("currentPassword", 4096);
    f.finish()?;
    s.svc
        .request_email_change(&p, &email, &current, &meta())
        .await?;
    Ok(ok(Code::OK, Value::Null))
}

async fn confirm_email_change(
    State(s): State<AppState>,
    Auth(p): Auth,
    body: JsonBody,
) -> ApiResult {
    let mut f = Fields::new(body);
    let code = f.req_secret("code", 64);
    f.finish()?;
    s.svc
        .confirm_email_change(&p, code.expose(), &meta())
        .await?;
    Ok(ok(Code::OK, Value::Null))
}

async fn login_verify_email(State(s): State<AppState>, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let challenge = f.req_str("challengeToken", 128);
    let code = f.req_secret("code", 64);
    f.finish()?;
    let outcome = s
        .svc
        .complete_email_verification(&challenge, code.expose(), &meta())
        .await?;
    Ok(login_response(&s, outcome))
}

async fn login_resend_email(State(s): State<AppState>, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let challenge = f.req_str("challengeToken", 128);
    f.finish()?;
    s.svc.resend_email_verification(&challenge, &meta()).await?;
    Ok(ok(Code::OK, Value::Null))
}

async fn admin_resend(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::UsersWrite>,
    Path(id): Path<String>,
) -> ApiResult {
    s.svc
        .admin_resend_verification(p.account_id, path_id(&id)?, &meta())
        .await?;
    Ok(ok(Code::OK, Value::Null))
}

async fn admin_verify(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::UsersWrite>,
    Path(id): Path<String>,
) -> ApiResult {
    s.svc
        .admin_mark_email_verified(p.account_id, path_id(&id)?, &meta())
        .await?;
    Ok(ok(Code::OK, Value::Null))
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
