//! A scripted [`CommandExecutor`]: the test gateway's command side, for tests of
//! the link server here and of the edge against a gateway that speaks the link
//! protocol (`LinkServer` + `ScriptedExecutor` is that test gateway).
//!
//! Per command type it answers `ack` (the default), `rateLimited` or `error`,
//! optionally after a delay (a slow REST call: the command is recorded when it
//! starts, the reply comes after the delay). It records every command it runs and
//! signals each on a channel, so tests wait on a signal rather than a sleep; and it
//! can echo each acknowledged `sendMessage` as a `messageCreate` broadcast carrying
//! the command's `traceId`, as Discord would, so a load test can time command → event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use relay_protocol::frame::{GatewayCommand, GatewayEvent, Reply, TraceMeta};
use relay_protocol::payload::{Author, CommandBody, EventBody, MessageCreate, Timestamp};

use super::{now_rfc3339, Broadcaster, CommandExecutor};

/// How one command type is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The reply.
    pub reply: Reply,
    /// How long the command "runs" before replying.
    pub delay: Duration,
}

impl Script {
    /// `ack` at once.
    pub fn ack() -> Self {
        Script {
            reply: Reply::Ack,
            delay: Duration::ZERO,
        }
    }

    /// `rateLimited` at once.
    pub fn rate_limited(retry_after_ms: u64, global: bool) -> Self {
        Script {
            reply: Reply::RateLimited {
                retry_after_ms,
                global,
            },
            delay: Duration::ZERO,
        }
    }

    /// `error` at once.
    pub fn error(code: &str, message: &str) -> Self {
        Script {
            reply: Reply::Error {
                code: code.into(),
                message: message.into(),
            },
            delay: Duration::ZERO,
        }
    }

    /// The same reply, after `delay`.
    pub fn after(self, delay: Duration) -> Self {
        Script { delay, ..self }
    }
}

/// The scripted executor. Share it as `Arc<ScriptedExecutor>`; pass a clone to
/// `LinkServer::start`.
pub struct ScriptedExecutor {
    scripts: Mutex<HashMap<String, Script>>,
    default: Mutex<Script>,
    received: Mutex<Vec<GatewayCommand>>,
    recording: AtomicBool,
    calls: AtomicU64,
    signal_tx: Sender<GatewayCommand>,
    signal_rx: Receiver<GatewayCommand>,
    echo: Mutex<Option<Broadcaster>>,
    next_message_id: AtomicU64,
}

impl ScriptedExecutor {
    /// Acks everything at once, records every command.
    pub fn new() -> Arc<Self> {
        let (signal_tx, signal_rx) = crossbeam_channel::unbounded();
        Arc::new(ScriptedExecutor {
            scripts: Mutex::new(HashMap::new()),
            default: Mutex::new(Script::ack()),
            received: Mutex::new(Vec::new()),
            recording: AtomicBool::new(true),
            calls: AtomicU64::new(0),
            signal_tx,
            signal_rx,
            echo: Mutex::new(None),
            next_message_id: AtomicU64::new(1_300_000_000_000_000_000),
        })
    }

    /// Answers commands of `command_type` (`sendMessage`, `voiceMove` …) with `script`.
    pub fn script(&self, command_type: &str, script: Script) {
        self.scripts.lock().insert(command_type.to_owned(), script);
    }

    /// Answers every command type without its own script with `script`.
    pub fn script_default(&self, script: Script) {
        *self.default.lock() = script;
    }

    /// Every command run so far, in the order they started.
    pub fn received(&self) -> Vec<GatewayCommand> {
        self.received.lock().clone()
    }

    /// How many commands ran (counted even when recording is off).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Acquire)
    }

    /// A receiver that gets each command as it starts running. All clones share
    /// one queue: use one consumer.
    pub fn signals(&self) -> Receiver<GatewayCommand> {
        self.signal_rx.clone()
    }

    /// Turns recording and signalling off (or on) so a long load test does not
    /// grow memory; [`ScriptedExecutor::calls`] still counts.
    pub fn set_recording(&self, on: bool) {
        self.recording.store(on, Ordering::Release);
    }

    /// Echoes each acknowledged `sendMessage` as a `messageCreate` broadcast
    /// through `to`, with the command's `traceId`.
    pub fn echo_messages(&self, to: Broadcaster) {
        *self.echo.lock() = Some(to);
    }

    fn echo(&self, command: &GatewayCommand) {
        let CommandBody::SendMessage(send) = &command.body else {
            return;
        };
        let Some(to) = self.echo.lock().clone() else {
            return;
        };
        let id = self.next_message_id.fetch_add(1, Ordering::Relaxed);
        let sent_at = now_rfc3339();
        let event = GatewayEvent {
            body: EventBody::MessageCreate(MessageCreate {
                id: id.to_string(),
                channel_id: send.channel_id.clone(),
                guild_id: None,
                author: Author {
                    id: "1000000000000000001".into(),
                    username: "relay-test".into(),
                    avatar: None,
                    bot: true,
                },
                content: send.content.clone(),
                timestamp: Timestamp::Text(sent_at.clone()),
                via: None,
            }),
            meta: TraceMeta {
                trace_id: command.meta.trace_id.clone(),
                sent_at,
                request_id: None,
                actor: None,
                access: None,
                extra: Default::default(),
            },
        };
        to.broadcast(&event);
    }
}

impl CommandExecutor for ScriptedExecutor {
    fn execute(&self, command: &GatewayCommand) -> Reply {
        self.calls.fetch_add(1, Ordering::AcqRel);
        if self.recording.load(Ordering::Acquire) {
            self.received.lock().push(command.clone());
            let _ = self.signal_tx.send(command.clone());
        }
        let script = self
            .scripts
            .lock()
            .get(command.body.type_name())
            .cloned()
            .unwrap_or_else(|| self.default.lock().clone());
        if !script.delay.is_zero() {
            // Stands in for REST latency; it runs on a command worker.
            std::thread::sleep(script.delay);
        }
        if script.reply == Reply::Ack {
            self.echo(command);
        }
        script.reply
    }
}
