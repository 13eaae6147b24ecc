//! The `gatehouse` binary's library half: configuration, telemetry and server wiring, so
//! integration tests start exactly what `gatehouse serve` starts.

pub mod config;
pub mod datadir;
pub mod server;
pub mod telemetry;
