//! What the edge does with the link's outputs: events go to the hub (sanitized,
//! encoded once), replies go to the caller waiting for them, link state goes to
//! every browser as `gateway.status`, and everything is counted and logged with
//! its `traceId`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use parking_lot::{Condvar, Mutex};
use relay_protocol::frame::{sse_json, sse_json_raw, GatewayEvent, MalformedFrame, Reply};
use relay_protocol::link_session::LinkOutput;
use relay_protocol::payload::{ErrorData, EventBody, VoiceSnapshot};
use relay_protocol::queue::{Completion, Outcome};
use relay_protocol::replay::EventId;
use relay_protocol::sanitize::{sanitize, sanitize_for_broadcast, LOG_TEXT_MAX};
use relay_protocol::sse::{encode_event, SseFrame};
use relay_runtime::clock;
use relay_runtime::hub::{Delivery, Hub, Item};
use relay_runtime::link_client::{LinkEvents, LinkHandle};
use relay_runtime::ws_io::ConnectError;
use serde_json::json;

use super::access::DiscordAccess;
use super::state::Waiters;
use crate::metrics::Metrics;

/// Whether the link is up as browsers see it: set after `gateway.status` went
/// to the hub, so a caller that waited for it knows every new stream starts
/// with that status.
#[derive(Default)]
pub struct LinkUp {
    up: Mutex<bool>,
    changed: Condvar,
}

impl LinkUp {
    fn set(&self, up: bool) {
        *self.up.lock() = up;
        self.changed.notify_all();
    }

    /// Waits until the link's state is `up`; false if `timeout` passed first.
    pub fn wait_for(&self, up: bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.up.lock();
        while *state != up {
            if self.changed.wait_until(&mut state, deadline).timed_out() {
                return *state == up;
            }
        }
        true
    }
}

/// The edge's [`LinkEvents`] implementation; runs on the link thread.
pub struct LinkSink {
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    waiters: Arc<Waiters>,
    link_up: Arc<LinkUp>,
    /// Who is in voice now, kept from `ready` + `voice.*` events for new
    /// subscribers and for the permission checks of voice commands.
    voice: Arc<Mutex<VoiceSnapshot>>,
    /// `ACCESS=discord`: the guild models the gateway sends.
    access: Option<Arc<DiscordAccess>>,
    /// With `REDIS_URL`: the shared log, to fill in events this edge missed
    /// (its link was down while the gateway numbered them), and its size.
    shared_log: Option<(Arc<relay_runtime::redis_conn::RedisConn>, usize)>,
}

impl LinkSink {
    /// A sink publishing into `hub`.
    pub fn new(
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        waiters: Arc<Waiters>,
        link_up: Arc<LinkUp>,
        voice: Arc<Mutex<VoiceSnapshot>>,
        access: Option<Arc<DiscordAccess>>,
    ) -> Self {
        let sink = LinkSink {
            hub,
            metrics,
            waiters,
            link_up,
            voice,
            access,
            shared_log: None,
        };
        // Subscribers that arrive before the link is up still get both state items.
        sink.hub
            .broadcast_state("gateway.status", status_item(false));
        sink.hub.broadcast_state(
            "voice.snapshot",
            snapshot_item(&sink.voice.lock(), &clock::new_trace_id()),
        );
        sink
    }

    /// Fills holes in the gateway's numbering from the shared log (docs/redis.md).
    pub fn with_shared_log(
        mut self,
        conn: Arc<relay_runtime::redis_conn::RedisConn>,
        capacity: usize,
    ) -> Self {
        self.shared_log = Some((conn, capacity));
        self
    }

