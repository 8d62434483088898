//! Discord permission bit sets: the [`Permissions`] value, its bits and their
//! Discord names, and reading the decimal strings Discord sends them as.
//!
//! The algorithm that combines roles and overwrites into a member's permissions in
//! a channel lives with the guild it needs ([`crate::discord::guild`]); this module
//! is only the value type, so anything (a 403 answer, a test) can name a bit.
//!
//! Facts (Discord's `developers/topics/permissions.mdx`): bit sets travel as decimal
//! *strings* because they exceed 32 bits (and JavaScript's safe integers, one day);
//! they fit a `u64` today. A string that is not a `u64` is an error, never 0: a
//! permission set read as "nothing" would hide a deny just as surely as grant.

use std::fmt;
use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};

/// A set of Discord permission bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(pub u64);

/// Discord's name for every documented bit, by bit number (bit 47 is unassigned).
const NAMES: [(u32, &str); 52] = [
    (0, "CREATE_INSTANT_INVITE"),
    (1, "KICK_MEMBERS"),
    (2, "BAN_MEMBERS"),
    (3, "ADMINISTRATOR"),
    (4, "MANAGE_CHANNELS"),
    (5, "MANAGE_GUILD"),
    (6, "ADD_REACTIONS"),
    (7, "VIEW_AUDIT_LOG"),
    (8, "PRIORITY_SPEAKER"),
    (9, "STREAM"),
    (10, "VIEW_CHANNEL"),
    (11, "SEND_MESSAGES"),
    (12, "SEND_TTS_MESSAGES"),
    (13, "MANAGE_MESSAGES"),
    (14, "EMBED_LINKS"),
    (15, "ATTACH_FILES"),
    (16, "READ_MESSAGE_HISTORY"),
    (17, "MENTION_EVERYONE"),
    (18, "USE_EXTERNAL_EMOJIS"),
    (19, "VIEW_GUILD_INSIGHTS"),
    (20, "CONNECT"),
    (21, "SPEAK"),
    (22, "MUTE_MEMBERS"),
    (23, "DEAFEN_MEMBERS"),
    (24, "MOVE_MEMBERS"),
    (25, "USE_VAD"),
    (26, "CHANGE_NICKNAME"),
    (27, "MANAGE_NICKNAMES"),
    (28, "MANAGE_ROLES"),
    (29, "MANAGE_WEBHOOKS"),
    (30, "MANAGE_GUILD_EXPRESSIONS"),
    (31, "USE_APPLICATION_COMMANDS"),
    (32, "REQUEST_TO_SPEAK"),
    (33, "MANAGE_EVENTS"),
    (34, "MANAGE_THREADS"),
    (35, "CREATE_PUBLIC_THREADS"),
    (36, "CREATE_PRIVATE_THREADS"),
    (37, "USE_EXTERNAL_STICKERS"),
    (38, "SEND_MESSAGES_IN_THREADS"),
    (39, "USE_EMBEDDED_ACTIVITIES"),
    (40, "MODERATE_MEMBERS"),
    (41, "VIEW_CREATOR_MONETIZATION_ANALYTICS"),
    (42, "USE_SOUNDBOARD"),
    (43, "CREATE_GUILD_EXPRESSIONS"),
    (44, "CREATE_EVENTS"),
    (45, "USE_EXTERNAL_SOUNDS"),
    (46, "SEND_VOICE_MESSAGES"),
    (48, "SET_VOICE_CHANNEL_STATUS"),
    (49, "SEND_POLLS"),
    (50, "USE_EXTERNAL_APPS"),
    (51, "PIN_MESSAGES"),
    (52, "BYPASS_SLOWMODE"),
];

impl Permissions {
    /// No permission.
    pub const NONE: Self = Self(0);
    /// Every bit, known or future: what the owner and `ADMINISTRATOR` hold.
    pub const ALL: Self = Self(u64::MAX);

