//! Mail: password reset by e-mail through the outbox, against a real SMTP server
//! (aiosmtpd) and the file adapter, on both backends.

use crate::backend_tests;
use crate::helpers::{Backend, PASSWORD, TestApp, browser, spawn_app_with};
use crate::smtp::{Smtp, code_in, header, text_part};
use gatehouse_domain::Secret;
use gatehouse_domain::model::{AuditFilter, Page};
use serde_json::{Value, json};

const NEW_PASSWORD: &str = "Another-horse-staple-7";

async fn smtp_app(b: Backend, smtp: &Smtp) -> TestApp {
    let url = smtp.url();
    spawn_app_with(b, move |c| {
        c.public_url = "https://id.example.test".into();
        c.mail.smtp_url = Some(Secret::new(url));
        c.lockout.max_failures = 3;
    })
    .await
}

async fn forgot(app: &TestApp, identifier: &str) -> reqwest::Response {
    browser()
        .post(app.url("/api/v1/auth/password/forgot"))
        .header("Host", "evil.example")
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Proto", "http")
        .json(&json!({ "identifier": identifier }))
        .send()
        .await
        .unwrap()
}

async fn reset(app: &TestApp, identifier: &str, code: &str) -> crate::helpers::Reply {
    app.post(
        "/api/v1/auth/password/reset",
        json!({ "identifier": identifier, "code": code, "newPassword": NEW_PASSWORD }),
    )
    .await
}

/// Unknown and known identifiers get the same status, body (but the request id) and headers.
async fn forgot_answers_alike_for_known_and_unknown(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    app.user("known@example.com").await;
    let mut answers = Vec::new();
    for who in ["known@example.com", "nobody@example.com"] {
        let res = forgot(&app, who).await;
        let status = res.status();
        let mut names: Vec<String> = res.headers().keys().map(|k| k.to_string()).collect();
        names.sort();
        let mut body: Value = res.json().await.unwrap();
        body.as_object_mut().unwrap().remove("requestId");
        answers.push((status, names, body));
    }
    assert_eq!(answers[0].0, 200);
    assert_eq!(answers[0], answers[1]);
    // Only the known account got a mail.
    wait_codes(&app, 1).await;
    assert_eq!(app.svc.send_due_mail().await.unwrap(), 0);
    assert_eq!(file_codes(&app).len(), 1);
}

