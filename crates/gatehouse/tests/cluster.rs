//! Cluster tests: three real `gatehouse serve` processes on loopback ports sharing one
//! PostgreSQL database and one Redis prefix (from `GATEHOUSE_TEST_DATABASE_URL` /
//! `GATEHOUSE_TEST_REDIS_URL`; skipped without them unless `CI=true`).
//!
//! - `cluster_shares_rotation_revocation_and_keys`: refresh reuse, 50 racing refreshes,
//!   logout and key rotation seen consistently by every instance.
//! - `faults::dependency_restarts_are_survived`: a private PostgreSQL and Redis are
//!   restarted under a trickle of traffic (see `cluster/faults.rs`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "cluster/harness.rs"]
mod harness;
#[path = "cluster/private.rs"]
mod private;

#[path = "cluster/faults.rs"]
mod faults;

use harness::{Cluster, ClusterEnv, RedisPrefix, Reply, TestDb, kid, poll, test_urls};
use std::time::{Duration, Instant};

/// Instances reload signing keys every second (`GATEHOUSE_JWT__KEY_REFRESH_SECONDS=1`).
const KEY_REFRESH: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_shares_rotation_revocation_and_keys() {
    let Some((db_url, redis_url)) = test_urls() else {
        return;
    };
    let db = TestDb::create(&db_url).await;
    let redis = RedisPrefix::new(&redis_url);
    let mut cluster = Cluster::start(
        ClusterEnv {
            database_url: db.url.clone(),
            redis_url: redis_url.clone(),
            redis_prefix: redis.prefix.clone(),
            acquire_timeout_ms: 5000,
            cache_timeout_ms: 2000,
            // 3 × 6 connections: enough for 50 racing refreshes, and polite to the shared
            // server other tests use at the same time.
            max_connections: 6,
            encryption_key: harness::encryption_key(),
        },
        3,
    );

    reuse_on_another_instance_kills_the_session_everywhere(&cluster).await;
    racing_refreshes_have_exactly_one_winner(&cluster).await;
    logout_is_seen_by_every_instance_at_once(&cluster).await;
    signing_keys_are_shared_and_rotation_reaches_every_instance(&cluster).await;

    cluster.assert_alive();
    drop(cluster);
    drop(redis);
    drop(db);
}

/// Login on A, refresh on B, the old refresh token on C → REFRESH_TOKEN_REUSED, and the
/// session is dead on A, B and C.
async fn reuse_on_another_instance_kills_the_session_everywhere(c: &Cluster) {
    let (a, b, cc) = (c.node(0), c.node(1), c.node(2));
    let first = a.login_admin().await;
    first.expect(200, "AUTH_LOGIN_SUCCESS");
    let first = first.tokens();
    let second = b.refresh(&first.refresh).await;
    second.expect(200, "AUTH_REFRESH_SUCCESS");
    let second = second.tokens();
    for n in [a, b, cc] {
        n.me(&second.access).await.expect(200, "OK");
    }

    cc.refresh(&first.refresh)
        .await
        .expect(401, "REFRESH_TOKEN_REUSED");

    for n in [a, b, cc] {
        for access in [&first.access, &second.access] {
            let r = n.me(access).await;
            r.expect(401, "TOKEN_REVOKED");
        }
        n.refresh(&second.refresh)
            .await
            .expect(401, "TOKEN_REVOKED");
    }
    println!("[cluster] reuse on C revoked the session on A, B and C");
}

/// 50 refreshes of one token at once, spread over A, B and C: exactly one wins; every
/// other one is refused as reuse (or, once the family is revoked, as revoked), never 5xx.
async fn racing_refreshes_have_exactly_one_winner(c: &Cluster) {
    const RACERS: usize = 50;
    let login = c.node(0).login_admin().await;
    login.expect(200, "AUTH_LOGIN_SUCCESS");
    let token = login.tokens().refresh;
    // Warm each instance's pool so the race is about the rotation, not connection set-up.
    for i in 0..3 {
        c.node(i).get("/ready").await.expect(200, "OK");
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let node = c.node(i).clone();
        let token = token.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (node.name.clone(), node.refresh(&token).await)
        }));
    }
    let mut replies: Vec<(String, Reply)> = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    let winners: Vec<&(String, Reply)> = replies.iter().filter(|(_, r)| r.status == 200).collect();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for (_, r) in &replies {
        *codes
            .entry(format!("{} {}", r.status, r.code()))
            .or_default() += 1;
    }
    println!("[cluster] {RACERS} racing refreshes over A/B/C: {codes:?}");
    assert_eq!(
        winners.len(),
        1,
        "exactly one refresh may win: {codes:?}\n{:?}",
        replies
            .iter()
            .map(|(n, r)| (n, &r.body))
            .collect::<Vec<_>>()
    );
    winners[0].1.expect(200, "AUTH_REFRESH_SUCCESS");
    for (name, r) in &replies {
        if r.status != 200 {
            assert!(
                r.status == 401 && ["REFRESH_TOKEN_REUSED", "TOKEN_REVOKED"].contains(&r.code()),
                "loser on {name}: {} {}",
                r.status,
                r.body
            );
        }
    }
    // At least one loser saw the spent token: the session family is revoked everywhere,
    // including the winner's fresh tokens.
    assert!(codes.keys().any(|k| k.contains("REFRESH_TOKEN_REUSED")));
    let won = winners[0].1.tokens();
    for i in 0..3 {
        c.node(i).me(&won.access).await.expect(401, "TOKEN_REVOKED");
        c.node(i)
            .refresh(&won.refresh)
            .await
            .expect(401, "TOKEN_REVOKED");
    }
}

