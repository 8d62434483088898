//! The gateway's guild permission models, fed by dispatches, and the link
//! events that carry them to edges (`guild.state`, `guild.member`; CONTRACT.md
//! §8 with `ACCESS=discord`).
//!
//! - READY gives the bot's user id (the models intersect with its permissions).
//! - GUILD_CREATE builds a model and sends it whole; a structural change
//!   (roles, channels, threads, owner) sends it whole again: such changes are
//!   rare and a whole model cannot be applied out of order.
//! - A member change (GUILD_MEMBER_*, with the GUILD_MEMBERS intent) or a
//!   member read by REST (`fetchMember`) goes as one `guild.member`.
//! - Snapshots sent over the link carry only the bot's member: members go one
//!   by one, so a large guild never makes a frame past the link's 1 MiB.
//! - A guild removed (GUILD_DELETE without `unavailable`) is dropped; an
//!   outage (`unavailable: true`) keeps the model until its GUILD_CREATE.

use std::collections::BTreeMap;

use serde_json::Value;

use super::guild::{GuildChange, GuildError, GuildModel, GUILD_EVENTS};
use crate::payload::{EventBody, GuildMember, GuildState};

/// Every guild's model, as the gateway sees it.
#[derive(Debug, Clone, Default)]
pub struct GuildTracker {
    bot_user_id: u64,
    guild_filter: Option<u64>,
    guilds: BTreeMap<u64, GuildModel>,
}

impl GuildTracker {
    /// A tracker of every guild, or of `guild_filter` only (`DISCORD_GUILD_ID`).
    pub fn new(guild_filter: Option<&str>) -> Self {
        GuildTracker {
            guild_filter: guild_filter.and_then(|g| g.trim().parse().ok()),
            ..Self::default()
        }
    }

    /// The model of `guild`.
    pub fn guild(&self, guild: u64) -> Option<&GuildModel> {
        self.guilds.get(&guild)
    }

    /// Every model.
    pub fn guilds(&self) -> impl Iterator<Item = &GuildModel> {
        self.guilds.values()
    }

    /// Reads one dispatch; returns the link events it causes (none for
    /// dispatches that are not about guild structure or members).
    pub fn handle_dispatch(&mut self, name: &str, d: &Value) -> Result<Vec<EventBody>, GuildError> {
        match name {
            "READY" => {
                if let Some(id) = d.pointer("/user/id").and_then(id_of) {
                    self.bot_user_id = id;
                }
                Ok(Vec::new())
            }
            "GUILD_CREATE" => {
                if d.get("unavailable") == Some(&Value::Bool(true)) {
                    return Ok(Vec::new());
                }
                let model = GuildModel::from_guild_create(d, self.bot_user_id)?;
                let id = model.guild_id();
                if !self.admits(id) {
                    return Ok(Vec::new());
                }
                self.guilds.insert(id, model);
                Ok(self.state_event(id).into_iter().collect())
            }
            "GUILD_DELETE" => {
                if d.get("unavailable") != Some(&Value::Bool(true)) {
                    if let Some(id) = d.get("id").and_then(id_of) {
                        self.guilds.remove(&id);
                    }
                }
                Ok(Vec::new())
            }
            _ if GUILD_EVENTS.contains(&name) => {
                let Some(guild) = d.get("guild_id").or_else(|| d.get("id")).and_then(id_of) else {
                    return Ok(Vec::new());
                };
                let Some(model) = self.guilds.get_mut(&guild) else {
                    return Ok(Vec::new());
                };
                Ok(match model.apply(name, d)? {
                    GuildChange::None => Vec::new(),
                    GuildChange::Structure => self.state_event(guild).into_iter().collect(),
                    GuildChange::Member(user) => vec![self.member_event(guild, user)],
                    GuildChange::MemberRemoved(user) => vec![member_body(guild, user, None)],
                })
            }
            _ => Ok(Vec::new()),
        }
    }

    /// A member read by REST ("Get Guild Member"): kept, and its link event.
    pub fn upsert_member(
        &mut self,
        guild: u64,
        member: &Value,
        now_ms: u64,
    ) -> Result<EventBody, GuildError> {
        let Some(model) = self.guilds.get_mut(&guild) else {
            return Err(GuildError::Missing("guild"));
        };
        let user = model.upsert_member_json(member, now_ms)?;
        Ok(self.member_event(guild, user))
    }

    /// Discord said the user is not in the guild (404, code 10007).
    pub fn remove_member(&mut self, guild: u64, user: u64) -> EventBody {
        if let Some(model) = self.guilds.get_mut(&guild) {
            model.remove_member(user);
        }
        member_body(guild, user, None)
    }

    /// The `guild.member` event of a member as held now (`member: null` if
    /// the model does not hold it).
    pub fn member_event(&self, guild: u64, user: u64) -> EventBody {
        let member = self.guilds.get(&guild).and_then(|m| m.member_json(user));
        member_body(guild, user, member)
    }

    /// Whether the model holds `user` in `guild`, read by REST at or after
    /// `fresh_since_ms` or kept by dispatches.
    pub fn has_fresh_member(&self, guild: u64, user: u64, fresh_since_ms: u64) -> bool {
        self.guilds
            .get(&guild)
            .and_then(|m| m.member(user))
            .is_some_and(|m| m.fetched_at_ms.is_none_or(|at| at >= fresh_since_ms))
    }

    /// Members read by REST before `older_than_ms` (to read again).
    pub fn stale_members(&self, older_than_ms: u64) -> Vec<(u64, u64)> {
        self.guilds
            .values()
            .flat_map(|g| {
                g.members()
                    .filter(|(_, m)| m.fetched_at_ms.is_some_and(|at| at < older_than_ms))
                    .map(move |(user, _)| (g.guild_id(), user))
            })
            .collect()
    }

