//! `/api/v1/auth/sso/…`, `/api/v1/auth/identities` and `/api/v1/admin/sso-providers`:
//! sign-in through an upstream provider (browser and SPA flows), linked identities, and
//! the providers stored in the database.

use super::{login_response, meta, query_params};
use crate::auth_extract::{Auth, RequirePermission, check_csrf, perm};
use crate::body::{Fields, JsonBody, path_id};
use crate::envelope::{ApiResult, ok, ok_status};
use crate::openapi::{RouteDoc, Routes, Security};
use crate::pages::{PageCookies, browser_binding, sso_failed, sso_finished, to_provider};
use crate::{AppState, cookies};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, patch, post};
use gatehouse_core::login::LoginOptions;
use gatehouse_core::service::AuthVia;
use gatehouse_core::sso::StartRequest;
use gatehouse_domain::{AppError, Code, Secret};
use serde_json::{Value, json};

const SSO: &str = "sso";
const ADMIN: &str = "admin";

/// The SSO routes.
pub fn routes() -> Routes {
    use Code as C;
    Routes::new()
        .at(
            RouteDoc {
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/auth/sso/providers",
                    SSO,
                    "Enabled upstream providers (id and name), for sign-in buttons",
                )
            },
            get(providers),
        )
        .at(
            RouteDoc {
                html: true,
                found: true,
                query: &["next", "mode", "workspace"],
                codes: &[
                    C::NOT_FOUND,
                    C::SSO_PROVIDER_ERROR,
                    C::AUTHENTICATION_REQUIRED,
                    C::SSO_REAUTHENTICATION_REQUIRED,
                    C::VALIDATION_ERROR,
                ],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/auth/sso/{id}/start",
                    SSO,
                    "Start signing in (or, with mode=link from a fresh session, linking) \
                     through provider `id`: 302 to the provider",
                )
            },
            get(start),
        )
        .at(
            RouteDoc {
                html: true,
                query: &["code", "state", "iss", "error"],
                codes: &[
                    C::SSO_STATE_INVALID,
                    C::SSO_PROVIDER_ERROR,
                    C::SSO_PROVIDER_DENIED,
                    C::SSO_IDENTIFIER_REJECTED,
                    C::SSO_LINK_REQUIRED,
                    C::REGISTRATION_DISABLED,
                    C::ACCOUNT_DISABLED,
                    C::ACCOUNT_LOCKED,
                    C::CONFLICT,
                    C::NOT_FOUND,
                    C::VALIDATION_ERROR,
                ],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/auth/sso/{id}/callback",
                    SSO,
                    "The provider sends the browser back here: 303 to `next` with the \
                     session cookie, or the page of the step still owed; errors render \
                     the sign-in page with the code",
                )
            },
            get(callback),
        )
        .at(
            RouteDoc {
                security: Security::Csrf,
                body: &[
                    ("code", "string", true),
                    ("codeVerifier", "string", true),
                    ("redirectUri", "string", true),
                    ("nonce", "string", false),
                    ("workspace", "string", false),
                ],
                codes: &[
                    C::AUTH_LOGIN_SUCCESS,
                    C::AUTH_PASSWORD_CHANGE_REQUIRED,
                    C::AUTH_MFA_REQUIRED,
                    C::AUTH_MFA_ENROLLMENT_REQUIRED,
                    C::SSO_PROVIDER_ERROR,
                    C::SSO_IDENTIFIER_REJECTED,
                    C::SSO_LINK_REQUIRED,
                    C::REGISTRATION_DISABLED,
                    C::ACCOUNT_DISABLED,
                    C::ACCOUNT_LOCKED,
                    C::NOT_FOUND,
                    C::VALIDATION_ERROR,
                    C::CSRF_MISSING,
                    C::CSRF_INVALID,
                    C::WORKSPACE_DISABLED,
                    C::MEMBER_DISABLED,
                ],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/sso/{id}/exchange",
                    SSO,
                    "SPA / native sign-in: a code the client obtained with its own PKCE; \
                     answers like POST /api/v1/auth/login",
                )
            },
            post(exchange),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/auth/identities",
                    SSO,
                    "Your linked upstream identities",
                )
            },
            get(identities),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::OK, C::NOT_FOUND, C::SSO_LAST_SIGN_IN_METHOD],
                ..RouteDoc::new(
                    "DELETE",
                    "/api/v1/auth/identities/{id}",
                    SSO,
                    "Unlink an upstream identity (refused when it is the last way to sign in)",
                )
            },
            delete(unlink),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/admin/sso-providers",
                    ADMIN,
                    "SSO providers (configured and stored); secrets are never shown",
                )
            },
            get(admin_list),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                created: true,
                body: PROVIDER_FIELDS,
                codes: &[C::OK, C::VALIDATION_ERROR, C::CONFLICT],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/sso-providers",
                    ADMIN,
                    "Store an SSO provider (keys as in [[sso.providers]]; the client secret \
                     is sealed and never returned)",
                )
            },
            post(admin_create),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/admin/sso-providers/{id}",
                    ADMIN,
                    "One SSO provider",
                )
            },
            get(admin_get),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                body: PROVIDER_PATCH_FIELDS,
                codes: &[C::OK, C::NOT_FOUND, C::VALIDATION_ERROR, C::CONFLICT],
                ..RouteDoc::new(
                    "PATCH",
                    "/api/v1/admin/sso-providers/{id}",
                    ADMIN,
                    "Change a stored SSO provider (configured ones are read-only)",
                )
            },
            patch(admin_update),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND, C::CONFLICT],
                ..RouteDoc::new(
                    "DELETE",
                    "/api/v1/admin/sso-providers/{id}",
                    ADMIN,
                    "Delete a stored SSO provider",
                )
            },
            delete(admin_delete),
        )
}

