//! Server-Sent Events: the encoder every event of `GET /api/stream` is written with,
//! and a WHATWG event-stream parser for tests, tools and the load generator
//! (CONTRACT.md §4).
//!
//! # Encoding
//!
//! The edge encodes each event once and shares the bytes with every subscriber, so
//! the encoder appends to a caller-owned `Vec<u8>` and allocates nothing else.
//! The rule it keeps: nothing a caller passes can break out of its field.
//!
//! - `data` is split on CRLF, CR and LF, and each piece becomes its own `data:`
//!   line. A browser joins them with LF, so `parse(encode(d)) == d` with every
//!   CRLF and lone CR turned into LF ([`normalize_newlines`]); for data without CR
//!   it is the identity. Empty data is one `data:` line, which still dispatches.
//! - `id` and `event` are single-line fields: a value containing CR or LF would
//!   start a new field, so it is rejected with [`SseEncodeError`] rather than
//!   silently rewritten (a rewritten id would resume from the wrong place).
//!   NUL is rejected too: browsers ignore an `id` containing NUL (so the
//!   `Last-Event-ID` would silently not advance), and an event name with NUL is
//!   never one the contract defines. On error nothing is written to the buffer.
//! - An empty `event` writes no `event:` line: browsers dispatch it as `message`
//!   either way. An empty `id` is written (`id:`), since that resets the
//!   browser's last event id, which is meaningful.
//! - Values are always written as `field: value` (colon, one space). The parser
//!   strips exactly one space after the colon, so a value that itself begins
//!   with a space survives.
//! - Comment text is split into lines the same way as data, each its own `:`
//!   line, so a comment can never inject a field; it is never rejected.
//!
//! # Parsing
//!
//! [`SseParser`] follows the "event stream interpretation" section of the HTML
//! standard, incrementally over arbitrary chunk boundaries: one leading BOM is
//! stripped, lines end at CRLF, LF or CR (a CR ending one chunk and an LF starting
//! the next are one line end), lines are UTF-8 decoded one at a time with U+FFFD
//! for invalid sequences (equivalent to decoding the whole stream, since line ends
//! are ASCII), and a blank line dispatches. A block that the stream ends inside
//! is never dispatched. Comments and valid `retry` fields come out as items too,
//! so tests can see `: ping` heartbeats.
//!
//! Memory is bounded by one limit (default [`DEFAULT_MAX_BYTES`]): the longest
//! line held, and the largest event (data plus event type). Past it the parser
//! yields [`SseItem::Error`] and drops the line, and the event the line was part
//! of, up to its blank line; it never buffers more and never panics.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;

/// The parser's default limit on one line and on one event: 1 MiB.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

// ---------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------

/// One event to encode. Build it with [`SseFrame::new`] and the `with_*` methods,
/// or fill the public fields directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SseFrame<'a> {
    /// The `id:` line, if any. Must not contain CR, LF or NUL.
    pub id: Option<&'a str>,
    /// The `event:` line, if any. Must not contain CR, LF or NUL.
    pub event: Option<&'a str>,
    /// The payload; any text, split into one `data:` line per line.
    pub data: &'a str,
    /// A `retry:` line (reconnection delay in milliseconds), if any.
    pub retry: Option<u64>,
}

impl<'a> SseFrame<'a> {
    /// A frame carrying `data` and nothing else.
    pub fn new(data: &'a str) -> Self {
        Self {
            data,
            ..Self::default()
        }
    }

    /// Sets the `id:` field.
    #[must_use]
    pub fn with_id(mut self, id: &'a str) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the `event:` field.
    #[must_use]
    pub fn with_event(mut self, event: &'a str) -> Self {
        self.event = Some(event);
        self
    }

    /// Sets the `retry:` field.
    #[must_use]
    pub fn with_retry(mut self, ms: u64) -> Self {
        self.retry = Some(ms);
        self
    }
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseEncodeError {
    /// The id contains CR, LF or NUL.
    InvalidId,
    /// The event name contains CR, LF or NUL.
    InvalidEventName,
}

impl fmt::Display for SseEncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidId => f.write_str("SSE id contains CR, LF or NUL"),
            Self::InvalidEventName => f.write_str("SSE event name contains CR, LF or NUL"),
        }
    }
}

impl std::error::Error for SseEncodeError {}

