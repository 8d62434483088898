//! A test gateway: the gateway side of the link (CONTRACT.md §5), written for the
//! edge's tests independently of relay's own link server, so the edge is checked
//! against the contract rather than against itself.
//!
//! It accepts edges on `/link` with a bearer token, greets each with `ready`,
//! records every command on a channel (tests wait on it, not on sleeps), answers
//! according to a [`ReplyMode`], and can push any frame, drop every connection or
//! refuse new ones on demand.
//!
//! For `ACCESS=discord` (CONTRACT.md §8) it can also play the guild's side:
//! [`TestGateway::set_ready_guilds`] puts guild snapshots in `ready`, and
//! [`TestGateway::set_member_lookup`] answers `fetchMember` as the gateway does,
//! with a `guild.member` event to every edge before the asking edge's `ack`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use relay_protocol::frame::{parse_command, GatewayCommand, GatewayEvent, TraceMeta};
use relay_protocol::payload::{
    Ack, Author, CommandBody, ErrorData, EventBody, GuildMember, MessageCreate, RateLimited, Ready,
    Timestamp, VoiceSnapshot,
};
use relay_runtime::clock;
use relay_runtime::discord_gateway::wrap;
use relay_runtime::ws_io::{Incoming, Waker, WsConn};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};

/// How the test gateway answers commands.
#[derive(Clone, Debug)]
pub enum ReplyMode {
    /// `ack` at once.
    Ack,
    /// `ack`, and echo each `sendMessage` to every edge as `messageCreate`
    /// (what Discord does with a bot's own message).
    AckAndEcho,
    /// `rateLimited` with this wait.
    RateLimited {
        /// Milliseconds to wait.
        retry_after_ms: u64,
        /// Global limit.
        global: bool,
    },
    /// `error` with this code and message.
    Error {
        /// Code.
        code: String,
        /// Message.
        message: String,
    },
    /// Never answer (for reply timeouts).
    Silent,
}

struct Conn {
    tx: Sender<String>,
    waker: Waker,
    kill: Arc<AtomicBool>,
}

/// Rewrites the content of an echoed `sendMessage` at the moment of the echo.
pub type EchoContent = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Answers `fetchMember {guildId, userId}`: Discord's guild member object, or
/// `None` when the user is not a member.
pub type MemberLookup = Arc<dyn Fn(&str, &str) -> Option<serde_json::Value> + Send + Sync>;

struct Shared {
    token: String,
    echo_content: Mutex<Option<EchoContent>>,
    mode: Mutex<ReplyMode>,
    conns: Mutex<Vec<Conn>>,
    commands_tx: Sender<GatewayCommand>,
    connected_tx: Sender<()>,
    accepting: AtomicBool,
    auth_failures: AtomicU64,
    ready_voice: Mutex<VoiceSnapshot>,
    ready_guilds: Mutex<Vec<serde_json::Value>>,
    members: Mutex<Option<MemberLookup>>,
    stop: AtomicBool,
}

/// A running test gateway.
pub struct TestGateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
    commands: Receiver<GatewayCommand>,
    connected: Receiver<()>,
}

