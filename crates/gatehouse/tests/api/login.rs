//! Login: identifiers, CSRF, enumeration resistance, account state, lockout, the
//! password-change step, legacy hash upgrade.

use crate::backend_tests;
use crate::helpers::*;
use serde_json::json;

async fn login_accepts_email_case_insensitively_and_username(b: Backend) {
    let app = spawn_app(b).await;
    let input = gatehouse_core::admin::CreateUser {
        email: "Mixed.Case@Example.com".into(),
        username: Some("mixed_user".into()),
        password: Some(gatehouse_domain::Secret::new(PASSWORD)),
        must_change_password: Some(false),
        ..Default::default()
    };
    app.svc
        .create_user(None, input, &Default::default())
        .await
        .unwrap();
    let r = app.login("MIXED.case@example.COM", PASSWORD).await;
    let data = r.expect(200, "AUTH_LOGIN_SUCCESS");
    assert_eq!(data["account"]["email"], "mixed.case@example.com");
    assert_eq!(data["auth"]["tokenType"], "Bearer");
    assert_eq!(data["nextAction"]["type"], "load_current_context");
    assert!(
        data["auth"]["accessToken"]
            .as_str()
            .unwrap()
            .split('.')
            .count()
            == 3
    );
    assert_eq!(data["auth"]["expiresIn"], 900);
    let r = app.login_with(&browser(), "Mixed_User", PASSWORD).await;
    r.expect(200, "AUTH_LOGIN_SUCCESS");
}

async fn login_sets_an_httponly_refresh_cookie_scoped_to_auth(b: Backend) {
    let app = spawn_app(b).await;
    app.user("cookie@example.com").await;
    let r = app.login("cookie@example.com", PASSWORD).await;
    r.expect(200, "AUTH_LOGIN_SUCCESS");
    let cookie = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("gh_refresh="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Path=/api/v1/auth"),
        "{cookie}"
    );
}

