//! Shared test peers and helpers for relay integration tests.
