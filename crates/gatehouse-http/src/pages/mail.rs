//! Password reset pages: `/password/forgot` asks for a code, `/password/reset` (also the
//! mailed link) sets the new password. No JavaScript; the same answer for every identifier.

use super::form::{Form, FormError};
use super::html::{self, Cookies, esc, hidden};
use super::login::check_new_password;
use super::text::T;
use super::{Back, Problem, check_csrf, csrf_token, error_page, require};
use crate::api::query_params;
use crate::openapi::{RouteDoc, Routes, Security};
use crate::{AppState, context};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use gatehouse_domain::{Code, Secret};

const PAGES: &str = "pages";

/// The reset pages.
pub fn routes() -> Routes {
    use Code as C;
    Routes::new()
        .at(
            RouteDoc {
                html: true,
                ..RouteDoc::new("GET", "/password/forgot", PAGES, "Forgot-password page")
            },
            get(forgot_form),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[
                    ("identifier", "string", true),
                    ("csrf_token", "string", true),
                ],
                codes: &[C::RATE_LIMIT_EXCEEDED],
                ..RouteDoc::new(
                    "POST",
                    "/password/forgot",
                    PAGES,
                    "Ask for a reset code by mail (the same page for every identifier)",
                )
            },
            post(forgot_submit),
        )
        .at(
            RouteDoc {
                html: true,
                query: &["identifier", "code"],
                ..RouteDoc::new(
                    "GET",
                    "/password/reset",
                    PAGES,
                    "Reset-password page (the mailed link fills in identifier and code)",
                )
            },
            get(reset_form),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[
                    ("identifier", "string", true),
                    ("code", "string", true),
                    ("newPassword", "string", true),
                    ("confirmPassword", "string", true),
                    ("csrf_token", "string", true),
                ],
                codes: &[C::EMAIL_CODE_INVALID, C::PASSWORD_POLICY_VIOLATION],
                ..RouteDoc::new(
                    "POST",
                    "/password/reset",
                    PAGES,
                    "Set a new password with the mailed code",
                )
            },
            post(reset_submit),
        )
}

fn forgot_page(
    s: &AppState,
    headers: &HeaderMap,
    identifier: &str,
    sent: bool,
    problem: Option<Problem>,
) -> Response {
    let locale = context::current().locale;
    let mut jar = Cookies::default();
    let csrf = match csrf_token(s, headers, &mut jar) {
        Ok(t) => t,
        Err(e) => return error_page(Problem::from_error(e, locale), locale, Back::SignIn),
    };
    let t = |k: T| k.get(locale);
    let on = |f: &str| problem.as_ref().map(|p| p.on(f)).unwrap_or_default();
    let mut body = format!(
        r#"<div class="card"><h1>{}</h1><p>{}</p>"#,
        esc(t(T::ForgotTitle)),
        esc(t(T::ForgotLead))
    );
    if let Some(p) = &problem {
        body.push_str(&html::notice("error", p.message));
    }
    if sent {
        body.push_str(&html::notice("ok", t(T::ForgotSent)));
        body.push_str(&format!(
            r#"<p><a href="/password/reset">{}</a></p>"#,
            esc(t(T::ResetTitle))
        ));
    }
    body.push_str(r#"<form method="post" action="/password/forgot">"#);
    body.push_str(&hidden("csrf_token", &csrf));
    body.push_str(&html::field(
        "identifier",
        t(T::Identifier),
        "text",
        "username",
        Some(identifier),
        &on("identifier"),
    ));
    body.push_str(&format!(
        r#"<button type="submit">{}</button></form></div>"#,
        esc(t(T::SendCode))
    ));
    let status = problem.as_ref().map(|p| p.status).unwrap_or(StatusCode::OK);
    let doc = html::document(locale, t(T::ForgotTitle), false, &body);
    html::page(status, locale, doc, jar)
}

/// `GET /password/forgot`.
async fn forgot_form(State(s): State<AppState>, headers: HeaderMap) -> Response {
    forgot_page(&s, &headers, "", false, None)
}

/// `POST /password/forgot`.
async fn forgot_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form, FormError>,
) -> Response {
    let ctx = context::current();
    let locale = ctx.locale;
    let form = match form {
        Ok(f) => f,
        Err(FormError(status)) => {
            let p = Problem::bad_form(status, locale);
            return forgot_page(&s, &headers, "", false, Some(p));
        }
    };
    let identifier = form.get("identifier").trim();
    let again = |p: Problem| forgot_page(&s, &headers, identifier, false, Some(p));
    if let Err(e) = check_csrf(&s, &headers, &form) {
        return again(Problem::from_error(e, locale));
    }
    let mut errors = Vec::new();
    require(&mut errors, "identifier", identifier, 320);
    if !errors.is_empty() {
        return again(Problem::fields(errors, locale));
    }
    match s.svc.forgot_password(identifier, &ctx.meta()).await {
        Ok(()) => forgot_page(&s, &headers, identifier, true, None),
        Err(e) => again(Problem::from_error(e, locale)),
    }
}

