//! Parsed values: once constructed they are valid, so the rest of the code never re-checks.

use std::fmt;

/// A normalized email address: trimmed, lowercased, `local@domain`, at most 254 bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Parses and normalizes; `None` if it is not a plausible address.
    pub fn parse(raw: &str) -> Option<Self> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() || s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        let (local, domain) = s.rsplit_once('@')?;
        let domain_ok = !domain.is_empty()
            && domain.len() <= 253
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@');
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return None;
        }
        Some(Self(s))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `@` (used by the password policy).
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map(|(l, _)| l).unwrap_or(&self.0)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A username: 3–64 of `[a-z0-9._-]`, stored lowercased so lookups are case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// Parses and lowercases; `None` if it breaks the rules.
    pub fn parse(raw: &str) -> Option<Self> {
        let s = raw.trim().to_lowercase();
        let ok = (3..=64).contains(&s.chars().count())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        ok.then_some(Self(s))
    }

    /// The username as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a user types at login: an email address or a username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identifier {
    Email(Email),
    Username(Username),
}

impl Identifier {
    /// Email if it contains `@`, else username. `None` if neither parses.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.contains('@') {
            Email::parse(raw).map(Identifier::Email)
        } else {
            Username::parse(raw).map(Identifier::Username)
        }
    }

    /// The normalized text, used as the lockout and rate-limit key.
    pub fn normalized(&self) -> &str {
        match self {
            Identifier::Email(e) => e.as_str(),
            Identifier::Username(u) => u.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_lowercased() {
        let e = Email::parse("  Alice@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "alice@example.com");
        assert_eq!(e.local_part(), "alice");
    }

    #[test]
    fn email_rejects_junk() {
        for bad in [
            "", "no-at", "@x.io", "a@", "a b@x.io", "a@.x", "a@x..io", "a@x.io.",
        ] {
            assert!(Email::parse(bad).is_none(), "{bad}");
        }
        assert!(Email::parse(&format!("{}@x.io", "a".repeat(65))).is_none());
    }

    #[test]
    fn identifier_picks_email_or_username() {
        assert!(matches!(
            Identifier::parse("Bob@x.io"),
            Some(Identifier::Email(_))
        ));
        assert!(matches!(
            Identifier::parse("Bob_1"),
            Some(Identifier::Username(_))
        ));
        assert_eq!(Identifier::parse("Bob_1").unwrap().normalized(), "bob_1");
        assert!(Identifier::parse("b").is_none());
        assert!(Identifier::parse("has space").is_none());
    }
}
