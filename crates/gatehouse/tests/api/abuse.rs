//! Abuse protection: rate limits, lockout that reveals nothing, metrics, audit retention.

use crate::backend_tests;
use crate::helpers::*;
use serde_json::json;

fn header(r: &Reply, name: &str) -> Option<u64> {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

async fn login_as(
    app: &TestApp,
    client: &reqwest::Client,
    csrf: &str,
    xff: Option<&str>,
    identifier: &str,
) -> Reply {
    let mut req = client
        .post(app.url("/api/v1/auth/login"))
        .header("X-CSRFToken", csrf)
        .json(&json!({ "identifier": identifier, "password": "Wrong-password-1" }));
    if let Some(ip) = xff {
        req = req.header("X-Forwarded-For", ip);
    }
    Reply::of(req.send().await.unwrap()).await
}

async fn credential_routes_are_limited_per_ip_with_headers(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.rate_limit.credential_per_minute = 3;
        c.lockout.enabled = false;
    })
    .await;
    let client = browser();
    let csrf = app.csrf_for(&client).await;
    for left in [2, 1, 0] {
        let r = login_as(&app, &client, &csrf, None, "someone@example.com").await;
        r.expect(401, "INVALID_CREDENTIALS");
        assert_eq!(header(&r, "x-ratelimit-limit"), Some(3));
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some(left));
        assert!(header(&r, "x-ratelimit-reset").is_some_and(|s| (1..=60).contains(&s)));
    }
    let r = login_as(&app, &client, &csrf, None, "someone@example.com").await;
    r.expect(429, "RATE_LIMIT_EXCEEDED");
    assert!(header(&r, "retry-after").is_some_and(|s| (1..=60).contains(&s)));
    assert_eq!(header(&r, "x-ratelimit-remaining"), Some(0));
    // Other classes keep their own budget, and operations endpoints are exempt.
    Reply::of(
        client
            .get(app.url("/api/v1/auth/csrf-token"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "OK");
    for _ in 0..5 {
        let r = Reply::of(client.get(app.url("/health")).send().await.unwrap()).await;
        r.expect(200, "OK");
        assert!(r.headers.get("x-ratelimit-limit").is_none());
    }
    // The window starts over.
    app.advance(61);
    login_as(&app, &client, &csrf, None, "someone@example.com")
        .await
        .expect(401, "INVALID_CREDENTIALS");
}

async fn spoofed_forwarded_for_from_an_untrusted_peer_does_not_change_the_key(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.rate_limit.credential_per_minute = 2;
        c.lockout.enabled = false;
    })
    .await;
    let client = browser();
    let csrf = app.csrf_for(&client).await;
    login_as(&app, &client, &csrf, Some("198.51.100.1"), "a@example.com")
        .await
        .expect(401, "INVALID_CREDENTIALS");
    login_as(&app, &client, &csrf, Some("198.51.100.2"), "b@example.com")
        .await
        .expect(401, "INVALID_CREDENTIALS");
    login_as(&app, &client, &csrf, Some("198.51.100.3"), "c@example.com")
        .await
        .expect(429, "RATE_LIMIT_EXCEEDED");
}