/// The whole reset over real SMTP: the mail carries a code and a link built from
/// `public_url` (never the request's Host), the code resets the password once, every
/// session and refresh token is revoked, the lockout is lifted, and a notice follows.
async fn reset_over_smtp_revokes_sessions_and_notifies(b: Backend) {
    let Some(smtp) = Smtp::start() else { return };
    let app = smtp_app(b, &smtp).await;
    app.user("alice@example.com").await;
    let (access, refresh) = app.tokens("alice@example.com").await;
    // Lock the account with wrong passwords.
    for _ in 0..3 {
        app.login("alice@example.com", "wrong-password-1").await;
    }
    app.login("alice@example.com", PASSWORD)
        .await
        .expect(423, "ACCOUNT_LOCKED");

    assert_eq!(forgot(&app, "alice@example.com").await.status(), 200);
    let mails = smtp.wait_for(1).await;
    let mail = &mails[0];
    assert!(header(mail, "To").unwrap().contains("alice@example.com"));
    let text = text_part(mail);
    let code = code_in(mail);
    assert!(
        text.contains(&format!(
            "https://id.example.test/password/reset?identifier=alice%40example.com&code={code}"
        )),
        "{text}"
    );
    assert!(!mail.contains("evil.example"));
    assert!(text.contains("30 minutes"));

    reset(&app, "alice@example.com", &code)
        .await
        .expect(200, "OK");
    // Single use.
    reset(&app, "alice@example.com", &code)
        .await
        .expect(400, "EMAIL_CODE_INVALID");
    // Sessions and refresh tokens are gone; the lockout is lifted; the new password works.
    app.get_auth("/api/v1/auth/me", &access)
        .await
        .expect(401, "TOKEN_REVOKED");
    let r = app
        .post("/api/v1/auth/refresh", json!({ "refreshToken": refresh }))
        .await;
    assert_eq!(r.status, 401);
    app.login("alice@example.com", PASSWORD)
        .await
        .expect(401, "INVALID_CREDENTIALS");
    app.login("alice@example.com", NEW_PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");

    let mails = smtp.wait_for(2).await;
    assert_eq!(mails.len(), 2);
    let notice = mails.iter().find(|m| !m.contains(&code)).unwrap();
    assert!(text_part(notice).contains("password of your account was just changed"));

    // Neither the code nor the link is in the audit trail.
    let events = app
        .svc
        .store
        .list_audit(
            &AuditFilter::default(),
            Page {
                page: 1,
                page_size: 200,
            },
        )
        .await
        .unwrap();
    let dump = format!("{:?}", events.items);
    assert!(dump.contains("password.reset"));
    assert!(!dump.contains(&code) && !dump.contains("/password/reset?"));
    // Both rows end up marked sent.
    wait_all_sent(&app).await;
}

/// Waits (up to 20 s) until the outbox holds nothing pending.
async fn wait_all_sent(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.svc.store.pending_mail().await.unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "never marked sent");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// SMTP down: the request still answers 200 at once; the mail waits in the outbox, is
/// retried after the backoff, and arrives exactly once when SMTP is back.
async fn smtp_down_then_back_delivers_exactly_once(b: Backend) {
    let Some(mut smtp) = Smtp::reserve() else {
        return;
    };
    let app = smtp_app(b, &smtp).await;
    app.user("bob@example.com").await;
    assert_eq!(forgot(&app, "bob@example.com").await.status(), 200);
    // The first delivery fails and is scheduled for a retry.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.svc.metrics.get("gatehouse_mail_retries_total", &[]) == 0 {
        assert!(std::time::Instant::now() < deadline, "no failed attempt");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.svc.store.pending_mail().await.unwrap(), 1);
    smtp.up();
    // Not due yet: a pass now sends nothing.
    assert_eq!(app.svc.send_due_mail().await.unwrap(), 0);
    app.advance(app.config.mail.retry_initial_seconds);
    app.svc.mail.wake();
    let mails = smtp.wait_for(1).await;
    let code = code_in(&mails[0]);
    // The sender marks it sent (just after the server took it); then nothing is left,
    // and another pass sends nothing more.
    wait_all_sent(&app).await;
    assert_eq!(app.svc.send_due_mail().await.unwrap(), 0);
    assert_eq!(smtp.messages().len(), 1);
    reset(&app, "bob@example.com", &code)
        .await
        .expect(200, "OK");
}

/// Reads the codes the file adapter wrote, oldest first.
fn file_codes(app: &TestApp) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(&app.config.mail.file_dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    {
        // They hold codes: private to the service's user, folder and files alike.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        if !files.is_empty() {
            assert_eq!(mode(std::path::Path::new(&app.config.mail.file_dir)), 0o700);
        }
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "eml"))
        {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
    }
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter(|m| m.contains("Reset your password"))
        .map(|m| code_in(&m))
        .collect()
}

