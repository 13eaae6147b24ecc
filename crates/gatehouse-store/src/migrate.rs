//! Versioned migrations, embedded in the binary, applied in order, each in a transaction.

/// One migration: version, name, SQL.
pub(crate) type Migration = (i64, &'static str, &'static str);

pub(crate) const SQLITE: &[Migration] = &[
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

pub(crate) const POSTGRES: &[Migration] = &[
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

pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS gatehouse_migration (
    version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// Applies what is missing on `conn` (the caller holds whatever lock makes it exclusive).
macro_rules! apply {
    ($conn:expr, $list:expr) => {{
        use sqlx::{Connection as _, Row as _};
        sqlx::query(crate::migrate::CREATE_TABLE).execute(&mut *$conn).await.map_err(crate::map_err)?;
        let rows = sqlx::query("SELECT version FROM gatehouse_migration")
            .fetch_all(&mut *$conn)
            .await
            .map_err(crate::map_err)?;
        let done: Vec<i64> = rows.iter().filter_map(|r| r.try_get::<i64, _>(0).ok()).collect();
        let mut applied = 0usize;
        for (version, name, sql) in $list {
            if done.contains(version) {
                continue;
            }
            let mut tx = $conn.begin().await.map_err(crate::map_err)?;
            sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(crate::map_err)?;
            sqlx::query("INSERT INTO gatehouse_migration (version, description, applied_at) VALUES ($1, $2, $3)")
                .bind(version)
                .bind(name)
                .bind(crate::migrate::now_ms())
                .execute(&mut *tx)
                .await
                .map_err(crate::map_err)?;
            tx.commit().await.map_err(crate::map_err)?;
            tracing::info!(version, name, "applied migration");
            applied += 1;
        }
        Ok::<usize, StoreError>(applied)
    }};
}
pub(crate) use apply;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
