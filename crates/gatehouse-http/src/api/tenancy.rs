//! Tenancy routes: branch selection, the current context, self-registration, and the
//! workspace / branch / member / role administration. Instance-wide routes need the
//! permission instance-wide; workspace routes need it in that workspace (deny by default).

use super::{issued_response, list, meta, opt_id, page_of, query_params};
use crate::AppState;
use crate::auth_extract::{Auth, RequireBranch, RequirePermission, check_csrf, perm};
use crate::body::{Fields, JsonBody, path_id};
use crate::envelope::{ApiError, ApiResult, ok, ok_status};
use crate::openapi::{RouteDoc, Routes, Security};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use gatehouse_core::Principal;
use gatehouse_core::admin::CreateUser;
use gatehouse_core::tenancy::{AddMember, Input, NewBranch, NewRole, RoleChange};
use gatehouse_domain::model::{Page, Status};
use gatehouse_domain::{AppError, Code, FieldError, Id};
use serde_json::json;

const AUTH: &str = "auth";
const ADMIN: &str = "admin";

/// The tenancy routes.
pub fn routes() -> Routes {
    use Code as C;
    Routes::new()
        .at(
            RouteDoc {
                security: Security::User,
                body: &[("branchId", "string", true)],
                codes: &[
                    C::OK,
                    C::WORKSPACE_DISABLED,
                    C::MEMBER_DISABLED,
                    C::PERMISSION_REQUIRED,
                ],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/select-branch",
                    AUTH,
                    "Choose or switch the branch: branch-scoped tokens for this session",
                )
            },
            post(select_branch),
        )
        .at(
            RouteDoc {
                security: Security::User,
                codes: &[
                    C::OK,
                    C::BRANCH_CONTEXT_REQUIRED,
                    C::WORKSPACE_DISABLED,
                    C::MEMBER_DISABLED,
                    C::PERMISSION_REQUIRED,
                ],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/auth/context",
                    AUTH,
                    "The current branch context (needs a branch-scoped token)",
                )
            },
            get(context),
        )
        .at(
            RouteDoc {
                security: Security::Csrf,
                body: &[
                    ("email", "string", true),
                    ("password", "string", true),
                    ("username", "string", false),
                    ("displayName", "string", false),
                ],
                codes: &[
                    C::OK,
                    C::REGISTRATION_DISABLED,
                    C::PASSWORD_POLICY_VIOLATION,
                ],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/auth/register",
                    AUTH,
                    "Register an account (when allowRegistration is on); 202 whether or not the email is taken",
                )
            },
            post(register),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                body: &[("slug", "string", true), ("name", "string", true)],
                codes: &[C::OK, C::CONFLICT],
                created: true,
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/workspaces",
                    ADMIN,
                    "Create a workspace (workspaces:write)",
                )
            },
            post(create_workspace),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                query: &["page", "pageSize"],
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/admin/workspaces",
                    ADMIN,
                    "List workspaces (workspaces:read)",
                )
            },
            get(list_workspaces),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/workspaces/{id}/disable",
                    ADMIN,
                    "Disable a workspace (workspaces:write)",
                )
            },
            post(disable_workspace),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/workspaces/{id}/enable",
                    ADMIN,
                    "Enable a workspace (workspaces:write)",
                )
            },
            post(enable_workspace),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                body: &[("code", "string", true), ("name", "string", true)],
                codes: &[C::OK, C::CONFLICT, C::NOT_FOUND],
                created: true,
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/workspaces/{id}/branches",
                    ADMIN,
                    "Create a branch (branches:write in the workspace)",
                )
            },
            post(create_branch),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                query: &["page", "pageSize"],
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/admin/workspaces/{id}/branches",
                    ADMIN,
                    "List a workspace's branches (branches:read in the workspace)",
                )
            },
            get(list_branches),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/branches/{id}/disable",
                    ADMIN,
                    "Disable a branch (branches:write in its workspace)",
                )
            },
            post(disable_branch),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/branches/{id}/enable",
                    ADMIN,
                    "Enable a branch (branches:write in its workspace)",
                )
            },
            post(enable_branch),
        )
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
                    "/api/v1/admin/workspaces/{id}/members",
                    ADMIN,
                    "Add a member directly (members:write instance-wide; a workspace's own admins get PERMISSION_REQUIRED with accountId: invitation_required and invite instead)",
                )
            },
            post(create_member),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                query: &["page", "pageSize"],
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/admin/workspaces/{id}/members",
                    ADMIN,
                    "List a workspace's members (members:read in the workspace)",
                )
            },
            get(list_members),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/members/{id}/disable",
                    ADMIN,
                    "Disable a membership (members:write in its workspace)",
                )
            },
            post(disable_member),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/members/{id}/enable",
                    ADMIN,
                    "Enable a membership (members:write in its workspace)",
                )
            },
            post(enable_member),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                body: &[("roles", "array", true), ("branchId", "string", false)],
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/members/{id}/roles",
                    ADMIN,
                    "Grant roles workspace-wide or in one branch (members:write in its workspace)",
                )
            },
            post(grant_roles),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                query: &["branchId"],
                codes: &[C::OK, C::NOT_FOUND],
                ..RouteDoc::new(
                    "DELETE",
                    "/api/v1/admin/members/{id}/roles/{code}",
                    ADMIN,
                    "Take a role back (members:write in its workspace)",
                )
            },
            delete(revoke_role),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                body: &[
                    ("code", "string", true),
                    ("permissions", "array", true),
                    ("workspaceId", "string", false),
                ],
                codes: &[C::OK, C::CONFLICT],
                created: true,
                ..RouteDoc::new(
                    "POST",
                    "/api/v1/admin/roles",
                    ADMIN,
                    "Create a role: global, or a workspace's own (roles:write there)",
                )
            },
            post(create_role),
        )
        .at(
            RouteDoc {
                security: Security::Admin,
                query: &["workspaceId", "page", "pageSize"],
                codes: &[C::OK],
                ..RouteDoc::new(
                    "GET",
                    "/api/v1/admin/roles",
                    ADMIN,
                    "List roles: global ones plus a workspace's (roles:read there)",
                )
            },
            get(list_roles),
        )
}

