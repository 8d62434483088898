//! Shared test peers and helpers for relay integration tests.
//!
//! | module | owns |
//! |---|---|
//! | [`discord`] | a simulated Discord with fast heartbeats, and the gateway's Discord driver on it, its events and notices on channels |
#![warn(missing_docs)]

pub mod discord;
