//! The gateway's observers: Discord dispatches, REST calls, heartbeat latency,
//! and the link's edges, re-sent commands and refused tokens, counted into the
//! process's [`Metrics`]; and whether the Discord session is up, for `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use relay_protocol::discord::dispatch::Skipped;
use relay_runtime::discord_gateway::DiscordObserver;
use relay_runtime::discord_rest::{RestObserver, RestOutcome};
use relay_runtime::link_server::LinkObserver;

use crate::metrics::Metrics;

/// Feeds the Discord driver's, the REST client's and the link server's
/// observations to [`Metrics`] and to the readiness flag.
pub(super) struct MetricsObserver {
    pub(super) metrics: Arc<Metrics>,
    /// True between READY/RESUMED and the loss of that connection.
    pub(super) discord_up: Arc<AtomicBool>,
}

impl DiscordObserver for MetricsObserver {
    fn on_dispatch(&self, event: &str) {
        self.metrics.discord_event(event);
    }

    fn on_dispatch_skipped(&self, skipped: &Skipped) {
        self.metrics.discord_event_skipped(skipped.event);
    }

    fn on_heartbeat_ack(&self, latency: Duration) {
        self.metrics.observe_discord_heartbeat(latency);
    }

    fn on_connected(&self, up: bool) {
        self.discord_up.store(up, Ordering::Release);
    }
}

impl RestObserver for MetricsObserver {
    fn on_rest(&self, outcome: &RestOutcome<'_>) {
        // Refusals before sending are not Discord calls; the edge counts them
        // by their reply.
        if outcome.sent {
            self.metrics.discord_rest(outcome.command, outcome.status);
        }
    }
}

impl LinkObserver for MetricsObserver {
    fn on_edges(&self, edges: usize) {
        self.metrics.set_link_edges(edges);
    }

    fn on_deduplicated(&self) {
        self.metrics.command_deduplicated();
    }

    fn on_auth_failure(&self) {
        self.metrics.link_auth_failure();
    }
}
