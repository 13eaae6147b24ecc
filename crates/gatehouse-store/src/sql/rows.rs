//! How rows become domain values: the column lists the queries select and one mapper per
//! table. Time is BIGINT milliseconds (UTC); ids are UUIDs; JSON is stored as text.

use super::Adapter;
use super::common::DbRow;
use crate::dialect::Dialect;
use gatehouse_domain::Timestamp;
use gatehouse_domain::model::{
    Account, AccountKind, AccountStatus, AuditEvent, Branch, Membership, Role, Session,
    SessionStatus, SigningKey, Status, TotpCredential, TrustedDevice, Workspace,
};
use sqlx::Row as _;
use std::sync::LazyLock;
use uuid::Uuid;

/// The account columns (alias `a`), its global roles joined by the dialect's aggregate into
/// one comma-separated `roles` column. Built once.
pub(super) fn account_cols() -> &'static str {
    static COLS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "a.id, a.email, a.username, a.display_name, a.status, a.kind, a.must_change_password, \
             a.created_at, a.updated_at, a.last_login_at, \
             (SELECT {} FROM account_role r WHERE r.account_id = a.id) AS roles",
            Adapter::ROLES_AGG
        )
    });
    &COLS
}

/// The session columns (alias `s`).
pub(super) const SESSION_COLS: &str = "s.id, s.account_id, s.status, s.auth_methods, s.ip, s.user_agent, \
     s.created_at, s.last_seen_at, s.expires_at, s.revoked_at, s.workspace_id, s.branch_id";
/// The audit event columns.
pub(super) const AUDIT_COLS: &str = "id, at, actor_id, action, target_id, outcome, reason, ip, \
     user_agent, request_id, details";

/// An optional timestamp column.
pub(super) fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp::from_millis)
}

/// An account selected with [`account_cols`]; roles sorted.
pub(super) fn account_row(row: &DbRow) -> Result<Account, sqlx::Error> {
    let roles: Option<String> = row.try_get("roles")?;
    let mut roles: Vec<String> = roles
        .unwrap_or_default()
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    roles.sort();
    Ok(Account {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        status: AccountStatus::from_db(&row.try_get::<String, _>("status")?),
        kind: AccountKind::from_db(&row.try_get::<String, _>("kind")?),
        must_change_password: row.try_get("must_change_password")?,
        roles,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
        last_login_at: ts(row.try_get("last_login_at")?),
    })
}

/// A session selected with [`SESSION_COLS`]; unreadable auth methods read as none.
pub(super) fn session_row(row: &DbRow) -> Result<Session, sqlx::Error> {
    let methods: String = row.try_get("auth_methods")?;
    Ok(Session {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        status: SessionStatus::from_db(&row.try_get::<String, _>("status")?),
        auth_methods: serde_json::from_str(&methods).unwrap_or_default(),
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        last_seen_at: Timestamp::from_millis(row.try_get("last_seen_at")?),
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
        revoked_at: ts(row.try_get("revoked_at")?),
        workspace_id: row.try_get("workspace_id")?,
        branch_id: row.try_get("branch_id")?,
    })
}

/// An audit event selected with [`AUDIT_COLS`]; unreadable details read as `null`.
pub(super) fn audit_row(row: &DbRow) -> Result<AuditEvent, sqlx::Error> {
    let details: String = row.try_get("details")?;
    Ok(AuditEvent {
        id: row.try_get("id")?,
        at: Timestamp::from_millis(row.try_get("at")?),
        actor_id: row.try_get("actor_id")?,
        action: row.try_get("action")?,
        target_id: row.try_get("target_id")?,
        outcome: row.try_get("outcome")?,
        reason: row.try_get("reason")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        request_id: row.try_get("request_id")?,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
    })
}

/// A trusted device (its token hash is never read back).
pub(super) fn device_row(row: &DbRow) -> Result<TrustedDevice, sqlx::Error> {
    Ok(TrustedDevice {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        last_used_at: Timestamp::from_millis(row.try_get("last_used_at")?),
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
    })
}

