//! A response built in memory: status, headers, body. The server adds the
//! framing headers (`Content-Length`, `Connection`) itself.

use std::fmt;
use std::io::Write;

use log::warn;

/// A response to send.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    close: bool,
}

/// A header name that is not a token, or a value with CR, LF or another control
/// character (which would let a value inject headers of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHeader {
    name: String,
}

impl fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid header {:?}", self.name)
    }
}

impl std::error::Error for InvalidHeader {}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
        }
    }

    /// A JSON response (`Content-Type: application/json`).
    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(body).unwrap_or_default())
    }

    /// Adds a header. An invalid one (see [`InvalidHeader`]) is left out and
    /// logged; use [`Response::try_header`] to handle it.
    pub fn header(mut self, name: &str, value: impl AsRef<str>) -> Response {
        if let Err(e) = self.try_header(name, value.as_ref()) {
            warn!("http: {e} left out of a response");
        }
        self
    }

    /// Adds a header, or says why it cannot be sent. `Content-Length` and
    /// `Transfer-Encoding` are the server's and are ignored; `Connection: close`
    /// closes the connection after this response.
    pub fn try_header(&mut self, name: &str, value: &str) -> Result<(), InvalidHeader> {
        let valid_name = !name.is_empty() && name.bytes().all(is_tchar);
        let valid_value = value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
        if !valid_name || !valid_value {
            return Err(InvalidHeader {
                name: name.chars().take(64).collect(),
            });
        }
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Ok(());
        }
        if name.eq_ignore_ascii_case("connection") {
            self.close |= value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
            return Ok(());
        }
        self.headers
            .push((name.to_owned(), value.trim().to_owned()));
        Ok(())
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers added so far, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Whether the handler asked to close the connection after this response.
    pub(crate) fn wants_close(&self) -> bool {
        self.close
    }

    /// Status line, headers, `Content-Length`, `Connection`, and the body unless
    /// `with_body` is false (a `HEAD` request).
    pub(crate) fn to_bytes(&self, close: bool, with_body: bool) -> Vec<u8> {
        let mut out = self.head_bytes();
        let bodiless = self.status < 200 || self.status == 204 || self.status == 304;
        if !bodiless {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        out.extend_from_slice(if close {
            b"Connection: close\r\n\r\n"
        } else {
            b"Connection: keep-alive\r\n\r\n"
        });
        if with_body && !bodiless {
            out.extend_from_slice(&self.body);
        }
        out
    }

    /// The head of a response whose body runs until the connection closes,
    /// followed by whatever body was set.
    pub(crate) fn to_stream_bytes(&self) -> Vec<u8> {
        let mut out = self.head_bytes();
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    fn head_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\n",
            self.status,
            status_reason(self.status)
        );
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

/// RFC 9110 token characters (header names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The reason phrase of a status code (empty for codes without one).
pub fn status_reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}
