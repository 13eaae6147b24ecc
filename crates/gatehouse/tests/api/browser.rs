//! One end-to-end run in a real headless Chromium driven through chromedriver: sign in on
//! the form, land on the account page, sign out. Needs `chromium` and `chromedriver`; without
//! them the test is a note locally and a failure under CI.

use crate::helpers::*;
use anyhow::{Context, ensure};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any one page condition may take to appear.
const WAIT: Duration = Duration::from_secs(20);

/// `default` if it exists, else `name` on `PATH`.
fn tool(default: &str, name: &str) -> Option<PathBuf> {
    let default = PathBuf::from(default);
    if default.is_file() {
        return Some(default);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A chromedriver child on a free loopback port, with a scratch dir for Chromium's profile.
/// Dropping it kills the process and removes the dir.
struct Driver {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Driver {
    async fn start(bin: &Path) -> Driver {
        let dir =
            std::env::temp_dir().join(format!("gh-browser-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start chromedriver");
        let mut driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        driver.wait_ready().await;
        driver
    }

    /// Polls `/status` until chromedriver says it is ready (bounded).
    async fn wait_ready(&mut self) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chromedriver exited with {status}: {}", self.log());
            }
            if let Ok(res) = http.get(format!("{}/status", self.url)).send().await
                && let Ok(v) = res.json::<serde_json::Value>().await
                && v["value"]["ready"] == true
            {
                return;
            }
            assert!(
                started.elapsed() < WAIT,
                "chromedriver not ready after {WAIT:?}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default()
    }

    /// A browser session: headless, sandbox-free for containers, quiet on the network, and
    /// with a profile of its own.
    async fn browser(&self, chromium: &Path) -> Client {
        let profile = self.dir.join("profile");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium.display().to_string(), "args": args }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| {
                panic!("new browser session: {e}; chromedriver log: {}", self.log())
            })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The user's walk through the pages.
async fn sign_in_and_out(c: &Client, app: &TestApp, email: &str) -> anyhow::Result<()> {
    c.goto(&app.url("/auth/login")).await?;
    let identifier = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("input[name=identifier]"))
        .await?;
    identifier.send_keys(email).await?;
    c.find(Locator::Css("input[name=password]"))
        .await?
        .send_keys(PASSWORD)
        .await?;
    c.find(Locator::Css(
        "form[action='/auth/login'] button[type=submit]",
    ))
    .await?
    .click()
    .await?;

    let shown = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("account-email"))
        .await
        .context("account page")?;
    ensure!(
        shown.text().await? == email,
        "the account page shows the signed-in email"
    );
    ensure!(c.current_url().await?.path() == "/account");
    ensure!(
        c.source().await?.contains("This browser"),
        "the session list marks this browser"
    );
    if let Ok(path) = std::env::var("GATEHOUSE_BROWSER_SCREENSHOT") {
        std::fs::write(&path, c.screenshot().await?).with_context(|| format!("write {path}"))?;
    }

    c.find(Locator::Id("sign-out")).await?.click().await?;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("input[name=identifier]"))
        .await
        .context("sign-in page after sign-out")?;
    ensure!(c.current_url().await?.path() == "/auth/login");

    // Signed out for real: the account page sends the browser back to sign in.
    c.goto(&app.url("/account")).await?;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("input[name=identifier]"))
        .await?;
    let url = c.current_url().await?;
    ensure!(
        url.path() == "/auth/login" && url.query() == Some("next=/account"),
        "landed on {url}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_sees_the_account_and_signs_out() {
    let (Some(driver_bin), Some(chromium)) = (
        tool("/usr/bin/chromedriver", "chromedriver"),
        tool("/usr/bin/chromium", "chromium"),
    ) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but chromium or chromedriver is not installed"
        );
        eprintln!("note: chromium or chromedriver not found; skipping the browser test");
        return;
    };
    let app = spawn_app(Backend::Sqlite).await;
    app.user("browser@example.com").await;
    let driver = Driver::start(&driver_bin).await;
    let client = driver.browser(&chromium).await;
    let walked = sign_in_and_out(&client, &app, "browser@example.com").await;
    // Close the session (and so Chromium) even when the walk failed.
    let closed = client.close().await;
    walked.unwrap();
    closed.unwrap();
}
