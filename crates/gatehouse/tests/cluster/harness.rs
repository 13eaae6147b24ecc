//! Harness for the cluster tests: real `gatehouse serve` processes on loopback ports that
//! share one PostgreSQL database and one Redis key prefix, plus small HTTP helpers.
//! Everything it starts is killed, dropped or deleted on drop, also when a test panics.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Client;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bootstrap admin every cluster gets.
pub const ADMIN_EMAIL: &str = "boss@example.com";
pub const ADMIN_PASSWORD: &str = "Cluster-admin-pass-71";

/// No request may take longer than this; a request that does counts as a hang.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The shared test PostgreSQL and Redis (see `gatehouse_testkit::postgres_and_redis`).
pub fn test_urls() -> Option<(String, String)> {
    gatehouse_testkit::postgres_and_redis()
}

pub use gatehouse_testkit::is_ci;

/// Runs `f` on a fresh current-thread runtime on its own thread (for async clean-up in
/// `Drop`, which may run inside the test's runtime).
fn block_on_thread<F>(f: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(f);
        }
    })
    .join();
}

/// A fresh database `gh_test_<uuid>` on a server, dropped on drop.
pub struct TestDb {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create(admin_url: &str) -> TestDb {
        let (url, name) = gatehouse_testkit::create_database(admin_url).await;
        TestDb {
            url,
            admin_url: admin_url.to_string(),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        block_on_thread(async move { gatehouse_testkit::drop_database(&admin_url, &name).await });
    }
}

/// A unique Redis key prefix; its keys are deleted on drop.
pub struct RedisPrefix {
    url: String,
    pub prefix: String,
}

impl RedisPrefix {
    pub fn new(url: &str) -> RedisPrefix {
        RedisPrefix {
            url: url.to_string(),
            prefix: format!("gh_test_{}:", uuid::Uuid::new_v4().simple()),
        }
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        block_on_thread(async move {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                return;
            };
            let Ok(Ok(mut conn)) = tokio::time::timeout(
                Duration::from_secs(5),
                client.get_multiplexed_async_connection(),
            )
            .await
            else {
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
        });
    }
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("gh-{tag}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Settings for the processes of one cluster.
#[derive(Clone, Debug)]
pub struct ClusterEnv {
    pub database_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub acquire_timeout_ms: u64,
    pub cache_timeout_ms: u64,
    pub max_connections: u32,
    /// `secrets.encryption_key`: one per cluster, shared by its instances.
    pub encryption_key: String,
}

/// A fresh `secrets.encryption_key` (base64 of 32 random bytes).
pub fn encryption_key() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl ClusterEnv {
    /// The `GATEHOUSE_*` variables every process of the cluster gets (the CLI too).
    pub fn vars(&self) -> Vec<(String, String)> {
        [
            ("GATEHOUSE_BIND", "127.0.0.1:0".to_string()),
            ("GATEHOUSE_PUBLIC_URL", "http://127.0.0.1".to_string()),
            ("GATEHOUSE_DATABASE__URL", self.database_url.clone()),
            (
                "GATEHOUSE_DATABASE__MAX_CONNECTIONS",
                self.max_connections.to_string(),
            ),
            (
                "GATEHOUSE_DATABASE__ACQUIRE_TIMEOUT_MS",
                self.acquire_timeout_ms.to_string(),
            ),
            ("GATEHOUSE_CACHE__URL", self.redis_url.clone()),
            ("GATEHOUSE_CACHE__PREFIX", self.redis_prefix.clone()),
            (
                "GATEHOUSE_CACHE__TIMEOUT_MS",
                self.cache_timeout_ms.to_string(),
            ),
            ("GATEHOUSE_CLUSTER__INSTANCES", "3".to_string()),
            (
                "GATEHOUSE_SECRETS__ENCRYPTION_KEY",
                self.encryption_key.clone(),
            ),
            ("GATEHOUSE_JWT__KEY_REFRESH_SECONDS", "1".to_string()),
            ("GATEHOUSE_PASSWORD__ARGON2_MEMORY_KIB", "256".to_string()),
            ("GATEHOUSE_PASSWORD__ARGON2_ITERATIONS", "1".to_string()),
            (
                "GATEHOUSE_PASSWORD__INSECURE_FAST_HASHING",
                "true".to_string(),
            ),
            ("GATEHOUSE_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL.to_string()),
            (
                "GATEHOUSE_BOOTSTRAP_ADMIN_PASSWORD",
                ADMIN_PASSWORD.to_string(),
            ),
            // The tests drive many logins from one IP on purpose.
            ("GATEHOUSE_RATE_LIMIT__ENABLED", "false".to_string()),
            ("GATEHOUSE_LOG__LEVEL", "info".to_string()),
            ("GATEHOUSE_LOG__FORMAT", "json".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// A `gatehouse` command with exactly the cluster's variables (inherited `GATEHOUSE_*`
/// settings are removed so the developer's environment cannot leak in).
pub fn gatehouse_command(env: &ClusterEnv, cwd: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.current_dir(cwd);
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEHOUSE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env.vars() {
        cmd.env(k, v);
    }
    cmd
}

/// One running `gatehouse serve` process.
pub struct Instance {
    pub node: Node,
    child: Child,
    logs: Arc<Mutex<String>>,
}

impl Instance {
    /// Everything the process wrote so far.
    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process that was spawned but has not announced its address yet.
struct Starting {
    name: String,
    child: Child,
    logs: Arc<Mutex<String>>,
    addr: std::sync::mpsc::Receiver<String>,
}

fn spawn_serve(name: &str, env: &ClusterEnv, cwd: &std::path::Path) -> Starting {
    let mut child = gatehouse_command(env, cwd)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gatehouse serve");
    let logs = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("gatehouse listening")
                && let Ok(v) = serde_json::from_str::<Value>(&line)
                && let Some(addr) = v["addr"].as_str().or(v["fields"]["addr"].as_str())
            {
                let _ = tx.send(addr.to_string());
            }
            if let Ok(mut l) = sink.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
    let err = child.stderr.take().expect("stderr");
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Ok(mut l) = sink.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
    Starting {
        name: name.to_string(),
        child,
        logs,
        addr: rx,
    }
}

impl Starting {
    fn wait(mut self) -> Instance {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            match self.addr.recv_timeout(Duration::from_millis(200)) {
                Ok(addr) => {
                    return Instance {
                        node: Node::new(&self.name, &format!("http://{addr}")),
                        child: self.child,
                        logs: self.logs,
                    };
                }
                Err(_) if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    panic!(
                        "instance {} did not start in time; logs:\n{}",
                        self.name,
                        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
                    );
                }
                Err(_) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        std::thread::sleep(Duration::from_millis(200));
                        panic!(
                            "instance {} exited during start-up ({status}); logs:\n{}",
                            self.name,
                            self.logs.lock().map(|l| l.clone()).unwrap_or_default()
                        );
                    }
                }
            }
        }
    }
}

/// Three (or `n`) instances started at the same moment (so migrations, the first signing
/// key and the bootstrap admin race, as in a real roll-out).
pub struct Cluster {
    // Field order is drop order: processes go before their database and Redis keys.
    pub instances: Vec<Instance>,
    pub env: ClusterEnv,
    cwd: TempDir,
}

impl Cluster {
    pub fn start(env: ClusterEnv, n: usize) -> Cluster {
        let cwd = TempDir::new("cluster-cwd");
        let names = ["A", "B", "C", "D", "E"];
        let starting: Vec<Starting> = (0..n)
            .map(|i| spawn_serve(names[i % names.len()], &env, &cwd.0))
            .collect();
        let instances = starting.into_iter().map(Starting::wait).collect();
        Cluster {
            instances,
            env,
            cwd,
        }
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.instances[i % self.instances.len()].node
    }

    pub fn nodes(&self) -> Vec<Node> {
        self.instances.iter().map(|i| i.node.clone()).collect()
    }

    /// Runs the `gatehouse` CLI with the cluster's configuration; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = gatehouse_command(&self.env, &self.cwd.0)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run gatehouse CLI");
        assert!(
            out.status.success(),
            "gatehouse {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last `lines` log lines of every instance, for failure messages.
    pub fn logs_tail(&self, lines: usize) -> String {
        self.instances
            .iter()
            .map(|i| {
                let logs = i.logs();
                let all: Vec<&str> = logs.lines().collect();
                let tail = all[all.len().saturating_sub(lines)..].join("\n");
                format!("===== instance {} =====\n{tail}\n", i.node.name)
            })
            .collect()
    }

    /// Asserts no process panicked or exited.
    pub fn assert_alive(&mut self) {
        for inst in &mut self.instances {
            assert!(
                matches!(inst.child.try_wait(), Ok(None)),
                "instance {} exited; logs:\n{}",
                inst.node.name,
                inst.logs()
            );
            assert!(
                !inst.logs().contains("panicked"),
                "instance {} panicked; logs:\n{}",
                inst.node.name,
                inst.logs()
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep the full logs for the post-mortem; show the tail right away.
            let dir = std::env::temp_dir()
                .join(format!("gh-cluster-logs-{}", uuid::Uuid::new_v4().simple()));
            if std::fs::create_dir_all(&dir).is_ok() {
                for i in &self.instances {
                    let _ = std::fs::write(dir.join(format!("{}.log", i.node.name)), i.logs());
                }
                println!("full instance logs kept in {}", dir.display());
            }
            println!("{}", self.logs_tail(40));
        }
    }
}

/// A decoded response and how long it took. Transport failures (refused, timed out) have
/// status 0 and the error in `body._error`.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub elapsed: Duration,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    #[track_caller]
    pub fn expect(&self, status: u16, code: &str) -> &Value {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "body: {}",
            self.body
        );
        &self.body["data"]
    }

    /// `(access, refresh)` from a login or refresh answer.
    #[track_caller]
    pub fn tokens(&self) -> Tokens {
        let auth = &self.body["data"]["auth"];
        Tokens {
            access: auth["accessToken"]
                .as_str()
                .unwrap_or_else(|| panic!("no access token in {}", self.body))
                .to_string(),
            refresh: auth["refreshToken"]
                .as_str()
                .unwrap_or_else(|| panic!("no refresh token in {}", self.body))
                .to_string(),
        }
    }
}

/// An access and refresh token pair.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

/// A JWT's decoded header or payload.
pub fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("JWT part");
    let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url JWT part");
    serde_json::from_slice(&bytes).expect("JSON JWT part")
}

/// The `kid` in an access token's header.
pub fn kid(token: &str) -> String {
    jwt_part(token, 0)["kid"].as_str().unwrap_or("").to_string()
}

/// The `sid` (session id) claim of an access token.
pub fn sid(token: &str) -> String {
    jwt_part(token, 1)["sid"].as_str().unwrap_or("").to_string()
}

/// HTTP access to one instance.
#[derive(Clone)]
pub struct Node {
    pub name: String,
    pub base: String,
    http: Client,
}

impl Node {
    pub fn new(name: &str, base: &str) -> Node {
        Node {
            name: name.to_string(),
            base: base.to_string(),
            http: Client::builder()
                .timeout(CLIENT_TIMEOUT)
                .build()
                .expect("client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(req: reqwest::RequestBuilder) -> Reply {
        let started = Instant::now();
        match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                let text = res.text().await.unwrap_or_default();
                let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "_text": text }));
                Reply {
                    status,
                    body,
                    elapsed: started.elapsed(),
                }
            }
            Err(e) => Reply {
                status: 0,
                body: json!({ "_error": e.to_string() }),
                elapsed: started.elapsed(),
            },
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        Self::send(self.http.get(self.url(path))).await
    }

    /// CSRF token + login in a fresh cookie jar. `elapsed` covers the login POST only.
    pub async fn login(&self, identifier: &str, password: &str) -> Reply {
        let browser = Client::builder()
            .cookie_store(true)
            .timeout(CLIENT_TIMEOUT)
            .build()
            .expect("client");
        let csrf = Self::send(browser.get(self.url("/api/v1/auth/csrf-token"))).await;
        let Some(token) = csrf.body["data"]["csrfToken"].as_str() else {
            return csrf;
        };
        Self::send(
            browser
                .post(self.url("/api/v1/auth/login"))
                .header("X-CSRFToken", token)
                .json(&json!({ "identifier": identifier, "password": password })),
        )
        .await
    }

    pub async fn login_admin(&self) -> Reply {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        Self::send(
            self.http
                .post(self.url("/api/v1/auth/refresh"))
                .json(&json!({ "refreshToken": refresh_token })),
        )
        .await
    }

    pub async fn me(&self, access: &str) -> Reply {
        Self::send(
            self.http
                .get(self.url("/api/v1/auth/me"))
                .bearer_auth(access),
        )
        .await
    }

    pub async fn logout(&self, access: &str) -> Reply {
        Self::send(
            self.http
                .post(self.url("/api/v1/auth/logout"))
                .bearer_auth(access),
        )
        .await
    }
}

/// Polls `check` every `every` until it returns `Some`, or panics with `what` after
/// `limit`. Returns the value and how long it took.
pub async fn poll<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: F,
) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return (v, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// Finds a free loopback port (bound and released; good enough for a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
