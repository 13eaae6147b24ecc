//! Tenancy: workspaces, branches, memberships and roles; the branch context a sign-in ends
//! in; and the admin use cases over them, each authorized for the calling principal
//! (see [`crate::authz`]).

use crate::audit::{AuditExt, event};
use crate::authz::{Grant, Permission, PermissionSet, Scope};
use crate::service::{Principal, RequestMeta, Service};
use gatehouse_domain::ids::new_id;
use gatehouse_domain::model::{
    Account, Branch, Member, Membership, NewMember, Page, Paged, Role, Status, Workspace,
};
use gatehouse_domain::{AppError, Code, FieldError, Id};

/// The workspace, membership and branch a branch-scoped session acts in.
#[derive(Clone, Debug)]
pub struct BranchContext {
    pub workspace: Workspace,
    pub member: Member,
    pub branch: Branch,
    /// Every active branch the member may switch to in this workspace.
    pub branches: Vec<Branch>,
    /// Codes of the roles held here (workspace-wide plus this branch's).
    pub roles: Vec<String>,
    /// The same roles as access tokens carry them: instance-wide role codes as they are,
    /// workspace-defined ones as `ws:<code>`, so no workspace role can pass for an
    /// instance role with a reader that looks at names alone.
    pub token_roles: Vec<String>,
    pub permissions: PermissionSet,
}

/// The context a sign-in ends in.
#[derive(Clone, Debug)]
pub enum LoginContext {
    /// No membership: an account-scoped token (what single-tenant installs get).
    Account,
    /// Exactly one usable branch: branch-scoped tokens.
    Branch(Box<BranchContext>),
    /// Several usable branches: an account-scoped token, then `select-branch`.
    Select(Vec<Branch>),
}

/// A membership to create (admin API and CLI).
#[derive(Clone, Debug, Default)]
pub struct AddMember {
    pub account_id: Id,
    pub branch_ids: Vec<Id>,
    pub roles: Vec<String>,
}

/// A branch to create (admin API).
#[derive(Clone, Debug, Default)]
pub struct NewBranch {
    pub code: String,
    pub name: String,
}

/// Roles to grant to or take back from a member, workspace-wide or in one branch.
#[derive(Clone, Debug, Default)]
pub struct RoleChange {
    pub roles: Vec<String>,
    pub branch_id: Option<Id>,
}

/// A role to create: global (`workspace_id` `None`) or a workspace's own.
#[derive(Clone, Debug, Default)]
pub struct NewRole {
    pub code: String,
    pub permissions: Vec<String>,
    pub workspace_id: Option<Id>,
}

/// Request input as a handler read it, or why it is unusable. The use cases look at it
/// only once the caller is authorized, so an outsider learns no more than
/// `PERMISSION_REQUIRED` from a malformed request.
pub type Input<T> = Result<T, AppError>;

/// What `GET /auth/me` shows: the account, its branch context when branch-scoped, the
/// roles held (global plus the branch's) and the effective permissions.
#[derive(Clone, Debug)]
pub struct MeContext {
    pub account: Account,
    pub context: Option<BranchContext>,
    pub roles: Vec<String>,
    pub permissions: PermissionSet,
}

fn slug_ok(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !s.starts_with('-')
}

fn code_ok(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b':')
}

fn name_error(field: &'static str, name: &str, errors: &mut Vec<FieldError>) {
    if name.trim().is_empty() {
        errors.push(FieldError::new(field, "required"));
    } else if name.chars().count() > 200 {
        errors.push(FieldError::new(field, "too_long"));
    }
}

