//! Ports: what the core needs from the outside world. Adapters live in other crates.

use crate::model::{
    Account, AccountStatus, ApiKey, AuditEvent, AuditFilter, Branch, Invitation, InvitationStatus,
    LoginCommit, Member, Membership, NewMember, NewToken, Page, Paged, PersonalAccessToken,
    RefreshPolicy, Role, Rotation, Session, SigningKey, Status, TotpCredential, TrustedDevice,
    Workspace,
};
use crate::{Id, Timestamp};
use async_trait::async_trait;
use std::sync::Mutex;
use std::time::Duration;

/// Why a store call failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or timed out: the request gets 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A unique constraint was hit (e.g. the email is taken).
    #[error("conflict")]
    Conflict,
    /// The change would leave the instance without an active admin.
    #[error("the last active admin cannot be disabled")]
    LastAdmin,
    /// Anything else: logged, and the request gets 500.
    #[error("store error: {0}")]
    Other(String),
}

/// The result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// A new account and its first password hash.
#[derive(Clone, Debug)]
pub struct NewAccount {
    pub account: Account,
    pub password_hash: Option<String>,
    /// The e-mail is known to belong to the account (admin-created, or verified by an
    /// upstream provider); false for self-registration until confirmed. SSO links only to
    /// verified ones.
    pub email_verified: bool,
}

/// Accounts and their global roles.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Inserts an account (with its password and roles) and the audit row, atomically.
    /// `Conflict` if the email or username is taken.
    async fn create_account(&self, new: &NewAccount, audit: &AuditEvent) -> StoreResult<()>;
    async fn account_by_id(&self, id: Id) -> StoreResult<Option<Account>>;
    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>>;
    async fn account_by_username(&self, username: &str) -> StoreResult<Option<Account>>;
    async fn count_accounts(&self) -> StoreResult<u64>;
    async fn list_accounts(&self, query: Option<&str>, page: Page) -> StoreResult<Paged<Account>>;
    /// Sets the status; disabling also revokes every active session. Returns the account and
    /// the ids of the sessions it revoked, or `None` if there is no such account.
    async fn set_account_status(
        &self,
        id: Id,
        status: AccountStatus,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Option<(Account, Vec<Id>)>>;
    async fn set_must_change_password(
        &self,
        id: Id,
        value: bool,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Account>>;
}

/// Password credentials.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// The account's password hash (PHC string), if it has one.
    async fn password_hash(&self, account_id: Id) -> StoreResult<Option<String>>;
    /// Replaces the password, clears `must_change_password`, revokes the account's
    /// sessions except `keep` and its trusted devices; returns the revoked session ids.
    /// One transaction.
    async fn change_password(
        &self,
        account_id: Id,
        hash: &str,
        keep: Option<Id>,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Vec<Id>>;
}

/// Sessions and their refresh / web tokens.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Writes a login: session row, its token, `last_login_at`, an optional rehash, an
    /// optional revocation of older sessions, and the audit row. Returns revoked ids.
    async fn commit_login(&self, commit: &LoginCommit) -> StoreResult<Vec<Id>>;
    /// Spends `old_hash` and stores `new` in its place, in one conditional update, so two
    /// racing rotations of one token cannot both win.
    async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        new: &NewToken,
        policy: RefreshPolicy,
    ) -> StoreResult<Rotation>;
    async fn session_by_id(&self, id: Id) -> StoreResult<Option<Session>>;
    /// The session a refresh token belongs to, whatever the token's state (read-only).
    async fn session_by_refresh_token(&self, hash: &[u8]) -> StoreResult<Option<Session>>;
    /// The active session behind a web-session cookie token.
    async fn session_by_web_token(
        &self,
        hash: &[u8],
        now: Timestamp,
    ) -> StoreResult<Option<Session>>;
    /// Records activity, at most once per `min_gap_ms`.
    async fn touch_session(&self, id: Id, now: Timestamp, min_gap_ms: i64) -> StoreResult<()>;
    async fn active_sessions(&self, account_id: Id, now: Timestamp) -> StoreResult<Vec<Session>>;
    async fn list_sessions(
        &self,
        account_id: Option<Id>,
        page: Page,
    ) -> StoreResult<Paged<Session>>;
    /// Sessions revoked at or after `since`, with when (oldest first): what the cache's
    /// revocation marks are rebuilt from.
    async fn revoked_since(&self, since: Timestamp) -> StoreResult<Vec<(Id, Timestamp)>>;
    /// Access tokens denied while their session lives on, unexpired at `now`, with their
    /// expiry: what the cache's `deny:` marks are rebuilt from.
    async fn denied_tokens(&self, now: Timestamp) -> StoreResult<Vec<(String, Timestamp)>>;
    /// Revokes one session (and its tokens). `false` if it was not active.
    async fn revoke_session(&self, id: Id, now: Timestamp, audit: &AuditEvent)
    -> StoreResult<bool>;
    /// Revokes every active session of the account except `keep`; returns their ids.
    async fn revoke_account_sessions(
        &self,
        account_id: Id,
        keep: Option<Id>,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Vec<Id>>;
    /// Counts rows by status (used by operations tooling and the fault tests).
    async fn count_sessions(&self) -> StoreResult<u64>;
}

