//! Plain HTTP on the link port: every answer that is not a `101`. Owns the
//! refusals (404, 401, 400, 426), the [`PlainHandler`] hook through which the
//! process serves a few `GET` paths here (the gateway's `/metrics`, `/healthz`,
//! `/readyz`), the reading of the request line kept from the head, and the
//! writing of a one-shot answer (`Connection: close`) within a deadline.
//!
//! The hook is asked only after tungstenite has read a complete, well-formed
//! request head (so within the upgrade's deadline and 16 KiB limit) and found no
//! upgrade in it, and only for `GET`: what reaches it has passed every limit an
//! upgrade passes. `/link` is never the hook's: without an upgrade it stays 426.

use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::warn;
use tungstenite::error::ProtocolError;
use tungstenite::handshake::server::ErrorResponse;
use tungstenite::http::{HeaderValue, StatusCode};
use tungstenite::Error as WsError;

use super::LINK_PATH;

/// The least time an answer gets to be written, even when its request arrived
/// just before the upgrade deadline.
const ANSWER_GRACE: Duration = Duration::from_secs(1);

/// What the [`PlainHandler`] answers a `GET`; sent with `Content-Length` and
/// `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainResponse {
    /// The HTTP status (an unknown code is sent as 500).
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// Serves plain `GET` requests on the link port (operations endpoints).
///
/// Called with the request's path (query removed); `None` leaves the request its
/// usual answer (404). It runs on the connection's thread with no lock held, for
/// any client that reaches the port and without a token, so it must answer
/// quickly and never put a secret in a body. A panic in it is answered 500.
pub type PlainHandler = Arc<dyn Fn(&str) -> Option<PlainResponse> + Send + Sync>;

/// Why an upgrade is refused; each maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    NotFound,
    Unauthorized,
    UnsupportedVersion,
    NotUpgrade,
    BadRequest,
    /// A standby gateway (CONTRACT.md §10): the edge tries the next one.
    Standby,
}

impl Refusal {
    pub(super) fn status(self) -> StatusCode {
        match self {
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::UnsupportedVersion | Refusal::BadRequest => StatusCode::BAD_REQUEST,
            Refusal::NotUpgrade => StatusCode::UPGRADE_REQUIRED,
            Refusal::Standby => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub(super) fn reason(self) -> &'static str {
        match self {
            Refusal::NotFound => "not found",
            Refusal::Unauthorized => "missing or wrong bearer token",
            Refusal::UnsupportedVersion => {
                "unsupported X-Gateway-Version (this gateway speaks 1.x)"
            }
            Refusal::NotUpgrade => "expected a WebSocket upgrade",
            Refusal::BadRequest => "bad request",
            Refusal::Standby => "standby gateway: another gateway runs the Discord session",
        }
    }

    /// The answer, also handed to tungstenite to refuse an upgrade request.
    pub(super) fn response(self) -> ErrorResponse {
        let mut response = plain_http(
            self.status(),
            HeaderValue::from_static("text/plain; charset=utf-8"),
            self.reason().to_owned(),
        );
        let headers = response.headers_mut();
        match self {
            Refusal::Unauthorized => {
                headers.insert("WWW-Authenticate", HeaderValue::from_static("Bearer"));
            }
            Refusal::NotUpgrade => {
                headers.insert("Upgrade", HeaderValue::from_static("websocket"));
            }
            _ => {}
        }
        response
    }
}

impl PlainResponse {
    fn to_http(&self) -> ErrorResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let content_type = HeaderValue::from_str(self.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        plain_http(status, content_type, self.body.clone())
    }
}

fn plain_http(status: StatusCode, content_type: HeaderValue, body: String) -> ErrorResponse {
    let length = body.len();
    let mut response = ErrorResponse::new(Some(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("Content-Type", content_type);
    headers.insert("Content-Length", HeaderValue::from(length));
    headers.insert("Connection", HeaderValue::from_static("close"));
    response
}

/// The request line of a head, read leniently: enough to choose an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RequestLine<'a> {
    pub(super) method: &'a str,
    /// The target without its query.
    pub(super) path: &'a str,
    /// `HTTP/1.1` …, absent when the line was cut short.
    pub(super) version: Option<&'a str>,
}

/// The request line at the start of `head`, if it has a method and a target.
pub(super) fn request_line(head: &[u8]) -> Option<RequestLine<'_>> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    let (method, target) = (parts.next()?, parts.next()?);
    let path = target.split('?').next().unwrap_or_default();
    Some(RequestLine {
        method,
        path,
        version: parts.next(),
    })
}

/// Whether tungstenite refused the upgrade with `error` only after reading a
/// complete, well-formed request head (not junk, not a cut-off or oversized one).
fn head_was_read(error: &WsError) -> bool {
    matches!(
        error,
        WsError::Protocol(
            ProtocolError::WrongHttpMethod
                | ProtocolError::WrongHttpVersion
                | ProtocolError::MissingConnectionUpgradeHeader
                | ProtocolError::MissingUpgradeWebSocketHeader
                | ProtocolError::MissingSecWebSocketVersionHeader
                | ProtocolError::MissingSecWebSocketKey
                | ProtocolError::JunkAfterRequest
        )
    )
}

/// What a request that is not an upgrade gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// The handler's answer to a `GET` of this path.
    Served(String, PlainResponse),
    /// A refusal, as before the hook existed.
    Refused(Refusal),
}

