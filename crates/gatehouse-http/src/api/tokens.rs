//! Programmatic access: personal access tokens (create, shown once; list, never the text;
//! revoke), service accounts, and their API keys (create and rotate, the secret shown
//! once; list; disable, enable, delete).

use super::{list as paged, meta, opt_id, page_of, query_params};
use crate::AppState;
use crate::auth_extract::Auth;
use crate::body::{Fields, JsonBody, path_id};
use crate::envelope::{ApiError, ApiResult, ok, ok_status};
use crate::openapi::{RouteDoc, Routes, Security};
use crate::pages::form::{Form, FormError};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{delete, get, post};
use gatehouse_core::apikey::{NewApiKey, NewServiceAccount};
use gatehouse_core::pat::NewPat;
use gatehouse_core::service::TokenGrant;
use gatehouse_domain::model::{AccountStatus, ApiKey, Status};
use gatehouse_domain::{AppError, Code, FieldError, Id};
use serde_json::{Value, json};

const AUTH: &str = "auth";
const ADMIN: &str = "admin";

/// The personal access token routes.
pub fn routes() -> Routes {
    use Code as C;
    Routes::new()
        .at(
            RouteDoc {
                security: Security::User,
                body: &[
                    ("name", "string", true),
                    ("scopes", "array", false),
                    ("expiresInDays", "integer", false),
                    ("workspaceId", "string", false),
                    ("branchId", "string", false),
                ],
                codes: &[
                    C::OK,
                    C::WORKSPACE_DISABLED,
                    C::MEMBER_DISABLED,
                    C::PERMISSION_REQUIRED,
                ],
                created: true,
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/tokens",
                    AUTH,
                    "Create a personal access token (its text is shown once)",
                )
            },
            post(create),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/auth/tokens",
                    AUTH,
                    "This account's personal access tokens (never their text)",
                )
            },
            get(list),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "DELETE",
                    "/api/v1/auth/tokens/{id}",
                    AUTH,
                    "Revoke a personal access token",
                )
            },
            delete(revoke),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                body: &[
                    ("username", "string", true),
                    ("displayName", "string", false),
                    ("roles", "array", false),
                ],
                codes: &[C::OK, C::CONFLICT],
                created: true,
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/service-accounts",
                    ADMIN,
                    "Create a service account (it cannot sign in; it uses API keys)",
                )
            },
            post(create_service_account),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                query: &["page", "pageSize"],
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/admin/service-accounts",
                    ADMIN,
                    "List service accounts",
                )
            },
            get(list_service_accounts),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "DELETE",
                    "/api/v1/admin/service-accounts/{id}",
                    ADMIN,
                    "Delete a service account and its API keys",
                )
            },
            delete(delete_service_account),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND, C::CONFLICT],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/service-accounts/{id}/disable",
                    ADMIN,
                    "Disable a service account: its API keys stop working",
                )
            },
            post(disable_service_account),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/service-accounts/{id}/enable",
                    ADMIN,
                    "Enable a service account",
                )
            },
            post(enable_service_account),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                body: &[
                    ("name", "string", true),
                    ("serviceAccountId", "string", true),
                    ("scopes", "array", false),
                    ("expiresInDays", "integer", false),
                ],
                codes: &[C::OK],
                created: true,
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/api-keys",
                    ADMIN,
                    "Create an API key (the secret key is shown once)",
                )
            },
            post(create_key),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                query: &["serviceAccountId", "page", "pageSize"],
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/admin/api-keys",
                    ADMIN,
                    "List API keys (never their secrets)",
                )
            },
            get(list_keys),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/api-keys/{id}/disable",
                    ADMIN,
                    "Disable an API key",
                )
            },
            post(disable_key),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/api-keys/{id}/enable",
                    ADMIN,
                    "Enable an API key",
                )
            },
            post(enable_key),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/api-keys/{id}/rotate",
                    ADMIN,
                    "Give an API key a new secret key; the old one is refused at once",
                )
            },
            post(rotate_key),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "DELETE",
                    "/api/v1/admin/api-keys/{id}",
                    ADMIN,
                    "Delete an API key",
                )
            },
            delete(delete_key),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                // A form body (`token`, optional `token_type_hint`), as RFC 7662 has it.
                codes: &[
                    C::VALIDATION_ERROR,
                    C::UNSUPPORTED_MEDIA_TYPE,
                    C::PAYLOAD_TOO_LARGE,
                ],
                plain: Some("application/json"),
                oauth: true,
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/introspect",
                    AUTH,
                    "RFC 7662 introspection of an access token or personal access token \
                     (form field `token`; API key with tokens:introspect as HTTP Basic)",
                )
            },
            post(introspect),
        )
}

