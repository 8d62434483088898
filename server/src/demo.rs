//! `relay demo`: a simulated Discord, the gateway and the edge in one process,
//! with the demo page — no credentials needed (CONTRACT.md §1).
//!
//! The link token is random per run, and so is the session secret unless
//! `SESSION_SECRET` is given (an app minting sessions for the demo sets it); the
//! simulated bot token never leaves the process. Sign in with Discord is on, pointed at the
//! simulator's OAuth2 application, so the demo signs in through the same code
//! path a real deployment uses (the demo-only `/api/demo/*` routes stay too).
//! With `DEMO_CONTROL` set, a small HTTP API on that address lets browser tests
//! act as Discord (a member leaving voice, a role granted or taken, a timeout)
//! and break the link on purpose.
//!
//! The gateway identifies with GUILD_MEMBERS (the simulator allows it), so role
//! and timeout changes reach the page within a second, as `access` events.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::config::AccessMode;
use log::{info, warn};
use relay_protocol::bucket::LimitConfig;
use relay_runtime::http_server::{HttpConfig, HttpServer, Request, Response};
use relay_runtime::sim_discord::{demo_users, ids, SimConfig, SimDiscord};
use serde_json::{json, Value};

use crate::config::DiscordClient;
use crate::edge::{DemoInfo, DemoUser, Edge, EdgeSettings, SignInSettings};
use crate::gateway::{Gateway, Settings as GatewaySettings};
use crate::metrics::Metrics;
use crate::secret::Secret;

/// Everything `relay demo` runs.
pub struct Demo {
    sim: Option<Arc<SimDiscord>>,
    gateway: Arc<parking_lot::Mutex<Option<Gateway>>>,
    edge: Option<Edge>,
    control: Option<HttpServer>,
    /// A session token for the first demo user, with both roles.
    pub token: String,
}

/// What `relay demo` was asked for.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The page's address.
    pub bind: SocketAddr,
    /// Seed of the simulated guild.
    pub seed: u64,
    /// Serve `/api/ws` too.
    pub enable_ws_bridge: bool,
    /// Where to serve the test control API, if anywhere.
    pub control: Option<SocketAddr>,
    /// How often the demo gives Ada the Moderator role or takes it away (and Ken's
    /// timeout cycle); `None`: the simulator's default, 45 s. Tests that change
    /// roles themselves set it long, so the schedule does not race them.
    pub role_period: Option<Duration>,
    /// `REPLAY_CAPACITY` of the demo's edge; `None`: 4096 (the contract's default).
    /// Browser tests make it small so a real `Last-Event-ID` can fall out of it.
    pub replay_capacity: Option<usize>,
}

impl Demo {
    /// Starts the simulated Discord, the gateway and the edge, with a random
    /// session key.
    pub fn start(opts: DemoOptions) -> io::Result<Demo> {
        Demo::start_with_secret(opts, None)
    }

    /// As [`Demo::start`], with the sessions' key (`SESSION_SECRET`) fixed when
    /// given, so an app can mint sessions the demo accepts; `None`: random.
    pub fn start_with_secret(
        opts: DemoOptions,
        session_secret: Option<Secret>,
    ) -> io::Result<Demo> {
        let mut sim_config = SimConfig::demo(opts.seed);
        if let Some(period) = opts.role_period {
            sim_config.demo_role_period = period;
        }
        let sim = Arc::new(SimDiscord::start(sim_config)?);
        let link_token = Secret::new(relay_runtime::clock::new_trace_id());
        let metrics = Arc::new(Metrics::new());
        let mut gateway_settings = GatewaySettings::for_discord_at(
            "127.0.0.1:0".parse().expect("loopback"),
            link_token.clone(),
            Secret::new(sim.bot_token()),
            sim.api_base(),
            sim.gateway_url(),
        );
        // Without GUILD_MEMBERS no GUILD_MEMBER_UPDATE arrives, and the demo's role
        // changes would reach the page only when the gateway re-reads members.
        gateway_settings.members_intent = true;
        let gateway = Gateway::start(gateway_settings.clone(), metrics.clone())
            .map_err(|e| io::Error::other(e.to_string()))?;
        let link_url = gateway.link_url();
        let edge_settings = EdgeSettings {
            bind: opts.bind,
            gateway_ws_url: link_url,
            link_token,
            session_secret: session_secret
                .unwrap_or_else(|| Secret::new(relay_runtime::clock::new_trace_id())),
            enable_ws_bridge: opts.enable_ws_bridge,
            heartbeat: Duration::from_secs(15),
            limits: LimitConfig::default(),
            queue_capacity: 1000,
            replay_capacity: opts.replay_capacity.unwrap_or(4096),
            reply_timeout: Duration::from_secs(5),
            access: AccessMode::Discord,
            demo: Some(Arc::new(demo_info())),
            http: HttpConfig::default(),
            allowed_origins: Default::default(),
            redis_url: None,
            signin: SignInSettings {
                client: Some(DiscordClient {
                    id: sim.oauth_client_id().to_owned(),
                    secret: Secret::new(sim.oauth_client_secret()),
                }),
                authorize_url: sim.authorize_url(),
                api_base: sim.api_base(),
                ..SignInSettings::default()
            },
        };
        let edge = Edge::start(edge_settings, metrics.clone())?;
        // As an operator registers the redirect URI in Discord's developer portal.
        sim.allow_redirect_uri(&edge.oauth_redirect_uri());
        // Return once the page would show a live guild: the simulated Discord
        // session up and the edge linked. Everything is on loopback, so this
        // takes milliseconds; if it does not, the page shows the link badge
        // and catches up by itself.
        let startup = Duration::from_secs(5);
        if !gateway.wait_discord_connected(startup) || !edge.wait_link(true, startup) {
            log::warn!("demo: not all linked up after {startup:?}; continuing");
        }
        let first = demo_users()
            .into_iter()
            .next()
            .expect("the demo guild has users");
        let token = edge.issue_token(
            &first.id,
            Some(&first.username),
            &["chat:write".to_string(), "voice:moderate".to_string()],
            Duration::from_secs(12 * 3600),
        );
        let gateway = Arc::new(parking_lot::Mutex::new(Some(gateway)));
        let mut demo = Demo {
            sim: Some(sim),
            gateway,
            edge: Some(edge),
            control: None,
            token,
        };
        if let Some(addr) = opts.control {
            demo.control = Some(demo.start_control(addr, gateway_settings, metrics)?);
        }
        Ok(demo)
    }

