//! Schema migrations: the SQL files under `migrations/<backend>/`, embedded in the binary
//! and applied by sqlx's migrator, which records each one with its SHA-384 checksum in
//! `_sqlx_migrations` and refuses to start when an applied file has changed since.
//!
//! The migrator is built at run time from `include_str!`, so the sqlx `macros` feature
//! (and the build time it costs) is not needed.
//!
//! Databases created before the migrator kept their own list, `gatehouse_migration`
//! (version, description, applied_at; no checksum). On start those versions are copied into
//! sqlx's table with the checksums of the embedded files, in one transaction, before the
//! migrator runs: the files have not changed since they were first applied, so the embedded
//! text is what those databases ran. `gatehouse_migration` itself is left as it is.

use crate::map_err;
use gatehouse_domain::ports::StoreError;
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType, Migrator};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection as _, SqlSafeStr as _};

/// One embedded migration file.
struct File {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

const SQLITE: &[File] = &[
    File {
        version: 1,
        description: "core",
        sql: include_str!("../migrations/sqlite/0001_core.sql"),
    },
    File {
        version: 2,
        description: "mfa",
        sql: include_str!("../migrations/sqlite/0002_mfa.sql"),
    },
    File {
        version: 3,
        description: "tenancy",
        sql: include_str!("../migrations/sqlite/0003_tenancy.sql"),
    },
    File {
        version: 4,
        description: "revocations",
        sql: include_str!("../migrations/sqlite/0004_revocations.sql"),
    },
    File {
        version: 5,
        description: "invitations denylist",
        sql: include_str!("../migrations/sqlite/0005_invitations.sql"),
    },
    File {
        version: 6,
        description: "tokens",
        sql: include_str!("../migrations/sqlite/0006_tokens.sql"),
    },
    File {
        version: 7,
        description: "sso",
        sql: include_str!("../migrations/sqlite/0007_sso.sql"),
    },
    File {
        version: 8,
        description: "mail",
        sql: include_str!("../migrations/sqlite/0008_mail.sql"),
    },
];

const POSTGRES: &[File] = &[
    File {
        version: 1,
        description: "core",
        sql: include_str!("../migrations/postgres/0001_core.sql"),
    },
    File {
        version: 2,
        description: "mfa",
        sql: include_str!("../migrations/postgres/0002_mfa.sql"),
    },
    File {
        version: 3,
        description: "tenancy",
        sql: include_str!("../migrations/postgres/0003_tenancy.sql"),
    },
    File {
        version: 4,
        description: "revocations",
        sql: include_str!("../migrations/postgres/0004_revocations.sql"),
    },
    File {
        version: 5,
        description: "invitations denylist",
        sql: include_str!("../migrations/postgres/0005_invitations.sql"),
    },
    File {
        version: 6,
        description: "tokens",
        sql: include_str!("../migrations/postgres/0006_tokens.sql"),
    },
    File {
        version: 7,
        description: "sso",
        sql: include_str!("../migrations/postgres/0007_sso.sql"),
    },
    File {
        version: 8,
        description: "mail",
        sql: include_str!("../migrations/postgres/0008_mail.sql"),
    },
];

/// sqlx's bookkeeping table (its default name).
const TABLE: &str = "_sqlx_migrations";

/// Arbitrary key for `pg_advisory_lock` around adoption and migrations. The key the
/// hand-rolled migrations used, so an instance of an older build starting during a rolling
/// upgrade waits for this one instead of racing it.
const MIGRATION_LOCK: i64 = 0x6761_7465_686f;

/// The migrator for one backend's files. Its own locking is off: the callers below hold
/// the lock that also covers the adoption of the old bookkeeping.
fn migrator(files: &[File]) -> Migrator {
    let migrations = files
        .iter()
        .map(|f| {
            Migration::new(
                f.version,
                f.description.into(),
                MigrationType::Simple,
                f.sql.into_sql_str(),
                false,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.set_locking(false);
    migrator
}

/// Brings a SQLite database up to date on the store's single writer connection. The
/// adoption runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock before
/// reading, so two processes opening the same file cannot both adopt.
pub(crate) async fn sqlite(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    let legacy_tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'gatehouse_migration'",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    if legacy_tables > 0 {
        let legacy = sqlx::query_scalar("SELECT version FROM gatehouse_migration")
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        adopt(&mut *tx, SQLITE, &legacy).await?;
    }
    tx.commit().await.map_err(map_err)?;
    run(conn, SQLITE).await
}

/// Brings a PostgreSQL database up to date under an advisory lock, so instances starting
/// together do not race. The lock is released on every path: explicitly after the work,
/// whether it failed or not; and, should that fail too (a broken connection), by the end of
/// the session, which is why `conn` must be a connection of its own, never one that goes
/// back to a pool.
pub(crate) async fn postgres(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    let migrated = postgres_locked(conn).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(map_err);
    // The migration's own error says more than a failed unlock after it.
    migrated?;
    unlocked.map(|_| ())
}

/// [`postgres`] with the lock held.
async fn postgres_locked(conn: &mut PgConnection) -> Result<(), StoreError> {
    let mut tx = conn.begin().await.map_err(map_err)?;
    let has_legacy: bool =
        sqlx::query_scalar("SELECT to_regclass('gatehouse_migration') IS NOT NULL")
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
    if has_legacy {
        let legacy = sqlx::query_scalar("SELECT version FROM gatehouse_migration")
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        adopt(&mut *tx, POSTGRES, &legacy).await?;
    }
    tx.commit().await.map_err(map_err)?;
    run(conn, POSTGRES).await
}

/// Applies the pending `files` and checks the checksums of the applied ones. Through
/// `run_direct`, sqlx's own way around `Migrator::run`'s `Acquire` bound, under which the
/// caller's future is not provably `Send` (it could not be spawned).
async fn run<C: Migrate>(conn: &mut C, files: &[File]) -> Result<(), StoreError> {
    migrator(files)
        .run_direct(None, conn, false)
        .await
        .map_err(migrate_err)
}

/// Records the `legacy` versions (applied by the hand-rolled migrations) in sqlx's table
/// with the checksums of the embedded files, without running them again. `conn` is inside
/// the caller's transaction. A version this build does not embed is refused: the database
/// was migrated by a newer build.
async fn adopt<C: Migrate>(conn: &mut C, files: &[File], legacy: &[i64]) -> Result<(), StoreError> {
    let migrator = migrator(files);
    conn.ensure_migrations_table(TABLE)
        .await
        .map_err(migrate_err)?;
    let recorded = conn
        .list_applied_migrations(TABLE)
        .await
        .map_err(migrate_err)?;
    for version in legacy {
        if recorded.iter().any(|m| m.version == *version) {
            continue;
        }
        let Some(migration) = migrator.iter().find(|m| m.version == *version) else {
            return Err(StoreError::Other(format!(
                "gatehouse_migration lists migration {version}, which this build does not \
                 have: the database was migrated by a newer Gatehouse"
            )));
        };
        conn.skip(TABLE, migration).await.map_err(migrate_err)?;
        tracing::info!(
            version,
            description = %migration.description,
            "adopted migration applied before checksums were recorded"
        );
    }
    Ok(())
}

/// Maps a migrator error, keeping the driver's classification (a lost connection is still
/// `Unavailable`) and saying which migration failed and how.
fn migrate_err(e: MigrateError) -> StoreError {
    match e {
        MigrateError::Execute(e) => map_err(e),
        MigrateError::ExecuteMigration(e, version) => match map_err(e) {
            StoreError::Unavailable(m) => {
                StoreError::Unavailable(format!("while applying migration {version}: {m}"))
            }
            StoreError::Other(m) => {
                StoreError::Other(format!("while applying migration {version}: {m}"))
            }
            StoreError::Conflict => StoreError::Other(format!(
                "while applying migration {version}: unique constraint violated"
            )),
            e @ StoreError::LastAdmin => {
                StoreError::Other(format!("while applying migration {version}: {e}"))
            }
        },
        MigrateError::VersionMismatch(version) => StoreError::Other(format!(
            "migration {version} was changed after it was applied: its checksum in {TABLE} \
             differs from the embedded file; restore the file and put the change in a new \
             migration"
        )),
        MigrateError::VersionMissing(version) => StoreError::Other(format!(
            "{TABLE} lists migration {version}, which this build does not have: the database \
             was migrated by a newer Gatehouse"
        )),
        other => StoreError::Other(format!("migrations: {other}")),
    }
}

#[cfg(test)]
mod tests {
    //! The PostgreSQL lock on the error path, seen from the migration's own session: the
    //! store's start closes that session anyway, which would hide a missing unlock from a
    //! test that only looks after the start.

    use super::*;

    /// The test server, or `None` outside CI without one.
    fn admin_url() -> Option<String> {
        match std::env::var("GATEHOUSE_TEST_DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => Some(url),
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true but GATEHOUSE_TEST_DATABASE_URL is not set")
            }
            _ => None,
        }
    }

    async fn admin_sql(admin: &str, sql: String) {
        let mut conn = PgConnection::connect(admin).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }

    async fn advisory_locks_held(conn: &mut PgConnection) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
        )
        .fetch_one(conn)
        .await
        .unwrap()
    }

