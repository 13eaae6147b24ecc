//! The authorization rules of the admin use cases, against a real (SQLite) store: deny by
//! default, the wildcard of global admins, workspace-scoped grants that reach neither
//! other workspaces nor instance-wide routes, and refusals that name the missing permission.

use super::*;
use crate::admin::CreateUser;
use crate::config::CoreConfig;
use crate::service::AuthVia;
use gatehouse_domain::ports::SystemClock;
use std::path::PathBuf;
use std::sync::Arc;

/// A SQLite file under the temp dir, removed when the test ends (also on failure).
struct TempDb(PathBuf);

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// Two workspaces: `alpha`, where alice holds the workspace role `ws-admin`
/// (`members:*`, `branches:*`), and `beta`, where bob is a plain member; plus a global
/// admin and an account in no workspace.
struct World {
    svc: Service,
    _db: TempDb,
    admin: Principal,
    alice: Principal,
    nobody: Principal,
    alpha: Id,
    beta: Id,
    bob_member: Id,
}

fn principal(account_id: Id) -> Principal {
    Principal {
        account_id,
        session_id: new_id(),
        jti: None,
        via: AuthVia::Bearer,
        workspace_id: None,
        branch_id: None,
        token: None,
    }
}

async fn world() -> World {
    let db = TempDb(std::env::temp_dir().join(format!("gh_core_authz_{}.db", new_id())));
    let url = format!("sqlite:{}", db.0.display());
    let store = gatehouse_store::connect(&url, &gatehouse_store::PoolOptions::default())
        .await
        .unwrap();
    let clock: Arc<dyn gatehouse_domain::ports::Clock> = Arc::new(SystemClock);
    let cache = Arc::new(gatehouse_cache::MemoryCache::new(clock.clone()));
    let mut cfg = CoreConfig::default();
    cfg.secrets.encryption_key = Some(gatehouse_domain::Secret::new(
        crate::totp::new_key_text().unwrap(),
    ));
    let svc = Service::new(store, cache, clock, cfg).await.unwrap();
    let meta = RequestMeta::default();
    let account = |email: &str, roles: &[&str]| CreateUser {
        email: email.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ..CreateUser::default()
    };
    let admin = svc
        .create_user(None, account("root@example.com", &["admin"]), &meta)
        .await
        .unwrap();
    let alice = svc
        .create_user(None, account("alice@example.com", &[]), &meta)
        .await
        .unwrap();
    let bob = svc
        .create_user(None, account("bob@example.com", &[]), &meta)
        .await
        .unwrap();
    let nobody = svc
        .create_user(None, account("nobody@example.com", &[]), &meta)
        .await
        .unwrap();
    let alpha = svc
        .create_workspace(None, "alpha", "Alpha", &meta)
        .await
        .unwrap()
        .id;
    let beta = svc
        .create_workspace(None, "beta", "Beta", &meta)
        .await
        .unwrap()
        .id;
    let perms = [
        "members:read",
        "members:write",
        "branches:read",
        "branches:write",
    ];
    svc.create_role(
        None,
        "ws-admin",
        perms.map(String::from).to_vec(),
        Some(alpha),
        &meta,
    )
    .await
    .unwrap();
    let add = |account_id, roles: &[&str]| AddMember {
        account_id,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ..AddMember::default()
    };
    svc.add_member(None, alpha, add(alice.id, &["ws-admin"]), &meta)
        .await
        .unwrap();
    let bob_member = svc
        .add_member(None, beta, add(bob.id, &[]), &meta)
        .await
        .unwrap()
        .id;
    World {
        svc,
        _db: db,
        admin: principal(admin.id),
        alice: principal(alice.id),
        nobody: principal(nobody.id),
        alpha,
        beta,
        bob_member,
    }
}

/// Asserts `PERMISSION_REQUIRED` naming `permission`.
fn refused<T: std::fmt::Debug>(r: Result<T, AppError>, permission: &str) {
    let e = r.expect_err("should be refused");
    assert_eq!(e.code, Code::PERMISSION_REQUIRED, "{e:?}");
    assert_eq!(e.fields.len(), 1, "{e:?}");
    assert_eq!(
        (e.fields[0].field.as_str(), e.fields[0].code),
        ("permission", permission)
    );
}

fn role(code: &str, permissions: &[&str], workspace_id: Option<Id>) -> NewRole {
    NewRole {
        code: code.into(),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
        workspace_id,
    }
}

