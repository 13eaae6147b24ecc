//! `/auth/login`, its password-change step, and `/auth/logout`.

use super::form::{Form, FormError, location, safe_next};
use super::html::{self, Cookies, esc, hidden};
use super::text::T;
use super::{
    Back, MAX_PASSWORD, Problem, check_csrf, clear_session, csrf_token, error_page, require,
    session, set_session, with_retry_after,
};
use crate::api::query_params;
use crate::{AppState, context, cookies};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gatehouse_core::auth::Issued;
use gatehouse_core::login::LoginOutcome;
use gatehouse_domain::model::TokenKind;
use gatehouse_domain::{Code, FieldError, Locale, Secret};

const DEFAULT_NEXT: &str = "/account";

/// `GET /auth/login`: the form, or straight on when this browser is already signed in.
pub async fn form(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let locale = context::current().locale;
    let q = query_params(q).unwrap_or_default();
    let next = q.get("next").and_then(|n| safe_next(n));
    match session(&s, &headers).await {
        Ok(Some(_)) => {
            let to = location(next.unwrap_or(DEFAULT_NEXT));
            html::see_other(&to, locale, Cookies::default())
        }
        Ok(None) => {
            // Refreshes the stored providers' buttons; the configured ones need no read.
            if let Err(e) = s.svc.refresh_sign_in_page().await {
                tracing::warn!(error = %e, detail = ?e.detail(), "SSO providers not read for the sign-in page");
            }
            login_page(&s, &headers, "", next, None)
        }
        Err(e) => error_page(Problem::from_error(e, locale), locale, Back::SignIn),
    }
}

/// `POST /auth/login`.
pub async fn submit(
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
            return login_page(&s, &headers, "", None, Some(p));
        }
    };
    let identifier = form.get("identifier").trim();
    let password = form.get("password");
    let next = safe_next(form.get("next"));
    let again = |p: Problem| login_page(&s, &headers, identifier, next, Some(p));
    if let Err(e) = check_csrf(&s, &headers, &form) {
        return again(Problem::from_error(e, locale));
    }
    let mut errors = Vec::new();
    require(&mut errors, "identifier", identifier, 320);
    require(&mut errors, "password", password, MAX_PASSWORD);
    if !errors.is_empty() {
        return again(Problem::fields(errors, locale));
    }
    let secret = Secret::new(password);
    let opts = gatehouse_core::login::LoginOptions {
        device: cookies::get(&headers, &cookies::name(&s.http, cookies::DEVICE)).map(Secret::new),
        ..Default::default()
    };
    match s
        .svc
        .login_with(identifier, &secret, &opts, TokenKind::Web, &ctx.meta())
        .await
    {
        Ok(LoginOutcome::Done(issued)) => signed_in(&s, issued, next, locale),
        Ok(LoginOutcome::Step(ch)) => super::mfa::step(&s, &headers, &ch, next).await,
        Err(e) => again(Problem::from_error(e, locale)),
    }
}

/// `POST /auth/login/password`: the new password owed before sign-in completes.
pub async fn step_submit(
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
            return login_page(&s, &headers, "", None, Some(p));
        }
    };
    let challenge = form.get("challengeToken");
    let next = safe_next(form.get("next"));
    if challenge.is_empty() || challenge.len() > 128 {
        let p = Problem::from_error(Code::CHALLENGE_INVALID.into(), locale);
        return login_page(&s, &headers, "", next, Some(p));
    }
    let again = |p: Problem| {
        let status = p.status;
        step_page(&s, &headers, challenge, next, Some(p), status)
    };
    if let Err(e) = check_csrf(&s, &headers, &form) {
        return again(Problem::from_error(e, locale));
    }
    let new = form.get("newPassword");
    let confirm = form.get("confirmPassword");
    let mut errors = Vec::new();
    check_new_password(&mut errors, new, confirm);
    if !errors.is_empty() {
        return again(Problem::fields(errors, locale));
    }
    match s
        .svc
        .complete_password_change(challenge, &Secret::new(new), &ctx.meta())
        .await
    {
        Ok(LoginOutcome::Done(issued)) => signed_in(&s, issued, next, locale),
        Ok(LoginOutcome::Step(ch)) => super::mfa::step(&s, &headers, &ch, next).await,
        // The attempt is over: start again from the sign-in form.
        Err(e) if matches!(e.code, Code::CHALLENGE_INVALID | Code::ACCOUNT_DISABLED) => {
            login_page(&s, &headers, "", next, Some(Problem::from_error(e, locale)))
        }
        Err(e) => again(Problem::from_error(e, locale)),
    }
}

