//! The simulated gateway: one thread accepts, one thread per connection speaks
//! Gateway v10 (hello, heartbeat ACKs, identify → READY + GUILD_CREATE, resume →
//! replay + RESUMED, close codes), and the session table that gives every dispatch
//! its per-session sequence number and keeps a bounded history for resumes.
//!
//! Dispatches reach a connection through its channel (ordered with the control
//! commands: reconnect, invalid session, close, drop), and a [`Waker`] interrupts the
//! connection thread's `epoll` wait, so nothing polls on a timer.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use serde_json::{json, Value};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};

use super::{ids, intents, spawn, Shared};
use crate::ws_io::{self, Incoming, Waker, WsConn};

/// Gateway payloads kept for [`super::SimDiscord::received_ops`].
const MAX_RECEIVED: usize = 10_000;
/// Sessions without a connection kept for resumes; the oldest go first.
const MAX_DETACHED_SESSIONS: usize = 64;
/// Discord closes with 4002 on client frames larger than this.
const MAX_CLIENT_FRAME: usize = 4096;
/// Discord's send limit: 120 payloads per connection per 60 s, else 4008.
const SEND_LIMIT: u32 = 120;
const SEND_WINDOW: Duration = Duration::from_secs(60);
/// How long a close waits for the peer's close frame before dropping the socket.
const CLOSE_GRACE: Duration = Duration::from_millis(250);
/// A client that opens TCP but never finishes the upgrade is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// What other threads ask a connection thread to do.
enum ConnCmd {
    /// Write this text frame.
    Text(Arc<str>),
    /// Send a close frame with this code and reason, then end.
    Close(u16, &'static str),
    /// Drop TCP without a close frame.
    Drop,
}

pub(super) struct ConnEntry {
    tx: Sender<ConnCmd>,
    waker: Waker,
    /// The session this connection identified or resumed into.
    session: Option<String>,
}

impl ConnEntry {
    fn send(&self, cmd: ConnCmd) {
        if self.tx.send(cmd).is_ok() {
            self.waker.wake();
        }
    }
}

pub(super) struct Session {
    seq: u64,
    intents: u64,
    history: VecDeque<(u64, Arc<str>)>,
    conn: Option<u64>,
    /// Creation order, to evict the oldest detached session first.
    created: u64,
}

#[derive(Default)]
pub(super) struct GatewayState {
    pub(super) sessions: HashMap<String, Session>,
    pub(super) conns: HashMap<u64, ConnEntry>,
    next_conn: u64,
    sessions_created: u64,
    pub(super) identifies: u64,
    pub(super) resumes: u64,
    pub(super) heartbeats: u64,
    pub(super) last_resume: Option<(String, u64)>,
    pub(super) total_connections: u64,
    pub(super) urls: Vec<String>,
    pub(super) received: VecDeque<Value>,
}

/// Why a resume was refused.
enum ResumeRefused {
    /// Unknown session, or its history no longer reaches back to `seq`: op 9 `false`.
    Unknown,
    /// `seq` is ahead of the session: close 4007.
    BadSeq,
}

impl GatewayState {
    /// Sends a dispatch to every session.
    pub(super) fn dispatch_all(&mut self, name: &str, data: &Value, cap: usize) {
        for session in self.sessions.values_mut() {
            push_dispatch(session, &self.conns, name, data, cap);
        }
    }

    fn dispatch_to(&mut self, session_id: &str, name: &str, data: &Value, cap: usize) {
        if let Some(session) = self.sessions.get_mut(session_id) {
            push_dispatch(session, &self.conns, name, data, cap);
        }
    }

    /// Sends a non-dispatch op to every connection (or only identified ones).
    pub(super) fn broadcast_op(&self, op: u8, d: Value, identified_only: bool) {
        let text: Arc<str> = frame(op, d, None, None).into();
        for conn in self.conns.values() {
            if !identified_only || conn.session.is_some() {
                conn.send(ConnCmd::Text(text.clone()));
            }
        }
    }

    pub(super) fn forget_all_sessions(&mut self) {
        self.sessions.clear();
        for conn in self.conns.values_mut() {
            conn.session = None;
        }
    }

