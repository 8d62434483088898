//! Identifier and timestamp formatting from caller-supplied randomness and time.
//!
//! The driver draws the random bits and reads the wall clock; this module only
//! formats them, so ids and `sentAt` values are reproducible in tests.

use std::fmt::Write as _;

/// A W3C-trace-context-compatible trace id: 32 lowercase hex digits, never all zero.
pub fn trace_id(random: u128) -> String {
    let r = if random == 0 { 1 } else { random };
    format!("{r:032x}")
}

/// A request id in UUID version 4 text form (`xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx`).
pub fn request_id(random: u128) -> String {
    // Set the version (4) and variant (10xx) bits as RFC 9562 requires.
    let v = (random & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let h = format!("{v:032x}");
    let mut out = String::with_capacity(36);
    for (i, part) in [&h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]]
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.push('-');
        }
        out.push_str(part);
    }
    out
}

/// Formats Unix milliseconds as RFC 3339 UTC with milliseconds, e.g.
/// `2026-11-25T12:00:00.000Z` (the contract's `sentAt`).
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let ms = unix_ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut s = String::with_capacity(24);
    // Writing into a String cannot fail.
    let _ = write!(
        s,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    s
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        // Discord's example snowflake time (reference/discord.md §6).
        assert_eq!(
            rfc3339_millis(1_430_029_616_934),
            "2015-04-26T06:26:56.934Z"
        );
        assert_eq!(
            rfc3339_millis(1_795_651_199_999),
            "2026-11-25T23:59:59.999Z"
        );
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = request_id(u128::MAX);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(trace_id(0).len(), 32);
        assert_ne!(trace_id(0), "0".repeat(32));
    }

    proptest! {
        #[test]
        fn timestamps_are_ordered_and_well_formed(a in 0u64..10_000_000_000_000, b in 0u64..10_000_000_000_000) {
            let (sa, sb) = (rfc3339_millis(a), rfc3339_millis(b));
            prop_assert_eq!(sa.len(), 24);
            // Fixed-width text sorts like the instants it names.
            prop_assert_eq!(a.cmp(&b), sa.cmp(&sb));
        }

        #[test]
        fn distinct_randoms_give_distinct_trace_ids(a in any::<u128>(), b in any::<u128>()) {
            prop_assume!(a != b && a != 0 && b != 0);
            prop_assert_ne!(trace_id(a), trace_id(b));
        }
    }
}
