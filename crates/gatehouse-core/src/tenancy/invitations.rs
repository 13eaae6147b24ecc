//! Invitations: how a workspace's own admins bring an existing account in. The admin
//! (`members:write` in the workspace) offers a membership with branches and roles it may
//! delegate; nothing changes for the account until it accepts. Declining, revoking or
//! letting it expire leaves no trace on the account's sign-ins.

use super::{AddMember, Input};
use crate::audit::{AuditExt, event};
use crate::authz::{Permission, Scope};
use crate::service::{Principal, RequestMeta, Service};
use gatehouse_domain::ids::new_id;
use gatehouse_domain::model::{
    Invitation, InvitationStatus, Member, NewMember, Page, Paged, Status, Workspace,
};
use gatehouse_domain::ports::StoreError;
use gatehouse_domain::{AppError, Code, FieldError, Id};
use std::time::Duration;

/// How long an invitation can be accepted.
pub const INVITATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// `CONFLICT` naming why an invitation cannot be decided any more.
fn not_pending(status: InvitationStatus) -> AppError {
    let why = match status {
        InvitationStatus::Pending => "pending",
        InvitationStatus::Accepted => "accepted",
        InvitationStatus::Declined => "declined",
        InvitationStatus::Revoked => "revoked",
        InvitationStatus::Expired => "expired",
    };
    AppError {
        fields: vec![FieldError::new("status", why)],
        ..AppError::new(Code::CONFLICT)
    }
}

impl Service {
    /// An invitation as of now (a pending one past its expiry reads `expired`).
    fn present_invitation(&self, mut i: Invitation) -> Invitation {
        i.status = i.status_at(self.now());
        i
    }

