//! `/account`: who you are, your sessions, your password, and sign-out.

use super::form::{Form, FormError};
use super::html::{self, Cookies, esc, hidden};
use super::login::check_new_password;
use super::text::T;
use super::{
    Back, MAX_PASSWORD, Problem, check_csrf, clear_session, csrf_token, error_page, require,
    session,
};
use crate::api::query_params;
use crate::{AppState, context};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gatehouse_core::Principal;
use gatehouse_domain::model::{Account, Invitation, Session, Workspace};
use gatehouse_domain::{Code, Id, Locale, Secret, Timestamp};
use std::fmt::Write;

const SIGN_IN: &str = "/auth/login?next=/account";

/// `GET /account`.
pub async fn show(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let locale = context::current().locale;
    let p = match session(&s, &headers).await {
        Ok(Some(p)) => p,
        Ok(None) => return to_sign_in(locale),
        Err(e) => return error_page(Problem::from_error(e, locale), locale, Back::SignIn),
    };
    let notice = match query_params(q)
        .unwrap_or_default()
        .get("notice")
        .map(String::as_str)
    {
        Some("password") => Some(T::PasswordChanged),
        Some("revoked") => Some(T::SessionRevoked),
        Some("joined") => Some(T::InvitationAccepted),
        Some("declined") => Some(T::InvitationDeclined),
        Some("token-revoked") => Some(T::TokenRevoked),
        Some("linked") => Some(T::ProviderLinked),
        Some("unlinked") => Some(T::ProviderUnlinked),
        _ => None,
    };
    render(&s, &headers, &p, notice, None).await
}

/// `POST /account/sessions/{id}/revoke`.
pub async fn revoke(
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
    if let Err(e) = s.svc.revoke_my_session(&p, id, &ctx.meta()).await {
        return error_page(Problem::from_error(e, locale), locale, Back::Account);
    }
    if id == p.session_id {
        let mut jar = Cookies::default();
        clear_session(&s, &mut jar);
        return html::see_other("/auth/login", locale, jar);
    }
    html::see_other("/account?notice=revoked", locale, Cookies::default())
}

/// `POST /account/invitations/{id}/accept` and `…/decline`.
pub async fn decide_invitation(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((id, decision)): Path<(String, String)>,
    form: Result<Form, FormError>,
) -> Response {
    let ctx = context::current();
    let locale = ctx.locale;
    let p = match signed_in_post(&s, &headers, form, locale).await {
        Ok((p, _)) => p,
        Err(res) => return res,
    };
    let not_found = || {
        let p = Problem::from_error(Code::NOT_FOUND.into(), locale);
        error_page(p, locale, Back::Account)
    };
    let Ok(id) = id.parse::<Id>() else {
        return not_found();
    };
    let done = match decision.as_str() {
        "accept" => s
            .svc
            .accept_invitation(&p, id, &ctx.meta())
            .await
            .map(|_| "joined"),
        "decline" => s
            .svc
            .decline_invitation(&p, id, &ctx.meta())
            .await
            .map(|_| "declined"),
        _ => return not_found(),
    };
    match done {
        Ok(notice) => html::see_other(
            &format!("/account?notice={notice}"),
            locale,
            Cookies::default(),
        ),
        Err(e) => error_page(Problem::from_error(e, locale), locale, Back::Account),
    }
}

/// `POST /account/password`.
pub async fn change_password(
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
    let current = form.get("currentPassword");
    let new = form.get("newPassword");
    let mut errors = Vec::new();
    require(&mut errors, "currentPassword", current, MAX_PASSWORD);
    check_new_password(&mut errors, new, form.get("confirmPassword"));
    if !errors.is_empty() {
        let problem = Problem::fields(errors, locale);
        return render(&s, &headers, &p, None, Some(problem)).await;
    }
    match s
        .svc
        .change_password(&p, &Secret::new(current), &Secret::new(new), &ctx.meta())
        .await
    {
        Ok(()) => html::see_other("/account?notice=password", locale, Cookies::default()),
        Err(e) => {
            let wrong_current = e.code == Code::INVALID_CREDENTIALS;
            let mut problem = Problem::from_error(e, locale);
            if wrong_current {
                problem.message = T::WrongCurrentPassword.get(locale);
            }
            render(&s, &headers, &p, None, Some(problem)).await
        }
    }
}

