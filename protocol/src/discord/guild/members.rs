//! The model's members as the link moves them: one member's JSON for a
//! `guild.member` event, the list of members for refreshing, and carrying the
//! members an edge knows over to a new `guild.state`.

use std::sync::Arc;

use serde_json::Value;

use super::{parse, GuildModel, Member};

impl GuildModel {
    /// `user`'s member in Discord's guild member shape (what
    /// [`GuildModel::upsert_member_json`] reads), if the model holds it.
    pub fn member_json(&self, user: u64) -> Option<Value> {
        self.members.get(&user).map(|m| parse::member_json(user, m))
    }

    /// Every member held, by user id.
    pub fn members(&self) -> impl Iterator<Item = (u64, &Member)> {
        self.members.iter().map(|(id, m)| (*id, m))
    }

    /// Keeps `old`'s members that this model (a newer `guild.state` of the same
    /// guild, which carries the bot's member only) does not hold.
    pub fn keep_members_of(&mut self, old: GuildModel) {
        for (id, member) in old.members {
            self.members.entry(id).or_insert(member);
        }
    }
}

/// Everything [`GuildModel::access`] reads of one member: two members with
/// equal keys in the same model have equal access, so a caller recomputing
/// thousands of sessions computes `access` once per key (most members of a
/// guild share a handful of role sets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccessKey {
    /// Not a member: no access at all.
    member: bool,
    /// The member's roles, sorted.
    roles: Arc<[u64]>,
    /// Timed out now (and not exempt: the model decides that from the roles).
    timed_out: bool,
    /// The guild's owner.
    owner: bool,
    /// The user's own id when some channel has a member overwrite for them or
    /// they are the bot, whose access nobody else shares.
    own: Option<u64>,
}

impl GuildModel {
    /// Users named by a member overwrite in some channel (read once per
    /// recompute, for [`GuildModel::access_key`]).
    pub fn users_with_overwrites(&self) -> std::collections::HashSet<u64> {
        self.channels
            .values()
            .flat_map(|c| c.permission_overwrites.iter())
            .filter(|o| o.kind == super::OverwriteKind::Member)
            .map(|o| o.id)
            .collect()
    }

    /// `user`'s [`AccessKey`] at `now_ms`; `overwritten` is
    /// [`GuildModel::users_with_overwrites`].
    pub fn access_key(
        &self,
        user: u64,
        now_ms: u64,
        overwritten: &std::collections::HashSet<u64>,
    ) -> AccessKey {
        let member = self.members.get(&user);
        AccessKey {
            member: member.is_some(),
            roles: member.map_or_else(|| Arc::from([]), |m| m.roles.clone()),
            timed_out: member.is_some_and(|m| m.timed_out(now_ms)),
            owner: user == self.owner_id,
            own: (overwritten.contains(&user) || user == self.bot_user_id).then_some(user),
        }
    }
}
