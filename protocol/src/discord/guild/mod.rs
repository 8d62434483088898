//! One guild's permission model: roles, channels and threads with their
//! overwrites, members, the owner and the bot, kept up to date by dispatches, and
//! Discord's permission algorithm over it (CONTRACT.md §8).
//!
//! # The algorithm (Discord's `developers/topics/permissions.mdx`)
//!
//! For a member in a channel:
//! 1. Base: the owner has all. Otherwise `@everyone` (the role whose id is the
//!    guild's) OR every role of the member; `ADMINISTRATOR` in it means all.
//! 2. Overwrites, unless all: the `@everyone` overwrite (deny, then allow), then
//!    the member's role overwrites together (OR of their denies removed, then OR of
//!    their allows added: an allow on any role beats a deny on another), then the
//!    member's own overwrite. A thread uses its parent channel's overwrites.
//! 3. Implicit: no `VIEW_CHANNEL` leaves nothing; no `SEND_MESSAGES` removes
//!    mention-everyone, TTS, attach and embed; a voice or stage channel without
//!    `CONNECT` loses its voice bits. In a thread `SEND_MESSAGES` is not inherited
//!    (it is removed): posting is `SEND_MESSAGES_IN_THREADS`, and the send
//!    dependents follow it instead.
//! 4. Timeout: a member whose `communication_disabled_until` is after `now_ms`
//!    keeps only `VIEW_CHANNEL | READ_MESSAGE_HISTORY`, unless step 1 gave all.
//! 5. The result is intersected with the bot's own permissions there, computed the
//!    same way, so nobody gains through relay what the bot lacks.
//!
//! A user absent from the model (not a member, or not learned yet: without the
//! privileged GUILD_MEMBERS intent GUILD_CREATE lists only a few members, the rest
//! come from REST through [`GuildModel::upsert_member_json`]) has nothing; so has
//! an unknown channel, and a thread whose parent is unknown.
//!
//! Private threads (type 12) are visible to their members and to `MANAGE_THREADS`;
//! relay does not track thread membership, so it shows a private thread only to
//! those with `MANAGE_THREADS` on the parent (before any timeout): failing closed.
//!
//! # Cost
//!
//! [`GuildModel::access`] runs for every session of a guild after a role change, so
//! each channel keeps its overwrites pre-split (the `@everyone` one, role ones and
//! member ones, sorted by id) and the bot's own per-channel permissions are
//! recomputed on every structural change rather than per call. Member roles are
//! kept sorted so matching a role overwrite is a binary search.
//! `examples/access_cost.rs` measures a 100-channel, 50-role guild (5 overwrites
//! per channel, a bot without ADMINISTRATOR): `access` took 2–5 µs a call on the
//! shared 2-core build machine under load (so 10,000 sessions in 20–50 ms), about
//! a third of it copying channel names; `may_view` 12–23 ns; `permissions` for one
//! channel 45–75 ns.

mod access;
mod members;
mod parse;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{json, Value};

pub use self::access::{Access, Can, ChannelAccess};
pub use self::members::AccessKey;
use self::parse::{opt_array, req_id, MemberFields};
use crate::discord::permissions::Permissions;

/// Discord's channel types that are threads: announcement, public, private.
pub const THREAD_TYPES: [u8; 3] = [10, 11, 12];
/// The private thread type.
pub const PRIVATE_THREAD: u8 = 12;
/// Channel types where `CONNECT` gates the voice bits: voice and stage.
pub const VOICE_TYPES: [u8; 2] = [2, 13];

/// The dispatches [`GuildModel::apply`] reads; any other name is [`GuildChange::None`].
pub const GUILD_EVENTS: [&str; 13] = [
    "GUILD_UPDATE",
    "GUILD_ROLE_CREATE",
    "GUILD_ROLE_UPDATE",
    "GUILD_ROLE_DELETE",
    "CHANNEL_CREATE",
    "CHANNEL_UPDATE",
    "CHANNEL_DELETE",
    "THREAD_CREATE",
    "THREAD_UPDATE",
    "THREAD_DELETE",
    "GUILD_MEMBER_ADD",
    "GUILD_MEMBER_UPDATE",
    "GUILD_MEMBER_REMOVE",
];

