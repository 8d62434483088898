//! relay-runtime: the blocking IO drivers that put `relay-protocol`'s machines to work.
//!
//! | module | owns |
//! |---|---|
//! | [`ws_io`] | a non-blocking WebSocket one thread drives, woken by other threads |
//! | [`hub`] | fan-out of encoded events to subscribers, with the replay ring |
//! | [`sim_discord`] | a simulated Discord (Gateway v10 + REST v10) on loopback, for tests and `relay demo` |
#![warn(missing_docs)]

pub mod hub;
pub mod sim_discord;
pub mod ws_io;
