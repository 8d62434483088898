//! Where the Discord session's resumable state lives (DESIGN.md: shared state
//! sits behind traits). The driver reports READY, every sequence number it has
//! published and the session's end; a gateway that starts (or takes over) asks
//! [`SessionStore::load`] for a session to RESUME.
//!
//! [`LocalSessionStore`] is v1.0's behaviour: the session lives only in the
//! driver's own memory, so a new process identifies anew. The Redis store is
//! the gateway's (`server/src/gateway/session_store.rs`).

/// A session another process (or an earlier run) left resumable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// READY's `session_id`.
    pub session_id: String,
    /// READY's `resume_gateway_url`.
    pub resume_url: Option<String>,
    /// The last sequence number whose dispatch was published to the edges.
    pub seq: Option<u64>,
}

/// See the module docs. Calls come from the driver thread, in order; each
/// must be quick (it runs between a dispatch and the next).
pub trait SessionStore: Send + Sync + 'static {
    /// The session to resume at start, if any.
    fn load(&self) -> Option<StoredSession>;
    /// A new session began (READY, sequence `seq`).
    fn on_ready(&self, session_id: &str, resume_url: Option<&str>, seq: u64);
    /// The dispatch with this sequence number was published.
    fn on_sequence(&self, seq: u64);
    /// The session is gone (invalidated, or closed with 1000).
    fn on_invalidated(&self);
}

/// The session lives only in the driver (v1.0).
pub struct LocalSessionStore;

impl SessionStore for LocalSessionStore {
    fn load(&self) -> Option<StoredSession> {
        None
    }
    fn on_ready(&self, _session_id: &str, _resume_url: Option<&str>, _seq: u64) {}
    fn on_sequence(&self, _seq: u64) {}
    fn on_invalidated(&self) {}
}
