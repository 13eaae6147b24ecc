#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Cache conformance: each behaviour of the `Cache` port is written once (`case_*`) and run
//! against every adapter: the memory cache always (on a manual clock), Redis when
//! `GATEHOUSE_TEST_REDIS_URL` is set (mandatory under `CI=true`). Every Redis test works under
//! its own key prefix and deletes its keys afterwards.

use gatehouse_cache::{MemoryCache, RedisCache, RedisOptions};
use gatehouse_domain::Timestamp;
use gatehouse_domain::ports::{Cache, ManualClock};
use redis::aio::MultiplexedConnection;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// A cache under test and the means to let time pass for it.
struct Harness {
    cache: Arc<dyn Cache>,
    time: Time,
}

enum Time {
    /// The memory cache's injected clock: expiry is exact and instant.
    Manual(Arc<ManualClock>),
    /// Redis expires keys on its own clock; a raw connection watches for it.
    Redis {
        url: String,
        prefix: String,
        base: String,
        raw: MultiplexedConnection,
    },
}

impl Harness {
    /// A TTL that passes quickly on this backend.
    fn short_ttl(&self) -> Duration {
        match self.time {
            Time::Manual(_) => Duration::from_secs(30),
            Time::Redis { .. } => Duration::from_millis(50),
        }
    }