    /// `MANAGE_CHANNELS` (1 << 4); implicitly lost in a voice channel without `CONNECT`.
    pub const MANAGE_CHANNELS: Self = Self(1 << 4);
    /// `ADMINISTRATOR` (1 << 3): all permissions, overwrites bypassed.
    pub const ADMINISTRATOR: Self = Self(1 << 3);
    /// `MANAGE_GUILD` (1 << 5): with `ADMINISTRATOR`, receives every `error` event.
    pub const MANAGE_GUILD: Self = Self(1 << 5);
    /// `ADD_REACTIONS` (1 << 6).
    pub const ADD_REACTIONS: Self = Self(1 << 6);
    /// `PRIORITY_SPEAKER` (1 << 8).
    pub const PRIORITY_SPEAKER: Self = Self(1 << 8);
    /// `STREAM` (1 << 9).
    pub const STREAM: Self = Self(1 << 9);
    /// `VIEW_CHANNEL` (1 << 10): without it, nothing else in the channel counts.
    pub const VIEW_CHANNEL: Self = Self(1 << 10);
    /// `SEND_MESSAGES` (1 << 11): not in threads, see [`Self::SEND_MESSAGES_IN_THREADS`].
    pub const SEND_MESSAGES: Self = Self(1 << 11);
    /// `SEND_TTS_MESSAGES` (1 << 12).
    pub const SEND_TTS_MESSAGES: Self = Self(1 << 12);
    /// `EMBED_LINKS` (1 << 14).
    pub const EMBED_LINKS: Self = Self(1 << 14);
    /// `ATTACH_FILES` (1 << 15).
    pub const ATTACH_FILES: Self = Self(1 << 15);
    /// `READ_MESSAGE_HISTORY` (1 << 16).
    pub const READ_MESSAGE_HISTORY: Self = Self(1 << 16);
    /// `MENTION_EVERYONE` (1 << 17).
    pub const MENTION_EVERYONE: Self = Self(1 << 17);
    /// `CONNECT` (1 << 20): without it, a voice channel's other voice bits are void.
    pub const CONNECT: Self = Self(1 << 20);
    /// `SPEAK` (1 << 21).
    pub const SPEAK: Self = Self(1 << 21);
    /// `MUTE_MEMBERS` (1 << 22).
    pub const MUTE_MEMBERS: Self = Self(1 << 22);
    /// `DEAFEN_MEMBERS` (1 << 23).
    pub const DEAFEN_MEMBERS: Self = Self(1 << 23);
    /// `MOVE_MEMBERS` (1 << 24).
    pub const MOVE_MEMBERS: Self = Self(1 << 24);
    /// `USE_VAD` (1 << 25).
    pub const USE_VAD: Self = Self(1 << 25);
    /// `MANAGE_ROLES` (1 << 28); implicitly lost in a voice channel without `CONNECT`.
    pub const MANAGE_ROLES: Self = Self(1 << 28);
    /// `MANAGE_WEBHOOKS` (1 << 29).
    pub const MANAGE_WEBHOOKS: Self = Self(1 << 29);
    /// `REQUEST_TO_SPEAK` (1 << 32).
    pub const REQUEST_TO_SPEAK: Self = Self(1 << 32);
    /// `MANAGE_THREADS` (1 << 34): sees every private thread.
    pub const MANAGE_THREADS: Self = Self(1 << 34);
    /// `SEND_MESSAGES_IN_THREADS` (1 << 38): posting in a thread.
    pub const SEND_MESSAGES_IN_THREADS: Self = Self(1 << 38);
    /// `USE_EMBEDDED_ACTIVITIES` (1 << 39).
    pub const USE_EMBEDDED_ACTIVITIES: Self = Self(1 << 39);
    /// `USE_SOUNDBOARD` (1 << 42).
    pub const USE_SOUNDBOARD: Self = Self(1 << 42);
    /// `USE_EXTERNAL_SOUNDS` (1 << 45).
    pub const USE_EXTERNAL_SOUNDS: Self = Self(1 << 45);
    /// `SET_VOICE_CHANNEL_STATUS` (1 << 48).
    pub const SET_VOICE_CHANNEL_STATUS: Self = Self(1 << 48);

