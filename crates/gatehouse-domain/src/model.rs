//! Stored records.

use crate::{Id, Timestamp};
use serde::Serialize;

/// Whether an account may sign in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountStatus {
    Active,
    Disabled,
}

impl AccountStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "ACTIVE",
            AccountStatus::Disabled => "DISABLED",
        }
    }

    /// Parses the stored text; unknown text reads as disabled (fail closed).
    pub fn from_db(s: &str) -> Self {
        if s == "ACTIVE" {
            AccountStatus::Active
        } else {
            AccountStatus::Disabled
        }
    }
}

/// Whether an account is a person's or a service's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    /// A person: signs in interactively.
    #[default]
    User,
    /// A service: never signs in interactively, authenticates with API keys.
    Service,
}

impl AccountKind {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::User => "USER",
            AccountKind::Service => "SERVICE",
        }
    }

    /// Parses the stored text; unknown text reads as a service (it cannot sign in).
    pub fn from_db(s: &str) -> Self {
        if s == "USER" {
            AccountKind::User
        } else {
            AccountKind::Service
        }
    }
}

/// A person or service that can sign in.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: Id,
    pub email: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub status: AccountStatus,
    pub kind: AccountKind,
    pub must_change_password: bool,
    pub roles: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_login_at: Option<Timestamp>,
}

impl Account {
    /// True if the account holds the global role `code`.
    pub fn has_role(&self, code: &str) -> bool {
        self.roles.iter().any(|r| r == code)
    }
}

/// Whether a session may still be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionStatus {
    Active,
    Revoked,
}

impl SessionStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "ACTIVE",
            SessionStatus::Revoked => "REVOKED",
        }
    }

    /// Parses the stored text; unknown text reads as revoked (fail closed).
    pub fn from_db(s: &str) -> Self {
        if s == "ACTIVE" {
            SessionStatus::Active
        } else {
            SessionStatus::Revoked
        }
    }
}

/// One sign-in: the family that every refresh token and access token of it belongs to.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: Id,
    pub account_id: Id,
    pub status: SessionStatus,
    /// How the user proved who they are, e.g. `["pwd"]` or `["pwd", "totp"]`.
    pub auth_methods: Vec<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    /// Absolute end of the session, whatever its activity.
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// The workspace and branch this session acts in (branch-scoped tokens), if any.
    pub workspace_id: Option<Id>,
    pub branch_id: Option<Id>,
}

/// A refresh or web-session token to store, by its SHA-256 only.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub hash: Vec<u8>,
    pub expires_at: Timestamp,
}

/// Everything a successful login writes, in one transaction.
#[derive(Clone, Debug)]
pub struct LoginCommit {
    pub session: Session,
    /// Refresh token (API logins) or web-session token (page logins).
    pub token: NewToken,
    pub token_kind: TokenKind,
    /// A stronger hash of the password, when the stored one is outdated.
    pub rehash: Option<String>,
    /// Revoke the account's other sessions (single-session policy).
    pub revoke_others: bool,
    pub audit: AuditEvent,
}

/// What a stored session token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Refresh,
    Web,
}

impl TokenKind {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Refresh => "REFRESH",
            TokenKind::Web => "WEB",
        }
    }
}

/// Lifetimes a refresh rotation enforces.
#[derive(Clone, Copy, Debug)]
pub struct RefreshPolicy {
    pub now: Timestamp,
    /// A refresh token unused this long is dead.
    pub idle_ms: i64,
}

/// What happened to a presented refresh token.
#[derive(Clone, Debug)]
pub enum Rotation {
    /// Rotated: the old token is spent, the new one stored.
    Rotated(Session),
    /// A spent token came back: the session and all its tokens are now revoked.
    Reused { session_id: Id, account_id: Id },
    /// Past its idle or absolute lifetime.
    Expired,
    /// The session was revoked earlier.
    Revoked,
    /// Never issued (or already purged).
    Unknown,
}

/// A key that signs access tokens. `private_key` is empty for verify-only keys.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: String,
    pub private_key: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_key", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// One line of the audit trail. Never holds a secret.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: Id,
    pub at: Timestamp,
    pub actor_id: Option<Id>,
    pub action: String,
    pub target_id: Option<Id>,
    pub outcome: String,
    pub reason: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
}

/// Filters for the audit listing.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub account_id: Option<Id>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// A page request: 1-based page, bounded size.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub page: u32,
    pub page_size: u32,
}

impl Page {
    /// Rows to skip.
    pub fn offset(self) -> i64 {
        i64::from(self.page.saturating_sub(1)) * i64::from(self.page_size)
    }
}