    pub(super) fn close_all(&mut self, code: u16) {
        let ends_session = matches!(code, 4003 | 4004 | 4007 | 4009..=4014);
        let mut ended = Vec::new();
        for conn in self.conns.values_mut() {
            if ends_session {
                ended.extend(conn.session.take());
            }
            conn.send(ConnCmd::Close(code, "closed by the simulator"));
        }
        for sid in ended {
            self.sessions.remove(&sid);
        }
    }

    pub(super) fn drop_all(&self) {
        for conn in self.conns.values() {
            conn.send(ConnCmd::Drop);
        }
    }

    /// Called with the state lock held after `stopping` is set: every registered
    /// connection ends, and any registering later sees `stopping`.
    pub(super) fn shutdown_all(&self) {
        self.drop_all();
    }

    fn register(&mut self, entry: ConnEntry, target: &str) -> u64 {
        self.next_conn += 1;
        self.total_connections += 1;
        if self.urls.len() >= MAX_RECEIVED {
            self.urls.remove(0);
        }
        self.urls.push(target.to_owned());
        self.conns.insert(self.next_conn, entry);
        self.next_conn
    }

    /// Forgets a finished connection. A client close with 1000/1001 ends its session,
    /// as on Discord; any other end (another code, a close frame without a code, a bare
    /// TCP drop) keeps it resumable.
    fn unregister(&mut self, id: u64, peer_close: Option<u16>) {
        let Some(entry) = self.conns.remove(&id) else {
            return;
        };
        if let Some(sid) = entry.session {
            if matches!(peer_close, Some(1000 | 1001)) {
                self.sessions.remove(&sid);
            } else if let Some(s) = self.sessions.get_mut(&sid) {
                if s.conn == Some(id) {
                    s.conn = None;
                }
            }
        }
        self.evict_detached();
    }

    fn evict_detached(&mut self) {
        let mut detached: Vec<(u64, String)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.conn.is_none())
            .map(|(id, s)| (s.created, id.clone()))
            .collect();
        if detached.len() > MAX_DETACHED_SESSIONS {
            detached.sort_unstable();
            let excess = detached.len() - MAX_DETACHED_SESSIONS;
            for (_, sid) in detached.into_iter().take(excess) {
                self.sessions.remove(&sid);
            }
        }
    }

    fn record(&mut self, payload: Value) {
        if self.received.len() >= MAX_RECEIVED {
            self.received.pop_front();
        }
        self.received.push_back(payload);
    }

    fn identified(&self, conn: u64) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.session.is_some())
    }

    fn remove_session(&mut self, sid: &str) {
        if let Some(s) = self.sessions.remove(sid) {
            if let Some(conn) = s.conn.and_then(|c| self.conns.get_mut(&c)) {
                conn.session = None;
            }
        }
    }

    fn new_session(&mut self, sid: &str, intents: u64, conn: u64) {
        self.sessions_created += 1;
        self.sessions.insert(
            sid.to_owned(),
            Session {
                seq: 0,
                intents,
                history: VecDeque::new(),
                conn: Some(conn),
                created: self.sessions_created,
            },
        );
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(sid.to_owned());
        }
    }

    /// Attaches `sid` to `conn`, queues every dispatch after `seq` and then RESUMED.
    fn resume(&mut self, sid: &str, seq: u64, conn: u64, cap: usize) -> Result<(), ResumeRefused> {
        let Some(session) = self.sessions.get(sid) else {
            return Err(ResumeRefused::Unknown);
        };
        if seq > session.seq {
            self.remove_session(sid);
            return Err(ResumeRefused::BadSeq);
        }
        let oldest = session.history.front().map_or(session.seq + 1, |h| h.0);
        if seq + 1 < oldest {
            self.remove_session(sid);
            return Err(ResumeRefused::Unknown);
        }
        let GatewayState {
            sessions, conns, ..
        } = self;
        let Some(session) = sessions.get_mut(sid) else {
            return Err(ResumeRefused::Unknown);
        };
        if let Some(old) = session.conn.replace(conn) {
            if let Some(old) = conns.get_mut(&old).filter(|_| old != conn) {
                old.session = None;
            }
        }
        if let Some(entry) = conns.get_mut(&conn) {
            entry.session = Some(sid.to_owned());
            for (_, text) in session.history.iter().filter(|h| h.0 > seq) {
                entry.send(ConnCmd::Text(text.clone()));
            }
        }
        push_dispatch(session, conns, "RESUMED", &json!({}), cap);
        self.resumes += 1;
        self.last_resume = Some((sid.to_owned(), seq));
        Ok(())
    }
}

