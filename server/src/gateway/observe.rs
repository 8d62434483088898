//! The gateway's metrics: Discord dispatches, REST calls and heartbeat latency,
//! counted into the process's [`Metrics`].

use std::sync::Arc;
use std::time::Duration;

use relay_runtime::discord_gateway::DiscordObserver;
use relay_runtime::discord_rest::{RestObserver, RestOutcome};

use crate::metrics::Metrics;

/// Feeds the Discord driver's and the REST client's observations to [`Metrics`].
pub(super) struct MetricsObserver(pub(super) Arc<Metrics>);

impl DiscordObserver for MetricsObserver {
    fn on_dispatch(&self, event: &str) {
        self.0.discord_event(event);
    }

    fn on_heartbeat_ack(&self, latency: Duration) {
        self.0.observe_discord_heartbeat(latency);
    }
}

impl RestObserver for MetricsObserver {
    fn on_rest(&self, outcome: &RestOutcome<'_>) {
        // Refusals before sending are not Discord calls; the edge counts them
        // by their reply.
        if outcome.sent {
            self.0.discord_rest(outcome.command, outcome.status);
        }
    }
}
