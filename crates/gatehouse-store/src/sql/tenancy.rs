//! [`TenancyStore`]: workspaces, branches, members, roles, and a session's workspace and
//! branch.

use super::Adapter;
use super::common::{Db, DbRow, NIL_ID, Tx, insert_audit};
use super::rows::{
    BRANCH_COLS, MEMBER_COLS, ROLE_COLS, WORKSPACE_COLS, branch_row, membership_row, role_row,
    workspace_row,
};
use crate::dialect::Dialect;
use crate::map_err;
use async_trait::async_trait;
use gatehouse_domain::model::{
    AuditEvent, Branch, Invitation, InvitationStatus, Member, Membership, NewMember, NewToken,
    Page, Paged, Role, Status, Workspace,
};
use gatehouse_domain::ports::{StoreResult, TenancyStore};
use gatehouse_domain::{Id, Timestamp};
use sqlx::Row as _;
use uuid::Uuid;

/// A member row completed with its branch ids and workspace-wide role codes.
async fn member_full<'e, E>(exec: E, row: &DbRow) -> Result<Member, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Db> + Copy,
{
    let id: Uuid = row.try_get("id")?;
    let branch_ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT bm.branch_id FROM branch_member bm JOIN branch b ON b.id = bm.branch_id \
         WHERE bm.member_id = $1 AND bm.status = 'ACTIVE' ORDER BY b.code",
    )
    .bind(id)
    .fetch_all(exec)
    .await?;
    let roles: Vec<String> = sqlx::query_scalar(
        "SELECT r.code FROM member_role mr JOIN role r ON r.id = mr.role_id WHERE mr.member_id = $1 ORDER BY r.code",
    )
    .bind(id)
    .fetch_all(exec)
    .await?;
    Ok(Member {
        id,
        account_id: row.try_get("account_id")?,
        workspace_id: row.try_get("workspace_id")?,
        status: Status::from_db(&row.try_get::<String, _>("status")?),
        branch_ids,
        roles,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}

/// The member matching `clause` (on alias `m`, values bound as `$1` and, if given, `$2`),
/// completed by [`member_full`].
async fn member_where(
    pool: &sqlx::Pool<Db>,
    clause: &str,
    a: Uuid,
    b: Option<Uuid>,
) -> StoreResult<Option<Member>> {
    let sql = format!("SELECT {MEMBER_COLS} FROM workspace_member m WHERE {clause}");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(a);
    if let Some(b) = b {
        q = q.bind(b);
    }
    let row = q.fetch_optional(pool).await.map_err(map_err)?;
    match row {
        Some(r) => Ok(Some(member_full(pool, &r).await.map_err(map_err)?)),
        None => Ok(None),
    }
}

/// The branch membership row of (member, branch), if any.
async fn branch_member_id(
    tx: &mut Tx<'_>,
    member_id: Id,
    branch_id: Id,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM branch_member WHERE member_id = $1 AND branch_id = $2")
        .bind(member_id)
        .bind(branch_id)
        .fetch_optional(&mut **tx)
        .await
}

/// Inserts the member, its branch memberships and workspace-wide roles.
async fn insert_member(tx: &mut Tx<'_>, new: &NewMember) -> Result<(), sqlx::Error> {
    let m = &new.member;
    sqlx::query(
        "INSERT INTO workspace_member (id, account_id, workspace_id, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(m.id)
    .bind(m.account_id)
    .bind(m.workspace_id)
    .bind(m.status.as_str())
    .bind(m.created_at.millis())
    .bind(m.updated_at.millis())
    .execute(&mut **tx)
    .await?;
    for branch in &m.branch_ids {
        sqlx::query(
            "INSERT INTO branch_member (id, member_id, branch_id, status, created_at) VALUES ($1, $2, $3, 'ACTIVE', $4)",
        )
        .bind(gatehouse_domain::ids::new_id())
        .bind(m.id)
        .bind(branch)
        .bind(m.created_at.millis())
        .execute(&mut **tx)
        .await?;
    }
    for role in &new.role_ids {
        sqlx::query("INSERT INTO member_role (member_id, role_id) VALUES ($1, $2)")
            .bind(m.id)
            .bind(role)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The invitation columns.
const INVITATION_COLS: &str = "id, workspace_id, account_id, invited_by, branch_ids, roles, status, created_at, expires_at, decided_at";

/// An invitation selected with [`INVITATION_COLS`]. Unreadable branch or role lists read
/// as empty (the membership then starts with less, never more).
fn invitation_row(row: &DbRow) -> Result<Invitation, sqlx::Error> {
    let branch_ids: String = row.try_get("branch_ids")?;
    let roles: String = row.try_get("roles")?;
    Ok(Invitation {
        id: row.try_get("id")?,
        workspace_id: row.try_get("workspace_id")?,
        account_id: row.try_get("account_id")?,
        invited_by: row.try_get("invited_by")?,
        branch_ids: serde_json::from_str(&branch_ids).unwrap_or_default(),
        roles: serde_json::from_str(&roles).unwrap_or_default(),
        status: InvitationStatus::from_db(&row.try_get::<String, _>("status")?),
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
        decided_at: row
            .try_get::<Option<i64>, _>("decided_at")?
            .map(Timestamp::from_millis),
    })
}

async fn invitation_where(
    pool: &sqlx::Pool<Db>,
    id: Id,
) -> Result<Option<Invitation>, sqlx::Error> {
    let sql = format!("SELECT {INVITATION_COLS} FROM workspace_invitation WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(invitation_row).transpose()
}

#[async_trait]
impl TenancyStore for Adapter {
    async fn create_workspace(&self, w: &Workspace, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO workspace (id, slug, name, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(w.id)
        .bind(&w.slug)
        .bind(&w.name)
        .bind(w.status.as_str())
        .bind(w.created_at.millis())
        .bind(w.updated_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn workspace_by_id(&self, id: Id) -> StoreResult<Option<Workspace>> {
        let sql = format!("SELECT {WORKSPACE_COLS} FROM workspace w WHERE w.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await
            .map_err(map_err)?;
        row.as_ref().map(workspace_row).transpose().map_err(map_err)
    }

    async fn workspace_by_slug(&self, slug: &str) -> StoreResult<Option<Workspace>> {
        let sql = format!("SELECT {WORKSPACE_COLS} FROM workspace w WHERE w.slug = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(slug)
            .fetch_optional(self.reader())
            .await
            .map_err(map_err)?;
        row.as_ref().map(workspace_row).transpose().map_err(map_err)
    }

    async fn list_workspaces(&self, page: Page) -> StoreResult<Paged<Workspace>> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workspace")
            .fetch_one(self.reader())
            .await
            .map_err(map_err)?;
        let sql =
            format!("SELECT {WORKSPACE_COLS} FROM workspace w ORDER BY w.slug LIMIT $1 OFFSET $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(page.page_size))
            .bind(page.offset())
            .fetch_all(self.reader())
            .await
            .map_err(map_err)?;
        let items = rows
            .iter()
            .map(workspace_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn set_workspace_status(
        &self,
        id: Id,
        status: Status,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Workspace>> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done = sqlx::query("UPDATE workspace SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now.millis())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        let sql = format!("SELECT {WORKSPACE_COLS} FROM workspace w WHERE w.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let w = workspace_row(&row).map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some(w))
    }

    async fn create_branch(&self, b: &Branch, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO branch (id, workspace_id, code, name, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(b.id)
        .bind(b.workspace_id)
        .bind(&b.code)
        .bind(&b.name)
        .bind(b.status.as_str())
        .bind(b.created_at.millis())
        .bind(b.updated_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn branch_by_id(&self, id: Id) -> StoreResult<Option<Branch>> {
        let sql = format!("SELECT {BRANCH_COLS} FROM branch b WHERE b.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await
            .map_err(map_err)?;
        row.as_ref().map(branch_row).transpose().map_err(map_err)
    }

    async fn branch_by_code(&self, workspace_id: Id, code: &str) -> StoreResult<Option<Branch>> {
        let sql =
            format!("SELECT {BRANCH_COLS} FROM branch b WHERE b.workspace_id = $1 AND b.code = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id)
            .bind(code)
            .fetch_optional(self.reader())
            .await
            .map_err(map_err)?;
        row.as_ref().map(branch_row).transpose().map_err(map_err)
    }

    async fn list_branches(&self, workspace_id: Id, page: Page) -> StoreResult<Paged<Branch>> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM branch WHERE workspace_id = $1")
            .bind(workspace_id)
            .fetch_one(self.reader())
            .await
            .map_err(map_err)?;
        let sql = format!(
            "SELECT {BRANCH_COLS} FROM branch b WHERE b.workspace_id = $1 ORDER BY b.code LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id)
            .bind(i64::from(page.page_size))
            .bind(page.offset())
            .fetch_all(self.reader())
            .await
            .map_err(map_err)?;
        let items = rows
            .iter()
            .map(branch_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn set_branch_status(
        &self,
        id: Id,
        status: Status,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Branch>> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done = sqlx::query("UPDATE branch SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now.millis())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        let sql = format!("SELECT {BRANCH_COLS} FROM branch b WHERE b.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let b = branch_row(&row).map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some(b))
    }

    async fn create_member(&self, new: &NewMember, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        insert_member(&mut tx, new).await.map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn member_by_id(&self, id: Id) -> StoreResult<Option<Member>> {
        member_where(self.reader(), "m.id = $1", id, None).await
    }

    async fn member_of(&self, account_id: Id, workspace_id: Id) -> StoreResult<Option<Member>> {
        member_where(
            self.reader(),
            "m.account_id = $1 AND m.workspace_id = $2",
            account_id,
            Some(workspace_id),
        )
        .await
    }

    async fn list_members(&self, workspace_id: Id, page: Page) -> StoreResult<Paged<Member>> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM workspace_member WHERE workspace_id = $1")
                .bind(workspace_id)
                .fetch_one(self.reader())
                .await
                .map_err(map_err)?;
        let sql = format!(
            "SELECT {MEMBER_COLS} FROM workspace_member m WHERE m.workspace_id = $1 ORDER BY m.created_at, m.id LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id)
            .bind(i64::from(page.page_size))
            .bind(page.offset())
            .fetch_all(self.reader())
            .await
            .map_err(map_err)?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push(member_full(self.reader(), row).await.map_err(map_err)?);
        }
        Ok(Paged {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn set_member_status(
        &self,
        id: Id,
        status: Status,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Member>> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done =
            sqlx::query("UPDATE workspace_member SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(now.millis())
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        self.member_by_id(id).await
    }

    async fn create_role(&self, role: &Role, audit: &AuditEvent) -> StoreResult<()> {
        let permissions = serde_json::to_string(&role.permissions).unwrap_or_else(|_| "[]".into());
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO role (id, workspace_id, code, permissions, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(role.id)
        .bind(role.workspace_id)
        .bind(&role.code)
        .bind(permissions)
        .bind(role.created_at.millis())
        .bind(role.updated_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn role_for(&self, workspace_id: Option<Id>, code: &str) -> StoreResult<Option<Role>> {
        let sql = format!(
            "SELECT {ROLE_COLS} FROM role r WHERE r.code = $1 AND (r.workspace_id IS NULL OR r.workspace_id = $2) \
             ORDER BY CASE WHEN r.workspace_id IS NULL THEN 1 ELSE 0 END LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(code)
            .bind(workspace_id.unwrap_or(NIL_ID))
            .fetch_optional(self.reader())
            .await
            .map_err(map_err)?;
        row.as_ref().map(role_row).transpose().map_err(map_err)
    }

    async fn list_roles(&self, workspace_id: Option<Id>, page: Page) -> StoreResult<Paged<Role>> {
        let filter = "($1 IS NULL OR r.workspace_id IS NULL OR r.workspace_id = $1)";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM role r WHERE {filter}"
        )))
        .bind(workspace_id)
        .fetch_one(self.reader())
        .await
        .map_err(map_err)?;
        let sql = format!(
            "SELECT {ROLE_COLS} FROM role r WHERE {filter} \
             ORDER BY CASE WHEN r.workspace_id IS NULL THEN 0 ELSE 1 END, r.code, r.id LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id)
            .bind(i64::from(page.page_size))
            .bind(page.offset())
            .fetch_all(self.reader())
            .await
            .map_err(map_err)?;
        let items = rows
            .iter()
            .map(role_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn grant_role(
        &self,
        member_id: Id,
        branch_id: Option<Id>,
        role_id: Id,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        match branch_id {
            None => {
                sqlx::query("INSERT INTO member_role (member_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(member_id)
                    .bind(role_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
            Some(branch) => {
                let Some(bm) = branch_member_id(&mut tx, member_id, branch)
                    .await
                    .map_err(map_err)?
                else {
                    return Ok(false);
                };
                sqlx::query("INSERT INTO branch_member_role (branch_member_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(bm)
                    .bind(role_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
        }
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn revoke_role(
        &self,
        member_id: Id,
        branch_id: Option<Id>,
        role_id: Id,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done = match branch_id {
            None => sqlx::query("DELETE FROM member_role WHERE member_id = $1 AND role_id = $2")
                .bind(member_id)
                .bind(role_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected(),
            Some(branch) => {
                let Some(bm) = branch_member_id(&mut tx, member_id, branch)
                    .await
                    .map_err(map_err)?
                else {
                    return Ok(false);
                };
                sqlx::query(
                    "DELETE FROM branch_member_role WHERE branch_member_id = $1 AND role_id = $2",
                )
                .bind(bm)
                .bind(role_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected()
            }
        };
        if done == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn create_invitation(
        &self,
        invitation: &Invitation,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let i = invitation;
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        sqlx::query(
            "UPDATE workspace_invitation SET status = 'EXPIRED' \
             WHERE workspace_id = $1 AND account_id = $2 AND status = 'PENDING' AND expires_at <= $3",
        )
        .bind(i.workspace_id)
        .bind(i.account_id)
        .bind(i.created_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let branch_ids = serde_json::to_string(&i.branch_ids).unwrap_or_else(|_| "[]".into());
        let roles = serde_json::to_string(&i.roles).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO workspace_invitation (id, workspace_id, account_id, invited_by, branch_ids, roles, status, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(i.id)
        .bind(i.workspace_id)
        .bind(i.account_id)
        .bind(i.invited_by)
        .bind(branch_ids)
        .bind(roles)
        .bind(i.status.as_str())
        .bind(i.created_at.millis())
        .bind(i.expires_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn invitation_by_id(&self, id: Id) -> StoreResult<Option<Invitation>> {
        invitation_where(self.reader(), id).await.map_err(map_err)
    }

    async fn list_invitations(
        &self,
        workspace_id: Id,
        page: Page,
    ) -> StoreResult<Paged<Invitation>> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM workspace_invitation WHERE workspace_id = $1")
                .bind(workspace_id)
                .fetch_one(self.reader())
                .await
                .map_err(map_err)?;
        let sql = format!(
            "SELECT {INVITATION_COLS} FROM workspace_invitation WHERE workspace_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id)
            .bind(i64::from(page.page_size))
            .bind(page.offset())
            .fetch_all(self.reader())
            .await
            .map_err(map_err)?;
        let items = rows
            .iter()
            .map(invitation_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)?;
        Ok(Paged {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn pending_invitations(
        &self,
        account_id: Id,
        now: Timestamp,
    ) -> StoreResult<Vec<Invitation>> {
        let sql = format!(
            "SELECT {INVITATION_COLS} FROM workspace_invitation \
             WHERE account_id = $1 AND status = 'PENDING' AND expires_at > $2 \
             ORDER BY created_at DESC, id DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(now.millis())
            .fetch_all(self.reader())
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(invitation_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn decide_invitation(
        &self,
        id: Id,
        status: InvitationStatus,
        now: Timestamp,
        member: Option<&NewMember>,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Invitation>> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let done = sqlx::query(
            "UPDATE workspace_invitation SET status = $1, decided_at = $2 \
             WHERE id = $3 AND status = 'PENDING' AND expires_at > $2",
        )
        .bind(status.as_str())
        .bind(now.millis())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        if let Some(new) = member {
            insert_member(&mut tx, new).await.map_err(map_err)?;
        }
        insert_audit(&mut tx, audit).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        self.invitation_by_id(id).await
    }

    async fn memberships(&self, account_id: Id) -> StoreResult<Vec<Membership>> {
        let rows = sqlx::query(
            "SELECT m.id AS member_id, m.status AS member_status, \
             w.id AS w_id, w.slug AS w_slug, w.name AS w_name, w.status AS w_status, \
             w.created_at AS w_created_at, w.updated_at AS w_updated_at, \
             b.id AS b_id, b.code AS b_code, b.name AS b_name, b.status AS b_status, \
             b.created_at AS b_created_at, b.updated_at AS b_updated_at, bm.status AS bm_status \
             FROM workspace_member m JOIN workspace w ON w.id = m.workspace_id \
             LEFT JOIN branch_member bm ON bm.member_id = m.id \
             LEFT JOIN branch b ON b.id = bm.branch_id \
             WHERE m.account_id = $1 ORDER BY w.slug, b.code",
        )
        .bind(account_id)
        .fetch_all(self.reader())
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(membership_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn member_roles(&self, member_id: Id, branch_id: Option<Id>) -> StoreResult<Vec<Role>> {
        let sql = format!(
            "SELECT {ROLE_COLS} FROM role r WHERE r.id IN (\
             SELECT mr.role_id FROM member_role mr WHERE mr.member_id = $1 \
             UNION SELECT bmr.role_id FROM branch_member_role bmr JOIN branch_member bm ON bm.id = bmr.branch_member_id \
             WHERE bm.member_id = $1 AND bm.branch_id = $2) ORDER BY r.code"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(member_id)
            .bind(branch_id.unwrap_or(NIL_ID))
            .fetch_all(self.reader())
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(role_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn set_session_context(
        &self,
        session_id: Id,
        workspace_id: Option<Id>,
        branch_id: Option<Id>,
        token: Option<&NewToken>,
        deny: Option<&(String, Timestamp)>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        let expires: Option<i64> = sqlx::query_scalar(
            "UPDATE auth_session SET workspace_id = $1, branch_id = $2, last_seen_at = $3 \
             WHERE id = $4 AND status = 'ACTIVE' AND expires_at > $3 RETURNING expires_at",
        )
        .bind(workspace_id)
        .bind(branch_id)
        .bind(now.millis())
        .bind(session_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some(expires) = expires else {
            return Ok(false);
        };
        if let Some(t) = token {
            sqlx::query(
                "UPDATE session_token SET status = 'ROTATED', used_at = $1 \
                 WHERE session_id = $2 AND kind = 'REFRESH' AND status = 'ACTIVE'",
            )
            .bind(now.millis())
            .bind(session_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            sqlx::query(
                "INSERT INTO session_token (hash, session_id, kind, status, created_at, expires_at) \
                 VALUES ($1, $2, 'REFRESH', 'ACTIVE', $3, $4)",
            )
            .bind(&t.hash)
            .bind(session_id)
            .bind(now.millis())
            .bind(t.expires_at.millis().min(expires))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        if let Some((jti, expires_at)) = deny {
            sqlx::query("DELETE FROM denied_access_token WHERE expires_at <= $1")
                .bind(now.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            sqlx::query(
                "INSERT INTO denied_access_token (jti, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (jti) DO NOTHING",
            )
            .bind(jti)
            .bind(expires_at.millis())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }
}
