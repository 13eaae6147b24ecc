//! Two-factor sign-in: TOTP enrolment, the verify/enrol login steps and their limits,
//! recovery codes, trusted devices, the MFA policy and other instance settings, the admin
//! reset, and the TOTP page flow. Codes are computed here with the test's own RFC 6238.

use crate::backend_tests;
use crate::helpers::*;
use hmac::{Hmac, Mac};
use reqwest::Client;
use serde_json::{Value, json};

/// RFC 4648 base32 (no padding) to bytes.
fn base32_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut acc, mut bits, mut out) = (0u64, 0u32, Vec::new());
    for c in s.chars().filter(|c| *c != '=') {
        let v = ALPHABET.find(c.to_ascii_uppercase()).expect("base32") as u64;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// RFC 6238 TOTP (HMAC-SHA-1, 6 digits, 30 s) for Unix time `t`.
fn totp(secret_b32: &str, t: i64) -> String {
    let key = base32_decode(secret_b32);
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    mac.update(&((t / 30) as u64).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = (h[19] & 0x0f) as usize;
    let bin = (u32::from(h[o]) & 0x7f) << 24
        | u32::from(h[o + 1]) << 16
        | u32::from(h[o + 2]) << 8
        | u32::from(h[o + 3]);
    format!("{:06}", bin % 1_000_000)
}

#[test]
fn the_tests_own_totp_matches_rfc6238() {
    // RFC 6238 Appendix B's SHA-1 seed, last six digits of the 8-digit values.
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(totp(secret, 59), "287082");
    assert_eq!(totp(secret, 1111111109), "081804");
    assert_eq!(totp(secret, 1234567890), "005924");
}

/// The code the server accepts right now.
pub(crate) fn code_now(app: &TestApp, secret: &str) -> String {
    totp(secret, app.now().unix_seconds())
}

/// A wrong code (the current one, shifted).
pub(crate) fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

/// Asserts a half-finished login hands out nothing that works as a credential.
#[track_caller]
pub(crate) fn assert_no_tokens(r: &Reply) {
    let text = r.body.to_string();
    assert!(
        !text.contains("eyJ") && !text.contains("refreshToken") && !text.contains("accessToken"),
        "{text}"
    );
    assert!(
        r.headers
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("gh_refresh=")),
        "no refresh cookie before the last step"
    );
}

/// POST JSON with `client` (keeping its cookies).
pub(crate) async fn post_with(app: &TestApp, client: &Client, path: &str, body: Value) -> Reply {
    Reply::of(client.post(app.url(path)).json(&body).send().await.unwrap()).await
}

/// Logs in with extra body fields.
pub(crate) async fn login_body(app: &TestApp, client: &Client, body: Value) -> Reply {
    let csrf = app.csrf_for(client).await;
    Reply::of(
        client
            .post(app.url("/api/v1/auth/login"))
            .header("X-CSRFToken", csrf)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Creates `email`, turns TOTP on for it, and returns (secret, recovery codes). The clock
/// is then moved on a step, so the code used to confirm is not the current one.
pub(crate) async fn enrolled(app: &TestApp, email: &str) -> (String, Vec<String>) {
    app.user(email).await;
    enable_totp(app, email).await
}

/// Turns TOTP on for the existing account `email`; see [`enrolled`].
pub(crate) async fn enable_totp(app: &TestApp, email: &str) -> (String, Vec<String>) {
    let (access, _) = app.tokens(email).await;
    let r = app
        .post_auth("/api/v1/auth/totp/enroll", &access, json!({}))
        .await;
    let secret = r.expect(200, "OK")["secret"].as_str().unwrap().to_string();
    let code = code_now(app, &secret);
    let r = app
        .post_auth(
            "/api/v1/auth/totp/confirm",
            &access,
            json!({ "code": code }),
        )
        .await;
    let codes = r.expect(200, "OK")["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    app.advance(30);
    (secret, codes)
}

/// Logs in up to the `verify_totp` step and returns the challenge token.
async fn challenge(app: &TestApp, client: &Client, email: &str) -> String {
    let r = app.login_with(client, email, PASSWORD).await;
    let data = r.expect(200, "AUTH_MFA_REQUIRED");
    assert_eq!(data["nextAction"]["type"], "verify_totp");
    assert_no_tokens(&r);
    data["challengeToken"].as_str().unwrap().to_string()
}

pub(crate) async fn set_settings(app: &TestApp, admin: &str, body: Value) -> Reply {
    Reply::of(
        browser()
            .patch(app.url("/api/v1/admin/settings"))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn enrolment_returns_secret_url_and_qr_and_confirm_returns_ten_codes(b: Backend) {
    let app = spawn_app(b).await;
    app.user("enrol@example.com").await;
    let (access, _) = app.tokens("enrol@example.com").await;
    let r = app
        .post_auth("/api/v1/auth/totp/enroll", &access, json!({}))
        .await;
    let data = r.expect(200, "OK").clone();
    let secret = data["secret"].as_str().unwrap();
    assert!(base32_decode(secret).len() >= 20, "≥ 160-bit secret");
    let url = data["otpauthUrl"].as_str().unwrap();
    assert!(
        url.starts_with("otpauth://totp/gatehouse:enrol@example.com?secret=")
            && url.contains(&format!("secret={secret}&"))
            && url.contains("issuer=gatehouse")
            && url.ends_with("algorithm=SHA1&digits=6&period=30"),
        "{url}"
    );
    assert!(
        data["qrCode"]
            .as_str()
            .unwrap()
            .starts_with("data:image/svg+xml;base64,")
    );
    let r = app
        .post_auth(
            "/api/v1/auth/totp/confirm",
            &access,
            json!({ "code": wrong(&code_now(&app, secret)) }),
        )
        .await;
    r.expect(401, "MFA_CODE_INVALID");
    let r = app
        .post_auth(
            "/api/v1/auth/totp/confirm",
            &access,
            json!({ "code": code_now(&app, secret) }),
        )
        .await;
    let codes = r.expect(200, "OK")["recoveryCodes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(codes.len(), 10);
    let status = app.get_auth("/api/v1/auth/totp", &access).await;
    assert_eq!(
        status.expect(200, "OK"),
        &json!({ "enabled": true, "recoveryCodesLeft": 10 })
    );
    // The secret is never shown again: enrolling once more is a conflict.
    let r = app
        .post_auth("/api/v1/auth/totp/enroll", &access, json!({}))
        .await;
    r.expect(409, "CONFLICT");
    assert!(!r.body.to_string().contains(secret));
}

async fn login_with_totp_owes_a_code_and_then_issues_tokens(b: Backend) {
    let app = spawn_app(b).await;
    let (secret, _) = enrolled(&app, "two@example.com").await;
    let client = browser();
    let token = challenge(&app, &client, "two@example.com").await;
    let r = post_with(
        &app,
        &client,
        "/api/v1/auth/login/totp",
        json!({ "challengeToken": token, "code": wrong(&code_now(&app, &secret)) }),
    )
    .await;
    r.expect(401, "MFA_CODE_INVALID");
    assert_no_tokens(&r);
    let r = post_with(
        &app,
        &client,
        "/api/v1/auth/login/totp",
        json!({ "challengeToken": token, "code": code_now(&app, &secret) }),
    )
    .await;
    let data = r.expect(200, "AUTH_LOGIN_SUCCESS");
    let access = data["auth"]["accessToken"].as_str().unwrap();
    app.get_auth("/api/v1/auth/me", access)
        .await
        .expect(200, "OK");
    // The challenge was single-use.
    let r = post_with(
        &app,
        &client,
        "/api/v1/auth/login/totp",
        json!({ "challengeToken": token, "code": code_now(&app, &secret) }),
    )
    .await;
    r.expect(401, "CHALLENGE_INVALID");
}

async fn a_totp_code_is_accepted_only_once(b: Backend) {
    let app = spawn_app(b).await;
    let (secret, _) = enrolled(&app, "replay@example.com").await;
    let code = code_now(&app, &secret);
    let t = challenge(&app, &browser(), "replay@example.com").await;
    let r = app
        .post(
            "/api/v1/auth/login/totp",
            json!({ "challengeToken": t, "code": code }),
        )
        .await;
    r.expect(200, "AUTH_LOGIN_SUCCESS");
    let t = challenge(&app, &browser(), "replay@example.com").await;
    let r = app
        .post(
            "/api/v1/auth/login/totp",
            json!({ "challengeToken": t, "code": code }),
        )
        .await;
    r.expect(401, "MFA_CODE_INVALID");
    // The code of the previous step is inside the ±1 window but older than the one used.
    app.advance(30);
    let r = app
        .post(
            "/api/v1/auth/login/totp",
            json!({ "challengeToken": t, "code": code }),
        )
        .await;
    r.expect(401, "MFA_CODE_INVALID");
    let r = app
        .post(
            "/api/v1/auth/login/totp",
            json!({ "challengeToken": t, "code": code_now(&app, &secret) }),
        )
        .await;
    r.expect(200, "AUTH_LOGIN_SUCCESS");
}

async fn five_wrong_codes_end_the_challenge_and_lock_the_account(b: Backend) {
    let app = spawn_app(b).await;
    let (secret, _) = enrolled(&app, "guess@example.com").await;
    let t = challenge(&app, &browser(), "guess@example.com").await;
    let bad = wrong(&code_now(&app, &secret));
    for _ in 0..5 {
        let r = app
            .post(
                "/api/v1/auth/login/totp",
                json!({ "challengeToken": t, "code": bad }),
            )
            .await;
        r.expect(401, "MFA_CODE_INVALID");
    }
    let r = app
        .post(
            "/api/v1/auth/login/totp",
            json!({ "challengeToken": t, "code": code_now(&app, &secret) }),
        )
        .await;
    r.expect(401, "CHALLENGE_INVALID");
    let r = app
        .login_with(&browser(), "guess@example.com", PASSWORD)
        .await;
    r.expect(423, "ACCOUNT_LOCKED");
    let audit = app
        .get_auth(
            "/api/v1/admin/audit-events?action=mfa.verify&outcome=failure",
            &app.admin_token().await,
        )
        .await;
    assert_eq!(audit.expect(200, "OK")["total"], 5);
}

async fn a_recovery_code_works_once(b: Backend) {
    let app = spawn_app(b).await;
    let (_, codes) = enrolled(&app, "rescue@example.com").await;
    let t = challenge(&app, &browser(), "rescue@example.com").await;
    let r = app
        .post(
            "/api/v1/auth/login/recovery-code",
            json!({ "challengeToken": t, "code": codes[0].to_uppercase() }),
        )
        .await;
    let access = r.expect(200, "AUTH_LOGIN_SUCCESS")["auth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let t = challenge(&app, &browser(), "rescue@example.com").await;
    let r = app
        .post(
            "/api/v1/auth/login/recovery-code",
            json!({ "challengeToken": t, "code": codes[0] }),
        )
        .await;
    r.expect(401, "MFA_CODE_INVALID");
    let r = app
        .post(
            "/api/v1/auth/login/recovery-code",
            json!({ "challengeToken": t, "code": codes[1] }),
        )
        .await;
    r.expect(200, "AUTH_LOGIN_SUCCESS");
    let status = app.get_auth("/api/v1/auth/totp", &access).await;
    assert_eq!(status.expect(200, "OK")["recoveryCodesLeft"], 8);
}

async fn the_totp_field_of_login_completes_the_step_in_one_call(b: Backend) {
    let app = spawn_app(b).await;
    let (secret, _) = enrolled(&app, "onecall@example.com").await;
    let body = |code: String| json!({ "identifier": "onecall@example.com", "password": PASSWORD, "totp": code });
    let r = login_body(&app, &browser(), body(wrong(&code_now(&app, &secret)))).await;
    r.expect(401, "MFA_CODE_INVALID");
    assert_no_tokens(&r);
    let r = login_body(&app, &browser(), body(code_now(&app, &secret))).await;
    r.expect(200, "AUTH_LOGIN_SUCCESS");
}

async fn must_change_password_then_required_enrolment_then_tokens(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    set_settings(&app, &admin, json!({ "mfaPolicy": "required" }))
        .await
        .expect(200, "OK");
    app.user_with("chain@example.com", true, &[]).await;
    let client = browser();
    let r = app.login_with(&client, "chain@example.com", PASSWORD).await;
    let data = r.expect(200, "AUTH_PASSWORD_CHANGE_REQUIRED").clone();
    assert_no_tokens(&r);
    assert_eq!(data["nextAction"]["type"], "change_password");
    // Enrolment is not reachable with a change_password challenge.
    let r = post_with(
        &app,
        &client,
        "/api/v1/auth/login/totp/enroll",
        json!({ "challengeToken": data["challengeToken"] }),
    )
    .await;
    r.expect(401, "CHALLENGE_INVALID");
    let r = post_with(
        &app,
        &client,
        "/api/v1/auth/login/password",
        json!({ "challengeToken": data["challengeToken"], "newPassword": "A-brand-new-pass-42" }),
    )
    .await;
    let data = r.expect(200, "AUTH_MFA_ENROLLMENT_REQUIRED").clone();
    assert_no_tokens(&r);
    assert_eq!(data["nextAction"]["type"], "enroll_totp");
    let t = data["challengeToken"].as_str().unwrap();
    let r = post_with(
        &app,
        &client,
        "/api/v1/auth/login/totp/enroll",
        json!({ "challengeToken": t }),
    )
    .await;
    let secret = r.expect(200, "OK")["secret"].as_str().unwrap().to_string();
    assert_no_tokens(&r);
    // Asking again shows the same secret (a reload must not invalidate the scan).
    let again = post_with(
        &app,
        &client,
        "/api/v1/auth/login/totp/enroll",
        json!({ "challengeToken": t }),
    )
    .await;
    assert_eq!(again.expect(200, "OK")["secret"], secret.as_str());
    let r = post_with(
        &app,
        &client,
        "/api/v1/auth/login/totp/confirm",
        json!({ "challengeToken": t, "code": wrong(&code_now(&app, &secret)) }),
    )
    .await;
    r.expect(401, "MFA_CODE_INVALID");
    assert_no_tokens(&r);
    let r = post_with(
        &app,
        &client,
        "/api/v1/auth/login/totp/confirm",
        json!({ "challengeToken": t, "code": code_now(&app, &secret) }),
    )
    .await;
    let data = r.expect(200, "AUTH_LOGIN_SUCCESS");
    assert_eq!(data["recoveryCodes"].as_array().unwrap().len(), 10);
    assert!(
        data["auth"]["accessToken"]
            .as_str()
            .unwrap()
            .starts_with("eyJ")
    );
    // From now on the new password and a TOTP code are asked.
    app.advance(30);
    let r = app
        .login_with(&browser(), "chain@example.com", "A-brand-new-pass-42")
        .await;
    r.expect(200, "AUTH_MFA_REQUIRED");
}

fn device_cookie(r: &Reply) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("gh_device="))
}

async fn a_trusted_browser_skips_totp_and_another_does_not(b: Backend) {
    let app = spawn_app(b).await;
    let (secret, _) = enrolled(&app, "trust@example.com").await;
    let trusted = browser();
    let t = challenge(&app, &trusted, "trust@example.com").await;
    let r = post_with(
        &app,
        &trusted,
        "/api/v1/auth/login/totp",
        json!({ "challengeToken": t, "code": code_now(&app, &secret), "rememberDevice": true }),
    )
    .await;
    r.expect(200, "AUTH_LOGIN_SUCCESS");
    let cookie = device_cookie(&r).expect("gh_device cookie");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("Max-Age=7776000")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
    let r = app
        .login_with(&trusted, "trust@example.com", PASSWORD)
        .await;
    let access = r.expect(200, "AUTH_LOGIN_SUCCESS")["auth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    challenge(&app, &browser(), "trust@example.com").await;
    let list = app.get_auth("/api/v1/auth/trusted-devices", &access).await;
    let items = list.expect(200, "OK")["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    // A password change revokes every trusted browser.
    let r = app
        .post_auth(
            "/api/v1/auth/password",
            &access,
            json!({ "currentPassword": PASSWORD, "newPassword": "Another-good-pass-7" }),
        )
        .await;
    r.expect(200, "OK");
    let r = app
        .login_with(&trusted, "trust@example.com", "Another-good-pass-7")
        .await;
    r.expect(200, "AUTH_MFA_REQUIRED");
}

async fn a_trusted_device_can_be_revoked(b: Backend) {
    let app = spawn_app(b).await;
    let (secret, _) = enrolled(&app, "revdev@example.com").await;
    let trusted = browser();
    let r = login_body(
        &app,
        &trusted,
        json!({ "identifier": "revdev@example.com", "password": PASSWORD,
                "totp": code_now(&app, &secret), "rememberDevice": true }),
    )
    .await;
    let access = r.expect(200, "AUTH_LOGIN_SUCCESS")["auth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(device_cookie(&r).is_some());
    let list = app.get_auth("/api/v1/auth/trusted-devices", &access).await;
    let id = list.expect(200, "OK")["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let del = |path: String| {
        let access = access.clone();
        let url = app.url(&path);
        async move {
            Reply::of(
                browser()
                    .delete(url)
                    .bearer_auth(access)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    del(format!("/api/v1/auth/trusted-devices/{id}"))
        .await
        .expect(200, "OK");
    del(format!("/api/v1/auth/trusted-devices/{id}"))
        .await
        .expect(404, "NOT_FOUND");
    challenge(&app, &trusted, "revdev@example.com").await;
}

async fn admin_reset_mfa_clears_totp_codes_and_devices(b: Backend) {
    let app = spawn_app(b).await;
    let (secret, _) = enrolled(&app, "reset@example.com").await;
    let trusted = browser();
    let r = login_body(
        &app,
        &trusted,
        json!({ "identifier": "reset@example.com", "password": PASSWORD,
                "totp": code_now(&app, &secret), "rememberDevice": true }),
    )
    .await;
    let access = r.expect(200, "AUTH_LOGIN_SUCCESS")["auth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let id = app
        .get_auth("/api/v1/auth/me", &access)
        .await
        .expect(200, "OK")["account"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = app.admin_token().await;
    let r = app
        .post_auth(
            &format!("/api/v1/admin/users/{id}/reset-mfa"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.expect(200, "OK")["email"], "reset@example.com");
    let status = app.get_auth("/api/v1/auth/totp", &access).await;
    assert_eq!(
        status.expect(200, "OK"),
        &json!({ "enabled": false, "recoveryCodesLeft": 0 })
    );
    let devices = app.get_auth("/api/v1/auth/trusted-devices", &access).await;
    assert_eq!(devices.expect(200, "OK")["total"], 0);
    let r = app
        .login_with(&browser(), "reset@example.com", PASSWORD)
        .await;
    r.expect(200, "AUTH_LOGIN_SUCCESS");
    let r = app
        .post_auth(
            &format!("/api/v1/admin/users/{id}/reset-mfa"),
            &access,
            json!({}),
        )
        .await;
    r.expect(403, "PERMISSION_REQUIRED");
}

async fn settings_patch_is_validated_and_admin_only(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let r = app.get_auth("/api/v1/admin/settings", &admin).await;
    assert_eq!(
        r.expect(200, "OK"),
        &json!({ "allowPasswordLogin": true, "allowRegistration": false,
                 "mfaPolicy": "optional", "singleSession": false,
                "requireEmailVerification": false, "notifyPasswordChanged": true,
                "notifyEmailChanged": true })
    );
    let r = set_settings(&app, &admin, json!({ "mfaPolicy": "always" })).await;
    r.expect(400, "VALIDATION_ERROR");
    assert_eq!(r.body["errors"][0]["field"], "mfaPolicy");
    assert_eq!(r.body["errors"][0]["code"], "invalid");
    let r = set_settings(&app, &admin, json!({ "singleSession": "yes", "colour": 1 })).await;
    r.expect(400, "VALIDATION_ERROR");
    let codes: Vec<(&str, &str)> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("singleSession", "invalid_type"),
            ("colour", "unknown_field")
        ]
    );
    let r = set_settings(
        &app,
        &admin,
        json!({ "mfaPolicy": "off", "singleSession": true }),
    )
    .await;
    let data = r.expect(200, "OK");
    assert_eq!(
        (data["mfaPolicy"].as_str(), data["singleSession"].as_bool()),
        (Some("off"), Some(true))
    );
    let r = app.get_auth("/api/v1/admin/settings", &admin).await;
    assert_eq!(r.expect(200, "OK")["mfaPolicy"], "off");
    app.user("plain@example.com").await;
    let (user, _) = app.tokens("plain@example.com").await;
    set_settings(&app, &user, json!({ "mfaPolicy": "off" }))
        .await
        .expect(403, "PERMISSION_REQUIRED");
    app.get_auth("/api/v1/admin/settings", &user)
        .await
        .expect(403, "PERMISSION_REQUIRED");
}

async fn single_session_revokes_the_older_session_at_login(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    set_settings(&app, &admin, json!({ "singleSession": true }))
        .await
        .expect(200, "OK");
    app.user("single@example.com").await;
    let (first, first_refresh) = app.tokens("single@example.com").await;
    app.get_auth("/api/v1/auth/me", &first)
        .await
        .expect(200, "OK");
    let (second, _) = app.tokens("single@example.com").await;
    app.get_auth("/api/v1/auth/me", &first)
        .await
        .expect(401, "TOKEN_REVOKED");
    app.post(
        "/api/v1/auth/refresh",
        json!({ "refreshToken": first_refresh }),
    )
    .await
    .expect(401, "TOKEN_REVOKED");
    app.get_auth("/api/v1/auth/me", &second)
        .await
        .expect(200, "OK");
}

async fn disabling_totp_needs_the_password_or_a_code(b: Backend) {
    let app = spawn_app(b).await;
    let (secret, _) = enrolled(&app, "off@example.com").await;
    let r = login_body(
        &app,
        &browser(),
        json!({ "identifier": "off@example.com", "password": PASSWORD, "totp": code_now(&app, &secret) }),
    )
    .await;
    let access = r.expect(200, "AUTH_LOGIN_SUCCESS")["auth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let del = |body: Value| {
        let url = app.url("/api/v1/auth/totp");
        let access = access.clone();
        async move {
            Reply::of(
                browser()
                    .delete(url)
                    .bearer_auth(access)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    del(json!({})).await.expect(400, "VALIDATION_ERROR");
    del(json!({ "password": "Wrong-password-1" }))
        .await
        .expect(401, "INVALID_CREDENTIALS");
    del(json!({ "code": wrong(&code_now(&app, &secret)) }))
        .await
        .expect(401, "MFA_CODE_INVALID");
    del(json!({ "password": PASSWORD })).await.expect(200, "OK");
    del(json!({ "password": PASSWORD }))
        .await
        .expect(404, "NOT_FOUND");
    app.login_with(&browser(), "off@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
}

async fn regenerating_recovery_codes_needs_a_fresh_code(b: Backend) {
    let app = spawn_app(b).await;
    let (secret, old) = enrolled(&app, "regen@example.com").await;
    let r = login_body(
        &app,
        &browser(),
        json!({ "identifier": "regen@example.com", "password": PASSWORD, "totp": code_now(&app, &secret) }),
    )
    .await;
    let access = r.expect(200, "AUTH_LOGIN_SUCCESS")["auth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    // The code just used to sign in is spent.
    let r = app
        .post_auth(
            "/api/v1/auth/recovery-codes",
            &access,
            json!({ "code": code_now(&app, &secret) }),
        )
        .await;
    r.expect(401, "MFA_CODE_INVALID");
    app.advance(30);
    let r = app
        .post_auth(
            "/api/v1/auth/recovery-codes",
            &access,
            json!({ "code": code_now(&app, &secret) }),
        )
        .await;
    let new = r.expect(200, "OK")["recoveryCodes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(new.len(), 10);
    let t = challenge(&app, &browser(), "regen@example.com").await;
    app.post(
        "/api/v1/auth/login/recovery-code",
        json!({ "challengeToken": t, "code": old[0] }),
    )
    .await
    .expect(401, "MFA_CODE_INVALID");
    app.post(
        "/api/v1/auth/login/recovery-code",
        json!({ "challengeToken": t, "code": new[0] }),
    )
    .await
    .expect(200, "AUTH_LOGIN_SUCCESS");
}

/// The value of hidden input `name` in an HTML page.
fn hidden(body: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        + marker.len();
    let len = body[start..].find('"').unwrap();
    body[start..start + len].to_string()
}

async fn form(
    app: &TestApp,
    client: &Client,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, String, Option<String>, String) {
    let res = client
        .post(app.url(path))
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    (
        status,
        res.text().await.unwrap(),
        location,
        cookies.join("\n"),
    )
}

async fn the_sign_in_pages_ask_for_a_totp_code_and_can_trust_the_browser(b: Backend) {
    let app = spawn_app(b).await;
    let (secret, codes) = enrolled(&app, "pages@example.com").await;
    let client = browser();
    let page = client
        .get(app.url("/auth/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&page, "csrf_token");
    let (status, body, _, cookies) = form(
        &app,
        &client,
        "/auth/login",
        &[
            ("identifier", "pages@example.com"),
            ("password", PASSWORD),
            ("csrf_token", &csrf),
            ("next", "/account?tab=security"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !cookies.contains("gh_session="),
        "no session before the code: {cookies}"
    );
    assert!(body.contains(r#"action="/auth/login/totp""#), "{body}");
    assert!(body.contains(r#"name="rememberDevice""#), "{body}");
    assert!(
        body.contains(r#"action="/auth/login/recovery-code""#),
        "{body}"
    );
    assert_eq!(hidden(&body, "next"), "/account?tab=security");
    let challenge = hidden(&body, "challengeToken");
    let csrf = hidden(&body, "csrf_token");
    // A wrong code shows the step again with the error.
    let bad = wrong(&code_now(&app, &secret));
    let (status, body, _, _) = form(
        &app,
        &client,
        "/auth/login/totp",
        &[
            ("challengeToken", &challenge),
            ("code", &bad),
            ("csrf_token", &csrf),
            ("next", "/account?tab=security"),
        ],
    )
    .await;
    assert_eq!(status, 401);
    assert!(body.contains("The code is incorrect"), "{body}");
    // No CSRF token: refused, nothing spent.
    let code = code_now(&app, &secret);
    let (status, _, _, _) = form(
        &app,
        &client,
        "/auth/login/totp",
        &[("challengeToken", &challenge), ("code", &code)],
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, location, cookies) = form(
        &app,
        &client,
        "/auth/login/totp",
        &[
            ("challengeToken", &challenge),
            ("code", &code),
            ("rememberDevice", "on"),
            ("csrf_token", &csrf),
            ("next", "/account?tab=security"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/account?tab=security"));
    assert!(
        cookies.contains("gh_session=") && cookies.contains("gh_device="),
        "{cookies}"
    );
    let account = client
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(account.contains(r#"id="two-factor""#), "{account}");
    assert!(account.contains(r#"id="trusted-devices""#), "{account}");
    // This browser is trusted now: the next sign-in skips the code.
    let csrf = hidden(&account, "csrf_token");
    form(&app, &client, "/auth/logout", &[("csrf_token", &csrf)]).await;
    let page = client
        .get(app.url("/auth/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&page, "csrf_token");
    let (status, _, location, _) = form(
        &app,
        &client,
        "/auth/login",
        &[
            ("identifier", "pages@example.com"),
            ("password", PASSWORD),
            ("csrf_token", &csrf),
        ],
    )
    .await;
    assert_eq!((status, location.as_deref()), (303, Some("/account")));
    // Another browser uses a recovery code on its page.
    let other = browser();
    let page = other
        .get(app.url("/auth/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&page, "csrf_token");
    let (_, body, _, _) = form(
        &app,
        &other,
        "/auth/login",
        &[
            ("identifier", "pages@example.com"),
            ("password", PASSWORD),
            ("csrf_token", &csrf),
        ],
    )
    .await;
    let challenge = hidden(&body, "challengeToken");
    let (status, _, location, _) = form(
        &app,
        &other,
        "/auth/login/recovery-code",
        &[
            ("challengeToken", &challenge),
            ("code", &codes[0]),
            ("csrf_token", &hidden(&body, "csrf_token")),
        ],
    )
    .await;
    assert_eq!((status, location.as_deref()), (303, Some("/account")));
}

async fn the_account_page_enrols_totp_with_a_qr_code(b: Backend) {
    let app = spawn_app(b).await;
    app.user("pageenrol@example.com").await;
    let client = browser();
    let page = client
        .get(app.url("/auth/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&page, "csrf_token");
    form(
        &app,
        &client,
        "/auth/login",
        &[
            ("identifier", "pageenrol@example.com"),
            ("password", PASSWORD),
            ("csrf_token", &csrf),
        ],
    )
    .await;
    let account = client
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&account, "csrf_token");
    let (status, body, _, _) = form(
        &app,
        &client,
        "/account/totp/enroll",
        &[("csrf_token", &csrf)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"<img"#) && body.contains("data:image/svg+xml;base64,"),
        "{body}"
    );
    let secret = body
        .split(r#"<code id="totp-secret">"#)
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap()
        .to_string();
    let (status, body, _, _) = form(
        &app,
        &client,
        "/account/totp/confirm",
        &[
            ("code", &code_now(&app, &secret)),
            ("csrf_token", &hidden(&body, "csrf_token")),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body.matches(r#"<li class="recovery-code">"#).count(),
        10,
        "{body}"
    );
    let account = client
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        account.contains(r#"action="/account/totp/disable""#),
        "{account}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_key_sqlite_generates_a_private_key_file() {
    let app = spawn_app(Backend::Sqlite).await;
    let db = app
        .config
        .database
        .url
        .trim_start_matches("sqlite:")
        .to_string();
    let key = std::path::PathBuf::from(format!("{db}.key"));
    let meta = std::fs::metadata(&key).expect("key file beside the database");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&key).unwrap();
    let (secret, _) = enrolled(&app, "keyfile@example.com").await;
    // The database holds the secret sealed, never in the clear.
    let dump = std::fs::read(&db).unwrap();
    let wal = std::fs::read(format!("{db}-wal")).unwrap_or_default();
    let raw = base32_decode(&secret);
    for bytes in [&dump, &wal] {
        assert!(!bytes.windows(raw.len()).any(|w| w == raw.as_slice()));
        assert!(!String::from_utf8_lossy(bytes).contains(&secret));
    }
    assert!(!text.trim().is_empty());
}

async fn the_sign_in_pages_enrol_totp_when_the_policy_requires_it(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    set_settings(&app, &admin, json!({ "mfaPolicy": "required" }))
        .await
        .expect(200, "OK");
    app.user("pagereq@example.com").await;
    let client = browser();
    let page = client
        .get(app.url("/auth/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (status, body, _, cookies) = form(
        &app,
        &client,
        "/auth/login",
        &[
            ("identifier", "pagereq@example.com"),
            ("password", PASSWORD),
            ("csrf_token", &hidden(&page, "csrf_token")),
            ("next", "/account"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(!cookies.contains("gh_session="), "{cookies}");
    assert!(
        body.contains(r#"action="/auth/login/totp/confirm""#),
        "{body}"
    );
    assert!(body.contains("data:image/svg+xml;base64,"), "{body}");
    let secret = body
        .split(r#"<code id="totp-secret">"#)
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap()
        .to_string();
    let challenge = hidden(&body, "challengeToken");
    let csrf = hidden(&body, "csrf_token");
    let bad = wrong(&code_now(&app, &secret));
    let (status, again, _, _) = form(
        &app,
        &client,
        "/auth/login/totp/confirm",
        &[
            ("challengeToken", &challenge),
            ("code", &bad),
            ("csrf_token", &csrf),
            ("next", "/account"),
        ],
    )
    .await;
    assert_eq!(status, 401);
    assert!(again.contains(&secret), "the same secret is shown again");
    let (status, body, _, cookies) = form(
        &app,
        &client,
        "/auth/login/totp/confirm",
        &[
            ("challengeToken", &challenge),
            ("code", &code_now(&app, &secret)),
            ("csrf_token", &csrf),
            ("next", "/account"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(cookies.contains("gh_session="), "{cookies}");
    assert_eq!(
        body.matches(r#"<li class="recovery-code">"#).count(),
        10,
        "{body}"
    );
    assert!(body.contains(r#"<a href="/account">"#), "{body}");
    let account = client.get(app.url("/account")).send().await.unwrap();
    assert_eq!(account.status().as_u16(), 200);
}

async fn mfa_policy_off_skips_the_code_and_refuses_enrolment(b: Backend) {
    let app = spawn_app(b).await;
    enrolled(&app, "policyoff@example.com").await;
    let admin = app.admin_token().await;
    set_settings(&app, &admin, json!({ "mfaPolicy": "off" }))
        .await
        .expect(200, "OK");
    app.login_with(&browser(), "policyoff@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
    app.user("nototp@example.com").await;
    let (access, _) = app.tokens("nototp@example.com").await;
    app.post_auth("/api/v1/auth/totp/enroll", &access, json!({}))
        .await
        .expect(403, "PERMISSION_REQUIRED");
    set_settings(&app, &admin, json!({ "mfaPolicy": "optional" }))
        .await
        .expect(200, "OK");
    challenge(&app, &browser(), "policyoff@example.com").await;
}

backend_tests!(
    the_sign_in_pages_enrol_totp_when_the_policy_requires_it,
    mfa_policy_off_skips_the_code_and_refuses_enrolment,
    enrolment_returns_secret_url_and_qr_and_confirm_returns_ten_codes,
    login_with_totp_owes_a_code_and_then_issues_tokens,
    a_totp_code_is_accepted_only_once,
    five_wrong_codes_end_the_challenge_and_lock_the_account,
    a_recovery_code_works_once,
    the_totp_field_of_login_completes_the_step_in_one_call,
    must_change_password_then_required_enrolment_then_tokens,
    a_trusted_browser_skips_totp_and_another_does_not,
    a_trusted_device_can_be_revoked,
    admin_reset_mfa_clears_totp_codes_and_devices,
    settings_patch_is_validated_and_admin_only,
    single_session_revokes_the_older_session_at_login,
    disabling_totp_needs_the_password_or_a_code,
    regenerating_recovery_codes_needs_a_fresh_code,
    the_sign_in_pages_ask_for_a_totp_code_and_can_trust_the_browser,
    the_account_page_enrols_totp_with_a_qr_code,
);
