//! relay's server side: configuration, logging, session auth, metrics, and the
//! two halves — the browser-facing edge and the Discord-facing gateway — as
//! in-process services the `relay` binary (and the tests) start.
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | every setting from env or flag, validated into config structs |
//! | [`logging`] | the `log` backend: one line per record, text or JSON, secrets redacted |
//! | [`auth`] | session JWTs: issue, verify, find in a request |
//! | [`metrics`] | the Prometheus metrics of CONTRACT.md §6 |
//! | [`secret`] | a string that never prints |
//! | [`edge`] | `relay edge`: SSE, command API, legacy bridge, link client |
//! | [`gateway`] | `relay gateway`: Discord session, REST executor, link server |
//! | [`demo`] | `relay demo`: simulated Discord + gateway + edge + demo page |
//! | [`gateway`] | `relay gateway`: Discord session and REST client behind the link server |
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod demo;
pub mod edge;
pub mod gateway;
pub mod logging;
pub mod metrics;
pub mod redis_health;
pub mod secret;