fn page() -> Input<Page> {
    Ok(Page {
        page: 1,
        page_size: 20,
    })
}

#[tokio::test]
async fn deny_by_default() {
    let w = world().await;
    // An account without roles or memberships holds nothing, anywhere.
    for &p in Permission::EVERY {
        let svc = &w.svc;
        refused(
            svc.require_permission(&w.nobody, p, Scope::Instance).await,
            p.as_str(),
        );
        let alpha = Scope::Workspace(w.alpha);
        refused(
            svc.require_permission(&w.nobody, p, alpha).await,
            p.as_str(),
        );
    }
    refused(
        w.svc.list_members_as(&w.nobody, w.alpha, page()).await,
        "members:read",
    );
}

#[tokio::test]
async fn the_admin_wildcard_holds_everything_everywhere() {
    let w = world().await;
    for &p in Permission::EVERY {
        for scope in [
            Scope::Instance,
            Scope::Workspace(w.beta),
            Scope::Workspace(new_id()),
        ] {
            w.svc.require_permission(&w.admin, p, scope).await.unwrap();
        }
    }
    let (found, _) = w
        .svc
        .list_members_as(&w.admin, w.beta, page())
        .await
        .unwrap();
    assert_eq!(found.total, 1);
}

#[tokio::test]
async fn workspace_roles_reach_their_workspace_only() {
    let w = world().await;
    let (svc, meta) = (&w.svc, &RequestMeta::default());
    let (_, held) = svc
        .permissions_in(&w.alice, Scope::Workspace(w.alpha))
        .await
        .unwrap();
    assert_eq!(
        held.names(),
        [
            "branches:read",
            "branches:write",
            "members:read",
            "members:write"
        ]
    );
    svc.list_members_as(&w.alice, w.alpha, page())
        .await
        .unwrap();
    refused(
        svc.list_members_as(&w.alice, w.beta, page()).await,
        "members:read",
    );
    refused(
        svc.set_member_status_as(&w.alice, w.bob_member, Status::Disabled, meta)
            .await,
        "members:write",
    );
    // Not instance-wide, and not permissions the roles do not name.
    refused(
        svc.require_permission(&w.alice, Permission::MembersRead, Scope::Instance)
            .await,
        "members:read",
    );
    refused(
        svc.list_roles_as(&w.alice, Some(w.alpha), page().unwrap())
            .await,
        "roles:read",
    );
    refused(
        svc.create_role_as(&w.alice, role("mine", &[], None), meta)
            .await,
        "roles:write",
    );
}

#[tokio::test]
async fn a_disabled_workspace_grants_its_members_nothing() {
    let w = world().await;
    let meta = &RequestMeta::default();
    w.svc
        .set_workspace_status(None, w.alpha, Status::Disabled, meta)
        .await
        .unwrap();
    refused(
        w.svc.list_members_as(&w.alice, w.alpha, page()).await,
        "members:read",
    );
}

#[tokio::test]
async fn not_found_and_bad_input_only_answer_authorized_callers() {
    let w = world().await;
    let (svc, meta) = (&w.svc, &RequestMeta::default());
    let nowhere = new_id();
    refused(
        svc.set_member_status_as(&w.alice, nowhere, Status::Disabled, meta)
            .await,
        "members:write",
    );
    let e = svc
        .set_member_status_as(&w.admin, nowhere, Status::Disabled, meta)
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::NOT_FOUND);

    let bad = || {
        Err(AppError::validation(vec![FieldError::new(
            "page", "invalid",
        )]))
    };
    refused(
        svc.list_members_as(&w.alice, w.beta, bad()).await,
        "members:read",
    );
    let e = svc
        .list_members_as(&w.alice, w.alpha, bad())
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::VALIDATION_ERROR);
}

#[tokio::test]
async fn role_creation_parses_permission_names() {
    let w = world().await;
    let meta = &RequestMeta::default();
    let e = w
        .svc
        .create_role_as(&w.admin, role("bad", &["fly:high"], None), meta)
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::VALIDATION_ERROR);
    assert_eq!(e.fields, vec![FieldError::new("permissions", "invalid")]);
    let r = w
        .svc
        .create_role_as(&w.admin, role("root", &["audit:read", "*"], None), meta)
        .await
        .unwrap();
    assert_eq!(r.permissions, ["*", "audit:read"]);
}
