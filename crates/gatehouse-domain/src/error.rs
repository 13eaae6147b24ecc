//! The one error type flows return: a catalog code plus what the client may see, and, for
//! operators only, the failure underneath it with its whole source chain.

use crate::catalog::Code;
use crate::ports::{CacheError, StoreError};
use std::error::Error as StdError;
use std::fmt;

/// Any error, boxed so it can travel across threads as an [`AppError`]'s source.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// One failed field rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
}

impl FieldError {
    /// A failed rule on `field`.
    pub fn new(field: impl Into<String>, code: &'static str) -> Self {
        Self {
            field: field.into(),
            code,
        }
    }
}

/// An error with a catalog code. `internal` is the failure underneath, for logs only: it is
/// never sent to clients and not part of `Display` (it is the error's `source()`, so log and
/// CLI reporters that walk the chain show it; [`AppError::detail`] renders it as text).
#[derive(Debug)]
pub struct AppError {
    pub code: Code,
    pub fields: Vec<FieldError>,
    pub retry_after_secs: Option<u64>,
    pub internal: Option<BoxError>,
}

impl AppError {
    /// An error with just a code.
    pub fn new(code: Code) -> Self {
        Self {
            code,
            fields: Vec::new(),
            retry_after_secs: None,
            internal: None,
        }
    }

    /// `VALIDATION_ERROR` with per-field errors.
    pub fn validation(fields: Vec<FieldError>) -> Self {
        Self {
            fields,
            ..Self::new(Code::VALIDATION_ERROR)
        }
    }

    /// An internal failure: the client sees `code`'s generic text, logs see `detail`.
    pub fn internal(code: Code, detail: impl fmt::Display) -> Self {
        Self {
            internal: Some(detail.to_string().into()),
            ..Self::new(code)
        }
    }

    /// An internal failure caused by `source`, whose chain is kept for the logs.
    pub fn with_source(code: Code, source: impl Into<BoxError>) -> Self {
        Self {
            internal: Some(source.into()),
            ..Self::new(code)
        }
    }

    /// Adds a `Retry-After` hint.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The internal failure and each of its sources, joined by `: `, for logs; `None` when
    /// there is no internal failure. Never send this to a client.
    pub fn detail(&self) -> Option<String> {
        let first: &(dyn StdError + 'static) = self.internal.as_deref()?;
        let mut out = first.to_string();
        let mut next = first.source();
        while let Some(e) = next {
            out.push_str(": ");
            out.push_str(&e.to_string());
            next = e.source();
        }
        Some(out)
    }
}

impl From<Code> for AppError {
    fn from(code: Code) -> Self {
        Self::new(code)
    }
}

/// What a store failure means for the client; the failure itself stays in the chain.
impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                Self::with_source(Code::SERVICE_UNAVAILABLE, e).retry_after(1)
            }
            StoreError::Conflict => Self::new(Code::CONFLICT),
            StoreError::LastAdmin => Self {
                fields: vec![FieldError::new("status", "last_admin")],
                ..Self::new(Code::CONFLICT)
            },
            StoreError::Other(_) => Self::with_source(Code::INTERNAL_ERROR, e),
        }
    }
}

/// A cache failure is always 503: a security check is never skipped because the cache is
/// down.
impl From<CacheError> for AppError {
    fn from(e: CacheError) -> Self {
        Self::with_source(Code::SERVICE_UNAVAILABLE, e).retry_after(1)
    }
}

/// The code and field errors only: what may be shown. The internal failure is `source()`.
impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code.as_str())?;
        for field in &self.fields {
            write!(f, " [{}: {}]", field.field, field.code)?;
        }
        Ok(())
    }
}

impl StdError for AppError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.internal
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Locale;

    /// A driver error with a cause of its own, as a database client would return.
    #[derive(Debug, thiserror::Error)]
    #[error("connection refused by postgres://app:hunter2@db/gatehouse")]
    struct DriverError;

    #[derive(Debug, thiserror::Error)]
    #[error("pool timed out")]
    struct PoolError(#[source] DriverError);

    #[test]
    fn the_source_chain_is_kept_and_never_displayed() {
        let e = AppError::with_source(Code::INTERNAL_ERROR, PoolError(DriverError));
        let first = e.source().unwrap();
        assert_eq!(first.to_string(), "pool timed out");
        assert!(first.source().unwrap().to_string().contains("hunter2"));
        assert_eq!(
            e.detail().unwrap(),
            "pool timed out: connection refused by postgres://app:hunter2@db/gatehouse"
        );
        // What is displayed, and what a client is sent (code, message, fields), hold none of it.
        assert_eq!(e.to_string(), "INTERNAL_ERROR");
        assert!(!e.code.message(Locale::En).contains("hunter2"));
        assert!(e.fields.is_empty());
    }

    #[test]
    fn store_errors_map_to_their_codes_and_keep_the_failure() {
        let e = AppError::from(StoreError::Unavailable("db down: secret-detail".into()));
        assert_eq!(e.code, Code::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after_secs, Some(1));
        assert!(e.source().unwrap().is::<StoreError>());
        assert!(e.detail().unwrap().contains("secret-detail"));
        assert!(!e.to_string().contains("secret-detail"));

        let e = AppError::from(StoreError::Conflict);
        assert_eq!(e.code, Code::CONFLICT);
        assert!(e.internal.is_none());

        let e = AppError::from(StoreError::Other("bad row".into()));
        assert_eq!(e.code, Code::INTERNAL_ERROR);
        assert_eq!(e.retry_after_secs, None);
        assert_eq!(e.detail().unwrap(), "store error: bad row");
    }

    #[test]
    fn cache_errors_are_503_with_the_failure_kept() {
        let e = AppError::from(CacheError::Unavailable("redis timeout".into()));
        assert_eq!(e.code, Code::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after_secs, Some(1));
        assert!(e.source().unwrap().is::<CacheError>());
        assert_eq!(e.detail().unwrap(), "cache unavailable: redis timeout");
    }

    #[test]
    fn string_details_still_work() {
        let e = AppError::internal(Code::INTERNAL_ERROR, "key file unreadable");
        assert_eq!(e.detail().as_deref(), Some("key file unreadable"));
        assert_eq!(e.to_string(), "INTERNAL_ERROR");
        assert_eq!(AppError::new(Code::CONFLICT).detail(), None);
    }
}
