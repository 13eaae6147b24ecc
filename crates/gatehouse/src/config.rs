//! Configuration: defaults → TOML file → `GATEHOUSE_*` environment variables (`__` between
//! sections), one typed struct, validated at start-up with errors that name the key.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use gatehouse_core::config::{
    AuditConfig, CoreConfig, JwtConfig, LockoutConfig, PasswordConfig, SecretsConfig,
    SessionConfig, TokensConfig, redact, secret_opt,
};
use gatehouse_core::mail::MailConfig;
use gatehouse_core::ratelimit::RateLimitConfig;
use gatehouse_domain::Secret;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// Everything `gatehouse` reads.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub bind: String,
    pub public_url: String,
    pub bootstrap_admin_email: Option<String>,
    #[serde(serialize_with = "redact", deserialize_with = "secret_opt")]
    pub bootstrap_admin_password: Option<Secret>,
    /// Proxies whose `X-Forwarded-For` is believed (addresses or CIDR blocks).
    pub trusted_proxies: Vec<String>,
    pub max_body_bytes: usize,
    pub http: HttpLimits,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub cluster: ClusterConfig,
    pub log: LogConfig,
    pub jwt: JwtConfig,
    pub password: PasswordConfig,
    pub session: SessionConfig,
    pub lockout: LockoutConfig,
    pub secrets: SecretsConfig,
    pub rate_limit: RateLimitConfig,
    pub audit: AuditConfig,
    pub tokens: TokensConfig,
    /// `[sso]` and `[[sso.providers]]`: upstream identity providers.
    pub sso: gatehouse_core::sso::config::SsoConfig,
    pub mail: MailConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            bootstrap_admin_email: None,
            bootstrap_admin_password: None,
            trusted_proxies: Vec::new(),
            max_body_bytes: 64 * 1024,
            http: HttpLimits::default(),
            database: DatabaseConfig::default(),
            cache: CacheConfig::default(),
            cluster: ClusterConfig::default(),
            log: LogConfig::default(),
            jwt: JwtConfig::default(),
            password: PasswordConfig::default(),
            session: SessionConfig::default(),
            lockout: LockoutConfig::default(),
            secrets: SecretsConfig::default(),
            rate_limit: RateLimitConfig::default(),
            audit: AuditConfig::default(),
            tokens: TokensConfig::default(),
            sso: Default::default(),
            mail: MailConfig::default(),
        }
    }
}

/// `[http]`: how long a client may take and how many connections it may hold, so slow or
/// numerous connections cannot take the server off the air.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// A connection's first request, and each request after an idle pause, must send its
    /// request line and headers within this many seconds of its first byte.
    pub header_timeout_seconds: u64,
    /// The whole request body must arrive within this many seconds of the headers.
    pub body_timeout_seconds: u64,
    /// The longest a response write may stall (a client that stops reading).
    pub write_timeout_seconds: u64,
    /// A kept-alive connection with no request in progress is closed after this long.
    pub idle_timeout_seconds: u64,
    /// Open connections across all clients; beyond this new ones are closed at once.
    pub max_connections: usize,
    /// Open connections from one client IP, IPv6 per /64 (trusted proxies are exempt).
    pub max_connections_per_ip: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout_seconds: 6,
            body_timeout_seconds: 6,
            write_timeout_seconds: 6,
            idle_timeout_seconds: 30,
            max_connections: 4096,
            max_connections_per_ip: 256,
        }
    }
}

/// `[database]`.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:PATH` or `postgres://…`. The URL's password is never logged.
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

/// By hand, so the URL's password never reaches a log line or a panic message.
impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .finish()
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite:./data/gatehouse.db".into(),
            max_connections: 16,
            acquire_timeout_ms: 3000,
        }
    }
}

/// `[cache]`.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `memory` or `redis://…`.
    pub url: String,
    /// Prefix for every Redis key, so deployments can share one Redis.
    pub prefix: String,
    pub timeout_ms: u64,
}

/// By hand, so a `redis://:password@…` URL's password never reaches a log line.
impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            url: "memory".into(),
            prefix: "gatehouse:".into(),
            timeout_ms: 2000,
        }
    }
}

