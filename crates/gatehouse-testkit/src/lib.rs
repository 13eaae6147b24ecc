//! What every Gatehouse test suite shares: the PostgreSQL and Redis servers to test
//! against (mandatory under `CI=true`, announced when skipped), a fresh PostgreSQL database
//! per test, the test encryption key, and re-raising a test task's panic after cleanup.
//! Used only as a dev-dependency; panicking is how a test helper reports.
#![allow(clippy::panic, clippy::expect_used)]

use std::io::Write as _;
use std::sync::Once;
use tokio::task::JoinError;

/// `[secrets] encryption_key` for tests that need a fixed one (base64 of 32 bytes).
pub const TEST_ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The variable naming the test PostgreSQL server (its `postgres` database).
pub const DATABASE_VAR: &str = "GATEHOUSE_TEST_DATABASE_URL";
/// The variable naming the test Redis server.
pub const REDIS_VAR: &str = "GATEHOUSE_TEST_REDIS_URL";

/// True under `CI=true`, where no storage or cache test may skip.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The test PostgreSQL URL; see [`service_url`].
pub fn postgres_url() -> Option<String> {
    service_url(DATABASE_VAR)
}

/// The test Redis URL; see [`service_url`].
pub fn redis_url() -> Option<String> {
    service_url(REDIS_VAR)
}

/// Both test services, or `None` when either is missing; see [`service_url`].
pub fn postgres_and_redis() -> Option<(String, String)> {
    Some((postgres_url()?, redis_url()?))
}

/// The value of `var` when set. Unset, it fails the test under `CI=true`, and otherwise
/// says once per test binary, on the terminal, that the tests needing it pass without
/// running.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if is_ci() => panic!("CI=true but {var} is not set: these tests are mandatory in CI"),
        _ => {
            announce_skip(var);
            None
        }
    }
}

fn announce_skip(var: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Straight to the process's stderr: libtest captures `eprintln!` of passing tests,
        // and a skip nobody sees is a skip nobody fixes.
        let _ = writeln!(
            std::io::stderr(),
            "note: {var} is not set: the tests that need PostgreSQL or Redis pass here \
             WITHOUT running (set {DATABASE_VAR} and {REDIS_VAR}, or CI=true to require them)"
        );
    });
}

/// `url` with its database name replaced by `name` (the query string is kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let root = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    format!("{root}/{name}{query}")
}

/// Creates a fresh database `gh_test_<uuid>` on the server at `admin_url`; returns its URL
/// and name (drop it with [`drop_database`]).
pub async fn create_database(admin_url: &str) -> (String, String) {
    use sqlx::Connection;
    let name = format!("gh_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {DATABASE_VAR}: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    (with_database(admin_url, &name), name)
}

/// Drops a database made by [`create_database`], ending its connections. Best effort:
/// cleanup must not hide the test's own failure.
pub async fn drop_database(admin_url: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin_url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
        conn.close().await.ok();
    }
}

/// Re-raises a test task's panic (after the caller's cleanup) so the test fails with its
/// own message.
pub fn rethrow(outcome: Result<(), JoinError>) {
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(e) => panic!("test task did not finish: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_only_the_name() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
