//! The admin user contract (docs/api.md, "Admin"), guarded by the `admin` role.

use crate::backend_tests;
use crate::helpers::*;
use serde_json::json;

async fn non_admins_get_permission_required(b: Backend) {
    let app = spawn_app(b).await;
    app.user("plain@example.com").await;
    let (token, _) = app.tokens("plain@example.com").await;
    app.get_auth("/api/v1/admin/users", &token)
        .await
        .expect(403, "PERMISSION_REQUIRED");
    app.post_auth(
        "/api/v1/admin/users",
        &token,
        json!({ "email": "x@example.com" }),
    )
    .await
    .expect(403, "PERMISSION_REQUIRED");
    Reply::of(
        browser()
            .get(app.url("/api/v1/admin/users"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(401, "AUTHENTICATION_REQUIRED");
}

async fn admin_creates_a_user_per_the_contract(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let body = json!({ "email": "New@Example.com", "username": "newbie", "displayName": "New Person", "password": "a-Strong-pass-31", "roles": ["user"] });
    let r = app.post_auth("/api/v1/admin/users", &admin, body).await;
    let a = r.expect(201, "OK");
    assert_eq!(a["email"], "new@example.com");
    assert_eq!(a["username"], "newbie");
    assert_eq!(a["displayName"], "New Person");
    assert_eq!(a["status"], "ACTIVE");
    assert_eq!(
        a["mustChangePassword"], true,
        "admin-created accounts change their password first"
    );
    assert_eq!(a["roles"], json!(["user"]));
    assert!(a["id"].is_string() && a["createdAt"].is_string() && a["lastLoginAt"].is_null());
    app.login("newbie", "a-Strong-pass-31")
        .await
        .expect(200, "AUTH_PASSWORD_CHANGE_REQUIRED");
}

async fn duplicate_email_or_username_is_a_conflict(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    app.post_auth(
        "/api/v1/admin/users",
        &admin,
        json!({ "email": "dup@example.com", "username": "dupe" }),
    )
    .await
    .expect(201, "OK");
    app.post_auth(
        "/api/v1/admin/users",
        &admin,
        json!({ "email": "DUP@example.com" }),
    )
    .await
    .expect(409, "CONFLICT");
    app.post_auth(
        "/api/v1/admin/users",
        &admin,
        json!({ "email": "other@example.com", "username": "DUPE" }),
    )
    .await
    .expect(409, "CONFLICT");
}

async fn invalid_user_fields_are_listed(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let r = app
        .post_auth(
            "/api/v1/admin/users",
            &admin,
            json!({ "email": "not-an-email", "username": "x", "roles": ["superuser"] }),
        )
        .await;
    r.expect(400, "VALIDATION_ERROR");
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "username", "roles"]);
    let r = app
        .post_auth(
            "/api/v1/admin/users",
            &admin,
            json!({ "email": "weak@example.com", "password": "weak" }),
        )
        .await;
    r.expect(422, "PASSWORD_POLICY_VIOLATION");
    let r = app
        .post_auth(
            "/api/v1/admin/users",
            &admin,
            json!({ "email": "t@example.com", "emial": "typo" }),
        )
        .await;
    r.expect(400, "VALIDATION_ERROR");
    assert_eq!(
        r.body["errors"][0],
        json!({ "field": "emial", "code": "unknown_field", "message": "This field is not recognised" })
    );
}

async fn users_are_listed_searched_and_paginated(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    for i in 0..5 {
        app.user(&format!("list{i}@example.com")).await;
    }
    let page = app
        .get_auth("/api/v1/admin/users?query=list&page=2&pageSize=2", &admin)
        .await
        .expect(200, "OK")
        .clone();
    assert_eq!(page["total"], 5);
    assert_eq!(page["page"], 2);
    assert_eq!(page["pageSize"], 2);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let all = app
        .get_auth("/api/v1/admin/users", &admin)
        .await
        .expect(200, "OK")
        .clone();
    assert_eq!(all["total"], 6);
    app.get_auth("/api/v1/admin/users?pageSize=1000", &admin)
        .await
        .expect(400, "VALIDATION_ERROR");
    app.get_auth("/api/v1/admin/users?page=0", &admin)
        .await
        .expect(400, "VALIDATION_ERROR");
    app.get_auth("/api/v1/admin/users?query=%ZZ", &admin)
        .await
        .expect(400, "VALIDATION_ERROR");
    let wild = app
        .get_auth("/api/v1/admin/users?query=%25", &admin)
        .await
        .expect(200, "OK")
        .clone();
    assert_eq!(wild["total"], 0, "a literal % matches nothing");
}

async fn disable_enable_and_require_password_change(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let a = app.user("cycle@example.com").await;
    let off = app
        .post_auth(
            &format!("/api/v1/admin/users/{}/disable", a.id),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(off.expect(200, "OK")["status"], "DISABLED");
    app.login("cycle@example.com", PASSWORD)
        .await
        .expect(403, "ACCOUNT_DISABLED");
    let on = app
        .post_auth(
            &format!("/api/v1/admin/users/{}/enable", a.id),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(on.expect(200, "OK")["status"], "ACTIVE");
    let req = app
        .post_auth(
            &format!("/api/v1/admin/users/{}/require-password-change", a.id),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(req.expect(200, "OK")["mustChangePassword"], true);
    app.login_with(&browser(), "cycle@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_PASSWORD_CHANGE_REQUIRED");
    let missing = uuid::Uuid::now_v7();
    app.post_auth(
        &format!("/api/v1/admin/users/{missing}/disable"),
        &admin,
        json!({}),
    )
    .await
    .expect(404, "NOT_FOUND");
    app.post_auth("/api/v1/admin/users/nope/disable", &admin, json!({}))
        .await
        .expect(404, "NOT_FOUND");
}

async fn admin_actions_are_audited_and_queryable(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let a = app.user("aud@example.com").await;
    app.post_auth(
        &format!("/api/v1/admin/users/{}/disable", a.id),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    let q = format!(
        "/api/v1/admin/audit-events?accountId={}&action=admin.user.disable",
        a.id
    );
    let events = app.get_auth(&q, &admin).await.expect(200, "OK").clone();
    assert_eq!(events["total"], 1, "{events}");
    let e = &events["items"][0];
    assert_eq!(e["outcome"], "success");
    assert!(e["actorId"].is_string() && e["requestId"].is_string() && e["ip"] == "127.0.0.1");
    let none = app
        .get_auth(
            "/api/v1/admin/audit-events?outcome=failure&action=admin.user.disable",
            &admin,
        )
        .await;
    assert_eq!(none.expect(200, "OK")["total"], 0);
    app.get_auth("/api/v1/admin/audit-events?from=yesterday", &admin)
        .await
        .expect(400, "VALIDATION_ERROR");
    let sessions = app
        .get_auth("/api/v1/admin/sessions", &admin)
        .await
        .expect(200, "OK")
        .clone();
    assert!(sessions["total"].as_u64().unwrap() >= 1);
}

backend_tests!(
    non_admins_get_permission_required,
    admin_creates_a_user_per_the_contract,
    duplicate_email_or_username_is_a_conflict,
    invalid_user_fields_are_listed,
    users_are_listed_searched_and_paginated,
    disable_enable_and_require_password_change,
    admin_actions_are_audited_and_queryable,
);