    /// The page's address.
    pub fn addr(&self) -> SocketAddr {
        self.edge.as_ref().expect("running").local_addr()
    }

    /// Stops everything, edge first so browsers see the stream end.
    pub fn shutdown(mut self) {
        if let Some(server) = self.control.take() {
            server.shutdown();
        }
        if let Some(edge) = self.edge.take() {
            edge.shutdown();
        }
        if let Some(gateway) = self.gateway.lock().take() {
            gateway.shutdown();
        }
        // The control API holds the simulator weakly, so this is the last reference.
        if let Some(Ok(sim)) = self.sim.take().map(Arc::try_unwrap) {
            sim.shutdown();
        }
    }

    /// The test control API: `POST /voice-leave {"userId"}`, `POST /voice-join
    /// {"userId","channelId"}` (joins, or moves to, that voice channel), `POST /set-roles
    /// {"userId","roleIds":[…]}` (replaces the member's roles; GUILD_MEMBER_UPDATE),
    /// `POST /timeout {"userId","seconds"}` (times the member out for that long, or
    /// lifts the timeout with 0), `POST /post {"userId","channelId","content","count"?}`
    /// (posts as that member: MESSAGE_CREATE; `count` > 1 numbers them `#1`…;
    /// answers `id`, the last one, and `ids`),
    /// `POST /seed-messages` (same body plus `agoMs`: history from before now, one
    /// second apart, nothing dispatched), `POST /react` / `POST /unreact`
    /// `{"userId","channelId","messageId","emoji"}`, `POST /edit
    /// {"channelId","messageId","content"}`, `POST /delete {"channelId","messageId"}`,
    /// `POST /messages {"channelId"}` (`{"ids":[…]}`: every id the simulator holds
    /// there, oldest first — the truth history is checked against), `POST /link-drop` (stops the gateway, so the
    /// edge's link goes down and stays down), `POST /link-restore` (starts it
    /// again on the same address, counting into the same `metrics`, so both ports
    /// keep showing one registry).
    fn start_control(
        &self,
        addr: SocketAddr,
        mut settings: GatewaySettings,
        metrics: Arc<Metrics>,
    ) -> io::Result<HttpServer> {
        let gateway = self.gateway.clone();
        let sim = self.sim.as_ref().expect("running");
        let api = sim.api_base();
        let ws = sim.gateway_url();
        let bot = sim.bot_token().to_owned();
        // Restarting binds the same port the edge is linked to.
        settings.bind = gateway.lock().as_ref().expect("running").link_addr();
        settings.api_base = api;
        settings.gateway_url = Some(ws);
        settings.bot_token = Secret::new(bot);
        let sim_control = Arc::downgrade(sim);
        let down = Arc::new(AtomicBool::new(false));
        let handler = move |mut req: Request| {
            let body = req.read_body(16 * 1024).unwrap_or_default();
            let body = serde_json::from_slice::<Value>(&body).unwrap_or_default();
            let user = body["userId"].as_str();
            let sim = Weak::upgrade(&sim_control);
            let channel = body["channelId"].as_str();
            let result = match (req.url(), user, sim) {
                (
                    "/voice-leave" | "/voice-join" | "/set-roles" | "/timeout" | "/post"
                    | "/seed-messages" | "/react" | "/unreact",
                    None,
                    _,
                ) => Err("userId required"),
                (
                    "/post" | "/seed-messages" | "/react" | "/unreact" | "/edit" | "/delete"
                    | "/messages",
                    _,
                    _,
                ) if channel.is_none() => Err("channelId required"),
                (
                    "/voice-leave" | "/voice-join" | "/set-roles" | "/timeout" | "/post"
                    | "/seed-messages" | "/react" | "/unreact" | "/edit" | "/delete" | "/messages",
                    _,
                    None,
                ) => Err("shutting down"),
                (url @ ("/post" | "/seed-messages"), Some(u), Some(sim)) => {
                    let c = channel.unwrap_or_default();
                    let text = body["content"].as_str().unwrap_or("message");
                    let count = body["count"].as_u64().unwrap_or(1).clamp(1, 1000);
                    let content = |i: u64| match count {
                        1 => text.to_owned(),
                        _ => format!("{text} #{}", i + 1),
                    };
                    let ids: Option<Vec<String>> = if url == "/post" {
                        (0..count).map(|i| sim.post_as(u, c, &content(i))).collect()
                    } else {
                        // One second apart, the last `agoMs` (default 1 s) before now.
                        let ago = body["agoMs"].as_u64().unwrap_or(1000);
                        (0..count)
                            .map(|i| {
                                sim.seed_message(u, c, &content(i), ago + (count - 1 - i) * 1000)
                            })
                            .collect()
                    };
                    ids.map(|ids| json!({"ok": true, "id": ids.last(), "ids": ids}))
                        .ok_or("unknown user or channel")
                }
                (url @ ("/react" | "/unreact"), Some(u), Some(sim)) => {
                    match (body["messageId"].as_str(), body["emoji"].as_str()) {
                        (Some(m), Some(e)) => {
                            let c = channel.unwrap_or_default();
                            let ok = if url == "/react" {
                                sim.react_as(u, c, m, e)
                            } else {
                                sim.unreact_as(u, c, m, e)
                            };
                            Ok(json!({"ok": ok}))
                        }
                        _ => Err("messageId and emoji required"),
                    }
                }
                ("/edit", _, Some(sim)) => {
                    match (body["messageId"].as_str(), body["content"].as_str()) {
                        (Some(m), Some(text)) => Ok(
                            json!({"ok": sim.edit_message(channel.unwrap_or_default(), m, text)}),
                        ),
                        _ => Err("messageId and content required"),
                    }
                }
                ("/delete", _, Some(sim)) => match body["messageId"].as_str() {
                    Some(m) => {
                        Ok(json!({"ok": sim.delete_messages(channel.unwrap_or_default(), &[m])}))
                    }
                    None => Err("messageId required"),
                },
                ("/messages", _, Some(sim)) => {
                    Ok(json!({"ids": sim.message_ids_in(channel.unwrap_or_default())}))
                }
                ("/voice-leave", Some(u), Some(sim)) => Ok(json!({"ok": sim.voice_leave(u)})),
                ("/voice-join", Some(u), Some(sim)) => match body["channelId"].as_str() {
                    Some(c) => Ok(json!({"ok": sim.voice_join(u, c)})),
                    None => Err("channelId required"),
                },
                ("/set-roles", Some(u), Some(sim)) => match body["roleIds"].as_array() {
                    Some(ids) => {
                        let roles: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
                        Ok(json!({"ok": sim.set_member_roles(u, &roles)}))
                    }
                    None => Err("roleIds required"),
                },
                ("/timeout", Some(u), Some(sim)) => match body["seconds"].as_u64() {
                    Some(0) => Ok(json!({"ok": sim.timeout_member(u, None)})),
                    Some(s) => {
                        let until = relay_runtime::clock::unix_ms() + s * 1000;
                        Ok(json!({"ok": sim.timeout_member(u, Some(until))}))
                    }
                    None => Err("seconds required"),
                },
                ("/link-drop", ..) => {
                    down.store(true, Ordering::SeqCst);
                    if let Some(g) = gateway.lock().take() {
                        g.shutdown();
                    }
                    Ok(json!({"ok": true}))
                }
                ("/link-restore", ..) => {
                    let mut slot = gateway.lock();
                    if slot.is_none() {
                        match Gateway::start(settings.clone(), metrics.clone()) {
                            Ok(g) => *slot = Some(g),
                            Err(e) => {
                                warn!("demo control: cannot restart the gateway: {e}")
                            }
                        }
                    }
                    down.store(false, Ordering::SeqCst);
                    Ok(json!({"ok": slot.is_some()}))
                }
                _ => Err("unknown control"),
            };
            let (status, body) = match result {
                Ok(v) => (200, v),
                Err(e) => (400, json!({"error": e})),
            };
            let _ = req.respond(Response::json(status, &body));
        };
        let server = HttpServer::bind(addr, HttpConfig::default(), Arc::new(handler))?;
        info!("demo control API on http://{}", server.local_addr());
        Ok(server)
    }
}

/// The simulated guild as the page's sign-in sees it: who one may sign in as.
/// The channels each user may see come with the stream (`access` events).
fn demo_info() -> DemoInfo {
    DemoInfo {
        guild_id: ids::GUILD.to_owned(),
        users: demo_users()
            .into_iter()
            .map(|u| DemoUser {
                id: u.id,
                username: u.username,
                avatar: u.avatar,
            })
            .collect(),
    }
}
