//! Findings of the independent penetration test, each pinned by a test: lockout per
//! account across every name and every secret check, the second factor before a forced
//! password change, enrolment secrets bound to their sign-in, and what the audit keeps of
//! a mistyped identifier.

use crate::backend_tests;
use crate::helpers::*;
use crate::mfa::{code_now, enable_totp, enrolled, login_body, post_with, set_settings, wrong};
use serde_json::json;

/// An account with both an e-mail and a username.
async fn named(app: &TestApp, email: &str, username: &str) -> gatehouse_domain::model::Account {
    let input = gatehouse_core::admin::CreateUser {
        email: email.into(),
        username: Some(username.into()),
        password: Some(gatehouse_domain::Secret::new(PASSWORD)),
        roles: vec!["user".into()],
        must_change_password: Some(false),
        ..Default::default()
    };
    app.svc
        .create_user(None, input, &gatehouse_core::RequestMeta::default())
        .await
        .unwrap()
}

async fn wrong_passwords_by_email_lock_the_username_too(b: Backend) {
    let app = spawn_app(b).await;
    named(&app, "twin@example.com", "twin").await;
    for _ in 0..5 {
        app.login_with(&browser(), "twin@example.com", "Wrong-password-1")
            .await
            .expect(401, "INVALID_CREDENTIALS");
    }
    app.login_with(&browser(), "twin", PASSWORD)
        .await
        .expect(423, "ACCOUNT_LOCKED");
}

async fn wrong_totp_codes_lock_the_account_for_every_name(b: Backend) {
    let app = spawn_app(b).await;
    named(&app, "guess@example.com", "guess").await;
    let (secret, _) = enable_totp(&app, "guess@example.com").await;
    let body =
        |who: &str, code: String| json!({ "identifier": who, "password": PASSWORD, "totp": code });
    for _ in 0..5 {
        let code = wrong(&code_now(&app, &secret));
        login_body(&app, &browser(), body("guess@example.com", code))
            .await
            .expect(401, "MFA_CODE_INVALID");
    }
    // Before the fix the username kept checking codes, and a right one signed in.
    let right = code_now(&app, &secret);
    login_body(&app, &browser(), body("guess", right))
        .await
        .expect(423, "ACCOUNT_LOCKED");
}

async fn wrong_current_passwords_count_toward_the_lockout(b: Backend) {
    let app = spawn_app(b).await;
    app.user("current@example.com").await;
    let (access, _) = app.tokens("current@example.com").await;
    let change = |current: &str| json!({ "currentPassword": current, "newPassword": "A-whole-new-passphrase-7" });
    for _ in 0..5 {
        app.post_auth("/api/v1/auth/password", &access, change("Wrong-password-1"))
            .await
            .expect(401, "INVALID_CREDENTIALS");
    }
    app.post_auth("/api/v1/auth/password", &access, change(PASSWORD))
        .await
        .expect(423, "ACCOUNT_LOCKED");
    app.login_with(&browser(), "current@example.com", PASSWORD)
        .await
        .expect(423, "ACCOUNT_LOCKED");
}

async fn wrong_passwords_to_turn_totp_off_count_toward_the_lockout(b: Backend) {
    let app = spawn_app(b).await;
    app.user("off@example.com").await;
    let (access, _) = app.tokens("off@example.com").await;
    enable_totp(&app, "off@example.com").await;
    let disable = |password: &str| {
        browser()
            .delete(app.url("/api/v1/auth/totp"))
            .bearer_auth(&access)
            .json(&json!({ "password": password }))
            .send()
    };
    for _ in 0..5 {
        Reply::of(disable("Wrong-password-1").await.unwrap())
            .await
            .expect(401, "INVALID_CREDENTIALS");
    }
    Reply::of(disable(PASSWORD).await.unwrap())
        .await
        .expect(423, "ACCOUNT_LOCKED");
}

