//! Small HTTP helpers over the runtime's `http_server`: headers, query strings,
//! bounded bodies, and the contract's JSON error shape
//! (`{"error":{"code","message"}}`).

use std::borrow::Cow;

use serde_json::{json, Value};

pub use relay_runtime::http_server::{BodyError, Method, Request, Response};

/// A response with an in-memory body.
pub type Reply = Response;

/// Largest command body accepted (CONTRACT.md §3).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The value of header `name` (case-insensitive), if present and UTF-8.
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.header(name)
}

/// Splits a request URL into path and query.
pub fn split_url(url: &str) -> (&str, &str) {
    match url.split_once('?') {
        Some((path, query)) => (path, query),
        None => (url, ""),
    }
}

/// The first value of `key` in a query string, percent-decoded.
pub fn query_param<'a>(query: &'a str, key: &str) -> Option<Cow<'a, str>> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// A comma-separated query list (`types=a,b`), trimmed, empties dropped, bounded.
pub fn query_list(query: &str, key: &str, max_items: usize) -> Option<Vec<String>> {
    let raw = query_param(query, key)?;
    Some(
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .take(max_items)
            .map(str::to_owned)
            .collect(),
    )
}

/// Reads at most `limit` bytes of body (`Content-Length` or chunked); more is
/// [`BodyError::TooLarge`]. A declared `Content-Length` above the limit is
/// refused before reading anything.
pub fn read_body(req: &mut Request, limit: usize) -> Result<Vec<u8>, BodyError> {
    req.read_body(limit)
}

/// The answer to a body that could not be read: 413, 400 or 408 in the error shape.
pub fn body_error_reply(e: BodyError, limit_text: &str) -> Reply {
    match e {
        BodyError::TooLarge => error_reply(413, "payload_too_large", limit_text),
        BodyError::Invalid => error_reply(400, "invalid_request", "malformed chunked body"),
        BodyError::TimedOut => error_reply(408, "request_timeout", "the body took too long"),
        BodyError::Io => error_reply(400, "invalid_request", "the body could not be read"),
    }
}

/// A JSON response.
pub fn json_reply(status: u16, body: &Value) -> Reply {
    Response::json(status, body).header("Cache-Control", "no-store")
}

/// The contract's error body: `{"error":{"code","message"}}`.
pub fn error_reply(status: u16, code: &str, message: &str) -> Reply {
    json_reply(
        status,
        &json!({ "error": { "code": code, "message": message } }),
    )
}

/// 404 in the error shape.
pub fn not_found() -> Reply {
    error_reply(404, "not_found", "no such endpoint")
}

/// 405 in the error shape, with `Allow`.
pub fn method_not_allowed(allow: &str) -> Reply {
    error_reply(405, "method_not_allowed", &format!("use {allow}")).header("Allow", allow)
}

/// 401 in the error shape.
pub fn unauthenticated(message: &str) -> Reply {
    error_reply(401, "unauthenticated", message)
        .header("WWW-Authenticate", "Bearer realm=\"relay\"")
}

/// Whether a `Content-Type` names JSON (`application/json`, any parameters).
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_helpers_decode_and_bound() {
        let q = "types=messageCreate,%20voice.joined,,&access_token=a%2Bb";
        assert_eq!(
            query_list(q, "types", 10).unwrap(),
            vec!["messageCreate", "voice.joined"]
        );
        assert_eq!(query_param(q, "access_token").unwrap(), "a+b");
        assert_eq!(
            query_list("channels=1,2,3", "channels", 2).unwrap().len(),
            2
        );
        assert!(query_param(q, "missing").is_none());
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(None));
    }
}
