//! Short-lived, per-instance copies of what the hot paths read on every request: accounts
//! (`GET /auth/me`, permission checks, refresh) and the instance settings (every login),
//! so a request carrying a valid token does not read the store.
//!
//! It is safe because it never decides whether a token is still good: revocation
//! (logout, disabled account, password change) is enforced by the shared cache's marks
//! before the account is looked up. What it may serve stale is the account's profile:
//! changes made through this instance drop the entry at once; changes made by another
//! instance or the CLI are seen within `session.account_cache_ms`. Settings are read fresh
//! wherever they are modified (no read-modify-write from a copy).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use gatehouse_domain::Timestamp;

/// Entries kept at most; when full, expired entries go first, then everything.
const CAPACITY: usize = 50_000;

pub(crate) struct ReadCache<K, V> {
    ttl_ms: i64,
    /// Bumped by every invalidation, so a read that raced a write never stores the old
    /// row: an entry is stored only if no invalidation happened since its read began.
    generation: AtomicU64,
    entries: RwLock<HashMap<K, (Arc<V>, Timestamp)>>,
}

impl<K: Eq + Hash + Copy, V> ReadCache<K, V> {
    pub(crate) fn new(ttl_ms: u64) -> Self {
        Self {
            ttl_ms: i64::try_from(ttl_ms).unwrap_or(i64::MAX),
            generation: AtomicU64::new(0),
            entries: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.ttl_ms > 0
    }

    /// The cached value if it was read less than the TTL ago.
    pub(crate) fn get(&self, key: K, now: Timestamp) -> Option<Arc<V>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let (value, at) = entries.get(&key)?;
        (now.millis() - at.millis() < self.ttl_ms && now >= *at).then(|| Arc::clone(value))
    }

    /// Call before reading the store; pass the value to [`AccountCache::put`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Stores `value` read at `now`, unless an invalidation happened since `generation`.
    pub(crate) fn put(&self, generation: u64, key: K, value: Arc<V>, now: Timestamp) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= CAPACITY && !entries.contains_key(&key) {
            let ttl = self.ttl_ms;
            entries.retain(|_, (_, at)| now.millis() - at.millis() < ttl);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, (value, now));
    }

    /// Forgets `key`; call after the store committed a change to it.
    pub(crate) fn invalidate(&self, key: K) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_domain::Id;
    use gatehouse_domain::model::{Account, AccountStatus};

    fn account(email: &str) -> Arc<Account> {
        Arc::new(Account {
            id: Id::nil(),
            email: email.into(),
            username: None,
            display_name: None,
            status: AccountStatus::Active,
            kind: Default::default(),
            must_change_password: false,
            roles: Vec::new(),
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
            last_login_at: None,
        })
    }

    #[test]
    fn serves_within_the_ttl_only() {
        let c = ReadCache::<Id, Account>::new(1000);
        let g = c.generation();
        c.put(
            g,
            Id::nil(),
            account("a@x.test"),
            Timestamp::from_millis(10_000),
        );
        assert!(c.get(Id::nil(), Timestamp::from_millis(10_999)).is_some());
        assert!(c.get(Id::nil(), Timestamp::from_millis(11_000)).is_none());
        assert!(c.get(Id::nil(), Timestamp::from_millis(9_000)).is_none());
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_stored() {
        let c = ReadCache::<Id, Account>::new(1000);
        let before = c.generation();
        c.invalidate(Id::nil());
        c.put(
            before,
            Id::nil(),
            account("old@x.test"),
            Timestamp::from_millis(0),
        );
        assert!(c.get(Id::nil(), Timestamp::from_millis(1)).is_none());
        let g = c.generation();
        c.put(
            g,
            Id::nil(),
            account("new@x.test"),
            Timestamp::from_millis(0),
        );
        c.invalidate(Id::nil());
        assert!(c.get(Id::nil(), Timestamp::from_millis(1)).is_none());
    }

    #[test]
    fn zero_ttl_disables_it() {
        assert!(!ReadCache::<Id, Account>::new(0).enabled());
        assert!(ReadCache::<Id, Account>::new(1).enabled());
    }
}