    /// Before an event numbered past what this edge has (its link was down
    /// while the gateway went on), publishes the events in between from the
    /// shared log, so browsers on this edge miss nothing. One bounded read on
    /// the link thread, only when there is a hole; if the log cannot give
    /// the whole run, the edge goes on from the new event (its ring restarts
    /// there, and a browser resuming across the hole is reset).
    fn fill_gap(&mut self, next: EventId) {
        let Some((conn, capacity)) = &self.shared_log else {
            return;
        };
        let Some(last) = self.hub.latest() else {
            return;
        };
        if last.epoch != next.epoch || next.seq <= last.seq + 1 {
            return;
        }
        let missing = next.seq - last.seq - 1;
        if missing > *capacity as u64 {
            return;
        }
        let entries = match relay_runtime::redis_shared::read_after(conn, last, missing as usize) {
            Ok(entries) => entries,
            Err(e) => {
                warn!("{missing} events missed while the link was down; the shared log is unreadable: {e}");
                return;
            }
        };
        let Ok(Some(frames)) = relay_protocol::shared_log::frames_after(last, &entries) else {
            return;
        };
        let events: Vec<GatewayEvent> = frames
            .into_iter()
            .take(missing as usize)
            .map_while(|f| relay_protocol::frame::parse_event(f).ok())
            .collect();
        info!(
            "filled {} of {missing} events missed while the link was down from the shared log",
            events.len()
        );
        for ev in events {
            self.publish_numbered(ev);
        }
    }

    /// Gives the sink the link's handle (made after the sink).
    pub fn set_link(&mut self, link: LinkHandle) {
        if let Some(access) = &self.access {
            access.set_link(link);
        }
    }

    /// A link-only event: the guild model changed.
    fn guild_event(&mut self, ev: &GatewayEvent) {
        let Some(access) = &self.access else {
            return;
        };
        match &ev.body {
            EventBody::GuildState(g) => access.on_guild_state(&g.guild),
            EventBody::GuildMember(m) => access.on_member(m),
            _ => {}
        }
    }

    fn publish(&mut self, ev: GatewayEvent) {
        if let Some(id) = ev.meta.extra.get().event_id {
            // A gateway that took over re-sends its first moments to each
            // edge that joins (its takeover backlog), and an edge that filled a
            // gap from the log may then hear those events again: an id this
            // edge already holds is a duplicate, never a new event.
            if self
                .hub
                .latest()
                .is_some_and(|last| last.epoch == id.epoch && id.seq <= last.seq)
            {
                debug!("dropped event {id}: this edge already has it");
                return;
            }
            self.fill_gap(id);
        }
        self.publish_numbered(ev);
    }

    fn publish_numbered(&mut self, mut ev: GatewayEvent) {
        if ev.body.is_link_only() {
            return self.guild_event(&ev);
        }
        let received_at = Instant::now();
        // User text is cleaned before it is re-broadcast or kept (FR-008).
        ev.body.clean_text(sanitize_for_broadcast);
        let kind = ev.body.type_name();
        self.metrics.event_received(kind);
        let trace_id = ev.meta.trace_id.clone();
        let mut state = None;
        let mut actor = None;
        match &ev.body {
            EventBody::VoiceJoined(j) => {
                let mut voice = self.voice.lock();
                voice.apply_joined(j);
                state = Some(("voice.snapshot", snapshot_item(&voice, &trace_id)));
            }
            EventBody::VoiceLeft(l) => {
                let mut voice = self.voice.lock();
                voice.apply_left(l);
                state = Some(("voice.snapshot", snapshot_item(&voice, &trace_id)));
            }
            EventBody::Error(e) => warn!(
                traceId = trace_id.as_str(), code = sanitize(&e.code, 64).as_ref();
                "gateway error frame: {}", sanitize(&e.message, LOG_TEXT_MAX)
            ),
            _ => {}
        }
        if let (EventBody::Error(e), Some(access)) = (&ev.body, &self.access) {
            actor = e.request_id.as_deref().and_then(|r| access.actor_of(r));
        }
        let json = sse_json(
            &ev.body,
            &ev.meta.trace_id,
            &ev.meta.sent_at,
            ev.meta.extra.get().rev,
        );
        let channel = ev.body.channel_id().map(Arc::from);
        let encode = |id: Option<EventId>| {
            let d = match id {
                Some(id) => sequenced(id, kind, channel, &json, received_at),
                None => Delivery {
                    channel_id: channel,
                    received_at,
                    ..unsequenced_delivery(kind, &json)
                },
            };
            Delivery { actor, ..d }
        };
        // With REDIS_URL the gateway numbers events for every edge
        // (docs/redis.md); without, this edge does, as in v1.0. An event
        // that comes to this edge alone (a command's error) gets no id
        // while the edge follows the gateway's numbering.
        match ev.meta.extra.get().event_id {
            Some(id) => {
                self.hub.publish_as(Some(id), |id| encode(Some(id)), state);
            }
            None if state.is_some() => {
                self.hub.publish(|id| encode(Some(id)), state);
            }
            None => self.hub.publish_own(encode),
        }
        debug!(traceId = trace_id.as_str(); "relayed {kind}");
    }