/// How `/auth/me` names the credential a request was made with.
#[derive(serde::Serialize)]
pub(super) struct CredentialView<'a> {
    kind: &'static str,
    id: Id,
    name: &'a str,
    scopes: Option<gatehouse_core::authz::PermissionSet>,
}

impl<'a> CredentialView<'a> {
    pub(super) fn of(t: &'a TokenGrant) -> Self {
        Self {
            kind: t.kind.as_str(),
            id: t.id,
            name: &t.name,
            scopes: t.scopes,
        }
    }
}

fn opt_uuid(raw: Option<String>, field: &'static str) -> Result<Option<Id>, ApiError> {
    raw.map(|v| {
        v.parse::<Id>()
            .map_err(|_| AppError::validation(vec![FieldError::new(field, "invalid")]).into())
    })
    .transpose()
}

async fn create(State(s): State<AppState>, Auth(p): Auth, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let name = f.req_str("name", 100);
    let scopes = f.opt_str_list("scopes", 64, 64);
    let expires_in_days = f.opt_u64("expiresInDays", 36_500);
    let workspace = f.opt_str("workspaceId", 64);
    let branch = f.opt_str("branchId", 64);
    f.finish()?;
    let input = NewPat {
        name,
        scopes,
        expires_in_days,
        workspace_id: opt_uuid(workspace, "workspaceId")?,
        branch_id: opt_uuid(branch, "branchId")?,
    };
    let (pat, text) = s.svc.create_pat(&p, input, &meta()).await?;
    let mut data = serde_json::to_value(&pat).unwrap_or(Value::Null);
    data["token"] = json!(text.expose());
    Ok(ok_status(StatusCode::CREATED, Code::OK, data))
}

async fn list(State(s): State<AppState>, Auth(p): Auth) -> ApiResult {
    let items = s.svc.list_pats(&p).await?;
    let n = items.len();
    Ok(ok(
        Code::OK,
        json!({ "items": items, "page": 1, "pageSize": n, "total": n }),
    ))
}

