//! Who is calling: the session JWT from `Authorization: Bearer`, the
//! `relay_session` cookie, or (for `EventSource`, which cannot set headers) the
//! `access_token` query parameter (CONTRACT.md §2).

use relay_runtime::clock;

use super::http::{header, unauthenticated, Reply, Request};
use super::state::AppState;
use crate::auth::{token_from_request, Session};

/// The caller's session, or the 401 to send.
pub fn authenticate(state: &AppState, req: &Request, query: &str) -> Result<Session, Reply> {
    let token = token_from_request(
        header(req, "Authorization"),
        header(req, "Cookie"),
        Some(query),
    )
    .ok_or_else(|| unauthenticated("a session token is required"))?;
    state
        .keys
        .verify(&token, clock::unix_secs())
        .map_err(|e| unauthenticated(&e.to_string()))
}
