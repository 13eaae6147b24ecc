#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Migrations on both engines: a database migrated by the hand-rolled migrations of
//! earlier builds (`gatehouse_migration`, no checksums) opens with its data and keeps
//! working, and a migration changed after it was applied is refused at start, with the
//! PostgreSQL migration lock released.

mod common;

use gatehouse_domain::ids::new_id;
use gatehouse_domain::model::{
    AuditEvent, LoginCommit, NewToken, RefreshPolicy, Rotation, Session, SessionStatus, TokenKind,
};
use gatehouse_domain::ports::{Store, StoreError};
use gatehouse_domain::{Id, Timestamp};
use gatehouse_store::PoolOptions;
use serde_json::json;
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const T0: i64 = 1_800_000_000_000;
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA";

/// A migration file as the hand-rolled migrations listed it: version, name, SQL.
type File = (i64, &'static str, &'static str);

const SQLITE_FILES: [File; 3] = [
    (
        1,
        "core",
        include_str!("../migrations/sqlite/0001_core.sql"),
    ),
    (2, "mfa", include_str!("../migrations/sqlite/0002_mfa.sql")),
    (
        3,
        "tenancy",
        include_str!("../migrations/sqlite/0003_tenancy.sql"),
    ),
];

const POSTGRES_FILES: [File; 3] = [
    (
        1,
        "core",
        include_str!("../migrations/postgres/0001_core.sql"),
    ),
    (
        2,
        "mfa",
        include_str!("../migrations/postgres/0002_mfa.sql"),
    ),
    (
        3,
        "tenancy",
        include_str!("../migrations/postgres/0003_tenancy.sql"),
    ),
];

/// The bookkeeping table of the hand-rolled migrations, as they created it.
const LEGACY_TABLE: &str = "CREATE TABLE IF NOT EXISTS gatehouse_migration (
    version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)";

const LEGACY_RECORD: &str =
    "INSERT INTO gatehouse_migration (version, description, applied_at) VALUES ($1, $2, $3)";

/// The account the old build left behind.
const OLD_ACCOUNT: &str = "00000000-0000-4000-8000-000000000001";

/// Rows written by an old build: an account with a role and a password, and a setting.
/// `uuid` renders an id as the engine's literal.
fn old_rows(uuid: fn(&str) -> String) -> String {
    let (account, credential) = (
        uuid(OLD_ACCOUNT),
        uuid("00000000-0000-4000-8000-000000000002"),
    );
    format!(
        "INSERT INTO account (id, email, username, display_name, status, must_change_password, \
           created_at, updated_at) \
           VALUES ({account}, 'old@example.com', 'old', 'Old Timer', 'ACTIVE', FALSE, {T0}, {T0}); \
         INSERT INTO account_role (account_id, role) VALUES ({account}, 'admin'); \
         INSERT INTO credential (id, account_id, type, secret, status, created_at, updated_at) \
           VALUES ({credential}, {account}, 'PASSWORD', '{HASH}', 'ACTIVE', {T0}, {T0}); \
         INSERT INTO instance_setting (key, value, updated_at) \
           VALUES ('instance', '{{\"singleSession\":true}}', {T0})"
    )
}

