//! Seeding: accounts (with the `user` role, account 0 also `admin`, and one Argon2id
//! password credential, the same hash for all), one active session each and that session's refresh token, written straight
//! into a migrated database with batched multi-row INSERTs (schema: gatehouse-store's
//! `migrations/*/0001_core.sql`).

use anyhow::Result;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use std::str::FromStr;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Password of every seeded account.
pub const PASSWORD: &str = "Bench-horse-battery-8132";

/// A seeded population: every value is derived from the index, so nothing is kept in memory.
#[derive(Clone)]
pub struct Population {
    pub n: usize,
    nonce: String,
    account_base: u128,
    credential_base: u128,
    session_base: u128,
}

impl Population {
    pub fn new(n: usize) -> Self {
        // UUIDv7 bases: ids ascend like the server's own (time-ordered) ids.
        let base = |_: u8| Uuid::now_v7().as_u128() & !0xffff_ffff_u128;
        let account_base = base(0);
        std::thread::sleep(Duration::from_millis(2));
        let credential_base = base(1);
        std::thread::sleep(Duration::from_millis(2));
        let session_base = base(2);
        Self {
            n,
            nonce: Uuid::new_v4().simple().to_string(),
            account_base,
            credential_base,
            session_base,
        }
    }

    pub fn account_id(&self, i: usize) -> Uuid {
        Uuid::from_u128(self.account_base + i as u128)
    }
    fn credential_id(&self, i: usize) -> Uuid {
        Uuid::from_u128(self.credential_base + i as u128)
    }
    fn session_id(&self, i: usize) -> Uuid {
        Uuid::from_u128(self.session_base + i as u128)
    }
    pub fn email(&self, i: usize) -> String {
        format!("u{i}@bench.test")
    }
    fn username(&self, i: usize) -> String {
        format!("u{i}")
    }
    /// The refresh token of session `i` (256 bits, base64url, like the server's).
    pub fn refresh_token(&self, i: usize) -> String {
        b64url(&digest(&format!("{}:{i}", self.nonce)))
    }
}

/// Rows written and the time it took.
pub struct Seeded {
    pub rows: u64,
    pub took: Duration,
}

impl Seeded {
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

/// SHA-256 of a token: what the server stores instead of it (as gatehouse-core does).
fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Rows per INSERT statement and statements per transaction.
const ROWS_PER_INSERT: usize = 1000;
const ROWS_PER_TX: usize = 50_000;

macro_rules! seed_all {
    ($db:ty, $conn:expr, $pop:expr, $hash:expr) => {{
        let pop: &Population = $pop;
        let hash: &str = $hash;
        let now = now_ms();
        let session_exp = now + 30 * 24 * 3600 * 1000;
        let token_exp = now + 7 * 24 * 3600 * 1000;
        let started = Instant::now();
        let mut rows = 0u64;
        let mut lo = 0;
        while lo < pop.n {
            let hi = (lo + ROWS_PER_TX).min(pop.n);
            let mut tx = sqlx::Connection::begin(&mut *$conn).await?;
            let mut a = lo;
            while a < hi {
                let b = (a + ROWS_PER_INSERT).min(hi);
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO account (id, email, username, status, must_change_password, created_at, updated_at) ",
                );
                q.push_values(a..b, |mut r, i| {
                    r.push_bind(pop.account_id(i))
                        .push_bind(pop.email(i))
                        .push_bind(pop.username(i))
                        .push("'ACTIVE'")
                        .push_bind(false)
                        .push_bind(now)
                        .push_bind(now);
                });
                q.build().execute(&mut *tx).await?;
                let mut q = sqlx::QueryBuilder::<$db>::new("INSERT INTO account_role (account_id, role) ");
                q.push_values(a..b, |mut r, i| {
                    r.push_bind(pop.account_id(i)).push("'user'");
                });
                q.build().execute(&mut *tx).await?;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO credential (id, account_id, type, secret, status, created_at, updated_at) ",
                );
                q.push_values(a..b, |mut r, i| {
                    r.push_bind(pop.credential_id(i))
                        .push_bind(pop.account_id(i))
                        .push("'PASSWORD'")
                        .push_bind(hash)
                        .push("'ACTIVE'")
                        .push_bind(now)
                        .push_bind(now);
                });
                q.build().execute(&mut *tx).await?;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO auth_session (id, account_id, status, auth_methods, user_agent, created_at, last_seen_at, expires_at) ",
                );
                q.push_values(a..b, |mut r, i| {
                    r.push_bind(pop.session_id(i))
                        .push_bind(pop.account_id(i))
                        .push("'ACTIVE'")
                        .push("'[\"pwd\"]'")
                        .push("'gatehouse-bench'")
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(session_exp);
                });
                q.build().execute(&mut *tx).await?;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO session_token (hash, session_id, kind, status, created_at, expires_at) ",
                );
                q.push_values(a..b, |mut r, i| {
                    r.push_bind(digest(&pop.refresh_token(i)))
                        .push_bind(pop.session_id(i))
                        .push("'REFRESH'")
                        .push("'ACTIVE'")
                        .push_bind(now)
                        .push_bind(token_exp);
                });
                q.build().execute(&mut *tx).await?;
                rows += 5 * (b - a) as u64;
                a = b;
            }
            tx.commit().await?;
            lo = hi;
        }
        // Account 0 is also an admin: the introspection scenario creates its service
        // account and API key with it.
        if pop.n > 0 {
            sqlx::query("INSERT INTO account_role (account_id, role) VALUES ($1, 'admin')")
                .bind(pop.account_id(0))
                .execute(&mut *$conn)
                .await?;
        }
        Ok(Seeded {
            rows,
            took: started.elapsed(),
        })
    }};
}

/// Seeds a migrated SQLite file (the server must not be running).
pub async fn sqlite(url: &str, pop: &Population, hash: &str) -> Result<Seeded> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let opts = SqliteConnectOptions::from_str(url)?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off)
        .foreign_keys(false)
        .pragma("cache_size", "-262144");
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&opts).await?;
    let seeded: Result<Seeded> = seed_all!(sqlx::Sqlite, &mut conn, pop, hash);
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    sqlx::Connection::close(conn).await?;
    seeded
}

/// Seeds a migrated PostgreSQL database.
pub async fn postgres(url: &str, pop: &Population, hash: &str) -> Result<Seeded> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await?;
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut conn)
        .await?;
    let seeded: Result<Seeded> = seed_all!(sqlx::Postgres, &mut conn, pop, hash);
    sqlx::query("ANALYZE").execute(&mut conn).await?;
    sqlx::Connection::close(conn).await?;
    seeded
}
