//! Two-factor pages: the TOTP and recovery-code sign-in steps (with "trust this browser"),
//! TOTP enrolment as a sign-in step or from the account page, recovery codes, and the
//! account page's two-factor and trusted-browser cards.

use super::account::{signed_in_post, time, to_sign_in};
use super::form::{Form, FormError, safe_next};
use super::html::{self, Cookies, esc, hidden};
use super::login::{login_page, signed_in, step_page};
use super::text::T;
use super::{Back, Problem, check_csrf, csrf_token, error_page, require};
use crate::openapi::{RouteDoc, Routes, Security};
use crate::{AppState, context};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use gatehouse_core::Principal;
use gatehouse_core::login::{Challenge, LoginOutcome, Step};
use gatehouse_core::mfa::Enrollment;
use gatehouse_domain::{AppError, Code, FieldError, Id, Locale, Secret};
use std::fmt::Write;

const PAGES: &str = "pages";
const DEFAULT_NEXT: &str = "/account";

/// The two-factor page routes.
pub fn routes() -> Routes {
    use Code as C;
    let step_codes: &'static [Code] = &[
        C::MFA_CODE_INVALID,
        C::CHALLENGE_INVALID,
        C::ACCOUNT_LOCKED,
        C::ACCOUNT_DISABLED,
    ];
    Routes::new()
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[
                    ("challengeToken", "string", true),
                    ("code", "string", true),
                    ("rememberDevice", "string", false),
                    ("csrf_token", "string", true),
                    ("next", "string", false),
                ],
                codes: step_codes,
                ..RouteDoc::new(
                    "POST",
                    "/auth/login/totp",
                    PAGES,
                    "Sign-in step: a TOTP code (rememberDevice=on trusts this browser); 303 to `next`",
                )
            },
            post(login_totp),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[
                    ("challengeToken", "string", true),
                    ("code", "string", true),
                    ("csrf_token", "string", true),
                    ("next", "string", false),
                ],
                codes: step_codes,
                ..RouteDoc::new(
                    "POST",
                    "/auth/login/recovery-code",
                    PAGES,
                    "Sign-in step: a one-time recovery code; 303 to `next`",
                )
            },
            post(login_recovery),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[
                    ("challengeToken", "string", true),
                    ("code", "string", true),
                    ("csrf_token", "string", true),
                    ("next", "string", false),
                ],
                codes: step_codes,
                ..RouteDoc::new(
                    "POST",
                    "/auth/login/totp/confirm",
                    PAGES,
                    "Sign-in step: confirm TOTP enrolment; shows the recovery codes, then `next`",
                )
            },
            post(login_confirm),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[("csrf_token", "string", true)],
                codes: &[C::CONFLICT, C::PERMISSION_REQUIRED],
                ..RouteDoc::new(
                    "POST",
                    "/account/totp/enroll",
                    PAGES,
                    "Start TOTP enrolment: the QR code and key (session cookie)",
                )
            },
            post(account_enroll),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[("code", "string", true), ("csrf_token", "string", true)],
                codes: &[C::MFA_CODE_INVALID, C::CONFLICT],
                ..RouteDoc::new(
                    "POST",
                    "/account/totp/confirm",
                    PAGES,
                    "Confirm TOTP enrolment; shows the recovery codes (session cookie)",
                )
            },
            post(account_confirm),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[("password", "string", true), ("csrf_token", "string", true)],
                codes: &[C::INVALID_CREDENTIALS, C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/account/totp/disable",
                    PAGES,
                    "Turn TOTP off with the password; 303 to /account (session cookie)",
                )
            },
            post(account_disable),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[("code", "string", true), ("csrf_token", "string", true)],
                codes: &[C::MFA_CODE_INVALID],
                ..RouteDoc::new(
                    "POST",
                    "/account/recovery-codes",
                    PAGES,
                    "New recovery codes, with a fresh TOTP code (session cookie)",
                )
            },
            post(account_regenerate),
        )
        .at(
            RouteDoc {
                html: true,
                security: Security::Csrf,
                body: &[("csrf_token", "string", true)],
                codes: &[C::NOT_FOUND],
                ..RouteDoc::new(
                    "POST",
                    "/account/trusted-devices/{id}/revoke",
                    PAGES,
                    "Stop trusting one browser (session cookie)",
                )
            },
            post(account_revoke_device),
        )
}

