//! A real SMTP server for the mail tests: `aiosmtpd` (PyPI) from the venv `scripts/test`
//! creates at `.venv-smtp`, started on a free loopback port with its Maildir handler. A
//! test reads the messages from the Maildir. Under `CI=true` a missing aiosmtpd fails the
//! test; elsewhere the test says so once and passes without running.

use base64::Engine as _;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The venv's Python, if aiosmtpd is installed there.
fn python() -> Option<PathBuf> {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-smtp/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Some(py);
    }
    if gatehouse_testkit::is_ci() {
        panic!("CI=true but aiosmtpd is not installed in .venv-smtp: run scripts/test");
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "note: aiosmtpd is not installed in .venv-smtp (scripts/test installs it): the SMTP tests pass here without running"
        );
    });
    None
}

/// An SMTP server on a reserved loopback port, running or stopped.
pub struct Smtp {
    python: PathBuf,
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Smtp {
    /// Reserves a port and a Maildir; the server is not running yet. `None`: no aiosmtpd
    /// (outside CI).
    pub fn reserve() -> Option<Smtp> {
        let python = python()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!("gh-smtp-{}", uuid::Uuid::new_v4().simple()));
        Some(Smtp {
            python,
            port,
            dir,
            child: None,
        })
    }

    /// A running server.
    pub fn start() -> Option<Smtp> {
        let mut s = Self::reserve()?;
        s.up();
        Some(s)
    }

    /// `smtp://127.0.0.1:<port>` (plain SMTP on loopback).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every message received so far, raw.
    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.dir.join(sub)) {
                for e in entries.flatten() {
                    if let Ok(text) = std::fs::read_to_string(e.path()) {
                        out.push(text);
                    }
                }
            }
        }
        out
    }

    /// Waits (up to 20 s) until at least `n` messages have arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} message(s), got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A header's value (first occurrence), unfolded.
pub fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw);
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// The decoded `text/plain` part of a message (7bit, quoted-printable or base64).
pub fn text_part(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let start = raw
        .find("Content-Type: text/plain")
        .expect("a text/plain part");
    let part = &raw[start..];
    let (headers, body) = part.split_once("\n\n").expect("part body");
    let body = body.split("\n--").next().unwrap_or(body);
    if headers.contains("Content-Transfer-Encoding: base64") {
        let compact: String = body.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .expect("base64 body");
        String::from_utf8(bytes).expect("utf-8 body")
    } else if headers.contains("Content-Transfer-Encoding: quoted-printable") {
        let joined = body.replace("=\n", "");
        let mut out = Vec::new();
        let b = joined.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'='
                && let Some(v) = joined
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8(out).expect("utf-8 body")
    } else {
        body.to_string()
    }
}

/// The 8-character code in a message's text.
pub fn code_in(raw: &str) -> String {
    text_part(raw)
        .lines()
        .map(str::trim)
        .find(|l| {
            l.len() == 8
                && l.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })
        .expect("a code line")
        .to_string()
}