/// Token-signing keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>>;
    /// Adds `key` as the newest signing key and retires the others as of `now`, atomically.
    async fn rotate_signing_key(&self, key: &SigningKey, now: Timestamp) -> StoreResult<()>;
    /// Adds `key` only if no signing key exists yet (first start; safe under races).
    async fn insert_first_signing_key(&self, key: &SigningKey) -> StoreResult<()>;
    /// Replaces key `kid`'s stored private half `old` by `new` (sealing a key written in
    /// clear) in one conditional update; `false` if the row no longer holds `old`.
    async fn reseal_signing_key(&self, kid: &str, old: &[u8], new: &[u8]) -> StoreResult<bool>;
}

/// Instance settings and server secrets, as JSON values by key.
#[async_trait]
pub trait SettingStore: Send + Sync {
    async fn setting(&self, key: &str) -> StoreResult<Option<serde_json::Value>>;
    async fn put_setting(
        &self,
        key: &str,
        value: &serde_json::Value,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Stores `value` unless the key exists; returns whichever value is stored.
    async fn setting_or_insert(
        &self,
        key: &str,
        value: &serde_json::Value,
        now: Timestamp,
    ) -> StoreResult<serde_json::Value>;
}

/// The audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit(&self, events: &[AuditEvent]) -> StoreResult<()>;
    async fn list_audit(&self, filter: &AuditFilter, page: Page) -> StoreResult<Paged<AuditEvent>>;
    /// Deletes events older than `before`; returns how many.
    async fn prune_audit(&self, before: Timestamp) -> StoreResult<u64>;
}