const PROVIDER_FIELDS: &[(&str, &str, bool)] = &[
    ("id", "string", true),
    ("name", "string", true),
    ("kind", "string", true),
    ("issuer", "string", false),
    ("authorize_url", "string", false),
    ("token_url", "string", false),
    ("userinfo_url", "string", false),
    ("fields", "object", false),
    ("client_id", "string", true),
    ("client_secret", "string", false),
    ("scopes", "array", false),
    ("auto_register", "boolean", false),
    ("allowed_email_domains", "array", false),
    ("link_by_verified_email", "boolean", false),
    ("enabled", "boolean", false),
    ("trust_upstream_mfa", "boolean", false),
    ("pkce", "boolean", false),
    ("redirect_uris", "array", false),
];

const PROVIDER_PATCH_FIELDS: &[(&str, &str, bool)] = &[
    ("name", "string", false),
    ("kind", "string", false),
    ("issuer", "string", false),
    ("authorize_url", "string", false),
    ("token_url", "string", false),
    ("userinfo_url", "string", false),
    ("fields", "object", false),
    ("client_id", "string", false),
    ("client_secret", "string", false),
    ("scopes", "array", false),
    ("auto_register", "boolean", false),
    ("allowed_email_domains", "array", false),
    ("link_by_verified_email", "boolean", false),
    ("enabled", "boolean", false),
    ("trust_upstream_mfa", "boolean", false),
    ("pkce", "boolean", false),
    ("redirect_uris", "array", false),
];

async fn providers(State(s): State<AppState>) -> ApiResult {
    let all = s.svc.sso_providers().await?;
    let shown: Vec<Value> = all
        .iter()
        .filter(|p| p.enabled)
        .map(|p| json!({ "id": p.id, "name": p.name }))
        .collect();
    Ok(ok(Code::OK, json!({ "providers": shown })))
}

/// `GET …/{id}/start`.
async fn start(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = match query_params(q) {
        Ok(q) => q,
        Err(_) => return sso_failed(&s, &headers, None, Code::VALIDATION_ERROR.into()),
    };
    // Only a same-site path is ever followed (checked again at the callback).
    let next = q
        .get("next")
        .filter(|n| crate::pages::is_safe_next(n))
        .cloned();
    let result = async {
        let link = match q.get("mode").map(String::as_str) {
            None | Some("login") => None,
            Some("link") => {
                let token = cookies::get(&headers, &cookies::name(&s.http, cookies::SESSION))
                    .ok_or(Code::AUTHENTICATION_REQUIRED)?;
                let p = s.svc.authenticate_web(&token).await?;
                if p.via != AuthVia::Cookie {
                    return Err(Code::AUTHENTICATION_REQUIRED.into());
                }
                Some(p)
            }
            Some(_) => return Err(AppError::new(Code::VALIDATION_ERROR)),
        };
        let mut jar = PageCookies::default();
        let browser = browser_binding(&s, &headers, &mut jar)?;
        let url = s
            .svc
            .sso_start(
                &id,
                StartRequest {
                    browser: &browser,
                    next: next.clone(),
                    workspace: q.get("workspace").filter(|w| w.len() <= 64).cloned(),
                    link: link.as_ref(),
                },
                &meta(),
            )
            .await?;
        Ok::<_, AppError>(to_provider(&url, jar))
    }
    .await;
    result.unwrap_or_else(|e| sso_failed(&s, &headers, next.as_deref(), e))
}

