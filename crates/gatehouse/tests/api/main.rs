//! Integration tests: the real server over HTTP, on SQLite + memory and, when the test URLs
//! are set, on PostgreSQL + Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod helpers;

mod abuse;
mod admin;
mod apikeys;
mod browser;
mod cli;
mod errors;
mod hardening;
mod headers;
mod introspect;
mod invitations;
mod keys;
mod login;
mod mail;
mod mfa;
mod openapi;
mod pages;
mod pats;
mod secrets;
mod slow;
pub mod smtp;
mod sso;
mod tenancy;
mod tokens;
