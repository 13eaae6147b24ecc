//! Web pages over plain HTTP: sign-in (with CSRF, enumeration resistance, `next`), the
//! password-change step, the account page (sessions, password), sign-out, languages.

use crate::backend_tests;
use crate::helpers::*;
use reqwest::Client;
use reqwest::header::HeaderMap;

/// A page as the browser got it.
struct Page {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Page {
    async fn of(res: reqwest::Response) -> Page {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    fn location(&self) -> &str {
        self.header("location")
    }

    /// The `Set-Cookie` for cookie `name`, if any.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value of hidden input `name` (the first one).
    fn hidden(&self, name: &str) -> String {
        let marker = format!(r#"name="{name}" value=""#);
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            + marker.len();
        let len = self.body[start..].find('"').unwrap();
        self.body[start..start + len].to_string()
    }

    fn csrf(&self) -> String {
        self.hidden("csrf_token")
    }

    /// The account page's session rows: (id, is this browser).
    fn session_rows(&self) -> Vec<(String, bool)> {
        self.body
            .split(r#"<tr data-session=""#)
            .skip(1)
            .map(|row| {
                let id = row[..row.find('"').unwrap()].to_string();
                let this = row[..row.find("</tr>").unwrap()].contains("This browser");
                (id, this)
            })
            .collect()
    }

    /// The body with every CSRF token value blanked, for comparing two renderings.
    fn without_csrf(&self) -> String {
        let marker = r#"name="csrf_token" value=""#;
        let mut out = String::new();
        let mut rest = self.body.as_str();
        while let Some(i) = rest.find(marker) {
            out.push_str(&rest[..i + marker.len()]);
            rest = &rest[i + marker.len()..];
            rest = &rest[rest.find('"').unwrap()..];
        }
        out.push_str(rest);
        out
    }
}

async fn get(app: &TestApp, client: &Client, path: &str) -> Page {
    Page::of(client.get(app.url(path)).send().await.unwrap()).await
}

async fn post(app: &TestApp, client: &Client, path: &str, form: &[(&str, &str)]) -> Page {
    Page::of(client.post(app.url(path)).form(form).send().await.unwrap()).await
}

/// Opens the sign-in page and submits it.
async fn sign_in(
    app: &TestApp,
    client: &Client,
    identifier: &str,
    password: &str,
    next: Option<&str>,
) -> Page {
    let csrf = get(app, client, "/auth/login").await.csrf();
    let mut form = vec![
        ("identifier", identifier),
        ("password", password),
        ("csrf_token", csrf.as_str()),
    ];
    if let Some(n) = next {
        form.push(("next", n));
    }
    post(app, client, "/auth/login", &form).await
}

/// A browser signed in as `email`.
async fn signed_in(app: &TestApp, email: &str) -> Client {
    let client = browser();
    let p = sign_in(app, &client, email, PASSWORD, None).await;
    assert_eq!((p.status, p.location()), (303, "/account"), "{}", p.body);
    client
}

/// Asserts the headers every page carries.
#[track_caller]
fn assert_page_headers(p: &Page) {
    assert_eq!(
        p.header("content-security-policy"),
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'"
    );
    assert_eq!(p.header("x-frame-options"), "DENY");
    assert_eq!(p.header("cache-control"), "no-store");
}

async fn login_page_has_a_csrf_field_and_strict_headers(b: Backend) {
    let app = spawn_app(b).await;
    let p = get(&app, &browser(), "/auth/login").await;
    assert_eq!(p.status, 200);
    assert!(
        p.header("content-type").starts_with("text/html"),
        "{}",
        p.header("content-type")
    );
    assert_page_headers(&p);
    assert!(p.csrf().len() > 20, "{}", p.body);
    assert!(p.body.contains(r#"<html lang="en">"#));
    assert!(p.body.contains(r#"name="identifier""#) && p.body.contains(r#"name="password""#));
    let binding = p.set_cookie("gh_csrf").expect("binding cookie");
    assert!(
        binding.contains("HttpOnly") && binding.contains("SameSite=Lax"),
        "{binding}"
    );
}

async fn wrong_password_and_unknown_user_get_the_same_generic_page(b: Backend) {
    let app = spawn_app(b).await;
    app.user("known@example.com").await;
    let wrong = sign_in(
        &app,
        &browser(),
        "known@example.com",
        "Wrong-password-1",
        None,
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_page_headers(&wrong);
    assert!(
        wrong.body.contains("Email or password is incorrect"),
        "{}",
        wrong.body
    );
    assert!(
        wrong.body.contains(r#"value="known@example.com""#),
        "identifier is refilled"
    );
    assert!(
        !wrong.body.contains("Wrong-password-1"),
        "the password is never echoed"
    );
    assert!(wrong.set_cookie("gh_session").is_none());
    let unknown = sign_in(
        &app,
        &browser(),
        "nobody@example.com",
        "Wrong-password-1",
        None,
    )
    .await;
    assert_eq!(unknown.status, 401);
    assert_eq!(
        wrong.without_csrf().replace("known@example.com", "EMAIL"),
        unknown
            .without_csrf()
            .replace("nobody@example.com", "EMAIL"),
        "the page must not tell whether the account exists"
    );
}

async fn login_without_a_valid_csrf_token_is_refused(b: Backend) {
    let app = spawn_app(b).await;
    app.user("csrf-page@example.com").await;
    let client = browser();
    let _ = get(&app, &client, "/auth/login").await;
    let creds = [
        ("identifier", "csrf-page@example.com"),
        ("password", PASSWORD),
    ];
    let missing = post(&app, &client, "/auth/login", &creds).await;
    assert_eq!(missing.status, 403);
    assert!(
        missing.body.contains("A CSRF token is required"),
        "{}",
        missing.body
    );
    assert!(missing.set_cookie("gh_session").is_none());
    let forged = [creds[0], creds[1], ("csrf_token", "1.abc.def")];
    let p = post(&app, &client, "/auth/login", &forged).await;
    assert_eq!(p.status, 403);
    assert!(
        p.body.contains("The CSRF token is invalid or expired"),
        "{}",
        p.body
    );
    // A token from another browser's page does not work in this one.
    let foreign = get(&app, &browser(), "/auth/login").await.csrf();
    let p = post(
        &app,
        &client,
        "/auth/login",
        &[creds[0], creds[1], ("csrf_token", &foreign)],
    )
    .await;
    assert_eq!(p.status, 403);
    assert!(p.set_cookie("gh_session").is_none());
    // Without any binding cookie the token cannot be checked either.
    let token = get(&app, &client, "/auth/login").await.csrf();
    let p = post(
        &app,
        &browser(),
        "/auth/login",
        &[creds[0], creds[1], ("csrf_token", &token)],
    )
    .await;
    assert_eq!(p.status, 403);
}

async fn repeated_failures_show_the_locked_page(b: Backend) {
    let app = spawn_app(b).await;
    app.user("locked@example.com").await;
    let client = browser();
    for _ in 0..5 {
        let p = sign_in(
            &app,
            &client,
            "locked@example.com",
            "Wrong-password-1",
            None,
        )
        .await;
        assert_eq!(p.status, 401);
    }
    let p = sign_in(&app, &client, "locked@example.com", PASSWORD, None).await;
    assert_eq!(p.status, 423, "{}", p.body);
    assert!(
        p.body.contains("Too many failed attempts; try again later"),
        "{}",
        p.body
    );
    assert!(p.set_cookie("gh_session").is_none());
}

async fn a_disabled_account_sees_why_it_cannot_sign_in(b: Backend) {
    let app = spawn_app(b).await;
    let account = app.user("disabled@example.com").await;
    let meta = gatehouse_core::RequestMeta::default();
    let status = gatehouse_domain::model::AccountStatus::Disabled;
    app.svc
        .set_user_status(None, account.id, status, &meta)
        .await
        .unwrap();
    let p = sign_in(&app, &browser(), "disabled@example.com", PASSWORD, None).await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(p.body.contains("This account is disabled"), "{}", p.body);
    assert!(p.set_cookie("gh_session").is_none());
}

async fn sign_in_sets_a_lax_httponly_session_cookie_and_follows_a_local_next(b: Backend) {
    let app = spawn_app(b).await;
    app.user("next@example.com").await;
    let client = browser();
    let p = sign_in(
        &app,
        &client,
        "next@example.com",
        PASSWORD,
        Some("/account?tab=sessions"),
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location(), "/account?tab=sessions");
    assert_page_headers(&p);
    let cookie = p.set_cookie("gh_session").expect("session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(cookie.contains("Max-Age="), "{cookie}");
    assert_eq!(get(&app, &client, "/account").await.status, 200);
}

async fn sign_in_never_redirects_off_site(b: Backend) {
    let app = spawn_app(b).await;
    app.user("offsite@example.com").await;
    for next in [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
    ] {
        let p = sign_in(
            &app,
            &browser(),
            "offsite@example.com",
            PASSWORD,
            Some(next),
        )
        .await;
        assert_eq!((p.status, p.location()), (303, "/account"), "next={next:?}");
    }
    let p = get(&app, &browser(), "/auth/login?next=%2F%2Fevil.example").await;
    assert_eq!(p.status, 200);
    assert!(
        !p.body.contains("evil.example"),
        "an off-site next is dropped from the form"
    );
    let p = get(&app, &browser(), "/auth/login?next=%2Faccount").await;
    assert_eq!(p.hidden("next"), "/account");
}

async fn account_lists_sessions_and_revokes_another(b: Backend) {
    let app = spawn_app(b).await;
    app.user("sessions@example.com").await;
    let laptop = signed_in(&app, "sessions@example.com").await;
    let phone = signed_in(&app, "sessions@example.com").await;
    let p = get(&app, &laptop, "/account").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_page_headers(&p);
    assert!(
        p.body
            .contains(r#"<dd id="account-email">sessions@example.com</dd>"#),
        "{}",
        p.body
    );
    assert_eq!(p.body.matches("data-session=").count(), 2);
    assert_eq!(p.body.matches("This browser").count(), 1);
    let rows = p.session_rows();
    let other = rows.iter().find(|(_, this)| !this).unwrap().0.clone();
    let path = format!("/account/sessions/{other}/revoke");
    // Without the CSRF token nothing happens.
    let refused = post(&app, &laptop, &path, &[]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(get(&app, &phone, "/account").await.status, 200);
    let done = post(&app, &laptop, &path, &[("csrf_token", &p.csrf())]).await;
    assert_eq!(
        (done.status, done.location()),
        (303, "/account?notice=revoked")
    );
    let after = get(&app, &laptop, "/account?notice=revoked").await;
    assert!(
        after.body.contains("The session was revoked."),
        "{}",
        after.body
    );
    assert_eq!(after.body.matches("data-session=").count(), 1);
    let gone = get(&app, &phone, "/account").await;
    assert_eq!(
        (gone.status, gone.location()),
        (303, "/auth/login?next=/account")
    );
    // Someone else's (or an unknown) session is simply not found.
    let missing = post(&app, &laptop, &path, &[("csrf_token", &p.csrf())]).await;
    assert_eq!(missing.status, 404);
}

async fn account_changes_the_password(b: Backend) {
    let app = spawn_app(b).await;
    app.user("change@example.com").await;
    let client = signed_in(&app, "change@example.com").await;
    let other = signed_in(&app, "change@example.com").await;
    let csrf = get(&app, &client, "/account").await.csrf();
    let submit = |current: &'static str, new: &'static str, confirm: &'static str| {
        let (app, client, csrf) = (&app, &client, csrf.clone());
        async move {
            let form = [
                ("currentPassword", current),
                ("newPassword", new),
                ("confirmPassword", confirm),
                ("csrf_token", &csrf),
            ];
            post(app, client, "/account/password", &form).await
        }
    };
    let p = submit(
        "Not-the-password-1",
        "Brand-new-Secret-7",
        "Brand-new-Secret-7",
    )
    .await;
    assert_eq!(p.status, 401);
    assert!(
        p.body.contains("The current password is incorrect"),
        "{}",
        p.body
    );
    let p = submit(PASSWORD, "Brand-new-Secret-7", "Brand-new-Secret-8").await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("The passwords do not match"), "{}", p.body);
    let p = submit(PASSWORD, "short", "short").await;
    assert_eq!(p.status, 422);
    assert!(
        p.body
            .contains("The new password does not meet the password policy"),
        "{}",
        p.body
    );
    assert!(
        p.body.contains("This value is too short"),
        "each failed rule is listed: {}",
        p.body
    );
    assert!(!p.body.contains(PASSWORD), "passwords are never echoed");
    let p = submit(PASSWORD, "Brand-new-Secret-7", "Brand-new-Secret-7").await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/account?notice=password"),
        "{}",
        p.body
    );
    let p = get(&app, &client, "/account?notice=password").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("Your password was changed."), "{}", p.body);
    assert_eq!(
        get(&app, &other, "/account").await.status,
        303,
        "other sessions are signed out"
    );
    let old = sign_in(&app, &browser(), "change@example.com", PASSWORD, None).await;
    assert_eq!(old.status, 401);
    let new = sign_in(
        &app,
        &browser(),
        "change@example.com",
        "Brand-new-Secret-7",
        None,
    )
    .await;
    assert_eq!(new.status, 303);
}

async fn must_change_password_sign_in_goes_through_the_step_page(b: Backend) {
    let app = spawn_app(b).await;
    app.user_with("step@example.com", true, &[]).await;
    let client = browser();
    let p = sign_in(
        &app,
        &client,
        "step@example.com",
        PASSWORD,
        Some("/account?from=step"),
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.set_cookie("gh_session").is_none(),
        "no session before the step is done"
    );
    assert!(
        p.body.contains(r#"action="/auth/login/password""#),
        "{}",
        p.body
    );
    assert!(p.body.contains("Choose a new password"));
    let challenge = p.hidden("challengeToken");
    assert!(!challenge.is_empty());
    assert!(
        !p.body.contains(&format!("?challengeToken={challenge}"))
            && !p.body.contains(&format!("={challenge}&"))
    );
    assert_eq!(p.hidden("next"), "/account?from=step");
    let step = |new: &'static str, confirm: &'static str, csrf: String| {
        let (app, client, challenge) = (&app, &client, challenge.clone());
        async move {
            let form = [
                ("challengeToken", challenge.as_str()),
                ("newPassword", new),
                ("confirmPassword", confirm),
                ("csrf_token", &csrf),
                ("next", "/account?from=step"),
            ];
            post(app, client, "/auth/login/password", &form).await
        }
    };
    let p = step("Fresh-Start-42x", "Fresh-Start-42y", p.csrf()).await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("The passwords do not match"));
    let refused = step("Fresh-Start-42x", "Fresh-Start-42x", String::new()).await;
    assert_eq!(refused.status, 403);
    let p = step("Fresh-Start-42x", "Fresh-Start-42x", p.csrf()).await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/account?from=step"),
        "{}",
        p.body
    );
    assert!(p.set_cookie("gh_session").is_some());
    assert_eq!(get(&app, &client, "/account").await.status, 200);
    // The challenge was single-use.
    let again = step(
        "Another-Fresh-43",
        "Another-Fresh-43",
        get(&app, &client, "/account").await.csrf(),
    )
    .await;
    assert_eq!(again.status, 401);
    assert!(
        again.body.contains(r#"action="/auth/login""#),
        "back to the sign-in form: {}",
        again.body
    );
}

async fn sign_out_ends_the_session_and_account_then_redirects(b: Backend) {
    let app = spawn_app(b).await;
    app.user("bye@example.com").await;
    let client = browser();
    let p = sign_in(&app, &client, "bye@example.com", PASSWORD, None).await;
    let cookie = p.set_cookie("gh_session").unwrap();
    let token = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("gh_session=")
        .to_string();
    let account = get(&app, &client, "/account").await;
    assert!(account.body.contains(r#"action="/auth/logout""#));
    let refused = post(&app, &client, "/auth/logout", &[("csrf_token", "nope")]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        get(&app, &client, "/account").await.status,
        200,
        "still signed in"
    );
    let out = post(
        &app,
        &client,
        "/auth/logout",
        &[("csrf_token", &account.csrf())],
    )
    .await;
    assert_eq!((out.status, out.location()), (303, "/auth/login"));
    let cleared = out.set_cookie("gh_session").unwrap();
    assert!(
        cleared.starts_with("gh_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let p = get(&app, &client, "/account").await;
    assert_eq!((p.status, p.location()), (303, "/auth/login?next=/account"));
    // The old cookie is dead on the server too, not just forgotten by the browser.
    let replay = browser()
        .get(app.url("/account"))
        .header("cookie", format!("gh_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status().as_u16(), 303);
    assert!(app.svc.authenticate_web(&token).await.is_err());
}

async fn account_without_a_session_redirects_to_sign_in(b: Backend) {
    let app = spawn_app(b).await;
    let p = get(&app, &browser(), "/account").await;
    assert_eq!((p.status, p.location()), (303, "/auth/login?next=/account"));
    let bogus = browser()
        .get(app.url("/account"))
        .header("cookie", "gh_session=not-a-session")
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status().as_u16(), 303);
}

async fn pages_speak_chinese_and_vietnamese(b: Backend) {
    let app = spawn_app(b).await;
    app.user("lang@example.com").await;
    for (accept, lang, sign_in_text, wrong) in [
        ("zh-CN,zh;q=0.9", "zh-CN", "登录", "邮箱或密码错误"),
        (
            "vi-VN,vi;q=0.8,en;q=0.5",
            "vi",
            "Đăng nhập",
            "Email hoặc mật khẩu không đúng",
        ),
    ] {
        let client = browser();
        let p = Page::of(
            client
                .get(app.url("/auth/login"))
                .header("accept-language", accept)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(
            p.body.contains(&format!(r#"<html lang="{lang}">"#)),
            "{}",
            p.body
        );
        assert!(p.body.contains(sign_in_text), "{}", p.body);
        let form = [
            ("identifier", "lang@example.com"),
            ("password", "Wrong-password-1"),
            ("csrf_token", &p.csrf()),
        ];
        let res = client
            .post(app.url("/auth/login"))
            .header("accept-language", accept)
            .form(&form)
            .send()
            .await
            .unwrap();
        let p = Page::of(res).await;
        assert_eq!(p.status, 401);
        assert!(p.body.contains(wrong), "{}", p.body);
        let form = [
            ("identifier", "lang@example.com"),
            ("password", PASSWORD),
            ("csrf_token", &p.csrf()),
        ];
        client
            .post(app.url("/auth/login"))
            .form(&form)
            .send()
            .await
            .unwrap();
        let res = client
            .get(app.url("/account"))
            .header("accept-language", accept)
            .send()
            .await
            .unwrap();
        let p = Page::of(res).await;
        assert_eq!(p.status, 200);
        assert!(p.body.contains(&format!(r#"<html lang="{lang}">"#)));
        assert!(
            !p.body.contains("Active sessions"),
            "no English left on the page: {}",
            p.body
        );
    }
}

async fn a_malformed_form_is_a_page_not_a_server_error(b: Backend) {
    let app = spawn_app(b).await;
    let client = browser();
    let _ = get(&app, &client, "/auth/login").await;
    let json = client
        .post(app.url("/auth/login"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let p = Page::of(json).await;
    assert_eq!(p.status, 415);
    assert!(p.header("content-type").starts_with("text/html"));
    assert!(p.body.contains("The form could not be read"), "{}", p.body);
    for body in [
        "identifier=%zz&password=x",
        "password=a&password=b",
        "identifier=\u{0}",
    ] {
        let res = client
            .post(app.url("/auth/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let p = Page::of(res).await;
        assert!(p.status == 400 || p.status == 403, "{body}: {}", p.status);
    }
    let res = client
        .post(app.url("/auth/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xffu8, 0xfe])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
}

async fn every_page_is_in_the_openapi_document(b: Backend) {
    let app = spawn_app(b).await;
    let doc: serde_json::Value = browser()
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, method) in [
        ("/auth/login", "get"),
        ("/auth/login", "post"),
        ("/auth/login/password", "post"),
        ("/auth/logout", "post"),
        ("/account", "get"),
        ("/account/sessions/{id}/revoke", "post"),
        ("/account/password", "post"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(
            op["responses"]["200"]["content"]["text/html"].is_object(),
            "{method} {path}: {op}"
        );
    }
}

async fn account_shows_invitations_and_accepts_or_declines_them(b: Backend) {
    use crate::tenancy::{branch, workspace};
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let dave = app.user("dave@example.com").await;
    let mut offered = Vec::new();
    for slug in ["acme", "beta"] {
        let ws = workspace(&app, &admin, slug).await;
        let hq = branch(&app, &admin, &ws, "hq").await;
        let r = app
            .post_auth(
                &format!("/api/v1/admin/workspaces/{ws}/invitations"),
                &admin,
                serde_json::json!({ "accountId": dave.id, "branchIds": [hq], "roles": ["user"] }),
            )
            .await;
        offered.push(r.expect(201, "OK")["id"].as_str().unwrap().to_string());
    }
    let client = signed_in(&app, "dave@example.com").await;
    let p = get(&app, &client, "/account").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body.matches("data-invitation=").count(), 2, "{}", p.body);
    assert!(p.body.contains("Workspace acme") && p.body.contains("Workspace beta"));
    let accept = format!("/account/invitations/{}/accept", offered[0]);
    // Without the CSRF token nothing happens.
    assert_eq!(post(&app, &client, &accept, &[]).await.status, 403);
    let done = post(&app, &client, &accept, &[("csrf_token", &p.csrf())]).await;
    assert_eq!(
        (done.status, done.location()),
        (303, "/account?notice=joined")
    );
    let decline = format!("/account/invitations/{}/decline", offered[1]);
    let done = post(&app, &client, &decline, &[("csrf_token", &p.csrf())]).await;
    assert_eq!(
        (done.status, done.location()),
        (303, "/account?notice=declined")
    );
    let after = get(&app, &client, "/account?notice=declined").await;
    assert!(after.body.contains("The invitation was declined."));
    assert!(!after.body.contains("data-invitation="), "{}", after.body);
    // Deciding twice is a page naming the conflict, not a server error.
    let again = post(&app, &client, &accept, &[("csrf_token", &p.csrf())]).await;
    assert_eq!(again.status, 409, "{}", again.body);
    let odd = format!("/account/invitations/{}/maybe", offered[0]);
    assert_eq!(
        post(&app, &client, &odd, &[("csrf_token", &p.csrf())])
            .await
            .status,
        404
    );
    // Accepted: the next sign-in lands in acme's only branch.
    let r = app.login("dave@example.com", PASSWORD).await;
    assert_eq!(
        r.expect(200, "AUTH_LOGIN_SUCCESS")["workspace"]["slug"],
        "acme"
    );
}

backend_tests!(
    login_page_has_a_csrf_field_and_strict_headers,
    wrong_password_and_unknown_user_get_the_same_generic_page,
    login_without_a_valid_csrf_token_is_refused,
    sign_in_sets_a_lax_httponly_session_cookie_and_follows_a_local_next,
    sign_in_never_redirects_off_site,
    repeated_failures_show_the_locked_page,
    a_disabled_account_sees_why_it_cannot_sign_in,
    account_lists_sessions_and_revokes_another,
    account_changes_the_password,
    must_change_password_sign_in_goes_through_the_step_page,
    sign_out_ends_the_session_and_account_then_redirects,
    account_without_a_session_redirects_to_sign_in,
    pages_speak_chinese_and_vietnamese,
    a_malformed_form_is_a_page_not_a_server_error,
    every_page_is_in_the_openapi_document,
    account_shows_invitations_and_accepts_or_declines_them,
);