/// Gives a dispatch the session's next `s`, keeps it for resume, and sends it if
/// the session has a connection. Skipped when the session's intents exclude it.
fn push_dispatch(
    session: &mut Session,
    conns: &HashMap<u64, ConnEntry>,
    name: &str,
    data: &Value,
    cap: usize,
) {
    if required_intent(name, data).is_some_and(|bit| session.intents & bit == 0) {
        return;
    }
    let d = visible_data(session.intents, name, data);
    session.seq += 1;
    let text: Arc<str> = frame(0, d.into_owned(), Some(session.seq), Some(name)).into();
    if session.history.len() >= cap {
        session.history.pop_front();
    }
    session.history.push_back((session.seq, text.clone()));
    if let Some(conn) = session.conn.and_then(|c| conns.get(&c)) {
        conn.send(ConnCmd::Text(text));
    }
}

fn frame(op: u8, d: Value, s: Option<u64>, t: Option<&str>) -> String {
    json!({ "op": op, "d": d, "s": s, "t": t }).to_string()
}

/// The intent an event needs, as Discord filters them; `None` for events every
/// session gets (READY, RESUMED, and names the simulator does not know).
fn required_intent(name: &str, data: &Value) -> Option<u64> {
    let dm = data.get("guild_id").is_none_or(Value::is_null);
    Some(match name {
        "GUILD_CREATE"
        | "GUILD_UPDATE"
        | "GUILD_DELETE"
        | "GUILD_ROLE_CREATE"
        | "GUILD_ROLE_UPDATE"
        | "GUILD_ROLE_DELETE"
        | "CHANNEL_CREATE"
        | "CHANNEL_UPDATE"
        | "CHANNEL_DELETE"
        | "CHANNEL_PINS_UPDATE"
        | "THREAD_CREATE"
        | "THREAD_UPDATE"
        | "THREAD_DELETE"
        | "STAGE_INSTANCE_CREATE"
        | "STAGE_INSTANCE_UPDATE"
        | "STAGE_INSTANCE_DELETE" => intents::GUILDS,
        // "Guild Member Update is sent for current-user updates regardless of
        // whether the GUILD_MEMBERS intent is set" (gateway.mdx, Caveats).
        "GUILD_MEMBER_UPDATE" if data["user"]["id"] == ids::BOT_USER => return None,
        "GUILD_MEMBER_ADD" | "GUILD_MEMBER_UPDATE" | "GUILD_MEMBER_REMOVE" => {
            intents::GUILD_MEMBERS
        }
        "VOICE_STATE_UPDATE" | "VOICE_CHANNEL_EFFECT_SEND" => intents::GUILD_VOICE_STATES,
        "PRESENCE_UPDATE" => intents::GUILD_PRESENCES,
        "MESSAGE_CREATE" | "MESSAGE_UPDATE" | "MESSAGE_DELETE" | "MESSAGE_DELETE_BULK" => {
            if dm {
                1 << 12
            } else {
                intents::GUILD_MESSAGES
            }
        }
        "MESSAGE_REACTION_ADD"
        | "MESSAGE_REACTION_REMOVE"
        | "MESSAGE_REACTION_REMOVE_ALL"
        | "MESSAGE_REACTION_REMOVE_EMOJI" => {
            if dm {
                1 << 13
            } else {
                intents::GUILD_MESSAGE_REACTIONS
            }
        }
        "TYPING_START" => {
            if dm {
                1 << 14
            } else {
                intents::GUILD_MESSAGE_TYPING
            }
        }
        _ => return None,
    })
}

/// Without MESSAGE_CONTENT, Discord empties content, embeds, attachments and
/// components — except in the bot's own messages and messages that mention it.
fn visible_data<'a>(session_intents: u64, name: &str, data: &'a Value) -> Cow<'a, Value> {
    if session_intents & intents::MESSAGE_CONTENT != 0
        || !matches!(name, "MESSAGE_CREATE" | "MESSAGE_UPDATE")
    {
        return Cow::Borrowed(data);
    }
    let by_bot = data["author"]["id"] == ids::BOT_USER;
    let mentions_bot = data["mentions"]
        .as_array()
        .is_some_and(|m| m.iter().any(|u| u["id"] == ids::BOT_USER));
    if by_bot || mentions_bot {
        return Cow::Borrowed(data);
    }
    let mut d = data.clone();
    if let Some(obj) = d.as_object_mut() {
        if obj.contains_key("content") {
            obj.insert("content".into(), json!(""));
        }
        for key in ["embeds", "attachments", "components"] {
            if obj.contains_key(key) {
                obj.insert(key.into(), json!([]));
            }
        }
        obj.remove("poll");
    }
    Cow::Owned(d)
}

