//! The `log` backend: one line per record on stderr, as text or JSON
//! (CONTRACT.md §6 "Logs", spec FR-004, FR-008, SC-006).
//!
//! Handlers log with `log`'s structured key-values, and every pair becomes a
//! field, so the contract's `traceId` / `requestId` / `latencyMs` land where
//! log tooling looks for them:
//!
//! ```text
//! log::info!(traceId = trace, requestId = req, latencyMs = ms; "command acked");
//! ```
//!
//! - `LOG_FORMAT=text`: `2026-11-25T12:00:00.000Z INFO  relay::edge command acked traceId=… requestId=…`.
//!   The message, the target and every key and value go through
//!   [`relay_protocol::sanitize::sanitize`], so CR, LF, ESC and friends are
//!   escaped and no text can start a second line or drive the terminal. A value
//!   that is empty or contains a space, `"` or `=` is written in double quotes
//!   with `"` escaped as `\"` (sanitize already escapes `\`), so `key=value`
//!   pairs stay unambiguous.
//! - `LOG_FORMAT=json`: one object per line, `{"ts","level","msg","target", …pairs}`.
//!   JSON string escaping already keeps a record on one line (every control
//!   character below U+0020 is escaped), so text is only cut, not escaped twice.
//!   Integers, floats and booleans stay JSON numbers and booleans. A pair whose
//!   key is one of the four fixed fields is written as `_ts`, `_level`, … so it
//!   cannot overwrite them.
//!
//! Messages are cut at [`MSG_MAX_CHARS`] characters, values at
//! [`relay_protocol::sanitize::LOG_TEXT_MAX`]. Each line is written with one
//! `write_all` on locked stderr, so lines from different threads never interleave.
//!
//! The level filter is a small `RUST_LOG` subset ([`LogSpec`]): a global level
//! and `target=level` entries, separated by commas.
//!
//! [`redact_query`] removes `access_token` / `token` values, and the OAuth2
//! authorization `code` of Sign in with Discord's callback, from a URL before
//! it is logged (CONTRACT.md §2, §8).
//!
//! ureq's and ureq-proto's `trace` level dumps raw HTTP heads, `Authorization`
//! included (the bot token, Discord's OAuth2 access token), so those targets
//! are capped at `debug` whatever `RUST_LOG` says; at `debug` ureq redacts
//! every header but a few harmless ones.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use log::kv::{self, Key, Value, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};
use relay_protocol::sanitize::{sanitize, LOG_TEXT_MAX};

/// Characters of a log message kept.
pub const MSG_MAX_CHARS: usize = 2048;

/// Characters of a target or key kept.
const NAME_MAX_CHARS: usize = 128;

/// What [`redact_query`] puts in place of a token.
pub const REDACTED: &str = "[redacted]";

/// Query parameters whose values never reach a log line.
const SECRET_PARAMS: [&str; 3] = ["access_token", "token", "code"];

/// Targets whose `trace` records carry raw HTTP bytes (see the module docs).
const WIRE_DUMP_TARGETS: [&str; 2] = ["ureq", "ureq_proto"];

/// The shape of a log line (`LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `ts LEVEL target msg key=value…`, for people.
    #[default]
    Text,
    /// One JSON object per line, for machines.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("text") {
            Ok(LogFormat::Text)
        } else if s.eq_ignore_ascii_case("json") {
            Ok(LogFormat::Json)
        } else {
            Err(format!(
                "LOG_FORMAT must be text or json (got {:?})",
                sanitize(s, 64)
            ))
        }
    }
}

/// A parsed `RUST_LOG`-style filter: a global level plus per-target levels.
///
/// Grammar: comma-separated entries, each either a level (`off`, `error`,
/// `warn`, `info`, `debug`, `trace`, any case) that sets the global level, or
/// `target=level`. A target matches itself and its `::` children; the longest
/// matching target wins. The global level is `info` unless an entry sets it
/// (env_logger would turn everything else off; relay keeps its warnings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSpec {
    global: LevelFilter,
    /// Longest target first, so the first match is the most specific.
    targets: Vec<(String, LevelFilter)>,
}

/// A `RUST_LOG` value relay cannot read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSpecError {
    entry: String,
}

impl fmt::Display for LogSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RUST_LOG entry {:?} is not a level (off, error, warn, info, debug, trace) or target=level",
            self.entry
        )
    }
}

