//! One test per documented rule, then property tests against a reference written
//! straight from Discord's pseudocode, the snapshot round trip, and hostile JSON.

use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::ids::rfc3339_millis;

type P = Permissions;

const G: u64 = 100;
const BOT: u64 = 900;
const OWNER: u64 = 901;
const ALICE: u64 = 1;
const BOB: u64 = 2;
const MOD: u64 = 200;
const HELPER: u64 = 201;
const TEXT: u64 = 300;
const VOICE: u64 = 301;
const THREAD: u64 = 302;
const PRIVATE: u64 = 303;
const NOW: u64 = 1_700_000_000_000;

fn s(n: u64) -> String {
    n.to_string()
}

fn bits(p: P) -> String {
    p.to_decimal_string()
}

fn role(id: u64, p: P) -> Value {
    json!({"id": s(id), "name": format!("role{id}"), "color": 0, "hoist": false, "position": 1,
           "permissions": bits(p), "managed": false, "mentionable": false, "flags": 0})
}

fn ow(id: u64, kind: u8, allow: P, deny: P) -> Value {
    json!({"id": s(id), "type": kind, "allow": bits(allow), "deny": bits(deny)})
}

fn channel(id: u64, kind: u8, overwrites: Vec<Value>) -> Value {
    json!({"id": s(id), "type": kind, "guild_id": s(G), "name": format!("ch{id}"), "position": 0,
           "parent_id": null, "nsfw": false, "permission_overwrites": overwrites})
}

fn thread(id: u64, kind: u8, parent: u64) -> Value {
    json!({"id": s(id), "type": kind, "guild_id": s(G), "name": format!("thread{id}"), "parent_id": s(parent),
           "owner_id": s(ALICE), "message_count": 1, "member_count": 1,
           "thread_metadata": {"archived": false, "auto_archive_duration": 60, "locked": false}})
}

fn member(user: u64, roles: &[u64], until: Option<u64>) -> Value {
    json!({"user": {"id": s(user), "username": format!("u{user}"), "avatar": null},
           "roles": roles.iter().map(|r| s(*r)).collect::<Vec<_>>(),
           "joined_at": "2021-05-01T10:00:00.000000+00:00", "deaf": false, "mute": false, "flags": 0,
           "communication_disabled_until": until.map(rfc3339_millis)})
}

/// Members get @everyone's view/send/history/react; the bot is an administrator.
fn everyday() -> P {
    P::VIEW_CHANNEL
        | P::SEND_MESSAGES
        | P::READ_MESSAGE_HISTORY
        | P::ADD_REACTIONS
        | P::CONNECT
        | P::EMBED_LINKS
        | P::SEND_MESSAGES_IN_THREADS
}

fn guild_json(
    roles: Vec<Value>,
    channels: Vec<Value>,
    threads: Vec<Value>,
    members: Vec<Value>,
) -> Value {
    json!({"id": s(G), "name": "relay", "owner_id": s(OWNER), "unavailable": false, "member_count": 4,
           "roles": roles, "channels": channels, "threads": threads, "members": members,
           "voice_states": [], "presences": [], "emojis": [], "features": []})
}

fn basic() -> Value {
    guild_json(
        vec![
            role(G, everyday()),
            role(MOD, P::MOVE_MEMBERS | P::MUTE_MEMBERS | P::MANAGE_THREADS),
            role(999, P::ADMINISTRATOR),
        ],
        vec![channel(TEXT, 0, vec![]), channel(VOICE, 2, vec![])],
        vec![thread(THREAD, 11, TEXT), thread(PRIVATE, 12, TEXT)],
        vec![
            member(BOT, &[999], None),
            member(OWNER, &[], None),
            member(ALICE, &[], None),
            member(BOB, &[MOD], None),
        ],
    )
}

fn model(d: &Value) -> GuildModel {
    GuildModel::from_guild_create(d, BOT).expect("reads")
}

fn with_overwrites(overwrites: Vec<Value>) -> GuildModel {
    let mut d = basic();
    d["channels"][0]["permission_overwrites"] = json!(overwrites);
    model(&d)
}

#[test]
fn owner_has_all_whatever_the_overwrites() {
    let m = with_overwrites(vec![
        ow(G, 0, P::NONE, P::VIEW_CHANNEL),
        ow(OWNER, 1, P::NONE, P::ALL),
    ]);
    assert_eq!(m.permissions(OWNER, TEXT, NOW), P::ALL);
    assert_eq!(m.base_permissions(OWNER, NOW), P::ALL);
    assert!(m.access(OWNER, NOW).may_view(TEXT));
}

#[test]
fn administrator_bypasses_overwrites() {
    let mut d = basic();
    d["members"][2] = member(ALICE, &[999], None);
    d["channels"][0]["permission_overwrites"] = json!([ow(ALICE, 1, P::NONE, P::VIEW_CHANNEL)]);
    let m = model(&d);
    assert_eq!(m.permissions(ALICE, TEXT, NOW), P::ALL);
    assert!(m.base_permissions(ALICE, NOW).contains(P::MANAGE_GUILD));
}

#[test]
fn everyone_role_and_member_roles_make_the_base() {
    let m = model(&basic());
    assert_eq!(m.base_permissions(ALICE, NOW), everyday());
    assert_eq!(
        m.base_permissions(BOB, NOW),
        everyday() | P::MOVE_MEMBERS | P::MUTE_MEMBERS | P::MANAGE_THREADS
    );
    assert!(!m.base_permissions(BOB, NOW).contains(P::MANAGE_GUILD));
    assert_eq!(m.permissions(ALICE, TEXT, NOW), everyday());
}

#[test]
fn everyone_overwrite_applies_deny_then_allow() {
    let m = with_overwrites(vec![ow(
        G,
        0,
        P::ADD_REACTIONS,
        P::ADD_REACTIONS | P::SEND_MESSAGES,
    )]);
    let p = m.permissions(ALICE, TEXT, NOW);
    assert!(p.contains(P::ADD_REACTIONS), "allow after deny");
    assert!(!p.contains(P::SEND_MESSAGES));
}

