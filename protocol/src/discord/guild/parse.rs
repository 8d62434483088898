//! Reading Discord's guild, role, channel, overwrite and member objects from
//! `serde_json::Value` into the model's parts, and writing them back (the
//! GUILD_CREATE-shaped snapshot).
//!
//! Like `dispatch.rs`, nothing here trusts the JSON: every field is matched on its
//! type and any surprise is a [`GuildError`] naming the field. The difference is
//! strictness: dispatch.rs forwards what it can, but a permission model that
//! skipped an unreadable overwrite would *grant* what the overwrite denied, so
//! here one bad field rejects the whole object and the model stays as it was.

use serde_json::{json, Map, Value};

use super::{Channel, GuildError, Member, Overwrite, OverwriteKind, Role};
use crate::discord::permissions::Permissions;
use crate::ids::{parse_rfc3339_ms, rfc3339_millis};

pub(super) type Fields = Map<String, Value>;

/// Non-Discord field of a snapshot's member: when relay learned it by REST.
pub(super) const FETCHED_AT: &str = "relay_fetched_at_ms";

pub(super) fn object<'a>(v: &'a Value, path: &'static str) -> Result<&'a Fields, GuildError> {
    match v {
        Value::Object(o) => Ok(o),
        Value::Null => Err(GuildError::Missing(path)),
        _ => Err(GuildError::WrongType(path)),
    }
}

/// A snowflake: a decimal string (Discord's form) or a non-negative integer.
fn snowflake(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) => {
            s.parse().ok()
        }
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

pub(super) fn opt_id(o: &Fields, key: &str, path: &'static str) -> Result<Option<u64>, GuildError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => snowflake(v).map(Some).ok_or(GuildError::WrongType(path)),
    }
}

pub(super) fn req_id(o: &Fields, key: &str, path: &'static str) -> Result<u64, GuildError> {
    opt_id(o, key, path)?.ok_or(GuildError::Missing(path))
}

/// An array that Discord may leave out (absent or `null` = empty).
pub(super) fn opt_array<'a>(
    o: &'a Fields,
    key: &str,
    path: &'static str,
) -> Result<&'a [Value], GuildError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(GuildError::WrongType(path)),
    }
}

pub(super) fn req_array<'a>(
    o: &'a Fields,
    key: &str,
    path: &'static str,
) -> Result<&'a [Value], GuildError> {
    match o.get(key) {
        None | Some(Value::Null) => Err(GuildError::Missing(path)),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(GuildError::WrongType(path)),
    }
}

fn permissions(o: &Fields, key: &str, path: &'static str) -> Result<Permissions, GuildError> {
    match o.get(key) {
        None | Some(Value::Null) => Err(GuildError::Missing(path)),
        Some(Value::String(s)) => {
            Permissions::from_str_decimal(s).map_err(|_| GuildError::WrongType(path))
        }
        Some(_) => Err(GuildError::WrongType(path)),
    }
}

/// A display string: absent or `null` reads as empty, another type is an error.
fn text(o: &Fields, key: &str, path: &'static str) -> Result<String, GuildError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(GuildError::WrongType(path)),
    }
}

/// A role object → `(id, role)`.
pub(super) fn role(v: &Value) -> Result<(u64, Role), GuildError> {
    let o = object(v, "role")?;
    let id = req_id(o, "id", "role.id")?;
    let position = match o.get("position") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n.as_i64().ok_or(GuildError::WrongType("role.position"))?,
        Some(_) => return Err(GuildError::WrongType("role.position")),
    };
    Ok((
        id,
        Role {
            permissions: permissions(o, "permissions", "role.permissions")?,
            position,
            name: text(o, "name", "role.name")?,
        },
    ))
}

fn overwrite(v: &Value) -> Result<Overwrite, GuildError> {
    let o = object(v, "overwrite")?;
    let kind = match o.get("type") {
        None | Some(Value::Null) => return Err(GuildError::Missing("overwrite.type")),
        Some(t) => match t.as_u64() {
            Some(0) => OverwriteKind::Role,
            Some(1) => OverwriteKind::Member,
            _ => return Err(GuildError::WrongType("overwrite.type")),
        },
    };
    Ok(Overwrite {
        id: req_id(o, "id", "overwrite.id")?,
        kind,
        allow: permissions(o, "allow", "overwrite.allow")?,
        deny: permissions(o, "deny", "overwrite.deny")?,
    })
}

