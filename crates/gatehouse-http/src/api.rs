//! `/api/v1`: thin handlers that extract, call the core, and map to the envelope.

use crate::auth_extract::{Auth, RequirePermission, check_csrf, perm};
use crate::body::{Fields, JsonBody, path_id};
use crate::envelope::{ApiError, ApiResult, ok, ok_status};
use crate::openapi::{RouteDoc, Routes, Security};
use crate::{AppState, context, cookies};
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{delete, get, post};
use gatehouse_core::admin::CreateUser;
use gatehouse_core::auth::Issued;
use gatehouse_core::login::LoginOutcome;
use gatehouse_core::tenancy::LoginContext;
use gatehouse_core::tokens::opaque_token;
use gatehouse_domain::model::{AccountStatus, AuditFilter, Page, Session, TokenKind};
use gatehouse_domain::{AppError, Code, FieldError, Id, Secret, Timestamp};
use serde_json::{Value, json};
use std::collections::HashMap;

mod invitations;
mod mail;
mod mfa;
mod sso;
mod tenancy;
mod tokens;

const AUTH: &str = "auth";
const ADMIN: &str = "admin";

/// Every API route with its documentation.
pub fn routes() -> Routes {
    use Code as C;
    Routes::new()
        .at(
            RouteDoc {
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/auth/csrf-token",
                    AUTH,
                    "Issue a CSRF token bound to this browser",
                )
            },
            get(csrf_token),
        )
        .at(
            RouteDoc {
                security: Security::Csrf,
                body: &[
                    ("identifier", "string", true),
                    ("password", "string", true),
                    ("totp", "string", false),
                    ("rememberDevice", "boolean", false),
                    ("workspace", "string", false),
                ],
                codes: &[
                    C::AUTH_LOGIN_SUCCESS,
                    C::AUTH_PASSWORD_CHANGE_REQUIRED,
                    C::AUTH_MFA_REQUIRED,
                    C::AUTH_MFA_ENROLLMENT_REQUIRED,
                    C::INVALID_CREDENTIALS,
                    C::MFA_CODE_INVALID,
                    C::ACCOUNT_DISABLED,
                    C::ACCOUNT_LOCKED,
                    C::PASSWORD_LOGIN_DISABLED,
                    C::WORKSPACE_DISABLED,
                    C::MEMBER_DISABLED,
                    C::PERMISSION_REQUIRED,
                    C::JWT_KEY_NOT_CONFIGURED,
                ],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/login",
                    AUTH,
                    "Sign in with email or username and password",
                )
            },
            post(login),
        )
        .at(
            RouteDoc {
                body: &[
                    ("challengeToken", "string", true),
                    ("newPassword", "string", true),
                ],
                codes: &[
                    C::AUTH_LOGIN_SUCCESS,
                    C::AUTH_MFA_REQUIRED,
                    C::AUTH_MFA_ENROLLMENT_REQUIRED,
                    C::CHALLENGE_INVALID,
                    C::PASSWORD_POLICY_VIOLATION,
                    C::ACCOUNT_DISABLED,
                ],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/login/password",
                    AUTH,
                    "Login step: choose a new password",
                )
            },
            post(login_password),
        )
        .at(
            RouteDoc {
                security: Security::Csrf,
                body: &[("refreshToken", "string", false)],
                codes: &[
                    C::AUTH_REFRESH_SUCCESS,
                    C::TOKEN_INVALID,
                    C::TOKEN_EXPIRED,
                    C::TOKEN_REVOKED,
                    C::REFRESH_TOKEN_REUSED,
                    C::ACCOUNT_DISABLED,
                    C::WORKSPACE_DISABLED,
                    C::MEMBER_DISABLED,
                    C::PERMISSION_REQUIRED,
                ],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/refresh",
                    AUTH,
                    "Rotate a refresh token (body, or cookie + CSRF) for new tokens",
                )
            },
            post(refresh),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::AUTH_LOGOUT_SUCCESS],
                ..RouteDoc::new("POST", "/api/v1/auth/logout", AUTH, "End this session")
            },
            post(logout),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::AUTH_LOGOUT_SUCCESS],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/logout-all",
                    AUTH,
                    "End every session of this account",
                )
            },
            post(logout_all),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[
                    C::OK,
                    C::WORKSPACE_DISABLED,
                    C::MEMBER_DISABLED,
                    C::PERMISSION_REQUIRED,
                ],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/auth/me",
                    AUTH,
                    "The signed-in account, its workspace, branch, roles and permissions",
                )
            },
            get(me),
        )
        .at(
            RouteDoc {
                security: Security::User,
                body: &[
                    ("currentPassword", "string", true),
                    ("newPassword", "string", true),
                ],
                codes: &[C::OK, C::INVALID_CREDENTIALS, C::PASSWORD_POLICY_VIOLATION],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/password",
                    AUTH,
                    "Change password; other sessions are revoked",
                )
            },
            post(change_password),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/auth/sessions",
                    AUTH,
                    "This account's active sessions",
                )
            },
            get(my_sessions),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "DELETE",
                    "/api/v1/auth/sessions/{id}",
                    AUTH,
                    "Revoke one of this account's sessions",
                )
            },
            delete(revoke_my_session),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                body: &[
                    ("email", "string", true),
                    ("username", "string", false),
                    ("displayName", "string", false),
                    ("password", "string", false),
                    ("mustChangePassword", "boolean", false),
                    ("roles", "array", false),
                ],
                codes: &[C::OK, C::CONFLICT, C::PASSWORD_POLICY_VIOLATION],
                created: true,
                ..RouteDoc::new("POST", "/api/v1/admin/users", ADMIN, "Create an account")
            },
            post(admin_create_user),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                query: &["query", "page", "pageSize"],
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/admin/users",
                    ADMIN,
                    "List and search accounts",
                )
            },
            get(admin_list_users),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new("GET", "/api/v1/admin/users/{id}", ADMIN, "One account")
            },
            get(admin_get_user),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND, C::CONFLICT],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/users/{id}/disable",
                    ADMIN,
                    "Disable an account and revoke its sessions",
                )
            },
            post(admin_disable),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/users/{id}/enable",
                    ADMIN,
                    "Enable an account",
                )
            },
            post(admin_enable),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/users/{id}/unlock",
                    ADMIN,
                    "Lift a lockout",
                )
            },
            post(admin_unlock),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/users/{id}/require-password-change",
                    ADMIN,
                    "Require a new password at next sign-in",
                )
            },
            post(admin_require_password_change),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                query: &["accountId", "page", "pageSize"],
                codes: &[C::OK],
                ..RouteDoc::new("GET", "/api/v1/admin/sessions", ADMIN, "List sessions")
            },
            get(admin_sessions),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                query: &[
                    "accountId",
                    "action",
                    "outcome",
                    "from",
                    "to",
                    "page",
                    "pageSize",
                ],
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/admin/audit-events",
                    ADMIN,
                    "Query the audit trail",
                )
            },
            get(admin_audit),
        )
        .merge(mfa::routes())
        .merge(tenancy::routes())
        .merge(invitations::routes())
        .merge(tokens::routes())
        .merge(sso::routes())
        .merge(mail::routes())
}