    /// Every model for an edge's `ready`, members left out but the bot's.
    pub fn snapshots(&self) -> Vec<Value> {
        self.guilds
            .keys()
            .filter_map(|g| self.link_snapshot(*g))
            .collect()
    }

    fn state_event(&self, guild: u64) -> Option<EventBody> {
        Some(EventBody::GuildState(GuildState {
            guild: self.link_snapshot(guild)?,
        }))
    }

    fn link_snapshot(&self, guild: u64) -> Option<Value> {
        let mut snapshot = self.guilds.get(&guild)?.snapshot();
        let bot = self.bot_user_id.to_string();
        if let Some(Value::Array(members)) = snapshot.get_mut("members") {
            members.retain(|m| m.pointer("/user/id").and_then(Value::as_str) == Some(&bot));
        }
        if let Value::Object(fields) = &mut snapshot {
            fields.insert("relay_bot_user_id".into(), Value::String(bot));
        }
        Some(snapshot)
    }

    fn admits(&self, guild: u64) -> bool {
        self.guild_filter.is_none_or(|g| g == guild)
    }
}

fn member_body(guild: u64, user: u64, member: Option<Value>) -> EventBody {
    EventBody::GuildMember(GuildMember {
        guild_id: guild.to_string(),
        user_id: user.to_string(),
        member,
    })
}

fn id_of(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const GUILD: &str = "100";

    fn guild_create() -> Value {
        json!({
            "id": GUILD, "owner_id": "999",
            "roles": [{"id": GUILD, "permissions": "1024", "position": 0, "name": "@everyone"}],
            "channels": [{"id": "1", "type": 0, "name": "general", "permission_overwrites": []}],
            "threads": [],
            "members": [
                {"user": {"id": "900"}, "roles": []},
                {"user": {"id": "10"}, "roles": []},
            ],
        })
    }

    fn tracker() -> GuildTracker {
        let mut t = GuildTracker::new(None);
        let _ = t
            .handle_dispatch("READY", &json!({"user": {"id": "900"}}))
            .unwrap();
        let events = t.handle_dispatch("GUILD_CREATE", &guild_create()).unwrap();
        assert!(matches!(&events[..], [EventBody::GuildState(_)]));
        t
    }

    #[test]
    fn link_snapshots_carry_the_bot_but_no_other_member() {
        let t = tracker();
        let snapshot = &t.snapshots()[0];
        assert_eq!(snapshot["relay_bot_user_id"], "900");
        let members = snapshot["members"].as_array().unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0]["user"]["id"], "900");
        // The edge rebuilds the same structure from it.
        let rebuilt = GuildModel::from_guild_create(snapshot, 900).unwrap();
        assert_eq!(rebuilt.guild_id(), 100);
        assert!(rebuilt.channel(1).is_some());
    }

    #[test]
    fn structure_changes_send_the_model_member_changes_one_member() {
        let mut t = tracker();
        let role = json!({"guild_id": GUILD, "role": {"id": "7", "permissions": "0", "position": 1, "name": "x"}});
        let out = t.handle_dispatch("GUILD_ROLE_CREATE", &role).unwrap();
        assert!(matches!(&out[..], [EventBody::GuildState(_)]));
        let update = json!({"guild_id": GUILD, "user": {"id": "10"}, "roles": ["7"]});
        let out = t.handle_dispatch("GUILD_MEMBER_UPDATE", &update).unwrap();
        let [EventBody::GuildMember(m)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!((m.guild_id.as_str(), m.user_id.as_str()), (GUILD, "10"));
        assert_eq!(m.member.as_ref().unwrap()["roles"], json!(["7"]));
        let gone = json!({"guild_id": GUILD, "user": {"id": "10"}});
        let out = t.handle_dispatch("GUILD_MEMBER_REMOVE", &gone).unwrap();
        assert!(matches!(
            &out[..],
            [EventBody::GuildMember(GuildMember { member: None, .. })]
        ));
    }

    #[test]
    fn rest_members_are_fresh_for_a_while_then_stale() {
        let mut t = tracker();
        let member = json!({"user": {"id": "11"}, "roles": []});
        let event = t.upsert_member(100, &member, 1_000).unwrap();
        assert!(matches!(
            event,
            EventBody::GuildMember(GuildMember {
                member: Some(_),
                ..
            })
        ));
        assert!(t.has_fresh_member(100, 11, 1_000));
        assert!(!t.has_fresh_member(100, 11, 1_001));
        // Members from GUILD_CREATE are kept by dispatches: always fresh.
        assert!(t.has_fresh_member(100, 10, u64::MAX));
        assert_eq!(t.stale_members(2_000), vec![(100, 11)]);
        assert!(matches!(
            t.remove_member(100, 11),
            EventBody::GuildMember(GuildMember { member: None, .. })
        ));
        assert!(t.upsert_member(5, &member, 0).is_err());
    }

    #[test]
    fn other_guilds_and_outages() {
        let mut t = GuildTracker::new(Some("200"));
        assert!(t
            .handle_dispatch("GUILD_CREATE", &guild_create())
            .unwrap()
            .is_empty());
        assert_eq!(t.guilds().count(), 0);
        let mut t = tracker();
        let _ = t
            .handle_dispatch("GUILD_DELETE", &json!({"id": GUILD, "unavailable": true}))
            .unwrap();
        assert!(t.guild(100).is_some());
        let _ = t
            .handle_dispatch("GUILD_DELETE", &json!({"id": GUILD}))
            .unwrap();
        assert!(t.guild(100).is_none());
        assert!(t
            .handle_dispatch("GUILD_CREATE", &json!({"id": 5}))
            .is_err());
    }
}