/// `GET …/{id}/callback`.
async fn callback(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = match query_params(q) {
        Ok(q) => q,
        Err(_) => return sso_failed(&s, &headers, None, Code::SSO_STATE_INVALID.into()),
    };
    let state = q.get("state").map(String::as_str).unwrap_or("");
    let browser = cookies::get(&headers, &cookies::name(&s.http, cookies::CSRF));
    let opts = LoginOptions {
        device: cookies::get(&headers, &cookies::name(&s.http, cookies::DEVICE)).map(Secret::new),
        ..LoginOptions::default()
    };
    // The provider refused (the user cancelled, or it failed): never show its message.
    let code = match (q.get("code"), q.get("error")) {
        (Some(c), None) => c.as_str(),
        _ => "",
    };
    let done = if code.is_empty() {
        // Spend the state anyway, so it cannot be used again.
        let _ = s
            .svc
            .sso_callback(&id, "", state, None, browser.as_deref(), &opts, &meta())
            .await;
        Err(AppError::new(if q.contains_key("error") {
            Code::SSO_PROVIDER_DENIED
        } else {
            Code::SSO_STATE_INVALID
        }))
    } else {
        s.svc
            .sso_callback(
                &id,
                code,
                state,
                q.get("iss").map(String::as_str),
                browser.as_deref(),
                &opts,
                &meta(),
            )
            .await
    };
    match done {
        Ok(done) => sso_finished(&s, &headers, done).await,
        Err(e) => sso_failed(&s, &headers, None, e),
    }
}

/// `POST …/{id}/exchange`.
async fn exchange(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult {
    check_csrf(&s, &headers)?;
    let mut f = Fields::new(body);
    let code = f.req_str("code", 2048);
    let verifier = f.req_str("codeVerifier", 128);
    let redirect = f.req_str("redirectUri", 2048);
    let nonce = f.opt_str("nonce", 256);
    let workspace = f.opt_str("workspace", 64);
    f.finish()?;
    let opts = LoginOptions {
        device: cookies::get(&headers, &cookies::name(&s.http, cookies::DEVICE)).map(Secret::new),
        workspace,
        ..LoginOptions::default()
    };
    let outcome = s
        .svc
        .sso_exchange(
            &id,
            &code,
            &verifier,
            &redirect,
            nonce.as_deref(),
            &opts,
            &meta(),
        )
        .await?;
    Ok(login_response(&s, outcome))
}

async fn identities(State(s): State<AppState>, Auth(p): Auth) -> ApiResult {
    let items = s.svc.sso_identities(p.account_id).await?;
    Ok(ok(Code::OK, json!({ "items": items })))
}

async fn unlink(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult {
    let id = path_id(&id)?;
    s.svc.sso_unlink(p.account_id, id, &meta()).await?;
    Ok(ok(Code::OK, json!({})))
}

async fn admin_list(
    State(s): State<AppState>,
    _: RequirePermission<perm::SettingsWrite>,
) -> ApiResult {
    let items = s.svc.sso_admin_list().await?;
    Ok(ok(Code::OK, json!({ "items": items })))
}

async fn admin_create(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::SettingsWrite>,
    body: JsonBody,
) -> ApiResult {
    let created = s
        .svc
        .sso_admin_create(p.account_id, Value::Object(body.0), &meta())
        .await?;
    Ok(ok_status(StatusCode::CREATED, Code::OK, created))
}

async fn admin_get(
    State(s): State<AppState>,
    _: RequirePermission<perm::SettingsWrite>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(ok(Code::OK, s.svc.sso_admin_get(&id).await?))
}

async fn admin_update(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::SettingsWrite>,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult {
    let changed = s
        .svc
        .sso_admin_update(p.account_id, &id, Value::Object(body.0), &meta())
        .await?;
    Ok(ok(Code::OK, changed))
}

async fn admin_delete(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::SettingsWrite>,
    Path(id): Path<String>,
) -> ApiResult {
    s.svc.sso_admin_delete(p.account_id, &id, &meta()).await?;
    Ok(ok(Code::OK, json!({})))
}
