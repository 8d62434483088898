//! A request body's framing, decoded without IO: `Content-Length` and chunked
//! (RFC 9112 §6.2, §7.1) under the handler's limit. The connection thread feeds
//! it whatever the socket delivered ([`super::request`]), and the fuzz entry
//! feeds it arbitrary bytes, so both exercise the same code.
//!
//! Chunked bodies: each size line (hex size, optional `;` extensions) is at most
//! [`MAX_CHUNK_LINE`] bytes and ends in CRLF, each chunk's data is followed by
//! CRLF, and the trailer fields after the last chunk, at most
//! [`MAX_TRAILER_BYTES`] in all, are checked and discarded. A chunk that would
//! take the body past the limit is refused at its size line, before its data
//! arrives, so no more than the limit is ever buffered.

use super::request::{BodyError, Framing};

/// Longest chunk-size line (size and extensions) of a chunked body.
pub(crate) const MAX_CHUNK_LINE: usize = 4096;
/// Most bytes of trailer fields after the last chunk.
pub(crate) const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// What one [`BodyDecoder::feed`] made of its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Every byte was taken; the body goes on.
    NeedMore,
    /// The body ended after the first `used` bytes of this input; the rest
    /// belongs to the next request on the connection.
    Done {
        /// The decoded body: at most the limit.
        body: Vec<u8>,
        /// How much of this input the body took.
        used: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `left` more bytes of a `Content-Length` body.
    Length { left: u64 },
    /// A chunk-size line.
    SizeLine,
    /// `left` more bytes of a chunk's data.
    Data { left: u64 },
    /// The CRLF after a chunk's data.
    DataEnd,
    /// A trailer field, or the empty line that ends the body.
    Trailer,
    /// The body ended or failed; feeding more is a caller's mistake.
    Finished,
}

