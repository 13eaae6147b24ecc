//! A string that never shows itself in `Debug`, logs or panics, is wiped from memory when
//! dropped, and compares in constant time.

use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// A secret value (password, token, key). `Debug` prints `Secret([redacted])`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: call only where it is used (hashing, comparing, sending once).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Constant time in the contents, so comparing a guess against a secret does not tell how
/// many leading bytes were right (the length may still show).
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Zeroize for Secret {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn equality_compares_contents() {
        assert_eq!(Secret::new("same"), Secret::new("same"));
        assert_ne!(Secret::new("same"), Secret::new("sane"));
        assert_ne!(Secret::new("same"), Secret::new("same-but-longer"));
        assert_ne!(Secret::new(""), Secret::new("x"));
    }

    #[test]
    fn zeroize_wipes_the_value() {
        // `Drop` runs this same wipe; memory after a drop cannot be inspected without
        // unsafe code, so the wipe itself is what is checked.
        let mut s = Secret::new("hunter2");
        s.zeroize();
        assert_eq!(s.expose(), "");
    }
}