async fn login_without_csrf_token_is_refused(b: Backend) {
    let app = spawn_app(b).await;
    app.user("csrf@example.com").await;
    let body = json!({ "identifier": "csrf@example.com", "password": PASSWORD });
    let r = Reply::of(
        app.client
            .post(app.url("/api/v1/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(403, "CSRF_MISSING");
    let _ = app.csrf_for(&app.client).await;
    let r = Reply::of(
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("X-CSRFToken", "1.abc.def")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(403, "CSRF_INVALID");
    // A token issued to another browser does not work in this one.
    let other = browser();
    let foreign = app.csrf_for(&other).await;
    let r = Reply::of(
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("X-CSRFToken", foreign)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(403, "CSRF_INVALID");
}

fn strip_request_id(mut v: serde_json::Value) -> serde_json::Value {
    v["requestId"] = json!(null);
    v
}

async fn unknown_user_wrong_password_and_disabled_account_look_identical(b: Backend) {
    let app = spawn_app(b).await;
    app.user("real@example.com").await;
    let disabled = app.user("off@example.com").await;
    app.svc
        .set_user_status(
            None,
            disabled.id,
            gatehouse_domain::model::AccountStatus::Disabled,
            &Default::default(),
        )
        .await
        .unwrap();
    let unknown = app
        .login_with(&browser(), "ghost@example.com", "Wrong-password-1")
        .await;
    let wrong = app
        .login_with(&browser(), "real@example.com", "Wrong-password-1")
        .await;
    let off = app
        .login_with(&browser(), "off@example.com", "Wrong-password-1")
        .await;
    for r in [&unknown, &wrong, &off] {
        r.expect(401, "INVALID_CREDENTIALS");
    }
    assert_eq!(
        strip_request_id(unknown.body.clone()),
        strip_request_id(wrong.body.clone())
    );
    assert_eq!(
        strip_request_id(unknown.body.clone()),
        strip_request_id(off.body.clone())
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
    assert_eq!(names(&unknown), names(&wrong));
    assert_eq!(names(&unknown), names(&off));
    assert!(
        unknown.headers.get("set-cookie").is_none() && wrong.headers.get("set-cookie").is_none()
    );
}

async fn disabled_account_with_right_password_is_told_so(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.user("disabled@example.com").await;
    app.svc
        .set_user_status(
            None,
            a.id,
            gatehouse_domain::model::AccountStatus::Disabled,
            &Default::default(),
        )
        .await
        .unwrap();
    app.login("disabled@example.com", PASSWORD)
        .await
        .expect(403, "ACCOUNT_DISABLED");
}

async fn five_failures_lock_the_identifier_even_for_the_right_password(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.user("lock@example.com").await;
    for _ in 0..5 {
        app.login_with(&browser(), "lock@example.com", "Wrong-password-1")
            .await
            .expect(401, "INVALID_CREDENTIALS");
    }
    let r = app
        .login_with(&browser(), "lock@example.com", PASSWORD)
        .await;
    r.expect(423, "ACCOUNT_LOCKED");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900);
    // Unknown identifiers lock the same way, so lockout reveals nothing.
    for _ in 0..5 {
        app.login_with(&browser(), "nobody@example.com", "Wrong-password-1")
            .await;
    }
    app.login_with(&browser(), "nobody@example.com", "Wrong-password-1")
        .await
        .expect(423, "ACCOUNT_LOCKED");
    // An admin unlock lifts it.
    let admin = app.admin_token().await;
    app.post_auth(
        &format!("/api/v1/admin/users/{}/unlock", a.id),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    app.login_with(&browser(), "lock@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_expires_on_its_own() {
    // The memory cache follows the injected clock, so expiry is tested without waiting.
    let app = spawn_app(Backend::Sqlite).await;
    app.user("expire@example.com").await;
    for _ in 0..5 {
        app.login_with(&browser(), "expire@example.com", "Wrong-password-1")
            .await;
    }
    app.login_with(&browser(), "expire@example.com", PASSWORD)
        .await
        .expect(423, "ACCOUNT_LOCKED");
    app.advance(15 * 60 + 1);
    app.login_with(&browser(), "expire@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
}

async fn success_resets_the_failure_count(b: Backend) {
    let app = spawn_app(b).await;
    app.user("reset@example.com").await;
    for _ in 0..4 {
        app.login_with(&browser(), "reset@example.com", "Wrong-password-1")
            .await;
    }
    app.login_with(&browser(), "reset@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
    for _ in 0..4 {
        app.login_with(&browser(), "reset@example.com", "Wrong-password-1")
            .await
            .expect(401, "INVALID_CREDENTIALS");
    }
    app.login_with(&browser(), "reset@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
}

async fn must_change_password_gets_a_challenge_and_never_tokens(b: Backend) {
    let app = spawn_app(b).await;
    app.user_with("first@example.com", true, &[]).await;
    let r = app.login("first@example.com", PASSWORD).await;
    let data = r.expect(200, "AUTH_PASSWORD_CHANGE_REQUIRED").clone();
    assert_eq!(data["nextAction"]["type"], "change_password");
    assert!(data.get("auth").is_none());
    assert!(
        !r.body.to_string().contains("eyJ"),
        "no JWT before the last step"
    );
    assert!(r.headers.get("set-cookie").is_none());
    let challenge = data["challengeToken"].as_str().unwrap().to_string();
    // Weak and unchanged passwords are refused, and the challenge survives them.
    let weak = app
        .post(
            "/api/v1/auth/login/password",
            json!({ "challengeToken": challenge, "newPassword": "short" }),
        )
        .await;
    weak.expect(422, "PASSWORD_POLICY_VIOLATION");
    assert_eq!(weak.body["errors"][0]["field"], "newPassword");
    let same = app
        .post(
            "/api/v1/auth/login/password",
            json!({ "challengeToken": challenge, "newPassword": PASSWORD }),
        )
        .await;
    same.expect(422, "PASSWORD_POLICY_VIOLATION");
    let ok = app
        .post(
            "/api/v1/auth/login/password",
            json!({ "challengeToken": challenge, "newPassword": "a-Brand-new-pass-42" }),
        )
        .await;
    let done = ok.expect(200, "AUTH_LOGIN_SUCCESS");
    assert_eq!(done["account"]["mustChangePassword"], false);
    assert!(done["auth"]["accessToken"].is_string());
    // The challenge was single-use.
    let again = app
        .post(
            "/api/v1/auth/login/password",
            json!({ "challengeToken": challenge, "newPassword": "another-New-pass-43" }),
        )
        .await;
    again.expect(401, "CHALLENGE_INVALID");
    app.login_with(&browser(), "first@example.com", "a-Brand-new-pass-42")
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenge_expires() {
    let app = spawn_app(Backend::Sqlite).await;
    app.user_with("slow@example.com", true, &[]).await;
    let r = app.login("slow@example.com", PASSWORD).await;
    let challenge = r.expect(200, "AUTH_PASSWORD_CHANGE_REQUIRED")["challengeToken"]
        .as_str()
        .unwrap()
        .to_string();
    app.advance(301);
    let r = app
        .post(
            "/api/v1/auth/login/password",
            json!({ "challengeToken": challenge, "newPassword": "a-Brand-new-pass-42" }),
        )
        .await;
    r.expect(401, "CHALLENGE_INVALID");
}

async fn legacy_bcrypt_hash_verifies_and_is_upgraded_to_argon2id(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.user("legacy@example.com").await;
    let legacy = bcrypt_hash("imported-Pass-77");
    app.svc
        .store
        .change_password(a.id, &legacy, None, app.now(), &audit())
        .await
        .unwrap();
    app.login("legacy@example.com", "imported-Pass-77")
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
    let stored = app.svc.store.password_hash(a.id).await.unwrap().unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    app.login_with(&browser(), "legacy@example.com", "imported-Pass-77")
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
}

fn bcrypt_hash(pw: &str) -> String {
    // A real bcrypt hash from the reference implementation's crate, cost 4 for speed.
    bcrypt::hash(pw, 4).unwrap()
}

fn audit() -> gatehouse_domain::model::AuditEvent {
    gatehouse_core::audit::event(
        &Default::default(),
        gatehouse_domain::Timestamp::from_millis(0),
        "test",
        "success",
    )
}

async fn login_records_audit_and_last_login(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.user("audit@example.com").await;
    app.login_with(&browser(), "audit@example.com", "Wrong-password-1")
        .await;
    app.login("audit@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
    let account = app.svc.store.account_by_id(a.id).await.unwrap().unwrap();
    assert!(account.last_login_at.is_some());
    let filter = gatehouse_domain::model::AuditFilter {
        account_id: Some(a.id),
        action: Some("login".into()),
        ..Default::default()
    };
    let page = gatehouse_domain::model::Page {
        page: 1,
        page_size: 10,
    };
    let events = app.svc.store.list_audit(&filter, page).await.unwrap();
    let outcomes: Vec<(&str, Option<&str>)> = events
        .items
        .iter()
        .map(|e| (e.outcome.as_str(), e.reason.as_deref()))
        .collect();
    assert!(outcomes.contains(&("success", None)), "{outcomes:?}");
    assert!(
        outcomes.contains(&("failure", Some("INVALID_CREDENTIALS"))),
        "{outcomes:?}"
    );
    assert!(
        events
            .items
            .iter()
            .all(|e| e.ip.as_deref() == Some("127.0.0.1") && e.request_id.is_some())
    );
}

backend_tests!(
    login_accepts_email_case_insensitively_and_username,
    login_sets_an_httponly_refresh_cookie_scoped_to_auth,
    login_without_csrf_token_is_refused,
    unknown_user_wrong_password_and_disabled_account_look_identical,
    disabled_account_with_right_password_is_told_so,
    five_failures_lock_the_identifier_even_for_the_right_password,
    success_resets_the_failure_count,
    must_change_password_gets_a_challenge_and_never_tokens,
    legacy_bcrypt_hash_verifies_and_is_upgraded_to_argon2id,
    login_records_audit_and_last_login,
);