fn meta() -> gatehouse_core::RequestMeta {
    context::current().meta()
}

async fn csrf_token(State(s): State<AppState>, headers: HeaderMap) -> ApiResult {
    let name = cookies::name(&s.http, cookies::CSRF);
    let existing = cookies::get(&headers, &name).filter(|b| b.len() >= 32);
    let binding = match &existing {
        Some(b) => b.clone(),
        None => opaque_token()?,
    };
    let token = s.svc.csrf.issue(&binding, s.svc.now())?;
    let mut res = ok(
        Code::OK,
        json!({ "csrfToken": token, "headerName": "X-CSRFToken" }),
    );
    if existing.is_none() {
        cookies::append(
            res.headers_mut(),
            cookies::set(&s.http, cookies::CSRF, &binding, None),
        );
    }
    Ok(res)
}

fn issued_response(s: &AppState, code: Code, issued: Issued) -> Response {
    issued_response_with(s, code, issued, None)
}

/// Tokens (and cookies) for a completed sign-in; `recovery_codes` are shown once after a
/// TOTP enrolment that was part of it.
fn issued_response_with(
    s: &AppState,
    code: Code,
    issued: Issued,
    recovery_codes: Option<Vec<String>>,
) -> Response {
    let refresh = issued.token.expose().to_string();
    let access = issued.access_token.as_ref().map(Secret::expose);
    let mut data = match &issued.context {
        LoginContext::Select(branches) => json!({
            "branches": branches,
            "auth": {
                "tokenType": "Bearer",
                "accountAccessToken": access,
                "refreshToken": refresh,
            },
            "nextAction": { "type": "select_branch", "redirectTo": "/select-branch" },
        }),
        context => {
            let (workspace, member, branch, branches, roles) = match context {
                LoginContext::Branch(c) => (
                    json!(c.workspace),
                    json!(c.member),
                    json!(c.branch),
                    json!(c.branches),
                    json!(c.roles),
                ),
                _ => (
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    json!([]),
                    json!(issued.account.roles),
                ),
            };
            json!({
                "account": issued.account,
                "workspace": workspace,
                "member": member,
                "branch": branch,
                "branches": branches,
                "roles": roles,
                "auth": {
                    "tokenType": "Bearer",
                    "accessToken": access,
                    "refreshToken": refresh,
                    "expiresIn": issued.expires_in,
                    "refreshExpiresIn": issued.token_expires_in,
                },
                "sessionId": issued.session_id,
                "nextAction": { "type": "load_current_context" },
            })
        }
    };
    if let Some(codes) = recovery_codes {
        data["recoveryCodes"] = json!(codes);
    }
    let mut res = ok(code, data);
    cookies::append(
        res.headers_mut(),
        cookies::set(
            &s.http,
            cookies::REFRESH,
            &refresh,
            Some(issued.token_expires_in),
        ),
    );
    if let Some((device, max_age)) = &issued.trusted_device {
        cookies::append(
            res.headers_mut(),
            cookies::set(&s.http, cookies::DEVICE, device.expose(), Some(*max_age)),
        );
    }
    res
}

