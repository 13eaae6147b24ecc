//! Bad input never yields a 500, a panic or a dropped connection: every endpoint answers
//! junk with a 4xx envelope and keeps serving.

use crate::backend_tests;
use crate::helpers::*;
use serde_json::{Value, json};

/// Every endpoint that reads a JSON body (logout and logout-all take none).
const JSON_POSTS: &[&str] = &[
    "/api/v1/auth/login",
    "/api/v1/auth/login/password",
    "/api/v1/auth/refresh",
    "/api/v1/auth/password",
    "/api/v1/admin/users",
];

fn junk_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    vec![
        ("not json", b"{bad".to_vec()),
        ("invalid utf-8", vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}']),
        ("deep nesting", deep.into_bytes()),
        ("array", b"[1,2,3]".to_vec()),
        ("null", b"null".to_vec()),
        ("wrong types", br#"{"identifier":42,"password":[],"challengeToken":{},"newPassword":true,"currentPassword":1.5,"refreshToken":false,"email":null,"roles":"admin"}"#.to_vec()),
        ("huge strings", json!({ "identifier": "a".repeat(100_000 / 2), "password": "b".repeat(100_000 / 2 - 100) }).to_string().into_bytes()),
        ("duplicate keys", br#"{"identifier":"a@b.io","identifier":"c@d.io","password":"x"}"#.to_vec()),
        ("empty", Vec::new()),
    ]
}

async fn junk_bodies_get_4xx_envelopes_on_every_endpoint(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let client = browser();
    let csrf = app.csrf_for(&client).await;
    for path in JSON_POSTS {
        for (what, body) in junk_bodies() {
            for auth in [None, Some(admin.as_str())] {
                let mut req = client
                    .post(app.url(path))
                    .header("content-type", "application/json")
                    .header("X-CSRFToken", &csrf)
                    .body(body.clone());
                if let Some(t) = auth {
                    req = req.bearer_auth(t);
                }
                let r = match req.send().await {
                    Ok(res) => Reply::of(res).await,
                    // Over the body limit the server answers 413 without reading the rest
                    // and closes; the client may see the reset before the answer.
                    Err(e) if body.len() > 64 * 1024 => {
                        assert!(
                            e.is_request() || e.is_body() || e.is_connect(),
                            "{path} {what}: {e}"
                        );
                        continue;
                    }
                    Err(e) => panic!("{path} {what}: {e}"),
                };
                let s = r.status.as_u16();
                assert!((400..500).contains(&s), "{path} {what}: {s} {}", r.body);
                assert_eq!(r.body["success"], false, "{path} {what}: {}", r.body);
                assert!(
                    !r.code().is_empty() && r.body["requestId"].is_string(),
                    "{path} {what}: {}",
                    r.body
                );
            }
        }
    }
    Reply::of(client.get(app.url("/health")).send().await.unwrap())
        .await
        .expect(200, "OK");
}

async fn body_errors_have_their_own_codes(b: Backend) {
    let app = spawn_app(b).await;
    let client = browser();
    let url = app.url("/api/v1/auth/login/password");
    let r = Reply::of(
        client
            .post(&url)
            .header("content-type", "application/json")
            .body("{bad")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(400, "MALFORMED_JSON");
    let r = Reply::of(
        client
            .post(&url)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(415, "UNSUPPORTED_MEDIA_TYPE");
    let r = Reply::of(client.post(&url).body("{}").send().await.unwrap()).await;
    r.expect(415, "UNSUPPORTED_MEDIA_TYPE");
    // A 413 is sent before the body is read, so the client can lose the race with the
    // server's close; a few tries always see the answer.
    let big = json!({ "challengeToken": "x", "newPassword": "y".repeat(70_000) }).to_string();
    let mut answered = None;
    for _ in 0..5 {
        let sent = browser()
            .post(&url)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await;
        if let Ok(res) = sent {
            answered = Some(Reply::of(res).await);
            break;
        }
    }
    answered
        .expect("the 413 answer arrives")
        .expect(413, "PAYLOAD_TOO_LARGE");
    let r = Reply::of(
        client
            .post(&url)
            .json(&json!({ "challengeToken": null, "newPassword": 7 }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(400, "VALIDATION_ERROR");
    let errs: Vec<(&str, &str)> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errs,
        [
            ("challengeToken", "required"),
            ("newPassword", "invalid_type")
        ]
    );
}

async fn oversized_and_duplicated_authorization_headers_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    let client = browser();
    let huge = format!("Bearer {}", "a".repeat(32 * 1024));
    let r = Reply::of(
        client
            .get(app.url("/api/v1/auth/me"))
            .header("Authorization", huge)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(401, "TOKEN_INVALID");
    app.user("dupauth@example.com").await;
    let (token, _) = app.tokens("dupauth@example.com").await;
    let r = Reply::of(
        client
            .get(app.url("/api/v1/auth/me"))
            .header("Authorization", format!("Bearer {token}"))
            .header("Authorization", "Bearer other")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(401, "TOKEN_INVALID");
    let r = Reply::of(
        client
            .get(app.url("/api/v1/auth/me"))
            .header("Authorization", "Bearer")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(401, "TOKEN_INVALID");
    Reply::of(client.get(app.url("/health")).send().await.unwrap())
        .await
        .expect(200, "OK");
}

async fn unknown_paths_and_methods_are_envelopes(b: Backend) {
    let app = spawn_app(b).await;
    let client = browser();
    Reply::of(client.get(app.url("/api/v1/nope")).send().await.unwrap())
        .await
        .expect(404, "NOT_FOUND");
    Reply::of(
        client
            .delete(app.url("/api/v1/auth/login"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(405, "METHOD_NOT_ALLOWED");
}

async fn messages_follow_accept_language(b: Backend) {
    let app = spawn_app(b).await;
    let client = browser();
    let msg = |lang: &'static str| {
        let client = client.clone();
        let url = app.url("/api/v1/nope");
        async move {
            let r = Reply::of(
                client
                    .get(url)
                    .header("Accept-Language", lang)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            r.body["message"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(msg("zh-CN,zh;q=0.9").await, "未找到");
    assert_eq!(msg("vi").await, "Không tìm thấy");
    assert_eq!(msg("fr").await, "Not found");
}

async fn request_and_correlation_ids_are_echoed_or_generated(b: Backend) {
    let app = spawn_app(b).await;
    let client = browser();
    let res = client
        .get(app.url("/health"))
        .header("X-Request-Id", "req-123")
        .header("X-Correlation-Id", "corr-9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "req-123");
    assert_eq!(res.headers()["x-correlation-id"], "corr-9");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["requestId"], "req-123");
    let res = client
        .get(app.url("/health"))
        .header("X-Request-Id", "bad id with spaces <script>")
        .send()
        .await
        .unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
}

async fn ready_reports_store_and_cache(b: Backend) {
    let app = spawn_app(b).await;
    let r = Reply::of(browser().get(app.url("/ready")).send().await.unwrap()).await;
    let data = r.expect(200, "OK");
    let names: Vec<&str> = data["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["store", "cache"]);
}

/// The penetration test signed in as the second `identifier` of a body that gave two.
async fn duplicate_keys_are_refused_at_any_depth(b: Backend) {
    let app = spawn_app(b).await;
    app.user("first@example.com").await;
    app.user("second@example.com").await;
    let send = |body: String, lang: &'static str| {
        let app = &app;
        async move {
            let client = browser();
            let csrf = app.csrf_for(&client).await;
            Reply::of(
                client
                    .post(app.url("/api/v1/auth/login"))
                    .header("X-CSRFToken", csrf)
                    .header("Content-Type", "application/json")
                    .header("Accept-Language", lang)
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let twice = format!(
        r#"{{"identifier":"first@example.com","password":"{PASSWORD}","identifier":"second@example.com"}}"#
    );
    for (lang, message) in [
        ("en", "This field appears more than once"),
        ("zh-CN", "该字段重复出现"),
        ("vi", "Trường này xuất hiện nhiều lần"),
    ] {
        let r = send(twice.clone(), lang).await;
        r.expect(400, "VALIDATION_ERROR");
        assert_eq!(
            r.body["errors"],
            json!([{ "field": "identifier", "code": "duplicate", "message": message }])
        );
    }
    let nested = format!(
        r#"{{"identifier":"first@example.com","password":"{PASSWORD}","extra":{{"list":[{{"a":1,"a":2}}]}}}}"#
    );
    let r = send(nested, "en").await;
    r.expect(400, "VALIDATION_ERROR");
    assert_eq!(r.body["errors"][0]["field"], "extra.list[0].a");
    assert_eq!(r.body["errors"][0]["code"], "duplicate");
    // Without the duplicate the same body signs in.
    let r = send(
        format!(r#"{{"identifier":"first@example.com","password":"{PASSWORD}"}}"#),
        "en",
    )
    .await;
    r.expect(200, "AUTH_LOGIN_SUCCESS");
}

backend_tests!(
    duplicate_keys_are_refused_at_any_depth,
    junk_bodies_get_4xx_envelopes_on_every_endpoint,
    body_errors_have_their_own_codes,
    oversized_and_duplicated_authorization_headers_are_refused,
    unknown_paths_and_methods_are_envelopes,
    messages_follow_accept_language,
    request_and_correlation_ids_are_echoed_or_generated,
    ready_reports_store_and_cache,
);