impl Service {
    /// Decides the context a sign-in ends in. `workspace` (a slug) narrows an account in
    /// several workspaces to one. Disabled workspaces and memberships are skipped; when
    /// nothing usable is left the sign-in is account-scoped, unless it named a workspace:
    /// then the most telling reason is the error (global admins still get an
    /// account-scoped token).
    pub async fn resolve_login_context(
        &self,
        account: &Account,
        workspace: Option<&str>,
    ) -> Result<LoginContext, AppError> {
        let mut rows = self.store.memberships(account.id).await?;
        if let Some(slug) = workspace {
            rows.retain(|m| m.workspace.slug == slug);
            if rows.is_empty() {
                return Err(AppError {
                    fields: vec![FieldError::new("workspace", "invalid")],
                    ..AppError::new(Code::PERMISSION_REQUIRED)
                });
            }
        }
        if rows.is_empty() {
            return Ok(LoginContext::Account);
        }
        let usable: Vec<&Membership> = rows
            .iter()
            .filter(|m| m.workspace.status == Status::Active && m.member_status == Status::Active)
            .collect();
        let branches: Vec<Branch> = usable
            .iter()
            .filter_map(|m| m.branch.as_ref())
            .filter(|(b, s)| b.status == Status::Active && *s == Status::Active)
            .map(|(b, _)| b.clone())
            .collect();
        match branches.as_slice() {
            // A membership never blocks the account's other sign-ins: with nothing usable
            // the account signs in account-scoped, as with no membership at all. Only a
            // sign-in that names the workspace is told why it cannot go there.
            [] => {
                if workspace.is_none() || account.has_role("admin") || !usable.is_empty() {
                    Ok(LoginContext::Account)
                } else if rows.iter().all(|m| m.workspace.status != Status::Active) {
                    Err(Code::WORKSPACE_DISABLED.into())
                } else {
                    Err(Code::MEMBER_DISABLED.into())
                }
            }
            [one] => Ok(LoginContext::Branch(Box::new(
                self.branch_context(account.id, one.id).await?,
            ))),
            _ => Ok(LoginContext::Select(branches)),
        }
    }

    /// The context for acting in `branch_id`, re-read from the store: the workspace must be
    /// active (`WORKSPACE_DISABLED`), the membership active (`MEMBER_DISABLED`), and the
    /// branch one of the member's active branches (`PERMISSION_REQUIRED`).
    pub async fn branch_context(
        &self,
        account_id: Id,
        branch_id: Id,
    ) -> Result<BranchContext, AppError> {
        let denied = || permission_required_branch();
        let branch = self
            .store
            .branch_by_id(branch_id)
            .await?
            .ok_or_else(denied)?;
        let workspace = self
            .store
            .workspace_by_id(branch.workspace_id)
            .await?
            .ok_or_else(denied)?;
        let member = self
            .store
            .member_of(account_id, workspace.id)
            .await?
            .ok_or_else(denied)?;
        if workspace.status != Status::Active {
            return Err(Code::WORKSPACE_DISABLED.into());
        }
        if member.status != Status::Active {
            return Err(Code::MEMBER_DISABLED.into());
        }
        if branch.status != Status::Active || !member.branch_ids.contains(&branch.id) {
            return Err(denied());
        }
        let rows = self.store.memberships(account_id).await?;
        let branches = rows
            .into_iter()
            .filter(|m| m.member_id == member.id)
            .filter_map(|m| m.branch)
            .filter(|(b, s)| b.status == Status::Active && *s == Status::Active)
            .map(|(b, _)| b)
            .collect();
        let roles = self.store.member_roles(member.id, Some(branch.id)).await?;
        let mut token_roles: Vec<String> = roles
            .iter()
            .map(|r| match r.workspace_id {
                Some(_) => format!("ws:{}", r.code),
                None => r.code.clone(),
            })
            .collect();
        token_roles.sort();
        token_roles.dedup();
        let (roles, permissions) = flatten(&roles);
        Ok(BranchContext {
            workspace,
            member,
            branch,
            branches,
            roles,
            token_roles,
            permissions,
        })
    }

    /// The caller's branch context; `BRANCH_CONTEXT_REQUIRED` for account-scoped callers.
    /// A token's scopes cap the permissions shown.
    pub async fn current_branch(&self, p: &Principal) -> Result<BranchContext, AppError> {
        let branch = p.branch_id.ok_or(Code::BRANCH_CONTEXT_REQUIRED)?;
        let mut ctx = self.branch_context(p.account_id, branch).await?;
        ctx.permissions = p.cap(ctx.permissions);
        Ok(ctx)
    }