async fn revoke(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult {
    s.svc.revoke_pat(&p, path_id(&id)?, &meta()).await?;
    Ok(ok(Code::OK, Value::Null))
}

async fn create_service_account(
    State(s): State<AppState>,
    Auth(p): Auth,
    body: JsonBody,
) -> ApiResult {
    let mut f = Fields::new(body);
    let input = NewServiceAccount {
        username: f.req_str("username", 64),
        display_name: f.opt_str("displayName", 200),
        roles: f.opt_str_list("roles", 16, 64).unwrap_or_default(),
    };
    f.finish()?;
    let account = s.svc.create_service_account(&p, input, &meta()).await?;
    Ok(ok_status(StatusCode::CREATED, Code::OK, account))
}

async fn list_service_accounts(
    State(s): State<AppState>,
    Auth(p): Auth,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let page = page_of(&query_params(raw)?)?;
    let found = s.svc.list_service_accounts(&p, page).await?;
    Ok(paged(found.items, found.total, page))
}

async fn delete_service_account(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult {
    s.svc
        .delete_service_account(&p, path_id(&id)?, &meta())
        .await?;
    Ok(ok(Code::OK, Value::Null))
}

async fn service_account_status(
    s: &AppState,
    p: &gatehouse_core::Principal,
    id: &str,
    status: AccountStatus,
) -> ApiResult {
    let a = s
        .svc
        .set_service_account_status(p, path_id(id)?, status, &meta())
        .await?;
    Ok(ok(Code::OK, a))
}

async fn disable_service_account(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult {
    service_account_status(&s, &p, &id, AccountStatus::Disabled).await
}

async fn enable_service_account(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult {
    service_account_status(&s, &p, &id, AccountStatus::Active).await
}

/// A key with its secret key, as create and rotate answer (the only time it is shown).
fn key_with_secret(key: &ApiKey, secret: &gatehouse_domain::Secret) -> Value {
    let mut data = serde_json::to_value(key).unwrap_or(Value::Null);
    data["secretKey"] = json!(secret.expose());
    data
}

async fn create_key(State(s): State<AppState>, Auth(p): Auth, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let name = f.req_str("name", 100);
    let account = f.req_str("serviceAccountId", 64);
    let scopes = f.opt_str_list("scopes", 64, 64);
    let expires_in_days = f.opt_u64("expiresInDays", 36_500);
    f.finish()?;
    let service_account_id = account.parse::<Id>().map_err(|_| {
        ApiError::from(AppError::validation(vec![FieldError::new(
            "serviceAccountId",
            "invalid",
        )]))
    })?;
    let input = NewApiKey {
        name,
        service_account_id,
        scopes,
        expires_in_days,
    };
    let (key, secret) = s.svc.create_api_key(&p, input, &meta()).await?;
    Ok(ok_status(
        StatusCode::CREATED,
        Code::OK,
        key_with_secret(&key, &secret),
    ))
}

async fn list_keys(State(s): State<AppState>, Auth(p): Auth, RawQuery(raw): RawQuery) -> ApiResult {
    let q = query_params(raw)?;
    let page = page_of(&q)?;
    let found = s
        .svc
        .list_api_keys(&p, opt_id(&q, "serviceAccountId")?, page)
        .await?;
    Ok(paged(found.items, found.total, page))
}

async fn key_status(
    s: &AppState,
    p: &gatehouse_core::Principal,
    id: &str,
    status: Status,
) -> ApiResult {
    let key = s
        .svc
        .set_api_key_status(p, path_id(id)?, status, &meta())
        .await?;
    Ok(ok(Code::OK, key))
}

async fn disable_key(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult {
    key_status(&s, &p, &id, Status::Disabled).await
}

async fn enable_key(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult {
    key_status(&s, &p, &id, Status::Active).await
}

async fn rotate_key(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult {
    let (key, secret) = s.svc.rotate_api_key(&p, path_id(&id)?, &meta()).await?;
    Ok(ok(Code::OK, key_with_secret(&key, &secret)))
}

async fn delete_key(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult {
    s.svc.delete_api_key(&p, path_id(&id)?, &meta()).await?;
    Ok(ok(Code::OK, Value::Null))
}

/// RFC 7662 introspection. Client errors are OAuth error objects (RFC 6749 §5.2,
/// RFC 6750 §3.1), never envelopes: a caller that is not an API key, or a bad key, is
/// `invalid_client` (401, with `WWW-Authenticate: Basic`); a key without
/// `tokens:introspect` is `insufficient_scope` (403); an unreadable body is
/// `invalid_request` (400). Server errors stay envelopes, as on every route.
async fn introspect(
    State(s): State<AppState>,
    auth: Result<Auth, ApiError>,
    form: Result<Form, FormError>,
) -> Response {
    let answer = async {
        let Auth(p) = auth?;
        let form = form.map_err(|FormError(status)| {
            ApiError::from(match status {
                StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::new(Code::UNSUPPORTED_MEDIA_TYPE),
                StatusCode::PAYLOAD_TOO_LARGE => AppError::new(Code::PAYLOAD_TOO_LARGE),
                _ => AppError::validation(vec![FieldError::new("token", "invalid")]),
            })
        })?;
        Ok::<_, ApiError>(s.svc.introspect(&p, form.get("token"), &meta()).await?)
    };
    let mut res = match answer.await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e) => oauth_error(e),
    };
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    res
}

/// An error of an OAuth endpoint in OAuth's own format; server errors stay envelopes.
fn oauth_error(e: ApiError) -> Response {
    let (status, error) = match e.0.code {
        Code::PERMISSION_REQUIRED | Code::SESSION_REQUIRED => {
            (StatusCode::FORBIDDEN, "insufficient_scope")
        }
        c if c.status() == 401 || c == Code::ACCOUNT_DISABLED => {
            (StatusCode::UNAUTHORIZED, "invalid_client")
        }
        c if (400..500).contains(&c.status()) && c != Code::RATE_LIMIT_EXCEEDED => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        _ => return e.into_response(),
    };
    let locale = crate::context::current().locale;
    let body = json!({ "error": error, "error_description": e.0.code.message(locale) });
    let mut res = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Basic realm=\"gatehouse\""),
        );
    }
    res
}
