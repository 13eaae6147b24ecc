//! A service behind Gatehouse: `GET /hello` answers only callers with a Gatehouse access
//! token or personal access token; everyone else gets Gatehouse's error envelope.
//!
//! Environment: `GATEHOUSE_URL` (default `http://127.0.0.1:8080`), `GATEHOUSE_ACCESS_KEY`
//! and `GATEHOUSE_SECRET_KEY` (an API key holding `tokens:introspect`, for personal access
//! tokens), `GATEHOUSE_JWKS_REFETCH_SECONDS`, `GATEHOUSE_INTROSPECTION_CACHE_SECONDS`,
//! `BIND` (default `127.0.0.1:3000`). Prints `listening on http://ADDR` once it serves.
//!
//! ```sh
//! cargo run -p gatehouse-verify --example protected
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/hello
//! ```

use axum::routing::get;
use axum::{Json, Router};
use gatehouse_verify::{ApiKey, Config, Verified, Verifier};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn seconds(name: &str) -> Option<Duration> {
    env(name)?.parse().ok().map(Duration::from_secs)
}

async fn hello(Verified(claims): Verified) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "hello": claims.sub,
        "kind": claims.kind,
        "roles": claims.roles,
        "permissions": claims.permissions,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg =
        Config::new(env("GATEHOUSE_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into()));
    if let (Some(access_key), Some(secret_key)) =
        (env("GATEHOUSE_ACCESS_KEY"), env("GATEHOUSE_SECRET_KEY"))
    {
        cfg.api_key = Some(ApiKey {
            access_key,
            secret_key,
        });
    }
    if let Some(d) = seconds("GATEHOUSE_JWKS_REFETCH_SECONDS") {
        cfg.jwks_refetch_interval = d;
    }
    if let Some(d) = seconds("GATEHOUSE_INTROSPECTION_CACHE_SECONDS") {
        cfg.introspection_cache = d;
    }
    let verifier = Arc::new(Verifier::new(cfg)?);
    let app = Router::new()
        .route("/hello", get(hello))
        .with_state(verifier);
    let bind = env("BIND").unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let mut out = std::io::stdout();
    writeln!(out, "listening on http://{}", listener.local_addr()?)?;
    out.flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}
