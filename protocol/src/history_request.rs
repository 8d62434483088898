//! `GET /api/channels/{channelId}/messages?limit=&before=|after=|around=`
//! (CONTRACT.md §9): the path and query string → a [`HistoryQuery`], or the
//! 400 answer's issues in the shape of command 400s.
//!
//! Rules (Discord's "Get Channel Messages", and the decisions the contract
//! leaves open):
//! - `channelId`, `before`, `after`, `around` are snowflakes: 1–20 ASCII
//!   digits that fit 64 bits (percent-encoded digits are decoded first).
//! - `limit` is an integer 1–100 written in digits; absent means 50.
//! - At most one of `before`, `after`, `around`; a parameter given twice is
//!   refused rather than guessed at.
//! - Other parameters (`access_token` …) are ignored, as unknown body fields are.
//! - Issue messages are fixed text: a 400 never echoes what was sent.

use std::borrow::Cow;

use crate::history::{Anchor, HistoryQuery, DEFAULT_LIMIT, MAX_LIMIT};
use crate::validate::{Invalid, Issue, PathSegment};

/// The path prefix and suffix of the history endpoint.
const PREFIX: &str = "/api/channels/";
const SUFFIX: &str = "/messages";

/// The `{channelId}` segment when `path` is the history endpoint (any
/// non-empty segment without `/`; whether it is an id is checked later).
pub fn history_path(path: &str) -> Option<&str> {
    let channel = path.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    (!channel.is_empty() && !channel.contains('/')).then_some(channel)
}

const SNOWFLAKE: &str = "expected a snowflake id of 1–20 digits that fits 64 bits";
const LIMIT: &str = "expected an integer from 1 to 100";
const TWICE: &str = "given more than once";
const EXCLUSIVE: &str = "before, after and around are mutually exclusive";

/// Reads the channel segment and the query string (without `?`).
pub fn parse_history_request(channel: &str, query: &str) -> Result<HistoryQuery, Invalid> {
    let mut issues = Vec::new();
    let issue = |field: &'static str, message: &'static str| Issue {
        path: vec![PathSegment::Key(Cow::Borrowed(field))],
        message: message.to_owned(),
    };
    let channel_id = snowflake(&decode(channel));
    if channel_id.is_none() {
        issues.push(issue("channelId", SNOWFLAKE));
    }
    let mut values: [Option<String>; 4] = Default::default();
    let mut twice = [false; 4];
    const KEYS: [&str; 4] = ["limit", "before", "after", "around"];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let Some(i) = KEYS.iter().position(|k| *k == decode(key)) {
            if values[i].is_some() {
                twice[i] = true;
            }
            values[i] = Some(decode(value));
        }
    }
    let limit = match &values[0] {
        None => Some(DEFAULT_LIMIT),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| v.bytes().all(|b| b.is_ascii_digit()) && (1..=MAX_LIMIT).contains(n)),
    };
    if twice[0] {
        issues.push(issue("limit", TWICE));
    } else if limit.is_none() {
        issues.push(issue("limit", LIMIT));
    }
    let mut anchor = Anchor::Latest;
    let mut anchors = 0;
    for (i, field) in KEYS.iter().enumerate().skip(1) {
        let Some(v) = &values[i] else { continue };
        anchors += 1;
        if twice[i] {
            issues.push(issue(field, TWICE));
            continue;
        }
        if anchors > 1 {
            issues.push(issue(field, EXCLUSIVE));
            continue;
        }
        match snowflake(v) {
            Some(x) => {
                anchor = match i {
                    1 => Anchor::Before(x),
                    2 => Anchor::After(x),
                    _ => Anchor::Around(x),
                }
            }
            None => issues.push(issue(field, SNOWFLAKE)),
        }
    }
    match (channel_id, limit) {
        (Some(channel), Some(limit)) if issues.is_empty() => Ok(HistoryQuery {
            channel,
            limit,
            anchor,
        }),
        _ => Err(Invalid {
            message: "invalid history request".to_owned(),
            issues,
        }),
    }
}

