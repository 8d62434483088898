//! What one member may do in one guild, as the stream needs it: the channels the
//! member may view ([`Access::may_view`], checked per delivered event) and the
//! contract's `access` event data (CONTRACT.md §8) it serializes to.
//!
//! The channels are a `Vec` sorted by id, not a `HashSet`: for a guild's ~100
//! channels a binary search is ~7 compares on one cache-friendly array (measured
//! by `examples/access_cost.rs`), the value compares with `==` in one pass (a caller
//! sends the event only when it changed), and it serializes in a stable order.

use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};

/// What a member may do in one channel, as the contract names it. A small bit set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Can(u8);

impl Can {
    /// Nothing.
    pub const NONE: Self = Self(0);
    /// `view`: `VIEW_CHANNEL`.
    pub const VIEW: Self = Self(1 << 0);
    /// `history`: `READ_MESSAGE_HISTORY`.
    pub const HISTORY: Self = Self(1 << 1);
    /// `send`: `SEND_MESSAGES`, or `SEND_MESSAGES_IN_THREADS` in a thread.
    pub const SEND: Self = Self(1 << 2);
    /// `react`: `ADD_REACTIONS`.
    pub const REACT: Self = Self(1 << 3);
    /// `connect`: `CONNECT`.
    pub const CONNECT: Self = Self(1 << 4);
    /// `moveMembers`: `MOVE_MEMBERS`.
    pub const MOVE_MEMBERS: Self = Self(1 << 5);
    /// `muteMembers`: `MUTE_MEMBERS`.
    pub const MUTE_MEMBERS: Self = Self(1 << 6);

    /// Every flag with its contract name, in the contract's order.
    pub const NAMED: [(Self, &'static str); 7] = [
        (Self::VIEW, "view"),
        (Self::HISTORY, "history"),
        (Self::SEND, "send"),
        (Self::REACT, "react"),
        (Self::CONNECT, "connect"),
        (Self::MOVE_MEMBERS, "moveMembers"),
        (Self::MUTE_MEMBERS, "muteMembers"),
    ];

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with `other`'s flags added.
    #[must_use]
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The contract names of the flags set, in the contract's order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMED
            .into_iter()
            .filter(move |(flag, _)| self.contains(*flag))
            .map(|(_, name)| name)
    }
}

impl std::fmt::Debug for Can {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Serialize for Can {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for name in self.names() {
            seq.serialize_element(name)?;
        }
        seq.end()
    }
}

/// One viewable channel (or thread) of an [`Access`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelAccess {
    /// The channel's name.
    pub name: String,
    /// Discord's channel type (0 text, 2 voice, 4 category, 11 public thread, …).
    pub kind: u8,
    /// The category of a channel, the channel of a thread.
    pub parent_id: Option<u64>,
    /// What the member may do there.
    pub can: Can,
}

impl Serialize for ChannelAccess {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ChannelAccess", 4)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("type", &self.kind)?;
        st.serialize_field("parentId", &self.parent_id.map(|p| p.to_string()))?;
        st.serialize_field("can", &self.can)?;
        st.end()
    }
}

/// Every channel and thread of one guild a member may view, with what they may do
/// there. Serializes to the `access` event's data:
/// `{"guildId":"…","channels":{"<id>":{"name":…,"type":n,"parentId":…|null,"can":[…]}}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    guild_id: u64,
    /// Sorted by channel id, one entry per id, only channels with `VIEW_CHANNEL`.
    channels: Vec<(u64, ChannelAccess)>,
}

impl Access {
    /// An access listing nothing (a non-member's).
    pub fn empty(guild_id: u64) -> Self {
        Self {
            guild_id,
            channels: Vec::new(),
        }
    }

    /// From entries already sorted by id (the guild model iterates in id order).
    pub(super) fn from_sorted(guild_id: u64, channels: Vec<(u64, ChannelAccess)>) -> Self {
        debug_assert!(channels.windows(2).all(|w| w[0].0 < w[1].0));
        Self { guild_id, channels }
    }

    /// The guild.
    pub fn guild_id(&self) -> u64 {
        self.guild_id
    }

    /// Whether the member may view `channel` (a channel or thread id): the check
    /// made for every delivered event.
    pub fn may_view(&self, channel: u64) -> bool {
        self.channels
            .binary_search_by_key(&channel, |(id, _)| *id)
            .is_ok()
    }

    /// The member's access to `channel`, if they may view it.
    pub fn get(&self, channel: u64) -> Option<&ChannelAccess> {
        let at = self
            .channels
            .binary_search_by_key(&channel, |(id, _)| *id)
            .ok()?;
        Some(&self.channels[at].1)
    }

    /// What the member may do in `channel`; [`Can::NONE`] where they may not view.
    pub fn can(&self, channel: u64) -> Can {
        self.get(channel).map_or(Can::NONE, |c| c.can)
    }

    /// The viewable channels, by id.
    pub fn channels(&self) -> impl Iterator<Item = (u64, &ChannelAccess)> {
        self.channels.iter().map(|(id, c)| (*id, c))
    }

    /// How many channels the member may view.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether the member may view nothing.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

impl Serialize for Access {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Channels<'a>(&'a [(u64, ChannelAccess)]);
        impl Serialize for Channels<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(self.0.len()))?;
                for (id, c) in self.0 {
                    map.serialize_entry(&id.to_string(), c)?;
                }
                map.end()
            }
        }
        let mut st = s.serialize_struct("Access", 2)?;
        st.serialize_field("guildId", &self.guild_id.to_string())?;
        st.serialize_field("channels", &Channels(&self.channels))?;
        st.end()
    }
}
