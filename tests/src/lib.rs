//! Shared test peers and helpers for relay's integration tests and load generator.
//!
//! | module | owns |
//! |---|---|
//! | [`discord`] | a simulated Discord with fast heartbeats and the gateway's Discord driver on it, its events and notices on channels |
//! | [`gateway_rig`] | the whole gateway against a simulated Discord, and a raw test edge on its link |
//! | [`test_gateway`] | the gateway side of the link, scripted for edge tests |
//! | [`sse_client`] | a raw-socket SSE client with full control of request headers |
//! | [`history_rig`] | a simulated Discord, the gateway and an edge for history reads |
//! | [`harness`] | an edge started in-process against a test gateway, plus HTTP helpers |
//! | [`loadgen`] | the load generator behind `--bin loadgen` (a benchmark, not a test) |
//! | [`oauth`] | Sign in with Discord: a simulated Discord as OAuth2 provider, an edge signing in through it, a browser's steps without redirects |
//! | [`redis_server`] | a real `redis-server` on a loopback port in a temporary directory, killed on drop |
//! | [`hostile`] | raw HTTP/1.x over `TcpStream` and the "still serving" check of the hostile-HTTP suite |
#![warn(missing_docs)]

pub mod discord;
pub mod gateway_rig;
pub mod harness;
pub mod history_rig;
pub mod hostile;
pub mod loadgen;
pub mod oauth;
pub mod redis_rig;
pub mod redis_server;
pub mod sse_client;
pub mod test_gateway;
