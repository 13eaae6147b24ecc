//! Wiring: config → store, cache, service → router → listener.

use crate::config::Config;
use crate::listener::Limits;
use anyhow::Context as _;
use gatehouse_cache::RedisOptions;
use gatehouse_core::Service;
use gatehouse_domain::ports::{Clock, SystemClock};
use gatehouse_http::{AppState, HttpConfig, TrustedProxies};
use gatehouse_store::PoolOptions;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Opens store and cache and builds the service (no listener).
pub async fn service(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Service>> {
    let pool = PoolOptions {
        max_connections: cfg.database.max_connections,
        acquire_timeout: Duration::from_millis(cfg.database.acquire_timeout_ms),
    };
    if let Some(db) = crate::datadir::sqlite_path(&cfg.database.url) {
        let loose = crate::datadir::prepare(&db)
            .with_context(|| format!("cannot prepare the database file {}", db.display()))?;
        for warning in loose {
            tracing::warn!("{warning}");
        }
    }
    let store = gatehouse_store::connect(&cfg.database.url, &pool)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot open database {}: {e}", cfg.database_url_redacted())
        })?;
    let redis = RedisOptions {
        prefix: cfg.cache.prefix.clone(),
        timeout: Duration::from_millis(cfg.cache.timeout_ms),
    };
    let cache = gatehouse_cache::connect(&cfg.cache.url, redis, clock.clone())
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open cache {}: {e}",
                crate::config::redact_url(&cfg.cache.url)
            )
        })?;
    let mut core = cfg.core();
    if core.password.insecure_fast_hashing {
        tracing::warn!(
            "password.insecure_fast_hashing is on: Argon2 costs below OWASP's minimums are allowed; never use this outside a test suite"
        );
    }
    if core.secrets.encryption_key.is_none() {
        core.secrets.encryption_key = Some(local_encryption_key(&cfg.database.url)?);
    }
    let svc = Service::new(store, cache, clock, core)
        .await
        .context("cannot start")?;
    Ok(Arc::new(svc))
}

/// The embedded default's `[secrets] encryption_key`: read from a 0600 file beside the
/// SQLite database, generated there on first start. (PostgreSQL requires a configured key;
/// `Config::validate` says so.)
fn local_encryption_key(database_url: &str) -> anyhow::Result<gatehouse_domain::Secret> {
    use std::io::Write as _;
    let path = database_url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.contains(":memory:") {
        tracing::warn!(
            "secrets.encryption_key is not set and the database is in memory: using a throwaway key"
        );
        let key = gatehouse_core::totp::new_key_text().map_err(|e| anyhow::anyhow!("{e}"))?;
        return Ok(gatehouse_domain::Secret::new(key));
    }
    let file = std::path::PathBuf::from(format!("{path}.key"));
    if let Ok(text) = std::fs::read_to_string(&file) {
        anyhow::ensure!(
            gatehouse_core::totp::parse_key(&text).is_some(),
            "{} does not hold a valid encryption key (base64 of 32 bytes)",
            file.display()
        );
        return Ok(gatehouse_domain::Secret::new(text.trim().to_string()));
    }
    let key = gatehouse_core::totp::new_key_text().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(&file) {
        Ok(mut f) => {
            f.write_all(key.as_bytes())?;
            f.sync_all()?;
            tracing::warn!(
                file = %file.display(),
                "secrets.encryption_key is not set: generated one into this file; back it up with the database (TOTP secrets cannot be read without it)"
            );
            Ok(gatehouse_domain::Secret::new(key))
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&file)?;
            anyhow::ensure!(
                gatehouse_core::totp::parse_key(&text).is_some(),
                "{} does not hold a valid encryption key",
                file.display()
            );
            Ok(gatehouse_domain::Secret::new(text.trim().to_string()))
        }
        Err(e) => Err(anyhow::anyhow!("cannot create {}: {e}", file.display())),
    }
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub svc: Arc<Service>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts serving on `cfg.bind` (port 0 picks a free port) in the background.
pub async fn start(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let svc = service(cfg, clock).await?;
    bootstrap(cfg, &svc).await?;
    // Before the first request: a cache that forgot revocations (a restarted memory cache,
    // a flushed Redis) must not let a logged-out access token back in.
    match svc.restore_revocations().await {
        Ok(n) => tracing::debug!(sessions = n, "revocation marks rebuilt from the store"),
        Err(e) => {
            tracing::warn!(error = %e, detail = ?e.detail(), "revocation marks not rebuilt; will retry")
        }
    }
    svc.spawn_key_refresh();
    svc.spawn_audit_pruning();
    svc.spawn_mail_sender();
    let http = HttpConfig {
        public_url: cfg.public_url.clone(),
        trusted_proxies: TrustedProxies::parse(&cfg.trusted_proxies)
            .map_err(|e| anyhow::anyhow!(e))?,
        max_body_bytes: cfg.max_body_bytes,
        body_timeout: Duration::from_secs(cfg.http.body_timeout_seconds),
    };
    let trusted = http.trusted_proxies.clone();
    let app = gatehouse_http::app(AppState {
        svc: svc.clone(),
        http: Arc::new(http),
    });
    let listener = TcpListener::bind(&cfg.bind).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, database = %cfg.database_url_redacted(), store = svc.store.backend(), cache = svc.cache.backend(), "gatehouse listening");
    let limits = Limits {
        header_timeout: Duration::from_secs(cfg.http.header_timeout_seconds),
        write_timeout: Duration::from_secs(cfg.http.write_timeout_seconds),
        idle_timeout: Duration::from_secs(cfg.http.idle_timeout_seconds),
        max_connections: cfg.http.max_connections,
        max_connections_per_ip: cfg.http.max_connections_per_ip,
    };
    let task = tokio::spawn(crate::listener::serve(
        listener,
        app,
        limits,
        trusted,
        svc.clone(),
        shutdown_signal(),
    ));
    Ok(Running { addr, svc, task })
}

/// `gatehouse serve`: start and run until SIGINT/SIGTERM.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let running = start(&cfg, Arc::new(SystemClock)).await?;
    running.task.await??;
    tracing::info!("gatehouse stopped");
    Ok(())
}

async fn bootstrap(cfg: &Config, svc: &Service) -> anyhow::Result<()> {
    match (&cfg.bootstrap_admin_email, &cfg.bootstrap_admin_password) {
        (Some(email), Some(password)) => {
            if svc
                .bootstrap_admin(email, password)
                .await
                .context("bootstrap admin")?
            {
                tracing::info!(email = %email, "created the first admin account");
            }
        }
        _ => {
            let n = svc
                .store
                .count_accounts()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if n == 0 {
                tracing::warn!(
                    "no accounts yet: set GATEHOUSE_BOOTSTRAP_ADMIN_EMAIL and GATEHOUSE_BOOTSTRAP_ADMIN_PASSWORD and restart, \
                     or run `echo 'a-strong-password' | gatehouse user create --email you@example.com --admin --password-stdin`"
                );
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
