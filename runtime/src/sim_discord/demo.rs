//! Demo mode: a background thread that plays a small, lively guild from a seeded
//! RNG. Every pause (drawn from [`super::SimConfig::demo_interval`]) someone chats —
//! TYPING_START first, the message a moment later, sometimes a reaction from someone
//! else after that — or reacts to a recent message, or joins, leaves or switches
//! voice channels. The thread sleeps on its stop channel until the next action is due.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{ids, Shared, State};

const USERS: [&str; 5] = [ids::ADA, ids::LINUS, ids::GRACE, ids::KEN, ids::MARGARET];
const VOICE: [&str; 2] = [ids::LOBBY, ids::RAID];
const EMOJI: [&str; 3] = ["👍", "🎉", "🔥"];

const GENERAL_LINES: [&str; 14] = [
    "good morning everyone ☀️",
    "has anyone tried the new build yet?",
    "coffee break, back in 5",
    "the deploy went fine 🎉",
    "who's up for a game tonight?",
    "I pushed a fix for the flaky test",
    "lunch anyone?",
    "that's a great point",
    "brb",
    "reviewing your PR now",
    "works on my machine 😅",
    "ship it!",
    "the dashboard looks so much faster now",
    "can someone pair with me on the parser?",
];

const GAME_LINES: [&str; 12] = [
    "gg!",
    "one more round?",
    "hop into Raid, we're starting",
    "who has the map?",
    "lag is terrible today",
    "nice shot!",
    "I'll heal, you tank",
    "loot split evenly?",
    "respawning…",
    "let's go again",
    "that boss is impossible 😤",
    "new high score!",
];

enum Action {
    Typing {
        user: &'static str,
        channel: &'static str,
    },
    Message {
        user: &'static str,
        channel: &'static str,
        text: &'static str,
    },
    /// React to the newest message not written by `user`.
    React {
        user: &'static str,
        emoji: &'static str,
    },
    /// Join a voice channel, or leave or switch if already in one.
    Voice { user: &'static str },
}

pub(super) fn run(shared: Arc<Shared>, stop: Receiver<()>) {
    // A separate stream from the state's RNG, so gateway traffic does not change the script.
    let mut rng = StdRng::seed_from_u64(shared.config.seed ^ 0x0de3_0de3);
    let (min, max) = shared.config.demo_interval;
    // A zero pause would spin; 10 ms is already far livelier than any human guild.
    let min = min.max(Duration::from_millis(10));
    let max = max.max(min);
    let mut agenda: Vec<(Instant, Action)> = Vec::new();
    // The first action comes early so a fresh page does not look dead.
    let mut next_plan = Instant::now() + min.mul_f64(rng.random_range(0.2..0.5));
    loop {
        let due = agenda.iter().map(|a| a.0).fold(next_plan, Instant::min);
        match stop.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            // Stopped (the sender is dropped at shutdown).
            _ => return,
        }
        let now = Instant::now();
        if now >= next_plan {
            plan(&mut rng, &mut agenda, now, min);
            next_plan = now + pause(&mut rng, min, max);
        }
        agenda.sort_by_key(|a| a.0);
        let ready = agenda.iter().take_while(|a| a.0 <= now).count();
        if ready > 0 {
            let mut st = shared.state.lock();
            for (_, action) in agenda.drain(..ready) {
                perform(&mut st, &mut rng, action);
            }
        }
    }
}

fn pause(rng: &mut StdRng, min: Duration, max: Duration) -> Duration {
    if max > min {
        rng.random_range(min..=max)
    } else {
        min
    }
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    *items.choose(rng).expect("demo lists are not empty")
}

fn plan(rng: &mut StdRng, agenda: &mut Vec<(Instant, Action)>, now: Instant, min: Duration) {
    let user = pick(rng, &USERS);
    let roll = rng.random_range(0..100);
    if roll < 55 {
        let (channel, lines) = if rng.random_bool(0.6) {
            (ids::GENERAL, &GENERAL_LINES[..])
        } else {
            (ids::GAME_ROOM, &GAME_LINES[..])
        };
        let text = pick(rng, lines);
        let sent = now + min.mul_f64(rng.random_range(0.3..0.8));
        agenda.push((now, Action::Typing { user, channel }));
        agenda.push((
            sent,
            Action::Message {
                user,
                channel,
                text,
            },
        ));
        if rng.random_bool(0.35) {
            let other = pick(rng, &USERS);
            let emoji = pick(rng, &EMOJI);
            let at = sent + min.mul_f64(rng.random_range(0.2..0.6));
            if other != user {
                agenda.push((at, Action::React { user: other, emoji }));
            }
        }
    } else if roll < 70 {
        let emoji = pick(rng, &EMOJI);
        agenda.push((now, Action::React { user, emoji }));
    } else {
        agenda.push((now, Action::Voice { user }));
    }
}

fn perform(st: &mut State, rng: &mut StdRng, action: Action) {
    match action {
        Action::Typing { user, channel } => st.typing(user, channel),
        Action::Message {
            user,
            channel,
            text,
        } => {
            st.create_message(user, channel, text);
        }
        Action::React { user, emoji } => {
            let target = st
                .guild
                .messages
                .iter()
                .rev()
                .find(|m| m.author_id != user)
                .map(|m| (m.channel_id.clone(), m.id.clone()));
            if let Some((channel, message)) = target {
                st.add_reaction(
                    user,
                    &channel,
                    &message,
                    json!({ "id": null, "name": emoji }),
                );
            }
        }
        Action::Voice { user } => {
            let current = st.guild.voice.get(user).map(|v| v.channel_id.clone());
            match current {
                None => {
                    st.set_voice(user, Some(pick(rng, &VOICE)));
                }
                Some(_) if rng.random_bool(0.4) => {
                    st.set_voice(user, None);
                }
                Some(here) => {
                    let other = VOICE
                        .iter()
                        .copied()
                        .find(|c| *c != here)
                        .unwrap_or(ids::LOBBY);
                    st.set_voice(user, Some(other));
                }
            }
        }
    }
}