/// The page for whichever step a sign-in still owes.
pub(super) async fn step(
    s: &AppState,
    headers: &HeaderMap,
    ch: &Challenge,
    next: Option<&str>,
) -> Response {
    let token = ch.token.expose();
    match ch.step {
        Step::VerifySecondFactor => totp_page(s, headers, token, next, None),
        Step::EnrollTotp => login_enroll_page(s, headers, token, next, None).await,
        Step::ChangePassword => step_page(s, headers, token, next, None, StatusCode::OK),
        // The confirmation step has no page yet: the sign-in page says what is owed, and
        // the API (`/api/v1/auth/login/email/verify`) completes it.
        Step::VerifyEmail => {
            let locale = context::current().locale;
            let p = Problem::from_error(Code::EMAIL_NOT_VERIFIED.into(), locale);
            login_page(s, headers, "", next, Some(p))
        }
    }
}

/// The common start of a step form: the form, its challenge, `next`, and the CSRF check.
struct StepForm {
    form: Form,
    challenge: String,
    next: Option<String>,
}

fn read_step(
    s: &AppState,
    headers: &HeaderMap,
    form: Result<Form, FormError>,
    locale: Locale,
) -> Result<(StepForm, Option<Problem>), Box<Response>> {
    let form = form.map_err(|FormError(status)| {
        Box::new(login_page(
            s,
            headers,
            "",
            None,
            Some(Problem::bad_form(status, locale)),
        ))
    })?;
    let challenge = form.get("challengeToken").to_string();
    let next = safe_next(form.get("next")).map(str::to_string);
    if challenge.is_empty() || challenge.len() > 128 {
        let p = Problem::from_error(Code::CHALLENGE_INVALID.into(), locale);
        return Err(Box::new(login_page(
            s,
            headers,
            "",
            next.as_deref(),
            Some(p),
        )));
    }
    let mut problem = check_csrf(s, headers, &form)
        .err()
        .map(|e| Problem::from_error(e, locale));
    if problem.is_none() {
        let mut errors = Vec::new();
        require(&mut errors, "code", form.get("code"), 64);
        if !errors.is_empty() {
            problem = Some(Problem::fields(errors, locale));
        }
    }
    Ok((
        StepForm {
            form,
            challenge,
            next,
        },
        problem,
    ))
}

/// A failed step: an ended challenge goes back to the sign-in form, anything else shows
/// `again` with the problem.
fn step_failed(
    s: &AppState,
    headers: &HeaderMap,
    e: AppError,
    next: Option<&str>,
    again: impl FnOnce(Problem) -> Response,
) -> Response {
    let locale = context::current().locale;
    let ended = matches!(
        e.code,
        Code::CHALLENGE_INVALID | Code::ACCOUNT_LOCKED | Code::ACCOUNT_DISABLED
    );
    let p = Problem::from_error(e, locale);
    if ended {
        login_page(s, headers, "", next, Some(p))
    } else {
        again(p)
    }
}

/// `POST /auth/login/totp`.
async fn login_totp(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form, FormError>,
) -> Response {
    let ctx = context::current();
    let (f, problem) = match read_step(&s, &headers, form, ctx.locale) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let next = f.next.as_deref();
    let again = |p: Problem| totp_page(&s, &headers, &f.challenge, next, Some(p));
    if let Some(p) = problem {
        return again(p);
    }
    let remember = f.form.get("rememberDevice") == "on";
    match s
        .svc
        .complete_totp(&f.challenge, f.form.get("code"), remember, &ctx.meta())
        .await
    {
        Ok(LoginOutcome::Done(issued)) => signed_in(&s, issued, next, ctx.locale),
        Ok(LoginOutcome::Step(ch)) => step(&s, &headers, &ch, next).await,
        Err(e) => step_failed(&s, &headers, e, next, again),
    }
}

/// `POST /auth/login/recovery-code`.
async fn login_recovery(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form, FormError>,
) -> Response {
    let ctx = context::current();
    let (f, problem) = match read_step(&s, &headers, form, ctx.locale) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let next = f.next.as_deref();
    let again = |p: Problem| totp_page(&s, &headers, &f.challenge, next, Some(p));
    if let Some(p) = problem {
        return again(p);
    }
    match s
        .svc
        .complete_recovery_code(&f.challenge, f.form.get("code"), &ctx.meta())
        .await
    {
        Ok(LoginOutcome::Done(issued)) => signed_in(&s, issued, next, ctx.locale),
        Ok(LoginOutcome::Step(ch)) => step(&s, &headers, &ch, next).await,
        Err(e) => step_failed(&s, &headers, e, next, again),
    }
}

