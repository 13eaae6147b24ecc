//! The in-memory cache: a mutex-guarded map with expiry by the injected clock.

use async_trait::async_trait;
use gatehouse_domain::Timestamp;
use gatehouse_domain::ports::{Cache, CacheError, CacheResult, Clock};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

struct Entry {
    value: Vec<u8>,
    expires: Timestamp,
}

/// A single-process cache. Correct for one instance only; `config check` refuses it for a
/// cluster.
pub struct MemoryCache {
    map: Mutex<Map>,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct Map {
    entries: HashMap<String, Entry>,
    writes: u64,
}

impl MemoryCache {
    /// An empty cache on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            map: Mutex::new(Map::default()),
            clock,
        }
    }

    fn lock(&self) -> CacheResult<MutexGuard<'_, Map>> {
        self.map
            .lock()
            .map_err(|_| CacheError::Unavailable("memory cache poisoned".into()))
    }

    fn live<'a>(map: &'a mut Map, key: &str, now: Timestamp) -> Option<&'a mut Entry> {
        if map.entries.get(key).is_some_and(|e| e.expires <= now) {
            map.entries.remove(key);
        }
        map.entries.get_mut(key)
    }

    fn insert(&self, map: &mut Map, key: &str, value: Vec<u8>, ttl: Duration, now: Timestamp) {
        map.writes += 1;
        // Sweep now and then so expired keys do not pile up.
        if map.writes.is_multiple_of(4096) {
            map.entries.retain(|_, e| e.expires > now);
        }
        map.entries.insert(
            key.to_string(),
            Entry {
                value,
                expires: now.plus(ttl),
            },
        );
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        let now = self.clock.now();
        Ok(Self::live(&mut *self.lock()?, key, now).map(|e| e.value.clone()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<()> {
        let now = self.clock.now();
        let mut map = self.lock()?;
        self.insert(&mut map, key, value.to_vec(), ttl, now);
        Ok(())
    }

    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<bool> {
        let now = self.clock.now();
        let mut map = self.lock()?;
        if Self::live(&mut map, key, now).is_some() {
            return Ok(false);
        }
        self.insert(&mut map, key, value.to_vec(), ttl, now);
        Ok(true)
    }

    async fn take(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        let now = self.clock.now();
        let mut map = self.lock()?;
        Ok(map
            .entries
            .remove(key)
            .filter(|e| e.expires > now)
            .map(|e| e.value))
    }

    async fn delete(&self, key: &str) -> CacheResult<()> {
        self.lock()?.entries.remove(key);
        Ok(())
    }

    async fn exists_any(&self, keys: &[&str]) -> CacheResult<bool> {
        let now = self.clock.now();
        let map = self.lock()?;
        Ok(keys
            .iter()
            .any(|k| map.entries.get(*k).is_some_and(|e| e.expires > now)))
    }

    async fn incr(&self, key: &str, ttl: Duration) -> CacheResult<i64> {
        let now = self.clock.now();
        let mut map = self.lock()?;
        if let Some(e) = Self::live(&mut map, key, now) {
            let n = std::str::from_utf8(&e.value)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0)
                + 1;
            e.value = n.to_string().into_bytes();
            return Ok(n);
        }
        self.insert(&mut map, key, b"1".to_vec(), ttl, now);
        Ok(1)
    }

    async fn ttl(&self, key: &str) -> CacheResult<Option<Duration>> {
        let now = self.clock.now();
        Ok(Self::live(&mut *self.lock()?, key, now).map(|e| now.until(e.expires)))
    }

    async fn ping(&self) -> CacheResult<()> {
        self.lock().map(|_| ())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