    /// Creates a workspace; a taken slug is `CONFLICT`.
    pub async fn create_workspace(
        &self,
        actor: Option<Id>,
        slug: &str,
        name: &str,
        meta: &RequestMeta,
    ) -> Result<Workspace, AppError> {
        let slug = slug.trim().to_lowercase();
        let mut errors = Vec::new();
        if !slug_ok(&slug) {
            errors.push(FieldError::new("slug", "invalid"));
        }
        name_error("name", name, &mut errors);
        if !errors.is_empty() {
            return Err(AppError::validation(errors));
        }
        let now = self.now();
        let w = Workspace {
            id: new_id(),
            slug,
            name: name.trim().to_string(),
            status: Status::Active,
            created_at: now,
            updated_at: now,
        };
        let audit = event(meta, now, "admin.workspace.create", "success")
            .actor(actor)
            .target(Some(w.id))
            .details(serde_json::json!({ "slug": w.slug }));
        self.store.create_workspace(&w, &audit).await?;
        Ok(w)
    }

    /// A workspace by id; `NOT_FOUND` if there is none.
    pub async fn workspace(&self, id: Id) -> Result<Workspace, AppError> {
        self.store
            .workspace_by_id(id)
            .await?
            .ok_or_else(|| Code::NOT_FOUND.into())
    }

    /// A workspace by slug; `NOT_FOUND` if there is none.
    pub async fn workspace_by_slug(&self, slug: &str) -> Result<Workspace, AppError> {
        self.store
            .workspace_by_slug(&slug.trim().to_lowercase())
            .await?
            .ok_or_else(|| Code::NOT_FOUND.into())
    }

    /// Workspaces, a page at a time.
    pub async fn list_workspaces(&self, page: Page) -> Result<Paged<Workspace>, AppError> {
        self.store
            .list_workspaces(page)
            .await
            .map_err(AppError::from)
    }

    /// Enables or disables a workspace. Its members' sessions are refused at their next
    /// refresh or branch selection.
    pub async fn set_workspace_status(
        &self,
        actor: Option<Id>,
        id: Id,
        status: Status,
        meta: &RequestMeta,
    ) -> Result<Workspace, AppError> {
        let action = match status {
            Status::Active => "admin.workspace.enable",
            Status::Disabled => "admin.workspace.disable",
        };
        let audit = event(meta, self.now(), action, "success")
            .actor(actor)
            .target(Some(id));
        self.store
            .set_workspace_status(id, status, self.now(), &audit)
            .await?
            .ok_or_else(|| Code::NOT_FOUND.into())
    }

    /// Creates a branch in `workspace_id`; a taken code there is `CONFLICT`.
    pub async fn create_branch(
        &self,
        actor: Option<Id>,
        workspace_id: Id,
        code: &str,
        name: &str,
        meta: &RequestMeta,
    ) -> Result<Branch, AppError> {
        let code = code.trim().to_string();
        let mut errors = Vec::new();
        if !code_ok(&code) {
            errors.push(FieldError::new("code", "invalid"));
        }
        name_error("name", name, &mut errors);
        if !errors.is_empty() {
            return Err(AppError::validation(errors));
        }
        self.workspace(workspace_id).await?;
        let now = self.now();
        let b = Branch {
            id: new_id(),
            workspace_id,
            code,
            name: name.trim().to_string(),
            status: Status::Active,
            created_at: now,
            updated_at: now,
        };
        let audit = event(meta, now, "admin.branch.create", "success")
            .actor(actor)
            .target(Some(b.id))
            .details(serde_json::json!({ "workspaceId": workspace_id, "code": b.code }));
        self.store.create_branch(&b, &audit).await?;
        Ok(b)
    }

    /// A branch by id; `NOT_FOUND` if there is none.
    pub async fn branch(&self, id: Id) -> Result<Branch, AppError> {
        self.store
            .branch_by_id(id)
            .await?
            .ok_or_else(|| Code::NOT_FOUND.into())
    }

    /// Branches of a workspace, a page at a time.
    pub async fn list_branches(
        &self,
        workspace_id: Id,
        page: Page,
    ) -> Result<Paged<Branch>, AppError> {
        self.store
            .list_branches(workspace_id, page)
            .await
            .map_err(AppError::from)
    }

    /// Enables or disables a branch.
    pub async fn set_branch_status(
        &self,
        actor: Option<Id>,
        id: Id,
        status: Status,
        meta: &RequestMeta,
    ) -> Result<Branch, AppError> {
        let action = match status {
            Status::Active => "admin.branch.enable",
            Status::Disabled => "admin.branch.disable",
        };
        let audit = event(meta, self.now(), action, "success")
            .actor(actor)
            .target(Some(id));
        self.store
            .set_branch_status(id, status, self.now(), &audit)
            .await?
            .ok_or_else(|| Code::NOT_FOUND.into())
    }

