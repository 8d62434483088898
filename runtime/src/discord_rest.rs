//! The gateway's Discord REST client: runs link commands as REST v10 calls
//! (CONTRACT.md §5, reference/discord.md §4 and §5).
//!
//! [`RestExecutor::execute`] is the whole path of one command:
//! `build_request` → [`RestLimiter::acquire`] → one HTTP call with ureq →
//! `RateLimitHeaders::parse` → [`RestLimiter::record`] → `interpret_response`.
//!
//! Decisions:
//! - **Never wait for a limit.** A command that cannot go now is answered
//!   `rateLimited` with `retryAfterMs` at once; the browser decides whether to
//!   retry. Blocking here would hold a link worker (and every command sharded
//!   behind it) for up to a bucket's reset.
//! - **The limiter lock is never held across IO**: acquire, unlock, call,
//!   lock again to record. Every acquire is followed by exactly one `record`
//!   (Discord answered) or `cancel` (it did not), as the limiter requires.
//! - **The token lives only in the `Authorization` value** built here; it is in
//!   no log line and no reply (replies come from `interpret_response`, which
//!   never echoes Discord's body, or from fixed texts below).
//! - ureq runs with `http_status_as_error(false)`, so 4xx/5xx bodies (the 429's
//!   `retry_after`, JSON error codes) can be read, and with redirects off: a
//!   redirect would carry the token to wherever Discord's answer pointed.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use parking_lot::Mutex;
use relay_protocol::discord::messages::MAX_MESSAGES_BODY;
use relay_protocol::discord::ratelimit::{reply_for_wait, RateLimitHeaders, RestLimiter};
use relay_protocol::discord::rest::{
    build_request, interpret_response, ErrorBody, RestRequest, API_BASE, USER_AGENT,
};
use relay_protocol::discord::session::BotToken;
use relay_protocol::frame::{GatewayCommand, Reply, TraceMeta};

use crate::link_server::CommandExecutor;

/// How long one REST call may take, connect to last body byte.
pub const DEFAULT_REST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest response body read; Discord's error bodies are far smaller, and so
/// are the success bodies read (a guild member, a webhook). A message list
/// ([`MAX_MESSAGES_BODY`]) may be larger.
const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// What the REST client needs.
#[derive(Clone)]
pub struct RestConfig {
    /// `DISCORD_API_BASE`, e.g. `https://discord.com/api/v10` (no trailing `/` needed).
    pub api_base: String,
    /// `DISCORD_BOT_TOKEN`.
    pub token: BotToken,
    /// Per-call timeout.
    pub timeout: Duration,
}

impl RestConfig {
    /// Discord's real API with the default timeout.
    pub fn new(token: BotToken) -> Self {
        RestConfig {
            api_base: API_BASE.to_owned(),
            token,
            timeout: DEFAULT_REST_TIMEOUT,
        }
    }
}

impl fmt::Debug for RestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestConfig")
            .field("api_base", &self.api_base)
            .field("token", &self.token)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// How one command ended, for metrics: its type, Discord's HTTP status
/// (`None` when no call was made or none answered), and how long it took.
#[derive(Debug, Clone)]
pub struct RestOutcome<'a> {
    /// The command type (`sendMessage` …).
    pub command: &'static str,
    /// The rate-limit route (`POST /channels/123/messages`), when the command was valid.
    pub route: Option<&'a str>,
    /// Whether a request went out (false: refused before sending, by validation
    /// or a rate limit).
    pub sent: bool,
    /// Discord's status, if it answered.
    pub status: Option<u16>,
    /// The reply sent back to the edge.
    pub reply: &'a Reply,
    /// Time spent in this executor.
    pub latency: Duration,
}

/// Receives every [`RestOutcome`] (metrics). Called on the worker thread after the call.
pub trait RestObserver: Send + Sync + 'static {
    /// One command finished.
    fn on_rest(&self, outcome: &RestOutcome<'_>);
}

/// Runs link commands against Discord's REST API. Cheap to share: every method
/// takes `&self`, and concurrent calls only meet at the limiter's short lock.
pub struct RestExecutor {
    agent: ureq::Agent,
    api_base: String,
    /// `Bot <token>`: the one place the token is kept in this executor.
    authorization: String,
    limiter: Mutex<RestLimiter>,
    timeout: Duration,
    observer: Option<Arc<dyn RestObserver>>,
}

impl fmt::Debug for RestExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestExecutor")
            .field("api_base", &self.api_base)
            .field("authorization", &"Bot <redacted>")
            .finish_non_exhaustive()
    }
}

/// An HTTP agent for Discord: statuses are answers, not errors; no redirects;
/// `timeout` for the whole call.
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .user_agent(USER_AGENT)
        .build()
        .into()
}

impl RestExecutor {
    /// A client for `config`, with a fresh limiter.
    pub fn new(config: RestConfig) -> Self {
        RestExecutor {
            agent: http_agent(config.timeout),
            api_base: config.api_base.trim_end_matches('/').to_owned(),
            authorization: format!("Bot {}", config.token.expose()),
            limiter: Mutex::new(RestLimiter::new()),
            timeout: config.timeout,
            observer: None,
        }
    }

    /// Reports every finished command to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn RestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Runs one command and returns its reply. Never blocks on a rate limit;
    /// takes at most the configured timeout.
    pub fn execute(&self, command: &GatewayCommand) -> Reply {
        self.read(command).0
    }

