//! Two-factor routes: the TOTP and recovery-code login steps, TOTP enrolment (signed in
//! or as a login step), recovery codes, trusted devices, and the admin settings and reset.

use super::{issued_response_with, login_response, meta};
use crate::AppState;
use crate::auth_extract::{Auth, RequirePermission, perm};
use crate::body::{Fields, JsonBody, path_id};
use crate::envelope::{ApiResult, ok};
use crate::openapi::{RouteDoc, Routes, Security};
use axum::extract::{Path, State};
use axum::routing::{delete, get, patch, post};
use gatehouse_core::admin::SettingsPatch;
use gatehouse_core::login::LoginOutcome;
use gatehouse_core::mfa::Enrollment;
use gatehouse_domain::{Code, Secret};
use serde_json::{Value, json};

const AUTH: &str = "auth";
const ADMIN: &str = "admin";
/// Longest code field accepted (TOTP codes are 6 digits, recovery codes 11 characters).
const MAX_CODE: usize = 64;

/// The two-factor routes.
pub fn routes() -> Routes {
    use Code as C;
    Routes::new()
        .at(
            RouteDoc {
                body: &[
                    ("challengeToken", "string", true),
                    ("code", "string", true),
                    ("rememberDevice", "boolean", false),
                ],
                codes: &[
                    C::AUTH_LOGIN_SUCCESS,
                    C::MFA_CODE_INVALID,
                    C::CHALLENGE_INVALID,
                    C::ACCOUNT_LOCKED,
                    C::ACCOUNT_DISABLED,
                    C::JWT_KEY_NOT_CONFIGURED,
                ],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/login/totp",
                    AUTH,
                    "Login step verify_totp: a TOTP code; rememberDevice sets the gh_device cookie",
                )
            },
            post(login_totp),
        )
        .at(
            RouteDoc {
                body: &[("challengeToken", "string", true), ("code", "string", true)],
                codes: &[
                    C::AUTH_LOGIN_SUCCESS,
                    C::MFA_CODE_INVALID,
                    C::CHALLENGE_INVALID,
                    C::ACCOUNT_LOCKED,
                    C::ACCOUNT_DISABLED,
                    C::JWT_KEY_NOT_CONFIGURED,
                ],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/login/recovery-code",
                    AUTH,
                    "Login step verify_totp: a one-time recovery code instead of a TOTP code",
                )
            },
            post(login_recovery_code),
        )
        .at(
            RouteDoc {
                body: &[("challengeToken", "string", true)],
                codes: &[
                    C::OK,
                    C::CHALLENGE_INVALID,
                    C::CONFLICT,
                    C::ACCOUNT_DISABLED,
                ],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/login/totp/enroll",
                    AUTH,
                    "Login step enroll_totp: the secret, otpauth URL and QR code to scan",
                )
            },
            post(login_enroll),
        )
        .at(
            RouteDoc {
                body: &[("challengeToken", "string", true), ("code", "string", true)],
                codes: &[
                    C::AUTH_LOGIN_SUCCESS,
                    C::MFA_CODE_INVALID,
                    C::CHALLENGE_INVALID,
                    C::CONFLICT,
                    C::ACCOUNT_LOCKED,
                    C::ACCOUNT_DISABLED,
                    C::JWT_KEY_NOT_CONFIGURED,
                ],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/login/totp/confirm",
                    AUTH,
                    "Login step enroll_totp: the first code turns TOTP on; tokens plus recoveryCodes",
                )
            },
            post(login_confirm),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/auth/totp",
                    AUTH,
                    "Two-factor status: {enabled, recoveryCodesLeft}",
                )
            },
            get(status),
        )
        .at(
            RouteDoc {
                security: Security::User,
                body: &[("password", "string", false), ("code", "string", false)],
                codes: &[
                    C::OK,
                    C::INVALID_CREDENTIALS,
                    C::MFA_CODE_INVALID,
                    C::NOT_FOUND,
                ],
                ..RouteDoc::new(
                    "DELETE",
                    "/api/v1/auth/totp",
                    AUTH,
                    "Turn TOTP off (password or a current code); recovery codes and trusted devices go too",
                )
            },
            delete(disable),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::OK, C::CONFLICT, C::PERMISSION_REQUIRED],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/totp/enroll",
                    AUTH,
                    "Start TOTP enrolment: {secret, otpauthUrl, qrCode}",
                )
            },
            post(enroll),
        )
        .at(
            RouteDoc {
                security: Security::User,
                body: &[("code", "string", true)],
                codes: &[C::OK, C::MFA_CODE_INVALID, C::CONFLICT],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/totp/confirm",
                    AUTH,
                    "Confirm enrolment with the first code: {recoveryCodes} (shown once)",
                )
            },
            post(confirm),
        )
        .at(
            RouteDoc {
                security: Security::User,
                body: &[("code", "string", true)],
                codes: &[C::OK, C::MFA_CODE_INVALID],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/recovery-codes",
                    AUTH,
                    "Replace the recovery codes (needs a fresh TOTP code): {recoveryCodes}",
                )
            },
            post(regenerate),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/auth/trusted-devices",
                    AUTH,
                    "This account's trusted browsers",
                )
            },
            get(devices),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::OK],
                ..RouteDoc::new(
                    "DELETE",
                    "/api/v1/auth/trusted-devices",
                    AUTH,
                    "Revoke every trusted browser: {revoked}",
                )
            },
            delete(revoke_all_devices),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "DELETE",
                    "/api/v1/auth/trusted-devices/{id}",
                    AUTH,
                    "Revoke one trusted browser",
                )
            },
            delete(revoke_device),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/admin/settings",
                    ADMIN,
                    "Instance settings",
                )
            },
            get(settings),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                body: &[
                    ("allowPasswordLogin", "boolean", false),
                    ("allowRegistration", "boolean", false),
                    ("mfaPolicy", "string", false),
                    ("singleSession", "boolean", false),
                    ("requireEmailVerification", "boolean", false),
                    ("notifyPasswordChanged", "boolean", false),
                    ("notifyEmailChanged", "boolean", false),
                ],
                codes: &[C::OK],
                ..RouteDoc::new(
                    "PATCH",
                    "/api/v1/admin/settings",
                    ADMIN,
                    "Change instance settings (mfaPolicy: off, optional or required)",
                )
            },
            patch(update_settings),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/users/{id}/reset-mfa",
                    ADMIN,
                    "Clear the account's TOTP, recovery codes and trusted devices",
                )
            },
            post(admin_reset_mfa),
        )
}