async fn select_branch(State(s): State<AppState>, Auth(p): Auth, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let raw = f.req_str("branchId", 64);
    f.finish()?;
    let branch: Id = raw
        .parse()
        .map_err(|_| AppError::validation(vec![FieldError::new("branchId", "invalid")]))?;
    let issued = s.svc.select_branch(&p, branch, &meta()).await?;
    Ok(issued_response(&s, Code::OK, issued))
}

async fn context(RequireBranch(c): RequireBranch) -> ApiResult {
    Ok(ok(
        Code::OK,
        json!({
            "workspace": c.workspace,
            "member": c.member,
            "branch": c.branch,
            "branches": c.branches,
            "roles": c.roles,
            "permissions": c.permissions,
        }),
    ))
}

async fn register(State(s): State<AppState>, headers: HeaderMap, body: JsonBody) -> ApiResult {
    check_csrf(&s, &headers)?;
    let mut f = Fields::new(body);
    let input = CreateUser {
        email: f.req_str("email", 320),
        password: Some(f.req_secret("password", 4096)),
        username: f.opt_str("username", 64),
        display_name: f.opt_str("displayName", 200),
        ..CreateUser::default()
    };
    f.finish()?;
    s.svc.register(input, &meta()).await?;
    // The same answer whether or not the address was free, so it reveals no accounts.
    Ok(ok_status(
        StatusCode::ACCEPTED,
        Code::OK,
        json!({ "status": "pending", "next": "check_email" }),
    ))
}

async fn create_workspace(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::WorkspacesWrite>,
    body: JsonBody,
) -> ApiResult {
    let mut f = Fields::new(body);
    let slug = f.req_str("slug", 64);
    let name = f.req_str("name", 200);
    f.finish()?;
    let w = s
        .svc
        .create_workspace(Some(p.account_id), &slug, &name, &meta())
        .await?;
    Ok(ok_status(StatusCode::CREATED, Code::OK, w))
}

async fn list_workspaces(
    State(s): State<AppState>,
    _: RequirePermission<perm::WorkspacesRead>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = query_params(raw)?;
    let page = page_of(&q)?;
    let found = s.svc.list_workspaces(page).await?;
    Ok(list(found.items, found.total, page))
}

async fn workspace_status(s: &AppState, p: &Principal, id: &str, status: Status) -> ApiResult {
    let w = s
        .svc
        .set_workspace_status(Some(p.account_id), path_id(id)?, status, &meta())
        .await?;
    Ok(ok(Code::OK, w))
}

async fn disable_workspace(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::WorkspacesWrite>,
    Path(id): Path<String>,
) -> ApiResult {
    workspace_status(&s, &p, &id, Status::Disabled).await
}

async fn enable_workspace(
    State(s): State<AppState>,
    RequirePermission(p, _): RequirePermission<perm::WorkspacesWrite>,
    Path(id): Path<String>,
) -> ApiResult {
    workspace_status(&s, &p, &id, Status::Active).await
}

/// The request's input for a use case that judges it only after authorizing the caller.
pub(super) fn input<T>(parsed: Result<T, ApiError>) -> Input<T> {
    parsed.map_err(|e| e.0)
}

pub(super) fn page_input(raw: Option<String>) -> Input<Page> {
    input(query_params(raw).and_then(|q| page_of(&q)))
}