impl std::error::Error for LogSpecError {}

impl LogSpec {
    /// Parses a `RUST_LOG`-style spec; see the type docs for the grammar.
    pub fn parse(spec: &str) -> Result<Self, LogSpecError> {
        let mut global = LevelFilter::Info;
        let mut targets = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || LogSpecError {
                entry: sanitize(entry, 64).into_owned(),
            };
            match entry.split_once('=') {
                None => global = parse_level(entry).ok_or_else(bad)?,
                Some((target, level)) => {
                    let target = target.trim();
                    if target.is_empty() {
                        return Err(bad());
                    }
                    let level = parse_level(level.trim()).ok_or_else(bad)?;
                    targets.retain(|(t, _): &(String, LevelFilter)| t != target);
                    targets.push((target.to_owned(), level));
                }
            }
        }
        targets.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        Ok(LogSpec { global, targets })
    }

    /// The most verbose level records from `target` may have.
    pub fn level_for(&self, target: &str) -> LevelFilter {
        let under = |t: &str| {
            target
                .strip_prefix(t)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        };
        let level = self
            .targets
            .iter()
            .find(|(t, _)| under(t))
            .map_or(self.global, |(_, level)| *level);
        if WIRE_DUMP_TARGETS.iter().any(|t| under(t)) {
            level.min(LevelFilter::Debug)
        } else {
            level
        }
    }

    /// The most verbose level any target may have, for `log::set_max_level`.
    pub fn max_level(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, l)| *l)
            .fold(self.global, Ord::max)
    }
}

impl Default for LogSpec {
    fn default() -> Self {
        LogSpec {
            global: LevelFilter::Info,
            targets: Vec::new(),
        }
    }
}

fn parse_level(s: &str) -> Option<LevelFilter> {
    // LevelFilter's FromStr is case-insensitive and knows "off".
    LevelFilter::from_str(s).ok()
}

/// Why [`init`] failed.
#[derive(Debug)]
pub enum LogInitError {
    /// The spec did not parse.
    Spec(LogSpecError),
    /// Another logger was installed first.
    AlreadySet,
}

impl fmt::Display for LogInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogInitError::Spec(e) => e.fmt(f),
            LogInitError::AlreadySet => f.write_str("a logger is already installed"),
        }
    }
}

impl std::error::Error for LogInitError {}

/// Installs the stderr logger for the whole process. Call once, early in `main`.
pub fn init(format: LogFormat, spec: &str) -> Result<(), LogInitError> {
    let spec = LogSpec::parse(spec).map_err(LogInitError::Spec)?;
    let max = spec.max_level();
    log::set_boxed_logger(Box::new(StderrLogger { format, spec }))
        .map_err(|_| LogInitError::AlreadySet)?;
    log::set_max_level(max);
    Ok(())
}

struct StderrLogger {
    format: LogFormat,
    spec: LogSpec,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.spec.level_for(metadata.target())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let line = format_record(self.format, record, unix_ms);
        // Nowhere to report a failed write to stderr; dropping the line is all we can do.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().lock().flush();
    }
}

/// Renders one record as one line, newline included. `unix_ms` is the wall
/// clock, passed in so tests can pin it.
pub fn format_record(format: LogFormat, record: &Record<'_>, unix_ms: u64) -> String {
    let ts = relay_protocol::ids::rfc3339_millis(unix_ms);
    let msg = record.args().to_string();
    let mut line = String::with_capacity(128 + msg.len());
    match format {
        LogFormat::Text => {
            let _ = write!(
                line,
                "{ts} {:<5} {} {}",
                record.level(),
                sanitize(record.target(), NAME_MAX_CHARS),
                sanitize(&msg, MSG_MAX_CHARS)
            );
            let _ = record.key_values().visit(&mut TextPairs(&mut line));
        }
        LogFormat::Json => {
            line.push_str("{\"ts\":");
            push_json_str(&mut line, &ts);
            line.push_str(",\"level\":");
            push_json_str(&mut line, record.level().as_str());
            line.push_str(",\"msg\":");
            push_json_str(&mut line, &cut(&msg, MSG_MAX_CHARS));
            line.push_str(",\"target\":");
            push_json_str(&mut line, &cut(record.target(), NAME_MAX_CHARS));
            let _ = record.key_values().visit(&mut JsonPairs(&mut line));
            line.push('}');
        }
    }
    line.push('\n');
    line
}