/// A role: its guild-level permissions and display data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The role's permissions.
    pub permissions: Permissions,
    /// Its position (display order; it does not change the algorithm).
    pub position: i64,
    /// Its name.
    pub name: String,
}

/// Whom an overwrite is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverwriteKind {
    /// `type: 0`, a role (the guild's id is `@everyone`).
    Role,
    /// `type: 1`, one member.
    Member,
}

/// One channel permission overwrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overwrite {
    /// The role or user id.
    pub id: u64,
    /// Role or member.
    pub kind: OverwriteKind,
    /// Bits granted.
    pub allow: Permissions,
    /// Bits taken away.
    pub deny: Permissions,
}

/// A channel or thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Its name.
    pub name: String,
    /// Discord's channel type.
    pub kind: u8,
    /// The category of a channel, the channel of a thread.
    pub parent_id: Option<u64>,
    /// The overwrites as Discord listed them.
    pub permission_overwrites: Vec<Overwrite>,
    compiled: Compiled,
    /// The bot's permissions here before any timeout of the bot's (see `refresh_bot`).
    bot: Permissions,
}

/// A channel's overwrites split for the algorithm. A repeated id keeps its last
/// entry, as a lookup table built from Discord's list would.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Compiled {
    /// Role overwrites by role id (including `@everyone`'s, which is also looked up
    /// by itself first).
    roles: Vec<(u64, Permissions, Permissions)>,
    /// Member overwrites by user id.
    members: Vec<(u64, Permissions, Permissions)>,
}

impl Compiled {
    fn new(overwrites: &[Overwrite]) -> Self {
        let mut c = Self::default();
        // Newest first, then a stable sort and dedup: the last entry of an id wins,
        // in O(n log n) however long a hostile list is.
        for ow in overwrites.iter().rev() {
            match ow.kind {
                OverwriteKind::Role => c.roles.push((ow.id, ow.allow, ow.deny)),
                OverwriteKind::Member => c.members.push((ow.id, ow.allow, ow.deny)),
            }
        }
        for list in [&mut c.roles, &mut c.members] {
            list.sort_by_key(|(id, _, _)| *id);
            list.dedup_by_key(|(id, _, _)| *id);
        }
        c
    }

    fn find(
        list: &[(u64, Permissions, Permissions)],
        id: u64,
    ) -> Option<(Permissions, Permissions)> {
        let at = list.binary_search_by_key(&id, |(i, _, _)| *i).ok()?;
        Some((list[at].1, list[at].2))
    }
}

impl Channel {
    /// A channel from its parts (the pre-split overwrites are built here).
    pub fn new(
        name: String,
        kind: u8,
        parent_id: Option<u64>,
        permission_overwrites: Vec<Overwrite>,
    ) -> Self {
        let compiled = Compiled::new(&permission_overwrites);
        Self {
            name,
            kind,
            parent_id,
            permission_overwrites,
            compiled,
            bot: Permissions::NONE,
        }
    }

    /// Whether this is a thread (types 10, 11, 12).
    pub fn is_thread(&self) -> bool {
        THREAD_TYPES.contains(&self.kind)
    }

    /// The same data, ignoring the bot cache (for change detection).
    fn same_as(&self, other: &Channel) -> bool {
        self.name == other.name
            && self.kind == other.kind
            && self.parent_id == other.parent_id
            && self.permission_overwrites == other.permission_overwrites
    }
}

/// A member as far as permissions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Role ids, sorted, without repeats (`@everyone` is implied, not listed).
    /// Shared (`Arc`) with the access keys made from it, which every
    /// recompute makes for every member.
    pub roles: Arc<[u64]>,
    /// End of a timeout, Unix ms; in the past means none.
    pub communication_disabled_until: Option<u64>,
    /// When relay read this member by REST (Unix ms); `None` when the gateway's
    /// dispatches keep it. A caller may re-fetch members that are old.
    pub fetched_at_ms: Option<u64>,
}

