//! Gatehouse core: login, sessions, tokens, passwords, CSRF and admin flows. It talks to
//! the world only through the domain's ports, so it is tested without a network.

pub mod admin;
pub mod apikey;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod config;
pub(crate) mod cred_cache;
pub mod csrf;
pub mod introspect;
pub mod jwt;
pub mod lockout;
pub mod login;
pub mod mail;
pub mod metrics;
pub mod mfa;
pub mod password;
pub mod pat;
pub mod ratelimit;
pub(crate) mod read_cache;
pub mod seal;
pub mod service;
pub mod sso;
pub mod tenancy;
pub mod tokens;
pub mod totp;

pub use service::{Principal, RequestMeta, Service};
