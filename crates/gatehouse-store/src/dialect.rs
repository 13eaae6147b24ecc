//! The contract between the SQL shared by both backends (`src/sql/*.rs`) and each backend
//! (`sqlite.rs`, `postgres.rs`): everything that differs between them, named in one trait,
//! so a backend that leaves a piece out does not compile.
//!
//! The shared SQL is written once in portable SQL (`$n` placeholders, `RETURNING`, partial
//! indexes, `ON CONFLICT`) against the concrete names its parent module gives it: the
//! adapter type `Adapter`, which implements [`Dialect`], and (derived from it, in
//! `sql/common.rs`) the driver `Db`. Each backend module includes every file of `src/sql/`
//! as a child module (`#[path = "sql/accounts.rs"] mod accounts;`), so the same source is
//! compiled once for SQLite and once for PostgreSQL, with concrete sqlx types and no
//! generic bounds.

use gatehouse_domain::Timestamp;
use gatehouse_domain::model::{NewToken, Session};
use gatehouse_domain::ports::StoreResult;
use std::future::Future;

/// What a backend supplies to the shared SQL.
pub(crate) trait Dialect: Send + Sync {
    /// The sqlx driver.
    type Db: sqlx::Database;

    /// Short name for logs and `/ready` (`Store::backend`).
    const NAME: &'static str;

    /// The aggregate joining an account's `role` values with commas, e.g.
    /// `string_agg(role, ',')`; `account_row` splits them again.
    const ROLES_AGG: &'static str;

    /// Appended to a `SELECT` to lock the rows it reads until the transaction ends
    /// (` FOR UPDATE`); empty where the single writer already serializes transactions.
    const LOCK_ROWS: &'static str;

    /// Appended to a `SELECT` in a claiming subquery so concurrent claimers skip the rows
    /// another one is taking (` FOR UPDATE SKIP LOCKED`); empty where the single writer
    /// already serializes them.
    const SKIP_LOCKED: &'static str;

    /// A login's writes (session, token, last-login stamps, audit row) in one round trip,
    /// with the parameters `$1`..`$24` that `commit_login` binds.
    const LOGIN_WRITES: &'static str;

    /// The pool writes go through.
    fn writer(&self) -> &sqlx::Pool<Self::Db>;

    /// The pool reads go through.
    fn reader(&self) -> &sqlx::Pool<Self::Db>;

    /// The common case of a refresh rotation, in as few trips as the backend allows: if
    /// `old_hash` is an ACTIVE, unexpired refresh token of an ACTIVE, unexpired session, it
    /// is spent, `new` stored in its place (expiring no later than the session) and the
    /// session touched, atomically; the session is returned. `None`: nothing was changed,
    /// and `rotate_refresh` works out why.
    fn rotate_fast(
        &self,
        now: Timestamp,
        old_hash: &[u8],
        new: &NewToken,
    ) -> impl Future<Output = StoreResult<Option<Session>>> + Send;
}