/// Chooses the answer to a request whose upgrade tungstenite refused with
/// `error`; `head` is the start of what the client sent.
pub(super) fn answer(handler: Option<&PlainHandler>, head: &[u8], error: &WsError) -> Answer {
    let Some(line) = request_line(head) else {
        return Answer::Refused(Refusal::BadRequest);
    };
    if line.path == LINK_PATH {
        return Answer::Refused(Refusal::NotUpgrade);
    }
    let plain_get = line.method == "GET"
        && line.version.is_some_and(|v| v.starts_with("HTTP/1."))
        && head_was_read(error);
    let served = match handler {
        Some(handler) if plain_get => ask(handler, line.path),
        _ => None,
    };
    match served {
        Some(response) => Answer::Served(line.path.to_owned(), response),
        None => Answer::Refused(Refusal::NotFound),
    }
}

fn ask(handler: &PlainHandler, path: &str) -> Option<PlainResponse> {
    catch_unwind(AssertUnwindSafe(|| handler(path))).unwrap_or_else(|_| {
        warn!("link: the plain handler panicked on GET {path}");
        Some(PlainResponse {
            status: 500,
            content_type: "text/plain; charset=utf-8",
            body: "internal error".into(),
        })
    })
}

impl Answer {
    fn to_http(&self) -> ErrorResponse {
        match self {
            Answer::Served(_, response) => response.to_http(),
            Answer::Refused(refused) => refused.response(),
        }
    }
}

/// Writes `answer` and closes. The whole answer must be out by `deadline` (the
/// upgrade's), extended to [`ANSWER_GRACE`] from now if that is sooner, so a
/// client that does not read cannot hold the thread.
pub(super) fn write_answer(tcp: TcpStream, answer: &Answer, deadline: Instant) {
    let response = answer.to_http();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status().as_str(),
        response.status().canonical_reason().unwrap_or("")
    );
    for (name, value) in response.headers() {
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(value.to_str().unwrap_or_default());
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(response.body().as_deref().unwrap_or_default());
    let deadline = deadline.max(Instant::now() + ANSWER_GRACE);
    if write_before(&tcp, out.as_bytes(), deadline).is_ok() {
        let _ = tcp.shutdown(Shutdown::Write);
    }
}

