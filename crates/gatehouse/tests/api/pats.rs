//! Personal access tokens: shown once, checked by form before the store, capped by scopes
//! and the owner's current permissions, refused once revoked (on every instance), expired,
//! or when the owner or its membership is disabled; never able to manage credentials.

use crate::backend_tests;
use crate::helpers::*;
use gatehouse_domain::ports::{Clock, ManualClock};
use serde_json::{Value, json};
use std::sync::Arc;

/// Creates a token with `body` using `access`; returns the created data.
async fn create(app: &TestApp, access: &str, body: Value) -> Value {
    app.post_auth("/api/v1/auth/tokens", access, body)
        .await
        .expect(201, "OK")
        .clone()
}

/// A signed-in user with a fresh token named "ci"; returns (access token, token data).
async fn user_with_pat(app: &TestApp, email: &str) -> (String, Value) {
    app.user(email).await;
    let (access, _) = app.tokens(email).await;
    let pat = create(app, &access, json!({ "name": "ci" })).await;
    (access, pat)
}

fn text(pat: &Value) -> String {
    pat["token"].as_str().unwrap().to_string()
}

async fn delete_auth(app: &TestApp, path: &str, token: &str) -> Reply {
    Reply::of(
        browser()
            .delete(app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn a_token_is_shown_once_and_never_listed(b: Backend) {
    let app = spawn_app(b).await;
    let (access, pat) = user_with_pat(&app, "once@example.com").await;
    let token = text(&pat);
    assert!(token.starts_with("gatehouse_pat_"), "{token}");
    assert_eq!(token.len(), "gatehouse_pat_".len() + 43 + 6);
    let expires = pat["expiresAt"].as_str().unwrap();
    let created = pat["createdAt"].as_str().unwrap();
    assert!(expires > created, "the default lifetime applies");

    let listed = app.get_auth("/api/v1/auth/tokens", &access).await;
    let data = listed.expect(200, "OK");
    assert_eq!(data["items"][0]["id"], pat["id"]);
    assert_eq!(data["items"][0]["name"], "ci");
    assert!(data["items"][0].get("token").is_none());
    assert!(
        !listed.body.to_string().contains(&token[14..]),
        "the secret part is never listed"
    );
}

async fn a_token_works_as_a_bearer_and_me_names_it(b: Backend) {
    let app = spawn_app(b).await;
    let (_, pat) = user_with_pat(&app, "bearer@example.com").await;
    let me = app.get_auth("/api/v1/auth/me", &text(&pat)).await;
    let data = me.expect(200, "OK");
    assert_eq!(data["account"]["email"], "bearer@example.com");
    assert_eq!(data["credential"]["kind"], "pat");
    assert_eq!(data["credential"]["id"], pat["id"]);
    assert_eq!(data["credential"]["name"], "ci");
    assert!(data["sessionId"].is_null(), "a token has no session");
    // The sessions list, like any other access-token route, takes it too.
    app.get_auth("/api/v1/auth/sessions", &text(&pat))
        .await
        .expect(200, "OK");
}

async fn a_checksum_typo_is_refused_without_a_store_read(b: Backend) {
    let app = spawn_app(b).await;
    let (_, pat) = user_with_pat(&app, "typo@example.com").await;
    let token = text(&pat);
    let lookups = || {
        app.svc
            .metrics
            .get("gatehouse_credential_lookups_total", &[("kind", "pat")])
    };
    let before = lookups();
    let mut typo = token.clone().into_bytes();
    let i = 20;
    typo[i] = if typo[i] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).unwrap();
    for fake in [
        typo.as_str(),
        "gatehouse_pat_short",
        "gatehouse_pat_0000000000000000000000000000000000000000000000000",
    ] {
        app.get_auth("/api/v1/auth/me", fake)
            .await
            .expect(401, "TOKEN_INVALID");
    }
    assert_eq!(lookups(), before, "no store lookup for a malformed token");
    app.get_auth("/api/v1/auth/me", &token)
        .await
        .expect(200, "OK");
    assert_eq!(lookups(), before + 1, "a well-formed token is looked up");
    app.get_auth("/api/v1/auth/me", &token)
        .await
        .expect(200, "OK");
    assert_eq!(
        lookups(),
        before + 1,
        "then its row comes from the shared cache (tokens.cache_seconds)"
    );
}

async fn a_revoked_token_is_refused_on_every_instance_and_audited(b: Backend) {
    // Instances share token rows only through Redis (a cluster needs it). The two SQLite
    // instances here each have their own memory cache, so they read tokens from the store.
    let own_caches = matches!(b, Backend::Sqlite);
    let app = spawn_app_with(b, |c| {
        if own_caches {
            c.tokens.cache_seconds = 0;
        }
    })
    .await;
    let (access, pat) = user_with_pat(&app, "revoke@example.com").await;
    let token = text(&pat);
    // A second instance on the same store and cache.
    let clock = Arc::new(ManualClock::new(app.now()));
    let other = gatehouse::server::start(&app.config, clock as Arc<dyn Clock>)
        .await
        .unwrap();
    let other_url = format!("http://{}/api/v1/auth/me", other.addr);
    let on_other = || async {
        Reply::of(
            browser()
                .get(&other_url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    on_other().await.expect(200, "OK");

    let id = pat["id"].as_str().unwrap();
    delete_auth(&app, &format!("/api/v1/auth/tokens/{id}"), &access)
        .await
        .expect(200, "OK");
    on_other().await.expect(401, "TOKEN_REVOKED");
    app.get_auth("/api/v1/auth/me", &token)
        .await
        .expect(401, "TOKEN_REVOKED");
    let listed = app.get_auth("/api/v1/auth/tokens", &access).await;
    assert_eq!(listed.expect(200, "OK")["total"], 0);
    delete_auth(&app, &format!("/api/v1/auth/tokens/{id}"), &access)
        .await
        .expect(404, "NOT_FOUND");

    let admin = app.admin_token().await;
    let audit = app
        .get_auth("/api/v1/admin/audit-events?pageSize=100", &admin)
        .await;
    let items = audit.expect(200, "OK")["items"].as_array().unwrap().clone();
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in ["pat.create", "pat.delete", "pat.use_revoked"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    assert!(
        !audit.body.to_string().contains(&token[14..]),
        "no token text in the audit trail"
    );
}

async fn an_expired_token_is_refused_and_lifetimes_are_bounded(b: Backend) {
    let app = spawn_app(b).await;
    app.user("expiry@example.com").await;
    let (access, _) = app.tokens("expiry@example.com").await;
    let pat = create(
        &app,
        &access,
        json!({ "name": "short", "expiresInDays": 1 }),
    )
    .await;
    for days in [json!(0), json!(366), json!(-1), json!("7")] {
        app.post_auth(
            "/api/v1/auth/tokens",
            &access,
            json!({ "name": "bad", "expiresInDays": days }),
        )
        .await
        .expect(400, "VALIDATION_ERROR");
    }
    app.get_auth("/api/v1/auth/me", &text(&pat))
        .await
        .expect(200, "OK");
    app.advance(24 * 3600);
    app.get_auth("/api/v1/auth/me", &text(&pat))
        .await
        .expect(401, "TOKEN_EXPIRED");
}

async fn a_never_expiring_token_needs_the_instance_to_allow_it(b: Backend) {
    let app = spawn_app_with(b, |c| c.tokens.allow_non_expiring = true).await;
    app.user("never@example.com").await;
    let (access, _) = app.tokens("never@example.com").await;
    let pat = create(
        &app,
        &access,
        json!({ "name": "forever", "expiresInDays": 0 }),
    )
    .await;
    assert!(pat["expiresAt"].is_null());
    app.advance(4000 * 24 * 3600);
    app.get_auth("/api/v1/auth/me", &text(&pat))
        .await
        .expect(200, "OK");
}

async fn a_disabled_owner_is_refused(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let (_, pat) = user_with_pat(&app, "disabled@example.com").await;
    let me = app.get_auth("/api/v1/auth/me", &text(&pat)).await;
    let id = me.expect(200, "OK")["account"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.post_auth(
        &format!("/api/v1/admin/users/{id}/disable"),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    app.get_auth("/api/v1/auth/me", &text(&pat))
        .await
        .expect(403, "ACCOUNT_DISABLED");
}

async fn scopes_narrow_what_the_owner_holds(b: Backend) {
    let app = spawn_app(b).await;
    let email = "scoped-admin@example.com";
    app.user_with(email, false, &["admin"]).await;
    let (access, _) = app.tokens(email).await;
    let pat = create(
        &app,
        &access,
        json!({ "name": "reader", "scopes": ["users:read", "users:read"] }),
    )
    .await;
    assert_eq!(pat["scopes"], json!(["users:read"]));
    let token = text(&pat);
    let me = app.get_auth("/api/v1/auth/me", &token).await;
    assert_eq!(me.expect(200, "OK")["permissions"], json!(["users:read"]));
    app.get_auth("/api/v1/admin/users", &token)
        .await
        .expect(200, "OK");
    let r = app
        .post_auth(
            "/api/v1/admin/users",
            &token,
            json!({ "email": "new@example.com" }),
        )
        .await;
    r.expect(403, "PERMISSION_REQUIRED");
    assert_eq!(r.body["errors"][0]["code"], "users:write");
    app.get_auth("/api/v1/admin/audit-events", &token)
        .await
        .expect(403, "PERMISSION_REQUIRED");
    // Unknown names and the wildcard are not scopes.
    for bad in [json!(["*"]), json!(["users:fly"])] {
        app.post_auth(
            "/api/v1/auth/tokens",
            &access,
            json!({ "name": "x", "scopes": bad }),
        )
        .await
        .expect(400, "VALIDATION_ERROR");
    }
}

/// A workspace with a role granting `members:read`, and `email` a member holding it.
/// Returns (admin token, workspace id, member id, the member's access token).
async fn reader_member(app: &TestApp, email: &str) -> (String, String, String, String) {
    let admin = app.admin_token().await;
    let ws = app
        .post_auth(
            "/api/v1/admin/workspaces",
            &admin,
            json!({ "slug": "acme", "name": "Acme" }),
        )
        .await
        .expect(201, "OK")["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.post_auth(
        "/api/v1/admin/roles",
        &admin,
        json!({ "code": "reader", "workspaceId": ws, "permissions": ["members:read"] }),
    )
    .await
    .expect(201, "OK");
    let account = app.user(email).await;
    let m = app
        .post_auth(
            &format!("/api/v1/admin/workspaces/{ws}/members"),
            &admin,
            json!({ "accountId": account.id, "branchIds": [], "roles": ["reader"] }),
        )
        .await
        .expect(201, "OK")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (access, _) = app.tokens(email).await;
    (admin, ws, m, access)
}

async fn a_removed_role_takes_effect_at_once(b: Backend) {
    let app = spawn_app(b).await;
    let (admin, ws, member, access) = reader_member(&app, "role@example.com").await;
    let pat = create(&app, &access, json!({ "name": "ws", "workspaceId": ws })).await;
    assert_eq!(pat["workspaceId"], json!(ws));
    let members = format!("/api/v1/admin/workspaces/{ws}/members");
    app.get_auth(&members, &text(&pat)).await.expect(200, "OK");
    delete_auth(
        &app,
        &format!("/api/v1/admin/members/{member}/roles/reader"),
        &admin,
    )
    .await
    .expect(200, "OK");
    app.get_auth(&members, &text(&pat))
        .await
        .expect(403, "PERMISSION_REQUIRED");
}

async fn a_bound_token_is_refused_once_the_membership_is_disabled(b: Backend) {
    let app = spawn_app(b).await;
    let (admin, ws, member, access) = reader_member(&app, "member@example.com").await;
    let bound = create(&app, &access, json!({ "name": "ws", "workspaceId": ws })).await;
    let unbound = create(&app, &access, json!({ "name": "plain" })).await;
    app.post_auth(
        &format!("/api/v1/admin/members/{member}/disable"),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    app.get_auth("/api/v1/auth/me", &text(&bound))
        .await
        .expect(403, "MEMBER_DISABLED");
    // The account itself is fine: an unbound token still works, without the workspace.
    app.get_auth("/api/v1/auth/me", &text(&unbound))
        .await
        .expect(200, "OK");
    app.get_auth(
        &format!("/api/v1/admin/workspaces/{ws}/members"),
        &text(&unbound),
    )
    .await
    .expect(403, "PERMISSION_REQUIRED");
    // And no new token can be bound to a workspace the account is not active in.
    app.post_auth(
        "/api/v1/auth/tokens",
        &access,
        json!({ "name": "again", "workspaceId": ws }),
    )
    .await
    .expect(403, "MEMBER_DISABLED");
}

async fn a_token_cannot_manage_credentials_or_sessions(b: Backend) {
    let app = spawn_app(b).await;
    let (access, pat) = user_with_pat(&app, "selfservice@example.com").await;
    let token = text(&pat);
    for (path, body) in [
        ("/api/v1/auth/tokens", json!({ "name": "child" })),
        (
            "/api/v1/auth/password",
            json!({ "currentPassword": PASSWORD, "newPassword": "another-Horse-battery-8" }),
        ),
        ("/api/v1/auth/totp/enroll", json!({})),
        ("/api/v1/auth/logout", json!({})),
        ("/api/v1/auth/logout-all", json!({})),
    ] {
        let r = app.post_auth(path, &token, body).await;
        r.expect(403, "SESSION_REQUIRED");
    }
    // The session it was made from is untouched.
    app.get_auth("/api/v1/auth/me", &access)
        .await
        .expect(200, "OK");
    // Someone else's token is not found, not revoked.
    let (_, theirs) = user_with_pat(&app, "other@example.com").await;
    let id = theirs["id"].as_str().unwrap();
    delete_auth(&app, &format!("/api/v1/auth/tokens/{id}"), &access)
        .await
        .expect(404, "NOT_FOUND");
    app.get_auth("/api/v1/auth/me", &text(&theirs))
        .await
        .expect(200, "OK");
}

async fn last_use_is_recorded_at_most_once_a_minute(b: Backend) {
    let app = spawn_app(b).await;
    let (access, pat) = user_with_pat(&app, "lastused@example.com").await;
    let token = text(&pat);
    let last_used = || async {
        app.get_auth("/api/v1/auth/tokens", &access)
            .await
            .expect(200, "OK")["items"][0]
            .clone()
    };
    assert!(last_used().await["lastUsedAt"].is_null());
    app.get_auth("/api/v1/auth/me", &token)
        .await
        .expect(200, "OK");
    let first = last_used().await;
    assert!(first["lastUsedAt"].is_string());
    assert_eq!(first["lastUsedIp"], "127.0.0.1");
    app.advance(30);
    app.get_auth("/api/v1/auth/me", &token)
        .await
        .expect(200, "OK");
    assert_eq!(
        last_used().await["lastUsedAt"],
        first["lastUsedAt"],
        "within a minute: no write"
    );
    app.advance(31);
    app.get_auth("/api/v1/auth/me", &token)
        .await
        .expect(200, "OK");
    assert_ne!(last_used().await["lastUsedAt"], first["lastUsedAt"]);
}

/// The value of the first `name="{name}" value="…"` in an HTML body.
fn input_value(body: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in {body}"))
        + marker.len();
    body[start..start + body[start..].find('"').unwrap()].to_string()
}

async fn the_account_page_creates_shows_once_and_revokes_tokens(b: Backend) {
    let app = spawn_app(b).await;
    app.user("pages@example.com").await;
    let client = browser();
    let login = client.get(app.url("/auth/login")).send().await.unwrap();
    let csrf = input_value(&login.text().await.unwrap(), "csrf_token");
    let signed = client
        .post(app.url("/auth/login"))
        .form(&[
            ("identifier", "pages@example.com"),
            ("password", PASSWORD),
            ("csrf_token", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status().as_u16(), 303);
    let account = client.get(app.url("/account")).send().await.unwrap();
    let page = account.text().await.unwrap();
    assert!(page.contains(r#"id="tokens""#), "{page}");
    assert!(page.contains("No personal access tokens."));
    let csrf = input_value(&page, "csrf_token");

    let created = client
        .post(app.url("/account/tokens"))
        .form(&[
            ("name", "laptop cli"),
            ("expiresInDays", "30"),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    let csp = created.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let shown = created.text().await.unwrap();
    assert!(shown.contains(r#"id="copy-token""#), "{shown}");
    let marker = r#"id="new-token" type="text" readonly value=""#;
    let start = shown.find(marker).unwrap() + marker.len();
    let token = &shown[start..start + shown[start..].find('"').unwrap()];
    assert!(token.starts_with("gatehouse_pat_"), "{token}");
    app.get_auth("/api/v1/auth/me", token)
        .await
        .expect(200, "OK");

    let page = client
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("laptop cli"));
    assert!(!page.contains(&token[14..]), "never shown again");
    let row = r#"<tr data-token=""#;
    let start = page.find(row).unwrap() + row.len();
    let id = &page[start..start + page[start..].find('"').unwrap()];
    let revoked = client
        .post(app.url(&format!("/account/tokens/{id}/revoke")))
        .form(&[("csrf_token", input_value(&page, "csrf_token").as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 303);
    assert_eq!(
        revoked.headers()["location"],
        "/account?notice=token-revoked"
    );
    app.get_auth("/api/v1/auth/me", token)
        .await
        .expect(401, "TOKEN_REVOKED");
    let page = client
        .get(app.url("/account?notice=token-revoked"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("The token was revoked."));
    assert!(page.contains("No personal access tokens."));
}

async fn a_branch_bound_token_acts_in_its_branch_within_its_scopes(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let ws = app
        .post_auth(
            "/api/v1/admin/workspaces",
            &admin,
            json!({ "slug": "shop", "name": "Shop" }),
        )
        .await
        .expect(201, "OK")["id"]
        .clone();
    let branch = app
        .post_auth(
            &format!("/api/v1/admin/workspaces/{}/branches", ws.as_str().unwrap()),
            &admin,
            json!({ "code": "north", "name": "North" }),
        )
        .await
        .expect(201, "OK")["id"]
        .clone();
    app.post_auth(
        "/api/v1/admin/roles",
        &admin,
        json!({ "code": "clerk", "workspaceId": ws, "permissions": ["members:read", "members:write"] }),
    )
    .await
    .expect(201, "OK");
    let account = app.user("clerk@example.com").await;
    app.post_auth(
        &format!("/api/v1/admin/workspaces/{}/members", ws.as_str().unwrap()),
        &admin,
        json!({ "accountId": account.id, "branchIds": [branch], "roles": ["clerk"] }),
    )
    .await
    .expect(201, "OK");
    let (access, _) = app.tokens("clerk@example.com").await;
    let pat = create(
        &app,
        &access,
        json!({ "name": "till", "branchId": branch, "scopes": ["members:read"] }),
    )
    .await;
    assert_eq!(pat["workspaceId"], ws, "the branch's workspace");
    let token = text(&pat);
    let me = app.get_auth("/api/v1/auth/me", &token).await;
    let data = me.expect(200, "OK");
    assert_eq!(data["scope"], "branch");
    assert_eq!(data["branch"]["id"], branch);
    assert_eq!(data["permissions"], json!(["members:read"]));
    let context = app.get_auth("/api/v1/auth/context", &token).await;
    assert_eq!(
        context.expect(200, "OK")["permissions"],
        json!(["members:read"]),
        "the context shows the capped permissions too"
    );
    // The session itself holds both.
    let context = app.get_auth("/api/v1/auth/context", &access).await;
    assert_eq!(
        context.expect(200, "OK")["permissions"],
        json!(["members:read", "members:write"])
    );
}

backend_tests!(
    a_branch_bound_token_acts_in_its_branch_within_its_scopes,
    the_account_page_creates_shows_once_and_revokes_tokens,
    a_token_is_shown_once_and_never_listed,
    a_token_works_as_a_bearer_and_me_names_it,
    a_checksum_typo_is_refused_without_a_store_read,
    a_revoked_token_is_refused_on_every_instance_and_audited,
    an_expired_token_is_refused_and_lifetimes_are_bounded,
    a_never_expiring_token_needs_the_instance_to_allow_it,
    a_disabled_owner_is_refused,
    scopes_narrow_what_the_owner_holds,
    a_removed_role_takes_effect_at_once,
    a_bound_token_is_refused_once_the_membership_is_disabled,
    a_token_cannot_manage_credentials_or_sessions,
    last_use_is_recorded_at_most_once_a_minute,
);