fn enrollment(e: &Enrollment) -> Value {
    json!({
        "secret": e.secret.expose(),
        "otpauthUrl": e.otpauth_url.expose(),
        "qrCode": e.qr_code.expose(),
    })
}

async fn login_totp(State(s): State<AppState>, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let challenge = f.req_str("challengeToken", 128);
    let code = f.req_secret("code", MAX_CODE);
    let remember = f.opt_bool("rememberDevice").unwrap_or(false);
    f.finish()?;
    let outcome = s
        .svc
        .complete_totp(&challenge, code.expose(), remember, &meta())
        .await?;
    Ok(login_response(&s, outcome))
}

async fn login_recovery_code(State(s): State<AppState>, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let challenge = f.req_str("challengeToken", 128);
    let code = f.req_secret("code", MAX_CODE);
    f.finish()?;
    let outcome = s
        .svc
        .complete_recovery_code(&challenge, code.expose(), &meta())
        .await?;
    Ok(login_response(&s, outcome))
}

async fn login_enroll(State(s): State<AppState>, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let challenge = f.req_str("challengeToken", 128);
    f.finish()?;
    let e = s.svc.login_enrollment(&challenge).await?;
    Ok(ok(Code::OK, enrollment(&e)))
}

async fn login_confirm(State(s): State<AppState>, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let challenge = f.req_str("challengeToken", 128);
    let code = f.req_secret("code", MAX_CODE);
    f.finish()?;
    let (outcome, codes) = s
        .svc
        .complete_enrollment(&challenge, code.expose(), &meta())
        .await?;
    Ok(match outcome {
        LoginOutcome::Done(issued) => {
            issued_response_with(&s, Code::AUTH_LOGIN_SUCCESS, issued, Some(codes))
        }
        step => login_response(&s, step),
    })
}