impl Member {
    fn timed_out(&self, now_ms: u64) -> bool {
        self.communication_disabled_until
            .is_some_and(|t| t > now_ms)
    }
}

/// What an applied dispatch changed, so a caller knows whose access to recompute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum GuildChange {
    /// Nothing that affects permissions (or not this guild, or not a guild event).
    None,
    /// Roles, channels, the owner or the bot changed: anybody's access may change.
    Structure,
    /// This member's roles or timeout changed (or they joined).
    Member(u64),
    /// This member left: they have nothing now.
    MemberRemoved(u64),
}

/// Why a guild object or dispatch could not be read; the model is unchanged.
/// Fields are named by their path in the object that held them (`role.permissions`,
/// `overwrite.allow`, `member.user.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuildError {
    /// `d` is not a JSON object.
    NotAnObject,
    /// A required field is absent or `null`.
    Missing(&'static str),
    /// A field is present but not what Discord documents (a permission string that
    /// is not a `u64`, an id that is no snowflake, an unknown overwrite type, …).
    WrongType(&'static str),
    /// GUILD_CREATE for a guild in an outage (`unavailable: true`): no data.
    Unavailable,
}

impl fmt::Display for GuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnObject => f.write_str("data is not a JSON object"),
            Self::Missing(field) => write!(f, "missing field `{field}`"),
            Self::WrongType(field) => write!(f, "field `{field}` has the wrong type"),
            Self::Unavailable => f.write_str("guild is unavailable"),
        }
    }
}

impl std::error::Error for GuildError {}

/// One guild's permission model. See the module documentation for the algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildModel {
    guild_id: u64,
    owner_id: u64,
    bot_user_id: u64,
    roles: BTreeMap<u64, Role>,
    /// Channels and threads together, by id.
    channels: BTreeMap<u64, Channel>,
    members: BTreeMap<u64, Member>,
    /// The bot's base permissions before a timeout (ALL for owner/admin).
    bot_base: Permissions,
}

fn root(d: &Value) -> Result<&parse::Fields, GuildError> {
    d.as_object().ok_or(GuildError::NotAnObject)
}

impl GuildModel {
    /// Builds the model from a GUILD_CREATE's `d` (or a [`Self::snapshot`]).
    /// `roles` is required; missing `channels`, `threads` or `members` are empty.
    pub fn from_guild_create(d: &Value, bot_user_id: u64) -> Result<Self, GuildError> {
        let o = root(d)?;
        if o.get("unavailable") == Some(&Value::Bool(true)) {
            return Err(GuildError::Unavailable);
        }
        let guild_id = req_id(o, "id", "id")?;
        let owner_id = req_id(o, "owner_id", "owner_id")?;
        let roles = parse::req_array(o, "roles", "roles")?
            .iter()
            .map(parse::role)
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        let mut channels = BTreeMap::new();
        for list in [
            opt_array(o, "channels", "channels")?,
            opt_array(o, "threads", "threads")?,
        ] {
            for c in list {
                let (id, channel) = parse::channel(c)?;
                channels.insert(id, channel);
            }
        }
        let mut members = BTreeMap::new();
        for m in opt_array(o, "members", "members")? {
            let m = parse::member(m)?;
            members.insert(
                m.user_id,
                Member {
                    roles: m.roles.into(),
                    communication_disabled_until: m.timeout.flatten(),
                    fetched_at_ms: m.fetched_at_ms,
                },
            );
        }
        let mut model = Self {
            guild_id,
            owner_id,
            bot_user_id,
            roles,
            channels,
            members,
            bot_base: Permissions::NONE,
        };
        model.refresh_bot();
        Ok(model)
    }

    /// The guild's id.
    pub fn guild_id(&self) -> u64 {
        self.guild_id
    }

    /// The owner's user id.
    pub fn owner_id(&self) -> u64 {
        self.owner_id
    }

    /// The bot's user id.
    pub fn bot_user_id(&self) -> u64 {
        self.bot_user_id
    }

