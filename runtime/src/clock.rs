//! The wall clock and randomness the protocol machines take as arguments.
//!
//! Only drivers call these; `relay-protocol` formats what they return.

use std::time::{SystemTime, UNIX_EPOCH};

use relay_protocol::ids;

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}

/// Now as RFC 3339 UTC with milliseconds (the contract's `sentAt`).
pub fn now_rfc3339() -> String {
    ids::rfc3339_millis(unix_ms())
}

/// A fresh trace id.
pub fn new_trace_id() -> String {
    ids::trace_id(rand::random())
}

/// A fresh request id.
pub fn new_request_id() -> String {
    ids::request_id(rand::random())
}

/// The process epoch for event ids: start time in ms mixed with random bits, so
/// two processes started in the same millisecond still differ.
pub fn new_epoch() -> u64 {
    // Keep it well inside JavaScript's safe-integer range for browser code.
    (unix_ms() ^ (rand::random::<u64>() & 0xFFFF)) & ((1 << 53) - 1)
}
