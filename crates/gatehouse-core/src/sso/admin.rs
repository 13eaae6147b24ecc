//! Providers stored through the admin API (`settings:write`): the same keys as
//! `[[sso.providers]]`, the client secret sealed with `secrets.encryption_key` and never
//! returned. Providers from the configuration file are listed but read-only.

use super::config::ProviderConfig;
use crate::audit::{AuditExt, event};
use crate::seal::{self, Purpose};
use crate::service::{RequestMeta, Service};
use gatehouse_domain::sso::StoredProvider;
use gatehouse_domain::{AppError, Code, FieldError, Id, Secret};
use serde_json::{Value, json};

/// A provider as the admin API shows it: no secret, only whether one is set.
fn view(p: &ProviderConfig, source: &str) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("client_secret");
        o.insert("has_client_secret".into(), json!(p.client_secret.is_some()));
        o.insert("source".into(), json!(source));
    }
    v
}

/// The settings column: everything but the secret.
fn settings_of(p: &ProviderConfig) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("client_secret");
    }
    v
}

/// A body that does not describe a provider: the field named, never the value.
fn invalid(field: &str) -> AppError {
    AppError::validation(vec![FieldError::new(field, "invalid")])
}

fn parse(body: Value) -> Result<ProviderConfig, AppError> {
    let p: ProviderConfig = serde_json::from_value(body).map_err(|e| {
        // serde names the field in its message ("unknown field `x`", "missing field `x`").
        let msg = e.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .filter(|f| f.len() <= 40 && f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or("body")
            .to_string();
        invalid(&field)
    })?;
    p.validate().map_err(|(k, _)| invalid(&k))?;
    Ok(p)
}

impl Service {
    /// Opens a stored provider: its settings plus the unsealed client secret.
    pub(crate) fn open_stored(&self, s: &StoredProvider) -> Result<ProviderConfig, AppError> {
        let mut p: ProviderConfig = serde_json::from_value(s.settings.clone()).map_err(|e| {
            AppError::internal(
                Code::INTERNAL_ERROR,
                format!("stored SSO provider {} does not parse: {e}", s.id),
            )
        })?;
        p.client_secret = if s.sealed_secret.is_empty() {
            None
        } else {
            let key = self.secrets_key()?;
            let plain = seal::open(&key, Purpose::SsoClientSecret(&s.id), &s.sealed_secret)?;
            Some(Secret::new(String::from_utf8_lossy(&plain).into_owned()))
        };
        Ok(p)
    }

    fn seal_secret(&self, p: &ProviderConfig) -> Result<Vec<u8>, AppError> {
        match &p.client_secret {
            Some(s) => seal::seal(
                &self.secrets_key()?,
                Purpose::SsoClientSecret(&p.id),
                s.expose().as_bytes(),
            ),
            None => Ok(Vec::new()),
        }
    }

    /// Every provider (configured and stored), without secrets.
    pub async fn sso_admin_list(&self) -> Result<Vec<Value>, AppError> {
        let mut out: Vec<Value> = self
            .cfg
            .sso
            .providers
            .iter()
            .map(|p| view(p, "config"))
            .collect();
        for s in self.store.stored_providers().await? {
            if self.cfg.sso.providers.iter().any(|p| p.id == s.id) {
                continue;
            }
            out.push(view(&self.open_stored(&s)?, "database"));
        }
        // Refresh the sign-in page's buttons while at it.
        let _ = self.sso_providers().await;
        Ok(out)
    }

    /// One provider, without its secret.
    pub async fn sso_admin_get(&self, id: &str) -> Result<Value, AppError> {
        if let Some(p) = self.cfg.sso.providers.iter().find(|p| p.id == id) {
            return Ok(view(p, "config"));
        }
        let s = self
            .store
            .stored_provider(id)
            .await?
            .ok_or(Code::NOT_FOUND)?;
        Ok(view(&self.open_stored(&s)?, "database"))
    }

    /// Stores a new provider.
    pub async fn sso_admin_create(
        &self,
        actor: Id,
        body: Value,
        meta: &RequestMeta,
    ) -> Result<Value, AppError> {
        let p = parse(body)?;
        if self.cfg.sso.providers.iter().any(|c| c.id == p.id) {
            return Err(Code::CONFLICT.into());
        }
        let now = self.now();
        let stored = StoredProvider {
            id: p.id.clone(),
            settings: settings_of(&p),
            sealed_secret: self.seal_secret(&p)?,
            created_at: now,
            updated_at: now,
        };
        let audit = event(meta, now, "admin.sso_provider.create", "success")
            .actor(Some(actor))
            .details(json!({ "provider": p.id, "kind": p.kind.as_str() }));
        self.store.create_stored_provider(&stored, &audit).await?;
        let _ = self.sso_providers().await;
        Ok(view(&p, "database"))
    }

    /// Changes a stored provider: the keys given replace the stored ones (`id` stays).
    pub async fn sso_admin_update(
        &self,
        actor: Id,
        id: &str,
        patch: Value,
        meta: &RequestMeta,
    ) -> Result<Value, AppError> {
        if self.cfg.sso.providers.iter().any(|c| c.id == id) {
            // Configured providers are read-only at run time.
            return Err(Code::CONFLICT.into());
        }
        let Value::Object(patch) = patch else {
            return Err(invalid("body"));
        };
        if patch.get("id").is_some_and(|v| v != id) {
            return Err(invalid("id"));
        }
        let s = self
            .store
            .stored_provider(id)
            .await?
            .ok_or(Code::NOT_FOUND)?;
        let current = self.open_stored(&s)?;
        let mut merged = settings_of(&current);
        if let Some(o) = merged.as_object_mut() {
            for (k, v) in patch {
                o.insert(k, v);
            }
        }
        let mut p = parse(merged)?;
        if p.client_secret.is_none() {
            p.client_secret = current.client_secret.clone();
        }
        let now = self.now();
        let stored = StoredProvider {
            id: p.id.clone(),
            settings: settings_of(&p),
            sealed_secret: self.seal_secret(&p)?,
            created_at: s.created_at,
            updated_at: now,
        };
        let audit = event(meta, now, "admin.sso_provider.update", "success")
            .actor(Some(actor))
            .details(json!({ "provider": p.id }));
        if !self.store.update_stored_provider(&stored, &audit).await? {
            return Err(Code::NOT_FOUND.into());
        }
        let _ = self.sso_providers().await;
        Ok(view(&p, "database"))
    }

    /// Deletes a stored provider (linked identities stay, inert until it is back).
    pub async fn sso_admin_delete(
        &self,
        actor: Id,
        id: &str,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        if self.cfg.sso.providers.iter().any(|c| c.id == id) {
            return Err(Code::CONFLICT.into());
        }
        let audit = event(meta, self.now(), "admin.sso_provider.delete", "success")
            .actor(Some(actor))
            .details(json!({ "provider": id }));
        if !self.store.delete_stored_provider(id, &audit).await? {
            return Err(Code::NOT_FOUND.into());
        }
        let _ = self.sso_providers().await;
        Ok(())
    }
}