/// Checks the connect URL's query: `v=10` (else 4012) and `encoding=json`, no
/// `compress` (else 4002).
fn check_query(target: &str) -> Option<(u16, &'static str)> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let (mut v, mut encoding, mut compress) = (None, None, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "v" => v = Some(value),
            "encoding" => encoding = Some(value),
            "compress" => compress = true,
            _ => {}
        }
    }
    if v != Some("10") {
        Some((4012, "Invalid API version"))
    } else if encoding != Some("json") {
        Some((
            4002,
            "Decode error: the simulator speaks encoding=json only",
        ))
    } else if compress {
        Some((4002, "Decode error: the simulator does not compress"))
    } else {
        None
    }
}

/// Accepts gateway connections until the simulator stops.
pub(super) fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("sim gateway accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let sh = shared.clone();
        match spawn("sim-discord-conn", move || serve(sh, stream)) {
            Ok(handle) => {
                let mut threads = shared.conn_threads.lock();
                threads.retain(|t| !t.is_finished());
                threads.push(handle);
            }
            Err(e) => log::warn!("sim gateway: cannot spawn a connection thread: {e}"),
        }
    }
}

/// How a connection ended.
enum Exit {
    /// The peer sent a close frame (with its code, if any).
    PeerClosed(Option<u16>),
    /// We closed, dropped, or the socket broke.
    Ended,
}

fn serve(shared: Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    if stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT)).is_err()
    {
        return;
    }
    let Ok(raw) = stream.try_clone() else {
        return;
    };
    let mut target = String::new();
    // The signature is tungstenite's `Callback`; the error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        target = req.uri().to_string();
        Ok(resp)
    };
    let Ok(ws) = tungstenite::accept_hdr_with_config(stream, callback, Some(ws_io::ws_config()))
    else {
        return;
    };
    let Ok(ws) = WsConn::from_server(ws) else {
        return;
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    let entry = ConnEntry {
        tx,
        waker: ws.waker(),
        session: None,
    };
    let id = shared.state.lock().gw.register(entry, &target);
    let mut conn = Conn {
        shared,
        id,
        ws,
        rx,
        raw,
        closing: None,
        window: (Instant::now(), 0),
    };
    let exit = if conn.shared.stopping.load(Ordering::SeqCst) {
        Exit::Ended
    } else {
        conn.run(&target)
    };
    let peer_close = match exit {
        Exit::PeerClosed(code) => code,
        Exit::Ended => None,
    };
    conn.shared.state.lock().gw.unregister(id, peer_close);
}

struct Conn {
    shared: Arc<Shared>,
    id: u64,
    ws: WsConn,
    rx: Receiver<ConnCmd>,
    /// A second handle on the socket, to drop TCP without a close frame.
    raw: TcpStream,
    /// Set once we sent a close frame: when to give up waiting for the reply.
    closing: Option<Instant>,
    /// Start of the current send-limit window and payloads received in it.
    window: (Instant, u32),
}