    /// A role by id.
    pub fn role(&self, id: u64) -> Option<&Role> {
        self.roles.get(&id)
    }

    /// A channel or thread by id.
    pub fn channel(&self, id: u64) -> Option<&Channel> {
        self.channels.get(&id)
    }

    /// Every channel and thread, by id.
    pub fn channels(&self) -> impl Iterator<Item = (u64, &Channel)> {
        self.channels.iter().map(|(id, c)| (*id, c))
    }

    /// A member by user id.
    pub fn member(&self, user: u64) -> Option<&Member> {
        self.members.get(&user)
    }

    /// How many members the model holds.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// The bit that posting (a message, typing) needs in `channel`:
    /// `SEND_MESSAGES_IN_THREADS` in a thread, `SEND_MESSAGES` elsewhere.
    pub fn send_permission(&self, channel: u64) -> Permissions {
        match self.channels.get(&channel) {
            Some(c) if c.is_thread() => Permissions::SEND_MESSAGES_IN_THREADS,
            _ => Permissions::SEND_MESSAGES,
        }
    }

    /// Applies one dispatch (`t`, `d`). Events of another guild, and names not in
    /// [`GUILD_EVENTS`], are [`GuildChange::None`]. On error nothing changed.
    pub fn apply(&mut self, event_name: &str, d: &Value) -> Result<GuildChange, GuildError> {
        if !GUILD_EVENTS.contains(&event_name) {
            return Ok(GuildChange::None);
        }
        let o = root(d)?;
        // GUILD_UPDATE carries the guild itself; the others name it.
        let key = if event_name == "GUILD_UPDATE" {
            "id"
        } else {
            "guild_id"
        };
        let guild = match parse::opt_id(o, key, key)? {
            Some(g) => g,
            // A channel event without a guild is a direct message's: not ours.
            None if event_name.starts_with("CHANNEL_") => return Ok(GuildChange::None),
            None => return Err(GuildError::Missing(key)),
        };
        if guild != self.guild_id {
            return Ok(GuildChange::None);
        }
        let change = match event_name {
            "GUILD_UPDATE" => self.guild_update(o)?,
            "GUILD_ROLE_CREATE" | "GUILD_ROLE_UPDATE" => {
                let (id, role) = parse::role(o.get("role").unwrap_or(&Value::Null))?;
                let before = self.roles.insert(id, role.clone());
                if before.is_some_and(|b| b.permissions == role.permissions) {
                    GuildChange::None
                } else {
                    GuildChange::Structure
                }
            }
            "GUILD_ROLE_DELETE" => {
                let id = req_id(o, "role_id", "role_id")?;
                let existed = self.roles.remove(&id).is_some();
                // The role is nobody's any more; Discord need not tell each member.
                let mut held = false;
                for m in self.members.values_mut() {
                    if m.roles.binary_search(&id).is_ok() {
                        m.roles = m.roles.iter().copied().filter(|r| *r != id).collect();
                        held = true;
                    }
                }
                if existed || held {
                    GuildChange::Structure
                } else {
                    GuildChange::None
                }
            }
            "CHANNEL_CREATE" | "CHANNEL_UPDATE" | "THREAD_CREATE" | "THREAD_UPDATE" => {
                let (id, channel) = parse::channel(d)?;
                match self.channels.get(&id) {
                    Some(old) if old.same_as(&channel) => GuildChange::None,
                    _ => {
                        self.channels.insert(id, channel);
                        GuildChange::Structure
                    }
                }
            }
            "CHANNEL_DELETE" | "THREAD_DELETE" => {
                let id = req_id(o, "id", "channel.id")?;
                if self.channels.remove(&id).is_some() {
                    GuildChange::Structure
                } else {
                    GuildChange::None
                }
            }
            "GUILD_MEMBER_ADD" | "GUILD_MEMBER_UPDATE" => {
                let m = parse::member(d)?;
                let user = m.user_id;
                if self.upsert(m, None) {
                    self.member_change(user)
                } else {
                    GuildChange::None
                }
            }
            "GUILD_MEMBER_REMOVE" => {
                let user = parse::object(o.get("user").unwrap_or(&Value::Null), "user")?;
                let user = req_id(user, "id", "user.id")?;
                if self.members.remove(&user).is_none() {
                    GuildChange::None
                } else if user == self.bot_user_id {
                    GuildChange::Structure
                } else {
                    GuildChange::MemberRemoved(user)
                }
            }
            _ => GuildChange::None,
        };
        if change == GuildChange::Structure {
            self.refresh_bot();
        }
        Ok(change)
    }