async fn create_branch(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult {
    let ws = path_id(&id)?;
    let b = s
        .svc
        .create_branch_as(&p, ws, input(branch_body(body)), &meta())
        .await?;
    Ok(ok_status(StatusCode::CREATED, Code::OK, b))
}

fn branch_body(body: JsonBody) -> Result<NewBranch, ApiError> {
    let mut f = Fields::new(body);
    let code = f.req_str("code", 64);
    let name = f.req_str("name", 200);
    f.finish()?;
    Ok(NewBranch { code, name })
}

async fn list_branches(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let ws = path_id(&id)?;
    let (found, page) = s.svc.list_branches_as(&p, ws, page_input(raw)).await?;
    Ok(list(found.items, found.total, page))
}

async fn branch_status(s: &AppState, p: &Principal, id: &str, status: Status) -> ApiResult {
    let b = s
        .svc
        .set_branch_status_as(p, path_id(id)?, status, &meta())
        .await?;
    Ok(ok(Code::OK, b))
}

async fn disable_branch(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult {
    branch_status(&s, &p, &id, Status::Disabled).await
}

async fn enable_branch(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult {
    branch_status(&s, &p, &id, Status::Active).await
}

fn ids(raw: Option<Vec<String>>, field: &'static str) -> Result<Vec<Id>, ApiError> {
    raw.unwrap_or_default()
        .iter()
        .map(|v| {
            v.parse::<Id>()
                .map_err(|_| AppError::validation(vec![FieldError::new(field, "invalid")]).into())
        })
        .collect()
}

async fn create_member(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult {
    let ws = path_id(&id)?;
    let m = s
        .svc
        .add_member_as(&p, ws, input(member_body(body)), &meta())
        .await?;
    Ok(ok_status(StatusCode::CREATED, Code::OK, m))
}

pub(super) fn member_body(body: JsonBody) -> Result<AddMember, ApiError> {
    let mut f = Fields::new(body);
    let account = f.req_str("accountId", 64);
    let branches = f.opt_str_list("branchIds", 100, 64);
    let roles = f.opt_str_list("roles", 16, 64).unwrap_or_default();
    f.finish()?;
    let account_id = account
        .parse::<Id>()
        .map_err(|_| AppError::validation(vec![FieldError::new("accountId", "invalid")]))?;
    Ok(AddMember {
        account_id,
        branch_ids: ids(branches, "branchIds")?,
        roles,
    })
}

async fn list_members(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let ws = path_id(&id)?;
    let (found, page) = s.svc.list_members_as(&p, ws, page_input(raw)).await?;
    Ok(list(found.items, found.total, page))
}

async fn member_status(s: &AppState, p: &Principal, id: &str, status: Status) -> ApiResult {
    let m = s
        .svc
        .set_member_status_as(p, path_id(id)?, status, &meta())
        .await?;
    Ok(ok(Code::OK, m))
}

async fn disable_member(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult {
    member_status(&s, &p, &id, Status::Disabled).await
}

async fn enable_member(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult {
    member_status(&s, &p, &id, Status::Active).await
}

async fn grant_roles(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult {
    let id = path_id(&id)?;
    let m = s
        .svc
        .change_member_roles_as(&p, id, input(grant_body(body)), true, &meta())
        .await?;
    Ok(ok(Code::OK, m))
}

fn grant_body(body: JsonBody) -> Result<RoleChange, ApiError> {
    let mut f = Fields::new(body);
    let roles = f.opt_str_list("roles", 16, 64);
    let branch = f.opt_str("branchId", 64);
    if roles.as_ref().is_none_or(Vec::is_empty) {
        return Err(AppError::validation(vec![FieldError::new("roles", "required")]).into());
    }
    f.finish()?;
    let branch_id = branch
        .map(|b| {
            b.parse::<Id>()
                .map_err(|_| AppError::validation(vec![FieldError::new("branchId", "invalid")]))
        })
        .transpose()?;
    Ok(RoleChange {
        roles: roles.unwrap_or_default(),
        branch_id,
    })
}

async fn revoke_role(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((id, code)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let id = path_id(&id)?;
    let change = query_params(raw).and_then(|q| {
        Ok(RoleChange {
            roles: vec![code],
            branch_id: opt_id(&q, "branchId")?,
        })
    });
    let m = s
        .svc
        .change_member_roles_as(&p, id, input(change), false, &meta())
        .await?;
    Ok(ok(Code::OK, m))
}

async fn create_role(State(s): State<AppState>, Auth(p): Auth, body: JsonBody) -> ApiResult {
    let mut f = Fields::new(body);
    let code = f.req_str("code", 64);
    let permissions = f.opt_str_list("permissions", 64, 64);
    let workspace = f.opt_str("workspaceId", 64);
    if permissions.is_none() {
        return Err(AppError::validation(vec![FieldError::new("permissions", "required")]).into());
    }
    f.finish()?;
    let workspace_id = workspace
        .map(|w| {
            w.parse::<Id>()
                .map_err(|_| AppError::validation(vec![FieldError::new("workspaceId", "invalid")]))
        })
        .transpose()?;
    let input = NewRole {
        code,
        permissions: permissions.unwrap_or_default(),
        workspace_id,
    };
    let role = s.svc.create_role_as(&p, input, &meta()).await?;
    Ok(ok_status(StatusCode::CREATED, Code::OK, role))
}

async fn list_roles(
    State(s): State<AppState>,
    Auth(p): Auth,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = query_params(raw)?;
    let page = page_of(&q)?;
    let workspace = opt_id(&q, "workspaceId")?;
    let found = s.svc.list_roles_as(&p, workspace, page).await?;
    Ok(list(found.items, found.total, page))
}
