//! Invitations: a workspace's own admins bring existing accounts in only with the
//! account's consent; a membership never blocks the account's other sign-ins.

use crate::backend_tests;
use crate::helpers::*;
use crate::tenancy::{branch, claims, member, workspace};
use serde_json::{Value, json};

/// A workspace `slug` with branch `b1`, a role `delegate` (members and roles, read and
/// write) held by a new account `carol@…`, and a role `reader` (`members:read`). Returns
/// (admin token, workspace id, branch id, carol's token).
async fn delegated(app: &TestApp, slug: &str) -> (String, String, String, String) {
    let admin = app.admin_token().await;
    let ws = workspace(app, &admin, slug).await;
    let b1 = branch(app, &admin, &ws, "b1").await;
    for (code, perms) in [
        (
            "delegate",
            json!(["members:read", "members:write", "roles:read", "roles:write"]),
        ),
        ("reader", json!(["members:read"])),
        ("wide", json!(["members:read", "branches:write"])),
    ] {
        app.post_auth(
            "/api/v1/admin/roles",
            &admin,
            json!({ "code": code, "workspaceId": ws, "permissions": perms }),
        )
        .await
        .expect(201, "OK");
    }
    let carol = app.user(&format!("carol@{slug}.example")).await;
    member(
        app,
        &admin,
        &ws,
        &carol.id.to_string(),
        &[&b1],
        &["delegate"],
    )
    .await;
    let (token, _) = app.tokens(&format!("carol@{slug}.example")).await;
    (admin, ws, b1, token)
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

async fn invite(app: &TestApp, token: &str, ws: &str, body: Value) -> Reply {
    app.post_auth(
        &format!("/api/v1/admin/workspaces/{ws}/invitations"),
        token,
        body,
    )
    .await
}

async fn account_token(app: &TestApp, email: &str) -> String {
    let r = app.login(email, PASSWORD).await;
    let d = r.expect(200, "AUTH_LOGIN_SUCCESS");
    d["auth"]["accessToken"].as_str().unwrap().to_string()
}

async fn workspace_admins_invite_and_the_account_decides(b: Backend) {
    let app = spawn_app(b).await;
    let (_, ws, b1, carol) = delegated(&app, "acme").await;
    let dave = app.user("dave@example.com").await;

    // A workspace admin cannot pull an account in directly.
    let r = app
        .post_auth(
            &format!("/api/v1/admin/workspaces/{ws}/members"),
            &carol,
            json!({ "accountId": dave.id, "branchIds": [b1], "roles": ["reader"] }),
        )
        .await;
    r.expect(403, "PERMISSION_REQUIRED");
    assert_eq!(r.body["errors"][0]["field"], "accountId");
    assert_eq!(r.body["errors"][0]["code"], "invitation_required");

    let r = invite(
        &app,
        &carol,
        &ws,
        json!({ "accountId": dave.id, "branchIds": [b1], "roles": ["reader"] }),
    )
    .await;
    let inv = r.expect(201, "OK").clone();
    assert_eq!(inv["status"], "pending");
    assert_eq!(inv["roles"], json!(["reader"]));
    let inv_id = id(&inv);
    // One pending invitation per account and workspace.
    let r = invite(&app, &carol, &ws, json!({ "accountId": dave.id })).await;
    r.expect(409, "CONFLICT");
    assert_eq!(r.body["errors"][0]["code"], "invited");

    // Until dave accepts, nothing about his sign-in changes.
    let token = account_token(&app, "dave@example.com").await;
    assert!(claims(&token).get("br").is_none(), "{:?}", claims(&token));
    let r = app.get_auth("/api/v1/auth/invitations", &token).await;
    let items = r.expect(200, "OK")["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["id"], inv_id.as_str());
    assert_eq!(items[0]["workspace"]["slug"], "acme");

    // Nobody else can see or take his invitation.
    app.user("eve@example.com").await;
    let eve = account_token(&app, "eve@example.com").await;
    let r = app.get_auth("/api/v1/auth/invitations", &eve).await;
    assert_eq!(r.expect(200, "OK")["items"], json!([]));
    app.post_auth(
        &format!("/api/v1/auth/invitations/{inv_id}/accept"),
        &eve,
        json!({}),
    )
    .await
    .expect(404, "NOT_FOUND");

    // Consent takes a signed-in session: a personal access token may look, not accept.
    let r = app
        .post_auth("/api/v1/auth/tokens", &token, json!({ "name": "ci" }))
        .await;
    let pat = r.expect(201, "OK")["token"].as_str().unwrap().to_string();
    let r = app.get_auth("/api/v1/auth/invitations", &pat).await;
    assert_eq!(r.expect(200, "OK")["items"][0]["id"], inv_id.as_str());
    for decision in ["accept", "decline"] {
        app.post_auth(
            &format!("/api/v1/auth/invitations/{inv_id}/{decision}"),
            &pat,
            json!({}),
        )
        .await
        .expect(403, "SESSION_REQUIRED");
    }

    let r = app
        .post_auth(
            &format!("/api/v1/auth/invitations/{inv_id}/accept"),
            &token,
            json!({}),
        )
        .await;
    let d = r.expect(200, "OK");
    assert_eq!(d["invitation"]["status"], "accepted");
    assert_eq!(d["member"]["roles"], json!(["reader"]));
    assert_eq!(d["member"]["branchIds"], json!([b1]));
    let r = app
        .post_auth(
            &format!("/api/v1/auth/invitations/{inv_id}/accept"),
            &token,
            json!({}),
        )
        .await;
    r.expect(409, "CONFLICT");
    assert_eq!(r.body["errors"][0]["code"], "accepted");

    // Now he signs in to the workspace's branch, with the workspace role namespaced.
    let token = account_token(&app, "dave@example.com").await;
    let c = claims(&token);
    assert_eq!(c["br"], b1.as_str());
    assert_eq!(c["roles"], json!(["ws:reader"]));
    // And a member cannot be invited again.
    let r = invite(&app, &carol, &ws, json!({ "accountId": dave.id })).await;
    r.expect(409, "CONFLICT");
    assert_eq!(r.body["errors"][0]["code"], "member");
}

async fn invitations_offer_only_what_the_inviter_may_hand_on(b: Backend) {
    let app = spawn_app(b).await;
    let (admin, ws, _, carol) = delegated(&app, "gamma").await;
    let dave = app.user("dave@example.com").await;
    let r = invite(
        &app,
        &carol,
        &ws,
        json!({ "accountId": dave.id, "roles": ["wide"] }),
    )
    .await;
    r.expect(403, "PERMISSION_REQUIRED");
    assert_eq!(r.body["errors"][0]["code"], "branches:write");
    let r = invite(
        &app,
        &carol,
        &ws,
        json!({ "accountId": dave.id, "roles": ["admin"] }),
    )
    .await;
    r.expect(403, "PERMISSION_REQUIRED");
    assert_eq!(r.body["errors"][0]["code"], "*");
    // Another workspace is out of reach altogether.
    let other = workspace(&app, &admin, "other").await;
    invite(&app, &carol, &other, json!({ "accountId": dave.id }))
        .await
        .expect(403, "PERMISSION_REQUIRED");
    // Bad input is named, and an unknown account is invalid.
    let r = invite(
        &app,
        &carol,
        &ws,
        json!({ "accountId": uuid::Uuid::now_v7(), "roles": ["nope"] }),
    )
    .await;
    r.expect(400, "VALIDATION_ERROR");
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["accountId", "roles"]);
    // The instance admin still adds members directly.
    member(&app, &admin, &ws, &dave.id.to_string(), &[], &["wide"]).await;
    let audit = app
        .get_auth(
            "/api/v1/admin/audit-events?action=admin.invitation.create",
            &admin,
        )
        .await;
    assert_eq!(audit.expect(200, "OK")["total"], 0, "nothing was offered");
}

async fn declined_revoked_and_expired_invitations_change_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let (_, ws, _, carol) = delegated(&app, "delta").await;
    let dave = app.user("dave@example.com").await;
    let token = account_token(&app, "dave@example.com").await;
    let body = json!({ "accountId": dave.id, "roles": ["reader"] });

    let first = id(invite(&app, &carol, &ws, body.clone())
        .await
        .expect(201, "OK"));
    let r = app
        .post_auth(
            &format!("/api/v1/auth/invitations/{first}/decline"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(r.expect(200, "OK")["status"], "declined");

    let second = id(invite(&app, &carol, &ws, body.clone())
        .await
        .expect(201, "OK"));
    let r = Reply::of(
        browser()
            .delete(app.url(&format!("/api/v1/admin/invitations/{second}")))
            .bearer_auth(&carol)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.expect(200, "OK")["status"], "revoked");
    let r = app
        .post_auth(
            &format!("/api/v1/auth/invitations/{second}/accept"),
            &token,
            json!({}),
        )
        .await;
    r.expect(409, "CONFLICT");
    assert_eq!(r.body["errors"][0]["code"], "revoked");

    let third = id(invite(&app, &carol, &ws, body.clone())
        .await
        .expect(201, "OK"));
    app.advance(8 * 24 * 3600);
    let token = account_token(&app, "dave@example.com").await;
    let r = app.get_auth("/api/v1/auth/invitations", &token).await;
    assert_eq!(r.expect(200, "OK")["items"], json!([]));
    let r = app
        .post_auth(
            &format!("/api/v1/auth/invitations/{third}/accept"),
            &token,
            json!({}),
        )
        .await;
    r.expect(409, "CONFLICT");
    assert_eq!(r.body["errors"][0]["code"], "expired");

    // The workspace's list shows each as it ended, newest first.
    let carol_now = app.tokens("carol@delta.example").await.0;
    let r = app
        .get_auth(
            &format!("/api/v1/admin/workspaces/{ws}/invitations"),
            &carol_now,
        )
        .await;
    let statuses: Vec<&str> = r.expect(200, "OK")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["expired", "revoked", "declined"]);
    // dave never became a member.
    let admin = app.admin_token().await;
    let r = app
        .get_auth(&format!("/api/v1/admin/workspaces/{ws}/members"), &admin)
        .await;
    assert_eq!(r.expect(200, "OK")["total"], 1);
    let audit = app
        .get_auth(
            "/api/v1/admin/audit-events?action=member.invitation.decline",
            &admin,
        )
        .await;
    assert_eq!(audit.expect(200, "OK")["total"], 1);
}

async fn a_disabled_membership_never_blocks_other_sign_ins(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin_token().await;
    let ws = workspace(&app, &admin, "acme").await;
    let b1 = branch(&app, &admin, &ws, "hq").await;
    let account = app.user("m@example.com").await;
    let m = member(&app, &admin, &ws, &account.id.to_string(), &[&b1], &[]).await;
    let (branch_token, refresh_token) = app.tokens("m@example.com").await;
    assert_eq!(claims(&branch_token)["br"], b1.as_str());
    app.post_auth(
        &format!("/api/v1/admin/members/{}/disable", id(&m)),
        &admin,
        json!({}),
    )
    .await
    .expect(200, "OK");
    // The branch-scoped session ends at its next refresh…
    app.post(
        "/api/v1/auth/refresh",
        json!({ "refreshToken": refresh_token }),
    )
    .await
    .expect(403, "MEMBER_DISABLED");
    // …but the account still signs in, account-scoped, as with no membership.
    let token = account_token(&app, "m@example.com").await;
    let c = claims(&token);
    assert!(c.get("br").is_none() && c.get("ws").is_none(), "{c:?}");
    app.get_auth("/api/v1/auth/me", &token)
        .await
        .expect(200, "OK");
    // Asking for that workspace by name is told why not.
    let client = browser();
    let csrf = app.csrf_for(&client).await;
    let r = Reply::of(
        client
            .post(app.url("/api/v1/auth/login"))
            .header("X-CSRFToken", csrf)
            .json(&json!({ "identifier": "m@example.com", "password": PASSWORD, "workspace": "acme" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(403, "MEMBER_DISABLED");
}

backend_tests!(
    workspace_admins_invite_and_the_account_decides,
    invitations_offer_only_what_the_inviter_may_hand_on,
    declined_revoked_and_expired_invitations_change_nothing,
    a_disabled_membership_never_blocks_other_sign_ins,
);