    fn guild_update(&mut self, o: &parse::Fields) -> Result<GuildChange, GuildError> {
        let owner_id = req_id(o, "owner_id", "owner_id")?;
        // GUILD_UPDATE carries the guild's roles too; when present they are the truth.
        let roles = match o.get("roles") {
            None | Some(Value::Null) => None,
            Some(_) => Some(
                parse::req_array(o, "roles", "roles")?
                    .iter()
                    .map(parse::role)
                    .collect::<Result<BTreeMap<_, _>, _>>()?,
            ),
        };
        let mut changed = owner_id != self.owner_id;
        self.owner_id = owner_id;
        if let Some(roles) = roles {
            let perms = |r: &BTreeMap<u64, Role>| -> Vec<(u64, Permissions)> {
                r.iter().map(|(id, r)| (*id, r.permissions)).collect()
            };
            changed |= perms(&roles) != perms(&self.roles);
            self.roles = roles;
        }
        Ok(if changed {
            GuildChange::Structure
        } else {
            GuildChange::None
        })
    }

    /// Inserts or updates a member from parsed fields; whether anything changed.
    /// `fetched_at` is set for REST members; a gateway update clears it (the
    /// member is now as fresh as the gateway's view).
    fn upsert(&mut self, m: MemberFields, fetched_at: Option<u64>) -> bool {
        let old = self.members.get(&m.user_id);
        let timeout = match m.timeout {
            Some(t) => t,
            // Absent in a partial update: unchanged.
            None => old.and_then(|o| o.communication_disabled_until),
        };
        let new = Member {
            roles: m.roles.into(),
            communication_disabled_until: timeout,
            fetched_at_ms: fetched_at,
        };
        let changed = old.is_none_or(|o| {
            o.roles != new.roles
                || o.communication_disabled_until != new.communication_disabled_until
        });
        self.members.insert(m.user_id, new);
        changed
    }

    fn member_change(&mut self, user: u64) -> GuildChange {
        if user == self.bot_user_id {
            self.refresh_bot();
            GuildChange::Structure
        } else {
            GuildChange::Member(user)
        }
    }

    /// Inserts or replaces a member from a REST guild member object
    /// (`GET /guilds/{g}/members/{u}`), stamped `fetched_at_ms = now_ms`. Returns
    /// the user id; when it is the bot's, everyone's access may have changed.
    pub fn upsert_member_json(&mut self, d: &Value, now_ms: u64) -> Result<u64, GuildError> {
        let mut m = parse::member(d)?;
        // A REST member is complete: no `communication_disabled_until` means none.
        m.timeout = Some(m.timeout.flatten());
        let user = m.user_id;
        self.upsert(m, Some(now_ms));
        if user == self.bot_user_id {
            self.refresh_bot();
        }
        Ok(user)
    }

    /// Forgets a member (left, or a REST 404 `Unknown Member`).
    pub fn remove_member(&mut self, user: u64) {
        if self.members.remove(&user).is_some() && user == self.bot_user_id {
            self.refresh_bot();
        }
    }

    /// Base permissions before any timeout: owner or `ADMINISTRATOR` → all.
    fn base_untimed(&self, user: u64, member: &Member) -> Permissions {
        if user == self.owner_id {
            return Permissions::ALL;
        }
        let mut p = self
            .roles
            .get(&self.guild_id)
            .map_or(Permissions::NONE, |r| r.permissions);
        for role in member.roles.iter() {
            if let Some(r) = self.roles.get(role) {
                p |= r.permissions;
            }
        }
        if p.contains(Permissions::ADMINISTRATOR) {
            Permissions::ALL
        } else {
            p
        }
    }

