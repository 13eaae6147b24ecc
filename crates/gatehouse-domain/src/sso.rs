//! Upstream sign-in (SSO): the external identities linked to accounts, the providers an
//! admin stores in the database, and the store port for both.

use crate::model::AuditEvent;
use crate::ports::{NewAccount, StoreResult};
use crate::{Id, Timestamp};
use async_trait::async_trait;
use serde::Serialize;

/// An upstream identity linked to a local account: resolved by (`provider`, `subject`) only.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalIdentity {
    pub id: Id,
    /// The provider's slug (`id` in its configuration).
    pub provider: String,
    /// The upstream `sub` (or the configured subject field).
    pub subject: String,
    pub account_id: Id,
    /// The e-mail the provider reported the last time, if any.
    pub email: Option<String>,
    /// This identity's first sign-in created the account.
    pub created_account: bool,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// A provider stored through the admin API. `settings` holds everything but the secret (as
/// the admin API's JSON); `sealed_secret` is the client secret sealed with
/// `secrets.encryption_key`, never in clear.
#[derive(Clone, PartialEq)]
pub struct StoredProvider {
    pub id: String,
    pub settings: serde_json::Value,
    pub sealed_secret: Vec<u8>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for StoredProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredProvider")
            .field("id", &self.id)
            .field("settings", &self.settings)
            .field("sealed_secret", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// What removing an identity came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlink {
    Removed,
    /// The account has no such identity.
    NotFound,
    /// It is the account's last way to sign in (no password, no other identity).
    LastWay,
}

/// External identities and stored providers. Every change writes its audit row in the same
/// transaction; `Conflict` on a taken (provider, subject), e-mail or provider id.
#[async_trait]
pub trait SsoStore: Send + Sync {
    async fn identity_by_subject(
        &self,
        provider: &str,
        subject: &str,
    ) -> StoreResult<Option<ExternalIdentity>>;
    /// The account's identities, oldest first.
    async fn identities_of(&self, account_id: Id) -> StoreResult<Vec<ExternalIdentity>>;
    /// Links `identity` to its (existing) account.
    async fn link_identity(
        &self,
        identity: &ExternalIdentity,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// Creates the account (no password) and its first identity together.
    async fn register_with_identity(
        &self,
        new: &NewAccount,
        identity: &ExternalIdentity,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// Records a sign-in through the identity and the e-mail seen.
    async fn touch_identity(&self, id: Id, email: Option<&str>, now: Timestamp) -> StoreResult<()>;
    /// Removes one of the account's identities unless it is its last way to sign in.
    async fn unlink_identity(
        &self,
        account_id: Id,
        id: Id,
        audit: &AuditEvent,
    ) -> StoreResult<Unlink>;
    /// Whether the account's e-mail is known to belong to it (created by an admin, by a
    /// provider that verified it, or confirmed); self-registered unconfirmed ones are not.
    async fn email_verified(&self, account_id: Id) -> StoreResult<bool>;
    async fn stored_providers(&self) -> StoreResult<Vec<StoredProvider>>;
    async fn stored_provider(&self, id: &str) -> StoreResult<Option<StoredProvider>>;
    async fn create_stored_provider(
        &self,
        p: &StoredProvider,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// Replaces settings and secret; `false` if there is no such provider.
    async fn update_stored_provider(
        &self,
        p: &StoredProvider,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// `false` if there is no such provider. Identities linked through it stay (a provider
    /// added again under the same id resolves them again).
    async fn delete_stored_provider(&self, id: &str, audit: &AuditEvent) -> StoreResult<bool>;
}
