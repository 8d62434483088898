//! relay-runtime: the blocking IO drivers that put `relay-protocol`'s machines to work.
//!
//! | module | owns |
//! |---|---|
//! | [`ws_io`] | a non-blocking WebSocket one thread drives, woken by other threads |
//! | [`hub`] | fan-out of encoded events to subscribers, with the replay ring |
//! | [`link_server`] | the gateway side of the link: auth, `ready`, broadcast fan-out, commands run once per requestId; a scripted test gateway |
#![warn(missing_docs)]

pub mod hub;
pub mod link_server;
pub mod ws_io;
