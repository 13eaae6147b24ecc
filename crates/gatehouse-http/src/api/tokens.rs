//! Personal access tokens: create (the text is shown once), list (never the text), revoke.

use super::meta;
use crate::AppState;
use crate::auth_extract::Auth;
use crate::body::{Fields, JsonBody, path_id};
use crate::envelope::{ApiError, ApiResult, ok, ok_status};
use crate::openapi::{RouteDoc, Routes, Security};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use gatehouse_core::pat::NewPat;
use gatehouse_core::service::TokenGrant;
use gatehouse_domain::{AppError, Code, FieldError, Id};
use serde_json::{Value, json};

const AUTH: &str = "auth";

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
