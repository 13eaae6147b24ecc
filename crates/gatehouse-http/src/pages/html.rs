//! HTML output: escaping, the page shell, and the security headers every page carries.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_domain::Locale;
use std::fmt::Write;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `<input type="hidden">` with an escaped value.
pub fn hidden(name: &str, value: &str) -> String {
    format!(
        r#"<input type="hidden" name="{}" value="{}">"#,
        esc(name),
        esc(value)
    )
}

/// A labelled input with its field errors listed underneath. `value` is only ever given
/// for non-secret fields.
pub fn field(
    name: &str,
    label: &str,
    kind: &str,
    autocomplete: &str,
    value: Option<&str>,
    errors: &[&str],
) -> String {
    let id = format!("f-{name}");
    let mut out = format!(
        r#"<div class="field"><label for="{id}">{}</label>"#,
        esc(label)
    );
    let invalid = if errors.is_empty() {
        String::new()
    } else {
        format!(r#" aria-invalid="true" aria-describedby="{id}-err""#)
    };
    let _ = write!(
        out,
        r#"<input id="{id}" name="{}" type="{}" autocomplete="{}" required{invalid}"#,
        esc(name),
        esc(kind),
        esc(autocomplete),
    );
    if let Some(v) = value {
        let _ = write!(out, r#" value="{}""#, esc(v));
    }
    out.push('>');
    if !errors.is_empty() {
        let _ = write!(out, r#"<ul class="errors" id="{id}-err">"#);
        for e in errors {
            let _ = write!(out, "<li>{}</li>", esc(e));
        }
        out.push_str("</ul>");
    }
    out.push_str("</div>");
    out
}

/// A notice box: `kind` is `error` or `ok`.
pub fn notice(kind: &str, text: &str) -> String {
    let role = if kind == "error" { "alert" } else { "status" };
    format!(
        r#"<p class="notice {}" role="{role}">{}</p>"#,
        esc(kind),
        esc(text)
    )
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans','Noto Sans SC',sans-serif;background:#f4f5f7;color:#1f2328}\
header{background:#1f2937;color:#fff;padding:.75rem 1.5rem;font-weight:600;letter-spacing:.02em}\
main{max-width:26rem;margin:2.5rem auto;padding:0 1rem}\
main.wide{max-width:56rem}\
.card{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:1.5rem;margin-bottom:1.25rem}\
h1{font-size:1.4rem;margin:0 0 1rem}\
h2{font-size:1.1rem;margin:0 0 .75rem}\
.field{margin-bottom:1rem}\
label{display:block;font-weight:600;margin-bottom:.3rem}\
input[type=text],input[type=password],input[type=email]{width:100%;padding:.5rem .6rem;border:1px solid #bcc3ca;border-radius:6px;font:inherit}\
input:focus{outline:2px solid #2563eb;outline-offset:1px}\
input[aria-invalid=true]{border-color:#c62828}\
button{font:inherit;padding:.5rem 1rem;border-radius:6px;border:1px solid #1d4ed8;background:#2563eb;color:#fff;cursor:pointer}\
button.secondary{background:#fff;color:#1f2328;border-color:#bcc3ca}\
button.danger{background:#fff;color:#c62828;border-color:#e5a3a3;padding:.25rem .6rem}\
.notice{padding:.6rem .8rem;border-radius:6px;margin:0 0 1rem}\
.notice.error{background:#fdecea;color:#8a1c1c;border:1px solid #f5c2c0}\
.notice.ok{background:#e8f5e9;color:#1b5e20;border:1px solid #b7dfb9}\
.errors{color:#c62828;margin:.3rem 0 0;padding-left:1.2rem;font-size:.9rem}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1.25rem;margin:0}\
dt{color:#57606a}dd{margin:0;word-break:break-word}\
table{width:100%;border-collapse:collapse;font-size:.92rem}\
th,td{text-align:left;padding:.5rem .4rem;border-bottom:1px solid #eaeef2;vertical-align:top}\
th{color:#57606a;font-weight:600;white-space:nowrap}\
time{white-space:nowrap}\
td.ua{max-width:18rem;word-break:break-word}\
.tag{display:inline-block;background:#dbeafe;color:#1e40af;border-radius:999px;padding:0 .5rem;font-size:.8rem;margin-left:.3rem}\
.row{display:flex;justify-content:space-between;align-items:center;gap:1rem}\
form.inline{display:inline;margin:0}\
a{color:#1d4ed8}\
@media (max-width:40rem){.card{padding:1rem;overflow-x:auto}th,td{padding:.4rem .25rem}time{white-space:normal}td.ua{max-width:10rem}}\
";

/// The whole document around `body`.
pub fn document(locale: Locale, title: &str, wide: bool, body: &str) -> String {
    let class = if wide { r#" class="wide""# } else { "" };
    format!(
        concat!(
            "<!doctype html>\n",
            r#"<html lang="{lang}"><head><meta charset="utf-8">"#,
            r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#,
            r#"<link rel="icon" href="data:,">"#,
            "<title>{title} · Gatehouse</title><style>{style}</style></head>",
            "<body><header>Gatehouse</header><main{class}>{body}</main></body></html>\n"
        ),
        lang = esc(locale.tag()),
        title = esc(title),
        style = STYLE,
        class = class,
        body = body,
    )
}

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                   form-action 'self'; frame-ancestors 'none'";

/// The headers every page response carries, redirects included.
fn secure(headers: &mut HeaderMap, locale: Locale) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(locale.tag()),
    );
}

/// An HTML page response with `cookies` to set.
pub fn page(status: StatusCode, locale: Locale, html: String, cookies: Cookies) -> Response {
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(h, locale);
    cookies.apply(h);
    res
}

/// A `303 See Other` to a same-origin `location` (already checked by the caller).
pub fn see_other(location: &str, locale: Locale, cookies: Cookies) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    secure(h, locale);
    cookies.apply(h);
    res
}

/// `Set-Cookie` values collected while a handler runs.
#[derive(Default)]
pub struct Cookies(Vec<HeaderValue>);

impl Cookies {
    /// Adds one (a `None` from a failed header build is skipped).
    pub fn add(&mut self, value: Option<HeaderValue>) {
        self.0.extend(value);
    }

    fn apply(self, headers: &mut HeaderMap) {
        for v in self.0 {
            headers.append(header::SET_COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn hidden_inputs_cannot_break_out_of_the_attribute() {
        let h = hidden("next", r#""><script>"#);
        assert!(!h.contains("<script>"), "{h}");
        assert!(h.contains("&quot;&gt;&lt;script&gt;"), "{h}");
    }
}