/// A page of results.
#[derive(Clone, Debug)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// A TOTP credential. `secret` is the sealed (encrypted) shared secret, never the plain one.
#[derive(Clone)]
pub struct TotpCredential {
    pub id: Id,
    pub account_id: Id,
    pub secret: String,
    /// False while enrolment waits for its first code.
    pub active: bool,
    /// The newest time-step a code was accepted for; older or equal steps are replays.
    pub last_used_step: Option<i64>,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for TotpCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpCredential")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("secret", &"[redacted]")
            .field("active", &self.active)
            .field("last_used_step", &self.last_used_step)
            .finish()
    }
}

/// A browser that may skip the TOTP step until `expires_at`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustedDevice {
    pub id: Id,
    pub account_id: Id,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: Timestamp,
    pub last_used_at: Timestamp,
    pub expires_at: Timestamp,
}

/// `ACTIVE` or `DISABLED`: the same two states accounts have, for workspaces, branches and
/// memberships.
pub type Status = AccountStatus;

/// A tenant: members, branches and roles live inside one.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    pub id: Id,
    pub slug: String,
    pub name: String,
    pub status: Status,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A branch (site, store, team) of a workspace; branch-scoped tokens name one.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Branch {
    pub id: Id,
    pub workspace_id: Id,
    pub code: String,
    pub name: String,
    pub status: Status,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An account's membership of a workspace, with its branches and workspace-wide roles.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub id: Id,
    pub account_id: Id,
    pub workspace_id: Id,
    pub status: Status,
    /// Branches the member belongs to (branch membership rows).
    pub branch_ids: Vec<Id>,
    /// Codes of the roles held across the whole workspace.
    pub roles: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A named set of permissions; `workspace_id` `None` makes it global (usable everywhere).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub id: Id,
    pub workspace_id: Option<Id>,
    pub code: String,
    pub permissions: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A new membership: the member row, its branches and its workspace-wide role ids.
#[derive(Clone, Debug)]
pub struct NewMember {
    pub member: Member,
    pub role_ids: Vec<Id>,
}

/// Where an invitation stands. `Expired` is never stored: a pending row past its
/// `expires_at` is read as expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Declined,
    Revoked,
    Expired,
}

impl InvitationStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Accepted => "ACCEPTED",
            Self::Declined => "DECLINED",
            Self::Revoked => "REVOKED",
            Self::Expired => "EXPIRED",
        }
    }

    /// Reads the stored form; anything unknown reads as `Revoked` (never usable).
    pub fn from_db(s: &str) -> Self {
        match s {
            "PENDING" => Self::Pending,
            "ACCEPTED" => Self::Accepted,
            "DECLINED" => Self::Declined,
            "EXPIRED" => Self::Expired,
            _ => Self::Revoked,
        }
    }
}

/// An offer of membership in a workspace, made to an existing account by someone with
/// `members:write` there. Nothing changes for the account until it accepts; the branches
/// and roles are those the membership will start with.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    pub id: Id,
    pub workspace_id: Id,
    pub account_id: Id,
    pub invited_by: Option<Id>,
    pub branch_ids: Vec<Id>,
    /// Codes of the workspace-wide roles the membership will hold.
    pub roles: Vec<String>,
    pub status: InvitationStatus,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub decided_at: Option<Timestamp>,
}

impl Invitation {
    /// The status as of `now`: a pending invitation past its expiry is `Expired`.
    pub fn status_at(&self, now: Timestamp) -> InvitationStatus {
        if self.status == InvitationStatus::Pending && self.expires_at <= now {
            InvitationStatus::Expired
        } else {
            self.status
        }
    }
}

/// One row of an account's memberships: a workspace, the member's status there, and one
/// of its branches (with the branch membership's status), if it has any.
#[derive(Clone, Debug)]
pub struct Membership {
    pub member_id: Id,
    pub member_status: Status,
    pub workspace: Workspace,
    pub branch: Option<(Branch, Status)>,
}

/// A personal access token (`gatehouse_pat_…`): stored by the SHA-256 of its text only.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonalAccessToken {
    pub id: Id,
    pub account_id: Id,
    pub name: String,
    /// Permission names that cap the owner's; `None`: everything the owner holds.
    pub scopes: Option<Vec<String>>,
    /// The workspace and branch the token acts in (the owner must be a member there).
    pub workspace_id: Option<Id>,
    pub branch_id: Option<Id>,
    pub created_at: Timestamp,
    /// `None`: never expires (only where the instance allows it).
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub last_used_ip: Option<String>,
    pub revoked_at: Option<Timestamp>,
}

/// A service account's API key: a public access key (`gatehouse_ak_…`) and a secret key
/// (`gatehouse_sk_…`) stored by its SHA-256 only.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: Id,
    /// The service account it authenticates as.
    pub account_id: Id,
    pub name: String,
    pub access_key: String,
    /// Permission names that cap the service account's; `None`: everything it holds.
    pub scopes: Option<Vec<String>>,
    pub status: Status,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub last_used_ip: Option<String>,
    /// When the secret was last replaced.
    pub rotated_at: Option<Timestamp>,
}
