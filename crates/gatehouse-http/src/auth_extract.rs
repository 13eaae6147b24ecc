//! Who is calling: a `Bearer` access token or personal access token, an API key as HTTP
//! `Basic`, or the web-session cookie (then unsafe methods also need a CSRF token). `RequirePermission<P>` additionally needs permission `P`
//! instance-wide (deny by default); `RequireBranch` needs a branch-scoped caller.

use crate::envelope::ApiError;
use crate::{AppState, context, cookies};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use gatehouse_core::Principal;
use gatehouse_core::authz::{Permission, Scope};
use gatehouse_domain::{AppError, Code};

/// An authenticated caller.
pub struct Auth(pub Principal);

/// A permission an extractor can demand, as a type (`RequirePermission<perm::UsersRead>`).
pub trait PermissionType {
    /// The permission it stands for.
    const PERMISSION: Permission;
}

macro_rules! permissions {
    ($($ty:ident),* $(,)?) => {
        $(
            #[doc = concat!("[`gatehouse_core::authz::Permission::", stringify!($ty), "`] as a type.")]
            pub struct $ty;
            impl super::PermissionType for $ty {
                const PERMISSION: super::Permission = super::Permission::$ty;
            }
        )*
    };
}

/// The permissions instance-wide admin routes demand.
pub mod perm {
    permissions!(
        UsersRead,
        UsersWrite,
        SessionsRead,
        AuditRead,
        SettingsRead,
        SettingsWrite,
        WorkspacesRead,
        WorkspacesWrite,
    );
}

/// An authenticated caller holding permission `P` instance-wide (today: the account role
/// `admin`); `PERMISSION_REQUIRED` naming `P` otherwise.
pub struct RequirePermission<P>(pub Principal, pub std::marker::PhantomData<P>);

/// A branch-scoped caller and its (re-checked) context; account-scoped callers get
/// `BRANCH_CONTEXT_REQUIRED`.
pub struct RequireBranch(pub Box<gatehouse_core::tenancy::BranchContext>);

/// Longest bearer token we bother to parse.
const MAX_BEARER: usize = 4096;

/// The CSRF header.
pub const CSRF_HEADER: &str = "x-csrftoken";

/// Checks `X-CSRFToken` against the browser's binding cookie.
pub fn check_csrf(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let mut sent = headers.get_all(CSRF_HEADER).iter();
    let token = sent.next().and_then(|v| v.to_str().ok());
    if sent.next().is_some() {
        return Err(Code::CSRF_INVALID.into());
    }
    let binding = cookies::get(headers, &cookies::name(&state.http, cookies::CSRF));
    state
        .svc
        .csrf
        .check(token, binding.as_deref(), state.svc.now())
        .map_err(ApiError::from)
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let values: Vec<_> = parts.headers.get_all(AUTHORIZATION).iter().collect();
        let principal = match values.as_slice() {
            [] => {
                let name = cookies::name(&state.http, cookies::SESSION);
                let token =
                    cookies::get(&parts.headers, &name).ok_or(Code::AUTHENTICATION_REQUIRED)?;
                let p = state.svc.authenticate_web(&token).await?;
                let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
                if !safe {
                    check_csrf(state, &parts.headers)?;
                }
                p
            }
            [one] => {
                let raw = one.to_str().map_err(|_| Code::TOKEN_INVALID)?;
                let (scheme, token) = raw.split_once(' ').ok_or(Code::TOKEN_INVALID)?;
                if token.len() > MAX_BEARER {
                    return Err(Code::TOKEN_INVALID.into());
                }
                if scheme.eq_ignore_ascii_case("basic") {
                    let (access_key, secret) =
                        gatehouse_core::apikey::parse_basic(token).ok_or(Code::TOKEN_INVALID)?;
                    let meta = context::current().meta();
                    let p = state
                        .svc
                        .authenticate_api_key(&access_key, &secret, &meta)
                        .await?;
                    let _ = context::current().account_id.set(p.account_id);
                    return Ok(Auth(p));
                }
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(Code::TOKEN_INVALID.into());
                }
                let token = token.trim();
                if token.starts_with(gatehouse_core::pat::PAT_PREFIX) {
                    let meta = context::current().meta();
                    state.svc.authenticate_pat(token, &meta).await?
                } else {
                    state.svc.authenticate_bearer(token).await?
                }
            }
            _ => return Err(AppError::new(Code::TOKEN_INVALID).into()),
        };
        let _ = context::current().account_id.set(principal.account_id);
        Ok(Auth(principal))
    }
}

impl<P: PermissionType + Send + Sync> FromRequestParts<AppState> for RequirePermission<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Auth(p) = Auth::from_request_parts(parts, state).await?;
        state
            .svc
            .require_permission(&p, P::PERMISSION, Scope::Instance)
            .await?;
        Ok(RequirePermission(p, std::marker::PhantomData))
    }
}

impl FromRequestParts<AppState> for RequireBranch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Auth(p) = Auth::from_request_parts(parts, state).await?;
        let ctx = state.svc.current_branch(&p).await?;
        Ok(RequireBranch(Box::new(ctx)))
    }
}