    async fn roles_by_code(
        &self,
        workspace_id: Id,
        codes: &[String],
    ) -> Result<Vec<Role>, AppError> {
        let mut roles = Vec::new();
        for code in codes {
            match self.store.role_for(Some(workspace_id), code.trim()).await? {
                Some(r) => roles.push(r),
                None => {
                    return Err(AppError::validation(vec![FieldError::new(
                        "roles", "invalid",
                    )]));
                }
            }
        }
        Ok(roles)
    }

    /// Checks a membership to create in `workspace_id`: the account exists, the branches
    /// are the workspace's and the role codes usable there. Answers the sorted, unique
    /// branch ids and the roles, or every field at fault.
    pub(crate) async fn plan_membership(
        &self,
        workspace_id: Id,
        input: &AddMember,
    ) -> Result<(Vec<Id>, Vec<Role>), AppError> {
        let account_ok = self.store.account_by_id(input.account_id).await?.is_some();
        let mut errors = Vec::new();
        if !account_ok {
            errors.push(FieldError::new("accountId", "invalid"));
        }
        let mut branch_ids = input.branch_ids.clone();
        branch_ids.sort();
        branch_ids.dedup();
        for b in &branch_ids {
            let found = self.store.branch_by_id(*b).await?;
            if found.is_none_or(|x| x.workspace_id != workspace_id) {
                errors.push(FieldError::new("branchIds", "invalid"));
                break;
            }
        }
        let mut codes = input.roles.clone();
        codes.sort();
        codes.dedup();
        let roles = match self.roles_by_code(workspace_id, &codes).await {
            Ok(r) => r,
            Err(e) => {
                errors.extend(e.fields);
                Vec::new()
            }
        };
        if !errors.is_empty() {
            return Err(AppError::validation(errors));
        }
        Ok((branch_ids, roles))
    }

    /// Makes an account a member of `workspace_id`, in the given branches (of that
    /// workspace) with the given workspace-wide roles. A second membership is `CONFLICT`.
    /// Only instance admins and the operator's CLI add members directly; anyone else
    /// invites (see [`Service::invite_member_as`]).
    pub async fn add_member(
        &self,
        actor: Option<Id>,
        workspace_id: Id,
        input: AddMember,
        meta: &RequestMeta,
    ) -> Result<Member, AppError> {
        self.workspace(workspace_id).await?;
        let (branch_ids, roles) = self.plan_membership(workspace_id, &input).await?;
        let now = self.now();
        let member = Member {
            id: new_id(),
            account_id: input.account_id,
            workspace_id,
            status: Status::Active,
            branch_ids,
            roles: roles.iter().map(|r| r.code.clone()).collect(),
            created_at: now,
            updated_at: now,
        };
        let audit = event(meta, now, "admin.member.create", "success")
            .actor(actor)
            .target(Some(input.account_id))
            .details(
                serde_json::json!({ "memberId": member.id, "workspaceId": workspace_id,
                "branchIds": member.branch_ids, "roles": member.roles }),
            );
        let new = NewMember {
            member,
            role_ids: roles.iter().map(|r| r.id).collect(),
        };
        self.store.create_member(&new, &audit).await?;
        self.member(new.member.id).await
    }

    /// A membership by id; `NOT_FOUND` if there is none.
    pub async fn member(&self, id: Id) -> Result<Member, AppError> {
        self.store
            .member_by_id(id)
            .await?
            .ok_or_else(|| Code::NOT_FOUND.into())
    }

    /// The account's membership of a workspace; `NOT_FOUND` if there is none.
    pub async fn member_of(&self, account_id: Id, workspace_id: Id) -> Result<Member, AppError> {
        self.store
            .member_of(account_id, workspace_id)
            .await?
            .ok_or_else(|| Code::NOT_FOUND.into())
    }

    /// Members of a workspace, a page at a time.
    pub async fn list_members(
        &self,
        workspace_id: Id,
        page: Page,
    ) -> Result<Paged<Member>, AppError> {
        self.store
            .list_members(workspace_id, page)
            .await
            .map_err(AppError::from)
    }

