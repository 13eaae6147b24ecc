//! Gatehouse core: login, sessions, tokens, passwords, CSRF and admin flows. It talks to
//! the world only through the domain's ports, so it is tested without a network.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod config;
pub mod csrf;
pub mod jwt;
pub mod lockout;
pub mod login;
pub mod mail;
pub mod metrics;
pub mod mfa;
pub mod password;
pub mod ratelimit;
pub(crate) mod read_cache;
pub mod seal;
pub mod service;
pub mod tenancy;
pub mod tokens;
pub mod totp;

pub use service::{Principal, RequestMeta, Service};