/// The workspace columns (alias `w`).
pub(super) const WORKSPACE_COLS: &str =
    "w.id, w.slug, w.name, w.status, w.created_at, w.updated_at";
/// The branch columns (alias `b`).
pub(super) const BRANCH_COLS: &str =
    "b.id, b.workspace_id, b.code, b.name, b.status, b.created_at, b.updated_at";
/// The member columns (alias `m`); `member_full` adds branches and roles.
pub(super) const MEMBER_COLS: &str =
    "m.id, m.account_id, m.workspace_id, m.status, m.created_at, m.updated_at";
/// The role columns (alias `r`).
pub(super) const ROLE_COLS: &str =
    "r.id, r.workspace_id, r.code, r.permissions, r.created_at, r.updated_at";

/// A workspace selected with [`WORKSPACE_COLS`].
pub(super) fn workspace_row(row: &DbRow) -> Result<Workspace, sqlx::Error> {
    Ok(Workspace {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        status: Status::from_db(&row.try_get::<String, _>("status")?),
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}

/// A branch selected with [`BRANCH_COLS`].
pub(super) fn branch_row(row: &DbRow) -> Result<Branch, sqlx::Error> {
    Ok(Branch {
        id: row.try_get("id")?,
        workspace_id: row.try_get("workspace_id")?,
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        status: Status::from_db(&row.try_get::<String, _>("status")?),
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}

/// A role selected with [`ROLE_COLS`].
pub(super) fn role_row(row: &DbRow) -> Result<Role, sqlx::Error> {
    let permissions: String = row.try_get("permissions")?;
    Ok(Role {
        id: row.try_get("id")?,
        workspace_id: row.try_get("workspace_id")?,
        code: row.try_get("code")?,
        // Unreadable permissions grant nothing (fail closed).
        permissions: serde_json::from_str(&permissions).unwrap_or_default(),
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}

/// A signing key, private part included.
pub(super) fn signing_key_row(r: &DbRow) -> Result<SigningKey, sqlx::Error> {
    Ok(SigningKey {
        kid: r.try_get("kid")?,
        alg: r.try_get("alg")?,
        private_key: r.try_get("private_key")?,
        public_key: r.try_get("public_key")?,
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
        retired_at: ts(r.try_get("retired_at")?),
    })
}

/// The `credential` row of a TOTP secret; pending until confirmed.
pub(super) fn totp_row(r: &DbRow) -> Result<TotpCredential, sqlx::Error> {
    Ok(TotpCredential {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        secret: r.try_get("secret")?,
        active: r.try_get::<String, _>("status")? == "ACTIVE",
        last_used_step: r.try_get("last_used_step")?,
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
    })
}

/// A row of `memberships`' join: the member, its workspace and, if any, one branch
/// membership (columns prefixed `w_`, `b_`, `bm_`).
pub(super) fn membership_row(r: &DbRow) -> Result<Membership, sqlx::Error> {
    let workspace = Workspace {
        id: r.try_get("w_id")?,
        slug: r.try_get("w_slug")?,
        name: r.try_get("w_name")?,
        status: Status::from_db(&r.try_get::<String, _>("w_status")?),
        created_at: Timestamp::from_millis(r.try_get("w_created_at")?),
        updated_at: Timestamp::from_millis(r.try_get("w_updated_at")?),
    };
    let branch = match r.try_get::<Option<Uuid>, _>("b_id")? {
        Some(id) => Some((
            Branch {
                id,
                workspace_id: workspace.id,
                code: r.try_get("b_code")?,
                name: r.try_get("b_name")?,
                status: Status::from_db(&r.try_get::<String, _>("b_status")?),
                created_at: Timestamp::from_millis(r.try_get("b_created_at")?),
                updated_at: Timestamp::from_millis(r.try_get("b_updated_at")?),
            },
            Status::from_db(&r.try_get::<String, _>("bm_status")?),
        )),
        None => None,
    };
    Ok(Membership {
        member_id: r.try_get("member_id")?,
        member_status: Status::from_db(&r.try_get::<String, _>("member_status")?),
        workspace,
        branch,
    })
}
