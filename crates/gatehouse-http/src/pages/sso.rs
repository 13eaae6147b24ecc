//! The browser side of upstream sign-in: the buttons on the sign-in page, the redirect to
//! the provider, and what the callback shows (the next page, the owed step, or the sign-in
//! page with the error's code).

use super::account::signed_in_post;
use super::form::{Form, FormError, location, safe_next};
use super::html::{self, Cookies, esc, hidden};
use super::login::{login_page, signed_in};
use super::text::T;
use super::{Back, Problem, error_page};
use crate::openapi::{RouteDoc, Routes, Security};
use crate::{AppState, context, cookies};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use gatehouse_core::login::LoginOutcome;
use gatehouse_core::sso::Finished;
use gatehouse_domain::{AppError, Code, Id, Locale};

/// The SSO page routes.
pub(super) fn routes() -> Routes {
    Routes::new().at(
        RouteDoc {
            html: true,
            security: Security::Csrf,
            body: &[("csrf_token", "string", true)],
            codes: &[Code::NOT_FOUND, Code::SSO_LAST_SIGN_IN_METHOD],
            ..RouteDoc::new(
                "POST",
                "/account/identities/{id}/unlink",
                "pages",
                "Unlink an upstream identity (session cookie); refused when it is the \
                 account's last way to sign in",
            )
        },
        post(unlink),
    )
}

/// `POST /account/identities/{id}/unlink`.
async fn unlink(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form, FormError>,
) -> Response {
    let ctx = context::current();
    let locale = ctx.locale;
    let p = match signed_in_post(&s, &headers, form, locale).await {
        Ok((p, _)) => p,
        Err(res) => return res,
    };
    let Ok(id) = id.parse::<Id>() else {
        let p = Problem::from_error(Code::NOT_FOUND.into(), locale);
        return error_page(p, locale, Back::Account);
    };
    if let Err(e) = s.svc.sso_unlink(p.account_id, id, &ctx.meta()).await {
        return error_page(Problem::from_error(e, locale), locale, Back::Account);
    }
    html::see_other("/account?notice=unlinked", locale, Cookies::default())
}

/// Percent-encodes a query value.
fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One link per enabled provider (plain links: no JavaScript needed), keeping `next`.
pub(super) fn buttons(s: &AppState, next: Option<&str>, locale: Locale) -> String {
    let providers = s.svc.sso_buttons();
    if providers.is_empty() {
        return String::new();
    }
    let mut out = format!(
        r#"<div class="sso"><p>{}</p><ul>"#,
        esc(T::OrUseProvider.get(locale))
    );
    for (id, name) in providers {
        let mut href = format!("/api/v1/auth/sso/{}/start", query_value(&id));
        if let Some(n) = next {
            href.push_str(&format!("?next={}", query_value(n)));
        }
        out.push_str(&format!(
            r#"<li><a class="button" data-provider="{}" href="{}">{}</a></li>"#,
            esc(&id),
            esc(&href),
            esc(&T::SignInWith.get(locale).replace("{}", &name)),
        ));
    }
    out.push_str("</ul></div>");
    out
}

/// The browser's binding cookie (the CSRF one): its value, minted and set when missing.
pub(crate) fn browser_binding(
    s: &AppState,
    headers: &HeaderMap,
    jar: &mut Cookies,
) -> Result<String, AppError> {
    let name = cookies::name(&s.http, cookies::CSRF);
    match cookies::get(headers, &name).filter(|b| b.len() >= 32) {
        Some(b) => Ok(b),
        None => {
            let b = gatehouse_core::sso::new_browser_binding()?;
            jar.add(cookies::set(&s.http, cookies::CSRF, &b, None));
            Ok(b)
        }
    }
}

/// `302 Found` to the provider, setting the binding cookie if it was just minted.
pub(crate) fn to_provider(url: &str, jar: Cookies) -> Response {
    let locale = context::current().locale;
    let mut res = html::see_other(url, locale, jar);
    *res.status_mut() = StatusCode::FOUND;
    res
}

/// A failed start or callback: the sign-in page with the error's status and code.
pub(crate) fn sso_failed(
    s: &AppState,
    headers: &HeaderMap,
    next: Option<&str>,
    e: AppError,
) -> Response {
    let locale = context::current().locale;
    let next = next.and_then(safe_next);
    login_page(s, headers, "", next, Some(Problem::from_error(e, locale)))
}

/// A completed callback: on to `next` (or the account page) with the session cookie, or
/// the page of the step the sign-in still owes.
pub(crate) async fn sso_finished(s: &AppState, headers: &HeaderMap, done: Finished) -> Response {
    let locale = context::current().locale;
    match done {
        Finished::SignedIn(outcome, next) => {
            let next = next.as_deref().and_then(safe_next);
            match *outcome {
                LoginOutcome::Done(issued) => signed_in(s, issued, next, locale),
                LoginOutcome::Step(ch) => super::mfa::step(s, headers, &ch, next).await,
            }
        }
        Finished::Linked(next) => {
            let to = next
                .as_deref()
                .and_then(safe_next)
                .map(location)
                .unwrap_or_else(|| "/account?notice=linked".into());
            html::see_other(&to, locale, Cookies::default())
        }
    }
}

/// The account page's card: linked providers, and a link button per provider not yet
/// linked (mode=link; needs a session under ten minutes old).
pub(super) async fn account_card(
    s: &AppState,
    p: &gatehouse_core::Principal,
    csrf: &str,
    locale: Locale,
) -> Result<String, AppError> {
    let linked = s.svc.sso_identities(p.account_id).await?;
    let buttons = s.svc.sso_buttons();
    if linked.is_empty() && buttons.is_empty() {
        return Ok(String::new());
    }
    let mut out = format!(
        r#"<div class="card" id="providers"><h2>{}</h2><ul>"#,
        esc(T::LinkedProviders.get(locale))
    );
    for i in &linked {
        let name = i.provider_name.as_deref().unwrap_or(&i.identity.provider);
        let id = esc(&i.identity.id.to_string());
        out.push_str(&format!(
            r#"<li data-identity="{id}">{} — {} ({}) <form class="inline" method="post" action="/account/identities/{id}/unlink">{}<button class="danger" type="submit">{}</button></form></li>"#,
            esc(name),
            esc(i.identity.email.as_deref().unwrap_or(&i.identity.subject)),
            super::account::time(i.identity.created_at),
            hidden("csrf_token", csrf),
            esc(T::Unlink.get(locale)),
        ));
    }
    out.push_str("</ul>");
    for (id, name) in buttons {
        if linked.iter().any(|i| i.identity.provider == id) {
            continue;
        }
        out.push_str(&format!(
            r#"<p><a class="button secondary" href="/api/v1/auth/sso/{}/start?mode=link&amp;next=/account">{}</a></p>"#,
            query_value(&id),
            esc(&T::LinkProvider.get(locale).replace("{}", &name)),
        ));
    }
    out.push_str("</div>");
    Ok(out)
}