/// `POST /auth/logout`.
pub async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form, FormError>,
) -> Response {
    let ctx = context::current();
    let locale = ctx.locale;
    let form = match form {
        Ok(f) => f,
        Err(FormError(status)) => {
            return error_page(Problem::bad_form(status, locale), locale, Back::Account);
        }
    };
    if let Err(e) = check_csrf(&s, &headers, &form) {
        return error_page(Problem::from_error(e, locale), locale, Back::Account);
    }
    match session(&s, &headers).await {
        Ok(Some(p)) => {
            if let Err(e) = s.svc.logout(&p, &ctx.meta()).await {
                return error_page(Problem::from_error(e, locale), locale, Back::Account);
            }
        }
        // Already signed out: just make sure the cookie goes too.
        Ok(None) => {}
        Err(e) => return error_page(Problem::from_error(e, locale), locale, Back::Account),
    }
    let mut jar = Cookies::default();
    clear_session(&s, &mut jar);
    html::see_other("/auth/login", locale, jar)
}

/// Checks a new password and its confirmation before the core sees them.
pub(super) fn check_new_password(errors: &mut Vec<FieldError>, new: &str, confirm: &str) {
    require(errors, "newPassword", new, MAX_PASSWORD);
    if confirm.is_empty() {
        errors.push(FieldError::new("confirmPassword", "required"));
    } else if new != confirm {
        errors.push(FieldError::new("confirmPassword", "mismatch"));
    }
}

/// Sets the session cookie (and a trusted-device cookie, if one was granted) and moves on
/// to `next`.
pub(super) fn signed_in(
    s: &AppState,
    issued: Issued,
    next: Option<&str>,
    locale: Locale,
) -> Response {
    let _ = context::current().account_id.set(issued.account.id);
    let mut jar = Cookies::default();
    set_session(s, &mut jar, issued.token.expose(), issued.token_expires_in);
    if let Some((device, max_age)) = &issued.trusted_device {
        jar.add(cookies::set(
            &s.http,
            cookies::DEVICE,
            device.expose(),
            Some(*max_age),
        ));
    }
    html::see_other(&location(next.unwrap_or(DEFAULT_NEXT)), locale, jar)
}

/// The sign-in form, with `problem` shown above it and the identifier refilled (never the
/// password).
pub(super) fn login_page(
    s: &AppState,
    headers: &HeaderMap,
    identifier: &str,
    next: Option<&str>,
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
        esc(t(T::SignInTitle)),
        esc(t(T::SignInLead))
    );
    if let Some(p) = &problem {
        body.push_str(&format!(
            r#"<div data-code="{}">{}</div>"#,
            esc(p.code),
            html::notice("error", p.message)
        ));
    }
    if s.svc.password_form_shown() {
        body.push_str(r#"<form method="post" action="/auth/login">"#);
        body.push_str(&hidden("csrf_token", &csrf));
        if let Some(n) = next {
            body.push_str(&hidden("next", n));
        }
        body.push_str(&html::field(
            "identifier",
            t(T::Identifier),
            "text",
            "username",
            Some(identifier),
            &on("identifier"),
        ));
        body.push_str(&html::field(
            "password",
            t(T::Password),
            "password",
            "current-password",
            None,
            &on("password"),
        ));
        body.push_str(&format!(
            r#"<button type="submit">{}</button></form><p><a href="/password/forgot">{}</a></p>"#,
            esc(t(T::SignInButton)),
            esc(t(T::ForgotLink))
        ));
    }
    body.push_str(&super::sso::buttons(s, next, locale));
    body.push_str("</div>");
    let status = problem.as_ref().map(|p| p.status).unwrap_or(StatusCode::OK);
    let retry = problem.as_ref().and_then(|p| p.retry_after);
    let doc = html::document(locale, t(T::SignInTitle), false, &body);
    with_retry_after(html::page(status, locale, doc, jar), retry)
}

/// The password-change step. The challenge travels in a hidden field, never in a URL.
pub(super) fn step_page(
    s: &AppState,
    headers: &HeaderMap,
    challenge: &str,
    next: Option<&str>,
    problem: Option<Problem>,
    status: StatusCode,
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
        esc(t(T::StepTitle)),
        esc(t(T::StepLead))
    );
    if let Some(p) = &problem {
        body.push_str(&html::notice("error", p.message));
    }
    body.push_str(r#"<form method="post" action="/auth/login/password">"#);
    body.push_str(&hidden("csrf_token", &csrf));
    body.push_str(&hidden("challengeToken", challenge));
    if let Some(n) = next {
        body.push_str(&hidden("next", n));
    }
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
    let doc = html::document(locale, t(T::StepTitle), false, &body);
    html::page(status, locale, doc, jar)
}