    /// Invites an existing account into `workspace_id` (`members:write` there, and every
    /// permission of the offered roles delegable by the caller). An account that already is
    /// a member, or has an invitation pending there, is `CONFLICT`.
    pub async fn invite_member_as(
        &self,
        p: &Principal,
        workspace_id: Id,
        input: Input<AddMember>,
        meta: &RequestMeta,
    ) -> Result<Invitation, AppError> {
        let scope = Scope::Workspace(workspace_id);
        self.require_permission(p, Permission::MembersWrite, scope)
            .await?;
        let input = input?;
        self.require_roles_delegable(p, workspace_id, &input.roles)
            .await?;
        self.workspace(workspace_id).await?;
        let (branch_ids, roles) = self.plan_membership(workspace_id, &input).await?;
        if self
            .store
            .member_of(input.account_id, workspace_id)
            .await?
            .is_some()
        {
            return Err(AppError {
                fields: vec![FieldError::new("accountId", "member")],
                ..AppError::new(Code::CONFLICT)
            });
        }
        let now = self.now();
        let invitation = Invitation {
            id: new_id(),
            workspace_id,
            account_id: input.account_id,
            invited_by: Some(p.account_id),
            branch_ids,
            roles: roles.iter().map(|r| r.code.clone()).collect(),
            status: InvitationStatus::Pending,
            created_at: now,
            expires_at: now.plus(INVITATION_TTL),
            decided_at: None,
        };
        let audit = event(meta, now, "admin.invitation.create", "success")
            .actor(Some(p.account_id))
            .target(Some(input.account_id))
            .details(serde_json::json!({
                "invitationId": invitation.id, "workspaceId": workspace_id,
                "branchIds": invitation.branch_ids, "roles": invitation.roles,
            }));
        match self.store.create_invitation(&invitation, &audit).await {
            Ok(()) => Ok(invitation),
            Err(StoreError::Conflict) => Err(AppError {
                fields: vec![FieldError::new("accountId", "invited")],
                ..AppError::new(Code::CONFLICT)
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// A workspace's invitations, newest first (`members:read` there).
    pub async fn list_invitations_as(
        &self,
        p: &Principal,
        workspace_id: Id,
        page: Input<Page>,
    ) -> Result<(Paged<Invitation>, Page), AppError> {
        let scope = Scope::Workspace(workspace_id);
        self.require_permission(p, Permission::MembersRead, scope)
            .await?;
        let page = page?;
        self.workspace(workspace_id).await?;
        let mut found = self.store.list_invitations(workspace_id, page).await?;
        found.items = found
            .items
            .into_iter()
            .map(|i| self.present_invitation(i))
            .collect();
        Ok((found, page))
    }

    /// Withdraws a pending invitation (`members:write` in its workspace). One that was
    /// already decided or has expired is `CONFLICT`.
    pub async fn revoke_invitation_as(
        &self,
        p: &Principal,
        id: Id,
        meta: &RequestMeta,
    ) -> Result<Invitation, AppError> {
        let Some(found) = self.store.invitation_by_id(id).await? else {
            self.require_permission(p, Permission::MembersWrite, Scope::Instance)
                .await?;
            return Err(Code::NOT_FOUND.into());
        };
        let scope = Scope::Workspace(found.workspace_id);
        self.require_permission(p, Permission::MembersWrite, scope)
            .await?;
        let audit = event(meta, self.now(), "admin.invitation.revoke", "success")
            .actor(Some(p.account_id))
            .target(Some(found.account_id))
            .details(serde_json::json!({
                "invitationId": id, "workspaceId": found.workspace_id,
            }));
        self.decide(found, InvitationStatus::Revoked, None, &audit)
            .await
    }

    /// The caller's pending invitations, each with the workspace it is for.
    pub async fn my_invitations(
        &self,
        p: &Principal,
    ) -> Result<Vec<(Invitation, Workspace)>, AppError> {
        let pending = self
            .store
            .pending_invitations(p.account_id, self.now())
            .await?;
        let mut out = Vec::with_capacity(pending.len());
        for i in pending {
            if let Some(w) = self.store.workspace_by_id(i.workspace_id).await? {
                out.push((self.present_invitation(i), w));
            }
        }
        Ok(out)
    }

    /// One of the caller's own invitations; anyone else's reads as `NOT_FOUND`.
    async fn own_invitation(&self, p: &Principal, id: Id) -> Result<Invitation, AppError> {
        self.store
            .invitation_by_id(id)
            .await?
            .filter(|i| i.account_id == p.account_id)
            .ok_or_else(|| Code::NOT_FOUND.into())
    }

    /// Accepts one of the caller's invitations: the membership is created with the
    /// offered branches and roles still there (a branch or role gone since is left out),
    /// atomically with the invitation's end. Already a member, or not pending, is `CONFLICT`.
    pub async fn accept_invitation(
        &self,
        p: &Principal,
        id: Id,
        meta: &RequestMeta,
    ) -> Result<(Invitation, Member), AppError> {
        // Joining a workspace is the account's own consent: a signed-in session gives it,
        // a personal access token does not.
        p.require_session()?;
        let found = self.own_invitation(p, id).await?;
        let mut branch_ids = Vec::new();
        for b in &found.branch_ids {
            if let Some(branch) = self.store.branch_by_id(*b).await?
                && branch.workspace_id == found.workspace_id
            {
                branch_ids.push(branch.id);
            }
        }
        let mut roles = Vec::new();
        for code in &found.roles {
            roles.extend(self.store.role_for(Some(found.workspace_id), code).await?);
        }
        let now = self.now();
        let member = Member {
            id: new_id(),
            account_id: p.account_id,
            workspace_id: found.workspace_id,
            status: Status::Active,
            branch_ids,
            roles: roles.iter().map(|r| r.code.clone()).collect(),
            created_at: now,
            updated_at: now,
        };
        let audit = event(meta, now, "member.invitation.accept", "success")
            .actor(Some(p.account_id))
            .target(Some(p.account_id))
            .details(serde_json::json!({
                "invitationId": id, "workspaceId": found.workspace_id, "memberId": member.id,
                "branchIds": member.branch_ids, "roles": member.roles,
            }));
        let new = NewMember {
            member,
            role_ids: roles.iter().map(|r| r.id).collect(),
        };
        let decided = self
            .decide(found, InvitationStatus::Accepted, Some(&new), &audit)
            .await?;
        Ok((decided, self.member(new.member.id).await?))
    }

    /// Declines one of the caller's invitations.
    pub async fn decline_invitation(
        &self,
        p: &Principal,
        id: Id,
        meta: &RequestMeta,
    ) -> Result<Invitation, AppError> {
        p.require_session()?;
        let found = self.own_invitation(p, id).await?;
        let audit = event(meta, self.now(), "member.invitation.decline", "success")
            .actor(Some(p.account_id))
            .target(Some(p.account_id))
            .details(serde_json::json!({
                "invitationId": id, "workspaceId": found.workspace_id,
            }));
        self.decide(found, InvitationStatus::Declined, None, &audit)
            .await
    }

    /// Ends a pending invitation; `CONFLICT` naming its status when it is not pending
    /// (also when another request ended it first), or `accountId: member` when accepting
    /// finds a membership already there.
    async fn decide(
        &self,
        found: Invitation,
        status: InvitationStatus,
        member: Option<&NewMember>,
        audit: &gatehouse_domain::model::AuditEvent,
    ) -> Result<Invitation, AppError> {
        let now = self.now();
        let current = found.status_at(now);
        if current != InvitationStatus::Pending {
            return Err(not_pending(current));
        }
        match self
            .store
            .decide_invitation(found.id, status, now, member, audit)
            .await
        {
            Ok(Some(done)) => Ok(self.present_invitation(done)),
            Ok(None) => {
                let now_status = self
                    .store
                    .invitation_by_id(found.id)
                    .await?
                    .map_or(InvitationStatus::Revoked, |i| i.status_at(self.now()));
                Err(not_pending(now_status))
            }
            Err(StoreError::Conflict) => Err(AppError {
                fields: vec![FieldError::new("accountId", "member")],
                ..AppError::new(Code::CONFLICT)
            }),
            Err(e) => Err(e.into()),
        }
    }
}