#[test]
fn role_allow_beats_role_deny_whatever_the_order() {
    let mut d = basic();
    d["members"][2] = member(ALICE, &[MOD, HELPER], None);
    d["roles"]
        .as_array_mut()
        .unwrap()
        .push(role(HELPER, P::NONE));
    for overwrites in [
        vec![
            ow(MOD, 0, P::NONE, P::VIEW_CHANNEL),
            ow(HELPER, 0, P::VIEW_CHANNEL, P::NONE),
        ],
        vec![
            ow(HELPER, 0, P::VIEW_CHANNEL, P::NONE),
            ow(MOD, 0, P::NONE, P::VIEW_CHANNEL),
        ],
    ] {
        d["channels"][0]["permission_overwrites"] = json!(overwrites);
        let m = model(&d);
        assert!(m.permissions(ALICE, TEXT, NOW).contains(P::VIEW_CHANNEL));
    }
    // A role overwrite beats the @everyone overwrite.
    d["channels"][0]["permission_overwrites"] = json!([
        ow(G, 0, P::NONE, P::VIEW_CHANNEL),
        ow(MOD, 0, P::VIEW_CHANNEL, P::NONE)
    ]);
    let m = model(&d);
    assert!(m.access(ALICE, NOW).may_view(TEXT));
    assert!(!m.access(OWNER, NOW).is_empty());
}

#[test]
fn member_overwrite_wins_over_roles() {
    let m = with_overwrites(vec![
        ow(MOD, 0, P::SEND_MESSAGES, P::NONE),
        ow(BOB, 1, P::NONE, P::SEND_MESSAGES),
        ow(G, 0, P::NONE, P::ADD_REACTIONS),
        ow(ALICE, 1, P::ADD_REACTIONS, P::NONE),
    ]);
    assert!(!m.permissions(BOB, TEXT, NOW).contains(P::SEND_MESSAGES));
    assert!(m.permissions(ALICE, TEXT, NOW).contains(P::ADD_REACTIONS));
    assert!(!m.permissions(BOB, TEXT, NOW).contains(P::ADD_REACTIONS));
}

#[test]
fn no_view_means_nothing_in_the_channel() {
    let m = with_overwrites(vec![ow(ALICE, 1, P::NONE, P::VIEW_CHANNEL)]);
    assert_eq!(m.permissions(ALICE, TEXT, NOW), P::NONE);
    let a = m.access(ALICE, NOW);
    assert!(!a.may_view(TEXT));
    assert!(
        !a.may_view(THREAD),
        "threads need VIEW_CHANNEL on the parent"
    );
    assert!(a.may_view(VOICE));
}

#[test]
fn no_send_removes_the_send_dependents() {
    let m = with_overwrites(vec![ow(
        G,
        0,
        P::ATTACH_FILES | P::MENTION_EVERYONE,
        P::SEND_MESSAGES,
    )]);
    let p = m.permissions(ALICE, TEXT, NOW);
    assert!(!p.intersects(P::SEND_DEPENDENT | P::SEND_MESSAGES), "{p:?}");
    assert!(p.contains(P::VIEW_CHANNEL | P::ADD_REACTIONS));
}

#[test]
fn voice_without_connect_loses_the_voice_bits() {
    let mut d = basic();
    d["channels"][1]["permission_overwrites"] = json!([ow(G, 0, P::NONE, P::CONNECT)]);
    d["channels"][0]["permission_overwrites"] = json!([ow(G, 0, P::NONE, P::CONNECT)]);
    let m = model(&d);
    let p = m.permissions(BOB, VOICE, NOW);
    assert!(p.contains(P::VIEW_CHANNEL));
    assert!(
        !p.intersects(P::MOVE_MEMBERS | P::MUTE_MEMBERS | P::CONNECT),
        "{p:?}"
    );
    let text = m.permissions(BOB, TEXT, NOW);
    assert!(
        text.contains(P::MOVE_MEMBERS),
        "only voice and stage channels"
    );
}

#[test]
fn timeout_keeps_view_and_history_until_it_ends() {
    let mut d = basic();
    let until = NOW + 60_000;
    d["members"][3] = member(BOB, &[MOD], Some(until));
    let m = model(&d);
    assert_eq!(m.permissions(BOB, TEXT, NOW), P::TIMEOUT_KEEPS);
    assert_eq!(m.base_permissions(BOB, NOW), P::TIMEOUT_KEEPS);
    assert_eq!(m.access(BOB, NOW).can(TEXT), Can::VIEW.with(Can::HISTORY));
    assert_eq!(m.next_change_at(BOB, NOW), Some(until));
    assert_eq!(m.next_change_at(ALICE, NOW), None);
    assert_eq!(m.next_change_at(BOB, until), None);
    assert!(m
        .permissions(BOB, TEXT, until)
        .contains(P::SEND_MESSAGES | P::MOVE_MEMBERS));
    assert_ne!(m.access(BOB, NOW), m.access(BOB, until));
}

#[test]
fn timeout_spares_owner_and_administrator() {
    let mut d = basic();
    d["members"][1] = member(OWNER, &[], Some(NOW + 1));
    d["members"][2] = member(ALICE, &[999], Some(NOW + 1));
    let m = model(&d);
    assert_eq!(m.permissions(OWNER, TEXT, NOW), P::ALL);
    assert_eq!(m.permissions(ALICE, TEXT, NOW), P::ALL);
    assert_eq!(m.base_permissions(ALICE, NOW), P::ALL);
}