/// Logout on A → the access token is refused on B and C on the very next request.
async fn logout_is_seen_by_every_instance_at_once(c: &Cluster) {
    let (a, b, cc) = (c.node(0), c.node(1), c.node(2));
    let login = a.login_admin().await;
    login.expect(200, "AUTH_LOGIN_SUCCESS");
    let t = login.tokens();
    for n in [a, b, cc] {
        n.me(&t.access).await.expect(200, "OK");
    }
    a.logout(&t.access).await.expect(200, "AUTH_LOGOUT_SUCCESS");
    // No waiting: the very next request on each instance is refused.
    b.me(&t.access).await.expect(401, "TOKEN_REVOKED");
    cc.me(&t.access).await.expect(401, "TOKEN_REVOKED");
    a.me(&t.access).await.expect(401, "TOKEN_REVOKED");
    cc.refresh(&t.refresh).await.expect(401, "TOKEN_REVOKED");
    println!("[cluster] logout on A refused on B and C on the next request");
}

/// A token issued by any instance verifies on all; `gatehouse keys rotate` is picked up by
/// every instance within the refresh interval; tokens under the old key stay valid.
async fn signing_keys_are_shared_and_rotation_reaches_every_instance(c: &Cluster) {
    let mut before = Vec::new();
    for i in 0..3 {
        let r = c.node(i).login_admin().await;
        r.expect(200, "AUTH_LOGIN_SUCCESS");
        before.push(r.tokens());
    }
    let old_kid = kid(&before[0].access);
    assert!(!old_kid.is_empty());
    for (i, t) in before.iter().enumerate() {
        assert_eq!(
            kid(&t.access),
            old_kid,
            "instance {i} signs with the shared key"
        );
        for j in 0..3 {
            c.node(j).me(&t.access).await.expect(200, "OK");
        }
    }

    let out = c.cli(&["keys", "rotate"]);
    let rotated_at = Instant::now();
    let new_kid = out
        .lines()
        .find_map(|l| l.strip_prefix("new signing key "))
        .and_then(|rest| rest.split([';', ' ']).next())
        .unwrap_or_else(|| panic!("no new kid in CLI output: {out}"))
        .to_string();
    assert_ne!(new_kid, old_kid);

    // Each instance switches its signing key at its next periodic reload.
    let limit = KEY_REFRESH + Duration::from_secs(10);
    let mut after = Vec::new();
    for i in 0..3 {
        let node = c.node(i).clone();
        let (tokens, _) = poll(
            &format!("instance {} signs with {new_kid}", node.name),
            limit,
            Duration::from_millis(100),
            || {
                let node = node.clone();
                let new_kid = new_kid.clone();
                async move {
                    let r = node.login_admin().await;
                    assert_eq!(r.status, 200, "login during rotation: {}", r.body);
                    let t = r.tokens();
                    (kid(&t.access) == new_kid).then_some(t)
                }
            },
        )
        .await;
        println!(
            "[cluster] instance {} signs with the new key {:?} after `keys rotate`",
            node.name,
            rotated_at.elapsed()
        );
        after.push(tokens);
    }
    assert!(
        rotated_at.elapsed() < limit,
        "rotation took {:?} to reach all instances",
        rotated_at.elapsed()
    );
    // New tokens verify everywhere; old tokens stay valid until they expire.
    for t in after.iter().chain(before.iter()) {
        for j in 0..3 {
            c.node(j).me(&t.access).await.expect(200, "OK");
        }
    }
    // Every instance publishes both keys.
    for j in 0..3 {
        let jwks = c.node(j).get("/.well-known/jwks.json").await;
        let kids: Vec<&str> = jwks.body["keys"]
            .as_array()
            .map(|ks| ks.iter().filter_map(|k| k["kid"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
            "instance {j} JWKS: {kids:?}"
        );
    }
}
