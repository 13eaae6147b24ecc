//! The core's settings: typed, with safe defaults, validated once at start-up.

use gatehouse_domain::Secret;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Token settings (`[jwt]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// `EdDSA` (default; key generated and stored) or `HS256` (needs `secret`).
    pub algorithm: JwtAlgorithm,
    /// HS256 shared secret, at least 32 bytes.
    #[serde(serialize_with = "redact", deserialize_with = "secret_opt")]
    pub secret: Option<Secret>,
    pub issuer: String,
    pub audience: String,
    pub access_ttl_seconds: u64,
    /// How often each instance reloads signing keys from the store.
    pub key_refresh_seconds: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            algorithm: JwtAlgorithm::EdDSA,
            secret: None,
            issuer: "gatehouse".into(),
            audience: "gatehouse".into(),
            access_ttl_seconds: 900,
            key_refresh_seconds: 60,
        }
    }
}

/// The access-token signature algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum JwtAlgorithm {
    EdDSA,
    HS256,
}

/// Password hashing and policy (`[password]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Hashes running at once; 0 means one per CPU core.
    pub hash_concurrency: usize,
    /// Logins allowed to wait for a hashing slot before new ones are shed with 503.
    pub max_queue: usize,
    pub min_length: usize,
    pub max_length: usize,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub require_digit: bool,
    pub require_special: bool,
    /// Allows Argon2 costs below OWASP's minimums (for test suites only; logged loudly at
    /// start). The upper bounds still apply.
    pub insecure_fast_hashing: bool,
}

/// OWASP's Argon2id minimums as (memory KiB, iterations): a configuration must meet one.
pub const OWASP_ARGON2ID: [(u32, u32); 5] = [
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
];
/// The most memory one Argon2 hash may take (1 GiB): more aborts the process on
/// allocation long after `config check` said yes.
pub const ARGON2_MAX_MEMORY_KIB: u32 = 1 << 20;
/// The most iterations and lanes one hash may take.
pub const ARGON2_MAX_ITERATIONS: u32 = 64;
pub const ARGON2_MAX_PARALLELISM: u32 = 16;

impl Default for PasswordConfig {
    fn default() -> Self {
        Self {
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            hash_concurrency: 0,
            max_queue: 256,
            min_length: 8,
            max_length: 128,
            require_uppercase: false,
            require_lowercase: false,
            require_digit: false,
            require_special: false,
            insecure_fast_hashing: false,
        }
    }
}

/// Session lifetimes (`[session]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    pub refresh_idle_seconds: u64,
    pub refresh_absolute_seconds: u64,
    /// Lifetime of a login challenge (password change, two-factor step).
    pub challenge_ttl_seconds: u64,
    /// Accounts created by an admin must change their password at first login.
    pub admin_created_must_change_password: bool,
    /// How long "trust this browser" skips the TOTP step.
    pub trusted_device_days: u64,
    /// How long (ms) an instance may answer `GET /auth/me` and permission checks from its
    /// own copy of an account instead of reading the store (0 = always read). Changes made
    /// through this instance are seen at once; revocation never depends on it.
    pub account_cache_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            refresh_idle_seconds: 7 * 24 * 3600,
            refresh_absolute_seconds: 30 * 24 * 3600,
            challenge_ttl_seconds: 300,
            admin_created_must_change_password: true,
            trusted_device_days: 90,
            account_cache_ms: 1000,
        }
    }
}

/// Lockout after repeated failures (`[lockout]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockoutConfig {
    pub enabled: bool,
    pub max_failures: u32,
    pub window_seconds: u64,
    pub duration_seconds: u64,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_failures: 5,
            window_seconds: 900,
            duration_seconds: 900,
        }
    }
}

/// Audit trail retention (`[audit]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Events older than this are deleted; 0 keeps them forever.
    pub retention_days: u64,
    /// How often each instance prunes.
    pub prune_interval_seconds: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention_days: 365,
            prune_interval_seconds: 3600,
        }
    }
}

