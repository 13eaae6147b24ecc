//! [`SettingStore`]: instance settings and server secrets, JSON values by key.

use super::Adapter;
use crate::dialect::Dialect;
use crate::map_err;
use async_trait::async_trait;
use gatehouse_domain::Timestamp;
use gatehouse_domain::ports::{SettingStore, StoreError, StoreResult};

#[async_trait]
impl SettingStore for Adapter {
    async fn setting(&self, key: &str) -> StoreResult<Option<serde_json::Value>> {
        let v: Option<String> =
            sqlx::query_scalar("SELECT value FROM instance_setting WHERE key = $1")
                .bind(key)
                .fetch_optional(self.reader())
                .await
                .map_err(map_err)?;
        Ok(v.and_then(|v| serde_json::from_str(&v).ok()))
    }

    async fn put_setting(
        &self,
        key: &str,
        value: &serde_json::Value,
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO instance_setting (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(value.to_string())
        .bind(now.millis())
        .execute(self.writer())
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn setting_or_insert(
        &self,
        key: &str,
        value: &serde_json::Value,
        now: Timestamp,
    ) -> StoreResult<serde_json::Value> {
        sqlx::query(
            "INSERT INTO instance_setting (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value.to_string())
        .bind(now.millis())
        .execute(self.writer())
        .await
        .map_err(map_err)?;
        let v: String = sqlx::query_scalar("SELECT value FROM instance_setting WHERE key = $1")
            .bind(key)
            .fetch_one(self.writer())
            .await
            .map_err(map_err)?;
        serde_json::from_str(&v).map_err(|e| StoreError::Other(e.to_string()))
    }
}
