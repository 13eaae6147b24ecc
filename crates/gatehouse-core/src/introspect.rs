//! Token introspection (RFC 7662) for the services behind Gatehouse: what an access token
//! or a personal access token stands for right now, or `{"active": false}` for anything
//! else (revoked, expired, malformed, unknown, another kind of credential), never saying
//! why. Only a service account's API key holding `tokens:introspect` may ask.

use crate::authz::{Permission, PermissionSet, Scope, permission_required};
use crate::pat::PAT_PREFIX;
use crate::service::{CredentialKind, Principal, RequestMeta, Service};
use gatehouse_domain::{AppError, Id};
use serde::Serialize;

/// The introspection answer. Absent members are left out, as RFC 7662 has it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<Id>,
    /// The token's context: `account` or `branch` (as the access token's `scope` claim).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// `access_token` or `personal_access_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The session (access tokens only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub br: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// A personal access token's effective permissions (its scopes ∩ the owner's now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<PermissionSet>,
    /// A personal access token's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

impl Introspection {
    /// `{"active": false}`.
    pub fn inactive() -> Self {
        Self::default()
    }
}

/// Longest token text worth looking at.
const MAX_TOKEN: usize = 4096;

impl Service {
    /// Introspects `token` for `caller`, which must be an API key holding
    /// `tokens:introspect` (`PERMISSION_REQUIRED` otherwise). A token that does not check
    /// out is inactive; only a failing store or cache is an error.
    pub async fn introspect(
        &self,
        caller: &Principal,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<Introspection, AppError> {
        let is_key = caller
            .token
            .as_ref()
            .is_some_and(|t| t.kind == CredentialKind::ApiKey);
        if !is_key {
            return Err(permission_required(Permission::TokensIntrospect));
        }
        self.require_permission(caller, Permission::TokensIntrospect, Scope::Instance)
            .await?;
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN {
            return Ok(Introspection::inactive());
        }
        let answer = if token.starts_with(PAT_PREFIX) {
            self.introspect_pat(token, meta).await
        } else {
            self.introspect_access(token).await
        };
        match answer {
            Ok(a) => Ok(a),
            Err(e) if e.code.status() >= 500 => Err(e),
            Err(_) => Ok(Introspection::inactive()),
        }
    }

    async fn introspect_access(&self, token: &str) -> Result<Introspection, AppError> {
        let p = self.authenticate_bearer(token).await?;
        // Checked again for the account: a disabled one's tokens are not active.
        self.me(&p).await?;
        let claims = self
            .keys
            .verify_or_reload(self.store.as_ref(), token, self.now())
            .await?;
        Ok(Introspection {
            active: true,
            sub: Some(claims.sub),
            scope: Some(claims.scope),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            token_type: Some("access_token"),
            iss: Some(claims.iss),
            aud: Some(claims.aud),
            sid: Some(claims.sid),
            ws: claims.ws,
            br: claims.br,
            roles: Some(claims.roles),
            permissions: None,
            jti: Some(claims.jti),
        })
    }

    async fn introspect_pat(
        &self,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<Introspection, AppError> {
        let (p, pat) = self.check_pat(token, meta).await?;
        let me = self.me_context(&p).await?;
        Ok(Introspection {
            active: true,
            sub: Some(pat.account_id),
            scope: Some(
                if pat.branch_id.is_some() {
                    "branch"
                } else {
                    "account"
                }
                .into(),
            ),
            exp: pat.expires_at.map(|t| t.unix_seconds()),
            iat: Some(pat.created_at.unix_seconds()),
            token_type: Some("personal_access_token"),
            iss: Some(self.cfg.jwt.issuer.clone()),
            aud: None,
            sid: None,
            ws: pat.workspace_id,
            br: pat.branch_id,
            roles: Some(me.roles),
            permissions: Some(me.permissions),
            jti: Some(pat.id.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inactive_answer_says_nothing_else() {
        assert_eq!(
            serde_json::to_value(Introspection::inactive()).unwrap(),
            serde_json::json!({ "active": false })
        );
    }
}
