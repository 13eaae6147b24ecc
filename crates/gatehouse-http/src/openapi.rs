//! The OpenAPI document, generated from the same table that registers the routes: a route
//! cannot exist without its documentation.

use crate::AppState;
use axum::Router;
use axum::routing::MethodRouter;
use gatehouse_core::login::MfaPolicy;
use gatehouse_domain::{Code, Locale};
use serde_json::{Map, Value, json};

/// How a route authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    None,
    /// Needs `X-CSRFToken` (and the binding cookie).
    Csrf,
    /// Bearer token, or the session cookie plus `X-CSRFToken` on unsafe methods.
    User,
    /// As `User`, holding the route's permission (`PERMISSION_REQUIRED` otherwise).
    Admin,
}

/// One documented route.
#[derive(Clone, Debug)]
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub security: Security,
    /// JSON body fields: (name, JSON type, required).
    pub body: &'static [(&'static str, &'static str, bool)],
    /// Query parameters.
    pub query: &'static [&'static str],
    /// Codes this route can answer with (besides the ones every route can).
    pub codes: &'static [Code],
    /// `text/html` pages instead of JSON: their errors are pages too, and they may redirect.
    pub html: bool,
    /// The media type of a 200 answer that is a document of its own, not an envelope
    /// (`/openapi.json`, the JWKS, metrics).
    pub plain: Option<&'static str>,
    /// Success is `201 Created` (with the new resource), not `200`.
    pub created: bool,
    /// An HTML route that answers `302 Found` to another site (SSO start).
    pub found: bool,
    /// An OAuth endpoint: its client errors (400, 401, 403) are OAuth error objects
    /// (`{error, error_description}`, RFC 6749 §5.2 and RFC 6750 §3.1), not envelopes.
    pub oauth: bool,
}

impl RouteDoc {
    /// A JSON route with no body, query or extra codes.
    pub const fn new(
        method: &'static str,
        path: &'static str,
        tag: &'static str,
        summary: &'static str,
    ) -> Self {
        Self {
            method,
            path,
            tag,
            summary,
            security: Security::None,
            body: &[],
            query: &[],
            codes: &[],
            html: false,
            plain: None,
            created: false,
            found: false,
            oauth: false,
        }
    }
}

/// Registers routes and keeps their docs.
pub struct Routes {
    router: Router<AppState>,
    pub docs: Vec<RouteDoc>,
}

impl Routes {
    /// No routes yet.
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            docs: Vec::new(),
        }
    }

    /// Adds `handler` at `doc.path` and records `doc`.
    pub fn at(mut self, doc: RouteDoc, handler: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(doc.path, handler);
        self.docs.push(doc);
        self
    }

    /// Adds all of `other`.
    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.docs.extend(other.docs);
        self
    }

    /// The router and the docs.
    pub fn split(self) -> (Router<AppState>, Vec<RouteDoc>) {
        (self.router, self.docs)
    }
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

/// Codes any JSON route can answer with.
const COMMON: &[Code] = &[
    Code::RATE_LIMIT_EXCEEDED,
    Code::SERVICE_UNAVAILABLE,
    Code::INTERNAL_ERROR,
];

/// The schema of a query parameter, by its name: the paging and id rules every list route
/// applies (`api::page_of`, `api::opt_id`), timestamps as RFC 3339, anything else a string.
fn query_schema(name: &str) -> Value {
    match name {
        "page" => json!({ "type": "integer", "minimum": 1, "maximum": 1_000_000 }),
        "pageSize" => json!({ "type": "integer", "minimum": 1, "maximum": 100 }),
        "from" | "to" => json!({ "type": "string", "format": "date-time" }),
        n if n.ends_with("Id") => json!({ "type": "string", "format": "uuid" }),
        _ => json!({ "type": "string" }),
    }
}

