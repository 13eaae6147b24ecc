//! The shared cache's copy of credential rows, so checking a personal access token or an
//! API key costs a cache read instead of a store read. The store stays the source of truth:
//! a copy lives `tokens.cache_seconds`, is only ever added where none is (`set_nx`), and
//! every revocation, rotation or status change overwrites it with a marker (`null`) that
//! sends the next check to the store for as long as a copy could live. With Redis every
//! instance shares these entries, so a revocation is seen everywhere on the next request.

use gatehouse_domain::model::{ApiKey, PersonalAccessToken, Status};
use gatehouse_domain::{Id, Timestamp};
use serde::{Deserialize, Serialize};

/// The marker that keeps a revoked or changed credential out of the cache.
pub(crate) const GONE: &[u8] = b"null";

/// The cache key of a personal access token, by the SHA-256 of its text.
pub(crate) fn pat_key(hash: &[u8]) -> String {
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("pat:{hex}")
}

/// The cache key of an API key, by its access key.
pub(crate) fn api_key_key(access_key: &str) -> String {
    format!("akey:{access_key}")
}

/// The key holding when a credential's use was last recorded (milliseconds).
pub(crate) fn touch_key(id: Id) -> String {
    format!("credtouch:{id}")
}

/// A personal access token as cached (times in milliseconds).
#[derive(Serialize, Deserialize)]
pub(crate) struct CachedPat {
    id: Id,
    account_id: Id,
    name: String,
    scopes: Option<Vec<String>>,
    workspace_id: Option<Id>,
    branch_id: Option<Id>,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl From<&PersonalAccessToken> for CachedPat {
    fn from(p: &PersonalAccessToken) -> Self {
        Self {
            id: p.id,
            account_id: p.account_id,
            name: p.name.clone(),
            scopes: p.scopes.clone(),
            workspace_id: p.workspace_id,
            branch_id: p.branch_id,
            created_at: p.created_at.millis(),
            expires_at: p.expires_at.map(Timestamp::millis),
            last_used_at: p.last_used_at.map(Timestamp::millis),
            revoked_at: p.revoked_at.map(Timestamp::millis),
        }
    }
}

impl From<CachedPat> for PersonalAccessToken {
    fn from(c: CachedPat) -> Self {
        Self {
            id: c.id,
            account_id: c.account_id,
            name: c.name,
            scopes: c.scopes,
            workspace_id: c.workspace_id,
            branch_id: c.branch_id,
            created_at: Timestamp::from_millis(c.created_at),
            expires_at: c.expires_at.map(Timestamp::from_millis),
            last_used_at: c.last_used_at.map(Timestamp::from_millis),
            last_used_ip: None,
            revoked_at: c.revoked_at.map(Timestamp::from_millis),
        }
    }
}

/// An API key and the hash of its secret, as cached.
#[derive(Serialize, Deserialize)]
pub(crate) struct CachedKey {
    id: Id,
    account_id: Id,
    name: String,
    access_key: String,
    scopes: Option<Vec<String>>,
    active: bool,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    rotated_at: Option<i64>,
    secret_hash: Vec<u8>,
}

impl CachedKey {
    pub(crate) fn of(k: &ApiKey, secret_hash: &[u8]) -> Self {
        Self {
            id: k.id,
            account_id: k.account_id,
            name: k.name.clone(),
            access_key: k.access_key.clone(),
            scopes: k.scopes.clone(),
            active: k.status == Status::Active,
            created_at: k.created_at.millis(),
            expires_at: k.expires_at.map(Timestamp::millis),
            last_used_at: k.last_used_at.map(Timestamp::millis),
            rotated_at: k.rotated_at.map(Timestamp::millis),
            secret_hash: secret_hash.to_vec(),
        }
    }

    pub(crate) fn into_parts(self) -> (ApiKey, Vec<u8>) {
        let key = ApiKey {
            id: self.id,
            account_id: self.account_id,
            name: self.name,
            access_key: self.access_key,
            scopes: self.scopes,
            status: if self.active {
                Status::Active
            } else {
                Status::Disabled
            },
            created_at: Timestamp::from_millis(self.created_at),
            expires_at: self.expires_at.map(Timestamp::from_millis),
            last_used_at: self.last_used_at.map(Timestamp::from_millis),
            last_used_ip: None,
            rotated_at: self.rotated_at.map(Timestamp::from_millis),
        };
        (key, self.secret_hash)
    }
}