    /// Like [`RestExecutor::execute`], and also gives Discord's body of a
    /// successful call (at most 1 MiB; 4 MiB for a message list), for
    /// commands that read (`fetchMember`, `fetchMessages`).
    pub fn read(&self, command: &GatewayCommand) -> (Reply, Option<Vec<u8>>) {
        let started = Instant::now();
        let kind = command.body.type_name();
        let trace = command.meta.trace_id.as_str();
        let request_id = command.request_id();
        let request = match build_request(command) {
            Ok(r) => r,
            Err(e) => {
                // The edge validates first, so this is a bug or a foreign edge.
                warn!(traceId = trace, requestId = request_id; "discord REST: {kind} refused before sending: {e}");
                let reply = Reply::Error {
                    code: "invalid_command".to_owned(),
                    message: e.to_string(),
                };
                self.observe(kind, None, false, None, &reply, started);
                return (reply, None);
            }
        };
        self.read_request(&request, kind, &command.meta, started)
    }

    /// Runs one request relay built itself (webhooks, message reads) under the
    /// same limiter, logging and metrics as a command; `kind` names it in both.
    /// Gives Discord's body of a successful call (at most 1 MiB).
    pub fn request(
        &self,
        request: &RestRequest,
        kind: &'static str,
        meta: &TraceMeta,
    ) -> (Reply, Option<Vec<u8>>) {
        self.read_request(request, kind, meta, Instant::now())
    }

    fn read_request(
        &self,
        request: &RestRequest,
        kind: &'static str,
        meta: &TraceMeta,
        started: Instant,
    ) -> (Reply, Option<Vec<u8>>) {
        let trace = meta.trace_id.as_str();
        let request_id = meta.request_id.as_deref().unwrap_or_default();
        let route = request.route.as_str().to_owned();

        let acquired = {
            let mut limiter = self.limiter.lock();
            let now = Instant::now();
            limiter
                .acquire(&request.route, now)
                .map_err(|wait| (wait, limiter.global_wait(now).is_some()))
        };
        if let Err((wait, global)) = acquired {
            let reply = reply_for_wait(wait, global);
            info!(traceId = trace, requestId = request_id; "discord REST: {kind} on {route} held back by the {} limit for {} ms", if global { "global" } else { "route" }, wait.as_millis());
            self.observe(kind, Some(&route), false, None, &reply, started);
            return (reply, None);
        }

        let mut success_body = None;
        let limit = if kind == "fetchMessages" {
            MAX_MESSAGES_BODY as u64
        } else {
            MAX_BODY_BYTES
        };
        let (status, reply) = match self.call(request, limit) {
            Ok((status, headers, body)) => {
                let parsed = ErrorBody::parse(&body);
                self.limiter.lock().record(
                    &request.route,
                    Instant::now(),
                    status,
                    &headers,
                    parsed.retry_after,
                    parsed.global,
                );
                let reply = interpret_response(status, &headers, &body);
                if reply == Reply::Ack {
                    success_body = Some(body);
                }
                (Some(status), reply)
            }
            Err(e) => {
                self.limiter.lock().cancel(&request.route, Instant::now());
                warn!(traceId = trace, requestId = request_id; "discord REST: {kind} on {route} failed: {e}");
                let message = if matches!(e, ureq::Error::Timeout(_)) {
                    format!(
                        "Discord did not answer within {} ms",
                        self.timeout.as_millis()
                    )
                } else {
                    "Discord could not be reached".to_owned()
                };
                (
                    None,
                    Reply::Error {
                        code: "discord_unreachable".to_owned(),
                        message,
                    },
                )
            }
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        match (status, &reply) {
            (Some(s), Reply::Ack) => {
                info!(traceId = trace, requestId = request_id, latencyMs = latency_ms; "discord REST: {kind} on {route} → {s}")
            }
            (Some(s), other) => {
                warn!(traceId = trace, requestId = request_id, latencyMs = latency_ms; "discord REST: {kind} on {route} → {s}: {}", describe(other))
            }
            (None, _) => {}
        }
        self.observe(kind, Some(&route), true, status, &reply, started);
        (reply, success_body)
    }

    /// One HTTP exchange: status, rate-limit headers and (bounded) body.
    fn call(
        &self,
        request: &RestRequest,
        limit: u64,
    ) -> Result<(u16, RateLimitHeaders, Vec<u8>), ureq::Error> {
        let mut builder = ureq::http::Request::builder()
            .method(request.method.as_str())
            .uri(request.url(&self.api_base))
            .header("Authorization", &self.authorization);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        // An empty body still goes with `Content-Length: 0`: Discord (like many
        // proxies) answers 411 to a bodiless PUT/POST without it.
        let body: Vec<u8> = request.body.clone().unwrap_or_default().into_bytes();
        let http_request = builder.body(body).map_err(ureq::Error::from)?;
        let mut response = self.agent.run(http_request)?;
        let status = response.status().as_u16();
        let headers = {
            let h = response.headers();
            RateLimitHeaders::parse(|name| h.get(name).and_then(|v| v.to_str().ok()))
        };
        // A body that cannot be read is treated as empty: the status still decides.
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .unwrap_or_default();
        Ok((status, headers, body))
    }

    fn observe(
        &self,
        command: &'static str,
        route: Option<&str>,
        sent: bool,
        status: Option<u16>,
        reply: &Reply,
        started: Instant,
    ) {
        if let Some(o) = &self.observer {
            o.on_rest(&RestOutcome {
                command,
                route,
                sent,
                status,
                reply,
                latency: started.elapsed(),
            });
        }
    }
}

impl CommandExecutor for RestExecutor {
    fn execute(&self, command: &GatewayCommand) -> Reply {
        RestExecutor::execute(self, command)
    }
}

fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Ack => "ack".to_owned(),
        Reply::RateLimited {
            retry_after_ms,
            global,
        } => format!("rate limited for {retry_after_ms} ms (global: {global})"),
        Reply::Error { code, message } => format!("{code}: {message}"),
        Reply::Messages(m) => format!("{} messages", m.messages.len()),
    }
}
