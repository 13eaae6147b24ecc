//! Test harness shared by the store's integration tests: one fresh database per test
//! (a SQLite file under the temp dir, or a PostgreSQL database `gh_test_<uuid>`), removed
//! afterwards even when the test panics.

use sqlx::Connection as _;
use std::future::Future;
use tokio::task::JoinError;
use uuid::Uuid;

/// Runs `case` with the URL of a fresh SQLite file under the temp dir, then removes it.
pub async fn with_sqlite_url<F, Fut>(case: F)
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let path = std::env::temp_dir().join(format!("gh_test_{}.db", Uuid::new_v4().simple()));
    let url = format!("sqlite:{}", path.display());
    // The case runs in its own task so that a panic comes back as a value and the cleanup
    // below still runs.
    let outcome = tokio::spawn(case(url)).await;
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", path.display());
        if let Err(e) = std::fs::remove_file(&file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            panic!("cannot remove {file}: {e}");
        }
    }
    rethrow(outcome);
}

/// Runs `case` with the URL of a fresh PostgreSQL database `gh_test_<uuid>`, dropped
/// afterwards. Without a test server (and outside CI) it does nothing.
pub async fn with_postgres_url<F, Fut>(case: F)
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(admin_url) = postgres_url() else {
        return;
    };
    let name = format!("gh_test_{}", Uuid::new_v4().simple());
    admin_sql(&admin_url, &format!("CREATE DATABASE {name}")).await;
    let outcome = tokio::spawn(case(database_url(&admin_url, &name))).await;
    // FORCE ends the pool's connections, which the finished task may not have closed yet.
    admin_sql(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
    rethrow(outcome);
}

/// The PostgreSQL server to test against; its absence fails the run under `CI=true`.
fn postgres_url() -> Option<String> {
    match std::env::var("GATEHOUSE_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true but GATEHOUSE_TEST_DATABASE_URL is not set: the PostgreSQL store \
             tests are mandatory in CI \
             (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
        ),
        _ => None,
    }
}

/// `base` with its database name replaced by `name` (query string kept).
fn database_url(base: &str, name: &str) -> String {
    let (head, query) = base
        .split_once('?')
        .map_or((base, None), |(h, q)| (h, Some(q)));
    let authority = head.find("://").map_or(0, |i| i + 3);
    let root = head[authority..]
        .find('/')
        .map_or(head, |i| &head[..authority + i]);
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

async fn admin_sql(url: &str, sql: &str) {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to GATEHOUSE_TEST_DATABASE_URL: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.ok();
}

/// Re-raises the case's panic (after cleanup) so the test fails with its message.
fn rethrow(outcome: Result<(), JoinError>) {
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(e) => panic!("test task did not finish: {e}"),
        }
    }
}