/// `POST /auth/login/totp/confirm`: turns TOTP on, signs in, and shows the recovery codes
/// once with a link on to `next`.
async fn login_confirm(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form, FormError>,
) -> Response {
    let ctx = context::current();
    let locale = ctx.locale;
    let (f, problem) = match read_step(&s, &headers, form, locale) {
        Ok(x) => x,
        Err(res) => return *res,
    };
    let next = f.next.as_deref();
    if let Some(p) = problem {
        return login_enroll_page(&s, &headers, &f.challenge, next, Some(p)).await;
    }
    match s
        .svc
        .complete_enrollment(&f.challenge, f.form.get("code"), &ctx.meta())
        .await
    {
        Ok((LoginOutcome::Done(issued), codes)) => {
            let signed = signed_in(&s, issued, next, locale);
            // Keep the cookies of the sign-in, but show the codes before moving on.
            let mut page = codes_page(&codes, next.unwrap_or(DEFAULT_NEXT), locale);
            for c in signed.headers().get_all(axum::http::header::SET_COOKIE) {
                page.headers_mut()
                    .append(axum::http::header::SET_COOKIE, c.clone());
            }
            page
        }
        Ok((LoginOutcome::Step(ch), _)) => step(&s, &headers, &ch, next).await,
        Err(e) if e.code == Code::MFA_CODE_INVALID => {
            let p = Problem::from_error(e, locale);
            login_enroll_page(&s, &headers, &f.challenge, next, Some(p)).await
        }
        Err(e) => step_failed(&s, &headers, e, next, |p| {
            login_page(&s, &headers, "", next, Some(p))
        }),
    }
}

/// The TOTP step, with "trust this browser" and the recovery-code form beside it.
fn totp_page(
    s: &AppState,
    headers: &HeaderMap,
    challenge: &str,
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
    let common = |out: &mut String| {
        out.push_str(&hidden("csrf_token", &csrf));
        out.push_str(&hidden("challengeToken", challenge));
        if let Some(n) = next {
            out.push_str(&hidden("next", n));
        }
    };
    let mut body = format!(
        r#"<div class="card"><h1>{}</h1><p>{}</p>"#,
        esc(t(T::TotpTitle)),
        esc(t(T::TotpLead))
    );
    if let Some(p) = &problem {
        body.push_str(&html::notice("error", p.message));
    }
    body.push_str(r#"<form method="post" action="/auth/login/totp">"#);
    common(&mut body);
    body.push_str(&html::field(
        "code",
        t(T::Code),
        "text",
        "one-time-code",
        None,
        &on("code"),
    ));
    let _ = write!(
        body,
        r#"<div class="field"><label><input type="checkbox" name="rememberDevice" value="on"> {}</label></div><button type="submit">{}</button></form></div>"#,
        esc(t(T::TrustBrowser)),
        esc(t(T::Continue)),
    );
    let _ = write!(
        body,
        r#"<div class="card"><p>{}</p><form method="post" action="/auth/login/recovery-code">"#,
        esc(t(T::UseRecoveryCode))
    );
    common(&mut body);
    body.push_str(&html::field(
        "code",
        t(T::RecoveryCode),
        "text",
        "off",
        None,
        &[],
    ));
    let _ = write!(
        body,
        r#"<button class="secondary" type="submit">{}</button></form></div>"#,
        esc(t(T::Continue))
    );
    let status = problem.as_ref().map(|p| p.status).unwrap_or(StatusCode::OK);
    let doc = html::document(locale, t(T::TotpTitle), false, &body);
    html::page(status, locale, doc, jar)
}

/// The enrolment step of a sign-in: QR code, key and the first code.
async fn login_enroll_page(
    s: &AppState,
    headers: &HeaderMap,
    challenge: &str,
    next: Option<&str>,
    problem: Option<Problem>,
) -> Response {
    let locale = context::current().locale;
    match s.svc.login_enrollment(challenge).await {
        Ok(e) => {
            let mut extra = hidden("challengeToken", challenge);
            if let Some(n) = next {
                extra.push_str(&hidden("next", n));
            }
            enroll_page(s, headers, &e, "/auth/login/totp/confirm", &extra, problem)
        }
        Err(e) => login_page(s, headers, "", next, Some(Problem::from_error(e, locale))),
    }
}

/// QR code, key, and a form for the first code posting to `action`.
fn enroll_page(
    s: &AppState,
    headers: &HeaderMap,
    e: &Enrollment,
    action: &str,
    extra_fields: &str,
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
        esc(t(T::EnrollTitle)),
        esc(t(T::EnrollLead))
    );
    if let Some(p) = &problem {
        body.push_str(&html::notice("error", p.message));
    }
    let _ = write!(
        body,
        r#"<p><img src="{}" width="200" height="200" alt="QR"></p><p>{}: <code id="totp-secret">{}</code></p><form method="post" action="{}">{}{extra_fields}"#,
        esc(e.qr_code.expose()),
        esc(t(T::SecretKey)),
        esc(e.secret.expose()),
        esc(action),
        hidden("csrf_token", &csrf),
    );
    body.push_str(&html::field(
        "code",
        t(T::Code),
        "text",
        "one-time-code",
        None,
        &on("code"),
    ));
    let _ = write!(
        body,
        r#"<button type="submit">{}</button></form></div>"#,
        esc(t(T::Continue))
    );
    let status = problem.as_ref().map(|p| p.status).unwrap_or(StatusCode::OK);
    let doc = html::document(locale, t(T::EnrollTitle), false, &body);
    html::page(status, locale, doc, jar)
}