/// Appends one event to `buf`: `id:`, `event:`, `retry:` lines where set, one
/// `data:` line per line of data, then the blank line that dispatches it.
///
/// On error `buf` is left exactly as it was.
pub fn encode_event(buf: &mut Vec<u8>, ev: &SseFrame<'_>) -> Result<(), SseEncodeError> {
    if ev.id.is_some_and(|id| !is_single_line(id)) {
        return Err(SseEncodeError::InvalidId);
    }
    if ev.event.is_some_and(|name| !is_single_line(name)) {
        return Err(SseEncodeError::InvalidEventName);
    }
    // One reservation covers every single-line event; more lines grow amortized.
    buf.reserve(
        ev.id.map_or(0, |id| id.len() + 5)
            + ev.event.map_or(0, |e| e.len() + 8)
            + ev.retry.map_or(0, |_| 28)
            + ev.data.len()
            + 8,
    );
    if let Some(id) = ev.id {
        write_field(buf, b"id", id);
    }
    if let Some(name) = ev.event.filter(|name| !name.is_empty()) {
        write_field(buf, b"event", name);
    }
    if let Some(ms) = ev.retry {
        write_retry_line(buf, ms);
    }
    for line in Lines::new(ev.data) {
        write_field(buf, b"data", line);
    }
    buf.push(b'\n');
    Ok(())
}

/// Appends a comment block, `: text` then a blank line (`: ping\n\n`).
///
/// Each line of a multi-line `text` becomes its own `:` line, so the text can
/// never start a field. Browsers ignore comments; the blank line after it
/// dispatches nothing because every encoded event already ended with one.
pub fn encode_comment(buf: &mut Vec<u8>, text: &str) {
    buf.reserve(text.len() + 4);
    for line in Lines::new(text) {
        write_field(buf, b"", line);
    }
    buf.push(b'\n');
}

/// Appends a retry block, `retry: ms` then a blank line (`retry: 2000\n\n`).
///
/// It sets the browser's reconnection delay and dispatches no event.
pub fn encode_retry(buf: &mut Vec<u8>, ms: u64) {
    write_retry_line(buf, ms);
    buf.push(b'\n');
}

/// `data` as a browser will see it after encoding: CRLF and lone CR become LF.
pub fn normalize_newlines(data: &str) -> Cow<'_, str> {
    if !data.contains('\r') {
        return Cow::Borrowed(data);
    }
    let mut out = String::with_capacity(data.len());
    for (i, line) in Lines::new(data).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(line);
    }
    Cow::Owned(out)
}

fn is_single_line(value: &str) -> bool {
    !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'\0'))
}

/// `name: value\n`, or `name:\n` for an empty value (nothing to protect).
fn write_field(buf: &mut Vec<u8>, name: &[u8], value: &str) {
    buf.extend_from_slice(name);
    if value.is_empty() {
        buf.extend_from_slice(b":\n");
    } else {
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'\n');
    }
}

fn write_retry_line(buf: &mut Vec<u8>, ms: u64) {
    // Formatted by hand: no allocation and no fmt machinery on the hot path.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = ms;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    buf.extend_from_slice(b"retry: ");
    buf.extend_from_slice(&digits[start..]);
    buf.push(b'\n');
}

/// The lines of `text` split on CRLF, CR and LF. Always yields at least one
/// (possibly empty) line, and `n` line breaks yield `n + 1` lines, which is what
/// makes a trailing newline in data survive the round trip.
struct Lines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self { rest: Some(text) }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        let bytes = rest.as_bytes();
        match bytes.iter().position(|&b| b == b'\r' || b == b'\n') {
            None => {
                self.rest = None;
                Some(rest)
            }
            Some(i) => {
                let crlf = bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n');
                // CR and LF are ASCII, so both cuts fall on char boundaries.
                self.rest = Some(&rest[i + if crlf { 2 } else { 1 }..]);
                Some(&rest[..i])
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// A dispatched event, as a browser's `MessageEvent` would carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The last event id at dispatch time (it persists across events; `""` if none).
    pub id: String,
    /// The event type; `"message"` when the block had no (or an empty) `event:`.
    pub event: String,
    /// The data lines joined with LF.
    pub data: String,
}

/// One thing the parser found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A dispatched event.
    Event(SseEvent),
    /// A comment line's text after the `:`, one leading space stripped
    /// (`: ping` gives `"ping"`).
    Comment(String),
    /// A valid `retry:` field: the new reconnection delay in milliseconds.
    Retry(u64),
    /// Input past the parser's limit was dropped.
    Error(SseParseError),
}

