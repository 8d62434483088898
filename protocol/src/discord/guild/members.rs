//! The model's members as the link moves them: one member's JSON for a
//! `guild.member` event, the list of members for refreshing, and carrying the
//! members an edge knows over to a new `guild.state`.

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
