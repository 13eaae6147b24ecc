//! Personal access tokens: `gatehouse_pat_<43 base62 characters of 32 random bytes><6 base62
//! characters of the CRC32 of everything before them>`. The checksum lets a typo or a fake
//! be refused without touching the store (and lets secret scanners recognise leaked
//! tokens); the store keeps only the SHA-256 of the text, so a check costs one indexed read
//! and no password hash. A token acts for its owner with the owner's current permissions,
//! capped by its scopes, and never manages credentials or sessions.

use crate::audit::{AuditExt, event};
use crate::authz::{Permission, PermissionSet};
use crate::cred_cache;
use crate::service::{AuthVia, CredentialKind, Principal, RequestMeta, Service, TokenGrant};
use crate::tokens::{digest, random_bytes};
use gatehouse_domain::ids::new_id;
use gatehouse_domain::model::{PersonalAccessToken, Status};
use gatehouse_domain::{AppError, Code, FieldError, Id, Secret};
use std::time::Duration;

/// What every personal access token starts with.
pub const PAT_PREFIX: &str = "gatehouse_pat_";

/// Characters of the random part (32 bytes in base62).
const BODY_LEN: usize = 43;
/// Characters of the checksum (a CRC32 in base62).
const CHECK_LEN: usize = 6;
/// Uses of one token closer together than this are recorded once.
const TOUCH_GAP_MS: i64 = 60_000;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// CRC-32 (IEEE 802.3, as zlib computes it).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// `bytes` as a big-endian number in base62, left-padded with `0` to `width` characters.
fn base62(bytes: &[u8], width: usize) -> String {
    let mut num = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while num.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in num.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = u8::try_from(cur / 62).unwrap_or(0);
            rem = cur % 62;
        }
        digits.push(BASE62[rem as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// The six checksum characters for `head` (prefix and random part).
fn checksum(head: &str) -> String {
    base62(&crc32(head.as_bytes()).to_be_bytes(), CHECK_LEN)
}

/// A new credential text: `prefix`, 32 random bytes in base62, checksum.
pub fn new_credential(prefix: &str) -> Result<String, AppError> {
    let head = format!("{prefix}{}", base62(&random_bytes::<32>()?, BODY_LEN));
    let check = checksum(&head);
    Ok(head + &check)
}

/// True if `text` has `prefix`, the right length and alphabet, and a matching checksum:
/// a pure check, so anything else is refused before any store lookup.
pub fn well_formed(prefix: &str, text: &str) -> bool {
    let Some(rest) = text.strip_prefix(prefix) else {
        return false;
    };
    if rest.len() != BODY_LEN + CHECK_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (head, check) = text.split_at(text.len() - CHECK_LEN);
    checksum(head) == check
}

/// A token to create (`POST /auth/tokens`).
#[derive(Clone, Debug, Default)]
pub struct NewPat {
    pub name: String,
    pub scopes: Option<Vec<String>>,
    /// `None`: the configured default; `Some(0)`: never (if the instance allows it).
    pub expires_in_days: Option<u64>,
    pub workspace_id: Option<Id>,
    pub branch_id: Option<Id>,
}

/// Checks scope names: each must be a known permission (the wildcard is not a scope).
/// Returns them sorted and without repeats.
pub fn parse_scopes(scopes: Option<Vec<String>>) -> Result<Option<Vec<String>>, AppError> {
    let Some(scopes) = scopes else {
        return Ok(None);
    };
    let mut names: Vec<String> = Vec::with_capacity(scopes.len());
    for s in &scopes {
        match Permission::parse(s) {
            Some(p) => names.push(p.as_str().to_string()),
            None => {
                return Err(AppError::validation(vec![FieldError::new(
                    "scopes", "invalid",
                )]));
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(Some(names))
}

/// The scopes as the cap a principal carries.
pub fn scope_set(scopes: &Option<Vec<String>>) -> Option<PermissionSet> {
    scopes
        .as_ref()
        .map(|s| PermissionSet::from_names(s.iter().map(String::as_str)))
}

impl Service {
    /// How long a new credential lives: the default, or what was asked for within the
    /// configured maximum; `Some(0)` is "never", only where the instance allows it.
    pub(crate) fn credential_lifetime(
        &self,
        days: Option<u64>,
    ) -> Result<Option<Duration>, AppError> {
        let t = &self.cfg.tokens;
        let bad = || AppError::validation(vec![FieldError::new("expiresInDays", "invalid")]);
        let days = match days {
            None => u64::from(t.default_days),
            Some(0) if t.allow_non_expiring => return Ok(None),
            Some(0) => return Err(bad()),
            Some(d) if d > u64::from(t.max_days) => return Err(bad()),
            Some(d) => d,
        };
        Ok(Some(Duration::from_secs(days * 24 * 3600)))
    }

    /// Creates a personal access token for the signed-in caller; the token text is returned
    /// once and only its hash is stored. A workspace or branch context must be one the
    /// caller is an active member of.
    #[tracing::instrument(skip_all, fields(account_id = %p.account_id))]
    pub async fn create_pat(
        &self,
        p: &Principal,
        input: NewPat,
        meta: &RequestMeta,
    ) -> Result<(PersonalAccessToken, Secret), AppError> {
        p.require_session()?;
        let account = self.me(p).await?;
        let name = input.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(AppError::validation(vec![FieldError::new(
                "name", "invalid",
            )]));
        }
        let scopes = parse_scopes(input.scopes)?;
        let lifetime = self.credential_lifetime(input.expires_in_days)?;
        let workspace_id = match (input.workspace_id, input.branch_id) {
            (ws, Some(branch)) => {
                let ctx = self.branch_context(account.id, branch).await?;
                if ws.is_some_and(|w| w != ctx.workspace.id) {
                    return Err(AppError::validation(vec![FieldError::new(
                        "workspaceId",
                        "invalid",
                    )]));
                }
                Some(ctx.workspace.id)
            }
            (Some(ws), None) => {
                self.active_member(account.id, ws).await?;
                Some(ws)
            }
            (None, None) => None,
        };
        let now = self.now();
        let pat = PersonalAccessToken {
            id: new_id(),
            account_id: account.id,
            name,
            scopes,
            workspace_id,
            branch_id: input.branch_id,
            created_at: now,
            expires_at: lifetime.map(|d| now.plus(d)),
            last_used_at: None,
            last_used_ip: None,
            revoked_at: None,
        };
        let text = new_credential(PAT_PREFIX)?;
        let audit = event(meta, now, "pat.create", "success")
            .actor(Some(account.id))
            .target(Some(account.id))
            .details(serde_json::json!({ "tokenId": pat.id, "name": pat.name,
                "scopes": pat.scopes, "expiresAt": pat.expires_at }));
        self.store.create_pat(&pat, &digest(&text), &audit).await?;
        Ok((pat, Secret::new(text)))
    }

    /// The caller's live tokens (never their text).
    pub async fn list_pats(&self, p: &Principal) -> Result<Vec<PersonalAccessToken>, AppError> {
        self.me(p).await?;
        Ok(self.store.list_pats(p.account_id).await?)
    }

    /// Revokes one of the caller's tokens; `NOT_FOUND` for anyone else's. Every instance
    /// refuses it on the next request (tokens are checked against the store).
    pub async fn revoke_pat(
        &self,
        p: &Principal,
        id: Id,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        self.me(p).await?;
        let now = self.now();
        let audit = event(meta, now, "pat.delete", "success")
            .actor(Some(p.account_id))
            .target(Some(p.account_id))
            .details(serde_json::json!({ "tokenId": id }));
        let hash = self
            .store
            .revoke_pat(p.account_id, id, now, &audit)
            .await?
            .ok_or(Code::NOT_FOUND)?;
        self.forget_credential(&cred_cache::pat_key(&hash)).await
    }

    /// Overwrites a credential's cached copy with the marker that sends checks to the
    /// store, for as long as a copy could live (see [`cred_cache`]).
    pub(crate) async fn forget_credential(&self, key: &str) -> Result<(), AppError> {
        let ttl = Duration::from_secs(self.cfg.tokens.cache_seconds);
        if ttl.is_zero() {
            return Ok(());
        }
        self.cache.set(key, cred_cache::GONE, ttl).await?;
        Ok(())
    }

    /// The token row with this hash: the shared cache's copy, else the store's (which is
    /// then cached unless a revocation marker is there). `true` with it: a live row due for
    /// its last-use stamp, for the caller to cache once the stamp is written (so the copy
    /// does not ask for it again).
    async fn pat_row(&self, hash: &[u8]) -> Result<(Option<PersonalAccessToken>, bool), AppError> {
        let ttl = Duration::from_secs(self.cfg.tokens.cache_seconds);
        let key = cred_cache::pat_key(hash);
        let mut marked = false;
        if !ttl.is_zero()
            && let Some(bytes) = self.cache.get(&key).await?
        {
            match serde_json::from_slice::<Option<cred_cache::CachedPat>>(&bytes) {
                Ok(Some(c)) => return Ok((Some(c.into()), false)),
                Ok(None) => marked = true,
                Err(_) => {}
            }
        }
        self.metrics
            .inc("gatehouse_credential_lookups_total", &[("kind", "pat")]);
        let row = self.store.pat_by_hash(hash).await?;
        let Some(pat) = row.as_ref().filter(|_| !marked && !ttl.is_zero()) else {
            return Ok((row, false));
        };
        let now = self.now();
        let live = pat.revoked_at.is_none() && pat.expires_at.is_none_or(|e| e > now);
        let due = pat
            .last_used_at
            .is_none_or(|t| now.millis() - t.millis() >= TOUCH_GAP_MS);
        if live && due {
            return Ok((row, true));
        }
        self.cache_pat(hash, pat).await;
        Ok((row, false))
    }

    /// Adds a copy of a token's row to the shared cache unless one (or a marker) is there.
    async fn cache_pat(&self, hash: &[u8], pat: &PersonalAccessToken) {
        let ttl = Duration::from_secs(self.cfg.tokens.cache_seconds);
        let copy = serde_json::to_vec(&cred_cache::CachedPat::from(pat)).unwrap_or_default();
        if let Err(e) = self
            .cache
            .set_nx(&cred_cache::pat_key(hash), &copy, ttl)
            .await
        {
            tracing::warn!(error = %e, "caching a token's row failed");
        }
    }

    /// Whether a credential's use is due to be recorded: the row says its last use is a
    /// minute old, and no instance recorded one within the minute since that row was read
    /// (the time of the last recording is kept in the shared cache).
    pub(crate) async fn touch_due(
        &self,
        id: Id,
        last_used: Option<gatehouse_domain::Timestamp>,
    ) -> bool {
        let now = self.now().millis();
        if last_used.is_some_and(|t| now - t.millis() < TOUCH_GAP_MS) {
            return false;
        }
        match self.cache.get(&cred_cache::touch_key(id)).await {
            Ok(Some(v)) => std::str::from_utf8(&v)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
                .is_none_or(|at| now - at >= TOUCH_GAP_MS),
            Ok(None) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cache unavailable; not recording a credential's use");
                false
            }
        }
    }

    /// Notes in the shared cache that a credential's use was just recorded.
    pub(crate) async fn touched(&self, id: Id) {
        let now = self.now().millis().to_string();
        let ttl = Duration::from_millis(2 * TOUCH_GAP_MS.unsigned_abs());
        if let Err(e) = self
            .cache
            .set(&cred_cache::touch_key(id), now.as_bytes(), ttl)
            .await
        {
            tracing::warn!(error = %e, "cache unavailable; a credential's use may be recorded again");
        }
    }

    /// The account's active membership of the active workspace `ws`.
    async fn active_member(&self, account_id: Id, ws: Id) -> Result<(), AppError> {
        let workspace = self.store.workspace_by_id(ws).await?;
        let member = self.store.member_of(account_id, ws).await?;
        match (workspace, member) {
            (Some(w), Some(_)) if w.status != Status::Active => {
                Err(Code::WORKSPACE_DISABLED.into())
            }
            (Some(_), Some(m)) if m.status != Status::Active => Err(Code::MEMBER_DISABLED.into()),
            (Some(_), Some(_)) => Ok(()),
            _ => Err(AppError {
                fields: vec![FieldError::new("workspaceId", "invalid")],
                ..AppError::new(Code::PERMISSION_REQUIRED)
            }),
        }
    }

    /// Checks a personal access token: its form (no store read for a typo or a fake), then
    /// the stored row (revoked, expired), the owner (disabled) and, for a bound token, the
    /// owner's membership. Records the use at most once a minute.
    pub async fn authenticate_pat(
        &self,
        text: &str,
        meta: &RequestMeta,
    ) -> Result<Principal, AppError> {
        Ok(self.check_pat(text, meta).await?.0)
    }

    /// [`Service::authenticate_pat`], also answering the token's row (introspection).
    pub(crate) async fn check_pat(
        &self,
        text: &str,
        meta: &RequestMeta,
    ) -> Result<(Principal, PersonalAccessToken), AppError> {
        let ip = meta.ip.as_deref();
        const CHECKS: &str = "gatehouse_credential_checks_total";
        let outcome = |o: &'static str| [("kind", "pat"), ("outcome", o)];
        if !well_formed(PAT_PREFIX, text) {
            self.metrics.inc(CHECKS, &outcome("malformed"));
            return Err(Code::TOKEN_INVALID.into());
        }
        let hash = digest(text);
        let (found, cache_later) = self.pat_row(&hash).await?;
        let Some(mut pat) = found else {
            self.metrics.inc(CHECKS, &outcome("unknown"));
            return Err(Code::TOKEN_INVALID.into());
        };
        let now = self.now();
        if pat.revoked_at.is_some() {
            self.metrics.inc(CHECKS, &outcome("revoked"));
            self.audit_refused_use("pat.use_revoked", pat.id, pat.account_id, meta)
                .await;
            return Err(Code::TOKEN_REVOKED.into());
        }
        if pat.expires_at.is_some_and(|e| e <= now) {
            self.metrics.inc(CHECKS, &outcome("expired"));
            return Err(Code::TOKEN_EXPIRED.into());
        }
        let principal = Principal {
            account_id: pat.account_id,
            session_id: pat.id,
            jti: None,
            via: AuthVia::Bearer,
            workspace_id: pat.workspace_id,
            branch_id: pat.branch_id,
            token: Some(TokenGrant {
                kind: CredentialKind::Pat,
                id: pat.id,
                name: pat.name.clone(),
                scopes: scope_set(&pat.scopes),
            }),
        };
        self.me(&principal).await?;
        match (pat.workspace_id, pat.branch_id) {
            (_, Some(branch)) => {
                self.branch_context(pat.account_id, branch).await?;
            }
            (Some(ws), None) => self.active_member(pat.account_id, ws).await?,
            (None, None) => {}
        }
        if self.touch_due(pat.id, pat.last_used_at).await {
            match self.store.touch_pat(pat.id, now, ip, TOUCH_GAP_MS).await {
                Ok(_) => pat.last_used_at = Some(now),
                Err(e) => tracing::warn!(error = %e, "recording a token's use failed"),
            }
            self.touched(pat.id).await;
        }
        if cache_later {
            self.cache_pat(&hash, &pat).await;
        }
        self.metrics.inc(CHECKS, &outcome("ok"));
        Ok((principal, pat))
    }

    /// Audits a revoked credential coming back, once a minute per credential (the row is
    /// a write; a client retrying in a loop must not turn into a write per request).
    pub(crate) async fn audit_refused_use(
        &self,
        action: &str,
        credential_id: Id,
        account_id: Id,
        meta: &RequestMeta,
    ) {
        let key = format!("credrefused:{credential_id}");
        match self
            .cache
            .set_nx(
                &key,
                b"1",
                Duration::from_millis(TOUCH_GAP_MS.unsigned_abs()),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cache unavailable; auditing the refused use anyway")
            }
        }
        self.audit(
            event(meta, self.now(), action, "failure")
                .actor(Some(account_id))
                .target(Some(account_id))
                .reason("TOKEN_REVOKED")
                .details(serde_json::json!({ "credentialId": credential_id })),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn base62_is_fixed_width_and_big_endian() {
        assert_eq!(base62(&[0, 0], 3), "000");
        assert_eq!(base62(&[0, 61], 2), "0z");
        assert_eq!(base62(&[0, 62], 2), "10");
        assert_eq!(base62(&[0xff; 32], BODY_LEN).len(), BODY_LEN);
        assert_eq!(base62(&u32::MAX.to_be_bytes(), CHECK_LEN).len(), CHECK_LEN);
    }

    #[test]
    fn new_tokens_are_well_formed_and_distinct() {
        let a = new_credential(PAT_PREFIX).unwrap();
        let b = new_credential(PAT_PREFIX).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), PAT_PREFIX.len() + BODY_LEN + CHECK_LEN);
        assert!(well_formed(PAT_PREFIX, &a));
        assert!(
            !well_formed("gatehouse_sk_", &a),
            "the prefix is part of it"
        );
    }

    #[test]
    fn any_single_character_change_breaks_the_checksum() {
        let t = new_credential(PAT_PREFIX).unwrap();
        for i in PAT_PREFIX.len()..t.len() {
            let mut bytes = t.clone().into_bytes();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(bytes).unwrap();
            assert!(!well_formed(PAT_PREFIX, &typo), "position {i}");
        }
        assert!(!well_formed(PAT_PREFIX, &t[..t.len() - 1]));
        assert!(!well_formed(PAT_PREFIX, &format!("{t}0")));
        assert!(!well_formed(PAT_PREFIX, "gatehouse_pat_"));
    }

    #[test]
    fn scopes_must_be_known_permissions() {
        let ok = parse_scopes(Some(vec![
            "users:read".into(),
            "audit:read".into(),
            "users:read".into(),
        ]));
        assert_eq!(
            ok.unwrap(),
            Some(vec!["audit:read".into(), "users:read".into()])
        );
        for bad in ["*", "users", "fly:high", ""] {
            assert!(parse_scopes(Some(vec![bad.into()])).is_err(), "{bad:?}");
        }
        assert_eq!(parse_scopes(None).unwrap(), None);
    }
}