struct TextPairs<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for TextPairs<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        let out = &mut *self.0;
        out.push(' ');
        // Keys are identifiers in practice; escape them anyway so none can hold a space or newline.
        let key = sanitize(key.as_str(), NAME_MAX_CHARS);
        out.push_str(&key.replace([' ', '='], "_"));
        out.push('=');
        let text = value.to_string();
        let clean = sanitize(&text, LOG_TEXT_MAX);
        if clean.is_empty() || clean.contains([' ', '"', '=']) {
            out.push('"');
            out.push_str(&clean.replace('"', "\\\""));
            out.push('"');
        } else {
            out.push_str(&clean);
        }
        Ok(())
    }
}

struct JsonPairs<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for JsonPairs<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        let out = &mut *self.0;
        out.push(',');
        let key = cut(key.as_str(), NAME_MAX_CHARS);
        if matches!(&*key, "ts" | "level" | "msg" | "target") {
            push_json_str(out, &format!("_{key}"));
        } else {
            push_json_str(out, &key);
        }
        out.push(':');
        if let Some(b) = value.to_bool() {
            out.push_str(if b { "true" } else { "false" });
        } else if let Some(n) = value.to_u64() {
            let _ = write!(out, "{n}");
        } else if let Some(n) = value.to_i64() {
            let _ = write!(out, "{n}");
        } else if let Some(x) = value.to_f64().filter(|x| x.is_finite()) {
            // serde_json prints floats so that they read back as the same f64.
            out.push_str(&serde_json::Value::from(x).to_string());
        } else {
            push_json_str(out, &cut(&value.to_string(), LOG_TEXT_MAX));
        }
        Ok(())
    }
}

fn push_json_str(out: &mut String, s: &str) {
    // Serialising a str cannot fail; serde_json escapes every control character.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

/// Cuts `text` to `max_chars` characters with the same marker as `sanitize`.
fn cut(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => Cow::Borrowed(text),
        Some((at, _)) => {
            let cut = text[at..].chars().count();
            Cow::Owned(format!("{}…[+{cut} chars]", &text[..at]))
        }
    }
}