async fn a_forced_password_change_waits_for_the_second_factor(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.user("forced@example.com").await;
    let (secret, _) = enable_totp(&app, "forced@example.com").await;
    let admin = app.admin_token().await;
    app.post_auth(
        &format!("/api/v1/admin/users/{}/require-password-change", a.id),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    // Only the old password: the answer is the code step, never the password change.
    let client = browser();
    let r = app
        .login_with(&client, "forced@example.com", PASSWORD)
        .await;
    let data = r.expect(200, "AUTH_MFA_REQUIRED").clone();
    assert_eq!(data["nextAction"]["type"], "verify_totp");
    let r = post_with(
        &app,
        &client,
        "/api/v1/auth/login/password",
        json!({ "challengeToken": data["challengeToken"], "newPassword": "Taken-over-passphrase-9" }),
    )
    .await;
    r.expect(401, "CHALLENGE_INVALID");
    // With the code, the change comes next, then tokens.
    let r = post_with(
        &app,
        &client,
        "/api/v1/auth/login/totp",
        json!({ "challengeToken": data["challengeToken"], "code": code_now(&app, &secret) }),
    )
    .await;
    let data = r.expect(200, "AUTH_PASSWORD_CHANGE_REQUIRED").clone();
    let r = post_with(
        &app,
        &client,
        "/api/v1/auth/login/password",
        json!({ "challengeToken": data["challengeToken"], "newPassword": "Owner-chosen-passphrase-3" }),
    )
    .await;
    r.expect(200, "AUTH_LOGIN_SUCCESS");
}

/// Signs `seed@example.com` in up to its `enroll_totp` step: (client, challenge token).
async fn start_enrolment(app: &TestApp) -> (reqwest::Client, String) {
    let client = browser();
    let r = app.login_with(&client, "seed@example.com", PASSWORD).await;
    let token = r.expect(200, "AUTH_MFA_ENROLLMENT_REQUIRED")["challengeToken"]
        .as_str()
        .unwrap()
        .to_string();
    (client, token)
}

/// The secret the enrolment step shows for `token`.
async fn show_secret(app: &TestApp, client: reqwest::Client, token: String) -> String {
    let r = post_with(
        app,
        &client,
        "/api/v1/auth/login/totp/enroll",
        json!({ "challengeToken": token }),
    )
    .await;
    r.expect(200, "OK")["secret"].as_str().unwrap().to_string()
}

async fn an_enrolment_secret_is_shown_only_to_the_sign_in_that_made_it(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    set_settings(&app, &admin, json!({ "mfaPolicy": "required" }))
        .await
        .expect(200, "OK");
    app.user("seed@example.com").await;
    // The attacker (who has the password) starts an enrolment and never confirms it.
    let (attacker, a_token) = start_enrolment(&app).await;
    let planted = show_secret(&app, attacker.clone(), a_token.clone()).await;
    // The owner's enrolment gets a fresh secret, not the planted one.
    let (owner, o_token) = start_enrolment(&app).await;
    let mine = show_secret(&app, owner.clone(), o_token.clone()).await;
    assert_ne!(mine, planted);
    // A reload shows the owner the same secret again…
    assert_eq!(
        show_secret(&app, owner.clone(), o_token.clone()).await,
        mine
    );
    // …and the attacker's challenge never shows it.
    let after = show_secret(&app, attacker.clone(), a_token.clone()).await;
    assert_ne!(after, mine);
    // The attacker cannot confirm the owner's secret through their own challenge.
    app.advance(30);
    let r = post_with(
        &app,
        &attacker,
        "/api/v1/auth/login/totp/confirm",
        json!({ "challengeToken": a_token, "code": code_now(&app, &mine) }),
    )
    .await;
    r.expect(401, "MFA_CODE_INVALID");
}

async fn a_password_typed_as_a_username_is_not_audited(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    app.login_with(&browser(), "Hunter2secretpass", "whatever-else-1")
        .await
        .expect(401, "INVALID_CREDENTIALS");
    app.login_with(&browser(), "ghost@example.com", "whatever-else-1")
        .await
        .expect(401, "INVALID_CREDENTIALS");
    let events = app
        .get_auth(
            "/api/v1/admin/audit-events?action=login&outcome=failure",
            &admin,
        )
        .await
        .expect(200, "OK")
        .clone();
    let text = events.to_string().to_lowercase();
    assert!(!text.contains("hunter2secretpass"), "{text}");
    let shown: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["details"]["identifier"].as_str())
        .collect();
    assert!(shown.iter().any(|i| i.starts_with("sha256:")), "{shown:?}");
    assert!(shown.contains(&"ghost@example.com"), "{shown:?}");
}

