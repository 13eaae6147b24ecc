//! Service accounts and their API keys. A service account is an account of kind `service`:
//! it holds roles and memberships like any account but has no password, so it never signs
//! in interactively. An API key is a public access key (`gatehouse_ak_…`) and a secret key
//! (`gatehouse_sk_…`, shown once, stored by its SHA-256), both with the checksum of
//! [`crate::pat`], presented as HTTP Basic. A wrong secret and an unknown access key get
//! the same answer; the secret is compared in constant time.

use crate::audit::{AuditExt, event};
use crate::authz::{Permission, Scope};
use crate::cred_cache;
use crate::pat::{new_credential, parse_scopes, scope_set, well_formed};
use crate::service::{AuthVia, CredentialKind, Principal, RequestMeta, Service, TokenGrant};
use crate::tokens::digest;
use base64::Engine as _;
use gatehouse_domain::ids::new_id;
use gatehouse_domain::model::{Account, AccountKind, AccountStatus, ApiKey, Page, Paged, Status};
use gatehouse_domain::ports::NewAccount;
use gatehouse_domain::values::Username;
use gatehouse_domain::{AppError, Code, FieldError, Id, Secret};
use subtle::ConstantTimeEq as _;

/// What every access key starts with.
pub const ACCESS_KEY_PREFIX: &str = "gatehouse_ak_";
/// What every secret key starts with.
pub const SECRET_KEY_PREFIX: &str = "gatehouse_sk_";
/// The domain of the placeholder addresses service accounts get (reserved, RFC 2606: no
/// mail goes there and no identity provider can vouch for it).
pub const SERVICE_EMAIL_DOMAIN: &str = "service.invalid";
/// Uses of one key closer together than this are recorded once.
const TOUCH_GAP_MS: i64 = 60_000;

/// A service account to create (`POST /admin/service-accounts`).
#[derive(Clone, Debug, Default)]
pub struct NewServiceAccount {
    pub username: String,
    pub display_name: Option<String>,
    pub roles: Vec<String>,
}

/// An API key to create (`POST /admin/api-keys`).
#[derive(Clone, Debug, Default)]
pub struct NewApiKey {
    pub name: String,
    pub service_account_id: Id,
    pub scopes: Option<Vec<String>>,
    pub expires_in_days: Option<u64>,
}

/// The access key and secret key of an HTTP Basic `Authorization` value (after `Basic `).
pub fn parse_basic(encoded: &str) -> Option<(String, Secret)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, secret) = text.split_once(':')?;
    Some((user.to_string(), Secret::new(secret)))
}

