//! JSON request bodies (`gatehouse_http` body): the media-type check, the JSON object rule
//! and the `Fields` reader every API handler takes its input through. Input: `Content-Type
//! \n body`. Beyond not panicking: a body is taken exactly when it is a JSON object sent as
//! JSON, and `Fields` accepts exactly the objects whose fields keep the rules (checked
//! against the parsed value), naming every field that breaks one.
#![no_main]

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Request, header};
use gatehouse_fuzz::{block_on, fields};
use gatehouse_http::fuzzing::{Fields, JsonBody};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// A made-up endpoint covering every reader: string length limit, list length limit, and
/// the fields it takes.
const NAME_MAX: usize = 8;
const LIST_ITEMS: usize = 3;
const KNOWN: [&str; 5] = ["name", "note", "secret", "remember", "scopes"];

fn is_json_type(ct: &str) -> bool {
    // A header value with bytes beyond visible ASCII has no text form (`to_str` fails): refused.
    if !ct.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        return false;
    }
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// The field errors the rules predict for `map` (as `field:code`, sorted).
fn predicted(map: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let mut err = |f: &str, c: &str| out.push(format!("{f}:{c}"));
    let str_rule = |v: Option<&Value>, required: bool| -> Option<&'static str> {
        match v {
            None | Some(Value::Null) => required.then_some("required"),
            Some(Value::String(s)) if s.chars().count() > NAME_MAX => Some("too_long"),
            Some(Value::String(s)) if required && s.trim().is_empty() => Some("required"),
            Some(Value::String(_)) => None,
            Some(_) => Some("invalid_type"),
        }
    };
    if let Some(c) = str_rule(map.get("name"), true) {
        err("name", c);
    }
    if let Some(c) = str_rule(map.get("note"), false) {
        err("note", c);
    }
    if let Some(c) = str_rule(map.get("secret"), true) {
        err("secret", c);
    }
    match map.get("remember") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(_) => err("remember", "invalid_type"),
    }
    match map.get("scopes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.len() > LIST_ITEMS => err("scopes", "too_long"),
        Some(Value::Array(items)) => {
            let ok = items
                .iter()
                .all(|v| matches!(v, Value::String(s) if s.chars().count() <= NAME_MAX));
            if !ok {
                err("scopes", "invalid_type");
            }
        }
        Some(_) => err("scopes", "invalid_type"),
    }
    for k in map.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
        err(k, "unknown_field");
    }
    out.sort();
    out
}

/// At most 8 unknown fields are named (which 8 depends on the map's order).
const UNKNOWN_NAMED: usize = 8;

/// Whether some object in the JSON text gives a key twice (the server refuses those
/// bodies): an independent model of that rule, a visitor that remembers each object's keys.
fn has_duplicate_keys(text: &str) -> bool {
    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    struct Dup(bool);
    impl<'de> Deserialize<'de> for Dup {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Dup;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("JSON")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Dup, A::Error> {
                    let mut seen = std::collections::HashSet::new();
                    let mut dup = false;
                    while let Some(k) = m.next_key::<String>()? {
                        dup |= !seen.insert(k);
                        dup |= m.next_value::<Dup>()?.0;
                    }
                    Ok(Dup(dup))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Dup, A::Error> {
                    let mut dup = false;
                    while let Some(d) = s.next_element::<Dup>()? {
                        dup |= d.0;
                    }
                    Ok(Dup(dup))
                }
                fn visit_bool<E>(self, _: bool) -> Result<Dup, E> {
                    Ok(Dup(false))
                }
                fn visit_i64<E>(self, _: i64) -> Result<Dup, E> {
                    Ok(Dup(false))
                }
                fn visit_u64<E>(self, _: u64) -> Result<Dup, E> {
                    Ok(Dup(false))
                }
                fn visit_f64<E>(self, _: f64) -> Result<Dup, E> {
                    Ok(Dup(false))
                }
                fn visit_str<E>(self, _: &str) -> Result<Dup, E> {
                    Ok(Dup(false))
                }
                fn visit_unit<E>(self) -> Result<Dup, E> {
                    Ok(Dup(false))
                }
            }
            d.deserialize_any(V)
        }
    }
    serde_json::from_str::<Dup>(text).is_ok_and(|d| d.0)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let f = fields(text, 2);
    let ct = f.first().copied().unwrap_or_default();
    let body = f.get(1).copied().unwrap_or_default();
    let Ok(req) = Request::builder()
        .header(header::CONTENT_TYPE, ct)
        .body(Body::from(body.to_string()))
    else {
        return;
    };
    let parsed = serde_json::from_str::<Value>(body);
    let taken = block_on(JsonBody::from_request(req, &()));
    let expect_taken =
        is_json_type(ct) && matches!(parsed, Ok(Value::Object(_))) && !has_duplicate_keys(body);
    assert_eq!(taken.is_ok(), expect_taken, "content type {ct:?}");
    let Ok(json) = taken else {
        return;
    };
    let map = json.0.clone();
    let mut r = Fields::new(json);
    let name = r.req_str("name", NAME_MAX);
    let note = r.opt_str("note", NAME_MAX);
    let secret = r.req_secret("secret", NAME_MAX);
    let remember = r.opt_bool("remember");
    let scopes = r.opt_str_list("scopes", LIST_ITEMS, NAME_MAX);
    let mut got: Vec<String> = match r.finish() {
        Ok(()) => Vec::new(),
        Err(e) => {
            e.0.fields
                .iter()
                .map(|f| format!("{}:{}", f.field, f.code))
                .collect()
        }
    };
    got.sort();
    let want = predicted(&map);
    let is_unknown = |e: &&String| e.ends_with(":unknown_field");
    let unknown_want = want.iter().filter(is_unknown).count();
    if unknown_want <= UNKNOWN_NAMED {
        assert_eq!(got, want, "{map:?}");
    } else {
        let rules = |v: &[String]| {
            v.iter()
                .filter(|e| !is_unknown(e))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(rules(&got), rules(&want), "{map:?}");
        assert_eq!(got.iter().filter(is_unknown).count(), UNKNOWN_NAMED);
        assert!(got.iter().filter(is_unknown).all(|e| want.contains(e)));
    }
    if want.is_empty() {
        assert_eq!(Some(&Value::String(name.clone())), map.get("name"));
        assert!(!name.trim().is_empty() && name.chars().count() <= NAME_MAX);
        assert!(!secret.expose().trim().is_empty());
        assert_eq!(
            note.is_some(),
            matches!(map.get("note"), Some(Value::String(_)))
        );
        assert_eq!(remember, map.get("remember").and_then(Value::as_bool));
        assert_eq!(
            scopes.is_some(),
            matches!(map.get("scopes"), Some(Value::Array(_)))
        );
    }
});