/// The common start of every account POST: a readable form, a valid CSRF token, and a
/// signed-in browser. Anything else is the response to send.
pub(super) async fn signed_in_post(
    s: &AppState,
    headers: &HeaderMap,
    form: Result<Form, FormError>,
    locale: Locale,
) -> Result<(Principal, Form), Response> {
    let form = form.map_err(|FormError(status)| {
        error_page(Problem::bad_form(status, locale), locale, Back::Account)
    })?;
    check_csrf(s, headers, &form)
        .map_err(|e| error_page(Problem::from_error(e, locale), locale, Back::Account))?;
    match session(s, headers).await {
        Ok(Some(p)) => Ok((p, form)),
        Ok(None) => Err(to_sign_in(locale)),
        Err(e) => Err(error_page(
            Problem::from_error(e, locale),
            locale,
            Back::Account,
        )),
    }
}

pub(super) fn to_sign_in(locale: Locale) -> Response {
    html::see_other(SIGN_IN, locale, Cookies::default())
}

/// The account page. `problem` belongs to the password form.
async fn render(
    s: &AppState,
    headers: &HeaderMap,
    p: &Principal,
    notice: Option<T>,
    problem: Option<Problem>,
) -> Response {
    let locale = context::current().locale;
    let loaded = async {
        let account = s.svc.me(p).await?;
        let sessions = s.svc.my_sessions(p).await?;
        let invitations = s.svc.my_invitations(p).await?;
        Ok::<_, gatehouse_domain::AppError>((account, sessions, invitations))
    };
    let (account, sessions, invitations) = match loaded.await {
        Ok(x) => x,
        Err(e) if matches!(e.code, Code::ACCOUNT_DISABLED | Code::TOKEN_REVOKED) => {
            let mut jar = Cookies::default();
            clear_session(s, &mut jar);
            return html::see_other("/auth/login", locale, jar);
        }
        Err(e) => return error_page(Problem::from_error(e, locale), locale, Back::SignIn),
    };
    let mut jar = Cookies::default();
    let csrf = match csrf_token(s, headers, &mut jar) {
        Ok(t) => t,
        Err(e) => return error_page(Problem::from_error(e, locale), locale, Back::SignIn),
    };
    let t = |k: T| k.get(locale);
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<div class="card"><div class="row"><h1>{}</h1><form class="inline" method="post" action="/auth/logout">{}<button id="sign-out" class="secondary" type="submit">{}</button></form></div>"#,
        esc(t(T::AccountTitle)),
        hidden("csrf_token", &csrf),
        esc(t(T::SignOut)),
    );
    if let Some(n) = notice {
        body.push_str(&html::notice("ok", n.get(locale)));
    }
    body.push_str(&profile(&account, locale));
    body.push_str("</div>");
    if !invitations.is_empty() {
        body.push_str(&invitations_card(&invitations, &csrf, locale));
    }
    body.push_str(&sessions_card(&sessions, p.session_id, &csrf, locale));
    body.push_str(&password_card(&csrf, problem.as_ref(), locale));
    match super::mfa::account_cards(s, p, &csrf, locale).await {
        Ok(cards) => body.push_str(&cards),
        Err(e) => return error_page(Problem::from_error(e, locale), locale, Back::SignIn),
    }
    match super::tokens::account_card(s, p, &csrf, locale).await {
        Ok(card) => body.push_str(&card),
        Err(e) => return error_page(Problem::from_error(e, locale), locale, Back::SignIn),
    }
    match super::sso::account_card(s, p, &csrf, locale).await {
        Ok(card) => body.push_str(&card),
        Err(e) => return error_page(Problem::from_error(e, locale), locale, Back::SignIn),
    }
    let status = problem.as_ref().map(|p| p.status).unwrap_or(StatusCode::OK);
    let doc = html::document(locale, t(T::AccountTitle), true, &body);
    html::page(status, locale, doc, jar)
}

fn profile(a: &Account, locale: Locale) -> String {
    let t = |k: T| k.get(locale);
    let or_dash = |v: Option<&str>| esc(v.filter(|v| !v.is_empty()).unwrap_or("—"));
    let roles = if a.roles.is_empty() {
        "—".to_string()
    } else {
        esc(&a.roles.join(", "))
    };
    let last = match a.last_login_at {
        Some(ts) => time(ts),
        None => esc(t(T::Never)),
    };
    format!(
        r#"<dl><dt>{}</dt><dd id="account-email">{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{roles}</dd><dt>{}</dt><dd>{last}</dd></dl>"#,
        esc(t(T::Email)),
        esc(&a.email),
        esc(t(T::Username)),
        or_dash(a.username.as_deref()),
        esc(t(T::DisplayName)),
        or_dash(a.display_name.as_deref()),
        esc(t(T::Roles)),
        esc(t(T::LastLogin)),
    )
}

