//! Server-rendered pages (docs/api.md): sign-in with its password-change step, sign-out,
//! and the account page. They work without JavaScript; every form carries a CSRF token
//! bound to the browser's `gh_csrf` cookie, and every page is served with a strict CSP.

mod account;
pub(crate) mod form;
mod html;
mod login;
mod mail;
mod mfa;
mod sso;
mod text;
mod tokens;

pub(crate) use html::Cookies as PageCookies;

/// Whether `next` is a path the pages would follow after sign-in.
pub(crate) fn is_safe_next(next: &str) -> bool {
    form::safe_next(next).is_some()
}
pub(crate) use sso::{browser_binding, sso_failed, sso_finished, to_provider};

use crate::openapi::{RouteDoc, Routes, Security};
use crate::{AppState, context, cookies};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use gatehouse_core::Principal;
use gatehouse_core::tokens::opaque_token;
use gatehouse_domain::catalog::field_message;
use gatehouse_domain::{AppError, Code, FieldError, Locale};
use html::{Cookies, esc};
use text::T;

const PAGES: &str = "pages";
/// Longest password the forms pass on; the core refuses longer ones anyway.
const MAX_PASSWORD: usize = 1024;

/// The page routes.
pub fn routes() -> Routes {
    use Code as C;
    Routes::new()
        .at(
            RouteDoc {
                html: true,
                query: &["next"],
                ..RouteDoc::new("GET", "/auth/login", PAGES, "Sign-in page")
            },
            get(login::form),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[
                    ("identifier", "string", true),
                    ("password", "string", true),
                    ("csrf_token", "string", true),
                    ("next", "string", false),
                ],
                codes: &[
                    C::INVALID_CREDENTIALS,
                    C::ACCOUNT_DISABLED,
                    C::ACCOUNT_LOCKED,
                ],
                ..RouteDoc::new(
                    "POST",
                    "/auth/login",
                    PAGES,
                    "Sign in from the form (csrf_token field); 303 to `next` or /account, \
                     or the password-change step page",
                )
            },
            post(login::submit),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[
                    ("challengeToken", "string", true),
                    ("newPassword", "string", true),
                    ("confirmPassword", "string", true),
                    ("csrf_token", "string", true),
                    ("next", "string", false),
                ],
                codes: &[
                    C::CHALLENGE_INVALID,
                    C::PASSWORD_POLICY_VIOLATION,
                    C::ACCOUNT_DISABLED,
                ],
                ..RouteDoc::new(
                    "POST",
                    "/auth/login/password",
                    PAGES,
                    "Sign-in step: choose a new password, then 303 to `next` or /account",
                )
            },
            post(login::step_submit),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[("csrf_token", "string", true)],
                ..RouteDoc::new(
                    "POST",
                    "/auth/logout",
                    PAGES,
                    "Sign out this browser's session; 303 to /auth/login",
                )
            },
            post(login::logout),
        )
        .at(
            RouteDoc {
                html: true,
                query: &["notice"],
                ..RouteDoc::new(
                    "GET",
                    "/account",
                    PAGES,
                    "Account page (session cookie; 303 to /auth/login when signed out)",
                )
            },
            get(account::show),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[("csrf_token", "string", true)],
                codes: &[C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/account/sessions/{id}/revoke",
                    PAGES,
                    "Revoke one of your sessions (session cookie)",
                )
            },
            post(account::revoke),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[("csrf_token", "string", true)],
                codes: &[C::NOT_FOUND, C::CONFLICT],
                ..RouteDoc::new(
                    "POST",
                    "/account/invitations/{id}/{decision}",
                    PAGES,
                    "Accept or decline a workspace invitation (decision: accept | decline; session cookie)",
                )
            },
            post(account::decide_invitation),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[
                    ("currentPassword", "string", true),
                    ("newPassword", "string", true),
                    ("confirmPassword", "string", true),
                    ("csrf_token", "string", true),
                ],
                codes: &[C::INVALID_CREDENTIALS, C::PASSWORD_POLICY_VIOLATION],
                ..RouteDoc::new(
                    "POST",
                    "/account/password",
                    PAGES,
                    "Change your password (session cookie); other sessions are signed out",
                )
            },
            post(account::change_password),
        )
        .merge(mfa::routes())
        .merge(tokens::routes())
        .merge(sso::routes())
        .merge(mail::routes())
}

/// A CSRF token for this browser's forms; mints the binding cookie on first contact.
fn csrf_token(s: &AppState, headers: &HeaderMap, jar: &mut Cookies) -> Result<String, AppError> {
    let name = cookies::name(&s.http, cookies::CSRF);
    let binding = match cookies::get(headers, &name).filter(|b| b.len() >= 32) {
        Some(b) => b,
        None => {
            let b = opaque_token()?;
            jar.add(cookies::set(&s.http, cookies::CSRF, &b, None));
            b
        }
    };
    s.svc.csrf.issue(&binding, s.svc.now())
}

