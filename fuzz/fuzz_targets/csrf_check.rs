//! CSRF token check (`gatehouse_core::csrf`): the `X-CSRFToken` header and the browser
//! binding cookie both come from the client. Input: `binding \n token`. Beyond not
//! panicking: an accepted token is one this secret could have issued now for this binding,
//! and a freshly issued token is accepted for its binding only.
#![no_main]

use gatehouse_core::csrf::Csrf;
use gatehouse_domain::{Code, Timestamp};
use gatehouse_fuzz::fields;
use libfuzzer_sys::fuzz_target;

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const MAX_AGE: i64 = 3600;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let f = fields(text, 2);
    let binding = f.first().copied().unwrap_or_default();
    let token = f.get(1).copied();
    let csrf = Csrf::new(vec![7u8; 32], MAX_AGE);

    match csrf.check(token, Some(binding), NOW) {
        Ok(()) => {
            let token = token.unwrap_or_default();
            assert!(!binding.is_empty() && token.len() <= 256);
            let issued: i64 = token
                .split('.')
                .next()
                .unwrap_or_default()
                .parse()
                .unwrap_or(i64::MIN);
            let age = NOW.unix_seconds() - issued;
            assert!(
                (-60..=MAX_AGE).contains(&age),
                "accepted a token of age {age}"
            );
            // Another key or another browser must not accept it.
            let other = Csrf::new(vec![8u8; 32], MAX_AGE);
            assert!(other.check(Some(token), Some(binding), NOW).is_err());
            let elsewhere = format!("{binding}x");
            assert!(csrf.check(Some(token), Some(&elsewhere), NOW).is_err());
        }
        Err(e) => {
            let missing = token.is_none_or(str::is_empty);
            assert_eq!(e.code == Code::CSRF_MISSING, missing);
            assert!(missing || e.code == Code::CSRF_INVALID);
        }
    }

    if !binding.is_empty() {
        let Ok(fresh) = csrf.issue(binding, NOW) else {
            return;
        };
        assert!(csrf.check(Some(&fresh), Some(binding), NOW).is_ok());
        let elsewhere = format!("{binding}x");
        assert!(csrf.check(Some(&fresh), Some(&elsewhere), NOW).is_err());
    }
});