fn login_response(s: &AppState, outcome: LoginOutcome) -> Response {
    match outcome {
        LoginOutcome::Done(issued) => issued_response(s, Code::AUTH_LOGIN_SUCCESS, issued),
        LoginOutcome::Step(ch) => ok(
            ch.code,
            json!({
                "challengeToken": ch.token.expose(),
                "expiresIn": ch.expires_in,
                "nextAction": { "type": ch.step.as_str() },
            }),
        ),
    }
}

async fn login(State(s): State<AppState>, headers: HeaderMap, body: JsonBody) -> ApiResult {
    check_csrf(&s, &headers)?;
    let mut f = Fields::new(body);
    let identifier = f.req_str("identifier", 320);
    let password = f.req_secret("password", 4096);
    let opts = gatehouse_core::login::LoginOptions {
        totp: f.opt_secret("totp", 64),
        remember_device: f.opt_bool("rememberDevice").unwrap_or(false),
        device: cookies::get(&headers, &cookies::name(&s.http, cookies::DEVICE)).map(Secret::new),
        workspace: f.opt_str("workspace", 64),
    };
    f.finish()?;
    let outcome = s
        .svc
        .login_with(&identifier, &password, &opts, TokenKind::Refresh, &meta())
        .await?;
    Ok(login_response(&s, outcome))
}

async fn login_password(State(s): State<AppState>, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let challenge = f.req_str("challengeToken", 128);
    let new = f.req_secret("newPassword", 4096);
    f.finish()?;
    let outcome = s
        .svc
        .complete_password_change(&challenge, &new, &meta())
        .await?;
    Ok(login_response(&s, outcome))
}

async fn refresh(State(s): State<AppState>, req: Request) -> ApiResult {
    let headers = req.headers().clone();
    let has_body = headers.contains_key(header::CONTENT_TYPE)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let from_body = if has_body {
        let mut f = Fields::new(JsonBody::from_request(req, &s).await?);
        let t = f.opt_str("refreshToken", 128);
        f.finish()?;
        t
    } else {
        None
    };
    let token = match from_body {
        Some(t) => t,
        None => {
            let t = cookies::get(&headers, &cookies::name(&s.http, cookies::REFRESH)).ok_or_else(
                || AppError::validation(vec![FieldError::new("refreshToken", "required")]),
            )?;
            check_csrf(&s, &headers)?;
            t
        }
    };
    let issued = s.svc.refresh(&Secret::new(token), &meta()).await?;
    let _ = context::current().account_id.set(issued.account.id);
    Ok(issued_response(&s, Code::AUTH_REFRESH_SUCCESS, issued))
}

fn clear_cookies(s: &AppState, res: &mut Response) {
    cookies::append(
        res.headers_mut(),
        cookies::set(&s.http, cookies::REFRESH, "", Some(0)),
    );
    cookies::append(
        res.headers_mut(),
        cookies::set(&s.http, cookies::SESSION, "", Some(0)),
    );
}

