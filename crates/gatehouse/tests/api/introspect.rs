//! Token introspection (RFC 7662): an API key holding `tokens:introspect` learns what an
//! access token or a personal access token stands for, and `{"active": false}` for anything
//! else, without a reason.

use crate::backend_tests;
use crate::helpers::*;
use serde_json::{Value, json};

/// An introspection key: a service account whose key is scoped to `scopes`.
async fn introspector(app: &TestApp, admin: &str, scopes: &[&str]) -> (String, String) {
    let sa = app
        .post_auth(
            "/api/v1/admin/service-accounts",
            admin,
            json!({ "username": format!("svc-{}", uuid::Uuid::new_v4().simple()), "roles": ["admin"] }),
        )
        .await
        .expect(201, "OK")
        .clone();
    let key = app
        .post_auth(
            "/api/v1/admin/api-keys",
            admin,
            json!({ "name": "introspect", "serviceAccountId": sa["id"], "scopes": scopes }),
        )
        .await
        .expect(201, "OK")
        .clone();
    (
        key["accessKey"].as_str().unwrap().into(),
        key["secretKey"].as_str().unwrap().into(),
    )
}

async fn introspect(app: &TestApp, key: &(String, String), token: &str) -> (u16, Value) {
    let res = browser()
        .post(app.url("/api/v1/auth/introspect"))
        .basic_auth(&key.0, Some(&key.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

async fn an_access_token_is_active_until_its_session_ends(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let key = introspector(&app, &admin, &["tokens:introspect"]).await;
    let user = app.user("intro@example.com").await;
    let (access, _) = app.tokens("intro@example.com").await;
    let (status, body) = introspect(&app, &key, &access).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], json!(user.id));
    assert_eq!(body["token_type"], "access_token");
    assert_eq!(body["scope"], "account");
    assert!(body["sid"].is_string() && body["exp"].is_i64() && body["iat"].is_i64());
    assert!(body["roles"].is_array());
    app.post_auth("/api/v1/auth/logout", &access, json!({}))
        .await
        .expect(200, "AUTH_LOGOUT_SUCCESS");
    assert_eq!(
        introspect(&app, &key, &access).await,
        (200, json!({ "active": false }))
    );
}

async fn a_personal_access_token_shows_its_effective_permissions(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let key = introspector(&app, &admin, &["tokens:introspect"]).await;
    let email = "pat-owner@example.com";
    let owner = app.user_with(email, false, &["admin"]).await;
    let (access, _) = app.tokens(email).await;
    let pat = app
        .post_auth(
            "/api/v1/auth/tokens",
            &access,
            json!({ "name": "ci", "scopes": ["users:read"] }),
        )
        .await
        .expect(201, "OK")
        .clone();
    let text = pat["token"].as_str().unwrap();
    let (status, body) = introspect(&app, &key, text).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], true);
    assert_eq!(body["token_type"], "personal_access_token");
    assert_eq!(body["sub"], json!(owner.id));
    assert_eq!(body["jti"], pat["id"]);
    assert_eq!(body["permissions"], json!(["users:read"]));
    assert_eq!(body["roles"], json!(["admin"]));
    let id = pat["id"].as_str().unwrap();
    Reply::of(
        browser()
            .delete(app.url(&format!("/api/v1/auth/tokens/{id}")))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "OK");
    assert_eq!(
        introspect(&app, &key, text).await,
        (200, json!({ "active": false }))
    );
}

async fn anything_else_is_inactive_without_a_reason(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let key = introspector(&app, &admin, &["tokens:introspect"]).await;
    app.user("other@example.com").await;
    let (access, refresh) = app.tokens("other@example.com").await;
    let pat = app
        .post_auth("/api/v1/auth/tokens", &access, json!({ "name": "t" }))
        .await
        .expect(201, "OK")["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut typo = pat.clone().into_bytes();
    typo[20] = if typo[20] == b'q' { b'r' } else { b'q' };
    let typo = String::from_utf8(typo).unwrap();
    for token in [
        "",
        "garbage",
        refresh.as_str(),
        typo.as_str(),
        key.0.as_str(),
        key.1.as_str(),
    ] {
        assert_eq!(
            introspect(&app, &key, token).await,
            (200, json!({ "active": false })),
            "{token:?}"
        );
    }
    app.advance(app.config.jwt.access_ttl_seconds + 120);
    assert_eq!(
        introspect(&app, &key, &access).await,
        (200, json!({ "active": false })),
        "expired"
    );
}

/// An OAuth endpoint answers client errors in OAuth's format, never an envelope.
async fn oauth_error(res: reqwest::Response) -> (u16, Value, Option<String>) {
    let status = res.status().as_u16();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = res.json().await.unwrap();
    assert!(body.get("requestId").is_none(), "not an envelope: {body}");
    assert!(body["error_description"].is_string(), "{body}");
    (status, body, challenge)
}

async fn only_an_api_key_holding_tokens_introspect_may_ask(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let narrow = introspector(&app, &admin, &["users:read"]).await;
    let (status, body) = introspect(&app, &narrow, "x").await;
    assert_eq!(
        (status, body["error"].clone()),
        (403, json!("insufficient_scope"))
    );
    // A person's token, even an admin's, is not a service's key.
    let res = browser()
        .post(app.url("/api/v1/auth/introspect"))
        .bearer_auth(&admin)
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    let (status, body, _) = oauth_error(res).await;
    assert_eq!(
        (status, body["error"].clone()),
        (403, json!("insufficient_scope"))
    );
    // No credentials, or a wrong secret: invalid_client with a Basic challenge.
    let res = browser()
        .post(app.url("/api/v1/auth/introspect"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    let (status, body, challenge) = oauth_error(res).await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_client"))
    );
    assert_eq!(challenge.as_deref(), Some("Basic realm=\"gatehouse\""));
    let key = introspector(&app, &admin, &["tokens:introspect"]).await;
    let res = browser()
        .post(app.url("/api/v1/auth/introspect"))
        .basic_auth(&key.0, Some("gatehouse_sk_wrong"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    let (status, body, _) = oauth_error(res).await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_client"))
    );
    // A body that is not a form is an invalid request.
    let res = browser()
        .post(app.url("/api/v1/auth/introspect"))
        .basic_auth(&key.0, Some(&key.1))
        .json(&json!({ "token": "x" }))
        .send()
        .await
        .unwrap();
    let (status, body, _) = oauth_error(res).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_request"))
    );
}

backend_tests!(
    an_access_token_is_active_until_its_session_ends,
    a_personal_access_token_shows_its_effective_permissions,
    anything_else_is_inactive_without_a_reason,
    only_an_api_key_holding_tokens_introspect_may_ask,
);