#[test]
fn threads_use_the_parent_and_need_send_in_threads() {
    let mut d = basic();
    d["roles"][0] = role(G, everyday() & !P::SEND_MESSAGES_IN_THREADS);
    d["channels"][0]["permission_overwrites"] =
        json!([ow(MOD, 0, P::SEND_MESSAGES_IN_THREADS, P::NONE)]);
    let m = model(&d);
    let alice = m.permissions(ALICE, THREAD, NOW);
    assert!(alice.contains(P::VIEW_CHANNEL | P::READ_MESSAGE_HISTORY));
    assert!(
        !alice.contains(P::SEND_MESSAGES),
        "SEND_MESSAGES is not inherited"
    );
    assert!(!alice.contains(P::SEND_MESSAGES_IN_THREADS));
    assert!(
        !alice.contains(P::EMBED_LINKS),
        "follows SEND_MESSAGES_IN_THREADS"
    );
    assert!(!m.access(ALICE, NOW).can(THREAD).contains(Can::SEND));
    assert!(m.access(ALICE, NOW).can(TEXT).contains(Can::SEND));
    let bob = m.permissions(BOB, THREAD, NOW);
    assert!(
        bob.contains(P::SEND_MESSAGES_IN_THREADS | P::EMBED_LINKS),
        "parent's overwrite"
    );
    assert!(m.access(BOB, NOW).can(THREAD).contains(Can::SEND));
    assert_eq!(m.send_permission(THREAD), P::SEND_MESSAGES_IN_THREADS);
    assert_eq!(m.send_permission(TEXT), P::SEND_MESSAGES);
    // Private threads: relay knows no thread membership, so MANAGE_THREADS only.
    assert!(!m.access(ALICE, NOW).may_view(PRIVATE));
    assert!(m.access(BOB, NOW).may_view(PRIVATE));
    let a = m.access(BOB, NOW);
    assert_eq!(a.get(THREAD).unwrap().parent_id, Some(TEXT));
    assert_eq!(a.get(THREAD).unwrap().kind, 11);
}

#[test]
fn a_thread_without_a_known_parent_gives_nothing() {
    let mut d = basic();
    d["threads"] = json!([thread(THREAD, 11, 12345), thread(PRIVATE, 11, THREAD)]);
    let m = model(&d);
    assert_eq!(m.permissions(OWNER, THREAD, NOW), P::NONE);
    assert_eq!(
        m.permissions(OWNER, PRIVATE, NOW),
        P::NONE,
        "a thread is no parent"
    );
}

#[test]
fn the_bot_limits_everyone() {
    let mut d = basic();
    d["members"][0] = member(BOT, &[], None);
    d["channels"][0]["permission_overwrites"] = json!([ow(BOT, 1, P::NONE, P::ADD_REACTIONS)]);
    d["channels"][1]["permission_overwrites"] = json!([ow(BOT, 1, P::NONE, P::VIEW_CHANNEL)]);
    let m = model(&d);
    assert!(!m.permissions(OWNER, TEXT, NOW).contains(P::ADD_REACTIONS));
    assert!(m.permissions(OWNER, TEXT, NOW).contains(P::SEND_MESSAGES));
    assert_eq!(m.permissions(OWNER, VOICE, NOW), P::NONE);
    assert!(!m.access(OWNER, NOW).may_view(VOICE));
    // The bot timed out: everybody is read-only through relay until it ends.
    d["members"][0] = member(BOT, &[], Some(NOW + 5));
    let m = model(&d);
    assert_eq!(m.permissions(OWNER, TEXT, NOW), P::TIMEOUT_KEEPS);
    assert_eq!(m.next_change_at(ALICE, NOW), Some(NOW + 5));
    // Without the bot's member, nothing at all.
    d["members"].as_array_mut().unwrap().remove(0);
    let m = model(&d);
    assert_eq!(m.permissions(OWNER, TEXT, NOW), P::NONE);
    assert!(m.access(OWNER, NOW).is_empty());
}

#[test]
fn non_members_and_unknown_channels_get_nothing() {
    let m = model(&basic());
    assert_eq!(m.permissions(77, TEXT, NOW), P::NONE);
    assert_eq!(m.base_permissions(77, NOW), P::NONE);
    assert!(m.access(77, NOW).is_empty());
    assert_eq!(m.next_change_at(77, NOW), None);
    assert_eq!(m.permissions(OWNER, 12345, NOW), P::NONE);
    assert!(!m.access(OWNER, NOW).may_view(12345));
}

#[test]
fn role_delete_takes_the_role_out() {
    let mut m = model(&basic());
    assert!(m.permissions(BOB, VOICE, NOW).contains(P::MOVE_MEMBERS));
    let change = m.apply(
        "GUILD_ROLE_DELETE",
        &json!({"guild_id": s(G), "role_id": s(MOD)}),
    );
    assert_eq!(change, Ok(GuildChange::Structure));
    assert!(!m.permissions(BOB, VOICE, NOW).contains(P::MOVE_MEMBERS));
    assert!(m.member(BOB).unwrap().roles.is_empty());
    assert!(m.role(MOD).is_none());
    assert_eq!(
        m.apply(
            "GUILD_ROLE_DELETE",
            &json!({"guild_id": s(G), "role_id": s(MOD)})
        ),
        Ok(GuildChange::None)
    );
}

#[test]
fn channel_delete_takes_the_channel_out() {
    let mut m = model(&basic());
    assert!(m.access(ALICE, NOW).may_view(VOICE));
    let change = m.apply("CHANNEL_DELETE", &channel(VOICE, 2, vec![]));
    assert_eq!(change, Ok(GuildChange::Structure));
    assert!(!m.access(ALICE, NOW).may_view(VOICE));
    assert_eq!(m.permissions(ALICE, VOICE, NOW), P::NONE);
    assert_eq!(
        m.apply(
            "THREAD_DELETE",
            &json!({"id": s(THREAD), "guild_id": s(G), "parent_id": s(TEXT), "type": 11})
        ),
        Ok(GuildChange::Structure)
    );
    assert!(m.channel(THREAD).is_none());
}

