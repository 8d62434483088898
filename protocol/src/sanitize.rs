//! Escaping user text before it is logged or re-broadcast (CONTRACT.md §6
//! "Logs", spec FR-008): message content, usernames, error messages — anything
//! that came from Discord or a browser.
//!
//! There are two consumers with different needs:
//!
//! - **Logs** ([`sanitize`]) must stay one line per record and must not carry
//!   terminal escapes or bidi tricks, so a user cannot forge a log line, hide
//!   text, or recolour an operator's terminal. Every control character (C0,
//!   DEL, C1), the bidi controls U+061C, U+200E, U+200F, U+202A–U+202E,
//!   U+2066–U+2069, and the separators U+2028/U+2029 are written as escapes:
//!   `\r`, `\n`, `\t`, and `\u{XXXX}` (four upper-case hex digits) for the
//!   rest. The backslash itself becomes `\\`, so the escaping is reversible:
//!   a user who types the six characters `\u{0A}` cannot pass them off as an
//!   escaped newline, and an operator can always recover the original text.
//!   Cut at [`LOG_TEXT_MAX`] characters.
//! - **Re-broadcast to browsers** ([`sanitize_for_broadcast`]) keeps chat
//!   readable: multi-line messages are legitimate, so LF and TAB stay, CRLF
//!   and lone CR become LF, U+2028/U+2029 become LF, and every other control
//!   and bidi control is dropped (a browser would render an escape as noise;
//!   dropping them is what defeats spoofing). Lossy by design. Cut at
//!   [`BROADCAST_TEXT_MAX`] characters.
//!
//! Lengths are counted in Unicode scalar values of the *original* text, like
//! the contract's content limit. Text longer than the limit keeps its first
//! `max_chars` characters, then gets the marker `…[+N chars]`, N being how
//! many were cut. Both functions run per event on the hot path: they scan
//! first and return [`Cow::Borrowed`] when nothing changes, allocating only
//! when they must.

use std::borrow::Cow;

/// Characters of user text kept in one log field.
pub const LOG_TEXT_MAX: usize = 256;

/// Characters of user text kept when re-broadcast to browsers.
///
/// The contract caps what relay *sends* at 2000 characters, but content that
/// arrives from Discord can be up to 4000 (Nitro), and that must reach browsers
/// whole. The cut only bounds what a bogus frame can push to every client.
pub const BROADCAST_TEXT_MAX: usize = 4000;

/// Escapes `text` for a log line and cuts it to `max_chars` characters.
///
/// The result never contains a control character, a bidi control or a
/// line/paragraph separator; see the module docs for the exact escapes.
/// Returns the input borrowed when it needs neither escaping nor cutting.
pub fn sanitize(text: &str, max_chars: usize) -> Cow<'_, str> {
    rewrite(text, max_chars, Mode::Log)
}

/// Cleans chat text for re-broadcast: keeps LF and TAB, turns CRLF, CR,
/// U+2028 and U+2029 into LF, drops other controls and bidi controls, and cuts
/// to [`BROADCAST_TEXT_MAX`] characters.
pub fn sanitize_for_broadcast(text: &str) -> Cow<'_, str> {
    sanitize_for_broadcast_with(text, BROADCAST_TEXT_MAX)
}

/// [`sanitize_for_broadcast`] with a chosen cut.
pub fn sanitize_for_broadcast_with(text: &str, max_chars: usize) -> Cow<'_, str> {
    rewrite(text, max_chars, Mode::Broadcast)
}

#[derive(Clone, Copy)]
enum Mode {
    Log,
    Broadcast,
}

impl Mode {
    fn is_special(self, c: char) -> bool {
        match self {
            Mode::Log => c == '\\' || is_unsafe(c),
            Mode::Broadcast => c != '\n' && c != '\t' && is_unsafe(c),
        }
    }
}

/// Characters that can break a line, hide text or drive a terminal.
fn is_unsafe(c: char) -> bool {
    // char::is_control is exactly Cc: C0, DEL and C1.
    c.is_control() || is_bidi_control(c) || c == '\u{2028}' || c == '\u{2029}'
}

fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

fn rewrite(text: &str, max_chars: usize, mode: Mode) -> Cow<'_, str> {
    let (kept, cut) = split_at_chars(text, max_chars);
    let first_special = kept.find(|c| mode.is_special(c));
    if first_special.is_none() && cut == 0 {
        return Cow::Borrowed(text);
    }
    let clean_len = first_special.unwrap_or(kept.len());
    let (clean, rest) = kept.split_at(clean_len);
    // Escapes grow the text; a little headroom saves most reallocations.
    let mut out = String::with_capacity(kept.len() + rest.len() / 4 + 24);
    out.push_str(clean);
    match mode {
        Mode::Log => rest.chars().for_each(|c| push_log_escaped(&mut out, c)),
        Mode::Broadcast => push_broadcast_clean(&mut out, rest),
    }
    if cut > 0 {
        out.push_str("…[+");
        out.push_str(&cut.to_string());
        out.push_str(" chars]");
    }
    Cow::Owned(out)
}