/// The schema of a JSON body field: its type, plus the rules the handlers apply to fields of
/// that name (ids are UUIDs, `email` an address, `slug` the workspace slug rule, `mfaPolicy`
/// one of the policies). In a JSON body, a required string must not be blank
/// (`Fields::req_str` refuses a blank one as missing), and an optional field may be `null`
/// (`Fields` reads `null` as absent).
fn body_schema(name: &str, ty: &str, required: bool, json_body: bool) -> Value {
    let required = required && json_body;
    let ty_value = if json_body && !required {
        json!([ty, "null"])
    } else {
        json!(ty)
    };
    let mut schema = json!({ "type": ty_value });
    if ty == "array" {
        schema["items"] = json!({ "type": "string" });
    }
    if ty != "string" {
        return schema;
    }
    match name {
        n if n.ends_with("Id") => schema["format"] = json!("uuid"),
        "email" => schema["format"] = json!("email"),
        "slug" => {
            schema["pattern"] = json!("^[a-z0-9_][a-z0-9_-]{0,63}$");
        }
        "mfaPolicy" => {
            let mut all: Vec<Value> = MfaPolicy::ALL.iter().map(|p| json!(p.as_str())).collect();
            // `enum` restricts `null` too: an optional field lists it.
            if !required && json_body {
                all.push(Value::Null);
            }
            schema["enum"] = json!(all);
        }
        _ if required => {
            schema["minLength"] = json!(1);
            schema["pattern"] = json!("\\S");
        }
        _ => {}
    }
    schema
}

