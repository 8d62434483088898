//! Secret values: the protocol crate's [`Secret`] (redacting `Debug`/`Display`,
//! constant-time comparison), re-exported where the server's config uses it.

pub use relay_protocol::secret::{Secret, REDACTED};