/// Input the parser refused to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseParseError {
    /// A line grew past `limit` bytes. The line is dropped and, unless it was a
    /// comment, so is the event it belonged to.
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// An event's data plus event type grew past `limit` bytes. The event is
    /// dropped up to its blank line.
    EventTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl fmt::Display for SseParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineTooLong { limit } => write!(f, "SSE line longer than {limit} bytes dropped"),
            Self::EventTooLarge { limit } => {
                write!(f, "SSE event larger than {limit} bytes dropped")
            }
        }
    }
}

impl std::error::Error for SseParseError {}

/// An incremental WHATWG event-stream parser.
///
/// [`feed`](Self::feed) bytes as they arrive, in chunks of any size, then drain
/// [`poll_item`](Self::poll_item). Items queue until polled, so poll after every
/// feed; the queue is at most a few items per line fed.
#[derive(Debug, Clone)]
pub struct SseParser {
    max_bytes: usize,
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The current line passed the limit: drop its bytes until it ends.
    line_dropped: bool,
    /// The last byte fed was CR: an LF next is part of the same line end.
    after_cr: bool,
    /// No line has ended yet, so a BOM may still be at the start of `line`.
    at_start: bool,
    /// The current event was dropped: ignore its `data`/`event` up to its blank line.
    event_dropped: bool,
    data: String,
    event: String,
    last_event_id: String,
    retry: Option<u64>,
    items: VecDeque<SseItem>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default limit, [`DEFAULT_MAX_BYTES`].
    pub fn new() -> Self {
        Self::with_max_bytes(DEFAULT_MAX_BYTES)
    }

    /// A parser that holds at most `max_bytes` of one line and of one event.
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            line: Vec::new(),
            line_dropped: false,
            after_cr: false,
            at_start: true,
            event_dropped: false,
            data: String::new(),
            event: String::new(),
            last_event_id: String::new(),
            retry: None,
            items: VecDeque::new(),
        }
    }

    /// Feeds the next bytes of the stream. Chunk boundaries never matter.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while let Some((&first, after_first)) = bytes.split_first() {
            if self.after_cr {
                self.after_cr = false;
                if first == b'\n' {
                    bytes = after_first;
                    continue;
                }
            }
            match bytes.iter().position(|&b| b == b'\r' || b == b'\n') {
                None => {
                    self.push_line_bytes(bytes);
                    return;
                }
                Some(i) => {
                    self.push_line_bytes(&bytes[..i]);
                    self.after_cr = bytes[i] == b'\r';
                    bytes = &bytes[i + 1..];
                    self.end_line();
                }
            }
        }
    }

    /// The next item found, in stream order.
    #[must_use]
    pub fn poll_item(&mut self) -> Option<SseItem> {
        self.items.pop_front()
    }

    /// The last event id buffer: what a reconnect would send as `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The last valid `retry:` value seen, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) {
        if self.line_dropped || bytes.is_empty() {
            return;
        }
        if self.line.len().saturating_add(bytes.len()) <= self.max_bytes {
            self.line.extend_from_slice(bytes);
            return;
        }
        // A long comment carries nothing of the event, so the event survives it.
        let comment = self.line_starts_with_colon(bytes);
        self.line.clear();
        self.line_dropped = true;
        self.items
            .push_back(SseItem::Error(SseParseError::LineTooLong {
                limit: self.max_bytes,
            }));
        if !comment {
            self.drop_event();
        }
    }

    /// Whether the line made of `self.line` then `more` (past a stream-start BOM)
    /// starts with `:`.
    fn line_starts_with_colon(&self, more: &[u8]) -> bool {
        let mut head = [0u8; 4];
        let mut len = 0;
        for &b in self.line.iter().chain(more).take(head.len()) {
            head[len] = b;
            len += 1;
        }
        let head = &head[..len];
        let head = match head.strip_prefix(BOM) {
            Some(rest) if self.at_start => rest,
            _ => head,
        };
        head.first() == Some(&b':')
    }

    fn end_line(&mut self) {
        let at_start = std::mem::replace(&mut self.at_start, false);
        if std::mem::replace(&mut self.line_dropped, false) {
            return;
        }
        let mut raw = std::mem::take(&mut self.line);
        let bytes = match raw.strip_prefix(BOM) {
            Some(rest) if at_start => rest,
            _ => &raw[..],
        };
        let line = String::from_utf8_lossy(bytes);
        self.process_line(&line);
        raw.clear();
        self.line = raw;
    }

    fn process_line(&mut self, line: &str) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            let text = comment.strip_prefix(' ').unwrap_or(comment);
            self.items.push_back(SseItem::Comment(text.to_owned()));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => {
                if self.event_dropped {
                    return;
                }
                if self.data.len().saturating_add(value.len()) > self.max_bytes {
                    self.event_too_large();
                    return;
                }
                self.event.clear();
                self.event.push_str(value);
            }
            "data" => {
                if self.event_dropped {
                    return;
                }
                let size = self.data.len() + self.event.len();
                if size.saturating_add(value.len() + 1) > self.max_bytes {
                    self.event_too_large();
                    return;
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            // Not part of the event's payload but stream state, so it applies
            // even while a dropped event is being skipped. An id with NUL is ignored.
            "id" if !value.contains('\0') => {
                self.last_event_id.clear();
                self.last_event_id.push_str(value);
            }
            "retry" => self.set_retry(value),
            _ => {}
        }
    }

    fn set_retry(&mut self, value: &str) {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return;
        }
        // The spec has no upper bound; a value past u64 is no usable delay, so it
        // is ignored like any other invalid one.
        if let Ok(ms) = value.parse::<u64>() {
            self.retry = Some(ms);
            self.items.push_back(SseItem::Retry(ms));
        }
    }

    fn event_too_large(&mut self) {
        self.items
            .push_back(SseItem::Error(SseParseError::EventTooLarge {
                limit: self.max_bytes,
            }));
        self.drop_event();
    }

    fn drop_event(&mut self) {
        self.event_dropped = true;
        self.data.clear();
        self.event.clear();
    }

    fn dispatch(&mut self) {
        if std::mem::replace(&mut self.event_dropped, false) || self.data.is_empty() {
            self.data.clear();
            self.event.clear();
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        let event = if self.event.is_empty() {
            "message".to_owned()
        } else {
            std::mem::take(&mut self.event)
        };
        self.items.push_back(SseItem::Event(SseEvent {
            id: self.last_event_id.clone(),
            event,
            data,
        }));
    }
}