async fn status(State(s): State<AppState>, Auth(p): Auth) -> ApiResult {
    let st = s.svc.mfa_status(&p).await?;
    Ok(ok(
        Code::OK,
        json!({ "enabled": st.enabled, "recoveryCodesLeft": st.recovery_codes_left }),
    ))
}

async fn enroll(State(s): State<AppState>, Auth(p): Auth) -> ApiResult {
    let e = s.svc.enroll_totp(&p, false).await?;
    Ok(ok(Code::OK, enrollment(&e)))
}

async fn confirm(State(s): State<AppState>, Auth(p): Auth, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let code = f.req_secret("code", MAX_CODE);
    f.finish()?;
    let codes = s.svc.confirm_totp(&p, code.expose(), &meta()).await?;
    Ok(ok(Code::OK, json!({ "recoveryCodes": codes })))
}

async fn regenerate(State(s): State<AppState>, Auth(p): Auth, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let code = f.req_secret("code", MAX_CODE);
    f.finish()?;
    let codes = s
        .svc
        .regenerate_recovery_codes(&p, code.expose(), &meta())
        .await?;
    Ok(ok(Code::OK, json!({ "recoveryCodes": codes })))
}

async fn disable(State(s): State<AppState>, Auth(p): Auth, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let password: Option<Secret> = f.opt_secret("password", 4096);
    let code = f.opt_secret("code", MAX_CODE);
    f.finish()?;
    s.svc
        .disable_totp(
            &p,
            password.as_ref(),
            code.as_ref().map(Secret::expose),
            &meta(),
        )
        .await?;
    Ok(ok(Code::OK, Value::Null))
}

async fn devices(State(s): State<AppState>, Auth(p): Auth) -> ApiResult {
    let items = s.svc.my_trusted_devices(&p).await?;
    let n = items.len();
    Ok(ok(
        Code::OK,
        json!({ "items": items, "page": 1, "pageSize": n, "total": n }),
    ))
}

async fn revoke_all_devices(State(s): State<AppState>, Auth(p): Auth) -> ApiResult {
    let n = s.svc.revoke_trusted_devices(&p, None, &meta()).await?;
    Ok(ok(Code::OK, json!({ "revoked": n })))
}

async fn revoke_device(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult {
    let id = path_id(&id)?;
    s.svc.revoke_trusted_devices(&p, Some(id), &meta()).await?;
    Ok(ok(Code::OK, Value::Null))
}

async fn settings(
    State(s): State<AppState>,
    _: RequirePermission<perm::SettingsRead>,
) -> ApiResult {
    Ok(ok(Code::OK, s.svc.instance_settings().await?))
}

async fn update_settings(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::SettingsWrite>,
    body: JsonBody,
) -> ApiResult {
    let mut f = Fields::new(body);
    let patch = SettingsPatch {
        allow_password_login: f.opt_bool("allowPasswordLogin"),
        allow_registration: f.opt_bool("allowRegistration"),
        mfa_policy: f.opt_str("mfaPolicy", 16),
        single_session: f.opt_bool("singleSession"),
        require_email_verification: f.opt_bool("requireEmailVerification"),
        notify_password_changed: f.opt_bool("notifyPasswordChanged"),
        notify_email_changed: f.opt_bool("notifyEmailChanged"),
    };
    f.finish()?;
    let settings = s
        .svc
        .update_settings(Some(p.account_id), patch, &meta())
        .await?;
    Ok(ok(Code::OK, settings))
}

async fn admin_reset_mfa(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::UsersWrite>,
    Path(id): Path<String>,
) -> ApiResult {
    let a = s
        .svc
        .reset_mfa(Some(p.account_id), path_id(&id)?, &meta())
        .await?;
    Ok(ok(Code::OK, a))
}
