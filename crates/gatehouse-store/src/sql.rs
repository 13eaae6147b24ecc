//! The store, written once in portable SQL (`$n` placeholders, `RETURNING`, partial
//! indexes, `ON CONFLICT`) and expanded for each driver. Time is BIGINT milliseconds (UTC).

macro_rules! sql_store {
    ($store:ident, $db:ty, $backend:literal, $roles_agg:literal) => {
        use async_trait::async_trait;
        use gatehouse_domain::model::{
            Account, AccountStatus, AuditEvent, AuditFilter, Branch, LoginCommit, Member, Membership,
            NewMember, NewToken, Page, Paged, RefreshPolicy, Role, Rotation, Session, SessionStatus,
            SigningKey, Status, TokenKind, TotpCredential, TrustedDevice, Workspace,
        };
        use gatehouse_domain::ports::{
            AccountStore, AuditStore, CredentialStore, KeyStore, MfaStore, NewAccount, SessionStore,
            SettingStore, Store, StoreResult, TenancyStore,
        };
        use gatehouse_domain::{Id, Timestamp};
        use sqlx::Row as _;
        use uuid::Uuid;

        type DbRow = <$db as sqlx::Database>::Row;
        type Tx<'a> = sqlx::Transaction<'a, $db>;

        const ACCOUNT_COLS: &str = concat!(
            "a.id, a.email, a.username, a.display_name, a.status, a.must_change_password, ",
            "a.created_at, a.updated_at, a.last_login_at, ",
            "(SELECT ", $roles_agg, " FROM account_role r WHERE r.account_id = a.id) AS roles"
        );
        const SESSION_COLS: &str = "s.id, s.account_id, s.status, s.auth_methods, s.ip, s.user_agent, \
             s.created_at, s.last_seen_at, s.expires_at, s.revoked_at, s.workspace_id, s.branch_id";
        const AUDIT_COLS: &str = "id, at, actor_id, action, target_id, outcome, reason, ip, \
             user_agent, request_id, details";
        /// Stands for "no session to keep" in `id <> $n` filters.
        const NO_SESSION: Uuid = Uuid::nil();

        fn ts(v: Option<i64>) -> Option<Timestamp> {
            v.map(Timestamp::from_millis)
        }

        fn account_row(row: &DbRow) -> Result<Account, sqlx::Error> {
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
                must_change_password: row.try_get("must_change_password")?,
                roles,
                created_at: Timestamp::from_millis(row.try_get("created_at")?),
                updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
                last_login_at: ts(row.try_get("last_login_at")?),
            })
        }

        fn session_row(row: &DbRow) -> Result<Session, sqlx::Error> {
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

        fn audit_row(row: &DbRow) -> Result<AuditEvent, sqlx::Error> {
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

        async fn insert_audit(tx: &mut Tx<'_>, e: &AuditEvent) -> Result<(), sqlx::Error> {
            sqlx::query(
                "INSERT INTO audit_event (id, at, actor_id, action, target_id, outcome, reason, ip, \
                 user_agent, request_id, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(e.id)
            .bind(e.at.millis())
            .bind(e.actor_id)
            .bind(&e.action)
            .bind(e.target_id)
            .bind(&e.outcome)
            .bind(&e.reason)
            .bind(&e.ip)
            .bind(&e.user_agent)
            .bind(&e.request_id)
            .bind(e.details.to_string())
            .execute(&mut **tx)
            .await
            .map(|_| ())
        }

        /// Revokes the account's active sessions except `keep`, inside `tx`; returns their ids.
        async fn revoke_sessions_tx(
            tx: &mut Tx<'_>,
            account_id: Id,
            keep: Option<Id>,
            now: Timestamp,
        ) -> Result<Vec<Id>, sqlx::Error> {
            let rows = sqlx::query(
                "UPDATE auth_session SET status = 'REVOKED', revoked_at = $1 \
                 WHERE account_id = $2 AND status = 'ACTIVE' AND id <> $3 RETURNING id",
            )
            .bind(now.millis())
            .bind(account_id)
            .bind(keep.unwrap_or(NO_SESSION))
            .fetch_all(&mut **tx)
            .await?;
            rows.iter().map(|r| r.try_get::<Uuid, _>("id")).collect()
        }

        async fn account_where(
            pool: &sqlx::Pool<$db>,
            clause: &str,
            value: impl for<'q> sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send,
        ) -> StoreResult<Option<Account>> {
            let sql = format!("SELECT {ACCOUNT_COLS} FROM account a WHERE {clause}");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).fetch_optional(pool).await.map_err(crate::map_err)?;
            row.as_ref().map(account_row).transpose().map_err(crate::map_err)
        }

        #[async_trait]
        impl AccountStore for $store {
            async fn create_account(&self, new: &NewAccount, audit: &AuditEvent) -> StoreResult<()> {
                let a = &new.account;
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                sqlx::query(
                    "INSERT INTO account (id, email, username, display_name, status, \
                     must_change_password, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(a.id)
                .bind(&a.email)
                .bind(&a.username)
                .bind(&a.display_name)
                .bind(a.status.as_str())
                .bind(a.must_change_password)
                .bind(a.created_at.millis())
                .bind(a.updated_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(crate::map_err)?;
                for role in &a.roles {
                    sqlx::query("INSERT INTO account_role (account_id, role) VALUES ($1, $2)")
                        .bind(a.id)
                        .bind(role)
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::map_err)?;
                }
                if let Some(hash) = &new.password_hash {
                    sqlx::query(
                        "INSERT INTO credential (id, account_id, type, secret, status, created_at, updated_at) \
                         VALUES ($1, $2, 'PASSWORD', $3, 'ACTIVE', $4, $4)",
                    )
                    .bind(gatehouse_domain::ids::new_id())
                    .bind(a.id)
                    .bind(hash)
                    .bind(a.created_at.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                }
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)
            }

            async fn account_by_id(&self, id: Id) -> StoreResult<Option<Account>> {
                account_where(self.r(), "a.id = $1", id).await
            }

            async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
                account_where(self.r(), "a.email = $1", email.to_string()).await
            }

            async fn account_by_username(&self, username: &str) -> StoreResult<Option<Account>> {
                account_where(self.r(), "a.username = $1", username.to_string()).await
            }

            async fn count_accounts(&self) -> StoreResult<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM account")
                    .fetch_one(self.r())
                    .await
                    .map_err(crate::map_err)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn list_accounts(&self, query: Option<&str>, page: Page) -> StoreResult<Paged<Account>> {
                let pattern = query.map(|q| {
                    let escaped = q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                    format!("%{escaped}%")
                });
                let filter = "($1 IS NULL OR a.email LIKE $1 ESCAPE '\\' OR a.username LIKE $1 ESCAPE '\\' \
                              OR LOWER(COALESCE(a.display_name, '')) LIKE $1 ESCAPE '\\')";
                let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM account a WHERE {filter}")))
                    .bind(&pattern)
                    .fetch_one(self.r())
                    .await
                    .map_err(crate::map_err)?;
                let sql = format!(
                    "SELECT {ACCOUNT_COLS} FROM account a WHERE {filter} ORDER BY a.created_at, a.id LIMIT $2 OFFSET $3"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&pattern)
                    .bind(i64::from(page.page_size))
                    .bind(page.offset())
                    .fetch_all(self.r())
                    .await
                    .map_err(crate::map_err)?;
                let items = rows.iter().map(account_row).collect::<Result<_, _>>().map_err(crate::map_err)?;
                Ok(Paged { items, total: u64::try_from(total).unwrap_or(0) })
            }

            async fn set_account_status(
                &self,
                id: Id,
                status: AccountStatus,
                now: Timestamp,
                audit: &AuditEvent,
            ) -> StoreResult<Option<(Account, Vec<Id>)>> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                let done = sqlx::query("UPDATE account SET status = $1, updated_at = $2 WHERE id = $3")
                    .bind(status.as_str())
                    .bind(now.millis())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                if done.rows_affected() == 0 {
                    return Ok(None);
                }
                let revoked = match status {
                    AccountStatus::Disabled => revoke_sessions_tx(&mut tx, id, None, now).await.map_err(crate::map_err)?,
                    AccountStatus::Active => Vec::new(),
                };
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                let sql = format!("SELECT {ACCOUNT_COLS} FROM account a WHERE a.id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&mut *tx).await.map_err(crate::map_err)?;
                let account = account_row(&row).map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)?;
                Ok(Some((account, revoked)))
            }

            async fn set_must_change_password(
                &self,
                id: Id,
                value: bool,
                now: Timestamp,
                audit: &AuditEvent,
            ) -> StoreResult<Option<Account>> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                let done = sqlx::query("UPDATE account SET must_change_password = $1, updated_at = $2 WHERE id = $3")
                    .bind(value)
                    .bind(now.millis())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                if done.rows_affected() == 0 {
                    return Ok(None);
                }
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                let sql = format!("SELECT {ACCOUNT_COLS} FROM account a WHERE a.id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&mut *tx).await.map_err(crate::map_err)?;
                let account = account_row(&row).map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)?;
                Ok(Some(account))
            }
        }

        #[async_trait]
        impl CredentialStore for $store {
            async fn password_hash(&self, account_id: Id) -> StoreResult<Option<String>> {
                sqlx::query_scalar(
                    "SELECT secret FROM credential WHERE account_id = $1 AND type = 'PASSWORD' AND status = 'ACTIVE'",
                )
                .bind(account_id)
                .fetch_optional(self.r())
                .await
                .map_err(crate::map_err)
            }

            async fn change_password(
                &self,
                account_id: Id,
                hash: &str,
                keep: Option<Id>,
                now: Timestamp,
                audit: &AuditEvent,
            ) -> StoreResult<Vec<Id>> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                sqlx::query(
                    "INSERT INTO credential (id, account_id, type, secret, status, created_at, updated_at) \
                     VALUES ($1, $2, 'PASSWORD', $3, 'ACTIVE', $4, $4) \
                     ON CONFLICT (account_id) WHERE type = 'PASSWORD' \
                     DO UPDATE SET secret = excluded.secret, status = 'ACTIVE', updated_at = excluded.updated_at",
                )
                .bind(gatehouse_domain::ids::new_id())
                .bind(account_id)
                .bind(hash)
                .bind(now.millis())
                .execute(&mut *tx)
                .await
                .map_err(crate::map_err)?;
                sqlx::query("UPDATE account SET must_change_password = FALSE, updated_at = $1 WHERE id = $2")
                    .bind(now.millis())
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                let revoked = revoke_sessions_tx(&mut tx, account_id, keep, now).await.map_err(crate::map_err)?;
                // A new password also ends every "trust this browser" grant.
                sqlx::query("DELETE FROM trusted_device WHERE account_id = $1")
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)?;
                Ok(revoked)
            }
        }

        #[async_trait]
        impl SessionStore for $store {
            async fn commit_login(&self, c: &LoginCommit) -> StoreResult<Vec<Id>> {
                let s = &c.session;
                let now = s.created_at;
                let methods = serde_json::to_string(&s.auth_methods).unwrap_or_else(|_| "[]".into());
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                let revoked = if c.revoke_others {
                    revoke_sessions_tx(&mut tx, s.account_id, None, now).await.map_err(crate::map_err)?
                } else {
                    Vec::new()
                };
                if let Some(hash) = &c.rehash {
                    sqlx::query(
                        "UPDATE credential SET secret = $1, updated_at = $2 WHERE account_id = $3 AND type = 'PASSWORD'",
                    )
                    .bind(hash)
                    .bind(now.millis())
                    .bind(s.account_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                }
                // Session, token, last-login stamps and the audit row in one trip (the
                // dialect's `LOGIN_WRITES`: a statement batch on SQLite, one statement of
                // writable CTEs on PostgreSQL), same parameters for both.
                let a = &c.audit;
                sqlx::query(LOGIN_WRITES)
                    .bind(s.id)
                    .bind(s.account_id)
                    .bind(s.status.as_str())
                    .bind(methods)
                    .bind(&s.ip)
                    .bind(&s.user_agent)
                    .bind(now.millis())
                    .bind(s.expires_at.millis())
                    .bind(s.workspace_id)
                    .bind(s.branch_id)
                    .bind(&c.token.hash)
                    .bind(c.token_kind.as_str())
                    .bind(c.token.expires_at.min(s.expires_at).millis())
                    .bind(a.id)
                    .bind(a.at.millis())
                    .bind(a.actor_id)
                    .bind(&a.action)
                    .bind(a.target_id)
                    .bind(&a.outcome)
                    .bind(&a.reason)
                    .bind(&a.ip)
                    .bind(&a.user_agent)
                    .bind(&a.request_id)
                    .bind(a.details.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)?;
                Ok(revoked)
            }

            async fn rotate_refresh(
                &self,
                old_hash: &[u8],
                new: &NewToken,
                policy: RefreshPolicy,
            ) -> StoreResult<Rotation> {
                let now = policy.now.millis();
                // The common case, in as few trips to the database as the dialect allows
                // (`rotate_fast`): the token is ACTIVE and unexpired and its session ACTIVE
                // and unexpired -> spent, successor stored, session touched. Anything else
                // changed nothing there and is classified below.
                if let Some(session) = self.rotate_fast(policy.now, old_hash, new).await? {
                    return Ok(Rotation::Rotated(Session { last_seen_at: policy.now, ..session }));
                }
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                let token = sqlx::query(
                    "SELECT session_id, status, expires_at FROM session_token WHERE hash = $1 AND kind = 'REFRESH'",
                )
                .bind(old_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(crate::map_err)?;
                let Some(token) = token else {
                    return Ok(Rotation::Unknown);
                };
                let session_id: Uuid = token.try_get("session_id").map_err(crate::map_err)?;
                let token_status: String = token.try_get("status").map_err(crate::map_err)?;
                let token_expires: i64 = token.try_get("expires_at").map_err(crate::map_err)?;
                let sql = format!("SELECT {SESSION_COLS} FROM auth_session s WHERE s.id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(session_id).fetch_one(&mut *tx).await.map_err(crate::map_err)?;
                let session = session_row(&row).map_err(crate::map_err)?;
                if session.status != SessionStatus::Active || token_status == "REVOKED" {
                    return Ok(Rotation::Revoked);
                }
                // The conditional update is the arbiter: of two racing rotations only one
                // sees the token ACTIVE; the loser is treated as reuse.
                let spent = if token_status == "ACTIVE" && token_expires > now && session.expires_at.millis() > now {
                    sqlx::query(
                        "UPDATE session_token SET status = 'ROTATED', used_at = $1 WHERE hash = $2 AND status = 'ACTIVE'",
                    )
                    .bind(now)
                    .bind(old_hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?
                    .rows_affected()
                        == 1
                } else if token_status == "ACTIVE" {
                    return Ok(Rotation::Expired);
                } else {
                    false
                };
                if !spent {
                    sqlx::query("UPDATE auth_session SET status = 'REVOKED', revoked_at = $1 WHERE id = $2 AND status = 'ACTIVE'")
                        .bind(now)
                        .bind(session_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::map_err)?;
                    sqlx::query("UPDATE session_token SET status = 'REVOKED' WHERE session_id = $1 AND status = 'ACTIVE'")
                        .bind(session_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::map_err)?;
                    tx.commit().await.map_err(crate::map_err)?;
                    return Ok(Rotation::Reused { session_id, account_id: session.account_id });
                }
                sqlx::query(
                    "INSERT INTO session_token (hash, session_id, kind, status, created_at, expires_at) \
                     VALUES ($1, $2, 'REFRESH', 'ACTIVE', $3, $4)",
                )
                .bind(&new.hash)
                .bind(session_id)
                .bind(now)
                .bind(new.expires_at.min(session.expires_at).millis())
                .execute(&mut *tx)
                .await
                .map_err(crate::map_err)?;
                sqlx::query("UPDATE auth_session SET last_seen_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(session_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)?;
                Ok(Rotation::Rotated(Session { last_seen_at: policy.now, ..session }))
            }

            async fn session_by_id(&self, id: Id) -> StoreResult<Option<Session>> {
                let sql = format!("SELECT {SESSION_COLS} FROM auth_session s WHERE s.id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.r()).await.map_err(crate::map_err)?;
                row.as_ref().map(session_row).transpose().map_err(crate::map_err)
            }

            async fn session_by_refresh_token(&self, hash: &[u8]) -> StoreResult<Option<Session>> {
                let sql = format!(
                    "SELECT {SESSION_COLS} FROM session_token t JOIN auth_session s ON s.id = t.session_id \
                     WHERE t.hash = $1 AND t.kind = 'REFRESH'"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(hash)
                    .fetch_optional(self.r())
                    .await
                    .map_err(crate::map_err)?;
                row.as_ref().map(session_row).transpose().map_err(crate::map_err)
            }

            async fn session_by_web_token(&self, hash: &[u8], now: Timestamp) -> StoreResult<Option<Session>> {
                let sql = format!(
                    "SELECT {SESSION_COLS} FROM session_token t JOIN auth_session s ON s.id = t.session_id \
                     WHERE t.hash = $1 AND t.kind = 'WEB' AND t.status = 'ACTIVE' AND s.status = 'ACTIVE' \
                     AND t.expires_at > $2 AND s.expires_at > $2"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(hash).bind(now.millis()).fetch_optional(self.r()).await.map_err(crate::map_err)?;
                row.as_ref().map(session_row).transpose().map_err(crate::map_err)
            }

            async fn touch_session(&self, id: Id, now: Timestamp, min_gap_ms: i64) -> StoreResult<()> {
                sqlx::query("UPDATE auth_session SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $3")
                    .bind(now.millis())
                    .bind(id)
                    .bind(now.millis() - min_gap_ms)
                    .execute(self.w())
                    .await
                    .map_err(crate::map_err)?;
                Ok(())
            }

            async fn active_sessions(&self, account_id: Id, now: Timestamp) -> StoreResult<Vec<Session>> {
                let sql = format!(
                    "SELECT {SESSION_COLS} FROM auth_session s WHERE s.account_id = $1 AND s.status = 'ACTIVE' \
                     AND s.expires_at > $2 ORDER BY s.created_at DESC LIMIT 500"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account_id).bind(now.millis()).fetch_all(self.r()).await.map_err(crate::map_err)?;
                rows.iter().map(session_row).collect::<Result<_, _>>().map_err(crate::map_err)
            }

            async fn list_sessions(&self, account_id: Option<Id>, page: Page) -> StoreResult<Paged<Session>> {
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM auth_session s WHERE ($1 IS NULL OR s.account_id = $1)")
                    .bind(account_id)
                    .fetch_one(self.r())
                    .await
                    .map_err(crate::map_err)?;
                let sql = format!(
                    "SELECT {SESSION_COLS} FROM auth_session s WHERE ($1 IS NULL OR s.account_id = $1) \
                     ORDER BY s.created_at DESC LIMIT $2 OFFSET $3"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(account_id)
                    .bind(i64::from(page.page_size))
                    .bind(page.offset())
                    .fetch_all(self.r())
                    .await
                    .map_err(crate::map_err)?;
                let items = rows.iter().map(session_row).collect::<Result<_, _>>().map_err(crate::map_err)?;
                Ok(Paged { items, total: u64::try_from(total).unwrap_or(0) })
            }

            async fn revoke_session(&self, id: Id, now: Timestamp, audit: &AuditEvent) -> StoreResult<bool> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                let done = sqlx::query("UPDATE auth_session SET status = 'REVOKED', revoked_at = $1 WHERE id = $2 AND status = 'ACTIVE'")
                    .bind(now.millis())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                sqlx::query("UPDATE session_token SET status = 'REVOKED' WHERE session_id = $1 AND status = 'ACTIVE'")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn revoke_account_sessions(
                &self,
                account_id: Id,
                keep: Option<Id>,
                now: Timestamp,
                audit: &AuditEvent,
            ) -> StoreResult<Vec<Id>> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                let ids = revoke_sessions_tx(&mut tx, account_id, keep, now).await.map_err(crate::map_err)?;
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)?;
                Ok(ids)
            }

            async fn count_sessions(&self) -> StoreResult<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM auth_session")
                    .fetch_one(self.r())
                    .await
                    .map_err(crate::map_err)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }

        #[async_trait]
        impl KeyStore for $store {
            async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
                let rows = sqlx::query(
                    "SELECT kid, alg, private_key, public_key, created_at, retired_at FROM signing_key \
                     ORDER BY created_at DESC, kid",
                )
                .fetch_all(self.r())
                .await
                .map_err(crate::map_err)?;
                rows.iter()
                    .map(|r| {
                        Ok(SigningKey {
                            kid: r.try_get("kid")?,
                            alg: r.try_get("alg")?,
                            private_key: r.try_get("private_key")?,
                            public_key: r.try_get("public_key")?,
                            created_at: Timestamp::from_millis(r.try_get("created_at")?),
                            retired_at: ts(r.try_get("retired_at")?),
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(crate::map_err)
            }

            async fn rotate_signing_key(&self, key: &SigningKey, now: Timestamp) -> StoreResult<()> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                // Mark the store initialized too, so a racing first start adds no second key.
                sqlx::query(
                    "INSERT INTO instance_setting (key, value, updated_at) VALUES ('signing_key.initialized', 'true', $1) \
                     ON CONFLICT (key) DO NOTHING",
                )
                .bind(now.millis())
                .execute(&mut *tx)
                .await
                .map_err(crate::map_err)?;
                sqlx::query("UPDATE signing_key SET retired_at = $1 WHERE retired_at IS NULL")
                    .bind(now.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                insert_key(&mut tx, key).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)
            }

            async fn insert_first_signing_key(&self, key: &SigningKey) -> StoreResult<()> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                // A sentinel row serializes racing first starts: only one inserts it.
                let first = sqlx::query(
                    "INSERT INTO instance_setting (key, value, updated_at) VALUES ('signing_key.initialized', 'true', $1) \
                     ON CONFLICT (key) DO NOTHING",
                )
                .bind(key.created_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(crate::map_err)?
                .rows_affected()
                    == 1;
                if first {
                    insert_key(&mut tx, key).await.map_err(crate::map_err)?;
                }
                tx.commit().await.map_err(crate::map_err)
            }
        }

        async fn insert_key(tx: &mut Tx<'_>, key: &SigningKey) -> Result<(), sqlx::Error> {
            sqlx::query(
                "INSERT INTO signing_key (kid, alg, private_key, public_key, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&key.kid)
            .bind(&key.alg)
            .bind(&key.private_key)
            .bind(&key.public_key)
            .bind(key.created_at.millis())
            .execute(&mut **tx)
            .await
            .map(|_| ())
        }

        #[async_trait]
        impl SettingStore for $store {
            async fn setting(&self, key: &str) -> StoreResult<Option<serde_json::Value>> {
                let v: Option<String> = sqlx::query_scalar("SELECT value FROM instance_setting WHERE key = $1")
                    .bind(key)
                    .fetch_optional(self.r())
                    .await
                    .map_err(crate::map_err)?;
                Ok(v.and_then(|v| serde_json::from_str(&v).ok()))
            }

            async fn put_setting(&self, key: &str, value: &serde_json::Value, now: Timestamp) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO instance_setting (key, value, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                )
                .bind(key)
                .bind(value.to_string())
                .bind(now.millis())
                .execute(self.w())
                .await
                .map_err(crate::map_err)?;
                Ok(())
            }

            async fn setting_or_insert(
                &self,
                key: &str,
                value: &serde_json::Value,
                now: Timestamp,
            ) -> StoreResult<serde_json::Value> {
                sqlx::query(
                    "INSERT INTO instance_setting (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
                )
                .bind(key)
                .bind(value.to_string())
                .bind(now.millis())
                .execute(self.w())
                .await
                .map_err(crate::map_err)?;
                let v: String = sqlx::query_scalar("SELECT value FROM instance_setting WHERE key = $1")
                    .bind(key)
                    .fetch_one(self.w())
                    .await
                    .map_err(crate::map_err)?;
                serde_json::from_str(&v).map_err(|e| gatehouse_domain::ports::StoreError::Other(e.to_string()))
            }
        }

        #[async_trait]
        impl AuditStore for $store {
            async fn append_audit(&self, events: &[AuditEvent]) -> StoreResult<()> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                for e in events {
                    insert_audit(&mut tx, e).await.map_err(crate::map_err)?;
                }
                tx.commit().await.map_err(crate::map_err)
            }

            async fn prune_audit(&self, before: Timestamp) -> StoreResult<u64> {
                let done = sqlx::query("DELETE FROM audit_event WHERE at < $1")
                    .bind(before.millis())
                    .execute(self.w())
                    .await
                    .map_err(crate::map_err)?;
                Ok(done.rows_affected())
            }

            async fn list_audit(&self, f: &AuditFilter, page: Page) -> StoreResult<Paged<AuditEvent>> {
                let filter = "($1 IS NULL OR actor_id = $1 OR target_id = $1) AND ($2 IS NULL OR action = $2) \
                              AND ($3 IS NULL OR outcome = $3) AND ($4 IS NULL OR at >= $4) AND ($5 IS NULL OR at < $5)";
                let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM audit_event WHERE {filter}")))
                    .bind(f.account_id)
                    .bind(&f.action)
                    .bind(&f.outcome)
                    .bind(f.from.map(Timestamp::millis))
                    .bind(f.to.map(Timestamp::millis))
                    .fetch_one(self.r())
                    .await
                    .map_err(crate::map_err)?;
                let sql = format!("SELECT {AUDIT_COLS} FROM audit_event WHERE {filter} ORDER BY at DESC, id DESC LIMIT $6 OFFSET $7");
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(f.account_id)
                    .bind(&f.action)
                    .bind(&f.outcome)
                    .bind(f.from.map(Timestamp::millis))
                    .bind(f.to.map(Timestamp::millis))
                    .bind(i64::from(page.page_size))
                    .bind(page.offset())
                    .fetch_all(self.r())
                    .await
                    .map_err(crate::map_err)?;
                let items = rows.iter().map(audit_row).collect::<Result<_, _>>().map_err(crate::map_err)?;
                Ok(Paged { items, total: u64::try_from(total).unwrap_or(0) })
            }
        }

        async fn insert_recovery_codes(tx: &mut Tx<'_>, account_id: Id, hashes: &[String], now: Timestamp) -> Result<(), sqlx::Error> {
            sqlx::query("DELETE FROM credential WHERE account_id = $1 AND type = 'RECOVERY_CODE'")
                .bind(account_id)
                .execute(&mut **tx)
                .await?;
            for hash in hashes {
                sqlx::query(
                    "INSERT INTO credential (id, account_id, type, secret, status, created_at, updated_at) \
                     VALUES ($1, $2, 'RECOVERY_CODE', $3, 'ACTIVE', $4, $4)",
                )
                .bind(gatehouse_domain::ids::new_id())
                .bind(account_id)
                .bind(hash)
                .bind(now.millis())
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        fn device_row(row: &DbRow) -> Result<TrustedDevice, sqlx::Error> {
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

        #[async_trait]
        impl MfaStore for $store {
            async fn totp(&self, account_id: Id) -> StoreResult<Option<TotpCredential>> {
                let row = sqlx::query(
                    "SELECT id, account_id, secret, status, last_used_step, created_at FROM credential \
                     WHERE account_id = $1 AND type = 'TOTP'",
                )
                .bind(account_id)
                .fetch_optional(self.r())
                .await
                .map_err(crate::map_err)?;
                row.map(|r| {
                    Ok(TotpCredential {
                        id: r.try_get("id")?,
                        account_id: r.try_get("account_id")?,
                        secret: r.try_get("secret")?,
                        active: r.try_get::<String, _>("status")? == "ACTIVE",
                        last_used_step: r.try_get("last_used_step")?,
                        created_at: Timestamp::from_millis(r.try_get("created_at")?),
                    })
                })
                .transpose()
                .map_err(|e: sqlx::Error| crate::map_err(e))
            }

            async fn put_pending_totp(&self, account_id: Id, secret: &str, now: Timestamp) -> StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO credential (id, account_id, type, secret, status, created_at, updated_at) \
                     VALUES ($1, $2, 'TOTP', $3, 'PENDING', $4, $4) \
                     ON CONFLICT (account_id) WHERE type = 'TOTP' \
                     DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at, \
                     updated_at = excluded.updated_at, last_used_step = NULL \
                     WHERE credential.status = 'PENDING'",
                )
                .bind(gatehouse_domain::ids::new_id())
                .bind(account_id)
                .bind(secret)
                .bind(now.millis())
                .execute(self.w())
                .await
                .map_err(crate::map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn confirm_totp(
                &self,
                account_id: Id,
                step: i64,
                recovery_hashes: &[String],
                now: Timestamp,
                audit: &AuditEvent,
            ) -> StoreResult<bool> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                let done = sqlx::query(
                    "UPDATE credential SET status = 'ACTIVE', last_used_step = $1, last_used_at = $2, updated_at = $2 \
                     WHERE account_id = $3 AND type = 'TOTP' AND status = 'PENDING'",
                )
                .bind(step)
                .bind(now.millis())
                .bind(account_id)
                .execute(&mut *tx)
                .await
                .map_err(crate::map_err)?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                insert_recovery_codes(&mut tx, account_id, recovery_hashes, now).await.map_err(crate::map_err)?;
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)?;
                Ok(true)
            }

            async fn use_totp_step(&self, account_id: Id, step: i64, now: Timestamp) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE credential SET last_used_step = $1, last_used_at = $2 \
                     WHERE account_id = $3 AND type = 'TOTP' AND status = 'ACTIVE' \
                     AND (last_used_step IS NULL OR last_used_step < $1)",
                )
                .bind(step)
                .bind(now.millis())
                .bind(account_id)
                .execute(self.w())
                .await
                .map_err(crate::map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn replace_recovery_codes(
                &self,
                account_id: Id,
                hashes: &[String],
                now: Timestamp,
                audit: &AuditEvent,
            ) -> StoreResult<()> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                insert_recovery_codes(&mut tx, account_id, hashes, now).await.map_err(crate::map_err)?;
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)
            }

            async fn use_recovery_code(&self, account_id: Id, hash: &str, now: Timestamp) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE credential SET status = 'USED', last_used_at = $1, updated_at = $1 \
                     WHERE account_id = $2 AND type = 'RECOVERY_CODE' AND secret = $3 AND status = 'ACTIVE'",
                )
                .bind(now.millis())
                .bind(account_id)
                .bind(hash)
                .execute(self.w())
                .await
                .map_err(crate::map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn recovery_codes_left(&self, account_id: Id) -> StoreResult<u64> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM credential WHERE account_id = $1 AND type = 'RECOVERY_CODE' AND status = 'ACTIVE'",
                )
                .bind(account_id)
                .fetch_one(self.r())
                .await
                .map_err(crate::map_err)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn remove_mfa(&self, account_id: Id, audit: &AuditEvent) -> StoreResult<bool> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                let totp = sqlx::query("DELETE FROM credential WHERE account_id = $1 AND type = 'TOTP'")
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?
                    .rows_affected();
                sqlx::query("DELETE FROM credential WHERE account_id = $1 AND type = 'RECOVERY_CODE'")
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                sqlx::query("DELETE FROM trusted_device WHERE account_id = $1")
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)?;
                Ok(totp > 0)
            }

            async fn add_trusted_device(&self, d: &TrustedDevice, token_hash: &[u8], audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                sqlx::query(
                    "INSERT INTO trusted_device (id, account_id, token_hash, ip, user_agent, created_at, last_used_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(d.id)
                .bind(d.account_id)
                .bind(token_hash)
                .bind(&d.ip)
                .bind(&d.user_agent)
                .bind(d.created_at.millis())
                .bind(d.last_used_at.millis())
                .bind(d.expires_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(crate::map_err)?;
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)
            }

            async fn use_trusted_device(&self, account_id: Id, token_hash: &[u8], now: Timestamp) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE trusted_device SET last_used_at = $1 WHERE token_hash = $2 AND account_id = $3 AND expires_at > $1",
                )
                .bind(now.millis())
                .bind(token_hash)
                .bind(account_id)
                .execute(self.w())
                .await
                .map_err(crate::map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn trusted_devices(&self, account_id: Id, now: Timestamp) -> StoreResult<Vec<TrustedDevice>> {
                let rows = sqlx::query(
                    "SELECT id, account_id, ip, user_agent, created_at, last_used_at, expires_at FROM trusted_device \
                     WHERE account_id = $1 AND expires_at > $2 ORDER BY created_at DESC LIMIT 500",
                )
                .bind(account_id)
                .bind(now.millis())
                .fetch_all(self.r())
                .await
                .map_err(crate::map_err)?;
                rows.iter().map(device_row).collect::<Result<_, _>>().map_err(crate::map_err)
            }

            async fn revoke_trusted_devices(&self, account_id: Id, id: Option<Id>, audit: &AuditEvent) -> StoreResult<u64> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                let n = sqlx::query("DELETE FROM trusted_device WHERE account_id = $1 AND ($2 IS NULL OR id = $2)")
                    .bind(account_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?
                    .rows_affected();
                if n > 0 {
                    insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                }
                tx.commit().await.map_err(crate::map_err)?;
                Ok(n)
            }
        }

        const WORKSPACE_COLS: &str = "w.id, w.slug, w.name, w.status, w.created_at, w.updated_at";
        const BRANCH_COLS: &str = "b.id, b.workspace_id, b.code, b.name, b.status, b.created_at, b.updated_at";
        const MEMBER_COLS: &str = "m.id, m.account_id, m.workspace_id, m.status, m.created_at, m.updated_at";
        const ROLE_COLS: &str = "r.id, r.workspace_id, r.code, r.permissions, r.created_at, r.updated_at";

        fn workspace_row(row: &DbRow) -> Result<Workspace, sqlx::Error> {
            Ok(Workspace {
                id: row.try_get("id")?,
                slug: row.try_get("slug")?,
                name: row.try_get("name")?,
                status: Status::from_db(&row.try_get::<String, _>("status")?),
                created_at: Timestamp::from_millis(row.try_get("created_at")?),
                updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
            })
        }

        fn branch_row(row: &DbRow) -> Result<Branch, sqlx::Error> {
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

        fn role_row(row: &DbRow) -> Result<Role, sqlx::Error> {
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

        /// A member row completed with its branch ids and workspace-wide role codes.
        async fn member_full<'e, E>(exec: E, row: &DbRow) -> Result<Member, sqlx::Error>
        where
            E: sqlx::Executor<'e, Database = $db> + Copy,
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

        async fn member_where(pool: &sqlx::Pool<$db>, clause: &str, a: Uuid, b: Option<Uuid>) -> StoreResult<Option<Member>> {
            let sql = format!("SELECT {MEMBER_COLS} FROM workspace_member m WHERE {clause}");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(a);
            if let Some(b) = b {
                q = q.bind(b);
            }
            let row = q.fetch_optional(pool).await.map_err(crate::map_err)?;
            match row {
                Some(r) => Ok(Some(member_full(pool, &r).await.map_err(crate::map_err)?)),
                None => Ok(None),
            }
        }

        /// The branch membership row of (member, branch), if any.
        async fn branch_member_id(tx: &mut Tx<'_>, member_id: Id, branch_id: Id) -> Result<Option<Uuid>, sqlx::Error> {
            sqlx::query_scalar("SELECT id FROM branch_member WHERE member_id = $1 AND branch_id = $2")
                .bind(member_id)
                .bind(branch_id)
                .fetch_optional(&mut **tx)
                .await
        }

        #[async_trait]
        impl TenancyStore for $store {
            async fn create_workspace(&self, w: &Workspace, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
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
                .map_err(crate::map_err)?;
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)
            }

            async fn workspace_by_id(&self, id: Id) -> StoreResult<Option<Workspace>> {
                let sql = format!("SELECT {WORKSPACE_COLS} FROM workspace w WHERE w.id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.r()).await.map_err(crate::map_err)?;
                row.as_ref().map(workspace_row).transpose().map_err(crate::map_err)
            }

            async fn workspace_by_slug(&self, slug: &str) -> StoreResult<Option<Workspace>> {
                let sql = format!("SELECT {WORKSPACE_COLS} FROM workspace w WHERE w.slug = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(slug).fetch_optional(self.r()).await.map_err(crate::map_err)?;
                row.as_ref().map(workspace_row).transpose().map_err(crate::map_err)
            }

            async fn list_workspaces(&self, page: Page) -> StoreResult<Paged<Workspace>> {
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workspace")
                    .fetch_one(self.r())
                    .await
                    .map_err(crate::map_err)?;
                let sql = format!("SELECT {WORKSPACE_COLS} FROM workspace w ORDER BY w.slug LIMIT $1 OFFSET $2");
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(i64::from(page.page_size))
                    .bind(page.offset())
                    .fetch_all(self.r())
                    .await
                    .map_err(crate::map_err)?;
                let items = rows.iter().map(workspace_row).collect::<Result<_, _>>().map_err(crate::map_err)?;
                Ok(Paged { items, total: u64::try_from(total).unwrap_or(0) })
            }

            async fn set_workspace_status(&self, id: Id, status: Status, now: Timestamp, audit: &AuditEvent) -> StoreResult<Option<Workspace>> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                let done = sqlx::query("UPDATE workspace SET status = $1, updated_at = $2 WHERE id = $3")
                    .bind(status.as_str())
                    .bind(now.millis())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                if done.rows_affected() == 0 {
                    return Ok(None);
                }
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                let sql = format!("SELECT {WORKSPACE_COLS} FROM workspace w WHERE w.id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&mut *tx).await.map_err(crate::map_err)?;
                let w = workspace_row(&row).map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)?;
                Ok(Some(w))
            }

            async fn create_branch(&self, b: &Branch, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
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
                .map_err(crate::map_err)?;
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)
            }

            async fn branch_by_id(&self, id: Id) -> StoreResult<Option<Branch>> {
                let sql = format!("SELECT {BRANCH_COLS} FROM branch b WHERE b.id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.r()).await.map_err(crate::map_err)?;
                row.as_ref().map(branch_row).transpose().map_err(crate::map_err)
            }

            async fn branch_by_code(&self, workspace_id: Id, code: &str) -> StoreResult<Option<Branch>> {
                let sql = format!("SELECT {BRANCH_COLS} FROM branch b WHERE b.workspace_id = $1 AND b.code = $2");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(workspace_id)
                    .bind(code)
                    .fetch_optional(self.r())
                    .await
                    .map_err(crate::map_err)?;
                row.as_ref().map(branch_row).transpose().map_err(crate::map_err)
            }

            async fn list_branches(&self, workspace_id: Id, page: Page) -> StoreResult<Paged<Branch>> {
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM branch WHERE workspace_id = $1")
                    .bind(workspace_id)
                    .fetch_one(self.r())
                    .await
                    .map_err(crate::map_err)?;
                let sql = format!("SELECT {BRANCH_COLS} FROM branch b WHERE b.workspace_id = $1 ORDER BY b.code LIMIT $2 OFFSET $3");
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(workspace_id)
                    .bind(i64::from(page.page_size))
                    .bind(page.offset())
                    .fetch_all(self.r())
                    .await
                    .map_err(crate::map_err)?;
                let items = rows.iter().map(branch_row).collect::<Result<_, _>>().map_err(crate::map_err)?;
                Ok(Paged { items, total: u64::try_from(total).unwrap_or(0) })
            }

            async fn set_branch_status(&self, id: Id, status: Status, now: Timestamp, audit: &AuditEvent) -> StoreResult<Option<Branch>> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                let done = sqlx::query("UPDATE branch SET status = $1, updated_at = $2 WHERE id = $3")
                    .bind(status.as_str())
                    .bind(now.millis())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                if done.rows_affected() == 0 {
                    return Ok(None);
                }
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                let sql = format!("SELECT {BRANCH_COLS} FROM branch b WHERE b.id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&mut *tx).await.map_err(crate::map_err)?;
                let b = branch_row(&row).map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)?;
                Ok(Some(b))
            }

            async fn create_member(&self, new: &NewMember, audit: &AuditEvent) -> StoreResult<()> {
                let m = &new.member;
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
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
                .execute(&mut *tx)
                .await
                .map_err(crate::map_err)?;
                for branch in &m.branch_ids {
                    sqlx::query(
                        "INSERT INTO branch_member (id, member_id, branch_id, status, created_at) VALUES ($1, $2, $3, 'ACTIVE', $4)",
                    )
                    .bind(gatehouse_domain::ids::new_id())
                    .bind(m.id)
                    .bind(branch)
                    .bind(m.created_at.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                }
                for role in &new.role_ids {
                    sqlx::query("INSERT INTO member_role (member_id, role_id) VALUES ($1, $2)")
                        .bind(m.id)
                        .bind(role)
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::map_err)?;
                }
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)
            }

            async fn member_by_id(&self, id: Id) -> StoreResult<Option<Member>> {
                member_where(self.r(), "m.id = $1", id, None).await
            }

            async fn member_of(&self, account_id: Id, workspace_id: Id) -> StoreResult<Option<Member>> {
                member_where(self.r(), "m.account_id = $1 AND m.workspace_id = $2", account_id, Some(workspace_id)).await
            }

            async fn list_members(&self, workspace_id: Id, page: Page) -> StoreResult<Paged<Member>> {
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workspace_member WHERE workspace_id = $1")
                    .bind(workspace_id)
                    .fetch_one(self.r())
                    .await
                    .map_err(crate::map_err)?;
                let sql = format!(
                    "SELECT {MEMBER_COLS} FROM workspace_member m WHERE m.workspace_id = $1 ORDER BY m.created_at, m.id LIMIT $2 OFFSET $3"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(workspace_id)
                    .bind(i64::from(page.page_size))
                    .bind(page.offset())
                    .fetch_all(self.r())
                    .await
                    .map_err(crate::map_err)?;
                let mut items = Vec::with_capacity(rows.len());
                for row in &rows {
                    items.push(member_full(self.r(), row).await.map_err(crate::map_err)?);
                }
                Ok(Paged { items, total: u64::try_from(total).unwrap_or(0) })
            }

            async fn set_member_status(&self, id: Id, status: Status, now: Timestamp, audit: &AuditEvent) -> StoreResult<Option<Member>> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                let done = sqlx::query("UPDATE workspace_member SET status = $1, updated_at = $2 WHERE id = $3")
                    .bind(status.as_str())
                    .bind(now.millis())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::map_err)?;
                if done.rows_affected() == 0 {
                    return Ok(None);
                }
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)?;
                self.member_by_id(id).await
            }

            async fn create_role(&self, role: &Role, audit: &AuditEvent) -> StoreResult<()> {
                let permissions = serde_json::to_string(&role.permissions).unwrap_or_else(|_| "[]".into());
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
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
                .map_err(crate::map_err)?;
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)
            }

            async fn role_for(&self, workspace_id: Option<Id>, code: &str) -> StoreResult<Option<Role>> {
                let sql = format!(
                    "SELECT {ROLE_COLS} FROM role r WHERE r.code = $1 AND (r.workspace_id IS NULL OR r.workspace_id = $2) \
                     ORDER BY CASE WHEN r.workspace_id IS NULL THEN 1 ELSE 0 END LIMIT 1"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(code)
                    .bind(workspace_id.unwrap_or(NO_SESSION))
                    .fetch_optional(self.r())
                    .await
                    .map_err(crate::map_err)?;
                row.as_ref().map(role_row).transpose().map_err(crate::map_err)
            }

            async fn list_roles(&self, workspace_id: Option<Id>, page: Page) -> StoreResult<Paged<Role>> {
                let filter = "($1 IS NULL OR r.workspace_id IS NULL OR r.workspace_id = $1)";
                let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM role r WHERE {filter}")))
                    .bind(workspace_id)
                    .fetch_one(self.r())
                    .await
                    .map_err(crate::map_err)?;
                let sql = format!(
                    "SELECT {ROLE_COLS} FROM role r WHERE {filter} \
                     ORDER BY CASE WHEN r.workspace_id IS NULL THEN 0 ELSE 1 END, r.code, r.id LIMIT $2 OFFSET $3"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(workspace_id)
                    .bind(i64::from(page.page_size))
                    .bind(page.offset())
                    .fetch_all(self.r())
                    .await
                    .map_err(crate::map_err)?;
                let items = rows.iter().map(role_row).collect::<Result<_, _>>().map_err(crate::map_err)?;
                Ok(Paged { items, total: u64::try_from(total).unwrap_or(0) })
            }

            async fn grant_role(&self, member_id: Id, branch_id: Option<Id>, role_id: Id, audit: &AuditEvent) -> StoreResult<bool> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                match branch_id {
                    None => {
                        sqlx::query("INSERT INTO member_role (member_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                            .bind(member_id)
                            .bind(role_id)
                            .execute(&mut *tx)
                            .await
                            .map_err(crate::map_err)?;
                    }
                    Some(branch) => {
                        let Some(bm) = branch_member_id(&mut tx, member_id, branch).await.map_err(crate::map_err)? else {
                            return Ok(false);
                        };
                        sqlx::query("INSERT INTO branch_member_role (branch_member_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                            .bind(bm)
                            .bind(role_id)
                            .execute(&mut *tx)
                            .await
                            .map_err(crate::map_err)?;
                    }
                }
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)?;
                Ok(true)
            }

            async fn revoke_role(&self, member_id: Id, branch_id: Option<Id>, role_id: Id, audit: &AuditEvent) -> StoreResult<bool> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
                let done = match branch_id {
                    None => sqlx::query("DELETE FROM member_role WHERE member_id = $1 AND role_id = $2")
                        .bind(member_id)
                        .bind(role_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::map_err)?
                        .rows_affected(),
                    Some(branch) => {
                        let Some(bm) = branch_member_id(&mut tx, member_id, branch).await.map_err(crate::map_err)? else {
                            return Ok(false);
                        };
                        sqlx::query("DELETE FROM branch_member_role WHERE branch_member_id = $1 AND role_id = $2")
                            .bind(bm)
                            .bind(role_id)
                            .execute(&mut *tx)
                            .await
                            .map_err(crate::map_err)?
                            .rows_affected()
                    }
                };
                if done == 0 {
                    return Ok(false);
                }
                insert_audit(&mut tx, audit).await.map_err(crate::map_err)?;
                tx.commit().await.map_err(crate::map_err)?;
                Ok(true)
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
                .fetch_all(self.r())
                .await
                .map_err(crate::map_err)?;
                let read = |r: &DbRow| -> Result<Membership, sqlx::Error> {
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
                };
                rows.iter().map(read).collect::<Result<_, _>>().map_err(crate::map_err)
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
                    .bind(branch_id.unwrap_or(NO_SESSION))
                    .fetch_all(self.r())
                    .await
                    .map_err(crate::map_err)?;
                rows.iter().map(role_row).collect::<Result<_, _>>().map_err(crate::map_err)
            }

            async fn set_session_context(
                &self,
                session_id: Id,
                workspace_id: Option<Id>,
                branch_id: Option<Id>,
                token: Option<&NewToken>,
                now: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.w().begin().await.map_err(crate::map_err)?;
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
                .map_err(crate::map_err)?;
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
                    .map_err(crate::map_err)?;
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
                    .map_err(crate::map_err)?;
                }
                tx.commit().await.map_err(crate::map_err)?;
                Ok(true)
            }
        }

        #[async_trait]
        impl Store for $store {
            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(self.r()).await.map_err(crate::map_err)?;
                Ok(())
            }

            fn backend(&self) -> &'static str {
                $backend
            }
        }

        #[allow(dead_code)]
        fn _assert_kinds(k: TokenKind) -> &'static str {
            k.as_str()
        }
    };
}

pub(crate) use sql_store;