/// Feeds `chunks` in order to a fresh parser with limit `max_bytes` and returns
/// every item it yields.
#[cfg(any(test, feature = "fuzzing"))]
fn parse_chunks<'a>(max_bytes: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<SseItem> {
    let mut parser = SseParser::with_max_bytes(max_bytes);
    let mut items = Vec::new();
    for chunk in chunks {
        parser.feed(chunk);
        while let Some(item) = parser.poll_item() {
            items.push(item);
        }
    }
    items
}

/// Fuzz entry: parses `bytes` whole, byte by byte and in chunks sized by the
/// input itself, with the default and with a tiny limit, and panics unless all
/// agree. Then encodes `bytes` (lossily decoded) as data and checks it parses back.
#[cfg(feature = "fuzzing")]
pub fn fuzz_parse(bytes: &[u8]) {
    for limit in [DEFAULT_MAX_BYTES, 16] {
        let whole = parse_chunks(limit, [bytes]);
        let bytewise = parse_chunks(limit, bytes.chunks(1));
        assert_eq!(
            whole, bytewise,
            "byte-by-byte parse differs (limit {limit})"
        );
        let mut chunks = Vec::new();
        let mut rest = bytes;
        let mut sizes = bytes.iter().cycle();
        while !rest.is_empty() {
            let size = sizes.next().map_or(1, |&b| usize::from(b % 13) + 1);
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            chunks.push(chunk);
            rest = tail;
        }
        let split = parse_chunks(limit, chunks);
        assert_eq!(whole, split, "chunked parse differs (limit {limit})");
    }

    let data = String::from_utf8_lossy(bytes);
    let mut buf = Vec::new();
    encode_event(&mut buf, &SseFrame::new(&data)).expect("data never fails to encode");
    let expected = SseItem::Event(SseEvent {
        id: String::new(),
        event: "message".to_owned(),
        data: normalize_newlines(&data).into_owned(),
    });
    assert_eq!(parse_chunks(usize::MAX, [&buf[..]]), vec![expected]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(input: &str) -> Vec<SseItem> {
        parse_chunks(DEFAULT_MAX_BYTES, [input.as_bytes()])
    }

    fn events(items: &[SseItem]) -> Vec<SseEvent> {
        items
            .iter()
            .filter_map(|item| match item {
                SseItem::Event(ev) => Some(ev.clone()),
                _ => None,
            })
            .collect()
    }

    fn ev(id: &str, event: &str, data: &str) -> SseEvent {
        SseEvent {
            id: id.to_owned(),
            event: event.to_owned(),
            data: data.to_owned(),
        }
    }

    fn encode(frame: SseFrame<'_>) -> String {
        let mut buf = Vec::new();
        encode_event(&mut buf, &frame).unwrap();
        String::from_utf8(buf).unwrap()
    }

    // --- WHATWG examples -------------------------------------------------

    #[test]
    fn spec_multiline_data_joins_with_lf() {
        let items = parse("data: YHOO\ndata: +2\ndata: 10\n\n");
        assert_eq!(
            items,
            vec![SseItem::Event(ev("", "message", "YHOO\n+2\n10"))]
        );
    }

    #[test]
    fn spec_first_second_third_events() {
        let stream = ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n";
        let items = parse(stream);
        assert_eq!(items[0], SseItem::Comment("test stream".into()));
        assert_eq!(
            events(&items),
            vec![
                ev("1", "message", "first event"),
                ev("", "message", "second event"),
                ev("", "message", " third event"),
            ]
        );
    }

    #[test]
    fn spec_empty_data_blocks_and_unterminated_block() {
        // First block: "" ; middle block: "\n"; last block never ends: discarded.
        let items = parse("data\n\ndata\ndata\n\ndata:");
        assert_eq!(
            items,
            vec![
                SseItem::Event(ev("", "message", "")),
                SseItem::Event(ev("", "message", "\n")),
            ]
        );
    }

    #[test]
    fn spec_space_after_colon_is_optional() {
        let items = parse("data:test\n\ndata: test\n\n");
        assert_eq!(events(&items), vec![ev("", "message", "test"); 2]);
    }

    #[test]
    fn block_without_data_dispatches_nothing_and_resets_event_type() {
        let items = parse("event: foo\n\ndata: x\n\n");
        assert_eq!(events(&items), vec![ev("", "message", "x")]);
    }

    #[test]
    fn event_type_and_unknown_fields() {
        let items = parse("event: add\nfoo: bar\ndata: 1\nDATA: no\n\ndata: 2\n\n");
        assert_eq!(
            events(&items),
            vec![ev("", "add", "1"), ev("", "message", "2")]
        );
    }

    #[test]
    fn id_persists_resets_and_ignores_nul() {
        let items = parse("id: 7\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nid\ndata: d\n\n");
        assert_eq!(
            events(&items),
            vec![
                ev("7", "message", "a"),
                ev("7", "message", "b"),
                ev("7", "message", "c"),
                ev("", "message", "d")
            ]
        );
        let mut p = SseParser::new();
        p.feed(b"id: 42\n");
        assert_eq!(p.last_event_id(), "42", "id applies before the block ends");
    }

    #[test]
    fn bom_stripped_once_at_stream_start_even_when_split() {
        let bom = "\u{FEFF}";
        assert_eq!(
            events(&parse(&format!("{bom}data: a\n\n"))),
            vec![ev("", "message", "a")]
        );
        // A second BOM is part of the field name, which is then unknown.
        assert_eq!(events(&parse(&format!("{bom}{bom}data: a\n\n"))), vec![]);
        // A BOM later in the stream is not stripped.
        assert_eq!(events(&parse(&format!("\n{bom}data: a\n\n"))), vec![]);
        let bytes = format!("{bom}data: a\n\n").into_bytes();
        assert_eq!(
            events(&parse_chunks(DEFAULT_MAX_BYTES, bytes.chunks(1))),
            vec![ev("", "message", "a")]
        );
    }

    #[test]
    fn cr_only_and_crlf_line_ends() {
        assert_eq!(
            events(&parse("data: a\rdata: b\r\r")),
            vec![ev("", "message", "a\nb")]
        );
        assert_eq!(
            events(&parse("data: a\r\ndata: b\r\n\r\n")),
            vec![ev("", "message", "a\nb")]
        );
        // CR|LF split across chunks is one line end, not a blank line that dispatches "a".
        let chunks: [&[u8]; 3] = [b"data: a\r", b"\ndata: b\r", b"\n\r\n"];
        assert_eq!(
            events(&parse_chunks(DEFAULT_MAX_BYTES, chunks)),
            vec![ev("", "message", "a\nb")]
        );
        // LF CR is two line ends.
        assert_eq!(events(&parse("data: a\n\rdata: b\n\n")).len(), 2);
    }

    #[test]
    fn retry_only_digits() {
        let mut p = SseParser::new();
        p.feed(b"retry: 2000\nretry: 20a0\nretry: -1\nretry:\nretry:  5\nretry: 99999999999999999999999\n\n");
        assert_eq!(p.poll_item(), Some(SseItem::Retry(2000)));
        assert_eq!(p.poll_item(), None);
        assert_eq!(p.retry(), Some(2000));
        p.feed(b"retry:0\n");
        assert_eq!(p.poll_item(), Some(SseItem::Retry(0)));
    }

    #[test]
    fn comments_are_items_and_do_not_break_events() {
        let items = parse(": ping\n\n:\n:  two\ndata: a\n: mid\ndata: b\n\n");
        assert_eq!(
            items,
            vec![
                SseItem::Comment("ping".into()),
                SseItem::Comment(String::new()),
                SseItem::Comment(" two".into()),
                SseItem::Comment("mid".into()),
                SseItem::Event(ev("", "message", "a\nb")),
            ]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_and_split_chars_decode() {
        let items = parse_chunks(DEFAULT_MAX_BYTES, [&b"data: a\xFFb\n\n"[..]]);
        assert_eq!(events(&items), vec![ev("", "message", "a\u{FFFD}b")]);
        // An incomplete sequence cut by a line end is replaced, the line end kept.
        let items = parse_chunks(DEFAULT_MAX_BYTES, [&b"data: \xE2\x82\ndata: x\n\n"[..]]);
        assert_eq!(events(&items), vec![ev("", "message", "\u{FFFD}\nx")]);
        let bytes = "data: é€😀\n\n".as_bytes();
        assert_eq!(
            events(&parse_chunks(DEFAULT_MAX_BYTES, bytes.chunks(1))),
            vec![ev("", "message", "é€😀")]
        );
    }

    // --- limits ------------------------------------------------------------

    #[test]
    fn long_line_drops_its_event_and_never_buffers_past_limit() {
        let mut p = SseParser::with_max_bytes(32);
        p.feed(b"id: 1\ndata: ok\n");
        for _ in 0..100 {
            p.feed(b"data: xxxxxxxxxxxxxxxxxxxx");
            assert!(p.line.len() <= 32);
        }
        p.feed(b"\ndata: tail\n\ndata: next\n\n");
        let items: Vec<_> = std::iter::from_fn(|| p.poll_item()).collect();
        assert_eq!(
            items,
            vec![
                SseItem::Error(SseParseError::LineTooLong { limit: 32 }),
                SseItem::Event(ev("1", "message", "next"))
            ]
        );
    }

    #[test]
    fn long_comment_is_dropped_but_event_survives() {
        let long = format!("data: a\n: {}\ndata: b\n\n", "p".repeat(100));
        let items = parse_chunks(32, [long.as_bytes()]);
        assert_eq!(
            items,
            vec![
                SseItem::Error(SseParseError::LineTooLong { limit: 32 }),
                SseItem::Event(ev("", "message", "a\nb"))
            ]
        );
    }

    #[test]
    fn large_event_is_dropped_and_the_next_one_parses() {
        let mut stream = String::new();
        for _ in 0..10 {
            stream.push_str("data: 0123456789\n");
        }
        stream.push_str("event: big\n\nevent: small\ndata: x\n\n");
        let mut p = SseParser::with_max_bytes(64);
        p.feed(stream.as_bytes());
        assert!(p.data.len() + p.event.len() <= 64);
        let items: Vec<_> = std::iter::from_fn(|| p.poll_item()).collect();
        assert_eq!(
            items,
            vec![
                SseItem::Error(SseParseError::EventTooLarge { limit: 64 }),
                SseItem::Event(ev("", "small", "x"))
            ]
        );
    }

    #[test]
    fn zero_limit_does_not_panic() {
        let items = parse_chunks(0, [&b"data: x\n\n:\n\n"[..]]);
        assert_eq!(
            items,
            vec![SseItem::Error(SseParseError::LineTooLong { limit: 0 }); 2]
        );
    }

    // --- encoder -------------------------------------------------------------

    #[test]
    fn encodes_the_contract_shapes() {
        let frame = SseFrame::new(r#"{"version":"1.0"}"#)
            .with_id("3f-12")
            .with_event("messageCreate");
        assert_eq!(
            encode(frame),
            "id: 3f-12\nevent: messageCreate\ndata: {\"version\":\"1.0\"}\n\n"
        );
        let mut buf = Vec::new();
        encode_retry(&mut buf, 2000);
        encode_comment(&mut buf, "ping");
        assert_eq!(buf, b"retry: 2000\n\n: ping\n\n");
        assert_eq!(
            encode(SseFrame::new("x").with_retry(0)),
            "retry: 0\ndata: x\n\n"
        );
        assert_eq!(
            encode(SseFrame::new("x").with_retry(u64::MAX)),
            format!("retry: {}\ndata: x\n\n", u64::MAX)
        );
    }

    #[test]
    fn encodes_multiline_empty_and_space_led_data() {
        assert_eq!(
            encode(SseFrame::new("a\r\nb\rc\nd")),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(encode(SseFrame::new("")), "data:\n\n");
        assert_eq!(encode(SseFrame::new("\n")), "data:\ndata:\n\n");
        assert_eq!(encode(SseFrame::new(" x")), "data:  x\n\n");
        assert_eq!(
            encode(SseFrame::new("x").with_id("").with_event("")),
            "id:\ndata: x\n\n"
        );
        assert_eq!(
            events(&parse(&encode(
                SseFrame::new(" x").with_id(" 1").with_event(" e")
            ))),
            vec![ev(" 1", " e", " x")]
        );
    }

    #[test]
    fn rejects_breakout_ids_and_names_leaving_buf_untouched() {
        for bad in ["a\nb", "a\rb", "a\0b", "\n", "x\r\n"] {
            let mut buf = b"prefix".to_vec();
            assert_eq!(
                encode_event(&mut buf, &SseFrame::new("d").with_id(bad)),
                Err(SseEncodeError::InvalidId)
            );
            assert_eq!(
                encode_event(&mut buf, &SseFrame::new("d").with_event(bad)),
                Err(SseEncodeError::InvalidEventName)
            );
            assert_eq!(buf, b"prefix");
        }
        assert!(SseEncodeError::InvalidId.to_string().contains("id"));
    }

    #[test]
    fn multiline_comment_cannot_inject_fields() {
        let mut buf = Vec::new();
        encode_comment(&mut buf, "a\ndata: evil\r\n\nb");
        assert_eq!(buf, b": a\n: data: evil\n:\n: b\n\n");
        let items = parse_chunks(DEFAULT_MAX_BYTES, [&buf[..]]);
        assert!(items.iter().all(|item| matches!(item, SseItem::Comment(_))));
        assert_eq!(items.len(), 4);
    }

    #[cfg(feature = "fuzzing")]
    #[test]
    fn fuzz_entry_holds_on_samples() {
        for sample in [
            &b""[..],
            b"data: a\r",
            b"\xEF\xBB\xBFdata:x\r\n\r\n",
            b": p\nid: \0\nretry: 9\n\n\xFF",
        ] {
            fuzz_parse(sample);
        }
    }

    // --- properties ----------------------------------------------------------

    fn data_text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[ a:\\r\\n\\x00é😀\u{FEFF}]{0,24}",]
    }

    fn field_value() -> impl Strategy<Value = String> {
        "[^\\r\\n\\x00]{0,12}"
    }

    #[derive(Debug, Clone)]
    struct OwnedFrame {
        id: Option<String>,
        event: Option<String>,
        data: String,
        retry: Option<u64>,
    }

    impl OwnedFrame {
        fn frame(&self) -> SseFrame<'_> {
            SseFrame {
                id: self.id.as_deref(),
                event: self.event.as_deref(),
                data: &self.data,
                retry: self.retry,
            }
        }
    }

    fn frames() -> impl Strategy<Value = Vec<OwnedFrame>> {
        let frame = (
            proptest::option::of(field_value()),
            proptest::option::of(field_value()),
            data_text(),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(id, event, data, retry)| OwnedFrame {
                id,
                event,
                data,
                retry,
            });
        proptest::collection::vec(frame, 0..8)
    }

    /// Encoded stream bytes with noise: fragments chosen to hit every parser path.
    fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
        let fragment = prop_oneof![
            Just(b"data".to_vec()),
            Just(b"id".to_vec()),
            Just(b"event".to_vec()),
            Just(b"retry".to_vec()),
            Just(b":".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\xEF\xBB\xBF".to_vec()),
            Just("é€".as_bytes().to_vec()),
            Just(b"\0".to_vec()),
            "[0-9a-z]{1,6}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 1..6),
        ];
        proptest::collection::vec(fragment, 0..64).prop_map(|parts| parts.concat())
    }

    fn split_at_points(bytes: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
        cuts.iter_mut().for_each(|c| *c %= bytes.len() + 1);
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts {
            chunks.push(&bytes[start..cut]);
            start = cut;
        }
        chunks.push(&bytes[start..]);
        chunks
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn encode_then_parse_round_trips(frames in frames()) {
            let mut buf = Vec::new();
            let mut expected = Vec::new();
            let mut last_id = String::new();
            for f in &frames {
                encode_event(&mut buf, &f.frame()).unwrap();
                if let Some(id) = &f.id {
                    last_id.clone_from(id);
                }
                if let Some(ms) = f.retry {
                    expected.push(SseItem::Retry(ms));
                }
                let event = f.event.as_deref().filter(|e| !e.is_empty()).unwrap_or("message");
                expected.push(SseItem::Event(ev(&last_id, event, &normalize_newlines(&f.data))));
            }
            prop_assert_eq!(parse_chunks(usize::MAX, [&buf[..]]), expected);
            // Exactly one blank line per event: nothing inside an event ends it early.
            let blank_lines = buf.windows(2).filter(|w| w == b"\n\n").count();
            prop_assert_eq!(blank_lines, frames.len());
        }

        #[test]
        fn parsing_is_independent_of_chunk_boundaries(
            frames in frames(),
            noise in stream_bytes(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            limit in prop_oneof![Just(DEFAULT_MAX_BYTES), 0usize..40],
        ) {
            let mut bytes = Vec::new();
            for f in &frames {
                encode_event(&mut bytes, &f.frame()).unwrap();
            }
            bytes.extend_from_slice(&noise);
            let whole = parse_chunks(limit, [&bytes[..]]);
            prop_assert_eq!(&parse_chunks(limit, split_at_points(&bytes, cuts)), &whole);
            prop_assert_eq!(&parse_chunks(limit, bytes.chunks(1)), &whole);
        }

        #[test]
        fn never_panics_and_stays_bounded_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            limit in 0usize..64,
        ) {
            let mut p = SseParser::with_max_bytes(limit);
            for chunk in bytes.chunks(7) {
                p.feed(chunk);
                prop_assert!(p.line.len() <= limit);
                prop_assert!(p.data.len() + p.event.len() <= limit);
                while let Some(item) = p.poll_item() {
                    if let SseItem::Event(e) = item {
                        prop_assert!(e.data.len() + e.event.len() <= limit + "message".len());
                    }
                }
            }
        }

        #[test]
        fn encoder_rejects_every_breakout_value(
            prefix in field_value(),
            suffix in field_value(),
            bad in prop_oneof![Just('\r'), Just('\n'), Just('\0')],
        ) {
            let value = format!("{prefix}{bad}{suffix}");
            let mut buf = Vec::new();
            prop_assert_eq!(encode_event(&mut buf, &SseFrame::new("d").with_id(&value)), Err(SseEncodeError::InvalidId));
            prop_assert_eq!(
                encode_event(&mut buf, &SseFrame::new("d").with_event(&value)),
                Err(SseEncodeError::InvalidEventName)
            );
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn comments_never_dispatch_or_inject(text in data_text()) {
            let mut buf = Vec::new();
            encode_comment(&mut buf, &text);
            let items = parse_chunks(usize::MAX, [&buf[..]]);
            let expected: Vec<SseItem> = Lines::new(&text).map(|l| SseItem::Comment(l.to_owned())).collect();
            prop_assert_eq!(items, expected);
        }
    }
}