/// Second factors: the TOTP secret, recovery codes and trusted devices.
#[async_trait]
pub trait MfaStore: Send + Sync {
    /// The account's TOTP credential, pending or active.
    async fn totp(&self, account_id: Id) -> StoreResult<Option<TotpCredential>>;
    /// Stores a pending TOTP secret, replacing an earlier pending one. `false` (nothing
    /// stored) if the account already has an active one.
    async fn put_pending_totp(
        &self,
        account_id: Id,
        secret: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Activates the pending secret with `step` as its first used step, replaces the
    /// recovery codes (hashes) and writes the audit row, in one transaction. `false` if
    /// there was no pending secret.
    async fn confirm_totp(
        &self,
        account_id: Id,
        step: i64,
        recovery_hashes: &[String],
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// Spends time-step `step` of the active secret in one conditional update, so a code
    /// is accepted once: `false` if `step` is not newer than the last one used.
    async fn use_totp_step(&self, account_id: Id, step: i64, now: Timestamp) -> StoreResult<bool>;
    /// Replaces every recovery code (hashes) and writes the audit row, atomically.
    async fn replace_recovery_codes(
        &self,
        account_id: Id,
        hashes: &[String],
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// Marks an unused recovery code used in one conditional update; `false` if there is
    /// no such unused code.
    async fn use_recovery_code(
        &self,
        account_id: Id,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Unused recovery codes left.
    async fn recovery_codes_left(&self, account_id: Id) -> StoreResult<u64>;
    /// Deletes the TOTP secret, the recovery codes and the trusted devices, and writes the
    /// audit row, atomically. `true` if there was a TOTP secret.
    async fn remove_mfa(&self, account_id: Id, audit: &AuditEvent) -> StoreResult<bool>;
    /// Stores a trusted device by the SHA-256 of its cookie token, with the audit row.
    async fn add_trusted_device(
        &self,
        device: &TrustedDevice,
        token_hash: &[u8],
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// `true` (and records the use) if `token_hash` is a live device of the account.
    async fn use_trusted_device(
        &self,
        account_id: Id,
        token_hash: &[u8],
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// The account's live trusted devices, newest first.
    async fn trusted_devices(
        &self,
        account_id: Id,
        now: Timestamp,
    ) -> StoreResult<Vec<TrustedDevice>>;
    /// Revokes one device (`Some(id)`) or all of them, with the audit row; returns how many.
    async fn revoke_trusted_devices(
        &self,
        account_id: Id,
        id: Option<Id>,
        audit: &AuditEvent,
    ) -> StoreResult<u64>;
}

/// Workspaces, branches, memberships and roles. Every change writes its audit row in the
/// same transaction; `Conflict` on a taken slug, code or membership.
#[async_trait]
pub trait TenancyStore: Send + Sync {
    async fn create_workspace(&self, w: &Workspace, audit: &AuditEvent) -> StoreResult<()>;
    async fn workspace_by_id(&self, id: Id) -> StoreResult<Option<Workspace>>;
    async fn workspace_by_slug(&self, slug: &str) -> StoreResult<Option<Workspace>>;
    async fn list_workspaces(&self, page: Page) -> StoreResult<Paged<Workspace>>;
    async fn set_workspace_status(
        &self,
        id: Id,
        status: Status,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Workspace>>;
    async fn create_branch(&self, b: &Branch, audit: &AuditEvent) -> StoreResult<()>;
    async fn branch_by_id(&self, id: Id) -> StoreResult<Option<Branch>>;
    async fn branch_by_code(&self, workspace_id: Id, code: &str) -> StoreResult<Option<Branch>>;
    async fn list_branches(&self, workspace_id: Id, page: Page) -> StoreResult<Paged<Branch>>;
    async fn set_branch_status(
        &self,
        id: Id,
        status: Status,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Branch>>;
    /// Inserts the member, its branch memberships and workspace-wide roles, atomically.
    async fn create_member(&self, new: &NewMember, audit: &AuditEvent) -> StoreResult<()>;
    async fn member_by_id(&self, id: Id) -> StoreResult<Option<Member>>;
    async fn member_of(&self, account_id: Id, workspace_id: Id) -> StoreResult<Option<Member>>;
    async fn list_members(&self, workspace_id: Id, page: Page) -> StoreResult<Paged<Member>>;
    async fn set_member_status(
        &self,
        id: Id,
        status: Status,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Member>>;
    async fn create_role(&self, role: &Role, audit: &AuditEvent) -> StoreResult<()>;
    /// The role `code` usable in `workspace_id`: the workspace's own first, else the global one.
    async fn role_for(&self, workspace_id: Option<Id>, code: &str) -> StoreResult<Option<Role>>;
    /// Global roles plus those of `workspace_id`; every role when `None`.
    async fn list_roles(&self, workspace_id: Option<Id>, page: Page) -> StoreResult<Paged<Role>>;
    /// Grants a role to the member (workspace-wide) or to its membership of `branch_id`.
    /// `false` if the member has no such branch membership. Granting twice is a no-op.
    async fn grant_role(
        &self,
        member_id: Id,
        branch_id: Option<Id>,
        role_id: Id,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// Takes a role back; `false` if it was not held there.
    async fn revoke_role(
        &self,
        member_id: Id,
        branch_id: Option<Id>,
        role_id: Id,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// Records a pending invitation with its audit row. A pending invitation of the same
    /// account to the same workspace that expired by `invitation.created_at` is marked
    /// `EXPIRED` first; one still running is `Conflict`.
    async fn create_invitation(
        &self,
        invitation: &Invitation,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    async fn invitation_by_id(&self, id: Id) -> StoreResult<Option<Invitation>>;
    /// A workspace's invitations, newest first.
    async fn list_invitations(
        &self,
        workspace_id: Id,
        page: Page,
    ) -> StoreResult<Paged<Invitation>>;
    /// The account's invitations still pending and unexpired at `now`, newest first.
    async fn pending_invitations(
        &self,
        account_id: Id,
        now: Timestamp,
    ) -> StoreResult<Vec<Invitation>>;
    /// Ends an invitation that is pending and unexpired at `now` with `status`, writing
    /// the audit row; with `member` (accepting), that membership is created in the same
    /// transaction (`Conflict` if the account already is a member). `None`, and no change,
    /// if the invitation was not pending any more.
    async fn decide_invitation(
        &self,
        id: Id,
        status: InvitationStatus,
        now: Timestamp,
        member: Option<&NewMember>,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Invitation>>;
    /// Every membership of the account, one row per branch (or one without a branch).
    async fn memberships(&self, account_id: Id) -> StoreResult<Vec<Membership>>;
    /// The member's workspace-wide roles plus, with `branch_id`, those of that branch.
    async fn member_roles(&self, member_id: Id, branch_id: Option<Id>) -> StoreResult<Vec<Role>>;
    /// Points an active session at a workspace and branch and, with `token`, replaces its
    /// live refresh tokens by `token`, and, with `deny` (a `jti` and its expiry), records
    /// that access token as denied — in one transaction, which also drops expired denials.
    /// `false`, and no change, if the session is not active.
    async fn set_session_context(
        &self,
        session_id: Id,
        workspace_id: Option<Id>,
        branch_id: Option<Id>,
        token: Option<&NewToken>,
        deny: Option<&(String, Timestamp)>,
        now: Timestamp,
    ) -> StoreResult<bool>;
}

/// Personal access tokens: rows keyed by the SHA-256 of the token text. Every change writes
/// its audit row in the same transaction.
#[async_trait]
pub trait PatStore: Send + Sync {
    /// Inserts a token by its hash; `Conflict` if the hash is taken.
    async fn create_pat(
        &self,
        pat: &PersonalAccessToken,
        hash: &[u8],
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// The token with this hash, whatever its state (revoked ones too, for the audit of a
    /// use after revocation).
    async fn pat_by_hash(&self, hash: &[u8]) -> StoreResult<Option<PersonalAccessToken>>;
    /// The account's tokens that are not revoked, newest first.
    async fn list_pats(&self, account_id: Id) -> StoreResult<Vec<PersonalAccessToken>>;
    /// Revokes the account's token `id`, with the audit row; returns its hash (so caches
    /// can forget it), or `None` if there is no such live token of that account.
    async fn revoke_pat(
        &self,
        account_id: Id,
        id: Id,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Vec<u8>>>;
    /// Records a use (time and IP) unless one was recorded less than `min_gap_ms` ago, in
    /// one conditional update; `true` if this call wrote.
    async fn touch_pat(
        &self,
        id: Id,
        now: Timestamp,
        ip: Option<&str>,
        min_gap_ms: i64,
    ) -> StoreResult<bool>;
}

/// Service accounts and their API keys. Every change writes its audit row in the same
/// transaction.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Service accounts, oldest first.
    async fn list_service_accounts(&self, page: Page) -> StoreResult<Paged<Account>>;
    /// Deletes a service account (with its keys, roles and memberships); `false` if there
    /// is no such service account.
    async fn delete_service_account(&self, id: Id, audit: &AuditEvent) -> StoreResult<bool>;
    /// Inserts a key with the hash of its secret; `Conflict` if the access key is taken.
    async fn create_api_key(
        &self,
        key: &ApiKey,
        secret_hash: &[u8],
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// The key with this access key and the hash of its current secret.
    async fn api_key_by_access_key(
        &self,
        access_key: &str,
    ) -> StoreResult<Option<(ApiKey, Vec<u8>)>>;
    async fn api_key_by_id(&self, id: Id) -> StoreResult<Option<ApiKey>>;
    /// Keys, oldest first; only those of `account_id` when given.
    async fn list_api_keys(&self, account_id: Option<Id>, page: Page)
    -> StoreResult<Paged<ApiKey>>;
    /// Sets a key's status; `None` if there is no such key.
    async fn set_api_key_status(
        &self,
        id: Id,
        status: Status,
        audit: &AuditEvent,
    ) -> StoreResult<Option<ApiKey>>;
    /// Replaces a key's secret (the old one stops working at once); `None` if there is no
    /// such key.
    async fn rotate_api_key(
        &self,
        id: Id,
        secret_hash: &[u8],
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Option<ApiKey>>;
    /// Deletes a key; `false` if there was none.
    async fn delete_api_key(&self, id: Id, audit: &AuditEvent) -> StoreResult<bool>;
    /// Records a use unless one was recorded less than `min_gap_ms` ago; `true` if written.
    async fn touch_api_key(
        &self,
        id: Id,
        now: Timestamp,
        ip: Option<&str>,
        min_gap_ms: i64,
    ) -> StoreResult<bool>;
}

/// Everything durable, as one handle.
#[async_trait]
pub trait Store:
    AccountStore
    + CredentialStore
    + SessionStore
    + KeyStore
    + SettingStore
    + AuditStore
    + MfaStore
    + TenancyStore
    + PatStore
    + ApiKeyStore
    + crate::sso::SsoStore
    + crate::mail::MailStore
{
    /// Cheap reachability check for `/ready`.
    async fn ping(&self) -> StoreResult<()>;
    /// Short name for logs and `/ready`: `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
}

/// Why a cache call failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache unavailable: {0}")]
    Unavailable(String),
}

/// The result of a cache call.
pub type CacheResult<T> = Result<T, CacheError>;

/// Short-lived shared state: denylist, revocation marks, counters, challenges. Every
/// operation is atomic, and the same across instances when backed by Redis.
#[async_trait]
pub trait Cache: Send + Sync {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>>;
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<()>;
    /// Sets only if absent; `true` if this call set it.
    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<bool>;
    /// Gets and deletes in one step: two racing takers cannot both get the value.
    async fn take(&self, key: &str) -> CacheResult<Option<Vec<u8>>>;
    async fn delete(&self, key: &str) -> CacheResult<()>;
    /// True if any of the keys exists (one round trip).
    async fn exists_any(&self, keys: &[&str]) -> CacheResult<bool>;
    /// Increments a counter; a new counter expires after `ttl`. Returns the new value.
    async fn incr(&self, key: &str, ttl: Duration) -> CacheResult<i64>;
    /// Remaining lifetime of a key, if it exists and expires.
    async fn ttl(&self, key: &str) -> CacheResult<Option<Duration>>;
    async fn ping(&self) -> CacheResult<()>;
    /// Short name for logs and `/ready`: `memory` or `redis`.
    fn backend(&self) -> &'static str;
}

/// The time source. Injected so expiry is testable without waiting.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp::from_millis(i64::try_from(ms).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t = t.plus(d);
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.0
            .lock()
            .map(|t| *t)
            .unwrap_or(Timestamp::from_millis(0))
    }
}
