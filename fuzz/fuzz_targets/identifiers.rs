//! Identifiers and email addresses (`gatehouse_domain::values`): what a user types at login
//! and what admins type when creating accounts. Beyond not panicking: a parsed value is
//! already normal (parsing its text gives it back), and it keeps the documented rules.
#![no_main]

use gatehouse_domain::values::{Email, Identifier, Username};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(e) = Email::parse(raw) {
        let s = e.as_str();
        assert_eq!(
            Email::parse(s).as_ref(),
            Some(&e),
            "email not idempotent: {s:?}"
        );
        assert!(s.len() <= 254 && s.contains('@'));
        assert_eq!(s, s.trim());
        assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()));
        let local = e.local_part();
        assert!(!local.is_empty() && local.len() <= 64);
        assert_eq!(e.to_string(), s);
    }
    if let Some(u) = Username::parse(raw) {
        let s = u.as_str();
        assert_eq!(
            Username::parse(s).as_ref(),
            Some(&u),
            "username not idempotent: {s:?}"
        );
        assert!((3..=64).contains(&s.len()));
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
        );
    }
    match Identifier::parse(raw) {
        Some(Identifier::Email(e)) => {
            assert!(raw.contains('@'));
            assert_eq!(Some(e), Email::parse(raw));
        }
        Some(Identifier::Username(u)) => {
            assert!(!raw.contains('@'));
            assert_eq!(Some(u), Username::parse(raw));
        }
        None => {}
    }
    if let Some(id) = Identifier::parse(raw) {
        // The lockout and rate-limit key: the same person typing it again gets the same key.
        let again = Identifier::parse(id.normalized());
        assert_eq!(
            again.as_ref().map(Identifier::normalized),
            Some(id.normalized())
        );
    }
});
