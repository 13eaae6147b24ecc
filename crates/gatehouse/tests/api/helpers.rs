//! Test harness: each test gets its own server on 127.0.0.1:0 with a fresh database (a temp
//! SQLite file, or a new PostgreSQL database that is dropped afterwards) and a fresh cache
//! (memory, or a Redis key prefix that is deleted afterwards), and a cookie-keeping client.
//! Logs show only when TEST_LOG is set.

use gatehouse::config::Config;
use gatehouse_core::Service;
use gatehouse_domain::Timestamp;
use gatehouse_domain::ports::{Clock, ManualClock, SystemClock};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Which store + cache pair a test runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres {
        database_url: String,
        redis_url: String,
    },
}

impl Backend {
    /// PostgreSQL + Redis when both test URLs are set. Under CI they are mandatory.
    pub fn postgres() -> Option<Backend> {
        gatehouse_testkit::postgres_and_redis().map(|(database_url, redis_url)| Backend::Postgres {
            database_url,
            redis_url,
        })
    }
}

/// Generates `mod sqlite { #[test] … }` and `mod postgres { #[test] … }` for each named
/// `async fn name(b: Backend)` in the calling module.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(b) = $crate::helpers::Backend::postgres() {
                        super::$name(b).await
                    }
                }
            )*
        }
    };
}

/// A running test server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    /// A client with its own cookie jar (one "browser").
    pub client: Client,
    pub svc: Arc<Service>,
    pub clock: Arc<ManualClock>,
    pub config: Config,
    _cleanup: Cleanup,
}

struct Cleanup {
    dir: Option<PathBuf>,
    pg: Option<(String, String)>,
    redis: Option<(String, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        let pg = self.pg.take();
        let redis = self.redis.take();
        if pg.is_none() && redis.is_none() {
            return;
        }
        // Drop runs inside the test's runtime; clean up on a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Some((admin_url, name)) = pg {
                    gatehouse_testkit::drop_database(&admin_url, &name).await;
                }
                if let Some((url, prefix)) = redis {
                    delete_prefix(&url, &prefix).await;
                }
            });
        })
        .join();
    }
}

async fn delete_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}

/// The configuration every test starts from: cheap Argon2 (set through config, never by
/// changing the defaults), a free port, and the backend's store and cache.
pub fn base_config() -> Config {
    let mut c = Config {
        bind: "127.0.0.1:0".into(),
        public_url: "http://127.0.0.1".into(),
        ..Config::default()
    };
    c.password.argon2_memory_kib = 256;
    c.password.argon2_iterations = 1;
    c.password.insecure_fast_hashing = true;
    c.log.level = "warn".into();
    // Mail queued by a test without SMTP goes to a temporary folder, not the source tree.
    c.mail.file_dir = std::env::temp_dir()
        .join(format!("gh-test-mail-{}", uuid::Uuid::new_v4().simple()))
        .display()
        .to_string();
    // Tests fire many requests from 127.0.0.1; rate-limit tests set their own small limits.
    c.rate_limit.credential_per_minute = 10_000;
    c.rate_limit.credential_per_hour = 100_000;
    c.rate_limit.identifier_per_minute = 10_000;
    c.rate_limit.identifier_per_hour = 100_000;
    c
}

/// Starts a server on `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts a server on `backend` after `tweak` adjusts the configuration.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        gatehouse::telemetry::init(&gatehouse::config::LogConfig {
            level: "info".into(),
            format: "pretty".into(),
        });
    }
    let mut config = base_config();
    let mut cleanup = Cleanup {
        dir: None,
        pg: None,
        redis: None,
    };
    match &backend {
        Backend::Sqlite => {
            let dir =
                std::env::temp_dir().join(format!("gh-test-{}", uuid::Uuid::new_v4().simple()));
            config.database.url = format!("sqlite:{}", dir.join("gatehouse.db").display());
            cleanup.dir = Some(dir);
        }
        Backend::Postgres {
            database_url,
            redis_url,
        } => {
            let (url, name) = gatehouse_testkit::create_database(database_url).await;
            config.database.url = url;
            // PostgreSQL needs a configured key (SQLite tests use the generated key file).
            config.secrets.encryption_key =
                Some(gatehouse_domain::Secret::new(TEST_ENCRYPTION_KEY));
            cleanup.pg = Some((database_url.clone(), name));
            let prefix = format!("gh_test_{}:", uuid::Uuid::new_v4().simple());
            config.cache.url = redis_url.clone();
            config.cache.prefix = prefix.clone();
            cleanup.redis = Some((redis_url.clone(), prefix));
        }
    }
    tweak(&mut config);
    config.validate().expect("test config is valid");
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let running = gatehouse::server::start(&config, clock.clone() as Arc<dyn Clock>)
        .await
        .expect("server starts");
    let base = format!("http://{}", running.addr);
    TestApp {
        addr: running.addr,
        base,
        client: browser(),
        svc: running.svc,
        clock,
        config,
        _cleanup: cleanup,
    }
}