#[test]
fn role_and_channel_updates_report_only_what_matters() {
    let mut m = model(&basic());
    let rename = json!({"guild_id": s(G), "role": {"id": s(MOD), "name": "mods", "position": 3,
        "permissions": bits(P::MOVE_MEMBERS | P::MUTE_MEMBERS | P::MANAGE_THREADS)}});
    assert_eq!(m.apply("GUILD_ROLE_UPDATE", &rename), Ok(GuildChange::None));
    assert_eq!(m.role(MOD).unwrap().name, "mods");
    let mut grant = rename.clone();
    grant["role"]["permissions"] = json!(bits(P::MUTE_MEMBERS));
    assert_eq!(
        m.apply("GUILD_ROLE_UPDATE", &grant),
        Ok(GuildChange::Structure)
    );
    assert_eq!(
        m.apply("CHANNEL_UPDATE", &channel(TEXT, 0, vec![])),
        Ok(GuildChange::None)
    );
    let hide = channel(TEXT, 0, vec![ow(G, 0, P::NONE, P::VIEW_CHANNEL)]);
    assert_eq!(m.apply("CHANNEL_UPDATE", &hide), Ok(GuildChange::Structure));
    assert!(!m.access(ALICE, NOW).may_view(TEXT));
    assert_eq!(
        m.apply("CHANNEL_CREATE", &channel(555, 0, vec![])),
        Ok(GuildChange::Structure)
    );
    assert!(m.access(ALICE, NOW).may_view(555));
    assert_eq!(
        m.apply("THREAD_CREATE", &thread(556, 11, 555)),
        Ok(GuildChange::Structure)
    );
    assert!(m.access(ALICE, NOW).may_view(556));
    let mut owner = basic();
    owner["owner_id"] = json!(s(ALICE));
    assert_eq!(m.apply("GUILD_UPDATE", &owner), Ok(GuildChange::Structure));
    assert_eq!(m.owner_id(), ALICE);
    assert_eq!(m.permissions(ALICE, TEXT, NOW), P::ALL);
}

#[test]
fn member_events_name_the_member() {
    let mut m = model(&basic());
    let mut add = member(55, &[MOD], None);
    add["guild_id"] = json!(s(G));
    assert_eq!(
        m.apply("GUILD_MEMBER_ADD", &add),
        Ok(GuildChange::Member(55))
    );
    assert!(m.access(55, NOW).may_view(TEXT));
    // A partial update without the timeout keeps it; the same data is no news.
    let mut timed = member(55, &[MOD], Some(NOW + 10));
    timed["guild_id"] = json!(s(G));
    assert_eq!(
        m.apply("GUILD_MEMBER_UPDATE", &timed),
        Ok(GuildChange::Member(55))
    );
    let partial = json!({"guild_id": s(G), "roles": [s(MOD)], "user": {"id": s(55)}});
    assert_eq!(
        m.apply("GUILD_MEMBER_UPDATE", &partial),
        Ok(GuildChange::None)
    );
    assert_eq!(
        m.member(55).unwrap().communication_disabled_until,
        Some(NOW + 10)
    );
    let remove = json!({"guild_id": s(G), "user": {"id": s(55), "username": "x"}});
    assert_eq!(
        m.apply("GUILD_MEMBER_REMOVE", &remove),
        Ok(GuildChange::MemberRemoved(55))
    );
    assert!(m.access(55, NOW).is_empty());
    assert_eq!(
        m.apply("GUILD_MEMBER_REMOVE", &remove),
        Ok(GuildChange::None)
    );
    // The bot's own changes touch everybody.
    let mut bot = member(BOT, &[], None);
    bot["guild_id"] = json!(s(G));
    assert_eq!(
        m.apply("GUILD_MEMBER_UPDATE", &bot),
        Ok(GuildChange::Structure)
    );
    assert!(!m.permissions(OWNER, VOICE, NOW).contains(P::MOVE_MEMBERS));
}

#[test]
fn rest_members_are_stamped_and_removable() {
    let mut m = model(&basic());
    let rest = json!({"user": {"id": "80351110224678912", "username": "Nelly", "global_name": null, "avatar": null},
        "nick": null, "avatar": null, "roles": [s(MOD)], "joined_at": "2015-04-26T06:26:56.936000+00:00",
        "deaf": false, "mute": false, "flags": 0, "pending": false,
        "communication_disabled_until": "2023-11-14T22:14:20.000000+00:00"});
    assert_eq!(m.upsert_member_json(&rest, NOW), Ok(80_351_110_224_678_912));
    let got = m.member(80_351_110_224_678_912).unwrap();
    assert_eq!(got.fetched_at_ms, Some(NOW));
    assert_eq!(got.communication_disabled_until, Some(NOW + 60_000));
    assert_eq!(
        m.permissions(80_351_110_224_678_912, TEXT, NOW),
        P::TIMEOUT_KEEPS
    );
    m.remove_member(80_351_110_224_678_912);
    assert!(m.member(80_351_110_224_678_912).is_none());
    assert_eq!(
        m.upsert_member_json(&json!({"user": {"id": "1"}, "roles": "x"}), NOW),
        Err(GuildError::WrongType("member.roles"))
    );
}

#[test]
fn other_guilds_and_other_events_change_nothing() {
    let mut m = model(&basic());
    let before = m.clone();
    let other = json!({"guild_id": "7", "role_id": s(MOD)});
    assert_eq!(m.apply("GUILD_ROLE_DELETE", &other), Ok(GuildChange::None));
    assert_eq!(m.apply("MESSAGE_CREATE", &json!(1)), Ok(GuildChange::None));
    let mut dm = channel(TEXT, 1, vec![]);
    dm.as_object_mut().unwrap().remove("guild_id");
    assert_eq!(m.apply("CHANNEL_UPDATE", &dm), Ok(GuildChange::None));
    assert_eq!(m, before);
}

