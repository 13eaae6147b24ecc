//! Access and refresh tokens, sessions, logout, password change.

use crate::backend_tests;
use crate::helpers::*;
use serde_json::json;

async fn me_returns_the_account_for_a_bearer_token(b: Backend) {
    let app = spawn_app(b).await;
    app.user("me@example.com").await;
    let (access, _) = app.tokens("me@example.com").await;
    let data = app
        .get_auth("/api/v1/auth/me", &access)
        .await
        .expect(200, "OK")
        .clone();
    assert_eq!(data["account"]["email"], "me@example.com");
    assert!(data["sessionId"].is_string());
}

/// `/auth/me` answers from the instance's short account cache: a change made through this
/// instance shows at once; one made elsewhere (here: straight in the store, as another
/// instance or the CLI would) shows once `session.account_cache_ms` has passed.
async fn me_sees_local_changes_at_once_and_outside_ones_within_the_cache_time(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let a = app.user("cached@example.com").await;
    let (access, _) = app.tokens("cached@example.com").await;
    async fn must_change(app: &TestApp, access: &str) -> serde_json::Value {
        app.get_auth("/api/v1/auth/me", access)
            .await
            .expect(200, "OK")["account"]["mustChangePassword"]
            .clone()
    }
    assert_eq!(must_change(&app, &access).await, false);
    app.post_auth(
        &format!("/api/v1/admin/users/{}/require-password-change", a.id),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    assert_eq!(
        must_change(&app, &access).await,
        true,
        "a change through this instance shows at once"
    );

    let meta = gatehouse_core::RequestMeta::default();
    let audit = gatehouse_core::audit::event(&meta, app.svc.now(), "test.outside", "success");
    app.svc
        .store
        .set_must_change_password(a.id, false, app.svc.now(), &audit)
        .await
        .unwrap();
    assert_eq!(
        must_change(&app, &access).await,
        true,
        "within the cache time the copy is served"
    );
    let ttl = app.config.session.account_cache_ms;
    app.clock.advance(std::time::Duration::from_millis(ttl));
    assert_eq!(
        must_change(&app, &access).await,
        false,
        "after the cache time the store is read"
    );
}

async fn me_without_credentials_or_with_junk_is_refused(b: Backend) {
    let app = spawn_app(b).await;
    Reply::of(
        browser()
            .get(app.url("/api/v1/auth/me"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(401, "AUTHENTICATION_REQUIRED");
    app.get_auth("/api/v1/auth/me", "not.a.jwt")
        .await
        .expect(401, "TOKEN_INVALID");
    let r = Reply::of(
        browser()
            .get(app.url("/api/v1/auth/me"))
            .header("Authorization", "Basic abc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(401, "TOKEN_INVALID");
}

async fn tampered_and_alg_none_tokens_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    app.user("tamper@example.com").await;
    let (access, _) = app.tokens("tamper@example.com").await;
    let parts: Vec<&str> = access.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["roles"] = json!(["admin", "root"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    app.get_auth("/api/v1/auth/me", &forged)
        .await
        .expect(401, "TOKEN_INVALID");
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    let none_header = json!({ "alg": "none", "typ": "JWT", "kid": header["kid"] });
    let unsigned = format!("{}.{}.", b64.encode(none_header.to_string()), parts[1]);
    app.get_auth("/api/v1/auth/me", &unsigned)
        .await
        .expect(401, "TOKEN_INVALID");
    let hs_header = json!({ "alg": "HS256", "typ": "JWT", "kid": header["kid"] });
    let confused = format!(
        "{}.{}.{}",
        b64.encode(hs_header.to_string()),
        parts[1],
        parts[2]
    );
    app.get_auth("/api/v1/auth/me", &confused)
        .await
        .expect(401, "TOKEN_INVALID");
}

async fn access_token_expires_after_fifteen_minutes(b: Backend) {
    let app = spawn_app(b).await;
    app.user("exp@example.com").await;
    let (access, _) = app.tokens("exp@example.com").await;
    app.advance(14 * 60);
    app.get_auth("/api/v1/auth/me", &access)
        .await
        .expect(200, "OK");
    app.advance(2 * 60);
    app.get_auth("/api/v1/auth/me", &access)
        .await
        .expect(401, "TOKEN_EXPIRED");
}

async fn access_token_verifies_against_the_published_jwks(b: Backend) {
    let app = spawn_app(b).await;
    app.user("jwks@example.com").await;
    let (access, _) = app.tokens("jwks@example.com").await;
    let jwks: serde_json::Value = browser()
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = access.split('.').collect();
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("kid published");
    let x: [u8; 32] = b64
        .decode(key["x"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&b64.decode(parts[2]).unwrap()).unwrap();
    use ed25519_dalek::Verifier;
    vk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .expect("signature verifies offline");
    let claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    for k in [
        "iss", "aud", "sub", "sid", "jti", "iat", "nbf", "exp", "typ", "scope", "roles",
    ] {
        assert!(claims.get(k).is_some(), "claim {k} missing: {claims}");
    }
    assert_eq!(claims["typ"], "access");
    assert_eq!(claims["scope"], "account");
}

async fn refresh_rotates_and_a_reused_token_revokes_the_session(b: Backend) {
    let app = spawn_app(b).await;
    app.user("rot@example.com").await;
    let (access, refresh) = app.tokens("rot@example.com").await;
    let r = app
        .post("/api/v1/auth/refresh", json!({ "refreshToken": refresh }))
        .await;
    let data = r.expect(200, "AUTH_REFRESH_SUCCESS").clone();
    let refresh2 = data["auth"]["refreshToken"].as_str().unwrap().to_string();
    let access2 = data["auth"]["accessToken"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh);
    app.get_auth("/api/v1/auth/me", &access2)
        .await
        .expect(200, "OK");
    // The spent token comes back: the whole session dies.
    app.post("/api/v1/auth/refresh", json!({ "refreshToken": refresh }))
        .await
        .expect(401, "REFRESH_TOKEN_REUSED");
    app.post("/api/v1/auth/refresh", json!({ "refreshToken": refresh2 }))
        .await
        .expect(401, "TOKEN_REVOKED");
    app.get_auth("/api/v1/auth/me", &access2)
        .await
        .expect(401, "TOKEN_REVOKED");
    app.get_auth("/api/v1/auth/me", &access)
        .await
        .expect(401, "TOKEN_REVOKED");
}

async fn concurrent_refreshes_of_one_token_let_exactly_one_win(b: Backend) {
    let app = spawn_app(b).await;
    app.user("race@example.com").await;
    let (_, refresh) = app.tokens("race@example.com").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let url = app.url("/api/v1/auth/refresh");
        let token = refresh.clone();
        tasks.spawn(async move {
            let res = browser()
                .post(url)
                .json(&json!({ "refreshToken": token }))
                .send()
                .await
                .unwrap();
            res.status().as_u16()
        });
    }
    let statuses = tasks.join_all().await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
}

async fn unknown_refresh_token_is_invalid(b: Backend) {
    let app = spawn_app(b).await;
    app.post(
        "/api/v1/auth/refresh",
        json!({ "refreshToken": "x".repeat(43) }),
    )
    .await
    .expect(401, "TOKEN_INVALID");
    app.post("/api/v1/auth/refresh", json!({}))
        .await
        .expect(400, "VALIDATION_ERROR");
}

async fn refresh_by_cookie_needs_csrf(b: Backend) {
    let app = spawn_app(b).await;
    app.user("ck@example.com").await;
    app.login("ck@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
    let r = Reply::of(
        app.client
            .post(app.url("/api/v1/auth/refresh"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(403, "CSRF_MISSING");
    let csrf = app.csrf_for(&app.client).await;
    let r = Reply::of(
        app.client
            .post(app.url("/api/v1/auth/refresh"))
            .header("X-CSRFToken", &csrf)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(200, "AUTH_REFRESH_SUCCESS");
    // The rotated cookie replaced the old one, so a second cookie refresh also works.
    let r = Reply::of(
        app.client
            .post(app.url("/api/v1/auth/refresh"))
            .header("X-CSRFToken", &csrf)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(200, "AUTH_REFRESH_SUCCESS");
}

async fn refresh_token_dies_after_idle_and_absolute_lifetimes(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.session.refresh_idle_seconds = 3600;
        c.session.refresh_absolute_seconds = 3 * 3600;
    })
    .await;
    app.user("idle@example.com").await;
    let (_, refresh) = app.tokens("idle@example.com").await;
    app.advance(3601);
    app.post("/api/v1/auth/refresh", json!({ "refreshToken": refresh }))
        .await
        .expect(401, "TOKEN_EXPIRED");
    // Used within the idle window it keeps going, but never past the absolute lifetime.
    let (_, mut refresh) = app.tokens("idle@example.com").await;
    for _ in 0..3 {
        app.advance(3000);
        let r = app
            .post("/api/v1/auth/refresh", json!({ "refreshToken": refresh }))
            .await;
        refresh = r.expect(200, "AUTH_REFRESH_SUCCESS")["auth"]["refreshToken"]
            .as_str()
            .unwrap()
            .to_string();
    }
    app.advance(2000);
    app.post("/api/v1/auth/refresh", json!({ "refreshToken": refresh }))
        .await
        .expect(401, "TOKEN_EXPIRED");
}

async fn logout_revokes_the_session_and_denies_the_access_token(b: Backend) {
    let app = spawn_app(b).await;
    app.user("out@example.com").await;
    let (access, refresh) = app.tokens("out@example.com").await;
    let (other_access, _) = app.tokens("out@example.com").await;
    app.post_auth("/api/v1/auth/logout", &access, json!({}))
        .await
        .expect(200, "AUTH_LOGOUT_SUCCESS");
    app.get_auth("/api/v1/auth/me", &access)
        .await
        .expect(401, "TOKEN_REVOKED");
    app.post("/api/v1/auth/refresh", json!({ "refreshToken": refresh }))
        .await
        .expect(401, "TOKEN_REVOKED");
    app.get_auth("/api/v1/auth/me", &other_access)
        .await
        .expect(200, "OK");
}

async fn logout_all_ends_every_session(b: Backend) {
    let app = spawn_app(b).await;
    app.user("all@example.com").await;
    let (a1, _) = app.tokens("all@example.com").await;
    let (a2, r2) = app.tokens("all@example.com").await;
    let data = app
        .post_auth("/api/v1/auth/logout-all", &a1, json!({}))
        .await
        .expect(200, "AUTH_LOGOUT_SUCCESS")
        .clone();
    assert_eq!(data["revokedSessions"], 2);
    app.get_auth("/api/v1/auth/me", &a1)
        .await
        .expect(401, "TOKEN_REVOKED");
    app.get_auth("/api/v1/auth/me", &a2)
        .await
        .expect(401, "TOKEN_REVOKED");
    app.post("/api/v1/auth/refresh", json!({ "refreshToken": r2 }))
        .await
        .expect(401, "TOKEN_REVOKED");
}

async fn password_change_needs_the_current_password_and_revokes_other_sessions(b: Backend) {
    let app = spawn_app(b).await;
    app.user("pw@example.com").await;
    let (mine, _) = app.tokens("pw@example.com").await;
    let (other, other_refresh) = app.tokens("pw@example.com").await;
    let wrong = app
        .post_auth(
            "/api/v1/auth/password",
            &mine,
            json!({ "currentPassword": "Wrong-password-1", "newPassword": "a-Fresh-password-77" }),
        )
        .await;
    wrong.expect(401, "INVALID_CREDENTIALS");
    let weak = app
        .post_auth(
            "/api/v1/auth/password",
            &mine,
            json!({ "currentPassword": PASSWORD, "newPassword": "password123" }),
        )
        .await;
    weak.expect(422, "PASSWORD_POLICY_VIOLATION");
    assert_eq!(weak.body["errors"][0]["code"], "common_password");
    app.post_auth(
        "/api/v1/auth/password",
        &mine,
        json!({ "currentPassword": PASSWORD, "newPassword": "a-Fresh-password-77" }),
    )
    .await
    .expect(200, "OK");
    app.get_auth("/api/v1/auth/me", &mine)
        .await
        .expect(200, "OK");
    app.get_auth("/api/v1/auth/me", &other)
        .await
        .expect(401, "TOKEN_REVOKED");
    app.post(
        "/api/v1/auth/refresh",
        json!({ "refreshToken": other_refresh }),
    )
    .await
    .expect(401, "TOKEN_REVOKED");
    app.login_with(&browser(), "pw@example.com", PASSWORD)
        .await
        .expect(401, "INVALID_CREDENTIALS");
    app.login_with(&browser(), "pw@example.com", "a-Fresh-password-77")
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
}

async fn sessions_are_listed_and_one_can_be_revoked(b: Backend) {
    let app = spawn_app(b).await;
    app.user("sess@example.com").await;
    let (mine, _) = app.tokens("sess@example.com").await;
    let (other, _) = app.tokens("sess@example.com").await;
    let list = app
        .get_auth("/api/v1/auth/sessions", &mine)
        .await
        .expect(200, "OK")
        .clone();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(
        items
            .iter()
            .all(|s| s["ip"] == "127.0.0.1" && s["authMethods"] == json!(["pwd"]))
    );
    let other_id = items.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = Reply::of(
        browser()
            .delete(app.url(&format!("/api/v1/auth/sessions/{other_id}")))
            .bearer_auth(&mine)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(200, "OK");
    app.get_auth("/api/v1/auth/me", &other)
        .await
        .expect(401, "TOKEN_REVOKED");
    // Someone else's session, or a malformed id, is not found.
    app.user("stranger@example.com").await;
    let (stranger, _) = app.tokens("stranger@example.com").await;
    let mine_id = app.get_auth("/api/v1/auth/me", &mine).await.body["data"]["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let r = Reply::of(
        browser()
            .delete(app.url(&format!("/api/v1/auth/sessions/{mine_id}")))
            .bearer_auth(&stranger)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(404, "NOT_FOUND");
    let r = Reply::of(
        browser()
            .delete(app.url("/api/v1/auth/sessions/not-a-uuid"))
            .bearer_auth(&mine)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(404, "NOT_FOUND");
}

async fn hs256_without_a_long_secret_answers_key_not_configured(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.jwt.algorithm = gatehouse_core::config::JwtAlgorithm::HS256;
        c.jwt.secret = Some(gatehouse_domain::Secret::new("too-short"));
    })
    .await;
    app.user("hs@example.com").await;
    app.login("hs@example.com", PASSWORD)
        .await
        .expect(503, "JWT_KEY_NOT_CONFIGURED");
}

async fn hs256_with_a_secret_issues_verifiable_tokens(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.jwt.algorithm = gatehouse_core::config::JwtAlgorithm::HS256;
        c.jwt.secret = Some(gatehouse_domain::Secret::new(
            "0123456789abcdef0123456789abcdef",
        ));
    })
    .await;
    app.user("hs2@example.com").await;
    let (access, _) = app.tokens("hs2@example.com").await;
    assert!(access.starts_with("eyJhbGciOiJIUzI1NiI"), "{access}");
    app.get_auth("/api/v1/auth/me", &access)
        .await
        .expect(200, "OK");
}

async fn rotated_signing_key_signs_new_tokens_and_old_ones_stay_valid(b: Backend) {
    let app = spawn_app(b).await;
    app.user("rotate@example.com").await;
    let (old, _) = app.tokens("rotate@example.com").await;
    let before = app.svc.keys.signing_kid().unwrap();
    let after = app
        .svc
        .keys
        .rotate(app.svc.store.as_ref(), app.now())
        .await
        .unwrap();
    assert_ne!(before, after);
    let (new, _) = app.tokens("rotate@example.com").await;
    app.get_auth("/api/v1/auth/me", &old)
        .await
        .expect(200, "OK");
    app.get_auth("/api/v1/auth/me", &new)
        .await
        .expect(200, "OK");
    let jwks: serde_json::Value = browser()
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
}

async fn a_key_rotated_by_another_instance_is_picked_up_on_first_sight(b: Backend) {
    let app = spawn_app(b).await;
    app.user("peer@example.com").await;
    // A second instance on the same store rotates the key and signs with the new one.
    let peer = gatehouse::server::service(&app.config, app.clock.clone())
        .await
        .unwrap();
    let new_kid = peer
        .keys
        .rotate(peer.store.as_ref(), app.now())
        .await
        .unwrap();
    let secret = gatehouse_domain::Secret::new(PASSWORD);
    let outcome = peer
        .login(
            "peer@example.com",
            &secret,
            gatehouse_domain::model::TokenKind::Refresh,
            &Default::default(),
        )
        .await
        .unwrap();
    let gatehouse_core::login::LoginOutcome::Done(issued) = outcome else {
        panic!("expected tokens")
    };
    let token = issued.access_token.unwrap().expose().to_string();
    assert_ne!(
        app.svc.keys.signing_kid().unwrap(),
        new_kid,
        "this instance has not reloaded yet"
    );
    app.get_auth("/api/v1/auth/me", &token)
        .await
        .expect(200, "OK");
    assert_eq!(
        app.svc.keys.signing_kid().unwrap(),
        new_kid,
        "and now it signs with the new key"
    );
}

async fn disabling_an_account_refuses_its_tokens_at_once(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.user("dis@example.com").await;
    let (access, refresh) = app.tokens("dis@example.com").await;
    let admin = app.admin_token().await;
    app.post_auth(
        &format!("/api/v1/admin/users/{}/disable", a.id),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    app.get_auth("/api/v1/auth/me", &access)
        .await
        .expect(401, "TOKEN_REVOKED");
    app.post("/api/v1/auth/refresh", json!({ "refreshToken": refresh }))
        .await
        .expect(401, "TOKEN_REVOKED");
}

backend_tests!(
    me_returns_the_account_for_a_bearer_token,
    me_sees_local_changes_at_once_and_outside_ones_within_the_cache_time,
    me_without_credentials_or_with_junk_is_refused,
    tampered_and_alg_none_tokens_are_refused,
    access_token_expires_after_fifteen_minutes,
    access_token_verifies_against_the_published_jwks,
    refresh_rotates_and_a_reused_token_revokes_the_session,
    concurrent_refreshes_of_one_token_let_exactly_one_win,
    unknown_refresh_token_is_invalid,
    refresh_by_cookie_needs_csrf,
    refresh_token_dies_after_idle_and_absolute_lifetimes,
    logout_revokes_the_session_and_denies_the_access_token,
    logout_all_ends_every_session,
    password_change_needs_the_current_password_and_revokes_other_sessions,
    sessions_are_listed_and_one_can_be_revoked,
    hs256_without_a_long_secret_answers_key_not_configured,
    hs256_with_a_secret_issues_verifiable_tokens,
    rotated_signing_key_signs_new_tokens_and_old_ones_stay_valid,
    disabling_an_account_refuses_its_tokens_at_once,
    a_key_rotated_by_another_instance_is_picked_up_on_first_sight,
);
