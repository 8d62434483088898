//! The gateway's operations endpoints, answered on the link port (`GATEWAY_BIND`)
//! through the link server's plain-`GET` hook: `/metrics` (the process's
//! [`Metrics`], encoded as the edge's `/metrics` does), `/healthz` and `/readyz`
//! (200 while the Discord session is up, else 503).
//!
//! No token guards them, as on the edge, so nothing here may carry a secret:
//! the bodies are the metric registry (fixed label lists) and fixed fields.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use relay_runtime::link_server::{PlainHandler, PlainResponse};
use serde_json::{json, Value};

use crate::metrics::{self, Metrics};

/// The hook: `metrics` is what `/metrics` shows and where `/readyz` reads the
/// edge count; `discord_up` is the session flag the gateway's observer keeps.
pub(super) fn handler(metrics: Arc<Metrics>, discord_up: Arc<AtomicBool>) -> PlainHandler {
    Arc::new(move |path| match path {
        "/metrics" => Some(PlainResponse {
            status: 200,
            content_type: metrics::CONTENT_TYPE,
            body: metrics.encode(),
        }),
        "/healthz" => Some(json_response(200, &json!({"status": "ok"}))),
        "/readyz" => Some(readyz(&metrics, discord_up.load(Ordering::Acquire))),
        _ => None,
    })
}

/// 200 while the Discord session is up, else 503, with what an operator needs.
fn readyz(metrics: &Metrics, discord_up: bool) -> PlainResponse {
    json_response(
        if discord_up { 200 } else { 503 },
        &json!({
            "ready": discord_up,
            "discord": if discord_up { "connected" } else { "disconnected" },
            "edges": metrics.link_edges(),
        }),
    )
}

fn json_response(status: u16, body: &Value) -> PlainResponse {
    PlainResponse {
        status,
        content_type: "application/json",
        body: body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_follows_the_session_and_counts_edges() {
        let metrics = Arc::new(Metrics::new());
        let up = Arc::new(AtomicBool::new(false));
        let ops = handler(metrics.clone(), up.clone());
        let body = |r: PlainResponse| (r.status, serde_json::from_str::<Value>(&r.body).ok());
        assert_eq!(
            body(ops("/readyz").expect("served")),
            (
                503,
                Some(json!({"ready": false, "discord": "disconnected", "edges": 0}))
            )
        );
        up.store(true, Ordering::Release);
        metrics.set_link_edges(2);
        assert_eq!(
            body(ops("/readyz").expect("served")),
            (
                200,
                Some(json!({"ready": true, "discord": "connected", "edges": 2}))
            )
        );
        assert_eq!(ops("/healthz").map(|r| r.status), Some(200));
        let scrape = ops("/metrics").expect("served");
        assert_eq!(scrape.content_type, metrics::CONTENT_TYPE);
        assert!(
            scrape.body.contains("\nrelay_link_edges 2\n"),
            "{}",
            scrape.body
        );
        assert_eq!(ops("/link"), None);
        assert_eq!(ops("/metrics/"), None);
    }
}