#[test]
fn unreadable_fields_are_named_and_change_nothing() {
    let mut m = model(&basic());
    let before = m.clone();
    let cases = [
        (
            "GUILD_ROLE_UPDATE",
            json!({"guild_id": s(G), "role": {"id": s(MOD), "permissions": "12abc"}}),
            GuildError::WrongType("role.permissions"),
        ),
        (
            "GUILD_ROLE_UPDATE",
            json!({"guild_id": s(G), "role": {"id": s(MOD), "permissions": 8}}),
            GuildError::WrongType("role.permissions"),
        ),
        (
            "GUILD_ROLE_CREATE",
            json!({"guild_id": s(G)}),
            GuildError::Missing("role"),
        ),
        (
            "GUILD_ROLE_DELETE",
            json!({"role_id": s(MOD)}),
            GuildError::Missing("guild_id"),
        ),
        (
            "CHANNEL_UPDATE",
            channel(
                TEXT,
                0,
                vec![json!({"id": s(G), "type": 0, "allow": "0", "deny": "-1"})],
            ),
            GuildError::WrongType("overwrite.deny"),
        ),
        (
            "CHANNEL_UPDATE",
            channel(
                TEXT,
                0,
                vec![json!({"id": s(G), "type": 2, "allow": "0", "deny": "0"})],
            ),
            GuildError::WrongType("overwrite.type"),
        ),
        (
            "CHANNEL_CREATE",
            json!({"id": "5", "guild_id": s(G)}),
            GuildError::Missing("channel.type"),
        ),
        (
            "GUILD_MEMBER_UPDATE",
            json!({"guild_id": s(G), "user": {"id": s(ALICE)}, "roles": [], "communication_disabled_until": "soon"}),
            GuildError::WrongType("member.communication_disabled_until"),
        ),
        (
            "GUILD_MEMBER_ADD",
            json!({"guild_id": s(G), "roles": []}),
            GuildError::Missing("member.user"),
        ),
        (
            "GUILD_MEMBER_REMOVE",
            json!({"guild_id": s(G), "user": 5}),
            GuildError::WrongType("user"),
        ),
        (
            "GUILD_UPDATE",
            json!({"id": s(G), "owner_id": s(OWNER), "roles": [{"id": "1"}]}),
            GuildError::Missing("role.permissions"),
        ),
        ("THREAD_UPDATE", json!([]), GuildError::NotAnObject),
    ];
    for (name, d, want) in cases {
        assert_eq!(m.apply(name, &d), Err(want), "{name} {d}");
        assert_eq!(m, before, "{name}: an error changes nothing");
    }
    assert_eq!(
        GuildModel::from_guild_create(&json!({"id": s(G), "unavailable": true}), BOT),
        Err(GuildError::Unavailable)
    );
    assert_eq!(
        GuildModel::from_guild_create(&json!({"id": s(G), "owner_id": "1"}), BOT),
        Err(GuildError::Missing("roles"))
    );
    assert_eq!(
        GuildError::WrongType("role.permissions").to_string(),
        "field `role.permissions` has the wrong type"
    );
}

#[test]
fn access_serializes_to_the_contract_event() {
    let m = model(&basic());
    let a = m.access(BOB, NOW);
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        json!({"guildId": "100", "channels": {
            "300": {"name": "ch300", "type": 0, "parentId": null,
                    "can": ["view", "history", "send", "react", "connect", "moveMembers", "muteMembers"]},
            "301": {"name": "ch301", "type": 2, "parentId": null,
                    "can": ["view", "history", "send", "react", "connect", "moveMembers", "muteMembers"]},
            "302": {"name": "thread302", "type": 11, "parentId": "300",
                    "can": ["view", "history", "send", "react", "connect", "moveMembers", "muteMembers"]},
            "303": {"name": "thread303", "type": 12, "parentId": "300",
                    "can": ["view", "history", "send", "react", "connect", "moveMembers", "muteMembers"]}
        }})
    );
    assert_eq!(a, m.access(BOB, NOW + 1), "unchanged access compares equal");
    assert_ne!(a, m.access(ALICE, NOW));
    assert_eq!(
        format!("{:?}", Can::VIEW.with(Can::SEND)),
        r#"["view", "send"]"#
    );
    assert_eq!(a.len(), 4);
    assert_eq!(a.guild_id(), G);
    assert_eq!(
        a.channels().map(|(id, _)| id).collect::<Vec<_>>(),
        [TEXT, VOICE, THREAD, PRIVATE]
    );
}

#[test]
fn snapshot_round_trips_a_real_shaped_guild() {
    let mut m = model(&basic());
    let _ = m.upsert_member_json(&member(42, &[MOD], Some(NOW + 1)), NOW);
    let back = GuildModel::from_guild_create(&m.snapshot(), BOT).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.member(42).unwrap().fetched_at_ms, Some(NOW));
}

// ---- property tests: the model against Discord's pseudocode ----

/// Bits the random guilds draw from: the ones the rules single out.
const BITS: [P; 14] = [
    P::VIEW_CHANNEL,
    P::SEND_MESSAGES,
    P::READ_MESSAGE_HISTORY,
    P::ADD_REACTIONS,
    P::CONNECT,
    P::MOVE_MEMBERS,
    P::MUTE_MEMBERS,
    P::MANAGE_THREADS,
    P::SEND_MESSAGES_IN_THREADS,
    P::EMBED_LINKS,
    P::MENTION_EVERYONE,
    P::SPEAK,
    P::MANAGE_GUILD,
    P::MANAGE_CHANNELS,
];

fn perms() -> impl Strategy<Value = u64> {
    // ADMINISTRATOR rarely, so overwrites matter most of the time.
    (any::<u16>(), 0u8..20).prop_map(|(mask, admin)| {
        let mut p = BITS
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .fold(0, |acc, (_, b)| acc | b.bits());
        if admin == 0 {
            p |= P::ADMINISTRATOR.bits();
        }
        p
    })
}

const ROLES: [u64; 5] = [G, 2001, 2002, 2003, 2004];
const USERS: [u64; 5] = [BOT, 3001, 3002, 3003, 3004];

#[derive(Debug, Clone)]
struct RefChannel {
    id: u64,
    kind: u8,
    parent: Option<u64>,
    /// (id, type, allow, deny)
    overwrites: Vec<(u64, u8, u64, u64)>,
}

#[derive(Debug, Clone)]
struct RefMember {
    user: u64,
    roles: Vec<u64>,
    until: Option<u64>,
}