/// Replaces the value of every `access_token=`, `token=` and `code=` query parameter in
/// `path_and_query` (or a whole URL) with `[redacted]`, so a session or link
/// token in a URL never reaches a log line (CONTRACT.md §2). Parameter names
/// are compared after percent-decoding, as [`crate::auth::token_from_request`]
/// reads them. Borrows when there is nothing to redact.
pub fn redact_query(path_and_query: &str) -> Cow<'_, str> {
    let Some(q) = path_and_query.find('?') else {
        return Cow::Borrowed(path_and_query);
    };
    let (head, query) = path_and_query.split_at(q + 1);
    // A fragment is not part of the query; keep it as it is.
    let (query, fragment) = match query.find('#') {
        Some(h) => query.split_at(h),
        None => (query, ""),
    };
    let is_secret = |param: &str| {
        let name = param.split_once('=').map_or(param, |(n, _)| n);
        SECRET_PARAMS.contains(&&*crate::auth::percent_decode(name))
    };
    if !query.split('&').any(|p| p.contains('=') && is_secret(p)) {
        return Cow::Borrowed(path_and_query);
    }
    let mut out = String::with_capacity(path_and_query.len());
    out.push_str(head);
    for (i, param) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match param.split_once('=') {
            Some((name, _)) if is_secret(param) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(param),
        }
    }
    out.push_str(fragment);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;
    use proptest::prelude::*;

    fn render(format: LogFormat, msg: &str, kvs: &[(&str, &str)]) -> String {
        let kvs: &dyn kv::Source = &kvs;
        format_record(
            format,
            &Record::builder()
                .level(Level::Info)
                .target("relay::edge")
                .args(format_args!("{msg}"))
                .key_values(kvs)
                .build(),
            1_795_651_199_999,
        )
    }

    fn json(line: &str) -> serde_json::Map<String, serde_json::Value> {
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        match serde_json::from_str(line.trim_end()) {
            Ok(serde_json::Value::Object(map)) => map,
            other => panic!("not a JSON object: {other:?} from {line:?}"),
        }
    }

    #[test]
    fn json_line_has_the_contract_fields_and_every_pair() {
        let line = render(
            LogFormat::Json,
            "command acked",
            &[("traceId", "t1"), ("requestId", "r1")],
        );
        let map = json(&line);
        assert_eq!(map["ts"], "2026-11-25T23:59:59.999Z");
        assert_eq!(map["level"], "INFO");
        assert_eq!(map["msg"], "command acked");
        assert_eq!(map["target"], "relay::edge");
        assert_eq!(map["traceId"], "t1");
        assert_eq!(map["requestId"], "r1");
    }

    #[test]
    fn json_keeps_numbers_and_bools_typed_and_protects_fixed_fields() {
        let kvs: [(&str, Value<'_>); 4] = [
            ("latencyMs", Value::from(12u64)),
            ("delta", Value::from(-3i64)),
            ("ok", Value::from(true)),
            ("msg", Value::from("forged")),
        ];
        let source: &dyn kv::Source = &kvs;
        let line = format_record(
            LogFormat::Json,
            &Record::builder()
                .level(Level::Warn)
                .target("t")
                .args(format_args!("real"))
                .key_values(source)
                .build(),
            0,
        );
        let map = json(&line);
        assert_eq!(map["latencyMs"], 12);
        assert_eq!(map["delta"], -3);
        assert_eq!(map["ok"], true);
        assert_eq!(map["msg"], "real");
        assert_eq!(map["_msg"], "forged");
        assert_eq!(map["level"], "WARN");
    }

    #[test]
    fn text_line_layout() {
        let line = render(
            LogFormat::Text,
            "command acked",
            &[("traceId", "t1"), ("note", "two words"), ("empty", "")],
        );
        assert_eq!(
            line,
            "2026-11-25T23:59:59.999Z INFO  relay::edge command acked traceId=t1 note=\"two words\" empty=\"\"\n"
        );
    }

    #[test]
    fn text_value_cannot_fake_a_pair() {
        let line = render(LogFormat::Text, "m", &[("user", "bob traceId=evil")]);
        assert!(line.contains("user=\"bob traceId=evil\""), "{line}");
        let line = render(LogFormat::Text, "m", &[("user", "a\"b c")]);
        assert!(line.contains(r#"user="a\"b c""#), "{line}");
    }

    #[test]
    fn forged_lines_stay_one_line_in_both_formats() {
        let evil = "ok\n2026-01-01T00:00:00.000Z ERROR fake\r\u{1b}[31mred\u{2028}x";
        for format in [LogFormat::Text, LogFormat::Json] {
            let line = render(format, evil, &[("content", evil)]);
            assert_eq!(line.matches('\n').count(), 1, "{format:?}: {line:?}");
            assert!(line.ends_with('\n'));
            assert!(!line.contains('\r') && !line.contains('\u{1b}'), "{line:?}");
        }
        let map = json(&render(LogFormat::Json, evil, &[("content", evil)]));
        // JSON escaping is lossless: the reader gets the original text back.
        assert_eq!(map["msg"], evil);
        assert_eq!(map["content"], evil);
    }

    #[test]
    fn long_text_is_cut() {
        let long = "x".repeat(10_000);
        let map = json(&render(LogFormat::Json, &long, &[("content", &long)]));
        let msg = map["msg"].as_str().unwrap_or_default();
        assert!(msg.starts_with(&"x".repeat(MSG_MAX_CHARS)));
        assert!(msg.ends_with(&format!("…[+{} chars]", 10_000 - MSG_MAX_CHARS)));
        let content = map["content"].as_str().unwrap_or_default();
        assert_eq!(content.chars().filter(|&c| c == 'x').count(), LOG_TEXT_MAX);
        let text = render(LogFormat::Text, "m", &[("content", &long)]);
        assert!(text.len() < LOG_TEXT_MAX + 200, "{}", text.len());
    }

    #[test]
    fn spec_parsing_and_matching() {
        let spec =
            LogSpec::parse("warn, relay=debug ,relay::edge=TRACE,ureq=off").unwrap_or_default();
        assert_eq!(spec.level_for("relay::edge::sse"), LevelFilter::Trace);
        assert_eq!(spec.level_for("relay::edge"), LevelFilter::Trace);
        assert_eq!(spec.level_for("relay::gateway"), LevelFilter::Debug);
        assert_eq!(spec.level_for("relay_extra"), LevelFilter::Warn);
        assert_eq!(spec.level_for("ureq::pool"), LevelFilter::Off);
        assert_eq!(spec.level_for("tungstenite"), LevelFilter::Warn);
        assert_eq!(spec.max_level(), LevelFilter::Trace);
        // ureq's raw wire dumps stay off even at trace.
        let all = LogSpec::parse("trace").unwrap_or_default();
        assert_eq!(all.level_for("ureq_proto::util"), LevelFilter::Debug);
        assert_eq!(all.level_for("ureq::unversioned"), LevelFilter::Debug);
        assert_eq!(all.level_for("ureqx"), LevelFilter::Trace);

        let only_target = LogSpec::parse("relay_runtime=debug").unwrap_or_default();
        assert_eq!(only_target.level_for("other"), LevelFilter::Info);
        assert_eq!(
            LogSpec::parse("").unwrap_or_default().level_for("x"),
            LevelFilter::Info
        );
        assert_eq!(
            LogSpec::parse("off").unwrap_or_default().max_level(),
            LevelFilter::Off
        );

        for bad in ["verbose", "relay=loud", "=info", "info,x=", "a/b"] {
            let err = LogSpec::parse(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.starts_with("RUST_LOG "), "{bad}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn kv_macro_syntax_compiles_with_the_enabled_features() {
        // No logger is installed in unit tests, so this only proves the call shape handlers use.
        let (trace, request, ms) = ("t", String::from("r"), 12u64);
        log::info!(traceId = trace, requestId = request.as_str(), latencyMs = ms; "command acked");
        log::warn!(target: "relay::edge", traceId:% = trace; "display-captured {}", 1);
    }

    #[test]
    fn log_format_parses_case_insensitively() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        let err = "yaml".parse::<LogFormat>().err().unwrap_or_default();
        assert!(err.contains("LOG_FORMAT"), "{err}");
    }

    #[test]
    fn redact_query_cases() {
        let cases = [
            ("/api/stream", "/api/stream"),
            ("/api/stream?types=a", "/api/stream?types=a"),
            (
                "/api/stream?access_token=eyJ.abc.def&types=a",
                "/api/stream?access_token=[redacted]&types=a",
            ),
            (
                "/api/stream?types=a&access_token=x&lastEventId=1-2",
                "/api/stream?types=a&access_token=[redacted]&lastEventId=1-2",
            ),
            ("/link?token=abc", "/link?token=[redacted]"),
            (
                "/auth/discord/callback?code=abc123&state=xyz",
                "/auth/discord/callback?code=[redacted]&state=xyz",
            ),
            ("/x?access%5Ftoken=abc", "/x?access%5Ftoken=[redacted]"),
            ("/x?my_token=abc&tokens=1", "/x?my_token=abc&tokens=1"),
            ("/x?access_token", "/x?access_token"),
            (
                "/x?access_token=a&access_token=b",
                "/x?access_token=[redacted]&access_token=[redacted]",
            ),
            ("/x?token=a#frag", "/x?token=[redacted]#frag"),
            (
                "ws://h:1/link?token=s3cret",
                "ws://h:1/link?token=[redacted]",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_query(input), want, "{input}");
        }
        assert!(matches!(redact_query("/a?b=c"), Cow::Borrowed(_)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn any_text_is_one_line_in_both_formats(msg in any::<String>(), value in any::<String>()) {
            for format in [LogFormat::Text, LogFormat::Json] {
                let line = render(format, &msg, &[("v", &value)]);
                prop_assert_eq!(line.matches('\n').count(), 1);
                prop_assert!(line.ends_with('\n'));
                prop_assert!(!line.contains('\r'));
            }
            let map = json(&render(LogFormat::Json, &msg, &[("v", &value)]));
            prop_assert!(map["msg"].is_string() && map["v"].is_string());
        }

        #[test]
        fn redacted_queries_never_keep_the_token(tok in "[0-9][A-Za-z0-9._-]{7,39}", before in "[a-z]{0,5}=[a-z]{0,5}") {
            let url = format!("/api/stream?{before}&access_token={tok}&x=1");
            let red = redact_query(&url);
            prop_assert!(!red.contains(&tok));
            prop_assert!(red.contains("access_token=[redacted]"));
        }
    }
}
