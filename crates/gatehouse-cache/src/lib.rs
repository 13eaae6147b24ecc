//! Gatehouse cache adapters behind the domain's `Cache` port: in-memory for one process,
//! Redis for a cluster.

mod memory;
mod redis_cache;

pub use memory::MemoryCache;
pub use redis_cache::{RedisCache, RedisOptions};

use gatehouse_domain::ports::{Cache, CacheError, Clock};
use std::sync::Arc;

/// Opens the cache named by `url`: `memory` (or empty) or `redis://…`.
pub async fn connect(
    url: &str,
    opts: RedisOptions,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Cache>, CacheError> {
    if url.is_empty() || url == "memory" || url == "memory://" {
        Ok(Arc::new(MemoryCache::new(clock)))
    } else if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(Arc::new(RedisCache::connect(url, opts).await?))
    } else {
        Err(CacheError::Unavailable(
            "cache.url must be memory or redis://…".into(),
        ))
    }
}
