//! Identifier and timestamp formatting from caller-supplied randomness and time,
//! and the one RFC 3339 reader (Discord's `communication_disabled_until`).
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

/// Reads an RFC 3339 date-time (`2021-12-10T16:31:10.123000+00:00`, `…Z`) as Unix
/// milliseconds; digits past the millisecond are dropped, so
/// `parse_rfc3339_ms(&rfc3339_millis(ms)) == Some(ms)`. `None` for anything else,
/// including instants before 1970 (nothing relay reads can be that old).
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0i64, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let sep = |at: usize, want: &[u8]| b.get(at).is_some_and(|c| want.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (h, mi, s) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    // 60 seconds: a leap second, read as the next instant's :00 would be; close enough.
    if d < 1 || d > days_in_month || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if sep(i, b".") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                ms = ms * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            ms *= 10;
        }
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && sep(i + 3, b":") => {
            let (oh, om) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    let secs =
        days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60;
    u64::try_from(secs.checked_mul(1000)? + ms).ok()
}

/// (year, month, day) → days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    fn rfc3339_reads_discords_forms() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2015-04-26T06:26:56.934000+00:00"),
            Some(1_430_029_616_934)
        );
        assert_eq!(
            parse_rfc3339_ms("2015-04-26T08:26:56.9349+02:00"),
            Some(1_430_029_616_934),
            "offsets apply, sub-millisecond digits are dropped"
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00.1Z"),
            Some(951_782_400_100)
        );
        for bad in [
            "",
            "2021-02-29T00:00:00Z",
            "2021-13-01T00:00:00Z",
            "2021-01-01T24:00:00Z",
            "2021-01-01T00:00:00",
            "2021-01-01T00:00:00.Z",
            "2021-01-01T00:00:00+0100",
            "1969-12-31T23:59:59Z",
            "２０２１-01-01T00:00:00Z",
            "2021-01-01T00:00:00Zjunk",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
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
        fn rfc3339_round_trips(ms in 0u64..253_402_300_800_000) {
            prop_assert_eq!(parse_rfc3339_ms(&rfc3339_millis(ms)), Some(ms));
        }

        #[test]
        fn rfc3339_never_panics(text in ".{0,40}") {
            let _ = parse_rfc3339_ms(&text);
        }

        #[test]
        fn distinct_randoms_give_distinct_trace_ids(a in any::<u128>(), b in any::<u128>()) {
            prop_assume!(a != b && a != 0 && b != 0);
            prop_assert_ne!(trace_id(a), trace_id(b));
        }
    }
}
