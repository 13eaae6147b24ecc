//! Transport-security headers and cookie names (penetration test): HSTS only under an https
//! public URL, `nosniff` on JSON answers as well as pages, and the refresh cookie's
//! `__Secure-` prefix under https, read back under the same name. The headers do not depend
//! on the backend, so these run on SQLite only.

use crate::helpers::{Backend, PASSWORD, Reply, TestApp, browser, spawn_app, spawn_app_with};
use serde_json::json;

const HSTS: &str = "max-age=63072000; includeSubDomains";

/// `name=value` of the `Set-Cookie` whose name is `name`.
fn set_cookie(r: &Reply, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

async fn answers(app: &TestApp) -> Vec<(String, Reply)> {
    let mut out = Vec::new();
    for path in [
        "/health",
        "/api/v1/auth/csrf-token",
        "/api/v1/nope",
        "/login",
    ] {
        let r = Reply::of(browser().get(app.url(path)).send().await.unwrap()).await;
        out.push((path.to_string(), r));
    }
    let r = app.post("/api/v1/auth/login", json!({})).await;
    out.push(("POST /api/v1/auth/login".into(), r));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_http_json_and_pages_are_nosniff_and_there_is_no_hsts() {
    let app = spawn_app(Backend::Sqlite).await;
    for (what, r) in answers(&app).await {
        assert_eq!(r.headers["x-content-type-options"], "nosniff", "{what}");
        assert!(
            !r.headers.contains_key("strict-transport-security"),
            "{what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_https_every_answer_has_hsts() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.public_url = "https://auth.example.test".into()
    })
    .await;
    for (what, r) in answers(&app).await {
        assert_eq!(r.headers["strict-transport-security"], HSTS, "{what}");
        assert_eq!(r.headers["x-content-type-options"], "nosniff", "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_https_the_refresh_cookie_is_secure_prefixed_and_read_back_by_that_name() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.public_url = "https://auth.example.test".into()
    })
    .await;
    app.user("secure@example.com").await;
    // Secure cookies are not sent back over the test's plain http, so by hand.
    let client = browser();
    let r = Reply::of(
        client
            .get(app.url("/api/v1/auth/csrf-token"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let csrf = r.expect(200, "OK")["csrfToken"]
        .as_str()
        .unwrap()
        .to_string();
    let binding = pair(&set_cookie(&r, "__Host-gh_csrf").expect("__Host-gh_csrf"));
    let r = Reply::of(
        client
            .post(app.url("/api/v1/auth/login"))
            .header("X-CSRFToken", &csrf)
            .header("Cookie", &binding)
            .json(&json!({ "identifier": "secure@example.com", "password": PASSWORD }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(200, "AUTH_LOGIN_SUCCESS");
    assert!(set_cookie(&r, "gh_refresh").is_none());
    let refresh = set_cookie(&r, "__Secure-gh_refresh").expect("__Secure-gh_refresh");
    assert!(
        refresh.contains("Path=/api/v1/auth") && refresh.contains("; Secure"),
        "{refresh}"
    );
    let refresh = pair(&refresh);
    // The unprefixed name, as a plain-http page could plant it, is not read.
    let plain = refresh.trim_start_matches("__Secure-");
    let refresh_with = |cookie: String| {
        client
            .post(app.url("/api/v1/auth/refresh"))
            .header("X-CSRFToken", &csrf)
            .header("Cookie", format!("{binding}; {cookie}"))
            .send()
    };
    let r = Reply::of(refresh_with(plain.to_string()).await.unwrap()).await;
    r.expect(400, "VALIDATION_ERROR");
    let r = Reply::of(refresh_with(refresh.clone()).await.unwrap()).await;
    r.expect(200, "AUTH_REFRESH_SUCCESS");
    assert!(set_cookie(&r, "__Secure-gh_refresh").is_some());
}