/// A client with its own cookie jar.
pub fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A decoded response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Reads a response; a non-JSON body becomes `{"_text": …}`.
    pub async fn of(res: Response) -> Reply {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "_text": text }));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// The envelope's code.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// Asserts status and code together, showing the body on failure.
    #[track_caller]
    pub fn expect(&self, status: u16, code: &str) -> &Value {
        assert_eq!(
            (self.status.as_u16(), self.code()),
            (status, code),
            "body: {}",
            self.body
        );
        &self.body["data"]
    }
}

pub use gatehouse_testkit::TEST_ENCRYPTION_KEY;

/// The strong password test accounts get.
pub const PASSWORD: &str = "correct-Horse-battery-9";

impl TestApp {
    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A CSRF token for `client` (setting its binding cookie).
    pub async fn csrf_for(&self, client: &Client) -> String {
        let r = Reply::of(
            client
                .get(self.url("/api/v1/auth/csrf-token"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        r.expect(200, "OK")["csrfToken"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Logs in with `client` (fetching a CSRF token first).
    pub async fn login_with(&self, client: &Client, identifier: &str, password: &str) -> Reply {
        let csrf = self.csrf_for(client).await;
        let res = client
            .post(self.url("/api/v1/auth/login"))
            .header("X-CSRFToken", csrf)
            .json(&json!({ "identifier": identifier, "password": password }))
            .send()
            .await
            .unwrap();
        Reply::of(res).await
    }

    /// Logs in with the app's own client.
    pub async fn login(&self, identifier: &str, password: &str) -> Reply {
        self.login_with(&self.client, identifier, password).await
    }

    /// Creates an account directly through the service (no HTTP), password [`PASSWORD`].
    pub async fn user(&self, email: &str) -> gatehouse_domain::model::Account {
        self.user_with(email, false, &[]).await
    }

    /// Creates an account with options.
    pub async fn user_with(
        &self,
        email: &str,
        must_change: bool,
        roles: &[&str],
    ) -> gatehouse_domain::model::Account {
        let input = gatehouse_core::admin::CreateUser {
            email: email.into(),
            password: Some(gatehouse_domain::Secret::new(PASSWORD)),
            must_change_password: Some(must_change),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        };
        self.svc
            .create_user(None, input, &gatehouse_core::RequestMeta::default())
            .await
            .expect("create user")
    }

    /// Creates an admin and returns its access token.
    pub async fn admin_token(&self) -> String {
        let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
        self.user_with(&email, false, &["admin"]).await;
        let r = self.login_with(&browser(), &email, PASSWORD).await;
        r.expect(200, "AUTH_LOGIN_SUCCESS")["auth"]["accessToken"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Logs a fresh user in and returns (access token, refresh token).
    pub async fn tokens(&self, email: &str) -> (String, String) {
        let r = self.login_with(&browser(), email, PASSWORD).await;
        let auth = &r.expect(200, "AUTH_LOGIN_SUCCESS")["auth"];
        (
            auth["accessToken"].as_str().unwrap().into(),
            auth["refreshToken"].as_str().unwrap().into(),
        )
    }

    /// GET with a bearer token.
    pub async fn get_auth(&self, path: &str, token: &str) -> Reply {
        Reply::of(
            browser()
                .get(self.url(path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// POST JSON with a bearer token.
    pub async fn post_auth(&self, path: &str, token: &str, body: Value) -> Reply {
        Reply::of(
            browser()
                .post(self.url(path))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// POST JSON without credentials.
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        Reply::of(
            browser()
                .post(self.url(path))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Moves the server's clock forward.
    pub fn advance(&self, secs: u64) {
        self.clock.advance(std::time::Duration::from_secs(secs));
    }

    /// The server's current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}