    fn malformed(&mut self, m: MalformedFrame) {
        self.metrics.malformed_frame();
        let trace_id = m.trace_id.clone().unwrap_or_else(clock::new_trace_id);
        warn!(
            traceId = trace_id.as_str(),
            requestId = m.request_id.as_deref().unwrap_or(""),
            reason = m.error.code();
            "malformed frame from the gateway: {}", sanitize(&m.error.to_string(), LOG_TEXT_MAX)
        );
        let body = EventBody::Error(ErrorData {
            code: "malformed_frame".into(),
            message: sanitize_for_broadcast(&m.error.to_string()).into_owned(),
            request_id: m.request_id,
        });
        let json = sse_json(&body, &trace_id, &clock::now_rfc3339(), None);
        self.hub.publish_own(|id| match id {
            Some(id) => sequenced(id, "error", None, &json, Instant::now()),
            None => unsequenced_delivery("error", &json),
        });
    }

    fn completed(&mut self, c: Completion) {
        let (result, detail) = match &c.outcome {
            Outcome::Replied(Reply::Ack) => ("ok", String::new()),
            Outcome::Replied(Reply::Messages(m)) => {
                ("ok", format!("{} messages", m.messages.len()))
            }
            Outcome::Replied(Reply::RateLimited { retry_after_ms, .. }) => {
                ("rate_limited", format!("retry after {retry_after_ms} ms"))
            }
            Outcome::Replied(Reply::Error { code, .. }) => {
                ("gateway_error", sanitize(code, 64).into_owned())
            }
            Outcome::TimedOut => ("gateway_timeout", String::new()),
            Outcome::Failed { code, .. } => ("gateway_error", sanitize(code, 64).into_owned()),
        };
        self.metrics.command_done(c.command_type, result, c.latency);
        info!(
            traceId = c.trace_id.as_str(),
            requestId = c.request_id.as_str(),
            latencyMs = c.latency.as_secs_f64() * 1000.0,
            attempts = c.attempts,
            result = result;
            "command {} completed {detail}", c.command_type
        );
        if let Some(access) = &self.access {
            let answered = matches!(c.outcome, Outcome::Replied(Reply::Ack));
            access.on_completed(&c.request_id, answered);
        }
        if let Some(tx) = self.waiters.lock().remove(&c.request_id) {
            // The caller may have given up already; that is fine.
            let _ = tx.try_send(c);
        }
    }
}

impl LinkEvents for LinkSink {
    fn on_output(&mut self, output: LinkOutput) {
        match output {
            LinkOutput::Publish(ev) => self.publish(*ev),
            LinkOutput::Ready {
                voice,
                guilds,
                trace_id,
            } => {
                info!(traceId = trace_id.as_str(); "link ready; voice snapshot has {} channels", voice.channels.len());
                if let Some(access) = &self.access {
                    access.on_ready(&guilds);
                }
                *self.voice.lock() = voice.clone();
                let mut cleaned = voice;
                for m in cleaned.channels.values_mut().flatten() {
                    m.username = sanitize_for_broadcast(&m.username).into_owned();
                }
                self.hub
                    .broadcast_state("voice.snapshot", snapshot_item(&cleaned, &trace_id));
            }
            LinkOutput::Malformed(m) => self.malformed(m),
            LinkOutput::Completed(c) => self.completed(c),
            LinkOutput::Status { connected } => {
                self.metrics.set_ws_connected(connected);
                if connected {
                    info!("link to the gateway is up");
                } else {
                    warn!("link to the gateway is down");
                }
                self.hub
                    .broadcast_state("gateway.status", status_item(connected));
                self.link_up.set(connected);
            }
            LinkOutput::Rtt(rtt) => self.metrics.observe_ws_rtt(rtt),
            LinkOutput::Reconnecting {
                attempt,
                delay,
                reason,
            } => {
                self.metrics.ws_reconnect();
                info!(
                    attempt = attempt, delayMs = delay.as_millis() as u64, reason = reason.code();
                    "reconnecting to the gateway"
                );
            }
            // Socket work is the driver's; it never reaches the sink.
            LinkOutput::Connect { .. }
            | LinkOutput::Send(_)
            | LinkOutput::Ping(_)
            | LinkOutput::Disconnect { .. } => {}
        }
    }