    /// A member's guild-level permissions now (timeout applied), for the
    /// `ADMINISTRATOR` / `MANAGE_GUILD` check. Not intersected with the bot's: it
    /// says who the member is in the guild, not what relay will do for them.
    pub fn base_permissions(&self, user: u64, now_ms: u64) -> Permissions {
        let Some(member) = self.members.get(&user) else {
            return Permissions::NONE;
        };
        let base = self.base_untimed(user, member);
        base & timeout_mask(base, member, now_ms)
    }

    /// Steps 2–3 of the algorithm for `channel` (timeouts and the bot aside).
    fn channel_untimed(
        &self,
        base: Permissions,
        user: u64,
        roles: &[u64],
        channel: &Channel,
    ) -> Permissions {
        if !channel.is_thread() {
            let p = overwrites(base, self.guild_id, user, roles, &channel.compiled);
            return implicit(p, channel.kind);
        }
        let Some(parent) = channel.parent_id.and_then(|p| self.channels.get(&p)) else {
            return Permissions::NONE;
        };
        if parent.is_thread() {
            return Permissions::NONE;
        }
        let p = overwrites(base, self.guild_id, user, roles, &parent.compiled);
        thread_implicit(p, channel.kind)
    }

    /// Recomputes the bot's cached base and per-channel permissions (before any
    /// timeout of the bot's: that is applied per call, as it depends on `now_ms`).
    fn refresh_bot(&mut self) {
        let bot = self.bot_user_id;
        let computed: Vec<(u64, Permissions)> = match self.members.get(&bot) {
            None => self
                .channels
                .keys()
                .map(|id| (*id, Permissions::NONE))
                .collect(),
            Some(member) => {
                let base = self.base_untimed(bot, member);
                self.bot_base = base;
                self.channels
                    .iter()
                    .map(|(id, c)| (*id, self.channel_untimed(base, bot, &member.roles, c)))
                    .collect()
            }
        };
        if !self.members.contains_key(&bot) {
            self.bot_base = Permissions::NONE;
        }
        for (id, p) in computed {
            if let Some(c) = self.channels.get_mut(&id) {
                c.bot = p;
            }
        }
    }

    /// The bot's timeout mask now.
    fn bot_mask(&self, now_ms: u64) -> Permissions {
        match self.members.get(&self.bot_user_id) {
            Some(m) if m.timed_out(now_ms) && self.bot_base != Permissions::ALL => {
                Permissions::TIMEOUT_KEEPS
            }
            _ => Permissions::ALL,
        }
    }

    /// What `user` may do in `channel` (a channel or thread) at `now_ms`, already
    /// intersected with the bot's permissions there. Nothing for a non-member, an
    /// unknown channel, or a thread whose parent is unknown.
    pub fn permissions(&self, user: u64, channel: u64, now_ms: u64) -> Permissions {
        let (Some(member), Some(ch)) = (self.members.get(&user), self.channels.get(&channel))
        else {
            return Permissions::NONE;
        };
        let base = self.base_untimed(user, member);
        let mask = timeout_mask(base, member, now_ms);
        self.channel_untimed(base, user, &member.roles, ch) & mask & ch.bot & self.bot_mask(now_ms)
    }

    /// Every channel and thread `user` may view at `now_ms`, with what they may do
    /// there: the `access` event, and the per-event `may_view` check.
    pub fn access(&self, user: u64, now_ms: u64) -> Access {
        let Some(member) = self.members.get(&user) else {
            return Access::empty(self.guild_id);
        };
        let base = self.base_untimed(user, member);
        let mask = timeout_mask(base, member, now_ms) & self.bot_mask(now_ms);
        let mut out = Vec::new();
        for (id, ch) in &self.channels {
            let bot = ch.bot & mask;
            if !bot.contains(Permissions::VIEW_CHANNEL) {
                continue;
            }
            let p = self.channel_untimed(base, user, &member.roles, ch) & bot;
            if !p.contains(Permissions::VIEW_CHANNEL) {
                continue;
            }
            out.push((
                *id,
                ChannelAccess {
                    name: ch.name.clone(),
                    kind: ch.kind,
                    parent_id: ch.parent_id,
                    can: can(p, ch.is_thread()),
                },
            ));
        }
        Access::from_sorted(self.guild_id, out)
    }