/// Builds the OpenAPI 3.1 document.
pub fn document(routes: &[RouteDoc]) -> Value {
    let mut paths = Map::new();
    for r in routes {
        let mut codes: Vec<Code> = r.codes.to_vec();
        // A JSON route checks its query string (repeats, bad encoding, values): 400.
        if !r.query.is_empty() && !r.html {
            codes.push(Code::VALIDATION_ERROR);
        }
        if !r.body.is_empty() {
            codes.extend([
                Code::VALIDATION_ERROR,
                Code::MALFORMED_JSON,
                Code::UNSUPPORTED_MEDIA_TYPE,
                Code::PAYLOAD_TOO_LARGE,
                Code::REQUEST_TIMEOUT,
            ]);
        }
        match r.security {
            Security::None => {}
            Security::Csrf => codes.extend([Code::CSRF_MISSING, Code::CSRF_INVALID]),
            Security::User | Security::Admin => codes.extend([
                Code::AUTHENTICATION_REQUIRED,
                Code::TOKEN_INVALID,
                Code::TOKEN_EXPIRED,
                Code::TOKEN_REVOKED,
                Code::CSRF_MISSING,
                Code::CSRF_INVALID,
                Code::ACCOUNT_DISABLED,
                Code::JWT_KEY_NOT_CONFIGURED,
                Code::SESSION_REQUIRED,
            ]),
        }
        if r.security == Security::Admin {
            codes.push(Code::PERMISSION_REQUIRED);
        }
        if !r.html {
            codes.extend(COMMON);
        }
        // One mention per code, even when several rules bring it in.
        let mut unique: Vec<Code> = Vec::with_capacity(codes.len());
        for c in codes {
            if !unique.contains(&c) {
                unique.push(c);
            }
        }
        let codes = unique;
        let mut responses = Map::new();
        if let Some(media) = r.plain {
            responses.insert(
                "200".into(),
                json!({ "description": "The document itself (not an envelope)", "content": { media: {} } }),
            );
        }
        for code in &codes {
            let status = if r.created && code.is_success() {
                "201".to_string()
            } else {
                code.status().to_string()
            };
            let entry = responses.entry(status).or_insert_with(|| {
                if r.html {
                    return json!({ "description": "", "content": { "text/html": {} } });
                }
                json!({ "description": "", "content": { "application/json": { "schema": {
                    "$ref": if code.is_success() { "#/components/schemas/Envelope" } else { "#/components/schemas/ErrorEnvelope" }
                } } } })
            });
            let desc = entry["description"].as_str().unwrap_or("").to_string();
            let joined = if desc.is_empty() {
                code.as_str().to_string()
            } else {
                format!("{desc}, {}", code.as_str())
            };
            entry["description"] = Value::String(joined);
        }
        if r.oauth {
            for (status, errors) in [
                ("400", "invalid_request"),
                ("401", "invalid_client"),
                ("403", "insufficient_scope"),
            ] {
                responses.insert(
                    status.into(),
                    json!({ "description": format!("OAuth error: {errors}"), "content": { "application/json": { "schema": {
                        "$ref": "#/components/schemas/OAuthError" } } } }),
                );
            }
        }
        if r.html {
            responses.insert(
                "200".into(),
                json!({ "description": "HTML page", "content": { "text/html": {} } }),
            );
            responses.insert(
                "303".into(),
                json!({ "description": "See Other: on to the next page (`next`, a sign-in step, or the sign-in form)" }),
            );
            if r.found {
                responses.insert(
                    "302".into(),
                    json!({ "description": "Found: on to the identity provider" }),
                );
            }
        }
        let mut op = json!({
            "tags": [r.tag],
            "summary": r.summary,
            "operationId": format!("{}{}", r.method.to_lowercase(), r.path.replace(['/', '{', '}', '-', '.'], "_")),
            "responses": responses,
        });
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        params.extend(r.query.iter().map(
            |q| json!({ "name": q, "in": "query", "required": false, "schema": query_schema(q) }),
        ));
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if !r.body.is_empty() {
            let props: Map<String, Value> = r
                .body
                .iter()
                .map(|(name, ty, required)| {
                    (name.to_string(), body_schema(name, ty, *required, !r.html))
                })
                .collect();
            let required: Vec<&str> = r.body.iter().filter(|f| f.2).map(|f| f.0).collect();
            let media = if r.html {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            };
            op["requestBody"] = json!({ "required": true, "content": { media: { "schema": {
                "type": "object", "properties": props, "required": required, "additionalProperties": false
            } } } });
        }
        op["security"] = match r.security {
            Security::None => json!([]),
            Security::Csrf => json!([{ "csrf": [] }]),
            Security::User | Security::Admin => {
                json!([{ "bearer": [] }, { "session": [], "csrf": [] }])
            }
        };
        let item = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        item[r.method.to_lowercase()] = op;
    }
    let all_codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    let catalog: Vec<Value> = Code::ALL
        .iter()
        .map(|c| json!({ "code": c.as_str(), "status": c.status(), "message": c.message(Locale::En) }))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Gatehouse",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-hosted authentication and identity service. Every JSON response is an envelope; `code` is from the catalog in `x-message-codes`.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "session": { "type": "apiKey", "in": "cookie", "name": "gh_session" },
                "csrf": { "type": "apiKey", "in": "header", "name": "X-CSRFToken" },
            },
            "schemas": {
                "Envelope": { "type": "object", "required": ["success", "code", "message", "data", "requestId"], "properties": {
                    "success": { "const": true }, "code": { "type": "string", "enum": all_codes },
                    "message": { "type": "string" }, "data": {}, "requestId": { "type": "string" } } },
                "ErrorEnvelope": { "type": "object", "required": ["success", "code", "message", "data", "errors", "requestId"], "properties": {
                    "success": { "const": false }, "code": { "type": "string", "enum": all_codes },
                    "message": { "type": "string" }, "data": { "type": "null" },
                    "errors": { "type": "array", "items": { "type": "object", "properties": {
                        "field": { "type": "string" }, "code": { "type": "string" }, "message": { "type": "string" } } } },
                    "requestId": { "type": "string" } } },
                "OAuthError": { "type": "object", "required": ["error"], "properties": {
                    "error": { "type": "string", "enum": ["invalid_request", "invalid_client", "insufficient_scope"] },
                    "error_description": { "type": "string" } } },
            },
        },
        "x-message-codes": catalog,
    })
}
