//! The legacy `/api/ws` bridge's wire rules (CONTRACT.md §7): reading the old
//! client's auth frame and writing the old envelopes.
//!
//! Old `useVoiceChannelEvents` clients keep working while they migrate to SSE.
//! The edge's bridge driver owns the socket and the deadline; everything it says
//! or reads is decided here:
//!
//! - the client's first text frame must be `{"v":1,"type":"auth","token":…}`
//!   ([`parse_auth`]), within [`AUTH_TIMEOUT`];
//! - the answer is `{"v":1,"type":"ack","event":"auth.ok","payload":{…},"ts":…}`
//!   ([`auth_ok`]);
//! - of the stream's events only [`EVENT_TYPES`] are forwarded, re-wrapped by
//!   [`envelope`]: voice events as `{"v":1,"type":"event",…}` (the old
//!   `voice.left` payload never named the channel left: `channelId` is `null`),
//!   errors as `{"v":1,"type":"error","error":…}` ([`error_frame`]).

use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};

/// How long a client has to authenticate before it is closed with 1008.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Unsent bytes past which a client is closed with 1008.
pub const MAX_UNSENT: usize = 1024 * 1024;

/// The stream event types the old protocol carries.
pub const EVENT_TYPES: [&str; 3] = ["voice.joined", "voice.left", "error"];

/// Why a first frame is not a valid auth frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFrameError {
    /// The text is not a JSON object.
    NotJson,
    /// JSON, but not `{"v":1,"type":"auth","token":<string>}`.
    NotAuth,
}

impl fmt::Display for AuthFrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never echoes the frame: it may hold a token.
        f.write_str(match self {
            AuthFrameError::NotJson => "the first frame is not JSON",
            AuthFrameError::NotAuth => "expected {\"v\":1,\"type\":\"auth\",\"token\":…}",
        })
    }
}

impl std::error::Error for AuthFrameError {}

/// The session token of the client's auth frame. Unknown fields are ignored,
/// as everywhere else in relay.
pub fn parse_auth(text: &str) -> Result<String, AuthFrameError> {
    let v: Value = serde_json::from_str(text).map_err(|_| AuthFrameError::NotJson)?;
    if !v.is_object() {
        return Err(AuthFrameError::NotJson);
    }
    match (&v["v"], &v["type"], &v["token"]) {
        (version, Value::String(t), Value::String(token))
            if version.as_u64() == Some(1) && t == "auth" =>
        {
            Ok(token.clone())
        }
        _ => Err(AuthFrameError::NotAuth),
    }
}

/// The answer to a valid auth frame.
pub fn auth_ok(user_id: &str, name: Option<&str>, ts_ms: u64) -> String {
    json!({"v": 1, "type": "ack", "event": "auth.ok",
        "payload": {"userId": user_id, "name": name}, "ts": ts_ms})
    .to_string()
}

/// An error frame of the old protocol.
pub fn error_frame(code: &str, message: &str, ts_ms: u64) -> String {
    json!({"v": 1, "type": "error", "error": {"code": code, "message": message}, "ts": ts_ms})
        .to_string()
}

/// Re-wraps a stream event (its type and its SSE `data` JSON, the
/// `{"version","event","data","meta"}` envelope) in the old envelope; `None`
/// for types the old protocol does not carry or data that is not JSON.
pub fn envelope(event_type: &str, sse_json: &str, ts_ms: u64) -> Option<String> {
    if !EVENT_TYPES.contains(&event_type) {
        return None;
    }
    let outer: Value = serde_json::from_str(sse_json).ok()?;
    let data = outer.get("data")?;
    let msg = match event_type {
        "voice.joined" => {
            json!({"v": 1, "type": "event", "event": "voice.joined", "payload": data, "ts": ts_ms})
        }
        "voice.left" => json!({"v": 1, "type": "event", "event": "voice.left",
            "payload": {"guildId": data["guildId"], "channelId": null, "userId": data["userId"]},
            "ts": ts_ms}),
        _ => json!({"v": 1, "type": "error", "error": data, "ts": ts_ms}),
    };
    Some(msg.to_string())
}