    /// When `user`'s access will change with no event: the end of their timeout or
    /// the bot's, whichever comes first after `now_ms`.
    pub fn next_change_at(&self, user: u64, now_ms: u64) -> Option<u64> {
        self.members.get(&user)?;
        [user, self.bot_user_id]
            .iter()
            .filter_map(|u| self.members.get(u)?.communication_disabled_until)
            .filter(|t| *t > now_ms)
            .min()
    }

    /// The model in GUILD_CREATE's shape: `from_guild_create(&m.snapshot(), bot)`
    /// gives back an equal model. Members carry one field Discord does not send,
    /// `relay_fetched_at_ms`, so an edge rebuilding it knows which came by REST.
    pub fn snapshot(&self) -> Value {
        let (threads, channels): (Vec<_>, Vec<_>) =
            self.channels.iter().partition(|(_, c)| c.is_thread());
        json!({
            "id": self.guild_id.to_string(),
            "owner_id": self.owner_id.to_string(),
            "roles": self.roles.iter().map(|(id, r)| parse::role_json(*id, r)).collect::<Vec<_>>(),
            "channels": channels.into_iter().map(|(id, c)| parse::channel_json(*id, c)).collect::<Vec<_>>(),
            "threads": threads.into_iter().map(|(id, c)| parse::channel_json(*id, c)).collect::<Vec<_>>(),
            "members": self.members.iter().map(|(id, m)| parse::member_json(*id, m)).collect::<Vec<_>>(),
        })
    }
}

/// Step 4: what a timeout leaves; owner and `ADMINISTRATOR` (base = all) are exempt.
fn timeout_mask(base: Permissions, member: &Member, now_ms: u64) -> Permissions {
    if member.timed_out(now_ms) && base != Permissions::ALL {
        Permissions::TIMEOUT_KEEPS
    } else {
        Permissions::ALL
    }
}

/// Step 2: Discord's `compute_overwrites`.
fn overwrites(
    base: Permissions,
    guild_id: u64,
    user: u64,
    roles: &[u64],
    c: &Compiled,
) -> Permissions {
    if base.contains(Permissions::ADMINISTRATOR) {
        return Permissions::ALL;
    }
    let mut p = base;
    if let Some((allow, deny)) = Compiled::find(&c.roles, guild_id) {
        p &= !deny;
        p |= allow;
    }
    let (mut allow, mut deny) = (Permissions::NONE, Permissions::NONE);
    for (id, a, d) in &c.roles {
        if roles.binary_search(id).is_ok() {
            allow |= *a;
            deny |= *d;
        }
    }
    p &= !deny;
    p |= allow;
    if let Some((allow, deny)) = Compiled::find(&c.members, user) {
        p &= !deny;
        p |= allow;
    }
    p
}

/// Step 3 for a channel.
fn implicit(mut p: Permissions, kind: u8) -> Permissions {
    if !p.contains(Permissions::VIEW_CHANNEL) {
        return Permissions::NONE;
    }
    if !p.contains(Permissions::SEND_MESSAGES) {
        p &= !Permissions::SEND_DEPENDENT;
    }
    if VOICE_TYPES.contains(&kind) && !p.contains(Permissions::CONNECT) {
        p &= !Permissions::CONNECT_DEPENDENT;
    }
    p
}

/// Step 3 for a thread, from the permissions computed on its parent's overwrites.
fn thread_implicit(mut p: Permissions, kind: u8) -> Permissions {
    if !p.contains(Permissions::VIEW_CHANNEL) {
        return Permissions::NONE;
    }
    if kind == PRIVATE_THREAD && !p.contains(Permissions::MANAGE_THREADS) {
        return Permissions::NONE;
    }
    p &= !Permissions::SEND_MESSAGES;
    if !p.contains(Permissions::SEND_MESSAGES_IN_THREADS) {
        p &= !Permissions::SEND_DEPENDENT;
    }
    p
}

