//! The fuzz entry over the edge's own HTTP/1.1 request parsing: the head parser
//! with its limits, then, when the head frames a body, the body decoder on the
//! bytes after the head — the code the connection thread runs, minus the socket.

use super::body::{decode_pieces, encode_chunked, Outcome};
use super::request::{BodyError, Framing, Head};
use super::HttpConfig;

/// Statuses a refused head may get (see the limits table in [`super`]).
const HEAD_STATUSES: [u16; 5] = [400, 414, 417, 431, 501];

/// Body limits tried: the edge's command limit, and one small enough for short
/// inputs to cross.
const BODY_LIMITS: [usize; 2] = [64 * 1024, 16];

/// Fuzz entry: parses `bytes` as a request head under the default limits and
/// under tiny ones, then decodes the rest as the head's body. Panics if a
/// parser panics or an invariant breaks: a complete head is no longer than the
/// input or `max_head_bytes` and was not complete at any earlier line end, its
/// target respects the limits; a refusal has one of the head statuses; the
/// body never exceeds its limit, decodes the same in any pieces, is exactly
/// the declared length, and a decoded chunked body round-trips.
pub fn fuzz_http_request(bytes: &[u8]) {
    let tiny = HttpConfig {
        max_head_bytes: 256,
        max_headers: 4,
        max_url_bytes: 64,
        ..HttpConfig::default()
    };
    for config in [HttpConfig::default(), tiny] {
        if let Some((framing, len)) = check_head(bytes, &config) {
            for limit in BODY_LIMITS {
                check_body(framing, limit, &bytes[len..]);
            }
        }
    }
}

/// The head's framing and length, if `bytes` starts with a complete head.
fn check_head(bytes: &[u8], config: &HttpConfig) -> Option<(Framing, usize)> {
    let (head, len) = match Head::parse(bytes, config) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            // What the connection thread answers once the buffer outgrows the limit.
            if bytes.len() > config.max_head_bytes {
                let status = Head::too_large(bytes, config).status();
                assert!(status == 414 || status == 431, "too large: {status}");
            }
            return None;
        }
        Err(reply) => {
            let status = reply.status();
            assert!(HEAD_STATUSES.contains(&status), "refused with {status}");
            return None;
        }
    };
    assert!(
        len <= bytes.len() && len <= config.max_head_bytes,
        "head length {len}"
    );
    let target = head.target();
    assert!(target.len() <= config.max_url_bytes);
    assert!(!target.bytes().any(|b| b < 0x20 || b == 0x7f));
    if head.framing() == Framing::Chunked {
        assert_eq!(head.minor(), 1, "chunked needs HTTP/1.1");
    }
    // The connection thread parses again at each line end as bytes arrive:
    // no earlier line end may complete (or refuse) the head.
    for (i, _) in bytes[..len.saturating_sub(1)]
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
    {
        assert!(
            matches!(Head::parse(&bytes[..=i], config), Ok(None)),
            "a prefix of {i} bytes parsed differently"
        );
    }
    Some((head.framing(), len))
}

fn check_body(framing: Framing, limit: usize, rest: &[u8]) {
    let whole = decode_pieces(framing, limit, [rest]);
    assert_eq!(
        decode_pieces(framing, limit, rest.chunks(1)),
        whole,
        "bytewise"
    );
    let sizes = split_sizes(rest);
    assert_eq!(
        decode_pieces(framing, limit, pieces(rest, &sizes)),
        whole,
        "in pieces"
    );
    match (&whole, framing) {
        (Outcome::Body(body, used), Framing::Length(n)) => {
            assert_eq!(*used as u64, n);
            assert_eq!(body[..], rest[..*used]);
        }
        (Outcome::Body(body, used), Framing::Chunked) => {
            assert!(body.len() <= limit && *used <= rest.len());
            let again = encode_chunked(body, &sizes, "", &[]);
            assert_eq!(
                decode_pieces(Framing::Chunked, limit, [&again[..]]),
                Outcome::Body(body.clone(), again.len()),
                "round trip"
            );
        }
        (Outcome::Body(body, used), Framing::Empty) => {
            assert!(body.is_empty() && *used == 0);
        }
        (Outcome::Failed(BodyError::TooLarge), Framing::Length(n)) => {
            assert!(n > limit as u64);
        }
        (Outcome::Failed(BodyError::TimedOut | BodyError::Io), _) => {
            panic!("a decoder reported an IO error: {whole:?}")
        }
        _ => {}
    }
    if let Framing::Length(n) = framing {
        let complete = n <= limit as u64 && n <= rest.len() as u64;
        assert_eq!(matches!(whole, Outcome::Body(..)), complete);
    }
}

/// Piece sizes taken from the input itself, so the fuzzer steers them.
fn split_sizes(bytes: &[u8]) -> Vec<usize> {
    bytes
        .iter()
        .take(16)
        .map(|&b| usize::from(b % 13) + 1)
        .collect()
}

fn pieces<'a>(mut rest: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = sizes.next().copied().unwrap_or(rest.len()).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        out.push(piece);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_entry_holds_on_samples() {
        for sample in [
            &b""[..],
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET /api/stream?types=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1-2\r\n\r\n",
            b"POST /c HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET",
            b"POST /c HTTP/1.1\r\nContent-Length: 99999\r\n\r\nhello",
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: y\r\n\r\n",
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n0123456789abcdefg\r\n0\r\n\r\n",
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST /c HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /%00 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nExpect: nothing\r\n\r\n",
            b"\r\n\r\n\r\n",
        ] {
            fuzz_http_request(sample);
        }
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(300));
        fuzz_http_request(long.as_bytes());
    }
}