fn snowflake(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Percent-decoding with `+` as space (form encoding); bad escapes stay as
/// they are and invalid UTF-8 is replaced, so any input gives some text.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Fuzz entry: any path and query never panic; an accepted request has a
/// limit of 1–100 and survives a round trip through its own query string.
#[cfg(feature = "fuzzing")]
pub fn fuzz_request(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let (path, query) = text.split_once('?').unwrap_or((&text, ""));
    let channel = history_path(path).unwrap_or(path);
    match parse_history_request(channel, query) {
        Ok(q) => {
            assert!((1..=MAX_LIMIT).contains(&q.limit));
            let c = q.to_command();
            let mut again = format!("limit={}", c.limit);
            for (k, v) in [
                ("before", &c.before),
                ("after", &c.after),
                ("around", &c.around),
            ] {
                if let Some(v) = v {
                    again.push_str(&format!("&{k}={v}"));
                }
            }
            assert_eq!(parse_history_request(&c.channel_id, &again), Ok(q));
        }
        Err(invalid) => assert!(!invalid.issues.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn issues(channel: &str, query: &str) -> serde_json::Value {
        serde_json::to_value(parse_history_request(channel, query).unwrap_err().issues).unwrap()
    }

    #[test]
    fn the_path_names_a_channel() {
        assert_eq!(history_path("/api/channels/12/messages"), Some("12"));
        assert_eq!(history_path("/api/channels/x/messages"), Some("x"));
        assert_eq!(history_path("/api/channels//messages"), None);
        assert_eq!(history_path("/api/channels/1/2/messages"), None);
        assert_eq!(history_path("/api/channels/1/messages/"), None);
    }

    #[test]
    fn every_parameter_rule() {
        let ok = |c: &str, q: &str| parse_history_request(c, q).unwrap();
        assert_eq!(ok("7", "").limit, 50);
        assert_eq!(ok("7", "").anchor, Anchor::Latest);
        assert_eq!(ok("7", "limit=1").limit, 1);
        assert_eq!(ok("7", "limit=100&before=9").anchor, Anchor::Before(9));
        assert_eq!(ok("7", "after=9").anchor, Anchor::After(9));
        assert_eq!(
            ok("7", "around=%39&access_token=x").anchor,
            Anchor::Around(9)
        );
        assert_eq!(ok("%37", "").channel, 7);
        assert_eq!(
            issues("7", "limit=0"),
            json!([{"path":["limit"],"message":LIMIT}])
        );
        for bad in ["101", "-1", "+5", "5.0", "", "abc", "99999999999"] {
            assert_eq!(
                issues("7", &format!("limit={bad}"))[0]["path"],
                json!(["limit"]),
                "{bad}"
            );
        }
        assert_eq!(
            issues("x", "before=1&after=2"),
            json!([{"path":["channelId"],"message":SNOWFLAKE},{"path":["after"],"message":EXCLUSIVE}])
        );
        assert_eq!(issues("7", "around=")[0]["path"], json!(["around"]));
        assert_eq!(issues("7", "before=1a")[0]["path"], json!(["before"]));
        assert_eq!(
            issues("7", "before=99999999999999999999")[0]["path"],
            json!(["before"])
        );
        assert_eq!(issues("7", "limit=5&limit=6")[0]["message"], TWICE);
        assert_eq!(
            issues("123456789012345678901", "")[0]["path"],
            json!(["channelId"])
        );
    }

    proptest! {
        #[test]
        fn any_input_is_answered(path in "\\PC{0,40}", query in "[a-z0-9=&%+]{0,60}") {
            let _ = parse_history_request(&path, &query);
            let _ = history_path(&path);
            #[cfg(feature = "fuzzing")]
            fuzz_request(format!("/api/channels/{path}/messages?{query}").as_bytes());
        }

        #[test]
        fn valid_requests_read_back(channel in 1u64.., limit in 1u32..=100, which in 0u8..4, x in any::<u64>()) {
            let name = ["", "before", "after", "around"][which as usize];
            let query = if which == 0 { format!("limit={limit}") } else { format!("limit={limit}&{name}={x}") };
            let q = parse_history_request(&channel.to_string(), &query).unwrap();
            #[cfg(feature = "fuzzing")]
            fuzz_request(format!("/api/channels/{channel}/messages?{query}").as_bytes());
            prop_assert_eq!(q.channel, channel);
            prop_assert_eq!(q.limit, limit);
            let expect = match which { 0 => Anchor::Latest, 1 => Anchor::Before(x), 2 => Anchor::After(x), _ => Anchor::Around(x) };
            prop_assert_eq!(q.anchor, expect);
        }
    }
}