/// The contract's `can` flags for final permissions `p`.
fn can(p: Permissions, thread: bool) -> Can {
    let send = if thread {
        Permissions::SEND_MESSAGES_IN_THREADS
    } else {
        Permissions::SEND_MESSAGES
    };
    [
        (Permissions::VIEW_CHANNEL, Can::VIEW),
        (Permissions::READ_MESSAGE_HISTORY, Can::HISTORY),
        (send, Can::SEND),
        (Permissions::ADD_REACTIONS, Can::REACT),
        (Permissions::CONNECT, Can::CONNECT),
        (Permissions::MOVE_MEMBERS, Can::MOVE_MEMBERS),
        (Permissions::MUTE_MEMBERS, Can::MUTE_MEMBERS),
    ]
    .into_iter()
    .filter(|(bit, _)| p.contains(*bit))
    .fold(Can::NONE, |c, (_, flag)| c.with(flag))
}

/// Fuzz entry: any bytes never panic. Read as a GUILD_CREATE, a model that loads
/// must round-trip its snapshot and agree between `access` and `permissions`;
/// the bytes are also applied under every event name (and, as an array of
/// `{"t","d"}`, as a sequence) to that model and to a small real-shaped one,
/// where an error must leave the model unchanged.
#[cfg(feature = "fuzzing")]
pub fn fuzz_guild(bytes: &[u8]) {
    const BOT: u64 = 900;
    const NOW: u64 = 1_700_000_000_000;
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let small = json!({
        "id": "100", "owner_id": "1",
        "roles": [{"id": "100", "permissions": "68608"}, {"id": "200", "permissions": "20971520"}],
        "channels": [{"id": "300", "type": 0, "name": "general", "permission_overwrites": [
            {"id": "100", "type": 0, "allow": "0", "deny": "2048"},
            {"id": "200", "type": 0, "allow": "2048", "deny": "0"}]},
            {"id": "301", "type": 2, "name": "voice"}],
        "threads": [{"id": "302", "type": 11, "name": "t", "parent_id": "300"}],
        "members": [{"user": {"id": "900"}, "roles": ["200"]},
                    {"user": {"id": "2"}, "roles": ["200"], "communication_disabled_until": "2023-11-14T22:13:21.000Z"}]
    });
    let check = |m: &GuildModel| {
        let back = GuildModel::from_guild_create(&m.snapshot(), m.bot_user_id());
        assert_eq!(back.as_ref(), Ok(m), "the snapshot round-trips");
        for (user, _) in m.members.iter().take(32) {
            let access = m.access(*user, NOW);
            for (channel, _) in m.channels.iter().take(64) {
                let view = m
                    .permissions(*user, *channel, NOW)
                    .contains(Permissions::VIEW_CHANNEL);
                assert_eq!(access.may_view(*channel), view);
            }
        }
    };
    let mut models = vec![GuildModel::from_guild_create(&small, BOT).expect("valid seed")];
    if let Ok(m) = GuildModel::from_guild_create(&value, BOT) {
        check(&m);
        models.push(m);
    }
    for mut m in models {
        let feed = |m: &mut GuildModel, name: &str, d: &Value| {
            let before = m.clone();
            if m.apply(name, d).is_err() {
                assert_eq!(*m, before, "an error changes nothing");
            }
        };
        for name in GUILD_EVENTS {
            feed(&mut m, name, &value);
        }
        if let Value::Array(frames) = &value {
            for frame in frames {
                if let (Some(name), Some(d)) =
                    (frame.get("t").and_then(Value::as_str), frame.get("d"))
                {
                    feed(&mut m, name, d);
                }
            }
        }
        let before = m.clone();
        if m.upsert_member_json(&value, NOW).is_err() {
            assert_eq!(m, before);
        }
        check(&m);
    }
}

#[cfg(test)]
mod tests;