#[derive(Debug, Clone)]
struct RefGuild {
    owner: u64,
    roles: Vec<(u64, u64)>,
    channels: Vec<RefChannel>,
    members: Vec<RefMember>,
}

fn overwrite_strategy() -> impl Strategy<Value = (u64, u8, u64, u64)> {
    (
        prop_oneof![
            proptest::sample::select(ROLES.to_vec()).prop_map(|id| (id, 0u8)),
            proptest::sample::select(USERS.to_vec()).prop_map(|id| (id, 1u8)),
        ],
        perms(),
        perms(),
    )
        .prop_map(|((id, kind), allow, deny)| (id, kind, allow, deny))
}

fn guild_strategy() -> impl Strategy<Value = RefGuild> {
    let plain = (
        proptest::sample::select(vec![0u8, 2, 4, 5, 13, 15]),
        proptest::collection::vec(overwrite_strategy(), 0..5),
    );
    let threads = proptest::collection::vec(
        (proptest::sample::select(vec![10u8, 11, 12]), 0usize..8),
        0..4,
    );
    let member = (
        proptest::sample::subsequence(vec![2001u64, 2002, 2003, 2004, 2999], 0..=5),
        prop_oneof![
            Just(None),
            Just(Some(NOW - 1)),
            Just(Some(NOW)),
            Just(Some(NOW + 1000))
        ],
        proptest::bool::weighted(0.85),
    );
    (
        proptest::sample::select(vec![BOT, 3001, 3002, 9999]),
        proptest::collection::vec(perms(), ROLES.len()),
        proptest::collection::vec(plain, 1..6),
        threads,
        proptest::collection::vec(member, USERS.len()),
    )
        .prop_map(|(owner, role_perms, plain, threads, members)| {
            let mut channels: Vec<RefChannel> = plain
                .into_iter()
                .enumerate()
                .map(|(i, (kind, overwrites))| RefChannel {
                    id: 4000 + i as u64,
                    kind,
                    parent: None,
                    overwrites,
                })
                .collect();
            for (i, (kind, parent)) in threads.into_iter().enumerate() {
                // Parents: a channel, sometimes an unknown id or another thread.
                channels.push(RefChannel {
                    id: 5000 + i as u64,
                    kind,
                    parent: Some(if parent < 6 {
                        4000 + parent as u64
                    } else {
                        5000
                    }),
                    overwrites: vec![],
                });
            }
            RefGuild {
                owner,
                roles: ROLES.iter().copied().zip(role_perms).collect(),
                channels,
                members: USERS
                    .iter()
                    .zip(members)
                    .filter(|(_, (_, _, present))| *present)
                    .map(|(u, (roles, until, _))| RefMember {
                        user: *u,
                        roles,
                        until,
                    })
                    .collect(),
            }
        })
}

fn to_json(g: &RefGuild) -> Value {
    let chan = |c: &RefChannel| {
        json!({"id": s(c.id), "type": c.kind, "name": format!("c{}", c.id),
               "parent_id": c.parent.map(s),
               "permission_overwrites": c.overwrites.iter()
                   .map(|(id, k, a, d)| json!({"id": s(*id), "type": k, "allow": s(*a), "deny": s(*d)}))
                   .collect::<Vec<_>>()})
    };
    json!({
        "id": s(G), "owner_id": s(g.owner),
        "roles": g.roles.iter().map(|(id, p)| json!({"id": s(*id), "name": "r", "position": 0, "permissions": s(*p)})).collect::<Vec<_>>(),
        "channels": g.channels.iter().filter(|c| c.kind < 10 || c.kind > 12).map(chan).collect::<Vec<_>>(),
        "threads": g.channels.iter().filter(|c| (10..=12).contains(&c.kind)).map(chan).collect::<Vec<_>>(),
        "members": g.members.iter().map(|m| member(m.user, &m.roles, m.until)).collect::<Vec<_>>(),
    })
}

/// Discord's pseudocode, nearly word for word, plus the documented implicit,
/// timeout, thread and bot rules. Deliberately naive: dictionaries rebuilt per call.
mod reference {
    use super::*;

    const ALL: u64 = u64::MAX;
    const ADMINISTRATOR: u64 = 1 << 3;
    const VIEW_CHANNEL: u64 = 1 << 10;
    const SEND_MESSAGES: u64 = 1 << 11;
    const READ_MESSAGE_HISTORY: u64 = 1 << 16;
    const CONNECT: u64 = 1 << 20;
    const MANAGE_THREADS: u64 = 1 << 34;
    const SEND_MESSAGES_IN_THREADS: u64 = 1 << 38;

    pub(super) fn compute_base_permissions(member: &RefMember, guild: &RefGuild) -> u64 {
        if guild.owner == member.user {
            return ALL;
        }
        let roles: HashMap<u64, u64> = guild.roles.iter().copied().collect();
        let mut permissions = roles.get(&G).copied().unwrap_or(0);
        for role in &member.roles {
            permissions |= roles.get(role).copied().unwrap_or(0);
        }
        if permissions & ADMINISTRATOR == ADMINISTRATOR {
            return ALL;
        }
        permissions
    }

    pub(super) fn compute_overwrites(base: u64, member: &RefMember, channel: &RefChannel) -> u64 {
        if base & ADMINISTRATOR == ADMINISTRATOR {
            return ALL;
        }
        let mut permissions = base;
        // Keyed by (id, type): role and user ids never collide in Discord.
        let overwrites: HashMap<(u64, u8), (u64, u64)> = channel
            .overwrites
            .iter()
            .map(|(id, k, a, d)| ((*id, *k), (*a, *d)))
            .collect();
        if let Some((allow, deny)) = overwrites.get(&(G, 0)) {
            permissions &= !deny;
            permissions |= allow;
        }
        let (mut allow, mut deny) = (0, 0);
        for role_id in &member.roles {
            if let Some((a, d)) = overwrites.get(&(*role_id, 0)) {
                allow |= a;
                deny |= d;
            }
        }
        permissions &= !deny;
        permissions |= allow;
        if let Some((a, d)) = overwrites.get(&(member.user, 1)) {
            permissions &= !d;
            permissions |= a;
        }
        permissions
    }

