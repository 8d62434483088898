//! relay-runtime: the blocking IO drivers that put `relay-protocol`'s machines to work.
//!
//! | module | owns |
//! |---|---|
//! | [`ws_io`] | a non-blocking WebSocket one thread drives, woken by other threads |
//! | [`clock`] | wall clock, ids and epoch: the time and randomness protocol machines take as arguments |
//! | [`hub`] | fan-out of encoded events to subscribers, with the replay ring |
//! | [`live_queue`] | the bounded, non-spinning queue between the hub and one subscriber |
//! | [`sse_pool`] | the SSE writer threads: a few `epoll` loops write every subscriber's stream, woken by the hub's queues |
//! | [`link_client`] | the edge's link thread: drives `LinkSession` over a real socket |
//! | [`discord_gateway`] | the gateway's Discord thread: drives `GatewaySession`, translates dispatches |
//! | [`discord_rest`] | the gateway's Discord REST client: runs link commands under the rate limits |
//! | [`sim_discord`] | a simulated Discord (Gateway v10 + REST v10) on loopback, for tests and `relay demo` |
//! | [`http_server`] | the edge's HTTP/1.1 server: one accept thread, a thread per connection, httparse, explicit limits and timeouts, sockets handed to streams and WebSockets |
//! | [`redis_conn`] | one Redis connection with a deadline on every call, reconnecting by itself, that says whether Redis is up |
//! | [`link_server`] | the gateway side of the link: auth, `ready`, broadcast fan-out, commands run once per requestId, plain `GET`s through a hook; a scripted test gateway |
#![warn(missing_docs)]

pub mod clock;
pub mod discord_gateway;
pub mod discord_rest;
pub mod http_server;
pub mod hub;
pub mod link_client;
pub mod link_server;
pub mod live_queue;
pub mod redis_conn;
pub mod redis_shared;
pub mod session_store;
pub mod sim_discord;
pub mod sse_pool;
pub mod ws_io;