async fn logout(State(s): State<AppState>, Auth(p): Auth) -> ApiResult {
    s.svc.logout(&p, &meta()).await?;
    let mut res = ok(Code::AUTH_LOGOUT_SUCCESS, Value::Null);
    clear_cookies(&s, &mut res);
    Ok(res)
}

async fn logout_all(State(s): State<AppState>, Auth(p): Auth) -> ApiResult {
    let n = s.svc.logout_all(&p, &meta()).await?;
    let mut res = ok(Code::AUTH_LOGOUT_SUCCESS, json!({ "revokedSessions": n }));
    clear_cookies(&s, &mut res);
    Ok(res)
}

/// The caller with its context: for a branch-scoped caller the workspace, membership and
/// branch (re-checked, so a disabled member is refused here too), the roles held (global
/// account roles plus the branch's) and the effective permissions.
/// `GET /auth/me`'s data, serialized without an intermediate `Value` (this is the hottest
/// authenticated route); keys in alphabetical order like the rest of the API's output.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct MeView<'a> {
    account: &'a gatehouse_domain::model::Account,
    branch: Option<&'a gatehouse_domain::model::Branch>,
    /// The long-lived credential the request was made with (`null` for a session).
    credential: Option<tokens::CredentialView<'a>>,
    member: Option<&'a gatehouse_domain::model::Member>,
    permissions: gatehouse_core::authz::PermissionSet,
    roles: Vec<String>,
    scope: &'static str,
    session_id: Option<gatehouse_domain::Id>,
    workspace: Option<&'a gatehouse_domain::model::Workspace>,
}

async fn me(State(s): State<AppState>, Auth(p): Auth) -> ApiResult {
    let me = s.svc.me_context(&p).await?;
    let context = me.context.as_ref();
    Ok(ok(
        Code::OK,
        MeView {
            account: &me.account,
            branch: context.map(|c| &c.branch),
            credential: p.token.as_ref().map(tokens::CredentialView::of),
            member: context.map(|c| &c.member),
            permissions: me.permissions,
            roles: me.roles,
            scope: if p.branch_id.is_some() {
                "branch"
            } else {
                "account"
            },
            session_id: p.token.is_none().then_some(p.session_id),
            workspace: context.map(|c| &c.workspace),
        },
    ))
}

async fn change_password(State(s): State<AppState>, Auth(p): Auth, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let current = f.req_secret("currentPassword", 4096);
    let new = f.req_secret("newPassword", 4096);
    f.finish()?;
    s.svc.change_password(&p, &current, &new, &meta()).await?;
    Ok(ok(Code::OK, Value::Null))
}

fn session_dto(session: &Session, current: Id) -> Value {
    let mut v = serde_json::to_value(session).unwrap_or(Value::Null);
    v["current"] = Value::Bool(session.id == current);
    v
}

async fn my_sessions(State(s): State<AppState>, Auth(p): Auth) -> ApiResult {
    let sessions = s.svc.my_sessions(&p).await?;
    let items: Vec<Value> = sessions
        .iter()
        .map(|x| session_dto(x, p.session_id))
        .collect();
    let n = items.len();
    Ok(ok(
        Code::OK,
        json!({ "items": items, "page": 1, "pageSize": n, "total": n }),
    ))
}

async fn revoke_my_session(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult {
    let id = path_id(&id)?;
    s.svc.revoke_my_session(&p, id, &meta()).await?;
    Ok(ok(Code::OK, Value::Null))
}

/// Query-string parameters, percent-decoded; repeated or malformed ones are errors.
pub(crate) fn query_params(raw: Option<String>) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (percent_decode(k), percent_decode(v)) else {
            return Err(AppError::validation(vec![FieldError::new("query", "invalid")]).into());
        };
        if out.insert(k.clone(), v).is_some() {
            return Err(AppError::validation(vec![FieldError::new(k, "invalid")]).into());
        }
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().filter(|s| s.len() <= 1024)
}

pub(crate) fn page_of(q: &HashMap<String, String>) -> Result<Page, ApiError> {
    let mut errors = Vec::new();
    let mut num = |k: &str, default: u32, max: u32| match q.get(k) {
        None => default,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(k, "invalid"));
                default
            }
        },
    };
    let page = Page {
        page: num("page", 1, 1_000_000),
        page_size: num("pageSize", 20, 100),
    };
    if errors.is_empty() {
        Ok(page)
    } else {
        Err(AppError::validation(errors).into())
    }
}

