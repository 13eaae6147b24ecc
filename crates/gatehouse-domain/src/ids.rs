//! Identifiers: UUIDv7 everywhere, so keys sort by creation time.

use uuid::Uuid;

/// A UUIDv7 identifier for any stored row.
pub type Id = Uuid;

/// A fresh, time-ordered identifier.
pub fn new_id() -> Id {
    Uuid::now_v7()
}