/// Personal access tokens and API keys (`[tokens]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// Lifetime of a new token when the request names none.
    pub default_days: u32,
    /// The longest lifetime a request may ask for.
    pub max_days: u32,
    /// Whether `expiresInDays: 0` (never expires) is accepted.
    pub allow_non_expiring: bool,
    /// How long the shared cache may answer for a token's or key's row (0: always read the
    /// store). Revocations overwrite the cached copy, so with Redis they apply at once.
    pub cache_seconds: u64,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            default_days: 90,
            max_days: 365,
            allow_non_expiring: false,
            cache_seconds: 30,
        }
    }
}

/// Server-side secrets (`[secrets]`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// Base64 of 32 random bytes; encrypts TOTP secrets at rest (and signs device cookies).
    #[serde(serialize_with = "redact", deserialize_with = "secret_opt")]
    pub encryption_key: Option<Secret>,
}

/// Everything the core needs.
#[derive(Clone, Debug, Default)]
pub struct CoreConfig {
    pub secrets: SecretsConfig,
    pub jwt: JwtConfig,
    pub password: PasswordConfig,
    pub session: SessionConfig,
    pub lockout: LockoutConfig,
    pub rate_limit: crate::ratelimit::RateLimitConfig,
    pub audit: AuditConfig,
    pub tokens: TokensConfig,
    pub sso: crate::sso::config::SsoConfig,
    pub mail: crate::mail::MailConfig,
}

impl CoreConfig {
    /// Checks values that serde cannot: returns `(key, problem)` for the first bad one.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let p = &self.password;
        let bad = |k: &str, m: &str| Err((k.to_string(), m.to_string()));
        self.mail.validate()?;
        if p.argon2_memory_kib < 8 * p.argon2_parallelism.max(1) {
            return bad(
                "password.argon2_memory_kib",
                "must be at least 8 × parallelism",
            );
        }
        if p.argon2_iterations == 0 || p.argon2_parallelism == 0 {
            return bad(
                "password.argon2_iterations",
                "iterations and parallelism must be ≥ 1",
            );
        }
        if p.argon2_memory_kib > ARGON2_MAX_MEMORY_KIB {
            return bad(
                "password.argon2_memory_kib",
                "must be at most 1048576 (1 GiB per hash)",
            );
        }
        if p.argon2_iterations > ARGON2_MAX_ITERATIONS {
            return bad("password.argon2_iterations", "must be at most 64");
        }
        if p.argon2_parallelism > ARGON2_MAX_PARALLELISM {
            return bad("password.argon2_parallelism", "must be at most 16");
        }
        let owasp = OWASP_ARGON2ID
            .iter()
            .any(|&(m, t)| p.argon2_memory_kib >= m && p.argon2_iterations >= t);
        if !owasp && !p.insecure_fast_hashing {
            return bad(
                "password.argon2_memory_kib",
                "below OWASP's Argon2id minimums: use at least 19456 KiB with 2 iterations \
                 (or 47104/1, 12288/3, 9216/4, 7168/5)",
            );
        }
        if p.min_length == 0 || p.min_length > p.max_length || p.max_length > 1024 {
            return bad(
                "password.min_length",
                "need 1 ≤ min_length ≤ max_length ≤ 1024",
            );
        }
        if self.jwt.access_ttl_seconds < 30 || self.jwt.access_ttl_seconds > 24 * 3600 {
            return bad("jwt.access_ttl_seconds", "must be between 30 and 86400");
        }
        if self.jwt.key_refresh_seconds == 0 {
            return bad("jwt.key_refresh_seconds", "must be ≥ 1");
        }
        let s = &self.session;
        if s.refresh_idle_seconds == 0 || s.refresh_idle_seconds > s.refresh_absolute_seconds {
            return bad(
                "session.refresh_idle_seconds",
                "must be ≥ 1 and ≤ refresh_absolute_seconds",
            );
        }
        if s.challenge_ttl_seconds < 30 {
            return bad("session.challenge_ttl_seconds", "must be ≥ 30");
        }
        if s.trusted_device_days == 0 || s.trusted_device_days > 3650 {
            return bad("session.trusted_device_days", "must be between 1 and 3650");
        }
        if let Some(k) = &self.secrets.encryption_key
            && crate::totp::parse_key(k.expose()).is_none()
        {
            return bad(
                "secrets.encryption_key",
                "must be the base64 of exactly 32 random bytes (e.g. `openssl rand -base64 32`)",
            );
        }
        if self.lockout.enabled
            && (self.lockout.max_failures == 0 || self.lockout.duration_seconds == 0)
        {
            return bad(
                "lockout.max_failures",
                "max_failures and duration_seconds must be ≥ 1",
            );
        }
        let t = &self.tokens;
        if t.max_days == 0
            || t.max_days > 3650
            || t.default_days == 0
            || t.default_days > t.max_days
        {
            return bad(
                "tokens.default_days",
                "need 1 ≤ default_days ≤ max_days ≤ 3650",
            );
        }
        if t.cache_seconds > 3600 {
            return bad("tokens.cache_seconds", "must be at most 3600");
        }
        if self.audit.prune_interval_seconds == 0 {
            return bad("audit.prune_interval_seconds", "must be ≥ 1");
        }
        self.sso.validate()
    }
}

