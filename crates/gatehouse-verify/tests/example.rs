#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The verify crate against a real Gatehouse: a Gatehouse server (SQLite + memory, and
//! PostgreSQL + Redis when the test URLs are set) and the `protected` example as its own
//! process, driven over HTTP: access tokens, personal access tokens by introspection,
//! refusals in Gatehouse's envelope, and a signing-key rotation.

use gatehouse::config::Config;
use gatehouse_domain::ports::{Clock, SystemClock};
use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const PASSWORD: &str = "correct-Horse-battery-9";

struct Gatehouse {
    base: String,
    svc: Arc<gatehouse_core::Service>,
    _dir: Option<TempDir>,
    _pg: Option<(String, String)>,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts Gatehouse on SQLite + memory, or on PostgreSQL + Redis with `pg`.
async fn gatehouse(pg: Option<(String, String)>) -> Gatehouse {
    let mut c = Config {
        bind: "127.0.0.1:0".into(),
        public_url: "http://127.0.0.1".into(),
        ..Config::default()
    };
    c.password.argon2_memory_kib = 256;
    c.password.argon2_iterations = 1;
    c.password.insecure_fast_hashing = true;
    c.log.level = "warn".into();
    let mut dir = None;
    let mut created = None;
    match &pg {
        None => {
            let d =
                std::env::temp_dir().join(format!("gh-verify-{}", uuid::Uuid::new_v4().simple()));
            c.database.url = format!("sqlite:{}", d.join("gatehouse.db").display());
            dir = Some(TempDir(d));
        }
        Some((database_url, redis_url)) => {
            let (url, name) = gatehouse_testkit::create_database(database_url).await;
            c.database.url = url;
            c.secrets.encryption_key = Some(gatehouse_domain::Secret::new(
                gatehouse_testkit::TEST_ENCRYPTION_KEY,
            ));
            c.cache.url = redis_url.clone();
            c.cache.prefix = format!("gh_verify_{}:", uuid::Uuid::new_v4().simple());
            created = Some((database_url.clone(), name));
        }
    }
    c.validate().unwrap();
    let running = gatehouse::server::start(&c, Arc::new(SystemClock) as Arc<dyn Clock>)
        .await
        .unwrap();
    Gatehouse {
        base: format!("http://{}", running.addr),
        svc: running.svc,
        _dir: dir,
        _pg: created,
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self._pg.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(gatehouse_testkit::drop_database(&admin_url, &name));
            })
            .join();
        }
    }
}

impl Gatehouse {
    async fn user(&self, email: &str, roles: &[&str]) {
        let input = gatehouse_core::admin::CreateUser {
            email: email.into(),
            password: Some(gatehouse_domain::Secret::new(PASSWORD)),
            must_change_password: Some(false),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        };
        self.svc
            .create_user(None, input, &gatehouse_core::RequestMeta::default())
            .await
            .unwrap();
    }

    async fn login(&self, email: &str) -> String {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let csrf: Value = client
            .get(format!("{}/api/v1/auth/csrf-token", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let r: Value = client
            .post(format!("{}/api/v1/auth/login", self.base))
            .header("X-CSRFToken", csrf["data"]["csrfToken"].as_str().unwrap())
            .json(&json!({ "identifier": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["data"]["auth"]["accessToken"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        let r: Value = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["success"], true, "{path}: {r}");
        r["data"].clone()
    }
}

/// Runs the `protected` example against `gh` with `env`; returns it and its base URL.
async fn example(gh: &Gatehouse, env: &[(&str, String)]) -> (Child, String) {
    // Test binaries live in target/<profile>/deps, examples in target/<profile>/examples;
    // `cargo test` builds both.
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(format!("protected{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "the example is built: {}", path.display());
    let mut cmd = Command::new(path);
    cmd.env("GATEHOUSE_URL", &gh.base)
        .env("BIND", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("the example starts")
        .unwrap()
        .unwrap();
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    (child, url)
}

async fn hello(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .get(format!("{url}/hello"))
        .header("Accept-Language", "vi");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn drive(pg: Option<(String, String)>) {
    let gh = gatehouse(pg).await;
    gh.user("admin@example.com", &["admin"]).await;
    gh.user("alice@example.com", &[]).await;
    let admin = gh.login("admin@example.com").await;
    let sa = gh
        .post(
            "/api/v1/admin/service-accounts",
            &admin,
            json!({ "username": "downstream", "roles": ["admin"] }),
        )
        .await;
    let key = gh
        .post(
            "/api/v1/admin/api-keys",
            &admin,
            json!({ "name": "verify", "serviceAccountId": sa["id"], "scopes": ["tokens:introspect"] }),
        )
        .await;
    let env = |refetch: &str| {
        vec![
            (
                "GATEHOUSE_ACCESS_KEY",
                key["accessKey"].as_str().unwrap().to_string(),
            ),
            (
                "GATEHOUSE_SECRET_KEY",
                key["secretKey"].as_str().unwrap().to_string(),
            ),
            ("GATEHOUSE_JWKS_REFETCH_SECONDS", refetch.to_string()),
            ("GATEHOUSE_INTROSPECTION_CACHE_SECONDS", "0".to_string()),
        ]
    };
    let (_eager, eager) = example(&gh, &env("0")).await;
    let (_strict, strict) = example(&gh, &env("3600")).await;

    // No credentials, junk: Gatehouse's envelope, code and (here Vietnamese) message.
    let (status, body) = hello(&eager, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("AUTHENTICATION_REQUIRED"))
    );
    assert_eq!(body["success"], false);
    assert_eq!(
        body["message"],
        gatehouse_domain::Code::AUTHENTICATION_REQUIRED.message(gatehouse_domain::Locale::Vi)
    );
    assert!(body["requestId"].is_string());
    let (status, body) = hello(&eager, Some("not.a.token")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("TOKEN_INVALID"))
    );

    // An access token, checked offline against the JWKS.
    let alice = gh.login("alice@example.com").await;
    for url in [&eager, &strict] {
        let (status, body) = hello(url, Some(&alice)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["kind"], "access_token");
    }

    // A personal access token, by introspection; refused once revoked.
    let pat = gh
        .post("/api/v1/auth/tokens", &alice, json!({ "name": "cli" }))
        .await;
    let text = pat["token"].as_str().unwrap();
    let (status, body) = hello(&eager, Some(text)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kind"], "personal_access_token");
    let id = pat["id"].as_str().unwrap();
    let deleted = reqwest::Client::new()
        .delete(format!("{}/api/v1/auth/tokens/{id}", gh.base))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    let (status, body) = hello(&eager, Some(text)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("TOKEN_INVALID"))
    );

    // Key rotation: a token signed by the new key names a kid the example has not seen.
    let kid = gh
        .svc
        .keys
        .rotate(gh.svc.store.as_ref(), gh.svc.now())
        .await
        .unwrap();
    let fresh = gh.login("alice@example.com").await;
    let (status, body) = hello(&eager, Some(&fresh)).await;
    assert_eq!(status, 200, "refetched the JWKS for kid {kid}: {body}");
    let (status, _) = hello(&eager, Some(&alice)).await;
    assert_eq!(
        status, 200,
        "the retired key still verifies its live tokens"
    );
    // The other example may refetch at most once an hour: it refuses until then.
    let (status, body) = hello(&strict, Some(&fresh)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("TOKEN_INVALID"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_service_checks_credentials_against_a_real_gatehouse_sqlite() {
    drive(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_service_checks_credentials_against_a_real_gatehouse_postgres() {
    if let Some(pg) = gatehouse_testkit::postgres_and_redis() {
        drive(Some(pg)).await;
    }
}