    /// Enables or disables a membership; a disabled member's sessions are refused at their
    /// next refresh.
    pub async fn set_member_status(
        &self,
        actor: Option<Id>,
        id: Id,
        status: Status,
        meta: &RequestMeta,
    ) -> Result<Member, AppError> {
        let action = match status {
            Status::Active => "admin.member.enable",
            Status::Disabled => "admin.member.disable",
        };
        let audit = event(meta, self.now(), action, "success")
            .actor(actor)
            .target(Some(id));
        self.store
            .set_member_status(id, status, self.now(), &audit)
            .await?
            .ok_or_else(|| Code::NOT_FOUND.into())
    }

    /// Creates a role: global (`workspace_id` `None`) or a workspace's own. Every
    /// permission must be known; a taken code in the same scope is `CONFLICT`.
    pub async fn create_role(
        &self,
        actor: Option<Id>,
        code: &str,
        permissions: Vec<String>,
        workspace_id: Option<Id>,
        meta: &RequestMeta,
    ) -> Result<Role, AppError> {
        let code = code.trim().to_lowercase();
        let mut errors = Vec::new();
        // A workspace role named like an instance role would read as one to anything that
        // looks at role names alone.
        let shadows = workspace_id.is_some() && crate::admin::GLOBAL_ROLES.contains(&code.as_str());
        if !code_ok(&code) || shadows {
            errors.push(FieldError::new("code", "invalid"));
        }
        let mut permissions = permissions;
        permissions.sort();
        permissions.dedup();
        if permissions.iter().any(|p| Grant::parse(p).is_none()) {
            errors.push(FieldError::new("permissions", "invalid"));
        }
        if let Some(ws) = workspace_id
            && self.store.workspace_by_id(ws).await?.is_none()
        {
            errors.push(FieldError::new("workspaceId", "invalid"));
        }
        if !errors.is_empty() {
            return Err(AppError::validation(errors));
        }
        let now = self.now();
        let role = Role {
            id: new_id(),
            workspace_id,
            code,
            permissions,
            created_at: now,
            updated_at: now,
        };
        let audit = event(meta, now, "admin.role.create", "success")
            .actor(actor)
            .target(Some(role.id))
            .details(
                serde_json::json!({ "code": role.code, "permissions": role.permissions,
                "workspaceId": workspace_id }),
            );
        self.store.create_role(&role, &audit).await?;
        Ok(role)
    }

    /// Global roles plus those of `workspace_id` (every role when `None`).
    pub async fn list_roles(
        &self,
        workspace_id: Option<Id>,
        page: Page,
    ) -> Result<Paged<Role>, AppError> {
        self.store
            .list_roles(workspace_id, page)
            .await
            .map_err(AppError::from)
    }

    /// Grants (`grant`) or takes back roles of a member, workspace-wide or for one of its
    /// branches. Takes effect at the member's next refresh or branch selection.
    pub async fn change_member_roles(
        &self,
        actor: Option<Id>,
        member: &Member,
        codes: &[String],
        branch_id: Option<Id>,
        grant: bool,
        meta: &RequestMeta,
    ) -> Result<Member, AppError> {
        let roles = self.roles_by_code(member.workspace_id, codes).await?;
        let action = if grant {
            "admin.member.role.grant"
        } else {
            "admin.member.role.revoke"
        };
        for role in roles {
            let audit = event(meta, self.now(), action, "success")
                .actor(actor)
                .target(Some(member.account_id))
                .details(
                    serde_json::json!({ "memberId": member.id, "role": role.code,
                    "branchId": branch_id }),
                );
            let done = if grant {
                self.store
                    .grant_role(member.id, branch_id, role.id, &audit)
                    .await
            } else {
                self.store
                    .revoke_role(member.id, branch_id, role.id, &audit)
                    .await
            }?;
            if !done && grant {
                return Err(AppError::validation(vec![FieldError::new(
                    "branchId", "invalid",
                )]));
            }
            if !done {
                return Err(Code::NOT_FOUND.into());
            }
        }
        self.member(member.id).await
    }
}