async fn wait_codes(app: &TestApp, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let codes = file_codes(app);
        if codes.len() >= n {
            return codes;
        }
        assert!(std::time::Instant::now() < deadline, "no mail file");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The file adapter (no SMTP configured): a new request supersedes the old code; five
/// wrong attempts kill a code; a code expires after 30 minutes (injected clock); wrong
/// codes count toward nothing else (the password still signs in).
async fn codes_are_superseded_limited_and_expire(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    app.user("carol@example.com").await;
    let who = "carol@example.com";

    forgot(&app, who).await;
    let first = wait_codes(&app, 1).await[0].clone();
    app.advance(1);
    forgot(&app, who).await;
    let second = wait_codes(&app, 2).await[1].clone();
    assert_ne!(first, second);
    reset(&app, who, &first)
        .await
        .expect(400, "EMAIL_CODE_INVALID");

    // Five wrong attempts, then even the right code is refused.
    for _ in 0..5 {
        reset(&app, who, "AAAAAAAA")
            .await
            .expect(400, "EMAIL_CODE_INVALID");
    }
    reset(&app, who, &second)
        .await
        .expect(400, "EMAIL_CODE_INVALID");
    app.login(who, PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");

    // Expiry.
    forgot(&app, who).await;
    let third = wait_codes(&app, 3).await[2].clone();
    app.advance(31 * 60);
    reset(&app, who, &third)
        .await
        .expect(400, "EMAIL_CODE_INVALID");

    // An unknown account gets the same refusal as a wrong code.
    reset(&app, "nobody@example.com", &third)
        .await
        .expect(400, "EMAIL_CODE_INVALID");
    // A fresh code still works.
    forgot(&app, who).await;
    let fourth = wait_codes(&app, 4).await[3].clone();
    reset(&app, who, &fourth).await.expect(200, "OK");
}

async fn register(app: &TestApp, email: &str) {
    let client = browser();
    let csrf = app.csrf_for(&client).await;
    let r = crate::helpers::Reply::of(
        client
            .post(app.url("/api/v1/auth/register"))
            .header("X-CSRFToken", csrf)
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(r.status.is_success(), "{:?}", r.body);
}

/// With `requireEmailVerification`, a self-registered account gets a code by mail and
/// its sign-in owes `verify_email` only after the right password; a resent code
/// supersedes the first; admins resend or mark the address confirmed.
async fn registration_confirmation_gates_sign_in(b: Backend) {
    let Some(smtp) = Smtp::start() else { return };
    let app = smtp_app(b, &smtp).await;
    let admin = app.admin_token().await;
    let r = crate::helpers::Reply::of(
        browser()
            .patch(app.url("/api/v1/admin/settings"))
            .bearer_auth(&admin)
            .json(&json!({ "allowRegistration": true, "requireEmailVerification": true }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.expect(200, "OK")["requireEmailVerification"], true);

    register(&app, "dave@example.com").await;
    let mails = smtp.wait_for(1).await;
    assert!(text_part(&mails[0]).contains("Confirm that this address"));
    let first = code_in(&mails[0]);
    assert!(text_part(&mails[0]).contains("https://id.example.test/auth/verify-email?code="));

    // A wrong password says nothing about the address.
    app.login("dave@example.com", "wrong-password-1")
        .await
        .expect(401, "INVALID_CREDENTIALS");
    let r = app.login("dave@example.com", PASSWORD).await;
    let data = r.expect(200, "EMAIL_NOT_VERIFIED").clone();
    assert_eq!(data["nextAction"]["type"], "verify_email");
    let challenge = data["challengeToken"].as_str().unwrap().to_string();

    app.post(
        "/api/v1/auth/login/email/resend",
        json!({ "challengeToken": challenge }),
    )
    .await
    .expect(200, "OK");
    let mails = smtp.wait_for(2).await;
    let second = mails
        .iter()
        .map(|m| code_in(m))
        .find(|c| *c != first)
        .unwrap();
    let verify = |code: String| {
        let challenge = challenge.clone();
        let app = &app;
        async move {
            app.post(
                "/api/v1/auth/login/email/verify",
                json!({ "challengeToken": challenge, "code": code }),
            )
            .await
        }
    };
    verify(first).await.expect(400, "EMAIL_CODE_INVALID");
    verify(second.clone())
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
    // Single use, and no longer owed.
    verify(second).await.expect(401, "CHALLENGE_INVALID");
    app.login("dave@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");

    // Admin: mark confirmed; resend or mark again is a conflict.
    register(&app, "erin@example.com").await;
    smtp.wait_for(3).await;
    let erin = app
        .svc
        .store
        .account_by_email("erin@example.com")
        .await
        .unwrap()
        .unwrap();
    let path = |what: &str| format!("/api/v1/admin/users/{}/email/{what}", erin.id);
    app.post_auth(&path("resend-verification"), &admin, json!({}))
        .await
        .expect(200, "OK");
    smtp.wait_for(4).await;
    app.login("erin@example.com", PASSWORD)
        .await
        .expect(200, "EMAIL_NOT_VERIFIED");
    app.post_auth(&path("verify"), &admin, json!({}))
        .await
        .expect(200, "OK");
    app.post_auth(&path("verify"), &admin, json!({}))
        .await
        .expect(409, "CONFLICT");
    app.post_auth(&path("resend-verification"), &admin, json!({}))
        .await
        .expect(409, "CONFLICT");
    app.login("erin@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
    // Accounts an admin creates are not gated.
    app.user("frank@example.com").await;
    app.login("frank@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
}

/// E-mail change: the current password is needed; the code goes to the new address only;
/// confirming switches the address (sign-in by the new one) and notifies the old one.
async fn email_change_mails_the_new_address_and_notifies_the_old(b: Backend) {
    let Some(smtp) = Smtp::start() else { return };
    let app = smtp_app(b, &smtp).await;
    app.user("gina@example.com").await;
    app.user("taken@example.com").await;
    let (access, _) = app.tokens("gina@example.com").await;
    let change = |email: &str, password: &str| {
        app.post_auth(
            "/api/v1/auth/email",
            &access,
            json!({ "newEmail": email, "currentPassword": password }),
        )
    };
    change("gina.new@example.com", "wrong-password-1")
        .await
        .expect(401, "INVALID_CREDENTIALS");
    change("gina.new@example.com", PASSWORD)
        .await
        .expect(200, "OK");
    let mails = smtp.wait_for(1).await;
    assert!(
        header(&mails[0], "To")
            .unwrap()
            .contains("gina.new@example.com")
    );
    let code = code_in(&mails[0]);
    let confirm = |code: &str| {
        app.post_auth(
            "/api/v1/auth/email/confirm",
            &access,
            json!({ "code": code }),
        )
    };
    confirm("AAAAAAAA").await.expect(400, "EMAIL_CODE_INVALID");
    confirm(&code).await.expect(200, "OK");
    confirm(&code).await.expect(400, "EMAIL_CODE_INVALID");
    let mails = smtp.wait_for(2).await;
    let notice = mails.iter().find(|m| !m.contains(&code)).unwrap();
    assert!(header(notice, "To").unwrap().contains("gina@example.com"));
    assert!(text_part(notice).contains("e-mail address of your account was just changed"));
    let me = app.get_auth("/api/v1/auth/me", &access).await;
    assert_eq!(
        me.expect(200, "OK")["account"]["email"],
        "gina.new@example.com"
    );
    app.login("gina@example.com", PASSWORD)
        .await
        .expect(401, "INVALID_CREDENTIALS");
    app.login("gina.new@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");

    // A taken address: the request answers alike; confirming is a conflict.
    change("taken@example.com", PASSWORD)
        .await
        .expect(200, "OK");
    let mails = smtp.wait_for(3).await;
    let taken = mails
        .iter()
        .find(|m| header(m, "To").unwrap().contains("taken@example.com"))
        .unwrap();
    confirm(&code_in(taken)).await.expect(409, "CONFLICT");
}

/// A signed-in password change mails the notice in the same transaction; with
/// `notifyPasswordChanged` off, nothing is queued.
async fn password_change_notice_follows_its_switch(b: Backend) {
    let Some(smtp) = Smtp::start() else { return };
    let app = smtp_app(b, &smtp).await;
    let admin = app.admin_token().await;
    app.user("hank@example.com").await;
    let (access, _) = app.tokens("hank@example.com").await;
    app.post_auth(
        "/api/v1/auth/password",
        &access,
        json!({ "currentPassword": PASSWORD, "newPassword": NEW_PASSWORD }),
    )
    .await
    .expect(200, "OK");
    let mails = smtp.wait_for(1).await;
    assert!(
        header(&mails[0], "To")
            .unwrap()
            .contains("hank@example.com")
    );
    assert!(text_part(&mails[0]).contains("password of your account was just changed"));
    wait_all_sent(&app).await;
    let sent = app.svc.metrics.get("gatehouse_mail_sent_total", &[]);

    let r = crate::helpers::Reply::of(
        browser()
            .patch(app.url("/api/v1/admin/settings"))
            .bearer_auth(&admin)
            .json(&json!({ "notifyPasswordChanged": false }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.expect(200, "OK")["notifyPasswordChanged"], false);
    app.post_auth(
        "/api/v1/auth/password",
        &access,
        json!({ "currentPassword": NEW_PASSWORD, "newPassword": PASSWORD }),
    )
    .await
    .expect(200, "OK");
    // A notice would be queued with the change: once the outbox is drained, nothing more
    // was sent.
    app.svc.mail.wake();
    wait_all_sent(&app).await;
    assert_eq!(app.svc.send_due_mail().await.unwrap(), 0);
    assert_eq!(app.svc.metrics.get("gatehouse_mail_sent_total", &[]), sent);
    assert_eq!(smtp.messages().len(), 1);
}

/// The value of hidden or prefilled input `name` in a page.
fn input_value(body: &str, name: &str) -> String {
    let at = body
        .find(&format!(r#"name="{name}""#))
        .unwrap_or_else(|| panic!("no {name} in {body}"));
    let rest = &body[at..];
    let start = rest.find(r#"value=""#).expect("a value") + 7;
    rest[start..start + rest[start..].find('"').unwrap()].to_string()
}

/// The pages, without JavaScript: the sign-in page links to "forgot password", which
/// queues a code; the mailed link opens the reset page with identifier and code filled
/// in; submitting it sets the password.
async fn reset_pages_work_without_javascript(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    app.user("ivy@example.com").await;
    let client = browser();
    let page = |path: &str| {
        let client = client.clone();
        let url = app.url(path);
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    assert!(
        page("/auth/login")
            .await
            .contains(r#"href="/password/forgot""#)
    );
    let forgot = page("/password/forgot").await;
    let res = client
        .post(app.url("/password/forgot"))
        .form(&[
            ("identifier", "ivy@example.com"),
            ("csrf_token", &input_value(&forgot, "csrf_token")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("If an account matches"));
    let code = wait_codes(&app, 1).await[0].clone();

    let reset = page(&format!(
        "/password/reset?identifier=ivy%40example.com&code={code}"
    ))
    .await;
    assert_eq!(input_value(&reset, "code"), code);
    assert_eq!(input_value(&reset, "identifier"), "ivy@example.com");
    let submit = |code: String, csrf: String| {
        let client = client.clone();
        let url = app.url("/password/reset");
        async move {
            let res = client
                .post(url)
                .form(&[
                    ("identifier", "ivy@example.com"),
                    ("code", code.as_str()),
                    ("newPassword", NEW_PASSWORD),
                    ("confirmPassword", NEW_PASSWORD),
                    ("csrf_token", csrf.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };
    let csrf = input_value(&reset, "csrf_token");
    let (status, body) = submit("AAAAAAAA".into(), csrf.clone()).await;
    assert_eq!(status, 400);
    assert!(body.contains("The code is wrong or has expired"));
    let (status, body) = submit(code, csrf).await;
    assert_eq!(status, 200);
    assert!(body.contains("Your password was reset"));
    app.login("ivy@example.com", NEW_PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
}

/// Two instances on one store: requests land on both, both senders race for the outbox,
/// and each message is delivered exactly once.
async fn two_instances_send_each_mail_once(b: Backend) {
    let Some(smtp) = Smtp::start() else { return };
    let app = smtp_app(b, &smtp).await;
    let clock = app.clock.clone() as std::sync::Arc<dyn gatehouse_domain::ports::Clock>;
    let second = gatehouse::server::start(&app.config, clock).await.unwrap();
    const N: usize = 12;
    for i in 0..N {
        app.user(&format!("u{i}@example.com")).await;
    }
    for i in 0..N {
        let base = if i % 2 == 0 {
            app.base.clone()
        } else {
            format!("http://{}", second.addr)
        };
        let res = browser()
            .post(format!("{base}/api/v1/auth/password/forgot"))
            .json(&json!({ "identifier": format!("u{i}@example.com") }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    smtp.wait_for(N).await;
    wait_all_sent(&app).await;
    assert_eq!(app.svc.send_due_mail().await.unwrap(), 0);
    assert_eq!(second.svc.send_due_mail().await.unwrap(), 0);
    let messages = smtp.messages();
    assert_eq!(messages.len(), N, "no message twice");
    let mut to: Vec<String> = messages.iter().map(|m| header(m, "To").unwrap()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), N);
    let sent = |svc: &gatehouse_core::Service| svc.metrics.get("gatehouse_mail_sent_total", &[]);
    assert_eq!(sent(&app.svc) + sent(&second.svc), N as u64);
    second.task.abort();
}

backend_tests!(
    forgot_answers_alike_for_known_and_unknown,
    reset_over_smtp_revokes_sessions_and_notifies,
    smtp_down_then_back_delivers_exactly_once,
    codes_are_superseded_limited_and_expire,
    registration_confirmation_gates_sign_in,
    email_change_mails_the_new_address_and_notifies_the_old,
    password_change_notice_follows_its_switch,
    reset_pages_work_without_javascript,
    two_instances_send_each_mail_once,
);
