//! Workspaces, branches, memberships and roles: the tenant-aware login contract, branch
//! selection, the disabled-state checks, permissions, instance switches and registration.

use crate::backend_tests;
use crate::helpers::*;
use base64::Engine as _;
use serde_json::{Value, json};

/// The payload of a JWT, decoded (no signature check: the server already made it).
pub(crate) fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub(crate) async fn workspace(app: &TestApp, admin: &str, slug: &str) -> String {
    let r = app
        .post_auth(
            "/api/v1/admin/workspaces",
            admin,
            json!({ "slug": slug, "name": format!("Workspace {slug}") }),
        )
        .await;
    r.expect(201, "OK")["id"].as_str().unwrap().to_string()
}

pub(crate) async fn branch(app: &TestApp, admin: &str, ws: &str, code: &str) -> String {
    let r = app
        .post_auth(
            &format!("/api/v1/admin/workspaces/{ws}/branches"),
            admin,
            json!({ "code": code, "name": format!("Branch {code}") }),
        )
        .await;
    r.expect(201, "OK")["id"].as_str().unwrap().to_string()
}

pub(crate) async fn member(
    app: &TestApp,
    admin: &str,
    ws: &str,
    account: &str,
    branches: &[&str],
    roles: &[&str],
) -> Value {
    let r = app
        .post_auth(
            &format!("/api/v1/admin/workspaces/{ws}/members"),
            admin,
            json!({ "accountId": account, "branchIds": branches, "roles": roles }),
        )
        .await;
    r.expect(201, "OK").clone()
}

