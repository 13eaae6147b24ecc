//! Service accounts and API keys: created by an admin, used as HTTP Basic, secrets shown
//! once, rotation refusing the old secret at once, disable/enable/delete, and the same
//! answer for a wrong secret as for an unknown key.

use crate::backend_tests;
use crate::helpers::*;
use serde_json::{Value, json};

async fn service_account(app: &TestApp, admin: &str, username: &str, roles: &[&str]) -> Value {
    app.post_auth(
        "/api/v1/admin/service-accounts",
        admin,
        json!({ "username": username, "displayName": "Robot", "roles": roles }),
    )
    .await
    .expect(201, "OK")
    .clone()
}

async fn api_key(app: &TestApp, admin: &str, account: &Value, extra: Value) -> Value {
    let mut body = json!({ "name": "deploy", "serviceAccountId": account["id"] });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    app.post_auth("/api/v1/admin/api-keys", admin, body)
        .await
        .expect(201, "OK")
        .clone()
}

/// GET `path` with the key as HTTP Basic.
async fn get_basic(app: &TestApp, path: &str, access: &str, secret: &str) -> Reply {
    Reply::of(
        browser()
            .get(app.url(path))
            .basic_auth(access, Some(secret))
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn keys(key: &Value) -> (String, String) {
    (
        key["accessKey"].as_str().unwrap().to_string(),
        key["secretKey"].as_str().unwrap().to_string(),
    )
}

async fn delete_auth(app: &TestApp, path: &str, token: &str) -> Reply {
    Reply::of(
        browser()
            .delete(app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn a_service_account_is_listed_and_cannot_sign_in(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let sa = service_account(&app, &admin, "ci-bot", &["user"]).await;
    assert_eq!(sa["kind"], "service");
    assert_eq!(sa["username"], "ci-bot");
    assert_eq!(sa["roles"], json!(["user"]));
    app.user("person@example.com").await;
    let listed = app.get_auth("/api/v1/admin/service-accounts", &admin).await;
    let data = listed.expect(200, "OK");
    assert_eq!(data["total"], 1, "people are not service accounts");
    assert_eq!(data["items"][0]["id"], sa["id"]);
    for password in [PASSWORD, "", "anything-Else-1"] {
        let r = app.login("ci-bot", password).await;
        assert_ne!(r.status.as_u16(), 200, "a service account never signs in");
    }
    app.login("ci-bot", PASSWORD)
        .await
        .expect(401, "INVALID_CREDENTIALS");
    app.post_auth(
        "/api/v1/admin/service-accounts",
        &admin,
        json!({ "username": "ci-bot" }),
    )
    .await
    .expect(409, "CONFLICT");
}

async fn a_key_works_as_basic_within_its_scopes_and_its_secret_is_shown_once(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let sa = service_account(&app, &admin, "reporter", &["admin"]).await;
    let key = api_key(&app, &admin, &sa, json!({ "scopes": ["users:read"] })).await;
    let (ak, sk) = keys(&key);
    assert!(ak.starts_with("gatehouse_ak_") && sk.starts_with("gatehouse_sk_"));
    let me = get_basic(&app, "/api/v1/auth/me", &ak, &sk).await;
    let data = me.expect(200, "OK");
    assert_eq!(data["account"]["kind"], "service");
    assert_eq!(data["credential"]["kind"], "api_key");
    assert_eq!(data["credential"]["id"], key["id"]);
    assert_eq!(data["permissions"], json!(["users:read"]));
    get_basic(&app, "/api/v1/admin/users", &ak, &sk)
        .await
        .expect(200, "OK");
    let r = Reply::of(
        browser()
            .post(app.url("/api/v1/admin/users"))
            .basic_auth(&ak, Some(&sk))
            .json(&json!({ "email": "x@example.com" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(403, "PERMISSION_REQUIRED");

    let listed = app.get_auth("/api/v1/admin/api-keys", &admin).await;
    let items = &listed.expect(200, "OK")["items"];
    assert_eq!(items[0]["accessKey"], ak);
    assert!(items[0].get("secretKey").is_none());
    assert!(!listed.body.to_string().contains(&sk[13..]), "never listed");
    let audit = app
        .get_auth("/api/v1/admin/audit-events?pageSize=100", &admin)
        .await;
    let text = audit.expect(200, "OK").to_string();
    assert!(text.contains("api_key.create"));
    assert!(!text.contains(&sk[13..]), "no secret in the audit trail");
}

async fn a_wrong_secret_gets_the_same_answer_as_an_unknown_key(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let sa = service_account(&app, &admin, "probe", &[]).await;
    let (ak, sk) = keys(&api_key(&app, &admin, &sa, json!({})).await);
    let other = api_key(&app, &admin, &sa, json!({})).await;
    let (other_ak, other_sk) = keys(&other);
    let other_id = other["id"].as_str().unwrap();
    delete_auth(&app, &format!("/api/v1/admin/api-keys/{other_id}"), &admin)
        .await
        .expect(200, "OK");
    let strip = |r: Reply| {
        let mut body = r.body.clone();
        body["requestId"] = Value::Null;
        (r.status.as_u16(), body)
    };
    let wrong = strip(get_basic(&app, "/api/v1/auth/me", &ak, &other_sk).await);
    let unknown = strip(get_basic(&app, "/api/v1/auth/me", &other_ak, &other_sk).await);
    let garbage = strip(get_basic(&app, "/api/v1/auth/me", "nobody", "nothing").await);
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong.1["code"], "TOKEN_INVALID");
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, garbage);
    get_basic(&app, "/api/v1/auth/me", &ak, &sk)
        .await
        .expect(200, "OK");
}

async fn rotation_refuses_the_old_secret_at_once(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let sa = service_account(&app, &admin, "rotor", &[]).await;
    let key = api_key(&app, &admin, &sa, json!({})).await;
    let (ak, old) = keys(&key);
    get_basic(&app, "/api/v1/auth/me", &ak, &old)
        .await
        .expect(200, "OK");
    let id = key["id"].as_str().unwrap();
    let rotated = app
        .post_auth(
            &format!("/api/v1/admin/api-keys/{id}/rotate"),
            &admin,
            json!({}),
        )
        .await;
    let data = rotated.expect(200, "OK").clone();
    let (same_ak, new) = keys(&data);
    assert_eq!(same_ak, ak, "the access key stays");
    assert_ne!(new, old);
    assert!(data["rotatedAt"].is_string());
    get_basic(&app, "/api/v1/auth/me", &ak, &old)
        .await
        .expect(401, "TOKEN_INVALID");
    get_basic(&app, "/api/v1/auth/me", &ak, &new)
        .await
        .expect(200, "OK");
}

async fn keys_and_accounts_are_disabled_enabled_and_deleted(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let sa = service_account(&app, &admin, "lifecycle", &[]).await;
    let key = api_key(&app, &admin, &sa, json!({})).await;
    let (ak, sk) = keys(&key);
    let id = key["id"].as_str().unwrap();
    let sa_id = sa["id"].as_str().unwrap();
    let me = || get_basic(&app, "/api/v1/auth/me", &ak, &sk);

    let r = app
        .post_auth(
            &format!("/api/v1/admin/api-keys/{id}/disable"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.expect(200, "OK")["status"], "DISABLED");
    me().await.expect(401, "TOKEN_REVOKED");
    let audit = app
        .get_auth(
            "/api/v1/admin/audit-events?action=api_key.use_disabled",
            &admin,
        )
        .await;
    assert_eq!(
        audit.expect(200, "OK")["total"],
        1,
        "a disabled key's use is audited"
    );
    app.post_auth(
        &format!("/api/v1/admin/api-keys/{id}/enable"),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    me().await.expect(200, "OK");

    app.post_auth(
        &format!("/api/v1/admin/service-accounts/{sa_id}/disable"),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    me().await.expect(403, "ACCOUNT_DISABLED");
    app.post_auth(
        &format!("/api/v1/admin/service-accounts/{sa_id}/enable"),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    me().await.expect(200, "OK");

    delete_auth(&app, &format!("/api/v1/admin/api-keys/{id}"), &admin)
        .await
        .expect(200, "OK");
    me().await.expect(401, "TOKEN_INVALID");

    let (ak2, sk2) = keys(&api_key(&app, &admin, &sa, json!({})).await);
    delete_auth(
        &app,
        &format!("/api/v1/admin/service-accounts/{sa_id}"),
        &admin,
    )
    .await
    .expect(200, "OK");
    get_basic(&app, "/api/v1/auth/me", &ak2, &sk2)
        .await
        .expect(401, "TOKEN_INVALID");
    let listed = app.get_auth("/api/v1/admin/api-keys", &admin).await;
    assert_eq!(
        listed.expect(200, "OK")["total"],
        0,
        "its keys went with it"
    );
    // People are not deleted through this route.
    let person = app.user("keep@example.com").await;
    delete_auth(
        &app,
        &format!("/api/v1/admin/service-accounts/{}", person.id),
        &admin,
    )
    .await
    .expect(404, "NOT_FOUND");
}

async fn no_token_or_key_mints_keys(b: Backend) {
    let app = spawn_app(b).await;
    let email = "minter@example.com";
    app.user_with(email, false, &["admin"]).await;
    let (admin, _) = app.tokens(email).await;
    let sa = service_account(&app, &admin, "minter-bot", &["admin"]).await;
    let key = api_key(&app, &admin, &sa, json!({})).await;
    let (ak, sk) = keys(&key);
    let body = json!({ "name": "child", "serviceAccountId": sa["id"] });
    let r = Reply::of(
        browser()
            .post(app.url("/api/v1/admin/api-keys"))
            .basic_auth(&ak, Some(&sk))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(403, "SESSION_REQUIRED");
    let pat = app
        .post_auth("/api/v1/auth/tokens", &admin, json!({ "name": "adm" }))
        .await
        .expect(201, "OK")["token"]
        .as_str()
        .unwrap()
        .to_string();
    app.post_auth("/api/v1/admin/api-keys", &pat, body.clone())
        .await
        .expect(403, "SESSION_REQUIRED");
    let id = key["id"].as_str().unwrap();
    app.post_auth(
        &format!("/api/v1/admin/api-keys/{id}/rotate"),
        &pat,
        json!({}),
    )
    .await
    .expect(403, "SESSION_REQUIRED");
}

async fn an_expired_key_is_refused_and_its_use_is_recorded(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let sa = service_account(&app, &admin, "shortlived", &[]).await;
    let key = api_key(&app, &admin, &sa, json!({ "expiresInDays": 2 })).await;
    let (ak, sk) = keys(&key);
    get_basic(&app, "/api/v1/auth/me", &ak, &sk)
        .await
        .expect(200, "OK");
    let listed = app.get_auth("/api/v1/admin/api-keys", &admin).await;
    let item = listed.expect(200, "OK")["items"][0].clone();
    assert!(item["lastUsedAt"].is_string());
    assert_eq!(item["lastUsedIp"], "127.0.0.1");
    app.advance(2 * 24 * 3600);
    get_basic(&app, "/api/v1/auth/me", &ak, &sk)
        .await
        .expect(401, "TOKEN_EXPIRED");
}

backend_tests!(
    a_service_account_is_listed_and_cannot_sign_in,
    a_key_works_as_basic_within_its_scopes_and_its_secret_is_shown_once,
    a_wrong_secret_gets_the_same_answer_as_an_unknown_key,
    rotation_refuses_the_old_secret_at_once,
    keys_and_accounts_are_disabled_enabled_and_deleted,
    no_token_or_key_mints_keys,
    an_expired_key_is_refused_and_its_use_is_recorded,
);
