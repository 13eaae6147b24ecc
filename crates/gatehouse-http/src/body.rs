//! JSON request bodies: read as a `serde_json::Value` (so syntax, media type, size and
//! shape errors each get their own code), then fields are taken one by one, collecting
//! every failed rule as a field error. A key given twice in one object, at any depth, is
//! refused (`duplicate`): parsers disagree on which one wins, and a proxy or WAF that
//! checked the first must not see a different request than we act on.

use crate::envelope::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use gatehouse_domain::{AppError, Code, FieldError, Id, Secret};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

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
        let mut duplicate = None;
        let parsed = parse_strict(&bytes, &mut duplicate);
        if let Some(field) = duplicate {
            return Err(AppError::validation(vec![FieldError::new(field, "duplicate")]).into());
        }
        match parsed {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => {
                Err(AppError::validation(vec![FieldError::new("body", "invalid_type")]).into())
            }
            Err(_) => Err(Code::MALFORMED_JSON.into()),
        }
    }
}

/// Parses JSON like `serde_json::from_slice::<Value>`, but fails on a key that appears
/// twice in one object, setting `duplicate` to its path (`a.b`, `items[0].id`).
fn parse_strict(bytes: &[u8], duplicate: &mut Option<String>) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict {
        path: String::new(),
        duplicate,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A `Value` seed that knows where in the document it is.
struct Strict<'a> {
    path: String,
    duplicate: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text cannot spell a non-finite number, so `None` does not happen here.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, items.len());
            let seed = Strict {
                path,
                duplicate: &mut *self.duplicate,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if out.contains_key(&key) {
                *self.duplicate = Some(path);
                return Err(de::Error::custom("duplicate key"));
            }
            let seed = Strict {
                path,
                duplicate: &mut *self.duplicate,
            };
            let v = map.next_value_seed(seed)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
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

    /// An optional whole number in `0..=max`.
    pub fn opt_u64(&mut self, name: &str, max: u64) -> Option<u64> {
        match self.take(name, false)? {
            Value::Number(n) => match n.as_u64() {
                Some(v) if v <= max => Some(v),
                _ => {
                    self.errors.push(FieldError::new(name, "invalid"));
                    None
                }
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(json: &str) -> Option<String> {
        let mut d = None;
        let _ = parse_strict(json.as_bytes(), &mut d);
        d
    }

    #[test]
    fn a_key_given_twice_is_named_at_any_depth() {
        assert_eq!(
            dup(r#"{"identifier":"a","password":"p","identifier":"b"}"#).as_deref(),
            Some("identifier")
        );
        assert_eq!(
            dup(r#"{"profile":{"name":"a","name":"b"}}"#).as_deref(),
            Some("profile.name")
        );
        assert_eq!(
            dup(r#"{"items":[{"id":1},{"id":2,"id":3}]}"#).as_deref(),
            Some("items[1].id")
        );
    }

    #[test]
    fn strict_parsing_matches_serde_json_otherwise() {
        for json in [
            r#"{"a":1,"b":[1,-2,3.5,"x",null,true],"c":{"a":1},"d":{"a":{}}}"#,
            r#"[{"a":1},{"a":1}]"#,
            r#""text""#,
            "18446744073709551615",
        ] {
            let mut d = None;
            let ours = parse_strict(json.as_bytes(), &mut d).unwrap();
            assert_eq!(d, None);
            assert_eq!(ours, serde_json::from_str::<Value>(json).unwrap(), "{json}");
        }
        let mut d = None;
        assert!(parse_strict(b"{\"a\":1} x", &mut d).is_err());
        assert!(parse_strict(b"{\"a\":", &mut d).is_err());
        assert_eq!(d, None);
    }
}
