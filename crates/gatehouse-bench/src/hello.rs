//! The baseline server: a bare axum hello endpoint, run as a child process of the bench with
//! the same runtime settings as `gatehouse serve` (`#[tokio::main]`: multi-threaded, one
//! worker per core). It announces its address with the same log line as gatehouse.

use anyhow::Result;
use axum::Json;
use axum::routing::get;
use std::io::Write as _;

pub async fn serve(bind: &str) -> Result<()> {
    let app = axum::Router::new()
        .route(
            "/hello",
            get(|| async { Json(serde_json::json!({ "hello": "world" })) }),
        )
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let line = serde_json::json!({ "message": "gatehouse listening", "addr": addr.to_string() });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    drop(out);
    axum::serve(listener, app).await?;
    Ok(())
}
