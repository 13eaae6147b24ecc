//! [`KeyStore`]: token-signing keys.

use super::Adapter;
use super::common::Tx;
use super::rows::signing_key_row;
use crate::dialect::Dialect;
use crate::map_err;
use async_trait::async_trait;
use gatehouse_domain::Timestamp;
use gatehouse_domain::model::SigningKey;
use gatehouse_domain::ports::{KeyStore, StoreResult};

#[async_trait]
impl KeyStore for Adapter {
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_key, public_key, created_at, retired_at FROM signing_key \
             ORDER BY created_at DESC, kid",
        )
        .fetch_all(self.reader())
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(signing_key_row)
            .collect::<Result<_, _>>()
            .map_err(map_err)
    }

    async fn rotate_signing_key(&self, key: &SigningKey, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        // Mark the store initialized too, so a racing first start adds no second key.
        sqlx::query(
            "INSERT INTO instance_setting (key, value, updated_at) VALUES ('signing_key.initialized', 'true', $1) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query("UPDATE signing_key SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(now.millis())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_key(&mut tx, key).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn insert_first_signing_key(&self, key: &SigningKey) -> StoreResult<()> {
        let mut tx = self.writer().begin().await.map_err(map_err)?;
        // A sentinel row serializes racing first starts: only one inserts it.
        let first = sqlx::query(
            "INSERT INTO instance_setting (key, value, updated_at) VALUES ('signing_key.initialized', 'true', $1) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key.created_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected()
            == 1;
        if first {
            insert_key(&mut tx, key).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn reseal_signing_key(&self, kid: &str, old: &[u8], new: &[u8]) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE signing_key SET private_key = $1 WHERE kid = $2 AND private_key = $3",
        )
        .bind(new)
        .bind(kid)
        .bind(old)
        .execute(self.writer())
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }
}

/// Inserts `key` as a live (unretired) signing key.
async fn insert_key(tx: &mut Tx<'_>, key: &SigningKey) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO signing_key (kid, alg, private_key, public_key, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&key.kid)
    .bind(&key.alg)
    .bind(&key.private_key)
    .bind(&key.public_key)
    .bind(key.created_at.millis())
    .execute(&mut **tx)
    .await
    .map(|_| ())
}
