//! JSON request bodies: read as a `serde_json::Value` (so syntax, media type, size and
//! shape errors each get their own code), then fields are taken one by one, collecting
//! every failed rule as a field error.

use crate::envelope::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use gatehouse_domain::{AppError, Code, FieldError, Id, Secret};
use serde_json::{Map, Value};

/// A JSON object body.
pub struct JsonBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req
            .headers()
            .get_all(CONTENT_TYPE)
            .iter()
            .collect::<Vec<_>>();
        let json = match ct.as_slice() {
            [one] => one.to_str().ok().is_some_and(|v| {
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            }),
            _ => false,
        };
        if !json {
            return Err(Code::UNSUPPORTED_MEDIA_TYPE.into());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::from(Code::PAYLOAD_TOO_LARGE)
            } else {
                ApiError::from(Code::MALFORMED_JSON)
            }
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => {
                Err(AppError::validation(vec![FieldError::new("body", "invalid_type")]).into())
            }
            Err(_) => Err(Code::MALFORMED_JSON.into()),
        }
    }
}

/// Takes typed fields out of a body, remembering every problem.
pub struct Fields {
    map: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields {
    /// Starts reading `body`.
    pub fn new(body: JsonBody) -> Self {
        Self {
            map: body.0,
            errors: Vec::new(),
        }
    }

    fn take(&mut self, name: &str, required: bool) -> Option<Value> {
        match self.map.remove(name) {
            None | Some(Value::Null) => {
                if required {
                    self.errors.push(FieldError::new(name, "required"));
                }
                None
            }
            Some(v) => Some(v),
        }
    }

    fn string(&mut self, name: &str, required: bool, max_chars: usize) -> Option<String> {
        match self.take(name, required)? {
            Value::String(s) if s.chars().count() > max_chars => {
                self.errors.push(FieldError::new(name, "too_long"));
                None
            }
            Value::String(s) if required && s.trim().is_empty() => {
                self.errors.push(FieldError::new(name, "required"));
                None
            }
            Value::String(s) => Some(s),
            _ => {
                self.errors.push(FieldError::new(name, "invalid_type"));
                None
            }
        }
    }

    /// A required, non-blank string of at most `max_chars` characters.
    pub fn req_str(&mut self, name: &str, max_chars: usize) -> String {
        self.string(name, true, max_chars).unwrap_or_default()
    }

    /// An optional string.
    pub fn opt_str(&mut self, name: &str, max_chars: usize) -> Option<String> {
        self.string(name, false, max_chars)
    }

    /// A required secret (never echoed back).
    pub fn req_secret(&mut self, name: &str, max_chars: usize) -> Secret {
        Secret::new(self.req_str(name, max_chars))
    }

    /// An optional secret.
    pub fn opt_secret(&mut self, name: &str, max_chars: usize) -> Option<Secret> {
        self.opt_str(name, max_chars).map(Secret::new)
    }

    /// An optional boolean.
    pub fn opt_bool(&mut self, name: &str) -> Option<bool> {
        match self.take(name, false)? {
            Value::Bool(b) => Some(b),
            _ => {
                self.errors.push(FieldError::new(name, "invalid_type"));
                None
            }
        }
    }

    /// An optional list of short strings.
    pub fn opt_str_list(
        &mut self,
        name: &str,
        max_items: usize,
        max_chars: usize,
    ) -> Option<Vec<String>> {
        match self.take(name, false)? {
            Value::Array(items) if items.len() <= max_items => {
                let strings: Option<Vec<String>> = items
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) if s.chars().count() <= max_chars => Some(s),
                        _ => None,
                    })
                    .collect();
                if strings.is_none() {
                    self.errors.push(FieldError::new(name, "invalid_type"));
                }
                strings
            }
            Value::Array(_) => {
                self.errors.push(FieldError::new(name, "too_long"));
                None
            }
            _ => {
                self.errors.push(FieldError::new(name, "invalid_type"));
                None
            }
        }
    }

    /// Fails with every collected field error, or with `unknown_field` for fields the
    /// endpoint does not take (typos should not pass silently).
    pub fn finish(mut self) -> Result<(), ApiError> {
        let mut unknown: Vec<_> = self.map.keys().take(8).cloned().collect();
        unknown.sort();
        for k in unknown {
            self.errors.push(FieldError::new(k, "unknown_field"));
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::validation(self.errors).into())
        }
    }
}

/// Parses a path id; a malformed one is simply not found.
pub fn path_id(raw: &str) -> Result<Id, ApiError> {
    raw.parse::<Id>().map_err(|_| Code::NOT_FOUND.into())
}