fn sessions_card(sessions: &[Session], current: Id, csrf: &str, locale: Locale) -> String {
    let t = |k: T| k.get(locale);
    let mut out = format!(
        r#"<div class="card" id="sessions"><h2>{}</h2><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>"#,
        esc(t(T::Sessions)),
        esc(t(T::Started)),
        esc(t(T::LastSeen)),
        esc(t(T::IpAddress)),
        esc(t(T::Device)),
    );
    for x in sessions {
        let unknown = t(T::Unknown);
        let ua: String = x
            .user_agent
            .as_deref()
            .unwrap_or(unknown)
            .chars()
            .take(160)
            .collect();
        let this = if x.id == current {
            format!(r#" <span class="tag">{}</span>"#, esc(t(T::ThisBrowser)))
        } else {
            String::new()
        };
        let _ = write!(
            out,
            r#"<tr data-session="{id}"><td>{}</td><td>{}</td><td>{}</td><td class="ua">{}{this}</td><td><form class="inline" method="post" action="/account/sessions/{id}/revoke">{}<button class="danger" type="submit">{}</button></form></td></tr>"#,
            time(x.created_at),
            time(x.last_seen_at),
            esc(x.ip.as_deref().unwrap_or(unknown)),
            esc(&ua),
            hidden("csrf_token", csrf),
            esc(t(T::Revoke)),
            id = esc(&x.id.to_string()),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

fn invitations_card(found: &[(Invitation, Workspace)], csrf: &str, locale: Locale) -> String {
    let t = |k: T| k.get(locale);
    let mut out = format!(
        r#"<div class="card" id="invitations"><h2>{}</h2><p>{}</p><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>"#,
        esc(t(T::Invitations)),
        esc(t(T::InvitationsLead)),
        esc(t(T::Workspace)),
        esc(t(T::Roles)),
        esc(t(T::Expires)),
    );
    for (i, w) in found {
        let roles = if i.roles.is_empty() {
            "—".to_string()
        } else {
            esc(&i.roles.join(", "))
        };
        let form = |decision: &str, class: &str, label: T| {
            format!(
                r#"<form class="inline" method="post" action="/account/invitations/{id}/{decision}">{}<button class="{class}" type="submit">{}</button></form>"#,
                hidden("csrf_token", csrf),
                esc(t(label)),
                id = esc(&i.id.to_string()),
            )
        };
        let _ = write!(
            out,
            r#"<tr data-invitation="{}"><td>{} <span class="tag">{}</span></td><td>{roles}</td><td>{}</td><td>{}{}</td></tr>"#,
            esc(&i.id.to_string()),
            esc(&w.name),
            esc(&w.slug),
            time(i.expires_at),
            form("accept", "", T::Accept),
            form("decline", "secondary", T::Decline),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

fn password_card(csrf: &str, problem: Option<&Problem>, locale: Locale) -> String {
    let t = |k: T| k.get(locale);
    let on = |f: &str| problem.map(|p| p.on(f)).unwrap_or_default();
    let mut out = format!(
        r#"<div class="card" id="password"><h2>{}</h2>"#,
        esc(t(T::ChangePassword))
    );
    if let Some(p) = problem {
        out.push_str(&html::notice("error", p.message));
    }
    out.push_str(r#"<form method="post" action="/account/password">"#);
    out.push_str(&hidden("csrf_token", csrf));
    for (name, label, autocomplete) in [
        ("currentPassword", T::CurrentPassword, "current-password"),
        ("newPassword", T::NewPassword, "new-password"),
        ("confirmPassword", T::ConfirmPassword, "new-password"),
    ] {
        out.push_str(&html::field(
            name,
            t(label),
            "password",
            autocomplete,
            None,
            &on(name),
        ));
    }
    let _ = write!(
        out,
        r#"<button type="submit">{}</button></form></div>"#,
        esc(t(T::ChangePassword))
    );
    out
}

/// `<time>` in UTC to the minute; the machine-readable instant in `datetime`.
pub(super) fn time(ts: Timestamp) -> String {
    let full = ts.to_rfc3339();
    let shown: String = full.chars().take(16).collect::<String>().replace('T', " ");
    format!(
        r#"<time datetime="{}">{} UTC</time>"#,
        esc(&full),
        esc(&shown)
    )
}
