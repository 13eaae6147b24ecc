//! Child processes: `gatehouse serve` (and the bench's own hello server), started on
//! loopback with port 0; the address is read from the "gatehouse listening" log line.

use anyhow::{Context, Result, anyhow, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Starts `bin args…` with exactly `envs` as its `GATEHOUSE_*` environment (inherited
    /// `GATEHOUSE_*` variables are removed) and waits for it to announce its address.
    pub fn spawn(bin: &Path, args: &[&str], envs: &[(String, String)], dir: &Path) -> Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.args(args).current_dir(dir);
        for (k, _) in std::env::vars() {
            if k.starts_with("GATEHOUSE_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let tail = Arc::new(Mutex::new(Vec::<String>::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let out = child.stdout.take().context("no stdout")?;
        let err = child.stderr.take().context("no stderr")?;
        let keep = |tail: &Arc<Mutex<Vec<String>>>, line: String| {
            if let Ok(mut t) = tail.lock() {
                if t.len() >= 20 {
                    t.remove(0);
                }
                t.push(line);
            }
        };
        let t1 = tail.clone();
        // Keep draining both pipes for the child's whole life so it never blocks on a log write.
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("gatehouse listening")
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                {
                    let addr = v["addr"]
                        .as_str()
                        .or_else(|| v["fields"]["addr"].as_str())
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(addr);
                }
                keep(&t1, line);
            }
        });
        let t2 = tail.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                keep(&t2, line);
            }
        });
        let mut server = Server {
            child,
            base: String::new(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) if !addr.is_empty() => {
                    server.base = format!("http://{addr}");
                    return Ok(server);
                }
                Ok(_) => bail!("listening line without an address"),
                Err(_) => {
                    if let Ok(Some(status)) = server.child.try_wait() {
                        let tail = tail.lock().map(|t| t.join("\n")).unwrap_or_default();
                        bail!(
                            "{} exited with {status} before listening:\n{tail}",
                            bin.display()
                        );
                    }
                    if std::time::Instant::now() > deadline {
                        bail!("{} did not announce its address in 120 s", bin.display());
                    }
                }
            }
        }
    }

    /// (current RSS, peak RSS) in KiB, from /proc.
    pub fn rss_kib(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("reading /proc/PID/status")?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("{name} missing in /proc/PID/status"))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            for _ in 0..50 {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Runs `gatehouse migrate` with `envs` and waits for it.
pub fn migrate(bin: &Path, envs: &[(String, String)], dir: &Path) -> Result<()> {
    let mut cmd = Command::new(bin);
    cmd.arg("migrate").current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEHOUSE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let out = cmd.output().context("running gatehouse migrate")?;
    if !out.status.success() {
        bail!(
            "gatehouse migrate failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A temporary directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("gh-bench-{tag}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