    /// What a timed-out member keeps (owner and `ADMINISTRATOR` are exempt).
    pub const TIMEOUT_KEEPS: Self = Self(Self::VIEW_CHANNEL.0 | Self::READ_MESSAGE_HISTORY.0);
    /// What "cannot send" implicitly takes away with `SEND_MESSAGES`.
    pub const SEND_DEPENDENT: Self = Self(
        Self::MENTION_EVERYONE.0
            | Self::SEND_TTS_MESSAGES.0
            | Self::ATTACH_FILES.0
            | Self::EMBED_LINKS.0,
    );
    /// What "cannot connect" implicitly takes away in a voice or stage channel: the
    /// voice bits, and managing the channel (Discord's "such as MANAGE_CHANNEL").
    pub const CONNECT_DEPENDENT: Self = Self(
        Self::PRIORITY_SPEAKER.0
            | Self::STREAM.0
            | Self::SPEAK.0
            | Self::MUTE_MEMBERS.0
            | Self::DEAFEN_MEMBERS.0
            | Self::MOVE_MEMBERS.0
            | Self::USE_VAD.0
            | Self::REQUEST_TO_SPEAK.0
            | Self::USE_EMBEDDED_ACTIVITIES.0
            | Self::USE_SOUNDBOARD.0
            | Self::USE_EXTERNAL_SOUNDS.0
            | Self::SET_VOICE_CHANNEL_STATUS.0
            | Self::MANAGE_CHANNELS.0
            | Self::MANAGE_ROLES.0,
    );

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set here.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Discord's name for a single documented bit (`"SEND_MESSAGES"`), as a
    /// `403 missing_permission` answer names it; `None` for no bit, several bits or
    /// a bit Discord has not documented.
    pub fn name(self) -> Option<&'static str> {
        if !self.0.is_power_of_two() {
            return None;
        }
        let bit = self.0.trailing_zeros();
        NAMES.iter().find(|(b, _)| *b == bit).map(|(_, name)| *name)
    }

    /// Parses Discord's decimal-string form (`"2112"`): ASCII digits only, no sign,
    /// no spaces, at most `u64::MAX`.
    pub fn from_str_decimal(text: &str) -> Result<Self, PermissionsParseError> {
        if text.is_empty() {
            return Err(PermissionsParseError::Empty);
        }
        if !text.bytes().all(|c| c.is_ascii_digit()) {
            return Err(PermissionsParseError::NotDecimal);
        }
        text.parse::<u64>()
            .map(Self)
            .map_err(|_| PermissionsParseError::TooLarge)
    }

    /// The decimal-string form Discord sends.
    pub fn to_decimal_string(self) -> String {
        self.0.to_string()
    }
}

/// Why a permission string could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionsParseError {
    /// The string is empty.
    Empty,
    /// A character is not an ASCII digit (signs, spaces, hex and floats included).
    NotDecimal,
    /// More than 64 bits.
    TooLarge,
}

impl fmt::Display for PermissionsParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty permission string",
            Self::NotDecimal => "permission string is not decimal digits",
            Self::TooLarge => "permission string exceeds 64 bits",
        })
    }
}

impl std::error::Error for PermissionsParseError {}

impl fmt::Debug for Permissions {
    /// `Permissions(VIEW_CHANNEL | SEND_MESSAGES | 1<<60)`: names where known.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::ALL {
            return f.write_str("Permissions(ALL)");
        }
        f.write_str("Permissions(")?;
        let mut first = true;
        for bit in 0..64 {
            let one = Self(1 << bit);
            if !self.contains(one) {
                continue;
            }
            if !first {
                f.write_str(" | ")?;
            }
            first = false;
            match one.name() {
                Some(name) => f.write_str(name)?,
                None => write!(f, "1<<{bit}")?,
            }
        }
        if first {
            f.write_str("NONE")?;
        }
        f.write_str(")")
    }
}

