//! Demo mode: a background thread that plays a small, lively guild from a seeded
//! RNG. Every pause (drawn from [`super::SimConfig::demo_interval`]) someone chats —
//! TYPING_START first, the message a moment later, sometimes a reaction from someone
//! else after that — or reacts to a recent message, or joins, leaves or switches
//! voice channels. Everyone acts only where Discord would let them: chat where they
//! may send (`#moderators` for those who may, nothing while timed out), react where
//! they may react, join voice channels they may connect to.
//!
//! Beside that, every [`super::SimConfig::demo_role_period`] Ada gains or loses the
//! Moderator role (so `#moderators` appears and disappears for the demo page,
//! signed in as Ada), and every second period Ken is timed out again for 1.5
//! periods; between, his timeout runs out silently, as on Discord.
//!
//! The thread sleeps on its stop channel until the next action is due.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{ids, perms, unix_ms, Shared, SimConfig, State};

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

const THREAD_LINES: [&str; 6] = [
    "draft notes are in the doc",
    "can we cut the release on Friday?",
    "the changelog needs one more entry",
    "QA signed off 👍",
    "moving the freeze to Thursday",
    "who owns the migration step?",
];

const MOD_LINES: [&str; 6] = [
    "heads up: a spam wave hit #general earlier",
    "I'll take the next shift",
    "can someone check the reports queue?",
    "pinned the rules again",
    "new member questions in #general, anyone?",
    "let's keep #announcements for releases only",
];

/// Where demo users chat, with the weight of each (out of 100) and its lines.
const CHAT: [(&str, u32, &[&str]); 4] = [
    (ids::GENERAL, 45, &GENERAL_LINES),
    (ids::GAME_ROOM, 30, &GAME_LINES),
    (ids::RELEASE_THREAD, 10, &THREAD_LINES),
    (ids::MODERATORS, 15, &MOD_LINES),
];

/// How long each demo timeout of Ken lasts: 1.5 role periods (so it runs out half
/// a period before the next one starts).
pub(super) fn timeout_length(config: &SimConfig) -> Duration {
    config.demo_role_period.mul_f64(1.5)
}

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
    // A zero period would spin like a zero pause.
    let period = shared
        .config
        .demo_role_period
        .max(Duration::from_millis(10));
    let mut next_roles = Instant::now() + period;
    let mut tick: u64 = 0;
    loop {
        let due = agenda
            .iter()
            .map(|a| a.0)
            .fold(next_plan.min(next_roles), Instant::min);
        match stop.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            // Stopped (the sender is dropped at shutdown).
            _ => return,
        }
        let now = Instant::now();
        if now >= next_roles {
            tick += 1;
            roles_tick(&mut shared.state.lock(), tick, &shared.config);
            next_roles += period;
        }
        if now >= next_plan {
            plan(&shared.state.lock(), &mut rng, &mut agenda, now, min);
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

/// Odd ticks make Ada a Moderator, even ones take it back and time Ken out again.
fn roles_tick(st: &mut State, tick: u64, config: &SimConfig) {
    if let Some(ada) = st.guild.user(ids::ADA) {
        let mut roles: Vec<&str> = ada
            .roles
            .iter()
            .map(String::as_str)
            .filter(|r| *r != ids::ROLE_MODERATOR)
            .collect();
        if tick % 2 == 1 {
            roles.push(ids::ROLE_MODERATOR);
        }
        let roles: Vec<String> = roles.into_iter().map(str::to_owned).collect();
        let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
        let change = st.guild.set_member_roles(ids::ADA, &roles);
        st.apply(change);
    }
    if tick % 2 == 0 {
        let until = unix_ms() + timeout_length(config).as_millis() as u64;
        let change = st.guild.set_timeout(ids::KEN, Some(until));
        st.apply(change);
    }
}

/// Whether `user` may do all of `need` in `channel` now.
fn may(st: &State, user: &str, channel: &str, need: u64) -> bool {
    st.guild.permissions(user, channel, unix_ms()) & need == need
}

fn send_permission(channel: &str) -> u64 {
    if channel == ids::RELEASE_THREAD {
        perms::SEND_MESSAGES_IN_THREADS
    } else {
        perms::SEND_MESSAGES
    }
}

fn plan(
    st: &State,
    rng: &mut StdRng,
    agenda: &mut Vec<(Instant, Action)>,
    now: Instant,
    min: Duration,
) {
    let user = pick(rng, &USERS);
    let roll = rng.random_range(0..100);
    if roll < 55 {
        let open: Vec<_> = CHAT
            .iter()
            .filter(|(c, _, _)| may(st, user, c, send_permission(c)))
            .collect();
        let total: u32 = open.iter().map(|c| c.1).sum();
        if total == 0 {
            // Timed out, say: nothing to say anywhere.
            return;
        }
        let mut at = rng.random_range(0..total);
        let Some(&&(channel, _, lines)) = open.iter().find(|c| {
            let here = at < c.1;
            at = at.saturating_sub(c.1);
            here
        }) else {
            return;
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
        // Checked again when done: a timeout or a role may have come in between.
        Action::Typing { user, channel } => {
            if may(st, user, channel, send_permission(channel)) {
                st.typing(user, channel);
            }
        }
        Action::Message {
            user,
            channel,
            text,
        } => {
            if may(st, user, channel, send_permission(channel)) {
                st.create_message(user, channel, text);
            }
        }
        Action::React { user, emoji } => {
            let need = perms::READ_MESSAGE_HISTORY | perms::ADD_REACTIONS;
            let target = st
                .guild
                .messages
                .iter()
                .rev()
                .find(|m| m.author_id != user && may(st, user, &m.channel_id, need))
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
            let open: Vec<&str> = VOICE
                .iter()
                .copied()
                .filter(|c| may(st, user, c, perms::VIEW_CHANNEL | perms::CONNECT))
                .collect();
            match current {
                None if open.is_empty() => {}
                None => {
                    st.set_voice(user, Some(pick(rng, &open)));
                }
                Some(_) if rng.random_bool(0.4) => {
                    st.set_voice(user, None);
                }
                Some(here) => {
                    if let Some(other) = open.iter().copied().find(|c| *c != here) {
                        st.set_voice(user, Some(other));
                    }
                }
            }
        }
    }
}