    fn on_connect_error(&mut self, error: &ConnectError) {
        if matches!(error, ConnectError::Unauthorized) {
            self.metrics.link_auth_failure();
        }
        warn!("cannot reach the gateway: {error}");
    }
}

/// Frames a sequenced event as one SSE block.
pub fn sequenced(
    id: EventId,
    kind: &str,
    channel: Option<Arc<str>>,
    json: &str,
    received_at: Instant,
) -> Delivery {
    let id_text = id.to_string();
    let mut buf = Vec::with_capacity(json.len() + 64);
    // Event types and ids are ours (ASCII, no line breaks), so encoding cannot fail.
    let _ = encode_event(
        &mut buf,
        &SseFrame::new(json).with_id(&id_text).with_event(kind),
    );
    Delivery {
        id: Some(id),
        event_type: kind.into(),
        channel_id: channel,
        bytes: buf.into(),
        json: json.into(),
        received_at,
        actor: None,
    }
}

/// An event read back from the shared log (docs/redis.md) as this edge
/// would have published it live: cleaned, encoded, with the same id and, for
/// errors, the same actor. `None` for what never reaches a browser or lacks an id.
pub fn replay_item(mut ev: GatewayEvent, access: Option<&DiscordAccess>) -> Option<Item> {
    if ev.body.is_link_only() {
        return None;
    }
    let id = ev.meta.extra.get().event_id?;
    ev.body.clean_text(sanitize_for_broadcast);
    let kind = ev.body.type_name();
    let actor = match (&ev.body, access) {
        (EventBody::Error(e), Some(access)) => {
            e.request_id.as_deref().and_then(|r| access.actor_of(r))
        }
        _ => None,
    };
    let json = sse_json(
        &ev.body,
        &ev.meta.trace_id,
        &ev.meta.sent_at,
        ev.meta.extra.get().rev,
    );
    let channel = ev.body.channel_id().map(Arc::from);
    Some(Arc::new(Delivery {
        actor,
        ..sequenced(id, kind, channel, &json, Instant::now())
    }))
}

/// A live event without an `id:` line (not replayable).
fn unsequenced_delivery(kind: &str, json: &str) -> Delivery {
    let mut buf = Vec::with_capacity(json.len() + 32);
    let _ = encode_event(&mut buf, &SseFrame::new(json).with_event(kind));
    Delivery {
        id: None,
        event_type: kind.into(),
        channel_id: None,
        bytes: buf.into(),
        json: json.into(),
        received_at: Instant::now(),
        actor: None,
    }
}

/// Frames an unsequenced state event (no `id:` line).
pub fn unsequenced(kind: &'static str, data: &serde_json::Value, trace_id: &str) -> Item {
    let json = sse_json_raw(kind, data, trace_id, &clock::now_rfc3339());
    Arc::new(unsequenced_delivery(kind, &json))
}

fn status_item(connected: bool) -> Item {
    unsequenced(
        "gateway.status",
        &json!({ "connected": connected }),
        &clock::new_trace_id(),
    )
}

fn snapshot_item(voice: &VoiceSnapshot, trace_id: &str) -> Item {
    let data = serde_json::to_value(voice).unwrap_or_else(|_| json!({ "channels": {} }));
    unsequenced("voice.snapshot", &data, trace_id)
}