/// `[cluster]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// How many instances share the store; more than one needs a shared (Redis) cache.
    pub instances: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self { instances: 1 }
    }
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `gatehouse=debug,info`.
    pub level: String,
    /// `json` (default) or `pretty`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "json".into(),
        }
    }
}

/// A configuration problem, naming the key.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Every dotted key the config knows, from its default's shape.
fn known_keys() -> Vec<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = v {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, v, out);
                out.push(key);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        "",
        &serde_json::to_value(Config::default()).unwrap_or_default(),
        &mut out,
    );
    out
}

fn env_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix("GATEHOUSE_")?;
    Some(rest.to_lowercase().replace("__", "."))
}

/// Environment variables that start with `GATEHOUSE_` but name no setting (the test
/// harness's `GATEHOUSE_TEST_*` are not settings and are ignored).
pub fn unknown_env_vars() -> Vec<String> {
    let known = known_keys();
    std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("GATEHOUSE_") && !k.starts_with("GATEHOUSE_TEST_"))
        .filter(|k| env_key(k).is_none_or(|key| !known.contains(&key)))
        .collect()
}

/// Loads from `file` (if given, or `gatehouse.toml` if present) and the environment.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    match file {
        Some(path) if !path.exists() => {
            return Err(ConfigError(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        Some(path) => fig = fig.merge(Toml::file_exact(path)),
        None if Path::new("gatehouse.toml").exists() => {
            fig = fig.merge(Toml::file_exact("gatehouse.toml"))
        }
        None => {}
    }
    let known = known_keys();
    let env = Env::prefixed("GATEHOUSE_")
        .split("__")
        .filter(move |k| known.iter().any(|n| n.eq_ignore_ascii_case(k.as_str())));
    let cfg: Config = fig.merge(env).extract().map_err(|e| {
        let key = e.path.join(".");
        let key = if key.is_empty() {
            "config".to_string()
        } else {
            key
        };
        ConfigError(format!("invalid configuration at `{key}`: {}", e.kind))
    })?;
    cfg.validate()?;
    Ok(cfg)
}

impl Config {
    /// The core's part.
    pub fn core(&self) -> CoreConfig {
        CoreConfig {
            jwt: self.jwt.clone(),
            password: self.password.clone(),
            session: self.session.clone(),
            lockout: self.lockout.clone(),
            secrets: self.secrets.clone(),
            rate_limit: self.rate_limit.clone(),
            audit: self.audit.clone(),
            tokens: self.tokens.clone(),
            sso: gatehouse_core::sso::config::SsoConfig {
                public_url: self.public_url.clone(),
                ..self.sso.clone()
            },
            mail: MailConfig {
                public_url: self.public_url.clone(),
                ..self.mail.clone()
            },
        }
    }

    /// Checks what types cannot; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad =
            |k: &str, m: &str| Err(ConfigError(format!("invalid configuration at `{k}`: {m}")));
        if self.bind.parse::<SocketAddr>().is_err() {
            return bad("bind", "must be an address like 127.0.0.1:8080");
        }
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return bad("public_url", "must start with http:// or https://");
        }
        if gatehouse_store::scheme(&self.database.url).is_none() {
            return bad(
                "database.url",
                "unknown scheme: use sqlite:PATH or postgres://…",
            );
        }
        let memory = self.cache.url.is_empty() || self.cache.url.starts_with("memory");
        if !memory
            && !self.cache.url.starts_with("redis://")
            && !self.cache.url.starts_with("rediss://")
        {
            return bad("cache.url", "use memory or redis://…");
        }
        if memory && self.cluster.instances > 1 {
            return bad(
                "cache.url",
                "a memory cache is per process; with cluster.instances > 1 lockout, rate limits and revocation would not be shared: use redis://",
            );
        }
        if memory
            && gatehouse_store::scheme(&self.database.url)
                == Some(gatehouse_store::Backend::Postgres)
        {
            return bad(
                "cache.url",
                "PostgreSQL means a shared deployment; a memory cache would not share lockout, rate limits or revocation between instances: use redis://",
            );
        }
        if self.secrets.encryption_key.is_none()
            && gatehouse_store::scheme(&self.database.url)
                == Some(gatehouse_store::Backend::Postgres)
        {
            return bad(
                "secrets.encryption_key",
                "required with PostgreSQL (instances must share it): set it to the base64 of 32 random bytes, e.g. `openssl rand -base64 32`",
            );
        }
        if self.database.max_connections == 0 || self.database.acquire_timeout_ms == 0 {
            return bad(
                "database.max_connections",
                "max_connections and acquire_timeout_ms must be ≥ 1",
            );
        }
        if self.max_body_bytes < 1024 {
            return bad("max_body_bytes", "must be at least 1024");
        }
        for (key, v) in [
            (
                "http.header_timeout_seconds",
                self.http.header_timeout_seconds,
            ),
            ("http.body_timeout_seconds", self.http.body_timeout_seconds),
            (
                "http.write_timeout_seconds",
                self.http.write_timeout_seconds,
            ),
            ("http.idle_timeout_seconds", self.http.idle_timeout_seconds),
        ] {
            if !(1..=3600).contains(&v) {
                return bad(key, "must be between 1 and 3600");
            }
        }
        if self.http.max_connections == 0 {
            return bad("http.max_connections", "must be at least 1");
        }
        if !(1..=self.http.max_connections).contains(&self.http.max_connections_per_ip) {
            return bad(
                "http.max_connections_per_ip",
                "must be between 1 and http.max_connections",
            );
        }
        if self.jwt.algorithm == gatehouse_core::config::JwtAlgorithm::HS256
            && self
                .jwt
                .secret
                .as_ref()
                .is_none_or(|s| s.expose().len() < 32)
        {
            // Start anyway: token endpoints answer JWT_KEY_NOT_CONFIGURED until it is fixed.
            tracing::warn!(
                "jwt.algorithm is HS256 but jwt.secret is missing or shorter than 32 bytes"
            );
        }
        if let Err(e) = gatehouse_http::TrustedProxies::parse(&self.trusted_proxies) {
            return bad("trusted_proxies", &e);
        }
        if self.mail.smtp_url.is_some() && self.public_url == Config::default().public_url {
            return bad(
                "public_url",
                "must be set when mail.smtp_url is: links in mail are built from it alone",
            );
        }
        self.core()
            .validate()
            .map_err(|(k, m)| ConfigError(format!("invalid configuration at `{k}`: {m}")))
    }

    /// The database URL without its password, for logs.
    pub fn database_url_redacted(&self) -> String {
        redact_url(&self.database.url)
    }
}