/// Decodes one request body from bytes fed in any pieces.
#[derive(Debug)]
pub(crate) struct BodyDecoder {
    limit: u64,
    state: State,
    body: Vec<u8>,
    /// The current line (size line, trailer, or the CRLF after data) so far:
    /// a line may arrive split over several reads.
    line: Vec<u8>,
    trailer_bytes: usize,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`, of at most `limit` bytes. A
    /// declared `Content-Length` over the limit is [`BodyError::TooLarge`]
    /// here, before any byte of the body is read.
    pub(crate) fn new(framing: Framing, limit: usize) -> Result<Self, BodyError> {
        let limit = limit as u64;
        let (state, capacity) = match framing {
            Framing::Empty => (State::Length { left: 0 }, 0),
            Framing::Length(n) if n > limit => return Err(BodyError::TooLarge),
            // `n` is at most the limit, a usize.
            Framing::Length(n) => (State::Length { left: n }, n as usize),
            Framing::Chunked => (State::SizeLine, 0),
        };
        Ok(BodyDecoder {
            limit,
            state,
            body: Vec::with_capacity(capacity),
            line: Vec::new(),
            trailer_bytes: 0,
        })
    }

    /// Takes the next bytes of the connection. Once it returns
    /// [`Decoded::Done`] or an error the decoder is finished, and feeding it
    /// again is [`BodyError::Invalid`].
    pub(crate) fn feed(&mut self, input: &[u8]) -> Result<Decoded, BodyError> {
        let result = self.run(input);
        if !matches!(result, Ok(Decoded::NeedMore)) {
            self.state = State::Finished;
        }
        result
    }

    fn run(&mut self, input: &[u8]) -> Result<Decoded, BodyError> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                State::Length { left } => {
                    let n = self.take_data(rest, left);
                    at += n;
                    if left == n as u64 {
                        return Ok(self.done(at));
                    }
                    self.state = State::Length {
                        left: left - n as u64,
                    };
                    return Ok(Decoded::NeedMore);
                }
                State::SizeLine => {
                    let Some(used) = self.take_line(rest, MAX_CHUNK_LINE)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    at += used;
                    let size = chunk_size(&self.line).ok_or(BodyError::Invalid)?;
                    self.line.clear();
                    self.state = if size == 0 {
                        State::Trailer
                    } else if self.body.len() as u64 + size > self.limit {
                        return Err(BodyError::TooLarge);
                    } else {
                        State::Data { left: size }
                    };
                }
                State::Data { left } => {
                    if rest.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = self.take_data(rest, left);
                    at += n;
                    self.state = match left - n as u64 {
                        0 => State::DataEnd,
                        left => State::Data { left },
                    };
                }
                State::DataEnd => {
                    // Both bytes are awaited before judging them, as a reader
                    // of exactly two bytes would.
                    let n = rest.len().min(2 - self.line.len());
                    self.line.extend_from_slice(&rest[..n]);
                    at += n;
                    if self.line.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if self.line != b"\r\n" {
                        return Err(BodyError::Invalid);
                    }
                    self.line.clear();
                    self.state = State::SizeLine;
                }
                State::Trailer => {
                    let Some(used) = self.take_line(rest, MAX_TRAILER_BYTES)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    at += used;
                    if self.line.is_empty() {
                        return Ok(self.done(at));
                    }
                    self.trailer_bytes += self.line.len() + 2;
                    if self.trailer_bytes > MAX_TRAILER_BYTES || !self.line.contains(&b':') {
                        return Err(BodyError::Invalid);
                    }
                    self.line.clear();
                }
                State::Finished => return Err(BodyError::Invalid),
            }
        }
    }

    /// Appends up to `left` bytes of `rest` to the body; returns how many.
    fn take_data(&mut self, rest: &[u8], left: u64) -> usize {
        let n = usize::try_from(left).map_or(rest.len(), |left| left.min(rest.len()));
        self.body.extend_from_slice(&rest[..n]);
        n
    }

    /// Adds `rest` up to its first LF to the current line. `Some(used)` once
    /// the line is complete: it is then in `self.line`, without its CRLF. A
    /// line must end in CRLF and hold at most `max` bytes before it.
    fn take_line(&mut self, rest: &[u8], max: usize) -> Result<Option<usize>, BodyError> {
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            // Room for `max` bytes and the CR; checked before copying, so a
            // flood without a line end is refused without being buffered.
            if self.line.len() + rest.len() > max + 1 {
                return Err(BodyError::Invalid);
            }
            self.line.extend_from_slice(rest);
            return Ok(None);
        };
        if self.line.len() + lf > max + 1 {
            return Err(BodyError::Invalid);
        }
        self.line.extend_from_slice(&rest[..lf]);
        if self.line.pop() != Some(b'\r') {
            return Err(BodyError::Invalid);
        }
        Ok(Some(lf + 1))
    }

    fn done(&mut self, used: usize) -> Decoded {
        Decoded::Done {
            body: std::mem::take(&mut self.body),
            used,
        }
    }
}

/// The size of a chunk from its size line (`1a;ext=v`); `None` if malformed.
pub(crate) fn chunk_size(line: &[u8]) -> Option<u64> {
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return None;
    }
    let size = match line.iter().position(|&b| b == b';') {
        Some(i) => &line[..i],
        None => line,
    };
    // Whitespace is allowed before the extensions' `;`, not before the size.
    let size = size.trim_ascii_end();
    if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(size).ok()?, 16).ok()
}

/// How a whole body decode ended, for tests and the fuzz entry.
#[cfg(any(test, feature = "fuzzing"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The body, and how many input bytes it took in all.
    Body(Vec<u8>, usize),
    /// The input ended mid-body.
    Incomplete,
    /// The decoder refused the input.
    Failed(BodyError),
}

/// Decodes a body fed as `pieces`, in order, the way the connection thread
/// feeds what each read delivered.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn decode_pieces<'a>(
    framing: Framing,
    limit: usize,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Outcome {
    let mut decoder = match BodyDecoder::new(framing, limit) {
        Ok(d) => d,
        Err(e) => return Outcome::Failed(e),
    };
    let mut before = 0;
    let mut pieces = pieces.into_iter().peekable();
    // An empty body is complete before any byte arrives.
    let empty: &[u8] = &[];
    if pieces.peek().is_none() {
        return match decoder.feed(empty) {
            Ok(Decoded::Done { body, used }) => Outcome::Body(body, used),
            Ok(Decoded::NeedMore) => Outcome::Incomplete,
            Err(e) => Outcome::Failed(e),
        };
    }
    for piece in pieces {
        match decoder.feed(piece) {
            Ok(Decoded::Done { body, used }) => return Outcome::Body(body, before + used),
            Ok(Decoded::NeedMore) => before += piece.len(),
            Err(e) => return Outcome::Failed(e),
        }
    }
    Outcome::Incomplete
}

/// `body` in the chunked coding: chunks of the sizes `sizes` cycles through
/// (0 is skipped: it would end the body), each size line with `ext`, then the
/// last chunk and `trailers`.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn encode_chunked(
    body: &[u8],
    sizes: &[usize],
    ext: &str,
    trailers: &[&str],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut rest = body;
    let mut sizes = sizes.iter().copied().filter(|&s| s > 0).cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        out.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        rest = tail;
    }
    out.extend_from_slice(format!("0{ext}\r\n").as_bytes());
    for t in trailers {
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: usize = 1024;

    fn chunked(input: &[u8]) -> Outcome {
        decode_pieces(Framing::Chunked, LIMIT, [input])
    }

    fn body(text: &str, used: usize) -> Outcome {
        Outcome::Body(text.as_bytes().to_vec(), used)
    }

    #[test]
    fn chunked_bodies_decode_and_leave_the_next_request() {
        let input = b"5\r\nhello\r\n1;name=value\r\n,\r\nA \r\n world!!!!\r\n0\r\nX-Trailer: t\r\n\r\nGET / HTTP/1.1\r\n";
        let end = input.len() - b"GET / HTTP/1.1\r\n".len();
        assert_eq!(chunked(input), body("hello, world!!!!", end));
        assert_eq!(chunked(b"0\r\n\r\n"), body("", 5));
        assert_eq!(chunked(b"5 ;x\r\nhello\r\n0\r\n\r\n"), body("hello", 18));
        assert_eq!(chunked(b"5\r\nhel"), Outcome::Incomplete);
        assert_eq!(chunked(b"5\r\nhello\r"), Outcome::Incomplete);
    }

    #[test]
    fn malformed_chunked_bodies_are_invalid() {
        for input in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],       // not hex
            b"\r\nhello\r\n0\r\n\r\n",              // no size
            b"5\r\nhelloXX0\r\n\r\n",               // no CRLF after the data
            b"5\nhello\r\n0\r\n\r\n",               // bare LF
            b"\n",                                  // bare LF, nothing before it
            b"fffffffffffffffff\r\n",               // overflows
            b"-5\r\nhello\r\n0\r\n\r\n",            // signed
            b"0x5\r\nhello\r\n0\r\n\r\n",           // prefixed
            b" 5\r\nhello\r\n0\r\n\r\n",            // whitespace before the size
            b"5\r\nhello\r\n0\r\nno colon\r\n\r\n", // bad trailer
            b"5\0\r\nhello\r\n0\r\n\r\n",           // control character
        ] {
            assert_eq!(
                chunked(input),
                Outcome::Failed(BodyError::Invalid),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn line_limits_hold_at_their_boundaries() {
        let line = |ext_len: usize| format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(ext_len));
        // The size line is `5;` plus the extension.
        let fits = line(MAX_CHUNK_LINE - 2);
        assert_eq!(chunked(fits.as_bytes()), body("hello", fits.len()));
        let over = line(MAX_CHUNK_LINE - 1);
        assert_eq!(
            chunked(over.as_bytes()),
            Outcome::Failed(BodyError::Invalid)
        );
        // Refused without waiting for the line's end.
        let flood = vec![b'a'; MAX_CHUNK_LINE + 2];
        assert_eq!(chunked(&flood), Outcome::Failed(BodyError::Invalid));
        assert_eq!(chunked(&flood[..MAX_CHUNK_LINE + 1]), Outcome::Incomplete);

        let trailer = |len: usize| format!("0\r\nx:{}\r\n\r\n", "t".repeat(len - 2));
        let fits = trailer(MAX_TRAILER_BYTES - 2);
        assert_eq!(chunked(fits.as_bytes()), body("", fits.len()));
        let over = trailer(MAX_TRAILER_BYTES - 1);
        assert_eq!(
            chunked(over.as_bytes()),
            Outcome::Failed(BodyError::Invalid)
        );
    }

    #[test]
    fn limits_refuse_before_the_data() {
        // The size line alone is enough to refuse.
        assert_eq!(
            chunked(format!("{:x}\r\n", LIMIT + 1).as_bytes()),
            Outcome::Failed(BodyError::TooLarge)
        );
        let exact = encode_chunked(&[b'x'; LIMIT], &[600], "", &[]);
        assert_eq!(
            chunked(&exact),
            Outcome::Body(vec![b'x'; LIMIT], exact.len())
        );
        let over = encode_chunked(&[b'x'; LIMIT + 1], &[600], "", &[]);
        assert_eq!(chunked(&over), Outcome::Failed(BodyError::TooLarge));
        let length = |n| decode_pieces(Framing::Length(n), LIMIT, [&b"abc"[..]]);
        assert_eq!(
            length(LIMIT as u64 + 1),
            Outcome::Failed(BodyError::TooLarge)
        );
        assert_eq!(length(u64::MAX), Outcome::Failed(BodyError::TooLarge));
        assert_eq!(length(2), body("ab", 2));
        assert_eq!(length(4), Outcome::Incomplete);
        assert_eq!(
            decode_pieces(Framing::Empty, 0, std::iter::empty()),
            body("", 0)
        );
    }

    #[test]
    fn a_finished_decoder_refuses_more() {
        let mut d = BodyDecoder::new(Framing::Chunked, LIMIT).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(d.feed(b"0\r\n\r\n"), Ok(Decoded::Done { .. })));
        assert_eq!(d.feed(b"0\r\n\r\n"), Err(BodyError::Invalid));
        let mut d = BodyDecoder::new(Framing::Chunked, LIMIT).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.feed(b"zz\r\n"), Err(BodyError::Invalid));
        assert_eq!(d.feed(b"0\r\n\r\n"), Err(BodyError::Invalid));
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"1A;x=\"y\""), Some(26));
        assert_eq!(chunk_size(b"0\t;x"), Some(0));
        assert_eq!(chunk_size(b"fffffffffffffff"), Some(0xfff_ffff_ffff_ffff));
        for bad in [
            &b""[..],
            b";x",
            b"1 2",
            b"+1",
            b"1\x7f",
            b"ffffffffffffffff",
        ] {
            assert_eq!(chunk_size(bad), None, "{bad:?}");
        }
    }

    /// Cuts `input` at the (sorted, deduplicated) `cuts`.
    fn split_at<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([input.len()]) {
            pieces.push(&input[from..cut]);
            from = cut;
        }
        pieces
    }

    fn ext() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "( ?;[a-z]{1,5}(=[a-z0-9]{0,5})?){1,3}"]
    }

    fn trailers() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[A-Za-z-]{1,10}: [ -~]{0,20}", 0..3)
    }

    /// Well-formed chunked bodies, then truncated or with a byte changed, or
    /// plain noise: inputs that reach every state of the decoder.
    fn near_chunked() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (
                proptest::collection::vec(any::<u8>(), 0..600),
                proptest::collection::vec(1usize..200, 1..4),
                ext(),
                trailers(),
                any::<usize>(),
                any::<u8>(),
            )
                .prop_map(|(body, sizes, ext, trailers, at, byte)| {
                    let trailers: Vec<&str> = trailers.iter().map(String::as_str).collect();
                    let mut input = encode_chunked(&body, &sizes, &ext, &trailers);
                    let at = at % input.len();
                    match byte % 3 {
                        0 => input.truncate(at),
                        1 => input[at] = byte,
                        _ => {}
                    }
                    input
                }),
            proptest::collection::vec(
                prop_oneof![
                    Just(b'\r'),
                    Just(b'\n'),
                    Just(b'0'),
                    Just(b'5'),
                    Just(b';'),
                    any::<u8>()
                ],
                0..200
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn chunked_round_trips(
            body in proptest::collection::vec(any::<u8>(), 0..=LIMIT),
            sizes in proptest::collection::vec(1usize..300, 1..5),
            ext in ext(),
            trailers in trailers(),
            tail in proptest::collection::vec(any::<u8>(), 0..20),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let trailers: Vec<&str> = trailers.iter().map(String::as_str).collect();
            let encoded = encode_chunked(&body, &sizes, &ext, &trailers);
            let mut input = encoded.clone();
            input.extend_from_slice(&tail);
            let want = Outcome::Body(body, encoded.len());
            prop_assert_eq!(decode_pieces(Framing::Chunked, LIMIT, split_at(&input, &cuts)), want);
        }

        #[test]
        fn any_split_decodes_like_one_piece(
            input in near_chunked(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            limit in prop_oneof![Just(LIMIT), 0usize..64],
        ) {
            let whole = decode_pieces(Framing::Chunked, limit, [&input[..]]);
            if let Outcome::Body(body, used) = &whole {
                prop_assert!(body.len() <= limit && *used <= input.len());
            }
            prop_assert_eq!(&decode_pieces(Framing::Chunked, limit, split_at(&input, &cuts)), &whole);
            prop_assert_eq!(&decode_pieces(Framing::Chunked, limit, input.chunks(1)), &whole);
        }

        #[test]
        fn lengths_decode_in_any_split(
            input in proptest::collection::vec(any::<u8>(), 0..300),
            n in 0u64..400,
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let want = if n as usize > input.len() {
                Outcome::Incomplete
            } else {
                Outcome::Body(input[..n as usize].to_vec(), n as usize)
            };
            let framing = if n == 0 { Framing::Empty } else { Framing::Length(n) };
            prop_assert_eq!(decode_pieces(framing, LIMIT, split_at(&input, &cuts)), want);
        }

        #[test]
        fn oversize_is_too_large(
            limit in 0usize..512,
            extra in 1usize..512,
            sizes in proptest::collection::vec(1usize..300, 1..5),
            ext in ext(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let encoded = encode_chunked(&vec![b'z'; limit + extra], &sizes, &ext, &[]);
            prop_assert_eq!(
                decode_pieces(Framing::Chunked, limit, split_at(&encoded, &cuts)),
                Outcome::Failed(BodyError::TooLarge)
            );
            prop_assert_eq!(
                decode_pieces(Framing::Length((limit + extra) as u64), limit, [&encoded[..]]),
                Outcome::Failed(BodyError::TooLarge)
            );
        }
    }
}