impl TestGateway {
    /// Starts on a free loopback port, accepting `token`.
    pub fn start(token: &str) -> TestGateway {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test gateway");
        let addr = listener.local_addr().expect("local addr");
        let (commands_tx, commands) = crossbeam_channel::unbounded();
        let (connected_tx, connected) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            echo_content: Mutex::new(None),
            mode: Mutex::new(ReplyMode::Ack),
            conns: Mutex::new(Vec::new()),
            commands_tx,
            connected_tx,
            accepting: AtomicBool::new(true),
            auth_failures: AtomicU64::new(0),
            ready_voice: Mutex::new(VoiceSnapshot::default()),
            ready_guilds: Mutex::new(Vec::new()),
            members: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let accept_shared = shared.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                if !accept_shared.accepting.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                let shared = accept_shared.clone();
                thread::spawn(move || serve(shared, stream));
            }
        });
        TestGateway {
            addr,
            shared,
            commands,
            connected,
        }
    }

    /// `ws://127.0.0.1:PORT/link`.
    pub fn url(&self) -> String {
        format!("ws://{}/link", self.addr)
    }

    /// Sets how commands are answered from now on.
    pub fn set_mode(&self, mode: ReplyMode) {
        *self.shared.mode.lock() = mode;
    }

    /// In [`ReplyMode::AckAndEcho`], passes each echoed message's content through
    /// `rewrite` just before the echo is sent (the load generator stamps the
    /// echo's send time this way).
    pub fn set_echo_content(&self, rewrite: EchoContent) {
        *self.shared.echo_content.lock() = Some(rewrite);
    }

    /// The voice snapshot sent in `ready` to edges that connect from now on.
    pub fn set_ready_voice(&self, voice: VoiceSnapshot) {
        *self.shared.ready_voice.lock() = voice;
    }

    /// The guild snapshots (GUILD_CREATE shape with `relay_bot_user_id`) sent
    /// in `ready.data.guilds` to edges that connect from now on.
    pub fn set_ready_guilds(&self, guilds: Vec<serde_json::Value>) {
        *self.shared.ready_guilds.lock() = guilds;
    }

    /// Answers `fetchMember` from now on with `lookup`'s member as a
    /// `guild.member` event to every edge, then the reply of the [`ReplyMode`]
    /// to the asking edge. Without a lookup, `fetchMember` gets only the reply.
    pub fn set_member_lookup(&self, lookup: MemberLookup) {
        *self.shared.members.lock() = Some(lookup);
    }

    /// Every command received, in arrival order.
    pub fn commands(&self) -> &Receiver<GatewayCommand> {
        &self.commands
    }

    /// Waits for the next command.
    pub fn next_command(&self, timeout: Duration) -> Option<GatewayCommand> {
        self.commands.recv_timeout(timeout).ok()
    }

    /// Waits until an edge has connected (one signal per connection).
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        self.connected.recv_timeout(timeout).is_ok()
    }

    /// Edges connected now.
    pub fn connections(&self) -> usize {
        self.shared.conns.lock().len()
    }

    /// Upgrades refused for a bad or missing token.
    pub fn auth_failures(&self) -> u64 {
        self.shared.auth_failures.load(Ordering::SeqCst)
    }

    /// Sends an event frame to every connected edge.
    pub fn send_event(&self, body: EventBody) -> TraceMeta {
        let ev = wrap(body);
        self.send_raw(ev.to_json());
        ev.meta
    }

    /// Sends raw text (malformed frames included) to every connected edge.
    pub fn send_raw(&self, text: String) {
        broadcast(&self.shared, text);
    }

    /// Closes every edge connection (the edges reconnect with backoff).
    pub fn drop_connections(&self) {
        for conn in self.shared.conns.lock().drain(..) {
            conn.kill.store(true, Ordering::SeqCst);
            conn.waker.wake();
        }
    }

    /// Refuses (closes at once) new connections while false.
    pub fn set_accepting(&self, accepting: bool) {
        self.shared.accepting.store(accepting, Ordering::SeqCst);
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.drop_connections();
        // Unblock the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

/// A `messageCreate` body for tests.
pub fn message(id: &str, channel_id: &str, content: &str) -> EventBody {
    EventBody::MessageCreate(MessageCreate {
        id: id.into(),
        channel_id: channel_id.into(),
        guild_id: Some("1".into()),
        author: Author {
            id: "9".into(),
            username: "tester".into(),
            avatar: None,
            bot: false,
        },
        content: content.into(),
        timestamp: Timestamp::Text(clock::now_rfc3339()),
        via: None,
    })
}

fn broadcast(shared: &Shared, text: String) {
    for conn in shared.conns.lock().iter() {
        let _ = conn.tx.send(text.clone());
        conn.waker.wake();
    }
}

#[allow(clippy::result_large_err)] // tungstenite's callback signature fixes the error type
fn serve(shared: Arc<Shared>, stream: TcpStream) {
    // As relay's own link server does: no Nagle delay on small frames.
    let _ = stream.set_nodelay(true);
    let token = shared.token.clone();
    let failures = &shared.auth_failures;
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if req.uri().path() != "/link" || auth != Some(&format!("Bearer {token}")) {
            failures.fetch_add(1, Ordering::SeqCst);
            let mut err = ErrorResponse::new(Some("unauthorized".into()));
            *err.status_mut() = tungstenite::http::StatusCode::UNAUTHORIZED;
            return Err(err);
        }
        Ok(resp)
    };
    let Ok(ws) = tungstenite::accept_hdr(stream, callback) else {
        return;
    };
    let Ok(mut conn) = WsConn::from_server(ws) else {
        return;
    };
    let (tx, rx) = crossbeam_channel::unbounded::<String>();
    let kill = Arc::new(AtomicBool::new(false));
    let ready = GatewayEvent {
        body: EventBody::Ready(Ready {
            voice: shared.ready_voice.lock().clone(),
            guilds: shared.ready_guilds.lock().clone(),
        }),
        meta: TraceMeta {
            trace_id: clock::new_trace_id(),
            sent_at: clock::now_rfc3339(),
            request_id: None,
            actor: None,
            access: None,
            extra: Default::default(),
        },
    };
    if conn.send_text(ready.to_json()).is_err() {
        return;
    }
    shared.conns.lock().push(Conn {
        tx,
        waker: conn.waker(),
        kill: kill.clone(),
    });
    let _ = shared.connected_tx.send(());
    loop {
        if kill.load(Ordering::SeqCst) || shared.stop.load(Ordering::SeqCst) {
            conn.close(1001, "test gateway drops the link");
            return;
        }
        for text in rx.try_iter() {
            if conn.send_text(text).is_err() {
                return;
            }
        }
        loop {
            match conn.read() {
                Ok(None) => break,
                Ok(Some(Incoming::Text(text))) => {
                    let Some(reply) = answer(&shared, &text) else {
                        continue;
                    };
                    if reply.after_broadcast {
                        // The asking edge reads the `guild.member` before its ack.
                        for text in rx.try_iter() {
                            if conn.send_text(text).is_err() {
                                return;
                            }
                        }
                    }
                    if conn.send_text(reply.text).is_err() {
                        return;
                    }
                }
                Ok(Some(Incoming::Pong(_))) => {}
                Ok(Some(Incoming::Closed(_))) | Err(_) => {
                    remove(&shared, &kill);
                    return;
                }
            }
        }
        let _ = conn.flush();
        if conn.wait(Some(Duration::from_millis(200))).is_err() {
            remove(&shared, &kill);
            return;
        }
    }
}