impl Conn {
    fn run(&mut self, target: &str) -> Exit {
        match check_query(target) {
            Some((code, reason)) => self.close(code, reason),
            None => {
                let interval = self.shared.config.heartbeat_interval.as_millis() as u64;
                let hello = frame(10, json!({ "heartbeat_interval": interval }), None, None);
                self.send(hello);
            }
        }
        loop {
            loop {
                match self.rx.try_recv() {
                    Ok(ConnCmd::Text(text)) => {
                        if self.closing.is_none() {
                            self.send(text.to_string());
                        }
                    }
                    Ok(ConnCmd::Close(code, reason)) => self.close(code, reason),
                    Ok(ConnCmd::Drop) | Err(TryRecvError::Disconnected) => {
                        let _ = self.raw.shutdown(Shutdown::Both);
                        return Exit::Ended;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            loop {
                match self.ws.read() {
                    Ok(Some(Incoming::Text(text))) => {
                        if self.closing.is_none() {
                            self.on_text(&text);
                        }
                    }
                    Ok(Some(Incoming::Pong(_))) => {}
                    Ok(Some(Incoming::Closed(code))) => {
                        // Let tungstenite write its reply to the peer's close frame.
                        let _ = self.ws.flush();
                        return if self.closing.is_some() {
                            Exit::Ended
                        } else {
                            Exit::PeerClosed(code)
                        };
                    }
                    Ok(None) => break,
                    Err(_) => return Exit::Ended,
                }
            }
            let timeout = match self.closing {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Exit::Ended,
                },
                None => None,
            };
            if self.ws.wait(timeout).is_err() {
                return Exit::Ended;
            }
        }
    }

    fn send(&mut self, text: String) {
        if self.ws.send_text(text).is_err() {
            // The read side sees the broken socket next and ends the connection.
            let _ = self.raw.shutdown(Shutdown::Both);
        }
    }

    fn close(&mut self, code: u16, reason: &str) {
        if self.closing.is_none() {
            self.ws.close(code, reason);
            self.closing = Some(Instant::now() + CLOSE_GRACE);
        }
    }

    fn on_text(&mut self, text: &str) {
        let now = Instant::now();
        if now.duration_since(self.window.0) >= SEND_WINDOW {
            self.window = (now, 0);
        }
        self.window.1 += 1;
        let parsed = serde_json::from_str::<Value>(text).ok();
        self.shared
            .state
            .lock()
            .gw
            .record(parsed.clone().unwrap_or_else(|| json!(text)));
        if self.window.1 > SEND_LIMIT {
            return self.close(4008, "Rate limited.");
        }
        if text.len() > MAX_CLIENT_FRAME {
            return self.close(4002, "Decode error: payload larger than 4096 bytes");
        }
        let Some(payload) = parsed else {
            return self.close(4002, "Decode error");
        };
        let Some(op) = payload.get("op").and_then(Value::as_u64) else {
            return self.close(4001, "Unknown opcode");
        };
        let d = payload.get("d").cloned().unwrap_or(Value::Null);
        match op {
            1 => self.on_heartbeat(),
            2 => self.on_identify(&d),
            6 => self.on_resume(&d),
            3 | 4 | 8 | 31 | 43 => {
                if !self.shared.state.lock().gw.identified(self.id) {
                    self.close(4003, "Not authenticated.");
                }
            }
            _ => self.close(4001, "Unknown opcode"),
        }
    }

    fn on_heartbeat(&mut self) {
        self.shared.state.lock().gw.heartbeats += 1;
        if self.shared.ack_heartbeats.load(Ordering::SeqCst) {
            self.send(frame(11, Value::Null, None, None));
        }
    }

    fn token_ok(&self, token: &Value) -> bool {
        let expected = self.shared.config.token.as_str();
        token
            .as_str()
            .is_some_and(|t| t == expected || t.strip_prefix("Bot ") == Some(expected))
    }

    fn on_identify(&mut self, d: &Value) {
        if self.shared.state.lock().gw.identified(self.id) {
            return self.close(4005, "Already authenticated.");
        }
        if !self.token_ok(&d["token"]) {
            return self.close(4004, "Authentication failed.");
        }
        let Some(wanted) = d["intents"].as_u64() else {
            return self.close(4013, "Invalid intent(s).");
        };
        if wanted & !intents::VALID != 0 {
            return self.close(4013, "Invalid intent(s).");
        }
        if wanted & intents::PRIVILEGED & !self.shared.config.allowed_privileged_intents != 0 {
            return self.close(4014, "Disallowed intent(s).");
        }
        let shared = self.shared.clone();
        let mut guard = shared.state.lock();
        let st = &mut *guard;
        let sid = st.random_hex32();
        let mut ready = json!({
            "v": 10,
            "user": st.guild.user(ids::BOT_USER).map(|u| st.guild.user_json(u)),
            "guilds": [{ "id": ids::GUILD, "unavailable": true }],
            "session_id": sid,
            "resume_gateway_url": shared.resume_url,
            "session_type": "normal",
            "application": { "id": ids::BOT_USER, "flags": 0 },
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "geo_ordered_rtc_regions": [],
        });
        if let Some(shard) = d.get("shard").filter(|s| s.is_array()) {
            ready["shard"] = shard.clone();
        }
        // Without GUILD_PRESENCES, `members` is only the bot and members in voice.
        let guild_create = st
            .guild
            .guild_create(wanted & intents::GUILD_PRESENCES != 0);
        st.gw.identifies += 1;
        st.gw.new_session(&sid, wanted, self.id);
        st.gw.dispatch_to(&sid, "READY", &ready, st.history_cap);
        st.gw
            .dispatch_to(&sid, "GUILD_CREATE", &guild_create, st.history_cap);
    }

    fn on_resume(&mut self, d: &Value) {
        if self.shared.state.lock().gw.identified(self.id) {
            return self.close(4005, "Already authenticated.");
        }
        if !self.token_ok(&d["token"]) {
            return self.close(4004, "Authentication failed.");
        }
        let sid = d["session_id"].as_str().unwrap_or_default();
        let seq = d["seq"].as_u64().unwrap_or(0);
        let refused = {
            let mut st = self.shared.state.lock();
            let cap = st.history_cap;
            st.gw.resume(sid, seq, self.id, cap).err()
        };
        match refused {
            None => {}
            Some(ResumeRefused::Unknown) => self.send(frame(9, json!(false), None, None)),
            Some(ResumeRefused::BadSeq) => self.close(4007, "Invalid seq."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_needs_version_10_and_json() {
        assert_eq!(check_query("/?v=10&encoding=json"), None);
        assert_eq!(check_query("/resume?encoding=json&v=10"), None);
        assert_eq!(check_query("/?v=9&encoding=json").map(|c| c.0), Some(4012));
        assert_eq!(check_query("/").map(|c| c.0), Some(4012));
        assert_eq!(check_query("/?v=10&encoding=etf").map(|c| c.0), Some(4002));
        assert_eq!(
            check_query("/?v=10&encoding=json&compress=zlib-stream").map(|c| c.0),
            Some(4002)
        );
    }

    #[test]
    fn intents_gate_events_by_guild_or_dm() {
        let guild = json!({ "guild_id": "1" });
        let dm = json!({});
        assert_eq!(
            required_intent("MESSAGE_CREATE", &guild),
            Some(intents::GUILD_MESSAGES)
        );
        assert_eq!(required_intent("MESSAGE_CREATE", &dm), Some(1 << 12));
        assert_eq!(
            required_intent("VOICE_STATE_UPDATE", &guild),
            Some(intents::GUILD_VOICE_STATES)
        );
        assert_eq!(required_intent("READY", &dm), None);
        let member = |id: &str| json!({ "guild_id": "1", "user": { "id": id } });
        assert_eq!(
            required_intent("GUILD_MEMBER_UPDATE", &member("5")),
            Some(intents::GUILD_MEMBERS)
        );
        assert_eq!(
            required_intent("GUILD_MEMBER_UPDATE", &member(ids::BOT_USER)),
            None,
            "the bot's own member updates pass without GUILD_MEMBERS"
        );
        assert_eq!(required_intent("SOMETHING_NEW", &guild), None);
    }

    #[test]
    fn content_is_emptied_without_message_content_except_own_or_mentions() {
        let msg = |author: &str, mentions: Value| json!({ "author": { "id": author }, "content": "hi", "embeds": [1], "mentions": mentions, "guild_id": "1" });
        let other = msg("5", json!([]));
        let no_content = intents::RELAY & !intents::MESSAGE_CONTENT;
        let seen = visible_data(no_content, "MESSAGE_CREATE", &other);
        assert_eq!(seen["content"], "");
        assert_eq!(seen["embeds"], json!([]));
        assert_eq!(
            visible_data(intents::RELAY, "MESSAGE_CREATE", &other)["content"],
            "hi"
        );
        let own = msg(ids::BOT_USER, json!([]));
        assert_eq!(
            visible_data(no_content, "MESSAGE_CREATE", &own)["content"],
            "hi"
        );
        let mention = msg("5", json!([{ "id": ids::BOT_USER }]));
        assert_eq!(
            visible_data(no_content, "MESSAGE_UPDATE", &mention)["content"],
            "hi"
        );
    }
}