/// A channel or thread object → `(id, channel)`. Missing `permission_overwrites`
/// means none (threads never carry them).
pub(super) fn channel(v: &Value) -> Result<(u64, Channel), GuildError> {
    let o = object(v, "channel")?;
    let id = req_id(o, "id", "channel.id")?;
    let kind = match o.get("type") {
        None | Some(Value::Null) => return Err(GuildError::Missing("channel.type")),
        Some(t) => t
            .as_u64()
            .and_then(|t| u8::try_from(t).ok())
            .ok_or(GuildError::WrongType("channel.type"))?,
    };
    let overwrites = opt_array(o, "permission_overwrites", "channel.permission_overwrites")?
        .iter()
        .map(overwrite)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        id,
        Channel::new(
            text(o, "name", "channel.name")?,
            kind,
            opt_id(o, "parent_id", "channel.parent_id")?,
            overwrites,
        ),
    ))
}

/// A guild member object (GUILD_CREATE's `members`, GUILD_MEMBER_ADD/UPDATE, the
/// REST member) → `(user id, roles, timeout)`, where the timeout is `None` when
/// the field is absent (a partial update keeps the old one) and `Some(None)` when
/// it is `null`.
pub(super) struct MemberFields {
    pub(super) user_id: u64,
    pub(super) roles: Vec<u64>,
    pub(super) timeout: Option<Option<u64>>,
    pub(super) fetched_at_ms: Option<u64>,
}

pub(super) fn member(v: &Value) -> Result<MemberFields, GuildError> {
    let o = object(v, "member")?;
    let user = match o.get("user") {
        None | Some(Value::Null) => return Err(GuildError::Missing("member.user")),
        Some(Value::Object(u)) => u,
        Some(_) => return Err(GuildError::WrongType("member.user")),
    };
    let user_id = req_id(user, "id", "member.user.id")?;
    let mut roles = req_array(o, "roles", "member.roles")?
        .iter()
        .map(|r| snowflake(r).ok_or(GuildError::WrongType("member.roles")))
        .collect::<Result<Vec<_>, _>>()?;
    // Sorted so overwrite matching is a binary search, and a snapshot round-trips.
    roles.sort_unstable();
    roles.dedup();
    let timeout = match o.get("communication_disabled_until") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(
            parse_rfc3339_ms(s)
                .ok_or(GuildError::WrongType("member.communication_disabled_until"))?,
        )),
        Some(_) => return Err(GuildError::WrongType("member.communication_disabled_until")),
    };
    let fetched_at_ms = match o.get(FETCHED_AT) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or(GuildError::WrongType(FETCHED_AT))?),
    };
    Ok(MemberFields {
        user_id,
        roles,
        timeout,
        fetched_at_ms,
    })
}

pub(super) fn role_json(id: u64, role: &Role) -> Value {
    json!({
        "id": id.to_string(),
        "name": role.name,
        "position": role.position,
        "permissions": role.permissions.to_decimal_string(),
    })
}

pub(super) fn channel_json(id: u64, channel: &Channel) -> Value {
    let overwrites: Vec<Value> = channel
        .permission_overwrites
        .iter()
        .map(|ow| {
            json!({
                "id": ow.id.to_string(),
                "type": match ow.kind { OverwriteKind::Role => 0, OverwriteKind::Member => 1 },
                "allow": ow.allow.to_decimal_string(),
                "deny": ow.deny.to_decimal_string(),
            })
        })
        .collect();
    json!({
        "id": id.to_string(),
        "type": channel.kind,
        "name": channel.name,
        "parent_id": channel.parent_id.map(|p| p.to_string()),
        "permission_overwrites": overwrites,
    })
}

pub(super) fn member_json(id: u64, member: &Member) -> Value {
    let mut m = json!({
        "user": {"id": id.to_string()},
        "roles": member.roles.iter().map(u64::to_string).collect::<Vec<_>>(),
        "communication_disabled_until": member.communication_disabled_until.map(rfc3339_millis),
    });
    if let Some(at) = member.fetched_at_ms {
        m[FETCHED_AT] = json!(at);
    }
    m
}
