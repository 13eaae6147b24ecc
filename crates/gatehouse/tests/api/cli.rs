//! The `gatehouse` command line: configuration checks and account management.

use crate::helpers::TEST_ENCRYPTION_KEY;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn gatehouse(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env("GATEHOUSE_PASSWORD__ARGON2_MEMORY_KIB", "256")
        .env("GATEHOUSE_PASSWORD__ARGON2_ITERATIONS", "1")
        .env("GATEHOUSE_PASSWORD__INSECURE_FAST_HASHING", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
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

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gh-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn config_check_names_the_bad_key() {
    let dir = temp_dir();
    let out = gatehouse(
        &dir,
        &["config", "check"],
        &[("GATEHOUSE_JWT__ACCESS_TTL_SECONDS", "5")],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("jwt.access_ttl_seconds"),
        "{out:?}"
    );
    let out = gatehouse(
        &dir,
        &["config", "check"],
        &[("GATEHOUSE_LOCKOUT__MAX_FAILURES", "many")],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lockout.max_failures"),
        "{out:?}"
    );
    let out = gatehouse(
        &dir,
        &["config", "check"],
        &[("GATEHOUSE_CLUSTER__INSTANCES", "3")],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cache.url"),
        "{out:?}"
    );
    std::fs::write(dir.join("gatehouse.toml"), "[database]\nurl = \"postgres://u:hunter2@db/x\"\n[cache]\nurl = \"redis://127.0.0.1:6379\"\n").unwrap();
    let out = gatehouse(&dir, &["config", "check"], &[], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("secrets.encryption_key"),
        "PostgreSQL needs a configured key: {out:?}"
    );
    let key = ("GATEHOUSE_SECRETS__ENCRYPTION_KEY", TEST_ENCRYPTION_KEY);
    let out = gatehouse(&dir, &["config", "check"], &[key], None);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(TEST_ENCRYPTION_KEY));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("configuration OK") && !stdout.contains("hunter2"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unknown_database_scheme_stops_start_up() {
    let dir = temp_dir();
    let out = gatehouse(
        &dir,
        &["migrate"],
        &[("GATEHOUSE_DATABASE__URL", "mysql://localhost/x")],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("database.url"),
        "{out:?}"
    );
    assert!(
        !dir.join("data").exists(),
        "no SQLite file was created instead"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn user_commands_manage_accounts() {
    let dir = temp_dir();
    let db = [("GATEHOUSE_DATABASE__URL", "sqlite:./gh.db")];
    let out = gatehouse(
        &dir,
        &[
            "user",
            "create",
            "--email",
            "cli@example.com",
            "--admin",
            "--password-stdin",
        ],
        &db,
        Some("Tangerine-Sky-55\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let out = gatehouse(
        &dir,
        &[
            "user",
            "create",
            "--email",
            "cli@example.com",
            "--password-stdin",
        ],
        &db,
        Some("Tangerine-Sky-55\n"),
    );
    assert!(!out.status.success(), "duplicate refused");
    let out = gatehouse(
        &dir,
        &[
            "user",
            "create",
            "--email",
            "weak@example.com",
            "--password-stdin",
        ],
        &db,
        Some("short\n"),
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("too_short"),
        "{out:?}"
    );
    // The only admin cannot be disabled; with a second one it can.
    let out = gatehouse(&dir, &["user", "disable", "cli@example.com"], &db, None);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("last_admin"),
        "{out:?}"
    );
    let out = gatehouse(
        &dir,
        &[
            "user",
            "create",
            "--email",
            "second@example.com",
            "--admin",
            "--password-stdin",
        ],
        &db,
        Some("Marigold-Rain-77\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let out = gatehouse(&dir, &["user", "disable", "cli@example.com"], &db, None);
    assert!(out.status.success(), "{out:?}");
    let out = gatehouse(
        &dir,
        &["user", "set-password", "cli@example.com"],
        &db,
        Some("Violet-Moon-66"),
    );
    assert!(out.status.success(), "{out:?}");
    let out = gatehouse(&dir, &["user", "disable", "ghost@example.com"], &db, None);
    assert!(!out.status.success());
    let out = gatehouse(&dir, &["keys", "rotate"], &db, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("retired") && stdout.contains("current"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
