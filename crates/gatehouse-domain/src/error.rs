//! The one error type flows return: a catalog code plus what the client may see.

use crate::catalog::Code;
use std::fmt;

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

/// An error with a catalog code. `internal` is for logs only and never sent to clients.
#[derive(Debug)]
pub struct AppError {
    pub code: Code,
    pub fields: Vec<FieldError>,
    pub retry_after_secs: Option<u64>,
    pub internal: Option<String>,
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
            internal: Some(detail.to_string()),
            ..Self::new(code)
        }
    }

    /// Adds a `Retry-After` hint.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
}

impl From<Code> for AppError {
    fn from(code: Code) -> Self {
        Self::new(code)
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code.as_str())?;
        for field in &self.fields {
            write!(f, " [{}: {}]", field.field, field.code)?;
        }
        if let Some(detail) = &self.internal {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for AppError {}