    /// Migrates, has migration 1 "changed", migrates again on the same session.
    async fn refused_on_one_session(url: String) {
        let mut conn = PgConnection::connect(&url).await.unwrap();
        postgres(&mut conn).await.unwrap();
        assert_eq!(advisory_locks_held(&mut conn).await, 0);

        sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 1")
            .bind(vec![0_u8; 48])
            .execute(&mut conn)
            .await
            .unwrap();
        let refused = postgres(&mut conn).await;
        assert!(
            matches!(&refused, Err(StoreError::Other(m)) if m.contains("migration 1")),
            "{refused:?}"
        );
        assert_eq!(
            advisory_locks_held(&mut conn).await,
            0,
            "the session whose migration failed still holds the migration lock"
        );
        conn.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_postgres_migration_releases_the_lock_it_took() {
        let Some(admin) = admin_url() else {
            return;
        };
        let name = format!("gh_test_{}", uuid::Uuid::new_v4().simple());
        admin_sql(&admin, format!("CREATE DATABASE {name}")).await;
        // The admin URL with its database name replaced (query string kept).
        let (head, query) = admin
            .split_once('?')
            .map_or((admin.as_str(), String::new()), |(h, q)| {
                (h, format!("?{q}"))
            });
        let root = head.rsplit_once('/').map_or(head, |(root, _)| root);
        let url = format!("{root}/{name}{query}");
        // Run in a task so that a failed assertion still drops the database below.
        let outcome = tokio::spawn(refused_on_one_session(url)).await;
        admin_sql(
            &admin,
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}