/// Replaces a URL's password, and the value of any query parameter that names a password,
/// secret or token, with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (base, query) = match rest.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (rest, None),
    };
    // The last `@` ends the user info: a password may itself hold an `@`.
    let mut out = match base.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => format!("{scheme}://{base}"),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token", "key"]
        .iter()
        .any(|w| name.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn memory_cache_is_refused_for_a_cluster_or_postgres() {
        let mut c = Config::default();
        c.cluster.instances = 3;
        assert!(c.validate().unwrap_err().0.contains("cache.url"));
        let mut c = Config::default();
        c.database.url = "postgres://u:p@h/db".into();
        assert!(c.validate().unwrap_err().0.contains("cache.url"));
        c.cache.url = "redis://127.0.0.1".into();
        assert!(
            c.validate()
                .unwrap_err()
                .0
                .contains("secrets.encryption_key")
        );
        c.secrets.encryption_key = Some(Secret::new(TEST_KEY));
        c.validate().unwrap();
    }

    const TEST_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn encryption_key_must_be_32_bytes_of_base64() {
        let mut c = Config::default();
        c.secrets.encryption_key = Some(Secret::new("c2hvcnQ="));
        assert!(
            c.validate()
                .unwrap_err()
                .0
                .contains("secrets.encryption_key")
        );
        c.secrets.encryption_key = Some(Secret::new(TEST_KEY));
        c.validate().unwrap();
        let shown = serde_json::to_string(&c).unwrap();
        assert!(!shown.contains(TEST_KEY), "{shown}");
    }

    #[test]
    fn mail_settings_are_checked() {
        let mut c = Config::default();
        c.mail.smtp_url = Some(Secret::new("http://mail.example.com"));
        c.public_url = "https://id.example.com".into();
        assert!(c.validate().unwrap_err().0.contains("mail.smtp_url"));
        c.mail.smtp_url = Some(Secret::new(
            "smtp://user:hunter2@mail.example.com:587?tls=required",
        ));
        c.validate().unwrap();
        // Links in mail are built from public_url alone: SMTP needs it set.
        c.public_url = Config::default().public_url;
        assert!(c.validate().unwrap_err().0.contains("public_url"));
        let mut c = Config::default();
        c.mail.from = "not an address".into();
        assert!(c.validate().unwrap_err().0.contains("mail.from"));
        let mut c = Config::default();
        c.mail.language = "fr".into();
        assert!(c.validate().unwrap_err().0.contains("mail.language"));
        let mut c = Config::default();
        c.mail.smtp_url = Some(Secret::new("smtp://user:hunter2@mail.example.com"));
        let shown = format!("{:?} {}", c, serde_json::to_string(&c).unwrap());
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn http_limits_are_checked() {
        let mut c = Config::default();
        c.http.header_timeout_seconds = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .0
                .contains("http.header_timeout_seconds")
        );
        let mut c = Config::default();
        c.http.max_connections_per_ip = c.http.max_connections + 1;
        assert!(
            c.validate()
                .unwrap_err()
                .0
                .contains("http.max_connections_per_ip")
        );
        assert!(known_keys().contains(&"http.idle_timeout_seconds".to_string()));
    }

    #[test]
    fn unknown_database_scheme_is_an_error() {
        let mut c = Config::default();
        c.database.url = "mysql://x".into();
        assert!(c.validate().unwrap_err().0.contains("database.url"));
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://bob:hunter2@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite:./data/x.db"), "sqlite:./data/x.db");
    }

    #[test]
    fn url_passwords_with_at_signs_and_query_secrets_are_redacted() {
        assert_eq!(
            redact_url("postgres://bob:p@ss@db/x?sslmode=require&password=hunter2"),
            "postgres://bob:***@db/x?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("redis://:hunter2@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(
            redact_url("postgres://db/x?user=bob&sslkey=/k.pem"),
            "postgres://db/x?user=bob&sslkey=***"
        );
    }

    /// A configuration with every secret it can hold set to a recognisable value.
    fn full_of_secrets() -> Config {
        let mut c = Config {
            bootstrap_admin_password: Some(Secret::new("hunter2-bootstrap")),
            ..Config::default()
        };
        c.database.url = "postgres://app:hunter2-db@db:5432/gatehouse?password=hunter2-q".into();
        c.cache.url = "redis://:hunter2-redis@cache:6379".into();
        c.jwt.secret = Some(Secret::new("hunter2-jwt-secret-of-32-bytes-or-more"));
        c.secrets.encryption_key = Some(Secret::new(TEST_KEY));
        c
    }

    fn assert_no_secret(what: &str, shown: String) {
        for secret in ["hunter2", TEST_KEY] {
            assert!(!shown.contains(secret), "{what} shows {secret}: {shown}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = full_of_secrets();
        assert_no_secret("Config", format!("{c:?}"));
        assert_no_secret("Config (pretty)", format!("{c:#?}"));
        assert_no_secret("CoreConfig", format!("{:?}", c.core()));
    }

    #[test]
    fn database_config_debug_hides_the_url_password() {
        let c = full_of_secrets();
        let shown = format!("{:?}", c.database);
        assert_no_secret("DatabaseConfig", shown.clone());
        assert!(
            shown.contains("postgres://app:***@db:5432/gatehouse"),
            "{shown}"
        );
        assert!(shown.contains("max_connections: 16"), "{shown}");
    }

    #[test]
    fn cache_config_debug_hides_the_url_password() {
        let c = full_of_secrets();
        let shown = format!("{:?}", c.cache);
        assert_no_secret("CacheConfig", shown.clone());
        assert!(shown.contains("redis://:***@cache:6379"), "{shown}");
    }

    #[test]
    fn cluster_and_log_config_debug_hold_no_secret() {
        let c = full_of_secrets();
        assert_no_secret("ClusterConfig", format!("{:?}", c.cluster));
        assert_no_secret("LogConfig", format!("{:?}", c.log));
    }

    #[test]
    fn known_keys_cover_sections() {
        let k = known_keys();
        assert!(k.contains(&"database.url".to_string()));
        assert!(k.contains(&"password.argon2_memory_kib".to_string()));
        assert_eq!(
            env_key("GATEHOUSE_DATABASE__URL").as_deref(),
            Some("database.url")
        );
    }
}