    fn of_member(guild: &RefGuild, user: u64, channel: u64, now: u64) -> u64 {
        let Some(member) = guild.members.iter().find(|m| m.user == user) else {
            return 0;
        };
        let Some(ch) = guild.channels.iter().find(|c| c.id == channel) else {
            return 0;
        };
        let thread = (10..=12).contains(&ch.kind);
        let target = if thread {
            match guild.channels.iter().find(|c| Some(c.id) == ch.parent) {
                Some(p) if !(10..=12).contains(&p.kind) => p,
                _ => return 0,
            }
        } else {
            ch
        };
        let base = compute_base_permissions(member, guild);
        let mut p = compute_overwrites(base, member, target);
        if p & VIEW_CHANNEL == 0 {
            return 0;
        }
        if thread {
            if ch.kind == 12 && p & MANAGE_THREADS == 0 {
                return 0;
            }
            p &= !SEND_MESSAGES;
            if p & SEND_MESSAGES_IN_THREADS == 0 {
                p &= !Permissions::SEND_DEPENDENT.bits();
            }
        } else {
            if p & SEND_MESSAGES == 0 {
                p &= !Permissions::SEND_DEPENDENT.bits();
            }
            if (ch.kind == 2 || ch.kind == 13) && p & CONNECT == 0 {
                p &= !Permissions::CONNECT_DEPENDENT.bits();
            }
        }
        if member.until.is_some_and(|t| t > now) && base != ALL {
            p &= VIEW_CHANNEL | READ_MESSAGE_HISTORY;
        }
        p
    }

    pub(super) fn permissions(guild: &RefGuild, user: u64, channel: u64, now: u64) -> u64 {
        of_member(guild, user, channel, now) & of_member(guild, BOT, channel, now)
    }

    pub(super) fn base(guild: &RefGuild, user: u64, now: u64) -> u64 {
        let Some(member) = guild.members.iter().find(|m| m.user == user) else {
            return 0;
        };
        let base = compute_base_permissions(member, guild);
        if member.until.is_some_and(|t| t > now) && base != ALL {
            base & (VIEW_CHANNEL | READ_MESSAGE_HISTORY)
        } else {
            base
        }
    }
}

