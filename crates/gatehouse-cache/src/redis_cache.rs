//! The Redis cache: every key under a configurable prefix, atomic operations (GETDEL,
//! SET NX PX, a Lua INCR+PEXPIRE), and a connection manager that reconnects by itself.

use async_trait::async_trait;
use gatehouse_domain::ports::{Cache, CacheError, CacheResult};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// Connection settings (`[cache]`).
#[derive(Clone, Debug)]
pub struct RedisOptions {
    pub prefix: String,
    pub timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "gatehouse:".into(),
            timeout: Duration::from_secs(2),
        }
    }
}

/// A cache shared by every instance.
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
    incr: redis::Script,
}

fn unavailable(e: redis::RedisError) -> CacheError {
    CacheError::Unavailable(e.to_string())
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisCache {
    /// Connects; fails if Redis cannot be reached within the timeout.
    pub async fn connect(url: &str, opts: RedisOptions) -> CacheResult<Self> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.timeout))
            .set_response_timeout(Some(opts.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(
            opts.timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| CacheError::Unavailable("timed out connecting to redis".into()))?
        .map_err(unavailable)?;
        let incr = redis::Script::new(
            "local v = redis.call('INCR', KEYS[1]) \
             if v == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end \
             return v",
        );
        Ok(Self {
            conn,
            prefix: opts.prefix,
            incr,
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> CacheResult<T> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(unavailable)
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        self.run(redis::cmd("GET").arg(self.key(key))).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<()> {
        self.run(
            redis::cmd("SET")
                .arg(self.key(key))
                .arg(value)
                .arg("PX")
                .arg(ms(ttl)),
        )
        .await
    }

    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<bool> {
        let r: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(self.key(key))
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms(ttl)),
            )
            .await?;
        Ok(r.is_some())
    }

    async fn take(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        self.run(redis::cmd("GETDEL").arg(self.key(key))).await
    }

    async fn delete(&self, key: &str) -> CacheResult<()> {
        self.run(redis::cmd("DEL").arg(self.key(key))).await
    }

    async fn exists_any(&self, keys: &[&str]) -> CacheResult<bool> {
        if keys.is_empty() {
            return Ok(false);
        }
        let mut cmd = redis::cmd("EXISTS");
        for k in keys {
            cmd.arg(self.key(k));
        }
        let n: i64 = self.run(&cmd).await?;
        Ok(n > 0)
    }

    async fn incr(&self, key: &str, ttl: Duration) -> CacheResult<i64> {
        let mut conn = self.conn.clone();
        self.incr
            .key(self.key(key))
            .arg(ms(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn ttl(&self, key: &str) -> CacheResult<Option<Duration>> {
        let left: i64 = self.run(redis::cmd("PTTL").arg(self.key(key))).await?;
        Ok(u64::try_from(left).ok().map(Duration::from_millis))
    }

    async fn ping(&self) -> CacheResult<()> {
        let _: String = self.run(&redis::cmd("PING")).await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}