/// The first `max_chars` characters of `text`, and how many follow them.
fn split_at_chars(text: &str, max_chars: usize) -> (&str, usize) {
    // A char is at least one byte: short text needs no counting.
    if text.len() <= max_chars {
        return (text, 0);
    }
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => (&text[..at], text[at..].chars().count()),
        None => (text, 0),
    }
}

fn push_log_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\r' => out.push_str("\\r"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        c if is_unsafe(c) => push_u_escape(out, c),
        c => out.push(c),
    }
}

/// `\u{XXXX}`: every unsafe char is in the BMP, so four digits always suffice.
fn push_u_escape(out: &mut String, c: char) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let code = c as u32;
    out.push_str("\\u{");
    for shift in [12, 8, 4, 0] {
        out.push(char::from(HEX[((code >> shift) & 0xF) as usize]));
    }
    out.push('}');
}

fn push_broadcast_clean(out: &mut String, rest: &str) {
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                out.push('\n');
                // CRLF is one line break, not two.
                chars.next_if_eq(&'\n');
            }
            '\u{2028}' | '\u{2029}' => out.push('\n'),
            '\n' | '\t' => out.push(c),
            c if is_unsafe(c) => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Written apart from `is_unsafe` so a slip there shows up here.
    fn forbidden(c: char) -> bool {
        let u = c as u32;
        u < 0x20
            || (0x7F..=0x9F).contains(&u)
            || u == 0x061C
            || u == 0x200E
            || u == 0x200F
            || (0x202A..=0x202E).contains(&u)
            || (0x2066..=0x2069).contains(&u)
            || u == 0x2028
            || u == 0x2029
    }

    /// Inverse of the log escaping; `None` on anything `sanitize` never writes.
    fn unescape(s: &str) -> Option<String> {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next()? {
                '\\' => out.push('\\'),
                'r' => out.push('\r'),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(6).collect();
                    let digits = hex.strip_prefix('{')?.strip_suffix('}')?;
                    if digits.len() != 4 {
                        return None;
                    }
                    out.push(char::from_u32(u32::from_str_radix(digits, 16).ok()?)?);
                }
                _ => return None,
            }
        }
        Some(out)
    }

    fn marker(cut: usize) -> String {
        format!("…[+{cut} chars]")
    }

    #[test]
    fn forged_log_line_stays_on_one_line() {
        let forged = "hi\r\n2024-01-01 ERROR admin logged in\t\u{1b}[31mred";
        assert_eq!(
            sanitize(forged, LOG_TEXT_MAX),
            "hi\\r\\n2024-01-01 ERROR admin logged in\\t\\u{001B}[31mred"
        );
    }

    #[test]
    fn bidi_separators_and_c1_are_escaped() {
        let text = "a\u{202E}b\u{2066}c\u{200F}d\u{2028}e\u{0085}f\u{0}g\u{7f}";
        assert_eq!(
            sanitize(text, LOG_TEXT_MAX),
            "a\\u{202E}b\\u{2066}c\\u{200F}d\\u{2028}e\\u{0085}f\\u{0000}g\\u{007F}"
        );
    }

    #[test]
    fn backslash_is_doubled_so_typed_escapes_stay_distinguishable() {
        let typed = "not a newline: \\n";
        let real = "a newline:\n";
        assert_eq!(sanitize(typed, 100), "not a newline: \\\\n");
        assert_eq!(sanitize(real, 100), "a newline:\\n");
    }

    #[test]
    fn clean_text_is_borrowed() {
        let text = "héllo wörld 👋 «quotes» \"json\" 漢字";
        assert!(matches!(sanitize(text, 100), Cow::Borrowed(t) if t == text));
        let chat = "line one\n\tline two";
        assert!(matches!(sanitize_for_broadcast(chat), Cow::Borrowed(t) if t == chat));
    }

    #[test]
    fn cut_counts_chars_not_bytes_and_says_how_much() {
        assert_eq!(sanitize("héllo", 5), "héllo");
        assert_eq!(sanitize("héllo", 2), "hé…[+3 chars]");
        assert_eq!(sanitize("👋👋👋", 0), "…[+3 chars]");
        // The limit applies to the original text, before escaping grows it.
        assert_eq!(sanitize("\n\n\n", 2), "\\n\\n…[+1 chars]");
        assert_eq!(
            sanitize_for_broadcast_with("ab\r\ncd", 3),
            "ab\n…[+3 chars]"
        );
    }

    #[test]
    fn broadcast_keeps_lines_and_drops_tricks() {
        let text = "one\r\ntwo\rthree\n\tfour\u{2029}five \u{1b}[2J\u{202E}gnp.exe\u{0}\u{9b}";
        assert_eq!(
            sanitize_for_broadcast(text),
            "one\ntwo\nthree\n\tfour\nfive [2Jgnp.exe"
        );
        assert_eq!(sanitize_for_broadcast("\r\r\n"), "\n\n");
        // A CRLF split by the cut leaves one break, not a stray CR.
        assert_eq!(sanitize_for_broadcast_with("a\r\nb", 2), "a\n…[+2 chars]");
    }

    #[test]
    fn broadcast_keeps_backslashes_and_long_nitro_messages() {
        assert!(matches!(
            sanitize_for_broadcast("C:\\path"),
            Cow::Borrowed(_)
        ));
        let nitro = "x".repeat(BROADCAST_TEXT_MAX);
        assert!(matches!(sanitize_for_broadcast(&nitro), Cow::Borrowed(_)));
        let over = "x".repeat(BROADCAST_TEXT_MAX + 1);
        assert!(sanitize_for_broadcast(&over).ends_with("…[+1 chars]"));
    }

    /// Text rich in what the sanitizers care about, plus fully arbitrary chars.
    fn text() -> impl Strategy<Value = String> {
        let tricky = vec![
            'a', 'é', '👋', ' ', '\\', 'n', 'u', '{', '}', '\r', '\n', '\t', '\u{0}', '\u{1b}',
            '\u{7f}', '\u{85}', '\u{9f}', '\u{61c}', '\u{200e}', '\u{200f}', '\u{202a}',
            '\u{202e}', '\u{2066}', '\u{2069}', '\u{2028}', '\u{2029}', '…',
        ];
        prop_oneof![
            proptest::collection::vec(proptest::sample::select(tricky), 0..48)
                .prop_map(String::from_iter),
            proptest::collection::vec(any::<char>(), 0..48).prop_map(String::from_iter),
            any::<String>(),
        ]
    }

    /// Reference for broadcast cleaning, written the slow obvious way.
    fn broadcast_model(s: &str) -> String {
        s.replace("\r\n", "\n")
            .replace(['\r', '\u{2028}', '\u{2029}'], "\n")
            .chars()
            .filter(|&c| c == '\n' || c == '\t' || !forbidden(c))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn log_output_has_no_forbidden_char(s in text(), max in 0usize..64) {
            let out = sanitize(&s, max);
            prop_assert!(!out.chars().any(forbidden), "{:?} -> {:?}", s, out);
        }

        #[test]
        fn log_output_is_bounded_reversible_and_marked_when_cut(s in text(), max in 0usize..64) {
            let n = s.chars().count();
            let out = sanitize(&s, max);
            if n <= max {
                prop_assert!(out.chars().count() <= 8 * n);
                prop_assert_eq!(unescape(&out), Some(s.clone()));
            } else {
                let body = out.strip_suffix(&marker(n - max));
                prop_assert!(body.is_some(), "no marker in {:?}", out);
                let body = body.unwrap_or_default();
                prop_assert!(body.chars().count() <= 8 * max);
                let head: String = s.chars().take(max).collect();
                prop_assert_eq!(unescape(body), Some(head));
            }
        }

        #[test]
        fn log_borrows_exactly_when_nothing_changes(s in text(), max in 0usize..64) {
            let out = sanitize(&s, max);
            prop_assert_eq!(matches!(out, Cow::Borrowed(_)), out == s);
            let plain = !s.chars().any(|c| c == '\\' || forbidden(c));
            if plain && s.chars().count() <= max {
                prop_assert!(matches!(out, Cow::Borrowed(_)));
            }
        }

        #[test]
        fn broadcast_output_has_only_lf_and_tab_controls(s in text(), max in 0usize..64) {
            let out = sanitize_for_broadcast_with(&s, max);
            prop_assert!(
                !out.chars().any(|c| c != '\n' && c != '\t' && forbidden(c)),
                "{:?} -> {:?}", s, out
            );
            prop_assert!(!out.contains('\r'));
        }

        #[test]
        fn broadcast_matches_model_and_borrows_when_unchanged(s in text()) {
            let out = sanitize_for_broadcast_with(&s, usize::MAX);
            prop_assert_eq!(&*out, broadcast_model(&s));
            prop_assert_eq!(matches!(out, Cow::Borrowed(_)), out == s);
        }

        #[test]
        fn broadcast_cut_keeps_the_cleaned_head(s in text(), max in 0usize..64) {
            let n = s.chars().count();
            let out = sanitize_for_broadcast_with(&s, max);
            if n > max {
                let head: String = s.chars().take(max).collect();
                prop_assert_eq!(&*out, broadcast_model(&head) + &marker(n - max));
            }
        }
    }
}