/// A SQLite database as the old build left it: the files applied by hand, each in its
/// transaction with its bookkeeping row, then some rows.
async fn create_old_sqlite(url: &str) {
    let options = SqliteConnectOptions::from_str(url)
        .unwrap()
        .create_if_missing(true)
        .foreign_keys(true);
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::query(LEGACY_TABLE).execute(&mut conn).await.unwrap();
    for (version, name, sql) in SQLITE_FILES {
        let mut tx = conn.begin().await.unwrap();
        sqlx::raw_sql(sql).execute(&mut *tx).await.unwrap();
        sqlx::query(LEGACY_RECORD)
            .bind(version)
            .bind(name)
            .bind(T0)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let rows = old_rows(|id| format!("X'{}'", id.replace('-', "")));
    sqlx::raw_sql(sqlx::AssertSqlSafe(rows))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// [`create_old_sqlite`] for PostgreSQL.
async fn create_old_postgres(url: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query(LEGACY_TABLE).execute(&mut conn).await.unwrap();
    for (version, name, sql) in POSTGRES_FILES {
        let mut tx = conn.begin().await.unwrap();
        sqlx::raw_sql(sql).execute(&mut *tx).await.unwrap();
        sqlx::query(LEGACY_RECORD)
            .bind(version)
            .bind(name)
            .bind(T0)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let rows = old_rows(|id| format!("'{id}'::uuid"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(rows))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    gatehouse_store::connect(url, &PoolOptions::default()).await
}

fn audit(action: &str, at: Timestamp) -> AuditEvent {
    AuditEvent {
        id: new_id(),
        at,
        actor_id: None,
        action: action.into(),
        target_id: None,
        outcome: "success".into(),
        reason: None,
        ip: None,
        user_agent: None,
        request_id: None,
        details: json!({}),
    }
}

fn token(now: Timestamp) -> NewToken {
    NewToken {
        hash: Uuid::new_v4().as_bytes().to_vec(),
        expires_at: now.plus(Duration::from_secs(3600)),
    }
}

/// The old rows are there, and the store reads and writes on top of them: the login's
/// statement batch / writable CTE and the refresh rotation hot path included.
async fn assert_old_data_and_a_working_store(store: &dyn Store) {
    let old_id: Id = Uuid::parse_str(OLD_ACCOUNT).unwrap();
    let old = store
        .account_by_email("old@example.com")
        .await
        .unwrap()
        .expect("the old account");
    assert_eq!(old.id, old_id);
    assert_eq!(old.username.as_deref(), Some("old"));
    assert_eq!(old.display_name.as_deref(), Some("Old Timer"));
    assert_eq!(old.roles, vec!["admin".to_string()]);
    assert_eq!(old.created_at, Timestamp::from_millis(T0));
    assert_eq!(
        store.password_hash(old_id).await.unwrap().as_deref(),
        Some(HASH)
    );
    assert_eq!(
        store.setting("instance").await.unwrap(),
        Some(json!({"singleSession": true}))
    );
    let seeded = store.role_for(None, "admin").await.unwrap();
    assert!(
        seeded.is_some(),
        "the tenancy migration's seed rows are kept"
    );

    let now = Timestamp::from_millis(T0 + 1000);
    let first = token(now);
    let session = Session {
        id: new_id(),
        account_id: old_id,
        status: SessionStatus::Active,
        auth_methods: vec!["pwd".into()],
        ip: None,
        user_agent: None,
        created_at: now,
        last_seen_at: now,
        expires_at: now.plus(Duration::from_secs(86_400)),
        revoked_at: None,
        workspace_id: None,
        branch_id: None,
    };
    let commit = LoginCommit {
        session: session.clone(),
        token: first.clone(),
        token_kind: TokenKind::Refresh,
        rehash: None,
        revoke_others: false,
        audit: audit("login", now),
    };
    store.commit_login(&commit).await.unwrap();
    let later = Timestamp::from_millis(T0 + 2000);
    let policy = RefreshPolicy {
        now: later,
        idle_ms: 3_600_000,
    };
    match store
        .rotate_refresh(&first.hash, &token(later), policy)
        .await
        .unwrap()
    {
        Rotation::Rotated(s) => assert_eq!(s.id, session.id),
        other => panic!("expected a rotation, got {other:?}"),
    }
    let relogged = store.account_by_id(old_id).await.unwrap().unwrap();
    assert_eq!(relogged.last_login_at, Some(now));
}

/// Opens the old database twice: the first start adopts the old bookkeeping, the second
/// checks the recorded checksums against the embedded files (a wrong checksum from the
/// adoption would refuse it).
async fn upgrade(url: String) {
    let store = open(&url).await.expect("open the old database");
    assert_old_data_and_a_working_store(&*store).await;
    drop(store);
    let again = open(&url).await.expect("open it again");
    let old_id: Id = Uuid::parse_str(OLD_ACCOUNT).unwrap();
    assert!(again.account_by_id(old_id).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_by_hand_upgrades_in_place_sqlite() {
    common::with_sqlite_url(|url| async move {
        create_old_sqlite(&url).await;
        upgrade(url.clone()).await;
        let options = SqliteConnectOptions::from_str(&url).unwrap();
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        let recorded: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        // Adopted 1–3 as they were, then applied what came after.
        assert_eq!(
            recorded,
            vec![(1, true), (2, true), (3, true), (4, true), (7, true)]
        );
        conn.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_by_hand_upgrades_in_place_postgres() {
    common::with_postgres_url(|url| async move {
        create_old_postgres(&url).await;
        upgrade(url.clone()).await;
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let recorded: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        // Adopted 1–3 as they were, then applied what came after.
        assert_eq!(
            recorded,
            vec![(1, true), (2, true), (3, true), (4, true), (7, true)]
        );
        conn.close().await.unwrap();
    })
    .await;
}

/// The start refused because migration 2's recorded checksum no longer matches.
fn assert_refused_as_changed(opened: Result<Arc<dyn Store>, StoreError>) {
    match opened {
        Err(StoreError::Other(message)) => {
            assert!(
                message.contains("migration 2") && message.contains("checksum"),
                "{message}"
            );
        }
        Err(other) => panic!("expected a checksum error, got {other:?}"),
        Ok(_) => panic!("a changed migration must be refused"),
    }
}

const TAMPER: &str = "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_migration_is_refused_sqlite() {
    common::with_sqlite_url(|url| async move {
        drop(open(&url).await.expect("a fresh database"));
        let options = SqliteConnectOptions::from_str(&url).unwrap();
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query(TAMPER)
            .bind(vec![0_u8; 48])
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();

        assert_refused_as_changed(open(&url).await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_migration_is_refused_and_the_lock_released_postgres() {
    common::with_postgres_url(|url| async move {
        drop(open(&url).await.expect("a fresh database"));
        let mut conn = PgConnection::connect(&url).await.unwrap();
        sqlx::query(TAMPER)
            .bind(vec![0_u8; 48])
            .execute(&mut conn)
            .await
            .unwrap();

        assert_refused_as_changed(open(&url).await);

        let advisory_locks: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            advisory_locks, 0,
            "the migration lock outlived the failed start"
        );
        conn.close().await.unwrap();
    })
    .await;
}

/// A database whose old bookkeeping lists a migration this build does not have was
/// migrated by a newer build: refused rather than half-adopted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_old_migration_is_refused_sqlite() {
    common::with_sqlite_url(|url| async move {
        create_old_sqlite(&url).await;
        let options = SqliteConnectOptions::from_str(&url).unwrap();
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query(LEGACY_RECORD)
            .bind(99_i64)
            .bind("from the future")
            .bind(T0)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();

        match open(&url).await {
            Err(StoreError::Other(message)) => {
                assert!(message.contains("migration 99"), "{message}");
            }
            Err(other) => panic!("expected a refusal, got {other:?}"),
            Ok(_) => panic!("an unknown migration must be refused"),
        }
    })
    .await;
}