/// The admin API's use cases: each authorizes the calling principal for the permission in
/// the scope it acts in, then acts. A target outside the caller's reach is
/// `PERMISSION_REQUIRED`; `NOT_FOUND` only answers those who could have seen it.
impl Service {
    /// The caller's account, context, roles and effective permissions. A global grant
    /// (the account role `admin`) wins over the branch's roles.
    pub async fn me_context(&self, p: &Principal) -> Result<MeContext, AppError> {
        let (account, global) = self.permissions_in(p, Scope::Instance).await?;
        let mut roles = account.roles.clone();
        let context = match p.branch_id {
            Some(_) => Some(self.current_branch(p).await?),
            None => None,
        };
        let permissions = match &context {
            Some(c) => {
                roles.extend(c.roles.iter().cloned());
                if global.is_empty() {
                    c.permissions
                } else {
                    global
                }
            }
            None => global,
        };
        roles.sort();
        roles.dedup();
        Ok(MeContext {
            account,
            context,
            roles,
            permissions,
        })
    }

    /// A branch the caller holds `permission` for (in its workspace).
    async fn branch_in_reach(
        &self,
        p: &Principal,
        permission: Permission,
        id: Id,
    ) -> Result<Branch, AppError> {
        match self.store.branch_by_id(id).await? {
            Some(b) => {
                self.require_permission(p, permission, Scope::Workspace(b.workspace_id))
                    .await?;
                Ok(b)
            }
            None => {
                self.require_permission(p, permission, Scope::Instance)
                    .await?;
                Err(Code::NOT_FOUND.into())
            }
        }
    }

    /// A membership the caller holds `permission` for (in its workspace).
    async fn member_in_reach(
        &self,
        p: &Principal,
        permission: Permission,
        id: Id,
    ) -> Result<Member, AppError> {
        match self.store.member_by_id(id).await? {
            Some(m) => {
                self.require_permission(p, permission, Scope::Workspace(m.workspace_id))
                    .await?;
                Ok(m)
            }
            None => {
                self.require_permission(p, permission, Scope::Instance)
                    .await?;
                Err(Code::NOT_FOUND.into())
            }
        }
    }

    /// Creates a branch in `workspace_id` (`branches:write` there).
    pub async fn create_branch_as(
        &self,
        p: &Principal,
        workspace_id: Id,
        input: Input<NewBranch>,
        meta: &RequestMeta,
    ) -> Result<Branch, AppError> {
        let scope = Scope::Workspace(workspace_id);
        self.require_permission(p, Permission::BranchesWrite, scope)
            .await?;
        let input = input?;
        self.create_branch(
            Some(p.account_id),
            workspace_id,
            &input.code,
            &input.name,
            meta,
        )
        .await
    }

    /// A workspace's branches (`branches:read` there), with the page they answer.
    pub async fn list_branches_as(
        &self,
        p: &Principal,
        workspace_id: Id,
        page: Input<Page>,
    ) -> Result<(Paged<Branch>, Page), AppError> {
        let scope = Scope::Workspace(workspace_id);
        self.require_permission(p, Permission::BranchesRead, scope)
            .await?;
        let page = page?;
        self.workspace(workspace_id).await?;
        Ok((self.list_branches(workspace_id, page).await?, page))
    }

    /// Enables or disables a branch (`branches:write` in its workspace).
    pub async fn set_branch_status_as(
        &self,
        p: &Principal,
        id: Id,
        status: Status,
        meta: &RequestMeta,
    ) -> Result<Branch, AppError> {
        let b = self
            .branch_in_reach(p, Permission::BranchesWrite, id)
            .await?;
        self.set_branch_status(Some(p.account_id), b.id, status, meta)
            .await
    }

    /// Adds a member to `workspace_id` directly (`members:write` instance-wide; holding it
    /// only in the workspace answers `PERMISSION_REQUIRED` with `accountId:
    /// invitation_required`: invite instead).
    pub async fn add_member_as(
        &self,
        p: &Principal,
        workspace_id: Id,
        input: Input<AddMember>,
        meta: &RequestMeta,
    ) -> Result<Member, AppError> {
        let scope = Scope::Workspace(workspace_id);
        self.require_permission(p, Permission::MembersWrite, scope)
            .await?;
        // Adding an account without its consent is for instance admins: a workspace's own
        // admins invite, and the account decides.
        if self
            .require_permission(p, Permission::MembersWrite, Scope::Instance)
            .await
            .is_err()
        {
            return Err(AppError {
                fields: vec![FieldError::new("accountId", "invitation_required")],
                ..AppError::new(Code::PERMISSION_REQUIRED)
            });
        }
        let input = input?;
        self.add_member(Some(p.account_id), workspace_id, input, meta)
            .await
    }