/// A user who belongs to one workspace with the given branches (codes); returns
/// (workspace id, branch ids, member).
async fn member_setup(
    app: &TestApp,
    admin: &str,
    email: &str,
    slug: &str,
    codes: &[&str],
    roles: &[&str],
) -> (String, Vec<String>, Value) {
    let account = app.user(email).await;
    let ws = workspace(app, admin, slug).await;
    let mut ids = Vec::new();
    for c in codes {
        ids.push(branch(app, admin, &ws, c).await);
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let m = member(app, admin, &ws, &account.id.to_string(), &refs, roles).await;
    (ws, ids, m)
}

async fn refresh(app: &TestApp, token: &str) -> Reply {
    app.post("/api/v1/auth/refresh", json!({ "refreshToken": token }))
        .await
}

async fn login_account_without_membership_is_account_scoped(b: Backend) {
    let app = spawn_app(b).await;
    app.user("solo@example.com").await;
    let r = app.login("solo@example.com", PASSWORD).await;
    let d = r.expect(200, "AUTH_LOGIN_SUCCESS");
    assert_eq!(d["nextAction"]["type"], "load_current_context");
    assert!(d["workspace"].is_null() && d["member"].is_null());
    assert_eq!(d["branches"], json!([]));
    let c = claims(d["auth"]["accessToken"].as_str().unwrap());
    assert_eq!(c["scope"], "account");
    assert!(c.get("ws").is_none() && c.get("br").is_none());
}

async fn me_shows_global_admin_permissions_and_unknown_workspace_is_refused(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let me = app.get_auth("/api/v1/auth/me", &admin).await;
    let me = me.expect(200, "OK");
    assert_eq!(me["permissions"], json!(["*"]));
    assert_eq!(me["scope"], "account");
    assert!(me["workspace"].is_null() && me["branch"].is_null());
    app.user("lost@example.com").await;
    let csrf = app.csrf_for(&app.client).await;
    let r = Reply::of(
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("X-CSRFToken", csrf)
            .json(&json!({ "identifier": "lost@example.com", "password": PASSWORD, "workspace": "nowhere" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(403, "PERMISSION_REQUIRED");
}

async fn single_branch_login_is_branch_scoped(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let (ws, branches, m) =
        member_setup(&app, &admin, "one@example.com", "acme", &["hq"], &["user"]).await;
    let r = app.login("one@example.com", PASSWORD).await;
    let d = r.expect(200, "AUTH_LOGIN_SUCCESS");
    assert_eq!(d["nextAction"], json!({ "type": "load_current_context" }));
    assert_eq!(d["account"]["email"], "one@example.com");
    assert_eq!(d["workspace"]["slug"], "acme");
    assert_eq!(d["member"]["id"], m["id"]);
    assert_eq!(d["branches"].as_array().unwrap().len(), 1);
    let auth = &d["auth"];
    assert_eq!(auth["tokenType"], "Bearer");
    assert!(auth["refreshToken"].is_string() && auth["expiresIn"].is_u64());
    assert!(auth["refreshExpiresIn"].is_u64());
    let access = auth["accessToken"].as_str().unwrap();
    let c = claims(access);
    assert_eq!(c["scope"], "branch");
    assert_eq!(c["ws"], ws.as_str());
    assert_eq!(c["br"], branches[0].as_str());
    assert_eq!(c["roles"], json!(["user"]));
    let me = app.get_auth("/api/v1/auth/me", access).await;
    let me = me.expect(200, "OK");
    assert_eq!(me["workspace"]["id"], ws.as_str());
    assert_eq!(me["branch"]["code"], "hq");
    assert_eq!(me["scope"], "branch");
    assert_eq!(me["roles"], json!(["user"]));
    assert_eq!(me["permissions"], json!([]));
}

async fn several_branches_answer_select_branch_then_switch(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let (ws, branches, _) = member_setup(
        &app,
        &admin,
        "two@example.com",
        "acme",
        &["north", "south"],
        &[],
    )
    .await;
    let r = app.login("two@example.com", PASSWORD).await;
    let d = r.expect(200, "AUTH_LOGIN_SUCCESS");
    assert_eq!(
        d["nextAction"],
        json!({ "type": "select_branch", "redirectTo": "/select-branch" })
    );
    let listed = d["branches"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|b| b["workspaceId"] == ws.as_str()));
    assert!(d["auth"].get("accessToken").is_none());
    let account_token = d["auth"]["accountAccessToken"].as_str().unwrap();
    let old_refresh = d["auth"]["refreshToken"].as_str().unwrap().to_string();
    assert_eq!(claims(account_token)["scope"], "account");

    let r = app
        .post_auth(
            "/api/v1/auth/select-branch",
            account_token,
            json!({ "branchId": branches[1] }),
        )
        .await;
    let d = r.expect(200, "OK");
    assert_eq!(d["nextAction"]["type"], "load_current_context");
    assert_eq!(d["branch"]["code"], "south");
    let access = d["auth"]["accessToken"].as_str().unwrap().to_string();
    let new_refresh = d["auth"]["refreshToken"].as_str().unwrap().to_string();
    assert_ne!(new_refresh, old_refresh, "the refresh token rotates");
    let c = claims(&access);
    assert_eq!(
        (c["scope"].as_str(), c["br"].as_str()),
        (Some("branch"), Some(branches[1].as_str()))
    );
    assert_eq!(c["sid"], claims(account_token)["sid"], "same session");

    // Refresh keeps the branch.
    let r = refresh(&app, &new_refresh).await;
    let d = r.expect(200, "AUTH_REFRESH_SUCCESS");
    let access = d["auth"]["accessToken"].as_str().unwrap().to_string();
    assert_eq!(claims(&access)["br"], branches[1].as_str());

    // Switching later needs no password.
    let r = app
        .post_auth(
            "/api/v1/auth/select-branch",
            &access,
            json!({ "branchId": branches[0] }),
        )
        .await;
    let d = r.expect(200, "OK");
    assert_eq!(
        claims(d["auth"]["accessToken"].as_str().unwrap())["br"],
        branches[0].as_str()
    );
}

async fn several_workspaces_list_all_branches_or_take_a_slug(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let (ws_a, _, _) = member_setup(&app, &admin, "multi@example.com", "alpha", &["a1"], &[]).await;
    let account = app
        .svc
        .find_user("multi@example.com")
        .await
        .unwrap()
        .id
        .to_string();
    let ws_b = workspace(&app, &admin, "beta").await;
    let b1 = branch(&app, &admin, &ws_b, "b1").await;
    member(&app, &admin, &ws_b, &account, &[&b1], &[]).await;

    let r = app.login("multi@example.com", PASSWORD).await;
    let d = r.expect(200, "AUTH_LOGIN_SUCCESS");
    assert_eq!(d["nextAction"]["type"], "select_branch");
    let mut seen: Vec<&str> = d["branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["workspaceId"].as_str().unwrap())
        .collect();
    seen.sort();
    let mut want = vec![ws_a.as_str(), ws_b.as_str()];
    want.sort();
    assert_eq!(seen, want);

    let csrf = app.csrf_for(&app.client).await;
    let r = Reply::of(
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("X-CSRFToken", csrf)
            .json(&json!({ "identifier": "multi@example.com", "password": PASSWORD, "workspace": "beta" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let d = r.expect(200, "AUTH_LOGIN_SUCCESS");
    assert_eq!(d["workspace"]["slug"], "beta");
    assert_eq!(
        claims(d["auth"]["accessToken"].as_str().unwrap())["br"],
        b1.as_str()
    );
}

async fn disabled_workspace_ends_branch_sessions_at_refresh(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let (ws, _, _) = member_setup(&app, &admin, "w@example.com", "acme", &["hq"], &[]).await;
    let (_, refresh_token) = app.tokens("w@example.com").await;
    app.post_auth(
        &format!("/api/v1/admin/workspaces/{ws}/disable"),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    refresh(&app, &refresh_token)
        .await
        .expect(403, "WORKSPACE_DISABLED");
    // Signing in is not blocked: with nothing usable left it is account-scoped.
    let r = app.login("w@example.com", PASSWORD).await;
    let token = r.expect(200, "AUTH_LOGIN_SUCCESS")["auth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(claims(&token).get("br").is_none());
    app.post_auth(
        &format!("/api/v1/admin/workspaces/{ws}/enable"),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    app.login("w@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
}

async fn disabled_member_ends_branch_sessions_at_refresh(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let (_, _, m) = member_setup(&app, &admin, "m@example.com", "acme", &["hq"], &[]).await;
    let (_, refresh_token) = app.tokens("m@example.com").await;
    let id = m["id"].as_str().unwrap();
    let r = app
        .post_auth(
            &format!("/api/v1/admin/members/{id}/disable"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.expect(200, "OK")["status"], "DISABLED");
    refresh(&app, &refresh_token)
        .await
        .expect(403, "MEMBER_DISABLED");
    // The sign-in itself is not blocked (see invitations.rs for the whole rule).
    app.login("m@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
}

async fn selecting_a_branch_outside_the_membership_is_refused(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let (ws, branches, _) =
        member_setup(&app, &admin, "s@example.com", "acme", &["n", "s"], &[]).await;
    let other = branch(&app, &admin, &ws, "other").await;
    let r = app.login("s@example.com", PASSWORD).await;
    let token = r.expect(200, "AUTH_LOGIN_SUCCESS")["auth"]["accountAccessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post_auth(
            "/api/v1/auth/select-branch",
            &token,
            json!({ "branchId": other }),
        )
        .await;
    r.expect(403, "PERMISSION_REQUIRED");
    app.post_auth(
        &format!("/api/v1/admin/branches/{}/disable", branches[0]),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    app.post_auth(
        "/api/v1/auth/select-branch",
        &token,
        json!({ "branchId": branches[0] }),
    )
    .await
    .expect(403, "PERMISSION_REQUIRED");
}

async fn branch_endpoints_need_a_branch_context(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    app.get_auth("/api/v1/auth/context", &admin)
        .await
        .expect(403, "BRANCH_CONTEXT_REQUIRED");
    member_setup(&app, &admin, "c@example.com", "acme", &["hq"], &[]).await;
    let (access, _) = app.tokens("c@example.com").await;
    let r = app.get_auth("/api/v1/auth/context", &access).await;
    assert_eq!(r.expect(200, "OK")["branch"]["code"], "hq");
}

/// A workspace role that administers members and branches.
async fn workspace_admin_role(app: &TestApp, admin: &str, ws: &str) {
    app.post_auth(
        "/api/v1/admin/roles",
        admin,
        json!({ "code": "ws-admin", "workspaceId": ws,
                "permissions": ["members:read", "members:write", "branches:read", "branches:write"] }),
    )
    .await
    .expect(201, "OK");
}

async fn workspace_admins_manage_only_their_workspace(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let ws_a = workspace(&app, &admin, "alpha").await;
    let a1 = branch(&app, &admin, &ws_a, "a1").await;
    workspace_admin_role(&app, &admin, &ws_a).await;
    let alice = app.user("alice@example.com").await;
    member(
        &app,
        &admin,
        &ws_a,
        &alice.id.to_string(),
        &[&a1],
        &["ws-admin"],
    )
    .await;
    let (ws_b, _, m_b) = member_setup(&app, &admin, "bob@example.com", "beta", &["b1"], &[]).await;
    let (token, _) = app.tokens("alice@example.com").await;

    app.get_auth(&format!("/api/v1/admin/workspaces/{ws_a}/members"), &token)
        .await
        .expect(200, "OK");
    app.post_auth(
        &format!("/api/v1/admin/workspaces/{ws_a}/branches"),
        &token,
        json!({ "code": "a2", "name": "A2" }),
    )
    .await
    .expect(201, "OK");

    let r = app
        .get_auth(&format!("/api/v1/admin/workspaces/{ws_b}/members"), &token)
        .await;
    r.expect(403, "PERMISSION_REQUIRED");
    assert_eq!(
        r.body["errors"][0],
        json!({ "field": "permission", "code": "members:read", "message": r.body["errors"][0]["message"] })
    );
    app.post_auth(
        &format!("/api/v1/admin/workspaces/{ws_b}/branches"),
        &token,
        json!({ "code": "x", "name": "X" }),
    )
    .await
    .expect(403, "PERMISSION_REQUIRED");
    let bob_member = m_b["id"].as_str().unwrap();
    app.post_auth(
        &format!("/api/v1/admin/members/{bob_member}/disable"),
        &token,
        json!({}),
    )
    .await
    .expect(403, "PERMISSION_REQUIRED");
    // Instance-wide routes stay closed.
    let r = app.get_auth("/api/v1/admin/users", &token).await;
    r.expect(403, "PERMISSION_REQUIRED");
    assert_eq!(r.body["errors"][0]["code"], "users:read");
    app.post_auth(
        "/api/v1/admin/workspaces",
        &token,
        json!({ "slug": "mine", "name": "Mine" }),
    )
    .await
    .expect(403, "PERMISSION_REQUIRED");
}

async fn delegated_admins_hand_out_only_what_they_hold(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let ws = workspace(&app, &admin, "gamma").await;
    let g1 = branch(&app, &admin, &ws, "g1").await;
    app.post_auth(
        "/api/v1/admin/roles",
        &admin,
        json!({ "code": "delegate", "workspaceId": ws,
                "permissions": ["members:read", "members:write", "roles:read", "roles:write"] }),
    )
    .await
    .expect(201, "OK");
    let carol = app.user("carol@example.com").await;
    let m = member(
        &app,
        &admin,
        &ws,
        &carol.id.to_string(),
        &[&g1],
        &["delegate"],
    )
    .await;
    let (token, _) = app.tokens("carol@example.com").await;
    let role =
        |code: &str, perms: Value| json!({ "code": code, "workspaceId": ws, "permissions": perms });

    // Never the wildcard, never a permission they lack.
    let r = app
        .post_auth("/api/v1/admin/roles", &token, role("boss", json!(["*"])))
        .await;
    r.expect(403, "PERMISSION_REQUIRED");
    assert_eq!(r.body["errors"][0]["code"], "*");
    let r = app
        .post_auth(
            "/api/v1/admin/roles",
            &token,
            role("auditor", json!(["members:read", "audit:read"])),
        )
        .await;
    r.expect(403, "PERMISSION_REQUIRED");
    assert_eq!(r.body["errors"][0]["code"], "audit:read");
    // What they hold, they may hand on.
    app.post_auth(
        "/api/v1/admin/roles",
        &token,
        role("reader", json!(["members:read"])),
    )
    .await
    .expect(201, "OK");
    // No workspace role may be named like an instance role, not even by an instance admin.
    for who in [&token, &admin] {
        app.post_auth(
            "/api/v1/admin/roles",
            who,
            role("admin", json!(["members:read"])),
        )
        .await
        .expect(400, "VALIDATION_ERROR");
    }
    // A role with more than they hold cannot be granted by them, to themselves or others.
    app.post_auth(
        "/api/v1/admin/roles",
        &admin,
        role("wide", json!(["members:read", "branches:write"])),
    )
    .await
    .expect(201, "OK");
    let id = m["id"].as_str().unwrap();
    let r = app
        .post_auth(
            &format!("/api/v1/admin/members/{id}/roles"),
            &token,
            json!({ "roles": ["wide"] }),
        )
        .await;
    r.expect(403, "PERMISSION_REQUIRED");
    assert_eq!(r.body["errors"][0]["code"], "branches:write");
    let dave = app.user("dave@example.com").await;
    let r = app
        .post_auth(
            &format!("/api/v1/admin/workspaces/{ws}/invitations"),
            &token,
            json!({ "accountId": dave.id, "branchIds": [g1], "roles": ["wide"] }),
        )
        .await;
    r.expect(403, "PERMISSION_REQUIRED");
    assert_eq!(r.body["errors"][0]["code"], "branches:write");
    // The instance admin may.
    app.post_auth(
        &format!("/api/v1/admin/members/{id}/roles"),
        &admin,
        json!({ "roles": ["wide"] }),
    )
    .await
    .expect(200, "OK");
}

async fn removed_role_takes_effect_at_next_refresh(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let ws = workspace(&app, &admin, "alpha").await;
    let br = branch(&app, &admin, &ws, "a1").await;
    workspace_admin_role(&app, &admin, &ws).await;
    let alice = app.user("alice@example.com").await;
    let m = member(
        &app,
        &admin,
        &ws,
        &alice.id.to_string(),
        &[&br],
        &["ws-admin"],
    )
    .await;
    let (access, refresh_token) = app.tokens("alice@example.com").await;
    // Workspace roles are namespaced in tokens: never mistaken for an instance role.
    assert_eq!(claims(&access)["roles"], json!(["ws:ws-admin"]));
    let id = m["id"].as_str().unwrap();
    let r = app
        .post_auth(
            &format!("/api/v1/admin/members/{id}/roles"),
            &admin,
            json!({ "roles": ["user"], "branchId": br }),
        )
        .await;
    r.expect(200, "OK");
    let r = Reply::of(
        browser()
            .delete(app.url(&format!("/api/v1/admin/members/{id}/roles/ws-admin")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.expect(200, "OK")["roles"], json!([]));
    let r = refresh(&app, &refresh_token).await;
    let access = r.expect(200, "AUTH_REFRESH_SUCCESS")["auth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        claims(&access)["roles"],
        json!(["user"]),
        "branch role kept"
    );
    app.get_auth(&format!("/api/v1/admin/workspaces/{ws}/members"), &access)
        .await
        .expect(403, "PERMISSION_REQUIRED");
}

async fn password_login_switch_refuses_users_but_not_admins(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    app.user("u@example.com").await;
    let r = Reply::of(
        browser()
            .patch(app.url("/api/v1/admin/settings"))
            .bearer_auth(&admin)
            .json(&json!({ "allowPasswordLogin": false }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.expect(200, "OK")["allowPasswordLogin"], false);
    app.login("u@example.com", PASSWORD)
        .await
        .expect(403, "PASSWORD_LOGIN_DISABLED");
    app.login("u@example.com", "wrong-password-1")
        .await
        .expect(401, "INVALID_CREDENTIALS");
    app.login("ghost@example.com", PASSWORD)
        .await
        .expect(401, "INVALID_CREDENTIALS");
    app.user_with("boss@example.com", false, &["admin"]).await;
    app.login("boss@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
}

async fn register(app: &TestApp, email: &str, password: &str) -> Reply {
    let client = browser();
    let csrf = app.csrf_for(&client).await;
    Reply::of(
        client
            .post(app.url("/api/v1/auth/register"))
            .header("X-CSRFToken", csrf)
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn registration_follows_the_switch_and_reveals_no_accounts(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    register(&app, "new@example.com", "Plum-Orchard-42")
        .await
        .expect(403, "REGISTRATION_DISABLED");
    app.post(
        "/api/v1/auth/register",
        json!({ "email": "x@example.com", "password": "Plum-Orchard-42" }),
    )
    .await
    .expect(403, "CSRF_MISSING");
    Reply::of(
        browser()
            .patch(app.url("/api/v1/admin/settings"))
            .bearer_auth(&admin)
            .json(&json!({ "allowRegistration": true }))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "OK");
    app.user("taken@example.com").await;
    let fresh = register(&app, "new@example.com", "Plum-Orchard-42").await;
    let taken = register(&app, "taken@example.com", "Plum-Orchard-42").await;
    assert_eq!(fresh.status.as_u16(), 202);
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("requestId");
        v
    };
    assert_eq!(strip(fresh.body.clone()), strip(taken.body.clone()));
    assert_eq!(taken.status, fresh.status);
    assert!(fresh.body["data"].get("id").is_none());
    app.login("new@example.com", "Plum-Orchard-42")
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
    app.login("taken@example.com", "Plum-Orchard-42")
        .await
        .expect(401, "INVALID_CREDENTIALS");
    let r = register(&app, "weak@example.com", "short").await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);
}

async fn admin_tenancy_api_validates_and_paginates(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let ws = workspace(&app, &admin, "one").await;
    workspace(&app, &admin, "two").await;
    app.post_auth(
        "/api/v1/admin/workspaces",
        &admin,
        json!({ "slug": "one", "name": "Again" }),
    )
    .await
    .expect(409, "CONFLICT");
    let r = app
        .post_auth(
            "/api/v1/admin/workspaces",
            &admin,
            json!({ "slug": "Not A Slug!", "name": "" }),
        )
        .await;
    r.expect(400, "VALIDATION_ERROR");
    let r = app
        .get_auth("/api/v1/admin/workspaces?page=2&pageSize=1", &admin)
        .await;
    let d = r.expect(200, "OK");
    assert_eq!(
        (
            d["page"].as_u64(),
            d["pageSize"].as_u64(),
            d["total"].as_u64()
        ),
        (Some(2), Some(1), Some(2))
    );
    assert_eq!(d["items"][0]["slug"], "two");
    let w = &d["items"][0];
    assert!(w["id"].is_string() && w["name"].is_string() && w["status"] == "ACTIVE");
    branch(&app, &admin, &ws, "hq").await;
    app.post_auth(
        &format!("/api/v1/admin/workspaces/{ws}/branches"),
        &admin,
        json!({ "code": "hq", "name": "Again" }),
    )
    .await
    .expect(409, "CONFLICT");
    let r = app
        .get_auth(&format!("/api/v1/admin/workspaces/{ws}/branches"), &admin)
        .await;
    let d = r.expect(200, "OK");
    assert_eq!(d["total"], 1);
    assert_eq!(d["items"][0]["workspaceId"], ws.as_str());
    app.post_auth(
        "/api/v1/admin/roles",
        &admin,
        json!({ "code": "bad", "permissions": ["fly:high"] }),
    )
    .await
    .expect(400, "VALIDATION_ERROR");
    let r = app
        .post_auth(
            "/api/v1/admin/roles",
            &admin,
            json!({ "code": "auditor", "permissions": ["audit:read"] }),
        )
        .await;
    let role = r.expect(201, "OK");
    assert!(role["workspaceId"].is_null());
    app.post_auth(
        "/api/v1/admin/roles",
        &admin,
        json!({ "code": "auditor", "permissions": [] }),
    )
    .await
    .expect(409, "CONFLICT");
    // A workspace may reuse a global code for its own role.
    app.post_auth(
        "/api/v1/admin/roles",
        &admin,
        json!({ "code": "auditor", "permissions": [], "workspaceId": ws }),
    )
    .await
    .expect(201, "OK");
    let r = app.get_auth("/api/v1/admin/roles", &admin).await;
    let codes: Vec<&str> = r.expect(200, "OK")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"admin") && codes.contains(&"user"),
        "{codes:?}"
    );
    let u = app.user("dup@example.com").await;
    member(&app, &admin, &ws, &u.id.to_string(), &[], &[]).await;
    app.post_auth(
        &format!("/api/v1/admin/workspaces/{ws}/members"),
        &admin,
        json!({ "accountId": u.id, "branchIds": [], "roles": [] }),
    )
    .await
    .expect(409, "CONFLICT");
    let r = app
        .post_auth(
            &format!("/api/v1/admin/workspaces/{ws}/members"),
            &admin,
            json!({ "accountId": u.id, "roles": ["nope"] }),
        )
        .await;
    r.expect(400, "VALIDATION_ERROR");
}

backend_tests!(
    login_account_without_membership_is_account_scoped,
    me_shows_global_admin_permissions_and_unknown_workspace_is_refused,
    single_branch_login_is_branch_scoped,
    several_branches_answer_select_branch_then_switch,
    several_workspaces_list_all_branches_or_take_a_slug,
    disabled_workspace_ends_branch_sessions_at_refresh,
    disabled_member_ends_branch_sessions_at_refresh,
    selecting_a_branch_outside_the_membership_is_refused,
    branch_endpoints_need_a_branch_context,
    workspace_admins_manage_only_their_workspace,
    removed_role_takes_effect_at_next_refresh,
    delegated_admins_hand_out_only_what_they_hold,
    password_login_switch_refuses_users_but_not_admins,
    registration_follows_the_switch_and_reveals_no_accounts,
    admin_tenancy_api_validates_and_paginates,
);

fn cli(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .current_dir(dir)
        .env("GATEHOUSE_DATABASE__URL", "sqlite:./gh.db")
        .env("GATEHOUSE_PASSWORD__ARGON2_MEMORY_KIB", "256")
        .env("GATEHOUSE_PASSWORD__ARGON2_ITERATIONS", "1")
        .env("GATEHOUSE_PASSWORD__INSECURE_FAST_HASHING", "true")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn cli_manages_workspaces_members_and_roles() {
    let dir = std::env::temp_dir().join(format!("gh-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = |out: std::process::Output| {
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ok(cli(
        &dir,
        &[
            "user",
            "create",
            "--email",
            "cli@example.com",
            "--password-stdin",
        ],
        Some("Tangerine-Sky-55\n"),
    ));
    ok(cli(
        &dir,
        &["workspace", "create", "--slug", "acme", "--name", "Acme"],
        None,
    ));
    let dup = cli(
        &dir,
        &["workspace", "create", "--slug", "acme", "--name", "Acme"],
        None,
    );
    assert!(!dup.status.success());
    ok(cli(
        &dir,
        &[
            "member",
            "add",
            "--workspace",
            "acme",
            "--user",
            "cli@example.com",
            "--role",
            "user",
        ],
        None,
    ));
    let missing = cli(
        &dir,
        &[
            "member",
            "add",
            "--workspace",
            "acme",
            "--user",
            "cli@example.com",
            "--branch",
            "NOPE",
        ],
        None,
    );
    assert!(!missing.status.success());
    ok(cli(
        &dir,
        &[
            "role",
            "grant",
            "--workspace",
            "acme",
            "--user",
            "cli@example.com",
            "--role",
            "admin",
        ],
        None,
    ));
    ok(cli(&dir, &["workspace", "disable", "acme"], None));

    let url = format!("sqlite:{}", dir.join("gh.db").display());
    let store = gatehouse_store::connect(&url, &Default::default())
        .await
        .unwrap();
    let w = store.workspace_by_slug("acme").await.unwrap().unwrap();
    assert_eq!(w.status.as_str(), "DISABLED");
    let a = store
        .account_by_email("cli@example.com")
        .await
        .unwrap()
        .unwrap();
    let m = store.member_of(a.id, w.id).await.unwrap().unwrap();
    assert_eq!(m.roles, vec!["admin".to_string(), "user".to_string()]);
    let _ = std::fs::remove_dir_all(dir);
}
