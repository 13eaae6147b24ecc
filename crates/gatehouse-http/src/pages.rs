//! Server-rendered pages.

use crate::openapi::Routes;

/// The page routes.
pub fn routes() -> Routes {
    Routes::new()
}