async fn a_trusted_proxy_forwards_the_client_address(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.rate_limit.credential_per_minute = 2;
        c.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    app.user("proxied@example.com").await;
    let client = browser();
    let csrf = app.csrf_for(&client).await;
    login_as(&app, &client, &csrf, Some("198.51.100.1"), "x@example.com")
        .await
        .expect(401, "INVALID_CREDENTIALS");
    login_as(&app, &client, &csrf, Some("198.51.100.1"), "x@example.com")
        .await
        .expect(401, "INVALID_CREDENTIALS");
    login_as(&app, &client, &csrf, Some("198.51.100.1"), "x@example.com")
        .await
        .expect(429, "RATE_LIMIT_EXCEEDED");
    // Another client behind the same proxy has its own budget, and is recorded by its address.
    let r = client
        .post(app.url("/api/v1/auth/login"))
        .header("X-CSRFToken", &csrf)
        .header("X-Forwarded-For", "203.0.113.50, 127.0.0.1")
        .json(&json!({ "identifier": "proxied@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let token = Reply::of(r).await.expect(200, "AUTH_LOGIN_SUCCESS")["auth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let sessions = app
        .get_auth("/api/v1/auth/sessions", &token)
        .await
        .expect(200, "OK")
        .clone();
    assert_eq!(sessions["items"][0]["ip"], "203.0.113.50");
}

async fn one_identifier_is_limited_whatever_the_address(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.rate_limit.identifier_per_minute = 3;
        c.trusted_proxies = vec!["127.0.0.1".into()];
        c.lockout.enabled = false;
    })
    .await;
    let client = browser();
    let csrf = app.csrf_for(&client).await;
    for i in 0..3 {
        let ip = format!("198.51.100.{i}");
        login_as(&app, &client, &csrf, Some(&ip), "Target@Example.com")
            .await
            .expect(401, "INVALID_CREDENTIALS");
    }
    let r = login_as(
        &app,
        &client,
        &csrf,
        Some("198.51.100.99"),
        "target@example.com",
    )
    .await;
    r.expect(429, "RATE_LIMIT_EXCEEDED");
    assert!(header(&r, "retry-after").is_some());
    login_as(
        &app,
        &client,
        &csrf,
        Some("198.51.100.99"),
        "other@example.com",
    )
    .await
    .expect(401, "INVALID_CREDENTIALS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_two_instances_sharing_redis() {
    let Some(b) = Backend::postgres() else { return };
    let app = spawn_app_with(b, |c| {
        c.rate_limit.credential_per_minute = 4;
        c.lockout.enabled = false;
    })
    .await;
    let second = gatehouse::server::start(&app.config, app.clock.clone())
        .await
        .unwrap();
    let other = format!("http://{}", second.addr);
    let client = browser();
    let csrf = app.csrf_for(&client).await;
    for base in [&app.base, &other, &app.base, &other] {
        let r = client
            .post(format!("{base}/api/v1/auth/login"))
            .header("X-CSRFToken", &csrf)
            .json(&json!({ "identifier": "nobody@example.com", "password": "Wrong-password-1" }))
            .send()
            .await
            .unwrap();
        Reply::of(r).await.expect(401, "INVALID_CREDENTIALS");
    }
    for base in [&app.base, &other] {
        let r = client
            .post(format!("{base}/api/v1/auth/login"))
            .header("X-CSRFToken", &csrf)
            .json(&json!({ "identifier": "nobody@example.com", "password": "Wrong-password-1" }))
            .send()
            .await
            .unwrap();
        Reply::of(r).await.expect(429, "RATE_LIMIT_EXCEEDED");
    }
    second.task.abort();
}

fn without_request_id(mut v: serde_json::Value) -> serde_json::Value {
    v["requestId"] = serde_json::Value::Null;
    v
}

async fn lockout_of_an_unknown_identifier_looks_like_a_real_one(b: Backend) {
    let app = spawn_app(b).await;
    app.user("exists@example.com").await;
    let mut last = Vec::new();
    for who in ["exists@example.com", "missing@example.com"] {
        for _ in 0..5 {
            app.login_with(&browser(), who, "Wrong-password-1")
                .await
                .expect(401, "INVALID_CREDENTIALS");
        }
        last.push(app.login_with(&browser(), who, "Wrong-password-1").await);
    }
    last[0].expect(423, "ACCOUNT_LOCKED");
    last[1].expect(423, "ACCOUNT_LOCKED");
    assert_eq!(
        without_request_id(last[0].body.clone()),
        without_request_id(last[1].body.clone())
    );
    let names = |r: &Reply| {
        let mut h: Vec<String> = r
            .headers
            .keys()
            .map(|k| k.to_string())
            .filter(|k| k != "date")
            .collect();
        h.sort();
        h
    };
    assert_eq!(names(&last[0]), names(&last[1]));
    assert_eq!(
        header(&last[0], "retry-after"),
        header(&last[1], "retry-after")
    );
    // Locking and unlocking are audited.
    let admin = app.admin_token().await;
    let locked = app
        .get_auth("/api/v1/admin/audit-events?action=account.locked", &admin)
        .await
        .expect(200, "OK")
        .clone();
    assert_eq!(locked["total"], 2);
    let id = app
        .svc
        .store
        .account_by_email("exists@example.com")
        .await
        .unwrap()
        .unwrap()
        .id;
    app.post_auth(
        &format!("/api/v1/admin/users/{id}/unlock"),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    let unlocked = app
        .get_auth(
            "/api/v1/admin/audit-events?action=admin.user.unlock",
            &admin,
        )
        .await
        .expect(200, "OK")
        .clone();
    assert_eq!(unlocked["total"], 1);
}

async fn metrics_count_requests_logins_lockouts_and_refusals(b: Backend) {
    let app = spawn_app_with(b, |c| c.rate_limit.credential_per_minute = 7).await;
    app.user("metrics@example.com").await;
    let (_, refresh) = app.tokens("metrics@example.com").await;
    app.post("/api/v1/auth/refresh", json!({ "refreshToken": refresh }))
        .await
        .expect(200, "AUTH_REFRESH_SUCCESS");
    app.post("/api/v1/auth/refresh", json!({ "refreshToken": refresh }))
        .await
        .expect(401, "REFRESH_TOKEN_REUSED");
    let client = browser();
    let csrf = app.csrf_for(&client).await;
    for _ in 0..7 {
        login_as(&app, &client, &csrf, None, "metrics@example.com").await;
    }
    let res = browser().get(app.url("/metrics")).send().await.unwrap();
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    for line in [
        "gatehouse_logins_total{outcome=\"AUTH_LOGIN_SUCCESS\"} 1",
        "gatehouse_logins_total{outcome=\"INVALID_CREDENTIALS\"} 5",
        "gatehouse_logins_total{outcome=\"ACCOUNT_LOCKED\"} 1",
        "gatehouse_lockouts_total 1",
        "gatehouse_rate_limited_total{class=\"credential\"} 1",
        "gatehouse_refreshes_total{outcome=\"AUTH_REFRESH_SUCCESS\"} 1",
        "gatehouse_refresh_reuse_total 1",
        "gatehouse_http_requests_total{method=\"POST\",route=\"/api/v1/auth/login\",status=\"401\"} 5",
        "gatehouse_password_hash_queue_depth 0",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    assert!(text.contains("gatehouse_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/v1/auth/login\",le=\"+Inf\"}"));
    assert!(text.contains("gatehouse_password_hash_wait_seconds_count"));
}

async fn audit_events_past_retention_are_pruned(b: Backend) {
    let app = spawn_app_with(b, |c| c.audit.retention_days = 30).await;
    app.user("old@example.com").await;
    app.login_with(&browser(), "old@example.com", "Wrong-password-1")
        .await;
    app.advance(31 * 24 * 3600);
    app.login_with(&browser(), "old@example.com", "Wrong-password-2")
        .await;
    let deleted = app.svc.prune_audit().await.unwrap();
    assert!(
        deleted >= 2,
        "the account creation and the first failure: {deleted}"
    );
    let page = gatehouse_domain::model::Page {
        page: 1,
        page_size: 50,
    };
    let left = app
        .svc
        .store
        .list_audit(&Default::default(), page)
        .await
        .unwrap();
    assert_eq!(left.total, 1);
    assert!(
        left.items
            .iter()
            .all(|e| e.at.millis() >= app.now().millis() - 1000)
    );
}

async fn a_long_password_is_not_truncated_to_72_bytes(b: Backend) {
    let app = spawn_app(b).await;
    let long = format!("{}-Tail", "q7Z-".repeat(20));
    assert_eq!(long.len(), 85);
    let input = gatehouse_core::admin::CreateUser {
        email: "long@example.com".into(),
        password: Some(gatehouse_domain::Secret::new(long.clone())),
        must_change_password: Some(false),
        ..Default::default()
    };
    app.svc
        .create_user(None, input, &Default::default())
        .await
        .unwrap();
    app.login("long@example.com", &long[..72])
        .await
        .expect(401, "INVALID_CREDENTIALS");
    app.login_with(&browser(), "long@example.com", &long)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
}

backend_tests!(
    credential_routes_are_limited_per_ip_with_headers,
    spoofed_forwarded_for_from_an_untrusted_peer_does_not_change_the_key,
    a_trusted_proxy_forwards_the_client_address,
    one_identifier_is_limited_whatever_the_address,
    lockout_of_an_unknown_identifier_looks_like_a_real_one,
    metrics_count_requests_logins_lockouts_and_refusals,
    audit_events_past_retention_are_pruned,
    a_long_password_is_not_truncated_to_72_bytes,
);