/// The recovery codes, shown once, with a link on.
fn codes_page(codes: &[String], next: &str, locale: Locale) -> Response {
    let t = |k: T| k.get(locale);
    let mut body = format!(
        r#"<div class="card"><h1>{}</h1><p>{}</p><ul>"#,
        esc(t(T::RecoveryTitle)),
        esc(t(T::RecoveryLead))
    );
    for c in codes {
        let _ = write!(
            body,
            r#"<li class="recovery-code"><code>{}</code></li>"#,
            esc(c)
        );
    }
    let _ = write!(
        body,
        r#"</ul><p><a href="{}">{}</a></p></div>"#,
        esc(next),
        esc(t(T::Continue))
    );
    let doc = html::document(locale, t(T::RecoveryTitle), false, &body);
    html::page(StatusCode::OK, locale, doc, Cookies::default())
}

/// `POST /account/totp/enroll`.
async fn account_enroll(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form, FormError>,
) -> Response {
    let locale = context::current().locale;
    let (p, _) = match signed_in_post(&s, &headers, form, locale).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    account_enroll_page(&s, &headers, &p, false, None).await
}

async fn account_enroll_page(
    s: &AppState,
    headers: &HeaderMap,
    p: &Principal,
    reuse: bool,
    problem: Option<Problem>,
) -> Response {
    let locale = context::current().locale;
    match s.svc.enroll_totp(p, reuse).await {
        Ok(e) => enroll_page(s, headers, &e, "/account/totp/confirm", "", problem),
        Err(e) => error_page(Problem::from_error(e, locale), locale, Back::Account),
    }
}

/// `POST /account/totp/confirm`.
async fn account_confirm(
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
    let code = form.get("code");
    if code.trim().is_empty() {
        let problem = Problem::fields(vec![FieldError::new("code", "required")], locale);
        return account_enroll_page(&s, &headers, &p, true, Some(problem)).await;
    }
    match s.svc.confirm_totp(&p, code, &ctx.meta()).await {
        Ok(codes) => codes_page(&codes, "/account", locale),
        Err(e) if e.code == Code::MFA_CODE_INVALID => {
            let problem = Problem::from_error(e, locale);
            account_enroll_page(&s, &headers, &p, true, Some(problem)).await
        }
        Err(e) => error_page(Problem::from_error(e, locale), locale, Back::Account),
    }
}

/// `POST /account/totp/disable`.
async fn account_disable(
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
    let password = Secret::new(form.get("password"));
    match s
        .svc
        .disable_totp(&p, Some(&password), None, &ctx.meta())
        .await
    {
        Ok(()) => html::see_other("/account", locale, Cookies::default()),
        Err(e) => error_page(Problem::from_error(e, locale), locale, Back::Account),
    }
}

