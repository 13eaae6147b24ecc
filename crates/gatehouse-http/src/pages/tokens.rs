//! The account page's personal access tokens: the list (never the text), a form to create
//! one (its text shown once, on a page of its own, with a copy button), and revocation.

use super::account::{signed_in_post, time};
use super::html::{self, Cookies, esc, hidden};
use super::text::T;
use super::{Back, Problem, error_page};
use crate::openapi::{RouteDoc, Routes, Security};
use crate::pages::form::{Form, FormError};
use crate::{AppState, context};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use base64::Engine as _;
use gatehouse_core::Principal;
use gatehouse_core::pat::NewPat;
use gatehouse_domain::{AppError, Code, FieldError, Id, Locale};
use sha2::{Digest, Sha256};
use std::fmt::Write;

const PAGES: &str = "pages";

/// Lifetimes the create form offers, in days.
const LIFETIMES: [u64; 4] = [7, 30, 90, 365];

/// The one script of the token page: copies the token. Allowed by its hash alone.
const COPY_SCRIPT: &str = "document.getElementById('copy-token').addEventListener('click',function(){var t=document.getElementById('new-token');t.select();if(navigator.clipboard){navigator.clipboard.writeText(t.value)}});";

/// The token page routes.
pub fn routes() -> Routes {
    use Code as C;
    Routes::new()
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[
                    ("name", "string", true),
                    ("expiresInDays", "string", false),
                    ("csrf_token", "string", true),
                ],
                codes: &[
                    C::VALIDATION_ERROR,
                    C::WORKSPACE_DISABLED,
                    C::MEMBER_DISABLED,
                    C::PERMISSION_REQUIRED,
                ],
                ..RouteDoc::new(
                    "POST",
                    "/account/tokens",
                    PAGES,
                    "Create a personal access token (session cookie); its text is shown once",
                )
            },
            post(create),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[("csrf_token", "string", true)],
                codes: &[C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/account/tokens/{id}/revoke",
                    PAGES,
                    "Revoke one of your personal access tokens (session cookie)",
                )
            },
            post(revoke),
        )
}

/// The account page's token card.
pub(super) async fn account_card(
    s: &AppState,
    p: &Principal,
    csrf: &str,
    locale: Locale,
) -> Result<String, AppError> {
    let tokens = s.svc.list_pats(p).await?;
    let t = |k: T| k.get(locale);
    let mut out = format!(
        r#"<div class="card" id="tokens"><h2>{}</h2>"#,
        esc(t(T::AccessTokens))
    );
    if tokens.is_empty() {
        let _ = write!(out, "<p>{}</p>", esc(t(T::NoAccessTokens)));
    } else {
        let _ = write!(
            out,
            r#"<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>"#,
            esc(t(T::TokenName)),
            esc(t(T::Started)),
            esc(t(T::Expires)),
            esc(t(T::LastUsed)),
        );
        let never = esc(t(T::Never));
        for x in &tokens {
            let _ = write!(
                out,
                r#"<tr data-token="{id}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form class="inline" method="post" action="/account/tokens/{id}/revoke">{}<button class="danger" type="submit">{}</button></form></td></tr>"#,
                esc(&x.name),
                time(x.created_at),
                x.expires_at.map(time).unwrap_or_else(|| never.clone()),
                x.last_used_at.map(time).unwrap_or_else(|| never.clone()),
                hidden("csrf_token", csrf),
                esc(t(T::Revoke)),
                id = esc(&x.id.to_string()),
            );
        }
        out.push_str("</tbody></table>");
    }
    let _ = write!(
        out,
        r#"<form method="post" action="/account/tokens">{}"#,
        hidden("csrf_token", csrf)
    );
    out.push_str(&html::field(
        "name",
        t(T::TokenName),
        "text",
        "off",
        None,
        &[],
    ));
    let _ = write!(
        out,
        r#"<div class="field"><label for="f-expiresInDays">{}</label><select id="f-expiresInDays" name="expiresInDays">"#,
        esc(t(T::Expires))
    );
    let default = u64::from(s.svc.cfg.tokens.default_days);
    let max = u64::from(s.svc.cfg.tokens.max_days);
    for days in LIFETIMES.into_iter().filter(|d| *d <= max) {
        let selected = if days == default { " selected" } else { "" };
        let _ = write!(
            out,
            r#"<option value="{days}"{selected}>{days} {}</option>"#,
            esc(t(T::Days))
        );
    }
    if s.svc.cfg.tokens.allow_non_expiring {
        let _ = write!(
            out,
            r#"<option value="0">{never}</option>"#,
            never = esc(t(T::Never))
        );
    }
    let _ = write!(
        out,
        r#"</select></div><button type="submit">{}</button></form></div>"#,
        esc(t(T::CreateToken))
    );
    Ok(out)
}

/// `POST /account/tokens`: creates the token and shows its text once.
async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form, FormError>,
) -> Response {
    let ctx = context::current();
    let locale = ctx.locale;
    let (p, form) = match signed_in_post(&s, &headers, form, locale).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    let days = match form.get("expiresInDays") {
        "" => Ok(None),
        d => d
            .parse::<u64>()
            .map(Some)
            .map_err(|_| AppError::validation(vec![FieldError::new("expiresInDays", "invalid")])),
    };
    let created = match days {
        Ok(expires_in_days) => {
            let input = NewPat {
                name: form.get("name").to_string(),
                expires_in_days,
                ..NewPat::default()
            };
            s.svc.create_pat(&p, input, &ctx.meta()).await
        }
        Err(e) => Err(e),
    };
    let (pat, text) = match created {
        Ok(x) => x,
        Err(e) => return error_page(Problem::from_error(e, locale), locale, Back::Account),
    };
    let t = |k: T| k.get(locale);
    let body = format!(
        r#"<div class="card"><h1>{title}</h1><p>{lead}</p><p><strong>{name}</strong></p><div class="field"><input id="new-token" type="text" readonly value="{token}" aria-label="{title}"></div><p><button id="copy-token" class="secondary" type="button">{copy}</button></p><p><a href="/account">{back}</a></p></div><script>{COPY_SCRIPT}</script>"#,
        title = esc(t(T::TokenCreatedTitle)),
        lead = esc(t(T::TokenCreatedLead)),
        name = esc(&pat.name),
        token = esc(text.expose()),
        copy = esc(t(T::Copy)),
        back = esc(t(T::BackToAccount)),
    );
    let doc = html::document(locale, t(T::TokenCreatedTitle), false, &body);
    let mut res = html::page(StatusCode::OK, locale, doc, Cookies::default());
    // The page's own script, allowed by its hash; nothing else may run.
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(COPY_SCRIPT));
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{hash}'; \
         form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

/// `POST /account/tokens/{id}/revoke`.
async fn revoke(
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
    if let Err(e) = s.svc.revoke_pat(&p, id, &ctx.meta()).await {
        return error_page(Problem::from_error(e, locale), locale, Back::Account);
    }
    html::see_other("/account?notice=token-revoked", locale, Cookies::default())
}