/// Fuzz entry: any text as an auth frame and as an event's data; never panics,
/// and what comes out is JSON of the old protocol.
#[cfg(feature = "fuzzing")]
pub fn fuzz_legacy(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = parse_auth(&text);
    for kind in EVENT_TYPES.iter().chain(["messageCreate"].iter()) {
        if let Some(out) = envelope(kind, &text, 1) {
            let v: Value = serde_json::from_str(&out).expect("envelopes are JSON");
            assert_eq!(v["v"], 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parsed(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn the_auth_frame_gives_its_token() {
        assert_eq!(
            parse_auth(r#"{"v":1,"type":"auth","token":"abc","extra":true}"#),
            Ok("abc".to_owned())
        );
        for bad in [
            r#"{"v":2,"type":"auth","token":"abc"}"#,
            r#"{"v":"1","type":"auth","token":"abc"}"#,
            r#"{"v":1,"type":"hello","token":"abc"}"#,
            r#"{"v":1,"type":"auth","token":42}"#,
            r#"{"v":1,"type":"auth"}"#,
        ] {
            assert_eq!(parse_auth(bad), Err(AuthFrameError::NotAuth), "{bad}");
        }
        for bad in ["", "not json", "[1]", "\"auth\"", "{"] {
            assert_eq!(parse_auth(bad), Err(AuthFrameError::NotJson), "{bad}");
        }
    }

    #[test]
    fn errors_never_echo_the_frame() {
        let secret = r#"{"v":9,"type":"auth","token":"s3cret-token"}"#;
        let e = parse_auth(secret).unwrap_err();
        assert!(!e.to_string().contains("s3cret"));
    }

    #[test]
    fn voice_and_error_events_get_the_old_envelopes() {
        let joined = r#"{"version":"1.0","event":"voice.joined","data":{"guildId":"1","channelId":"2","userId":"3","username":"a"},"meta":{}}"#;
        let out = parsed(&envelope("voice.joined", joined, 7).unwrap());
        assert_eq!(
            out,
            json!({"v":1,"type":"event","event":"voice.joined",
                "payload":{"guildId":"1","channelId":"2","userId":"3","username":"a"},"ts":7})
        );
        let left = r#"{"event":"voice.left","data":{"guildId":"1","channelId":"2","userId":"3"}}"#;
        assert_eq!(
            parsed(&envelope("voice.left", left, 8).unwrap())["payload"],
            json!({"guildId":"1","channelId":null,"userId":"3"}),
            "the old payload never named the channel left"
        );
        let error = r#"{"event":"error","data":{"code":"malformed_frame","message":"x"}}"#;
        assert_eq!(
            parsed(&envelope("error", error, 9).unwrap()),
            json!({"v":1,"type":"error","error":{"code":"malformed_frame","message":"x"},"ts":9})
        );
        assert_eq!(envelope("messageCreate", joined, 1), None);
        assert_eq!(envelope("voice.joined", "not json", 1), None);
        assert_eq!(envelope("voice.joined", "{}", 1), None);
    }

    #[test]
    fn frames_we_write_are_the_old_shapes() {
        assert_eq!(
            parsed(&auth_ok("42", Some("Ada"), 5)),
            json!({"v":1,"type":"ack","event":"auth.ok","payload":{"userId":"42","name":"Ada"},"ts":5})
        );
        assert_eq!(
            parsed(&error_frame("unauthenticated", "bad \"token\"\n", 6)),
            json!({"v":1,"type":"error","error":{"code":"unauthenticated","message":"bad \"token\"\n"},"ts":6})
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_token_round_trips(token in any::<String>()) {
            let frame = json!({"v": 1, "type": "auth", "token": token}).to_string();
            prop_assert_eq!(parse_auth(&frame), Ok(token));
        }

        #[test]
        fn any_text_is_answered_without_panic(text in any::<String>()) {
            let _ = parse_auth(&text);
            for kind in EVENT_TYPES {
                if let Some(out) = envelope(kind, &text, 1) {
                    let v: Value = serde_json::from_str(&out).unwrap();
                    prop_assert_eq!(&v["v"], &json!(1));
                }
            }
        }

        #[test]
        fn user_text_stays_inside_its_field(name in any::<String>(), user in any::<String>()) {
            let v: Value = serde_json::from_str(&auth_ok(&user, Some(&name), 1)).unwrap();
            prop_assert_eq!(v["payload"]["name"].as_str(), Some(name.as_str()));
            prop_assert_eq!(v["payload"]["userId"].as_str(), Some(user.as_str()));
        }
    }
}
