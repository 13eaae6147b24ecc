//! Upstream sign-in against a real OpenID Connect provider: the npm `oidc-provider` in
//! `tests/oidc-provider/`, started per test with node on a free loopback port, its dev
//! login and consent forms driven over HTTP. Without node or its modules the tests pass
//! without running, except under `CI=true`, where that is a failure.

use crate::backend_tests;
use crate::helpers::*;
use crate::mfa::{code_now, enable_totp, set_settings};
use gatehouse_core::sso::config::{FieldMap, ProviderConfig, ProviderKind};
use gatehouse_domain::Secret;
use reqwest::{Client, Url};
use serde_json::{Value, json};
use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const CLIENT_ID: &str = "gatehouse";
const CLIENT_SECRET: &str = "gatehouse-test-client-secret-0123456789";

/// A running test provider; stopped when dropped (its stdin closes, and it is killed).
pub struct Idp {
    pub issuer: String,
    _child: tokio::process::Child,
}

fn provider_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// Starts the provider, or `None` (skip) when node or its modules are missing outside CI.
pub async fn start_idp() -> Option<Idp> {
    let dir = provider_dir();
    let ready = dir.join("node_modules/oidc-provider").is_dir();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !ready {
        assert!(
            !ci,
            "CI=true but {}/node_modules is missing: scripts/test installs it (npm ci)",
            dir.display()
        );
        let _ = writeln!(
            std::io::stderr(),
            "note: the test OIDC provider is not installed (run scripts/test): SSO tests pass without running"
        );
        return None;
    }
    let mut child = match tokio::process::Command::new("node")
        .arg("start.js")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            assert!(!ci, "CI=true but node cannot be started: {e}");
            return None;
        }
    };
    let stdout = child.stdout.take().expect("provider stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the OIDC provider starts within 30 s")
        .expect("provider output")
        .expect("provider prints its issuer");
    let issuer = line
        .strip_prefix("ISSUER ")
        .expect("ISSUER line")
        .to_string();
    // Keep reading: a closed pipe would make the provider's next write fail.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(Idp {
        issuer,
        _child: child,
    })
}

/// A loopback port nothing listens on right now (Gatehouse binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `test` provider for `issuer`, as `[[sso.providers]]` would give it.
pub fn provider(issuer: &str) -> ProviderConfig {
    ProviderConfig {
        id: "test".into(),
        name: "Test IdP".into(),
        kind: ProviderKind::Oidc,
        issuer: Some(issuer.into()),
        authorize_url: None,
        token_url: None,
        userinfo_url: None,
        fields: FieldMap::default(),
        client_id: CLIENT_ID.into(),
        client_secret: Some(Secret::new(CLIENT_SECRET)),
        scopes: Vec::new(),
        auto_register: true,
        allowed_email_domains: Vec::new(),
        link_by_verified_email: false,
        enabled: true,
        trust_upstream_mfa: false,
        pkce: true,
        redirect_uris: Vec::new(),
    }
}

/// Gatehouse on a known port (the provider must allow its callback) with the `test`
/// provider, adjusted by `tweak`.
async fn app_with(b: Backend, idp: &Idp, tweak: impl FnOnce(&mut ProviderConfig)) -> TestApp {
    let mut p = provider(&idp.issuer);
    tweak(&mut p);
    let port = free_port();
    spawn_app_with(b, move |c| {
        c.bind = format!("127.0.0.1:{port}");
        c.public_url = format!("http://127.0.0.1:{port}");
        c.sso.providers = vec![p];
        c.sso.timeout_seconds = 5;
    })
    .await
}

/// The query parameters of `url`.
fn query(url: &str) -> std::collections::HashMap<String, String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn location(res: &reqwest::Response, base: &Url) -> String {
    let loc = res
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("a redirect from {}", res.url()))
        .to_str()
        .unwrap();
    base.join(loc).unwrap().to_string()
}

