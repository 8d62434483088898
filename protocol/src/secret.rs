//! Secret values (`LINK_TOKEN`, `SESSION_SECRET`, `DISCORD_BOT_TOKEN`) and the
//! rule that they never reach a log line, an HTTP response or a browser
//! (CONTRACT.md §1, spec FR-010).
//!
//! A [`Secret`] prints as `[redacted]` through both `Debug` and `Display`, so a
//! config struct can derive `Debug`, be logged whole, and still leak nothing.
//! The only way to the text is [`Secret::expose`], which is easy to grep for.
//! Comparing a presented bearer token goes through [`Secret::eq_bytes`], whose
//! running time does not depend on where the first differing byte is.

use std::fmt;

/// What a secret prints as.
pub const REDACTED: &str = "[redacted]";

/// A secret string that never shows itself in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret text, for the few places that must use it: signing keys,
    /// the link's `Authorization` header, Discord's `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares `other` with the secret in time that depends only on the two
    /// lengths, never on the position of the first difference, so a client
    /// timing the link's 401 cannot recover the token byte by byte. A length
    /// difference still fails (after the same scan), which leaks only the length.
    pub fn eq_bytes(&self, other: &[u8]) -> bool {
        let mine = self.0.as_bytes();
        // Scan the longer of the two so the loop count depends on lengths only.
        let n = mine.len().max(other.len());
        let mut diff = u8::from(mine.len() != other.len());
        for i in 0..n {
            let a = mine.get(i).copied().unwrap_or(0);
            let b = other.get(i).copied().unwrap_or(0);
            diff |= a ^ b;
        }
        // black_box keeps the optimiser from turning the fold into an early exit.
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn eq_bytes_cases() {
        let s = Secret::new("abc");
        assert!(s.eq_bytes(b"abc"));
        assert!(!s.eq_bytes(b"abd"));
        assert!(!s.eq_bytes(b"ab"));
        assert!(!s.eq_bytes(b"abc\0"));
        assert!(!s.eq_bytes(b""));
        assert!(Secret::new("").eq_bytes(b""));
        assert!(!Secret::new("").eq_bytes(b"\0"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn eq_bytes_agrees_with_plain_equality(a in ".{0,40}", b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let s = Secret::new(a.clone());
            prop_assert_eq!(s.eq_bytes(&b), a.as_bytes() == b.as_slice());
            prop_assert!(s.eq_bytes(a.as_bytes()));
        }
    }
}