/// Turns model `from` into `to` with dispatches only.
fn events_between(from: &RefGuild, to: &RefGuild) -> Vec<(&'static str, Value)> {
    let to_json = to_json(to);
    let mut out = Vec::new();
    for (id, _) in &from.roles {
        if !to.roles.iter().any(|(t, _)| t == id) {
            out.push((
                "GUILD_ROLE_DELETE",
                json!({"guild_id": s(G), "role_id": s(*id)}),
            ));
        }
    }
    for r in to_json["roles"].as_array().unwrap() {
        out.push(("GUILD_ROLE_UPDATE", json!({"guild_id": s(G), "role": r})));
    }
    for c in &from.channels {
        if !to.channels.iter().any(|t| t.id == c.id) {
            let name = if (10..=12).contains(&c.kind) {
                "THREAD_DELETE"
            } else {
                "CHANNEL_DELETE"
            };
            out.push((
                name,
                json!({"id": s(c.id), "guild_id": s(G), "type": c.kind}),
            ));
        }
    }
    for (list, name) in [("channels", "CHANNEL_UPDATE"), ("threads", "THREAD_CREATE")] {
        for c in to_json[list].as_array().unwrap() {
            let mut c = c.clone();
            c["guild_id"] = json!(s(G));
            out.push((name, c));
        }
    }
    for m in &from.members {
        if !to.members.iter().any(|t| t.user == m.user) {
            out.push((
                "GUILD_MEMBER_REMOVE",
                json!({"guild_id": s(G), "user": {"id": s(m.user)}}),
            ));
        }
    }
    for m in to_json["members"].as_array().unwrap() {
        let mut m = m.clone();
        m["guild_id"] = json!(s(G));
        out.push(("GUILD_MEMBER_UPDATE", m));
    }
    let mut update = json!({"id": s(G), "owner_id": s(to.owner), "name": "relay"});
    update["roles"] = to_json["roles"].clone();
    out.push(("GUILD_UPDATE", update));
    out
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        proptest::sample::select(vec![s(G), s(MOD), s(TEXT), s(ALICE), s(BOT)])
            .prop_map(Value::String),
        "[0-9]{1,21}".prop_map(Value::String),
        ".{0,12}".prop_map(Value::String),
        Just(json!("2030-01-01T00:00:00.000000+00:00")),
    ];
    let key = prop_oneof![
        proptest::sample::select(vec![
            "id",
            "guild_id",
            "owner_id",
            "role_id",
            "role",
            "roles",
            "permissions",
            "position",
            "name",
            "user",
            "type",
            "allow",
            "deny",
            "parent_id",
            "permission_overwrites",
            "channels",
            "threads",
            "members",
            "communication_disabled_until",
            "unavailable",
            "relay_fetched_at_ms",
        ])
        .prop_map(String::from),
        ".{0,6}",
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..10)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `permissions`, `base_permissions` and `access` agree with the pseudocode for
    /// every user (members, non-members, the owner, the bot) in every channel.
    #[test]
    fn permissions_match_the_reference(g in guild_strategy(), now_offset in 0u64..2) {
        let now = NOW + now_offset * 2000;
        let m = GuildModel::from_guild_create(&to_json(&g), BOT).unwrap();
        for user in USERS.iter().copied().chain([9999]) {
            let access = m.access(user, now);
            prop_assert_eq!(m.base_permissions(user, now).bits(), reference::base(&g, user, now));
            let mut viewable = 0;
            for ch in g.channels.iter().map(|c| c.id).chain([1]) {
                let want = reference::permissions(&g, user, ch, now);
                let got = m.permissions(user, ch, now);
                prop_assert_eq!(got.bits(), want, "user {} channel {}: {:?} vs {:?}", user, ch, got, Permissions(want));
                prop_assert_eq!(access.may_view(ch), want & P::VIEW_CHANNEL.bits() != 0);
                if access.may_view(ch) {
                    viewable += 1;
                    let thread = m.channel(ch).unwrap().is_thread();
                    prop_assert_eq!(access.can(ch), can(Permissions(want), thread));
                }
            }
            prop_assert_eq!(access.len(), viewable);
        }
    }

    /// Members with equal access keys have equal access (what lets a caller
    /// compute `access` once per key).
    #[test]
    fn equal_access_keys_mean_equal_access(g in guild_strategy(), now_offset in 0u64..2) {
        let now = NOW + now_offset * 2000;
        let m = GuildModel::from_guild_create(&to_json(&g), BOT).unwrap();
        let overwritten = m.users_with_overwrites();
        let users: Vec<u64> = USERS.iter().copied().chain([9999, 9998]).collect();
        for a in &users {
            for b in &users {
                if m.access_key(*a, now, &overwritten) == m.access_key(*b, now, &overwritten) {
                    prop_assert_eq!(m.access(*a, now), m.access(*b, now), "users {} and {}", a, b);
                }
            }
        }
    }

    /// The GUILD_CREATE-shaped snapshot rebuilds an equal model, REST members included.
    #[test]
    fn snapshot_round_trips(g in guild_strategy(), fetched in proptest::option::of(any::<u64>())) {
        let mut m = GuildModel::from_guild_create(&to_json(&g), BOT).unwrap();
        if let Some(at) = fetched {
            m.upsert_member_json(&member(7777, &[2001], Some(NOW)), at).unwrap();
        }
        let back = GuildModel::from_guild_create(&m.snapshot(), BOT).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.snapshot(), m.snapshot());
    }

    /// Dispatches that turn guild `a` into guild `b` give the model built from `b`,
    /// bot cache and all.
    #[test]
    fn dispatches_reach_the_same_model(a in guild_strategy(), b in guild_strategy()) {
        let mut m = GuildModel::from_guild_create(&to_json(&a), BOT).unwrap();
        for (name, d) in events_between(&a, &b) {
            let _ = m.apply(name, &d).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
        }
        let want = GuildModel::from_guild_create(&to_json(&b), BOT).unwrap();
        prop_assert_eq!(m, want);
    }

    /// No JSON under any event name panics, and an error leaves the model as it was.
    #[test]
    fn any_json_is_safe(g in guild_strategy(), steps in proptest::collection::vec(
        (proptest::sample::select(GUILD_EVENTS.to_vec()), arb_json()), 1..8)) {
        let mut m = GuildModel::from_guild_create(&to_json(&g), BOT).unwrap();
        for (name, d) in &steps {
            let before = m.clone();
            if m.apply(name, d).is_err() {
                prop_assert_eq!(&m, &before);
            }
            let _ = m.upsert_member_json(d, NOW);
            let _ = GuildModel::from_guild_create(d, BOT);
            let _ = m.access(ALICE, NOW);
        }
        let back = GuildModel::from_guild_create(&m.snapshot(), BOT).unwrap();
        prop_assert_eq!(back, m);
    }

    /// Real-shaped events with one field replaced by arbitrary JSON never panic.
    #[test]
    fn mutated_real_events_are_safe(which in 0usize..5, field in 0usize..12, junk in arb_json()) {
        let mut d = match which {
            0 => json!({"guild_id": s(G), "role": role(MOD, P::VIEW_CHANNEL)}),
            1 => channel(TEXT, 0, vec![ow(G, 0, P::NONE, P::VIEW_CHANNEL)]),
            2 => { let mut m = member(ALICE, &[MOD], Some(NOW)); m["guild_id"] = json!(s(G)); m }
            3 => thread(THREAD, 11, TEXT),
            _ => basic(),
        };
        let keys: Vec<String> = d.as_object().unwrap().keys().cloned().collect();
        let key = keys[field % keys.len()].clone();
        d[key.as_str()] = junk;
        let mut m = model(&basic());
        for name in GUILD_EVENTS {
            let before = m.clone();
            if m.apply(name, &d).is_err() {
                prop_assert_eq!(&m, &before);
            }
        }
        let _ = GuildModel::from_guild_create(&d, BOT);
    }
}

/// The committed fuzz seeds pass the fuzz entry's own checks.
#[cfg(feature = "fuzzing")]
#[test]
fn fuzz_seeds_pass() {
    for seed in [
        &include_bytes!("../../../../fuzz/corpus/seed-discord_guild/guild_create.json")[..],
        include_bytes!("../../../../fuzz/corpus/seed-discord_guild/role_update.json"),
        include_bytes!("../../../../fuzz/corpus/seed-discord_guild/channel_update.json"),
        include_bytes!("../../../../fuzz/corpus/seed-discord_guild/member_update.json"),
        include_bytes!("../../../../fuzz/corpus/seed-discord_guild/rest_member.json"),
    ] {
        let d: Value = serde_json::from_slice(seed).expect("seeds are JSON");
        assert!(d.is_object() || d.is_array());
        fuzz_guild(seed);
    }
    let created = serde_json::from_slice(include_bytes!(
        "../../../../fuzz/corpus/seed-discord_guild/guild_create.json"
    ))
    .unwrap();
    assert!(GuildModel::from_guild_create(&created, 900).is_ok());
}

#[test]
fn a_repeated_overwrite_id_keeps_its_last_entry() {
    let m = with_overwrites(vec![
        ow(G, 0, P::NONE, P::VIEW_CHANNEL),
        ow(ALICE, 1, P::NONE, P::VIEW_CHANNEL),
        ow(G, 0, P::NONE, P::NONE),
        ow(ALICE, 1, P::NONE, P::ADD_REACTIONS),
    ]);
    let p = m.permissions(ALICE, TEXT, NOW);
    assert!(p.contains(P::VIEW_CHANNEL));
    assert!(!p.contains(P::ADD_REACTIONS));
}
