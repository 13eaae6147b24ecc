//! Invitations: a workspace's admins offer an existing account a membership
//! (`members:write` in the workspace); the account accepts or declines it. Adding a member
//! directly is for instance admins (`POST /admin/workspaces/{id}/members`).

use super::tenancy::{input, member_body, page_input};
use super::{list, meta};
use crate::AppState;
use crate::auth_extract::Auth;
use crate::body::{JsonBody, path_id};
use crate::envelope::{ApiResult, ok, ok_status};
use crate::openapi::{RouteDoc, Routes, Security};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use gatehouse_domain::Code;
use serde_json::json;

/// The invitation routes.
pub fn routes() -> Routes {
    use Code as C;
    Routes::new()
        .at(
            RouteDoc {
                security: Security::Admin,
                body: &[
                    ("accountId", "string", true),
                    ("branchIds", "array", false),
                    ("roles", "array", false),
                ],
                codes: &[C::OK, C::CONFLICT, C::NOT_FOUND],
                created: true,
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/workspaces/{id}/invitations",
                    "admin",
                    "Invite an existing account to become a member (members:write in the workspace; only roles whose permissions the caller may hand on)",
                )
            },
            post(invite),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                query: &["page", "pageSize"],
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/admin/workspaces/{id}/invitations",
                    "admin",
                    "A workspace's invitations, newest first (members:read in the workspace)",
                )
            },
            get(list_invitations),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::CONFLICT, C::NOT_FOUND],
                ..RouteDoc::new(
                    "DELETE",
                    "/api/v1/admin/invitations/{id}",
                    "admin",
                    "Withdraw a pending invitation (members:write in its workspace)",
                )
            },
            delete(revoke),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/auth/invitations",
                    "auth",
                    "This account's pending invitations, each with its workspace",
                )
            },
            get(mine),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::OK, C::CONFLICT, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/invitations/{id}/accept",
                    "auth",
                    "Accept an invitation: the membership is created (sign in again, or select a branch, to act in it)",
                )
            },
            post(accept),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[C::OK, C::CONFLICT, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/invitations/{id}/decline",
                    "auth",
                    "Decline an invitation",
                )
            },
            post(decline),
        )
}

async fn invite(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult {
    let ws = path_id(&id)?;
    let i = s
        .svc
        .invite_member_as(&p, ws, input(member_body(body)), &meta())
        .await?;
    Ok(ok_status(StatusCode::CREATED, Code::OK, i))
}

async fn list_invitations(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let ws = path_id(&id)?;
    let (found, page) = s.svc.list_invitations_as(&p, ws, page_input(raw)).await?;
    Ok(list(found.items, found.total, page))
}

async fn revoke(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult {
    let i = s
        .svc
        .revoke_invitation_as(&p, path_id(&id)?, &meta())
        .await?;
    Ok(ok(Code::OK, i))
}

async fn mine(State(s): State<AppState>, Auth(p): Auth) -> ApiResult {
    let found = s.svc.my_invitations(&p).await?;
    let items: Vec<_> = found
        .into_iter()
        .map(|(i, w)| {
            json!({
                "id": i.id,
                "workspace": { "id": w.id, "slug": w.slug, "name": w.name },
                "branchIds": i.branch_ids,
                "roles": i.roles,
                "status": i.status,
                "createdAt": i.created_at,
                "expiresAt": i.expires_at,
            })
        })
        .collect();
    Ok(ok(Code::OK, json!({ "items": items })))
}

async fn accept(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult {
    let (i, m) = s.svc.accept_invitation(&p, path_id(&id)?, &meta()).await?;
    Ok(ok(Code::OK, json!({ "invitation": i, "member": m })))
}

async fn decline(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult {
    let i = s.svc.decline_invitation(&p, path_id(&id)?, &meta()).await?;
    Ok(ok(Code::OK, i))
}