/// Serializes a secret as `[redacted]`.
pub fn redact<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}

/// Reads an optional secret; empty text counts as absent.
pub fn secret_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.is_empty())
        .map(Secret::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const JWT_SECRET: &str = "hunter2-jwt-secret-of-32-bytes-or-more";

    fn full_of_secrets() -> CoreConfig {
        let mut c = CoreConfig::default();
        c.jwt.secret = Some(Secret::new(JWT_SECRET));
        c.secrets.encryption_key = Some(Secret::new(KEY));
        c
    }

    fn assert_no_secret(what: &str, shown: String) {
        for secret in [KEY, JWT_SECRET, "hunter2"] {
            assert!(!shown.contains(secret), "{what} shows a secret: {shown}");
        }
    }

    // The secret-bearing structs keep derived `Debug`: their secrets are `Secret`s, whose
    // own `Debug` redacts, so a field added later cannot be forgotten by a hand-written impl.
    #[test]
    fn jwt_config_debug_hides_the_hs256_secret() {
        let shown = format!("{:?}", full_of_secrets().jwt);
        assert_no_secret("JwtConfig", shown.clone());
        assert!(shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn secrets_config_debug_hides_the_encryption_key() {
        let shown = format!("{:#?}", full_of_secrets().secrets);
        assert_no_secret("SecretsConfig", shown.clone());
        assert!(shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn core_config_debug_hides_every_secret() {
        assert_no_secret("CoreConfig", format!("{:?}", full_of_secrets()));
    }

    #[test]
    fn secret_free_sections_debug_hold_no_secret() {
        let c = full_of_secrets();
        assert_no_secret("PasswordConfig", format!("{:?}", c.password));
        assert_no_secret("SessionConfig", format!("{:?}", c.session));
        assert_no_secret("LockoutConfig", format!("{:?}", c.lockout));
        assert_no_secret("AuditConfig", format!("{:?}", c.audit));
        assert_no_secret("RateLimitConfig", format!("{:?}", c.rate_limit));
    }

    #[test]
    fn argon2_costs_below_owasp_or_beyond_sane_are_refused() {
        let with = |m: u32, t: u32, p: u32, fast: bool| {
            let mut c = CoreConfig::default();
            c.password.argon2_memory_kib = m;
            c.password.argon2_iterations = t;
            c.password.argon2_parallelism = p;
            c.password.insecure_fast_hashing = fast;
            c.validate().map_err(|(key, _)| key)
        };
        assert_eq!(with(19_456, 2, 1, false), Ok(()));
        assert_eq!(with(47_104, 1, 1, false), Ok(()));
        assert_eq!(with(7_168, 5, 1, false), Ok(()));
        // The pen test's values.
        assert!(with(8, 1, 1, false).is_err());
        assert!(with(u32::MAX, 2, 1, false).is_err());
        assert!(with(19_455, 2, 1, false).is_err());
        assert!(with(19_456, 1, 1, false).is_err());
        assert!(with(19_456, 65, 1, false).is_err());
        assert!(with(19_456, 2, 17, false).is_err());
        // The test-suite switch lowers the floor, never the ceiling.
        assert_eq!(with(256, 1, 1, true), Ok(()));
        assert!(with(u32::MAX, 2, 1, true).is_err());
        assert!(with(4, 1, 1, true).is_err());
    }
}