fn remove(shared: &Shared, kill: &Arc<AtomicBool>) {
    shared.conns.lock().retain(|c| !Arc::ptr_eq(&c.kill, kill));
}

/// The reply to one command.
struct Reply {
    text: String,
    /// Frames just broadcast must reach this edge before the reply.
    after_broadcast: bool,
}

fn answer(shared: &Shared, text: &str) -> Option<Reply> {
    let command = parse_command(text.as_bytes()).ok()?;
    let mode = shared.mode.lock().clone();
    let meta = TraceMeta {
        trace_id: command.meta.trace_id.clone(),
        sent_at: clock::now_rfc3339(),
        request_id: command.meta.request_id.clone(),
        actor: None,
        access: None,
        extra: Default::default(),
    };
    let member = match &command.body {
        CommandBody::FetchMember(f) => shared.members.lock().as_ref().map(|lookup| {
            GatewayEvent {
                body: EventBody::GuildMember(GuildMember {
                    guild_id: f.guild_id.clone(),
                    user_id: f.user_id.clone(),
                    member: lookup(&f.guild_id, &f.user_id),
                }),
                meta: TraceMeta {
                    trace_id: command.meta.trace_id.clone(),
                    sent_at: clock::now_rfc3339(),
                    request_id: None,
                    actor: None,
                    access: None,
                    extra: Default::default(),
                },
            }
            .to_json()
        }),
        _ => None,
    };
    let echo = match (&mode, &command.body) {
        (ReplyMode::AckAndEcho, CommandBody::SendMessage(m)) => Some(
            GatewayEvent {
                body: message(
                    &clock::new_trace_id()[..16],
                    &m.channel_id,
                    &match shared.echo_content.lock().as_ref() {
                        Some(rewrite) => rewrite(&m.content),
                        None => m.content.clone(),
                    },
                ),
                meta: TraceMeta {
                    trace_id: command.meta.trace_id.clone(),
                    sent_at: clock::now_rfc3339(),
                    request_id: None,
                    actor: None,
                    access: None,
                    extra: Default::default(),
                },
            }
            .to_json(),
        ),
        _ => None,
    };
    let _ = shared.commands_tx.send(command);
    let body = match mode {
        ReplyMode::Ack | ReplyMode::AckAndEcho => EventBody::Ack(Ack {}),
        ReplyMode::RateLimited {
            retry_after_ms,
            global,
        } => EventBody::RateLimited(RateLimited {
            retry_after_ms,
            global,
        }),
        ReplyMode::Error { code, message } => EventBody::Error(ErrorData {
            code,
            message,
            request_id: meta.request_id.clone(),
        }),
        ReplyMode::Silent => return None,
    };
    let after_broadcast = member.is_some();
    if let Some(member) = member {
        broadcast(shared, member);
    }
    if let Some(echo) = echo {
        broadcast(shared, echo);
    }
    Some(Reply {
        text: GatewayEvent { body, meta }.to_json(),
        after_broadcast,
    })
}
