//! The load generator behind `cargo run --release -p relay-tests --bin loadgen`:
//! a benchmark that prints numbers, not a test.
//!
//! The test gateway and every client run in the load generator's process, so
//! one monotonic clock ([`now_ns`]) stamps both a probe's send and its
//! receipt; the edge runs as a child process so its CPU and RSS are its own.
//!
//! | module | owns |
//! |---|---|
//! | [`hist`] | the latency histogram |
//! | [`sys`] | `/proc` samples (CPU, RSS, PSS, children), machine info, open-files limit, `TCP_NODELAY` probe |
//! | [`edge_proc`] | the `relay edge` child and session tokens |
//! | [`nchan`] | nginx + nchan as a child, and its HTTP publisher (`--against nchan`) |
//! | [`subscribers`] | thousands of SSE subscribers on a few polling threads |
//! | [`commands`] | open-loop HTTP command senders and the gateway-side collector |
//! | [`plot`] | the latency-vs-subscribers SVG chart |
//! | [`scenarios`] | the scenarios and the report tables |

use std::sync::OnceLock;
use std::time::Instant;

pub mod commands;
pub mod edge_proc;
pub mod hist;
pub mod nchan;
pub mod plot;
pub mod scenarios;
pub mod subscribers;
pub mod sys;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process's first call: the shared clock of senders and
/// receivers.
pub fn now_ns() -> u64 {
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}
