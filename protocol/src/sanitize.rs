//! TODO: sanitize