/// `POST /account/recovery-codes`.
async fn account_regenerate(
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
    match s
        .svc
        .regenerate_recovery_codes(&p, form.get("code"), &ctx.meta())
        .await
    {
        Ok(codes) => codes_page(&codes, "/account", locale),
        Err(e) => error_page(Problem::from_error(e, locale), locale, Back::Account),
    }
}

/// `POST /account/trusted-devices/{id}/revoke`.
async fn account_revoke_device(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form, FormError>,
) -> Response {
    let ctx = context::current();
    let locale = ctx.locale;
    let (p, _) = match signed_in_post(&s, &headers, form, locale).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    let Ok(id) = id.parse::<Id>() else {
        return error_page(
            Problem::from_error(Code::NOT_FOUND.into(), locale),
            locale,
            Back::Account,
        );
    };
    match s
        .svc
        .revoke_trusted_devices(&p, Some(id), &ctx.meta())
        .await
    {
        Ok(_) => html::see_other("/account", locale, Cookies::default()),
        Err(e) if e.code == Code::AUTHENTICATION_REQUIRED => to_sign_in(locale),
        Err(e) => error_page(Problem::from_error(e, locale), locale, Back::Account),
    }
}

/// The account page's two-factor and trusted-browser cards.
pub(super) async fn account_cards(
    s: &AppState,
    p: &Principal,
    csrf: &str,
    locale: Locale,
) -> Result<String, AppError> {
    let status = s.svc.mfa_status(p).await?;
    let devices = s.svc.my_trusted_devices(p).await?;
    let t = |k: T| k.get(locale);
    let mut out = format!(
        r#"<div class="card" id="two-factor"><h2>{}</h2>"#,
        esc(t(T::TotpTitle))
    );
    if status.enabled {
        let _ = write!(
            out,
            r#"<p>{}</p><p>{}: {}</p><form method="post" action="/account/recovery-codes">{}"#,
            esc(t(T::TwoFactorOn)),
            esc(t(T::CodesLeft)),
            status.recovery_codes_left,
            hidden("csrf_token", csrf),
        );
        out.push_str(&html::field(
            "code",
            t(T::Code),
            "text",
            "one-time-code",
            None,
            &[],
        ));
        let _ = write!(
            out,
            r#"<button class="secondary" type="submit">{}</button></form><form method="post" action="/account/totp/disable">{}"#,
            esc(t(T::NewRecoveryCodes)),
            hidden("csrf_token", csrf),
        );
        out.push_str(&html::field(
            "password",
            t(T::Password),
            "password",
            "current-password",
            None,
            &[],
        ));
        let _ = write!(
            out,
            r#"<button class="secondary" type="submit">{}</button></form></div>"#,
            esc(t(T::DisableTotp))
        );
    } else {
        let _ = write!(
            out,
            r#"<p>{}</p><form method="post" action="/account/totp/enroll">{}<button type="submit">{}</button></form></div>"#,
            esc(t(T::TwoFactorOff)),
            hidden("csrf_token", csrf),
            esc(t(T::EnableTotp)),
        );
    }
    let _ = write!(
        out,
        r#"<div class="card" id="trusted-devices"><h2>{}</h2>"#,
        esc(t(T::TrustedDevices))
    );
    if devices.is_empty() {
        let _ = write!(out, "<p>{}</p></div>", esc(t(T::NoTrustedDevices)));
        return Ok(out);
    }
    let _ = write!(
        out,
        r#"<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>"#,
        esc(t(T::Started)),
        esc(t(T::Expires)),
        esc(t(T::IpAddress)),
        esc(t(T::Device)),
    );
    for d in &devices {
        let unknown = t(T::Unknown);
        let ua: String = d
            .user_agent
            .as_deref()
            .unwrap_or(unknown)
            .chars()
            .take(160)
            .collect();
        let _ = write!(
            out,
            r#"<tr data-device="{id}"><td>{}</td><td>{}</td><td>{}</td><td class="ua">{}</td><td><form class="inline" method="post" action="/account/trusted-devices/{id}/revoke">{}<button class="danger" type="submit">{}</button></form></td></tr>"#,
            time(d.created_at),
            time(d.expires_at),
            esc(d.ip.as_deref().unwrap_or(unknown)),
            esc(&ua),
            hidden("csrf_token", csrf),
            esc(t(T::Revoke)),
            id = esc(&d.id.to_string()),
        );
    }
    out.push_str("</tbody></table></div>");
    Ok(out)
}
