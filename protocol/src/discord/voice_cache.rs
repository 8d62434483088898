//! Who is in which voice channel, per guild, and the join/leave/move events that
//! keep a browser's copy of it right.
//!
//! Discord's VOICE_STATE_UPDATE carries only the *new* state (reference/discord.md §3),
//! so a join, a leave and a move can only be told apart by comparing with what was
//! known before. This cache holds `(guild_id, user_id) → channel` seeded from
//! GUILD_CREATE and turns every change into [`VoiceChange`]s.
//!
//! # The invariant
//!
//! Browsers build their voice view from the snapshot they got with `ready`
//! ([`VoiceCache::snapshot`]) plus every `voice.joined` / `voice.left` the cache
//! emitted since. So the cache keeps one promise: *replaying its emitted changes
//! with [`VoiceSnapshot::apply_joined`] / [`VoiceSnapshot::apply_left`] onto the
//! snapshot taken before gives exactly the snapshot after* (same members, same
//! order). Everything below follows from that:
//! - A member's name and avatar are those of their join; a mute or profile change
//!   while staying in the channel emits nothing, so it changes nothing here either.
//! - Members are listed per channel in join order, as `apply_joined` appends.
//! - A leave for a user the cache does not have emits nothing: no browser has them
//!   either, and Discord may deliver an event more than once (`voice.left` with a
//!   `null` channel is allowed by the contract, but would only be noise).
//! - Re-seeding a guild (GUILD_CREATE after an outage or a new session) emits the
//!   difference, not a wipe; dropping a guild emits a leave per member.
//!   [`VoiceCache::clear`] is the only silent reset.

use std::collections::{BTreeMap, HashMap};

use crate::payload::{EventBody, VoiceJoined, VoiceLeft, VoiceMember, VoiceSnapshot};

/// Most remembered profiles of members who are *not* in voice. GUILD_CREATE
/// `members` may list far more members than are in voice (the bot itself, or every
/// member of a small guild); those names are only kept in case a later join
/// arrives without its `member` object, so past this bound they are dropped.
pub const MAX_IDLE_PROFILES: usize = 4096;

/// A user's display data as Discord sent it (`member.user`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// `user.username` (the unique handle; `global_name` and nicknames are not used
    /// so a name always means the same account).
    pub username: String,
    /// `user.avatar`, the avatar hash, if any.
    pub avatar: Option<String>,
}

/// One voice state, reduced to what the cache needs. The guild is passed
/// alongside because GUILD_CREATE's voice states carry none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceState {
    /// The member.
    pub user_id: String,
    /// The voice channel now, `None` when the member is not in voice.
    pub channel_id: Option<String>,
    /// From `member.user` when the state carried one.
    pub profile: Option<Profile>,
}

/// Where one member is, as the cache holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceEntry {
    /// The voice channel the member is in.
    pub channel_id: String,
    /// Username at the time of the join.
    pub username: String,
    /// Avatar hash at the time of the join.
    pub avatar: Option<String>,
    /// Join order across the cache, so snapshots list members as browsers appended them.
    order: u64,
}

/// One change to publish, in the order produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoiceChange {
    /// `voice.joined`.
    Joined(VoiceJoined),
    /// `voice.left`.
    Left(VoiceLeft),
}

impl From<VoiceChange> for EventBody {
    fn from(change: VoiceChange) -> Self {
        match change {
            VoiceChange::Joined(j) => EventBody::VoiceJoined(j),
            VoiceChange::Left(l) => EventBody::VoiceLeft(l),
        }
    }
}

impl VoiceChange {
    /// Applies this change to a snapshot, as a browser would.
    pub fn apply_to(&self, snapshot: &mut VoiceSnapshot) {
        match self {
            VoiceChange::Joined(j) => snapshot.apply_joined(j),
            VoiceChange::Left(l) => snapshot.apply_left(l),
        }
    }
}

/// The voice-state cache. See the module docs for the invariant it keeps.
#[derive(Debug, Clone, Default)]
pub struct VoiceCache {
    /// guild → user → entry; only members in a channel are held.
    guilds: BTreeMap<String, BTreeMap<String, VoiceEntry>>,
    /// (guild, user) → profile, for members known from GUILD_CREATE but not in voice.
    idle: HashMap<(String, String), Profile>,
    next_order: u64,
}