    /// `PERMISSION_REQUIRED` unless the caller may hand out every permission the roles
    /// named `codes` carry in `workspace_id` (see [`Service::require_delegable`]). Unknown
    /// codes are left for the validation that follows.
    pub(crate) async fn require_roles_delegable(
        &self,
        p: &Principal,
        workspace_id: Id,
        codes: &[String],
    ) -> Result<(), AppError> {
        let mut roles = Vec::new();
        for code in codes {
            let found = self.store.role_for(Some(workspace_id), code.trim()).await?;
            roles.extend(found);
        }
        let (_, wanted) = flatten(&roles);
        self.require_delegable(p, workspace_id, &wanted).await
    }

    /// A workspace's members (`members:read` there), with the page they answer.
    pub async fn list_members_as(
        &self,
        p: &Principal,
        workspace_id: Id,
        page: Input<Page>,
    ) -> Result<(Paged<Member>, Page), AppError> {
        let scope = Scope::Workspace(workspace_id);
        self.require_permission(p, Permission::MembersRead, scope)
            .await?;
        let page = page?;
        self.workspace(workspace_id).await?;
        Ok((self.list_members(workspace_id, page).await?, page))
    }

    /// Enables or disables a membership (`members:write` in its workspace).
    pub async fn set_member_status_as(
        &self,
        p: &Principal,
        id: Id,
        status: Status,
        meta: &RequestMeta,
    ) -> Result<Member, AppError> {
        let m = self
            .member_in_reach(p, Permission::MembersWrite, id)
            .await?;
        self.set_member_status(Some(p.account_id), m.id, status, meta)
            .await
    }

    /// Grants (`grant`) or takes back a member's roles (`members:write` in its workspace).
    pub async fn change_member_roles_as(
        &self,
        p: &Principal,
        id: Id,
        input: Input<RoleChange>,
        grant: bool,
        meta: &RequestMeta,
    ) -> Result<Member, AppError> {
        let m = self
            .member_in_reach(p, Permission::MembersWrite, id)
            .await?;
        let input = input?;
        if grant {
            self.require_roles_delegable(p, m.workspace_id, &input.roles)
                .await?;
        }
        self.change_member_roles(
            Some(p.account_id),
            &m,
            &input.roles,
            input.branch_id,
            grant,
            meta,
        )
        .await
    }

    /// Creates a role (`roles:write` in its workspace, or instance-wide for a global one).
    pub async fn create_role_as(
        &self,
        p: &Principal,
        input: NewRole,
        meta: &RequestMeta,
    ) -> Result<Role, AppError> {
        let scope = input.workspace_id.map_or(Scope::Instance, Scope::Workspace);
        self.require_permission(p, Permission::RolesWrite, scope)
            .await?;
        if let Some(ws) = input.workspace_id {
            let wanted = PermissionSet::from_names(input.permissions.iter().map(String::as_str));
            self.require_delegable(p, ws, &wanted).await?;
        }
        self.create_role(
            Some(p.account_id),
            &input.code,
            input.permissions,
            input.workspace_id,
            meta,
        )
        .await
    }

    /// Global roles plus a workspace's (`roles:read` there), or every role (`roles:read`
    /// instance-wide) when `workspace_id` is `None`.
    pub async fn list_roles_as(
        &self,
        p: &Principal,
        workspace_id: Option<Id>,
        page: Page,
    ) -> Result<Paged<Role>, AppError> {
        let scope = workspace_id.map_or(Scope::Instance, Scope::Workspace);
        self.require_permission(p, Permission::RolesRead, scope)
            .await?;
        self.list_roles(workspace_id, page).await
    }
}

fn permission_required_branch() -> AppError {
    AppError {
        fields: vec![FieldError::new("branchId", "invalid")],
        ..AppError::new(Code::PERMISSION_REQUIRED)
    }
}

/// Role codes (sorted) and the union of their permissions.
fn flatten(roles: &[Role]) -> (Vec<String>, PermissionSet) {
    let mut codes: Vec<String> = roles.iter().map(|r| r.code.clone()).collect();
    codes.sort();
    codes.dedup();
    let perms = PermissionSet::from_names(
        roles
            .iter()
            .flat_map(|r| r.permissions.iter().map(String::as_str)),
    );
    (codes, perms)
}

mod invitations;

#[cfg(test)]
mod tests;
