//! relay's protocol core: every rule of the system as plain data and state machines.
//!
//! # The rule
//!
//! Nothing in this crate does IO, reads a clock, spawns a thread or draws global
//! randomness. Time comes in as an [`std::time::Instant`] argument, random values
//! (jitter, ids) come in as numbers, and every effect goes out as a value the caller
//! acts on. `clippy.toml` turns `Instant::now`, `SystemTime::now` and
//! `thread::spawn` into build errors here. That is what lets a 30 s backoff or a
//! reply timeout be tested in microseconds, and lets this crate be embedded in any
//! runtime: relay's blocking threads, a tokio service or a test harness.
//!
//! # The driver loop
//!
//! Each machine has three verb families: `handle_*(now, input)` feeds in what
//! happened, `poll_output()` drains what to do, `poll_timeout()` says when to call
//! `handle_timeout(now)` next. A blocking driver (this is what `relay-runtime`
//! does for the link) looks like:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use relay_protocol::link_session::{LinkConfig, LinkOutput, LinkSession};
//!
//! let mut session = LinkSession::new(LinkConfig::new("ws://127.0.0.1:8787/link", "secret"));
//! let now = Instant::now();
//! session.start(now);
//! let mut steps = 0;
//! loop {
//!     // 1. Drain every output: connect, send, publish, reply ...
//!     while let Some(out) = session.poll_output() {
//!         match out {
//!             LinkOutput::Connect { url, headers } => { /* open the socket */ let _ = (url, headers); }
//!             LinkOutput::Send(_frame) => { /* write the text frame */ }
//!             _ => { /* publish events, complete waiting callers, ... */ }
//!         }
//!     }
//!     // 2. Sleep (or block in read with a timeout) until the next deadline.
//!     let deadline = session.poll_timeout().unwrap_or(now + Duration::from_secs(1));
//!     // 3. Feed in what happened: here, only the passage of time.
//!     session.handle_timeout(deadline);
//!     steps += 1;
//!     if steps == 3 { break; }
//! }
//! ```
//!
//! # Modules
//!
//! | module | owns |
//! |---|---|
//! | [`frame`] | link frames (`GatewayEvent`, `GatewayCommand`, `TraceMeta`): defensive parsing and encoding |
//! | [`payload`] | the data shapes carried by frames and SSE events |
//! | [`validate`] | browser command bodies → typed commands or field issues |
//! | [`bucket`] | token buckets and the user × channel keyed limiter |
//! | [`backoff`] | reconnect delays, 1 s doubling to 30 s with jitter |
//! | [`queue`] | the bounded outbound command queue and reply correlation |
//! | [`history`] | the gateway's window of recent messages per channel and Discord's history query rules |
//! | [`history_request`] | `GET /api/channels/{id}/messages`: path and query → a history query, or 400 issues |
//! | [`dedupe`] | the gateway's requestId de-duplication: run once, repeat the first reply |
//! | [`link_session`] | the edge side of the link as a state machine |
//! | [`oauth`] | Sign in with Discord: `next` checks, the pending-login cookie, PKCE, the callback decision, Discord's token and user answers |
//! | [`sse`] | Server-Sent Events encoder and WHATWG parser |
//! | [`replay`] | the replay ring behind `Last-Event-ID` |
//! | [`sanitize`] | escaping user text for logs and re-broadcast |
//! | [`secret`] | secrets that never print, compared in constant time |
//! | [`legacy`] | the old `/api/ws` bridge's auth frame and envelopes |
//! | [`ids`] | trace/request id formatting from caller-supplied randomness; RFC 3339 read and written |
//! | [`discord`] | Discord Gateway v10 session, dispatch → link events, REST requests and rate limits |
//! | [`discord::permissions`] | Discord permission bit sets, their names, their decimal-string form |
//! | [`discord::guild`] | one guild's roles, channels, overwrites and members; Discord's permission algorithm; a member's `access` |
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod backoff;
pub mod bucket;
pub mod dedupe;
pub mod discord;
pub mod frame;
pub mod history;
pub mod history_request;
pub mod ids;
pub mod lease;
pub mod legacy;
pub mod link_session;
pub mod oauth;
pub mod payload;
pub mod queue;
pub mod replay;
pub mod sanitize;
pub mod secret;
pub mod shared_log;
pub mod sse;
pub mod validate;