/// `GET …/start` from `client`: the provider URL it redirects to.
async fn start(app: &TestApp, client: &Client, extra: &str) -> String {
    let res = client
        .get(app.url(&format!("/api/v1/auth/sso/test/start{extra}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 302, "start: {}", res.status());
    location(&res, &Url::parse(&app.base).unwrap())
}

/// Drives the provider's dev login and consent as `account`, from the authorization URL
/// to the redirect back to the client: returns that callback URL (not yet visited).
async fn at_provider(client: &Client, authorize: &str, account: &str, stop_at: &str) -> String {
    let mut url = authorize.to_string();
    for _ in 0..12 {
        if url.starts_with(stop_at) {
            return url;
        }
        let here = Url::parse(&url).unwrap();
        let res = client.get(&url).send().await.unwrap();
        if res.status().is_redirection() {
            url = location(&res, &here);
            continue;
        }
        assert_eq!(res.status().as_u16(), 200, "provider page {url}");
        let page = res.text().await.unwrap();
        let form = if page.contains(r#"name="prompt" value="login""#) {
            vec![("prompt", "login"), ("login", account), ("password", "any")]
        } else if page.contains(r#"name="prompt" value="consent""#) {
            vec![("prompt", "consent")]
        } else {
            panic!("unexpected provider page: {page}");
        };
        let res = client.post(&url).form(&form).send().await.unwrap();
        assert!(res.status().is_redirection(), "provider form {url}");
        url = location(&res, &here);
    }
    panic!("the provider never sent the browser back");
}

/// Like [`at_provider`], but the user cancels on the provider's login page.
async fn cancel_at_provider(client: &Client, authorize: &str, stop_at: &str) -> String {
    let here = Url::parse(authorize).unwrap();
    let res = client.get(authorize).send().await.unwrap();
    let interaction = location(&res, &here);
    let res = client
        .get(format!("{interaction}/abort"))
        .send()
        .await
        .unwrap();
    let mut url = location(&res, &Url::parse(&interaction).unwrap());
    for _ in 0..6 {
        if url.starts_with(stop_at) {
            return url;
        }
        let res = client.get(&url).send().await.unwrap();
        url = location(&res, &Url::parse(&url).unwrap());
    }
    panic!("the provider never sent the browser back");
}

/// Follows the whole browser flow for `account` and returns the callback's answer.
async fn sign_in(app: &TestApp, client: &Client, account: &str) -> reqwest::Response {
    let authorize = start(app, client, "?next=/account").await;
    let callback = at_provider(client, &authorize, account, &app.base).await;
    client.get(&callback).send().await.unwrap()
}

/// The `data-code` of a rendered error page, with its status.
async fn page_code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body = res.text().await.unwrap();
    let code = body
        .split(r#"data-code=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
        .to_string();
    (status, code)
}

/// The signed-in account behind `client`'s session cookie.
async fn me(app: &TestApp, client: &Client) -> Value {
    let r = Reply::of(client.get(app.url("/api/v1/auth/me")).send().await.unwrap()).await;
    r.expect(200, "OK").clone()
}

async fn first_sign_in_creates_the_account_and_the_second_resolves_to_it(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    let app = app_with(b, &idp, |_| {}).await;
    let client = browser();
    // The authorization request carries PKCE (S256), state and nonce.
    let authorize = start(&app, &client, "?next=/account").await;
    let q = query(&authorize);
    assert!(authorize.starts_with(&idp.issuer), "{authorize}");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43, "a SHA-256 challenge");
    assert!(q["state"].len() >= 32 && q["nonce"].len() >= 32, "{q:?}");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    let callback = at_provider(&client, &authorize, "alice", &app.base).await;
    assert!(
        query(&callback).contains_key("iss"),
        "RFC 9207 iss is sent back"
    );
    let res = client.get(&callback).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/account");
    let page = browser()
        .get(app.url("/auth/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"action="/auth/login""#),
        "the password form stays"
    );
    assert!(
        page.contains(r#"href="/api/v1/auth/sso/test/start""#),
        "{page}"
    );
    let first = me(&app, &client).await;
    assert_eq!(first["account"]["email"], "alice@example.com");
    assert_eq!(first["account"]["displayName"], "Alice Upstream");
    let id = first["account"]["id"].as_str().unwrap().to_string();
    // Created without a password.
    let account_id = id.parse().unwrap();
    assert_eq!(app.svc.store.password_hash(account_id).await.unwrap(), None);
    // A second sign-in, from another browser, resolves to the same account.
    let other = browser();
    let res = sign_in(&app, &other, "alice").await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(me(&app, &other).await["account"]["id"], id.as_str());
    let listed = Reply::of(
        other
            .get(app.url("/api/v1/auth/identities"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let items = listed.expect(200, "OK")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["provider"], "test");
    assert_eq!(items[0]["subject"], "alice");
    assert_eq!(items[0]["createdAccount"], true);
    assert_eq!(items[0]["providerName"], "Test IdP");
    // Registered once, signed in twice; the audit says so.
    let admin = app.admin_token().await;
    let audit = app
        .get_auth("/api/v1/admin/audit-events?action=sso.register", &admin)
        .await;
    assert_eq!(audit.expect(200, "OK")["total"], 1);
    let audit = app
        .get_auth(
            "/api/v1/admin/audit-events?action=sso.login&outcome=success",
            &admin,
        )
        .await;
    assert_eq!(audit.expect(200, "OK")["total"], 2);
}

async fn tampered_replayed_expired_and_other_browser_states_are_refused(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    let app = app_with(b.clone(), &idp, |_| {}).await;
    let client = browser();
    let refused = |res: reqwest::Response| async move {
        assert_eq!(page_code(res).await, (400, "SSO_STATE_INVALID".to_string()));
    };
    // Tampered: the state changed on the way back.
    let authorize = start(&app, &client, "").await;
    let callback = at_provider(&client, &authorize, "alice", &app.base).await;
    let state = query(&callback)["state"].clone();
    let tampered = callback.replace(&state, &format!("{state}x"));
    refused(client.get(&tampered).send().await.unwrap()).await;
    // Another browser brings back a genuine code and state: refused, and the state is spent.
    let authorize = start(&app, &client, "").await;
    let callback = at_provider(&client, &authorize, "alice", &app.base).await;
    let thief = browser();
    refused(thief.get(&callback).send().await.unwrap()).await;
    refused(client.get(&callback).send().await.unwrap()).await;
    // Replayed: the first use signs in, the second is refused.
    let authorize = start(&app, &client, "").await;
    let callback = at_provider(&client, &authorize, "alice", &app.base).await;
    assert_eq!(
        client
            .get(&callback)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        303
    );
    refused(client.get(&callback).send().await.unwrap()).await;
    // Expired: the flow lives ten minutes.
    let fresh = browser();
    let authorize = start(&app, &fresh, "").await;
    let callback = at_provider(&fresh, &authorize, "alice", &app.base).await;
    let key = format!(
        "sso:{}",
        gatehouse_core::tokens::digest_hex(&query(&callback)["state"])
    );
    let ttl = app
        .svc
        .cache
        .ttl(&key)
        .await
        .unwrap()
        .expect("the flow expires");
    assert!(
        ttl <= Duration::from_secs(600) && ttl > Duration::from_secs(590),
        "{ttl:?}"
    );
    if matches!(b, Backend::Sqlite) {
        // The memory cache runs on the server's clock.
        app.advance(601);
        refused(fresh.get(&callback).send().await.unwrap()).await;
    }
    // The user cancels at the provider: its error is not shown, and the state is spent.
    // (A browser with no session at the provider yet, so it shows its login page.)
    let quitter = browser();
    let authorize = start(&app, &quitter, "").await;
    let callback = cancel_at_provider(&quitter, &authorize, &app.base).await;
    let q = query(&callback);
    assert_eq!(q["error"], "access_denied");
    let res = quitter.get(&callback).send().await.unwrap();
    let (status, body) = (res.status().as_u16(), res.text().await.unwrap());
    assert_eq!(status, 403);
    assert!(
        body.contains(r#"data-code="SSO_PROVIDER_DENIED""#),
        "{body}"
    );
    assert!(
        !body.contains("End-User aborted"),
        "the provider's own message is not shown"
    );
    let forged = app.url(&format!(
        "/api/v1/auth/sso/test/callback?code=forged&state={}",
        q["state"]
    ));
    refused(quitter.get(&forged).send().await.unwrap()).await;
    // The issuer named in the callback must be the provider's (RFC 9207).
    let authorize = start(&app, &fresh, "").await;
    let callback = at_provider(&fresh, &authorize, "alice", &app.base).await;
    let mixed = callback.replace(
        &format!("iss={}", url_escape(&idp.issuer)),
        "iss=https%3A%2F%2Fevil.example.com",
    );
    assert_ne!(mixed, callback);
    refused(fresh.get(&mixed).send().await.unwrap()).await;
    // This provider promises `iss` (discovery says so): a callback without it is refused.
    let authorize = start(&app, &fresh, "").await;
    let callback = at_provider(&fresh, &authorize, "alice", &app.base).await;
    let stripped = callback.replace(&format!("&iss={}", url_escape(&idp.issuer)), "");
    assert_ne!(stripped, callback);
    refused(fresh.get(&stripped).send().await.unwrap()).await;
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn an_unverified_upstream_email_never_takes_over_an_account(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    // Even with linking by e-mail on.
    let app = app_with(b, &idp, |p| p.link_by_verified_email = true).await;
    let victim = app.user("victim@example.com").await;
    let client = browser();
    let res = sign_in(&app, &client, "mallory").await;
    assert_eq!(page_code(res).await, (409, "SSO_LINK_REQUIRED".to_string()));
    assert!(
        app.svc
            .store
            .identities_of(victim.id)
            .await
            .unwrap()
            .is_empty()
    );
    let r = Reply::of(client.get(app.url("/api/v1/auth/me")).send().await.unwrap()).await;
    assert_eq!(r.status.as_u16(), 401, "no session was made");
    // The owner's password still works and the account is unchanged.
    app.login("victim@example.com", PASSWORD)
        .await
        .expect(200, "AUTH_LOGIN_SUCCESS");
}

async fn a_verified_opted_in_email_links_but_only_to_a_verified_local_account(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    // Off by default: a verified e-mail alone does not link.
    let app = app_with(b.clone(), &idp, |_| {}).await;
    app.user("victim@example.com").await;
    let res = sign_in(&app, &browser(), "victim").await;
    assert_eq!(page_code(res).await, (409, "SSO_LINK_REQUIRED".to_string()));
    drop(app);
    // Opted in: the admin-created (verified) account is linked.
    let app = app_with(b.clone(), &idp, |p| p.link_by_verified_email = true).await;
    let local = app.user("victim@example.com").await;
    let client = browser();
    let res = sign_in(&app, &client, "victim").await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(
        me(&app, &client).await["account"]["id"],
        local.id.to_string()
    );
    let linked = app.svc.store.identities_of(local.id).await.unwrap();
    assert_eq!(linked.len(), 1);
    assert!(!linked[0].created_account);
    drop(app);
    // A self-registered, unconfirmed account is not linked, even opted in.
    let app = app_with(b, &idp, |p| p.link_by_verified_email = true).await;
    let admin = app.admin_token().await;
    set_settings(&app, &admin, json!({ "allowRegistration": true }))
        .await
        .expect(200, "OK");
    let csrf = app.csrf_for(&app.client).await;
    let r = Reply::of(
        app.client
            .post(app.url("/api/v1/auth/register"))
            .header("X-CSRFToken", csrf)
            .json(&json!({ "email": "victim@example.com", "password": PASSWORD }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(r.status.is_success(), "register: {}", r.body);
    let res = sign_in(&app, &browser(), "victim").await;
    assert_eq!(page_code(res).await, (409, "SSO_LINK_REQUIRED".to_string()));
}

async fn the_domain_filter_and_auto_register_off_refuse_new_users(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    let app = app_with(b.clone(), &idp, |p| {
        p.allowed_email_domains = vec!["example.com".into()];
    })
    .await;
    let res = sign_in(&app, &browser(), "carol").await;
    assert_eq!(
        page_code(res).await,
        (403, "SSO_IDENTIFIER_REJECTED".to_string())
    );
    assert_eq!(
        sign_in(&app, &browser(), "alice").await.status().as_u16(),
        303
    );
    drop(app);
    let app = app_with(b, &idp, |p| p.auto_register = false).await;
    let res = sign_in(&app, &browser(), "alice").await;
    assert_eq!(
        page_code(res).await,
        (403, "REGISTRATION_DISABLED".to_string())
    );
    assert!(
        app.svc
            .store
            .account_by_email("alice@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

async fn mfa_is_still_asked_after_sso_unless_the_provider_is_trusted_for_it(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    let app = app_with(b.clone(), &idp, |p| p.link_by_verified_email = true).await;
    // Alice's local account has TOTP.
    let (secret, _) = crate::mfa::enrolled(&app, "alice@example.com").await;
    let client = browser();
    let res = sign_in(&app, &client, "alice").await;
    assert_eq!(res.status().as_u16(), 200, "the TOTP step page");
    let page = res.text().await.unwrap();
    let challenge = page
        .split(r#"name="challengeToken" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a TOTP step form")
        .to_string();
    let r = Reply::of(client.get(app.url("/api/v1/auth/me")).send().await.unwrap()).await;
    assert_eq!(
        r.status.as_u16(),
        401,
        "no session before the second factor"
    );
    // The step completes with a code through the page form, as after a password.
    let csrf = page
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let code = code_now(&app, &secret);
    let res = client
        .post(app.url("/auth/login/totp"))
        .form(&[
            ("challengeToken", challenge.as_str()),
            ("code", code.as_str()),
            ("csrf_token", csrf.as_str()),
            ("next", "/account"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(
        me(&app, &client).await["account"]["email"],
        "alice@example.com"
    );
    drop(app);
    // Trusted upstream MFA: Dave's id_token says amr=mfa, so no local code is asked.
    let app = app_with(b, &idp, |p| {
        p.link_by_verified_email = true;
        p.trust_upstream_mfa = true;
    })
    .await;
    crate::mfa::enrolled(&app, "dave@example.com").await;
    let client = browser();
    let res = sign_in(&app, &client, "dave").await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(
        me(&app, &client).await["account"]["email"],
        "dave@example.com"
    );
    // Alice's token has no amr: still asked.
    let (_, _) = enable_totp_for_new(&app, "alice@example.com").await;
    let res = sign_in(&app, &browser(), "alice").await;
    assert_eq!(res.status().as_u16(), 200);
}

async fn enable_totp_for_new(app: &TestApp, email: &str) -> (String, Vec<String>) {
    app.user(email).await;
    enable_totp(app, email).await
}

async fn password_sign_in_off_leaves_sso_working(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    let app = app_with(b, &idp, |p| p.link_by_verified_email = true).await;
    app.user("bob@example.com").await;
    let admin = app.admin_token().await;
    set_settings(&app, &admin, json!({ "allowPasswordLogin": false }))
        .await
        .expect(200, "OK");
    app.login("bob@example.com", PASSWORD)
        .await
        .expect(403, "PASSWORD_LOGIN_DISABLED");
    let client = browser();
    assert_eq!(sign_in(&app, &client, "bob").await.status().as_u16(), 303);
    assert_eq!(
        me(&app, &client).await["account"]["email"],
        "bob@example.com"
    );
    // The sign-in page still shows the provider's button, keeping `next`.
    let page = browser()
        .get(app.url("/auth/login?next=/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"href="/api/v1/auth/sso/test/start?next=/account""#),
        "{page}"
    );
    assert!(page.contains("Sign in with Test IdP"));
    assert!(
        !page.contains(r#"action="/auth/login""#),
        "password sign-in is off: no password form"
    );
    let zh = browser()
        .get(app.url("/auth/login"))
        .header("accept-language", "zh-CN")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(zh.contains("使用 Test IdP 登录"), "{zh}");
}

/// What a SPA does: its own PKCE pair, state and nonce, straight at the provider.
async fn spa_code(
    client: &Client,
    idp: &Idp,
    redirect: &str,
    verifier: &str,
    nonce: &str,
) -> String {
    use base64::Engine;
    use sha2::Digest;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let authorize = format!(
        "{}/auth?client_id={CLIENT_ID}&response_type=code&scope=openid%20email%20profile\
         &redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256\
         &state=spa-state-0123456789&nonce={nonce}",
        idp.issuer,
        url_escape(redirect)
    );
    let back = at_provider(client, &authorize, "alice", redirect).await;
    query(&back)["code"].clone()
}

async fn the_spa_exchange_answers_like_the_login_api(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/spa/callback");
    let allowed = redirect.clone();
    let app = app_with(b, &idp, |p| p.redirect_uris = vec![allowed]).await;
    let client = browser();
    let verifier = "spa-verifier-0123456789-0123456789-0123456789";
    let nonce = "spa-nonce-0123456789";
    let exchange = |body: Value| {
        let client = client.clone();
        let app = &app;
        async move {
            let csrf = app.csrf_for(&client).await;
            Reply::of(
                client
                    .post(app.url("/api/v1/auth/sso/test/exchange"))
                    .header("X-CSRFToken", csrf)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    // A redirect URI the provider config does not list is refused before any upstream call.
    exchange(json!({ "code": "x", "codeVerifier": verifier, "redirectUri": "https://evil.example.com/cb" }))
        .await
        .expect(400, "VALIDATION_ERROR");
    // The wrong verifier: the provider refuses the code.
    let code = spa_code(&client, &idp, &redirect, verifier, nonce).await;
    exchange(json!({ "code": code, "codeVerifier": format!("{verifier}-wrong"), "redirectUri": redirect }))
        .await
        .expect(502, "SSO_PROVIDER_ERROR");
    // A wrong nonce: the id_token is refused.
    let code = spa_code(&client, &idp, &redirect, verifier, nonce).await;
    exchange(json!({ "code": code, "codeVerifier": verifier, "redirectUri": redirect, "nonce": "other-nonce" }))
        .await
        .expect(502, "SSO_PROVIDER_ERROR");
    // The right one: tokens, as from POST /api/v1/auth/login.
    let code = spa_code(&client, &idp, &redirect, verifier, nonce).await;
    let r = exchange(
        json!({ "code": code, "codeVerifier": verifier, "redirectUri": redirect, "nonce": nonce }),
    )
    .await;
    let data = r.expect(200, "AUTH_LOGIN_SUCCESS");
    assert_eq!(data["account"]["email"], "alice@example.com");
    let access = data["auth"]["accessToken"].as_str().unwrap();
    assert!(data["auth"]["refreshToken"].as_str().is_some());
    app.get_auth("/api/v1/auth/me", access)
        .await
        .expect(200, "OK");
    // Without CSRF: refused like the API login.
    let r = Reply::of(
        browser()
            .post(app.url("/api/v1/auth/sso/test/exchange"))
            .json(&json!({ "code": "x", "codeVerifier": verifier, "redirectUri": redirect }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.body);
}

/// Signs `email` in through the page form, so `client` holds a web session.
async fn page_session(app: &TestApp, client: &Client, email: &str) {
    let page = client
        .get(app.url("/auth/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let res = client
        .post(app.url("/auth/login"))
        .form(&[
            ("identifier", email),
            ("password", PASSWORD),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
}

async fn a_signed_in_user_links_and_unlinks_a_provider(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    let app = app_with(b, &idp, |_| {}).await;
    let local = app.user("ann@example.com").await;
    let client = browser();
    page_session(&app, &client, "ann@example.com").await;
    // Link Bob's upstream identity (another e-mail) to Ann's account.
    let authorize = start(&app, &client, "?mode=link").await;
    let callback = at_provider(&client, &authorize, "bob", &app.base).await;
    let res = client.get(&callback).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let items = Reply::of(
        client
            .get(app.url("/api/v1/auth/identities"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "OK")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["subject"], "bob");
    assert_eq!(items[0]["accountId"], local.id.to_string());
    // The account page lists it.
    let page = client
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!(
        r#"data-identity="{}""#,
        items[0]["id"].as_str().unwrap()
    )));
    assert!(page.contains("Test IdP — bob@example.com"), "{page}");
    // The upstream sign-in now resolves to Ann.
    let other = browser();
    assert_eq!(sign_in(&app, &other, "bob").await.status().as_u16(), 303);
    assert_eq!(
        me(&app, &other).await["account"]["id"],
        local.id.to_string()
    );
    // Ann has a password, so she may unlink it.
    let id = items[0]["id"].as_str().unwrap();
    let (access, _) = app.tokens("ann@example.com").await;
    let del = Reply::of(
        browser()
            .delete(app.url(&format!("/api/v1/auth/identities/{id}")))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    del.expect(200, "OK");
    assert!(
        app.svc
            .store
            .identities_of(local.id)
            .await
            .unwrap()
            .is_empty()
    );
    // Linked again, and unlinked from the account page's form (no JavaScript).
    let authorize = start(&app, &client, "?mode=link").await;
    let callback = at_provider(&client, &authorize, "bob", &app.base).await;
    assert_eq!(
        client
            .get(&callback)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        303
    );
    let page = client
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let action = page
        .split(r#"action="/account/identities/"#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("an unlink form")
        .to_string();
    let csrf = page
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let res = client
        .post(app.url(&format!("/account/identities/{action}")))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/account?notice=unlinked");
    assert!(
        app.svc
            .store
            .identities_of(local.id)
            .await
            .unwrap()
            .is_empty()
    );
    // An SSO-only account may not drop its only way in.
    let sso_only = browser();
    assert_eq!(
        sign_in(&app, &sso_only, "alice").await.status().as_u16(),
        303
    );
    let items = Reply::of(
        sso_only
            .get(app.url("/api/v1/auth/identities"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "OK")["items"]
        .clone();
    let id = items[0]["id"].as_str().unwrap();
    let csrf = app.csrf_for(&sso_only).await;
    let del = Reply::of(
        sso_only
            .delete(app.url(&format!("/api/v1/auth/identities/{id}")))
            .header("X-CSRFToken", csrf)
            .send()
            .await
            .unwrap(),
    )
    .await;
    del.expect(409, "SSO_LAST_SIGN_IN_METHOD");
    // Linking needs a fresh session; without one it is refused.
    app.advance(11 * 60);
    let res = client
        .get(app.url("/api/v1/auth/sso/test/start?mode=link"))
        .send()
        .await
        .unwrap();
    let (status, code) = page_code(res).await;
    assert_eq!(code, "SSO_REAUTHENTICATION_REQUIRED");
    assert_eq!(status, 401);
    let res = browser()
        .get(app.url("/api/v1/auth/sso/test/start?mode=link"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        page_code(res).await,
        (401, "AUTHENTICATION_REQUIRED".to_string())
    );
}

async fn a_provider_that_does_not_answer_is_a_502_in_bounded_time(b: Backend) {
    // A listener that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", silent.local_addr().unwrap());
    let port = free_port();
    let app = spawn_app_with(b, move |c| {
        c.bind = format!("127.0.0.1:{port}");
        c.public_url = format!("http://127.0.0.1:{port}");
        c.sso.providers = vec![provider(&issuer)];
        c.sso.timeout_seconds = 1;
    })
    .await;
    // Start-up did not wait for it, and other routes answer.
    app.login("nobody@example.com", PASSWORD)
        .await
        .expect(401, "INVALID_CREDENTIALS");
    let began = Instant::now();
    let res = browser()
        .get(app.url("/api/v1/auth/sso/test/start"))
        .send()
        .await
        .unwrap();
    let took = began.elapsed();
    assert_eq!(
        page_code(res).await,
        (502, "SSO_PROVIDER_ERROR".to_string())
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    drop(silent);
    // A provider nobody listens on fails the same way.
    let listed = Reply::of(
        browser()
            .get(app.url("/api/v1/auth/sso/providers"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        listed.expect(200, "OK")["providers"],
        json!([{ "id": "test", "name": "Test IdP" }])
    );
}

async fn a_full_sso_flow_leaves_no_code_token_or_secret_behind(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    let app = app_with(b.clone(), &idp, |_| {}).await;
    let client = browser();
    let authorize = start(&app, &client, "").await;
    let callback = at_provider(&client, &authorize, "alice", &app.base).await;
    let q = query(&callback);
    let (code, state) = (q["code"].clone(), q["state"].clone());
    assert_eq!(
        client
            .get(&callback)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        303
    );
    let admin = app.admin_token().await;
    let audit = app
        .get_auth("/api/v1/admin/audit-events?pageSize=100", &admin)
        .await;
    let audit = audit.expect(200, "OK").to_string();
    let nonce = query(&authorize)["nonce"].clone();
    for secret in [code.as_str(), state.as_str(), CLIENT_SECRET, nonce.as_str()] {
        assert!(!audit.contains(secret), "audit holds {secret}");
    }
    if matches!(b, Backend::Sqlite) {
        let path = app
            .config
            .database
            .url
            .trim_start_matches("sqlite:")
            .to_string();
        let mut bytes = std::fs::read(&path).unwrap();
        if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
            bytes.extend(wal);
        }
        let db = String::from_utf8_lossy(&bytes);
        for secret in [code.as_str(), state.as_str(), CLIENT_SECRET] {
            assert!(!db.contains(secret), "the database holds {secret}");
        }
    }
}

async fn stored_providers_are_managed_by_admins_and_keep_their_secret_sealed(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    let port = free_port();
    let app = spawn_app_with(b.clone(), move |c| {
        c.bind = format!("127.0.0.1:{port}");
        c.public_url = format!("http://127.0.0.1:{port}");
    })
    .await;
    let admin = app.admin_token().await;
    let mut body = serde_json::to_value(provider(&idp.issuer)).unwrap();
    body["id"] = json!("stored");
    body["client_secret"] = json!(CLIENT_SECRET);
    let r = app
        .post_auth("/api/v1/admin/sso-providers", &admin, body.clone())
        .await;
    let created = r.expect(201, "OK").to_string();
    assert!(!created.contains(CLIENT_SECRET), "{created}");
    assert!(created.contains(r#""has_client_secret":true"#), "{created}");
    app.post_auth("/api/v1/admin/sso-providers", &admin, body.clone())
        .await
        .expect(409, "CONFLICT");
    let mut bad = body.clone();
    bad["id"] = json!("Bad Id");
    app.post_auth("/api/v1/admin/sso-providers", &admin, bad)
        .await
        .expect(400, "VALIDATION_ERROR");
    // Not for ordinary users.
    app.user("user@example.com").await;
    let (user, _) = app.tokens("user@example.com").await;
    app.get_auth("/api/v1/admin/sso-providers", &user)
        .await
        .expect(403, "PERMISSION_REQUIRED");
    let listed = app.get_auth("/api/v1/admin/sso-providers", &admin).await;
    assert!(!listed.body.to_string().contains(CLIENT_SECRET));
    // It signs people in (its secret was unsealed for the token call).
    let client = browser();
    let res = client
        .get(app.url("/api/v1/auth/sso/stored/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 302);
    let authorize = location(&res, &Url::parse(&app.base).unwrap());
    let callback = at_provider(&client, &authorize, "alice", &app.base).await;
    assert_eq!(
        client
            .get(&callback)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        303
    );
    // Disabled through PATCH: gone from the buttons and the flow.
    let patched = Reply::of(
        browser()
            .patch(app.url("/api/v1/admin/sso-providers/stored"))
            .bearer_auth(&admin)
            .json(&json!({ "enabled": false }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(patched.expect(200, "OK")["enabled"], false);
    let res = browser()
        .get(app.url("/api/v1/auth/sso/stored/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(page_code(res).await, (404, "NOT_FOUND".to_string()));
    if matches!(b, Backend::Sqlite) {
        let path = app
            .config
            .database
            .url
            .trim_start_matches("sqlite:")
            .to_string();
        let mut bytes = std::fs::read(&path).unwrap();
        if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
            bytes.extend(wal);
        }
        assert!(!String::from_utf8_lossy(&bytes).contains(CLIENT_SECRET));
    }
    let del = Reply::of(
        browser()
            .delete(app.url("/api/v1/admin/sso-providers/stored"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    del.expect(200, "OK");
    app.get_auth("/api/v1/admin/sso-providers/stored", &admin)
        .await
        .expect(404, "NOT_FOUND");
}

async fn a_plain_oauth2_provider_maps_its_userinfo_fields(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    // The same provider, spoken to as plain OAuth2: explicit endpoints, userinfo fields.
    let issuer = idp.issuer.clone();
    let app = app_with(b, &idp, move |p| {
        p.kind = ProviderKind::Oauth2;
        p.issuer = None;
        p.authorize_url = Some(format!("{issuer}/auth"));
        p.token_url = Some(format!("{issuer}/token"));
        p.userinfo_url = Some(format!("{issuer}/me"));
        p.scopes = vec!["openid".into(), "email".into(), "profile".into()];
        p.fields = FieldMap {
            subject: "sub".into(),
            email: "email".into(),
            email_verified: "email_verified".into(),
            name: "name".into(),
        };
        p.link_by_verified_email = true;
    })
    .await;
    let local = app.user("bob@example.com").await;
    let client = browser();
    let authorize = start(&app, &client, "").await;
    let q = query(&authorize);
    assert!(
        authorize.starts_with(&format!("{}/auth?", idp.issuer)),
        "{authorize}"
    );
    assert_eq!(q["code_challenge_method"], "S256", "PKCE unless turned off");
    let callback = at_provider(&client, &authorize, "bob", &app.base).await;
    assert_eq!(
        client
            .get(&callback)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        303
    );
    // Verified upstream and locally, opted in: linked to the existing account.
    assert_eq!(
        me(&app, &client).await["account"]["id"],
        local.id.to_string()
    );
    // Mallory's unverified e-mail, through userinfo too, never links.
    app.user("victim@example.com").await;
    let res = sign_in(&app, &browser(), "mallory").await;
    assert_eq!(page_code(res).await, (409, "SSO_LINK_REQUIRED".to_string()));
}

async fn a_locked_or_disabled_local_account_is_not_signed_in_by_sso(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    let app = app_with(b, &idp, |p| p.link_by_verified_email = true).await;
    let bob = app.user("bob@example.com").await;
    // Wrong passwords lock the local account; SSO does not get around the lock.
    for _ in 0..app.config.lockout.max_failures {
        app.login("bob@example.com", "wrong-password-1A").await;
    }
    let res = sign_in(&app, &browser(), "bob").await;
    assert_eq!(page_code(res).await, (423, "ACCOUNT_LOCKED".to_string()));
    // Disabled: refused too.
    let alice = app.user("alice@example.com").await;
    let admin = app.admin_token().await;
    let r = app
        .post_auth(
            &format!("/api/v1/admin/users/{}/disable", alice.id),
            &admin,
            json!({}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let res = sign_in(&app, &browser(), "alice").await;
    assert_eq!(page_code(res).await, (403, "ACCOUNT_DISABLED".to_string()));
    assert_eq!(app.svc.store.identities_of(bob.id).await.unwrap().len(), 1);
    // Failures are audited with the code as the reason.
    let audit = app
        .get_auth(
            "/api/v1/admin/audit-events?action=sso.login&outcome=failure",
            &admin,
        )
        .await;
    let audit = audit.expect(200, "OK").to_string();
    assert!(
        audit.contains("ACCOUNT_LOCKED") && audit.contains("ACCOUNT_DISABLED"),
        "{audit}"
    );
}

/// A workspace `slug` with branches `codes`, and `account` a member of all of them.
async fn member_of_branches(app: &TestApp, admin: &str, account: &str, slug: &str, codes: &[&str]) {
    let r = app
        .post_auth(
            "/api/v1/admin/workspaces",
            admin,
            json!({ "slug": slug, "name": slug }),
        )
        .await;
    let ws = r.expect(201, "OK")["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for c in codes {
        let r = app
            .post_auth(
                &format!("/api/v1/admin/workspaces/{ws}/branches"),
                admin,
                json!({ "code": c, "name": c }),
            )
            .await;
        ids.push(r.expect(201, "OK")["id"].as_str().unwrap().to_string());
    }
    app.post_auth(
        &format!("/api/v1/admin/workspaces/{ws}/members"),
        admin,
        json!({ "accountId": account, "branchIds": ids, "roles": [] }),
    )
    .await
    .expect(201, "OK");
}

async fn tenancy_still_decides_the_context_after_sso(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/spa/callback");
    let allowed = redirect.clone();
    let app = app_with(b, &idp, |p| {
        p.redirect_uris = vec![allowed];
        p.link_by_verified_email = true;
    })
    .await;
    let admin = app.admin_token().await;
    let alice = app.user("alice@example.com").await;
    member_of_branches(
        &app,
        &admin,
        &alice.id.to_string(),
        "acme",
        &["north", "south"],
    )
    .await;
    let client = browser();
    let verifier = "tenancy-verifier-0123456789-0123456789-0123";
    let code = spa_code(&client, &idp, &redirect, verifier, "n-tenancy-0123456789").await;
    let csrf = app.csrf_for(&client).await;
    let r = Reply::of(
        client
            .post(app.url("/api/v1/auth/sso/test/exchange"))
            .header("X-CSRFToken", csrf)
            .json(&json!({ "code": code, "codeVerifier": verifier, "redirectUri": redirect }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let d = r.expect(200, "AUTH_LOGIN_SUCCESS");
    // Several branches: the same branch choice as after a password.
    assert_eq!(
        d["nextAction"],
        json!({ "type": "select_branch", "redirectTo": "/select-branch" })
    );
    assert_eq!(d["branches"].as_array().unwrap().len(), 2);
    assert!(d["auth"].get("accessToken").is_none());
}

/// `gatehouse config check` validates `[[sso.providers]]`, naming the bad key, and never
/// prints a client secret.
#[test]
fn config_check_validates_sso_providers_and_hides_their_secrets() {
    let dir = std::env::temp_dir().join(format!("gh-sso-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let check = |toml: &str| {
        std::fs::write(dir.join("gatehouse.toml"), toml).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["config", "check"])
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let good = r#"
[[sso.providers]]
id = "keycloak"
name = "Company"
kind = "oidc"
issuer = "https://sso.example.com/realms/corp"
client_id = "gatehouse"
client_secret = "very-secret-client-value"

[[sso.providers]]
id = "github"
name = "GitHub"
kind = "oauth2"
authorize_url = "https://github.com/login/oauth/authorize"
token_url = "https://github.com/login/oauth/access_token"
userinfo_url = "https://api.github.com/user"
client_id = "x"
fields = { subject = "id", email = "email", email_verified = "", name = "name" }
"#;
    let out = check(good);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("configuration OK"));
    assert!(!stdout.contains("very-secret-client-value"), "{stdout}");
    for (bad, key) in [
        (
            good.replace("https://sso.example.com", "http://sso.example.com"),
            "sso.providers[0].issuer",
        ),
        (
            good.replace("userinfo_url = \"https://api.github.com/user\"\n", ""),
            "sso.providers[1].userinfo_url",
        ),
        (
            good.replace("id = \"github\"", "id = \"keycloak\""),
            "sso.providers[1].id",
        ),
    ] {
        let out = check(&bad);
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{key}: {err}");
        assert!(!err.contains("very-secret-client-value"), "{err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A real `gatehouse serve` process, debug logs on, through a whole SSO sign-in: its logs
/// hold no authorization code, state, nonce, client secret or session token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sso_flow_leaves_nothing_secret_in_the_logs() {
    let Some(idp) = start_idp().await else { return };
    let dir = std::env::temp_dir().join(format!("gh-sso-logs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = format!(
        r#"bind = "127.0.0.1:{port}"
public_url = "{base}"
[database]
url = "sqlite:{db}"
[log]
level = "debug"
format = "json"
[password]
argon2_memory_kib = 256
argon2_iterations = 1
insecure_fast_hashing = true
[[sso.providers]]
id = "test"
name = "Test IdP"
kind = "oidc"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
"#,
        db = dir.join("gatehouse.db").display(),
        issuer = idp.issuer,
    );
    std::fs::write(dir.join("gatehouse.toml"), config).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("serve")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let sink = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = out.next_line().await {
            if line.contains("gatehouse listening")
                && let Some(tx) = ready_tx.take()
            {
                let _ = tx.send(());
            }
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = err.next_line().await {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    tokio::time::timeout(Duration::from_secs(60), ready_rx)
        .await
        .expect("gatehouse starts")
        .unwrap();
    let client = browser();
    let res = client
        .get(format!("{base}/api/v1/auth/sso/test/start?next=/account"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 302);
    let authorize = location(&res, &Url::parse(&base).unwrap());
    let callback = at_provider(&client, &authorize, "alice", &base).await;
    let res = client.get(&callback).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let session = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("gh_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    // A failure is logged too (by kind): replaying the code.
    let res = client.get(&callback).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    child.kill().await.unwrap();
    let _ = child.wait().await;
    let q = query(&callback);
    let nonce = query(&authorize)["nonce"].clone();
    let logs = logs.lock().unwrap().clone();
    assert!(logs.contains("gatehouse listening"), "logs were captured");
    for (what, secret) in [
        ("code", q["code"].as_str()),
        ("state", q["state"].as_str()),
        ("nonce", nonce.as_str()),
        ("client secret", CLIENT_SECRET),
        ("session token", session.as_str()),
    ] {
        assert!(!logs.contains(secret), "the logs hold the {what}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

async fn single_session_ends_older_sessions_after_an_sso_sign_in(b: Backend) {
    let Some(idp) = start_idp().await else { return };
    let app = app_with(b, &idp, |p| p.link_by_verified_email = true).await;
    app.user("bob@example.com").await;
    let admin = app.admin_token().await;
    set_settings(&app, &admin, json!({ "singleSession": true }))
        .await
        .expect(200, "OK");
    let (old_access, _) = app.tokens("bob@example.com").await;
    app.get_auth("/api/v1/auth/me", &old_access)
        .await
        .expect(200, "OK");
    let client = browser();
    assert_eq!(sign_in(&app, &client, "bob").await.status().as_u16(), 303);
    assert_eq!(
        me(&app, &client).await["account"]["email"],
        "bob@example.com"
    );
    // The password session from before is over.
    let r = app.get_auth("/api/v1/auth/me", &old_access).await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.body);
}

backend_tests!(
    first_sign_in_creates_the_account_and_the_second_resolves_to_it,
    tampered_replayed_expired_and_other_browser_states_are_refused,
    an_unverified_upstream_email_never_takes_over_an_account,
    a_verified_opted_in_email_links_but_only_to_a_verified_local_account,
    the_domain_filter_and_auto_register_off_refuse_new_users,
    mfa_is_still_asked_after_sso_unless_the_provider_is_trusted_for_it,
    password_sign_in_off_leaves_sso_working,
    the_spa_exchange_answers_like_the_login_api,
    a_signed_in_user_links_and_unlinks_a_provider,
    a_provider_that_does_not_answer_is_a_502_in_bounded_time,
    a_full_sso_flow_leaves_no_code_token_or_secret_behind,
    stored_providers_are_managed_by_admins_and_keep_their_secret_sealed,
    a_plain_oauth2_provider_maps_its_userinfo_fields,
    a_locked_or_disabled_local_account_is_not_signed_in_by_sso,
    tenancy_still_decides_the_context_after_sso,
    single_session_ends_older_sessions_after_an_sso_sign_in,
);