/// `write_all` with one deadline for all of it (not per write).
fn write_before(mut tcp: &TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(ErrorKind::TimedOut, "answer took too long"));
        }
        tcp.set_write_timeout(Some(left))?;
        match tcp.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(head: &[u8]) -> Option<(&str, &str, Option<&str>)> {
        request_line(head).map(|l| (l.method, l.path, l.version))
    }

    #[test]
    fn request_lines_are_read() {
        assert_eq!(
            line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET", "/metrics", Some("HTTP/1.1")))
        );
        assert_eq!(
            line(b"GET /link?x=1 HTTP/1.0\r\n"),
            Some(("GET", "/link", Some("HTTP/1.0")))
        );
        assert_eq!(
            line(b"POST /readyz?a HTTP/1.1"),
            Some(("POST", "/readyz", Some("HTTP/1.1")))
        );
        // Cut short (only the first KiB of a head is kept): no version.
        assert_eq!(
            line(b"GET /metricsxxxx"),
            Some(("GET", "/metricsxxxx", None))
        );
        assert_eq!(
            line(b"GET ?only-a-query HTTP/1.1"),
            Some(("GET", "", Some("HTTP/1.1")))
        );
        assert_eq!(line(b"GET\r\n"), None);
        assert_eq!(line(b""), None);
        assert_eq!(line(b"\xff\xfe /x HTTP/1.1\r\n"), None);
    }

    fn ops() -> PlainHandler {
        Arc::new(|path| {
            (path == "/healthz").then(|| PlainResponse {
                status: 200,
                content_type: "application/json",
                body: "{}".into(),
            })
        })
    }

    fn not_upgrade() -> WsError {
        WsError::Protocol(ProtocolError::MissingConnectionUpgradeHeader)
    }

    fn answer_to(handler: Option<&PlainHandler>, head: &[u8], error: WsError) -> Answer {
        answer(handler, head, &error)
    }

    #[test]
    fn the_handler_answers_only_complete_plain_gets() {
        let ops = ops();
        let h = Some(&ops);
        let get = b"GET /healthz?probe=1 HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(
            answer_to(h, get, not_upgrade()),
            Answer::Served(path, r) if path == "/healthz" && r.status == 200
        ));
        // HTTP/1.0 is read completely too (tungstenite refuses it as an upgrade).
        let old = b"GET /healthz HTTP/1.0\r\n\r\n";
        let wrong_version = WsError::Protocol(ProtocolError::WrongHttpVersion);
        assert!(matches!(
            answer_to(h, old, wrong_version),
            Answer::Served(..)
        ));

        let refused = |r| Answer::Refused(r);
        // Not the handler's path, no handler, another method: today's answers.
        let other = b"GET /other HTTP/1.1\r\n\r\n";
        assert_eq!(
            answer_to(h, other, not_upgrade()),
            refused(Refusal::NotFound)
        );
        assert_eq!(
            answer_to(None, get, not_upgrade()),
            refused(Refusal::NotFound)
        );
        let post = b"POST /healthz HTTP/1.1\r\n\r\n";
        let wrong_method = WsError::Protocol(ProtocolError::WrongHttpMethod);
        assert_eq!(answer_to(h, post, wrong_method), refused(Refusal::NotFound));
        // A head tungstenite could not read (junk, cut off) is never served.
        let junk = WsError::Protocol(ProtocolError::HttparseError(httparse::Error::Token));
        assert_eq!(answer_to(h, get, junk), refused(Refusal::NotFound));
        let cut = b"GET /healthz";
        assert_eq!(answer_to(h, cut, not_upgrade()), refused(Refusal::NotFound));
        // /link without an upgrade stays 426, whatever the handler says.
        let all: PlainHandler = Arc::new(|_| {
            Some(PlainResponse {
                status: 200,
                content_type: "text/plain",
                body: String::new(),
            })
        });
        let link = b"GET /link HTTP/1.1\r\n\r\n";
        assert_eq!(
            answer_to(Some(&all), link, not_upgrade()),
            refused(Refusal::NotUpgrade)
        );
        assert_eq!(
            answer_to(h, b"\xff", not_upgrade()),
            refused(Refusal::BadRequest)
        );
    }

    #[test]
    fn a_panicking_handler_is_answered_500() {
        let boom: PlainHandler = Arc::new(|_| panic!("boom"));
        let get = b"GET /x HTTP/1.1\r\n\r\n";
        assert!(matches!(
            answer_to(Some(&boom), get, not_upgrade()),
            Answer::Served(_, r) if r.status == 500
        ));
    }

    #[test]
    fn answers_carry_length_type_and_close() {
        let served = Answer::Served(
            "/x".into(),
            PlainResponse {
                status: 503,
                content_type: "application/json",
                body: "{\"ready\":false}".into(),
            },
        )
        .to_http();
        assert_eq!(served.status(), StatusCode::SERVICE_UNAVAILABLE);
        let h = served.headers();
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["content-length"], "15");
        assert_eq!(h["connection"], "close");
        let odd = PlainResponse {
            status: 1000,
            content_type: "bad\nvalue",
            body: String::new(),
        }
        .to_http();
        assert_eq!(odd.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(odd.headers()["content-type"], "application/octet-stream");
        let unauthorized = Refusal::Unauthorized.response();
        assert_eq!(unauthorized.headers()["www-authenticate"], "Bearer");
    }
}