/// Checks a form's `csrf_token` against the binding cookie.
fn check_csrf(s: &AppState, headers: &HeaderMap, form: &form::Form) -> Result<(), AppError> {
    let binding = cookies::get(headers, &cookies::name(&s.http, cookies::CSRF));
    s.svc.csrf.check(
        Some(form.get("csrf_token")),
        binding.as_deref(),
        s.svc.now(),
    )
}

/// The signed-in principal from the session cookie, or `None` when there is no valid one.
async fn session(s: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, AppError> {
    let Some(token) = cookies::get(headers, &cookies::name(&s.http, cookies::SESSION)) else {
        return Ok(None);
    };
    match s.svc.authenticate_web(&token).await {
        Ok(p) => {
            let _ = context::current().account_id.set(p.account_id);
            Ok(Some(p))
        }
        Err(e) if e.code == Code::AUTHENTICATION_REQUIRED => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sets the session cookie.
fn set_session(s: &AppState, jar: &mut Cookies, token: &str, max_age: u64) {
    jar.add(cookies::set(
        &s.http,
        cookies::SESSION,
        token,
        Some(max_age),
    ));
}

/// Deletes the session cookie.
fn clear_session(s: &AppState, jar: &mut Cookies) {
    jar.add(cookies::set(&s.http, cookies::SESSION, "", Some(0)));
}

/// What went wrong, ready to show on a page.
struct Problem {
    status: StatusCode,
    /// The catalog code, shown in the page as `data-code` for scripts and tests.
    code: &'static str,
    message: &'static str,
    /// (form field, localized message)
    fields: Vec<(String, &'static str)>,
    retry_after: Option<u64>,
}

impl Problem {
    /// An error from the core, in the request's language. Internal details go to the log.
    fn from_error(e: AppError, locale: Locale) -> Self {
        if let Some(detail) = e.detail() {
            let request_id = &context::current().request_id;
            if e.code.status() >= 500 {
                tracing::error!(code = e.code.as_str(), %request_id, %detail, "page request failed");
            } else {
                tracing::warn!(code = e.code.as_str(), %request_id, %detail, "page request refused");
            }
        }
        Self {
            status: StatusCode::from_u16(e.code.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: e.code.as_str(),
            message: e.code.message(locale),
            fields: e
                .fields
                .iter()
                .map(|f| (f.field.clone(), field_text(f.code, locale)))
                .collect(),
            retry_after: e.retry_after_secs,
        }
    }

    /// Field rules that failed before reaching the core.
    fn fields(errors: Vec<FieldError>, locale: Locale) -> Self {
        Self::from_error(AppError::validation(errors), locale)
    }

    /// A form that could not be read at all.
    fn bad_form(status: StatusCode, locale: Locale) -> Self {
        Self {
            status,
            code: Code::VALIDATION_ERROR.as_str(),
            message: T::BadForm.get(locale),
            fields: Vec::new(),
            retry_after: None,
        }
    }

    /// Messages for one form field.
    fn on(&self, field: &str) -> Vec<&'static str> {
        self.fields
            .iter()
            .filter(|(f, _)| f == field)
            .map(|(_, m)| *m)
            .collect()
    }
}

/// Field-error text: the catalog's, plus the pages' own `mismatch`.
fn field_text(code: &str, locale: Locale) -> &'static str {
    match code {
        "mismatch" => T::Mismatch.get(locale),
        _ => field_message(code, locale),
    }
}

/// `required`/`too_long` checks for plain form fields.
fn require(errors: &mut Vec<FieldError>, name: &str, value: &str, max_chars: usize) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(name, "required"));
    } else if value.chars().count() > max_chars {
        errors.push(FieldError::new(name, "too_long"));
    }
}

/// Where an error page points back to.
#[derive(Clone, Copy)]
enum Back {
    Account,
    SignIn,
}

/// A page that only explains what went wrong.
fn error_page(problem: Problem, locale: Locale, back: Back) -> Response {
    let (href, label) = match back {
        Back::Account => ("/account", T::BackToAccount),
        Back::SignIn => ("/auth/login", T::BackToSignIn),
    };
    let body = format!(
        r#"<div class="card"><h1>{}</h1>{}<p><a href="{href}">{}</a></p></div>"#,
        esc(T::ErrorTitle.get(locale)),
        html::notice("error", problem.message),
        esc(label.get(locale)),
    );
    let doc = html::document(locale, T::ErrorTitle.get(locale), false, &body);
    with_retry_after(
        html::page(problem.status, locale, doc, Cookies::default()),
        problem.retry_after,
    )
}

fn with_retry_after(mut res: Response, secs: Option<u64>) -> Response {
    if let Some(secs) = secs
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}