    /// Lets `key`, set with `ttl`, expire: advances the manual clock, or polls Redis until the
    /// key is gone (bounded, so a TTL that never applies fails the test instead of hanging).
    async fn expire(&self, key: &str, ttl: Duration) {
        match &self.time {
            Time::Manual(clock) => clock.advance(ttl),
            Time::Redis { prefix, raw, .. } => {
                let full = format!("{prefix}{key}");
                let deadline = Instant::now() + ttl + Duration::from_secs(5);
                loop {
                    let exists: i64 = redis::cmd("EXISTS")
                        .arg(&full)
                        .query_async(&mut raw.clone())
                        .await
                        .unwrap();
                    if exists == 0 {
                        return;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{full} still exists 5 s after its TTL of {ttl:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Another Redis cache on the same server under `prefix`.
    async fn redis_peer(&self, prefix: &str) -> Arc<dyn Cache> {
        let Time::Redis { url, .. } = &self.time else {
            panic!("only Redis has peers");
        };
        Arc::new(
            RedisCache::connect(url, redis_options(prefix))
                .await
                .expect("connect peer"),
        )
    }

    /// This test's own prefix and the base that every prefix of this test starts with.
    fn redis_names(&self) -> (&str, &str) {
        let Time::Redis { prefix, base, .. } = &self.time else {
            panic!("only Redis has prefixes");
        };
        (prefix, base)
    }
}

async fn on_memory<F, Fut>(case: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()>,
{
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
    let cache = Arc::new(MemoryCache::new(clock.clone()));
    assert_eq!(cache.backend(), "memory");
    cache.ping().await.unwrap();
    case(Harness {
        cache,
        time: Time::Manual(clock),
    })
    .await;
}

async fn on_redis<F, Fut>(case: F)
where
    F: FnOnce(Harness) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = redis_url() else {
        return;
    };
    let base = format!("gh_test_{}", Uuid::new_v4().simple());
    let prefix = format!("{base}:");
    let raw = raw_connection(&url).await;
    let time = Time::Redis {
        url: url.clone(),
        prefix: prefix.clone(),
        base: base.clone(),
        raw: raw.clone(),
    };
    // The case runs in its own task so that a panic comes back as a value and the keys are
    // still deleted.
    let outcome = tokio::spawn(async move {
        let cache = RedisCache::connect(&url, redis_options(&prefix))
            .await
            .expect("connect to Redis");
        assert_eq!(cache.backend(), "redis");
        cache.ping().await.unwrap();
        case(Harness {
            cache: Arc::new(cache),
            time,
        })
        .await;
    })
    .await;
    delete_keys(raw, &format!("{base}*")).await;
    rethrow(outcome);
}

/// The Redis server to test against; its absence fails the run under `CI=true`.
fn redis_url() -> Option<String> {
    gatehouse_testkit::redis_url()
}

fn redis_options(prefix: &str) -> RedisOptions {
    RedisOptions {
        prefix: prefix.into(),
        timeout: Duration::from_secs(2),
    }
}

async fn raw_connection(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("GATEHOUSE_TEST_REDIS_URL is a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to GATEHOUSE_TEST_REDIS_URL")
}

/// Deletes every key matching `pattern` (SCAN, never KEYS).
async fn delete_keys(mut raw: MultiplexedConnection, pattern: &str) {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(&mut raw)
            .await
            .expect("SCAN");
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut raw)
                .await
                .expect("DEL");
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

use gatehouse_testkit::rethrow;

/// Generates `#[tokio::test]`s running each case on each backend.
macro_rules! conformance {
    ($($case:ident => $memory:ident, $redis:ident;)+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $memory() {
            on_memory($case).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $redis() {
            on_redis($case).await;
        }
    )+};
}

conformance! {
    case_set_then_get_returns_the_value =>
        set_then_get_returns_the_value_memory,
        set_then_get_returns_the_value_redis;
    case_set_replaces_value_and_ttl =>
        set_replaces_value_and_ttl_memory,
        set_replaces_value_and_ttl_redis;
    case_delete_removes_the_key =>
        delete_removes_the_key_memory,
        delete_removes_the_key_redis;
    case_set_nx_sets_only_when_absent =>
        set_nx_sets_only_when_absent_memory,
        set_nx_sets_only_when_absent_redis;
    case_set_nx_succeeds_once_the_key_expired =>
        set_nx_succeeds_once_the_key_expired_memory,
        set_nx_succeeds_once_the_key_expired_redis;
    case_take_returns_the_value_once =>
        take_returns_the_value_once_memory,
        take_returns_the_value_once_redis;
    case_concurrent_takes_get_the_value_at_most_once =>
        concurrent_takes_get_the_value_at_most_once_memory,
        concurrent_takes_get_the_value_at_most_once_redis;
    case_exists_any_is_true_when_any_key_exists =>
        exists_any_is_true_when_any_key_exists_memory,
        exists_any_is_true_when_any_key_exists_redis;
    case_exists_any_of_no_keys_is_false =>
        exists_any_of_no_keys_is_false_memory,
        exists_any_of_no_keys_is_false_redis;
    case_exists_any_ignores_expired_keys =>
        exists_any_ignores_expired_keys_memory,
        exists_any_ignores_expired_keys_redis;
    case_incr_starts_at_one_and_counts =>
        incr_starts_at_one_and_counts_memory,
        incr_starts_at_one_and_counts_redis;
    case_incr_ttl_applies_only_at_creation =>
        incr_ttl_applies_only_at_creation_memory,
        incr_ttl_applies_only_at_creation_redis;
    case_incr_restarts_at_one_after_expiry =>
        incr_restarts_at_one_after_expiry_memory,
        incr_restarts_at_one_after_expiry_redis;
    case_concurrent_incrs_count_every_call =>
        concurrent_incrs_count_every_call_memory,
        concurrent_incrs_count_every_call_redis;
    case_ttl_reports_the_remaining_lifetime =>
        ttl_reports_the_remaining_lifetime_memory,
        ttl_reports_the_remaining_lifetime_redis;
    case_expired_key_is_gone =>
        expired_key_is_gone_memory,
        expired_key_is_gone_redis;
}

// ---------------------------------------------------------------------------------------
// Cases for every backend
// ---------------------------------------------------------------------------------------

const LONG: Duration = Duration::from_secs(600);

/// Bytes that are not UTF-8, so no adapter gets away with treating values as text.
const BINARY: &[u8] = &[0, 159, 146, 150, 255, b'\n', b'\r', 1];

async fn case_set_then_get_returns_the_value(h: Harness) {
    let cache = &h.cache;
    assert_eq!(cache.get("challenge:a").await.unwrap(), None);

    cache.set("challenge:a", BINARY, LONG).await.unwrap();

    assert_eq!(
        cache.get("challenge:a").await.unwrap().as_deref(),
        Some(BINARY)
    );
    assert_eq!(cache.get("challenge:b").await.unwrap(), None);
}

async fn case_set_replaces_value_and_ttl(h: Harness) {
    let cache = &h.cache;
    cache
        .set("k", b"first", Duration::from_secs(60))
        .await
        .unwrap();

    cache
        .set("k", b"second", Duration::from_secs(3600))
        .await
        .unwrap();

    assert_eq!(
        cache.get("k").await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
    let left = cache.ttl("k").await.unwrap().expect("key has a ttl");
    assert!(
        left > Duration::from_secs(60),
        "the new ttl applies: {left:?}"
    );
}

async fn case_delete_removes_the_key(h: Harness) {
    let cache = &h.cache;
    cache.set("k", b"v", LONG).await.unwrap();
    cache.set("other", b"v", LONG).await.unwrap();

    cache.delete("k").await.unwrap();
    cache.delete("never-set").await.unwrap();

    assert_eq!(cache.get("k").await.unwrap(), None);
    assert_eq!(cache.ttl("k").await.unwrap(), None);
    assert_eq!(
        cache.get("other").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
}

async fn case_set_nx_sets_only_when_absent(h: Harness) {
    let cache = &h.cache;
    assert!(cache.set_nx("lock", b"first", LONG).await.unwrap());
    assert!(!cache.set_nx("lock", b"second", LONG).await.unwrap());
    assert_eq!(
        cache.get("lock").await.unwrap().as_deref(),
        Some(&b"first"[..])
    );

    cache.delete("lock").await.unwrap();

    assert!(cache.set_nx("lock", b"third", LONG).await.unwrap());
    assert_eq!(
        cache.get("lock").await.unwrap().as_deref(),
        Some(&b"third"[..])
    );
    assert!(
        cache.ttl("lock").await.unwrap().is_some(),
        "set_nx applies its ttl"
    );
}

async fn case_set_nx_succeeds_once_the_key_expired(h: Harness) {
    let cache = &h.cache;
    let short = h.short_ttl();
    cache.set("lock", b"old", short).await.unwrap();
    h.expire("lock", short).await;

    assert!(cache.set_nx("lock", b"new", LONG).await.unwrap());
    assert_eq!(
        cache.get("lock").await.unwrap().as_deref(),
        Some(&b"new"[..])
    );
}

async fn case_take_returns_the_value_once(h: Harness) {
    let cache = &h.cache;
    cache.set("code", BINARY, LONG).await.unwrap();

    assert_eq!(cache.take("code").await.unwrap().as_deref(), Some(BINARY));
    assert_eq!(cache.get("code").await.unwrap(), None);
    assert_eq!(cache.take("code").await.unwrap(), None);
    assert_eq!(cache.take("never-set").await.unwrap(), None);
}

async fn case_concurrent_takes_get_the_value_at_most_once(h: Harness) {
    const TAKERS: usize = 16;
    for round in 0..10 {
        let key = format!("once:{round}");
        h.cache
            .set(&key, format!("value {round}").as_bytes(), LONG)
            .await
            .unwrap();
        let start = Arc::new(Barrier::new(TAKERS));
        let mut takers = JoinSet::new();
        for _ in 0..TAKERS {
            let (cache, start, key) = (h.cache.clone(), start.clone(), key.clone());
            takers.spawn(async move {
                start.wait().await;
                cache.take(&key).await
            });
        }

        let mut got = Vec::new();
        while let Some(joined) = takers.join_next().await {
            if let Some(value) = joined.expect("taker finished").expect("take succeeded") {
                got.push(value);
            }
        }

        assert_eq!(
            got,
            vec![format!("value {round}").into_bytes()],
            "round {round}: exactly one taker"
        );
    }
}

async fn case_exists_any_is_true_when_any_key_exists(h: Harness) {
    let cache = &h.cache;
    assert!(!cache.exists_any(&["deny:a", "srev:b"]).await.unwrap());

    cache.set("srev:b", b"1", LONG).await.unwrap();

    assert!(cache.exists_any(&["deny:a", "srev:b"]).await.unwrap());
    assert!(cache.exists_any(&["srev:b"]).await.unwrap());
    assert!(!cache.exists_any(&["deny:a", "srev:c"]).await.unwrap());
}

async fn case_exists_any_of_no_keys_is_false(h: Harness) {
    h.cache.set("k", b"v", LONG).await.unwrap();

    assert!(!h.cache.exists_any(&[]).await.unwrap());
}

async fn case_exists_any_ignores_expired_keys(h: Harness) {
    let short = h.short_ttl();
    h.cache.set("deny:a", b"1", short).await.unwrap();
    h.expire("deny:a", short).await;

    assert!(!h.cache.exists_any(&["deny:a", "srev:b"]).await.unwrap());
}

async fn case_incr_starts_at_one_and_counts(h: Harness) {
    let cache = &h.cache;
    assert_eq!(cache.incr("fail:ann", LONG).await.unwrap(), 1);
    assert_eq!(cache.incr("fail:ann", LONG).await.unwrap(), 2);
    assert_eq!(cache.incr("fail:ann", LONG).await.unwrap(), 3);
    assert_eq!(cache.incr("fail:bob", LONG).await.unwrap(), 1);

    assert_eq!(
        cache.get("fail:ann").await.unwrap().as_deref(),
        Some(&b"3"[..])
    );
}

async fn case_incr_ttl_applies_only_at_creation(h: Harness) {
    let cache = &h.cache;
    let window = Duration::from_secs(10);
    assert_eq!(cache.incr("window", window).await.unwrap(), 1);

    assert_eq!(
        cache
            .incr("window", Duration::from_secs(3600))
            .await
            .unwrap(),
        2
    );

    let left = cache.ttl("window").await.unwrap().expect("counter expires");
    assert!(
        left <= window && left > window / 2,
        "the first ttl stays: {left:?}"
    );
}

async fn case_incr_restarts_at_one_after_expiry(h: Harness) {
    let short = h.short_ttl();
    assert_eq!(h.cache.incr("window", short).await.unwrap(), 1);
    h.expire("window", short).await;

    assert_eq!(h.cache.incr("window", LONG).await.unwrap(), 1);
    let left = h
        .cache
        .ttl("window")
        .await
        .unwrap()
        .expect("new counter expires");
    assert!(left > short, "the new counter has the new ttl: {left:?}");
}

async fn case_concurrent_incrs_count_every_call(h: Harness) {
    const CALLERS: usize = 32;
    let start = Arc::new(Barrier::new(CALLERS));
    let mut callers = JoinSet::new();
    for _ in 0..CALLERS {
        let (cache, start) = (h.cache.clone(), start.clone());
        callers.spawn(async move {
            start.wait().await;
            cache.incr("hits", LONG).await
        });
    }

    let mut seen = BTreeSet::new();
    while let Some(joined) = callers.join_next().await {
        seen.insert(joined.expect("caller finished").expect("incr succeeded"));
    }

    let expected: BTreeSet<i64> = (1..=32).collect();
    assert_eq!(seen, expected, "every caller gets its own count");
}

async fn case_ttl_reports_the_remaining_lifetime(h: Harness) {
    let cache = &h.cache;
    assert_eq!(cache.ttl("missing").await.unwrap(), None);

    cache.set("k", b"v", Duration::from_secs(60)).await.unwrap();

    let left = cache.ttl("k").await.unwrap().expect("key expires");
    assert!(
        left <= Duration::from_secs(60) && left > Duration::from_secs(30),
        "{left:?}"
    );
}

async fn case_expired_key_is_gone(h: Harness) {
    let cache = &h.cache;
    let short = h.short_ttl();
    cache.set("k", b"v", short).await.unwrap();
    cache.set("kept", b"v", LONG).await.unwrap();

    h.expire("k", short).await;

    assert_eq!(cache.get("k").await.unwrap(), None);
    assert_eq!(cache.ttl("k").await.unwrap(), None);
    assert_eq!(cache.take("k").await.unwrap(), None);
    assert_eq!(cache.get("kept").await.unwrap().as_deref(), Some(&b"v"[..]));
}

// ---------------------------------------------------------------------------------------
// Memory only: its clock is ours, so expiry can be checked to the millisecond.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn entry_lives_exactly_its_ttl_memory() {
    on_memory(|h| async move {
        let Time::Manual(clock) = &h.time else {
            unreachable!()
        };
        h.cache
            .set("k", b"v", Duration::from_secs(10))
            .await
            .unwrap();

        clock.advance(Duration::from_millis(9_999));
        assert_eq!(h.cache.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(
            h.cache.ttl("k").await.unwrap(),
            Some(Duration::from_millis(1))
        );
        assert!(h.cache.exists_any(&["k"]).await.unwrap());

        clock.advance(Duration::from_millis(1));
        assert_eq!(h.cache.get("k").await.unwrap(), None);
        assert!(!h.cache.exists_any(&["k"]).await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn incr_keeps_its_first_expiry_memory() {
    on_memory(|h| async move {
        let Time::Manual(clock) = &h.time else {
            unreachable!()
        };
        assert_eq!(h.cache.incr("n", Duration::from_secs(10)).await.unwrap(), 1);
        clock.advance(Duration::from_secs(9));
        assert_eq!(h.cache.incr("n", Duration::from_secs(10)).await.unwrap(), 2);

        clock.advance(Duration::from_secs(1));

        assert_eq!(
            h.cache.incr("n", Duration::from_secs(10)).await.unwrap(),
            1,
            "window over"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Redis only: instances meet through the server, separated by their prefixes.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_with_different_prefixes_do_not_see_each_others_keys_redis() {
    on_redis(|h| async move {
        let (_, base) = h.redis_names();
        let a = h.cache.clone();
        let b = h.redis_peer(&format!("{base}_other:")).await;

        a.set("k", b"from a", LONG).await.unwrap();
        assert_eq!(b.get("k").await.unwrap(), None);
        assert!(!b.exists_any(&["k"]).await.unwrap());
        assert_eq!(b.ttl("k").await.unwrap(), None);
        assert!(b.set_nx("k", b"from b", LONG).await.unwrap());

        assert_eq!(a.get("k").await.unwrap().as_deref(), Some(&b"from a"[..]));
        assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"from b"[..]));
        assert_eq!(a.incr("n", LONG).await.unwrap(), 1);
        assert_eq!(b.incr("n", LONG).await.unwrap(), 1);
        b.delete("k").await.unwrap();
        assert_eq!(a.take("k").await.unwrap().as_deref(), Some(&b"from a"[..]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_sharing_a_prefix_share_keys_redis() {
    on_redis(|h| async move {
        let (prefix, _) = h.redis_names();
        let a = h.cache.clone();
        let b = h.redis_peer(prefix).await;

        a.set("deny:jti", b"1", LONG).await.unwrap();
        assert!(b.exists_any(&["deny:jti"]).await.unwrap());
        assert_eq!(a.incr("n", LONG).await.unwrap(), 1);
        assert_eq!(b.incr("n", LONG).await.unwrap(), 2);

        a.set("code", b"once", LONG).await.unwrap();
        let (from_a, from_b) = tokio::join!(a.take("code"), b.take("code"));
        let winners = [from_a.unwrap(), from_b.unwrap()]
            .into_iter()
            .flatten()
            .count();
        assert_eq!(winners, 1, "one of two instances takes the value");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_stored_under_the_prefix_redis() {
    on_redis(|h| async move {
        let Time::Redis { prefix, raw, .. } = &h.time else {
            unreachable!()
        };
        h.cache.set("k", b"v", LONG).await.unwrap();

        let stored: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("{prefix}k"))
            .query_async(&mut raw.clone())
            .await
            .unwrap();

        assert_eq!(stored.as_deref(), Some(&b"v"[..]));
    })
    .await;
}