impl VoiceCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces what is known about `guild_id` with GUILD_CREATE's `voice_states`
    /// and `members` (`(user_id, profile)`), and returns the difference: a leave for
    /// every member gone or moved (first), then a join for every member new or
    /// moved. Members still in the same channel keep their entry and emit nothing.
    /// A state's own profile wins over `members`, which wins over the old entry's.
    pub fn seed_guild(
        &mut self,
        guild_id: &str,
        voice_states: Vec<VoiceState>,
        members: Vec<(String, Profile)>,
    ) -> Vec<VoiceChange> {
        let old = self.guilds.remove(guild_id).unwrap_or_default();
        // The last state for a user wins, as if they had arrived in that order.
        let mut now: BTreeMap<String, (String, Option<Profile>)> = BTreeMap::new();
        for state in voice_states {
            match state.channel_id {
                Some(channel) => {
                    now.insert(state.user_id, (channel, state.profile));
                }
                None => {
                    now.remove(&state.user_id);
                }
            }
        }
        let member_profiles: HashMap<&str, &Profile> =
            members.iter().map(|(u, p)| (u.as_str(), p)).collect();

        let mut changes = Vec::new();
        for (user, entry) in &old {
            if now.get(user).map(|(c, _)| c) != Some(&entry.channel_id) {
                changes.push(left(guild_id, user, Some(entry.channel_id.clone())));
            }
        }
        let mut guild = BTreeMap::new();
        for (user, (channel, profile)) in now {
            if let Some(entry) = old.get(&user).filter(|e| e.channel_id == channel) {
                guild.insert(user, entry.clone());
                continue;
            }
            let profile = profile
                .or_else(|| member_profiles.get(user.as_str()).map(|p| (*p).clone()))
                .or_else(|| old.get(&user).map(VoiceEntry::profile))
                .or_else(|| {
                    self.idle
                        .get(&(guild_id.to_string(), user.clone()))
                        .cloned()
                })
                .unwrap_or_default();
            let (entry, joined) = self.join_entry(guild_id, &user, channel, profile);
            changes.push(joined);
            guild.insert(user, entry);
        }

        self.idle.retain(|(g, _), _| g != guild_id);
        for (user, profile) in members {
            if self.idle.len() >= MAX_IDLE_PROFILES {
                break;
            }
            if !guild.contains_key(&user) {
                self.idle.insert((guild_id.to_string(), user), profile);
            }
        }
        if !guild.is_empty() {
            self.guilds.insert(guild_id.to_string(), guild);
        }
        changes
    }

    /// Applies one VOICE_STATE_UPDATE of `guild_id`:
    ///
    /// | before | after | emits |
    /// |---|---|---|
    /// | not in voice / unknown | in `b` | joined `b` (unknown origin is a plain join) |
    /// | in `a` | in `b`, `a ≠ b` | left `a`, then joined `b` (a move) |
    /// | in `a` | not in voice | left `a` |
    /// | in `a` | in `a` | nothing (mute, deafen, stream or video change) |
    /// | not in voice / unknown | not in voice | nothing (see the module docs) |
    pub fn apply(&mut self, guild_id: &str, state: VoiceState) -> Vec<VoiceChange> {
        let VoiceState {
            user_id,
            channel_id,
            profile,
        } = state;
        let old = self.guilds.get(guild_id).and_then(|g| g.get(&user_id));
        match (old, channel_id) {
            (None, None) => Vec::new(),
            (Some(entry), Some(now)) if entry.channel_id == now => Vec::new(),
            (Some(_), None) => {
                let entry = self.remove_entry(guild_id, &user_id);
                entry
                    .map(|e| left(guild_id, &user_id, Some(e.channel_id)))
                    .into_iter()
                    .collect()
            }
            (_, Some(now)) => {
                let mut changes = Vec::with_capacity(2);
                let idle_key = (guild_id.to_string(), user_id.clone());
                let idle = self.idle.remove(&idle_key);
                let before = self.remove_entry(guild_id, &user_id);
                let profile = profile
                    .or_else(|| before.as_ref().map(VoiceEntry::profile))
                    .or(idle)
                    .unwrap_or_default();
                if let Some(before) = before {
                    changes.push(left(guild_id, &user_id, Some(before.channel_id)));
                }
                let (entry, joined) = self.join_entry(guild_id, &user_id, now, profile);
                changes.push(joined);
                self.guilds
                    .entry(guild_id.to_string())
                    .or_default()
                    .insert(user_id, entry);
                changes
            }
        }
    }

    /// Forgets `guild_id` (GUILD_DELETE: the bot left, or the guild is in an
    /// outage and its states can no longer be followed) and returns a leave for
    /// each of its members; a later GUILD_CREATE re-seeds it with joins.
    pub fn remove_guild(&mut self, guild_id: &str) -> Vec<VoiceChange> {
        self.idle.retain(|(g, _), _| g != guild_id);
        let Some(guild) = self.guilds.remove(guild_id) else {
            return Vec::new();
        };
        guild
            .into_iter()
            .map(|(user, entry)| left(guild_id, &user, Some(entry.channel_id)))
            .collect()
    }

    /// Keeps only the guilds in `guild_ids` and returns a leave for each member of
    /// the others. For a new Discord session (READY): the guilds READY lists keep
    /// their entries until their GUILD_CREATE re-seeds them with a difference, so
    /// browsers see only real changes; guilds the bot lost meanwhile are dropped.
    pub fn retain_guilds(&mut self, guild_ids: &[String]) -> Vec<VoiceChange> {
        let gone: Vec<String> = self
            .guilds
            .keys()
            .filter(|g| !guild_ids.contains(g))
            .cloned()
            .collect();
        self.idle
            .retain(|(g, _), _| guild_ids.iter().any(|keep| keep == g));
        gone.iter().flat_map(|g| self.remove_guild(g)).collect()
    }

    /// Forgets everything without emitting anything. Only right when nobody holds
    /// a view built from this cache (browsers do, so the translator uses
    /// [`Self::retain_guilds`] and [`Self::seed_guild`] on a new session instead).
    pub fn clear(&mut self) {
        self.guilds.clear();
        self.idle.clear();
    }

    /// Who is where: every guild, or only `guild_id`. Members are listed per
    /// channel in join order; empty channels are left out.
    pub fn snapshot(&self, guild_id: Option<&str>) -> VoiceSnapshot {
        let mut channels: BTreeMap<String, Vec<(u64, VoiceMember)>> = BTreeMap::new();
        let guilds = self
            .guilds
            .iter()
            .filter(|(g, _)| guild_id.is_none_or(|want| want == g.as_str()));
        for (guild, users) in guilds {
            for (user, entry) in users {
                channels.entry(entry.channel_id.clone()).or_default().push((
                    entry.order,
                    VoiceMember {
                        guild_id: guild.clone(),
                        user_id: user.clone(),
                        username: entry.username.clone(),
                        avatar: entry.avatar.clone(),
                    },
                ));
            }
        }
        VoiceSnapshot {
            channels: channels
                .into_iter()
                .map(|(channel, mut members)| {
                    members.sort_by_key(|(order, _)| *order);
                    (channel, members.into_iter().map(|(_, m)| m).collect())
                })
                .collect(),
        }
    }

    /// Where `user_id` is in `guild_id`, if in voice.
    pub fn get(&self, guild_id: &str, user_id: &str) -> Option<&VoiceEntry> {
        self.guilds.get(guild_id)?.get(user_id)
    }

    /// How many members are in voice, over all guilds.
    pub fn len(&self) -> usize {
        self.guilds.values().map(BTreeMap::len).sum()
    }

    /// Whether nobody is in voice.
    pub fn is_empty(&self) -> bool {
        self.guilds.is_empty()
    }

    fn remove_entry(&mut self, guild_id: &str, user_id: &str) -> Option<VoiceEntry> {
        let guild = self.guilds.get_mut(guild_id)?;
        let entry = guild.remove(user_id);
        if guild.is_empty() {
            self.guilds.remove(guild_id);
        }
        entry
    }

    fn join_entry(
        &mut self,
        guild_id: &str,
        user_id: &str,
        channel_id: String,
        profile: Profile,
    ) -> (VoiceEntry, VoiceChange) {
        let order = self.next_order;
        self.next_order += 1;
        let joined = VoiceChange::Joined(VoiceJoined {
            guild_id: guild_id.to_string(),
            channel_id: channel_id.clone(),
            user_id: user_id.to_string(),
            username: profile.username.clone(),
            avatar: profile.avatar.clone(),
        });
        let entry = VoiceEntry {
            channel_id,
            username: profile.username,
            avatar: profile.avatar,
            order,
        };
        (entry, joined)
    }
}

