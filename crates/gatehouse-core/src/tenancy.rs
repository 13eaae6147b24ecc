//! Tenancy: workspaces, branches, memberships and roles; the branch context a sign-in ends
//! in; and the permission check every admin route goes through (deny by default).

use crate::audit::{AuditExt, event};
use crate::service::{Principal, RequestMeta, Service, store_err};
use gatehouse_domain::ids::new_id;
use gatehouse_domain::model::{
    Account, Branch, Member, Membership, NewMember, Page, Paged, Role, Status, Workspace,
};
use gatehouse_domain::{AppError, Code, FieldError, Id};

/// Holds every permission. The global `admin` role (and the account role `admin`) has it.
pub const ALL: &str = "*";

/// Every permission a role can hold, besides [`ALL`].
pub const PERMISSIONS: &[&str] = &[
    "users:read",
    "users:write",
    "sessions:read",
    "audit:read",
    "settings:read",
    "settings:write",
    "workspaces:read",
    "workspaces:write",
    "branches:read",
    "branches:write",
    "members:read",
    "members:write",
    "roles:read",
    "roles:write",
];

/// `PERMISSION_REQUIRED` naming the missing permission in the field errors.
pub fn permission_required(permission: &'static str) -> AppError {
    AppError {
        fields: vec![FieldError::new("permission", permission)],
        ..AppError::new(Code::PERMISSION_REQUIRED)
    }
}

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
    pub permissions: Vec<String>,
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
    /// Effective permissions of the caller in `workspace` (`None`: instance-wide). The
    /// account role `admin` holds everything; otherwise only an active member of an active
    /// workspace holds its roles' permissions there (plus those of its current branch).
    pub async fn permissions_in(
        &self,
        p: &Principal,
        workspace: Option<Id>,
    ) -> Result<(Account, Vec<String>, Vec<String>), AppError> {
        let account = self.me(p).await?;
        if account.has_role("admin") {
            return Ok((account, vec![ALL.to_string()], Vec::new()));
        }
        let Some(ws) = workspace else {
            return Ok((account, Vec::new(), Vec::new()));
        };
        let usable = self
            .store
            .workspace_by_id(ws)
            .await
            .map_err(store_err)?
            .filter(|w| w.status == Status::Active);
        let member = match usable {
            Some(_) => self
                .store
                .member_of(account.id, ws)
                .await
                .map_err(store_err)?
                .filter(|m| m.status == Status::Active),
            None => None,
        };
        let Some(member) = member else {
            return Ok((account, Vec::new(), Vec::new()));
        };
        let branch = p.branch_id.filter(|_| p.workspace_id == Some(ws));
        let roles = self
            .store
            .member_roles(member.id, branch)
            .await
            .map_err(store_err)?;
        let (codes, perms) = flatten(&roles);
        Ok((account, perms, codes))
    }

    /// The caller's account if it holds `permission` in `workspace` (`None`: instance-wide);
    /// `PERMISSION_REQUIRED` naming the permission otherwise.
    pub async fn require_permission(
        &self,
        p: &Principal,
        permission: &'static str,
        workspace: Option<Id>,
    ) -> Result<Account, AppError> {
        let (account, perms, _) = self.permissions_in(p, workspace).await?;
        if perms.iter().any(|x| x == ALL || x == permission) {
            Ok(account)
        } else {
            Err(permission_required(permission))
        }
    }

    /// Decides the context a sign-in ends in. `workspace` (a slug) narrows an account in
    /// several workspaces to one. Disabled workspaces and memberships are skipped; when
    /// nothing usable is left the most telling reason is the error, except for global
    /// admins, who then get an account-scoped token.
    pub async fn resolve_login_context(
        &self,
        account: &Account,
        workspace: Option<&str>,
    ) -> Result<LoginContext, AppError> {
        let mut rows = self
            .store
            .memberships(account.id)
            .await
            .map_err(store_err)?;
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
            [] => {
                if account.has_role("admin") || !usable.is_empty() {
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
            .await
            .map_err(store_err)?
            .ok_or_else(denied)?;
        let workspace = self
            .store
            .workspace_by_id(branch.workspace_id)
            .await
            .map_err(store_err)?
            .ok_or_else(denied)?;
        let member = self
            .store
            .member_of(account_id, workspace.id)
            .await
            .map_err(store_err)?
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
        let rows = self
            .store
            .memberships(account_id)
            .await
            .map_err(store_err)?;
        let branches = rows
            .into_iter()
            .filter(|m| m.member_id == member.id)
            .filter_map(|m| m.branch)
            .filter(|(b, s)| b.status == Status::Active && *s == Status::Active)
            .map(|(b, _)| b)
            .collect();
        let roles = self
            .store
            .member_roles(member.id, Some(branch.id))
            .await
            .map_err(store_err)?;
        let (roles, permissions) = flatten(&roles);
        Ok(BranchContext {
            workspace,
            member,
            branch,
            branches,
            roles,
            permissions,
        })
    }

    /// The caller's branch context; `BRANCH_CONTEXT_REQUIRED` for account-scoped callers.
    pub async fn current_branch(&self, p: &Principal) -> Result<BranchContext, AppError> {
        let branch = p.branch_id.ok_or(Code::BRANCH_CONTEXT_REQUIRED)?;
        self.branch_context(p.account_id, branch).await
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
        self.store
            .create_workspace(&w, &audit)
            .await
            .map_err(store_err)?;
        Ok(w)
    }

    /// A workspace by id; `NOT_FOUND` if there is none.
    pub async fn workspace(&self, id: Id) -> Result<Workspace, AppError> {
        self.store
            .workspace_by_id(id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| Code::NOT_FOUND.into())
    }

    /// A workspace by slug; `NOT_FOUND` if there is none.
    pub async fn workspace_by_slug(&self, slug: &str) -> Result<Workspace, AppError> {
        self.store
            .workspace_by_slug(&slug.trim().to_lowercase())
            .await
            .map_err(store_err)?
            .ok_or_else(|| Code::NOT_FOUND.into())
    }

    /// Workspaces, a page at a time.
    pub async fn list_workspaces(&self, page: Page) -> Result<Paged<Workspace>, AppError> {
        self.store.list_workspaces(page).await.map_err(store_err)
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
            .await
            .map_err(store_err)?
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
        self.store
            .create_branch(&b, &audit)
            .await
            .map_err(store_err)?;
        Ok(b)
    }

    /// A branch by id; `NOT_FOUND` if there is none.
    pub async fn branch(&self, id: Id) -> Result<Branch, AppError> {
        self.store
            .branch_by_id(id)
            .await
            .map_err(store_err)?
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
            .map_err(store_err)
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
            .await
            .map_err(store_err)?
            .ok_or_else(|| Code::NOT_FOUND.into())
    }

    async fn roles_by_code(
        &self,
        workspace_id: Id,
        codes: &[String],
    ) -> Result<Vec<Role>, AppError> {
        let mut roles = Vec::new();
        for code in codes {
            match self
                .store
                .role_for(Some(workspace_id), code.trim())
                .await
                .map_err(store_err)?
            {
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

    /// Makes an account a member of `workspace_id`, in the given branches (of that
    /// workspace) with the given workspace-wide roles. A second membership is `CONFLICT`.
    pub async fn add_member(
        &self,
        actor: Option<Id>,
        workspace_id: Id,
        input: AddMember,
        meta: &RequestMeta,
    ) -> Result<Member, AppError> {
        self.workspace(workspace_id).await?;
        let account_ok = self
            .store
            .account_by_id(input.account_id)
            .await
            .map_err(store_err)?
            .is_some();
        let mut errors = Vec::new();
        if !account_ok {
            errors.push(FieldError::new("accountId", "invalid"));
        }
        let mut branch_ids = input.branch_ids.clone();
        branch_ids.sort();
        branch_ids.dedup();
        for b in &branch_ids {
            let found = self.store.branch_by_id(*b).await.map_err(store_err)?;
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
        self.store
            .create_member(&new, &audit)
            .await
            .map_err(store_err)?;
        self.member(new.member.id).await
    }

    /// A membership by id; `NOT_FOUND` if there is none.
    pub async fn member(&self, id: Id) -> Result<Member, AppError> {
        self.store
            .member_by_id(id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| Code::NOT_FOUND.into())
    }

    /// The account's membership of a workspace; `NOT_FOUND` if there is none.
    pub async fn member_of(&self, account_id: Id, workspace_id: Id) -> Result<Member, AppError> {
        self.store
            .member_of(account_id, workspace_id)
            .await
            .map_err(store_err)?
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
            .map_err(store_err)
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
            .await
            .map_err(store_err)?
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
        if !code_ok(&code) {
            errors.push(FieldError::new("code", "invalid"));
        }
        let mut permissions = permissions;
        permissions.sort();
        permissions.dedup();
        if permissions
            .iter()
            .any(|p| p != ALL && !PERMISSIONS.contains(&p.as_str()))
        {
            errors.push(FieldError::new("permissions", "invalid"));
        }
        if let Some(ws) = workspace_id
            && self
                .store
                .workspace_by_id(ws)
                .await
                .map_err(store_err)?
                .is_none()
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
        self.store
            .create_role(&role, &audit)
            .await
            .map_err(store_err)?;
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
            .map_err(store_err)
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
            }
            .map_err(store_err)?;
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

fn permission_required_branch() -> AppError {
    AppError {
        fields: vec![FieldError::new("branchId", "invalid")],
        ..AppError::new(Code::PERMISSION_REQUIRED)
    }
}

/// Role codes and the union of their permissions, both sorted.
fn flatten(roles: &[Role]) -> (Vec<String>, Vec<String>) {
    let mut codes: Vec<String> = roles.iter().map(|r| r.code.clone()).collect();
    let mut perms: Vec<String> = roles
        .iter()
        .flat_map(|r| r.permissions.iter().cloned())
        .collect();
    codes.sort();
    codes.dedup();
    perms.sort();
    perms.dedup();
    (codes, perms)
}