pub(crate) fn list<T: serde::Serialize>(items: Vec<T>, total: u64, page: Page) -> Response {
    ok(
        Code::OK,
        json!({ "items": items, "page": page.page, "pageSize": page.page_size, "total": total }),
    )
}

async fn admin_create_user(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::UsersWrite>,
    body: JsonBody,
) -> ApiResult {
    let mut f = Fields::new(body);
    let input = CreateUser {
        email: f.req_str("email", 320),
        username: f.opt_str("username", 64),
        display_name: f.opt_str("displayName", 200),
        password: f.opt_secret("password", 4096),
        must_change_password: f.opt_bool("mustChangePassword"),
        roles: f.opt_str_list("roles", 16, 64).unwrap_or_default(),
    };
    f.finish()?;
    let account = s
        .svc
        .create_user(Some(p.account_id), input, &meta())
        .await?;
    Ok(ok_status(StatusCode::CREATED, Code::OK, account))
}

async fn admin_list_users(
    State(s): State<AppState>,
    _: RequirePermission<perm::UsersRead>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = query_params(raw)?;
    let page = page_of(&q)?;
    let found = s
        .svc
        .list_users(q.get("query").map(String::as_str), page)
        .await?;
    Ok(list(found.items, found.total, page))
}

async fn admin_get_user(
    State(s): State<AppState>,
    _: RequirePermission<perm::UsersRead>,
    Path(id): Path<String>,
) -> ApiResult {
    let account = s.svc.find_user(&path_id(&id)?.to_string()).await?;
    Ok(ok(Code::OK, account))
}

async fn admin_disable(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::UsersWrite>,
    Path(id): Path<String>,
) -> ApiResult {
    let a = s
        .svc
        .set_user_status(
            Some(p.account_id),
            path_id(&id)?,
            AccountStatus::Disabled,
            &meta(),
        )
        .await?;
    Ok(ok(Code::OK, a))
}

async fn admin_enable(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::UsersWrite>,
    Path(id): Path<String>,
) -> ApiResult {
    let a = s
        .svc
        .set_user_status(
            Some(p.account_id),
            path_id(&id)?,
            AccountStatus::Active,
            &meta(),
        )
        .await?;
    Ok(ok(Code::OK, a))
}

async fn admin_unlock(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::UsersWrite>,
    Path(id): Path<String>,
) -> ApiResult {
    let a = s
        .svc
        .unlock_user(Some(p.account_id), path_id(&id)?, &meta())
        .await?;
    Ok(ok(Code::OK, a))
}

async fn admin_require_password_change(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::UsersWrite>,
    Path(id): Path<String>,
) -> ApiResult {
    let a = s
        .svc
        .require_password_change(Some(p.account_id), path_id(&id)?, &meta())
        .await?;
    Ok(ok(Code::OK, a))
}

pub(crate) fn opt_id(q: &HashMap<String, String>, k: &str) -> Result<Option<Id>, ApiError> {
    q.get(k)
        .map(|v| {
            v.parse::<Id>().map_err(|_| {
                ApiError::from(AppError::validation(vec![FieldError::new(k, "invalid")]))
            })
        })
        .transpose()
}

async fn admin_sessions(
    State(s): State<AppState>,
    _: RequirePermission<perm::SessionsRead>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = query_params(raw)?;
    let page = page_of(&q)?;
    let found = s.svc.list_sessions(opt_id(&q, "accountId")?, page).await?;
    Ok(list(found.items, found.total, page))
}

async fn admin_audit(
    State(s): State<AppState>,
    _: RequirePermission<perm::AuditRead>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = query_params(raw)?;
    let page = page_of(&q)?;
    let time = |k: &str| -> Result<Option<Timestamp>, ApiError> {
        q.get(k)
            .map(|v| {
                Timestamp::parse_rfc3339(v)
                    .ok_or_else(|| AppError::validation(vec![FieldError::new(k, "invalid")]).into())
            })
            .transpose()
    };
    let filter = AuditFilter {
        account_id: opt_id(&q, "accountId")?,
        action: q.get("action").cloned(),
        outcome: q.get("outcome").cloned(),
        from: time("from")?,
        to: time("to")?,
    };
    let found = s.svc.list_audit(&filter, page).await?;
    Ok(list(found.items, found.total, page))
}