fn reset_page(
    s: &AppState,
    headers: &HeaderMap,
    identifier: &str,
    code: &str,
    problem: Option<Problem>,
) -> Response {
    let locale = context::current().locale;
    let mut jar = Cookies::default();
    let csrf = match csrf_token(s, headers, &mut jar) {
        Ok(t) => t,
        Err(e) => return error_page(Problem::from_error(e, locale), locale, Back::SignIn),
    };
    let t = |k: T| k.get(locale);
    let on = |f: &str| problem.as_ref().map(|p| p.on(f)).unwrap_or_default();
    let mut body = format!(
        r#"<div class="card"><h1>{}</h1><p>{}</p>"#,
        esc(t(T::ResetTitle)),
        esc(t(T::ResetLead))
    );
    if let Some(p) = &problem {
        body.push_str(&html::notice("error", p.message));
    }
    body.push_str(r#"<form method="post" action="/password/reset">"#);
    body.push_str(&hidden("csrf_token", &csrf));
    body.push_str(&html::field(
        "identifier",
        t(T::Identifier),
        "text",
        "username",
        Some(identifier),
        &on("identifier"),
    ));
    body.push_str(&html::field(
        "code",
        t(T::ResetCode),
        "text",
        "one-time-code",
        Some(code),
        &on("code"),
    ));
    body.push_str(&html::field(
        "newPassword",
        t(T::NewPassword),
        "password",
        "new-password",
        None,
        &on("newPassword"),
    ));
    body.push_str(&html::field(
        "confirmPassword",
        t(T::ConfirmPassword),
        "password",
        "new-password",
        None,
        &on("confirmPassword"),
    ));
    body.push_str(&format!(
        r#"<button type="submit">{}</button></form></div>"#,
        esc(t(T::Continue))
    ));
    let status = problem.as_ref().map(|p| p.status).unwrap_or(StatusCode::OK);
    let doc = html::document(locale, t(T::ResetTitle), false, &body);
    html::page(status, locale, doc, jar)
}

/// `GET /password/reset`: the mailed link fills in the identifier and the code.
async fn reset_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = query_params(q).unwrap_or_default();
    let field = |k: &str| {
        q.get(k)
            .map(|v| v.chars().take(320).collect::<String>())
            .unwrap_or_default()
    };
    reset_page(&s, &headers, &field("identifier"), &field("code"), None)
}

/// `POST /password/reset`.
async fn reset_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form, FormError>,
) -> Response {
    let ctx = context::current();
    let locale = ctx.locale;
    let form = match form {
        Ok(f) => f,
        Err(FormError(status)) => {
            let p = Problem::bad_form(status, locale);
            return reset_page(&s, &headers, "", "", Some(p));
        }
    };
    let identifier = form.get("identifier").trim();
    let code = form.get("code").trim();
    let again = |p: Problem| reset_page(&s, &headers, identifier, code, Some(p));
    if let Err(e) = check_csrf(&s, &headers, &form) {
        return again(Problem::from_error(e, locale));
    }
    let new = form.get("newPassword");
    let mut errors = Vec::new();
    require(&mut errors, "identifier", identifier, 320);
    require(&mut errors, "code", code, 64);
    check_new_password(&mut errors, new, form.get("confirmPassword"));
    if !errors.is_empty() {
        return again(Problem::fields(errors, locale));
    }
    match s
        .svc
        .reset_password(identifier, code, &Secret::new(new), &ctx.meta())
        .await
    {
        Ok(()) => {
            let t = |k: T| k.get(locale);
            let body = format!(
                r#"<div class="card"><h1>{}</h1>{}<p><a href="/auth/login">{}</a></p></div>"#,
                esc(t(T::ResetTitle)),
                html::notice("ok", t(T::ResetDone)),
                esc(t(T::SignInTitle))
            );
            let doc = html::document(locale, t(T::ResetTitle), false, &body);
            html::page(StatusCode::OK, locale, doc, Cookies::default())
        }
        Err(e) => again(Problem::from_error(e, locale)),
    }
}