async fn the_same_account_signs_in_again_after_a_lock_is_lifted(b: Backend) {
    let app = spawn_app(b).await;
    let (secret, _) = enrolled(&app, "lifted@example.com").await;
    for _ in 0..5 {
        let code = wrong(&code_now(&app, &secret));
        let body =
            json!({ "identifier": "lifted@example.com", "password": PASSWORD, "totp": code });
        login_body(&app, &browser(), body).await;
    }
    app.login_with(&browser(), "lifted@example.com", PASSWORD)
        .await
        .expect(423, "ACCOUNT_LOCKED");
    let id = app
        .svc
        .store
        .account_by_email("lifted@example.com")
        .await
        .unwrap()
        .unwrap()
        .id;
    let admin = app.admin_token().await;
    app.post_auth(
        &format!("/api/v1/admin/users/{id}/unlock"),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    app.login_with(&browser(), "lifted@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_MFA_REQUIRED");
}

async fn the_last_active_admin_cannot_disable_itself(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let me = app.get_auth("/api/v1/auth/me", &admin).await;
    let id = me.expect(200, "OK")["account"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post_auth(
            &format!("/api/v1/admin/users/{id}/disable"),
            &admin,
            json!({}),
        )
        .await;
    r.expect(409, "CONFLICT");
    assert_eq!(r.body["errors"][0]["code"], "last_admin");
    // With a second admin, either may go.
    let second = app.admin_token().await;
    app.post_auth(
        &format!("/api/v1/admin/users/{id}/disable"),
        &second,
        json!({}),
    )
    .await
    .expect(200, "OK");
}

/// `(access token, session id)` of a fresh sign-in of `email`, then logged out.
async fn logged_out(app: &TestApp, email: &str) -> (String, String) {
    app.user(email).await;
    let (access, _) = app.tokens(email).await;
    let me = app.get_auth("/api/v1/auth/me", &access).await;
    let sid = me.expect(200, "OK")["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    app.post_auth("/api/v1/auth/logout", &access, json!({}))
        .await
        .expect(200, "AUTH_LOGOUT_SUCCESS");
    app.get_auth("/api/v1/auth/me", &access)
        .await
        .expect(401, "TOKEN_REVOKED");
    (access, sid)
}

async fn a_cache_that_forgot_a_logout_relearns_it_from_the_store(b: Backend) {
    let app = spawn_app(b).await;
    let (access, sid) = logged_out(&app, "flushed@example.com").await;
    // What a Redis flush does to the marks.
    let payload = access.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    let jti = claims["jti"].as_str().unwrap();
    app.svc.cache.delete(&format!("srev:{sid}")).await.unwrap();
    app.svc.cache.delete(&format!("deny:{jti}")).await.unwrap();
    app.get_auth("/api/v1/auth/me", &access)
        .await
        .expect(200, "OK");
    // The periodic rebuild (also run at start) restores it from the store.
    assert!(app.svc.restore_revocations().await.unwrap() >= 1);
    app.get_auth("/api/v1/auth/me", &access)
        .await
        .expect(401, "TOKEN_REVOKED");
}

/// A restart on the memory cache forgets every mark; the new process rebuilds them before
/// its first request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_the_memory_cache_keeps_logged_out_tokens_out() {
    let app = spawn_app(Backend::Sqlite).await;
    let (access, _) = logged_out(&app, "restart@example.com").await;
    let clock = std::sync::Arc::new(gatehouse_domain::ports::ManualClock::new(app.now()));
    let again = gatehouse::server::start(&app.config, clock).await.unwrap();
    let r = Reply::of(
        browser()
            .get(format!("http://{}/api/v1/auth/me", again.addr))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(401, "TOKEN_REVOKED");
    again.task.abort();
}

/// A branch switch denies the token it replaced; the denial is in the store too, so a
/// cache that forgot it (a flush, a restart on the memory cache) learns it back.
async fn a_token_replaced_by_a_branch_switch_stays_refused_after_a_flush(b: Backend) {
    use crate::tenancy::{branch, claims, member, workspace};
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let ws = workspace(&app, &admin, "acme").await;
    let one = branch(&app, &admin, &ws, "one").await;
    let two = branch(&app, &admin, &ws, "two").await;
    let account = app.user("switch@example.com").await;
    member(
        &app,
        &admin,
        &ws,
        &account.id.to_string(),
        &[&one, &two],
        &[],
    )
    .await;
    let r = app.login("switch@example.com", PASSWORD).await;
    let old = r.expect(200, "AUTH_LOGIN_SUCCESS")["auth"]["accountAccessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post_auth(
            "/api/v1/auth/select-branch",
            &old,
            json!({ "branchId": two }),
        )
        .await;
    let new = r.expect(200, "OK")["auth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    app.get_auth("/api/v1/auth/me", &old)
        .await
        .expect(401, "TOKEN_REVOKED");
    let jti = claims(&old)["jti"].as_str().unwrap().to_string();
    app.svc.cache.delete(&format!("deny:{jti}")).await.unwrap();
    app.get_auth("/api/v1/auth/me", &old)
        .await
        .expect(200, "OK");
    app.svc.restore_revocations().await.unwrap();
    app.get_auth("/api/v1/auth/me", &old)
        .await
        .expect(401, "TOKEN_REVOKED");
    // The session itself lives on in its new branch.
    app.get_auth("/api/v1/auth/me", &new)
        .await
        .expect(200, "OK");
}

backend_tests!(
    wrong_passwords_by_email_lock_the_username_too,
    wrong_totp_codes_lock_the_account_for_every_name,
    wrong_current_passwords_count_toward_the_lockout,
    wrong_passwords_to_turn_totp_off_count_toward_the_lockout,
    a_forced_password_change_waits_for_the_second_factor,
    an_enrolment_secret_is_shown_only_to_the_sign_in_that_made_it,
    a_password_typed_as_a_username_is_not_audited,
    the_same_account_signs_in_again_after_a_lock_is_lifted,
    the_last_active_admin_cannot_disable_itself,
    a_cache_that_forgot_a_logout_relearns_it_from_the_store,
    a_token_replaced_by_a_branch_switch_stays_refused_after_a_flush,
);

/// The embedded database, its WAL and its key file are readable by their owner only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_database_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let app = spawn_app(Backend::Sqlite).await;
    app.user("private@example.com").await;
    app.login("private@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
    let db = gatehouse::datadir::sqlite_path(&app.config.database.url).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    assert_eq!(mode(&db), 0o600);
    for side in ["-wal", "-shm", ".key"] {
        let p = std::path::PathBuf::from(format!("{}{side}", db.display()));
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
}