impl Service {
    /// Creates a service account: no password, the given global roles.
    pub async fn create_service_account(
        &self,
        p: &Principal,
        input: NewServiceAccount,
        meta: &RequestMeta,
    ) -> Result<Account, AppError> {
        let actor = self
            .require_permission(p, Permission::UsersWrite, Scope::Instance)
            .await?;
        let mut errors = Vec::new();
        let username = Username::parse(&input.username);
        if username.is_none() {
            errors.push(FieldError::new("username", "invalid_username"));
        }
        let display_name = input
            .display_name
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty());
        if display_name
            .as_ref()
            .is_some_and(|d| d.chars().count() > 200)
        {
            errors.push(FieldError::new("displayName", "too_long"));
        }
        let mut roles: Vec<String> = input
            .roles
            .iter()
            .map(|r| r.trim().to_lowercase())
            .collect();
        roles.sort();
        roles.dedup();
        if roles
            .iter()
            .any(|r| !crate::admin::GLOBAL_ROLES.contains(&r.as_str()))
        {
            errors.push(FieldError::new("roles", "invalid"));
        }
        let (Some(username), true) = (username, errors.is_empty()) else {
            return Err(AppError::validation(errors));
        };
        let now = self.now();
        let account = Account {
            id: new_id(),
            email: format!("{}@{SERVICE_EMAIL_DOMAIN}", username.as_str()),
            username: Some(username.as_str().to_string()),
            display_name,
            status: AccountStatus::Active,
            kind: AccountKind::Service,
            must_change_password: false,
            roles,
            created_at: now,
            updated_at: now,
            last_login_at: None,
        };
        let audit = event(meta, now, "admin.service_account.create", "success")
            .actor(Some(actor.id))
            .target(Some(account.id))
            .details(serde_json::json!({ "username": account.username, "roles": account.roles }));
        // A service account has no mailbox to confirm: nothing upstream may link to it.
        let new = NewAccount {
            account: account.clone(),
            password_hash: None,
            email_verified: false,
        };
        self.store.create_account(&new, &audit).await?;
        Ok(account)
    }

    /// Service accounts, oldest first.
    pub async fn list_service_accounts(
        &self,
        p: &Principal,
        page: Page,
    ) -> Result<Paged<Account>, AppError> {
        self.require_permission(p, Permission::UsersRead, Scope::Instance)
            .await?;
        Ok(self.store.list_service_accounts(page).await?)
    }

    /// The service account `id`; `NOT_FOUND` for anything else (people included).
    async fn service_account(&self, id: Id) -> Result<Account, AppError> {
        self.store
            .account_by_id(id)
            .await?
            .filter(|a| a.kind == AccountKind::Service)
            .ok_or_else(|| Code::NOT_FOUND.into())
    }

    /// Disables or enables a service account (its keys stop or start working at once).
    pub async fn set_service_account_status(
        &self,
        p: &Principal,
        id: Id,
        status: AccountStatus,
        meta: &RequestMeta,
    ) -> Result<Account, AppError> {
        let actor = self
            .require_permission(p, Permission::UsersWrite, Scope::Instance)
            .await?;
        self.service_account(id).await?;
        self.set_user_status(Some(actor.id), id, status, meta).await
    }

    /// Deletes a service account with its keys, roles and memberships.
    pub async fn delete_service_account(
        &self,
        p: &Principal,
        id: Id,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let actor = self
            .require_permission(p, Permission::UsersWrite, Scope::Instance)
            .await?;
        let audit = event(meta, self.now(), "admin.service_account.delete", "success")
            .actor(Some(actor.id))
            .target(Some(id));
        // Its keys' cached copies go too; listed first, as deleting takes the rows.
        let mut keys = Vec::new();
        let mut page = 1;
        loop {
            let found = self
                .store
                .list_api_keys(
                    Some(id),
                    Page {
                        page,
                        page_size: 100,
                    },
                )
                .await?;
            let n = found.items.len();
            keys.extend(found.items.into_iter().map(|k| k.access_key));
            if n < 100 {
                break;
            }
            page += 1;
        }
        let deleted = self.store.delete_service_account(id, &audit).await;
        self.account_changed(id);
        if !deleted? {
            return Err(Code::NOT_FOUND.into());
        }
        for access_key in keys {
            self.forget_credential(&cred_cache::api_key_key(&access_key))
                .await?;
        }
        Ok(())
    }

    /// Creates an API key for a service account; the secret key is returned once. Needs a
    /// signed-in session: no token mints credentials.
    pub async fn create_api_key(
        &self,
        p: &Principal,
        input: NewApiKey,
        meta: &RequestMeta,
    ) -> Result<(ApiKey, Secret), AppError> {
        p.require_session()?;
        let actor = self
            .require_permission(p, Permission::ApiKeysWrite, Scope::Instance)
            .await?;
        let name = input.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(AppError::validation(vec![FieldError::new(
                "name", "invalid",
            )]));
        }
        let scopes = parse_scopes(input.scopes)?;
        let lifetime = self.credential_lifetime(input.expires_in_days)?;
        let owner = self
            .service_account(input.service_account_id)
            .await
            .map_err(|_| {
                AppError::validation(vec![FieldError::new("serviceAccountId", "invalid")])
            })?;
        let now = self.now();
        let key = ApiKey {
            id: new_id(),
            account_id: owner.id,
            name,
            access_key: new_credential(ACCESS_KEY_PREFIX)?,
            scopes,
            status: Status::Active,
            created_at: now,
            expires_at: lifetime.map(|d| now.plus(d)),
            last_used_at: None,
            last_used_ip: None,
            rotated_at: None,
        };
        let secret = new_credential(SECRET_KEY_PREFIX)?;
        let audit = event(meta, now, "api_key.create", "success")
            .actor(Some(actor.id))
            .target(Some(owner.id))
            .details(
                serde_json::json!({ "keyId": key.id, "accessKey": key.access_key,
                "name": key.name, "scopes": key.scopes, "expiresAt": key.expires_at }),
            );
        self.store
            .create_api_key(&key, &digest(&secret), &audit)
            .await?;
        Ok((key, Secret::new(secret)))
    }

    /// API keys (never their secrets), oldest first; one service account's with `account`.
    pub async fn list_api_keys(
        &self,
        p: &Principal,
        account: Option<Id>,
        page: Page,
    ) -> Result<Paged<ApiKey>, AppError> {
        self.require_permission(p, Permission::ApiKeysRead, Scope::Instance)
            .await?;
        Ok(self.store.list_api_keys(account, page).await?)
    }

    /// Disables or enables a key.
    pub async fn set_api_key_status(
        &self,
        p: &Principal,
        id: Id,
        status: Status,
        meta: &RequestMeta,
    ) -> Result<ApiKey, AppError> {
        let actor = self
            .require_permission(p, Permission::ApiKeysWrite, Scope::Instance)
            .await?;
        let action = match status {
            Status::Active => "api_key.enable",
            Status::Disabled => "api_key.disable",
        };
        let audit = event(meta, self.now(), action, "success")
            .actor(Some(actor.id))
            .details(serde_json::json!({ "keyId": id }));
        let key = self
            .store
            .set_api_key_status(id, status, &audit)
            .await?
            .ok_or(Code::NOT_FOUND)?;
        self.forget_credential(&cred_cache::api_key_key(&key.access_key))
            .await?;
        Ok(key)
    }

    /// Gives a key a new secret (returned once); the old one is refused from now on.
    pub async fn rotate_api_key(
        &self,
        p: &Principal,
        id: Id,
        meta: &RequestMeta,
    ) -> Result<(ApiKey, Secret), AppError> {
        p.require_session()?;
        let actor = self
            .require_permission(p, Permission::ApiKeysWrite, Scope::Instance)
            .await?;
        let secret = new_credential(SECRET_KEY_PREFIX)?;
        let now = self.now();
        let audit = event(meta, now, "api_key.rotate", "success")
            .actor(Some(actor.id))
            .details(serde_json::json!({ "keyId": id }));
        let key = self
            .store
            .rotate_api_key(id, &digest(&secret), now, &audit)
            .await?
            .ok_or(Code::NOT_FOUND)?;
        self.forget_credential(&cred_cache::api_key_key(&key.access_key))
            .await?;
        Ok((key, Secret::new(secret)))
    }

    /// Deletes a key.
    pub async fn delete_api_key(
        &self,
        p: &Principal,
        id: Id,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let actor = self
            .require_permission(p, Permission::ApiKeysWrite, Scope::Instance)
            .await?;
        let audit = event(meta, self.now(), "api_key.delete", "success")
            .actor(Some(actor.id))
            .details(serde_json::json!({ "keyId": id }));
        let key = self.store.api_key_by_id(id).await?.ok_or(Code::NOT_FOUND)?;
        if !self.store.delete_api_key(id, &audit).await? {
            return Err(Code::NOT_FOUND.into());
        }
        self.forget_credential(&cred_cache::api_key_key(&key.access_key))
            .await
    }

    /// The key with this access key and its secret's hash: the shared cache's copy, else
    /// the store's (then cached unless a change marker is there). `true` with it: a live
    /// key due for its last-use stamp, for the caller to cache once that is written.
    async fn api_key_row(
        &self,
        access_key: &str,
    ) -> Result<(Option<(ApiKey, Vec<u8>)>, bool), AppError> {
        let ttl = std::time::Duration::from_secs(self.cfg.tokens.cache_seconds);
        let key = cred_cache::api_key_key(access_key);
        let mut marked = false;
        if !ttl.is_zero()
            && let Some(bytes) = self.cache.get(&key).await?
        {
            match serde_json::from_slice::<Option<cred_cache::CachedKey>>(&bytes) {
                Ok(Some(c)) => return Ok((Some(c.into_parts()), false)),
                Ok(None) => marked = true,
                Err(_) => {}
            }
        }
        self.metrics
            .inc("gatehouse_credential_lookups_total", &[("kind", "api_key")]);
        let row = self.store.api_key_by_access_key(access_key).await?;
        let Some((k, hash)) = row.as_ref().filter(|_| !marked && !ttl.is_zero()) else {
            return Ok((row, false));
        };
        let now = self.now();
        let live = k.status == Status::Active && k.expires_at.is_none_or(|e| e > now);
        let due = k
            .last_used_at
            .is_none_or(|t| now.millis() - t.millis() >= TOUCH_GAP_MS);
        if live && due {
            return Ok((row, true));
        }
        self.cache_api_key(k, hash).await;
        Ok((row, false))
    }

    /// Adds a copy of a key's row to the shared cache unless one (or a marker) is there.
    async fn cache_api_key(&self, k: &ApiKey, hash: &[u8]) {
        let ttl = std::time::Duration::from_secs(self.cfg.tokens.cache_seconds);
        let copy = serde_json::to_vec(&cred_cache::CachedKey::of(k, hash)).unwrap_or_default();
        if let Err(e) = self
            .cache
            .set_nx(&cred_cache::api_key_key(&k.access_key), &copy, ttl)
            .await
        {
            tracing::warn!(error = %e, "caching a key's row failed");
        }
    }

    /// Checks an API key. A malformed pair is refused before any store read; an unknown
    /// access key and a wrong secret get the same `TOKEN_INVALID`. Only the holder of the
    /// right secret learns that the key is disabled or expired, or its account disabled.
    pub async fn authenticate_api_key(
        &self,
        access_key: &str,
        secret: &Secret,
        meta: &RequestMeta,
    ) -> Result<Principal, AppError> {
        const CHECKS: &str = "gatehouse_credential_checks_total";
        let outcome = |o: &'static str| [("kind", "api_key"), ("outcome", o)];
        if !well_formed(ACCESS_KEY_PREFIX, access_key)
            || !well_formed(SECRET_KEY_PREFIX, secret.expose())
        {
            self.metrics.inc(CHECKS, &outcome("malformed"));
            return Err(Code::TOKEN_INVALID.into());
        }
        let (found, cache_later) = self.api_key_row(access_key).await?;
        let presented = digest(secret.expose());
        // Compared even for an unknown key, so both answers take the same work.
        let stored = found.as_ref().map_or(&[0u8; 32][..], |(_, h)| h.as_slice());
        let matches = bool::from(presented.ct_eq(stored));
        let Some((mut key, stored_hash)) = found.filter(|_| matches) else {
            self.metrics.inc(CHECKS, &outcome("invalid"));
            return Err(Code::TOKEN_INVALID.into());
        };
        let now = self.now();
        if key.status != Status::Active {
            self.metrics.inc(CHECKS, &outcome("disabled"));
            self.audit_refused_use("api_key.use_disabled", key.id, key.account_id, meta)
                .await;
            return Err(Code::TOKEN_REVOKED.into());
        }
        if key.expires_at.is_some_and(|e| e <= now) {
            self.metrics.inc(CHECKS, &outcome("expired"));
            return Err(Code::TOKEN_EXPIRED.into());
        }
        let principal = Principal {
            account_id: key.account_id,
            session_id: key.id,
            jti: None,
            via: AuthVia::Bearer,
            workspace_id: None,
            branch_id: None,
            token: Some(TokenGrant {
                kind: CredentialKind::ApiKey,
                id: key.id,
                name: key.name.clone(),
                scopes: scope_set(&key.scopes),
            }),
        };
        self.me(&principal).await?;
        if self.touch_due(key.id, key.last_used_at).await {
            let ip = meta.ip.as_deref();
            match self
                .store
                .touch_api_key(key.id, now, ip, TOUCH_GAP_MS)
                .await
            {
                Ok(_) => key.last_used_at = Some(now),
                Err(e) => tracing::warn!(error = %e, "recording a key's use failed"),
            }
            self.touched(key.id).await;
        }
        if cache_later {
            self.cache_api_key(&key, &stored_hash).await;
        }
        self.metrics.inc(CHECKS, &outcome("ok"));
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let enc = base64::engine::general_purpose::STANDARD.encode("ak:s:k");
        let (user, secret) = parse_basic(&enc).unwrap();
        assert_eq!((user.as_str(), secret.expose()), ("ak", "s:k"));
        assert!(parse_basic("not base64!").is_none());
        let no_colon = base64::engine::general_purpose::STANDARD.encode("ak");
        assert!(parse_basic(&no_colon).is_none());
    }
}