impl VoiceEntry {
    fn profile(&self) -> Profile {
        Profile {
            username: self.username.clone(),
            avatar: self.avatar.clone(),
        }
    }
}

fn left(guild_id: &str, user_id: &str, channel_id: Option<String>) -> VoiceChange {
    VoiceChange::Left(VoiceLeft {
        guild_id: guild_id.to_string(),
        channel_id,
        user_id: user_id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> Option<Profile> {
        Some(Profile {
            username: name.into(),
            avatar: Some(format!("{name}-hash")),
        })
    }

    fn st(user: &str, channel: Option<&str>, profile: Option<Profile>) -> VoiceState {
        VoiceState {
            user_id: user.into(),
            channel_id: channel.map(Into::into),
            profile,
        }
    }

    fn joined(guild: &str, channel: &str, user: &str, name: &str) -> VoiceChange {
        VoiceChange::Joined(VoiceJoined {
            guild_id: guild.into(),
            channel_id: channel.into(),
            user_id: user.into(),
            username: name.into(),
            avatar: if name.is_empty() {
                None
            } else {
                Some(format!("{name}-hash"))
            },
        })
    }

    fn left(guild: &str, channel: &str, user: &str) -> VoiceChange {
        super::left(guild, user, Some(channel.into()))
    }

    /// Applies `changes` to `view` and checks it now equals the cache's snapshot.
    fn replay(view: &mut VoiceSnapshot, changes: &[VoiceChange], cache: &VoiceCache) {
        for c in changes {
            c.apply_to(view);
        }
        assert_eq!(*view, cache.snapshot(None));
    }

    #[test]
    fn join_move_mute_leave() {
        let mut cache = VoiceCache::new();
        let mut view = VoiceSnapshot::default();

        let c = cache.apply("g", st("u", Some("a"), p("ann")));
        assert_eq!(c, vec![joined("g", "a", "u", "ann")]);
        replay(&mut view, &c, &cache);

        let c = cache.apply("g", st("u", Some("b"), p("ann")));
        assert_eq!(
            c,
            vec![left("g", "a", "u"), joined("g", "b", "u", "ann")],
            "a move is a leave, then a join"
        );
        replay(&mut view, &c, &cache);

        // Mute (same channel), even with a new name: nothing, and the name stays.
        let c = cache.apply("g", st("u", Some("b"), p("renamed")));
        assert!(c.is_empty());
        assert_eq!(cache.get("g", "u").unwrap().username, "ann");
        replay(&mut view, &c, &cache);

        let c = cache.apply("g", st("u", None, None));
        assert_eq!(c, vec![left("g", "b", "u")]);
        replay(&mut view, &c, &cache);
        assert!(cache.is_empty());

        // A leave nobody knew of, e.g. delivered twice: nothing.
        assert!(cache.apply("g", st("u", None, p("ann"))).is_empty());
    }

    #[test]
    fn a_move_without_member_keeps_the_known_profile() {
        let mut cache = VoiceCache::new();
        let _ = cache.apply("g", st("u", Some("a"), p("ann")));
        let c = cache.apply("g", st("u", Some("b"), None));
        assert_eq!(c[1], joined("g", "b", "u", "ann"));
    }

    #[test]
    fn seeding_emits_the_difference() {
        let mut cache = VoiceCache::new();
        let mut view = VoiceSnapshot::default();
        let c = cache.seed_guild(
            "g",
            vec![
                st("a", Some("1"), None),
                st("b", Some("1"), None),
                st("c", Some("2"), None),
            ],
            vec![
                ("a".into(), p("ann").unwrap()),
                ("b".into(), p("bob").unwrap()),
            ],
        );
        assert_eq!(
            c,
            vec![
                joined("g", "1", "a", "ann"),
                joined("g", "1", "b", "bob"),
                joined("g", "2", "c", ""),
            ]
        );
        replay(&mut view, &c, &cache);

        // After an outage: b moved, c left, d came; a unchanged.
        let c = cache.seed_guild(
            "g",
            vec![
                st("a", Some("1"), None),
                st("b", Some("2"), None),
                st("d", Some("1"), p("dan")),
            ],
            vec![],
        );
        assert_eq!(
            c,
            vec![
                left("g", "1", "b"),
                left("g", "2", "c"),
                joined("g", "2", "b", "bob"),
                joined("g", "1", "d", "dan"),
            ],
            "leaves first; a moved member keeps its known profile"
        );
        replay(&mut view, &c, &cache);
        assert_eq!(view.channels["1"][0].user_id, "a", "a kept its place");
    }

    #[test]
    fn idle_profiles_name_a_later_join_and_are_bounded() {
        let mut cache = VoiceCache::new();
        let members = (0..MAX_IDLE_PROFILES + 10)
            .map(|i| (i.to_string(), p(&format!("m{i}")).unwrap()))
            .collect();
        let _ = cache.seed_guild("g", vec![], members);
        assert_eq!(cache.idle.len(), MAX_IDLE_PROFILES);
        let c = cache.apply("g", st("7", Some("1"), None));
        assert_eq!(c, vec![joined("g", "1", "7", "m7")]);
        assert!(
            !cache.idle.contains_key(&("g".into(), "7".into())),
            "in-voice profiles live in the entry"
        );
        let _ = cache.apply("g", st("7", None, None));
        let c = cache.apply("g", st("7", Some("1"), None));
        assert_eq!(
            c,
            vec![joined("g", "1", "7", "")],
            "a member who left voice is forgotten"
        );
        let _ = cache.remove_guild("g");
        assert!(cache.idle.is_empty());
    }

    #[test]
    fn dropping_guilds_emits_leaves() {
        let mut cache = VoiceCache::new();
        let mut view = VoiceSnapshot::default();
        let mut all = Vec::new();
        for (g, u, ch) in [("g1", "a", "1"), ("g1", "b", "2"), ("g2", "a", "3")] {
            all.extend(cache.apply(g, st(u, Some(ch), p(u))));
        }
        replay(&mut view, &all, &cache);

        let c = cache.retain_guilds(&["g2".to_string()]);
        assert_eq!(c, vec![left("g1", "1", "a"), left("g1", "2", "b")]);
        replay(&mut view, &c, &cache);

        let c = cache.remove_guild("g2");
        assert_eq!(c, vec![left("g2", "3", "a")]);
        replay(&mut view, &c, &cache);
        assert!(cache.remove_guild("g2").is_empty());
        assert!(view.channels.is_empty());
    }

    #[test]
    fn snapshot_lists_join_order_and_filters_by_guild() {
        let mut cache = VoiceCache::new();
        let _ = cache.apply("g1", st("z", Some("1"), p("zed")));
        let _ = cache.apply("g1", st("a", Some("1"), p("ann")));
        let _ = cache.apply("g2", st("q", Some("9"), p("quinn")));
        let all = cache.snapshot(None);
        let order: Vec<&str> = all.channels["1"].iter().map(|m| &*m.user_id).collect();
        assert_eq!(order, ["z", "a"]);
        let only = cache.snapshot(Some("g2"));
        assert_eq!(only.channels.len(), 1);
        assert_eq!(only.channels["9"][0].username, "quinn");
        assert_eq!(cache.len(), 3);
        cache.clear();
        assert!(cache.is_empty());
        assert_eq!(cache.snapshot(None), VoiceSnapshot::default());
    }
}
