//! Gatehouse domain: the types every layer shares, the message-code catalog, and the
//! ports (`Store`, `Cache`, `Clock`) that adapters implement. No I/O happens here.

pub mod catalog;
pub mod error;
pub mod ids;
pub mod mail;
pub mod model;
pub mod ports;
pub mod secret;
pub mod sso;
pub mod timestamp;
pub mod values;

pub use catalog::{Code, Locale};
pub use error::{AppError, FieldError};
pub use ids::Id;
pub use secret::Secret;
pub use timestamp::Timestamp;