impl BitOr for Permissions {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for Permissions {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for Permissions {
    type Output = Self;
    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}

impl BitAndAssign for Permissions {
    fn bitand_assign(&mut self, rhs: Self) {
        self.0 &= rhs.0;
    }
}

impl Not for Permissions {
    type Output = Self;
    fn not(self) -> Self {
        Self(!self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn bits_match_discords_table() {
        assert_eq!(Permissions::ADMINISTRATOR.bits(), 0x8);
        assert_eq!(Permissions::MANAGE_GUILD.bits(), 0x20);
        assert_eq!(Permissions::ADD_REACTIONS.bits(), 0x40);
        assert_eq!(Permissions::VIEW_CHANNEL.bits(), 0x400);
        assert_eq!(Permissions::SEND_MESSAGES.bits(), 0x800);
        assert_eq!(Permissions::READ_MESSAGE_HISTORY.bits(), 0x1_0000);
        assert_eq!(Permissions::CONNECT.bits(), 0x10_0000);
        assert_eq!(Permissions::MUTE_MEMBERS.bits(), 0x40_0000);
        assert_eq!(Permissions::MOVE_MEMBERS.bits(), 0x100_0000);
        assert_eq!(Permissions::MANAGE_WEBHOOKS.bits(), 0x2000_0000);
        assert_eq!(Permissions::SEND_MESSAGES_IN_THREADS.bits(), 0x40_0000_0000);
        // Discord's own example: Send Messages | Add Reactions.
        assert_eq!(
            Permissions::from_str_decimal("2112"),
            Ok(Permissions::SEND_MESSAGES | Permissions::ADD_REACTIONS)
        );
    }

    #[test]
    fn names_single_bits_only() {
        assert_eq!(Permissions::SEND_MESSAGES.name(), Some("SEND_MESSAGES"));
        assert_eq!(
            Permissions::SEND_MESSAGES_IN_THREADS.name(),
            Some("SEND_MESSAGES_IN_THREADS")
        );
        assert_eq!(Permissions::MOVE_MEMBERS.name(), Some("MOVE_MEMBERS"));
        assert_eq!(Permissions::NONE.name(), None);
        assert_eq!(Permissions::TIMEOUT_KEEPS.name(), None);
        assert_eq!(Permissions(1 << 47).name(), None, "unassigned");
        assert_eq!(Permissions(1 << 63).name(), None);
        let mut bits: Vec<u32> = NAMES.iter().map(|(b, _)| *b).collect();
        bits.dedup();
        assert_eq!(bits.len(), NAMES.len(), "sorted, no repeats");
        assert_eq!(
            format!("{:?}", Permissions::TIMEOUT_KEEPS | Permissions(1 << 60)),
            "Permissions(VIEW_CHANNEL | READ_MESSAGE_HISTORY | 1<<60)"
        );
        assert_eq!(format!("{:?}", Permissions::NONE), "Permissions(NONE)");
        assert_eq!(format!("{:?}", Permissions::ALL), "Permissions(ALL)");
    }

    #[test]
    fn decimal_strings_are_strict() {
        assert_eq!(Permissions::from_str_decimal("0"), Ok(Permissions::NONE));
        assert_eq!(
            Permissions::from_str_decimal("18446744073709551615"),
            Ok(Permissions::ALL)
        );
        assert_eq!(
            Permissions::from_str_decimal("18446744073709551616"),
            Err(PermissionsParseError::TooLarge)
        );
        assert_eq!(
            Permissions::from_str_decimal(""),
            Err(PermissionsParseError::Empty)
        );
        for bad in ["+1", "-1", " 1", "1 ", "0x40", "1.0", "1e3", "٣"] {
            assert_eq!(
                Permissions::from_str_decimal(bad),
                Err(PermissionsParseError::NotDecimal),
                "{bad}"
            );
        }
    }

    #[test]
    fn set_operations() {
        let p = Permissions::VIEW_CHANNEL | Permissions::SEND_MESSAGES;
        assert!(p.contains(Permissions::VIEW_CHANNEL));
        assert!(!p.contains(Permissions::VIEW_CHANNEL | Permissions::CONNECT));
        assert!(p.intersects(Permissions::VIEW_CHANNEL | Permissions::CONNECT));
        assert_eq!(p & !Permissions::SEND_MESSAGES, Permissions::VIEW_CHANNEL);
        let mut q = p;
        q &= Permissions::SEND_MESSAGES;
        q |= Permissions::CONNECT;
        assert_eq!(q, Permissions::SEND_MESSAGES | Permissions::CONNECT);
        assert!(Permissions::NONE.is_empty());
    }

    proptest! {
        #[test]
        fn decimal_round_trip(bits in any::<u64>()) {
            let p = Permissions(bits);
            prop_assert_eq!(Permissions::from_str_decimal(&p.to_decimal_string()), Ok(p));
        }

        #[test]
        fn never_panics(text in ".{0,30}") {
            let _ = Permissions::from_str_decimal(&text);
        }
    }
}
